// WHIP (publish) and WHEP (play) clients for the browser: plain ES module, no build step.
// Non-trickle: the offer is sent once ICE gathering completes (or after a short wait).

const GATHER_TIMEOUT_MS = 2000;

/** Waits until ICE gathering completes or the timeout passes. */
function gathered(pc) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { pc.removeEventListener('icegatheringstatechange', check); resolve(); };
    const check = () => { if (pc.iceGatheringState === 'complete') done(); };
    pc.addEventListener('icegatheringstatechange', check);
    setTimeout(done, GATHER_TIMEOUT_MS);
  });
}

/**
 * Reorders codec capabilities so `mime` (and, for H.264, packetization-mode=1) comes first.
 * With `only`, other media codecs are removed (repair codecs such as rtx stay), so a server
 * that prefers H.264 gets exactly what the user chose.
 */
export function preferCodec(codecs, mime, only = false) {
  const media = (c) => !/\/(rtx|red|ulpfec|flexfec)/i.test(c.mimeType);
  if (only) codecs = codecs.filter((c) => !media(c) || c.mimeType.toLowerCase() === mime.toLowerCase());
  const score = (c) => {
    if (c.mimeType.toLowerCase() !== mime.toLowerCase()) return 2;
    if (mime.toLowerCase() === 'video/h264') {
      const fmtp = c.sdpFmtpLine || '';
      if (!fmtp.includes('packetization-mode=1')) return 1;
      if (fmtp.includes('profile-level-id=42e01f')) return -1;
    }
    return 0;
  };
  return [...codecs].sort((a, b) => score(a) - score(b));
}

/** Parses `Link: <url>; rel="ice-server"; username=...; credential=...` into RTCIceServer[]. */
export function parseIceServers(linkHeader) {
  if (!linkHeader) return [];
  return linkHeader.split(/,(?=\s*<)/).map((part) => {
    const url = /<([^>]+)>/.exec(part);
    if (!url || !/rel="ice-server"/.test(part)) return null;
    const server = { urls: url[1] };
    const user = /username="([^"]*)"/.exec(part);
    const cred = /credential="([^"]*)"/.exec(part);
    if (user) server.username = user[1];
    if (cred) server.credential = cred[1];
    return server;
  }).filter(Boolean);
}

async function exchange(pc, url, token) {
  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc);
  const headers = { 'Content-Type': 'application/sdp' };
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(url, { method: 'POST', headers, body: pc.localDescription.sdp });
  if (response.status !== 201) {
    let message = `${response.status}`;
    try { message = (await response.json()).error.message; } catch (_) { /* not JSON */ }
    throw new Error(message);
  }
  const location = new URL(response.headers.get('Location'), url).toString();
  await pc.setRemoteDescription({ type: 'answer', sdp: await response.text() });
  return location;
}

function session(pc, location, token, channel) {
  return {
    pc,
    location,
    channel,
    async stop() {
      try {
        const headers = token ? { Authorization: `Bearer ${token}` } : {};
        await fetch(location, { method: 'DELETE', headers });
      } catch (_) { /* the server may already be gone */ }
      pc.close();
    },
  };
}

/**
 * Publishes `stream` to a WHIP endpoint. `codec` is 'video/H264' (default) or 'video/VP8'.
 * Returns { pc, location, channel, stop() }; `channel` is the `room` data channel.
 */
export async function publish(url, token, stream, codec = 'video/H264') {
  const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
  const channel = pc.createDataChannel('room');
  for (const track of stream.getTracks()) {
    const transceiver = pc.addTransceiver(track, { direction: 'sendonly', streams: [stream] });
    if (track.kind === 'video' && RTCRtpSender.getCapabilities) {
      const caps = RTCRtpSender.getCapabilities('video');
      // H.264 is what every player (mini-programs, HLS) can take; another codec is honoured
      // only as an explicit choice.
      if (caps) transceiver.setCodecPreferences(preferCodec(caps.codecs, codec, codec !== 'video/H264'));
    }
  }
  try {
    return session(pc, await exchange(pc, url, token), token, channel);
  } catch (err) {
    pc.close();
    throw err;
  }
}

/**
 * Plays a WHEP endpoint into `video`. Returns { pc, location, channel, stop() }.
 */
export async function play(url, video) {
  const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
  const channel = pc.createDataChannel('room');
  pc.addTransceiver('video', { direction: 'recvonly' });
  pc.addTransceiver('audio', { direction: 'recvonly' });
  const stream = new MediaStream();
  pc.addEventListener('track', (event) => {
    stream.addTrack(event.track);
    video.srcObject = stream;
  });
  try {
    return session(pc, await exchange(pc, url, null), null, channel);
  } catch (err) {
    pc.close();
    throw err;
  }
}

/** Inbound video statistics: frames decoded, size, codec. */
export async function inboundVideoStats(pc) {
  const report = await pc.getStats();
  let result = null;
  const codecs = new Map();
  report.forEach((s) => { if (s.type === 'codec') codecs.set(s.id, s.mimeType); });
  report.forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') {
      result = {
        framesDecoded: s.framesDecoded || 0,
        frameWidth: s.frameWidth || 0,
        frameHeight: s.frameHeight || 0,
        packetsReceived: s.packetsReceived || 0,
        packetsLost: s.packetsLost || 0,
        codec: codecs.get(s.codecId) || '',
        jitterBufferDelay: s.jitterBufferDelay || 0,
        jitterBufferEmittedCount: s.jitterBufferEmittedCount || 0,
      };
    }
  });
  return result;
}

/** Outbound video statistics of a publisher: frames encoded, codec, bitrate basis. */
export async function outboundVideoStats(pc) {
  const report = await pc.getStats();
  let result = null;
  const codecs = new Map();
  report.forEach((s) => { if (s.type === 'codec') codecs.set(s.id, s.mimeType); });
  report.forEach((s) => {
    if (s.type === 'outbound-rtp' && s.kind === 'video') {
      result = {
        framesEncoded: s.framesEncoded || 0,
        bytesSent: s.bytesSent || 0,
        frameWidth: s.frameWidth || 0,
        codec: codecs.get(s.codecId) || '',
      };
    }
  });
  return result;
}
