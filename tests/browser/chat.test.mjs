// The chat page in real Chromium: lines typed in one page appear in the
// others, in order and under the sender's name, with joins and leaves.

import assert from 'node:assert/strict';
import { browserTest, joinRoom, roomName, WAIT } from './helpers.mjs';

/** The lines of a chat page's message list, as "author: text" or the notice. */
function lines(page) {
  return page.$$eval('#messages li', (items) => items.map((item) => (item.classList.contains('notice')
    ? item.textContent
    : `${item.querySelector('.author').textContent}: ${item.querySelector('.text').textContent}`)));
}

async function waitForLine(page, line) {
  await page.waitForFunction(
    (line) => [...document.querySelectorAll('#messages li')].some((item) => (item.classList.contains('notice')
      ? item.textContent
      : `${item.querySelector('.author').textContent}: ${item.querySelector('.text').textContent}`) === line),
    line,
    WAIT,
  );
}

async function say(page, text) {
  await page.fill('#compose input[name="text"]', text);
  await page.press('#compose input[name="text"]', 'Enter');
}

browserTest('chat lines reach the other page in order, with names, joins and leaves', {}, async ({ open }) => {
  const room = roomName('chat');
  const alice = await open(`/chat.html?room=${room}`);
  // Bob is on a phone: nothing may scroll sideways.
  const bob = await open(`/chat.html?room=${room}`, { viewport: { width: 375, height: 640 } });
  await joinRoom(alice, undefined, 'alice');
  await joinRoom(bob, undefined, 'bob');
  await waitForLine(alice, 'bob joined');
  assert.ok((await lines(bob)).includes('Here already: alice.'));

  // Typed as fast as the test can type: the page must keep them in order.
  const said = ['hello bob', 'are you there?', 'this is line three', 'and four'];
  for (const text of said) await say(alice, text);
  await waitForLine(bob, 'alice: and four');
  const heard = (await lines(bob)).filter((line) => line.startsWith('alice: '));
  assert.deepEqual(heard, said.map((text) => `alice: ${text}`));
  // The sender sees its own lines once, as its own.
  assert.deepEqual(
    await alice.$$eval('#messages li.mine .text', (items) => items.map((item) => item.textContent)),
    said,
  );

  assert.equal(await bob.evaluate(() => document.documentElement.scrollWidth), 375);

  await say(bob, 'hi alice <b>not bold</b>');
  await waitForLine(alice, 'bob: hi alice <b>not bold</b>');
  assert.equal(await alice.$$eval('#messages b', (items) => items.length), 0);

  await bob.click('#leave');
  await waitForLine(alice, 'bob left');
  // Alice may hear of the leave before Bob's page has read the answer to
  // its DELETE: its session closes then, and is awaited, not assumed.
  await bob.waitForFunction(() => window.app.session.state === 'closed', null, WAIT);
  assert.equal(await bob.evaluate(() => window.app.session.state), 'closed');
  assert.equal(await alice.textContent('#people'), 'only you');
});

browserTest('chat works when the inbox is read by long-poll', {}, async ({ open }) => {
  const room = roomName('chatpoll');
  const alice = await open(`/chat.html?room=${room}&transport=poll`);
  const bob = await open(`/chat.html?room=${room}&transport=poll`);
  await joinRoom(alice, undefined, 'alice');
  await joinRoom(bob, undefined, 'bob');
  assert.equal(await bob.evaluate(() => window.app.session.transport), 'poll');
  await say(bob, 'one');
  await say(bob, 'two');
  await waitForLine(alice, 'bob: two');
  assert.deepEqual((await lines(alice)).filter((line) => line.startsWith('bob: ')), ['bob: one', 'bob: two']);
});
