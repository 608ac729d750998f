//! The per-viewer SRTP sender of the fast path.

use super::cipher::RtpCipher;
use super::{
    FastPathError, MasterKeys, OutboundStream, PacketFields, ProtectionProfile, SrtpSessionKeys,
    TransportWideSequencer,
};
use rtc::crypto::RTCCrypto;
use std::time::Instant;

/// One protected packet in the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProtectedPacket {
    /// Bytes of the SRTP packet at the start of the buffer.
    pub len: usize,
    /// The transport-wide sequence number stamped into it, if the stream's template has the
    /// TWCC slot.
    pub transport_sequence_number: Option<u16>,
}

/// Protects forwarded RTP for one viewer (our sending direction of its DTLS-SRTP session).
///
/// Holds the keyed SRTP transform and the viewer's transport-wide sequence counter; the
/// per-SSRC state is in each [`OutboundStream`]. Not `Clone`: two senders with the same keys
/// would reuse keystream.
pub struct FastPathSender {
    profile: ProtectionProfile,
    cipher: RtpCipher,
    transport_wide: TransportWideSequencer,
}

impl std::fmt::Debug for FastPathSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FastPathSender")
            .field("profile", &self.profile)
            .field("next_transport_sequence", &self.transport_wide.peek())
            .finish()
    }
}

impl FastPathSender {
    /// A sender keyed with our half of the session keys.
    pub fn new(
        keys: &SrtpSessionKeys,
        crypto: &dyn RTCCrypto,
    ) -> Result<FastPathSender, FastPathError> {
        Self::with_master_keys(keys.profile, &keys.local, crypto)
    }

    /// A sender keyed with an explicit master key and salt.
    pub fn with_master_keys(
        profile: ProtectionProfile,
        keys: &MasterKeys,
        crypto: &dyn RTCCrypto,
    ) -> Result<FastPathSender, FastPathError> {
        Ok(Self {
            profile,
            cipher: RtpCipher::new(profile, &keys.key, &keys.salt, crypto)?,
            transport_wide: TransportWideSequencer::default(),
        })
    }

    /// The protection profile.
    pub fn profile(&self) -> ProtectionProfile {
        self.profile
    }

    /// The transport-wide sequence numbers and send times handed out so far.
    pub fn transport_wide(&self) -> &TransportWideSequencer {
        &self.transport_wide
    }

    /// Bytes the protected packet for a payload of `payload_len` bytes takes.
    pub fn protected_len(&self, stream: &OutboundStream, payload_len: usize) -> usize {
        stream.template().len() + payload_len + self.cipher.trailer_len()
    }

    /// Writes `stream`'s header with `fields`, then `payload`, into `out` and protects it in
    /// place; returns the SRTP packet's length. Allocates nothing.
    ///
    /// Used alike for live packets and for NACK answers from the ring (pass the fields the
    /// packet had when first sent: its SRTP index, and so its rollover counter, is recovered
    /// from the sequence number). Sender-report counts include both.
    pub fn protect_rtp(
        &mut self,
        stream: &mut OutboundStream,
        fields: &PacketFields,
        payload: &[u8],
        now: Instant,
        out: &mut [u8],
    ) -> Result<ProtectedPacket, FastPathError> {
        let header_len = stream.template().len();
        let needed = header_len + payload.len() + self.cipher.trailer_len();
        if out.len() < needed {
            return Err(FastPathError::BufferTooSmall {
                needed,
                available: out.len(),
            });
        }
        let index = stream.srtp_index(fields.sequence_number)?;
        let transport_sequence_number = stream
            .template()
            .has_transport_cc()
            .then(|| self.transport_wide.peek());
        stream
            .template()
            .write(fields, transport_sequence_number.unwrap_or(0), out);
        out[header_len..header_len + payload.len()].copy_from_slice(payload);
        self.cipher.protect(
            &mut out[..needed],
            header_len,
            stream.ssrc(),
            fields.sequence_number,
            index.rollover_counter(),
        )?;
        // Only a packet that was protected counts (sender report, TWCC history).
        if transport_sequence_number.is_some() {
            self.transport_wide.next(now);
        }
        stream.record_sent(index, fields, payload.len(), now);
        Ok(ProtectedPacket {
            len: needed,
            transport_sequence_number,
        })
    }
}
