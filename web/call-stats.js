// The quality of each peer connection, from `getStats`: round-trip time,
// received bitrate and packet loss, shown on the peer's tile.

/** How often the figures are taken. */
export const STATS_EVERY_MS = 2000;

/**
 * What changed since `last` (the previous figures of this connection, or
 * null): `{rttMs, kbps, lossPercent, totals}`, each figure null while
 * unknown. `totals` is what the next call takes as `last`.
 */
export async function connectionQuality(pc, last) {
  const report = await pc.getStats();
  let rttMs = null;
  let bytes = 0;
  let received = 0;
  let lost = 0;
  let at = null;
  for (const stat of report.values()) {
    if (stat.type === 'candidate-pair' && stat.nominated && stat.state === 'succeeded'
      && typeof stat.currentRoundTripTime === 'number') {
      rttMs = Math.round(stat.currentRoundTripTime * 1000);
    }
    if (stat.type === 'inbound-rtp') {
      bytes += stat.bytesReceived ?? 0;
      received += stat.packetsReceived ?? 0;
      lost += Math.max(0, stat.packetsLost ?? 0);
      at = stat.timestamp;
    }
  }
  const totals = { bytes, received, lost, at };
  let kbps = null;
  let lossPercent = null;
  if (last && at !== null && last.at !== null && at > last.at) {
    kbps = Math.round(((bytes - last.bytes) * 8) / (at - last.at));
    const packets = received - last.received + (lost - last.lost);
    lossPercent = packets > 0 ? (100 * (lost - last.lost)) / packets : 0;
  }
  return { rttMs, kbps, lossPercent, totals };
}

/** The figures in a few words, as the tile shows them. */
export function describeQuality({ rttMs, kbps, lossPercent }) {
  const parts = [];
  if (rttMs !== null) parts.push(`${rttMs} ms`);
  if (kbps !== null) parts.push(`${kbps} kbit/s`);
  if (lossPercent !== null) parts.push(`${lossPercent.toFixed(1)}% lost`);
  return parts.join(' · ');
}
