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
/// PostgreSQL 15 added `MarkGUCPrefixReserved`. 14 has only
/// `EmitWarningsOnPlaceholders`, which warns about placeholders that already
/// exist when the library loads; a later misspelt `SET` is accepted there, as
/// for every extension on 14.
pub fn reserve_setting_prefix() {
    #[cfg(feature = "pg14")]
    unsafe {
        pg_sys::EmitWarningsOnPlaceholders(c"api_auth".as_ptr())
    };
    #[cfg(not(feature = "pg14"))]
    unsafe {
        pg_sys::MarkGUCPrefixReserved(c"api_auth".as_ptr())
    };
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
