// Hash routes: #/ (rooms), #/room/{id}, #/replay/{id}, #/studio, #/studio/{id}, #/login,
// #/register, #/me, #/quick. A view is `(container, params) → cleanup?`; the previous view's
// cleanup runs before the next view starts (players stop, sockets close).

const routes = [];
let cleanup = null;
let container = null;
let guard = null;

export function route(pattern, view) {
  const keys = [];
  const regex = new RegExp(`^${pattern.replace(/:(\w+)/g, (_, k) => { keys.push(k); return '([^/]+)'; })}$`);
  routes.push({ regex, keys, view, pattern });
}

/** A function asked before leaving the current view; returning false stays. */
export function setLeaveGuard(fn) {
  guard = fn;
}

export function navigate(hash) {
  if (location.hash === hash) run();
  else location.hash = hash;
}

export function currentPath() {
  return (location.hash || '#/').slice(1).split('?')[0] || '/';
}

let lastHash = null;
async function run() {
  const path = currentPath();
  if (guard && lastHash !== null && location.hash !== lastHash && !guard()) {
    history.replaceState(null, '', lastHash);
    return;
  }
  guard = null;
  lastHash = location.hash;
  if (cleanup) {
    try { await cleanup(); } catch (err) { console.error(err); }
    cleanup = null;
  }
  for (const r of routes) {
    const match = r.regex.exec(path);
    if (!match) continue;
    const params = {};
    r.keys.forEach((k, i) => { params[k] = decodeURIComponent(match[i + 1]); });
    container.replaceChildren();
    container.dataset.view = r.pattern;
    window.scrollTo(0, 0);
    document.dispatchEvent(new CustomEvent('routechange', { detail: { path, pattern: r.pattern } }));
    const result = await r.view(container, params);
    cleanup = typeof result === 'function' ? result : null;
    const heading = container.querySelector('h1, h2');
    if (heading) { heading.tabIndex = -1; heading.focus({ preventScroll: true }); }
    return;
  }
  navigate('#/');
}

export function start(root) {
  container = root;
  window.addEventListener('hashchange', run);
  run();
}
