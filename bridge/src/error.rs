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
}
