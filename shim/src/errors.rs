//! JSON errors: every failure the shim answers is a JSON object with an `error`
//! string (SPEC §5), and database failures are mapped here from their SQLSTATE.

use api_auth_core::tokens::TokenError;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderMap, HeaderName, HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::{Response, StatusCode};
use serde_json::{json, Value};

pub type Body = Full<Bytes>;

/// A JSON response, `Cache-Control: no-store` (answers carry keys and tokens).
pub fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    let bytes = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    json_bytes_response(status, Bytes::from(bytes))
}

fn json_bytes_response(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut res = Response::new(Full::new(body));
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// A JSON answer rendered once and sent many times: [`Prepared::response`]
/// copies a finished header map and shares one buffer instead of serializing
/// again (what the answer cache keeps for `GET /api/v1/auth/verify`, see
/// [`crate::verify`]).
///
/// Built for the hot path: the body and every header value are slices of one
/// buffer, so an answer costs one allocation-free reference count per value
/// on a single cache line, and no header name is hashed again.
#[derive(Debug)]
pub struct Prepared {
    body: Bytes,
    head: HeaderMap,
}

impl Prepared {
    /// `value` as the body, plus `headers` (besides the JSON ones). A value
    /// that cannot be a header value is left out rather than mangled.
    pub fn json(value: &Value, headers: &[(&'static str, &str)]) -> Prepared {
        let mut buf = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
        let body_len = buf.len();
        let mut spans = Vec::with_capacity(headers.len());
        for (name, v) in headers {
            spans.push((HeaderName::from_static(name), buf.len()..buf.len() + v.len()));
            buf.extend_from_slice(v.as_bytes());
        }
        let buf = Bytes::from(buf);
        let mut head = HeaderMap::with_capacity(spans.len() + 2);
        head.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        head.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        for (name, span) in spans {
            if let Ok(v) = HeaderValue::from_maybe_shared(buf.slice(span)) {
                head.insert(name, v);
            }
        }
        Prepared { body: buf.slice(..body_len), head }
    }

    pub fn response(&self, status: StatusCode) -> Response<Body> {
        let mut res = Response::new(Full::new(self.body.clone()));
        *res.status_mut() = status;
        *res.headers_mut() = self.head.clone();
        res
    }
}

/// A problem with a request body, in the shape of a zod issue.
pub fn issue(path: &[&str], code: &str, message: impl Into<String>) -> Value {
    json!({ "code": code, "path": path, "message": message.into() })
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: Value,
    /// Extra header for 401 (`WWW-Authenticate`) and 405 (`Allow`).
    header: Option<(hyper::header::HeaderName, &'static str)>,
    /// Logged, never sent: what went wrong inside.
    pub detail: Option<String>,
    /// Why a credential was refused (counted by [`crate::metrics`]).
    pub refusal: Option<Refusal>,
    /// What kind of database failure this is (counted by [`crate::metrics`]).
    pub db_error: Option<DbError>,
}

/// Why a credential was refused: a fixed set, so that metrics labels stay
/// bounded whatever clients send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    MissingCredential,
    /// A secret key that authenticates nothing (never existed, or its grace
    /// window is over).
    UnknownKey,
    PublishableKey,
    /// A public token on a route that takes only a secret key.
    TokenNotAccepted,
    /// Not a key nor a token.
    UnknownCredential,
    /// A public token `validate_public_jwt` refused, for this reason.
    Token(TokenError),
    /// A token error code this shim does not know.
    InvalidToken,
    ScopeDenied,
    InvalidAdminToken,
    AdminDisabled,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::MissingCredential => "missing_credential",
            Refusal::UnknownKey => "unknown_key",
            Refusal::PublishableKey => "publishable_key",
            Refusal::TokenNotAccepted => "token_not_accepted",
            Refusal::UnknownCredential => "unknown_credential",
            Refusal::Token(e) => e.code(),
            Refusal::InvalidToken => "invalid_token",
            Refusal::ScopeDenied => "scope_denied",
            Refusal::InvalidAdminToken => "invalid_admin_token",
            Refusal::AdminDisabled => "admin_disabled",
        }
    }

    /// `validate_public_jwt`'s error code.
    pub fn from_token_error(code: &str) -> Refusal {
        TokenError::from_code(code).map_or(Refusal::InvalidToken, Refusal::Token)
    }
}

/// Kinds of database failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbError {
    /// No connection could be opened, or it broke.
    Connection,
    /// Every pooled connection stayed busy for the whole wait.
    PoolExhausted,
    /// statement_timeout (SQLSTATE 57014).
    Timeout,
    /// Other class 08/40/53/57/58 failures: the server refuses work for now.
    Unavailable,
    /// The api_auth extension (or one of its functions) is missing.
    NotInstalled,
    /// The shim's role lacks a privilege.
    Privilege,
    /// Anything else the shim does not map to a client error.
    Internal,
}

impl DbError {
    pub fn as_str(self) -> &'static str {
        match self {
            DbError::Connection => "connection",
            DbError::PoolExhausted => "pool_exhausted",
            DbError::Timeout => "timeout",
            DbError::Unavailable => "unavailable",
            DbError::NotInstalled => "not_installed",
            DbError::Privilege => "privilege",
            DbError::Internal => "internal",
        }
    }
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError { status, body: json!({ "error": message.into() }), header: None, detail: None, refusal: None, db_error: None }
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Mark as the refusal of a credential, for `reason`.
    pub fn with_refusal(mut self, reason: Refusal) -> Self {
        self.refusal = Some(reason);
        self
    }

    fn with_db_error(mut self, kind: DbError) -> Self {
        self.db_error = Some(kind);
        self
    }

    /// 400 `{"error": "Invalid request body", "issues": [...]}`.
    pub fn invalid_body(issues: Vec<Value>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            body: json!({ "error": "Invalid request body", "issues": issues }),
            header: None,
            detail: None,
            refusal: None,
            db_error: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 401 with `WWW-Authenticate: Bearer`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::UNAUTHORIZED, message);
        e.header = Some((WWW_AUTHENTICATE, "Bearer"));
        e
    }

    /// The reference platform's answer to a missing or unknown secret key.
    pub fn invalid_api_key() -> Self {
        Self::unauthorized("Invalid or Missing API key")
    }

    /// SPEC §5: a scope denial.
    pub fn scope_denied(reason: impl std::fmt::Display) -> Self {
        ApiError {
            status: StatusCode::FORBIDDEN,
            body: json!({
                "error": format!("Unauthorized: {reason}"),
                "code": "unauthorized",
                "param": "access_token",
                "type": "authorization",
            }),
            header: None,
            detail: None,
            refusal: Some(Refusal::ScopeDenied),
            db_error: None,
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub fn method_not_allowed(allow: &'static str) -> Self {
        let mut e = Self::new(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed");
        e.header = Some((ALLOW, allow));
        e
    }

    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Request body too large: at most {limit} bytes, with a Content-Length header"),
        )
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    pub fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
    }

    pub fn into_response(self) -> Response<Body> {
        let mut res = json_response(self.status, &self.body);
        if let Some((name, value)) = self.header {
            res.headers_mut().insert(name, HeaderValue::from_static(value));
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            res.headers_mut().insert(hyper::header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        res
    }
}

/// What a failed database call means for the client.
///
/// `context` names the missing thing for SQLSTATE P0002 ("Revoked API key not
/// found"). Connection-level failures (no pool slot, connection refused, broken
/// connection, statement timeout, server shutting down) are 503 so the client
/// retries; a missing extension is 503 too (the service is not ready).
pub fn from_db(err: &tokio_postgres::Error, not_found: &str) -> ApiError {
    use tokio_postgres::error::SqlState;
    let Some(db) = err.as_db_error() else {
        // I/O, closed connection, protocol: the database is unreachable.
        return ApiError::unavailable("Database unavailable").with_detail(err.to_string()).with_db_error(DbError::Connection);
    };
    let code = db.code();
    let message = db.message().to_string();
    let class = &code.code()[..2];
    if *code == SqlState::INVALID_PARAMETER_VALUE
        || *code == SqlState::NULL_VALUE_NOT_ALLOWED
        || *code == SqlState::INVALID_DATETIME_FORMAT
        || *code == SqlState::DATETIME_FIELD_OVERFLOW
        || *code == SqlState::INVALID_TEXT_REPRESENTATION
        || *code == SqlState::NUMERIC_VALUE_OUT_OF_RANGE
        || *code == SqlState::INTERVAL_FIELD_OVERFLOW
        || *code == SqlState::STRING_DATA_RIGHT_TRUNCATION
        || *code == SqlState::CHECK_VIOLATION
    {
        return ApiError::invalid_body(vec![issue(&[], "custom", message)]);
    }
    if *code == SqlState::NO_DATA_FOUND {
        return ApiError::not_found(not_found);
    }
    if *code == SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE || *code == SqlState::UNIQUE_VIOLATION {
        return ApiError::new(StatusCode::CONFLICT, message);
    }
    if *code == SqlState::FOREIGN_KEY_VIOLATION {
        return ApiError::not_found(not_found).with_detail(message);
    }
    // The extension's own refusals of a client-facing call (src/errors.rs
    // raises them with routine "api_auth"): a credential that authenticates
    // nothing, a token whose scopes do not allow the call.
    if db.routine() == Some("api_auth") {
        if *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION {
            return ApiError::invalid_api_key().with_refusal(Refusal::UnknownKey);
        }
        if *code == SqlState::INSUFFICIENT_PRIVILEGE {
            return ApiError::scope_denied(message);
        }
    }
    if *code == SqlState::INSUFFICIENT_PRIVILEGE {
        return ApiError::internal()
            .with_detail(format!("database role lacks a privilege: {message}"))
            .with_db_error(DbError::Privilege);
    }
    if *code == SqlState::UNDEFINED_FUNCTION || *code == SqlState::INVALID_SCHEMA_NAME || *code == SqlState::UNDEFINED_TABLE {
        return ApiError::unavailable("Database not ready: the api_auth extension is not installed")
            .with_detail(message)
            .with_db_error(DbError::NotInstalled);
    }
    // 08 connection exception, 53 insufficient resources, 57 operator
    // intervention (statement timeout, admin shutdown), 40 serialization/deadlock.
    if *code == SqlState::QUERY_CANCELED {
        return ApiError::unavailable("Database unavailable")
            .with_detail(format!("{}: {message}", code.code()))
            .with_db_error(DbError::Timeout);
    }
    if matches!(class, "08" | "53" | "57" | "40" | "58") {
        return ApiError::unavailable("Database unavailable")
            .with_detail(format!("{}: {message}", code.code()))
            .with_db_error(DbError::Unavailable);
    }
    ApiError::internal().with_detail(format!("{}: {message}", code.code())).with_db_error(DbError::Internal)
}

pub fn from_pool(err: deadpool_postgres::PoolError) -> ApiError {
    use deadpool_postgres::{PoolError, TimeoutType};
    // All connections busy for the whole wait: the pool is too small for the
    // load. Anything else: no connection could be opened.
    let kind = match &err {
        PoolError::Timeout(TimeoutType::Wait) => DbError::PoolExhausted,
        _ => DbError::Connection,
    };
    ApiError::unavailable("Database unavailable").with_detail(format!("pool: {}", pool_error_text(&err))).with_db_error(kind)
}

/// A PostgreSQL client error with its causes, for logs: the server's own
/// message for an error it sent (`FATAL 28000: no pg_hba.conf entry ...`),
/// otherwise the chain of reasons (`error performing TLS handshake: invalid
/// peer certificate: UnknownIssuer`). tokio-postgres's `Display` alone says
/// only "db error".
pub fn pg_error_text(err: &tokio_postgres::Error) -> String {
    if let Some(db) = err.as_db_error() {
        return format!("{} {}: {}", db.severity(), db.code().code(), db.message());
    }
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// [`pg_error_text`] for a pool's failure to hand out a connection.
pub fn pool_error_text(err: &deadpool_postgres::PoolError) -> String {
    match err {
        deadpool_postgres::PoolError::Backend(e) => pg_error_text(e),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prepared_answer_keeps_its_body_and_drops_unrepresentable_values() {
        let p = Prepared::json(&json!({ "ok": true }), &[("x-a", "one"), ("x-bad", "line\nbreak"), ("x-b", "two")]);
        for _ in 0..2 {
            let res = p.response(StatusCode::OK);
            let h = res.headers();
            assert_eq!(h["x-a"], "one");
            assert_eq!(h["x-b"], "two");
            assert!(h.get("x-bad").is_none());
            assert_eq!(h[CONTENT_TYPE], "application/json");
            assert_eq!(h[CACHE_CONTROL], "no-store");
        }
        assert_eq!(p.body, Bytes::from_static(b"{\"ok\":true}"), "the body is the buffer's first part only");
    }
}
