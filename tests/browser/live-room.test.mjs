// Issue 16: what a new user tripped on, each as a regression test in real headless Chromium
// against queqiao in accounts mode (--seed-demo), at a phone viewport (390×844) and on a
// desktop (1366×768). One server and one live show are shared by the tests, in order:
// forms and errors (zh and en), the studio at 1366×768 (controls in view, live timer,
// confirmation before ending), the portrait phone room, viewer counts that agree, join lines
// and recent viewers, the host badge after a reload, ten fast chat messages, logging in from
// the room without losing the stream, the profile card, likes per show, the English pages
// without Chinese left, a loading state on a slow network, and replays with their real size
// and a thumbnail. Screenshots go to artifacts/.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import {
  startAccountsServer, launchIsolatedBrowser, waitFor, artifacts, login, register, apiCall, chineseLeft, sessionPages, chatTexts, DESKTOP,
} from './harness.mjs';

let server;
let chromium;
let accounts;
let studio;
let alice;
let pages;
const userPage = (session, options) => pages.open(session, options);

const shot = (page, name) => page.screenshot({ path: join(artifacts, `live-room-${name}.png`) });
const formError = (page, form) => page.textContent(`${form} .form-error`);
const viewerCount = (page) => page.getAttribute('#viewer-count', 'data-count').then(Number);
const playing = (page) => page.evaluate(() => {
  const v = document.getElementById('live-video');
  return !!v && v.currentTime > 0.3 && !v.paused && v.videoWidth > 0;
});

before(async () => {
  server = await startAccountsServer();
  chromium = await launchIsolatedBrowser();
  pages = sessionPages(chromium);
  const admin = await login(server.base, server.accounts.admin.login, server.accounts.admin.password);
  accounts = {
    admin,
    host: await login(server.base, server.accounts.host.login, server.accounts.host.password),
    alice: await register(server.base, 'alice', 'Alice 小爱'),
    bob: await register(server.base, 'bob', 'Bob 小博'),
    carol: await register(server.base, 'carol', 'Carol 小卡'),
  };
});

after(async () => {
  if (pages) await pages.closeAll();
  if (chromium) await chromium.close();
  if (server) assert.equal(await server.stop(), 0, 'queqiao exits cleanly on SIGTERM');
});

test('forms check before sending and every server error is translated (zh and en)', async () => {
  const page = await userPage(null);
  const apiCalls = [];
  page.on('request', (r) => { if (r.url().includes('/api/auth/')) apiCalls.push(r.url()); });

  // A wrong password says so (it used to say 请先登录).
  await page.goto(`${server.base}/#/login`);
  await page.fill('#login-name', 'alice');
  await page.fill('#login-password', 'not-her-password');
  await page.click('#login-submit');
  await waitFor(async () => (await formError(page, '#login-form')) === '用户名/手机号或密码错误', { message: 'wrong password message' });
  assert.equal(await page.getAttribute('#login-password', 'aria-invalid'), 'true');
  await shot(page, 'login-error');

  // Sign-up checks the fields itself: nothing is sent for a bad username or a short password.
  await page.goto(`${server.base}/#/register`);
  await page.waitForSelector('#register-form');
  const sentBefore = apiCalls.length;
  await page.fill('[name="username"]', '1x');
  await page.fill('[name="password"]', 'long-enough-1');
  await page.fill('[name="nickname"]', '新用户');
  await page.click('#register-form button[type="submit"]');
  assert.match(await formError(page, '#register-form'), /^用户名需 3–32 位/);
  assert.equal(await page.getAttribute('[name="username"]', 'aria-invalid'), 'true');
  await page.fill('[name="username"]', 'newcomer');
  await page.fill('[name="password"]', 'short');
  await page.click('#register-form button[type="submit"]');
  assert.equal(await formError(page, '#register-form'), '密码需 8–128 位');
  assert.equal(apiCalls.length, sentBefore, 'no request for a form that cannot pass');

  // The server's refusals arrive as stable codes and are shown in Chinese.
  await page.fill('[name="username"]', 'Alice');
  await page.fill('[name="password"]', 'long-enough-1');
  await page.click('#register-form button[type="submit"]');
  await waitFor(async () => (await formError(page, '#register-form')) === '该用户名或手机号已被注册', { message: 'taken username' });
  const taken = await fetch(`${server.base}/api/auth/register`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ username: 'alice', password: 'long-enough-1', nickname: 'x' }),
  });
  assert.equal(taken.status, 409);
  assert.equal((await taken.json()).error.code, 'username_taken');
  const wrong = await fetch(`${server.base}/api/auth/login`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ login: 'alice', password: 'nope-nope' }),
  });
  assert.equal(wrong.status, 401);
  assert.equal((await wrong.json()).error.code, 'wrong_password');
  await shot(page, 'register-error');

  // A server-side validation failure is translated by field, not shown in English.
  await page.evaluate(async () => {
    const { errorText } = await import('./js/api.js');
    window.fieldText = errorText({ code: 'validation', field: 'username', message: 'username: must be 3–32 letters' });
  });
  assert.match(await page.evaluate(() => window.fieldText), /^用户名需/);

  await page.goto(`${server.base}/#/room/no-such-room`);
  await page.waitForSelector('.form-error');
  assert.equal(await page.textContent('.form-error'), '直播间不存在或已关闭');

  // The same in English.
  await page.goto(`${server.base}/#/login`);
  await page.click('#lang-toggle');
  await page.fill('#login-name', 'alice');
  await page.fill('#login-password', 'not-her-password');
  await page.click('#login-submit');
  await waitFor(async () => (await formError(page, '#login-form')) === 'Wrong username/phone or password', { message: 'English wrong password' });
  await page.goto(`${server.base}/#/room/no-such-room`);
  await page.waitForSelector('.form-error');
  assert.equal(await page.textContent('.form-error'), 'This room does not exist or was closed');
  await page.close();
});

test('the studio at 1366×768: controls and stats in view, a live timer, and 下播 asks first', async () => {
  studio = await userPage(accounts.host, DESKTOP);
  studio.on('dialog', (dialog) => dialog.accept().catch(() => {}));
  await studio.goto(`${server.base}/#/studio/demo`);
  await waitFor(() => studio.evaluate(() => { const v = document.getElementById('studio-video'); return !!v && v.videoWidth > 0; }), { timeout: 30000, message: 'camera preview' });
  for (const id of ['#go-live', '#end-show', '#studio-stats']) {
    const box = await (await studio.$(id)).boundingBox();
    assert.ok(box && box.y + box.height <= 768, `${id} is above the fold (bottom at ${box && box.y + box.height})`);
  }
  await studio.click('#go-live');
  await waitFor(() => studio.evaluate(() => document.getElementById('studio-status').dataset.state === 'live'), { timeout: 30000, message: 'live' });
  const first = await studio.textContent('#live-timer');
  assert.match(first, /^已直播 \d+:\d\d$/);
  await waitFor(async () => (await studio.textContent('#live-timer')) !== first, { message: 'the timer runs' });

  // 下播 asks; cancelling keeps the show on.
  await studio.click('#end-show');
  await studio.waitForSelector('#confirm-end[open]');
  await shot(studio, 'studio-confirm-end');
  await studio.click('#confirm-end-no');
  assert.equal(await studio.evaluate(() => document.getElementById('studio-status').dataset.state), 'live');
  await shot(studio, 'studio');
});

test('the phone room: portrait full-screen video with chat, likes and gifts over it; no developer text', async () => {
  alice = await userPage(accounts.alice);
  await alice.goto(`${server.base}/#/room/demo`);
  await waitFor(() => playing(alice), { timeout: 40000, message: 'Alice plays' });
  const video = await (await alice.$('#live-video')).boundingBox();
  assert.ok(video.width >= 389 && video.height >= 843, `the video fills the phone screen: ${video.width}×${video.height}`);
  assert.equal(await alice.evaluate(() => getComputedStyle(document.getElementById('live-video')).objectFit), 'cover');
  for (const id of ['#chat-list', '#chat-input', '#like-button', '#gift-button', '#host-chip', '#viewer-count']) {
    const box = await (await alice.$(id)).boundingBox();
    assert.ok(box && box.y >= 0 && box.y + box.height <= 844 && box.x >= 0 && box.x + box.width <= 390, `${id} is over the video`);
  }
  const hostChip = await (await alice.$('#host-chip')).boundingBox();
  assert.ok(hostChip.y < 100, 'the host card is on top');
  const chatBox = await (await alice.$('#chat-input')).boundingBox();
  assert.ok(chatBox.y > 844 * 0.75, 'the chat input is at the bottom');
  const body = await alice.evaluate(() => document.body.innerText);
  assert.doesNotMatch(body, /WHIP|WHEP|WebRTC|LL-HLS|快速测试/, 'no developer text on the page');
  assert.equal(await alice.textContent('#play-mode'), '极速');
  await shot(alice, 'phone-room');

  // The room list: 正在直播 heads it only with a live room, no developer footer.
  const list = await userPage(null);
  await list.goto(`${server.base}/`);
  await list.waitForSelector('.room-card[data-live="1"]');
  assert.equal(await list.textContent('#rooms-title'), '正在直播');
  assert.doesNotMatch(await list.evaluate(() => document.body.innerText), /WHIP|WHEP|快速测试/);
  await shot(list, 'phone-room-list');
  await list.close();
});

test('viewer counts agree (viewer, studio, room list, API) and a join line greets who came in', async () => {
  const agree = async (n) => waitFor(async () => {
    const room = await apiCall(server.base, 'GET', '/api/rooms/demo');
    const values = [await viewerCount(alice), Number(await studio.textContent('#stat-viewers')), room.viewers];
    return values.every((v) => v === n) ? values : null;
  }, { timeout: 30000, message: `every count says ${n}` });
  await agree(1);

  const bob = await userPage(accounts.bob);
  await bob.goto(`${server.base}/#/room/demo`);
  await waitFor(() => playing(bob), { timeout: 40000, message: 'Bob plays' });
  await waitFor(async () => (await alice.$$eval('#chat-list .chat-join', (els) => els.map((e) => e.textContent))).includes('Bob 小博 来了'), { message: 'Alice sees Bob come in' });
  await waitFor(async () => (await studio.$$eval('#chat-list .chat-join', (els) => els.map((e) => e.textContent))).includes('Bob 小博 来了'), { message: 'the host sees Bob come in' });
  await alice.waitForSelector(`#recent-viewers .recent-viewer[data-user="${accounts.bob.user.id}"]`);
  await agree(2);
  await shot(alice, 'phone-room-join');
  // Leaving the room (the view stops its player) ends Bob's session at once.
  await bob.goto(`${server.base}/#/`);
  await agree(1);
  await bob.close();
});

test('after a reload the host keeps the 主播 badge and the studio offers no tools on her own lines', async () => {
  await studio.fill('#chat-input', '欢迎大家来到周末相亲局');
  await studio.click('#chat-send');
  await waitFor(async () => (await chatTexts(alice)).includes('欢迎大家来到周末相亲局'), { message: 'Alice gets the host line' });
  await alice.fill('#chat-input', '主播好');
  await alice.click('#chat-send');
  await waitFor(async () => (await chatTexts(studio)).includes('主播好'), { message: 'the host gets Alice' });

  const reader = await userPage(accounts.carol);
  await reader.goto(`${server.base}/#/room/demo`);
  const hostLine = async (page) => page.evaluate(() => {
    const line = [...document.querySelectorAll('#chat-list .chat-msg')].find((li) => li.textContent.includes('欢迎大家来到周末相亲局'));
    return line ? { badge: !!line.querySelector('.badge-host'), tools: !!line.querySelector('.chat-tools') } : null;
  });
  const fromHistory = await waitFor(() => hostLine(reader), { message: 'history shows the host line' });
  assert.equal(fromHistory.badge, true, 'the host line from history carries 主播');
  await reader.close();

  // The studio opened afresh (as after a reload) draws the history with roles.
  const again = await userPage(accounts.host, DESKTOP);
  await again.goto(`${server.base}/#/studio/demo`);
  const own = await waitFor(() => hostLine(again), { message: 'the studio shows its history' });
  assert.deepEqual(own, { badge: true, tools: false }, 'no 禁言/删除 on the host\'s own message');
  const aliceLine = await waitFor(() => again.evaluate(() => {
    const line = [...document.querySelectorAll('#chat-list .chat-msg')].find((li) => li.textContent.includes('主播好'));
    return line ? !!line.querySelector('.chat-tools') : null;
  }), { message: 'Alice line in the studio' });
  assert.equal(aliceLine, true, 'moderation stays available on viewers\' messages');
  await shot(again, 'studio-history');
  await again.goto(`${server.base}/#/`);
  await again.close();
});

test('ten fast chat messages all arrive, in order; none vanishes silently', async () => {
  await waitFor(() => alice.evaluate(() => window.queqiao.watch.link.connected), { message: 'Alice connected' });
  const lines = Array.from({ length: 10 }, (_, i) => `快速消息 ${i + 1}`);
  for (const line of lines) {
    await alice.fill('#chat-input', line);
    await alice.press('#chat-input', 'Enter');
  }
  assert.equal(await alice.inputValue('#chat-input'), '');
  const pendingStates = await alice.$$eval('#chat-list .chat-pending', (els) => els.map((e) => e.dataset.state));
  assert.ok(pendingStates.length > 0, 'messages on their way are shown');
  const seen = await waitFor(async () => {
    const texts = (await chatTexts(studio)).filter((t) => t.startsWith('快速消息'));
    return texts.length >= 10 ? texts : null;
  }, { timeout: 40000, message: 'all ten reach the host' });
  assert.deepEqual(seen, lines, 'in the order typed');
  await waitFor(async () => (await alice.$$('#chat-list .chat-pending')).length === 0, { message: 'every message confirmed' });
  await shot(alice, 'phone-room-chat');
});

test('an anonymous viewer who types logs in from a sheet, keeps the stream and the text', async () => {
  const guest = await userPage(null);
  await guest.goto(`${server.base}/#/room/demo`);
  await waitFor(() => playing(guest), { timeout: 40000, message: 'the guest plays' });
  await guest.fill('#chat-input', '我也想说话');
  await guest.press('#chat-input', 'Enter');
  await guest.waitForSelector('#login-sheet[open]');
  assert.match(await guest.evaluate(() => location.hash), /^#\/room\/demo/, 'still in the room');
  assert.equal(await guest.inputValue('#chat-input'), '我也想说话', 'the text is kept');
  await shot(guest, 'phone-login-sheet');
  await guest.fill('#sheet-login-name', 'carol');
  await guest.fill('#sheet-login-password', 'correct-horse-1');
  await guest.click('#sheet-login-submit');
  await waitFor(async () => (await chatTexts(studio)).includes('我也想说话'), { message: 'the message is sent after logging in' });
  assert.ok(await playing(guest), 'the stream never stopped');
  await guest.close();
});

test('the host chip and the names in the chat open the profile card', async () => {
  await alice.click('#host-chip');
  await alice.waitForSelector('#profile-card[open] .profile-card-name');
  assert.equal(await alice.textContent('#profile-card .profile-card-name'), '红娘小美');
  await shot(alice, 'phone-profile-card');
  await alice.click('#profile-card .icon-button');
  await waitFor(() => alice.evaluate(() => !document.getElementById('profile-card').open), { message: 'card closed' });
  await alice.click(`#chat-list .chat-name[data-user="${accounts.carol.user.id}"] >> nth=-1`);
  await waitFor(async () => (await alice.textContent('#profile-card .profile-card-name').catch(() => null)) === 'Carol 小卡', { message: "Carol's card from her chat line" });
  await alice.click('#profile-card .icon-button');
});

test('likes count per show: the next show starts from zero', async () => {
  for (let i = 0; i < 3; i++) await alice.click('#like-button');
  await waitFor(async () => Number(await studio.textContent('#stat-likes')) >= 3, { message: 'likes reach the host' });
  await studio.click('#end-show');
  await studio.click('#confirm-end-yes');
  await waitFor(() => studio.evaluate(() => document.getElementById('studio-status').dataset.state === 'ended'), { message: 'ended' });
  await waitFor(async () => (await viewerCount(alice)) === 0, { timeout: 30000, message: 'no viewer count after the show' });
  assert.equal(await studio.textContent('#stat-viewers'), '0');
  await studio.click('#go-live');
  await waitFor(() => studio.evaluate(() => document.getElementById('studio-status').dataset.state === 'live'), { timeout: 30000, message: 'next show' });
  await waitFor(async () => (await studio.textContent('#stat-likes')) === '0', { message: 'studio likes reset' });
  await waitFor(async () => (await alice.getAttribute('#like-count', 'data-count')) === '0', { message: 'viewer likes reset' });
});

test('in English no Chinese is left on any page (user content aside)', async () => {
  const page = await userPage(accounts.alice, DESKTOP);
  await page.goto(`${server.base}/`);
  await page.waitForSelector('.room-card');
  await page.click('#lang-toggle');
  await waitFor(async () => (await page.getAttribute('html', 'lang')) === 'en', { message: 'English' });
  const check = async (hash, ready, name) => {
    await page.goto(`${server.base}/${hash}`);
    await page.waitForSelector(ready);
    await page.waitForTimeout(300);
    const left = await chineseLeft(page);
    await shot(page, `en-${name}`);
    assert.deepEqual(left, [], `${name}: Chinese left in English mode`);
  };
  await check('#/', '.room-card', 'rooms');
  await check('#/room/demo', '#chat-list .chat-msg', 'room');
  await check('#/me', '#wallet-coins', 'me');
  await check('#/register', '#register-form', 'register');
  await check('#/replay/demo', '.replay-item', 'replays');
  // Lines drawn in Chinese before the toggle are redrawn too.
  await alice.click('#gift-button');
  await alice.waitForSelector('.gift-option');
  await alice.click('#gift-dialog .icon-button');
  await alice.evaluate(async () => { const i18n = await import('./js/i18n.js'); i18n.setLang('en'); });
  const leftInRoom = await chineseLeft(alice);
  assert.deepEqual(leftInRoom, [], 'the phone room after switching');
  assert.match(await alice.textContent('#gift-dialog'), /Rose/);
  assert.match(await alice.textContent('#gift-dialog'), /1 coin\b/);
  await alice.evaluate(async () => { const i18n = await import('./js/i18n.js'); i18n.setLang('zh'); });
  const studioPage = await userPage(accounts.host, DESKTOP);
  await studioPage.goto(`${server.base}/#/studio`);
  await studioPage.waitForSelector('#my-rooms .my-room');
  await studioPage.click('#lang-toggle');
  await waitFor(async () => (await studioPage.getAttribute('html', 'lang')) === 'en', { message: 'studio English' });
  assert.deepEqual(await chineseLeft(studioPage), [], 'studio home');
  await studioPage.goto(`${server.base}/#/studio/demo`);
  await studioPage.waitForSelector('#studio-stats');
  await studioPage.waitForSelector('#chat-list .chat-msg');
  assert.deepEqual(await chineseLeft(studioPage), [], 'studio room');
  await shot(studioPage, 'en-studio');
  await studioPage.goto(`${server.base}/#/`);
  await studioPage.close();
  await page.close();
});

test('a slow network shows a loading state, never a blank page', async () => {
  const page = await userPage(null);
  await page.route('**/api/rooms**', async (route) => { await new Promise((r) => setTimeout(r, 2500)); await route.continue(); });
  await page.goto(`${server.base}/#/room/demo`, { waitUntil: 'domcontentloaded' });
  await page.waitForSelector('#view .loading', { timeout: 2000 });
  assert.match(await page.textContent('#view .loading'), /加载中/);
  await shot(page, 'phone-loading');
  await page.waitForSelector('#live-video', { timeout: 20000 });
  await page.close();
});

test('replays report the real picture size and have thumbnails', async () => {
  // The show that is on now ramps up from a small picture: end it after the camera size is reached.
  const size = await waitFor(() => studio.evaluate(async () => {
    const { outboundVideoStats } = await import('./whip.js');
    const s = await outboundVideoStats(window.queqiao.studio.publisher.pc);
    return s && s.frameWidth >= 640 ? { w: s.frameWidth, h: s.frameHeight } : null;
  }), { timeout: 40000, message: 'the encoder reaches the camera size' });
  await new Promise((r) => setTimeout(r, 3000));
  await studio.click('#end-show');
  await studio.click('#confirm-end-yes');
  const recording = await waitFor(async () => {
    const list = await apiCall(server.base, 'GET', '/api/rooms/demo/recordings');
    const done = list.filter((r) => !r.recording && r.segments > 0);
    return done.length >= 2 ? done[0] : null;
  }, { timeout: 30000, message: 'the last recording is finished' });
  assert.ok(recording.width >= size.w && recording.height >= size.h,
    `the recording reports ${recording.width}×${recording.height}, the encoder sent ${size.w}×${size.h}`);
  await alice.goto(`${server.base}/#/replay/demo`);
  await alice.waitForSelector('.replay-item');
  assert.match(await alice.textContent('.replay-item .replay-size'), new RegExp(`${recording.width}×${recording.height}`));
  await waitFor(() => alice.evaluate(() => {
    const thumb = document.querySelector('.replay-item .replay-thumb');
    return thumb && thumb.readyState >= 2 && thumb.videoWidth > 0;
  }), { timeout: 30000, message: 'a thumbnail frame' });
  await shot(alice, 'phone-replays');
});
