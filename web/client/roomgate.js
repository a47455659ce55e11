// roomgate browser / Node client library. Dependency-free ES module.
// Works in browsers (globalThis.WebSocket) and in Node 20 (pass the `ws` class as `WebSocket`).

/** Close code for a session resumed on another socket (its wsToken used elsewhere). */
export const SESSION_RESUMED_ELSEWHERE_CLOSE = 4005;
/** Close codes after which reconnecting cannot help (see README "Close codes"). */
export const TERMINAL_CLOSE_CODES = Object.freeze([1002, 1003, 1007, 1009, 4003, SESSION_RESUMED_ELSEWHERE_CLOSE]);
/** Close code for an expired token: reconnect with a fresh token from getToken(). */
export const TOKEN_EXPIRED_CLOSE = 4001;
/** Error codes of an `auth` reply that end the session for good. */
const TERMINAL_AUTH_ERRORS = new Set(['token_revoked', 'auth_failed', 'token_required', 'token_too_large']);

/**
 * Full-jitter exponential backoff: a uniform delay in
 * [0, min(maxMs, baseMs * factor ** attempt)].
 */
export function backoffDelay(attempt, opts = {}, random = Math.random) {
  const baseMs = opts.baseMs ?? 250;
  const maxMs = opts.maxMs ?? 30000;
  const factor = opts.factor ?? 2;
  const n = Math.max(0, Number(attempt) || 0);
  const cap = Math.min(maxMs, baseMs * Math.pow(factor, n));
  const r = Math.min(1, Math.max(0, Number(random()) || 0));
  return Math.floor(r * (Number.isFinite(cap) ? cap : maxMs));
}

let idCounter = 0;
function newClientMsgId() {
  idCounter = (idCounter + 1) % 1e9;
  const rnd = Math.floor(Math.random() * 36 ** 6).toString(36);
  return `c${Date.now().toString(36)}-${rnd}-${idCounter.toString(36)}`;
}

export class RoomgateClient {
  constructor(options = {}) {
    if (!options.url) throw new TypeError('RoomgateClient: url is required');
    if (typeof options.getToken !== 'function') throw new TypeError('RoomgateClient: getToken is required');
    this.url = options.url;
    this.getToken = options.getToken;
    this.WebSocket = options.WebSocket ?? globalThis.WebSocket;
    this.backoff = { baseMs: 250, maxMs: 30000, factor: 2, ...(options.backoff || {}) };
    this.maxAttempts = options.maxAttempts ?? Infinity;
    this.random = options.random ?? Math.random;
    this.state = 'idle'; // idle | connecting | connected | reconnecting | offline | terminal
    this.ws = null;
    this.wsToken = null;
    this.user = null;
    this.attempt = 0;
    this.rooms = new Map(); // roomId -> {lastSeq, epoch}
    this.pending = new Map(); // clientMsgId -> {roomId, content}
    this.handlers = new Map();
    this.heartbeatTimer = null;
    this.reconnectTimer = null;
    this.stopped = false;
    this.authMode = null; // 'wsToken' | 'token'
    this.connectWaiters = [];
  }

  /** Subscribe to a server frame type or a client event. Returns this. */
  on(type, fn) {
    if (!this.handlers.has(type)) this.handlers.set(type, new Set());
    this.handlers.get(type).add(fn);
    return this;
  }

  off(type, fn) {
    this.handlers.get(type)?.delete(fn);
    return this;
  }

  emit(type, data) {
    const set = this.handlers.get(type);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        const r = fn(data);
        if (r && typeof r.catch === 'function') r.catch((e) => this.reportError(e));
      } catch (e) {
        this.reportError(e);
      }
    }
  }

  reportError(e) {
    if (typeof console !== 'undefined') console.error('roomgate handler error:', e);
  }

  get connected() {
    return this.state === 'connected';
  }

  /** Opens the connection; resolves at the first auth_success, rejects on a terminal outcome. */
  connect() {
    this.stopped = false;
    const p = new Promise((resolve, reject) => {
      if (this.state === 'connected') return resolve(this.user);
      this.connectWaiters.push({ resolve, reject });
    });
    // the returned promise is for the caller; make sure an ignored one never becomes an unhandled rejection
    p.catch(() => {});
    if (this.state === 'idle' || this.state === 'offline' || this.state === 'terminal') {
      this.attempt = 0;
      this.open();
    }
    return p;
  }

  settleWaiters(err, value) {
    const w = this.connectWaiters;
    this.connectWaiters = [];
    for (const { resolve, reject } of w) (err ? reject(err) : resolve(value));
  }

  open() {
    this.clearTimers();
    this.state = this.attempt === 0 ? 'connecting' : 'reconnecting';
    let ws;
    try {
      ws = new this.WebSocket(this.url);
    } catch (e) {
      this.emit('client_error', { error: e });
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    ws.onmessage = (ev) => {
      if (ws !== this.ws) return;
      let frame;
      try {
        frame = JSON.parse(typeof ev.data === 'string' ? ev.data : String(ev.data));
      } catch {
        return;
      }
      this.handleFrame(frame).catch((e) => this.reportError(e));
    };
    ws.onclose = (ev) => {
      if (ws !== this.ws) return;
      this.handleClose(ev.code, ev.reason || '');
    };
    ws.onerror = () => {
      // a close event follows; nothing to do here
    };
  }

  send(type, data) {
    const ws = this.ws;
    if (!ws || ws.readyState !== 1) return false;
    try {
      ws.send(JSON.stringify({ type, data, timestamp: Date.now() }));
      return true;
    } catch {
      return false;
    }
  }

  async freshToken() {
    try {
      return await this.getToken();
    } catch (e) {
      this.emit('client_error', { error: e });
      return null;
    }
  }

  async sendAuth(useWsToken) {
    if (useWsToken && this.wsToken) {
      this.authMode = 'wsToken';
      this.send('auth', { wsToken: this.wsToken });
      return;
    }
    this.authMode = 'token';
    const ws = this.ws;
    const token = await this.freshToken();
    if (ws !== this.ws) return;
    if (!token) {
      // cannot get a token now: drop and retry with backoff
      try { ws.close(4000, 'no token'); } catch { /* ignore */ }
      return;
    }
    this.send('auth', { token });
  }

  async handleFrame(frame) {
    const type = frame && frame.type;
    const data = (frame && frame.data) || {};
    if (typeof type !== 'string') return;
    switch (type) {
      case 'handshake': {
        this.heartbeatMs = data.heartbeatIntervalMs || 30000;
        await this.sendAuth(true);
        break;
      }
      case 'auth_success': {
        if (data.wsToken) this.wsToken = data.wsToken;
        this.user = data.user || this.user;
        const wasReconnect = this.everConnected === true;
        this.everConnected = true;
        this.state = 'connected';
        this.attempt = 0;
        this.startHeartbeat();
        this.emit('auth_success', data);
        this.emit('connected', { user: this.user, resumed: this.authMode === 'wsToken', reconnect: wasReconnect });
        for (const [roomId, r] of this.rooms) {
          const join = { roomId };
          if (r.lastSeq != null) {
            join.since = r.lastSeq;
            if (r.epoch != null) join.epoch = r.epoch;
          }
          r.joined = false;
          this.send('join', join);
        }
        this.settleWaiters(null, this.user);
        return;
      }
      case 'error': {
        if (this.state !== 'connected' && data.code && this.ws) {
          if (this.authMode === 'wsToken' && data.code !== 'auth_rate_limited' && data.code !== 'too_many_connections') {
            // the server refused the wsToken: fall back to a fresh token
            this.wsToken = null;
            await this.sendAuth(false);
            this.emit('error', data);
            return;
          }
          if (TERMINAL_AUTH_ERRORS.has(data.code)) {
            this.emit('error', data);
            this.terminate(data.code === 'token_revoked' ? 4003 : 4401, data.message || data.code);
            return;
          }
          if (data.code === 'auth_rate_limited' || data.code === 'too_many_connections') {
            this.emit('error', data);
            try { this.ws.close(4000, data.code); } catch { /* ignore */ }
            return;
          }
        }
        if (data.clientMsgId) this.pending.delete(data.clientMsgId);
        this.emit('error', data);
        return;
      }
      case 'token_expiring': {
        this.emit('token_expiring', data);
        const token = await this.freshToken();
        if (token) this.send('refresh', { token });
        return;
      }
      case 'room_joined': {
        const r = this.rooms.get(data.roomId) || {};
        const sameEpoch = r.epoch == null || r.epoch === data.epoch;
        if (r.lastSeq != null) {
          this.emit('recovered', { roomId: data.roomId, recovered: data.recovered === true });
          if (data.recovered !== true || !sameEpoch) {
            // history could not be replayed: start from the room's current position
            r.lastSeq = data.seq;
          }
        } else {
          r.lastSeq = data.seq;
        }
        r.epoch = data.epoch;
        r.joined = true;
        this.rooms.set(data.roomId, r);
        this.emit('room_joined', data);
        // re-send messages that were never acknowledged in this room
        for (const [clientMsgId, m] of this.pending) {
          if (m.roomId === data.roomId) this.send('message', { roomId: m.roomId, content: m.content, clientMsgId });
        }
        return;
      }
      case 'room_left': {
        this.rooms.delete(data.roomId);
        for (const [id, m] of this.pending) if (m.roomId === data.roomId) this.pending.delete(id);
        this.emit('room_left', data);
        return;
      }
      case 'message': {
        const r = this.rooms.get(data.roomId);
        if (r && typeof data.seq === 'number') {
          if (r.epoch != null && data.epoch != null && data.epoch !== r.epoch) {
            r.epoch = data.epoch;
            r.lastSeq = data.seq;
          } else if (r.lastSeq != null && data.seq <= r.lastSeq) {
            return; // already seen
          } else {
            r.lastSeq = data.seq;
          }
        }
        this.emit('message', data);
        return;
      }
      case 'message_ack': {
        this.pending.delete(data.clientMsgId);
        this.emit('message_ack', data);
        return;
      }
      case 'heartbeat_response':
      default:
        this.emit(type, data);
    }
  }

  handleClose(code, reason) {
    this.ws = null;
    this.clearTimers();
    this.emit('close', { code, reason });
    if (this.stopped) {
      this.state = 'offline';
      return;
    }
    if (code === SESSION_RESUMED_ELSEWHERE_CLOSE) {
      // Someone else resumed this session: reconnecting would take it back and close
      // them in turn, so the user (or the application) decides, not the client.
      this.emit('session_resumed_elsewhere', { code, reason });
    }
    if (TERMINAL_CLOSE_CODES.includes(code)) {
      this.terminate(code, reason, true);
      return;
    }
    if (code === TOKEN_EXPIRED_CLOSE) {
      // the session's token expired: the wsToken is of no use, authenticate with a fresh token
      this.wsToken = null;
    }
    this.scheduleReconnect();
  }

  terminate(code, reason, alreadyClosed = false) {
    this.stopped = true;
    this.state = 'terminal';
    this.clearTimers();
    const ws = this.ws;
    this.ws = null;
    if (!alreadyClosed && ws) {
      try { ws.close(1000, 'terminal'); } catch { /* ignore */ }
    }
    this.emit('terminal', { code, reason });
    const err = new Error(`roomgate: ${reason || 'terminal close'} (${code})`);
    err.code = code;
    this.settleWaiters(err);
  }

  scheduleReconnect() {
    if (this.stopped) return;
    if (this.attempt >= this.maxAttempts) {
      this.state = 'offline';
      this.emit('offline', { attempts: this.attempt });
      this.settleWaiters(new Error('roomgate: gave up reconnecting'));
      return;
    }
    const delayMs = backoffDelay(this.attempt, this.backoff, this.random);
    this.attempt += 1;
    this.state = 'reconnecting';
    this.emit('reconnecting', { attempt: this.attempt, delayMs });
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      if (!this.stopped) this.open();
    }, delayMs);
  }

  startHeartbeat() {
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    const every = Math.max(1000, Math.floor((this.heartbeatMs || 30000) / 2));
    this.heartbeatTimer = setInterval(() => this.send('heartbeat', {}), every);
    if (this.heartbeatTimer && typeof this.heartbeatTimer.unref === 'function') this.heartbeatTimer.unref();
  }

  clearTimers() {
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = null;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
  }

  /** Drop the current socket without stopping the client (it reconnects with backoff). */
  dropConnection() {
    const ws = this.ws;
    if (!ws) return;
    try {
      if (typeof ws.terminate === 'function') ws.terminate();
      else ws.close(4000, 'dropped');
    } catch { /* ignore */ }
  }

  joinRoom(roomId) {
    const r = this.rooms.get(roomId) || { lastSeq: null, epoch: null };
    this.rooms.set(roomId, r);
    if (this.state === 'connected') this.send('join', { roomId });
  }

  leaveRoom(roomId) {
    this.rooms.delete(roomId);
    for (const [id, m] of this.pending) if (m.roomId === roomId) this.pending.delete(id);
    this.send('leave', { roomId });
  }

  /** Sends a message; it is re-sent after reconnects until acknowledged. Returns its clientMsgId. */
  sendMessage(roomId, content, clientMsgId = newClientMsgId()) {
    const r = this.rooms.get(roomId);
    // only rooms the client (re)joins are tracked for resend; others get the server's error once
    if (r) this.pending.set(clientMsgId, { roomId, content });
    if (this.state === 'connected' && (!r || r.joined !== false)) {
      this.send('message', { roomId, content, clientMsgId });
    }
    return clientMsgId;
  }

  history(roomId, opts = {}) {
    const data = { roomId };
    if (opts.since != null) data.since = opts.since;
    if (opts.before != null) data.before = opts.before;
    if (opts.limit != null) data.limit = opts.limit;
    return this.send('history', data);
  }

  presence(roomId) {
    return this.send('presence', { roomId });
  }

  ackNotifications(ids) {
    return this.send('notification_ack', { ids: [...ids] });
  }

  disconnect() {
    this.stopped = true;
    this.clearTimers();
    const ws = this.ws;
    this.ws = null;
    this.state = 'offline';
    if (ws) {
      try { ws.close(1000, 'client disconnect'); } catch { /* ignore */ }
    }
    this.settleWaiters(new Error('roomgate: disconnected'));
  }
}

/** The seed's client API, implemented on RoomgateClient. */
export class SecureWebSocketClient {
  constructor(url, jwtToken, options = {}) {
    this.token = jwtToken;
    this.onMessage = undefined;
    this.onUserJoined = undefined;
    this.onUserLeft = undefined;
    this.onError = undefined;
    this.client = new RoomgateClient({ ...options, url, getToken: async () => this.token });
    this.client
      .on('message', (d) => this.onMessage?.(d))
      .on('user_joined', (d) => this.onUserJoined?.(d))
      .on('user_left', (d) => this.onUserLeft?.(d))
      .on('error', (d) => this.onError?.(d && d.message))
      .on('terminal', (d) => this.onError?.(d && d.reason));
  }

  async connect() {
    await this.client.connect();
  }

  joinRoom(roomId) {
    this.client.joinRoom(roomId);
  }

  leaveRoom(roomId) {
    this.client.leaveRoom(roomId);
  }

  sendMessage(roomId, content) {
    return this.client.sendMessage(roomId, content);
  }

  disconnect() {
    this.client.disconnect();
  }
}

export default RoomgateClient;
