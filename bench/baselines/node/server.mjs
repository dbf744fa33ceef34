// Reference server for issue 5 item 8: what the original platform does in its
// web application, on node's http + pg + jose, answering the same
// GET /api/v1/auth/verify as the shim (same status codes, headers and body).
//
// Secret key: query 1 looks the key up among current keys; only on a miss,
// query 2 looks it up among revoked keys still in grace (the platform's
// findEnvironmentByApiKey). Public token: decode the unverified payload for
// `sub`, load that environment (query 1), jose.jwtVerify with its current key
// (HS256, issuer, audience); only on a signature failure, query 2 lists the
// environment's keys in grace and tries each (the platform's
// validatePublicJwtKey). Statements are named, so pg prepares them once per
// connection, like the shim does.
//
//   DATABASE_URL=postgres://... PORT=8788 POOL_SIZE=8 node server.mjs
import http from 'node:http';
import pg from 'pg';
import * as jose from 'jose';

const ISSUER = 'https://id.trigger.dev';
const AUDIENCE = 'https://api.trigger.dev';
const pool = new pg.Pool({
  connectionString: process.env.DATABASE_URL,
  max: Number(process.env.POOL_SIZE || 8),
});

const FIND_CURRENT = {
  name: 'find_current',
  text: `SELECT id, type, project_id, organization_id, branch_name
           FROM api_auth.runtime_environment WHERE api_key = $1 AND archived_at IS NULL`,
};
const FIND_REVOKED = {
  name: 'find_revoked',
  text: `SELECT e.id, e.type, e.project_id, e.organization_id, e.branch_name, r.id AS revoked_id
           FROM api_auth.revoked_api_key r
           JOIN api_auth.runtime_environment e ON e.id = r.runtime_environment_id
          WHERE r.api_key = $1 AND r.expires_at > now() AND e.archived_at IS NULL
          ORDER BY r.expires_at DESC LIMIT 1`,
};
const FIND_BY_ID = {
  name: 'find_by_id',
  text: `SELECT e.id, e.type, coalesce(p.id, e.id) AS signer_id, coalesce(p.api_key, e.api_key) AS api_key
           FROM api_auth.runtime_environment e
           LEFT JOIN api_auth.runtime_environment p ON p.id = e.parent_environment_id
          WHERE e.id = $1 AND e.archived_at IS NULL AND p.archived_at IS NULL`,
};
const GRACE_KEYS = {
  name: 'grace_keys',
  text: `SELECT id, api_key FROM api_auth.revoked_api_key
          WHERE runtime_environment_id = $1 AND expires_at > now() ORDER BY expires_at DESC`,
};

const enc = new TextEncoder();

function send(res, status, body, headers = {}) {
  const data = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(data),
    'access-control-allow-origin': '*',
    ...headers,
  });
  res.end(data);
}

async function byKey(key) {
  let r = await pool.query({ ...FIND_CURRENT, values: [key] });
  if (r.rows.length) return { env: r.rows[0], matchedBy: 'current', revokedId: null };
  r = await pool.query({ ...FIND_REVOKED, values: [key] });
  if (r.rows.length) return { env: r.rows[0], matchedBy: 'grace', revokedId: r.rows[0].revoked_id };
  return null;
}

async function verifyWith(token, key) {
  try {
    const { payload } = await jose.jwtVerify(token, enc.encode(key), {
      issuer: ISSUER, audience: AUDIENCE, algorithms: ['HS256'],
    });
    return { payload };
  } catch (e) {
    return { error: e };
  }
}

async function byToken(token) {
  let sub;
  try { sub = jose.decodeJwt(token).sub; } catch { return null; }
  if (typeof sub !== 'string' || !sub) return null;
  const r = await pool.query({ ...FIND_BY_ID, values: [sub] });
  const env = r.rows[0];
  if (!env || !env.api_key) return null;
  let v = await verifyWith(token, env.api_key);
  if (v.payload) return { env, payload: v.payload, matchedBy: 'current' };
  if (v.error?.code !== 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED') return null;
  const g = await pool.query({ ...GRACE_KEYS, values: [env.signer_id] });
  for (const row of g.rows) {
    v = await verifyWith(token, row.api_key);
    if (v.payload) return { env, payload: v.payload, matchedBy: 'grace' };
  }
  return null;
}

async function verify(req, res) {
  const auth = req.headers.authorization || '';
  const cred = auth.startsWith('Bearer ') ? auth.slice(7).trim() : '';
  if (cred.startsWith('tr_')) {
    const k = await byKey(cred);
    if (!k) return send(res, 401, { error: 'Invalid or Missing API key' });
    const method = k.matchedBy === 'grace' ? 'grace_key' : 'current_key';
    const h = {
      'x-api-auth-environment-id': k.env.id,
      'x-api-auth-environment-type': k.env.type,
      'x-api-auth-method': method,
      'x-api-auth-matched-by': k.matchedBy,
    };
    if (k.env.project_id) h['x-api-auth-project-id'] = k.env.project_id;
    if (k.env.organization_id) h['x-api-auth-organization-id'] = k.env.organization_id;
    if (k.env.branch_name) h['x-api-auth-branch'] = k.env.branch_name;
    return send(res, 200, {
      ok: true, environmentId: k.env.id, environmentType: k.env.type, method,
      matchedBy: k.matchedBy, revokedApiKeyId: k.revokedId,
    }, h);
  }
  if (cred.split('.').length === 3) {
    const t = await byToken(cred);
    if (!t) return send(res, 401, { error: 'Invalid public access token' });
    const scopes = Array.isArray(t.payload.scopes) ? t.payload.scopes.filter((s) => typeof s === 'string') : [];
    return send(res, 200, {
      ok: true, environmentId: t.env.id, environmentType: t.env.type, method: 'public_token',
      matchedBy: t.matchedBy, scopes,
    }, {
      'x-api-auth-environment-id': t.env.id,
      'x-api-auth-environment-type': t.env.type,
      'x-api-auth-method': 'public_token',
      'x-api-auth-matched-by': t.matchedBy,
      'x-api-auth-scopes': scopes.join(' '),
    });
  }
  return send(res, 401, { error: 'Invalid or Missing API key' });
}

const server = http.createServer((req, res) => {
  const path = req.url.split('?')[0];
  if (path === '/healthz') return send(res, 200, { status: 'ok' });
  if (path === '/api/v1/auth/verify' || path.startsWith('/api/v1/auth/verify/')) {
    verify(req, res).catch((e) => send(res, 503, { error: String(e.message || e) }));
    return;
  }
  send(res, 404, { error: 'Not found' });
});
server.keepAliveTimeout = 60_000;
const port = Number(process.env.PORT || 8788);
server.listen(port, '127.0.0.1', () => console.error(`node reference listening on http://127.0.0.1:${port}`));
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => { server.close(); pool.end().finally(() => process.exit(0)); });
