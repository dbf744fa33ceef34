\set n random(1, :ngrace)
SELECT token AS tok FROM bench.grace_token WHERE n = :n \gset
SELECT * FROM api_auth.validate_public_jwt(:tok);
