//! Routing, per-request deadline, CORS, the 404/405 answers, and what is
//! done once per request after the handler answered: the grace-window
//! signals ([`crate::grace`]), the metrics ([`crate::metrics`]) and the one
//! log line.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue, ACCESS_CONTROL_ALLOW_ORIGIN};
use hyper::{Method, Request, Response, StatusCode};
use tokio::time::Instant;

use crate::app::{App, Ctx};
use crate::errors::{ApiError, Body, DbError, Refusal};
use crate::logging::{safe_path, RequestLog};
use crate::metrics::Outcome;
use crate::util::percent_decode;
use crate::{admin, health, jwt, sessions, verify};

enum Route {
    Healthz,
    Readyz,
    Metrics,
    Floor,
    JwtClaims,
    Jwt,
    Verify,
    SessionsCreate,
    SessionsGet(String),
    RevokedExpiry(String),
    EnvironmentsCreate,
    Regenerate(String),
}

impl Route {
    fn name(&self) -> &'static str {
        match self {
            Route::Healthz => "healthz",
            Route::Readyz => "readyz",
            Route::Metrics => "metrics",
            Route::Floor => "bench.floor",
            Route::JwtClaims => "auth.jwt_claims",
            Route::Jwt => "auth.jwt",
            Route::Verify => "auth.verify",
            Route::SessionsCreate => "sessions.create",
            Route::SessionsGet(_) => "sessions.get",
            Route::RevokedExpiry(_) => "admin.revoked_expiry",
            Route::EnvironmentsCreate => "admin.environments_create",
            Route::Regenerate(_) => "admin.regenerate_api_key",
        }
    }

    fn is_public_api(&self) -> bool {
        matches!(self, Route::JwtClaims | Route::Jwt | Route::Verify | Route::SessionsCreate | Route::SessionsGet(_))
    }
}

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest request target (path and query) accepted: beyond it, 414.
const MAX_URI: usize = 8 * 1024;

const GET: &str = "GET, HEAD";
const POST: &str = "POST";

/// Match a path. `Ok(None)`: no such route. `Err(allow)`: the path exists but
/// not for this method.
fn route(app: &App, method: &Method, path: &str) -> Result<Option<Route>, &'static str> {
    let Some(rest) = path.strip_prefix('/') else { return Ok(None) };
    let segs: Vec<&str> = rest.split('/').collect();
    let get = method == Method::GET || method == Method::HEAD;
    let post = method == Method::POST;
    let one = |s: &str| percent_decode(s).filter(|d| !d.is_empty() && d.len() <= 512);
    let pick = |ok: bool, r: Route, allow: &'static str| if ok { Ok(Some(r)) } else { Err(allow) };
    match segs.as_slice() {
        ["healthz"] => pick(get, Route::Healthz, GET),
        ["readyz"] => pick(get, Route::Readyz, GET),
        ["metrics"] if app.metrics_on_api && app.metrics.is_some() => pick(get, Route::Metrics, GET),
        ["__bench", "floor"] if app.bench_routes => pick(get, Route::Floor, GET),
        ["api", "v1", "auth", "jwt", "claims"] => pick(post, Route::JwtClaims, POST),
        ["api", "v1", "auth", "jwt"] => pick(post, Route::Jwt, POST),
        ["api", "v1", "auth", "verify", ..] => Ok(Some(Route::Verify)),
        ["api", "v1", "sessions"] => pick(post, Route::SessionsCreate, POST),
        ["api", "v1", "sessions", id] => match one(id) {
            Some(id) => pick(get, Route::SessionsGet(id), GET),
            None => Ok(None),
        },
        ["admin", "api", "v1", "revoked-api-keys", id] => match one(id) {
            Some(id) => pick(post, Route::RevokedExpiry(id), POST),
            None => Ok(None),
        },
        ["admin", "api", "v1", "environments"] => pick(post, Route::EnvironmentsCreate, POST),
        ["admin", "api", "v1", "environments", id, "regenerate-api-key"] => match one(id) {
            Some(id) => pick(post, Route::Regenerate(id), POST),
            None => Ok(None),
        },
        _ => Ok(None),
    }
}

fn cors_preflight() -> Response<Body> {
    let mut res = Response::new(Body::default());
    *res.status_mut() = StatusCode::NO_CONTENT;
    let h = res.headers_mut();
    h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert("access-control-allow-methods", HeaderValue::from_static("GET, POST, OPTIONS"));
    h.insert(
        "access-control-allow-headers",
        HeaderValue::from_static("authorization, content-type, x-trigger-branch, x-trigger-client, trigger-version"),
    );
    h.insert("access-control-max-age", HeaderValue::from_static("86400"));
    res
}

/// The handler of `route`. Those that read or write the database are boxed:
/// their futures run to kilobytes, and unboxed the largest would set the size
/// of every request's future, moved into its task even for `/healthz` or a
/// cached verify (which never awaits the database on a hit, see
/// [`crate::answers`]). A box costs one allocation next to a round trip.
async fn dispatch(app: &App, req: Request<Incoming>, route: Route, ctx: &mut Ctx) -> Result<Response<Body>, ApiError> {
    match route {
        Route::Healthz => Ok(health::healthz()),
        Route::Metrics => health::metrics(app),
        Route::Verify => verify::verify(app, req, ctx).await,
        Route::Readyz => Box::pin(health::readyz(app)).await,
        Route::Floor => Box::pin(health::floor(app)).await,
        Route::JwtClaims => Box::pin(jwt::claims(app, req, ctx)).await,
        Route::Jwt => Box::pin(jwt::mint(app, req, ctx)).await,
        Route::SessionsCreate => Box::pin(sessions::create(app, req, ctx)).await,
        Route::SessionsGet(id) => Box::pin(sessions::get(app, req, ctx, id)).await,
        Route::RevokedExpiry(id) => Box::pin(admin::set_revoked_expiry(app, req, ctx, id)).await,
        Route::EnvironmentsCreate => Box::pin(admin::create_environment(app, req, ctx)).await,
        Route::Regenerate(id) => Box::pin(admin::regenerate(app, req, ctx, id)).await,
    }
}

/// Answer one request: route, run under the deadline, map errors, log.
pub async fn handle(app: Arc<App>, req: Request<Incoming>) -> Response<Body> {
    let started = Instant::now();
    let id = app.request_ids.fetch_add(1, Ordering::Relaxed) + 1;
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let mut ctx = Ctx { log: RequestLog::default(), deadline: started + app.request_timeout };

    let mut public_api = path.starts_with("/api/");
    let mut forward_auth = false;
    let uri_len = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    let result = if uri_len > MAX_URI {
        ctx.log.route = "uri_too_long";
        Err(ApiError::new(StatusCode::URI_TOO_LONG, "Request URI too long"))
    } else if method == Method::OPTIONS && public_api {
        ctx.log.route = "cors.preflight";
        Ok(cors_preflight())
    } else {
        match route(&app, &method, &path) {
            Ok(Some(r)) => {
                ctx.log.route = r.name();
                public_api = r.is_public_api();
                forward_auth = matches!(r, Route::Verify);
                let deadline = ctx.deadline;
                match tokio::time::timeout_at(deadline, dispatch(&app, req, r, &mut ctx)).await {
                    Ok(res) => res,
                    Err(_) => Err(ApiError::unavailable("Request timed out")),
                }
            }
            Ok(None) => {
                ctx.log.route = "not_found";
                Err(ApiError::not_found("Not found"))
            }
            Err(allow) => {
                ctx.log.route = "method_not_allowed";
                Err(ApiError::method_not_allowed(allow))
            }
        }
    };

    let (mut res, detail, refusal, db_error) = match result {
        Ok(res) => (res, None, None, None),
        Err(e) => {
            let (detail, refusal, db_error) = (e.detail.clone(), e.refusal.map(Refusal::as_str), e.db_error.map(DbError::as_str));
            (e.into_response(), detail, refusal, db_error)
        }
    };
    if let Some(g) = &ctx.log.grace {
        app.grace.signal(g, res.headers_mut(), forward_auth);
    }
    if public_api {
        res.headers_mut().insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    }
    res.headers_mut().insert(X_REQUEST_ID, HeaderValue::from(id));

    let status = res.status().as_u16();
    let elapsed = started.elapsed();
    if let Some(m) = &app.metrics {
        m.record(&Outcome {
            route: ctx.log.route,
            status,
            elapsed,
            auth: ctx.log.auth,
            refusal,
            db_error,
            grace: ctx.log.grace.is_some(),
        });
    }
    let ms = elapsed.as_secs_f64() * 1000.0;
    let log = &ctx.log;
    // Field values are worked out only for a line that is written.
    macro_rules! line {
        ($lvl:ident) => {
            tracing::$lvl!(
                request_id = id,
                method = %method,
                path = %safe_path(&path),
                route = log.route,
                status,
                ms = format_args!("{ms:.2}"),
                credential = log.credential.as_ref().map(|c| c.describe()),
                auth = log.auth,
                environment = log.environment.as_deref(),
                note = log.note.as_deref(),
                detail = detail.as_deref(),
                "request"
            )
        };
    }
    if status >= 500 {
        line!(warn);
    } else {
        line!(info);
    }
    res
}

/// The `--metrics-listen` listener: `GET /metrics` and nothing else (not
/// counted: scrapes are not API traffic).
pub async fn handle_metrics_listener(app: Arc<App>, req: Request<Incoming>) -> Response<Body> {
    let get = req.method() == Method::GET || req.method() == Method::HEAD;
    let result = match (req.uri().path(), get) {
        ("/metrics", true) => health::metrics(&app),
        ("/metrics", false) => Err(ApiError::method_not_allowed(GET)),
        _ => Err(ApiError::not_found("Not found")),
    };
    result.unwrap_or_else(ApiError::into_response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_methods() {
        let app = App::for_tests();
        let name = |m: Method, p: &str| route(&app, &m, p).map(|r| r.map(|r| r.name()));
        assert_eq!(name(Method::POST, "/api/v1/sessions"), Ok(Some("sessions.create")));
        assert_eq!(name(Method::GET, "/api/v1/sessions"), Err(POST));
        assert_eq!(name(Method::GET, "/api/v1/sessions/abc"), Ok(Some("sessions.get")));
        assert_eq!(name(Method::GET, "/api/v1/sessions/"), Ok(None));
        assert_eq!(name(Method::DELETE, "/healthz"), Err(GET));
        assert_eq!(name(Method::GET, "/__bench/floor"), Ok(None));
        assert_eq!(name(Method::PUT, "/api/v1/auth/verify"), Ok(Some("auth.verify")));
        assert_eq!(name(Method::GET, "/api/v1/auth/verify/some/path"), Ok(Some("auth.verify")));
        assert_eq!(name(Method::POST, "/admin/api/v1/environments/e1/regenerate-api-key"), Ok(Some("admin.regenerate_api_key")));
        assert_eq!(name(Method::GET, "/nope"), Ok(None));
        assert_eq!(name(Method::GET, "/metrics"), Ok(Some("metrics")));
        assert_eq!(name(Method::POST, "/metrics"), Err(GET));
    }
}
