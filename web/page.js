// What the call and chat pages share: the query's transport, names, the
// connection state line, and errors in plain words.

import { SignalpostError } from './signalpost.js';

export const $ = (id) => document.getElementById(id);

/** `?transport=sse|poll|auto` from the page's address, 'auto' otherwise. */
export function pageTransport(params) {
  const asked = params.get('transport');
  return ['sse', 'poll', 'auto'].includes(asked) ? asked : 'auto';
}

export function displayName(member) {
  return member.name || `Guest ${member.id.slice(0, 4)}`;
}

const STATE_WORDS = {
  connecting: 'Connecting…',
  live: 'Connected',
  polling: 'Connected',
  reconnecting: 'Reconnecting…',
  closed: 'Not connected',
};

export function showState(state, current) {
  const el = $('state');
  el.dataset.state = state;
  // The plain words first, then the session's own terms for whoever debugs.
  el.textContent = state === 'closed' || !current
    ? STATE_WORDS[state] ?? state
    : `${STATE_WORDS[state] ?? state} (${state}, ${current === 'poll' ? 'long-poll' : 'SSE'})`;
}

export function showError(text) {
  $('error').textContent = text;
}

export function describeError(error) {
  if (!(error instanceof SignalpostError)) return error?.message ?? String(error);
  switch (error.code) {
    case 'room_full': {
      const capacity = /\((\d+) members?\)/.exec(error.detail ?? '')?.[1];
      return capacity ? `This room is full (${capacity} people).` : 'This room is full.';
    }
    case 'room_locked':
      return 'This room is locked.';
    case 'invalid_room_id':
      return 'A room name is 1 to 64 letters, digits, dots, dashes, underscores or tildes.';
    case 'network':
      return 'The server cannot be reached. Check the connection and try again.';
    case 'unauthorized':
      return 'You are no longer in the room.';
    case 'rate_limited':
    case 'server_busy':
      return 'The server is busy. Try again in a moment.';
    case 'payload_too_large':
      return 'That message is too long.';
    default:
      return error.detail || error.message;
  }
}
