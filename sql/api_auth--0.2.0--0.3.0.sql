-- 0.3.0: the hot path costs what a plain indexed lookup costs (SPEC §3).
--
-- The library now probes the unique indexes directly; in SQL, two changes:
-- 1. find_environment_by_api_key and validate_public_jwt return named row
--    types instead of RETURNS TABLE (PostgreSQL rebuilt that row descriptor
--    from pg_proc at every call). Same columns, same order, same names:
--    `SELECT * FROM ...` and `SELECT f.id FROM ... f` read as before.
-- 2. find_environment_by_api_key, validate_public_jwt, mint_public_jwt and
--    authorize no longer pin search_path (a GUC save and restore per call):
--    they run no SQL any more, and index probes resolve no name through it.
-- A return type cannot be changed in place: those two functions are dropped
-- and created again, with their comments and privileges.

CREATE TYPE api_auth.environment_match AS (
    id                    text,
    slug                  text,
    type                  text,
    api_key               text,
    pk_api_key            text,
    parent_environment_id text,
    branch_name           text,
    project_id            text,
    organization_id       text,
    matched_by            text,
    revoked_api_key_id    text,
    grace_expires_at      timestamptz
);
CREATE TYPE api_auth.token_validation AS (
    ok                 boolean,
    error              text,
    environment_id     text,
    environment_type   text,
    claims             jsonb,
    matched_by         text,
    revoked_api_key_id text
);
COMMENT ON TYPE api_auth.environment_match IS
    'A row of find_environment_by_api_key: the environment (the branch, for a preview branch), matched_by current | grace, and for a grace hit the revoked_api_key row and the end of its window. api_key is the canonical current key; NULL on a grace hit unless the caller is an admin.';
COMMENT ON TYPE api_auth.token_validation IS
    'The row of validate_public_jwt: ok with environment_id, environment_type, claims and matched_by (current | grace, revoked_api_key_id for grace); or not ok with an error code.';

DROP FUNCTION api_auth.find_environment_by_api_key(text, text);
CREATE FUNCTION api_auth.find_environment_by_api_key(api_key text, branch_name text DEFAULT NULL)
RETURNS SETOF api_auth.environment_match
STABLE PARALLEL SAFE SECURITY DEFINER ROWS 1
LANGUAGE c AS 'MODULE_PATHNAME', 'find_environment_by_api_key_wrapper';

DROP FUNCTION api_auth.validate_public_jwt(text);
CREATE FUNCTION api_auth.validate_public_jwt(token text)
RETURNS SETOF api_auth.token_validation
STABLE SECURITY DEFINER ROWS 1
LANGUAGE c AS 'MODULE_PATHNAME', 'validate_public_jwt_wrapper';

ALTER FUNCTION api_auth.mint_public_jwt(text, jsonb, text, text) RESET search_path;
ALTER FUNCTION api_auth.authorize(text[], text, jsonb) RESET search_path;

COMMENT ON FUNCTION api_auth.find_environment_by_api_key(text, text) IS
    'find_environment_by_api_key(api_key, branch_name => NULL): the environment a secret key authenticates, current key first, then keys in grace. matched_by says which (current | grace). Zero rows when it authenticates nothing.';
COMMENT ON FUNCTION api_auth.validate_public_jwt(text) IS
    'validate_public_jwt(token): one row; ok with environment, claims and the verifying key (matched_by current | grace), or an error code: malformed, invalid_algorithm, missing_subject, environment_not_found, invalid_signature, expired, claim_invalid.';

REVOKE ALL ON FUNCTION
    api_auth.find_environment_by_api_key(text, text),
    api_auth.validate_public_jwt(text)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    api_auth.find_environment_by_api_key(text, text),
    api_auth.validate_public_jwt(text)
TO api_auth_client;
