//! The scope grammar and the OR rule of SPEC §3.
//!
//! A scope is `action:type`, `action:type:id`, `action:all`, or `admin`.
//! Access is granted when *any* resource is matched by *any* scope.
//! Malformed scopes are not errors: they simply match nothing, so a token
//! carrying junk is no more powerful than one without it.

/// Longest scope string considered; longer ones match nothing.
pub const MAX_SCOPE_LEN: usize = 512;

/// One resource a route acts on: `{type, id?}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resource<'a> {
    pub kind: &'a str,
    pub id: Option<&'a str>,
}

/// A parsed scope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope<'a> {
    /// `admin`: everything.
    Admin,
    /// `action:all`: every resource for that action.
    All { action: &'a str },
    /// `action:type`: every resource of that type.
    Type { action: &'a str, kind: &'a str },
    /// `action:type:id`: that one resource. The id may itself contain `:`.
    One { action: &'a str, kind: &'a str, id: &'a str },
}

fn is_word(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Parse one scope; `None` for anything outside the grammar.
pub fn parse(scope: &str) -> Option<Scope<'_>> {
    if scope.len() > MAX_SCOPE_LEN {
        return None;
    }
    if scope == "admin" {
        return Some(Scope::Admin);
    }
    let mut parts = scope.splitn(3, ':');
    let action = parts.next().filter(|a| is_word(a))?;
    let kind = parts.next().filter(|k| is_word(k))?;
    match (kind, parts.next()) {
        ("all", None) => Some(Scope::All { action }),
        ("all", Some(_)) => None,
        (kind, None) => Some(Scope::Type { action, kind }),
        (kind, Some(id)) if !id.is_empty() && !id.chars().any(char::is_control) => {
            Some(Scope::One { action, kind, id })
        }
        _ => None,
    }
}

impl Scope<'_> {
    /// Does this scope grant `action` on `resource`?
    pub fn grants(&self, action: &str, resource: &Resource<'_>) -> bool {
        match *self {
            Scope::Admin => true,
            Scope::All { action: a } => a == action,
            Scope::Type { action: a, kind } => a == action && kind == resource.kind,
            Scope::One { action: a, kind, id } => {
                a == action && kind == resource.kind && resource.id == Some(id)
            }
        }
    }
}

/// The OR rule: any resource matched by any well-formed scope.
pub fn authorize<S: AsRef<str>>(scopes: &[S], action: &str, resources: &[Resource<'_>]) -> bool {
    scopes.iter().filter_map(|s| parse(s.as_ref())).any(|scope| {
        resources.iter().any(|r| scope.grants(action, r))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: &str) -> Resource<'_> {
        Resource { kind: "tasks", id: Some(id) }
    }
    const SESSIONS: Resource<'static> = Resource { kind: "sessions", id: None };

    #[test]
    fn the_session_route_matrix() {
        let create = |scopes: &[&str], t: &str| authorize(scopes, "write", &[task(t), SESSIONS]);
        assert!(create(&["write:tasks:foo"], "foo"));
        assert!(!create(&["write:tasks:foo"], "bar"));
        assert!(create(&["write:sessions"], "bar"));
        assert!(create(&["write:all"], "bar"));
        assert!(create(&["admin"], "bar"));
        assert!(!create(&["read:sessions"], "foo"));
        assert!(!create(&["read:all"], "foo"));
        assert!(!create(&[], "foo"));
        assert!(create(&["junk", "write:tasks:foo"], "foo"));
    }

    #[test]
    fn malformed_scopes_match_nothing() {
        for bad in ["", "write", "write:", ":tasks", "write::foo", "write:tasks:", "write:all:x",
                    "ADMIN ", " admin", "wr ite:tasks", "write:tasks:a\nb"] {
            assert_eq!(parse(bad), None, "{bad:?}");
            assert!(!authorize(&[bad], "write", &[task("foo"), SESSIONS]), "{bad:?}");
        }
        assert_eq!(parse(&"a".repeat(MAX_SCOPE_LEN + 1)), None);
    }

    #[test]
    fn ids_may_contain_colons() {
        assert!(authorize(&["read:runs:a:b"], "read", &[Resource { kind: "runs", id: Some("a:b") }]));
        assert!(!authorize(&["read:runs:a"], "read", &[Resource { kind: "runs", id: Some("a:b") }]));
    }

    #[test]
    fn type_scope_needs_same_type() {
        assert!(!authorize(&["write:tasks"], "write", &[SESSIONS]));
        assert!(authorize(&["write:tasks"], "write", &[task("any")]));
    }
}
