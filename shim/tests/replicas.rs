//! Read replicas: a real primary and a real streaming hot standby
//! (`pg_basebackup -R`, each with its own port and data folder), the shim
//! routing authentication reads to the standby. Which node served is proven
//! by PostgreSQL's own per-node function counters (`pg_stat_user_functions`
//! with `track_functions = all`) besides the shim's `/readyz` counters.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use api_auth_tests::{PrivateCluster, Standby};
use serde_json::{json, Value};
use support::{Opts, Shim};

/// A primary, its standby and a shim using the standby for reads; runs `f`.
fn with_topology(name: &str, args: &[&str], f: impl FnOnce(&PrivateCluster, &Standby, &Arc<Shim>)) {
    let cluster = PrivateCluster::start(name);
    let mut db = cluster.connect();
    for sql in ["ALTER SYSTEM SET track_functions = 'all'", "ALTER SYSTEM SET synchronous_commit = on", "SELECT pg_reload_conf()"]
    {
        db.simple_query(sql).unwrap();
    }
    let standby = cluster.start_standby();
    // Routing is what is tested here: every read reaches a node (the answer
    // cache with replicas is shim/tests/answer_cache.rs's).
    let mut all = vec!["--replica-database-url".to_string(), standby.url(), "--cache-size=0".to_string()];
    all.extend(args.iter().map(|s| s.to_string()));
    let shim = Arc::new(Shim::start_with(&cluster.url(), Opts { args: all, ..Default::default() }));
    wait_usable(&shim, true, Duration::from_secs(20));
    f(&cluster, &standby, &shim);
}

fn reads(shim: &Shim) -> Value {
    let r = shim.get("/readyz", None);
    assert_eq!(r.status, 200, "readyz: {}", r.text());
    r.json()["reads"].clone()
}

fn wait_usable(shim: &Shim, usable: bool, within: Duration) {
    let start = Instant::now();
    loop {
        let r = reads(shim);
        if r["replicas"][0]["usable"] == json!(usable) {
            return;
        }
        assert!(start.elapsed() < within, "replica never became usable={usable}: {r}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Calls of `api_auth.<function>` counted by this node's statistics.
fn calls(db: &mut api_auth_tests::Client, function: &str) -> i64 {
    db.query_one(
        "SELECT coalesce(sum(calls), 0)::int8 FROM pg_stat_user_functions WHERE schemaname = 'api_auth' AND funcname = $1",
        &[&function],
    )
    .unwrap()
    .get(0)
}

/// Wait until `function`'s counter on `db` reaches `at_least` (statistics
/// reach the shared counters within ~10 s of a backend going idle).
fn wait_calls(db: &mut api_auth_tests::Client, function: &str, at_least: i64) -> i64 {
    let start = Instant::now();
    loop {
        let n = calls(db, function);
        if n >= at_least || start.elapsed() > Duration::from_secs(25) {
            return n;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn verify(shim: &Shim, credential: &str) -> u16 {
    shim.get("/api/v1/auth/verify", Some(credential)).status
}

#[test]
fn authentication_reads_are_served_by_the_standby() {
    with_topology("repl_served", &[], |cluster, standby, shim| {
        let (env, key) = shim.create_env("prod", "PRODUCTION");
        // Read-your-writes: the key works at once, whatever the standby has replayed.
        assert_eq!(verify(shim, &key), 200);
        standby.wait_caught_up(Duration::from_secs(10));
        let token = shim.mint(&key, &["read:sessions", "write:sessions"]);

        let mut primary = cluster.connect();
        let mut replica = standby.connect();
        let (p_find, r_find) =
            (calls(&mut primary, "find_environment_by_api_key"), calls(&mut replica, "find_environment_by_api_key"));
        let (p_val, r_val) = (calls(&mut primary, "validate_public_jwt"), calls(&mut replica, "validate_public_jwt"));
        let before = reads(shim);
        const N: i64 = 40;
        for _ in 0..N {
            assert_eq!(verify(shim, &key), 200);
            assert_eq!(verify(shim, &token), 200);
        }
        let claims = shim.post("/api/v1/auth/jwt/claims", Some(&key), &json!({}));
        assert_eq!(claims.status, 200, "{}", claims.text());
        assert_eq!(claims.json()["sub"], json!(env));
        // A session is written on the primary, then read (through the standby).
        let created = shim.post(
            "/api/v1/sessions",
            Some(&key),
            &json!({ "type": "chat", "taskIdentifier": "t1", "triggerConfig": {}, "externalId": "ext-1" }),
        );
        assert_eq!(created.status, 201, "{}", created.text());
        let got = shim.get("/api/v1/sessions/ext-1", Some(&key));
        assert_eq!(got.status, 200, "a session just created reads at once: {}", got.text());
        assert_eq!(shim.get("/api/v1/sessions/ext-1", Some(&token)).status, 200);

        let r_find_after = wait_calls(&mut replica, "find_environment_by_api_key", r_find + N);
        let r_val_after = wait_calls(&mut replica, "validate_public_jwt", r_val + N);
        let p_find_after = calls(&mut primary, "find_environment_by_api_key");
        let p_val_after = calls(&mut primary, "validate_public_jwt");
        eprintln!(
            "standby: find +{} validate +{}; primary: find +{} validate +{}",
            r_find_after - r_find,
            r_val_after - r_val,
            p_find_after - p_find,
            p_val_after - p_val
        );
        assert!(r_find_after - r_find >= N, "the standby did not run the key lookups");
        assert!(r_val_after - r_val >= N, "the standby did not run the token checks");
        // The primary ran at most the session creation's credential check
        // and the confirmation of the session read (if the standby was late).
        assert!(p_find_after - p_find <= 3, "the primary ran {} lookups", p_find_after - p_find);
        assert!(p_val_after - p_val <= 1, "the primary ran {} token checks", p_val_after - p_val);

        let after = reads(shim);
        let served = after["replicas"][0]["served"].as_i64().unwrap() - before["replicas"][0]["served"].as_i64().unwrap();
        assert!(served > 2 * N, "shim counted {served} reads on the replica");
        assert_eq!(after["fallbacks"], json!(0), "{after}");
        // The replica's pool is reported by /metrics under its configured name.
        let metrics = shim.get("/metrics", None);
        assert_eq!(metrics.status, 200);
        let wanted =
            format!("api_auth_shim_db_pool_connections{{pool=\"replica:127.0.0.1:{}/{}\"}}", standby.port, "repl_served");
        assert!(metrics.text().contains(&wanted), "no {wanted} in /metrics:\n{}", metrics.text());
        // And the routing: what this replica served, and that it is usable.
        let replica = format!("replica=\"127.0.0.1:{}/repl_served\"", standby.port);
        let value = |name: &str| -> f64 {
            let prefix = format!("api_auth_shim_{name}{{{replica}}} ");
            let line = metrics.text().lines().find(|l| l.starts_with(&prefix)).map(str::to_string);
            let line = line.unwrap_or_else(|| panic!("no {prefix} in /metrics:\n{}", metrics.text()));
            line[prefix.len()..].trim().parse().unwrap()
        };
        assert!(value("replica_served_total") >= (2 * N) as f64);
        assert_eq!(value("replica_usable"), 1.0);
        assert!(metrics.text().contains("api_auth_shim_replica_confirm_skipped_total 0"), "{}", metrics.text());
        support::promtool_check(&metrics.text());
    });
}

#[test]
fn rotation_works_at_once_and_grace_expiry_refuses_within_the_lag_bound() {
    with_topology("repl_rotate", &["--max-replica-lag", "0.5"], |_cluster, standby, shim| {
        let (env, old_key) = shim.create_env("prod", "PRODUCTION");
        standby.wait_caught_up(Duration::from_secs(10));
        assert_eq!(verify(shim, &old_key), 200);

        let (new_key, revoked_id) = shim.rotate(&env);
        // The new key, immediately: the standby may not know it yet, the
        // refusal is confirmed on the primary.
        let r = shim.get("/api/v1/auth/verify", Some(&new_key));
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-api-auth-method"), Some("current_key"));
        assert!(shim.mint(&new_key, &[]).len() > 20);
        // The old key is accepted throughout; a replica that has not replayed
        // the rotation yet still calls it current (an acceptance, not a
        // refusal, so nothing to confirm), and grace once it has.
        let r = shim.get("/api/v1/auth/verify", Some(&old_key));
        assert_eq!(r.status, 200, "old key right after the rotation: {}", r.text());
        standby.wait_caught_up(Duration::from_secs(10));
        let r = shim.get("/api/v1/auth/verify", Some(&old_key));
        assert_eq!(r.status, 200, "old key in its grace window: {}", r.text());
        assert_eq!(r.header("x-api-auth-method"), Some("grace_key"));

        // End the grace window now, then poll: the first 401 comes within
        // the lag bound, and it never flips back to 200.
        let expired = shim
            .admin_post(&format!("/admin/api/v1/revoked-api-keys/{revoked_id}"), &json!({ "expiresAt": "2000-01-01T00:00:00Z" }));
        assert_eq!(expired.status, 200, "{}", expired.text());
        let committed = Instant::now();
        let mut first_401 = None;
        while committed.elapsed() < Duration::from_secs(5) {
            let status = verify(shim, &old_key);
            match (status, first_401) {
                (401, None) => first_401 = Some(committed.elapsed()),
                (200, Some(at)) => panic!("200 again after a 401 at {at:?}"),
                (200 | 401, _) => {}
                (other, _) => panic!("status {other}"),
            }
            if first_401.is_some_and(|at| committed.elapsed() > at + Duration::from_millis(500)) {
                break;
            }
        }
        let delay = first_401.expect("the expired key was never refused");
        eprintln!("grace expiry → first 401 through the standby: {delay:?}");
        assert!(delay < Duration::from_millis(1500), "took {delay:?} (bound 0.5 s + poll + request)");
        assert_eq!(verify(shim, &new_key), 200);
    });
}

#[test]
fn a_stopped_standby_costs_clients_nothing() {
    with_topology("repl_stop", &["--max-replica-lag", "0.5"], |_cluster, standby, shim| {
        let (_, key) = shim.create_env("prod", "PRODUCTION");
        standby.wait_caught_up(Duration::from_secs(10));

        let stop = Arc::new(AtomicBool::new(false));
        let statuses: Arc<Mutex<Vec<u16>>> = Arc::default();
        let load: Vec<_> = (0..3)
            .map(|_| {
                let (shim, stop, statuses, key) = (shim.clone(), stop.clone(), statuses.clone(), key.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let status = shim.get("/api/v1/auth/verify", Some(&key)).status;
                        statuses.lock().unwrap().push(status);
                        std::thread::sleep(Duration::from_millis(5));
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(500));
        standby.stop();
        std::thread::sleep(Duration::from_millis(300));
        wait_usable(shim, false, Duration::from_secs(5));
        let during = reads(shim);
        std::thread::sleep(Duration::from_secs(2));
        standby.start();
        wait_usable(shim, true, Duration::from_secs(20));
        let served_back = reads(shim)["replicas"][0]["served"].as_i64().unwrap();
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::Relaxed);
        for t in load {
            t.join().unwrap();
        }
        let after = reads(shim);
        let statuses = statuses.lock().unwrap();
        let bad: Vec<_> = statuses.iter().filter(|s| **s != 200).collect();
        eprintln!("standby stopped and restarted under load: {} requests, {} not 200; {after}", statuses.len(), bad.len());
        assert!(statuses.len() > 100, "too little load: {}", statuses.len());
        assert!(bad.is_empty(), "client errors while the standby was down: {bad:?}");
        assert!(during["primaryReads"].as_i64().unwrap() > 0, "{during}");
        assert!(after["replicas"][0]["served"].as_i64().unwrap() > served_back, "the standby was not used again: {after}");
    });
}

#[test]
fn a_paused_standby_beyond_the_lag_bound_is_not_used() {
    with_topology("repl_pause", &["--max-replica-lag", "0.5"], |cluster, standby, shim| {
        let (env, old_key) = shim.create_env("prod", "PRODUCTION");
        let (_, revoked_id) = shim.rotate(&env);
        standby.wait_caught_up(Duration::from_secs(10));
        assert_eq!(verify(shim, &old_key), 200, "grace key");

        let mut replica = standby.connect();
        replica.batch_execute("SELECT pg_wal_replay_pause()").unwrap();
        // An idle primary: a paused standby is still exact, so still used.
        std::thread::sleep(Duration::from_secs(1));
        assert_eq!(reads(shim)["replicas"][0]["usable"], json!(true), "idle primary, paused standby");

        let r = shim
            .admin_post(&format!("/admin/api/v1/revoked-api-keys/{revoked_id}"), &json!({ "expiresAt": "2000-01-01T00:00:00Z" }));
        assert_eq!(r.status, 200);
        let revoked_at = Instant::now();
        // The standby still holds the old state...
        std::thread::sleep(Duration::from_millis(1200));
        let still: i64 =
            replica.query_one("SELECT count(*) FROM api_auth.find_environment_by_api_key($1, NULL)", &[&old_key]).unwrap().get(0);
        assert_eq!(still, 1, "the paused standby should still accept the old key");
        // ...but it is past the bound, so the shim reads from the primary.
        assert_eq!(reads(shim)["replicas"][0]["usable"], json!(false));
        let primary_before = reads(shim)["primaryReads"].as_i64().unwrap();
        for _ in 0..20 {
            assert_eq!(verify(shim, &old_key), 401, "revoked key through a shim whose replica is paused");
        }
        assert!(reads(shim)["primaryReads"].as_i64().unwrap() >= primary_before + 20);
        eprintln!("paused standby: refused through the primary {:?} after the revocation", revoked_at.elapsed());
        let _ = cluster;

        replica.batch_execute("SELECT pg_wal_replay_resume()").unwrap();
        wait_usable(shim, true, Duration::from_secs(10));
        let served = reads(shim)["replicas"][0]["served"].as_i64().unwrap();
        assert_eq!(verify(shim, &old_key), 401);
        assert!(reads(shim)["replicas"][0]["served"].as_i64().unwrap() > served, "standby used again after resuming");
    });
}

#[test]
fn a_bogus_key_flood_stays_within_the_confirmation_budget() {
    with_topology("repl_flood", &["--replica-confirm-rate", "20"], |cluster, standby, shim| {
        let (_, key) = shim.create_env("prod", "PRODUCTION");
        standby.wait_caught_up(Duration::from_secs(10));
        let mut primary = cluster.connect();
        let primary_find = calls(&mut primary, "find_environment_by_api_key");
        let before = reads(shim);
        let started = Instant::now();
        let mut refused = 0;
        for i in 0..400 {
            let bogus = format!("tr_prod_{:020}", i);
            let r = shim.get("/api/v1/auth/verify", Some(&bogus));
            r.assert_error(401);
            refused += 1;
            if i % 50 == 0 {
                assert_eq!(verify(shim, &key), 200, "a real key during the flood");
            }
        }
        let elapsed = started.elapsed().as_secs_f64();
        let after = reads(shim);
        let confirmations = after["confirmations"].as_i64().unwrap() - before["confirmations"].as_i64().unwrap();
        let skipped = after["confirmSkipped"].as_i64().unwrap() - before["confirmSkipped"].as_i64().unwrap();
        // Burst (20) plus 20 per second of flood.
        let budget = 20.0 + 20.0 * elapsed;
        eprintln!("flood: {refused} refused in {elapsed:.2} s, {confirmations} confirmed on the primary (budget {budget:.0}), {skipped} not");
        assert!((confirmations as f64) <= budget + 1.0, "{confirmations} confirmations > budget {budget}");
        assert!(confirmations >= 20, "the burst was not used: {confirmations}");
        assert_eq!(confirmations + skipped, 400, "every refusal is either confirmed or answered as is");
        // The primary's own counter agrees (statistics flush within ~10 s).
        std::thread::sleep(Duration::from_secs(11));
        let primary_delta = calls(&mut primary, "find_environment_by_api_key") - primary_find;
        assert!(primary_delta <= confirmations, "primary ran {primary_delta} lookups for {confirmations} confirmations");
    });
}

#[test]
fn with_the_primary_down_replicas_serve_until_the_bound_then_503() {
    with_topology("repl_primary_down", &["--max-replica-lag", "4", "--db-timeout", "0.5"], |cluster, standby, shim| {
        let (_, key) = shim.create_env("prod", "PRODUCTION");
        standby.wait_caught_up(Duration::from_secs(10));
        assert_eq!(verify(shim, &key), 200);
        // Stop the primary alone (scripts/cluster.sh stop would stop the standby too).
        let data = cluster.home.join("pgdata");
        let ok = std::process::Command::new("runuser")
            .args(["-u", "postgres", "--", "/usr/lib/postgresql/15/bin/pg_ctl", "-D"])
            .arg(&data)
            .args(["-m", "immediate", "-w", "stop"])
            .status()
            .unwrap()
            .success();
        assert!(ok, "pg_ctl stop of the primary");
        let stopped = Instant::now();
        // Within the bound: the standby answers; a refusal it gives stands
        // although the primary cannot confirm it (a refusal is never unsafe).
        assert_eq!(verify(shim, &key), 200, "a known key through the standby");
        let r = shim.get("/api/v1/auth/verify", Some("tr_prod_00000000000000000000"));
        r.assert_error(401);
        assert!(stopped.elapsed() < Duration::from_secs(3), "too slow to test within the bound");
        // Past the bound nothing proves the standby fresh: reads go to the
        // primary, which is down: 503, never a possibly stale 200.
        std::thread::sleep(Duration::from_secs(4) - stopped.elapsed().min(Duration::from_secs(4)) + Duration::from_millis(700));
        // (/readyz itself answers 503 now: it checks the primary.)
        shim.get("/readyz", None).assert_error(503);
        shim.get("/api/v1/auth/verify", Some(&key)).assert_error(503);
    });
}
