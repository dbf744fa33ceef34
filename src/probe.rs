//! Unique-index probes without the executor: the primary lookup of SPEC §3
//! "must cost what a plain indexed lookup costs".
//!
//! Even a kept SPI plan pays, per call, for a portal, executor start-up and
//! shutdown, a tuple table and a copy of every row, which cost more than the
//! B-tree descent itself. A probe opens `runtime_environment` and one of its
//! unique indexes, looks one text key up and reads the columns it needs.
//!
//! What it keeps from SQL: the calling statement's MVCC snapshot (the view a
//! STABLE function's SPI query gets), `AccessShareLock` on table and index until
//! the transaction ends (as the executor takes), the index's own collation in
//! the scan key, and columns found by name, so a later column added to the table
//! cannot shift what is read. Anything more than "one row by one unique key"
//! stays in SQL (`lookup.rs`, `tokens.rs`).

use std::ffi::CStr;

use pgrx::pg_sys;
use pgrx::FromDatum;

use crate::errors::{ApiAuthError, Result};

/// The columns a probe returns, in this order: [`crate::lookup`]'s column list.
pub const ENVIRONMENT_COLUMNS: [&CStr; 9] = [
    c"id",
    c"slug",
    c"type",
    c"api_key",
    c"pk_api_key",
    c"parent_environment_id",
    c"branch_name",
    c"project_id",
    c"organization_id",
];

/// One of `runtime_environment`'s single-column unique indexes on text.
pub struct UniqueIndex {
    name: &'static CStr,
}

/// `runtime_environment.api_key`: the hot path of every secret-key lookup.
pub const BY_API_KEY: UniqueIndex = UniqueIndex { name: c"runtime_environment_api_key_key" };
/// `runtime_environment.id`: a token's subject, a branch's parent.
pub const BY_ID: UniqueIndex = UniqueIndex { name: c"runtime_environment_pkey" };

/// A live (not archived) environment row: [`ENVIRONMENT_COLUMNS`], NULL as `None`.
pub type EnvironmentRow = [Option<String>; 9];

fn relation_oid(namespace: pg_sys::Oid, name: &CStr) -> Result<pg_sys::Oid> {
    // SAFETY: a syscache look-up by name; returns InvalidOid when missing.
    let oid = unsafe { pg_sys::get_relname_relid(name.as_ptr(), namespace) };
    if oid == pg_sys::InvalidOid {
        return Err(ApiAuthError::Internal(format!("api_auth.{} is missing", name.to_string_lossy())));
    }
    Ok(oid)
}

/// Attribute number of `name` in `desc`, or an error if the table lacks it.
///
/// # Safety
/// `desc` must be a valid tuple descriptor.
unsafe fn attnum(desc: pg_sys::TupleDesc, name: &CStr) -> Result<i32> {
    let natts = (*desc).natts as usize;
    let attrs = (*desc).attrs.as_slice(natts);
    attrs
        .iter()
        .position(|a| !a.attisdropped && CStr::from_ptr(a.attname.data.as_ptr()) == name)
        .map(|i| i as i32 + 1)
        .ok_or_else(|| {
            ApiAuthError::Internal(format!("api_auth.runtime_environment has no column {}", name.to_string_lossy()))
        })
}

impl UniqueIndex {
    /// The live environment whose indexed column equals `key`, if any.
    pub fn live_environment(&self, key: &str) -> Result<Option<EnvironmentRow>> {
        let key_len = i32::try_from(key.len()).map_err(|_| ApiAuthError::invalid("key too long"))?;
        // SAFETY: the standard heap + index scan sequence (as in execIndexing.c
        // and friends). Relations and the scan are closed on every path below;
        // if PostgreSQL raises an error in between, transaction abort releases
        // them through the resource owner, as it does for the executor.
        unsafe {
            let namespace = pg_sys::get_namespace_oid(c"api_auth".as_ptr(), false);
            let table_oid = relation_oid(namespace, c"runtime_environment")?;
            let index_oid = relation_oid(namespace, self.name)?;
            let lock = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
            let table = pg_sys::table_open(table_oid, lock);
            let index = pg_sys::index_open(index_oid, lock);

            let attnums = column_numbers((*table).rd_att);
            let Ok((columns, archived_at)) = attnums else {
                pg_sys::index_close(index, lock);
                pg_sys::table_close(table, lock);
                return attnums.map(|_| None);
            };

            let mut scan_key = pg_sys::ScanKeyData::default();
            pg_sys::ScanKeyEntryInitialize(
                &mut scan_key,
                0,
                1,
                pg_sys::BTEqualStrategyNumber as pg_sys::StrategyNumber,
                pg_sys::InvalidOid,
                // The index's collation, not C: the B-tree is ordered by it.
                *(*index).rd_indcollation,
                pg_sys::RegProcedure::from(pg_sys::F_TEXTEQ),
                pg_sys::Datum::from(pg_sys::cstring_to_text_with_len(key.as_ptr().cast(), key_len)),
            );
            // Inside a query there is always an active snapshot; a bare call
            // from a procedure may have none, then the transaction's is used.
            let (snapshot, registered) = if pg_sys::ActiveSnapshotSet() {
                (pg_sys::GetActiveSnapshot(), false)
            } else {
                (pg_sys::RegisterSnapshot(pg_sys::GetTransactionSnapshot()), true)
            };
            let scan = pg_sys::index_beginscan(table, index, snapshot, 1, 0);
            pg_sys::index_rescan(scan, &mut scan_key, 1, std::ptr::null_mut(), 0);
            let slot = pg_sys::table_slot_create(table, std::ptr::null_mut());

            let mut found = None;
            // A unique index has at most one visible row per key under one snapshot.
            if pg_sys::index_getnext_slot(scan, pg_sys::ScanDirection::ForwardScanDirection, slot) {
                found = read_row(slot, &columns, archived_at);
            }

            pg_sys::ExecDropSingleTupleTableSlot(slot);
            pg_sys::index_endscan(scan);
            if registered {
                pg_sys::UnregisterSnapshot(snapshot);
            }
            // Locks stay until the end of the transaction, as with any query.
            pg_sys::index_close(index, pg_sys::NoLock as pg_sys::LOCKMODE);
            pg_sys::table_close(table, pg_sys::NoLock as pg_sys::LOCKMODE);
            Ok(found)
        }
    }
}

/// Attribute numbers of [`ENVIRONMENT_COLUMNS`] and of `archived_at`.
///
/// # Safety
/// `desc` must be `runtime_environment`'s tuple descriptor.
unsafe fn column_numbers(desc: pg_sys::TupleDesc) -> Result<([i32; 9], i32)> {
    let mut columns = [0; 9];
    for (n, name) in columns.iter_mut().zip(ENVIRONMENT_COLUMNS) {
        *n = attnum(desc, name)?;
    }
    Ok((columns, attnum(desc, c"archived_at")?))
}

/// Read the wanted columns of the row in `slot`; `None` if it is archived.
///
/// # Safety
/// `slot` must hold a tuple of `runtime_environment`, `columns` and
/// `archived_at` be attribute numbers from [`column_numbers`].
unsafe fn read_row(slot: *mut pg_sys::TupleTableSlot, columns: &[i32; 9], archived_at: i32) -> Option<EnvironmentRow> {
    let mut is_null = false;
    pg_sys::slot_getattr(slot, archived_at, &mut is_null);
    if !is_null {
        return None;
    }
    let mut row: EnvironmentRow = Default::default();
    for (value, &attnum) in row.iter_mut().zip(columns) {
        let datum = pg_sys::slot_getattr(slot, attnum, &mut is_null);
        *value = String::from_datum(datum, is_null);
    }
    Some(row)
}
