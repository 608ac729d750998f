// Log in without leaving the page: a bottom sheet (<dialog>) with the login form, used by
// the live room so an anonymous viewer who starts to chat keeps the stream and the text.
import { h, field, showFormError } from '../dom.js';
import { t } from '../i18n.js';
import { errorText } from '../api.js';
import * as session from '../session.js';

/** options: onLoggedIn(user) after a successful log-in; registerHash for the sign-up link. */
export function createLoginSheet({ onLoggedIn = () => {}, registerHash = '#/register' } = {}) {
  const login = h('input', { name: 'login', required: true, autocomplete: 'username', id: 'sheet-login-name' });
  const password = h('input', { name: 'password', type: 'password', required: true, autocomplete: 'current-password', id: 'sheet-login-password' });
  const submit = h('button', { type: 'submit', id: 'sheet-login-submit', i18n: 'auth.login' });
  const form = h('form', { class: 'form', id: 'sheet-login-form', novalidate: true },
    field('auth.loginName', login),
    field('auth.password', password),
    h('p', { class: 'form-error', role: 'alert', hidden: true }),
    submit,
    h('p', { class: 'form-alt' }, h('a', { href: registerHash, i18n: 'auth.noAccount' })));
  const dialog = h('dialog', { class: 'sheet login-sheet', id: 'login-sheet', 'aria-labelledby': 'login-sheet-title' },
    h('div', { class: 'dialog-head' },
      h('h2', { id: 'login-sheet-title', i18n: 'auth.loginTitle' }),
      h('button', { type: 'button', class: 'icon-button', i18nAttr: { 'aria-label': 'common.close' }, text: '✕', on: { click: () => dialog.close() } })),
    h('p', { class: 'muted', i18n: 'auth.loginToChat' }),
    form);

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    showFormError(form, null);
    if (!login.value.trim()) { showFormError(form, { message: t('auth.check.login'), field: 'login' }); return; }
    if (!password.value) { showFormError(form, { message: t('auth.check.password'), field: 'password' }); return; }
    submit.disabled = true;
    try {
      const user = await session.login(login.value.trim(), password.value);
      dialog.close();
      password.value = '';
      onLoggedIn(user);
    } catch (err) {
      const shown = err.status === 401 ? { ...err, code: 'wrong_password' } : err;
      showFormError(form, { message: errorText(shown), field: 'password' });
    } finally {
      submit.disabled = false;
    }
  });

  return {
    el: dialog,
    open() {
      if (!dialog.open) dialog.showModal();
      login.focus();
    },
    close() { if (dialog.open) dialog.close(); },
  };
}
