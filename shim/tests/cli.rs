//! The command line of the real binary: `--help`, refusals of bad values
//! (exit status 2, the reason named), the admin token never accepted as a
//! flag, and the precedence flag > environment variable > default.
//!
//! No database is needed: pools connect lazily, so the shim starts, logs its
//! settings and listens while the database is unreachable.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_api-auth-shim");
/// A database nobody listens on (port 1).
const NOWHERE: &str = "host=127.0.0.1 port=1 user=nobody password=hunter2-secret dbname=x";

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.env_clear().args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run api-auth-shim")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// Start the shim, return its start-up log line (the one that says where it
/// listens), then kill it.
fn start_line(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(BIN);
    cmd.env_clear().args(["--listen", "127.0.0.1:0"]).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let started = Instant::now();
    let mut seen = Vec::new();
    let found = loop {
        match lines.next() {
            Some(Ok(l)) if l.contains("listening on") => break Some(l),
            Some(Ok(l)) => seen.push(l),
            _ => break None,
        }
        if started.elapsed() > Duration::from_secs(20) {
            break None;
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    found.unwrap_or_else(|| panic!("the shim did not start: {seen:?}"))
}

#[test]
fn help_names_every_flag_and_variable() {
    let o = run(&["--help"], &[("DATABASE_URL", NOWHERE)]);
    assert!(o.status.success());
    let help = String::from_utf8_lossy(&o.stdout);
    for (flag, var) in [
        ("--database-url", "DATABASE_URL"),
        ("--admin-database-url", "API_AUTH_ADMIN_DATABASE_URL"),
        ("--listen", "API_AUTH_LISTEN"),
        ("--pool-size", "API_AUTH_POOL_SIZE"),
        ("--admin-pool-size", "API_AUTH_ADMIN_POOL_SIZE"),
        ("--admin-token-file", "API_AUTH_ADMIN_TOKEN_FILE"),
        ("--request-timeout", "API_AUTH_REQUEST_TIMEOUT"),
        ("--db-timeout", "API_AUTH_DB_TIMEOUT"),
        ("--max-connections", "API_AUTH_MAX_CONNECTIONS"),
        ("--shutdown-timeout", "API_AUTH_SHUTDOWN_TIMEOUT"),
        ("--log-format", "API_AUTH_LOG_FORMAT"),
        ("--log-level", "API_AUTH_LOG_LEVEL"),
        ("--bench-routes", "API_AUTH_BENCH_ROUTES"),
        ("--metrics-listen", "API_AUTH_METRICS_LISTEN"),
        ("--no-metrics", "API_AUTH_NO_METRICS"),
        ("--deprecation-link", "API_AUTH_DEPRECATION_LINK"),
    ] {
        assert!(help.contains(flag) && help.contains(&format!("env: {var}")), "{flag} / {var} missing:\n{help}");
    }
    for text in [
        "API_AUTH_ADMIN_TOKEN (environment only)",
        "[default: 127.0.0.1:3030]",
        "[possible values: text, json]",
        "/api/v1/auth/verify",
        "/admin/api/v1/revoked-api-keys/{id}",
        "no run is triggered",
    ] {
        assert!(help.contains(text), "{text:?} missing:\n{help}");
    }
    // The help never shows a variable that can hold a password.
    assert!(!help.contains("hunter2"), "{help}");
    assert!(!help.contains("--admin-token "), "{help}");

    let short = run(&["-h"], &[]);
    assert!(short.status.success());
    assert!(String::from_utf8_lossy(&short.stdout).contains("--database-url"));
    let v = run(&["--version"], &[]);
    assert_eq!(String::from_utf8_lossy(&v.stdout).trim(), format!("api-auth-shim {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn bad_values_exit_2_naming_the_flag() {
    let db = [("DATABASE_URL", NOWHERE)];
    for (args, env, wanted) in [
        (vec!["--pool-size", "0"], vec![], "--pool-size"),
        (vec!["--pool-size=many"], vec![], "--pool-size"),
        (vec!["--max-connections", "2000000"], vec![], "--max-connections"),
        (vec!["--listen", "localhost"], vec![], "not an address"),
        (vec!["--request-timeout", "0"], vec![], "number of seconds"),
        (vec!["--db-timeout=86401"], vec![], "number of seconds"),
        (vec!["--log-format", "xml"], vec![], "--log-format"),
        (vec!["--log-level", "chatty"], vec![], "--log-level"),
        (vec!["--nope"], vec![], "--nope"),
        (vec!["--pool-size"], vec![], "--pool-size"),
        (vec![], vec![("API_AUTH_POOL_SIZE", "lots")], "--pool-size"),
        (vec![], vec![("API_AUTH_BENCH_ROUTES", "maybe")], "--bench-routes"),
        (vec![], vec![("API_AUTH_LOG_LEVEL", "loud")], "--log-level"),
        (vec!["--admin-token-file", "/nonexistent/token"], vec![], "/nonexistent/token"),
        (vec!["--metrics-listen", "9464"], vec![], "not an address"),
        (vec!["--no-metrics", "--metrics-listen", "127.0.0.1:9464"], vec![], "cannot be used with"),
        (vec!["--deprecation-link", "javascript:alert(1)"], vec![], "--deprecation-link"),
        (vec![], vec![("API_AUTH_DEPRECATION_LINK", "https://x/a b")], "--deprecation-link"),
        (vec![], vec![("API_AUTH_NO_METRICS", "perhaps")], "--no-metrics"),
    ] {
        let mut env = env.clone();
        env.extend(db);
        let o = run(&args, &env);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?} {env:?}: {err}");
        assert!(err.contains("error:") && err.contains(wanted), "{args:?} {env:?}: {err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
    // No database at all.
    let o = run(&[], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("DATABASE_URL"), "{}", stderr(&o));
    let o = run(&[], &[("DATABASE_URL", "")]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn the_admin_token_is_never_a_flag() {
    for args in [vec!["--admin-token", "s3cret-token"], vec!["--admin-token=s3cret-token"]] {
        let o = run(&args, &[("DATABASE_URL", NOWHERE)]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains("API_AUTH_ADMIN_TOKEN") && err.contains("--admin-token-file"), "{err}");
        assert!(!err.contains("s3cret-token"), "{err}");
    }
    // A token with a space is refused, without echoing it.
    let o = run(&[], &[("DATABASE_URL", NOWHERE), ("API_AUTH_ADMIN_TOKEN", "two words")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(!stderr(&o).contains("two words"), "{}", stderr(&o));
}

#[test]
fn flag_beats_variable_beats_default() {
    let line = start_line(&["--pool-size", "3"], &[("DATABASE_URL", NOWHERE), ("API_AUTH_POOL_SIZE", "7")]);
    assert!(line.contains("pool_size=3"), "{line}");
    let line = start_line(&[], &[("DATABASE_URL", NOWHERE), ("API_AUTH_POOL_SIZE", "7")]);
    assert!(line.contains("pool_size=7"), "{line}");
    // An empty variable counts as unset.
    let line = start_line(&[], &[("DATABASE_URL", NOWHERE), ("API_AUTH_POOL_SIZE", "")]);
    assert!(line.contains("pool_size=16"), "{line}");
    let line = start_line(&["--database-url", NOWHERE], &[("API_AUTH_BENCH_ROUTES", "yes")]);
    assert!(line.contains("bench_routes=true"), "{line}");
    let line = start_line(&["--database-url", NOWHERE], &[("API_AUTH_BENCH_ROUTES", "off")]);
    assert!(line.contains("bench_routes=false"), "{line}");
    let line = start_line(&["--database-url", NOWHERE], &[("API_AUTH_NO_METRICS", "1")]);
    assert!(line.contains("metrics=disabled"), "{line}");
    let line = start_line(&["--database-url", NOWHERE, "--metrics-listen", "127.0.0.1:0"], &[]);
    assert!(line.contains("metrics=http://127.0.0.1:") && !line.contains(":0/metrics"), "{line}");
    // The admin token from a file; admin routes enabled.
    let dir = std::env::temp_dir().join(format!("api-auth-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("token");
    std::fs::write(&file, "  file-token-123\n").unwrap();
    let line = start_line(&["--admin-token-file", file.to_str().unwrap()], &[("DATABASE_URL", NOWHERE)]);
    assert!(line.contains("admin_routes=\"enabled\""), "{line}");
    assert!(!line.contains("file-token-123"), "{line}");
    let line = start_line(&[], &[("DATABASE_URL", NOWHERE)]);
    assert!(line.contains("admin_routes=\"disabled"), "{line}");
    std::fs::remove_dir_all(&dir).unwrap();
}
