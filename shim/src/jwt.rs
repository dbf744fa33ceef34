//! `POST /api/v1/auth/jwt/claims` and `POST /api/v1/auth/jwt` (SPEC §4, §5).

use api_auth_core::keys::CredentialKind;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Map, Value};

use crate::answers;
use crate::app::{App, Ctx};
use crate::auth::{self, Caller, Credential, KeyAuth};
use crate::body::{self, Fields};
use crate::db;
use crate::errors::{issue, json_response, ApiError, Body};

/// Expiry of minted tokens when the body names none (SPEC §3: the mint route's default).
const DEFAULT_EXPIRATION: &str = "1h";

/// The secret key of the request, or the platform's 401.
fn secret_key(cred: Option<&Credential>) -> Result<&str, ApiError> {
    match cred {
        Some(c) if c.kind() == CredentialKind::SecretKey => Ok(&c.value),
        _ => Err(auth::refuse(cred)),
    }
}

/// `{"sub": <environment id>, "pub": true}` for the SDK's `createPublicToken`,
/// which then signs the token itself with the secret key it holds.
pub async fn claims(app: &App, req: Request<Incoming>, ctx: &mut Ctx) -> Result<Response<Body>, ApiError> {
    let cred = auth::credential(req.headers(), &mut ctx.log);
    let key = secret_key(cred.as_deref())?;
    let Caller::Key(env) = answers::authenticate(app, cred.as_deref(), req.headers()).await? else {
        return Err(auth::refuse(cred.as_deref()));
    };
    auth::accept_key(&mut ctx.log, key, &env);
    Ok(json_response(StatusCode::OK, &json!({ "sub": env.environment_id, "pub": true })))
}

/// Mint a public token signed with the environment's canonical current key.
///
/// Body `{"claims"?: {...}, "expirationTime"?: number | string}`; an empty body
/// is `{}`. A number is passed to SQL as its decimal digits (absolute epoch
/// seconds), a string as is ("15m", "1h", "2d"); absent, one hour (SPEC §3).
pub async fn mint(app: &App, req: Request<Incoming>, ctx: &mut Ctx) -> Result<Response<Body>, ApiError> {
    let (parts, incoming) = req.into_parts();
    let cred = auth::credential(&parts.headers, &mut ctx.log);
    let key = secret_key(cred.as_deref())?.to_string();
    let bytes = body::read(incoming, &parts.headers, body::MAX_BODY, ctx.deadline).await?;
    let parsed = parse_mint_body(&bytes);
    let (headers, parsed, key, presented) = (&parts.headers, &parsed, key.as_str(), cred.as_deref());
    // Minting only reads (the canonical current key), so it is an
    // authentication read as a whole: a replica that does not know the key yet
    // has its refusal confirmed on the primary. The work answers (the token or
    // a 400 for a caller who authenticates, and who authenticated) or a refusal.
    let (answer, found) = app
        .reads
        .auth_read(|client| async move {
            let (claims, expiration) = match parsed {
                Ok(p) => p.clone(),
                Err(e) => {
                    // Authentication comes first: an unknown key is 401 whatever the body.
                    return match auth::find_by_key(&client, key, headers).await? {
                        Some(k) => Ok((Err(e.clone()), k)),
                        None => Err(auth::refuse(presented)),
                    };
                }
            };
            let Ok(branch) = auth::branch(headers) else { return Err(auth::refuse(presented)) };
            let expiration = expiration.unwrap_or_else(|| DEFAULT_EXPIRATION.to_string());
            let rows = match db::query(&client, &db::MINT, &[&key, &claims, &expiration, &branch], "").await {
                Ok(r) => r,
                Err(e) if e.status == StatusCode::BAD_REQUEST => {
                    // Bad claims or expiration, but only for a caller who authenticates.
                    return match auth::find_by_key(&client, key, headers).await? {
                        Some(k) => Ok((Err(e), k)),
                        None => Err(auth::refuse(presented)),
                    };
                }
                Err(e) => return Err(e),
            };
            let Some(row) = rows.first() else { return Err(auth::refuse(presented)) };
            let Some(token) = row.get::<_, Option<String>>(0) else { return Err(auth::refuse(presented)) };
            // What the same statement's lookup said about the key.
            let found = KeyAuth {
                environment_id: row.get::<_, Option<String>>(3).unwrap_or_default(),
                environment_type: String::new(),
                matched_by: row.get::<_, Option<String>>(1).unwrap_or_else(|| "current".into()),
                revoked_api_key_id: row.get(2),
                project_id: None,
                organization_id: None,
                branch_name: None,
                grace_expires_at: auth::grace_end(row, 4),
                verify_answer: Default::default(),
            };
            Ok((Ok(token), found))
        })
        .await?;
    auth::accept_key(&mut ctx.log, key, &found);
    let token = answer?;
    Ok(json_response(StatusCode::OK, &json!({ "token": token })))
}

fn parse_mint_body(bytes: &[u8]) -> Result<(Value, Option<String>), ApiError> {
    let map = body::object(bytes, Some(Map::new()))?;
    let mut f = Fields::new(&map);
    let claims = f.object("claims", false).unwrap_or_else(|| json!({}));
    let expiration = match map.get("expirationTime") {
        None => None,
        Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= 64 => Some(s.trim().to_string()),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(secs) => Some(secs.to_string()),
            None => {
                f.issues.push(issue(
                    &["expirationTime"],
                    "invalid_type",
                    "Expected a whole number of epoch seconds or a duration like \"1h\"",
                ));
                None
            }
        },
        Some(_) => {
            f.issues.push(issue(
                &["expirationTime"],
                "invalid_type",
                "Expected a number (epoch seconds) or a string like \"15m\", \"1h\", \"2d\"",
            ));
            None
        }
    };
    f.finish()?;
    Ok((claims, expiration))
}
