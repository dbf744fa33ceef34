//! Environments and their keys: creating an environment (or a preview branch)
//! with freshly generated keys in the SPEC's formats, and masking keys for display.

use api_auth_core::keys::{self, EnvironmentType};
use pgrx::prelude::*;

use crate::errors::{check_text, required_text, ApiAuthError, OrReport, Result};
use crate::lookup::MAX_BRANCH_LEN;
use crate::plan;

/// Longest id, slug, project or organization id accepted.
pub const MAX_NAME_LEN: usize = 128;

type EnvironmentRow = (
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<TimestampWithTimeZone>,
    TimestampWithTimeZone,
    TimestampWithTimeZone,
);

plan!(
    PARENT,
    true,
    [TEXTOID],
    "SELECT type, parent_environment_id IS NOT NULL, archived_at IS NOT NULL, project_id, organization_id \
     FROM api_auth.runtime_environment WHERE id = $1 FOR KEY SHARE"
);

plan!(
    INSERT,
    true,
    [TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID],
    "INSERT INTO api_auth.runtime_environment \
       (id, slug, type, api_key, pk_api_key, parent_environment_id, branch_name, project_id, organization_id) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
     RETURNING id, slug, type, api_key, pk_api_key, parent_environment_id, branch_name, \
               project_id, organization_id, archived_at, created_at, updated_at"
);

fn optional_name<'a>(name: &str, v: Option<&'a str>) -> Result<Option<&'a str>> {
    if let Some(v) = v {
        check_text(name, v, MAX_NAME_LEN)?;
    }
    Ok(v)
}

fn create(
    slug: Option<&str>,
    kind: Option<&str>,
    project_id: Option<&str>,
    organization_id: Option<&str>,
    parent_environment_id: Option<&str>,
    branch_name: Option<&str>,
) -> Result<EnvironmentRow> {
    let slug = required_text("slug", slug, MAX_NAME_LEN)?;
    let kind_text = required_text("environment_type", kind, 32)?;
    let kind: EnvironmentType = kind_text.parse().map_err(|()| {
        ApiAuthError::invalid(format!(
            "environment_type must be one of DEVELOPMENT, STAGING, PRODUCTION, PREVIEW (got \"{kind_text}\")"
        ))
    })?;
    let mut project_id = optional_name("project_id", project_id)?.map(str::to_owned);
    let mut organization_id = optional_name("organization_id", organization_id)?.map(str::to_owned);
    if let Some(b) = branch_name {
        check_text("branch_name", b, MAX_BRANCH_LEN)?;
    }
    let parent = optional_name("parent_environment_id", parent_environment_id)?;

    Spi::connect(|client| {
        let (api_key, pk_api_key) = match (parent, branch_name) {
            (None, None) => (Some(keys::generate_secret_key(kind)?), Some(keys::generate_publishable_key(kind)?)),
            (None, Some(_)) => {
                return Err(ApiAuthError::invalid("branch_name needs a parent_environment_id"));
            }
            (Some(_), None) => {
                return Err(ApiAuthError::invalid("a preview branch needs a branch_name"));
            }
            (Some(parent), Some(_)) => {
                if kind != EnvironmentType::Preview {
                    return Err(ApiAuthError::invalid("a preview branch must have type PREVIEW"));
                }
                let rows = PARENT.run(client, &[parent.into()])?;
                let row = rows
                    .into_iter()
                    .next()
                    .ok_or_else(|| ApiAuthError::NotFound(format!("parent environment \"{parent}\" not found")))?;
                let parent_type: Option<String> = row.get(1)?;
                if parent_type.as_deref() != Some("PREVIEW") || row.get::<bool>(2)? == Some(true) {
                    return Err(ApiAuthError::WrongState(format!(
                        "environment \"{parent}\" is not a PREVIEW parent: branches hang off a PREVIEW environment"
                    )));
                }
                if row.get::<bool>(3)? == Some(true) {
                    return Err(ApiAuthError::WrongState(format!("parent environment \"{parent}\" is archived")));
                }
                // A branch belongs to its parent's project unless told otherwise.
                project_id = project_id.or(row.get(4)?);
                organization_id = organization_id.or(row.get(5)?);
                // Branches have no keys of their own: they authenticate with the parent's.
                (None, None)
            }
        };
        let id = keys::generate_id("env")?;
        let rows = INSERT.run(
            client,
            &[
                id.as_str().into(),
                slug.into(),
                kind.as_str().into(),
                api_key.into(),
                pk_api_key.into(),
                parent.into(),
                branch_name.into(),
                project_id.into(),
                organization_id.into(),
            ],
        )?;
        let row = rows.into_iter().next().ok_or_else(|| ApiAuthError::Internal("insert returned no row".into()))?;
        Ok((
            row.get(1)?.unwrap_or_default(),
            row.get(2)?.unwrap_or_default(),
            row.get(3)?.unwrap_or_default(),
            row.get(4)?,
            row.get(5)?,
            row.get(6)?,
            row.get(7)?,
            row.get(8)?,
            row.get(9)?,
            row.get(10)?,
            row.get(11)?.ok_or_else(|| ApiAuthError::Internal("created_at is NULL".into()))?,
            row.get(12)?.ok_or_else(|| ApiAuthError::Internal("updated_at is NULL".into()))?,
        ))
    })
}

/// Create an environment with fresh keys, or, given a PREVIEW parent and a
/// branch name, a preview branch (which authenticates with its parent's key).
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn create_environment(
    slug: Option<&str>,
    environment_type: Option<&str>,
    project_id: default!(Option<&str>, "NULL"),
    organization_id: default!(Option<&str>, "NULL"),
    parent_environment_id: default!(Option<&str>, "NULL"),
    branch_name: default!(Option<&str>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(id, String),
        name!(slug, String),
        name!(type, String),
        name!(api_key, Option<String>),
        name!(pk_api_key, Option<String>),
        name!(parent_environment_id, Option<String>),
        name!(branch_name, Option<String>),
        name!(project_id, Option<String>),
        name!(organization_id, Option<String>),
        name!(archived_at, Option<TimestampWithTimeZone>),
        name!(created_at, TimestampWithTimeZone),
        name!(updated_at, TimestampWithTimeZone),
    ),
> {
    let row = create(slug, environment_type, project_id, organization_id, parent_environment_id, branch_name).or_report();
    TableIterator::once(row)
}

/// `tr_prod_ab…yz`: what a DBA, a log line or a view may show of a key.
#[pg_extern(immutable, parallel_safe, strict)]
fn mask_api_key(api_key: &str) -> String {
    keys::mask(api_key)
}
