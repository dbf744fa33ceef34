// Interoperability (issue 4, acceptance 4): the published @trigger.dev/sdk,
// pointed at the shim, mints a public token the shim accepts for task "foo"
// and refuses for task "bar".
//
// Run by shim/tests/node_interop.rs, which starts the shim and passes
//   SHIM_URL    base URL of a running shim (http://127.0.0.1:PORT)
//   SECRET_KEY  a secret key of an environment known to it
// Standalone: SHIM_URL=... SECRET_KEY=... node --test tests/node/
import { test } from "node:test";
import assert from "node:assert/strict";
import { configure, auth } from "@trigger.dev/sdk";

const baseURL = process.env.SHIM_URL;
const secretKey = process.env.SECRET_KEY;
if (!baseURL || !secretKey) {
  throw new Error("set SHIM_URL and SECRET_KEY (see the comment at the top of this file)");
}

configure({ secretKey, baseURL });

async function createSession(token, taskIdentifier, externalId) {
  const res = await fetch(`${baseURL}/api/v1/sessions`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({
      type: "chat.agent",
      taskIdentifier,
      triggerConfig: { basePayload: { chatId: "c1" } },
      ...(externalId ? { externalId } : {}),
    }),
  });
  return { status: res.status, body: await res.json() };
}

function payloadOf(token) {
  return JSON.parse(Buffer.from(token.split(".")[1], "base64url").toString("utf8"));
}

test("createPublicToken through the shim: write:tasks:foo allows foo, refuses bar", async () => {
  const token = await auth.createPublicToken({ scopes: { write: { tasks: ["foo"] } } });
  const payload = payloadOf(token);
  assert.equal(payload.pub, true);
  assert.deepEqual(payload.scopes, ["write:tasks:foo"]);
  assert.equal(payload.iss, "https://id.trigger.dev");
  assert.equal(payload.aud, "https://api.trigger.dev");
  assert.ok(payload.sub.startsWith("env_") || payload.sub.length > 0);

  const foo = await createSession(token, "foo");
  assert.equal(foo.status, 201, JSON.stringify(foo.body));
  assert.equal(foo.body.taskIdentifier, "foo");
  assert.equal(foo.body.isCached, false);

  const bar = await createSession(token, "bar");
  assert.equal(bar.status, 403, JSON.stringify(bar.body));
  assert.equal(bar.body.code, "unauthorized");
  assert.match(bar.body.error, /^Unauthorized: /);
});

test("an SDK token verifies at the forward-auth endpoint", async () => {
  const token = await auth.createPublicToken({ scopes: { read: { sessions: true } }, expirationTime: "1h" });
  const res = await fetch(`${baseURL}/api/v1/auth/verify`, { headers: { authorization: `Bearer ${token}` } });
  assert.equal(res.status, 200, await res.text());
  assert.equal(res.headers.get("x-api-auth-method"), "public_token");
  assert.equal(res.headers.get("x-api-auth-scopes"), "read:sessions");
});

test("the session token returned by the shim works with the SDK's session retrieval", async () => {
  const created = await createSession(secretKey, "foo", `ext-${Date.now()}`);
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const { apiClientManager } = await import("@trigger.dev/core/v3");
  const client = apiClientManager.clientOrThrow({ accessToken: created.body.publicAccessToken, baseURL });
  const session = await client.retrieveSession(created.body.externalId);
  assert.equal(session.id, created.body.id);
  assert.equal(session.taskIdentifier, "foo");
});

test("a tampered SDK token is refused", async () => {
  const token = await auth.createPublicToken({ scopes: { write: { tasks: ["foo"] } } });
  const [h, p, s] = token.split(".");
  const bad = `${h}.${p}.${s[0] === "A" ? "B" : "A"}${s.slice(1)}`;
  const res = await createSession(bad, "foo");
  assert.equal(res.status, 401, JSON.stringify(res.body));
});
