//! The shim as the extension's least-privilege roles (0.2.0): the public pool
//! logs in as a member of `api_auth_client`, the admin pool
//! (API_AUTH_ADMIN_DATABASE_URL) as a member of `api_auth_admin`.

mod support;

use serde_json::json;
use support::{Opts, Shim};

#[test]
fn shim_runs_with_client_and_admin_roles() {
    let dsn = api_auth_tests::fresh_database("shim_roles");
    let pid = std::process::id();
    let (client_role, admin_role) = (format!("shim_client_{pid}"), format!("shim_admin_{pid}"));
    let mut su = api_auth_tests::connect(&dsn);
    su.batch_execute(&format!(
        "DROP ROLE IF EXISTS {client_role}; DROP ROLE IF EXISTS {admin_role};
         CREATE ROLE {client_role} LOGIN IN ROLE api_auth_client;
         CREATE ROLE {admin_role} LOGIN IN ROLE api_auth_admin;"
    ))
    .expect("create login roles (the extension's 0.2.0 roles must exist)");

    let shim = Shim::start_with(
        &api_auth_tests::with_user(&dsn, &client_role),
        Opts {
            env: vec![("API_AUTH_ADMIN_DATABASE_URL".into(), api_auth_tests::with_user(&dsn, &admin_role))],
            ..Default::default()
        },
    );
    assert_eq!(shim.get("/readyz", None).status, 200);
    let (env, key) = shim.create_env("prod", "PRODUCTION");
    let token = shim.mint(&key, &["write:tasks:foo", "read:sessions"]);
    assert_eq!(shim.get("/api/v1/auth/verify", Some(&token)).status, 200);
    let r = shim.post(
        "/api/v1/sessions",
        Some(&token),
        &json!({ "type": "t", "taskIdentifier": "foo", "triggerConfig": {}, "externalId": "e1" }),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(shim.get("/api/v1/sessions/e1", Some(&token)).status, 200);
    let (_new, revoked) = shim.rotate(&env);
    let r =
        shim.admin_post(&format!("/admin/api/v1/revoked-api-keys/{revoked}"), &json!({ "expiresAt": "2000-01-01T00:00:00Z" }));
    assert_eq!(r.status, 200, "{}", r.text());
    shim.get("/api/v1/auth/verify", Some(&key)).assert_error(401);
    drop(shim);

    // The client role alone cannot run admin routes: a clear 500, logged, no detail leaked.
    let shim = Shim::start_with(&api_auth_tests::with_user(&dsn, &client_role), Opts::default());
    let v = shim.admin_post("/admin/api/v1/environments", &json!({ "slug": "x", "type": "PRODUCTION" })).assert_error(500);
    assert_eq!(v["error"], "Internal server error");
    assert!(shim.logs().contains("lacks a privilege"), "{}", shim.logs());
    drop(shim);

    let mut su = api_auth_tests::connect(&dsn);
    let _ =
        su.batch_execute(&format!("DROP OWNED BY {client_role}, {admin_role}; DROP ROLE {client_role}; DROP ROLE {admin_role};"));
}
