//! Who is calling: read the bearer credential, classify it with
//! `api_auth_core::keys::classify`, and let the SQL functions decide.
//!
//! Nothing here judges a key or a token by itself: a secret key is looked up by
//! `api_auth.find_environment_by_api_key`, a public token is checked by
//! `api_auth.validate_public_jwt`; scopes follow `api_auth_core::scopes`, the
//! code the extension's `authorize` runs. The only
//! local checks are size limits, so that garbage never reaches an index.

use std::sync::{Arc, OnceLock};

use api_auth_core::keys::{self, CredentialKind};
use api_auth_core::tokens;
use hyper::header::{HeaderName, AUTHORIZATION};
use hyper::HeaderMap;
use serde_json::Value;

use crate::db;
use crate::errors::{ApiError, Prepared, Refusal};
use crate::grace::Grace;
use crate::logging::{Describe, RequestLog};

/// Header naming a preview branch (SPEC §3).
pub const BRANCH_HEADER: HeaderName = HeaderName::from_static("x-trigger-branch");
/// Longest branch name considered.
pub const MAX_BRANCH_LEN: usize = 256;

/// A bearer credential as presented. Never printed: logs get [`Describe::describe`].
pub struct Credential {
    pub value: String,
    /// What `keys::classify` says, worked out on first use: for anything
    /// that is not a key that means reading a token's payload, which a token
    /// the answer cache knows is spared ([`Credential::known_token`]).
    kind: OnceLock<CredentialKind>,
}

impl Credential {
    pub fn new(value: String) -> Credential {
        Credential { value, kind: OnceLock::new() }
    }

    pub fn kind(&self) -> CredentialKind {
        *self.kind.get_or_init(|| keys::classify(&self.value))
    }

    /// Not a key by its prefix: it may be a public token (no payload read).
    pub fn may_be_token(&self) -> bool {
        !(self.value.starts_with("tr_") || self.value.starts_with("pk_"))
    }

    /// These very bytes were accepted as a public token before (the answer
    /// cache holds them): they classify as one, no need to look again.
    pub fn known_token(&self) {
        let _ = self.kind.set(CredentialKind::PublicToken);
    }
}

impl Describe for Credential {
    /// What the logs may say about it.
    fn describe(&self) -> String {
        match self.kind() {
            CredentialKind::SecretKey | CredentialKind::PublishableKey => keys::mask(&self.value),
            CredentialKind::PublicToken => "public-token".into(),
            CredentialKind::Unknown => "unknown".into(),
        }
    }
}

/// The `Bearer` credential of the request, if there is a readable one.
///
/// Returns `None` for a missing header, another scheme, non-UTF-8 bytes, or a
/// value longer than any real credential (the token limit).
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let raw = headers.get(AUTHORIZATION)?;
    if raw.len() > tokens::MAX_TOKEN_LEN + 16 {
        return None;
    }
    let text = std::str::from_utf8(raw.as_bytes()).ok()?.trim();
    let (scheme, rest) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let credential = rest.trim();
    (!credential.is_empty()).then_some(credential)
}

/// The request's bearer credential, named in its log line.
pub fn credential(headers: &HeaderMap, log: &mut RequestLog) -> Option<Arc<Credential>> {
    let c = Arc::new(Credential::new(bearer(headers)?.to_string()));
    log.credential = Some(c.clone());
    Some(c)
}

/// The `x-trigger-branch` header. `Err` when it is present but unusable (not
/// UTF-8, too long): such a branch can name no environment.
pub fn branch(headers: &HeaderMap) -> Result<Option<String>, ()> {
    let Some(raw) = headers.get(&BRANCH_HEADER) else { return Ok(None) };
    if raw.len() > MAX_BRANCH_LEN {
        return Err(());
    }
    let s = std::str::from_utf8(raw.as_bytes()).map_err(|_| ())?.trim();
    Ok((!s.is_empty()).then(|| s.to_string()))
}

/// An environment authenticated by a secret key.
pub struct KeyAuth {
    pub environment_id: String,
    pub environment_type: String,
    /// `current` or `grace`.
    pub matched_by: String,
    pub revoked_api_key_id: Option<String>,
    pub project_id: Option<String>,
    pub organization_id: Option<String>,
    pub branch_name: Option<String>,
    /// End of the grace window (ISO-8601 text, Unix seconds), for a grace hit.
    pub grace_expires_at: Option<(String, f64)>,
    /// What `GET /api/v1/auth/verify` answers for it ([`crate::verify`]),
    /// rendered on first use: once per answer the cache keeps.
    pub verify_answer: OnceLock<Prepared>,
}

impl KeyAuth {
    /// `current_key` or `grace_key`.
    pub fn method(&self) -> &'static str {
        if self.matched_by == "grace" {
            "grace_key"
        } else {
            "current_key"
        }
    }
}

/// Look a secret key up (honouring `x-trigger-branch`). `None`: it
/// authenticates nothing.
pub async fn find_by_key(
    client: &deadpool_postgres::Client,
    key: &str,
    headers: &HeaderMap,
) -> Result<Option<KeyAuth>, ApiError> {
    if key.len() > keys::MAX_KEY_LEN {
        return Ok(None);
    }
    let Ok(branch) = branch(headers) else { return Ok(None) };
    let rows = db::query(client, &db::FIND_ENVIRONMENT, &[&key, &branch], "Environment not found").await?;
    Ok(rows.first().map(|r| KeyAuth {
        environment_id: r.get(0),
        environment_type: r.get(1),
        matched_by: r.get::<_, Option<String>>(2).unwrap_or_else(|| "current".into()),
        revoked_api_key_id: r.get(3),
        project_id: r.get(4),
        organization_id: r.get(5),
        branch_name: r.get(6),
        grace_expires_at: grace_end(r, 7),
        verify_answer: OnceLock::new(),
    }))
}

/// Columns `at` (ISO-8601 text) and `at + 1` (Unix seconds) of `r`, when set.
pub fn grace_end(r: &tokio_postgres::Row, at: usize) -> Option<(String, f64)> {
    Some((r.get::<_, Option<String>>(at)?, r.get::<_, Option<f64>>(at + 1)?))
}

/// Record in the request log that `key` authenticated `k`: the environment,
/// the method, and the grace window when the key is in one.
pub fn accept_key(log: &mut RequestLog, key: &str, k: &KeyAuth) {
    log.environment = Some(k.environment_id.clone());
    log.auth = Some(k.method());
    if let (true, Some((iso, epoch))) = (k.matched_by == "grace", &k.grace_expires_at) {
        log.grace = Some(Grace::new(
            "grace_key",
            &k.environment_id,
            *epoch,
            iso.clone(),
            k.revoked_api_key_id.clone(),
            Some(keys::mask(key)),
        ));
    }
}

/// Record in the request log that a public token authenticated: the
/// environment, and the grace window when only a key in grace verified it.
pub fn accept_token(log: &mut RequestLog, t: &TokenAuth) {
    log.environment = Some(t.environment_id.clone());
    log.auth = Some("public_token");
    if let (true, Some((iso, epoch))) = (t.matched_by == "grace", &t.grace_expires_at) {
        log.grace = Some(Grace::new("public_token", &t.environment_id, *epoch, iso.clone(), t.revoked_api_key_id.clone(), None));
    }
}

/// 401 "Invalid or Missing API key" for a credential that authenticates
/// nothing, with the refusal reason its kind gives.
pub fn refuse(cred: Option<&Credential>) -> ApiError {
    let reason = match cred.map(Credential::kind) {
        None => Refusal::MissingCredential,
        Some(CredentialKind::SecretKey) => Refusal::UnknownKey,
        Some(CredentialKind::PublishableKey) => Refusal::PublishableKey,
        Some(CredentialKind::PublicToken) => Refusal::TokenNotAccepted,
        Some(CredentialKind::Unknown) => Refusal::UnknownCredential,
    };
    ApiError::invalid_api_key().with_refusal(reason)
}

/// A public access token that `api_auth.validate_public_jwt` accepted.
pub struct TokenAuth {
    pub environment_id: String,
    pub environment_type: String,
    pub claims: Value,
    /// The `scopes` claim (its string elements).
    pub scopes: Vec<String>,
    pub matched_by: String,
    pub revoked_api_key_id: Option<String>,
    /// End of the grace window of the key that verified the signature (ISO-8601
    /// text, Unix seconds), when that key is in grace.
    pub grace_expires_at: Option<(String, f64)>,
    /// What `GET /api/v1/auth/verify` answers for it ([`crate::verify`]),
    /// rendered on first use: once per answer the cache keeps.
    pub verify_answer: OnceLock<Prepared>,
}

/// The string elements of a `scopes` claim.
fn scopes_of(claims: &Value) -> Vec<String> {
    match claims.get("scopes") {
        Some(Value::Array(a)) => a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
        _ => Vec::new(),
    }
}

/// Validate a public token. `Err(code)` is the SQL function's reason.
pub async fn validate_token(client: &deadpool_postgres::Client, token: &str) -> Result<Result<TokenAuth, String>, ApiError> {
    if token.len() > tokens::MAX_TOKEN_LEN {
        return Ok(Err("malformed".into()));
    }
    let rows = db::query(client, &db::VALIDATE, &[&token], "").await?;
    let Some(r) = rows.first() else {
        return Err(ApiError::internal().with_detail("validate_public_jwt returned no row"));
    };
    let ok: Option<bool> = r.get(0);
    if ok != Some(true) {
        return Ok(Err(r.get::<_, Option<String>>(1).unwrap_or_else(|| "invalid".into())));
    }
    let claims = r.get::<_, Option<Value>>(4).unwrap_or(Value::Null);
    Ok(Ok(TokenAuth {
        environment_id: r.get(2),
        environment_type: r.get::<_, Option<String>>(3).unwrap_or_default(),
        scopes: scopes_of(&claims),
        claims,
        matched_by: r.get::<_, Option<String>>(5).unwrap_or_else(|| "current".into()),
        revoked_api_key_id: r.get(6),
        grace_expires_at: grace_end(r, 7),
        verify_answer: OnceLock::new(),
    }))
}

/// Who is calling a route that accepts a secret key or a public token
/// (shared: the answer cache hands out the answers it keeps).
pub enum Caller {
    Key(Arc<KeyAuth>),
    Token(Arc<TokenAuth>),
}

/// Human wording of a token refusal.
pub fn token_error_message(code: &str) -> &'static str {
    match code {
        "expired" => "Public access token has expired",
        "claim_invalid" => "Public access token has an invalid claim",
        "invalid_algorithm" => "Public access token uses an unsupported algorithm",
        "environment_not_found" => "Public access token names an unknown environment",
        "missing_subject" => "Public access token has no subject",
        "invalid_signature" => "Public access token signature is invalid",
        _ => "Invalid public access token",
    }
}

/// Authenticate a secret key or a public token; 401 otherwise (publishable
/// keys and unknown credentials included). A token refusal carries the SQL
/// function's reason as the error's (logged) detail. Pure database work, so
/// that it can run on a replica and again on the primary
/// ([`crate::replicas::Reads::auth_read`]); [`log_caller`] records the result.
pub async fn authenticate(
    client: &deadpool_postgres::Client,
    cred: Option<&Credential>,
    headers: &HeaderMap,
) -> Result<Caller, ApiError> {
    let Some(c) = cred else { return Err(refuse(None)) };
    match c.kind() {
        CredentialKind::SecretKey => match find_by_key(client, &c.value, headers).await? {
            Some(k) => Ok(Caller::Key(Arc::new(k))),
            None => Err(refuse(cred)),
        },
        CredentialKind::PublicToken => match validate_token(client, &c.value).await? {
            Ok(t) => Ok(Caller::Token(Arc::new(t))),
            Err(code) => Err(ApiError::unauthorized(token_error_message(&code))
                .with_refusal(Refusal::from_token_error(&code))
                .with_detail(format!("token refused: {code}"))),
        },
        CredentialKind::PublishableKey | CredentialKind::Unknown => Err(refuse(cred)),
    }
}

/// Record in the request log who [`authenticate`] accepted: the environment,
/// the method, and the grace window when the key in use is in one.
pub fn log_caller(log: &mut RequestLog, cred: Option<&Credential>, caller: &Caller) {
    match caller {
        Caller::Key(k) => {
            if let Some(c) = cred {
                accept_key(log, &c.value, k);
            }
        }
        Caller::Token(t) => accept_token(log, t),
    }
}
