-- Baseline for issue 5 item 3(b): the public-token validation a user would
-- otherwise write inside the database, in PL/pgSQL with pgcrypto's hmac().
-- It does the same work as api_auth.validate_public_jwt: split the compact
-- JWS, check alg = HS256, read `sub`, load the environment (the parent's key
-- for a preview branch), verify HMAC-SHA256 with the current key, then (only
-- on failure) with each key still in grace, then judge exp/nbf/iss/aud/pub.
-- Written to be fast (no exception blocks, one query per step), not naive.
CREATE EXTENSION IF NOT EXISTS pgcrypto;
CREATE SCHEMA IF NOT EXISTS bench_baseline;

CREATE OR REPLACE FUNCTION bench_baseline.b64url_decode(t text) RETURNS bytea
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
  SELECT decode(rpad(translate(t, '-_', '+/'), length(t) + (4 - length(t) % 4) % 4, '='), 'base64')
$$;

CREATE OR REPLACE FUNCTION bench_baseline.b64url_encode(b bytea) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
  SELECT translate(encode(b, 'base64'), E'+/=\n', '-_')
$$;

-- HS256 token over `claims` with key = UTF-8 bytes of `key` (the SDK's format,
-- header exactly {"alg":"HS256"}). Used by the bench to make tokens signed
-- with keys that are no longer current.
CREATE OR REPLACE FUNCTION bench_baseline.sign_hs256(key text, claims jsonb) RETURNS text
LANGUAGE sql IMMUTABLE STRICT AS $$
  WITH si AS (
    SELECT bench_baseline.b64url_encode(convert_to('{"alg":"HS256"}', 'UTF8')) || '.' ||
           bench_baseline.b64url_encode(convert_to(claims::text, 'UTF8')) AS input
  )
  SELECT input || '.' || bench_baseline.b64url_encode(public.hmac(input, key, 'sha256')) FROM si
$$;

CREATE OR REPLACE FUNCTION bench_baseline.validate_public_jwt(token text)
RETURNS TABLE (ok boolean, error text, environment_id text, environment_type text,
               claims jsonb, matched_by text, revoked_api_key_id text)
LANGUAGE plpgsql STABLE AS $$
DECLARE
  parts text[];
  header jsonb;
  payload jsonb;
  sig bytea;
  signing_input text;
  env record;
  k record;
  how text;
  rak text;
  now_s numeric := extract(epoch FROM now());
BEGIN
  parts := string_to_array(token, '.');
  IF token IS NULL OR length(token) > 8192 OR cardinality(parts) <> 3 THEN
    RETURN QUERY SELECT false, 'malformed', NULL::text, NULL::text, NULL::jsonb, NULL::text, NULL::text; RETURN;
  END IF;
  header := convert_from(bench_baseline.b64url_decode(parts[1]), 'UTF8')::jsonb;
  IF header->>'alg' IS DISTINCT FROM 'HS256' OR header ? 'crit' THEN
    RETURN QUERY SELECT false, 'invalid_algorithm', NULL::text, NULL::text, NULL::jsonb, NULL::text, NULL::text; RETURN;
  END IF;
  payload := convert_from(bench_baseline.b64url_decode(parts[2]), 'UTF8')::jsonb;
  sig := bench_baseline.b64url_decode(parts[3]);
  IF jsonb_typeof(payload->'sub') IS DISTINCT FROM 'string' THEN
    RETURN QUERY SELECT false, 'missing_subject', NULL::text, NULL::text, NULL::jsonb, NULL::text, NULL::text; RETURN;
  END IF;
  SELECT e.id, e.type, coalesce(p.id, e.id) AS signer_id, coalesce(p.api_key, e.api_key) AS api_key
    INTO env
    FROM api_auth.runtime_environment e
    LEFT JOIN api_auth.runtime_environment p ON p.id = e.parent_environment_id
   WHERE e.id = payload->>'sub' AND e.archived_at IS NULL AND p.archived_at IS NULL;
  IF NOT FOUND OR env.api_key IS NULL THEN
    RETURN QUERY SELECT false, 'environment_not_found', NULL::text, NULL::text, NULL::jsonb, NULL::text, NULL::text; RETURN;
  END IF;
  signing_input := parts[1] || '.' || parts[2];
  IF public.hmac(signing_input, env.api_key, 'sha256') = sig THEN
    how := 'current';
  ELSE
    FOR k IN SELECT r.id, r.api_key FROM api_auth.revoked_api_key r
              WHERE r.runtime_environment_id = env.signer_id AND r.expires_at > now()
              ORDER BY r.expires_at DESC LOOP
      IF public.hmac(signing_input, k.api_key, 'sha256') = sig THEN
        how := 'grace'; rak := k.id; EXIT;
      END IF;
    END LOOP;
    IF how IS NULL THEN
      RETURN QUERY SELECT false, 'invalid_signature', NULL::text, NULL::text, NULL::jsonb, NULL::text, NULL::text; RETURN;
    END IF;
  END IF;
  IF jsonb_typeof(payload->'exp') IS DISTINCT FROM 'number' THEN
    RETURN QUERY SELECT false, 'claim_invalid', NULL::text, NULL::text, NULL::jsonb, NULL::text, NULL::text; RETURN;
  END IF;
  IF (payload->>'exp')::numeric <= now_s THEN
    RETURN QUERY SELECT false, 'expired', NULL::text, NULL::text, NULL::jsonb, NULL::text, NULL::text; RETURN;
  END IF;
  IF (payload ? 'nbf' AND (payload->>'nbf')::numeric > now_s)
     OR payload->>'iss' IS DISTINCT FROM 'https://id.trigger.dev'
     OR NOT (payload->'aud' = '"https://api.trigger.dev"'::jsonb OR payload->'aud' @> '["https://api.trigger.dev"]'::jsonb)
     OR payload->'pub' IS DISTINCT FROM 'true'::jsonb THEN
    RETURN QUERY SELECT false, 'claim_invalid', NULL::text, NULL::text, NULL::jsonb, NULL::text, NULL::text; RETURN;
  END IF;
  RETURN QUERY SELECT true, NULL::text, env.id, env.type, payload, how, rak;
END $$;
