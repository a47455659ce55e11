import test from 'node:test';
import assert from 'node:assert/strict';
import { cli, client, next, requireServer, sleep, uid } from './helpers.mjs';

test('revoking the user closes with a terminal code: terminal is emitted and no reconnect follows', async () => {
  requireServer();
  const sub = uid('revoked');
  const room = uid('term');
  const c = client(sub);
  await c.connect();
  const joined = next(c, 'room_joined', (d) => d.roomId === room);
  c.joinRoom(room);
  await joined;
  const reconnects = [];
  c.on('reconnecting', (d) => reconnects.push(d));
  const terminal = next(c, 'terminal', () => true, 8000);
  await cli(['revoke', '--user', sub]);
  const t = await terminal;
  assert.equal(t.code, 4003);
  await sleep(600);
  assert.equal(reconnects.length, 0, 'no reconnect after a terminal close');
  assert.equal(c.state, 'terminal');
  // connect() on a terminal client is not an unhandled rejection either way
  c.disconnect();
});

test('a bad token makes connect() reject and emits terminal without reconnecting', async () => {
  requireServer();
  const { RoomgateClient } = await import('../../web/client/roomgate.js');
  const { default: WebSocket } = await import('ws');
  const c = new RoomgateClient({
    url: process.env.RGTEST_URL,
    WebSocket,
    getToken: async () => 'x.y.z',
    backoff: { baseMs: 10, maxMs: 20 },
  });
  const reconnects = [];
  c.on('reconnecting', (d) => reconnects.push(d));
  const terminal = next(c, 'terminal');
  await assert.rejects(c.connect());
  const t = await terminal;
  assert.ok(t.code, JSON.stringify(t));
  await sleep(200);
  assert.equal(reconnects.length, 0);
});

test('its session resumed elsewhere (4005): the client tells the user and does not reconnect', async () => {
  requireServer();
  const { default: WebSocket } = await import('ws');
  const c = client(uid('stolen'));
  await c.connect();
  const reconnects = [];
  c.on('reconnecting', (d) => reconnects.push(d));
  const told = next(c, 'session_resumed_elsewhere', () => true, 8000);
  const terminal = next(c, 'terminal', () => true, 8000);

  // Someone else resumes the session with the client's wsToken.
  const other = new WebSocket(process.env.RGTEST_URL);
  const resumed = new Promise((resolve, reject) => {
    other.on('message', (raw) => {
      const frame = JSON.parse(String(raw));
      if (frame.type === 'handshake') {
        other.send(JSON.stringify({ type: 'auth', data: { wsToken: c.wsToken }, timestamp: Date.now() }));
      } else if (frame.type === 'auth_success') {
        resolve(frame.data);
      } else if (frame.type === 'error') {
        reject(new Error(JSON.stringify(frame.data)));
      }
    });
    other.on('error', reject);
  });
  await resumed;

  const event = await told;
  assert.equal(event.code, 4005);
  assert.equal(event.reason, 'Session resumed elsewhere');
  const t = await terminal;
  assert.equal(t.code, 4005);
  await sleep(600);
  assert.equal(reconnects.length, 0, 'no reconnect after 4005');
  assert.equal(c.state, 'terminal');
  other.close();
  c.disconnect();
});
