-- 0.4.0: trust fixes (a restore keeps every key; caller-chosen text never
-- becomes authority). In SQL:
-- 1. Backups: the audit trail's id counter is dumped with it, and the audit
--    trigger takes rows inserted with a creation time before the current
--    transaction (a restore) as carried over: no invented event, no id clash.
-- 2. The audit trail also records direct UPDATEs (changed column names,
--    never a key) and DELETEs of runtime_environment.
-- 3. Sessions: client-facing create_session_as / get_session_as take the
--    caller's credential; create_session / get_session (bare environment id)
--    become admin-only.
-- 4. token_validation gains grace_expires_at (when the verifying key in
--    grace stops working).
-- 5. Pre-existing api_auth_client / api_auth_admin roles are reported when
--    adopted.
-- 6. Parallel pg_restore: grace rows and sessions that arrive before their
--    environment are held, then moved into place (sql/restore.sql).
-- 7. NOTIFY api_auth_changes on every change that can alter an answer, for
--    answer caches (sql/invalidation.sql).
-- The rest (scope grammar, grace cap on minting, interval checks, jsonb-safe
-- claims, superuser-only token policy settings) lives in the library.

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

ALTER TYPE api_auth.token_validation ADD ATTRIBUTE grace_expires_at timestamptz;
COMMENT ON TYPE api_auth.token_validation IS
    'The row of validate_public_jwt: ok with environment_id, environment_type, claims and matched_by (current | grace; for grace, revoked_api_key_id and grace_expires_at, when the verifying key stops working); or not ok with an error code.';

ALTER TABLE api_auth.audit_event DROP CONSTRAINT audit_event_action_check;
ALTER TABLE api_auth.audit_event ADD CONSTRAINT audit_event_action_check CHECK (action IN (
    'environment_created', 'environment_updated', 'environment_deleted',
    'key_rotated', 'expiry_changed',
    'revoked_key_deleted', 'revoked_keys_purged'));
SELECT pg_catalog.pg_extension_config_dump('api_auth.audit_event_id_seq', '');
COMMENT ON TABLE api_auth.audit_event IS
    'Append-only trail of environment creations, changes (keys, archiving; never the key itself) and deletions, rotations, grace-window changes and purges: who (database_user; actor = the shim''s admin identity, from the api_auth.audit_actor setting), when, which environment and grace row, old and new expires_at. Rows carried over by a restore are not new events and write none.';

CREATE TABLE api_auth.restore_pending (
    table_name             text NOT NULL CHECK (table_name IN ('revoked_api_key', 'session')),
    runtime_environment_id text NOT NULL,
    row_data               jsonb NOT NULL,
    held_at                timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp()
);
CREATE INDEX restore_pending_runtime_environment_id_idx ON api_auth.restore_pending (runtime_environment_id);
COMMENT ON TABLE api_auth.restore_pending IS
    'Grace rows and sessions of a restore whose environment had not arrived yet (pg_restore --jobs loads tables in any order); moved into place when it does. Must be empty once a restore has finished; rows left here authenticate nothing.';

CREATE FUNCTION api_auth.restore_hold_child() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    IF NEW.created_at >= pg_catalog.now() THEN
        RETURN NEW;
    END IF;
    PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('api_auth.restore'),
                                             pg_catalog.hashtext(NEW.runtime_environment_id));
    IF EXISTS (SELECT FROM api_auth.runtime_environment e
               WHERE e.id OPERATOR(pg_catalog.=) NEW.runtime_environment_id) THEN
        RETURN NEW;
    END IF;
    INSERT INTO api_auth.restore_pending (table_name, runtime_environment_id, row_data)
    VALUES (TG_TABLE_NAME, NEW.runtime_environment_id, pg_catalog.to_jsonb(NEW));
    RETURN NULL;
END
$fn$;
COMMENT ON FUNCTION api_auth.restore_hold_child() IS
    'Before a carried-over grace row or session is inserted: holds it in api_auth.restore_pending while its environment has not arrived (parallel pg_restore).';

CREATE FUNCTION api_auth.restore_release_children() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    IF NEW.created_at >= pg_catalog.now() THEN
        RETURN NULL;
    END IF;
    PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('api_auth.restore'),
                                             pg_catalog.hashtext(NEW.id));
    WITH released AS (
        DELETE FROM api_auth.restore_pending p
        WHERE p.runtime_environment_id OPERATOR(pg_catalog.=) NEW.id AND p.table_name OPERATOR(pg_catalog.=) 'revoked_api_key'
        RETURNING p.row_data
    )
    INSERT INTO api_auth.revoked_api_key
    SELECT (pg_catalog.jsonb_populate_record(NULL::api_auth.revoked_api_key, r.row_data)).* FROM released r;
    WITH released AS (
        DELETE FROM api_auth.restore_pending p
        WHERE p.runtime_environment_id OPERATOR(pg_catalog.=) NEW.id AND p.table_name OPERATOR(pg_catalog.=) 'session'
        RETURNING p.row_data
    )
    INSERT INTO api_auth.session
    SELECT (pg_catalog.jsonb_populate_record(NULL::api_auth.session, r.row_data)).* FROM released r;
    RETURN NULL;
END
$fn$;
COMMENT ON FUNCTION api_auth.restore_release_children() IS
    'After a carried-over environment is inserted: moves its held grace rows and sessions from api_auth.restore_pending into place.';

CREATE TRIGGER restore_hold_child BEFORE INSERT ON api_auth.revoked_api_key
    FOR EACH ROW EXECUTE FUNCTION api_auth.restore_hold_child();
CREATE TRIGGER restore_hold_child BEFORE INSERT ON api_auth.session
    FOR EACH ROW EXECUTE FUNCTION api_auth.restore_hold_child();
CREATE TRIGGER restore_release_children AFTER INSERT ON api_auth.runtime_environment
    FOR EACH ROW EXECUTE FUNCTION api_auth.restore_release_children();

REVOKE ALL ON api_auth.restore_pending FROM PUBLIC;
REVOKE ALL ON FUNCTION api_auth.restore_hold_child(), api_auth.restore_release_children() FROM PUBLIC;

CREATE FUNCTION api_auth.notify_change() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    changed text[];
BEGIN
    IF TG_TABLE_NAME = 'runtime_environment' THEN
        changed := ARRAY[CASE WHEN TG_OP <> 'DELETE' THEN NEW.id END, CASE WHEN TG_OP <> 'INSERT' THEN OLD.id END];
    ELSE
        changed := ARRAY[CASE WHEN TG_OP <> 'DELETE' THEN NEW.runtime_environment_id END,
                         CASE WHEN TG_OP <> 'INSERT' THEN OLD.runtime_environment_id END];
    END IF;
    -- A preview branch authenticates with its parent's keys: a change to the
    -- parent changes the branches' answers too.
    PERFORM pg_catalog.pg_notify('api_auth_changes', e.id)
    FROM (SELECT DISTINCT id FROM (
              SELECT pg_catalog.unnest(changed) AS id
              UNION ALL
              SELECT b.id FROM api_auth.runtime_environment b
              WHERE b.parent_environment_id OPERATOR(pg_catalog.=) ANY (changed)) ids
          WHERE id IS NOT NULL) e;
    RETURN NULL;
END
$fn$;
COMMENT ON FUNCTION api_auth.notify_change() IS
    'NOTIFY api_auth_changes, payload = an environment id, for every change to runtime_environment or revoked_api_key (delivered at commit), once for the environment and once for each of its preview branches: answer caches forget what they hold about it.';

CREATE TRIGGER notify_runtime_environment AFTER INSERT OR UPDATE OR DELETE ON api_auth.runtime_environment
    FOR EACH ROW EXECUTE FUNCTION api_auth.notify_change();
CREATE TRIGGER notify_revoked_api_key AFTER INSERT OR UPDATE OR DELETE ON api_auth.revoked_api_key
    FOR EACH ROW EXECUTE FUNCTION api_auth.notify_change();
REVOKE ALL ON FUNCTION api_auth.notify_change() FROM PUBLIC;

DROP TRIGGER audit_environment_created ON api_auth.runtime_environment;
CREATE OR REPLACE FUNCTION api_auth.audit_trigger() RETURNS trigger
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


CREATE FUNCTION api_auth.create_session_as(
	"credential" TEXT, /* Option < & str > */
	"session_type" TEXT, /* Option < & str > */
	"task_identifier" TEXT, /* Option < & str > */
	"trigger_config" jsonb DEFAULT '{}', /* Option < JsonB > */
	"external_id" TEXT DEFAULT NULL, /* Option < & str > */
	"tags" TEXT[] DEFAULT '{}', /* :: std :: option :: Option < Vec < Option < String > > > */
	"metadata" jsonb DEFAULT NULL, /* Option < JsonB > */
	"expires_at" timestamp with time zone DEFAULT NULL, /* Option < TimestampWithTimeZone > */
	"branch_name" TEXT DEFAULT NULL /* Option < & str > */
) RETURNS TABLE (
	"id" TEXT,  /* String */
	"environment_id" TEXT,  /* String */
	"external_id" TEXT,  /* Option < String > */
	"type" TEXT,  /* String */
	"task_identifier" TEXT,  /* String */
	"trigger_config" jsonb,  /* JsonB */
	"tags" TEXT[],  /* Vec < Option < String > > */
	"metadata" jsonb,  /* Option < JsonB > */
	"closed_at" timestamp with time zone,  /* Option < TimestampWithTimeZone > */
	"expires_at" timestamp with time zone,  /* Option < TimestampWithTimeZone > */
	"created_at" timestamp with time zone,  /* TimestampWithTimeZone */
	"updated_at" timestamp with time zone,  /* TimestampWithTimeZone */
	"is_cached" bool,  /* bool */
	"public_access_token" TEXT  /* Option < String > */
)
SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'create_session_as_wrapper';

CREATE FUNCTION api_auth.get_session_as(
	"credential" TEXT, /* Option < & str > */
	"session" TEXT, /* Option < & str > */
	"branch_name" TEXT DEFAULT NULL /* Option < & str > */
) RETURNS TABLE (
	"id" TEXT,  /* String */
	"environment_id" TEXT,  /* String */
	"external_id" TEXT,  /* Option < String > */
	"type" TEXT,  /* String */
	"task_identifier" TEXT,  /* String */
	"trigger_config" jsonb,  /* JsonB */
	"tags" TEXT[],  /* Vec < Option < String > > */
	"metadata" jsonb,  /* Option < JsonB > */
	"closed_at" timestamp with time zone,  /* Option < TimestampWithTimeZone > */
	"expires_at" timestamp with time zone,  /* Option < TimestampWithTimeZone > */
	"created_at" timestamp with time zone,  /* TimestampWithTimeZone */
	"updated_at" timestamp with time zone,  /* TimestampWithTimeZone */
	"is_cached" bool,  /* bool */
	"public_access_token" TEXT  /* Option < String > */
)
STABLE SECURITY DEFINER
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'get_session_as_wrapper';

REVOKE EXECUTE ON FUNCTION
    api_auth.create_session(text, text, text, jsonb, text, text[], jsonb, timestamptz),
    api_auth.get_session(text, text)
FROM PUBLIC, api_auth_client;
REVOKE ALL ON FUNCTION
    api_auth.create_session_as(text, text, text, jsonb, text, text[], jsonb, timestamptz, text),
    api_auth.get_session_as(text, text, text)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    api_auth.create_session_as(text, text, text, jsonb, text, text[], jsonb, timestamptz, text),
    api_auth.get_session_as(text, text, text)
TO api_auth_client;
GRANT EXECUTE ON FUNCTION
    api_auth.create_session(text, text, text, jsonb, text, text[], jsonb, timestamptz),
    api_auth.get_session(text, text)
TO api_auth_admin;

COMMENT ON FUNCTION api_auth.mint_public_jwt(text, jsonb, text, text) IS
    'mint_public_jwt(api_key, claims => {}, expiration => 1h, branch_name => NULL): an HS256 public access token for the environment the key authenticates (current or grace), signed with its canonical current key; minted with a key in grace, it expires no later than that key''s window. claims.scopes must be scopes of the grammar (22023 otherwise). NULL if the key authenticates nothing.';
COMMENT ON FUNCTION api_auth.create_session(text, text, text, jsonb, text, text[], jsonb, timestamptz) IS
    'Admin only. create_session(environment_id, type, task_identifier, trigger_config, external_id, tags, metadata, expires_at): create or (same external_id, same task and type) return a session, with a session-scoped public token. Triggers no run. Clients use create_session_as.';
COMMENT ON FUNCTION api_auth.get_session(text, text) IS
    'Admin only. get_session(environment_id, session): a session by id or external_id; zero rows if none. Clients use get_session_as.';
COMMENT ON FUNCTION api_auth.create_session_as(text, text, text, jsonb, text, text[], jsonb, timestamptz, text) IS
    'create_session_as(credential, type, task_identifier, trigger_config, external_id, tags, metadata, expires_at, branch_name): create_session in the environment the credential (secret key, or public token with write:tasks:<task> or write:sessions) authenticates. 28000 unknown credential, 42501 scope denied, 55000 external_id taken by another task or type, or closed.';
COMMENT ON FUNCTION api_auth.get_session_as(text, text, text) IS
    'get_session_as(credential, session, branch_name): a session of the environment the credential authenticates, by id or external_id; zero rows if none. A token needs read:sessions:<id or external id>, read:tasks:<the session''s task> or read:sessions (42501).';
