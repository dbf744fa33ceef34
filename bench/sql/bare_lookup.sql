\set n random(1, :nenv)
SELECT api_key AS key FROM bench.pick WHERE n = :n \gset
SELECT id, slug, type, api_key, pk_api_key, parent_environment_id, branch_name, project_id, organization_id FROM api_auth.runtime_environment WHERE api_key = :key;
