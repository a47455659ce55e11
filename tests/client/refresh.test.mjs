import test from 'node:test';
import assert from 'node:assert/strict';
import { client, mint, next, requireServer, uid } from './helpers.mjs';

test('token_expiring makes the client call getToken and refresh in-band', async () => {
  requireServer();
  const sub = uid('refresh');
  const issued = [];
  // the first token lives 30 s, under auth.refresh_notice_secs (60): the notice comes at once
  const c = client(sub, {
    getToken: async () => {
      const t = mint(sub, issued.length === 0 ? 30 : 3600);
      issued.push(t);
      return t;
    },
  });
  const expiring = next(c, 'token_expiring');
  const refreshed = next(c, 'token_refreshed');
  await c.connect();
  const e = await expiring;
  assert.ok(e.expiresAt > Date.now(), 'expiresAt in the future');
  const r = await refreshed;
  assert.ok(r.expiresAt > e.expiresAt + 60_000, `new expiry ${r.expiresAt} after old ${e.expiresAt}`);
  assert.equal(issued.length, 2, 'getToken called for the refresh');
  assert.equal(c.state, 'connected');
  c.disconnect();
});

test('a getToken that throws does not produce an unhandled rejection', async () => {
  requireServer();
  const sub = uid('refresh-throw');
  let calls = 0;
  const c = client(sub, {
    getToken: async () => {
      calls++;
      if (calls === 1) return mint(sub, 30);
      throw new Error('identity provider down');
    },
  });
  const errors = [];
  c.on('client_error', (e) => errors.push(e));
  const expiring = next(c, 'token_expiring');
  await c.connect();
  await expiring;
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(errors.length, 1);
  assert.equal(c.state, 'connected', 'the connection lives on its old token');
  c.disconnect();
});
