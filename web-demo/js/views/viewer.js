// The live room for viewers: the video (WebRTC first, then LL-HLS / FLV / HLS, with the
// mode shown), chat with history, likes with floating hearts, gifts with the balance and an
// animation, the viewer count, and automatic reconnection of both media and chat.
import { h, render, avatar, toast, compactNumber } from '../dom.js';
import { t, lang } from '../i18n.js';
import { api, token, errorText } from '../api.js';
import * as session from '../session.js';
import { createRoomLink, protocol } from '../room-link.js';
import { createPlayer, MODES } from '../player.js';
import { createChat } from '../widgets/chat.js';
import { floatHearts, createGiftLayer } from '../widgets/effects.js';
import { createGiftPanel } from '../widgets/gift-panel.js';

const GIFT_ACK_TIMEOUT_MS = 8000;

function loginHash(room) {
  return `#/login?next=${encodeURIComponent(`#/room/${room}`)}`;
}

export async function viewerView(container, { id: room }) {
  const query = new URLSearchParams(location.hash.split('?')[1] || '');
  const forcedMode = MODES.includes(query.get('mode')) ? query.get('mode') : null;

  render(container, h('p', { class: 'page', i18n: 'common.loading' }));
  let info;
  try {
    info = await api.room(room);
  } catch (err) {
    render(container, h('section', { class: 'page narrow' },
      h('h1', { text: room }),
      h('p', { class: 'form-error', role: 'alert', text: errorText(err) }),
      h('a', { href: '#/', i18n: 'common.back' })));
    return undefined;
  }

  // ---- layout ------------------------------------------------------------------------
  const video = h('video', { id: 'live-video', playsinline: true, autoplay: true, muted: true, 'webkit-playsinline': true });
  video.muted = true;
  const modeBadge = h('span', { class: 'badge mode-badge', id: 'play-mode', dataset: { mode: 'none' }, role: 'status', i18nAttr: { title: 'viewer.mode' } });
  const viewersEl = h('span', { class: 'stage-chip', id: 'viewer-count', dataset: { count: '0' } });
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
  const chat = createChat({ onSend: sendChat });
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
            h('div', { class: 'host-chip' }, avatar(host.nickname ? host : { nickname: info.title }, 'sm'),
              h('span', { text: host.nickname || info.id })),
            h('div', { class: 'stage-chips' }, modeBadge, viewersEl)),
          status, unmute, hearts, giftLayerEl),
        h('aside', { class: 'room-side' },
          h('header', { class: 'room-head' },
            h('h1', { id: 'room-title', text: info.title }),
            h('p', { class: 'muted' },
              info.city ? h('span', { text: `📍 ${info.city} ` }) : null,
              ...(info.tags || []).map((tag) => h('span', { class: 'tag', text: tag })),
              h('a', { class: 'replay-link', href: `#/replay/${encodeURIComponent(room)}`, i18n: 'viewer.replays' }))),
          chat.el,
          h('div', { class: 'room-actions' }, likeButton, giftButton))),
      giftPanel.el));

  // ---- state ----------------------------------------------------------------------------
  let unseenOwnLikes = 0;
  const pendingGifts = new Map();
  const liveStatus = { status: 'connecting', detail: {} };

  function drawViewers(n) {
    viewersEl.dataset.count = String(n);
    viewersEl.textContent = `👀 ${t('viewer.viewers', { n })}`;
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
          h('span', { text: t('viewer.waiting') }),
          h('a', { href: `#/replay/${encodeURIComponent(room)}`, text: t('viewer.replays') }));
        break;
      case 'reconnecting': status.hidden = false; status.textContent = t('viewer.reconnecting'); break;
      case 'failed': status.hidden = false; status.textContent = t('viewer.failed'); break;
      default: status.hidden = false; status.textContent = t('viewer.connecting');
    }
    drawUnmute();
  }
  drawViewers(0);
  drawLikes(0);
  drawMode(null);
  drawStatus();

  function needLogin() {
    chat.setNotice(t('auth.loginToChat'), 'info');
    toast(t('auth.loginToChat'));
    setTimeout(() => { if (!session.user()) location.hash = loginHash(room); }, 1200);
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
          chat.system(`${change.emoji} ${change.user.nickname || '?'} ${t('viewer.giftLine', { gift: change.gift.name || change.gift.id, count: change.count })}`, 'gift');
          break;
        case 'presence':
          drawViewers(change.viewers);
          change.joined
            .filter((u) => !(state.you && u.id === state.you.id))
            .slice(0, 3)
            .forEach((u) => chat.system(t('viewer.joined', { name: u.nickname }), 'join'));
          break;
        case 'deleted':
          chat.remove(change.seq);
          break;
        case 'system':
          if (change.event === 'show_started') { chat.system(t('viewer.system.show_started')); player.wake(); }
          if (change.event === 'show_ended') { chat.system(t('viewer.system.show_ended')); player.showEnded(); }
          break;
        case 'gift_ack': {
          const pending = pendingGifts.get(change.ref);
          if (pending) { pendingGifts.delete(change.ref); pending.resolve(change.balance); }
          break;
        }
        case 'error': {
          const pending = change.ref && pendingGifts.get(change.ref);
          if (pending) { pendingGifts.delete(change.ref); pending.reject(change); break; }
          if (change.code === 'unauthorized') { needLogin(); break; }
          chat.setNotice(errorText(change), 'error');
          break;
        }
        default: break;
      }
    },
  });
  link.loadHistory();
  const likes = protocol.createLikeBatcher((message) => link.send(message), 300);

  function sendChat(text) {
    if (!session.user()) { needLogin(); return false; }
    chat.setNotice('');
    link.send(protocol.messages.chat(text));
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
        resolve: (balance) => { clearTimeout(timer); toast(t('gifts.sent', { gift: gift.name, count })); resolve(balance); },
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
      if (s === 'offline' || s === 'failed') link.start();
      drawStatus();
    },
    onFallback: (from, to) => {
      if (to) chat.system(t('viewer.fallback', { from: t(`viewer.mode.${from}`), to: t(`viewer.mode.${to}`) }), 'mode');
      link.start();
    },
    onChannel: (dc) => link.useChannel(dc),
  });
  player.start();
  video.addEventListener('volumechange', drawUnmute);

  const onSession = () => { const jwt = token(); if (jwt) link.authenticate(jwt); };
  const relabel = () => { drawMode(player.mode); drawStatus(); drawViewers(Number(viewersEl.dataset.count)); };
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
    giftPanel.destroy();
    window.removeEventListener('sessionchange', onSession);
    window.removeEventListener('langchange', relabel);
    document.removeEventListener('visibilitychange', onVisible);
    window.queqiao.watch = null;
  };
}
