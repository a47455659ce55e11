// The chat page: sign in, rooms, messages with history and upward paging, presence,
// connection state and notifications, on top of the client library. Every piece of
// server data reaches the DOM through textContent (session.js `el`), never as HTML.

import { RoomgateClient } from '/client/roomgate.js';
import * as session from '/session.js';

const $ = (id) => document.getElementById(id);
const { el } = session;

const HISTORY_PAGE = 50;
// Longer than the server's default refresh notice (auth.refresh_notice_secs = 60).
const TOKEN_MIN_LIFE_MS = 120_000;
// Terminal close codes (README "Close codes"): the library stops reconnecting on these,
// and for the page they mean the sign-in is over.
const SIGNED_OUT_CODES = new Set([4003]);

const state = {
  client: null,
  me: null,
  current: null, // room id shown
  rooms: new Map(), // roomId -> room view state
  inbox: new Map(), // notification id -> data
  pendingSends: 0,
  signedOut: false,
};

function roomState(roomId) {
  let r = state.rooms.get(roomId);
  if (!r) {
    r = {
      id: roomId,
      name: roomId,
      joined: false,
      permissions: { read: true, write: true, admin: false },
      epoch: null,
      bySeq: new Map(), // seq -> message data (one epoch at a time)
      pending: new Map(), // clientMsgId -> content, sent and not yet echoed
      oldest: null,
      hasMore: true,
      loadingOlder: false,
      members: [],
      markers: [], // {afterSeq, text}
    };
    state.rooms.set(roomId, r);
  }
  return r;
}

// ---- connection state -------------------------------------------------------

function setConn(s, detail) {
  const node = $('conn-state');
  node.dataset.state = s;
  node.textContent = detail ? `${s} (${detail})` : s;
}

function banner(text, kind = 'info') {
  const b = $('banner');
  if (!text) {
    b.hidden = true;
    b.textContent = '';
    return;
  }
  b.hidden = false;
  b.dataset.kind = kind;
  b.textContent = text;
}

// ---- sign-in ----------------------------------------------------------------

async function onLogin(ev) {
  ev.preventDefault();
  $('login-error').textContent = '';
  $('login-submit').disabled = true;
  try {
    await session.login($('login-username').value, $('login-password').value);
    $('login-password').value = '';
    await startChat();
  } catch (e) {
    $('login-error').textContent =
      e.status === 401 ? 'Wrong username or password.' : e.status === 429 ? 'Too many attempts; try again later.' : `Sign-in failed: ${e.message}`;
  } finally {
    $('login-submit').disabled = false;
  }
}

function showLogin() {
  $('login-view').hidden = false;
  $('chat-view').hidden = true;
  $('logout').hidden = true;
  $('inbox-toggle').hidden = true;
  $('admin-link').hidden = true;
  $('whoami').textContent = '';
}

async function onLogout() {
  stopClient();
  await session.logout();
  resetView();
  setConn('offline');
  banner('');
  showLogin();
}

function signedOutByServer(reason) {
  if (state.signedOut) return;
  state.signedOut = true;
  stopClient();
  session.forget();
  resetView();
  setConn('offline');
  showLogin();
  banner(`You were signed out: ${reason}. Sign in again to continue.`, 'error');
  document.body.dataset.signedOut = 'true';
}

function resetView() {
  state.rooms.clear();
  state.inbox.clear();
  state.current = null;
  $('room-list').replaceChildren();
  $('message-list').replaceChildren();
  $('presence-list').replaceChildren();
  $('inbox-list').replaceChildren();
  $('room-title').textContent = 'No room selected';
  $('room-readonly').hidden = true;
  $('leave-room').hidden = true;
  updateComposer();
  updateInboxCount();
}

// ---- client wiring ----------------------------------------------------------

function wsUrl() {
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${proto}//${location.host}/ws`;
}

function stopClient() {
  const c = state.client;
  state.client = null;
  if (c) {
    try {
      c.disconnect();
    } catch {
      // Already closed.
    }
  }
}

async function startChat() {
  state.signedOut = false;
  delete document.body.dataset.signedOut;
  banner('');
  const me = session.claims();
  state.me = me;
  $('login-view').hidden = true;
  $('chat-view').hidden = false;
  $('logout').hidden = false;
  $('inbox-toggle').hidden = false;
  $('whoami').textContent = me ? `${me.sub}${me.email ? ` <${me.email}>` : ''}` : '';

  const client = new RoomgateClient({
    url: wsUrl(),
    // The socket asks on `token_expiring` (a minute before the end, by default) and
    // after expiry closes: hand it a token that outlives that notice, not the old one.
    getToken: () => session.accessToken({ minLifeMs: TOKEN_MIN_LIFE_MS }),
  });
  state.client = client;
  wire(client);
  setConn('connecting');
  try {
    await client.connect();
  } catch (e) {
    if (state.client !== client) return;
    if (isTerminal(e)) signedOutByServer(describeTerminal(e));
    else setConn('reconnecting', e && e.message);
  }
  loadRoomDirectory();
}

function isTerminal(e) {
  if (!e) return false;
  if (SIGNED_OUT_CODES.has(e.code) || SIGNED_OUT_CODES.has(e.closeCode)) return true;
  return ['token_revoked', 'revoked', 'banned', 'auth_failed'].includes(e.code) || e.terminal === true;
}

function describeTerminal(e) {
  if (!e) return 'session ended';
  if (e.code === 4003 || e.closeCode === 4003 || e.code === 'token_revoked' || e.code === 'revoked')
    return 'your access was revoked';
  if (e.code === 4005 || e.closeCode === 4005)
    return 'this session was resumed elsewhere (another window, or someone holding its token); sign in again to take it back';
  return e.reason || e.message || 'session ended';
}

function wire(client) {
  const on = (type, fn) =>
    client.on(type, (data, ...rest) => {
      if (state.client === client) fn(data, ...rest);
    });

  on('auth_success', () => {
    setConn('connected');
    banner('');
  });
  on('connected', () => setConn('connected'));
  on('reconnecting', (info) => setConn('reconnecting', info && info.attempt ? `attempt ${info.attempt}` : ''));
  on('disconnected', (info) => {
    if (info && isTerminal(info)) signedOutByServer(describeTerminal(info));
    else setConn('reconnecting');
  });
  on('close', (info) => {
    if (info && isTerminal(info)) signedOutByServer(describeTerminal(info));
  });
  on('state', (s) => {
    const name = typeof s === 'string' ? s : s && s.state;
    if (name === 'open' || name === 'connected' || name === 'authenticated') setConn('connected');
    else if (name === 'reconnecting' || name === 'connecting') setConn('reconnecting');
    else if (name === 'closed' || name === 'offline' || name === 'stopped') setConn('offline');
  });
  on('terminal', (e) => signedOutByServer(describeTerminal(e)));
  on('revoked', (e) => signedOutByServer(describeTerminal(e || { code: 4003 })));
  on('fatal', (e) => signedOutByServer(describeTerminal(e)));

  on('room_joined', onRoomJoined);
  on('room_left', onRoomLeft);
  on('message', onMessage);
  on('message_ack', onAck);
  on('history', onHistory);
  on('presence', onPresence);
  on('user_joined', onPresenceChange);
  on('user_left', onPresenceChange);
  on('user_disconnected', onPresenceChange);
  on('permissions_updated', onPermissions);
  on('notification', onNotification);
  on('error', onServerError);
}

// ---- rooms --------------------------------------------------------------------

async function loadRoomDirectory() {
  // Stored rooms are listed only for users allowed to administer rooms; everyone else
  // sees the rooms they joined.
  try {
    const page = await session.api('GET', '/rooms?limit=100');
    for (const room of page.items || []) {
      const r = roomState(room.id);
      if (room.name) r.name = room.name;
    }
    $('rooms-note').textContent = '';
    $('admin-link').hidden = false;
  } catch (e) {
    $('rooms-note').textContent =
      e.status === 403 ? 'Type a room id to join it (a new id creates the room when the server allows it).' : '';
  }
  renderRoomList();
}

function renderRoomList() {
  const list = $('room-list');
  list.replaceChildren(
    ...[...state.rooms.values()].map((r) =>
      el(
        'li',
        { class: r.id === state.current ? 'room current' : 'room', dataset: { roomId: r.id } },
        el(
          'button',
          { type: 'button', class: 'room-button', onclick: () => selectRoom(r.id) },
          el('span', { class: 'room-name', text: r.name }),
          r.name !== r.id ? el('span', { class: 'room-id', text: r.id }) : null,
          r.joined && !r.permissions.write ? el('span', { class: 'readonly', text: 'read-only' }) : null,
          r.joined ? null : el('span', { class: 'room-id', text: 'not joined' }),
        ),
      ),
    ),
  );
}

async function onJoin(ev) {
  ev.preventDefault();
  const id = $('join-room').value.trim();
  if (!id) return;
  $('join-room').value = '';
  selectRoom(id);
}

function selectRoom(roomId) {
  const r = roomState(roomId);
  state.current = roomId;
  renderRoomList();
  renderRoom();
  if (!r.joined) {
    try {
      const p = state.client && state.client.joinRoom(roomId);
      if (p && typeof p.catch === 'function') p.catch((e) => showRoomError(roomId, e));
    } catch (e) {
      showRoomError(roomId, e);
    }
  }
}

function showRoomError(roomId, e) {
  if (state.current === roomId) $('send-error').textContent = errorText(e);
}

function onRoomJoined(d) {
  const r = roomState(d.roomId);
  const firstJoin = !r.joined;
  r.joined = true;
  r.permissions = d.permissions || r.permissions;
  const lastSeen = maxSeq(r);
  if (r.epoch !== null && d.epoch !== r.epoch) {
    // Another history: what we hold means nothing now.
    r.bySeq.clear();
    r.markers = [{ afterSeq: 0, text: 'History was reset; showing the new history.' }];
    r.oldest = null;
    r.hasMore = true;
  }
  r.epoch = d.epoch;
  if (d.recovered === true && lastSeen !== null && d.seq > lastSeen) {
    r.markers.push({ afterSeq: lastSeen, text: `${d.seq - lastSeen} missed message(s) recovered`, kind: 'recovered' });
  } else if (d.recovered === false && lastSeen !== null) {
    r.markers.push({ afterSeq: lastSeen, text: 'Could not recover missed messages; reloaded recent history.' });
    requestHistory(r, {});
  }
  if (firstJoin && r.bySeq.size === 0) requestHistory(r, {});
  requestPresence(r);
  renderRoomList();
  if (state.current === r.id) renderRoom();
}

function onRoomLeft(d) {
  const r = roomState(d.roomId);
  r.joined = false;
  const why = { kicked: 'you were removed from', banned: 'you were banned from', permission_revoked: 'you lost access to', room_deleted: 'deleted:' }[d.reason];
  if (why) banner(`${why} ${d.roomId}`, 'error');
  if (d.reason === 'room_deleted' || !d.reason) state.rooms.delete(d.roomId);
  if (state.current === d.roomId && !state.rooms.has(d.roomId)) state.current = null;
  renderRoomList();
  renderRoom();
}

function onPermissions(d) {
  const r = roomState(d.roomId);
  r.permissions = { read: d.read, write: d.write, admin: d.admin };
  renderRoomList();
  if (state.current === r.id) renderRoom();
}

async function onLeave() {
  const id = state.current;
  if (!id) return;
  const r = roomState(id);
  try {
    const p = state.client.leaveRoom(id);
    if (p && typeof p.catch === 'function') p.catch(() => {});
  } catch {
    // Not joined any more.
  }
  r.joined = false;
  state.rooms.delete(id);
  state.current = null;
  renderRoomList();
  renderRoom();
}

// ---- messages -----------------------------------------------------------------

function maxSeq(r) {
  let m = null;
  for (const s of r.bySeq.keys()) if (m === null || s > m) m = s;
  return m;
}

function addMessage(d) {
  const r = roomState(d.roomId);
  if (r.epoch !== null && d.epoch !== undefined && d.epoch !== r.epoch) return false;
  if (typeof d.seq !== 'number') return false;
  if (r.bySeq.has(d.seq)) return false;
  r.bySeq.set(d.seq, d);
  if (d.clientMsgId) r.pending.delete(d.clientMsgId);
  if (r.oldest === null || d.seq < r.oldest) r.oldest = d.seq;
  return true;
}

function onMessage(d) {
  if (!d || !d.roomId) return;
  if (addMessage(d) && state.current === d.roomId) renderMessages(true);
}

function onAck(d) {
  const r = roomState(d.roomId);
  if (d.clientMsgId) r.pending.delete(d.clientMsgId);
  if (state.current === d.roomId) renderMessages(false);
}

function requestHistory(r, query) {
  if (!state.client) return;
  r.loadingOlder = true;
  try {
    const p = state.client.history(r.id, { limit: HISTORY_PAGE, ...query });
    if (p && typeof p.then === 'function') {
      p.then((h) => {
        if (h && h.messages) onHistory(h);
      }).catch((e) => {
        r.loadingOlder = false;
        showRoomError(r.id, e);
      });
    }
  } catch (e) {
    r.loadingOlder = false;
    showRoomError(r.id, e);
  }
}

function onHistory(h) {
  if (!h || !h.roomId) return;
  const r = roomState(h.roomId);
  if (r.epoch === null) r.epoch = h.epoch;
  if (h.epoch !== r.epoch) return;
  const wasOlder = r.oldest !== null && h.messages.length && h.messages[0].seq < r.oldest;
  for (const m of h.messages) addMessage({ ...m, roomId: h.roomId, epoch: m.epoch ?? h.epoch });
  // `hasMore` looks older only for pages without `since`; pages of recent messages end
  // at the room's first message when they start at seq 1.
  const first = r.oldest;
  r.hasMore = h.messages.length > 0 ? Boolean(h.hasMore) && first > 1 : false;
  r.loadingOlder = false;
  if (state.current === r.id) {
    const box = $('messages');
    const before = box.scrollHeight - box.scrollTop;
    renderMessages(!wasOlder);
    // Keep the reader's place when older messages were put above it.
    if (wasOlder) box.scrollTop = box.scrollHeight - before;
    // A short first page may not fill the box; ask for more until it scrolls.
    maybeLoadOlder();
  }
}

function maybeLoadOlder() {
  const r = state.current && state.rooms.get(state.current);
  if (!r || !r.joined || r.loadingOlder || !r.hasMore || r.oldest === null) return;
  const box = $('messages');
  if (box.scrollTop < 40) requestHistory(r, { before: r.oldest });
}

function renderRoom() {
  const r = state.current && state.rooms.get(state.current);
  $('send-error').textContent = '';
  if (!r) {
    $('room-title').textContent = 'No room selected';
    $('room-readonly').hidden = true;
    $('leave-room').hidden = true;
    $('message-list').replaceChildren();
    $('presence-list').replaceChildren();
    $('history-status').textContent = '';
    updateComposer();
    return;
  }
  $('room-title').textContent = r.name;
  $('room-readonly').hidden = !(r.joined && !r.permissions.write);
  $('leave-room').hidden = !r.joined;
  renderMessages(true);
  renderPresence(r);
  updateComposer();
}

function renderMessages(stickToBottom) {
  const r = state.current && state.rooms.get(state.current);
  const list = $('message-list');
  if (!r) {
    list.replaceChildren();
    return;
  }
  const box = $('messages');
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  const seqs = [...r.bySeq.keys()].sort((a, b) => a - b);
  const markers = [...r.markers].sort((a, b) => a.afterSeq - b.afterSeq);
  const items = [];
  let mi = 0;
  for (const s of seqs) {
    while (mi < markers.length && markers[mi].afterSeq < s) items.push(markerItem(markers[mi++]));
    items.push(messageItem(r.bySeq.get(s)));
  }
  while (mi < markers.length) items.push(markerItem(markers[mi++]));
  for (const [cid, content] of r.pending) {
    items.push(
      el(
        'li',
        { class: 'message pending', dataset: { clientMsgId: cid } },
        el('span', { class: 'author', text: state.me ? state.me.sub : 'me' }),
        el('span', { class: 'content', text: content }),
        el('span', { class: 'meta', text: 'sending…' }),
      ),
    );
  }
  list.replaceChildren(...items);
  $('history-status').textContent = r.hasMore ? (r.loadingOlder ? 'Loading older messages…' : 'Scroll up for older messages') : r.bySeq.size ? 'Start of the conversation' : '';
  if (stickToBottom && atBottom) box.scrollTop = box.scrollHeight;
  else if (stickToBottom && seqs.length && !r.loadingOlder) box.scrollTop = box.scrollHeight;
}

function messageItem(m) {
  const mine = state.me && m.userId === state.me.sub;
  return el(
    'li',
    { class: `message${mine ? ' mine' : ''}${m.system ? ' system' : ''}`, dataset: { seq: m.seq, id: m.id } },
    el('span', { class: 'author', text: m.system ? 'system' : m.email || m.userId, title: m.userId }),
    el('span', { class: 'content', text: m.content }),
    el('time', { class: 'meta', text: new Date(m.timestamp).toLocaleTimeString() }),
  );
}

function markerItem(mk) {
  return el('li', { class: `marker${mk.kind ? ` ${mk.kind}` : ''}`, role: 'note', text: mk.text });
}

function updateComposer() {
  const r = state.current && state.rooms.get(state.current);
  const canWrite = Boolean(r && r.joined && r.permissions.write);
  $('message-input').disabled = !canWrite;
  $('send-button').disabled = !canWrite;
  $('message-input').placeholder = !r ? 'Join a room to write' : !r.joined ? 'Joining…' : canWrite ? `Message ${r.name}` : 'This room is read-only for you';
}

function onSend(ev) {
  ev.preventDefault();
  const r = state.current && state.rooms.get(state.current);
  const input = $('message-input');
  const content = input.value;
  if (!r || !content.trim()) return;
  $('send-error').textContent = '';
  input.value = '';
  try {
    const res = state.client.sendMessage(r.id, content);
    // The library returns the clientMsgId it resends under (or a promise of the ack);
    // until the echo arrives the message shows as pending.
    const cid = typeof res === 'string' ? res : res && typeof res.clientMsgId === 'string' ? res.clientMsgId : null;
    if (cid) r.pending.set(cid, content);
    if (res && typeof res.then === 'function') {
      res.then((ack) => {
        if (ack && ack.clientMsgId) r.pending.delete(ack.clientMsgId);
        if (state.current === r.id) renderMessages(false);
      }).catch((e) => {
        $('send-error').textContent = errorText(e);
      });
    }
    renderMessages(true);
  } catch (e) {
    $('send-error').textContent = errorText(e);
  }
}

function onServerError(e) {
  if (!e) return;
  if (isTerminal(e) && typeof e.code === 'number') {
    signedOutByServer(describeTerminal(e));
    return;
  }
  const text = errorText(e);
  if (e.roomId && e.roomId !== state.current) return;
  $('send-error').textContent = text;
}

function errorText(e) {
  if (!e) return 'Something went wrong';
  const code = e.code || (e.data && e.data.code);
  const known = {
    insufficient_permissions: 'You are not allowed to do that in this room.',
    room_not_found: 'No such room.',
    rate_limited: 'Slow down: too many messages.',
    not_member: 'Join the room first.',
    invalid_room_id: 'Room ids are 1-128 characters of A-Z a-z 0-9 _ - . :',
    room_full: 'The room is full.',
  };
  return known[code] || e.message || String(code || e);
}

// ---- presence -------------------------------------------------------------------

function requestPresence(r) {
  if (!state.client || !r.permissions.read) return;
  try {
    const p = state.client.presence(r.id);
    if (p && typeof p.then === 'function') p.then((d) => d && d.members && onPresence(d)).catch(() => {});
  } catch {
    // Presence is a nicety; the next join/leave asks again.
  }
}

function onPresence(d) {
  const r = roomState(d.roomId);
  r.members = d.members || [];
  if (state.current === r.id) renderPresence(r);
}

function onPresenceChange(d) {
  const r = d && d.roomId && state.rooms.get(d.roomId);
  if (r && r.joined) requestPresence(r);
}

function renderPresence(r) {
  $('presence-list').replaceChildren(
    ...r.members.map((m) =>
      el(
        'li',
        { class: 'member', dataset: { userId: m.userId } },
        el('span', { class: 'member-name', text: m.userId }),
        m.email ? el('span', { class: 'member-email', text: m.email }) : null,
        m.connections > 1 ? el('span', { class: 'meta', text: `${m.connections} tabs` }) : null,
      ),
    ),
  );
}

// ---- notifications ----------------------------------------------------------------

function onNotification(n) {
  if (!n || n.id === undefined || state.inbox.has(n.id)) return;
  state.inbox.set(n.id, n);
  renderInbox();
}

function renderInbox() {
  const items = [...state.inbox.values()].sort((a, b) => b.id - a.id);
  $('inbox-list').replaceChildren(
    ...items.map((n) =>
      el(
        'li',
        { class: 'notification', dataset: { id: n.id } },
        n.title ? el('strong', { text: n.title }) : null,
        el('span', { class: 'content', text: n.body }),
        el('span', { class: 'meta', text: `from ${n.from}${n.roomId ? ` in ${n.roomId}` : ''} · ${new Date(n.timestamp).toLocaleString()}` }),
      ),
    ),
  );
  updateInboxCount();
}

function updateInboxCount() {
  $('inbox-count').textContent = String(state.inbox.size);
}

function ackInbox() {
  const ids = [...state.inbox.keys()];
  if (!ids.length || !state.client) return;
  try {
    if (typeof state.client.ackNotifications === 'function') state.client.ackNotifications(ids);
    else if (typeof state.client.send === 'function') state.client.send('notification_ack', { ids });
  } catch {
    // Unacknowledged ones come back at the next sign-in.
  }
  state.inbox.clear();
  renderInbox();
}

// Creates a stored room through the API (the server's default ACL applies), then joins
// it. Users without the right are told so; an existing room is simply joined.
async function onCreate() {
  const input = $('join-room');
  const id = input.value.trim();
  if (!id || !input.checkValidity()) {
    input.reportValidity();
    return;
  }
  try {
    await session.api('POST', '/rooms', { id });
    $('rooms-note').textContent = `Created ${id}.`;
  } catch (e) {
    if (e.status === 403) {
      $('rooms-note').textContent = 'Creating rooms needs the rooms:create permission; joining a new id creates it where the server allows.';
      return;
    }
    if (e.status !== 409) {
      $('rooms-note').textContent = errorText(e);
      return;
    }
  }
  input.value = '';
  selectRoom(id);
}

// ---- start --------------------------------------------------------------------

function init() {
  $('login-form').addEventListener('submit', onLogin);
  $('logout').addEventListener('click', onLogout);
  $('join-form').addEventListener('submit', onJoin);
  $('create-submit').addEventListener('click', onCreate);
  $('send-form').addEventListener('submit', onSend);
  $('leave-room').addEventListener('click', onLeave);
  $('messages').addEventListener('scroll', maybeLoadOlder, { passive: true });
  $('inbox-toggle').addEventListener('click', () => {
    $('inbox').hidden = !$('inbox').hidden;
  });
  $('inbox-clear').addEventListener('click', ackInbox);
  window.addEventListener('offline', () => setConn('offline'));
  if (session.signedIn()) startChat();
  else showLogin();
  document.body.dataset.ready = 'true';
}

init();
