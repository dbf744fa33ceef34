\set n random(1, :ntok)
SELECT token AS tok FROM bench.token WHERE n = :n \gset
SELECT * FROM bench_baseline.validate_public_jwt(:tok);
