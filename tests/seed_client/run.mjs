#!/usr/bin/env node
// Seed-client compatibility harness for roomgate.
//
// The TypeScript class `SecureWebSocketClient` is NOT copied into this repo:
// it is extracted from the seed design document at run time, transpiled with
// `typescript.transpileModule`, and imported unchanged.
//
// Usage:
//   node tests/seed_client/run.mjs <wsUrl> <tokenA> <tokenB> <roomId>
//   node tests/seed_client/run.mjs --check-extract
//
// Env:
//   ROOMGATE_SEED  path to the seed .txt file (or to a directory of seed .txt
//                  files). Default: <repo>/../shared/seed/000_2f4a89482aedb31d.txt

import { promises as fsp, readFileSync, readdirSync, statSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO_ROOT = path.resolve(HERE, '..', '..');
const DEFAULT_SEED_NAME = '000_2f4a89482aedb31d.txt';
const DEFAULT_SEED = path.resolve(REPO_ROOT, '..', 'shared', 'seed', DEFAULT_SEED_NAME);
const CLASS_MARKER = 'class SecureWebSocketClient';
const EXPORT_MARKER = 'export class SecureWebSocketClient';
const OVERALL_TIMEOUT_MS = 20_000;
const POLL_MS = 20;
const EXPECTED_METHODS = ['connect', 'joinRoom', 'sendMessage', 'disconnect'];

const USAGE =
  'usage: node tests/seed_client/run.mjs <wsUrl> <tokenA> <tokenB> <roomId>\n' +
  '       node tests/seed_client/run.mjs --check-extract\n' +
  `env:   ROOMGATE_SEED=<seed .txt file or dir> (default ${DEFAULT_SEED})`;

let currentStep = 'startup';
let finished = false;

function fail(msg) {
  if (finished) return;
  finished = true;
  process.stderr.write(`seed_client FAIL [step: ${currentStep}]: ${msg}\n`);
  process.exit(1);
}

function succeed(summary) {
  if (finished) return;
  finished = true;
  process.stdout.write(JSON.stringify(summary) + '\n');
  process.exit(0);
}

// If the event loop drains before we reached a verdict, that's a failure, not success.
process.on('beforeExit', () => fail('event loop drained before the scenario finished'));
process.on('unhandledRejection', (err) => fail(`unhandled rejection: ${fmtErr(err)}`));
process.on('uncaughtException', (err) => fail(`uncaught exception: ${fmtErr(err)}`));

function fmtErr(err) {
  if (err == null) return String(err);
  if (err instanceof Error) return err.message || String(err);
  // ws's ErrorEvent-like objects
  if (typeof err === 'object') {
    if (err.message) return String(err.message);
    if (err.error) return fmtErr(err.error);
    if (err.type) return `event type=${err.type}`;
  }
  return String(err);
}

// ---------------------------------------------------------------------------
// Seed location + class extraction
// ---------------------------------------------------------------------------

function containsClass(file) {
  try {
    return readFileSync(file, 'utf8').includes(CLASS_MARKER);
  } catch {
    return false;
  }
}

function pickFromDir(dir, preferred) {
  const txts = readdirSync(dir)
    .filter((n) => n.endsWith('.txt'))
    .sort()
    .map((n) => path.join(dir, n));
  // Prefer the named file if it has the class; otherwise any .txt that does.
  const ordered = preferred && txts.includes(preferred)
    ? [preferred, ...txts.filter((f) => f !== preferred)]
    : txts;
  return ordered.find(containsClass) ?? null;
}

function locateSeed() {
  const env = process.env.ROOMGATE_SEED;
  if (env) {
    const p = path.resolve(env);
    if (!existsSync(p)) throw new Error(`ROOMGATE_SEED=${env} does not exist`);
    if (statSync(p).isDirectory()) {
      const f = pickFromDir(p, null);
      if (!f) throw new Error(`no .txt file in ROOMGATE_SEED dir ${p} contains "${CLASS_MARKER}"`);
      return f;
    }
    if (!containsClass(p)) throw new Error(`ROOMGATE_SEED file ${p} does not contain "${CLASS_MARKER}"`);
    return p;
  }
  // The seed sits in shared/seed beside the checkout; a clone placed deeper (as CI may do)
  // finds it in the nearest ancestor that has one.
  let dir = path.dirname(DEFAULT_SEED);
  for (let up = path.dirname(REPO_ROOT); !existsSync(dir); ) {
    const parent = path.dirname(up);
    if (parent === up) throw new Error(`no shared/seed directory beside ${REPO_ROOT} or any ancestor (set ROOMGATE_SEED)`);
    up = parent;
    dir = path.join(up, 'shared', 'seed');
  }
  const f = pickFromDir(dir, DEFAULT_SEED);
  if (!f) throw new Error(`no .txt file in ${dir} contains "${CLASS_MARKER}" (set ROOMGATE_SEED)`);
  return f;
}

function extractClassSource(seedText, seedPath) {
  const start = seedText.indexOf(EXPORT_MARKER);
  if (start < 0) throw new Error(`"${EXPORT_MARKER}" not found in ${seedPath}`);
  // End of the enclosing code fence: the next line consisting only of ``` .
  const fence = /^[ \t]*```[ \t]*$/m;
  const rest = seedText.slice(start);
  const m = fence.exec(rest);
  if (!m) throw new Error(`no closing code fence after "${EXPORT_MARKER}" in ${seedPath}`);
  const src = rest.slice(0, m.index).trimEnd() + '\n';
  if (!/\n\}\s*$/.test(src)) {
    throw new Error('extracted class text does not end with a closing brace; fence detection looks wrong');
  }
  return src;
}

async function loadSeedClient() {
  const seedPath = locateSeed();
  const tsSource = extractClassSource(readFileSync(seedPath, 'utf8'), seedPath);

  let ts;
  try {
    ts = (await import('typescript')).default;
  } catch (e) {
    throw new Error(`cannot import typescript (run "npm ci" in tests/seed_client): ${fmtErr(e)}`);
  }
  const out = ts.transpileModule(tsSource, {
    compilerOptions: {
      target: ts.ScriptTarget.ES2020,
      module: ts.ModuleKind.ESNext,
    },
    reportDiagnostics: true,
    fileName: 'SecureWebSocketClient.ts',
  });
  const diags = (out.diagnostics ?? []).filter((d) => d.category === ts.DiagnosticCategory.Error);
  if (diags.length) {
    const text = diags.map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n')).join('; ');
    throw new Error(`typescript transpile errors: ${text}`);
  }

  const tmpDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'roomgate-seed-client-'));
  const jsPath = path.join(tmpDir, 'SecureWebSocketClient.mjs');
  await fsp.writeFile(jsPath, out.outputText, 'utf8');
  let mod;
  try {
    mod = await import(pathToFileURL(jsPath).href);
  } finally {
    await fsp.rm(tmpDir, { recursive: true, force: true });
  }
  const Cls = mod.SecureWebSocketClient;
  if (typeof Cls !== 'function') throw new Error('transpiled module does not export SecureWebSocketClient');
  const methods = Object.getOwnPropertyNames(Cls.prototype).filter((n) => n !== 'constructor');
  const missing = EXPECTED_METHODS.filter((n) => !methods.includes(n));
  if (missing.length) throw new Error(`extracted class lacks methods: ${missing.join(', ')}`);
  return { Cls, seedPath, methods, tsChars: tsSource.length, jsChars: out.outputText.length };
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let deadline = Infinity;

/** Poll `pred` until truthy; fail on deadline or if any client reported an error. */
async function waitFor(desc, pred, errorSources = []) {
  currentStep = desc;
  for (;;) {
    for (const [name, arr] of errorSources) {
      if (arr.length) fail(`${name} onError called while waiting for ${desc}: ${JSON.stringify(arr)}`);
    }
    const v = pred();
    if (v) return v;
    if (Date.now() >= deadline) fail(`timed out waiting for ${desc}`);
    await sleep(POLL_MS);
  }
}

function jwtSub(token, label) {
  const parts = String(token).split('.');
  if (parts.length < 2) fail(`${label} is not a JWT (expected header.payload.signature)`);
  let payload;
  try {
    payload = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'));
  } catch (e) {
    fail(`${label} payload is not base64url JSON: ${fmtErr(e)}`);
  }
  if (payload?.sub === undefined || payload?.sub === null || payload?.sub === '') {
    fail(`${label} payload has no "sub" claim`);
  }
  return String(payload.sub);
}

function assert(cond, msg) {
  if (!cond) fail(`assertion failed: ${msg}`);
}

function checkChat(who, m, { roomId, userId, content }) {
  const s = JSON.stringify(m);
  assert(m && typeof m === 'object', `${who}: chat payload is not an object: ${s}`);
  assert(m.type === 'chat_message', `${who}: expected type "chat_message", got ${s}`);
  assert(m.content === content, `${who}: expected content ${JSON.stringify(content)}, got ${s}`);
  assert(m.roomId === roomId, `${who}: expected roomId ${JSON.stringify(roomId)}, got ${s}`);
  assert(String(m.userId) === userId, `${who}: expected userId ${JSON.stringify(userId)}, got ${s}`);
  assert(typeof m.id === 'string' && m.id.length > 0, `${who}: expected non-empty string id, got ${s}`);
  assert(typeof m.timestamp === 'number' && Number.isFinite(m.timestamp), `${who}: expected numeric timestamp, got ${s}`);
}

// ---------------------------------------------------------------------------
// Scenario
// ---------------------------------------------------------------------------

function instrument(client, label) {
  const ev = { label, messages: [], userJoined: [], userLeft: [], errors: [], raw: [], closes: [] };
  client.onMessage = (m) => ev.messages.push(m);
  client.onUserJoined = (u) => ev.userJoined.push(u);
  client.onUserLeft = (u) => ev.userLeft.push(u);
  client.onError = (e) => ev.errors.push(e);
  return ev;
}

/** Observe raw frames on the client's (TS-private) ws without touching the class. */
function tapRaw(client, ev) {
  const sock = client.ws;
  if (!sock || typeof sock.addEventListener !== 'function') {
    fail(`${ev.label}: client.ws is not an open WebSocket after connect()`);
  }
  sock.addEventListener('message', (event) => {
    try {
      ev.raw.push(JSON.parse(typeof event.data === 'string' ? event.data : String(event.data)));
    } catch {
      ev.raw.push({ unparseable: String(event.data) });
    }
  });
  sock.addEventListener('close', (event) => ev.closes.push({ code: event.code, reason: event.reason }));
  return sock;
}

async function runScenario(Cls, seedPath, [url, tokenA, tokenB, roomId]) {
  const started = Date.now();

  currentStep = 'decode JWT sub claims';
  const subA = jwtSub(tokenA, 'tokenA');
  const subB = jwtSub(tokenB, 'tokenB');

  globalThis.WebSocket = (await import('ws')).WebSocket;

  const a = new Cls(url, tokenA);
  const b = new Cls(url, tokenB);
  const evA = instrument(a, 'A');
  const evB = instrument(b, 'B');
  const errs = [['A', evA.errors], ['B', evB.errors]];

  currentStep = 'A connect (auth)';
  await a.connect().catch((e) => fail(`A connect() rejected: ${fmtErr(e)}`));
  const sockA = tapRaw(a, evA);
  currentStep = 'B connect (auth)';
  await b.connect().catch((e) => fail(`B connect() rejected: ${fmtErr(e)}`));
  const sockB = tapRaw(b, evB);

  const joined = (ev) => () => ev.raw.find((m) => m?.type === 'room_joined' && m?.data?.roomId === roomId);
  const rawError = (ev) => ev.raw.find((m) => m?.type === 'error');

  currentStep = 'A joinRoom';
  a.joinRoom(roomId);
  const joinA = await waitFor('A room_joined', () => rawError(evA) ? fail(`A got error frame: ${JSON.stringify(rawError(evA))}`) : joined(evA)(), errs);

  currentStep = 'B joinRoom';
  b.joinRoom(roomId);
  const joinB = await waitFor('B room_joined', () => rawError(evB) ? fail(`B got error frame: ${JSON.stringify(rawError(evB))}`) : joined(evB)(), errs);
  const partsB = joinB.data?.participants;
  assert(Array.isArray(partsB), `B room_joined.participants is not an array: ${JSON.stringify(joinB)}`);

  const uj = await waitFor('A onUserJoined for B', () => evA.userJoined.find((u) => String(u?.userId) === subB), errs);

  // Chat 1: A -> room; both A and B receive it.
  const text1 = 'hello from A';
  currentStep = 'A sendMessage';
  a.sendMessage(roomId, text1);
  const m1A = await waitFor('A onMessage "hello from A"', () => evA.messages.find((m) => m?.content === text1), errs);
  const m1B = await waitFor('B onMessage "hello from A"', () => evB.messages.find((m) => m?.content === text1), errs);
  checkChat('A', m1A, { roomId, userId: subA, content: text1 });
  checkChat('B', m1B, { roomId, userId: subA, content: text1 });
  assert(m1A.id === m1B.id, `A and B saw different message ids: ${m1A.id} vs ${m1B.id}`);

  // Chat 2: B -> room with markup; server strips < and >.
  const text2 = 'hi <b>A</b>';
  const want2 = 'hi bA/b';
  currentStep = 'B sendMessage';
  b.sendMessage(roomId, text2);
  const m2A = await waitFor('A onMessage sanitized "hi bA/b"', () => evA.messages.find((m) => m?.userId !== undefined && String(m.userId) === subB), errs);
  checkChat('A', m2A, { roomId, userId: subB, content: want2 });

  currentStep = 'final error check';
  assert(evA.errors.length === 0, `A onError calls: ${JSON.stringify(evA.errors)}`);
  assert(evB.errors.length === 0, `B onError calls: ${JSON.stringify(evB.errors)}`);

  currentStep = 'disconnect';
  a.disconnect();
  b.disconnect();
  // Give the close handshake a moment (polling, bounded); not a failure if slow.
  const closeDeadline = Math.min(deadline, Date.now() + 3000);
  while ((sockA.readyState !== 3 || sockB.readyState !== 3) && Date.now() < closeDeadline) await sleep(POLL_MS);

  succeed({
    ok: true,
    seed: seedPath,
    url,
    roomId,
    userA: subA,
    userB: subB,
    participantsAfterBJoin: partsB,
    userJoinedSeenByA: uj,
    messageIds: { helloFromA: m1A.id, fromB: m2A.id },
    sanitized: { sent: text2, received: m2A.content },
    counts: {
      aMessages: evA.messages.length,
      bMessages: evB.messages.length,
      aUserJoined: evA.userJoined.length,
      bUserJoined: evB.userJoined.length,
      aErrors: evA.errors.length,
      bErrors: evB.errors.length,
    },
    closed: {
      a: sockA.readyState === 3 ? evA.closes[0] ?? { code: null } : 'not closed within 3s',
      b: sockB.readyState === 3 ? evB.closes[0] ?? { code: null } : 'not closed within 3s',
    },
    elapsedMs: Date.now() - started,
  });
}

// ---------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------

async function main() {
  const args = process.argv.slice(2);
  if (args.includes('-h') || args.includes('--help')) {
    process.stdout.write(USAGE + '\n');
    process.exit(0);
  }
  const checkOnly = args.includes('--check-extract');
  if (!checkOnly && args.length !== 4) {
    process.stderr.write(USAGE + '\n');
    process.exit(2);
  }

  // Overall timeout covers extraction/transpilation as well as the scenario.
  deadline = Date.now() + OVERALL_TIMEOUT_MS;
  setTimeout(() => fail(`overall ${OVERALL_TIMEOUT_MS / 1000}s timeout exceeded`), OVERALL_TIMEOUT_MS);

  currentStep = 'extract + transpile + import seed class';
  let loaded;
  try {
    loaded = await loadSeedClient();
  } catch (e) {
    fail(fmtErr(e));
  }

  if (checkOnly) {
    succeed({ ok: true, mode: 'check-extract', seed: loaded.seedPath, className: loaded.Cls.name, methods: loaded.methods, tsChars: loaded.tsChars, jsChars: loaded.jsChars });
  }

  // The seed class logs via console.log; keep stdout clean for the JSON summary.
  console.log = (...xs) => console.error(...xs);
  await runScenario(loaded.Cls, loaded.seedPath, args);
}

main().catch((e) => fail(fmtErr(e)));
