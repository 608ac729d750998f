// Tiny DOM helpers. Everything user-supplied goes in as text (textContent) or as a checked
// attribute value, never as HTML: there is no innerHTML anywhere in the web demo.
import { t } from './i18n.js';

/**
 * Creates an element. `attrs`: `class`, `text` (textContent), `i18n` (a dictionary key;
 * the text follows the language toggle), `i18nAttr` ({attr: key}), `on` ({event: fn}),
 * `dataset` ({key: value}), `hidden`, any other attribute (set with setAttribute), and
 * properties for `value`/`checked`/`disabled`. Children: nodes, strings (text) or falsy.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    switch (key) {
      case 'class': el.className = value; break;
      case 'text': el.textContent = String(value); break;
      case 'i18n': el.dataset.i18n = value; el.textContent = t(value); break;
      case 'i18nAttr':
        for (const [attr, k] of Object.entries(value)) {
          el.dataset[`i18n${attr.replace(/(^|-)(\w)/g, (_, __, c) => c.toUpperCase())}`] = k;
          el.setAttribute(attr, t(k));
        }
        break;
      case 'on': for (const [event, fn] of Object.entries(value)) el.addEventListener(event, fn); break;
      case 'dataset': for (const [k, v] of Object.entries(value)) el.dataset[k] = String(v); break;
      case 'value': case 'checked': case 'disabled': case 'hidden': case 'selected': el[key] = value; break;
      default: el.setAttribute(key, value === true ? '' : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces an element's children. */
export function render(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export const $ = (selector, root = document) => root.querySelector(selector);

/** Only http(s) URLs become image sources (the server validates them too). */
export function safeUrl(url) {
  if (typeof url !== 'string') return null;
  try {
    const parsed = new URL(url, location.href);
    return parsed.protocol === 'https:' || parsed.protocol === 'http:' ? parsed.href : null;
  } catch (_) {
    return null;
  }
}

/** An avatar: the image if there is one, else the first character on a coloured disc. */
export function avatar(user, size = 'md') {
  const name = (user && user.nickname) || '?';
  const url = safeUrl(user && user.avatar_url);
  if (url) {
    return h('img', { class: `avatar avatar-${size}`, src: url, alt: '', loading: 'lazy', referrerpolicy: 'no-referrer' });
  }
  const hue = [...name].reduce((a, c) => (a * 31 + c.codePointAt(0)) % 360, 7);
  return h('span', { class: `avatar avatar-${size} avatar-letter`, style: `--hue:${hue}`, 'aria-hidden': 'true', translate: 'no', text: [...name][0] });
}

/**
 * Shows a short message in the toast region (announced to screen readers); `message` is
 * text or nodes (a link to follow, say).
 */
export function toast(message, kind = 'info', ms = 3500) {
  const region = document.getElementById('toasts');
  if (!region) return null;
  const item = h('div', { class: `toast toast-${kind}`, role: kind === 'error' ? 'alert' : 'status' }, message);
  region.append(item);
  setTimeout(() => item.remove(), ms);
  return item;
}

/** 1234 → "1234", 12345 → "1.2万" / "12.3k". */
export function compactNumber(n, lang) {
  n = Number(n) || 0;
  if (lang === 'zh') return n >= 10000 ? `${(n / 10000).toFixed(n >= 100000 ? 0 : 1)}万` : String(n);
  return n >= 1000 ? `${(n / 1000).toFixed(n >= 10000 ? 0 : 1)}k` : String(n);
}

export function formatDuration(seconds) {
  const s = Math.max(0, Math.round(Number(seconds) || 0));
  const hh = Math.floor(s / 3600);
  const mm = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return hh ? `${hh}:${String(mm).padStart(2, '0')}:${ss}` : `${mm}:${ss}`;
}

export function formatTime(ms, lang) {
  if (!ms) return '';
  return new Date(ms).toLocaleString(lang === 'zh' ? 'zh-CN' : 'en-GB', {
    month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit',
  });
}

/** Marks a form's fields from a server error ({code, message, field}). */
export function showFormError(form, err) {
  form.querySelectorAll('[aria-invalid]').forEach((el) => el.removeAttribute('aria-invalid'));
  const box = form.querySelector('.form-error');
  if (box) {
    box.textContent = err ? err.message : '';
    box.hidden = !err;
  }
  if (err && err.field) {
    const input = form.querySelector(`[name="${CSS.escape(err.field)}"]`);
    if (input) {
      input.setAttribute('aria-invalid', 'true');
      input.focus();
    }
  }
}

let fieldCounter = 0;
/** A labelled form field: <div class="field"><label>…</label><input>…<small hint></div>. */
export function field(labelKey, input, { hint } = {}) {
  if (!input.id) input.id = `field-${++fieldCounter}`;
  const hintEl = hint ? h('small', { class: 'hint', id: `${input.id}-hint`, i18n: hint }) : null;
  if (hintEl) input.setAttribute('aria-describedby', hintEl.id);
  return h('div', { class: 'field' }, h('label', { for: input.id, i18n: labelKey }), input, hintEl);
}

/** Splits "a, b，c" into tags (ASCII and full-width commas). */
export function splitTags(text) {
  return String(text || '').split(/[,，、]/).map((s) => s.trim()).filter(Boolean).slice(0, 10);
}
