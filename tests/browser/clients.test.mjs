// The web demo end to end in real headless Chromium against queqiao in accounts mode
// (--seed-demo): the host logs in and goes live from the studio with the fake camera; two
// logged-in viewers watch by WebRTC and chat, like and send a gift; a third viewer whose
// WebRTC is broken falls back to LL-HLS; chat text is never HTML. Screenshots of the room
// list, the studio and the viewer go to artifacts/.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import {
  startAccountsServer, launchIsolatedBrowser, waitFor, artifacts, login, register, topUp, apiCall,
} from './harness.mjs';

let server;
let chromium;
let host;
let alice;
let bob;
let accounts;
const dialogs = [];

/** A page logged in as `session` (or anonymous), dialogs recorded. */
async function userPage(session, options = {}) {
  const page = await chromium.newPage(options);
  if (session) {
    await page.addInitScript((value) => {
      if (!localStorage.getItem('queqiao.session')) localStorage.setItem('queqiao.session', value);
    }, JSON.stringify(session));
  }
  page.on('dialog', (dialog) => { dialogs.push(dialog.message()); dialog.dismiss().catch(() => {}); });
  return page;
}

const framesDecoded = (page) => page.evaluate(async () => {
  const { inboundVideoStats } = await import('./whip.js');
  const session = window.queqiao.watch && window.queqiao.watch.player.session;
  if (!session || !session.pc) return 0;
  const s = await inboundVideoStats(session.pc);
  return s ? s.framesDecoded : 0;
});

const chatTexts = (page) => page.$$eval('#chat-list .chat-text', (els) => els.map((e) => e.textContent));

before(async () => {
  server = await startAccountsServer();
  chromium = await launchIsolatedBrowser();
  const admin = await login(server.base, server.accounts.admin.login, server.accounts.admin.password);
  accounts = {
    admin,
    alice: await register(server.base, 'alice', 'Alice 小爱'),
    bob: await register(server.base, 'bob', 'Bob 小博'),
  };
  await topUp(server.base, admin.token, accounts.bob.user.id, 1000);
  // A second (offline) room, so the list shows live rooms first.
  await apiCall(server.base, 'POST', '/api/rooms', { title: '北京周末读书交友会', tags: ['读书', '交友'], city: '北京' }, admin.token);
});

after(async () => {
  if (chromium) await chromium.close();
  if (server) assert.equal(await server.stop(), 0, 'queqiao exits cleanly on SIGTERM');
});

test('the host logs in and goes live from the studio (H.264 by WHIP)', async () => {
  host = await userPage(null, { viewport: { width: 1280, height: 900 } });
  await host.goto(`${server.base}/#/studio`);
  // Not logged in: the studio sends the host to the login form, then back.
  await host.waitForSelector('#login-form');
  await host.fill('#login-name', server.accounts.host.login);
  await host.fill('#login-password', server.accounts.host.password);
  await host.click('#login-submit');
  await host.waitForSelector('#my-rooms .my-room');
  await host.click('#my-rooms a[href="#/studio/demo"]');
  await host.waitForSelector('#studio-video');
  await waitFor(() => host.evaluate(() => document.getElementById('studio-video').videoWidth > 0), { message: 'camera preview' });
  const cameras = await host.$$eval('#camera-select option', (o) => o.length);
  assert.ok(cameras >= 1, 'the camera picker lists the fake camera');
  await host.click('#go-live');
  await waitFor(() => host.evaluate(() => document.getElementById('studio-status').dataset.state === 'live'), { timeout: 30000, message: 'studio live' });
  const codec = await waitFor(() => host.evaluate(async () => {
    const { outboundVideoStats } = await import('./whip.js');
    const s = await outboundVideoStats(window.queqiao.studio.publisher.pc);
    return s && s.framesEncoded > 10 ? s.codec : null;
  }), { message: 'frames encoded' });
  assert.equal(codec, 'video/H264', 'the studio publishes H.264');
  await waitFor(() => host.evaluate(() => Number(document.getElementById('stat-bitrate').dataset.kbps) > 0), { message: 'bitrate shown' });

  // The room list shows the live room with its badge and host.
  const list = await userPage(null, { viewport: { width: 414, height: 860 } });
  await list.goto(`${server.base}/`);
  const card = await list.waitForSelector('.room-card[data-room="demo"][data-live="1"]', { timeout: 20000 });
  const order = await list.$$eval('.room-card', (cards) => cards.map((c) => c.dataset.live));
  assert.deepEqual(order, ['1', '0'], 'live rooms come first');
  const cardText = await card.textContent();
  assert.match(cardText, /红娘小美/, 'the card names the host');
  assert.match(cardText, /周末相亲局/, 'the card shows the title');
  const cached = await list.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith('queqiao.rooms')));
  assert.ok(cached.length > 0, 'the list is cached in localStorage');
  await list.screenshot({ path: join(artifacts, 'clients-room-list.png') });
  await list.close();
});

test('two viewers watch by WebRTC, chat reaches everyone, likes add up', async () => {
  alice = await userPage(accounts.alice);
  bob = await userPage(accounts.bob);
  await alice.goto(`${server.base}/#/room/demo`);
  await bob.goto(`${server.base}/#/room/demo`);
  for (const page of [alice, bob]) {
    await page.waitForSelector('#play-mode[data-mode="webrtc"]', { timeout: 30000 });
    const first = await waitFor(async () => { const n = await framesDecoded(page); return n > 5 ? n : null; }, { timeout: 30000, message: 'frames decoded' });
    const later = await waitFor(async () => { const n = await framesDecoded(page); return n > first + 20 ? n : null; }, { timeout: 20000, message: 'frames keep coming' });
    assert.ok(later > first);
  }
  // Room events ride the WebRTC data channel for WebRTC viewers.
  await waitFor(() => alice.evaluate(() => window.queqiao.watch.link.transport === 'datachannel' && window.queqiao.watch.link.connected), { message: 'data channel' });
  await waitFor(() => bob.evaluate(() => window.queqiao.watch.link.connected), { message: 'bob connected' });

  const hello = '你好，我是 Alice 👋';
  await alice.fill('#chat-input', hello);
  await alice.click('#chat-send');
  for (const [name, page] of [['bob', bob], ['host', host], ['alice', alice]]) {
    await waitFor(async () => (await chatTexts(page)).includes(hello), { message: `${name} sees Alice's message` });
  }
  const count = await waitFor(async () => {
    const n = Number(await alice.getAttribute('#viewer-count', 'data-count'));
    return n >= 2 ? n : null;
  }, { message: 'viewer count' });
  // Alice and Bob; the host's studio is not part of the audience.
  assert.equal(count, 2, `viewers online: ${count}`);

  for (let i = 0; i < 3; i++) await bob.click('#like-button');
  await waitFor(async () => Number(await alice.getAttribute('#like-count', 'data-count')) >= 3, { message: 'likes reach Alice' });
  await waitFor(async () => Number(await host.textContent('#stat-likes')) >= 3, { message: 'likes reach the host' });
});

test('a gift deducts the balance and plays its animation everywhere', async () => {
  await bob.click('#gift-button');
  await bob.waitForSelector('#gift-dialog[open]');
  await waitFor(async () => (await bob.getAttribute('#gift-balance', 'data-coins')) === '1000', { message: 'balance shown' });
  await bob.click('.gift-option[data-gift="heart"]');
  await bob.selectOption('#gift-count', '1');
  await bob.click('#gift-send');
  await waitFor(async () => (await bob.getAttribute('#gift-balance', 'data-coins')) === '990', { message: 'balance after the gift' });
  const wallet = await apiCall(server.base, 'GET', '/api/me/wallet', undefined, accounts.bob.token);
  assert.equal(wallet.coins, 990, 'the server charged 10 coins');
  for (const page of [alice, bob, host]) {
    await page.waitForSelector('.gift-anim[data-gift="heart"]', { timeout: 10000 });
  }
  await host.waitForSelector('#gifts-received .gift-entry');
  assert.equal(await host.textContent('#stat-gifts'), '10');
  await alice.screenshot({ path: join(artifacts, 'clients-viewer.png') });
  await host.screenshot({ path: join(artifacts, 'clients-studio.png') });
});

test('chat text is shown as text, never as HTML', async () => {
  const evil = '<img src=x onerror=alert(1)>';
  await alice.fill('#chat-input', evil);
  await alice.click('#chat-send');
  for (const page of [bob, host, alice]) {
    await waitFor(async () => (await chatTexts(page)).includes(evil), { message: 'the message arrives as text' });
    assert.equal(await page.$$eval('#chat-list img', (els) => els.length), 0, 'no <img> element in the chat');
  }
  await new Promise((r) => setTimeout(r, 500));
  assert.deepEqual(dialogs, [], 'no alert ran');
});

test('with WebRTC broken, the viewer falls back to LL-HLS and plays; chat goes over the WebSocket', async () => {
  const carol = await userPage(null);
  await carol.addInitScript(() => {
    // A network or browser without WebRTC.
    window.RTCPeerConnection = function RTCPeerConnection() { throw new Error('WebRTC blocked by the test'); };
  });
  // The LL-HLS playlist is "not ready yet" for the first looks (as just after a show starts):
  // the player must wait and retry, not give up on LL-HLS and move on to FLV.
  let notReady = 2;
  const playlistLooks = [];
  await carol.route('**/llhls/**/index.m3u8*', async (route) => {
    playlistLooks.push(Date.now());
    if (notReady > 0) { notReady -= 1; await route.fulfill({ status: 404, contentType: 'application/json', body: '{"error":{"code":"not_found","message":"no playlist yet"}}' }); return; }
    await route.continue();
  });
  await carol.goto(`${server.base}/#/room/demo`);
  await carol.waitForSelector('#play-mode[data-mode="llhls"]', { timeout: 60000 });
  assert.equal(notReady, 0, 'the playlist was refused twice before it was served');
  assert.ok(playlistLooks.length >= 3, 'looked again after each refusal');
  assert.equal(await carol.evaluate(() => document.querySelectorAll('#chat-list .chat-mode').length), 1, 'one fallback (WebRTC → LL-HLS), not a second one to FLV');
  const start = await waitFor(() => carol.evaluate(() => {
    const v = document.getElementById('live-video');
    return v.currentTime > 0.2 && !v.paused ? v.currentTime : null;
  }), { timeout: 40000, message: 'LL-HLS playing' });
  const end = await waitFor(() => carol.evaluate((from) => {
    const v = document.getElementById('live-video');
    return v.currentTime > from + 2 ? { t: v.currentTime, w: v.videoWidth, h: v.videoHeight } : null;
  }, start), { timeout: 30000, message: 'LL-HLS keeps playing' });
  assert.ok(end.w > 0 && end.h > 0, `decoded ${end.w}x${end.h}`);
  assert.ok(await carol.evaluate(() => !!window.Hls), 'played with hls.js');
  await waitFor(() => carol.evaluate(() => window.queqiao.watch.link.transport === 'websocket' && window.queqiao.watch.link.connected), { message: 'WebSocket events' });
  const line = 'LL-HLS viewers read chat too';
  await alice.fill('#chat-input', line);
  await alice.click('#chat-send');
  await waitFor(async () => (await chatTexts(carol)).includes(line), { message: 'chat over the WebSocket' });
  await carol.screenshot({ path: join(artifacts, 'clients-viewer-llhls.png') });
  await carol.close();
});

test('forced modes: HTTP-FLV with mpegts.js and plain HLS also play', async () => {
  for (const mode of ['flv', 'hls']) {
    const page = await userPage(null);
    await page.goto(`${server.base}/#/room/demo?mode=${mode}`);
    await page.waitForSelector(`#play-mode[data-mode="${mode}"]`, { timeout: 60000 });
    const start = await waitFor(() => page.evaluate(() => {
      const v = document.getElementById('live-video');
      return v.currentTime > 0.2 && !v.paused ? v.currentTime : null;
    }), { timeout: 40000, message: `${mode} playing` });
    const end = await waitFor(() => page.evaluate((from) => {
      const v = document.getElementById('live-video');
      return v.currentTime > from + 2 ? { w: v.videoWidth, h: v.videoHeight } : null;
    }, start), { timeout: 30000, message: `${mode} keeps playing` });
    assert.ok(end.w > 0, `${mode}: ${end.w}x${end.h}`);
    await page.close();
  }
});

test('the English toggle relabels the page', async () => {
  // The phone room covers the header (full screen): toggle as the header button would.
  const toggle = () => alice.evaluate(() => document.getElementById('lang-toggle').click());
  await toggle();
  await waitFor(async () => (await alice.textContent('#like-button')) !== null && (await alice.getAttribute('html', 'lang')) === 'en', { message: 'English' });
  assert.match(await alice.textContent('#play-mode'), /^Fast$/);
  assert.match(await alice.textContent('#chat-send'), /Send/);
  await toggle();
  assert.equal(await alice.getAttribute('html', 'lang'), 'zh-CN');
});

test('ending the show tells the viewers; they reconnect by themselves when it starts again', async () => {
  await host.click('#end-show');
  await host.click('#confirm-end-yes');
  await waitFor(() => host.evaluate(() => document.getElementById('studio-status').dataset.state === 'ended'), { message: 'studio ended' });
  for (const page of [alice, bob]) {
    await waitFor(() => page.evaluate(() => document.getElementById('play-status').dataset.status === 'offline'), { timeout: 30000, message: 'viewer sees the show end' });
  }
  const room = await apiCall(server.base, 'GET', '/api/rooms/demo');
  assert.equal(room.live, false);

  await host.click('#go-live');
  await waitFor(() => host.evaluate(() => document.getElementById('studio-status').dataset.state === 'live'), { timeout: 30000, message: 'live again' });
  await alice.waitForSelector('#play-mode[data-mode="webrtc"]', { timeout: 30000 });
  await waitFor(async () => (await framesDecoded(alice)) > 10, { timeout: 30000, message: 'Alice plays the new show without a reload' });
  await host.click('#end-show');
  await host.click('#confirm-end-yes');
  await waitFor(() => host.evaluate(() => document.getElementById('studio-status').dataset.state === 'ended'), { message: 'ended again' });
});

test('replays: the recorded show plays from HLS', async () => {
  // The second show's recording is finalised just after it ends: open the page until it
  // is listed (the page reads the list once).
  let items = [];
  await waitFor(async () => {
    await alice.goto(`${server.base}/#/replay/demo`);
    await alice.reload();
    await alice.waitForSelector('.replay-item', { timeout: 20000 });
    items = await alice.$$('.replay-item');
    return items.length >= 2;
  }, { timeout: 30000, interval: 500, message: "both shows listed" });
  assert.equal(items.length, 2, 'one recording per show');
  await items[items.length - 1].click(); // newest first: the last is the first, longer show
  await waitFor(() => alice.evaluate(() => {
    const v = document.getElementById('replay-video');
    return v.currentTime > 1 && v.videoWidth > 0;
  }), { timeout: 30000, message: 'the recording plays' });
  await alice.screenshot({ path: join(artifacts, 'clients-replay.png') });
  for (const page of [alice, bob, host]) await page.close();
});
