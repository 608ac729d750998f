// The live room for viewers. On a phone: the portrait video fills the screen, the host's
// card on top (it opens her profile), the viewer count with the avatars of who just came
// in, chat, likes and gifts over the video; on a desktop: video and chat side by side.
// WebRTC first, then LL-HLS / FLV / HLS; chat with history and per-message delivery state;
// "xx 来了" join lines; logging in from a sheet without leaving the stream; automatic
// reconnection of both media and chat.
import { h, render, avatar, toast, compactNumber, formatTime } from '../dom.js';
import { t, lang, giftName } from '../i18n.js';
import { api, token, errorText } from '../api.js';
import { createChatOutbox } from '../chat-outbox.js';
import { createLoginSheet } from '../widgets/login-sheet.js';
import { createProfileCard } from '../widgets/profile-card.js';
import * as session from '../session.js';
import { createRoomLink, protocol } from '../room-link.js';
import { createPlayer, MODES } from '../player.js';
import { createChat, userName } from '../widgets/chat.js';
import { floatHearts, createGiftLayer } from '../widgets/effects.js';
import { createGiftPanel } from '../widgets/gift-panel.js';
import { createLeaderboard } from '../widgets/leaderboard.js';
import { createSharePanel } from '../widgets/share-panel.js';
import * as relations from '../relations.js';
import { toggleReservation } from '../reservations.js';

const GIFT_ACK_TIMEOUT_MS = 8000;
const RECENT_VIEWERS = 3;

export async function viewerView(container, { id: room }) {
  const query = new URLSearchParams(location.hash.split('?')[1] || '');
  const forcedMode = MODES.includes(query.get('mode')) ? query.get('mode') : null;

  render(container, h('p', { class: 'page loading', i18n: 'common.loading' }));
  let info;
  try {
    info = await api.room(room);
  } catch (err) {
    render(container, h('section', { class: 'page narrow' },
      h('h1', { text: room }),
      h('p', { class: 'form-error', role: 'alert', text: errorText(err, { notFound: 'room_not_found' }) }),
      h('a', { href: '#/', i18n: 'common.back' })));
    return undefined;
  }

  // ---- layout ------------------------------------------------------------------------
  const video = h('video', { id: 'live-video', playsinline: true, autoplay: true, muted: true, 'webkit-playsinline': true });
  video.muted = true;
  const modeBadge = h('span', { class: 'badge mode-badge', id: 'play-mode', dataset: { mode: 'none' }, role: 'status', i18nAttr: { title: 'viewer.mode' } });
  const viewersEl = h('span', { class: 'stage-chip', id: 'viewer-count', dataset: { count: '0' } });
  const recentEl = h('span', { class: 'recent-viewers', id: 'recent-viewers', i18nAttr: { 'aria-label': 'viewer.recentViewers' } });
  const status = h('div', { class: 'stage-status', id: 'play-status', role: 'status' });
  const unmute = h('button', { type: 'button', class: 'unmute', id: 'unmute', on: { click: () => { video.muted = false; video.play().catch(() => {}); drawUnmute(); } } },
    h('span', { 'aria-hidden': 'true', text: '🔇 ' }), h('span', { i18n: 'viewer.unmute' }));
  const hearts = h('div', { class: 'hearts-layer', 'aria-hidden': 'true' });
  const giftLayerEl = h('div', { class: 'gift-layer', id: 'gift-layer', 'aria-hidden': 'true' });
  const giftLayer = createGiftLayer(giftLayerEl);
  const likeCount = h('span', { id: 'like-count', class: 'like-count', dataset: { count: '0' }, text: '0' });
  const likeButton = h('button', { type: 'button', class: 'round-button like-button', id: 'like-button', i18nAttr: { 'aria-label': 'viewer.like' } },
    h('span', { 'aria-hidden': 'true', text: '❤' }), likeCount);
  const giftButton = h('button', { type: 'button', class: 'round-button gift-button', id: 'gift-button', i18nAttr: { 'aria-label': 'viewer.gift' } },
    h('span', { 'aria-hidden': 'true', text: '🎁' }));

  const host = info.host || {};
  const profileCard = createProfileCard({
    room,
    needLogin: (then) => needLogin(then),
    onBlock: (userId, blocked) => { if (blocked) chat.hideUser(userId); },
  });
  const chat = createChat({
    onSend: sendChat,
    selfId: () => { const u = session.user(); return u ? u.id : null; },
    onName: (user) => profileCard.open(user.id, user.id === host.id ? room : null),
    hidden: relations.isBlocked,
  });
  const leaderboard = createLeaderboard({ room, onUser: (user) => profileCard.open(user.id) });
  const share = createSharePanel({ room, title: info.title, cover: info.cover_url });
  const shareButton = h('button', { type: 'button', class: 'round-button share-button', id: 'share-button', i18nAttr: { 'aria-label': 'share.title' }, on: { click: () => share.open() } },
    h('span', { 'aria-hidden': 'true', text: '↗' }));
  const outbox = createChatOutbox({ send: (message) => link.send(message), chat });
  let afterLogin = null;
  const loginSheet = createLoginSheet({
    registerHash: `#/register?next=${encodeURIComponent(`#/room/${room}`)}`,
    onLoggedIn: () => { const next = afterLogin; afterLogin = null; if (next) next(); },
  });
  const hostChip = h('button', {
    type: 'button', class: 'host-chip', id: 'host-chip', i18nAttr: { title: 'viewer.hostCard' },
    on: { click: () => { if (host.id) profileCard.open(host.id, room); } },
  },
  avatar(host.nickname ? host : { nickname: info.title }, 'sm'),
  h('span', { class: 'host-chip-text' },
    h('strong', { translate: 'no', text: host.nickname || info.id }),
    h('small', { translate: 'no', text: info.title })));
  const giftPanel = createGiftPanel({
    send: sendGift,
    loggedIn: () => !!session.user(),
    needLogin,
  });

  render(container,
    h('section', { class: 'page room-page', 'aria-labelledby': 'room-title' },
      h('div', { class: 'stage' },
        h('div', { class: 'player-box' },
          video,
          h('div', { class: 'stage-top' },
            hostChip,
            h('div', { class: 'stage-chips' },
              h('div', { class: 'audience' }, recentEl, viewersEl,
                h('a', { class: 'stage-close', href: '#/', i18nAttr: { 'aria-label': 'common.back' }, text: '✕' })),
              leaderboard.chip,
              modeBadge)),
          status, unmute, hearts, giftLayerEl),
        h('aside', { class: 'room-side' },
          h('header', { class: 'room-head' },
            h('h1', { id: 'room-title', translate: 'no', text: info.title }),
            h('p', { class: 'muted' },
              info.city ? h('span', { translate: 'no', text: `📍 ${info.city} ` }) : null,
              ...(info.tags || []).map((tag) => h('span', { class: 'tag', translate: 'no', text: tag })),
              h('a', { class: 'replay-link', href: `#/replay/${encodeURIComponent(room)}`, i18n: 'viewer.replays' }))),
          chat.el,
          h('div', { class: 'room-actions' }, shareButton, likeButton, giftButton))),
      giftPanel.el, loginSheet.el, profileCard.el, leaderboard.el, share.el));

  // ---- state ----------------------------------------------------------------------------
  let unseenOwnLikes = 0;
  const pendingGifts = new Map();
  const liveStatus = { status: 'connecting', detail: {} };

  const recent = [];
  function drawRecent() {
    render(recentEl, recent.map((u) => h('span', { class: 'recent-viewer', translate: 'no', dataset: { user: u.id }, title: u.nickname }, avatar(u, 'xs'))));
  }
  // The count is the audience of a show: nothing while the host is offline.
  let audience = 0;
  function drawViewers(n = audience) {
    audience = n;
    const shown = liveStatus.status === 'offline' ? 0 : n;
    viewersEl.dataset.count = String(shown);
    viewersEl.textContent = t('viewer.viewers', { n: compactNumber(shown, lang()) });
  }
  function drawLikes(n) {
    likeCount.dataset.count = String(n);
    likeCount.textContent = compactNumber(n, lang());
  }
  function drawMode(mode) {
    modeBadge.dataset.mode = mode || 'none';
    modeBadge.textContent = t(`viewer.mode.${mode || 'none'}`);
  }
  function drawUnmute() {
    unmute.hidden = !video.muted || liveStatus.status !== 'playing';
  }
  function drawStatus() {
    const { status: s, detail } = liveStatus;
    status.dataset.status = s;
    status.replaceChildren();
    switch (s) {
      case 'playing': status.hidden = true; break;
      case 'offline':
        status.hidden = false;
        status.append(h('strong', { text: t(detail.ended ? 'viewer.ended' : 'viewer.offline') }),
          nextShow ? nextShowLine(nextShow) : h('span', { text: t('viewer.waiting') }),
          h('a', { href: `#/replay/${encodeURIComponent(room)}`, text: t('viewer.replays') }));
        if (!nextShowLoaded) loadNextShow();
        break;
      case 'reconnecting': status.hidden = false; status.textContent = t('viewer.reconnecting'); break;
      case 'failed': status.hidden = false; status.textContent = t('viewer.failed'); break;
      default: status.hidden = false; status.textContent = t('viewer.connecting');
    }
    drawUnmute();
  }
  // ---- next show (offline room): the host's next scheduled show, with 预约 --------
  let nextShow = null;
  let nextShowLoaded = false;
  async function loadNextShow() {
    nextShowLoaded = true;
    const list = await api.schedules(room).catch(() => []);
    const now = Date.now();
    nextShow = (Array.isArray(list) ? list : [])
      .filter((s) => s.starts_at * 1000 > now)
      .sort((a, b) => a.starts_at - b.starts_at)[0] || null;
    if (liveStatus.status === 'offline') drawStatus();
  }
  async function toggleNextShow() {
    const s = nextShow;
    if (!s) return;
    if (!session.user()) { needLogin(() => { nextShowLoaded = false; loadNextShow(); }); return; }
    await toggleReservation(s);
    drawStatus();
  }
  function nextShowLine(s) {
    return h('div', { class: 'next-show', id: 'next-show', dataset: { schedule: s.id, reserved: s.reserved ? '1' : '0' } },
      h('span', { class: 'next-show-label', text: t('schedule.next') }),
      h('span', { class: 'schedule-when', text: formatTime(s.starts_at * 1000, lang()) }),
      h('span', { class: 'schedule-title', translate: 'no', text: s.title }),
      h('small', { class: 'next-show-count', text: t('schedule.count', { n: s.reservations || 0 }) }),
      h('button', {
        type: 'button', id: 'next-show-reserve', class: `button-small${s.reserved ? ' button-secondary' : ''}`,
        text: t(s.reserved ? 'schedule.unreserve' : 'schedule.reserve'), on: { click: toggleNextShow },
      }));
  }

  drawViewers(0);
  drawLikes(0);
  drawMode(null);
  drawStatus();

  /** Logged out: the login sheet opens over the stream; `then` runs once logged in. */
  function needLogin(then = null) {
    afterLogin = then;
    chat.setNotice(t('auth.loginToChat'), 'info');
    loginSheet.open();
  }

  // ---- room events ------------------------------------------------------------------------
  const link = createRoomLink({
    room,
    token,
    onTransport: (kind, state) => {
      const key = `viewer.events.${state === 'open' ? 'open' : state === 'closed' ? 'closed' : state === 'waiting' ? 'waiting' : 'connecting'}`;
      container.dataset.events = `${kind}:${state}`;
      if (state === 'open' || !link || !link.connected) chat.setNotice(t(key));
    },
    onChange: (change, state) => {
      switch (change.kind) {
        case 'welcome':
          change.history.forEach((m) => chat.add(m));
          drawLikes(state.likes);
          drawViewers(state.viewers);
          break;
        case 'history':
          change.history.forEach((m) => chat.add(m));
          break;
        case 'chat':
          outbox.confirmed(change.message);
          chat.add(change.message);
          break;
        case 'likes': {
          drawLikes(change.total);
          const mine = Math.min(unseenOwnLikes, change.delta);
          unseenOwnLikes -= mine;
          if (change.delta - mine > 0) floatHearts(hearts, change.delta - mine);
          break;
        }
        case 'gift':
          giftLayer.show(change);
          leaderboard.gift();
          chat.system(() => [`${change.emoji} `, userName(change.user), ` ${t('viewer.giftLine', { gift: giftName(change.gift), count: change.count })}`], 'gift');
          break;
        case 'presence': {
          drawViewers(change.viewers);
          // One user can leave one connection and join another in the same batch (the
          // WebSocket handing over to the data channel): leaving first, then joining.
          const joinedIds = new Set(change.joined.map((u) => u.id));
          for (const u of change.left) {
            const i = recent.findIndex((r) => r.id === u.id);
            if (i >= 0 && !joinedIds.has(u.id)) recent.splice(i, 1);
          }
          const others = change.joined.filter((u, i, all) => !(state.you && u.id === state.you.id) && u.id !== host.id
            && all.findIndex((x) => x.id === u.id) === i && !recent.some((r) => r.id === u.id));
          others.slice(0, 3).forEach((u) => chat.system(() => [userName(u), ` ${t('viewer.joined', { name: '' }).trim()}`], 'join'));
          for (const u of others) recent.unshift(u);
          recent.splice(RECENT_VIEWERS);
          drawRecent();
          break;
        }
        case 'deleted':
          chat.remove(change.seq);
          break;
        case 'system':
          if (change.event === 'show_started') { chat.system(() => t('viewer.system.show_started')); player.wake(); }
          if (change.event === 'show_ended') { chat.system(() => t('viewer.system.show_ended')); player.showEnded(); drawViewers(0); }
          break;
        case 'gift_ack': {
          const pending = pendingGifts.get(change.ref);
          if (pending) { pendingGifts.delete(change.ref); pending.resolve(change.balance); }
          break;
        }
        case 'error': {
          const pending = change.ref && pendingGifts.get(change.ref);
          if (pending) { pendingGifts.delete(change.ref); pending.reject(change); break; }
          if (outbox.refused(change)) break;
          if (change.code === 'unauthorized') { needLogin(); break; }
          chat.setNotice(errorText(change), 'error');
          break;
        }
        default: break;
      }
    },
  });
  // Blocked users' lines are never drawn: the list first, then the history.
  relations.loadBlocks().finally(() => link.loadHistory());
  const likes = protocol.createLikeBatcher((message) => link.send(message), 300);

  function sendChat(text) {
    // Logged out: the text stays in the input, and is sent once the sheet logs in.
    if (!session.user()) {
      needLogin(() => { chat.input.value = ''; chat.setNotice(''); outbox.submit(text); });
      return false;
    }
    chat.setNotice('');
    outbox.submit(text);
    return true;
  }

  likeButton.addEventListener('click', () => {
    if (!session.user()) { needLogin(); return; }
    unseenOwnLikes += 1;
    floatHearts(hearts, 1);
    drawLikes(Number(likeCount.dataset.count) + 1);
    likes.tap(1);
  });
  giftButton.addEventListener('click', () => giftPanel.open());
  const closeOverlays = () => { loginSheet.close(); profileCard.close(); leaderboard.close(); share.close(); };

  function sendGift(gift, count) {
    const message = protocol.messages.gift(gift.id, count);
    const key = message.idempotency_key;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(async () => {
        // No answer on the socket: the same key over REST can never charge twice.
        if (!pendingGifts.delete(key)) return;
        try {
          const ack = await api.sendGift(room, { gift: gift.id, count, idempotency_key: key });
          resolve(ack.balance);
        } catch (err) { reject(err); }
      }, GIFT_ACK_TIMEOUT_MS);
      pendingGifts.set(key, {
        resolve: (balance) => { clearTimeout(timer); toast(t('gifts.sent', { gift: giftName(gift), count })); resolve(balance); },
        reject: (err) => { clearTimeout(timer); reject(err); },
      });
      link.send(message);
    });
  }

  // ---- media --------------------------------------------------------------------------------
  let linkTimer = setTimeout(() => link.start(), 6000);
  const player = createPlayer({
    video,
    room,
    token,
    forcedMode,
    onMode: (mode) => { drawMode(mode); if (mode && mode !== 'webrtc') link.start(); },
    onStatus: (s, detail) => {
      liveStatus.status = s;
      liveStatus.detail = detail || {};
      drawViewers();
      if (s === 'offline' || s === 'failed') link.start();
      drawStatus();
    },
    onFallback: (from, to) => {
      if (to) chat.system(() => t('viewer.fallback', { from: t(`viewer.mode.${from}`), to: t(`viewer.mode.${to}`) }), 'mode');
      link.start();
    },
    onChannel: (dc) => link.useChannel(dc),
  });
  player.start();
  video.addEventListener('volumechange', drawUnmute);

  // Lines drawn before the block list arrived (or blocked elsewhere) are taken away.
  const onBlocks = () => relations.blockedIds().forEach((id) => chat.hideUser(id));
  window.addEventListener('blockschange', onBlocks);
  const onSession = () => { const jwt = token(); if (jwt) link.authenticate(jwt); relations.loadBlocks(); };
  leaderboard.refresh();
  const relabel = () => { drawMode(player.mode); drawStatus(); drawViewers(); };
  const onVisible = () => { if (document.visibilityState === 'visible') { link.reconnectNow(); player.wake(); } };
  window.addEventListener('sessionchange', onSession);
  window.addEventListener('langchange', relabel);
  document.addEventListener('visibilitychange', onVisible);

  window.queqiao.watch = { room, player, link, video };
  return () => {
    clearTimeout(linkTimer);
    linkTimer = null;
    likes.flush();
    player.stop();
    link.stop();
    outbox.stop();
    chat.destroy();
    closeOverlays();
    profileCard.destroy();
    leaderboard.destroy();
    share.destroy();
    giftPanel.destroy();
    window.removeEventListener('sessionchange', onSession);
    window.removeEventListener('blockschange', onBlocks);
    window.removeEventListener('langchange', relabel);
    document.removeEventListener('visibilitychange', onVisible);
    window.queqiao.watch = null;
  };
}
