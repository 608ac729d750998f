// The first web-demo page in real headless Chromium: one page publishes its fake camera
// by WHIP, another plays it by WHEP; getStats proves frames are decoded.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { startServer, launchBrowser, waitFor, artifacts, TOKEN } from './harness.mjs';

let server;
let browser;

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
});

after(async () => {
  if (browser) await browser.close();
  if (server) assert.equal(await server.stop(), 0, 'queqiao exits cleanly on SIGTERM');
});

async function publishAndWatch(codec, room) {
  const host = await browser.newPage();
  await host.goto(`${server.base}/?room=${room}&token=${TOKEN}`);
  await host.selectOption('#publish-codec', codec);
  await host.click('#publish-start');
  await waitFor(() => host.evaluate(() => document.getElementById('publish-status').dataset.kind === 'ok'), { message: 'publisher connected' });

  const viewer = await browser.newPage();
  await viewer.goto(`${server.base}/?watch=${room}`);
  await viewer.click('#watch-start');
  const stats = await waitFor(async () => {
    const s = await viewer.evaluate(async () => {
      const { inboundVideoStats } = await import('./whip.js');
      return window.queqiao.viewer ? inboundVideoStats(window.queqiao.viewer.pc) : null;
    });
    return s && s.framesDecoded > 30 && s.frameWidth > 0 ? s : null;
  }, { timeout: 30000, message: `${codec} frames decoded by the viewer` });
  const sent = await host.evaluate(async () => {
    const { outboundVideoStats } = await import('./whip.js');
    return outboundVideoStats(window.queqiao.publisher.pc);
  });
  await host.screenshot({ path: join(artifacts, `studio-${room}.png`) });
  await viewer.screenshot({ path: join(artifacts, `viewer-${room}.png`) });
  return { host, viewer, stats, sent };
}

test('H.264: a page publishes by WHIP and another plays it by WHEP', async () => {
  const { host, viewer, stats, sent } = await publishAndWatch('video/H264', 'browser-h264');
  assert.equal(sent.codec, 'video/H264', 'the publisher encodes H.264');
  assert.equal(stats.codec, 'video/H264', 'the viewer decodes H.264');
  assert.ok(stats.frameWidth > 0 && stats.frameHeight > 0, `frame size ${stats.frameWidth}x${stats.frameHeight}`);
  // The room list shows the live room and its viewer (counts are stored once a second).
  await waitFor(async () => {
    const rooms = await (await fetch(`${server.base}/api/rooms`)).json();
    const room = rooms.items.find((r) => r.id === 'browser-h264');
    return room && room.live && room.viewers === 1;
  }, { message: 'the room list shows the live room with one viewer' });
  await viewer.click('#watch-stop');
  await host.click('#publish-stop');
  await waitFor(async () => {
    const r = await (await fetch(`${server.base}/api/rooms`)).json();
    return !r.items.some((x) => x.id === 'browser-h264' && x.live);
  }, { message: 'room offline after the show ends' });
  await host.close();
  await viewer.close();
});

test('VP8: the same with VP8', async () => {
  const { host, viewer, stats, sent } = await publishAndWatch('video/VP8', 'browser-vp8');
  assert.equal(sent.codec, 'video/VP8');
  assert.equal(stats.codec, 'video/VP8');
  assert.ok(stats.frameWidth > 0);
  await viewer.click('#watch-stop');
  await host.click('#publish-stop');
  await host.close();
  await viewer.close();
});

test('RTMP: ffmpeg pushes H.264 + AAC by RTMP and Chromium plays video and sound by WHEP', async () => {
  const room = 'browser-rtmp';
  const ffmpeg = spawn('ffmpeg', [
    '-hide_banner', '-loglevel', 'error', '-re',
    '-f', 'lavfi', '-i', 'testsrc2=size=640x360:rate=30',
    '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=44100',
    '-t', '40', '-c:v', 'libx264', '-profile:v', 'baseline', '-preset', 'veryfast', '-tune', 'zerolatency',
    '-pix_fmt', 'yuv420p', '-g', '60', '-c:a', 'aac', '-f', 'flv',
    `${server.rtmpServer}/${room}?key=${TOKEN}`,
  ], { stdio: ['ignore', 'ignore', 'pipe'] });
  let ffmpegErrors = '';
  ffmpeg.stderr.on('data', (d) => { ffmpegErrors += d; });
  try {
    await waitFor(async () => {
      const r = await (await fetch(`${server.base}/api/rooms`)).json();
      return r.items.some((x) => x.id === room && x.live);
    }, { timeout: 20000, message: `the room goes live from RTMP (${ffmpegErrors})` });
    const viewer = await browser.newPage();
    await viewer.goto(`${server.base}/?watch=${room}`);
    await viewer.click('#watch-start');
    const stats = await waitFor(async () => {
      const s = await viewer.evaluate(async () => {
        const pc = window.queqiao.viewer && window.queqiao.viewer.pc;
        if (!pc) return null;
        const out = { framesDecoded: 0, frameWidth: 0, totalSamplesReceived: 0, concealedSamples: 0 };
        (await pc.getStats()).forEach((r) => {
          if (r.type !== 'inbound-rtp') return;
          if (r.kind === 'video') { out.framesDecoded = r.framesDecoded || 0; out.frameWidth = r.frameWidth || 0; }
          if (r.kind === 'audio') { out.totalSamplesReceived = r.totalSamplesReceived || 0; out.concealedSamples = r.concealedSamples || 0; }
        });
        return out;
      });
      return s && s.framesDecoded > 30 && s.totalSamplesReceived > 48000 ? s : null;
    }, { timeout: 30000, message: 'video frames and audio samples decoded from the RTMP room' });
    assert.equal(stats.frameWidth, 640, 'the RTMP stream\'s size');
    // Decoded, not concealed (the Rust end-to-end test checks the decoded tone's level).
    assert.ok(stats.concealedSamples < stats.totalSamplesReceived * 0.2, `the Opus made from the AAC decodes: ${JSON.stringify(stats)}`);
    await viewer.screenshot({ path: join(artifacts, `viewer-${room}.png`) });
    await viewer.close();
  } finally {
    ffmpeg.kill('SIGKILL');
  }
});
