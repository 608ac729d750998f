//! The sans-IO SFU core: every peer and every room of one shard, and no I/O at all.
//!
//! Like quinn-proto's `Endpoint` or str0m's `Rtc`, [`SfuCore`] is a state machine driven
//! from outside: the driver (`driver.rs`) feeds it datagrams
//! ([`SfuCore::handle_datagram`]), commands from the rest of the server
//! ([`SfuCore::handle_command`]) and the clock ([`SfuCore::handle_timeout`]), and takes out
//! what it produced: datagrams to send ([`SfuCore::poll_transmit`]), its next deadline
//! ([`SfuCore::poll_timeout`]) and events for the server ([`SfuCore::poll_event`]). It reads
//! no clock (every entry point gets `now`), touches no socket and awaits nothing, so tests
//! drive it on a virtual clock against in-memory WebRTC peers.
//!
//! The pieces, by concept:
//! - `peer_state`: one peer, its lifecycle state and its engine's outbox;
//! - `room`: room membership, publisher replacement, taps, closing peers;
//! - `fanout`: publisher packets to viewers, GOP replay, NACK answers, keyframe requests;
//! - `lifecycle`: datagrams and engine events, timers, housekeeping;
//! - `ingest`: publishers without an engine (RTMP ingest), fed frames and packets.
//!
//! Output is bounded: an engine is drained every [`MAX_RTP_PER_DRAIN`] forwarded packets
//! (its internal queues keep their peak size for the peer's life), and the engines touched
//! by one wake-up are drained lazily, one by one, as the driver pulls
//! [`SfuCore::poll_transmit`], so the driver can send in batches of its own size.

mod fanout;
mod ingest;
mod lifecycle;
mod peer_state;
mod room;
mod shards;

use crate::config::SfuConfig;
use crate::cross_shard::{Redirects, ShardDirectory, ShardIndex, ShardMessage};
use crate::demux::DemuxTable;
use crate::error::SfuError;
use crate::events::{CloseReason, SfuEvent};
use crate::ids::{PeerId, RoomId};
use crate::peer::{InboundTrackPlan, NegotiatedPeer, OutboundTrackPlan, RoomCodecs};
use crate::session::{PeerRole, RoomSnapshot, SfuSnapshot};
use crate::stats::{SfuCounters, SfuStats};
use crate::tap::TapReceiver;
use bytes::BytesMut;
use peer_state::{Peer, PeerMap};
use room::Room;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use peer_state::Lifecycle;

/// The label of the data channel that carries room events.
pub const ROOM_CHANNEL_LABEL: &str = "room";
/// How often timeouts, idle rooms and pending PLIs are checked and counters published.
pub const HOUSEKEEPING_INTERVAL: Duration = Duration::from_millis(100);
/// Forwarded packets a peer's engine may hold before they are drained (encrypted and
/// queued for the wire). The engine's internal queues keep their peak capacity for the
/// life of the peer, so a burst (a joiner's GOP replay, an unpaced keyframe) pushed in
/// whole would leave every viewer holding hundreds of kilobytes of empty queues.
pub const MAX_RTP_PER_DRAIN: u32 = 8;

/// One datagram for the wire.
#[derive(Debug)]
pub struct Transmit {
    /// Where it goes.
    pub destination: SocketAddr,
    /// The encrypted datagram.
    pub contents: BytesMut,
}

/// Requests from the rest of the server. Each is answered by the [`Reply`] that
/// [`SfuCore::handle_command`] returns.
pub enum Command {
    /// Moves a negotiated publisher into its room (created if needed).
    AddPublisher {
        /// Room.
        room: RoomId,
        /// The new session's id.
        peer: PeerId,
        /// The negotiated engine (boxed: an engine is tens of kilobytes, and every
        /// request would otherwise be that big wherever it is moved).
        negotiated: Box<NegotiatedPeer<InboundTrackPlan>>,
    },
    /// Moves a negotiated viewer into its room (a mirror of it if the room's home is
    /// another shard).
    AddViewer {
        /// Room.
        room: RoomId,
        /// The room's home shard.
        home: ShardIndex,
        /// The new session's id.
        peer: PeerId,
        /// The room codecs the viewer was negotiated against.
        codecs: RoomCodecs,
        /// The negotiated engine (boxed, see [`Command::AddPublisher`]).
        negotiated: Box<NegotiatedPeer<OutboundTrackPlan>>,
    },
    /// Seats a publisher that is not a WebRTC peer (RTMP ingest) in its room (created if
    /// needed), under the same rules as [`Command::AddPublisher`].
    AddIngest {
        /// Room.
        room: RoomId,
        /// The new session's id.
        peer: PeerId,
        /// What it will send, as viewers are to be offered it.
        codecs: RoomCodecs,
        /// Told why, when the server ends the session (admin stop, replacement, shutdown).
        closed: tokio::sync::oneshot::Sender<CloseReason>,
    },
    /// Media from an ingest session: its frames as received (for the bridge) and the RTP
    /// packets made from them (for WebRTC viewers), in that order.
    IngestMedia {
        /// The ingest session.
        peer: PeerId,
        /// New codecs to offer viewers that join from now on, if they changed.
        codecs: Option<RoomCodecs>,
        /// Frames as their container carried them.
        native: Vec<Arc<crate::media::NativeFrame>>,
        /// Packets for WebRTC viewers (`epoch`, `keyframe` and `frame_start` are set by
        /// the core).
        packets: Vec<crate::media::SourcePacket>,
    },
    /// The codecs a live room forwards (what a viewer's answer must offer).
    RoomCodecs {
        /// Room.
        room: RoomId,
    },
    /// Ends a session.
    ClosePeer {
        /// Session.
        peer: PeerId,
    },
    /// The room and role of a session.
    SessionInfo {
        /// Session.
        peer: PeerId,
    },
    /// Attaches a bridge tap to a room (on its home shard).
    Tap {
        /// Room.
        room: RoomId,
    },
    /// Asks the room's publisher for a keyframe (coalesced).
    RequestKeyframe {
        /// Room.
        room: RoomId,
    },
    /// Sends text on one session's `room` data channel.
    SendData {
        /// Session.
        peer: PeerId,
        /// The message.
        text: Arc<str>,
    },
    /// Sends text on every open `room` data channel of a room.
    BroadcastData {
        /// Room.
        room: RoomId,
        /// The message.
        text: Arc<str>,
    },
    /// The state of every room.
    Snapshot,
    /// Closes every peer (DTLS close_notify queued) and forgets every room.
    Shutdown,
}

/// The answer to a [`Command`].
pub enum Reply {
    /// The command needs no answer.
    None,
    /// Done, or why not (add publisher/viewer, shutdown).
    Done(Result<(), SfuError>),
    /// A room's codecs.
    Codecs(Result<RoomCodecs, SfuError>),
    /// A session's room and role (close, session info).
    Session(Result<(RoomId, PeerRole), SfuError>),
    /// A new tap.
    Tap(Result<TapReceiver, SfuError>),
    /// The whole shard at a glance.
    Snapshot(SfuSnapshot),
}

/// A mirror room with no sessions left is forgotten (and unsubscribed) after this long.
const MIRROR_IDLE_TIMEOUT: Duration = Duration::from_secs(2);

/// See the module docs.
pub struct SfuCore {
    config: SfuConfig,
    /// Our candidate address: the `local_addr` the ICE agents know.
    advertised: SocketAddr,
    /// Plain counters, published into `stats` on housekeeping.
    counters: SfuCounters,
    published: SfuCounters,
    stats: Arc<SfuStats>,
    events: VecDeque<SfuEvent>,
    peers: PeerMap<Peer>,
    rooms: HashMap<RoomId, Room>,
    demux: DemuxTable,
    /// Per-peer engine deadlines; stale entries are skipped (see `Peer::timer`).
    timers: BinaryHeap<Reverse<(Instant, PeerId)>>,
    next_housekeeping: Instant,
    /// Peers whose engines hold output, in the order they got it.
    to_flush: VecDeque<PeerId>,
    /// Datagrams drained from engines and not yet taken by the driver.
    transmits: VecDeque<Transmit>,
    /// When unknown traffic was last logged (it is sampled, see `unknown_traffic`).
    unknown_logged_at: Option<Instant>,
    /// Unknown traffic per source since the last publish (a fixed-size table).
    unknown_sources: crate::unknown_sources::UnknownSources,
    /// This shard's index.
    shard: ShardIndex,
    /// Shared with the other shards and the handle (control path only).
    directory: Arc<ShardDirectory>,
    /// Messages for other shards, taken by the driver.
    shard_outbox: VecDeque<(ShardIndex, ShardMessage)>,
    /// Addresses whose datagrams belong to other shards' peers.
    redirects: Redirects,
    /// When `redirects` was last checked against the directory.
    redirects_refreshed: Instant,
    /// Send buffers the driver handed back, for the fast path.
    buffers: crate::buffer_pool::BufferPool,
    /// Viewers with a GOP replay in progress, and when they are next paced.
    replaying: Vec<PeerId>,
    /// Publishers without an engine (RTMP ingest).
    ingests: HashMap<PeerId, ingest::IngestSource>,
    next_replay_tick: Option<Instant>,
}

impl SfuCore {
    /// A core with no peers, the only shard. `advertised` is the candidate address every
    /// peer's ICE agent uses as its local address; `stats` receives the published counters.
    pub fn new(
        config: SfuConfig,
        advertised: SocketAddr,
        stats: Arc<SfuStats>,
        now: Instant,
    ) -> Result<Self, SfuError> {
        Self::new_shard(config, advertised, stats, now, 0, ShardDirectory::new(1))
    }

    /// A core with no peers, shard `shard` of `directory.shards()`.
    pub fn new_shard(
        config: SfuConfig,
        advertised: SocketAddr,
        stats: Arc<SfuStats>,
        now: Instant,
        shard: ShardIndex,
        directory: Arc<ShardDirectory>,
    ) -> Result<Self, SfuError> {
        let crypto =
            rtc::crypto::default_provider().map_err(|e| SfuError::Engine(e.to_string()))?;
        Ok(Self {
            config,
            advertised,
            counters: SfuCounters::default(),
            published: SfuCounters::default(),
            stats,
            events: VecDeque::new(),
            peers: PeerMap::default(),
            rooms: HashMap::new(),
            demux: DemuxTable::new(crypto),
            timers: BinaryHeap::new(),
            next_housekeeping: now + HOUSEKEEPING_INTERVAL,
            to_flush: VecDeque::new(),
            transmits: VecDeque::new(),
            unknown_logged_at: None,
            unknown_sources: Default::default(),
            shard,
            directory,
            shard_outbox: VecDeque::new(),
            redirects: Redirects::default(),
            redirects_refreshed: now,
            buffers: Default::default(),
            replaying: Vec::new(),
            next_replay_tick: None,
            ingests: HashMap::new(),
        })
    }

    /// A sent datagram's buffer back from the driver, to be reused.
    pub fn recycle(&mut self, buffer: BytesMut) {
        self.buffers.give(buffer);
    }

    /// This shard's index.
    pub fn shard(&self) -> ShardIndex {
        self.shard
    }

    /// One datagram that arrived on the shared port from `from`.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        self.on_datagram(datagram, from, now, false);
    }

    /// A message from another shard (see [`crate::cross_shard`]).
    pub fn handle_shard_message(&mut self, now: Instant, message: ShardMessage) {
        self.on_shard_message(message, now);
    }

    /// The next message for another shard: `(to, message)`.
    pub fn poll_shard_message(&mut self) -> Option<(ShardIndex, ShardMessage)> {
        self.shard_outbox.pop_front()
    }

    /// Runs a command and returns its answer.
    pub fn handle_command(&mut self, now: Instant, command: Command) -> Reply {
        match command {
            Command::AddPublisher {
                room,
                peer,
                negotiated,
            } => Reply::Done(self.add_publisher(room, peer, *negotiated, now)),
            Command::AddViewer {
                room,
                home,
                peer,
                codecs,
                negotiated,
            } => Reply::Done(self.add_viewer(room, home, peer, codecs, *negotiated, now)),
            Command::AddIngest {
                room,
                peer,
                codecs,
                closed,
            } => Reply::Done(self.add_ingest(room, peer, codecs, closed, now)),
            Command::IngestMedia {
                peer,
                codecs,
                native,
                packets,
            } => {
                self.ingest_media(peer, codecs, native, packets, now);
                Reply::None
            }
            Command::RoomCodecs { room } => Reply::Codecs(match self.rooms.get(&room) {
                Some(r) if r.codecs.audio.is_some() || r.codecs.video.is_some() => {
                    Ok(r.codecs.clone())
                }
                _ => Err(SfuError::RoomNotFound(room)),
            }),
            Command::ClosePeer { peer } => Reply::Session(
                self.close_peer(peer, CloseReason::Deleted, now)
                    .ok_or(SfuError::SessionNotFound),
            ),
            Command::SessionInfo { peer } => Reply::Session(
                self.peers
                    .get(&peer)
                    .map(|p| (p.room.clone(), p.role.kind()))
                    .or_else(|| self.ingest_session(peer))
                    .ok_or(SfuError::SessionNotFound),
            ),
            Command::Tap { room } => Reply::Tap(self.attach_tap(room)),
            Command::RequestKeyframe { room } => {
                self.counters.keyframe_requests += 1;
                self.request_keyframe(&room, now);
                Reply::None
            }
            Command::SendData { peer, text } => {
                self.send_text(peer, &text, now);
                Reply::None
            }
            Command::BroadcastData { room, text } => {
                let members = self
                    .rooms
                    .get(&room)
                    .map(|r| r.members.clone())
                    .unwrap_or_default();
                for peer in members {
                    self.send_text(peer, &text, now);
                }
                Reply::None
            }
            Command::Snapshot => {
                self.publish_counters();
                Reply::Snapshot(self.snapshot(now))
            }
            Command::Shutdown => {
                self.shutdown(now);
                self.publish_counters();
                Reply::Done(Ok(()))
            }
        }
    }

    /// Advances the clock: engine timers that are due, then housekeeping if it is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.run_timers(now);
        if self.next_replay_tick.is_some_and(|at| now >= at) {
            self.pace_replays(now);
        }
        if now >= self.next_housekeeping {
            self.next_housekeeping = now + HOUSEKEEPING_INTERVAL;
            self.housekeeping(now);
            self.publish_counters();
        }
    }

    /// The next datagram to send. Engines with output are drained one at a time as this
    /// is called, so what is held at once stays small.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        loop {
            if let Some(transmit) = self.transmits.pop_front() {
                return Some(transmit);
            }
            let id = self.to_flush.pop_front()?;
            if let Some(peer) = self.peers.get_mut(&id) {
                peer_state::drain_engine(
                    &mut peer.connection,
                    &mut peer.outbox,
                    &mut self.transmits,
                );
            }
        }
    }

    /// When [`SfuCore::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Instant {
        let next_timer = self.timers.peek().map(|Reverse((at, _))| *at);
        [next_timer, self.next_replay_tick]
            .into_iter()
            .flatten()
            .fold(self.next_housekeeping, Instant::min)
    }

    /// The next event for the rest of the server.
    pub fn poll_event(&mut self) -> Option<SfuEvent> {
        self.events.pop_front()
    }

    /// The core's own counters (not yet published ones included).
    pub fn counters(&self) -> &SfuCounters {
        &self.counters
    }

    /// Adds what the counters gained since the last call to the shared atomics.
    pub fn publish_counters(&mut self) {
        self.counters.publish(&mut self.published, &self.stats);
        if !self.unknown_sources.is_empty() {
            self.stats.record_unknown_sources(&mut self.unknown_sources);
        }
    }

    /// The lifecycle state of a session, if it exists.
    pub fn lifecycle(&self, peer: PeerId) -> Option<Lifecycle> {
        self.peers.get(&peer).map(|p| p.lifecycle)
    }

    /// The whole shard at a glance.
    pub fn snapshot(&self, now: Instant) -> SfuSnapshot {
        let rooms = self
            .rooms
            .values()
            .map(|room| {
                let publisher = room
                    .publisher
                    .filter(|id| self.peers.contains_key(id) || self.is_ingest(*id));
                let live = publisher.is_some_and(|id| self.publisher_has_recent_media(id, now));
                RoomSnapshot {
                    id: room.id.to_string(),
                    live,
                    publisher: publisher.map(|id| id.to_string()),
                    viewers: room.viewers.len(),
                    sessions: room.members.len(),
                    audio: room.codecs.audio.map(|c| c.to_string()),
                    video: room.codecs.video.as_ref().map(|(c, _)| c.to_string()),
                    epoch: room.epoch,
                    taps: room.taps.len(),
                    mirror: room.home.is_some(),
                }
            })
            .collect();
        let viewers = self.rooms.values().map(|room| room.viewers.len()).sum();
        SfuSnapshot {
            rooms,
            shards: vec![crate::session::ShardSnapshot {
                peers: self.peers.len(),
                viewers,
                mirrors: self.rooms.values().filter(|r| r.home.is_some()).count(),
                redirects: self.redirects.len(),
            }],
            peers: self.peers.len(),
            demux_ufrags: self.demux.len(),
            demux_addresses: self.demux.address_count(),
            timers: self.timers.len(),
        }
    }

    /// Schedules a full drain of the peer's engine (after input, timers, RTCP, data).
    fn mark_flush(&mut self, id: PeerId) {
        if let Some(peer) = self.peers.get_mut(&id) {
            peer.outbox.full = true;
            if !peer.outbox.queued {
                peer.outbox.queued = true;
                self.to_flush.push_back(id);
            }
        }
    }
}
