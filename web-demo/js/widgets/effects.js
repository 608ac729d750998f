// Floating hearts for likes and the gift animation banner. Decorative layers are
// aria-hidden; the gift line is also announced as text in the chat log by the caller.
import { h } from '../dom.js';
import { t, giftName } from '../i18n.js';

const HEART_COLOURS = ['#ff4d7e', '#ff7aa2', '#ff9a3c', '#b86bff', '#ff5a5a'];
const MAX_HEARTS = 24;

/** Sends `count` hearts floating up from the bottom right of `layer`. */
export function floatHearts(layer, count = 1) {
  const n = Math.min(count, 6);
  for (let i = 0; i < n; i++) {
    if (layer.childElementCount >= MAX_HEARTS) return;
    const heart = h('span', {
      class: 'heart',
      text: '❤',
      style: `--x:${Math.round(Math.random() * 60 - 30)}px;--d:${(1.6 + Math.random()).toFixed(2)}s;--delay:${(i * 0.12).toFixed(2)}s;color:${HEART_COLOURS[Math.floor(Math.random() * HEART_COLOURS.length)]}`,
    });
    heart.addEventListener('animationend', () => heart.remove());
    // Reduced motion: no animation events fire, so a timer removes it too.
    setTimeout(() => heart.remove(), 4000);
    layer.append(heart);
  }
}

/**
 * The gift banner queue: one animation at a time (about 2.6 s each), at most 8 waiting.
 * change: the room model's `gift` change ({ user, gift, count, emoji }).
 */
export function createGiftLayer(layer) {
  const queue = [];
  let busy = false;

  function next() {
    const change = queue.shift();
    if (!change) { busy = false; return; }
    busy = true;
    const big = (change.gift.price_coins || 0) >= 520;
    const banner = h('div', {
      class: `gift-anim${big ? ' gift-big' : ''}`,
      dataset: { gift: change.gift.id || change.gift.animation || 'gift' },
    },
    h('span', { class: 'gift-emoji', text: change.emoji }),
    h('span', { class: 'gift-text' },
      h('strong', { translate: 'no', text: (change.user && change.user.nickname) || '?' }),
      h('span', { text: ` ${t('viewer.giftLine', { gift: giftName(change.gift), count: change.count })}` })));
    layer.append(banner);
    setTimeout(() => {
      banner.classList.add('gift-out');
      setTimeout(() => { banner.remove(); next(); }, 400);
    }, big ? 3200 : 2200);
  }

  return {
    show(change) {
      if (queue.length >= 8) queue.shift();
      queue.push(change);
      if (!busy) next();
    },
  };
}
