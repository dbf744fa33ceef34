//! `GET /healthz` (the process is up), `GET /readyz` (the database answers and
//! the extension is installed) and, with `--bench-routes`, `GET /__bench/floor`.

use hyper::{Response, StatusCode};
use serde_json::json;

use crate::db;
use crate::errors::{json_response, ApiError, Body};
use crate::app::App;

pub fn healthz() -> Response<Body> {
    json_response(StatusCode::OK, &json!({ "status": "ok" }))
}

pub async fn readyz(app: &App) -> Result<Response<Body>, ApiError> {
    let client = db::client(&app.pools.public).await?;
    let rows = db::query(&client, db::READY, &[], "").await?;
    let Some(version) = rows.first().map(|r| r.get::<_, String>(0)) else {
        return Err(ApiError::unavailable("Database reachable but the api_auth extension is not installed"));
    };
    if app.separate_admin_pool {
        let admin = db::client(&app.pools.admin).await?;
        db::query(&admin, db::FLOOR, &[], "").await?;
    }
    let status = app.pools.public.status();
    let mut body = json!({
        "status": "ready",
        "extension": { "name": "api_auth", "version": version },
        "pool": { "size": status.size, "available": status.available, "max": status.max_size },
    });
    // Replicas never make the shim unready: without them reads go to the primary.
    if app.reads.has_replicas() {
        body["reads"] = app.reads.status();
    }
    Ok(json_response(StatusCode::OK, &body))
}

pub async fn floor(app: &App) -> Result<Response<Body>, ApiError> {
    let client = db::client(&app.pools.public).await?;
    let rows = db::query(&client, db::FLOOR, &[], "").await?;
    let one: i32 = rows.first().map(|r| r.get(0)).unwrap_or(0);
    Ok(json_response(StatusCode::OK, &json!({ "ok": one == 1 })))
}
