//! The bridge's error type.

use sfu::media::Codec;

/// Everything that can go wrong in the bridge.
///
/// Per-packet problems (a corrupt payload, a lost packet) are not errors: they are counted
/// in the stats of the component that saw them and the stream carries on. A `BridgeError`
/// is returned where the caller has to decide something (a room whose video cannot be
/// bridged, an encoder that failed to open, a recording that could not be written).
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// The publisher's video codec cannot reach the bridge's players (FLV, HLS and
    /// LL-HLS all need H.264); the room is bridged audio-only.
    #[error("video codec {0} cannot be bridged: FLV/HLS players need H.264")]
    UnsupportedVideoCodec(Codec),

    /// The publisher's audio codec is not Opus, the only one the transcoder decodes.
    #[error("audio codec {0} cannot be bridged: only Opus is transcoded to AAC")]
    UnsupportedAudioCodec(Codec),

    /// A sequence or picture parameter set could not be parsed.
    #[error("invalid H.264 parameter set: {0}")]
    InvalidParameterSet(String),

    /// The AAC configuration asked for is not one the bridge produces (sample rate or
    /// channel count out of range).
    #[error("unsupported AAC configuration: {0}")]
    UnsupportedAacConfig(String),

    /// libopus refused to create a decoder.
    #[error("opus decoder: {0}")]
    OpusDecoder(#[from] opus::Error),

    /// The Fraunhofer AAC encoder failed to open or to encode.
    #[error("AAC encoder: {0}")]
    AacEncoder(String),

    /// An MP4 box could not be encoded (fMP4 init segment or fragment).
    #[error("MP4 box encoding: {0}")]
    Mp4(#[from] mp4_atom::Error),

    /// Writing a recording to disk failed.
    #[error("recording I/O: {0}")]
    Io(#[from] std::io::Error),

    /// The recording was already finished (`EXT-X-ENDLIST` written) when a segment was
    /// added.
    #[error("recording already finished")]
    RecordingFinished,

    /// An RTMP ingest connection did not start with a valid RTMP handshake (C0/C1/C2).
    #[error("RTMP ingest handshake: {0}")]
    RtmpIngestHandshake(String),

    /// An RTMP ingest peer sent a malformed chunk stream or message, or a command out of
    /// order; the connection must be closed.
    #[error("RTMP ingest protocol: {0}")]
    RtmpIngestProtocol(String),

    /// An RTMP ingest peer exceeded a configured limit (message size, chunk size, buffered
    /// bytes, chunk or message streams); the connection must be closed.
    #[error("RTMP ingest limit exceeded: {0}")]
    RtmpIngestLimit(String),

    /// Input was given to an RTMP ingest session that has already ended.
    #[error("RTMP ingest session already closed")]
    RtmpIngestClosed,

    /// A native (RTMP ingest) track uses a codec the bridge's outputs cannot pass through
    /// (not H.264/AVC or not AAC-LC, e.g. enhanced-RTMP HEVC, MP3, HE-AAC); that track is
    /// not bridged.
    #[error("native track cannot be passed through: {0}")]
    UnsupportedNativeCodec(String),

    /// An RTMP ingest tag body that cannot be converted for WebRTC viewers: a truncated
    /// FLV header, a malformed AVCDecoderConfigurationRecord or AudioSpecificConfig, or
    /// NAL unit lengths that run past the tag. The frame is dropped and counted.
    #[error("malformed ingest media: {0}")]
    MalformedIngestMedia(String),

    /// An RTMP ingest video codec WebRTC viewers cannot get from us (only H.264, FLV
    /// codec id 7, is packetized); those frames are dropped and counted.
    #[error("ingest video codec {0} cannot be sent to WebRTC viewers: only H.264 is")]
    UnsupportedIngestVideoCodec(String),

    /// An RTMP ingest audio codec WebRTC viewers cannot get from us (only AAC, FLV sound
    /// format 10, is transcoded to Opus); those frames are dropped and counted.
    #[error("ingest audio codec {0} cannot be sent to WebRTC viewers: only AAC is")]
    UnsupportedIngestAudioCodec(String),

    /// The Fraunhofer AAC decoder rejected a configuration or a frame.
    #[error("AAC decoder: {0}")]
    AacDecoder(String),

    /// libopus refused to create or configure an encoder.
    #[error("opus encoder: {0}")]
    OpusEncoder(String),

    /// The audio resampler could not be built for a sample rate.
    #[error("resampler: {0}")]
    Resampler(String),
}
