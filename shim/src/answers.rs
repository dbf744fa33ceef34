//! Authentication answered from memory when possible: the front of every
//! authenticated route.
//!
//! [`authenticate`] asks the answer cache ([`crate::cache`]) first; on a miss
//! it runs the extension's lookup or validation where
//! [`crate::replicas::Reads`] sends authentication reads, and keeps the
//! answer. [`crate::invalidation`] keeps the cache honest: it listens for the
//! extension's change notifications on the primary and drops what a commit
//! made stale. Handlers call [`authenticate`] and never see the cache.
//!
//! Refills after an invalidation: a replica may not have replayed the commit
//! that invalidated an entry yet, and refilling from it would reinstate what
//! the primary revoked. So every fill asks [`Reads::auth_read_after`] for a
//! node that has replayed the WAL position the primary had reached when the
//! latest notification arrived ([`Answers::min_lsn`]); until the replicas
//! pass it, fills run on the primary.
//!
//! What is kept: secret-key answers (positive, and "authenticates nothing",
//! which every environment creation or key change clears) and accepted public
//! tokens, each until its `exp` and, when a key in grace vouched for it, the
//! end of that window. Token refusals are not kept. The cache never holds a
//! credential: entries are keyed by its salted SHA-256.
//!
//! A hit never awaits: the database reads of a miss are boxed
//! (`Box::pin`), so that the future every request builds holds a pointer to
//! them, not their few kilobytes, which each hit would otherwise move around.
//!
//! [`Reads::auth_read_after`]: crate::replicas::Reads::auth_read_after

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use api_auth_core::keys::CredentialKind;
use hyper::{HeaderMap, StatusCode};

use crate::app::App;
use crate::auth::{self, Caller, Credential, KeyAuth, TokenAuth};
use crate::cache::{self, Cache};
use crate::errors::ApiError;

/// The shim's answer caches and what the invalidation listener tells them.
pub struct Answers {
    pub keys: Cache<Arc<KeyAuth>>,
    pub tokens: Cache<Arc<TokenAuth>>,
    /// WAL position (bytes) a node must have replayed to refill the cache;
    /// `u64::MAX` while the position after the latest notification is being read.
    min_lsn: AtomicU64,
    /// Change notifications applied ([`Answers::notified`]); not the admin
    /// routes' own invalidations.
    notifications: AtomicU64,
}

impl Answers {
    /// Caches of `capacity` entries in all (split between keys and tokens), none older than `max_age`.
    pub fn new(capacity: usize, max_age: Duration) -> Answers {
        Answers {
            keys: Cache::new(capacity.div_ceil(2), max_age),
            tokens: Cache::new(capacity / 2, max_age),
            min_lsn: AtomicU64::new(u64::MAX),
            notifications: AtomicU64::new(0),
        }
    }

    /// Subscribed (after a flush) or not: without a subscription nothing is answered or kept.
    pub fn set_live(&self, live: bool) {
        self.keys.set_live(live);
        self.tokens.set_live(live);
    }

    pub fn is_live(&self) -> bool {
        self.keys.is_live() && self.tokens.is_live()
    }

    /// A change to `environment` committed: forget it. Refills go to the
    /// primary until [`Answers::set_min_lsn`] says which replicas may serve them.
    pub fn invalidate(&self, environment: &str) {
        self.min_lsn.store(u64::MAX, Ordering::Release);
        self.keys.invalidate(environment);
        self.tokens.invalidate(environment);
    }

    /// A change notification about `environment` arrived: [`Answers::invalidate`], counted.
    pub fn notified(&self, environment: &str) {
        self.invalidate(environment);
        self.notifications.fetch_add(1, Ordering::Relaxed);
    }

    /// A change notification about every environment arrived (a `TRUNCATE`):
    /// forget everything, counted.
    pub fn notified_all(&self) {
        self.min_lsn.store(u64::MAX, Ordering::Release);
        self.keys.flush();
        self.tokens.flush();
        self.notifications.fetch_add(1, Ordering::Relaxed);
    }

    /// The primary's WAL position read after the latest notification (or subscription).
    pub fn set_min_lsn(&self, lsn: u64) {
        self.min_lsn.store(lsn, Ordering::Release);
    }

    /// What a fill must ask of a replica: the position after the latest
    /// notification; nothing while the cache is dark (no answer is kept then,
    /// and a fill that straddles going live is refused by its ticket).
    fn refill_lsn(&self) -> u64 {
        if self.is_live() {
            self.min_lsn.load(Ordering::Acquire)
        } else {
            0
        }
    }
}

/// How long from now until `epoch_secs`, if it lies ahead (zero otherwise).
fn until(epoch_secs: f64) -> Duration {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    Duration::try_from_secs_f64(epoch_secs - now).unwrap_or(Duration::ZERO)
}

/// Authenticate a secret key or a public token, from memory when the cache
/// knows the answer (see the module docs). Same answers and errors as
/// [`auth::authenticate`] run through [`crate::replicas::Reads::auth_read`].
pub async fn authenticate(app: &App, cred: Option<&Credential>, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let (Some(answers), Some(c)) = (&app.answers, cred) else {
        let read = app.reads.auth_read(|client| async move { auth::authenticate(&client, cred, headers).await });
        return Box::pin(read).await;
    };
    // A token the cache holds is these very bytes, accepted before: no need
    // to read its payload to know it is one.
    let token_key = c.may_be_token().then(|| cache::key(&[b"token", c.value.as_bytes()]));
    if let Some(Some(t)) = token_key.and_then(|key| answers.tokens.get(&key)) {
        c.known_token();
        return Ok(Caller::Token(t));
    }
    match (c.kind(), token_key) {
        (CredentialKind::SecretKey, _) => {
            let Ok(branch) = auth::branch(headers) else { return Err(auth::refuse(cred)) };
            let branch = branch.as_deref();
            let key = cache::key(&[b"key", c.value.as_bytes(), &[u8::from(branch.is_some())], branch.unwrap_or("").as_bytes()]);
            if let Some(hit) = answers.keys.get(&key) {
                return hit.map(Caller::Key).ok_or_else(|| auth::refuse(cred));
            }
            let ticket = answers.keys.ticket();
            let found = Box::pin(app.reads.auth_read_after(answers.refill_lsn(), |client| async move {
                auth::find_by_key(&client, &c.value, headers).await?.ok_or_else(|| auth::refuse(cred))
            }))
            .await;
            match found {
                Ok(k) => {
                    let k = Arc::new(k);
                    let ttl = k.grace_expires_at.as_ref().map(|(_, end)| until(*end));
                    answers.keys.insert(ticket, key, Some(k.clone()), vec![k.environment_id.clone()], ttl);
                    Ok(Caller::Key(k))
                }
                Err(e) if e.status == StatusCode::UNAUTHORIZED => {
                    answers.keys.insert(ticket, key, None, Vec::new(), None);
                    Err(e)
                }
                Err(e) => Err(e),
            }
        }
        (CredentialKind::PublicToken, Some(key)) => {
            let ticket = answers.tokens.ticket();
            let caller =
                Box::pin(app.reads.auth_read_after(answers.refill_lsn(), |client| async move {
                    auth::authenticate(&client, cred, headers).await
                }))
                .await?;
            if let Caller::Token(t) = &caller {
                let exp = t.claims.get("exp").and_then(serde_json::Value::as_f64).map(until);
                let grace = t.grace_expires_at.as_ref().map(|(_, end)| until(*end));
                let ttl = match (exp, grace) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                answers.tokens.insert(ticket, key, Some(t.clone()), vec![t.environment_id.clone()], ttl);
            }
            Ok(caller)
        }
        _ => Err(auth::refuse(cred)),
    }
}

/// Which of a cache's counters a series reads.
type CounterOf = fn(&cache::Counters) -> &AtomicU64;

/// The cache's counters in `/metrics` (sampled at scrape time).
pub struct AnswersCollector(pub std::sync::Arc<Answers>);

impl std::fmt::Debug for AnswersCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AnswersCollector")
    }
}

impl prometheus_client::collector::Collector for AnswersCollector {
    fn encode(&self, mut encoder: prometheus_client::encoding::DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::gauge::ConstGauge;
        use prometheus_client::metrics::MetricType;
        let a = &self.0;
        let caches = [("key", &a.keys.counters), ("token", &a.tokens.counters)];
        let series: [(&str, &str, CounterOf); 7] = [
            ("cache_hits", "Authentications answered from the cache", |c| &c.hits),
            ("cache_misses", "Authentications the cache could not answer (asked of the database)", |c| &c.misses),
            ("cache_inserts", "Answers kept", |c| &c.inserts),
            ("cache_stale_fills", "Answers not kept: a change committed while they were asked", |c| &c.stale_fills),
            ("cache_evictions", "Entries evicted to stay within --cache-size", |c| &c.evictions),
            ("cache_expirations", "Entries dropped at their token's exp, grace window's end or --cache-max-age", |c| {
                &c.expirations
            }),
            ("cache_invalidations", "Entries dropped because a change committed (or the subscription was lost)", |c| {
                &c.invalidated
            }),
        ];
        for (name, help, field) in series {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (kind, counters) in caches {
                ConstCounter::new(field(counters).load(Ordering::Relaxed))
                    .encode(family.encode_family(&[("credential", kind)])?)?;
            }
        }
        let notes = encoder.encode_descriptor(
            "cache_notifications",
            "Change notifications applied (NOTIFY api_auth_changes)",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(a.notifications.load(Ordering::Relaxed)).encode(notes)?;
        let mut entries = encoder.encode_descriptor("cache_entries", "Answers held now", None, MetricType::Gauge)?;
        for (kind, cache) in [("key", a.keys.len()), ("token", a.tokens.len())] {
            ConstGauge::new(cache as i64).encode(entries.encode_family(&[("credential", kind)])?)?;
        }
        let live = encoder.encode_descriptor(
            "cache_live",
            "1 while subscribed to change notifications (the cache answers only then)",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(i64::from(a.is_live())).encode(live)?;
        Ok(())
    }
}
