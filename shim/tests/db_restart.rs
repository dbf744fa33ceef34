//! The database restarts (a real `pg_ctl stop` / `start` of a cluster of this
//! test's own) while the shim is under load: during the outage requests fail
//! fast with 503 and a JSON error; afterwards the shim recovers by itself.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use api_auth_tests::PrivateCluster;
use support::{Opts, Shim};

#[test]
fn shim_survives_a_database_restart() {
    let cluster = PrivateCluster::start("shim_restart");
    let shim = Arc::new(Shim::start_with(&cluster.url(), Opts::default()));
    let (_, key) = shim.create_env("prod", "PRODUCTION");

    let stop = Arc::new(AtomicBool::new(false));
    // (when, status, took, body is JSON with "error")
    type Seen = Vec<(Instant, u16, Duration, bool)>;
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let load: Vec<_> = (0..3)
        .map(|_| {
            let (shim, stop, seen, key) = (shim.clone(), stop.clone(), seen.clone(), key.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let r = shim.get("/api/v1/auth/verify", Some(&key));
                    let json_error = r.status == 200
                        || serde_json::from_slice::<serde_json::Value>(&r.body).is_ok_and(|v| v["error"].is_string());
                    seen.lock().unwrap().push((t, r.status, t.elapsed(), json_error));
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        })
        .collect();

    std::thread::sleep(Duration::from_secs(1));
    cluster.stop();
    let down_at = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let restart_begins = Instant::now();
    cluster.restart();
    let up_at = Instant::now();
    std::thread::sleep(Duration::from_secs(4));
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.join().unwrap();
    }

    let seen = seen.lock().unwrap();
    let outage: Vec<_> =
        seen.iter().filter(|s| s.0 > down_at + Duration::from_millis(200) && s.0 + s.2 < restart_begins).collect();
    assert!(outage.len() >= 5, "too few requests during the outage: {}", outage.len());
    for (_, status, took, json_error) in &outage {
        assert_eq!(*status, 503, "during the outage");
        assert!(*json_error, "503 without a JSON error body");
        assert!(*took < Duration::from_secs(5), "503 took {took:?}: not failing fast");
    }
    let unexpected: Vec<_> = seen.iter().filter(|s| s.1 != 200 && s.1 != 503).collect();
    assert!(unexpected.is_empty(), "statuses other than 200/503: {unexpected:?}");
    let recovered = seen.iter().filter(|s| s.0 > up_at && s.1 == 200).map(|s| s.0).min();
    let recovered = recovered.expect("the shim never answered 200 again after the restart");
    let last = seen.iter().filter(|s| s.0 > up_at).max_by_key(|s| s.0).unwrap();
    assert_eq!(last.1, 200, "still failing at the end");
    eprintln!(
        "restart: {} requests, {} during the outage (all 503, slowest {:?}), 200 again {:?} after the database was back",
        seen.len(),
        outage.len(),
        outage.iter().map(|s| s.2).max().unwrap(),
        recovered - up_at
    );
}
