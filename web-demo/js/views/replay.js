// Replays: a room's recorded shows (HLS VOD from the bridge), newest first, played with
// hls.js where Media Source Extensions exist, else natively.
import { h, render, formatDuration, formatTime } from '../dom.js';
import { t, lang } from '../i18n.js';
import { api, token, errorText } from '../api.js';
import { loadScript } from '../player.js';

export async function replayView(container, { id }) {
  const video = h('video', { id: 'replay-video', controls: true, playsinline: true, preload: 'metadata' });
  const list = h('ol', { class: 'replay-list', id: 'replay-list' }, h('li', { class: 'empty', i18n: 'common.loading' }));
  const title = h('h1', { id: 'replay-title', i18n: 'replay.title' });
  const nowPlaying = h('p', { class: 'muted', id: 'replay-now', role: 'status' });
  render(container,
    h('section', { class: 'page replay-page', 'aria-labelledby': 'replay-title' },
      h('p', {}, h('a', { href: `#/room/${encodeURIComponent(id)}`, i18n: 'common.back' })),
      title,
      h('div', { class: 'replay-grid' },
        h('div', { class: 'player-box replay-player' }, video),
        h('div', {}, nowPlaying, list))));

  let hls = null;
  function stopPlayback() {
    if (hls) { hls.destroy(); hls = null; }
    video.pause();
    video.removeAttribute('src');
    video.load();
  }

  async function playRecording(recording, button) {
    stopPlayback();
    list.querySelectorAll('[aria-pressed="true"]').forEach((b) => b.setAttribute('aria-pressed', 'false'));
    button.setAttribute('aria-pressed', 'true');
    nowPlaying.textContent = formatTime(recording.started_at, lang());
    const jwt = token();
    // hls.js (MSE) copes with the discontinuities a recording has where the encoder changed
    // resolution; native HLS is for browsers without MSE (iOS Safari).
    let Hls = null;
    try {
      await loadScript('/vendor/hls.min.js');
      Hls = window.Hls && window.Hls.isSupported() ? window.Hls : null;
    } catch (_) { /* not available: native */ }
    if (Hls) {
      hls = new Hls({ xhrSetup: jwt ? (xhr) => xhr.setRequestHeader('Authorization', `Bearer ${jwt}`) : undefined });
      hls.loadSource(recording.url);
      hls.attachMedia(video);
    } else {
      const url = new URL(recording.url, location.href);
      if (jwt) url.searchParams.set('token', jwt);
      video.src = url.toString();
    }
    video.play().catch(() => { /* the controls let the user start it */ });
  }

  const nativeHls = !!video.canPlayType('application/vnd.apple.mpegurl');
  function thumbnail(r) {
    if (!nativeHls || !r.video) return null;
    const url = new URL(r.url, location.href);
    const jwt = token();
    if (jwt) url.searchParams.set('token', jwt);
    // A muted element that loads the start of the recording and shows a frame 1 s in.
    return h('video', { class: 'replay-thumb', muted: true, preload: 'metadata', playsinline: true, 'aria-hidden': 'true', src: `${url}#t=1` });
  }
  let drawList = () => {};
  const relabel = () => {
    drawList();
    if (nowPlaying.dataset.at) nowPlaying.textContent = formatTime(Number(nowPlaying.dataset.at), lang());
  };
  window.addEventListener('langchange', relabel);
  try {
    const [room, recordings] = await Promise.all([api.room(id).catch(() => null), api.recordings(id)]);
    if (room) {
      title.removeAttribute('data-i18n');
      title.replaceChildren(h('span', { i18n: 'replay.title' }), ' · ', h('span', { translate: 'no', text: room.title }));
    }
    const playable = recordings.filter((r) => r.url && r.segments > 0);
    const items = playable.map((r) => {
      const when = h('strong');
      const length = h('span');
      const button = h('button', { type: 'button', class: 'replay-item', 'aria-pressed': 'false', dataset: { recording: r.id } },
        thumbnail(r),
        h('span', { class: 'replay-meta' },
          when, ' ', length, ' ',
          r.width ? h('span', { class: 'replay-size', text: t('replay.size', { w: r.width, h: r.height }) }) : null,
          r.recording ? h('span', { class: 'badge badge-live', i18n: 'replay.recording' }) : null));
      button.addEventListener('click', () => { nowPlaying.dataset.at = String(r.started_at); playRecording(r, button); });
      return { r, when, length, li: h('li', {}, button) };
    });
    drawList = () => items.forEach(({ r, when, length }) => {
      when.textContent = formatTime(r.started_at, lang());
      length.textContent = t('replay.duration', { d: formatDuration(r.duration_secs) });
    });
    drawList();
    render(list, items.length ? items.map((i) => i.li) : h('li', { class: 'empty', i18n: 'replay.empty' }));
  } catch (err) {
    render(list, h('li', { class: 'form-error', text: err.status === 404 ? t('replay.unavailable') : errorText(err) }));
  }
  return () => { window.removeEventListener('langchange', relabel); stopPlayback(); };
}
