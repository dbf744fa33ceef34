//! Grace-window signals: telling a client, the standard HTTP way, that the key
//! it used was rotated and stops working soon, and telling the operator who
//! is still on an old key.
//!
//! When a request authenticates with a key in its grace window (a secret key
//! that `find_environment_by_api_key` matched `by grace`, or a public token
//! whose signature only a key in grace verified), the answer carries, on every
//! route and whatever its status:
//! - `Deprecation: @<unix seconds>` (RFC 9745): the key is deprecated. The
//!   SQL functions do not say when the key was rotated, so the date is the
//!   answer's: "deprecated as of now", which is true for every answer sent
//!   during the window.
//! - `Sunset: <HTTP-date>` (RFC 8594): the end of the grace window, when the
//!   key stops working.
//! - `Link: <url>; rel="deprecation"; type="text/html"` when
//!   `--deprecation-link` is configured (RFC 9745 §3).
//! - on forward auth, also `x-api-auth-grace-expires-at` (ISO-8601) so that a
//!   gateway can pass the end of the window upstream.
//!
//! The router applies them in one place ([`GraceSignals::signal`]) after the
//! handler answered; handlers only report what authentication found (a
//! [`Grace`] in the request log).
//!
//! The operator's signal is a warning log line naming the masked key (never
//! the key), the environment and the time left, at most once per revoked key
//! per [`WARN_EVERY`]. The memory of when each key was last reported is
//! bounded ([`MAX_TRACKED`] keys): when it is full of keys reported within the
//! last period, further keys are not reported until room frees up, rather
//! than letting a flood of keys grow the map.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hyper::header::{HeaderName, HeaderValue, LINK};
use hyper::HeaderMap;

/// At most one warning per revoked key per this period.
pub const WARN_EVERY: Duration = Duration::from_secs(60);
/// Most revoked keys remembered for the rate limit.
pub const MAX_TRACKED: usize = 4096;
/// Longest `--deprecation-link` accepted.
pub const MAX_LINK_LEN: usize = 2048;

const DEPRECATION: HeaderName = HeaderName::from_static("deprecation");
const SUNSET: HeaderName = HeaderName::from_static("sunset");
const GRACE_EXPIRES_AT: HeaderName = HeaderName::from_static("x-api-auth-grace-expires-at");

/// A request authenticated through a key in its grace window.
#[derive(Clone, Debug)]
pub struct Grace {
    /// `grace_key` or `public_token`.
    pub method: &'static str,
    pub environment: String,
    /// End of the grace window.
    pub expires_at: SystemTime,
    /// The same instant as ISO-8601 UTC text, as the database rendered it.
    pub expires_at_iso: String,
    /// The `revoked_api_key` row: what the warning's rate limit counts by.
    pub revoked_api_key_id: Option<String>,
    /// The key, masked (`api_auth_core::keys::mask`); `None` for a public
    /// token (the shim never sees the key that signed it).
    pub masked_key: Option<String>,
}

impl Grace {
    /// `expires_epoch`: the window's end in Unix seconds (fractions allowed).
    pub fn new(
        method: &'static str,
        environment: &str,
        expires_epoch: f64,
        expires_at_iso: String,
        revoked_api_key_id: Option<String>,
        masked_key: Option<String>,
    ) -> Grace {
        let expires_at = if expires_epoch.is_finite() && expires_epoch > 0.0 {
            UNIX_EPOCH + Duration::from_secs_f64(expires_epoch)
        } else {
            UNIX_EPOCH
        };
        Grace { method, environment: environment.to_string(), expires_at, expires_at_iso, revoked_api_key_id, masked_key }
    }
}

/// Validate `--deprecation-link`: an absolute http(s) URL that can stand
/// between `<` and `>` in a `Link` header.
pub fn link_header(url: &str) -> Result<HeaderValue, String> {
    let ok_scheme = url.starts_with("https://") || url.starts_with("http://");
    let ok_chars = url.bytes().all(|b| b.is_ascii_graphic() && !matches!(b, b'<' | b'>' | b'"' | b'\\'));
    if !ok_scheme || !ok_chars || url.len() > MAX_LINK_LEN || url.len() <= "https://".len() {
        return Err(format!(
            "{url:?} is not an absolute http:// or https:// URL of at most {MAX_LINK_LEN} visible ASCII characters \
             (no spaces, quotes or angle brackets)"
        ));
    }
    HeaderValue::from_str(&format!("<{url}>; rel=\"deprecation\"; type=\"text/html\"")).map_err(|e| e.to_string())
}

/// The grace-window signals of this process: the configured link and the
/// warning rate limit.
pub struct GraceSignals {
    link: Option<HeaderValue>,
    /// Revoked key (id, or masked key) -> when it was last reported.
    warned: Mutex<HashMap<String, Instant>>,
}

impl GraceSignals {
    pub fn new(link: Option<HeaderValue>) -> GraceSignals {
        GraceSignals { link, warned: Mutex::new(HashMap::new()) }
    }

    /// Add the signals to an answer and, rate-limited, log the warning.
    pub fn signal(&self, g: &Grace, headers: &mut HeaderMap, forward_auth: bool) {
        let now = SystemTime::now();
        let now_secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if let Ok(v) = HeaderValue::from_str(&format!("@{now_secs}")) {
            headers.insert(DEPRECATION, v);
        }
        if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(g.expires_at)) {
            headers.insert(SUNSET, v);
        }
        if let Some(link) = &self.link {
            headers.append(LINK, link.clone());
        }
        if forward_auth {
            if let Ok(v) = HeaderValue::from_str(&g.expires_at_iso) {
                headers.insert(GRACE_EXPIRES_AT, v);
            }
        }
        if self.should_warn(g, Instant::now()) {
            let left = g.expires_at.duration_since(now).unwrap_or_default();
            tracing::warn!(
                key = g.masked_key.as_deref().unwrap_or("(public token signed by it)"),
                revoked_api_key_id = g.revoked_api_key_id.as_deref(),
                environment = %g.environment,
                method = g.method,
                expires_at = %g.expires_at_iso,
                seconds_left = left.as_secs(),
                "a key in its grace window is still in use: it stops working in {}",
                human(left)
            );
        }
    }

    /// Whether the key of `g` was not reported within [`WARN_EVERY`]; records
    /// the report.
    fn should_warn(&self, g: &Grace, now: Instant) -> bool {
        let Some(id) = g.revoked_api_key_id.as_deref().or(g.masked_key.as_deref()) else { return false };
        let mut warned = match self.warned.lock() {
            Ok(w) => w,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(last) = warned.get_mut(id) {
            if now.duration_since(*last) < WARN_EVERY {
                return false;
            }
            *last = now;
            return true;
        }
        if warned.len() >= MAX_TRACKED {
            warned.retain(|_, last| now.duration_since(*last) < WARN_EVERY);
            if warned.len() >= MAX_TRACKED {
                return false;
            }
        }
        warned.insert(id.to_string(), now);
        true
    }
}

/// `2d 3h`, `3h 12m`, `4m 5s`, `12s`.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    let (days, hours, mins, secs) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (days, hours, mins) {
        (0, 0, 0) => format!("{secs}s"),
        (0, 0, _) => format!("{mins}m {secs}s"),
        (0, _, _) => format!("{hours}h {mins}m"),
        _ => format!("{days}d {hours}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grace(id: &str) -> Grace {
        Grace::new("grace_key", "env_1", 1_700_000_000.5, "2023-11-14T22:13:20.500Z".into(), Some(id.into()), None)
    }

    #[test]
    fn headers_follow_the_rfcs() {
        let s = GraceSignals::new(Some(link_header("https://example.com/keys").unwrap()));
        let mut h = HeaderMap::new();
        s.signal(&grace("rk_1"), &mut h, true);
        let dep = h.get("deprecation").unwrap().to_str().unwrap();
        assert!(dep.starts_with('@') && dep[1..].parse::<u64>().is_ok(), "{dep}");
        assert_eq!(h.get("sunset").unwrap(), "Tue, 14 Nov 2023 22:13:20 GMT");
        assert_eq!(h.get("link").unwrap(), "<https://example.com/keys>; rel=\"deprecation\"; type=\"text/html\"");
        assert_eq!(h.get("x-api-auth-grace-expires-at").unwrap(), "2023-11-14T22:13:20.500Z");
        let mut h = HeaderMap::new();
        GraceSignals::new(None).signal(&grace("rk_1"), &mut h, false);
        assert!(h.get("link").is_none() && h.get("x-api-auth-grace-expires-at").is_none());
    }

    #[test]
    fn bad_links_are_refused() {
        for bad in ["ftp://x/y", "https://", "https://a b", "https://x/<y>", "/relative", "https://x/\"", "https://é"] {
            assert!(link_header(bad).is_err(), "{bad}");
        }
        assert!(link_header(&format!("https://x/{}", "a".repeat(MAX_LINK_LEN))).is_err());
    }

    #[test]
    fn warnings_are_rate_limited_with_bounded_memory() {
        let s = GraceSignals::new(None);
        let t0 = Instant::now();
        assert!(s.should_warn(&grace("rk_1"), t0));
        assert!(!s.should_warn(&grace("rk_1"), t0 + Duration::from_secs(59)));
        assert!(s.should_warn(&grace("rk_2"), t0 + Duration::from_secs(59)));
        assert!(s.should_warn(&grace("rk_1"), t0 + Duration::from_secs(61)));
        for i in 0..MAX_TRACKED * 2 {
            s.should_warn(&grace(&format!("k{i}")), t0 + Duration::from_secs(61));
        }
        assert!(s.warned.lock().unwrap().len() <= MAX_TRACKED);
        // Once the period has passed, room frees up again.
        assert!(s.should_warn(&grace("fresh"), t0 + Duration::from_secs(200)));
        assert!(s.warned.lock().unwrap().len() <= MAX_TRACKED);
    }

    #[test]
    fn human_durations() {
        assert_eq!(human(Duration::from_secs(12)), "12s");
        assert_eq!(human(Duration::from_secs(245)), "4m 5s");
        assert_eq!(human(Duration::from_secs(3 * 3600 + 12 * 60)), "3h 12m");
        assert_eq!(human(Duration::from_secs(2 * 86_400 + 3 * 3600)), "2d 3h");
    }
}
