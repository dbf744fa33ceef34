//! What an outside review of 0.3.0 found, in SQL: each test failed on 0.3.0.

use api_auth_tests::*;
use serde_json::json;

fn login_as(dsn: &str, admin: &mut Client, group: &str) -> String {
    let role = format!("trust_{group}_{}", std::process::id());
    admin.batch_execute(&format!("DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN IN ROLE {group}")).unwrap();
    with_user(dsn, &role)
}

/// A key in grace may be a leaked one: what it mints ends with its window.
#[test]
fn minting_with_a_key_in_grace_is_capped_at_its_window() {
    let (_, mut db) = fresh("trust_grace_cap");
    let (env, old) = create_environment(&mut db, "prod", "PRODUCTION");
    let (_, revoked) = rotate(&mut db, &env);
    set_expiry(&mut db, &revoked, "now() + interval '2 hours'");
    let end: i64 = db
        .query_one(
            "SELECT floor(extract(epoch FROM expires_at))::bigint FROM api_auth.revoked_api_key WHERE id = $1",
            &[&revoked],
        )
        .unwrap()
        .get(0);
    let token: String = db.query_one("SELECT api_auth.mint_public_jwt($1, '{}', '30d')", &[&old]).unwrap().get(0);
    let exp = jwt_part(&token, 1)["exp"].as_i64().unwrap();
    assert!(exp <= end && exp >= end - 1, "exp {exp}, grace window ends {end}");
    // The window's signal travels with a token verified by the key in grace.
    let signed_by_old = sign_jwt(&json!({"alg": "HS256"}), &public_claims(&env), &old);
    let row = db
        .query_one(
            "SELECT matched_by, floor(extract(epoch FROM grace_expires_at))::bigint FROM api_auth.validate_public_jwt($1)",
            &[&signed_by_old],
        )
        .unwrap();
    assert_eq!((row.get::<_, String>(0), row.get::<_, i64>(1)), ("grace".to_owned(), end));
    // A current key mints what it asks for.
    let (current, _) = rotate(&mut db, &env);
    let token: String = db.query_one("SELECT api_auth.mint_public_jwt($1, '{}', '30d')", &[&current]).unwrap().get(0);
    assert!(jwt_part(&token, 1)["exp"].as_i64().unwrap() > now() + 29 * 86400);
}

#[test]
fn sessions_belong_to_their_task() {
    let (_, mut db) = fresh("trust_sessions");
    let (_, key) = create_environment(&mut db, "prod", "PRODUCTION");
    let create = "SELECT id, task_identifier, metadata::text FROM api_auth.create_session_as($1, $2, $3, external_id => 'chat-42', metadata => '{\"secret\": 1}')";
    db.query_one(create, &[&key, &"chat", &"bar"]).unwrap();
    let foo: String = db
        .query_one("SELECT api_auth.mint_public_jwt($1, '{\"scopes\": [\"write:tasks:foo\", \"read:tasks:foo\"]}')", &[&key])
        .unwrap()
        .get(0);
    for (credential, kind, task) in [(&foo, "chat", "foo"), (&key, "other", "bar"), (&key, "chat", "foo")] {
        let err = db.query(create, &[credential, &kind, &task]).unwrap_err();
        assert_eq!(sqlstate(&err), "55000", "{kind}/{task}: {}", db_message(&err));
        assert!(db_message(&err).contains("another task or type"));
    }
    let err = db.query("SELECT * FROM api_auth.get_session_as($1, 'chat-42')", &[&foo]).unwrap_err();
    assert_eq!(sqlstate(&err), "42501");
    assert!(db_message(&err).contains("'read:tasks:bar'"), "{}", db_message(&err));
    // A token for bar's task (or the session itself) reads it.
    let bar: String =
        db.query_one("SELECT api_auth.mint_public_jwt($1, '{\"scopes\": [\"read:tasks:bar\"]}')", &[&key]).unwrap().get(0);
    let task: String =
        db.query_one("SELECT task_identifier FROM api_auth.get_session_as($1, 'chat-42')", &[&bar]).unwrap().get(0);
    assert_eq!(task, "bar");
    // A token without write scope for its task creates nothing.
    let err = db.query(create, &[&bar, &"chat", &"baz"]).unwrap_err();
    assert_eq!(sqlstate(&err), "42501");
    let n: i64 = db.query_one("SELECT count(*) FROM api_auth.session", &[]).unwrap().get(0);
    assert_eq!(n, 1, "nothing half written");
    // Publishable keys and garbage authenticate nothing.
    let pk: String = db.query_one("SELECT pk_api_key FROM api_auth.runtime_environment", &[]).unwrap().get(0);
    for bad in [pk.as_str(), "garbage", ""] {
        let err = db.query(create, &[&bad, &"chat", &"foo"]).unwrap_err();
        assert_eq!(sqlstate(&err), "28000", "{bad:?}");
        assert!(!db_message(&err).contains(&pk), "no key echoed");
    }
}

#[test]
fn external_ids_and_minted_scopes_follow_the_scope_grammar() {
    let (_, mut db) = fresh("trust_grammar");
    let (_, key) = create_environment(&mut db, "prod", "PRODUCTION");
    for bad in ["x admin", "x,admin", "caf\u{e9}", "a\"b", "a'b", &"a".repeat(257)] {
        let err = db
            .query("SELECT * FROM api_auth.create_session_as($1, 'chat', 'foo', external_id => $2)", &[&key, &bad])
            .unwrap_err();
        assert_eq!(sqlstate(&err), "22023", "{bad:?}");
        assert!(db_message(&err).contains("external_id must be 1 to 256 characters of"), "{}", db_message(&err));
    }
    let ok: String = db
        .query_one(
            "SELECT external_id FROM api_auth.create_session_as($1, 'chat', 'foo', external_id => 'user@example.com/chat:1')",
            &[&key],
        )
        .unwrap()
        .get(0);
    assert_eq!(ok, "user@example.com/chat:1");
    for bad in [r#"{"scopes": ["read:sessions:x admin"]}"#, r#"{"scopes": ["read:runs", "read:tasks:café"]}"#] {
        let err = db.query("SELECT api_auth.mint_public_jwt($1, $2::text::jsonb)", &[&key, &bad]).unwrap_err();
        assert_eq!(sqlstate(&err), "22023", "{bad}");
        assert!(db_message(&err).contains("is not a scope"), "{}", db_message(&err));
    }
}

/// '-12 mon +364 days' is positive as an interval (months count 30 days) but
/// lies a day or two in the past as a time: the checks compare times.
#[test]
fn intervals_with_mixed_signs_are_judged_by_the_times_they_give() {
    let (_, mut db) = fresh("trust_intervals");
    let (env, _) = create_environment(&mut db, "prod", "PRODUCTION");
    let (_, revoked) = rotate(&mut db, &env);
    set_expiry(&mut db, &revoked, "now() + interval '1 hour'");
    let positive: bool = db.query_one("SELECT interval '-12 mon +364 days' > interval '0'", &[]).unwrap().get(0);
    assert!(positive, "the interval itself compares as positive");
    let err = db.query("SELECT api_auth.purge_expired_revoked_keys('-12 mon +364 days')", &[]).unwrap_err();
    assert_eq!(sqlstate(&err), "22023", "{}", db_message(&err));
    let left: i64 = db.query_one("SELECT count(*) FROM api_auth.revoked_api_key", &[]).unwrap().get(0);
    assert_eq!(left, 1, "a key still in grace is never purged");
    let err = db.query("SELECT * FROM api_auth.rotate_api_key($1, '-12 mon +364 days')", &[&env]).unwrap_err();
    assert_eq!(sqlstate(&err), "22023", "{}", db_message(&err));
    let rotations: i64 = db.query_one("SELECT count(*) FROM api_auth.revoked_api_key", &[]).unwrap().get(0);
    assert_eq!(rotations, 1, "no rotation half done");
}

/// Signed payloads jsonb cannot store are refused, not raised.
#[test]
fn payloads_jsonb_cannot_store_are_refused_as_claim_invalid() {
    let (_, mut db) = fresh("trust_jsonb");
    let (env, key) = create_environment(&mut db, "prod", "PRODUCTION");
    let base = public_claims(&env).to_string();
    let body = &base[1..base.len() - 1];
    for (payload, code) in [
        (format!(r#"{{{body},"x":"\u0000","x":"fine"}}"#), "claim_invalid"),
        (format!(r#"{{{body},"n":1e-20000}}"#), "claim_invalid"),
        // Beyond what the JSON parser itself reads as a number: malformed.
        (format!(r#"{{{body},"n":1e200000}}"#), "malformed"),
    ] {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let input = format!("{}.{}", b64.encode(r#"{"alg":"HS256"}"#), b64.encode(&payload));
        let token = format!("{input}.{}", hmac_b64("HS256", &input, &key));
        let v = validate(&mut db, &token);
        assert_eq!((v.0, v.1.as_deref()), (false, Some(code)), "{payload}");
    }
}

#[test]
fn direct_updates_and_deletes_of_environments_are_audited_without_keys() {
    let (_, mut db) = fresh("trust_audit");
    let (env, key) = create_environment(&mut db, "prod", "PRODUCTION");
    rotate(&mut db, &env);
    db.batch_execute(&format!(
        "UPDATE api_auth.runtime_environment SET api_key = 'tr_prod_handmadehandmadehandmade' WHERE id = '{env}';
         UPDATE api_auth.runtime_environment SET archived_at = now() WHERE id = '{env}';
         UPDATE api_auth.runtime_environment SET updated_at = now() WHERE id = '{env}';
         DELETE FROM api_auth.runtime_environment WHERE id = '{env}';"
    ))
    .unwrap();
    let events: Vec<(String, Option<String>)> = db
        .query("SELECT action, detail->>'changed' FROM api_auth.audit_event ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let actions: Vec<&str> = events.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(
        actions,
        [
            "environment_created",
            "key_rotated",
            "environment_updated",
            "environment_updated",
            "environment_deleted",
            "revoked_key_deleted"
        ],
        "{events:?}"
    );
    assert_eq!(events[2].1.as_deref(), Some(r#"["api_key"]"#));
    assert_eq!(events[3].1.as_deref(), Some(r#"["archived_at"]"#));
    let leaked: i64 = db
        .query_one(
            "SELECT count(*) FROM api_auth.audit_event a WHERE a::text LIKE '%tr_prod_%' OR a::text LIKE '%' || $1 || '%'",
            &[&key],
        )
        .unwrap()
        .get(0);
    assert_eq!(leaked, 0, "no key in the trail");
}

#[test]
fn token_policy_settings_are_for_superusers_only() {
    let (dsn, mut db) = fresh("trust_settings");
    let (env, key) = create_environment(&mut db, "prod", "PRODUCTION");
    let mut claims = public_claims(&env);
    claims["exp"] = json!(now() - 600);
    let expired = sign_jwt(&json!({"alg": "HS256"}), &claims, &key);
    let mut client = connect(&login_as(&dsn, &mut db, "api_auth_client"));
    // Set before the library is loaded, it is only a placeholder, dropped when
    // the library defines the setting: it never weakens validation.
    let _ = client.batch_execute("SET api_auth.jwt_leeway = 3600");
    assert_eq!(validate(&mut client, &expired).1.as_deref(), Some("expired"));
    for setting in ["jwt_require_exp = off", "jwt_leeway = 3600", "jwt_issuer = 'x'", "jwt_audience = 'x'"] {
        let err = client.batch_execute(&format!("SET api_auth.{setting}")).unwrap_err();
        assert_eq!(sqlstate(&err), "42501", "{setting}: {}", db_message(&err));
    }
    // A superuser may set them, per database or role too.
    db.batch_execute("SET api_auth.jwt_leeway = 30").unwrap();
    db.batch_execute(&format!("ALTER DATABASE {} SET api_auth.jwt_leeway = 5", dsn.rsplit("dbname=").next().unwrap())).unwrap();
    // The rotation default stays per session: admins rotate anyway.
    client.batch_execute("SET api_auth.rotation_grace_period = '1h'").unwrap();
}

#[test]
fn adopting_existing_roles_is_reported() {
    // Roles are cluster-wide; one with a LOGIN attribute and a member stands
    // in for a pre-existing one (a role of that name adopted from an earlier
    // install is the common case).
    let (_, mut db) = fresh("trust_roles");
    let member = format!("trust_member_{}", std::process::id());
    db.batch_execute(&format!("DROP ROLE IF EXISTS {member}; CREATE ROLE {member} IN ROLE api_auth_client")).unwrap();
    db.batch_execute("ALTER ROLE api_auth_client LOGIN").unwrap();
    let notices = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = notices.clone();
    let mut config: postgres::Config = with_dbname(&admin_dsn(), "postgres").parse().unwrap();
    config.notice_callback(move |n| sink.lock().unwrap().push(format!("{}: {}", n.severity(), n.message())));
    let name = format!("trust_roles_new_{}", std::process::id());
    let mut admin = connect(&admin_dsn());
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name}")).unwrap();
    admin.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
    config.dbname(&name);
    let mut c = config.connect(NoTls).unwrap();
    let created = c.batch_execute("CREATE EXTENSION api_auth");
    db.batch_execute("ALTER ROLE api_auth_client NOLOGIN").unwrap();
    db.batch_execute(&format!("DROP ROLE {member}")).unwrap();
    created.unwrap();
    let said = notices.lock().unwrap().join("\n");
    assert!(said.contains("WARNING: api_auth: adopting the existing role api_auth_client as it is; it has LOGIN"), "{said}");
    assert!(said.contains(&member), "members are named: {said}");
}
