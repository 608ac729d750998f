// The chat panel shared by the viewer and the host studio: a live log of messages (text
// only — a message is never parsed as HTML), system lines, and the message input.
import { h, avatar } from '../dom.js';
import { t } from '../i18n.js';
import { protocol } from '../room-link.js';

const MAX_ITEMS = 200;

/**
 * options: onSend(text) → true when accepted; moderation ({ mute(user), remove(seq) }) adds
 * host controls to other people's messages; compose (default true) shows the input.
 */
export function createChat({ onSend, moderation = null, compose = true } = {}) {
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
    const li = h('li', { class: `chat-msg${message.mine ? ' chat-mine' : ''}`, dataset: { seq: message.seq ?? '' } },
      avatar(user, 'xs'),
      h('span', { class: `chat-name${isHost ? ' chat-host' : ''}`, text: user.nickname || '?' }),
      isHost ? h('span', { class: 'badge badge-host', i18n: 'profile.role.host' }) : null,
      // textContent: whatever the message says, it stays text.
      h('span', { class: 'chat-text', text: message.text }));
    if (moderation && !message.mine && user.id && !isHost) {
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

  return {
    el: h('div', { class: 'chat' }, list, notice, form),
    input,
    add(message) { push(messageItem(message)); },
    system(text, kind = 'system') { push(h('li', { class: `chat-line chat-${kind}`, text })); },
    remove(seq) {
      const el = list.querySelector(`[data-seq="${CSS.escape(String(seq))}"]`);
      if (el) el.replaceChildren(h('span', { class: 'chat-deleted', i18n: 'viewer.deleted' }));
    },
    setNotice,
    setEnabled(enabled) {
      if (!form) return;
      input.disabled = !enabled;
      send.disabled = !enabled;
    },
  };
}
