-- Change notifications (since 0.4.0): whoever caches answers of this
-- extension (the shim's answer cache) learns at commit what to forget.
--
-- Every change that can alter an answer of find_environment_by_api_key or
-- validate_public_jwt (an environment created, rotated, archived, edited or
-- deleted; a grace row added, moved, purged or deleted) sends
-- NOTIFY api_auth_changes with the environment's id as payload. From
-- triggers, so direct table edits count too; PostgreSQL delivers them only
-- once the transaction commits, and folds repeats within one transaction.
-- A listener forgets every answer about that environment or signed with its
-- keys (a preview branch's are its parent's), and every negative answer (a
-- new key may now be known). Environment ids are not secrets (they are every
-- token's `sub`); keys never appear.

CREATE FUNCTION api_auth.notify_change() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    IF TG_TABLE_NAME = 'runtime_environment' THEN
        IF TG_OP <> 'DELETE' THEN
            PERFORM pg_catalog.pg_notify('api_auth_changes', NEW.id);
        END IF;
        IF TG_OP <> 'INSERT' THEN
            PERFORM pg_catalog.pg_notify('api_auth_changes', OLD.id);
        END IF;
    ELSE
        IF TG_OP <> 'DELETE' THEN
            PERFORM pg_catalog.pg_notify('api_auth_changes', NEW.runtime_environment_id);
        END IF;
        IF TG_OP <> 'INSERT' THEN
            PERFORM pg_catalog.pg_notify('api_auth_changes', OLD.runtime_environment_id);
        END IF;
    END IF;
    RETURN NULL;
END
$fn$;
COMMENT ON FUNCTION api_auth.notify_change() IS
    'NOTIFY api_auth_changes, payload = the environment id, for every change to runtime_environment or revoked_api_key (delivered at commit): answer caches forget what they hold about that environment.';

CREATE TRIGGER notify_runtime_environment AFTER INSERT OR UPDATE OR DELETE ON api_auth.runtime_environment
    FOR EACH ROW EXECUTE FUNCTION api_auth.notify_change();
CREATE TRIGGER notify_revoked_api_key AFTER INSERT OR UPDATE OR DELETE ON api_auth.revoked_api_key
    FOR EACH ROW EXECUTE FUNCTION api_auth.notify_change();
