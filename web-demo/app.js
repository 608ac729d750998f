// The web demo: room list, log in / sign up, profile, host studio, viewer, replays, and the
// quick test page. Plain ES modules, no build step; served by queqiao at `/`.
import * as i18n from './js/i18n.js';
import * as session from './js/session.js';
import { route, start, currentPath } from './js/router.js';
import { roomsView } from './js/views/rooms.js';
import { loginView, registerView } from './js/views/auth.js';
import { profileView } from './js/views/profile.js';
import { studioHomeView, studioRoomView } from './js/views/studio.js';
import { viewerView } from './js/views/viewer.js';
import { replayView } from './js/views/replay.js';
import { quickView, quickRequested } from './js/views/quick.js';
import { walletView } from './js/views/wallet.js';
import { followsView } from './js/views/follows.js';
import { startNotices, onNotices } from './js/notices.js';

// Exposed for the browser tests and for curious developers: the quick page sets
// .publisher/.viewer, the studio .studio, the viewer .watch.
const state = { publisher: null, viewer: null, studio: null, watch: null };
window.queqiao = state;

route('/', roomsView);
route('/login', loginView);
route('/register', registerView);
route('/me', profileView);
route('/wallet', walletView);
route('/follows', followsView);
route('/studio', studioHomeView);
route('/studio/:id', studioRoomView);
route('/room/:id', viewerView);
route('/replay/:id', replayView);
route('/quick', (container, params) => quickView(container, params, state));

function updateNav() {
  const path = currentPath();
  const section = path.startsWith('/studio') ? 'studio'
    : ['/me', '/login', '/register', '/wallet', '/follows'].includes(path) ? 'me' : path === '/' ? 'rooms' : '';
  document.querySelectorAll('[data-nav]').forEach((a) => {
    if (a.dataset.nav === section) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  });
  const me = document.getElementById('nav-me');
  const user = session.user();
  me.dataset.i18n = user ? 'nav.me' : 'nav.login';
  me.textContent = i18n.t(me.dataset.i18n);
  me.href = user ? '#/me' : '#/login';
  drawBadge();
}

// The unread live notices, as a badge on 我的 (it leads to the follows page).
let unreadNotices = [];
function drawBadge() {
  const me = document.getElementById('nav-me');
  let badge = document.getElementById('notice-badge');
  if (!unreadNotices.length) { if (badge) badge.remove(); return; }
  if (!badge) {
    badge = document.createElement('a');
    badge.id = 'notice-badge';
    badge.className = 'notice-badge';
    badge.href = '#/follows';
    me.after(badge);
  }
  badge.textContent = String(unreadNotices.length);
  badge.dataset.count = String(unreadNotices.length);
  badge.setAttribute('aria-label', i18n.t('notice.badge', { n: unreadNotices.length }));
}
onNotices((list) => { unreadNotices = list; drawBadge(); });

document.getElementById('lang-toggle').addEventListener('click', () => i18n.toggleLang());
window.addEventListener('sessionchange', updateNav);
document.addEventListener('routechange', updateNav);
window.addEventListener('langchange', updateNav);

i18n.apply();
if (quickRequested() && !location.hash) history.replaceState(null, '', `${location.search}#/quick`);
start(document.getElementById('view'));
updateNav();
session.refresh();
startNotices();
