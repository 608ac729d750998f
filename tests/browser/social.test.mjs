// Issue 16, the social and money side of the web demo, end to end in headless Chromium at a
// phone viewport (390×844) against queqiao in accounts mode with the sandbox payment
// provider. One server for the file; the tests run in order and build on each other:
// recharge → gift → 贡献榜 (live in a second viewer's room); the profile card → 关注 → the host
// goes live → an in-app notice and "my follows"; uploads (a PNG drawn in the test) for the
// avatar and photos, and the dating fields; the share sheet (link, QR, poster) and the link
// opening the room; 拉黑 hiding a user's chat; the studio's 在线观众 list; 预约 a scheduled
// show; and the new pages in English with no Chinese left. Screenshots go to artifacts/.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import {
  startAccountsServer, launchIsolatedBrowser, waitFor, artifacts, login, register, apiCall, chineseLeft, sessionPages, chatTexts, DESKTOP, PHONE, publishFromPage,
} from './harness.mjs';

let server;
let chromium;
let accounts;
let alice;
let publisher;
let pages;
const userPage = (session, options) => pages.open(session, options);

const shot = (page, name) => page.screenshot({ path: join(artifacts, `social-${name}.png`) });

/** A room WebSocket as `token` (opened in a helper page) that says `text`, closed once stored. */
let speaker = null;
async function say(token, text) {
  if (!speaker) { speaker = await userPage(null); await speaker.goto(`${server.base}/healthz`); }
  await speaker.evaluate(({ url, message }) => new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.onopen = () => { ws.send(JSON.stringify({ type: 'chat', text: message })); resolve(); };
    ws.onerror = () => reject(new Error('websocket'));
    setTimeout(() => ws.close(), 3000);
  }), { url: `${server.base.replace('http', 'ws')}/ws/rooms/demo?token=${token}`, message: text });
  await waitFor(async () => (await apiCall(server.base, 'GET', '/api/rooms/demo/chat')).some((m) => m.text === text), { message: `"${text}" stored` });
}

before(async () => {
  server = await startAccountsServer(['--payment-sandbox']);
  chromium = await launchIsolatedBrowser();
  pages = sessionPages(chromium);
  accounts = {
    host: await login(server.base, server.accounts.host.login, server.accounts.host.password),
    alice: await register(server.base, 'alice', 'Alice 小爱'),
    bob: await register(server.base, 'bob', 'Bob 小博'),
  };
  await apiCall(server.base, 'PATCH', '/api/me', {
    city: '杭州', bio: '喜欢旅行和做饭', gender: 'female', birth_year: 1995,
    height_cm: 165, education: 'bachelor', partner_preferences: '30 岁左右，性格温和，同城优先',
  }, accounts.host.token);
  console.log(`screenshots: ${artifacts}`);
});

after(async () => {
  if (pages) await pages.closeAll();
  if (chromium) await chromium.close();
  if (server) assert.equal(await server.stop(), 0, 'queqiao exits cleanly on SIGTERM');
});

test('金币不足 leads to the recharge page; a sandbox recharge pays once; the gift then goes out and tops the 贡献榜', async () => {
  alice = await userPage(accounts.alice);
  const bob = await userPage(accounts.bob);
  await bob.goto(`${server.base}/#/room/demo`);
  await bob.waitForSelector('#leaderboard-chip');
  await alice.goto(`${server.base}/#/room/demo`);
  await alice.click('#gift-button');
  await alice.waitForSelector('#gift-dialog[open]');
  await waitFor(async () => (await alice.getAttribute('#gift-balance', 'data-coins')) === '0', { message: 'balance 0' });
  await alice.click('.gift-option[data-gift="rose"]');
  await alice.click('#gift-send');
  await alice.waitForSelector('#gift-wallet-link', { timeout: 20000 });
  assert.match(await alice.textContent('#gift-dialog .form-error'), /金币不足/);
  await shot(alice, 'gift-insufficient');
  await alice.click('#gift-wallet-link');

  await alice.waitForSelector('.package-option');
  assert.equal(await alice.textContent('#recharge-balance'), '0');
  assert.match(await alice.textContent('#recharge-provider'), /沙箱/);
  const offered = await alice.$$eval('.package-option', (els) => els.map((e) => Number(e.dataset.coins)));
  const packages = await apiCall(server.base, 'GET', '/api/wallet/packages');
  assert.deepEqual(offered, packages.packages.map((p) => p.coins), 'the packages of the server');
  assert.match(await alice.textContent('.package-option[data-coins="60"]'), /60 金币.*¥6/);
  await alice.click('.package-option[data-coins="60"]');
  await alice.click('#recharge-pay');
  await waitFor(async () => (await alice.textContent('#recharge-balance')) === '60', { message: 'balance 60' });
  await alice.waitForSelector('#recharge-history li[data-order]');
  const orders = await apiCall(server.base, 'GET', '/api/me/recharges', undefined, accounts.alice.token);
  assert.equal(orders.length, 1, 'one order');
  assert.equal(orders[0].provider, 'sandbox');
  assert.ok(orders[0].idempotency_key, 'the page sent an idempotency key');
  await shot(alice, 'recharge');

  // Back to the room: the gift goes out now.
  await alice.click('#recharge-back');
  await alice.waitForSelector('#gift-button');
  await alice.click('#gift-button');
  await waitFor(async () => (await alice.getAttribute('#gift-balance', 'data-coins')) === '60', { message: 'balance 60 in the panel' });
  await alice.click('.gift-option[data-gift="rose"]');
  await alice.click('#gift-send');
  await waitFor(async () => (await apiCall(server.base, 'GET', '/api/me/wallet', undefined, accounts.alice.token)).coins < 60, { timeout: 20000, message: 'gift paid' });
  const board = await apiCall(server.base, 'GET', '/api/rooms/demo/leaderboard');
  assert.equal(board[0].nickname, 'Alice 小爱');

  // Bob's room updates by itself from the gift event.
  await waitFor(() => bob.evaluate(() => document.getElementById('leaderboard-chip').dataset.count === '1'), { message: "Bob's 贡献榜 chip updates live" });
  await bob.click('#leaderboard-chip');
  await bob.waitForSelector('#leaderboard[open] .leaderboard-row');
  assert.match(await bob.textContent('.leaderboard-row'), /Alice 小爱.*\d+ 金币/);
  await shot(bob, 'leaderboard');
  await bob.close();
});

test('the host chip opens her profile card (dating fields); 关注; she goes live → an in-app notice; my follows, live first', async () => {
  await alice.goto(`${server.base}/#/room/demo`);
  await alice.click('#host-chip');
  await alice.waitForSelector('#card-follow');
  const facts = await alice.textContent('#card-facts');
  assert.match(facts, /女 · \d+ 岁 · 165 cm · 本科/);
  assert.match(facts, /杭州/);
  assert.match(await alice.textContent('#card-preferences'), /择偶条件.*30 岁左右/);
  assert.equal(await alice.getAttribute('#card-follow', 'data-following'), '0');
  await shot(alice, 'profile-card');
  await alice.click('#card-follow');
  await waitFor(async () => (await alice.getAttribute('#card-follow', 'data-following')) === '1', { message: 'followed' });
  assert.equal(await alice.textContent('#card-follow'), '取消关注');
  assert.equal(await alice.textContent('#card-followers'), '1 人关注');
  const follows = await apiCall(server.base, 'GET', '/api/me/follows', undefined, accounts.alice.token);
  assert.deepEqual(follows.map((f) => f.nickname), ['红娘小美']);

  // Alice waits on the room list; the host goes live.
  await alice.goto(`${server.base}/#/`);
  await alice.waitForSelector('.room-card');
  publisher = await userPage(null, DESKTOP);
  await publishFromPage(publisher, server.base, 'demo', accounts.host.token);
  await alice.waitForSelector('.toast-notice .notice-link', { timeout: 30000 });
  assert.match(await alice.textContent('.toast-notice'), /红娘小美.*开播了/);
  await alice.waitForSelector('#notice-badge');
  assert.equal(await alice.textContent('#notice-badge'), '1');
  await shot(alice, 'notice');

  await alice.click('#notice-badge');
  await alice.waitForSelector('#follow-list .follow-row');
  assert.equal(await alice.getAttribute('#follow-list .follow-row', 'data-live'), '1', 'the live host first');
  assert.equal(await alice.$('#notice-badge'), null, 'seen: the badge is gone');
  await shot(alice, 'follows');
  await alice.click('#follow-list .follow-row a[href="#/room/demo"]');
  await alice.waitForSelector('#host-chip');
});

test('uploads: the avatar and photos are PNGs drawn here, sent as images and shown; height, education and preferences saved', async () => {
  await alice.goto(`${server.base}/#/me`);
  await alice.waitForSelector('#avatar-upload');
  const png = async (colour) => Buffer.from((await alice.evaluate((c) => {
    const canvas = document.createElement('canvas');
    canvas.width = 64;
    canvas.height = 64;
    const ctx = canvas.getContext('2d');
    ctx.fillStyle = c;
    ctx.fillRect(0, 0, 64, 64);
    return canvas.toDataURL('image/png');
  }, colour)).split(',')[1], 'base64');
  const uploads = [];
  alice.on('request', (r) => { if (r.url().includes('/api/uploads')) uploads.push(`${r.method()} ${new URL(r.url()).search} ${r.headers()['content-type']}`); });

  // A file that is not an image is refused before sending.
  await alice.setInputFiles('#avatar-upload', { name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('hello') });
  await waitFor(async () => /PNG/.test(await alice.textContent('#avatar-upload-status')), { message: 'type refused' });
  assert.equal(uploads.length, 0, 'nothing sent for a text file');

  await alice.setInputFiles('#avatar-upload', { name: 'me.png', mimeType: 'image/png', buffer: await png('#e8457a') });
  await alice.waitForSelector('#avatar-upload-preview');
  const avatarUrl = await alice.getAttribute('#avatar-upload-preview', 'data-url');
  assert.deepEqual(uploads, ['POST ?kind=avatar image/png']);
  await alice.setInputFiles('#photo-grid-input', [
    { name: 'p1.png', mimeType: 'image/png', buffer: await png('#6d4aff') },
    { name: 'p2.png', mimeType: 'image/png', buffer: await png('#1c7a44') },
  ]);
  await waitFor(async () => (await alice.$$('#photo-grid .photo-cell')).length === 2, { message: 'two photos' });
  await alice.fill('[name="height_cm"]', '168');
  await alice.selectOption('[name="education"]', 'master');
  await alice.fill('[name="partner_preferences"]', '真诚、爱笑');
  await shot(alice, 'profile-edit');
  // Wait for the save itself: a toast of an earlier test may still be on this page.
  const saved = alice.waitForResponse((r) => new URL(r.url()).pathname === '/api/me' && r.request().method() === 'PATCH');
  await alice.click('#profile-form button[type="submit"]');
  assert.equal((await saved).status(), 200);

  const profile = await apiCall(server.base, 'GET', `/api/users/${accounts.alice.user.id}`);
  assert.equal(profile.avatar_url, avatarUrl);
  assert.equal(profile.height_cm, 168);
  assert.equal(profile.education, 'master');
  assert.equal(profile.partner_preferences, '真诚、爱笑');
  assert.equal(profile.photos.length, 2);
  const image = await fetch(new URL(avatarUrl, server.base));
  assert.equal(image.status, 200);
  assert.match(image.headers.get('content-type'), /^image\//);
  // The head of the page shows the uploaded avatar, and it loaded.
  await waitFor(() => alice.evaluate((url) => {
    const img = document.querySelector('.profile-head img.avatar');
    return !!img && img.src === new URL(url, location.href).href && img.complete && img.naturalWidth > 0;
  }, avatarUrl), { message: 'avatar shown' });
});

test('the studio uploads a room cover as an image; the room list shows it', async () => {
  const studio = await userPage(accounts.host, DESKTOP);
  await studio.goto(`${server.base}/#/studio/demo`);
  await studio.waitForSelector('details.edit-room');
  await studio.click('details.edit-room summary');
  await studio.waitForSelector('#cover-upload', { state: 'attached' });
  const png = Buffer.from((await studio.evaluate(() => {
    const canvas = document.createElement('canvas');
    canvas.width = 160;
    canvas.height = 90;
    const ctx = canvas.getContext('2d');
    ctx.fillStyle = '#ff4f7b';
    ctx.fillRect(0, 0, 160, 90);
    return canvas.toDataURL('image/png');
  })).split(',')[1], 'base64');
  await studio.setInputFiles('#cover-upload', { name: 'cover.png', mimeType: 'image/png', buffer: png });
  await studio.waitForSelector('#cover-upload-preview');
  const coverUrl = await studio.getAttribute('#cover-upload-preview', 'data-url');
  assert.match(coverUrl, /^\/uploads\/[0-9a-f]{32}\.jpg$/);
  const saved = studio.waitForResponse((r) => new URL(r.url()).pathname === '/api/rooms/demo' && r.request().method() === 'PATCH');
  await studio.click('#room-edit-form button[type="submit"]');
  assert.equal((await saved).status(), 200);
  const stored = await apiCall(server.base, 'GET', '/api/rooms/demo');
  assert.equal(stored.cover_url, coverUrl);
  await shot(studio, 'studio-cover');
  await studio.close();

  const list = await userPage(null, PHONE);
  await list.goto(`${server.base}/#/`);
  await waitFor(() => list.evaluate((url) => {
    const img = document.querySelector('.room-card[data-room="demo"] img.card-cover');
    return !!img && img.src === new URL(url, location.href).href && img.complete && img.naturalWidth > 0;
  }, coverUrl), { message: 'the cover is shown on the room card' });
  await shot(list, 'rooms-cover');
  await list.close();
});

test('share: link and QR code from the server, a poster drawn on a canvas; the link opens the room', async () => {
  await alice.goto(`${server.base}/#/room/demo`);
  await alice.click('#share-button');
  await alice.waitForSelector('#share-sheet[open]');
  await waitFor(async () => (await alice.inputValue('#share-link')).length > 0, { message: 'share link' });
  const share = await apiCall(server.base, 'GET', '/api/rooms/demo/share');
  const link = await alice.inputValue('#share-link');
  assert.equal(link, share.web_url);
  await waitFor(() => alice.evaluate(() => { const img = document.getElementById('share-qr'); return img.complete && img.naturalWidth > 0; }), { message: 'QR code loaded' });
  await alice.click('#share-make-poster');
  await alice.waitForSelector('#share-poster[data-drawn="1"]');
  await alice.waitForSelector('#share-save:not([hidden])');
  assert.match(await alice.getAttribute('#share-save', 'href'), /^data:image\/png;base64,/);
  await shot(alice, 'share');
  // The sheet's ✕ closes it (the room stays as it was).
  await alice.click('#share-sheet .icon-button');
  await alice.waitForSelector('#share-sheet', { state: 'hidden' });

  const visitor = await userPage(null);
  await visitor.goto(link);
  await visitor.waitForSelector('#host-chip');
  assert.equal(await visitor.evaluate(() => location.hash), '#/room/demo');
  await visitor.close();
});

test('拉黑 from a name in the chat hides that user\'s lines, earlier and later, for me only', async () => {
  await say(accounts.bob.token, 'Bob 在拉黑之前说的话');
  await alice.goto(`${server.base}/#/room/demo`);
  await waitFor(async () => (await chatTexts(alice)).includes('Bob 在拉黑之前说的话'), { message: "Bob's line" });
  await alice.click(`#chat-list .chat-name[data-user="${accounts.bob.user.id}"]`);
  await alice.waitForSelector('#card-block');
  await alice.click('#card-block');
  await waitFor(async () => (await alice.getAttribute('#card-block', 'data-blocked')) === '1', { message: 'blocked' });
  assert.equal((await chatTexts(alice)).includes('Bob 在拉黑之前说的话'), false, 'his earlier line is gone');
  await alice.keyboard.press('Escape');

  const carol = await register(server.base, 'carol', 'Carol 小卡');
  const other = await userPage(carol);
  await other.goto(`${server.base}/#/room/demo`);
  await other.waitForSelector('#chat-list');
  await say(accounts.bob.token, 'Bob 拉黑之后的话');
  await say(accounts.host.token, '主播照常可见');
  await waitFor(async () => (await chatTexts(alice)).includes('主播照常可见'), { message: "the host's line for Alice" });
  assert.equal((await chatTexts(alice)).includes('Bob 拉黑之后的话'), false, 'Alice does not see Bob');
  await waitFor(async () => (await chatTexts(other)).includes('Bob 拉黑之后的话'), { message: 'Carol still sees Bob' });
  await shot(alice, 'blocked');

  // After a reload, the block still holds.
  await alice.reload();
  await waitFor(async () => (await chatTexts(alice)).includes('主播照常可见'), { message: 'history after reload' });
  assert.equal((await chatTexts(alice)).some((t) => t.startsWith('Bob ')), false, 'no Bob line after a reload');
  await other.close();
});

test('the studio lists 在线观众 and schedules a show; viewers reserve it (预约) from the host card', async () => {
  const studio = await userPage(accounts.host, DESKTOP);
  studio.on('dialog', (dialog) => dialog.accept().catch(() => {}));
  await studio.goto(`${server.base}/#/studio/demo`);
  await studio.waitForSelector('#viewer-list');
  await waitFor(async () => (await studio.$$eval('#viewer-list .viewer-row', (els) => els.map((e) => Number(e.dataset.user)))).includes(accounts.alice.user.id),
    { message: 'Alice in the viewers list' });
  assert.match(await studio.textContent('#viewer-list'), /Alice 小爱/);
  // The count agrees with the API (re-read on every presence change).
  await waitFor(async () => {
    const viewers = await apiCall(server.base, 'GET', '/api/rooms/demo/viewers', undefined, accounts.host.token);
    return (await studio.getAttribute('#viewer-summary', 'data-count')) === String(viewers.count);
  }, { message: 'the studio count is the API count' });

  // A show tomorrow at 20:00 (local time, as the input takes it).
  const tomorrow = new Date(Date.now() + 24 * 3600 * 1000);
  const pad = (n) => String(n).padStart(2, '0');
  const local = `${tomorrow.getFullYear()}-${pad(tomorrow.getMonth() + 1)}-${pad(tomorrow.getDate())}T20:00`;
  await studio.fill('#schedule-when', local);
  await studio.fill('#schedule-title', '周末相亲专场');
  await studio.click('#schedule-add');
  await studio.waitForSelector('#schedule-list .schedule-item');
  assert.match(await studio.textContent('#schedule-list'), /周末相亲专场/);
  await shot(studio, 'studio-viewers-schedule');

  await alice.goto(`${server.base}/#/room/demo`);
  await alice.click('#host-chip');
  await alice.waitForSelector('#card-schedules .schedule-reserve');
  await alice.click('#card-schedules .schedule-reserve');
  await waitFor(async () => (await alice.getAttribute('#card-schedules .schedule-item', 'data-reserved')) === '1', { message: 'reserved' });
  const mine = await apiCall(server.base, 'GET', '/api/me/reservations', undefined, accounts.alice.token);
  assert.equal(mine.length, 1);
  assert.equal(mine[0].title, '周末相亲专场');
  await shot(alice, 'reserved');
  await studio.reload();
  await waitFor(async () => /1 人预约/.test(await studio.textContent('#schedule-list')), { message: 'the studio counts the reservation' });
  await alice.goto(`${server.base}/#/follows`);
  await alice.waitForSelector('#my-reservations .schedule-item');
  assert.match(await alice.textContent('#my-reservations'), /周末相亲专场/);
  await studio.close();
});

test('an offline room shows the host\'s next scheduled show; 预约 from there (logging in first when anonymous)', async () => {
  const room = await apiCall(server.base, 'POST', '/api/rooms', { title: '晚间交友' }, accounts.host.token);
  const startsAt = Math.floor(Date.now() / 1000) + 2 * 24 * 3600;
  await apiCall(server.base, 'POST', `/api/rooms/${room.id}/schedule`, { starts_at: startsAt + 3600, title: '后面那场' }, accounts.host.token);
  const next = await apiCall(server.base, 'POST', `/api/rooms/${room.id}/schedule`, { starts_at: startsAt, title: '单身派对' }, accounts.host.token);

  // Anonymous: the earliest upcoming show is on the offline stage; 预约 asks to log in.
  const anon = await userPage(null, PHONE);
  await anon.goto(`${server.base}/#/room/${room.id}`);
  await anon.waitForSelector('#play-status[data-status="offline"] #next-show');
  assert.equal(await anon.getAttribute('#next-show', 'data-schedule'), String(next.id));
  assert.match(await anon.textContent('#next-show'), /单身派对/);
  assert.doesNotMatch(await anon.textContent('#next-show'), /后面那场/);
  await shot(anon, 'offline-next-show');
  await anon.click('#next-show-reserve');
  await anon.waitForSelector('#login-sheet[open]');
  await anon.close();

  // Bob, logged in: 预约 and 取消预约 from the stage, stored for him.
  const bob = await userPage(accounts.bob, PHONE);
  await bob.goto(`${server.base}/#/room/${room.id}`);
  await bob.waitForSelector('#next-show[data-reserved="0"]');
  await bob.click('#next-show-reserve');
  await bob.waitForSelector('#next-show[data-reserved="1"]');
  let mine = await apiCall(server.base, 'GET', '/api/me/reservations', undefined, accounts.bob.token);
  assert.deepEqual(mine.map((r) => r.id), [next.id]);
  await bob.reload();
  await bob.waitForSelector('#next-show[data-reserved="1"]');
  assert.match(await bob.textContent('#next-show'), /1 人预约/);
  await bob.click('#next-show-reserve');
  await bob.waitForSelector('#next-show[data-reserved="0"]');
  mine = await apiCall(server.base, 'GET', '/api/me/reservations', undefined, accounts.bob.token);
  assert.deepEqual(mine, []);
  await bob.close();
});

test('in English no Chinese is left on the new pages and sheets (user content aside)', async () => {
  await alice.goto(`${server.base}/#/wallet`);
  await alice.click('#lang-toggle');
  const check = async (what) => {
    // Toasts shown before the switch are transient and stay in their language.
    await alice.evaluate(() => document.getElementById('toasts').replaceChildren());
    const left = await chineseLeft(alice);
    assert.deepEqual(left, [], `${what}: ${left.join(' | ')}`);
  };
  await alice.waitForSelector('.package-option');
  await check('recharge');
  await shot(alice, 'en-recharge');
  await alice.goto(`${server.base}/#/follows`);
  await alice.waitForSelector('#follow-list .follow-row');
  await check('follows');
  await alice.goto(`${server.base}/#/me`);
  await alice.waitForSelector('#photo-grid');
  await check('profile');
  await alice.goto(`${server.base}/#/room/demo`);
  await alice.waitForSelector('#leaderboard-chip');
  await check('room');
  await alice.click('#host-chip');
  await alice.waitForSelector('#card-follow');
  await check('profile card');
  await shot(alice, 'en-profile-card');
  await alice.keyboard.press('Escape');
  await alice.click('#leaderboard-chip');
  await alice.waitForSelector('#leaderboard[open] .leaderboard-row');
  await check('leaderboard');
  await alice.keyboard.press('Escape');
  await alice.click('#share-button');
  await alice.waitForSelector('#share-sheet[open]');
  await check('share');
  await alice.keyboard.press('Escape');

  const studio = await userPage(accounts.host, DESKTOP);
  await studio.addInitScript(() => localStorage.setItem('queqiao.lang', 'en'));
  studio.on('dialog', (dialog) => dialog.accept().catch(() => {}));
  await studio.goto(`${server.base}/#/studio/demo`);
  await studio.waitForSelector('#schedule-list .schedule-item');
  const left = await chineseLeft(studio);
  assert.deepEqual(left, [], `studio: ${left.join(' | ')}`);
  await shot(studio, 'en-studio');
  await studio.close();
  if (publisher) await publisher.close();
});
