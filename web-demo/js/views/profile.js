// One's own profile (a dating profile: nickname, uploaded avatar and up to nine photos,
// gender, birth year, height, education, city, about, partner preferences, interests), the
// wallet with its recharge link, my follows, and logging out.
import { h, render, field, showFormError, toast, avatar, splitTags } from '../dom.js';
import { t } from '../i18n.js';
import * as session from '../session.js';
import { api, errorText } from '../api.js';
import { createImageUpload, createPhotoGrid } from '../widgets/image-upload.js';

export const EDUCATION = ['high_school', 'college', 'bachelor', 'master', 'doctorate'];

/** The fields of `change` whose value differs from `me`'s. */
function changed(me, change) {
  const same = (a, b) => JSON.stringify(a ?? null) === JSON.stringify(b ?? null);
  return Object.fromEntries(Object.entries(change).filter(([k, v]) => !same(v, k === 'photos' ? (me.photos || []).map((p) => (typeof p === 'string' ? p : p.url)) : me[k])));
}

export async function profileView(container) {
  if (!session.user()) {
    location.hash = '#/login?next=%23%2Fme';
    return undefined;
  }
  render(container, h('p', { class: 'page loading', i18n: 'common.loading' }));
  let me;
  try {
    me = await api.me();
    session.updateUser(me);
  } catch (err) {
    if (err.status === 401) { location.hash = '#/login?next=%23%2Fme'; return undefined; }
    me = session.user();
  }

  const inputs = {
    nickname: h('input', { name: 'nickname', required: true, maxlength: 32, value: me.nickname || '' }),
    gender: h('select', { name: 'gender' },
      ['', 'female', 'male', 'other'].map((g) => h('option', { value: g, selected: (me.gender || '') === g, i18n: `profile.gender.${g || 'none'}` }))),
    birth_year: h('input', { name: 'birth_year', type: 'number', inputmode: 'numeric', value: me.birth_year || '' }),
    city: h('input', { name: 'city', maxlength: 32, value: me.city || '' }),
    bio: h('textarea', { name: 'bio', maxlength: 500, rows: 3 }),
    tags: h('input', { name: 'tags', value: (me.tags || []).join(', ') }),
    height_cm: h('input', { name: 'height_cm', type: 'number', inputmode: 'numeric', min: 100, max: 250, value: me.height_cm || '' }),
    education: h('select', { name: 'education' },
      ['', ...EDUCATION].map((e) => h('option', { value: e, selected: (me.education || '') === e, i18n: `education.${e || 'none'}` }))),
    partner_preferences: h('textarea', { name: 'partner_preferences', maxlength: 500, rows: 3 }),
  };
  inputs.partner_preferences.value = typeof me.partner_preferences === 'string' ? me.partner_preferences : '';
  const avatarUpload = createImageUpload({ kind: 'avatar', id: 'avatar-upload', value: me.avatar_url, labelKey: 'profile.avatar' });
  const photos = createPhotoGrid({ id: 'photo-grid', photos: me.photos || [], labelKey: 'profile.photos' });
  inputs.bio.value = me.bio || '';

  const form = h('form', { class: 'form card', id: 'profile-form', novalidate: true },
    field('auth.nickname', inputs.nickname),
    avatarUpload.el,
    h('div', { class: 'field-row' }, field('profile.gender', inputs.gender), field('profile.birthYear', inputs.birth_year)),
    h('div', { class: 'field-row' }, field('profile.height', inputs.height_cm), field('profile.education', inputs.education)),
    field('profile.city', inputs.city),
    field('profile.bio', inputs.bio),
    field('card.preferences', inputs.partner_preferences, { hint: 'profile.preferencesHint' }),
    photos.el,
    field('profile.tags', inputs.tags),
    h('p', { class: 'form-error', role: 'alert', hidden: true }),
    h('button', { type: 'submit', i18n: 'common.save' }));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    showFormError(form, null);
    const text = (v) => (v.trim() ? v.trim() : null);
    try {
      const updated = await api.updateMe({
        nickname: inputs.nickname.value.trim(),
        avatar_url: avatarUpload.value,
        gender: inputs.gender.value || null,
        birth_year: inputs.birth_year.value ? Number(inputs.birth_year.value) : null,
        city: text(inputs.city.value),
        bio: text(inputs.bio.value),
        tags: splitTags(inputs.tags.value),
        // The dating fields go only when they changed (PATCH: what is not sent stays).
        ...changed(me, {
          height_cm: inputs.height_cm.value ? Number(inputs.height_cm.value) : null,
          education: inputs.education.value || null,
          partner_preferences: text(inputs.partner_preferences.value),
          photos: photos.value,
        }),
      });
      me = updated;
      session.updateUser(updated);
      render(head, ...headContent(updated));
      toast(t('profile.saved'), 'ok');
    } catch (err) {
      showFormError(form, { message: errorText(err), field: err.field });
    }
  });

  const coins = h('strong', { id: 'wallet-coins', text: '…' });
  const earnings = h('strong', { id: 'wallet-earnings', text: '…' });
  api.wallet().then((w) => { coins.textContent = String(w.coins); earnings.textContent = String(w.earnings); })
    .catch((err) => { coins.textContent = errorText(err); });

  const headContent = (u) => [
    avatar(u, 'lg'),
    h('div', {},
      h('h1', { id: 'profile-title', translate: 'no', text: u.nickname }),
      h('p', { class: 'muted' },
        h('span', { i18n: `profile.role.${u.role}` }), ` · #${u.id}`, u.username ? h('span', { translate: 'no', text: ` · @${u.username}` }) : '')),
  ];
  const head = h('div', { class: 'profile-head' }, ...headContent(me));

  render(container,
    h('section', { class: 'page narrow', 'aria-labelledby': 'profile-title' },
      head,
      h('section', { class: 'card wallet', 'aria-labelledby': 'wallet-title' },
        h('h2', { id: 'wallet-title', i18n: 'profile.wallet' }),
        h('dl', { class: 'stats-grid' },
          h('div', {}, h('dt', { i18n: 'profile.coins' }), h('dd', {}, coins)),
          h('div', {}, h('dt', { i18n: 'profile.earnings' }), h('dd', {}, earnings))),
        h('p', { class: 'buttons' },
          h('a', { class: 'button button-small', id: 'to-wallet', href: '#/wallet', i18n: 'wallet.recharge' }),
          h('a', { class: 'button button-secondary button-small', id: 'to-follows', href: '#/follows', i18n: 'follows.title' }))),
      session.isHost() ? h('p', {}, h('a', { class: 'button', href: '#/studio', i18n: 'profile.toStudio' })) : null,
      h('h2', { i18n: 'profile.title' }),
      form,
      h('p', {}, h('button', { type: 'button', class: 'button-secondary', id: 'logout', i18n: 'auth.logout',
        on: { click: () => { session.logout(); location.hash = '#/'; } } }))));
  return undefined;
}
