//! Acceptance 6: every function refuses NULL, empty, oversized and garbage
//! arguments with a clear error (a documented SQLSTATE) or a documented empty
//! result, never a crash of the backend, and never an echo of a secret key.

use api_auth_tests::*;

/// (SQL, expected: SQLSTATE, or "empty" for zero rows / NULL / false, or "ok")
const CASES: &[(&str, &str)] = &[
    // Lookup: garbage finds nothing.
    ("SELECT * FROM api_auth.find_environment_by_api_key(NULL)", "empty"),
    ("SELECT * FROM api_auth.find_environment_by_api_key('')", "empty"),
    ("SELECT * FROM api_auth.find_environment_by_api_key(repeat('x', 1000000))", "empty"),
    ("SELECT * FROM api_auth.find_environment_by_api_key(E'tr_prod_\\x01\\x02')", "empty"),
    ("SELECT * FROM api_auth.find_environment_by_api_key('tr_prod_'' OR 1=1 --')", "empty"),
    ("SELECT * FROM api_auth.find_environment_by_api_key('tr_x', repeat('b', 100000))", "empty"),
    // Rotation.
    ("SELECT * FROM api_auth.rotate_api_key(NULL)", "22004"),
    ("SELECT * FROM api_auth.rotate_api_key('')", "22023"),
    ("SELECT * FROM api_auth.rotate_api_key(repeat('e', 1000000))", "22023"),
    ("SELECT * FROM api_auth.rotate_api_key('env_missing')", "P0002"),
    ("SELECT * FROM api_auth.rotate_api_key('{env}', interval '-1 hour')", "22023"),
    // Expiry control.
    ("SELECT * FROM api_auth.set_revoked_expiry(NULL, now())", "22004"),
    ("SELECT * FROM api_auth.set_revoked_expiry('', now())", "22023"),
    ("SELECT * FROM api_auth.set_revoked_expiry('rak_missing', now())", "P0002"),
    ("SELECT * FROM api_auth.set_revoked_expiry('rak_missing', NULL)", "22004"),
    ("SELECT * FROM api_auth.set_revoked_expiry('rak_missing', '-infinity')", "22023"),
    ("SELECT api_auth.purge_expired_revoked_keys(NULL)", "22004"),
    // Environments.
    ("SELECT * FROM api_auth.create_environment(NULL, 'PRODUCTION')", "22004"),
    ("SELECT * FROM api_auth.create_environment('x', NULL)", "22004"),
    ("SELECT * FROM api_auth.create_environment('', 'PRODUCTION')", "22023"),
    ("SELECT * FROM api_auth.create_environment(repeat('s', 129), 'PRODUCTION')", "22023"),
    ("SELECT * FROM api_auth.create_environment(E'a\\nb', 'PRODUCTION')", "22023"),
    ("SELECT * FROM api_auth.create_environment('x', 'production')", "22023"),
    ("SELECT * FROM api_auth.create_environment('x', 'PRODUCTION', repeat('p', 1000))", "22023"),
    // Tokens.
    ("SELECT api_auth.mint_public_jwt(NULL)", "empty"),
    ("SELECT api_auth.mint_public_jwt('{key}', NULL)", "ok"),
    ("SELECT api_auth.mint_public_jwt('{key}', '{}', NULL)", "ok"),
    ("SELECT api_auth.mint_public_jwt('{key}', '{}', repeat('9', 100000))", "22023"),
    ("SELECT api_auth.mint_public_jwt('{key}', '{}', '')", "22023"),
    ("SELECT api_auth.mint_public_jwt('{key}', 'null')", "22023"),
    ("SELECT ok FROM api_auth.validate_public_jwt(NULL) WHERE ok", "empty"),
    ("SELECT ok FROM api_auth.validate_public_jwt(repeat('.', 100000)) WHERE ok", "empty"),
    ("SELECT ok FROM api_auth.validate_public_jwt(E'\\x01.\\x02.\\x03') WHERE ok", "empty"),
    ("SELECT ok FROM api_auth.validate_public_jwt('eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24.AAAA') WHERE ok", "empty"),
    // Scopes.
    ("SELECT api_auth.authorize(NULL, NULL, NULL)", "22004"),
    ("SELECT api_auth.authorize('{}', 'write', 'null')", "22023"),
    ("SELECT api_auth.authorize(array_fill('admin'::text, ARRAY[2000]), 'write', '[]')", "22023"),
    ("SELECT 1 WHERE api_auth.authorize(ARRAY[repeat('a', 100000)], 'write', '[{\"type\": \"a\"}]')", "empty"),
    // Sessions.
    ("SELECT * FROM api_auth.create_session(NULL, 'chat', 'foo')", "22004"),
    ("SELECT * FROM api_auth.create_session('{env}', NULL, 'foo')", "22004"),
    ("SELECT * FROM api_auth.create_session('{env}', 'chat', '')", "22023"),
    ("SELECT * FROM api_auth.create_session('{env}', repeat('t', 65), 'foo')", "22023"),
    ("SELECT * FROM api_auth.create_session('{env}', 'chat', repeat('f', 129))", "22023"),
    ("SELECT * FROM api_auth.create_session('{env}', 'chat', 'foo', '[]')", "22023"),
    ("SELECT * FROM api_auth.create_session('{env}', 'chat', 'foo', '{}', 'session_abc')", "22023"),
    ("SELECT * FROM api_auth.create_session('{env}', 'chat', 'foo', '{}', repeat('e', 257))", "22023"),
    ("SELECT * FROM api_auth.create_session('{env}', 'chat', 'foo', '{}', NULL, array_fill('t'::text, ARRAY[11]))", "22023"),
    ("SELECT * FROM api_auth.create_session('{env}', 'chat', 'foo', '{}', NULL, ARRAY[NULL::text])", "22004"),
    ("SELECT * FROM api_auth.create_session('{env}', 'chat', 'foo', '{}', NULL, '{}', '\"x\"')", "22023"),
    ("SELECT * FROM api_auth.create_session('{env}', 'chat', 'foo', expires_at => now() - interval '1 s')", "22023"),
    ("SELECT * FROM api_auth.create_session('env_missing', 'chat', 'foo')", "P0002"),
    ("SELECT * FROM api_auth.get_session('{env}', 'missing')", "empty"),
    ("SELECT * FROM api_auth.get_session(NULL, 'x')", "22004"),
    ("SELECT * FROM api_auth.get_session('{env}', repeat('x', 1000))", "22023"),
    ("SELECT api_auth.mask_api_key(NULL)", "empty"),
];

#[test]
fn garbage_in_clear_errors_out() {
    let (_, mut db) = fresh("bad_input");
    let (env, key) = create_environment(&mut db, "prod", "PRODUCTION");
    let before: i64 = db.query_one("SELECT count(*) FROM api_auth.revoked_api_key", &[]).unwrap().get(0);
    for (sql, want) in CASES {
        let sql = sql.replace("{env}", &env).replace("{key}", &key);
        match (db.query(&sql, &[]), *want) {
            (Ok(rows), "empty") => {
                let empty = rows.is_empty()
                    || rows.len() == 1
                        && rows[0].len() == 1
                        && rows[0].try_get::<_, Option<String>>(0).map_or(false, |v| v.is_none());
                assert!(empty, "{sql}: expected no result, got {} rows", rows.len());
            }
            (Ok(_), "ok") => {}
            (Ok(rows), want) => panic!("{sql}: expected SQLSTATE {want}, got {} rows", rows.len()),
            (Err(e), want) => {
                let msg = db_message(&e);
                assert_eq!(sqlstate(&e), want, "{sql}: {msg}");
                assert!(!msg.is_empty() && msg.len() < 300, "{sql}: unclear message {msg:?}");
                assert!(!msg.contains(&key), "{sql}: the error echoes the secret key");
            }
        }
    }
    // The backend survived all of it, and nothing was half written.
    assert_eq!(db.query_one("SELECT 1", &[]).unwrap().get::<_, i32>(0), 1);
    let after: i64 = db.query_one("SELECT count(*) FROM api_auth.revoked_api_key", &[]).unwrap().get(0);
    assert_eq!(before, after);
    let sessions: i64 = db.query_one("SELECT count(*) FROM api_auth.session", &[]).unwrap().get(0);
    assert_eq!(sessions, 0);
    assert_eq!(lookup(&mut db, &key, None), Some((env, "current".into())));
}

/// A misspelt setting under the extension's prefix is refused once the library
/// is loaded, by every statement that sets one, on every supported version
/// (PostgreSQL 15+ reserve the prefix; on 14 src/compat.rs does the same).
#[test]
fn misspelt_settings_are_refused_by_every_statement() {
    let (_, mut db) = fresh("misspelt_setting");
    // Load the library (any api_auth function does).
    db.query("SELECT * FROM api_auth.find_environment_by_api_key('tr_x')", &[]).unwrap();
    for sql in [
        "SET api_auth.jwt_leeway = 5",
        "SET LOCAL api_auth.jwt_issuer = 'https://id.example'",
        "RESET api_auth.jwt_leeway",
        "SET api_auth.jwt_require_exp TO DEFAULT",
    ] {
        db.batch_execute(sql).unwrap_or_else(|e| panic!("{sql}: {}", db_message(&e)));
    }
    for sql in [
        "SET api_auth.rotation_grace = '1h'",
        "SET LOCAL api_auth.rotation_grace = '1h'",
        "SET api_auth.rotation_grace TO DEFAULT",
        "RESET api_auth.rotation_grace",
        "ALTER ROLE CURRENT_USER SET api_auth.rotation_grace = '1h'",
        "ALTER DATABASE postgres SET api_auth.rotation_grace = '1h'",
    ] {
        let err = db.batch_execute(sql).expect_err(sql);
        assert_eq!(sqlstate(&err), "42602", "{sql}: {}", db_message(&err));
        assert!(db_message(&err).contains("\"api_auth\" is a reserved prefix"), "{sql}: {}", db_message(&err));
    }
}
