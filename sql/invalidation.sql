-- Change notifications (since 0.4.0): whoever caches answers of this
-- extension (the shim's answer cache) learns at commit what to forget.
--
-- Every change that can alter an answer of find_environment_by_api_key or
-- validate_public_jwt (an environment created, rotated, archived, edited or
-- deleted; a grace row added, moved, purged or deleted) sends
-- NOTIFY api_auth_changes with the environment's id as payload. From
-- triggers, so direct table edits count too; PostgreSQL delivers them only
-- once the transaction commits, and folds repeats within one transaction.
-- A change to a preview parent notifies each of its branches too (they
-- authenticate with the parent's keys); a change to a row holding a secret
-- key that another environment also holds notifies that one too (since
-- 0.4.1). A listener forgets every answer about a notified environment, and
-- every negative answer (a new key may now be known). TRUNCATE fires no row
-- trigger: a statement trigger sends the payload `*` instead, which means
-- every environment (since 0.4.1; no environment id is `*`). Environment ids
-- are not secrets (they are every token's `sub`); keys never appear.

CREATE FUNCTION api_auth.notify_change() RETURNS trigger
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

CREATE TRIGGER notify_runtime_environment AFTER INSERT OR UPDATE OR DELETE ON api_auth.runtime_environment
    FOR EACH ROW EXECUTE FUNCTION api_auth.notify_change();
CREATE TRIGGER notify_revoked_api_key AFTER INSERT OR UPDATE OR DELETE ON api_auth.revoked_api_key
    FOR EACH ROW EXECUTE FUNCTION api_auth.notify_change();

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
