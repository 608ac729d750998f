// Shared test harness: start a real `queqiao` binary on free ports and a headless Chromium.
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { createSocket } from 'node:dgram';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const repoRoot = join(here, '..', '..');
export const artifacts = join(here, 'artifacts');
mkdirSync(artifacts, { recursive: true });

export const TOKEN = 'browser-test-token';

function freeTcpPort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => { const { port } = srv.address(); srv.close(() => resolve(port)); });
  });
}

function freeUdpPort() {
  return new Promise((resolve, reject) => {
    const sock = createSocket('udp4');
    sock.once('error', reject);
    sock.bind(0, '127.0.0.1', () => { const { port } = sock.address(); sock.close(() => resolve(port)); });
  });
}

/** Starts queqiao; resolves to { base, stop() } once /healthz answers. */
export async function startServer(extraArgs = []) {
  return launchServer(['--publish-token', TOKEN, '--standalone', ...extraArgs]);
}

/**
 * Starts queqiao in accounts mode (no --standalone) with `--seed-demo`: an admin, the host
 * `hongniang` and her public room `demo`. Resolves to the startServer() result plus
 * `accounts: { admin: {login, password}, host: {login, password} }` and `room: 'demo'`.
 */
export async function startAccountsServer(extraArgs = []) {
  const server = await launchServer(['--seed-demo', ...extraArgs]);
  const line = /Demo accounts \(shown once\): admin \/ (\S+)\s+host hongniang \/ (\S+)/.exec(server.output());
  if (!line) {
    await server.stop();
    throw new Error(`no demo accounts in the output:\n${server.output()}`);
  }
  return {
    ...server,
    room: 'demo',
    accounts: {
      admin: { login: 'admin', password: line[1] },
      host: { login: 'hongniang', password: line[2] },
    },
  };
}

async function launchServer(args) {
  const bin = process.env.QUEQIAO_BIN || join(repoRoot, 'target', 'debug', 'queqiao');
  const http = await freeTcpPort();
  const udp = await freeUdpPort();
  const rtmp = await freeTcpPort();
  const dataDir = mkdtempSync(join(tmpdir(), 'queqiao-browser-'));
  const child = spawn(bin, [
    '--http', `127.0.0.1:${http}`, '--udp', `127.0.0.1:${udp}`,
    '--data-dir', dataDir, '--rtmp', `127.0.0.1:${rtmp}`,
    // Every browser in these tests is on 127.0.0.1: the per-address abuse limits are
    // tested in tests/tests/hardening.rs, not here.
    '--limits-exempt', '127.0.0.0/8', ...args,
  ], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'warn' } });
  let output = '';
  child.stdout.on('data', (d) => { output += d; });
  child.stderr.on('data', (d) => { output += d; });
  const base = `http://127.0.0.1:${http}`;
  const deadline = Date.now() + 30000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`queqiao exited early:\n${output}`);
    try {
      const r = await fetch(`${base}/healthz`);
      if (r.ok) break;
    } catch (_) { /* not up yet */ }
    if (Date.now() > deadline) { child.kill('SIGKILL'); throw new Error(`queqiao did not start:\n${output}`); }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    base,
    /** The RTMP ingest server URL (`rtmp://127.0.0.1:PORT/live`). */
    rtmpServer: `rtmp://127.0.0.1:${rtmp}/live`,
    output: () => output,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 10000);
        await exited;
        clearTimeout(timer);
      }
      rmSync(dataDir, { recursive: true, force: true });
      return child.exitCode;
    },
  };
}

/** Calls the REST API: JSON in and out; throws with the server's error on failure. */
export async function apiCall(base, method, path, body, token) {
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(`${base}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) throw new Error(`${method} ${path} → ${response.status} ${text}`);
  return data;
}

/** Logs in; resolves to { token, expires_at, user }. */
export function login(base, loginName, password) {
  return apiCall(base, 'POST', '/api/auth/login', { login: loginName, password });
}

/** Registers a viewer account; resolves to { token, expires_at, user }. */
export function register(base, username, nickname, password = 'correct-horse-1') {
  return apiCall(base, 'POST', '/api/auth/register', { username, password, nickname });
}

/** Adds coins to a user's wallet with the admin API. */
export function topUp(base, adminToken, userId, amount) {
  return apiCall(base, 'POST', `/api/users/${userId}/coins`, { amount, idempotency_key: `topup-${userId}-${Date.now()}` }, adminToken);
}

const CHROMIUM_ARGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
  '--allow-loopback-in-peer-connection', '--autoplay-policy=no-user-gesture-required',
  '--disable-features=WebRtcHideLocalIpsWithMdns',
];

/** Launches Debian's Chromium headless with fake media devices. */
export async function launchBrowser() {
  const userDataDir = mkdtempSync(join(tmpdir(), 'queqiao-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1100, height: 900 },
  });
  return {
    context,
    async newPage() {
      const page = await context.newPage();
      page.on('console', (msg) => { if (msg.type() === 'error') console.log(`[page] ${msg.text()}`); });
      return page;
    },
    async close() {
      await context.close();
      rmSync(userDataDir, { recursive: true, force: true });
    },
  };
}

/**
 * Launches Chromium (same flags as launchBrowser) for several independent users: each
 * `newContext()` has its own storage (cookies, localStorage), unlike launchBrowser's one
 * persistent context.
 */
export async function launchIsolatedBrowser() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: CHROMIUM_ARGS,
  });
  return {
    browser,
    /** A new isolated context (viewport defaults to a phone). */
    async newContext(options = {}) {
      return browser.newContext({ viewport: { width: 414, height: 860 }, ...options });
    },
    /** A page in a new context, with console errors and page errors echoed. */
    async newPage(options = {}) {
      const context = await this.newContext(options);
      const page = await context.newPage();
      page.on('console', (msg) => { if (msg.type() === 'error') console.log(`[page] ${msg.text()}`); });
      page.on('pageerror', (err) => console.log(`[page error] ${err.message}`));
      return page;
    },
    close: () => browser.close(),
  };
}

/** Polls `fn` until it returns a truthy value or the timeout passes. */
export async function waitFor(fn, { timeout = 20000, interval = 250, message = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    last = await fn();
    if (last) return last;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${message}; last value: ${JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, interval));
  }
}

/** Chinese characters and full-width punctuation. */
export const CJK = /[\u3400-\u9fff\uf900-\ufaff\u3000-\u303f\uff01-\uff60]/;

/** Visible text (and labels) outside user content (`translate="no"`) that is still Chinese. */
export const chineseLeft = (page) => page.evaluate((source) => {
  const cjk = new RegExp(source);
  const found = [];
  const userContent = (el) => el.closest('[translate="no"]');
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const el = node.parentElement;
    if (!el || userContent(el) || !cjk.test(node.textContent)) continue;
    if (!el.checkVisibility({ visibilityProperty: true })) continue;
    found.push(node.textContent.trim());
  }
  for (const el of document.querySelectorAll('[placeholder], [aria-label], [title]')) {
    if (userContent(el) || !el.checkVisibility({ visibilityProperty: true })) continue;
    for (const attr of ['placeholder', 'aria-label', 'title']) {
      const value = el.getAttribute(attr);
      if (value && cjk.test(value)) found.push(`${attr}=${value}`);
    }
  }
  if (cjk.test(document.title)) found.push(`title=${document.title}`);
  return found;
}, CJK.source);


/**
 * Publishes the page's fake camera to `room` by WHIP (H.264) as the holder of `token`, from
 * the quick test page; resolves once the publisher is connected (window.publisher).
 */
export async function publishFromPage(page, base, room, token) {
  await page.goto(`${base}/#/quick`);
  await page.evaluate(async ({ room: id, token: jwt }) => {
    const { publish } = await import('./whip.js');
    const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 360 }, audio: true });
    window.publisher = await publish(`${location.origin}/whip/${encodeURIComponent(id)}`, jwt, stream, 'video/H264', { dataChannel: false });
  }, { room, token });
}

/** A phone (390×844, touch) and a laptop screen, as the issue 16 tests use them. */
export const PHONE = { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 };
export const DESKTOP = { viewport: { width: 1366, height: 768 } };

/**
 * Pages of an isolated browser, each logged in as `session` (a login answer) or not;
 * `closeAll()` closes every page opened.
 */
export function sessionPages(isolated) {
  const opened = [];
  return {
    async open(session, options = PHONE) {
      const page = await isolated.newPage(options);
      opened.push(page);
      if (session) {
        await page.addInitScript((value) => {
          if (!localStorage.getItem('queqiao.session')) localStorage.setItem('queqiao.session', value);
        }, JSON.stringify(session));
      }
      return page;
    },
    async closeAll() {
      for (const page of opened.splice(0)) await page.close().catch(() => {});
    },
  };
}

/** The texts of the chat lines that arrived (not one's own still on their way). */
export const chatTexts = (page) => page.$$eval('#chat-list .chat-msg:not(.chat-pending) .chat-text', (els) => els.map((e) => e.textContent));
