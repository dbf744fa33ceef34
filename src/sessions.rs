//! Sessions (SPEC §3, "Create a session"): idempotent per environment and
//! `external_id`, returned with a session-scoped public access token.
//!
//! There is no task runner here: creating a session records it and nothing
//! else; no run is triggered.
//!
//! Two doors, one room: `create_session_as` / `get_session_as` take the end
//! caller's credential and are what clients (and the shim) call; the
//! `create_session` / `get_session` taking a bare environment id are for
//! admins ([`crate::caller`] says why). Both reach [`create`] and [`get`].
//!
//! A session belongs to its task: a repeat of an `externalId` returns the
//! stored session only if it names the same task and type (else 55000), and
//! a token reads a session only with a scope for that session or *its* task.
//! Otherwise a token scoped to one task could take over another task's
//! session by guessing its `externalId`.

use api_auth_core::keys;
use api_auth_core::scopes::{self, Resource};
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{json, Map, Value};

use crate::caller::Caller;
use crate::errors::{check_text, required_text, ApiAuthError, OrReport, Result};
use crate::keys::MAX_NAME_LEN;
use crate::plan;
use crate::tokens::{self, SigningEnvironment};

/// Lifetime of the session-scoped token returned by `create_session`.
const SESSION_TOKEN_SECS: i64 = 3600;
const MAX_TAGS: usize = 10;
const MAX_TAG_LEN: usize = 128;
/// Bound on `trigger_config` and `metadata`, matching the route's 32 KiB body limit.
const MAX_JSON_LEN: usize = 32 * 1024;

macro_rules! session_columns {
    () => {
        "id, runtime_environment_id, external_id, type, task_identifier, trigger_config, tags, \
         metadata, closed_at, expires_at, created_at, updated_at"
    };
}

plan!(
    INSERT,
    true,
    [TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, JSONBOID, TEXTARRAYOID, JSONBOID, TIMESTAMPTZOID],
    concat!(
        "INSERT INTO api_auth.session (id, runtime_environment_id, external_id, type, task_identifier, \
                                       trigger_config, tags, metadata, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (runtime_environment_id, external_id) DO NOTHING \
         RETURNING ",
        session_columns!(),
        ", false"
    )
);

macro_rules! find_session {
    () => {
        concat!(
            "SELECT ",
            session_columns!(),
            ", closed_at IS NOT NULL OR expires_at <= pg_catalog.now() \
             FROM api_auth.session WHERE runtime_environment_id = $1 AND (id = $2 OR external_id = $2) \
             ORDER BY id = $2 DESC LIMIT 1"
        )
    };
}
plan!(FIND, false, [TEXTOID, TEXTOID], find_session!());
// After ON CONFLICT DO NOTHING the winner's row is committed but invisible to
// a read-only snapshot: a "mutating" plan takes a fresh one and sees it.
plan!(FIND_CONFLICTING, true, [TEXTOID, TEXTOID], find_session!());

plan!(IS_PAST, false, [TIMESTAMPTZOID], "SELECT $1 <= pg_catalog.now()");

pub type SessionRow = (
    String,
    String,
    Option<String>,
    String,
    String,
    JsonB,
    Vec<Option<String>>,
    Option<JsonB>,
    Option<TimestampWithTimeZone>,
    Option<TimestampWithTimeZone>,
    TimestampWithTimeZone,
    TimestampWithTimeZone,
    bool,
    Option<String>,
);

/// Read a session row (the `session_columns!` plus one boolean) into a tuple.
fn session_from(row: &pgrx::spi::SpiHeapTupleData<'_>, is_cached: bool) -> Result<(SessionRow, bool)> {
    let missing = || ApiAuthError::Internal("session row has NULL columns".into());
    let flag: bool = row.get(13)?.unwrap_or(false);
    Ok((
        (
            row.get(1)?.ok_or_else(missing)?,
            row.get(2)?.ok_or_else(missing)?,
            row.get(3)?,
            row.get(4)?.ok_or_else(missing)?,
            row.get(5)?.ok_or_else(missing)?,
            row.get(6)?.ok_or_else(missing)?,
            row.get(7)?.unwrap_or_default(),
            row.get(8)?,
            row.get(9)?,
            row.get(10)?,
            row.get(11)?.ok_or_else(missing)?,
            row.get(12)?.ok_or_else(missing)?,
            is_cached,
            None,
        ),
        flag,
    ))
}

fn json_object(name: &str, v: Option<JsonB>, required: bool) -> Result<Option<JsonB>> {
    match v {
        None if required => Ok(Some(JsonB(Value::Object(Map::new())))),
        None => Ok(None),
        Some(JsonB(Value::Object(m))) => {
            if serde_json::to_vec(&m).map_or(0, |b| b.len()) > MAX_JSON_LEN {
                return Err(ApiAuthError::invalid(format!("{name} must be at most {MAX_JSON_LEN} bytes of JSON")));
            }
            Ok(Some(JsonB(Value::Object(m))))
        }
        Some(_) => Err(ApiAuthError::invalid(format!("{name} must be a JSON object"))),
    }
}

/// The environment an admin names: it must be able to sign tokens.
fn named_environment(environment_id: Option<&str>) -> Result<SigningEnvironment> {
    let environment_id = required_text("environment_id", environment_id, MAX_NAME_LEN)?;
    tokens::signing_environment(environment_id)?
        .ok_or_else(|| ApiAuthError::NotFound(format!("environment \"{environment_id}\" not found")))
}

#[allow(clippy::too_many_arguments)]
fn create(
    caller: Result<Caller>,
    kind: Option<&str>,
    task_identifier: Option<&str>,
    trigger_config: Option<JsonB>,
    external_id: Option<&str>,
    tags: Option<Vec<Option<String>>>,
    metadata: Option<JsonB>,
    expires_at: Option<TimestampWithTimeZone>,
) -> Result<SessionRow> {
    let caller = caller?;
    let kind = required_text("type", kind, 64)?;
    let task_identifier = required_text("task_identifier", task_identifier, 128)?;
    let trigger_config = json_object("trigger_config", trigger_config, true)?;
    let metadata = json_object("metadata", metadata, false)?;
    if let Some(ext) = external_id {
        // It becomes part of the session token's scopes: it must be an id of the scope grammar.
        if !scopes::is_valid_id(ext) {
            return Err(ApiAuthError::invalid(format!(
                "external_id must be {} (it is embedded in the session token's scopes)",
                scopes::ID_RULE
            )));
        }
        if ext.starts_with("session_") {
            return Err(ApiAuthError::invalid("external_id must not start with \"session_\""));
        }
    }
    let tags = tags.unwrap_or_default();
    if tags.len() > MAX_TAGS {
        return Err(ApiAuthError::invalid(format!("at most {MAX_TAGS} tags")));
    }
    for tag in &tags {
        check_text("a tag", tag.as_deref().ok_or(ApiAuthError::NullArgument("a tag"))?, MAX_TAG_LEN)?;
    }
    if expires_at.is_some_and(|t| t.is_infinity() || t.is_neg_infinity()) {
        return Err(ApiAuthError::invalid("expires_at must be a finite time"));
    }
    caller.require("write", &[Resource { kind: "tasks", id: Some(task_identifier) }, Resource { kind: "sessions", id: None }])?;

    Spi::connect(|client| {
        if let Some(t) = expires_at {
            if IS_PAST.run(client, &[t.into()])?.first().get_one::<bool>()? == Some(true) {
                return Err(ApiAuthError::invalid("expires_at must lie in the future"));
            }
        }
        let env = &caller.environment;
        let environment_id = env.id.as_str();
        let id = keys::generate_id("session")?;
        let inserted = INSERT.run(
            client,
            &[
                id.as_str().into(),
                environment_id.into(),
                external_id.into(),
                kind.into(),
                task_identifier.into(),
                trigger_config.into(),
                tags.into(),
                metadata.into(),
                expires_at.into(),
            ],
        )?;
        let mut session = match inserted.into_iter().next() {
            Some(row) => session_from(&row, false)?.0,
            None => {
                // ON CONFLICT: this environment already has a session with that external_id.
                let ext = external_id.unwrap_or_default();
                let row = FIND_CONFLICTING
                    .run(client, &[environment_id.into(), ext.into()])?
                    .into_iter()
                    .next()
                    .ok_or_else(|| ApiAuthError::Internal("conflicting session vanished".into()))?;
                let (session, closed) = session_from(&row, true)?;
                if session.3 != kind || session.4 != task_identifier {
                    return Err(ApiAuthError::WrongState(format!(
                        "session \"{ext}\" already exists for another task or type: a repeat must name the same taskIdentifier and type"
                    )));
                }
                if closed {
                    return Err(ApiAuthError::WrongState(format!("session \"{ext}\" is closed or expired")));
                }
                session
            }
        };
        let key = session.2.clone().unwrap_or_else(|| session.0.clone());
        let claims = json!({"scopes": [format!("read:sessions:{key}"), format!("write:sessions:{key}")]});
        let Value::Object(claims) = claims else { unreachable!("json! object") };
        let exp = tokens::cap_to_grace(tokens::now_epoch() + SESSION_TOKEN_SECS, caller.grace_expires_at);
        session.13 = Some(tokens::sign(&env.current_key, &env.id, claims, exp)?);
        Ok(session)
    })
}

/// Admin door: create a session in the environment named by id, or return
/// the existing one for the same `external_id` (`is_cached` true). Returns a
/// session-scoped public access token (`read:sessions:<key>`,
/// `write:sessions:<key>`; key = external_id or id). Records the session
/// only: no run is triggered.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
fn create_session(
    environment_id: Option<&str>,
    session_type: Option<&str>,
    task_identifier: Option<&str>,
    trigger_config: default!(Option<JsonB>, "'{}'"),
    external_id: default!(Option<&str>, "NULL"),
    tags: default!(Option<Vec<Option<String>>>, "'{}'"),
    metadata: default!(Option<JsonB>, "NULL"),
    expires_at: default!(Option<TimestampWithTimeZone>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(id, String),
        name!(environment_id, String),
        name!(external_id, Option<String>),
        name!(type, String),
        name!(task_identifier, String),
        name!(trigger_config, JsonB),
        name!(tags, Vec<Option<String>>),
        name!(metadata, Option<JsonB>),
        name!(closed_at, Option<TimestampWithTimeZone>),
        name!(expires_at, Option<TimestampWithTimeZone>),
        name!(created_at, TimestampWithTimeZone),
        name!(updated_at, TimestampWithTimeZone),
        name!(is_cached, bool),
        name!(public_access_token, Option<String>),
    ),
> {
    let caller =
        named_environment(environment_id).map(|environment| Caller { environment, grace_expires_at: None, scopes: None });
    let row = create(caller, session_type, task_identifier, trigger_config, external_id, tags, metadata, expires_at);
    TableIterator::once(row.or_report())
}

/// Client door: like `create_session`, in the environment that `credential`
/// (a secret key, or a public token allowed `write:tasks:<task>` or
/// `write:sessions`) authenticates. 28000 when it authenticates nothing,
/// 42501 when the token's scopes do not allow it, 55000 when `external_id`
/// names a session of another task or type. Caller authenticated by a key
/// in grace: the session token expires no later than that key's window.
#[pg_extern(security_definer)]
#[search_path(pg_catalog, pg_temp)]
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
fn create_session_as(
    credential: Option<&str>,
    session_type: Option<&str>,
    task_identifier: Option<&str>,
    trigger_config: default!(Option<JsonB>, "'{}'"),
    external_id: default!(Option<&str>, "NULL"),
    tags: default!(Option<Vec<Option<String>>>, "'{}'"),
    metadata: default!(Option<JsonB>, "NULL"),
    expires_at: default!(Option<TimestampWithTimeZone>, "NULL"),
    branch_name: default!(Option<&str>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(id, String),
        name!(environment_id, String),
        name!(external_id, Option<String>),
        name!(type, String),
        name!(task_identifier, String),
        name!(trigger_config, JsonB),
        name!(tags, Vec<Option<String>>),
        name!(metadata, Option<JsonB>),
        name!(closed_at, Option<TimestampWithTimeZone>),
        name!(expires_at, Option<TimestampWithTimeZone>),
        name!(created_at, TimestampWithTimeZone),
        name!(updated_at, TimestampWithTimeZone),
        name!(is_cached, bool),
        name!(public_access_token, Option<String>),
    ),
> {
    let caller = Caller::authenticate(credential, branch_name);
    let row = create(caller, session_type, task_identifier, trigger_config, external_id, tags, metadata, expires_at);
    TableIterator::once(row.or_report())
}

/// A session of `environment_id`; a client `reader` must be allowed to read it.
fn get(environment_id: &str, reader: Option<&Caller>, session: Option<&str>) -> Result<Option<SessionRow>> {
    let session = required_text("session", session, 256)?;
    let found = Spi::connect(|client| {
        let rows = FIND.run(client, &[environment_id.into(), session.into()])?;
        rows.into_iter().next().map(|row| session_from(&row, false).map(|s| s.0)).transpose()
    })?;
    if let (Some(s), Some(caller)) = (&found, reader) {
        // Read by its id, its external id, or its own task.
        let mut resources = vec![Resource { kind: "sessions", id: Some(&s.0) }];
        if let Some(ext) = &s.2 {
            resources.push(Resource { kind: "sessions", id: Some(ext) });
        }
        resources.push(Resource { kind: "tasks", id: Some(&s.4) });
        caller.require("read", &resources)?;
    }
    Ok(found)
}

/// Client door: one session of the environment `credential` authenticates, by
/// id or external_id; zero rows if none. A token needs `read:sessions:<id or
/// external id>`, `read:tasks:<the session's task>` or `read:sessions` (42501).
#[pg_extern(stable, security_definer)]
#[search_path(pg_catalog, pg_temp)]
#[allow(clippy::type_complexity)]
fn get_session_as(
    credential: Option<&str>,
    session: Option<&str>,
    branch_name: default!(Option<&str>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(id, String),
        name!(environment_id, String),
        name!(external_id, Option<String>),
        name!(type, String),
        name!(task_identifier, String),
        name!(trigger_config, JsonB),
        name!(tags, Vec<Option<String>>),
        name!(metadata, Option<JsonB>),
        name!(closed_at, Option<TimestampWithTimeZone>),
        name!(expires_at, Option<TimestampWithTimeZone>),
        name!(created_at, TimestampWithTimeZone),
        name!(updated_at, TimestampWithTimeZone),
        name!(is_cached, bool),
        name!(public_access_token, Option<String>),
    ),
> {
    let found =
        Caller::authenticate(credential, branch_name).and_then(|caller| get(&caller.environment.id, Some(&caller), session));
    TableIterator::new(found.or_report())
}

/// Admin door: one session of an environment, by id or external_id; zero rows if none.
#[pg_extern(stable, security_definer)]
#[search_path(pg_catalog, pg_temp)]
#[allow(clippy::type_complexity)]
fn get_session(
    environment_id: Option<&str>,
    session: Option<&str>,
) -> TableIterator<
    'static,
    (
        name!(id, String),
        name!(environment_id, String),
        name!(external_id, Option<String>),
        name!(type, String),
        name!(task_identifier, String),
        name!(trigger_config, JsonB),
        name!(tags, Vec<Option<String>>),
        name!(metadata, Option<JsonB>),
        name!(closed_at, Option<TimestampWithTimeZone>),
        name!(expires_at, Option<TimestampWithTimeZone>),
        name!(created_at, TimestampWithTimeZone),
        name!(updated_at, TimestampWithTimeZone),
        name!(is_cached, bool),
        name!(public_access_token, Option<String>),
    ),
> {
    let found = required_text("environment_id", environment_id, MAX_NAME_LEN).and_then(|id| get(id, None, session));
    TableIterator::new(found.or_report())
}
