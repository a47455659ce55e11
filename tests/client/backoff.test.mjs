import test from 'node:test';
import assert from 'node:assert/strict';
import './helpers.mjs';
import { backoffDelay, RoomgateClient } from '../../web/client/roomgate.js';

test('backoff delays stay within [0, min(maxMs, baseMs*factor^attempt)]', () => {
  const opts = { baseMs: 250, maxMs: 30000, factor: 2 };
  for (let attempt = 0; attempt < 40; attempt++) {
    const cap = Math.min(30000, 250 * 2 ** attempt);
    assert.equal(backoffDelay(attempt, opts, () => 0), 0);
    const top = backoffDelay(attempt, opts, () => 0.999999);
    assert.ok(top <= cap && top >= cap - 1, `attempt ${attempt}: ${top} vs cap ${cap}`);
    assert.equal(backoffDelay(attempt, opts, () => 0.5), Math.floor(cap / 2));
  }
  // defaults match the documented ones
  assert.equal(backoffDelay(2, {}, () => 0.5), 500);
  assert.equal(backoffDelay(100, {}, () => 0.5), 15000);
  // a bad random source cannot produce a delay out of range
  assert.equal(backoffDelay(3, opts, () => 7), 2000);
  assert.equal(backoffDelay(3, opts, () => NaN), 0);
});

test('the client reports bounded, growing reconnect delays and goes offline after maxAttempts', async () => {
  // nothing listens on this port of 127.0.0.1 once the probe closes
  const net = await import('node:net');
  const port = await new Promise((resolve) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => {
      const p = srv.address().port;
      srv.close(() => resolve(p));
    });
  });
  const { default: WebSocket } = await import('ws');
  const c = new RoomgateClient({
    url: `ws://127.0.0.1:${port}/ws`,
    WebSocket,
    getToken: async () => 'unused',
    backoff: { baseMs: 10, maxMs: 40, factor: 2 },
    maxAttempts: 4,
    random: () => 0.999,
  });
  const seen = [];
  c.on('reconnecting', (d) => seen.push(d));
  const offline = new Promise((resolve) => c.on('offline', resolve));
  await assert.rejects(c.connect(), /gave up/);
  await offline;
  assert.deepEqual(seen.map((d) => d.attempt), [1, 2, 3, 4]);
  assert.deepEqual(seen.map((d) => d.delayMs), [9, 19, 39, 39]);
  assert.equal(c.state, 'offline');
});
