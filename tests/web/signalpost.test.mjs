// Unit tests of web/signalpost.js against fakes: a server behind `fetch`,
// an `EventSource` the test drives, and a clock that moves only when told.
// No sleeps: each wait is for a request or an event, with a deadline as a
// safety net.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { answerHttpClient, httpClientKind, join, SignalpostError, withDescribedGroups } from '../../web/signalpost.js';

const ME = '11111111-1111-4111-8111-111111111111';
const PEER = '22222222-2222-4222-8222-222222222222';
const OTHER = '33333333-3333-4333-8333-333333333333';
const TOKEN = 'tok3n-that-must-stay-secret';
const DEADLINE_MS = 1000;
const NETWORK = Symbol('network failure');
/** An answer whose headers came but whose body was cut off. */
const CUT = Symbol('body cut short');

const peer = { id: PEER, name: 'bob', metadata: {}, joined_at: '2026-01-01T00:00:00Z' };
const other = { id: OTHER, name: 'eve', metadata: { role: 'x' }, joined_at: '2026-01-01T00:00:05Z' };

function joinAnswer(overrides = {}) {
  return {
    room_id: 'standup',
    member: { id: ME, name: 'ada', metadata: {}, joined_at: '2026-01-01T00:00:01Z' },
    token: TOKEN,
    owner: false,
    capacity: 10,
    members: [peer],
    events_url: `/rooms/standup/members/${ME}/events`,
    poll_url: `/rooms/standup/members/${ME}/poll`,
    ...overrides,
  };
}

function problem(status, code, detail = `${code} detail`) {
  return { status, body: { type: 'about:blank', title: code, status, detail, code }, problem: true };
}

function deadline(what, ms = DEADLINE_MS) {
  let timer;
  const promise = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
  });
  return { promise, cancel: () => clearTimeout(timer) };
}

/**
 * The server behind the fake `fetch`. Routed requests are answered at once;
 * any other request is held until the test answers it with `next()`, as a
 * long-poll is.
 */
class FakeServer {
  requests = [];
  routes = [];
  held = [];
  #wakers = [];

  route(method, pattern, answer) {
    this.routes.unshift({ method, pattern, answer });
  }

  fetch = async (url, init = {}) => {
    const request = {
      url,
      method: init.method ?? 'GET',
      headers: init.headers ?? {},
      body: init.body === undefined ? undefined : JSON.parse(init.body),
      signal: init.signal,
      keepalive: init.keepalive ?? false,
    };
    this.requests.push(request);
    const route = this.routes.find((r) => r.method === request.method && r.pattern.test(url));
    const answer = route
      ? await route.answer(request)
      : await new Promise((resolve, reject) => {
          request.respond = resolve;
          init.signal?.addEventListener('abort', () => {
            request.aborted = true;
            reject(new DOMException('The operation was aborted.', 'AbortError'));
          });
          this.held.push(request);
          for (const wake of this.#wakers.splice(0)) wake();
        });
    if (answer === NETWORK) throw new TypeError('fetch failed');
    if (answer === CUT) return cutResponse();
    // `raw` is a body that is not JSON, as a proxy or a captive portal sends.
    const { status = 200, body, raw, problem: isProblem, headers = {} } = answer;
    if (status === 204) return new Response(null, { status });
    const type = raw !== undefined ? 'text/html' : isProblem ? 'application/problem+json' : 'application/json';
    const text = raw ?? JSON.stringify(body);
    return new Response(text, { status, headers: { 'content-type': type, ...headers } });
  };

  /** The next held request matching, waiting for it if need be. */
  async next(method, pattern) {
    const limit = deadline(`${method} ${pattern}`);
    try {
      for (;;) {
        const index = this.held.findIndex(
          (r) => !r.aborted && r.method === method && pattern.test(r.url),
        );
        if (index >= 0) return this.held.splice(index, 1)[0];
        await Promise.race([new Promise((wake) => this.#wakers.push(wake)), limit.promise]);
      }
    } finally {
      limit.cancel();
    }
  }

  /** Lets every answer already on its way land: a macrotask turn. */
  settle() {
    return new Promise((resolve) => setImmediate(resolve));
  }
}

/** A 200 whose body breaks off mid-way, as a dropped connection leaves it. */
function cutResponse() {
  const body = new ReadableStream({
    start(controller) {
      controller.enqueue(new TextEncoder().encode('{"events": [{"id": 1, "ev'));
      controller.error(new TypeError('Failed to fetch'));
    },
  });
  return new Response(body, { status: 200, headers: { 'content-type': 'application/json' } });
}

/** setTimeout and clearTimeout whose time moves only by `tick`. */
class FakeClock {
  now = 0;
  timers = new Map();
  #next = 1;
  setTimeout = (fn, ms = 0) => {
    const id = this.#next++;
    this.timers.set(id, { fn, at: this.now + ms });
    return id;
  };
  clearTimeout = (id) => {
    this.timers.delete(id);
  };
  tick(ms) {
    const until = this.now + ms;
    for (;;) {
      const due = [...this.timers].filter(([, t]) => t.at <= until).sort((a, b) => a[1].at - b[1].at)[0];
      if (!due) break;
      this.timers.delete(due[0]);
      this.now = due[1].at;
      due[1].fn();
    }
    this.now = until;
  }
}

/** An EventSource class whose instances the test drives. */
function fakeEventSourceClass() {
  return class FakeEventSource extends EventTarget {
    static instances = [];
    static get last() {
      return FakeEventSource.instances.at(-1);
    }
    readyState = 0;
    onerror = null;
    #lastId = '';
    constructor(url) {
      super();
      this.url = url;
      FakeEventSource.instances.push(this);
    }
    /** Delivers a named event; like a browser, one without `id` keeps the last id. */
    emit(type, data, id) {
      this.readyState = 1;
      if (id !== undefined) this.#lastId = String(id);
      this.dispatchEvent(new MessageEvent(type, { data: JSON.stringify(data), lastEventId: this.#lastId }));
    }
    ready(lastEventId = 0) {
      this.emit('ready', { member_id: ME, last_event_id: lastEventId });
    }
    /** The stream broke: the browser retries (CONNECTING) or gives up (CLOSED). */
    fail({ closed = false } = {}) {
      this.readyState = closed ? 2 : 0;
      this.onerror?.(new Event('error'));
    }
    close() {
      this.readyState = 2;
      this.closed = true;
    }
  };
}

async function setUp(options = {}, answer = joinAnswer()) {
  const server = new FakeServer();
  const clock = new FakeClock();
  const EventSource = fakeEventSourceClass();
  server.route('POST', /\/rooms\/[^/]+\/join$/, () => ({ status: 201, body: answer }));
  const session = await join('standup', {
    fetch: server.fetch,
    EventSource,
    setTimeout: clock.setTimeout,
    clearTimeout: clock.clearTimeout,
    now: () => clock.now,
    ...options,
  });
  const events = [];
  for (const type of ['member-joined', 'member-left', 'member-updated', 'signal', 'room-updated', 'gap', 'statechange', 'error']) {
    session.addEventListener(type, (e) => events.push({ type, detail: e.detail }));
  }
  return { server, clock, EventSource, session, events };
}

function nextEvent(target, type) {
  const limit = deadline(`event ${type}`);
  return Promise.race([
    new Promise((resolve) => target.addEventListener(type, (e) => resolve(e.detail), { once: true })),
    limit.promise,
  ]).finally(limit.cancel);
}

function assertTokenNeverInFetchUrls(server) {
  for (const request of server.requests) assert.ok(!request.url.includes(TOKEN), request.url);
}

const signal = (n) => ({ from: PEER, to: ME, type: 'offer', payload: { n }, sent_at: '2026-01-01T00:00:02Z' });
const types = (events) => events.filter((e) => e.type !== 'statechange').map((e) => e.type);
const states = (events) => events.filter((e) => e.type === 'statechange').map((e) => e.detail.state);

test('join sends name, metadata and capacity and maps the answer', async () => {
  const { server, session } = await setUp({ name: 'ada', metadata: { a: 1 }, capacity: 4, baseUrl: 'http://h:1/' });
  const [request] = server.requests;
  assert.equal(request.method, 'POST');
  assert.equal(request.url, 'http://h:1/rooms/standup/join');
  assert.deepEqual(request.body, { name: 'ada', metadata: { a: 1 }, capacity: 4 });
  assert.equal(request.headers.Authorization, undefined);
  assert.equal(session.roomId, 'standup');
  assert.equal(session.memberId, ME);
  assert.equal(session.name, 'ada');
  assert.equal(session.owner, false);
  assert.equal(session.capacity, 10);
  assert.deepEqual([...session.members], [[PEER, peer]]);
  assert.equal(session.lastEventId, 0);
  session.close();
});

test('join sends a grant as its bearer token, never in the body, and a password in it', async () => {
  const { server, session } = await setUp({ name: 'ada', grant: 'the.grant.jwt', password: 'pw' });
  const [request] = server.requests;
  assert.equal(request.headers.Authorization, 'Bearer the.grant.jwt');
  assert.deepEqual(request.body, { name: 'ada', password: 'pw' });
  session.close();
});

test('join leaves out options it was not given', async () => {
  const { server, session } = await setUp();
  assert.deepEqual(server.requests[0].body, {});
  session.close();
});

test('the token is not a public field of the session', async () => {
  const { session } = await setUp();
  assert.ok(!JSON.stringify(session).includes(TOKEN));
  for (const key of Reflect.ownKeys(session)) assert.notEqual(session[key], TOKEN);
  session.close();
});

test('join rejects a full room with a SignalpostError room_full', async () => {
  const server = new FakeServer();
  server.route('POST', /\/join$/, () => problem(409, 'room_full', 'the room holds 2 members'));
  const error = await join('standup', { fetch: server.fetch }).catch((e) => e);
  assert.ok(error instanceof SignalpostError);
  assert.ok(error instanceof Error);
  assert.equal(error.status, 409);
  assert.equal(error.code, 'room_full');
  assert.equal(error.detail, 'the room holds 2 members');
  assert.equal(error.message, 'the room holds 2 members');
});

test('join rejects with code network when the request gets no answer', async () => {
  const server = new FakeServer();
  server.route('POST', /\/join$/, () => NETWORK);
  const error = await join('standup', { fetch: server.fetch }).catch((e) => e);
  assert.ok(error instanceof SignalpostError);
  assert.equal(error.status, 0);
  assert.equal(error.code, 'network');
});

test('an answer without a problem body still rejects with a SignalpostError', async () => {
  const server = new FakeServer();
  server.route('POST', /\/join$/, () => ({ status: 502, body: 'bad gateway' }));
  const error = await join('standup', { fetch: server.fetch }).catch((e) => e);
  assert.ok(error instanceof SignalpostError);
  assert.equal(error.status, 502);
  assert.equal(error.code, 'http_error');
});

test('the stream URL carries the token and the last id processed, 0 before any', async () => {
  const { EventSource, session } = await setUp({ baseUrl: 'http://h:1' });
  assert.equal(EventSource.instances.length, 1);
  const url = new URL(EventSource.last.url);
  assert.equal(url.origin + url.pathname, `http://h:1/rooms/standup/members/${ME}/events`);
  assert.equal(url.searchParams.get('token'), TOKEN);
  assert.equal(url.searchParams.get('last_event_id'), '0');
  EventSource.last.ready();
  EventSource.last.emit('signal', signal(1), 1);
  session.reconnect();
  assert.equal(new URL(EventSource.last.url).searchParams.get('last_event_id'), '1');
  session.close();
});

test("on the page's own origin the stream URL carries no token: the join's cookie opens it", async () => {
  const { EventSource, session } = await setUp();
  const url = new URL(EventSource.last.url, 'http://x');
  assert.equal(url.pathname, `/rooms/standup/members/${ME}/events`);
  assert.equal(url.searchParams.has('token'), false);
  session.close();
});

test('a same-origin stream refused for want of a cookie is reopened with the token', async () => {
  const { server, clock, EventSource, session } = await setUp();
  server.route('GET', /\/rooms\/standup$/, () => ({ body: { id: 'standup' } }));
  // The member exists, yet its own path refuses the cookie alone.
  server.route('GET', /\/poll\?/, () => problem(401, 'unauthorized'));
  EventSource.last.fail({ closed: true });
  await server.settle();
  const probe = server.requests.at(-1);
  assert.match(probe.url, /\/poll\?after=0&timeout=0$/);
  assert.equal(probe.headers.Authorization, undefined);
  clock.tick(500);
  assert.equal(EventSource.instances.length, 2);
  assert.equal(new URL(EventSource.last.url, 'http://x').searchParams.get('token'), TOKEN);
  assert.equal(session.state, 'reconnecting');
  session.close();
});

test('the state is connecting until ready, then live, announced once', async () => {
  const { EventSource, session, events } = await setUp();
  assert.equal(session.state, 'connecting');
  assert.equal(session.transport, 'sse');
  EventSource.last.ready();
  EventSource.last.ready();
  assert.equal(session.state, 'live');
  assert.deepEqual(events, [{ type: 'statechange', detail: { state: 'live', transport: 'sse' } }]);
  session.close();
});

test('every event kind is dispatched with its data as detail', async () => {
  const { EventSource, session, events } = await setUp();
  const source = EventSource.last;
  source.ready();
  source.emit('member-joined', { member: other }, 1);
  source.emit('signal', signal(1), 2);
  source.emit('member-left', { member_id: OTHER, reason: 'left' }, 3);
  source.emit('room-updated', { room_id: 'standup', locked: true, capacity: 10, owner: PEER }, 4);
  source.emit('gap', { from: 5, to: 7 });
  source.emit('signal', signal(8), 8);
  assert.deepEqual(events.filter((e) => e.type !== 'statechange'), [
    { type: 'member-joined', detail: { member: other } },
    { type: 'signal', detail: signal(1) },
    { type: 'member-left', detail: { member_id: OTHER, reason: 'left' } },
    { type: 'room-updated', detail: { room_id: 'standup', locked: true, capacity: 10, owner: PEER } },
    { type: 'gap', detail: { from: 5, to: 7 } },
    { type: 'signal', detail: signal(8) },
  ]);
  assert.equal(session.lastEventId, 8);
  session.close();
});

test('an event whose id was already seen is dropped, and so is a repeated gap', async () => {
  const { EventSource, session, events } = await setUp();
  const source = EventSource.last;
  source.ready();
  source.emit('signal', signal(1), 1);
  source.emit('signal', signal(2), 2);
  source.emit('signal', signal(1), 1);
  source.emit('signal', signal(2), 2);
  source.emit('gap', { from: 3, to: 4 });
  // The browser's own reconnect resumes after 2, so the server says the gap again.
  source.ready(2);
  source.emit('gap', { from: 3, to: 4 });
  source.emit('signal', signal(5), 5);
  assert.deepEqual(types(events), ['signal', 'signal', 'gap', 'signal']);
  assert.deepEqual(events.filter((e) => e.type === 'signal').map((e) => e.detail.payload.n), [1, 2, 5]);
  assert.equal(session.lastEventId, 5);
  session.close();
});

test('members and owner follow member-joined, member-left and room-updated', async () => {
  const { EventSource, session } = await setUp();
  const source = EventSource.last;
  source.ready();
  source.emit('member-joined', { member: other }, 1);
  assert.deepEqual([...session.members.keys()], [PEER, OTHER]);
  assert.deepEqual(session.members.get(OTHER), other);
  source.emit('member-left', { member_id: PEER, reason: 'timeout' }, 2);
  assert.deepEqual([...session.members.keys()], [OTHER]);
  source.emit('room-updated', { room_id: 'standup', locked: false, capacity: 10, owner: ME }, 3);
  assert.equal(session.owner, true);
  source.emit('room-updated', { room_id: 'standup', locked: true, capacity: 10, owner: OTHER }, 4);
  assert.equal(session.owner, false);
  assert.equal(session.locked, true);
  session.close();
});

test('a member-left naming the session itself is its last event: the session closes', async () => {
  const { EventSource, session, events } = await setUp();
  const source = EventSource.last;
  source.ready();
  source.emit('member-left', { member_id: ME, reason: 'removed' }, 1);
  assert.deepEqual(events.filter((e) => e.type === 'member-left'), [
    { type: 'member-left', detail: { member_id: ME, reason: 'removed' } },
  ]);
  assert.equal(session.state, 'closed');
  assert.equal(source.closed, true, 'the stream is closed, not reopened');
  assert.deepEqual([...session.members.keys()], [PEER], 'the others are as they were');
});

test('listeners see the members map already updated', async () => {
  const { EventSource, session } = await setUp();
  let seen;
  session.addEventListener('member-joined', () => (seen = session.members.has(OTHER)));
  EventSource.last.emit('member-joined', { member: other }, 1);
  assert.equal(seen, true);
  session.close();
});

test('auto falls back to long-poll when ready does not come within readyTimeout', async () => {
  const { server, clock, EventSource, session, events } = await setUp({ readyTimeout: 3000 });
  const source = EventSource.last;
  const beside = await server.next('GET', /\/poll\?/);
  clock.tick(2999);
  assert.equal(session.transport, 'sse');
  assert.equal(session.state, 'connecting');
  clock.tick(1);
  assert.equal(source.closed, true);
  assert.equal(session.transport, 'poll');
  assert.equal(session.state, 'polling');
  assert.deepEqual(events.at(-1), { type: 'statechange', detail: { state: 'polling', transport: 'poll' } });
  assert.equal(beside.aborted, true);
  const poll = await server.next('GET', /\/poll\?/);
  assert.match(poll.url, /after=0&timeout=25$/);
  // Not for good: the stream is tried again a minute later.
  clock.tick(59_999);
  assert.equal(EventSource.instances.length, 1);
  clock.tick(1);
  assert.equal(EventSource.instances.length, 2);
  session.close();
  assert.equal(EventSource.last.closed, true, 'closing the session closes the try too');
});

/** A session of 'auto' that fell back to long-poll, its poll answered with events 1 and 2. */
async function fellBack() {
  const setup = await setUp({ readyTimeout: 3000 });
  const { server, clock } = setup;
  clock.tick(3000);
  const poll = await server.next('GET', /\/poll\?/);
  poll.respond({ body: { events: [
    { id: 1, event: 'signal', data: signal(1) },
    { id: 2, event: 'signal', data: signal(2) },
  ] } });
  await server.settle();
  return setup;
}

test('a stream tried again while polling takes over once its ready comes, without losing or repeating events', async () => {
  const { server, clock, EventSource, session, events } = await fellBack();
  assert.equal(session.lastEventId, 2);
  const polling = await server.next('GET', /\/poll\?/);
  assert.match(polling.url, /after=2&/);
  clock.tick(60_000);
  const probe = EventSource.last;
  assert.match(probe.url, /last_event_id=2/);
  assert.equal(session.transport, 'poll', 'the polls go on until the stream proves itself');
  probe.ready(2);
  assert.equal(session.transport, 'sse');
  assert.equal(session.state, 'live');
  assert.equal(polling.aborted, true, 'the poll under way is stopped');
  // The stream carries what the polls had already brought, and more.
  probe.emit('signal', signal(2), 2);
  probe.emit('signal', signal(3), 3);
  const seen = events.filter((e) => e.type === 'signal').map((e) => e.detail.payload.n);
  assert.deepEqual(seen, [1, 2, 3]);
  assert.deepEqual(events.filter((e) => e.type === 'statechange').map((e) => e.detail), [
    { state: 'polling', transport: 'poll' },
    { state: 'live', transport: 'sse' },
  ]);
  session.close();
});

test('a stream tried again while polling that lags behind the polls is given up', async () => {
  const { server, clock, EventSource, session } = await fellBack();
  // A minute of polls answered with nothing, none left to time out.
  for (let i = 0; i < 6; i++) {
    (await server.next('GET', /\/poll\?/)).respond({ body: { events: [] } });
    await server.settle();
    clock.tick(10_000);
  }
  const probe = EventSource.last;
  assert.notEqual(probe.url.indexOf('last_event_id=2'), -1);
  const polling = await server.next('GET', /\/poll\?/);
  polling.respond({ body: { events: [{ id: 3, event: 'signal', data: signal(3) }] } });
  await server.settle();
  clock.tick(1999);
  assert.notEqual(probe.closed, true);
  clock.tick(1);
  assert.equal(probe.closed, true);
  assert.equal(session.transport, 'poll');
  probe.ready(2);
  assert.equal(session.transport, 'poll', 'its late ready changes nothing');
  session.close();
});

test('reconnecting while polling keeps the next try of the stream where it was', async () => {
  const { clock, EventSource, session } = await fellBack();
  session.reconnect();
  session.reconnect();
  clock.tick(59_999);
  assert.equal(EventSource.instances.length, 1);
  clock.tick(1);
  assert.equal(EventSource.instances.length, 2, 'a reconnect does not push the try back');
  session.close();
});

test('a stream tried again that stays silent is closed, and tried later still, the wait doubling', async () => {
  const { server, clock, EventSource, session } = await fellBack();
  await server.next('GET', /\/poll\?/);
  clock.tick(60_000);
  const first = EventSource.last;
  clock.tick(3000);
  assert.equal(first.closed, true);
  assert.equal(session.transport, 'poll');
  clock.tick(119_999);
  assert.equal(EventSource.last, first);
  clock.tick(1);
  const second = EventSource.last;
  assert.notEqual(second, first);
  second.fail({ closed: true });
  assert.equal(second.closed, true, 'a try that fails is closed at once');
  assert.equal(session.state, 'polling');
  session.close();
});

test('auto falls back after three stream errors without a ready between', async () => {
  const { server, EventSource, session } = await setUp();
  EventSource.last.ready();
  EventSource.last.emit('signal', signal(1), 1);
  // A live stream's cut is reopened at once: its first error…
  EventSource.last.fail();
  assert.equal(EventSource.instances.length, 2);
  // …then the browser retries the new one by itself: the second.
  EventSource.last.fail();
  assert.equal(session.state, 'reconnecting');
  assert.equal(EventSource.instances.length, 2);
  EventSource.last.ready(1);
  EventSource.last.fail();
  EventSource.last.fail();
  assert.equal(session.transport, 'sse', 'a ready resets the count');
  const source = EventSource.last;
  source.fail();
  assert.equal(source.closed, true);
  assert.equal(session.transport, 'poll');
  const poll = await server.next('GET', /\/poll\?after=1&timeout=25/);
  assert.ok(poll, 'the poll resumes where the stream stopped');
  session.close();
});

test('auto reads by poll beside a new stream, and stops the poll once the stream is ready', async () => {
  const { server, EventSource, session, events } = await setUp();
  const beside = await server.next('GET', /\/poll\?/);
  assert.match(beside.url, /after=0&timeout=25$/);
  beside.respond({ body: { events: [{ id: 1, event: 'signal', data: signal(1) }] } });
  await server.settle();
  assert.deepEqual(types(events), ['signal'], 'what the poll brings is dispatched before the stream is ready');
  assert.equal(session.state, 'connecting', 'the poll beside does not make the session polling');
  const next = await server.next('GET', /\/poll\?/);
  assert.match(next.url, /after=1&/);
  EventSource.last.ready();
  assert.equal(next.aborted, true);
  assert.equal(session.state, 'live');
  // The stream started at 0: what the poll brought is not dispatched again.
  EventSource.last.emit('signal', signal(1), 1);
  EventSource.last.emit('signal', signal(2), 2);
  assert.deepEqual(events.filter((e) => e.type === 'signal').map((e) => e.detail.payload.n), [1, 2]);
  await server.settle();
  assert.equal(server.held.filter((r) => !r.aborted).length, 0, 'no poll runs beside a live stream');
  session.close();
});

test('a stream whose ready comes no sooner than two seconds after the poll brought an event is given up for long-poll', async () => {
  const { server, clock, EventSource, session } = await setUp({ readyTimeout: 4000 });
  const stream = EventSource.last;
  const beside = await server.next('GET', /\/poll\?/);
  beside.respond({ body: { events: [{ id: 1, event: 'signal', data: signal(1) }] } });
  await server.settle();
  clock.tick(1999);
  assert.equal(session.transport, 'sse');
  clock.tick(1);
  assert.equal(stream.closed, true, 'a proxy holds the stream back: it is closed');
  assert.equal(session.transport, 'poll');
  assert.equal(session.state, 'polling');
  const poll = await server.next('GET', /\/poll\?/);
  assert.match(poll.url, /after=1&/);
  session.close();
});

test('a poll beside a stream that fails is dropped, the stream reading on; a 401 still closes', async () => {
  const { server, EventSource, session } = await setUp();
  const beside = await server.next('GET', /\/poll\?/);
  beside.respond(NETWORK);
  await server.settle();
  assert.equal(session.state, 'connecting');
  assert.equal(server.requests.filter((r) => r.url.includes('/poll')).length, 1, 'not retried');
  EventSource.last.ready();
  assert.equal(session.state, 'live');
  session.close();

  const second = await setUp();
  (await second.server.next('GET', /\/poll\?/)).respond(problem(401, 'unauthorized'));
  const { error } = await nextEvent(second.session, 'error');
  assert.equal(error.code, 'unauthorized');
  assert.equal(second.session.state, 'closed');
});

test('a live stream cut after some silence is reopened at once, asking for keep-alives inside it', async () => {
  const { clock, EventSource, session } = await setUp();
  EventSource.last.emit('ready', { member_id: ME, last_event_id: 0, keep_alive: 15 });
  EventSource.last.emit('signal', signal(1), 1);
  clock.tick(5200);
  EventSource.last.fail();
  assert.equal(EventSource.instances.length, 2, 'no wait for the browser\'s retry');
  const url = new URL(EventSource.last.url, 'http://x');
  assert.equal(url.searchParams.get('keep_alive'), '2');
  assert.equal(url.searchParams.get('last_event_id'), '1');
  EventSource.last.emit('ready', { member_id: ME, last_event_id: 1, keep_alive: 2 });
  assert.equal(session.state, 'live');
  // A cut after more silence than the server's keep-alive is not an idle
  // limit (the comments were flowing): the interval stays.
  clock.tick(20_000);
  EventSource.last.fail();
  assert.equal(new URL(EventSource.last.url, 'http://x').searchParams.get('keep_alive'), '2');
  session.close();
});

test("transport 'sse' never falls back", async () => {
  const { server, clock, EventSource, session } = await setUp({ transport: 'sse' });
  clock.tick(60_000);
  for (let i = 0; i < 5; i++) EventSource.last.fail();
  await server.settle();
  assert.equal(session.transport, 'sse');
  assert.equal(session.state, 'reconnecting');
  assert.equal(server.requests.filter((r) => r.url.includes('/poll')).length, 0);
  EventSource.last.ready();
  assert.equal(session.state, 'live');
  session.close();
});

test('a stream the browser gave up on is reopened after a check, resuming after the last id', async () => {
  const { server, clock, EventSource, session } = await setUp({ transport: 'sse' });
  server.route('GET', /\/rooms\/standup$/, () => ({ body: { id: 'standup' } }));
  server.route('GET', /\/poll\?/, () => ({ body: { events: [] } }));
  const first = EventSource.last;
  first.ready();
  first.emit('signal', signal(4), 4);
  first.fail({ closed: true });
  assert.equal(session.state, 'reconnecting');
  await server.settle();
  const check = server.requests.find((r) => r.url === '/rooms/standup');
  assert.equal(check.headers.Authorization, `Bearer ${TOKEN}`);
  assert.equal(EventSource.instances.length, 1, 'the retry waits for its delay');
  clock.tick(500);
  assert.equal(EventSource.instances.length, 2);
  assert.equal(new URL(EventSource.last.url, 'http://x').searchParams.get('last_event_id'), '4');
  EventSource.last.ready(4);
  assert.equal(session.state, 'live');
  session.close();
});

test('a stream refused because the member is gone closes the session with the 401', async () => {
  const { server, EventSource, session, events } = await setUp();
  server.route('GET', /\/rooms\/standup$/, () => problem(401, 'unauthorized'));
  EventSource.last.ready();
  EventSource.last.fail({ closed: true });
  const { error } = await nextEvent(session, 'error');
  assert.ok(error instanceof SignalpostError);
  assert.equal(error.code, 'unauthorized');
  assert.equal(session.state, 'closed');
  assert.deepEqual(states(events), ['live', 'reconnecting', 'closed']);
});

test("transport 'poll' polls from the start and opens no stream", async () => {
  const { server, EventSource, session } = await setUp({ transport: 'poll' });
  assert.equal(EventSource.instances.length, 0);
  assert.equal(session.transport, 'poll');
  assert.equal(session.state, 'polling');
  await server.next('GET', /\/poll\?/);
  session.close();
});

test('auto polls where there is no EventSource at all, as in Node', async () => {
  // No hook, so the global is used, and Node has none.
  const { server, session } = await setUp({ EventSource: undefined });
  assert.equal(session.transport, 'poll');
  await server.next('GET', /\/poll\?/);
  session.close();
});

test('the poll loop sends after and the bearer token, dispatches in order and advances', async () => {
  const { server, session, events } = await setUp({ transport: 'poll' });
  const first = await server.next('GET', /\/poll\?/);
  assert.equal(first.url, `/rooms/standup/members/${ME}/poll?after=0&timeout=25`);
  assert.equal(first.headers.Authorization, `Bearer ${TOKEN}`);
  first.respond({
    body: {
      events: [
        { id: 1, event: 'member-joined', data: { member: other } },
        { id: 4, event: 'gap', data: { from: 2, to: 4 } },
        { id: 5, event: 'signal', data: signal(5) },
        { id: 6, event: 'room-updated', data: { room_id: 'standup', locked: false, capacity: 10, owner: ME } },
      ],
    },
  });
  const second = await server.next('GET', /\/poll\?/);
  assert.match(second.url, /\?after=6&timeout=25$/);
  assert.deepEqual(types(events), ['member-joined', 'gap', 'signal', 'room-updated']);
  assert.deepEqual(events.find((e) => e.type === 'gap').detail, { from: 2, to: 4 });
  assert.equal(session.lastEventId, 6);
  assert.equal(session.owner, true);
  assert.ok(session.members.has(OTHER));
  // An empty answer (the wait ran out) just polls again.
  second.respond({ body: { events: [] } });
  assert.match((await server.next('GET', /\/poll\?/)).url, /after=6&/);
  assertTokenNeverInFetchUrls(server);
  session.close();
});

test('a poll answering events already seen does not deliver them again', async () => {
  const { server, EventSource, clock, session, events } = await setUp();
  EventSource.last.emit('signal', signal(1), 1);
  EventSource.last.emit('signal', signal(2), 2);
  clock.tick(4000);
  const poll = await server.next('GET', /\/poll\?/);
  poll.respond({ body: { events: [{ id: 2, event: 'signal', data: signal(2) }, { id: 3, event: 'signal', data: signal(3) }] } });
  await server.next('GET', /\/poll\?/);
  assert.deepEqual(events.filter((e) => e.type === 'signal').map((e) => e.detail.payload.n), [1, 2, 3]);
  session.close();
});

test('a poll answered 401 closes the session and emits the error', async () => {
  const { server, session, events } = await setUp({ transport: 'poll' });
  (await server.next('GET', /\/poll\?/)).respond(problem(401, 'unauthorized', 'no such member'));
  const { error } = await nextEvent(session, 'error');
  assert.ok(error instanceof SignalpostError);
  assert.equal(error.status, 401);
  assert.equal(error.detail, 'no such member');
  assert.equal(session.state, 'closed');
  assert.deepEqual(states(events), ['closed']);
  await server.settle();
  assert.equal(server.held.length, 0, 'no poll after closing');
});

test('a refused poll waits as long as Retry-After asks when that is longer than the backoff', async () => {
  const { server, clock, session } = await setUp({ transport: 'poll' });
  (await server.next('GET', /\/poll\?/)).respond({ ...problem(503, 'server_busy'), headers: { 'retry-after': '3' } });
  const { error } = await nextEvent(session, 'error');
  assert.equal(error.retryAfter, 3);
  clock.tick(2999);
  await server.settle();
  assert.equal(server.held.length, 0, 'no retry before Retry-After');
  clock.tick(1);
  await server.next('GET', /\/poll\?/);
  session.close();
});

test('a failing poll backs off, shows reconnecting, and recovers', async () => {
  const { server, clock, session, events } = await setUp({ transport: 'poll' });
  (await server.next('GET', /\/poll\?/)).respond(NETWORK);
  const { error } = await nextEvent(session, 'error');
  assert.equal(error.code, 'network');
  assert.equal(session.state, 'reconnecting');
  clock.tick(499);
  await server.settle();
  assert.equal(server.held.length, 0, 'no retry before the delay');
  clock.tick(1);
  (await server.next('GET', /\/poll\?/)).respond(problem(503, 'server_busy'));
  await nextEvent(session, 'error');
  clock.tick(999);
  await server.settle();
  assert.equal(server.held.length, 0, 'the delay doubles');
  clock.tick(1);
  (await server.next('GET', /\/poll\?/)).respond({ body: { events: [{ id: 1, event: 'signal', data: signal(1) }] } });
  await server.next('GET', /\/poll\?/);
  assert.equal(session.state, 'polling');
  // 'polling' itself was announced inside join(), before any listener.
  assert.deepEqual(states(events), ['reconnecting', 'polling']);
  assert.equal(session.lastEventId, 1);
  session.close();
});

test('reconnect() on a stream opens a new one resuming after the last id', async () => {
  const { EventSource, session, events } = await setUp();
  const first = EventSource.last;
  first.ready();
  first.emit('signal', signal(3), 3);
  session.reconnect();
  assert.equal(first.closed, true);
  assert.equal(EventSource.instances.length, 2);
  assert.equal(new URL(EventSource.last.url, 'http://x').searchParams.get('last_event_id'), '3');
  assert.equal(session.state, 'reconnecting');
  // The old stream is ignored even if it still speaks.
  first.emit('signal', signal(4), 4);
  EventSource.last.ready(3);
  EventSource.last.emit('signal', signal(4), 4);
  assert.deepEqual(events.filter((e) => e.type === 'signal').map((e) => e.detail.payload.n), [3, 4]);
  assert.deepEqual(states(events), ['live', 'reconnecting', 'live']);
  session.close();
});

test('reconnect() on long-poll aborts the pending poll and polls again', async () => {
  const { server, session } = await setUp({ transport: 'poll' });
  const first = await server.next('GET', /\/poll\?/);
  first.respond({ body: { events: [{ id: 2, event: 'signal', data: signal(2) }] } });
  const pending = await server.next('GET', /\/poll\?/);
  session.reconnect();
  assert.equal(pending.aborted, true);
  const fresh = await server.next('GET', /\/poll\?/);
  assert.match(fresh.url, /after=2&/);
  assert.equal(session.transport, 'poll');
  session.close();
});

test('leave() deletes the membership with the bearer token and closes', async () => {
  const { server, EventSource, session, events } = await setUp();
  server.route('DELETE', /\/members\//, () => ({ status: 204 }));
  EventSource.last.ready();
  await session.leave();
  const request = server.requests.at(-1);
  assert.equal(request.method, 'DELETE');
  assert.equal(request.url, `/rooms/standup/members/${ME}`);
  assert.equal(request.headers.Authorization, `Bearer ${TOKEN}`);
  assert.equal(request.keepalive, true, 'a leave sent while the page unloads must still go out');
  assert.equal(EventSource.last.closed, true);
  assert.equal(session.state, 'closed');
  assert.deepEqual(states(events), ['live', 'closed']);
  assert.equal(events.filter((e) => e.type === 'error').length, 0);
  session.reconnect();
  assert.equal(EventSource.instances.length, 1, 'a closed session stays closed');
});

test('leave() while polling cancels the pending poll', async () => {
  const { server, session } = await setUp({ transport: 'poll' });
  server.route('DELETE', /\/members\//, () => ({ status: 204 }));
  const pending = await server.next('GET', /\/poll\?/);
  await session.leave();
  assert.equal(pending.aborted, true);
  assert.equal(session.state, 'closed');
  assertTokenNeverInFetchUrls(server);
});

test('close() stops reading without leaving', async () => {
  const { server, EventSource, session } = await setUp();
  session.close();
  assert.equal(EventSource.last.closed, true);
  assert.equal(session.state, 'closed');
  assert.equal(server.requests.filter((r) => r.method === 'DELETE').length, 0);
});

test('send() and broadcast() post the signal with the bearer token', async () => {
  const { server, session } = await setUp();
  server.route('POST', /\/signals$/, (r) => ({ status: 202, body: { recipients: r.body.to ? 1 : 2 } }));
  assert.deepEqual(await session.send(PEER, 'offer', { sdp: 'v=0' }), { recipients: 1 });
  assert.deepEqual(await session.broadcast('chat', 'hi'), { recipients: 2 });
  const [sent, broadcast] = server.requests.filter((r) => r.url === '/signals');
  assert.deepEqual(sent.body, { to: PEER, type: 'offer', payload: { sdp: 'v=0' } });
  assert.deepEqual(broadcast.body, { to: null, type: 'chat', payload: 'hi' });
  assert.equal(sent.headers.Authorization, `Bearer ${TOKEN}`);
  assert.equal(sent.headers['Content-Type'], 'application/json');
  assertTokenNeverInFetchUrls(server);
  session.close();
});

test('send() rejects with the server problem, e.g. inbox_full', async () => {
  const { server, session } = await setUp();
  server.route('POST', /\/signals$/, () => problem(429, 'inbox_full'));
  const error = await session.send(PEER, 'candidate', {}).catch((e) => e);
  assert.ok(error instanceof SignalpostError);
  assert.equal(error.code, 'inbox_full');
  assert.equal(error.status, 429);
  session.close();
});

test('setLocked() patches the room', async () => {
  const { server, session } = await setUp({}, joinAnswer({ owner: true }));
  server.route('PATCH', /\/rooms\/standup$/, (r) => ({ body: { id: 'standup', locked: r.body.locked } }));
  assert.equal(session.owner, true);
  assert.deepEqual(await session.setLocked(true), { id: 'standup', locked: true });
  const request = server.requests.at(-1);
  assert.deepEqual(request.body, { locked: true });
  assert.equal(request.headers.Authorization, `Bearer ${TOKEN}`);
  session.close();
});

test('update() patches the own member and keeps its name and metadata', async () => {
  const { server, session } = await setUp();
  server.route('PATCH', new RegExp(`/rooms/standup/members/${ME}$`), (r) => ({
    body: { id: ME, name: r.body.name, user_id: null, metadata: r.body.metadata, joined_at: 'now' },
  }));
  const member = await session.update({ name: 'ada', metadata: { audio: false } });
  assert.deepEqual(member.metadata, { audio: false });
  assert.equal(session.name, 'ada');
  assert.deepEqual(session.metadata, { audio: false });
  const request = server.requests.at(-1);
  assert.deepEqual(request.body, { name: 'ada', metadata: { audio: false } });
  assert.equal(request.headers.Authorization, `Bearer ${TOKEN}`);
  session.close();
});

test('member-updated replaces the member in the members map, and only a known one', async () => {
  const { EventSource, session, events } = await setUp();
  const source = EventSource.last;
  source.ready();
  const muted = { ...session.members.get(PEER), metadata: { audio: false } };
  source.emit('member-updated', { member: muted }, 1);
  assert.deepEqual(session.members.get(PEER), muted);
  source.emit('member-updated', { member: { ...other, metadata: {} } }, 2);
  assert.equal(session.members.has(OTHER), false, 'an update of a stranger adds nobody');
  assert.deepEqual(events.filter((e) => e.type === 'member-updated').map((e) => e.detail.member.id), [PEER]);
  session.close();
});

test('iceServers() gets the list with the token', async () => {
  const { server, session } = await setUp();
  const list = [{ urls: ['turn:turn.example.com'], username: '1:m', credential: 'c' }];
  server.route('GET', /\/ice-servers$/, () => ({ body: list }));
  assert.deepEqual(await session.iceServers(), list);
  const request = server.requests.at(-1);
  assert.equal(request.method, 'GET');
  assert.equal(request.headers.Authorization, `Bearer ${TOKEN}`);
  session.close();
});

test('leave() of a member already removed resolves and closes', async () => {
  const { server, session } = await setUp();
  server.route('DELETE', /\/members\//, () => problem(401, 'unauthorized'));
  await session.leave();
  assert.equal(session.state, 'closed');
});

test('leave() that gets no answer rejects, and the session is closed anyway', async () => {
  const { server, session } = await setUp();
  server.route('DELETE', /\/members\//, () => NETWORK);
  const error = await session.leave().catch((e) => e);
  assert.ok(error instanceof SignalpostError);
  assert.equal(error.code, 'network');
  assert.equal(session.state, 'closed');
});

// Only the server's own word that the member is gone ends a session; any
// other failure of a read is retried.

const answersNotFromTheServer = [
  ['cut off mid-body', CUT],
  ['answered 200 with an HTML page', { raw: '<html>Sign in to the Wi-Fi</html>' }],
  ["answered a proxy's bare 408", { status: 408, raw: 'Request Timeout' }],
  ["answered a balancer's bare 404", { status: 404, raw: 'Not Found' }],
  ['answered 401 by a proxy, not in problem+json', { status: 401, raw: 'Authorization Required' }],
  ['answered 200 without an events list', { body: {} }],
];

for (const [what, answer] of answersNotFromTheServer) {
  test(`a poll ${what} is retried, and the session stays`, async () => {
    const { server, clock, session } = await setUp({ transport: 'poll' });
    (await server.next('GET', /\/poll\?/)).respond(answer);
    const { error } = await nextEvent(session, 'error');
    assert.ok(error instanceof SignalpostError);
    assert.equal(error.code, answer.status ? 'http_error' : 'network');
    assert.equal(session.state, 'reconnecting');
    clock.tick(500);
    (await server.next('GET', /\/poll\?/)).respond({ body: { events: [] } });
    await server.next('GET', /\/poll\?/);
    assert.equal(session.state, 'polling');
    session.close();
  });
}

test('a poll answered 403 problem+json closes the session', async () => {
  const { server, session } = await setUp({ transport: 'poll' });
  (await server.next('GET', /\/poll\?/)).respond(problem(403, 'forbidden'));
  const { error } = await nextEvent(session, 'error');
  assert.equal(error.code, 'forbidden');
  assert.equal(session.state, 'closed');
});

test("a stream check answered by a balancer's bare 404 retries instead of closing", async () => {
  const { server, clock, EventSource, session } = await setUp({ transport: 'sse' });
  server.route('GET', /\/rooms\/standup$/, () => ({ status: 404, raw: 'no backend' }));
  EventSource.last.ready();
  EventSource.last.fail({ closed: true });
  const { error } = await nextEvent(session, 'error');
  assert.equal(error.status, 404);
  assert.equal(session.state, 'reconnecting');
  clock.tick(1000);
  assert.equal(EventSource.instances.length, 2);
  session.close();
});

test('send() whose answer is cut off rejects with a SignalpostError network', async () => {
  const { server, session } = await setUp();
  server.route('POST', /\/signals$/, () => CUT);
  const error = await session.send(PEER, 'offer', {}).catch((e) => e);
  assert.ok(error instanceof SignalpostError);
  assert.equal(error.code, 'network');
  assert.equal(error.status, 0);
  session.close();
});

test('a poll that never answers is given up after the wait plus 10 s, then retried', async () => {
  const { server, clock, session } = await setUp({ transport: 'poll' });
  const hung = await server.next('GET', /\/poll\?/);
  clock.tick(34_999);
  assert.equal(hung.aborted, undefined);
  clock.tick(1);
  assert.equal(hung.aborted, true);
  const { error } = await nextEvent(session, 'error');
  assert.equal(error.code, 'network');
  assert.equal(session.state, 'reconnecting');
  clock.tick(500);
  await server.next('GET', /\/poll\?/);
  session.close();
});

test('the first poll after a failure asks for an answer at once, so polling shows again at once', async () => {
  const { server, clock, session } = await setUp({ transport: 'poll' });
  (await server.next('GET', /\/poll\?/)).respond(NETWORK);
  await nextEvent(session, 'error');
  clock.tick(500);
  const retry = await server.next('GET', /\/poll\?/);
  assert.match(retry.url, /&timeout=0$/);
  retry.respond({ body: { events: [] } });
  assert.match((await server.next('GET', /\/poll\?/)).url, /&timeout=25$/);
  assert.equal(session.state, 'polling');
  session.close();
});

test('send() without a member id rejects and sends nothing: it never broadcasts', async () => {
  const { server, session } = await setUp();
  server.route('POST', /\/signals$/, () => ({ status: 202, body: { recipients: 2 } }));
  for (const to of [undefined, null, 42]) {
    const error = await session.send(to, 'offer', { sdp: 'v=0' }).catch((e) => e);
    assert.ok(error instanceof TypeError, String(to));
  }
  assert.equal(server.requests.filter((r) => r.url === '/signals').length, 0);
  session.close();
});

// A listener may reconnect or close the session while the library is
// still handling the failure it was told about.

test('reconnect() from a statechange listener leaves no stream open but the newest', async () => {
  const { server, clock, EventSource, session } = await setUp({ transport: 'sse' });
  server.route('GET', /\/rooms\/standup$/, () => ({ body: { id: 'standup' } }));
  server.route('GET', /\/poll\?/, () => ({ body: { events: [] } }));
  EventSource.last.ready();
  session.addEventListener('statechange', (e) => e.detail.state === 'reconnecting' && session.reconnect(), { once: true });
  EventSource.last.fail({ closed: true });
  await server.settle();
  clock.tick(10_000);
  assert.ok(EventSource.instances.length >= 2);
  assert.deepEqual(EventSource.instances.filter((source) => !source.closed), [EventSource.last]);
  session.close();
});

test('reconnect() from an error listener leaves one poll running', async () => {
  const { server, clock, session } = await setUp({ transport: 'poll' });
  session.addEventListener('error', () => session.reconnect(), { once: true });
  (await server.next('GET', /\/poll\?/)).respond(NETWORK);
  await server.next('GET', /\/poll\?/);
  clock.tick(10_000);
  await server.settle();
  assert.equal(server.held.filter((r) => !r.aborted).length, 0, 'the failed poll does not also retry beside the new one');
  session.close();
});

test('close() from a statechange listener during reconnect() opens no stream', async () => {
  const { EventSource, session } = await setUp();
  EventSource.last.ready();
  session.addEventListener('statechange', (e) => e.detail.state === 'reconnecting' && session.close());
  session.reconnect();
  assert.equal(session.state, 'closed');
  assert.ok(EventSource.instances.every((s) => s.closed));
});

test('close() from a statechange listener when auto gives up on the stream starts no poll', async () => {
  const { server, EventSource, session } = await setUp();
  session.addEventListener('statechange', (e) => e.detail.state === 'polling' && session.close());
  const beside = await server.next('GET', /\/poll\?/);
  EventSource.last.fail();
  EventSource.last.fail();
  EventSource.last.fail();
  await server.settle();
  assert.equal(session.state, 'closed');
  assert.equal(beside.aborted, true, 'the poll beside the stream is stopped too');
  assert.equal(server.requests.filter((r) => r.url.includes('/poll')).length, 1, 'no poll after the one beside');
});

// The token goes into a stream URL only where the cookie cannot open it.

test("a baseUrl naming the page's own origin keeps the token out of the stream URL", async () => {
  globalThis.location = { origin: 'http://h:1', href: 'http://h:1/chat.html' };
  try {
    const { EventSource, session } = await setUp({ baseUrl: 'http://h:1/' });
    assert.equal(new URL(EventSource.last.url).searchParams.has('token'), false);
    session.close();
  } finally {
    delete globalThis.location;
  }
});

test('a same-origin stream refused while the cookie works, as by a proxy, is reopened without the token', async () => {
  const { server, clock, EventSource, session } = await setUp({ transport: 'sse' });
  server.route('GET', /\/rooms\/standup$/, () => ({ body: { id: 'standup' } }));
  server.route('GET', /\/poll\?/, () => ({ body: { events: [] } }));
  for (let attempt = 1; attempt <= 2; attempt++) {
    EventSource.last.fail({ closed: true });
    await server.settle();
    clock.tick(10_000);
    assert.equal(EventSource.instances.length, attempt + 1);
    assert.equal(new URL(EventSource.last.url, 'http://x').searchParams.has('token'), false);
  }
  session.close();
});

// A gap may have swallowed joins, leaves and room changes: the room is
// asked for, and what the app missed is announced after the gap.

const roomView = (members, { owner = ME, locked = false } = {}) => ({
  id: 'standup',
  capacity: 10,
  locked,
  owner,
  members: [{ id: ME, name: 'ada', metadata: {}, joined_at: '2026-01-01T00:00:01Z' }, ...members],
  created_at: '2026-01-01T00:00:00Z',
});

test('a gap announces a member whose view changed meanwhile as member-updated', async () => {
  const { server, EventSource, session, events } = await setUp();
  const muted = { ...peer, metadata: { audio: false } };
  server.route('GET', /\/rooms\/standup$/, () => ({ body: roomView([muted]) }));
  const source = EventSource.last;
  source.ready();
  source.emit('gap', { from: 1, to: 2 });
  await server.settle();
  assert.deepEqual(
    events.filter((e) => e.type === 'member-updated'),
    [{ type: 'member-updated', detail: { member: muted } }],
  );
  assert.deepEqual(session.members.get(PEER), muted);
  session.close();
});

test('a gap refreshes members, owner and lock from the room and announces what was missed', async () => {
  const { server, EventSource, session, events } = await setUp();
  server.route('GET', /\/rooms\/standup$/, () => ({ body: roomView([other], { owner: ME, locked: true }) }));
  const source = EventSource.last;
  source.ready();
  source.emit('gap', { from: 1, to: 3 });
  await server.settle();
  const refresh = server.requests.at(-1);
  assert.equal(refresh.url, '/rooms/standup');
  assert.equal(refresh.headers.Authorization, `Bearer ${TOKEN}`);
  assert.deepEqual(events.filter((e) => e.type !== 'statechange'), [
    { type: 'gap', detail: { from: 1, to: 3 } },
    { type: 'member-left', detail: { member_id: PEER, reason: null } },
    { type: 'member-joined', detail: { member: other } },
    { type: 'room-updated', detail: { room_id: 'standup', locked: true, capacity: 10, owner: ME } },
  ]);
  assert.deepEqual([...session.members.keys()], [OTHER]);
  assert.equal(session.owner, true);
  assert.equal(session.locked, true);
  // The inbox may still carry the join the room already showed: said once.
  source.emit('member-joined', { member: other }, 4);
  assert.equal(events.filter((e) => e.type === 'member-joined').length, 1);
  assert.equal(session.lastEventId, 4);
  session.close();
});

test('an inbox event that lands while the room is asked for wins over the older answer', async () => {
  const { server, EventSource, session, events } = await setUp();
  const source = EventSource.last;
  source.ready();
  source.emit('gap', { from: 1, to: 3 });
  const refresh = await server.next('GET', /\/rooms\/standup$/);
  source.emit('member-joined', { member: other }, 4);
  source.emit('room-updated', { room_id: 'standup', locked: true, capacity: 10, owner: PEER }, 5);
  refresh.respond({ body: roomView([peer], { owner: PEER, locked: false }) });
  await server.settle();
  assert.deepEqual([...session.members.keys()], [PEER, OTHER]);
  assert.equal(session.locked, true);
  assert.deepEqual(types(events), ['gap', 'member-joined', 'room-updated']);
  session.close();
});

test('a WHIP or WHEP member is told apart by the metadata the server gave it', () => {
  assert.equal(httpClientKind({ metadata: { whip: 'publisher', peer: 'a' } }), 'whip');
  assert.equal(httpClientKind({ metadata: { whep: 'player', peer: 'a' } }), 'whep');
  assert.equal(httpClientKind({ metadata: { whip: 'yes' } }), null);
  assert.equal(httpClientKind({ metadata: {} }), null);
  assert.equal(httpClientKind(undefined), null);
});

test('an offer loses only the SSRC groups that name an SSRC it never describes', () => {
  const sdp = [
    'v=0', 'm=video 9 UDP/TLS/RTP/SAVPF 106 105',
    'a=ssrc-group:FID 11 12', 'a=ssrc:11 cname:FFmpeg',
    'm=video 9 UDP/TLS/RTP/SAVPF 96 97',
    'a=ssrc-group:FID 21 22', 'a=ssrc:21 cname:x', 'a=ssrc:22 cname:x', '',
  ].join('\r\n');
  const kept = withDescribedGroups(sdp);
  assert.ok(!kept.includes('a=ssrc-group:FID 11 12'));
  assert.ok(kept.includes('a=ssrc-group:FID 21 22'));
  assert.equal(kept.split('\r\n').length, sdp.split('\r\n').length - 1);
});

test('an HTTP client is answered once gathering completes, with the tracks on its transceivers', async () => {
  const sent = [];
  const session = { send: async (to, type, payload) => { sent.push({ to, type, payload }); return { recipients: 1 }; } };
  const replaced = [];
  const transceivers = ['audio', 'video'].map((kind) => ({
    receiver: { track: { kind } },
    direction: 'recvonly',
    sender: { replaceTrack: async (track) => replaced.push(track.kind) },
  }));
  const listeners = new Map();
  const pc = {
    iceGatheringState: 'new',
    localDescription: null,
    remote: null,
    async setRemoteDescription(description) { this.remote = description; },
    getTransceivers: () => transceivers,
    async setLocalDescription() {
      this.localDescription = { toJSON: () => ({ type: 'answer', sdp: 'v=0\r\n' }) };
      this.iceGatheringState = 'gathering';
      setTimeout(() => {
        this.iceGatheringState = 'complete';
        listeners.get('icegatheringstatechange')?.();
      }, 10);
    },
    addEventListener: (name, listener) => listeners.set(name, listener),
    removeEventListener: (name) => listeners.delete(name),
  };
  const signal = { from: 'player', type: 'offer', payload: { type: 'offer', sdp: 'v=0\r\n' } };

  await answerHttpClient(session, pc, signal, { tracks: [{ kind: 'video' }, { kind: 'audio' }], gatherMs: 5_000 });

  assert.deepEqual(replaced, ['audio', 'video']);
  assert.ok(transceivers.every((transceiver) => transceiver.direction === 'sendonly'));
  assert.equal(pc.iceGatheringState, 'complete', 'sent after gathering, not before');
  assert.deepEqual(sent, [{ to: 'player', type: 'answer', payload: { type: 'answer', sdp: 'v=0\r\n' } }]);
});
