//! Sessions in SQL: idempotent per external id, session-scoped tokens, 409-style refusals.

use api_auth_tests::*;
use serde_json::json;

#[test]
fn create_is_idempotent_and_returns_a_session_token() {
    let (_, mut db) = fresh("sessions");
    let (env, key) = create_environment(&mut db, "prod", "PRODUCTION");
    let create = "SELECT id, is_cached, public_access_token, tags, trigger_config::text \
                  FROM api_auth.create_session($1, 'chat', 'foo', '{\"basePayload\": {}}', $2, ARRAY['a','b'], '{\"m\": 1}')";
    let r1 = db.query_one(create, &[&env, &"conv-1"]).unwrap();
    let id: String = r1.get(0);
    assert!(id.starts_with("session_"));
    assert!(!r1.get::<_, bool>(1));
    assert_eq!(r1.get::<_, Vec<String>>(3), ["a", "b"]);
    let token: String = r1.get(2);
    assert!(signed_with(&token, &key));
    let claims = jwt_part(&token, 1);
    assert_eq!(claims["sub"], env.as_str());
    assert_eq!(claims["scopes"], json!(["read:sessions:conv-1", "write:sessions:conv-1"]));
    assert!(validate(&mut db, &token).0);

    let r2 = db.query_one(create, &[&env, &"conv-1"]).unwrap();
    assert_eq!(r2.get::<_, String>(0), id);
    assert!(r2.get::<_, bool>(1), "is_cached on repeat");

    // Without an external id every call is a new session; its token is keyed by id.
    let r3 = db.query_one("SELECT id, public_access_token FROM api_auth.create_session($1, 'chat', 'foo')", &[&env]).unwrap();
    let id3: String = r3.get(0);
    assert_eq!(jwt_part(&r3.get::<_, String>(1), 1)["scopes"][0], format!("read:sessions:{id3}"));

    // get_session by id and by external id; not across environments.
    for handle in [id.as_str(), "conv-1"] {
        let got: String = db.query_one("SELECT id FROM api_auth.get_session($1, $2)", &[&env, &handle]).unwrap().get(0);
        assert_eq!(got, id);
    }
    let (other, _) = create_environment(&mut db, "other", "PRODUCTION");
    assert!(db.query("SELECT id FROM api_auth.get_session($1, $2)", &[&other, &id]).unwrap().is_empty());
}

#[test]
fn repeat_on_closed_or_expired_session_is_refused() {
    let (_, mut db) = fresh("sessions_closed");
    let (env, _) = create_environment(&mut db, "prod", "PRODUCTION");
    for ext in ["closed", "expired"] {
        db.execute("SELECT * FROM api_auth.create_session($1, 'chat', 'foo', external_id => $2)", &[&env, &ext]).unwrap();
    }
    db.batch_execute(
        "UPDATE api_auth.session SET closed_at = now() WHERE external_id = 'closed'; \
         UPDATE api_auth.session SET expires_at = now() - interval '1 s' WHERE external_id = 'expired';",
    )
    .unwrap();
    for ext in ["closed", "expired"] {
        let err =
            db.query("SELECT * FROM api_auth.create_session($1, 'chat', 'foo', external_id => $2)", &[&env, &ext]).unwrap_err();
        assert_eq!(sqlstate(&err), "55000", "{ext}");
    }
}
