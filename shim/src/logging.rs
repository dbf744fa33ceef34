//! Structured logs (text or JSON lines on standard error), one line per request.
//!
//! A log line never holds a secret key or a token: credentials are described by
//! [`crate::auth::Credential::describe`] (keys masked with
//! `api_auth_core::keys::mask`, tokens only named), request paths are logged
//! with key- or token-like segments masked, and query strings, headers and
//! bodies are never logged.

use std::sync::Arc;

use api_auth_core::keys::{self, CredentialKind};

use crate::config::{Config, LogFormat};

pub fn init(config: &Config) {
    let builder = tracing_subscriber::fmt().with_max_level(config.log_level).with_writer(std::io::stderr).with_target(false);
    match config.log_format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).init(),
        LogFormat::Text => builder.with_ansi(false).init(),
    }
}

/// What a log line may say about a credential, worked out only when a line is
/// written (a request answered from the answer cache never needs to look
/// inside the token it presented, and most lines are filtered out).
pub trait Describe: Send + Sync {
    fn describe(&self) -> String;
}

impl Describe for &'static str {
    fn describe(&self) -> String {
        (*self).to_string()
    }
}

/// What the handlers found out about one request, filled in as they go: the
/// request's log line says it, [`crate::metrics`] counts it, and the router
/// turns `grace` into the answer's grace-window signals.
#[derive(Default)]
pub struct RequestLog {
    /// Route name, e.g. `sessions.create`.
    pub route: &'static str,
    /// The credential presented, described (masked) only when the line is written.
    pub credential: Option<Arc<dyn Describe>>,
    /// `current_key`, `grace_key`, `public_token`, `admin`.
    pub auth: Option<&'static str>,
    pub environment: Option<String>,
    /// Why the request failed, when it did (never client secrets).
    pub note: Option<String>,
    /// Set when the credential authenticated through a key in its grace window.
    pub grace: Option<crate::grace::Grace>,
}

/// A path safe to log: segments that look like keys are masked, token-like or
/// overlong segments elided, control characters dropped, length bounded.
pub fn safe_path(path: &str) -> String {
    let mut out = String::new();
    for (i, seg) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        if out.len() > 200 {
            out.push('…');
            break;
        }
        match keys::classify(seg) {
            CredentialKind::SecretKey | CredentialKind::PublishableKey => out.push_str(&keys::mask(seg)),
            CredentialKind::PublicToken => out.push_str("<token>"),
            CredentialKind::Unknown if seg.len() > 64 || seg.matches('.').count() >= 2 => out.push('…'),
            CredentialKind::Unknown => out.extend(seg.chars().filter(|c| !c.is_control())),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_never_carry_keys() {
        let p = safe_path("/api/v1/sessions/tr_prod_abcdefghijklmnopqrstuvwx");
        assert_eq!(p, "/api/v1/sessions/tr_prod_ab…wx");
        assert_eq!(safe_path("/a/eyJh.eyJi.sig"), "/a/…");
        assert_eq!(safe_path("/healthz"), "/healthz");
    }
}
