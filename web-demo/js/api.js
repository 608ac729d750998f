// The REST client. Errors always become ApiError with the server's {code, message, field}.
import { t } from './i18n.js';

const TOKEN_KEY = 'queqiao.session';

export class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.code = error.code || (status === 0 ? 'network' : 'http');
    this.field = error.field || null;
  }
}

/** The stored session: { token, expires_at, user } or null. */
export function storedSession() {
  try {
    const session = JSON.parse(localStorage.getItem(TOKEN_KEY) || 'null');
    if (session && session.token && (!session.expires_at || session.expires_at * 1000 > Date.now())) return session;
  } catch (_) { /* corrupt or blocked */ }
  return null;
}

export function storeSession(session) {
  try {
    if (session) localStorage.setItem(TOKEN_KEY, JSON.stringify(session));
    else localStorage.removeItem(TOKEN_KEY);
  } catch (_) { /* storage blocked */ }
}

export function token() {
  const session = storedSession();
  return session ? session.token : null;
}

/** fetch + JSON + bearer token + ApiError. `body` objects are sent as JSON, a Blob raw. */
export async function request(method, path, body, { auth = true, signal } = {}) {
  const headers = {};
  const bearer = auth ? token() : null;
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  // A Blob (an image to upload) goes as it is, with its own type; anything else as JSON.
  const raw = typeof Blob !== 'undefined' && body instanceof Blob;
  if (raw) headers['Content-Type'] = body.type || 'application/octet-stream';
  else if (body !== undefined) headers['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined || raw ? body : JSON.stringify(body), signal });
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    throw new ApiError(0, { error: { code: 'network', message: t('error.network') } });
  }
  if (response.status === 204) return null;
  let data = null;
  const text = await response.text();
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
  if (!response.ok) {
    if (response.status === 401 && bearer) {
      // The token expired or was revoked: forget it so the UI offers a login.
      storeSession(null);
      window.dispatchEvent(new CustomEvent('sessionchange'));
    }
    throw new ApiError(response.status, data || { error: { code: 'http', message: text.slice(0, 200) || `HTTP ${response.status}` } });
  }
  return data;
}

const get = (path, opts) => request('GET', path, undefined, opts);
const enc = encodeURIComponent;

export const api = {
  register: (body) => request('POST', '/api/auth/register', body, { auth: false }),
  login: (login, password) => request('POST', '/api/auth/login', { login, password }, { auth: false }),
  me: () => get('/api/me'),
  user: (id) => get(`/api/users/${enc(id)}`, { auth: false }),
  updateMe: (change) => request('PATCH', '/api/me', change),
  wallet: () => get('/api/me/wallet'),
  rooms: (query = {}, opts) => {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null && v !== '') params.set(k, v);
    return get(`/api/rooms?${params}`, opts);
  },
  room: (id) => get(`/api/rooms/${enc(id)}`),
  createRoom: (body) => request('POST', '/api/rooms', body),
  updateRoom: (id, change) => request('PATCH', `/api/rooms/${enc(id)}`, change),
  closeRoom: (id) => request('DELETE', `/api/rooms/${enc(id)}`),
  stream: (id) => get(`/api/rooms/${enc(id)}/stream`),
  /** The room's ingest points for encoders (host or admin): {whip_url, rtmp: {server_url, stream_key, url} | null}. */
  ingest: (id) => get(`/api/rooms/${enc(id)}/ingest`),
  /** A new RTMP stream key (the old one stops working for new connections); same answer as ingest(). */
  rotateIngest: (id) => request('POST', `/api/rooms/${enc(id)}/ingest/rotate`),
  recordings: (id) => get(`/api/rooms/${enc(id)}/recordings`),
  chat: (id) => get(`/api/rooms/${enc(id)}/chat`),
  events: (id, after) => get(`/api/rooms/${enc(id)}/events?after=${enc(after)}`),
  gifts: () => get('/api/gifts', { auth: false }),
  sendGift: (id, body) => request('POST', `/api/rooms/${enc(id)}/gifts`, body),
  leaderboard: (id, show) => get(`/api/rooms/${enc(id)}/leaderboard${show ? `?show=${enc(show)}` : ''}`),
  packages: () => get('/api/wallet/packages', { auth: false }),
  recharge: (coins, idempotencyKey) => request('POST', '/api/me/recharges', { coins, idempotency_key: idempotencyKey }),
  recharges: () => get('/api/me/recharges'),
  followStatus: (userId) => get(`/api/users/${enc(userId)}/follow`),
  follow: (userId) => request('PUT', `/api/users/${enc(userId)}/follow`),
  unfollow: (userId) => request('DELETE', `/api/users/${enc(userId)}/follow`),
  follows: () => get('/api/me/follows'),
  block: (userId) => request('PUT', `/api/users/${enc(userId)}/block`),
  unblock: (userId) => request('DELETE', `/api/users/${enc(userId)}/block`),
  blocks: () => get('/api/me/blocks'),
  notices: (since) => get(`/api/me/notices${since ? `?since=${enc(since)}` : ''}`),
  viewers: (id) => get(`/api/rooms/${enc(id)}/viewers`),
  share: (id) => get(`/api/rooms/${enc(id)}/share`, { auth: false }),
  schedules: (id) => get(`/api/rooms/${enc(id)}/schedule`),
  schedule: (id, body) => request('POST', `/api/rooms/${enc(id)}/schedule`, body),
  unschedule: (id, sid) => request('DELETE', `/api/rooms/${enc(id)}/schedule/${enc(sid)}`),
  reserve: (sid) => request('POST', `/api/schedules/${enc(sid)}/reservation`),
  unreserve: (sid) => request('DELETE', `/api/schedules/${enc(sid)}/reservation`),
  reservations: () => get('/api/me/reservations'),
  /** An image (Blob/File) → {id, url, width, height}; kind: avatar | photo | cover. */
  upload: (kind, file) => request('POST', `/api/uploads?kind=${enc(kind)}`, file),
  mute: (id, userId, seconds) => request('POST', `/api/rooms/${enc(id)}/mutes`, { user_id: userId, seconds }),
  deleteMessage: (id, seq) => request('DELETE', `/api/rooms/${enc(id)}/messages/${enc(seq)}`),
};

/**
 * The user-facing text of an error, always in the UI's language: a field's validation
 * message (`error.field.{field}`), else the code's translation (`error.{code}`), else a
 * generic message by status — never the server's English. `context.notFound` names the
 * code to use for a 404 (`room_not_found` on room pages).
 */
export function errorText(err, context = {}) {
  if (!err) return '';
  if (err.code === 'validation' && err.field) {
    const key = `error.field.${err.field}`;
    const text = t(key, { year: new Date().getFullYear() - 18 });
    if (text !== key) return text;
  }
  const code = err.code === 'not_found' && context.notFound ? context.notFound : err.code;
  const translated = t(`error.${code}`);
  if (translated !== `error.${code}`) return translated;
  if (err.status === 404) return t('error.not_found');
  if (err.status >= 500) return t('error.internal');
  return t('error.http');
}
