// The video call page in real Chromium: a full mesh forms and shrinks, over
// SSE and over long-poll, survives a cut stream mid-negotiation, and a full
// or locked room says so.

import assert from 'node:assert/strict';
import { browserTest, joinRoom, roomName, waitForCall, WAIT } from './helpers.mjs';

browserTest('three pages form a full mesh and drop the one who leaves', {}, async ({ open }) => {
  const room = roomName('mesh');
  const alice = await open(`/?room=${room}`);
  const bob = await open(`/?room=${room}`);
  await joinRoom(alice, undefined, 'alice');
  await joinRoom(bob, undefined, 'bob');
  await Promise.all([waitForCall(alice, 1), waitForCall(bob, 1)]);
  assert.equal(await alice.textContent('[data-member-id] figcaption .peer-name'), 'bob');

  // Carol is on a phone: three tiles must fit its width.
  const carol = await open(`/?room=${room}`, { viewport: { width: 375, height: 740 } });
  const carolId = await joinRoom(carol, undefined, 'carol');
  await Promise.all([waitForCall(alice, 2), waitForCall(bob, 2), waitForCall(carol, 2)]);
  assert.equal(await carol.evaluate(() => document.documentElement.scrollWidth), 375);

  await carol.click('#leave');
  for (const page of [alice, bob]) {
    await page.waitForFunction(
      (id) => !document.querySelector(`[data-member-id="${id}"]`) && !window.app.peers.has(id),
      carolId,
      WAIT,
    );
  }
  await Promise.all([waitForCall(alice, 1), waitForCall(bob, 1)]);
  assert.equal(await carol.evaluate(() => window.app.session.state), 'closed');
  assert.equal(await carol.isVisible('#join-form'), true);
});

browserTest('two pages connect when the inbox is read by long-poll', {}, async ({ open }) => {
  const room = roomName('poll');
  const alice = await open(`/?room=${room}&transport=poll`);
  const bob = await open(`/?room=${room}&transport=poll`);
  await joinRoom(alice, undefined, 'alice');
  await joinRoom(bob, undefined, 'bob');
  await Promise.all([waitForCall(alice, 1), waitForCall(bob, 1)]);
  for (const page of [alice, bob]) {
    assert.equal(await page.evaluate(() => window.app.session.transport), 'poll');
    assert.match(await page.textContent('#state'), /long-poll/);
  }
});

browserTest('a call still connects when streams are cut during negotiation', {}, async ({ open }) => {
  const room = roomName('resume');
  const alice = await open(`/?room=${room}&transport=sse`);
  const bob = await open(`/?room=${room}&transport=sse`);
  await joinRoom(alice, undefined, 'alice');
  // Alice drops her stream right after each of the first three signals she
  // reads, so offers, answers and candidates are all in flight across a cut.
  await alice.evaluate(() => {
    const { session } = window.app;
    window.cuts = 0;
    session.addEventListener('signal', () => {
      if (window.cuts < 3) {
        window.cuts += 1;
        session.reconnect();
      }
    });
  });

  await bob.fill('input[name="name"]', 'bob');
  await bob.click('#join-form button[type="submit"]');
  // Bob offers as soon as his join is answered; cut his stream at once too.
  await bob.waitForFunction(() => window.app.session, null, { ...WAIT, polling: 'raf' });
  await bob.evaluate(() => window.app.session.reconnect());

  await Promise.all([waitForCall(alice, 1), waitForCall(bob, 1)]);
  // Alice reads at least the offer or answer and one candidate, each followed
  // by a cut. On a slow machine the call may be up on the candidates inside
  // the SDP before her trickled ones are read, so wait for them.
  await alice.waitForFunction(() => window.cuts >= 2, null, WAIT);
  for (const page of [alice, bob]) {
    await page.waitForFunction(() => window.app.session.state === 'live', null, WAIT);
    assert.equal(await page.evaluate(() => window.app.session.transport), 'sse');
  }
});

browserTest('a full room and a locked room say so in plain words', { serverArgs: ['--default-capacity', '2'] }, async ({ open }) => {
  const room = roomName('full');
  const alice = await open(`/?room=${room}`);
  const bob = await open(`/?room=${room}`);
  const carol = await open(`/?room=${room}`);
  await joinRoom(alice, undefined, 'alice');
  await joinRoom(bob, undefined, 'bob');

  await carol.click('#join-form button[type="submit"]');
  await carol.waitForFunction(
    () => document.getElementById('error').textContent === 'This room is full (2 people).',
    null,
    WAIT,
  );
  assert.equal(await carol.evaluate(() => window.app.session), null);
  assert.equal(await carol.isVisible('#join-form'), true);
  // The camera a failed join asked for is released again.
  assert.equal(await carol.evaluate(() => document.getElementById('local-video').srcObject), null);

  // Bob leaves, the owner locks the room: the seat is free but the door shut.
  await bob.click('#leave');
  await alice.waitForFunction(() => window.app.peers.size === 0, null, WAIT);
  await alice.click('#lock');
  await alice.waitForFunction(() => document.getElementById('lock').textContent === 'Unlock room', null, WAIT);
  await carol.click('#join-form button[type="submit"]');
  await carol.waitForFunction(
    () => document.getElementById('error').textContent === 'This room is locked.',
    null,
    WAIT,
  );
});
