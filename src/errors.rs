//! The one place where api_auth errors become PostgreSQL errors.
//!
//! Everything inside returns [`Result`]; each `#[pg_extern]` ends with
//! `.or_report()`, which raises an `ERROR` with the SQLSTATE below. Errors that
//! PostgreSQL itself raises inside SPI (a unique violation, a lock timeout) keep
//! their own SQLSTATE and pass through untouched.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use pgrx::spi::SpiError;

#[derive(Debug)]
pub enum ApiAuthError {
    /// `P0002` no_data_found: the named row does not exist.
    NotFound(String),
    /// `22004` null_value_not_allowed: the named argument was NULL.
    NullArgument(&'static str),
    /// `22023` invalid_parameter_value: an argument is out of range or malformed.
    InvalidParameter(String),
    /// `55000` object_not_in_prerequisite_state: e.g. rotating a preview branch.
    WrongState(String),
    /// `28000` invalid_authorization_specification: the credential presented
    /// to a client-facing function authenticates nothing.
    Unauthenticated(String),
    /// `42501` insufficient_privilege: the credential authenticates, but its
    /// scopes do not allow what was asked.
    ScopeDenied(String),
    /// `XX000` internal_error: SPI misuse or the OS random source failing.
    Internal(String),
}

pub type Result<T> = std::result::Result<T, ApiAuthError>;

impl ApiAuthError {
    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::InvalidParameter(msg.into())
    }

    fn sqlstate(&self) -> PgSqlErrorCode {
        match self {
            Self::NotFound(_) => PgSqlErrorCode::ERRCODE_NO_DATA_FOUND,
            Self::NullArgument(_) => PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            Self::InvalidParameter(_) => PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            Self::WrongState(_) => PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            Self::Unauthenticated(_) => PgSqlErrorCode::ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION,
            Self::ScopeDenied(_) => PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            Self::Internal(_) => PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
        }
    }

    fn message(&self) -> String {
        match self {
            Self::NullArgument(arg) => format!("{arg} must not be NULL"),
            Self::NotFound(m)
            | Self::InvalidParameter(m)
            | Self::WrongState(m)
            | Self::Unauthenticated(m)
            | Self::ScopeDenied(m)
            | Self::Internal(m) => m.clone(),
        }
    }

    /// Raise this error in PostgreSQL. Never returns.
    pub fn report(self) -> ! {
        ErrorReport::new(self.sqlstate(), self.message(), "api_auth").report(PgLogLevel::ERROR);
        unreachable!("ERROR does not return")
    }
}

impl From<SpiError> for ApiAuthError {
    fn from(e: SpiError) -> Self {
        Self::Internal(format!("api_auth: SPI failure: {e}"))
    }
}

impl From<api_auth_core::keys::RandomError> for ApiAuthError {
    fn from(e: api_auth_core::keys::RandomError) -> Self {
        Self::Internal(format!("api_auth: OS random source failed: {e}"))
    }
}

/// `.or_report()` on a [`Result`]: the value, or an `ERROR` raised in PostgreSQL.
pub trait OrReport<T> {
    fn or_report(self) -> T;
}

impl<T> OrReport<T> for Result<T> {
    fn or_report(self) -> T {
        self.unwrap_or_else(|e| e.report())
    }
}

/// A required text argument: NULL is refused, and so is anything empty or
/// longer than `max` bytes (ids and slugs are short; a megabyte is an attack).
pub fn required_text<'a>(name: &'static str, value: Option<&'a str>, max: usize) -> Result<&'a str> {
    let v = value.ok_or(ApiAuthError::NullArgument(name))?;
    check_text(name, v, max)?;
    Ok(v)
}

/// Length and character checks shared by required and optional text arguments.
pub fn check_text(name: &str, v: &str, max: usize) -> Result<()> {
    if v.is_empty() {
        return Err(ApiAuthError::invalid(format!("{name} must not be empty")));
    }
    if v.len() > max {
        return Err(ApiAuthError::invalid(format!("{name} must be at most {max} bytes")));
    }
    if v.chars().any(char::is_control) {
        return Err(ApiAuthError::invalid(format!("{name} must not contain control characters")));
    }
    Ok(())
}
