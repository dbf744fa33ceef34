//! What an outside review of 0.3.0 found, over real HTTP: a narrow token must
//! not take over another task's session, caller-chosen text must not turn
//! into authority in the forward-auth headers, the shim's own SQL must not
//! resolve through a hostile search_path, and a key in grace must not mint
//! past its window.

mod support;

use serde_json::json;
use support::{Opts, Shim};

fn claims_of(token: &str) -> serde_json::Value {
    api_auth_tests::jwt_part(token, 1)
}

#[test]
fn a_narrow_token_cannot_take_over_another_tasks_session() {
    let shim = Shim::start("trust_takeover");
    let (_env, key) = shim.create_env("prod", "PRODUCTION");
    let r = shim.post(
        "/api/v1/sessions",
        Some(&key),
        &json!({ "type": "chat", "taskIdentifier": "bar", "triggerConfig": {}, "externalId": "chat-42", "metadata": { "secret": 1 } }),
    );
    assert_eq!(r.status, 201, "{}", r.text());

    let foo_only = shim.mint(&key, &["write:tasks:foo", "read:tasks:foo"]);
    let r = shim.post(
        "/api/v1/sessions",
        Some(&foo_only),
        &json!({ "type": "chat", "taskIdentifier": "foo", "triggerConfig": {}, "externalId": "chat-42" }),
    );
    let v = r.assert_error(409);
    let text = r.text();
    assert!(!text.contains("secret") && !text.contains("publicAccessToken"), "nothing of bar's session: {text}");
    assert!(v["error"].as_str().unwrap().contains("another task"), "{v}");
    // Same task, other type: refused too. Same task and type from the owner: the session.
    let r = shim.post(
        "/api/v1/sessions",
        Some(&key),
        &json!({ "type": "other", "taskIdentifier": "bar", "triggerConfig": {}, "externalId": "chat-42" }),
    );
    r.assert_error(409);
    let r = shim.post(
        "/api/v1/sessions",
        Some(&key),
        &json!({ "type": "chat", "taskIdentifier": "bar", "triggerConfig": {}, "externalId": "chat-42" }),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["isCached"], true);

    // Reads are judged against the session's own task.
    let v = shim.get("/api/v1/sessions/chat-42", Some(&foo_only)).assert_error(403);
    assert!(v["error"].as_str().unwrap().contains("read:tasks:bar"), "{v}");
    let bar_reader = shim.mint(&key, &["read:tasks:bar"]);
    let r = shim.get("/api/v1/sessions/chat-42", Some(&bar_reader));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["taskIdentifier"], "bar");
}

#[test]
fn caller_chosen_text_never_becomes_a_scope() {
    let shim = Shim::start("trust_scopes");
    let (env, key) = shim.create_env("prod", "PRODUCTION");
    // An externalId that would read as "... x admin ..." in a space-separated header.
    for bad in ["x admin", "x,admin", "caf\u{e9}", "a\"b"] {
        let r = shim.post(
            "/api/v1/sessions",
            Some(&key),
            &json!({ "type": "chat", "taskIdentifier": "foo", "triggerConfig": {}, "externalId": bad }),
        );
        let v = r.assert_error(400);
        assert!(v.to_string().contains("external_id must be"), "{bad:?}: {v}");
    }
    // Minting refuses scopes outside the grammar.
    let r = shim.post("/api/v1/auth/jwt", Some(&key), &json!({ "claims": { "scopes": ["read:sessions:x admin"] } }));
    let v = r.assert_error(400);
    assert!(v.to_string().contains("not a scope"), "{v}");

    // A token signed elsewhere (the SDK signs locally) may carry anything: the
    // forward-auth header encodes it, never splits it into `admin`, never drops it.
    let scopes = ["read:sessions:x admin", "read:runs", "read:tasks:caf\u{e9}"];
    let claims = json!({
        "sub": env, "pub": true, "iss": "https://id.trigger.dev", "aud": "https://api.trigger.dev",
        "iat": api_auth_tests::now(), "exp": api_auth_tests::now() + 600, "scopes": scopes,
    });
    let token = api_auth_tests::sign_jwt(&json!({ "alg": "HS256" }), &claims, &key);
    let r = shim.get("/api/v1/auth/verify", Some(&token));
    assert_eq!(r.status, 200, "{}", r.text());
    let header = r.header("x-api-auth-scopes").expect("the scopes header is never omitted");
    assert_eq!(header, "read:sessions:x%20admin read:runs read:tasks:caf%C3%A9");
    assert!(!header.split(' ').any(|s| s == "admin"), "{header}");
    assert_eq!(r.json()["scopes"], json!(scopes), "the JSON body keeps them as they are");
    // And the malformed scope grants nothing.
    shim.get("/api/v1/auth/verify?action=read&resource=sessions:x%20admin", Some(&token)).assert_error(403);
}

#[test]
fn a_key_in_grace_mints_nothing_that_outlives_its_window() {
    let shim = Shim::start("trust_grace_mint");
    let (env, old_key) = shim.create_env("prod", "PRODUCTION");
    let (_new_key, revoked) = shim.rotate(&env);
    let window_end = api_auth_tests::now() + 3600;
    let r = shim.admin_post(&format!("/admin/api/v1/revoked-api-keys/{revoked}"), &json!({ "expiresAt": window_end * 1000 }));
    assert_eq!(r.status, 200, "{}", r.text());

    let r = shim.post("/api/v1/auth/jwt", Some(&old_key), &json!({ "expirationTime": "30d" }));
    assert_eq!(r.status, 200, "{}", r.text());
    let exp = claims_of(r.json()["token"].as_str().unwrap())["exp"].as_i64().unwrap();
    assert!(exp <= window_end, "exp {exp} must not pass the grace window's end {window_end}");
    assert!(exp >= window_end - 1, "capped at the window's end, not shorter: {exp} vs {window_end}");

    let r = shim.post(
        "/api/v1/sessions",
        Some(&old_key),
        &json!({ "type": "chat", "taskIdentifier": "foo", "triggerConfig": {}, "externalId": "g1" }),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let exp = claims_of(r.json()["publicAccessToken"].as_str().unwrap())["exp"].as_i64().unwrap();
    assert!(exp <= window_end, "the session token too: {exp} vs {window_end}");
}

/// Objects planted in a schema the shim role searches first: an operator
/// `/ (float8, numeric)` (PostgreSQL has none built in, so `float8 / 1000.0`
/// would pick it) and look-alikes of the functions the shim's SQL calls. Each
/// records its call; none may ever be called.
#[test]
fn the_shims_sql_never_resolves_through_a_hostile_search_path() {
    let dsn = api_auth_tests::fresh_database("trust_search_path");
    let role = format!("shim_hijack_{}", std::process::id());
    let mut su = api_auth_tests::connect(&dsn);
    su.batch_execute(&format!(
        "DROP ROLE IF EXISTS {role};
         CREATE ROLE {role} LOGIN IN ROLE api_auth_client, api_auth_admin;
         CREATE SCHEMA evil;
         CREATE TABLE evil.calls (what text);
         GRANT USAGE ON SCHEMA evil TO PUBLIC;
         GRANT INSERT, SELECT ON evil.calls TO PUBLIC;
         CREATE FUNCTION evil.div(float8, numeric) RETURNS float8 LANGUAGE plpgsql AS
           $$ BEGIN INSERT INTO evil.calls VALUES ('/'); RETURN $1 / $2::float8; END $$;
         CREATE OPERATOR evil./ (LEFTARG = float8, RIGHTARG = numeric, FUNCTION = evil.div);
         CREATE FUNCTION evil.to_timestamp(float8) RETURNS timestamptz LANGUAGE plpgsql AS
           $$ BEGIN INSERT INTO evil.calls VALUES ('to_timestamp'); RETURN pg_catalog.to_timestamp($1); END $$;
         CREATE FUNCTION evil.to_char(timestamp, text) RETURNS text LANGUAGE plpgsql AS
           $$ BEGIN INSERT INTO evil.calls VALUES ('to_char'); RETURN pg_catalog.to_char($1, $2); END $$;
         CREATE FUNCTION evil.set_config(text, text, boolean) RETURNS text LANGUAGE plpgsql AS
           $$ BEGIN INSERT INTO evil.calls VALUES ('set_config'); RETURN pg_catalog.set_config($1, $2, $3); END $$;
         ALTER ROLE {role} SET search_path = evil, pg_catalog, public;"
    ))
    .unwrap();
    // The trap is live for this role: its own session resolves through evil.
    let mut as_role = api_auth_tests::connect(&api_auth_tests::with_user(&dsn, &role));
    as_role.batch_execute("SELECT (1::float8 / 1000.0)").unwrap();
    let planted: i64 = as_role.query_one("SELECT count(*) FROM evil.calls", &[]).unwrap().get(0);
    assert_eq!(planted, 1, "the planted operator is what a plain session of this role picks");
    su.batch_execute("TRUNCATE evil.calls").unwrap();

    let shim = Shim::start_with(&api_auth_tests::with_user(&dsn, &role), Opts::default());
    let (env, key) = shim.create_env("prod", "PRODUCTION");
    let (_new, revoked) = shim.rotate(&env);
    let r = shim.admin_post(
        &format!("/admin/api/v1/revoked-api-keys/{revoked}"),
        &json!({ "expiresAt": (api_auth_tests::now() + 60) * 1000 }),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = shim.admin_post(&format!("/admin/api/v1/environments/{env}/regenerate-api-key"), &json!({ "graceSeconds": 30 }));
    assert_eq!(r.status, 200, "{}", r.text());
    // The first key, in grace: its window's end is rendered by the shim's SQL too.
    let grace = shim.get("/api/v1/auth/verify", Some(&key));
    assert_eq!(grace.status, 200, "{}", grace.text());
    assert!(grace.header("x-api-auth-grace-expires-at").is_some());
    let key = shim.create_env("other", "STAGING").1;
    let expires = (api_auth_tests::now() + 3600) * 1000;
    let r = shim.post(
        "/api/v1/sessions",
        Some(&key),
        &json!({ "type": "chat", "taskIdentifier": "foo", "triggerConfig": {}, "externalId": "e1", "expiresAt": expires }),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(shim.get("/api/v1/sessions/e1", Some(&key)).status, 200);
    assert_eq!(shim.get("/api/v1/auth/verify", Some(&key)).status, 200);
    let token = shim.mint(&key, &["read:runs"]);
    assert_eq!(shim.get("/api/v1/auth/verify", Some(&token)).status, 200);
    drop(shim);

    let called: Vec<String> = su.query("SELECT what FROM evil.calls", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert!(called.is_empty(), "the shim called planted objects: {called:?}");
    let _ = su.batch_execute(&format!("DROP SCHEMA evil CASCADE; DROP OWNED BY {role}; DROP ROLE {role};"));
}
