//! Under sustained load on `/api/v1/auth/verify`, with keys in grace, rotations
//! and expiry changes running concurrently: zero wrong answers (no 401 for a
//! key or token in grace, no 200 for an expired one) and no 5xx. Counted and printed.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

const WORKERS: usize = 6;
const LOAD_FOR: Duration = Duration::from_secs(8);

#[derive(Default)]
struct Tally {
    total: AtomicUsize,
    wrong: AtomicUsize,
    server_errors: AtomicUsize,
}

#[test]
fn no_wrong_answers_under_load_with_rotations() {
    let shim = Arc::new(Shim::start("shim_load"));
    // Rotated over and over during the load: every key ever issued must keep working.
    let rotating: Vec<(String, Arc<Mutex<Vec<String>>>)> = (0..3)
        .map(|i| {
            let (env, key) = shim.create_env(&format!("rot{i}"), "PRODUCTION");
            (env, Arc::new(Mutex::new(vec![key])))
        })
        .collect();
    // Keys and tokens with a fixed truth: in grace (accept) or expired (refuse).
    let mut fixed: Vec<(String, bool)> = Vec::new();
    for i in 0..3 {
        let (env, old) = shim.create_env(&format!("grace{i}"), "PRODUCTION");
        let token = shim.mint(&old, &["read:runs"]);
        shim.rotate(&env);
        fixed.push((old, true));
        fixed.push((token, true));
        let (env, old) = shim.create_env(&format!("expired{i}"), "PRODUCTION");
        let token = shim.mint(&old, &["read:runs"]);
        let (_, revoked) = shim.rotate(&env);
        let r =
            shim.admin_post(&format!("/admin/api/v1/revoked-api-keys/{revoked}"), &json!({"expiresAt": "2001-01-01T00:00:00Z"}));
        assert_eq!(r.status, 200, "{}", r.text());
        fixed.push((old, false));
        fixed.push((token, false));
        fixed.push((format!("tr_prod_{:0>24}", i), false));
    }
    // A grace window flipped open and shut all the time (no fixed truth; load only).
    let (flip_env, _) = shim.create_env("flip", "PRODUCTION");
    let (_, flip_revoked) = shim.rotate(&flip_env);

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let rotations = Arc::new(AtomicUsize::new(0));
    let mut threads = Vec::new();
    {
        let (shim, stop, rotating, rotations) = (shim.clone(), stop.clone(), rotating.clone(), rotations.clone());
        threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for (env, keys) in &rotating {
                    let (new_key, _) = shim.rotate(env);
                    keys.lock().unwrap().push(new_key);
                    rotations.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    {
        let (shim, stop) = (shim.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            let mut open = false;
            while !stop.load(Ordering::Relaxed) {
                let at = if open { "2001-01-01T00:00:00Z" } else { "2999-01-01T00:00:00Z" };
                let r = shim.admin_post(&format!("/admin/api/v1/revoked-api-keys/{flip_revoked}"), &json!({"expiresAt": at}));
                assert_eq!(r.status, 200, "{}", r.text());
                open = !open;
            }
        }));
    }
    let deadline = Instant::now() + LOAD_FOR;
    for w in 0..WORKERS {
        let (shim, tally, rotating, fixed) = (shim.clone(), tally.clone(), rotating.clone(), fixed.clone());
        threads.push(std::thread::spawn(move || {
            let mut i = w;
            while Instant::now() < deadline {
                i += 1;
                let (credential, accept) = if i % 2 == 0 {
                    let keys = rotating[i % rotating.len()].1.lock().unwrap();
                    (keys[(i / 2) % keys.len()].clone(), true)
                } else {
                    fixed[i % fixed.len()].clone()
                };
                let r = shim.get("/api/v1/auth/verify", Some(&credential));
                tally.total.fetch_add(1, Ordering::Relaxed);
                if r.status >= 500 {
                    tally.server_errors.fetch_add(1, Ordering::Relaxed);
                } else if (r.status == 200) != accept {
                    tally.wrong.fetch_add(1, Ordering::Relaxed);
                    eprintln!(
                        "wrong answer: {} for a credential that should be {}",
                        r.status,
                        if accept { "accepted" } else { "refused" }
                    );
                }
            }
        }));
    }
    std::thread::sleep(LOAD_FOR);
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("load thread");
    }
    let (total, wrong, errors) =
        (tally.total.load(Ordering::Relaxed), tally.wrong.load(Ordering::Relaxed), tally.server_errors.load(Ordering::Relaxed));
    let rotations = rotations.load(Ordering::Relaxed);
    eprintln!("load: {total} requests, {wrong} wrong answers, {errors} 5xx, {rotations} concurrent rotations");
    assert!(total > 300 && rotations > 5, "too little load to mean anything: {total} requests, {rotations} rotations");
    assert_eq!(wrong, 0, "wrong answers under load");
    assert_eq!(errors, 0, "5xx under load");
}
