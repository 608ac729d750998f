// The profile card (资料卡): a user's public profile in a sheet over the live room — avatar,
// nickname, age, city, self-introduction and interests — opened from the host's chip and
// from the names in the chat.
import { h, render, avatar } from '../dom.js';
import { t } from '../i18n.js';
import { api, errorText } from '../api.js';

export function createProfileCard() {
  const body = h('div', { class: 'profile-card-body', id: 'profile-card-body' });
  const dialog = h('dialog', { class: 'sheet profile-card', id: 'profile-card', 'aria-labelledby': 'profile-card-title' },
    h('div', { class: 'dialog-head' },
      h('h2', { id: 'profile-card-title', i18n: 'viewer.profileCard' }),
      h('button', { type: 'button', class: 'icon-button', i18nAttr: { 'aria-label': 'common.close' }, text: '✕', on: { click: () => dialog.close() } })),
    body);
  let shown = null;

  function draw() {
    if (!shown) return;
    if (shown.error) { render(body, h('p', { class: 'form-error', text: errorText(shown.error) })); return; }
    const u = shown.user;
    const facts = [
      u.gender ? t(`profile.gender.${u.gender}`) : null,
      u.birth_year ? t('viewer.age', { n: new Date().getFullYear() - u.birth_year }) : null,
    ].filter(Boolean);
    render(body,
      h('div', { class: 'profile-card-head' }, avatar(u, 'lg'),
        h('div', {},
          h('strong', { class: 'profile-card-name', translate: 'no', text: u.nickname }),
          u.role === 'host' || u.role === 'admin' ? h('span', { class: 'badge badge-host', i18n: 'profile.role.host' }) : null,
          h('p', { class: 'muted' }, facts.join(' · '), u.city ? h('span', { translate: 'no', text: `${facts.length ? ' · ' : ''}📍 ${u.city}` }) : null))),
      u.bio ? h('p', { class: 'profile-card-bio', translate: 'no', text: u.bio }) : null,
      (u.tags || []).length ? h('p', {}, ...(u.tags || []).map((tag) => h('span', { class: 'tag', translate: 'no', text: tag }))) : null);
  }
  window.addEventListener('langchange', draw);

  return {
    el: dialog,
    async open(userId) {
      render(body, h('p', { class: 'muted', i18n: 'common.loading' }));
      if (!dialog.open) dialog.showModal();
      try {
        shown = { user: await api.user(userId) };
      } catch (err) {
        shown = { error: err };
      }
      draw();
    },
    close() { if (dialog.open) dialog.close(); },
    destroy() { window.removeEventListener('langchange', draw); },
  };
}
