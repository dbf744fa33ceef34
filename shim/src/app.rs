//! The state every request shares ([`App`]) and the per-request context
//! handed to handlers ([`Ctx`]).
//!
//! They live apart from the router so that the dependency graph points one
//! way: `router` depends on the handler modules, and the handlers depend on
//! this module, never on the router.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use tokio::time::Instant;

use crate::answers::Answers;
use crate::db::Pools;
use crate::grace::GraceSignals;
use crate::logging::RequestLog;
use crate::metrics::Metrics;
use crate::replicas::Reads;

/// Shared by every request.
pub struct App {
    pub pools: Pools,
    /// Where authentication reads run (replicas or the primary).
    pub reads: Arc<Reads>,
    pub separate_admin_pool: bool,
    pub admin_token: Option<String>,
    pub request_timeout: std::time::Duration,
    pub bench_routes: bool,
    pub request_ids: AtomicU64,
    /// `None` with `--no-metrics`.
    pub metrics: Option<Metrics>,
    /// Whether `GET /metrics` is served with the API (no `--metrics-listen`).
    pub metrics_on_api: bool,
    pub grace: GraceSignals,
    /// The answer cache (`None` with `--cache-size 0`).
    pub answers: Option<Arc<Answers>>,
}

/// Per-request context handed to handlers.
pub struct Ctx {
    pub log: RequestLog,
    /// When the request must be answered by (body upload included).
    pub deadline: Instant,
}

#[cfg(test)]
impl App {
    /// An app whose database is unreachable (port 1): for tests of what runs
    /// before any database work (routing, the server loop).
    pub fn for_tests() -> App {
        use std::time::Duration;
        let pool = crate::db::pool("host=127.0.0.1 port=1", 1, Duration::from_secs(1)).unwrap();
        let settings = crate::replicas::Settings {
            max_lag: Duration::from_secs(1),
            confirm_rate: 1,
            pool_size: 1,
            db_timeout: Duration::from_secs(1),
        };
        App {
            reads: Arc::new(Reads::new(pool.clone(), "host=127.0.0.1 port=1", &[], settings).unwrap()),
            pools: Pools { public: pool.clone(), admin: pool },
            separate_admin_pool: false,
            admin_token: None,
            request_timeout: Duration::from_secs(1),
            bench_routes: false,
            request_ids: AtomicU64::new(0),
            metrics: Some(Metrics::new()),
            metrics_on_api: true,
            grace: GraceSignals::new(None),
            answers: None,
        }
    }
}
