// The web side of the room event protocol: the shared model (seq order, gap fetch, history)
// over one of two transports — the WebRTC `room` data channel while watching by WebRTC, the
// WebSocket /ws/rooms/{id} otherwise (fallback players, the host studio, offline rooms).
// Only one transport is open at a time, so the viewer is counted once.
import '../shared/room-protocol.js';
import '../shared/room-socket.js';
import { api } from './api.js';

export const protocol = globalThis.QueqiaoRoomProtocol;
const { createRoomSocket } = globalThis.QueqiaoRoomSocket;

function webSocketUrl(room, token) {
  const url = new URL(`/ws/rooms/${encodeURIComponent(room)}`, location.href);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  if (token) url.searchParams.set('token', token);
  return url.toString();
}

/** Adapts a browser WebSocket to the shared socket's transport interface. */
function openWebSocket(url, handlers) {
  const ws = new WebSocket(url);
  ws.onopen = () => handlers.open();
  ws.onmessage = (event) => { if (typeof event.data === 'string') handlers.message(event.data); };
  ws.onclose = (event) => handlers.close(event.code, event.reason);
  ws.onerror = () => handlers.error({ message: 'websocket error' });
  return { send: (text) => ws.send(text), close: () => ws.close() };
}

/**
 * options: room, token() → JWT or null, onChange(change, state) (see room-protocol.js),
 * onTransport(kind, state) with kind 'websocket' | 'datachannel'.
 */
export function createRoomLink({ room, token, onChange, onTransport = () => {} }) {
  const model = protocol.createRoomModel({
    onChange,
    fetchEventsAfter: (after) => api.events(room, after),
  });
  let channel = null;
  let started = false;
  let stopped = false;
  const socket = createRoomSocket({
    url: () => webSocketUrl(room, token()),
    open: openWebSocket,
    onMessage: (text) => model.handle(text),
    onState: (state, info) => { if (!channel) onTransport('websocket', state, info); },
  });

  function useWebSocket() {
    started = true;
    if (!channel && socket.state !== 'open' && socket.state !== 'connecting' && socket.state !== 'waiting') socket.connect();
  }

  /** Talks over `dc` (the WHEP session's `room` channel) once it is open. */
  function useChannel(dc) {
    if (!dc || stopped) return;
    const activate = () => {
      if (dc.readyState !== 'open') return;
      channel = dc;
      const pending = socket.takeQueued();
      socket.close();
      onTransport('datachannel', 'open', {});
      for (const text of pending) dc.send(text);
    };
    dc.addEventListener('message', (event) => { if (channel === dc && typeof event.data === 'string') model.handle(event.data); });
    dc.addEventListener('close', () => {
      if (channel !== dc) return;
      channel = null;
      onTransport('datachannel', 'closed', {});
      if (!stopped) useWebSocket();
    });
    if (dc.readyState === 'open') activate();
    else dc.addEventListener('open', activate, { once: true });
  }

  function send(message) {
    if (channel && channel.readyState === 'open') {
      channel.send(JSON.stringify(message));
      return 'sent';
    }
    if (!started) useWebSocket();
    return socket.send(message);
  }

  return {
    model,
    state: model.state,
    start: useWebSocket,
    useChannel,
    send,
    get transport() { return channel ? 'datachannel' : 'websocket'; },
    get connected() { return (channel && channel.readyState === 'open') || socket.state === 'open'; },
    async loadHistory() {
      try { model.loadHistory(await api.chat(room)); } catch (_) { /* the socket's welcome brings it too */ }
    },
    /** After logging in on an open connection. */
    authenticate(jwt) {
      if (jwt) send(protocol.messages.auth(jwt));
    },
    reconnectNow: () => socket.reconnectNow(),
    stop() {
      stopped = true;
      started = false;
      channel = null;
      socket.close();
    },
  };
}
