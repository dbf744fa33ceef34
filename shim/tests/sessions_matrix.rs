//! Acceptance 3 of issue 4: the sessions authorization matrix, plus reads.

mod support;

use serde_json::{json, Value};
use support::Shim;

fn body(task: &str) -> Value {
    json!({ "type": "chat.agent", "taskIdentifier": task, "triggerConfig": { "basePayload": { "chatId": "c1" } } })
}

#[test]
fn create_session_authorization_matrix() {
    let shim = Shim::start("shim_sessions");
    let (env, key) = shim.create_env("prod", "PRODUCTION");
    let create = |cred: Option<&str>, b: &Value| shim.post("/api/v1/sessions", cred, b);

    // Secret key → 201.
    let r = create(Some(&key), &body("anything"));
    assert_eq!(r.status, 201, "{}", r.text());
    let v = r.json();
    assert!(v["id"].as_str().unwrap().starts_with("session_"), "{v}");
    assert_eq!(v["isCached"], false);
    assert_eq!(v["taskIdentifier"], "anything");
    assert_eq!(v["triggerConfig"]["basePayload"]["chatId"], "c1");
    assert_eq!(v["currentRunId"], Value::Null, "no run is triggered");
    assert!(v["publicAccessToken"].as_str().unwrap().split('.').count() == 3);
    assert_eq!(r.header("content-type"), Some("application/json"));

    // JWT write:tasks:foo → foo 201, bar 403.
    let foo = shim.mint(&key, &["write:tasks:foo"]);
    assert_eq!(create(Some(&foo), &body("foo")).status, 201);
    let v = create(Some(&foo), &body("bar")).assert_error(403);
    assert_eq!(v["code"], "unauthorized");
    assert_eq!(v["param"], "access_token");
    assert_eq!(v["type"], "authorization");
    assert!(v["error"].as_str().unwrap().starts_with("Unauthorized: "), "{v}");

    // write:sessions → any task; write:all and admin too.
    for scope in ["write:sessions", "write:all", "admin"] {
        let t = shim.mint(&key, &[scope]);
        for task in ["foo", "bar", "baz"] {
            let r = create(Some(&t), &body(task));
            assert_eq!(r.status, 201, "{scope} {task}: {}", r.text());
        }
    }

    // read:sessions only, or no scopes → 403.
    for scopes in [&["read:sessions"][..], &["read:all"][..], &["write:tasks:foo:extra"][..], &[][..]] {
        let t = shim.mint(&key, scopes);
        create(Some(&t), &body("foo")).assert_error(403);
    }

    // No / garbage / publishable / unknown credentials → 401.
    let v = create(None, &body("foo")).assert_error(401);
    assert_eq!(v["error"], "Invalid or Missing API key");
    create(Some("garbage"), &body("foo")).assert_error(401);
    create(Some("tr_prod_notarealkeynotarealkey00"), &body("foo")).assert_error(401);
    create(Some("eyJhbGciOiJIUzI1NiJ9.e30.AAAA"), &body("foo")).assert_error(401);
    let pk = shim.admin_post("/admin/api/v1/environments", &json!({ "slug": "p2", "type": "PRODUCTION" })).json()["pkApiKey"]
        .as_str()
        .unwrap()
        .to_string();
    create(Some(&pk), &body("foo")).assert_error(401);
    let r = shim.request(
        "POST",
        "/api/v1/sessions",
        &[("Authorization", &format!("Basic {key}"))],
        Some(body("foo").to_string().as_bytes()),
    );
    r.assert_error(401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));

    // Idempotency: same externalId → 200, isCached, same id.
    let mut b = body("foo");
    b["externalId"] = json!("chat-42");
    b["tags"] = json!(["a", "b"]);
    b["metadata"] = json!({ "m": 1 });
    b["expiresAt"] = json!("2999-01-01T00:00:00Z");
    let first = create(Some(&key), &b);
    assert_eq!(first.status, 201, "{}", first.text());
    let first = first.json();
    assert_eq!(first["externalId"], "chat-42");
    assert_eq!(first["tags"], json!(["a", "b"]));
    assert_eq!(first["metadata"], json!({ "m": 1 }));
    assert_eq!(first["expiresAt"], "2999-01-01T00:00:00.000Z");
    let again = create(Some(&foo), &b);
    assert_eq!(again.status, 200, "{}", again.text());
    let again = again.json();
    assert_eq!(again["isCached"], true);
    assert_eq!(again["id"], first["id"]);

    // The session-scoped token reads its own session, not others.
    let session_token = first["publicAccessToken"].as_str().unwrap();
    let r = shim.get("/api/v1/sessions/chat-42", Some(session_token));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["id"], first["id"]);
    let other = create(Some(&key), &body("foo")).json();
    let other_id = other["id"].as_str().unwrap();
    shim.get(&format!("/api/v1/sessions/{other_id}"), Some(session_token)).assert_error(403);
    let _ = env;
}

#[test]
fn read_session_authorization() {
    let shim = Shim::start("shim_sessions_read");
    let (_env, key) = shim.create_env("dev", "DEVELOPMENT");
    let mut b = body("foo");
    b["externalId"] = json!("ext:1/2");
    let created = shim.post("/api/v1/sessions", Some(&key), &b).json();
    let id = created["id"].as_str().unwrap().to_string();

    // By id and by (percent-encoded) externalId, with the secret key.
    let by_id = shim.get(&format!("/api/v1/sessions/{id}"), Some(&key));
    assert_eq!(by_id.status, 200, "{}", by_id.text());
    let v = by_id.json();
    assert_eq!(v["externalId"], "ext:1/2");
    assert!(v.get("publicAccessToken").is_none() && v.get("isCached").is_none(), "{v}");
    let by_ext = shim.get("/api/v1/sessions/ext%3A1%2F2", Some(&key));
    assert_eq!(by_ext.status, 200, "{}", by_ext.text());
    assert_eq!(by_ext.json()["id"], id.as_str());

    for (scopes, want) in [
        (vec!["read:sessions"], 200),
        (vec!["read:all"], 200),
        (vec!["admin"], 200),
        (vec!["read:tasks:foo"], 200),
        (vec!["read:tasks:bar"], 403),
        (vec!["write:sessions"], 403),
    ] {
        let t = shim.mint(&key, &scopes);
        let r = shim.get(&format!("/api/v1/sessions/{id}"), Some(&t));
        assert_eq!(r.status, want, "{scopes:?}: {}", r.text());
    }
    let t = shim.mint(&key, &[&format!("read:sessions:{id}")]);
    assert_eq!(shim.get(&format!("/api/v1/sessions/{id}"), Some(&t)).status, 200);

    shim.get("/api/v1/sessions/nope", Some(&key)).assert_error(404);
    shim.get(&format!("/api/v1/sessions/{id}"), None).assert_error(401);

    // Another environment's key does not see it.
    let (_e2, key2) = shim.create_env("dev2", "DEVELOPMENT");
    shim.get(&format!("/api/v1/sessions/{id}"), Some(&key2)).assert_error(404);
}

#[test]
fn session_validation_and_conflicts() {
    let shim = Shim::start("shim_sessions_val");
    let (_env, key) = shim.create_env("dev", "DEVELOPMENT");
    for (bad, field) in [
        (json!({ "taskIdentifier": "foo", "triggerConfig": {} }), "type"),
        (json!({ "type": 1, "taskIdentifier": "foo", "triggerConfig": {} }), "type"),
        (json!({ "type": "t", "triggerConfig": {} }), "taskIdentifier"),
        (json!({ "type": "t", "taskIdentifier": "foo" }), "triggerConfig"),
        (json!({ "type": "t", "taskIdentifier": "foo", "triggerConfig": [] }), "triggerConfig"),
        (json!({ "type": "t", "taskIdentifier": "foo", "triggerConfig": {}, "tags": "a" }), "tags"),
        (json!({ "type": "t", "taskIdentifier": "foo", "triggerConfig": {}, "tags": [1] }), "tags"),
        (json!({ "type": "t", "taskIdentifier": "foo", "triggerConfig": {}, "metadata": 3 }), "metadata"),
        (json!({ "type": "t", "taskIdentifier": "foo", "triggerConfig": {}, "expiresAt": "tomorrow" }), "expiresAt"),
        (json!({ "type": "t", "taskIdentifier": "foo", "triggerConfig": {}, "externalId": 5 }), "externalId"),
    ] {
        let v = shim.post("/api/v1/sessions", Some(&key), &bad).assert_error(400);
        assert_eq!(v["error"], "Invalid request body");
        assert!(v["issues"].to_string().contains(field), "{field}: {v}");
    }
    // Rules the SQL function owns: lengths, reserved prefix, tag count.
    for bad in [
        json!({ "type": "", "taskIdentifier": "foo", "triggerConfig": {} }),
        json!({ "type": "x".repeat(65), "taskIdentifier": "foo", "triggerConfig": {} }),
        json!({ "type": "t", "taskIdentifier": "x".repeat(129), "triggerConfig": {} }),
        json!({ "type": "t", "taskIdentifier": "foo", "triggerConfig": {}, "externalId": "session_abc" }),
        json!({ "type": "t", "taskIdentifier": "foo", "triggerConfig": {}, "externalId": "   " }),
        json!({ "type": "t", "taskIdentifier": "foo", "triggerConfig": {}, "tags": vec!["t"; 11] }),
        json!({ "type": "t", "taskIdentifier": "foo", "triggerConfig": {}, "tags": ["x".repeat(129)] }),
    ] {
        let v = shim.post("/api/v1/sessions", Some(&key), &bad).assert_error(400);
        assert_eq!(v["error"], "Invalid request body", "{bad}");
    }
    // No Content-Length at all: 413 (SPEC §5); an empty body with one: 400.
    let auth = format!("Bearer {key}");
    shim.request("POST", "/api/v1/sessions", &[("Authorization", &auth)], None).assert_error(413);
    let v = shim.request("POST", "/api/v1/sessions", &[("Authorization", &auth)], Some(b"")).assert_error(400);
    assert_eq!(v["error"], "Invalid request body");
    // A past expiresAt (epoch milliseconds form) is refused by the SQL function.
    let mut b = json!({ "type": "t", "taskIdentifier": "foo", "triggerConfig": {}, "externalId": "old" });
    b["expiresAt"] = json!(1000);
    shim.post("/api/v1/sessions", Some(&key), &b).assert_error(400);
    // A repeat on a closed or expired session: 409.
    let far = 4_102_444_800_000u64; // 2100-01-01 in epoch milliseconds
    b["expiresAt"] = json!(far);
    let r = shim.post("/api/v1/sessions", Some(&key), &b);
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["expiresAt"], "2100-01-01T00:00:00.000Z");
    let mut db = api_auth_tests::connect(&shim.dsn);
    db.execute("UPDATE api_auth.session SET closed_at = now() WHERE external_id = 'old'", &[]).unwrap();
    shim.post("/api/v1/sessions", Some(&key), &b).assert_error(409);
    let v = shim.get("/api/v1/sessions/old", Some(&key)).json();
    assert!(v["closedAt"].is_string(), "{v}");
}
