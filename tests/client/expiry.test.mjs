import test from 'node:test';
import assert from 'node:assert/strict';
import { client, mint, next, requireServer, uid } from './helpers.mjs';

test('a token-expired close (4001) reconnects with a fresh token from getToken', async () => {
  requireServer();
  const sub = uid('expiry');
  let calls = 0;
  const c = client(sub, {
    getToken: async () => {
      calls++;
      if (calls === 1) return mint(sub, 2); // expires in about 2 s
      if (calls === 2) throw new Error('refresh unavailable'); // the in-band refresh fails
      return mint(sub, 3600);
    },
  });
  c.on('client_error', () => {});
  await c.connect();
  const closed = next(c, 'close', (d) => d.code === 4001, 8000);
  const reconnected = next(c, 'connected', () => true, 10000);
  const cl = await closed;
  assert.equal(cl.code, 4001);
  const again = await reconnected;
  assert.equal(again.resumed, false, 'authenticated with a fresh token, not the old session');
  assert.equal(calls, 3);
  assert.equal(c.state, 'connected');
  c.disconnect();
});
