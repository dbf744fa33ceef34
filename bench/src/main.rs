//! api_auth benchmarks (issue 5). Run through `scripts/bench.sh`, which builds
//! the release extension and shim, starts a private cluster and hands this
//! program its coordinates in `API_AUTH_BENCH_*` variables.
//!
//! ```text
//! api_auth_bench run [--smoke]      everything: data, pgbench, HTTP, memory, report
//! api_auth_bench replicas [--smoke] the shim with a streaming standby vs the primary alone
//! api_auth_bench load ADDR PATH [--creds FILE] [--and PATH [--creds FILE]]... [--conns N] [--secs S] [--rate REQ_PER_S]
//!                                   one HTTP load run, JSON on stdout (with
//!                                   --and, the routes take turns: one result each)
//! ```
//!
//! Every figure is printed beside a baseline measured in the same run, as a
//! ratio; each is the median of several runs. Nothing here asserts a speed:
//! targets are reported as met or missed.

mod cache;
mod load;
mod pg;
mod plot;
mod replicas;
mod report;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::pg::Pg;
use crate::report::{Report, Row};

/// Sizes and durations of one bench run.
#[derive(Clone, Debug)]
struct Mode {
    name: &'static str,
    /// Runs per figure (medians are taken over them) and seconds per run.
    runs: usize,
    secs: u64,
    scale_runs: usize,
    scale_secs: u64,
    env_points: Vec<i64>,
    rev_points: Vec<i64>,
    /// The (environments, revoked rows) point where the side-by-side
    /// comparisons, HTTP load and memory runs happen.
    base: (i64, i64),
    in_grace: i64,
    tokens: i64,
    rotation_envs: i64,
    http_runs: usize,
    http_secs: u64,
    http_warmup_ms: u64,
    http_conns: usize,
    pool_size: usize,
    mem_warmup: i64,
    mem_chunk: i64,
    mem_chunks: usize,
}

impl Mode {
    fn full() -> Self {
        Mode {
            name: "full",
            runs: 5,
            secs: 8,
            scale_runs: 3,
            scale_secs: 5,
            env_points: vec![1_000, 100_000, 1_000_000],
            rev_points: vec![10_000, 1_000_000],
            base: (100_000, 10_000),
            in_grace: 1_000,
            tokens: 10_000,
            rotation_envs: 100,
            http_runs: 3,
            http_secs: 8,
            http_warmup_ms: 2_000,
            http_conns: 16,
            pool_size: 8,
            mem_warmup: 20_000,
            mem_chunk: 100_000,
            mem_chunks: 10,
        }
    }

    fn smoke() -> Self {
        Mode {
            name: "smoke",
            runs: 1,
            secs: 1,
            scale_runs: 1,
            scale_secs: 1,
            env_points: vec![200, 1_000],
            rev_points: vec![1_000],
            base: (1_000, 1_000),
            in_grace: 100,
            tokens: 500,
            rotation_envs: 20,
            http_runs: 1,
            http_secs: 2,
            http_warmup_ms: 500,
            http_conns: 8,
            pool_size: 4,
            mem_warmup: 2_000,
            mem_chunk: 10_000,
            mem_chunks: 2,
        }
    }

    /// `API_AUTH_BENCH_RUNS` / `API_AUTH_BENCH_SECS` override the per-figure
    /// runs and seconds (all sections), for quick looks.
    fn with_overrides(mut self) -> Self {
        if let Some(r) = env_num("API_AUTH_BENCH_RUNS") {
            self.runs = r as usize;
            self.scale_runs = r as usize;
            self.http_runs = r as usize;
        }
        if let Some(s) = env_num("API_AUTH_BENCH_SECS") {
            self.secs = s;
            self.scale_secs = s;
            self.http_secs = s;
        }
        self
    }
}

fn env_num(k: &str) -> Option<u64> {
    std::env::var(k).ok().and_then(|v| v.parse().ok()).filter(|v| *v > 0)
}

fn env_or(k: &str, default: &str) -> String {
    std::env::var(k).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| default.to_string())
}

fn log(msg: impl AsRef<str>) {
    eprintln!("[bench] {}", msg.as_ref());
}

pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// Raw samples, keyed like `sql/c1/find_current/us`.
#[derive(Default)]
pub struct Samples(pub BTreeMap<String, Vec<f64>>);

impl Samples {
    fn push(&mut self, key: impl Into<String>, v: f64) {
        self.0.entry(key.into()).or_default().push(v);
    }
    fn med(&self, key: &str) -> f64 {
        self.0.get(key).map_or(f64::NAN, |v| median(v))
    }
    fn to_json(&self) -> Value {
        Value::Object(self.0.iter().map(|(k, v)| (k.clone(), json!(v))).collect())
    }
}

struct Ctx {
    pg: Pg,
    mode: Mode,
    sql_dir: PathBuf,
    work: PathBuf,
    samples: Samples,
    /// pgbench -D variables of the current data set.
    vars: Vec<(&'static str, i64)>,
}

impl Ctx {
    fn script(&self, name: &str) -> PathBuf {
        self.sql_dir.join(format!("{name}.sql"))
    }

    fn vars(&self) -> Vec<(&str, i64)> {
        self.vars.clone()
    }

    /// Run each script once per round for `runs` rounds (interleaved, so
    /// drift on a shared machine hits every script alike), recording
    /// `prefix/<script>/us` and `/tps`.
    fn pgbench_rounds(&mut self, prefix: &str, scripts: &[&str], clients: &[u32], runs: usize, secs: u64) -> Result<(), String> {
        for round in 0..runs {
            for &c in clients {
                for s in scripts {
                    let r = self.pg.pgbench(&self.script(s), c, secs, &self.vars())?;
                    log(format!(
                        "  {prefix} round {}/{runs} c={c} {s:<18} {:>8.1} us/call {:>9.0} tps",
                        round + 1,
                        r.stmt_us,
                        r.tps
                    ));
                    self.samples.push(format!("{prefix}/c{c}/{s}/us"), r.stmt_us);
                    self.samples.push(format!("{prefix}/c{c}/{s}/tps"), r.tps);
                }
            }
        }
        Ok(())
    }
}

const SCALE_SCRIPTS: &[&str] = &["bare_lookup", "find_current", "find_grace", "find_miss", "validate_current", "validate_grace"];
const MAIN_SCRIPTS: &[&str] =
    &["bare_lookup", "find_current", "find_grace", "find_miss", "validate_current", "validate_grace", "validate_plpgsql"];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("run") => run(args.iter().any(|a| a == "--smoke"), args.iter().any(|a| a == "--http-only")),
        Some("load") => load_cmd(&args[1..]),
        Some("plot") => plot_cmd(&args[1..]),
        Some("replicas") => replicas::run(args.iter().any(|a| a == "--smoke")),
        Some("cache") => cache::run(args.iter().any(|a| a == "--smoke")),
        _ => Err("usage: api_auth_bench run [--smoke] [--http-only] | replicas [--smoke] | cache [--smoke] | load ADDR PATH [--creds FILE] [--and PATH [--creds FILE]]... [--conns N] [--secs S] [--rate REQ_PER_S] | plot RESULTS.json OUT.svg\n\
                  (normally started by scripts/bench.sh)"
            .into()),
    };
    if let Err(e) = result {
        eprintln!("api_auth_bench: {e}");
        std::process::exit(1);
    }
}

/// `plot RESULTS.json OUT.svg`: redraw the scale plot from a results file.
fn plot_cmd(args: &[String]) -> Result<(), String> {
    let (Some(input), Some(output)) = (args.first(), args.get(1)) else {
        return Err("usage: api_auth_bench plot RESULTS.json OUT.svg".into());
    };
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(input).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    let points = doc["scale"].as_array().cloned().unwrap_or_default();
    let mut revs: Vec<i64> = points.iter().filter_map(|p| p["revoked"].as_i64()).collect();
    revs.sort_unstable();
    revs.dedup();
    plot::scale_svg(Path::new(output), &points, &revs)
}

fn load_cmd(args: &[String]) -> Result<(), String> {
    let addr: SocketAddr = args.first().ok_or("ADDR missing")?.parse().map_err(|e| format!("ADDR: {e}"))?;
    let path = args.get(1).cloned().unwrap_or_else(|| "/".into());
    let read_creds = |file: &str| -> Result<Arc<Vec<String>>, String> {
        Ok(Arc::new(std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))?.lines().map(str::to_string).collect()))
    };
    let mut routes = vec![load::Route { path, creds: Arc::new(Vec::new()) }];
    let (mut conns, mut secs, mut rate) = (8usize, 5u64, None);
    let mut it = args.iter().skip(2);
    while let Some(a) = it.next() {
        let v = it.next().ok_or(format!("{a} needs a value"))?;
        match a.as_str() {
            "--creds" => routes.last_mut().expect("a route").creds = read_creds(v)?,
            "--and" => routes.push(load::Route { path: v.clone(), creds: Arc::new(Vec::new()) }),
            "--conns" => conns = v.parse().map_err(|_| "--conns")?,
            "--secs" => secs = v.parse().map_err(|_| "--secs")?,
            "--rate" => rate = Some(v.parse().map_err(|_| "--rate")?),
            _ => return Err(format!("unknown option {a}")),
        }
    }
    let spec = load::LoadSpec { addr, routes, conns, warmup: Duration::from_secs(1), duration: Duration::from_secs(secs), rate };
    let results = load::run_mixed(&spec);
    if let [one] = results.as_slice() {
        println!("{}", one.to_json());
    } else {
        let all: Vec<_> =
            spec.routes.iter().zip(&results).map(|(r, x)| serde_json::json!({ "path": r.path, "result": x.to_json() })).collect();
        println!("{}", serde_json::Value::Array(all));
    }
    Ok(())
}

/// `http_only`: load the base point only and run only the HTTP section (the
/// shim against its floor, the Node reference, and metrics on against off).
fn run(smoke: bool, http_only: bool) -> Result<(), String> {
    let mut mode = if smoke { Mode::smoke() } else { Mode::full() }.with_overrides();
    if http_only {
        mode.name = if smoke { "smoke, HTTP only" } else { "HTTP only" };
        mode.env_points = vec![mode.base.0];
        mode.rev_points = vec![mode.base.1];
    }
    let root = PathBuf::from(env_or("API_AUTH_BENCH_DIR", "bench"));
    let out_dir = PathBuf::from(env_or("API_AUTH_BENCH_OUT", &root.join("results").to_string_lossy()));
    let work = PathBuf::from(env_or("API_AUTH_BENCH_WORK", "/var/tmp/api_auth-bench/work"));
    std::fs::create_dir_all(&out_dir).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let pg = Pg {
        bin: PathBuf::from(env_or("API_AUTH_BENCH_PGBIN", "/usr/lib/postgresql/15/bin")),
        host: env_or("API_AUTH_BENCH_PGHOST", "127.0.0.1"),
        port: env_or("API_AUTH_BENCH_PGPORT", "25470").parse().map_err(|_| "API_AUTH_BENCH_PGPORT")?,
        db: env_or("API_AUTH_BENCH_DB", "api_auth_bench"),
        user: env_or("API_AUTH_BENCH_PGUSER", "postgres"),
    };
    let started = Instant::now();
    let mut cx = Ctx { pg, mode: mode.clone(), sql_dir: root.join("sql"), work, samples: Samples::default(), vars: vec![] };
    log(format!("mode {}: {:?}", mode.name, mode));

    cx.pg.file(&root.join("baselines/hs256_plpgsql.sql"))?;
    cx.pg.file(&cx.sql_dir.join("setup.sql"))?;
    cx.pg.sql(&format!("SELECT bench.make_rotation_envs({})", mode.rotation_envs))?;

    let mut scale_points: Vec<Value> = Vec::new();
    let mut extra = json!({});
    for &nenv in &mode.env_points {
        let t = Instant::now();
        cx.pg.sql(&format!("SELECT bench.grow_envs({nenv})"))?;
        let ntok: i64 = cx.pg.sql(&format!("SELECT bench.set_tokens({})", mode.tokens))?.parse().map_err(|e| format!("{e}"))?;
        log(format!("{nenv} environments loaded, {ntok} tokens minted ({:.1}s)", t.elapsed().as_secs_f64()));
        for &nrev in &mode.rev_points {
            let t = Instant::now();
            cx.pg.sql(&format!("SELECT bench.set_revoked({nrev}, {})", mode.in_grace))?;
            cx.pg.sql("VACUUM (ANALYZE) api_auth.runtime_environment, api_auth.revoked_api_key, bench.pick, bench.grace_pick, bench.token, bench.grace_token")?;
            cx.pg.sql("CHECKPOINT")?;
            let ngrace: i64 = cx.pg.sql("SELECT count(*) FROM bench.grace_pick")?.parse().map_err(|e| format!("{e}"))?;
            log(format!("{nrev} revoked rows ({ngrace} in grace) loaded ({:.1}s)", t.elapsed().as_secs_f64()));
            cx.vars = vec![("nenv", nenv), ("ngrace", ngrace.max(1)), ("ntok", ntok), ("nrot", mode.rotation_envs)];
            sanity(&cx)?;

            if http_only {
                extra["http"] = http(&mut cx)?;
                continue;
            }
            let prefix = format!("scale/{nenv}/{nrev}");
            cx.pgbench_rounds(&prefix, SCALE_SCRIPTS, &[1], mode.scale_runs, mode.scale_secs)?;
            server_rounds(&mut cx, &format!("{prefix}/server"), SCALE_SCRIPTS, mode.scale_runs)?;
            let mut point = json!({ "environments": nenv, "revoked": nrev, "us_per_call": {}, "server_us_per_call": {} });
            for s in SCALE_SCRIPTS {
                point["us_per_call"][*s] = json!(cx.samples.med(&format!("{prefix}/c1/{s}/us")));
                point["server_us_per_call"][*s] = json!(cx.samples.med(&format!("{prefix}/server/{s}/us")));
            }
            scale_points.push(point);

            if (nenv, nrev) == mode.base {
                log(format!("side-by-side SQL comparisons at {nenv} environments / {nrev} revoked rows"));
                cx.pgbench_rounds("sql", MAIN_SCRIPTS, &[1, 2], mode.runs, mode.secs)?;
                server_rounds(&mut cx, "server", MAIN_SCRIPTS, mode.runs)?;
                rotation(&mut cx)?;
                extra["memory"] = memory(&mut cx)?;
                extra["http"] = http(&mut cx)?;
            }
        }
    }

    let meta = json!({
        "command": match (smoke, http_only) {
            (true, false) => "bash scripts/bench.sh --smoke",
            (true, true) => "bash scripts/bench.sh --smoke --http-only",
            (false, true) => "bash scripts/bench.sh --http-only",
            (false, false) => "bash scripts/bench.sh",
        },
        "mode": mode.name,
        "date_utc": env_or("API_AUTH_BENCH_DATE", ""),
        "commit": env_or("API_AUTH_BENCH_COMMIT", ""),
        "machine": machine(),
        "postgres": cx.pg.sql("SELECT version()").unwrap_or_default(),
        "settings": {
            "runs_per_figure": mode.runs, "seconds_per_run": mode.secs,
            "scale_runs": mode.scale_runs, "scale_seconds": mode.scale_secs,
            "base_point": { "environments": mode.base.0, "revoked": mode.base.1 },
            "in_grace_rows": mode.in_grace, "tokens": mode.tokens,
            "http": { "runs": mode.http_runs, "seconds": mode.http_secs, "warmup_ms": mode.http_warmup_ms,
                      "connections": mode.http_conns, "pool_size": mode.pool_size },
            "memory": { "warmup_calls": mode.mem_warmup, "calls": mode.mem_chunk * mode.mem_chunks as i64 },
        },
        "elapsed_s": started.elapsed().as_secs_f64(),
    });
    let report = Report::build(&cx.samples, &mode_view(&mode), &extra);
    report.print(&meta);
    let svg = out_dir.join("scale.svg");
    if !http_only {
        plot::scale_svg(&svg, &scale_points, &mode.rev_points)?;
    }
    let doc = json!({
        "meta": meta,
        "figures": report.rows.iter().map(Row::to_json).collect::<Vec<_>>(),
        "scale": scale_points,
        "http": extra["http"],
        "memory": extra["memory"],
        "samples": cx.samples.to_json(),
    });
    let path = out_dir.join("latest.json");
    std::fs::write(&path, serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())? + "\n").map_err(|e| e.to_string())?;
    log(format!("wrote {} and {} ({:.0}s in all)", path.display(), svg.display(), started.elapsed().as_secs_f64()));
    Ok(())
}

/// What the report needs to know of the mode.
pub struct ModeView {
    pub env_points: Vec<i64>,
    pub rev_points: Vec<i64>,
    pub mem_calls: i64,
}

fn mode_view(m: &Mode) -> ModeView {
    ModeView { env_points: m.env_points.clone(), rev_points: m.rev_points.clone(), mem_calls: m.mem_chunk * m.mem_chunks as i64 }
}

/// Every timed statement gives the right answer on this data set (a bench that
/// measures errors is worse than none).
fn sanity(cx: &Ctx) -> Result<(), String> {
    let q = "SELECT \
      (SELECT count(*) FROM bench.pick p, LATERAL api_auth.find_environment_by_api_key(p.api_key) f \
        WHERE p.n IN (1, 2, 3) AND f.id = p.id AND f.matched_by = 'current') = 3, \
      (SELECT count(*) FROM bench.grace_pick g, LATERAL api_auth.find_environment_by_api_key(g.api_key) f \
        WHERE g.n IN (1, 2) AND f.matched_by = 'grace' AND f.revoked_api_key_id = g.id) = 2, \
      (SELECT count(*) FROM api_auth.find_environment_by_api_key('tr_prod_' || substr(md5('x'), 1, 24))) = 0, \
      (SELECT count(*) FROM bench.token t, LATERAL api_auth.validate_public_jwt(t.token) v \
        WHERE t.n IN (1, 2) AND v.ok AND v.matched_by = 'current') = 2, \
      (SELECT count(*) FROM bench.grace_token t, LATERAL api_auth.validate_public_jwt(t.token) v \
        WHERE t.n IN (1, 2) AND v.ok AND v.matched_by = 'grace') = 2, \
      (SELECT count(*) FROM bench.token t, LATERAL bench_baseline.validate_public_jwt(t.token) v \
        WHERE t.n IN (1, 2) AND v.ok AND v.matched_by = 'current') = 2, \
      (SELECT count(*) FROM bench.grace_token t, LATERAL bench_baseline.validate_public_jwt(t.token) v \
        WHERE t.n IN (1, 2) AND v.ok AND v.matched_by = 'grace') = 2";
    let got = cx.pg.sql(q)?;
    if got != "t|t|t|t|t|t|t" {
        return Err(format!("sanity check failed (current, grace, miss, token, grace token, plpgsql, plpgsql grace): {got}"));
    }
    Ok(())
}

/// Server-side cost per call (no client round trip, no wake-ups): loops
/// inside one statement (`bench.time_loop`), interleaved over `runs` rounds.
fn server_rounds(cx: &mut Ctx, prefix: &str, kinds: &[&str], runs: usize) -> Result<(), String> {
    let (calls, budget) = if cx.mode.name == "smoke" { (2_000, 0.5) } else { (30_000, 3.0) };
    for round in 0..runs {
        for kind in kinds {
            // A short warm-up loop first, in the same session: library load,
            // plan preparation and catalog caches are not per-call costs.
            let out = cx.pg.session(&format!(
                "SELECT bench.time_loop('{kind}', 200, 0.2);\nSELECT bench.time_loop('{kind}', {calls}, {budget});\n"
            ))?;
            let us: f64 = out.lines().last().unwrap_or("").trim().parse().map_err(|e| format!("time_loop: {e} in {out:?}"))?;
            log(format!("  {prefix} round {}/{runs} {kind:<18} {us:>8.2} us/call", round + 1));
            cx.samples.push(format!("{prefix}/{kind}/us"), us);
        }
    }
    Ok(())
}

/// Item 5: rotate_api_key throughput while lookups run, beside each alone.
fn rotation(cx: &mut Ctx) -> Result<(), String> {
    let (runs, secs) = (cx.mode.runs.clamp(1, 3), cx.mode.secs);
    let (rot, find) = (cx.script("rotate"), cx.script("find_current"));
    for round in 0..runs {
        let alone = cx.pg.pgbench(&rot, 1, secs, &cx.vars())?;
        cx.samples.push("rotation/alone/rotate/tps", alone.tps);
        cx.samples.push("rotation/alone/rotate/us", alone.stmt_us);
        let a = cx.pg.spawn_pgbench(&rot, 1, secs, &cx.vars())?;
        let b = cx.pg.spawn_pgbench(&find, 1, secs, &cx.vars())?;
        let (a, b) = (pg::finish_pgbench(a, &rot)?, pg::finish_pgbench(b, &find)?);
        cx.samples.push("rotation/mixed/rotate/tps", a.tps);
        cx.samples.push("rotation/mixed/rotate/us", a.stmt_us);
        cx.samples.push("rotation/mixed/find_current/us", b.stmt_us);
        let solo = cx.pg.pgbench(&find, 1, secs, &cx.vars())?;
        cx.samples.push("rotation/alone/find_current/us", solo.stmt_us);
        log(format!(
            "  rotation round {}/{runs}: rotate {:.0}/s alone, {:.0}/s beside lookups; lookup {:.1} us alone, {:.1} us beside rotations",
            round + 1, alone.tps, a.tps, solo.stmt_us, b.stmt_us
        ));
    }
    Ok(())
}

/// Item 9 (database side): one session runs `calls` validations; its
/// anonymous RSS and memory contexts are read after a warm-up and after each
/// chunk. The same for bare lookups is the leak-free reference.
fn memory(cx: &mut Ctx) -> Result<Value, String> {
    let m = &cx.mode;
    let mut out = json!({});
    for (name, func) in [("validate", "bench.validate_loop"), ("bare_lookup", "bench.lookup_loop")] {
        let mut script = String::from("SELECT 'pid', pg_backend_pid();\n");
        script += &format!("SELECT 'ok', {func}({});\n", m.mem_warmup);
        script += "SELECT 'mem', bench.rss_anon_kb(), bench.context_bytes();\n";
        for _ in 0..m.mem_chunks {
            script += &format!("SELECT 'ok', {func}({});\n", m.mem_chunk);
            script += "SELECT 'mem', bench.rss_anon_kb(), bench.context_bytes();\n";
        }
        let t = Instant::now();
        let text = cx.pg.session(&script)?;
        let secs = t.elapsed().as_secs_f64();
        let mut rss = Vec::new();
        let mut ctx_bytes = Vec::new();
        let mut ok = 0i64;
        for line in text.lines() {
            let f: Vec<&str> = line.split('|').collect();
            match f.as_slice() {
                ["mem", r, c] => {
                    rss.push(r.parse::<i64>().unwrap_or(0));
                    ctx_bytes.push(c.parse::<i64>().unwrap_or(0));
                }
                ["ok", n] => ok += n.parse::<i64>().unwrap_or(0),
                _ => {}
            }
        }
        let calls = m.mem_warmup + m.mem_chunk * m.mem_chunks as i64;
        let growth = rss.last().copied().unwrap_or(0) - rss.first().copied().unwrap_or(0);
        let ctx_growth = ctx_bytes.last().copied().unwrap_or(0) - ctx_bytes.first().copied().unwrap_or(0);
        log(format!("  memory {name}: {calls} calls ({ok} ok) in {secs:.1}s; RssAnon {:?} kB; contexts {:?}", rss, ctx_bytes));
        if ok != calls {
            return Err(format!("memory run {name}: only {ok} of {calls} calls succeeded"));
        }
        out[name] = json!({
            "calls_measured": m.mem_chunk * m.mem_chunks as i64,
            "warmup_calls": m.mem_warmup,
            "rss_anon_kb": rss, "context_bytes": ctx_bytes,
            "rss_anon_growth_kb": growth, "context_growth_bytes": ctx_growth,
            "seconds": secs,
        });
    }
    Ok(out)
}

struct Server {
    name: &'static str,
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn peak_rss_kb(&self) -> i64 {
        status_kb(self.child.id(), "VmHWM")
    }
    fn stop(mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        for _ in 0..50 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// utime + stime of a process, in clock ticks (/proc/PID/stat fields 14, 15).
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// `getconf CLK_TCK` (100 on Linux almost everywhere).
fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

fn status_kb(pid: u32, field: &str) -> i64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(&format!("{field}:")))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(-1)
}

fn start_server(name: &'static str, mut cmd: Command, addr: SocketAddr, log_path: &Path, probe: &str) -> Result<Server, String> {
    let log_file = std::fs::File::create(log_path).map_err(|e| e.to_string())?;
    cmd.stdin(Stdio::null()).stdout(log_file.try_clone().map_err(|e| e.to_string())?).stderr(log_file);
    let child = cmd.spawn().map_err(|e| format!("cannot start {name}: {e}"))?;
    let mut server = Server { name, child, addr };
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if load::probe(addr, probe) {
            return Ok(server);
        }
        if let Ok(Some(status)) = server.child.try_wait() {
            return Err(format!("{name} exited ({status}); see {}", log_path.display()));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = server.child.kill();
    Err(format!("{name} did not answer {probe} within 30s; see {}", log_path.display()))
}

/// Items 7–9 (HTTP side): the shim's verify route with a secret key and with a
/// public token, its floor route, and the Node reference, interleaved; and
/// the cost of metrics (issue 13): the same verify load against a second shim
/// started with `--no-metrics`, the two taking turns at going first.
fn http(cx: &mut Ctx) -> Result<Value, String> {
    let m = cx.mode.clone();
    let shim_bin = env_or("API_AUTH_BENCH_SHIM", "target/release/api-auth-shim");
    let node_dir = PathBuf::from(env_or("API_AUTH_BENCH_NODE_DIR", "bench/baselines/node"));
    let shim_addr: SocketAddr =
        format!("127.0.0.1:{}", env_or("API_AUTH_BENCH_SHIM_PORT", "25471")).parse().map_err(|e| format!("{e}"))?;
    let node_addr: SocketAddr =
        format!("127.0.0.1:{}", env_or("API_AUTH_BENCH_NODE_PORT", "25472")).parse().map_err(|e| format!("{e}"))?;
    let bare_addr: SocketAddr =
        format!("127.0.0.1:{}", env_or("API_AUTH_BENCH_SHIM_BARE_PORT", "25473")).parse().map_err(|e| format!("{e}"))?;
    let url = format!("postgresql://{}@127.0.0.1:{}/{}", cx.pg.user, cx.pg.port, cx.pg.db);

    // Credentials: current keys spread over the table, and current-key tokens.
    let keys: Vec<String> =
        cx.pg.sql("SELECT api_key FROM bench.pick ORDER BY md5(n::text) LIMIT 10000")?.lines().map(str::to_string).collect();
    let tokens: Vec<String> =
        cx.pg.sql("SELECT token FROM bench.token ORDER BY md5(n::text)")?.lines().map(str::to_string).collect();
    let (keys, tokens) = (Arc::new(keys), Arc::new(tokens));

    // These figures are the database path (the floor route, the Node
    // reference and metrics on/off compare like with like): the answer cache
    // is off here and has its own section (`cache.rs`).
    let mut shim_cmd = Command::new(&shim_bin);
    shim_cmd
        .args(["--database-url", &url, "--listen", &shim_addr.to_string(), "--bench-routes", "--cache-size", "0"])
        .args(["--pool-size", &m.pool_size.to_string(), "--log-level", "warn"])
        .env_remove("DATABASE_URL")
        .env_remove("API_AUTH_CACHE_SIZE");
    let shim = start_server("shim", shim_cmd, shim_addr, &cx.work.join("shim.log"), "/healthz")?;
    let mut bare_cmd = Command::new(&shim_bin);
    bare_cmd
        .args(["--database-url", &url, "--listen", &bare_addr.to_string(), "--no-metrics", "--cache-size", "0"])
        .args(["--pool-size", &m.pool_size.to_string(), "--log-level", "warn"])
        .env_remove("DATABASE_URL")
        .env_remove("API_AUTH_CACHE_SIZE");
    let bare = match start_server("shim --no-metrics", bare_cmd, bare_addr, &cx.work.join("shim-no-metrics.log"), "/healthz") {
        Ok(b) => b,
        Err(e) => {
            shim.stop();
            return Err(e);
        }
    };
    let mut node_cmd = Command::new(env_or("API_AUTH_BENCH_NODE", "node"));
    node_cmd
        .arg(node_dir.join("server.mjs"))
        .env("DATABASE_URL", &url)
        .env("PORT", node_addr.port().to_string())
        .env("POOL_SIZE", m.pool_size.to_string());
    let node = match start_server("node", node_cmd, node_addr, &cx.work.join("node.log"), "/healthz") {
        Ok(n) => n,
        Err(e) => {
            shim.stop();
            bare.stop();
            return Err(e);
        }
    };

    let path = "/api/v1/auth/verify";
    let targets: Vec<(&str, SocketAddr, &str, Arc<Vec<String>>)> = vec![
        ("shim_floor", shim.addr, "/__bench/floor", Arc::new(vec![])),
        ("shim_key", shim.addr, path, keys.clone()),
        ("shim_key_nometrics", bare.addr, path, keys.clone()),
        ("shim_token", shim.addr, path, tokens.clone()),
        ("node_key", node.addr, path, keys.clone()),
        ("node_token", node.addr, path, tokens.clone()),
    ];
    let mut runs: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    let mut failure = None;
    'rounds: for round in 0..m.http_runs {
        // Metrics on and off take turns at going first.
        let mut order = targets.clone();
        if round % 2 == 1 {
            order.swap(1, 2);
        }
        for (name, addr, p, creds) in &order {
            // The metrics comparison also counts the shim's own CPU time per
            // request over the measured window (less sensitive to a busy
            // machine than throughput).
            let pid = match *name {
                "shim_key" => Some(shim.child.id()),
                "shim_key_nometrics" => Some(bare.child.id()),
                _ => None,
            };
            let warmup = Duration::from_millis(m.http_warmup_ms);
            let cpu_from = pid.map(|pid| {
                std::thread::spawn(move || {
                    std::thread::sleep(warmup);
                    cpu_ticks(pid)
                })
            });
            let r = load::run(&load::LoadSpec {
                addr: *addr,
                routes: vec![load::Route::new(p, creds)],
                conns: m.http_conns,
                warmup,
                duration: Duration::from_secs(m.http_secs),
                rate: None,
            });
            if let (Some(pid), Some(from)) = (pid, cpu_from) {
                let from = from.join().unwrap_or(None);
                if let (Some(a), Some(b), true) = (from, cpu_ticks(pid), r.requests > 0) {
                    let us = (b - a) as f64 * 1e6 / clock_ticks_per_second() / r.requests as f64;
                    log(format!("  http round {}/{} {name} shim CPU {us:.1} us/request", round + 1, m.http_runs));
                    cx.samples.push(format!("http/{name}/cpu_us_per_req"), us);
                }
            }
            log(format!(
                "  http round {}/{} {name:<11} {:>8.0} req/s  p50 {:>6.0} us  p99 {:>6.0} us  errors {}",
                round + 1,
                m.http_runs,
                r.rps,
                r.p50_us,
                r.p99_us,
                r.errors
            ));
            if r.errors > 0 || r.requests == 0 {
                failure = Some(format!("{name}: {} errors of {} requests (first: {:?})", r.errors, r.requests, r.first_error));
                break 'rounds;
            }
            cx.samples.push(format!("http/{name}/rps"), r.rps);
            cx.samples.push(format!("http/{name}/p50_us"), r.p50_us);
            cx.samples.push(format!("http/{name}/p99_us"), r.p99_us);
            runs.entry(name).or_default().push(r.to_json());
        }
    }
    let shim_rss = shim.peak_rss_kb();
    let node_rss = node.peak_rss_kb();
    log(format!("  peak RSS: {} {shim_rss} kB, {} {node_rss} kB", shim.name, node.name));
    shim.stop();
    bare.stop();
    node.stop();
    if let Some(f) = failure {
        return Err(format!("HTTP load failed: {f} (logs in {})", cx.work.display()));
    }
    cx.samples.push("http/shim/peak_rss_kb", shim_rss as f64);
    cx.samples.push("http/node/peak_rss_kb", node_rss as f64);
    Ok(json!({
        "connections": m.http_conns, "pool_size": m.pool_size,
        "runs": runs, "shim_peak_rss_kb": shim_rss, "node_peak_rss_kb": node_rss,
    }))
}

/// How the scheduler treated the processes (for table headings): see `machine`.
pub fn scheduler_label(machine: &Value) -> &'static str {
    match machine["sched_autogroup"].as_bool() {
        Some(true) => "scheduler autogroups on",
        Some(false) => "scheduler autogroups off",
        None => "no scheduler autogroups",
    }
}

/// What the figures were measured on (also in the cache and replica results).
pub fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split_once(':')).map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_default();
    let mem_kb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| s.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse::<u64>().ok()))
        .unwrap_or(0);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
    // Whether the kernel grouped the processes by session for CPU time (see
    // scripts/bench.sh): it decides how long PostgreSQL waits under saturation.
    let autogroup = std::fs::read_to_string("/proc/sys/kernel/sched_autogroup_enabled").ok().map(|v| v.trim() == "1");
    json!({
        "cpu": cpu, "cores": cores, "memory_gib": (mem_kb as f64 / 1048576.0 * 10.0).round() / 10.0, "kernel": kernel,
        "sched_autogroup": autogroup,
    })
}
