// The call page's media in real Chromium with fake devices: microphone and
// camera state seen on the tile by the others and by a later joiner, a
// screen share received in place of the camera, a recording that plays,
// each connection's quality on its tile, and the chat beside the videos.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { browserTest, joinRoom, roomName, waitForCall, WAIT } from './helpers.mjs';

/** The tile `page` shows of member `id`, as `data-*` and caption text. */
function tileOf(page, id) {
  return page.evaluate((id) => {
    const tile = document.querySelector(`[data-member-id="${id}"]`);
    return tile && { ...tile.dataset, media: tile.querySelector('.peer-media').textContent };
  }, id);
}

async function waitForTile(page, id, check) {
  await page.waitForFunction(check, id, WAIT);
}

browserTest('a muted microphone and a stopped camera show on the tile, to a later joiner too', {}, async ({ open }) => {
  const room = roomName('mute');
  const alice = await open(`/?room=${room}`);
  const bob = await open(`/?room=${room}`);
  const aliceId = await joinRoom(alice, undefined, 'alice');
  await joinRoom(bob, undefined, 'bob');
  await Promise.all([waitForCall(alice, 1), waitForCall(bob, 1)]);
  assert.equal((await tileOf(bob, aliceId)).audio, 'on');

  await alice.click('#mic');
  await alice.click('#camera');
  assert.equal(await alice.getAttribute('#mic', 'aria-pressed'), 'false');
  assert.equal(await alice.evaluate(() => window.app.session.metadata.audio), false);
  await waitForTile(bob, aliceId, (id) => {
    const tile = document.querySelector(`[data-member-id="${id}"]`);
    return tile?.dataset.audio === 'off' && tile.dataset.video === 'off';
  });
  assert.equal((await tileOf(bob, aliceId)).media, 'muted · camera off');
  // Her track is off, not gone: nothing to negotiate again.
  assert.equal(await alice.evaluate(() => window.app.session.state), 'live');

  const carol = await open(`/?room=${room}`);
  await joinRoom(carol, undefined, 'carol');
  await waitForCall(carol, 2);
  const seen = await tileOf(carol, aliceId);
  assert.equal(seen.audio, 'off');
  assert.equal(seen.video, 'off');

  await alice.click('#mic');
  for (const page of [bob, carol]) {
    await waitForTile(page, aliceId, (id) => document.querySelector(`[data-member-id="${id}"]`)?.dataset.audio === 'on');
  }
});

browserTest('a shared screen reaches the others in place of the camera, and the camera comes back', {}, async ({ open }) => {
  const room = roomName('share');
  const alice = await open(`/?room=${room}`);
  const bob = await open(`/?room=${room}`);
  // Headless Chromium has no screen to pick: the page gets a canvas of 320×180 instead.
  await alice.evaluate(() => {
    navigator.mediaDevices.getDisplayMedia = async () => {
      const canvas = document.createElement('canvas');
      canvas.width = 320;
      canvas.height = 180;
      const context = canvas.getContext('2d');
      let frame = 0;
      setInterval(() => {
        context.fillStyle = `hsl(${(frame += 10) % 360} 70% 50%)`;
        context.fillRect(0, 0, 320, 180);
      }, 50);
      return canvas.captureStream(15);
    };
  });
  const aliceId = await joinRoom(alice, undefined, 'alice');
  await joinRoom(bob, undefined, 'bob');
  await Promise.all([waitForCall(alice, 1), waitForCall(bob, 1)]);
  const width = () => bob.evaluate((id) => document.querySelector(`[data-member-id="${id}"] video`).videoWidth, aliceId);
  const camera = await width();
  assert.notEqual(camera, 320);

  await alice.click('#share');
  await bob.waitForFunction(
    (id) => document.querySelector(`[data-member-id="${id}"] video`).videoWidth === 320,
    aliceId,
    WAIT,
  );
  await waitForTile(bob, aliceId, (id) => document.querySelector(`[data-member-id="${id}"]`)?.dataset.screen === 'on');

  await alice.click('#share');
  await bob.waitForFunction(
    ([id, camera]) => document.querySelector(`[data-member-id="${id}"] video`).videoWidth === camera,
    [aliceId, camera],
    WAIT,
  );
  assert.equal((await tileOf(bob, aliceId)).screen, 'off');
});

browserTest('a recording of the call downloads as a file that plays', {}, async ({ open }) => {
  const room = roomName('record');
  const alice = await open(`/?room=${room}`);
  const bob = await open(`/?room=${room}`);
  await joinRoom(alice, undefined, 'alice');
  await joinRoom(bob, undefined, 'bob');
  await Promise.all([waitForCall(alice, 1), waitForCall(bob, 1)]);

  await alice.click('#record');
  // Two seconds of call: the recorder hands out a chunk a second.
  await alice.waitForFunction(() => window.app.recordedChunks() >= 2, null, WAIT);
  const [download] = await Promise.all([alice.waitForEvent('download', WAIT), alice.click('#record')]);
  assert.match(download.suggestedFilename(), new RegExp(`^call-${room}-.*\\.webm$`));
  const file = await readFile(await download.path());
  assert.ok(file.length > 10_000, `a recording of ${file.length} bytes`);

  // A MediaRecorder file tells its duration once the player has looked at its end.
  const duration = await alice.evaluate(async () => {
    const video = document.createElement('video');
    video.muted = true;
    video.src = URL.createObjectURL(window.app.recordings.at(-1));
    await new Promise((resolve) => video.addEventListener('loadedmetadata', resolve, { once: true }));
    if (!Number.isFinite(video.duration)) {
      video.currentTime = 1e9;
      await new Promise((resolve) => video.addEventListener('durationchange', resolve, { once: true }));
    }
    return { duration: video.duration, width: video.videoWidth };
  });
  assert.ok(duration.duration > 1, `the recording lasts ${duration.duration} s`);
  assert.equal(duration.width, 1280);
});

browserTest('each tile shows its connection quality, and the chat beside the videos reaches the room', {}, async ({ open }) => {
  const room = roomName('quality');
  const alice = await open(`/?room=${room}`);
  const bob = await open(`/?room=${room}`);
  const aliceId = await joinRoom(alice, undefined, 'alice');
  await joinRoom(bob, undefined, 'bob');
  await Promise.all([waitForCall(alice, 1), waitForCall(bob, 1)]);
  await waitForTile(bob, aliceId, (id) => {
    const tile = document.querySelector(`[data-member-id="${id}"]`);
    return tile?.dataset.rttMs !== undefined && /kbit\/s/.test(tile.querySelector('.peer-stats').textContent);
  });

  await alice.fill('#call-chat-form input', 'hello from the call');
  await alice.click('#call-chat-form button');
  await bob.waitForFunction(
    () => [...document.querySelectorAll('#call-messages li')]
      .some((li) => li.textContent === 'alicehello from the call'),
    null,
    WAIT,
  );
  assert.equal(await alice.textContent('#call-messages li.mine .author'), 'You');
});
