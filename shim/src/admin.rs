//! Admin routes: `Authorization: Bearer <admin token>`, compared in constant
//! time. With no admin token configured they all answer 403. They use the
//! admin pool (API_AUTH_ADMIN_DATABASE_URL, by default the public one).
//!
//! - `POST /admin/api/v1/revoked-api-keys/{id}` `{"expiresAt"}`: move the end of
//!   a grace window (past: the old key stops now; future: it works until then).
//! - `POST /admin/api/v1/environments/{id}/regenerate-api-key`
//!   `{"graceSeconds"?: number}`: rotate; the old key stays valid for the grace
//!   window (the extension's default, 24 hours, when absent).
//! - `POST /admin/api/v1/environments` `{"slug", "type", "projectId"?,
//!   "organizationId"?, "parentEnvironmentId"?, "branchName"?}`: create one.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{HeaderMap, Request, Response, StatusCode};
use serde_json::{json, Map, Value};
use subtle::ConstantTimeEq;

use crate::app::{App, Ctx};
use crate::auth;
use crate::body::{self, Fields};
use crate::db;
use crate::errors::{issue, json_response, ApiError, Body, Refusal};

/// 403 when no admin token is configured, 401 when the bearer is missing or wrong.
pub fn check_admin(app: &App, headers: &HeaderMap, ctx: &mut Ctx) -> Result<(), ApiError> {
    let Some(expected) = app.admin_token.as_deref() else {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "Admin routes are disabled: no admin token is configured")
            .with_refusal(Refusal::AdminDisabled));
    };
    let presented = auth::bearer(headers).unwrap_or_default();
    // `ct_eq` on slices of different lengths is false without comparing
    // content; only the length can leak, never a prefix.
    if bool::from(presented.as_bytes().ct_eq(expected.as_bytes())) {
        ctx.log.auth = Some("admin");
        Ok(())
    } else {
        ctx.log.credential = Some(Arc::new(if presented.is_empty() { "none" } else { "wrong-admin-token" }));
        Err(ApiError::unauthorized("Invalid or missing admin token").with_refusal(Refusal::InvalidAdminToken))
    }
}

async fn admin_body(req: Request<Incoming>, ctx: &Ctx, empty_ok: bool) -> Result<Map<String, Value>, ApiError> {
    let (parts, incoming) = req.into_parts();
    let bytes = body::read(incoming, &parts.headers, body::MAX_BODY, ctx.deadline).await?;
    body::object(&bytes, empty_ok.then(Map::new))
}

/// Read-your-writes for this shim's own admin writes: the answer cache drops
/// what it holds about `environment` as soon as the write has committed,
/// without waiting for the change notification (which still follows, and
/// also reaches the environment's preview branches and other shims).
fn forget(app: &App, environment: &str) {
    if let Some(answers) = &app.answers {
        answers.invalidate(environment);
    }
}

pub async fn set_revoked_expiry(
    app: &App,
    req: Request<Incoming>,
    ctx: &mut Ctx,
    id: String,
) -> Result<Response<Body>, ApiError> {
    check_admin(app, req.headers(), ctx)?;
    let map = admin_body(req, ctx, false).await?;
    let mut f = Fields::new(&map);
    let expires = f.date("expiresAt", true);
    f.finish()?;
    let expires = expires.unwrap_or_default();
    let mut client = db::client(&app.pools.admin).await?;
    let rows = db::admin_query(
        &mut client,
        ctx.log.route,
        &db::SET_REVOKED_EXPIRY,
        &[&id, &expires.text, &expires.millis],
        "Revoked API key not found",
    )
    .await?;
    let Some(r) = rows.first() else { return Err(ApiError::not_found("Revoked API key not found")) };
    let env: String = r.get(1);
    forget(app, &env);
    ctx.log.environment = Some(env.clone());
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "success": true,
            "revokedApiKey": { "id": r.get::<_, String>(0), "runtimeEnvironmentId": env, "expiresAt": r.get::<_, Option<String>>(2) },
        }),
    ))
}

pub async fn regenerate(app: &App, req: Request<Incoming>, ctx: &mut Ctx, env: String) -> Result<Response<Body>, ApiError> {
    check_admin(app, req.headers(), ctx)?;
    let map = admin_body(req, ctx, true).await?;
    let grace = match map.get("graceSeconds") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) if n.as_f64().is_some_and(|s| (0.0..=366.0 * 86_400.0).contains(&s)) => n.as_f64(),
        Some(_) => {
            return Err(ApiError::invalid_body(vec![issue(
                &["graceSeconds"],
                "invalid_type",
                "Expected a number of seconds between 0 and 31622400",
            )]))
        }
    };
    ctx.log.environment = Some(env.clone());
    let mut client = db::client(&app.pools.admin).await?;
    let route = ctx.log.route;
    let rows = match grace {
        Some(g) => db::admin_query(&mut client, route, &db::ROTATE, &[&env, &g], "Environment not found").await?,
        None => db::admin_query(&mut client, route, &db::ROTATE_DEFAULT_GRACE, &[&env], "Environment not found").await?,
    };
    let Some(r) = rows.first() else { return Err(ApiError::not_found("Environment not found")) };
    forget(app, &env);
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "success": true,
            "environmentId": env,
            "apiKey": r.get::<_, String>(0),
            "pkApiKey": r.get::<_, String>(1),
            "revokedApiKey": {
                "id": r.get::<_, Option<String>>(2),
                "runtimeEnvironmentId": env,
                "expiresAt": r.get::<_, Option<String>>(3),
            },
        }),
    ))
}

pub async fn create_environment(app: &App, req: Request<Incoming>, ctx: &mut Ctx) -> Result<Response<Body>, ApiError> {
    check_admin(app, req.headers(), ctx)?;
    let map = admin_body(req, ctx, false).await?;
    let mut f = Fields::new(&map);
    let slug = f.string("slug", true);
    let kind = f.string("type", true);
    let project = f.string("projectId", false);
    let org = f.string("organizationId", false);
    let parent = f.string("parentEnvironmentId", false);
    let branch = f.string("branchName", false);
    f.finish()?;
    let mut client = db::client(&app.pools.admin).await?;
    let rows = db::admin_query(
        &mut client,
        ctx.log.route,
        &db::CREATE_ENVIRONMENT,
        &[&slug, &kind, &project, &org, &parent, &branch],
        "Parent environment not found",
    )
    .await?;
    let Some(r) = rows.first() else { return Err(ApiError::internal().with_detail("create_environment returned no row")) };
    let id: String = r.get(0);
    forget(app, &id);
    ctx.log.environment = Some(id.clone());
    Ok(json_response(
        StatusCode::CREATED,
        &json!({
            "id": id,
            "slug": r.get::<_, String>(1),
            "type": r.get::<_, String>(2),
            // A preview branch has no keys of its own (it uses its parent's).
            "apiKey": r.get::<_, Option<String>>(3),
            "pkApiKey": r.get::<_, Option<String>>(4),
            "parentEnvironmentId": r.get::<_, Option<String>>(5),
            "branchName": r.get::<_, Option<String>>(6),
            "projectId": r.get::<_, Option<String>>(7),
            "organizationId": r.get::<_, Option<String>>(8),
            "archivedAt": r.get::<_, Option<String>>(9),
            "createdAt": r.get::<_, Option<String>>(10),
            "updatedAt": r.get::<_, Option<String>>(11),
        }),
    ))
}
