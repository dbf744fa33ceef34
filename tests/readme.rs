//! The README's DBA session, pasted into real psql: docs that cannot rot.

use std::process::Command;

use api_auth_tests::*;

fn readme_session() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).expect("README.md");
    let section = readme.split("## A DBA's session").nth(1).expect("DBA section");
    let block = section.split("```sql").nth(1).expect("sql block");
    block.split("```").next().expect("end of block").to_owned()
}

#[test]
fn the_dba_session_runs_as_written() {
    let dsn = fresh_database("readme");
    let mut child = Command::new(pg_bindir().join("psql"))
        .args(["-X", "-v", "ON_ERROR_STOP=1", "-A", "-F", "|", "-d", &dsn])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn psql");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(readme_session().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "psql failed: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    // The story the comments tell, checked against what psql printed.
    for expected in [
        "|prod|current",   // the key finds it
        "|grace|rak_",     // the old key, as a grace hit
        "prod|tr_prod_",   // grace_windows, masked
        "t|env_",          // the old key's token validates...
        "|current\n",      // ...signed with the new key
        "old_key_hits\n0", // ended now: refused
        "in_grace\n0",
        "grace\n", // extended: back again
        "authorize\nt",
    ] {
        assert!(stdout.contains(expected), "psql output lacks {expected:?}:\n{stdout}");
    }
}
