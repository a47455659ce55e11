// Types for web/client/roomgate.js (the roomgate client library).

export interface BackoffOptions {
  /** First delay cap in ms (default 250). */
  baseMs?: number;
  /** Upper bound of every delay in ms (default 30000). */
  maxMs?: number;
  /** Growth per attempt (default 2). */
  factor?: number;
}

export interface RoomgateClientOptions {
  /** ws:// or wss:// URL of the gateway's /ws endpoint. */
  url: string;
  /** Returns a JWT (an access token); called at connect, on token_expiring and after a token-expired close. */
  getToken: () => Promise<string> | string;
  /** WebSocket constructor (default globalThis.WebSocket; in Node pass the `ws` package's class). */
  WebSocket?: new (url: string) => WebSocket;
  backoff?: BackoffOptions;
  /** Reconnect attempts before giving up with `offline` (default Infinity). */
  maxAttempts?: number;
  /** Uniform random source in [0, 1) for jitter (default Math.random). */
  random?: () => number;
}

export type Permissions = { read: boolean; write: boolean; admin: boolean };

export interface HandshakeData { connectionId: string; serverTime: number; heartbeatIntervalMs: number }
export interface User { userId: string; email: string; roles: string[] }
export interface AuthSuccessData { wsToken: string; user: User }
export interface TokenExpiringData { expiresAt: number }
export interface TokenRefreshedData { expiresAt: number }
export interface RoomJoinedData {
  roomId: string; participants: string[]; epoch: number; seq: number; recovered?: boolean; permissions: Permissions;
}
export interface UserEventData { userId: string; email: string; roomId: string }
export interface RoomLeftData { roomId: string; reason?: 'kicked' | 'banned' | 'permission_revoked' | 'room_deleted' }
export interface PermissionsUpdatedData extends Permissions { roomId: string }
export interface PresenceMember { userId: string; email?: string; connections: number; joinedAt: number }
export interface PresenceData { roomId: string; members: PresenceMember[] }
export interface KickedData { roomId: string; count: number; banned: boolean }
export interface UserGrant { userId: string; read: boolean; write: boolean; admin: boolean }
export interface RoomAclData {
  roomId: string; read: string[]; write: string[]; admin: string[]; showEmails: boolean; userGrants: UserGrant[]; bans: string[];
}
export interface ChatMessage {
  id: string; type: 'chat_message'; roomId: string; content: string; userId: string; email: string;
  timestamp: number; seq: number; epoch: number; clientMsgId?: string; system?: boolean;
}
export interface MessageAckData { roomId: string; clientMsgId: string; id: string; seq: number; epoch: number; duplicate: boolean }
export interface HistoryData { roomId: string; epoch: number; seq: number; messages: ChatMessage[]; hasMore: boolean }
export interface HeartbeatResponseData { serverTime: number }
export interface NotificationData {
  id: number; from: string; kind?: string; title?: string; body: string; data?: unknown; roomId?: string; timestamp: number;
}
export interface NotificationSentData { recipients: number; connections: number; roomId?: string }
export interface NotificationAckedData { removed: number }
export interface ErrorData { code: string; message: string; field?: string; roomId?: string; retryAfterMs?: number; clientMsgId?: string }

/** Server frames by type. */
export interface ServerFrames {
  handshake: HandshakeData;
  auth_success: AuthSuccessData;
  token_expiring: TokenExpiringData;
  token_refreshed: TokenRefreshedData;
  room_joined: RoomJoinedData;
  user_joined: UserEventData;
  user_left: UserEventData;
  user_disconnected: UserEventData;
  room_left: RoomLeftData;
  permissions_updated: PermissionsUpdatedData;
  presence: PresenceData;
  kicked: KickedData;
  room_acl: RoomAclData;
  message: ChatMessage;
  message_ack: MessageAckData;
  history: HistoryData;
  heartbeat_response: HeartbeatResponseData;
  notification: NotificationData;
  notification_sent: NotificationSentData;
  notification_acked: NotificationAckedData;
  error: ErrorData;
}

/** Events of the client itself. */
export interface ClientEvents {
  reconnecting: { attempt: number; delayMs: number };
  connected: { user: User | null; resumed: boolean; reconnect: boolean };
  offline: { attempts: number };
  terminal: { code: number; reason: string };
  /** The session was resumed on another socket (4005): its wsToken is in use elsewhere. Followed by `terminal`. */
  session_resumed_elsewhere: { code: 4005; reason: string };
  recovered: { roomId: string; recovered: boolean };
  close: { code: number; reason: string };
  client_error: { error: unknown };
}

export type RoomgateEvents = ServerFrames & ClientEvents;

export type ClientState = 'idle' | 'connecting' | 'connected' | 'reconnecting' | 'offline' | 'terminal';

export declare const TERMINAL_CLOSE_CODES: readonly number[];
export declare const TOKEN_EXPIRED_CLOSE: 4001;
export declare const SESSION_RESUMED_ELSEWHERE_CLOSE: 4005;

/** Full jitter: uniform in [0, min(maxMs, baseMs * factor ** attempt)]. */
export declare function backoffDelay(attempt: number, opts?: BackoffOptions, random?: () => number): number;

export declare class RoomgateClient {
  constructor(options: RoomgateClientOptions);
  readonly state: ClientState;
  readonly connected: boolean;
  readonly user: User | null;
  readonly wsToken: string | null;
  on<K extends keyof RoomgateEvents>(type: K, fn: (data: RoomgateEvents[K]) => void): this;
  on(type: string, fn: (data: any) => void): this;
  off<K extends keyof RoomgateEvents>(type: K, fn: (data: RoomgateEvents[K]) => void): this;
  off(type: string, fn: (data: any) => void): this;
  /** Resolves at the first auth_success; rejects (never unhandled) on terminal, offline or disconnect. */
  connect(): Promise<User | null>;
  joinRoom(roomId: string): void;
  leaveRoom(roomId: string): void;
  /** Returns the clientMsgId; the message is re-sent after reconnects until acknowledged. */
  sendMessage(roomId: string, content: string, clientMsgId?: string): string;
  history(roomId: string, opts?: { since?: number; before?: number; limit?: number }): boolean;
  presence(roomId: string): boolean;
  ackNotifications(ids: Iterable<number>): boolean;
  /** Drops the socket without stopping the client (it reconnects with backoff). */
  dropConnection(): void;
  disconnect(): void;
}

/** The seed's client API on top of RoomgateClient. */
export declare class SecureWebSocketClient {
  constructor(url: string, jwtToken: string, options?: Partial<RoomgateClientOptions>);
  token: string;
  onMessage?: (data: ChatMessage) => void;
  onUserJoined?: (data: UserEventData) => void;
  onUserLeft?: (data: UserEventData) => void;
  onError?: (message: string) => void;
  connect(): Promise<void>;
  joinRoom(roomId: string): void;
  leaveRoom(roomId: string): void;
  sendMessage(roomId: string, content: string): string;
  disconnect(): void;
}

export default RoomgateClient;
