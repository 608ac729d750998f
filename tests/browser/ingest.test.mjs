// 用 OBS 推流 in the host studio, in real headless Chromium against queqiao in accounts mode
// (--seed-demo, RTMP ingest on a free port — harness.mjs passes `--rtmp 127.0.0.1:0`): the
// panel shows the RTMP server URL and the stream key of GET /api/rooms/{id}/ingest (the key
// masked until shown), the copy buttons put them in the clipboard, 重置推流码 asks first and
// then shows the new key; in OBS mode the studio opens no camera (also after a reload) and
// chat keeps working; an ffmpeg push to the shown URL puts the room on air and the studio
// follows (直播中（OBS 推流）, viewers), then back to waiting when the push ends.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import {
  startAccountsServer, launchIsolatedBrowser, sessionPages, waitFor, login, register, apiCall, artifacts, repoRoot, chatTexts, DESKTOP, CJK,
} from './harness.mjs';

let server;
let chromium;
let pages;
let host;
let viewer;
let studio;
let ffmpeg = null;

const CLIPBOARD = { ...DESKTOP, permissions: ['clipboard-read', 'clipboard-write'] };
const shot = (page, name) => page.screenshot({ path: join(artifacts, `ingest-${name}.png`) });
const ingest = () => apiCall(server.base, 'GET', '/api/rooms/demo/ingest', undefined, host.token);
const clipboard = (page) => page.evaluate(() => navigator.clipboard.readText());
const value = (page, selector) => page.inputValue(selector);

before(async () => {
  // The web demo from this checkout (the binary may embed an older copy).
  server = await startAccountsServer(['--web-dir', join(repoRoot, 'web-demo')]);
  chromium = await launchIsolatedBrowser();
  pages = sessionPages(chromium);
  host = await login(server.base, server.accounts.host.login, server.accounts.host.password);
  viewer = await register(server.base, 'erin', 'Erin 小恩');
});

after(async () => {
  if (ffmpeg && ffmpeg.exitCode === null) ffmpeg.kill('SIGKILL');
  if (pages) await pages.closeAll();
  if (chromium) await chromium.close();
  if (server) assert.equal(await server.stop(), 0, 'queqiao exits cleanly on SIGTERM');
});

test('the ingest API answers the host with an RTMP server URL and key, and refuses viewers', async () => {
  const info = await ingest();
  assert.match(info.whip_url, /\/whip\/demo$/);
  assert.ok(info.rtmp, `RTMP ingest is on (--rtmp): ${JSON.stringify(info)}`);
  assert.match(info.rtmp.server_url, /^rtmp:\/\/[^/]+:\d+\/live$/);
  assert.match(info.rtmp.stream_key, /^demo\?key=.+/);
  assert.equal(info.rtmp.url, `${info.rtmp.server_url}/${info.rtmp.stream_key}`);
  await assert.rejects(apiCall(server.base, 'GET', '/api/rooms/demo/ingest', undefined, viewer.token), / → 403 /);
});

test('用 OBS 推流: server URL and masked key, copy buttons, rotate with a confirmation; no camera opened', async () => {
  studio = await pages.open(host, CLIPBOARD);
  // Count camera requests: OBS mode must not open the camera.
  await studio.addInitScript(() => {
    window.cameraRequests = 0;
    const original = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
    navigator.mediaDevices.getUserMedia = (constraints) => { window.cameraRequests += 1; return original(constraints); };
  });
  await studio.goto(`${server.base}/#/studio/demo`);
  await studio.waitForSelector('#studio-source');
  assert.equal(await studio.textContent('#studio-source'), '用 OBS 推流');
  assert.equal(await studio.isHidden('#ingest-panel'), true, 'browser mode by default');
  await studio.click('#studio-source');
  await studio.waitForSelector('#ingest-panel #ingest-server');
  assert.equal(await studio.textContent('#ingest-title'), '用 OBS 推流');
  assert.equal(await studio.isHidden('#go-live'), true, 'no WHIP go-live button in OBS mode');
  assert.equal(await studio.isHidden('.device-row'), true, 'no device pickers in OBS mode');

  const info = await ingest();
  assert.equal(await value(studio, '#ingest-server'), info.rtmp.server_url);
  assert.equal(await value(studio, '#ingest-key'), info.rtmp.stream_key);
  const secret = info.rtmp.stream_key.split('key=')[1];
  assert.equal(await studio.getAttribute('#ingest-key', 'type'), 'password', 'the key is masked');
  assert.ok(!(await studio.textContent('#ingest-ffmpeg')).includes(secret), 'the ffmpeg line hides the key too');
  await studio.click('#ingest-show-key');
  assert.equal(await studio.getAttribute('#ingest-key', 'type'), 'text');
  assert.equal(await studio.getAttribute('#ingest-show-key', 'aria-pressed'), 'true');
  const command = await studio.textContent('#ingest-ffmpeg');
  assert.ok(command.includes(info.rtmp.url), 'the ffmpeg line with the real URL once shown');
  assert.match(command, /-c:v libx264 .*-bf 0 .*-g 60/);
  assert.match(command, /-c:a aac -b:a 128k/);
  const settings = await studio.textContent('#ingest-settings');
  for (const words of ['H.264', '2 秒', 'bframes=0', 'AAC', '128 kbit/s', '2500–4000 kbit/s', '720×1280']) assert.ok(settings.includes(words), `settings mention ${words}`);
  await studio.click('#ingest-show-key');
  assert.equal(await studio.getAttribute('#ingest-key', 'type'), 'password');

  // Copy buttons → the clipboard.
  await studio.click('#ingest-copy-server');
  await waitFor(async () => (await clipboard(studio)) === info.rtmp.server_url, { message: 'server URL copied' });
  await studio.click('#ingest-copy-key');
  await waitFor(async () => (await clipboard(studio)) === info.rtmp.stream_key, { message: 'stream key copied' });
  await studio.click('#ingest-copy-ffmpeg');
  await waitFor(async () => (await clipboard(studio)).includes(info.rtmp.url), { message: 'ffmpeg command copied' });
  await shot(studio, 'panel');

  // Rotate: asks first; 取消 keeps the key, 重置推流码 changes it (shown and in the API).
  await studio.click('#ingest-rotate');
  await studio.waitForSelector('#ingest-rotate-confirm[open]');
  await studio.click('#ingest-rotate-no');
  assert.equal(await value(studio, '#ingest-key'), info.rtmp.stream_key);
  assert.equal((await ingest()).rtmp.stream_key, info.rtmp.stream_key, 'cancel rotates nothing');
  await studio.click('#ingest-rotate');
  await studio.waitForSelector('#ingest-rotate-confirm[open]');
  await studio.click('#ingest-rotate-yes');
  await waitFor(async () => (await value(studio, '#ingest-key')) !== info.rtmp.stream_key, { message: 'new key shown' });
  const rotated = await ingest();
  assert.notEqual(rotated.rtmp.stream_key, info.rtmp.stream_key);
  assert.equal(await value(studio, '#ingest-key'), rotated.rtmp.stream_key);
  assert.equal(await value(studio, '#ingest-server'), rotated.rtmp.server_url);

  // OBS mode is remembered, and a reload opens no camera at all.
  await studio.reload();
  await studio.waitForSelector('#ingest-panel #ingest-key');
  assert.equal(await studio.evaluate(() => window.queqiao.studio.source), 'obs');
  assert.equal(await studio.evaluate(() => window.cameraRequests), 0, 'no getUserMedia in OBS mode');
  assert.equal(await studio.evaluate(() => document.getElementById('studio-status').textContent), '等待 OBS 推流…（在 OBS 里点「开始推流」即开播）');
  assert.equal(await studio.isVisible('#stage-note'), true, 'the stage says it waits for OBS');
  await shot(studio, 'obs-waiting');

  // English.
  await studio.click('#lang-toggle');
  await waitFor(async () => (await studio.textContent('#ingest-title')) === 'Stream with OBS', { message: 'English title' });
  const english = await studio.evaluate(() => [...document.querySelectorAll('#ingest-panel, #studio-source, #studio-status')]
    .map((el) => el.innerText).join('\n'));
  assert.doesNotMatch(english, CJK, `no Chinese left in the OBS panel: ${english}`);
  await studio.click('#lang-toggle');
  await waitFor(async () => (await studio.textContent('#ingest-title')) === '用 OBS 推流', { message: 'back to Chinese' });
});

test('streaming to the shown URL (ffmpeg as OBS) puts the room on air; the studio follows with chat and viewers', async () => {
  const probe = spawnSync('ffmpeg', ['-hide_banner', '-encoders'], { encoding: 'utf8' });
  assert.ok(probe.status === 0 && probe.stdout.includes('libx264'), 'ffmpeg with libx264 is installed');
  const url = await studio.inputValue('#ingest-server').then(async (serverUrl) => `${serverUrl}/${await studio.inputValue('#ingest-key')}`);
  assert.equal(url, (await ingest()).rtmp.url);
  // The recommended settings, on a generated portrait picture and tone.
  ffmpeg = spawn('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-re',
    '-f', 'lavfi', '-i', 'testsrc2=size=720x1280:rate=30', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000',
    '-t', '120', '-c:v', 'libx264', '-preset', 'ultrafast', '-profile:v', 'main', '-bf', '0', '-g', '60', '-keyint_min', '60', '-sc_threshold', '0',
    '-b:v', '2500k', '-pix_fmt', 'yuv420p', '-c:a', 'aac', '-b:a', '128k', '-ar', '48000', '-f', 'flv', url], { stdio: ['ignore', 'ignore', 'pipe'] });
  let errors = '';
  ffmpeg.stderr.on('data', (d) => { errors += d; });
  await waitFor(async () => (await apiCall(server.base, 'GET', '/api/rooms/demo')).live || (ffmpeg.exitCode !== null && `ffmpeg exited: ${errors}`),
    { timeout: 30000, message: 'the room goes live from RTMP' });
  assert.equal(ffmpeg.exitCode, null, `ffmpeg still pushing: ${errors}`);
  await waitFor(() => studio.evaluate(() => document.getElementById('studio-status').dataset.state === 'live'), { timeout: 20000, message: 'studio shows live' });
  assert.equal(await studio.textContent('#studio-status'), '直播中（OBS 推流）');
  assert.equal(await studio.evaluate(() => window.cameraRequests), 0, 'still no camera');
  await waitFor(async () => !(await studio.isHidden('#live-timer')), { message: 'live timer runs' });

  // A viewer comes in and chats: the studio sees both.
  const viewerPage = await pages.open(viewer);
  await viewerPage.goto(`${server.base}/#/room/demo`);
  await waitFor(async () => Number(await studio.textContent('#stat-viewers')) >= 1, { timeout: 30000, message: 'viewer counted in the studio' });
  await viewerPage.waitForSelector('#chat-input');
  await viewerPage.fill('#chat-input', 'OBS 的画面很清楚');
  await viewerPage.click('#chat-send');
  await waitFor(async () => (await chatTexts(studio)).includes('OBS 的画面很清楚'), { message: 'chat reaches the OBS studio' });
  await shot(studio, 'live');

  // The encoder stops: the show ends, the studio waits for OBS again.
  ffmpeg.kill('SIGINT');
  await waitFor(() => studio.evaluate(() => document.getElementById('studio-status').dataset.state === 'ended'), { timeout: 30000, message: 'show ended' });
  assert.equal(await studio.textContent('#studio-status'), '等待 OBS 推流…（在 OBS 里点「开始推流」即开播）');
  assert.equal(await studio.textContent('#stat-viewers'), '0');
});
