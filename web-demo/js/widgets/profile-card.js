// The profile card (资料卡): a user's public dating profile in a sheet over the live room —
// photos, nickname, age, city, height, education, self-introduction, partner preferences
// (择偶条件) and interests — with 关注/取消关注 and 拉黑/取消拉黑, the host's upcoming shows
// with 预约, and a link into her room when she is live. Opened from the host's chip, the
// names in the chat and the leaderboard.
import { h, render, avatar, safeUrl, toast, formatTime } from '../dom.js';
import { t, lang } from '../i18n.js';
import { api, errorText } from '../api.js';
import * as session from '../session.js';
import * as relations from '../relations.js';
import { toggleReservation as toggleShowReservation } from '../reservations.js';
import { createSheet } from './sheet.js';

/** A photo entry is a URL or {url}. */
const photoUrl = (p) => safeUrl(typeof p === 'string' ? p : p && p.url);

function age(u) {
  if (typeof u.age === 'number') return u.age;
  return u.birth_year ? new Date().getFullYear() - u.birth_year : null;
}

/** The facts line: gender · age · height · education · city. */
function facts(u) {
  const a = age(u);
  return [
    u.gender ? t(`profile.gender.${u.gender}`) : null,
    a ? t('viewer.age', { n: a }) : null,
    u.height_cm ? t('card.height', { n: u.height_cm }) : null,
    u.education ? t(`education.${u.education}`) : null,
  ].filter(Boolean);
}

/**
 * options: needLogin(then) when a logged-out user follows; room: the room being watched
 * (no "go to her room" link for it); onBlock(userId, blocked) after a block changes.
 */
export function createProfileCard({ needLogin = null, room = null, onBlock = () => {} } = {}) {
  const sheet = createSheet({ id: 'profile-card', titleKey: 'viewer.profileCard', className: 'profile-card' });
  const body = sheet.body;
  body.id = 'profile-card-body';
  body.classList.add('profile-card-body');
  let shown = null;

  /** Logged out: the login sheet, then this card again. */
  function loggedIn() {
    if (session.user()) return true;
    if (needLogin) needLogin(() => open(shown.user.id, shown.scheduleRoom));
    return false;
  }

  async function toggleFollow() {
    const u = shown.user;
    if (!loggedIn()) return;
    try {
      shown.follow = shown.follow && shown.follow.following ? await api.unfollow(u.id) : await api.follow(u.id);
      toast(t(shown.follow.following ? 'card.followed' : 'card.unfollowed', { name: u.nickname }), 'ok');
    } catch (err) { toast(errorText(err), 'error'); }
    draw();
  }

  async function toggleBlock() {
    const u = shown.user;
    if (!loggedIn()) return;
    const blocked = relations.isBlocked(u.id);
    try {
      if (blocked) await relations.unblock(u.id);
      else await relations.block(u.id);
      toast(t(blocked ? 'card.unblocked' : 'card.blocked', { name: u.nickname }), 'ok');
      onBlock(u.id, !blocked);
    } catch (err) { toast(errorText(err), 'error'); }
    draw();
  }

  async function toggleReservation(s) {
    if (!loggedIn()) return;
    await toggleShowReservation(s);
    draw();
  }

  function actions(u) {
    const me = session.user();
    if (me && me.id === u.id) return null;
    const following = !!(shown.follow && shown.follow.following);
    const blocked = relations.isBlocked(u.id);
    return h('div', { class: 'buttons profile-card-actions' },
      h('button', {
        type: 'button', id: 'card-follow', class: following ? 'button-secondary' : '', dataset: { following: following ? '1' : '0' },
        i18n: following ? 'card.unfollow' : 'card.follow', on: { click: toggleFollow },
      }),
      h('button', {
        type: 'button', id: 'card-block', class: 'button-secondary', dataset: { blocked: blocked ? '1' : '0' },
        i18n: blocked ? 'card.unblock' : 'card.block', on: { click: toggleBlock },
      }));
  }

  function upcoming() {
    const list = (shown.schedules || []).filter((s) => s.starts_at * 1000 > Date.now() - 3600 * 1000);
    if (!list.length) return null;
    return h('section', { class: 'profile-card-section', id: 'card-schedules' },
      h('h3', { i18n: 'schedule.upcoming' }),
      h('ul', { class: 'schedule-list' }, list.map((s) => h('li', { class: 'schedule-item', dataset: { schedule: s.id, reserved: s.reserved ? '1' : '0' } },
        h('span', { class: 'schedule-when', text: formatTime(s.starts_at * 1000, lang()) }),
        h('span', { class: 'schedule-title', translate: 'no', text: s.title }),
        h('small', { class: 'muted', text: t('schedule.count', { n: s.reservations || 0 }) }),
        h('button', {
          type: 'button', class: `button-small schedule-reserve${s.reserved ? ' button-secondary' : ''}`,
          i18n: s.reserved ? 'schedule.unreserve' : 'schedule.reserve', on: { click: () => toggleReservation(s) },
        })))));
  }

  function draw() {
    if (!shown) return;
    if (shown.error) { render(body, h('p', { class: 'form-error', text: errorText(shown.error) })); return; }
    const u = shown.user;
    const line = facts(u);
    const photos = (u.photos || []).map(photoUrl).filter(Boolean);
    const followers = shown.follow ? shown.follow.followers : u.followers;
    const pref = typeof u.partner_preferences === 'string' ? u.partner_preferences.trim() : '';
    render(body,
      photos.length ? h('div', { class: 'profile-photos', id: 'card-photos' },
        photos.map((src) => h('img', { class: 'profile-photo', src, alt: '', loading: 'lazy', referrerpolicy: 'no-referrer' }))) : null,
      h('div', { class: 'profile-card-head' }, avatar(u, 'lg'),
        h('div', {},
          h('strong', { class: 'profile-card-name', translate: 'no', text: u.nickname }),
          u.role === 'host' || u.role === 'admin' ? h('span', { class: 'badge badge-host', i18n: 'profile.role.host' }) : null,
          h('p', { class: 'muted', id: 'card-facts' }, line.join(' · '), u.city ? h('span', { translate: 'no', text: `${line.length ? ' · ' : ''}📍 ${u.city}` }) : null),
          typeof followers === 'number' ? h('p', { class: 'muted', id: 'card-followers', text: t('card.followers', { n: followers }) }) : null)),
      u.live_room_id && u.live_room_id !== room
        ? h('p', {}, h('a', { class: 'button button-live button-small', id: 'card-live', href: `#/room/${encodeURIComponent(u.live_room_id)}`, i18n: 'card.watchLive' }))
        : null,
      u.bio ? h('section', { class: 'profile-card-section' }, h('h3', { i18n: 'profile.bio' }), h('p', { class: 'profile-card-bio', translate: 'no', text: u.bio })) : null,
      pref ? h('section', { class: 'profile-card-section', id: 'card-preferences' }, h('h3', { i18n: 'card.preferences' }), h('p', { translate: 'no', text: pref })) : null,
      (u.tags || []).length ? h('p', {}, ...(u.tags || []).map((tag) => h('span', { class: 'tag', translate: 'no', text: tag }))) : null,
      upcoming(),
      actions(u));
  }
  window.addEventListener('langchange', draw);

  /** scheduleRoom: the room whose upcoming shows to list (the host's room being watched). */
  async function open(userId, scheduleRoom = null) {
    render(body, h('p', { class: 'muted', i18n: 'common.loading' }));
    sheet.open();
    try {
      const user = await api.user(userId);
      const me = session.user();
      const [follow, schedules] = await Promise.all([
        me && me.id !== user.id ? api.followStatus(user.id).catch(() => null) : null,
        scheduleRoom || user.live_room_id ? api.schedules(scheduleRoom || user.live_room_id).catch(() => []) : [],
        relations.loadBlocks(),
      ]);
      shown = { user, follow, scheduleRoom, schedules: Array.isArray(schedules) ? schedules : [] };
    } catch (err) {
      shown = { error: err };
    }
    draw();
  }

  return {
    el: sheet.el,
    open,
    close: () => sheet.close(),
    destroy() { window.removeEventListener('langchange', draw); },
  };
}
