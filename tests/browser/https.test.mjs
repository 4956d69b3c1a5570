// The call page over HTTPS, as browsers reach a public server: over HTTP/2,
// which Chromium chooses by ALPN, and over HTTP/1.1, where the tabs of a
// page share one stream through the SharedWorker. The certificate is made
// for the test with openssl; the browser is told to accept it.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { browserTest, joinRoom, roomName, waitForCall } from './helpers.mjs';

const dir = mkdtempSync(join(tmpdir(), 'signalpost-https-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const cert = join(dir, 'cert.pem');
const key = join(dir, 'key.pem');
execFileSync('openssl', [
  'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
  '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-addext', 'basicConstraints=critical,CA:FALSE',
  '-keyout', key, '-out', cert,
], { stdio: 'ignore' });
const tls = ['--tls-cert', cert, '--tls-key', key];

/** The protocol the page itself came over. */
const protocolOf = (page) => page.evaluate(() => performance.getEntriesByType('navigation')[0].nextHopProtocol);

browserTest('two pages connect over HTTPS and HTTP/2', { serverArgs: tls }, async ({ open }) => {
  const room = roomName('h2');
  const alice = await open(`/?room=${room}`);
  const bob = await open(`/?room=${room}`);
  await joinRoom(alice, undefined, 'alice');
  await joinRoom(bob, undefined, 'bob');
  await Promise.all([waitForCall(alice, 1), waitForCall(bob, 1)]);
  for (const page of [alice, bob]) {
    assert.equal(await protocolOf(page), 'h2');
    assert.equal(await page.evaluate(() => window.app.session.state), 'live');
  }
});

browserTest(
  'two pages connect over HTTPS and HTTP/1.1, and a second tab of one profile joins too',
  { serverArgs: tls, browserArgs: ['--disable-http2'] },
  async ({ open }) => {
    const room = roomName('h1s');
    const alice = await open(`/?room=${room}`);
    // Bob's second tab, in the same profile: over HTTP/1.1 the library reads
    // both inboxes on one stream (tabs.test.mjs).
    const bob = await open(`/?room=${room}`);
    const bobAgain = await open(`/?room=${roomName('h1s-other')}`, { tabOf: bob });
    await joinRoom(alice, undefined, 'alice');
    await joinRoom(bob, undefined, 'bob');
    await joinRoom(bobAgain, undefined, 'bob again');
    await Promise.all([waitForCall(alice, 1), waitForCall(bob, 1)]);
    for (const page of [alice, bob, bobAgain]) {
      assert.equal(await protocolOf(page), 'http/1.1');
      assert.equal(await page.evaluate(() => window.app.session.state), 'live');
    }
  },
);
