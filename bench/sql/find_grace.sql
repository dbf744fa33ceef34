\set n random(1, :ngrace)
SELECT api_key AS key FROM bench.grace_pick WHERE n = :n \gset
SELECT * FROM api_auth.find_environment_by_api_key(:key);
