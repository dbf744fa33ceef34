//! `GET /api/v1/auth/verify`: forward authentication for gateways (nginx
//! `auth_request`, Traefik `forwardAuth`, Envoy `ext_authz`).
//!
//! Accepts `Authorization: Bearer <secret key | public token>` (and
//! `x-trigger-branch` for preview branches). Answers 200 with headers that
//! name the environment, or 401 (403 for a scope denial, see below), always
//! with a small JSON body.
//!
//! Response headers on success (a gateway copies them upstream):
//! - `x-api-auth-environment-id`, `x-api-auth-environment-type`
//! - `x-api-auth-method`: `current_key`, `grace_key` or `public_token`
//! - `x-api-auth-matched-by`: `current` or `grace` (for a token: which key verified it)
//! - `x-api-auth-project-id`, `x-api-auth-organization-id`, `x-api-auth-branch`
//!   (secret keys, when known)
//! - `x-api-auth-scopes`: the token's scopes, space-separated (public tokens).
//!   Each scope is percent-encoded outside the scope grammar's characters
//!   (`api_auth_core::scopes`), so a well-formed scope reads as itself and a
//!   malformed one (`read:sessions:x admin`, which matches nothing) can never
//!   split into something that looks like authority (`x%20admin`, not `admin`).
//!
//! Optional scope check: `?action=write&resource=tasks:foo&resource=sessions`
//! asks `api_auth.authorize` whether a public token may do `action` on any of
//! the resources (`type` or `type:id`); a denial is 403. Secret keys are not
//! scope-checked (SPEC §3).
//!
//! Any method is accepted (gateways forward the original method, Envoy also a
//! path prefix: anything under `/api/v1/auth/verify/` is the same route).

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::json;

use api_auth_core::scopes::{self, Resource};

use crate::answers;
use crate::app::{App, Ctx};
use crate::auth::{self, Caller, KeyAuth, TokenAuth};
use crate::errors::{ApiError, Body, Prepared};
use crate::util::percent_decode;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Bytes a scope carries as they are in the header: the scope grammar's
/// (`A-Z a-z 0-9 - _ . ~ : @ / + =`); everything else is percent-encoded.
const SCOPE_ESCAPES: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b':')
    .remove(b'@')
    .remove(b'/')
    .remove(b'+')
    .remove(b'=');

/// The `x-api-auth-scopes` value: every scope, encoded, space-separated.
/// Always visible ASCII, so the header is never dropped.
pub fn scopes_header(scopes: &[String]) -> String {
    scopes.iter().map(|s| utf8_percent_encode(s, SCOPE_ESCAPES).to_string()).collect::<Vec<_>>().join(" ")
}

/// A scope check: the action, and the resources as (type, id).
type ScopeCheck = (String, Vec<(String, Option<String>)>);

/// The scope check asked for in the query string, if any.
fn scope_query(query: Option<&str>) -> Result<Option<ScopeCheck>, ApiError> {
    let Some(q) = query else { return Ok(None) };
    let mut action = None;
    let mut resources = Vec::new();
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(&v.replace('+', " ")).ok_or_else(|| ApiError::bad_request("Invalid query string"))?;
        match k {
            "action" => action = Some(v),
            "resource" => {
                let r = match v.split_once(':') {
                    Some((t, id)) => (t.to_owned(), Some(id.to_owned())),
                    None => (v, None),
                };
                resources.push(r);
            }
            _ => {}
        }
    }
    match action {
        None if resources.is_empty() => Ok(None),
        Some(a) if !a.is_empty() && !resources.is_empty() && resources.len() <= 32 => Ok(Some((a, resources))),
        _ => Err(ApiError::bad_request("A scope check needs one action and 1 to 32 resource parameters")),
    }
}

pub async fn verify(app: &App, req: Request<Incoming>, ctx: &mut Ctx) -> Result<Response<Body>, ApiError> {
    let check = scope_query(req.uri().query())?;
    let cred = auth::credential(req.headers(), &mut ctx.log);
    // From the answer cache when it knows the credential (else a read, on a
    // replica when one is fresh).
    let caller = answers::authenticate(app, cred.as_deref(), req.headers()).await?;
    auth::log_caller(&mut ctx.log, cred.as_deref(), &caller);
    // The scope check is the grammar's OR rule (api_auth_core::scopes, the
    // very code the extension's authorize() runs): no database needed. A
    // denial is 403 for a caller who did authenticate (and is logged as such).
    if let (Caller::Token(t), Some((action, resources))) = (&caller, &check) {
        let resources: Vec<Resource<'_>> = resources.iter().map(|(kind, id)| Resource { kind, id: id.as_deref() }).collect();
        if !scopes::authorize(&t.scopes, action, &resources) {
            return Err(ApiError::scope_denied(format!(
                "Public access token does not allow '{action}' on the requested resources"
            )));
        }
    }
    // The answer depends on the caller alone: rendered once per answer the
    // cache keeps, then only shared.
    let prepared = match &caller {
        Caller::Key(k) => k.verify_answer.get_or_init(|| key_answer(k)),
        Caller::Token(t) => t.verify_answer.get_or_init(|| token_answer(t)),
    };
    Ok(prepared.response(StatusCode::OK))
}

fn key_answer(k: &KeyAuth) -> Prepared {
    let method = k.method();
    let mut values = vec![
        ("x-api-auth-environment-id", k.environment_id.as_str()),
        ("x-api-auth-environment-type", &k.environment_type),
        ("x-api-auth-method", method),
        ("x-api-auth-matched-by", &k.matched_by),
    ];
    for (name, v) in [
        ("x-api-auth-project-id", &k.project_id),
        ("x-api-auth-organization-id", &k.organization_id),
        ("x-api-auth-branch", &k.branch_name),
    ] {
        if let Some(v) = v {
            values.push((name, v));
        }
    }
    let body = json!({
        "ok": true,
        "environmentId": k.environment_id,
        "environmentType": k.environment_type,
        "method": method,
        "matchedBy": k.matched_by,
        "revokedApiKeyId": k.revoked_api_key_id,
    });
    Prepared::json(&body, &values)
}

fn token_answer(t: &TokenAuth) -> Prepared {
    let scopes = scopes_header(&t.scopes);
    let values = vec![
        ("x-api-auth-environment-id", t.environment_id.as_str()),
        ("x-api-auth-environment-type", &t.environment_type),
        ("x-api-auth-method", "public_token"),
        ("x-api-auth-matched-by", &t.matched_by),
        ("x-api-auth-scopes", &scopes),
    ];
    let body = json!({
        "ok": true,
        "environmentId": t.environment_id,
        "environmentType": t.environment_type,
        "method": "public_token",
        "matchedBy": t.matched_by,
        "scopes": t.scopes,
    });
    Prepared::json(&body, &values)
}

#[cfg(test)]
mod tests {
    use super::*;
    use api_auth_core::scopes;

    #[test]
    fn scopes_header_keeps_the_grammar_and_encodes_the_rest() {
        let s = |v: &[&str]| scopes_header(&v.iter().map(|x| x.to_string()).collect::<Vec<_>>());
        assert_eq!(s(&["read:runs", "write:tasks:org/foo", "admin"]), "read:runs write:tasks:org/foo admin");
        assert_eq!(s(&["read:sessions:x admin"]), "read:sessions:x%20admin");
        assert_eq!(s(&["read:tasks:caf\u{e9}", "a,b\"c"]), "read:tasks:caf%C3%A9 a%2Cb%22c");
        // The header's unencoded bytes are exactly the grammar's.
        for b in 0u8..=127 {
            let one = scopes_header(&[(b as char).to_string()]);
            assert_eq!(one.len() == 1, scopes::is_id_byte(b), "byte {b}");
        }
    }
}
