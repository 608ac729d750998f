// 我的关注: the hosts I follow, live ones first with a link into their room; the shows I
// reserved (预约); and the latest live notices. Opening the page clears the notice badge.
import { h, render, avatar, formatTime } from '../dom.js';
import { t, lang } from '../i18n.js';
import * as session from '../session.js';
import { api, errorText } from '../api.js';
import { markRead } from '../notices.js';

export async function followsView(container) {
  if (!session.user()) {
    location.hash = `#/login?next=${encodeURIComponent('#/follows')}`;
    return undefined;
  }
  render(container, h('p', { class: 'page loading', i18n: 'common.loading' }));
  markRead();
  let follows = [];
  let liveRooms = [];
  let reservations = [];
  let error = null;
  try {
    [follows, liveRooms, reservations] = await Promise.all([
      api.follows(),
      api.rooms({ live: true, per_page: 100 }).then((page) => page.items || []),
      api.reservations().catch(() => []),
    ]);
  } catch (err) {
    error = err;
  }
  const liveRoomOf = new Map();
  for (const room of liveRooms) if (room.host && !liveRoomOf.has(room.host.id)) liveRoomOf.set(room.host.id, room);
  const rows = follows.map((f) => ({ ...f, room: liveRoomOf.get(f.user_id) || null }))
    .sort((a, b) => (b.room ? 1 : 0) - (a.room ? 1 : 0) || b.since - a.since);

  const list = h('ul', { class: 'follow-list', id: 'follow-list' });
  const reserved = h('ul', { class: 'schedule-list', id: 'my-reservations' });
  function draw() {
    render(list, error
      ? h('li', { class: 'form-error', text: errorText(error) })
      : rows.length
        ? rows.map((f) => h('li', { class: 'follow-row card', dataset: { user: f.user_id, live: f.room ? '1' : '0' } },
          avatar({ nickname: f.nickname, avatar_url: f.avatar_url }, 'md'),
          h('div', { class: 'follow-who' },
            h('strong', { translate: 'no', text: f.nickname }),
            f.room ? h('span', { class: 'badge badge-live', i18n: 'rooms.live' }) : h('small', { class: 'muted', i18n: 'rooms.offline' }),
            f.room ? h('small', { class: 'muted follow-room', translate: 'no', text: f.room.title }) : null),
          f.room ? h('a', { class: 'button button-small button-live', href: `#/room/${encodeURIComponent(f.room.id)}`, i18n: 'follows.watch' }) : null))
        : h('li', { class: 'empty', i18n: 'follows.empty' }));
    const upcoming = (Array.isArray(reservations) ? reservations : []).filter((r) => (r.starts_at || 0) * 1000 > Date.now() - 3600 * 1000);
    render(reserved, upcoming.length
      ? upcoming.map((r) => h('li', { class: 'schedule-item', dataset: { schedule: r.id } },
        h('span', { class: 'schedule-when', text: formatTime(r.starts_at * 1000, lang()) }),
        h('span', { class: 'schedule-title', translate: 'no', text: r.title }),
        r.room_id ? h('a', { class: 'button-small', href: `#/room/${encodeURIComponent(r.room_id)}`, i18n: 'follows.toRoom' }) : null))
      : h('li', { class: 'empty', i18n: 'follows.noReservations' }));
  }
  draw();
  render(container,
    h('section', { class: 'page narrow follows-page', 'aria-labelledby': 'follows-title' },
      h('h1', { id: 'follows-title', i18n: 'follows.title' }),
      list,
      h('h2', { i18n: 'follows.reservations' }),
      reserved));
  window.addEventListener('langchange', draw);
  return () => window.removeEventListener('langchange', draw);
}
