//! Acceptance 2: public access tokens across a rotation, and every refusal code.

use api_auth_tests::*;
use serde_json::json;

fn mint(db: &mut Client, key: &str, claims: &str, expiration: &str) -> Option<String> {
    db.query_one("SELECT api_auth.mint_public_jwt($1, $2::text::jsonb, $3)", &[&key, &claims, &expiration]).unwrap().get(0)
}

#[test]
fn tokens_survive_rotation_through_the_revoked_fallback() {
    let (_, mut db) = fresh("tok_rotation");
    let (env, k1) = create_environment(&mut db, "prod", "PRODUCTION");
    let t1 = mint(&mut db, &k1, r#"{"scopes":["read:runs"]}"#, "1h").expect("token");
    assert_eq!(jwt_part(&t1, 0), json!({"alg": "HS256"}), "the SDK's exact header");
    assert!(signed_with(&t1, &k1));
    assert_eq!(validate(&mut db, &t1), (true, None, Some(env.clone()), Some("current".into()), None));

    let (k2, revoked) = rotate(&mut db, &env);
    // The old token still validates, through the revoked-key fallback.
    assert_eq!(validate(&mut db, &t1), (true, None, Some(env.clone()), Some("grace".into()), Some(revoked.clone())));

    // Minting with the old key during grace signs with the canonical new key.
    let fresh_token = mint(&mut db, &k1, "{}", "1h").expect("grace key mints");
    assert!(signed_with(&fresh_token, &k2), "signed with K2");
    assert!(!signed_with(&fresh_token, &k1), "not with K1");
    assert_eq!(jwt_part(&fresh_token, 1)["sub"], env.as_str());

    set_expiry(&mut db, &revoked, "now()");
    assert_eq!(validate(&mut db, &t1).1.as_deref(), Some("invalid_signature"), "K1 token after K1 expired");
    // ... while the token minted with the grace key lives on.
    assert_eq!(validate(&mut db, &fresh_token).0, true);
    // And the expired key mints nothing.
    assert_eq!(mint(&mut db, &k1, "{}", "1h"), None);
}

#[test]
fn claims_of_minted_tokens() {
    let (_, mut db) = fresh("tok_claims");
    let (env, k) = create_environment(&mut db, "dev", "DEVELOPMENT");
    let t =
        mint(&mut db, &k, r#"{"scopes":["write:tasks:foo"],"sub":"env_evil","pub":false,"realtime":{"x":1}}"#, "15m").unwrap();
    let c = jwt_part(&t, 1);
    assert_eq!(c["sub"], env.as_str(), "sub cannot be overridden");
    assert_eq!(c["pub"], true);
    assert_eq!(c["iss"], "https://id.trigger.dev");
    assert_eq!(c["aud"], "https://api.trigger.dev");
    assert_eq!(c["scopes"], json!(["write:tasks:foo"]));
    assert_eq!(c["realtime"], json!({"x": 1}));
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 900);
    let default_exp = jwt_part(&mint(&mut db, &k, "{}", "1h").unwrap(), 1);
    assert_eq!(default_exp["exp"].as_i64().unwrap() - default_exp["iat"].as_i64().unwrap(), 3600);
    let dflt: String = db.query_one("SELECT api_auth.mint_public_jwt($1)", &[&k]).unwrap().get(0);
    let c = jwt_part(&dflt, 1);
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 3600, "default 1h");
    assert!(c.get("scopes").is_none());

    let absolute = now() + 120;
    let c = jwt_part(&mint(&mut db, &k, "{}", &absolute.to_string()).unwrap(), 1);
    assert_eq!(c["exp"], absolute);
    let c = jwt_part(&mint(&mut db, &k, "{}", "2d").unwrap(), 1);
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 172_800);

    // A different issuer setting is written and then required.
    db.batch_execute("SET api_auth.jwt_issuer = 'https://id.example.com'").unwrap();
    let t = mint(&mut db, &k, "{}", "1h").unwrap();
    assert_eq!(jwt_part(&t, 1)["iss"], "https://id.example.com");
    assert!(validate(&mut db, &t).0);
    db.batch_execute("RESET api_auth.jwt_issuer").unwrap();
    assert_eq!(validate(&mut db, &t).1.as_deref(), Some("claim_invalid"));
}

#[test]
fn mint_refuses_bad_arguments() {
    let (_, mut db) = fresh("tok_badmint");
    let (_, k) = create_environment(&mut db, "dev", "DEVELOPMENT");
    for (claims, exp) in [
        ("[]", "1h"),
        ("\"x\"", "1h"),
        (r#"{"scopes":"admin"}"#, "1h"),
        (r#"{"scopes":[1]}"#, "1h"),
        ("{}", "soon"),
        ("{}", "0s"),
        ("{}", "-1h"),
        ("{}", "400d"),
        ("{}", "1"),
    ] {
        let err = db.query("SELECT api_auth.mint_public_jwt($1, $2::text::jsonb, $3)", &[&k, &claims, &exp]).unwrap_err();
        assert_eq!(sqlstate(&err), "22023", "{claims} {exp}: {}", db_message(&err));
        assert!(!db_message(&err).contains(&k), "error echoes the key");
    }
    let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(5000));
    let err = db.query("SELECT api_auth.mint_public_jwt($1, $2::text::jsonb)", &[&k, &big]).unwrap_err();
    assert_eq!(sqlstate(&err), "22023");
    // Unknown, NULL, empty and huge keys mint nothing.
    for key in [Some("tr_dev_unknownunknownunknown12"), None, Some(""), Some(&*"x".repeat(100_000))] {
        let t: Option<String> = db.query_one("SELECT api_auth.mint_public_jwt($1)", &[&key]).unwrap().get(0);
        assert_eq!(t, None);
    }
}

#[test]
fn every_refusal_has_its_code() {
    let (_, mut db) = fresh("tok_refusals");
    let (env, k) = create_environment(&mut db, "prod", "PRODUCTION");
    let hs256 = json!({"alg": "HS256"});
    let good = sign_jwt(&hs256, &public_claims(&env), &k);
    assert_eq!(validate(&mut db, &good).0, true, "hand-made SDK-style token");

    let code = |db: &mut Client, t: &str| validate(db, t).1.unwrap_or_else(|| "ok".into());
    let with = |k2: &str, v: serde_json::Value| {
        let mut c = public_claims(&env);
        c[k2] = v;
        c
    };
    let cases: Vec<(&str, String)> = vec![
        ("invalid_signature", sign_jwt(&hs256, &public_claims(&env), "tr_prod_notthekeynotthekeynotth")),
        ("invalid_signature", format!("{}AAAA", &good[..good.len() - 4])),
        ("invalid_algorithm", sign_jwt(&json!({"alg": "HS512"}), &public_claims(&env), &k)),
        ("invalid_algorithm", {
            let t = sign_jwt(&json!({"alg": "none"}), &public_claims(&env), &k);
            format!("{}.", t.rsplit_once('.').unwrap().0)
        }),
        ("invalid_algorithm", sign_jwt(&json!({"alg": "none"}), &public_claims(&env), &k)),
        ("claim_invalid", sign_jwt(&hs256, &with("iss", json!("https://evil.example")), &k)),
        ("claim_invalid", sign_jwt(&hs256, &with("aud", json!("https://other.example")), &k)),
        ("claim_invalid", sign_jwt(&hs256, &with("pub", json!(false)), &k)),
        ("claim_invalid", sign_jwt(&hs256, &with("nbf", json!(now() + 600)), &k)),
        ("claim_invalid", {
            let mut c = public_claims(&env);
            c.as_object_mut().unwrap().remove("exp");
            sign_jwt(&hs256, &c, &k)
        }),
        // jsonb cannot hold U+0000: a refusal, not an error, even when signed.
        ("claim_invalid", sign_jwt(&hs256, &with("scopes", json!(["read:runs\u{0}"])), &k)),
        ("claim_invalid", sign_jwt(&hs256, &with("meta", json!({"a\u{0}": 1})), &k)),
        ("expired", sign_jwt(&hs256, &with("exp", json!(now() - 60)), &k)),
        ("missing_subject", {
            let mut c = public_claims(&env);
            c.as_object_mut().unwrap().remove("sub");
            sign_jwt(&hs256, &c, &k)
        }),
        ("missing_subject", sign_jwt(&hs256, &with("sub", json!(42)), &k)),
        ("environment_not_found", sign_jwt(&hs256, &public_claims("env_nope"), &k)),
        ("malformed", "not.a.jwt".into()),
        ("malformed", "".into()),
        ("malformed", "a.b".into()),
        ("malformed", format!("{good}.extra")),
        ("malformed", "x".repeat(100_000)),
    ];
    for (want, token) in &cases {
        assert_eq!(&code(&mut db, token), want, "token {}", &token[..token.len().min(60)]);
    }
    let null: Option<String> = db.query_one("SELECT error FROM api_auth.validate_public_jwt(NULL)", &[]).unwrap().get(0);
    assert_eq!(null.as_deref(), Some("malformed"));

    // Settings: leeway forgives a just-expired token; tokens without exp only when allowed.
    let just_expired = sign_jwt(&hs256, &with("exp", json!(now() - 5)), &k);
    db.batch_execute("SET api_auth.jwt_leeway = 30").unwrap();
    assert_eq!(code(&mut db, &just_expired), "ok");
    let mut no_exp = public_claims(&env);
    no_exp.as_object_mut().unwrap().remove("exp");
    let no_exp = sign_jwt(&hs256, &no_exp, &k);
    db.batch_execute("SET api_auth.jwt_require_exp = off").unwrap();
    assert_eq!(code(&mut db, &no_exp), "ok");

    // An archived environment's tokens are refused.
    db.execute("UPDATE api_auth.runtime_environment SET archived_at = now() WHERE id = $1", &[&env]).unwrap();
    assert_eq!(code(&mut db, &good), "environment_not_found");
}
