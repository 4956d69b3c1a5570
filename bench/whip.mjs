// How fast a WHIP encoder gets into a call: ffmpeg (the imageio-ffmpeg
// wheel's, as tests/browser/whip.test.mjs uses) publishes into the room of
// a call page in headless Chromium, ten times in a row, on loopback.
//
//     node bench/whip.mjs [--runs N]
//
// Needs a release build (`cargo build --release`), Debian's chromium, and
// target/ffmpeg-venv (scripts/test installs it). For each run it reports:
//
// - POST to 201: the server's own account (`signalpost_answer_seconds`,
//   the sum's growth over the run), from the request to its answer;
// - the page's part of it: from the offer's arrival in the page to its
//   answer's send, which is mostly ICE gathering;
// - the server's part: the first less the second;
// - the first frame: from the encoder's arrival in the page (its join is
//   the POST's first step) to the first video frame the page decoded.
//
// Prints the median and the largest of each, in milliseconds.

import { execFileSync, spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const runs = Number(process.argv[process.argv.indexOf('--runs') + 1] || 0) || 10;
const ffmpeg = execFileSync(join(ROOT, 'target', 'ffmpeg-venv', 'bin', 'python'), [
  '-c', 'import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())',
]).toString().trim();

const server = spawn(join(ROOT, 'target', 'release', 'signalpost'), ['--listen', '127.0.0.1:0'], {
  stdio: ['ignore', 'pipe', 'pipe'],
});
const base = await new Promise((resolve, reject) => {
  let log = '';
  const timer = setTimeout(() => reject(new Error(`the server did not start:\n${log}`)), 10_000);
  server.stdout.on('data', (chunk) => {
    log += chunk.toString().replace(/\x1b\[[0-9;]*m/g, '');
    const found = /listening on (127\.0\.0\.1:\d+)/.exec(log);
    if (found) {
      clearTimeout(timer);
      resolve(`http://${found[1]}`);
    }
  });
});

async function answerSeconds() {
  const text = await (await fetch(`${base}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('signalpost_answer_seconds_sum{kind="whip"}'));
  return line ? Number(line.split(' ').pop()) : 0;
}

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
    '--allow-loopback-in-peer-connection', '--disable-features=WebRtcHideLocalIpsWithMdns',
  ],
});
const results = [];
try {
  const context = await browser.newContext();
  await context.grantPermissions(['camera', 'microphone'], { origin: base });
  const page = await context.newPage();
  const room = `whip-bench-${Date.now()}`;
  await page.goto(`${base}/?room=${room}`);
  await page.fill('input[name="name"]', 'viewer');
  await page.click('#join-form button[type="submit"]');
  await page.waitForFunction(() => window.app.session?.state === 'live', null, { timeout: 20_000 });
  // Times, in the page's clock, of each encoder's join, offer and answer.
  await page.evaluate(() => {
    const session = window.app.session;
    window.timing = new Map();
    const of = (id) => window.timing.get(id) ?? window.timing.set(id, {}).get(id);
    session.addEventListener('member-joined', (e) => { of(e.detail.member.id).joined = performance.now(); });
    session.addEventListener('signal', (e) => {
      if (e.detail.type === 'offer') of(e.detail.from).offer = performance.now();
    });
    const send = session.send.bind(session);
    session.send = (to, type, payload) => {
      if (type === 'answer') of(to).answer = performance.now();
      return send(to, type, payload);
    };
  });

  for (let run = 0; run < runs; run += 1) {
    const before = await answerSeconds();
    const encoder = spawn(ffmpeg, [
      '-hide_banner', '-loglevel', 'error', '-nostdin',
      '-re', '-f', 'lavfi', '-i', 'testsrc=size=320x240:rate=30',
      '-c:v', 'libx264', '-profile:v', 'baseline', '-tune', 'zerolatency', '-pix_fmt', 'yuv420p', '-g', '30', '-bf', '0',
      '-t', '30', '-f', 'whip', `${base}/rooms/${room}/whip`,
    ], { stdio: 'ignore' });
    const exited = new Promise((resolve) => encoder.once('exit', resolve));
    const deadline = Date.now() + 20_000;
    let seen = null;
    while (!seen) {
      if (Date.now() > deadline) throw new Error(`run ${run + 1}: no frame decoded in 20 s`);
      seen = await page.evaluate(async () => {
        for (const [id, pc] of window.app.peers) {
          for (const report of (await pc.getStats()).values()) {
            if (report.type === 'inbound-rtp' && report.kind === 'video' && report.framesDecoded > 0) {
              return { id, firstFrame: performance.now() };
            }
          }
        }
        return null;
      });
    }
    const { id, firstFrame } = seen;
    const times = await page.evaluate((id) => window.timing.get(id), id);
    const post = (await answerSeconds() - before) * 1000;
    const browserPart = times.answer - times.offer;
    results.push({ post, browserPart, serverPart: post - browserPart, firstFrame: firstFrame - times.joined });
    encoder.kill('SIGINT');
    await exited;
    await page.waitForFunction((id) => !window.app.peers.has(id), id, { timeout: 20_000 });
  }
} finally {
  await browser.close();
  server.kill('SIGTERM');
}

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
console.log(`${runs} runs, milliseconds: median / largest`);
for (const [key, label] of [
  ['post', 'POST to 201 (server metric)'],
  ['browserPart', "the page's part (offer in to answer out)"],
  ['serverPart', "the server's part"],
  ['firstFrame', 'encoder joined to first frame decoded'],
]) {
  const values = results.map((result) => result[key]);
  console.log(`${label}: ${median(values).toFixed(0)} / ${Math.max(...values).toFixed(0)}`);
}
