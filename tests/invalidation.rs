//! Change notifications for answer caches: every change that can alter an
//! answer sends `NOTIFY api_auth_changes, '<environment id>'`, at commit.

use std::time::Duration;

use api_auth_tests::*;
use postgres::fallible_iterator::FallibleIterator;

/// Payloads delivered to `listener` so far (waiting briefly for stragglers),
/// sorted: the order of one commit's notifications is not part of the contract.
fn received(listener: &mut Client) -> Vec<String> {
    let mut out = Vec::new();
    let mut n = listener.notifications();
    let mut it = n.timeout_iter(Duration::from_millis(300));
    while let Ok(Some(note)) = it.next() {
        assert_eq!(note.channel(), "api_auth_changes");
        out.push(note.payload().to_owned());
    }
    sorted(out)
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

#[test]
fn every_change_that_alters_an_answer_notifies_at_commit() {
    let (dsn, mut db) = fresh("invalidation");
    let mut listener = connect(&dsn);
    listener.batch_execute("LISTEN api_auth_changes").unwrap();

    let (env, _) = create_environment(&mut db, "prod", "PREVIEW");
    assert_eq!(received(&mut listener), [env.clone()], "creation");
    let branch: String = db
        .query_one("SELECT id FROM api_auth.create_environment('b', 'PREVIEW', NULL, NULL, $1, 'feature')", &[&env])
        .unwrap()
        .get(0);
    assert_eq!(received(&mut listener), [branch.clone()], "a branch");

    // Not before commit; once, however many rows of the environment changed.
    let mut tx = db.transaction().unwrap();
    let revoked: String = tx.query_one("SELECT revoked_api_key_id FROM api_auth.rotate_api_key($1)", &[&env]).unwrap().get(0);
    tx.execute("SELECT * FROM api_auth.set_revoked_expiry($1, now() + interval '1 minute')", &[&revoked]).unwrap();
    assert!(received(&mut listener).is_empty(), "nothing before commit");
    tx.commit().unwrap();
    let family = sorted(vec![env.clone(), branch.clone()]);
    assert_eq!(received(&mut listener), family, "rotation + expiry change, folded; the branch signs with the parent's keys");

    set_expiry(&mut db, &revoked, "now() - interval '30 days'");
    assert_eq!(received(&mut listener), family, "grace ended");
    db.execute("SELECT api_auth.purge_expired_revoked_keys('1 day')", &[]).unwrap();
    assert_eq!(received(&mut listener), family, "purge");
    db.execute("UPDATE api_auth.runtime_environment SET archived_at = now() WHERE id = $1", &[&branch]).unwrap();
    assert_eq!(received(&mut listener), [branch.clone()], "archive by hand");
    db.execute("DELETE FROM api_auth.runtime_environment WHERE id = $1", &[&env]).unwrap();
    assert_eq!(received(&mut listener), family, "deletion (and its cascade to the branch)");

    // Sessions change no answer: no notification.
    let (env2, key2) = create_environment(&mut db, "other", "PRODUCTION");
    assert_eq!(received(&mut listener), [env2]);
    db.execute("SELECT * FROM api_auth.create_session_as($1, 'chat', 'foo')", &[&key2]).unwrap();
    assert!(received(&mut listener).is_empty());
}

/// A key held by two environments at once (only direct table edits can do
/// that: rotation draws random keys). Which environment the key opens can
/// then change through the other environment's rows: its current key set to
/// the key (the current key wins over a grace row), or a grace row for it
/// ending later than the first one's. A cache holds the earlier answer under
/// the first environment, so that one must be notified as well.
#[test]
fn a_key_shared_by_hand_notifies_every_environment_that_holds_it() {
    let (dsn, mut db) = fresh("invalidation_shared");
    let mut listener = connect(&dsn);
    listener.batch_execute("LISTEN api_auth_changes").unwrap();
    let (first, key) = create_environment(&mut db, "first", "PRODUCTION");
    rotate(&mut db, &first); // `key` is now in grace in `first`
    let (second, _) = create_environment(&mut db, "second", "PRODUCTION");
    let (third, _) = create_environment(&mut db, "third", "PRODUCTION");
    received(&mut listener);
    assert_eq!(lookup(&mut db, &key, None), Some((first.clone(), "grace".into())));

    db.execute("UPDATE api_auth.runtime_environment SET api_key = $1 WHERE id = $2", &[&key, &second]).unwrap();
    assert_eq!(lookup(&mut db, &key, None), Some((second.clone(), "current".into())), "the current key wins");
    assert_eq!(received(&mut listener), sorted(vec![first.clone(), second.clone()]), "current key set by hand");

    db.execute(
        "INSERT INTO api_auth.revoked_api_key (id, api_key, runtime_environment_id, expires_at) \
         VALUES ('rev_by_hand', $1, $2, now() + interval '30 days')",
        &[&key, &third],
    )
    .unwrap();
    assert_eq!(received(&mut listener), sorted(vec![first.clone(), second.clone(), third.clone()]), "grace row added by hand");
    db.execute("UPDATE api_auth.runtime_environment SET api_key = 'tr_prod_other_key_000000000' WHERE id = $1", &[&second])
        .unwrap();
    assert_eq!(lookup(&mut db, &key, None), Some((third.clone(), "grace".into())), "the window ending last");
    assert_eq!(received(&mut listener), [second.clone()], "a key set elsewhere: only that environment");
}

/// TRUNCATE fires no row trigger, so it would end every grace window (or
/// every environment) without a word to the caches. Each TRUNCATE statement
/// sends one `*`: forget everything.
#[test]
fn truncate_notifies_everything() {
    let (dsn, mut db) = fresh("invalidation_truncate");
    let mut listener = connect(&dsn);
    listener.batch_execute("LISTEN api_auth_changes").unwrap();
    let (env, _) = create_environment(&mut db, "prod", "PRODUCTION");
    rotate(&mut db, &env);
    received(&mut listener);

    db.batch_execute("TRUNCATE api_auth.revoked_api_key").unwrap();
    assert_eq!(received(&mut listener), ["*"], "grace windows truncated");
    db.batch_execute("TRUNCATE api_auth.runtime_environment CASCADE").unwrap();
    assert_eq!(received(&mut listener), ["*"], "environments truncated, grace rows and sessions with them: one `*`");
    let left: i64 = db.query_one("SELECT count(*) FROM api_auth.runtime_environment", &[]).unwrap().get(0);
    assert_eq!(left, 0);
}
