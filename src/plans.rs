//! Prepared SPI plans kept for the life of the backend, so the hot paths parse
//! and plan their SQL once per connection, not once per call.
//!
//! PostgreSQL's plan cache re-validates kept plans when the tables change, so
//! a plan outliving an `ALTER TABLE` (or a reinstall) is re-planned, not stale.

use std::cell::OnceCell;
use std::thread::LocalKey;

use pgrx::datum::DatumWithOid;
use pgrx::pg_sys::PgOid;
use pgrx::spi::{OwnedPreparedStatement, SpiClient, SpiTupleTable};

use crate::errors::Result;

/// One kept plan: its SQL, argument types, and whether it writes.
pub struct Plan {
    pub sql: &'static str,
    pub args: &'static [PgOid],
    pub mutating: bool,
    pub cell: &'static LocalKey<OnceCell<OwnedPreparedStatement>>,
}

/// Declare a kept plan: `plan!(NAME, mutating, [TEXTOID, …], "SQL")`.
#[macro_export]
macro_rules! plan {
    ($name:ident, $mutating:expr, [$($oid:ident),*], $sql:expr) => {
        pub static $name: $crate::plans::Plan = {
            ::std::thread_local! {
                static CELL: ::std::cell::OnceCell<::pgrx::spi::OwnedPreparedStatement> =
                    const { ::std::cell::OnceCell::new() };
            }
            $crate::plans::Plan {
                sql: $sql,
                args: &[$(::pgrx::pg_sys::PgOid::BuiltIn(::pgrx::pg_sys::PgBuiltInOids::$oid)),*],
                mutating: $mutating,
                cell: &CELL,
            }
        };
    };
}

impl Plan {
    /// Run the plan (preparing and keeping it on first use) and return its rows.
    pub fn run<'conn>(&self, client: &SpiClient<'conn>, args: &[DatumWithOid<'_>]) -> Result<SpiTupleTable<'conn>> {
        self.cell.with(|cell| {
            if cell.get().is_none() {
                let prepared =
                    if self.mutating { client.prepare_mut(self.sql, self.args)? } else { client.prepare(self.sql, self.args)? };
                let _ = cell.set(prepared.keep());
            }
            let plan = cell.get().expect("plan was just kept");
            Ok(client.select(plan, None, args)?)
        })
    }
}
