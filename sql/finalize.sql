-- Runs last in CREATE EXTENSION: views, comments on functions, privileges.

CREATE VIEW api_auth.grace_windows AS
SELECT r.id                           AS revoked_api_key_id,
       r.runtime_environment_id       AS environment_id,
       e.slug                         AS environment_slug,
       api_auth.mask_api_key(r.api_key) AS masked_key,
       r.created_at,
       r.expires_at,
       date_trunc('second', r.expires_at - now()) AS time_left
FROM api_auth.revoked_api_key r
JOIN api_auth.runtime_environment e ON e.id = r.runtime_environment_id
WHERE r.expires_at > now()
ORDER BY r.expires_at;

COMMENT ON VIEW api_auth.grace_windows IS
    'Old keys still in their grace window, soonest to expire first. Keys are masked.';

COMMENT ON TYPE api_auth.environment_match IS
    'A row of find_environment_by_api_key: the environment (the branch, for a preview branch), matched_by current | grace, and for a grace hit the revoked_api_key row and the end of its window. api_key is the canonical current key; NULL on a grace hit unless the caller is an admin.';
COMMENT ON TYPE api_auth.token_validation IS
    'The row of validate_public_jwt: ok with environment_id, environment_type, claims and matched_by (current | grace; for grace, revoked_api_key_id and grace_expires_at, when the verifying key stops working); or not ok with an error code.';

COMMENT ON FUNCTION api_auth.create_environment(text, text, text, text, text, text) IS
    'create_environment(slug, environment_type, project_id => NULL, organization_id => NULL, parent_environment_id => NULL, branch_name => NULL): a new environment with fresh tr_/pk_ keys, or a preview branch of a PREVIEW parent. Returns the row, keys included.';
COMMENT ON FUNCTION api_auth.find_environment_by_api_key(text, text) IS
    'find_environment_by_api_key(api_key, branch_name => NULL): the environment a secret key authenticates, current key first, then keys in grace. matched_by says which (current | grace). Zero rows when it authenticates nothing.';
COMMENT ON FUNCTION api_auth.rotate_api_key(text, interval) IS
    'rotate_api_key(environment_id, grace => api_auth.rotation_grace_period): new secret and publishable keys; the old secret key keeps working until now() + grace. Concurrent rotations serialise; no key is lost.';
COMMENT ON FUNCTION api_auth.set_revoked_expiry(text, timestamptz) IS
    'set_revoked_expiry(revoked_api_key_id, expires_at): move the end of a grace window; now() ends it. Unknown id: SQLSTATE P0002.';
COMMENT ON FUNCTION api_auth.purge_expired_revoked_keys(interval) IS
    'purge_expired_revoked_keys(older_than => 7 days): delete revoked keys whose grace ended more than older_than ago; returns how many.';
COMMENT ON FUNCTION api_auth.mint_public_jwt(text, jsonb, text, text) IS
    'mint_public_jwt(api_key, claims => {}, expiration => 1h, branch_name => NULL): an HS256 public access token for the environment the key authenticates (current or grace), signed with its canonical current key; minted with a key in grace, it expires no later than that key''s window. claims.scopes must be scopes of the grammar (22023 otherwise). NULL if the key authenticates nothing.';
COMMENT ON FUNCTION api_auth.validate_public_jwt(text) IS
    'validate_public_jwt(token): one row; ok with environment, claims and the verifying key (matched_by current | grace), or an error code: malformed, invalid_algorithm, missing_subject, environment_not_found, invalid_signature, expired, claim_invalid.';
COMMENT ON FUNCTION api_auth.authorize(text[], text, jsonb) IS
    'authorize(scopes, action, resources): true when any resource {type, id?} is matched by any scope (action:type, action:type:id, action:all, admin).';
COMMENT ON FUNCTION api_auth.mask_api_key(text) IS
    'mask_api_key(key): tr_prod_ab…yz, safe to display or log.';
COMMENT ON FUNCTION api_auth.create_session(text, text, text, jsonb, text, text[], jsonb, timestamptz) IS
    'Admin only. create_session(environment_id, type, task_identifier, trigger_config, external_id, tags, metadata, expires_at): create or (same external_id, same task and type) return a session, with a session-scoped public token. Triggers no run. Clients use create_session_as.';
COMMENT ON FUNCTION api_auth.get_session(text, text) IS
    'Admin only. get_session(environment_id, session): a session by id or external_id; zero rows if none. Clients use get_session_as.';
COMMENT ON FUNCTION api_auth.create_session_as(text, text, text, jsonb, text, text[], jsonb, timestamptz, text) IS
    'create_session_as(credential, type, task_identifier, trigger_config, external_id, tags, metadata, expires_at, branch_name): create_session in the environment the credential (secret key, or public token with write:tasks:<task> or write:sessions) authenticates. 28000 unknown credential, 42501 scope denied, 55000 external_id taken by another task or type, or closed.';
COMMENT ON FUNCTION api_auth.get_session_as(text, text, text) IS
    'get_session_as(credential, session, branch_name): a session of the environment the credential authenticates, by id or external_id; zero rows if none. A token needs read:sessions:<id or external id>, read:tasks:<the session''s task> or read:sessions (42501).';

-- Keys are readable only through the functions above.
REVOKE ALL ON ALL TABLES IN SCHEMA api_auth FROM PUBLIC;
