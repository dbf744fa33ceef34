//! PostgreSQL access: connection pools with short timeouts, and the SQL the shim
//! sends (always through per-connection cached prepared statements).
//!
//! All the logic (authentication, grace windows, scope checks, token checks)
//! lives in the `api_auth` SQL functions; the statements below only call them.
//! Functions are called with positional arguments in the documented order, and
//! timestamps come back as ISO-8601 UTC text (`2024-05-01T12:00:00.000Z`, what
//! JavaScript's `Date#toJSON` produces).

use std::sync::LazyLock;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};

use crate::errors::{from_db, from_pool, ApiError};

/// The public pool and the admin pool (the same pool unless a separate admin
/// database URL was configured).
#[derive(Clone)]
pub struct Pools {
    pub public: Pool,
    pub admin: Pool,
}

impl Pools {
    /// Each distinct pool by name, as metrics report them: `public`, and
    /// `admin` when it is a pool of its own. Further pools (replicas) join
    /// this list under their configured names; metrics need no change.
    pub fn named(&self, separate_admin: bool) -> Vec<(&str, &Pool)> {
        let mut out = vec![("public", &self.public)];
        if separate_admin {
            out.push(("admin", &self.admin));
        }
        out
    }
}

/// Build a pool. Nothing connects yet: connections open on first use, so the
/// shim starts (and answers 503) while the database is down. TLS follows the
/// string's `sslmode`/`sslrootcert` (see [`crate::tls`]).
pub fn pool(url: &str, size: usize, db_timeout: Duration) -> Result<Pool, String> {
    let target = connect_target(url, db_timeout)?;
    tracing::debug!(tls = %target.describe(), "connection pool");
    let manager = Manager::from_config(target.config, target.tls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
    Pool::builder(manager)
        .max_size(size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(db_timeout))
        .create_timeout(Some(db_timeout))
        .recycle_timeout(Some(db_timeout))
        .build()
        .map_err(|e| format!("cannot build the connection pool: {e}"))
}

/// The connection settings of `url` as the shim uses them (timeouts,
/// keepalives, application name, statement timeout) and its TLS connector;
/// for pools and for the replica monitor's own connections.
pub fn connect_target(url: &str, db_timeout: Duration) -> Result<crate::tls::Target, String> {
    let mut target = crate::tls::target(url, &|k| std::env::var(k).ok())?;
    let cfg = &mut target.config;
    if cfg.get_connect_timeout().is_none() {
        cfg.connect_timeout(db_timeout);
    }
    cfg.keepalives(true);
    cfg.keepalives_idle(Duration::from_secs(30));
    if cfg.get_application_name().is_none() {
        cfg.application_name("api-auth-shim");
    }
    // A server-side bound on every statement, so a stuck query frees its
    // connection; kept above the client-side wait so the client times out first.
    let statement_timeout_ms = (db_timeout.as_millis() * 2).max(1000);
    let mut options = cfg.get_options().unwrap_or_default().to_string();
    if !options.contains("statement_timeout") {
        options.push_str(&format!(" -c statement_timeout={statement_timeout_ms}"));
    }
    // Every name in the statements below resolves to a built-in: functions,
    // operators and types are looked up in pg_catalog only, never in a schema
    // someone planted on the role's search_path (or in pg_temp, listed last so
    // that it is not searched first). Startup options outrank ALTER ROLE/DATABASE
    // SET; appended last, this one outranks the URL's own options too.
    options.push_str(" -c search_path=pg_catalog,pg_temp");
    cfg.options(options.trim_start());
    Ok(target)
}

/// A pooled connection, or 503.
pub async fn client(pool: &Pool) -> Result<deadpool_postgres::Client, ApiError> {
    pool.get().await.map_err(from_pool)
}

/// Prepare (cached per connection) and run `sql`, mapping failures to HTTP.
pub async fn query(
    client: &deadpool_postgres::Client,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    not_found: &str,
) -> Result<Vec<tokio_postgres::Row>, ApiError> {
    let stmt = client.prepare_cached(sql).await.map_err(|e| from_db(&e, not_found))?;
    client.query(&stmt, params).await.map_err(|e| from_db(&e, not_found))
}

/// Who the audit trail records as `actor` for admin routes (beside the
/// database user of the admin pool, which the trail records anyway).
pub const ADMIN_ACTOR: &str = "api-auth-shim admin token";

/// Like [`query`], for admin routes: in one transaction, first declare the
/// acting identity (`api_auth.audit_actor`, transaction-local), then run `sql`.
pub async fn admin_query(
    client: &mut deadpool_postgres::Client,
    route: &str,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    not_found: &str,
) -> Result<Vec<tokio_postgres::Row>, ApiError> {
    let tx = client.transaction().await.map_err(|e| from_db(&e, not_found))?;
    let actor = format!("{ADMIN_ACTOR} ({route})");
    let set = tx.prepare_cached(SET_ACTOR).await.map_err(|e| from_db(&e, not_found))?;
    tx.execute(&set, &[&actor]).await.map_err(|e| from_db(&e, not_found))?;
    let stmt = tx.prepare_cached(sql).await.map_err(|e| from_db(&e, not_found))?;
    let rows = tx.query(&stmt, params).await.map_err(|e| from_db(&e, not_found))?;
    tx.commit().await.map_err(|e| from_db(&e, not_found))?;
    Ok(rows)
}

const SET_ACTOR: &str = "SELECT pg_catalog.set_config('api_auth.audit_actor', $1::text, true)";

/// SQL that renders a timestamptz column as JavaScript's `toJSON()` form.
fn iso(col: &str) -> String {
    format!(r#"to_char({col} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')"#)
}

/// `$n` (text, ISO-8601) or `$m` (float8, epoch milliseconds) as a timestamptz;
/// both NULL gives NULL. Operands are of exact types (`float8 / float8`), so
/// no implicit cast opens the door to a look-alike operator.
fn timestamp_param(text: u8, millis: u8) -> String {
    format!(
        "(CASE WHEN ${millis}::float8 IS NOT NULL THEN to_timestamp(${millis}::float8 / 1000::float8) \
         ELSE ${text}::text::timestamptz END)"
    )
}

/// The end of a grace window, as ISO-8601 text and as Unix seconds (float8).
fn grace_columns(col: &str) -> String {
    format!("{}, extract(epoch FROM {col})::float8", iso(col))
}

pub static FIND_ENVIRONMENT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT id, type, matched_by, revoked_api_key_id, project_id, organization_id, branch_name, {} \
         FROM api_auth.find_environment_by_api_key($1::text, $2::text)",
        grace_columns("grace_expires_at")
    )
});

/// Mint, and in the same statement look the key up once more for what
/// `mint_public_jwt` does not say: whether the key is in grace (the answer
/// then carries the grace-window signals) and until when.
pub static MINT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT m.token, f.matched_by, f.revoked_api_key_id, f.id, {} \
         FROM api_auth.mint_public_jwt($1::text, $2::jsonb, $3::text, $4::text) AS m(token) \
         LEFT JOIN LATERAL (SELECT * FROM api_auth.find_environment_by_api_key($1::text, $4::text) LIMIT 1) f ON true",
        grace_columns("f.grace_expires_at")
    )
});

/// `grace_expires_at` (extension 0.4.0): when the key in grace that verified
/// the token stops working.
pub static VALIDATE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT ok, error, environment_id, environment_type, claims, matched_by, revoked_api_key_id, {} \
         FROM api_auth.validate_public_jwt($1::text)",
        grace_columns("grace_expires_at")
    )
});

/// Columns of a session row, in [`crate::sessions::session_json`]'s order.
fn session_columns() -> String {
    format!(
        "s.id, s.environment_id, s.external_id, s.type, s.task_identifier, s.trigger_config, s.tags, s.metadata, \
         {}, {}, {}, {}, s.is_cached, s.public_access_token",
        iso("s.closed_at"),
        iso("s.expires_at"),
        iso("s.created_at"),
        iso("s.updated_at")
    )
}

/// Sessions go through the caller's credential ($1) and branch ($2): the
/// extension resolves the environment and checks the token's scopes itself.
pub static CREATE_SESSION: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {} FROM api_auth.create_session_as($1::text, $3::text, \
         $4::text, $5::jsonb, $6::text, \
         $7::text[], $8::jsonb, {}, $2::text) s",
        session_columns(),
        timestamp_param(9, 10)
    )
});

pub static GET_SESSION: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {} FROM api_auth.get_session_as($1::text, $3::text, $2::text) s", session_columns()));

pub static SET_REVOKED_EXPIRY: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT r.id, r.runtime_environment_id, {} FROM api_auth.set_revoked_expiry(\
         $1::text, {}) r",
        iso("r.expires_at"),
        timestamp_param(2, 3)
    )
});

pub static ROTATE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT r.api_key, r.pk_api_key, r.revoked_api_key_id, {} FROM api_auth.rotate_api_key(\
         $1::text, make_interval(secs => $2::float8)) r",
        iso("r.expires_at")
    )
});

pub static ROTATE_DEFAULT_GRACE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT r.api_key, r.pk_api_key, r.revoked_api_key_id, {} FROM api_auth.rotate_api_key($1::text) r",
        iso("r.expires_at")
    )
});

pub static CREATE_ENVIRONMENT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT e.id, e.slug, e.type, e.api_key, e.pk_api_key, e.parent_environment_id, e.branch_name, \
         e.project_id, e.organization_id, {}, {}, {} FROM api_auth.create_environment($1::text, \
         $2::text, $3::text, $4::text, \
         $5::text, $6::text) e",
        iso("e.archived_at"),
        iso("e.created_at"),
        iso("e.updated_at")
    )
});

pub const READY: &str = "SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'api_auth'";

pub const FLOOR: &str = "SELECT 1";
