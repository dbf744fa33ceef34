//! Grace-window signals: answers to requests authenticated through a key in
//! its grace window carry `Deprecation` (RFC 9745), `Sunset` (RFC 8594, the
//! window's end), the configured `Link`, and on forward auth
//! `x-api-auth-grace-expires-at`; answers for the current key carry none.
//! The operator's warning names the masked key, at most once per revoked key
//! per minute.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
use support::{Opts, Resp, Shim};

const LINK: &str = "https://docs.example.com/api-keys#rotation";
const SIGNALS: [&str; 4] = ["deprecation", "sunset", "link", "x-api-auth-grace-expires-at"];

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// The end of a revoked key's grace window, from the database: (Unix
/// seconds, the ISO-8601 text the shim's JSON answers use).
fn window_end(dsn: &str, revoked: &str) -> (u64, String) {
    let mut db = api_auth_tests::connect(dsn);
    let r = db
        .query_one(
            r#"SELECT floor(extract(epoch FROM expires_at))::int8,
                      to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
               FROM api_auth.revoked_api_key WHERE id = $1"#,
            &[&revoked],
        )
        .unwrap();
    (r.get::<_, i64>(0) as u64, r.get(1))
}

/// Assert the grace signals of `r`: Deprecation within [from, now], Sunset
/// the window's end, the Link, and the forward-auth header when asked.
fn assert_signals(what: &str, r: &Resp, from: u64, end: (u64, &str), forward_auth: bool) {
    let dep = r.header("deprecation").unwrap_or_else(|| panic!("{what}: no Deprecation in {:?}", r.headers));
    let secs: u64 = dep.strip_prefix('@').and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{what}: Deprecation {dep:?}"));
    assert!(from <= secs && secs <= unix_now(), "{what}: Deprecation {secs} not in [{from}, now]");
    let sunset = r.header("sunset").unwrap_or_else(|| panic!("{what}: no Sunset"));
    let at = httpdate::parse_http_date(sunset).unwrap_or_else(|e| panic!("{what}: Sunset {sunset:?}: {e}"));
    assert_eq!(at.duration_since(UNIX_EPOCH).unwrap().as_secs(), end.0, "{what}: Sunset {sunset}");
    assert!(sunset.ends_with(" GMT") && sunset.len() == 29, "{what}: IMF-fixdate {sunset:?}");
    assert_eq!(r.header("link"), Some(format!("<{LINK}>; rel=\"deprecation\"; type=\"text/html\"").as_str()), "{what}");
    assert_eq!(r.header("x-api-auth-grace-expires-at"), forward_auth.then_some(end.1), "{what}");
}

fn assert_no_signals(what: &str, r: &Resp) {
    for h in SIGNALS {
        assert!(r.header(h).is_none(), "{what}: unexpected {h}: {:?}", r.headers);
    }
}

#[test]
fn grace_keys_and_tokens_get_the_signals_on_every_route() {
    let dsn = api_auth_tests::fresh_database("shim_grace");
    let shim = Shim::start_with(&dsn, Opts { args: vec![format!("--deprecation-link={LINK}")], ..Default::default() });
    let (env, old_key) = shim.create_env("prod", "PRODUCTION");
    let old_token = shim.mint(&old_key, &["read:sessions", "write:sessions"]);

    // Before the rotation: the current key and its token carry nothing.
    assert_no_signals("current key", &shim.get("/api/v1/auth/verify", Some(&old_key)));
    assert_no_signals("token of the current key", &shim.get("/api/v1/auth/verify", Some(&old_token)));

    let rotated_at = unix_now();
    let (new_key, revoked) = shim.rotate(&env);
    let (end, end_iso) = window_end(&dsn, &revoked);
    assert!(end > rotated_at + 3600, "default grace window is 24 h");
    let end = (end, end_iso.as_str());

    // Forward auth with the key in grace.
    let r = shim.get("/api/v1/auth/verify", Some(&old_key));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-api-auth-method"), Some("grace_key"));
    assert_signals("verify, grace key", &r, rotated_at, end, true);
    // Every other route that takes a secret key.
    let r = shim.post("/api/v1/auth/jwt/claims", Some(&old_key), &json!({}));
    assert_eq!(r.status, 200);
    assert_signals("claims, grace key", &r, rotated_at, end, false);
    let r = shim.post("/api/v1/auth/jwt", Some(&old_key), &json!({ "claims": { "scopes": ["read:runs"] } }));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_signals("mint, grace key", &r, rotated_at, end, false);
    // The token minted with the key in grace is signed by the current key: no signals.
    let minted = r.json()["token"].as_str().unwrap().to_string();
    assert_no_signals("token minted by a grace key", &shim.get("/api/v1/auth/verify", Some(&minted)));
    let r = shim.post(
        "/api/v1/sessions",
        Some(&old_key),
        &json!({ "type": "chat", "taskIdentifier": "t", "triggerConfig": {}, "externalId": "s1" }),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_signals("sessions.create, grace key", &r, rotated_at, end, false);
    let r = shim.get("/api/v1/sessions/s1", Some(&old_key));
    assert_eq!(r.status, 200);
    assert_signals("sessions.get, grace key", &r, rotated_at, end, false);
    // Also on an error after authentication (a bad body).
    let r = shim.post("/api/v1/auth/jwt", Some(&old_key), &json!({ "expirationTime": true }));
    r.assert_error(400);
    assert_signals("mint with a bad body, grace key", &r, rotated_at, end, false);
    let r = shim.get("/api/v1/sessions/nope", Some(&old_key));
    r.assert_error(404);
    assert_signals("sessions.get 404, grace key", &r, rotated_at, end, false);

    // A token whose signature only the key in grace verifies.
    let r = shim.get("/api/v1/auth/verify", Some(&old_token));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-api-auth-matched-by"), Some("grace"));
    assert_signals("verify, token signed by the grace key", &r, rotated_at, end, true);
    let r = shim.get("/api/v1/sessions/s1", Some(&old_token));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_signals("sessions.get, token signed by the grace key", &r, rotated_at, end, false);
    // ... and on its scope denial.
    let r = shim.get("/api/v1/auth/verify?action=write&resource=tasks:x", Some(&old_token));
    r.assert_error(403);
    assert_signals("scope denial, token signed by the grace key", &r, rotated_at, end, true);

    // The new key and its tokens: nothing.
    assert_no_signals("new key", &shim.get("/api/v1/auth/verify", Some(&new_key)));
    let t = shim.mint(&new_key, &["read:runs"]);
    assert_no_signals("token of the new key", &shim.get("/api/v1/auth/verify", Some(&t)));
    assert_no_signals("unknown key", &shim.get("/api/v1/auth/verify", Some("tr_prod_xxxxxxxxxxxxxxxxxxxxxxxx")));

    // A window moved by the admin: the Sunset follows.
    let r = shim
        .admin_post(&format!("/admin/api/v1/revoked-api-keys/{revoked}"), &json!({ "expiresAt": "2099-01-02T03:04:05.678Z" }));
    assert_eq!(r.status, 200, "{}", r.text());
    let r = shim.get("/api/v1/auth/verify", Some(&old_key));
    assert_eq!(r.header("sunset"), Some("Fri, 02 Jan 2099 03:04:05 GMT"));
    assert_eq!(r.header("x-api-auth-grace-expires-at"), Some("2099-01-02T03:04:05.678Z"));

    // Once the window is over the key authenticates nothing, and signals nothing.
    let r =
        shim.admin_post(&format!("/admin/api/v1/revoked-api-keys/{revoked}"), &json!({ "expiresAt": "2000-01-01T00:00:00Z" }));
    assert_eq!(r.status, 200);
    let r = shim.get("/api/v1/auth/verify", Some(&old_key));
    r.assert_error(401);
    assert_no_signals("expired grace key", &r);
}

#[test]
fn no_link_unless_configured() {
    let shim = Shim::start("shim_grace_nolink");
    let (env, old_key) = shim.create_env("prod", "PRODUCTION");
    shim.rotate(&env);
    let r = shim.get("/api/v1/auth/verify", Some(&old_key));
    assert!(r.header("deprecation").is_some() && r.header("sunset").is_some());
    assert!(r.header("link").is_none(), "{:?}", r.headers);
}

#[test]
fn the_warning_names_the_masked_key_once_per_minute() {
    let shim = Shim::start("shim_grace_warn");
    let (env, old_key) = shim.create_env("prod", "PRODUCTION");
    let token = shim.mint(&old_key, &["read:runs"]);
    let (_new, revoked) = shim.rotate(&env);
    let (env2, old_key2) = shim.create_env("staging", "STAGING");
    let (_new2, revoked2) = shim.rotate(&env2);

    for _ in 0..5 {
        assert_eq!(shim.get("/api/v1/auth/verify", Some(&old_key)).status, 200);
    }
    // The same revoked key through a token it signed: still the same key.
    assert_eq!(shim.get("/api/v1/auth/verify", Some(&token)).status, 200);
    assert_eq!(shim.get("/api/v1/auth/verify", Some(&old_key2)).status, 200);
    assert_eq!(shim.get("/api/v1/auth/verify", Some(&old_key2)).status, 200);
    std::thread::sleep(Duration::from_millis(300));

    let logs = shim.logs();
    let warnings: Vec<&str> = logs.lines().filter(|l| l.contains("grace window is still in use")).collect();
    assert_eq!(warnings.len(), 2, "one warning per revoked key: {warnings:#?}");
    let first = warnings.iter().find(|l| l.contains(&revoked)).expect("warning for the first key");
    assert!(first.contains(&api_auth_core::keys::mask(&old_key)), "{first}");
    assert!(first.contains(&env), "{first}");
    assert!(first.contains("seconds_left=") && first.contains("stops working in 23h"), "{first}");
    let second = warnings.iter().find(|l| l.contains(&revoked2)).expect("warning for the second key");
    assert!(second.contains(&api_auth_core::keys::mask(&old_key2)) && second.contains(&env2), "{second}");
    // Never the key itself, nor the token.
    for secret in [&old_key, &old_key2, &token] {
        assert!(!logs.contains(secret.as_str()), "a secret reached the logs");
    }
}
