// The room list: cards (cover or host avatar, title, host, live badge, viewers, city, tags),
// live rooms first. The last answer is cached in localStorage and drawn at once, then
// refreshed from the server, and again every 15 s while the page is visible.
import { h, render, avatar, safeUrl, compactNumber } from '../dom.js';
import { t, lang } from '../i18n.js';
import { api, errorText } from '../api.js';

const CACHE_PREFIX = 'queqiao.rooms.v1:';
const REFRESH_MS = 15000;
const PER_PAGE = 24;

function cacheKey(query) {
  return CACHE_PREFIX + new URLSearchParams(query).toString();
}

function readCache(query) {
  try {
    const cached = JSON.parse(localStorage.getItem(cacheKey(query)) || 'null');
    return cached && Array.isArray(cached.items) ? cached : null;
  } catch (_) {
    return null;
  }
}

function writeCache(query, page) {
  try {
    localStorage.setItem(cacheKey(query), JSON.stringify({ at: Date.now(), items: page.items, total: page.total }));
  } catch (_) { /* full or blocked: the list still works */ }
}

function roomCard(room) {
  const host = room.host || {};
  const cover = safeUrl(room.cover_url);
  const media = cover
    ? h('img', { class: 'card-cover', src: cover, alt: '', loading: 'lazy', referrerpolicy: 'no-referrer' })
    : h('div', { class: 'card-cover card-cover-avatar' }, avatar({ nickname: host.nickname || room.title, avatar_url: host.avatar_url }, 'xl'));
  const badges = h('div', { class: 'card-badges' },
    room.live
      ? h('span', { class: 'badge badge-live', i18n: 'rooms.live' })
      : h('span', { class: 'badge badge-off', i18n: 'rooms.offline' }),
    room.visibility === 'private' ? h('span', { class: 'badge badge-private', i18n: 'rooms.private' }) : null,
  );
  const viewers = room.live
    ? h('span', { class: 'card-viewers', 'aria-label': t('rooms.viewers', { n: room.viewers }) },
      h('span', { 'aria-hidden': 'true', text: '👀 ' }), compactNumber(room.viewers, lang()))
    : null;
  const meta = h('p', { class: 'card-meta' },
    room.city ? h('span', { class: 'card-city', translate: 'no', text: `📍 ${room.city}` }) : null,
    ...(room.tags || []).slice(0, 3).map((tag) => h('span', { class: 'tag', translate: 'no', text: tag })),
  );
  return h('li', { class: 'room-card', dataset: { room: room.id, live: room.live ? '1' : '0' } },
    h('a', { href: `#/room/${encodeURIComponent(room.id)}`, class: 'card-link' },
      h('div', { class: 'card-media' }, media, badges, viewers),
      h('div', { class: 'card-body' },
        h('h3', { class: 'card-title', translate: 'no', text: room.title || room.id }),
        h('p', { class: 'card-host' },
          avatar(host.nickname ? host : { nickname: room.title }, 'sm'),
          h('span', { translate: 'no', text: host.nickname || room.id })),
        meta.childNodes.length ? meta : null,
      ),
    ),
  );
}

export function roomsView(container) {
  const params = new URLSearchParams((location.hash.split('?')[1]) || '');
  const query = {
    city: params.get('city') || '',
    tag: params.get('tag') || '',
    live: params.get('live') === 'true' ? 'true' : '',
  };
  let page = 1;
  let items = [];
  let total = 0;
  let timer = null;
  let controller = null;

  const list = h('ul', { class: 'room-grid', id: 'room-list', 'aria-busy': 'true' });
  const note = h('p', { class: 'list-note', role: 'status', id: 'rooms-note' });
  const more = h('button', { type: 'button', class: 'button-secondary', i18n: 'rooms.more', hidden: true, on: { click: () => load(page + 1) } });

  const cityInput = h('input', { id: 'filter-city', name: 'city', value: query.city, autocomplete: 'address-level2', i18nAttr: { placeholder: 'rooms.city' } });
  const tagInput = h('input', { id: 'filter-tag', name: 'tag', value: query.tag, i18nAttr: { placeholder: 'rooms.tag' } });
  const liveBox = h('input', { type: 'checkbox', name: 'live', checked: query.live === 'true' });
  const filters = h('form', { class: 'filters', role: 'search', on: { submit: (e) => {
    e.preventDefault();
    const next = new URLSearchParams();
    if (cityInput.value.trim()) next.set('city', cityInput.value.trim());
    if (tagInput.value.trim()) next.set('tag', tagInput.value.trim());
    if (liveBox.checked) next.set('live', 'true');
    location.hash = `#/${next.toString() ? `?${next}` : ''}`;
  } } },
  h('label', { class: 'visually-hidden', for: 'filter-city', i18n: 'rooms.city' }),
  cityInput,
  h('label', { class: 'visually-hidden', for: 'filter-tag', i18n: 'rooms.tag' }),
  tagInput,
  h('label', { class: 'check' }, liveBox, h('span', { i18n: 'rooms.liveOnly' })),
  h('button', { type: 'submit', class: 'button-secondary', i18n: 'rooms.apply' }));

  // "Live now" heads the list only when someone is live; otherwise it is just "Rooms".
  const title = h('h1', { id: 'rooms-title', i18n: 'rooms.titleAll' });
  render(container,
    h('section', { class: 'page rooms-page', 'aria-labelledby': 'rooms-title' },
      h('div', { class: 'page-head' },
        title,
        h('button', { type: 'button', class: 'chip-button', i18n: 'rooms.refresh', on: { click: () => load(1) } })),
      filters, note, list, more));

  let stampedAt = null;
  function draw(fromCache) {
    list.setAttribute('aria-busy', 'false');
    title.dataset.i18n = items.some((r) => r.live) ? 'rooms.title' : 'rooms.titleAll';
    title.textContent = t(title.dataset.i18n);
    if (stampedAt && !fromCache) stamp(stampedAt);
    if (items.length === 0) {
      render(list, h('li', { class: 'empty', i18n: query.live ? 'rooms.emptyLive' : 'rooms.empty' }));
    } else {
      render(list, items.map(roomCard));
    }
    more.hidden = items.length >= total;
    if (fromCache) {
      note.dataset.i18n = 'rooms.cached';
      note.textContent = t('rooms.cached');
    }
  }

  function stamp(at) {
    stampedAt = at;
    delete note.dataset.i18n;
    note.textContent = t('rooms.updated', { time: new Date(at).toLocaleTimeString(lang() === 'zh' ? 'zh-CN' : 'en-GB') });
  }

  async function load(n = 1) {
    if (controller) controller.abort();
    controller = new AbortController();
    try {
      const result = await api.rooms({ ...query, page: n, per_page: PER_PAGE }, { signal: controller.signal });
      page = n;
      total = result.total;
      items = n === 1 ? result.items : items.concat(result.items.filter((r) => !items.some((x) => x.id === r.id)));
      if (n === 1) writeCache(query, result);
      draw(false);
      stamp(Date.now());
    } catch (err) {
      if (err.name === 'AbortError') return;
      note.textContent = items.length ? t('common.offline') : t('common.error', { message: errorText(err) });
      if (!items.length) list.setAttribute('aria-busy', 'false');
    }
  }

  const cached = readCache(query);
  if (cached) {
    items = cached.items;
    total = cached.total || cached.items.length;
    draw(true);
  } else {
    render(list, h('li', { class: 'empty', i18n: 'common.loading' }));
  }
  load(1);
  const tick = () => { if (document.visibilityState === 'visible' && page === 1) load(1); };
  timer = setInterval(tick, REFRESH_MS);
  document.addEventListener('visibilitychange', tick);
  const relabel = () => draw(false);
  window.addEventListener('langchange', relabel);
  return () => {
    clearInterval(timer);
    document.removeEventListener('visibilitychange', tick);
    window.removeEventListener('langchange', relabel);
    if (controller) controller.abort();
  };
}
