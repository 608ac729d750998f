// The WeChat mini-program pages in miniprogram-simulate (official WXML compiler, jsdom),
// their wx.request / wx.connectSocket calls going to a real queqiao whose demo room is live.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { configure, renderWechatPage, unloadPages, clearStorage, calls, waitFor, wxApi } from './env.mjs';
import { startLiveRoom } from './live.mjs';

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
  assert.match(text(page), /HTTP-FLV/);

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
