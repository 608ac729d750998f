/*
 * Queqiao room event protocol, version 1: message builders and a room model that applies
 * server events in sequence order (deduplicating, and asking for missed events on a gap).
 *
 * One file for every client: the web demo loads it as a script (it then sets
 * `globalThis.QueqiaoRoomProtocol`), the mini-programs `require` it (CommonJS). The copy in
 * web-demo/miniprogram/core/ must stay byte-identical (tests/miniprogram checks it).
 * No DOM, no platform API, ES5 syntax (old mini-program runtimes need no compile step).
 */
(function (root, factory) {
  var api = factory();
  if (typeof module === 'object' && module && module.exports) module.exports = api;
  else root.QueqiaoRoomProtocol = api;
})(typeof globalThis !== 'undefined' ? globalThis : this, function () {
  'use strict';

  var VERSION = 1;
  var MAX_CHAT_CHARS = 300;
  var MAX_LIKES_PER_MESSAGE = 10;
  var MAX_GIFT_COUNT = 99;
  /** Chat messages a client keeps (older ones scroll away). */
  var DEFAULT_MAX_CHAT = 100;

  /** Gift animation keys (from the catalogue's `animation`) → the emoji the clients draw. */
  var GIFT_EMOJI = { rose: '🌹', heart: '💖', kiss: '💋', ring: '💍', car: '🏎️', castle: '🏰' };

  function giftEmoji(animation) {
    return GIFT_EMOJI[animation] || '🎁';
  }

  var counter = 0;
  /** A random id for `client_id` and `idempotency_key` (≤ 64 characters). */
  function newId(prefix) {
    counter = (counter + 1) % 1e6;
    return (prefix || 'c') + '-' + Date.now().toString(36) + '-' +
      Math.random().toString(36).slice(2, 10) + '-' + counter.toString(36);
  }

  function charCount(text) {
    // Counts code points, like the server.
    var n = 0;
    for (var i = 0; i < text.length; i++) {
      var c = text.charCodeAt(i);
      if (c < 0xd800 || c > 0xdbff) n++;
    }
    return n;
  }

  /** Checks chat text the way the server will; returns an error code or null. */
  function chatProblem(text) {
    var trimmed = String(text == null ? '' : text).trim();
    if (!trimmed) return 'empty';
    if (charCount(trimmed) > MAX_CHAT_CHARS) return 'too_long';
    // Control characters other than newline are refused by the server.
    for (var i = 0; i < trimmed.length; i++) {
      var c = trimmed.charCodeAt(i);
      if ((c < 0x20 && c !== 0x0a) || (c >= 0x7f && c <= 0x9f)) return 'control';
    }
    return null;
  }

  var messages = {
    chat: function (text, clientId) {
      return { type: 'chat', text: String(text).trim(), client_id: clientId || newId('c') };
    },
    like: function (count) {
      var n = Math.max(1, Math.min(MAX_LIKES_PER_MESSAGE, Math.floor(count || 1)));
      return { type: 'like', count: n };
    },
    gift: function (gift, count, key) {
      var n = Math.max(1, Math.min(MAX_GIFT_COUNT, Math.floor(count || 1)));
      return { type: 'gift', gift: gift, count: n, idempotency_key: key || newId('g') };
    },
    auth: function (token) {
      return { type: 'auth', token: token };
    },
    ping: function () {
      return { type: 'ping' };
    },
  };

  /** Parses one server frame; returns null for anything that is not a protocol object. */
  function parse(text) {
    if (typeof text !== 'string') return text && typeof text === 'object' ? text : null;
    try {
      var value = JSON.parse(text);
      return value && typeof value === 'object' && typeof value.type === 'string' ? value : null;
    } catch (e) {
      return null;
    }
  }

  /** Aggregates like taps into at most one message per interval (the server limits rate). */
  function createLikeBatcher(send, intervalMs) {
    var pending = 0;
    var timer = null;
    function flush() {
      timer = null;
      while (pending > 0) {
        var n = Math.min(MAX_LIKES_PER_MESSAGE, pending);
        pending -= n;
        send(messages.like(n));
      }
    }
    return {
      tap: function (count) {
        pending += count || 1;
        if (!timer) timer = setTimeout(flush, intervalMs == null ? 300 : intervalMs);
      },
      flush: function () {
        if (timer) clearTimeout(timer);
        flush();
      },
      cancel: function () {
        if (timer) clearTimeout(timer);
        timer = null;
        pending = 0;
      },
    };
  }

  /**
   * The state of one room as a client sees it: chat, likes, viewers, who you are.
   *
   * options.onChange(change) is called for every applied change:
   *   { kind: 'welcome' | 'chat' | 'likes' | 'gift' | 'presence' | 'system' | 'deleted' |
   *           'gift_ack' | 'error' | 'pong' | 'history', ... }
   * options.fetchEventsAfter(seq) → Promise<{events, last_seq, complete}> (the REST gap
   * fetch, GET /api/rooms/{id}/events?after=seq); optional.
   */
  function createRoomModel(options) {
    options = options || {};
    var maxChat = options.maxChat || DEFAULT_MAX_CHAT;
    var onChange = options.onChange || function () {};
    var state = {
      seq: null,
      you: null,
      chat: [],
      likes: 0,
      viewers: 0,
      live: null,
    };
    var seen = {};
    var held = [];
    var fetching = false;

    function emit(change) {
      try {
        onChange(change, state);
      } catch (e) {
        if (typeof console !== 'undefined') console.error(e);
      }
    }

    function addChat(event) {
      if (event.seq != null && seen['c' + event.seq]) return false;
      if (event.seq != null) seen['c' + event.seq] = true;
      var item = {
        seq: event.seq,
        ts: event.ts,
        text: String(event.text == null ? '' : event.text),
        user: event.user || { id: 0, nickname: '?' },
        ref: event.ref || null,
        mine: !!(state.you && event.user && state.you.id === event.user.id),
      };
      state.chat.push(item);
      if (state.chat.length > maxChat) {
        var dropped = state.chat.splice(0, state.chat.length - maxChat);
        for (var i = 0; i < dropped.length; i++) delete seen['c' + dropped[i].seq];
      }
      return item;
    }

    function applyBroadcast(event) {
      switch (event.type) {
        case 'chat': {
          var item = addChat(event);
          if (item) emit({ kind: 'chat', message: item });
          break;
        }
        case 'likes':
          state.likes = typeof event.total === 'number' ? event.total : state.likes + (event.delta || 0);
          emit({ kind: 'likes', total: state.likes, delta: event.delta || 0 });
          break;
        case 'gift':
          emit({
            kind: 'gift',
            user: event.user || { nickname: '?' },
            gift: event.gift || {},
            count: event.count || 1,
            coins: event.coins || 0,
            ref: event.ref || null,
            emoji: giftEmoji(event.gift && event.gift.animation),
          });
          break;
        case 'presence':
          if (typeof event.viewers === 'number') state.viewers = event.viewers;
          emit({ kind: 'presence', viewers: state.viewers, joined: event.joined || [], left: event.left || [] });
          break;
        case 'system':
          if (event.event === 'show_started') state.live = true;
          if (event.event === 'show_ended') state.live = false;
          if (event.event === 'message_deleted') {
            var before = state.chat.length;
            state.chat = state.chat.filter(function (m) { return m.seq !== event.target_seq; });
            if (state.chat.length !== before) emit({ kind: 'deleted', seq: event.target_seq });
          }
          emit({ kind: 'system', event: event.event, detail: event });
          break;
        default:
          break;
      }
    }

    /** Applies a broadcast event in order; returns false when it was held for a gap fetch. */
    function sequence(event) {
      var seq = event.seq;
      if (typeof seq !== 'number' || state.seq === null) {
        applyBroadcast(event);
        if (typeof seq === 'number') state.seq = seq;
        return;
      }
      if (seq <= state.seq) return; // already applied
      if (seq === state.seq + 1 || !options.fetchEventsAfter) {
        state.seq = seq;
        applyBroadcast(event);
        releaseHeld();
        return;
      }
      held.push(event);
      fillGap();
    }

    function releaseHeld() {
      held.sort(function (a, b) { return a.seq - b.seq; });
      while (held.length && held[0].seq <= state.seq + 1) {
        var next = held.shift();
        if (next.seq === state.seq + 1) {
          state.seq = next.seq;
          applyBroadcast(next);
        }
      }
    }

    function fillGap() {
      if (fetching) return;
      fetching = true;
      var after = state.seq;
      Promise.resolve()
        .then(function () { return options.fetchEventsAfter(after); })
        .then(function (page) {
          var events = (page && page.events) || [];
          for (var i = 0; i < events.length; i++) {
            var e = events[i];
            if (typeof e.seq === 'number' && e.seq > state.seq) {
              state.seq = e.seq;
              applyBroadcast(e);
            }
          }
        })
        .catch(function () { /* give up on the gap: the held events still apply */ })
        .then(function () {
          fetching = false;
          if (held.length) {
            held.sort(function (a, b) { return a.seq - b.seq; });
            // Whatever could not be fetched is skipped.
            if (held[0].seq > state.seq + 1) state.seq = held[0].seq - 1;
            releaseHeld();
          }
        });
    }

    function welcome(event) {
      var reconnect = state.seq !== null;
      state.you = event.you || null;
      if (typeof event.likes === 'number') state.likes = event.likes;
      if (typeof event.viewers === 'number') state.viewers = event.viewers;
      var history = event.history || [];
      var added = [];
      for (var i = 0; i < history.length; i++) {
        if (reconnect && typeof history[i].seq === 'number' && history[i].seq <= state.seq) continue;
        var item = addChat(history[i]);
        if (item) added.push(item);
      }
      for (var j = 0; j < state.chat.length; j++) {
        state.chat[j].mine = !!(state.you && state.chat[j].user && state.chat[j].user.id === state.you.id);
      }
      if (reconnect && typeof event.seq === 'number' && event.seq < state.seq) {
        // The room's sequence restarted lower (a reset database): follow the server.
        state.seq = event.seq;
      }
      var missed = reconnect && typeof event.seq === 'number' && event.seq > state.seq;
      if (!reconnect || !options.fetchEventsAfter || !missed) {
        if (typeof event.seq === 'number' && (state.seq === null || event.seq > state.seq)) state.seq = event.seq;
      }
      emit({ kind: 'welcome', reconnect: reconnect, you: state.you, history: added, likes: state.likes, viewers: state.viewers });
      if (missed && options.fetchEventsAfter) {
        // Events happened while we were away: fetch them, then continue from welcome.seq.
        held.push({ type: '_mark', seq: event.seq });
        fillGap();
      }
    }

    return {
      state: state,
      /** Feeds one server message (text or object). */
      handle: function (message) {
        var event = parse(message);
        if (!event) return;
        switch (event.type) {
          case 'welcome':
            welcome(event);
            break;
          case 'chat':
          case 'likes':
          case 'gift':
          case 'presence':
          case 'system':
            sequence(event);
            break;
          case 'gift_ack':
            emit({ kind: 'gift_ack', ref: event.ref, balance: event.balance, duplicate: !!event.duplicate, detail: event });
            break;
          case 'error':
            emit({ kind: 'error', code: event.code, message: event.message, ref: event.ref || null });
            break;
          case 'pong':
            emit({ kind: 'pong' });
            break;
          default:
            break;
        }
      },
      /** Loads chat history from REST (GET /api/rooms/{id}/chat) before a socket connects. */
      loadHistory: function (items) {
        var added = [];
        for (var i = 0; i < (items || []).length; i++) {
          var item = addChat(items[i]);
          if (item) added.push(item);
        }
        state.chat.sort(function (a, b) { return (a.seq || 0) - (b.seq || 0); });
        if (added.length) emit({ kind: 'history', history: added });
      },
      reset: function () {
        state.seq = null;
        state.chat = [];
        seen = {};
        held = [];
      },
    };
  }

  // The '_mark' placeholder above advances the sequence to welcome.seq once the gap is
  // filled; applyBroadcast ignores unknown types, so it only moves the position.

  return {
    VERSION: VERSION,
    MAX_CHAT_CHARS: MAX_CHAT_CHARS,
    MAX_LIKES_PER_MESSAGE: MAX_LIKES_PER_MESSAGE,
    MAX_GIFT_COUNT: MAX_GIFT_COUNT,
    GIFT_EMOJI: GIFT_EMOJI,
    giftEmoji: giftEmoji,
    newId: newId,
    chatProblem: chatProblem,
    messages: messages,
    parse: parse,
    createLikeBatcher: createLikeBatcher,
    createRoomModel: createRoomModel,
  };
});
