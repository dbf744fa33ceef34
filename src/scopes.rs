//! `authorize(scopes, action, resources)`: the scope grammar and OR rule of
//! SPEC §3, in SQL. The grammar itself lives in `api_auth_core::scopes`.

use api_auth_core::scopes::{self, Resource};
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::Value;

use crate::errors::{check_text, ApiAuthError, OrReport, Result};

/// Bounds that keep one call cheap whatever a caller sends.
pub const MAX_SCOPES: usize = 1024;
pub const MAX_RESOURCES: usize = 64;

/// Parse a `resources` JSON array of `{"type": …, "id"?: …}`.
pub fn parse_resources(resources: &Value) -> Result<Vec<Resource<'_>>> {
    let list = resources
        .as_array()
        .ok_or_else(|| ApiAuthError::invalid("resources must be a JSON array of {\"type\": …, \"id\"?: …}"))?;
    if list.len() > MAX_RESOURCES {
        return Err(ApiAuthError::invalid(format!("at most {MAX_RESOURCES} resources")));
    }
    list.iter()
        .map(|r| {
            let kind = r.get("type").and_then(Value::as_str).filter(|t| !t.is_empty());
            let kind =
                kind.ok_or_else(|| ApiAuthError::invalid("every resource must be an object with a non-empty string \"type\""))?;
            let id = match r.get("id") {
                None | Some(Value::Null) => None,
                Some(Value::String(id)) => Some(id.as_str()),
                Some(_) => return Err(ApiAuthError::invalid("a resource \"id\" must be a string")),
            };
            Ok(Resource { kind, id })
        })
        .collect()
}

fn check(scopes: Option<Vec<Option<String>>>, action: Option<&str>, resources: Option<JsonB>) -> Result<bool> {
    let action = action.ok_or(ApiAuthError::NullArgument("action"))?;
    check_text("action", action, 64)?;
    let resources = resources.ok_or(ApiAuthError::NullArgument("resources"))?;
    let resources = parse_resources(&resources.0)?;
    // No scopes (NULL or empty) grant nothing; NULL elements are ignored.
    let scopes: Vec<String> = scopes.unwrap_or_default().into_iter().flatten().collect();
    if scopes.len() > MAX_SCOPES {
        return Err(ApiAuthError::invalid(format!("at most {MAX_SCOPES} scopes")));
    }
    Ok(scopes::authorize(&scopes, action, &resources))
}

/// True when any of `resources` is matched by any of `scopes` for `action`
/// (`action:type`, `action:type:id`, `action:all`, `admin`). Malformed scopes
/// match nothing; a malformed `resources` argument is an error. Runs no SQL,
/// so it pins no search_path (that would cost a GUC save and restore per call).
#[pg_extern(immutable, parallel_safe)]
fn authorize(scopes: Option<Vec<Option<String>>>, action: Option<&str>, resources: Option<JsonB>) -> bool {
    check(scopes, action, resources).or_report()
}
