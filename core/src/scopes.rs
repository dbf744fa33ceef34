//! The scope grammar and the OR rule of SPEC §3.
//!
//! A scope is `action:type`, `action:type:id`, `action:all`, or `admin`.
//! Access is granted when *any* resource is matched by *any* scope.
//! Malformed scopes are not errors when a token is checked: they simply match
//! nothing, so a token carrying junk is no more powerful than one without it.
//! Where this service *writes* scopes (minting, session tokens) anything
//! outside the grammar is refused instead ([`check`]).
//!
//! Why ids have a grammar of their own: scopes travel as text that others
//! split. The forward-auth header lists them separated by spaces, and a
//! session token embeds the caller's `externalId` in its scopes. Were spaces
//! (or commas, quotes, non-ASCII) allowed in an id, `read:sessions:x admin`
//! would read as `admin` to a gateway splitting on spaces. So an id is 1 to
//! [`MAX_ID_LEN`] characters of `A-Z a-z 0-9 - _ . ~ : @ / + =`: enough for
//! task slugs, UUIDs, e-mail addresses, paths and base64, and nothing that
//! separates, quotes or needs encoding in an HTTP header.

/// Longest scope string considered; longer ones match nothing.
pub const MAX_SCOPE_LEN: usize = 512;
/// Longest id in `action:type:id` (and longest session `externalId`).
pub const MAX_ID_LEN: usize = 256;
/// The characters of an id besides ASCII letters and digits.
pub const ID_PUNCTUATION: &[u8] = b"-_.~:@/+=";

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

/// One byte of an id: an ASCII letter or digit, or one of [`ID_PUNCTUATION`].
pub fn is_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || ID_PUNCTUATION.contains(&b)
}

/// Is `id` a well-formed resource id (the `id` of `action:type:id`)?
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_LEN && id.bytes().all(is_id_byte)
}

/// What a well-formed id is, for error messages.
pub const ID_RULE: &str = "1 to 256 characters of A-Z a-z 0-9 - _ . ~ : @ / + =";

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
        (kind, Some(id)) if is_valid_id(id) => Some(Scope::One { action, kind, id }),
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
            Scope::One { action: a, kind, id } => a == action && kind == resource.kind && resource.id == Some(id),
        }
    }
}

/// A scope about to be written into a token: `Ok` if it is in the grammar,
/// else a message saying what a scope is.
pub fn check(scope: &str) -> Result<(), String> {
    match parse(scope) {
        Some(_) => Ok(()),
        None => Err(format!(
            "\"{}\" is not a scope: a scope is admin, action:all, action:type or action:type:id \
             (action and type: letters, digits, - and _; id: {ID_RULE})",
            scope.escape_default()
        )),
    }
}

/// The OR rule: any resource matched by any well-formed scope.
pub fn authorize<S: AsRef<str>>(scopes: &[S], action: &str, resources: &[Resource<'_>]) -> bool {
    scopes.iter().filter_map(|s| parse(s.as_ref())).any(|scope| resources.iter().any(|r| scope.grants(action, r)))
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
        for bad in [
            "",
            "write",
            "write:",
            ":tasks",
            "write::foo",
            "write:tasks:",
            "write:all:x",
            "ADMIN ",
            " admin",
            "wr ite:tasks",
            "write:tasks:a\nb",
            // ids that a reader splitting on spaces, commas or quotes would misread
            "read:sessions:x admin",
            "read:sessions:x,admin",
            "read:sessions:x\"",
            "read:tasks:caf\u{e9}",
            "read:tasks:a\tb",
            "read:tasks:a;b",
            "read:tasks:a%20b",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
            assert!(!authorize(&[bad], "write", &[task("foo"), SESSIONS]), "{bad:?}");
        }
        assert_eq!(parse(&"a".repeat(MAX_SCOPE_LEN + 1)), None);
    }

    #[test]
    fn the_id_grammar() {
        for good in ["foo", "run_1234", "a:b", "user@example.com", "org/proj/task", "b64+/=", "x.y~z-1"] {
            assert!(is_valid_id(good), "{good:?}");
            assert!(check(&format!("read:tasks:{good}")).is_ok());
        }
        assert!(is_valid_id(&"a".repeat(MAX_ID_LEN)));
        assert!(!is_valid_id(&"a".repeat(MAX_ID_LEN + 1)));
        assert!(!is_valid_id(""));
        let err = check("read:sessions:x admin").unwrap_err();
        assert!(err.contains("not a scope") && err.contains("A-Z a-z 0-9"), "{err}");
        assert!(check("write:tasks:a\nb").unwrap_err().contains("\\n"), "control characters are shown escaped");
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
