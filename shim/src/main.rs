//! api-auth-shim: the trigger.dev-compatible REST routes of SPEC §5 over the
//! `api_auth` PostgreSQL extension. See `--help` and `shim/README.md`.

mod admin;
mod answers;
mod app;
mod auth;
mod body;
mod cache;
mod config;
mod db;
mod errors;
mod grace;
mod health;
mod invalidation;
mod jwt;
mod logging;
mod metrics;
mod replicas;
mod router;
mod server;
mod sessions;
mod tls;
mod util;
mod verify;

use std::process::ExitCode;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use config::Config;

fn main() -> ExitCode {
    let config = match Config::from_env() {
        Ok(c) => c,
        // Also --help and --version (exit 0); bad values exit 2.
        Err(e) => e.exit(),
    };
    logging::init(&config);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "fatal");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> Result<(), String> {
    let public = db::pool(&config.database_url, config.pool_size, config.db_timeout)?;
    let admin = match &config.admin_database_url {
        Some(url) => db::pool(url, config.admin_pool_size, config.db_timeout)?,
        None => public.clone(),
    };
    let settings = replicas::Settings {
        max_lag: config.max_replica_lag,
        confirm_rate: config.replica_confirm_rate,
        pool_size: config.replica_pool_size,
        db_timeout: config.db_timeout,
    };
    let reads = Arc::new(replicas::Reads::new(public.clone(), &config.database_url, &config.replica_database_urls, settings)?);
    reads.start_monitor();
    let answers = match config.cache_size {
        0 => None,
        size => {
            let answers = Arc::new(answers::Answers::new(size, config.cache_max_age));
            invalidation::spawn(answers.clone(), config.database_url.clone(), config.db_timeout)?;
            Some(answers)
        }
    };
    let metrics = config.metrics.then(|| {
        let mut m = metrics::Metrics::new();
        if reads.has_replicas() {
            m.register_collector(Box::new(reads.collector()));
        }
        if let Some(a) = &answers {
            m.register_collector(Box::new(answers::AnswersCollector(a.clone())));
        }
        m
    });
    let app = Arc::new(app::App {
        reads,
        pools: db::Pools { public, admin },
        separate_admin_pool: config.admin_database_url.is_some(),
        admin_token: config.admin_token.clone(),
        request_timeout: config.request_timeout,
        bench_routes: config.bench_routes,
        request_ids: AtomicU64::new(0),
        metrics,
        metrics_on_api: config.metrics_listen.is_none(),
        grace: grace::GraceSignals::new(config.deprecation_link.clone()),
        answers,
    });

    let database_tls = db::connect_target(&config.database_url, config.db_timeout)?.describe();
    let listener =
        tokio::net::TcpListener::bind(config.listen).await.map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let metrics_listener = match config.metrics_listen {
        Some(a) if config.metrics => {
            let l = tokio::net::TcpListener::bind(a).await.map_err(|e| format!("cannot listen on {a} (metrics): {e}"))?;
            Some(l)
        }
        _ => None,
    };
    let metrics_at = match &metrics_listener {
        _ if !config.metrics => "disabled".to_string(),
        Some(l) => format!("http://{}/metrics", l.local_addr().map_err(|e| e.to_string())?),
        None => format!("http://{addr}/metrics"),
    };
    tracing::info!(
        listen = %addr,
        pool_size = config.pool_size,
        admin_routes = if config.admin_token.is_some() { "enabled" } else { "disabled (no admin token)" },
        separate_admin_database = config.admin_database_url.is_some(),
        database_tls = %database_tls,
        replicas = config.replica_database_urls.len(),
        max_replica_lag_ms = config.max_replica_lag.as_millis() as u64,
        bench_routes = config.bench_routes,
        metrics = %metrics_at,
        "api-auth-shim listening on http://{addr}"
    );

    // Warm the pool without blocking start-up: a database that is down now
    // only means 503s until it is back.
    let warm = app.clone();
    tokio::spawn(async move {
        match warm.pools.public.get().await {
            Ok(_) => tracing::info!("database reachable"),
            Err(e) => tracing::warn!(
                error = %errors::pool_error_text(&e),
                "database not reachable yet; answering 503 until it is"
            ),
        }
    });

    // One signal stops both listeners.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let metrics_server = metrics_listener.map(|l| {
        let (app, stop) = (app.clone(), stopped(stop_rx.clone()));
        tokio::spawn(async move {
            server::serve(l, app, router::handle_metrics_listener, 64, Duration::from_secs(1), stop).await;
        })
    });
    server::serve(listener, app, router::handle, config.max_connections, config.shutdown_timeout, stopped(stop_rx)).await;
    if let Some(m) = metrics_server {
        let _ = m.await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// SIGTERM or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}
