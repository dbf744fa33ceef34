//! Rotation and grace windows (SPEC §3): `rotate_api_key` archives the old key
//! into `revoked_api_key` with an expiry and issues new keys, in one
//! transaction; `set_revoked_expiry` moves a grace window's end;
//! `purge_expired_revoked_keys` removes long-dead rows.
//!
//! Concurrent rotations of one environment serialise on the environment's row
//! lock (`FOR UPDATE`): the second waits, then re-reads the key the first wrote,
//! so every key ever issued is either current or in `revoked_api_key`.

use api_auth_core::keys::{self, EnvironmentType};
use pgrx::prelude::*;

use crate::errors::{required_text, ApiAuthError, OrReport, Result};
use crate::keys::MAX_NAME_LEN;
use crate::plan;
use crate::settings;

// Locks the environment and resolves the grace window once: the argument, or
// the api_auth.rotation_grace_period setting; ROTATE then uses its end as is.
// The window's end is compared, not the interval: '1 mon -29 days' is not
// "negative" as an interval, yet can end before now.
plan!(
    LOCK_ENVIRONMENT,
    true,
    [TEXTOID, INTERVALOID, FLOAT8OID],
    "SELECT e.type, e.parent_environment_id IS NOT NULL, e.archived_at IS NOT NULL, \
            pg_catalog.now() + g.grace < pg_catalog.now(), pg_catalog.now() + g.grace \
     FROM api_auth.runtime_environment e, \
          LATERAL (SELECT coalesce($2, pg_catalog.make_interval(secs => $3)) AS grace) g \
     WHERE e.id = $1 FOR UPDATE OF e"
);

plan!(
    ROTATE,
    true,
    [TEXTOID, TEXTOID, TEXTOID, TEXTOID, TIMESTAMPTZOID],
    "WITH old AS ( \
        SELECT api_key FROM api_auth.runtime_environment WHERE id = $2 \
     ), revoked AS ( \
        INSERT INTO api_auth.revoked_api_key (id, api_key, runtime_environment_id, expires_at) \
        SELECT $1, old.api_key, $2, $5 \
        FROM old \
        RETURNING id, expires_at \
     ), rotated AS ( \
        UPDATE api_auth.runtime_environment \
        SET api_key = $3, pk_api_key = $4, updated_at = pg_catalog.now() WHERE id = $2 \
     ) \
     SELECT id FROM revoked"
);

plan!(
    SET_EXPIRY,
    true,
    [TEXTOID, TIMESTAMPTZOID],
    "UPDATE api_auth.revoked_api_key SET expires_at = $2 WHERE id = $1 \
     RETURNING id, runtime_environment_id, expires_at, created_at"
);

// One summary event per purge, beside the per-row `revoked_key_deleted` events
// the audit trigger writes.
plan!(
    PURGE,
    true,
    [INTERVALOID],
    "WITH gone AS ( \
        DELETE FROM api_auth.revoked_api_key WHERE expires_at < pg_catalog.now() - $1 RETURNING 1 \
     ), counted AS (SELECT pg_catalog.count(*) AS n FROM gone), \
     logged AS ( \
        INSERT INTO api_auth.audit_event (action, actor, detail) \
        SELECT 'revoked_keys_purged', \
               nullif(pg_catalog.current_setting('api_auth.audit_actor', true), ''), \
               pg_catalog.jsonb_build_object('removed', n, 'older_than', $1::text) \
        FROM counted \
     ) SELECT n FROM counted"
);

// The purge's cutoff must not lie ahead (compared as times, like the grace window).
plan!(CUTS_INTO_FUTURE, false, [INTERVALOID], "SELECT pg_catalog.now() - $1 > pg_catalog.now()");

type RotationRow = (String, String, String, TimestampWithTimeZone);

fn rotate(environment_id: Option<&str>, grace: Option<Interval>) -> Result<RotationRow> {
    let environment_id = required_text("environment_id", environment_id, MAX_NAME_LEN)?;
    let default_grace = settings::rotation_grace_seconds();
    Spi::connect(|client| {
        let rows = LOCK_ENVIRONMENT.run(client, &[environment_id.into(), grace.into(), default_grace.into()])?;
        let row = rows
            .into_iter()
            .next()
            .ok_or_else(|| ApiAuthError::NotFound(format!("environment \"{environment_id}\" not found")))?;
        let kind: Option<String> = row.get(1)?;
        if row.get::<bool>(2)? == Some(true) {
            return Err(ApiAuthError::WrongState(format!(
                "environment \"{environment_id}\" is a preview branch with no key of its own: rotate its parent"
            )));
        }
        if row.get::<bool>(3)? == Some(true) {
            return Err(ApiAuthError::WrongState(format!("environment \"{environment_id}\" is archived")));
        }
        if row.get::<bool>(4)? == Some(true) {
            return Err(ApiAuthError::invalid("grace must not be negative (its end would lie before now)"));
        }
        let expires_at: TimestampWithTimeZone =
            row.get(5)?.ok_or_else(|| ApiAuthError::Internal("grace window has no end".into()))?;
        let kind: EnvironmentType = kind
            .as_deref()
            .and_then(|k| k.parse().ok())
            .ok_or_else(|| ApiAuthError::Internal("environment has an unknown type".into()))?;
        let api_key = keys::generate_secret_key(kind)?;
        let pk_api_key = keys::generate_publishable_key(kind)?;
        let revoked_id = keys::generate_id("rak")?;
        let rows = ROTATE.run(
            client,
            &[
                revoked_id.as_str().into(),
                environment_id.into(),
                api_key.as_str().into(),
                pk_api_key.as_str().into(),
                expires_at.into(),
            ],
        )?;
        if rows.is_empty() {
            return Err(ApiAuthError::Internal("rotation wrote no grace row".into()));
        }
        Ok((api_key, pk_api_key, revoked_id, expires_at))
    })
}

/// Give an environment a new secret and publishable key. The old secret key
/// keeps working until `now() + grace` (default: `api_auth.rotation_grace_period`).
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn rotate_api_key(
    environment_id: Option<&str>,
    grace: default!(Option<Interval>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(api_key, String),
        name!(pk_api_key, String),
        name!(revoked_api_key_id, String),
        name!(expires_at, TimestampWithTimeZone),
    ),
> {
    TableIterator::once(rotate(environment_id, grace).or_report())
}

type RevokedRow = (String, String, TimestampWithTimeZone, TimestampWithTimeZone);

fn set_expiry(id: Option<&str>, expires_at: Option<TimestampWithTimeZone>) -> Result<RevokedRow> {
    let id = required_text("revoked_api_key_id", id, MAX_NAME_LEN)?;
    let expires_at = expires_at.ok_or(ApiAuthError::NullArgument("expires_at"))?;
    if expires_at.is_infinity() || expires_at.is_neg_infinity() {
        return Err(ApiAuthError::invalid("expires_at must be a finite time"));
    }
    Spi::connect(|client| {
        let rows = SET_EXPIRY.run(client, &[id.into(), expires_at.into()])?;
        let row = rows.into_iter().next().ok_or_else(|| ApiAuthError::NotFound(format!("revoked API key \"{id}\" not found")))?;
        let missing = || ApiAuthError::Internal("revoked_api_key row has NULL columns".into());
        Ok((
            row.get(1)?.ok_or_else(missing)?,
            row.get(2)?.ok_or_else(missing)?,
            row.get(3)?.ok_or_else(missing)?,
            row.get(4)?.ok_or_else(missing)?,
        ))
    })
}

/// Move the end of one grace window. `now()` ends it at once; a later time
/// extends it, and brings back a key that had already expired until then.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn set_revoked_expiry(
    revoked_api_key_id: Option<&str>,
    expires_at: Option<TimestampWithTimeZone>,
) -> TableIterator<
    'static,
    (
        name!(id, String),
        name!(runtime_environment_id, String),
        name!(expires_at, TimestampWithTimeZone),
        name!(created_at, TimestampWithTimeZone),
    ),
> {
    TableIterator::once(set_expiry(revoked_api_key_id, expires_at).or_report())
}

fn purge(older_than: Option<Interval>) -> Result<i64> {
    let older_than = older_than.ok_or(ApiAuthError::NullArgument("older_than"))?;
    Spi::connect(|client| {
        let negative = CUTS_INTO_FUTURE.run(client, &[older_than.into()])?.first().get_one::<bool>()?;
        if negative == Some(true) {
            return Err(ApiAuthError::invalid("older_than must not be negative (the cutoff would lie ahead of now)"));
        }
        Ok(PURGE.run(client, &[older_than.into()])?.first().get_one::<i64>()?.unwrap_or(0))
    })
}

/// Delete `revoked_api_key` rows whose grace window ended more than
/// `older_than` ago; returns how many were removed. Keys in grace are never touched.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn purge_expired_revoked_keys(older_than: default!(Option<Interval>, "'7 days'")) -> i64 {
    purge(older_than).or_report()
}
