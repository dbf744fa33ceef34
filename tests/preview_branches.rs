//! Acceptance 3: preview branches authenticate with the parent's key plus a branch name.

use api_auth_tests::*;
use serde_json::json;

fn branch(db: &mut Client, parent: &str, name: &str) -> String {
    db.query_one(
        "SELECT id FROM api_auth.create_environment('pr', 'PREVIEW', parent_environment_id => $1, branch_name => $2)",
        &[&parent, &name],
    )
    .unwrap()
    .get(0)
}

#[test]
fn parent_key_plus_branch_finds_the_branch() {
    let (_, mut db) = fresh("branches");
    let (parent, pk) = create_environment(&mut db, "preview", "PREVIEW");
    let feature = branch(&mut db, &parent, "feature-x");
    let archived = branch(&mut db, &parent, "old");
    db.execute("UPDATE api_auth.runtime_environment SET archived_at = now() WHERE id = $1", &[&archived]).unwrap();

    let row = db
        .query_one(
            "SELECT id, api_key, branch_name, parent_environment_id, project_id, matched_by \
             FROM api_auth.find_environment_by_api_key($1, 'feature-x')",
            &[&pk],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), feature);
    assert_eq!(row.get::<_, String>(1), pk, "parent's current key merged onto the branch");
    assert_eq!(row.get::<_, String>(2), "feature-x");
    assert_eq!(row.get::<_, String>(3), parent);
    assert_eq!(row.get::<_, String>(4), "proj_1", "branch inherits the parent's project");
    assert_eq!(row.get::<_, String>(5), "current");

    assert_eq!(lookup(&mut db, &pk, None), None, "PREVIEW key without a branch");
    assert_eq!(lookup(&mut db, &pk, Some("")), None, "empty branch");
    assert_eq!(lookup(&mut db, &pk, Some("nope")), None, "unknown branch");
    assert_eq!(lookup(&mut db, &pk, Some("old")), None, "archived branch");

    // After the parent rotates, its old key (in grace) still reaches the branch,
    // and the merged key is the parent's new current key.
    let (pk2, _) = rotate(&mut db, &parent);
    let row = db
        .query_one("SELECT id, api_key, matched_by FROM api_auth.find_environment_by_api_key($1, 'feature-x')", &[&pk])
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1), row.get::<_, String>(2)),
        (feature.clone(), pk2.clone(), "grace".into())
    );

    // A branch has no key of its own to rotate.
    let err = db.query("SELECT * FROM api_auth.rotate_api_key($1)", &[&feature]).unwrap_err();
    assert_eq!(sqlstate(&err), "55000");
    // A branch name on a non-preview environment is ignored, as on the platform.
    let (prod, prod_key) = create_environment(&mut db, "prod", "PRODUCTION");
    assert_eq!(lookup(&mut db, &prod_key, Some("feature-x")), Some((prod, "current".into())));
}

#[test]
fn branch_tokens_validate_against_the_parents_keys() {
    let (_, mut db) = fresh("branch_tokens");
    let (parent, pk) = create_environment(&mut db, "preview", "PREVIEW");
    let feature = branch(&mut db, &parent, "feature-x");
    let t: String = db.query_one("SELECT api_auth.mint_public_jwt($1, '{}', '1h', 'feature-x')", &[&pk]).unwrap().get(0);
    assert_eq!(jwt_part(&t, 1)["sub"], feature.as_str());
    assert!(signed_with(&t, &pk), "signed with the parent's key");
    assert_eq!(validate(&mut db, &t), (true, None, Some(feature.clone()), Some("current".into()), None));

    let (_, revoked) = rotate(&mut db, &parent);
    assert_eq!(validate(&mut db, &t), (true, None, Some(feature.clone()), Some("grace".into()), Some(revoked.clone())));
    set_expiry(&mut db, &revoked, "now()");
    assert_eq!(validate(&mut db, &t).1.as_deref(), Some("invalid_signature"));

    // Archiving the branch, or its parent, refuses its tokens.
    let hand_made = sign_jwt(&json!({"alg": "HS256"}), &public_claims(&feature), &rotate(&mut db, &parent).0);
    assert!(validate(&mut db, &hand_made).0);
    db.execute("UPDATE api_auth.runtime_environment SET archived_at = now() WHERE id = $1", &[&parent]).unwrap();
    assert_eq!(validate(&mut db, &hand_made).1.as_deref(), Some("environment_not_found"));
    // A token for the PREVIEW parent itself, even well signed, authenticates
    // nothing (as its key without a branch authenticates nothing).
    let (parent2, pk2) = create_environment(&mut db, "preview2", "PREVIEW");
    let parent_token = sign_jwt(&json!({"alg": "HS256"}), &public_claims(&parent2), &pk2);
    assert_eq!(validate(&mut db, &parent_token).1.as_deref(), Some("environment_not_found"));
    // A PREVIEW key without a branch mints nothing.
    let none: Option<String> = db.query_one("SELECT api_auth.mint_public_jwt($1)", &[&pk]).unwrap().get(0);
    assert_eq!(none, None);
}

#[test]
fn creating_branches_checks_the_parent() {
    let (_, mut db) = fresh("branch_create");
    let (parent, _) = create_environment(&mut db, "preview", "PREVIEW");
    let (prod, _) = create_environment(&mut db, "prod", "PRODUCTION");
    branch(&mut db, &parent, "a");
    let cases: [(&str, &[&(dyn postgres::types::ToSql + Sync)], &str); 6] = [
        (
            "SELECT * FROM api_auth.create_environment('b', 'PREVIEW', parent_environment_id => $1, branch_name => 'a')",
            &[&parent],
            "23505",
        ),
        (
            "SELECT * FROM api_auth.create_environment('b', 'PREVIEW', parent_environment_id => $1, branch_name => 'x')",
            &[&prod],
            "55000",
        ),
        (
            "SELECT * FROM api_auth.create_environment('b', 'PREVIEW', parent_environment_id => 'env_nope', branch_name => 'x')",
            &[],
            "P0002",
        ),
        (
            "SELECT * FROM api_auth.create_environment('b', 'PRODUCTION', parent_environment_id => $1, branch_name => 'x')",
            &[&parent],
            "22023",
        ),
        ("SELECT * FROM api_auth.create_environment('b', 'PREVIEW', branch_name => 'x')", &[], "22023"),
        ("SELECT * FROM api_auth.create_environment('b', 'PREVIEW', parent_environment_id => $1)", &[&parent], "22023"),
    ];
    for (sql, params, want) in cases {
        let err = db.query(sql, params).unwrap_err();
        assert_eq!(sqlstate(&err), want, "{sql}");
    }
    let branches: i64 = db
        .query_one("SELECT count(*) FROM api_auth.runtime_environment WHERE parent_environment_id IS NOT NULL", &[])
        .unwrap()
        .get(0);
    assert_eq!(branches, 1, "nothing half written");
}
