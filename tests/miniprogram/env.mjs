// The mini-program test environment: jsdom as the DOM (its Event, CustomEvent and
// EventTarget replace Node's, or j-component events never fire), miniprogram-simulate for
// WeChat pages, and `wx` / `my` APIs whose network calls are real: wx.request → fetch,
// wx.connectSocket → a real WebSocket (the `ws` package) to the running queqiao.
import { JSDOM } from 'jsdom';
import { createRequire } from 'node:module';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';

const require = createRequire(import.meta.url);
const here = dirname(fileURLToPath(import.meta.url));
export const repoRoot = join(here, '..', '..');
export const miniprogram = join(repoRoot, 'web-demo', 'miniprogram');

// ---- DOM ------------------------------------------------------------------------------------
const dom = new JSDOM('<!doctype html><html><body></body></html>', { url: 'http://localhost/', pretendToBeVisual: true });
const GLOBALS = ['window', 'document', 'Event', 'CustomEvent', 'EventTarget', 'Node', 'Element', 'HTMLElement',
  'navigator', 'getComputedStyle', 'MutationObserver', 'DocumentFragment', 'Text'];
for (const name of GLOBALS) {
  Object.defineProperty(globalThis, name, { value: name === 'window' ? dom.window : dom.window[name], configurable: true, writable: true });
}

// ---- network: real HTTP and WebSocket --------------------------------------------------------
/** Records what the pages asked the platform to do (navigation, toasts…). */
export const calls = { navigateTo: [], toasts: [], stopPullDownRefresh: 0, titles: [], requests: [], sockets: [], pusher: [], clipboard: [] };

/** What wx.createLivePusherContext() returns: each call is recorded in calls.pusher as its
 *  method name; `pusherFails.start = 'reason'` makes the next start() fail. */
export const pusherFails = { start: null };
function livePusherContext() {
  const method = (name) => (options = {}) => {
    calls.pusher.push(name);
    const failure = name === 'start' ? pusherFails.start : null;
    pusherFails.start = name === 'start' ? null : pusherFails.start;
    setTimeout(() => {
      if (failure) { if (options.fail) options.fail({ errMsg: `${name}:fail ${failure}` }); } else if (options.success) options.success({ errMsg: `${name}:ok` });
      if (options.complete) options.complete({});
    }, 0);
  };
  return Object.fromEntries(['start', 'stop', 'pause', 'resume', 'switchCamera', 'toggleTorch', 'snapshot'].map((n) => [n, method(n)]));
}

function toQuery(data) {
  return Object.entries(data || {}).map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&');
}

/** fetch with the semantics mini-programs share: JSON bodies, parsed JSON answers, status in success. */
async function httpRequest({ url, method = 'GET', data, headers = {} }) {
  method = method.toUpperCase();
  let target = url;
  let body;
  if (data !== undefined && data !== null) {
    if (method === 'GET') target += (url.includes('?') ? '&' : '?') + toQuery(data);
    else body = typeof data === 'string' ? data : JSON.stringify(data);
  }
  calls.requests.push(`${method} ${new URL(target).pathname}`);
  const response = await fetch(target, { method, headers, body });
  const text = await response.text();
  let parsed = text;
  try { parsed = JSON.parse(text); } catch (_) { /* not JSON */ }
  return { status: response.status, data: parsed, headers: Object.fromEntries(response.headers) };
}

/** A SocketTask over a real WebSocket (both platforms' SocketTask shapes are alike). */
function socketTask(url) {
  const ws = new WebSocket(url);
  calls.sockets.push(url);
  const on = (event, map) => (fn) => ws.on(event, (...args) => fn(map(...args)));
  return {
    ws,
    onOpen: on('open', () => ({})),
    onMessage: on('message', (data, isBinary) => ({ data: isBinary ? data : data.toString() })),
    onClose: on('close', (code, reason) => ({ code, reason: reason.toString() })),
    onError: on('error', (err) => ({ errMsg: err.message })),
    send({ data, success, fail }) {
      ws.send(data, (err) => { if (err) { if (fail) fail({ errMsg: err.message }); } else if (success) success({}); });
    },
    close() { try { ws.close(); } catch (_) { ws.terminate(); } },
  };
}

const storage = new Map();
const clone = (v) => (v === undefined ? v : JSON.parse(JSON.stringify(v)));

/** Clears the shared storage (both platforms' stores are the same map). */
export function clearStorage() {
  storage.clear();
}

/** The parts of `wx` the pages use, implemented for real. */
export const wxApi = {
  // miniprogram-simulate says iOS; the pages behave by platform (no 充值 on iOS), so the
  // device is Android unless a test says otherwise.
  getDeviceInfo: () => ({ platform: 'android', system: 'Android 14' }),
  request({ url, method, data, header, success, fail, complete }) {
    httpRequest({ url, method, data, headers: header })
      .then((res) => { const r = { statusCode: res.status, data: res.data, header: res.headers }; if (success) success(r); if (complete) complete(r); })
      .catch((err) => { const r = { errMsg: `request:fail ${err.message}` }; if (fail) fail(r); if (complete) complete(r); });
    return { abort() {} };
  },
  connectSocket({ url }) { return socketTask(url); },
  getStorageSync: (key) => (storage.has(key) ? clone(storage.get(key)) : ''),
  setStorageSync: (key, value) => { storage.set(key, clone(value)); },
  removeStorageSync: (key) => { storage.delete(key); },
  stopPullDownRefresh: () => { calls.stopPullDownRefresh += 1; },
  navigateTo: ({ url }) => { calls.navigateTo.push(url); },
  navigateBack: () => {},
  showToast: ({ title }) => { calls.toasts.push(title); },
  setNavigationBarTitle: ({ title }) => { calls.titles.push(title); },
  canIUse: () => true,
  createLivePusherContext: () => livePusherContext(),
  setClipboardData: ({ data }) => { calls.clipboard.push(data); },
};

/** The parts of `my` (Alipay) the pages use: note `headers`, `status`, and fail on HTTP errors. */
export const myApi = {
  request({ url, method, data, headers, success, fail, complete }) {
    httpRequest({ url, method, data, headers })
      .then((res) => {
        if (res.status >= 400) {
          const r = { error: 19, errorMessage: 'http status error', status: res.status, data: res.data };
          if (fail) fail(r);
          if (complete) complete(r);
          return;
        }
        const r = { status: res.status, data: res.data, headers: res.headers };
        if (success) success(r);
        if (complete) complete(r);
      })
      .catch((err) => { const r = { error: 12, errorMessage: err.message }; if (fail) fail(r); if (complete) complete(r); });
  },
  connectSocket({ url, multiple }) {
    if (!multiple) throw new Error('the pages must use multiple: true');
    return socketTask(url);
  },
  getStorageSync: ({ key }) => ({ data: storage.has(key) ? clone(storage.get(key)) : null }),
  setStorageSync: ({ key, data }) => { storage.set(key, clone(data)); },
  removeStorageSync: ({ key }) => { storage.delete(key); },
  stopPullDownRefresh: () => { calls.stopPullDownRefresh += 1; },
  navigateTo: ({ url }) => { calls.navigateTo.push(url); },
  navigateBack: () => {},
  showToast: ({ content }) => { calls.toasts.push(content); },
  setNavigationBar: ({ title }) => { calls.titles.push(title); },
  getSystemInfoSync: () => ({ platform: 'test', app: 'alipay' }),
  setClipboard: ({ text }) => { calls.clipboard.push(text); },
};

/** Points the mini-program at `base` (config.js is a module the pages share). */
export function configure(base, overrides = {}) {
  const config = require(join(miniprogram, 'config.js'));
  Object.assign(config, { server: base, livePlayer: true }, overrides);
  return config;
}

/** Polls `fn` until it returns a truthy value. */
export async function waitFor(fn, { timeout = 20000, interval = 100, message = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    last = await fn();
    if (last) return last;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${message}; last value: ${JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, interval));
  }
}

// ---- WeChat: miniprogram-simulate --------------------------------------------------------------
let simulate = null;

/** The simulator's `wx` (with our APIs), put back when a WeChat page follows an Alipay one. */
let wxGlobal = null;

/** Loads miniprogram-simulate with our wx; built-in players expose their attributes as data. */
export function wechat() {
  if (simulate) return simulate;
  delete globalThis.my;
  simulate = require('miniprogram-simulate');
  Object.assign(globalThis.wx, wxApi);
  wxGlobal = globalThis.wx;
  const jComponent = require('j-component');
  // <live-player> and <video> are inert in the simulator; give them the properties the pages
  // set so tests can read src/mode/autoplay.
  jComponent.register({ id: 'live-player', tagName: 'wx-live-player', template: '<slot/>',
    properties: { src: { type: String, value: '' }, mode: { type: String, value: '' }, autoplay: { type: Boolean, value: false } } });
  jComponent.register({ id: 'live-pusher', tagName: 'wx-live-pusher', template: '<slot/>',
    properties: {
      url: { type: String, value: '' }, mode: { type: String, value: '' }, orientation: { type: String, value: '' }, aspect: { type: String, value: '' },
      autopush: { type: Boolean, value: false }, enableMic: { type: Boolean, value: true }, enableCamera: { type: Boolean, value: true },
      beauty: { type: Number, value: 0 }, whiteness: { type: Number, value: 0 }, devicePosition: { type: String, value: '' },
    } });
  jComponent.register({ id: 'video', tagName: 'wx-video', template: '<slot/>',
    properties: { src: { type: String, value: '' }, autoplay: { type: Boolean, value: false }, controls: { type: Boolean, value: false } } });
  return simulate;
}

const loaded = [];

/** The platform the mini-program modules were last loaded for: `platform/index.js` picks its
 * layer once, when first required, so switching platforms in one test file must forget
 * every cached mini-program module but the configuration. */
let loadedFor = null;
function usePlatform(name) {
  if (loadedFor !== null && loadedFor !== name) {
    for (const file of Object.keys(require.cache)) {
      // config.js stays: it holds what configure() set.
      if (file.startsWith(miniprogram) && file !== join(miniprogram, 'config.js')) delete require.cache[file];
    }
  }
  loadedFor = name;
}

/** Loads and attaches a WeChat page; resolves to the j-component wrapper. */
export function renderWechatPage(name) {
  const sim = wechat();
  delete globalThis.my;
  globalThis.wx = wxGlobal;
  usePlatform('wechat');
  const id = sim.load(join(miniprogram, 'pages', name, name), `${name}-page`, { rootPath: miniprogram });
  const page = sim.render(id);
  page.attach(document.createElement('parent-wrapper'));
  loaded.push(page.instance);
  return page;
}

/** Unloads every page still loaded (closes their sockets and timers), e.g. after a failure. */
export function unloadPages() {
  for (const instance of loaded.splice(0)) {
    if (typeof instance.onUnload === 'function' && !instance.stopped) instance.onUnload();
  }
}

// ---- Alipay: Page() captured, a minimal page instance with setData -----------------------------
/** Loads an Alipay page's definition (pages/x/x.js through platform/alipay.js). */
export function loadAlipayPage(name) {
  delete globalThis.wx;
  globalThis.my = myApi;
  usePlatform('alipay');
  let definition = null;
  globalThis.Page = (def) => { definition = def; };
  const file = join(miniprogram, 'pages', name, `${name}.js`);
  delete require.cache[require.resolve(file)];
  require(file);
  if (!definition) throw new Error(`${name}.js did not call Page()`);
  return definition;
}

/** An instance of a Page() definition: `data`, `setData` (top-level keys, as the pages use). */
export function alipayInstance(definition) {
  const page = Object.create(definition);
  page.data = clone(definition.data);
  page.setData = (change) => { Object.assign(page.data, clone(change)); };
  loaded.push(page);
  return page;
}
