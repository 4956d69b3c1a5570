// An application written against the client library as a package: it
// imports `signalpost-client` by name, and `tsc --strict` must accept it
// against the package's own `.d.ts` (run by `run`).

import { join, SignalpostError, type Member, type Session } from 'signalpost-client';

export async function start(room: string): Promise<Session> {
  const session = await join(room, { name: 'ada', metadata: { audio: true }, transport: 'auto' });
  session.addEventListener('member-joined', (event) => {
    const member: Member = event.detail.member;
    console.log(member.name ?? member.id);
  });
  session.addEventListener('member-left', (event) => {
    // A leave a gap hid has no reason.
    const reason: string = event.detail.reason ?? 'unknown';
    console.log(event.detail.member_id, reason);
  });
  session.addEventListener('signal', (event) => {
    if (event.detail.from === null) console.log('from the service:', event.detail.type);
  });
  session.addEventListener('error', (event) => {
    const error: SignalpostError = event.detail.error;
    console.log(error.code, error.status);
  });
  const { recipients } = await session.broadcast('hello', { text: 'hi' });
  const me: Member = await session.update({ metadata: { audio: false } });
  // @ts-expect-error: `send` needs the member to send to.
  await session.send('hello');
  console.log(recipients, me.metadata, session.state === 'live', [...session.members.keys()]);
  return session;
}
