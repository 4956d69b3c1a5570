/**
 * The SharedWorker that reads the inboxes of all of an origin's tabs on one
 * connection (`POST /streams`), started by web/signalpost.js. Over HTTP/1.1
 * a browser opens at most six connections to an origin, and a stream per
 * tab would take them all: the seventh tab would not even load.
 *
 * Each tab's session opens a "source" here in place of an `EventSource` and
 * gets the same events: `ready`, the inbox's events with their ids, and
 * errors. The worker keeps one stream with every open source's inbox on
 * it, opened again (each inbox resuming after the last id it handed on)
 * whenever a source opens or closes, and after a failure. A tab that
 * stops saying it is alive (it crashed, or was frozen) has its sources
 * dropped, so its member is not kept alive by the others' stream.
 *
 * Messages from a tab: `{op: 'open', source, room_id, member_id, token,
 * last_event_id, keep_alive}`, `{op: 'close', source}`, `{op: 'alive'}`.
 * To a tab: `{source, kind, data, id}` (an event, `id` its place in the
 * inbox as text) and `{source, kind: 'error', closed}`: `closed` when the
 * server refused the stream (the tab checks why), otherwise the worker is
 * reconnecting by itself.
 */

/** A tab that has said nothing for this long is gone. */
const TAB_SILENCE_MS = 30_000;
/** Opens and closes that come together make one new stream. */
const BATCH_MS = 10;
const RETRY_FIRST_MS = 500;
const RETRY_CAP_MS = 10_000;
/** The server's bound on inboxes per stream; beyond it, tabs read on their own. */
const INBOXES_MAX = 32;

/**
 * Every open source: `<tab>/<source>` → {port, source, room_id, member_id,
 * token, last_event_id, keep_alive}; `source` is the tab's own number for it.
 */
const sources = new Map();
let tabCount = 0;
/** Each tab's port → when it last spoke. */
const tabs = new Map();
/** The running stream's AbortController. */
let stream = null;
let reopenTimer = null;
let failures = 0;

self.onconnect = (event) => {
  const [port] = event.ports;
  const tab = ++tabCount;
  tabs.set(port, Date.now());
  port.onmessage = (message) => onMessage(port, tab, message.data);
  port.start();
};

function onMessage(port, tab, message) {
  tabs.set(port, Date.now());
  const key = `${tab}/${message?.source}`;
  switch (message?.op) {
    case 'open': {
      const { source, room_id, member_id, token, last_event_id, keep_alive } = message;
      if (sources.size >= INBOXES_MAX) {
        // The tab's session counts this as a refused stream and reads on its own.
        port.postMessage({ source, kind: 'error', closed: true });
        return;
      }
      sources.set(key, { port, source, room_id, member_id, token, last_event_id, keep_alive });
      reopenSoon(0);
      break;
    }
    case 'close':
      if (sources.delete(key)) reopenSoon(0);
      break;
    default:
      break;
  }
}

/** Drops the sources of tabs that went silent. */
setInterval(() => {
  const now = Date.now();
  for (const [port, spokeAt] of tabs) {
    if (now - spokeAt < TAB_SILENCE_MS) continue;
    tabs.delete(port);
    for (const [key, entry] of sources) if (entry.port === port) sources.delete(key);
    reopenSoon(0);
  }
}, TAB_SILENCE_MS / 3);

function reopenSoon(delay) {
  clearTimeout(reopenTimer);
  reopenTimer = setTimeout(open, Math.max(delay, BATCH_MS));
}

async function open() {
  stream?.abort();
  stream = null;
  if (sources.size === 0) return;
  const controller = new AbortController();
  stream = controller;
  const listed = [...sources.entries()];
  const keepAlives = listed.map(([, s]) => s.keep_alive).filter((k) => typeof k === 'number');
  const body = {
    inboxes: listed.map(([, s]) => ({
      room_id: s.room_id,
      member_id: s.member_id,
      token: s.token,
      last_event_id: s.last_event_id,
    })),
    ...(keepAlives.length ? { keep_alive: Math.min(...keepAlives) } : {}),
  };
  let response;
  try {
    response = await fetch('/streams', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
      signal: controller.signal,
    });
  } catch {
    if (controller === stream) failed(listed, false);
    return;
  }
  if (controller !== stream) return;
  if (!response.ok || !response.body) {
    // A refusal names no inbox: each tab asks the server about its own,
    // as after an `EventSource` the browser gave up on. A busy server or a
    // proxy's error page is retried here.
    const refused = [400, 401, 403, 404].includes(response.status);
    failed(listed, refused);
    return;
  }
  try {
    await read(response.body, controller);
  } catch {
    // A cut connection, or the abort of a reopen.
  }
  if (controller === stream) failed(listed, false);
}

/** Tells each source of `listed` that the stream failed, and retries or drops them. */
function failed(listed, refused) {
  stream = null;
  for (const [key, entry] of listed) {
    if (sources.get(key) !== entry) continue;
    if (refused) sources.delete(key);
    entry.port.postMessage({ source: entry.source, kind: 'error', closed: refused });
  }
  if (refused) {
    failures = 0;
    reopenSoon(0);
  } else {
    failures += 1;
    reopenSoon(Math.min(RETRY_CAP_MS, RETRY_FIRST_MS * 2 ** (failures - 1)));
  }
}

/** Reads the event stream, handing each frame to the source whose inbox it is. */
async function read(body, controller) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  let frame = { id: '', kind: 'message', data: [] };
  for (;;) {
    const { value, done } = await reader.read();
    if (done || controller !== stream) return;
    buffer += value;
    let end;
    while ((end = buffer.search(/\r\n|\r|\n/)) >= 0) {
      const line = buffer.slice(0, end);
      buffer = buffer.slice(end + (buffer.startsWith('\r\n', end) ? 2 : 1));
      if (line === '') {
        if (frame.data.length) deliver(frame);
        frame = { id: '', kind: 'message', data: [] };
        continue;
      }
      if (line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      let text = colon < 0 ? '' : line.slice(colon + 1);
      if (text.startsWith(' ')) text = text.slice(1);
      if (field === 'id') frame.id = text;
      else if (field === 'event') frame.kind = text;
      else if (field === 'data') frame.data.push(text);
    }
  }
}

function deliver({ id, kind, data }) {
  const slash = id.lastIndexOf('/');
  const member = id.slice(0, slash);
  const place = Number(id.slice(slash + 1));
  for (const entry of sources.values()) {
    if (entry.member_id !== member) continue;
    if (kind === 'ready') failures = 0;
    entry.last_event_id = place;
    entry.port.postMessage({ source: entry.source, kind, data: data.join('\n'), id: String(place) });
  }
}
