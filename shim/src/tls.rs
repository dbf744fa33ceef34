//! TLS to PostgreSQL: `sslmode` and `sslrootcert` as libpq documents them, on
//! rustls (through `tokio-postgres-rustls`).
//!
//! Why this module exists: tokio-postgres only knows `sslmode=disable|prefer|
//! require` and refuses `sslrootcert`, `verify-ca` and `verify-full`, so a
//! connection string that works with `psql` (and every managed PostgreSQL's
//! "connect securely" instructions) would not even parse. Here the two TLS
//! settings are taken out of the connection string (URL query or libpq
//! key=value form, falling back to `PGSSLMODE` / `PGSSLROOTCERT` like libpq),
//! the rest is parsed by tokio-postgres, and the mode becomes a rustls
//! certificate verifier:
//!
//! | sslmode       | TLS                         | server certificate checked        |
//! |---------------|-----------------------------|-----------------------------------|
//! | `disable`     | never                       | -                                 |
//! | `prefer` (default) | if the server offers it | no                               |
//! | `require`     | always                      | no (as `verify-ca` when an `sslrootcert` file is given, like libpq) |
//! | `verify-ca`   | always                      | chain to `sslrootcert`            |
//! | `verify-full` | always                      | chain to `sslrootcert` and host name |
//!
//! `sslrootcert` is a PEM file of CA certificates (default
//! `~/.postgresql/root.crt`), or `system` for the platform's trust store (which,
//! as in libpq 16, requires `verify-full`). Connections over a Unix socket never
//! use TLS (PostgreSQL offers none there), whatever the mode.
//!
//! Every pool (primary, admin, replicas) gets its connector from [`target`], so
//! the rules are the same for all of them. A refused certificate is logged (at
//! most once per second per connection string) with the host, the mode and the
//! reason; the request that needed the connection gets a 503.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use percent_encoding::percent_decode_str;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::{Host, SslMode as PgSslMode};
use tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's `sslmode` values (`allow` is treated as `prefer`: both connect
/// without verifying; `allow` merely tries plain text first).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(s: &str) -> Result<SslMode, String> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "allow" | "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(format!(
                    "invalid sslmode {other:?}: expected disable, allow, prefer, require, verify-ca or verify-full"
                ))
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// Where trusted CA certificates come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RootCerts {
    File(PathBuf),
    System,
}

/// A parsed connection string: what tokio-postgres needs to connect, and the
/// TLS connector that implements its `sslmode`.
pub struct Target {
    pub config: tokio_postgres::Config,
    pub tls: MakeRustlsConnect,
    /// The effective mode (after `require` + root file became `verify-ca`, and
    /// Unix sockets became `disable`).
    pub mode: SslMode,
    pub roots: Option<RootCerts>,
}

impl Target {
    /// `sslmode=... sslrootcert=...` for logs (no secrets in it).
    pub fn describe(&self) -> String {
        match &self.roots {
            Some(RootCerts::File(p)) => format!("sslmode={} sslrootcert={}", self.mode.as_str(), p.display()),
            Some(RootCerts::System) => format!("sslmode={} sslrootcert=system", self.mode.as_str()),
            None => format!("sslmode={}", self.mode.as_str()),
        }
    }
}

/// Parse `conn` (a `postgres://` URL or a libpq key=value string), reading
/// `PGSSLMODE` / `PGSSLROOTCERT` / `HOME` through `env` when the string does
/// not set them.
pub fn target(conn: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Target, String> {
    let (rest, ssl) = split_ssl_params(conn)?;
    let mut config: tokio_postgres::Config = rest.parse().map_err(|e| format!("invalid database URL: {e}"))?;
    let mode_text = ssl.mode.or_else(|| env("PGSSLMODE").filter(|s| !s.is_empty()));
    let mut mode = match mode_text.as_deref() {
        Some(m) => SslMode::parse(m)?,
        None => SslMode::Prefer,
    };
    let explicit_root = ssl.root_cert.or_else(|| env("PGSSLROOTCERT").filter(|s| !s.is_empty()));
    let roots = match explicit_root.as_deref() {
        Some("system") => Some(RootCerts::System),
        Some(path) => Some(RootCerts::File(PathBuf::from(path))),
        None => {
            let default = env("HOME").map(|h| PathBuf::from(h).join(".postgresql/root.crt"));
            match default {
                Some(p) if p.is_file() => Some(RootCerts::File(p)),
                Some(p) if matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull) => {
                    return Err(format!(
                        "sslmode={}: root certificate file {} does not exist; give the CA file with sslrootcert=PATH, \
                         use sslrootcert=system for the system's trusted roots, or use a mode that does not verify",
                        mode.as_str(),
                        p.display()
                    ))
                }
                _ => None,
            }
        }
    };
    if roots == Some(RootCerts::System) && mode != SslMode::VerifyFull && mode != SslMode::Disable {
        return Err(format!("weak sslmode {:?} may not be used with sslrootcert=system (use \"verify-full\")", mode.as_str()));
    }
    // libpq: "if a root CA file exists, sslmode=require behaves like verify-ca".
    if mode == SslMode::Require && roots.is_some() {
        mode = SslMode::VerifyCa;
    }
    let hosts = config.get_hosts();
    if !hosts.is_empty() && hosts.iter().all(|h| !matches!(h, Host::Tcp(_))) {
        mode = SslMode::Disable;
    }
    config.ssl_mode(match mode {
        SslMode::Disable => PgSslMode::Disable,
        SslMode::Prefer => PgSslMode::Prefer,
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => PgSslMode::Require,
    });
    let roots = if matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull) { roots } else { None };
    let tls = connector(mode, roots.as_ref())?;
    Ok(Target { config, tls, mode, roots })
}

/// The values of `sslmode` / `sslrootcert` found in a connection string.
#[derive(Default, Debug, PartialEq, Eq)]
struct SslParams {
    mode: Option<String>,
    root_cert: Option<String>,
}

const SSL_KEYS: [&str; 2] = ["sslmode", "sslrootcert"];

/// Remove `sslmode` and `sslrootcert` from `conn`; (the rest, their values).
fn split_ssl_params(conn: &str) -> Result<(String, SslParams), String> {
    let mut ssl = SslParams::default();
    let mut take = |key: &str, value: String| match key {
        "sslmode" => ssl.mode = Some(value),
        _ => ssl.root_cert = Some(value),
    };
    if conn.starts_with("postgres://") || conn.starts_with("postgresql://") {
        let Some((base, query)) = conn.split_once('?') else { return Ok((conn.to_string(), ssl)) };
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let key = percent_decode_str(k).decode_utf8().map_err(|_| "invalid database URL: bad percent-encoding")?;
            if SSL_KEYS.contains(&key.as_ref()) {
                let value = percent_decode_str(v).decode_utf8().map_err(|_| "invalid database URL: bad percent-encoding")?;
                take(&key, value.into_owned());
            } else {
                kept.push(pair);
            }
        }
        let rest = if kept.is_empty() { base.to_string() } else { format!("{base}?{}", kept.join("&")) };
        return Ok((rest, ssl));
    }
    // libpq key=value: `key = value`, values optionally single-quoted with
    // backslash escapes. Unrelated pairs are copied through verbatim.
    let b = conn.as_bytes();
    let mut rest = String::new();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let start = i;
        while i < b.len() && b[i] != b'=' && !b[i].is_ascii_whitespace() {
            i += 1;
        }
        let key = &conn[start..i];
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= b.len() || b[i] != b'=' {
            return Err(format!("invalid database URL: missing \"=\" after {key:?} in the connection string"));
        }
        i += 1;
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut value = Vec::new();
        if i < b.len() && b[i] == b'\'' {
            i += 1;
            loop {
                match b.get(i) {
                    None => return Err("invalid database URL: unterminated quoted string in the connection string".into()),
                    Some(b'\'') => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') if i + 1 < b.len() => {
                        value.push(b[i + 1]);
                        i += 2;
                    }
                    Some(&c) => {
                        value.push(c);
                        i += 1;
                    }
                }
            }
        } else {
            while i < b.len() && !b[i].is_ascii_whitespace() {
                if b[i] == b'\\' && i + 1 < b.len() {
                    i += 1;
                }
                value.push(b[i]);
                i += 1;
            }
        }
        if SSL_KEYS.contains(&key) {
            let value = String::from_utf8(value).map_err(|_| "invalid database URL: not UTF-8")?;
            take(key, value);
        } else {
            if !rest.is_empty() {
                rest.push(' ');
            }
            rest.push_str(&conn[start..i]);
        }
    }
    Ok((rest, ssl))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn load_roots(roots: &RootCerts) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    match roots {
        RootCerts::File(path) => {
            let iter =
                CertificateDer::pem_file_iter(path).map_err(|e| format!("sslrootcert {}: cannot read: {e}", path.display()))?;
            for cert in iter {
                let cert = cert.map_err(|e| format!("sslrootcert {}: not a PEM certificate file: {e}", path.display()))?;
                store.add(cert).map_err(|e| format!("sslrootcert {}: unusable CA certificate: {e}", path.display()))?;
            }
            if store.is_empty() {
                return Err(format!("sslrootcert {}: no certificate in the file", path.display()));
            }
        }
        RootCerts::System => {
            let found = rustls_native_certs::load_native_certs();
            store.add_parsable_certificates(found.certs);
            if store.is_empty() {
                return Err("sslrootcert=system: no trusted certificate found in the system store".into());
            }
        }
    }
    Ok(store)
}

fn connector(mode: SslMode, roots: Option<&RootCerts>) -> Result<MakeRustlsConnect, String> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let label = match roots {
        Some(RootCerts::File(p)) => format!("sslmode={} sslrootcert={}", mode.as_str(), p.display()),
        Some(RootCerts::System) => format!("sslmode={} sslrootcert=system", mode.as_str()),
        None => format!("sslmode={}", mode.as_str()),
    };
    let verifier: Arc<dyn ServerCertVerifier> = match (mode, roots) {
        (SslMode::VerifyCa | SslMode::VerifyFull, Some(roots)) => {
            let store = Arc::new(load_roots(roots)?);
            let webpki = WebPkiServerVerifier::builder_with_provider(store, provider.clone())
                .build()
                .map_err(|e| format!("TLS setup: {e}"))?;
            Arc::new(Checked { inner: webpki, check_name: mode == SslMode::VerifyFull, label, last_log: AtomicU64::new(0) })
        }
        (SslMode::VerifyCa | SslMode::VerifyFull, None) => {
            return Err(format!("sslmode={}: no root certificates", mode.as_str()))
        }
        _ => Arc::new(Unverified { provider: provider.clone() }),
    };
    let config = builder.dangerous().with_custom_certificate_verifier(verifier).with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// `prefer` / `require`: encrypted, but the server's identity is not checked
/// (libpq's behaviour for these modes). Handshake signatures are still verified.
#[derive(Debug)]
struct Unverified {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca` / `verify-full`: the chain must lead to a trusted root;
/// `verify-full` also checks the host name (SAN) against the connection's host.
#[derive(Debug)]
struct Checked {
    inner: Arc<WebPkiServerVerifier>,
    check_name: bool,
    label: String,
    /// Unix seconds of the last refusal logged (one line per second at most).
    last_log: AtomicU64,
}

impl ServerCertVerifier for Checked {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Ok(v) => Ok(v),
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            Err(e) => {
                let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
                if self.last_log.swap(secs, Ordering::Relaxed) != secs {
                    let reason = match &e {
                        rustls::Error::InvalidCertificate(
                            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
                        ) => "the certificate is not valid for this host name".to_string(),
                        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
                            "the certificate is not signed by a CA of sslrootcert".to_string()
                        }
                        other => other.to_string(),
                    };
                    tracing::error!(
                        host = %server_name.to_str(),
                        tls = %self.label,
                        error = %e,
                        "TLS: server certificate refused: {reason}"
                    );
                }
                Err(e)
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn ssl_params_come_out_of_urls_and_key_value_strings() {
        let (rest, ssl) =
            split_ssl_params("postgresql://u@h:5/db?sslmode=verify-full&application_name=x&sslrootcert=%2Ftmp%2Fca%20b.pem")
                .unwrap();
        assert_eq!(rest, "postgresql://u@h:5/db?application_name=x");
        assert_eq!(ssl.mode.as_deref(), Some("verify-full"));
        assert_eq!(ssl.root_cert.as_deref(), Some("/tmp/ca b.pem"));

        let (rest, ssl) =
            split_ssl_params("host=h  sslmode = require password='a b\\'c' sslrootcert='/x y/ca.pem' dbname=d").unwrap();
        assert_eq!(rest, "host=h password='a b\\'c' dbname=d");
        assert_eq!(ssl.mode.as_deref(), Some("require"));
        assert_eq!(ssl.root_cert.as_deref(), Some("/x y/ca.pem"));

        assert!(split_ssl_params("host=h sslmode").is_err());
        assert!(split_ssl_params("host='h").is_err());
        assert_eq!(split_ssl_params("postgres://h/db").unwrap().0, "postgres://h/db");
    }

    #[test]
    fn modes_follow_libpq() {
        let t = target("host=127.0.0.1 user=u", &no_env).unwrap();
        assert_eq!(t.mode, SslMode::Prefer);
        let t = target("host=127.0.0.1 user=u sslmode=disable", &no_env).unwrap();
        assert_eq!(t.mode, SslMode::Disable);
        assert_eq!(t.config.get_ssl_mode(), PgSslMode::Disable);
        let t = target("postgres://u@127.0.0.1/db?sslmode=require", &no_env).unwrap();
        assert_eq!((t.mode, t.config.get_ssl_mode()), (SslMode::Require, PgSslMode::Require));
        // Environment fallback, and the string wins over it.
        let env = |k: &str| (k == "PGSSLMODE").then(|| "require".to_string());
        assert_eq!(target("host=127.0.0.1", &env).unwrap().mode, SslMode::Require);
        assert_eq!(target("host=127.0.0.1 sslmode=disable", &env).unwrap().mode, SslMode::Disable);
        // Unix sockets never use TLS.
        assert_eq!(target("host=/run/postgresql sslmode=require", &no_env).unwrap().mode, SslMode::Disable);
        // Bad values and missing roots are refused with a reason.
        let e = target("host=h sslmode=verify", &no_env).err().unwrap();
        assert!(e.contains("invalid sslmode"), "{e}");
        let home = |k: &str| (k == "HOME").then(|| "/nonexistent-home".to_string());
        let e = target("host=h sslmode=verify-full", &home).err().unwrap();
        assert!(e.contains("/nonexistent-home/.postgresql/root.crt"), "{e}");
        let e = target("host=h sslmode=verify-ca sslrootcert=/nonexistent/ca.pem", &no_env).err().unwrap();
        assert!(e.contains("sslrootcert /nonexistent/ca.pem: cannot read"), "{e}");
        let e = target("host=h sslmode=require sslrootcert=system", &no_env).err().unwrap();
        assert!(e.contains("verify-full"), "{e}");
    }
}
