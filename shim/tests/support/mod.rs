//! Test support: run the real `api-auth-shim` binary against a fresh database
//! of the test cluster (`API_AUTH_TEST_DSN`, see scripts/test.sh) and talk to
//! it over raw HTTP/1.1 on TCP, so that tests can also send hostile bytes.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// A running shim; killed on drop.
pub struct Shim {
    pub child: Child,
    pub addr: String,
    pub dsn: String,
    logs: Arc<Mutex<Vec<String>>>,
}

/// Options for [`Shim::start_with`].
#[derive(Default)]
pub struct Opts {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Do not configure an admin token.
    pub no_admin_token: bool,
}

impl Shim {
    /// A shim on a fresh database, admin token [`ADMIN_TOKEN`].
    pub fn start(prefix: &str) -> Shim {
        let dsn = api_auth_tests::fresh_database(prefix);
        Shim::start_with(&dsn, Opts::default())
    }

    pub fn start_with(dsn: &str, opts: Opts) -> Shim {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_api-auth-shim"));
        cmd.arg("--listen").arg("127.0.0.1:0").args(&opts.args);
        cmd.env_remove("API_AUTH_ADMIN_TOKEN").env_remove("API_AUTH_LISTEN").env("DATABASE_URL", dsn);
        if !opts.no_admin_token {
            cmd.env("API_AUTH_ADMIN_TOKEN", ADMIN_TOKEN);
        }
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn api-auth-shim");
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let sink = logs.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(i) = line.find("listening on http://") {
                    let addr: String = line[i + "listening on http://".len()..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '[' | ']'))
                        .collect();
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr);
                    }
                }
                if std::env::var_os("SHIM_TEST_LOGS").is_some() {
                    eprintln!("[shim] {line}");
                }
                sink.lock().unwrap().push(line);
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                panic!("the shim did not start; logs:\n{}", logs.lock().unwrap().join("\n"));
            }
        };
        Shim { child, addr, dsn: dsn.to_string(), logs }
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn sigterm(&self) {
        let ok = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status().unwrap().success();
        assert!(ok, "kill -TERM failed");
    }

    /// Wait for the process to exit (after a signal); its exit status.
    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(start.elapsed() < within, "the shim did not exit within {within:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    // ---- HTTP ----

    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Resp {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n", self.addr).into_bytes();
        for (k, v) in headers {
            req.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
        }
        if let Some(b) = body {
            req.extend_from_slice(format!("Content-Length: {}\r\n", b.len()).as_bytes());
        }
        req.extend_from_slice(b"\r\n");
        if let Some(b) = body {
            req.extend_from_slice(b);
        }
        self.raw(&req)
    }

    pub fn get(&self, path: &str, bearer: Option<&str>) -> Resp {
        let auth = bearer.map(|b| format!("Bearer {b}"));
        let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        self.request("GET", path, &headers, None)
    }

    pub fn post(&self, path: &str, bearer: Option<&str>, body: &Value) -> Resp {
        let auth = bearer.map(|b| format!("Bearer {b}"));
        let mut headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        headers.push(("Content-Type", "application/json"));
        self.request("POST", path, &headers, Some(body.to_string().as_bytes()))
    }

    /// Send raw bytes (written from another thread, so that a server that
    /// answers before reading everything is observed like a real client would)
    /// and read the answer until the server closes.
    pub fn raw(&self, bytes: &[u8]) -> Resp {
        raw_at(&self.addr, bytes)
    }

    // ---- admin helpers ----

    pub fn admin_post(&self, path: &str, body: &Value) -> Resp {
        self.post(path, Some(ADMIN_TOKEN), body)
    }

    /// Create an environment; (id, apiKey).
    pub fn create_env(&self, slug: &str, kind: &str) -> (String, String) {
        let r = self.admin_post("/admin/api/v1/environments", &json!({ "slug": slug, "type": kind, "projectId": "proj_1" }));
        assert_eq!(r.status, 201, "create environment: {}", r.text());
        let v = r.json();
        (v["id"].as_str().unwrap().into(), v["apiKey"].as_str().unwrap().into())
    }

    /// Rotate; (new apiKey, revoked key id).
    pub fn rotate(&self, env: &str) -> (String, String) {
        let r = self.admin_post(&format!("/admin/api/v1/environments/{env}/regenerate-api-key"), &json!({}));
        assert_eq!(r.status, 200, "rotate: {}", r.text());
        let v = r.json();
        (v["apiKey"].as_str().unwrap().into(), v["revokedApiKey"]["id"].as_str().unwrap().into())
    }

    /// Mint a public token with `key`; panics unless 200.
    pub fn mint(&self, key: &str, scopes: &[&str]) -> String {
        let r = self.post("/api/v1/auth/jwt", Some(key), &json!({ "claims": { "scopes": scopes } }));
        assert_eq!(r.status, 200, "mint: {}", r.text());
        r.json()["token"].as_str().unwrap().to_string()
    }
}

/// [`Shim::raw`] to any address (e.g. the `--metrics-listen` one).
pub fn raw_at(addr: &str, bytes: &[u8]) -> Resp {
    let stream = TcpStream::connect(addr).expect("connect to the shim");
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let data = bytes.to_vec();
    let w = std::thread::spawn(move || {
        let _ = writer.write_all(&data);
        let _ = writer.flush();
    });
    let mut out = Vec::new();
    let mut reader = stream;
    let mut buf = [0u8; 16384];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                if let Some(r) = Resp::parse(&out) {
                    if r.complete {
                        break;
                    }
                }
            }
            Err(e) => {
                if out.is_empty() {
                    panic!("reading the answer failed: {e}");
                }
                break;
            }
        }
    }
    let _ = reader.shutdown(Shutdown::Both);
    let _ = w.join();
    Resp::parse(&out).unwrap_or_else(|| panic!("no HTTP answer, got {:?}", String::from_utf8_lossy(&out)))
}

/// A scrape of `/metrics`: the text, and every sample by series
/// (`name{labels}` as exposed).
pub struct Scrape {
    pub text: String,
    pub samples: std::collections::BTreeMap<String, f64>,
}

impl Scrape {
    pub fn parse(text: &str) -> Scrape {
        let mut samples = std::collections::BTreeMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
            let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("bad sample line {line:?}"));
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value in {line:?}"));
            assert!(samples.insert(series.to_string(), value).is_none(), "duplicate series {series}");
        }
        Scrape { text: text.to_string(), samples }
    }

    /// The value of a series, 0 when absent (a counter not yet incremented).
    pub fn get(&self, series: &str) -> f64 {
        self.samples.get(series).copied().unwrap_or(0.0)
    }

    /// Series whose value changed since `before` (new series included), with
    /// the change; only names starting with `prefix`.
    pub fn delta(&self, before: &Scrape, prefix: &str) -> std::collections::BTreeMap<String, f64> {
        self.samples
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .filter_map(|(k, v)| {
                let d = v - before.get(k);
                (d != 0.0).then(|| (k.clone(), d))
            })
            .collect()
    }
}

/// `promtool check metrics` on an exposition (Debian's `prometheus` package,
/// installed by scripts/setup.sh): panics with promtool's complaint.
pub fn promtool_check(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; scripts/setup.sh installs it)");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- exposition:\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Shim {
    /// Scrape `/metrics` on the API listener (or `addr`).
    pub fn scrape_at(&self, addr: &str) -> Scrape {
        let r = raw_at(addr, format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes());
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
        Scrape::parse(&r.text())
    }

    pub fn scrape(&self) -> Scrape {
        self.scrape_at(&self.addr.clone())
    }
}

impl Drop for Shim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A parsed HTTP answer.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    complete: bool,
}

impl Resp {
    pub fn parse(raw: &[u8]) -> Option<Resp> {
        let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&raw[..end]).to_string();
        let mut lines = head.split("\r\n");
        let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
        let headers: Vec<(String, String)> =
            lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string())).collect();
        let body = raw[end + 4..].to_vec();
        let complete = match headers.iter().find(|(k, _)| k == "content-length") {
            Some((_, n)) => body.len() >= n.parse::<usize>().unwrap_or(0),
            None => false,
        };
        Some(Resp { status, headers, body, complete })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text()))
    }

    /// Assert a JSON error answer with this status; returns the body.
    pub fn assert_error(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "expected {status}, got {}: {}", self.status, self.text());
        assert_eq!(self.header("content-type"), Some("application/json"), "not JSON: {:?}", self.headers);
        let v = self.json();
        assert!(v["error"].is_string(), "no error string in {v}");
        v
    }
}

/// A TCP forwarder in front of the database that a test can take down (every
/// connection is cut and new ones are refused) and bring back.
pub struct Flaky {
    pub port: u16,
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Flaky {
    pub fn new(target: String) -> Flaky {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::new(Mutex::new(Vec::new()));
        let (up2, conns2) = (up.clone(), conns.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if !up2.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&target) else { continue };
                conns2.lock().unwrap().push(client.try_clone().unwrap());
                conns2.lock().unwrap().push(server.try_clone().unwrap());
                for (mut a, mut b) in [(client.try_clone().unwrap(), server.try_clone().unwrap()), (server, client)] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut a, &mut b);
                        let _ = b.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        Flaky { port, up, conns }
    }

    pub fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    pub fn up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// The database server's TCP address (host:port) and a DSN for `dbname`
/// through `host=127.0.0.1 port=<port>`.
pub fn tcp_dsn(dsn: &str, port: u16) -> String {
    let mut parts: Vec<String> = dsn
        .split_whitespace()
        .filter(|p| !p.starts_with("host=") && !p.starts_with("port=") && !p.starts_with("hostaddr="))
        .map(str::to_owned)
        .collect();
    parts.push("host=127.0.0.1".into());
    parts.push(format!("port={port}"));
    parts.join(" ")
}

/// The port of the cluster in a key=value DSN (5432 when absent).
pub fn dsn_port(dsn: &str) -> u16 {
    dsn.split_whitespace().find_map(|p| p.strip_prefix("port=")).and_then(|p| p.parse().ok()).unwrap_or(5432)
}

/// Flip the signature of a JWT (keeps it well-formed base64url of 32 bytes).
pub fn tamper_signature(token: &str) -> String {
    let (head, sig) = token.rsplit_once('.').unwrap();
    let mut s: Vec<u8> = sig.bytes().collect();
    s[0] = if s[0] == b'A' { b'B' } else { b'A' };
    format!("{head}.{}", String::from_utf8(s).unwrap())
}
