import test from 'node:test';
import assert from 'node:assert/strict';
import { client, next, requireServer, sleep, uid, until } from './helpers.mjs';

test('messages published while disconnected are recovered exactly once, in seq order', async () => {
  requireServer();
  const room = uid('recover');
  const reader = client(uid('reader'));
  const writer = client(uid('writer'));
  await reader.connect();
  await writer.connect();
  const joined = next(reader, 'room_joined', (d) => d.roomId === room);
  reader.joinRoom(room);
  await joined;
  const wjoined = next(writer, 'room_joined', (d) => d.roomId === room);
  writer.joinRoom(room);
  await wjoined;

  const seqs = [];
  const contents = [];
  reader.on('message', (m) => {
    if (m.roomId === room) {
      seqs.push(m.seq);
      contents.push(m.content);
    }
  });
  const recovered = [];
  reader.on('recovered', (d) => recovered.push(d));

  const N = 40;
  const acks = new Set();
  writer.on('message_ack', (a) => acks.add(a.clientMsgId));
  const publishing = (async () => {
    for (let i = 0; i < N; i++) {
      writer.sendMessage(room, `m${i}`);
      await sleep(15);
    }
  })();
  // drop the reader twice while the writer publishes
  await sleep(100);
  reader.dropConnection();
  await next(reader, 'connected');
  await sleep(150);
  reader.dropConnection();
  await publishing;
  await until('writer got every ack', () => acks.size === N, 10000);
  await until('reader saw every message', () => seqs.length >= N && seqs[seqs.length - 1] >= N, 10000);
  await sleep(200); // room for a duplicate to show up
  assert.deepEqual(seqs, Array.from({ length: N }, (_, i) => i + 1), 'every seq exactly once, in order');
  assert.deepEqual(contents, Array.from({ length: N }, (_, i) => `m${i}`));
  assert.ok(recovered.length >= 2, `recovered events: ${JSON.stringify(recovered)}`);
  assert.ok(recovered.every((r) => r.roomId === room && r.recovered === true), JSON.stringify(recovered));
  reader.disconnect();
  writer.disconnect();
});
