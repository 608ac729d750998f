// Image uploads (`POST /api/uploads?kind=avatar|photo|cover`): a file picker that checks the
// type and size before sending, uploads, and previews what the server stored (it re-encodes
// the image). One image (avatar, room cover) or a grid of up to nine photos.
import { h, render, safeUrl } from '../dom.js';
import { t } from '../i18n.js';
import { api, errorText } from '../api.js';

export const MAX_UPLOAD_BYTES = 5 * 1024 * 1024;
export const MAX_PHOTOS = 9;
const TYPES = ['image/png', 'image/jpeg', 'image/webp', 'image/gif'];

/** Why a file cannot be sent (an i18n key), or null. */
export function fileProblem(file) {
  if (!file) return 'upload.none';
  if (!TYPES.includes(file.type)) return 'upload.type';
  if (file.size > MAX_UPLOAD_BYTES) return 'upload.tooBig';
  return null;
}

/** Checks and uploads one file; resolves to the stored URL. Errors carry a display text. */
async function send(kind, file, status) {
  const problem = fileProblem(file);
  if (problem) throw new Error(t(problem));
  status.textContent = t('upload.sending');
  try {
    const stored = await api.upload(kind, file);
    status.textContent = '';
    return stored.url;
  } catch (err) {
    throw new Error(errorText(err));
  }
}

function picker(id, multiple, onFiles) {
  const input = h('input', { type: 'file', id, accept: TYPES.join(','), multiple, class: 'upload-input' });
  input.addEventListener('change', () => { const files = [...input.files]; input.value = ''; if (files.length) onFiles(files); });
  return input;
}

/** One image: { el, value } — `value` is the stored URL (or null). */
export function createImageUpload({ kind, id, value = null, labelKey }) {
  let url = safeUrl(value);
  const preview = h('span', { class: `upload-preview upload-${kind}` });
  const status = h('small', { class: 'upload-status', role: 'status', id: `${id}-status` });
  const drawPreview = () => render(preview, url ? h('img', { src: url, alt: '', id: `${id}-preview`, dataset: { url } }) : h('span', { class: 'muted', i18n: 'upload.empty' }));
  const input = picker(id, false, async ([file]) => {
    try {
      url = await send(kind, file, status);
      status.dataset.kind = 'ok';
      drawPreview();
    } catch (err) {
      status.textContent = err.message;
      status.dataset.kind = 'error';
    }
  });
  const clear = h('button', { type: 'button', class: 'link-button', id: `${id}-clear`, i18n: 'upload.remove', on: { click: () => { url = null; drawPreview(); } } });
  drawPreview();
  return {
    el: h('div', { class: 'field upload-field' },
      h('label', { for: id, i18n: labelKey }),
      h('div', { class: 'upload-row' }, preview, input, clear),
      status),
    get value() { return url; },
  };
}

/** Up to nine photos: { el, value } — `value` is the list of stored URLs. */
export function createPhotoGrid({ id, photos = [], labelKey }) {
  let urls = photos.map((p) => safeUrl(typeof p === 'string' ? p : p && p.url)).filter(Boolean).slice(0, MAX_PHOTOS);
  const grid = h('ul', { class: 'photo-grid', id });
  const status = h('small', { class: 'upload-status', role: 'status', id: `${id}-status` });
  const input = picker(`${id}-input`, true, async (files) => {
    const free = MAX_PHOTOS - urls.length;
    for (const file of files.slice(0, free)) {
      try {
        urls = [...urls, await send('photo', file, status)];
        draw();
      } catch (err) {
        status.textContent = err.message;
        status.dataset.kind = 'error';
        return;
      }
    }
    if (files.length > free) status.textContent = t('upload.tooMany', { n: MAX_PHOTOS });
  });
  function draw() {
    render(grid, urls.map((src, i) => h('li', { class: 'photo-cell', dataset: { url: src } },
      h('img', { src, alt: '' }),
      h('button', { type: 'button', class: 'icon-button photo-remove', i18nAttr: { 'aria-label': 'upload.remove' }, text: '✕', on: { click: () => { urls = urls.filter((_, j) => j !== i); draw(); } } }))));
    input.disabled = urls.length >= MAX_PHOTOS;
  }
  draw();
  return {
    el: h('div', { class: 'field upload-field' },
      h('label', { for: `${id}-input`, i18n: labelKey }),
      grid, input,
      h('small', { class: 'hint', i18n: 'upload.photosHint' }),
      status),
    get value() { return urls; },
  };
}
