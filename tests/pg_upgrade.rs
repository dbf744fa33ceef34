//! A major-version upgrade with the real `pg_upgrade`: an old cluster (in CI
//! Debian's 15 with the extension scripts/test.sh installed) holding
//! environments, a preview branch, keys, grace rows (some ending later, some
//! ended), sessions and the audit trail, upgraded to a newer major (in CI 18)
//! that has the extension installed. `--check` first, then the real run; then
//! every row is as it was, a token minted before the upgrade validates, keys
//! in grace still find their environment, ended ones do not, and the next
//! rotation works and is audited.
//!
//! Needs two PostgreSQL builds, so it is ignored in the ordinary suites;
//! scripts/pg-upgrade-test.sh runs it with:
//! `API_AUTH_UPGRADE_OLD_BIN`, `API_AUTH_UPGRADE_NEW_BIN` (the two bin/ folders),
//! `API_AUTH_UPGRADE_HOME` (a scratch folder), `API_AUTH_UPGRADE_PORT` (it uses
//! this port and the next).

use std::path::{Path, PathBuf};
use std::process::Command;

use api_auth_tests::*;

fn env_path(name: &str) -> PathBuf {
    std::env::var_os(name).unwrap_or_else(|| panic!("{name} is not set: run this test through scripts/pg-upgrade-test.sh")).into()
}

/// Run a PostgreSQL program as the `postgres` user (initdb and the server
/// refuse root) in `dir`, failing the test with its output when it fails.
fn run_as_postgres(dir: &Path, program: &Path, args: &[&str]) -> String {
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    let out = cmd.args(args).current_dir(dir).output().unwrap_or_else(|e| panic!("run {program:?}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        // pg_upgrade's own logs live in the new data folder, named in the arguments.
        let logs: String = args.iter().map(Path::new).filter(|p| p.is_dir()).chain([dir]).map(upgrade_logs).collect();
        panic!("{program:?} {args:?} failed:\n{text}{logs}");
    }
    text
}

/// The ends of pg_upgrade's own logs under `dir` (they name the failing
/// statement), for a failure message: the folder is removed afterwards.
fn upgrade_logs(dir: &Path) -> String {
    let mut out = String::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "log") && path.to_string_lossy().contains("pg_upgrade_output.d") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let mut tail: Vec<&str> = text.lines().rev().take(15).collect();
                tail.extend(text.lines().rev().filter(|l| l.contains("error") || l.contains("ERROR")).take(10));
                out.push_str(&format!("\n--- {}:\n{}", path.display(), tail.into_iter().rev().collect::<Vec<_>>().join("\n")));
            }
        }
    }
    out
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false)
}

struct Cluster {
    bin: PathBuf,
    data: PathBuf,
    run: PathBuf,
    port: u16,
}

impl Cluster {
    fn init(home: &Path, name: &str, bin: PathBuf, port: u16, extra: &[&str]) -> Cluster {
        let data = home.join(name);
        let run = home.join(format!("{name}-run"));
        std::fs::create_dir_all(&run).unwrap();
        chown_postgres(&run);
        let c = Cluster { bin, data, run, port };
        let data = c.data.to_str().unwrap().to_owned();
        // Same encoding and locale on both sides, as pg_upgrade requires.
        let mut args = vec!["-D", &data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"];
        args.extend_from_slice(extra);
        run_as_postgres(home, &c.bin.join("initdb"), &args);
        let conf = format!(
            "listen_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{}'\nfsync = off\n",
            c.port,
            c.run.display()
        );
        use std::io::Write;
        std::fs::OpenOptions::new()
            .append(true)
            .open(c.data.join("postgresql.conf"))
            .unwrap()
            .write_all(conf.as_bytes())
            .unwrap();
        c
    }

    fn start(&self, home: &Path) {
        let log = self.data.with_extension("log");
        run_as_postgres(
            home,
            &self.bin.join("pg_ctl"),
            &["-D", self.data.to_str().unwrap(), "-l", log.to_str().unwrap(), "-w", "-t", "60", "start"],
        );
    }

    fn stop(&self, home: &Path) {
        run_as_postgres(home, &self.bin.join("pg_ctl"), &["-D", self.data.to_str().unwrap(), "-m", "fast", "-w", "stop"]);
    }

    fn dsn(&self, db: &str) -> String {
        format!("host={} port={} user=postgres dbname={db}", self.run.display(), self.port)
    }
}

fn chown_postgres(path: &Path) {
    if is_root() {
        let ok = Command::new("chown").arg("postgres:").arg(path).status().unwrap().success();
        assert!(ok, "chown postgres {path:?}");
    }
}

#[test]
#[ignore = "needs two PostgreSQL versions: run by scripts/pg-upgrade-test.sh"]
fn pg_upgrade_keeps_keys_grace_windows_sessions_and_tokens() {
    let old_bin = env_path("API_AUTH_UPGRADE_OLD_BIN");
    let new_bin = env_path("API_AUTH_UPGRADE_NEW_BIN");
    let home = env_path("API_AUTH_UPGRADE_HOME");
    let port: u16 = std::env::var("API_AUTH_UPGRADE_PORT").expect("API_AUTH_UPGRADE_PORT").parse().unwrap();
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(&home).unwrap();
    chown_postgres(&home);

    // The old cluster, filled.
    // Without data checksums, as Debian creates clusters up to 17.
    let old = Cluster::init(&home, "old", old_bin, port, &[]);
    old.start(&home);
    let mut admin = connect(&old.dsn("postgres"));
    let old_major = server_major(&mut admin);
    admin.batch_execute("CREATE DATABASE app").unwrap();
    let mut db = connect(&old.dsn("app"));
    db.batch_execute("CREATE EXTENSION api_auth").unwrap();
    let version: String = db.query_one("SELECT extversion FROM pg_extension WHERE extname = 'api_auth'", &[]).unwrap().get(0);

    let (prod, prod_k1) = create_environment(&mut db, "prod", "PRODUCTION");
    let (prod_k2, prod_r1) = rotate(&mut db, &prod); // k1 in grace, ends in 24 h
    let (prod_k3, prod_r2) = rotate(&mut db, &prod); // k2 in grace too
    set_expiry(&mut db, &prod_r1, "now() - interval '1 hour'"); // k1: ended
    set_expiry(&mut db, &prod_r2, "now() + interval '3 hours'"); // k2: ends later
    let (stg, stg_k1) = create_environment(&mut db, "stg", "STAGING");
    let (stg_k2, stg_r1) = rotate(&mut db, &stg);
    set_expiry(&mut db, &stg_r1, "now() + interval '30 days'");
    let (dev, dev_k1) = create_environment(&mut db, "dev", "DEVELOPMENT");
    let (_, dev_r1) = rotate(&mut db, &dev);
    set_expiry(&mut db, &dev_r1, "now() - interval '2 days'"); // ended, not purged
    let preview: (String, String) = {
        let r = db.query_one("SELECT id, api_key FROM api_auth.create_environment('pr', 'PREVIEW')", &[]).unwrap();
        (r.get(0), r.get(1))
    };
    let branch: String = db
        .query_one("SELECT id FROM api_auth.create_environment('br', 'PREVIEW', NULL, NULL, $1, 'feature-x')", &[&preview.0])
        .unwrap()
        .get(0);
    let session: String = db
        .query_one(
            "SELECT id FROM api_auth.create_session($1, 'chat', 'my-task', '{\"ttl\": \"1h\"}', 'ext-1', ARRAY['a', 'b'])",
            &[&prod],
        )
        .unwrap()
        .get(0);
    let session2: String = db.query_one("SELECT id FROM api_auth.create_session($1, 'chat', 'other')", &[&stg]).unwrap().get(0);
    // A token minted with a key in grace (signed with the current key), and one with the current key.
    let token_grace: String = db.query_one("SELECT api_auth.mint_public_jwt($1::text)", &[&prod_k2]).unwrap().get(0);
    let token_stg: String = db.query_one("SELECT api_auth.mint_public_jwt($1::text)", &[&stg_k2]).unwrap().get(0);
    let before = snapshot(&mut db);
    assert!(before.iter().filter(|l| l.starts_with("audit_event: ")).count() >= 10, "audit trail: {before:#?}");
    assert_eq!(before.iter().filter(|l| l.starts_with("revoked_api_key: ")).count(), 4);
    assert_eq!(before.iter().filter(|l| l.starts_with("session: ")).count(), 2);
    drop(db);
    drop(admin);
    old.stop(&home);

    // The new cluster, empty, with the extension's files installed; then pg_upgrade.
    // initdb turns data checksums on by default from 18; pg_upgrade needs the
    // same setting on both sides, so the new cluster matches the old one.
    let help = run_as_postgres(&home, &new_bin.join("initdb"), &["--help"]);
    let extra: &[&str] = if help.contains("--no-data-checksums") { &["--no-data-checksums"] } else { &[] };
    let new = Cluster::init(&home, "new", new_bin.clone(), port + 1, extra);
    let args = |check: bool| {
        let mut a = vec![
            "--old-bindir".to_owned(),
            old.bin.display().to_string(),
            "--new-bindir".into(),
            new.bin.display().to_string(),
            "--old-datadir".into(),
            old.data.display().to_string(),
            "--new-datadir".into(),
            new.data.display().to_string(),
            "--old-port".into(),
            old.port.to_string(),
            "--new-port".into(),
            new.port.to_string(),
            "--socketdir".into(),
            home.display().to_string(),
            "--username".into(),
            "postgres".into(),
        ];
        if check {
            a.push("--check".into());
        }
        a
    };
    let work = home.join("work");
    std::fs::create_dir_all(&work).unwrap();
    chown_postgres(&work);
    let check_args = args(true);
    let out = run_as_postgres(&work, &new_bin.join("pg_upgrade"), &check_args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.contains("Clusters are compatible"), "pg_upgrade --check said:\n{out}");
    let real_args = args(false);
    let out = run_as_postgres(&work, &new_bin.join("pg_upgrade"), &real_args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.contains("Upgrade Complete"), "pg_upgrade said:\n{out}");

    new.start(&home);
    let mut db = connect(&new.dsn("app"));
    let new_major = server_major(&mut db);
    assert!(new_major > old_major, "upgraded from {old_major} to {new_major}");
    eprintln!("pg_upgrade {old_major} -> {new_major}: --check and the upgrade passed");
    let after_version: String =
        db.query_one("SELECT extversion FROM pg_extension WHERE extname = 'api_auth'", &[]).unwrap().get(0);
    assert_eq!(after_version, version);

    // Every row as it was.
    let after = snapshot(&mut db);
    assert_eq!(after, before, "rows changed across pg_upgrade");

    // Keys: current ones find their environment, grace ones as grace, ended ones not at all.
    assert_eq!(lookup(&mut db, &prod_k3, None), Some((prod.clone(), "current".into())));
    assert_eq!(lookup(&mut db, &prod_k2, None), Some((prod.clone(), "grace".into())));
    assert_eq!(lookup(&mut db, &prod_k1, None), None, "a grace window that ended stays ended");
    assert_eq!(lookup(&mut db, &stg_k2, None), Some((stg.clone(), "current".into())));
    assert_eq!(lookup(&mut db, &stg_k1, None), Some((stg.clone(), "grace".into())));
    assert_eq!(lookup(&mut db, &dev_k1, None), None);
    assert_eq!(lookup(&mut db, &preview.1, Some("feature-x")), Some((branch.clone(), "current".into())));
    let windows: Vec<(String, bool)> = db
        .query(
            "SELECT environment_slug, time_left > interval '2 hours' FROM api_auth.grace_windows ORDER BY environment_slug",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(windows, vec![("prod".to_owned(), true), ("stg".to_owned(), true)]);

    // Tokens minted before the upgrade validate.
    let v = validate(&mut db, &token_grace);
    assert_eq!((v.0, v.2.as_deref(), v.3.as_deref()), (true, Some(prod.as_str()), Some("current")), "{v:?}");
    let v = validate(&mut db, &token_stg);
    assert_eq!((v.0, v.2.as_deref()), (true, Some(stg.as_str())), "{v:?}");

    // Sessions read back.
    let tags: Vec<String> = db.query_one("SELECT tags FROM api_auth.get_session($1, $2)", &[&prod, &session]).unwrap().get(0);
    assert_eq!(tags, vec!["a".to_owned(), "b".to_owned()]);
    let by_external: String = db.query_one("SELECT id FROM api_auth.get_session($1, 'ext-1')", &[&prod]).unwrap().get(0);
    assert_eq!(by_external, session);
    assert_eq!(db.query("SELECT 1 FROM api_auth.get_session($1, $2)", &[&stg, &session2]).unwrap().len(), 1);

    // The next rotation works, audits, and the key it replaced enters grace.
    let audits_before: i64 = db.query_one("SELECT count(*) FROM api_auth.audit_event", &[]).unwrap().get(0);
    let (prod_k4, prod_r3) = rotate(&mut db, &prod);
    assert_eq!(lookup(&mut db, &prod_k4, None), Some((prod.clone(), "current".into())));
    assert_eq!(lookup(&mut db, &prod_k3, None), Some((prod.clone(), "grace".into())));
    let audits_after: i64 = db.query_one("SELECT count(*) FROM api_auth.audit_event", &[]).unwrap().get(0);
    assert!(audits_after > audits_before, "the rotation is audited");
    let minted: String = db.query_one("SELECT api_auth.mint_public_jwt($1::text)", &[&prod_k3]).unwrap().get(0);
    assert!(signed_with(&minted, &prod_k4), "minted with the newest key");
    let ended: i64 = db.query_one("SELECT count(*) FROM api_auth.revoked_api_key WHERE id = $1", &[&prod_r3]).unwrap().get(0);
    assert_eq!(ended, 1);
    // A new environment after the upgrade, too.
    let (_, fresh_key) = create_environment(&mut db, "after", "PRODUCTION");
    assert!(lookup(&mut db, &fresh_key, None).is_some());
    drop(db);
    new.stop(&home);
}
