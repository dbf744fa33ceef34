//! api_auth: API-key authentication inside PostgreSQL.
//!
//! One module per concept of the SPEC:
//! - [`keys`]: environments and their key formats (`create_environment`, `mask_api_key`)
//! - [`lookup`]: find environment by API key, with the grace fallback
//! - [`rotation`]: `rotate_api_key`, `set_revoked_expiry`, `purge_expired_revoked_keys`
//! - [`tokens`]: public access tokens, `mint_public_jwt` / `validate_public_jwt`
//! - [`scopes`]: `authorize`
//! - [`sessions`]: `create_session(_as)` / `get_session(_as)`
//! - [`caller`]: client-facing functions resolve the environment from the
//!   caller's credential, never from a caller-chosen id
//!
//! Plumbing: [`errors`] (the one place errors become `ereport`), [`settings`]
//! (the `api_auth.*` GUCs), [`plans`] (prepared statements kept per backend),
//! [`probe`] (index probes without the executor, for every authentication path),
//! [`compat`] (what differs between PostgreSQL 14 and 18, the one place with `cfg`).
//! Tables, views, comments and privileges are plain SQL in `sql/`.

use pgrx::prelude::*;

pub mod caller;
pub mod compat;
pub mod errors;
pub mod keys;
pub mod lookup;
pub mod plans;
pub mod probe;
pub mod rotation;
pub mod scopes;
pub mod sessions;
pub mod settings;
pub mod tokens;

::pgrx::pg_module_magic!();

// Tables first: every function below is created after them.
extension_sql_file!("../sql/schema.sql", name = "schema", bootstrap);
// Views and comments, once every function exists.
extension_sql_file!(
    "../sql/finalize.sql",
    name = "finalize",
    requires = [
        keys::create_environment,
        keys::mask_api_key,
        lookup::find_environment_by_api_key,
        rotation::rotate_api_key,
        rotation::set_revoked_expiry,
        rotation::purge_expired_revoked_keys,
        tokens::mint_public_jwt,
        tokens::validate_public_jwt,
        scopes::authorize,
        sessions::create_session,
        sessions::get_session,
        sessions::create_session_as,
        sessions::get_session_as,
    ]
);
// Restores that load the tables in any order (since 0.4.0).
extension_sql_file!("../sql/restore.sql", name = "restore", requires = ["schema"]);
// Change notifications for answer caches (since 0.4.0).
extension_sql_file!("../sql/invalidation.sql", name = "invalidation", requires = ["schema"]);
// Roles, the audit trail and privileges (since 0.2.0): last of all.
extension_sql_file!("../sql/security.sql", name = "security", finalize);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    settings::init();
}
