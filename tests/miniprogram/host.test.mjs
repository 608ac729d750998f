// The host page (开播) of the mini-programs against a real queqiao in accounts mode
// (--seed-demo, RTMP ingest on a free port): WeChat's <live-pusher> gets its URL from
// GET /api/rooms/{id}/ingest when 开播 is pressed, start/stop/switchCamera go to the
// LivePusherContext (a recording fake: the simulator has no camera), pusher codes are shown
// in words, mute and beauty are attributes, chat and gifts from the room WebSocket are drawn
// over the preview; the 我要开播 entry is for hosts only; Alipay (no push component) says so
// and gives the web studio's address.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import WebSocket from 'ws';
import { startAccountsServer, login, register, topUp, apiCall } from '../browser/harness.mjs';
import {
  configure, renderWechatPage, loadAlipayPage, alipayInstance, unloadPages, clearStorage, calls, waitFor, wxApi, myApi, miniprogram, pusherFails,
} from './env.mjs';

let server;
let host;
let admin;
let viewer;

before(async () => {
  server = await startAccountsServer();
  configure(server.base);
  host = await login(server.base, server.accounts.host.login, server.accounts.host.password);
  admin = await login(server.base, server.accounts.admin.login, server.accounts.admin.password);
  viewer = await register(server.base, 'dora', 'Dora 小朵');
  await topUp(server.base, admin.token, viewer.user.id, 100);
});

after(async () => {
  unloadPages();
  if (server) assert.equal(await server.stop(), 0, 'queqiao exits cleanly');
});

const text = (page) => page.dom.textContent;
const ingest = () => apiCall(server.base, 'GET', '/api/rooms/demo/ingest', undefined, host.token);
const pusherCalls = (name) => calls.pusher.filter((c) => c === name).length;

async function openViewerSocket(token) {
  const ws = new WebSocket(`${server.base.replace(/^http/, 'ws')}/ws/rooms/demo?token=${encodeURIComponent(token)}`);
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  return ws;
}

test('WeChat: the host page pushes to the ingest URL; start, codes in words, stop, camera, mute, beauty', async () => {
  clearStorage();
  wxApi.setStorageSync('queqiao.session', host);
  const page = renderWechatPage('host');
  await page.instance.onLoad({});
  assert.deepEqual(page.data.rooms.map((r) => r.id), ['demo'], "the host's rooms, as the web studio lists them");
  assert.equal(page.data.roomId, 'demo');
  await waitFor(() => page.data.connected, { message: 'room WebSocket open' });

  // Before 开播: a portrait pusher, no URL, never autopush.
  const pusher = () => page.querySelector('#pusher');
  assert.ok(page.dom.querySelector('wx-live-pusher'), '<live-pusher> rendered');
  assert.equal(pusher().data.url, '');
  assert.equal(pusher().data.autopush, false);
  assert.equal(pusher().data.orientation, 'vertical');
  assert.match(pusher().data.mode, /^(RTC|HD)$/);
  assert.equal(pusherCalls('start'), 0);

  // 开播: the URL comes from the ingest API, then LivePusherContext.start().
  const info = await ingest();
  assert.ok(info.rtmp && info.rtmp.url.startsWith('rtmp://'), `the server runs RTMP ingest: ${JSON.stringify(info)}`);
  await page.instance.onStart();
  assert.equal(page.data.pusher.url, info.rtmp.url);
  await waitFor(() => pusher().data.url === info.rtmp.url, { message: 'url attribute set' });
  await waitFor(() => pusherCalls('start') === 1 && page.data.pushing, { message: 'start() called' });
  assert.ok(calls.requests.includes('GET /api/rooms/demo/ingest'));
  pusher().dispatchEvent('statechange', { detail: { code: 1002 } });
  await waitFor(() => page.data.status === 'live', { message: '1002: live' });
  assert.match(text(page), /直播中/);

  // 1101: a warning, still pushing.
  pusher().dispatchEvent('statechange', { detail: { code: 1101 } });
  await waitFor(() => /网络状况不佳/.test(text(page)), { message: '1101 in words' });
  assert.equal(page.data.pushing, true);

  // -1307: the push gave up; said in words (both languages in the data), 开播 again possible.
  pusher().dispatchEvent('statechange', { detail: { code: -1307 } });
  await waitFor(() => page.data.error && page.data.error.code === -1307, { message: '-1307 handled' });
  assert.match(page.data.error.text, /网络断开，推流失败/);
  assert.match(page.data.error.en, /Network disconnected/);
  await waitFor(() => /网络断开，推流失败/.test(text(page)), { message: '-1307 rendered' });
  assert.equal(page.data.pushing, false);
  assert.equal(pusherCalls('stop'), 1, 'the given-up pusher is stopped');
  await waitFor(() => page.querySelector('.start'), { message: '开播 shown again' });

  // A new key (rotated in the web studio): the next 开播 uses it.
  const rotated = await apiCall(server.base, 'POST', '/api/rooms/demo/ingest/rotate', undefined, host.token);
  assert.notEqual(rotated.rtmp.stream_key, info.rtmp.stream_key, 'rotate gives a new key');
  page.querySelector('.start').dispatchEvent('tap');
  await waitFor(() => pusherCalls('start') === 2 && page.data.pushing, { message: 'second start' });
  assert.equal(page.data.pusher.url, rotated.rtmp.url);
  assert.equal(page.data.error, null);

  // Camera, mute, beauty.
  assert.equal(page.data.camera, 'front');
  page.querySelector('.camera').dispatchEvent('tap');
  await waitFor(() => page.data.camera === 'back', { message: 'camera switched' });
  assert.equal(pusherCalls('switchCamera'), 1);
  assert.equal(pusher().data.enableMic, true);
  page.querySelector('.mic').dispatchEvent('tap');
  await waitFor(() => page.data.muted === true && pusher().data.enableMic === false, { message: 'muted' });
  assert.match(text(page), /已静音/);
  page.instance.onToggleMute();
  assert.equal(page.data.muted, false);
  page.instance.onToggleBeauty();
  page.instance.onBeauty({ detail: { value: 7 } });
  page.instance.onWhiteness({ detail: { value: 5 } });
  await waitFor(() => pusher().data.beauty === 7 && pusher().data.whiteness === 5, { message: 'beauty attributes' });

  // 下播.
  page.querySelector('.stop').dispatchEvent('tap');
  await waitFor(() => pusherCalls('stop') === 2 && !page.data.pushing, { message: 'stop() called' });
  assert.equal(page.data.status, 'stopped');
  assert.match(text(page), /已下播/);

  // A start the pusher refuses says why.
  pusherFails.start = 'no permission';
  await page.instance.onStart();
  await waitFor(() => page.data.error && page.data.error.code === 'start_failed', { message: 'start failure shown' });
  assert.equal(page.data.pushing, false);
  page.instance.onUnload();
});

test('WeChat: chat and gifts of the room are drawn over the preview; the host can reply', async () => {
  clearStorage();
  wxApi.setStorageSync('queqiao.session', host);
  const page = renderWechatPage('host');
  await page.instance.onLoad({ id: 'demo' });
  await waitFor(() => page.data.connected, { message: 'room WebSocket open' });
  const ws = await openViewerSocket(viewer.token);
  ws.send(JSON.stringify({ type: 'chat', text: '主播好，我在看 <b>x</b>' }));
  await waitFor(() => page.data.chat.some((m) => m.text === '主播好，我在看 <b>x</b>' && m.name === 'Dora 小朵'), { message: 'viewer chat' });
  await waitFor(() => text(page).includes('主播好，我在看 <b>x</b>'), { message: 'rendered as text' });
  assert.equal(page.dom.querySelector('b'), null);
  ws.send(JSON.stringify({ type: 'gift', gift: 'rose', count: 1, idempotency_key: `host-test-${Date.now()}` }));
  await waitFor(() => page.data.giftAnim && page.data.giftAnim.gift === 'rose', { message: 'gift banner' });
  await waitFor(() => page.querySelector('.gift-anim'), { message: 'gift banner rendered' });
  assert.match(page.querySelector('.gift-anim').dom.textContent, /Dora 小朵 送出 玫瑰 ×1/);
  await waitFor(() => page.data.viewers >= 1, { message: 'viewer count' });

  page.querySelector('.input').dispatchEvent('input', { detail: { value: '欢迎 Dora' } });
  page.querySelector('.input').dispatchEvent('confirm');
  await waitFor(async () => (await apiCall(server.base, 'GET', '/api/rooms/demo/chat')).some((m) => m.text === '欢迎 Dora'), { message: 'host reply stored' });
  ws.close();
  page.instance.onUnload();
});

test('WeChat: 我要开播 is shown to logged-in hosts only; a viewer on the host page is told why not', async () => {
  clearStorage();
  const anonymous = renderWechatPage('rooms');
  await anonymous.instance.onLoad({});
  assert.equal(anonymous.data.hostEntry, false);
  assert.equal(anonymous.dom.querySelector('.host-entry'), null);

  wxApi.setStorageSync('queqiao.session', viewer);
  const asViewer = renderWechatPage('rooms');
  await asViewer.instance.onLoad({});
  assert.equal(asViewer.data.hostEntry, false, 'not for viewers');

  wxApi.setStorageSync('queqiao.session', host);
  asViewer.instance.onShow();
  assert.equal(asViewer.data.hostEntry, true, 'after logging in as a host');
  await waitFor(() => asViewer.querySelector('.host-entry'), { message: 'entry rendered' });
  asViewer.querySelector('.host-entry').dispatchEvent('tap');
  await waitFor(() => calls.navigateTo.at(-1) === '/pages/host/host', { message: 'opens the host page' });

  wxApi.setStorageSync('queqiao.session', viewer);
  const notHost = renderWechatPage('host');
  await notHost.instance.onLoad({});
  assert.equal(notHost.data.notHost, true);
  assert.match(text(notHost), /需要主播身份/);
  assert.equal(notHost.dom.querySelector('wx-live-pusher'), null);

  clearStorage();
  const loggedOut = renderWechatPage('host');
  await loggedOut.instance.onLoad({});
  assert.equal(loggedOut.data.needLogin, true);
  loggedOut.querySelector('.gate-button').dispatchEvent('tap');
  await waitFor(() => calls.navigateTo.at(-1) === '/pages/login/login', { message: 'login offered' });
  // Back from the login page as the host: the page loads her rooms.
  wxApi.setStorageSync('queqiao.session', host);
  loggedOut.instance.onShow();
  await waitFor(() => loggedOut.data.roomId === 'demo', { message: 'rooms after login' });
  loggedOut.instance.onUnload();
});

test('Alipay: no push component — the host entry and page say so and give the web studio address', async () => {
  clearStorage();
  myApi.setStorageSync({ key: 'queqiao.session', data: host });
  const rooms = alipayInstance(loadAlipayPage('rooms'));
  await rooms.onLoad({});
  assert.equal(rooms.data.hostEntry, true);
  assert.match(rooms.data.hostEntryNote, /支付宝小程序没有推流组件/);
  rooms.onHost();
  assert.equal(calls.navigateTo.at(-1), '/pages/host/host');

  const before = calls.pusher.length;
  const ingestRequests = calls.requests.filter((r) => r.includes('/ingest')).length;
  const page = alipayInstance(loadAlipayPage('host'));
  await page.onLoad({});
  assert.equal(page.data.noPusher, true);
  assert.match(page.data.noPusherText, /支付宝小程序没有推流组件/);
  assert.match(page.data.noPusherTextEn, /no push component/);
  assert.equal(page.data.studioUrl, `${server.base}/#/studio`);
  page.onCopyStudio();
  assert.equal(calls.clipboard.at(-1), `${server.base}/#/studio`);
  assert.equal(calls.pusher.length, before, 'no pusher on Alipay');
  assert.equal(calls.requests.filter((r) => r.includes('/ingest')).length, ingestRequests, 'the ingest API is not asked');
  // The Alipay template shows exactly that (miniprogram-simulate renders WXML only).
  const axml = readFileSync(join(miniprogram, 'pages', 'host', 'host.axml'), 'utf8');
  assert.match(axml, /\{\{noPusherText\}\}/);
  assert.match(axml, /\{\{studioUrl\}\}/);
  assert.doesNotMatch(axml, /live-pusher/);
  page.onUnload();
});
