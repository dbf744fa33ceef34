//! Test harness: every suite talks to a real PostgreSQL with the real
//! extension installed. `scripts/test.sh` starts a private cluster and exports
//! `API_AUTH_TEST_DSN` (a libpq key=value string for a superuser); each test
//! gets a database of its own, so tests run in parallel without seeing each other.

use std::sync::atomic::{AtomicUsize, Ordering};

pub use postgres::{Client, NoTls};

/// The superuser DSN of the test cluster.
pub fn admin_dsn() -> String {
    std::env::var("API_AUTH_TEST_DSN")
        .expect("API_AUTH_TEST_DSN is not set: run the suites through scripts/test.sh, which starts the test cluster")
}

/// The folder of the PostgreSQL client and server programs (`pg_dump`,
/// `pg_restore`, `psql`, ...) matching the test cluster: `API_AUTH_PG_BINDIR`,
/// else Debian's PostgreSQL 15.
pub fn pg_bindir() -> std::path::PathBuf {
    std::env::var_os("API_AUTH_PG_BINDIR").map(Into::into).unwrap_or_else(|| "/usr/lib/postgresql/15/bin".into())
}

/// The major version of the test cluster's server (14, 15, ... 18).
pub fn server_major(db: &mut Client) -> i32 {
    let num: String = db.query_one("SHOW server_version_num", &[]).expect("server_version_num").get(0);
    num.parse::<i32>().expect("server_version_num is a number") / 10000
}

/// Replace (or add) `dbname=` in a key=value DSN.
pub fn with_dbname(dsn: &str, db: &str) -> String {
    let mut parts: Vec<String> = dsn.split_whitespace().filter(|p| !p.starts_with("dbname=")).map(str::to_owned).collect();
    parts.push(format!("dbname={db}"));
    parts.join(" ")
}

/// Replace (or add) `user=` in a key=value DSN.
pub fn with_user(dsn: &str, user: &str) -> String {
    let mut parts: Vec<String> = dsn.split_whitespace().filter(|p| !p.starts_with("user=")).map(str::to_owned).collect();
    parts.push(format!("user={user}"));
    parts.join(" ")
}

/// Create a new database with `CREATE EXTENSION api_auth` and return its DSN.
pub fn fresh_database(prefix: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let name = format!(
        "{}_{}_{}",
        prefix.to_ascii_lowercase().replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    );
    let mut admin = Client::connect(&admin_dsn(), NoTls).expect("connect to the test cluster");
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name}")).expect("drop database");
    admin.batch_execute(&format!("CREATE DATABASE {name}")).expect("create database");
    let dsn = with_dbname(&admin_dsn(), &name);
    connect(&dsn).batch_execute("CREATE EXTENSION api_auth").expect("CREATE EXTENSION api_auth");
    dsn
}

pub fn connect(dsn: &str) -> Client {
    Client::connect(dsn, NoTls).expect("connect")
}

/// A fresh database and a connection to it.
pub fn fresh(prefix: &str) -> (String, Client) {
    let dsn = fresh_database(prefix);
    let client = connect(&dsn);
    (dsn, client)
}

/// A new environment: (id, api_key).
pub fn create_environment(db: &mut Client, slug: &str, kind: &str) -> (String, String) {
    let row = db
        .query_one("SELECT id, api_key FROM api_auth.create_environment($1, $2, 'proj_1', 'org_1')", &[&slug, &kind])
        .expect("create_environment");
    (row.get(0), row.get(1))
}

/// Rotate; returns (new api_key, revoked_api_key_id).
pub fn rotate(db: &mut Client, env_id: &str) -> (String, String) {
    let row =
        db.query_one("SELECT api_key, revoked_api_key_id FROM api_auth.rotate_api_key($1)", &[&env_id]).expect("rotate_api_key");
    (row.get(0), row.get(1))
}

/// What the lookup says of a key: Some((environment id, matched_by)) or None.
pub fn lookup(db: &mut Client, key: &str, branch: Option<&str>) -> Option<(String, String)> {
    let rows = db
        .query("SELECT id, matched_by FROM api_auth.find_environment_by_api_key($1, $2)", &[&key, &branch])
        .expect("find_environment_by_api_key");
    assert!(rows.len() <= 1, "lookup returned {} rows", rows.len());
    rows.first().map(|r| (r.get(0), r.get(1)))
}

/// Set a grace row's expiry to a SQL expression such as `now()` or `now() + interval '1 hour'`.
pub fn set_expiry(db: &mut Client, revoked_id: &str, sql_time: &str) {
    db.execute(&format!("SELECT * FROM api_auth.set_revoked_expiry($1, {sql_time})"), &[&revoked_id])
        .expect("set_revoked_expiry");
}

/// The SQLSTATE code of a failed statement, e.g. "P0002".
pub fn sqlstate(err: &postgres::Error) -> String {
    err.code().map(|c| c.code().to_owned()).unwrap_or_else(|| format!("no SQLSTATE: {err}"))
}

/// The server's full message of a failed statement (message, detail, hint).
pub fn db_message(err: &postgres::Error) -> String {
    match err.as_db_error() {
        Some(d) => format!("{} {} {}", d.message(), d.detail().unwrap_or(""), d.hint().unwrap_or("")),
        None => err.to_string(),
    }
}

/// Decode a JWT part (header = 0, payload = 1) to JSON without verifying it.
pub fn jwt_part(token: &str, index: usize) -> serde_json::Value {
    use base64::Engine;
    let part = token.split('.').nth(index).expect("JWT part");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON")
}

/// Base64url HMAC of `input` with `key`: SHA-256 for HS256, SHA-512 for HS512.
/// Written here, independently of the extension's own code.
pub fn hmac_b64(alg: &str, input: &str, key: &str) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let sig = if alg == "HS512" {
        let mut mac = Hmac::<sha2::Sha512>::new_from_slice(key.as_bytes()).expect("hmac key");
        mac.update(input.as_bytes());
        mac.finalize().into_bytes().to_vec()
    } else {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).expect("hmac key");
        mac.update(input.as_bytes());
        mac.finalize().into_bytes().to_vec()
    };
    B64.encode(sig)
}

/// Build a JWT by hand, signed per its header's `alg` (HS512, else HS256).
pub fn sign_jwt(header: &serde_json::Value, claims: &serde_json::Value, key: &str) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use base64::Engine;
    let input = format!("{}.{}", B64.encode(header.to_string()), B64.encode(claims.to_string()));
    let sig = hmac_b64(header["alg"].as_str().unwrap_or("HS256"), &input, key);
    format!("{input}.{sig}")
}

/// True when `token`'s HS256 signature was made with `key`.
pub fn signed_with(token: &str, key: &str) -> bool {
    let (input, sig) = token.rsplit_once('.').expect("JWT");
    hmac_b64("HS256", input, key) == sig
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64
}

/// Claims of a well-formed public token for `sub`, expiring in 15 minutes.
pub fn public_claims(sub: &str) -> serde_json::Value {
    serde_json::json!({
        "sub": sub, "pub": true, "iss": "https://id.trigger.dev", "aud": "https://api.trigger.dev",
        "iat": now(), "exp": now() + 900, "scopes": ["read:runs"]
    })
}

/// `validate_public_jwt(token)` as (ok, error, environment_id, matched_by, revoked_api_key_id).
pub fn validate(db: &mut Client, token: &str) -> (bool, Option<String>, Option<String>, Option<String>, Option<String>) {
    let r = db
        .query_one(
            "SELECT ok, error, environment_id, matched_by, revoked_api_key_id FROM api_auth.validate_public_jwt($1)",
            &[&token],
        )
        .expect("validate_public_jwt");
    (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4))
}

/// A cluster of a test's own (started with `scripts/cluster.sh`), for tests that
/// stop and restart the database and so must not share the suite's cluster.
pub struct PrivateCluster {
    pub home: std::path::PathBuf,
    pub port: u16,
    pub db: String,
}

/// Percent-encode a value for a URL query (`sslrootcert=/var/tmp/x%20y/ca.crt`).
pub fn url_encode(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// A free TCP port on 127.0.0.1 (for a server of a test's own).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port()
}

impl PrivateCluster {
    pub fn start(name: &str) -> PrivateCluster {
        let home = std::path::PathBuf::from(format!("/var/tmp/api_auth-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&home);
        let cluster = PrivateCluster { home, port: free_port(), db: name.to_owned() };
        cluster.run("start");
        cluster
    }

    fn run(&self, action: &str) {
        self.run_with(action, &[]);
    }

    fn run_with(&self, action: &str, env: &[(&str, String)]) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/cluster.sh");
        let status = std::process::Command::new("bash")
            .arg(script)
            .arg(action)
            .env("API_AUTH_HOME", &self.home)
            .env("API_AUTH_PGPORT", self.port.to_string())
            .env("API_AUTH_DB", &self.db)
            .env("API_AUTH_FAST", "1")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .status()
            .expect("run scripts/cluster.sh");
        assert!(status.success(), "cluster.sh {action} failed");
    }

    /// A streaming hot standby of this cluster (`pg_basebackup -R`, its own
    /// data folder and port), started and ready for read-only queries.
    /// Settings to replicate (e.g. `track_functions`) must be set before.
    pub fn start_standby(&self) -> Standby<'_> {
        let standby = Standby { primary: self, home: self.home.join("standby"), port: free_port() };
        standby.run("standby-start");
        standby
    }

    /// A superuser connection over the cluster's socket.
    pub fn connect(&self) -> Client {
        connect(&self.dsn())
    }

    pub fn stop(&self) {
        self.run("stop");
    }

    pub fn restart(&self) {
        self.run("start");
    }

    /// libpq key=value DSN over the cluster's socket.
    pub fn dsn(&self) -> String {
        format!("host={}/run port={} user=postgres dbname={}", self.home.display(), self.port, self.db)
    }

    /// URL over TCP loopback.
    pub fn url(&self) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/{}", self.port, self.db)
    }
}

/// A hot standby of a [`PrivateCluster`]; stopped on drop.
pub struct Standby<'a> {
    primary: &'a PrivateCluster,
    pub home: std::path::PathBuf,
    pub port: u16,
}

impl Standby<'_> {
    fn run(&self, action: &str) {
        self.primary.run_with(
            action,
            &[("API_AUTH_STANDBY_HOME", self.home.display().to_string()), ("API_AUTH_STANDBY_PGPORT", self.port.to_string())],
        );
    }

    pub fn stop(&self) {
        self.run("standby-stop");
    }

    pub fn start(&self) {
        self.run("standby-start");
    }

    pub fn dsn(&self) -> String {
        format!("host={}/run port={} user=postgres dbname={}", self.home.display(), self.port, self.primary.db)
    }

    pub fn url(&self) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/{}", self.port, self.primary.db)
    }

    pub fn connect(&self) -> Client {
        connect(&self.dsn())
    }

    /// Wait until the standby has replayed everything the primary has flushed
    /// now; panics after `within`.
    pub fn wait_caught_up(&self, within: std::time::Duration) {
        let target: String =
            self.primary.connect().query_one("SELECT pg_current_wal_flush_lsn()::text", &[]).expect("primary LSN").get(0);
        let mut standby = self.connect();
        let start = std::time::Instant::now();
        loop {
            let done: bool =
                standby.query_one("SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn", &[&target]).expect("replay LSN").get(0);
            if done {
                return;
            }
            assert!(start.elapsed() < within, "the standby did not replay up to {target} within {within:?}");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

impl Drop for Standby<'_> {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        self.run("stop");
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

/// What a database's api_auth tables hold, as text, table by table (ordered by
/// key). Equal snapshots mean equal data, timestamps to the microsecond included:
/// what a backup (tests/backup.rs) or a pg_upgrade (tests/pg_upgrade.rs) must keep.
pub fn snapshot(db: &mut Client) -> Vec<String> {
    let mut out = Vec::new();
    for (table, order) in [("runtime_environment", "id"), ("revoked_api_key", "id"), ("session", "id"), ("audit_event", "id")] {
        let rows = db
            .query(&format!("SELECT t::text FROM api_auth.{table} t ORDER BY {order}"), &[])
            .unwrap_or_else(|e| panic!("read {table}: {e}"));
        out.extend(rows.iter().map(|r| format!("{table}: {}", r.get::<_, String>(0))));
    }
    out
}
