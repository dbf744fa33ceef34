//! The scope grammar and the OR rule (SPEC §3, "Authorize").
//!
//! Input is text, so seeds stay readable (`corpus/scopes/`):
//!
//! ```text
//! write                 <- first line: the route's action
//! @tasks=foo            <- lines starting with '@': resources, `kind` or `kind=id`
//! @sessions
//! write:tasks:foo       <- every other line: a scope the token carries
//! ```
//!
//! The whole input is also parsed as one scope, so newlines and other control
//! characters inside a scope are covered too.
#![no_main]

use api_auth_core::scopes::{authorize, parse, Resource, Scope, MAX_SCOPE_LEN};
use libfuzzer_sys::fuzz_target;

fn is_word(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The grammar restated independently: `admin`, `action:all`, `action:type`,
/// `action:type:id` (words are `[A-Za-z0-9_-]+`; the id is 1 to 256 of
/// `[A-Za-z0-9._~:@/+=-]`, so it may contain ':' but never a space, comma,
/// quote or non-ASCII character; `all` takes no id).
fn reference(s: &str) -> Option<Scope<'_>> {
    if s.len() > MAX_SCOPE_LEN {
        return None;
    }
    if s == "admin" {
        return Some(Scope::Admin);
    }
    let first = s.find(':')?;
    let (action, rest) = (&s[..first], &s[first + 1..]);
    if !is_word(action) {
        return None;
    }
    match rest.find(':') {
        None if rest == "all" => Some(Scope::All { action }),
        None if is_word(rest) => Some(Scope::Type { action, kind: rest }),
        None => None,
        Some(i) => {
            let (kind, id) = (&rest[..i], &rest[i + 1..]);
            let id_ok = (1..=256).contains(&id.len()) && id.chars().all(|c| c.is_ascii_alphanumeric() || "._~:@/+=-".contains(c));
            if kind == "all" || !is_word(kind) || !id_ok {
                None
            } else {
                Some(Scope::One { action, kind, id })
            }
        }
    }
}

fn render(scope: &Scope<'_>) -> String {
    match scope {
        Scope::Admin => "admin".into(),
        Scope::All { action } => format!("{action}:all"),
        Scope::Type { action, kind } => format!("{action}:{kind}"),
        Scope::One { action, kind, id } => format!("{action}:{kind}:{id}"),
    }
}

/// Properties of one scope string against one action and resource list.
fn check_scope(s: &str, action: &str, resources: &[Resource<'_>]) {
    let parsed = parse(s);
    assert_eq!(parsed, reference(s), "grammar disagrees on {s:?}");
    let alone = authorize(&[s], action, resources);
    let Some(scope) = parsed else {
        assert!(!alone, "malformed scope {s:?} granted something");
        return;
    };
    assert_eq!(render(&scope), s, "parse is not exact");
    assert_eq!(alone, resources.iter().any(|r| scope.grants(action, r)));
    for r in resources {
        let want = match scope {
            Scope::Admin => true,
            Scope::All { action: a } => a == action,
            Scope::Type { action: a, kind } => a == action && kind == r.kind,
            Scope::One { action: a, kind, id } => a == action && kind == r.kind && r.id == Some(id),
        };
        assert_eq!(scope.grants(action, r), want, "{s:?} on {action:?} {r:?}");
    }
    match scope {
        Scope::Admin => {
            assert_eq!(alone, !resources.is_empty());
            assert!(scope.grants("anything", &Resource { kind: "x", id: None }));
        }
        Scope::One { action: a, kind, id } => {
            // Exactly that resource: not the type, not another id, not another action.
            assert!(scope.grants(a, &Resource { kind, id: Some(id) }));
            assert!(!scope.grants(a, &Resource { kind, id: None }));
            let longer = format!("{id}x");
            assert!(!scope.grants(a, &Resource { kind, id: Some(&longer) }));
            assert!(!scope.grants(a, &Resource { kind, id: Some(&id[..id.len() - id.chars().last().unwrap().len_utf8()]) }));
            let other_action = format!("{a}x");
            assert!(!scope.grants(&other_action, &Resource { kind, id: Some(id) }));
            let other_kind = format!("{kind}x");
            assert!(!scope.grants(a, &Resource { kind: &other_kind, id: Some(id) }));
        }
        Scope::Type { action: a, kind } => {
            assert!(scope.grants(a, &Resource { kind, id: None }));
            assert!(scope.grants(a, &Resource { kind, id: Some("any") }));
            assert!(!scope.grants(a, &Resource { kind: "all", id: None }) || kind == "all");
        }
        Scope::All { action: a } => {
            assert!(scope.grants(a, &Resource { kind: "anything", id: None }));
            assert!(!scope.grants(&format!("{a}x"), &Resource { kind: "anything", id: None }));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut lines = text.split('\n');
    let action = lines.next().unwrap_or("");
    let mut resources = Vec::new();
    let mut scopes = Vec::new();
    for line in lines {
        if let Some(r) = line.strip_prefix('@') {
            resources.push(match r.split_once('=') {
                Some((kind, id)) => Resource { kind, id: Some(id) },
                None => Resource { kind: r, id: None },
            });
        } else {
            scopes.push(line);
        }
    }

    check_scope(text, action, &resources);
    for s in &scopes {
        check_scope(s, action, &resources);
    }

    let granted = authorize(&scopes, action, &resources);
    // OR across scopes and across resources.
    assert_eq!(granted, scopes.iter().any(|s| authorize(&[s], action, &resources)));
    assert_eq!(granted, resources.iter().any(|r| authorize(&scopes, action, std::slice::from_ref(r))));
    // Junk adds nothing, and removing it takes nothing away.
    let well_formed: Vec<&str> = scopes.iter().copied().filter(|s| parse(s).is_some()).collect();
    assert_eq!(granted, authorize(&well_formed, action, &resources));
    // More scopes never grant less; admin grants whatever names a resource.
    let mut more = scopes.clone();
    more.push("admin");
    assert_eq!(authorize(&more, action, &resources), !resources.is_empty());
    if granted {
        more.pop();
        more.push(action);
        assert!(authorize(&more, action, &resources));
    }
    // The String form (what the token's claims hold) behaves like &str.
    let owned: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
    assert_eq!(granted, authorize(&owned, action, &resources));
});
