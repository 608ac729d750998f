// Whom I block (拉黑), for this session: loaded once per login from `GET /api/me/blocks`;
// a block or unblock answers with the new list. Views ask `isBlocked(id)` to hide chat and
// listen for `blockschange` (on window) to hide what is already shown.
import { api } from './api.js';
import * as session from './session.js';

let blocked = new Set();
let loadedFor = null;

function set(cards) {
  blocked = new Set((cards || []).map((c) => c.user_id));
  window.dispatchEvent(new CustomEvent('blockschange'));
}

/** Reads the list for the logged-in user (once per user); logged out: nobody. */
export async function loadBlocks() {
  const me = session.user();
  if (!me) { loadedFor = null; blocked = new Set(); return blocked; }
  if (loadedFor === me.id) return blocked;
  try {
    set(await api.blocks());
    loadedFor = me.id;
  } catch (_) { /* the chat still shows; blocking can be retried */ }
  return blocked;
}

export const isBlocked = (userId) => blocked.has(userId);

/** The ids I block. */
export const blockedIds = () => [...blocked];

export async function block(userId) { set(await api.block(userId)); }
export async function unblock(userId) { set(await api.unblock(userId)); }
