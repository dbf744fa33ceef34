-- Least privilege and the audit trail (since 0.2.0). Runs after every
-- function exists. Changes after a release go into the next upgrade script
-- too (sql/api_auth--<old>--<new>.sql), which tests/security.rs compares
-- with a fresh install.

-- 0.1.0 indexed revoked_api_key by environment only; token validation wants
-- only the rows still in grace (a no-op rebuild on a fresh install).
DROP INDEX IF EXISTS api_auth.revoked_api_key_runtime_environment_id_idx;
CREATE INDEX revoked_api_key_runtime_environment_id_idx
    ON api_auth.revoked_api_key (runtime_environment_id, expires_at);

-- Two roles. Roles are cluster-wide and survive DROP EXTENSION; several
-- databases with the extension share them. A role of that name that already
-- exists is adopted as it is, with its attributes and members: that is said
-- out loud (a WARNING for attributes this extension never gives, and for
-- members, who gain the role's access in this database too).
DO $roles$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT a.rolname,
               pg_catalog.array_to_string(pg_catalog.array_remove(ARRAY[
                   CASE WHEN a.rolcanlogin THEN 'LOGIN' END, CASE WHEN a.rolsuper THEN 'SUPERUSER' END,
                   CASE WHEN a.rolcreaterole THEN 'CREATEROLE' END, CASE WHEN a.rolcreatedb THEN 'CREATEDB' END,
                   CASE WHEN a.rolreplication THEN 'REPLICATION' END, CASE WHEN a.rolbypassrls THEN 'BYPASSRLS' END
               ], NULL), ', ') AS attributes,
               (SELECT pg_catalog.string_agg(m.member::regrole::text, ', ' ORDER BY m.member::regrole::text)
                  FROM pg_catalog.pg_auth_members m
                  WHERE m.roleid = a.oid AND m.member::regrole::text <> 'api_auth_admin') AS members
        FROM pg_catalog.pg_roles a WHERE a.rolname IN ('api_auth_client', 'api_auth_admin')
    LOOP
        IF r.attributes <> '' THEN
            RAISE WARNING 'api_auth: adopting the existing role % as it is; it has %, which api_auth never grants', r.rolname, r.attributes
                USING HINT = 'These roles are meant to be NOLOGIN groups: ALTER ROLE ' || r.rolname || ' NOLOGIN NOSUPERUSER ...; grant them to login roles instead.';
        END IF;
        IF r.members IS NOT NULL THEN
            RAISE WARNING 'api_auth: the existing role % has members (%), who get its access in this database too', r.rolname, r.members;
        END IF;
    END LOOP;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'api_auth_client') THEN
        CREATE ROLE api_auth_client NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'api_auth_admin') THEN
        CREATE ROLE api_auth_admin NOLOGIN;
    END IF;
END
$roles$;
GRANT api_auth_client TO api_auth_admin;

-- Every change to environments, keys and grace windows is recorded, whoever
-- makes it and however (the functions, or a DBA editing the tables). Never
-- the key itself.
CREATE TABLE api_auth.audit_event (
    id                     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at            timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    action                 text NOT NULL CHECK (action IN (
                               'environment_created', 'environment_updated', 'environment_deleted',
                               'key_rotated', 'expiry_changed',
                               'revoked_key_deleted', 'revoked_keys_purged', 'table_truncated')),
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
-- The id counter goes into dumps too: after a restore, the next event must
-- not take an id the restored trail already holds.
SELECT pg_catalog.pg_extension_config_dump('api_auth.audit_event_id_seq', '');
COMMENT ON TABLE api_auth.audit_event IS
    'Append-only trail of environment creations, changes (keys, archiving; never the key itself) and deletions, rotations, grace-window changes and purges, and truncations of either table: who (database_user; actor = the shim''s admin identity, from the api_auth.audit_actor setting), when, which environment and grace row, old and new expires_at. Rows carried over by a restore are not new events and write none.';

CREATE FUNCTION api_auth.audit_trigger() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    actor text := nullif(pg_catalog.current_setting('api_auth.audit_actor', true), '');
    changed text[];
BEGIN
    -- A row inserted with a creation time from before this transaction began
    -- was not created now: it is carried over (pg_restore, psql -f of a dump,
    -- a copy between databases), and its creation is in the trail it came with.
    -- Recording it again would invent events (and, before the id counter is
    -- restored, collide with the restored ids).
    IF TG_OP = 'INSERT' THEN
        IF NEW.created_at < pg_catalog.now() THEN
            RETURN NULL;
        END IF;
    END IF;
    IF TG_TABLE_NAME = 'runtime_environment' THEN
        IF TG_OP = 'INSERT' THEN
            INSERT INTO api_auth.audit_event (action, actor, runtime_environment_id, detail)
            VALUES ('environment_created', actor, NEW.id,
                    pg_catalog.jsonb_build_object('slug', NEW.slug, 'type', NEW.type,
                                                  'parent_environment_id', NEW.parent_environment_id,
                                                  'branch_name', NEW.branch_name));
        ELSIF TG_OP = 'UPDATE' THEN
            -- Which columns changed (names only: never a key's value).
            SELECT pg_catalog.array_agg(n.key ORDER BY n.key) INTO changed
            FROM pg_catalog.jsonb_each(pg_catalog.to_jsonb(NEW)) n
            WHERE n.key <> 'updated_at'
              AND n.value IS DISTINCT FROM pg_catalog.to_jsonb(OLD) OPERATOR(pg_catalog.->) n.key;
            IF changed IS NULL THEN
                RETURN NULL;
            END IF;
            -- rotate_api_key's new keys are recorded once, as key_rotated (by
            -- the grace row it writes in the same statement).
            IF changed OPERATOR(pg_catalog.<@) ARRAY['api_key', 'pk_api_key'] AND EXISTS (
                SELECT FROM api_auth.revoked_api_key r
                WHERE r.runtime_environment_id OPERATOR(pg_catalog.=) NEW.id
                  AND r.api_key OPERATOR(pg_catalog.=) OLD.api_key
                  AND r.created_at OPERATOR(pg_catalog.=) pg_catalog.now()) THEN
                RETURN NULL;
            END IF;
            INSERT INTO api_auth.audit_event (action, actor, runtime_environment_id, detail)
            VALUES ('environment_updated', actor, NEW.id,
                    pg_catalog.jsonb_build_object('changed', changed, 'archived_at', NEW.archived_at));
        ELSE
            INSERT INTO api_auth.audit_event (action, actor, runtime_environment_id, detail)
            VALUES ('environment_deleted', actor, OLD.id,
                    pg_catalog.jsonb_build_object('slug', OLD.slug, 'type', OLD.type,
                                                  'parent_environment_id', OLD.parent_environment_id,
                                                  'branch_name', OLD.branch_name));
        END IF;
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
    'Writes api_auth.audit_event rows for changes to runtime_environment (creation, update: changed column names only, deletion) and revoked_api_key (rotation, expiry change, deletion). Rows inserted with a created_at before the current transaction (a restore) are carried over, not new: no event.';

CREATE TRIGGER audit_runtime_environment AFTER INSERT OR UPDATE OR DELETE ON api_auth.runtime_environment
    FOR EACH ROW EXECUTE FUNCTION api_auth.audit_trigger();
CREATE TRIGGER audit_revoked_api_key AFTER INSERT OR DELETE OR UPDATE OF expires_at ON api_auth.revoked_api_key
    FOR EACH ROW EXECUTE FUNCTION api_auth.audit_trigger();

-- TRUNCATE fires no row trigger: one event per table truncated (a CASCADE
-- fires it for each table it empties).
CREATE FUNCTION api_auth.audit_truncate() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    INSERT INTO api_auth.audit_event (action, actor, detail)
    VALUES ('table_truncated', nullif(pg_catalog.current_setting('api_auth.audit_actor', true), ''),
            pg_catalog.jsonb_build_object('table', TG_TABLE_NAME));
    RETURN NULL;
END
$fn$;
COMMENT ON FUNCTION api_auth.audit_truncate() IS
    'Writes an api_auth.audit_event row (table_truncated, detail.table) for a TRUNCATE of runtime_environment or revoked_api_key, which fires no row trigger.';

CREATE TRIGGER audit_truncate_runtime_environment AFTER TRUNCATE ON api_auth.runtime_environment
    FOR EACH STATEMENT EXECUTE FUNCTION api_auth.audit_truncate();
CREATE TRIGGER audit_truncate_revoked_api_key AFTER TRUNCATE ON api_auth.revoked_api_key
    FOR EACH STATEMENT EXECUTE FUNCTION api_auth.audit_truncate();

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
    api_auth.create_session_as(text, text, text, jsonb, text, text[], jsonb, timestamptz, text),
    api_auth.get_session_as(text, text, text),
    api_auth.mask_api_key(text)
TO api_auth_client;
-- A bare environment id is an admin's to name (see src/caller.rs).
GRANT EXECUTE ON FUNCTION
    api_auth.create_session(text, text, text, jsonb, text, text[], jsonb, timestamptz),
    api_auth.get_session(text, text),
    api_auth.create_environment(text, text, text, text, text, text),
    api_auth.rotate_api_key(text, interval),
    api_auth.set_revoked_expiry(text, timestamptz),
    api_auth.purge_expired_revoked_keys(interval)
TO api_auth_admin;
GRANT SELECT ON api_auth.grace_windows, api_auth.recent_audit_events TO api_auth_admin;
