// 用 OBS 推流 (Stream with OBS): the room's RTMP ingest point from
// `GET /api/rooms/{id}/ingest` — server URL and stream key (masked until shown), copy
// buttons, 重置推流码 (`POST /api/rooms/{id}/ingest/rotate`, after a confirmation: the old
// key stops working for new connections), the encoder settings that the bridge and the
// mini-program players need (H.264 without B-frames, 2 s keyframes, AAC), and the same as
// an ffmpeg command. `rtmp: null` means this server runs without RTMP ingest.
import { h, render, toast } from '../dom.js';
import { t } from '../i18n.js';
import { api, errorText } from '../api.js';

const MASK = '••••••••';

/** The ffmpeg one-liner for a portrait 720×1280 show at 30 fps (2 s GOP, no B-frames). */
export function ffmpegCommand(url) {
  return [
    'ffmpeg -re -i input.mp4',
    '-vf "scale=720:1280:force_original_aspect_ratio=decrease,pad=720:1280:(ow-iw)/2:(oh-ih)/2"',
    '-c:v libx264 -preset veryfast -profile:v main -bf 0 -r 30 -g 60 -keyint_min 60 -sc_threshold 0',
    '-b:v 3000k -maxrate 3000k -bufsize 6000k -pix_fmt yuv420p',
    '-c:a aac -b:a 128k -ar 48000 -ac 2',
    `-f flv "${url}"`,
  ].join(' ');
}

async function copyText(text, okKey) {
  try {
    await navigator.clipboard.writeText(text);
    toast(t(okKey), 'ok');
    return true;
  } catch (_) {
    toast(t('ingest.copyManually'));
    return false;
  }
}

export function createIngestPanel({ room }) {
  const body = h('div', { class: 'ingest-body', id: 'ingest-body' }, h('p', { class: 'muted', i18n: 'common.loading' }));
  const confirm = h('dialog', { class: 'sheet confirm-rotate', id: 'ingest-rotate-confirm', 'aria-labelledby': 'ingest-rotate-text' },
    h('p', { id: 'ingest-rotate-text', i18n: 'ingest.rotateConfirm' }),
    h('div', { class: 'buttons' },
      h('button', { type: 'button', id: 'ingest-rotate-yes', i18n: 'ingest.rotate', on: { click: () => { confirm.close(); rotate(); } } }),
      h('button', { type: 'button', class: 'button-secondary', id: 'ingest-rotate-no', i18n: 'common.cancel', on: { click: () => confirm.close() } })));
  const el = h('section', { class: 'card ingest-card', id: 'ingest-panel', 'aria-labelledby': 'ingest-title' },
    h('h2', { id: 'ingest-title', i18n: 'ingest.title' }),
    h('p', { class: 'muted ingest-intro', i18n: 'ingest.intro' }),
    body, confirm);

  let info = null;
  let error = null;
  let showKey = false;
  let loading = null;
  let destroyed = false;

  const settings = () => h('div', { class: 'ingest-settings' },
    h('h3', { i18n: 'ingest.settings' }),
    h('ul', { id: 'ingest-settings' },
      ['ingest.setVideo', 'ingest.setKeyframe', 'ingest.setBframes', 'ingest.setAudio', 'ingest.setBitrate', 'ingest.setObs']
        .map((key) => h('li', { i18n: key }))));

  function draw() {
    if (destroyed) return;
    if (error) {
      render(body,
        h('p', { class: 'form-error', role: 'alert', id: 'ingest-error', text: errorText(error) }),
        h('button', { type: 'button', class: 'button-small button-secondary', id: 'ingest-retry', i18n: 'common.retry', on: { click: () => load(true) } }));
      return;
    }
    if (!info) { render(body, h('p', { class: 'muted', i18n: 'common.loading' })); return; }
    if (!info.rtmp) {
      render(body, h('p', { class: 'card notice ingest-off', id: 'ingest-off', i18n: 'ingest.off' }), settings());
      return;
    }
    const { server_url: serverUrl, stream_key: key, url } = info.rtmp;
    const server = h('input', { id: 'ingest-server', readonly: true, value: serverUrl, translate: 'no', spellcheck: 'false' });
    const keyInput = h('input', { id: 'ingest-key', readonly: true, value: key, type: showKey ? 'text' : 'password', translate: 'no', spellcheck: 'false', autocomplete: 'off' });
    const command = h('code', { id: 'ingest-ffmpeg', translate: 'no', text: ffmpegCommand(showKey ? url : url.replace(key, MASK)) });
    render(body,
      h('div', { class: 'field' },
        h('label', { for: 'ingest-server', i18n: 'ingest.server' }),
        h('div', { class: 'share-row ingest-row' }, server,
          h('button', { type: 'button', class: 'button-small', id: 'ingest-copy-server', i18n: 'ingest.copy', on: { click: () => copyText(serverUrl, 'ingest.copiedServer') } }))),
      h('div', { class: 'field' },
        h('label', { for: 'ingest-key', i18n: 'ingest.key' }),
        h('div', { class: 'share-row ingest-row' }, keyInput,
          h('button', {
            type: 'button', class: 'button-small button-secondary', id: 'ingest-show-key', 'aria-pressed': showKey ? 'true' : 'false',
            'aria-controls': 'ingest-key', i18n: showKey ? 'ingest.hideKey' : 'ingest.showKey',
            on: { click: () => { showKey = !showKey; draw(); } },
          }),
          h('button', { type: 'button', class: 'button-small', id: 'ingest-copy-key', i18n: 'ingest.copy', on: { click: () => copyText(key, 'ingest.copiedKey') } })),
        h('small', { class: 'hint', i18n: 'ingest.keyHint' })),
      h('div', { class: 'buttons' },
        h('button', { type: 'button', class: 'button-small button-secondary', id: 'ingest-rotate', i18n: 'ingest.rotate', on: { click: () => { if (!confirm.open) confirm.showModal(); } } })),
      settings(),
      h('div', { class: 'ingest-ffmpeg' },
        h('h3', { i18n: 'ingest.ffmpeg' }),
        h('pre', {}, command),
        h('button', { type: 'button', class: 'button-small button-secondary', id: 'ingest-copy-ffmpeg', i18n: 'ingest.copyCommand', on: { click: () => copyText(ffmpegCommand(url), 'ingest.copiedCommand') } })));
  }

  async function load(force = false) {
    if (loading && !force) return loading;
    error = null;
    if (force) { info = null; draw(); }
    loading = (async () => {
      try { info = await api.ingest(room); } catch (err) { error = err; }
      draw();
      return info;
    })();
    return loading;
  }

  async function rotate() {
    const button = body.querySelector('#ingest-rotate');
    if (button) button.disabled = true;
    try {
      info = await api.rotateIngest(room);
      error = null;
      draw();
      toast(t('ingest.rotated'), 'ok');
    } catch (err) {
      if (button) button.disabled = false;
      toast(errorText(err), 'error');
    }
  }

  window.addEventListener('langchange', draw);
  return {
    el,
    /** Fetches the ingest info (once; `load(true)` reads it again). */
    load,
    get info() { return info; },
    destroy() {
      destroyed = true;
      window.removeEventListener('langchange', draw);
      if (confirm.open) confirm.close();
    },
  };
}
