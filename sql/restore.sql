-- Restores (since 0.4.0): every key survives pg_restore --jobs N.
--
-- pg_dump orders the extension's table data so that an environment comes
-- before its grace rows and sessions (their foreign keys), but a parallel
-- pg_restore does not keep that order: the data of revoked_api_key or session
-- can be loaded while runtime_environment's is still on its way, and the
-- foreign key would refuse every row. So a child row that is carried over
-- (created before this transaction: a restore) and finds no environment yet
-- is held in api_auth.restore_pending instead, and the environment's arrival
-- moves it into place. Both sides take the same per-environment advisory lock
-- (held to commit) before looking at the other, so whichever commits first,
-- the second sees it. Rows created now never wait: the foreign key judges them.
-- A row still held after a restore has finished belongs to an environment
-- that never arrived (an incomplete dump or restore): it authenticates nothing.

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
