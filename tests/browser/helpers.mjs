// What every browser test needs: the real server on an ephemeral loopback
// port, serving `web/` from disk, and Debian's Chromium driven by
// playwright-core with fake camera and microphone. A failing test leaves a
// screenshot of each of its pages, their console and the server's log in
// `tests/artifacts/`.

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test, after } from 'node:test';
import { chromium } from 'playwright-core';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
/** The debug build unless told otherwise (bench/proxies runs the release build). */
const BINARY = process.env.SIGNALPOST_BINARY ? resolve(ROOT, process.env.SIGNALPOST_BINARY) : join(ROOT, 'target', 'debug', 'signalpost');
const ARTIFACTS = join(ROOT, 'tests', 'artifacts');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

/** How long one condition may take before the test fails. */
export const WAIT = { timeout: 20_000 };

const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
  // Let ICE pair 127.0.0.1 with itself, so a call needs no network at all.
  '--allow-loopback-in-peer-connection',
];

/**
 * Starts `target/debug/signalpost --listen 127.0.0.1:0 --web-dir web` plus
 * `args`, and resolves once its log names the port.
 */
export async function startServer(args = []) {
  if (!existsSync(BINARY)) {
    throw new Error(`${BINARY} is missing: build it first with \`cargo build\``);
  }
  const child = spawn(BINARY, ['--listen', '127.0.0.1:0', '--web-dir', join(ROOT, 'web'), ...args], {
    cwd: ROOT,
    env: { ...process.env, NO_COLOR: '1', RUST_LOG: process.env.RUST_LOG ?? 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the server did not say where it listens:\n${log}`)), 10_000);
    const read = (chunk) => {
      // The log may be coloured; the escape codes are no part of the address.
      log += chunk.toString().replace(/\x1b\[[0-9;]*m/g, '');
      const found = /listening on 127\.0\.0\.1:(\d+)/.exec(log);
      if (found) {
        clearTimeout(timer);
        resolve(Number(found[1]));
      }
    };
    child.stdout.on('data', read);
    child.stderr.on('data', read);
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the server exited (${code}) before listening:\n${log}`));
    });
  });
  return {
    url: `${args.includes('--tls-cert') ? 'https' : 'http'}://127.0.0.1:${port}`,
    log: () => log,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/**
 * Launches Debian's Chromium with fake media devices, and `extraArgs`;
 * each launch has a fresh temporary profile.
 */
export async function launchBrowser(extraArgs = []) {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: install it with \`apt-get install chromium\``);
  }
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: [...CHROMIUM_ARGS, ...extraArgs] });
}

/** The one Chromium of this test file, launched on first use and closed after its last test. */
let browser = null;
let closesBrowser = false;

function sharedBrowser() {
  browser ??= launchBrowser();
  return browser;
}

/**
 * Declares a test that gets a fresh server started with `serverArgs`, and
 * `open(path)` for pages, each in its own browser context (its own storage,
 * its own camera grant), as separate people would be.
 */
export function browserTest(name, { serverArgs = [], timeout = 90_000, browserArgs } = {}, body) {
  if (!closesBrowser) {
    closesBrowser = true;
    after(async () => {
      await (await browser?.catch(() => null))?.close();
      browser = null;
    });
  }
  test(name, { timeout }, async () => {
    const server = await startServer(serverArgs);
    // A Chromium of its own for a test that needs other flags.
    const own = browserArgs ? launchBrowser(browserArgs) : null;
    const pages = [];
    const contexts = [];
    // `base`: another origin in front of the server (a reverse proxy);
    // `proxy`: a forward proxy for the context; `initScript`: runs in the
    // page before its own scripts.
    // `tabOf`: a page whose context (one browser profile) this one shares, as a new tab.
    const open = async (path = '/', { viewport = { width: 1000, height: 720 }, base = server.url, proxy, initScript, tabOf } = {}) => {
      // A server over HTTPS presents a certificate the test made.
      const options = { viewport, ignoreHTTPSErrors: base.startsWith('https:'), ...(proxy ? { proxy } : {}) };
      const context = tabOf?.context() ?? await (await (own ?? sharedBrowser())).newContext(options);
      if (!tabOf) contexts.push(context);
      await context.grantPermissions(['camera', 'microphone'], { origin: base });
      if (initScript) await context.addInitScript(initScript);
      const page = await context.newPage();
      const entry = { page, console: [] };
      page.on('console', (message) => entry.console.push(`[${message.type()}] ${message.text()}`));
      page.on('pageerror', (error) => entry.console.push(`[pageerror] ${error.stack ?? error}`));
      pages.push(entry);
      await page.goto(base + path);
      return page;
    };
    try {
      await body({ server, open });
    } catch (error) {
      await saveArtifacts(name, pages, server).catch((cause) => console.error('artifacts not saved:', cause));
      throw error;
    } finally {
      await Promise.all(contexts.map((context) => context.close().catch(() => {})));
      await (await own?.catch(() => null))?.close();
      await server.stop();
    }
  });
}

async function saveArtifacts(name, pages, server) {
  await mkdir(ARTIFACTS, { recursive: true });
  const slug = name.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '');
  for (const [index, { page, console: lines }] of pages.entries()) {
    const n = index + 1;
    await page.screenshot({ path: join(ARTIFACTS, `${slug}-${n}.png`), fullPage: true }).catch(() => {});
    await writeFile(join(ARTIFACTS, `${slug}-${n}.console.log`), lines.join('\n') + '\n');
  }
  await writeFile(join(ARTIFACTS, `${slug}-server.log`), server.log());
  console.error(`artifacts of "${name}" are in ${ARTIFACTS}/${slug}-*`);
}

/** Fills the join form of either page and waits until the inbox is read. */
export async function joinRoom(page, room, name) {
  if (room !== undefined) await page.fill('input[name="room"]', room);
  if (name !== undefined) await page.fill('input[name="name"]', name);
  await page.click('#join-form button[type="submit"]');
  await page.waitForFunction(
    () => ['live', 'polling'].includes(window.app.session?.state),
    null,
    WAIT,
  );
  return page.evaluate(() => window.app.session.memberId);
}

/** Waits until a call page has exactly `count` peers, all connected and their videos playing. */
export async function waitForCall(page, count) {
  await page.waitForFunction(
    (count) => {
      const connections = [...window.app.peers.values()];
      const videos = [...document.querySelectorAll('[data-member-id] video')];
      return connections.length === count
        && connections.every((pc) => pc.connectionState === 'connected')
        && videos.length === count
        && videos.every((video) => !video.paused && video.readyState >= 2 && video.videoWidth > 0);
    },
    count,
    WAIT,
  );
}

/** A room name no other test uses. */
export function roomName(prefix) {
  return `${prefix}-${Math.random().toString(36).slice(2, 8)}`;
}
