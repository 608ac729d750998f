// Share a room (分享): the link and its QR code from `GET /api/rooms/{id}/share`
// (`share.svg` is drawn by the server), copy the link, and a poster — a canvas with the
// room's cover, its title and the QR code — to save as a PNG.
import { h, render, safeUrl, toast } from '../dom.js';
import { t } from '../i18n.js';
import { api, errorText } from '../api.js';
import { createSheet } from './sheet.js';

const POSTER = { width: 600, height: 900 };

function loadImage(src) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.crossOrigin = 'anonymous';
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error(`image ${src}`));
    img.src = src;
  });
}

/** Draws `img` covering the rectangle (like object-fit: cover). */
function drawCover(ctx, img, x, y, w, hgt) {
  const scale = Math.max(w / img.width, hgt / img.height);
  const sw = w / scale;
  const sh = hgt / scale;
  ctx.drawImage(img, (img.width - sw) / 2, (img.height - sh) / 2, sw, sh, x, y, w, hgt);
}

/** The poster: cover (or the brand gradient), title, QR code and a caption. */
async function drawPoster(canvas, { title, cover, qr }) {
  const ctx = canvas.getContext('2d');
  const { width, height } = POSTER;
  canvas.width = width;
  canvas.height = height;
  const gradient = ctx.createLinearGradient(0, 0, width, height);
  gradient.addColorStop(0, '#ffc1d3');
  gradient.addColorStop(0.7, '#e8457a');
  gradient.addColorStop(1, '#9b2c66');
  ctx.fillStyle = gradient;
  ctx.fillRect(0, 0, width, height);
  const coverUrl = safeUrl(cover);
  if (coverUrl) {
    try { drawCover(ctx, await loadImage(coverUrl), 0, 0, width, 560); } catch (_) { /* no cover: the gradient stays */ }
  }
  ctx.fillStyle = '#fff';
  ctx.fillRect(0, 560, width, height - 560);
  ctx.fillStyle = '#2b2230';
  ctx.font = 'bold 34px sans-serif';
  ctx.textBaseline = 'top';
  ctx.fillText([...String(title || '')].slice(0, 16).join(''), 32, 592);
  ctx.font = '24px sans-serif';
  ctx.fillStyle = '#8a7a86';
  ctx.fillText(t('share.posterCaption'), 32, 648);
  if (qr) {
    try { ctx.drawImage(await loadImage(qr), width - 252, 632, 220, 220); } catch (_) { /* the link is still shown */ }
  }
}

export function createSharePanel({ room, title, cover }) {
  const sheet = createSheet({ id: 'share-sheet', titleKey: 'share.title', className: 'share-sheet' });
  const link = h('input', { id: 'share-link', readonly: true, i18nAttr: { 'aria-label': 'share.link' } });
  const qr = h('img', { id: 'share-qr', class: 'share-qr', alt: '', hidden: true });
  const canvas = h('canvas', { id: 'share-poster', class: 'share-poster', width: POSTER.width, height: POSTER.height, hidden: true });
  const error = h('p', { class: 'form-error', role: 'alert', hidden: true });
  const save = h('a', { class: 'button button-secondary button-small', id: 'share-save', download: `${room}.png`, hidden: true, i18n: 'share.savePoster' });
  const copy = h('button', {
    type: 'button', class: 'button-small', id: 'share-copy', i18n: 'share.copy',
    on: {
      click: async () => {
        link.select();
        try { await navigator.clipboard.writeText(link.value); toast(t('share.copied'), 'ok'); } catch (_) { toast(t('share.copyManually')); }
      },
    },
  });
  const posterButton = h('button', {
    type: 'button', class: 'button-small button-secondary', id: 'share-make-poster', i18n: 'share.poster',
    on: { click: () => makePoster() },
  });
  render(sheet.body,
    h('div', { class: 'share-row' }, link, copy),
    qr,
    h('div', { class: 'buttons' }, posterButton, save),
    canvas,
    error);
  let info = null;

  async function makePoster() {
    await drawPoster(canvas, { title, cover, qr: info && info.qr_svg_url });
    canvas.hidden = false;
    canvas.dataset.drawn = '1';
    try {
      save.href = canvas.toDataURL('image/png');
      save.hidden = false;
    } catch (_) { /* a cross-origin cover taints the canvas: it can still be long-pressed */ }
  }

  return {
    el: sheet.el,
    async open() {
      sheet.open();
      error.hidden = true;
      if (info) return;
      try {
        info = await api.share(room);
        link.value = info.web_url;
        if (info.qr_svg_url) { qr.src = info.qr_svg_url; qr.hidden = false; }
      } catch (err) {
        // The link itself is known here; only the QR code needs the server.
        link.value = `${location.origin}${location.pathname}#/room/${encodeURIComponent(room)}`;
        error.textContent = errorText(err);
        error.hidden = false;
      }
    },
    close: () => sheet.close(),
    destroy: () => sheet.close(),
  };
}
