// One's own chat messages on their way to the room: each is shown at once (sending), sent
// with a `client_id`, and confirmed when the room echoes it back (`ref`). A message the
// server refuses for the rate limit is queued and resent in order after a pause; any other
// refusal, or no echo at all, marks that message "not sent" with a resend button. Nothing
// typed is ever dropped silently.
import { t } from './i18n.js';
import { errorText } from './api.js';
import { protocol } from './room-link.js';

const ECHO_TIMEOUT_MS = 10000;
const RETRY_MS = 800;
const MAX_RATE_RETRIES = 8;

/** options: send(message), chat (createChat result). */
export function createChatOutbox({ send, chat }) {
  const pending = new Map(); // client_id → entry
  const queue = []; // entries waiting for the rate limit, in typing order
  let order = 0;
  let pauseUntil = 0;
  let pumpTimer = null;

  function transmit(entry) {
    entry.view.set('sending');
    clearTimeout(entry.timer);
    entry.timer = setTimeout(() => fail(entry, t('error.network')), ECHO_TIMEOUT_MS);
    send(protocol.messages.chat(entry.text, entry.id));
  }

  function fail(entry, reason) {
    clearTimeout(entry.timer);
    const i = queue.indexOf(entry);
    if (i >= 0) queue.splice(i, 1);
    entry.view.set('failed', () => {
      entry.rateRetries = 0;
      enqueueOrSend(entry);
    }, reason);
  }

  function pump() {
    pumpTimer = null;
    const wait = pauseUntil - Date.now();
    if (wait > 0) { pumpTimer = setTimeout(pump, wait); return; }
    const entry = queue.shift();
    if (!entry) return;
    transmit(entry);
    // Spread the queued messages out: the server allows a few per second.
    pauseUntil = Date.now() + RETRY_MS;
    if (queue.length) pumpTimer = setTimeout(pump, RETRY_MS);
  }

  function enqueueOrSend(entry) {
    if (queue.length || Date.now() < pauseUntil) {
      entry.view.set('queued');
      queue.push(entry);
      queue.sort((a, b) => a.order - b.order);
      if (!pumpTimer) pumpTimer = setTimeout(pump, Math.max(0, pauseUntil - Date.now()));
    } else {
      transmit(entry);
    }
  }

  return {
    /** Sends `text` (already checked with protocol.chatProblem). */
    submit(text) {
      const entry = { id: protocol.newId('c'), text, order: order++, rateRetries: 0, timer: null, view: null };
      entry.view = chat.pending(entry.id, text);
      pending.set(entry.id, entry);
      enqueueOrSend(entry);
      return entry.id;
    },
    /** The room echoed a chat message: confirms ours. */
    confirmed(message) {
      const entry = message && message.ref && pending.get(message.ref);
      if (!entry) return;
      clearTimeout(entry.timer);
      pending.delete(entry.id);
    },
    /** An `error` event; returns true when it was about one of our messages. */
    refused(change) {
      const entry = change.ref && pending.get(change.ref);
      if (!entry) return false;
      clearTimeout(entry.timer);
      if (change.code === 'rate_limited' && entry.rateRetries < MAX_RATE_RETRIES) {
        entry.rateRetries += 1;
        pauseUntil = Math.max(pauseUntil, Date.now() + RETRY_MS * entry.rateRetries);
        entry.view.set('queued');
        queue.push(entry);
        queue.sort((a, b) => a.order - b.order);
        if (pumpTimer) clearTimeout(pumpTimer);
        pumpTimer = setTimeout(pump, Math.max(0, pauseUntil - Date.now()));
        return true;
      }
      fail(entry, errorText(change));
      return true;
    },
    /** Messages not yet confirmed. */
    get size() { return pending.size; },
    stop() {
      if (pumpTimer) clearTimeout(pumpTimer);
      for (const entry of pending.values()) clearTimeout(entry.timer);
    },
  };
}
