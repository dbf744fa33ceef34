//! Backups: every key, grace window, session and audit row survives the real
//! `pg_dump` / `pg_restore` in each format a DBA uses, the restore invents no
//! audit event, and the restored database goes on working (tokens minted
//! before the dump validate, old keys in grace still authenticate, the next
//! rotation gets a fresh audit id).

use std::path::PathBuf;
use std::process::Command;

use api_auth_tests::*;
use postgres::Client;

/// Keys, grace rows (one in its window, one over), a preview branch, sessions
/// and the audit trail they wrote; a token minted now, one signed with a key
/// that is now in grace.
struct Fixture {
    env: String,
    key_in_grace: String,
    expired_key: String,
    current_key: String,
    minted_token: String,
    grace_signed_token: String,
}

fn populate(db: &mut Client) -> Fixture {
    let (env, first_key) = create_environment(db, "prod", "PRODUCTION");
    let (second_key, first_revoked) = rotate(db, &env);
    set_expiry(db, &first_revoked, "now() - interval '1 minute'");
    let grace_signed_token = sign_jwt(&serde_json::json!({"alg": "HS256", "typ": "JWT"}), &public_claims(&env), &second_key);
    let (current_key, _) = rotate(db, &env);
    let minted_token: String = db.query_one("SELECT api_auth.mint_public_jwt($1::text)", &[&current_key]).unwrap().get(0);
    let (parent, _) = create_environment(db, "preview", "PREVIEW");
    db.execute(
        "SELECT * FROM api_auth.create_environment('feature-x', 'PREVIEW', 'proj_1', 'org_1', $1, 'feature-x')",
        &[&parent],
    )
    .unwrap();
    for ext in ["chat-1", "chat-2"] {
        db.execute("SELECT * FROM api_auth.create_session($1, 'chat', 'foo', '{}', $2, ARRAY['t'], '{\"m\": 1}')", &[&env, &ext])
            .unwrap();
    }
    Fixture { env, key_in_grace: second_key, expired_key: first_key, current_key, minted_token, grace_signed_token }
}

fn pg_tool(name: &str) -> PathBuf {
    pg_bindir().join(name)
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An empty database (no extension): what a restore starts from.
fn empty_database(prefix: &str) -> (String, String) {
    let name = format!("{prefix}_{}", std::process::id());
    let mut admin = connect(&admin_dsn());
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name}")).unwrap();
    admin.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
    (name.clone(), with_dbname(&admin_dsn(), &name))
}

/// The restored database holds exactly what was dumped, and works.
fn check_restored(before: &[String], fx: &Fixture, dsn: &str) {
    let mut db = connect(dsn);
    let after = snapshot(&mut db);
    let missing: Vec<_> = before.iter().filter(|l| !after.contains(l)).collect();
    let extra: Vec<_> = after.iter().filter(|l| !before.contains(l)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "restore changed the data\nlost: {missing:#?}\ninvented or changed: {extra:#?}"
    );
    assert!(before.iter().any(|l| l.starts_with("audit_event")), "fixture wrote audit rows");
    let held: i64 = db.query_one("SELECT count(*) FROM api_auth.restore_pending", &[]).unwrap().get(0);
    assert_eq!(held, 0, "no grace row or session left waiting for its environment");

    assert_eq!(lookup(&mut db, &fx.current_key, None), Some((fx.env.clone(), "current".into())));
    assert_eq!(lookup(&mut db, &fx.key_in_grace, None), Some((fx.env.clone(), "grace".into())), "key in grace");
    assert_eq!(lookup(&mut db, &fx.expired_key, None), None, "expired key stays expired");
    let minted = validate(&mut db, &fx.minted_token);
    assert!(minted.0, "token minted before the dump: {minted:?}");
    let grace = validate(&mut db, &fx.grace_signed_token);
    assert!(grace.0 && grace.3.as_deref() == Some("grace"), "token signed with the key in grace: {grace:?}");

    // The next rotation writes its audit row with a fresh id.
    let max_before: i64 = db.query_one("SELECT max(id) FROM api_auth.audit_event", &[]).unwrap().get(0);
    let (new_key, _) = rotate(&mut db, &fx.env);
    assert_eq!(lookup(&mut db, &new_key, None), Some((fx.env.clone(), "current".into())));
    let rotated: i64 = db
        .query_one("SELECT count(*) FROM api_auth.audit_event WHERE id > $1 AND action = 'key_rotated'", &[&max_before])
        .unwrap()
        .get(0);
    assert_eq!(rotated, 1, "the rotation after the restore is audited");
}

fn source(prefix: &str) -> (String, Fixture, Vec<String>) {
    let (dsn, mut db) = fresh(prefix);
    let fx = populate(&mut db);
    let before = snapshot(&mut db);
    (dsn, fx, before)
}

fn work_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("api_auth_backup_{name}_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn plain_dump_restored_with_psql_keeps_everything() {
    let (src, fx, before) = source("dump_plain");
    let dir = work_dir("plain");
    let file = dir.join("dump.sql");
    run(Command::new(pg_tool("pg_dump")).arg("--dbname").arg(&src).arg("--file").arg(&file));
    let (_, dst) = empty_database("restored_plain");
    run(Command::new(pg_tool("psql")).args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "--dbname"]).arg(&dst).arg("-f").arg(&file));
    check_restored(&before, &fx, &dst);
}

#[test]
fn custom_format_restored_with_pg_restore_keeps_everything() {
    let (src, fx, before) = source("dump_custom");
    let dir = work_dir("custom");
    let file = dir.join("dump.pgdump");
    run(Command::new(pg_tool("pg_dump")).args(["-Fc", "--dbname"]).arg(&src).arg("--file").arg(&file));
    let (_, dst) = empty_database("restored_custom");
    run(Command::new(pg_tool("pg_restore")).args(["--exit-on-error", "--dbname"]).arg(&dst).arg(&file));
    check_restored(&before, &fx, &dst);
}

#[test]
fn directory_format_restored_with_two_jobs_keeps_everything() {
    let (src, fx, before) = source("dump_dir");
    let dir = work_dir("directory");
    let out = dir.join("dump");
    run(Command::new(pg_tool("pg_dump")).args(["-Fd", "--jobs", "2", "--dbname"]).arg(&src).arg("--file").arg(&out));
    let (_, dst) = empty_database("restored_dir");
    run(Command::new(pg_tool("pg_restore")).args(["--exit-on-error", "--jobs", "2", "--dbname"]).arg(&dst).arg(&out));
    check_restored(&before, &fx, &dst);
}

/// The DBA path: the extension is created first, then a data-only dump is
/// loaded into it.
#[test]
fn data_only_dump_into_a_new_extension_keeps_everything() {
    let (src, fx, before) = source("dump_data");
    let dir = work_dir("data_only");
    let file = dir.join("data.sql");
    run(Command::new(pg_tool("pg_dump")).args(["--data-only", "--dbname"]).arg(&src).arg("--file").arg(&file));
    let dst = fresh_database("restored_data");
    run(Command::new(pg_tool("psql")).args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "--dbname"]).arg(&dst).arg("-f").arg(&file));
    check_restored(&before, &fx, &dst);
}

/// Loading a data-only dump into a database that already holds keys fails
/// loudly, and in one transaction leaves the target exactly as it was.
#[test]
fn data_only_dump_into_a_populated_database_fails_and_changes_nothing() {
    let (src, _, _) = source("dump_clash");
    let dir = work_dir("clash");
    let file = dir.join("data.sql");
    run(Command::new(pg_tool("pg_dump")).args(["--data-only", "--dbname"]).arg(&src).arg("--file").arg(&file));
    // The target is a restore of the same source that then went on living.
    let dst = fresh_database("clash_target");
    run(Command::new(pg_tool("psql")).args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "--dbname"]).arg(&dst).arg("-f").arg(&file));
    let mut db = connect(&dst);
    create_environment(&mut db, "later", "STAGING");
    let before = snapshot(&mut db);

    let out = Command::new(pg_tool("psql"))
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction", "--dbname"])
        .arg(&dst)
        .arg("-f")
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success(), "loading the same keys twice must fail");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("duplicate key"), "a clear error: {stderr}");
    assert_eq!(snapshot(&mut db), before, "nothing half restored");
}

/// The order a parallel restore may pick: grace rows and sessions before
/// their environments (the real pg_restore, its list reordered with -L).
/// They wait in api_auth.restore_pending and move into place when the
/// environments arrive.
#[test]
fn children_restored_before_their_environments_are_held_then_placed() {
    let (src, fx, before) = source("dump_reordered");
    let dir = work_dir("reordered");
    let file = dir.join("dump.pgdump");
    run(Command::new(pg_tool("pg_dump")).args(["-Fc", "--dbname"]).arg(&src).arg("--file").arg(&file));
    let list = Command::new(pg_tool("pg_restore")).arg("-l").arg(&file).output().unwrap();
    assert!(list.status.success());
    let lines: Vec<String> = String::from_utf8(list.stdout).unwrap().lines().map(str::to_owned).collect();
    let is_env_data = |l: &String| l.contains("TABLE DATA api_auth runtime_environment");
    let mut reordered: Vec<String> = lines.iter().filter(|l| !is_env_data(l)).cloned().collect();
    reordered.extend(lines.iter().filter(|l| is_env_data(l)).cloned());
    let children =
        reordered.iter().position(|l| l.contains("TABLE DATA api_auth revoked_api_key")).expect("grace rows in the dump");
    let envs = reordered.iter().position(is_env_data).expect("environments in the dump");
    assert!(children < envs, "the list loads grace rows first");
    let list_file = dir.join("list.txt");
    std::fs::write(&list_file, reordered.join("\n")).unwrap();
    let (_, dst) = empty_database("restored_reordered");
    run(Command::new(pg_tool("pg_restore")).args(["--exit-on-error", "-L"]).arg(&list_file).arg("--dbname").arg(&dst).arg(&file));
    check_restored(&before, &fx, &dst);
}
