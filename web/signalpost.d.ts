// Types of the signalpost client library (`signalpost.js`), for TypeScript
// and for editors. They describe the library as it is; a test compiles an
// application against them with `tsc --strict` (tests/client_package).

/** A member as the others see it. */
export interface Member {
  id: string;
  /** `null` when it gave none. */
  name: string | null;
  /** The application's user id from the join grant's `sub`, or `null`. */
  user_id: string | null;
  /** Any JSON object, at most 4 KiB. */
  metadata: Record<string, unknown>;
  joined_at: string;
}

/** A room as `GET /rooms/{id}` and `setLocked` answer it. */
export interface Room {
  id: string;
  capacity: number;
  locked: boolean;
  /** `null` while no member may own the room. */
  owner: string | null;
  members: Member[];
  created_at: string;
}

/** A signal from another member, or from the service (`from: null`). */
export interface Signal<Payload = unknown> {
  from: string | null;
  /** `null` when it went to every member. */
  to: string | null;
  type: string;
  payload: Payload;
  sent_at: string;
}

export type LeaveReason = 'left' | 'removed' | 'timeout';

/** What each event of a session carries as `detail`. */
export interface SessionEventMap {
  'member-joined': { member: Member };
  /** `reason` is `null` for a leave a gap hid, learnt from the room. */
  'member-left': { member_id: string; reason: LeaveReason | null };
  'member-updated': { member: Member };
  signal: Signal;
  'room-updated': { room_id: string; locked: boolean; capacity: number; owner: string | null };
  gap: { from: number; to: number };
  statechange: { state: SessionState; transport: Transport };
  /** Fatal only once `state` is `'closed'`. */
  error: { error: SignalpostError };
}

export type SessionState = 'connecting' | 'live' | 'polling' | 'reconnecting' | 'closed';
export type Transport = 'sse' | 'poll';

export interface JoinOptions {
  /** Shown to the other members, at most 64 characters. */
  name?: string;
  /** Any JSON object, at most 4 KiB. */
  metadata?: Record<string, unknown>;
  /** Counts only when this join creates the room. */
  capacity?: number;
  /** The room's password: set by the join that creates the room, asked of every later one. */
  password?: string;
  /** The join grant (a JWT) the application's back end signed. */
  grant?: string;
  /** `''` (the default) for the page's own origin, or `'http://host:port'`. */
  baseUrl?: string;
  /**
   * `'auto'` (the default) reads by long-poll beside each new stream until
   * the stream proves itself, and falls back to long-poll when it does not.
   */
  transport?: 'auto' | Transport;
  /** Milliseconds `'auto'` waits for the stream's `ready`. */
  readyTimeout?: number;
  /**
   * Whether the page's sessions read their inboxes on one connection shared
   * by all of the origin's tabs (a SharedWorker running `signalpost-shared.js`,
   * served beside `signalpost.js`). By default, where it helps: a page of
   * the server's own origin over HTTP/1.1.
   */
  shareConnection?: boolean;
}

/** A failed call: the server's problem (`code`), another answer, or none. */
export class SignalpostError extends Error {
  /** The HTTP status, 0 when no answer came. */
  readonly status: number;
  /** The problem's stable word (`'room_full'`, `'unauthorized'`, …), `'http_error'` or `'network'`. */
  readonly code: string;
  readonly detail: string;
  /** Seconds the server asked to wait (429, 503), or `null`. */
  readonly retryAfter: number | null;
}

/** One member's presence in one room, made by {@link join}. */
export class Session extends EventTarget {
  private constructor();
  readonly roomId: string;
  readonly memberId: string;
  /** This member's name and metadata, as `update()` left them. */
  readonly name: string | null;
  readonly metadata: Record<string, unknown>;
  /** Kept up to date by `room-updated`. */
  readonly owner: boolean;
  readonly capacity: number;
  readonly locked: boolean;
  /** The other members, by id, oldest first. */
  readonly members: Map<string, Member>;
  readonly state: SessionState;
  readonly transport: Transport;
  /** The highest inbox event id processed; resumes start after it. */
  readonly lastEventId: number;

  /** Changes what this member shows the others; resolves to the member as it is now. */
  update(changes: { name?: string | null; metadata?: Record<string, unknown> }): Promise<Member>;
  /** Sends a signal to one member. */
  send(to: string, type: string, payload?: unknown): Promise<{ recipients: number }>;
  /** Sends a signal to every other member. */
  broadcast(type: string, payload?: unknown): Promise<{ recipients: number }>;
  /** The STUN and TURN servers the server hands this member. */
  iceServers(): Promise<RTCIceServer[]>;
  /** Locks or unlocks the room (the owner only). */
  setLocked(locked: boolean): Promise<Room>;
  /** Leaves the room, then closes. */
  leave(): Promise<void>;
  /** Stops reading without leaving; the server removes the member after its timeout. */
  close(): void;
  /** Drops the current stream or poll and resumes after `lastEventId`. */
  reconnect(): void;

  addEventListener<K extends keyof SessionEventMap>(
    type: K,
    listener: (event: CustomEvent<SessionEventMap[K]>) => void,
    options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | AddEventListenerOptions,
  ): void;
  removeEventListener<K extends keyof SessionEventMap>(
    type: K,
    listener: (event: CustomEvent<SessionEventMap[K]>) => void,
    options?: boolean | EventListenerOptions,
  ): void;
  removeEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | EventListenerOptions,
  ): void;
}

/** Joins a room, creating it if needed, and starts reading the member's inbox. */
export function join(roomId: string, options?: JoinOptions): Promise<Session>;

/**
 * What kind of HTTP client a member is, by the metadata the server gave it:
 * 'whip' (an encoder), 'whep' (a player), or null. Such a member connects
 * to `member.metadata.peer` only.
 */
export function httpClientKind(member: Member | null | undefined): 'whip' | 'whep' | null;

/**
 * Answers a WHIP publisher's or WHEP player's `offer` on `pc` and sends the
 * answer, once ICE gathering completes or after `gatherMs` (default 3000):
 * these clients take no trickled candidates. `tracks` are sent to a WHEP player.
 */
/** `sdp` without `a=ssrc-group` lines naming an SSRC it never describes (ffmpeg's WHIP offer has one, which Chromium refuses). */
export function withDescribedGroups(sdp: string): string;

export function answerHttpClient(
  session: Session,
  pc: RTCPeerConnection,
  signal: Signal<RTCSessionDescriptionInit>,
  options?: { tracks?: MediaStreamTrack[]; gatherMs?: number },
): Promise<{ recipients: number }>;
