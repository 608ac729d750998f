// The WeChat mini-program pages in miniprogram-simulate (official WXML compiler, jsdom),
// their wx.request / wx.connectSocket calls going to a real queqiao whose demo room is live.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import WebSocket from 'ws';
import { configure, renderWechatPage, unloadPages, clearStorage, calls, waitFor, wxApi } from './env.mjs';
import { startLiveRoom } from './live.mjs';

const require = createRequire(import.meta.url);

let live;
let alice;
let bob;

before(async () => {
  live = await startLiveRoom();
  configure(live.base);
  alice = await live.register('alice', 'Alice 小爱');
  bob = await live.register('bob', 'Bob 小博');
  await live.topUp(alice.user.id, 100);
});

after(async () => {
  unloadPages();
  if (live) assert.equal(await live.stop(), 0, 'queqiao exits cleanly');
});

const text = (page) => page.dom.textContent;

test('the room list renders from /api/rooms, is cached, and refreshes on pull-down', async () => {
  clearStorage();
  const page = renderWechatPage('rooms');
  await page.instance.onLoad({});
  const rooms = page.data.rooms;
  assert.equal(rooms.length, 2);
  assert.equal(rooms[0].id, 'demo', 'live rooms first');
  assert.equal(rooms[0].live, true);
  assert.equal(rooms[0].hostName, '红娘小美');
  assert.equal(rooms[1].live, false);
  assert.equal(page.querySelectorAll('.card').length, 2, 'two cards rendered');
  assert.match(text(page), /周末相亲局/);
  assert.match(text(page), /直播中/);
  assert.match(text(page), /未开播/);
  assert.match(text(page), /人在看/);
  const cached = wxApi.getStorageSync('queqiao.rooms.v1');
  assert.equal(cached.value.length, 2, 'wx.setStorageSync cached the list');

  // A new page draws the cache at once, then the server's answer.
  const second = renderWechatPage('rooms');
  const loading = second.instance.onLoad({});
  assert.equal(second.data.fromCache, true);
  assert.equal(second.data.rooms.length, 2);
  await loading;
  assert.equal(second.data.fromCache, false);

  const before = calls.stopPullDownRefresh;
  await page.instance.onPullDownRefresh();
  assert.equal(calls.stopPullDownRefresh, before + 1, 'pull-down refresh stops its spinner');

  page.querySelectorAll('.card')[0].dispatchEvent('tap');
  await waitFor(() => calls.navigateTo.at(-1) === '/pages/room/room?id=demo', { message: 'tapping a card opens the room' });
});

test('the live room plays HTTP-FLV in <live-player> where the account may use it', async () => {
  configure(live.base, { livePlayer: true });
  const page = renderWechatPage('room');
  await page.instance.onLoad({ id: 'demo' });
  assert.equal(page.data.player.kind, 'live-player');
  assert.equal(page.data.player.src, live.stream.flv);
  const player = page.querySelector('#player');
  assert.ok(page.dom.querySelector('wx-live-player'), '<live-player> rendered');
  assert.equal(page.dom.querySelector('wx-video'), null);
  assert.equal(player.data.src, live.stream.flv);
  assert.equal(player.data.mode, 'live');
  assert.match(text(page), /极速/, 'the mode in user words, not protocol names');

  // live-player gives up (network lost): the page falls back to HLS in <video>.
  player.dispatchEvent('statechange', { detail: { code: -2301 } });
  await waitFor(() => page.data.player.kind === 'video', { message: 'fallback to HLS' });
  assert.equal(page.querySelector('#player').data.src, live.stream.hls);
  page.instance.onUnload();
});

test('the live room plays HLS in <video> otherwise; an offline room waits', async () => {
  configure(live.base, { livePlayer: false });
  const page = renderWechatPage('room');
  await page.instance.onLoad({ id: 'demo' });
  assert.equal(page.data.player.kind, 'video');
  assert.equal(page.data.player.src, live.stream.hls);
  assert.ok(page.dom.querySelector('wx-video'));
  assert.equal(page.dom.querySelector('wx-live-player'), null);
  assert.equal(page.querySelector('#player').data.src, live.stream.hls);
  page.instance.onUnload();

  const offline = renderWechatPage('room');
  await offline.instance.onLoad({ id: live.offlineRoom });
  assert.equal(offline.data.player.kind, 'none');
  assert.match(text(offline), /主播暂未开播/);
  offline.instance.onUnload();
});

test('chat, likes and gifts go out and come back over the WebSocket', async () => {
  configure(live.base, { livePlayer: true });
  clearStorage();
  wxApi.setStorageSync('queqiao.session', alice);
  const page = renderWechatPage('room');
  const loading = page.instance.onLoad({ id: 'demo' });
  // Sent before the socket is even open: queued, then delivered.
  page.querySelector('.input').dispatchEvent('input', { detail: { value: '排队的消息' } });
  page.querySelector('.send').dispatchEvent('tap');
  await loading;
  await waitFor(() => page.data.connected, { message: 'WebSocket open' });
  assert.ok(calls.sockets.some((url) => url.startsWith(live.stream.websocket) && url.includes('token=')), 'wx.connectSocket to the room with the token');
  await waitFor(() => page.data.chat.some((m) => m.text === '排队的消息' && m.mine), { message: 'the queued message comes back' });

  page.querySelector('.input').dispatchEvent('input', { detail: { value: '大家好 <img src=x onerror=alert(1)>' } });
  page.querySelector('.send').dispatchEvent('tap');
  await waitFor(() => page.data.chat.some((m) => m.text === '大家好 <img src=x onerror=alert(1)>'), { message: 'own message back' });
  await waitFor(() => text(page).includes('大家好 <img src=x onerror=alert(1)>'), { message: 'rendered as text' });
  assert.equal(page.dom.querySelector('img'), null, 'no element made from chat text');

  // Someone else (a plain WebSocket client, as Bob) is heard too.
  const other = new WebSocket(`${live.stream.websocket}?token=${bob.token}`);
  await new Promise((resolve, reject) => { other.once('open', resolve); other.once('error', reject); });
  other.send(JSON.stringify({ type: 'chat', text: '来自 Bob 的问候' }));
  await waitFor(() => page.data.chat.some((m) => m.text === '来自 Bob 的问候' && m.name === 'Bob 小博'), { message: "Bob's message" });
  other.close();

  const likes = page.data.likes;
  for (let i = 0; i < 3; i++) page.querySelector('.like').dispatchEvent('tap');
  await waitFor(async () => {
    const r = await live.api('GET', '/api/rooms/demo/events?after=0');
    return r.events.some((e) => e.type === 'likes' && e.total >= likes + 3);
  }, { message: 'likes reach the server' });
  await waitFor(() => page.data.likes >= likes + 3, { message: 'likes total back on the page' });

  await page.instance.onToggleGifts();
  assert.equal(page.data.balance, 100);
  assert.ok(page.data.gifts.length > 0);
  const rose = page.data.gifts.findIndex((g) => g.id === 'rose');
  page.querySelectorAll('.gift-option')[rose].dispatchEvent('tap');
  await waitFor(() => page.data.giftId === 'rose', { message: 'rose picked' });
  page.instance.onSendGift();
  await waitFor(() => page.data.balance === 99, { message: 'gift_ack with the new balance' });
  await waitFor(() => page.data.giftAnim && page.data.giftAnim.gift === 'rose', { message: 'gift animation' });
  await waitFor(() => page.querySelector('.gift-anim'), { message: 'gift banner rendered' });
  assert.match(page.querySelector('.gift-anim').dom.textContent, /Alice 小爱 送出 玫瑰 ×1/);
  const wallet = await live.api('GET', '/api/me/wallet', undefined, alice.token);
  assert.equal(wallet.coins, 99);
  page.instance.onUnload();
});

// ---- issue 16: what a new user tripped on ------------------------------------------------------

test('a wrong password says so, and server errors are shown in Chinese by code and field', async () => {
  clearStorage();
  const page = renderWechatPage('login');
  page.instance.onLoginInput({ detail: { value: 'alice' } });
  page.instance.onPasswordInput({ detail: { value: 'not-her-password' } });
  await page.instance.onSubmit();
  assert.equal(page.data.error, '用户名/手机号或密码错误', 'not 请先登录');
  await waitFor(() => text(page).includes('用户名/手机号或密码错误'), { message: 'rendered' });
  const { errorText } = require('../../web-demo/miniprogram/core/errors.js');
  assert.match(errorText({ code: 'validation', field: 'username', message: 'username: must be 3–32 letters' }), /^用户名需/);
  assert.equal(errorText({ code: 'username_taken', message: 'that username or phone number is already registered' }), '该用户名或手机号已被注册');
  assert.equal(errorText({ status: 404, code: 'not_found' }, 'room_not_found'), '直播间不存在或已关闭');
  assert.equal(errorText({ status: 418, code: 'something_new', message: 'English' }), '请求失败，请稍后再试', 'never the raw English');
});

test('the portrait room: join lines, recent viewers, the host card opens her profile; 主播 kept in history; no count after the show', async () => {
  configure(live.base, { livePlayer: true });
  clearStorage();
  wxApi.setStorageSync('queqiao.session', alice);
  // The host said something earlier: the history keeps her role.
  const hostSocket = new WebSocket(`${live.stream.websocket}?token=${live.host.token}`);
  await new Promise((resolve, reject) => { hostSocket.once('open', resolve); hostSocket.once('error', reject); });
  hostSocket.send(JSON.stringify({ type: 'chat', text: '欢迎来到小程序直播间' }));
  await waitFor(async () => (await live.api('GET', '/api/rooms/demo/chat')).some((m) => m.text === '欢迎来到小程序直播间'), { message: 'host line stored' });
  hostSocket.close();

  const page = renderWechatPage('room');
  await page.instance.onLoad({ id: 'demo' });
  await waitFor(() => page.data.connected, { message: 'WebSocket open' });
  const hostLine = await waitFor(() => page.data.chat.find((m) => m.text === '欢迎来到小程序直播间'), { message: 'history' });
  assert.equal(hostLine.host, true, 'the host line from history is marked 主播');
  assert.equal(page.data.modeText, '极速', 'no protocol names for users');

  const other = new WebSocket(`${live.stream.websocket}?token=${bob.token}`);
  await new Promise((resolve, reject) => { other.once('open', resolve); other.once('error', reject); });
  await waitFor(() => page.data.chat.some((m) => m.join && m.text === 'Bob 小博 来了'), { message: 'Bob 来了' });
  await waitFor(() => page.data.recent.some((r) => r.id === bob.user.id), { message: 'Bob among the recent viewers' });
  await waitFor(() => page.querySelector('.recent'), { message: 'avatar rendered' });
  other.close();

  // The host's card opens her profile (资料卡).
  page.querySelector('.host').dispatchEvent('tap');
  await waitFor(() => page.data.profile && !page.data.profile.loading, { message: 'profile loaded' });
  assert.equal(page.data.profile.name, '红娘小美');
  assert.equal(page.data.profile.host, true);
  await waitFor(() => page.querySelector('.profile-card'), { message: 'profile card rendered' });
  assert.match(page.querySelector('.profile-card').dom.textContent, /红娘小美/);
  page.instance.onCloseProfile();
  assert.equal(page.data.profile, null);

  assert.ok(page.data.viewers >= 1);
  page.instance.onRoomChange({ kind: 'system', event: 'show_ended', detail: {} }, page.instance.model.state);
  assert.equal(page.data.viewers, 0, 'no viewer count once the show has ended');
  page.instance.onUnload();
});

test('ten fast chat messages all arrive in order (rate-limited ones are resent), none silently lost', async () => {
  configure(live.base, { livePlayer: true });
  clearStorage();
  wxApi.setStorageSync('queqiao.session', bob);
  const page = renderWechatPage('room');
  await page.instance.onLoad({ id: 'demo' });
  await waitFor(() => page.data.connected, { message: 'WebSocket open' });
  const lines = Array.from({ length: 10 }, (_, i) => `小程序快速消息 ${i + 1}`);
  for (const line of lines) {
    page.querySelector('.input').dispatchEvent('input', { detail: { value: line } });
    page.querySelector('.send').dispatchEvent('tap');
  }
  await waitFor(() => page.data.chat.filter((m) => m.state).length === 10 || page.data.chat.filter((m) => m.text.startsWith('小程序快速消息')).length === 10, { message: 'each message shown at once' });
  await waitFor(() => page.data.chat.some((m) => m.state === 'queued'), { message: 'some wait for the rate limit' });
  const stored = await waitFor(async () => {
    const chat = (await live.api('GET', '/api/rooms/demo/chat')).map((m) => m.text).filter((t) => t.startsWith('小程序快速消息'));
    return chat.length >= 10 ? chat : null;
  }, { timeout: 30000, message: 'all ten reach the room' });
  assert.deepEqual(stored, lines, 'in the order typed');
  await waitFor(() => page.data.chat.every((m) => !m.state), { message: 'every message confirmed' });
  page.instance.onUnload();
});

test('a logged-out viewer who types keeps the text; it is sent after logging in', async () => {
  configure(live.base, { livePlayer: true });
  clearStorage();
  const page = renderWechatPage('room');
  await page.instance.onLoad({ id: 'demo' });
  await waitFor(() => page.data.connected, { message: 'WebSocket open' });
  page.querySelector('.input').dispatchEvent('input', { detail: { value: '登录前写好的话' } });
  page.querySelector('.send').dispatchEvent('tap');
  await waitFor(() => calls.navigateTo.at(-1) === '/pages/login/login', { message: 'the login page opens over the room' });
  assert.equal(page.data.text, '登录前写好的话', 'the text stays in the input');
  wxApi.setStorageSync('queqiao.session', alice);
  page.instance.onShow();
  await waitFor(async () => (await live.api('GET', '/api/rooms/demo/chat')).some((m) => m.text === '登录前写好的话'), { message: 'sent after logging in' });
  page.instance.onUnload();
});
