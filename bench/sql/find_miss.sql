\set n random(1, 2000000000)
SELECT 'tr_prod_' || substr(md5(:n::text), 1, 24) AS key \gset
SELECT * FROM api_auth.find_environment_by_api_key(:key);
