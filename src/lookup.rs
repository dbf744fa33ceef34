//! Find environment by API key (SPEC §3): the two-step lookup.
//!
//! 1. Primary: the unique index on `runtime_environment.api_key`. The hot path.
//! 2. Only on a miss: the grace fallback, a `revoked_api_key` row with that key
//!    whose `expires_at` is still ahead.
//!
//! Two statements, not an OR-join, so a current key costs one index probe and
//! the fallback's cost falls only on keys that miss. A `PREVIEW` parent key
//! then resolves to the requested branch, with the parent's current key merged.

use api_auth_core::keys::MAX_KEY_LEN;
use pgrx::prelude::*;
use pgrx::spi::{SpiClient, SpiTupleTable};

use crate::errors::{OrReport, Result};
use crate::plan;
use crate::probe::{self, EnvironmentRow};

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
    /// The canonical current secret key: the parent's for a preview branch.
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

/// The environment columns every lookup statement selects, in
/// [`probe::ENVIRONMENT_COLUMNS`] order.
macro_rules! env_columns {
    () => {
        "e.id, e.slug, e.type, e.api_key, e.pk_api_key, \
         e.parent_environment_id, e.branch_name, e.project_id, e.organization_id"
    };
}

// The primary step is a direct probe of the api_key index (probe::BY_API_KEY):
// no plan, no executor. Every statement below runs only after it missed.

// Operators are schema-qualified: these run under the caller's search_path.
plan!(GRACE, false, [TEXTOID], concat!(
    "SELECT ", env_columns!(), ", r.id, r.expires_at \
     FROM api_auth.revoked_api_key r \
     JOIN api_auth.runtime_environment e ON e.id OPERATOR(pg_catalog.=) r.runtime_environment_id \
     WHERE r.api_key OPERATOR(pg_catalog.=) $1 \
       AND r.expires_at OPERATOR(pg_catalog.>) pg_catalog.now() AND e.archived_at IS NULL \
     ORDER BY r.expires_at DESC LIMIT 1"));

plan!(BRANCH, false, [TEXTOID, TEXTOID], concat!(
    "SELECT ", env_columns!(), " FROM api_auth.runtime_environment e \
     WHERE e.parent_environment_id OPERATOR(pg_catalog.=) $1 \
       AND e.branch_name OPERATOR(pg_catalog.=) $2 AND e.archived_at IS NULL"));

impl Environment {
    fn new(row: EnvironmentRow, matched_by: MatchedBy) -> Self {
        let [id, slug, kind, api_key, pk_api_key, parent_environment_id, branch_name, project_id, organization_id] =
            row;
        Environment {
            id: id.unwrap_or_default(),
            slug: slug.unwrap_or_default(),
            kind: kind.unwrap_or_default(),
            api_key: api_key.unwrap_or_default(),
            pk_api_key,
            parent_environment_id,
            branch_name,
            project_id,
            organization_id,
            matched_by,
            revoked_api_key_id: None,
            grace_expires_at: None,
        }
    }
}

/// The first row of a statement selecting `env_columns!()` (plus, for a grace
/// hit, the revoked row's id and expires_at).
fn environment_from(rows: SpiTupleTable<'_>, matched_by: MatchedBy) -> Result<Option<Environment>> {
    let Some(row) = rows.into_iter().next() else { return Ok(None) };
    let mut columns = EnvironmentRow::default();
    for (i, value) in columns.iter_mut().enumerate() {
        *value = row.get(i + 1)?;
    }
    let mut env = Environment::new(columns, matched_by);
    if matched_by == MatchedBy::Grace {
        env.revoked_api_key_id = row.get(10)?;
        env.grace_expires_at = row.get(11)?;
    }
    Ok(Some(env))
}

/// The lookup itself, for every caller inside the extension (mint uses it too).
/// Garbage in (empty, oversized) finds nothing without touching an index.
/// A current, non-PREVIEW key costs one index probe and no SPI at all.
pub fn find(api_key: &str, branch_name: Option<&str>) -> Result<Option<Environment>> {
    if api_key.is_empty() || api_key.len() > MAX_KEY_LEN {
        return Ok(None);
    }
    let primary = probe::BY_API_KEY.live_environment(api_key)?.map(|row| Environment::new(row, MatchedBy::Current));
    if primary.as_ref().is_some_and(|env| env.kind != "PREVIEW") {
        return Ok(primary);
    }
    Spi::connect(|client| {
        let env = match primary {
            Some(env) => env,
            None => match environment_from(GRACE.run(client, &[api_key.into()])?, MatchedBy::Grace)? {
                Some(env) => env,
                None => return Ok(None),
            },
        };
        resolve_branch(client, env, branch_name)
    })
}

/// A PREVIEW parent authenticates only together with one of its live branches:
/// the branch, with the parent's current key (and match) merged onto it.
fn resolve_branch(client: &SpiClient<'_>, mut env: Environment, branch_name: Option<&str>) -> Result<Option<Environment>> {
    if env.kind == "PREVIEW" {
        let branch = match branch_name {
            Some(b) if !b.is_empty() && b.len() <= MAX_BRANCH_LEN => b,
            _ => return Ok(None),
        };
        let rows = BRANCH.run(client, &[env.id.as_str().into(), branch.into()])?;
        let Some(child) = environment_from(rows, MatchedBy::Current)? else { return Ok(None) };
        env = Environment {
            api_key: env.api_key,
            pk_api_key: env.pk_api_key,
            matched_by: env.matched_by,
            revoked_api_key_id: env.revoked_api_key_id,
            grace_expires_at: env.grace_expires_at,
            ..child
        };
    }
    Ok(Some(env))
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
/// save and restore cost a third of a lookup. Without it, every name and
/// operator in the SQL it runs is schema-qualified (tests/security.rs runs it
/// under a hostile search_path). The columns below must match the type.
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
