// In-app notices (开播提醒): a followed host went live, or a reserved show starts. Live by
// `GET /ws/me` (reconnecting with backoff), and from `GET /api/me/notices` when the app
// starts, on login and every minute (so a lost socket loses nothing). Each new notice is a
// toast with a link into the room, and counts in the badge on 我的 until the follows page is
// seen. Notices already shown are remembered per user in localStorage.
import { h, toast } from './dom.js';
import { t } from './i18n.js';
import { api, token } from './api.js';
import * as session from './session.js';

const POLL_MS = 60000;
const SEEN_KEY = 'queqiao.notices.v1:';
const SAME_SHOW_MS = 10 * 60 * 1000;
const MAX_BACKOFF_MS = 30000;

let socket = null;
let pollTimer = null;
let retryTimer = null;
let backoff = 1000;
let user = null;
let unread = [];
const listeners = new Set();

/** A notice from either source: {kind, room_id, title, host: {id, nickname}, at}. */
function normalize(raw) {
  if (!raw || typeof raw.room_id !== 'string') return null;
  if (raw.host && typeof raw.host === 'object') {
    return { kind: raw.kind || 'live', room_id: raw.room_id, title: raw.title || '', host: raw.host, at: Number(raw.at) || Date.now() };
  }
  return {
    kind: 'live', room_id: raw.room_id, title: raw.title || '', at: Number(raw.started_at) || Date.now(),
    host: { id: raw.host_id, nickname: raw.host_nickname || '' }, live: raw.live,
  };
}

function seen() {
  try { return JSON.parse(localStorage.getItem(SEEN_KEY + user.id) || '{}') || {}; } catch (_) { return {}; }
}

function remember(map) {
  // Keep a day of it.
  const cutoff = Date.now() - 24 * 3600 * 1000;
  for (const [k, at] of Object.entries(map)) if (at < cutoff) delete map[k];
  try { localStorage.setItem(SEEN_KEY + user.id, JSON.stringify(map)); } catch (_) { /* blocked storage: toasts may repeat */ }
}

function changed() {
  for (const fn of listeners) fn(unread);
}

/** One notice: shown once (the same show by both sources counts once). */
function deliver(raw) {
  const notice = normalize(raw);
  if (!notice || !user || notice.live === false) return;
  const map = seen();
  const key = `${notice.kind}:${notice.room_id}`;
  if (map[key] && Math.abs(map[key] - notice.at) < SAME_SHOW_MS) return;
  map[key] = notice.at;
  remember(map);
  unread = [notice, ...unread.filter((n) => n.room_id !== notice.room_id)].slice(0, 20);
  changed();
  const text = t(notice.kind === 'scheduled_live' ? 'notice.scheduledLive' : 'notice.live', { name: '' }).trim();
  toast([
    h('span', { class: 'notice-who', translate: 'no', text: notice.host.nickname }), ` ${text} `,
    h('a', { class: 'notice-link', href: `#/room/${encodeURIComponent(notice.room_id)}`, dataset: { room: notice.room_id }, i18n: 'notice.watch' }),
  ], 'notice', 8000);
}

async function poll() {
  if (!user) return;
  try {
    for (const n of (await api.notices()).reverse()) deliver(n);
  } catch (_) { /* next round */ }
}

function connect() {
  const jwt = token();
  if (!jwt || socket) return;
  const url = new URL('/ws/me', location.href);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  url.searchParams.set('token', jwt);
  const ws = new WebSocket(url.toString());
  socket = ws;
  ws.onopen = () => { backoff = 1000; };
  ws.onmessage = (event) => {
    let message;
    try { message = JSON.parse(event.data); } catch (_) { return; }
    if (message && message.type === 'notice') deliver(message.notice);
  };
  ws.onclose = () => {
    if (socket !== ws) return;
    socket = null;
    if (!user) return;
    retryTimer = setTimeout(connect, backoff);
    backoff = Math.min(MAX_BACKOFF_MS, backoff * 2);
  };
}

function stop() {
  clearInterval(pollTimer);
  clearTimeout(retryTimer);
  pollTimer = null;
  const ws = socket;
  socket = null;
  if (ws) ws.close();
}

/** Follows the session: started for a logged-in user, stopped on logout. */
function sync() {
  const next = session.user();
  if (next && user && next.id === user.id) return;
  stop();
  user = next;
  unread = [];
  changed();
  if (!user) return;
  poll();
  pollTimer = setInterval(poll, POLL_MS);
  connect();
}

export function startNotices() {
  window.addEventListener('sessionchange', sync);
  sync();
}

/** fn(unread notices) on every change. */
export function onNotices(fn) {
  listeners.add(fn);
  fn(unread);
  return () => listeners.delete(fn);
}

/** The follows page was seen: the badge clears. */
export function markRead() {
  unread = [];
  changed();
}
