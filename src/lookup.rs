//! Find environment by API key (SPEC §3): the two-step lookup.
//!
//! 1. Primary: the unique index on `runtime_environment.api_key`. The hot path.
//! 2. Only on a miss: the grace fallback, a `revoked_api_key` row with that key
//!    whose `expires_at` is still ahead, and its (live) environment.
//!
//! Two probes, not an OR-join, so a current key costs one index probe and the
//! fallback's cost falls only on keys that miss. A `PREVIEW` parent key then
//! resolves to the requested branch, with the parent's current key merged.
//! Every step is a direct index probe ([`probe`]): no SQL, no executor.

use std::ffi::CStr;
use std::ops::ControlFlow;

use api_auth_core::keys::MAX_KEY_LEN;
use pgrx::prelude::*;

use crate::errors::{OrReport, Result};
use crate::probe::{self, Index, Key, Row};

/// Longest branch name considered (the column allows 256).
pub const MAX_BRANCH_LEN: usize = 256;

/// How a key matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchedBy {
    Current,
    Grace,
}

impl MatchedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Current => "current",
            Self::Grace => "grace",
        }
    }
}

/// An authenticated environment, as the lookup returns it.
#[derive(Debug)]
pub struct Environment {
    pub id: String,
    pub slug: String,
    pub kind: String,
    /// The canonical current secret key: the parent's for a preview branch
    /// (empty for a branch row read on its own: branches have no keys).
    pub api_key: String,
    pub pk_api_key: Option<String>,
    pub parent_environment_id: Option<String>,
    pub branch_name: Option<String>,
    pub project_id: Option<String>,
    pub organization_id: Option<String>,
    pub matched_by: MatchedBy,
    pub revoked_api_key_id: Option<String>,
    pub grace_expires_at: Option<TimestampWithTimeZone>,
}

/// The `runtime_environment` columns an [`Environment`] is read from.
static ENVIRONMENT_COLUMNS: [&CStr; 10] = [
    c"id",
    c"slug",
    c"type",
    c"api_key",
    c"pk_api_key",
    c"parent_environment_id",
    c"branch_name",
    c"project_id",
    c"organization_id",
    c"archived_at",
];

impl Environment {
    /// A row read with [`ENVIRONMENT_COLUMNS`]; `None` if it is archived.
    fn live(row: &Row<'_>) -> Option<Self> {
        if !row.is_null(9) {
            return None;
        }
        Some(Environment {
            id: row.text(0).unwrap_or_default(),
            slug: row.text(1).unwrap_or_default(),
            kind: row.text(2).unwrap_or_default(),
            api_key: row.text(3).unwrap_or_default(),
            pk_api_key: row.text(4),
            parent_environment_id: row.text(5),
            branch_name: row.text(6),
            project_id: row.text(7),
            organization_id: row.text(8),
            matched_by: MatchedBy::Current,
            revoked_api_key_id: None,
            grace_expires_at: None,
        })
    }
}

/// The live environment found through `index` by `keys` (a unique index).
fn live_environment(index: &'static Index, keys: &[Key<'_>]) -> Result<Option<Environment>> {
    index.scan(keys, &ENVIRONMENT_COLUMNS, |row| match Environment::live(&row) {
        Some(env) => ControlFlow::Break(env),
        None => ControlFlow::Continue(()),
    })
}

/// The live environment with primary key `id`.
pub fn environment_by_id(id: &str) -> Result<Option<Environment>> {
    live_environment(&probe::ENVIRONMENT_BY_ID, &[Key::Equals(id)])
}

/// The grace fallback for secret keys: of the `revoked_api_key` rows holding
/// `api_key` whose window is still open, the one ending last whose environment
/// is live (a key is revoked once, so this is almost always one row).
fn grace(api_key: &str) -> Result<Option<Environment>> {
    let now = probe::now();
    let mut windows: Vec<(TimestampWithTimeZone, String, String)> = Vec::new();
    probe::REVOKED_BY_API_KEY.scan(&[Key::Equals(api_key)], &[c"expires_at", c"id", c"runtime_environment_id"], |row| {
        if let (Some(expires_at), Some(id), Some(env_id)) = (row.timestamp(0), row.text(1), row.text(2)) {
            if pg_sys::TimestampTz::from(expires_at) > now {
                windows.push((expires_at, id, env_id));
            }
        }
        ControlFlow::<()>::Continue(())
    })?;
    windows.sort_by_key(|w| std::cmp::Reverse(pg_sys::TimestampTz::from(w.0)));
    for (expires_at, id, env_id) in windows {
        if let Some(env) = environment_by_id(&env_id)? {
            return Ok(Some(Environment {
                matched_by: MatchedBy::Grace,
                revoked_api_key_id: Some(id),
                grace_expires_at: Some(expires_at),
                ..env
            }));
        }
    }
    Ok(None)
}

/// The lookup itself, for every caller inside the extension (mint uses it too).
/// Garbage in (empty, oversized) finds nothing without touching an index.
pub fn find(api_key: &str, branch_name: Option<&str>) -> Result<Option<Environment>> {
    if api_key.is_empty() || api_key.len() > MAX_KEY_LEN {
        return Ok(None);
    }
    let env = match live_environment(&probe::ENVIRONMENT_BY_API_KEY, &[Key::Equals(api_key)])? {
        Some(env) => env,
        None => match grace(api_key)? {
            Some(env) => env,
            None => return Ok(None),
        },
    };
    if env.kind != "PREVIEW" {
        return Ok(Some(env));
    }
    // A PREVIEW parent authenticates only together with one of its live
    // branches: the branch, with the parent's current key and match merged.
    let branch = match branch_name {
        Some(b) if !b.is_empty() && b.len() <= MAX_BRANCH_LEN => b,
        _ => return Ok(None),
    };
    let Some(child) = live_environment(&probe::BRANCH_BY_NAME, &[Key::Equals(&env.id), Key::Equals(branch)])? else {
        return Ok(None);
    };
    Ok(Some(Environment {
        api_key: env.api_key,
        pk_api_key: env.pk_api_key,
        matched_by: env.matched_by,
        revoked_api_key_id: env.revoked_api_key_id,
        grace_expires_at: env.grace_expires_at,
        ..child
    }))
}

/// Is the role calling us (outside SECURITY DEFINER) a superuser or a member of `api_auth_admin`?
fn caller_is_admin() -> bool {
    // SAFETY: plain catalog look-ups on the current backend's role state.
    unsafe {
        let caller = pg_sys::GetOuterUserId();
        if pg_sys::superuser_arg(caller) {
            return true;
        }
        let admin = pg_sys::get_role_oid(c"api_auth_admin".as_ptr(), true);
        admin != pg_sys::InvalidOid && pg_sys::has_privs_of_role(caller, admin)
    }
}

/// Find the environment a secret key authenticates (current key, or a key
/// still in its grace window). Zero rows when it authenticates nothing,
/// including NULL, empty or oversized keys.
///
/// Declared by hand for two hot-path reasons: it returns the named type
/// `api_auth.environment_match` (sql/schema.sql), whose row descriptor comes
/// from the type cache, where RETURNS TABLE makes PostgreSQL rebuild one from
/// pg_proc at every call; and it has no `SET search_path`, whose per-call GUC
/// save and restore cost about a quarter of a lookup. It needs none: it runs
/// no SQL, and its index probes resolve no name through search_path (tests/security.rs
/// runs it under a hostile one). The columns below must match the type.
#[pg_extern(sql = "
CREATE FUNCTION api_auth.find_environment_by_api_key(api_key text, branch_name text DEFAULT NULL)
RETURNS SETOF api_auth.environment_match
STABLE PARALLEL SAFE SECURITY DEFINER ROWS 1
LANGUAGE c AS '@MODULE_PATHNAME@', 'find_environment_by_api_key_wrapper';
")]
fn find_environment_by_api_key(
    api_key: Option<&str>,
    branch_name: default!(Option<&str>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(id, String),
        name!(slug, String),
        name!(type, String),
        name!(api_key, Option<String>),
        name!(pk_api_key, Option<String>),
        name!(parent_environment_id, Option<String>),
        name!(branch_name, Option<String>),
        name!(project_id, Option<String>),
        name!(organization_id, Option<String>),
        name!(matched_by, String),
        name!(revoked_api_key_id, Option<String>),
        name!(grace_expires_at, Option<TimestampWithTimeZone>),
    ),
> {
    let Some(api_key) = api_key else { return TableIterator::new(None) };
    let env = find(api_key, branch_name).or_report();
    TableIterator::new(env.map(|e| {
        (
            e.id,
            e.slug,
            e.kind,
            // A key in grace (perhaps rotated because it leaked) must never
            // reveal its successor: only admins see the canonical key then.
            (e.matched_by == MatchedBy::Current || caller_is_admin()).then_some(e.api_key),
            e.pk_api_key,
            e.parent_environment_id,
            e.branch_name,
            e.project_id,
            e.organization_id,
            e.matched_by.as_str().to_owned(),
            e.revoked_api_key_id,
            e.grace_expires_at,
        )
    }))
}
