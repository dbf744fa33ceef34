//! The PostgreSQL-free heart of api_auth.
//!
//! Everything here is pure: no database, no I/O beyond the OS random source.
//! The extension (`src/` at the repository root) wraps these functions in SQL,
//! the shim uses [`keys::classify`] to route credentials, and the fuzz targets
//! (`fuzz/`) hammer [`tokens`] and [`scopes`] without a server.

pub mod expiration;
pub mod keys;
pub mod scopes;
pub mod tokens;
