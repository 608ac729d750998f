// The logged-in account of the mini-program, kept in platform storage.
var KEY = 'queqiao.session';

function get(platform) {
  var session = platform.getStorage(KEY);
  if (session && session.token && (!session.expires_at || session.expires_at * 1000 > Date.now())) return session;
  return null;
}

function set(platform, session) {
  if (session) platform.setStorage(KEY, session);
  else platform.removeStorage(KEY);
}

function token(platform) {
  var session = get(platform);
  return session ? session.token : null;
}

module.exports = { KEY: KEY, get: get, set: set, token: token };
