// WHIP into a room from clients we did not write, each streaming into the
// call page of the room's owner, whose frames the page decodes; when the
// client is interrupted, its DELETE takes it out of the room:
//
// - ffmpeg's WHIP muxer (ffmpeg 8 or later, from the imageio-ffmpeg wheel
//   that scripts/test installs into target/ffmpeg-venv; Debian's 5.1 has
//   none), a test pattern and a tone, H.264 baseline and Opus, on one
//   node and across two sharing a Redis. ffmpeg puts no candidates in its
//   offer: it connects to the ones in the page's answer.
// - Debian's simple-whip-client (GStreamer's webrtcbin and libnice), VP8,
//   with every candidate in its offer and trickling them by PATCH. On
//   Debian 12 it aborts at start ("libsoup2 symbols detected": it links
//   libsoup 2, and libnice's UPnP library pulls in libsoup 3); the test
//   runs it with a do-nothing UPnP library of its own
//   (`whip-client/gupnp-igd.c`), built here.
//
// And WHEP out of a room to a player we did not write: the WHEP client of
// the whip-whep npm package, in a page of its own, plays the fake camera
// of a member's call page.

import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createServer } from 'node:net';
import { browserTest, joinRoom, roomName, startServer, WAIT } from './helpers.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const FFMPEG_PYTHON = join(ROOT, 'target', 'ffmpeg-venv', 'bin', 'python');
// Chromium hides its host addresses behind mDNS names, which ffmpeg does
// not resolve: the answer must carry addresses.
const BROWSER_ARGS = ['--disable-features=WebRtcHideLocalIpsWithMdns'];

/** The ffmpeg binary the imageio-ffmpeg wheel ships. */
function ffmpeg() {
  if (!existsSync(FFMPEG_PYTHON)) {
    throw new Error(`${FFMPEG_PYTHON} is missing: scripts/test installs imageio-ffmpeg there`);
  }
  return execFileSync(FFMPEG_PYTHON, ['-c', 'import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())'])
    .toString()
    .trim();
}

/**
 * The ffmpeg line of docs/whip.md, as its words (it quotes none), without
 * the program and the URL it ends with: what the docs tell users to run
 * is what runs here.
 */
function documentedFfmpegArgs() {
  const docs = readFileSync(join(ROOT, 'docs', 'whip.md'), 'utf8');
  const found = docs.match(/^ffmpeg (?:.*\\\n)*.*$/m);
  if (!found) throw new Error('docs/whip.md shows an ffmpeg line');
  const words = found[0].replace(/\\\n/g, ' ').split(/\s+/).filter(Boolean);
  assert.equal(words.pop(), 'http://localhost:8080/rooms/studio/whip');
  return words.slice(1);
}

/** Starts ffmpeg publishing to `url`, as docs/whip.md does. */
function startFfmpeg(url) {
  const args = documentedFfmpegArgs();
  // Bounded: a run that hangs ends by itself; `-t` applies to the output.
  const output = args.lastIndexOf('-f');
  args.splice(output, 0, '-t', '60');
  return startClient(ffmpeg(), ['-hide_banner', '-loglevel', 'info', '-nostdin', ...args, url]);
}

/** Where the stand-in UPnP library is built, once per run. */
const IGD_DIR = join(ROOT, 'target', 'whip-client');

/** Starts simple-whip-client publishing VP8 to `url`, with `flags`. */
function startSimpleWhipClient(url, flags) {
  const library = join(IGD_DIR, 'libgupnp-igd-1.0.so.4');
  if (!existsSync(library)) {
    mkdirSync(IGD_DIR, { recursive: true });
    const glib = execFileSync('pkg-config', ['--cflags', '--libs', 'gobject-2.0']).toString().trim().split(/\s+/);
    execFileSync('cc', ['-shared', '-fPIC', '-O2', '-o', library, join(ROOT, 'tests', 'browser', 'whip-client', 'gupnp-igd.c'), ...glib]);
  }
  const video = [
    'videotestsrc is-live=true pattern=ball',
    'video/x-raw,width=320,height=240,framerate=15/1',
    'videoconvert',
    'queue',
    'vp8enc deadline=1 target-bitrate=300000',
    'rtpvp8pay pt=96 ssrc=2',
    'queue',
    'application/x-rtp,media=video,encoding-name=VP8,payload=96',
  ].join(' ! ');
  return startClient('/usr/bin/whip-client', ['-u', url, '-V', video, '-o', ...flags], {
    ...process.env,
    LD_LIBRARY_PATH: [IGD_DIR, process.env.LD_LIBRARY_PATH].filter(Boolean).join(':'),
  });
}

/** Runs a WHIP client; `stop()` interrupts it as Ctrl-C would. */
function startClient(command, args, env = process.env) {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
  let log = '';
  child.stdout.on('data', (chunk) => { log += chunk; });
  child.stderr.on('data', (chunk) => { log += chunk; });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  return {
    log: () => log,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGINT');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Video frames `page`'s connection to member `id` decoded, by `getStats`. */
function framesDecoded(page, id) {
  return page.evaluate(async (id) => {
    const pc = window.app.peers.get(id);
    if (!pc) return 0;
    let frames = 0;
    for (const report of (await pc.getStats()).values()) {
      if (report.type === 'inbound-rtp' && report.kind === 'video') frames += report.framesDecoded ?? 0;
    }
    return frames;
  }, id);
}

/**
 * Waits, within the deadline, until the video `selector` names has shown
 * more than `above` frames; answers how many it has.
 */
async function waitForShown(page, selector, above) {
  const shown = await page.waitForFunction(([selector, above]) => {
    const count = document.querySelector(selector)?.getVideoPlaybackQuality().totalVideoFrames ?? 0;
    return count > above && count;
  }, [selector, above], WAIT);
  return shown.jsonValue();
}

/**
 * Waits until the tile of member `id` plays, and checks by `getStats` that
 * the frames its connection decoded rise while it does.
 */
async function expectFramesRising(page, id) {
  const video = `[data-member-id="${id}"] video`;
  let shown = await waitForShown(page, video, 0);
  const decoded = await framesDecoded(page, id);
  assert.ok(decoded > 0, 'getStats counts no frame decoded');
  // getStats answers from a cache a while: the count moves in steps.
  for (let looks = 0; looks < 20 && await framesDecoded(page, id) <= decoded; looks += 1) {
    shown = await waitForShown(page, video, shown + 5);
  }
  assert.ok(await framesDecoded(page, id) > decoded, 'the frames decoded do not rise');
}

/**
 * Streams ffmpeg into the room of a call page opened on `pageBase`, the
 * POST going to `whipBase`, and checks what the issue asks: frames decoded
 * and rising, and the member gone after ffmpeg's DELETE.
 */
async function streamIntoRoom(open, pageBase, whipBase, start) {
  const room = roomName('whip');
  const page = await open(`/?room=${room}`, { base: pageBase });
  await joinRoom(page, undefined, 'viewer');
  const client = start(`${whipBase}/rooms/${room}/whip`);
  try {
    const publisher = await (await page.waitForFunction(
      () => [...window.app.session.members.values()].find((member) => member.metadata?.whip === 'publisher'),
      null,
      WAIT,
    )).jsonValue();
    assert.equal(publisher.name, 'WHIP publisher');
    await expectFramesRising(page, publisher.id);
    await page.waitForFunction(
      (id) => document.querySelector(`[data-member-id="${id}"] video`)?.videoWidth === 320,
      publisher.id,
      WAIT,
    );

    await client.stop();
    await page.waitForFunction(
      (id) => !window.app.session.members.has(id) && !document.querySelector(`[data-member-id="${id}"]`),
      publisher.id,
      WAIT,
    );
  } catch (error) {
    console.error(`the WHIP client's log:\n${client.log()}`);
    throw error;
  } finally {
    await client.stop();
  }
}

browserTest('ffmpeg streams into a room over WHIP, and its DELETE takes it out', { browserArgs: BROWSER_ARGS }, async ({ server, open }) => {
  await streamIntoRoom(open, server.url, server.url, startFfmpeg);
});

for (const [how, flags] of [
  ['with every candidate in its offer', ['-n']],
  ['trickling its candidates by PATCH', []],
]) {
  browserTest(`simple-whip-client streams into a room ${how}, and its DELETE takes it out`, { browserArgs: BROWSER_ARGS }, async ({ server, open }) => {
    await streamIntoRoom(open, server.url, server.url, (url) => startSimpleWhipClient(url, flags));
  });
}

/** A redis-server of its own on a free loopback port, stopped by `stop()`. */
async function startRedis() {
  const port = await new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`redis-server did not start:\n${log}`)), 10_000);
    child.stdout.on('data', (chunk) => {
      log += chunk;
      if (log.includes('Ready to accept connections')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`redis-server exited (${code}):\n${log}`));
    });
  });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  return {
    url: `redis://127.0.0.1:${port}`,
    async stop() {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

browserTest('ffmpeg\'s WHIP POST reaches a room whose member streams from another node', { browserArgs: BROWSER_ARGS }, async ({ open }) => {
  const redis = await startRedis();
  const nodes = [];
  try {
    for (let i = 0; i < 2; i += 1) nodes.push(await startServer(['--redis-url', redis.url]));
    await streamIntoRoom(open, nodes[0].url, nodes[1].url, startFfmpeg);
  } finally {
    for (const node of nodes) await node.stop();
    await redis.stop();
  }
});

/** The whip-whep package's WHEP client, as a module that puts it on `window`. */
const WHEP_CLIENT = `${readFileSync(join(ROOT, 'node_modules', 'whip-whep', 'whep.js'), 'utf8')}
window.WHEPClient = WHEPClient;`;

browserTest('a WHEP player plays a member\'s camera, and leaves when it stops', {}, async ({ server, open }) => {
  const room = roomName('whep');
  const caller = await open(`/?room=${room}`);
  const callerId = await joinRoom(caller, undefined, 'camera');
  // Served by the server so that the player's requests are same-origin;
  // the page is only a place for the player to run.
  const player = await open('/chat.html');
  await player.addScriptTag({ content: WHEP_CLIENT, type: 'module' });
  await player.waitForFunction(() => typeof window.WHEPClient === 'function', null, WAIT);

  await player.evaluate(async ({ room, callerId }) => {
    const pc = new RTCPeerConnection();
    pc.addTransceiver('video', { direction: 'recvonly' });
    pc.addTransceiver('audio', { direction: 'recvonly' });
    // Played in a video of its own, whose frames the test counts.
    const video = Object.assign(document.createElement('video'), { id: 'whep-video', muted: true, autoplay: true });
    document.body.append(video);
    pc.ontrack = ({ track, streams }) => {
      if (track.kind === 'video') video.srcObject = streams[0] ?? new MediaStream([track]);
    };
    window.player = { pc, client: new window.WHEPClient() };
    await window.player.client.view(pc, `${location.origin}/rooms/${room}/whep?to=${callerId}&name=player`);
  }, { room, callerId });

  const playerId = await (await caller.waitForFunction(
    () => [...window.app.session.members.values()].find((member) => member.metadata?.whep === 'player')?.id,
    null,
    WAIT,
  )).jsonValue();
  const decoded = () => player.evaluate(async () => {
    let frames = 0;
    for (const report of (await window.player.pc.getStats()).values()) {
      if (report.type === 'inbound-rtp' && report.kind === 'video') frames += report.framesDecoded ?? 0;
    }
    return frames;
  });
  let shown = await waitForShown(player, '#whep-video', 0);
  const first = await decoded();
  assert.ok(first > 0, 'getStats counts no frame decoded');
  for (let looks = 0; looks < 20 && await decoded() <= first; looks += 1) {
    shown = await waitForShown(player, '#whep-video', shown + 5);
  }
  assert.ok(await decoded() > first, 'the frames decoded do not rise');

  await player.evaluate(() => window.player.client.stop());
  await caller.waitForFunction((id) => !window.app.session.members.has(id), playerId, WAIT);
});
