// The chat panel shared by the viewer and the host studio: a live log of messages (text
// only — a message is never parsed as HTML), system lines (redrawn when the language
// changes), one's own messages while they are on their way (sending / queued / not sent,
// with a resend button), and the message input.
import { h, avatar } from '../dom.js';
import { t } from '../i18n.js';
import { protocol } from '../room-link.js';

const MAX_ITEMS = 200;

/** A user's name as user content (never translated). */
export function userName(user) {
  return h('span', { class: 'chat-who', translate: 'no', text: (user && user.nickname) || '?' });
}

/**
 * options: onSend(text) → true when accepted; moderation ({ mute(user), remove(seq) }) adds
 * host controls to other people's messages (never to the host's or one's own); selfId() →
 * the logged-in user's id; onName(user) makes names open that user (the profile card);
 * compose (default true) shows the input; hidden(userId) → true for users whose messages are
 * not shown (blocked by me).
 */
export function createChat({ onSend, moderation = null, compose = true, selfId = () => null, onName = null, hidden = () => false } = {}) {
  const list = h('ol', { class: 'chat-list', id: 'chat-list', role: 'log', 'aria-live': 'polite', 'aria-relevant': 'additions', i18nAttr: { 'aria-label': 'viewer.chat' } });
  const input = h('input', {
    id: 'chat-input', name: 'text', autocomplete: 'off', enterkeyhint: 'send',
    maxlength: protocol.MAX_CHAT_CHARS, i18nAttr: { placeholder: 'viewer.chatPlaceholder', 'aria-label': 'viewer.chatPlaceholder' },
  });
  const send = h('button', { type: 'submit', id: 'chat-send', class: 'button-small', i18n: 'viewer.send' });
  const form = compose ? h('form', { class: 'chat-form', id: 'chat-form', autocomplete: 'off' }, input, send) : null;
  const notice = h('p', { class: 'chat-notice', role: 'status', hidden: true });

  if (form) {
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      const text = input.value;
      const problem = protocol.chatProblem(text);
      if (problem === 'empty') return;
      if (problem) { setNotice(t('viewer.chatTooLong'), 'error'); return; }
      if (onSend(text.trim()) !== false) input.value = '';
    });
  }

  function nearBottom() {
    return list.scrollHeight - list.scrollTop - list.clientHeight < 60;
  }

  function push(item) {
    const stick = nearBottom();
    list.append(item);
    while (list.childElementCount > MAX_ITEMS) list.firstElementChild.remove();
    if (stick) list.scrollTop = list.scrollHeight;
  }

  function messageItem(message) {
    const user = message.user || {};
    const isHost = user.role === 'host' || user.role === 'admin';
    const mine = message.mine || (user.id && user.id === selfId());
    const li = h('li', { class: `chat-msg${mine ? ' chat-mine' : ''}`, dataset: { seq: message.seq ?? '', ref: message.ref || '', user: user.id ?? '' } },
      avatar(user, 'xs'),
      isHost ? h('span', { class: 'badge badge-host', i18n: 'profile.role.host' }) : null,
      onName && user.id
        ? h('button', { type: 'button', class: `chat-name link-name${isHost ? ' chat-host' : ''}`, translate: 'no', text: user.nickname || '?', dataset: { user: user.id }, on: { click: () => onName(user) } })
        : h('span', { class: `chat-name${isHost ? ' chat-host' : ''}`, translate: 'no', text: user.nickname || '?' }),
      // textContent: whatever the message says, it stays text.
      h('span', { class: 'chat-text', translate: 'no', text: message.text }));
    if (moderation && !mine && user.id && !isHost) {
      li.append(h('span', { class: 'chat-tools' },
        h('button', { type: 'button', class: 'link-button', i18n: 'studio.mute', on: { click: () => moderation.mute(user) } }),
        message.seq ? h('button', { type: 'button', class: 'link-button', i18n: 'common.delete', on: { click: () => moderation.remove(message.seq) } }) : null));
    }
    return li;
  }

  function setNotice(text, kind = 'info') {
    notice.textContent = text || '';
    notice.dataset.kind = kind;
    notice.hidden = !text;
  }

  // System lines keep how to draw themselves, so a language change redraws them.
  const drawn = new Map();
  function drawLine(li) {
    const parts = drawn.get(li)();
    li.replaceChildren(...[].concat(parts).filter((p) => p !== null && p !== undefined));
  }
  const relabel = () => {
    for (const li of drawn.keys()) {
      if (li.isConnected) drawLine(li);
      else drawn.delete(li);
    }
  };
  window.addEventListener('langchange', relabel);

  function pendingItem(ref, text) {
    const status = h('span', { class: 'chat-state', role: 'status' });
    const li = h('li', { class: 'chat-msg chat-mine chat-pending', dataset: { ref, state: 'sending' } },
      h('span', { class: 'chat-text', translate: 'no', text }), status);
    return { li, status };
  }

  return {
    el: h('div', { class: 'chat' }, list, notice, form),
    input,
    add(message) {
      if (message.user && message.user.id && hidden(message.user.id)) return;
      const item = messageItem(message);
      const pending = message.ref && list.querySelector(`.chat-pending[data-ref="${CSS.escape(message.ref)}"]`);
      if (pending) pending.replaceWith(item);
      else push(item);
    },
    /**
     * Shows one's own message while it is on its way; returns { set(state, onResend) } with
     * state 'sending' | 'queued' | 'failed' | 'gone' (gone: remove it).
     */
    pending(ref, text) {
      const { li, status } = pendingItem(ref, text);
      push(li);
      const draw = (state, onResend, reason) => {
        li.dataset.state = state;
        const label = { sending: 'viewer.sending', queued: 'viewer.queued', failed: 'viewer.sendFailed' }[state];
        status.replaceChildren(h('small', { i18n: label }), reason ? h('small', { class: 'chat-reason', text: ` · ${reason}` }) : null,
          state === 'failed' && onResend ? h('button', { type: 'button', class: 'link-button chat-resend', i18n: 'viewer.resend', on: { click: onResend } }) : null);
      };
      draw('sending');
      return {
        set(state, onResend, reason) {
          if (state === 'gone') { li.remove(); return; }
          if (li.isConnected) draw(state, onResend, reason);
        },
      };
    },
    /** A system line: `render()` → text, nodes or an array of them (redrawn on language change). */
    system(render, kind = 'system') {
      const li = h('li', { class: `chat-line chat-${kind}` });
      drawn.set(li, typeof render === 'function' ? render : () => render);
      drawLine(li);
      push(li);
      while (drawn.size > MAX_ITEMS * 2) drawn.delete(drawn.keys().next().value);
    },
    destroy() { window.removeEventListener('langchange', relabel); },
    remove(seq) {
      const el = list.querySelector(`[data-seq="${CSS.escape(String(seq))}"]`);
      if (el) el.replaceChildren(h('span', { class: 'chat-deleted', i18n: 'viewer.deleted' }));
    },
    /** Removes the lines a user already wrote (just blocked). */
    hideUser(userId) {
      list.querySelectorAll(`.chat-msg[data-user="${CSS.escape(String(userId))}"]`).forEach((el) => el.remove());
    },
    setNotice,
    setEnabled(enabled) {
      if (!form) return;
      input.disabled = !enabled;
      send.disabled = !enabled;
    },
  };
}
