// Replays of a room: the recorded shows (HLS VOD), newest first; tap one to play it in
// <video> (both platforms play HLS).
var createApi = require('../api').createApi;
var errorText = require('../errors').errorText;
var format = require('../format');
var stream = require('../stream');
var session = require('../session');

module.exports = function createReplayPage(platform, config) {
  var api = createApi(platform, config);
  return {
    data: { roomId: '', items: [], loading: true, error: '', src: '', current: '' },
    onLoad: function (query) {
      var self = this;
      this.setData({ roomId: query.id || '' });
      return api.recordings(query.id).then(function (recordings) {
        var items = recordings.filter(function (r) { return r.url && r.segments > 0; }).map(function (r) {
          return {
            id: r.id,
            url: r.url,
            when: format.dateTime(r.started_at),
            length: format.duration(r.duration_secs),
            size: r.width ? r.width + '×' + r.height : '',
            recording: !!r.recording,
          };
        });
        self.setData({ items: items, loading: false });
      }, function (err) {
        self.setData({ loading: false, error: err.status === 404 ? '回放暂不可用' : errorText(err) });
      });
    },
    onTapRecording: function (event) {
      var id = event.currentTarget.dataset.id;
      var item = this.data.items.filter(function (r) { return r.id === id; })[0];
      if (item) this.setData({ src: stream.withToken(item.url, session.token(platform)), current: id });
    },
    onVideoError: function () {
      this.setData({ error: '回放无法播放' });
    },
  };
};
