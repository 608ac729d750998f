// The gift panel: the catalogue with prices, a count, the balance, and a send button.
// A native <dialog> (focus is trapped and Escape closes it).
import { h, render } from '../dom.js';
import { t, giftName } from '../i18n.js';
import { api, errorText } from '../api.js';
import { protocol } from '../room-link.js';

const COUNTS = [1, 10, 66, 99];

/** The recharge page, coming back here afterwards. */
const rechargeHash = () => `#/wallet?next=${encodeURIComponent(location.hash || '#/')}`;

/** options: send(gift, count) → Promise<balance>; needLogin() when logged out. */
export function createGiftPanel({ send, loggedIn, needLogin }) {
  let gifts = [];
  let chosen = null;
  let balance = null;

  const grid = h('div', { class: 'gift-grid', role: 'radiogroup', i18nAttr: { 'aria-label': 'gifts.pick' } });
  const count = h('select', { id: 'gift-count', name: 'count' }, COUNTS.map((n) => h('option', { value: n, text: `×${n}` })));
  const balanceEl = h('p', { class: 'gift-balance', id: 'gift-balance', role: 'status' });
  const error = h('p', { class: 'form-error', role: 'alert', hidden: true });
  const sendButton = h('button', { type: 'submit', id: 'gift-send', i18n: 'gifts.send' });
  const form = h('form', { method: 'dialog', class: 'gift-form' },
    h('div', { class: 'dialog-head' },
      h('h2', { id: 'gift-title', i18n: 'gifts.title' }),
      h('button', { type: 'button', class: 'icon-button', i18nAttr: { 'aria-label': 'common.close' }, text: '✕', on: { click: () => dialog.close() } })),
    grid,
    h('div', { class: 'gift-actions' },
      balanceEl,
      h('a', { class: 'gift-recharge', id: 'gift-recharge', href: '#/wallet', i18n: 'wallet.recharge', on: { click: (event) => { event.currentTarget.href = rechargeHash(); } } }),
      h('label', { class: 'inline' }, h('span', { i18n: 'gifts.count' }), count),
      sendButton),
    error);
  const dialog = h('dialog', { class: 'gift-dialog', id: 'gift-dialog', 'aria-labelledby': 'gift-title' }, form);

  function drawBalance() {
    balanceEl.textContent = balance === null ? '' : t('gifts.balance', { coins: balance });
    balanceEl.dataset.coins = balance === null ? '' : String(balance);
  }

  function drawGifts() {
    render(grid, gifts.map((gift) => {
      const button = h('button', {
        type: 'button', role: 'radio', class: 'gift-option', 'aria-checked': chosen === gift.id ? 'true' : 'false',
        dataset: { gift: gift.id },
        on: { click: () => { chosen = gift.id; drawGifts(); } },
      },
      h('span', { class: 'gift-option-emoji', 'aria-hidden': 'true', text: protocol.giftEmoji(gift.animation) }),
      h('span', { class: 'gift-option-name', text: giftName(gift) }),
      h('span', { class: 'gift-option-price', text: t('gifts.price', { coins: gift.price_coins }) }));
      return button;
    }));
  }

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    error.hidden = true;
    const gift = gifts.find((g) => g.id === chosen);
    if (!gift) { error.textContent = t('gifts.pick'); error.hidden = false; return; }
    sendButton.disabled = true;
    try {
      const n = Number(count.value);
      balance = await send(gift, n);
      drawBalance();
      dialog.close();
    } catch (err) {
      if (err.code === 'insufficient_coins') {
        error.replaceChildren(t('gifts.insufficient'), ' ', h('a', { href: rechargeHash(), id: 'gift-wallet-link', i18n: 'wallet.recharge' }));
      } else error.textContent = errorText(err);
      error.hidden = false;
    } finally {
      sendButton.disabled = false;
    }
  });

  async function refresh() {
    try {
      if (!gifts.length) {
        gifts = await api.gifts();
        if (!chosen && gifts.length) chosen = gifts[0].id;
        drawGifts();
      }
      if (loggedIn()) {
        balance = (await api.wallet()).coins;
        drawBalance();
      }
    } catch (err) {
      error.textContent = errorText(err);
      error.hidden = false;
    }
  }

  const relabel = () => { drawGifts(); drawBalance(); };
  window.addEventListener('langchange', relabel);

  return {
    el: dialog,
    async open() {
      if (!loggedIn()) { needLogin(); return; }
      error.hidden = true;
      dialog.showModal();
      await refresh();
    },
    setBalance(coins) { balance = coins; drawBalance(); },
    destroy() { window.removeEventListener('langchange', relabel); if (dialog.open) dialog.close(); },
    get balance() { return balance; },
  };
}
