// Two cards of the host studio: 在线观众 (who is watching now, from
// `GET /api/rooms/{id}/viewers`, re-read when the room's presence changes) and 预约直播
// (schedule a show: `POST/GET/DELETE /api/rooms/{id}/schedule`, times in Unix seconds;
// viewers reserve it).
import { h, render, avatar, formatTime, showFormError, toast } from '../dom.js';
import { t, lang } from '../i18n.js';
import { api, errorText } from '../api.js';

const REFRESH_DELAY_MS = 500;

export function createViewersCard({ room }) {
  const list = h('ul', { class: 'viewer-list', id: 'viewer-list' });
  const summary = h('p', { class: 'muted', id: 'viewer-summary' });
  let data = null;
  let error = null;
  let timer = null;

  function draw() {
    if (error) { summary.textContent = errorText(error); render(list); return; }
    if (!data) { summary.textContent = t('common.loading'); return; }
    summary.textContent = t('studio.viewerSummary', { n: data.count, anonymous: data.anonymous || 0 });
    summary.dataset.count = String(data.count);
    render(list, (data.viewers || []).length
      ? data.viewers.map((v) => h('li', { class: 'viewer-row', dataset: { user: v.user_id } },
        avatar({ nickname: v.nickname, avatar_url: v.avatar_url }, 'sm'),
        h('span', { class: 'viewer-name', translate: 'no', text: v.nickname }),
        h('small', { class: 'muted', text: formatTime(v.joined_at, lang()) })))
      : h('li', { class: 'empty', i18n: 'studio.noViewers' }));
  }

  async function refresh() {
    try { data = await api.viewers(room); error = null; } catch (err) { error = err; }
    draw();
  }
  window.addEventListener('langchange', draw);
  draw();
  refresh();
  return {
    el: h('section', { class: 'card viewers-card', 'aria-labelledby': 'viewers-title' },
      h('div', { class: 'page-head' },
        h('h2', { id: 'viewers-title', i18n: 'studio.onlineViewers' }),
        h('button', { type: 'button', class: 'chip-button', id: 'viewers-refresh', i18n: 'rooms.refresh', on: { click: refresh } })),
      summary, list),
    /** Someone came or left: re-read shortly (a burst of joins, one request). */
    presence() { clearTimeout(timer); timer = setTimeout(refresh, REFRESH_DELAY_MS); },
    destroy() { clearTimeout(timer); window.removeEventListener('langchange', draw); },
  };
}

/** "2026-12-03T20:00" (local time, as a datetime-local input gives it) → Unix seconds. */
const localToSecs = (value) => (value ? Math.floor(new Date(value).getTime() / 1000) : NaN);

export function createScheduleCard({ room }) {
  const when = h('input', { type: 'datetime-local', name: 'starts_at', id: 'schedule-when', required: true });
  const title = h('input', { name: 'title', id: 'schedule-title', maxlength: 60, required: true });
  const list = h('ul', { class: 'schedule-list', id: 'schedule-list' });
  const form = h('form', { class: 'form', id: 'schedule-form', novalidate: true },
    h('div', { class: 'field-row' },
      h('div', { class: 'field' }, h('label', { for: when.id, i18n: 'schedule.when' }), when),
      h('div', { class: 'field' }, h('label', { for: title.id, i18n: 'schedule.showTitle' }), title)),
    h('p', { class: 'form-error', role: 'alert', hidden: true }),
    h('button', { type: 'submit', class: 'button-small', id: 'schedule-add', i18n: 'schedule.add' }));
  let items = [];

  function draw() {
    render(list, items.length
      ? items.map((s) => h('li', { class: 'schedule-item', dataset: { schedule: s.id } },
        h('span', { class: 'schedule-when', text: formatTime(s.starts_at * 1000, lang()) }),
        h('span', { class: 'schedule-title', translate: 'no', text: s.title }),
        h('small', { class: 'muted schedule-count', text: t('schedule.count', { n: s.reservations || 0 }) }),
        h('button', { type: 'button', class: 'link-button', i18n: 'common.delete', on: { click: () => remove(s) } })))
      : h('li', { class: 'empty', i18n: 'schedule.none' }));
  }
  async function refresh() {
    try { items = await api.schedules(room); } catch (_) { items = []; }
    draw();
  }
  async function remove(s) {
    try { await api.unschedule(room, s.id); items = items.filter((x) => x.id !== s.id); draw(); } catch (err) { toast(errorText(err), 'error'); }
  }
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    showFormError(form, null);
    const startsAt = localToSecs(when.value);
    if (!(startsAt * 1000 > Date.now())) { showFormError(form, { message: t('schedule.future'), field: 'starts_at' }); return; }
    if (!title.value.trim()) { showFormError(form, { message: t('schedule.needTitle'), field: 'title' }); return; }
    try {
      const created = await api.schedule(room, { starts_at: startsAt, title: title.value.trim() });
      items = [...items, created].sort((a, b) => a.starts_at - b.starts_at);
      title.value = '';
      draw();
      toast(t('schedule.added'), 'ok');
    } catch (err) {
      showFormError(form, { message: errorText(err), field: err.field });
    }
  });
  window.addEventListener('langchange', draw);
  draw();
  refresh();
  return {
    el: h('section', { class: 'card schedule-card', 'aria-labelledby': 'schedule-card-title' },
      h('h2', { id: 'schedule-card-title', i18n: 'schedule.title' }), form, list),
    destroy() { window.removeEventListener('langchange', draw); },
  };
}
