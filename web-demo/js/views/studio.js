// The host studio. #/studio: the host's rooms, create a room. #/studio/{id}: edit the room,
// camera/microphone preview with device pickers, go live by WHIP (H.264), live stats
// (bitrate, frame rate, resolution, viewers, likes, gift coins), chat and gifts received
// over the room WebSocket, moderation, and ending the show. 用 OBS 推流: the host can instead
// stream from an encoder (OBS, ffmpeg) by RTMP — the studio then opens no camera, shows the
// ingest panel (server URL, stream key) and follows the room's live state from the room
// events; chat, gifts and viewers work the same whoever publishes.
import { h, render, field, showFormError, toast, avatar, splitTags, formatTime, formatDuration } from '../dom.js';
import { t, lang, giftName } from '../i18n.js';
import { createChatOutbox } from '../chat-outbox.js';
import { api, token, errorText } from '../api.js';
import * as session from '../session.js';
import { setLeaveGuard } from '../router.js';
import { publish, outboundVideoStats, connected } from '../../whip.js';
import { createRoomLink } from '../room-link.js';
import { createChat, userName } from '../widgets/chat.js';
import { floatHearts, createGiftLayer } from '../widgets/effects.js';
import { createImageUpload } from '../widgets/image-upload.js';
import { createViewersCard, createScheduleCard } from '../widgets/studio-panels.js';
import { createSharePanel } from '../widgets/share-panel.js';
import { createIngestPanel } from '../widgets/ingest-panel.js';

const QUALITIES = {
  '720p': { width: 1280, height: 720, frameRate: 30 },
  '540p': { width: 960, height: 540, frameRate: 30 },
  '360p': { width: 640, height: 360, frameRate: 25 },
};

/** Where the studio's show comes from: this browser's camera (WHIP) or an encoder (OBS). */
const SOURCE_KEY = 'queqiao.studio.source';
function savedSource() {
  try { return localStorage.getItem(SOURCE_KEY) === 'obs' ? 'obs' : 'browser'; } catch (_) { return 'browser'; }
}
function saveSource(source) {
  try { localStorage.setItem(SOURCE_KEY, source); } catch (_) { /* storage blocked */ }
}

function requireHost(container, next) {
  const user = session.user();
  if (!user) {
    location.hash = `#/login?next=${encodeURIComponent(next)}`;
    return null;
  }
  if (!session.isHost()) {
    render(container, h('section', { class: 'page narrow', 'aria-labelledby': 'studio-title' },
      h('h1', { id: 'studio-title', i18n: 'studio.title' }),
      h('p', { class: 'card notice', text: t('studio.notHost', { id: user.id }) })));
    return null;
  }
  return user;
}

/** The room form, for creating (room = null) or editing. Calls done(room) on success. */
function roomForm(room, done) {
  const cover = createImageUpload({ kind: 'cover', id: room ? 'cover-upload' : 'cover-upload-new', value: room && room.cover_url, labelKey: 'studio.cover' });
  const inputs = {
    title: h('input', { name: 'title', required: true, maxlength: 60, value: room ? room.title : '' }),
    tags: h('input', { name: 'tags', value: room ? (room.tags || []).join(', ') : '' }),
    city: h('input', { name: 'city', maxlength: 32, value: (room && room.city) || '' }),
    visibility: h('select', { name: 'visibility' },
      h('option', { value: 'public', selected: !room || room.visibility !== 'private', i18n: 'studio.public' }),
      h('option', { value: 'private', selected: !!room && room.visibility === 'private', i18n: 'studio.private' })),
  };
  const form = h('form', { class: 'form', id: room ? 'room-edit-form' : 'room-create-form', novalidate: true },
    field('studio.roomTitle', inputs.title),
    cover.el,
    h('div', { class: 'field-row' }, field('studio.city', inputs.city), field('studio.visibility', inputs.visibility)),
    field('studio.tags', inputs.tags),
    h('p', { class: 'form-error', role: 'alert', hidden: true }),
    h('button', { type: 'submit', i18n: room ? 'common.save' : 'studio.create' }));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    showFormError(form, null);
    const body = {
      title: inputs.title.value.trim(),
      cover_url: cover.value,
      tags: splitTags(inputs.tags.value),
      city: inputs.city.value.trim() || null,
      visibility: inputs.visibility.value,
    };
    try {
      if (room) {
        done(await api.updateRoom(room.id, body));
        toast(t('studio.saved'), 'ok');
      } else {
        if (!body.cover_url) delete body.cover_url;
        if (!body.city) delete body.city;
        done(await api.createRoom(body));
        toast(t('studio.created'), 'ok');
      }
    } catch (err) {
      showFormError(form, { message: errorText(err), field: err.field });
    }
  });
  return form;
}

export async function studioHomeView(container) {
  const user = requireHost(container, '#/studio');
  if (!user) return undefined;
  const list = h('ul', { class: 'my-rooms', id: 'my-rooms' }, h('li', { class: 'empty', i18n: 'common.loading' }));
  render(container,
    h('section', { class: 'page', 'aria-labelledby': 'studio-title' },
      h('h1', { id: 'studio-title', i18n: 'studio.title' }),
      h('div', { class: 'studio-home' },
        h('section', { class: 'card', 'aria-labelledby': 'my-rooms-title' },
          h('h2', { id: 'my-rooms-title', i18n: 'studio.myRooms' }), list),
        h('section', { class: 'card', 'aria-labelledby': 'create-title' },
          h('h2', { id: 'create-title', i18n: 'studio.create' }),
          roomForm(null, (room) => { location.hash = `#/studio/${encodeURIComponent(room.id)}`; })))));
  try {
    const { items } = await api.rooms({ host: user.id, per_page: 100 });
    render(list, items.length ? items.map((room) => h('li', { class: 'my-room' },
      h('div', {},
        h('strong', { translate: 'no', text: room.title }),
        h('span', { class: `badge ${room.live ? 'badge-live' : 'badge-off'}`, i18n: room.live ? 'rooms.live' : 'rooms.offline' }),
        room.visibility === 'private' ? h('span', { class: 'badge badge-private', i18n: 'rooms.private' }) : null,
        h('small', { class: 'muted', text: ` ${room.id}` })),
      h('a', { class: 'button button-small', href: `#/studio/${encodeURIComponent(room.id)}`, i18n: 'studio.open' })))
      : h('li', { class: 'empty', i18n: 'studio.noRooms' }));
  } catch (err) {
    render(list, h('li', { class: 'form-error', text: errorText(err) }));
  }
  return undefined;
}

async function listDevices() {
  try {
    const devices = await navigator.mediaDevices.enumerateDevices();
    return {
      cameras: devices.filter((d) => d.kind === 'videoinput'),
      mics: devices.filter((d) => d.kind === 'audioinput'),
    };
  } catch (_) {
    return { cameras: [], mics: [] };
  }
}

export async function studioRoomView(container, { id }) {
  const user = requireHost(container, `#/studio/${id}`);
  if (!user) return undefined;
  render(container, h('p', { class: 'page loading', i18n: 'common.loading' }));
  let room;
  try {
    room = await api.room(id);
  } catch (err) {
    render(container, h('section', { class: 'page narrow' }, h('h1', { text: id }), h('p', { class: 'form-error', role: 'alert', text: errorText(err) })));
    return undefined;
  }

  // ---- layout ----------------------------------------------------------------------------
  const preview = h('video', { id: 'studio-video', autoplay: true, playsinline: true, muted: true });
  preview.muted = true;
  const stageNote = h('p', { class: 'stage-note', id: 'stage-note', role: 'status', hidden: true });
  const sourceButton = h('button', { type: 'button', class: 'button-secondary button-small', id: 'studio-source', 'aria-controls': 'ingest-panel' });
  const ingest = createIngestPanel({ room: room.id });
  const cameraSelect = h('select', { id: 'camera-select', name: 'camera' });
  const micSelect = h('select', { id: 'mic-select', name: 'mic' });
  const qualitySelect = h('select', { id: 'quality-select', name: 'quality' },
    Object.keys(QUALITIES).map((q) => h('option', { value: q, text: q })));
  const goLive = h('button', { type: 'button', id: 'go-live', class: 'button-live', i18n: 'studio.goLive' });
  const endShow = h('button', { type: 'button', id: 'end-show', class: 'button-secondary', i18n: 'studio.endShow', disabled: true });
  const liveState = h('p', { class: 'status', id: 'studio-status', role: 'status', dataset: { state: 'offline' } });
  const liveTimer = h('span', { class: 'live-timer', id: 'live-timer', hidden: true });
  const confirmEnd = h('dialog', { class: 'sheet confirm-end', id: 'confirm-end', 'aria-labelledby': 'confirm-end-text' },
    h('p', { id: 'confirm-end-text', i18n: 'studio.confirmEnd' }),
    h('div', { class: 'buttons' },
      h('button', { type: 'button', id: 'confirm-end-yes', i18n: 'studio.endShow', on: { click: () => { confirmEnd.close(); stopShow(); } } }),
      h('button', { type: 'button', class: 'button-secondary', id: 'confirm-end-no', i18n: 'common.cancel', on: { click: () => confirmEnd.close() } })));
  const statValues = {
    bitrate: h('dd', { id: 'stat-bitrate', text: '–' }),
    fps: h('dd', { id: 'stat-fps', text: '–' }),
    resolution: h('dd', { id: 'stat-resolution', text: '–' }),
    viewers: h('dd', { id: 'stat-viewers', text: '0' }),
    likes: h('dd', { id: 'stat-likes', text: '0' }),
    gifts: h('dd', { id: 'stat-gifts', text: '0' }),
  };
  const stat = (key, label) => h('div', {}, h('dt', { i18n: label }), statValues[key]);
  const giftsList = h('ol', { class: 'gift-log', id: 'gifts-received' }, h('li', { class: 'empty', i18n: 'studio.noGifts' }));
  const hearts = h('div', { class: 'hearts-layer', 'aria-hidden': 'true' });
  const giftLayerEl = h('div', { class: 'gift-layer', 'aria-hidden': 'true' });
  const giftLayer = createGiftLayer(giftLayerEl);
  const share = createSharePanel({ room: room.id, title: room.title, cover: room.cover_url });
  const editBox = h('details', { class: 'card edit-room' },
    h('summary', { i18n: 'studio.edit' }),
    roomForm(room, (updated) => { room = updated; title.textContent = room.title; }),
    h('button', { type: 'button', class: 'button-danger', i18n: 'studio.closeRoom', on: { click: closeRoom } }));
  const title = h('h1', { id: 'studio-room-title', translate: 'no', text: room.title });

  const chat = createChat({
    onSend: (text) => { outbox.submit(text); return true; },
    selfId: () => user.id,
    moderation: {
      mute: async (target) => {
        try { await api.mute(room.id, target.id, 600); toast(t('studio.muted', { name: target.nickname })); } catch (err) { toast(errorText(err), 'error'); }
      },
      remove: async (seq) => {
        try { await api.deleteMessage(room.id, seq); } catch (err) { toast(errorText(err), 'error'); }
      },
    },
  });

  const outbox = createChatOutbox({ send: (message) => link.send(message), chat });
  const viewersCard = createViewersCard({ room: room.id });
  const deviceRow = h('div', { class: 'device-row' },
    field('studio.camera', cameraSelect), field('studio.mic', micSelect), field('studio.quality', qualitySelect));
  const scheduleCard = createScheduleCard({ room: room.id });

  render(container,
    h('section', { class: 'page studio-page', 'aria-labelledby': 'studio-room-title' },
      h('div', { class: 'page-head' },
        h('div', {}, h('p', { class: 'muted' }, h('a', { href: '#/studio', i18n: 'studio.myRooms' })), title),
        h('p', { class: 'share buttons' }, sourceButton,
          h('button', { type: 'button', class: 'button-secondary button-small', id: 'studio-share', i18n: 'share.title', on: { click: () => share.open() } }))),
      h('div', { class: 'studio-grid' },
        h('div', { class: 'studio-main' },
          h('div', { class: 'player-box' }, preview, stageNote, hearts, giftLayerEl),
          h('div', { class: 'studio-controls' },
            h('div', { class: 'buttons' }, goLive, endShow, h('p', { class: 'status' }, liveState, ' ', liveTimer))),
          h('section', { class: 'card', 'aria-labelledby': 'stats-title' },
            h('h2', { id: 'stats-title', i18n: 'studio.stats' }),
            h('dl', { class: 'stats-grid', id: 'studio-stats' },
              stat('bitrate', 'studio.bitrate'), stat('fps', 'studio.fps'), stat('resolution', 'studio.resolution'),
              stat('viewers', 'studio.viewers'), stat('likes', 'studio.likes'), stat('gifts', 'studio.giftsCoins'))),
          deviceRow,
          ingest.el),
        h('aside', { class: 'studio-side' },
          h('section', { class: 'card chat-card', 'aria-labelledby': 'studio-chat-title' },
            h('h2', { id: 'studio-chat-title', i18n: 'viewer.chat' }), chat.el),
          viewersCard.el,
          h('section', { class: 'card', 'aria-labelledby': 'gifts-title' },
            h('h2', { id: 'gifts-title', i18n: 'studio.gifts' }), giftsList),
          scheduleCard.el,
          editBox)),
      confirmEnd, share.el));

  // ---- state ---------------------------------------------------------------------------------
  let stream = null;
  let publisher = null;
  let state = 'offline';
  let giftCoins = 0;
  let lastStats = null;
  let statsTimer = null;
  let stopped = false;
  let liveSince = 0;
  let timerTick = null;
  let audience = 0;
  let reconnecting = false;
  let source = savedSource();
  // Live from somewhere else than this page: an encoder (OBS) on the RTMP ingest, or the
  // host's other device. Then this page neither opens the camera nor publishes.
  let external = !!room.live;

  function drawTimer() {
    liveTimer.hidden = !liveSince;
    if (liveSince) liveTimer.textContent = t('studio.liveFor', { time: formatDuration((Date.now() - liveSince) / 1000) });
  }
  /** The audience shown: nothing between shows. */
  function drawAudience(n = audience) {
    audience = n;
    statValues.viewers.textContent = String(state === 'live' || state === 'lost' || state === 'connecting' ? n : 0);
  }

  /** Whether this page publishes (or is about to) by WHIP. */
  const ownShow = () => !!publisher || reconnecting || (!external && (state === 'connecting' || state === 'lost'));

  function stateMessage(next) {
    if (next === 'lost') return t('studio.lost');
    if (next === 'live' && external) return t(source === 'obs' ? 'studio.liveObs' : 'studio.liveExternal');
    if ((next === 'offline' || next === 'ended') && source === 'obs') return t('studio.obsWaiting');
    return undefined;
  }

  function drawStage() {
    const obs = source === 'obs';
    stageNote.hidden = !(obs || (external && !stream));
    stageNote.textContent = external ? t(obs ? 'studio.liveObs' : 'studio.liveExternal') : t('studio.obsWaiting');
    preview.hidden = obs;
  }

  function setState(next, message) {
    state = next;
    if (next === 'live' && !liveSince) {
      liveSince = Date.now();
      timerTick = setInterval(drawTimer, 1000);
    }
    if (next === 'ended' || next === 'offline') {
      liveSince = 0;
      clearInterval(timerTick);
      timerTick = null;
    }
    drawTimer();
    liveState.dataset.state = next;
    liveState.textContent = message || stateMessage(next) || t(`studio.${next}`);
    liveState.dataset.source = external ? 'external' : source;
    goLive.disabled = next === 'live' || next === 'connecting' || external;
    endShow.disabled = external || !(next === 'live' || next === 'connecting' || next === 'lost');
    // The source is chosen between shows, not while this page publishes.
    sourceButton.disabled = ownShow();
    container.dataset.live = next === 'live' ? '1' : '0';
    drawAudience();
    drawStage();
  }

  /** Browser camera (WHIP) or encoder (OBS by RTMP). */
  function applySource(next) {
    if (ownShow()) return;
    source = next;
    saveSource(next);
    const obs = next === 'obs';
    container.dataset.source = next;
    sourceButton.dataset.i18n = obs ? 'studio.useBrowser' : 'studio.useObs';
    sourceButton.textContent = t(sourceButton.dataset.i18n);
    sourceButton.setAttribute('aria-expanded', obs ? 'true' : 'false');
    ingest.el.hidden = !obs;
    deviceRow.hidden = obs;
    goLive.hidden = obs;
    endShow.hidden = obs;
    if (obs) {
      ingest.load();
      // OBS may want the same camera: let go of it.
      if (stream) stream.getTracks().forEach((track) => track.stop());
      stream = null;
      preview.srcObject = null;
    } else if (!external && !stream) {
      startPreview();
    }
    setState(state);
  }
  sourceButton.addEventListener('click', () => applySource(source === 'obs' ? 'browser' : 'obs'));
  setState(external ? 'live' : 'offline');

  function fillSelect(select, devices, chosenId) {
    const previous = chosenId || select.value;
    render(select, devices.map((d, i) => h('option', { value: d.deviceId, selected: d.deviceId === previous, text: d.label || `${select.name} ${i + 1}` })));
  }

  async function openDevices() {
    const q = QUALITIES[qualitySelect.value];
    const constraints = {
      video: { width: { ideal: q.width }, height: { ideal: q.height }, frameRate: { ideal: q.frameRate }, ...(cameraSelect.value ? { deviceId: { exact: cameraSelect.value } } : {}) },
      audio: { echoCancellation: true, noiseSuppression: true, ...(micSelect.value ? { deviceId: { exact: micSelect.value } } : {}) },
    };
    const next = await navigator.mediaDevices.getUserMedia(constraints);
    if (stopped) { next.getTracks().forEach((track) => track.stop()); return; }
    const old = stream;
    stream = next;
    preview.srcObject = stream;
    if (publisher) {
      // Live: swap the tracks in place, the viewers keep watching.
      for (const sender of publisher.pc.getSenders()) {
        const track = stream.getTracks().find((tr) => sender.track && tr.kind === sender.track.kind);
        if (track) await sender.replaceTrack(track);
      }
    }
    if (old) old.getTracks().forEach((track) => track.stop());
    const { cameras, mics } = await listDevices();
    const videoTrack = stream.getVideoTracks()[0];
    const audioTrack = stream.getAudioTracks()[0];
    fillSelect(cameraSelect, cameras, videoTrack && videoTrack.getSettings().deviceId);
    fillSelect(micSelect, mics, audioTrack && audioTrack.getSettings().deviceId);
  }

  async function startPreview() {
    if (source === 'obs') return;
    try {
      await openDevices();
    } catch (err) {
      setState('offline', t('studio.noCamera', { message: err.message }));
    }
  }
  [cameraSelect, micSelect, qualitySelect].forEach((select) => select.addEventListener('change', startPreview));

  async function startShow() {
    if (!stream) await startPreview();
    if (!stream) return;
    setState('connecting');
    try {
      const whip = new URL(`/whip/${encodeURIComponent(room.id)}`, location.href).toString();
      // The studio talks to the room over the WebSocket, so the WHIP session needs no data channel.
      publisher = await publish(whip, token(), stream, 'video/H264', { dataChannel: false });
      if (window.queqiao.studio) window.queqiao.studio.publisher = publisher;
      publisher.pc.addEventListener('connectionstatechange', () => {
        const s = publisher && publisher.pc.connectionState;
        if (s === 'connected') setState('live');
        if (s === 'disconnected') setState('lost', t('studio.lost'));
        if (s === 'failed') reconnectShow();
      });
      await connected(publisher.pc, 15000);
      setState('live');
      giftCoins = 0;
      statValues.gifts.textContent = '0';
      statsTimer = setInterval(updateStats, 1000);
      setLeaveGuard(() => state !== 'live' || window.confirm(t('studio.confirmLeave')));
    } catch (err) {
      if (publisher) publisher.pc.close();
      publisher = null;
      setState('offline', t('studio.failed', { message: errorText(err) }));
    }
  }

  async function reconnectShow() {
    if (reconnecting || stopped) return;
    reconnecting = true;
    setState('lost', t('studio.lost'));
    const old = publisher;
    publisher = null;
    if (old) await old.stop();
    clearInterval(statsTimer);
    for (let attempt = 0; attempt < 5 && !stopped && state !== 'offline'; attempt++) {
      await new Promise((r) => setTimeout(r, 1000 * 2 ** attempt));
      if (stopped || state === 'offline') break;
      await startShow();
      if (state === 'live') break;
    }
    reconnecting = false;
  }

  async function stopShow() {
    clearInterval(statsTimer);
    statsTimer = null;
    lastStats = null;
    const old = publisher;
    publisher = null;
    if (window.queqiao.studio) window.queqiao.studio.publisher = null;
    setState('ended');
    setLeaveGuard(null);
    if (old) await old.stop();
    for (const el of [statValues.bitrate, statValues.fps, statValues.resolution]) el.textContent = '–';
  }

  async function updateStats() {
    if (!publisher) return;
    const s = await outboundVideoStats(publisher.pc).catch(() => null);
    if (!s) return;
    if (lastStats && s.timestamp > lastStats.timestamp) {
      const kbps = Math.round(((s.bytesSent - lastStats.bytesSent) * 8) / (s.timestamp - lastStats.timestamp));
      statValues.bitrate.textContent = `${kbps} kbps`;
      statValues.bitrate.dataset.kbps = String(kbps);
    }
    lastStats = s;
    statValues.fps.textContent = s.framesPerSecond ? String(Math.round(s.framesPerSecond)) : '–';
    statValues.resolution.textContent = s.frameWidth ? `${s.frameWidth}×${s.frameHeight}` : '–';
    statValues.resolution.title = t('studio.codec', { codec: s.codec });
  }

  async function closeRoom() {
    if (!window.confirm(t('studio.confirmClose'))) return;
    try {
      await stopShow();
      await api.closeRoom(room.id);
      location.hash = '#/studio';
    } catch (err) {
      toast(errorText(err), 'error');
    }
  }

  goLive.addEventListener('click', startShow);
  // Ending a show is final for the viewers: ask first.
  endShow.addEventListener('click', () => { if (!confirmEnd.open) confirmEnd.showModal(); });

  // ---- room events (chat, likes, gifts, viewers) over the WebSocket ----------------------
  const link = createRoomLink({
    room: room.id,
    token,
    onTransport: (_kind, s) => { chat.setNotice(s === 'open' ? '' : t(`viewer.events.${s === 'closed' ? 'closed' : s === 'waiting' ? 'waiting' : 'connecting'}`)); },
    onChange: (change, st) => {
      switch (change.kind) {
        case 'welcome':
          change.history.forEach((m) => chat.add(m));
          // The server leaves the host's own connections out of the count.
          drawAudience(st.viewers);
          statValues.likes.textContent = String(st.likes);
          break;
        case 'history': change.history.forEach((m) => chat.add(m)); break;
        case 'chat': outbox.confirmed(change.message); chat.add(change.message); break;
        case 'likes':
          statValues.likes.textContent = String(change.total);
          floatHearts(hearts, change.delta);
          break;
        case 'presence':
          drawAudience(change.viewers);
          viewersCard.presence();
          change.joined.filter((u) => u.id !== user.id).slice(0, 3)
            .forEach((u) => chat.system(() => [userName(u), ` ${t('viewer.joined', { name: '' }).trim()}`], 'join'));
          break;
        case 'deleted': chat.remove(change.seq); break;
        case 'system':
          // A show this page does not publish (OBS on the RTMP ingest, another device).
          if (change.event === 'show_started' && !ownShow()) {
            external = true;
            giftCoins = 0;
            statValues.gifts.textContent = '0';
            setState('live');
          }
          if (change.event === 'show_ended' && external) {
            external = false;
            setState('ended');
            if (source === 'browser' && !stream) startPreview();
          }
          break;
        case 'gift': {
          giftLayer.show(change);
          giftCoins += change.coins || 0;
          statValues.gifts.textContent = String(giftCoins);
          const empty = giftsList.querySelector('.empty');
          if (empty) empty.remove();
          const at = Date.now();
          const text = h('span');
          const when = h('small', { class: 'muted' });
          const draw = () => {
            text.replaceChildren(`${change.emoji} `, userName(change.user), ` ${t('viewer.giftLine', { gift: giftName(change.gift), count: change.count })}`);
            when.textContent = ` +${change.coins} · ${formatTime(at, lang())}`;
          };
          draw();
          giftDrawers.push(draw);
          giftsList.prepend(h('li', { class: 'gift-entry' }, avatar(change.user, 'xs'), text, when));
          break;
        }
        case 'error':
          if (outbox.refused(change)) break;
          chat.setNotice(errorText(change), 'error');
          break;
        default: break;
      }
    },
  });
  link.loadHistory();
  link.start();

  window.queqiao.studio = { room: room.id, publisher: null, link, ingest, get state() { return state; }, get source() { return source; }, get external() { return external; } };
  applySource(source);

  const beforeUnload = (event) => { if (state === 'live') { event.preventDefault(); event.returnValue = ''; } };
  window.addEventListener('beforeunload', beforeUnload);
  const giftDrawers = [];
  const relabel = () => { setState(state); giftDrawers.forEach((draw) => draw()); };
  window.addEventListener('langchange', relabel);

  return async () => {
    stopped = true;
    window.removeEventListener('beforeunload', beforeUnload);
    window.removeEventListener('langchange', relabel);
    clearInterval(statsTimer);
    clearInterval(timerTick);
    link.stop();
    outbox.stop();
    chat.destroy();
    viewersCard.destroy();
    share.destroy();
    ingest.destroy();
    scheduleCard.destroy();
    if (confirmEnd.open) confirmEnd.close();
    if (publisher) await publisher.stop();
    publisher = null;
    if (stream) stream.getTracks().forEach((track) => track.stop());
    window.queqiao.studio = null;
  };
}

