// Recording the call in the browser: every tile's video drawn side by side
// on a canvas, every audio track mixed into one, both into a MediaRecorder;
// a download of the file when it stops. Nothing leaves the browser.

const FRAME_RATE = 15;
const WIDTH = 1280;
const HEIGHT = 720;

/**
 * Starts recording what `videos()` and `audioTracks()` give at each frame
 * (tiles come and go during a call). Returns `stop()`, which resolves to
 * the recording as a Blob; `stop.chunks()` tells how many seconds' chunks
 * it holds so far.
 */
export function startRecording(videos, audioTracks) {
  const canvas = document.createElement('canvas');
  canvas.width = WIDTH;
  canvas.height = HEIGHT;
  const context2d = canvas.getContext('2d');
  const audio = new AudioContext();
  const mix = audio.createMediaStreamDestination();
  /** The tracks already mixed in, by id. */
  const mixed = new Map();

  const draw = () => {
    const shown = videos().filter((video) => video.readyState >= 2 && video.videoWidth > 0);
    context2d.fillStyle = '#111';
    context2d.fillRect(0, 0, WIDTH, HEIGHT);
    const columns = Math.ceil(Math.sqrt(shown.length)) || 1;
    const rows = Math.ceil(shown.length / columns) || 1;
    const cellWidth = WIDTH / columns;
    const cellHeight = HEIGHT / rows;
    shown.forEach((video, index) => {
      const scale = Math.min(cellWidth / video.videoWidth, cellHeight / video.videoHeight);
      const width = video.videoWidth * scale;
      const height = video.videoHeight * scale;
      const x = (index % columns) * cellWidth + (cellWidth - width) / 2;
      const y = Math.floor(index / columns) * cellHeight + (cellHeight - height) / 2;
      context2d.drawImage(video, x, y, width, height);
    });
    for (const track of audioTracks()) {
      if (mixed.has(track.id) || track.readyState !== 'live') continue;
      const source = audio.createMediaStreamSource(new MediaStream([track]));
      source.connect(mix);
      mixed.set(track.id, source);
    }
  };
  draw();
  const timer = setInterval(draw, 1000 / FRAME_RATE);
  const stream = new MediaStream([
    ...canvas.captureStream(FRAME_RATE).getVideoTracks(),
    ...mix.stream.getAudioTracks(),
  ]);
  const type = ['video/webm;codecs=vp8,opus', 'video/webm'].find((t) => MediaRecorder.isTypeSupported(t));
  const recorder = new MediaRecorder(stream, type ? { mimeType: type } : undefined);
  const chunks = [];
  recorder.ondataavailable = (event) => {
    if (event.data.size > 0) chunks.push(event.data);
  };
  // A chunk a second: a recording stopped by a crash keeps most of itself.
  recorder.start(1000);

  const stop = () =>
    new Promise((resolve) => {
      recorder.onstop = () => {
        clearInterval(timer);
        for (const track of stream.getTracks()) track.stop();
        audio.close();
        resolve(new Blob(chunks, { type: recorder.mimeType || 'video/webm' }));
      };
      recorder.stop();
    });
  stop.chunks = () => chunks.length;
  return stop;
}

/** Offers `blob` as a download named after the room and the time. */
export function download(blob, room) {
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const link = document.createElement('a');
  link.href = URL.createObjectURL(blob);
  link.download = `call-${room}-${stamp}.webm`;
  document.body.append(link);
  link.click();
  link.remove();
  // Long enough for the browser to have taken the file.
  setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
}
