// Many tabs of one browser profile on one origin over HTTP/1.1, which
// allows six connections per origin: the library reads the inboxes of all
// of them on one stream, held by a SharedWorker, so that every tab loads,
// joins and chats.

import assert from 'node:assert/strict';
import { browserTest, joinRoom, roomName, WAIT } from './helpers.mjs';

const TABS = 12;

async function say(page, text) {
  await page.fill('#compose input[name="text"]', text);
  await page.press('#compose input[name="text"]', 'Enter');
}

/** Whether the page's message list has `author: text`. */
function hasLine(page, author, text) {
  return page.waitForFunction(
    ([author, text]) => [...document.querySelectorAll('#messages li:not(.notice)')].some((item) =>
      item.querySelector('.author')?.textContent === author && item.querySelector('.text')?.textContent === text),
    [author, text],
    WAIT,
  );
}

browserTest(`${TABS} tabs of one profile each join and chat, their inboxes on one shared stream`, {
  serverArgs: ['--default-capacity', String(TABS)],
  timeout: 180_000,
}, async ({ open }) => {
  const room = roomName('tabs');
  const first = await open(`/chat.html?room=${room}`);
  const tabs = [first];
  for (let n = 2; n <= TABS; n++) tabs.push(await open(`/chat.html?room=${room}`, { tabOf: first }));
  for (const [index, tab] of tabs.entries()) await joinRoom(tab, undefined, `tab${index + 1}`);
  for (const tab of tabs) {
    await tab.waitForFunction(() => window.app.session.state === 'live', null, WAIT);
    assert.equal(await tab.evaluate(() => window.app.session.transport), 'sse');
  }

  for (const [index, tab] of tabs.entries()) await say(tab, `hello from tab${index + 1}`);
  for (const [index, tab] of tabs.entries()) {
    for (let n = 1; n <= TABS; n++) {
      if (n !== index + 1) await hasLine(tab, `tab${n}`, `hello from tab${n}`);
    }
  }

  // A tab that leaves drops out of the shared stream; the others read on.
  const leaving = await tabs[0].evaluate(() => window.app.session.memberId);
  await tabs[0].click('#leave');
  await tabs[1].waitForFunction((id) => !window.app.session.members.has(id), leaving, WAIT);
  await say(tabs[2], 'still here');
  for (const tab of tabs.slice(1)) {
    if (tab !== tabs[2]) await hasLine(tab, 'tab3', 'still here');
  }
});
