//! Public access tokens in SQL (SPEC §3–§4): minting with the canonical
//! current key, and validation with the revoked-key fallback.
//!
//! Where is the grace fallback for tokens? [`verify_with_environment_keys`]:
//! the current key is tried first; only if it fails are the signing
//! environment's keys still in grace tried, newest window first.

use std::ffi::CString;
use std::ops::ControlFlow;
use std::time::{SystemTime, UNIX_EPOCH};

use api_auth_core::expiration;
use api_auth_core::tokens::{self, ClaimPolicy, TokenError, UnverifiedToken};
use pgrx::callconv::{BoxRet, FcInfo};
use pgrx::datum::Datum;
use pgrx::fcinfo::direct_function_call_as_datum;
use pgrx::pgrx_sql_entity_graph::metadata::{
    ArgumentError, ReturnsError, ReturnsRef, SqlMappingRef, SqlTranslatable, TypeOrigin,
};
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{Map, Value};

use crate::errors::{ApiAuthError, OrReport, Result};
use crate::lookup::{self, MatchedBy};
use crate::probe::{self, Key};
use crate::settings;

/// Largest `claims` object accepted by `mint_public_jwt`: the token must stay
/// well under [`tokens::MAX_TOKEN_LEN`] to be accepted back.
pub const MAX_CLAIMS_LEN: usize = 4 * 1024;

/// The environment a token is for, and the key material that may have signed it.
pub struct SigningEnvironment {
    pub id: String,
    pub kind: String,
    /// The environment whose keys sign: the parent for a preview branch.
    pub signer_id: String,
    /// The signer's current secret key.
    pub current_key: String,
}

pub fn now_epoch() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

fn policy_settings() -> (String, String) {
    (settings::jwt_issuer(), settings::jwt_audience())
}

/// Load an environment that can be a token's subject: live (not archived, nor
/// under an archived parent) and not a PREVIEW parent, which authenticates only
/// through its branches, by key or by token. Two primary-key probes at most.
pub fn signing_environment(id: &str) -> Result<Option<SigningEnvironment>> {
    let Some(env) = lookup::environment_by_id(id)? else { return Ok(None) };
    let (signer_id, current_key) = match env.parent_environment_id {
        Some(parent_id) => match lookup::environment_by_id(&parent_id)? {
            Some(parent) => (parent.id, parent.api_key),
            None => return Ok(None),
        },
        None if env.kind == "PREVIEW" => return Ok(None),
        None => (env.id.clone(), env.api_key),
    };
    if current_key.is_empty() {
        return Ok(None);
    }
    Ok(Some(SigningEnvironment { id: env.id, kind: env.kind, signer_id, current_key }))
}

/// Sign a token for `subject` with `key`, using the `api_auth.jwt_*` settings.
pub fn sign(key: &str, subject: &str, claims: Map<String, Value>, exp: i64) -> Result<String> {
    let (issuer, audience) = policy_settings();
    let policy = ClaimPolicy { issuer: &issuer, audience: &audience, ..ClaimPolicy::default() };
    tokens::mint(key.as_bytes(), subject, claims, &policy, now_epoch(), exp).map_err(ApiAuthError::invalid)
}

/// Seconds since the Unix epoch of a PostgreSQL timestamp (rounded down).
pub fn epoch_seconds(t: TimestampWithTimeZone) -> i64 {
    const UNIX_EPOCH_IN_PG_SECONDS: i64 = 946_684_800; // 2000-01-01 - 1970-01-01
    pg_sys::TimestampTz::from(t).div_euclid(1_000_000) + UNIX_EPOCH_IN_PG_SECONDS
}

/// The latest `exp` a token minted for a caller may carry: what was asked,
/// but never past the end of the grace window of the key that authenticated
/// the caller. A key in grace may have been rotated because it leaked; ending
/// its window early must end everything it obtained.
pub fn cap_to_grace(exp: i64, grace_expires_at: Option<TimestampWithTimeZone>) -> i64 {
    match grace_expires_at {
        Some(end) => exp.min(epoch_seconds(end)),
        None => exp,
    }
}

/// Which key verified a token's signature.
pub struct Verified {
    pub matched_by: MatchedBy,
    pub revoked_api_key_id: Option<String>,
    /// End of the grace window of the key that verified it (grace only).
    pub grace_expires_at: Option<TimestampWithTimeZone>,
}

/// The grace fallback for tokens: current key first, then the signing
/// environment's keys still in grace, the window ending last first. The
/// (runtime_environment_id, expires_at) index skips expired rows.
fn verify_with_environment_keys(token: &UnverifiedToken<'_>, env: &SigningEnvironment) -> Result<Option<Verified>> {
    if token.verify_signature(env.current_key.as_bytes()) {
        return Ok(Some(Verified { matched_by: MatchedBy::Current, revoked_api_key_id: None, grace_expires_at: None }));
    }
    let mut in_grace: Vec<(String, String, Option<TimestampWithTimeZone>)> = Vec::new();
    probe::REVOKED_BY_ENVIRONMENT.scan(
        &[Key::Equals(&env.signer_id), Key::After(probe::now())],
        &[c"id", c"api_key", c"expires_at"],
        |row| {
            if let (Some(id), Some(key)) = (row.text(0), row.text(1)) {
                in_grace.push((id, key, row.timestamp(2)));
            }
            ControlFlow::<()>::Continue(())
        },
    )?;
    // Index order is expires_at ascending.
    Ok(in_grace.into_iter().rev().find(|(_, key, _)| token.verify_signature(key.as_bytes())).map(|(id, _, expires_at)| {
        Verified { matched_by: MatchedBy::Grace, revoked_api_key_id: Some(id), grace_expires_at: expires_at }
    }))
}

fn mint(
    api_key: Option<&str>,
    claims: Option<JsonB>,
    expiration: Option<&str>,
    branch_name: Option<&str>,
) -> Result<Option<String>> {
    let claims = match claims.map(|j| j.0) {
        None => Map::new(),
        Some(Value::Object(map)) => map,
        Some(_) => return Err(ApiAuthError::invalid("claims must be a JSON object")),
    };
    if serde_json::to_vec(&claims).map_or(0, |v| v.len()) > MAX_CLAIMS_LEN {
        return Err(ApiAuthError::invalid(format!("claims must be at most {MAX_CLAIMS_LEN} bytes of JSON")));
    }
    let exp = expiration::resolve(expiration.unwrap_or("1h"), now_epoch()).map_err(|e| ApiAuthError::invalid(e.to_string()))?;
    let Some(api_key) = api_key else { return Ok(None) };
    let Some(env) = lookup::find(api_key, branch_name)? else { return Ok(None) };
    let exp = cap_to_grace(exp, env.grace_expires_at);
    // env.api_key is the canonical current key (the parent's for a branch),
    // never the possibly-in-grace key the caller presented.
    sign(&env.api_key, &env.id, claims, exp).map(Some)
}

/// Mint a public access token for the environment `api_key` authenticates
/// (current key or a key in grace), signed with that environment's canonical
/// current key. NULL when the key authenticates nothing. Minted with a key in
/// grace, the token expires no later than that key's window.
///
/// No `SET search_path` (a per-call cost on a request path): it runs no SQL,
/// only the lookup's index probes.
#[pg_extern(security_definer)]
fn mint_public_jwt(
    api_key: Option<&str>,
    claims: default!(Option<JsonB>, "'{}'"),
    expiration: default!(Option<&str>, "'1h'"),
    branch_name: default!(Option<&str>, "NULL"),
) -> Option<String> {
    mint(api_key, claims, expiration, branch_name).or_report()
}

/// The outcome of validating a token: the verified environment and claims, and
/// which key verified it; or the reason it was refused.
pub struct Validation {
    pub environment: SigningEnvironment,
    /// The verified payload's JSON text, as sent.
    pub claims_json: String,
    pub verified: Verified,
}

pub fn validate(token: &str) -> Result<std::result::Result<Validation, TokenError>> {
    let parsed = match tokens::parse(token) {
        Ok(p) => p,
        Err(e) => return Ok(Err(e)),
    };
    let subject = match parsed.subject() {
        Ok(s) => s,
        Err(e) => return Ok(Err(e)),
    };
    let Some(environment) = signing_environment(subject)? else {
        return Ok(Err(TokenError::EnvironmentNotFound));
    };
    let Some(verified) = verify_with_environment_keys(&parsed, &environment)? else {
        return Ok(Err(TokenError::InvalidSignature));
    };
    let (issuer, audience) = policy_settings();
    let policy = ClaimPolicy {
        issuer: &issuer,
        audience: &audience,
        leeway: settings::jwt_leeway(),
        require_exp: settings::jwt_require_exp(),
    };
    if let Err(e) = parsed.check_claims(&policy, now_epoch()) {
        return Ok(Err(e));
    }
    // What jsonb cannot store (U+0000, numbers beyond numeric) is refused
    // here rather than failing while the row is built.
    if !tokens::fits_jsonb(parsed.payload_json()) {
        return Ok(Err(TokenError::ClaimInvalid));
    }
    let claims_json = parsed.payload_json().to_owned();
    Ok(Ok(Validation { environment, claims_json, verified }))
}

/// JSON text that becomes `jsonb` through PostgreSQL's own parser: a verified
/// token's payload, handed on as sent instead of being re-serialised from the
/// parsed claims (serde's output would be parsed by PostgreSQL all the same).
pub struct JsonbText(pub String);

impl IntoDatum for JsonbText {
    fn into_datum(self) -> Option<pg_sys::Datum> {
        // JSON text never holds a raw NUL byte (inside strings it is escaped).
        let text = CString::new(self.0).ok()?;
        // SAFETY: jsonb_in takes one cstring argument and raises on bad input.
        unsafe { direct_function_call_as_datum(pg_sys::jsonb_in, &[Some(text.as_ptr().into())]) }
    }

    fn type_oid() -> pg_sys::Oid {
        pg_sys::JSONBOID
    }
}

// SAFETY: returns exactly what into_datum makes, NULL for None.
unsafe impl BoxRet for JsonbText {
    unsafe fn box_into<'fcx>(self, fcinfo: &mut FcInfo<'fcx>) -> Datum<'fcx> {
        match self.into_datum() {
            Some(datum) => unsafe { fcinfo.return_raw_datum(datum) },
            None => fcinfo.return_null(),
        }
    }
}

// SAFETY: a JsonbText datum is a jsonb datum.
unsafe impl SqlTranslatable for JsonbText {
    const TYPE_IDENT: &'static str = pgrx::pgrx_resolved_type!(JsonbText);
    const TYPE_ORIGIN: TypeOrigin = TypeOrigin::External;
    const ARGUMENT_SQL: std::result::Result<SqlMappingRef, ArgumentError> = Ok(SqlMappingRef::literal("jsonb"));
    const RETURN_SQL: std::result::Result<ReturnsRef, ReturnsError> = Ok(ReturnsRef::One(SqlMappingRef::literal("jsonb")));
}

type ValidationRow = (
    bool,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<JsonbText>,
    Option<String>,
    Option<String>,
    Option<TimestampWithTimeZone>,
);

/// Validate a public access token. Always one row: `ok`, and either the
/// environment, claims and verifying key, or a stable `error` code
/// (`malformed`, `invalid_algorithm`, `missing_subject`, `environment_not_found`,
/// `invalid_signature`, `expired`, `claim_invalid`). For a token verified by a
/// key in grace, `grace_expires_at` says when that key (and so the token) stops working.
///
/// Declared by hand, like `find_environment_by_api_key` and for the same
/// reasons: the named result type `api_auth.token_validation`, and no
/// `SET search_path` (it runs no SQL, only index probes).
#[pg_extern(sql = "
CREATE FUNCTION api_auth.validate_public_jwt(token text)
RETURNS SETOF api_auth.token_validation
STABLE SECURITY DEFINER ROWS 1
LANGUAGE c AS '@MODULE_PATHNAME@', 'validate_public_jwt_wrapper';
")]
fn validate_public_jwt(
    token: Option<&str>,
) -> TableIterator<
    'static,
    (
        name!(ok, bool),
        name!(error, Option<String>),
        name!(environment_id, Option<String>),
        name!(environment_type, Option<String>),
        name!(claims, Option<JsonbText>),
        name!(matched_by, Option<String>),
        name!(revoked_api_key_id, Option<String>),
        name!(grace_expires_at, Option<TimestampWithTimeZone>),
    ),
> {
    let refused = |e: TokenError| -> ValidationRow { (false, Some(e.code().to_owned()), None, None, None, None, None, None) };
    let row = match token {
        None => refused(TokenError::Malformed),
        Some(token) => match validate(token).or_report() {
            Ok(v) => (
                true,
                None,
                Some(v.environment.id),
                Some(v.environment.kind),
                Some(JsonbText(v.claims_json)),
                Some(v.verified.matched_by.as_str().to_owned()),
                v.verified.revoked_api_key_id,
                v.verified.grace_expires_at,
            ),
            Err(e) => refused(e),
        },
    };
    TableIterator::once(row)
}
