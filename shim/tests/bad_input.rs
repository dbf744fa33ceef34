//! Acceptance 5 of issue 4: bad input on every route gets the documented
//! status and a JSON error, and the process keeps serving.

mod support;

use serde_json::json;
use support::{Shim, ADMIN_TOKEN};

const SESSION: &str = r#"{"type":"t","taskIdentifier":"foo","triggerConfig":{}}"#;

#[test]
fn bad_input_on_every_route() {
    let shim = Shim::start("shim_bad_input");
    let (env, key) = shim.create_env("dev", "DEVELOPMENT");
    let key_auth = format!("Bearer {key}");
    let admin_auth = format!("Bearer {ADMIN_TOKEN}");
    let (_, revoked) = shim.rotate(&env);
    let key = shim.rotate(&env).0; // a current key again (the previous one is in grace)
    let key_auth2 = format!("Bearer {key}");
    let _ = key_auth;

    // (path, auth header, route needs a body)
    let body_routes: Vec<(String, String)> = vec![
        ("/api/v1/auth/jwt".into(), key_auth2.clone()),
        ("/api/v1/sessions".into(), key_auth2.clone()),
        (format!("/admin/api/v1/revoked-api-keys/{revoked}"), admin_auth.clone()),
        ("/admin/api/v1/environments".into(), admin_auth.clone()),
        (format!("/admin/api/v1/environments/{env}/regenerate-api-key"), admin_auth.clone()),
    ];
    for (path, auth) in &body_routes {
        let post = |body: &[u8]| {
            shim.request("POST", path, &[("Authorization", auth), ("Content-Type", "application/json")], Some(body))
        };
        // Malformed JSON, non-UTF-8 body, wrong top-level type.
        for bad in [&b"{"[..], b"{\"a\":}", b"\xff\xfe{}", b"[]", b"\"str\"", b"null", b"{\"claims\":\xff}"] {
            let v = post(bad).assert_error(400);
            assert_eq!(v["error"], "Invalid request body", "{path} {bad:?}");
            assert!(v["issues"].is_array(), "{path}: {v}");
        }
        // Oversized body (declared): 413.
        let big = vec![b' '; 40 * 1024];
        post(&big).assert_error(413);
        // Oversized and really sent: 413, and the answer is readable.
        let mut raw = format!("POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nContent-Length: {}\r\n\r\n", 1 << 20)
            .into_bytes();
        raw.extend(std::iter::repeat_n(b'{', 1 << 20));
        shim.raw(&raw).assert_error(413);
        // Chunked body over the limit: 413.
        let mut raw = format!("POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nTransfer-Encoding: chunked\r\n\r\n")
            .into_bytes();
        for _ in 0..40 {
            raw.extend_from_slice(b"400\r\n");
            raw.extend(std::iter::repeat_n(b' ', 1024));
            raw.extend_from_slice(b"\r\n");
        }
        raw.extend_from_slice(b"0\r\n\r\n");
        shim.raw(&raw).assert_error(413);
        // Missing / invalid Authorization.
        let status = 401; // admin routes too: a token is configured here
        shim.request("POST", path, &[], Some(b"{}")).assert_error(status);
        shim.request("POST", path, &[("Authorization", "Bearer")], Some(b"{}")).assert_error(status);
        shim.request("POST", path, &[("Authorization", "Bearer nope")], Some(b"{}")).assert_error(status);
        let mut raw = format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nAuthorization: Bearer ").into_bytes();
        raw.extend_from_slice(b"\xff\xfe\x80\r\n\r\n{}");
        shim.raw(&raw).assert_error(status);
        // An 8 KiB+ credential.
        let huge = format!("Bearer tr_dev_{}", "a".repeat(9000));
        shim.request("POST", path, &[("Authorization", &huge)], Some(b"{}")).assert_error(status);
    }

    // Wrong types per route.
    let typed: Vec<(String, String, serde_json::Value)> = vec![
        ("/api/v1/auth/jwt".into(), key_auth2.clone(), json!({ "expirationTime": [] })),
        ("/api/v1/sessions".into(), key_auth2.clone(), json!({ "type": [], "taskIdentifier": {}, "triggerConfig": 1 })),
        (format!("/admin/api/v1/revoked-api-keys/{revoked}"), admin_auth.clone(), json!({ "expiresAt": true })),
        (format!("/admin/api/v1/revoked-api-keys/{revoked}"), admin_auth.clone(), json!({ "expiresAt": "infinity" })),
        (format!("/admin/api/v1/revoked-api-keys/{revoked}"), admin_auth.clone(), json!({ "expiresAt": "2024-13-45T99:00:00Z" })),
        (format!("/admin/api/v1/revoked-api-keys/{revoked}"), admin_auth.clone(), json!({})),
        ("/admin/api/v1/environments".into(), admin_auth.clone(), json!({ "slug": 1, "type": "PRODUCTION" })),
        ("/admin/api/v1/environments".into(), admin_auth.clone(), json!({ "slug": "x", "type": "WHATEVER" })),
        (format!("/admin/api/v1/environments/{env}/regenerate-api-key"), admin_auth.clone(), json!({ "graceSeconds": "1h" })),
        (format!("/admin/api/v1/environments/{env}/regenerate-api-key"), admin_auth.clone(), json!({ "graceSeconds": -1 })),
    ];
    for (path, auth, body) in &typed {
        let r = shim.request("POST", path, &[("Authorization", auth)], Some(body.to_string().as_bytes()));
        let v = r.assert_error(400);
        assert_eq!(v["error"], "Invalid request body", "{path} {body}: {v}");
    }

    // GET routes: missing/invalid Authorization.
    for path in ["/api/v1/auth/verify", "/api/v1/sessions/abc"] {
        shim.get(path, None).assert_error(401);
        shim.get(path, Some("garbage")).assert_error(401);
        shim.get(path, Some("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4IiwicHViIjp0cnVlfQ.")).assert_error(401);
        let mut raw = format!("GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ").into_bytes();
        raw.extend_from_slice(b"\xc3\x28\xff\r\n\r\n");
        shim.raw(&raw).assert_error(401);
    }
    // Unusable x-trigger-branch: authenticates nothing.
    let mut raw =
        format!("GET /api/v1/auth/verify HTTP/1.1\r\nHost: x\r\nAuthorization: {key_auth2}\r\nx-trigger-branch: ").into_bytes();
    raw.extend_from_slice(b"\xff\xfe\r\n\r\n");
    shim.raw(&raw).assert_error(401);
    // Verify's scope-check query must be well-formed.
    shim.get("/api/v1/auth/verify?action=read", Some(&key)).assert_error(400);
    // Broken escapes are refused, not read as something else: `%+1` was the
    // byte 0x01 to the hand-written decoder (a sign is not a hex digit).
    for bad in ["%zz", "%ff", "%+1", "%4", "x%"] {
        shim.get(&format!("/api/v1/auth/verify?action=read&resource=runs:{bad}"), Some(&key)).assert_error(400);
    }

    // Unknown admin ids.
    shim.request(
        "POST",
        "/admin/api/v1/revoked-api-keys/nope",
        &[("Authorization", &admin_auth)],
        Some(b"{\"expiresAt\":\"2030-01-01T00:00:00Z\"}"),
    )
    .assert_error(404);
    shim.request("POST", "/admin/api/v1/environments/nope/regenerate-api-key", &[("Authorization", &admin_auth)], None)
        .assert_error(404);

    // Protocol-level garbage: a 1 MiB header, non-UTF-8 bytes in the request
    // line and in a header name, no HTTP at all, a huge URI.
    let mut raw = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    raw.extend(std::iter::repeat_n(b'a', 1 << 20));
    raw.extend_from_slice(b"\r\n\r\n");
    shim.raw(&raw).assert_error(431);
    let mut raw = b"POST /api/v1/sessions HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..200 {
        raw.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    raw.extend_from_slice(b"\r\n");
    shim.raw(&raw).assert_error(431);
    shim.raw(b"GET /api/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n").assert_error(400);
    shim.raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-\xff\xfe: 1\r\n\r\n").assert_error(400);
    shim.raw(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n").assert_error(400);
    shim.raw(b"HELLO\r\n\r\n").assert_error(400);
    let long = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(40 * 1024));
    shim.raw(long.as_bytes()).assert_error(414);
    // An unreadable Content-Length.
    shim.raw(b"POST /api/v1/sessions HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n").assert_error(400);

    // Unknown routes and wrong methods: JSON 404/405.
    shim.get("/nope", None).assert_error(404);
    shim.get("/api/v1/sessions/", Some(&key)).assert_error(404);
    shim.get("/api/v1/sessions/%zz", Some(&key)).assert_error(404);
    let r = shim.request("DELETE", "/api/v1/sessions", &[], None);
    r.assert_error(405);
    assert_eq!(r.header("allow"), Some("POST"));
    shim.request("POST", "/healthz", &[], Some(b"{}")).assert_error(405);
    shim.request("GET", "/api/v1/auth/jwt", &[], None).assert_error(405);
    shim.request("PUT", "/admin/api/v1/environments", &[], None).assert_error(405);
    shim.get("/__bench/floor", None).assert_error(404);

    // Still serving, on a fresh connection, and a full happy path still works.
    let r = shim.get("/healthz", None);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "ok");
    let r = shim.request("POST", "/api/v1/sessions", &[("Authorization", &key_auth2)], Some(SESSION.as_bytes()));
    assert_eq!(r.status, 201, "{}", r.text());
    assert!(shim.logs().contains("status=413"));
}
