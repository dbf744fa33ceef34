//! Thousands of hostile requests against the running shim: malformed,
//! oversized, truncated, wrongly encoded, wrong-alg and replayed requests, and
//! slow clients. No 5xx, the process keeps serving, its memory stays flat, and
//! no secret key or token appears in any log line.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde_json::json;
use support::{tamper_signature, Shim, ADMIN_TOKEN};

/// Deterministic xorshift, so a failure can be replayed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

/// Send `bytes`, close our sending side, and read the answer (if any): a
/// truncated request. The shim must still answer.
fn truncated(addr: &str, bytes: &[u8]) -> support::Resp {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let _ = s.write_all(bytes);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    support::Resp::parse(&out).unwrap_or_else(|| panic!("no answer to a truncated request: {:?}", String::from_utf8_lossy(&out)))
}

fn forged(header: serde_json::Value, payload: serde_json::Value, sig: &[u8]) -> String {
    format!("{}.{}.{}", B64.encode(header.to_string()), B64.encode(payload.to_string()), B64.encode(sig))
}

#[test]
fn hostile_requests_change_nothing() {
    let shim = Shim::start("shim_hostile");
    let (env, key) = shim.create_env("prod", "PRODUCTION");
    let token = shim.mint(&key, &["write:tasks:foo"]);
    let (new_key, _) = shim.rotate(&env);
    let secrets = [key.clone(), new_key.clone(), token.clone(), ADMIN_TOKEN.to_string()];
    let claims = json!({"sub": env, "pub": true, "iss": "https://id.trigger.dev", "aud": "https://api.trigger.dev",
                        "exp": 4_000_000_000u64, "scopes": ["admin"]});
    let bad_tokens = vec![
        forged(json!({"alg": "none"}), claims.clone(), b""),
        forged(json!({"alg": "HS512"}), claims.clone(), &[7; 64]),
        forged(json!({"alg": "RS256"}), claims.clone(), &[7; 256]),
        forged(json!({"alg": "HS256"}), claims.clone(), &[7; 32]),
        tamper_signature(&token),
        token[..token.len() / 2].to_string(),
        format!("{token}.{token}"),
        "eyJhbGciOiJIUzI1NiJ9.e30".to_string(),
        "tr_prod_".to_string() + &"A".repeat(4000),
        "pk_prod_whatever".to_string(),
    ];
    let routes = [
        "/api/v1/auth/jwt/claims",
        "/api/v1/auth/jwt",
        "/api/v1/sessions",
        "/admin/api/v1/environments",
        "/admin/api/v1/revoked-api-keys/x",
        "/admin/api/v1/environments/x/regenerate-api-key",
    ];
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    let mut count = |s: u16| *statuses.entry(s).or_default() += 1;

    let round = |rng: &mut Rng, count: &mut dyn FnMut(u16)| {
        let route = routes[rng.below(routes.len())];
        let auth = match rng.below(4) {
            0 => bad_tokens[rng.below(bad_tokens.len())].clone(),
            1 => String::from_utf8_lossy(&rng.bytes(40)).into_owned(),
            2 => new_key.clone(),
            _ => token.clone(),
        };
        let auth_header = format!("Bearer {}", auth.replace(['\r', '\n'], ""));
        let case = rng.below(7);
        let t0 = Instant::now();
        let r = match case {
            // Random bytes as a JSON body.
            0 => shim.request("POST", route, &[("Authorization", &auth_header), ("Content-Type", "application/json")], Some(&{ let n = rng.below(300); rng.bytes(n) })),
            // Truncated valid JSON.
            1 => {
                let body = json!({"type": "chat", "taskIdentifier": "foo", "triggerConfig": {}, "externalId": "x", "claims": {"scopes": ["a"]}}).to_string();
                let cut = rng.below(body.len());
                shim.request("POST", route, &[("Authorization", &auth_header)], Some(&body.as_bytes()[..cut]))
            }
            // Wrong types.
            2 => shim.post(route, Some(&auth), &json!({"type": 5, "taskIdentifier": [], "triggerConfig": "x", "tags": {}, "expiresAt": true, "claims": 3, "expirationTime": {}})),
            // A Content-Length that lies: less is sent, then the client hangs up.
            // (Clients that stop without hanging up are the slow clients below.)
            3 => truncated(&shim.addr, format!("POST {route} HTTP/1.1\r\nHost: x\r\nAuthorization: {auth_header}\r\nContent-Length: 500\r\n\r\n{{\"a\":").as_bytes()),
            // Non-UTF-8 and control bytes in the request head.
            4 => {
                let mut raw = b"GET /api/v1/auth/verify HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ".to_vec();
                raw.extend(rng.bytes(30).into_iter().filter(|b| *b != b'\r' && *b != b'\n'));
                raw.extend_from_slice(b"\r\nx-trigger-branch: \xff\xfe\r\nConnection: close\r\n\r\n");
                shim.raw(&raw)
            }
            // Oversized body.
            5 => shim.request("POST", route, &[("Authorization", &auth_header)], Some(&vec![b'{'; 40 * 1024])),
            // Garbage request line.
            // Garbage instead of a request line. (Starting with a byte other than
            // CR/LF: blank lines before a request are legal and just wait.)
            _ => {
                let n = 1 + rng.below(200);
                let mut garbage = rng.bytes(n);
                if garbage[0] == b'\r' || garbage[0] == b'\n' {
                    garbage[0] = b'!';
                }
                shim.raw(&[garbage, b"\r\n\r\n".to_vec()].concat())
            }
        };
        count(r.status);
        assert!(t0.elapsed() < Duration::from_secs(5), "case {case} took {:?}", t0.elapsed());
        assert!(r.status < 500 || r.status == 503, "{} on {route}: {}", r.status, r.text());
        if r.status != 200 && r.status != 201 && !r.body.is_empty() {
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_else(|_| panic!("non-JSON error: {}", r.text()));
            assert!(v["error"].is_string(), "{}", r.text());
        }
    };

    // Warm up, then measure memory across the bulk of the run.
    for _ in 0..400 {
        round(&mut rng, &mut count);
    }
    let pid = shim.child.id();
    let rss_before = rss_kib(pid);

    // Slow clients (one header byte a second) hold connections while the rest goes on.
    let slow: Vec<_> = (0..20)
        .map(|_| {
            let addr = shim.addr.clone();
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                let started = Instant::now();
                for b in b"GET /api/v1/auth/verify HTTP/1.1\r\nHost: slow\r\n".iter().cycle() {
                    if s.write_all(&[*b]).is_err() || started.elapsed() > Duration::from_secs(15) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(500));
                }
                let mut buf = Vec::new();
                let _ = s.read_to_end(&mut buf);
                started.elapsed()
            })
        })
        .collect();

    // Replays: the same valid requests again and again give the same answers.
    let replay = json!({"type": "chat", "taskIdentifier": "foo", "triggerConfig": {}, "externalId": "replayed"});
    let first = shim.post("/api/v1/sessions", Some(&token), &replay);
    assert_eq!(first.status, 201, "{}", first.text());
    let id = first.json()["id"].clone();
    for i in 0..3000 {
        if i % 10 == 0 {
            let again = shim.post("/api/v1/sessions", Some(&token), &replay);
            assert_eq!(
                (again.status, again.json()["id"].clone(), again.json()["isCached"].clone()),
                (200, id.clone(), json!(true))
            );
        } else {
            round(&mut rng, &mut count);
        }
    }
    let rss_after = rss_kib(pid);

    for t in slow {
        let held = t.join().unwrap();
        assert!(held < Duration::from_secs(19), "a slow client held a connection for {held:?}");
    }
    // Still serving, still right.
    assert_eq!(shim.get("/healthz", None).status, 200);
    assert_eq!(shim.get("/api/v1/auth/verify", Some(&new_key)).status, 200);
    assert_eq!(shim.get("/api/v1/auth/verify", Some(&key)).status, 200, "grace key still fine");

    std::thread::sleep(Duration::from_millis(200));
    let logs = shim.logs();
    for secret in &secrets {
        assert!(!logs.contains(secret.as_str()), "a secret reached the logs");
        let random = secret.rsplit('_').next().unwrap();
        assert!(random.len() < 16 || !logs.contains(random), "a key's random part reached the logs");
    }
    let grown = rss_after.saturating_sub(rss_before);
    eprintln!(
        "hostile: {} requests, statuses {statuses:?}, 20 slow clients, RSS {rss_before} KiB -> {rss_after} KiB",
        statuses.values().sum::<usize>() + 300
    );
    assert!(grown < 16 * 1024, "RSS grew by {grown} KiB over 3000 hostile requests");
}
