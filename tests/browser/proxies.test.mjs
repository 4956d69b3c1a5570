// The call page with the default transport, through each kind of proxy a
// user's network may put in the way: how long after the joins the call is
// connected, and how long a signal takes after the call has been idle. The
// proxies are real, started on loopback ports and stopped by pid (see
// proxies.mjs). With PROXY_TIMES set to a file, each run appends its
// figures there as JSON lines: bench/proxies prints them as a table.

import assert from 'node:assert/strict';
import { appendFile } from 'node:fs/promises';
import { browserTest, roomName, WAIT } from './helpers.mjs';
import { startBufferingNginx, startIdleCuttingNginx, startMitmproxy, startSquid } from './proxies.mjs';

/** Connected within this long of the later join, through any proxy. */
const CONNECT_MS = 1000;
/** A signal after idle arrives within this long. */
const DELIVERY_MS = 500;
/** Seconds of silence after which the idle-cutting nginx cuts a response. */
const IDLE_CUT_SECS = 3;

/**
 * Runs in each page before its scripts: notes when the join answered, when
 * the first peer connection connected, how often the session reconnected,
 * and how long each `ping` signal took from its sender's clock (the pages
 * share the machine's).
 */
function instrument() {
  window.timing = { joinedAt: null, connectedAt: null, reconnects: 0, pings: [] };
  const fetch = window.fetch;
  window.fetch = async (...args) => {
    const response = await fetch(...args);
    if (/\/join$/.test(String(args[0]?.url ?? args[0])) && response.ok) window.timing.joinedAt = Date.now();
    return response;
  };
  const Native = window.RTCPeerConnection;
  window.RTCPeerConnection = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener('connectionstatechange', () => {
        if (this.connectionState === 'connected') window.timing.connectedAt ??= Date.now();
      });
    }
  };
}

/** Joins both pages, the second after the first's join answered; resolves to ms from the later join to connected. */
async function connect(alice, bob) {
  await alice.click('#join-form button[type="submit"]');
  await alice.waitForFunction(() => window.timing.joinedAt !== null, null, WAIT);
  await bob.click('#join-form button[type="submit"]');
  for (const page of [alice, bob]) {
    await page.waitForFunction(() => window.timing.connectedAt !== null, null, WAIT);
  }
  const [a, b] = await Promise.all([alice, bob].map((page) => page.evaluate(() => window.timing)));
  return Math.max(a.connectedAt, b.connectedAt) - Math.max(a.joinedAt, b.joinedAt);
}

/** Counts the session's reconnects and the pings it receives. */
async function listen(page) {
  await page.evaluate(() => {
    const { session } = window.app;
    session.addEventListener('statechange', (e) => {
      if (e.detail.state === 'reconnecting') window.timing.reconnects += 1;
    });
    session.addEventListener('signal', (e) => {
      if (e.detail.type === 'ping') window.timing.pings.push(Date.now() - e.detail.payload.sentAt);
    });
  });
}

/** Bob pings Alice; resolves to the ms it took. */
async function ping(alice, bob) {
  const before = await alice.evaluate(() => window.timing.pings.length);
  const aliceId = await alice.evaluate(() => window.app.session.memberId);
  await bob.evaluate((to) => window.app.session.send(to, 'ping', { sentAt: Date.now() }), aliceId);
  await alice.waitForFunction((n) => window.timing.pings.length > n, before, WAIT);
  return alice.evaluate(() => window.timing.pings.at(-1));
}

/**
 * The call through `base` (a reverse proxy's origin) or `proxy` (a forward
 * proxy), then a ping after `idleMs` of silence. Asserts both figures.
 */
async function callThrough(open, name, { base, proxy, idleMs, beforePing = async () => {}, recorded = true }) {
  const room = roomName(name.replace(/\W+/g, '-'));
  const options = { base, proxy, initScript: instrument };
  const alice = await open(`/?room=${room}`, options);
  const bob = await open(`/?room=${room}`, options);
  const connectedMs = await connect(alice, bob);
  await listen(alice);
  // The silence is the scenario, not a wait for something to happen.
  await new Promise((resolve) => setTimeout(resolve, idleMs));
  await beforePing(alice);
  const deliveryMs = await ping(alice, bob);
  const transport = await alice.evaluate(() => window.app.session.transport);
  const reconnects = await alice.evaluate(() => window.timing.reconnects);
  const figures = { path: name, connected_ms: connectedMs, idle_s: idleMs / 1000, delivery_ms: deliveryMs, transport, reconnects };
  // Recorded before the limits are checked: a run that misses them still counts.
  if (recorded) await record(figures);
  assert.ok(connectedMs <= CONNECT_MS, `${name}: connected ${connectedMs} ms after the joins`);
  assert.ok(deliveryMs <= DELIVERY_MS, `${name}: a signal after ${idleMs} ms of silence took ${deliveryMs} ms`);
  return { alice, bob, transport, reconnects, figures };
}

/** Appends a scenario's figures to PROXY_TIMES, when set, for bench/proxies. */
async function record(figures) {
  if (process.env.PROXY_TIMES) await appendFile(process.env.PROXY_TIMES, JSON.stringify(figures) + '\n');
}

browserTest('direct: the call connects at once, on SSE', {}, async ({ server, open }) => {
  const { transport, figures } = await callThrough(open, 'direct', { base: server.url, idleMs: 2000 });
  assert.equal(transport, 'sse');
});

browserTest('through nginx that buffers and compresses: connected at once, by long-poll', {}, async ({ server, open }) => {
  const nginx = await startBufferingNginx(server.url);
  try {
    const { transport, figures } = await callThrough(open, 'nginx buffering', { base: nginx.url, idleMs: 2000 });
    assert.equal(transport, 'poll', 'the stream never proved itself');
  } finally {
    await nginx.stop();
  }
});

browserTest('through mitmproxy, which holds whole bodies: connected at once, by long-poll', {}, async ({ server, open }) => {
  const mitm = await startMitmproxy(server.url);
  try {
    const { transport, figures } = await callThrough(open, 'mitmproxy', { base: mitm.url, idleMs: 2000 });
    assert.equal(transport, 'poll');
  } finally {
    await mitm.stop();
  }
});

browserTest('through squid as a forward proxy: connected at once, on SSE', {}, async ({ server, open }) => {
  const squid = await startSquid();
  try {
    // Chromium sends loopback requests past any proxy unless told not to.
    const proxy = { server: squid.url, bypass: '<-loopback>' };
    const { transport, figures } = await callThrough(open, 'squid', { base: server.url, proxy, idleMs: 2000 });
    assert.equal(transport, 'sse');
  } finally {
    await squid.stop();
  }
});

browserTest('through nginx that cuts idle responses: signals after idle still arrive at once', {}, async ({ server, open }) => {
  const nginx = await startIdleCuttingNginx(server.url, IDLE_CUT_SECS);
  try {
    // Silence past the cut: the first cut teaches the session the limit.
    const { alice, bob, transport, reconnects, figures } = await callThrough(open, `nginx idle cut ${IDLE_CUT_SECS} s`, {
      base: nginx.url,
      idleMs: (IDLE_CUT_SECS + 1) * 1000,
      recorded: false,
      beforePing: (page) => page.waitForFunction(() => window.timing.reconnects >= 1 && window.app.session.state === 'live', null, WAIT),
    });
    assert.equal(transport, 'sse');
    // Then twice the limit in silence: the stream asked for keep-alives
    // inside it, so it is not cut again, and a signal comes at once.
    await new Promise((resolve) => setTimeout(resolve, IDLE_CUT_SECS * 2 * 1000));
    const deliveryMs = await ping(alice, bob);
    const reconnectsAfter = await alice.evaluate(() => window.timing.reconnects);
    await record({ ...figures, idle_s: IDLE_CUT_SECS * 2, delivery_ms: deliveryMs, reconnects: reconnectsAfter });
    assert.ok(deliveryMs <= DELIVERY_MS, `a signal after the second silence took ${deliveryMs} ms`);
    assert.equal(reconnectsAfter, reconnects, 'no cut after the first');
  } finally {
    await nginx.stop();
  }
});
