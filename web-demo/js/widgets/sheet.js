// A bottom sheet: a native <dialog> (focus trapped, Escape closes) with a heading and a
// close button; the widgets put their content in `body`.
import { h } from '../dom.js';

/** id: the dialog's id; titleKey: the heading's i18n key. */
export function createSheet({ id, titleKey, className = '' }) {
  const body = h('div', { class: 'sheet-body', id: `${id}-body` });
  const dialog = h('dialog', { class: `sheet ${className}`.trim(), id, 'aria-labelledby': `${id}-title` },
    h('div', { class: 'dialog-head' },
      h('h2', { id: `${id}-title`, i18n: titleKey }),
      h('button', { type: 'button', class: 'icon-button', i18nAttr: { 'aria-label': 'common.close' }, text: '✕', on: { click: () => dialog.close() } })),
    body);
  return {
    el: dialog,
    body,
    open() { if (!dialog.open) dialog.showModal(); },
    close() { if (dialog.open) dialog.close(); },
    get isOpen() { return dialog.open; },
  };
}
