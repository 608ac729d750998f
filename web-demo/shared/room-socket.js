/*
 * A room event connection that survives the network: sends made while connecting are
 * queued and flushed on open, a lost connection is re-opened with exponential backoff and
 * jitter, and an application ping detects dead connections that never report closing
 * (common on mobile networks and in mini-program runtimes).
 *
 * Platform-neutral: the caller passes `open(url, handlers)`, which wraps a browser
 * WebSocket, a WebRTC data channel, `wx.connectSocket` or `my.connectSocket` and returns
 * `{ send(text), close() }`, calling handlers.open(), .message(text), .close(code, reason)
 * and .error(err).
 *
 * Same dual loading as room-protocol.js (script → globalThis.QueqiaoRoomSocket, or CommonJS);
 * web-demo/miniprogram/core/room-socket.js is a byte-identical copy.
 */
(function (root, factory) {
  var api = factory();
  if (typeof module === 'object' && module && module.exports) module.exports = api;
  else root.QueqiaoRoomSocket = api;
})(typeof globalThis !== 'undefined' ? globalThis : this, function () {
  'use strict';

  /** WebSocket close code the server uses when it removes a member (kicked, too slow). */
  var CLOSE_REMOVED = 4000;

  function defaultShouldReconnect(code, reason) {
    // Kicked members stay out; every other loss is retried.
    return !(code === CLOSE_REMOVED && /kick/i.test(String(reason || '')));
  }

  /**
   * options:
   *   url()                 → the URL to open (called on every attempt: tokens may change)
   *   open(url, handlers)   → { send(text), close() }
   *   onMessage(text)       every message received
   *   onState(state, info)  'connecting' | 'open' | 'waiting' | 'closed'
   *   minDelay, maxDelay    backoff bounds in ms (500, 15000)
   *   pingEvery, pongTimeout ms (25000, 10000); 0 disables pings
   *   maxQueue              sends kept while disconnected (50; the oldest are dropped)
   *   shouldReconnect(code, reason)
   *   timers                { setTimeout, clearTimeout } (tests inject fakes)
   */
  function createRoomSocket(options) {
    var minDelay = options.minDelay == null ? 500 : options.minDelay;
    var maxDelay = options.maxDelay == null ? 15000 : options.maxDelay;
    var pingEvery = options.pingEvery == null ? 25000 : options.pingEvery;
    var pongTimeout = options.pongTimeout == null ? 10000 : options.pongTimeout;
    var maxQueue = options.maxQueue == null ? 50 : options.maxQueue;
    var shouldReconnect = options.shouldReconnect || defaultShouldReconnect;
    var timers = options.timers || {
      setTimeout: function (f, ms) { return setTimeout(f, ms); },
      clearTimeout: function (t) { clearTimeout(t); },
    };
    var onMessage = options.onMessage || function () {};
    var onState = options.onState || function () {};

    var state = 'idle';
    var conn = null;
    var generation = 0;
    var attempts = 0;
    var queue = [];
    var retryTimer = null;
    var pingTimer = null;
    var pongTimer = null;
    var stopped = false;

    function setState(next, info) {
      state = next;
      try {
        onState(next, info || {});
      } catch (e) {
        if (typeof console !== 'undefined') console.error(e);
      }
    }

    function clearTimers() {
      if (retryTimer) timers.clearTimeout(retryTimer);
      if (pingTimer) timers.clearTimeout(pingTimer);
      if (pongTimer) timers.clearTimeout(pongTimer);
      retryTimer = pingTimer = pongTimer = null;
    }

    function schedulePing() {
      if (!pingEvery) return;
      if (pingTimer) timers.clearTimeout(pingTimer);
      pingTimer = timers.setTimeout(function () {
        pingTimer = null;
        if (state !== 'open') return;
        rawSend(JSON.stringify({ type: 'ping' }));
        if (pongTimer) timers.clearTimeout(pongTimer);
        pongTimer = timers.setTimeout(function () {
          pongTimer = null;
          // Nothing came back: the connection is dead even if nobody told us.
          lost(generation, 0, 'ping timeout');
        }, pongTimeout);
      }, pingEvery);
    }

    function rawSend(text) {
      try {
        conn.send(text);
        return true;
      } catch (e) {
        return false;
      }
    }

    function flush() {
      while (queue.length && state === 'open') {
        if (!rawSend(queue[0])) break;
        queue.shift();
      }
    }

    function lost(gen, code, reason) {
      if (gen !== generation || stopped) return;
      generation++;
      var old = conn;
      conn = null;
      clearTimers();
      if (old) {
        try { old.close(); } catch (e) { /* already closed */ }
      }
      if (!shouldReconnect(code, reason)) {
        stopped = true;
        setState('closed', { code: code, reason: reason, final: true });
        return;
      }
      var delay = Math.min(maxDelay, minDelay * Math.pow(2, attempts));
      delay = Math.round(delay * (0.75 + Math.random() * 0.5));
      attempts++;
      setState('waiting', { code: code, reason: reason, delay: delay, attempt: attempts });
      retryTimer = timers.setTimeout(function () {
        retryTimer = null;
        connect();
      }, delay);
    }

    function connect() {
      if (stopped) return;
      clearTimers();
      if (conn) {
        // A connection that is still around (connect() called again) is replaced, not leaked.
        try { conn.close(); } catch (e) { /* already closed */ }
        conn = null;
      }
      var gen = ++generation;
      setState('connecting', { attempt: attempts });
      var url;
      try {
        url = options.url();
      } catch (e) {
        lost(gen, 0, String(e && e.message));
        return;
      }
      try {
        conn = options.open(url, {
          open: function () {
            if (gen !== generation) return;
            attempts = 0;
            setState('open', {});
            flush();
            schedulePing();
          },
          message: function (text) {
            if (gen !== generation) return;
            if (pongTimer) {
              timers.clearTimeout(pongTimer);
              pongTimer = null;
            }
            schedulePing();
            onMessage(text);
          },
          close: function (code, reason) { lost(gen, code, reason); },
          error: function (err) { lost(gen, 0, (err && (err.errMsg || err.message)) || 'error'); },
        });
      } catch (e) {
        conn = null;
        lost(gen, 0, String(e && e.message));
      }
    }

    return {
      /** Opens the connection (again, after close()). */
      connect: function () {
        stopped = false;
        attempts = 0;
        connect();
      },
      /** Sends an object now, or queues it until the connection opens. */
      send: function (message) {
        var text = typeof message === 'string' ? message : JSON.stringify(message);
        if (state === 'open' && conn && rawSend(text)) return 'sent';
        if (stopped) return 'dropped';
        queue.push(text);
        if (queue.length > maxQueue) queue.shift();
        return 'queued';
      },
      /** Removes and returns the queued sends (texts), e.g. to pass them to another transport. */
      takeQueued: function () {
        var taken = queue;
        queue = [];
        return taken;
      },
      /** Re-opens at once if it is waiting to retry (e.g. the app came back to the foreground). */
      reconnectNow: function () {
        if (stopped || state !== 'waiting') return;
        attempts = 0;
        connect();
      },
      /** Closes for good (until connect() is called again). */
      close: function () {
        stopped = true;
        generation++;
        clearTimers();
        queue = [];
        if (conn) {
          try { conn.close(); } catch (e) { /* already closed */ }
        }
        conn = null;
        setState('closed', { final: true });
      },
      get state() { return state; },
      get queued() { return queue.length; },
    };
  }

  return { createRoomSocket: createRoomSocket, CLOSE_REMOVED: CLOSE_REMOVED };
});
