// The quick test page (the demo's first page): go live with the server's publish token in
// standalone mode, and watch a room by id over WHEP. Markup lives in index.html (#quick).
import { publish, play, inboundVideoStats, outboundVideoStats } from '../../whip.js';

const $ = (id) => document.getElementById(id);
let wired = false;

function setStatus(id, text, kind = '') {
  const el = $(id);
  el.textContent = text;
  el.dataset.kind = kind;
}

function randomRoom() {
  return `room-${Math.random().toString(36).slice(2, 8)}`;
}

/** Wires the forms once; `state` is window.queqiao (tests read .publisher/.viewer). */
function wire(state) {
  wired = true;
  $('publish-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const room = $('publish-room').value.trim();
    const token = $('publish-token').value.trim();
    try { localStorage.setItem('queqiao.token', token); } catch (_) { /* storage blocked */ }
    $('publish-start').disabled = true;
    setStatus('publish-status', '连接中… Connecting…');
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 1280, height: 720 }, audio: true });
      $('publish-video').srcObject = stream;
      const url = new URL(`/whip/${encodeURIComponent(room)}`, location.href).toString();
      state.publisher = await publish(url, token, stream, $('publish-codec').value);
      state.publisher.stream = stream;
      state.publisher.pc.addEventListener('connectionstatechange', () => {
        const s = state.publisher && state.publisher.pc.connectionState;
        if (s === 'connected') setStatus('publish-status', `直播中 · Live in ${room}`, 'ok');
        if (s === 'failed' || s === 'disconnected') setStatus('publish-status', `连接中断 · ${s}`, 'error');
      });
      $('publish-stop').disabled = false;
      if (!$('watch-room').value) $('watch-room').value = room;
    } catch (err) {
      setStatus('publish-status', `开播失败 · ${err.message}`, 'error');
      $('publish-start').disabled = false;
    }
  });

  $('publish-stop').addEventListener('click', async () => {
    if (!state.publisher) return;
    await state.publisher.stop();
    state.publisher.stream.getTracks().forEach((t) => t.stop());
    state.publisher = null;
    $('publish-video').srcObject = null;
    $('publish-stop').disabled = true;
    $('publish-start').disabled = false;
    setStatus('publish-status', '已下播 · Show ended');
  });

  $('watch-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const room = $('watch-room').value.trim();
    if (state.viewer) await state.viewer.stop();
    $('watch-start').disabled = true;
    setStatus('watch-status', '连接中… Connecting…');
    try {
      const url = new URL(`/whep/${encodeURIComponent(room)}`, location.href).toString();
      state.viewer = await play(url, $('watch-video'));
      state.viewer.pc.addEventListener('connectionstatechange', () => {
        const s = state.viewer && state.viewer.pc.connectionState;
        if (s === 'connected') setStatus('watch-status', `观看中 · Watching ${room}`, 'ok');
        if (s === 'failed' || s === 'disconnected') setStatus('watch-status', `连接中断 · ${s}`, 'error');
      });
      $('watch-stop').disabled = false;
    } catch (err) {
      setStatus('watch-status', `无法观看 · ${err.message}`, 'error');
    } finally {
      $('watch-start').disabled = false;
    }
  });

  $('watch-stop').addEventListener('click', async () => {
    if (!state.viewer) return;
    await state.viewer.stop();
    state.viewer = null;
    $('watch-video').srcObject = null;
    $('watch-stop').disabled = true;
    setStatus('watch-status', '已离开 · Left');
  });

  let lastBytes = 0;
  setInterval(async () => {
    if (state.publisher) {
      const s = await outboundVideoStats(state.publisher.pc);
      if (s) {
        const kbps = Math.round(((s.bytesSent - lastBytes) * 8) / 1000);
        lastBytes = s.bytesSent;
        $('publish-stats').textContent = `${s.codec} · ${s.frameWidth}px · ${kbps} kbps · ${s.framesEncoded} frames`;
      }
    }
    if (state.viewer) {
      const s = await inboundVideoStats(state.viewer.pc);
      if (s) {
        $('watch-stats').textContent = `${s.codec} · ${s.frameWidth}×${s.frameHeight} · ${s.framesDecoded} frames · lost ${s.packetsLost}`;
      }
    }
  }, 1000);

  const params = new URLSearchParams(location.search);
  let savedToken = '';
  try { savedToken = localStorage.getItem('queqiao.token') || ''; } catch (_) { /* storage blocked */ }
  $('publish-room').value = params.get('room') || randomRoom();
  $('publish-token').value = params.get('token') || savedToken;
  $('watch-room').value = params.get('watch') || '';
}

/** Whether the page was opened as the quick test (/?room=…&token=… or /?watch=…). */
export function quickRequested() {
  const params = new URLSearchParams(location.search);
  return params.has('token') || params.has('watch') || (params.has('room') && !location.hash);
}

export function quickView(container, _params, state) {
  if (!wired) wire(state);
  const section = $('quick');
  section.hidden = false;
  container.hidden = true;
  return () => {
    section.hidden = true;
    container.hidden = false;
  };
}
