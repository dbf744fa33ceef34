-- Bench-only helpers, loaded by the bench into its own private cluster (never
-- into a real database). `bench` holds the data generator and the pick tables
-- the pgbench scripts read their credentials from (one untimed \gset per
-- transaction, so the timed statement receives a bound parameter exactly as an
-- application would send it).
CREATE SCHEMA IF NOT EXISTS bench;

-- 24 characters of [0-9a-zA-Z], deterministic in (salt, n): the random part
-- of a key. Keys look like the real ones (tr_prod_ + 24 alnum) and spread over
-- the whole index like random keys do.
CREATE OR REPLACE FUNCTION bench.rnd24(salt text, n bigint) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT substr(translate(encode(decode(md5(salt || n) || md5(n || salt), 'hex'), 'base64'), '+/=', 'XYZ'), 1, 24)
$$;

CREATE OR REPLACE FUNCTION bench.env_id(n bigint) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT 'env_' || bench.rnd24('id', n) $$;

CREATE OR REPLACE FUNCTION bench.env_type(n bigint) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT (ARRAY['DEVELOPMENT', 'STAGING', 'PRODUCTION'])[1 + n % 3]
$$;

CREATE OR REPLACE FUNCTION bench.key_prefix(n bigint) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT (ARRAY['dev', 'stg', 'prod'])[1 + n % 3] $$;

-- n -> environment, for every bulk-loaded environment (picks for lookups).
CREATE TABLE IF NOT EXISTS bench.pick (n int PRIMARY KEY, id text NOT NULL, api_key text NOT NULL);
-- Keys in their grace window, and tokens signed with them / with current keys.
CREATE TABLE IF NOT EXISTS bench.grace_pick (n int PRIMARY KEY, id text NOT NULL, api_key text NOT NULL);
CREATE TABLE IF NOT EXISTS bench.token (n int PRIMARY KEY, token text NOT NULL);
CREATE TABLE IF NOT EXISTS bench.grace_token (n int PRIMARY KEY, token text NOT NULL);
-- Environments reserved for rotation (never picked by lookups).
CREATE TABLE IF NOT EXISTS bench.rot_pick (n int PRIMARY KEY, id text NOT NULL);

-- Grow the bulk environments to `upto` (1..upto), straight into the table as
-- superuser: 1 M rows in one INSERT, not 1 M function calls.
CREATE OR REPLACE FUNCTION bench.grow_envs(upto int) RETURNS int LANGUAGE plpgsql AS $$
DECLARE have int;
BEGIN
  SELECT coalesce(max(n), 0) INTO have FROM bench.pick;
  IF upto <= have THEN RETURN have; END IF;
  INSERT INTO api_auth.runtime_environment (id, slug, type, api_key, pk_api_key, project_id, organization_id)
  SELECT bench.env_id(i), 'env-' || i, bench.env_type(i),
         'tr_' || bench.key_prefix(i) || '_' || bench.rnd24('sk', i),
         'pk_' || bench.key_prefix(i) || '_' || bench.rnd24('pk', i),
         'proj_' || (i / 10), 'org_' || (i / 100)
  FROM generate_series(have + 1, upto) i;
  INSERT INTO bench.pick (n, id, api_key)
  SELECT i, bench.env_id(i), 'tr_' || bench.key_prefix(i) || '_' || bench.rnd24('sk', i)
  FROM generate_series(have + 1, upto) i;
  RETURN upto;
END $$;

-- Replace every revoked row by `total` rows: `in_grace` of them (one per
-- environment 1..in_grace) still in their window, the rest expired long ago
-- (the reference platform never purges them), spread round-robin over all
-- bulk environments.
CREATE OR REPLACE FUNCTION bench.set_revoked(total int, in_grace int) RETURNS void LANGUAGE plpgsql AS $$
DECLARE nenv int;
BEGIN
  SELECT max(n) INTO nenv FROM bench.pick;
  in_grace := least(in_grace, nenv, total);
  TRUNCATE api_auth.revoked_api_key, bench.grace_pick, bench.grace_token;
  INSERT INTO api_auth.revoked_api_key (id, api_key, runtime_environment_id, expires_at, created_at)
  SELECT 'rak_' || bench.rnd24('rak', i),
         'tr_' || bench.key_prefix(1 + (i - 1) % nenv) || '_' || bench.rnd24('old', i),
         bench.env_id(1 + (i - 1) % nenv),
         CASE WHEN i <= in_grace THEN now() + interval '7 days'
              ELSE now() - (1 + i % 300) * interval '1 day' END,
         now() - (8 + i % 300) * interval '1 day'
  FROM generate_series(1, total) i;
  INSERT INTO bench.grace_pick (n, id, api_key)
  SELECT i, 'rak_' || bench.rnd24('rak', i), 'tr_' || bench.key_prefix(i) || '_' || bench.rnd24('old', i)
  FROM generate_series(1, in_grace) i;
  -- Tokens signed with the old key of each in-grace row: only the revoked
  -- fallback of validate_public_jwt can verify them.
  INSERT INTO bench.grace_token (n, token)
  SELECT g.n, bench_baseline.sign_hs256(g.api_key, jsonb_build_object(
           'sub', bench.env_id(g.n), 'pub', true, 'scopes', jsonb_build_array('read:runs'),
           'iss', 'https://id.trigger.dev', 'aud', 'https://api.trigger.dev',
           'iat', extract(epoch from now())::bigint, 'exp', extract(epoch from now() + interval '1 day')::bigint))
  FROM bench.grace_pick g;
END $$;

-- `count` current-key tokens minted by the extension itself, for environments
-- spread evenly over the whole table (so bigger tables are really touched).
CREATE OR REPLACE FUNCTION bench.set_tokens(count int) RETURNS int LANGUAGE plpgsql AS $$
DECLARE nenv int; step int;
BEGIN
  SELECT max(n) INTO nenv FROM bench.pick;
  count := least(count, nenv);
  step := greatest(nenv / count, 1);
  TRUNCATE bench.token;
  INSERT INTO bench.token (n, token)
  SELECT i, api_auth.mint_public_jwt(p.api_key, '{"scopes": ["read:runs"]}', '1d')
  FROM generate_series(1, count) i JOIN bench.pick p ON p.n = 1 + (i - 1) * step;
  RETURN count;
END $$;

-- Environments that the rotation benchmark may rotate (never looked up).
CREATE OR REPLACE FUNCTION bench.make_rotation_envs(count int) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM api_auth.runtime_environment WHERE id IN (SELECT id FROM bench.rot_pick);
  TRUNCATE bench.rot_pick;
  INSERT INTO api_auth.runtime_environment (id, slug, type, api_key, pk_api_key)
  SELECT 'env_rot_' || bench.rnd24('rot', i), 'rot-' || i, 'PRODUCTION',
         'tr_prod_' || bench.rnd24('rotsk', i), 'pk_prod_' || bench.rnd24('rotpk', i)
  FROM generate_series(1, count) i;
  INSERT INTO bench.rot_pick SELECT i, 'env_rot_' || bench.rnd24('rot', i) FROM generate_series(1, count) i;
END $$;

-- Memory of this backend: anonymous RSS (heap, palloc and Rust allocations;
-- shared buffers excluded) in kB, and the total of its memory contexts.
CREATE OR REPLACE FUNCTION bench.rss_anon_kb() RETURNS bigint LANGUAGE sql AS $$
  SELECT (regexp_match(pg_read_file('/proc/self/status'), 'RssAnon:\s+(\d+)'))[1]::bigint
$$;
CREATE OR REPLACE FUNCTION bench.context_bytes() RETURNS bigint LANGUAGE sql AS $$
  SELECT sum(total_bytes)::bigint FROM pg_backend_memory_contexts
$$;

-- `calls` validations in this session: current-key tokens, every 10th one
-- through the revoked fallback. Returns how many were ok.
CREATE OR REPLACE FUNCTION bench.validate_loop(calls int) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE t text[]; g text[]; good bigint := 0; v boolean;
BEGIN
  t := ARRAY(SELECT token FROM bench.token ORDER BY n);
  g := ARRAY(SELECT token FROM bench.grace_token ORDER BY n);
  FOR i IN 1..calls LOOP
    IF i % 10 = 0 AND cardinality(g) > 0 THEN
      SELECT x.ok INTO v FROM api_auth.validate_public_jwt(g[1 + (i / 10) % cardinality(g)]) x;
    ELSE
      SELECT x.ok INTO v FROM api_auth.validate_public_jwt(t[1 + i % cardinality(t)]) x;
    END IF;
    IF v THEN good := good + 1; END IF;
  END LOOP;
  RETURN good;
END $$;

-- The leak-free reference: the same number of bare indexed lookups.
CREATE OR REPLACE FUNCTION bench.lookup_loop(calls int) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE k text[]; good bigint := 0; found_id text;
BEGIN
  k := ARRAY(SELECT api_key FROM bench.pick ORDER BY n LIMIT 10000);
  FOR i IN 1..calls LOOP
    SELECT e.id INTO found_id FROM api_auth.runtime_environment e WHERE e.api_key = k[1 + i % cardinality(k)];
    IF found_id IS NOT NULL THEN good := good + 1; END IF;
  END LOOP;
  RETURN good;
END $$;

-- Server-side cost per call, without the client round trip: up to `calls`
-- calls of one kind inside one statement (at most `budget_s` seconds), each
-- its own SELECT ... INTO (the loop's own cost is the same for every kind).
-- Returns microseconds per call. Immune to the client/server wake-up
-- latency that dominates single-client pgbench figures on small VMs.
CREATE OR REPLACE FUNCTION bench.time_loop(kind text, calls int, budget_s double precision DEFAULT 3)
RETURNS double precision LANGUAGE plpgsql AS $$
DECLARE k text[]; g text[]; m text[]; t text[]; gt text[]; started timestamptz; deadline timestamptz;
        s text; v boolean; done int := 0;
BEGIN
  k := ARRAY(SELECT api_key FROM bench.pick ORDER BY md5(n::text) LIMIT 10000);
  g := ARRAY(SELECT api_key FROM bench.grace_pick ORDER BY n);
  m := ARRAY(SELECT 'tr_prod_' || substr(md5('miss' || i), 1, 24) FROM generate_series(1, 10000) i);
  t := ARRAY(SELECT token FROM bench.token ORDER BY n);
  gt := ARRAY(SELECT token FROM bench.grace_token ORDER BY n);
  started := clock_timestamp();
  deadline := started + budget_s * interval '1 second';
  FOR i IN 1..calls LOOP
    CASE kind
      WHEN 'bare_lookup' THEN
        SELECT e.id INTO s FROM api_auth.runtime_environment e WHERE e.api_key = k[1 + i % cardinality(k)];
      WHEN 'find_current' THEN
        SELECT f.id INTO s FROM api_auth.find_environment_by_api_key(k[1 + i % cardinality(k)]) f;
      WHEN 'find_grace' THEN
        SELECT f.id INTO s FROM api_auth.find_environment_by_api_key(g[1 + i % cardinality(g)]) f;
      WHEN 'find_miss' THEN
        SELECT f.id INTO s FROM api_auth.find_environment_by_api_key(m[1 + i % cardinality(m)]) f;
      WHEN 'validate_current' THEN
        SELECT x.ok INTO v FROM api_auth.validate_public_jwt(t[1 + i % cardinality(t)]) x;
      WHEN 'validate_grace' THEN
        SELECT x.ok INTO v FROM api_auth.validate_public_jwt(gt[1 + i % cardinality(gt)]) x;
      WHEN 'validate_plpgsql' THEN
        SELECT x.ok INTO v FROM bench_baseline.validate_public_jwt(t[1 + i % cardinality(t)]) x;
      ELSE
        RAISE EXCEPTION 'unknown kind %', kind;
    END CASE;
    done := i;
    EXIT WHEN i % 64 = 0 AND clock_timestamp() > deadline;
  END LOOP;
  RETURN extract(epoch FROM clock_timestamp() - started) * 1e6 / done;
END $$;
