-- 0.4.1: change notifications for keys held by two environments, and for
-- TRUNCATE (sql/invalidation.sql).
-- 1. A secret key can be held by two environments at once only through
--    direct table edits (rotation draws random keys). Which one the key opens
--    can then change through the other's rows (a current key wins over a
--    grace row, the window ending last over the others), so a change to a row
--    holding a key now notifies every environment that holds it as well: an
--    answer cache forgets what it kept for the key under either.
-- 2. TRUNCATE fires no row trigger: a statement trigger on both tables sends
--    the payload `*` (every environment).
-- 3. The audit trail records TRUNCATEs of both tables (sql/security.sql).

CREATE OR REPLACE FUNCTION api_auth.notify_change() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    changed text[];
    new_key text;
BEGIN
    IF TG_TABLE_NAME = 'runtime_environment' THEN
        changed := ARRAY[CASE WHEN TG_OP <> 'DELETE' THEN NEW.id END, CASE WHEN TG_OP <> 'INSERT' THEN OLD.id END];
    ELSE
        changed := ARRAY[CASE WHEN TG_OP <> 'DELETE' THEN NEW.runtime_environment_id END,
                         CASE WHEN TG_OP <> 'INSERT' THEN OLD.runtime_environment_id END];
    END IF;
    IF TG_OP <> 'DELETE' THEN
        new_key := NEW.api_key;
    END IF;
    -- A key another environment also holds (a direct edit: rotation draws
    -- random keys) may now open this environment instead of that one (a
    -- current key wins over a grace row, a later window over an earlier
    -- one): that one's cached answers for the key change too. (A key taken
    -- away changes only answers cached under this environment.)
    IF new_key IS NOT NULL THEN
        changed := changed
            || ARRAY(SELECT e.id FROM api_auth.runtime_environment e WHERE e.api_key OPERATOR(pg_catalog.=) new_key)
            || ARRAY(SELECT r.runtime_environment_id FROM api_auth.revoked_api_key r WHERE r.api_key OPERATOR(pg_catalog.=) new_key);
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
    'NOTIFY api_auth_changes, payload = an environment id, for every change to runtime_environment or revoked_api_key (delivered at commit), once for the environment, once for every other environment holding the row''s new secret key (current or in grace), and once for each of their preview branches: answer caches forget what they hold about them.';


CREATE FUNCTION api_auth.notify_truncate() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    PERFORM pg_catalog.pg_notify('api_auth_changes', '*');
    RETURN NULL;
END
$fn$;
COMMENT ON FUNCTION api_auth.notify_truncate() IS
    'NOTIFY api_auth_changes, payload = *, for a TRUNCATE of runtime_environment or revoked_api_key (delivered at commit; a TRUNCATE fires no row trigger): answer caches forget everything.';

CREATE TRIGGER notify_truncate_runtime_environment AFTER TRUNCATE ON api_auth.runtime_environment
    FOR EACH STATEMENT EXECUTE FUNCTION api_auth.notify_truncate();
CREATE TRIGGER notify_truncate_revoked_api_key AFTER TRUNCATE ON api_auth.revoked_api_key
    FOR EACH STATEMENT EXECUTE FUNCTION api_auth.notify_truncate();
REVOKE ALL ON FUNCTION api_auth.notify_truncate() FROM PUBLIC;

ALTER TABLE api_auth.audit_event DROP CONSTRAINT audit_event_action_check;
ALTER TABLE api_auth.audit_event ADD CONSTRAINT audit_event_action_check CHECK (action IN (
    'environment_created', 'environment_updated', 'environment_deleted',
    'key_rotated', 'expiry_changed',
    'revoked_key_deleted', 'revoked_keys_purged', 'table_truncated'));
COMMENT ON TABLE api_auth.audit_event IS
    'Append-only trail of environment creations, changes (keys, archiving; never the key itself) and deletions, rotations, grace-window changes and purges, and truncations of either table: who (database_user; actor = the shim''s admin identity, from the api_auth.audit_actor setting), when, which environment and grace row, old and new expires_at. Rows carried over by a restore are not new events and write none.';

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
REVOKE ALL ON FUNCTION api_auth.audit_truncate() FROM PUBLIC;
