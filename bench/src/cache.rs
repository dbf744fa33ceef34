//! `api_auth_bench cache [--smoke]`: the shim's answer cache (issue 14),
//! side by side with the uncached shim and the `/healthz` floor, same run.
//!
//! Figures:
//! - cached verify (secret keys, public tokens) vs `GET /healthz` (no
//!   database at all) on the same caching shim, interleaved rounds:
//!   throughput ratio (target: at least 0.8 of the floor);
//! - the p99 at equal load (target: no higher than the floor's): the three
//!   routes in one paced stream, taking turns request by request, at a
//!   quarter and at half of the floor's throughput, with the floor in the
//!   stream twice; how far apart its two copies come out is the noise the
//!   verdict allows, and once more carrying a key's `Authorization` header,
//!   which says how much of a verify's extra latency the credential's bytes
//!   alone account for (closed-loop p99s mostly measure queue depth, and
//!   separate paced runs differed more between rounds than between routes);
//! - the miss path: every request a different key (a cache far smaller than
//!   the key set) vs the shim with `--cache-size 0` on the same keys (target:
//!   no costlier, ratio ≥ 1 within noise);
//! - revocation delay: from the acknowledged commit (`synchronous_commit = on`)
//!   of `set_revoked_expiry(id, now())`, of a rotation with zero grace, and of
//!   an archive, to the first 401 for that key through the caching shim under
//!   load; p50/p99/max over the trials (target: p99 ≤ 10 ms, ≥ 200 trials in
//!   a full run), and any 200 after the first 401 counted as a wrong answer;
//!   once under the saturating load of the other figures, once under a load
//!   paced at half the floor's throughput (busy, not overloaded: at
//!   saturation every wake-up on the path waits for a core);
//! - the listening connection killed (`pg_terminate_backend`) under load: a
//!   key revoked right after, wrong answers after its first 401 counted, and
//!   the time until the cache answers from memory again.
//!
//! Its own data: environments created here (`bench-cache-*`).

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
    hot: i64,
    cold: i64,
    trials: usize,
}

fn connect(dsn: &str) -> Result<postgres::Client, String> {
    postgres::Client::connect(dsn, postgres::NoTls).map_err(|e| format!("connect {dsn}: {e}"))
}

/// One series of the shim's `/metrics`.
fn metric(addr: SocketAddr, series: &str) -> Result<f64, String> {
    let text = load::get_text(addr, "/metrics")?;
    Ok(text.lines().find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().parse::<f64>().ok())).unwrap_or(0.0))
}

fn wait_live(addr: SocketAddr) -> Result<Duration, String> {
    let start = Instant::now();
    while metric(addr, "api_auth_shim_cache_live")? != 1.0 {
        if start.elapsed() > Duration::from_secs(30) {
            return Err("the answer cache never subscribed".into());
        }
        thread::sleep(Duration::from_millis(1));
    }
    Ok(start.elapsed())
}

pub fn run(smoke: bool) -> Result<(), String> {
    let mut s = if smoke {
        Setup { runs: 2, secs: 2, conns: 8, hot: 100, cold: 2_000, trials: 21 }
    } else {
        Setup { runs: 5, secs: 10, conns: 16, hot: 1_000, cold: 50_000, trials: 210 }
    };
    // Quick looks, as for the main run.
    if let Some(n) = crate::env_num("API_AUTH_BENCH_RUNS") {
        s.runs = n as usize;
    }
    if let Some(n) = crate::env_num("API_AUTH_BENCH_SECS") {
        s.secs = n;
    }
    let host = env_or("API_AUTH_BENCH_PGHOST", "127.0.0.1");
    let port: u16 = env_or("API_AUTH_BENCH_PGPORT", "25470").parse().map_err(|_| "API_AUTH_BENCH_PGPORT")?;
    let db = env_or("API_AUTH_BENCH_DB", "api_auth_bench");
    let shim_bin = env_or("API_AUTH_BENCH_SHIM", "target/release/api-auth-shim");
    let work = std::path::PathBuf::from(env_or("API_AUTH_BENCH_WORK", "/var/tmp/api_auth-bench/work"));
    let out_dir = std::path::PathBuf::from(env_or("API_AUTH_BENCH_OUT", "bench/results"));
    let base: u16 = env_or("API_AUTH_BENCH_CACHE_SHIM_PORT", &(port + 8).to_string()).parse().map_err(|_| "port")?;
    let (cached, uncached, small) = (
        SocketAddr::from(([127, 0, 0, 1], base)),
        SocketAddr::from(([127, 0, 0, 1], base + 1)),
        SocketAddr::from(([127, 0, 0, 1], base + 2)),
    );
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&out_dir).map_err(|e| e.to_string())?;

    let mut db_client = connect(&format!("host={host} port={port} user=postgres dbname={db}"))?;
    db_client.batch_execute("SET synchronous_commit = on").map_err(|e| e.to_string())?;
    log(format!("cache: {} hot keys and tokens, {} cold keys, {} revocation trials", s.hot, s.cold, s.trials));
    let keys_of = |db: &mut postgres::Client, prefix: &str, n: i64| -> Result<Vec<String>, String> {
        Ok(db
            .query(
                "SELECT e.api_key FROM generate_series(1, $1::int8) g, \
                 LATERAL api_auth.create_environment($2 || g, 'PRODUCTION', 'proj_cache', 'org_cache') e",
                &[&n, &prefix],
            )
            .map_err(|e| e.to_string())?
            .iter()
            .map(|r| r.get(0))
            .collect())
    };
    let hot = keys_of(&mut db_client, "bench-cache-hot-", s.hot)?;
    let cold = Arc::new(keys_of(&mut db_client, "bench-cache-cold-", s.cold)?);
    let tokens: Vec<String> = hot
        .iter()
        .map(|k| {
            db_client
                .query_one("SELECT api_auth.mint_public_jwt($1, '{\"scopes\": [\"read:runs\"]}', '2h')", &[k])
                .map(|r| r.get(0))
                .map_err(|e| e.to_string())
        })
        .collect::<Result<_, _>>()?;
    // Trial environments: (key, environment id, revoked id of a key in grace).
    // (Twice the trials: at saturation, then paced.)
    let mut trials: Vec<(String, String, String)> = Vec::new();
    for i in 0..2 * s.trials {
        let row = db_client
            .query_one(
                "SELECT r.api_key, e.id, r.revoked_api_key_id, e.api_key FROM api_auth.create_environment($1, 'PRODUCTION', 'proj_cache', 'org_cache') e, \
                 LATERAL api_auth.rotate_api_key(e.id) r",
                &[&format!("bench-cache-rev-{i}")],
            )
            .map_err(|e| e.to_string())?;
        // Kinds take turns: the old key in grace is revoked by expiry; the
        // current key by a zero-grace rotation or an archive.
        let key: String = if i % 3 == 1 { row.get(3) } else { row.get(0) };
        trials.push((key, row.get(1), row.get(2)));
    }
    let (hot, tokens) = (Arc::new(hot), Arc::new(tokens));

    let url = format!("postgresql://postgres@127.0.0.1:{port}/{db}");
    let shim = |addr: SocketAddr, extra: &[&str]| {
        let mut cmd = Command::new(&shim_bin);
        cmd.args(["--database-url", &url, "--listen", &addr.to_string()])
            .args(["--pool-size", &s.conns.to_string(), "--log-level", "warn"])
            .args(extra)
            .env_remove("DATABASE_URL")
            .env_remove("API_AUTH_REPLICA_DATABASE_URLS")
            .env_remove("API_AUTH_CACHE_SIZE");
        cmd
    };
    // The max-age backstop (300 s by default) would expire the warm answers
    // during the figures: their first wave of expiries (225-300 s after
    // warm-up, spread by the key's hash) landed on the equal-load rounds, some
    // 130 misses per route per round (0.25%), which alone move a p99. Steady state is one
    // miss per credential per max-age; the figures here are of answers from
    // memory, and the misses they still met are counted beside them.
    let a = start_server(
        "shim-cached",
        shim(cached, &["--cache-max-age", "3600"]),
        cached,
        &work.join("shim-cached.log"),
        "/healthz",
    )?;
    let b = start_server(
        "shim-uncached",
        shim(uncached, &["--cache-size", "0"]),
        uncached,
        &work.join("shim-uncached.log"),
        "/healthz",
    );
    let c =
        start_server("shim-small-cache", shim(small, &["--cache-size", "10"]), small, &work.join("shim-small.log"), "/healthz");
    let result = match (b, c) {
        (Ok(b), Ok(c)) => {
            let r = measure(&s, [cached, uncached, small], &hot, &tokens, &cold, &trials, &mut db_client);
            b.stop();
            c.stop();
            r
        }
        (b, c) => {
            for server in [b, c].into_iter().flatten() {
                server.stop();
            }
            Err("a shim did not start".into())
        }
    };
    a.stop();
    let doc = result?;
    std::fs::write(out_dir.join("cache.json"), serde_json::to_string_pretty(&doc).unwrap_or_default())
        .map_err(|e| e.to_string())?;
    print_table(&doc, s.conns);
    Ok(())
}

fn print_table(doc: &Value, conns: usize) {
    let f = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    let t = &doc["throughput"];
    println!();
    println!(
        "Answer cache (issue 14; same run, {conns} connections, {}; ratios are medians of per-round ratios)",
        crate::scheduler_label(&doc["machine"])
    );
    println!(
        "  GET /healthz (floor, no database)     {:>9.0} req/s  p99 {:>6.0} us",
        f(&t["healthz_rps"]),
        f(&t["healthz_p99_us"])
    );
    for (name, kind) in [("verify, secret key, cached", "key"), ("verify, public token, cached", "token")] {
        println!(
            "  {name:<37} {:>9.0} req/s  p99 {:>6.0} us   vs floor {:.2}x  (target >= 0.80; p99 compared at equal load below)",
            f(&t[format!("{kind}_rps")]),
            f(&t[format!("{kind}_p99_us")]),
            f(&t[format!("{kind}_vs_healthz")])
        );
    }
    for e in doc["equal_load"].as_array().into_iter().flatten() {
        let noise = f(&e["noise"]);
        let verdict = |ratio: f64| if ratio <= 1.0 + noise { "met" } else { "missed" };
        println!(
            "  one paced stream, routes taking turns, {:.0} req/s ({} of the floor's): p50 / p99  healthz {:.0} / {:.0} us, key {:.0} / {:.0} us, token {:.0} / {:.0} us",
            f(&e["offered_rps"]),
            e["share_of_floor"].as_str().unwrap_or("?"),
            f(&e["healthz_p50_us"]),
            f(&e["healthz_p99_us"]),
            f(&e["key_p50_us"]),
            f(&e["key_p99_us"]),
            f(&e["token_p50_us"]),
            f(&e["token_p99_us"]),
        );
        println!(
            "      p99 vs floor: key {:.3}x {}, token {:.3}x {}  (target <= 1 within the noise: a second copy of the floor in the stream came out {:.3}x, {:.1}% apart per round); cache misses {} of {} verifies",
            f(&e["key_p99_vs_healthz"]),
            verdict(f(&e["key_p99_vs_healthz"])),
            f(&e["token_p99_vs_healthz"]),
            verdict(f(&e["token_p99_vs_healthz"])),
            f(&e["healthz_b_p99_vs_healthz"]),
            noise * 100.0,
            e["cache_misses"],
            e["verify_requests"],
        );
        println!(
            "      the floor carrying a key's Authorization header (the credential's bytes alone): p50 / p99 {:.0} / {:.0} us, p99 vs floor {:.3}x",
            f(&e["healthz_key_header_p50_us"]),
            f(&e["healthz_key_header_p99_us"]),
            f(&e["healthz_key_header_p99_vs_healthz"]),
        );
    }
    let m = &doc["miss_path"];
    println!(
        "  miss path (every key new)             {:>9.0} req/s  vs --cache-size 0 {:>9.0} req/s   ratio {:.2}x  (target >= 1, within noise)",
        f(&m["cache_rps"]),
        f(&m["uncached_rps"]),
        f(&m["ratio"])
    );
    let d = &doc["revocation_delay_ms"];
    println!(
        "  revocation commit -> first 401        {} over {} trials (expiry, zero-grace rotation, archive), wrong answers after it: {}  (target p99 <= 10 ms)",
        load::delays_text(d, 2),
        d["trials"],
        d["wrong_answers"]
    );
    let d = &doc["revocation_delay_paced_ms"];
    println!(
        "  same, load paced at {:.0} req/s (half the floor's)  {} over {} trials, wrong answers after it: {}",
        f(&d["background_offered_rps"]),
        load::delays_text(d, 2),
        d["trials"],
        d["wrong_answers"]
    );
    let k = &doc["listener_killed"];
    println!(
        "  listener killed under load            dark for {:.1} ms until resubscribed; a key revoked meanwhile: first 401 after {:.2} ms, wrong answers after it {}",
        f(&k["recovered_ms"]),
        f(&k["revocation_ms"]),
        k["wrong_answers"]
    );
}

fn measure(
    s: &Setup,
    [cached, uncached, small]: [SocketAddr; 3],
    hot: &Arc<Vec<String>>,
    tokens: &Arc<Vec<String>>,
    cold: &Arc<Vec<String>>,
    trials: &[(String, String, String)],
    db: &mut postgres::Client,
) -> Result<Value, String> {
    wait_live(cached)?;
    wait_live(small)?;
    let load_of = |addr: SocketAddr, routes: Vec<load::Route>, secs: u64| load::LoadSpec {
        addr,
        routes,
        conns: s.conns,
        warmup: Duration::from_millis(500),
        duration: Duration::from_secs(secs),
        rate: None,
    };
    let spec = |addr, path: &str, creds, secs| load_of(addr, vec![load::Route::new(path, creds)], secs);
    let none = Arc::new(Vec::new());
    let verify = "/api/v1/auth/verify";

    // 1. Cached verify vs the floor, and the miss path, interleaved rounds.
    let mut rows: std::collections::BTreeMap<&str, Vec<load::LoadResult>> = Default::default();
    for round in 0..s.runs {
        let mut runs = vec![
            ("healthz", spec(cached, "/healthz", &none, s.secs)),
            ("key", spec(cached, verify, hot, s.secs)),
            ("token", spec(cached, verify, tokens, s.secs)),
            ("miss_cache", spec(small, verify, cold, s.secs)),
            ("miss_uncached", spec(uncached, verify, cold, s.secs)),
        ];
        if round % 2 == 1 {
            runs.reverse();
        }
        for (name, spec) in runs {
            let r = load::run(&spec);
            log(format!(
                "  cache round {}/{} {name:<14} {:>8.0} req/s  p99 {:>6.0} us  errors {}",
                round + 1,
                s.runs,
                r.rps,
                r.p99_us,
                r.errors
            ));
            if r.errors > 0 || r.requests == 0 {
                return Err(format!("{name}: {} errors of {} requests (first: {:?})", r.errors, r.requests, r.first_error));
            }
            rows.entry(name).or_default().push(r);
        }
    }
    let rps = |k: &str| rows[k].iter().map(|r| r.rps).collect::<Vec<_>>();
    let p99 = |k: &str| median(&rows[k].iter().map(|r| r.p99_us).collect::<Vec<_>>());
    let paired = |a: &str, b: &str| median(&rows[a].iter().zip(&rows[b]).map(|(x, y)| x.rps / y.rps).collect::<Vec<_>>());

    // 1b. Latency at equal offered load. Closed-loop p99s above mostly say
    //     how deep each route's queue was (with 16 connections, a route at
    //     0.9x the floor's throughput waits 1/0.9x as long on average, by
    //     Little's law). Here the routes share one paced stream, taking turns
    //     request by request, so each sees the same moments and the same
    //     load: what differs is what a request of each costs. The floor runs
    //     twice in the stream (A and B): how far apart two copies of the same
    //     route come out is the measurement's own noise. It runs a third time
    //     carrying a key's `Authorization` header (ignored by `/healthz`): the
    //     share of a verify's extra latency that the credential's bytes alone
    //     cost, before any work on them.
    let mut mixed = Vec::new();
    for (share, label) in [(4.0, "quarter"), (2.0, "half")] {
        let rate = (median(&rps("healthz")) / share).round();
        let routes = [("/healthz", &none), (verify, hot), (verify, tokens), ("/healthz", &none), ("/healthz", hot)]
            .map(|(path, creds)| load::Route::new(path, creds))
            .to_vec();
        let misses = |kind: &str| metric(cached, &format!("api_auth_shim_cache_misses_total{{credential=\"{kind}\"}}"));
        let misses_before = misses("key")? + misses("token")?;
        let mut rounds: Vec<Vec<load::LoadResult>> = Vec::new();
        for round in 0..s.runs {
            let r = load::run_mixed(&load::LoadSpec { rate: Some(rate), ..load_of(cached, routes.clone(), s.secs) });
            log(format!(
                "  mixed round {}/{} at {rate:.0} req/s ({label} of the floor)  p99 healthz {:.0} / {:.0} us (with a key's header {:.0} us), key {:.0} us, token {:.0} us",
                round + 1,
                s.runs,
                r[0].p99_us,
                r[3].p99_us,
                r[4].p99_us,
                r[1].p99_us,
                r[2].p99_us
            ));
            if let Some(bad) = r.iter().find(|x| x.errors > 0 || x.requests == 0) {
                return Err(format!(
                    "mixed stream: {} errors of {} requests (first: {:?})",
                    bad.errors, bad.requests, bad.first_error
                ));
            }
            rounds.push(r);
        }
        let at = |k: usize, f: fn(&load::LoadResult) -> f64| median(&rounds.iter().map(|r| f(&r[k])).collect::<Vec<_>>());
        // Each route's p99 over the floor's, round by round (the same stream).
        let ratios = |k: usize| rounds.iter().map(|r| r[k].p99_us / r[0].p99_us).collect::<Vec<_>>();
        let ratio = |k: usize| median(&ratios(k));
        let verifies: u64 = rounds.iter().map(|r| r[1].requests + r[2].requests).sum();
        let missed = (misses("key")? + misses("token")? - misses_before) as u64;
        mixed.push(json!({
            "share_of_floor": label, "offered_rps": rate,
            "verify_requests": verifies, "cache_misses": missed,
            "healthz_p50_us": at(0, |r| r.p50_us), "healthz_p99_us": at(0, |r| r.p99_us),
            "key_p50_us": at(1, |r| r.p50_us), "key_p99_us": at(1, |r| r.p99_us),
            "token_p50_us": at(2, |r| r.p50_us), "token_p99_us": at(2, |r| r.p99_us),
            "healthz_b_p99_us": at(3, |r| r.p99_us),
            "healthz_key_header_p50_us": at(4, |r| r.p50_us), "healthz_key_header_p99_us": at(4, |r| r.p99_us),
            "key_p99_vs_healthz": ratio(1), "token_p99_vs_healthz": ratio(2), "healthz_b_p99_vs_healthz": ratio(3),
            "healthz_key_header_p99_vs_healthz": ratio(4),
            // How far apart two copies of the same route come out in one round (median over rounds).
            "noise": median(&ratios(3).iter().map(|x| (x - 1.0).abs()).collect::<Vec<_>>()),
            "rounds": rounds.iter().map(|r| r.iter().map(load::LoadResult::to_json).collect::<Vec<_>>()).collect::<Vec<_>>(),
        }));
    }
    let equal_load = Value::Array(mixed);

    // 2. Revocation delay under load on the caching shim: under the
    //    saturating load of the other figures (closed loop), then under a
    //    paced load of half the floor's throughput (a busy host, not an
    //    overloaded one).
    let (saturated_trials, paced_trials) = trials.split_at(trials.len() / 2);
    let bg_secs = (saturated_trials.len() as u64 / 8).max(5);
    let saturated = revocations(cached, db, saturated_trials, spec(cached, verify, hot, bg_secs))?;
    let half = (median(&rps("healthz")) / 2.0).round();
    let paced = revocations(cached, db, paced_trials, load::LoadSpec { rate: Some(half), ..spec(cached, verify, hot, bg_secs) })?;

    // 3. The listening connection killed under load.
    let victim = &hot[0];
    let bg2 = {
        let spec = spec(cached, verify, hot, 4);
        thread::spawn(move || load::run(&spec))
    };
    thread::sleep(Duration::from_millis(700));
    let mut client = load::Client::new(cached);
    client.get(verify, Some(victim))?;
    // Watch the subscription from just before the kill: dark, then live again.
    let watcher = thread::spawn(move || -> Result<f64, String> {
        let start = Instant::now();
        let mut dark_at = None;
        while start.elapsed() < Duration::from_secs(15) {
            let live = metric(cached, "api_auth_shim_cache_live")? == 1.0;
            match (dark_at, live) {
                (None, false) => dark_at = Some(Instant::now()),
                (Some(at), true) => return Ok(at.elapsed().as_secs_f64() * 1000.0),
                _ => {}
            }
            thread::sleep(Duration::from_micros(500));
        }
        Err("the cache did not go dark and come back within 15 s of the kill".into())
    });
    let killed: i64 = db
        .query_one(
            "SELECT count(pg_terminate_backend(pid))::int8 FROM pg_stat_activity \
             WHERE datname = current_database() AND query LIKE '%pg_current_wal_lsn%' AND pid <> pg_backend_pid()",
            &[],
        )
        .map_err(|e| e.to_string())?
        .get(0);
    let env: String = db
        .query_one("SELECT id FROM api_auth.runtime_environment WHERE api_key = $1", &[victim])
        .map_err(|e| e.to_string())?
        .get(0);
    db.execute("SELECT 1 FROM api_auth.rotate_api_key($1, interval '0')", &[&env]).map_err(|e| e.to_string())?;
    let revocation_ms = load::until_refused(&mut client, verify, victim, Duration::from_secs(10))?.as_secs_f64() * 1000.0;
    let mut kill_wrong = 0;
    for _ in 0..20 {
        if client.get(verify, Some(victim))? != 401 {
            kill_wrong += 1;
        }
    }
    let recovered_ms = watcher.join().map_err(|_| "watcher panicked")??;
    let bg2 = bg2.join().map_err(|_| "load thread panicked")?;

    Ok(json!({
        "machine": crate::machine(),
        "connections": s.conns,
        "throughput": {
            "healthz_rps": median(&rps("healthz")), "healthz_p99_us": p99("healthz"),
            "key_rps": median(&rps("key")), "key_p99_us": p99("key"), "key_vs_healthz": paired("key", "healthz"),
            "token_rps": median(&rps("token")), "token_p99_us": p99("token"), "token_vs_healthz": paired("token", "healthz"),
        },
        "equal_load": equal_load,
        "miss_path": {
            "cache_rps": median(&rps("miss_cache")), "uncached_rps": median(&rps("miss_uncached")),
            "cache_p99_us": p99("miss_cache"), "uncached_p99_us": p99("miss_uncached"),
            "ratio": paired("miss_cache", "miss_uncached"),
        },
        "revocation_delay_ms": saturated,
        "revocation_delay_paced_ms": paced,
        "listener_killed": {
            "connections_killed": killed, "recovered_ms": recovered_ms, "revocation_ms": revocation_ms,
            "wrong_answers": kill_wrong, "background_rps": bg2.rps, "background_errors": bg2.errors,
        },
    }))
}

/// Revoke each trial's key under `background` load through the caching shim
/// at `addr`, taking turns: a zero-grace rotation, an expiry, an archive.
/// From the acknowledged commit to the first 401 (any 200 after it counted as
/// a wrong answer).
fn revocations(
    addr: SocketAddr,
    db: &mut postgres::Client,
    trials: &[(String, String, String)],
    background: load::LoadSpec,
) -> Result<Value, String> {
    let verify = "/api/v1/auth/verify";
    let offered = background.rate;
    let bg = thread::spawn(move || load::run(&background));
    thread::sleep(Duration::from_millis(700));
    let mut client = load::Client::new(addr);
    let (mut delays, mut wrong) = (Vec::new(), 0u64);
    for (i, (key, env, revoked)) in trials.iter().enumerate() {
        // Twice, so that the key's answer is in the cache when it is revoked.
        for _ in 0..2 {
            let status = client.get(verify, Some(key))?;
            if status != 200 {
                return Err(format!("trial {i}: the key answered {status} before its revocation"));
            }
        }
        let done = match i % 3 {
            0 => db.execute("SELECT 1 FROM api_auth.rotate_api_key($1, interval '0')", &[env]),
            1 => db.execute("SELECT 1 FROM api_auth.set_revoked_expiry($1, now())", &[revoked]),
            _ => db.execute("UPDATE api_auth.runtime_environment SET archived_at = now() WHERE id = $1", &[env]),
        };
        done.map_err(|e| e.to_string())?;
        let delay = load::until_refused(&mut client, verify, key, Duration::from_secs(10))?;
        delays.push(delay.as_secs_f64() * 1000.0);
        for _ in 0..3 {
            if client.get(verify, Some(key))? != 401 {
                wrong += 1;
            }
        }
    }
    let bg = bg.join().map_err(|_| "load thread panicked")?;
    Ok(load::revocation_summary(delays, wrong, &bg, offered))
}
