//! RTMP ingest: OBS, ffmpeg, hardware encoders and WeChat `<live-pusher>` go live by
//! pushing `rtmp://HOST:1935/live/{room}?key=KEY` (or `rtmp://HOST:1935/live` with the
//! room's key as the stream name).
//!
//! This is the I/O driver: one task per TCP connection, reading into the sans-IO
//! [`bridge::ingest::rtmp_session::IngestSession`] and writing what it returns. A publish
//! request is judged like a WHIP publish — the room's key (or, in standalone mode, the
//! publish token), a host that is not banned and still hosts the room, one publisher at a
//! time — and an accepted one takes the room's publisher seat in the media plane
//! ([`sfu::SfuHandle::ingest`]). Each frame goes on untouched (for FLV, HLS, LL-HLS,
//! recordings and RTMP push) together with the RTP made from it by
//! [`bridge::ingest::to_webrtc::WebRtcConverter`] (H.264 packetized, AAC transcoded to
//! Opus, B-frames dropped) for WebRTC viewers. Refusals are answered on the RTMP
//! connection with the reason and counted in [`RtmpIngestStats`].

use crate::access::Door;
use crate::config::RtmpListen;
use crate::live::SessionInfo;
use crate::state::AppState;
use crate::store::StoreError;
use bridge::ingest::rtmp_session::{IngestEvent, IngestLimits, IngestSession, PublishRequestId};
use bridge::ingest::to_webrtc::{ConverterConfig, WebRtcConverter};
use sfu::media::{Codec, NativeFrame, SourcePacket};
use sfu::peer::RoomCodecs;
use sfu::{PeerRole, RoomId};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The RTMP application name encoders publish to (the session refuses any other).
pub const APP: &str = bridge::ingest::rtmp_session::INGEST_APP;
/// Time a new connection has to complete the RTMP handshake and ask to publish.
const PUBLISH_DEADLINE: Duration = Duration::from_secs(10);
/// A publishing connection that sends nothing for this long is ended (the encoder hung;
/// the TCP connection may never close by itself).
const IDLE_TIMEOUT: Duration = Duration::from_secs(20);
/// Most concurrent RTMP connections (publishing or not).
const MAX_CONNECTIONS: usize = 1024;
/// Read buffer per connection.
const READ_CHUNK: usize = 64 * 1024;

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct RtmpIngestStats {
    /// TCP connections accepted.
    pub connections: AtomicU64,
    /// Connections refused at accept (too many open).
    pub connections_refused: AtomicU64,
    /// Publishes accepted.
    pub publishes: AtomicU64,
    /// Publishes refused: unknown room, wrong or missing key.
    pub refused_key: AtomicU64,
    /// Publishes refused: the host is banned, no longer hosts the room, or it is closed.
    pub refused_host: AtomicU64,
    /// Publishes refused: another publisher is live in the room.
    pub refused_busy: AtomicU64,
    /// Connections refused for another application name than [`APP`].
    pub refused_app: AtomicU64,
    /// Connections ended for malformed or oversized RTMP input.
    pub protocol_errors: AtomicU64,
    /// Connections that never completed the handshake and publish in time, or went
    /// silent while publishing.
    pub timeouts: AtomicU64,
    /// Frames (FLV tags) received from publishers.
    pub frames: AtomicU64,
    /// Frames the WebRTC conversion could not use (unsupported codec, malformed body).
    pub frames_unconverted: AtomicU64,
    /// B-frames not sent to WebRTC viewers (FLV/HLS keep them).
    pub b_frames_dropped: AtomicU64,
    /// Publishing sessions the server ended (admin or moderation stop, replacement).
    pub ended_by_server: AtomicU64,
}

impl RtmpIngestStats {
    /// Every counter by name, for `/metrics`.
    pub fn pairs(&self) -> [(&'static str, u64); 13] {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        [
            ("connections", read(&self.connections)),
            ("connections_refused", read(&self.connections_refused)),
            ("publishes", read(&self.publishes)),
            ("refused_key", read(&self.refused_key)),
            ("refused_host", read(&self.refused_host)),
            ("refused_busy", read(&self.refused_busy)),
            ("refused_app", read(&self.refused_app)),
            ("protocol_errors", read(&self.protocol_errors)),
            ("timeouts", read(&self.timeouts)),
            ("frames", read(&self.frames)),
            ("frames_unconverted", read(&self.frames_unconverted)),
            ("ended_by_server", read(&self.ended_by_server)),
            ("b_frames_dropped", read(&self.b_frames_dropped)),
        ]
    }
}

/// The running RTMP ingest, as the API needs it.
#[derive(Debug)]
pub struct RtmpIngest {
    /// The bound address.
    pub addr: SocketAddr,
    /// Counters.
    pub stats: RtmpIngestStats,
}

/// Binds the ingest listener as configured: `None` when it is off, or when the default
/// address is taken (another server on this machine; logged). An explicitly configured
/// address that cannot be bound is an error.
pub async fn bind(listen: RtmpListen) -> std::io::Result<Option<TcpListener>> {
    match listen {
        RtmpListen::Off => Ok(None),
        RtmpListen::At(addr) => Ok(Some(TcpListener::bind(addr).await?)),
        RtmpListen::Default => match TcpListener::bind(RtmpListen::DEFAULT_ADDR).await {
            Ok(listener) => Ok(Some(listener)),
            Err(err) => {
                tracing::warn!(
                    addr = %RtmpListen::DEFAULT_ADDR,
                    %err,
                    "RTMP ingest is off: its default address is taken (set --rtmp ADDR or --rtmp off)"
                );
                Ok(None)
            }
        },
    }
}

/// The accept loop; ends when `stop` turns true.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    ingest: Arc<RtmpIngest>,
    mut stop: watch::Receiver<bool>,
) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    tracing::warn!(%err, "RTMP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            _ = stop.changed() => break,
        };
        if connections.len() >= MAX_CONNECTIONS {
            ingest
                .stats
                .connections_refused
                .fetch_add(1, Ordering::Relaxed);
            continue;
        }
        ingest.stats.connections.fetch_add(1, Ordering::Relaxed);
        let _ = tcp.set_nodelay(true);
        let state = state.clone();
        let ingest = Arc::clone(&ingest);
        let stop = stop.clone();
        connections.spawn(async move {
            let mut connection = Connection::new(state, ingest, peer);
            connection.run(tcp, stop).await;
            connection.finish().await;
        });
    }
    connections.shutdown().await;
}

/// Why a publish was refused, and the words the encoder shows.
struct Refusal {
    counter: fn(&RtmpIngestStats) -> &AtomicU64,
    reason: String,
}

impl Refusal {
    fn key(reason: impl Into<String>) -> Self {
        Self {
            counter: |s| &s.refused_key,
            reason: reason.into(),
        }
    }

    fn host(reason: impl Into<String>) -> Self {
        Self {
            counter: |s| &s.refused_host,
            reason: reason.into(),
        }
    }

    fn busy(reason: impl Into<String>) -> Self {
        Self {
            counter: |s| &s.refused_busy,
            reason: reason.into(),
        }
    }
}

/// A seated publisher.
struct Publishing {
    room: RoomId,
    session: sfu::IngestSession,
    converter: WebRtcConverter,
    /// The codecs last told to the media plane (the H.264 profile is learnt from the
    /// stream's sequence header).
    codecs: RoomCodecs,
    /// B-frames dropped so far (counted into the stats as they grow).
    b_frames_dropped: u64,
}

/// One RTMP connection.
struct Connection {
    state: AppState,
    ingest: Arc<RtmpIngest>,
    peer: SocketAddr,
    session: IngestSession,
    /// What the session sends before it has read anything.
    greeting: Vec<u8>,
    publishing: Option<Publishing>,
    /// Frames and packets of one read, sent to the media plane as one command.
    native: Vec<Arc<NativeFrame>>,
    packets: Vec<SourcePacket>,
    closing: bool,
}

impl Connection {
    fn new(state: AppState, ingest: Arc<RtmpIngest>, peer: SocketAddr) -> Self {
        let (session, greeting) = IngestSession::new(IngestLimits::default());
        Self {
            greeting,
            state,
            ingest,
            peer,
            session,
            publishing: None,
            native: Vec::new(),
            packets: Vec::new(),
            closing: false,
        }
    }

    async fn run(&mut self, mut tcp: TcpStream, mut stop: watch::Receiver<bool>) {
        let mut buffer = vec![0u8; READ_CHUNK];
        let started = Instant::now();
        if !self.greeting.is_empty() {
            let greeting = std::mem::take(&mut self.greeting);
            if tcp.write_all(&greeting).await.is_err() {
                return;
            }
        }
        loop {
            let deadline = if self.publishing.is_some() {
                IDLE_TIMEOUT
            } else {
                PUBLISH_DEADLINE.saturating_sub(started.elapsed())
            };
            let closed_by_server = async {
                match self.publishing.as_mut() {
                    Some(p) => (&mut p.session.closed).await.ok(),
                    None => std::future::pending().await,
                }
            };
            let read = tokio::select! {
                read = tokio::time::timeout(deadline, tcp.read(&mut buffer)) => read,
                reason = closed_by_server => {
                    tracing::info!(peer = %self.peer, ?reason, "RTMP publish ended by the server");
                    self.ingest.stats.ended_by_server.fetch_add(1, Ordering::Relaxed);
                    // The seat is gone: nothing to close in the media plane.
                    self.publishing = None;
                    return;
                }
                _ = stop.changed() => return,
            };
            let n = match read {
                Err(_) => {
                    self.ingest.stats.timeouts.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(peer = %self.peer, "RTMP connection timed out");
                    return;
                }
                Ok(Err(_)) | Ok(Ok(0)) => {
                    self.session.handle_eof();
                    return;
                }
                Ok(Ok(n)) => n,
            };
            if let Err(err) = self.session.handle_input(&buffer[..n], Instant::now()) {
                self.ingest
                    .stats
                    .protocol_errors
                    .fetch_add(1, Ordering::Relaxed);
                tracing::info!(peer = %self.peer, %err, "RTMP input refused");
                let _ = self.flush(&mut tcp).await;
                return;
            }
            while let Some(event) = self.session.poll_event() {
                self.on_event(event).await;
            }
            if self.send_media().await.is_err() || self.flush(&mut tcp).await.is_err() {
                return;
            }
            if self.closing || self.session.should_close() {
                return;
            }
        }
    }

    /// Writes what the session has to send.
    async fn flush(&mut self, tcp: &mut TcpStream) -> std::io::Result<()> {
        while let Some(bytes) = self.session.poll_output() {
            tcp.write_all(&bytes).await?;
        }
        tcp.flush().await
    }

    async fn on_event(&mut self, event: IngestEvent) {
        match event {
            IngestEvent::PublishRequested {
                request,
                stream_name,
                query_key,
                ..
            } => self.on_publish(request, &stream_name, query_key).await,
            IngestEvent::Media(frame) => self.on_frame(frame),
            IngestEvent::ConnectRejected { app } => {
                self.ingest
                    .stats
                    .refused_app
                    .fetch_add(1, Ordering::Relaxed);
                tracing::info!(peer = %self.peer, app, "RTMP connect to an unknown application refused");
            }
            IngestEvent::PublishFinished | IngestEvent::Closed => self.closing = true,
            _ => {}
        }
    }

    async fn on_publish(
        &mut self,
        request: PublishRequestId,
        stream_name: &str,
        query_key: Option<String>,
    ) {
        if self.publishing.is_some() {
            self.session
                .reject_publish(request, "this connection already publishes");
            return;
        }
        let room = match judge_publish(&self.state, stream_name, query_key.as_deref()).await {
            Ok(room) => room,
            Err(refusal) => return self.refuse(request, refusal),
        };
        let codecs = RoomCodecs {
            audio: Some(Codec::Opus),
            video: Some((Codec::H264, None)),
        };
        let session = match self
            .state
            .sfu
            .ingest(room.room.clone(), codecs.clone())
            .await
        {
            Ok(session) => session,
            Err(sfu::SfuError::PublisherConflict(_)) => {
                return self.refuse(
                    request,
                    Refusal::busy("another publisher is live in this room: stop it first"),
                );
            }
            Err(err) => return self.refuse(request, Refusal::busy(err.to_string())),
        };
        self.session.accept_publish(request);
        self.ingest.stats.publishes.fetch_add(1, Ordering::Relaxed);
        tracing::info!(room = %room.room, peer = %self.peer, session = %session.peer, "RTMP publish accepted");
        let info = SessionInfo {
            id: session.peer.to_string(),
            room: room.room.to_string(),
            user_id: room.host,
            role: PeerRole::Publisher,
            private: false,
            opened_at: crate::store::now_ms(),
            peer: session.peer,
            resource: crate::live::new_resource_id(),
        };
        self.state.live.session_opened(session.peer, info).await;
        self.publishing = Some(Publishing {
            room: room.room,
            session,
            converter: WebRtcConverter::new(ConverterConfig::default()),
            codecs,
            b_frames_dropped: 0,
        });
    }

    fn refuse(&mut self, request: PublishRequestId, refusal: Refusal) {
        (refusal.counter)(&self.ingest.stats).fetch_add(1, Ordering::Relaxed);
        tracing::info!(peer = %self.peer, reason = %refusal.reason, "RTMP publish refused");
        self.session.reject_publish(request, &refusal.reason);
    }

    fn on_frame(&mut self, frame: NativeFrame) {
        let Some(publishing) = self.publishing.as_mut() else {
            return;
        };
        self.ingest.stats.frames.fetch_add(1, Ordering::Relaxed);
        let before = self.packets.len();
        match publishing.converter.push(&frame, &mut self.packets) {
            Ok(()) => {}
            Err(err) => {
                self.packets.truncate(before);
                self.ingest
                    .stats
                    .frames_unconverted
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(room = %publishing.room, %err, "RTMP frame not converted");
            }
        }
        self.native.push(Arc::new(frame));
    }

    /// Sends what one read produced to the media plane (waiting while its queue is full:
    /// the encoder is slowed by TCP, not cut).
    async fn send_media(&mut self) -> Result<(), sfu::SfuError> {
        let Some(publishing) = self.publishing.as_mut() else {
            return Ok(());
        };
        if self.native.is_empty() && self.packets.is_empty() {
            return Ok(());
        }
        let codecs = publishing.converter.take_codecs_changed().then(|| {
            let mut codecs = publishing.converter.room_codecs();
            // A stream without audio yet still offers viewers an Opus track.
            codecs.audio = codecs.audio.or(publishing.codecs.audio);
            codecs.video = codecs.video.or(publishing.codecs.video.clone());
            publishing.codecs = codecs.clone();
            codecs
        });
        let dropped = publishing.converter.b_frames_dropped();
        if dropped > publishing.b_frames_dropped {
            self.ingest
                .stats
                .b_frames_dropped
                .fetch_add(dropped - publishing.b_frames_dropped, Ordering::Relaxed);
            publishing.b_frames_dropped = dropped;
        }
        publishing
            .session
            .send(
                codecs,
                std::mem::take(&mut self.native),
                std::mem::take(&mut self.packets),
            )
            .await
    }

    /// The connection ended: a seated publisher leaves the room.
    async fn finish(&mut self) {
        if let Some(publishing) = self.publishing.take() {
            let _ = self.state.sfu.close(publishing.session.peer).await;
            tracing::info!(room = %publishing.room, peer = %self.peer, "RTMP publish ended");
        }
    }
}

/// A publish that may go ahead.
struct Admitted {
    room: RoomId,
    /// The host publishing (none in standalone mode).
    host: Option<i64>,
}

/// Who may publish to which room: in standalone mode the publish token as the key (an
/// unknown room is created); otherwise the room's stream key, and its host must be
/// allowed to publish there (not banned, still the host, the room open) by the access
/// policy, as for WHIP.
async fn judge_publish(
    state: &AppState,
    stream_name: &str,
    query_key: Option<&str>,
) -> Result<Admitted, Refusal> {
    if state.config.standalone {
        let expected = state.config.publish_token.as_deref().unwrap_or_default();
        let presented = query_key.unwrap_or_default();
        if expected.is_empty()
            || !crate::auth::constant_time_eq(presented.as_bytes(), expected.as_bytes())
        {
            return Err(Refusal::key("invalid publish token (?key=)"));
        }
        let room = RoomId::parse(stream_name)
            .ok_or_else(|| Refusal::key(format!("{stream_name:?} is not a room id")))?;
        crate::access::ensure_standalone_room(state, &room)
            .await
            .map_err(|err| Refusal::host(err.to_string()))?;
        return Ok(Admitted { room, host: None });
    }
    // `live/{room}?key=K`, or `live/K` with the key as the stream name.
    let (key, named_room) = match query_key {
        Some(key) => (key, Some(stream_name)),
        None => (stream_name, None),
    };
    let keyed_room = match state.store.room_of_stream_key(key).await {
        Ok(Some(room)) => room,
        Ok(None) => return Err(Refusal::key("wrong or rotated stream key")),
        Err(err) => return Err(Refusal::host(format!("storage: {err}"))),
    };
    if named_room.is_some_and(|named| named != keyed_room) {
        return Err(Refusal::key("wrong or rotated stream key"));
    }
    let room = RoomId::parse(&keyed_room)
        .ok_or_else(|| Refusal::key(format!("{keyed_room:?} is not a room id")))?;
    let stored = match state.store.room(room.as_str()).await {
        Ok(stored) => stored,
        Err(StoreError::NotFound) => return Err(Refusal::key("no such room")),
        Err(err) => return Err(Refusal::host(format!("storage: {err}"))),
    };
    let Some(host_id) = stored.host_id else {
        return Err(Refusal::host("the room has no host"));
    };
    let host = state
        .store
        .user(host_id)
        .await
        .map_err(|err| Refusal::host(format!("the room's host: {err}")))?;
    let allowed = crate::access::authorize(state, Some(&host), room.as_str(), Door::Whip)
        .await
        .map_err(|err| Refusal::host(err.to_string()))?;
    if allowed.closed {
        return Err(Refusal::host("the room is closed"));
    }
    Ok(Admitted {
        room,
        host: Some(host_id),
    })
}

/// A new stream key: 128 bits from the operating system's random source.
pub fn new_stream_key() -> String {
    crate::live::new_resource_id()
}
