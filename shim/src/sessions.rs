//! `POST /api/v1/sessions` and `GET /api/v1/sessions/{id or externalId}`.
//!
//! Sessions are stored by `api_auth.create_session_as` (idempotent per
//! environment and `externalId`) and read by `api_auth.get_session_as`. Both
//! take the caller's credential, resolve the environment and check a token's
//! scopes inside the extension (403 from there, with the scopes it needed); a
//! repeat of an `externalId` naming another task or type is 409. **No run is
//! triggered**: there is no task runner behind this service, so the response
//! has no `runId` and `currentRunId` is always null.

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Value};

use crate::answers;
use crate::app::{App, Ctx};
use crate::auth;
use crate::body::{self, DateParam, Fields};
use crate::db;
use crate::errors::{json_response, ApiError, Body};

/// A session row (columns in `db::session_columns` order) as the SDK's
/// `SessionItem`, plus `publicAccessToken` and `isCached` when `created`.
fn session_json(r: &tokio_postgres::Row, created: bool) -> Value {
    let mut v = json!({
        "id": r.get::<_, String>(0),
        "externalId": r.get::<_, Option<String>>(2),
        "type": r.get::<_, String>(3),
        "taskIdentifier": r.get::<_, String>(4),
        "triggerConfig": r.get::<_, Option<Value>>(5).unwrap_or_else(|| json!({})),
        "currentRunId": null,
        "tags": r.get::<_, Option<Vec<String>>>(6).unwrap_or_default(),
        "metadata": r.get::<_, Option<Value>>(7),
        "closedAt": r.get::<_, Option<String>>(8),
        "closedReason": null,
        "expiresAt": r.get::<_, Option<String>>(9),
        "createdAt": r.get::<_, Option<String>>(10),
        "updatedAt": r.get::<_, Option<String>>(11),
    });
    if created {
        v["publicAccessToken"] = json!(r.get::<_, Option<String>>(13));
        v["isCached"] = json!(r.get::<_, Option<bool>>(12).unwrap_or(false));
    }
    v
}

struct CreateBody {
    kind: String,
    task: String,
    trigger_config: Value,
    external_id: Option<String>,
    tags: Vec<String>,
    metadata: Option<Value>,
    expires_at: DateParam,
}

fn parse_create(bytes: &[u8]) -> Result<CreateBody, ApiError> {
    let map = body::object(bytes, None)?;
    let mut f = Fields::new(&map);
    let kind = f.string("type", true);
    let task = f.string("taskIdentifier", true);
    let trigger_config = f.object("triggerConfig", true);
    // zod's `.trim()` on externalId: the trimmed value is the key.
    let external_id = f.string("externalId", false).map(|s| s.trim().to_string());
    let tags = f.string_array("tags").unwrap_or_default();
    let metadata = f.object("metadata", false);
    let expires_at = f.date("expiresAt", false).unwrap_or_default();
    f.finish()?;
    Ok(CreateBody {
        kind: kind.unwrap_or_default(),
        task: task.unwrap_or_default(),
        trigger_config: trigger_config.unwrap_or_else(|| json!({})),
        external_id,
        tags,
        metadata,
        expires_at,
    })
}

pub async fn create(app: &App, req: Request<Incoming>, ctx: &mut Ctx) -> Result<Response<Body>, ApiError> {
    let (parts, incoming) = req.into_parts();
    // Size first: a body over the limit, or of unknown length, is 413 unread.
    body::check_length(&parts.headers, body::MAX_BODY, true)?;
    let cred = auth::credential(&parts.headers, &mut ctx.log);
    // The credential check is a read (a replica when one is fresh); the
    // extension authenticates again and authorizes on the primary, in the
    // statement that writes.
    let (headers, presented) = (&parts.headers, cred.as_deref());
    let caller = answers::authenticate(app, presented, headers).await?;
    auth::log_caller(&mut ctx.log, presented, &caller);
    let Some(cred) = cred else { return Err(ApiError::invalid_api_key()) };
    let Ok(branch) = auth::branch(&parts.headers) else { return Err(ApiError::invalid_api_key()) };
    let bytes = body::read(incoming, &parts.headers, body::MAX_BODY, ctx.deadline).await?;
    let b = parse_create(&bytes)?;
    let client = db::client(&app.pools.public).await?;

    let rows = db::query(
        &client,
        &db::CREATE_SESSION,
        &[
            &cred.value,
            &branch,
            &b.kind,
            &b.task,
            &b.trigger_config,
            &b.external_id,
            &b.tags,
            &b.metadata,
            &b.expires_at.text,
            &b.expires_at.millis,
        ],
        "Environment not found",
    )
    .await?;
    let Some(row) = rows.first() else {
        return Err(ApiError::internal().with_detail("create_session returned no row"));
    };
    let item = session_json(row, true);
    let status = if item["isCached"] == json!(true) { StatusCode::OK } else { StatusCode::CREATED };
    Ok(json_response(status, &item))
}

pub async fn get(app: &App, req: Request<Incoming>, ctx: &mut Ctx, session: String) -> Result<Response<Body>, ApiError> {
    let cred = auth::credential(req.headers(), &mut ctx.log);
    let Some(cred) = cred else { return Err(ApiError::invalid_api_key()) };
    let Ok(branch) = auth::branch(req.headers()) else { return Err(ApiError::invalid_api_key()) };
    let (headers, cred, branch, session) = (req.headers(), &cred, &branch, &session);
    // One read (a replica when one is fresh): a session missing there (created
    // a moment ago) is looked up again on the primary, like an unknown key.
    // The extension reads against the session's own id, external id and task
    // (403 otherwise).
    let (caller, item) = app
        .reads
        .auth_read_judged(
            |client| async move {
                let caller = auth::authenticate(&client, Some(cred), headers).await?;
                let rows = db::query(&client, &db::GET_SESSION, &[&cred.value, branch, session], "Session not found").await?;
                Ok((caller, rows.first().map(|row| session_json(row, false))))
            },
            |answer| crate::replicas::refused(answer) || matches!(answer, Ok((_, None))),
        )
        .await?;
    auth::log_caller(&mut ctx.log, Some(cred), &caller);
    let Some(item) = item else { return Err(ApiError::not_found("Session not found")) };
    Ok(json_response(StatusCode::OK, &item))
}
