// The bridge's outputs in real players in headless Chromium: a page publishes its fake
// camera by WHIP (H.264), other pages play the room as LL-HLS with hls.js, HLS natively,
// HTTP-FLV with mpegts.js, and the show's recording from its start. The players are the
// vendored copies served by queqiao itself (/vendor/…).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startServer, launchBrowser, waitFor, artifacts, TOKEN } from './harness.mjs';

let server;
let browser;
const results = {};

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
});

after(async () => {
  writeFileSync(join(artifacts, 'bridge-players.json'), JSON.stringify(results, null, 2));
  if (browser) await browser.close();
  if (server) assert.equal(await server.stop(), 0, 'queqiao exits cleanly on SIGTERM');
});

async function publish(room, codec = 'video/H264') {
  const host = await browser.newPage();
  await host.goto(`${server.base}/?room=${room}&token=${TOKEN}`);
  await host.selectOption('#publish-codec', codec);
  await host.click('#publish-start');
  await waitFor(() => host.evaluate(() => document.getElementById('publish-status').dataset.kind === 'ok'), { message: 'publisher connected' });
  return host;
}

async function streamUrls(room) {
  return waitFor(async () => {
    const r = await fetch(`${server.base}/api/rooms/${room}/stream`);
    const body = await r.json();
    return body.flv ? body : null;
  }, { timeout: 30000, message: `bridge URLs for ${room}` });
}

/** A blank page on the server's origin with a muted <video id="v">. */
async function playerPage(scripts = []) {
  const page = await browser.newPage();
  await page.goto(`${server.base}/vendor/README.md`);
  const tags = scripts.map((s) => `<script src="/vendor/${s}"></script>`).join('');
  await page.setContent(`<!doctype html><html><body>${tags}<video id="v" muted autoplay playsinline width="640"></video></body></html>`);
  return page;
}

/** Waits until the video plays and its currentTime advanced by `seconds`. */
async function assertPlays(page, what, seconds = 3, timeout = 40000) {
  const start = await waitFor(() => page.evaluate(() => {
    const v = document.getElementById('v');
    return v.currentTime > 0.2 && !v.paused ? v.currentTime : null;
  }), { timeout, message: `${what} starts playing` });
  const end = await waitFor(() => page.evaluate((from) => {
    const v = document.getElementById('v');
    return v.currentTime >= from ? { t: v.currentTime, w: v.videoWidth, h: v.videoHeight } : null;
  }, start + seconds), { timeout: (seconds + 15) * 1000, message: `${what} keeps playing` });
  assert.ok(end.w > 0 && end.h > 0, `${what}: decoded video ${end.w}x${end.h}`);
  return end;
}

test('LL-HLS with hls.js, HLS natively, HTTP-FLV with mpegts.js, then the recording', async () => {
  const room = 'players';
  const host = await publish(room);
  const urls = await streamUrls(room);

  // LL-HLS in hls.js (low-latency mode: blocking reloads, parts, preload hints).
  const ll = await playerPage(['hls.min.js']);
  await ll.evaluate((url) => {
    // maxLiveSyncPlaybackRate lets hls.js catch up with the live edge after a stall
    // (e.g. the publisher's encoder changing resolution while it ramps up).
    const hls = new window.Hls({ lowLatencyMode: true, maxLiveSyncPlaybackRate: 1.5, backBufferLength: 10 });
    window.hls = hls;
    window.hlsErrors = [];
    hls.on(window.Hls.Events.ERROR, (_, data) => { if (data.fatal) window.hlsErrors.push(data.details); });
    hls.loadSource(url);
    hls.attachMedia(document.getElementById('v'));
  }, urls.llhls);
  const llPlay = await assertPlays(ll, 'LL-HLS (hls.js)', 4);
  // hls.js catches up with the live edge (playback rate ≤ 1.5): wait for its own
  // latency estimate to reach issue 5's target (≤ 2.5 s), then let it settle and read it.
  const settled = await waitFor(() => ll.evaluate(() => {
    const latency = window.hls.latency;
    return latency > 0 && latency <= 2.5 ? latency : null;
  }), { timeout: 30000, interval: 500, message: 'hls.js latency ≤ 2.5 s' }).catch(() => null);
  await new Promise((r) => setTimeout(r, 4000));
  const ll_state = await ll.evaluate(() => ({
    latency: window.hls.latency,
    targetLatency: window.hls.targetLatency,
    lowLatency: window.hls.lowLatencyMode,
    errors: window.hlsErrors,
    partTarget: window.hls.levels?.[0]?.details?.partTarget,
  }));
  console.log(`hls.js LL-HLS: latency ${ll_state.latency?.toFixed(2)} s (target ${ll_state.targetLatency?.toFixed(2)} s), ${llPlay.w}x${llPlay.h}`);
  results.llhls = { ...ll_state, reachedTarget: settled, width: llPlay.w, height: llPlay.h };
  assert.deepEqual(ll_state.errors, [], 'no fatal hls.js errors');
  assert.ok(ll_state.partTarget > 0, 'hls.js saw LL-HLS parts');
  // Issue 5's target: hls.js live-edge latency on LL-HLS ≤ 2.5 s.
  assert.ok(ll_state.latency > 0 && ll_state.latency <= 2.5, `hls.js latency ${ll_state.latency}`);
  await ll.screenshot({ path: join(artifacts, 'bridge-llhls.png') });

  // TS HLS, played natively by Chromium.
  const native = await playerPage();
  const canPlay = await native.evaluate(() => document.getElementById('v').canPlayType('application/vnd.apple.mpegurl'));
  assert.ok(canPlay, 'Chromium plays HLS natively');
  await native.evaluate((url) => { document.getElementById('v').src = url; }, urls.hls);
  const nativePlay = await assertPlays(native, 'HLS (native)', 3);
  results.hls = { width: nativePlay.w, height: nativePlay.h };
  await native.screenshot({ path: join(artifacts, 'bridge-hls.png') });

  // HTTP-FLV through mpegts.js (Media Source Extensions).
  const flv = await playerPage(['mpegts.js']);
  await flv.evaluate((url) => {
    // Like a production page: on a fatal error, recreate the player (mpegts.js sometimes
    // fails an MSE append when the H.264 level changes with the resolution).
    window.flvErrors = [];
    window.flvRecoveries = 0;
    const start = () => {
      const player = window.mpegts.createPlayer({ type: 'flv', isLive: true, url }, { enableStashBuffer: false, liveBufferLatencyChasing: true });
      window.player = player;
      player.on(window.mpegts.Events.ERROR, (type, details) => {
        window.flvErrors.push(`${type}:${details}`);
        player.destroy();
        window.flvRecoveries += 1;
        setTimeout(start, 200);
      });
      player.attachMediaElement(document.getElementById('v'));
      player.load();
      player.play();
    };
    start();
  }, urls.flv);
  const flvPlay = await assertPlays(flv, 'HTTP-FLV (mpegts.js)', 3);
  const flvState = await flv.evaluate(() => {
    const v = document.getElementById('v');
    const end = v.buffered.length ? v.buffered.end(v.buffered.length - 1) : 0;
    return { errors: window.flvErrors, bufferedAhead: end - v.currentTime };
  });
  assert.deepEqual(flvState.errors, []);
  results.flv = { width: flvPlay.w, height: flvPlay.h, bufferedAhead: flvState.bufferedAhead };
  await flv.screenshot({ path: join(artifacts, 'bridge-flv.png') });

  // The publisher halves its resolution mid-stream (as WebRTC encoders do under
  // congestion): every player keeps playing.
  await host.evaluate(async () => {
    const sender = window.queqiao.publisher.pc.getSenders().find((s) => s.track && s.track.kind === 'video');
    const params = sender.getParameters();
    params.encodings[0].scaleResolutionDownBy = 2;
    await sender.setParameters(params);
  });
  for (const [page, what] of [[ll, 'LL-HLS after the resolution change'], [native, 'HLS after the resolution change'], [flv, 'FLV after the resolution change']]) {
    const after = await assertPlays(page, what, 3);
    results[`${what}`] = { width: after.w, height: after.h };
  }
  const recoveries = await flv.evaluate(() => ({ recoveries: window.flvRecoveries, errors: window.flvErrors }));
  results.flvAfterChange = recoveries;
  assert.ok(recoveries.recoveries <= 2, `mpegts.js needed ${recoveries.recoveries} reloads: ${recoveries.errors}`);
  const llErrors = await ll.evaluate(() => window.hlsErrors);
  assert.deepEqual(llErrors, [], 'hls.js plays through the change without a fatal error');
  const hlsText = await (await fetch(urls.hls)).text();
  results.hlsDiscontinuity = hlsText.includes('#EXT-X-DISCONTINUITY');

  // The show ends; its recording plays from the start.
  await host.click('#publish-stop');
  const recording = await waitFor(async () => {
    const list = await (await fetch(`${server.base}/api/rooms/${room}/recordings`)).json();
    return list.length && list[0].ended_at ? list[0] : null;
  }, { timeout: 30000, message: 'the recording is finished' });
  assert.ok(recording.duration_secs > 5, JSON.stringify(recording));
  const vod = await playerPage();
  await vod.evaluate((url) => { document.getElementById('v').src = url; }, recording.url);
  const vodPlay = await assertPlays(vod, 'the recording', 3);
  const vodState = await vod.evaluate(() => {
    const v = document.getElementById('v');
    return { duration: v.duration, start: v.played.length ? v.played.start(0) : null };
  });
  assert.ok(vodState.start !== null && vodState.start < 1, `the recording plays from its start: ${JSON.stringify(vodState)}`);
  assert.ok(Number.isFinite(vodState.duration) && vodState.duration > 5, `VOD duration ${vodState.duration}`);
  results.recording = { ...vodState, width: vodPlay.w, height: vodPlay.h, api: recording };
  for (const page of [ll, native, flv, vod, host]) await page.close();
});

test('a VP8 room answers the bridge outputs with a clear JSON error', async () => {
  const room = 'players-vp8';
  const host = await publish(room, 'video/VP8');
  const body = await waitFor(async () => {
    const r = await fetch(`${server.base}/api/rooms/${room}/stream`);
    const b = await r.json();
    return b.bridge_unavailable ? b : null;
  }, { timeout: 30000, message: 'the stream API explains why there is no FLV/HLS' });
  assert.equal(body.flv, null);
  assert.match(body.bridge_unavailable, /VP8|vp8/);
  for (const path of [`/live/${room}.flv`, `/hls/${room}/index.m3u8`, `/llhls/${room}/index.m3u8`]) {
    const r = await fetch(`${server.base}${path}`);
    assert.equal(r.status, 422, path);
    assert.match(r.headers.get('content-type'), /application\/json/);
    const err = await r.json();
    assert.equal(err.error.code, 'unsupported_codec');
    assert.match(err.error.message, /H\.264/);
  }
  await host.click('#publish-stop');
  await host.close();
});
