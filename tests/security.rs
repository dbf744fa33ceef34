//! Least privilege, search_path safety and the audit trail (issue 6), and the
//! upgrades from every earlier release (0.1.0 to 0.4.0), with data in the tables.

use api_auth_tests::*;

/// A login role in the test cluster, member of `group`; returns a DSN for it.
fn login_as(dsn: &str, admin: &mut Client, group: &str) -> String {
    let role = format!("{group}_{}", std::process::id() as u64 * 1000 + rand_suffix());
    admin.batch_execute(&format!("DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN IN ROLE {group}")).unwrap();
    let mut parts: Vec<String> = dsn.split_whitespace().filter(|p| !p.starts_with("user=")).map(str::to_owned).collect();
    parts.push(format!("user={role}"));
    parts.join(" ")
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}

#[test]
fn client_role_can_authenticate_but_not_read_keys_or_rotate() {
    let (dsn, mut db) = fresh("roles_client");
    let (env, k1) = create_environment(&mut db, "prod", "PRODUCTION");
    let (k2, _) = rotate(&mut db, &env);
    let mut client = connect(&login_as(&dsn, &mut db, "api_auth_client"));

    for sql in [
        "SELECT api_key FROM api_auth.runtime_environment",
        "SELECT api_key FROM api_auth.revoked_api_key",
        "SELECT * FROM api_auth.audit_event",
        "SELECT * FROM api_auth.grace_windows",
        "SELECT * FROM api_auth.recent_audit_events",
        "DELETE FROM api_auth.audit_event",
        "INSERT INTO api_auth.audit_event (action) VALUES ('key_rotated')",
        "SELECT * FROM api_auth.rotate_api_key('x')",
        "SELECT * FROM api_auth.set_revoked_expiry('x', now())",
        "SELECT * FROM api_auth.create_environment('x', 'PRODUCTION')",
        "SELECT api_auth.purge_expired_revoked_keys()",
        // A bare environment id is an admin's to name: a client login could
        // otherwise get tokens signed for, and read sessions of, any environment.
        "SELECT * FROM api_auth.create_session('env_any', 'chat', 'foo')",
        "SELECT * FROM api_auth.get_session('env_any', 'chat-1')",
    ] {
        let err = client.query(sql, &[]).unwrap_err();
        assert_eq!(sqlstate(&err), "42501", "{sql} should be denied: {}", db_message(&err));
    }
    // What a client may do works.
    assert_eq!(lookup(&mut client, &k2, None), Some((env.clone(), "current".into())));
    assert_eq!(lookup(&mut client, &k1, None), Some((env.clone(), "grace".into())));
    let token: String = client.query_one("SELECT api_auth.mint_public_jwt($1)", &[&k1]).unwrap().get(0);
    assert!(validate(&mut client, &token).0);
    assert!(client.query_one("SELECT api_auth.authorize('{admin}', 'read', '[]')", &[]).is_ok());
    // Sessions through the caller's credential: the environment comes from the key.
    let row = client
        .query_one("SELECT id, environment_id FROM api_auth.create_session_as($1, 'chat', 'foo', external_id => 'c1')", &[&k2])
        .unwrap();
    assert_eq!(row.get::<_, String>(1), env);
    let got: String = client.query_one("SELECT id FROM api_auth.get_session_as($1, 'c1')", &[&k1]).unwrap().get(0);
    assert_eq!(got, row.get::<_, String>(0));
    let err = client
        .query("SELECT * FROM api_auth.create_session_as('tr_prod_unknownunknownunknown', 'chat', 'foo')", &[])
        .unwrap_err();
    assert_eq!(sqlstate(&err), "28000", "{}", db_message(&err));

    // A key in grace never reveals its successor to a client...
    let shown: Option<String> =
        client.query_one("SELECT api_key FROM api_auth.find_environment_by_api_key($1)", &[&k1]).unwrap().get(0);
    assert_eq!(shown, None);
    // ...but an admin sees the canonical key.
    let mut admin = connect(&login_as(&dsn, &mut db, "api_auth_admin"));
    let shown: Option<String> =
        admin.query_one("SELECT api_key FROM api_auth.find_environment_by_api_key($1)", &[&k1]).unwrap().get(0);
    assert_eq!(shown, Some(k2));
}

#[test]
fn admin_role_rotates_and_reads_the_trail_but_not_the_tables() {
    let (dsn, mut db) = fresh("roles_admin");
    let mut admin = connect(&login_as(&dsn, &mut db, "api_auth_admin"));
    let (env, _) = create_environment(&mut admin, "prod", "PRODUCTION");
    let (_, revoked) = rotate(&mut admin, &env);
    set_expiry(&mut admin, &revoked, "now()");
    admin.query_one("SELECT api_auth.purge_expired_revoked_keys('0')", &[]).unwrap();
    let events: i64 = admin.query_one("SELECT count(*) FROM api_auth.recent_audit_events", &[]).unwrap().get(0);
    assert!(events >= 4);
    for sql in [
        "SELECT api_key FROM api_auth.runtime_environment",
        "UPDATE api_auth.revoked_api_key SET expires_at = now()",
        "DELETE FROM api_auth.audit_event",
        "TRUNCATE api_auth.audit_event",
    ] {
        let err = admin.query(sql, &[]).unwrap_err();
        assert_eq!(sqlstate(&err), "42501", "{sql}: {}", db_message(&err));
    }
}

/// Functions on the request path do not pin search_path (a per-call cost);
/// every other function does. The unpinned ones must not resolve any name
/// through it: run them all, on every path (current key, grace key, expired
/// key, unknown key, preview branch, tokens, mint) under a search_path whose
/// first schema shadows `=`, `>`, now() and the table.
#[test]
fn search_path_hijack_changes_nothing() {
    let (_, mut db) = fresh("hijack");
    let (env, k1) = create_environment(&mut db, "prod", "PRODUCTION");
    let (k2, expired) = rotate(&mut db, &env);
    set_expiry(&mut db, &expired, "now() - interval '1 hour'");
    let (k3, in_grace) = rotate(&mut db, &env);
    let parent: (String, String) = {
        let r = db.query_one("SELECT id, api_key FROM api_auth.create_environment('pr', 'PREVIEW')", &[]).unwrap();
        (r.get(0), r.get(1))
    };
    let branch: String = db
        .query_one("SELECT id FROM api_auth.create_environment('br', 'PREVIEW', NULL, NULL, $1, 'feature')", &[&parent.0])
        .unwrap()
        .get(0);
    // Once before the search_path changes too, so that anything a backend
    // caches is made under the safe path and then used under the hostile one.
    assert_eq!(lookup(&mut db, &k2, None), Some((env.clone(), "grace".into())));

    // A malicious now() that says "the past", an = that says "always equal",
    // a > that says "always later", and a shadowing table, all first on the search_path.
    db.batch_execute(
        "CREATE SCHEMA evil; \
         CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE sql AS $$ SELECT '2000-01-01'::timestamptz $$; \
         CREATE FUNCTION evil.texteq_always(text, text) RETURNS boolean LANGUAGE sql AS $$ SELECT true $$; \
         CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.texteq_always); \
         CREATE FUNCTION evil.later_always(timestamptz, timestamptz) RETURNS boolean LANGUAGE sql AS $$ SELECT true $$; \
         CREATE OPERATOR evil.> (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = evil.later_always); \
         CREATE TABLE evil.runtime_environment (id text, api_key text); \
         SET search_path = evil, public, pg_catalog;",
    )
    .unwrap();
    assert_eq!(lookup(&mut db, &k1, None), None, "expired key stays expired");
    assert_eq!(lookup(&mut db, &k2, None), Some((env.clone(), "grace".into())));
    assert_eq!(lookup(&mut db, &k3, None), Some((env.clone(), "current".into())));
    assert_eq!(lookup(&mut db, "tr_prod_nonexistentnonexistent00", None), None, "no always-equal match");
    assert_eq!(lookup(&mut db, &parent.1, Some("feature")), Some((branch.clone(), "current".into())));
    assert_eq!(lookup(&mut db, &parent.1, Some("other")), None, "no always-equal branch");

    let token = |key: &str| sign_jwt(&serde_json::json!({"alg": "HS256"}), &public_claims(&env), key);
    assert_eq!(validate(&mut db, &token("tr_prod_wrongwrongwrongwrongwrong")).1.as_deref(), Some("invalid_signature"));
    assert_eq!(validate(&mut db, &token(&k1)).1.as_deref(), Some("invalid_signature"), "expired key");
    assert_eq!(validate(&mut db, &token(&k2)), (true, None, Some(env.clone()), Some("grace".into()), Some(in_grace)));
    assert_eq!(validate(&mut db, &token(&k3)).3.as_deref(), Some("current"));
    let minted: Option<String> = db.query_one("SELECT api_auth.mint_public_jwt($1::text)", &[&k2]).unwrap().get(0);
    assert!(minted.is_some_and(|t| signed_with(&t, &k3)), "minted with the current key");
    let minted: Option<String> = db.query_one("SELECT api_auth.mint_public_jwt($1::text)", &[&k1]).unwrap().get(0);
    assert_eq!(minted, None, "an expired key mints nothing");
    let granted: bool = db
        .query_one("SELECT api_auth.authorize(ARRAY['read:runs:a'], 'read', '[{\"type\": \"runs\", \"id\": \"b\"}]')", &[])
        .unwrap()
        .get(0);
    assert!(!granted, "authorize is pure and unaffected");

    // Which functions go unpinned is a decision, not an accident.
    let unpinned: Vec<String> = db
        .query(
            "SELECT p.oid::regprocedure::text FROM pg_catalog.pg_proc p \
             WHERE p.pronamespace OPERATOR(pg_catalog.=) 'api_auth'::regnamespace \
               AND NOT coalesce('search_path=pg_catalog, pg_temp' OPERATOR(pg_catalog.=) ANY (p.proconfig), false) \
             ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        unpinned,
        [
            "api_auth.authorize(text[],text,jsonb)",
            "api_auth.find_environment_by_api_key(text,text)",
            "api_auth.mask_api_key(text)",
            "api_auth.mint_public_jwt(text,jsonb,text,text)",
            "api_auth.validate_public_jwt(text)",
        ],
        "only the request-path functions (no name resolution, tested above) and pure ones go unpinned"
    );
}

#[test]
fn audit_trail_records_every_change_without_keys() {
    let (_, mut db) = fresh("audit");
    db.batch_execute("SET api_auth.audit_actor = 'shim-admin:ops'").unwrap();
    let (env, k1) = create_environment(&mut db, "prod", "PRODUCTION");
    let (k2, revoked) = rotate(&mut db, &env);
    set_expiry(&mut db, &revoked, "'2030-01-01T00:00:00Z'");
    set_expiry(&mut db, &revoked, "now() - interval '30 days'");
    let purged: i64 = db.query_one("SELECT api_auth.purge_expired_revoked_keys()", &[]).unwrap().get(0);
    assert_eq!(purged, 1);

    let rows = db
        .query(
            "SELECT action, database_user, actor, runtime_environment_id, revoked_api_key_id, \
                    old_expires_at IS NOT NULL, new_expires_at IS NOT NULL, \
                    (old_expires_at = '2030-01-01T00:00:00Z') \
             FROM api_auth.audit_event ORDER BY id",
            &[],
        )
        .unwrap();
    let actions: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(
        actions,
        // The purge's summary row is written by the statement, the per-row
        // deletions by AFTER ROW triggers at its end.
        ["environment_created", "key_rotated", "expiry_changed", "expiry_changed", "revoked_keys_purged", "revoked_key_deleted"]
    );
    for r in &rows {
        assert_eq!(r.get::<_, String>(1), "postgres");
        assert_eq!(r.get::<_, Option<String>>(2).as_deref(), Some("shim-admin:ops"));
    }
    assert_eq!(rows[1].get::<_, Option<String>>(3), Some(env.clone()));
    assert_eq!(rows[1].get::<_, Option<String>>(4), Some(revoked.clone()));
    assert!(rows[1].get::<_, bool>(6), "rotation records the new expiry");
    assert!(rows[3].get::<_, bool>(5) && rows[3].get::<_, bool>(6), "old and new expiry");
    assert!(rows[3].get::<_, Option<bool>>(7) == Some(true), "old expiry of the second change");

    let leaked: i64 = db
        .query_one(
            "SELECT count(*) FROM api_auth.audit_event e \
             WHERE row_to_json(e)::text LIKE '%' || $1 || '%' OR row_to_json(e)::text LIKE '%' || $2 || '%'",
            &[&k1, &k2],
        )
        .unwrap()
        .get(0);
    assert_eq!(leaked, 0, "an audit row contains a key");
}

/// TRUNCATE fires no row trigger: without a statement trigger of its own it
/// would end every grace window, or every environment, without a trace.
#[test]
fn a_truncate_is_audited() {
    let (_, mut db) = fresh("audit_truncate");
    db.batch_execute("SET api_auth.audit_actor = 'dba:incident-42'").unwrap();
    let (env, _) = create_environment(&mut db, "prod", "PRODUCTION");
    rotate(&mut db, &env);
    let trail = |db: &mut Client| -> Vec<(String, String, Option<String>, Option<String>)> {
        db.query(
            "SELECT action, database_user, actor, detail->>'table' FROM api_auth.audit_event              WHERE action NOT IN ('environment_created', 'key_rotated') ORDER BY id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
    };
    let truncated = |table: &str| {
        ("table_truncated".to_string(), "postgres".to_string(), Some("dba:incident-42".to_string()), Some(table.to_string()))
    };

    db.batch_execute("TRUNCATE api_auth.revoked_api_key").unwrap();
    assert_eq!(trail(&mut db), [truncated("revoked_api_key")]);
    db.batch_execute("TRUNCATE api_auth.runtime_environment CASCADE").unwrap();
    let mut after = trail(&mut db);
    after[1..].sort();
    assert_eq!(
        after,
        [truncated("revoked_api_key"), truncated("revoked_api_key"), truncated("runtime_environment")],
        "the cascade truncates the grace rows too"
    );
}

/// The catalog of an api_auth install: functions (signature, result, security,
/// settings, privileges), tables, row types and their columns, views,
/// triggers, indexes, constraints, dumped tables and comments.
fn catalog(db: &mut Client) -> Vec<String> {
    db.query(
        "SELECT 'f ' || p.oid::regprocedure || ' -> ' || pg_get_function_result(p.oid) \
                || ' secdef=' || p.prosecdef || ' cfg=' || coalesce(array_to_string(p.proconfig, ','), '') \
                || ' vol=' || p.provolatile::text || ' acl=' || coalesce(array_to_string(p.proacl, ','), '') \
                || ' args=' || pg_get_function_arguments(p.oid) \
         FROM pg_proc p WHERE p.pronamespace = 'api_auth'::regnamespace \
         UNION ALL \
         SELECT 'c ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod) \
                || ' notnull=' || a.attnotnull || ' acl=' || coalesce(array_to_string(c.relacl, ','), '') \
         FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid \
         WHERE c.relnamespace = 'api_auth'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped \
         UNION ALL \
         SELECT 'v ' || c.relname || ' ' || pg_get_viewdef(c.oid) FROM pg_class c \
         WHERE c.relnamespace = 'api_auth'::regnamespace AND c.relkind = 'v' \
         UNION ALL \
         SELECT 't ' || t.tgname || ' ' || pg_get_triggerdef(t.oid) FROM pg_trigger t \
         JOIN pg_class c ON c.oid = t.tgrelid WHERE c.relnamespace = 'api_auth'::regnamespace AND NOT t.tgisinternal \
         UNION ALL \
         SELECT 'i ' || pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid \
         WHERE c.relnamespace = 'api_auth'::regnamespace \
         UNION ALL \
         SELECT 'k ' || conname || ' ' || pg_get_constraintdef(oid) FROM pg_constraint \
         WHERE connamespace = 'api_auth'::regnamespace \
         UNION ALL \
         SELECT 'd ' || unnest(extconfig)::regclass FROM pg_extension WHERE extname = 'api_auth' \
         UNION ALL \
         SELECT 'm ' || p.oid::regprocedure || ' ' || coalesce(obj_description(p.oid, 'pg_proc'), '-') \
         FROM pg_proc p WHERE p.pronamespace = 'api_auth'::regnamespace \
         UNION ALL \
         SELECT 'm ' || c.oid::regclass || ' ' || coalesce(obj_description(c.oid, 'pg_class'), '-') \
         FROM pg_class c WHERE c.relnamespace = 'api_auth'::regnamespace AND c.relkind IN ('r', 'v') \
         UNION ALL \
         SELECT 'm ' || t.oid::regtype || ' ' || coalesce(obj_description(t.oid, 'pg_type'), '-') \
         FROM pg_type t JOIN pg_class c ON c.oid = t.typrelid \
         WHERE t.typnamespace = 'api_auth'::regnamespace AND c.relkind = 'c' \
         ORDER BY 1",
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// Install release `from`, fill it with keys, upgrade to the current version:
/// the keys and grace rows still work, and the catalog (functions, types,
/// tables, indexes, privileges, comments) equals a fresh install's.
fn upgrade_keeps_keys_and_matches_a_fresh_install(from: &str) {
    let dsn = fresh_database("upgrade_fresh");
    let mut fresh_db = connect(&dsn);
    let current: String =
        fresh_db.query_one("SELECT extversion FROM pg_extension WHERE extname = 'api_auth'", &[]).unwrap().get(0);
    assert_ne!(current, from);

    let mut admin = connect(&admin_dsn());
    let name = format!("upgrade_{}_{}", from.replace('.', "_"), std::process::id());
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name}")).unwrap();
    admin.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
    let mut old = connect(&with_dbname(&admin_dsn(), &name));
    old.batch_execute(&format!("CREATE EXTENSION api_auth VERSION '{from}'")).unwrap();
    let (env, k1) = create_environment(&mut old, "prod", "PRODUCTION");
    let (k2, revoked) = rotate(&mut old, &env);
    let token: String = old.query_one("SELECT api_auth.mint_public_jwt($1::text)", &[&k1]).unwrap().get(0);
    let session: String = old
        .query_one("SELECT id FROM api_auth.create_session($1, 'chat', 'foo', external_id => 'chat-1')", &[&env])
        .unwrap()
        .get(0);
    let trail_before: Vec<String> = if from == "0.1.0" {
        Vec::new() // 0.1.0 had no audit trail
    } else {
        old.query("SELECT a::text FROM api_auth.audit_event a ORDER BY id", &[]).unwrap().iter().map(|r| r.get(0)).collect()
    };

    old.batch_execute(&format!("ALTER EXTENSION api_auth UPDATE TO '{current}'")).unwrap();
    let trail_after: Vec<String> =
        old.query("SELECT a::text FROM api_auth.audit_event a ORDER BY id", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(trail_after, trail_before, "the upgrade keeps the audit trail as it was");
    let got: String = old.query_one("SELECT id FROM api_auth.get_session_as($1, 'chat-1')", &[&k2]).unwrap().get(0);
    assert_eq!(got, session, "a session created before the upgrade is found after it");
    assert_eq!(lookup(&mut old, &k1, None), Some((env.clone(), "grace".into())), "grace row survives");
    assert_eq!(lookup(&mut old, &k2, None), Some((env.clone(), "current".into())));
    let v = validate(&mut old, &token);
    assert!(v.0, "a token minted before the upgrade still validates: {v:?}");
    set_expiry(&mut old, &revoked, "now()");
    assert_eq!(lookup(&mut old, &k1, None), None, "expiry after the upgrade ends the window");
    let audited: i64 =
        old.query_one("SELECT count(*) FROM api_auth.audit_event WHERE action = 'expiry_changed'", &[]).unwrap().get(0);
    assert_eq!(audited, 1, "the upgraded install audits");

    let (upgraded, installed) = (catalog(&mut old), catalog(&mut fresh_db));
    assert!(installed.len() > 80, "catalog query sees too little: {installed:?}");
    let only_upgraded: Vec<_> = upgraded.iter().filter(|l| !installed.contains(l)).collect();
    let only_fresh: Vec<_> = installed.iter().filter(|l| !upgraded.contains(l)).collect();
    assert!(
        only_upgraded.is_empty() && only_fresh.is_empty(),
        "{from} upgraded and fresh install differ:\nonly after upgrade: {only_upgraded:#?}\nonly in fresh install: {only_fresh:#?}"
    );
}

/// Every release frozen in sql/ (`api_auth--X.Y.Z.sql`, installed next to the
/// current one by scripts/install-ext.sh) other than the current version.
fn earlier_releases() -> Vec<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../sql");
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .expect("sql/")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let version = name.strip_prefix("api_auth--")?.strip_suffix(".sql")?;
            let parts: Vec<&str> = version.split('.').collect();
            (parts.len() == 3 && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())))
                .then(|| version.to_owned())
        })
        .collect();
    out.sort_by_key(|v| v.split('.').map(|p| p.parse::<u32>().unwrap()).collect::<Vec<_>>());
    out
}

/// ALTER EXTENSION api_auth UPDATE from every earlier release, on whatever
/// PostgreSQL version the suite runs against (scripts/test-matrix.sh runs 14-18).
#[test]
fn upgrade_from_every_earlier_release_keeps_keys_and_matches_a_fresh_install() {
    let releases = earlier_releases();
    assert!(releases.len() >= 2, "frozen releases in sql/: {releases:?}");
    let mut db = connect(&admin_dsn());
    let current: String =
        db.query_one("SELECT default_version FROM pg_available_extensions WHERE name = 'api_auth'", &[]).unwrap().get(0);
    let mut tested = 0;
    for from in releases.iter().filter(|v| **v != current) {
        upgrade_keeps_keys_and_matches_a_fresh_install(from);
        tested += 1;
    }
    assert!(tested >= 2, "no earlier release to upgrade from: {releases:?}, current {current}");
}
