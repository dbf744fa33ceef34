//! Request bodies: size limits, upload deadline, JSON parsing into a
//! `{"error": "Invalid request body", "issues": [...]}` on failure, and small
//! typed accessors that produce zod-like issues.

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::CONTENT_LENGTH;
use hyper::{HeaderMap, StatusCode};
use serde_json::{Map, Value};
use tokio::time::Instant;

use crate::errors::{issue, ApiError};

/// Largest body accepted by any route (SPEC §5: sessions, 32 KiB).
pub const MAX_BODY: usize = 32 * 1024;

/// The declared `Content-Length`, `Err` when it is unreadable.
fn content_length(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    match headers.get(CONTENT_LENGTH) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Some)
            .ok_or_else(|| ApiError::bad_request("Invalid Content-Length header")),
    }
}

/// Refuse, before reading anything, a body that declares more than `limit`
/// bytes, or (when `require_length`) declares no length at all.
pub fn check_length(headers: &HeaderMap, limit: usize, require_length: bool) -> Result<(), ApiError> {
    match content_length(headers)? {
        Some(n) if n > limit as u64 => Err(ApiError::payload_too_large(limit)),
        // SPEC §5 (sessions): a body without a declared length is 413, like the
        // reference platform, which checks Content-Length before reading.
        None if require_length => Err(ApiError::payload_too_large(limit)),
        _ => Ok(()),
    }
}

/// Read the whole body (at most `limit` bytes) before `deadline`.
pub async fn read(body: Incoming, headers: &HeaderMap, limit: usize, deadline: Instant) -> Result<Bytes, ApiError> {
    check_length(headers, limit, false)?;
    match tokio::time::timeout_at(deadline, Limited::new(body, limit).collect()).await {
        Err(_) => Err(ApiError::new(StatusCode::REQUEST_TIMEOUT, "Request body not received in time")),
        Ok(Err(e)) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                Err(ApiError::payload_too_large(limit))
            } else {
                Err(ApiError::bad_request("Request body could not be read").with_detail(e.to_string()))
            }
        }
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

/// Parse a JSON object body. An empty body is `empty` (None: an issue).
pub fn object(bytes: &[u8], empty: Option<Map<String, Value>>) -> Result<Map<String, Value>, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return empty
            .ok_or_else(|| ApiError::invalid_body(vec![issue(&[], "invalid_type", "Required: the body must be a JSON object")]));
    }
    let value: Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(e) => {
            let what = if std::str::from_utf8(bytes).is_err() { "Body is not UTF-8" } else { "Invalid JSON" };
            return Err(ApiError::invalid_body(vec![issue(&[], "invalid_json", format!("{what}: {e}"))]));
        }
    };
    match value {
        Value::Object(m) => Ok(m),
        other => Err(ApiError::invalid_body(vec![issue(
            &[],
            "invalid_type",
            format!("Expected object, received {}", type_name(&other)),
        )])),
    }
}

pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Collects issues while fields are read, then fails once with all of them.
pub struct Fields<'a> {
    map: &'a Map<String, Value>,
    pub issues: Vec<Value>,
}

impl<'a> Fields<'a> {
    pub fn new(map: &'a Map<String, Value>) -> Self {
        Fields { map, issues: Vec::new() }
    }

    fn wrong(&mut self, name: &str, expected: &str, got: &Value) {
        self.issues.push(issue(&[name], "invalid_type", format!("Expected {expected}, received {}", type_name(got))));
    }

    fn get(&mut self, name: &str, required: bool) -> Option<&'a Value> {
        match self.map.get(name) {
            None => {
                if required {
                    self.issues.push(issue(&[name], "invalid_type", "Required"));
                }
                None
            }
            Some(v) => Some(v),
        }
    }

    pub fn string(&mut self, name: &str, required: bool) -> Option<String> {
        match self.get(name, required)? {
            Value::String(s) => Some(s.clone()),
            other => {
                self.wrong(name, "string", other);
                None
            }
        }
    }

    pub fn object(&mut self, name: &str, required: bool) -> Option<Value> {
        match self.get(name, required)? {
            v @ Value::Object(_) => Some(v.clone()),
            other => {
                self.wrong(name, "object", other);
                None
            }
        }
    }

    pub fn string_array(&mut self, name: &str) -> Option<Vec<String>> {
        match self.get(name, false)? {
            Value::Array(a) => {
                let mut out = Vec::with_capacity(a.len());
                for (i, v) in a.iter().enumerate() {
                    match v {
                        Value::String(s) => out.push(s.clone()),
                        other => {
                            self.issues.push(issue(
                                &[name, &i.to_string()],
                                "invalid_type",
                                format!("Expected string, received {}", type_name(other)),
                            ));
                        }
                    }
                }
                Some(out)
            }
            other => {
                self.wrong(name, "array", other);
                None
            }
        }
    }

    /// A date as JavaScript's `new Date(x)` would take it from JSON: an
    /// ISO-8601 string (passed to PostgreSQL as text) or epoch milliseconds.
    /// Words PostgreSQL would also take (`infinity`, `now`, `epoch`) are refused.
    pub fn date(&mut self, name: &str, required: bool) -> Option<DateParam> {
        match self.get(name, required)? {
            Value::String(s) => {
                let t = s.trim();
                if t.len() >= 4 && t.len() <= 64 && t.as_bytes()[..4].iter().all(u8::is_ascii_digit) {
                    Some(DateParam { text: Some(t.to_string()), millis: None })
                } else {
                    self.issues.push(issue(&[name], "invalid_date", "Invalid date: expected an ISO-8601 timestamp"));
                    None
                }
            }
            Value::Number(n) => match n.as_f64() {
                Some(ms) if ms.is_finite() && ms.abs() <= 8.64e15 => Some(DateParam { text: None, millis: Some(ms) }),
                _ => {
                    self.issues.push(issue(&[name], "invalid_date", "Invalid date"));
                    None
                }
            },
            other => {
                self.wrong(name, "date (ISO-8601 string or epoch milliseconds)", other);
                None
            }
        }
    }

    pub fn finish(self) -> Result<(), ApiError> {
        if self.issues.is_empty() {
            Ok(())
        } else {
            Err(ApiError::invalid_body(self.issues))
        }
    }
}

/// A timestamp parameter: exactly one of the two is set, or neither (NULL).
#[derive(Clone, Debug, Default)]
pub struct DateParam {
    pub text: Option<String>,
    pub millis: Option<f64>,
}
