import test from 'node:test';
import assert from 'node:assert/strict';
import { client, next, requireServer, sleep, uid } from './helpers.mjs';

test('an unacknowledged message is re-sent after reconnecting and stored once', async () => {
  requireServer();
  const room = uid('resend');
  const c = client(uid('sender'));
  const watcher = client(uid('watcher'));
  await c.connect();
  await watcher.connect();
  const j1 = next(c, 'room_joined', (d) => d.roomId === room);
  c.joinRoom(room);
  await j1;
  const j2 = next(watcher, 'room_joined', (d) => d.roomId === room);
  watcher.joinRoom(room);
  await j2;
  const seenByWatcher = [];
  watcher.on('message', (m) => seenByWatcher.push(m));

  // sent and dropped at once: the frame may or may not have reached the server
  const idA = c.sendMessage(room, 'sent-then-dropped');
  c.dropConnection();
  // sent while offline: queued only
  const idB = c.sendMessage(room, 'sent-while-away');
  assert.equal(c.pending.size, 2);
  const ackA = next(c, 'message_ack', (a) => a.clientMsgId === idA, 8000);
  const ackB = next(c, 'message_ack', (a) => a.clientMsgId === idB, 8000);
  await Promise.all([ackA, ackB]);
  assert.equal(c.pending.size, 0, 'acknowledged messages are forgotten');

  await sleep(200);
  const page = next(c, 'history', (h) => h.roomId === room);
  c.history(room, { limit: 50 });
  const h = await page;
  const ids = h.messages.map((m) => m.clientMsgId);
  assert.equal(ids.filter((x) => x === idA).length, 1, JSON.stringify(ids));
  assert.equal(ids.filter((x) => x === idB).length, 1, JSON.stringify(ids));
  assert.equal(seenByWatcher.filter((m) => m.clientMsgId === idA).length, 1);
  assert.equal(seenByWatcher.filter((m) => m.clientMsgId === idB).length, 1);
  c.disconnect();
  watcher.disconnect();
});
