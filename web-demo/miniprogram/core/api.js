// The REST client of the mini-programs, over the platform's request function. Errors are
// ApiError with the server's {code, message, field}.
var session = require('./session');

function ApiError(status, body) {
  var error = (body && body.error) || {};
  this.name = 'ApiError';
  this.status = status;
  this.code = error.code || (status === 0 ? 'network' : 'http');
  this.message = error.message || (status === 0 ? '网络错误，请检查连接' : 'HTTP ' + status);
  this.field = error.field || null;
}
ApiError.prototype = Object.create(Error.prototype);

function query(params) {
  var parts = [];
  for (var key in params) {
    if (params[key] !== undefined && params[key] !== null && params[key] !== '') {
      parts.push(encodeURIComponent(key) + '=' + encodeURIComponent(params[key]));
    }
  }
  return parts.length ? '?' + parts.join('&') : '';
}

/** platform: the adapter (request, storage); config: { server }. */
function createApi(platform, config) {
  function call(method, path, body) {
    var header = { Accept: 'application/json' };
    var bearer = session.token(platform);
    if (bearer) header.Authorization = 'Bearer ' + bearer;
    if (body !== undefined) header['Content-Type'] = 'application/json';
    return platform.request({ url: config.server + path, method: method, data: body, header: header })
      .then(function (res) {
        if (res.statusCode >= 200 && res.statusCode < 300) return res.data;
        if (res.statusCode === 401 && bearer) session.set(platform, null);
        throw new ApiError(res.statusCode, typeof res.data === 'object' ? res.data : null);
      }, function () {
        throw new ApiError(0, null);
      });
  }
  var enc = encodeURIComponent;
  return {
    rooms: function (params) { return call('GET', '/api/rooms' + query(params || {})); },
    room: function (id) { return call('GET', '/api/rooms/' + enc(id)); },
    stream: function (id) { return call('GET', '/api/rooms/' + enc(id) + '/stream'); },
    /** The host's ingest points: {whip_url, rtmp: {server_url, stream_key, url} | null}. */
    ingest: function (id) { return call('GET', '/api/rooms/' + enc(id) + '/ingest'); },
    rotateIngest: function (id) { return call('POST', '/api/rooms/' + enc(id) + '/ingest/rotate'); },
    recordings: function (id) { return call('GET', '/api/rooms/' + enc(id) + '/recordings'); },
    chat: function (id) { return call('GET', '/api/rooms/' + enc(id) + '/chat'); },
    events: function (id, after) { return call('GET', '/api/rooms/' + enc(id) + '/events?after=' + enc(after)); },
    gifts: function () { return call('GET', '/api/gifts'); },
    user: function (id) { return call('GET', '/api/users/' + enc(id)); },
    wallet: function () { return call('GET', '/api/me/wallet'); },
    sendGift: function (id, body) { return call('POST', '/api/rooms/' + enc(id) + '/gifts', body); },
    leaderboard: function (id) { return call('GET', '/api/rooms/' + enc(id) + '/leaderboard'); },
    followStatus: function (userId) { return call('GET', '/api/users/' + enc(userId) + '/follow'); },
    follow: function (userId) { return call('PUT', '/api/users/' + enc(userId) + '/follow'); },
    unfollow: function (userId) { return call('DELETE', '/api/users/' + enc(userId) + '/follow'); },
    blocks: function () { return call('GET', '/api/me/blocks'); },
    block: function (userId) { return call('PUT', '/api/users/' + enc(userId) + '/block'); },
    unblock: function (userId) { return call('DELETE', '/api/users/' + enc(userId) + '/block'); },
    packages: function () { return call('GET', '/api/wallet/packages'); },
    recharge: function (coins, key) { return call('POST', '/api/me/recharges', { coins: coins, idempotency_key: key }); },
    schedules: function (id) { return call('GET', '/api/rooms/' + enc(id) + '/schedule'); },
    reserve: function (scheduleId) { return call('POST', '/api/schedules/' + enc(scheduleId) + '/reservation'); },
    unreserve: function (scheduleId) { return call('DELETE', '/api/schedules/' + enc(scheduleId) + '/reservation'); },
    share: function (id) { return call('GET', '/api/rooms/' + enc(id) + '/share'); },
    login: function (login, password) {
      return call('POST', '/api/auth/login', { login: login, password: password }).then(function (result) {
        session.set(platform, result);
        return result;
      });
    },
  };
}

module.exports = { createApi: createApi, ApiError: ApiError, query: query };
