//! RTMP push: one session per (room, target) that publishes the room's FLV tags to an
//! RTMP server (a CDN ingest, nginx-rtmp, SRS …) and reconnects with exponential backoff.
//!
//! The protocol (handshake, chunking, `connect` → `createStream` → `publish` →
//! `@setDataFrame`) is the `rml_rtmp` crate's, driven sans-IO by [`RtmpPublisher`]; the
//! async shell ([`spawn_session`]) owns the TCP connection and is an FLV consumer of the
//! room task like an HTTP-FLV viewer: it joins with the metadata, sequence headers and
//! current GOP, then receives live tags through a bounded queue. A push that falls behind
//! is dropped by the room and simply joins again at the current GOP.
//!
//! Every byte from the server goes through [`RtmpPublisher::handle_input`], which never
//! panics (the third-party parser runs under `catch_unwind`; see the fuzz target
//! `rtmp_publisher`).

use crate::room::RoomCommand;
use crate::service::{BridgeHandle, BridgeStats, OutputError, unix_ms};
use crate::target_policy::{TargetPolicy, TargetRefused};
use bytes::Bytes;
use rml_rtmp::chunk_io::ChunkDeserializer;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult,
    PublishRequestType, StreamMetadata,
};
use rml_rtmp::time::RtmpTimestamp;
use serde::Serialize;
use sfu::RoomId;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

/// A place to push a room to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RtmpTarget {
    /// Stable id (the database row id, or `config-N` for configured targets).
    pub id: String,
    /// `rtmp://host[:port]/app[/…]/stream-key`.
    pub url: String,
}

/// RTMP push settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtmpPushConfig {
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Handshake + connect + publish must finish within this.
    pub publish_timeout: Duration,
    /// A write that takes longer fails the session.
    pub write_timeout: Duration,
    /// First reconnect delay.
    pub backoff_initial: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
}

impl Default for RtmpPushConfig {
    fn default() -> Self {
        RtmpPushConfig {
            connect_timeout: Duration::from_secs(5),
            publish_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
        }
    }
}

/// Where an RTMP session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RtmpState {
    /// Configured; the room is not live.
    Idle,
    /// Connecting, handshaking or waiting for `NetStream.Publish.Start`.
    Connecting,
    /// Publishing media.
    Publishing,
    /// Failed; waiting to reconnect.
    Retrying,
    /// Stopped (show ended or target removed).
    Stopped,
}

/// A target's status, for the API.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RtmpTargetStatus {
    /// The target id.
    pub target_id: String,
    /// The URL with the stream key hidden.
    pub url: String,
    /// Current state.
    pub state: RtmpState,
    /// The last error, if any.
    pub last_error: Option<String>,
    /// Reconnection attempts in this show.
    pub reconnects: u64,
    /// When the current publishing connection was established (Unix ms).
    pub publishing_since: Option<i64>,
    /// Bytes sent in this show.
    pub bytes_sent: u64,
    /// When this status was produced (Unix ms).
    pub updated_at: i64,
}

impl RtmpTargetStatus {
    /// The status of a target whose room is not live.
    pub fn idle(target: &RtmpTarget) -> Self {
        RtmpTargetStatus {
            target_id: target.id.clone(),
            url: redact(&target.url),
            state: RtmpState::Idle,
            last_error: None,
            reconnects: 0,
            publishing_since: None,
            bytes_sent: 0,
            updated_at: unix_ms(SystemTime::now()),
        }
    }
}

/// RTMP push failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RtmpError {
    /// The URL is not `rtmp://host[:port]/app/key`.
    #[error("invalid RTMP URL: {0}")]
    InvalidUrl(String),
    /// TCP connect, read or write failed.
    #[error("network: {0}")]
    Io(String),
    /// The server closed the connection.
    #[error("the server closed the connection")]
    Closed,
    /// A step did not finish in time.
    #[error("timed out: {0}")]
    Timeout(&'static str),
    /// The handshake failed.
    #[error("handshake: {0}")]
    Handshake(String),
    /// The server sent bytes that are not valid RTMP (or the session broke).
    #[error("protocol: {0}")]
    Protocol(String),
    /// The server refused `connect` or `publish`.
    #[error("rejected by the server: {0}")]
    Rejected(String),
    /// A tag could not be sent (not publishing, or malformed).
    #[error("cannot send: {0}")]
    Send(String),
    /// The target address is refused by the operator's [`TargetPolicy`].
    #[error("target refused: {0}")]
    Refused(#[from] TargetRefused),
}

impl RtmpError {
    /// What a room's host may see of this failure: a generic status, never a socket
    /// error (which would let a host probe the server's network through push URLs).
    pub fn public_message(&self) -> &'static str {
        match self {
            RtmpError::InvalidUrl(_) => "failed: invalid URL",
            RtmpError::Refused(_) => "failed: target not allowed",
            RtmpError::Rejected(_) => "failed: rejected by the target",
            RtmpError::Io(_)
            | RtmpError::Closed
            | RtmpError::Timeout(_)
            | RtmpError::Handshake(_)
            | RtmpError::Protocol(_)
            | RtmpError::Send(_) => "failed: target unreachable",
        }
    }
}

/// Resolves `host` and checks every address against `policy` (all must pass, so a name
/// with one private address among public ones is refused); returns the addresses to
/// connect to — the checked ones, never a second resolution.
pub async fn resolve_checked(
    policy: &TargetPolicy,
    host: &str,
    port: u16,
) -> Result<Vec<std::net::SocketAddr>, TargetRefused> {
    if let Some(ip) = policy.check_host(host)? {
        return Ok(vec![std::net::SocketAddr::new(ip, port)]);
    }
    let addresses: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|_| TargetRefused::Unresolvable(host.to_owned()))?
        .collect();
    if addresses.is_empty() {
        return Err(TargetRefused::Unresolvable(host.to_owned()));
    }
    for address in &addresses {
        policy.check_address(host, address.ip())?;
    }
    Ok(addresses)
}

/// A parsed `rtmp://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtmpUrl {
    /// Host name or address.
    pub host: String,
    /// TCP port (1935 by default).
    pub port: u16,
    /// Application (`live`, or `app/instance`).
    pub app: String,
    /// Stream key (last path segment, query included).
    pub stream_key: String,
    /// `rtmp://host[:port]/app`, sent as `tcUrl`.
    pub tc_url: String,
}

impl RtmpUrl {
    /// Parses `rtmp://host[:port]/app[/…]/key`.
    pub fn parse(url: &str) -> Result<RtmpUrl, RtmpError> {
        let invalid = |why: &str| RtmpError::InvalidUrl(format!("{}: {why}", redact(url)));
        if url.len() > 2048 || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("too long or contains whitespace"));
        }
        let rest = url
            .strip_prefix("rtmp://")
            .ok_or_else(|| invalid("must start with rtmp://"))?;
        let (authority, path) = rest
            .split_once('/')
            .ok_or_else(|| invalid("missing application and stream key"))?;
        if authority.contains('@') {
            return Err(invalid("credentials in the URL are not supported"));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => {
                let port = port.parse::<u16>().map_err(|_| invalid("bad port"))?;
                (host.to_owned(), port)
            }
            _ => (authority.to_owned(), 1935),
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        if host.is_empty() || port == 0 {
            return Err(invalid("missing host"));
        }
        let (app, key) = path
            .rsplit_once('/')
            .ok_or_else(|| invalid("missing stream key (rtmp://host/app/key)"))?;
        if app.is_empty() || key.is_empty() {
            return Err(invalid("missing application or stream key"));
        }
        Ok(RtmpUrl {
            tc_url: format!("rtmp://{authority}/{app}"),
            host,
            port,
            app: app.to_owned(),
            stream_key: key.to_owned(),
        })
    }
}

/// The URL with its stream key replaced by `***`.
pub fn redact(url: &str) -> String {
    match url.rsplit_once('/') {
        Some((base, _)) if base.len() > "rtmp://".len() => format!("{base}/***"),
        _ => "rtmp://***".to_owned(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Handshaking,
    Connecting,
    Publishing,
    Failed,
}

/// Sans-IO RTMP publisher: feed it the server's bytes, take the bytes to send.
pub struct RtmpPublisher {
    url: RtmpUrl,
    stage: Stage,
    handshake: Handshake,
    session: Option<ClientSession>,
    inspector: MessageInspector,
    out: Vec<u8>,
}

/// Reassembles the server's messages a second time, ahead of the session, and refuses
/// the ones `rml_rtmp` 0.8 would panic on (an AMF0 command, type 20 or 17, with fewer
/// than three values: name, transaction id, command object). Found by the `rtmp_publisher` fuzz
/// target; the session still runs under `catch_unwind` as a last resort.
struct MessageInspector {
    chunks: ChunkDeserializer,
}

impl MessageInspector {
    fn inspect(&mut self, data: &[u8]) -> Result<(), RtmpError> {
        let mut input = data;
        loop {
            let chunks = &mut self.chunks;
            let next = guarded("chunk parser", || chunks.get_next_message(input))?
                .map_err(|e| RtmpError::Protocol(e.to_string()))?;
            let Some(message) = next else {
                return Ok(());
            };
            input = &[];
            match message.type_id {
                // Set Chunk Size: mirror it, as the session will.
                1 => {
                    let size = message
                        .data
                        .get(..4)
                        .map(|b| u32::from_be_bytes([b[0] & 0x7F, b[1], b[2], b[3]]))
                        .ok_or_else(|| RtmpError::Protocol("short Set Chunk Size".into()))?;
                    self.chunks
                        .set_max_chunk_size(size as usize)
                        .map_err(|e| RtmpError::Protocol(e.to_string()))?;
                }
                // AMF0 command, or an "AMF3" command that is AMF0 after a 0 byte (how
                // rml_rtmp reads type 17).
                17 | 20 => {
                    let data = &message.data[..];
                    let mut reader = match data.first() {
                        Some(0) if message.type_id == 17 => &data[1..],
                        _ => data,
                    };
                    let values = rml_amf0::deserialize(&mut reader)
                        .map_err(|e| RtmpError::Protocol(format!("AMF0 command: {e}")))?;
                    let well_formed = values.len() >= 3
                        && matches!(values[0], rml_amf0::Amf0Value::Utf8String(_))
                        && matches!(values[1], rml_amf0::Amf0Value::Number(_));
                    if !well_formed {
                        return Err(RtmpError::Protocol("malformed AMF0 command".into()));
                    }
                }
                _ => {}
            }
        }
    }
}

impl std::fmt::Debug for RtmpPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RtmpPublisher")
            .field("host", &self.url.host)
            .field("stage", &self.stage)
            .finish_non_exhaustive()
    }
}

/// Runs third-party parsing code; a panic becomes a protocol error.
fn guarded<T>(what: &str, f: impl FnOnce() -> T) -> Result<T, RtmpError> {
    std::panic::catch_unwind(AssertUnwindSafe(f))
        .map_err(|_| RtmpError::Protocol(format!("{what}: malformed input from the server")))
}

impl RtmpPublisher {
    /// Starts a publisher for `url`; C0+C1 are ready in [`Self::take_output`].
    pub fn new(url: RtmpUrl) -> Result<Self, RtmpError> {
        let mut handshake = Handshake::new(PeerType::Client);
        let c0c1 = handshake
            .generate_outbound_p0_and_p1()
            .map_err(|e| RtmpError::Handshake(e.to_string()))?;
        Ok(RtmpPublisher {
            url,
            stage: Stage::Handshaking,
            handshake,
            session: None,
            inspector: MessageInspector {
                chunks: ChunkDeserializer::new(),
            },
            out: c0c1,
        })
    }

    /// Whether `NetStream.Publish.Start` was received.
    pub fn is_publishing(&self) -> bool {
        self.stage == Stage::Publishing
    }

    /// Bytes to send to the server, in order.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Handles bytes from the server. Returns `true` when publishing has just been
    /// accepted. Never panics; after an error the publisher stays failed.
    pub fn handle_input(&mut self, data: &[u8]) -> Result<bool, RtmpError> {
        let result = self.handle_input_inner(data);
        if result.is_err() {
            self.stage = Stage::Failed;
        }
        result
    }

    fn handle_input_inner(&mut self, data: &[u8]) -> Result<bool, RtmpError> {
        match self.stage {
            Stage::Failed => Err(RtmpError::Protocol("the session already failed".into())),
            Stage::Handshaking => {
                let handshake = &mut self.handshake;
                let result = guarded("handshake", || handshake.process_bytes(data))?
                    .map_err(|e| RtmpError::Handshake(e.to_string()))?;
                match result {
                    HandshakeProcessResult::InProgress { response_bytes } => {
                        self.out.extend_from_slice(&response_bytes);
                        Ok(false)
                    }
                    HandshakeProcessResult::Completed {
                        response_bytes,
                        remaining_bytes,
                    } => {
                        self.out.extend_from_slice(&response_bytes);
                        self.start_session()?;
                        if remaining_bytes.is_empty() {
                            Ok(false)
                        } else {
                            self.session_input(&remaining_bytes)
                        }
                    }
                }
            }
            Stage::Connecting | Stage::Publishing => self.session_input(data),
        }
    }

    fn start_session(&mut self) -> Result<(), RtmpError> {
        let mut config = ClientSessionConfig::new();
        config.tc_url = Some(self.url.tc_url.clone());
        config.flash_version = "FMLE/3.0 (compatible; queqiao)".into();
        config.chunk_size = 4096;
        let (mut session, results) = guarded("session", || ClientSession::new(config))?
            .map_err(|e| RtmpError::Protocol(e.to_string()))?;
        self.stage = Stage::Connecting;
        let app = self.url.app.clone();
        let connect = guarded("connect", || session.request_connection(app))?
            .map_err(|e| RtmpError::Protocol(e.to_string()))?;
        self.session = Some(session);
        self.apply(results)?;
        self.apply(vec![connect])?;
        Ok(())
    }

    fn session_input(&mut self, data: &[u8]) -> Result<bool, RtmpError> {
        self.inspector.inspect(data)?;
        let Some(session) = self.session.as_mut() else {
            return Err(RtmpError::Protocol("no session".into()));
        };
        let results = guarded("chunk parser", || session.handle_input(data))?
            .map_err(|e| RtmpError::Protocol(e.to_string()))?;
        self.apply(results)
    }

    /// Queues outbound packets and reacts to events. Returns whether publishing started.
    fn apply(&mut self, results: Vec<ClientSessionResult>) -> Result<bool, RtmpError> {
        let mut started = false;
        for result in results {
            match result {
                ClientSessionResult::OutboundResponse(packet) => {
                    self.out.extend_from_slice(&packet.bytes);
                }
                ClientSessionResult::RaisedEvent(event) => match event {
                    ClientSessionEvent::ConnectionRequestAccepted => {
                        let key = self.url.stream_key.clone();
                        let session = self
                            .session
                            .as_mut()
                            .ok_or_else(|| RtmpError::Protocol("no session".into()))?;
                        let request = guarded("publish", || {
                            session.request_publishing(key, PublishRequestType::Live)
                        })?
                        .map_err(|e| RtmpError::Protocol(e.to_string()))?;
                        self.out.extend_from_slice(&match request {
                            ClientSessionResult::OutboundResponse(packet) => packet.bytes,
                            _ => Vec::new(),
                        });
                    }
                    ClientSessionEvent::ConnectionRequestRejected { description } => {
                        return Err(RtmpError::Rejected(format!("connect: {description}")));
                    }
                    ClientSessionEvent::PublishRequestAccepted
                        if self.stage != Stage::Publishing =>
                    {
                        self.stage = Stage::Publishing;
                        started = true;
                    }
                    ClientSessionEvent::UnhandleableOnStatusCode { code }
                        if code.starts_with("NetStream.Publish.")
                            || code.starts_with("NetConnection.Connect.") =>
                    {
                        return Err(RtmpError::Rejected(code));
                    }
                    _ => {}
                },
                ClientSessionResult::UnhandleableMessageReceived(_) => {}
            }
        }
        Ok(started)
    }

    /// Sends one FLV tag (type 8 audio, 9 video, 18 script `onMetaData`) with its body.
    pub fn send_tag(
        &mut self,
        tag_type: u8,
        timestamp_ms: u32,
        body: Bytes,
    ) -> Result<(), RtmpError> {
        if self.stage != Stage::Publishing {
            return Err(RtmpError::Send("not publishing".into()));
        }
        let session = self
            .session
            .as_mut()
            .ok_or_else(|| RtmpError::Send("no session".into()))?;
        let timestamp = RtmpTimestamp::new(timestamp_ms);
        let result = match tag_type {
            8 => session.publish_audio_data(body, timestamp, false),
            9 => session.publish_video_data(body, timestamp, false),
            18 => {
                let metadata = metadata_from_script(&body)
                    .ok_or_else(|| RtmpError::Send("unreadable onMetaData".into()))?;
                session.publish_metadata(&metadata)
            }
            other => return Err(RtmpError::Send(format!("unknown tag type {other}"))),
        }
        .map_err(|e| RtmpError::Send(e.to_string()))?;
        if let ClientSessionResult::OutboundResponse(packet) = result {
            self.out.extend_from_slice(&packet.bytes);
        }
        Ok(())
    }
}

/// Reads an FLV script tag body (`onMetaData` + ECMA array) into RTMP stream metadata.
fn metadata_from_script(body: &[u8]) -> Option<StreamMetadata> {
    let mut reader = body;
    let values = rml_amf0::deserialize(&mut reader).ok()?;
    let mut iter = values.into_iter();
    if iter.next()?.get_string()? != "onMetaData" {
        return None;
    }
    let properties = iter.next()?.get_object_properties()?;
    let mut metadata = StreamMetadata::new();
    metadata.apply_metadata_values(properties);
    Some(metadata)
}

/// Splits one whole FLV tag chunk (as produced by the FLV muxer) into type, timestamp
/// and body. `None` for the FLV file header or anything malformed.
pub fn split_flv_tag(chunk: &Bytes) -> Option<(u8, u32, Bytes)> {
    if chunk.len() < 15 || chunk.starts_with(b"FLV") {
        return None;
    }
    let tag_type = chunk[0];
    let len = (usize::from(chunk[1]) << 16) | (usize::from(chunk[2]) << 8) | usize::from(chunk[3]);
    let timestamp = (u32::from(chunk[7]) << 24)
        | (u32::from(chunk[4]) << 16)
        | (u32::from(chunk[5]) << 8)
        | u32::from(chunk[6]);
    if 11 + len + 4 != chunk.len() {
        return None;
    }
    Some((tag_type, timestamp, chunk.slice(11..11 + len)))
}

/// The room task's handle on a running session.
#[derive(Debug)]
pub(crate) struct RtmpSession {
    stop: watch::Sender<bool>,
    url: String,
}

impl RtmpSession {
    /// Asks the session to stop (it closes the connection and reports `stopped`).
    pub(crate) fn stop(&self) {
        let _ = self.stop.send(true);
    }

    /// The target URL.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }
}

/// Starts a push session for `target` of `room`.
pub(crate) fn spawn_session(handle: BridgeHandle, room: RoomId, target: RtmpTarget) -> RtmpSession {
    let (stop, stopped) = watch::channel(false);
    let url = target.url.clone();
    tokio::spawn(run_session(handle, room, target, stopped));
    RtmpSession { stop, url }
}

enum Ended {
    Stopped,
    ShowEnded,
}

async fn run_session(
    handle: BridgeHandle,
    room: RoomId,
    target: RtmpTarget,
    mut stop: watch::Receiver<bool>,
) {
    let shared = handle.shared().clone();
    let config = shared.config.rtmp;
    let mut status = RtmpTargetStatus::idle(&target);
    let mut backoff = config.backoff_initial;
    let url = match RtmpUrl::parse(&target.url) {
        Ok(url) => url,
        Err(err) => {
            tracing::warn!(room = %room, %err, "RTMP push target is invalid");
            status.state = RtmpState::Stopped;
            status.last_error = Some(err.public_message().to_owned());
            status.updated_at = unix_ms(SystemTime::now());
            shared.set_rtmp_status(&room, status);
            return;
        }
    };
    loop {
        if *stop.borrow() {
            break;
        }
        status.state = RtmpState::Connecting;
        status.updated_at = unix_ms(SystemTime::now());
        shared.set_rtmp_status(&room, status.clone());
        let started = Instant::now();
        let result = tokio::select! {
            result = publish_once(&handle, &room, &url, &mut status) => result,
            _ = stop.changed() => Ok(Ended::Stopped),
        };
        if status.publishing_since.take().is_some() {
            BridgeStats::sub(&shared.stats.rtmp_publishing, 1);
        }
        match result {
            Ok(Ended::Stopped | Ended::ShowEnded) => break,
            Err(err) => {
                tracing::warn!(room = %room, target = %status.url, %err, "RTMP push failed; reconnecting");
                BridgeStats::add(&shared.stats.rtmp_failures, 1);
                if started.elapsed() > Duration::from_secs(10) {
                    backoff = config.backoff_initial;
                }
                status.state = RtmpState::Retrying;
                status.last_error = Some(err.public_message().to_owned());
                status.updated_at = unix_ms(SystemTime::now());
                shared.set_rtmp_status(&room, status.clone());
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => break,
                }
                backoff = (backoff * 2).min(config.backoff_max);
                status.reconnects += 1;
                BridgeStats::add(&shared.stats.rtmp_reconnects, 1);
            }
        }
    }
    status.state = RtmpState::Stopped;
    status.updated_at = unix_ms(SystemTime::now());
    shared.set_rtmp_status(&room, status);
}

async fn publish_once(
    handle: &BridgeHandle,
    room: &RoomId,
    url: &RtmpUrl,
    status: &mut RtmpTargetStatus,
) -> Result<Ended, RtmpError> {
    let shared = handle.shared().clone();
    let config = shared.config.rtmp;
    let io = |e: std::io::Error| RtmpError::Io(e.to_string());
    let policy = &shared.config.rtmp_policy;
    let connect = async {
        let addresses = resolve_checked(policy, &url.host, url.port).await?;
        let mut last = RtmpError::Closed;
        for address in addresses {
            match tokio::net::TcpStream::connect(address).await {
                Ok(stream) => return Ok(stream),
                Err(err) => last = io(err),
            }
        }
        Err(last)
    };
    let stream = tokio::time::timeout(config.connect_timeout, connect)
        .await
        .map_err(|_| RtmpError::Timeout("connect"))??;
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.into_split();
    let mut publisher = RtmpPublisher::new(url.clone())?;
    let mut buf = vec![0u8; 16 * 1024];

    let handshake = async {
        loop {
            let out = publisher.take_output();
            if !out.is_empty() {
                writer.write_all(&out).await.map_err(io)?;
            }
            if publisher.is_publishing() {
                return Ok::<(), RtmpError>(());
            }
            let n = reader.read(&mut buf).await.map_err(io)?;
            if n == 0 {
                return Err(RtmpError::Closed);
            }
            publisher.handle_input(&buf[..n])?;
        }
    };
    tokio::time::timeout(config.publish_timeout, handshake)
        .await
        .map_err(|_| RtmpError::Timeout("RTMP handshake/connect/publish"))??;

    status.state = RtmpState::Publishing;
    status.publishing_since = Some(unix_ms(SystemTime::now()));
    status.last_error = None;
    status.updated_at = unix_ms(SystemTime::now());
    shared.set_rtmp_status(room, status.clone());
    BridgeStats::add(&shared.stats.rtmp_publishing, 1);
    tracing::info!(room = %room, target = %status.url, "RTMP push publishing");

    let mut join = match join_flv(handle, room).await {
        Ok(join) => join,
        Err(ended) => return Ok(ended),
    };
    let mut pending: Vec<Bytes> = std::mem::take(&mut join.initial);
    loop {
        // Send what is queued as one write.
        for chunk in pending.drain(..) {
            if let Some((tag_type, timestamp, body)) = split_flv_tag(&chunk) {
                publisher.send_tag(tag_type, timestamp, body)?;
            }
        }
        let out = publisher.take_output();
        if !out.is_empty() {
            tokio::time::timeout(config.write_timeout, writer.write_all(&out))
                .await
                .map_err(|_| RtmpError::Timeout("write"))?
                .map_err(io)?;
            status.bytes_sent += out.len() as u64;
            BridgeStats::add(&shared.stats.rtmp_bytes_sent, out.len() as u64);
        }
        tokio::select! {
            chunk = join.live.recv() => match chunk {
                Some(chunk) => {
                    pending.push(chunk);
                    while pending.len() < 64 {
                        match join.live.try_recv() {
                            Ok(chunk) => pending.push(chunk),
                            Err(_) => break,
                        }
                    }
                }
                None => {
                    // The show ended, or this push fell behind and was dropped: join again.
                    match join_flv(handle, room).await {
                        Ok(mut again) => {
                            pending = std::mem::take(&mut again.initial);
                            join = again;
                        }
                        Err(ended) => return Ok(ended),
                    }
                }
            },
            read = reader.read(&mut buf) => {
                let n = read.map_err(io)?;
                if n == 0 {
                    return Err(RtmpError::Closed);
                }
                publisher.handle_input(&buf[..n])?;
            }
        }
    }
}

async fn join_flv(handle: &BridgeHandle, room: &RoomId) -> Result<crate::room::FlvJoin, Ended> {
    match handle
        .request(room, |reply| RoomCommand::JoinFlv { rtmp: true, reply })
        .await
    {
        Ok(Ok(join)) => Ok(join),
        Ok(Err(OutputError::Busy)) | Err(OutputError::Busy) => Err(Ended::ShowEnded),
        _ => Err(Ended::ShowEnded),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rtmp_urls() {
        let url = RtmpUrl::parse("rtmp://127.0.0.1:1936/live/room-1?k=v").unwrap();
        assert_eq!(url.host, "127.0.0.1");
        assert_eq!(url.port, 1936);
        assert_eq!(url.app, "live");
        assert_eq!(url.stream_key, "room-1?k=v");
        assert_eq!(url.tc_url, "rtmp://127.0.0.1:1936/live");
        let url = RtmpUrl::parse("rtmp://cdn.example.com/app/inst/key").unwrap();
        assert_eq!((url.port, url.app.as_str()), (1935, "app/inst"));
        for bad in [
            "http://x/a/b",
            "rtmp://x",
            "rtmp://x/app",
            "rtmp:///app/key",
            "rtmp://u:p@x/app/key",
            "rtmp://x:99999/a/k",
            "rtmp://x/a /k",
        ] {
            assert!(RtmpUrl::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(redact("rtmp://h/live/secret"), "rtmp://h/live/***");
    }

    #[test]
    fn splits_flv_tags() {
        let mut tag = vec![9, 0, 0, 3, 0x12, 0x34, 0x56, 0x01, 0, 0, 0, 0x17, 1, 2];
        tag.extend_from_slice(&14u32.to_be_bytes());
        let (t, ts, body) = split_flv_tag(&Bytes::from(tag)).unwrap();
        assert_eq!((t, ts, &body[..]), (9, 0x0112_3456, &[0x17, 1, 2][..]));
        assert!(split_flv_tag(&Bytes::from_static(b"FLV\x01\x05\0\0\0\x09\0\0\0\0")).is_none());
        assert!(
            split_flv_tag(&Bytes::from_static(&[
                9, 0, 0, 200, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4
            ]))
            .is_none()
        );
    }

    /// A tiny deterministic generator (no `rand` dependency in the library).
    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn garbage_from_the_server_never_panics() {
        let url = RtmpUrl::parse("rtmp://127.0.0.1/live/k").unwrap();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for round in 0..300 {
            let mut publisher = RtmpPublisher::new(url.clone()).unwrap();
            assert!(!publisher.take_output().is_empty(), "C0+C1");
            // Half the rounds get a well-formed S0+S1+S2 first, so the chunk parser and
            // the session see the garbage too.
            if round % 2 == 0 {
                let mut s0s1s2 = vec![3u8];
                s0s1s2.extend((0..1536 * 2).map(|_| xorshift(&mut seed) as u8));
                let _ = publisher.handle_input(&s0s1s2);
            }
            for _ in 0..20 {
                let len = (xorshift(&mut seed) % 700) as usize;
                let data: Vec<u8> = (0..len).map(|_| xorshift(&mut seed) as u8).collect();
                if publisher.handle_input(&data).is_err() {
                    break;
                }
                let _ = publisher.take_output();
            }
        }
    }

    #[test]
    fn metadata_round_trips_from_the_flv_muxer() {
        use crate::media_unit::{AacConfig, Tracks};
        use std::sync::Arc;
        let muxer = crate::flv::FlvMuxer::new(Tracks {
            video: false,
            audio: Some(Arc::new(AacConfig::lc(48_000, 2).unwrap())),
        });
        let mut muxer = muxer;
        let frame = crate::media_unit::MediaUnit::Audio(crate::media_unit::AudioFrame {
            pts: 0,
            duration: 1920,
            data: Bytes::from_static(&[0x21, 0x10, 0x04]),
            config: Arc::new(AacConfig::lc(48_000, 2).unwrap()),
            discontinuity: false,
            wallclock: SystemTime::now(),
        });
        muxer.write(&frame);
        let tags = muxer.sequence_tags();
        let script = tags
            .iter()
            .find(|t| t.tag_type == crate::flv::TagType::Script)
            .unwrap();
        let metadata = metadata_from_script(&script.body()).unwrap();
        assert_eq!(metadata.audio_sample_rate, Some(48_000));
        assert_eq!(metadata.audio_codec_id, Some(10));
    }
}
