/**
 * The browser client of signalpost: join a room, read the member's inbox,
 * send signals. One dependency-free ES module, served at `/signalpost.js`.
 *
 *     import { join, SignalpostError } from '/signalpost.js';
 *
 *     const session = await join('standup', { name: 'ada' });
 *     session.addEventListener('member-joined', (e) => call(e.detail.member.id));
 *     session.addEventListener('signal', (e) => handle(e.detail));
 *     await session.send(peerId, 'offer', pc.localDescription);
 *     await session.leave();
 *
 * The inbox is read by Server-Sent Events, or by long-poll where a proxy
 * buffers or breaks the stream. Either way every event is delivered once and
 * in inbox order, and a reconnect resumes after the last event processed.
 * With the default transport a poll reads beside each new stream until the
 * stream proves itself, so a proxy that holds the stream back costs no wait;
 * and a stream cut after some silence is reopened at once, asking for
 * keep-alives inside that silence.
 *
 * A session ends only when the server itself says the member is gone (a
 * problem+json 401 or 403); any other failure of a read is retried.
 *
 * The token stays in a private field. It travels as `Authorization: Bearer`.
 * `EventSource` cannot set headers: on the page's own origin the stream is
 * opened by the `HttpOnly` cookie the join set, elsewhere by `?token=`.
 *
 * @module signalpost
 */

/** The inbox events a session re-dispatches, as named on the SSE stream. */
const EVENT_KINDS = ['member-joined', 'member-left', 'member-updated', 'signal', 'room-updated', 'gap'];
/** Stream errors in a row, without a `ready` between, before 'auto' gives up on SSE. */
const STREAM_ERRORS_BEFORE_POLL = 3;
/** Seconds one long-poll may wait on the server (docs/API.md's default). */
const POLL_WAIT = 25;
/** Seconds a poll may take beyond its wait before the connection counts as dead. */
const POLL_GRACE = 10;
/** Retry delays double from the first up to the cap; the cap stays well under
 * the server's default member timeout (30 s) so a retrying member is not reaped. */
const RETRY_FIRST_MS = 500;
const RETRY_CAP_MS = 10_000;
/** After 'auto' fell back to long-poll, the stream is tried again after this
 * long, doubling up to the cap: a laptop that leaves the network whose
 * proxy buffered streams gets SSE back. */
const PROBE_FIRST_MS = 60_000;
const PROBE_CAP_MS = 600_000;
/** How long a poll beside a new stream may be ahead of it, with an event the
 * stream has not brought, before the stream counts as held back by a proxy.
 * The poll delivers meanwhile, so waiting costs nothing but a little traffic;
 * shorter, a busy machine's TLS start (500 ms was seen) reads as a proxy. */
const LAG_MS = 2_000;
/** The fewest seconds between keep-alives a session asks for, and the least
 * silence after which a cut counts as a proxy's idle limit. */
const KEEP_ALIVE_MIN = 1;
/** `EventSource.CLOSED`, spelled out because the constructor may be a test fake. */
const CLOSED = 2;
/** How often a tab tells the shared worker it is alive (the worker drops a tab silent for 30 s). */
const ALIVE_EVERY_MS = 10_000;

/** How long an answer to a WHIP or WHEP client waits for ICE gathering, at most. */
const GATHER_MAX_MS = 3_000;

/**
 * A failed call: a problem+json answer of the server (`status`, `code`,
 * `detail`), a non-problem answer (`code` 'http_error'), or a request that
 * got no answer at all (`status` 0, `code` 'network').
 */
export class SignalpostError extends Error {
  /** @param {{status: number, code: string, detail?: string, title?: string}} problem */
  constructor({ status, code, detail = '', title = '', retryAfter = null }) {
    super(detail || title || code);
    this.name = 'SignalpostError';
    /** Seconds the server asked to wait before trying again (429, 503), or null. */
    this.retryAfter = retryAfter;
    /** The HTTP status, 0 when no answer came. */
    this.status = status;
    /** docs/API.md's stable word: 'room_full', 'unauthorized', … or 'network'. */
    this.code = code;
    this.detail = detail;
  }

  /**
   * Builds the error from a non-2xx answer. Only a problem+json body is the
   * server's word: a proxy's or a balancer's page has no `code` to trust.
   */
  static async fromResponse(response) {
    let problem = {};
    if (/^application\/problem\+json\b/i.test(response.headers?.get?.('content-type') ?? '')) {
      try {
        problem = await response.json();
      } catch {
        // A body cut short says no more than a bare status.
      }
    }
    const retryAfter = Number.parseInt(response.headers?.get?.('retry-after') ?? '', 10);
    return new SignalpostError({
      status: response.status,
      code: typeof problem?.code === 'string' ? problem.code : 'http_error',
      detail: problem?.detail ?? '',
      title: problem?.title ?? response.statusText ?? '',
      retryAfter: Number.isFinite(retryAfter) && retryAfter >= 0 ? retryAfter : null,
    });
  }

  /** The error of a call that got no usable answer: none, one cut short, or one that is not JSON. */
  static network(cause) {
    return new SignalpostError({ status: 0, code: 'network', detail: String(cause?.message ?? cause) });
  }
}

/**
 * Whether the server itself refused the member for good: it has left or been
 * removed (401), or the token is not this room's (403). A proxy's 401 has no
 * problem+json `code`, so it is retried like any other failure.
 */
function isRefusedForGood(error) {
  return (error.status === 401 && error.code === 'unauthorized')
    || (error.status === 403 && error.code === 'forbidden');
}

/** Whether `baseUrl` names the page's own origin, where the join's cookie goes along. */
function isPageOrigin(baseUrl) {
  if (baseUrl === '') return true;
  const page = globalThis.location?.origin;
  try {
    return page !== undefined && new URL(baseUrl, page).origin === page;
  } catch {
    return false;
  }
}

/**
 * Whether sessions of this page should read through the shared worker by
 * default: the page speaks HTTP/1.x to its origin (over HTTP/2 and 3 every
 * stream is one more stream of one connection, and nothing is gained), and
 * this module is served from that origin, as a SharedWorker's script must be.
 */
function sharingHelps() {
  if (!globalThis.location) return false;
  try {
    if (new URL(import.meta.url).origin !== globalThis.location.origin) return false;
  } catch {
    return false;
  }
  const protocol = globalThis.performance?.getEntriesByType?.('navigation')?.[0]?.nextHopProtocol ?? '';
  return !/^(h2|h3)/.test(protocol);
}

/** Whether a session of these options reads through the shared worker. */
function wantsSharing(options, baseUrl) {
  return (options.shareConnection ?? sharingHelps())
    && options.transport !== 'poll'
    && typeof globalThis.SharedWorker === 'function'
    && isPageOrigin(baseUrl);
}

/** This page's port to the shared worker, made on first use, and the sources open on it. */
let sharedPort = null;
const sharedSources = new Map();
let sharedSourceIds = 0;

function sharedWorkerPort() {
  if (sharedPort) return sharedPort;
  const worker = new globalThis.SharedWorker(new URL('./signalpost-shared.js', import.meta.url), { name: 'signalpost' });
  sharedPort = worker.port;
  sharedPort.onmessage = (e) => sharedSources.get(e.data?.source)?.receive(e.data);
  sharedPort.start();
  globalThis.setInterval(() => sharedPort.postMessage({ op: 'alive' }), ALIVE_EVERY_MS);
  return sharedPort;
}

/**
 * A member's inbox read through the shared worker, in place of an
 * `EventSource` and with its interface: the same events with the same
 * `lastEventId`, and `onerror` with `readyState` CONNECTING (the worker
 * reconnects) or CLOSED (the server refused the stream).
 */
class SharedInboxSource extends EventTarget {
  readyState = 0;
  onerror = null;
  #id = ++sharedSourceIds;
  #port;

  constructor(port, inbox) {
    super();
    this.#port = port;
    sharedSources.set(this.#id, this);
    port.postMessage({ op: 'open', source: this.#id, ...inbox });
  }

  receive({ kind, data, id, closed }) {
    if (this.readyState === CLOSED) return;
    if (kind === 'error') {
      this.readyState = closed ? CLOSED : 0;
      if (closed) sharedSources.delete(this.#id);
      this.onerror?.(new Event('error'));
      return;
    }
    this.readyState = 1;
    this.dispatchEvent(new MessageEvent(kind, { data, lastEventId: id }));
  }

  close() {
    if (!sharedSources.delete(this.#id)) return;
    this.readyState = CLOSED;
    this.#port.postMessage({ op: 'close', source: this.#id });
  }
}

/**
 * The test hooks, each defaulting to the global of that name. The globals
 * are looked up at call time and called unbound from `globalThis`, since
 * `fetch` and timers throw "Illegal invocation" with any other `this`.
 */
function environment(options) {
  return {
    fetch: options.fetch ?? ((...args) => globalThis.fetch(...args)),
    EventSource: options.EventSource ?? globalThis.EventSource,
    setTimeout: options.setTimeout ?? ((fn, ms) => globalThis.setTimeout(fn, ms)),
    clearTimeout: options.clearTimeout ?? ((handle) => globalThis.clearTimeout(handle)),
    now: options.now ?? (() => Date.now()),
  };
}

/** One HTTP call: JSON in and out, problem answers and network failures thrown. */
async function call(env, method, url, { token, body, signal, keepalive } = {}) {
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let response;
  try {
    response = await env.fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
      ...(keepalive ? { keepalive } : {}),
    });
    // Read here, inside the try: a body cut off mid-way, or a captive
    // portal's HTML page answered 200, is no answer from the server either.
    if (response.ok) return response.status === 204 ? null : await response.json();
  } catch (cause) {
    // Whoever aborted says why (a poll's own deadline gives a network error).
    if (signal?.aborted) throw signal.reason ?? cause;
    throw SignalpostError.network(cause);
  }
  throw await SignalpostError.fromResponse(response);
}

/**
 * Joins a room, creating it if needed, and starts reading the member's inbox.
 *
 * @param {string} roomId 1 to 64 characters of `A-Z a-z 0-9 . _ ~ -`.
 * @param {object} [options]
 * @param {string} [options.name] Shown to the other members, ≤ 64 characters.
 * @param {object} [options.metadata] Any JSON object, ≤ 4 KiB.
 * @param {number} [options.capacity] Counts only when this join creates the room.
 * @param {string} [options.password] The room's password: set by the join that
 *   creates the room, asked of every later one.
 * @param {string} [options.grant] The join grant (a JWT) your back end signed,
 *   for a server that lets in only joins with one (`--join-secret`, `--join-key`).
 * @param {string} [options.baseUrl] '' for the page's own origin, or 'http://host:port'.
 * @param {'auto'|'sse'|'poll'} [options.transport] 'auto' reads by long-poll
 *   beside each new stream until the stream's `ready` shows it works, falls
 *   back to long-poll when it does not, and tries the stream again now and then.
 * @param {number} [options.readyTimeout] Milliseconds 'auto' waits for the stream's `ready`.
 * @param {boolean} [options.shareConnection] Whether the page's sessions read
 *   their inboxes on one connection, through a SharedWorker that all of the
 *   origin's tabs share. By default they do where it helps: a page served
 *   over HTTP/1.1, which allows six connections per origin (a stream per
 *   tab would leave the seventh tab none), from the server's own origin.
 * @returns {Promise<Session>} Rejects with a {@link SignalpostError}.
 */
/**
 * What kind of HTTP client a member is, by the metadata the server gave it:
 * 'whip' (an encoder sending media into the room, WHIP), 'whep' (a player,
 * WHEP), or null for any other member. Such a member connects to one member
 * only, `member.metadata.peer`: the one its offer went to.
 */
export function httpClientKind(member) {
  const metadata = member?.metadata;
  if (metadata?.whip === 'publisher') return 'whip';
  if (metadata?.whep === 'player') return 'whep';
  return null;
}

/**
 * Answers the `offer` signal of a WHIP publisher or a WHEP player on `pc`,
 * and sends the answer back to it. These clients take no trickled
 * candidates: the answer goes once ICE gathering is complete, or after
 * `gatherMs` with the candidates gathered by then. A WHEP player's offer
 * asks to receive: `tracks` (the page's camera and microphone) are sent on
 * its transceivers, one track of each kind. Resolves to what `send` does.
 */
export async function answerHttpClient(session, pc, signal, { tracks = [], gatherMs = GATHER_MAX_MS } = {}) {
  const offer = signal.payload;
  await pc.setRemoteDescription({ type: offer.type, sdp: withDescribedGroups(offer.sdp) });
  const unsent = [...tracks];
  for (const transceiver of pc.getTransceivers()) {
    const at = unsent.findIndex((track) => track.kind === transceiver.receiver.track.kind);
    if (at < 0) continue;
    const [track] = unsent.splice(at, 1);
    transceiver.direction = 'sendonly';
    await transceiver.sender.replaceTrack(track);
  }
  await pc.setLocalDescription();
  await gatheringComplete(pc, gatherMs);
  return session.send(signal.from, 'answer', pc.localDescription.toJSON());
}

/**
 * `sdp` without the `a=ssrc-group` lines that name an SSRC no `a=ssrc` line
 * describes: ffmpeg's WHIP offer announces its retransmission SSRC only in
 * its group, and Chromium then refuses the whole offer ("Failed to add
 * remote stream ssrc"). Without the group the video still plays; only its
 * retransmissions go unrecognised.
 */
export function withDescribedGroups(sdp) {
  const described = new Set([...sdp.matchAll(/^a=ssrc:(\d+) /gm)].map((found) => found[1]));
  return sdp
    .split('\r\n')
    .filter((line) => {
      if (!line.startsWith('a=ssrc-group:')) return true;
      return line.split(' ').slice(1).every((ssrc) => described.has(ssrc));
    })
    .join('\r\n');
}

/** Resolves once `pc` has gathered every candidate, or after `ms`. */
function gatheringComplete(pc, ms) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener('icegatheringstatechange', check);
      resolve();
    };
    const check = () => {
      if (pc.iceGatheringState === 'complete') done();
    };
    const timer = setTimeout(done, ms);
    pc.addEventListener('icegatheringstatechange', check);
  });
}

export async function join(roomId, options = {}) {
  const env = environment(options);
  const baseUrl = (options.baseUrl ?? '').replace(/\/+$/, '');
  const body = {};
  for (const key of ['name', 'metadata', 'capacity', 'password']) {
    if (options[key] !== undefined) body[key] = options[key];
  }
  // A shared worker takes a moment to start: let it start during the join.
  if (wantsSharing(options, baseUrl)) sharedWorkerPort();
  const answer = await call(env, 'POST', `${baseUrl}/rooms/${encodeURIComponent(roomId)}/join`, {
    body,
    token: options.grant,
  });
  const session = new Session(answer, { ...options, baseUrl }, env);
  session.reconnect();
  return session;
}

/**
 * One member's presence in one room, made by {@link join}. Dispatches
 * `member-joined`, `member-left`, `member-updated`, `signal`, `room-updated`
 * and `gap` with the event's data as `detail`; `statechange` ({state,
 * transport}) and `error` ({error}, fatal only when the state has become
 * 'closed'). After a `gap` it asks the room how it is, and dispatches the
 * joins, leaves (`reason` null), updates and `room-updated` the lost events
 * held. A `member-left` naming the
 * session's own member (it left in another tab, or was removed) is the
 * session's last event: the state becomes 'closed'.
 */
export class Session extends EventTarget {
  #token;
  #env;
  #baseUrl;
  #urls;
  #readyTimeout;
  /** Whether a failing SSE stream may still be given up for long-poll. */
  #mayFallBack;
  /** The open EventSource, when reading by SSE. */
  #source = null;
  /** The AbortController of the running poll, when reading by long-poll or beside a new stream. */
  #poll = null;
  /** Whether the running poll reads beside a stream that has not proved itself ('auto'). */
  #pollBeside = false;
  /** The id the newest stream resumed after: a poll delivering later ones is ahead of it. */
  #streamFrom = 0;
  /** The deadline by which a stream the poll is ahead of must show its `ready`. */
  #lagTimer = null;
  /** When the live stream last brought something (ms), to tell an idle cut. */
  #heardAt = 0;
  /** The server's keep-alive interval in seconds, from `ready`. */
  #serverKeepAlive = Infinity;
  /** The keep-alive interval asked for, once a cut showed a proxy's idle limit. */
  #keepAlive = null;
  /** The pending retry. */
  #retryTimer = null;
  /** The deadline for the stream's `ready` ('auto' only). */
  #readyTimer = null;
  /** Whether 'auto' fell back to long-poll, and tries the stream again now and then. */
  #probing = false;
  /** A stream tried while polling, until its `ready` makes it the session's. */
  #probe = null;
  /** The next try of the stream, or the deadline of the one under way. */
  #probeTimer = null;
  #probeDelay = PROBE_FIRST_MS;
  /** Failures since the last working read: picks the retry delay, and counts stream errors. */
  #failures = 0;
  /** Grows on every stop, so an answer to a read that was stopped is ignored. */
  #generation = 0;
  /** Whether the stream URL must carry the token: another origin, or a cookie seen refused. */
  #streamNeedsToken;
  /** Whether the inbox is read through the shared worker, until it refuses once. */
  #shared;
  /**
   * While the room is asked for after a gap: what inbox events have set
   * since, `{members: Set of ids joined or left, room: whether it was updated}`.
   */
  #resync = null;

  /** @hideconstructor */
  constructor(answer, options, env) {
    super();
    this.#token = answer.token;
    this.#env = env;
    this.#baseUrl = options.baseUrl;
    this.#urls = { events: answer.events_url, poll: answer.poll_url };
    this.#streamNeedsToken = !isPageOrigin(options.baseUrl);
    this.#readyTimeout = options.readyTimeout ?? 4000;
    this.#shared = wantsSharing(options, options.baseUrl);
    const wanted = options.transport ?? 'auto';
    this.#mayFallBack = wanted === 'auto';
    /** @type {string} */ this.roomId = answer.room_id;
    /** @type {string} */ this.memberId = answer.member.id;
    /** @type {string|null} */ this.name = answer.member.name;
    /** @type {object} What this member shows the others besides its name; `update()` changes it. */
    this.metadata = answer.member.metadata;
    /** @type {boolean} Kept up to date by `room-updated`. */
    this.owner = answer.owner;
    /** @type {number} */ this.capacity = answer.capacity;
    /** @type {boolean} A room being joined is never locked; then `room-updated` tells. */
    this.locked = false;
    /** @type {Map<string, object>} The other members, by id, oldest first. */
    this.members = new Map(answer.members.map((member) => [member.id, member]));
    /** @type {'connecting'|'live'|'polling'|'reconnecting'|'closed'} */
    this.state = 'connecting';
    /** @type {'sse'|'poll'} */
    this.transport = wanted === 'poll' || (wanted === 'auto' && !env.EventSource) ? 'poll' : 'sse';
    /** @type {number} The highest inbox event id processed; resumes start after it. */
    this.lastEventId = 0;
  }

  /**
   * Changes what this member shows the others: `{name}` (null takes it
   * away), `{metadata}` (an object, in place of the one there), or both.
   * The others get `member-updated`, and whoever joins later sees it so:
   * the place for state such as a muted microphone. Resolves to the member
   * as it is now.
   */
  async update(changes) {
    const member = await this.#call('PATCH', `/rooms/${encodeURIComponent(this.roomId)}/members/${this.memberId}`, changes);
    this.name = member.name;
    this.metadata = member.metadata;
    return member;
  }

  /**
   * Sends a signal to one member; resolves to `{recipients}`. Rejects with a
   * TypeError, sending nothing, when `to` is not a member id: the server
   * reads a missing `to` as "everyone", and a stale `peer?.id` must not
   * turn a private offer into a broadcast.
   */
  async send(to, type, payload) {
    if (typeof to !== 'string') {
      throw new TypeError(`send() needs the member id to send to, not ${to}; broadcast() sends to everyone`);
    }
    return this.#call('POST', '/signals', { to, type, payload });
  }

  /** Sends a signal to every other member; resolves to `{recipients}`. */
  broadcast(type, payload) {
    return this.#call('POST', '/signals', { to: null, type, payload });
  }

  /**
   * The STUN and TURN servers the server hands this member (TURN
   * credentials minted for it); resolves to an `RTCIceServer[]` for
   * `new RTCPeerConnection({ iceServers })`, empty when none is configured.
   */
  iceServers() {
    return this.#call('GET', '/ice-servers');
  }

  /** Locks or unlocks the room (owner only); resolves to the room view. */
  setLocked(locked) {
    return this.#call('PATCH', `/rooms/${encodeURIComponent(this.roomId)}`, { locked });
  }

  /** Leaves the room, then closes. A 401 means the member is already gone: done too. */
  async leave() {
    // Stop reading first: the server ends the stream when the member leaves,
    // and that must not show as 'reconnecting'.
    this.#stop();
    try {
      await this.#call('DELETE', `/rooms/${encodeURIComponent(this.roomId)}/members/${this.memberId}`);
    } catch (error) {
      if (error.status !== 401) throw error;
    } finally {
      this.#setState('closed');
    }
  }

  /** Stops reading without leaving; the server removes the member after its timeout. */
  close() {
    this.#stop();
    this.#setState('closed');
  }

  /**
   * Drops the current stream or poll and opens a new one on the same
   * transport, resuming after `lastEventId`. Does nothing once closed.
   */
  reconnect() {
    if (this.state === 'closed') return;
    this.#stop();
    const generation = this.#generation;
    this.#failures = 0;
    if (this.transport === 'poll') {
      // A failing poll stays 'reconnecting' until one succeeds.
      if (this.state === 'connecting') this.#setState('polling');
    } else if (this.state !== 'connecting') {
      this.#setState('reconnecting');
    }
    // The statechange listener may have closed or reconnected the session itself.
    if (generation !== this.#generation) return;
    if (this.transport === 'poll') {
      this.#pollLoop();
      this.#scheduleProbe();
    } else {
      this.#openStream();
    }
  }

  #call(method, path, body) {
    // `keepalive` lets a leave sent from `pagehide` outlive the page.
    const keepalive = method === 'DELETE';
    return call(this.#env, method, `${this.#baseUrl}${path}`, { token: this.#token, body, keepalive });
  }

  #openStream() {
    // Only the newest stream may live: the server keeps one per member anyway.
    this.#source?.close();
    const source = this.#newStream();
    this.#source = source;
    source.addEventListener('ready', () => {
      if (source !== this.#source) return;
      this.#env.clearTimeout(this.#readyTimer);
      this.#stopPollBeside();
      this.#failures = 0;
      this.#setState('live');
    });
    source.onerror = () => this.#onStreamError(source);
    if (this.#mayFallBack) {
      // A buffering proxy answers 200 and then holds everything back: no
      // error ever comes, only silence. Meanwhile a poll reads, so the
      // session does not wait for the stream to prove itself.
      this.#env.clearTimeout(this.#readyTimer);
      this.#readyTimer = this.#env.setTimeout(() => this.#fallBack(), this.#readyTimeout);
      if (!this.#pollBeside) {
        this.#pollBeside = true;
        this.#pollLoop();
      }
    }
  }

  #stopPollBeside() {
    if (!this.#pollBeside) return;
    this.#pollBeside = false;
    this.#clearLag();
    const poll = this.#poll;
    this.#poll = null;
    poll?.abort();
  }

  /** An EventSource of the inbox after `lastEventId`, whose events count once it is `#source`. */
  #newStream() {
    const query = new URLSearchParams();
    // On the page's own origin the join's HttpOnly cookie opens the stream,
    // which keeps the token out of URLs.
    if (this.#streamNeedsToken) query.set('token', this.#token);
    // Always sent, 0 included: without it the server starts after the events
    // it already wrote, and those a replaced or cut stream wrote but this page
    // never processed would be skipped. The browser's own reconnects reuse
    // this URL until an `id:` gives them a `Last-Event-ID` header.
    query.set('last_event_id', String(this.lastEventId));
    if (this.#keepAlive !== null) query.set('keep_alive', String(this.#keepAlive));
    this.#streamFrom = this.lastEventId;
    const source = this.#shared
      ? new SharedInboxSource(sharedWorkerPort(), {
          room_id: this.roomId,
          member_id: this.memberId,
          token: this.#token,
          last_event_id: this.lastEventId,
          keep_alive: this.#keepAlive,
        })
      : new this.#env.EventSource(`${this.#baseUrl}${this.#urls.events}?${query}`);
    source.addEventListener('ready', (e) => {
      this.#heardAt = this.#env.now();
      const keepAlive = JSON.parse(e.data)?.keep_alive;
      if (typeof keepAlive === 'number' && keepAlive > 0) this.#serverKeepAlive = keepAlive;
    });
    for (const kind of EVENT_KINDS) {
      source.addEventListener(kind, (e) => {
        if (source !== this.#source) return;
        this.#heardAt = this.#env.now();
        // The browser keeps the last `id:` for events without one (gap), so
        // only id-carrying kinds may read it.
        const id = kind === 'gap' ? undefined : Number(e.lastEventId);
        this.#receive(kind, id, JSON.parse(e.data));
      });
    }
    return source;
  }

  /** Tries the stream again later, while 'auto' reads by long-poll. */
  #scheduleProbe() {
    if (!this.#probing || this.state === 'closed') return;
    this.#env.clearTimeout(this.#probeTimer);
    this.#probeTimer = this.#env.setTimeout(() => this.#probeStream(), this.#probeDelay);
  }

  /**
   * Opens a stream beside the polls. If its `ready` comes within
   * `readyTimeout`, the stream has proved itself: the poll stops and the
   * stream reads on. It resumes after the last event processed when it
   * opened, so what the polls brought meanwhile comes again, and is dropped
   * by id: nothing lost, nothing twice. Otherwise it is closed, and tried
   * again later.
   */
  #probeStream() {
    if (!this.#probing || this.state === 'closed' || this.transport !== 'poll') return;
    const source = this.#newStream();
    this.#probe = source;
    const giveUp = () => {
      if (this.#probe !== source) return;
      source.close();
      this.#probe = null;
      this.#clearLag();
      this.#probeDelay = Math.min(PROBE_CAP_MS, this.#probeDelay * 2);
      this.#scheduleProbe();
    };
    source.addEventListener('ready', () => {
      if (this.#probe !== source) return;
      this.#probe = null;
      this.#stop();
      this.#probing = false;
      this.#probeDelay = PROBE_FIRST_MS;
      this.#mayFallBack = true;
      this.transport = 'sse';
      this.#source = source;
      source.onerror = () => this.#onStreamError(source);
      this.#failures = 0;
      this.#setState('live');
    });
    source.onerror = giveUp;
    this.#probeTimer = this.#env.setTimeout(giveUp, this.#readyTimeout);
  }

  #onStreamError(source) {
    if (source !== this.#source) return;
    const wasLive = this.state === 'live';
    this.#failures += 1;
    this.#setState('reconnecting');
    // The statechange listener may have closed or reconnected the session.
    if (source !== this.#source) return;
    if (this.#mayFallBack && this.#failures >= STREAM_ERRORS_BEFORE_POLL) {
      this.#fallBack();
    } else if (source.readyState === CLOSED) {
      source.close();
      this.#source = null;
      // The shared stream was refused: whatever the check finds, this
      // session reads on its own from now on.
      this.#shared = false;
      this.#recheckStream();
    } else if (wasLive) {
      // A working stream was cut, most often by a proxy's idle limit: reopen
      // at once rather than after the browser's retry delay, during which a
      // signal would wait, and ask for keep-alives inside that limit.
      this.#learnIdleLimit();
      this.#openStream();
    }
    // Otherwise the browser reconnects by itself, sending `Last-Event-ID`.
  }

  /**
   * A stream cut after `silence` seconds without a byte the session saw,
   * and before the server's next keep-alive was due, may have met a proxy
   * that cuts idle responses: ask for keep-alives at half that silence. The
   * interval only ever shrinks, to one a second at least; a cut of another
   * kind costs the session no more than a comment a second.
   */
  #learnIdleLimit() {
    const silence = (this.#env.now() - this.#heardAt) / 1000;
    if (!(silence >= KEEP_ALIVE_MIN) || silence >= this.#serverKeepAlive) return;
    const wanted = Math.max(KEEP_ALIVE_MIN, Math.floor(silence / 2));
    if (this.#keepAlive === null || wanted < this.#keepAlive) this.#keepAlive = wanted;
  }

  /**
   * Reopens a stream the browser gave up on. The browser does not say which
   * answer refused it, so ask over fetch: whether the member still exists,
   * and, if so, whether its cookie is refused (then the token goes in the URL).
   */
  async #recheckStream() {
    const generation = this.#generation;
    const reopen = () => this.#openStream();
    try {
      await this.#call('GET', `/rooms/${encodeURIComponent(this.roomId)}`);
    } catch (error) {
      if (generation === this.#generation) this.#onReadFailure(error, reopen);
      return;
    }
    if (!this.#streamNeedsToken && (await this.#isCookieRefused())) this.#streamNeedsToken = true;
    if (generation === this.#generation) this.#retry(reopen);
  }

  /**
   * Whether the member's own path refuses a request that has only the
   * cookie to show: the cookie is blocked, or was never set. Any other
   * outcome (a proxy's 502 included) is no evidence against it.
   */
  async #isCookieRefused() {
    // A poll that answers at once is the cheapest request of that path;
    // the events it may bring are read again by the stream.
    const url = `${this.#baseUrl}${this.#urls.poll}?after=${this.lastEventId}&timeout=0`;
    try {
      await call(this.#env, 'GET', url);
      return false;
    } catch (error) {
      return error.status === 401 && error.code === 'unauthorized';
    }
  }

  #fallBack() {
    this.#stop();
    const generation = this.#generation;
    this.#mayFallBack = false;
    this.#probing = true;
    this.transport = 'poll';
    this.#failures = 0;
    this.#setState('polling');
    if (generation !== this.#generation) return;
    this.#pollLoop();
    this.#scheduleProbe();
  }

  async #pollLoop() {
    // Only the newest poll may run: two loops would each dispatch the inbox.
    this.#poll?.abort();
    const controller = new AbortController();
    this.#poll = controller;
    // After a failure, ask for an answer at once: the state shows the inbox
    // reachable again now, not when the next event or the wait comes.
    const wait = this.state === 'reconnecting' ? 0 : POLL_WAIT;
    const url = `${this.#baseUrl}${this.#urls.poll}?after=${this.lastEventId}&timeout=${wait}`;
    // A connection that died without a word would leave the poll pending for good.
    const deadline = this.#env.setTimeout(
      () => controller.abort(SignalpostError.network(`no answer to a poll within ${wait + POLL_GRACE} s`)),
      (wait + POLL_GRACE) * 1000,
    );
    let events;
    try {
      const answer = await call(this.#env, 'GET', url, { token: this.#token, signal: controller.signal });
      events = answer?.events;
      if (!Array.isArray(events)) throw SignalpostError.network('a poll answer without an events list');
    } catch (error) {
      if (controller !== this.#poll) return;
      if (this.#pollBeside && !isRefusedForGood(error)) {
        // The stream beside it reads on, and is what retries.
        this.#pollBeside = false;
        this.#poll = null;
      } else {
        this.#onReadFailure(error, () => this.#pollLoop());
      }
      return;
    } finally {
      this.#env.clearTimeout(deadline);
    }
    if (!this.#pollBeside) {
      this.#failures = 0;
      this.#setState('polling');
    }
    for (const { id, event, data } of events) {
      // A listener may have closed or reconnected the session meanwhile.
      if (controller !== this.#poll) return;
      if ((this.#pollBeside || this.#probe) && id > this.#streamFrom) this.#watchLag();
      this.#receive(event, id, data);
    }
    if (controller === this.#poll) this.#pollLoop();
  }

  /**
   * The poll beside a new stream, or the polls beside a stream tried again,
   * brought an event the stream should carry too. A stream that works shows
   * its `ready` before that event, or just after; one a proxy holds back
   * shows nothing, however long its timeout.
   */
  #watchLag() {
    if (this.#lagTimer !== null) return;
    const probe = this.#probe;
    this.#lagTimer = this.#env.setTimeout(() => {
      this.#lagTimer = null;
      if (this.#pollBeside) this.#fallBack();
      // A try of the stream gives up on an error, as on this.
      else if (probe !== null && probe === this.#probe) probe.onerror?.();
    }, LAG_MS);
  }

  #clearLag() {
    this.#env.clearTimeout(this.#lagTimer);
    this.#lagTimer = null;
  }

  /** Ends the session when the member is gone, else retries later. */
  #onReadFailure(error, again) {
    if (this.state === 'closed') return;
    if (isRefusedForGood(error)) {
      this.#stop();
      this.#setState('closed');
      this.#emit('error', { error });
      return;
    }
    const generation = this.#generation;
    this.#failures += 1;
    this.#setState('reconnecting');
    // Either listener may have closed or reconnected the session, which
    // then reads anew: this failed read must not retry beside it.
    if (generation !== this.#generation) return;
    this.#emit('error', { error });
    if (generation !== this.#generation) return;
    this.#retry(again, error.retryAfter);
  }

  /** Runs `again` after the backoff, or after what the server asked (`Retry-After`) if longer. */
  #retry(again, retryAfter = null) {
    const backoff = Math.min(RETRY_CAP_MS, RETRY_FIRST_MS * 2 ** Math.max(0, this.#failures - 1));
    const delay = Math.max(backoff, (retryAfter ?? 0) * 1000);
    this.#env.clearTimeout(this.#retryTimer);
    this.#retryTimer = this.#env.setTimeout(() => {
      this.#retryTimer = null;
      if (this.state !== 'closed') again();
    }, delay);
  }

  /** Applies one inbox event to the session's view, then dispatches it, once and in order. */
  #receive(kind, id, data) {
    // A gap stands for the ids it lost, so its `to` is its place in the inbox.
    const place = kind === 'gap' ? data.to : id;
    if (!(place > this.lastEventId)) return;
    this.lastEventId = place;
    if (this.#resync) {
      if (kind === 'member-joined') this.#resync.members.add(data.member.id);
      if (kind === 'member-left') this.#resync.members.add(data.member_id);
      if (kind === 'member-updated') this.#resync.members.add(data.member.id);
      if (kind === 'room-updated') this.#resync.room = true;
    }
    const own = kind === 'member-left' && data.member_id === this.memberId;
    if (own || this.#apply(kind, data)) this.#emit(kind, data);
    if (own && this.state !== 'closed') {
      this.#stop();
      this.#setState('closed');
    }
    if (kind === 'gap' && this.state !== 'closed') this.#refreshRoom();
  }

  /**
   * Applies an event to the session's view. False when it tells nothing new:
   * a join or leave that the refresh after a gap has announced already.
   */
  #apply(kind, data) {
    switch (kind) {
      case 'member-joined': {
        const known = this.members.has(data.member.id);
        this.members.set(data.member.id, data.member);
        return !known;
      }
      case 'member-left':
        return this.members.delete(data.member_id);
      case 'member-updated':
        if (!this.members.has(data.member.id)) return false;
        this.members.set(data.member.id, data.member);
        return true;
      case 'room-updated':
        this.owner = data.owner === this.memberId;
        this.capacity = data.capacity;
        this.locked = data.locked;
        return true;
      default:
        return true;
    }
  }

  /**
   * After a gap: the lost events may have been joins, leaves or room
   * changes, so ask the room how it is, and dispatch the difference as the
   * events the app missed. A leave learnt this way has `reason` null.
   */
  async #refreshRoom() {
    // Inbox events that land while the answer is on its way may be newer
    // than it: what they touch is left as they set it.
    const resync = { members: new Set(), room: false };
    this.#resync = resync;
    let room = null;
    let failure = null;
    try {
      room = await this.#call('GET', `/rooms/${encodeURIComponent(this.roomId)}`);
      if (!Array.isArray(room?.members)) throw SignalpostError.network('a room answer without members');
    } catch (error) {
      failure = error;
    }
    // A later gap asks again, and its answer is the one to use.
    if (resync !== this.#resync) return;
    this.#resync = null;
    if (this.state === 'closed') return;
    if (failure) {
      this.#emit('error', { error: failure });
      return;
    }
    for (const [kind, data] of this.#missedEvents(room, resync)) {
      if (this.state === 'closed') return;
      this.#apply(kind, data);
      this.#emit(kind, data);
    }
  }

  /** The events that take the session's view to `room`, but for what `touched` says the inbox has set since. */
  #missedEvents(room, touched) {
    const listed = new Map(room.members.filter((m) => m.id !== this.memberId).map((m) => [m.id, m]));
    const missed = [];
    for (const id of this.members.keys()) {
      if (!listed.has(id) && !touched.members.has(id)) missed.push(['member-left', { member_id: id, reason: null }]);
    }
    for (const [id, member] of listed) {
      if (touched.members.has(id)) continue;
      const known = this.members.get(id);
      if (!known) missed.push(['member-joined', { member }]);
      else if (JSON.stringify(known) !== JSON.stringify(member)) missed.push(['member-updated', { member }]);
    }
    if (!touched.room) {
      // Always told: the session does not know who owned the room before.
      const { locked, capacity, owner } = room;
      missed.push(['room-updated', { room_id: this.roomId, locked, capacity, owner }]);
    }
    return missed;
  }

  /** Stops every read and timer; a late answer of the old read is then ignored. */
  #stop() {
    this.#generation += 1;
    this.#source?.close();
    this.#source = null;
    this.#poll?.abort();
    this.#poll = null;
    this.#pollBeside = false;
    this.#clearLag();
    this.#env.clearTimeout(this.#readyTimer);
    this.#env.clearTimeout(this.#retryTimer);
    this.#env.clearTimeout(this.#probeTimer);
    this.#readyTimer = this.#retryTimer = this.#probeTimer = null;
    this.#probe?.close();
    this.#probe = null;
  }

  #setState(state) {
    // A transport change always comes with a state change (to 'polling').
    if (this.state === 'closed' || this.state === state) return;
    this.state = state;
    this.#emit('statechange', { state, transport: this.transport });
  }

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
