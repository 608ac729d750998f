//! The SRTP forwarding fast path: a forwarded RTP packet is written to a viewer as a prebuilt
//! header plus the shared payload, straight into an SRTP-protected send buffer, without the
//! rtc engine's per-packet `write_rtp` path (message queues, interceptor chain, sender
//! parameter rebuild, marshal, then encrypt into a fresh buffer).
//!
//! The engine keeps ICE, DTLS, SCTP and RTCP. What it no longer sees, this module keeps right:
//!
//! - **Keys.** [`SrtpKeyTap`] wraps the crypto provider handed to the engine
//!   (`SettingEngineBuilder::with_crypto_provider`, rtc's public extension point) and notices
//!   the one DTLS exporter computation (`EXTRACTOR-dtls_srtp`, RFC 5764 §4.2). Once the DTLS
//!   handshake completes, [`SrtpKeyTap::session_keys`] re-derives the same keying material and
//!   splits it into our master key/salt and the viewer's; [`NegotiatedSrtp`] reads the profile
//!   and the DTLS role from the engine's transport stats.
//! - **Protection.** [`FastPathSender`] (one per viewer, our sending direction) derives the
//!   session keys (RFC 3711 §4.3, RFC 7714 §11) and protects packets in place: AEAD AES-GCM
//!   (RFC 7714) or AES-CM with HMAC-SHA1-80/32 (RFC 3711), with no heap allocation per packet.
//! - **Streams.** [`OutboundStream`] (one per viewer SSRC) holds the [`RtpHeaderTemplate`], the
//!   rollover counter (right across sequence-number wraps, also for NACK answers of packets sent
//!   before a wrap), and the sender-report state: packet and octet counts and the RTP/NTP
//!   mapping ([`OutboundStream::build_sender_report`]).
//! - **Transport-wide congestion control.** When TWCC is negotiated the template carries the
//!   transport-wide sequence number extension; the sender stamps it per packet and remembers
//!   the send time ([`TransportWideSequencer`]).
//!
//! Everything is sans-IO and owned by one task: the caller passes `now`, the buffer and the
//! payload; nothing here locks or allocates per packet (the key tap locks once, at handshake).
//!
//! # Wiring it into the core
//!
//! 1. Building a viewer's engine: `let tap = SrtpKeyTap::new()?;` and
//!    `SettingEngineBuilder::with_crypto_provider(tap.provider())`; keep `tap` with the peer.
//! 2. On `OnConnectionStateChangeEvent(Connected)`: `NegotiatedSrtp::of_connection(&mut pc,
//!    now)?`, `tap.session_keys(negotiated)?`, `FastPathSender::new(&keys, tap.crypto())?`, and
//!    one [`OutboundStream`] per viewer track: `OutboundStream::new(
//!    RtpHeaderTemplate::for_forwarder(forwarder.config())?, clock_rate)`.
//! 3. Per forwarded packet: `let header = forwarder.forward(..)?;` then
//!    `sender.protect_rtp(&mut stream, &PacketFields::from(&header), &source.payload, now,
//!    slot)` where `slot` is the viewer's `sendmmsg` buffer; send `slot[..len]` to the peer's
//!    selected address. A NACK answer: `forwarder.retransmission(&packet)` → the same call.
//!    From then on, never hand this SSRC to the engine's `write_rtp`: two SRTP contexts with
//!    the same key on one SSRC would reuse keystream.
//! 4. About once a second per stream: `stream.build_sender_report(now, ntp_time(
//!    SystemTime::now()))` → `pc.rtp_sender(id).write_rtcp(now, vec![Box::new(report)])` (the
//!    engine protects it with its own SRTCP context and index).

mod cipher;
mod error;
mod header_template;
mod key_tap;
mod sender;
mod stream;
mod transport_wide;

pub use error::FastPathError;
pub use header_template::{MAX_HEADER_LEN, PacketFields, RtpHeaderTemplate};
pub use key_tap::{
    DTLS_SRTP_EXPORTER_LABEL, MasterKeys, NegotiatedSrtp, SrtpKeyTap, SrtpSessionKeys,
};
pub use sender::{FastPathSender, ProtectedPacket};
pub use stream::{OutboundStream, ntp_time};
pub use transport_wide::TransportWideSequencer;

/// The SRTP protection profiles, as rtc names them (key and salt lengths, tag lengths).
pub use rtc::srtp::protection_profile::ProtectionProfile;

/// The most bytes protection adds after the payload (a 16-byte AES-GCM tag; 10 or 4 for
/// HMAC-SHA1). A send buffer of `MAX_HEADER_LEN + payload + MAX_TRAILER_LEN` always fits.
pub const MAX_TRAILER_LEN: usize = 16;
