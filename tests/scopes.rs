//! Acceptance 4: the scope grammar and OR rule, table-driven through SQL.

use api_auth_tests::*;

#[test]
fn authorize_table() {
    let (_, mut db) = fresh("scopes");
    let session_route = r#"[{"type": "tasks", "id": "foo"}, {"type": "sessions"}]"#;
    let bar_route = r#"[{"type": "tasks", "id": "bar"}, {"type": "sessions"}]"#;
    let cases: &[(&[&str], &str, &str, bool)] = &[
        (&["write:tasks:foo"], "write", session_route, true),
        (&["write:tasks:foo"], "write", bar_route, false),
        (&["write:tasks"], "write", bar_route, true),
        (&["write:sessions"], "write", session_route, true),
        (&["write:sessions"], "write", bar_route, true),
        (&["write:all"], "write", bar_route, true),
        (&["admin"], "write", bar_route, true),
        (&["admin"], "read", bar_route, true),
        (&["read:sessions"], "write", session_route, false),
        (&["read:all"], "write", session_route, false),
        (&["read:sessions"], "read", session_route, true),
        (&["write:tasks:foo", "read:sessions"], "write", bar_route, false),
        (&["read:sessions", "write:tasks:bar"], "write", bar_route, true),
        (&[], "write", session_route, false),
        // Malformed scopes grant nothing, even next to the resource they name.
        (&["write"], "write", session_route, false),
        (&["write:"], "write", session_route, false),
        (&[":tasks:foo"], "write", session_route, false),
        (&["write::foo"], "write", session_route, false),
        (&["write:tasks:"], "write", session_route, false),
        (&["write:all:foo"], "write", session_route, false),
        (&["Admin"], "write", session_route, false),
        (&[" admin"], "write", session_route, false),
        (&[""], "write", session_route, false),
        (&["write:tasks:foo:extra"], "write", session_route, false),
        (&["junk", "write:tasks:foo"], "write", session_route, true),
        (&["write:tasks:foo"], "write", "[]", false),
    ];
    for (scopes, action, resources, want) in cases {
        let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
        let got: bool =
            db.query_one("SELECT api_auth.authorize($1, $2, $3::text::jsonb)", &[&scopes, action, resources]).unwrap().get(0);
        assert_eq!(got, *want, "{scopes:?} {action} {resources}");
    }
}

#[test]
fn authorize_refuses_malformed_arguments() {
    let (_, mut db) = fresh("scopes_bad");
    let scopes = vec!["admin".to_string()];
    for (action, resources, want) in [
        (Some("write"), Some(r#"{"type": "tasks"}"#), "22023"),
        (Some("write"), Some(r#"[{"id": "foo"}]"#), "22023"),
        (Some("write"), Some(r#"["tasks"]"#), "22023"),
        (Some("write"), Some(r#"[{"type": "tasks", "id": 7}]"#), "22023"),
        (Some("write"), Some(r#"[{"type": ""}]"#), "22023"),
        (Some(""), Some("[]"), "22023"),
        (None, Some("[]"), "22004"),
        (Some("write"), None, "22004"),
    ] {
        let err = db.query("SELECT api_auth.authorize($1, $2, $3::text::jsonb)", &[&scopes, &action, &resources]).unwrap_err();
        assert_eq!(sqlstate(&err), want, "{action:?} {resources:?}");
    }
    let many: String = format!("[{}]", vec![r#"{"type":"t"}"#; 65].join(","));
    let err = db.query("SELECT api_auth.authorize($1, 'write', $2::text::jsonb)", &[&scopes, &many]).unwrap_err();
    assert_eq!(sqlstate(&err), "22023");
    let null_scopes: bool =
        db.query_one("SELECT api_auth.authorize(NULL, 'write', '[{\"type\": \"tasks\"}]')", &[]).unwrap().get(0);
    assert!(!null_scopes, "NULL scopes grant nothing");
    let null_elems: bool = db
        .query_one("SELECT api_auth.authorize(ARRAY[NULL, 'write:tasks'], 'write', '[{\"type\": \"tasks\"}]')", &[])
        .unwrap()
        .get(0);
    assert!(null_elems, "NULL elements are skipped");
}
