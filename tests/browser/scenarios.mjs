// Browser scenarios for the chat page and the admin console, in Debian's Chromium driven by
// playwright-core. Started by tests/browser.rs with the server's URL and credentials in the
// environment; talks to it on stdio for the restart ("STOP" -> "STOPPED", "START" ->
// "STARTED"). Prints "PASS <name>" per scenario and exits non-zero on the first failure.
// Waits are for elements and states with bounded timeouts, never fixed sleeps.

import { chromium } from 'playwright-core';
import { createInterface } from 'node:readline';
import { mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const BASE = process.env.ROOMGATE_URL;
const ADMIN_PW = process.env.ROOMGATE_ADMIN_PASSWORD;
const USER_PW = process.env.ROOMGATE_USER_PASSWORD;
const SHOTS = process.env.SCREENSHOT_DIR;
const WAIT = 15_000;
if (!BASE || !ADMIN_PW || !USER_PW || !SHOTS) throw new Error('ROOMGATE_URL, ROOMGATE_ADMIN_PASSWORD, ROOMGATE_USER_PASSWORD and SCREENSHOT_DIR are required');
mkdirSync(SHOTS, { recursive: true });

const XSS = `<img src=x onerror="window.__xss=1;alert(1)"><script>window.__xss=2;alert(2)</script><svg onload="alert(3)"></svg>`;

// ---- stdio with the Rust driver ------------------------------------------------------------
const stdinLines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function driver(request, answer) {
  process.stdout.write(`${request}\n`);
  const { value, done } = await stdinLines.next();
  if (done || value.trim() !== answer) throw new Error(`driver answered ${JSON.stringify(value)} to ${request}`);
}

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
}

// ---- HTTP helpers for setup ------------------------------------------------------------------
async function http(method, p, token, body) {
  const res = await fetch(`${BASE}${p}`, {
    method,
    headers: { ...(token ? { Authorization: `Bearer ${token}` } : {}), ...(body ? { 'Content-Type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : null };
}
async function tokenOf(username, password) {
  const r = await http('POST', '/auth/login', null, { username, password });
  check(r.status === 200, `login ${username}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body.access_token;
}

// ---- page helpers ----------------------------------------------------------------------------
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});

const pages = [];
async function newPage(label) {
  // A context per user: separate sessionStorage, as two browsers would have.
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT);
  page.dialogs = [];
  page.errors = [];
  page.on('dialog', (d) => {
    page.dialogs.push(d.message());
    d.dismiss().catch(() => {});
  });
  page.on('pageerror', (e) => page.errors.push(String(e)));
  page.on('console', (m) => {
    if (m.type() === 'error') page.errors.push(`console: ${m.text()}`);
  });
  page.label = label;
  pages.push(page);
  return page;
}

async function chatLogin(page, user, pw) {
  await page.goto(`${BASE}/`);
  await page.waitForSelector('body[data-ready=true]');
  await page.fill('#login-username', user);
  await page.fill('#login-password', pw);
  await page.click('#login-submit');
  await page.waitForSelector('#conn-state[data-state=connected]');
}

async function join(page, room) {
  await page.fill('#join-room', room);
  await page.click('#join-submit');
  await page.waitForSelector(`#room-list li[data-room-id="${room}"]`);
  await page.waitForSelector('#leave-room:not([hidden])');
}

async function say(page, text) {
  await page.fill('#message-input', text);
  await page.press('#message-input', 'Enter');
  await waitForMessage(page, text);
}

async function waitForMessage(page, text) {
  await page.waitForFunction(
    (t) => [...document.querySelectorAll('#message-list .message:not(.pending) .content')].some((n) => n.textContent === t),
    text,
    { timeout: WAIT },
  );
}

async function contents(page) {
  return page.$$eval('#message-list .message:not(.pending) .content', (ns) => ns.map((n) => n.textContent));
}

async function noInjection(page, root) {
  const found = await page.evaluate(
    (r) => ({
      elements: document.querySelectorAll(`${r} img, ${r} script, ${r} svg, ${r} iframe`).length,
      flag: window.__xss ?? null,
    }),
    root,
  );
  check(found.elements === 0, `${page.label}: ${found.elements} injected element(s) under ${root}`);
  check(found.flag === null, `${page.label}: injected script ran (window.__xss=${found.flag})`);
  check(page.dialogs.length === 0, `${page.label}: dialogs opened: ${page.dialogs.join(' | ')}`);
}

const scenarios = [];
function scenario(name, fn) {
  scenarios.push([name, fn]);
}

// ---- setup -------------------------------------------------------------------------------------
const adminToken = await tokenOf('admin', ADMIN_PW);
for (const [username, email] of [
  ['alice', 'alice@example.com'],
  ['bob', 'bob@example.com'],
  ['reader', 'reader@example.com'],
  ['carol', 'carol@example.com'],
  ['mallory', `mallory${XSS}@example.com`],
]) {
  const r = await http('POST', '/api/v1/users', adminToken, { username, email, roles: ['user'], password: USER_PW });
  check(r.status === 201 || r.status === 200, `create ${username}: ${r.status} ${JSON.stringify(r.body)}`);
}
for (const room of [
  { id: 'general', name: 'General' },
  { id: 'announce', name: 'Announcements', read: ['user'], write: ['admin'] },
  { id: 'xss-room', name: `Room ${XSS}` },
]) {
  const r = await http('POST', '/api/v1/rooms', adminToken, room);
  check(r.status === 201 || r.status === 200, `create room ${room.id}: ${r.status} ${JSON.stringify(r.body)}`);
}

const alice = await newPage('alice');
const bob = await newPage('bob');

scenario('csp_header', async () => {
  for (const p of ['/', '/admin', '/app.js']) {
    const r = await fetch(`${BASE}${p}`);
    check(r.status === 200, `${p}: status ${r.status}`);
    const csp = r.headers.get('content-security-policy') || '';
    check(csp.length > 0, `${p}: no Content-Security-Policy header`);
    check(/script-src[^;]*'self'/.test(csp) && !/script-src[^;]*'unsafe-inline'/.test(csp), `${p}: CSP allows inline script: ${csp}`);
    check(/connect-src[^;]*'self'/.test(csp), `${p}: CSP connect-src is not 'self': ${csp}`);
  }
  // The browser enforces it: an inline script added to the page does not run.
  await alice.goto(`${BASE}/`);
  const ran = await alice.evaluate(() => {
    const s = document.createElement('script');
    s.textContent = 'window.__inline = 1';
    document.body.append(s);
    return window.__inline ?? null;
  });
  check(ran === null, 'an inline script ran despite the CSP');
});

scenario('two_users_chat', async () => {
  await chatLogin(alice, 'alice', USER_PW);
  await chatLogin(bob, 'bob', USER_PW);
  await join(alice, 'general');
  await join(bob, 'general');
  await say(alice, 'hello from alice');
  await waitForMessage(bob, 'hello from alice');
  await say(bob, 'hi alice, bob here');
  await waitForMessage(alice, 'hi alice, bob here');
  await alice.waitForSelector('#presence-list li[data-user-id="bob"]');
  await bob.waitForSelector('#presence-list li[data-user-id="alice"]');
  const a = await contents(alice);
  check(JSON.stringify(a) === JSON.stringify(['hello from alice', 'hi alice, bob here']), `alice sees ${JSON.stringify(a)}`);
  await alice.screenshot({ path: path.join(SHOTS, 'chat.png') });
});

scenario('read_only_user', async () => {
  const reader = await newPage('reader');
  await chatLogin(reader, 'reader', USER_PW);
  await join(reader, 'announce');
  await reader.waitForSelector('#room-readonly:not([hidden])');
  check(await reader.isDisabled('#message-input'), 'message input enabled in a read-only room');
  check(await reader.isDisabled('#send-button'), 'send button enabled in a read-only room');
  // The server refuses too: the same user's token on a raw socket from the page.
  const answer = await reader.evaluate(async () => {
    const token = JSON.parse(sessionStorage.getItem('roomgate.session')).accessToken;
    const ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`);
    const frames = [];
    const send = (type, data) => ws.send(JSON.stringify({ type, data, timestamp: Date.now() }));
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve({ timeout: true, frames }), 10_000);
      ws.onmessage = (ev) => {
        const f = JSON.parse(ev.data);
        frames.push(f.type);
        if (f.type === 'handshake') send('auth', { token });
        else if (f.type === 'auth_success') send('join', { roomId: 'announce' });
        else if (f.type === 'room_joined') send('message', { roomId: 'announce', content: 'sneaky' });
        else if (f.type === 'error' || f.type === 'message') {
          clearTimeout(timer);
          ws.close();
          resolve({ type: f.type, code: f.data.code, frames });
        }
      };
    });
  });
  check(answer.type === 'error' && answer.code === 'insufficient_permissions', `server answered ${JSON.stringify(answer)}`);
  const history = await http('GET', '/api/v1/rooms/announce/history', adminToken);
  check(history.body.messages.length === 0, 'a read-only message was stored');
  await reader.context().close();
});

scenario('restart_reconnect_exactly_once', async () => {
  await say(alice, 'before restart 1');
  await waitForMessage(bob, 'before restart 1');
  await say(bob, 'before restart 2');
  await waitForMessage(alice, 'before restart 2');
  await driver('STOP', 'STOPPED');
  await alice.waitForSelector('#conn-state:not([data-state=connected])');
  await bob.waitForSelector('#conn-state:not([data-state=connected])');
  await driver('START', 'STARTED');
  await alice.waitForSelector('#conn-state[data-state=connected]', { timeout: 60_000 });
  await bob.waitForSelector('#conn-state[data-state=connected]', { timeout: 60_000 });
  // Both rejoin on their own; the composer comes back once the room is joined again.
  await alice.waitForSelector('#message-input:not([disabled])');
  await bob.waitForSelector('#message-input:not([disabled])');
  await say(alice, 'after restart 3');
  await waitForMessage(bob, 'after restart 3');
  await say(bob, 'after restart 4');
  await waitForMessage(alice, 'after restart 4');
  const expected = ['hello from alice', 'hi alice, bob here', 'before restart 1', 'before restart 2', 'after restart 3', 'after restart 4'];
  for (const p of [alice, bob]) {
    const got = await contents(p);
    check(JSON.stringify(got) === JSON.stringify(expected), `${p.label} shows ${JSON.stringify(got)}`);
  }
});

scenario('missed_messages_recovered', async () => {
  // Carol's socket runs through a route this script controls, so it can drop her
  // connection and hold her reconnect while others write: a real gap to recover.
  const carol = await newPage('carol');
  const sockets = [];
  let gate = null;
  await carol.routeWebSocket(/\/ws$/, async (ws) => {
    if (gate) await gate;
    sockets.push({ ws, server: ws.connectToServer() });
  });
  await chatLogin(carol, 'carol', USER_PW);
  await join(carol, 'general');
  await waitForMessage(carol, 'after restart 4');
  let release;
  gate = new Promise((r) => {
    release = r;
  });
  const dropped = sockets.at(-1);
  await dropped.ws.close({ code: 1001, reason: 'Server shutting down' });
  // The server side too, so presence does not count the dropped socket.
  await dropped.server.close({ code: 1000 });
  await carol.waitForSelector('#conn-state:not([data-state=connected])');
  await say(alice, 'while carol was away 1');
  await say(alice, 'while carol was away 2');
  release();
  await carol.waitForSelector('#conn-state[data-state=connected]');
  await waitForMessage(carol, 'while carol was away 2');
  const marker = await carol.$eval('#message-list .marker.recovered', (m) => ({ text: m.textContent, next: m.nextElementSibling?.querySelector('.content')?.textContent }));
  check(/missed message/.test(marker.text), `marker says ${JSON.stringify(marker.text)}`);
  check(marker.next === 'while carol was away 1', `marker precedes ${JSON.stringify(marker.next)}`);
  const got = await contents(carol);
  const tail = ['after restart 4', 'while carol was away 1', 'while carol was away 2'];
  check(JSON.stringify(got.slice(-3)) === JSON.stringify(tail) && new Set(got).size === got.length, `carol shows ${JSON.stringify(got)}`);
  await carol.screenshot({ path: path.join(SHOTS, 'chat-recovered.png') });
  await carol.context().close();
});

scenario('notification_inbox', async () => {
  const r = await http('POST', '/api/v1/notify', adminToken, { userId: 'alice', title: `Heads up ${XSS}`, body: 'deploy at five' });
  check(r.status === 200 && r.body.recipients === 1, `notify: ${r.status} ${JSON.stringify(r.body)}`);
  await alice.waitForSelector('#inbox-count:text-is("1")');
  await alice.click('#inbox-toggle');
  await alice.waitForSelector('#inbox-list li.notification');
  const text = await alice.textContent('#inbox-list li.notification');
  check(text.includes('deploy at five') && text.includes(`Heads up ${XSS}`), `inbox shows ${JSON.stringify(text)}`);
  await noInjection(alice, '#inbox');
  await alice.click('#inbox-clear');
  await alice.waitForSelector('#inbox-count:text-is("0")');
  await alice.click('#inbox-toggle');
});

scenario('history_on_join_and_scroll_up', async () => {
  const made = await http('POST', '/api/v1/rooms', adminToken, { id: 'archive', name: 'Archive' });
  check(made.status === 201, `create archive: ${made.status}`);
  const N = 120;
  for (let i = 0; i < N; i++) {
    const r = await http('POST', '/api/v1/publish', adminToken, { roomId: 'archive', content: `h${i}` });
    check(r.status === 200, `publish h${i}: ${r.status} ${JSON.stringify(r.body)}`);
  }
  await join(alice, 'archive');
  // The newest page arrives with the join; older ones only as the list is scrolled up.
  await waitForMessage(alice, `h${N - 1}`);
  const firstPage = await contents(alice);
  const box = await alice.evaluate(() => { const b = document.querySelector('#messages'); return { top: b.scrollTop, height: b.scrollHeight, client: b.clientHeight, overflow: getComputedStyle(b).overflowY }; });
  check(!firstPage.includes('h0'), `the first page already holds the oldest message (${firstPage.length} shown, box ${JSON.stringify(box)})`);
  await alice.waitForFunction(
    () => {
      const box = document.querySelector('#messages');
      box.scrollTop = 0;
      box.dispatchEvent(new Event('scroll'));
      return [...document.querySelectorAll('#message-list .content')].some((n) => n.textContent === 'h0');
    },
    null,
    { timeout: WAIT, polling: 200 },
  );
  const got = await contents(alice);
  const want = Array.from({ length: N }, (_, i) => `h${i}`);
  check(JSON.stringify(got) === JSON.stringify(want), `archive shows ${got.length} messages, in order once each: ${JSON.stringify(got.slice(0, 5))}...`);
  // Back to the room the next scenarios talk in.
  await alice.click('#room-list li[data-room-id="general"] button');
  await alice.waitForSelector('#room-list li.current[data-room-id="general"]');
});

scenario('xss_renders_as_text', async () => {
  const mallory = await newPage('mallory');
  await chatLogin(mallory, 'mallory', USER_PW);
  await join(mallory, 'general');
  await say(mallory, XSS);
  await waitForMessage(alice, XSS);
  // The email shows in the message author and the presence list.
  await alice.waitForFunction((x) => document.querySelector('#chat-view').textContent.includes(`mallory${x}@example.com`), XSS);
  await join(mallory, 'xss-room');
  await noInjection(mallory, '#chat-view');
  await noInjection(alice, '#chat-view');
  // Room names show to room administrators: the admin's chat page and console.
  const adminChat = await newPage('admin-chat');
  await chatLogin(adminChat, 'admin', ADMIN_PW);
  await adminChat.waitForFunction((x) => [...document.querySelectorAll('#room-list .room-name')].some((n) => n.textContent === `Room ${x}`), XSS);
  await join(adminChat, 'xss-room');
  await noInjection(adminChat, 'body');
  const console_ = await newPage('admin-console');
  await console_.goto(`${BASE}/admin`);
  await console_.fill('#login-username', 'admin');
  await console_.fill('#login-password', ADMIN_PW);
  await console_.click('#login-submit');
  await console_.waitForSelector('body[data-admin=true]');
  await console_.click('button[data-tab=users]');
  await console_.waitForSelector('#user-rows tr[data-username=mallory]');
  await console_.click('button[data-tab=rooms]');
  await console_.waitForSelector('#room-rows tr[data-room-id=xss-room]');
  await console_.click('#room-rows tr[data-room-id=general] button:text("Manage")');
  await console_.waitForFunction((x) => document.querySelector('#room-detail').textContent.includes(x), XSS);
  await noInjection(console_, 'body');
  await mallory.context().close();
  await adminChat.context().close();
  await console_.context().close();
});

scenario('create_room_where_allowed', async () => {
  // A plain user is told creating needs a permission; nothing is created.
  await alice.fill('#join-room', 'alice-made');
  await alice.click('#create-submit');
  await alice.waitForFunction(() => /rooms:create/.test(document.querySelector('#rooms-note').textContent));
  const none = await http('GET', '/api/v1/rooms/alice-made', adminToken);
  check(none.status === 404, `a refused create left room alice-made: ${none.status}`);
  // An administrator creates a stored room and is in it at once.
  const adminChat = await newPage('admin-create');
  await chatLogin(adminChat, 'admin', ADMIN_PW);
  await adminChat.fill('#join-room', 'team-new');
  await adminChat.click('#create-submit');
  await adminChat.waitForSelector('#room-list li[data-room-id="team-new"]');
  await adminChat.waitForSelector('#leave-room:not([hidden])');
  const made = await http('GET', '/api/v1/rooms/team-new', adminToken);
  check(made.status === 200 && made.body.id === 'team-new', `room team-new: ${made.status}`);
  await adminChat.context().close();
});

scenario('admin_console_and_revocation', async () => {
  // A user without an admin permission is refused.
  const refused = await newPage('alice-admin');
  await refused.goto(`${BASE}/admin`);
  await refused.fill('#login-username', 'alice');
  await refused.fill('#login-password', USER_PW);
  await refused.click('#login-submit');
  await refused.waitForSelector('body[data-refused=true]');
  check(await refused.isVisible('#refusal'), 'refusal not shown');
  check(!(await refused.isVisible('#admin-view')), 'console shown to a non-admin');
  await refused.context().close();

  const admin = await newPage('admin');
  await admin.goto(`${BASE}/admin`);
  await admin.fill('#login-username', 'admin');
  await admin.fill('#login-password', ADMIN_PW);
  await admin.click('#login-submit');
  await admin.waitForSelector('body[data-admin=true]');
  // Live stats: two chat pages are connected.
  await admin.waitForFunction(() => Number(document.querySelector('#stat-authenticated .value')?.textContent) >= 2);
  // Refreshed: the update time changes without any action.
  const first = await admin.textContent('#stats-updated');
  await admin.waitForFunction((f) => document.querySelector('#stats-updated').textContent !== f, first, { timeout: 10_000 });
  await admin.screenshot({ path: path.join(SHOTS, 'admin.png') });
  await admin.click('button[data-tab=events]');
  await admin.waitForSelector('#event-rows tr td');
  await admin.click('button[data-tab=users]');
  await admin.click('#user-rows tr[data-username=bob] button.revoke-user');
  await admin.waitForFunction(() => /Revoked every token of bob/.test(document.querySelector('#banner').textContent));
  await bob.waitForSelector('body[data-signed-out=true]');
  await bob.waitForSelector('#login-view:not([hidden])');
  const text = await bob.textContent('#banner');
  check(/signed out/i.test(text), `bob's banner says ${JSON.stringify(text)}`);
  check(await alice.isVisible('#conn-state[data-state=connected]'), 'alice lost her connection too');
  // The revocation is listed, by user.
  await admin.click('button[data-tab=revocations]');
  await admin.waitForSelector('#revocation-rows tr[data-revocation="user:bob"]');
  // A role is defined in the console and given to a user id; the API sees both.
  await admin.click('button[data-tab=roles]');
  await admin.waitForSelector('#role-rows tr[data-role=admin]');
  await admin.fill('#role-name', 'helper');
  await admin.fill('#role-perms', 'stats:read');
  await admin.click('#role-put button[type=submit]');
  await admin.waitForFunction(() => document.querySelector('#role-rows tr[data-role=helper]')?.textContent.includes('stats:read'));
  await admin.click('button[data-tab=users]');
  await admin.fill('#roles-user', 'alice');
  await admin.fill('#roles-value', 'user, helper');
  await admin.click('#user-roles button[type=submit]');
  await admin.waitForFunction(() => /Roles of alice: user, helper/.test(document.querySelector('#banner').textContent));
  const aliceNow = await http('GET', '/api/v1/users/alice', adminToken);
  check(aliceNow.body.permissions.includes('stats:read'), `alice's permissions: ${JSON.stringify(aliceNow.body.permissions)}`);
  await admin.context().close();
});

scenario('readme_browser_example', async () => {
  // The README's browser example, read from README.md now, written into a document the
  // gateway served (its JSON 404: the gateway's own pages forbid inline script, and a
  // document the browser made up itself would count as a public page that may not reach
  // 127.0.0.1), with the helpers it leaves to the reader defined around it.
  const readme = readFileSync(path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../README.md'), 'utf8');
  const example = [...readme.matchAll(/```html\n([\s\S]*?)```/g)].map((m) => m[1]).find((b) => b.includes('RoomgateClient'));
  check(example, 'README.md has the browser example');
  const login = await http('POST', '/auth/login', null, { username: 'carol', password: USER_PW });
  check(login.status === 200, `login carol: ${login.status}`);
  const prelude = `<script>
    window.shown = []; window.statuses = [];
    function show(email, content) { window.shown.push(content); }
    function status(s) { window.statuses.push(s); }
    function reloadHistory() {}
    function signOut(reason) { window.statuses.push('signed out: ' + reason); }
    sessionStorage.refreshToken = ${JSON.stringify(login.body.refresh_token)};
  </script>`;
  const page = await newPage('readme');
  const blank = await page.goto(`${BASE}/readme-example`);
  check(blank.status() === 404 && !blank.headers()['content-security-policy'], 'the gateway 404 has no CSP');
  await page.setContent(`<!doctype html>${prelude}${example}`);
  await page.waitForFunction(() => window.shown.includes('hello'));
  const statuses = await page.evaluate(() => window.statuses);
  check(statuses.includes('connected'), `statuses: ${JSON.stringify(statuses)}`);
  const history = await http('GET', '/api/v1/rooms/general/history?limit=100', adminToken);
  check(history.body.messages.some((m) => m.userId === 'carol' && m.content === 'hello'), 'the example\'s message is in the room\'s history');
  await page.context().close();
});

let failed = false;
for (const [name, fn] of scenarios) {
  const started = Date.now();
  try {
    await fn();
    console.log(`PASS ${name} (${Date.now() - started} ms)`);
  } catch (e) {
    failed = true;
    console.log(`FAIL ${name}: ${e && e.stack ? e.stack : e}`);
    for (const p of pages) {
      if (!p.isClosed()) {
        await p.screenshot({ path: path.join(SHOTS, `fail-${name}-${p.label}.png`) }).catch(() => {});
        console.log(`  ${p.label} errors: ${JSON.stringify(p.errors)}`);
      }
    }
    break;
  }
}
for (const p of [alice, bob]) {
  if (p.errors.length) console.log(`NOTE ${p.label} page errors: ${JSON.stringify(p.errors)}`);
}
await browser.close();
process.exit(failed ? 1 : 0);
