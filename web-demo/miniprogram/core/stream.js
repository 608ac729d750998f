// Which player a mini-program room uses, from GET /api/rooms/{id}/stream.
//
// WeChat <live-player> plays HTTP-FLV (and RTMP) with the lowest delay, but only accounts in
// permitted service categories may use it; everyone else (and Alipay) plays HLS in <video>.
// Players cannot send headers: the server's playback links already carry a short-lived
// ?token= scoped to the room (never the account token); other URLs get the login token.

function withToken(url, token) {
  if (!token || /[?&]token=/.test(url)) return url;
  return url + (url.indexOf('?') >= 0 ? '&' : '?') + 'token=' + encodeURIComponent(token);
}

/**
 * info: the stream API answer; caps: { livePlayer: bool }; token: for private rooms.
 * Returns { kind: 'live-player' | 'video' | 'none', src, protocol: 'flv' | 'hls' | '',
 *           reason: '' | 'offline' | 'starting' | 'unsupported', message }.
 */
function choosePlayer(info, caps, token) {
  var none = function (reason, message) {
    return { kind: 'none', src: '', protocol: '', reason: reason, message: message || '' };
  };
  if (!info || !info.live) return none('offline');
  if (caps && caps.livePlayer && info.flv) {
    return { kind: 'live-player', src: withToken(info.flv, token), protocol: 'flv', reason: '', message: '' };
  }
  if (info.hls) return { kind: 'video', src: withToken(info.hls, token), protocol: 'hls', reason: '', message: '' };
  if (info.bridge_unavailable) return none('unsupported', info.bridge_unavailable);
  // Live, but the bridge has not published its URLs yet (the first keyframe is on its way).
  return none('starting');
}

/** The room WebSocket URL (wss:// in production) with the login token. */
function socketUrl(info, server, room, token) {
  var url = (info && info.websocket) || server.replace(/^http/, 'ws') + '/ws/rooms/' + encodeURIComponent(room);
  return withToken(url, token);
}

module.exports = { choosePlayer: choosePlayer, socketUrl: socketUrl, withToken: withToken };
