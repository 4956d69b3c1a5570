// docs/backend.md's Node lines that mint a join grant, run as written, and the
// grant they make let in by a real server started with --join-secret.
// Needs the debug build (scripts/test runs `cargo test` first).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SECRET = 'a-secret-of-at-least-32-bytes-for-node';
const DEADLINE_MS = 10000;

/** The code block that follows `<!-- grant: NAME -->` in docs/backend.md. */
function docSnippet(name) {
  const readme = readFileSync(`${ROOT}docs/backend.md`, 'utf8');
  const found = readme.match(new RegExp(`<!-- grant: ${name} -->\\n\`\`\`\\w+\\n([\\s\\S]*?)\`\`\``));
  assert.ok(found, `docs/backend.md has a grant snippet for ${name}`);
  return found[1];
}

/** The server on a free loopback port, once it logs where it listens. */
function startServer(args) {
  const server = spawn(`${ROOT}target/debug/signalpost`, ['--listen', '127.0.0.1:0', ...args], {
    env: { ...process.env, NO_COLOR: '1' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const address = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the server did not log its address')), DEADLINE_MS);
    let log = '';
    server.stdout.on('data', (chunk) => {
      log += chunk;
      const found = log.match(/listening on (\d+\.\d+\.\d+\.\d+:\d+)/);
      if (found) {
        clearTimeout(timer);
        resolve(found[1]);
      }
    });
    server.on('exit', (code) => reject(new Error(`the server exited with ${code}`)));
  });
  return { server, address };
}

test("docs/backend.md's Node grant lets its holder into the room it names", async (t) => {
  const code = `${docSnippet('node')}\nconsole.log(grant);`;
  const grant = execFileSync(process.execPath, ['--input-type=module', '-e', code], {
    cwd: ROOT,
    env: { ...process.env, JOIN_SECRET: SECRET },
    encoding: 'utf8',
  }).trim();

  const { server, address } = startServer(['--join-secret', SECRET]);
  t.after(() => server.kill());
  const base = `http://${await address}`;
  const join = (room, headers) =>
    fetch(`${base}/rooms/${room}/join`, { method: 'POST', headers, signal: AbortSignal.timeout(DEADLINE_MS) });

  const answer = await join('demo', { Authorization: `Bearer ${grant}` });
  assert.equal(answer.status, 201);
  const joined = await answer.json();
  assert.equal(joined.member.user_id, 'user-42');

  assert.equal((await join('demo', {})).status, 401, 'no grant, no join');
  assert.equal((await join('elsewhere', { Authorization: `Bearer ${grant}` })).status, 403);
});
