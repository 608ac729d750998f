// The gift leaderboard (贡献榜) of a room: who gave the most coins, from
// `GET /api/rooms/{id}/leaderboard`; a chip over the video shows the top givers' avatars and
// opens the full list. Every gift event in the room refreshes it (the server's sums stay
// the truth; refreshes are coalesced).
import { h, render, avatar, compactNumber } from '../dom.js';
import { t, lang } from '../i18n.js';
import { api, errorText } from '../api.js';
import { createSheet } from './sheet.js';

const REFRESH_DELAY_MS = 400;
const CHIP_AVATARS = 3;

/** options: room id; onUser(user) opens a giver's profile card. */
export function createLeaderboard({ room, onUser = null }) {
  const sheet = createSheet({ id: 'leaderboard', titleKey: 'leaderboard.title', className: 'leaderboard-sheet' });
  const list = h('ol', { class: 'leaderboard-list', id: 'leaderboard-list' });
  sheet.body.append(list);
  const top = h('span', { class: 'leaderboard-top', 'aria-hidden': 'true' });
  const chip = h('button', {
    type: 'button', class: 'stage-chip leaderboard-chip', id: 'leaderboard-chip',
    on: { click: () => { sheet.open(); refresh(); } },
  }, h('span', { 'aria-hidden': 'true', text: '🏆 ' }), h('span', { i18n: 'leaderboard.chip' }), top);
  let rows = [];
  let error = null;
  let timer = null;

  function draw() {
    render(top, rows.slice(0, CHIP_AVATARS).map((r) => avatar({ nickname: r.nickname, avatar_url: r.avatar_url }, 'xs')));
    chip.dataset.count = String(rows.length);
    if (error) { render(list, h('li', { class: 'form-error', text: errorText(error) })); return; }
    render(list, rows.length
      ? rows.map((r, i) => h('li', { class: 'leaderboard-row', dataset: { user: r.user_id, coins: r.coins } },
        h('span', { class: `leaderboard-rank rank-${i + 1}`, text: String(i + 1) }),
        avatar({ nickname: r.nickname, avatar_url: r.avatar_url }, 'sm'),
        onUser
          ? h('button', { type: 'button', class: 'link-name leaderboard-name', translate: 'no', text: r.nickname, on: { click: () => { sheet.close(); onUser({ id: r.user_id }); } } })
          : h('span', { class: 'leaderboard-name', translate: 'no', text: r.nickname }),
        h('span', { class: 'leaderboard-coins', text: t('leaderboard.coins', { coins: compactNumber(r.coins, lang()) }) })))
      : h('li', { class: 'empty', i18n: 'leaderboard.empty' }));
  }

  async function refresh() {
    try {
      rows = await api.leaderboard(room);
      error = null;
    } catch (err) {
      error = err;
    }
    draw();
  }
  window.addEventListener('langchange', draw);
  draw();

  return {
    chip,
    el: sheet.el,
    refresh,
    /** A gift arrived in the room: re-read the sums shortly (several gifts, one request). */
    gift() {
      clearTimeout(timer);
      timer = setTimeout(refresh, REFRESH_DELAY_MS);
    },
    close: () => sheet.close(),
    destroy() { clearTimeout(timer); window.removeEventListener('langchange', draw); sheet.close(); },
  };
}
