//! `api_auth_bench replicas [--smoke]`: the shim with one streaming standby
//! against the shim on the primary alone (issue 12). `scripts/bench.sh` starts
//! the standby (`pg_basebackup -R` of the bench cluster) and passes its port.
//!
//! Three figures, measured in the same run:
//! - verify throughput (secret keys) through a shim reading from the standby,
//!   as a ratio to a shim reading from the primary (same machine, so no gain is
//!   expected: the figure is the routing's cost);
//! - the fraction of authentication queries the standby ran, from each node's
//!   own function-call counters (`pg_stat_user_functions`) over a run of the
//!   replica-backed shim alone;
//! - the revocation delay: from the acknowledged commit of
//!   `set_revoked_expiry(id, now())` on the primary (`synchronous_commit = on`
//!   for that session) to the first 401 for that key through the
//!   replica-backed shim, while it is under load; p50, p99 and max over the
//!   trials.
//!
//! Its own data: environments created here (`bench-repl-*`), so it does not
//! depend on the main run's tables.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::{env_or, load, log, median, start_server};

struct Setup {
    runs: usize,
    secs: u64,
    conns: usize,
    pool_size: usize,
    envs: i64,
    trials: usize,
}

fn connect(dsn: &str) -> Result<postgres::Client, String> {
    postgres::Client::connect(dsn, postgres::NoTls).map_err(|e| format!("connect {dsn}: {e}"))
}

/// Calls of `api_auth.find_environment_by_api_key` counted on a node.
fn find_calls(db: &mut postgres::Client) -> Result<i64, String> {
    db.query_one(
        "SELECT coalesce(sum(calls), 0)::int8 FROM pg_stat_user_functions \
         WHERE schemaname = 'api_auth' AND funcname = 'find_environment_by_api_key'",
        &[],
    )
    .map(|r| r.get(0))
    .map_err(|e| e.to_string())
}

fn reads(addr: SocketAddr) -> Result<Value, String> {
    Ok(load::get_json(addr, "/readyz")?["reads"].clone())
}

fn wait_caught_up(primary: &mut postgres::Client, standby: &mut postgres::Client) -> Result<(), String> {
    let lsn: String = primary.query_one("SELECT pg_current_wal_flush_lsn()::text", &[]).map_err(|e| e.to_string())?.get(0);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        let done: bool =
            standby.query_one("SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn", &[&lsn]).map_err(|e| e.to_string())?.get(0);
        if done {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(10));
    }
    Err(format!("the standby did not replay up to {lsn} within 60 s"))
}

pub fn run(smoke: bool) -> Result<(), String> {
    let s = if smoke {
        Setup { runs: 2, secs: 2, conns: 8, pool_size: 8, envs: 500, trials: 20 }
    } else {
        Setup { runs: 5, secs: 10, conns: 16, pool_size: 16, envs: 10_000, trials: 200 }
    };
    let host = env_or("API_AUTH_BENCH_PGHOST", "127.0.0.1");
    let port: u16 = env_or("API_AUTH_BENCH_PGPORT", "25470").parse().map_err(|_| "API_AUTH_BENCH_PGPORT")?;
    let sb_port: u16 =
        env_or("API_AUTH_BENCH_STANDBY_PGPORT", &(port + 6).to_string()).parse().map_err(|_| "API_AUTH_BENCH_STANDBY_PGPORT")?;
    let db = env_or("API_AUTH_BENCH_DB", "api_auth_bench");
    let shim_bin = env_or("API_AUTH_BENCH_SHIM", "target/release/api-auth-shim");
    let work = std::path::PathBuf::from(env_or("API_AUTH_BENCH_WORK", "/var/tmp/api_auth-bench/work"));
    let out_dir = std::path::PathBuf::from(env_or("API_AUTH_BENCH_OUT", "bench/results"));
    let p_addr: SocketAddr =
        format!("127.0.0.1:{}", env_or("API_AUTH_BENCH_SHIM_PORT", "25471")).parse().map_err(|e| format!("{e}"))?;
    let r_addr: SocketAddr = format!("127.0.0.1:{}", env_or("API_AUTH_BENCH_REPLICA_SHIM_PORT", &(port + 7).to_string()))
        .parse()
        .map_err(|e| format!("{e}"))?;
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&out_dir).map_err(|e| e.to_string())?;

    let mut primary = connect(&format!("host={host} port={port} user=postgres dbname={db}"))?;
    let mut standby = connect(&format!("host=127.0.0.1 port={sb_port} user=postgres dbname={db}"))?;
    primary.batch_execute("SET synchronous_commit = on").map_err(|e| e.to_string())?;

    log(format!("replicas: {} environments and {} rotated ones for the revocation trials", s.envs, 3 * s.trials));
    let keys: Vec<String> = primary
        .query(
            "SELECT e.api_key FROM generate_series(1, $1::int8) g, \
             LATERAL api_auth.create_environment('bench-repl-' || g, 'PRODUCTION', 'proj_repl', 'org_repl') e",
            &[&s.envs],
        )
        .map_err(|e| e.to_string())?
        .iter()
        .map(|r| r.get(0))
        .collect();
    // (old key, revoked key id): each old key in its grace window until its trial.
    let mut revocable: Vec<(String, String)> = Vec::new();
    // Trials for each of the three revocation figures (routing alone, cache in
    // front, cache in front under a paced load).
    for i in 0..3 * s.trials {
        let row = primary
            .query_one(
                "SELECT e.api_key, r.revoked_api_key_id FROM api_auth.create_environment($1, 'PRODUCTION', 'proj_repl', 'org_repl') e, \
                 LATERAL api_auth.rotate_api_key(e.id) r",
                &[&format!("bench-rev-{i}")],
            )
            .map_err(|e| e.to_string())?;
        revocable.push((row.get(0), row.get(1)));
    }
    wait_caught_up(&mut primary, &mut standby)?;
    let keys = Arc::new(keys);

    let url = format!("postgresql://postgres@127.0.0.1:{port}/{db}");
    let replica_url = format!("postgresql://postgres@127.0.0.1:{sb_port}/{db}");
    let shim = |addr: SocketAddr, extra: &[&str]| {
        let mut cmd = Command::new(&shim_bin);
        cmd.args(["--database-url", &url, "--listen", &addr.to_string()])
            .args(["--pool-size", &s.pool_size.to_string(), "--log-level", "warn"])
            .args(extra)
            .env_remove("DATABASE_URL")
            .env_remove("API_AUTH_REPLICA_DATABASE_URLS");
        cmd
    };
    // The routing figures are taken without the answer cache (every read
    // reaches a node); a third shim adds the cache for its revocation figure.
    let rc_addr = SocketAddr::from(([127, 0, 0, 1], r_addr.port() + 10));
    let p_shim =
        start_server("shim-primary", shim(p_addr, &["--cache-size", "0"]), p_addr, &work.join("shim-primary.log"), "/healthz")?;
    let replica_shim = |name: &'static str, addr: SocketAddr, cache: &str| {
        start_server(
            name,
            shim(addr, &["--replica-database-url", &replica_url, "--cache-size", cache]),
            addr,
            &work.join(format!("{name}.log")),
            "/healthz",
        )
    };
    let (r_shim, rc_shim) =
        match (replica_shim("shim-replica", r_addr, "0"), replica_shim("shim-replica-cached", rc_addr, "100000")) {
            (Ok(r), Ok(rc)) => (r, rc),
            (r, rc) => {
                p_shim.stop();
                for server in [r, rc].into_iter().flatten() {
                    server.stop();
                }
                return Err("a replica-backed shim did not start".into());
            }
        };
    let result = measure(&s, p_addr, r_addr, rc_addr, &keys, &revocable, &mut primary, &mut standby);
    p_shim.stop();
    r_shim.stop();
    rc_shim.stop();
    let doc = result?;
    std::fs::write(out_dir.join("replicas.json"), serde_json::to_string_pretty(&doc).unwrap_or_default())
        .map_err(|e| e.to_string())?;
    let t = &doc["throughput"];
    let f = &doc["fraction"];
    let d = &doc["revocation_delay_ms"];
    let dc = &doc["revocation_delay_cached_ms"];
    println!();
    println!(
        "Read replicas (one streaming standby on the same machine; verify with secret keys, {} connections, {})",
        s.conns,
        crate::scheduler_label(&doc["machine"])
    );
    println!(
        "  verify through primary only        {:>9.0} req/s  p99 {:>6.0} us",
        t["primary_rps"].as_f64().unwrap_or(0.0),
        t["primary_p99_us"].as_f64().unwrap_or(0.0)
    );
    println!(
        "  verify through the standby         {:>9.0} req/s  p99 {:>6.0} us   ratio {:.2}x",
        t["replica_rps"].as_f64().unwrap_or(0.0),
        t["replica_p99_us"].as_f64().unwrap_or(0.0),
        t["ratio"].as_f64().unwrap_or(0.0)
    );
    println!(
        "  key lookups run by the standby     {:>6.1} %  ({} standby, {} primary, by each node's pg_stat_user_functions; shim: {} replica, {} primary)",
        f["standby_share"].as_f64().unwrap_or(0.0) * 100.0,
        f["standby_calls"],
        f["primary_calls"],
        f["shim_replica_reads"],
        f["shim_primary_reads"]
    );
    println!(
        "  revocation → first 401 (under load) {}  over {} trials (bound: --max-replica-lag {} ms)",
        load::delays_text(d, 1),
        d["trials"],
        doc["max_replica_lag_ms"]
    );
    println!(
        "  same, answer cache in front         {}  over {} trials, wrong answers after it: {} (issue 14: target p99 <= 10 ms; refills wait for the invalidating commit's WAL position)",
        load::delays_text(dc, 1),
        dc["trials"],
        dc["wrong_answers"]
    );
    let dp = &doc["revocation_delay_cached_paced_ms"];
    println!(
        "  same, load paced at {:.0} req/s (half)  {}  over {} trials, wrong answers after it: {}",
        dp["background_offered_rps"].as_f64().unwrap_or(0.0),
        load::delays_text(dp, 1),
        dp["trials"],
        dp["wrong_answers"]
    );
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn measure(
    s: &Setup,
    p_addr: SocketAddr,
    r_addr: SocketAddr,
    rc_addr: SocketAddr,
    keys: &Arc<Vec<String>>,
    revocable: &[(String, String)],
    primary: &mut postgres::Client,
    standby: &mut postgres::Client,
) -> Result<Value, String> {
    let start = Instant::now();
    loop {
        let r = reads(r_addr)?;
        if r["replicas"][0]["usable"] == json!(true) {
            break;
        }
        if start.elapsed() > Duration::from_secs(30) {
            return Err(format!("the replica never became usable: {r}"));
        }
        thread::sleep(Duration::from_millis(50));
    }
    let spec = |addr: SocketAddr, secs: u64| load::LoadSpec {
        addr,
        routes: vec![load::Route::new("/api/v1/auth/verify", keys)],
        conns: s.conns,
        warmup: Duration::from_millis(500),
        duration: Duration::from_secs(secs),
        rate: None,
    };

    // 1. Throughput, interleaved rounds.
    let (mut p_rps, mut r_rps, mut p_p99, mut r_p99) = (vec![], vec![], vec![], vec![]);
    for round in 0..s.runs {
        for (name, addr) in [("primary", p_addr), ("replica", r_addr)] {
            let r = load::run(&spec(addr, s.secs));
            log(format!(
                "  replicas round {}/{} {name:<8} {:>8.0} req/s  p99 {:>6.0} us  errors {}",
                round + 1,
                s.runs,
                r.rps,
                r.p99_us,
                r.errors
            ));
            if r.errors > 0 || r.requests == 0 {
                return Err(format!("{name}: {} errors of {} requests (first: {:?})", r.errors, r.requests, r.first_error));
            }
            if name == "primary" {
                p_rps.push(r.rps);
                p_p99.push(r.p99_us);
            } else {
                r_rps.push(r.rps);
                r_p99.push(r.p99_us);
            }
        }
    }

    // 2. Which node ran the lookups: a run of the replica-backed shim alone,
    //    counted by each node (statistics reach the counters within ~10 s).
    // First let the throughput rounds' statistics (the primary-only shim's
    // included) reach the counters, so that they are not counted below.
    thread::sleep(Duration::from_secs(11));
    let (p0, s0) = (find_calls(primary)?, find_calls(standby)?);
    let before = reads(r_addr)?;
    let r = load::run(&spec(r_addr, s.secs));
    if r.errors > 0 {
        return Err(format!("replica run: {} errors (first: {:?})", r.errors, r.first_error));
    }
    thread::sleep(Duration::from_secs(11));
    let (p1, s1) = (find_calls(primary)?, find_calls(standby)?);
    let after = reads(r_addr)?;
    let (pc, sc) = (p1 - p0, s1 - s0);
    let share = if pc + sc > 0 { sc as f64 / (pc + sc) as f64 } else { 0.0 };
    let delta = |v: &Value, k: &str| v[k].as_i64().unwrap_or(0);
    let served = delta(&after["replicas"][0], "served") - delta(&before["replicas"][0], "served");
    let on_primary = delta(&after, "primaryReads") - delta(&before, "primaryReads") + delta(&after, "confirmations")
        - delta(&before, "confirmations");
    log(format!(
        "  lookups: standby {sc}, primary {pc} ({:.1} % on the standby); shim counted {served} reads on the replica, {on_primary} on the primary",
        share * 100.0
    ));

    // 3. Revocation delay under load: through the routing alone, and through
    //    the answer cache in front of it (issue 14), `trials` each.
    //    The cached figure again under a load paced at half the throughput
    //    the caching shim reached meanwhile (busy, not saturated).
    let third = revocable.len() / 3;
    let (uncached_trials, rest) = revocable.split_at(third);
    let (cached_trials, paced_trials) = rest.split_at(third);
    let uncached = revocations(s, r_addr, keys, uncached_trials, primary, None)?;
    let cached = revocations(s, rc_addr, keys, cached_trials, primary, None)?;
    let half = (cached["background_rps"].as_f64().unwrap_or(0.0) / 2.0).round().max(1.0);
    let paced = revocations(s, rc_addr, keys, paced_trials, primary, Some(half))?;
    let max_lag_ms = after["maxLagMs"].clone();
    Ok(json!({
        "machine": crate::machine(),
        "connections": s.conns,
        "pool_size": s.pool_size,
        "max_replica_lag_ms": max_lag_ms,
        "throughput": {
            "primary_rps": median(&p_rps), "replica_rps": median(&r_rps),
            "primary_p99_us": median(&p_p99), "replica_p99_us": median(&r_p99),
            "ratio": median(&r_rps) / median(&p_rps),
            "runs": { "primary": p_rps, "replica": r_rps },
        },
        "fraction": {
            "standby_calls": sc, "primary_calls": pc, "standby_share": share,
            "shim_replica_reads": served, "shim_primary_reads": on_primary, "shim_counters": after,
        },
        "revocation_delay_ms": uncached,
        "revocation_delay_cached_ms": cached,
        "revocation_delay_cached_paced_ms": paced,
    }))
}

/// Revoke each key of `trials` under load through the shim at `addr`: from
/// the acknowledged commit of `set_revoked_expiry(id, now())` to its first 401
/// (and any 200 after it counted as a wrong answer). The load is closed-loop
/// (as fast as the shim answers) or paced at `rate` requests a second.
fn revocations(
    s: &Setup,
    addr: SocketAddr,
    keys: &Arc<Vec<String>>,
    trials: &[(String, String)],
    primary: &mut postgres::Client,
    rate: Option<f64>,
) -> Result<Value, String> {
    let load_secs = (trials.len() as u64 / 5).max(4);
    let bg = {
        let spec = load::LoadSpec {
            addr,
            routes: vec![load::Route::new("/api/v1/auth/verify", keys)],
            conns: s.conns,
            warmup: Duration::from_millis(500),
            duration: Duration::from_secs(load_secs + 4),
            rate,
        };
        thread::spawn(move || load::run(&spec))
    };
    // Trials start once the load is steady: with an answer cache in front,
    // after its first pass over the keys has filled it.
    thread::sleep(Duration::from_millis(2500));
    let mut client = load::Client::new(addr);
    let (mut delays, mut wrong) = (Vec::new(), 0u64);
    let deadline = Instant::now() + Duration::from_secs(load_secs);
    for (old_key, revoked_id) in trials {
        if Instant::now() > deadline && delays.len() >= 10 {
            break;
        }
        // Twice: with an answer cache, the answer is then in it when the key is revoked.
        for _ in 0..2 {
            let status = client.get("/api/v1/auth/verify", Some(old_key))?;
            if status != 200 {
                return Err(format!("a key in its grace window answered {status} before its revocation"));
            }
        }
        primary.execute("SELECT 1 FROM api_auth.set_revoked_expiry($1, now())", &[revoked_id]).map_err(|e| e.to_string())?;
        let delay = load::until_refused(&mut client, "/api/v1/auth/verify", old_key, Duration::from_secs(10))?;
        delays.push(delay.as_secs_f64() * 1000.0);
        for _ in 0..3 {
            if client.get("/api/v1/auth/verify", Some(old_key))? != 401 {
                wrong += 1;
            }
        }
        thread::sleep(Duration::from_millis(20));
    }
    let bg = bg.join().map_err(|_| "load thread panicked")?;
    log(format!("  background load during the trials: {:.0} req/s, {} errors", bg.rps, bg.errors));
    Ok(load::revocation_summary(delays, wrong, &bg, rate))
}
