// One's own chat messages on their way to the room: each is shown at once (sending), sent
// with a `client_id`, and confirmed when the room echoes it back (`ref`). One message is in
// flight at a time, so they arrive in the order typed. A message the server refuses for the
// rate limit waits (queued) and is resent after a pause; any other refusal, or no echo at
// all, marks that message "not sent" with a resend button. Nothing typed is dropped silently.
import { t } from './i18n.js';
import { errorText } from './api.js';
import { protocol } from './room-link.js';

const ECHO_TIMEOUT_MS = 10000;
const RETRY_MS = 800;
const MAX_RATE_RETRIES = 8;

/** options: send(message), chat (createChat result). */
export function createChatOutbox({ send, chat }) {
  const pending = new Map(); // client_id → entry, until confirmed
  const queue = []; // waiting to be sent, in typing order
  let inFlight = null;
  let order = 0;
  let pauseUntil = 0;
  let pumpTimer = null;
  let stopped = false;

  function schedule() {
    if (pumpTimer || stopped) return;
    pumpTimer = setTimeout(() => { pumpTimer = null; pump(); }, Math.max(0, pauseUntil - Date.now()));
  }

  function pump() {
    if (inFlight || !queue.length || stopped) return;
    if (Date.now() < pauseUntil) { schedule(); return; }
    const entry = queue.shift();
    inFlight = entry;
    entry.view.set(entry.rateRetries ? 'queued' : 'sending');
    clearTimeout(entry.timer);
    entry.timer = setTimeout(() => fail(entry, t('error.network')), ECHO_TIMEOUT_MS);
    send(protocol.messages.chat(entry.text, entry.id));
  }

  function enqueue(entry) {
    queue.push(entry);
    queue.sort((a, b) => a.order - b.order);
    pump();
  }

  function fail(entry, reason) {
    clearTimeout(entry.timer);
    if (inFlight === entry) inFlight = null;
    entry.view.set('failed', () => {
      entry.rateRetries = 0;
      entry.view.set('sending');
      enqueue(entry);
    }, reason);
    pump();
  }

  return {
    /** Sends `text` (already checked with protocol.chatProblem). */
    submit(text) {
      const entry = { id: protocol.newId('c'), text, order: order++, rateRetries: 0, timer: null, view: null };
      entry.view = chat.pending(entry.id, text);
      pending.set(entry.id, entry);
      enqueue(entry);
      return entry.id;
    },
    /** The room echoed a chat message: confirms ours and sends the next. */
    confirmed(message) {
      const entry = message && message.ref && pending.get(message.ref);
      if (!entry) return;
      clearTimeout(entry.timer);
      pending.delete(entry.id);
      if (inFlight === entry) inFlight = null;
      pump();
    },
    /** An `error` event; returns true when it was about one of our messages. */
    refused(change) {
      const entry = change.ref && pending.get(change.ref);
      if (!entry) return false;
      clearTimeout(entry.timer);
      if (inFlight === entry) inFlight = null;
      if (change.code === 'rate_limited' && entry.rateRetries < MAX_RATE_RETRIES) {
        entry.rateRetries += 1;
        pauseUntil = Math.max(pauseUntil, Date.now() + RETRY_MS * entry.rateRetries);
        entry.view.set('queued');
        enqueue(entry);
        return true;
      }
      fail(entry, errorText(change));
      return true;
    },
    /** Messages not yet confirmed. */
    get size() { return pending.size; },
    stop() {
      stopped = true;
      if (pumpTimer) clearTimeout(pumpTimer);
      for (const entry of pending.values()) clearTimeout(entry.timer);
    },
  };
}
