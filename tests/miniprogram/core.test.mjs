// The shared client core without a server: the room protocol model (order, duplicates, gap
// fetch, reconnect), the reconnecting socket (queue, backoff, kick, ping timeout), the
// player choice, and the invariants of the two platforms' files (shared copies identical,
// every template handler defined, no directive of the other platform).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { miniprogram, repoRoot } from './env.mjs';
import { SHARED, styleSheets } from './sync-core.mjs';

const require = createRequire(import.meta.url);
const protocol = require(join(miniprogram, 'core', 'room-protocol.js'));
const { createRoomSocket } = require(join(miniprogram, 'core', 'room-socket.js'));
const stream = require(join(miniprogram, 'core', 'stream.js'));

test('the mini-program core is the same code as the web demo (byte-identical copies)', () => {
  for (const file of SHARED) {
    const web = readFileSync(join(repoRoot, 'web-demo', 'shared', file), 'utf8');
    const mini = readFileSync(join(miniprogram, 'core', file), 'utf8');
    assert.equal(mini, web, `web-demo/miniprogram/core/${file} differs from web-demo/shared/${file}: run \`npm run sync-core\` in tests/miniprogram`);
  }
  for (const [wxss, acss] of styleSheets()) {
    assert.equal(readFileSync(acss, 'utf8'), readFileSync(wxss, 'utf8'), `${acss} differs from ${wxss}: run \`npm run sync-core\``);
  }
});

test('every template handler exists on its page, and each template uses its own platform syntax', () => {
  const stubPlatform = { caps: () => ({ livePlayer: true }) };
  for (const name of readdirSync(join(miniprogram, 'pages'))) {
    const definition = require(join(miniprogram, 'core', 'pages', `${name}.js`))(stubPlatform, { server: 'https://example.invalid' });
    const wxml = readFileSync(join(miniprogram, 'pages', name, `${name}.wxml`), 'utf8');
    const axml = readFileSync(join(miniprogram, 'pages', name, `${name}.axml`), 'utf8');
    const handlers = [
      ...[...wxml.matchAll(/\bbind(?::)?\w+="(\w+)"/g)].map((m) => ['wxml', m[1]]),
      ...[...axml.matchAll(/\bon[A-Z]\w*="(\w+)"/g)].map((m) => ['axml', m[1]]),
    ];
    assert.ok(handlers.length > 0, `${name} binds events`);
    for (const [kind, handler] of handlers) {
      assert.equal(typeof definition[handler], 'function', `${name}.${kind} binds ${handler}, which the page does not define`);
    }
    assert.doesNotMatch(wxml, /\ba:(if|for|elif|else|key)\b|\bon[A-Z]\w*=/, `${name}.wxml uses Alipay syntax`);
    assert.doesNotMatch(axml, /\bwx:|\bbind\w+=/, `${name}.axml uses WeChat syntax`);
    assert.ok(typeof definition.data === 'object', `${name} has initial data`);
  }
});

// ---- room protocol model -------------------------------------------------------------------
function model(fetchEventsAfter) {
  const changes = [];
  const m = protocol.createRoomModel({ onChange: (c) => changes.push(c), fetchEventsAfter });
  return { m, changes, kinds: () => changes.map((c) => c.kind) };
}
const chat = (seq, text, user = { id: 2, nickname: 'B' }) => ({ type: 'chat', seq, ts: 1, user, text });
const flush = () => new Promise((r) => setTimeout(r, 0));

test('the room model applies events in order, once, and knows who you are', () => {
  const { m, changes } = model();
  m.handle(JSON.stringify({ type: 'welcome', seq: 10, you: { id: 1, nickname: 'A' }, history: [chat(9, 'old'), chat(10, 'older?', { id: 1, nickname: 'A' })], likes: 5, viewers: 3 }));
  assert.equal(changes[0].kind, 'welcome');
  assert.equal(changes[0].history.length, 2);
  assert.equal(m.state.chat[1].mine, true);
  m.handle(chat(11, 'hi'));
  m.handle(chat(11, 'hi again (duplicate)'));
  m.handle({ type: 'likes', seq: 12, total: 9, delta: 4 });
  m.handle({ type: 'presence', seq: 13, viewers: 7, joined: [], left: [] });
  m.handle({ type: 'gift', seq: 14, user: { nickname: 'B' }, gift: { id: 'ring', name: '钻戒', animation: 'ring', price_coins: 520 }, count: 1, coins: 520 });
  m.handle({ type: 'system', seq: 15, event: 'message_deleted', target_seq: 11 });
  m.handle('not json');
  m.handle({ type: 'error', code: 'muted', message: 'muted', ref: 'c1' });
  assert.deepEqual(changes.map((c) => c.kind), ['welcome', 'chat', 'likes', 'presence', 'gift', 'deleted', 'system', 'error']);
  assert.equal(m.state.seq, 15);
  assert.equal(m.state.likes, 9);
  assert.equal(m.state.viewers, 7);
  assert.equal(changes[4].emoji, '💍');
  assert.deepEqual(m.state.chat.map((c) => c.seq), [9, 10]);
});

test('a gap in the sequence is filled from the events API before going on', async () => {
  const asked = [];
  const { m, changes } = model(async (after) => {
    asked.push(after);
    return { events: [chat(3, 'three'), chat(4, 'four')], last_seq: 5, complete: true };
  });
  m.handle({ type: 'welcome', seq: 2, history: [] });
  m.handle(chat(5, 'five'));
  assert.equal(changes.length, 1, 'held until the gap is filled');
  await flush();
  await flush();
  assert.deepEqual(asked, [2], 'asked for the events after the last one seen');
  assert.deepEqual(changes.filter((c) => c.kind === 'chat').map((c) => c.message.text), ['three', 'four', 'five']);
});

test('after a reconnect, missed events are fetched and old history is not repeated', async () => {
  const { m, changes } = model(async (after) => ({ events: [chat(after + 1, 'missed')], last_seq: after + 2, complete: true }));
  m.handle({ type: 'welcome', seq: 4, history: [chat(4, 'four')] });
  m.handle({ type: 'welcome', seq: 6, history: [chat(4, 'four'), chat(5, 'missed')] });
  await flush();
  await flush();
  const texts = changes.filter((c) => c.kind === 'chat' || c.kind === 'welcome');
  assert.equal(changes[1].reconnect, true);
  assert.deepEqual(m.state.chat.map((c) => c.seq), [4, 5], 'no duplicates');
  assert.equal(m.state.seq, 6);
  assert.ok(texts.length >= 2);
  m.handle(chat(7, 'seven'));
  assert.equal(m.state.chat.at(-1).text, 'seven');
});

test('chat validation, message builders and the like batcher', async () => {
  assert.equal(protocol.chatProblem('  '), 'empty');
  assert.equal(protocol.chatProblem('字'.repeat(301)), 'too_long');
  assert.equal(protocol.chatProblem('😀'.repeat(300)), null, 'counts code points like the server');
  assert.equal(protocol.chatProblem('a\u0007b'), 'control');
  assert.equal(protocol.chatProblem('line one\nline two'), null);
  assert.deepEqual(protocol.messages.like(50), { type: 'like', count: 10 });
  const gift = protocol.messages.gift('rose', 3);
  assert.equal(gift.count, 3);
  assert.ok(gift.idempotency_key.length > 8 && gift.idempotency_key.length <= 64);
  assert.notEqual(protocol.messages.gift('rose', 1).idempotency_key, gift.idempotency_key);
  const sent = [];
  const batcher = protocol.createLikeBatcher((m) => sent.push(m.count), 10);
  for (let i = 0; i < 25; i++) batcher.tap(1);
  await new Promise((r) => setTimeout(r, 30));
  assert.deepEqual(sent, [10, 10, 5]);
});

// ---- reconnecting socket ------------------------------------------------------------------------
function fakeTimers() {
  let now = 0;
  let next = 1;
  const pending = new Map();
  return {
    setTimeout(fn, ms) { const id = next++; pending.set(id, { at: now + ms, fn }); return id; },
    clearTimeout(id) { pending.delete(id); },
    advance(ms) {
      const end = now + ms;
      for (;;) {
        const due = [...pending.entries()].filter(([, t]) => t.at <= end).sort((a, b) => a[1].at - b[1].at)[0];
        if (!due) break;
        pending.delete(due[0]);
        now = due[1].at;
        due[1].fn();
      }
      now = end;
    },
  };
}

function fakeTransport() {
  const connections = [];
  return {
    connections,
    open(url, handlers) {
      const conn = { url, handlers, sent: [], closed: false };
      connections.push(conn);
      return { send: (text) => conn.sent.push(text), close: () => { conn.closed = true; } };
    },
  };
}

test('the socket queues sends while connecting and flushes them in order on open', () => {
  const timers = fakeTimers();
  const transport = fakeTransport();
  const states = [];
  const socket = createRoomSocket({ url: () => 'wss://x/ws/rooms/r', open: transport.open, timers, onState: (s) => states.push(s), pingEvery: 0 });
  assert.equal(socket.send({ type: 'chat', text: 'early' }), 'queued');
  socket.reconnectNow();
  assert.equal(transport.connections.length, 0, 'reconnectNow() does not open a socket that was never started');
  socket.connect();
  socket.connect();
  assert.equal(transport.connections[0].closed, true, 'a second connect() replaces the first connection');
  transport.connections.shift();
  assert.equal(socket.send({ type: 'chat', text: 'while connecting' }), 'queued');
  transport.connections[0].handlers.open();
  assert.deepEqual(transport.connections[0].sent.map((t) => JSON.parse(t).text), ['early', 'while connecting']);
  assert.equal(socket.send({ type: 'like', count: 1 }), 'sent');
  assert.deepEqual(states, ['connecting', 'connecting', 'open']);
});

test('a lost socket reconnects with backoff (new URL each time); a kicked one stays closed', () => {
  const timers = fakeTimers();
  const transport = fakeTransport();
  let tokens = 0;
  const states = [];
  const socket = createRoomSocket({ url: () => `wss://x/ws?token=t${++tokens}`, open: transport.open, timers, onState: (s, i) => states.push([s, i.delay]), pingEvery: 0, minDelay: 500, maxDelay: 4000 });
  socket.connect();
  transport.connections[0].handlers.open();
  transport.connections[0].handlers.close(1006, '');
  assert.equal(socket.state, 'waiting');
  socket.send({ type: 'chat', text: 'during the outage' });
  timers.advance(1000);
  assert.equal(transport.connections.length, 2);
  assert.equal(transport.connections[1].url, 'wss://x/ws?token=t2');
  transport.connections[1].handlers.error({ errMsg: 'fail' });
  timers.advance(400);
  assert.equal(transport.connections.length, 2, 'the second wait is longer');
  timers.advance(1200);
  assert.equal(transport.connections.length, 3);
  transport.connections[2].handlers.open();
  assert.deepEqual(transport.connections[2].sent.map((t) => JSON.parse(t).text), ['during the outage']);
  transport.connections[2].handlers.close(4000, 'kicked by the host');
  assert.equal(socket.state, 'closed');
  timers.advance(60000);
  assert.equal(transport.connections.length, 3, 'no reconnect after a kick');
  assert.equal(socket.send({ type: 'chat', text: 'x' }), 'dropped');
});

test('a silent connection is detected by ping and re-opened', () => {
  const timers = fakeTimers();
  const transport = fakeTransport();
  const socket = createRoomSocket({ url: () => 'wss://x', open: transport.open, timers, pingEvery: 1000, pongTimeout: 500, minDelay: 100 });
  socket.connect();
  transport.connections[0].handlers.open();
  timers.advance(1000);
  assert.deepEqual(transport.connections[0].sent.map((t) => JSON.parse(t).type), ['ping']);
  transport.connections[0].handlers.message('{"type":"pong"}');
  timers.advance(900);
  assert.equal(transport.connections.length, 1, 'an answer keeps it');
  timers.advance(200);
  timers.advance(600);
  assert.equal(transport.connections[0].closed, true, 'no answer: closed');
  timers.advance(200);
  assert.equal(transport.connections.length, 2, 'and re-opened');
  socket.close();
});

// ---- player choice ---------------------------------------------------------------------------------
test('the player is chosen from the stream API: FLV live-player, else HLS video, else wait', () => {
  const info = { live: true, flv: 'https://s/live/r.flv', hls: 'https://s/hls/r/index.m3u8', websocket: 'wss://s/ws/rooms/r' };
  assert.deepEqual(stream.choosePlayer(info, { livePlayer: true }), { kind: 'live-player', src: info.flv, protocol: 'flv', reason: '', message: '' });
  assert.equal(stream.choosePlayer(info, { livePlayer: false }).src, info.hls);
  assert.equal(stream.choosePlayer(info, { livePlayer: false }, 'jwt').src, `${info.hls}?token=jwt`);
  assert.equal(stream.choosePlayer({ live: false }, { livePlayer: true }).reason, 'offline');
  assert.equal(stream.choosePlayer({ live: true }, { livePlayer: true }).reason, 'starting');
  assert.equal(stream.choosePlayer({ live: true, bridge_unavailable: 'VP8' }, {}).reason, 'unsupported');
  assert.equal(stream.socketUrl(info, 'https://s', 'r', 'a b'), 'wss://s/ws/rooms/r?token=a%20b');
  assert.equal(stream.socketUrl(null, 'https://s', 'r', null), 'wss://s/ws/rooms/r');
});

// ---- live-pusher codes (the host page) ---------------------------------------------------------------
test('live-pusher codes are in words, Chinese and English; the ones that stop the push are errors', () => {
  const codes = require(join(miniprogram, 'core', 'pusher-codes.js'));
  const expected = { '-1301': /摄像头/, '-1302': /麦克风/, '-1307': /网络断开/, 1101: /网络状况不佳/, 3004: /服务器断开/, 3005: /读写失败/, 5001: /系统打断/ };
  for (const [code, zh] of Object.entries(expected)) {
    const entry = codes.describe(Number(code));
    assert.match(entry.zh, zh, `${code} in Chinese`);
    assert.ok(entry.en && !/[\u4e00-\u9fff]/.test(entry.en), `${code} in English`);
    assert.equal(codes.message(code, 'en'), entry.en);
  }
  for (const code of [-1301, -1302, -1307, 3004, 5001]) assert.equal(codes.describe(code).level, 'error', `${code} stops the push`);
  for (const code of [1101, 3005]) assert.equal(codes.describe(code).level, 'warn', `${code}: the pusher retries`);
  assert.equal(codes.describe(1002).level, 'live');
  assert.equal(codes.describe(-9999).level, 'error');
  assert.match(codes.describe(-9999).zh, /-9999/);
  assert.equal(codes.describe(2027).level, 'info', 'unknown positive codes are not shown as errors');
});
