// The README's Node.js example, read from README.md at test time and run as written but
// for what it leaves to the reader: the server address and where the JWT comes from.
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { URL as WS_URL, mint, next, requireServer, uid } from './helpers.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '../..');

function nodeExample() {
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const block = [...readme.matchAll(/```js\n([\s\S]*?)```/g)]
    .map((m) => m[1])
    .find((b) => b.startsWith('// Node.js 20'));
  assert.ok(block, 'README.md has a ```js block starting with "// Node.js 20"');
  return block;
}

test('the README Node.js example connects as written', async () => {
  requireServer();
  let src = nodeExample();
  for (const part of ["'ws://127.0.0.1:8080/ws'", "'./web/client/roomgate.js'", 'myJwt()', 'await rg.connect();']) {
    assert.ok(src.includes(part), `the example no longer contains ${part}; update this test with it`);
  }
  src = src
    .replace("'ws://127.0.0.1:8080/ws'", JSON.stringify(WS_URL))
    // The example runs from the repository root; this copy runs from tests/client.
    .replace("'./web/client/roomgate.js'", "'../../web/client/roomgate.js'");
  const sub = uid('readme');
  globalThis.readmeJwt = () => mint(sub);
  const file = path.join(HERE, `.readme-example-${process.pid}.mjs`);
  fs.writeFileSync(file, `const myJwt = () => globalThis.readmeJwt();\n${src}\nexport { rg };\n`);
  let rg;
  try {
    ({ rg } = await import(pathToFileURL(file).href));
  } finally {
    fs.rmSync(file, { force: true });
  }
  assert.ok(rg.wsToken, 'connected: the wsToken of auth_success is kept');
  // And it is a working client: a room round trip.
  const joined = next(rg, 'room_joined');
  rg.joinRoom('readme');
  await joined;
  const echoed = next(rg, 'message', (m) => m.content === 'hello from the README');
  rg.sendMessage('readme', 'hello from the README');
  const m = await echoed;
  assert.equal(m.userId, sub);
  rg.disconnect();
});
