\set n random(1, :ntok)
SELECT token AS tok FROM bench.token WHERE n = :n \gset
SELECT * FROM api_auth.validate_public_jwt(:tok);
