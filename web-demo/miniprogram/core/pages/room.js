// The live room page (both platforms): the player chosen from GET /api/rooms/{id}/stream
// (WeChat <live-player> with HTTP-FLV where permitted, else <video> with HLS), and chat,
// likes and gifts over the room WebSocket with the same JSON protocol as the web demo
// (core/room-protocol.js, core/room-socket.js: queued sends while connecting, reconnects).
var createApi = require('../api').createApi;
var protocol = require('../room-protocol');
var roomSocket = require('../room-socket');
var stream = require('../stream');
var session = require('../session');
var format = require('../format');
var errorText = require('../errors').errorText;

var MAX_CHAT = 60;
var GIFT_ACK_TIMEOUT_MS = 8000;
/** One's own chat message: echo expected within this time, else "未发送". */
var CHAT_ECHO_TIMEOUT_MS = 10000;
/** Pause before resending a message the rate limit refused (times the attempt). */
var CHAT_RETRY_MS = 800;
var CHAT_MAX_RETRIES = 8;
var RECENT_VIEWERS = 3;
var MODE_TEXT = { flv: '极速', hls: '流畅' };
var PENDING_TEXT = { sending: '发送中…', queued: '发送太快，稍后自动重发', failed: '未发送，点此重发' };
var REASON_TEXT = {
  loading: '加载中…',
  offline: '主播暂未开播，开播后自动播放',
  starting: '直播正在准备…',
  unsupported: '此直播暂不能在小程序播放',
};
// WeChat <live-player> state codes after which it has given up (network lost, retries spent).
var LIVE_PLAYER_FATAL = { '-2301': true, '-2302': true };

function chatItem(message) {
  var user = message.user || {};
  return {
    key: 'm' + (message.seq != null ? message.seq : Math.random().toString(36).slice(2)),
    seq: message.seq,
    name: user.nickname || '?',
    text: message.text,
    mine: !!message.mine,
    host: user.role === 'host' || user.role === 'admin',
    system: false,
    ref: message.ref || '',
    state: '',
    stateText: '',
  };
}

/** A viewer's avatar placeholder for the "recent viewers" row. */
function recentViewer(user) {
  return { id: user.id, initial: format.initial(user.nickname), name: user.nickname || '' };
}

module.exports = function createRoomPage(platform, config) {
  var api = createApi(platform, config);
  var lineCounter = 0;

  return {
    data: {
      roomId: '',
      title: '',
      hostName: '',
      hostInitial: '',
      player: { kind: 'none', src: '', protocol: '', reason: 'loading', message: '' },
      modeText: '',
      statusText: REASON_TEXT.loading,
      chat: [],
      lastKey: '',
      text: '',
      likes: 0,
      viewers: 0,
      recent: [],
      profile: null,
      loggedIn: false,
      connected: false,
      notice: '',
      gifts: [],
      giftPanel: false,
      giftId: '',
      balance: null,
      giftAnim: null,
      hearts: [],
    },

    onLoad: function (query) {
      var self = this;
      var room = query.id;
      this.room = room;
      this.info = null;
      this.stopped = false;
      this.noLivePlayer = false;
      this.pendingGifts = {};
      this.pendingChat = {};
      this.chatQueue = [];
      this.chatInFlight = null;
      this.chatPauseUntil = 0;
      this.keptText = '';
      this.heartId = 0;
      this.setData({ roomId: room, loggedIn: !!session.get(platform) });

      this.model = protocol.createRoomModel({
        maxChat: MAX_CHAT,
        fetchEventsAfter: function (after) { return api.events(room, after); },
        onChange: function (change, state) { self.onRoomChange(change, state); },
      });
      this.likeBatcher = protocol.createLikeBatcher(function (message) { self.socket.send(message); }, 300);
      this.socket = roomSocket.createRoomSocket({
        url: function () { return stream.socketUrl(self.info, config.server, room, session.token(platform)); },
        open: platform.openSocket,
        onMessage: function (text) { self.model.handle(text); },
        onState: function (state) {
          self.setData({
            connected: state === 'open',
            notice: state === 'open' ? '' : state === 'waiting' ? '聊天已断开，正在重连…' : state === 'closed' ? '聊天已断开' : '聊天连接中…',
          });
        },
      });

      var details = api.room(room).then(function (info) {
        var host = info.host || {};
        self.hostId = host.id;
        self.setData({ title: info.title, hostName: host.nickname || '', hostInitial: format.initial(host.nickname || info.title) });
        platform.setTitle(info.title);
      }, function (err) {
        self.setData({ statusText: errorText(err, 'room_not_found') });
      });
      var media = this.loadStream().then(function () {
        if (!self.stopped) self.socket.connect();
      });
      return Promise.all([details, media]);
    },

    onShow: function () {
      var loggedIn = !!session.get(platform);
      if (loggedIn !== this.data.loggedIn) {
        this.setData({ loggedIn: loggedIn });
        // Logged in on the login page: tell the open connection who we are.
        if (loggedIn && this.socket) this.socket.send(protocol.messages.auth(session.token(platform)));
        // The message typed before logging in is sent now.
        if (loggedIn && this.keptText) { var kept = this.keptText; this.keptText = ''; this.setData({ text: '' }); this.sendChat(kept); }
      }
      if (this.socket) this.socket.reconnectNow();
    },

    onUnload: function () {
      this.stopped = true;
      clearTimeout(this.streamTimer);
      clearTimeout(this.giftTimer);
      if (this.likeBatcher) this.likeBatcher.flush();
      if (this.socket) this.socket.close();
      for (var key in this.pendingGifts) clearTimeout(this.pendingGifts[key].timer);
      this.pendingGifts = {};
      for (var ref in this.pendingChat) clearTimeout(this.pendingChat[ref].timer);
      this.pendingChat = {};
      clearTimeout(this.chatTimer);
    },

    onPullDownRefresh: function () {
      return this.loadStream().then(function () { platform.stopPullDownRefresh(); });
    },

    // ---- media ----------------------------------------------------------------------------

    loadStream: function () {
      var self = this;
      clearTimeout(this.streamTimer);
      return api.stream(this.room).then(function (info) {
        if (self.stopped) return;
        self.info = info;
        var caps = platform.caps(config);
        if (self.noLivePlayer) caps = { livePlayer: false };
        var choice = stream.choosePlayer(info, caps, session.token(platform));
        self.applyPlayer(choice);
        // Not playable yet: look again (the bridge URLs appear a moment after the show starts).
        if (choice.kind === 'none' && choice.reason !== 'unsupported') self.retryStream(choice.reason === 'starting' ? 2000 : 5000);
      }, function (err) {
        if (self.stopped) return;
        self.setData({ statusText: errorText(err, 'room_not_found') });
        self.retryStream(5000);
      });
    },

    retryStream: function (ms) {
      var self = this;
      clearTimeout(this.streamTimer);
      if (!this.stopped) this.streamTimer = setTimeout(function () { self.loadStream(); }, ms);
    },

    applyPlayer: function (choice) {
      var current = this.data.player;
      if (current.kind === choice.kind && current.src === choice.src && current.reason === choice.reason) return;
      this.setData({
        player: choice,
        modeText: MODE_TEXT[choice.protocol] || '',
        statusText: choice.kind === 'none' ? (choice.message || REASON_TEXT[choice.reason] || '') : '',
      });
    },

    /** <live-player bindstatechange>: on a fatal code, fall back to HLS in <video>. */
    onLivePlayerState: function (event) {
      var code = event && event.detail && event.detail.code;
      if (LIVE_PLAYER_FATAL[String(code)]) this.fallbackToHls();
    },

    onPlayerError: function () {
      if (this.data.player.kind === 'live-player') this.fallbackToHls();
      else this.retryStream(3000);
    },

    fallbackToHls: function () {
      this.noLivePlayer = true;
      if (this.info) this.applyPlayer(stream.choosePlayer(this.info, { livePlayer: false }, session.token(platform)));
    },

    // ---- room events -------------------------------------------------------------------------

    pushChat: function (items) {
      var chat = this.data.chat.concat(items);
      if (chat.length > MAX_CHAT) chat = chat.slice(chat.length - MAX_CHAT);
      this.setData({ chat: chat, lastKey: chat.length ? chat[chat.length - 1].key : '' });
    },

    systemLine: function (text, kind) {
      lineCounter += 1;
      this.pushChat([{ key: 's' + lineCounter, seq: null, name: '', text: text, mine: false, host: false, system: true, join: kind === 'join' }]);
    },

    // ---- one's own chat messages: shown at once, one in flight at a time (so they arrive
    // in the order typed), confirmed by the echo, resent after a pause when the rate limit
    // refuses them, marked "未发送" (tap to resend) otherwise ---------------------------------

    sendChat: function (text) {
      lineCounter += 1;
      var entry = { ref: protocol.newId('c'), text: text, order: lineCounter, retries: 0, timer: null };
      this.pendingChat[entry.ref] = entry;
      this.pushChat([{
        key: 'p' + lineCounter, seq: null, name: '我', text: text, mine: true, host: false, system: false,
        ref: entry.ref, state: 'sending', stateText: PENDING_TEXT.sending,
      }]);
      this.queueChat(entry);
      return entry.ref;
    },

    setChatState: function (ref, state) {
      this.setData({
        chat: this.data.chat.map(function (m) {
          return m.ref === ref && m.state ? Object.assign({}, m, { state: state, stateText: PENDING_TEXT[state] }) : m;
        }),
      });
    },

    queueChat: function (entry) {
      if (this.chatQueue.indexOf(entry) < 0) this.chatQueue.push(entry);
      this.chatQueue.sort(function (a, b) { return a.order - b.order; });
      this.pumpChat();
    },

    pumpChat: function () {
      var self = this;
      if (this.chatInFlight || !this.chatQueue.length || this.stopped) return;
      var wait = this.chatPauseUntil - Date.now();
      if (wait > 0) {
        clearTimeout(this.chatTimer);
        this.chatTimer = setTimeout(function () { self.pumpChat(); }, wait);
        return;
      }
      var entry = this.chatQueue.shift();
      this.chatInFlight = entry;
      if (entry.retries) this.setChatState(entry.ref, 'queued');
      clearTimeout(entry.timer);
      entry.timer = setTimeout(function () { self.chatFailed(entry); }, CHAT_ECHO_TIMEOUT_MS);
      this.socket.send(protocol.messages.chat(entry.text, entry.ref));
    },

    chatFailed: function (entry, reason) {
      clearTimeout(entry.timer);
      if (this.chatInFlight === entry) this.chatInFlight = null;
      this.setChatState(entry.ref, 'failed');
      if (reason) this.setData({ notice: reason });
      this.pumpChat();
    },

    chatRefused: function (change) {
      var entry = this.pendingChat[change.ref];
      clearTimeout(entry.timer);
      if (this.chatInFlight === entry) this.chatInFlight = null;
      if (change.code === 'rate_limited' && entry.retries < CHAT_MAX_RETRIES) {
        entry.retries += 1;
        this.chatPauseUntil = Math.max(this.chatPauseUntil, Date.now() + CHAT_RETRY_MS * entry.retries);
        this.setChatState(entry.ref, 'queued');
        this.queueChat(entry);
        return;
      }
      this.chatFailed(entry, errorText(change));
    },

    /** Tap on a message marked "未发送": send it again. */
    onResend: function (event) {
      var ref = event && event.currentTarget && event.currentTarget.dataset.ref;
      var entry = ref && this.pendingChat[ref];
      if (!entry || this.chatInFlight === entry || this.chatQueue.indexOf(entry) >= 0) return;
      entry.retries = 0;
      this.setChatState(entry.ref, 'sending');
      this.queueChat(entry);
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
        case 'chat': {
          var item = chatItem(change.message);
          var mine = item.ref && this.pendingChat[item.ref];
          if (mine) {
            clearTimeout(mine.timer);
            delete this.pendingChat[item.ref];
            if (this.chatInFlight === mine) this.chatInFlight = null;
            var replaced = this.data.chat.map(function (m) { return m.ref === item.ref && m.state ? item : m; });
            this.setData({ chat: replaced, lastKey: replaced.length ? replaced[replaced.length - 1].key : '' });
            this.pumpChat();
          } else {
            this.pushChat([item]);
          }
          break;
        }
        case 'likes':
          this.setData({ likes: change.total });
          break;
        case 'presence': {
          var self = this;
          var you = state.you;
          var hostId = this.hostId;
          var recent = this.data.recent.filter(function (r) {
            return !change.left.some(function (u) { return u.id === r.id; }) || change.joined.some(function (u) { return u.id === r.id; });
          });
          var arrived = change.joined.filter(function (u, i, all) {
            return !(you && u.id === you.id) && u.id !== hostId && !recent.some(function (r) { return r.id === u.id; }) &&
              all.findIndex(function (x) { return x.id === u.id; }) === i;
          });
          arrived.slice(0, 3).forEach(function (u) { self.systemLine((u.nickname || '?') + ' 来了', 'join'); });
          recent = arrived.map(recentViewer).concat(recent).slice(0, RECENT_VIEWERS);
          this.setData({ viewers: this.data.player.kind === 'none' ? 0 : change.viewers, recent: recent });
          this.audience = change.viewers;
          break;
        }
        case 'gift':
          this.showGift(change);
          this.systemLine(change.emoji + ' ' + (change.user.nickname || '?') + ' 送出 ' + (change.gift.name || change.gift.id) + ' ×' + change.count);
          break;
        case 'deleted':
          this.setData({ chat: this.data.chat.filter(function (m) { return m.seq !== change.seq; }) });
          break;
        case 'system':
          if (change.event === 'show_started') { this.systemLine('直播开始了'); this.loadStream(); }
          if (change.event === 'show_ended') {
            this.systemLine('直播结束了');
            this.setData({ viewers: 0 });
            this.applyPlayer({ kind: 'none', src: '', protocol: '', reason: 'offline', message: '本场直播已结束' });
            this.retryStream(5000);
          }
          break;
        case 'gift_ack': {
          var pending = this.pendingGifts[change.ref];
          if (pending) {
            clearTimeout(pending.timer);
            delete this.pendingGifts[change.ref];
            this.setData({ balance: change.balance, giftPanel: false });
            platform.toast('已送出', 'ok');
          }
          break;
        }
        case 'error': {
          var failed = change.ref && this.pendingGifts[change.ref];
          if (failed) {
            clearTimeout(failed.timer);
            delete this.pendingGifts[change.ref];
          }
          if (change.ref && this.pendingChat[change.ref]) { this.chatRefused(change); break; }
          var text = change.code === 'unauthorized' ? '登录后才能聊天、点赞和送礼' : errorText(change);
          this.setData({ notice: text });
          platform.toast(text);
          break;
        }
        default:
          break;
      }
    },

    showGift: function (change) {
      var self = this;
      clearTimeout(this.giftTimer);
      this.setData({
        giftAnim: {
          key: 'g' + Date.now(),
          gift: change.gift.id || change.gift.animation || 'gift',
          emoji: change.emoji,
          text: (change.user.nickname || '?') + ' 送出 ' + (change.gift.name || change.gift.id) + ' ×' + change.count,
          big: (change.gift.price_coins || 0) >= 520,
        },
      });
      this.giftTimer = setTimeout(function () { if (!self.stopped) self.setData({ giftAnim: null }); }, 2600);
    },

    // ---- user actions --------------------------------------------------------------------------

    requireLogin: function (keepText) {
      if (session.get(platform)) return true;
      // The room stays open under the login page; the typed text is kept and sent on return.
      if (keepText) this.keptText = keepText;
      platform.toast('登录后才能聊天、点赞和送礼');
      platform.navigateTo('/pages/login/login');
      return false;
    },

    onInput: function (event) {
      this.setData({ text: event.detail.value });
    },

    onSend: function () {
      var text = this.data.text;
      var problem = protocol.chatProblem(text);
      if (problem === 'empty') return;
      if (problem) { platform.toast('消息太长了（最多 300 字）'); return; }
      if (!this.requireLogin(text)) return;
      // Queued by the socket while it (re)connects, sent once it is open.
      this.sendChat(String(text).trim());
      this.setData({ text: '' });
    },

    onLike: function () {
      if (!this.requireLogin()) return;
      this.likeBatcher.tap(1);
      var self = this;
      this.heartId += 1;
      var heart = { id: this.heartId, x: Math.round(Math.random() * 40) };
      this.setData({ likes: this.data.likes + 1, hearts: this.data.hearts.concat([heart]).slice(-8) });
      setTimeout(function () {
        if (!self.stopped) self.setData({ hearts: self.data.hearts.filter(function (h) { return h.id !== heart.id; }) });
      }, 1600);
    },

    onToggleGifts: function () {
      if (this.data.giftPanel) { this.setData({ giftPanel: false }); return Promise.resolve(); }
      if (!this.requireLogin()) return Promise.resolve();
      var self = this;
      this.setData({ giftPanel: true });
      var gifts = this.data.gifts.length ? Promise.resolve(null) : api.gifts();
      return Promise.all([gifts, api.wallet()]).then(function (results) {
        var update = { balance: results[1].coins };
        if (results[0]) {
          update.gifts = results[0].map(function (g) {
            return { id: g.id, name: g.name, price: g.price_coins, emoji: protocol.giftEmoji(g.animation) };
          });
          if (!self.data.giftId && update.gifts.length) update.giftId = update.gifts[0].id;
        }
        self.setData(update);
      }, function (err) {
        self.setData({ notice: errorText(err) });
      });
    },

    onPickGift: function (event) {
      this.setData({ giftId: event.currentTarget.dataset.id });
    },

    onSendGift: function () {
      var self = this;
      var giftId = this.data.giftId;
      if (!giftId || !this.requireLogin()) return;
      var message = protocol.messages.gift(giftId, 1);
      var key = message.idempotency_key;
      this.pendingGifts[key] = {
        timer: setTimeout(function () {
          // No answer on the socket: the same key over REST never charges twice.
          if (!self.pendingGifts[key]) return;
          delete self.pendingGifts[key];
          api.sendGift(self.room, { gift: giftId, count: 1, idempotency_key: key }).then(function (ack) {
            self.setData({ balance: ack.balance, giftPanel: false });
          }, function (err) {
            self.setData({ notice: errorText(err) });
          });
        }, GIFT_ACK_TIMEOUT_MS),
      };
      this.socket.send(message);
    },

    /** Tap on the host's card: her profile (资料卡) in a panel over the room. */
    onHostCard: function () {
      var self = this;
      if (!this.hostId) return Promise.resolve();
      this.setData({ profile: { loading: true, name: this.data.hostName, initial: this.data.hostInitial, facts: '', bio: '', tags: [] } });
      return api.user(this.hostId).then(function (u) {
        var facts = [];
        if (u.gender) facts.push({ female: '女', male: '男', other: '其他' }[u.gender] || '');
        if (u.birth_year) facts.push((new Date().getFullYear() - u.birth_year) + ' 岁');
        if (u.city) facts.push(u.city);
        self.setData({
          profile: {
            loading: false, name: u.nickname, initial: format.initial(u.nickname), host: u.role === 'host' || u.role === 'admin',
            facts: facts.filter(Boolean).join(' · '), bio: u.bio || '', tags: u.tags || [],
          },
        });
      }, function (err) {
        self.setData({ profile: null, notice: errorText(err) });
      });
    },

    onCloseProfile: function () {
      this.setData({ profile: null });
    },

    onLogin: function () {
      platform.navigateTo('/pages/login/login');
    },

    onReplays: function () {
      platform.navigateTo('/pages/replay/replay?id=' + encodeURIComponent(this.room));
    },

    onShareAppMessage: function () {
      return { title: this.data.title || '鹊桥直播', path: '/pages/room/room?id=' + encodeURIComponent(this.room) };
    },
  };
};

module.exports.chatItem = chatItem;
