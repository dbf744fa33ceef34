//! The one table: each figure beside its baseline from the same run, the
//! ratio, and the target when it has one.

use serde_json::{json, Value};

use crate::{ModeView, Samples};

/// How a ratio is read against its target.
#[derive(Clone, Copy, Debug)]
pub enum Target {
    /// ratio = figure / baseline must be at most this (costs).
    AtMost(f64),
    /// ratio must be at least this (throughput, speed-ups).
    AtLeast(f64),
    None,
}

#[derive(Clone, Debug)]
pub struct Row {
    pub item: &'static str,
    pub figure: String,
    pub value: f64,
    pub baseline: String,
    pub baseline_value: f64,
    pub unit: &'static str,
    /// `figure / baseline`, or `baseline / figure` for speed-ups (see `ratio_of`).
    pub ratio: f64,
    pub ratio_of: &'static str,
    pub target: Target,
}

impl Row {
    pub fn met(&self) -> Option<bool> {
        if !self.ratio.is_finite() {
            return None;
        }
        match self.target {
            Target::AtMost(t) => Some(self.ratio <= t),
            Target::AtLeast(t) => Some(self.ratio >= t),
            Target::None => None,
        }
    }

    fn target_text(&self) -> String {
        match self.target {
            Target::AtMost(t) => format!("<= {t}"),
            Target::AtLeast(t) => format!(">= {t}"),
            Target::None => "-".into(),
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "item": self.item, "figure": self.figure, "value": self.value, "unit": self.unit,
            "baseline": self.baseline, "baseline_value": self.baseline_value,
            "ratio": self.ratio, "ratio_of": self.ratio_of, "target": self.target_text(), "met": self.met(),
        })
    }
}

pub struct Report {
    pub rows: Vec<Row>,
}

fn human(n: i64) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}

/// Median of the per-round ratios `a[i] / b[i]` (rounds are interleaved, so
/// a pair shares the machine's state); falls back to the ratio of medians.
fn paired(s: &Samples, a: &str, b: &str) -> f64 {
    match (s.0.get(a), s.0.get(b)) {
        (Some(x), Some(y)) if x.len() == y.len() && !x.is_empty() => {
            let r: Vec<f64> = x.iter().zip(y).map(|(p, q)| p / q).collect();
            crate::median(&r)
        }
        _ => s.med(a) / s.med(b),
    }
}

impl Report {
    pub fn build(s: &Samples, mode: &ModeView, extra: &Value) -> Report {
        let mut rows = Vec::new();
        let mut cost = |item: &'static str, figure: String, key: String, baseline: String, bkey: String, target: Target| {
            let (v, b) = (s.med(&key), s.med(&bkey));
            rows.push(Row {
                item,
                figure,
                value: v,
                baseline,
                baseline_value: b,
                unit: "us/call",
                ratio: paired(s, &key, &bkey),
                ratio_of: "median of per-round figure / baseline",
                target,
            });
        };
        for c in [1, 2] {
            let k = |name: &str| format!("sql/c{c}/{name}/us");
            let cl = if c == 1 { "1 client" } else { "2 clients" };
            cost(
                "1",
                format!("find_environment_by_api_key, current key ({cl})"),
                k("find_current"),
                "bare SELECT ... WHERE api_key = $1".into(),
                k("bare_lookup"),
                Target::AtMost(1.3),
            );
            cost(
                "2",
                format!("find_environment_by_api_key, grace key ({cl})"),
                k("find_grace"),
                "find, current key".into(),
                k("find_current"),
                Target::AtMost(2.0),
            );
            cost(
                "2",
                format!("find_environment_by_api_key, unknown key ({cl})"),
                k("find_miss"),
                "find, current key".into(),
                k("find_current"),
                Target::AtMost(2.0),
            );
            cost(
                "3a",
                format!("validate_public_jwt, current key ({cl})"),
                k("validate_current"),
                "bare SELECT ... WHERE api_key = $1".into(),
                k("bare_lookup"),
                Target::None,
            );
            cost(
                "4",
                format!("validate_public_jwt, revoked-key fallback ({cl})"),
                k("validate_grace"),
                "validate, current key".into(),
                k("validate_current"),
                Target::AtMost(2.0),
            );
        }
        for c in [1, 2] {
            let cl = if c == 1 { "1 client" } else { "2 clients" };
            let (vk, bk) = (format!("sql/c{c}/validate_current/us"), format!("sql/c{c}/validate_plpgsql/us"));
            rows.push(Row {
                item: "3b",
                figure: format!("validate_public_jwt, current key ({cl})"),
                value: s.med(&vk),
                baseline: "PL/pgSQL + pgcrypto hmac() HS256".into(),
                baseline_value: s.med(&bk),
                unit: "us/call",
                ratio: paired(s, &bk, &vk),
                ratio_of: "speed-up: median of per-round baseline / figure",
                target: Target::AtLeast(5.0),
            });
        }
        // Server-side (in-statement loops, no round trip).
        let sv = |k: &str| format!("server/{k}/us");
        let mut server = |item: &'static str, figure: &str, k: &str, baseline: &str, bk: &str, target: Target, speedup: bool| {
            let (v, b) = (s.med(&sv(k)), s.med(&sv(bk)));
            let (ratio, ratio_of) = if speedup {
                (paired(s, &sv(bk), &sv(k)), "speed-up: median of per-round baseline / figure")
            } else {
                (paired(s, &sv(k), &sv(bk)), "median of per-round figure / baseline")
            };
            rows.push(Row {
                item,
                figure: format!("server-side: {figure}"),
                value: v,
                baseline: format!("server-side: {baseline}"),
                baseline_value: b,
                unit: "us/call",
                ratio,
                ratio_of,
                target,
            });
        };
        server("1", "find, current key", "find_current", "bare SELECT by api_key", "bare_lookup", Target::AtMost(1.3), false);
        server("2", "find, grace key", "find_grace", "find, current key", "find_current", Target::AtMost(2.0), false);
        server("2", "find, unknown key", "find_miss", "find, current key", "find_current", Target::AtMost(2.0), false);
        server(
            "3a",
            "validate_public_jwt, current key",
            "validate_current",
            "bare SELECT by api_key",
            "bare_lookup",
            Target::None,
            false,
        );
        server(
            "3b",
            "validate_public_jwt, current key",
            "validate_current",
            "PL/pgSQL + pgcrypto HS256",
            "validate_plpgsql",
            Target::AtLeast(5.0),
            true,
        );
        server(
            "4",
            "validate_public_jwt, revoked fallback",
            "validate_grace",
            "validate, current key",
            "validate_current",
            Target::AtMost(2.0),
            false,
        );
        // Rotation.
        let (v, b) = (s.med("rotation/mixed/rotate/tps"), s.med("rotation/alone/rotate/tps"));
        rows.push(Row {
            item: "5",
            figure: "rotate_api_key while lookups run (1+1 clients)".into(),
            value: v,
            baseline: "rotate_api_key alone (1 client)".into(),
            baseline_value: b,
            unit: "rotations/s",
            ratio: v / b,
            ratio_of: "figure / baseline",
            target: Target::None,
        });
        let (v, b) = (s.med("rotation/mixed/find_current/us"), s.med("rotation/alone/find_current/us"));
        rows.push(Row {
            item: "5",
            figure: "find, current key, while rotations run".into(),
            value: v,
            baseline: "find, current key, alone".into(),
            baseline_value: b,
            unit: "us/call",
            ratio: v / b,
            ratio_of: "figure / baseline",
            target: Target::None,
        });
        // Scale: the largest table against the smallest, per revoked count.
        // Server-side figures carry the target (the client round trip and the
        // VM's wake-up latency are constant in table size but drift over the
        // 20 minutes between the two points); pgbench's are shown beside them.
        if let (Some(&lo), Some(&hi)) = (mode.env_points.first(), mode.env_points.last()) {
            // (The bare SELECT is the reference, without a target of its own.)
            let server = ["bare_lookup", "find_current", "find_grace", "find_miss", "validate_current", "validate_grace"]
                .map(|script| ("server", "server-side", script));
            let pgbench = ["bare_lookup", "find_current", "validate_current"].map(|script| ("c1", "pgbench", script));
            for &rev in &mode.rev_points {
                for (mode_key, label, script) in server.into_iter().chain(pgbench) {
                    let at = |envs: i64| s.med(&format!("scale/{envs}/{rev}/{mode_key}/{script}/us"));
                    let (v, b) = (at(hi), at(lo));
                    let targeted = mode_key == "server" && script != "bare_lookup";
                    rows.push(Row {
                        item: "6",
                        figure: format!("{label}: {script} at {} envs, {} revoked", human(hi), human(rev)),
                        value: v,
                        baseline: format!("same at {} envs", human(lo)),
                        baseline_value: b,
                        unit: "us/call",
                        ratio: v / b,
                        ratio_of: "figure / baseline",
                        target: if targeted { Target::AtMost(1.5) } else { Target::None },
                    });
                }
            }
        }
        // HTTP.
        let floor = s.med("http/shim_floor/rps");
        for (kind, label) in [("key", "secret key"), ("token", "public token")] {
            let v = s.med(&format!("http/shim_{kind}/rps"));
            rows.push(Row {
                item: "7",
                figure: format!("shim GET /api/v1/auth/verify, {label}"),
                value: v,
                baseline: "shim GET /__bench/floor (SELECT 1)".into(),
                baseline_value: floor,
                unit: "req/s",
                ratio: v / floor,
                ratio_of: "figure / baseline",
                target: Target::AtLeast(0.8),
            });
        }
        for (kind, label) in [("key", "secret key"), ("token", "public token")] {
            let (v, b) = (s.med(&format!("http/shim_{kind}/rps")), s.med(&format!("http/node_{kind}/rps")));
            rows.push(Row {
                item: "8",
                figure: format!("shim verify, {label}"),
                value: v,
                baseline: "Node reference (http + pg + jose)".into(),
                baseline_value: b,
                unit: "req/s",
                ratio: v / b,
                ratio_of: "figure / baseline",
                target: Target::AtLeast(2.0),
            });
            let (v, b) = (s.med(&format!("http/shim_{kind}/p99_us")), s.med(&format!("http/node_{kind}/p99_us")));
            rows.push(Row {
                item: "8",
                figure: format!("shim verify p99, {label}"),
                value: v,
                baseline: "Node reference p99".into(),
                baseline_value: b,
                unit: "us",
                ratio: v / b,
                ratio_of: "figure / baseline",
                target: Target::AtMost(1.0),
            });
            let (v, b) = (s.med(&format!("http/shim_{kind}/p50_us")), s.med(&format!("http/node_{kind}/p50_us")));
            rows.push(Row {
                item: "8",
                figure: format!("shim verify p50, {label}"),
                value: v,
                baseline: "Node reference p50".into(),
                baseline_value: b,
                unit: "us",
                ratio: v / b,
                ratio_of: "figure / baseline",
                target: Target::None,
            });
        }
        // Issue 13: what metrics cost on the hot path.
        let (v, b) = (s.med("http/shim_key/rps"), s.med("http/shim_key_nometrics/rps"));
        rows.push(Row {
            item: "13",
            figure: "shim verify, secret key, metrics on".into(),
            value: v,
            baseline: "same, shim --no-metrics".into(),
            baseline_value: b,
            unit: "req/s",
            ratio: paired(s, "http/shim_key/rps", "http/shim_key_nometrics/rps"),
            ratio_of: "median of per-round figure / baseline",
            target: Target::AtLeast(0.97),
        });
        let (v, b) = (s.med("http/shim_key/cpu_us_per_req"), s.med("http/shim_key_nometrics/cpu_us_per_req"));
        rows.push(Row {
            item: "13",
            figure: "shim CPU per verify, metrics on".into(),
            value: v,
            baseline: "same, shim --no-metrics".into(),
            baseline_value: b,
            unit: "us/request",
            ratio: paired(s, "http/shim_key/cpu_us_per_req", "http/shim_key_nometrics/cpu_us_per_req"),
            ratio_of: "median of per-round figure / baseline",
            target: Target::AtMost(1.03),
        });
        let (v, b) = (s.med("http/shim/peak_rss_kb") / 1024.0, s.med("http/node/peak_rss_kb") / 1024.0);
        rows.push(Row {
            item: "9",
            figure: "shim peak RSS under the load above".into(),
            value: v,
            baseline: "Node reference peak RSS".into(),
            baseline_value: b,
            unit: "MiB",
            ratio: v / b,
            ratio_of: "figure / baseline",
            target: Target::None,
        });
        let mem = &extra["memory"];
        let growth = |k: &str| mem[k]["rss_anon_growth_kb"].as_f64().unwrap_or(f64::NAN);
        let (v, b) = (growth("validate"), growth("bare_lookup"));
        rows.push(Row {
            item: "9",
            figure: format!("backend RssAnon growth, {} validations in one session", human(mode.mem_calls)),
            value: v,
            baseline: format!("same, {} bare lookups", human(mode.mem_calls)),
            baseline_value: b,
            unit: "kB",
            // Growth per call in bytes; a leak of even a few bytes a call shows here.
            ratio: v * 1024.0 / mode.mem_calls as f64,
            ratio_of: "bytes per validation",
            target: Target::AtMost(1.0),
        });
        Report { rows }
    }

    pub fn print(&self, meta: &Value) {
        let fmt = |v: f64| -> String {
            if !v.is_finite() {
                "n/a".into()
            } else if v.abs() >= 1000.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.1}")
            }
        };
        println!();
        println!(
            "api_auth benchmarks ({}), medians of {} runs; {}; {} cores, {}; {}",
            meta["mode"].as_str().unwrap_or(""),
            meta["settings"]["runs_per_figure"],
            meta["machine"]["cpu"].as_str().unwrap_or("?"),
            meta["machine"]["cores"],
            crate::scheduler_label(&meta["machine"]),
            meta["postgres"].as_str().unwrap_or("").split(" on ").next().unwrap_or("")
        );
        let header = ["#", "figure", "value", "baseline", "base value", "unit", "ratio", "target", "met"];
        let cells: Vec<[String; 9]> = self
            .rows
            .iter()
            .map(|r| {
                [
                    r.item.to_string(),
                    r.figure.clone(),
                    fmt(r.value),
                    r.baseline.clone(),
                    fmt(r.baseline_value),
                    r.unit.to_string(),
                    if r.ratio.is_finite() { format!("{:.2}", r.ratio) } else { "n/a".into() },
                    r.target_text(),
                    match r.met() {
                        Some(true) => "yes",
                        Some(false) => "NO",
                        None => "-",
                    }
                    .to_string(),
                ]
            })
            .collect();
        let mut widths = header.map(str::len);
        for c in &cells {
            for (w, s) in widths.iter_mut().zip(c.iter()) {
                *w = (*w).max(s.chars().count());
            }
        }
        let line = |c: &[String]| {
            let mut out = String::from("|");
            for (i, (s, w)) in c.iter().zip(widths.iter()).enumerate() {
                let pad = w - s.chars().count();
                if matches!(i, 2 | 4 | 6) {
                    out += &format!(" {}{} |", " ".repeat(pad), s);
                } else {
                    out += &format!(" {}{} |", s, " ".repeat(pad));
                }
            }
            out
        };
        println!("{}", line(&header.map(String::from)));
        println!("|{}", widths.iter().map(|w| format!("{}|", "-".repeat(w + 2))).collect::<String>());
        for c in &cells {
            println!("{}", line(c));
        }
        println!("(ratio of bytes per validation: anonymous RSS growth of one backend divided by calls; target: under 1 byte per call, i.e. no leak)");
        println!();
    }
}
