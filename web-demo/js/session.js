// Who is logged in. The session (token + account) lives in localStorage; every change is
// announced with a `sessionchange` event on window.
import { api, storedSession, storeSession } from './api.js';

export function current() {
  return storedSession();
}

export function user() {
  const session = storedSession();
  return session ? session.user : null;
}

export function isHost() {
  const u = user();
  return !!u && (u.role === 'host' || u.role === 'admin');
}

function changed() {
  window.dispatchEvent(new CustomEvent('sessionchange'));
}

export async function login(loginName, password) {
  const session = await api.login(loginName, password);
  storeSession(session);
  changed();
  return session.user;
}

export async function register(fields) {
  const session = await api.register(fields);
  storeSession(session);
  changed();
  return session.user;
}

export function logout() {
  storeSession(null);
  changed();
}

/** Re-reads the account (role changes, profile edits elsewhere). */
export async function refresh() {
  const session = storedSession();
  if (!session) return null;
  try {
    const me = await api.me();
    storeSession({ ...session, user: me });
    changed();
    return me;
  } catch (_) {
    return storedSession() ? session.user : null;
  }
}

export function updateUser(me) {
  const session = storedSession();
  if (!session) return;
  storeSession({ ...session, user: me });
  changed();
}
