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
    let code = 'http';
    try { ({ message, code } = (await response.json()).error); } catch (_) { /* not JSON */ }
    const error = new Error(message);
    error.status = response.status;
    error.code = code;
    throw error;
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
 * Returns { pc, location, channel, stop() }; `channel` is the `room` data channel (null with
 * `{ dataChannel: false }`, e.g. when the page talks to the room over the WebSocket).
 */
export async function publish(url, token, stream, codec = 'video/H264', { dataChannel = true } = {}) {
  const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
  const channel = dataChannel ? pc.createDataChannel('room') : null;
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
 * `token` (optional) tells the server who is watching: private rooms need it, and the
 * `room` data channel then speaks for that user.
 */
export async function play(url, video, { token = null, dataChannel = true } = {}) {
  const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
  const channel = dataChannel ? pc.createDataChannel('room') : null;
  pc.addTransceiver('video', { direction: 'recvonly' });
  pc.addTransceiver('audio', { direction: 'recvonly' });
  const stream = new MediaStream();
  pc.addEventListener('track', (event) => {
    stream.addTrack(event.track);
    video.srcObject = stream;
  });
  try {
    return session(pc, await exchange(pc, url, token), token, channel);
  } catch (err) {
    pc.close();
    throw err;
  }
}

/** Resolves once `pc` is connected; rejects when it fails, closes or `ms` pass. */
export function connected(pc, ms = 10000) {
  return new Promise((resolve, reject) => {
    const check = () => {
      const s = pc.connectionState;
      if (s === 'connected') { done(); resolve(); }
      if (s === 'failed' || s === 'closed') { done(); reject(new Error(`connection ${s}`)); }
    };
    const timer = setTimeout(() => { done(); reject(new Error('connection timed out')); }, ms);
    const done = () => { clearTimeout(timer); pc.removeEventListener('connectionstatechange', check); };
    pc.addEventListener('connectionstatechange', check);
    check();
  });
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
        frameHeight: s.frameHeight || 0,
        framesPerSecond: s.framesPerSecond || 0,
        timestamp: s.timestamp,
        codec: codecs.get(s.codecId) || '',
      };
    }
  });
  return result;
}
