//! The answer cache, over real HTTP against a real database: hits need no
//! query, every change committed in SQL (not only through the shim) ends the
//! cached answer, a lost subscription (killed, or frozen without a word)
//! turns the cache off until it is back,
//! tokens expire from the cache at their `exp`, and with a standby the cache is
//! never refilled from a node that has not replayed the invalidating commit.

mod support;

use std::time::{Duration, Instant};

use api_auth_tests::{connect, Client, PrivateCluster};
use serde_json::json;
use support::{Opts, Shim};

fn verify(shim: &Shim, credential: &str) -> u16 {
    shim.get("/api/v1/auth/verify", Some(credential)).status
}

fn counter(shim: &Shim, series: &str) -> f64 {
    shim.scrape().get(series)
}

/// Poll until `verify` answers `want` (at most `within`); how long it took.
fn until_status(shim: &Shim, credential: &str, want: u16, within: Duration) -> Duration {
    until(want, within, || verify(shim, credential))
}

/// Poll `ask` until it answers `want` (at most `within`); how long it took.
fn until<T: PartialEq + std::fmt::Debug>(want: T, within: Duration, mut ask: impl FnMut() -> T) -> Duration {
    let start = Instant::now();
    loop {
        let got = ask();
        if got == want {
            return start.elapsed();
        }
        assert!(start.elapsed() < within, "did not answer {want:?} within {within:?} (last: {got:?})");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Wait until the shim has applied at least `n` change notifications.
fn wait_notifications(shim: &Shim, n: f64) {
    let start = Instant::now();
    while counter(shim, "api_auth_shim_cache_notifications_total") < n {
        assert!(start.elapsed() < Duration::from_secs(5), "notification {n} never arrived");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A new environment whose creation the shim has heard of: its notification
/// cannot land between a later fill's question and answer (which would keep
/// the answer out of the cache and turn an expected hit into a miss).
fn create_env_heard(shim: &Shim) -> (String, String) {
    let before = counter(shim, "api_auth_shim_cache_notifications_total");
    let created = shim.create_env("prod", "PRODUCTION");
    wait_notifications(shim, before + 1.0);
    created
}

/// The backends of the shim's listening connections: the only ones whose last
/// query reads the WAL position (after a notification, and as the heartbeat).
fn listener_pids(db: &mut Client) -> Vec<i32> {
    db.query(
        "SELECT pid FROM pg_stat_activity \
         WHERE datname = current_database() AND query LIKE '%pg_current_wal_lsn%' AND pid <> pg_backend_pid()",
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

fn wait_live(shim: &Shim, live: bool) {
    let start = Instant::now();
    while (counter(shim, "api_auth_shim_cache_live") == 1.0) != live {
        assert!(start.elapsed() < Duration::from_secs(20), "the cache never became live={live}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A change to one environment keeps no other's answers out of the cache:
/// with another environment committing a change every millisecond or so (so
/// that notifications land while fills are being asked), each key is still
/// asked of the database once, and answered from memory after that. (When
/// every notification refused every fill in flight, some of these keys
/// missed again: five runs out of five failed.)
#[test]
fn a_busy_neighbour_keeps_no_answer_out_of_the_cache() {
    let dsn = api_auth_tests::fresh_database("cache_neighbour");
    let shim = Shim::start_with(&dsn, Opts::default());
    wait_live(&shim, true);
    let keys: Vec<String> = (0..40).map(|_| create_env_heard(&shim).1).collect();
    let (busy, _) = create_env_heard(&shim);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (stop, mut db) = (stop.clone(), connect(&dsn));
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                db.execute("UPDATE api_auth.runtime_environment SET updated_at = now() WHERE id = $1", &[&busy]).unwrap();
                std::thread::sleep(Duration::from_micros(500));
            }
        })
    };
    let notes = "api_auth_shim_cache_notifications_total";
    wait_notifications(&shim, counter(&shim, notes) + 10.0);
    let before = shim.scrape();
    for key in &keys {
        for _ in 0..3 {
            assert_eq!(verify(&shim, key), 200);
        }
    }
    let after = shim.scrape();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    let moved = |series: &str| after.get(series) - before.get(series);
    let why = || format!("moved meanwhile: {:?}", after.delta(&before, "api_auth_shim_cache"));
    assert!(moved(notes) >= 5.0, "the neighbour's changes were heard meanwhile; {}", why());
    assert_eq!(moved("api_auth_shim_cache_misses_total{credential=\"key\"}"), 40.0, "one question per key; {}", why());
    assert_eq!(moved("api_auth_shim_cache_hits_total{credential=\"key\"}"), 80.0, "the rest from memory; {}", why());
}

/// A key that two environments hold (a direct table edit; rotation draws
/// random keys) opens the one whose row wins: here the first's grace row,
/// until the second is given the key as its current key. The cache kept the
/// first answer under the first environment, and the second's change must end
/// it: answered from memory after the change, the key opens the second
/// environment, as the database says. (Until 0.4.1 only the second was
/// notified, and the cache kept answering for the first.)
#[test]
fn a_key_given_to_another_environment_by_hand_opens_that_one() {
    let dsn = api_auth_tests::fresh_database("cache_shared_key");
    let shim = Shim::start_with(&dsn, Opts::default());
    wait_live(&shim, true);
    let mut db = connect(&dsn);
    let (first, key) = create_env_heard(&shim);
    let (second, _) = create_env_heard(&shim);
    let notes = "api_auth_shim_cache_notifications_total";
    let n = counter(&shim, notes);
    api_auth_tests::rotate(&mut db, &first);
    wait_notifications(&shim, n + 1.0);
    let opens = || {
        let r = shim.get("/api/v1/auth/verify", Some(&key));
        assert_eq!(r.status, 200);
        (
            r.header("x-api-auth-environment-id").unwrap_or("").to_owned(),
            r.header("x-api-auth-matched-by").unwrap_or("").to_owned(),
        )
    };
    assert_eq!(opens(), (first.clone(), "grace".into()));
    let hits = "api_auth_shim_cache_hits_total{credential=\"key\"}";
    let h = counter(&shim, hits);
    assert_eq!(opens(), (first.clone(), "grace".into()));
    assert_eq!(counter(&shim, hits), h + 1.0, "the answer is kept");

    db.execute("UPDATE api_auth.runtime_environment SET api_key = $1 WHERE id = $2", &[&key, &second]).unwrap();
    let found: String = db.query_one("SELECT id FROM api_auth.find_environment_by_api_key($1)", &[&key]).unwrap().get(0);
    assert_eq!(found, second, "the database: the current key wins");
    // The cache agrees with the database within 5 s.
    until((second.clone(), "current".to_string()), Duration::from_secs(5), opens);
    assert_eq!(opens(), (second.clone(), "current".into()));
}

/// `TRUNCATE` (no row triggers fire) of the grace windows ends every key in
/// grace at once, and the cache with it: the extension sends `*`, and the
/// shim forgets everything.
#[test]
fn a_truncate_ends_every_cached_answer() {
    let dsn = api_auth_tests::fresh_database("cache_truncate");
    let shim = Shim::start_with(&dsn, Opts::default());
    wait_live(&shim, true);
    let mut db = connect(&dsn);
    let (env, key) = create_env_heard(&shim);
    // Signed with the key that the rotation puts in grace.
    let token: String = db.query_one("SELECT api_auth.mint_public_jwt($1::text)", &[&key]).unwrap().get(0);
    let notes = "api_auth_shim_cache_notifications_total";
    let n = counter(&shim, notes);
    let (current, _) = api_auth_tests::rotate(&mut db, &env);
    wait_notifications(&shim, n + 1.0);
    for credential in [&key, &current, &token] {
        assert_eq!(verify(&shim, credential), 200);
    }
    let hits = |kind: &str| counter(&shim, &format!("api_auth_shim_cache_hits_total{{credential=\"{kind}\"}}"));
    let (h, t) = (hits("key"), hits("token"));
    assert_eq!(verify(&shim, &key), 200);
    assert_eq!(verify(&shim, &token), 200);
    assert_eq!((hits("key"), hits("token")), (h + 1.0, t + 1.0), "the key in grace and its token are answered from memory");

    db.batch_execute("TRUNCATE api_auth.revoked_api_key").unwrap();
    until_status(&shim, &key, 401, Duration::from_secs(5));
    assert_eq!(verify(&shim, &token), 401, "signed with the key whose window the truncate ended");
    assert_eq!(verify(&shim, &current), 200, "the current key still opens");
}

#[test]
fn hits_ask_nothing_and_every_commit_ends_what_it_changed() {
    let dsn = api_auth_tests::fresh_database("cache_commit");
    let shim = Shim::start_with(&dsn, Opts::default());
    wait_live(&shim, true);
    let mut db = connect(&dsn);
    let notes = "api_auth_shim_cache_notifications_total";
    let n0 = counter(&shim, notes);
    let (env, key) = create_env_heard(&shim);

    let hits = "api_auth_shim_cache_hits_total{credential=\"key\"}";
    let misses = "api_auth_shim_cache_misses_total{credential=\"key\"}";
    assert_eq!(verify(&shim, &key), 200);
    let before = shim.scrape();
    let (h0, m0) = (before.get(hits), before.get(misses));
    for _ in 0..20 {
        assert_eq!(verify(&shim, &key), 200);
    }
    let after = shim.scrape();
    // Said on failure: what the cache did meanwhile, and the shim's log (a
    // lost subscription or a late notification shows there).
    let why = || {
        let cache = |s: &support::Scrape| {
            s.samples
                .iter()
                .filter(|(k, _)| k.starts_with("api_auth_shim_cache"))
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "before the hits: {}\nmoved during them: {:?}\nshim log:\n{}",
            cache(&before),
            after.delta(&before, "api_auth_shim_cache"),
            shim.logs()
        )
    };
    assert_eq!(after.get(hits) - h0, 20.0, "answered from memory; {}", why());
    assert_eq!(after.get(misses), m0, "no miss, so no query; {}", why());
    // The counter counts NOTIFYs only: the creation sent one. (The admin
    // route's own read-your-writes invalidation is not a notification; when
    // it was counted as one, the helper above could take it for the NOTIFY,
    // which then landed during the first fill and kept it out of the cache.)
    assert_eq!(after.get(notes) - n0, 1.0, "notifications for one creation; {}", why());

    // A rotation in SQL (zero grace): the old key stops at once.
    let (new_key, _) = api_auth_tests::rotate(&mut db, &env);
    db.execute("UPDATE api_auth.revoked_api_key SET expires_at = now() WHERE runtime_environment_id = $1", &[&env]).unwrap();
    until_status(&shim, &key, 401, Duration::from_secs(5));
    for _ in 0..20 {
        assert_eq!(verify(&shim, &key), 401, "never the stale answer again");
    }
    assert_eq!(verify(&shim, &new_key), 200);

    // A grace window moved by hand ends the key in grace.
    let (newer, revoked) = api_auth_tests::rotate(&mut db, &env);
    assert_eq!(verify(&shim, &new_key), 200);
    assert_eq!(verify(&shim, &new_key), 200);
    api_auth_tests::set_expiry(&mut db, &revoked, "now()");
    until_status(&shim, &new_key, 401, Duration::from_secs(5));

    // A refusal is kept, and a new key (here: a grace window reopened) ends it.
    assert_eq!(verify(&shim, &new_key), 401);
    api_auth_tests::set_expiry(&mut db, &revoked, "now() + interval '1 hour'");
    until_status(&shim, &new_key, 200, Duration::from_secs(5));

    // Archiving by hand.
    assert_eq!(verify(&shim, &newer), 200);
    db.execute("UPDATE api_auth.runtime_environment SET archived_at = now() WHERE id = $1", &[&env]).unwrap();
    until_status(&shim, &newer, 401, Duration::from_secs(5));
    let keys = counter(&shim, "api_auth_shim_cache_notifications_total");
    assert!(keys >= 4.0, "notifications applied: {keys}");
}

#[test]
fn tokens_leave_the_cache_at_their_exp() {
    let shim = Shim::start("cache_token_exp");
    wait_live(&shim, true);
    let (_env, key) = create_env_heard(&shim);
    let r = shim.post("/api/v1/auth/jwt", Some(&key), &json!({ "expirationTime": api_auth_tests::now() + 2 }));
    assert_eq!(r.status, 200, "{}", r.text());
    let token = r.json()["token"].as_str().unwrap().to_string();
    assert_eq!(verify(&shim, &token), 200);
    let hits = "api_auth_shim_cache_hits_total{credential=\"token\"}";
    let h0 = counter(&shim, hits);
    assert_eq!(verify(&shim, &token), 200);
    assert_eq!(counter(&shim, hits) - h0, 1.0);
    std::thread::sleep(Duration::from_millis(3200));
    assert_eq!(verify(&shim, &token), 401, "expired: gone from the cache too");
}

/// Answers from memory are logged like any other (a key masked, a token
/// named, neither in clear), and a credential that is neither a key nor a
/// token is refused without a question to the database (no miss counted).
#[test]
fn answers_from_memory_are_logged_like_any_other() {
    let shim = Shim::start("cache_logs");
    wait_live(&shim, true);
    let (_env, key) = create_env_heard(&shim);
    let r = shim.post("/api/v1/auth/jwt", Some(&key), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text());
    let token = r.json()["token"].as_str().unwrap().to_string();
    let hits = |kind: &str| counter(&shim, &format!("api_auth_shim_cache_hits_total{{credential=\"{kind}\"}}"));
    let misses = |kind: &str| counter(&shim, &format!("api_auth_shim_cache_misses_total{{credential=\"{kind}\"}}"));
    let (hk, ht) = (hits("key"), hits("token"));
    for _ in 0..2 {
        assert_eq!(verify(&shim, &key), 200);
        assert_eq!(verify(&shim, &token), 200);
    }
    assert_eq!((hits("key") - hk, hits("token") - ht), (1.0, 1.0), "the second of each from memory");
    let (mk, mt) = (misses("key"), misses("token"));
    for junk in ["not-a-credential", "a.b.c", "eyJhbGciOiJIUzI1NiJ9.e30.c2ln"] {
        assert_eq!(verify(&shim, junk), 401);
    }
    assert_eq!((misses("key"), misses("token")), (mk, mt), "nothing asked of the database");

    std::thread::sleep(Duration::from_millis(200));
    let logs = shim.logs();
    let lines: Vec<&str> = logs.lines().filter(|l| l.contains("auth.verify")).collect();
    let with = |needle: &str| lines.iter().filter(|l| l.contains(needle)).count();
    assert_eq!(with(&api_auth_core::keys::mask(&key)), 2, "{lines:#?}");
    assert_eq!(with("public-token"), 2, "{lines:#?}");
    assert_eq!(with("unknown"), 3, "{lines:#?}");
    assert!(!logs.contains(&key) && !logs.contains(&token), "a credential reached the logs");
}

/// The listening connection killed: no answer from memory until the shim has
/// subscribed again, and a change made meanwhile is never missed.
#[test]
fn a_lost_subscription_turns_the_cache_off_until_it_is_back() {
    let dsn = api_auth_tests::fresh_database("cache_listener");
    let shim = Shim::start_with(&dsn, Opts::default());
    wait_live(&shim, true);
    let mut db = connect(&dsn);
    let (env, key) = shim.create_env("prod", "PRODUCTION");
    assert_eq!(verify(&shim, &key), 200);
    assert_eq!(verify(&shim, &key), 200);

    let [pid] = listener_pids(&mut db)[..] else { panic!("one listening connection") };
    let killed: bool = db.query_one("SELECT pg_terminate_backend($1)", &[&pid]).unwrap().get(0);
    assert!(killed, "the listening connection terminated");
    // Revoke while the subscription may be down.
    let (_new, revoked) = api_auth_tests::rotate(&mut db, &env);
    api_auth_tests::set_expiry(&mut db, &revoked, "now()");
    // From the first answer on, the old key is refused: live or not, the cache
    // never serves what the revocation ended.
    until_status(&shim, &key, 401, Duration::from_secs(5));
    wait_live(&shim, true);
    for _ in 0..10 {
        assert_eq!(verify(&shim, &key), 401);
    }
    assert!(shim.logs().contains("subscribed to change notifications"), "{}", shim.logs());
}

/// A listening backend stopped with SIGSTOP, for as long as the guard lives.
struct Frozen(i32);

impl Frozen {
    fn stop(pid: i32) -> Frozen {
        let ok = std::process::Command::new("kill").args(["-STOP", &pid.to_string()]).status().unwrap().success();
        assert!(ok, "kill -STOP {pid}");
        Frozen(pid)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill").args(["-CONT", &self.0.to_string()]).status();
    }
}

/// The subscription lost without a word: the listening backend frozen (no
/// FIN, no RST, nothing more to read, as in a network partition). A
/// revocation committed then is never delivered to the shim; the heartbeat
/// notices the silence within a second plus `--db-timeout`, the cache drops
/// everything and subscribes again, and the key is refused.
#[test]
fn a_silently_lost_subscription_is_noticed() {
    let dsn = api_auth_tests::fresh_database("cache_frozen");
    let shim = Shim::start_with(&dsn, Opts { args: vec!["--db-timeout".into(), "0.5".into()], ..Opts::default() });
    wait_live(&shim, true);
    let mut db = connect(&dsn);
    let (env, key) = create_env_heard(&shim);
    assert_eq!(verify(&shim, &key), 200);
    assert_eq!(verify(&shim, &key), 200);
    let [pid] = listener_pids(&mut db)[..] else { panic!("one listening connection") };
    let frozen = Frozen::stop(pid);
    let (_new, revoked) = api_auth_tests::rotate(&mut db, &env);
    api_auth_tests::set_expiry(&mut db, &revoked, "now()");
    let took = until_status(&shim, &key, 401, Duration::from_secs(10));
    assert!(took < Duration::from_secs(4), "the silence was noticed only after {took:?}");
    drop(frozen);
    wait_live(&shim, true);
    for _ in 0..5 {
        assert_eq!(verify(&shim, &key), 401);
    }
    assert!(shim.logs().contains("did not answer within"), "{}", shim.logs());
}

/// With a standby: an entry invalidated at commit is refilled from the
/// primary (or a standby past the commit), never from a standby still behind.
#[test]
fn refills_never_come_from_a_standby_behind_the_invalidation() {
    let cluster = PrivateCluster::start("cache_standby");
    // Test clusters run with synchronous_commit off; here a commit must be
    // flushed (and so replayable) when it returns.
    for sql in ["ALTER SYSTEM SET synchronous_commit = on", "SELECT pg_reload_conf()"] {
        cluster.connect().simple_query(sql).unwrap();
    }
    let standby = cluster.start_standby();
    let shim = Shim::start_with(
        &cluster.url(),
        Opts { args: vec!["--replica-database-url".into(), standby.url(), "--max-replica-lag=30".into()], ..Default::default() },
    );
    wait_live(&shim, true);
    let mut db = cluster.connect();
    let (env, key) = create_env_heard(&shim);
    standby.wait_caught_up(Duration::from_secs(10));
    // The shim has measured the standby fresh and reads from it.
    let start = Instant::now();
    while shim.get("/readyz", None).json()["reads"]["replicas"][0]["usable"] != json!(true) {
        assert!(start.elapsed() < Duration::from_secs(20), "the standby never became usable");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(verify(&shim, &key), 200);
    assert_eq!(verify(&shim, &key), 200);

    // The standby stops replaying but stays within the (generous) lag bound.
    let mut replica = standby.connect();
    replica.batch_execute("SELECT pg_wal_replay_pause()").unwrap();
    while replica.query_one("SELECT pg_get_wal_replay_pause_state()", &[]).unwrap().get::<_, String>(0) != "paused" {
        std::thread::sleep(Duration::from_millis(10));
    }
    let applied = "api_auth_shim_cache_notifications_total";
    let before = counter(&shim, applied);
    let mut tx = db.transaction().unwrap();
    let revoked: String = tx.query_one("SELECT revoked_api_key_id FROM api_auth.rotate_api_key($1)", &[&env]).unwrap().get(0);
    tx.execute("SELECT * FROM api_auth.set_revoked_expiry($1, now())", &[&revoked]).unwrap();
    tx.commit().unwrap();
    let old: bool =
        replica.query_one("SELECT count(*) = 1 FROM api_auth.find_environment_by_api_key($1)", &[&key]).unwrap().get(0);

    assert!(old, "the paused standby still takes the old key");
    // Once the shim has applied the notification, not one answer may come
    // from the paused standby.
    wait_notifications(&shim, before + 1.0);
    assert_eq!(
        shim.get("/readyz", None).json()["reads"]["replicas"][0]["usable"],
        json!(true),
        "the standby is within its lag bound"
    );
    for _ in 0..20 {
        assert_eq!(verify(&shim, &key), 401, "refilled from the primary, not from the paused standby");
    }
    standby.connect().batch_execute("SELECT pg_wal_replay_resume()").unwrap();
    drop(shim);
}
