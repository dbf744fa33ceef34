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
