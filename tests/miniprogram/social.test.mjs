// Issue 16 in the mini-programs: the profile card (资料卡) from the host's card and from chat
// names with the dating fields, 关注/取消关注, 拉黑 hiding that user's chat, the sandbox
// recharge page → a gift → the 贡献榜, and sharing (onShareAppMessage / onShareTimeline on
// WeChat, the share panel on Alipay). One real queqiao (accounts mode, --payment-sandbox);
// the room needs no live show for any of this, so no browser is started.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { startAccountsServer, login, register, apiCall } from '../browser/harness.mjs';
import {
  configure, renderWechatPage, loadAlipayPage, alipayInstance, unloadPages, clearStorage, calls, waitFor, wxApi, myApi,
} from './env.mjs';

let server;
let host;
let dora;
let eve;
const socketUrl = (token) => `${server.base.replace('http', 'ws')}/ws/rooms/demo?token=${token}`;

before(async () => {
  server = await startAccountsServer(['--payment-sandbox']);
  configure(server.base, { livePlayer: true });
  host = await login(server.base, server.accounts.host.login, server.accounts.host.password);
  dora = await register(server.base, 'dora', 'Dora 小朵');
  eve = await register(server.base, 'eve', 'Eve 小伊');
  // The host's dating profile.
  await apiCall(server.base, 'PATCH', '/api/me', {
    city: '杭州', bio: '喜欢旅行和做饭', gender: 'female', birth_year: 1995,
    height_cm: 165, education: 'bachelor', partner_preferences: '30 岁左右，性格温和，同城优先',
  }, host.token);
});

after(async () => {
  unloadPages();
  if (server) assert.equal(await server.stop(), 0, 'queqiao exits cleanly');
});

async function say(token, text) {
  const ws = new WebSocket(socketUrl(token));
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  ws.send(JSON.stringify({ type: 'chat', text }));
  await waitFor(async () => (await apiCall(server.base, 'GET', '/api/rooms/demo/chat')).some((m) => m.text === text), { message: `"${text}" stored` });
  ws.close();
}

test('WeChat: the host card opens her profile card with the dating fields; 关注 and 取消关注', async () => {
  clearStorage();
  wxApi.setStorageSync('queqiao.session', dora);
  const page = renderWechatPage('room');
  await page.instance.onLoad({ id: 'demo' });
  page.querySelector('.host').dispatchEvent('tap');
  await waitFor(() => page.data.profile && !page.data.profile.loading, { message: 'profile loaded' });
  const card = page.data.profile;
  assert.equal(card.name, '红娘小美');
  assert.match(card.facts, /女 · \d+ 岁 · 165cm · 本科 · 杭州/);
  assert.equal(card.preferences, '30 岁左右，性格温和，同城优先');
  assert.equal(card.following, false);
  await waitFor(() => page.querySelector('.profile-card'), { message: 'card rendered' });
  const shown = page.querySelector('.profile-card').dom.textContent;
  assert.match(shown, /择偶条件/);
  assert.match(shown, /喜欢旅行和做饭/);
  assert.match(shown, /\+ 关注/);

  page.querySelector('.follow').dispatchEvent('tap');
  await waitFor(() => page.data.profile.following === true, { message: 'followed' });
  const follows = await apiCall(server.base, 'GET', '/api/me/follows', undefined, dora.token);
  assert.deepEqual(follows.map((f) => f.nickname), ['红娘小美']);
  assert.equal(page.data.profile.followers, '1 人关注');
  await waitFor(() => /取消关注/.test(page.querySelector('.profile-card').dom.textContent), { message: 'button says 取消关注' });
  await page.instance.onFollow();
  assert.equal(page.data.profile.following, false);
  assert.deepEqual(await apiCall(server.base, 'GET', '/api/me/follows', undefined, dora.token), []);
  page.instance.onUnload();
});

test('WeChat: a name in the chat opens that user; 拉黑 hides their chat for me', async () => {
  await say(eve.token, 'Eve 的第一句话');
  clearStorage();
  wxApi.setStorageSync('queqiao.session', dora);
  const page = renderWechatPage('room');
  await page.instance.onLoad({ id: 'demo' });
  await waitFor(() => page.data.chat.some((m) => m.text === 'Eve 的第一句话'), { message: "Eve's line in the history" });
  await waitFor(() => page.querySelectorAll('.name').length > 0, { message: 'names rendered' });
  const names = page.querySelectorAll('.name');
  const eveName = names.find((n) => /Eve 小伊/.test(n.dom.textContent));
  eveName.dispatchEvent('tap');
  await waitFor(() => page.data.profile && !page.data.profile.loading && page.data.profile.name === 'Eve 小伊', { message: "Eve's card" });
  page.querySelector('.block').dispatchEvent('tap');
  await waitFor(() => page.data.profile.blocked === true, { message: 'blocked' });
  assert.equal(page.data.chat.some((m) => m.text === 'Eve 的第一句话'), false, "Eve's earlier line is gone");
  const blocks = await apiCall(server.base, 'GET', '/api/me/blocks', undefined, dora.token);
  assert.deepEqual(blocks.map((b) => b.nickname), ['Eve 小伊']);

  // What she says next never shows; others still do.
  await waitFor(() => page.data.connected, { message: 'socket open' });
  await say(eve.token, 'Eve 被拉黑后的话');
  await say(host.token, '主播的话照常显示');
  await waitFor(() => page.data.chat.some((m) => m.text === '主播的话照常显示'), { message: "the host's line" });
  assert.equal(page.data.chat.some((m) => m.text === 'Eve 被拉黑后的话'), false, 'a blocked user stays hidden');
  await page.instance.onBlock();
  assert.equal(page.data.profile.blocked, false, 'unblocked');
  page.instance.onUnload();
});

test('WeChat: the recharge page pays a package in the sandbox; the gift shows on the 贡献榜', async () => {
  clearStorage();
  wxApi.setStorageSync('queqiao.session', dora);
  const room = renderWechatPage('room');
  await room.instance.onLoad({ id: 'demo' });
  await waitFor(() => room.data.connected, { message: 'socket open' });
  await room.instance.onToggleGifts();
  assert.equal(room.data.balance, 0);
  room.instance.onSendGift();
  await waitFor(() => room.data.needRecharge, { message: '金币不足 offers 充值' });
  await waitFor(() => room.querySelector('.need-recharge'), { message: 'recharge link rendered' });
  room.querySelector('.need-recharge').dispatchEvent('tap');
  await waitFor(() => calls.navigateTo.at(-1) === '/pages/recharge/recharge', { message: 'to the recharge page' });

  const page = renderWechatPage('recharge');
  await page.instance.onLoad({});
  assert.equal(page.data.balance, 0);
  assert.equal(page.data.sandbox, true);
  assert.ok(page.data.packages.length >= 3);
  assert.deepEqual(page.data.packages[0], { coins: 60, price: '¥6' });
  await waitFor(() => page.querySelectorAll('.package').length === page.data.packages.length, { message: 'packages rendered' });
  page.querySelectorAll('.package')[0].dispatchEvent('tap');
  await waitFor(() => page.data.chosen === 60, { message: 'package picked' });
  await page.instance.onPay();
  assert.equal(page.data.balance, 60);
  const wallet = await apiCall(server.base, 'GET', '/api/me/wallet', undefined, dora.token);
  assert.equal(wallet.coins, 60);
  const orders = await apiCall(server.base, 'GET', '/api/me/recharges', undefined, dora.token);
  assert.equal(orders.length, 1, 'paid once');
  assert.equal(orders[0].provider, 'sandbox');

  // Back in the room: the balance is fresh and the gift goes out.
  room.instance.onShow();
  await waitFor(() => room.data.balance === 60, { message: 'new balance in the gift panel' });
  room.instance.onSendGift();
  await waitFor(() => room.data.balance < 60, { message: 'gift paid' });
  await waitFor(() => room.data.top.some((r) => r.name === 'Dora 小朵'), { message: 'the 贡献榜 chip shows Dora' });
  await room.instance.onToggleLeaderboard();
  assert.equal(room.data.leaderboard[0].name, 'Dora 小朵');
  await waitFor(() => room.querySelector('.rank-row'), { message: 'leaderboard rendered' });
  assert.match(room.querySelector('.leaderboard').dom.textContent, /Dora 小朵/);
  room.instance.onUnload();
});

test('iOS: no 充值 in the room or on the recharge page (virtual goods cannot be bought there); 金币不足 says why', async () => {
  clearStorage();
  wxApi.setStorageSync('queqiao.session', eve);
  const before = (await apiCall(server.base, 'GET', '/api/me/recharges', undefined, eve.token)).length;
  const room = renderWechatPage('room');
  const wx = globalThis.wx;
  const saved = wx.getDeviceInfo;
  wx.getDeviceInfo = () => ({ platform: 'ios', system: 'iOS 17.5' });
  try {
    await room.instance.onLoad({ id: 'demo' });
    await waitFor(() => room.data.connected, { message: 'socket open' });
    assert.equal(room.data.canRecharge, false);
    await room.instance.onToggleGifts();
    await waitFor(() => room.querySelector('.panel-head'), { message: 'gift panel rendered' });
    assert.ok(!room.querySelector('.recharge'), 'no 充值 link on iOS');
    room.instance.onSendGift();
    await waitFor(() => room.data.needRecharge, { message: '金币不足' });
    await waitFor(() => /iOS 小程序暂不支持充值/.test(room.querySelector('.panel').dom.textContent), { message: 'the reason is shown' });
    assert.doesNotMatch(room.querySelector('.panel').dom.textContent, /去充值/);
    const navigations = calls.navigateTo.length;
    room.instance.onRecharge();
    assert.equal(calls.navigateTo.length, navigations, 'no way to the recharge page');

    // Reached anyway (an old link): it explains and does not pay.
    const page = renderWechatPage('recharge');
    await page.instance.onLoad({});
    assert.equal(page.data.iosBlocked, true);
    assert.equal(page.data.available, false);
    await waitFor(() => /iOS 小程序暂不支持充值/.test(page.querySelector('.page').dom.textContent), { message: 'recharge page explains' });
    page.instance.onPick({ currentTarget: { dataset: { coins: 60 } } });
    await page.instance.onPay();
    assert.equal((await apiCall(server.base, 'GET', '/api/me/recharges', undefined, eve.token)).length, before, 'nothing paid');
  } finally {
    if (saved === undefined) delete wx.getDeviceInfo; else wx.getDeviceInfo = saved;
    room.instance.onUnload();
  }

  // Alipay on iOS: the same rule.
  const savedInfo = myApi.getSystemInfoSync;
  myApi.getSystemInfoSync = () => ({ platform: 'iOS', app: 'alipay' });
  try {
    const recharge = alipayInstance(loadAlipayPage('recharge'));
    await recharge.onLoad({});
    assert.equal(recharge.data.iosBlocked, true);
    assert.equal(recharge.data.available, false);
  } finally {
    myApi.getSystemInfoSync = savedInfo;
  }
});

test('WeChat: an offline room shows the next scheduled show; 预约 there, logging in first', async () => {
  const room = await apiCall(server.base, 'POST', '/api/rooms', { title: '晚间交友' }, host.token);
  const startsAt = Math.floor(Date.now() / 1000) + 2 * 24 * 3600;
  await apiCall(server.base, 'POST', `/api/rooms/${room.id}/schedule`, { starts_at: startsAt + 3600, title: '后面那场' }, host.token);
  const next = await apiCall(server.base, 'POST', `/api/rooms/${room.id}/schedule`, { starts_at: startsAt, title: '单身派对' }, host.token);
  clearStorage();
  const page = renderWechatPage('room');
  try {
    await page.instance.onLoad({ id: room.id });
    await waitFor(() => page.data.nextShow, { message: 'the next show loaded' });
    assert.equal(page.data.nextShow.id, next.id);
    await waitFor(() => page.querySelector('.next-show'), { message: 'next show rendered' });
    const text = page.querySelector('.next-show').dom.textContent;
    assert.match(text, /下一场/);
    assert.match(text, /单身派对/);
    assert.doesNotMatch(text, /后面那场/);
    // Logged out: 预约 goes to the login page.
    page.querySelector('.next-show-reserve').dispatchEvent('tap');
    await waitFor(() => calls.navigateTo.at(-1) === '/pages/login/login', { message: 'to the login page' });
    // Back, logged in: 预约 and 取消预约, stored for her.
    wxApi.setStorageSync('queqiao.session', dora);
    page.instance.onShow();
    await waitFor(() => page.data.loggedIn && page.data.nextShow && page.data.nextShow.id === next.id, { message: 'reloaded for dora' });
    await page.instance.onReserveNext();
    assert.equal(page.data.nextShow.reserved, true);
    assert.equal(page.data.nextShow.count, 1);
    let mine = await apiCall(server.base, 'GET', '/api/me/reservations', undefined, dora.token);
    assert.ok(mine.some((r) => r.id === next.id), 'reserved on the server');
    await waitFor(() => /取消预约/.test(page.querySelector('.next-show').dom.textContent), { message: 'button says 取消预约' });
    await page.instance.onReserveNext();
    assert.equal(page.data.nextShow.reserved, false);
    mine = await apiCall(server.base, 'GET', '/api/me/reservations', undefined, dora.token);
    assert.ok(!mine.some((r) => r.id === next.id), 'reservation cancelled');
  } finally {
    page.instance.onUnload();
  }
});

test('WeChat: sharing opens this room (chat card and Moments); the share button is open-type="share"', async () => {
  clearStorage();
  const page = renderWechatPage('room');
  await page.instance.onLoad({ id: 'demo' });
  await waitFor(() => page.data.title, { message: 'room loaded' });
  const card = page.instance.onShareAppMessage();
  assert.equal(card.path, '/pages/room/room?id=demo');
  assert.equal(card.title, page.data.title);
  assert.deepEqual(page.instance.onShareTimeline(), { title: page.data.title, query: 'id=demo' });
  const button = page.querySelector('.share');
  assert.ok(button, 'share button rendered');
  page.instance.onUnload();
});

test('Alipay: profile card, follow, leaderboard and the share panel', async () => {
  clearStorage();
  myApi.setStorageSync({ key: 'queqiao.session', data: eve });
  let panels = 0;
  myApi.showSharePanel = () => { panels += 1; };
  const page = alipayInstance(loadAlipayPage('room'));
  await page.onLoad({ id: 'demo' });
  await page.onHostCard();
  assert.ok(page.data.profile, `the card opened (${page.data.statusText})`);
  assert.equal(page.data.profile.name, '红娘小美');
  assert.match(page.data.profile.facts, /165cm · 本科/);
  await page.onFollow();
  assert.equal(page.data.profile.following, true);
  const follows = await apiCall(server.base, 'GET', '/api/me/follows', undefined, eve.token);
  assert.deepEqual(follows.map((f) => f.nickname), ['红娘小美']);
  await page.onToggleLeaderboard();
  assert.equal(page.data.leaderboard[0].name, 'Dora 小朵', 'the same 贡献榜 as WeChat');
  page.onShare();
  assert.equal(panels, 1, 'my.showSharePanel');
  assert.equal(page.onShareAppMessage().path, '/pages/room/room?id=demo');
  const recharge = alipayInstance(loadAlipayPage('recharge'));
  await recharge.onLoad({});
  assert.equal(recharge.data.balance, 0);
  recharge.onPick({ currentTarget: { dataset: { coins: 300 } } });
  await recharge.onPay();
  assert.equal(recharge.data.balance, 300);
  page.onUnload();
  delete myApi.showSharePanel;
});
