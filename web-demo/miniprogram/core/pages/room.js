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
var profileCard = require('../profile-card').profileCard;

var MAX_CHAT = 60;
var GIFT_ACK_TIMEOUT_MS = 8000;
/** One's own chat message: echo expected within this time, else "未发送". */
var CHAT_ECHO_TIMEOUT_MS = 10000;
/** Pause before resending a message the rate limit refused (times the attempt). */
var CHAT_RETRY_MS = 800;
var CHAT_MAX_RETRIES = 8;
var RECENT_VIEWERS = 3;
/** Gifts in a burst refresh the leaderboard once. */
var LEADERBOARD_DELAY_MS = 400;
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
    userId: user.id || null,
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

/** A scheduled show as the offline stage shows it. */
function nextShowView(show) {
  return {
    id: show.id,
    title: show.title,
    when: format.dateTime(show.starts_at * 1000),
    reserved: !!show.reserved,
    count: show.reservations || 0,
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
      leaderboard: null,
      top: [],
      needRecharge: false,
      canRecharge: true,
      nextShow: null,
    },

    onLoad: function (query) {
      var self = this;
      var room = query.id;
      this.room = room;
      this.setData({ canRecharge: platform.caps(config).recharge !== false });
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
      this.blocked = {};
      this.loadBlocks();
      this.refreshLeaderboard();
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
        if (loggedIn) this.loadBlocks();
        if (loggedIn && this.data.nextShow) this.loadNextShow();
      }
      // Back from the recharge page: the new balance.
      var self = this;
      if (loggedIn && this.data.giftPanel) api.wallet().then(function (w) { self.setData({ balance: w.coins, needRecharge: false }); }, function () {});
      if (this.socket) this.socket.reconnectNow();
    },

    onUnload: function () {
      this.stopped = true;
      clearTimeout(this.streamTimer);
      clearTimeout(this.giftTimer);
      clearTimeout(this.leaderboardTimer);
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
      if (choice.kind === 'none' && choice.reason === 'offline' && !this.nextShowLoaded) this.loadNextShow();
      if (current.kind === choice.kind && current.src === choice.src && current.reason === choice.reason) return;
      this.setData({
        player: choice,
        modeText: MODE_TEXT[choice.protocol] || '',
        statusText: choice.kind === 'none' ? (choice.message || REASON_TEXT[choice.reason] || '') : '',
      });
    },

    // ---- next show (offline room): the host's next scheduled show, with 预约 ------------

    /** The earliest upcoming scheduled show of this room (shown while it is offline). */
    loadNextShow: function () {
      var self = this;
      this.nextShowLoaded = true;
      return api.schedules(this.room).then(function (list) {
        if (self.stopped) return;
        var now = Date.now();
        var next = (Array.isArray(list) ? list : [])
          .filter(function (s) { return s.starts_at * 1000 > now; })
          .sort(function (a, b) { return a.starts_at - b.starts_at; })[0];
        self.setData({ nextShow: next ? nextShowView(next) : null });
      }, function () {});
    },

    /** 预约 / 取消预约 the next show (logging in first). */
    onReserveNext: function () {
      var show = this.data.nextShow;
      var self = this;
      if (!show) return Promise.resolve();
      if (!session.get(platform)) {
        // Back from the login page, the list is read again (with this user's reservations).
        this.nextShowLoaded = false;
        platform.navigateTo('/pages/login/login');
        return Promise.resolve();
      }
      var request = show.reserved ? api.unreserve(show.id) : api.reserve(show.id);
      return request.then(function () {
        var reserved = !show.reserved;
        var count = Math.max(0, show.count + (reserved ? 1 : -1));
        self.setData({ nextShow: Object.assign({}, show, { reserved: reserved, count: count }) });
        platform.toast(reserved ? '已预约，开播时会提醒你' : '已取消预约', 'ok');
      }, function (err) {
        platform.toast(errorText(err), 'error');
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
      var blocked = this.blocked;
      var chat = this.data.chat.concat(items.filter(function (m) { return !(m.userId && blocked[m.userId]); }));
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
          this.giftArrived();
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
          this.setData({ notice: text, needRecharge: change.code === 'insufficient_coins' });
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
      clearTimeout(this.leaderboardTimer);
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
      if (!this.hostId) return Promise.resolve();
      return this.openProfile(this.hostId, this.data.hostName);
    },

    /** Tap on a name in the chat: that user's card. */
    onChatName: function (event) {
      var id = Number(event.currentTarget.dataset.user);
      if (!id) return Promise.resolve();
      return this.openProfile(id, event.currentTarget.dataset.name || '');
    },

    openProfile: function (userId, name) {
      var self = this;
      var me = session.get(platform);
      var myId = me && me.user ? me.user.id : null;
      this.setData({ profile: { loading: true, id: userId, name: name, initial: format.initial(name), facts: '', bio: '', tags: [], photos: [] } });
      var follow = myId && myId !== userId ? api.followStatus(userId).catch(function () { return null; }) : Promise.resolve(null);
      return Promise.all([api.user(userId), follow]).then(function (results) {
        var card = profileCard(results[0], results[1]);
        card.self = myId === userId;
        card.blocked = !!self.blocked[userId];
        self.setData({ profile: card });
      }, function (err) {
        self.setData({ profile: null, notice: errorText(err) });
      });
    },

    /** 关注 / 取消关注 on the open card. */
    onFollow: function () {
      var self = this;
      var card = this.data.profile;
      if (!card || card.loading || !this.requireLogin()) return Promise.resolve();
      var change = card.following ? api.unfollow(card.id) : api.follow(card.id);
      return change.then(function (status) {
        self.setData({ profile: Object.assign({}, self.data.profile, { following: status.following, followers: status.followers + ' 人关注' }) });
        platform.toast(status.following ? '已关注' : '已取消关注', 'ok');
      }, function (err) {
        platform.toast(errorText(err));
      });
    },

    /** 拉黑 / 取消拉黑: a blocked user's chat is hidden for me. */
    onBlock: function () {
      var self = this;
      var card = this.data.profile;
      if (!card || card.loading || !this.requireLogin()) return Promise.resolve();
      var change = card.blocked ? api.unblock(card.id) : api.block(card.id);
      return change.then(function (list) {
        self.setBlocked(list);
        var blocked = !!self.blocked[card.id];
        self.setData({ profile: Object.assign({}, self.data.profile, { blocked: blocked }) });
        platform.toast(blocked ? '已拉黑，不再显示 TA 的消息' : '已取消拉黑', 'ok');
      }, function (err) {
        platform.toast(errorText(err));
      });
    },

    loadBlocks: function () {
      var self = this;
      if (!session.get(platform)) return Promise.resolve();
      return api.blocks().then(function (list) { self.setBlocked(list); }, function () {});
    },

    setBlocked: function (list) {
      var blocked = {};
      (list || []).forEach(function (c) { blocked[c.user_id] = true; });
      this.blocked = blocked;
      var chat = this.data.chat.filter(function (m) { return !(m.userId && blocked[m.userId]); });
      if (chat.length !== this.data.chat.length) this.setData({ chat: chat });
    },

    // ---- 贡献榜 ---------------------------------------------------------------------------------

    refreshLeaderboard: function () {
      var self = this;
      return api.leaderboard(this.room).then(function (rows) {
        var list = rows.map(function (r, i) {
          return { rank: i + 1, id: r.user_id, name: r.nickname, initial: format.initial(r.nickname), coins: format.compactNumber(r.coins) };
        });
        var update = { top: list.slice(0, 3) };
        if (self.data.leaderboard) update.leaderboard = list;
        self.setData(update);
        self.leaderboardRows = list;
      }, function () {});
    },

    giftArrived: function () {
      var self = this;
      clearTimeout(this.leaderboardTimer);
      this.leaderboardTimer = setTimeout(function () { if (!self.stopped) self.refreshLeaderboard(); }, LEADERBOARD_DELAY_MS);
    },

    onToggleLeaderboard: function () {
      if (this.data.leaderboard) { this.setData({ leaderboard: null }); return Promise.resolve(); }
      this.setData({ leaderboard: this.leaderboardRows || [] });
      return this.refreshLeaderboard();
    },

    /** 充值: the recharge page (the room stays open under it). */
    onRecharge: function () {
      if (!this.data.canRecharge) return;
      platform.navigateTo('/pages/recharge/recharge');
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

    /** Sharing to a chat (WeChat 转发, Alipay 分享): the card opens this room's page. */
    onShareAppMessage: function () {
      return { title: this.data.title || '鹊桥直播', path: '/pages/room/room?id=' + encodeURIComponent(this.room), desc: this.data.hostName ? this.data.hostName + ' 正在直播' : '' };
    },

    /** WeChat 朋友圈 (Moments): the query of this page. */
    onShareTimeline: function () {
      return { title: this.data.title || '鹊桥直播', query: 'id=' + encodeURIComponent(this.room) };
    },

    /** The share button (Alipay; WeChat uses <button open-type="share">). */
    onShare: function () {
      if (platform.showSharePanel) platform.showSharePanel();
    },
  };
};

module.exports.chatItem = chatItem;
