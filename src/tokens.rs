//! Public access tokens in SQL (SPEC §3–§4): minting with the canonical
//! current key, and validation with the revoked-key fallback.
//!
//! Where is the grace fallback for tokens? [`verify_with_environment_keys`]:
//! the current key is tried first; only if it fails are the signing
//! environment's keys still in grace tried, newest window first.

use std::time::{SystemTime, UNIX_EPOCH};

use api_auth_core::expiration;
use api_auth_core::tokens::{self, ClaimPolicy, TokenError, UnverifiedToken};
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{Map, Value};

use crate::errors::{ApiAuthError, OrReport, Result};
use crate::lookup::{self, MatchedBy};
use crate::plan;
use crate::probe;
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

// Schema-qualified operators: this runs under the caller's search_path.
plan!(GRACE_KEYS, false, [TEXTOID],
    "SELECT id, api_key FROM api_auth.revoked_api_key \
     WHERE runtime_environment_id OPERATOR(pg_catalog.=) $1 \
       AND expires_at OPERATOR(pg_catalog.>) pg_catalog.now() \
     ORDER BY expires_at DESC");

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
    let Some([Some(id), _, Some(kind), api_key, _, parent_id, ..]) = probe::BY_ID.live_environment(id)? else {
        return Ok(None);
    };
    let (signer_id, current_key) = match parent_id {
        Some(parent_id) => match probe::BY_ID.live_environment(&parent_id)? {
            Some([_, _, _, parent_key, ..]) => (parent_id, parent_key),
            None => return Ok(None),
        },
        None if kind == "PREVIEW" => return Ok(None),
        None => (id.clone(), api_key),
    };
    let Some(current_key) = current_key else { return Ok(None) };
    Ok(Some(SigningEnvironment { id, kind, signer_id, current_key }))
}

/// Sign a token for `subject` with `key`, using the `api_auth.jwt_*` settings.
pub fn sign(key: &str, subject: &str, claims: Map<String, Value>, exp: i64) -> Result<String> {
    let (issuer, audience) = policy_settings();
    let policy = ClaimPolicy { issuer: &issuer, audience: &audience, ..ClaimPolicy::default() };
    tokens::mint(key.as_bytes(), subject, claims, &policy, now_epoch(), exp).map_err(ApiAuthError::invalid)
}

/// The grace fallback for tokens: current key first, then keys in grace.
/// Only a token the current key does not verify costs a query.
fn verify_with_environment_keys(
    token: &UnverifiedToken<'_>,
    env: &SigningEnvironment,
) -> Result<Option<(MatchedBy, Option<String>)>> {
    if token.verify_signature(env.current_key.as_bytes()) {
        return Ok(Some((MatchedBy::Current, None)));
    }
    Spi::connect(|client| {
        for row in GRACE_KEYS.run(client, &[env.signer_id.as_str().into()])? {
            let key: Option<String> = row.get(2)?;
            if key.is_some_and(|k| token.verify_signature(k.as_bytes())) {
                return Ok(Some((MatchedBy::Grace, row.get(1)?)));
            }
        }
        Ok(None)
    })
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
    let exp = expiration::resolve(expiration.unwrap_or("1h"), now_epoch())
        .map_err(|e| ApiAuthError::invalid(e.to_string()))?;
    let Some(api_key) = api_key else { return Ok(None) };
    let Some(env) = lookup::find(api_key, branch_name)? else { return Ok(None) };
    // env.api_key is the canonical current key (the parent's for a branch),
    // never the possibly-in-grace key the caller presented.
    sign(&env.api_key, &env.id, claims, exp).map(Some)
}

/// Mint a public access token for the environment `api_key` authenticates
/// (current key or a key in grace), signed with that environment's canonical
/// current key. NULL when the key authenticates nothing.
///
/// No `SET search_path` (a per-call cost on a request path): the only SQL it
/// runs is the lookup's, which is schema-qualified.
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
    pub claims: Map<String, Value>,
    pub matched_by: MatchedBy,
    pub revoked_api_key_id: Option<String>,
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
    let Some((matched_by, revoked_api_key_id)) = verify_with_environment_keys(&parsed, &environment)? else {
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
    Ok(Ok(Validation { environment, claims: parsed.into_claims(), matched_by, revoked_api_key_id }))
}

type ValidationRow = (
    bool,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<JsonB>,
    Option<String>,
    Option<String>,
);

/// Validate a public access token. Always one row: `ok`, and either the
/// environment, claims and verifying key, or a stable `error` code
/// (`malformed`, `invalid_algorithm`, `missing_subject`, `environment_not_found`,
/// `invalid_signature`, `expired`, `claim_invalid`).
///
/// Declared by hand, like `find_environment_by_api_key` and for the same
/// reasons: the named result type `api_auth.token_validation`, and no
/// `SET search_path` (all SQL it runs is schema-qualified).
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
        name!(claims, Option<JsonB>),
        name!(matched_by, Option<String>),
        name!(revoked_api_key_id, Option<String>),
    ),
> {
    let refused = |e: TokenError| -> ValidationRow { (false, Some(e.code().to_owned()), None, None, None, None, None) };
    let row = match token {
        None => refused(TokenError::Malformed),
        Some(token) => match validate(token).or_report() {
            Ok(v) => (
                true,
                None,
                Some(v.environment.id),
                Some(v.environment.kind),
                Some(JsonB(Value::Object(v.claims))),
                Some(v.matched_by.as_str().to_owned()),
                v.revoked_api_key_id,
            ),
            Err(e) => refused(e),
        },
    };
    TableIterator::once(row)
}
