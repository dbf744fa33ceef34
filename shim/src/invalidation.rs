//! The answer cache's subscription: `LISTEN api_auth_changes` on the primary.
//!
//! The extension notifies, at commit, the id of every environment whose
//! answers a change may alter (`sql/invalidation.sql`). This task holds one
//! connection to the primary (the `DATABASE_URL`, TLS as configured), and for
//! each notification drops that environment's entries
//! ([`Answers::notified`]; every entry for `*`, which a `TRUNCATE` sends,
//! [`Answers::notified_all`]) and then reads `pg_current_wal_lsn()`: a position
//! at or past the commit's, which replicas must have replayed before they may
//! refill the cache.
//!
//! Losing the connection loses notifications, so the cache goes dark first
//! ([`Answers::set_live`]`(false)`: nothing answered from memory, nothing
//! kept) and comes back only after a new `LISTEN` is in place and the cache
//! has been flushed. The first reconnection is immediate (a terminated
//! backend is no reason to wait), later ones back off from 50 ms to 2 s. The
//! time from a lost subscription to a live cache again is logged
//! (`recovered_ms`). A connection can also be lost without a word (a network
//! partition, a frozen backend: no FIN, no RST, and TCP keepalives take
//! minutes): after a second without notifications the listener asks the
//! connection to answer, and one that does not within `--db-timeout` counts
//! as lost. So a silent loss can leave answers stale for at most
//! [`HEARTBEAT`] + `--db-timeout` (3 s by default).
//!
//! The listener has a thread of its own (and a single-threaded runtime on
//! it): a notification is applied when it arrives, not after the requests
//! queued ahead of it on the request runtime. How soon a revocation takes
//! effect under load depends on exactly that.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{stream, StreamExt};
use tokio::time::Instant;
use tokio_postgres::AsyncMessage;

use crate::answers::Answers;
use crate::db;

/// The channel `sql/invalidation.sql` notifies.
pub const CHANNEL: &str = "api_auth_changes";
/// The payload that names every environment (a `TRUNCATE`, which fires no
/// row trigger; no environment id is `*`).
const EVERY_ENVIRONMENT: &str = "*";

const SUBSCRIBE: &str = "LISTEN api_auth_changes";
/// After this long without a notification the connection is asked to answer
/// (within `--db-timeout`), so that a silently lost subscription is noticed.
const HEARTBEAT: Duration = Duration::from_secs(1);
const WAL_POSITION: &str =
    "SELECT (pg_catalog.pg_current_wal_lsn() OPERATOR(pg_catalog.-) '0/0'::pg_catalog.pg_lsn)::pg_catalog.int8";

/// Start the listener for `answers`, on the primary at `url`, on its own thread.
pub fn spawn(answers: Arc<Answers>, url: String, db_timeout: Duration) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("answer cache listener runtime: {e}"))?;
    std::thread::Builder::new()
        .name("api-auth-listen".into())
        .spawn(move || runtime.block_on(listen(answers, url, db_timeout)))
        .map_err(|e| format!("answer cache listener thread: {e}"))?;
    Ok(())
}

/// Subscribe, and subscribe again whenever the subscription is lost.
async fn listen(answers: Arc<Answers>, url: String, db_timeout: Duration) {
    let mut backoff = Duration::ZERO;
    let mut dark_since = Some(Instant::now());
    loop {
        match subscribe_and_listen(&answers, &url, db_timeout, &mut dark_since).await {
            Ok(()) => tracing::warn!("answer cache: change notifications ended; cache off until resubscribed"),
            Err(e) => tracing::warn!(error = %e, "answer cache: no change notifications; cache off until resubscribed"),
        }
        answers.set_live(false);
        if dark_since.is_none() {
            // It was live: try again at once.
            dark_since = Some(Instant::now());
            backoff = Duration::ZERO;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).clamp(Duration::from_millis(50), Duration::from_secs(2));
    }
}

async fn lsn(client: &tokio_postgres::Client) -> Result<u64, tokio_postgres::Error> {
    let row = client.query_one(WAL_POSITION, &[]).await?;
    Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
}

/// One subscription: connect, LISTEN, flush and go live, then apply
/// notifications until the connection ends.
async fn subscribe_and_listen(
    answers: &Answers,
    url: &str,
    db_timeout: Duration,
    dark_since: &mut Option<Instant>,
) -> Result<(), String> {
    let target = db::connect_target(url, db_timeout)?;
    let (client, mut connection) = tokio::time::timeout(db_timeout, target.config.connect(target.tls))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| e.to_string())?;
    // The connection's messages: notifications to us, the end to everyone.
    let (tx, mut notes) = tokio::sync::mpsc::unbounded_channel::<String>();
    let driver = tokio::spawn(async move {
        let mut messages = stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) if n.channel() == CHANNEL => {
                    if tx.send(n.payload().to_owned()).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(())
    });

    let setup = async {
        client.batch_execute(SUBSCRIBE).await?;
        lsn(&client).await
    };
    let start = match tokio::time::timeout(db_timeout, setup).await {
        Ok(Ok(lsn)) => lsn,
        Ok(Err(e)) => {
            driver.abort();
            return Err(e.to_string());
        }
        Err(_) => {
            driver.abort();
            return Err("LISTEN timed out".into());
        }
    };
    // Subscribed: from here on no change is missed. The position comes first:
    // a fill allowed by going live must not be served by a replica that has not
    // replayed a commit made while the subscription was down. Then flush what
    // may predate it and go live.
    answers.set_min_lsn(start);
    answers.set_live(true);
    if let Some(since) = dark_since.take() {
        tracing::info!(recovered_ms = since.elapsed().as_millis() as u64, "answer cache: subscribed to change notifications");
    }

    let lost = loop {
        let environment = match tokio::time::timeout(HEARTBEAT, notes.recv()).await {
            Ok(Some(environment)) => environment,
            // The connection ended: its driver says why.
            Ok(None) => {
                return match driver.await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(e),
                    Err(e) => Err(e.to_string()),
                }
            }
            // Quiet: make sure the connection still answers. One lost without
            // a word (a partition, a frozen backend) would otherwise keep the
            // cache live while notifications go nowhere.
            // (The position query, its answer unused: refills wait only for
            // the positions of notifications.)
            Err(_) => match tokio::time::timeout(db_timeout, lsn(&client)).await {
                Ok(Ok(_)) => continue,
                Ok(Err(e)) => break e.to_string(),
                Err(_) => break format!("the listening connection did not answer within {db_timeout:?}"),
            },
        };
        apply(answers, &environment);
        // Drain what else arrived meanwhile before paying for the position read.
        while let Ok(more) = notes.try_recv() {
            apply(answers, &more);
        }
        match tokio::time::timeout(db_timeout, lsn(&client)).await {
            Ok(Ok(position)) => answers.set_min_lsn(position),
            Ok(Err(e)) => break e.to_string(),
            Err(_) => break "reading the WAL position timed out".into(),
        }
    };
    driver.abort();
    Err(lost)
}

/// One notification: forget its environment's answers, or every answer.
fn apply(answers: &Answers, payload: &str) {
    if payload == EVERY_ENVIRONMENT {
        answers.notified_all();
    } else {
        answers.notified(payload);
    }
}
