// Log in and sign up. Server errors ({code, message, field}) are shown on the form and the
// offending field is marked. `#/login?next=#/studio` returns there afterwards.
import { h, render, field, showFormError, toast } from '../dom.js';
import { t } from '../i18n.js';
import * as session from '../session.js';
import { errorText } from '../api.js';

function nextHash() {
  const params = new URLSearchParams(location.hash.split('?')[1] || '');
  const next = params.get('next');
  return next && next.startsWith('#/') ? next : '#/';
}

function submitting(form, busy) {
  form.querySelectorAll('button, input, select, textarea').forEach((el) => { el.disabled = busy; });
  form.setAttribute('aria-busy', busy ? 'true' : 'false');
}

export function loginView(container) {
  const login = h('input', { name: 'login', required: true, autocomplete: 'username', id: 'login-name' });
  const password = h('input', { name: 'password', type: 'password', required: true, autocomplete: 'current-password', id: 'login-password' });
  const form = h('form', { class: 'form card', id: 'login-form', novalidate: true },
    field('auth.loginName', login),
    field('auth.password', password),
    h('p', { class: 'form-error', role: 'alert', hidden: true }),
    h('button', { type: 'submit', id: 'login-submit', i18n: 'auth.login' }));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    showFormError(form, null);
    submitting(form, true);
    try {
      const user = await session.login(login.value.trim(), password.value);
      toast(t('auth.welcome', { name: user.nickname }), 'ok');
      location.hash = nextHash();
    } catch (err) {
      submitting(form, false);
      showFormError(form, { message: errorText(err), field: err.field === 'login' || err.field === 'password' ? err.field : null });
    }
  });
  const next = new URLSearchParams(location.hash.split('?')[1] || '').get('next');
  render(container,
    h('section', { class: 'page narrow', 'aria-labelledby': 'login-title' },
      h('h1', { id: 'login-title', i18n: 'auth.login' }),
      form,
      h('p', { class: 'form-alt' }, h('a', { href: `#/register${next ? `?next=${encodeURIComponent(next)}` : ''}`, i18n: 'auth.noAccount' }))));
  login.focus();
}

export function registerView(container) {
  const inputs = {
    username: h('input', { name: 'username', required: true, autocomplete: 'username', minlength: 3, maxlength: 32, pattern: '[A-Za-z][A-Za-z0-9_.\\-]{2,31}' }),
    phone: h('input', { name: 'phone', type: 'tel', autocomplete: 'tel', inputmode: 'tel' }),
    password: h('input', { name: 'password', type: 'password', required: true, minlength: 8, autocomplete: 'new-password' }),
    nickname: h('input', { name: 'nickname', required: true, maxlength: 32, autocomplete: 'nickname' }),
    gender: h('select', { name: 'gender' },
      h('option', { value: '', i18n: 'profile.gender.none' }),
      h('option', { value: 'female', i18n: 'profile.gender.female' }),
      h('option', { value: 'male', i18n: 'profile.gender.male' }),
      h('option', { value: 'other', i18n: 'profile.gender.other' })),
    birth_year: h('input', { name: 'birth_year', type: 'number', inputmode: 'numeric', min: 1920, max: new Date().getFullYear() - 18 }),
    city: h('input', { name: 'city', maxlength: 32, autocomplete: 'address-level2' }),
  };
  const form = h('form', { class: 'form card', id: 'register-form', novalidate: true },
    field('auth.username', inputs.username),
    field('auth.phone', inputs.phone),
    field('auth.password', inputs.password, { hint: 'auth.passwordHint' }),
    field('auth.nickname', inputs.nickname),
    h('div', { class: 'field-row' },
      field('profile.gender', inputs.gender),
      field('profile.birthYear', inputs.birth_year)),
    field('profile.city', inputs.city),
    h('p', { class: 'form-error', role: 'alert', hidden: true }),
    h('button', { type: 'submit', i18n: 'auth.register' }));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    showFormError(form, null);
    const body = {
      username: inputs.username.value.trim() || undefined,
      phone: inputs.phone.value.trim() || undefined,
      password: inputs.password.value,
      nickname: inputs.nickname.value.trim(),
      gender: inputs.gender.value || undefined,
      birth_year: inputs.birth_year.value ? Number(inputs.birth_year.value) : undefined,
      city: inputs.city.value.trim() || undefined,
    };
    submitting(form, true);
    try {
      const user = await session.register(body);
      toast(t('auth.welcome', { name: user.nickname }), 'ok');
      location.hash = nextHash();
    } catch (err) {
      submitting(form, false);
      showFormError(form, { message: errorText(err), field: err.field });
    }
  });
  render(container,
    h('section', { class: 'page narrow', 'aria-labelledby': 'register-title' },
      h('h1', { id: 'register-title', i18n: 'auth.register' }),
      form,
      h('p', { class: 'form-alt' }, h('a', { href: '#/login', i18n: 'auth.haveAccount' }))));
}
