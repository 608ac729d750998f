//! What can go wrong on the fast path.

use rtc::crypto::CryptoError;

/// Errors of the SRTP fast path. None of them is caused by a remote peer's bytes: they are
/// setup problems (keys, profile, template) or a send buffer that is too small.
#[derive(Debug, thiserror::Error)]
pub enum FastPathError {
    /// The DTLS handshake has not completed yet, or the engine did not use the tapped crypto
    /// provider, so the SRTP keying material was never exported.
    #[error("the DTLS-SRTP keying material has not been exported yet")]
    KeysNotExported,
    /// The negotiated SRTP protection profile is not one the fast path implements.
    #[error("unsupported SRTP protection profile {0}")]
    UnsupportedProfile(String),
    /// The DTLS role is not known (the handshake has not started).
    #[error("the DTLS role is not known yet")]
    RoleUnknown,
    /// A master key or salt has the wrong length for the profile.
    #[error("SRTP {what} is {actual} bytes, the profile needs {expected}")]
    KeyLength {
        /// Which input ("master key" or "master salt").
        what: &'static str,
        /// The length the profile requires.
        expected: usize,
        /// The length given.
        actual: usize,
    },
    /// The crypto provider failed (unsupported algorithm, bad key).
    #[error("crypto provider: {0}")]
    Crypto(#[from] CryptoError),
    /// The send buffer cannot hold header, payload and authentication tag.
    #[error("send buffer of {available} bytes, the protected packet needs {needed}")]
    BufferTooSmall {
        /// Bytes the protected packet needs.
        needed: usize,
        /// Bytes the buffer has.
        available: usize,
    },
    /// An RTP header extension id outside 1..=14 (one-byte header form, RFC 8285).
    #[error("RTP header extension id {0} is outside 1..=14")]
    ExtensionId(u8),
    /// The same header extension was added to a template twice.
    #[error("RTP header extension {0} is already in the template")]
    DuplicateExtension(&'static str),
    /// A packet older than the first one sent on the stream (its SRTP index would be
    /// negative): nothing of it can have been sent, so it cannot be retransmitted.
    #[error("sequence number {0} is older than the stream's first packet")]
    BeforeStreamStart(u16),
}
