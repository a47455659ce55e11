// The admin console: every view and action is a call to /api/v1 with the signed-in
// user's bearer token, so the server's permission checks are the only gate; the page
// just shows a refusal when they say no. Data is rendered through textContent only.

import * as session from '/session.js';

const $ = (id) => document.getElementById(id);
const { el, api, time } = session;

const STATS_EVERY_MS = 3000;
let statsTimer = null;
let lastStats = null; // {at, received, published} for messages per second
let usersCursor = null;
let roomsCursor = null;
let revocationsCursor = null;
const eventPages = { cursors: [null], index: 0 };

function list(s) {
  return s
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean);
}

function banner(text, kind = 'info') {
  const b = $('banner');
  b.hidden = !text;
  b.dataset.kind = kind;
  b.textContent = text || '';
}

function actionError(e) {
  $('action-error').textContent = e ? `${e.status ? `${e.status} ` : ''}${e.code || ''} ${e.message || ''}`.trim() : '';
}

// Runs an action, shows its failure, and re-renders what changed.
async function act(fn, after) {
  actionError(null);
  try {
    const r = await fn();
    if (after) await after(r);
    return r;
  } catch (e) {
    if (e.status === 401) return signedOut();
    actionError(e);
    return null;
  }
}

function button(text, onclick, cls) {
  return el('button', { type: 'button', class: cls, onclick }, text);
}

// ---- sign-in and the permission check -------------------------------------------

function signedOut() {
  stopStats();
  session.forget();
  $('admin-view').hidden = true;
  $('refusal').hidden = true;
  $('login-view').hidden = false;
  $('logout').hidden = true;
  $('whoami').textContent = '';
}

async function onLogin(ev) {
  ev.preventDefault();
  $('login-error').textContent = '';
  try {
    await session.login($('login-username').value, $('login-password').value);
    $('login-password').value = '';
    await enter();
  } catch (e) {
    $('login-error').textContent = e.status === 401 ? 'Wrong username or password.' : `Sign-in failed: ${e.message}`;
  }
}

async function enter() {
  const me = session.claims();
  $('whoami').textContent = me ? me.sub : '';
  $('logout').hidden = false;
  $('login-view').hidden = true;
  // The console is for holders of an admin permission. Ask the server what this user
  // holds (users:manage shows the user's own permissions); a refusal there and on the
  // stats means there is nothing here for them.
  let perms = null;
  try {
    const u = await api('GET', `/users/${encodeURIComponent(me.sub)}`);
    perms = u.permissions || [];
  } catch (e) {
    if (e.status === 401) return signedOut();
    try {
      await api('GET', '/stats');
      perms = ['stats:read'];
    } catch (e2) {
      if (e2.status === 401) return signedOut();
      perms = [];
    }
  }
  const adminPerms = ['users:manage', 'roles:manage', 'rooms:admin', 'events:read', 'stats:read', 'apikeys:manage'];
  if (!perms.some((p) => adminPerms.includes(p))) {
    $('refusal').hidden = false;
    $('admin-view').hidden = true;
    document.body.dataset.refused = 'true';
    return;
  }
  document.body.dataset.permissions = perms.join(' ');
  $('refusal').hidden = true;
  $('admin-view').hidden = false;
  showTab('stats');
  document.body.dataset.admin = 'true';
}

// ---- tabs --------------------------------------------------------------------------

const loaders = {
  stats: startStats,
  users: () => loadUsers(true),
  roles: loadRoles,
  rooms: () => loadRooms(true),
  revocations: () => loadRevocations(true),
  events: () => loadEvents(0),
  apikeys: loadKeys,
};

function showTab(name) {
  for (const b of document.querySelectorAll('.admin-tabs button')) b.setAttribute('aria-selected', String(b.dataset.tab === name));
  for (const s of document.querySelectorAll('.tab')) s.hidden = s.id !== `tab-${name}`;
  if (name !== 'stats') stopStats();
  actionError(null);
  loaders[name]();
}

// ---- stats ---------------------------------------------------------------------------

function stopStats() {
  clearTimeout(statsTimer);
  statsTimer = null;
}

async function startStats() {
  stopStats();
  await refreshStats();
}

async function refreshStats() {
  try {
    const s = await api('GET', '/stats');
    const now = Date.now();
    let rate = '–';
    if (lastStats) {
      const dt = (now - lastStats.at) / 1000;
      if (dt > 0) rate = ((s.messagesPublished - lastStats.published) / dt).toFixed(1);
    }
    lastStats = { at: now, published: s.messagesPublished };
    const cards = [
      ['Connections', s.totalConnections, 'stat-connections'],
      ['Authenticated', s.authenticatedConnections, 'stat-authenticated'],
      ['Live rooms', s.totalRooms, 'stat-rooms'],
      ['Participants', s.totalParticipants, 'stat-participants'],
      ['Messages/s', rate, 'stat-rate'],
      ['Messages published', s.messagesPublished, 'stat-published'],
      ['Stored rooms', s.storedRooms, 'stat-stored-rooms'],
      ['Sessions', s.sessions, 'stat-sessions'],
      ['Revoked tokens', s.revokedTokens, 'stat-revoked'],
      ['Security events', s.securityEvents, 'stat-events'],
      ['Uptime', `${Math.floor((s.uptimeSecs || 0) / 60)} min`, 'stat-uptime'],
    ];
    $('stats').replaceChildren(
      ...cards.map(([label, v, id]) => el('div', { class: 'stat', id }, el('div', { class: 'value', text: v ?? '–' }), el('div', { class: 'label', text: label }))),
    );
    $('stats-updated').textContent = `Last update ${new Date(now).toLocaleTimeString()}.`;
  } catch (e) {
    if (e.status === 401) return signedOut();
    $('stats').replaceChildren(el('p', { class: 'note', text: e.status === 403 ? 'You may not read statistics (stats:read).' : `Stats unavailable: ${e.message}` }));
  }
  if (!$('tab-stats').hidden) statsTimer = setTimeout(refreshStats, STATS_EVERY_MS);
}

// ---- users -----------------------------------------------------------------------------

function refused(tbody, cols, e, perm) {
  tbody.replaceChildren(el('tr', {}, el('td', { colspan: cols, class: 'note', text: e.status === 403 ? `Not permitted (needs ${perm}).` : e.message })));
}

async function loadUsers(first) {
  const tbody = $('user-rows');
  if (first) usersCursor = null;
  try {
    const page = await api('GET', `/users?limit=50${usersCursor ? `&cursor=${encodeURIComponent(usersCursor)}` : ''}`);
    const rows = page.items.map((u) =>
      el(
        'tr',
        { dataset: { username: u.username } },
        el('td', { text: u.username }),
        el('td', { text: u.email || '' }),
        el('td', { text: u.roles.join(', ') }),
        el('td', { text: u.disabled ? 'disabled' : 'active' }),
        el(
          'td',
          { class: 'actions' },
          button('Details', () => showUser(u.username)),
          button('Roles…', () => editRoles(u)),
          u.disabled
            ? button('Enable', () => act(() => api('POST', `/users/${encodeURIComponent(u.username)}/enable`), () => loadUsers(true)))
            : button('Disable', () => act(() => api('POST', `/users/${encodeURIComponent(u.username)}/disable`), () => loadUsers(true))),
          button('Revoke tokens', () => revokeUser(u.username), 'danger revoke-user'),
          button('Delete', () => confirm(`Delete ${u.username}?`) && act(() => api('DELETE', `/users/${encodeURIComponent(u.username)}`), () => loadUsers(true)), 'danger'),
        ),
      ),
    );
    if (first) tbody.replaceChildren(...rows);
    else tbody.append(...rows);
    usersCursor = page.nextCursor;
    $('users-more').hidden = !usersCursor;
  } catch (e) {
    if (e.status === 401) return signedOut();
    refused(tbody, 5, e, 'users:manage');
  }
}

async function revokeUser(userId) {
  await act(
    () => api('POST', '/revocations', { userId }),
    (r) => banner(`Revoked every token of ${userId}; ${r.closedConnections} connection(s) closed.`),
  );
}

function editRoles(u) {
  const value = prompt(`Roles of ${u.username} (comma-separated)`, u.roles.join(', '));
  if (value === null) return;
  act(() => api('PUT', `/users/${encodeURIComponent(u.username)}/roles`, { roles: list(value) }), () => loadUsers(true));
}

async function showUser(username) {
  const box = $('user-detail');
  box.hidden = false;
  await act(async () => {
    const u = await api('GET', `/users/${encodeURIComponent(username)}`);
    const sessions = await api('GET', `/users/${encodeURIComponent(username)}/sessions?limit=100`);
    box.replaceChildren(
      el('h2', { text: `${u.username}: ${u.connections} open connection(s)` }),
      el('p', { class: 'note', text: `Permissions: ${u.permissions.join(', ') || 'none'} · created ${time(u.createdMs)}` }),
      el('div', { class: 'actions' }, button('Set password…', () => setPassword(username))),
      el(
        'table',
        {},
        el('thead', {}, el('tr', {}, ...['Session', 'Connection', 'Client IP', 'Created', 'Expires', ''].map((h) => el('th', { text: h })))),
        el(
          'tbody',
          {},
          ...sessions.items.map((s) =>
            el(
              'tr',
              {},
              el('td', { text: s.sessionId }),
              el('td', { text: s.connectionId }),
              el('td', { text: s.clientIp }),
              el('td', { text: time(s.createdMs) }),
              el('td', { text: time(s.expiresMs) }),
              el(
                'td',
                {},
                button('Terminate', () => act(() => api('DELETE', `/users/${encodeURIComponent(username)}/sessions/${encodeURIComponent(s.sessionId)}`), () => showUser(username)), 'danger'),
              ),
            ),
          ),
        ),
      ),
    );
  });
}

function setPassword(username) {
  const pw = prompt(`New password for ${username} (empty: generate one)`, '');
  if (pw === null) return;
  act(
    () => api('POST', `/users/${encodeURIComponent(username)}/password`, pw ? { password: pw } : {}),
    (r) => showSecret('user-secret', r.password ? `Generated password for ${username} (shown once): ${r.password}` : `Password of ${username} changed.`),
  );
}

function showSecret(id, text) {
  $(id).hidden = false;
  $(id).textContent = text;
}

async function onCreateUser(ev) {
  ev.preventDefault();
  const body = { username: $('new-username').value.trim(), roles: list($('new-roles').value) };
  if ($('new-email').value.trim()) body.email = $('new-email').value.trim();
  if ($('new-password').value) body.password = $('new-password').value;
  await act(
    () => api('POST', '/users', body),
    async (r) => {
      showSecret('user-secret', r.password ? `Created ${r.username}; generated password (shown once): ${r.password}` : `Created ${r.username}.`);
      ev.target.reset();
      await loadUsers(true);
    },
  );
}

async function onSetRoles(ev) {
  ev.preventDefault();
  const userId = $('roles-user').value.trim();
  await act(
    () => api('PUT', `/users/${encodeURIComponent(userId)}/roles`, { roles: list($('roles-value').value) }),
    async (r) => {
      banner(`Roles of ${r.userId}: ${r.roles.join(', ') || 'none stored'}; open sockets re-evaluated.`);
      ev.target.reset();
      await loadUsers(true);
    },
  );
}

// ---- roles -----------------------------------------------------------------------------

async function loadRoles() {
  const tbody = $('role-rows');
  try {
    const page = await api('GET', '/roles?limit=200');
    tbody.replaceChildren(
      ...page.items.map((r) =>
        el(
          'tr',
          { dataset: { role: r.name } },
          el('td', { text: r.builtin ? `${r.name} (built in)` : r.name }),
          el('td', { text: r.permissions.join(', ') }),
          el('td', { text: r.description || '' }),
          el(
            'td',
            { class: 'actions' },
            button('Edit', () => {
              $('role-name').value = r.name;
              $('role-perms').value = r.permissions.join(', ');
              $('role-description').value = r.description || '';
            }),
            r.builtin ? null : button('Delete', () => confirm(`Delete role ${r.name}?`) && act(() => api('DELETE', `/roles/${encodeURIComponent(r.name)}`), loadRoles), 'danger'),
          ),
        ),
      ),
    );
  } catch (e) {
    if (e.status === 401) return signedOut();
    refused(tbody, 4, e, 'roles:manage');
  }
}

async function onPutRole(ev) {
  ev.preventDefault();
  const name = $('role-name').value.trim();
  const body = { permissions: list($('role-perms').value) };
  if ($('role-description').value.trim()) body.description = $('role-description').value.trim();
  await act(
    () => api('PUT', `/roles/${encodeURIComponent(name)}`, body),
    async () => {
      banner(`Role ${name} saved; open sockets re-evaluated.`);
      ev.target.reset();
      await loadRoles();
    },
  );
}

// ---- rooms -----------------------------------------------------------------------------

async function loadRooms(first) {
  const tbody = $('room-rows');
  if (first) roomsCursor = null;
  try {
    const page = await api('GET', `/rooms?limit=50${roomsCursor ? `&cursor=${encodeURIComponent(roomsCursor)}` : ''}`);
    const rows = page.items.map((r) =>
      el(
        'tr',
        { dataset: { roomId: r.id } },
        el('td', { text: r.id }),
        el('td', { text: r.name || '' }),
        el('td', { text: (r.read || []).join(', ') }),
        el('td', { text: (r.write || []).join(', ') }),
        el('td', { text: (r.admin || []).join(', ') }),
        el(
          'td',
          { class: 'actions' },
          button('Manage', () => showRoom(r.id)),
          button('Delete', () => confirm(`Delete room ${r.id} and its history?`) && act(() => api('DELETE', `/rooms/${encodeURIComponent(r.id)}`), () => loadRooms(true)), 'danger'),
        ),
      ),
    );
    if (first) tbody.replaceChildren(...rows);
    else tbody.append(...rows);
    roomsCursor = page.nextCursor;
    $('rooms-more').hidden = !roomsCursor;
  } catch (e) {
    if (e.status === 401) return signedOut();
    refused(tbody, 6, e, 'rooms:admin');
  }
}

async function onCreateRoom(ev) {
  ev.preventDefault();
  const body = { id: $('new-room-id').value.trim() };
  if ($('new-room-name').value.trim()) body.name = $('new-room-name').value.trim();
  if ($('new-room-read').value.trim()) body.read = list($('new-room-read').value);
  if ($('new-room-write').value.trim()) body.write = list($('new-room-write').value);
  await act(() => api('POST', '/rooms', body), async () => {
    ev.target.reset();
    await loadRooms(true);
  });
}

async function showRoom(roomId) {
  const box = $('room-detail');
  box.hidden = false;
  const path = `/rooms/${encodeURIComponent(roomId)}`;
  await act(async () => {
    const [room, members, history] = await Promise.all([api('GET', path), api('GET', `${path}/members`), api('GET', `${path}/history?limit=50`)]);
    const field = (id, label, value) => el('label', {}, label, el('input', { id, value }));
    const acl = el(
      'form',
      { class: 'row-form', id: 'acl-form' },
      field('acl-name', 'Name', room.name || ''),
      field('acl-read', 'Read roles', (room.read || []).join(', ')),
      field('acl-write', 'Write roles', (room.write || []).join(', ')),
      field('acl-admin', 'Admin roles', (room.admin || []).join(', ')),
      el('label', {}, 'Show emails', el('input', { id: 'acl-emails', type: 'checkbox', checked: room.showEmails })),
      el('button', { type: 'submit' }, 'Save ACL'),
    );
    acl.addEventListener('submit', (ev) => {
      ev.preventDefault();
      act(
        () =>
          api('PATCH', path, {
            name: $('acl-name').value,
            read: list($('acl-read').value),
            write: list($('acl-write').value),
            admin: list($('acl-admin').value),
            showEmails: $('acl-emails').checked,
          }),
        () => Promise.all([showRoom(roomId), loadRooms(true)]),
      );
    });
    const grant = el(
      'form',
      { class: 'row-form' },
      el('label', {}, 'User', el('input', { id: 'grant-user', required: true })),
      el('label', {}, 'read', el('input', { id: 'grant-read', type: 'checkbox', checked: true })),
      el('label', {}, 'write', el('input', { id: 'grant-write', type: 'checkbox' })),
      el('label', {}, 'admin', el('input', { id: 'grant-admin', type: 'checkbox' })),
      el('button', { type: 'submit' }, 'Grant'),
      button('Revoke grant', () => act(() => api('PATCH', path, { revokeGrant: $('grant-user').value }), () => showRoom(roomId))),
      button('Ban', () => act(() => api('PATCH', path, { ban: $('grant-user').value }), () => showRoom(roomId)), 'danger'),
      button('Unban', () => act(() => api('PATCH', path, { unban: $('grant-user').value }), () => showRoom(roomId))),
    );
    grant.addEventListener('submit', (ev) => {
      ev.preventDefault();
      act(
        () =>
          api('PATCH', path, {
            grant: { userId: $('grant-user').value, read: $('grant-read').checked, write: $('grant-write').checked, admin: $('grant-admin').checked },
          }),
        () => showRoom(roomId),
      );
    });
    box.replaceChildren(
      el('h2', { text: `Room ${room.id}` }),
      el('p', { class: 'note', text: `type ${room.type} · epoch ${history.epoch} · last seq ${history.seq} · max participants ${room.maxParticipants || 'unlimited'}` }),
      acl,
      el('h2', { text: 'Grants and bans' }),
      el('p', { class: 'note', text: `Grants: ${(room.userGrants || []).map((g) => `${g.userId} (${['read', 'write', 'admin'].filter((k) => g[k]).join('+') || 'none'})`).join(', ') || 'none'} · Bans: ${(room.bans || []).join(', ') || 'none'}` }),
      grant,
      el('h2', { text: `Members now (${members.members.length})` }),
      el(
        'ul',
        {},
        ...members.members.map((m) =>
          el('li', {}, `${m.userId}${m.email ? ` <${m.email}>` : ''} · ${m.connections} connection(s) `, button('Kick', () => act(() => api('POST', `${path}/kick`, { userId: m.userId }), () => showRoom(roomId)), 'danger')),
        ),
      ),
      el('h2', { text: 'Recent history' }),
      el('div', { class: 'actions' }, button('Reset history', () => confirm('Delete this room history?') && act(() => api('DELETE', `${path}/history`), () => showRoom(roomId)), 'danger')),
      el(
        'table',
        {},
        el('tbody', {}, ...history.messages.map((m) => el('tr', {}, el('td', { text: m.seq }), el('td', { text: m.userId }), el('td', { text: m.content }), el('td', { text: time(m.timestamp) })))),
      ),
    );
  });
}

// ---- revocations -----------------------------------------------------------------------

async function loadRevocations(first) {
  const tbody = $('revocation-rows');
  if (first) revocationsCursor = null;
  try {
    const page = await api('GET', `/revocations?limit=50${revocationsCursor ? `&cursor=${encodeURIComponent(revocationsCursor)}` : ''}`);
    const rows = page.items.map((r) =>
      el(
        'tr',
        { dataset: { revocation: r.id } },
        el('td', { text: r.kind === 'user' ? 'every token of user' : 'token' }),
        el('td', { text: r.kind === 'user' ? r.userId : r.key }),
        el('td', { text: time(r.revokedMs) }),
        el('td', { text: r.expiresMs ? time(r.expiresMs) : '' }),
      ),
    );
    if (first) tbody.replaceChildren(...rows);
    else tbody.append(...rows);
    if (first && rows.length === 0) tbody.replaceChildren(el('tr', {}, el('td', { colspan: 4, class: 'note', text: 'Nothing revoked.' })));
    revocationsCursor = page.nextCursor;
    $('revocations-more').hidden = !revocationsCursor;
  } catch (e) {
    if (e.status === 401) return signedOut();
    refused(tbody, 4, e, 'users:manage');
  }
}

async function onRevoke(ev) {
  ev.preventDefault();
  const body = { [$('revoke-kind').value]: $('revoke-value').value.trim() };
  await act(
    () => api('POST', '/revocations', body),
    (r) => {
      $('revoke-result').textContent = `Revoked: ${r.closedConnections} connection(s) closed${r.revokedKeys !== undefined ? `, ${r.revokedKeys} key(s)` : ''}${r.deletedSessions !== undefined ? `, ${r.deletedSessions} session(s) ended` : ''}.`;
      ev.target.reset();
      loadRevocations(true);
    },
  );
}

// ---- security events -------------------------------------------------------------------

function eventQuery(cursor) {
  const q = new URLSearchParams();
  q.set('limit', $('ev-limit').value || '50');
  if ($('ev-action').value.trim()) q.set('action', $('ev-action').value.trim());
  if ($('ev-result').value) q.set('result', $('ev-result').value);
  if ($('ev-since').value) q.set('since', String(new Date($('ev-since').value).getTime()));
  if ($('ev-until').value) q.set('until', String(new Date($('ev-until').value).getTime()));
  if (cursor) q.set('cursor', cursor);
  return q.toString();
}

async function loadEvents(index) {
  const tbody = $('event-rows');
  if (index === 0) eventPages.cursors = [null];
  try {
    const page = await api('GET', `/events?${eventQuery(eventPages.cursors[index])}`);
    eventPages.index = index;
    eventPages.cursors[index + 1] = page.nextCursor;
    tbody.replaceChildren(
      ...page.items.map((e) =>
        el(
          'tr',
          {},
          el('td', { text: time(e.timestamp) }),
          el('td', { text: e.action }),
          el('td', { text: e.result }),
          el('td', { text: e.userId ? e.userId.slice(0, 16) : '' }),
          el('td', { text: Object.entries(e.metadata || {}).map(([k, v]) => `${k}=${v}`).join(' ') }),
        ),
      ),
    );
    if (!page.items.length) tbody.replaceChildren(el('tr', {}, el('td', { colspan: 5, class: 'note', text: 'No events match.' })));
    $('events-next').disabled = !page.nextCursor;
  } catch (e) {
    if (e.status === 401) return signedOut();
    refused(tbody, 5, e, 'events:read');
  }
}

// ---- API keys ----------------------------------------------------------------------------

async function loadKeys() {
  const tbody = $('key-rows');
  try {
    const page = await api('GET', '/apikeys?limit=100');
    tbody.replaceChildren(
      ...page.items.map((k) =>
        el(
          'tr',
          {},
          el('td', { text: k.name }),
          el('td', { text: k.id }),
          el('td', { text: k.scopes.join(', ') }),
          el('td', { text: time(k.createdMs) }),
          el('td', { text: k.lastUsedMs ? time(k.lastUsedMs) : 'never' }),
          el('td', {}, button('Revoke', () => act(() => api('DELETE', `/apikeys/${encodeURIComponent(k.id)}`), loadKeys), 'danger')),
        ),
      ),
    );
  } catch (e) {
    if (e.status === 401) return signedOut();
    refused(tbody, 6, e, 'apikeys:manage');
  }
}

async function onCreateKey(ev) {
  ev.preventDefault();
  await act(
    () => api('POST', '/apikeys', { name: $('key-name').value.trim(), scopes: list($('key-scopes').value) }),
    async (r) => {
      showSecret('key-secret', `Key ${r.name} (shown once): ${r.key}`);
      ev.target.reset();
      await loadKeys();
    },
  );
}

// ---- start ---------------------------------------------------------------------------------

function init() {
  $('login-form').addEventListener('submit', onLogin);
  $('logout').addEventListener('click', async () => {
    stopStats();
    await session.logout();
    signedOut();
  });
  for (const b of document.querySelectorAll('.admin-tabs button')) b.addEventListener('click', () => showTab(b.dataset.tab));
  $('user-create').addEventListener('submit', onCreateUser);
  $('users-more').addEventListener('click', () => loadUsers(false));
  $('user-roles').addEventListener('submit', onSetRoles);
  $('role-put').addEventListener('submit', onPutRole);
  $('room-create').addEventListener('submit', onCreateRoom);
  $('rooms-more').addEventListener('click', () => loadRooms(false));
  $('revoke-form').addEventListener('submit', onRevoke);
  $('revocations-more').addEventListener('click', () => loadRevocations(false));
  $('events-filter').addEventListener('submit', (ev) => {
    ev.preventDefault();
    loadEvents(0);
  });
  $('events-first').addEventListener('click', () => loadEvents(0));
  $('events-next').addEventListener('click', () => loadEvents(eventPages.index + 1));
  $('apikey-create').addEventListener('submit', onCreateKey);
  if (session.signedIn()) enter();
  else signedOut();
  document.body.dataset.ready = 'true';
}

init();
