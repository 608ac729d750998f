//! The media unit shared by every consumer of a publisher's stream.
//!
//! A publisher's RTP packet is parsed once into a [`SourcePacket`] and shared as an
//! `Arc`: the per-viewer forwarders, the NACK ring, the keyframe cache and the bridge tap
//! all read the same allocation. Nothing downstream mutates it.

use bytes::Bytes;
use std::fmt;
use std::time::Instant;

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaKind {
    /// An audio track (Opus).
    Audio,
    /// A video track (H.264 or VP8).
    Video,
}

impl MediaKind {
    /// Index into two-element per-kind arrays (`0` audio, `1` video).
    pub fn index(self) -> usize {
        match self {
            MediaKind::Audio => 0,
            MediaKind::Video => 1,
        }
    }
}

/// The codecs the SFU forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Codec {
    /// Opus audio, 48 kHz.
    Opus,
    /// H.264 video, 90 kHz, packetization-mode 1.
    H264,
    /// VP8 video, 90 kHz.
    Vp8,
}

impl Codec {
    /// Audio or video.
    pub fn kind(self) -> MediaKind {
        match self {
            Codec::Opus => MediaKind::Audio,
            Codec::H264 | Codec::Vp8 => MediaKind::Video,
        }
    }

    /// RTP clock rate in Hz.
    pub fn clock_rate(self) -> u32 {
        match self {
            Codec::Opus => 48_000,
            Codec::H264 | Codec::Vp8 => 90_000,
        }
    }

    /// The SDP MIME type (`video/H264` …), as webrtc-rs spells it.
    pub fn mime_type(self) -> &'static str {
        match self {
            Codec::Opus => "audio/opus",
            Codec::H264 => "video/H264",
            Codec::Vp8 => "video/VP8",
        }
    }

    /// Parses a MIME type case-insensitively.
    pub fn from_mime_type(mime: &str) -> Option<Codec> {
        [Codec::Opus, Codec::H264, Codec::Vp8]
            .into_iter()
            .find(|codec| codec.mime_type().eq_ignore_ascii_case(mime))
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Codec::Opus => "opus",
            Codec::H264 => "h264",
            Codec::Vp8 => "vp8",
        })
    }
}

/// One RTP packet from a publisher, parsed once and shared by everything downstream.
#[derive(Debug, Clone)]
pub struct SourcePacket {
    /// The codec of the track this packet belongs to.
    pub codec: Codec,
    /// Publisher session generation: changes when the room's publisher reconnects, so
    /// forwarders know to re-anchor sequence numbers and timestamps.
    pub epoch: u32,
    /// The publisher's RTP sequence number.
    pub sequence_number: u16,
    /// The publisher's RTP timestamp.
    pub timestamp: u32,
    /// The RTP marker bit (last packet of a video frame).
    pub marker: bool,
    /// Whether this packet belongs to a frame that can be decoded on its own (an H.264 IDR
    /// with parameter sets, a VP8 key frame); always `true` for audio.
    pub keyframe: bool,
    /// Whether this is the first packet of its frame (a new RTP timestamp).
    pub frame_start: bool,
    /// The coordination-of-video-orientation byte (`urn:3gpp:video-orientation`), if the
    /// publisher sent one on this packet.
    pub video_orientation: Option<u8>,
    /// When the datagram carrying this packet was read from the socket.
    pub received_at: Instant,
    /// The codec payload (no RTP header, no padding); reference-counted, never copied.
    pub payload: Bytes,
}

impl SourcePacket {
    /// Audio or video.
    pub fn kind(&self) -> MediaKind {
        self.codec.kind()
    }
}

/// One frame of a publisher that does not send RTP (RTMP ingest), as its container carried
/// it: the body of an FLV `VIDEODATA` or `AUDIODATA` tag (codec header byte(s) included:
/// AVC packet type and composition time, AAC packet type). Outputs that can carry the
/// source's own codecs (FLV, HLS, LL-HLS, recordings, RTMP push) build from these and never
/// see the SFU's transcoded copy; WebRTC viewers get [`SourcePacket`]s made from them.
#[derive(Debug, Clone)]
pub struct NativeFrame {
    /// Audio or video.
    pub kind: MediaKind,
    /// The FLV timestamp (decoding time) in milliseconds.
    pub timestamp_ms: u32,
    /// The tag body, untouched.
    pub body: Bytes,
    /// When the frame was read from the connection.
    pub received_at: Instant,
}

impl NativeFrame {
    /// Whether this is a sequence header (AVCDecoderConfigurationRecord or
    /// AudioSpecificConfig) rather than media.
    pub fn is_sequence_header(&self) -> bool {
        match self.kind {
            // VIDEODATA: frame type/codec id, then AVCPacketType 0 = sequence header.
            MediaKind::Video => self.body.len() >= 2 && self.body[1] == 0,
            // AUDIODATA: format/rate/size/type, then AACPacketType 0 = sequence header.
            MediaKind::Audio => self.body.len() >= 2 && self.body[1] == 0,
        }
    }

    /// Whether this is a video keyframe (FLV frame type 1) carrying coded media.
    pub fn is_video_keyframe(&self) -> bool {
        self.kind == MediaKind::Video
            && self.body.len() >= 2
            && self.body[0] >> 4 == 1
            && self.body[1] == 1
    }
}
