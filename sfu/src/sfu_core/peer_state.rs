//! One peer of the core: its engine, its role in the room, where it is in its life, and
//! what its engine holds for the wire.

use super::Transmit;
use crate::fast_path::{FastPathSender, OutboundStream, SrtpKeyTap, ntp_time};
use crate::forwarder::Forwarder;
use crate::ids::{PeerId, RoomId};
use crate::peer::{InboundTrackPlan, OutboundTrackPlan};
use crate::session::PeerRole;
use rtc::data_channel::RTCDataChannelId;
use rtc::peer_connection::RTCPeerConnection;
use rtc::rtp_transceiver::RTCRtpReceiverId;
use rtc::sansio::Protocol;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

/// Peers by id. The map is read once per viewer per forwarded packet, and SipHash (the
/// std default, built against untrusted keys) costs more there than the rest of the
/// lookup; peer ids are minted by us (an odd multiple of a 64-bit constant), so a
/// multiplicative hash spreads them well and nobody outside can choose them.
pub(super) type PeerMap<V> = HashMap<PeerId, V, BuildHasherDefault<PeerIdHasher>>;

/// FxHash-style multiply–rotate hasher for [`PeerId`]s (see [`PeerMap`]).
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct PeerIdHasher(u64);

impl Hasher for PeerIdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64(byte as u64);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = (self.0.rotate_left(5) ^ value).wrapping_mul(0x517c_c1b7_2722_0a95);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Where a peer is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    /// Waiting for the client's ICE connectivity checks to nominate a pair.
    Checking,
    /// The pair is nominated; DTLS (we are the client) is under way.
    Handshaking,
    /// ICE and DTLS are done; media and data flow.
    Connected {
        /// When the connection completed.
        since: Instant,
    },
}

impl Lifecycle {
    /// When the peer connected, if it has.
    pub fn connected_since(self) -> Option<Instant> {
        match self {
            Lifecycle::Connected { since } => Some(since),
            Lifecycle::Checking | Lifecycle::Handshaking => None,
        }
    }
}

/// The peer's `room` data channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RoomChannel {
    /// The offer had no data-channel section.
    NotOffered,
    /// Offered: waiting for the client to open its channel (we open one after a grace
    /// period).
    Awaited,
    /// We asked our engine to open it.
    Requested,
    /// Open, under this id.
    Open(RTCDataChannelId),
    /// It was open and closed.
    Closed,
}

impl RoomChannel {
    /// The open channel's id.
    pub(super) fn open(self) -> Option<RTCDataChannelId> {
        match self {
            RoomChannel::Open(id) => Some(id),
            _ => None,
        }
    }
}

/// A publisher's per-session state.
pub(super) struct PublisherState {
    /// Per kind: the negotiated track.
    pub(super) tracks: [Option<InboundTrackPlan>; 2],
    /// Per kind: the engine's receiver and the media SSRC seen (for PLI).
    pub(super) receivers: [Option<RTCRtpReceiverId>; 2],
    pub(super) ssrcs: [Option<u32>; 2],
    /// Per kind: timestamp of the previous packet (frame-start detection).
    pub(super) last_timestamp: [Option<u32>; 2],
    pub(super) epoch: u32,
    pub(super) last_media_at: Option<Instant>,
}

/// One outbound track of a viewer.
pub(super) struct ViewerTrack {
    pub(super) plan: OutboundTrackPlan,
    pub(super) forwarder: Forwarder,
    /// The fast path's state of this SSRC (header template, rollover counter, sender
    /// report), once the viewer's fast path is on.
    pub(super) stream: Option<OutboundStream>,
    /// A cached GOP being replayed to this viewer at a paced rate, and the live packets
    /// that arrived meanwhile behind it (in order); empty when not replaying.
    pub(super) replay: std::collections::VecDeque<std::sync::Arc<crate::media::SourcePacket>>,
    /// Bytes of `replay` sent per pacing tick.
    pub(super) replay_budget: usize,
    /// How many NACKed packets may still be sent again.
    pub(super) retransmit_budget: RetransmitBudget,
}

/// A token bucket for one track's retransmissions: [`RetransmitBudget::PER_SECOND`] a
/// second, bursts of [`RetransmitBudget::BURST`].
#[derive(Debug, Clone, Copy)]
pub(super) struct RetransmitBudget {
    tokens: u32,
    refilled_at: Option<Instant>,
}

impl Default for RetransmitBudget {
    fn default() -> Self {
        Self {
            tokens: Self::BURST,
            refilled_at: None,
        }
    }
}

impl RetransmitBudget {
    /// Retransmissions a second (a third of a 1.5 Mbit/s video stream's packets).
    pub(super) const PER_SECOND: u32 = 60;
    /// Retransmissions at once.
    pub(super) const BURST: u32 = 120;

    /// Takes one token if there is one.
    pub(super) fn take(&mut self, now: Instant) -> bool {
        let Some(at) = self.refilled_at else {
            self.refilled_at = Some(now);
            return self.spend();
        };
        let since = now.saturating_duration_since(at);
        let earned = (since.as_micros() * u128::from(Self::PER_SECOND) / 1_000_000) as u32;
        if earned > 0 {
            self.tokens = self.tokens.saturating_add(earned).min(Self::BURST);
            // Keep the fraction of a token already earned.
            self.refilled_at = Some(if self.tokens == Self::BURST {
                now
            } else {
                at + Duration::from_secs(1) * earned / Self::PER_SECOND
            });
        }
        self.spend()
    }

    fn spend(&mut self) -> bool {
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

/// A viewer's SRTP fast path: forwarded RTP bypasses the engine's write path.
///
/// Once this exists the engine never sees the viewer's RTP again (two SRTP contexts with
/// one key on one SSRC would reuse keystream); the engine keeps ICE, DTLS, SCTP and RTCP.
pub(super) struct FastPath {
    /// Our SRTP transform for the viewer.
    pub(super) sender: FastPathSender,
    /// The address of the ICE pair the viewer nominated (where forwarded RTP goes).
    pub(super) destination: SocketAddr,
    /// `now` and the wall clock read once when the fast path started: sender reports map
    /// the core's clock to NTP time from it (the core reads no clock per packet).
    pub(super) wall_clock_base: (Instant, SystemTime),
    /// When the next sender reports are due.
    pub(super) next_sender_report: Instant,
}

impl FastPath {
    /// The wall-clock NTP time of `now` (see [`FastPath::wall_clock_base`]).
    pub(super) fn ntp_time(&self, now: Instant) -> u64 {
        let (base, wall) = self.wall_clock_base;
        ntp_time(wall + now.saturating_duration_since(base))
    }
}

/// What the peer does in its room.
// A viewer's tracks (with their fast-path SRTP streams) stay inline: every forwarded
// packet reads them, and a box would add a pointer chase per packet per viewer. One
// `Role` exists per peer, so the size difference costs memory only once per peer.
#[allow(clippy::large_enum_variant)]
pub(super) enum Role {
    Publisher(PublisherState),
    Viewer([Option<ViewerTrack>; 2]),
}

impl Role {
    pub(super) fn kind(&self) -> PeerRole {
        match self {
            Role::Publisher(_) => PeerRole::Publisher,
            Role::Viewer(_) => PeerRole::Viewer,
        }
    }
}

/// One peer.
pub(super) struct Peer {
    pub(super) room: RoomId,
    pub(super) connection: RTCPeerConnection,
    pub(super) role: Role,
    pub(super) lifecycle: Lifecycle,
    pub(super) created_at: Instant,
    pub(super) last_received: Instant,
    pub(super) channel: RoomChannel,
    /// The deadline this peer is registered under in the timer heap.
    pub(super) timer: Option<Instant>,
    /// What its engine holds for the wire.
    pub(super) outbox: Outbox,
    /// Learns the SRTP keys of a viewer's DTLS handshake (fast path wanted).
    pub(super) srtp_tap: Option<SrtpKeyTap>,
    /// The source address of the viewer's latest nominating STUN request.
    pub(super) nominated: Option<SocketAddr>,
    /// The viewer's SRTP fast path, once it is connected and its keys are known.
    pub(super) fast_path: Option<FastPath>,
}

impl Peer {
    /// A session just negotiated: ICE checks not yet seen, nothing queued.
    pub(super) fn new(
        room: RoomId,
        connection: RTCPeerConnection,
        role: Role,
        has_data_channel: bool,
        now: Instant,
    ) -> Self {
        Self {
            room,
            connection,
            role,
            lifecycle: Lifecycle::Checking,
            created_at: now,
            last_received: now,
            channel: if has_data_channel {
                RoomChannel::Awaited
            } else {
                RoomChannel::NotOffered
            },
            timer: None,
            outbox: Outbox::default(),
            srtp_tap: None,
            nominated: None,
            fast_path: None,
        }
    }
}

/// What a peer's engine holds for the wire since it was last drained.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Outbox {
    /// Queued in `to_flush` already.
    pub(super) queued: bool,
    /// Forwarded RTP packets written into the engine and not drained yet.
    pub(super) rtp: u32,
    /// Something else may be waiting (input, timers, RTCP, data channel): drain until the
    /// engine is empty.
    pub(super) full: bool,
}

/// Moves a peer engine's encrypted datagrams into the core's transmit queue.
///
/// Every `poll_write` sweeps the engine's whole write pipeline (eight handlers and the
/// interceptor chain) before it pops one datagram, so the call that only finds the engine
/// empty is not free (≈ 300 instructions, one per viewer per wake-up). When only forwarded
/// RTP was written, exactly that many RTP datagrams are popped and that last sweep is
/// skipped; anything else the engine produces meanwhile (RTCP reports) goes out with them
/// or on the peer's next drain or timer, which drains fully.
pub(super) fn drain_engine(
    connection: &mut RTCPeerConnection,
    outbox: &mut Outbox,
    queue: &mut VecDeque<Transmit>,
) {
    let Outbox { rtp, full, .. } = std::mem::take(outbox);
    if full {
        while let Some(datagram) = connection.poll_write() {
            queue.push_back(Transmit {
                destination: datagram.transport.peer_addr,
                contents: datagram.message,
            });
        }
        return;
    }
    let mut remaining = rtp;
    while remaining > 0 {
        let Some(datagram) = connection.poll_write() else {
            break;
        };
        if is_rtp(&datagram.message) {
            remaining -= 1;
        }
        queue.push_back(Transmit {
            destination: datagram.transport.peer_addr,
            contents: datagram.message,
        });
    }
}

/// SRTP rather than SRTCP (RFC 5761 §4: RTCP packet types 192–223 in the second byte).
fn is_rtp(datagram: &[u8]) -> bool {
    matches!(datagram, [128..=191, second, ..] if !(192..=223).contains(second))
}

#[cfg(test)]
mod retransmit_budget_tests {
    use super::RetransmitBudget;
    use std::time::{Duration, Instant};

    #[test]
    fn a_burst_then_the_steady_rate() {
        let start = Instant::now();
        let mut budget = RetransmitBudget::default();
        let burst = (0..1000).filter(|_| budget.take(start)).count();
        assert_eq!(burst, RetransmitBudget::BURST as usize);
        // One second later: one second's worth, taken in 10 ms steps.
        let mut granted = 0;
        for step in 1..=100 {
            if budget.take(start + Duration::from_millis(10 * step)) {
                granted += 1;
            }
        }
        let expected = RetransmitBudget::PER_SECOND as usize;
        assert!((expected - 5..=expected).contains(&granted), "{granted}");
    }
}
