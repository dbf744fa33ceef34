//! Configuration: command-line flags, each with an environment-variable
//! fallback, parsed by `clap` (derive + `env`).
//!
//! Flags win over environment variables, which win over defaults; an
//! environment variable set to the empty string counts as unset. Bad values
//! are refused at start-up with clap's error (exit status 2), never silently
//! replaced by a default.
//!
//! Secrets (the admin token) are deliberately *not* accepted as flags, because
//! the command line of a process is visible to every user of the machine
//! (`ps`): the token comes from `API_AUTH_ADMIN_TOKEN` or from a file. For the
//! same reason `--help` never shows the current value of a variable that can
//! hold a password (the database URLs).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::error::ErrorKind;
use clap::{CommandFactory, FromArgMatches, Parser, ValueEnum};
use hyper::header::HeaderValue;

use crate::grace;

/// Appended to `--help`: what is not a flag.
const AFTER_HELP: &str = "\
Secrets are never flags (a command line is visible in `ps`): the admin token is
API_AUTH_ADMIN_TOKEN (environment only) or the content of --admin-token-file.
Logs go to standard error and never contain a secret key or a token: keys are
masked (tr_prod_ab…yz) and tokens are never printed.

ROUTES:
    POST /api/v1/auth/jwt/claims                          secret key
    POST /api/v1/auth/jwt                                 secret key (current or grace)
    POST /api/v1/sessions                                 secret key or public token
    GET  /api/v1/sessions/{id or externalId}              secret key or public token
    GET  /api/v1/auth/verify                              forward auth for gateways
    POST /admin/api/v1/revoked-api-keys/{id}              admin token
    POST /admin/api/v1/environments                       admin token
    POST /admin/api/v1/environments/{id}/regenerate-api-key   admin token
    GET  /healthz, GET /readyz, GET /metrics (Prometheus; see --metrics-listen)
Sessions are stored only: no run is triggered (there is no task runner here).";

/// api-auth-shim: trigger.dev-compatible REST routes over the api_auth PostgreSQL extension
///
/// Every option can also be given by the environment variable shown; a flag wins
/// over its variable, a variable over the default. Flags take their value as
/// `--flag VALUE` or `--flag=VALUE`.
#[derive(Parser, Debug)]
#[command(name = "api-auth-shim", version, after_help = AFTER_HELP, max_term_width = 100)]
pub struct Args {
    /// PostgreSQL connection string of the public routes (required)
    ///
    /// postgres://user:pass@host/db or a libpq key=value string, of a database
    /// where `CREATE EXTENSION api_auth` ran.
    /// Used for the public routes; its role only needs EXECUTE on the api_auth
    /// functions (a member of api_auth_client).
    #[arg(long, env = "DATABASE_URL", value_name = "URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Connection string of a hot-standby replica (repeatable)
    ///
    /// A streaming replica of DATABASE_URL's database. Authentication reads
    /// (verify, claims, minting, the credential check of sessions, reading a
    /// session) go to a replica whose replay lag is within --max-replica-lag;
    /// writes and admin routes to the primary. The variable holds postgres://
    /// URLs separated by spaces (give key=value strings with the flag). All
    /// connection strings accept sslmode (disable, prefer, require,
    /// verify-ca, verify-full) and sslrootcert like libpq.
    #[arg(long = "replica-database-url", env = "API_AUTH_REPLICA_DATABASE_URLS", value_name = "URL",
          hide_env_values = true, action = clap::ArgAction::Append)]
    pub replica_database_urls: Vec<String>,

    /// Replay lag beyond which a replica is not used, in seconds
    ///
    /// Measured by comparing WAL positions (the primary's flush LSN against
    /// the replica's replay LSN), so an idle primary does not make a replica
    /// look late. The worst-case delay for a revocation to reach reads served
    /// by replicas. A replica that is down or behind is skipped and retried;
    /// with none usable, reads go to the primary.
    #[arg(long, env = "API_AUTH_MAX_REPLICA_LAG", value_name = "SECS", default_value = "1", value_parser = seconds)]
    pub max_replica_lag: Duration,

    /// Replica refusals confirmed on the primary per second
    ///
    /// A refusal from a replica (unknown key, token failing every key, session
    /// not found) may only mean the replica has not replayed a recent write,
    /// so it is asked again on the primary, at most this many times per second
    /// (a flood of bogus credentials stays on the replicas). Past the budget
    /// the replica's refusal is the answer. 0: never confirm.
    #[arg(long, env = "API_AUTH_REPLICA_CONFIRM_RATE", value_name = "N", default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub replica_confirm_rate: u32,

    /// Maximum PostgreSQL connections per replica [default: --pool-size]
    #[arg(long, env = "API_AUTH_REPLICA_POOL_SIZE", value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub replica_pool_size: Option<u32>,

    /// Connection string of the /admin routes [default: DATABASE_URL]
    ///
    /// Used by the /admin routes (rotation, revoked-key
    /// expiry, environment creation), so that they can run as a more
    /// privileged role (a member of api_auth_admin) than the public routes.
    #[arg(long, env = "API_AUTH_ADMIN_DATABASE_URL", value_name = "URL", hide_env_values = true)]
    pub admin_database_url: Option<String>,

    /// Address and port to listen on
    ///
    /// Use 0.0.0.0:PORT to accept remote clients
    /// and port 0 to let the OS pick a free port (the chosen address is logged).
    #[arg(long, env = "API_AUTH_LISTEN", value_name = "ADDR", default_value = "127.0.0.1:3030", value_parser = address)]
    pub listen: SocketAddr,

    /// Maximum PostgreSQL connections of the public pool.
    #[arg(long, env = "API_AUTH_POOL_SIZE", value_name = "N", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub pool_size: u32,

    /// Maximum connections of the admin pool
    ///
    /// Only when a separate admin database URL is configured; otherwise the
    /// public pool is shared.
    #[arg(long, env = "API_AUTH_ADMIN_POOL_SIZE", value_name = "N", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub admin_pool_size: u32,

    /// File holding the admin bearer token
    ///
    /// Its content (surrounding whitespace trimmed) is the token. Alternatively set API_AUTH_ADMIN_TOKEN (environment only, never a
    /// flag). Admin routes require `Authorization: Bearer <admin token>`,
    /// compared in constant time; with no admin token configured every admin
    /// route answers 403.
    #[arg(long, env = "API_AUTH_ADMIN_TOKEN_FILE", value_name = "PATH")]
    pub admin_token_file: Option<PathBuf>,

    /// Upper bound for one request, in seconds
    ///
    /// Body upload and database work included: a slow body gets 408, slow
    /// database work 503. Fractions allowed.
    #[arg(long, env = "API_AUTH_REQUEST_TIMEOUT", value_name = "SECS", default_value = "10", value_parser = seconds)]
    pub request_timeout: Duration,

    /// Database wait before answering 503, in seconds
    ///
    /// How long to wait for a pooled connection, or to open a new one, before
    /// answering 503. Also the statement_timeout set on every connection
    /// (multiplied by 2). Keeps requests fast when the database is down; the
    /// pool reconnects by itself when it comes back.
    #[arg(long, env = "API_AUTH_DB_TIMEOUT", value_name = "SECS", default_value = "2", value_parser = seconds)]
    pub db_timeout: Duration,

    /// Maximum concurrent client connections
    ///
    /// Further clients wait in the kernel's accept queue.
    #[arg(long, env = "API_AUTH_MAX_CONNECTIONS", value_name = "N", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,

    /// Grace period for in-flight requests at shutdown, in seconds
    ///
    /// On SIGTERM or SIGINT the shim stops accepting connections and lets
    /// in-flight requests finish for at most this long.
    #[arg(long, env = "API_AUTH_SHUTDOWN_TIMEOUT", value_name = "SECS", default_value = "30", value_parser = seconds)]
    pub shutdown_timeout: Duration,

    /// Log line format (standard error).
    #[arg(long, env = "API_AUTH_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, ignore_case = true)]
    pub log_format: LogFormat,

    /// Least severe log level written.
    #[arg(long, env = "API_AUTH_LOG_LEVEL", value_enum, default_value_t = LogLevel::Info, ignore_case = true)]
    pub log_level: LogLevel,

    /// Serve GET /metrics on this address instead of with the API
    ///
    /// Prometheus metrics (text exposition format) on a listener of their own,
    /// so that they need not be exposed with the API, e.g. 127.0.0.1:9464.
    /// Without it, GET /metrics is served on --listen.
    #[arg(long, env = "API_AUTH_METRICS_LISTEN", value_name = "ADDR", value_parser = address)]
    pub metrics_listen: Option<SocketAddr>,

    /// Turn metrics off (no GET /metrics, nothing counted)
    ///
    /// For measuring what metrics cost. The variable takes 1/0, true/false,
    /// yes/no, on/off.
    #[arg(long, env = "API_AUTH_NO_METRICS", value_parser = BoolishValueParser::new(),
          action = clap::ArgAction::SetTrue, conflicts_with = "metrics_listen")]
    pub no_metrics: bool,

    /// Documentation URL sent as `Link: <URL>; rel="deprecation"` with a key in grace
    ///
    /// Answers to requests authenticated with a key in its grace window carry
    /// `Deprecation` and `Sunset` headers; with this option also a link to
    /// the page that explains key rotation. An absolute http(s) URL.
    #[arg(long, env = "API_AUTH_DEPRECATION_LINK", value_name = "URL", value_parser = grace::link_header)]
    pub deprecation_link: Option<HeaderValue>,

    /// Answers kept in memory (secret-key lookups and accepted tokens); 0 turns the cache off
    ///
    /// Answers are forgotten the moment a change that could alter them
    /// commits (the extension's NOTIFY api_auth_changes, listened to on the
    /// primary), at a token's exp, at the end of a grace window, and after
    /// --cache-max-age. Keyed by SHA-256 of the credential, never the credential.
    #[arg(long, env = "API_AUTH_CACHE_SIZE", value_name = "N", default_value_t = 100_000,
          value_parser = clap::value_parser!(u32).range(0..=10_000_000))]
    pub cache_size: u32,

    /// Longest an answer stays in the cache, in seconds
    ///
    /// A backstop for what sends no notification (a changed api_auth.jwt_*
    /// setting); every change to keys and grace windows is applied at commit.
    /// Each answer gets up to a quarter less (read from its hash), so answers
    /// kept together do not all expire together.
    #[arg(long, env = "API_AUTH_CACHE_MAX_AGE", value_name = "SECS", default_value = "300", value_parser = seconds)]
    pub cache_max_age: Duration,

    /// Enable GET /__bench/floor (benchmarks only)
    ///
    /// GET /__bench/floor runs `SELECT 1` through the pool: the floor for
    /// benchmarks. Off by default. The variable takes 1/0, true/false, yes/no,
    /// on/off.
    #[arg(long, env = "API_AUTH_BENCH_ROUTES", value_parser = BoolishValueParser::new(),
          action = clap::ArgAction::SetTrue)]
    pub bench_routes: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl From<LogLevel> for tracing::Level {
    fn from(l: LogLevel) -> Self {
        match l {
            LogLevel::Error => tracing::Level::ERROR,
            LogLevel::Warn => tracing::Level::WARN,
            LogLevel::Info => tracing::Level::INFO,
            LogLevel::Debug => tracing::Level::DEBUG,
            LogLevel::Trace => tracing::Level::TRACE,
        }
    }
}

/// The configuration the shim runs with, checked and resolved.
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
    pub metrics: bool,
    /// `None`: /metrics is served with the API.
    pub metrics_listen: Option<SocketAddr>,
    /// The `Link` header value sent with grace-window signals.
    pub deprecation_link: Option<HeaderValue>,
    /// Answer cache entries (0: no cache).
    pub cache_size: usize,
    pub cache_max_age: Duration,
}

/// `SocketAddr` with an error message that shows the expected form.
fn address(s: &str) -> Result<SocketAddr, String> {
    s.trim().parse().map_err(|_| format!("{s:?} is not an address like 127.0.0.1:3030 or [::1]:3030"))
}

/// Seconds, fractions allowed, in (0, 86400].
fn seconds(s: &str) -> Result<Duration, String> {
    match s.trim().parse::<f64>() {
        Ok(n) if n > 0.0 && n <= 86_400.0 => Ok(Duration::from_secs_f64(n)),
        _ => Err(format!("{s:?} is not a number of seconds greater than 0 and at most 86400")),
    }
}

/// Replica connection strings: a value made only of space-separated
/// `postgres://` URLs (the environment variable's form) is a list; anything
/// else (a libpq key=value string, which has spaces of its own) is one string.
fn split_url_lists(values: Vec<String>) -> Vec<String> {
    let is_url = |s: &str| s.starts_with("postgres://") || s.starts_with("postgresql://");
    let mut out = Vec::new();
    for v in values {
        let parts: Vec<&str> = v.split_whitespace().collect();
        if parts.len() > 1 && parts.iter().all(|p| is_url(p)) {
            out.extend(parts.into_iter().map(str::to_string));
        } else if !v.trim().is_empty() {
            out.push(v.trim().to_string());
        }
    }
    out
}

/// Refuse `--admin-token` with a message that says why and what to use
/// instead (clap alone would only say "unexpected argument").
fn refuse_secret_flags(args: &[std::ffi::OsString]) -> Result<(), clap::Error> {
    let secret = args.iter().skip(1).take_while(|a| *a != "--").any(|a| {
        let a = a.to_string_lossy();
        a == "--admin-token" || a.starts_with("--admin-token=")
    });
    if secret {
        return Err(Args::command().error(
            ErrorKind::UnknownArgument,
            "the admin token is not accepted on the command line (visible in `ps`): \
             use API_AUTH_ADMIN_TOKEN or --admin-token-file",
        ));
    }
    Ok(())
}

/// Parse with clap, treating a variable set to the empty string as unset
/// (clap would otherwise parse `""` as the value). `Arg::env` captures the
/// variable when the command is built, so an empty one is dropped there.
fn parse_args(argv: Vec<std::ffi::OsString>) -> Result<Args, clap::Error> {
    let mut cmd = Args::command();
    let empty: Vec<clap::Id> = cmd
        .get_arguments()
        .filter(|a| a.get_env().is_some_and(|name| std::env::var_os(name).is_some_and(|v| v.is_empty())))
        .map(|a| a.get_id().clone())
        .collect();
    for id in empty {
        cmd = cmd.mut_arg(id, |a| a.env(None));
    }
    let matches = cmd.try_get_matches_from(argv)?;
    Args::from_arg_matches(&matches)
}

impl Config {
    /// Parse the process's command line and environment. `Err` is a clap
    /// error to print (and exit with: `--help` and `--version` are "errors"
    /// that exit 0).
    pub fn from_env() -> Result<Config, clap::Error> {
        let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
        refuse_secret_flags(&argv)?;
        let args = parse_args(argv)?;
        let token = std::env::var("API_AUTH_ADMIN_TOKEN").ok();
        Config::resolve(args, token)
    }

    /// Turn parsed arguments (and the `API_AUTH_ADMIN_TOKEN` variable) into a
    /// configuration: read the token file, share the pool when both URLs are
    /// the same.
    pub fn resolve(args: Args, env_token: Option<String>) -> Result<Config, clap::Error> {
        let invalid = |msg: String| Args::command().error(ErrorKind::InvalidValue, msg);
        let admin_token = match &args.admin_token_file {
            Some(path) => {
                let content =
                    std::fs::read_to_string(path).map_err(|e| invalid(format!("--admin-token-file {}: {e}", path.display())))?;
                let token = content.trim().to_string();
                if token.is_empty() {
                    return Err(invalid(format!("--admin-token-file {}: the file is empty", path.display())));
                }
                Some(token)
            }
            None => env_token.map(|t| t.trim().to_string()).filter(|t| !t.is_empty()),
        };
        if let Some(t) = &admin_token {
            if t.len() > 4096 || t.chars().any(|c| c.is_control() || c == ' ') {
                return Err(invalid(
                    "the admin token must be at most 4096 characters, without spaces or control characters".into(),
                ));
            }
        }
        let Some(database_url) = args.database_url.filter(|u| !u.is_empty()) else {
            return Err(
                Args::command().error(ErrorKind::MissingRequiredArgument, "no database: set DATABASE_URL or pass --database-url")
            );
        };
        let admin_database_url = args.admin_database_url.filter(|u| !u.is_empty() && *u != database_url);
        let replica_database_urls = split_url_lists(args.replica_database_urls);
        Ok(Config {
            database_url,
            replica_database_urls,
            max_replica_lag: args.max_replica_lag,
            replica_confirm_rate: args.replica_confirm_rate,
            replica_pool_size: args.replica_pool_size.unwrap_or(args.pool_size) as usize,
            admin_database_url,
            listen: args.listen,
            pool_size: args.pool_size as usize,
            admin_pool_size: args.admin_pool_size as usize,
            admin_token,
            request_timeout: args.request_timeout,
            db_timeout: args.db_timeout,
            max_connections: args.max_connections as usize,
            shutdown_timeout: args.shutdown_timeout,
            log_format: args.log_format,
            log_level: args.log_level.into(),
            bench_routes: args.bench_routes,
            metrics: !args.no_metrics,
            metrics_listen: args.metrics_listen,
            deprecation_link: args.deprecation_link,
            cache_size: args.cache_size as usize,
            cache_max_age: args.cache_max_age,
        })
    }
}

#[cfg(test)]
mod tests {
    //! Flags only: the environment fallbacks and their precedence are tested
    //! on the real binary (shim/tests/cli.rs), where each run gets its own
    //! environment.
    use super::*;

    fn run(args: &[&str]) -> Result<Config, clap::Error> {
        let argv: Vec<std::ffi::OsString> =
            std::iter::once("api-auth-shim").chain(args.iter().copied()).map(Into::into).collect();
        refuse_secret_flags(&argv)?;
        Config::resolve(parse_args(argv)?, None)
    }

    #[test]
    fn the_command_is_well_formed() {
        Args::command().debug_assert();
    }

    #[test]
    fn flags_and_defaults() {
        let c = run(&["--database-url", "host=x", "--listen=0.0.0.0:9", "--pool-size", "3", "--db-timeout=0.5"]).unwrap();
        assert_eq!(c.listen.to_string(), "0.0.0.0:9");
        assert_eq!(c.pool_size, 3);
        assert_eq!(c.database_url, "host=x");
        assert_eq!(c.db_timeout, Duration::from_millis(500));
        assert!(c.admin_database_url.is_none());
        assert!(c.admin_token.is_none());
        assert_eq!(c.request_timeout, Duration::from_secs(10));
        assert_eq!(c.log_level, tracing::Level::INFO);
        assert!(!c.bench_routes);
        assert!(c.metrics && c.metrics_listen.is_none() && c.deprecation_link.is_none());
        let c = run(&["--database-url=x", "--no-metrics", "--deprecation-link=https://example.com/rotate"]).unwrap();
        assert!(!c.metrics);
        assert_eq!(c.deprecation_link.unwrap(), "<https://example.com/rotate>; rel=\"deprecation\"; type=\"text/html\"");
        let c = run(&["--database-url=x", "--bench-routes", "--log-level", "DEBUG", "--log-format", "json"]).unwrap();
        assert!(c.bench_routes);
        assert_eq!(c.log_level, tracing::Level::DEBUG);
        assert_eq!(c.log_format, LogFormat::Json);
    }

    #[test]
    fn bad_values_are_refused_with_the_reason() {
        let msg = |args: &[&str]| run(args).map(|_| ()).unwrap_err().to_string();
        assert!(msg(&["--database-url=x", "--pool-size", "0"]).contains("--pool-size"));
        assert!(msg(&["--database-url=x", "--listen", "nope"]).contains("not an address"));
        assert!(msg(&["--database-url=x", "--request-timeout=-1"]).contains("number of seconds"));
        assert!(msg(&["--database-url=x", "--log-level", "loud"]).contains("loud"));
        assert!(msg(&["--database-url=x", "--admin-token", "s3cret"]).contains("API_AUTH_ADMIN_TOKEN"));
        assert!(msg(&["--database-url=x", "--admin-token=s3cret"]).contains("not accepted on the command line"));
        assert!(msg(&["--database-url=x", "--what"]).contains("--what"));
        assert!(msg(&["--database-url=x", "--pool-size"]).contains("--pool-size"));
        assert!(msg(&["--database-url=x", "--deprecation-link", "not a url"]).contains("--deprecation-link"));
        assert!(msg(&["--database-url=x", "--metrics-listen", "9464"]).contains("not an address"));
        assert!(msg(&["--database-url=x", "--no-metrics", "--metrics-listen", "127.0.0.1:9"]).contains("cannot be used with"));
        // The token never shows up in an error, even the one refusing it.
        assert!(!msg(&["--database-url=x", "--admin-token=s3cret"]).contains("s3cret"));
    }

    #[test]
    fn replica_urls_repeat_and_lists_split_but_key_value_strings_do_not() {
        let c = run(&[
            "--database-url=x",
            "--replica-database-url",
            "postgres://a/db postgresql://b/db",
            "--replica-database-url",
            "host=c port=5 dbname=db",
            "--max-replica-lag=0.25",
        ])
        .unwrap();
        assert_eq!(c.replica_database_urls, ["postgres://a/db", "postgresql://b/db", "host=c port=5 dbname=db"]);
        assert_eq!(c.max_replica_lag, Duration::from_millis(250));
        assert_eq!(c.replica_confirm_rate, 50);
        assert_eq!(c.replica_pool_size, 16);
        let c = run(&["--database-url=x", "--pool-size=4", "--replica-confirm-rate=0"]).unwrap();
        assert!(c.replica_database_urls.is_empty());
        assert_eq!((c.replica_confirm_rate, c.replica_pool_size), (0, 4));
        assert!(run(&["--database-url=x", "--max-replica-lag=0"]).is_err());
    }

    #[test]
    fn admin_token_from_env_and_same_admin_url_is_shared() {
        let args = Args::try_parse_from(["api-auth-shim", "--database-url=x", "--admin-database-url=x"]).unwrap();
        let c = Config::resolve(args, Some(" s3cret\n".into())).unwrap();
        assert_eq!(c.admin_token.as_deref(), Some("s3cret"));
        assert!(c.admin_database_url.is_none());
        let args = Args::try_parse_from(["api-auth-shim", "--database-url=x"]).unwrap();
        assert!(Config::resolve(args, Some("two words".into())).is_err());
    }
}
