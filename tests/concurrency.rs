//! Acceptance 5: concurrent rotations of one environment lose no key.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Barrier};
use std::thread;

use api_auth_tests::*;

const CONNECTIONS: usize = 8;
const ROTATIONS_EACH: usize = 15;

#[test]
fn concurrent_rotations_lose_no_key() {
    let (dsn, mut db) = fresh("concurrent_rotate");
    let (env, first_key) = create_environment(&mut db, "prod", "PRODUCTION");
    let mut issued = vec![first_key];
    let target = env.clone();
    for keys in on_every_connection(&dsn, move |db| (0..ROTATIONS_EACH).map(|_| rotate(db, &target).0).collect::<Vec<_>>()) {
        issued.extend(keys);
    }
    let total = CONNECTIONS * ROTATIONS_EACH;
    assert_eq!(issued.len(), total + 1);
    assert_eq!(issued.iter().collect::<HashSet<_>>().len(), issued.len(), "a key was issued twice");

    let current: String = db.query_one("SELECT api_key FROM api_auth.runtime_environment WHERE id = $1", &[&env]).unwrap().get(0);
    let revoked: Vec<String> = db
        .query("SELECT api_key FROM api_auth.revoked_api_key WHERE runtime_environment_id = $1", &[&env])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(revoked.len(), total, "one grace row per rotation");
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for k in revoked.iter().chain(std::iter::once(&current)) {
        *seen.entry(k).or_default() += 1;
    }
    for key in &issued {
        assert_eq!(seen.get(key.as_str()), Some(&1), "key {} is neither current nor revoked exactly once", mask(key));
    }
    // And every one of them still authenticates (all in grace, or current).
    for key in &issued {
        assert!(lookup(&mut db, key, None).is_some(), "{} lost", mask(key));
    }
}

#[test]
fn concurrent_session_creation_is_idempotent() {
    let (dsn, mut db) = fresh("concurrent_sessions");
    let (env, _) = create_environment(&mut db, "prod", "PRODUCTION");
    let results = on_every_connection(&dsn, move |db| {
        let r = db
            .query_one("SELECT id, is_cached FROM api_auth.create_session($1, 'chat', 'foo', external_id => 'same')", &[&env])
            .expect("create_session");
        (r.get::<_, String>(0), r.get::<_, bool>(1))
    });
    let ids: HashSet<_> = results.iter().map(|r| &r.0).collect();
    assert_eq!(ids.len(), 1, "one session for one external id");
    assert_eq!(results.iter().filter(|r| !r.1).count(), 1, "exactly one creator, the rest cached");
}

/// Run `work` on CONNECTIONS connections at once (released together by a
/// barrier, so the calls really overlap); the results in connection order.
fn on_every_connection<T: Send + 'static>(dsn: &str, work: impl Fn(&mut Client) -> T + Send + Sync + 'static) -> Vec<T> {
    let (barrier, work) = (Arc::new(Barrier::new(CONNECTIONS)), Arc::new(work));
    let workers: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let (dsn, barrier, work) = (dsn.to_owned(), barrier.clone(), work.clone());
            thread::spawn(move || {
                let mut db = connect(&dsn);
                barrier.wait();
                work(&mut db)
            })
        })
        .collect();
    workers.into_iter().map(|w| w.join().expect("worker thread")).collect()
}

fn mask(key: &str) -> String {
    format!("{}…", &key[..key.len().min(10)])
}
