//! Read routing: authentication reads go to hot-standby replicas when one is
//! fresh enough, everything else (and every read, without replicas) to the
//! primary. This module is the only place that knows replicas exist; handlers
//! call [`Reads::auth_read`] with the work to do and get an answer back.
//!
//! Why it is built this way:
//!
//! - **Freshness is measured in WAL positions, not timestamps.** A monitor
//!   samples the primary's `pg_current_wal_flush_lsn()` every poll interval
//!   (time taken just *before* the query) and each replica's
//!   `pg_last_wal_replay_lsn()`. A replica that has replayed up to LSN `R`
//!   holds every commit the primary had flushed at the time of the latest
//!   sample `(t, L)` with `L <= R`: that `t` is the replica's *fresh-as-of*
//!   time, and its staleness is `now - t`. On an idle primary nothing moves, so
//!   a caught-up replica stays fresh (where `now() -
//!   pg_last_xact_replay_timestamp()` would grow without bound and wrongly
//!   evict it); a paused or slow replica's fresh-as-of stops advancing as soon
//!   as the primary writes, and a monitor that cannot reach a node stops
//!   advancing it too, so every failure errs towards *not* using the replica.
//! - **Revocation bound.** A replica is used only while its staleness is at
//!   most `max_lag` (`--max-replica-lag`). A revocation that committed (and was
//!   flushed) at time `C` is therefore visible on every replica used after
//!   `C + max_lag`: that is the worst-case delay, plus the duration of a
//!   request already running. With `synchronous_commit = off` on the primary,
//!   add the WAL writer's flush delay (up to 3 × `wal_writer_delay`).
//! - **Read-your-writes by confirming refusals.** A replica may not yet have a
//!   key created or rotated a moment ago, or a session just created. Any
//!   refusal from a replica (the work answered 401 or 404) is asked again on
//!   the primary, whose answer is final. Confirmations are bounded by a token
//!   bucket (`--replica-confirm-rate` per second, burst of one second's worth),
//!   so a flood of bogus credentials cannot move its load to the primary: past
//!   the budget the replica's refusal is the answer (counted as
//!   `confirm_skipped`), and so is it when the primary cannot answer (503).
//!   Refusals are never *weakened* by this: only a credential that the
//!   primary accepts can turn a refusal into a success.
//! - **Failures never reach the client as long as the primary answers.** A
//!   replica whose pool or query fails with a connection-class error (503) is
//!   marked down and the work runs on the primary; the monitor marks it up
//!   again when it answers. A node that is not in recovery (promoted) is not
//!   used as a replica.
//! - **With the primary unreachable**, replicas keep serving only until their
//!   staleness passes `max_lag` (nothing can prove them fresh), then reads
//!   answer 503 like every other route.
//!
//! For an answer cache in front of this (issue 14): [`Reads::auth_read_after`]
//! only uses a replica whose replay position is known to have passed a given
//! LSN (a refill after an invalidation committed at that LSN), else the
//! primary; [`Reads::primary_read`] always uses the primary; [`Reads::status`]
//! shows each replica's last replay LSN (`replayLsn`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::future::Future;

use deadpool_postgres::{Client, Pool};
use hyper::StatusCode;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::db;
use crate::errors::ApiError;

/// A pooled connection lent to a unit of work (shared so that the work's
/// future can own it; back to its pool when the work is done).
pub type Conn = Arc<Client>;

/// How the routing behaves (from the command line).
#[derive(Clone, Debug)]
pub struct Settings {
    /// Staleness beyond which a replica is not used.
    pub max_lag: Duration,
    /// Refusals from replicas confirmed on the primary per second (0: never).
    pub confirm_rate: u32,
    pub pool_size: usize,
    pub db_timeout: Duration,
}

impl Settings {
    /// How often the monitor samples: a quarter of the lag bound, between 10 ms
    /// and 250 ms (a replica is declared stale at most this much too early).
    pub fn poll_interval(&self) -> Duration {
        (self.max_lag / 4).clamp(Duration::from_millis(10), Duration::from_millis(250))
    }
}

/// One replica: its pool, its name for logs and its freshness.
struct Replica {
    /// `host:port/dbname` (never the password).
    name: String,
    url: String,
    pool: Pool,
    /// Set by the monitor when the replica answers as a standby; cleared by
    /// the monitor or by a failed request.
    up: AtomicBool,
    /// Microseconds since [`Reads::epoch`] of the replica's fresh-as-of time
    /// (0: never proven fresh).
    fresh_as_of_us: AtomicU64,
    /// Last replay LSN seen (as a byte position).
    replay_lsn: AtomicU64,
    /// Authentication reads answered by this replica (refusals included).
    served: AtomicU64,
}

/// Counters of the routing decisions (also shown by `/readyz`).
#[derive(Default)]
struct Counters {
    /// Authentication reads run on the primary (no usable replica, or a
    /// replica failed).
    primary_reads: AtomicU64,
    /// Replica failures that sent the work to the primary.
    fallbacks: AtomicU64,
    /// Replica refusals asked again on the primary.
    confirmations: AtomicU64,
    /// ... of which the primary accepted (read-your-writes).
    overturned: AtomicU64,
    /// Replica refusals answered as is because the budget was spent.
    confirm_skipped: AtomicU64,
}

/// Token bucket of confirmations: `rate` per second, burst `rate`.
struct Budget {
    rate: f64,
    state: Mutex<(f64, Instant)>,
}

impl Budget {
    fn new(rate: u32) -> Budget {
        Budget { rate: f64::from(rate), state: Mutex::new((f64::from(rate), Instant::now())) }
    }

    fn take(&self) -> bool {
        if self.rate <= 0.0 {
            return false;
        }
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        s.0 = (s.0 + now.duration_since(s.1).as_secs_f64() * self.rate).min(self.rate);
        s.1 = now;
        if s.0 >= 1.0 {
            s.0 -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Where authentication reads run.
pub struct Reads {
    primary: Pool,
    primary_url: String,
    replicas: Vec<Arc<Replica>>,
    settings: Settings,
    budget: Budget,
    /// Round-robin cursor over usable replicas.
    next: AtomicUsize,
    epoch: Instant,
    /// Primary samples `(µs since epoch, flush LSN)`, oldest first.
    history: Mutex<VecDeque<(u64, u64)>>,
    counters: Counters,
}

/// The `host:port/dbname` of a connection string, for logs.
fn node_name(cfg: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::Host;
    let host = match cfg.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}/{}", cfg.get_dbname().unwrap_or(""))
}

/// The time of the latest primary sample `(time, flush LSN)` whose position
/// a replica that replayed up to `replay` has reached: it holds every commit
/// acknowledged before then. `None`: older than every sample kept.
fn fresh_as_of(history: &VecDeque<(u64, u64)>, replay: u64) -> Option<u64> {
    history.iter().rev().find(|(_, lsn)| *lsn <= replay).map(|(t, _)| *t)
}

/// A refusal the primary may overturn: unknown key, failing token, no
/// session (401 or 404).
pub fn refused<T>(answer: &Result<T, ApiError>) -> bool {
    matches!(answer, Err(e) if e.status == StatusCode::UNAUTHORIZED || e.status == StatusCode::NOT_FOUND)
}

impl Reads {
    /// Routing over `primary` (the public pool, built from `primary_url`) and
    /// a pool per replica URL. Call [`Reads::start_monitor`] inside the runtime.
    pub fn new(primary: Pool, primary_url: &str, replica_urls: &[String], settings: Settings) -> Result<Reads, String> {
        let mut replicas = Vec::new();
        for url in replica_urls {
            let target = db::connect_target(url, settings.db_timeout).map_err(|e| format!("replica: {e}"))?;
            let name = node_name(&target.config);
            let pool = db::pool(url, settings.pool_size, settings.db_timeout).map_err(|e| format!("replica {name}: {e}"))?;
            replicas.push(Arc::new(Replica {
                name,
                url: url.clone(),
                pool,
                up: AtomicBool::new(false),
                fresh_as_of_us: AtomicU64::new(0),
                replay_lsn: AtomicU64::new(0),
                served: AtomicU64::new(0),
            }));
        }
        Ok(Reads {
            primary,
            primary_url: primary_url.to_string(),
            replicas,
            budget: Budget::new(settings.confirm_rate),
            settings,
            next: AtomicUsize::new(0),
            epoch: Instant::now(),
            history: Mutex::new(VecDeque::new()),
            counters: Counters::default(),
        })
    }

    pub fn has_replicas(&self) -> bool {
        !self.replicas.is_empty()
    }

    /// Pools of the replicas, named, for metrics and readiness.
    pub fn replica_pools(&self) -> Vec<(String, Pool)> {
        self.replicas.iter().map(|r| (r.name.clone(), r.pool.clone())).collect()
    }

    fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    fn usable(&self, r: &Replica, now_us: u64) -> bool {
        let fresh = r.fresh_as_of_us.load(Ordering::Relaxed);
        r.up.load(Ordering::Relaxed) && fresh != 0 && now_us.saturating_sub(fresh) <= self.settings.max_lag.as_micros() as u64
    }

    /// A usable replica that has replayed at least `min_lsn`, round-robin,
    /// or `None`.
    fn pick(&self, min_lsn: u64) -> Option<&Arc<Replica>> {
        let n = self.replicas.len();
        if n == 0 {
            return None;
        }
        let now = self.now_us();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|i| &self.replicas[(start + i) % n])
            .find(|r| self.usable(r, now) && r.replay_lsn.load(Ordering::Relaxed) >= min_lsn)
    }

    fn mark_down(&self, r: &Replica, why: &str) {
        if r.up.swap(false, Ordering::Relaxed) {
            tracing::warn!(replica = %r.name, reason = why, "replica failed: authentication reads go elsewhere until it answers again");
        }
    }

    /// Run an authentication read: on a fresh replica when there is one, else
    /// on the primary. A replica refusal (401/404) is confirmed on the primary
    /// within the budget; a replica failure (503) is retried on the primary.
    /// `work` may run twice (replica, then primary), never concurrently.
    pub async fn auth_read<T, F, Fut>(&self, work: F) -> Result<T, ApiError>
    where
        F: FnMut(Conn) -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        self.auth_read_after(0, work).await
    }

    /// [`Reads::auth_read`] on a replica known to have replayed WAL position
    /// `min_lsn` (as a byte position), else on the primary: for a cache that
    /// must not refill an entry from a replica older than the commit that
    /// invalidated it.
    pub async fn auth_read_after<T, F, Fut>(&self, min_lsn: u64, work: F) -> Result<T, ApiError>
    where
        F: FnMut(Conn) -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        self.read(min_lsn, work, refused).await
    }

    /// [`Reads::auth_read`] for work that can answer a refusal without
    /// failing (e.g. "authenticated, but no such session", which the request
    /// log must still credit to the caller): `is_refusal` says which answers
    /// the primary must confirm.
    pub async fn auth_read_judged<T, F, Fut>(
        &self,
        work: F,
        is_refusal: impl Fn(&Result<T, ApiError>) -> bool,
    ) -> Result<T, ApiError>
    where
        F: FnMut(Conn) -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        self.read(0, work, is_refusal).await
    }

    async fn read<T, F, Fut>(
        &self,
        min_lsn: u64,
        mut work: F,
        is_refusal: impl Fn(&Result<T, ApiError>) -> bool,
    ) -> Result<T, ApiError>
    where
        F: FnMut(Conn) -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        if let Some(r) = self.pick(min_lsn) {
            match r.pool.get().await {
                Ok(client) => {
                    let result = work(Arc::new(client)).await;
                    match result {
                        answer if is_refusal(&answer) => {
                            r.served.fetch_add(1, Ordering::Relaxed);
                            if !self.budget.take() {
                                self.counters.confirm_skipped.fetch_add(1, Ordering::Relaxed);
                                return answer;
                            }
                            self.counters.confirmations.fetch_add(1, Ordering::Relaxed);
                            let confirmed = self.primary_read(work).await;
                            if matches!(&confirmed, Err(e) if e.status == StatusCode::SERVICE_UNAVAILABLE) {
                                // The primary cannot say: the replica's refusal stands
                                // (a refusal is never the unsafe answer).
                                return answer;
                            }
                            if !is_refusal(&confirmed) && confirmed.is_ok() {
                                self.counters.overturned.fetch_add(1, Ordering::Relaxed);
                            }
                            return confirmed;
                        }
                        Ok(v) => {
                            r.served.fetch_add(1, Ordering::Relaxed);
                            return Ok(v);
                        }
                        Err(e) if e.status == StatusCode::SERVICE_UNAVAILABLE => {
                            self.mark_down(r, e.detail.as_deref().unwrap_or("query failed"));
                            self.counters.fallbacks.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => return Err(e),
                    }
                }
                Err(e) => {
                    self.mark_down(r, &format!("pool: {}", crate::errors::pool_error_text(&e)));
                    self.counters.fallbacks.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        self.counters.primary_reads.fetch_add(1, Ordering::Relaxed);
        self.primary_read(work).await
    }

    /// Run `work` on the primary.
    pub async fn primary_read<T, F, Fut>(&self, mut work: F) -> Result<T, ApiError>
    where
        F: FnMut(Conn) -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        let client = db::client(&self.primary).await?;
        work(Arc::new(client)).await
    }

    /// The routing counters and each replica's state for `/metrics`, read at
    /// scrape time (labels: the replica's configured `host:port/dbname`).
    pub fn collector(self: &Arc<Self>) -> ReadsCollector {
        ReadsCollector(self.clone())
    }

    /// The routing state, for `/readyz`.
    pub fn status(&self) -> Value {
        let now = self.now_us();
        let replicas: Vec<Value> = self
            .replicas
            .iter()
            .map(|r| {
                let fresh = r.fresh_as_of_us.load(Ordering::Relaxed);
                let status = r.pool.status();
                json!({
                    "name": r.name,
                    "up": r.up.load(Ordering::Relaxed),
                    "usable": self.usable(r, now),
                    "stalenessMs": (fresh != 0).then(|| now.saturating_sub(fresh) / 1000),
                    "replayLsn": r.replay_lsn.load(Ordering::Relaxed),
                    "served": r.served.load(Ordering::Relaxed),
                    "pool": { "size": status.size, "available": status.available, "max": status.max_size },
                })
            })
            .collect();
        let c = &self.counters;
        json!({
            "maxLagMs": self.settings.max_lag.as_millis() as u64,
            "primaryReads": c.primary_reads.load(Ordering::Relaxed),
            "fallbacks": c.fallbacks.load(Ordering::Relaxed),
            "confirmations": c.confirmations.load(Ordering::Relaxed),
            "overturned": c.overturned.load(Ordering::Relaxed),
            "confirmSkipped": c.confirm_skipped.load(Ordering::Relaxed),
            "replicas": replicas,
        })
    }

    /// Start the monitor tasks (nothing to do without replicas).
    pub fn start_monitor(self: &Arc<Self>) {
        if self.replicas.is_empty() {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move { me.sample_primary().await });
        for r in &self.replicas {
            let (me, r) = (self.clone(), r.clone());
            tokio::spawn(async move { me.watch_replica(r).await });
        }
    }

    /// Run `sql` (one row, one int8 column, or `(bool, int8)`) on a monitor
    /// connection of its own, (re)connecting as needed.
    async fn monitor_query(
        &self,
        url: &str,
        conn: &mut Option<tokio_postgres::Client>,
        sql: &str,
    ) -> Result<tokio_postgres::Row, String> {
        let timeout = self.settings.db_timeout;
        if conn.as_ref().is_none_or(|c| c.is_closed()) {
            let target = db::connect_target(url, timeout)?;
            let (client, connection) = tokio::time::timeout(timeout, target.config.connect(target.tls))
                .await
                .map_err(|_| "connect timed out".to_string())?
                .map_err(|e| crate::errors::pg_error_text(&e))?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            *conn = Some(client);
        }
        let client = conn.as_ref().ok_or("no connection")?;
        match tokio::time::timeout(timeout, client.query_one(sql, &[])).await {
            Ok(Ok(row)) => Ok(row),
            Ok(Err(e)) => {
                *conn = None;
                Err(crate::errors::pg_error_text(&e))
            }
            Err(_) => {
                *conn = None;
                Err("query timed out".into())
            }
        }
    }

    async fn sample_primary(self: Arc<Self>) {
        const SQL: &str = "SELECT (pg_catalog.pg_current_wal_flush_lsn() - '0/0'::pg_catalog.pg_lsn)::int8";
        let poll = self.settings.poll_interval();
        // Samples older than this can no longer make a replica usable.
        let keep_us = (self.settings.max_lag + poll * 4).as_micros() as u64;
        let mut conn = None;
        let mut failing = false;
        loop {
            let t = self.now_us();
            match self.monitor_query(&self.primary_url, &mut conn, SQL).await {
                Ok(row) => {
                    let lsn: i64 = row.get(0);
                    let mut h = self.history.lock().unwrap_or_else(|e| e.into_inner());
                    h.push_back((t.max(1), lsn as u64));
                    while h.len() > 2 && h.front().is_some_and(|f| t.saturating_sub(f.0) > keep_us) {
                        h.pop_front();
                    }
                    if failing {
                        tracing::info!("replica monitor: primary answering again");
                        failing = false;
                    }
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "replica monitor: cannot read the primary's WAL position; replicas stay usable only until they exceed the lag bound");
                        failing = true;
                    }
                }
            }
            tokio::time::sleep(poll).await;
        }
    }

    async fn watch_replica(self: Arc<Self>, r: Arc<Replica>) {
        const SQL: &str = "SELECT pg_catalog.pg_is_in_recovery(), \
                           (pg_catalog.pg_last_wal_replay_lsn() - '0/0'::pg_catalog.pg_lsn)::int8";
        let poll = self.settings.poll_interval();
        let mut conn = None;
        let mut state = "";
        loop {
            let (next_state, wait) = match self.monitor_query(&r.url, &mut conn, SQL).await {
                Ok(row) => {
                    let in_recovery: bool = row.get(0);
                    let replay: Option<i64> = row.get(1);
                    match (in_recovery, replay) {
                        (true, Some(replay)) => {
                            let replay = replay as u64;
                            r.replay_lsn.store(replay, Ordering::Relaxed);
                            let fresh = fresh_as_of(&self.history.lock().unwrap_or_else(|e| e.into_inner()), replay);
                            if let Some(t) = fresh {
                                r.fresh_as_of_us.fetch_max(t, Ordering::Relaxed);
                            }
                            r.up.store(true, Ordering::Relaxed);
                            let stale = !self.usable(&r, self.now_us());
                            (if stale { "lagging" } else { "fresh" }, poll)
                        }
                        _ => {
                            r.up.store(false, Ordering::Relaxed);
                            ("not a standby", Duration::from_secs(1))
                        }
                    }
                }
                Err(e) => {
                    r.up.store(false, Ordering::Relaxed);
                    if state != "down" {
                        tracing::warn!(replica = %r.name, error = %e, "replica unreachable: skipped, retried every second");
                    }
                    ("down", Duration::from_secs(1).max(poll))
                }
            };
            if next_state != state {
                match next_state {
                    "fresh" => tracing::info!(replica = %r.name, "replica in use for authentication reads"),
                    "lagging" => tracing::warn!(
                        replica = %r.name,
                        max_lag_ms = self.settings.max_lag.as_millis() as u64,
                        "replica behind the lag bound: not used until it catches up"
                    ),
                    "not a standby" => tracing::warn!(replica = %r.name, "replica is not in recovery (promoted?): not used"),
                    _ => {}
                }
                state = next_state;
            }
            tokio::time::sleep(wait).await;
        }
    }
}

/// See [`Reads::collector`].
pub struct ReadsCollector(Arc<Reads>);

impl std::fmt::Debug for ReadsCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReadsCollector")
    }
}

impl prometheus_client::collector::Collector for ReadsCollector {
    fn encode(&self, mut encoder: prometheus_client::encoding::DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::gauge::ConstGauge;
        use prometheus_client::metrics::MetricType;
        let reads = &self.0;
        let c = &reads.counters;
        let totals = [
            (
                "replica_primary_reads",
                "Authentication reads run on the primary (no usable replica, or a replica failed)",
                &c.primary_reads,
            ),
            ("replica_fallbacks", "Replica failures whose request was retried on the primary", &c.fallbacks),
            ("replica_confirmations", "Replica refusals asked again on the primary", &c.confirmations),
            ("replica_overturned", "Replica refusals the primary accepted (read-your-writes)", &c.overturned),
            ("replica_confirm_skipped", "Replica refusals answered as they were: confirmation budget spent", &c.confirm_skipped),
        ];
        for (name, help, counter) in totals {
            let m = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            ConstCounter::new(counter.load(Ordering::Relaxed)).encode(m)?;
        }
        let now = reads.now_us();
        let label = |r: &Replica| vec![("replica", r.name.clone())];
        let mut served = encoder.encode_descriptor(
            "replica_served",
            "Authentication reads answered by a replica (refusals included)",
            None,
            MetricType::Counter,
        )?;
        for r in &reads.replicas {
            ConstCounter::new(r.served.load(Ordering::Relaxed)).encode(served.encode_family(&label(r))?)?;
        }
        let mut usable = encoder.encode_descriptor(
            "replica_usable",
            "1 while a replica is up and within the lag bound",
            None,
            MetricType::Gauge,
        )?;
        for r in &reads.replicas {
            ConstGauge::new(i64::from(reads.usable(r, now))).encode(usable.encode_family(&label(r))?)?;
        }
        let mut staleness = encoder.encode_descriptor(
            "replica_staleness_seconds",
            "How far a replica may be behind the primary, as measured by WAL positions (-1: never measured)",
            None,
            MetricType::Gauge,
        )?;
        for r in &reads.replicas {
            let fresh = r.fresh_as_of_us.load(Ordering::Relaxed);
            let value = if fresh == 0 { -1.0 } else { now.saturating_sub(fresh) as f64 / 1e6 };
            ConstGauge::new(value).encode(staleness.encode_family(&label(r))?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_allows_rate_per_second_then_refuses() {
        let b = Budget::new(5);
        let granted = (0..50).filter(|_| b.take()).count();
        assert_eq!(granted, 5);
        assert!(!Budget::new(0).take());
    }

    #[test]
    fn only_up_fresh_and_far_enough_replicas_are_picked() {
        let settings =
            Settings { max_lag: Duration::from_millis(20), confirm_rate: 1, pool_size: 1, db_timeout: Duration::from_secs(1) };
        let urls = vec!["host=127.0.0.1 port=1 dbname=a".to_string(), "host=127.0.0.1 port=2 dbname=b".to_string()];
        let primary = db::pool("host=127.0.0.1 port=3", 1, Duration::from_secs(1)).unwrap();
        let reads = Reads::new(primary, "host=127.0.0.1 port=3", &urls, settings).unwrap();
        let (a, b) = (&reads.replicas[0], &reads.replicas[1]);
        // Never proven fresh: not used.
        assert!(reads.pick(0).is_none());
        std::thread::sleep(Duration::from_millis(50));
        a.fresh_as_of_us.store(reads.now_us(), Ordering::Relaxed);
        a.replay_lsn.store(100, Ordering::Relaxed);
        // Fresh but not up (the monitor has not seen it answer): not used.
        assert!(reads.pick(0).is_none());
        a.up.store(true, Ordering::Relaxed);
        a.fresh_as_of_us.store(reads.now_us(), Ordering::Relaxed);
        assert_eq!(reads.pick(0).unwrap().name, a.name);
        // Behind a required position: not used.
        assert!(reads.pick(101).is_none());
        // Stale beyond the bound: not used; the other one, fresh, is.
        a.fresh_as_of_us.store(1, Ordering::Relaxed);
        b.replay_lsn.store(200, Ordering::Relaxed);
        b.up.store(true, Ordering::Relaxed);
        for _ in 0..4 {
            b.fresh_as_of_us.store(reads.now_us(), Ordering::Relaxed);
            assert_eq!(reads.pick(150).unwrap().name, b.name);
        }
        reads.mark_down(b, "test");
        assert!(reads.pick(0).is_none());
    }

    #[test]
    fn freshness_follows_wal_positions_not_clocks() {
        // An idle primary: the position never moves, so a caught-up replica is
        // fresh as of the latest sample, however long ago the last commit was.
        let idle: VecDeque<(u64, u64)> = [(1_000, 500), (2_000, 500), (3_000, 500)].into_iter().collect();
        assert_eq!(fresh_as_of(&idle, 500), Some(3_000));
        // The primary writes at 2 000 and 3 000; a replica paused at 500 stays
        // fresh as of 1 000 only, and goes stale as time passes.
        let busy: VecDeque<(u64, u64)> = [(1_000, 500), (2_000, 800), (3_000, 900)].into_iter().collect();
        assert_eq!(fresh_as_of(&busy, 500), Some(1_000));
        assert_eq!(fresh_as_of(&busy, 850), Some(2_000));
        assert_eq!(fresh_as_of(&busy, 900), Some(3_000));
        // Behind everything kept (or no sample yet): never proven fresh.
        assert_eq!(fresh_as_of(&busy, 100), None);
        assert_eq!(fresh_as_of(&VecDeque::new(), 900), None);
    }

    #[test]
    fn poll_interval_is_a_quarter_of_the_bound_within_limits() {
        let s = |ms| Settings {
            max_lag: Duration::from_millis(ms),
            confirm_rate: 1,
            pool_size: 1,
            db_timeout: Duration::from_secs(1),
        };
        assert_eq!(s(1000).poll_interval(), Duration::from_millis(250));
        assert_eq!(s(200).poll_interval(), Duration::from_millis(50));
        assert_eq!(s(5).poll_interval(), Duration::from_millis(10));
        assert_eq!(s(60_000).poll_interval(), Duration::from_millis(250));
    }
}
