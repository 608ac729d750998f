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

/**
 * Checks the fields the way the server will, before sending: returns the first problem as
 * { code: 'validation', field } (translated like a server error), or null.
 */
export function registrationProblem(body) {
  const chars = (v) => [...(v || '')].length;
  const maxYear = new Date().getFullYear() - 18;
  if (!body.username || !/^[A-Za-z][A-Za-z0-9_.-]{2,31}$/.test(body.username)) return { code: 'validation', field: 'username' };
  if (body.phone && !/^\+?[0-9]{6,20}$/.test(body.phone)) return { code: 'validation', field: 'phone' };
  if (chars(body.password) < 8 || chars(body.password) > 128) return { code: 'validation', field: 'password' };
  if (chars(body.nickname) < 1 || chars(body.nickname) > 32) return { code: 'validation', field: 'nickname' };
  if (body.birth_year !== undefined && !(Number.isInteger(body.birth_year) && body.birth_year >= 1900 && body.birth_year <= maxYear)) return { code: 'validation', field: 'birth_year' };
  if (chars(body.city) > 32) return { code: 'validation', field: 'city' };
  return null;
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
    if (!login.value.trim()) { showFormError(form, { message: t('auth.check.login'), field: 'login' }); return; }
    if (!password.value) { showFormError(form, { message: t('auth.check.password'), field: 'password' }); return; }
    submitting(form, true);
    try {
      const user = await session.login(login.value.trim(), password.value);
      toast(t('auth.welcome', { name: user.nickname }), 'ok');
      location.hash = nextHash();
    } catch (err) {
      submitting(form, false);
      // A 401 here is a wrong password (not "log in first"), whatever the server calls it.
      const shown = err.status === 401 ? { ...err, message: '', code: 'wrong_password' } : err;
      showFormError(form, { message: errorText(shown), field: err.field === 'login' || err.field === 'password' ? err.field : shown.code === 'wrong_password' ? 'password' : null });
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
    const problem = registrationProblem(body);
    if (problem) { showFormError(form, { message: errorText(problem), field: problem.field }); return; }
    submitting(form, true);
    try {
      const user = await session.register(body);
      toast(t('auth.welcome', { name: user.nickname }), 'ok');
      location.hash = nextHash();
    } catch (err) {
      submitting(form, false);
      showFormError(form, { message: errorText(err), field: err.field || (err.code === 'username_taken' ? 'username' : null) });
    }
  });
  render(container,
    h('section', { class: 'page narrow', 'aria-labelledby': 'register-title' },
      h('h1', { id: 'register-title', i18n: 'auth.register' }),
      form,
      h('p', { class: 'form-alt' }, h('a', { href: '#/login', i18n: 'auth.haveAccount' }))));
}
