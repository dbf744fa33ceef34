//! `GET /metrics`: every kind of traffic moves exactly the counters it should
//! (compared as whole sets of changed series, so an extra increment anywhere
//! fails too), the exposition passes `promtool check metrics`, no key, token,
//! environment id or path parameter ever appears in it, pools are reported by
//! name, `--metrics-listen` moves the endpoint and `--no-metrics` removes it.

mod support;

use std::collections::BTreeMap;

use serde_json::json;
use support::{promtool_check, raw_at, Flaky, Opts, Scrape, Shim, ADMIN_TOKEN};

/// The counters whose changes a step is checked against (latency histograms
/// are checked through their `_count`, which moves with the requests).
const COUNTERS: &[&str] = &[
    "api_auth_shim_http_requests_total",
    "api_auth_shim_auth_accepted_total",
    "api_auth_shim_auth_refused_total",
    "api_auth_shim_grace_signals_total",
    "api_auth_shim_db_errors_total",
    "api_auth_shim_http_unavailable_total",
];

/// Run `step`, then check that the counters moved by exactly `expected`
/// (series -> increase), the scrapes themselves left out; and that each
/// route's latency histogram counted as many requests as the route answered.
fn exactly(shim: &Shim, what: &str, expected: &[(&str, f64)], step: impl FnOnce()) {
    let before = shim.scrape();
    step();
    let after = shim.scrape();
    let mut moved = BTreeMap::new();
    for c in COUNTERS {
        moved.extend(after.delta(&before, &format!("{c}{{")));
    }
    moved.retain(|k, _| !k.contains("route=\"metrics\""));
    let expected: BTreeMap<String, f64> = expected.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    assert_eq!(moved, expected, "{what}: counters moved differently than expected");
    for (series, n) in &moved {
        if let Some(rest) = series.strip_prefix("api_auth_shim_http_requests_total{route=\"") {
            let route = &rest[..rest.find('"').unwrap()];
            let count = format!("api_auth_shim_http_request_duration_seconds_count{{route=\"{route}\"}}");
            let per_route: f64 = moved
                .iter()
                .filter(|(k, _)| k.starts_with(&format!("api_auth_shim_http_requests_total{{route=\"{route}\"")))
                .map(|(_, v)| v)
                .sum();
            assert_eq!(after.get(&count) - before.get(&count), per_route, "{what}: latency count of {route} ({n})");
        }
    }
}

fn req(route: &str, class: &str) -> String {
    format!("api_auth_shim_http_requests_total{{route=\"{route}\",status_class=\"{class}\"}}")
}
fn accepted(method: &str) -> String {
    format!("api_auth_shim_auth_accepted_total{{method=\"{method}\"}}")
}
fn refused(reason: &str) -> String {
    format!("api_auth_shim_auth_refused_total{{reason=\"{reason}\"}}")
}
fn grace(method: &str) -> String {
    format!("api_auth_shim_grace_signals_total{{method=\"{method}\"}}")
}

#[test]
fn every_kind_of_traffic_moves_exactly_its_counters() {
    let dsn = api_auth_tests::fresh_database("shim_metrics");
    // The shim reaches PostgreSQL through a forwarder the test can cut.
    let flaky = Flaky::new(format!("127.0.0.1:{}", support::dsn_port(&dsn)));
    let via = support::tcp_dsn(&dsn, flaky.port);
    let shim =
        Shim::start_with(&via, Opts { args: vec!["--pool-size=4".into(), "--db-timeout=0.5".into()], ..Default::default() });
    let mut secrets: Vec<String> = vec![ADMIN_TOKEN.to_string()];

    let mut env = String::new();
    let mut key = String::new();
    exactly(&shim, "admin create", &[(&req("admin.environments_create", "2xx"), 1.0), (&accepted("admin"), 1.0)], || {
        (env, key) = shim.create_env("prod", "PRODUCTION")
    });
    secrets.extend([env.clone(), key.clone()]);

    exactly(&shim, "verify with the current key", &[(&req("auth.verify", "2xx"), 3.0), (&accepted("current_key"), 3.0)], || {
        for _ in 0..3 {
            assert_eq!(shim.get("/api/v1/auth/verify", Some(&key)).status, 200);
        }
    });

    let mut old_token = String::new();
    exactly(&shim, "mint", &[(&req("auth.jwt", "2xx"), 1.0), (&accepted("current_key"), 1.0)], || {
        old_token = shim.mint(&key, &["read:runs"]);
    });
    secrets.push(old_token.clone());

    let (mut new_key, mut revoked) = (String::new(), String::new());
    exactly(&shim, "rotate", &[(&req("admin.regenerate_api_key", "2xx"), 1.0), (&accepted("admin"), 1.0)], || {
        (new_key, revoked) = shim.rotate(&env)
    });
    secrets.extend([new_key.clone(), revoked.clone()]);

    exactly(
        &shim,
        "verify and claims with the key in grace",
        &[
            (&req("auth.verify", "2xx"), 2.0),
            (&req("auth.jwt_claims", "2xx"), 1.0),
            (&accepted("grace_key"), 3.0),
            (&grace("grace_key"), 3.0),
        ],
        || {
            assert_eq!(shim.get("/api/v1/auth/verify", Some(&key)).status, 200);
            assert_eq!(shim.get("/api/v1/auth/verify", Some(&key)).status, 200);
            assert_eq!(shim.post("/api/v1/auth/jwt/claims", Some(&key), &json!({})).status, 200);
        },
    );

    exactly(
        &shim,
        "tokens: signed by the key in grace, then by the new key",
        &[
            (&req("auth.verify", "2xx"), 2.0),
            (&req("auth.jwt", "2xx"), 1.0),
            (&accepted("public_token"), 2.0),
            (&accepted("current_key"), 1.0),
            (&grace("public_token"), 1.0),
        ],
        || {
            assert_eq!(shim.get("/api/v1/auth/verify", Some(&old_token)).status, 200);
            let t = shim.mint(&new_key, &["read:runs"]);
            assert_eq!(shim.get("/api/v1/auth/verify", Some(&t)).status, 200);
        },
    );

    let expired = api_auth_tests::sign_jwt(
        &json!({ "alg": "HS256", "typ": "JWT" }),
        &json!({ "sub": env, "pub": true, "iss": "https://id.trigger.dev", "aud": "https://api.trigger.dev",
                 "iat": api_auth_tests::now() - 7200, "exp": api_auth_tests::now() - 3600, "scopes": ["read:runs"] }),
        &new_key,
    );
    let tampered = support::tamper_signature(&old_token);
    let unknown = format!("tr_prod_{}", "x".repeat(24));
    let publishable = "pk_prod_abcdefghijklmnopqrstuvwx".to_string();
    secrets.extend([expired.clone(), tampered.clone(), unknown.clone(), publishable.clone()]);
    exactly(
        &shim,
        "refusals",
        &[
            (&req("auth.verify", "4xx"), 8.0),
            (&req("auth.jwt", "2xx"), 1.0),
            (&accepted("current_key"), 1.0),
            (&accepted("public_token"), 1.0),
            (&refused("missing_credential"), 1.0),
            (&refused("unknown_key"), 1.0),
            (&refused("publishable_key"), 1.0),
            (&refused("unknown_credential"), 1.0),
            (&refused("expired"), 1.0),
            (&refused("invalid_signature"), 1.0),
            (&refused("malformed"), 1.0),
            (&refused("scope_denied"), 1.0),
        ],
        || {
            shim.get("/api/v1/auth/verify", None).assert_error(401);
            shim.get("/api/v1/auth/verify", Some(&unknown)).assert_error(401);
            shim.get("/api/v1/auth/verify", Some(&publishable)).assert_error(401);
            shim.get("/api/v1/auth/verify", Some("not-a-credential")).assert_error(401);
            shim.get("/api/v1/auth/verify", Some(&expired)).assert_error(401);
            shim.get("/api/v1/auth/verify", Some(&tampered)).assert_error(401);
            // Classified as a token (pub: true) but its signature part is not base64url.
            let (head, _) = old_token.rsplit_once('.').unwrap();
            shim.get("/api/v1/auth/verify", Some(&format!("{head}.!!"))).assert_error(401);
            // Authenticated, then refused by the scope check.
            let t = shim.mint(&new_key, &["read:runs"]);
            secrets.push(t.clone());
            shim.get(&format!("/api/v1/auth/verify?action=write&resource=tasks:{}", "x"), Some(&t)).assert_error(403);
        },
    );

    exactly(
        &shim,
        "admin refusals, a route that does not exist, health",
        &[
            (&req("admin.environments_create", "4xx"), 1.0),
            (&refused("invalid_admin_token"), 1.0),
            (&req("not_found", "4xx"), 1.0),
            (&req("method_not_allowed", "4xx"), 1.0),
            (&req("healthz", "2xx"), 1.0),
            (&req("readyz", "2xx"), 1.0),
        ],
        || {
            shim.post("/admin/api/v1/environments", Some("wrong-admin-token"), &json!({})).assert_error(401);
            shim.get("/nope/secret-path-param-123", None).assert_error(404);
            shim.request("DELETE", "/healthz", &[], None).assert_error(405);
            assert_eq!(shim.get("/healthz", None).status, 200);
            assert_eq!(shim.get("/readyz", None).status, 200);
        },
    );
    secrets.push("secret-path-param-123".into());

    // A session by id: the path parameter never becomes a label.
    exactly(
        &shim,
        "session lookup by a path parameter",
        &[(&req("sessions.get", "4xx"), 1.0), (&accepted("current_key"), 1.0)],
        || {
            shim.get("/api/v1/sessions/ext-id-never-a-label", Some(&new_key)).assert_error(404);
        },
    );
    secrets.push("ext-id-never-a-label".into());

    // The database goes away: 503s, counted as database errors.
    flaky.down();
    exactly(
        &shim,
        "database down",
        &[
            (&req("auth.verify", "5xx"), 2.0),
            ("api_auth_shim_http_unavailable_total{route=\"auth.verify\"}", 2.0),
            ("api_auth_shim_db_errors_total{kind=\"connection\"}", 2.0),
        ],
        || {
            shim.get("/api/v1/auth/verify", Some(&new_key)).assert_error(503);
            shim.get("/api/v1/auth/verify", Some(&new_key)).assert_error(503);
        },
    );
    flaky.up();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while shim.get("/readyz", None).status != 200 {
        assert!(std::time::Instant::now() < deadline, "the shim did not recover");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    // The exposition as a whole.
    let s = shim.scrape();
    promtool_check(&s.text);
    assert_eq!(s.get("api_auth_shim_db_pool_max_connections{pool=\"public\"}"), 4.0);
    assert_eq!(s.get("api_auth_shim_db_pool_in_use{pool=\"public\"}"), 0.0);
    assert_eq!(s.get("api_auth_shim_db_pool_waiting{pool=\"public\"}"), 0.0);
    assert!(s.get("api_auth_shim_db_pool_connections{pool=\"public\"}") >= 1.0);
    assert!(!s.text.contains("pool=\"admin\""), "no separate admin pool configured");
    assert!(s.get("api_auth_shim_uptime_seconds") > 0.0);
    assert!(s.get("api_auth_shim_start_time_seconds") > 1.7e9);
    assert_eq!(s.get(&format!("api_auth_shim_build_info{{version=\"{}\"}}", env!("CARGO_PKG_VERSION"))), 1.0);
    for buckets in ["le=\"0.0005\"", "le=\"10\"", "le=\"+Inf\""] {
        assert!(s
            .text
            .contains(&format!("api_auth_shim_http_request_duration_seconds_bucket{{route=\"auth.verify\",{buckets}}}")));
    }
    assert_no_secrets(&s.text, &secrets);
    // Nothing of a key or a token, even in part (masked keys included).
    for k in [&key, &new_key] {
        assert!(!s.text.contains(&api_auth_core::keys::mask(k)));
        assert!(!s.text.contains(&k[8..20]));
    }
}

/// No secret, id or path parameter appears in the exposition.
fn assert_no_secrets(text: &str, secrets: &[String]) {
    for secret in secrets {
        assert!(!secret.is_empty());
        assert!(!text.contains(secret.as_str()), "{secret} appears in /metrics:\n{text}");
    }
    // Every label value is one of the shim's own words.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(labels) = line.split_once('{').map(|(_, r)| &r[..r.find('}').unwrap()]) else { continue };
        for pair in labels.split(',') {
            let (name, value) = pair.split_once('=').unwrap();
            let value = value.trim_matches('"');
            assert!(
                value.len() <= 32 && value.chars().all(|c| c.is_ascii_alphanumeric() || "._+-".contains(c)),
                "label {name}={value:?} does not look like a fixed word: {line}"
            );
        }
    }
}

#[test]
fn separate_admin_pool_and_metrics_listener() {
    let dsn = api_auth_tests::fresh_database("shim_metrics_listen");
    // The same database under another spelling: a pool of its own.
    let admin_dsn = format!("{dsn} application_name=api-auth-shim-admin");
    let shim = Shim::start_with(
        &dsn,
        Opts {
            args: vec!["--metrics-listen=127.0.0.1:0".into(), "--admin-pool-size=3".into()],
            env: vec![("API_AUTH_ADMIN_DATABASE_URL".into(), admin_dsn)],
            ..Default::default()
        },
    );
    // Not on the API listener any more.
    shim.get("/metrics", None).assert_error(404);
    let addr = metrics_addr(&shim);
    shim.create_env("prod", "PRODUCTION");
    let s = shim.scrape_at(&addr);
    promtool_check(&s.text);
    assert_eq!(s.get("api_auth_shim_db_pool_max_connections{pool=\"admin\"}"), 3.0);
    assert_eq!(s.get("api_auth_shim_db_pool_max_connections{pool=\"public\"}"), 16.0);
    assert!(s.get("api_auth_shim_db_pool_connections{pool=\"admin\"}") >= 1.0);
    assert_eq!(s.get(&req("admin.environments_create", "2xx")), 1.0);
    // The metrics listener serves nothing else.
    let r = raw_at(&addr, format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes());
    r.assert_error(404);
    let r = raw_at(
        &addr,
        format!("POST /metrics HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    r.assert_error(405);
}

#[test]
fn no_metrics_means_no_endpoint() {
    let dsn = api_auth_tests::fresh_database("shim_no_metrics");
    let shim = Shim::start_with(&dsn, Opts { args: vec!["--no-metrics".into()], ..Default::default() });
    shim.get("/metrics", None).assert_error(404);
    assert!(shim.logs().contains("metrics=disabled"), "{}", shim.logs());
    let (_env, key) = shim.create_env("prod", "PRODUCTION");
    assert_eq!(shim.get("/api/v1/auth/verify", Some(&key)).status, 200);
    shim.get("/metrics", None).assert_error(404);
}

/// The `--metrics-listen` address from the start-up line.
fn metrics_addr(shim: &Shim) -> String {
    let logs = shim.logs();
    let i = logs.find("metrics=http://").expect("metrics address in the start-up line") + "metrics=http://".len();
    logs[i..].split('/').next().unwrap().to_string()
}

#[test]
fn scrapes_parse_with_the_samples_parser() {
    // The parser the tests rely on refuses what is not a sample line.
    let s = Scrape::parse("# HELP x y\n# TYPE x counter\nx_total{a=\"b\"} 3\n");
    assert_eq!(s.get("x_total{a=\"b\"}"), 3.0);
    assert!(std::panic::catch_unwind(|| Scrape::parse("x_total{a=\"b\"} three\n")).is_err());
}
