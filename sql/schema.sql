-- api_auth tables (SPEC §2). Runs first in CREATE EXTENSION; functions follow.

CREATE TABLE api_auth.runtime_environment (
    id                    text PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 128),
    slug                  text NOT NULL CHECK (length(slug) BETWEEN 1 AND 128),
    type                  text NOT NULL CHECK (type IN ('DEVELOPMENT', 'STAGING', 'PRODUCTION', 'PREVIEW')),
    api_key               text UNIQUE,
    pk_api_key            text UNIQUE,
    parent_environment_id text REFERENCES api_auth.runtime_environment (id) ON DELETE CASCADE,
    branch_name           text CHECK (length(branch_name) BETWEEN 1 AND 256),
    project_id            text,
    organization_id       text,
    archived_at           timestamptz,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    -- An environment has its own keys; a preview branch has a parent and a
    -- branch name instead, and authenticates with its parent's key.
    CONSTRAINT runtime_environment_keys_or_branch CHECK (
        (parent_environment_id IS NULL AND branch_name IS NULL
            AND api_key IS NOT NULL AND pk_api_key IS NOT NULL)
        OR (parent_environment_id IS NOT NULL AND branch_name IS NOT NULL
            AND api_key IS NULL AND pk_api_key IS NULL AND type = 'PREVIEW')
    ),
    CONSTRAINT runtime_environment_branch_name_key UNIQUE (parent_environment_id, branch_name)
);

CREATE TABLE api_auth.revoked_api_key (
    id                     text PRIMARY KEY,
    api_key                text NOT NULL,
    runtime_environment_id text NOT NULL REFERENCES api_auth.runtime_environment (id) ON DELETE CASCADE,
    expires_at             timestamptz NOT NULL,
    created_at             timestamptz NOT NULL DEFAULT now()
);
-- The grace fallback probes by key (high-cardinality equality); token
-- validation lists one environment's keys in grace.
CREATE INDEX revoked_api_key_api_key_idx ON api_auth.revoked_api_key (api_key);
CREATE INDEX revoked_api_key_runtime_environment_id_idx ON api_auth.revoked_api_key (runtime_environment_id);

CREATE TABLE api_auth.session (
    id                     text PRIMARY KEY,
    runtime_environment_id text NOT NULL REFERENCES api_auth.runtime_environment (id) ON DELETE CASCADE,
    external_id            text CHECK (length(external_id) BETWEEN 1 AND 256 AND external_id NOT LIKE 'session\_%'),
    type                   text NOT NULL CHECK (length(type) BETWEEN 1 AND 64),
    task_identifier        text NOT NULL CHECK (length(task_identifier) BETWEEN 1 AND 128),
    trigger_config         jsonb NOT NULL DEFAULT '{}',
    tags                   text[] NOT NULL DEFAULT '{}' CHECK (cardinality(tags) <= 10),
    metadata               jsonb,
    closed_at              timestamptz,
    expires_at             timestamptz,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT session_external_id_key UNIQUE (runtime_environment_id, external_id)
);

-- The rows returned by the two hot-path functions. Named types rather than
-- RETURNS TABLE: PostgreSQL takes a named type's row descriptor from its type
-- cache, but rebuilds a RETURNS TABLE one from pg_proc at every call.
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
    revoked_api_key_id text,
    grace_expires_at   timestamptz
);

-- pg_dump must keep keys and grace rows: a restore must never revoke every key.
SELECT pg_catalog.pg_extension_config_dump('api_auth.runtime_environment', '');
SELECT pg_catalog.pg_extension_config_dump('api_auth.revoked_api_key', '');
SELECT pg_catalog.pg_extension_config_dump('api_auth.session', '');

COMMENT ON TABLE api_auth.runtime_environment IS
    'One row per environment. api_key/pk_api_key are the current secret and publishable keys (NULL for a preview branch, which authenticates with its PREVIEW parent''s key). Archived environments never authenticate.';
COMMENT ON TABLE api_auth.revoked_api_key IS
    'One row per rotation: the old secret key, which keeps authenticating its environment until expires_at (the end of its grace window).';
COMMENT ON TABLE api_auth.session IS
    'Sessions created through create_session, unique per environment and external_id. Recording a session triggers no run.';
COMMENT ON COLUMN api_auth.revoked_api_key.expires_at IS
    'End of the grace window. Move it with api_auth.set_revoked_expiry().';
