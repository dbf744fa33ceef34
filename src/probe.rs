//! Index probes without the executor: every authentication path of SPEC §3
//! (the primary lookup "must cost what a plain indexed lookup costs").
//!
//! Even a kept SPI plan pays, per call, for a portal, executor start-up and
//! shutdown, a tuple table and a copy of every row, which cost more than the
//! B-tree descent itself. A probe opens a table and one of its indexes, scans
//! for the rows matching a few keys and hands the wanted columns to a closure.
//!
//! What it keeps from SQL: the calling statement's MVCC snapshot (the view a
//! STABLE function's SPI query gets), `AccessShareLock` on table and index until
//! the transaction ends (as the executor takes), each index column's own
//! collation in its scan key, and columns found by name, so a column added
//! later cannot shift what is read. No name is resolved through search_path.
//! Anything richer than "rows by the leading columns of one index" stays in SQL.

use std::cell::{Cell, RefCell};
use std::ffi::CStr;
use std::ops::ControlFlow;

use pgrx::datum::TimestampWithTimeZone;
use pgrx::pg_sys;
use pgrx::FromDatum;

use crate::errors::{ApiAuthError, Result};

/// One of api_auth's B-tree indexes, by table and index name.
pub struct Index {
    table: &'static CStr,
    name: &'static CStr,
}

/// `runtime_environment (api_key)`, unique: the hot path of every secret-key lookup.
pub static ENVIRONMENT_BY_API_KEY: Index = Index { table: c"runtime_environment", name: c"runtime_environment_api_key_key" };
/// `runtime_environment (id)`: a token's subject, a grace row's environment.
pub static ENVIRONMENT_BY_ID: Index = Index { table: c"runtime_environment", name: c"runtime_environment_pkey" };
/// `runtime_environment (parent_environment_id, branch_name)`, unique: a preview branch.
pub static BRANCH_BY_NAME: Index = Index { table: c"runtime_environment", name: c"runtime_environment_branch_name_key" };
/// `revoked_api_key (api_key)`: the grace fallback of a secret-key lookup.
pub static REVOKED_BY_API_KEY: Index = Index { table: c"revoked_api_key", name: c"revoked_api_key_api_key_idx" };
/// `revoked_api_key (runtime_environment_id, expires_at)`: the grace fallback of a token.
pub static REVOKED_BY_ENVIRONMENT: Index =
    Index { table: c"revoked_api_key", name: c"revoked_api_key_runtime_environment_id_idx" };

/// A condition on one index column, in index column order.
#[derive(Clone, Copy)]
pub enum Key<'a> {
    /// `column = value` on a text column.
    Equals(&'a str),
    /// `column > value` on a timestamptz column.
    After(pg_sys::TimestampTz),
}

/// The start of the current transaction: what SQL's `now()` returns.
pub fn now() -> pg_sys::TimestampTz {
    // SAFETY: reads a backend-local variable.
    unsafe { pg_sys::GetCurrentTransactionStartTimestamp() }
}

/// The wanted columns of one visible row, in the order they were asked for.
pub struct Row<'r> {
    values: &'r [pg_sys::Datum],
    nulls: &'r [bool],
}

impl Row<'_> {
    pub fn is_null(&self, i: usize) -> bool {
        self.nulls[i]
    }

    /// A text column (copied out of the buffer).
    pub fn text(&self, i: usize) -> Option<String> {
        // SAFETY: the caller asked for column i as a text column; the datum is
        // valid while the row is (the slot still pins its buffer).
        unsafe { String::from_datum(self.values[i], self.nulls[i]) }
    }

    /// A timestamptz column.
    pub fn timestamp(&self, i: usize) -> Option<TimestampWithTimeZone> {
        // SAFETY: as for `text`; timestamptz is passed by value.
        unsafe { TimestampWithTimeZone::from_datum(self.values[i], self.nulls[i]) }
    }
}

fn relation_oid(namespace: pg_sys::Oid, name: &CStr) -> Result<pg_sys::Oid> {
    // SAFETY: a syscache look-up by name; returns InvalidOid when missing.
    let oid = unsafe { pg_sys::get_relname_relid(name.as_ptr(), namespace) };
    if oid == pg_sys::InvalidOid {
        return Err(ApiAuthError::Internal(format!("api_auth.{} is missing", name.to_string_lossy())));
    }
    Ok(oid)
}

/// Attribute number of each of `names` in `desc`.
///
/// # Safety
/// `desc` must be a valid tuple descriptor.
unsafe fn attnums(desc: pg_sys::TupleDesc, table: &CStr, names: &[&CStr]) -> Result<[i32; MAX_COLUMNS]> {
    let mut out = [0; MAX_COLUMNS];
    // PgTupleDesc hides where each major version keeps the attribute array.
    let attrs = pgrx::PgTupleDesc::from_pg_unchecked(desc);
    for (n, name) in out.iter_mut().zip(names) {
        let i =
            attrs.iter().position(|a| !a.attisdropped && CStr::from_ptr(a.attname.data.as_ptr()) == *name).ok_or_else(|| {
                ApiAuthError::Internal(format!("api_auth.{} has no column {}", table.to_string_lossy(), name.to_string_lossy()))
            })?;
        *n = i as i32 + 1;
    }
    Ok(out)
}

/// Most columns a probe reads, most keys it takes.
const MAX_COLUMNS: usize = 16;
const MAX_KEYS: usize = 2;

/// What a probe resolves by name, kept per backend so that the next probe
/// does no name look-up: the relations' OIDs, and the attribute numbers of
/// one column list. Keyed by the addresses of the (static) index and list.
#[derive(Clone, Copy)]
struct Resolved {
    key: (usize, usize),
    table: pg_sys::Oid,
    index: pg_sys::Oid,
    attnos: [i32; MAX_COLUMNS],
}

thread_local! {
    static RESOLVED: RefCell<Vec<Resolved>> = const { RefCell::new(Vec::new()) };
    static WATCHING: Cell<bool> = const { Cell::new(false) };
}

/// Relcache invalidation callback: any change to a cached relation (DDL,
/// DROP EXTENSION, a reinstall) or a full reset forgets everything resolved.
unsafe extern "C-unwind" fn forget(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    RESOLVED.with(|r| {
        if let Ok(mut r) = r.try_borrow_mut() {
            if relid == pg_sys::InvalidOid || r.iter().any(|e| e.table == relid || e.index == relid) {
                r.clear();
            }
        }
    });
}

fn cached(key: (usize, usize)) -> Option<Resolved> {
    RESOLVED.with(|r| r.borrow().iter().find(|e| e.key == key).copied())
}

/// A table and one of its indexes, open under `AccessShareLock`, and the
/// attribute numbers of the columns a probe reads.
struct Opened {
    table: pg_sys::Relation,
    index: pg_sys::Relation,
    attnos: [i32; MAX_COLUMNS],
}

impl Opened {
    /// Close both; the locks stay until the end of the transaction, as with any query.
    unsafe fn close(&self) {
        pg_sys::index_close(self.index, pg_sys::NoLock as pg_sys::LOCKMODE);
        pg_sys::table_close(self.table, pg_sys::NoLock as pg_sys::LOCKMODE);
    }
}

impl Index {
    /// Open the table and the index, by the OIDs and column numbers resolved
    /// for (`self`, `columns`) earlier in this backend, or by name.
    ///
    /// # Safety
    /// Must run inside a transaction; the caller closes what it gets.
    unsafe fn open(&'static self, columns: &'static [&'static CStr]) -> Result<Opened> {
        if !WATCHING.get() {
            pg_sys::CacheRegisterRelcacheCallback(Some(forget), pg_sys::Datum::from(0usize));
            WATCHING.set(true);
        }
        let key = (self as *const Index as usize, columns.as_ptr() as usize);
        let lock = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
        // Opening processes pending invalidations: a relation dropped since
        // it was cached fails to open and has been forgotten; look again.
        for _ in 0..2 {
            let (table_oid, index_oid) = match cached(key) {
                Some(r) => (r.table, r.index),
                None => {
                    let namespace = pg_sys::get_namespace_oid(c"api_auth".as_ptr(), false);
                    (relation_oid(namespace, self.table)?, relation_oid(namespace, self.name)?)
                }
            };
            let table = pg_sys::try_table_open(table_oid, lock);
            if table.is_null() {
                forget(pg_sys::Datum::from(0usize), pg_sys::InvalidOid);
                continue;
            }
            let index = pg_sys::try_index_open(index_oid, lock);
            if index.is_null() {
                pg_sys::table_close(table, pg_sys::NoLock as pg_sys::LOCKMODE);
                forget(pg_sys::Datum::from(0usize), pg_sys::InvalidOid);
                continue;
            }
            // Attribute numbers are resolved after opening, so that an
            // invalidation processed by the open is already taken into account.
            if let Some(r) = cached(key).filter(|r| r.table == table_oid && r.index == index_oid) {
                return Ok(Opened { table, index, attnos: r.attnos });
            }
            let mut opened = Opened { table, index, attnos: [0; MAX_COLUMNS] };
            match attnums((*table).rd_att, self.table, columns) {
                Ok(attnos) => opened.attnos = attnos,
                Err(e) => {
                    opened.close();
                    return Err(e);
                }
            }
            let resolved = Resolved { key, table: table_oid, index: index_oid, attnos: opened.attnos };
            RESOLVED.with(|r| {
                let mut r = r.borrow_mut();
                r.retain(|e| e.key != key);
                r.push(resolved);
            });
            return Ok(opened);
        }
        Err(ApiAuthError::Internal(format!("{} cannot be opened", self.name.to_string_lossy())))
    }

    /// Call `each` with `columns` of every row visible to the statement's
    /// snapshot whose leading index columns satisfy `keys`, in index order,
    /// until it breaks with a value.
    pub fn scan<T>(
        &'static self,
        keys: &[Key<'_>],
        columns: &'static [&'static CStr],
        mut each: impl FnMut(Row<'_>) -> ControlFlow<T>,
    ) -> Result<Option<T>> {
        if columns.len() > MAX_COLUMNS || keys.is_empty() || keys.len() > MAX_KEYS {
            return Err(ApiAuthError::Internal("index probe: too many columns or keys".into()));
        }
        if keys.iter().any(|k| matches!(k, Key::Equals(t) if i32::try_from(t.len()).is_err())) {
            return Err(ApiAuthError::invalid("key too long"));
        }
        let mut scan_keys = [pg_sys::ScanKeyData::default(); MAX_KEYS];
        let (mut values, mut nulls) = ([pg_sys::Datum::from(0usize); MAX_COLUMNS], [true; MAX_COLUMNS]);
        // SAFETY: the standard heap + index scan sequence (as in genam.c's
        // systable scans). Relations, slot and scan are released on every path
        // below; if PostgreSQL raises an error in between, transaction abort
        // releases them through the resource owner, as it does for the executor.
        unsafe {
            let opened = self.open(columns)?;
            let Opened { table, index, attnos } = opened;
            let index_columns = (*(*index).rd_index).indnkeyatts as usize;
            if keys.len() > index_columns {
                opened.close();
                return Err(ApiAuthError::Internal(format!("{} has fewer columns than keys", self.name.to_string_lossy())));
            }
            for (i, (scan_key, key)) in scan_keys.iter_mut().zip(keys).enumerate() {
                let (strategy, procedure, argument) = match *key {
                    Key::Equals(text) => {
                        let text = pg_sys::cstring_to_text_with_len(text.as_ptr().cast(), text.len() as i32);
                        (pg_sys::BTEqualStrategyNumber, pg_sys::F_TEXTEQ, pg_sys::Datum::from(text))
                    }
                    Key::After(t) => (pg_sys::BTGreaterStrategyNumber, pg_sys::F_TIMESTAMPTZ_GT, pg_sys::Datum::from(t)),
                };
                pg_sys::ScanKeyEntryInitialize(
                    scan_key,
                    0,
                    (i + 1) as pg_sys::AttrNumber,
                    strategy as pg_sys::StrategyNumber,
                    pg_sys::InvalidOid,
                    // The column's collation, not C: the B-tree is ordered by it.
                    *(*index).rd_indcollation.add(i),
                    pg_sys::RegProcedure::from(procedure),
                    argument,
                );
            }
            // Inside a query there is always an active snapshot; a bare call
            // from a procedure may have none, then the transaction's is used.
            let (snapshot, registered) = if pg_sys::ActiveSnapshotSet() {
                (pg_sys::GetActiveSnapshot(), false)
            } else {
                (pg_sys::RegisterSnapshot(pg_sys::GetTransactionSnapshot()), true)
            };
            let scan = crate::compat::index_beginscan(table, index, snapshot, keys.len() as i32, 0);
            pg_sys::index_rescan(scan, scan_keys.as_mut_ptr(), keys.len() as i32, std::ptr::null_mut(), 0);
            let slot = pg_sys::table_slot_create(table, std::ptr::null_mut());

            let n = columns.len();
            let mut found = None;
            while pg_sys::index_getnext_slot(scan, pg_sys::ScanDirection::ForwardScanDirection, slot) {
                for i in 0..n {
                    values[i] = pg_sys::slot_getattr(slot, attnos[i], &mut nulls[i]);
                }
                if let ControlFlow::Break(value) = each(Row { values: &values[..n], nulls: &nulls[..n] }) {
                    found = Some(value);
                    break;
                }
            }

            pg_sys::ExecDropSingleTupleTableSlot(slot);
            pg_sys::index_endscan(scan);
            if registered {
                pg_sys::UnregisterSnapshot(snapshot);
            }
            opened.close();
            Ok(found)
        }
    }
}
