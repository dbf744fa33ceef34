//! Prometheus metrics (`GET /metrics`, text exposition format 0.0.4), kept
//! with `prometheus-client`.
//!
//! Why it looks like this:
//! - **One call per request.** The router hands [`Metrics::record`] what the
//!   request turned out to be ([`Outcome`]) after the answer is built; handlers
//!   never touch counters. What they found out (authentication method,
//!   refusal reason, database failure kind) travels in the request log and in
//!   `ApiError`, which exist anyway.
//! - **Bounded label values.** Every label value is a `&'static str` chosen by
//!   the shim (route names, status classes, methods, refusal reasons, failure
//!   kinds) or a pool name from the configuration. A key, a token, an
//!   environment id or a path parameter can never become a label: there is no
//!   code path that turns request text into a label value.
//! - **Pools are sampled when scraped**, by name (`public`, `admin`, and any
//!   further pool the caller names, e.g. replicas), so a new pool needs no new
//!   metric.
//! - **Cheap on the hot path**: label sets are small static strings; a
//!   counter family lookup is a read lock and a hash. `--no-metrics` turns
//!   all of it off (the bench compares both in the same run).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Latency bucket bounds, seconds: 0.5 ms to 10 s (the default request timeout).
const LATENCY_BUCKETS: [f64; 14] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    status_class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    pool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

type LatencyFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// What one request turned out to be, as far as metrics care.
pub struct Outcome {
    /// Route name (a fixed word per route, see `router::Route::name`).
    pub route: &'static str,
    pub status: u16,
    pub elapsed: Duration,
    /// Authentication method when a credential was accepted:
    /// `current_key`, `grace_key`, `public_token`, `admin`.
    pub auth: Option<&'static str>,
    /// Why a credential was refused, when it was.
    pub refusal: Option<&'static str>,
    /// Kind of database failure, when there was one.
    pub db_error: Option<&'static str>,
    /// The answer carried grace-window signals (a key in grace was used).
    pub grace: bool,
}

/// A pool's state when scraped.
pub struct PoolSample<'a> {
    pub name: &'a str,
    pub status: deadpool_postgres::Status,
}

/// Every metric the shim exports.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: LatencyFamily,
    accepted: Family<MethodLabels, Counter>,
    refused: Family<ReasonLabels, Counter>,
    grace: Family<MethodLabels, Counter>,
    db_errors: Family<KindLabels, Counter>,
    unavailable: Family<RouteLabels, Counter>,
    pool_max: Family<PoolLabels, Gauge>,
    pool_size: Family<PoolLabels, Gauge>,
    pool_in_use: Family<PoolLabels, Gauge>,
    pool_waiting: Family<PoolLabels, Gauge>,
    uptime: Gauge<f64, AtomicU64>,
    started: Instant,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("api_auth_shim");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests answered, by route and status class (2xx, 4xx, ...)", requests.clone());
        let latency = LatencyFamily::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register_with_unit(
            "http_request_duration",
            "Time from the request head to the answer, by route",
            Unit::Seconds,
            latency.clone(),
        );
        let accepted = Family::<MethodLabels, Counter>::default();
        registry.register(
            "auth_accepted",
            "Credentials accepted, by method (current_key, grace_key, public_token, admin)",
            accepted.clone(),
        );
        let refused = Family::<ReasonLabels, Counter>::default();
        registry.register("auth_refused", "Credentials refused (401) and scope denials (403), by reason", refused.clone());
        let grace = Family::<MethodLabels, Counter>::default();
        registry.register(
            "grace_signals",
            "Answers carrying Deprecation/Sunset because a key in its grace window was used (grace_key, or public_token signed by one)",
            grace.clone(),
        );
        let db_errors = Family::<KindLabels, Counter>::default();
        registry.register(
            "db_errors",
            "Database failures, by kind (connection, pool_exhausted, timeout, unavailable, not_installed, privilege, internal)",
            db_errors.clone(),
        );
        let unavailable = Family::<RouteLabels, Counter>::default();
        registry.register(
            "http_unavailable",
            "503 answers (database unavailable or request timeout), by route",
            unavailable.clone(),
        );
        let pool_max = Family::<PoolLabels, Gauge>::default();
        registry.register("db_pool_max_connections", "Configured maximum connections of a pool", pool_max.clone());
        let pool_size = Family::<PoolLabels, Gauge>::default();
        registry.register("db_pool_connections", "Open connections of a pool", pool_size.clone());
        let pool_in_use = Family::<PoolLabels, Gauge>::default();
        registry.register("db_pool_in_use", "Connections of a pool lent to a request", pool_in_use.clone());
        let pool_waiting = Family::<PoolLabels, Gauge>::default();
        registry.register("db_pool_waiting", "Requests waiting for a connection of a pool", pool_waiting.clone());
        let uptime = Gauge::<f64, AtomicU64>::default();
        registry.register_with_unit("uptime", "Time since the shim started", Unit::Seconds, uptime.clone());
        let start_time = Gauge::<f64, AtomicU64>::default();
        start_time.set(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64()));
        registry.register_with_unit("start_time", "Start time of the shim, Unix epoch", Unit::Seconds, start_time);
        registry.register("build", "The shim's version", Info::new(BuildLabels { version: env!("CARGO_PKG_VERSION") }));
        Metrics {
            registry,
            requests,
            latency,
            accepted,
            refused,
            grace,
            db_errors,
            unavailable,
            pool_max,
            pool_size,
            pool_in_use,
            pool_waiting,
            uptime,
            started: Instant::now(),
        }
    }

    /// Metrics that another module samples itself at scrape time (the read
    /// routing's counters, `crate::replicas`).
    pub fn register_collector(&mut self, collector: Box<dyn prometheus_client::collector::Collector>) {
        self.registry.register_collector(collector);
    }

    /// Count one answered request.
    pub fn record(&self, o: &Outcome) {
        let status_class = status_class(o.status);
        self.requests.get_or_create(&RequestLabels { route: o.route, status_class }).inc();
        self.latency.get_or_create(&RouteLabels { route: o.route }).observe(o.elapsed.as_secs_f64());
        if let Some(method) = o.auth {
            self.accepted.get_or_create(&MethodLabels { method }).inc();
            if o.grace {
                self.grace.get_or_create(&MethodLabels { method }).inc();
            }
        }
        if let Some(reason) = o.refusal {
            self.refused.get_or_create(&ReasonLabels { reason }).inc();
        }
        if let Some(kind) = o.db_error {
            self.db_errors.get_or_create(&KindLabels { kind }).inc();
        }
        if o.status == 503 {
            self.unavailable.get_or_create(&RouteLabels { route: o.route }).inc();
        }
    }

    /// The exposition text, with the pools sampled now.
    pub fn render(&self, pools: &[PoolSample<'_>]) -> String {
        for p in pools {
            let labels = PoolLabels { pool: p.name.to_string() };
            let s = &p.status;
            self.pool_max.get_or_create(&labels).set(s.max_size as i64);
            self.pool_size.get_or_create(&labels).set(s.size as i64);
            self.pool_in_use.get_or_create(&labels).set(s.size.saturating_sub(s.available) as i64);
            self.pool_waiting.get_or_create(&labels).set(s.waiting as i64);
        }
        self.uptime.set(self.started.elapsed().as_secs_f64());
        let mut out = String::with_capacity(8 * 1024);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_renders() {
        let m = Metrics::new();
        let outcome = |route, status, auth, refusal| Outcome {
            route,
            status,
            elapsed: Duration::from_millis(3),
            auth,
            refusal,
            db_error: None,
            grace: false,
        };
        m.record(&outcome("auth.verify", 200, Some("current_key"), None));
        m.record(&outcome("auth.verify", 401, None, Some("unknown_key")));
        m.record(&Outcome { db_error: Some("connection"), ..outcome("auth.verify", 503, None, None) });
        let pools =
            [PoolSample { name: "public", status: deadpool_postgres::Status { max_size: 4, size: 3, available: 1, waiting: 2 } }];
        let text = m.render(&pools);
        for line in [
            "api_auth_shim_http_requests_total{route=\"auth.verify\",status_class=\"2xx\"} 1",
            "api_auth_shim_http_requests_total{route=\"auth.verify\",status_class=\"4xx\"} 1",
            "api_auth_shim_auth_accepted_total{method=\"current_key\"} 1",
            "api_auth_shim_auth_refused_total{reason=\"unknown_key\"} 1",
            "api_auth_shim_db_errors_total{kind=\"connection\"} 1",
            "api_auth_shim_http_unavailable_total{route=\"auth.verify\"} 1",
            "api_auth_shim_http_request_duration_seconds_count{route=\"auth.verify\"} 3",
            "api_auth_shim_db_pool_in_use{pool=\"public\"} 2",
            "api_auth_shim_db_pool_waiting{pool=\"public\"} 2",
            "api_auth_shim_db_pool_max_connections{pool=\"public\"} 4",
            "api_auth_shim_build_info{version=\"",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
