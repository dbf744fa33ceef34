//! The differences between PostgreSQL 14, 15, 16, 17 and 18 that api_auth's
//! Rust code meets, each behind `cfg(feature = "pgNN")`, all in this module.
//!
//! WHY one module: the rest of the extension reads as if there were one
//! PostgreSQL, and a new major version means reading one file, not grepping
//! for `cfg`. Each function here does the same thing on every version; where
//! PostgreSQL itself lacks a feature on an old version, the doc comment says
//! what users see (and the README's version table repeats it).
//!
//! Tuple descriptors (whose attribute array moved in 18) need nothing here:
//! pgrx's `PgTupleDesc` already hides that change.

use pgrx::pg_sys;

/// Reserve the `api_auth.` prefix of settings, so that a misspelt
/// `SET api_auth.grace = …` is an error instead of a silent placeholder.
///
/// PostgreSQL 15 added `MarkGUCPrefixReserved`. 14 lacks it, so there a
/// utility hook refuses the same statements with the same error (`SET`,
/// `SET LOCAL`, `RESET`, `ALTER ROLE|DATABASE … SET`, `ALTER SYSTEM`);
/// `EmitWarningsOnPlaceholders` warns, as 15 does, about placeholders made
/// before the library loaded. (`set_config()` is not a utility statement: on 14
/// it still makes a placeholder.)
pub fn reserve_setting_prefix() {
    #[cfg(feature = "pg14")]
    unsafe {
        pg_sys::EmitWarningsOnPlaceholders(c"api_auth".as_ptr());
        reserved_prefix_14::install();
    }
    #[cfg(not(feature = "pg14"))]
    unsafe {
        pg_sys::MarkGUCPrefixReserved(c"api_auth".as_ptr())
    };
}

#[cfg(feature = "pg14")]
mod reserved_prefix_14 {
    use std::ffi::CStr;

    use pgrx::pg_sys;
    use pgrx::prelude::*;

    static mut PREVIOUS: pg_sys::ProcessUtility_hook_type = None;

    /// # Safety
    /// Once per backend, from `_PG_init`.
    pub unsafe fn install() {
        PREVIOUS = pg_sys::ProcessUtility_hook;
        pg_sys::ProcessUtility_hook = Some(process_utility);
    }

    /// The `SET` inside a utility statement, if it has one.
    unsafe fn set_statement(node: *mut pg_sys::Node) -> Option<&'static pg_sys::VariableSetStmt> {
        let stmt: *mut pg_sys::VariableSetStmt = if pgrx::is_a(node, pg_sys::NodeTag::T_VariableSetStmt) {
            node.cast()
        } else if pgrx::is_a(node, pg_sys::NodeTag::T_AlterRoleSetStmt) {
            (*node.cast::<pg_sys::AlterRoleSetStmt>()).setstmt
        } else if pgrx::is_a(node, pg_sys::NodeTag::T_AlterDatabaseSetStmt) {
            (*node.cast::<pg_sys::AlterDatabaseSetStmt>()).setstmt
        } else if pgrx::is_a(node, pg_sys::NodeTag::T_AlterSystemStmt) {
            (*node.cast::<pg_sys::AlterSystemStmt>()).setstmt
        } else {
            std::ptr::null_mut()
        };
        stmt.as_ref()
    }

    /// 15's check: a name under the prefix must be a setting the extension defined.
    unsafe fn refuse_unknown(name: &CStr) {
        if !name.to_bytes().starts_with(b"api_auth.") {
            return;
        }
        let mut found: *const std::ffi::c_char = std::ptr::null();
        pg_sys::GetConfigOptionByName(name.as_ptr(), &mut found, true);
        let defined =
            !found.is_null() && pg_sys::GetConfigOptionFlags(name.as_ptr(), true) & pg_sys::GUC_CUSTOM_PLACEHOLDER as i32 == 0;
        if !defined {
            ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_INVALID_NAME,
                format!("invalid configuration parameter name \"{}\"", name.to_string_lossy()),
                "\"api_auth\" is a reserved prefix."
            );
        }
    }

    #[pg_guard]
    #[allow(clippy::too_many_arguments)]
    unsafe extern "C-unwind" fn process_utility(
        pstmt: *mut pg_sys::PlannedStmt,
        query: *const std::ffi::c_char,
        read_only_tree: bool,
        context: pg_sys::ProcessUtilityContext::Type,
        params: pg_sys::ParamListInfo,
        env: *mut pg_sys::QueryEnvironment,
        dest: *mut pg_sys::DestReceiver,
        qc: *mut pg_sys::QueryCompletion,
    ) {
        if let Some(set) = set_statement((*pstmt).utilityStmt) {
            if !set.name.is_null() {
                refuse_unknown(CStr::from_ptr(set.name));
            }
        }
        match PREVIOUS {
            Some(previous) => previous(pstmt, query, read_only_tree, context, params, env, dest, qc),
            None => pg_sys::standard_ProcessUtility(pstmt, query, read_only_tree, context, params, env, dest, qc),
        }
    }
}

/// `index_beginscan(heap, index, snapshot, nkeys, norderbys)`.
///
/// PostgreSQL 18 added an instrumentation argument (for EXPLAIN ANALYZE of
/// index scans); a probe runs outside any plan, so it passes none.
///
/// # Safety
/// As `index_beginscan`: open relations, a registered or active snapshot.
pub unsafe fn index_beginscan(
    table: pg_sys::Relation,
    index: pg_sys::Relation,
    snapshot: pg_sys::Snapshot,
    nkeys: i32,
    norderbys: i32,
) -> pg_sys::IndexScanDesc {
    #[cfg(feature = "pg18")]
    {
        pg_sys::index_beginscan(table, index, snapshot, std::ptr::null_mut(), nkeys, norderbys)
    }
    #[cfg(not(feature = "pg18"))]
    {
        pg_sys::index_beginscan(table, index, snapshot, nkeys, norderbys)
    }
}
