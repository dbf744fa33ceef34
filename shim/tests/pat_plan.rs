//! Acceptance 1 and 2 of issue 4, over real HTTP against the real binary.

mod support;

use serde_json::json;
use support::{tamper_signature, Shim};

fn verify(shim: &Shim, credential: &str) -> support::Resp {
    shim.get("/api/v1/auth/verify", Some(credential))
}

/// Acceptance 1, the PAT test plan: pre-rotation PAT 200; rotate; same PAT
/// within grace 200; fresh PAT from the new key 200; revoked key's expiry set
/// to the past: the old PAT 401; bogus signature 401.
#[test]
fn pat_plan_over_http() {
    let shim = Shim::start("shim_pat");
    let (env, old_key) = shim.create_env("prod", "PRODUCTION");

    let old_pat = shim.mint(&old_key, &["read:runs"]);
    let r = verify(&shim, &old_pat);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-api-auth-environment-id"), Some(env.as_str()));
    assert_eq!(r.header("x-api-auth-method"), Some("public_token"));
    assert_eq!(r.header("x-api-auth-matched-by"), Some("current"));

    let (new_key, revoked_id) = shim.rotate(&env);
    assert_ne!(new_key, old_key);

    // Within grace: the old PAT (signed with the old key) still verifies, via the grace key.
    let r = verify(&shim, &old_pat);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-api-auth-matched-by"), Some("grace"));
    // The old secret key itself is in grace too.
    let r = verify(&shim, &old_key);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-api-auth-method"), Some("grace_key"));

    let fresh_pat = shim.mint(&new_key, &["read:runs"]);
    let r = verify(&shim, &fresh_pat);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-api-auth-matched-by"), Some("current"));
    let r = verify(&shim, &new_key);
    assert_eq!(r.header("x-api-auth-method"), Some("current_key"));

    // End the grace window now.
    let r = shim
        .admin_post(&format!("/admin/api/v1/revoked-api-keys/{revoked_id}"), &json!({ "expiresAt": "2000-01-01T00:00:00.000Z" }));
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["success"], true);
    assert_eq!(v["revokedApiKey"]["id"], revoked_id.as_str());
    assert_eq!(v["revokedApiKey"]["runtimeEnvironmentId"], env.as_str());
    assert_eq!(v["revokedApiKey"]["expiresAt"], "2000-01-01T00:00:00.000Z");

    verify(&shim, &old_pat).assert_error(401);
    verify(&shim, &old_key).assert_error(401);
    assert_eq!(verify(&shim, &fresh_pat).status, 200);

    // Bogus signature.
    verify(&shim, &tamper_signature(&fresh_pat)).assert_error(401);

    // Moving the expiry forward again brings the old PAT back (SPEC §3).
    let r =
        shim.admin_post(&format!("/admin/api/v1/revoked-api-keys/{revoked_id}"), &json!({ "expiresAt": "2999-01-01T00:00:00Z" }));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(verify(&shim, &old_pat).status, 200);

    // Unknown revoked key id: 404 with the platform's message.
    let v = shim
        .admin_post("/admin/api/v1/revoked-api-keys/rak_doesnotexist", &json!({ "expiresAt": "2000-01-01T00:00:00Z" }))
        .assert_error(404);
    assert_eq!(v["error"], "Revoked API key not found");

    // The audit trail names the shim's admin identity for every admin change.
    let mut db = api_auth_tests::connect(&shim.dsn);
    let events: Vec<(String, Option<String>)> = db
        .query("SELECT action, actor FROM api_auth.audit_event ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let actions: Vec<&str> = events.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(actions, ["environment_created", "key_rotated", "expiry_changed", "expiry_changed"]);
    for (action, actor) in &events {
        assert!(actor.as_deref().is_some_and(|a| a.starts_with("api-auth-shim admin")), "{action}: actor {actor:?}");
    }
}

/// Acceptance 2: minting with the old (grace) key returns a token signed with
/// the canonical key, which still validates after the grace row has expired.
#[test]
fn token_minted_with_grace_key_outlives_the_grace_window() {
    let shim = Shim::start("shim_grace_mint");
    let (env, old_key) = shim.create_env("stg", "STAGING");
    let (_new_key, revoked_id) = shim.rotate(&env);

    // The claims route and the mint route both accept the grace key.
    let r = shim.post("/api/v1/auth/jwt/claims", Some(&old_key), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({ "sub": env, "pub": true }));
    let pat = shim.mint(&old_key, &["write:tasks:foo"]);
    let r = shim.get("/api/v1/auth/verify", Some(&pat));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-api-auth-matched-by"), Some("current"), "signed with the canonical key");

    let r =
        shim.admin_post(&format!("/admin/api/v1/revoked-api-keys/{revoked_id}"), &json!({ "expiresAt": "2000-01-01T00:00:00Z" }));
    assert_eq!(r.status, 200, "{}", r.text());

    // The old key no longer mints or authenticates...
    shim.post("/api/v1/auth/jwt", Some(&old_key), &json!({})).assert_error(401);
    shim.post("/api/v1/auth/jwt/claims", Some(&old_key), &json!({})).assert_error(401);
    // ...but the token it minted during grace still works, for verify and for sessions.
    let r = shim.get("/api/v1/auth/verify", Some(&pat));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-api-auth-scopes"), Some("write:tasks:foo"));
    let r = shim.post(
        "/api/v1/sessions",
        Some(&pat),
        &json!({ "type": "chat.agent", "taskIdentifier": "foo", "triggerConfig": { "basePayload": {} } }),
    );
    assert_eq!(r.status, 201, "{}", r.text());
}

/// Mint route details: expiration forms, bad claims, the `exp` it sets.
#[test]
fn mint_route_bodies() {
    let shim = Shim::start("shim_mint");
    let (_env, key) = shim.create_env("dev", "DEVELOPMENT");

    // Empty body: {} (default claims, 1h).
    let r = shim.request("POST", "/api/v1/auth/jwt", &[("Authorization", &format!("Bearer {key}"))], None);
    assert_eq!(r.status, 200, "{}", r.text());
    let exp_of = |token: &str| -> i64 {
        use std::io::Read;
        let payload = token.split('.').nth(1).unwrap();
        // base64url decode without a dependency: via the shim's own verify is not
        // enough, so decode by hand.
        let table = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut bits = 0u32;
        let mut n = 0;
        let mut out = Vec::new();
        for c in payload.bytes() {
            let v = table.iter().position(|&t| t == c).unwrap() as u32;
            bits = (bits << 6) | v;
            n += 6;
            if n >= 8 {
                n -= 8;
                out.push((bits >> n) as u8);
                bits &= (1 << n) - 1;
            }
        }
        let mut s = String::new();
        out.as_slice().read_to_string(&mut s).unwrap();
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        v["exp"].as_i64().unwrap() - v["iat"].as_i64().unwrap()
    };
    assert_eq!(exp_of(r.json()["token"].as_str().unwrap()), 3600);

    let r = shim.post("/api/v1/auth/jwt", Some(&key), &json!({ "expirationTime": "15m" }));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(exp_of(r.json()["token"].as_str().unwrap()), 900);

    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let r = shim.post("/api/v1/auth/jwt", Some(&key), &json!({ "expirationTime": now + 120 }));
    assert_eq!(r.status, 200, "{}", r.text());

    for bad in [
        json!({ "expirationTime": "soon" }),
        json!({ "expirationTime": 5 }),
        json!({ "expirationTime": -5 }),
        json!({ "expirationTime": 1.5 }),
        json!({ "expirationTime": true }),
        json!({ "claims": "x" }),
        json!({ "claims": { "scopes": "read:runs" } }),
        json!({ "claims": { "scopes": [1, 2] } }),
        json!([1]),
    ] {
        let v = shim.post("/api/v1/auth/jwt", Some(&key), &bad).assert_error(400);
        assert_eq!(v["error"], "Invalid request body", "{bad}");
        assert!(v["issues"].is_array(), "{v}");
    }
    // A bad body with an unknown key is still 401 (authentication first).
    shim.post("/api/v1/auth/jwt", Some("tr_dev_unknownunknownunknown00"), &json!({ "claims": "x" })).assert_error(401);
}
