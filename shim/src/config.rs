//! Configuration: command-line flags, each with an environment-variable fallback.
//!
//! Flags win over environment variables, which win over defaults. Secrets (the
//! admin token) are deliberately *not* accepted as flags, because the command
//! line of a process is visible to every user of the machine (`ps`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub const HELP: &str = "\
api-auth-shim: trigger.dev-compatible REST routes over the api_auth PostgreSQL extension

USAGE:
    api-auth-shim [OPTIONS]

Every option can also be given by the environment variable shown; a flag wins
over its variable. Flags take their value as `--flag VALUE` or `--flag=VALUE`.

OPTIONS:
    --database-url URL         DATABASE_URL (required)
        PostgreSQL connection string (postgres://user:pass@host/db or a libpq
        key=value string) of a database where `CREATE EXTENSION api_auth` ran.
        Used for the public routes; its role only needs EXECUTE on the api_auth
        functions.
    --replica-database-url URL API_AUTH_REPLICA_DATABASE_URLS (default: none)
        A hot-standby replica of DATABASE_URL's database (repeat the flag for
        several; the variable holds postgres:// URLs separated by spaces).
        Authentication reads go to a replica whose replay lag is within
        --max-replica-lag; writes and admin routes to the primary. Refusals
        from a replica are confirmed on the primary (see
        --replica-confirm-rate). Connection strings accept sslmode and
        sslrootcert like libpq (this one, DATABASE_URL and the admin URL).
    --max-replica-lag SECS     API_AUTH_MAX_REPLICA_LAG (default: 1)
        A replica further behind the primary than this is not used until it
        catches up: the longest a revocation can take to reach the replicas.
    --replica-confirm-rate N   API_AUTH_REPLICA_CONFIRM_RATE (default: 50)
        Refusals from replicas (unknown key, failing token, unknown session)
        confirmed on the primary per second; beyond it the replica's refusal
        is the answer. 0: never confirm.
    --replica-pool-size N      API_AUTH_REPLICA_POOL_SIZE (default: --pool-size)
        Maximum PostgreSQL connections per replica.
    --admin-database-url URL   API_AUTH_ADMIN_DATABASE_URL (default: DATABASE_URL)
        Connection string used by the /admin routes (rotation, revoked-key
        expiry, environment creation), so they can run as a more privileged
        role than the public routes.
    --listen ADDR              API_AUTH_LISTEN (default: 127.0.0.1:3030)
        Address and port to listen on. Use 0.0.0.0:PORT to accept remote clients
        and port 0 to let the OS pick a free port (the chosen address is logged).
    --pool-size N              API_AUTH_POOL_SIZE (default: 16)
        Maximum PostgreSQL connections of the public pool.
    --admin-pool-size N        API_AUTH_ADMIN_POOL_SIZE (default: 2)
        Maximum connections of the admin pool (only when a separate admin
        database URL is configured; otherwise the public pool is shared).
    --admin-token-file PATH    API_AUTH_ADMIN_TOKEN_FILE
        File whose content (surrounding whitespace trimmed) is the admin bearer
        token. Alternatively set API_AUTH_ADMIN_TOKEN (environment only, never a
        flag). Admin routes require `Authorization: Bearer <admin token>`,
        compared in constant time; with no admin token configured every admin
        route answers 403.
    --request-timeout SECS     API_AUTH_REQUEST_TIMEOUT (default: 10)
        Upper bound for one request, body upload and database work included:
        a slow body gets 408, slow database work 503.
    --db-timeout SECS          API_AUTH_DB_TIMEOUT (default: 2)
        How long to wait for a pooled connection, or to open a new one, before
        answering 503. Also the statement_timeout set on every connection
        (multiplied by 2). Keeps requests fast when the database is down; the
        pool reconnects by itself when it comes back.
    --max-connections N        API_AUTH_MAX_CONNECTIONS (default: 1024)
        Maximum concurrent client connections; further clients wait in the
        kernel's accept queue.
    --shutdown-timeout SECS    API_AUTH_SHUTDOWN_TIMEOUT (default: 30)
        On SIGTERM or SIGINT the shim stops accepting connections and lets
        in-flight requests finish for at most this long.
    --log-format text|json     API_AUTH_LOG_FORMAT (default: text)
    --log-level LEVEL          API_AUTH_LOG_LEVEL (default: info)
        One of error, warn, info, debug, trace. Logs go to standard error and
        never contain a secret key or a token: keys are masked (tr_prod_ab…yz)
        and tokens are never printed.
    --bench-routes             API_AUTH_BENCH_ROUTES=1
        Enable GET /__bench/floor (runs `SELECT 1` through the pool), the
        floor for benchmarks. Off by default.
    -h, --help                 Print this help and exit.
    -V, --version              Print the version and exit.

ROUTES:
    POST /api/v1/auth/jwt/claims                          secret key
    POST /api/v1/auth/jwt                                 secret key (current or grace)
    POST /api/v1/sessions                                 secret key or public token
    GET  /api/v1/sessions/{id or externalId}              secret key or public token
    GET  /api/v1/auth/verify                              forward auth for gateways
    POST /admin/api/v1/revoked-api-keys/{id}              admin token
    POST /admin/api/v1/environments                       admin token
    POST /admin/api/v1/environments/{id}/regenerate-api-key   admin token
    GET  /healthz, GET /readyz
Sessions are stored only: no run is triggered (there is no task runner here).
";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub database_url: String,
    pub replica_database_urls: Vec<String>,
    pub max_replica_lag: Duration,
    pub replica_confirm_rate: u32,
    pub replica_pool_size: usize,
    /// `None`: the admin routes share the public pool.
    pub admin_database_url: Option<String>,
    pub listen: SocketAddr,
    pub pool_size: usize,
    pub admin_pool_size: usize,
    pub admin_token: Option<String>,
    pub request_timeout: Duration,
    pub db_timeout: Duration,
    pub max_connections: usize,
    pub shutdown_timeout: Duration,
    pub log_format: LogFormat,
    pub log_level: tracing::Level,
    pub bench_routes: bool,
}

/// What the command line asked for.
pub enum Command {
    Run(Box<Config>),
    Help,
    Version,
}

/// Everything configuration-related that can go wrong, as a one-line message.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn err<T>(msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(msg.into()))
}

/// The flags that take a value, and their environment variables.
const VALUE_FLAGS: &[(&str, &str)] = &[
    ("database-url", "DATABASE_URL"),
    ("admin-database-url", "API_AUTH_ADMIN_DATABASE_URL"),
    ("replica-database-url", "API_AUTH_REPLICA_DATABASE_URLS"),
    ("max-replica-lag", "API_AUTH_MAX_REPLICA_LAG"),
    ("replica-confirm-rate", "API_AUTH_REPLICA_CONFIRM_RATE"),
    ("replica-pool-size", "API_AUTH_REPLICA_POOL_SIZE"),
    ("listen", "API_AUTH_LISTEN"),
    ("pool-size", "API_AUTH_POOL_SIZE"),
    ("admin-pool-size", "API_AUTH_ADMIN_POOL_SIZE"),
    ("admin-token-file", "API_AUTH_ADMIN_TOKEN_FILE"),
    ("request-timeout", "API_AUTH_REQUEST_TIMEOUT"),
    ("db-timeout", "API_AUTH_DB_TIMEOUT"),
    ("max-connections", "API_AUTH_MAX_CONNECTIONS"),
    ("shutdown-timeout", "API_AUTH_SHUTDOWN_TIMEOUT"),
    ("log-format", "API_AUTH_LOG_FORMAT"),
    ("log-level", "API_AUTH_LOG_LEVEL"),
];

/// Parse `args` (without the program name), reading fallbacks through `env`.
pub fn parse<I, E>(args: I, env: E) -> Result<Command, ConfigError>
where
    I: IntoIterator<Item = String>,
    E: Fn(&str) -> Option<String>,
{
    let mut flags: Vec<(&'static str, String)> = Vec::new();
    let mut bench_flag = false;
    let mut replica_flags: Vec<String> = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "--bench-routes" => {
                bench_flag = true;
                continue;
            }
            _ => {}
        }
        let Some(body) = arg.strip_prefix("--") else {
            return err(format!("unexpected argument {arg:?} (see --help)"));
        };
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        if name == "admin-token" {
            return err("the admin token is not accepted on the command line (visible in `ps`): \
                        use API_AUTH_ADMIN_TOKEN or --admin-token-file");
        }
        let Some(&(flag, _)) = VALUE_FLAGS.iter().find(|(f, _)| *f == name) else {
            return err(format!("unknown option --{name} (see --help)"));
        };
        let value = match inline {
            Some(v) => v,
            None => match args.next() {
                Some(v) => v,
                None => return err(format!("--{flag} needs a value")),
            },
        };
        if flag == "replica-database-url" {
            replica_flags.push(value);
            continue;
        }
        flags.retain(|(f, _)| *f != flag);
        flags.push((flag, value));
    }

    let get = |flag: &str| -> Option<String> {
        if let Some((_, v)) = flags.iter().find(|(f, _)| *f == flag) {
            return Some(v.clone());
        }
        let var = VALUE_FLAGS.iter().find(|(f, _)| *f == flag).map(|(_, v)| *v)?;
        env(var).filter(|v| !v.is_empty())
    };

    let Some(database_url) = get("database-url") else {
        return err("no database: set DATABASE_URL or pass --database-url (see --help)");
    };
    let admin_database_url = get("admin-database-url").filter(|u| *u != database_url);

    let replica_database_urls = if replica_flags.is_empty() {
        let list = env("API_AUTH_REPLICA_DATABASE_URLS").unwrap_or_default();
        let urls: Vec<String> = list.split_whitespace().map(str::to_string).collect();
        if let Some(bad) = urls.iter().find(|u| !u.starts_with("postgres://") && !u.starts_with("postgresql://")) {
            return err(format!(
                "API_AUTH_REPLICA_DATABASE_URLS: {:?} is not a postgres:// URL (the variable is a space-separated \
                 list of URLs; give key=value strings with --replica-database-url)",
                bad.chars().take(40).collect::<String>()
            ));
        }
        urls
    } else {
        replica_flags
    };
    let max_replica_lag = seconds(&get, "max-replica-lag", 1)?;
    let replica_confirm_rate = match get("replica-confirm-rate") {
        None => 50,
        Some(s) => match s.trim().parse::<u32>() {
            Ok(n) if n <= 1_000_000 => n,
            _ => return err(format!("--replica-confirm-rate: {s:?} is not a whole number between 0 and 1000000")),
        },
    };

    let listen_s = get("listen").unwrap_or_else(|| "127.0.0.1:3030".into());
    let listen: SocketAddr = match listen_s.parse() {
        Ok(a) => a,
        Err(_) => return err(format!("--listen: {listen_s:?} is not an address like 127.0.0.1:3030")),
    };

    let pool_size = positive(&get, "pool-size", 16, 10_000)?;
    let admin_pool_size = positive(&get, "admin-pool-size", 2, 10_000)?;
    let replica_pool_size = positive(&get, "replica-pool-size", pool_size, 10_000)?;
    let max_connections = positive(&get, "max-connections", 1024, 1_000_000)?;
    let request_timeout = seconds(&get, "request-timeout", 10)?;
    let db_timeout = seconds(&get, "db-timeout", 2)?;
    let shutdown_timeout = seconds(&get, "shutdown-timeout", 30)?;

    let admin_token = match get("admin-token-file") {
        Some(path) => {
            let path = PathBuf::from(path);
            let content = match std::fs::read_to_string(&path) {
                Ok(c) => c,
                Err(e) => return err(format!("--admin-token-file {}: {e}", path.display())),
            };
            let token = content.trim().to_string();
            if token.is_empty() {
                return err(format!("--admin-token-file {}: the file is empty", path.display()));
            }
            Some(token)
        }
        None => env("API_AUTH_ADMIN_TOKEN").map(|t| t.trim().to_string()).filter(|t| !t.is_empty()),
    };
    if let Some(t) = &admin_token {
        if t.len() > 4096 || t.chars().any(|c| c.is_control() || c == ' ') {
            return err("the admin token must be at most 4096 characters, without spaces or control characters");
        }
    }

    let log_format = match get("log-format").as_deref() {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => return err(format!("--log-format: {other:?} is not text or json")),
    };
    let log_level = match get("log-level").as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("info") => tracing::Level::INFO,
        Some("error") => tracing::Level::ERROR,
        Some("warn") => tracing::Level::WARN,
        Some("debug") => tracing::Level::DEBUG,
        Some("trace") => tracing::Level::TRACE,
        Some(other) => return err(format!("--log-level: {other:?} is not error, warn, info, debug or trace")),
    };
    let bench_routes = bench_flag
        || matches!(env("API_AUTH_BENCH_ROUTES").as_deref(), Some("1" | "true" | "yes" | "on"));

    Ok(Command::Run(Box::new(Config {
        database_url,
        replica_database_urls,
        max_replica_lag,
        replica_confirm_rate,
        replica_pool_size,
        admin_database_url,
        listen,
        pool_size,
        admin_pool_size,
        admin_token,
        request_timeout,
        db_timeout,
        max_connections,
        shutdown_timeout,
        log_format,
        log_level,
        bench_routes,
    })))
}

fn positive(get: &impl Fn(&str) -> Option<String>, flag: &str, default: usize, max: usize) -> Result<usize, ConfigError> {
    match get(flag) {
        None => Ok(default),
        Some(s) => match s.trim().parse::<usize>() {
            Ok(n) if n >= 1 && n <= max => Ok(n),
            _ => err(format!("--{flag}: {s:?} is not a whole number between 1 and {max}")),
        },
    }
}

fn seconds(get: &impl Fn(&str) -> Option<String>, flag: &str, default: u64) -> Result<Duration, ConfigError> {
    match get(flag) {
        None => Ok(Duration::from_secs(default)),
        Some(s) => match s.trim().parse::<f64>() {
            Ok(n) if n > 0.0 && n <= 86_400.0 => Ok(Duration::from_secs_f64(n)),
            _ => err(format!("--{flag}: {s:?} is not a number of seconds between 0 and 86400")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str], env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        match parse(args.iter().map(|s| s.to_string()), |k| {
            env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        })? {
            Command::Run(c) => Ok(*c),
            _ => panic!("not a run"),
        }
    }

    #[test]
    fn flags_win_over_env_and_defaults_apply() {
        let c = run(&["--listen=0.0.0.0:9", "--pool-size", "3"], &[("DATABASE_URL", "host=x"), ("API_AUTH_POOL_SIZE", "7")]).unwrap();
        assert_eq!(c.listen.to_string(), "0.0.0.0:9");
        assert_eq!(c.pool_size, 3);
        assert_eq!(c.database_url, "host=x");
        assert!(c.admin_database_url.is_none());
        assert!(c.admin_token.is_none());
        assert_eq!(c.request_timeout, Duration::from_secs(10));
        assert!(!c.bench_routes);
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(run(&[], &[]).is_err());
        assert!(run(&["--pool-size", "0"], &[("DATABASE_URL", "x")]).is_err());
        assert!(run(&["--listen", "nope"], &[("DATABASE_URL", "x")]).is_err());
        assert!(run(&["--admin-token", "x"], &[("DATABASE_URL", "x")]).is_err());
        assert!(run(&["--what"], &[("DATABASE_URL", "x")]).is_err());
        assert!(run(&["--pool-size"], &[("DATABASE_URL", "x")]).is_err());
    }

    #[test]
    fn admin_token_from_env_and_same_admin_url_is_shared() {
        let c = run(&["--bench-routes"], &[("DATABASE_URL", "x"), ("API_AUTH_ADMIN_DATABASE_URL", "x"), ("API_AUTH_ADMIN_TOKEN", " s3cret\n")]).unwrap();
        assert_eq!(c.admin_token.as_deref(), Some("s3cret"));
        assert!(c.admin_database_url.is_none());
        assert!(c.bench_routes);
    }
}
