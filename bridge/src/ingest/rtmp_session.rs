//! The server side of one RTMP ingest connection, sans-IO: OBS, ffmpeg or WeChat
//! `<live-pusher>` pushes `rtmp://HOST:1935/live/{room}?key=SECRET` (or app `live` with the
//! key as the stream name) and [`IngestSession`] turns the bytes it sends into
//! [`IngestEvent`]s: a publish request for the driver to accept or reject, stream metadata,
//! and every audio/video message as an [`sfu::media::NativeFrame`] (an FLV tag body,
//! untouched).
//!
//! The driver owns the TCP connection and the clock: it feeds what it reads to
//! [`IngestSession::handle_input`], writes what [`IngestSession::poll_output`] returns,
//! drains [`IngestSession::poll_event`], enforces a handshake deadline with
//! [`IngestSession::handshake_done`] and closes the socket once
//! [`IngestSession::should_close`] is true (after flushing the output).
//!
//! # What runs where
//!
//! - The handshake is `rml_rtmp`'s ([`Handshake`], server side).
//! - The chunk stream is parsed here (`ChunkReader`), not by `rml_rtmp`: its 0.8 parser
//!   keeps one payload buffer for all chunk streams (so interleaved chunk streams corrupt
//!   messages, and a new header in the middle of a message underflows a length and then
//!   reserves ~2^64 bytes), allocates a whole declared message (16 MiB) before it arrives
//!   and accepts any chunk size. Ours keeps a buffer per chunk stream, checks every
//!   declared length against [`IngestLimits`] before storing a byte, caps the bytes held in
//!   unfinished messages and the number of chunk streams, and handles Set Chunk Size,
//!   Abort, Window Acknowledgement Size (we send the acknowledgements) itself.
//! - Audio, video and `@setDataFrame`/`onMetaData` never go through `rml_rtmp` either: no
//!   copy, no per-frame allocation besides the message itself.
//! - The NetConnection/NetStream command flow (`connect`, `createStream`, `publish`,
//!   `deleteStream`, pings) is `rml_rtmp`'s [`ServerSession`], fed one validated message
//!   at a time, re-framed as a single full-header chunk so its chunk parser only ever sees
//!   well-formed input. Before a command reaches it, the AMF0 is walked here
//!   (`check_amf0`): `rml_amf0` 0.3 allocates a string's declared length before reading
//!   it (64 KiB for 3 input bytes, so a 64 KiB command could make it allocate gigabytes),
//!   recurses without a depth limit (a stack overflow is an abort, not a panic), and
//!   `rml_rtmp` panics on a command with fewer than three values and on a
//!   `@setDataFrame` without its object. None of that can reach it from here; nothing
//!   runs under `catch_unwind`.
//! - Replies `rml_rtmp` does not make (`_result` to `releaseStream`/`FCPublish`, the
//!   `onStatus` error of a rejected publish, acknowledgements) are framed here on chunk
//!   stream 7, which `rml_rtmp`'s serializer never uses, always with full headers, so its
//!   header compression on streams 2–6 stays consistent for the client.

use crate::error::BridgeError;
use bytes::{BufMut, Bytes, BytesMut};
use rml_amf0::Amf0Value;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    PublishMode as RmlPublishMode, ServerSession, ServerSessionConfig, ServerSessionEvent,
    ServerSessionResult,
};
use sfu::media::{MediaKind, NativeFrame};
use std::collections::{HashMap, VecDeque};
use std::time::Instant;

/// The only RTMP application accepted (`rtmp://HOST/live/…`).
pub const INGEST_APP: &str = "live";

/// Our outbound chunk size (announced to the client with Set Chunk Size).
const OUT_CHUNK_SIZE: u32 = 4096;
/// Chunk stream id of the messages we frame ourselves; `rml_rtmp` uses 2–6.
const OWN_CSID: u8 = 7;
/// Chunk stream id of the messages we hand to `rml_rtmp`'s parser.
const CANONICAL_CSID: u8 = 3;
/// RTMP's largest message (24-bit length field) and largest meaningful chunk size.
const MAX_RTMP_LENGTH: u32 = 0x00FF_FFFF;
/// A timestamp field with this value means a 4-byte extended timestamp follows.
const EXTENDED_TIMESTAMP: u32 = 0x00FF_FFFF;
/// Longest chunk header: 3-byte basic header, 11-byte message header, extended timestamp.
const MAX_CHUNK_HEADER: usize = 18;
/// Deepest AMF0 nesting (objects, arrays) accepted; real commands nest two levels.
const MAX_AMF_DEPTH: usize = 16;
/// Smallest acknowledgement window we honour (a tiny one would make us answer every read).
const MIN_ACK_WINDOW: u32 = 4096;
/// Longest reason text put into an `onStatus`/`_error` description.
const MAX_REASON_LEN: usize = 512;
/// Initial capacity of a message buffer; it grows as the message's bytes arrive.
const MAX_INITIAL_MESSAGE_CAPACITY: usize = 64 * 1024;

/// RTMP message type ids.
mod message_type {
    pub const SET_CHUNK_SIZE: u8 = 1;
    pub const ABORT: u8 = 2;
    pub const ACKNOWLEDGEMENT: u8 = 3;
    pub const USER_CONTROL: u8 = 4;
    pub const WINDOW_ACK_SIZE: u8 = 5;
    pub const SET_PEER_BANDWIDTH: u8 = 6;
    pub const AUDIO: u8 = 8;
    pub const VIDEO: u8 = 9;
    pub const AMF3_DATA: u8 = 15;
    pub const AMF3_COMMAND: u8 = 17;
    pub const AMF0_DATA: u8 = 18;
    pub const AMF0_COMMAND: u8 = 20;
}

/// Bounds on what one ingest connection may make us hold or do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestLimits {
    /// Largest audio/video message (an encoded frame), in bytes; a longer declared
    /// message is an error.
    pub max_message_size: usize,
    /// Largest command, data (`onMetaData`) or protocol control message.
    pub max_control_message_size: usize,
    /// Largest chunk size the peer may set (values above 16 MiB − 1 count as 16 MiB − 1,
    /// which the specification makes equivalent).
    pub max_chunk_size: u32,
    /// Most bytes held in unfinished messages across all chunk streams.
    pub max_buffered_bytes: usize,
    /// Most chunk stream ids the peer may use.
    pub max_chunk_streams: usize,
    /// Most `createStream` calls on one connection.
    pub max_message_streams: u32,
}

impl Default for IngestLimits {
    fn default() -> Self {
        IngestLimits {
            max_message_size: 4 * 1024 * 1024,
            max_control_message_size: 64 * 1024,
            max_chunk_size: MAX_RTMP_LENGTH,
            max_buffered_bytes: 8 * 1024 * 1024,
            max_chunk_streams: 64,
            max_message_streams: 8,
        }
    }
}

/// Identifies a pending publish request, for [`IngestSession::accept_publish`] and
/// [`IngestSession::reject_publish`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublishRequestId(u32);

/// The publishing type the client asked for (`publish(name, type)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishMode {
    /// `live`: nothing is recorded by the client's request (OBS, ffmpeg, WeChat).
    Live,
    /// `record`: the client asks for a new recording.
    Record,
    /// `append`: the client asks to append to a recording.
    Append,
}

/// Stream properties from `@setDataFrame`/`onMetaData`, as far as the encoder sent them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IngestMetadata {
    /// `width`, in pixels.
    pub width: Option<u32>,
    /// `height`, in pixels.
    pub height: Option<u32>,
    /// `framerate` (frames per second).
    pub framerate: Option<f64>,
    /// `videocodecid`: an FLV codec id (7 = AVC/H.264, 12 = HEVC by convention) or, for
    /// Enhanced RTMP / a string value, the FourCC as a big-endian `u32`
    /// (`u32::from_be_bytes(*b"hvc1")`).
    pub video_codec: Option<u32>,
    /// `videodatarate`, in kbit/s.
    pub video_bitrate_kbps: Option<f64>,
    /// `audiocodecid`: an FLV sound format (10 = AAC, 2 = MP3) or a FourCC as above.
    pub audio_codec: Option<u32>,
    /// `audiodatarate`, in kbit/s.
    pub audio_bitrate_kbps: Option<f64>,
    /// `audiosamplerate`, in Hz.
    pub audio_sample_rate: Option<u32>,
    /// `audiochannels`.
    pub audio_channels: Option<u32>,
    /// `stereo`.
    pub stereo: Option<bool>,
    /// `encoder` (e.g. `obs-output module (libobs version 30.0.2)`, `Lavf59.27.100`).
    pub encoder: Option<String>,
}

/// What an ingest connection reports to its driver.
#[derive(Debug, Clone)]
pub enum IngestEvent {
    /// The client asked to publish; answer with [`IngestSession::accept_publish`] or
    /// [`IngestSession::reject_publish`]. Media is ignored (and counted) until accepted.
    /// Every `PublishRequested` ends with either the driver's rejection or exactly one
    /// [`IngestEvent::PublishFinished`].
    PublishRequested {
        /// Pass this back to accept or reject.
        request: PublishRequestId,
        /// The application (`live`), without any `?query`.
        app: String,
        /// The stream name before any `?` (the room, or the key when the client put the
        /// key there).
        stream_name: String,
        /// The `key=` query parameter of the stream name (percent-decoded), else of the
        /// application (`rtmp://HOST/live?key=…`), else `None`.
        query_key: Option<String>,
        /// The publishing type.
        mode: PublishMode,
    },
    /// The client connected to another application than [`INGEST_APP`]: the connect was
    /// rejected with the reason (then [`IngestEvent::Closed`] follows).
    ConnectRejected {
        /// The application it asked for (at most 64 characters).
        app: String,
    },
    /// `@setDataFrame`/`onMetaData` on the accepted stream.
    Metadata(IngestMetadata),
    /// An audio or video message of the accepted stream: `body` is the RTMP message
    /// payload (= the FLV tag body), `timestamp_ms` its RTMP timestamp (extended
    /// timestamps resolved), `received_at` the `now` of the input that completed it.
    Media(NativeFrame),
    /// The publish ended: `FCUnpublish`, `closeStream` or `deleteStream`, or the
    /// connection ended (EOF, error) while a publish was requested or accepted.
    PublishFinished,
    /// The session is over (rejected, failed, or the peer closed): flush the output and
    /// close the connection. Emitted once.
    Closed,
}

/// Counters of one ingest connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngestStats {
    /// Bytes received after the handshake.
    pub bytes_received: u64,
    /// Complete RTMP messages received.
    pub messages: u64,
    /// Audio/video messages delivered as [`IngestEvent::Media`].
    pub media_frames: u64,
    /// Audio/video (and metadata) messages ignored: before the publish was accepted, after
    /// it finished, on another message stream, or empty.
    pub media_ignored: u64,
    /// Messages of types we do not handle, unknown commands, undecodable data messages.
    pub messages_ignored: u64,
    /// Unfinished messages dropped because a new message started on their chunk stream
    /// or the peer sent Abort.
    pub partial_messages_dropped: u64,
    /// Acknowledgements sent.
    pub acks_sent: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Publish {
    /// No publish requested yet.
    Idle,
    /// `PublishRequested` emitted, waiting for the driver.
    Pending { request: u32, stream_id: u32 },
    /// Accepted: media on `stream_id` is delivered.
    Active { stream_id: u32 },
    /// Rejected or finished; a second publish on this connection is refused.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Handshaking,
    Running,
    /// Rejected: waiting for the driver to flush and close; input is ignored.
    Closing,
    /// Failed or ended: input is an error.
    Closed,
}

/// The server side of one RTMP ingest connection (see the module documentation).
pub struct IngestSession {
    limits: IngestLimits,
    stage: Stage,
    handshake: Handshake,
    server: Option<ServerSession>,
    reader: ChunkReader,
    /// The connected application's query key (`live?key=…`), once connected.
    connected: Option<Option<String>>,
    publish: Publish,
    streams_created: u32,
    ack_window: Option<u32>,
    acked_at: u64,
    out: VecDeque<Bytes>,
    events: VecDeque<IngestEvent>,
    closed_emitted: bool,
    /// The `now` of the input being handled.
    now: Option<Instant>,
    stats: IngestStats,
}

impl std::fmt::Debug for IngestSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestSession")
            .field("stage", &self.stage)
            .field("publish", &self.publish)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl IngestSession {
    /// A session waiting for the client's C0+C1. The returned bytes are to be sent first
    /// (empty: an RTMP server speaks only after C0).
    pub fn new(limits: IngestLimits) -> (Self, Vec<u8>) {
        let session = IngestSession {
            limits,
            stage: Stage::Handshaking,
            handshake: Handshake::new(PeerType::Server),
            server: None,
            reader: ChunkReader::new(),
            connected: None,
            publish: Publish::Idle,
            streams_created: 0,
            ack_window: None,
            acked_at: 0,
            out: VecDeque::new(),
            events: VecDeque::new(),
            closed_emitted: false,
            now: None,
            stats: IngestStats::default(),
        };
        (session, Vec::new())
    }

    /// Handles bytes read from the connection. Never panics; on an error the session is
    /// over ([`IngestEvent::Closed`] is queued, [`Self::should_close`] is true) and later
    /// input is refused. Input after a rejection is ignored.
    pub fn handle_input(&mut self, bytes: &[u8], now: Instant) -> Result<(), BridgeError> {
        match self.stage {
            Stage::Closed => return Err(BridgeError::RtmpIngestClosed),
            Stage::Closing => return Ok(()),
            Stage::Handshaking | Stage::Running => {}
        }
        self.now = Some(now);
        let result = self.process(bytes);
        if let Err(err) = &result {
            tracing::debug!(%err, "RTMP ingest connection failed");
            self.end(Stage::Closed);
        }
        result
    }

    /// The peer closed its side of the connection (EOF): ends a requested or accepted
    /// publish ([`IngestEvent::PublishFinished`]) and the session ([`IngestEvent::Closed`]).
    pub fn handle_eof(&mut self) {
        self.end(Stage::Closed);
    }

    /// The next bytes to write to the connection, in order.
    pub fn poll_output(&mut self) -> Option<Bytes> {
        self.out.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<IngestEvent> {
        self.events.pop_front()
    }

    /// Whether the handshake is complete (the driver enforces its deadline).
    pub fn handshake_done(&self) -> bool {
        self.stage != Stage::Handshaking
    }

    /// Whether the driver should flush the output and close the connection (after a
    /// rejection, an error or EOF).
    pub fn should_close(&self) -> bool {
        matches!(self.stage, Stage::Closing | Stage::Closed)
    }

    /// The connection's counters.
    pub fn stats(&self) -> &IngestStats {
        &self.stats
    }

    /// Accepts a pending publish request: the client gets `NetStream.Publish.Start` and
    /// its media is delivered from now on. A stale request id is ignored.
    pub fn accept_publish(&mut self, request: PublishRequestId) {
        let Publish::Pending {
            request: pending,
            stream_id,
        } = self.publish
        else {
            return;
        };
        if pending != request.0 || self.stage != Stage::Running {
            return;
        }
        let Some(server) = self.server.as_mut() else {
            return;
        };
        match server.accept_request(pending) {
            Ok(results) => {
                self.publish = Publish::Active { stream_id };
                self.apply(results);
            }
            Err(err) => {
                // The client deleted the stream while we were deciding.
                tracing::debug!(%err, "RTMP ingest: publish could not be accepted");
                self.end(Stage::Closed);
            }
        }
    }

    /// Rejects a pending publish request: the client gets `onStatus`
    /// `NetStream.Publish.BadName` (level `error`) with `reason` as its description, which
    /// ffmpeg and OBS print; then the session closes ([`Self::should_close`]). A stale
    /// request id is ignored.
    pub fn reject_publish(&mut self, request: PublishRequestId, reason: &str) {
        let Publish::Pending {
            request: pending,
            stream_id,
        } = self.publish
        else {
            return;
        };
        if pending != request.0 || self.stage != Stage::Running {
            return;
        }
        self.publish = Publish::Done;
        self.send_status(stream_id, "NetStream.Publish.BadName", reason);
        self.end(Stage::Closing);
    }

    /// Ends the session: finishes an open publish, queues `Closed` once.
    fn end(&mut self, stage: Stage) {
        if matches!(
            self.publish,
            Publish::Pending { .. } | Publish::Active { .. }
        ) {
            self.events.push_back(IngestEvent::PublishFinished);
        }
        if !matches!(self.publish, Publish::Idle) {
            self.publish = Publish::Done;
        }
        if self.stage != Stage::Closed {
            self.stage = stage;
        }
        if !self.closed_emitted {
            self.closed_emitted = true;
            self.events.push_back(IngestEvent::Closed);
        }
    }

    fn process(&mut self, bytes: &[u8]) -> Result<(), BridgeError> {
        if self.stage == Stage::Handshaking {
            let result = self
                .handshake
                .process_bytes(bytes)
                .map_err(|e| BridgeError::RtmpIngestHandshake(e.to_string()))?;
            match result {
                HandshakeProcessResult::InProgress { response_bytes } => {
                    self.push_out(response_bytes);
                    return Ok(());
                }
                HandshakeProcessResult::Completed {
                    response_bytes,
                    remaining_bytes,
                } => {
                    self.push_out(response_bytes);
                    self.start_session()?;
                    return self.process_chunks(&remaining_bytes);
                }
            }
        }
        self.process_chunks(bytes)
    }

    fn push_out(&mut self, bytes: Vec<u8>) {
        if !bytes.is_empty() {
            self.out.push_back(Bytes::from(bytes));
        }
    }

    fn start_session(&mut self) -> Result<(), BridgeError> {
        let mut config = ServerSessionConfig::new();
        config.chunk_size = OUT_CHUNK_SIZE;
        let (mut server, results) =
            ServerSession::new(config).map_err(|e| protocol(format!("session: {e}")))?;
        // `rml_rtmp`'s parser only ever sees our single-chunk messages: let a chunk be as
        // long as a message can be.
        let set_chunk_size = canonical_chunk(
            message_type::SET_CHUNK_SIZE,
            0,
            &MAX_RTMP_LENGTH.to_be_bytes(),
        );
        let more = server
            .handle_input(&set_chunk_size)
            .map_err(|e| protocol(format!("session: {e}")))?;
        self.server = Some(server);
        self.stage = Stage::Running;
        self.apply(results);
        self.apply(more);
        Ok(())
    }

    fn process_chunks(&mut self, bytes: &[u8]) -> Result<(), BridgeError> {
        self.stats.bytes_received += bytes.len() as u64;
        let mut input = bytes;
        while self.stage == Stage::Running {
            let Some(message) = self.reader.read_message(&mut input, &self.limits)? else {
                break;
            };
            self.stats.messages += 1;
            self.handle_message(message)?;
        }
        self.stats.partial_messages_dropped = self.reader.dropped;
        self.maybe_ack();
        Ok(())
    }

    fn maybe_ack(&mut self) {
        let Some(window) = self.ack_window else {
            return;
        };
        if self.stage != Stage::Running
            || self.stats.bytes_received - self.acked_at < u64::from(window)
        {
            return;
        }
        self.acked_at = self.stats.bytes_received;
        // The sequence number is the byte count modulo 2^32.
        let sequence = self.stats.bytes_received as u32;
        self.own_message(message_type::ACKNOWLEDGEMENT, 0, &sequence.to_be_bytes());
        self.stats.acks_sent += 1;
    }

    fn handle_message(&mut self, message: Message) -> Result<(), BridgeError> {
        use message_type::*;
        let data = &message.data[..];
        match message.type_id {
            SET_CHUNK_SIZE => {
                let size = read_u32(data).ok_or_else(|| protocol("short Set Chunk Size"))?;
                let size = (size & 0x7FFF_FFFF).min(MAX_RTMP_LENGTH);
                if size == 0 {
                    return Err(protocol("Set Chunk Size 0"));
                }
                if size > self.limits.max_chunk_size {
                    return Err(BridgeError::RtmpIngestLimit(format!(
                        "chunk size {size} above {}",
                        self.limits.max_chunk_size
                    )));
                }
                self.reader.chunk_size = size as usize;
            }
            ABORT => {
                let csid = read_u32(data).ok_or_else(|| protocol("short Abort"))?;
                self.reader.abort(csid);
            }
            WINDOW_ACK_SIZE => {
                let size = read_u32(data).ok_or_else(|| protocol("short Window Ack Size"))?;
                self.ack_window = Some(size.max(MIN_ACK_WINDOW));
            }
            ACKNOWLEDGEMENT | SET_PEER_BANDWIDTH => {}
            USER_CONTROL => {
                // Only a ping request needs an answer (rml_rtmp makes it); the other events
                // mean nothing to a server, and rml_rtmp fails on unknown ones.
                if data.len() >= 6 && data[..2] == [0, 6] {
                    self.forward(USER_CONTROL, 0, data)?;
                } else {
                    self.stats.messages_ignored += 1;
                }
            }
            AUDIO | VIDEO => self.handle_media(message),
            AMF0_DATA => self.handle_data(message.stream_id, data),
            AMF3_DATA => self.handle_data(message.stream_id, strip_amf3_marker(data)),
            AMF0_COMMAND => self.handle_command(message.stream_id, data)?,
            AMF3_COMMAND => self.handle_command(message.stream_id, strip_amf3_marker(data))?,
            _ => self.stats.messages_ignored += 1,
        }
        Ok(())
    }

    fn handle_media(&mut self, message: Message) {
        let active =
            matches!(self.publish, Publish::Active { stream_id } if stream_id == message.stream_id);
        let Some(received_at) = self.now.filter(|_| active && !message.data.is_empty()) else {
            self.stats.media_ignored += 1;
            return;
        };
        let kind = if message.type_id == message_type::AUDIO {
            MediaKind::Audio
        } else {
            MediaKind::Video
        };
        self.stats.media_frames += 1;
        self.events.push_back(IngestEvent::Media(NativeFrame {
            kind,
            timestamp_ms: message.timestamp,
            body: message.data,
            received_at,
        }));
    }

    fn handle_data(&mut self, stream_id: u32, data: &[u8]) {
        let Ok(values) = decode_amf0(data) else {
            self.stats.messages_ignored += 1;
            return;
        };
        let mut values = values.into_iter();
        let mut first = values.next();
        if matches!(&first, Some(Amf0Value::Utf8String(s)) if s == "@setDataFrame") {
            first = values.next();
        }
        if !matches!(&first, Some(Amf0Value::Utf8String(s)) if s == "onMetaData") {
            self.stats.messages_ignored += 1;
            return;
        }
        let properties = match values.next() {
            Some(Amf0Value::Object(properties)) => properties,
            _ => HashMap::new(),
        };
        if !matches!(self.publish, Publish::Active { stream_id: s } if s == stream_id) {
            self.stats.media_ignored += 1;
            return;
        }
        self.events
            .push_back(IngestEvent::Metadata(metadata_from(properties)));
    }

    fn handle_command(&mut self, stream_id: u32, data: &[u8]) -> Result<(), BridgeError> {
        let values = decode_amf0(data).map_err(|e| protocol(format!("AMF0 command: {e}")))?;
        let (Some(Amf0Value::Utf8String(name)), Some(Amf0Value::Number(transaction))) =
            (values.first(), values.get(1))
        else {
            return Err(protocol("AMF0 command without a name and transaction id"));
        };
        let transaction = *transaction;
        match name.as_str() {
            "connect" => self.on_connect(data, values.len()),
            "createStream" => {
                self.require_connected("createStream")?;
                if self.streams_created >= self.limits.max_message_streams {
                    return Err(BridgeError::RtmpIngestLimit(format!(
                        "more than {} createStream calls",
                        self.limits.max_message_streams
                    )));
                }
                self.streams_created += 1;
                self.forward_command(stream_id, data, values.len())?;
                Ok(())
            }
            "publish" => self.on_publish(stream_id, data, &values),
            "releaseStream" | "FCPublish" => {
                if transaction != 0.0 {
                    self.own_command(
                        0,
                        vec![
                            Amf0Value::Utf8String("_result".into()),
                            Amf0Value::Number(transaction),
                            Amf0Value::Null,
                            Amf0Value::Undefined,
                        ],
                    );
                }
                Ok(())
            }
            "FCUnpublish" => {
                self.finish_publish(None);
                Ok(())
            }
            "closeStream" | "deleteStream" => {
                // `closeStream` usually comes on the stream itself, `deleteStream` on stream
                // 0 with the stream id as argument.
                let target = match values.get(3) {
                    Some(Amf0Value::Number(id)) if name == "deleteStream" => *id as u32,
                    _ => stream_id,
                };
                self.finish_publish(Some(target));
                if name == "deleteStream" {
                    self.forward_command(stream_id, data, values.len())?;
                }
                Ok(())
            }
            "play" | "play2" => {
                self.send_status(
                    stream_id,
                    "NetStream.Play.Failed",
                    "this server only accepts publishing",
                );
                self.end(Stage::Closing);
                Ok(())
            }
            _ => {
                self.stats.messages_ignored += 1;
                Ok(())
            }
        }
    }

    fn require_connected(&self, what: &str) -> Result<(), BridgeError> {
        if self.connected.is_none() {
            return Err(protocol(format!("{what} before connect")));
        }
        Ok(())
    }

    fn on_connect(&mut self, data: &[u8], value_count: usize) -> Result<(), BridgeError> {
        if self.connected.is_some() {
            return Err(protocol("connect sent twice"));
        }
        let events = self.forward_command(0, data, value_count)?;
        for event in events {
            let ServerSessionEvent::ConnectionRequested {
                request_id,
                app_name,
            } = event
            else {
                continue;
            };
            let (app, query) = split_query(&app_name);
            let server = self.server.as_mut().ok_or_else(|| protocol("no session"))?;
            if app == INGEST_APP {
                let results = server
                    .accept_request(request_id)
                    .map_err(|e| protocol(format!("connect: {e}")))?;
                self.connected = Some(query.and_then(query_key));
                self.apply(results);
            } else {
                let reason = format!(
                    "unknown application '{}': publish to rtmp://HOST/{INGEST_APP}/ROOM?key=KEY",
                    truncate(app, 64)
                );
                let results = server
                    .reject_request(request_id, "NetConnection.Connect.Rejected", &reason)
                    .map_err(|e| protocol(format!("connect: {e}")))?;
                self.apply(results);
                self.events.push_back(IngestEvent::ConnectRejected {
                    app: truncate(app, 64).to_owned(),
                });
                self.end(Stage::Closing);
            }
            return Ok(());
        }
        Err(protocol("connect without an application name"))
    }

    fn on_publish(
        &mut self,
        stream_id: u32,
        data: &[u8],
        values: &[Amf0Value],
    ) -> Result<(), BridgeError> {
        self.require_connected("publish")?;
        if self.publish != Publish::Idle {
            self.send_status(
                stream_id,
                "NetStream.Publish.BadName",
                "this connection already published a stream",
            );
            self.end(Stage::Closing);
            return Ok(());
        }
        let events = self.forward_command(stream_id, data, values.len())?;
        for event in events {
            let ServerSessionEvent::PublishStreamRequested {
                request_id,
                app_name,
                stream_key,
                mode,
            } = event
            else {
                continue;
            };
            let (app, _) = split_query(&app_name);
            let (stream_name, query) = split_query(&stream_key);
            let query_key = query
                .and_then(query_key)
                .or_else(|| self.connected.clone().flatten());
            self.publish = Publish::Pending {
                request: request_id,
                stream_id,
            };
            self.events.push_back(IngestEvent::PublishRequested {
                request: PublishRequestId(request_id),
                app: app.to_owned(),
                stream_name: stream_name.to_owned(),
                query_key,
                mode: match mode {
                    RmlPublishMode::Live => PublishMode::Live,
                    RmlPublishMode::Record => PublishMode::Record,
                    RmlPublishMode::Append => PublishMode::Append,
                },
            });
            return Ok(());
        }
        // rml_rtmp answered with an error (bad arguments): nothing more will happen here.
        self.publish = Publish::Done;
        self.end(Stage::Closing);
        Ok(())
    }

    /// Ends the publish if it is on `stream_id` (any stream when `None`).
    fn finish_publish(&mut self, stream_id: Option<u32>) {
        let open = match self.publish {
            Publish::Pending { stream_id: s, .. } | Publish::Active { stream_id: s } => s,
            Publish::Idle | Publish::Done => return,
        };
        if stream_id.is_none_or(|s| s == open) {
            self.publish = Publish::Done;
            self.events.push_back(IngestEvent::PublishFinished);
        }
    }

    /// Hands a validated command to `rml_rtmp` (it needs at least three values: name,
    /// transaction id, command object) and returns its events.
    fn forward_command(
        &mut self,
        stream_id: u32,
        data: &[u8],
        value_count: usize,
    ) -> Result<Vec<ServerSessionEvent>, BridgeError> {
        if value_count < 3 {
            return Err(protocol("AMF0 command without a command object"));
        }
        self.forward(message_type::AMF0_COMMAND, stream_id, data)
    }

    /// Hands one message to `rml_rtmp` as a single full-header chunk.
    fn forward(
        &mut self,
        type_id: u8,
        stream_id: u32,
        data: &[u8],
    ) -> Result<Vec<ServerSessionEvent>, BridgeError> {
        let chunk = canonical_chunk(type_id, stream_id, data);
        let server = self.server.as_mut().ok_or_else(|| protocol("no session"))?;
        let results = server
            .handle_input(&chunk)
            .map_err(|e| protocol(format!("session: {e}")))?;
        Ok(self.apply(results))
    }

    /// Queues `rml_rtmp`'s packets; returns its events.
    fn apply(&mut self, results: Vec<ServerSessionResult>) -> Vec<ServerSessionEvent> {
        let mut events = Vec::new();
        for result in results {
            match result {
                ServerSessionResult::OutboundResponse(packet) => self.push_out(packet.bytes),
                ServerSessionResult::RaisedEvent(event) => events.push(event),
                ServerSessionResult::UnhandleableMessageReceived(_) => {
                    self.stats.messages_ignored += 1;
                }
            }
        }
        events
    }

    /// Sends `onStatus` with level `error`.
    fn send_status(&mut self, stream_id: u32, code: &str, reason: &str) {
        let status: HashMap<String, Amf0Value> = [
            ("level", Amf0Value::Utf8String("error".into())),
            ("code", Amf0Value::Utf8String(code.into())),
            (
                "description",
                Amf0Value::Utf8String(truncate(reason, MAX_REASON_LEN).into()),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        self.own_command(
            stream_id,
            vec![
                Amf0Value::Utf8String("onStatus".into()),
                Amf0Value::Number(0.0),
                Amf0Value::Null,
                Amf0Value::Object(status),
            ],
        );
    }

    fn own_command(&mut self, stream_id: u32, values: Vec<Amf0Value>) {
        match rml_amf0::serialize(&values) {
            Ok(payload) => self.own_message(message_type::AMF0_COMMAND, stream_id, &payload),
            Err(err) => tracing::warn!(%err, "RTMP ingest: could not encode a reply"),
        }
    }

    /// Frames a message on our own chunk stream: a full header, then type-3 continuation
    /// chunks at our announced chunk size; timestamp 0.
    fn own_message(&mut self, type_id: u8, stream_id: u32, payload: &[u8]) {
        let chunk_size = OUT_CHUNK_SIZE as usize;
        let mut buf = BytesMut::with_capacity(12 + payload.len() + payload.len() / chunk_size);
        buf.put_u8(OWN_CSID);
        buf.put_slice(&[0, 0, 0]);
        put_u24(&mut buf, payload.len() as u32);
        buf.put_u8(type_id);
        buf.put_u32_le(stream_id);
        for (i, piece) in payload.chunks(chunk_size).enumerate() {
            if i > 0 {
                buf.put_u8(0xC0 | OWN_CSID);
            }
            buf.put_slice(piece);
        }
        self.out.push_back(buf.freeze());
    }
}

fn protocol(message: impl Into<String>) -> BridgeError {
    BridgeError::RtmpIngestProtocol(message.into())
}

fn read_u32(data: &[u8]) -> Option<u32> {
    let bytes: [u8; 4] = data.get(..4)?.try_into().ok()?;
    Some(u32::from_be_bytes(bytes))
}

fn put_u24(buf: &mut BytesMut, value: u32) {
    buf.put_slice(&value.to_be_bytes()[1..]);
}

/// AMF3-typed messages (15, 17) from Flash-era clients are AMF0 after a 0 byte.
fn strip_amf3_marker(data: &[u8]) -> &[u8] {
    match data.first() {
        Some(0) => &data[1..],
        _ => data,
    }
}

/// One message framed for `rml_rtmp`'s parser: full header on one chunk stream,
/// timestamp 0, the whole payload in one chunk (its chunk size is set to the maximum).
fn canonical_chunk(type_id: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
    let mut buf = BytesMut::with_capacity(12 + payload.len());
    buf.put_u8(CANONICAL_CSID);
    buf.put_slice(&[0, 0, 0]);
    put_u24(&mut buf, payload.len() as u32);
    buf.put_u8(type_id);
    buf.put_u32_le(stream_id);
    buf.put_slice(payload);
    buf.to_vec()
}

/// `"room1?key=abc"` → `("room1", Some("key=abc"))`.
fn split_query(s: &str) -> (&str, Option<&str>) {
    match s.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (s, None),
    }
}

/// The percent-decoded value of the first `key=` parameter.
fn query_key(query: &str) -> Option<String> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("key="))
        .map(percent_decode)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn metadata_from(mut properties: HashMap<String, Amf0Value>) -> IngestMetadata {
    let mut number = |key: &str| match properties.remove(key) {
        Some(Amf0Value::Number(n)) if n.is_finite() => Some(n),
        _ => None,
    };
    let whole = |n: Option<f64>| n.filter(|n| *n >= 0.0).map(|n| n as u32);
    let width = whole(number("width"));
    let height = whole(number("height"));
    let framerate = number("framerate");
    let video_bitrate_kbps = number("videodatarate");
    let audio_bitrate_kbps = number("audiodatarate");
    let audio_sample_rate = whole(number("audiosamplerate"));
    let audio_channels = whole(number("audiochannels"));
    let codec = |value: Option<Amf0Value>| match value {
        Some(Amf0Value::Number(n)) if n.is_finite() && n >= 0.0 => Some(n as u32),
        Some(Amf0Value::Utf8String(s)) => {
            let fourcc: [u8; 4] = s.as_bytes().try_into().ok()?;
            Some(u32::from_be_bytes(fourcc))
        }
        _ => None,
    };
    IngestMetadata {
        width,
        height,
        framerate,
        video_codec: codec(properties.remove("videocodecid")),
        video_bitrate_kbps,
        audio_codec: codec(properties.remove("audiocodecid")),
        audio_bitrate_kbps,
        audio_sample_rate,
        audio_channels,
        stereo: match properties.remove("stereo") {
            Some(Amf0Value::Boolean(b)) => Some(b),
            _ => None,
        },
        encoder: match properties.remove("encoder") {
            Some(Amf0Value::Utf8String(s)) => Some(s),
            _ => None,
        },
    }
}

/// Validates with [`check_amf0`], then decodes with `rml_amf0`.
fn decode_amf0(data: &[u8]) -> Result<Vec<Amf0Value>, String> {
    check_amf0(data)?;
    let mut reader = data;
    rml_amf0::deserialize(&mut reader).map_err(|e| e.to_string())
}

enum Walked {
    Value,
    End,
}

/// Walks AMF0 values exactly as `rml_amf0` 0.3 reads them, without allocating, and refuses
/// what would make it misbehave: a string (or property name) longer than the bytes left
/// (it allocates the declared length first), nesting deeper than [`MAX_AMF_DEPTH`] (it
/// recurses), and anything it would fail on anyway (unknown markers, truncation). Input
/// that passes is read by `rml_amf0` byte for byte as here.
fn check_amf0(data: &[u8]) -> Result<(), String> {
    let mut pos = 0;
    while let Walked::Value = check_value(data, &mut pos, 0)? {}
    Ok(())
}

fn take<'a>(data: &'a [u8], pos: &mut usize, n: usize) -> Result<&'a [u8], String> {
    let end = pos
        .checked_add(n)
        .filter(|end| *end <= data.len())
        .ok_or_else(|| format!("AMF0 truncated at byte {pos}"))?;
    let bytes = &data[*pos..end];
    *pos = end;
    Ok(bytes)
}

fn take_u16(data: &[u8], pos: &mut usize) -> Result<usize, String> {
    let b = take(data, pos, 2)?;
    Ok(usize::from(u16::from_be_bytes([b[0], b[1]])))
}

fn check_value(data: &[u8], pos: &mut usize, depth: usize) -> Result<Walked, String> {
    let Some(&marker) = data.get(*pos) else {
        return Ok(Walked::End);
    };
    *pos += 1;
    match marker {
        0x00 => {
            take(data, pos, 8)?;
        }
        0x01 => {
            take(data, pos, 1)?;
        }
        0x02 => {
            let len = take_u16(data, pos)?;
            take(data, pos, len)?;
        }
        0x03 => check_object(data, pos, depth + 1)?,
        0x05 | 0x06 => {}
        0x08 => {
            take(data, pos, 4)?;
            check_object(data, pos, depth + 1)?;
        }
        0x09 => return Ok(Walked::End),
        0x0A => {
            if depth + 1 > MAX_AMF_DEPTH {
                return Err("AMF0 nested too deeply".into());
            }
            let b = take(data, pos, 4)?;
            let count = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
            for _ in 0..count {
                if let Walked::End = check_value(data, pos, depth + 1)? {
                    break;
                }
            }
        }
        other => return Err(format!("unsupported AMF0 marker {other:#04x}")),
    }
    Ok(Walked::Value)
}

fn check_object(data: &[u8], pos: &mut usize, depth: usize) -> Result<(), String> {
    if depth > MAX_AMF_DEPTH {
        return Err("AMF0 nested too deeply".into());
    }
    loop {
        let len = take_u16(data, pos)?;
        if len == 0 {
            if take(data, pos, 1)? != [0x09] {
                return Err("AMF0 object property without a name".into());
            }
            return Ok(());
        }
        take(data, pos, len)?;
        if let Walked::End = check_value(data, pos, depth)? {
            return Err("AMF0 object property without a value".into());
        }
    }
}

/// One complete RTMP message.
#[derive(Debug)]
struct Message {
    type_id: u8,
    stream_id: u32,
    timestamp: u32,
    data: Bytes,
}

/// What the last header on a chunk stream said, and the message being received on it.
#[derive(Debug, Default)]
struct ChunkStream {
    /// Timestamp of the current (or last) message.
    timestamp: u32,
    /// The last timestamp field (absolute after type 0, delta after 1/2), extended value
    /// resolved; type-3 headers that start a message add it again.
    timestamp_field: u32,
    /// Whether the last type 0/1/2 header had an extended timestamp (then type-3 headers
    /// carry one too).
    extended: bool,
    length: u32,
    type_id: u8,
    stream_id: u32,
    /// Bytes of the unfinished message on this chunk stream.
    partial: Option<BytesMut>,
}

#[derive(Debug)]
struct ChunkHeader {
    format: u8,
    csid: u32,
    /// Timestamp field (type 0/1/2) or extended timestamp (any type), resolved.
    timestamp: Option<u32>,
    /// Whether the 24-bit field was 0xFFFFFF (type 0/1/2).
    extended: bool,
    length: Option<u32>,
    type_id: Option<u8>,
    stream_id: Option<u32>,
}

/// The RTMP chunk stream parser (see the module documentation for why not `rml_rtmp`'s).
#[derive(Debug)]
struct ChunkReader {
    chunk_size: usize,
    streams: HashMap<u32, ChunkStream>,
    /// Header bytes of an incomplete header.
    pending: [u8; MAX_CHUNK_HEADER],
    pending_len: usize,
    /// Inside a chunk's payload: its chunk stream and the bytes left in the chunk.
    payload: Option<(u32, usize)>,
    /// Bytes held in unfinished messages.
    buffered: usize,
    /// Unfinished messages dropped.
    dropped: u64,
}

impl ChunkReader {
    fn new() -> Self {
        ChunkReader {
            chunk_size: 128,
            streams: HashMap::new(),
            pending: [0; MAX_CHUNK_HEADER],
            pending_len: 0,
            payload: None,
            buffered: 0,
            dropped: 0,
        }
    }

    /// Consumes `input` until a message completes (returned) or the input is used up
    /// (`None`). Call again with the rest after handling the message (it may change the
    /// chunk size).
    fn read_message(
        &mut self,
        input: &mut &[u8],
        limits: &IngestLimits,
    ) -> Result<Option<Message>, BridgeError> {
        loop {
            if let Some((csid, remaining)) = self.payload {
                if input.is_empty() {
                    return Ok(None);
                }
                let n = remaining.min(input.len());
                let (piece, rest) = input.split_at(n);
                *input = rest;
                self.buffered += n;
                if self.buffered > limits.max_buffered_bytes {
                    return Err(BridgeError::RtmpIngestLimit(format!(
                        "more than {} bytes in unfinished messages",
                        limits.max_buffered_bytes
                    )));
                }
                let Some(stream) = self.streams.get_mut(&csid) else {
                    return Err(protocol("chunk payload on an unknown chunk stream"));
                };
                let Some(partial) = stream.partial.as_mut() else {
                    return Err(protocol("chunk payload without a message"));
                };
                partial.extend_from_slice(piece);
                if n < remaining {
                    self.payload = Some((csid, remaining - n));
                    return Ok(None);
                }
                self.payload = None;
                if partial.len() >= stream.length as usize {
                    let data = stream.partial.take().unwrap_or_default().freeze();
                    self.buffered -= data.len();
                    return Ok(Some(Message {
                        type_id: stream.type_id,
                        stream_id: stream.stream_id,
                        timestamp: stream.timestamp,
                        data,
                    }));
                }
                continue;
            }
            let Some(header) = self.take_header(input)? else {
                return Ok(None);
            };
            if let Some(message) = self.start_chunk(header, limits)? {
                return Ok(Some(message));
            }
        }
    }

    /// Discards the unfinished message on `csid` (Abort).
    fn abort(&mut self, csid: u32) {
        if let Some(partial) = self.streams.get_mut(&csid).and_then(|s| s.partial.take()) {
            self.buffered -= partial.len();
            self.dropped += 1;
        }
    }

    fn take_header(&mut self, input: &mut &[u8]) -> Result<Option<ChunkHeader>, BridgeError> {
        if self.pending_len == 0 {
            return match parse_header(input, &self.streams)? {
                Some((header, used)) => {
                    *input = &input[used..];
                    Ok(Some(header))
                }
                None => {
                    // Shorter than a header (at most 17 bytes): keep it.
                    let n = input.len().min(MAX_CHUNK_HEADER);
                    self.pending[..n].copy_from_slice(&input[..n]);
                    self.pending_len = n;
                    *input = &input[n..];
                    Ok(None)
                }
            };
        }
        let old = self.pending_len;
        let n = (MAX_CHUNK_HEADER - old).min(input.len());
        self.pending[old..old + n].copy_from_slice(&input[..n]);
        let available = old + n;
        match parse_header(&self.pending[..available], &self.streams)? {
            Some((header, used)) => {
                // The header did not fit in the `old` bytes, so it takes some new ones.
                let from_input = used
                    .checked_sub(old)
                    .ok_or_else(|| protocol("chunk header parser went backwards"))?;
                *input = &input[from_input..];
                self.pending_len = 0;
                Ok(Some(header))
            }
            None => {
                self.pending_len = available;
                *input = &input[n..];
                Ok(None)
            }
        }
    }

    /// Applies a header; returns a message when it is complete already (length 0).
    fn start_chunk(
        &mut self,
        header: ChunkHeader,
        limits: &IngestLimits,
    ) -> Result<Option<Message>, BridgeError> {
        if !self.streams.contains_key(&header.csid) {
            if self.streams.len() >= limits.max_chunk_streams {
                return Err(BridgeError::RtmpIngestLimit(format!(
                    "more than {} chunk streams",
                    limits.max_chunk_streams
                )));
            }
            self.streams.insert(header.csid, ChunkStream::default());
        }
        let Some(stream) = self.streams.get_mut(&header.csid) else {
            return Err(protocol("chunk stream vanished"));
        };
        let continuation = header.format == 3 && stream.partial.is_some();
        if !continuation {
            if let Some(partial) = stream.partial.take() {
                self.buffered -= partial.len();
                self.dropped += 1;
            }
            match header.format {
                0 => {
                    stream.timestamp = header.timestamp.unwrap_or(0);
                    stream.timestamp_field = stream.timestamp;
                    stream.extended = header.extended;
                }
                1 | 2 => {
                    let delta = header.timestamp.unwrap_or(0);
                    stream.timestamp = stream.timestamp.wrapping_add(delta);
                    stream.timestamp_field = delta;
                    stream.extended = header.extended;
                }
                _ => {
                    if let Some(extended) = header.timestamp {
                        stream.timestamp_field = extended;
                    }
                    stream.timestamp = stream.timestamp.wrapping_add(stream.timestamp_field);
                }
            }
            if let Some(length) = header.length {
                stream.length = length;
            }
            if let Some(type_id) = header.type_id {
                stream.type_id = type_id;
            }
            if let Some(stream_id) = header.stream_id {
                stream.stream_id = stream_id;
            }
            let media = matches!(stream.type_id, message_type::AUDIO | message_type::VIDEO);
            let limit = if media {
                limits.max_message_size
            } else {
                limits.max_control_message_size
            };
            let length = stream.length as usize;
            if length > limit {
                return Err(BridgeError::RtmpIngestLimit(format!(
                    "message of {length} bytes (type {}) above {limit}",
                    stream.type_id
                )));
            }
            if length == 0 {
                return Ok(Some(Message {
                    type_id: stream.type_id,
                    stream_id: stream.stream_id,
                    timestamp: stream.timestamp,
                    data: Bytes::new(),
                }));
            }
            let capacity = length
                .min(self.chunk_size)
                .min(MAX_INITIAL_MESSAGE_CAPACITY);
            stream.partial = Some(BytesMut::with_capacity(capacity));
        }
        let received = stream.partial.as_ref().map_or(0, |p| p.len());
        let left = (stream.length as usize).saturating_sub(received);
        if left == 0 {
            return Err(protocol("chunk for a complete message"));
        }
        self.payload = Some((header.csid, left.min(self.chunk_size)));
        Ok(None)
    }
}

/// Parses one chunk header from the start of `buf`; `None` if `buf` is too short.
fn parse_header(
    buf: &[u8],
    streams: &HashMap<u32, ChunkStream>,
) -> Result<Option<(ChunkHeader, usize)>, BridgeError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let format = first >> 6;
    let (csid, mut pos) = match first & 0x3F {
        0 => match buf.get(1) {
            Some(&b) => (64 + u32::from(b), 2),
            None => return Ok(None),
        },
        1 => match (buf.get(1), buf.get(2)) {
            (Some(&lo), Some(&hi)) => (64 + u32::from(lo) + 256 * u32::from(hi), 3),
            _ => return Ok(None),
        },
        n => (u32::from(n), 1),
    };
    let previous = streams.get(&csid);
    if format != 0 && previous.is_none() {
        return Err(protocol(format!(
            "chunk header type {format} on chunk stream {csid} without a previous header"
        )));
    }
    let header_len = match format {
        0 => 11,
        1 => 7,
        2 => 3,
        _ => 0,
    };
    let Some(fields) = buf.get(pos..pos + header_len) else {
        return Ok(None);
    };
    pos += header_len;
    let u24 = |b: &[u8]| u32::from_be_bytes([0, b[0], b[1], b[2]]);
    let mut header = ChunkHeader {
        format,
        csid,
        timestamp: None,
        extended: false,
        length: None,
        type_id: None,
        stream_id: None,
    };
    if format <= 2 {
        let field = u24(&fields[0..3]);
        header.timestamp = Some(field);
        header.extended = field == EXTENDED_TIMESTAMP;
    }
    if format <= 1 {
        header.length = Some(u24(&fields[3..6]));
        header.type_id = Some(fields[6]);
    }
    if format == 0 {
        header.stream_id = Some(u32::from_le_bytes([
            fields[7], fields[8], fields[9], fields[10],
        ]));
    }
    let has_extended = if format <= 2 {
        header.extended
    } else {
        previous.is_some_and(|p| p.extended)
    };
    if has_extended {
        let Some(b) = buf.get(pos..pos + 4) else {
            return Ok(None);
        };
        header.timestamp = Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        pos += 4;
    }
    Ok(Some((header, pos)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rml_rtmp::chunk_io::ChunkDeserializer;
    use rml_rtmp::sessions::{
        ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult,
        PublishRequestType, StreamMetadata,
    };
    use rml_rtmp::time::RtmpTimestamp;

    /// Decodes what the server sends, independently of the client session, to read
    /// status descriptions.
    struct Observer {
        chunks: ChunkDeserializer,
        commands: Vec<Vec<Amf0Value>>,
    }

    impl Observer {
        fn feed(&mut self, mut data: &[u8]) {
            while let Some(message) = self.chunks.get_next_message(data).expect("server chunks") {
                data = &[];
                match message.type_id {
                    1 => {
                        let size = read_u32(&message.data).expect("chunk size");
                        self.chunks.set_max_chunk_size(size as usize).expect("size");
                    }
                    20 => {
                        let mut reader = &message.data[..];
                        self.commands
                            .push(rml_amf0::deserialize(&mut reader).expect("server AMF0"));
                    }
                    _ => {}
                }
            }
        }

        /// The `description` of the first status object with `code`.
        fn description(&self, code: &str) -> Option<String> {
            self.commands.iter().flatten().find_map(|value| {
                let Amf0Value::Object(props) = value else {
                    return None;
                };
                match (props.get("code"), props.get("description")) {
                    (Some(Amf0Value::Utf8String(c)), Some(Amf0Value::Utf8String(d)))
                        if c == code =>
                    {
                        Some(d.clone())
                    }
                    _ => None,
                }
            })
        }
    }

    /// An `IngestSession` and an `rml_rtmp` client session wired together in memory.
    struct Pair {
        server: IngestSession,
        client: ClientSession,
        to_server: Vec<u8>,
        /// Everything the client sent, handshake included (a fuzz seed).
        transcript: Vec<u8>,
        client_events: Vec<ClientSessionEvent>,
        server_events: Vec<IngestEvent>,
        observer: Observer,
        now: Instant,
        /// Input pieces handed to the server at once.
        piece: usize,
    }

    impl Pair {
        fn new(piece: usize) -> Pair {
            let (mut server, initial) = IngestSession::new(IngestLimits::default());
            assert!(initial.is_empty());
            let now = Instant::now();
            let mut handshake = Handshake::new(PeerType::Client);
            let c0c1 = handshake.generate_outbound_p0_and_p1().unwrap();
            let mut transcript = c0c1.clone();
            feed(&mut server, &c0c1, piece, now).unwrap();
            assert!(!server.handshake_done());
            let s0s1s2 = drain(&mut server);
            let HandshakeProcessResult::Completed {
                response_bytes: c2,
                remaining_bytes,
            } = handshake.process_bytes(&s0s1s2).unwrap()
            else {
                panic!("client handshake incomplete");
            };
            assert!(remaining_bytes.is_empty());
            transcript.extend_from_slice(&c2);
            feed(&mut server, &c2, piece, now).unwrap();
            assert!(server.handshake_done());
            let (client, results) = ClientSession::new(ClientSessionConfig::new()).unwrap();
            let mut pair = Pair {
                server,
                client,
                to_server: Vec::new(),
                transcript,
                client_events: Vec::new(),
                server_events: Vec::new(),
                observer: Observer {
                    chunks: ChunkDeserializer::new(),
                    commands: Vec::new(),
                },
                now,
                piece,
            };
            pair.client_results(results);
            pair
        }

        fn connected(piece: usize, app: &str) -> Pair {
            let mut pair = Pair::new(piece);
            let connect = pair.client.request_connection(app.to_owned()).unwrap();
            pair.client_results(vec![connect]);
            pair.pump();
            pair
        }

        /// Connected to `live`, publish requested for `key`.
        fn publish_requested(piece: usize, key: &str) -> (Pair, PublishRequestId) {
            let mut pair = Pair::connected(piece, "live");
            assert!(
                pair.client_events
                    .contains(&ClientSessionEvent::ConnectionRequestAccepted),
                "{:?}",
                pair.client_events
            );
            let publish = pair
                .client
                .request_publishing(key.to_owned(), PublishRequestType::Live)
                .unwrap();
            pair.client_results(vec![publish]);
            pair.pump();
            let request = pair
                .server_events
                .iter()
                .find_map(|e| match e {
                    IngestEvent::PublishRequested { request, .. } => Some(*request),
                    _ => None,
                })
                .expect("PublishRequested");
            (pair, request)
        }

        fn publishing(piece: usize) -> Pair {
            let (mut pair, request) = Pair::publish_requested(piece, "room1?key=abc");
            pair.server.accept_publish(request);
            pair.pump();
            assert!(
                pair.client_events
                    .contains(&ClientSessionEvent::PublishRequestAccepted),
                "{:?}",
                pair.client_events
            );
            pair.server_events.clear();
            pair
        }

        fn client_results(&mut self, results: Vec<ClientSessionResult>) {
            for result in results {
                match result {
                    ClientSessionResult::OutboundResponse(packet) => {
                        self.to_server.extend_from_slice(&packet.bytes);
                    }
                    ClientSessionResult::RaisedEvent(event) => self.client_events.push(event),
                    ClientSessionResult::UnhandleableMessageReceived(_) => {}
                }
            }
        }

        fn send(&mut self, result: ClientSessionResult) {
            self.client_results(vec![result]);
            self.pump();
        }

        /// Moves bytes both ways until nothing moves.
        fn pump(&mut self) {
            loop {
                let mut moved = false;
                let from_server = drain(&mut self.server);
                if !from_server.is_empty() {
                    moved = true;
                    self.observer.feed(&from_server);
                    let results = self.client.handle_input(&from_server).unwrap();
                    self.client_results(results);
                }
                if !self.to_server.is_empty() {
                    moved = true;
                    let bytes = std::mem::take(&mut self.to_server);
                    self.transcript.extend_from_slice(&bytes);
                    feed(&mut self.server, &bytes, self.piece, self.now).unwrap();
                }
                while let Some(event) = self.server.poll_event() {
                    self.server_events.push(event);
                }
                if !moved {
                    return;
                }
            }
        }

        fn media(&self) -> Vec<(MediaKind, u32, Bytes)> {
            self.server_events
                .iter()
                .filter_map(|e| match e {
                    IngestEvent::Media(f) => Some((f.kind, f.timestamp_ms, f.body.clone())),
                    _ => None,
                })
                .collect()
        }
    }

    fn feed(
        server: &mut IngestSession,
        bytes: &[u8],
        piece: usize,
        now: Instant,
    ) -> Result<(), BridgeError> {
        for part in bytes.chunks(piece.max(1)) {
            server.handle_input(part, now)?;
        }
        Ok(())
    }

    fn drain(server: &mut IngestSession) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(bytes) = server.poll_output() {
            out.extend_from_slice(&bytes);
        }
        out
    }

    fn events(server: &mut IngestSession) -> Vec<IngestEvent> {
        std::iter::from_fn(|| server.poll_event()).collect()
    }

    /// A message as raw chunks: full header, type-3 continuations at `chunk_size`.
    fn raw_message(
        csid: u8,
        type_id: u8,
        stream_id: u32,
        timestamp: u32,
        payload: &[u8],
        chunk_size: usize,
    ) -> Vec<u8> {
        let mut buf = BytesMut::new();
        buf.put_u8(csid);
        put_u24(&mut buf, timestamp.min(EXTENDED_TIMESTAMP));
        put_u24(&mut buf, payload.len() as u32);
        buf.put_u8(type_id);
        buf.put_u32_le(stream_id);
        if timestamp >= EXTENDED_TIMESTAMP {
            buf.put_u32(timestamp);
        }
        for (i, piece) in payload.chunks(chunk_size).enumerate() {
            if i > 0 {
                buf.put_u8(0xC0 | csid);
                if timestamp >= EXTENDED_TIMESTAMP {
                    buf.put_u32(timestamp);
                }
            }
            buf.put_slice(piece);
        }
        buf.to_vec()
    }

    fn amf(values: &[Amf0Value]) -> Vec<u8> {
        rml_amf0::serialize(&values.to_vec()).unwrap()
    }

    fn command(name: &str, transaction: f64, rest: &[Amf0Value]) -> Vec<u8> {
        let mut values = vec![
            Amf0Value::Utf8String(name.into()),
            Amf0Value::Number(transaction),
        ];
        values.extend_from_slice(rest);
        amf(&values)
    }

    fn object(props: &[(&str, Amf0Value)]) -> Amf0Value {
        Amf0Value::Object(
            props
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
        )
    }

    const PLAIN_HANDSHAKE: usize = 1 + 1536 * 2;

    /// A server past a plain (non-digest) handshake.
    fn raw_session(limits: IngestLimits) -> IngestSession {
        let (mut server, _) = IngestSession::new(limits);
        let mut handshake = vec![3u8];
        handshake.resize(PLAIN_HANDSHAKE, 0);
        server.handle_input(&handshake, Instant::now()).unwrap();
        assert!(server.handshake_done());
        drain(&mut server);
        server
    }

    /// A raw server with an accepted publish on message stream 1.
    fn raw_publishing() -> IngestSession {
        let mut server = raw_session(IngestLimits::default());
        let now = Instant::now();
        let connect = command(
            "connect",
            1.0,
            &[object(&[("app", Amf0Value::Utf8String("live".into()))])],
        );
        let create = command("createStream", 2.0, &[Amf0Value::Null]);
        let publish = command(
            "publish",
            0.0,
            &[
                Amf0Value::Null,
                Amf0Value::Utf8String("room9".into()),
                Amf0Value::Utf8String("live".into()),
            ],
        );
        let mut bytes = raw_message(3, 20, 0, 0, &connect, 128);
        bytes.extend(raw_message(3, 20, 0, 0, &create, 128));
        bytes.extend(raw_message(8, 20, 1, 0, &publish, 128));
        server.handle_input(&bytes, now).unwrap();
        let request = events(&mut server)
            .into_iter()
            .find_map(|e| match e {
                IngestEvent::PublishRequested {
                    request,
                    stream_name,
                    query_key,
                    ..
                } => {
                    assert_eq!((stream_name.as_str(), query_key), ("room9", None));
                    Some(request)
                }
                _ => None,
            })
            .expect("PublishRequested");
        server.accept_publish(request);
        drain(&mut server);
        server
    }

    fn video(len: usize, seed: u8) -> Bytes {
        let mut body = vec![0x27, 0x01, 0, 0, 0];
        body.extend((0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)));
        Bytes::from(body)
    }

    fn publish_flow(piece: usize) {
        let (mut pair, request) = Pair::publish_requested(piece, "room1?key=abc");
        let requested: Vec<_> = pair
            .server_events
            .iter()
            .filter_map(|e| match e {
                IngestEvent::PublishRequested {
                    app,
                    stream_name,
                    query_key,
                    mode,
                    ..
                } => Some((app.clone(), stream_name.clone(), query_key.clone(), *mode)),
                _ => None,
            })
            .collect();
        assert_eq!(
            requested,
            vec![(
                "live".to_owned(),
                "room1".to_owned(),
                Some("abc".to_owned()),
                PublishMode::Live
            )]
        );
        pair.server.accept_publish(request);
        pair.pump();
        assert!(
            pair.client_events
                .contains(&ClientSessionEvent::PublishRequestAccepted),
            "{:?}",
            pair.client_events
        );

        let mut metadata = StreamMetadata::new();
        metadata.video_width = Some(1280);
        metadata.video_height = Some(720);
        metadata.video_frame_rate = Some(30.0);
        metadata.video_codec_id = Some(7);
        metadata.audio_codec_id = Some(10);
        metadata.audio_sample_rate = Some(48_000);
        metadata.audio_channels = Some(2);
        metadata.encoder = Some("test-encoder".into());
        let packet = pair.client.publish_metadata(&metadata).unwrap();
        pair.send(packet);
        let got = pair
            .server_events
            .iter()
            .find_map(|e| match e {
                IngestEvent::Metadata(m) => Some(m.clone()),
                _ => None,
            })
            .expect("Metadata");
        assert_eq!(
            (got.width, got.height, got.framerate),
            (Some(1280), Some(720), Some(30.0))
        );
        assert_eq!((got.video_codec, got.audio_codec), (Some(7), Some(10)));
        assert_eq!(
            (got.audio_sample_rate, got.audio_channels),
            (Some(48_000), Some(2))
        );
        assert_eq!(got.encoder.as_deref(), Some("test-encoder"));

        let mut sent = Vec::new();
        let frames = [
            (
                MediaKind::Video,
                0,
                Bytes::from_static(&[0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f]),
            ),
            (
                MediaKind::Audio,
                0,
                Bytes::from_static(&[0xAF, 0, 0x11, 0x90]),
            ),
            (MediaKind::Video, 33, video(100_000, 1)),
            (
                MediaKind::Audio,
                21,
                Bytes::from_static(&[0xAF, 1, 0x21, 0x10, 0x04]),
            ),
            (MediaKind::Video, 66, video(50, 2)),
            // Extended timestamps (≥ 0xFFFFFF), with a multi-chunk message.
            (MediaKind::Video, 0x0100_0000, video(9000, 3)),
            (MediaKind::Video, 0x0100_0028, video(10, 4)),
            (
                MediaKind::Audio,
                0x0100_0030,
                Bytes::from_static(&[0xAF, 1, 0x42]),
            ),
        ];
        for (kind, ts, body) in frames {
            let result = match kind {
                MediaKind::Video => {
                    pair.client
                        .publish_video_data(body.clone(), RtmpTimestamp::new(ts), false)
                }
                MediaKind::Audio => {
                    pair.client
                        .publish_audio_data(body.clone(), RtmpTimestamp::new(ts), false)
                }
            }
            .unwrap();
            pair.send(result);
            sent.push((kind, ts, body));
        }
        assert_eq!(pair.media(), sent);
        assert_eq!(pair.server.stats().media_frames, sent.len() as u64);
        assert_eq!(pair.server.stats().media_ignored, 0);

        let stop = pair.client.stop_publishing().unwrap();
        pair.client_results(stop);
        pair.pump();
        let finished = pair
            .server_events
            .iter()
            .filter(|e| matches!(e, IngestEvent::PublishFinished))
            .count();
        assert_eq!(finished, 1);
        assert!(!pair.server.should_close());
        pair.server.handle_eof();
        let tail = events(&mut pair.server);
        assert!(matches!(tail.as_slice(), [IngestEvent::Closed]), "{tail:?}");
        assert!(pair.server.should_close());
        assert!(matches!(
            pair.server.handle_input(&[1], pair.now),
            Err(BridgeError::RtmpIngestClosed)
        ));
    }

    #[test]
    fn publish_is_requested_accepted_and_media_flows() {
        publish_flow(usize::MAX);
    }

    #[test]
    fn byte_at_a_time_input_gives_the_same_session() {
        publish_flow(1);
        publish_flow(7);
    }

    #[test]
    fn acknowledges_the_clients_window() {
        let mut pair = Pair::publishing(4096);
        // rml_rtmp's client asks for an acknowledgement every 2.5 MB.
        for i in 0..30u32 {
            let frame = pair
                .client
                .publish_video_data(video(100_000, i as u8), RtmpTimestamp::new(i * 33), false)
                .unwrap();
            pair.send(frame);
        }
        assert_eq!(pair.media().len(), 30);
        assert_eq!(pair.server.stats().acks_sent, 1);
        assert!(
            pair.client_events
                .iter()
                .any(|e| matches!(e, ClientSessionEvent::AcknowledgementReceived { .. })),
            "{:?}",
            pair.client_events
        );
    }

    #[test]
    fn rejected_publish_tells_the_client_why() {
        let (mut pair, request) = Pair::publish_requested(usize::MAX, "room1?key=wrong");
        pair.server
            .reject_publish(request, "invalid stream key for room1");
        pair.pump();
        assert!(
            pair.client_events
                .contains(&ClientSessionEvent::UnhandleableOnStatusCode {
                    code: "NetStream.Publish.BadName".into()
                }),
            "{:?}",
            pair.client_events
        );
        assert_eq!(
            pair.observer
                .description("NetStream.Publish.BadName")
                .as_deref(),
            Some("invalid stream key for room1")
        );
        assert!(pair.server.should_close());
        assert!(matches!(
            pair.server_events.last(),
            Some(IngestEvent::Closed)
        ));
        assert!(
            !pair
                .server_events
                .iter()
                .any(|e| matches!(e, IngestEvent::PublishFinished))
        );
        // Media sent before the client noticed is ignored; the session stays quiet.
        let frame = pair
            .client
            .publish_video_data(video(10, 0), RtmpTimestamp::new(0), false);
        assert!(frame.is_err(), "the client is not publishing");
        assert!(pair.server.handle_input(&[0xC4; 20], pair.now).is_ok());
        assert!(pair.server.poll_event().is_none());
        // A second answer is ignored.
        pair.server.accept_publish(request);
        assert!(pair.server.poll_output().is_none());
    }

    #[test]
    fn wrong_application_is_rejected() {
        let pair = Pair::connected(usize::MAX, "vod");
        let description = pair
            .client_events
            .iter()
            .find_map(|e| match e {
                ClientSessionEvent::ConnectionRequestRejected { description } => {
                    Some(description.clone())
                }
                _ => None,
            })
            .expect("connect rejected");
        assert!(
            description.contains("unknown application 'vod'"),
            "{description}"
        );
        assert!(
            pair.observer
                .description("NetConnection.Connect.Rejected")
                .is_some()
        );
        assert!(pair.server.should_close());
        assert!(matches!(
            pair.server_events.as_slice(),
            [IngestEvent::ConnectRejected { app }, IngestEvent::Closed] if app == "vod"
        ));
    }

    #[test]
    fn key_may_come_in_the_application_query() {
        let (pair, _) = {
            let mut pair = Pair::connected(usize::MAX, "live?key=s%3Dcret");
            let publish = pair
                .client
                .request_publishing("room2".into(), PublishRequestType::Live)
                .unwrap();
            pair.send(publish);
            (pair, ())
        };
        let found = pair.server_events.iter().find_map(|e| match e {
            IngestEvent::PublishRequested {
                app,
                stream_name,
                query_key,
                ..
            } => Some((app.clone(), stream_name.clone(), query_key.clone())),
            _ => None,
        });
        assert_eq!(
            found,
            Some(("live".into(), "room2".into(), Some("s=cret".into())))
        );
    }

    #[test]
    fn media_before_the_publish_is_accepted_is_ignored_and_counted() {
        let (mut pair, request) = Pair::publish_requested(usize::MAX, "room1?key=abc");
        // On a chunk stream the client does not use, so its header compression holds.
        let early = raw_message(20, 9, 1, 0, &video(10, 0), 128);
        pair.server.handle_input(&early, pair.now).unwrap();
        let early_audio = raw_message(21, 8, 1, 0, &[0xAF, 1, 2], 128);
        pair.server.handle_input(&early_audio, pair.now).unwrap();
        pair.pump();
        assert!(pair.media().is_empty());
        assert_eq!(pair.server.stats().media_ignored, 2);
        pair.server.accept_publish(request);
        pair.pump();
        let frame = pair
            .client
            .publish_video_data(video(10, 1), RtmpTimestamp::new(5), false)
            .unwrap();
        pair.send(frame);
        assert_eq!(pair.media(), vec![(MediaKind::Video, 5, video(10, 1))]);
    }

    #[test]
    fn fcunpublish_then_delete_stream_finish_once_and_eof_finishes() {
        let mut pair = Pair::publishing(usize::MAX);
        let unpublish = command(
            "FCUnpublish",
            5.0,
            &[
                Amf0Value::Null,
                Amf0Value::Utf8String("room1?key=abc".into()),
            ],
        );
        pair.server
            .handle_input(&raw_message(20, 20, 0, 0, &unpublish, 128), pair.now)
            .unwrap();
        let stop = pair.client.stop_publishing().unwrap();
        pair.client_results(stop);
        pair.pump();
        let finished = pair
            .server_events
            .iter()
            .filter(|e| matches!(e, IngestEvent::PublishFinished))
            .count();
        assert_eq!(finished, 1);

        // EOF while publishing ends the publish, then the session.
        let mut pair = Pair::publishing(usize::MAX);
        pair.server.handle_eof();
        let tail = events(&mut pair.server);
        assert!(
            matches!(
                tail.as_slice(),
                [IngestEvent::PublishFinished, IngestEvent::Closed]
            ),
            "{tail:?}"
        );
    }

    #[test]
    fn interleaved_chunk_streams_are_reassembled() {
        let mut server = raw_publishing();
        let now = Instant::now();
        let big = video(300, 9);
        let small = Bytes::from_static(&[0xAF, 1, 7, 7, 7]);
        let video_chunks = raw_message(6, 9, 1, 1000, &big, 128);
        // Header (12) + 128 bytes, then the audio message, then the rest of the video.
        let (first, rest) = video_chunks.split_at(12 + 128);
        let mut bytes = first.to_vec();
        bytes.extend(raw_message(4, 8, 1, 1001, &small, 128));
        bytes.extend_from_slice(rest);
        server.handle_input(&bytes, now).unwrap();
        let media: Vec<_> = events(&mut server)
            .into_iter()
            .filter_map(|e| match e {
                IngestEvent::Media(f) => Some((f.kind, f.timestamp_ms, f.body)),
                _ => None,
            })
            .collect();
        assert_eq!(
            media,
            vec![
                (MediaKind::Audio, 1001, small),
                (MediaKind::Video, 1000, big)
            ]
        );
        // Type 1, 2 and 3 headers add their deltas.
        let mut bytes = vec![0x46]; // type 1, csid 6
        put_u24_vec(&mut bytes, 40);
        put_u24_vec(&mut bytes, 3);
        bytes.push(9);
        bytes.extend_from_slice(&[0x27, 1, 1]);
        bytes.push(0x86); // type 2, csid 6: delta 20, same length and type
        put_u24_vec(&mut bytes, 20);
        bytes.extend_from_slice(&[0x27, 1, 2]);
        bytes.push(0xC6); // type 3: the same delta again
        bytes.extend_from_slice(&[0x27, 1, 3]);
        server.handle_input(&bytes, now).unwrap();
        let stamps: Vec<_> = events(&mut server)
            .into_iter()
            .filter_map(|e| match e {
                IngestEvent::Media(f) => Some(f.timestamp_ms),
                _ => None,
            })
            .collect();
        assert_eq!(stamps, vec![1040, 1060, 1080]);
    }

    fn put_u24_vec(buf: &mut Vec<u8>, value: u32) {
        buf.extend_from_slice(&value.to_be_bytes()[1..]);
    }

    #[test]
    fn garbage_before_the_handshake_is_an_error() {
        let (mut server, _) = IngestSession::new(IngestLimits::default());
        let result = server.handle_input(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", Instant::now());
        assert!(
            matches!(result, Err(BridgeError::RtmpIngestHandshake(_))),
            "{result:?}"
        );
        assert!(server.should_close());
        assert!(matches!(
            events(&mut server).as_slice(),
            [IngestEvent::Closed]
        ));
        assert!(matches!(
            server.handle_input(&[3], Instant::now()),
            Err(BridgeError::RtmpIngestClosed)
        ));
    }

    #[test]
    fn garbage_after_the_handshake_is_an_error() {
        let mut server = raw_session(IngestLimits::default());
        // Type 1 header on a chunk stream with no previous header.
        let result = server.handle_input(&[0x43, 0, 0, 0, 0, 0, 4, 20, 1, 2, 3, 4], Instant::now());
        assert!(
            matches!(result, Err(BridgeError::RtmpIngestProtocol(_))),
            "{result:?}"
        );
        assert!(server.should_close());

        // A command that is not AMF0.
        let mut server = raw_session(IngestLimits::default());
        let result =
            server.handle_input(&raw_message(3, 20, 0, 0, &[0xEE; 40], 128), Instant::now());
        assert!(
            matches!(result, Err(BridgeError::RtmpIngestProtocol(_))),
            "{result:?}"
        );
    }

    /// A tiny deterministic generator.
    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn random_input_never_panics() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for round in 0..400 {
            let mut server = match round % 3 {
                0 => IngestSession::new(IngestLimits::default()).0,
                1 => raw_session(IngestLimits::default()),
                _ => raw_publishing(),
            };
            for _ in 0..30 {
                let len = (xorshift(&mut seed) % 300) as usize;
                let mut data: Vec<u8> = (0..len).map(|_| xorshift(&mut seed) as u8).collect();
                // Mostly small chunk stream ids and types, so headers get past the first check.
                if let Some(first) = data.first_mut() {
                    *first &= 0xC7;
                }
                let result = server.handle_input(&data, Instant::now());
                while server.poll_output().is_some() {}
                while server.poll_event().is_some() {}
                if result.is_err() {
                    break;
                }
            }
        }
    }

    #[test]
    fn oversize_messages_are_refused_before_they_are_buffered() {
        let mut server = raw_session(IngestLimits::default());
        let mut header = vec![0x06];
        put_u24_vec(&mut header, 0);
        put_u24_vec(&mut header, 5 * 1024 * 1024);
        header.push(9);
        header.extend_from_slice(&1u32.to_le_bytes());
        let result = server.handle_input(&header, Instant::now());
        assert!(
            matches!(result, Err(BridgeError::RtmpIngestLimit(_))),
            "{result:?}"
        );

        // Commands and data are held to the control message limit.
        let mut server = raw_session(IngestLimits::default());
        let mut header = vec![0x03];
        put_u24_vec(&mut header, 0);
        put_u24_vec(&mut header, 100 * 1024);
        header.push(20);
        header.extend_from_slice(&0u32.to_le_bytes());
        let result = server.handle_input(&header, Instant::now());
        assert!(
            matches!(result, Err(BridgeError::RtmpIngestLimit(_))),
            "{result:?}"
        );
    }

    #[test]
    fn hostile_chunk_settings_are_refused() {
        let set_chunk_size = |size: u32| raw_message(2, 1, 0, 0, &size.to_be_bytes(), 128);
        let mut server = raw_session(IngestLimits::default());
        let result = server.handle_input(&set_chunk_size(0), Instant::now());
        assert!(
            matches!(result, Err(BridgeError::RtmpIngestProtocol(_))),
            "{result:?}"
        );

        let limits = IngestLimits {
            max_chunk_size: 65_536,
            ..IngestLimits::default()
        };
        let mut server = raw_session(limits);
        server
            .handle_input(&set_chunk_size(60_000), Instant::now())
            .unwrap();
        let result = server.handle_input(&set_chunk_size(1 << 20), Instant::now());
        assert!(
            matches!(result, Err(BridgeError::RtmpIngestLimit(_))),
            "{result:?}"
        );

        // 2^31 − 1 means "one chunk per message"; it costs nothing here.
        let mut server = raw_session(IngestLimits::default());
        server
            .handle_input(&set_chunk_size(0x7FFF_FFFF), Instant::now())
            .unwrap();

        // Too many chunk streams.
        let mut server = raw_session(IngestLimits::default());
        let mut bytes = Vec::new();
        for csid in 0..70u32 {
            let mut message = vec![0x01, (csid & 0xFF) as u8, 0];
            put_u24_vec(&mut message, 0);
            put_u24_vec(&mut message, 4);
            message.push(3); // Acknowledgement
            message.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1]);
            bytes.extend(message);
        }
        let result = server.handle_input(&bytes, Instant::now());
        assert!(
            matches!(result, Err(BridgeError::RtmpIngestLimit(_))),
            "{result:?}"
        );

        // Many unfinished messages on different chunk streams.
        let limits = IngestLimits {
            max_buffered_bytes: 1000,
            ..IngestLimits::default()
        };
        let mut server = raw_session(limits);
        let mut bytes = Vec::new();
        for csid in 3..13u8 {
            let message = raw_message(csid, 9, 1, 0, &[0u8; 1000], 128);
            bytes.extend_from_slice(&message[..12 + 128]);
        }
        let result = server.handle_input(&bytes, Instant::now());
        assert!(
            matches!(result, Err(BridgeError::RtmpIngestLimit(_))),
            "{result:?}"
        );

        // Abort drops an unfinished message.
        let mut server = raw_publishing();
        let message = raw_message(6, 9, 1, 0, &[0x27u8; 300], 128);
        let mut bytes = message[..12 + 128].to_vec();
        bytes.extend(raw_message(2, 2, 0, 0, &6u32.to_be_bytes(), 128));
        server.handle_input(&bytes, Instant::now()).unwrap();
        assert_eq!(server.stats().partial_messages_dropped, 1);
    }

    #[test]
    fn malformed_amf0_never_reaches_rml() {
        // rml_rtmp 0.8 panics on a command with two values.
        let mut server = raw_session(IngestLimits::default());
        let two = command("createStream", 2.0, &[]);
        let result = server.handle_input(&raw_message(3, 20, 0, 0, &two, 128), Instant::now());
        assert!(
            matches!(result, Err(BridgeError::RtmpIngestProtocol(_))),
            "{result:?}"
        );

        // Deep nesting (rml_amf0 recurses without a limit).
        let mut server = raw_session(IngestLimits::default());
        let mut deep = command("connect", 1.0, &[]);
        for _ in 0..5000 {
            deep.extend_from_slice(&[0x03, 0x00, 0x01, b'a']);
        }
        let result = server.handle_input(&raw_message(3, 20, 0, 0, &deep, 128), Instant::now());
        assert!(
            matches!(result, Err(BridgeError::RtmpIngestProtocol(_))),
            "{result:?}"
        );

        // Strings whose declared length is larger than the message (rml_amf0 would
        // allocate 64 KiB for each of these 3-byte values).
        let mut server = raw_session(IngestLimits::default());
        let mut strings = command("connect", 1.0, &[]);
        strings.extend_from_slice(&[0x0A, 0, 0, 0x10, 0]);
        for _ in 0..1000 {
            strings.extend_from_slice(&[0x02, 0xFF, 0xFF]);
        }
        let result = server.handle_input(&raw_message(3, 20, 0, 0, &strings, 128), Instant::now());
        assert!(
            matches!(result, Err(BridgeError::RtmpIngestProtocol(_))),
            "{result:?}"
        );

        // rml_rtmp 0.8 panics on `@setDataFrame` without the object; here it is ignored.
        let mut server = raw_publishing();
        for values in [
            vec![Amf0Value::Utf8String("@setDataFrame".into())],
            vec![
                Amf0Value::Utf8String("@setDataFrame".into()),
                Amf0Value::Utf8String("onMetaData".into()),
            ],
        ] {
            let data = amf(&values);
            server
                .handle_input(&raw_message(5, 18, 1, 0, &data, 128), Instant::now())
                .unwrap();
        }
        let got = events(&mut server);
        assert!(
            matches!(got.as_slice(), [IngestEvent::Metadata(m)] if *m == IngestMetadata::default()),
            "{got:?}"
        );
        assert_eq!(server.stats().messages_ignored, 1);
    }

    #[test]
    fn metadata_reads_fourcc_codecs_and_ecma_arrays() {
        let mut server = raw_publishing();
        // ffmpeg sends an ECMA array; Enhanced RTMP sends FourCC codec ids.
        let mut data = amf(&[
            Amf0Value::Utf8String("@setDataFrame".into()),
            Amf0Value::Utf8String("onMetaData".into()),
        ]);
        data.extend_from_slice(&[0x08, 0, 0, 0, 3]);
        for (key, value) in [
            ("width", Amf0Value::Number(640.0)),
            ("videocodecid", Amf0Value::Utf8String("hvc1".into())),
            ("audiocodecid", Amf0Value::Number(10.0)),
        ] {
            data.extend_from_slice(&(key.len() as u16).to_be_bytes());
            data.extend_from_slice(key.as_bytes());
            data.extend(amf(&[value]));
        }
        data.extend_from_slice(&[0, 0, 9]);
        server
            .handle_input(&raw_message(5, 18, 1, 0, &data, 128), Instant::now())
            .unwrap();
        let got = events(&mut server);
        let [IngestEvent::Metadata(m)] = got.as_slice() else {
            panic!("{got:?}");
        };
        assert_eq!(m.width, Some(640));
        assert_eq!(m.video_codec, Some(u32::from_be_bytes(*b"hvc1")));
        assert_eq!(m.audio_codec, Some(10));
    }

    #[test]
    fn a_second_publish_and_play_are_refused() {
        let mut server = raw_publishing();
        let publish = command(
            "publish",
            0.0,
            &[
                Amf0Value::Null,
                Amf0Value::Utf8String("other".into()),
                Amf0Value::Utf8String("live".into()),
            ],
        );
        server
            .handle_input(&raw_message(8, 20, 1, 0, &publish, 128), Instant::now())
            .unwrap();
        assert!(server.should_close());
        let got = events(&mut server);
        assert!(
            matches!(
                got.as_slice(),
                [IngestEvent::PublishFinished, IngestEvent::Closed]
            ),
            "{got:?}"
        );

        let mut server = raw_session(IngestLimits::default());
        let connect = command(
            "connect",
            1.0,
            &[object(&[("app", Amf0Value::Utf8String("live".into()))])],
        );
        let play = command(
            "play",
            0.0,
            &[Amf0Value::Null, Amf0Value::Utf8String("x".into())],
        );
        let mut bytes = raw_message(3, 20, 0, 0, &connect, 128);
        bytes.extend(raw_message(8, 20, 1, 0, &play, 128));
        server.handle_input(&bytes, Instant::now()).unwrap();
        assert!(server.should_close());
    }

    #[test]
    fn release_stream_and_fcpublish_get_results() {
        let (mut server, _) = IngestSession::new(IngestLimits::default());
        let mut handshake = vec![3u8];
        handshake.resize(PLAIN_HANDSHAKE, 0);
        server.handle_input(&handshake, Instant::now()).unwrap();
        let mut observer = Observer {
            chunks: ChunkDeserializer::new(),
            commands: Vec::new(),
        };
        // S0 + S1 + S2, then the session's opening messages.
        observer.feed(&drain(&mut server)[PLAIN_HANDSHAKE..]);
        let connect = command(
            "connect",
            1.0,
            &[object(&[("app", Amf0Value::Utf8String("live/".into()))])],
        );
        let release = command(
            "releaseStream",
            2.0,
            &[Amf0Value::Null, Amf0Value::Utf8String("k".into())],
        );
        let fcpublish = command(
            "FCPublish",
            3.0,
            &[Amf0Value::Null, Amf0Value::Utf8String("k".into())],
        );
        let mut bytes = raw_message(3, 20, 0, 0, &connect, 128);
        bytes.extend(raw_message(3, 20, 0, 0, &release, 128));
        bytes.extend(raw_message(3, 20, 0, 0, &fcpublish, 128));
        server.handle_input(&bytes, Instant::now()).unwrap();
        observer.feed(&drain(&mut server));
        let results: Vec<f64> = observer
            .commands
            .iter()
            .filter_map(|c| match c.as_slice() {
                [Amf0Value::Utf8String(name), Amf0Value::Number(tx), ..] if name == "_result" => {
                    Some(*tx)
                }
                _ => None,
            })
            .collect();
        assert_eq!(results, vec![1.0, 2.0, 3.0]);
        assert!(!server.should_close());
    }

    /// Runs ffmpeg (if installed) against a session over loopback TCP; returns the
    /// session's events and ffmpeg's exit status and stderr.
    fn ffmpeg_push(
        reject: Option<&str>,
    ) -> Option<(Vec<IngestEvent>, std::process::ExitStatus, String)> {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let url = format!("rtmp://127.0.0.1:{port}/live/room1?key=abc");
        let child = std::process::Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-nostdin"])
            .args(["-f", "lavfi", "-i", "testsrc=size=320x240:rate=25"])
            .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
            .args([
                "-t",
                "2",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-g",
                "25",
            ])
            .args(["-c:a", "aac", "-f", "flv", &url])
            .stderr(std::process::Stdio::piped())
            .spawn();
        let Ok(mut child) = child else {
            eprintln!("ffmpeg not found: skipped");
            return None;
        };
        // Never block forever: ffmpeg may fail before it connects.
        listener.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + std::time::Duration::from_secs(20);
        let mut socket = loop {
            match listener.accept() {
                Ok((socket, _)) => break socket,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    let exited = child.try_wait().unwrap();
                    assert!(
                        exited.is_none() && Instant::now() < deadline,
                        "ffmpeg did not connect: {exited:?}"
                    );
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => panic!("accept: {e}"),
            }
        };
        socket.set_nonblocking(false).unwrap();
        socket
            .set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .unwrap();
        let (mut session, initial) = IngestSession::new(IngestLimits::default());
        socket.write_all(&initial).unwrap();
        let mut events = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = socket.read(&mut buf).unwrap_or(0);
            if n == 0 {
                session.handle_eof();
            } else {
                session.handle_input(&buf[..n], Instant::now()).unwrap();
            }
            while let Some(event) = session.poll_event() {
                if let IngestEvent::PublishRequested { request, .. } = &event {
                    match reject {
                        Some(reason) => session.reject_publish(*request, reason),
                        None => session.accept_publish(*request),
                    }
                }
                events.push(event);
            }
            while let Some(out) = session.poll_output() {
                let _ = socket.write_all(&out);
            }
            if session.should_close() {
                break;
            }
        }
        drop(socket);
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        Some((events, output.status, stderr))
    }

    #[test]
    fn ffmpeg_publishes_h264_and_aac() {
        let Some((events, status, stderr)) = ffmpeg_push(None) else {
            return;
        };
        assert!(status.success(), "{stderr}");
        let requested = events.iter().find_map(|e| match e {
            IngestEvent::PublishRequested {
                app,
                stream_name,
                query_key,
                ..
            } => Some((app.clone(), stream_name.clone(), query_key.clone())),
            _ => None,
        });
        assert_eq!(
            requested,
            Some(("live".into(), "room1".into(), Some("abc".into())))
        );
        let metadata = events
            .iter()
            .find_map(|e| match e {
                IngestEvent::Metadata(m) => Some(m.clone()),
                _ => None,
            })
            .expect("onMetaData");
        assert_eq!((metadata.width, metadata.height), (Some(320), Some(240)));
        assert_eq!(
            (metadata.video_codec, metadata.audio_codec),
            (Some(7), Some(10))
        );
        let frames: Vec<&NativeFrame> = events
            .iter()
            .filter_map(|e| match e {
                IngestEvent::Media(f) => Some(f),
                _ => None,
            })
            .collect();
        let video: Vec<_> = frames
            .iter()
            .filter(|f| f.kind == MediaKind::Video)
            .collect();
        let audio: Vec<_> = frames
            .iter()
            .filter(|f| f.kind == MediaKind::Audio)
            .collect();
        assert!(video.len() >= 45, "{} video frames", video.len());
        assert!(audio.len() >= 80, "{} audio frames", audio.len());
        assert!(video[0].is_sequence_header() && audio[0].is_sequence_header());
        assert!(video[1].is_video_keyframe());
        assert!(
            video
                .windows(2)
                .all(|w| w[0].timestamp_ms <= w[1].timestamp_ms)
        );
        let last = video.last().map(|f| f.timestamp_ms).unwrap_or(0);
        assert!((1800..=2100).contains(&last), "last video at {last} ms");
        let finished = events
            .iter()
            .filter(|e| matches!(e, IngestEvent::PublishFinished))
            .count();
        assert_eq!(finished, 1);
        assert!(matches!(events.last(), Some(IngestEvent::Closed)));
    }

    #[test]
    fn ffmpeg_prints_the_rejection_reason() {
        let Some((events, status, stderr)) = ffmpeg_push(Some("room1 is not live yet")) else {
            return;
        };
        assert!(!status.success());
        assert!(stderr.contains("room1 is not live yet"), "{stderr}");
        assert!(!events.iter().any(|e| matches!(e, IngestEvent::Media(_))));
    }

    /// Writes a real client session as a seed for the `rtmp_ingest_session` fuzz target
    /// (`QUEQIAO_WRITE_FUZZ_SEED=1 cargo test … write_fuzz_seed -- --ignored`).
    #[test]
    #[ignore]
    fn write_fuzz_seed() {
        if std::env::var_os("QUEQIAO_WRITE_FUZZ_SEED").is_none() {
            return;
        }
        let mut pair = Pair::publishing(usize::MAX);
        let mut metadata = StreamMetadata::new();
        metadata.video_width = Some(640);
        let packet = pair.client.publish_metadata(&metadata).unwrap();
        pair.send(packet);
        for (i, ts) in [0u32, 40, 0x0100_0000].into_iter().enumerate() {
            let frame = pair
                .client
                .publish_video_data(video(300, i as u8), RtmpTimestamp::new(ts), false)
                .unwrap();
            pair.send(frame);
            let frame = pair
                .client
                .publish_audio_data(
                    Bytes::from_static(&[0xAF, 1, 2, 3]),
                    RtmpTimestamp::new(ts),
                    false,
                )
                .unwrap();
            pair.send(frame);
        }
        let stop = pair.client.stop_publishing().unwrap();
        pair.client_results(stop);
        pair.pump();
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fuzz/seeds/rtmp_ingest_session"
        );
        std::fs::create_dir_all(dir).unwrap();
        // Mode 0b010: no synthetic handshake (the transcript has one), accept publishes.
        for (name, piece) in [("session", 0u8), ("session-small-reads", 7)] {
            let mut seed = vec![0b010, piece];
            seed.extend_from_slice(&pair.transcript);
            std::fs::write(format!("{dir}/{name}"), seed).unwrap();
        }
    }
}
