//! Acceptance 1 (the seed's test plan) and the rest of lookup, rotation,
//! expiry control, purge, the grace_windows view and settings.

use api_auth_tests::*;

#[test]
fn seed_test_plan() {
    let (_, mut db) = fresh("seed");
    let (env, k1) = create_environment(&mut db, "prod", "PRODUCTION");
    assert!(k1.starts_with("tr_prod_") && k1.len() == "tr_prod_".len() + 24, "{k1}");

    assert_eq!(lookup(&mut db, &k1, None), Some((env.clone(), "current".into())));

    let (k2, revoked) = rotate(&mut db, &env);
    assert_ne!(k1, k2);
    assert_eq!(lookup(&mut db, &k2, None), Some((env.clone(), "current".into())));
    assert_eq!(lookup(&mut db, &k1, None), Some((env.clone(), "grace".into())), "old key in grace");
    // The grace hit names the revoked row and returns the canonical (new) key.
    let row = db
        .query_one(
            "SELECT api_key, revoked_api_key_id, grace_expires_at > now() FROM api_auth.find_environment_by_api_key($1)",
            &[&k1],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), k2);
    assert_eq!(row.get::<_, String>(1), revoked);
    assert!(row.get::<_, bool>(2));

    assert_eq!(lookup(&mut db, "tr_prod_bogusbogusbogusbogusbogus", None), None);

    set_expiry(&mut db, &revoked, "now()");
    assert_eq!(lookup(&mut db, &k1, None), None, "expired now()");
    set_expiry(&mut db, &revoked, "now() + interval '1 hour'");
    assert_eq!(lookup(&mut db, &k1, None), Some((env.clone(), "grace".into())), "extended again");
    set_expiry(&mut db, &revoked, "now() - interval '1 minute'");
    assert_eq!(lookup(&mut db, &k1, None), None, "past");
    assert_eq!(lookup(&mut db, &k2, None), Some((env, "current".into())), "new key unaffected");
}

#[test]
fn two_rotations_keep_both_old_keys_in_their_own_windows() {
    let (_, mut db) = fresh("tworot");
    let (env, k1) = create_environment(&mut db, "stg", "STAGING");
    let (k2, r1) = rotate(&mut db, &env);
    let (k3, r2) = rotate(&mut db, &env);
    for k in [&k1, &k2] {
        assert_eq!(lookup(&mut db, k, None), Some((env.clone(), "grace".into())));
    }
    assert_eq!(lookup(&mut db, &k3, None), Some((env.clone(), "current".into())));
    set_expiry(&mut db, &r1, "now()");
    assert_eq!(lookup(&mut db, &k1, None), None);
    assert_eq!(lookup(&mut db, &k2, None).map(|x| x.1), Some("grace".into()));
    set_expiry(&mut db, &r2, "now()");
    assert_eq!(lookup(&mut db, &k2, None), None);
}

#[test]
fn grace_length_comes_from_argument_or_setting() {
    let (_, mut db) = fresh("gracelen");
    let (env, _) = create_environment(&mut db, "dev", "DEVELOPMENT");
    let secs = |db: &mut Client, sql: &str| -> f64 {
        db.query_one(&format!("SELECT extract(epoch FROM expires_at - now())::float8 FROM ({sql}) r"), &[]).unwrap().get(0)
    };
    let default = secs(&mut db, &format!("SELECT * FROM api_auth.rotate_api_key('{env}')"));
    assert!((86_390.0..=86_400.0).contains(&default), "default grace {default}");
    let explicit = secs(&mut db, &format!("SELECT * FROM api_auth.rotate_api_key('{env}', interval '2 hours')"));
    assert!((7_190.0..=7_200.0).contains(&explicit), "explicit grace {explicit}");
    db.batch_execute("SET api_auth.rotation_grace_period = '30min'").unwrap();
    let from_setting = secs(&mut db, &format!("SELECT * FROM api_auth.rotate_api_key('{env}')"));
    assert!((1_790.0..=1_800.0).contains(&from_setting), "setting grace {from_setting}");
    // Zero grace revokes at once.
    let old: String = db.query_one("SELECT api_key FROM api_auth.runtime_environment WHERE id = $1", &[&env]).unwrap().get(0);
    db.execute("SELECT * FROM api_auth.rotate_api_key($1, interval '0')", &[&env]).unwrap();
    assert_eq!(lookup(&mut db, &old, None), None);
    // Typos in setting names are refused rather than silently ignored.
    let err = db.batch_execute("SET api_auth.rotation_grace = '1h'").unwrap_err();
    assert_eq!(sqlstate(&err), "42602", "{}", db_message(&err));
}

#[test]
fn archived_environments_authenticate_nothing() {
    let (_, mut db) = fresh("archived");
    let (env, k1) = create_environment(&mut db, "prod", "PRODUCTION");
    let (k2, _) = rotate(&mut db, &env);
    db.execute("UPDATE api_auth.runtime_environment SET archived_at = now() WHERE id = $1", &[&env]).unwrap();
    assert_eq!(lookup(&mut db, &k1, None), None);
    assert_eq!(lookup(&mut db, &k2, None), None);
    let err = db.query("SELECT * FROM api_auth.rotate_api_key($1)", &[&env]).unwrap_err();
    assert_eq!(sqlstate(&err), "55000");
}

#[test]
fn set_revoked_expiry_returns_the_row_and_refuses_unknown_ids() {
    let (_, mut db) = fresh("setexp");
    let (env, _) = create_environment(&mut db, "prod", "PRODUCTION");
    let (_, revoked) = rotate(&mut db, &env);
    let row = db
        .query_one(
            "SELECT id, runtime_environment_id, expires_at = '2100-01-01T00:00:00Z'::timestamptz \
             FROM api_auth.set_revoked_expiry($1, '2100-01-01T00:00:00Z')",
            &[&revoked],
        )
        .unwrap();
    assert_eq!((row.get::<_, String>(0), row.get::<_, String>(1), row.get::<_, bool>(2)), (revoked.clone(), env, true));

    let err = db.query("SELECT * FROM api_auth.set_revoked_expiry('rak_nope', now())", &[]).unwrap_err();
    assert_eq!(sqlstate(&err), "P0002");
    assert!(err.as_db_error().unwrap().message().contains("not found"));
    let err = db.query("SELECT * FROM api_auth.set_revoked_expiry($1, NULL)", &[&revoked]).unwrap_err();
    assert_eq!(sqlstate(&err), "22004");
    let err = db.query("SELECT * FROM api_auth.set_revoked_expiry($1, 'infinity')", &[&revoked]).unwrap_err();
    assert_eq!(sqlstate(&err), "22023");
    // Nothing half written: the failed calls left the expiry alone.
    let still: bool = db
        .query_one("SELECT expires_at = '2100-01-01T00:00:00Z' FROM api_auth.revoked_api_key WHERE id = $1", &[&revoked])
        .unwrap()
        .get(0);
    assert!(still);
}

#[test]
fn grace_windows_view_masks_keys() {
    let (_, mut db) = fresh("view");
    let (env, k1) = create_environment(&mut db, "prod", "PRODUCTION");
    let (_, revoked) = rotate(&mut db, &env);
    let row = db
        .query_one(
            "SELECT revoked_api_key_id, environment_id, environment_slug, masked_key, \
                    time_left > interval '23 hours' FROM api_auth.grace_windows",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), revoked);
    assert_eq!(row.get::<_, String>(1), env);
    assert_eq!(row.get::<_, String>(2), "prod");
    let masked: String = row.get(3);
    assert_eq!(masked, format!("tr_prod_{}…{}", &k1[8..10], &k1[k1.len() - 2..]));
    assert!(!masked.contains(&k1[10..k1.len() - 2]));
    assert!(row.get::<_, bool>(4));
    set_expiry(&mut db, &revoked, "now()");
    assert_eq!(db.query("SELECT 1 FROM api_auth.grace_windows", &[]).unwrap().len(), 0);
}

#[test]
fn purge_removes_only_long_expired_rows() {
    let (_, mut db) = fresh("purge");
    let (env, _) = create_environment(&mut db, "prod", "PRODUCTION");
    let (_, old) = rotate(&mut db, &env);
    let (_, recent) = rotate(&mut db, &env);
    let (_, live) = rotate(&mut db, &env);
    set_expiry(&mut db, &old, "now() - interval '8 days'");
    set_expiry(&mut db, &recent, "now() - interval '1 day'");
    let removed: i64 = db.query_one("SELECT api_auth.purge_expired_revoked_keys()", &[]).unwrap().get(0);
    assert_eq!(removed, 1);
    let removed: i64 = db.query_one("SELECT api_auth.purge_expired_revoked_keys('0')", &[]).unwrap().get(0);
    assert_eq!(removed, 1);
    let left: Vec<String> = db.query("SELECT id FROM api_auth.revoked_api_key", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(left, vec![live]);
    let err = db.query("SELECT api_auth.purge_expired_revoked_keys('-1 day')", &[]).unwrap_err();
    assert_eq!(sqlstate(&err), "22023");
}

#[test]
fn created_environments_have_spec_key_formats() {
    let (_, mut db) = fresh("formats");
    for (kind, seg) in [("DEVELOPMENT", "dev"), ("STAGING", "stg"), ("PRODUCTION", "prod"), ("PREVIEW", "preview")] {
        let row = db.query_one("SELECT api_key, pk_api_key, type FROM api_auth.create_environment('x', $1)", &[&kind]).unwrap();
        let (sk, pk): (String, String) = (row.get(0), row.get(1));
        for (key, prefix) in [(sk, format!("tr_{seg}_")), (pk, format!("pk_{seg}_"))] {
            let random = key.strip_prefix(&prefix).unwrap_or_else(|| panic!("{key} lacks {prefix}"));
            assert_eq!(random.len(), 24);
            assert!(random.bytes().all(|b| b.is_ascii_alphanumeric()));
        }
        assert_eq!(row.get::<_, String>(2), kind);
    }
}

#[test]
fn tables_and_the_audit_counter_are_kept_by_pg_dump() {
    let (_, mut db) = fresh("dump");
    let tables: Vec<String> = db
        .query("SELECT unnest(extconfig)::regclass::text FROM pg_extension WHERE extname = 'api_auth' ORDER BY 1", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        tables,
        [
            "api_auth.audit_event",
            "api_auth.audit_event_id_seq",
            "api_auth.revoked_api_key",
            "api_auth.runtime_environment",
            "api_auth.session"
        ]
    );
}

#[test]
fn every_object_is_documented() {
    let (_, mut db) = fresh("comments");
    let undocumented: Vec<String> = db
        .query(
            "SELECT p.oid::regprocedure::text FROM pg_proc p WHERE p.pronamespace = 'api_auth'::regnamespace \
               AND obj_description(p.oid, 'pg_proc') IS NULL \
             UNION ALL \
             SELECT c.oid::regclass::text FROM pg_class c WHERE c.relnamespace = 'api_auth'::regnamespace \
               AND c.relkind IN ('r', 'v') AND obj_description(c.oid, 'pg_class') IS NULL \
             UNION ALL \
             SELECT t.oid::regtype::text FROM pg_type t JOIN pg_class c ON c.oid = t.typrelid \
             WHERE t.typnamespace = 'api_auth'::regnamespace AND c.relkind = 'c' \
               AND obj_description(t.oid, 'pg_type') IS NULL",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(undocumented.is_empty(), "no COMMENT ON: {undocumented:?}");
}

/// The index probes keep relation OIDs and column numbers per backend. In one
/// session: look up, change the table, reinstall the extension (every OID
/// changes), look up again. Stale numbers would read the wrong columns or fail.
#[test]
fn lookups_follow_table_changes_and_reinstalls_in_the_same_session() {
    let (_, mut db) = fresh("reinstall");
    let (env, key) = create_environment(&mut db, "prod", "PRODUCTION");
    let (key2, _) = rotate(&mut db, &env);
    assert_eq!(lookup(&mut db, &key2, None), Some((env.clone(), "current".into())));
    assert_eq!(lookup(&mut db, &key, None), Some((env.clone(), "grace".into())));

    // A column dropped before the ones read, one added after: positions move.
    db.batch_execute(
        "ALTER TABLE api_auth.runtime_environment ADD COLUMN note text DEFAULT 'x'; \
         ALTER TABLE api_auth.runtime_environment DROP COLUMN note; \
         ALTER TABLE api_auth.revoked_api_key ADD COLUMN reason text DEFAULT 'rotated';",
    )
    .unwrap();
    let slug: String = db.query_one("SELECT slug FROM api_auth.find_environment_by_api_key($1)", &[&key2]).unwrap().get(0);
    assert_eq!(slug, "prod");
    assert_eq!(lookup(&mut db, &key, None), Some((env.clone(), "grace".into())));

    db.batch_execute("DROP EXTENSION api_auth CASCADE; CREATE EXTENSION api_auth;").unwrap();
    assert_eq!(lookup(&mut db, &key2, None), None, "the old tables are gone");
    let (env3, key3) = create_environment(&mut db, "stg", "STAGING");
    assert_eq!(lookup(&mut db, &key3, None), Some((env3.clone(), "current".into())));
    let (_, _) = rotate(&mut db, &env3);
    assert_eq!(lookup(&mut db, &key3, None), Some((env3.clone(), "grace".into())));
    let token: String = db.query_one("SELECT api_auth.mint_public_jwt($1::text)", &[&key3]).unwrap().get(0);
    assert_eq!(validate(&mut db, &token).0, true);
}
