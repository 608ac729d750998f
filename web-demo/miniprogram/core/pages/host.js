// The host page (开播): a logged-in host goes live from the phone with WeChat <live-pusher>,
// which pushes RTMP to the server's RTMP ingest. The push URL comes from
// GET /api/rooms/{id}/ingest (`rtmp.url`, with the room's secret key) when 开播 is pressed;
// start/stop/switchCamera go through the page's LivePusherContext; mute (enable-mic) and
// beauty/whiteness are attributes. The room's chat, likes, viewers and gifts come over the
// room WebSocket as on the viewer page (core/room-protocol.js, core/room-socket.js).
// Pusher codes are shown in words (core/pusher-codes.js). Alipay has no push component: the
// page says so and gives the web studio's address instead.
var createApi = require('../api').createApi;
var protocol = require('../room-protocol');
var roomSocket = require('../room-socket');
var stream = require('../stream');
var session = require('../session');
var errorText = require('../errors').errorText;
var pusherCodes = require('../pusher-codes');
var chatItem = require('./room').chatItem;

var MAX_CHAT = 40;
var GIFT_SHOW_MS = 2600;
var TEXT = {
  idle: '未开播',
  fetching: '正在获取推流地址…',
  connecting: '正在连接推流服务器…',
  live: '直播中',
  stopped: '已下播',
  noPusher: '支付宝小程序没有推流组件，暂不能在这里开播。请在电脑或手机浏览器打开网页工作台开播（浏览器或 OBS 推流）：',
  noPusherEn: 'Alipay mini-programs have no push component. Go live from the web studio instead (browser camera or OBS):',
  needLogin: '登录主播账号后才能开播',
  notHost: '需要主播身份才能开播，请联系管理员开通',
  noRooms: '还没有直播间：请先在网页工作台创建一个',
  ingestOff: '服务器未开启 RTMP 推流，暂不能在小程序开播；请用网页工作台开播',
  ingestOffEn: 'RTMP ingest is off on this server: go live from the web studio',
  busy: '正在直播，下播后才能切换直播间',
};

function isHost(me) {
  var role = me && me.user && me.user.role;
  return role === 'host' || role === 'admin';
}

/** setData, then the callback (the render layer has the new attributes), or a short wait. */
function setDataThen(page, data) {
  return new Promise(function (resolve) {
    var done = false;
    var finish = function () { if (!done) { done = true; resolve(); } };
    page.setData(data, finish);
    setTimeout(finish, 300);
  });
}

module.exports = function createHostPage(platform, config) {
  var api = createApi(platform, config);
  var lineCounter = 0;

  return {
    data: {
      ready: false,
      noPusher: false,
      noPusherText: TEXT.noPusher,
      noPusherTextEn: TEXT.noPusherEn,
      studioUrl: '',
      needLogin: false,
      notHost: false,
      message: '',
      rooms: [],
      roomIndex: 0,
      roomId: '',
      title: '',
      ingestOff: false,
      pusher: { url: '', mode: 'RTC', orientation: 'vertical', aspect: '9:16', autopush: false },
      pushing: false,
      starting: false,
      status: 'idle',
      statusText: TEXT.idle,
      error: null,
      warning: '',
      camera: 'front',
      muted: false,
      beauty: 3,
      whiteness: 2,
      beautyPanel: false,
      chat: [],
      lastKey: '',
      text: '',
      viewers: 0,
      likes: 0,
      giftAnim: null,
      connected: false,
      notice: '',
    },

    onLoad: function (query) {
      this.query = query || {};
      this.stopped = false;
      this.loaded = false;
      this.ctx = null;
      var caps = platform.caps(config);
      var studioUrl = config.server + '/#/studio';
      if (!caps.pusher) {
        this.setData({ ready: true, noPusher: true, studioUrl: studioUrl });
        return Promise.resolve();
      }
      this.setData({ studioUrl: studioUrl });
      return this.loadAccount();
    },

    onShow: function () {
      // Back from the login page.
      if (this.query && !this.loaded && !this.data.noPusher && session.get(platform)) this.loadAccount();
      if (this.socket) this.socket.reconnectNow();
    },

    onUnload: function () {
      this.stopped = true;
      clearTimeout(this.giftTimer);
      if (this.socket) this.socket.close();
      this.socket = null;
      if (this.data.pushing && this.ctx) this.ctx.stop({});
    },

    // ---- account and rooms -------------------------------------------------------------------

    loadAccount: function () {
      var self = this;
      var me = session.get(platform);
      if (!me) { this.setData({ ready: true, needLogin: true, message: TEXT.needLogin }); return Promise.resolve(); }
      if (!isHost(me)) { this.setData({ ready: true, needLogin: false, notHost: true, message: TEXT.notHost }); return Promise.resolve(); }
      this.loaded = true;
      this.setData({ needLogin: false, notHost: false, message: '' });
      // The rooms the host owns (the web studio lists them the same way).
      return api.rooms({ host: me.user.id, per_page: 100 }).then(function (page) {
        var rooms = (page.items || []).map(function (r) { return { id: r.id, title: r.title || r.id, live: !!r.live }; });
        if (!rooms.length) { self.setData({ ready: true, rooms: [], message: TEXT.noRooms }); return null; }
        var wanted = self.query.id ? rooms.findIndex(function (r) { return r.id === self.query.id; }) : 0;
        self.setData({ ready: true, rooms: rooms });
        return self.selectRoom(wanted >= 0 ? wanted : 0);
      }, function (err) {
        self.loaded = false;
        self.setData({ ready: true, message: errorText(err) });
      });
    },

    /** <picker bindchange>: another of the host's rooms. */
    onPickRoom: function (event) {
      if (this.data.pushing || this.data.starting) { platform.toast(TEXT.busy); return Promise.resolve(); }
      return this.selectRoom(Number(event.detail.value) || 0);
    },

    selectRoom: function (index) {
      var self = this;
      var room = this.data.rooms[index];
      if (!room) return Promise.resolve();
      if (this.socket) this.socket.close();
      this.room = room.id;
      this.setData({ roomIndex: index, roomId: room.id, title: room.title, chat: [], lastKey: '', viewers: 0, likes: 0, ingestOff: false, error: null, warning: '', notice: '' });
      platform.setTitle(room.title);
      this.connectRoom(room.id);
      // Known before 开播 is pressed: whether this server takes RTMP at all.
      return api.ingest(room.id).then(function (info) {
        if (self.room === room.id) self.setData({ ingestOff: !(info && info.rtmp) });
      }, function (err) {
        if (self.room === room.id) self.setData({ notice: errorText(err, 'room_not_found') });
      });
    },

    // ---- the pusher --------------------------------------------------------------------------

    pusherContext: function () {
      if (!this.ctx) this.ctx = platform.createPusher();
      return this.ctx;
    },

    /** 开播: the push URL from the ingest API, then LivePusherContext.start(). */
    onStart: function () {
      var self = this;
      if (this.data.pushing || this.data.starting || !this.room) return Promise.resolve();
      var room = this.room;
      this.setData({ starting: true, status: 'fetching', statusText: TEXT.fetching, error: null, warning: '' });
      return api.ingest(room).then(function (info) {
        if (self.stopped || self.room !== room) return null;
        var url = info && info.rtmp && info.rtmp.url;
        if (!url) {
          self.setData({ starting: false, ingestOff: true, status: 'idle', statusText: TEXT.idle, error: { code: 'ingest_off', text: TEXT.ingestOff, en: TEXT.ingestOffEn } });
          return null;
        }
        return setDataThen(self, { 'pusher.url': url, ingestOff: false }).then(function () {
          return new Promise(function (resolve) {
            self.pusherContext().start({
              success: function () {
                self.setData({ starting: false, pushing: true, status: 'connecting', statusText: TEXT.connecting });
                resolve(true);
              },
              fail: function (err) {
                var why = (err && err.errMsg) || '';
                self.setData({ starting: false, pushing: false, status: 'error', statusText: TEXT.idle, error: { code: 'start_failed', text: '无法开始推流' + (why ? '：' + why : ''), en: 'Could not start pushing' + (why ? ': ' + why : '') } });
                resolve(false);
              },
            });
          });
        });
      }, function (err) {
        self.setData({ starting: false, status: 'idle', statusText: TEXT.idle, error: { code: err.code || 'http', text: errorText(err, 'room_not_found'), en: '' } });
        return null;
      });
    },

    /** 下播. */
    onStop: function () {
      var self = this;
      if (!this.data.pushing && !this.data.starting) return Promise.resolve();
      return new Promise(function (resolve) {
        var ctx = self.pusherContext();
        var done = function () {
          self.setData({ pushing: false, starting: false, status: 'stopped', statusText: TEXT.stopped, warning: '' });
          resolve();
        };
        if (!ctx) { done(); return; }
        ctx.stop({ complete: done });
      });
    },

    onSwitchCamera: function () {
      var ctx = this.pusherContext();
      if (ctx) ctx.switchCamera({});
      this.setData({ camera: this.data.camera === 'front' ? 'back' : 'front' });
    },

    onToggleMute: function () {
      this.setData({ muted: !this.data.muted });
    },

    onToggleBeauty: function () {
      this.setData({ beautyPanel: !this.data.beautyPanel });
    },

    onBeauty: function (event) {
      this.setData({ beauty: Math.max(0, Math.min(9, Number(event.detail.value) || 0)) });
    },

    onWhiteness: function (event) {
      this.setData({ whiteness: Math.max(0, Math.min(9, Number(event.detail.value) || 0)) });
    },

    /** <live-pusher bindstatechange>: codes in words; an 'error' code means the push stopped. */
    onPusherState: function (event) {
      var code = event && event.detail && event.detail.code;
      if (code === undefined || code === null) return;
      this.applyCode(pusherCodes.describe(code));
    },

    /** <live-pusher binderror>: permissions (10001 camera, 10002 microphone) and the like. */
    onPusherError: function (event) {
      var detail = (event && event.detail) || {};
      var entry = pusherCodes.describe(detail.errCode != null ? detail.errCode : -1);
      if (!pusherCodes.CODES[String(detail.errCode)] && detail.errMsg) entry.zh = '推流出错：' + detail.errMsg;
      entry.level = 'error';
      this.applyCode(entry);
    },

    applyCode: function (entry) {
      this.lastCode = entry.code;
      if (entry.level === 'live') {
        this.setData({ status: 'live', statusText: TEXT.live, warning: '', error: null });
      } else if (entry.level === 'warn') {
        this.setData({ warning: entry.zh, warningCode: entry.code });
      } else if (entry.level === 'error') {
        var wasPushing = this.data.pushing;
        this.setData({ status: 'error', pushing: false, starting: false, statusText: TEXT.idle, warning: '', error: { code: entry.code, text: entry.zh, en: entry.en } });
        // The pusher has given up: stop it cleanly so 开播 can start again.
        if (wasPushing && this.ctx) this.ctx.stop({});
      }
    },

    onDismissError: function () {
      this.setData({ error: null });
    },

    // ---- the room: chat, likes, viewers, gifts -------------------------------------------------

    connectRoom: function (room) {
      var self = this;
      this.model = protocol.createRoomModel({
        maxChat: MAX_CHAT,
        fetchEventsAfter: function (after) { return api.events(room, after); },
        onChange: function (change, state) { if (self.room === room) self.onRoomChange(change, state); },
      });
      var model = this.model;
      this.socket = roomSocket.createRoomSocket({
        url: function () { return stream.socketUrl(null, config.server, room, session.token(platform)); },
        open: platform.openSocket,
        onMessage: function (text) { model.handle(text); },
        onState: function (state) {
          if (self.room !== room) return;
          self.setData({
            connected: state === 'open',
            notice: state === 'open' ? '' : state === 'waiting' ? '聊天已断开，正在重连…' : state === 'closed' ? '聊天已断开' : '聊天连接中…',
          });
        },
      });
      this.socket.connect();
    },

    pushChat: function (items) {
      var chat = this.data.chat.concat(items);
      if (chat.length > MAX_CHAT) chat = chat.slice(chat.length - MAX_CHAT);
      this.setData({ chat: chat, lastKey: chat.length ? chat[chat.length - 1].key : '' });
    },

    systemLine: function (text) {
      lineCounter += 1;
      this.pushChat([{ key: 's' + lineCounter, seq: null, name: '', text: text, mine: false, host: false, system: true }]);
    },

    onRoomChange: function (change, state) {
      switch (change.kind) {
        case 'welcome':
          this.setData({ likes: state.likes, viewers: state.viewers });
          if (change.history.length) this.pushChat(change.history.map(chatItem));
          break;
        case 'history':
          this.pushChat(change.history.map(chatItem));
          break;
        case 'chat':
          this.pushChat([chatItem(change.message)]);
          break;
        case 'likes':
          this.setData({ likes: change.total });
          break;
        case 'presence':
          this.setData({ viewers: change.viewers });
          break;
        case 'gift': {
          var self = this;
          var line = (change.user.nickname || '?') + ' 送出 ' + (change.gift.name || change.gift.id) + ' ×' + change.count;
          clearTimeout(this.giftTimer);
          this.setData({ giftAnim: { key: 'g' + Date.now(), gift: change.gift.id || 'gift', emoji: change.emoji, text: line, big: (change.gift.price_coins || 0) >= 520 } });
          this.giftTimer = setTimeout(function () { if (!self.stopped) self.setData({ giftAnim: null }); }, GIFT_SHOW_MS);
          this.systemLine(change.emoji + ' ' + line + '（+' + (change.coins || 0) + ' 金币）');
          break;
        }
        case 'deleted':
          this.setData({ chat: this.data.chat.filter(function (m) { return m.seq !== change.seq; }) });
          break;
        case 'system':
          if (change.event === 'show_started') this.systemLine('直播开始了');
          if (change.event === 'show_ended') this.systemLine('直播结束了');
          break;
        case 'error':
          this.setData({ notice: errorText(change) });
          break;
        default:
          break;
      }
    },

    onInput: function (event) {
      this.setData({ text: event.detail.value });
    },

    onSend: function () {
      var text = this.data.text;
      var problem = protocol.chatProblem(text);
      if (problem === 'empty' || !this.socket) return;
      if (problem) { platform.toast('消息太长了（最多 300 字）'); return; }
      this.socket.send(protocol.messages.chat(String(text).trim(), protocol.newId('c')));
      this.setData({ text: '' });
    },

    onLogin: function () {
      platform.navigateTo('/pages/login/login');
    },

    /** Alipay: the web studio's address to the clipboard. */
    onCopyStudio: function () {
      if (platform.setClipboard) platform.setClipboard(this.data.studioUrl);
      platform.toast('网页工作台地址已复制', 'ok');
    },
  };
};

module.exports.TEXT = TEXT;
module.exports.isHost = isHost;
