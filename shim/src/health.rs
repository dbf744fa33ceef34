//! Operational endpoints: `GET /healthz` (the process is up), `GET /readyz`
//! (the database answers and the extension is installed), `GET /metrics`
//! (Prometheus, see [`crate::metrics`]) and, with `--bench-routes`,
//! `GET /__bench/floor`.

use bytes::Bytes;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde_json::json;

use crate::app::App;
use crate::db;
use crate::errors::{json_response, ApiError, Body};
use crate::metrics::{PoolSample, CONTENT_TYPE as METRICS_CONTENT_TYPE};

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

/// The Prometheus exposition, pools sampled now. 404 with `--no-metrics`.
pub fn metrics(app: &App) -> Result<Response<Body>, ApiError> {
    let Some(metrics) = &app.metrics else { return Err(ApiError::not_found("Not found")) };
    // Replica pools are named `replica:<host:port/dbname>` (from the configuration).
    let replicas: Vec<(String, deadpool_postgres::Pool)> =
        app.reads.replica_pools().into_iter().map(|(name, pool)| (format!("replica:{name}"), pool)).collect();
    let pools: Vec<PoolSample<'_>> = app
        .pools
        .named(app.separate_admin_pool)
        .into_iter()
        .map(|(name, pool)| PoolSample { name, status: pool.status() })
        .chain(replicas.iter().map(|(name, pool)| PoolSample { name, status: pool.status() }))
        .collect();
    let mut res = Response::new(Body::new(Bytes::from(metrics.render(&pools))));
    let h = res.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(METRICS_CONTENT_TYPE));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}
