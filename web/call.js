// The video call page: joins a room and keeps a full mesh of
// RTCPeerConnections, one per other member, negotiated with the "perfect
// negotiation" pattern over directed signals (`offer`, `answer`,
// `candidate`). Both sides of a pair create their connection, the newcomer
// for every member already there, the others on `member-joined`; the pattern
// resolves any glare between the two.

import { join, SignalpostError } from './signalpost.js';
import { $, describeError, displayName, pageTransport, showError, showState } from './page.js';

const params = new URLSearchParams(location.search);
const transport = pageTransport(params);
// The server's list (`GET /ice-servers`, TURN credentials included) is
// fetched after the join; `?stun=` adds servers of the page's own. None by
// default: on a LAN or loopback, host candidates suffice.
const pageIceServers = (params.get('stun') ?? '')
  .split(',')
  .map((url) => url.trim())
  .filter(Boolean)
  .map((url) => ({ urls: url.startsWith('stun:') || url.startsWith('turn:') ? url : `stun:${url}` }));

const WEBRTC_SIGNALS = new Set(['offer', 'answer', 'candidate']);
/** How long the polite side waits for the other's first offer before making its own. */
const POLITE_OFFER_DELAY_MS = 4000;
/** The most signals held for one sender not yet known, should its join never be announced. */
const HELD_SIGNALS_MAX = 200;

const form = $('join-form');
const tiles = $('tiles');
const localVideo = $('local-video');
const lockButton = $('lock');

/** One entry per other member: its connection and negotiation flags. */
const records = new Map();
/** The same connections, by member id, for tests and the console. */
const peers = new Map();
/**
 * WebRTC signals of senders not known yet, by sender. A gap can hide a
 * newcomer's join while the signals after it arrive; the session's refresh
 * of the room then announces the join, and these are handled in order.
 */
const heldSignals = new Map();
let session = null;
let localStream = null;
let iceServers = pageIceServers;

window.app = { session, peers };

form.room.value = params.get('room') ?? '';
form.name.value = localStorage.getItem('signalpost.name') ?? '';
$('chat-link').href = chatHref(form.room.value);
form.addEventListener('submit', onJoin);
$('leave').addEventListener('click', () => leave());
lockButton.addEventListener('click', toggleLock);
// Leaving on the way out frees the seat at once instead of after the
// member timeout.
addEventListener('pagehide', () => session?.leave().catch(() => {}));

async function onJoin(event) {
  event.preventDefault();
  if (session) return;
  const room = form.room.value.trim();
  const name = form.name.value.trim();
  localStorage.setItem('signalpost.name', name);
  showError('');
  setBusy(true);
  showState('connecting', null);

  try {
    localStream = await navigator.mediaDevices.getUserMedia({ video: true, audio: true });
  } catch (error) {
    showState('closed', null);
    showError(describeMediaError(error));
    setBusy(false);
    return;
  }

  let joined;
  try {
    // The chat page may share the room; `app` tells its members apart.
    joined = await join(room, { name: name || undefined, metadata: { app: 'call' }, transport });
  } catch (error) {
    stopLocalMedia();
    showState('closed', null);
    showError(describeError(error));
    setBusy(false);
    return;
  }
  session = joined;
  window.app.session = session;
  // Listen at once: the inbox is being read already, and its first events
  // are dispatched as soon as this task ends.
  session.addEventListener('statechange', (e) => onStateChange(e.detail));
  session.addEventListener('member-joined', (e) => connectTo(e.detail.member));
  session.addEventListener('member-left', (e) => disconnectFrom(e.detail.member_id));
  session.addEventListener('signal', (e) => onSignal(e.detail));
  session.addEventListener('room-updated', (e) => onRoomUpdated(e.detail));
  session.addEventListener('gap', () => onGap());
  session.addEventListener('error', (e) => showError(describeError(e.detail.error)));

  enterCall(room, name);
  showState(session.state, session.transport);
  for (const member of session.members.values()) connectTo(member);
  // Not awaited: negotiation must not wait on it (the others' offers are
  // already coming). The connections take the servers' list when it comes.
  useServerIceServers();
  setBusy(false);
}

function enterCall(room, name) {
  $('lobby').hidden = true;
  $('call').hidden = false;
  $('room-name').textContent = room;
  $('local-name').textContent = name ? `${name} (you)` : 'You';
  localVideo.srcObject = localStream;
  lockButton.hidden = !session.owner;
  updateLockButton();
  updateAlone();
  $('chat-link').href = chatHref(room);
  // The address now names the room, so it can be shared as an invitation.
  const url = new URL(location.href);
  url.searchParams.set('room', room);
  history.replaceState(null, '', url);
}

/**
 * Adds the server's STUN and TURN servers to the page's own, for the
 * connections to come and for those already made. Without them, host
 * candidates still connect peers on one network.
 */
async function useServerIceServers() {
  try {
    const served = await session.iceServers();
    if (served.length === 0) return;
    iceServers = [...served, ...pageIceServers];
    for (const { pc } of records.values()) {
      pc.setConfiguration({ ...pc.getConfiguration(), iceServers });
      // Candidates gathered before the list came lack STUN and TURN ones.
      if (pc.iceGatheringState !== 'new') pc.restartIce();
    }
  } catch (error) {
    console.warn('no ICE servers from the server; using the page\'s own', error);
  }
}

/** Creates the connection to one other member, once. */
function connectTo(member) {
  // A chat page in the same room has no camera and never answers an offer.
  if (!session || member.id === session.memberId || member.metadata?.app === 'chat') return null;
  const existing = records.get(member.id);
  if (existing) return existing;

  const pc = new RTCPeerConnection({ iceServers });
  const peer = {
    member,
    pc,
    // Any rule both sides compute alike works; the smaller id yields.
    polite: session.memberId < member.id,
    makingOffer: false,
    ignoreOffer: false,
    /** The polite side's own first offer, made only if the other makes none. */
    offerTimer: null,
    settingRemoteAnswer: false,
    // Incoming signals are handled one at a time, in inbox order.
    inbound: Promise.resolve(),
    // Outgoing signals are sent one at a time: two POSTs in flight could be
    // answered out of order, and a candidate must not overtake its offer.
    outbound: Promise.resolve(),
    tile: createTile(member),
  };
  records.set(member.id, peer);
  peers.set(member.id, pc);
  updateAlone();

  pc.onnegotiationneeded = () => {
    // The polite side lets the other offer first. Both sides add their tracks
    // at once, so both would offer, and Chromium sometimes never gathers ICE
    // candidates again after rolling back an offer whose gathering has just
    // begun: the glare that perfect negotiation resolves can wedge the call.
    // Only if no offer comes does the polite side offer after all.
    if (peer.polite && !pc.remoteDescription) {
      clearTimeout(peer.offerTimer);
      peer.offerTimer = setTimeout(() => {
        if (!pc.remoteDescription && pc.signalingState === 'stable') offer(peer);
      }, POLITE_OFFER_DELAY_MS);
      return;
    }
    offer(peer);
  };
  pc.onicecandidate = ({ candidate }) => {
    // A null candidate only marks the end of gathering; the peer needs nothing.
    if (candidate) send(peer, 'candidate', candidate.toJSON()).catch((error) => reportPeerError(peer, error));
  };
  pc.ontrack = ({ track, streams }) => {
    const video = peer.tile.querySelector('video');
    const stream = streams[0] ?? video.srcObject ?? new MediaStream();
    if (!streams[0]) stream.addTrack(track);
    if (video.srcObject !== stream) video.srcObject = stream;
    play(video, peer.tile);
  };
  pc.onconnectionstatechange = () => {
    peer.tile.dataset.state = pc.connectionState;
    peer.tile.querySelector('.peer-state').textContent = ` · ${pc.connectionState}`;
    if (pc.connectionState === 'failed') pc.restartIce();
  };

  for (const track of localStream.getTracks()) pc.addTrack(track, localStream);
  const held = heldSignals.get(member.id) ?? [];
  heldSignals.delete(member.id);
  for (const signal of held) onSignal(signal);
  return peer;
}

async function offer(peer) {
  const { pc } = peer;
  try {
    peer.makingOffer = true;
    await pc.setLocalDescription();
    await send(peer, pc.localDescription.type, pc.localDescription.toJSON());
  } catch (error) {
    reportPeerError(peer, error);
  } finally {
    peer.makingOffer = false;
  }
}

function send(peer, type, payload) {
  const sending = peer.outbound.then(() => session.send(peer.member.id, type, payload));
  peer.outbound = sending.catch(() => {});
  return sending;
}

function onSignal(signal) {
  // The service's signals (`from: null`) are no peer's.
  if (!WEBRTC_SIGNALS.has(signal.type) || signal.from === null) return;
  // A sender's member-joined comes before its signals, so it has a
  // connection by now; unless it is a chat page, which has no business here,
  // or a gap hid its join.
  const peer = records.get(signal.from);
  if (!peer) {
    if (session && !session.members.has(signal.from)) holdSignal(signal);
    return;
  }
  peer.inbound = peer.inbound
    .then(() => handleSignal(peer, signal))
    .catch((error) => reportPeerError(peer, error));
}

async function handleSignal(peer, { type, payload }) {
  const { pc } = peer;
  if (pc.signalingState === 'closed') return;
  if (type === 'candidate') {
    try {
      await pc.addIceCandidate(payload);
    } catch (error) {
      // Candidates of an offer we chose to ignore cannot be added; that is fine.
      if (!peer.ignoreOffer) throw error;
    }
    return;
  }

  const description = payload;
  const readyForOffer = !peer.makingOffer
    && (pc.signalingState === 'stable' || peer.settingRemoteAnswer);
  const offerCollision = description.type === 'offer' && !readyForOffer;
  peer.ignoreOffer = !peer.polite && offerCollision;
  if (peer.ignoreOffer) return;

  peer.settingRemoteAnswer = description.type === 'answer';
  try {
    // On a collision the polite side rolls its own offer back implicitly.
    await pc.setRemoteDescription(description);
  } finally {
    peer.settingRemoteAnswer = false;
  }
  if (description.type === 'offer') {
    await pc.setLocalDescription();
    await send(peer, 'answer', pc.localDescription.toJSON());
  }
}

function holdSignal(signal) {
  const held = heldSignals.get(signal.from) ?? [];
  if (held.length < HELD_SIGNALS_MAX) held.push(signal);
  heldSignals.set(signal.from, held);
}

function disconnectFrom(memberId) {
  heldSignals.delete(memberId);
  const peer = records.get(memberId);
  if (!peer) return;
  records.delete(memberId);
  peers.delete(memberId);
  clearTimeout(peer.offerTimer);
  peer.pc.close();
  peer.tile.remove();
  updateAlone();
}

function onStateChange({ state, transport: current }) {
  showState(state, current);
  // A stream that flows again means the trouble it reported is over.
  if (state === 'live' || state === 'polling') showError('');
  if (state === 'closed' && session) {
    showError('You are no longer in the room.');
    tearDown();
  }
}

function onRoomUpdated() {
  // The session has applied the update already: owner and locked are current.
  lockButton.hidden = !session?.owner;
  updateLockButton();
}

function onGap() {
  // Lost signals may have been offers or candidates: negotiate afresh.
  showError('Some messages were lost; reconnecting the call.');
  for (const { pc } of records.values()) pc.restartIce();
}

async function toggleLock() {
  lockButton.disabled = true;
  try {
    // The change also comes back as room-updated; the answer is sooner.
    const room = await session.setLocked(lockButton.getAttribute('aria-pressed') !== 'true');
    updateLockButton(room.locked);
  } catch (error) {
    showError(describeError(error));
  } finally {
    lockButton.disabled = false;
  }
}

async function leave() {
  const leaving = session;
  tearDown();
  try {
    await leaving?.leave();
  } catch (error) {
    // Gone already (removed, or the server stopped): leaving succeeded anyway.
    if (!(error instanceof SignalpostError && error.status === 401)) showError(describeError(error));
  }
  showState('closed', null);
}

/** Closes every connection and stops the camera; the session is left to the caller. */
function tearDown() {
  for (const memberId of [...records.keys()]) disconnectFrom(memberId);
  heldSignals.clear();
  stopLocalMedia();
  session = null;
  $('call').hidden = true;
  $('lobby').hidden = false;
  setBusy(false);
}

function stopLocalMedia() {
  for (const track of localStream?.getTracks() ?? []) track.stop();
  localStream = null;
  localVideo.srcObject = null;
}

function createTile(member) {
  const tile = document.createElement('figure');
  tile.className = 'tile';
  tile.dataset.memberId = member.id;
  tile.dataset.state = 'new';
  const video = document.createElement('video');
  video.autoplay = true;
  video.playsInline = true;
  const caption = document.createElement('figcaption');
  const name = document.createElement('span');
  name.className = 'peer-name';
  name.textContent = displayName(member);
  const state = document.createElement('span');
  state.className = 'peer-state';
  state.textContent = ' · connecting';
  caption.append(name, state);
  tile.append(video, caption);
  tiles.insertBefore(tile, $('alone'));
  return tile;
}

/** Starts a remote video; where the browser forbids sound without a click, starts it muted. */
function play(video, tile) {
  video.play().catch((error) => {
    if (error.name !== 'NotAllowedError' || video.muted) return;
    video.muted = true;
    video.play().catch(() => {});
    if (tile.querySelector('.unmute')) return;
    const unmute = document.createElement('button');
    unmute.type = 'button';
    unmute.className = 'unmute secondary';
    unmute.textContent = 'Unmute';
    unmute.addEventListener('click', () => {
      video.muted = false;
      unmute.remove();
    });
    tile.append(unmute);
  });
}

function updateAlone() {
  $('alone').hidden = records.size > 0;
}

function updateLockButton(locked = Boolean(session?.locked)) {
  lockButton.textContent = locked ? 'Unlock room' : 'Lock room';
  lockButton.setAttribute('aria-pressed', String(locked));
}

function reportPeerError(peer, error) {
  console.warn(`signaling with ${peer.member.id}:`, error);
  // The member may have left while a signal to it was on its way.
  if (error instanceof SignalpostError && error.code === 'member_not_found') return;
  if (peer.pc.signalingState === 'closed') return;
  showError(`Call with ${displayName(peer.member)}: ${describeError(error)}`);
}

function chatHref(room) {
  return room ? `chat.html?room=${encodeURIComponent(room)}` : 'chat.html';
}

function setBusy(busy) {
  form.querySelector('button').disabled = busy;
}

function describeMediaError(error) {
  switch (error?.name) {
    case 'NotAllowedError':
      return 'Camera and microphone access was refused. Allow it in the browser and try again.';
    case 'NotFoundError':
      return 'No camera or microphone was found.';
    case 'NotReadableError':
      return 'The camera or microphone is in use by another program.';
    default:
      return `The camera or microphone cannot be used: ${error?.message ?? error}`;
  }
}
