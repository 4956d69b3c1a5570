// Takes the README's screenshots: `npm run screenshots` (after `cargo build`)
// writes docs/screenshots/call.png, two participants connected, and
// docs/screenshots/chat.png, a few messages. With `--phone` it also writes
// 375 px wide versions of both pages to tests/artifacts/ for a look.

import { mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { joinRoom, launchBrowser, startServer, waitForCall } from './helpers.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const DOCS = join(ROOT, 'docs', 'screenshots');
const ARTIFACTS = join(ROOT, 'tests', 'artifacts');
const phone = process.argv.includes('--phone');

const server = await startServer();
const browser = await launchBrowser();
try {
  await mkdir(DOCS, { recursive: true });
  await mkdir(ARTIFACTS, { recursive: true });
  const open = async (path, viewport = { width: 960, height: 620 }) => {
    const context = await browser.newContext({ viewport, deviceScaleFactor: 1 });
    await context.grantPermissions(['camera', 'microphone'], { origin: server.url });
    const page = await context.newPage();
    await page.goto(server.url + path);
    return page;
  };

  const ada = await open('/?room=standup');
  const grace = await open('/?room=standup', phone ? { width: 375, height: 740 } : undefined);
  await joinRoom(ada, undefined, 'Ada');
  await joinRoom(grace, undefined, 'Grace');
  await Promise.all([waitForCall(ada, 1), waitForCall(grace, 1)]);
  await ada.screenshot({ path: join(DOCS, 'call.png') });
  if (phone) await grace.screenshot({ path: join(ARTIFACTS, 'phone-call.png'), fullPage: true });
  const lobby = await open('/?room=standup', { width: 375, height: 640 });
  if (phone) await lobby.screenshot({ path: join(ARTIFACTS, 'phone-lobby.png') });

  const first = await open('/chat.html?room=lobby');
  const second = await open('/chat.html?room=lobby', phone ? { width: 375, height: 640 } : undefined);
  await joinRoom(first, undefined, 'Ada');
  await joinRoom(second, undefined, 'Grace');
  const say = async (page, text) => {
    await page.fill('#compose input[name="text"]', text);
    await page.press('#compose input[name="text"]', 'Enter');
  };
  await say(first, 'Morning! Is the build green?');
  await say(second, 'Yes, all checks passed.');
  await say(first, 'Great, I will cut the release after lunch.');
  await say(second, 'Thanks!');
  await first.waitForFunction(() => document.querySelectorAll('#messages li.message').length === 4);
  await second.waitForFunction(() => document.querySelectorAll('#messages li.message').length === 4);
  await first.screenshot({ path: join(DOCS, 'chat.png') });
  if (phone) await second.screenshot({ path: join(ARTIFACTS, 'phone-chat.png') });
  console.log(`screenshots written to ${DOCS}`);
} finally {
  await browser.close();
  await server.stop();
}
