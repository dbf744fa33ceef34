-- 0.2.0: least privilege and the audit trail. Runs after every function
-- exists. sql/api_auth--0.1.0--0.2.0.sql is a link to this file (the upgrade
-- runs the same statements); freeze a copy there before changing this file.

-- 0.1.0 indexed revoked_api_key by environment only; token validation wants
-- only the rows still in grace (a no-op rebuild on a fresh install).
DROP INDEX IF EXISTS api_auth.revoked_api_key_runtime_environment_id_idx;
CREATE INDEX revoked_api_key_runtime_environment_id_idx
    ON api_auth.revoked_api_key (runtime_environment_id, expires_at);

-- Two roles. Roles are cluster-wide and survive DROP EXTENSION; several
-- databases with the extension share them.
DO $roles$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'api_auth_client') THEN
        CREATE ROLE api_auth_client NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'api_auth_admin') THEN
        CREATE ROLE api_auth_admin NOLOGIN;
    END IF;
END
$roles$;
GRANT api_auth_client TO api_auth_admin;

-- Every change to keys and grace windows is recorded, whoever makes it and
-- however (the functions, or a DBA editing the tables). Never the key itself.
CREATE TABLE api_auth.audit_event (
    id                     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at            timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    action                 text NOT NULL CHECK (action IN (
                               'environment_created', 'key_rotated', 'expiry_changed',
                               'revoked_key_deleted', 'revoked_keys_purged')),
    database_user          text NOT NULL DEFAULT session_user,
    actor                  text,
    runtime_environment_id text,
    revoked_api_key_id     text,
    old_expires_at         timestamptz,
    new_expires_at         timestamptz,
    detail                 jsonb
);
CREATE INDEX audit_event_occurred_at_idx ON api_auth.audit_event (occurred_at);
CREATE INDEX audit_event_runtime_environment_id_idx ON api_auth.audit_event (runtime_environment_id);
SELECT pg_catalog.pg_extension_config_dump('api_auth.audit_event', '');
COMMENT ON TABLE api_auth.audit_event IS
    'Append-only trail of environment creations, rotations, grace-window changes and purges: who (database_user; actor = the shim''s admin identity, from the api_auth.audit_actor setting), when, which environment and grace row, old and new expires_at. Never a key.';

CREATE FUNCTION api_auth.audit_trigger() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    actor text := nullif(pg_catalog.current_setting('api_auth.audit_actor', true), '');
BEGIN
    IF TG_TABLE_NAME = 'runtime_environment' THEN
        INSERT INTO api_auth.audit_event (action, actor, runtime_environment_id, detail)
        VALUES ('environment_created', actor, NEW.id,
                pg_catalog.jsonb_build_object('slug', NEW.slug, 'type', NEW.type,
                                              'parent_environment_id', NEW.parent_environment_id,
                                              'branch_name', NEW.branch_name));
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        INSERT INTO api_auth.audit_event (action, actor, runtime_environment_id, revoked_api_key_id, new_expires_at)
        VALUES ('key_rotated', actor, NEW.runtime_environment_id, NEW.id, NEW.expires_at);
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO api_auth.audit_event (action, actor, runtime_environment_id, revoked_api_key_id,
                                          old_expires_at, new_expires_at)
        VALUES ('expiry_changed', actor, NEW.runtime_environment_id, NEW.id, OLD.expires_at, NEW.expires_at);
    ELSE
        INSERT INTO api_auth.audit_event (action, actor, runtime_environment_id, revoked_api_key_id, old_expires_at)
        VALUES ('revoked_key_deleted', actor, OLD.runtime_environment_id, OLD.id, OLD.expires_at);
    END IF;
    RETURN NULL;
END
$fn$;
COMMENT ON FUNCTION api_auth.audit_trigger() IS
    'Writes api_auth.audit_event rows for changes to runtime_environment (creation) and revoked_api_key (rotation, expiry change, deletion).';

CREATE TRIGGER audit_environment_created AFTER INSERT ON api_auth.runtime_environment
    FOR EACH ROW EXECUTE FUNCTION api_auth.audit_trigger();
CREATE TRIGGER audit_revoked_api_key AFTER INSERT OR DELETE OR UPDATE OF expires_at ON api_auth.revoked_api_key
    FOR EACH ROW EXECUTE FUNCTION api_auth.audit_trigger();

CREATE VIEW api_auth.recent_audit_events AS
SELECT occurred_at, action, database_user, actor, runtime_environment_id, revoked_api_key_id,
       old_expires_at, new_expires_at, detail
FROM api_auth.audit_event
ORDER BY id DESC
LIMIT 200;
COMMENT ON VIEW api_auth.recent_audit_events IS 'The 200 latest audit events, newest first.';

-- Privileges. Nobody but the owner touches the tables; the functions are the
-- interface, and each role gets only its share of them.
REVOKE ALL ON ALL TABLES IN SCHEMA api_auth FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA api_auth FROM PUBLIC;
GRANT USAGE ON SCHEMA api_auth TO api_auth_client, api_auth_admin;
GRANT EXECUTE ON FUNCTION
    api_auth.find_environment_by_api_key(text, text),
    api_auth.validate_public_jwt(text),
    api_auth.mint_public_jwt(text, jsonb, text, text),
    api_auth.authorize(text[], text, jsonb),
    api_auth.create_session(text, text, text, jsonb, text, text[], jsonb, timestamptz),
    api_auth.get_session(text, text),
    api_auth.mask_api_key(text)
TO api_auth_client;
GRANT EXECUTE ON FUNCTION
    api_auth.create_environment(text, text, text, text, text, text),
    api_auth.rotate_api_key(text, interval),
    api_auth.set_revoked_expiry(text, timestamptz),
    api_auth.purge_expired_revoked_keys(interval)
TO api_auth_admin;
GRANT SELECT ON api_auth.grace_windows, api_auth.recent_audit_events TO api_auth_admin;
