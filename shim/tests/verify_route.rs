//! `GET /api/v1/auth/verify` (forward auth): preview branches, the optional
//! scope check, HEAD, and the request timeout on slow bodies.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::json;
use support::{Opts, Shim};

#[test]
fn preview_branches_through_verify_and_claims() {
    let shim = Shim::start("shim_branches");
    let (parent, key) = shim.create_env("preview", "PREVIEW");
    let r = shim.admin_post(
        "/admin/api/v1/environments",
        &json!({ "slug": "feat", "type": "PREVIEW", "parentEnvironmentId": parent, "branchName": "feat-x" }),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let branch_id = r.json()["id"].as_str().unwrap().to_string();

    let auth = format!("Bearer {key}");
    let with_branch =
        |b: &str| shim.request("GET", "/api/v1/auth/verify", &[("Authorization", &auth), ("x-trigger-branch", b)], None);
    let r = with_branch("feat-x");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-api-auth-environment-id"), Some(branch_id.as_str()));
    assert_eq!(r.header("x-api-auth-branch"), Some("feat-x"));
    with_branch("nope").assert_error(401);
    shim.get("/api/v1/auth/verify", Some(&key)).assert_error(401);

    // The claims route names the branch; a token minted for it verifies.
    let r = shim.request("POST", "/api/v1/auth/jwt/claims", &[("Authorization", &auth), ("x-trigger-branch", "feat-x")], None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["sub"], branch_id.as_str());
    let r = shim.request(
        "POST",
        "/api/v1/auth/jwt",
        &[("Authorization", &auth), ("x-trigger-branch", "feat-x")],
        Some(br#"{"claims":{"scopes":["read:runs"]}}"#),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let token = r.json()["token"].as_str().unwrap().to_string();
    let r = shim.get("/api/v1/auth/verify", Some(&token));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-api-auth-environment-id"), Some(branch_id.as_str()));

    // A branch has no key of its own to rotate: 409.
    shim.admin_post(&format!("/admin/api/v1/environments/{branch_id}/regenerate-api-key"), &json!({})).assert_error(409);
    // A duplicate branch name: 409.
    shim.admin_post(
        "/admin/api/v1/environments",
        &json!({ "slug": "feat2", "type": "PREVIEW", "parentEnvironmentId": parent, "branchName": "feat-x" }),
    )
    .assert_error(409);
    // An unknown parent: 404.
    shim.admin_post(
        "/admin/api/v1/environments",
        &json!({ "slug": "feat3", "type": "PREVIEW", "parentEnvironmentId": "env_nope", "branchName": "b" }),
    )
    .assert_error(404);
}

#[test]
fn verify_scope_check_and_methods() {
    let shim = Shim::start("shim_verify");
    let (_env, key) = shim.create_env("prod", "PRODUCTION");
    let token = shim.mint(&key, &["write:tasks:foo"]);
    let q = |query: &str, cred: &str| shim.get(&format!("/api/v1/auth/verify?{query}"), Some(cred));

    assert_eq!(q("action=write&resource=tasks:foo", &token).status, 200);
    assert_eq!(q("action=write&resource=tasks:bar&resource=tasks:foo", &token).status, 200);
    let v = q("action=write&resource=tasks:bar", &token).assert_error(403);
    assert_eq!(v["code"], "unauthorized");
    q("action=read&resource=tasks:foo", &token).assert_error(403);
    // Secret keys are not scope-checked.
    assert_eq!(q("action=write&resource=tasks:bar", &key).status, 200);
    q("resource=tasks:foo", &token).assert_error(400);

    // Gateways forward other methods and paths under the prefix.
    let auth = format!("Bearer {token}");
    for method in ["HEAD", "POST", "DELETE"] {
        let r = shim.request(method, "/api/v1/auth/verify/some/upstream/path", &[("Authorization", &auth)], None);
        assert_eq!(r.status, 200, "{method}");
        assert_eq!(r.header("x-api-auth-method"), Some("public_token"));
    }
}

#[test]
fn slow_body_gets_408_and_the_shim_keeps_serving() {
    let dsn = api_auth_tests::fresh_database("shim_timeout");
    let shim = Shim::start_with(&dsn, Opts { args: vec!["--request-timeout=1".into()], ..Default::default() });
    let (_env, key) = shim.create_env("dev", "DEVELOPMENT");
    let mut s = TcpStream::connect(&shim.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head =
        format!("POST /api/v1/auth/jwt HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Length: 100\r\n\r\n{{");
    s.write_all(head.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("application/json") && text.contains("\"error\""), "{text}");
    assert_eq!(shim.get("/healthz", None).status, 200);
}
