//! Running psql and pgbench against the bench's private cluster, and reading
//! pgbench's report.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

#[derive(Clone, Debug)]
pub struct Pg {
    pub bin: PathBuf,
    /// Socket folder (or host) and port.
    pub host: String,
    pub port: u16,
    pub db: String,
    pub user: String,
}

/// One pgbench run: throughput and the latency of the timed (last) statement.
#[derive(Clone, Debug)]
pub struct BenchRun {
    pub tps: f64,
    /// Average latency of the last statement of the script, in microseconds.
    pub stmt_us: f64,
    #[allow(dead_code)]
    pub transactions: u64,
}

impl Pg {
    fn base(&self, program: &str) -> Command {
        let mut c = Command::new(self.bin.join(program));
        c.arg("-h").arg(&self.host).arg("-p").arg(self.port.to_string()).arg("-U").arg(&self.user);
        c.env_remove("PGOPTIONS");
        c
    }

    /// Run SQL with psql (ON_ERROR_STOP), return its unaligned, tuples-only output.
    pub fn sql(&self, sql: &str) -> Result<String, String> {
        let out = self
            .base("psql")
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", &self.db, "-c", sql])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("psql: {e}"))?;
        if !out.status.success() {
            return Err(format!("psql failed on {:.200}: {}", sql, String::from_utf8_lossy(&out.stderr)));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Run a file of SQL (several statements, one session).
    pub fn file(&self, path: &Path) -> Result<String, String> {
        let out = self
            .base("psql")
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", &self.db, "-f"])
            .arg(path)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("psql: {e}"))?;
        if !out.status.success() {
            return Err(format!("psql -f {} failed: {}", path.display(), String::from_utf8_lossy(&out.stderr)));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Run a script of several statements in one session, from standard input.
    pub fn session(&self, script: &str) -> Result<String, String> {
        use std::io::Write;
        let mut child = self
            .base("psql")
            .args(["-X", "-q", "-A", "-t", "-F", "|", "-v", "ON_ERROR_STOP=1", "-d", &self.db])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("psql: {e}"))?;
        child.stdin.take().expect("piped").write_all(script.as_bytes()).map_err(|e| e.to_string())?;
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!("psql session failed: {}", String::from_utf8_lossy(&out.stderr)));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Start pgbench (`-M prepared -r`) on `script` with `clients` clients for `secs` seconds.
    pub fn spawn_pgbench(&self, script: &Path, clients: u32, secs: u64, vars: &[(&str, i64)]) -> Result<Child, String> {
        let mut c = self.base("pgbench");
        c.args(["-n", "-M", "prepared", "-r"])
            .arg("-c")
            .arg(clients.to_string())
            .arg("-j")
            .arg(clients.to_string())
            .arg("-T")
            .arg(secs.to_string());
        for (k, v) in vars {
            c.arg("-D").arg(format!("{k}={v}"));
        }
        c.arg("-f").arg(script).arg(&self.db);
        c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        c.spawn().map_err(|e| format!("pgbench: {e}"))
    }

    pub fn pgbench(&self, script: &Path, clients: u32, secs: u64, vars: &[(&str, i64)]) -> Result<BenchRun, String> {
        let child = self.spawn_pgbench(script, clients, secs, vars)?;
        finish_pgbench(child, script)
    }
}

pub fn finish_pgbench(child: Child, script: &Path) -> Result<BenchRun, String> {
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!("pgbench {} failed: {}\n{}", script.display(), String::from_utf8_lossy(&out.stderr), stdout));
    }
    parse_pgbench(&stdout).ok_or_else(|| format!("cannot read pgbench's report for {}:\n{stdout}", script.display()))
}

/// Read `tps = …`, the transaction count and the per-statement latencies
/// (`-r`) of pgbench 15's report; the last statement is the timed one.
pub fn parse_pgbench(out: &str) -> Option<BenchRun> {
    let mut tps = None;
    let mut transactions = 0u64;
    let mut stmt_ms = None;
    let mut in_statements = false;
    for line in out.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("tps = ") {
            tps = rest.split_whitespace().next().and_then(|v| v.parse::<f64>().ok());
        } else if let Some(rest) = t.strip_prefix("number of transactions actually processed: ") {
            transactions = rest.split(|c: char| !c.is_ascii_digit()).next().and_then(|v| v.parse().ok()).unwrap_or(0);
        } else if t.starts_with("statement latencies in milliseconds") {
            in_statements = true;
        } else if in_statements {
            let mut parts = t.split_whitespace();
            if let (Some(ms), Some(_failures), Some(cmd)) = (parts.next(), parts.next(), parts.next()) {
                if let Ok(ms) = ms.parse::<f64>() {
                    if !cmd.starts_with('\\') {
                        stmt_ms = Some(ms);
                    }
                }
            }
        }
    }
    Some(BenchRun { tps: tps?, stmt_us: stmt_ms? * 1000.0, transactions })
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_pgbench_15() {
        let out = "transaction type: bench/sql/find_current.sql\nscaling factor: 1\nquery mode: prepared\n\
number of clients: 1\nnumber of threads: 1\nmaximum number of tries: 1\nduration: 1 s\n\
number of transactions actually processed: 9164\nnumber of failed transactions: 0 (0.000%)\n\
latency average = 0.109 ms\ninitial connection time = 2.512 ms\ntps = 9167.046862 (without initial connection time)\n\
statement latencies in milliseconds and failures:\n         0.002           0  \\set n random(1, :nenv)\n\
         0.041           0  SELECT api_key AS key FROM bench.pick WHERE n = :n \\gset\n\
         0.066           0  SELECT * FROM api_auth.find_environment_by_api_key(:key);\n";
        let r = super::parse_pgbench(out).unwrap();
        assert_eq!(r.transactions, 9164);
        assert!((r.tps - 9167.046862).abs() < 1e-6);
        assert!((r.stmt_us - 66.0).abs() < 1e-9);
    }
}
