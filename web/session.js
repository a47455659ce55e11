// Sign-in state shared by the chat page and the admin console: the token pair from
// /auth/login, kept in sessionStorage (one tab's life, never localStorage, so closing the
// tab signs out), refreshed through /auth/refresh shortly before the access token ends,
// and an authorised fetch for /api/v1.

const KEY = 'roomgate.session';
// Refresh this long before the access token expires, so a socket or API call never
// starts with a token that dies in flight.
const REFRESH_MARGIN_MS = 30_000;

let current = load();
// One refresh at a time: a rotated refresh token used twice revokes the whole login.
let refreshing = null;

function load() {
  try {
    const raw = sessionStorage.getItem(KEY);
    return raw ? JSON.parse(raw) : null;
  } catch {
    return null;
  }
}

function store(pair) {
  current = pair;
  if (pair) sessionStorage.setItem(KEY, JSON.stringify(pair));
  else sessionStorage.removeItem(KEY);
}

function fromAnswer(body) {
  return {
    accessToken: body.access_token,
    refreshToken: body.refresh_token,
    expiresAt: Date.now() + (Number(body.expires_in) || 0) * 1000,
  };
}

/** The claims of the access token (unverified: only to show who is signed in). */
export function claims() {
  if (!current) return null;
  try {
    const part = current.accessToken.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const json = decodeURIComponent(
      Array.from(atob(part), (c) => '%' + c.charCodeAt(0).toString(16).padStart(2, '0')).join(''),
    );
    return JSON.parse(json);
  } catch {
    return null;
  }
}

export function signedIn() {
  return current !== null;
}

export class AuthError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

async function postJson(path, body) {
  const res = await fetch(path, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
    credentials: 'omit',
  });
  let data = null;
  try {
    data = await res.json();
  } catch {
    data = null;
  }
  if (!res.ok) {
    throw new AuthError(res.status, data && data.code, data && data.message, res.headers.get('Retry-After'));
  }
  return data;
}

export async function login(username, password) {
  const body = await postJson('/auth/login', { username, password });
  store(fromAnswer(body));
  return claims();
}

async function refreshNow() {
  const pair = current;
  if (!pair) throw new AuthError(401, 'not_signed_in', 'Not signed in');
  try {
    const body = await postJson('/auth/refresh', { refresh_token: pair.refreshToken });
    store(fromAnswer(body));
  } catch (e) {
    // A refused refresh (expired login, reused token, revoked user) ends the sign-in;
    // a network failure keeps it so a later attempt can succeed.
    if (e instanceof AuthError && e.status >= 400 && e.status < 500) store(null);
    throw e;
  }
  return current.accessToken;
}

/** An access token with some life left, refreshing first if it is about to end. */
export async function accessToken({ force = false, minLifeMs = REFRESH_MARGIN_MS } = {}) {
  if (!current) throw new AuthError(401, 'not_signed_in', 'Not signed in');
  if (!force && current.expiresAt - Date.now() > minLifeMs) return current.accessToken;
  if (!refreshing) {
    refreshing = refreshNow().finally(() => {
      refreshing = null;
    });
  }
  return refreshing;
}

/** Forgets the tokens; asks the server to revoke them when it can. */
export async function logout() {
  const pair = current;
  store(null);
  if (!pair) return;
  try {
    await fetch('/auth/logout', {
      method: 'POST',
      headers: { Authorization: `Bearer ${pair.accessToken}` },
      credentials: 'omit',
    });
  } catch {
    // Already signed out locally; the server ends the tokens at their expiry.
  }
}

/** Drops the tokens without calling the server (it already revoked them). */
export function forget() {
  store(null);
}

export class ApiError extends Error {
  constructor(status, code, message, field) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

/** A call to the admin API with the signed-in user's token; JSON in and out. */
export async function api(method, path, body) {
  const send = async (token) =>
    fetch(`/api/v1${path}`, {
      method,
      headers: {
        Authorization: `Bearer ${token}`,
        ...(body === undefined ? {} : { 'Content-Type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'omit',
    });
  let res = await send(await accessToken());
  if (res.status === 401) {
    // The token may have just expired or been rotated elsewhere: one fresh try.
    res = await send(await accessToken({ force: true }));
  }
  let data = null;
  try {
    data = await res.json();
  } catch {
    data = null;
  }
  if (!res.ok) throw new ApiError(res.status, data && data.code, data && data.message, data && data.field);
  return data;
}

/** Helpers that build DOM from data without ever parsing it as HTML. */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = String(v);
    else if (k === 'dataset') Object.assign(node.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') node.addEventListener(k.slice(2), v);
    else if (v === true) node.setAttribute(k, '');
    else node.setAttribute(k, String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

export function time(ms) {
  if (!ms) return '';
  const d = new Date(Number(ms));
  return d.toLocaleString();
}
