// The viewer's playback engine. WebRTC (WHEP) first; when it cannot start, LL-HLS with
// hls.js, then HTTP-FLV with mpegts.js, then HLS (natively, or hls.js without low-latency
// mode). A session that drops is reconnected in the same mode; an offline room is waited for
// (polled, or woken by the `show_started` room event).
import { play, connected, inboundVideoStats } from '../whip.js';
import { api } from './api.js';

export const MODES = ['webrtc', 'llhls', 'flv', 'hls'];

const START_TIMEOUT_MS = { webrtc: 12000, llhls: 25000, flv: 20000, hls: 30000 };
const OFFLINE_POLL_MS = 5000;
const BRIDGE_WAIT_MS = 15000;
/** Waits between looks at a playlist that is not ready yet (then the next mode is tried). */
const PLAYLIST_RETRY_MS = [500, 1000, 2000, 3000, 4000, 5000];

const scripts = new Map();
/** Loads a vendored player (classic script) once. */
export function loadScript(src) {
  if (!scripts.has(src)) {
    scripts.set(src, new Promise((resolve, reject) => {
      const el = document.createElement('script');
      el.src = src;
      el.async = true;
      el.onload = () => resolve();
      el.onerror = () => { scripts.delete(src); reject(new Error(`could not load ${src}`)); };
      document.head.append(el);
    }));
  }
  return scripts.get(src);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

class Offline extends Error {}
class Unsupported extends Error {}

/** Resolves when the video element has played ~`seconds` past `from`. */
function videoProgress(video, ms, abort) {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const timer = setInterval(() => {
      if (abort.stopped) { clearInterval(timer); reject(new Error('stopped')); return; }
      if (video.currentTime > 0.2 && !video.paused && video.readyState >= 2) { clearInterval(timer); resolve(); return; }
      if (Date.now() - started > ms) { clearInterval(timer); reject(new Error('no playback')); }
    }, 250);
  });
}

/** A watchdog that resolves with a reason when the element stops advancing. */
function stallWatch(video, ms = 15000) {
  let last = video.currentTime;
  let since = Date.now();
  let timer;
  const ended = new Promise((resolve) => {
    timer = setInterval(() => {
      if (video.currentTime !== last || video.paused) { last = video.currentTime; since = Date.now(); return; }
      if (Date.now() - since > ms) resolve('stalled');
    }, 1000);
  });
  return { ended, stop: () => clearInterval(timer) };
}

function reset(video) {
  video.pause();
  video.srcObject = null;
  video.removeAttribute('src');
  try { video.load(); } catch (_) { /* nothing loaded */ }
}

async function tryPlay(video) {
  try { await video.play(); } catch (_) { /* autoplay refused: the element stays muted and paused until a tap */ }
}

// ---- one function per mode: resolves to { ended: Promise<reason>, stop() } once playing ----

async function startWebRtc(ctx) {
  if (typeof RTCPeerConnection === 'undefined') throw new Unsupported('WebRTC is not available');
  let session;
  try {
    session = await play(ctx.info.whep || `/whep/${encodeURIComponent(ctx.room)}`, ctx.video, { token: ctx.token() });
  } catch (err) {
    if (err.status === 404) throw new Offline(err.message);
    throw err;
  }
  ctx.onSession(session);
  try {
    await connected(session.pc, START_TIMEOUT_MS.webrtc);
    const deadline = Date.now() + START_TIMEOUT_MS.webrtc;
    for (;;) {
      const stats = await inboundVideoStats(session.pc);
      if (stats && stats.framesDecoded > 0) break;
      if (Date.now() > deadline) throw new Error('no video frames');
      if (ctx.abort.stopped) throw new Error('stopped');
      await sleep(300);
    }
  } catch (err) {
    session.stop();
    throw err;
  }
  tryPlay(ctx.video);
  let timer;
  const ended = new Promise((resolve) => {
    let lastFrames = -1;
    let stalledChecks = 0;
    let disconnectedAt = 0;
    timer = setInterval(async () => {
      const s = session.pc.connectionState;
      if (s === 'failed' || s === 'closed') { resolve(`connection ${s}`); return; }
      if (s === 'disconnected') {
        disconnectedAt = disconnectedAt || Date.now();
        if (Date.now() - disconnectedAt > 5000) { resolve('disconnected'); return; }
      } else disconnectedAt = 0;
      const stats = await inboundVideoStats(session.pc).catch(() => null);
      const frames = stats ? stats.framesDecoded : 0;
      stalledChecks = frames === lastFrames ? stalledChecks + 1 : 0;
      lastFrames = frames;
      if (stalledChecks >= 5) resolve('stalled');
    }, 2000);
  });
  return {
    ended,
    pc: session.pc,
    stop() { clearInterval(timer); session.stop(); },
  };
}

function withToken(url, token) {
  if (!token) return url;
  const u = new URL(url, location.href);
  // The server's playback links carry their own short-lived, room-scoped token.
  if (u.searchParams.has('token')) return url;
  u.searchParams.set('token', token);
  return u.toString();
}

/**
 * Resolves once `url` answers a playlist with media in it. Just after a show starts (or
 * after a fallback from WebRTC) the bridge may not have cut its first segment or part yet:
 * look again with backoff instead of failing the mode. Rejects after the last retry.
 */
export async function waitForPlaylist(url, token, abort, delays = PLAYLIST_RETRY_MS) {
  let last = 'no answer';
  for (let attempt = 0; ; attempt++) {
    if (abort.stopped) throw new Error('stopped');
    try {
      const response = await fetch(url, { headers: token ? { Authorization: `Bearer ${token}` } : {}, cache: 'no-store' });
      const text = response.ok ? await response.text() : '';
      if (response.status === 404 && attempt === 0) last = 'playlist not found';
      else last = response.ok ? 'playlist without media yet' : `HTTP ${response.status}`;
      const hasMedia = /#EXTINF|#EXT-X-PART:|#EXT-X-STREAM-INF/.test(text);
      if (response.ok && text.startsWith('#EXTM3U') && hasMedia) return;
    } catch (err) {
      last = err.message;
    }
    if (attempt >= delays.length) throw new Error(`playlist not ready: ${last}`);
    await sleep(delays[attempt]);
  }
}

async function startHlsJs(ctx, url, lowLatency) {
  await loadScript('/vendor/hls.min.js');
  const Hls = window.Hls;
  if (!Hls || !Hls.isSupported()) throw new Unsupported('hls.js is not supported here');
  const token = ctx.token();
  await waitForPlaylist(url, token, ctx.abort);
  const hls = new Hls({
    lowLatencyMode: lowLatency,
    maxLiveSyncPlaybackRate: 1.5,
    backBufferLength: 10,
    xhrSetup: token ? (xhr) => xhr.setRequestHeader('Authorization', `Bearer ${token}`) : undefined,
    // A playlist or part that is late is retried, not fatal at once.
    manifestLoadingMaxRetry: 4,
    levelLoadingMaxRetry: 6,
    fragLoadingMaxRetry: 6,
  });
  let fatal;
  const failed = new Promise((resolve) => { fatal = resolve; });
  let recovered = false;
  hls.on(Hls.Events.ERROR, (_, data) => {
    if (!data.fatal) return;
    if (data.type === Hls.ErrorTypes.MEDIA_ERROR && !recovered) {
      recovered = true;
      hls.recoverMediaError();
      return;
    }
    fatal(`hls.js: ${data.details}`);
  });
  hls.loadSource(url);
  hls.attachMedia(ctx.video);
  tryPlay(ctx.video);
  try {
    await Promise.race([
      videoProgress(ctx.video, START_TIMEOUT_MS.llhls, ctx.abort),
      failed.then((reason) => { throw new Error(reason); }),
    ]);
  } catch (err) {
    hls.destroy();
    throw err;
  }
  const watch = stallWatch(ctx.video);
  return {
    ended: Promise.race([failed, watch.ended]),
    hls,
    stop() { watch.stop(); hls.destroy(); },
  };
}

async function startFlv(ctx, url) {
  await loadScript('/vendor/mpegts.js');
  const mpegts = window.mpegts;
  if (!mpegts || !mpegts.isSupported() || !mpegts.getFeatureList().mseLivePlayback) throw new Unsupported('mpegts.js is not supported here');
  const token = ctx.token();
  const player = mpegts.createPlayer({ type: 'flv', isLive: true, url }, {
    enableStashBuffer: false,
    liveBufferLatencyChasing: true,
    headers: token ? { Authorization: `Bearer ${token}` } : undefined,
  });
  let fatal;
  const failed = new Promise((resolve) => { fatal = resolve; });
  player.on(mpegts.Events.ERROR, (type, detail) => fatal(`mpegts.js: ${type} ${detail}`));
  player.attachMediaElement(ctx.video);
  player.load();
  tryPlay(ctx.video);
  const destroy = () => { try { player.destroy(); } catch (_) { /* already gone */ } };
  try {
    await Promise.race([
      videoProgress(ctx.video, START_TIMEOUT_MS.flv, ctx.abort),
      failed.then((reason) => { throw new Error(reason); }),
    ]);
  } catch (err) {
    destroy();
    throw err;
  }
  const watch = stallWatch(ctx.video);
  return { ended: Promise.race([failed, watch.ended]), stop() { watch.stop(); destroy(); } };
}

async function startNativeHls(ctx, url) {
  const video = ctx.video;
  if (!video.canPlayType('application/vnd.apple.mpegurl')) {
    // No native HLS (most desktop browsers): plain HLS through hls.js is the last resort.
    return startHlsJs(ctx, url, false);
  }
  await waitForPlaylist(url, ctx.token(), ctx.abort);
  let fatal;
  const failed = new Promise((resolve) => { fatal = resolve; });
  const onError = () => fatal('media error');
  video.addEventListener('error', onError);
  video.src = withToken(url, ctx.token());
  tryPlay(video);
  try {
    await Promise.race([
      videoProgress(video, START_TIMEOUT_MS.hls, ctx.abort),
      failed.then((reason) => { throw new Error(reason); }),
    ]);
  } catch (err) {
    video.removeEventListener('error', onError);
    throw err;
  }
  const watch = stallWatch(video);
  return {
    ended: Promise.race([failed, watch.ended]),
    stop() { watch.stop(); video.removeEventListener('error', onError); },
  };
}

function bridgeUrl(mode, info) {
  return { llhls: info.llhls, flv: info.flv, hls: info.hls }[mode] || null;
}

/**
 * options: video, room, token() → JWT or null,
 *   onMode(mode | null), onStatus(status, detail) with status 'connecting' | 'playing' |
 *   'offline' | 'reconnecting' | 'failed', onFallback(from, to, error), onChannel(dc),
 *   forcedMode (one of MODES: only that mode is tried).
 */
export function createPlayer(options) {
  const { video, room, token } = options;
  const onMode = options.onMode || (() => {});
  const onStatus = options.onStatus || (() => {});
  const onFallback = options.onFallback || (() => {});
  const onChannel = options.onChannel || (() => {});
  const abort = { stopped: false };
  let current = null;
  let wake = null;
  let endNow = null;
  const failedModes = new Set();
  let mode = null;

  const setMode = (m) => { mode = m; onMode(m); };

  function waitForWake(ms) {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      wake = () => { clearTimeout(timer); wake = null; resolve(); };
    });
  }

  async function startMode(m, info) {
    const ctx = {
      video, room, info, token, abort,
      onSession: (session) => onChannel(session.channel),
    };
    reset(video);
    switch (m) {
      case 'webrtc': return startWebRtc(ctx);
      case 'llhls': return startHlsJs(ctx, bridgeUrl(m, info), true);
      case 'flv': return startFlv(ctx, bridgeUrl(m, info));
      default: return startNativeHls(ctx, bridgeUrl(m, info));
    }
  }

  async function loop() {
    let attempt = 0;
    let bridgeWaitSince = 0;
    let everPlayed = false;
    while (!abort.stopped) {
      let info;
      try {
        info = await api.stream(room);
      } catch (err) {
        onStatus('failed', err);
        await waitForWake(Math.min(15000, 2000 * 2 ** Math.min(attempt++, 3)));
        continue;
      }
      if (abort.stopped) break;
      if (!info.live) {
        failedModes.clear();
        setMode(null);
        onStatus('offline', { ended: everPlayed });
        await waitForWake(OFFLINE_POLL_MS);
        continue;
      }
      const candidates = (options.forcedMode ? [options.forcedMode] : MODES).filter((m) => !failedModes.has(m));
      if (candidates.length === 0) {
        failedModes.clear();
        setMode(null);
        onStatus('failed', new Error('no playback mode works'));
        await waitForWake(Math.min(20000, 3000 * 2 ** Math.min(attempt++, 3)));
        continue;
      }
      const m = candidates[0];
      if (m !== 'webrtc' && !bridgeUrl(m, info)) {
        // The bridge publishes its URLs a moment after the show starts; a VP8 room never has them.
        if (!info.bridge_unavailable) {
          bridgeWaitSince = bridgeWaitSince || Date.now();
          if (Date.now() - bridgeWaitSince < BRIDGE_WAIT_MS) {
            onStatus('connecting', { mode: m });
            await waitForWake(1000);
            continue;
          }
        }
        const next = candidates[1] || null;
        failedModes.add(m);
        onFallback(m, next, new Error(info.bridge_unavailable || 'not bridged'));
        continue;
      }
      bridgeWaitSince = 0;
      onStatus(everPlayed ? 'reconnecting' : 'connecting', { mode: m });
      let session;
      try {
        session = await startMode(m, info);
      } catch (err) {
        if (abort.stopped) break;
        if (err instanceof Offline) continue;
        failedModes.add(m);
        onFallback(m, candidates[1] || null, err);
        continue;
      }
      if (abort.stopped) { session.stop(); break; }
      current = session;
      attempt = 0;
      everPlayed = true;
      setMode(m);
      onStatus('playing', { mode: m });
      const reason = await Promise.race([session.ended, new Promise((r) => { endNow = r; })]);
      endNow = null;
      if (current === session) {
        current = null;
        session.stop();
      }
      if (abort.stopped) break;
      onStatus('reconnecting', { mode: m, reason });
      await waitForWake(reason === 'offline' ? 0 : 1000);
    }
  }

  return {
    start() { loop().catch((err) => onStatus('failed', err)); },
    /** The room event `show_started` (or a tap on retry): look again at once. */
    wake() { if (wake) wake(); },
    /** The room event `show_ended`: stop the session and wait for the next show. */
    showEnded() { if (endNow) endNow('offline'); },
    get mode() { return mode; },
    get session() { return current; },
    stop() {
      abort.stopped = true;
      if (wake) wake();
      if (endNow) endNow('stopped');
      if (current) current.stop();
      current = null;
      reset(video);
    },
  };
}
