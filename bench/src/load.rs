//! A small HTTP/1.1 load generator for loopback servers.
//!
//! `conns` threads, each with one keep-alive connection, send `GET path` (or
//! several routes' requests in turn, [`run_mixed`]) back to back (closed loop: the next request leaves when the previous
//! answer is in), or, with a `rate`, each on its own schedule (open loop:
//! latency at a given offered load, counted from the scheduled time whenever
//! the previous answer made the request late), for `warmup + duration`; only
//! requests that start after the warm-up are counted. Each request carries
//! the next credential of the list (as `Authorization: Bearer …`), so lookups
//! spread over many environments.
//! Every request is bounded in time: the run stops by itself.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct LoadSpec {
    pub addr: SocketAddr,
    /// What is requested: one route, or several taking turns ([`run_mixed`]).
    pub routes: Vec<Route>,
    pub conns: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// Requests per second over all connections (open loop); `None`: as fast
    /// as answers come (closed loop).
    pub rate: Option<f64>,
}

#[derive(Clone, Debug, Default)]
pub struct LoadResult {
    pub requests: u64,
    /// Answers other than 200, and transport errors.
    pub errors: u64,
    pub rps: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    pub first_error: Option<String>,
}

impl LoadResult {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "requests": self.requests, "errors": self.errors, "rps": self.rps,
            "p50_us": self.p50_us, "p90_us": self.p90_us, "p99_us": self.p99_us, "max_us": self.max_us,
            "first_error": self.first_error,
        })
    }
}

struct Conn {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

impl Conn {
    fn stream(&mut self) -> std::io::Result<&mut TcpStream> {
        if self.stream.is_none() {
            let s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(Duration::from_secs(15)))?;
            s.set_write_timeout(Some(Duration::from_secs(15)))?;
            self.stream = Some(s);
            self.buf.clear();
        }
        Ok(self.stream.as_mut().expect("just connected"))
    }

    /// Send one request, read one full response; returns the status code.
    fn roundtrip(&mut self, request: &[u8]) -> Result<u16, String> {
        let result = self.try_roundtrip(request);
        if result.is_err() {
            self.stream = None;
        }
        result
    }

    fn try_roundtrip(&mut self, request: &[u8]) -> Result<u16, String> {
        let stream = self.stream().map_err(|e| format!("connect: {e}"))?;
        stream.write_all(request).map_err(|e| format!("write: {e}"))?;
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let mut chunk = [0u8; 8192];
        // Head: read until httparse has all of it.
        let (head_end, status, length, close) = loop {
            let mut fields = [httparse::EMPTY_HEADER; 32];
            let mut response = httparse::Response::new(&mut fields);
            match response.parse(&buf) {
                Ok(httparse::Status::Complete(head_end)) => {
                    let status = response.code.ok_or("response without a status")?;
                    let (mut length, mut close) = (None, false);
                    for h in response.headers.iter() {
                        if h.name.eq_ignore_ascii_case("content-length") {
                            length = std::str::from_utf8(h.value).ok().and_then(|v| v.trim().parse::<usize>().ok());
                        } else if h.name.eq_ignore_ascii_case("connection") && h.value.eq_ignore_ascii_case(b"close") {
                            close = true;
                        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                            return Err("chunked responses are not supported by the load generator".into());
                        }
                    }
                    break (head_end, status, length, close);
                }
                Ok(httparse::Status::Partial) => {}
                Err(e) => return Err(format!("bad response head: {e}")),
            }
            let stream = self.stream.as_mut().ok_or("no stream")?;
            let n = stream.read(&mut chunk).map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("connection closed".into());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let length = length.ok_or("response without content-length")?;
        while buf.len() < head_end + length {
            let stream = self.stream.as_mut().ok_or("no stream")?;
            let n = stream.read(&mut chunk).map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("connection closed in body".into());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        if buf.len() > head_end + length {
            return Err("unexpected bytes after the response".into());
        }
        self.buf = buf;
        if close {
            self.stream = None;
        }
        Ok(status)
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)] as f64
}

/// The load of a spec with one route: its result.
pub fn run(spec: &LoadSpec) -> LoadResult {
    assert_eq!(spec.routes.len(), 1, "load::run takes one route; run_mixed several");
    run_mixed(spec).pop().expect("one route, one result")
}

/// One kind of request in a load.
#[derive(Clone, Debug)]
pub struct Route {
    pub path: String,
    /// Bearer credentials, used round-robin; empty: no Authorization header.
    pub creds: Arc<Vec<String>>,
}

impl Route {
    pub fn new(path: &str, creds: &Arc<Vec<String>>) -> Route {
        Route { path: path.into(), creds: creds.clone() }
    }
}

/// The load of `spec`, its routes taking turns request by request on every
/// connection (each connection starting at a different one): one result per
/// route. Every route sees the same moments, the same offered load and the
/// same neighbours, so the results differ only by what a request of each
/// route costs (the rate is shared: each route gets `rate / routes.len()`).
pub fn run_mixed(spec: &LoadSpec) -> Vec<LoadResult> {
    let start = Instant::now();
    let measure_from = start + spec.warmup;
    let end = measure_from + spec.duration;
    let kinds = spec.routes.len().max(1);
    let handles: Vec<_> = (0..spec.conns)
        .map(|t| {
            let spec = spec.clone();
            std::thread::spawn(move || {
                let mut conn = Conn { addr: spec.addr, stream: None, buf: Vec::with_capacity(16 * 1024) };
                // This thread's share of each route's credentials, pre-rendered.
                let requests: Vec<Vec<Vec<u8>>> = spec
                    .routes
                    .iter()
                    .map(|route| {
                        if route.creds.is_empty() {
                            vec![format!("GET {} HTTP/1.1\r\nHost: {}\r\n\r\n", route.path, spec.addr).into_bytes()]
                        } else {
                            route
                                .creds
                                .iter()
                                .skip(t % route.creds.len())
                                .step_by(spec.conns.max(1))
                                .map(|c| {
                                    format!(
                                        "GET {} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {c}\r\n\r\n",
                                        route.path, spec.addr
                                    )
                                    .into_bytes()
                                })
                                .collect()
                        }
                    })
                    .collect();
                let mut lat: Vec<Vec<u32>> = vec![Vec::with_capacity((1 << 16) / kinds); kinds];
                let mut errors = vec![0u64; kinds];
                let mut first_error = vec![None::<String>; kinds];
                // Open loop: this connection's share of the rate, staggered.
                let interval = spec.rate.map(|r| Duration::from_secs_f64(spec.conns as f64 / r.max(1.0)));
                let mut scheduled = start + interval.map_or(Duration::ZERO, |i| i * t as u32 / spec.conns.max(1) as u32);
                let mut i = t;
                loop {
                    let mut t0 = Instant::now();
                    if let Some(interval) = interval {
                        if scheduled > t0 {
                            std::thread::sleep(scheduled - t0);
                            t0 = Instant::now();
                        } else {
                            // Late because the previous answer was: the wait counts.
                            t0 = scheduled;
                        }
                        scheduled += interval;
                    }
                    if t0 >= end {
                        break;
                    }
                    let (kind, n) = (i % kinds, i / kinds);
                    let req = &requests[kind][n % requests[kind].len()];
                    i += 1;
                    let outcome = conn.roundtrip(req);
                    let t1 = Instant::now();
                    if t0 < measure_from {
                        continue;
                    }
                    lat[kind].push((t1 - t0).as_micros().min(u32::MAX as u128) as u32);
                    match outcome {
                        Ok(200) => {}
                        Ok(s) => {
                            errors[kind] += 1;
                            first_error[kind].get_or_insert_with(|| format!("HTTP {s}"));
                        }
                        Err(e) => {
                            errors[kind] += 1;
                            first_error[kind].get_or_insert(e);
                            std::thread::sleep(Duration::from_millis(10));
                        }
                    }
                }
                (lat, errors, first_error)
            })
        })
        .collect();
    let mut all = vec![Vec::new(); kinds];
    let mut results = vec![LoadResult::default(); kinds];
    for h in handles {
        let (lat, errors, first_error) = h.join().expect("load thread panicked");
        for (kind, ((lat, errors), first_error)) in lat.into_iter().zip(errors).zip(first_error).enumerate() {
            all[kind].extend(lat);
            results[kind].errors += errors;
            if results[kind].first_error.is_none() {
                results[kind].first_error = first_error;
            }
        }
    }
    for (mut all, result) in all.into_iter().zip(results.iter_mut()) {
        all.sort_unstable();
        result.requests = all.len() as u64;
        result.rps = all.len() as f64 / spec.duration.as_secs_f64();
        result.p50_us = percentile(&all, 0.50);
        result.p90_us = percentile(&all, 0.90);
        result.p99_us = percentile(&all, 0.99);
        result.max_us = all.last().copied().unwrap_or(0) as f64;
    }
    results
}

/// One keep-alive connection for requests one at a time (status only).
pub struct Client(Conn);

impl Client {
    pub fn new(addr: SocketAddr) -> Client {
        Client(Conn { addr, stream: None, buf: Vec::with_capacity(16 * 1024) })
    }

    /// `GET path` with an optional bearer credential; the status code.
    pub fn get(&mut self, path: &str, bearer: Option<&str>) -> Result<u16, String> {
        let auth = bearer.map(|b| format!("Authorization: Bearer {b}\r\n")).unwrap_or_default();
        let req = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n{auth}\r\n", self.0.addr);
        // A kept-alive connection the server has just closed fails once; a GET
        // is safe to send again, on a new connection.
        self.0.roundtrip(req.as_bytes()).or_else(|_| self.0.roundtrip(req.as_bytes()))
    }
}

/// After a revocation has committed: ask `path` with `credential` until it
/// answers 401; how long that took. Any status but 200/401, or `limit`
/// passing, is an error.
pub fn until_refused(client: &mut Client, path: &str, credential: &str, limit: Duration) -> Result<Duration, String> {
    let start = Instant::now();
    loop {
        match client.get(path, Some(credential))? {
            401 => return Ok(start.elapsed()),
            200 => {}
            other => return Err(format!("status {other} while waiting for the revocation")),
        }
        if start.elapsed() > limit {
            return Err(format!("a revoked credential was still accepted {limit:?} after the commit"));
        }
    }
}

/// Revocation trials summed up: p50, p99 and max of `delays_ms`, the wrong
/// answers counted after each first 401, every delay, and the background load
/// they ran under (`offered`: its pace, `None` for closed loop).
pub fn revocation_summary(delays_ms: Vec<f64>, wrong: u64, background: &LoadResult, offered: Option<f64>) -> serde_json::Value {
    let mut sorted = delays_ms.clone();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let at = |p: f64| sorted.get((((sorted.len().max(1) - 1) as f64) * p).round() as usize).copied().unwrap_or(f64::NAN);
    serde_json::json!({
        "trials": sorted.len(), "p50": at(0.5), "p99": at(0.99), "max": at(1.0),
        "wrong_answers": wrong, "all": delays_ms,
        "background_rps": background.rps, "background_errors": background.errors,
        "background_offered_rps": offered,
    })
}

/// A [`revocation_summary`]'s delays as printed in the tables:
/// `p50 … ms  p99 … ms  max … ms`, with `decimals` digits.
pub fn delays_text(summary: &serde_json::Value, decimals: usize) -> String {
    let ms = |k: &str| summary[k].as_f64().unwrap_or(f64::NAN);
    format!("p50 {:.decimals$} ms  p99 {:.decimals$} ms  max {:.decimals$} ms", ms("p50"), ms("p99"), ms("max"))
}

/// `GET path` once: the body, as text.
pub fn get_text(addr: SocketAddr, path: &str) -> Result<String, String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(15))).map_err(|e| e.to_string())?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| format!("read: {e}"))?;
    let body = find(&raw, b"\r\n\r\n").map(|i| &raw[i + 4..]).ok_or("no HTTP answer")?;
    String::from_utf8(body.to_vec()).map_err(|e| format!("{path}: not UTF-8: {e}"))
}

/// `GET path` once and parse the JSON body (for `/readyz`).
pub fn get_json(addr: SocketAddr, path: &str) -> Result<serde_json::Value, String> {
    serde_json::from_str(&get_text(addr, path)?).map_err(|e| format!("{path}: not JSON: {e}"))
}

/// GET `path` once (no credentials); true on 200. For readiness checks.
pub fn probe(addr: SocketAddr, path: &str) -> bool {
    let mut conn = Conn { addr, stream: None, buf: Vec::new() };
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    matches!(conn.roundtrip(req.as_bytes()), Ok(200))
}
