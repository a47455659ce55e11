// Shared helpers for the client-library tests. The Rust driver (tests/client_lib.rs) sets
// RGTEST_URL (ws://127.0.0.1:PORT/ws), RGTEST_JWT_SECRET, RGTEST_BIN, RGTEST_DATA
// and the secrets the CLI needs.
import crypto from 'node:crypto';
import { execFile } from 'node:child_process';
import WebSocket from 'ws';
import { RoomgateClient } from '../../web/client/roomgate.js';

export const URL = process.env.RGTEST_URL;
const SECRET = process.env.RGTEST_JWT_SECRET;

// Any unhandled rejection anywhere fails the run.
process.on('unhandledRejection', (reason) => {
  console.error('unhandledRejection:', reason);
  process.exitCode = 1;
  throw reason;
});

export function requireServer(t) {
  if (!URL || !SECRET) {
    throw new Error('RGTEST_URL and RGTEST_JWT_SECRET must be set (run through cargo test --test client_lib)');
  }
}

const b64 = (v) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');

/** An HS256 JWT for `sub` living `ttlSecs`. */
export function mint(sub, ttlSecs = 3600) {
  const now = Math.floor(Date.now() / 1000);
  const head = b64({ alg: 'HS256', typ: 'JWT' });
  const body = b64({ sub, email: `${sub}@example.com`, iat: now, exp: now + ttlSecs, jti: crypto.randomUUID() });
  const sig = crypto.createHmac('sha256', SECRET).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}

export function uid(prefix) {
  return `${prefix}-${crypto.randomBytes(4).toString('hex')}`;
}

/** A client with fast backoff for tests. */
export function client(sub, extra = {}) {
  return new RoomgateClient({
    url: URL,
    WebSocket,
    getToken: async () => mint(sub),
    backoff: { baseMs: 50, maxMs: 200, factor: 2 },
    ...extra,
  });
}

/** Resolves with the data of the next `type` event that passes `pred`, or rejects after `ms`. */
export function next(c, type, pred = () => true, ms = 5000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      c.off(type, h);
      reject(new Error(`timed out waiting for ${type}`));
    }, ms);
    const h = (d) => {
      if (!pred(d)) return;
      clearTimeout(timer);
      c.off(type, h);
      resolve(d);
    };
    c.on(type, h);
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function until(what, cond, ms = 5000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return;
    await sleep(20);
  }
  throw new Error(`timed out: ${what}`);
}

/** Runs the roomgate CLI against the running server's data dir. */
export function cli(args) {
  return new Promise((resolve, reject) => {
    execFile(process.env.RGTEST_BIN, [...args, '--data', process.env.RGTEST_DATA], { env: process.env }, (err, stdout, stderr) => {
      if (err) reject(new Error(`cli ${args.join(' ')} failed: ${err.message}\n${stdout}${stderr}`));
      else resolve(stdout);
    });
  });
}
