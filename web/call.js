// The video call page: joins a room and keeps a full mesh of
// RTCPeerConnections, one per other member, negotiated with the "perfect
// negotiation" pattern over directed signals (`offer`, `answer`,
// `candidate`). Both sides of a pair create their connection, the newcomer
// for every member already there, the others on `member-joined`; the pattern
// resolves any glare between the two.
//
// Whether a member's microphone and camera are on, and whether it shares
// its screen, is state in its metadata (`session.update`), so every other
// member sees it on its tile, whenever it comes. A device chosen or a
// screen shared replaces the track its senders send (`replaceTrack`). The
// chat beside the videos is `chat` signals, as on the chat page.

import { answerHttpClient, httpClientKind, join, SignalpostError } from './signalpost.js';
import { $, describeError, displayName, pageTransport, showError, showState } from './page.js';
import { connectionQuality, describeQuality, STATS_EVERY_MS } from './call-stats.js';
import { download, startRecording } from './call-record.js';

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
/** What this member shows the others of its media, as its metadata says. */
const media = { audio: true, video: true, screen: false };
/** The shared screen's track while sharing; senders send it instead of the camera's. */
let screenTrack = null;
/** Stops the recording under way, resolving to its file. */
let stopRecording = null;
let statsTimer = null;

window.app = { session, peers, recordings: [] };

form.room.value = params.get('room') ?? '';
form.name.value = localStorage.getItem('signalpost.name') ?? '';
$('chat-link').href = chatHref(form.room.value);
form.addEventListener('submit', onJoin);
$('leave').addEventListener('click', () => leave());
lockButton.addEventListener('click', toggleLock);
$('mic').addEventListener('click', () => toggleTrack('audio'));
$('camera').addEventListener('click', () => toggleTrack('video'));
$('share').addEventListener('click', () => toggleShare().catch((error) => showError(describeMediaError(error))));
$('record').addEventListener('click', () => toggleRecording().catch((error) => showError(error.message)));
$('mic-select').addEventListener('change', (e) => chooseDevice('audio', e.target.value));
$('camera-select').addEventListener('change', (e) => chooseDevice('video', e.target.value));
$('call-chat-form').addEventListener('submit', sendChat);
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
    Object.assign(media, { audio: true, video: true, screen: false });
    joined = await join(room, { name: name || undefined, metadata: mediaMetadata(), transport });
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
  session.addEventListener('member-updated', (e) => onMemberUpdated(e.detail.member));
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
  fillDeviceChoices();
  statsTimer = setInterval(showQuality, STATS_EVERY_MS);
  setBusy(false);
}

function enterCall(room, name) {
  $('lobby').hidden = true;
  $('call').hidden = false;
  $('room-name').textContent = room;
  $('local-name').textContent = name ? `${name} (you)` : 'You';
  localVideo.srcObject = localStream;
  showOwnMedia();
  $('call-messages').replaceChildren();
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
    for (const { pc, kind } of records.values()) {
      pc.setConfiguration({ ...pc.getConfiguration(), iceServers });
      // Candidates gathered before the list came lack STUN and TURN ones.
      // A WHIP or WHEP client cannot restart ICE: its answer is given.
      if (pc.iceGatheringState !== 'new' && !kind) pc.restartIce();
    }
  } catch (error) {
    console.warn('no ICE servers from the server; using the page\'s own', error);
  }
}

/** Creates the connection to one other member, once. */
function connectTo(member) {
  // A chat page in the same room has no camera and never answers an offer.
  if (!session || member.id === session.memberId || member.metadata?.app === 'chat') return null;
  // A WHIP encoder or WHEP player connects only to the member its offer
  // went to, which answers it; it never offers again, and takes no
  // trickled candidates.
  const kind = httpClientKind(member);
  if (kind && member.metadata.peer !== session.memberId) return null;
  const existing = records.get(member.id);
  if (existing) return existing;

  const pc = new RTCPeerConnection({ iceServers });
  const peer = {
    member,
    pc,
    kind,
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
    if (kind) return;
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
    if (candidate && !kind) send(peer, 'candidate', candidate.toJSON()).catch((error) => reportPeerError(peer, error));
  };
  showMemberMedia(peer.tile, member);
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
    if (pc.connectionState === 'failed' && !kind) pc.restartIce();
  };

  // A WHEP player's offer brings its own transceivers: the answer fills them.
  if (!kind) {
    for (const track of outgoingTracks()) pc.addTrack(track, localStream);
  }
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

/** What this page sends: its camera, or its shared screen in its place, and its microphone. */
function outgoingTracks() {
  return localStream.getTracks().map((track) => (track.kind === 'video' && screenTrack ? screenTrack : track));
}

function send(peer, type, payload) {
  const sending = peer.outbound.then(() => session.send(peer.member.id, type, payload));
  peer.outbound = sending.catch(() => {});
  return sending;
}

function onSignal(signal) {
  if (signal.type === 'chat') {
    showChat(signal);
    return;
  }
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
    .then(() => (peer.kind ? answerClient(peer, signal) : handleSignal(peer, signal)))
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

/** Answers a WHIP or WHEP client's offer, and takes the candidates it trickles by PATCH. */
async function answerClient(peer, signal) {
  const { pc } = peer;
  if (signal.type === 'candidate' && pc.remoteDescription) {
    await pc.addIceCandidate(signal.payload);
    return;
  }
  if (signal.type !== 'offer' || pc.signalingState !== 'stable') return;
  const tracks = peer.kind === 'whep' ? outgoingTracks() : [];
  await answerHttpClient(session, pc, signal, { tracks });
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
  clearInterval(statsTimer);
  statsTimer = null;
  if (stopRecording) toggleRecording().catch(() => {});
  stopLocalMedia();
  session = null;
  $('call').hidden = true;
  $('lobby').hidden = false;
  setBusy(false);
}

function stopLocalMedia() {
  for (const track of localStream?.getTracks() ?? []) track.stop();
  screenTrack?.stop();
  screenTrack = null;
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
  const shown = document.createElement('span');
  shown.className = 'peer-media';
  const quality = document.createElement('span');
  quality.className = 'peer-stats';
  caption.append(name, state, shown, quality);
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

/** This member's metadata: the page it is on, and its media. */
function mediaMetadata() {
  return { app: 'call', ...media };
}

/** Tells the others what this member's media are now. */
function publishMedia() {
  showOwnMedia();
  session?.update({ metadata: mediaMetadata() }).catch((error) => showError(describeError(error)));
}

/** Turns this member's microphone (`audio`) or camera (`video`) on or off. */
function toggleTrack(kind) {
  if (!localStream) return;
  media[kind] = !media[kind];
  for (const track of localStream.getTracks()) {
    if (track.kind === kind) track.enabled = media[kind];
  }
  publishMedia();
}

/** What a member's metadata says of its media, in words. */
function mediaWords(metadata) {
  const words = [];
  if (metadata?.audio === false) words.push('muted');
  if (metadata?.video === false && !metadata?.screen) words.push('camera off');
  if (metadata?.screen) words.push('sharing screen');
  return words.join(' · ');
}

function showMemberMedia(tile, member) {
  const metadata = member.metadata ?? {};
  tile.dataset.audio = metadata.audio === false ? 'off' : 'on';
  tile.dataset.video = metadata.video === false && !metadata.screen ? 'off' : 'on';
  tile.dataset.screen = metadata.screen ? 'on' : 'off';
  tile.querySelector('.peer-media').textContent = mediaWords(metadata);
}

function showOwnMedia() {
  showMemberMedia(localVideo.closest('.tile'), { metadata: media });
  for (const [id, on] of [['mic', media.audio], ['camera', media.video], ['share', media.screen]]) {
    $(id).setAttribute('aria-pressed', String(on));
  }
  $('mic').textContent = media.audio ? 'Mute' : 'Unmute';
  $('camera').textContent = media.video ? 'Stop video' : 'Start video';
  $('share').textContent = media.screen ? 'Stop sharing' : 'Share screen';
}

function onMemberUpdated(member) {
  const peer = records.get(member.id);
  if (!peer) return;
  peer.member = member;
  peer.tile.querySelector('.peer-name').textContent = displayName(member);
  showMemberMedia(peer.tile, member);
}

/** The senders of every connection that send `kind`. */
function senders(kind) {
  return [...records.values()]
    .flatMap(({ pc }) => pc.getSenders())
    .filter((sender) => sender.track?.kind === kind);
}

/** Lists the microphones and cameras, the ones in use chosen. */
async function fillDeviceChoices() {
  const devices = await navigator.mediaDevices.enumerateDevices();
  for (const [kind, select] of [['audio', $('mic-select')], ['video', $('camera-select')]]) {
    const current = localStream?.getTracks().find((track) => track.kind === kind)?.getSettings().deviceId;
    select.replaceChildren(...devices
      .filter((device) => device.kind === `${kind}input`)
      .map((device, index) => new Option(device.label || `${kind === 'audio' ? 'Microphone' : 'Camera'} ${index + 1}`,
        device.deviceId, false, device.deviceId === current)));
  }
}

/** Takes the microphone or camera `deviceId` in place of the one in use. */
async function chooseDevice(kind, deviceId) {
  if (!localStream) return;
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ [kind]: { deviceId: { exact: deviceId } } });
    const track = stream.getTracks()[0];
    track.enabled = media[kind];
    const old = localStream.getTracks().find((t) => t.kind === kind);
    // While sharing, the senders keep the screen; the camera waits.
    if (!(kind === 'video' && screenTrack)) {
      await Promise.all(senders(kind).map((sender) => sender.replaceTrack(track)));
    }
    if (old) {
      localStream.removeTrack(old);
      old.stop();
    }
    localStream.addTrack(track);
    if (!screenTrack) localVideo.srcObject = localStream;
  } catch (error) {
    showError(describeMediaError(error));
  }
}

/** Shares the screen in place of the camera, or goes back to the camera. */
async function toggleShare() {
  if (!localStream) return;
  if (screenTrack) {
    stopSharing();
    return;
  }
  const stream = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
  screenTrack = stream.getVideoTracks()[0];
  // The browser's own "Stop sharing" ends the track.
  screenTrack.addEventListener('ended', stopSharing);
  await Promise.all(senders('video').map((sender) => sender.replaceTrack(screenTrack)));
  localVideo.srcObject = new MediaStream([screenTrack]);
  localVideo.closest('.tile').classList.add('screen');
  media.screen = true;
  publishMedia();
}

function stopSharing() {
  if (!screenTrack) return;
  const camera = localStream?.getVideoTracks()[0] ?? null;
  for (const sender of senders('video')) sender.replaceTrack(camera).catch(() => {});
  screenTrack.stop();
  screenTrack = null;
  localVideo.srcObject = localStream;
  localVideo.closest('.tile').classList.remove('screen');
  media.screen = false;
  publishMedia();
}

/** Starts recording every tile and voice, or stops and offers the file. */
async function toggleRecording() {
  const button = $('record');
  if (stopRecording) {
    const stop = stopRecording;
    stopRecording = null;
    button.setAttribute('aria-pressed', 'false');
    button.textContent = 'Record';
    const blob = await stop();
    window.app.recordings.push(blob);
    download(blob, session?.roomId ?? 'call');
    return;
  }
  stopRecording = startRecording(
    () => [...document.querySelectorAll('#tiles video')],
    () => [
      ...(localStream?.getAudioTracks() ?? []),
      ...[...records.values()].flatMap(({ pc }) => pc.getReceivers().map((r) => r.track))
        .filter((track) => track.kind === 'audio'),
    ],
  );
  window.app.recordedChunks = stopRecording.chunks;
  button.setAttribute('aria-pressed', 'true');
  button.textContent = 'Stop recording';
}

/** Shows each connection's round-trip time, bitrate and loss on its tile. */
async function showQuality() {
  for (const peer of records.values()) {
    if (peer.pc.connectionState !== 'connected') continue;
    try {
      const quality = await connectionQuality(peer.pc, peer.stats ?? null);
      peer.stats = quality.totals;
      peer.tile.querySelector('.peer-stats').textContent = describeQuality(quality);
      if (quality.rttMs !== null) peer.tile.dataset.rttMs = String(quality.rttMs);
    } catch {
      // A connection closing meanwhile has no figures.
    }
  }
}

function sendChat(event) {
  event.preventDefault();
  const input = event.target.text;
  const text = input.value.trim();
  if (!text || !session) return;
  input.value = '';
  showChat({ from: session.memberId, payload: { text }, sent_at: new Date().toISOString() });
  session.broadcast('chat', { text }).catch((error) => showError(describeError(error)));
}

function showChat(signal) {
  if (typeof signal.payload?.text !== 'string') return;
  const mine = signal.from === session?.memberId;
  const member = signal.from === null ? null : session?.members.get(signal.from);
  const item = document.createElement('li');
  if (mine) item.className = 'mine';
  const who = document.createElement('span');
  who.className = 'author';
  who.textContent = mine ? 'You' : signal.from === null ? 'The service' : member ? displayName(member) : 'Someone';
  const text = document.createElement('span');
  text.className = 'text';
  text.textContent = signal.payload.text;
  item.append(who, text);
  const list = $('call-messages');
  list.append(item);
  list.scrollTop = list.scrollHeight;
}
