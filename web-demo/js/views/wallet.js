// The recharge page (充值): the balance, the packages the server offers
// (`GET /api/wallet/packages`), paying one through the server's payment provider
// (`POST /api/me/recharges`) and the last recharges. One idempotency key per purchase: a
// retry after a lost answer reuses it, so a package is never paid twice. `?next=` is where
// the "back" link goes (the live room that sent the user here).
import { h, render, toast, formatTime } from '../dom.js';
import { t, lang } from '../i18n.js';
import * as session from '../session.js';
import { api, errorText } from '../api.js';
import { protocol } from '../room-link.js';

/** Only in-app hashes are followed. */
function nextHash() {
  const next = new URLSearchParams(location.hash.split('?')[1] || '').get('next');
  return next && next.startsWith('#/') ? next : null;
}

const yuan = (cents) => (cents / 100).toFixed(cents % 100 ? 2 : 0);

export async function walletView(container) {
  if (!session.user()) {
    location.hash = `#/login?next=${encodeURIComponent(location.hash)}`;
    return undefined;
  }
  render(container, h('p', { class: 'page loading', i18n: 'common.loading' }));
  const next = nextHash();
  const coins = h('strong', { id: 'recharge-balance', class: 'balance-number', text: '…' });
  const list = h('div', { class: 'package-grid', id: 'package-list', role: 'radiogroup', i18nAttr: { 'aria-label': 'wallet.packages' } });
  const payButton = h('button', { type: 'button', id: 'recharge-pay', class: 'button-live', i18n: 'wallet.pay' });
  const error = h('p', { class: 'form-error', role: 'alert', hidden: true });
  const providerNote = h('p', { class: 'muted', id: 'recharge-provider' });
  const history = h('ol', { class: 'recharge-history', id: 'recharge-history' });

  let packages = [];
  let provider = 'none';
  let chosen = null;
  // The key of the purchase in progress: kept until it is paid, so a retry cannot pay twice.
  let pendingKey = null;
  let orders = [];

  function drawPackages() {
    render(list, packages.map((p) => h('button', {
      type: 'button', role: 'radio', class: 'package-option', dataset: { coins: p.coins },
      'aria-checked': chosen === p.coins ? 'true' : 'false',
      on: { click: () => { chosen = p.coins; pendingKey = null; drawPackages(); } },
    },
    h('span', { class: 'package-coins', text: t('wallet.coins', { coins: p.coins }) }),
    h('span', { class: 'package-price', text: t('wallet.price', { yuan: yuan(p.price_cents) }) }))));
    payButton.disabled = provider === 'none' || chosen === null;
    providerNote.textContent = provider === 'none' ? t('wallet.unavailable') : provider === 'sandbox' ? t('wallet.sandbox') : '';
  }
  function drawHistory() {
    render(history, orders.length
      ? orders.map((o) => h('li', { dataset: { order: o.id } },
        h('span', { text: t('wallet.coins', { coins: o.coins }) }),
        h('span', { class: 'muted', text: ` · ${t('wallet.price', { yuan: yuan(o.price_cents) })} · ${formatTime(o.created_at, lang())}` })))
      : h('li', { class: 'empty', i18n: 'wallet.noHistory' }));
  }
  const drawBalance = (wallet) => { coins.textContent = String(wallet.coins); coins.dataset.coins = String(wallet.coins); };

  payButton.addEventListener('click', async () => {
    error.hidden = true;
    if (chosen === null) return;
    pendingKey = pendingKey || protocol.newId('r');
    payButton.disabled = true;
    try {
      const result = await api.recharge(chosen, pendingKey);
      pendingKey = null;
      drawBalance(result.wallet);
      orders = [result.order, ...orders.filter((o) => o.id !== result.order.id)];
      drawHistory();
      toast(t('wallet.done', { coins: result.order.coins }), 'ok');
    } catch (err) {
      error.textContent = errorText(err);
      error.hidden = false;
    } finally {
      payButton.disabled = provider === 'none' || chosen === null;
    }
  });

  try {
    const [offer, wallet, past] = await Promise.all([api.packages(), api.wallet(), api.recharges()]);
    packages = offer.packages || [];
    provider = offer.provider || 'none';
    orders = past || [];
    drawBalance(wallet);
  } catch (err) {
    error.textContent = errorText(err);
    error.hidden = false;
  }
  drawPackages();
  drawHistory();

  render(container,
    h('section', { class: 'page narrow wallet-page', 'aria-labelledby': 'wallet-page-title' },
      h('div', { class: 'page-head' },
        h('h1', { id: 'wallet-page-title', i18n: 'wallet.title' }),
        next ? h('a', { class: 'button button-secondary button-small', id: 'recharge-back', href: next, i18n: 'wallet.back' }) : null),
      h('section', { class: 'card balance-card' },
        h('span', { class: 'muted', i18n: 'wallet.balance' }), ' ', coins, ' ', h('span', { i18n: 'wallet.coinUnit' })),
      h('section', { class: 'card' },
        h('h2', { i18n: 'wallet.packages' }),
        list, providerNote, error,
        h('div', { class: 'buttons' }, payButton)),
      h('section', { class: 'card' },
        h('h2', { i18n: 'wallet.history' }),
        history)));
  const relabel = () => { drawPackages(); drawHistory(); };
  window.addEventListener('langchange', relabel);
  return () => window.removeEventListener('langchange', relabel);
}
