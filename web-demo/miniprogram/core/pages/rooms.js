// The room list page (both platforms): cards from GET /api/rooms (live first), drawn from
// the storage cache at once and refreshed from the server; pull down to refresh.
var createApi = require('../api').createApi;
var errorText = require('../errors').errorText;
var cache = require('../cache');
var format = require('../format');
var session = require('../session');
var isHost = require('./host').isHost;

var CACHE_KEY = 'queqiao.rooms.v1';
var STALE_MS = 15000;

function card(room) {
  var host = room.host || {};
  return {
    id: room.id,
    title: room.title || room.id,
    live: !!room.live,
    viewersText: format.compactNumber(room.viewers) + ' 人在看',
    cover: room.cover_url || host.avatar_url || '',
    initial: format.initial(host.nickname || room.title),
    hostName: host.nickname || '',
    city: room.city || '',
    tags: (room.tags || []).slice(0, 3),
    isPrivate: room.visibility === 'private',
  };
}

function clock(ms) {
  var d = new Date(ms);
  return ('0' + d.getHours()).slice(-2) + ':' + ('0' + d.getMinutes()).slice(-2) + ':' + ('0' + d.getSeconds()).slice(-2);
}

module.exports = function createRoomsPage(platform, config) {
  var api = createApi(platform, config);
  return {
    data: {
      rooms: [],
      loading: true,
      fromCache: false,
      error: '',
      updatedText: '',
      hostEntry: false,
      hostEntryNote: '',
    },

    onLoad: function () {
      this.loadedAt = 0;
      this.showHostEntry();
      var cached = cache.read(platform, CACHE_KEY);
      if (cached && Array.isArray(cached.value)) {
        this.setData({ rooms: cached.value.map(card), fromCache: true, loading: false });
      }
      return this.refresh();
    },

    onShow: function () {
      this.showHostEntry();
      if (this.loadedAt && Date.now() - this.loadedAt > STALE_MS) this.refresh();
    },

    onPullDownRefresh: function () {
      return this.refresh().then(function () { platform.stopPullDownRefresh(); });
    },

    refresh: function () {
      var self = this;
      return api.rooms({ per_page: 50 }).then(function (page) {
        cache.write(platform, CACHE_KEY, page.items);
        self.loadedAt = Date.now();
        self.setData({
          rooms: page.items.map(card),
          loading: false,
          fromCache: false,
          error: '',
          updatedText: '更新于 ' + clock(self.loadedAt),
        });
      }, function (err) {
        self.setData({
          loading: false,
          error: self.data.rooms.length ? '网络不可用，显示的是缓存内容' : errorText(err),
        });
      });
    },

    /** 我要开播, for logged-in hosts only; Alipay has no push component (the host page says
     *  so and gives the web studio's address). */
    showHostEntry: function () {
      var host = isHost(session.get(platform));
      var canPush = platform.caps(config).pusher !== false;
      if (host !== this.data.hostEntry || (host && !this.data.hostEntryNote)) {
        this.setData({ hostEntry: host, hostEntryNote: host ? (canPush ? '手机开播 ›' : '支付宝小程序没有推流组件，请用网页工作台开播 ›') : '' });
      }
    },

    onHost: function () {
      platform.navigateTo('/pages/host/host');
    },

    onTapRoom: function (event) {
      var id = event.currentTarget.dataset.id;
      if (id) platform.navigateTo('/pages/room/room?id=' + encodeURIComponent(id));
    },

    onShareAppMessage: function () {
      return { title: '鹊桥 · 正在直播', path: '/pages/rooms/rooms' };
    },
  };
};

module.exports.card = card;
module.exports.CACHE_KEY = CACHE_KEY;
