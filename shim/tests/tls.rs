//! TLS to PostgreSQL with real certificates: the test makes a CA and a server
//! certificate with the `openssl` command, runs a cluster with `ssl = on` that
//! accepts TCP clients only over TLS (`hostssl` lines only), and checks each
//! `sslmode` through the real shim. Whether a shim connection is encrypted is
//! read from the server's own `pg_stat_ssl`.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use api_auth_tests::PrivateCluster;
use support::{Opts, Shim};

/// Name in the server certificate (besides IP 127.0.0.1).
const SERVER_NAME: &str = "db.h12.test";

/// How every key here is made: a fresh P-256 key, unencrypted.
const NEW_EC_KEY: &str = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";

/// Run `openssl` in `dir` with `command`'s space-separated arguments (none
/// here contains a space).
fn openssl(dir: &Path, command: &str) {
    let args: Vec<&str> = command.split_whitespace().collect();
    let out = Command::new("openssl").args(&args).current_dir(dir).output().expect("run openssl");
    assert!(out.status.success(), "openssl {command}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA (`<name>.crt`, `<name>.key`) in `dir`.
fn make_ca(dir: &Path, name: &str) -> PathBuf {
    openssl(
        dir,
        &format!(
            "req -x509 {NEW_EC_KEY} -keyout {name}.key -out {name}.crt -days 2 -subj /CN={name} \
             -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign"
        ),
    );
    dir.join(format!("{name}.crt"))
}

/// A server certificate for SERVER_NAME and 127.0.0.1 signed by `ca`.
fn make_server_cert(dir: &Path, ca: &str) {
    std::fs::write(
        dir.join("server.ext"),
        format!(
            "subjectAltName=DNS:{SERVER_NAME},IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        ),
    )
    .unwrap();
    openssl(dir, &format!("req {NEW_EC_KEY} -keyout server.key -out server.csr -subj /CN={SERVER_NAME}"));
    openssl(
        dir,
        &format!(
            "x509 -req -in server.csr -CA {ca}.crt -CAkey {ca}.key -CAcreateserial -out server.crt -days 2 \
             -extfile server.ext"
        ),
    );
}

/// A cluster with `ssl = on`, the server certificate of `certs`, and only
/// `hostssl` lines for TCP clients.
fn tls_cluster(name: &str, certs: &Path) -> PrivateCluster {
    let cluster = PrivateCluster::start(name);
    let data = cluster.home.join("pgdata");
    for f in ["server.crt", "server.key"] {
        std::fs::copy(certs.join(f), data.join(f)).unwrap();
        let ok = Command::new("chown").arg("postgres:").arg(data.join(f)).status().unwrap().success();
        assert!(ok, "chown {f}");
    }
    let ok = Command::new("chmod").arg("600").arg(data.join("server.key")).status().unwrap().success();
    assert!(ok);
    let hba = data.join("pg_hba.conf");
    let text = std::fs::read_to_string(&hba).unwrap();
    let rewritten: String = text
        .lines()
        .map(|l| match l.strip_prefix("host ") {
            Some(rest) => format!("hostssl {rest}\n"),
            None => format!("{l}\n"),
        })
        .collect();
    assert!(rewritten.contains("hostssl"), "no host line to rewrite in {text}");
    std::fs::write(&hba, rewritten).unwrap();
    let mut db = cluster.connect();
    for sql in [
        "ALTER SYSTEM SET ssl = on",
        "ALTER SYSTEM SET ssl_cert_file = 'server.crt'",
        "ALTER SYSTEM SET ssl_key_file = 'server.key'",
        "SELECT pg_reload_conf()",
    ] {
        db.simple_query(sql).unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    let on: String = db.query_one("SHOW ssl", &[]).unwrap().get(0);
    assert_eq!(on, "on");
    cluster
}

/// The test's certificates; the folder is removed on drop (a failing test too).
struct Certs(PathBuf);

impl std::ops::Deref for Certs {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn cert_dir(name: &str) -> Certs {
    let dir = PathBuf::from(format!("/var/tmp/api_auth-{name}-certs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    make_ca(&dir, "right-ca");
    make_ca(&dir, "other-ca");
    make_server_cert(&dir, "right-ca");
    Certs(dir)
}

fn url(cluster: &PrivateCluster, query: &str) -> String {
    format!("postgresql://postgres@127.0.0.1:{}/{}?{query}", cluster.port, cluster.db)
}

/// (shim backends, of which encrypted) on a server, by `pg_stat_ssl`.
fn shim_backends(db: &mut api_auth_tests::Client) -> (i64, i64) {
    let r = db
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE s.ssl) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
             WHERE a.application_name = 'api-auth-shim'",
            &[],
        )
        .unwrap();
    (r.get(0), r.get(1))
}

fn wait_log(shim: &Shim, needle: &str) {
    let start = Instant::now();
    while !shim.logs().contains(needle) {
        assert!(start.elapsed() < Duration::from_secs(10), "no log line with {needle:?}:\n{}", shim.logs());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn verified_tls_to_primary_admin_and_replica() {
    let certs = cert_dir("tls_ok");
    let ca = certs.join("right-ca.crt");
    let cluster = tls_cluster("tls_ok", &certs);
    // The standby's data folder is a copy: same certificate, ssl and hba.
    let standby = cluster.start_standby();
    let ca_q = api_auth_tests::url_encode(&ca.display().to_string());
    let primary = url(&cluster, &format!("sslmode=verify-full&sslrootcert={ca_q}"));
    // The admin pool as a key=value string naming the certificate's host name.
    let admin = format!(
        "host={SERVER_NAME} hostaddr=127.0.0.1 port={} user=postgres dbname={} application_name=api-auth-shim \
         sslmode=verify-full sslrootcert='{}'",
        cluster.port,
        cluster.db,
        ca.display()
    );
    let replica =
        format!("postgresql://postgres@127.0.0.1:{}/{}?sslmode=verify-full&sslrootcert={ca_q}", standby.port, cluster.db);
    let shim = Shim::start_with(
        &primary,
        Opts { args: vec!["--admin-database-url".into(), admin, "--replica-database-url".into(), replica], ..Default::default() },
    );
    assert_eq!(shim.get("/readyz", None).status, 200, "{}", shim.logs());
    let (_, key) = shim.create_env("prod", "PRODUCTION");
    standby.wait_caught_up(Duration::from_secs(10));
    let start = Instant::now();
    while shim.get("/readyz", None).json()["reads"]["replicas"][0]["usable"] != serde_json::json!(true) {
        assert!(start.elapsed() < Duration::from_secs(20), "replica over TLS never usable:\n{}", shim.logs());
        std::thread::sleep(Duration::from_millis(50));
    }
    for _ in 0..5 {
        assert_eq!(shim.get("/api/v1/auth/verify", Some(&key)).status, 200);
    }
    let (n, tls) = shim_backends(&mut cluster.connect());
    assert!(n >= 2 && n == tls, "primary: {n} shim connections, {tls} encrypted");
    let (n, tls) = shim_backends(&mut standby.connect());
    assert!(n >= 1 && n == tls, "standby: {n} shim connections, {tls} encrypted");
    assert!(shim.logs().contains("sslmode=verify-full"), "start-up line names the TLS mode");
    drop(shim);

    // require: encrypted, not verified (no CA given); prefer (the default): encrypted when offered.
    for query in ["sslmode=require", "application_name=api-auth-shim"] {
        let shim = Shim::start_with(&url(&cluster, query), Opts::default());
        let r = shim.get("/readyz", None);
        assert_eq!(r.status, 200, "{query}: {}\n{}", r.text(), shim.logs());
        let (n, tls) = shim_backends(&mut cluster.connect());
        assert!(n >= 1 && n == tls, "{query}: {n} shim connections, {tls} encrypted");
    }
    drop(standby);
}

#[test]
fn wrong_ca_wrong_host_name_and_plain_text_are_refused_clearly() {
    let certs = cert_dir("tls_bad");
    let cluster = tls_cluster("tls_bad", &certs);
    let other = api_auth_tests::url_encode(&certs.join("other-ca.crt").display().to_string());
    let right = certs.join("right-ca.crt");

    // A CA that did not sign the server's certificate.
    let shim = Shim::start_with(&url(&cluster, &format!("sslmode=verify-full&sslrootcert={other}")), Opts::default());
    shim.get("/readyz", None).assert_error(503);
    shim.get("/api/v1/auth/verify", Some("tr_prod_abcdefghijklmnopqrst")).assert_error(503);
    wait_log(&shim, "TLS: server certificate refused: the certificate is not signed by a CA of sslrootcert");
    drop(shim);

    // The right CA, but the connection names another host than the certificate.
    let wrong_host = |mode: &str| {
        format!(
            "host=wrong.h12.test hostaddr=127.0.0.1 port={} user=postgres dbname={} sslmode={mode} sslrootcert='{}'",
            cluster.port,
            cluster.db,
            right.display()
        )
    };
    let shim = Shim::start_with(&wrong_host("verify-full"), Opts::default());
    shim.get("/readyz", None).assert_error(503);
    wait_log(&shim, "TLS: server certificate refused: the certificate is not valid for this host name");
    assert!(shim.logs().contains("wrong.h12.test"), "the refusal names the host");
    drop(shim);
    // verify-ca checks the chain only: the same string connects.
    let shim = Shim::start_with(&wrong_host("verify-ca"), Opts::default());
    let r = shim.get("/readyz", None);
    assert_eq!(r.status, 200, "verify-ca: {}\n{}", r.text(), shim.logs());
    drop(shim);

    // No TLS against a server that only accepts TLS on TCP.
    let shim = Shim::start_with(&url(&cluster, "sslmode=disable"), Opts::default());
    shim.get("/readyz", None).assert_error(503);
    wait_log(&shim, "no encryption");
    assert!(shim.logs().contains("no pg_hba.conf entry"), "{}", shim.logs());
    drop(shim);
}
