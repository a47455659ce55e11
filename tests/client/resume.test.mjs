import test from 'node:test';
import assert from 'node:assert/strict';
import { client, next, requireServer, uid } from './helpers.mjs';

test('after a forced disconnect the client resumes its session with the wsToken', async () => {
  requireServer();
  const sub = uid('resume');
  let tokens = 0;
  const c = client(sub, { getToken: async () => { tokens++; return (await import('./helpers.mjs')).mint(sub); } });
  const authFrames = [];
  c.on('auth_success', (d) => authFrames.push(d));
  const user = await c.connect();
  assert.equal(user.userId, sub);
  const first = c.wsToken;
  assert.ok(first, 'wsToken remembered');
  assert.equal(tokens, 1);

  const reconnecting = next(c, 'reconnecting');
  const connected = next(c, 'connected');
  c.dropConnection();
  const r = await reconnecting;
  assert.equal(r.attempt, 1);
  const again = await connected;
  assert.equal(again.resumed, true, 'resumed with the wsToken');
  assert.equal(again.user.userId, sub);
  assert.equal(tokens, 1, 'no fresh token was needed');
  assert.equal(authFrames.length, 2);
  c.disconnect();
});

test('a refused wsToken falls back to a fresh token', async () => {
  requireServer();
  const sub = uid('resume-bad');
  const c = client(sub);
  await c.connect();
  c.wsToken = 'not-a-valid-ws-token';
  const connected = next(c, 'connected');
  c.dropConnection();
  const again = await connected;
  assert.equal(again.resumed, false);
  assert.notEqual(c.wsToken, 'not-a-valid-ws-token');
  c.disconnect();
});
