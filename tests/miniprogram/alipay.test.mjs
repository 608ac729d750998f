// The Alipay mini-program: the same pages through the Alipay layer (Page(), my.request,
// my.connectSocket, my.*StorageSync), against a real queqiao whose demo room is live.
// (miniprogram-simulate renders WXML only, so here the pages run without templates and
// core.test.mjs checks that every AXML handler exists.)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { configure, loadAlipayPage, alipayInstance, unloadPages, clearStorage, calls, waitFor, myApi } from './env.mjs';
import { startLiveRoom } from './live.mjs';

let live;
let carol;

before(async () => {
  live = await startLiveRoom();
  configure(live.base);
  carol = await live.register('carol', 'Carol 小卡');
});

after(async () => {
  unloadPages();
  if (live) assert.equal(await live.stop(), 0, 'queqiao exits cleanly');
});

test('Alipay: the room list renders from /api/rooms and is cached with my.setStorageSync', async () => {
  clearStorage();
  const page = alipayInstance(loadAlipayPage('rooms'));
  await page.onLoad({});
  assert.deepEqual(page.data.rooms.map((r) => r.live), [true, false]);
  assert.equal(page.data.rooms[0].title, '周末相亲局 · Weekend matchmaking');
  assert.equal(myApi.getStorageSync({ key: 'queqiao.rooms.v1' }).data.value.length, 2);
  const before = calls.stopPullDownRefresh;
  await page.onPullDownRefresh();
  assert.equal(calls.stopPullDownRefresh, before + 1);
  page.onTapRoom({ currentTarget: { dataset: { id: 'demo' } } });
  assert.equal(calls.navigateTo.at(-1), '/pages/room/room?id=demo');
});

test('Alipay: the live room plays HLS in <video> (no FLV player on Alipay)', async () => {
  configure(live.base, { livePlayer: true });
  const page = alipayInstance(loadAlipayPage('room'));
  await page.onLoad({ id: 'demo' });
  assert.equal(page.data.player.kind, 'video');
  assert.equal(page.data.player.src, live.stream.hls);
  assert.equal(page.data.modeText, '流畅');
  page.onUnload();
});

test('Alipay: chat goes out and comes back over my.connectSocket', async () => {
  clearStorage();
  myApi.setStorageSync({ key: 'queqiao.session', data: carol });
  const page = alipayInstance(loadAlipayPage('room'));
  await page.onLoad({ id: 'demo' });
  await waitFor(() => page.data.connected, { message: 'socket open' });
  page.onInput({ detail: { value: '支付宝这边也能聊天' } });
  page.onSend();
  await waitFor(() => page.data.chat.some((m) => m.text === '支付宝这边也能聊天' && m.mine && m.name === 'Carol 小卡'), { message: 'message back' });
  // Errors come back as the server's message: no coins for a gift.
  await page.onToggleGifts();
  assert.equal(page.data.balance, 0);
  page.onSendGift();
  await waitFor(() => /金币不足/.test(page.data.notice), { message: 'insufficient coins shown' });
  page.onUnload();
});
