//! Who is calling a client-facing function: the credential decides, never a
//! caller-chosen environment id.
//!
//! `api_auth_client` logins are shared by every app and gateway; if a client
//! function took a bare `environment_id`, any of them could act in (and get
//! tokens signed for) any environment. So client-facing entry points take the
//! credential the end caller presented (a secret key, or a public access
//! token) and resolve the environment here, through the same lookup and
//! validation as every other authentication path. Functions that take a bare
//! environment id are for `api_auth_admin` only.

use api_auth_core::keys::{self, CredentialKind};
use api_auth_core::scopes::{self, Resource};
use pgrx::prelude::*;
use serde_json::Value;

use crate::errors::{ApiAuthError, Result};
use crate::lookup::{self, MatchedBy};
use crate::tokens::{self, SigningEnvironment};

/// An authenticated caller.
pub struct Caller {
    /// The environment, with the key material that signs for it.
    pub environment: SigningEnvironment,
    /// End of the grace window of the key that authenticated the caller
    /// (directly, or by verifying its token); `None` for a current key.
    /// Whatever is minted for this caller expires no later.
    pub grace_expires_at: Option<TimestampWithTimeZone>,
    /// A token's scopes; `None` for a secret key, which is not scope-checked (SPEC §3).
    pub scopes: Option<Vec<String>>,
}

impl Caller {
    /// Authenticate `credential` (honouring `branch_name` for preview
    /// branches, like `find_environment_by_api_key`). Publishable keys and
    /// anything else authenticate nothing.
    pub fn authenticate(credential: Option<&str>, branch_name: Option<&str>) -> Result<Caller> {
        let credential = credential.ok_or(ApiAuthError::NullArgument("credential"))?;
        match keys::classify(credential) {
            CredentialKind::SecretKey => {
                let env = lookup::find(credential, branch_name)?
                    .ok_or_else(|| ApiAuthError::Unauthenticated("Invalid API key".into()))?;
                let grace_expires_at = match env.matched_by {
                    MatchedBy::Grace => env.grace_expires_at,
                    MatchedBy::Current => None,
                };
                let signer_id = env.parent_environment_id.clone().unwrap_or_else(|| env.id.clone());
                Ok(Caller {
                    environment: SigningEnvironment { id: env.id, kind: env.kind, signer_id, current_key: env.api_key },
                    grace_expires_at,
                    scopes: None,
                })
            }
            CredentialKind::PublicToken => match tokens::validate(credential)? {
                Ok(v) => {
                    let claims: Value = serde_json::from_str(&v.claims_json).unwrap_or(Value::Null);
                    let scopes = match claims.get("scopes") {
                        Some(Value::Array(list)) => list.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect(),
                        _ => Vec::new(),
                    };
                    Ok(Caller { environment: v.environment, grace_expires_at: v.verified.grace_expires_at, scopes: Some(scopes) })
                }
                Err(e) => Err(ApiAuthError::Unauthenticated(format!("Public access token refused: {}", e.code()))),
            },
            CredentialKind::PublishableKey | CredentialKind::Unknown => {
                Err(ApiAuthError::Unauthenticated("credential must be a secret key or a public access token".into()))
            }
        }
    }

    /// May this caller do `action` on any of `resources`? Secret keys may do
    /// anything in their environment; a token needs a scope that grants it.
    pub fn require(&self, action: &str, resources: &[Resource<'_>]) -> Result<()> {
        let Some(scopes) = &self.scopes else { return Ok(()) };
        if scopes::authorize(scopes, action, resources) {
            return Ok(());
        }
        let wanted: Vec<String> = resources
            .iter()
            .map(|r| match r.id {
                Some(id) => format!("'{action}:{}:{id}'", r.kind),
                None => format!("'{action}:{}'", r.kind),
            })
            .collect();
        let has = if scopes.is_empty() {
            "none".to_owned()
        } else {
            scopes.iter().map(|s| format!("'{}'", s.escape_default())).collect::<Vec<_>>().join(", ")
        };
        Err(ApiAuthError::ScopeDenied(format!(
            "Public access token is missing required permissions. One of {} is required; the token has {has}",
            wanted.join(" or ")
        )))
    }
}
