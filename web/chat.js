// The chat page: every line is a broadcast signal of type `chat` with payload
// `{text}`; joins and leaves of members show as notices.

import { join, SignalpostError } from './signalpost.js';
import { $, describeError, displayName, pageTransport, showError, showState } from './page.js';

const params = new URLSearchParams(location.search);
const transport = pageTransport(params);

const joinForm = $('join-form');
const compose = $('compose');
const list = $('messages');

/**
 * Names of everyone met in this room, kept after they leave: `session.members`
 * forgets a member before its "left" line is written.
 */
const names = new Map();
let session = null;
// Lines are broadcast one at a time, so that two typed quickly arrive in the
// order they were typed (two POSTs in flight could be answered out of order).
let outbound = Promise.resolve();

window.app = { session };

joinForm.name.value = localStorage.getItem('signalpost.name') ?? '';
if (params.get('room')) joinForm.room.value = params.get('room');
$('call-link').href = callHref(joinForm.room.value);
joinForm.addEventListener('submit', onJoin);
compose.addEventListener('submit', onSend);
$('leave').addEventListener('click', () => leave());
// Leaving on the way out tells the others at once instead of after the
// member timeout.
addEventListener('pagehide', () => session?.leave().catch(() => {}));

async function onJoin(event) {
  event.preventDefault();
  if (session) return;
  const name = joinForm.name.value.trim();
  const room = joinForm.room.value.trim();
  localStorage.setItem('signalpost.name', name);
  showError('');
  setBusy(true);
  showState('connecting', null);

  let joined;
  try {
    // The call page may share the room; `app` tells its members apart.
    joined = await join(room, { name: name || undefined, metadata: { app: 'chat' }, transport });
  } catch (error) {
    showState('closed', null);
    showError(describeError(error));
    setBusy(false);
    return;
  }
  session = joined;
  window.app.session = session;
  session.addEventListener('statechange', (e) => onStateChange(e.detail));
  session.addEventListener('member-joined', (e) => onMemberJoined(e.detail.member));
  session.addEventListener('member-left', (e) => onMemberLeft(e.detail));
  session.addEventListener('signal', (e) => onSignal(e.detail));
  session.addEventListener('gap', () => notice('Some messages were lost while the connection was down.'));
  session.addEventListener('error', (e) => showError(describeError(e.detail.error)));

  names.clear();
  for (const member of session.members.values()) names.set(member.id, displayName(member));
  enterChat(room, name);
  showState(session.state, session.transport);
  setBusy(false);
}

function enterChat(room, name) {
  $('lobby').hidden = true;
  $('chat').hidden = false;
  $('room-name').textContent = room;
  $('call-link').href = callHref(room);
  list.replaceChildren();
  notice(`You joined as ${name || 'a guest'}.`);
  const others = [...names.values()];
  notice(others.length ? `Here already: ${others.join(', ')}.` : 'Nobody else is here yet.');
  updatePeople();
  compose.text.focus();
  const url = new URL(location.href);
  url.searchParams.set('room', room);
  history.replaceState(null, '', url);
}

function onMemberJoined(member) {
  names.set(member.id, displayName(member));
  notice(`${displayName(member)} joined`);
  updatePeople();
}

function onMemberLeft({ member_id: memberId, reason }) {
  if (memberId === session.memberId) {
    notice(reason === 'removed' ? 'You were removed from the room' : 'You left the room');
    return;
  }
  const name = names.get(memberId) ?? 'Someone';
  const how = { removed: ' (removed)', timeout: ' (connection lost)' }[reason] ?? '';
  notice(`${name} left${how}`);
  updatePeople();
}

function onSignal(signal) {
  if (signal.type !== 'chat' || typeof signal.payload?.text !== 'string') return;
  const member = session.members.get(signal.from);
  // `from: null`: the application's back end wrote it.
  const name = signal.from === null
    ? 'The service'
    : member ? displayName(member) : names.get(signal.from) ?? 'Someone';
  message(name, signal.payload.text, { at: signal.sent_at });
}

function onSend(event) {
  event.preventDefault();
  const text = compose.text.value.trim();
  if (!text || !session) return;
  compose.text.value = '';
  const line = message(joinForm.name.value.trim() || 'You', text, { mine: true });
  const current = session;
  outbound = outbound
    .then(() => current.broadcast('chat', { text }))
    .catch((error) => {
      line.classList.add('failed');
      line.title = 'Not sent';
      showError(`Not sent: ${describeError(error)}`);
    });
}

async function leave() {
  const leaving = session;
  session = null;
  try {
    await leaving?.leave();
  } catch (error) {
    if (!(error instanceof SignalpostError && error.status === 401)) showError(describeError(error));
  }
  backToLobby();
}

function onStateChange({ state, transport: current }) {
  showState(state, current);
  // A stream that flows again means the trouble it reported is over.
  if (state === 'live' || state === 'polling') showError('');
  if (state === 'closed' && session) {
    session = null;
    showError('You are no longer in the room.');
    backToLobby();
  }
}

function backToLobby() {
  showState('closed', null);
  $('chat').hidden = true;
  $('lobby').hidden = false;
  setBusy(false);
}

function message(author, text, { mine = false, at = null } = {}) {
  const item = document.createElement('li');
  item.className = mine ? 'message mine' : 'message';
  const who = document.createElement('span');
  who.className = 'author';
  who.textContent = author;
  const body = document.createElement('span');
  body.className = 'text';
  body.textContent = text;
  const time = document.createElement('time');
  const when = at ? new Date(at) : new Date();
  time.dateTime = when.toISOString();
  time.textContent = when.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  item.append(who, body, time);
  append(item);
  return item;
}

function notice(text) {
  const item = document.createElement('li');
  item.className = 'notice';
  item.textContent = text;
  append(item);
}

function append(item) {
  // Follow new lines only when the reader is already at the bottom.
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  list.append(item);
  if (atBottom) list.scrollTop = list.scrollHeight;
}

function updatePeople() {
  const count = (session?.members.size ?? 0) + 1;
  $('people').textContent = count === 1 ? 'only you' : `${count} people`;
}

function callHref(room) {
  return room ? `./?room=${encodeURIComponent(room)}` : './';
}

function setBusy(busy) {
  joinForm.querySelector('button').disabled = busy;
}
