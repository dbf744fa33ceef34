//! Change notifications for answer caches: every change that can alter an
//! answer sends `NOTIFY api_auth_changes, '<environment id>'`, at commit.

use std::time::Duration;

use api_auth_tests::*;
use postgres::fallible_iterator::FallibleIterator;

/// Payloads delivered to `listener` so far (waiting briefly for stragglers).
fn received(listener: &mut Client) -> Vec<String> {
    let mut out = Vec::new();
    let mut n = listener.notifications();
    let mut it = n.timeout_iter(Duration::from_millis(300));
    while let Ok(Some(note)) = it.next() {
        assert_eq!(note.channel(), "api_auth_changes");
        out.push(note.payload().to_owned());
    }
    out
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
    let both = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let mut family = vec![env.clone(), branch.clone()];
    family.sort();
    assert_eq!(
        both(received(&mut listener)),
        family,
        "rotation + expiry change, folded; the branch signs with the parent's keys"
    );

    set_expiry(&mut db, &revoked, "now() - interval '30 days'");
    assert_eq!(both(received(&mut listener)), family, "grace ended");
    db.execute("SELECT api_auth.purge_expired_revoked_keys('1 day')", &[]).unwrap();
    assert_eq!(both(received(&mut listener)), family, "purge");
    db.execute("UPDATE api_auth.runtime_environment SET archived_at = now() WHERE id = $1", &[&branch]).unwrap();
    assert_eq!(received(&mut listener), [branch.clone()], "archive by hand");
    db.execute("DELETE FROM api_auth.runtime_environment WHERE id = $1", &[&env]).unwrap();
    let mut got = received(&mut listener);
    got.sort();
    let mut want = vec![env.clone(), branch.clone()];
    want.sort();
    assert_eq!(got, want, "deletion (and its cascade to the branch)");

    // Sessions change no answer: no notification.
    let (env2, key2) = create_environment(&mut db, "other", "PRODUCTION");
    assert_eq!(received(&mut listener), [env2]);
    db.execute("SELECT * FROM api_auth.create_session_as($1, 'chat', 'foo')", &[&key2]).unwrap();
    assert!(received(&mut listener).is_empty());
}
