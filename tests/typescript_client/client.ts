// A client of signalpost written against the types openapi-typescript
// generates from openapi/openapi.json, with openapi-fetch: `tsc --strict`
// must accept it, and it runs against the real server (`run`).

import { spawn } from 'node:child_process';
import createClient from 'openapi-fetch';
import jwt from 'jsonwebtoken';
import type { components, paths } from './schema.js';

type InboxEvent = components['schemas']['InboxEvent'];

const SECRET = 'a-secret-of-at-least-32-bytes-for-typescript';
const ADMIN = 'an-admin-token-for-the-typescript-client';
const DEADLINE_MS = 10_000;

function fail(message: string): never {
  throw new Error(message);
}

/** What a typed client does with an event: it knows its data by its name. */
function describe(event: InboxEvent): string {
  // @ts-expect-error: `data` of an event not yet narrowed may have no `from`.
  void event.data.from;
  switch (event.event) {
    case 'member-joined':
      return `joined ${event.data.member.name ?? 'someone'} (${event.data.member.user_id ?? 'no user'})`;
    case 'member-left':
      return `left ${event.data.member_id}: ${event.data.reason}`;
    case 'member-updated':
      return `updated ${event.data.member.name ?? 'someone'}`;
    case 'signal':
      return `signal ${event.data.type} from ${event.data.from ?? 'the service'}`;
    case 'room-updated':
      return `room ${event.data.locked ? 'locked' : 'open'}`;
    case 'gap':
      return `gap ${event.data.from}..${event.data.to}`;
  }
}

async function startServer(): Promise<{ base: string; stop: () => void }> {
  const server = spawn(process.env.SIGNALPOST_BIN ?? fail('SIGNALPOST_BIN'), [
    '--listen', '127.0.0.1:0', '--join-secret', SECRET, '--admin-token', ADMIN,
  ], { env: { ...process.env, NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'inherit'] });
  const address = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the server did not log its address')), DEADLINE_MS);
    let log = '';
    server.stdout.on('data', (chunk: Buffer) => {
      log += chunk.toString();
      const found = /listening on (\d+\.\d+\.\d+\.\d+:\d+)/.exec(log);
      if (found?.[1]) {
        clearTimeout(timer);
        resolve(found[1]);
      }
    });
    server.on('exit', (code) => reject(new Error(`the server exited with ${code}`)));
  });
  return { base: `http://${address}`, stop: () => server.kill() };
}

export async function main(): Promise<void> {
  const { base, stop } = await startServer();
  try {
    const client = createClient<paths>({ baseUrl: base });
    const admin = { Authorization: `Bearer ${ADMIN}` };
    // The back end makes the room before anyone joins.
    const made = await client.PUT('/rooms/{room_id}', {
      params: { path: { room_id: 'ts' } },
      headers: admin,
      body: { capacity: 4, empty_timeout: 60 },
    });
    const room = made.data ?? fail(`make the room: ${JSON.stringify(made.error)}`);
    if (room.owner !== null || room.members.length !== 0 || room.capacity !== 4) {
      fail(`a room made in advance: ${JSON.stringify(room)}`);
    }
    const grant = (user: string) =>
      jwt.sign({ room: 'ts', sub: user }, SECRET, { algorithm: 'HS256', expiresIn: 60 });
    const join = async (user: string, name: string) => {
      const { data, error } = await client.POST('/rooms/{room_id}/join', {
        params: { path: { room_id: 'ts' } },
        headers: { Authorization: `Bearer ${grant(user)}` },
        body: { name },
      });
      return data ?? fail(`join: ${JSON.stringify(error)}`);
    };
    const alice = await join('user-1', 'alice');
    const bob = await join('user-2', 'bob');

    const refused = await client.POST('/rooms/{room_id}/join', {
      params: { path: { room_id: 'ts' } },
      body: {},
    });
    if (refused.error?.code !== 'unauthorized') fail(`a join without a grant: ${JSON.stringify(refused.error)}`);

    const sent = await client.POST('/signals', {
      headers: { Authorization: `Bearer ${bob.token}` },
      body: { to: alice.member.id, type: 'offer', payload: { type: 'offer', sdp: 'v=0' } },
    });
    if (sent.data?.recipients !== 1) fail(`send: ${JSON.stringify(sent.error)}`);

    const polled = await client.GET('/rooms/{room_id}/members/{member_id}/poll', {
      params: { path: { room_id: 'ts', member_id: alice.member.id }, query: { after: 0, timeout: 0 } },
      headers: { Authorization: `Bearer ${alice.token}` },
    });
    const events = polled.data?.events ?? fail(`poll: ${JSON.stringify(polled.error)}`);
    const seen = events.map(describe);
    const expected = ['joined bob (user-2)', `signal offer from ${bob.member.id}`];
    if (JSON.stringify(seen) !== JSON.stringify(expected)) {
      fail(`events: ${JSON.stringify(seen)}, expected ${JSON.stringify(expected)}`);
    }

    // The service speaks to the room, then ends it.
    const notice = await client.POST('/rooms/{room_id}/signals', {
      params: { path: { room_id: 'ts' } },
      headers: admin,
      body: { type: 'notice', payload: { text: 'closing' } },
    });
    if (notice.data?.recipients !== 2) fail(`service signal: ${JSON.stringify(notice.error)}`);
    const after = events.at(-1)?.id ?? 0;
    const next = await client.GET('/rooms/{room_id}/members/{member_id}/poll', {
      params: { path: { room_id: 'ts', member_id: alice.member.id }, query: { after, timeout: 0 } },
      headers: { Authorization: `Bearer ${alice.token}` },
    });
    const more = (next.data?.events ?? fail(`poll: ${JSON.stringify(next.error)}`)).map(describe);
    if (JSON.stringify(more) !== JSON.stringify(['signal notice from the service'])) {
      fail(`after the service's signal: ${JSON.stringify(more)}`);
    }
    const ended = await client.DELETE('/rooms/{room_id}', {
      params: { path: { room_id: 'ts' } },
      headers: admin,
    });
    if (ended.response.status !== 204) fail(`end the room: ${ended.response.status}`);
    console.log(`typescript client: ${[...seen, ...more].join('; ')}`);
  } finally {
    stop();
  }
}
