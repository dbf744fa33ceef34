//! The service's behaviour around the routes: health and readiness, the
//! database going away and coming back, graceful shutdown, admin token rules,
//! flags, bench route, and logs without secrets.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;
use support::{dsn_port, tcp_dsn, Flaky, Opts, Shim, ADMIN_TOKEN};

#[test]
fn health_readiness_and_database_outage() {
    let dsn = api_auth_tests::fresh_database("shim_outage");
    let flaky = Flaky::new(format!("127.0.0.1:{}", dsn_port(&dsn)));
    let shim = Shim::start_with(
        &tcp_dsn(&dsn, flaky.port),
        Opts { args: vec!["--db-timeout".into(), "1".into(), "--pool-size".into(), "4".into()], ..Default::default() },
    );
    let r = shim.get("/readyz", None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["extension"]["name"], "api_auth");
    let (_env, key) = shim.create_env("dev", "DEVELOPMENT");
    assert_eq!(shim.get("/api/v1/auth/verify", Some(&key)).status, 200);

    flaky.down();
    for path in ["/readyz", "/api/v1/auth/verify"] {
        let t = Instant::now();
        let r = shim.get(path, Some(&key));
        r.assert_error(503);
        assert_eq!(r.header("retry-after"), Some("1"));
        assert!(t.elapsed() < Duration::from_secs(5), "{path}: 503 took {:?}", t.elapsed());
    }
    let t = Instant::now();
    shim.post("/api/v1/sessions", Some(&key), &json!({ "type": "t", "taskIdentifier": "f", "triggerConfig": {} }))
        .assert_error(503);
    assert!(t.elapsed() < Duration::from_secs(5));
    // The process itself is fine.
    assert_eq!(shim.get("/healthz", None).status, 200);

    flaky.up();
    let t = Instant::now();
    loop {
        let r = shim.get("/api/v1/auth/verify", Some(&key));
        if r.status == 200 {
            break;
        }
        assert_eq!(r.status, 503, "{}", r.text());
        assert!(t.elapsed() < Duration::from_secs(15), "no recovery after the database came back");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(shim.get("/readyz", None).status, 200);
}

#[test]
fn unreachable_database_at_start_is_503_not_a_crash() {
    let shim = Shim::start_with(
        "host=127.0.0.1 port=1 user=postgres dbname=postgres",
        Opts { args: vec!["--db-timeout=1".into()], ..Default::default() },
    );
    let t = Instant::now();
    shim.get("/readyz", None).assert_error(503);
    shim.get("/api/v1/auth/verify", Some("tr_dev_aaaaaaaaaaaaaaaaaaaaaaaa")).assert_error(503);
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(shim.get("/healthz", None).status, 200);
}

#[test]
fn readyz_without_the_extension_is_503() {
    let dsn = api_auth_tests::with_dbname(&api_auth_tests::admin_dsn(), "postgres");
    let shim = Shim::start_with(&dsn, Opts::default());
    // The `postgres` database of the test cluster has no api_auth extension.
    let v = shim.get("/readyz", None).assert_error(503);
    assert!(v["error"].as_str().unwrap().contains("extension"), "{v}");
}

#[test]
fn graceful_shutdown_finishes_in_flight_requests() {
    let mut shim = Shim::start("shim_shutdown");
    let (_env, key) = shim.create_env("dev", "DEVELOPMENT");
    let body = br#"{"claims":{"scopes":["read:runs"]}}"#;
    let mut s = TcpStream::connect(&shim.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let head = format!(
        "POST /api/v1/auth/jwt HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&body[..10]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    shim.sigterm();
    // New connections are refused while the in-flight request is still open.
    let t = Instant::now();
    while TcpStream::connect(&shim.addr).is_ok() {
        assert!(t.elapsed() < Duration::from_secs(5), "still accepting 5 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    s.write_all(&body[10..]).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("\"token\""), "{text}");
    let status = shim.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "exit status {status}");
    assert!(shim.logs().contains("SIGTERM received"));
}

#[test]
fn admin_routes_need_a_configured_token() {
    let dsn = api_auth_tests::fresh_database("shim_admin");
    let shim = Shim::start_with(&dsn, Opts { no_admin_token: true, ..Default::default() });
    for path in
        ["/admin/api/v1/environments", "/admin/api/v1/revoked-api-keys/x", "/admin/api/v1/environments/x/regenerate-api-key"]
    {
        shim.post(path, Some(ADMIN_TOKEN), &json!({ "slug": "a", "type": "PRODUCTION" })).assert_error(403);
        shim.post(path, None, &json!({})).assert_error(403);
    }
    drop(shim);

    // From a file; wrong or missing token: 401.
    let dir = std::env::temp_dir().join(format!("shim-admin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("token");
    std::fs::write(&file, "from-a-file-token\n").unwrap();
    let shim = Shim::start_with(
        &dsn,
        Opts {
            no_admin_token: true,
            env: vec![("API_AUTH_ADMIN_TOKEN_FILE".into(), file.display().to_string())],
            ..Default::default()
        },
    );
    let body = json!({ "slug": "a", "type": "PRODUCTION" });
    shim.post("/admin/api/v1/environments", Some(ADMIN_TOKEN), &body).assert_error(401);
    shim.post("/admin/api/v1/environments", Some("from-a-file-toke"), &body).assert_error(401);
    shim.post("/admin/api/v1/environments", None, &body).assert_error(401);
    let r = shim.post("/admin/api/v1/environments", Some("from-a-file-token"), &body);
    assert_eq!(r.status, 201, "{}", r.text());
    // A secret key is not an admin credential.
    let key = r.json()["apiKey"].as_str().unwrap().to_string();
    shim.post("/admin/api/v1/environments", Some(&key), &body).assert_error(401);
    assert!(!shim.logs().contains("from-a-file-token"), "admin token in the logs");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn separate_admin_database_url() {
    let dsn = api_auth_tests::fresh_database("shim_admin_url");
    // Public routes on an unreachable URL, admin routes on the real one.
    let shim = Shim::start_with(
        "host=127.0.0.1 port=1 user=postgres dbname=postgres",
        Opts {
            args: vec!["--db-timeout=1".into()],
            env: vec![("API_AUTH_ADMIN_DATABASE_URL".into(), dsn.clone())],
            ..Default::default()
        },
    );
    let r = shim.admin_post("/admin/api/v1/environments", &json!({ "slug": "a", "type": "PRODUCTION" }));
    assert_eq!(r.status, 201, "{}", r.text());
    let key = r.json()["apiKey"].as_str().unwrap().to_string();
    shim.get("/api/v1/auth/verify", Some(&key)).assert_error(503);
}

#[test]
fn logs_never_contain_keys_or_tokens() {
    let shim = Shim::start("shim_logs");
    let (env, key) = shim.create_env("prod", "PRODUCTION");
    let token = shim.mint(&key, &["write:sessions"]);
    let created =
        shim.post("/api/v1/sessions", Some(&token), &json!({ "type": "t", "taskIdentifier": "f", "triggerConfig": {} })).json();
    let session_token = created["publicAccessToken"].as_str().unwrap().to_string();
    let (new_key, _) = shim.rotate(&env);
    shim.get("/api/v1/auth/verify", Some(&key));
    shim.get("/api/v1/auth/verify", Some(&format!("{token}x")));
    shim.get(&format!("/api/v1/sessions/{key}"), Some(&new_key));
    shim.get(&format!("/nope/{token}"), None);
    let pk = shim.admin_post("/admin/api/v1/environments", &json!({ "slug": "x", "type": "PRODUCTION" })).json();
    let pk = pk["pkApiKey"].as_str().unwrap().to_string();
    shim.get("/api/v1/auth/verify", Some(&pk));
    std::thread::sleep(Duration::from_millis(200));
    let logs = shim.logs();
    assert!(logs.contains("tr_prod_"), "keys should appear masked: {logs}");
    for secret in [&key, &new_key, &token, &session_token, &pk, &ADMIN_TOKEN.to_string()] {
        assert!(!logs.contains(secret.as_str()), "secret {secret} in logs:\n{logs}");
        // Not even the random part of a key. (A JWT's last '_'-separated piece
        // can be a few characters that occur anywhere, so only long pieces count.)
        let random = secret.rsplit('_').next().unwrap();
        assert!(random.len() < 16 || !logs.contains(random), "random part of a secret in logs:\n{logs}");
    }
}

#[test]
fn json_logs_and_bench_route() {
    let dsn = api_auth_tests::fresh_database("shim_bench");
    let shim =
        Shim::start_with(&dsn, Opts { args: vec!["--bench-routes".into(), "--log-format=json".into()], ..Default::default() });
    let r = shim.get("/__bench/floor", None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({ "ok": true }));
    std::thread::sleep(Duration::from_millis(100));
    let line = shim.logs().lines().find(|l| l.contains("bench.floor")).unwrap().to_string();
    let v: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
    assert_eq!(v["status"], 200);
    assert_eq!(v["route"], "bench.floor");
}

#[test]
fn help_and_bad_flags() {
    let bin = env!("CARGO_BIN_EXE_api-auth-shim");
    let out = std::process::Command::new(bin).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for word in [
        "DATABASE_URL",
        "API_AUTH_LISTEN",
        "API_AUTH_POOL_SIZE",
        "API_AUTH_ADMIN_TOKEN",
        "API_AUTH_ADMIN_TOKEN_FILE",
        "API_AUTH_ADMIN_DATABASE_URL",
        "--bench-routes",
        "SIGTERM",
    ] {
        assert!(help.contains(word), "--help does not mention {word}");
    }
    let out = std::process::Command::new(bin).env_remove("DATABASE_URL").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("DATABASE_URL"));
    let out = std::process::Command::new(bin).args(["--admin-token", "x"]).env("DATABASE_URL", "host=x").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn cors_preflight_for_browser_clients() {
    let dsn = api_auth_tests::fresh_database("shim_cors");
    let shim = Shim::start_with(&dsn, Opts::default());
    let r = shim.request(
        "OPTIONS",
        "/api/v1/sessions",
        &[("Origin", "https://app.example"), ("Access-Control-Request-Method", "POST")],
        None,
    );
    assert_eq!(r.status, 204);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert!(r.header("access-control-allow-headers").unwrap().contains("authorization"));
    assert_eq!(shim.get("/api/v1/auth/verify", None).header("access-control-allow-origin"), Some("*"));
}
