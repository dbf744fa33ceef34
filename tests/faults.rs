//! A backend killed in the middle of `rotate_api_key` loses no key: the
//! environment keeps its old key, or has the new key plus the old one's grace
//! row. Tested by repetition, at random moments and while blocked mid-call.

use std::thread;
use std::time::Duration;

use api_auth_tests::*;

const ROUNDS: usize = 40;

fn state(db: &mut Client, env: &str) -> (String, Vec<String>) {
    let current: String = db.query_one("SELECT api_key FROM api_auth.runtime_environment WHERE id = $1", &[&env]).unwrap().get(0);
    let revoked = db
        .query("SELECT api_key FROM api_auth.revoked_api_key WHERE runtime_environment_id = $1", &[&env])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    (current, revoked)
}

#[test]
fn killed_rotations_lose_no_key() {
    let (dsn, mut db) = fresh("faults_kill");
    let (env, mut current) = create_environment(&mut db, "prod", "PRODUCTION");
    let mut every_key = vec![current.clone()];
    let (mut killed, mut completed) = (0, 0);
    for round in 0..ROUNDS {
        let mut victim = connect(&dsn);
        let pid: i32 = victim.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
        // Half the rounds: hold the row lock so the rotation is certainly
        // mid-call (blocked inside rotate_api_key) when it is killed.
        let mut blocker = connect(&dsn);
        let mut tx = None;
        if round % 2 == 0 {
            let mut t = blocker.transaction().unwrap();
            t.execute("SELECT 1 FROM api_auth.runtime_environment WHERE id = $1 FOR UPDATE", &[&env]).unwrap();
            tx = Some(t);
        }
        let env2 = env.clone();
        let rotation = thread::spawn(move || {
            victim.query_one("SELECT api_key FROM api_auth.rotate_api_key($1)", &[&env2]).map(|r| r.get::<_, String>(0))
        });
        // Random-ish moments: from "at once" to "after it could have finished".
        thread::sleep(Duration::from_micros((round as u64 * 7919) % 4000));
        let mut killer = connect(&admin_dsn());
        killer.execute("SELECT pg_terminate_backend($1)", &[&pid]).unwrap();
        if let Some(t) = tx {
            t.rollback().unwrap();
        }
        match rotation.join().unwrap() {
            Ok(new_key) => {
                completed += 1;
                every_key.push(new_key);
            }
            Err(_) => killed += 1,
        }
        let (now_current, revoked) = state(&mut db, &env);
        if now_current != current {
            assert!(revoked.contains(&current), "round {round}: the old key vanished without a grace row");
            if !every_key.contains(&now_current) {
                // Committed just before the kill reached it; the client saw an error.
                every_key.push(now_current.clone());
            }
            current = now_current;
        }
        for k in &every_key {
            assert!(*k == current || revoked.contains(k), "round {round}: a key was lost");
        }
        assert_eq!(revoked.len(), every_key.len() - 1, "round {round}: one grace row per rotation, no more");
    }
    assert!(killed > ROUNDS / 4, "too few rotations were actually killed ({killed}) to prove anything");
    eprintln!("{ROUNDS} rounds: {killed} rotations killed mid-call, {completed} completed, no key lost");
}
