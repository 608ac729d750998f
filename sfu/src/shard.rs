//! The shard: one task that owns the UDP socket, every peer and every room.
//!
//! Nothing here is shared: other tasks talk to the shard by `Command` and hear from it
//! through events and taps, so the packet path takes no lock and awaits nothing. One wake-
//! up reads a batch of datagrams (`recvmmsg`), routes each to its peer's sans-IO engine,
//! fans publisher packets out through each viewer's [`Forwarder`], then drains the engines
//! it touched (SRTP happens there) and sends with `sendmmsg` — UDP GSO for runs to one
//! viewer — before reading the next batch.
//!
//! Output is bounded everywhere: an engine is drained every `MAX_RTP_PER_DRAIN` packets
//! (its internal queues keep their peak size for the peer's life), the socket queue is sent
//! every `SEND_EARLY` datagrams, and a joiner's cached GOP goes out in slices. See
//! BENCHMARKS.md for what each of these bought.

use crate::config::SfuConfig;
use crate::demux::{DemuxTable, Route};
use crate::error::SfuError;
use crate::events::{CloseReason, SfuEvent};
use crate::forwarder::{DropReason, Forwarder, ForwarderConfig, OutputHeader};
use crate::handle::{PeerRole, RoomSnapshot, SfuSnapshot};
use crate::ids::{PeerId, RoomId};
use crate::keyframe;
use crate::keyframe_cache::KeyframeCache;
use crate::media::{Codec, MediaKind, SourcePacket};
use crate::packet_ring::{AUDIO_RING_SIZE, Insert, PacketRing, VIDEO_RING_SIZE};
use crate::peer::{InboundTrackPlan, NegotiatedPeer, OutboundTrackPlan, RoomCodecs};
use crate::pli_coalescer::PliCoalescer;
use crate::stats::SfuStats;
use crate::tap::{TapEvent, TapReceiver};
use crate::udp::{RecvBatch, SendQueue};
use bytes::{Bytes, BytesMut};
use rtc::data_channel::{RTCDataChannelId, RTCDataChannelInit};
use rtc::peer_connection::RTCPeerConnection;
use rtc::peer_connection::event::{RTCDataChannelEvent, RTCPeerConnectionEvent, RTCTrackEvent};
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::sender_report::SenderReport;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::rtp_transceiver::RTCRtpReceiverId;
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{broadcast, mpsc, oneshot};

/// The label of the data channel that carries room events.
pub const ROOM_CHANNEL_LABEL: &str = "room";
/// How long after connecting we wait for the client to open its own `room` channel before
/// opening one ourselves.
const DATA_CHANNEL_GRACE: Duration = Duration::from_millis(300);
/// How often timeouts, idle rooms and pending PLIs are checked.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_millis(100);
/// Most datagrams handled per wake-up before the shard yields.
const MAX_DATAGRAMS_PER_WAKE: usize = 512;
/// Forwarded packets a peer's engine may hold before they are drained (encrypted and
/// queued for the socket). The engine's internal queues keep their peak capacity for the
/// life of the peer, so a burst (a joiner's GOP replay, an unpaced keyframe) pushed in
/// whole would leave every viewer holding hundreds of kilobytes of empty queues.
const MAX_RTP_PER_DRAIN: u32 = 8;
/// Datagrams queued for the socket before they are sent in the middle of a wake-up: bounds
/// the encrypted copies held at once and how long the first viewers' packets wait.
const SEND_EARLY: usize = 256;
/// How long after a peer nominates its ICE pair we start DTLS (we are the DTLS client).
/// rtc 0.21 builds the ClientHello as soon as ICE selects a pair but hands it out only
/// from `handle_timeout`, i.e. at the ICE agent's next tick — up to 200 ms into every
/// join. Running the timers shortly after the nomination sends it at once; the few
/// milliseconds let the binding response that completes the peer's ICE arrive and be
/// handled first, because clients that read a burst of datagrams before updating their
/// ICE state (webrtc-rs) drop a ClientHello that overtakes it and wait for the DTLS
/// retransmission (1 s). Browsers would keep it either way.
const DTLS_START_DELAY: Duration = Duration::from_millis(10);
/// Most sequence numbers answered from one NACK packet.
const MAX_RETRANSMISSIONS_PER_NACK: usize = 256;
/// The 3GPP coordination-of-video-orientation values, so attaching one needs no allocation.
static ORIENTATION_BYTES: [u8; 256] = {
    let mut bytes = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        bytes[i] = i as u8;
        i += 1;
    }
    bytes
};

type Reply<T> = oneshot::Sender<Result<T, SfuError>>;

/// Peers by id. The map is read once per viewer per forwarded packet, and SipHash (the
/// std default, built against untrusted keys) costs more there than the rest of the
/// lookup; peer ids are minted by us (an odd multiple of a 64-bit constant), so a
/// multiplicative hash spreads them well and nobody outside can choose them.
type PeerMap<V> = HashMap<PeerId, V, BuildHasherDefault<PeerIdHasher>>;

/// FxHash-style multiply–rotate hasher for [`PeerId`]s (see [`PeerMap`]).
#[derive(Debug, Default, Clone, Copy)]
struct PeerIdHasher(u64);

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

/// Messages to the shard.
pub(crate) enum Command {
    AddPublisher {
        room: RoomId,
        peer: PeerId,
        negotiated: NegotiatedPeer<InboundTrackPlan>,
        reply: Reply<()>,
    },
    AddViewer {
        room: RoomId,
        peer: PeerId,
        codecs: RoomCodecs,
        negotiated: NegotiatedPeer<OutboundTrackPlan>,
        reply: Reply<()>,
    },
    RoomCodecs {
        room: RoomId,
        reply: Reply<RoomCodecs>,
    },
    ClosePeer {
        peer: PeerId,
        reply: Reply<(RoomId, PeerRole)>,
    },
    SessionInfo {
        peer: PeerId,
        reply: Reply<(RoomId, PeerRole)>,
    },
    Tap {
        room: RoomId,
        reply: Reply<TapReceiver>,
    },
    RequestKeyframe {
        room: RoomId,
    },
    SendData {
        peer: PeerId,
        text: Arc<str>,
    },
    BroadcastData {
        room: RoomId,
        text: Arc<str>,
    },
    Snapshot {
        reply: Reply<SfuSnapshot>,
    },
    Shutdown {
        reply: Reply<()>,
    },
}

/// A publisher's per-session state.
struct PublisherState {
    /// Per kind: the negotiated track.
    tracks: [Option<InboundTrackPlan>; 2],
    /// Per kind: the engine's receiver and the media SSRC seen (for PLI).
    receivers: [Option<RTCRtpReceiverId>; 2],
    ssrcs: [Option<u32>; 2],
    /// Per kind: timestamp of the previous packet (frame-start detection).
    last_timestamp: [Option<u32>; 2],
    epoch: u32,
    last_media_at: Option<Instant>,
}

/// One outbound track of a viewer.
struct ViewerTrack {
    plan: OutboundTrackPlan,
    forwarder: Forwarder,
}

enum Role {
    Publisher(PublisherState),
    Viewer([Option<ViewerTrack>; 2]),
}

impl Role {
    fn kind(&self) -> PeerRole {
        match self {
            Role::Publisher(_) => PeerRole::Publisher,
            Role::Viewer(_) => PeerRole::Viewer,
        }
    }
}

struct Peer {
    room: RoomId,
    connection: RTCPeerConnection,
    role: Role,
    created_at: Instant,
    connected_at: Option<Instant>,
    last_received: Instant,
    offers_data_channel: bool,
    data_channel: Option<RTCDataChannelId>,
    opened_data_channel: bool,
    /// The deadline this peer is registered under in the timer heap.
    timer: Option<Instant>,
    /// The peer nominated its ICE pair and a timer was set to start DTLS.
    dtls_started: bool,
    /// What its engine holds for the wire.
    outbox: Outbox,
}

/// What a peer's engine holds for the wire since it was last drained.
#[derive(Debug, Default, Clone, Copy)]
struct Outbox {
    /// Queued in `to_flush` already.
    queued: bool,
    /// Forwarded RTP packets written into the engine and not drained yet.
    rtp: u32,
    /// Something else may be waiting (input, timers, RTCP, data channel): drain until the
    /// engine is empty.
    full: bool,
}

struct Room {
    id: RoomId,
    publisher: Option<PeerId>,
    epoch: u32,
    codecs: RoomCodecs,
    /// Connected viewers that receive media.
    viewers: Vec<PeerId>,
    /// Every session in the room, connected or not.
    members: Vec<PeerId>,
    rings: [PacketRing; 2],
    keyframe_cache: KeyframeCache,
    pli: PliCoalescer,
    taps: Vec<mpsc::Sender<TapEvent>>,
    idle_since: Option<Instant>,
}

impl Room {
    fn new(id: RoomId, now: Instant) -> Self {
        Self {
            id,
            publisher: None,
            epoch: 0,
            codecs: RoomCodecs::default(),
            viewers: Vec::new(),
            members: Vec::new(),
            rings: [
                PacketRing::new(AUDIO_RING_SIZE),
                PacketRing::new(VIDEO_RING_SIZE),
            ],
            keyframe_cache: KeyframeCache::default(),
            pli: PliCoalescer::default(),
            taps: Vec::new(),
            idle_since: Some(now),
        }
    }

    /// Delivers an event to every tap without waiting; full taps lose it, closed ones go.
    fn send_to_taps(&mut self, event: TapEvent, dropped: &AtomicU64) {
        self.taps.retain(|tap| match tap.try_send(event.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                SfuStats::add(dropped, 1);
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
    }
}

pub(crate) struct Shard {
    config: SfuConfig,
    /// Our candidate address: the `local_addr` the ICE agents know.
    advertised: SocketAddr,
    stats: Arc<SfuStats>,
    events: broadcast::Sender<SfuEvent>,
    peers: PeerMap<Peer>,
    rooms: HashMap<RoomId, Room>,
    demux: DemuxTable,
    timers: BinaryHeap<Reverse<(Instant, PeerId)>>,
    to_flush: Vec<PeerId>,
    send_queue: SendQueue,
    /// The socket, once `run` has it.
    fd: Option<RawFd>,
}

impl Shard {
    pub(crate) fn new(
        config: SfuConfig,
        advertised: SocketAddr,
        stats: Arc<SfuStats>,
        events: broadcast::Sender<SfuEvent>,
    ) -> Self {
        Self {
            config,
            advertised,
            stats,
            events,
            peers: PeerMap::default(),
            rooms: HashMap::new(),
            demux: DemuxTable::new(),
            timers: BinaryHeap::new(),
            to_flush: Vec::new(),
            send_queue: SendQueue::default(),
            fd: None,
        }
    }

    /// The event loop. Returns after `Shutdown` or when every handle is gone.
    pub(crate) async fn run(
        mut self,
        socket: tokio::net::UdpSocket,
        mut commands: mpsc::Receiver<Command>,
    ) {
        let mut batch = RecvBatch::default();
        let mut housekeeping = tokio::time::interval(HOUSEKEEPING_INTERVAL);
        housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let fd = socket.as_raw_fd();
        self.fd = Some(fd);
        loop {
            let next_timer = self.timers.peek().map(|Reverse((at, _))| *at);
            let timer = async {
                match next_timer {
                    Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
                    None => std::future::pending().await,
                }
            };
            let wants_write = !self.send_queue.is_empty();
            tokio::select! {
                biased;
                command = commands.recv() => match command {
                    Some(Command::Shutdown { reply }) => {
                        self.shutdown(Instant::now());
                        self.flush_peers();
                        self.send();
                        let _ = reply.send(Ok(()));
                        break;
                    }
                    Some(command) => self.handle_command(command, Instant::now()),
                    None => {
                        self.shutdown(Instant::now());
                        self.flush_peers();
                        self.send();
                        break;
                    }
                },
                ready = socket.writable(), if wants_write => {
                    if ready.is_ok() {
                        self.send();
                    }
                }
                ready = socket.readable() => {
                    if ready.is_ok() {
                        let mut handled = 0;
                        while handled < MAX_DATAGRAMS_PER_WAKE {
                            let result = socket.try_io(tokio::io::Interest::READABLE, || batch.recv(fd));
                            match result {
                                Ok(0) | Err(_) => break,
                                Ok(count) => {
                                    handled += count;
                                    let now = Instant::now();
                                    for (datagram, from) in batch.iter() {
                                        if let Some(from) = from {
                                            self.on_datagram(datagram, from, now);
                                        }
                                    }
                                    // Out before the next batch is read: a burst of input
                                    // must not hold back what is ready to go.
                                    self.flush_peers();
                                    self.send();
                                }
                            }
                        }
                    }
                }
                _ = timer => self.run_timers(Instant::now()),
                _ = housekeeping.tick() => self.housekeeping(Instant::now()),
            }
            self.flush_peers();
            self.send();
        }
        tracing::info!("media plane stopped");
    }

    // ----------------------------------------------------------------------------------
    // Commands

    fn handle_command(&mut self, command: Command, now: Instant) {
        match command {
            Command::AddPublisher {
                room,
                peer,
                negotiated,
                reply,
            } => {
                let _ = reply.send(self.add_publisher(room, peer, negotiated, now));
            }
            Command::AddViewer {
                room,
                peer,
                codecs,
                negotiated,
                reply,
            } => {
                let _ = reply.send(self.add_viewer(room, peer, codecs, negotiated, now));
            }
            Command::RoomCodecs { room, reply } => {
                let result = match self.rooms.get(&room) {
                    Some(r) if r.codecs.audio.is_some() || r.codecs.video.is_some() => {
                        Ok(r.codecs.clone())
                    }
                    _ => Err(SfuError::RoomNotFound(room)),
                };
                let _ = reply.send(result);
            }
            Command::ClosePeer { peer, reply } => {
                let result = self
                    .close_peer(peer, CloseReason::Deleted, now)
                    .ok_or(SfuError::SessionNotFound);
                let _ = reply.send(result);
            }
            Command::SessionInfo { peer, reply } => {
                let result = self
                    .peers
                    .get(&peer)
                    .map(|p| (p.room.clone(), p.role.kind()))
                    .ok_or(SfuError::SessionNotFound);
                let _ = reply.send(result);
            }
            Command::Tap { room, reply } => {
                let result = match self.rooms.get_mut(&room) {
                    Some(r) => {
                        let (sender, receiver) = mpsc::channel(self.config.tap_queue);
                        if let Some(publisher) = r.publisher.and_then(|id| self.peers.get(&id))
                            && let Role::Publisher(state) = &publisher.role
                            && state.last_media_at.is_some()
                        {
                            let _ = sender.try_send(TapEvent::PublisherStarted {
                                epoch: state.epoch,
                                audio: state.tracks[0].as_ref().map(|t| t.codec),
                                video: state.tracks[1].as_ref().map(|t| t.codec),
                            });
                            // Give the new consumer the current GOP so it can start at once.
                            if let Some((packets, _)) = r.keyframe_cache.snapshot(r.epoch) {
                                for packet in packets {
                                    let _ = sender.try_send(TapEvent::Packet(Arc::clone(packet)));
                                }
                            }
                        }
                        r.taps.push(sender);
                        Ok(receiver)
                    }
                    None => Err(SfuError::RoomNotFound(room)),
                };
                let _ = reply.send(result);
            }
            Command::RequestKeyframe { room } => {
                SfuStats::add(&self.stats.keyframe_requests, 1);
                self.request_keyframe(&room, now);
            }
            Command::SendData { peer, text } => self.send_text(peer, &text, now),
            Command::BroadcastData { room, text } => {
                let members = self
                    .rooms
                    .get(&room)
                    .map(|r| r.members.clone())
                    .unwrap_or_default();
                for peer in members {
                    self.send_text(peer, &text, now);
                }
            }
            Command::Snapshot { reply } => {
                let _ = reply.send(Ok(self.snapshot(now)));
            }
            Command::Shutdown { .. } => unreachable!("handled by the loop"),
        }
    }

    fn add_publisher(
        &mut self,
        room_id: RoomId,
        id: PeerId,
        negotiated: NegotiatedPeer<InboundTrackPlan>,
        now: Instant,
    ) -> Result<(), SfuError> {
        if self.peers.len() >= self.config.max_peers {
            return Err(SfuError::Capacity(self.config.max_peers));
        }
        let stale_after = self.config.publisher_stale_after;
        let room = self
            .rooms
            .entry(room_id.clone())
            .or_insert_with(|| Room::new(room_id.clone(), now));
        if let Some(existing) = room.publisher {
            let live = self.peers.get(&existing).is_some_and(|p| match &p.role {
                Role::Publisher(state) => {
                    let recent_media = state
                        .last_media_at
                        .is_some_and(|at| now.saturating_duration_since(at) < stale_after);
                    let connecting = p.connected_at.is_none()
                        && now.saturating_duration_since(p.created_at)
                            < self.config.connect_timeout;
                    recent_media || connecting
                }
                Role::Viewer(_) => false,
            });
            if live {
                return Err(SfuError::PublisherConflict(room_id));
            }
        }
        // Viewers negotiated the room's codecs; a new publisher must keep them.
        let room = self.rooms.get(&room_id).expect("inserted above");
        let has_viewers = !room.members.iter().all(|m| Some(*m) == room.publisher);
        let new_codecs = codecs_of(&negotiated.tracks);
        if has_viewers {
            if let (Some(old), Some(new)) = (room.codecs.audio, new_codecs.audio)
                && old != new
            {
                return Err(SfuError::CodecConflict {
                    room: room_id,
                    expected: old.to_string(),
                });
            }
            if let (Some((old, _)), Some((new, _))) = (&room.codecs.video, &new_codecs.video)
                && old != new
            {
                return Err(SfuError::CodecConflict {
                    room: room_id,
                    expected: old.to_string(),
                });
            }
        }
        if let Some(existing) = room.publisher {
            self.close_peer(existing, CloseReason::Replaced, now);
        }
        let room = self.rooms.get_mut(&room_id).expect("inserted above");
        room.codecs = RoomCodecs {
            audio: new_codecs
                .audio
                .or(if has_viewers { room.codecs.audio } else { None }),
            video: new_codecs.video.or(if has_viewers {
                room.codecs.video.clone()
            } else {
                None
            }),
        };
        room.epoch = room.epoch.wrapping_add(1);
        room.publisher = Some(id);
        room.members.push(id);
        room.idle_since = None;
        room.keyframe_cache.clear();
        room.pli.reset();
        let epoch = room.epoch;
        let NegotiatedPeer {
            connection,
            local_ufrag,
            tracks,
            has_data_channel,
            ..
        } = negotiated;
        self.demux.register(id, &local_ufrag);
        self.peers.insert(
            id,
            Peer {
                room: room_id.clone(),
                connection,
                role: Role::Publisher(PublisherState {
                    tracks,
                    receivers: [None, None],
                    ssrcs: [None, None],
                    last_timestamp: [None, None],
                    epoch,
                    last_media_at: None,
                }),
                created_at: now,
                connected_at: None,
                last_received: now,
                offers_data_channel: has_data_channel,
                data_channel: None,
                opened_data_channel: false,
                timer: None,
                dtls_started: false,
                outbox: Outbox::default(),
            },
        );
        SfuStats::add(&self.stats.peers_created, 1);
        tracing::info!(room = %room_id, peer = %id, epoch, "publisher session created");
        self.drain_peer(id, now);
        Ok(())
    }

    fn add_viewer(
        &mut self,
        room_id: RoomId,
        id: PeerId,
        codecs: RoomCodecs,
        negotiated: NegotiatedPeer<OutboundTrackPlan>,
        now: Instant,
    ) -> Result<(), SfuError> {
        if self.peers.len() >= self.config.max_peers {
            return Err(SfuError::Capacity(self.config.max_peers));
        }
        let room = self
            .rooms
            .get_mut(&room_id)
            .ok_or_else(|| SfuError::RoomNotFound(room_id.clone()))?;
        if room.codecs.audio != codecs.audio
            || room.codecs.video.as_ref().map(|v| v.0) != codecs.video.as_ref().map(|v| v.0)
        {
            return Err(SfuError::CodecConflict {
                room: room_id,
                expected: "the codecs the room changed to while this offer was answered (retry)"
                    .into(),
            });
        }
        room.members.push(id);
        room.idle_since = None;
        let NegotiatedPeer {
            connection,
            local_ufrag,
            tracks,
            has_data_channel,
            ..
        } = negotiated;
        let mut rng_seq: u16 = rand::random();
        let mut viewer_tracks: [Option<ViewerTrack>; 2] = [None, None];
        for (slot, plan) in viewer_tracks.iter_mut().zip(tracks) {
            *slot = plan.map(|plan| {
                rng_seq = rng_seq.wrapping_add(7919);
                ViewerTrack {
                    forwarder: Forwarder::new(ForwarderConfig {
                        kind: plan.codec.kind(),
                        clock_rate: plan.codec.clock_rate(),
                        ssrc: plan.ssrc,
                        payload_type: plan.payload_type,
                        video_orientation_id: plan.video_orientation_id,
                        initial_sequence_number: rng_seq,
                        initial_timestamp: rand::random(),
                    }),
                    plan,
                }
            });
        }
        self.demux.register(id, &local_ufrag);
        self.peers.insert(
            id,
            Peer {
                room: room_id.clone(),
                connection,
                role: Role::Viewer(viewer_tracks),
                created_at: now,
                connected_at: None,
                last_received: now,
                offers_data_channel: has_data_channel,
                data_channel: None,
                opened_data_channel: false,
                timer: None,
                dtls_started: false,
                outbox: Outbox::default(),
            },
        );
        SfuStats::add(&self.stats.peers_created, 1);
        tracing::debug!(room = %room_id, peer = %id, "viewer session created");
        self.drain_peer(id, now);
        Ok(())
    }

    // ----------------------------------------------------------------------------------
    // Datagrams, engine events and messages

    fn on_datagram(&mut self, datagram: &[u8], from: SocketAddr, now: Instant) {
        SfuStats::add(&self.stats.datagrams_in, 1);
        SfuStats::add(&self.stats.bytes_in, datagram.len() as u64);
        let id = match self.demux.route(datagram, from) {
            Route::Peer(id) => id,
            Route::UnknownUfrag => return SfuStats::add(&self.stats.dropped_unknown_ufrag, 1),
            Route::MalformedStun => return SfuStats::add(&self.stats.dropped_malformed_stun, 1),
            Route::UnknownAddress => return SfuStats::add(&self.stats.dropped_unknown_address, 1),
        };
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        peer.last_received = now;
        let nominates = !peer.dtls_started && stun_nominates(datagram);
        let message = TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr: self.advertised,
                peer_addr: from,
                ecn: None,
                transport_protocol: TransportProtocol::UDP,
            },
            message: BytesMut::from(datagram),
        };
        if let Err(err) = peer.connection.handle_read(message) {
            tracing::debug!(peer = %id, %err, "engine rejected a datagram");
        }
        self.drain_peer(id, now);
        if nominates && let Some(peer) = self.peers.get_mut(&id) {
            peer.dtls_started = true;
            let at = now + DTLS_START_DELAY;
            if peer.timer.is_none_or(|current| at < current) {
                peer.timer = Some(at);
                self.timers.push(Reverse((at, id)));
            }
        }
    }

    /// Processes everything the engine has for the application after input, then
    /// schedules the peer's writes and its next timeout.
    fn drain_peer(&mut self, id: PeerId, now: Instant) {
        loop {
            let Some(peer) = self.peers.get_mut(&id) else {
                return;
            };
            let Some(event) = peer.connection.poll_event() else {
                break;
            };
            self.on_engine_event(id, event, now);
        }
        loop {
            let Some(peer) = self.peers.get_mut(&id) else {
                return;
            };
            let Some(message) = peer.connection.poll_read() else {
                break;
            };
            match message.message {
                RTCMessage::RtpPacket(_, packet) => self.on_rtp(id, packet, message.now),
                RTCMessage::RtcpPacket(_, packets) => self.on_rtcp(id, packets, now),
                RTCMessage::DataChannelMessage(channel, data) => self.on_data(id, channel, data),
                _ => {}
            }
        }
        self.mark_flush(id);
        self.reschedule(id, now);
    }

    fn on_engine_event(&mut self, id: PeerId, event: RTCPeerConnectionEvent, now: Instant) {
        match event {
            RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) => match state {
                RTCPeerConnectionState::Connected => self.on_connected(id, now),
                RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => {
                    self.close_peer(id, CloseReason::Failed, now);
                }
                _ => {}
            },
            RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init)) => {
                let Some(peer) = self.peers.get_mut(&id) else {
                    return;
                };
                let kind = peer
                    .connection
                    .rtp_receiver(init.receiver_id)
                    .map(|receiver| receiver.track().kind());
                if let Role::Publisher(state) = &mut peer.role {
                    let index = match kind {
                        Some(rtc::rtp_transceiver::rtp_sender::RtpCodecKind::Audio) => 0,
                        Some(rtc::rtp_transceiver::rtp_sender::RtpCodecKind::Video) => 1,
                        _ => return,
                    };
                    state.receivers[index] = Some(init.receiver_id);
                    state.ssrcs[index] = Some(init.ssrc);
                }
            }
            RTCPeerConnectionEvent::OnDataChannel(RTCDataChannelEvent::OnOpen(channel)) => {
                let Some(peer) = self.peers.get_mut(&id) else {
                    return;
                };
                let is_room = peer
                    .connection
                    .data_channel(channel)
                    .is_some_and(|dc| dc.label() == ROOM_CHANNEL_LABEL);
                if is_room && peer.data_channel.is_none() {
                    peer.data_channel = Some(channel);
                    let room = peer.room.clone();
                    let _ = self
                        .events
                        .send(SfuEvent::DataChannelOpen { room, peer: id });
                }
            }
            RTCPeerConnectionEvent::OnDataChannel(RTCDataChannelEvent::OnClose(channel)) => {
                if let Some(peer) = self.peers.get_mut(&id)
                    && peer.data_channel == Some(channel)
                {
                    peer.data_channel = None;
                }
            }
            _ => {}
        }
    }

    fn on_connected(&mut self, id: PeerId, now: Instant) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        if peer.connected_at.is_some() {
            return;
        }
        peer.connected_at = Some(now);
        let room_id = peer.room.clone();
        let role = peer.role.kind();
        tracing::info!(room = %room_id, peer = %id, ?role, "session connected");
        let _ = self.events.send(SfuEvent::PeerConnected {
            room: room_id.clone(),
            peer: id,
            role,
        });
        match role {
            PeerRole::Viewer => self.start_viewer(id, &room_id, now),
            // An encoder starts with a keyframe: nothing to ask for yet.
            PeerRole::Publisher => {}
        }
    }

    /// A viewer finished connecting: it starts receiving, on the cached GOP if there is one.
    fn start_viewer(&mut self, id: PeerId, room_id: &RoomId, now: Instant) {
        let Self {
            rooms,
            peers,
            stats,
            to_flush,
            events,
            send_queue,
            ..
        } = self;
        let Some(room) = rooms.get_mut(room_id) else {
            return;
        };
        let Some(peer) = peers.get_mut(&id) else {
            return;
        };
        room.viewers.push(id);
        let _ = events.send(SfuEvent::ViewerCount {
            room: room_id.clone(),
            viewers: room.viewers.len(),
        });
        let Role::Viewer(tracks) = &mut peer.role else {
            return;
        };
        let Some(video) = tracks[MediaKind::Video.index()].as_mut() else {
            return;
        };
        match room.keyframe_cache.snapshot(room.epoch) {
            Some((packets, frames)) => {
                SfuStats::add(&stats.keyframe_cache_hits, 1);
                video.forwarder.prepare_replay(&packets[0], frames, now);
                for packet in packets {
                    if let Ok(header) = video.forwarder.forward(packet, now) {
                        write_rtp(&mut peer.connection, &header, packet, now, stats);
                        SfuStats::add(&stats.keyframe_cache_replayed, 1);
                        peer.outbox.rtp += 1;
                        // The GOP goes out in slices, never whole into the engine.
                        if peer.outbox.rtp >= MAX_RTP_PER_DRAIN {
                            drain_engine(&mut peer.connection, &mut peer.outbox, send_queue);
                        }
                    }
                }
                peer.outbox.full = true;
                if !peer.outbox.queued {
                    peer.outbox.queued = true;
                    to_flush.push(id);
                }
            }
            None => {
                SfuStats::add(&stats.keyframe_cache_misses, 1);
                if room.publisher.is_some() {
                    SfuStats::add(&stats.keyframe_requests, 1);
                    self.request_keyframe(room_id, now);
                }
            }
        }
    }

    fn on_rtp(&mut self, id: PeerId, packet: rtc::rtp::packet::Packet, received_at: Instant) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let Role::Publisher(state) = &mut peer.role else {
            return;
        };
        SfuStats::add(&self.stats.rtp_in, 1);
        let payload_type = packet.header.payload_type;
        let Some(plan) = state
            .tracks
            .iter()
            .flatten()
            .find(|t| t.payload_type == payload_type)
        else {
            return SfuStats::add(&self.stats.rtp_unknown_payload_type, 1);
        };
        let codec = plan.codec;
        let kind = codec.kind().index();
        let video_orientation = plan
            .video_orientation_id
            .and_then(|ext| packet.header.get_extension(ext))
            .and_then(|value| value.first().copied());
        let frame_start = state.last_timestamp[kind] != Some(packet.header.timestamp);
        state.last_timestamp[kind] = Some(packet.header.timestamp);
        state.ssrcs[kind] = Some(packet.header.ssrc);
        let first_media = state.last_media_at.is_none();
        state.last_media_at = Some(received_at);
        let epoch = state.epoch;
        let source = Arc::new(SourcePacket {
            codec,
            epoch,
            sequence_number: packet.header.sequence_number,
            timestamp: packet.header.timestamp,
            marker: packet.header.marker,
            keyframe: keyframe::is_keyframe(codec, &packet.payload),
            frame_start,
            video_orientation,
            received_at,
            payload: packet.payload,
        });
        let room_id = peer.room.clone();
        if first_media {
            let tracks = [
                state.tracks[0].as_ref().map(|t| t.codec),
                state.tracks[1].as_ref().map(|t| t.codec),
            ];
            if let Some(room) = self.rooms.get_mut(&room_id) {
                room.send_to_taps(
                    TapEvent::PublisherStarted {
                        epoch,
                        audio: tracks[0],
                        video: tracks[1],
                    },
                    &self.stats.tap_dropped,
                );
            }
            tracing::info!(room = %room_id, epoch, "room is live");
            let _ = self.events.send(SfuEvent::Live {
                room: room_id.clone(),
                epoch,
            });
        }
        self.fan_out(&room_id, source, received_at);
    }

    /// The hot path: one publisher packet to every viewer of the room and every tap.
    fn fan_out(&mut self, room_id: &RoomId, source: Arc<SourcePacket>, now: Instant) {
        let Self {
            rooms,
            peers,
            stats,
            to_flush,
            send_queue,
            ..
        } = self;
        let Some(room) = rooms.get_mut(room_id) else {
            return;
        };
        if source.epoch != room.epoch {
            return SfuStats::add(&stats.forward_stale, 1);
        }
        let kind = source.kind();
        match room.rings[kind.index()].insert(&source) {
            Insert::New => {}
            Insert::Duplicate => return SfuStats::add(&stats.rtp_duplicates, 1),
            Insert::TooOld => return SfuStats::add(&stats.rtp_too_old, 1),
        }
        if kind == MediaKind::Video {
            room.keyframe_cache.push(&source);
            if source.keyframe {
                room.pli.keyframe_received();
            }
        }
        let mut wants_keyframe = false;
        for &viewer in &room.viewers {
            let Some(peer) = peers.get_mut(&viewer) else {
                continue;
            };
            let Role::Viewer(tracks) = &mut peer.role else {
                continue;
            };
            let Some(track) = tracks[kind.index()].as_mut() else {
                continue;
            };
            match track.forwarder.forward(&source, now) {
                Ok(header) => {
                    write_rtp(&mut peer.connection, &header, &source, now, stats);
                    peer.outbox.rtp += 1;
                    if peer.outbox.rtp >= MAX_RTP_PER_DRAIN {
                        drain_engine(&mut peer.connection, &mut peer.outbox, send_queue);
                    } else if !peer.outbox.queued {
                        peer.outbox.queued = true;
                        to_flush.push(viewer);
                    }
                }
                Err(DropReason::WaitingForKeyframe) => {
                    wants_keyframe = true;
                    SfuStats::add(&stats.forward_waiting_for_keyframe, 1);
                }
                Err(DropReason::Stale | DropReason::OldEpoch) => {
                    SfuStats::add(&stats.forward_stale, 1)
                }
            }
        }
        if !room.taps.is_empty() {
            room.send_to_taps(TapEvent::Packet(source), &stats.tap_dropped);
        }
        if wants_keyframe {
            let room_id = room.id.clone();
            self.request_keyframe(&room_id, now);
        }
    }

    fn on_rtcp(
        &mut self,
        id: PeerId,
        packets: Vec<Box<dyn rtc::rtcp::packet::Packet>>,
        now: Instant,
    ) {
        let Self {
            rooms,
            peers,
            stats,
            to_flush,
            send_queue,
            ..
        } = self;
        let Some(peer) = peers.get_mut(&id) else {
            return;
        };
        let Some(room) = rooms.get_mut(&peer.room) else {
            return;
        };
        let mut wants_keyframe = false;
        match &mut peer.role {
            Role::Publisher(state) => {
                for packet in &packets {
                    if let Some(report) = packet.as_any().downcast_ref::<SenderReport>() {
                        let Some(kind) = state.ssrcs.iter().position(|s| *s == Some(report.ssrc))
                        else {
                            continue;
                        };
                        let Some(track) = &state.tracks[kind] else {
                            continue;
                        };
                        let event = TapEvent::SenderReport {
                            epoch: state.epoch,
                            codec: track.codec,
                            rtp_time: report.rtp_time,
                            wallclock: ntp_to_system_time(report.ntp_time),
                        };
                        room.send_to_taps(event, &stats.tap_dropped);
                    }
                }
            }
            Role::Viewer(tracks) => {
                let mut answered = 0;
                for packet in &packets {
                    let any = packet.as_any();
                    if let Some(nack) = any.downcast_ref::<TransportLayerNack>() {
                        let Some(track) = tracks
                            .iter()
                            .flatten()
                            .find(|t| t.plan.ssrc == nack.media_ssrc)
                        else {
                            continue;
                        };
                        let ring = &room.rings[track.plan.codec.kind().index()];
                        for pair in &nack.nacks {
                            for output_seq in *pair {
                                SfuStats::add(&stats.nacks_received, 1);
                                if answered >= MAX_RETRANSMISSIONS_PER_NACK {
                                    continue;
                                }
                                let source = track
                                    .forwarder
                                    .source_sequence_number(output_seq, room.epoch)
                                    .and_then(|seq| ring.get(room.epoch, seq));
                                match source.and_then(|packet| {
                                    Some((packet, track.forwarder.retransmission(packet)?))
                                }) {
                                    Some((packet, header)) => {
                                        answered += 1;
                                        write_rtp(
                                            &mut peer.connection,
                                            &header,
                                            packet,
                                            now,
                                            stats,
                                        );
                                        peer.outbox.rtp += 1;
                                        if peer.outbox.rtp >= MAX_RTP_PER_DRAIN {
                                            drain_engine(
                                                &mut peer.connection,
                                                &mut peer.outbox,
                                                send_queue,
                                            );
                                        }
                                        SfuStats::add(&stats.retransmissions, 1);
                                    }
                                    None => SfuStats::add(&stats.retransmission_misses, 1),
                                }
                            }
                        }
                    } else if any.downcast_ref::<PictureLossIndication>().is_some()
                        || any.downcast_ref::<FullIntraRequest>().is_some()
                    {
                        wants_keyframe = true;
                    }
                }
                if answered > 0 && !peer.outbox.queued {
                    peer.outbox.queued = true;
                    to_flush.push(id);
                }
            }
        }
        if wants_keyframe {
            SfuStats::add(&stats.keyframe_requests, 1);
            let room_id = room.id.clone();
            self.request_keyframe(&room_id, now);
        }
    }

    fn on_data(
        &mut self,
        id: PeerId,
        channel: RTCDataChannelId,
        data: rtc::data_channel::RTCDataChannelMessage,
    ) {
        let Some(peer) = self.peers.get(&id) else {
            return;
        };
        if peer.data_channel != Some(channel) || !data.is_string {
            return;
        }
        SfuStats::add(&self.stats.data_messages_in, 1);
        match std::str::from_utf8(&data.data) {
            Ok(text) => {
                let _ = self.events.send(SfuEvent::DataMessage {
                    room: peer.room.clone(),
                    peer: id,
                    text: Arc::from(text),
                });
            }
            Err(_) => tracing::debug!(peer = %id, "non-UTF-8 text message dropped"),
        }
    }

    fn send_text(&mut self, id: PeerId, text: &str, now: Instant) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let Some(channel) = peer.data_channel else {
            return;
        };
        let sent = peer
            .connection
            .data_channel(channel)
            .map(|mut dc| dc.send_text(now, text));
        if let Some(Ok(())) = sent {
            SfuStats::add(&self.stats.data_messages_out, 1);
            self.mark_flush(id);
        }
    }

    // ----------------------------------------------------------------------------------
    // Keyframes

    /// Asks the room's publisher for a keyframe, coalesced to one PLI per interval.
    fn request_keyframe(&mut self, room_id: &RoomId, now: Instant) {
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        let Some(publisher) = room.publisher else {
            return;
        };
        // Until the publisher's video stream is known there is nobody to ask; its first
        // frame is a keyframe anyway. Only a PLI that can be sent uses up the interval.
        let video_known = self
            .peers
            .get(&publisher)
            .is_some_and(|peer| match &peer.role {
                Role::Publisher(state) => state.ssrcs[MediaKind::Video.index()].is_some(),
                Role::Viewer(_) => false,
            });
        if video_known && room.pli.request(now) {
            self.send_pli(publisher, now);
        }
    }

    fn send_pli(&mut self, publisher: PeerId, now: Instant) {
        let Some(peer) = self.peers.get_mut(&publisher) else {
            return;
        };
        let Role::Publisher(state) = &peer.role else {
            return;
        };
        let video = MediaKind::Video.index();
        let (Some(receiver), Some(media_ssrc)) = (state.receivers[video], state.ssrcs[video])
        else {
            return;
        };
        let pli = PictureLossIndication {
            sender_ssrc: 0,
            media_ssrc,
        };
        let written = peer
            .connection
            .rtp_receiver(receiver)
            .map(|mut r| r.write_rtcp(now, vec![Box::new(pli)]));
        if let Some(Ok(())) = written {
            SfuStats::add(&self.stats.plis_sent, 1);
            tracing::debug!(peer = %publisher, "PLI sent to publisher");
            self.mark_flush(publisher);
        }
    }

    // ----------------------------------------------------------------------------------
    // Timers and housekeeping

    fn reschedule(&mut self, id: PeerId, now: Instant) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let Some(deadline) = peer.connection.poll_timeout() else {
            return;
        };
        // Never schedule into the past: a timer the engine does not advance would spin.
        let deadline = deadline.max(now + Duration::from_micros(500));
        if peer.timer.is_none_or(|current| deadline < current) {
            peer.timer = Some(deadline);
            self.timers.push(Reverse((deadline, id)));
        }
    }

    fn run_timers(&mut self, now: Instant) {
        while let Some(&Reverse((deadline, id))) = self.timers.peek() {
            if deadline > now {
                break;
            }
            self.timers.pop();
            let Some(peer) = self.peers.get_mut(&id) else {
                continue;
            };
            if peer.timer != Some(deadline) {
                continue;
            }
            peer.timer = None;
            if let Err(err) = peer.connection.handle_timeout(now) {
                tracing::debug!(peer = %id, %err, "engine timeout error");
            }
            self.drain_peer(id, now);
        }
    }

    fn housekeeping(&mut self, now: Instant) {
        let mut to_close = Vec::new();
        let mut open_channel = Vec::new();
        for (&id, peer) in &self.peers {
            match peer.connected_at {
                None if now.saturating_duration_since(peer.created_at)
                    > self.config.connect_timeout =>
                {
                    to_close.push((id, CloseReason::ConnectTimeout));
                }
                Some(_)
                    if now.saturating_duration_since(peer.last_received)
                        > self.config.silence_timeout =>
                {
                    to_close.push((id, CloseReason::Silent));
                }
                Some(connected)
                    if peer.offers_data_channel
                        && peer.data_channel.is_none()
                        && !peer.opened_data_channel
                        && now.saturating_duration_since(connected) > DATA_CHANNEL_GRACE =>
                {
                    open_channel.push(id);
                }
                _ => {}
            }
        }
        for (id, reason) in to_close {
            match reason {
                CloseReason::ConnectTimeout => SfuStats::add(&self.stats.peers_connect_timeout, 1),
                CloseReason::Silent => SfuStats::add(&self.stats.peers_silent, 1),
                _ => {}
            }
            self.close_peer(id, reason, now);
        }
        for id in open_channel {
            let Some(peer) = self.peers.get_mut(&id) else {
                continue;
            };
            peer.opened_data_channel = true;
            let init = RTCDataChannelInit {
                ordered: true,
                ..Default::default()
            };
            if let Err(err) = peer
                .connection
                .create_data_channel(ROOM_CHANNEL_LABEL, Some(init))
            {
                tracing::debug!(peer = %id, %err, "could not open the room data channel");
            }
            self.drain_peer(id, now);
        }
        let mut pli_due = Vec::new();
        let mut idle = Vec::new();
        for (id, room) in &mut self.rooms {
            room.taps.retain(|tap| !tap.is_closed());
            if room.pli.handle_timeout(now)
                && let Some(publisher) = room.publisher
            {
                pli_due.push(publisher);
            }
            if room.members.is_empty()
                && room.taps.is_empty()
                && room.idle_since.is_some_and(|since| {
                    now.saturating_duration_since(since) > self.config.room_idle_timeout
                })
            {
                idle.push(id.clone());
            }
        }
        for publisher in pli_due {
            self.send_pli(publisher, now);
        }
        for id in idle {
            if let Some(mut room) = self.rooms.remove(&id) {
                room.send_to_taps(TapEvent::RoomClosed, &self.stats.tap_dropped);
                tracing::info!(room = %id, "idle room removed");
            }
        }
    }

    // ----------------------------------------------------------------------------------
    // Closing

    fn close_peer(
        &mut self,
        id: PeerId,
        reason: CloseReason,
        now: Instant,
    ) -> Option<(RoomId, PeerRole)> {
        let mut peer = self.peers.remove(&id)?;
        let _ = peer.connection.close();
        while let Some(datagram) = peer.connection.poll_write() {
            self.send_queue
                .push(datagram.transport.peer_addr, datagram.message);
        }
        self.demux.remove(id);
        SfuStats::add(&self.stats.peers_closed, 1);
        let role = peer.role.kind();
        if let Some(room) = self.rooms.get_mut(&peer.room) {
            room.members.retain(|member| *member != id);
            match role {
                PeerRole::Publisher if room.publisher == Some(id) => {
                    room.publisher = None;
                    room.keyframe_cache.clear();
                    room.pli.reset();
                    let epoch = room.epoch;
                    room.send_to_taps(TapEvent::PublisherEnded { epoch }, &self.stats.tap_dropped);
                    let _ = self.events.send(SfuEvent::Offline {
                        room: peer.room.clone(),
                    });
                }
                PeerRole::Viewer => {
                    let before = room.viewers.len();
                    room.viewers.retain(|viewer| *viewer != id);
                    if room.viewers.len() != before {
                        let _ = self.events.send(SfuEvent::ViewerCount {
                            room: peer.room.clone(),
                            viewers: room.viewers.len(),
                        });
                    }
                }
                PeerRole::Publisher => {}
            }
            if room.members.is_empty() {
                room.idle_since = Some(now);
            }
        }
        tracing::info!(room = %peer.room, peer = %id, ?role, ?reason, "session closed");
        let _ = self.events.send(SfuEvent::PeerClosed {
            room: peer.room.clone(),
            peer: id,
            role,
            reason,
        });
        Some((peer.room, role))
    }

    fn shutdown(&mut self, now: Instant) {
        let ids: Vec<PeerId> = self.peers.keys().copied().collect();
        for id in ids {
            self.close_peer(id, CloseReason::Shutdown, now);
        }
        for room in self.rooms.values_mut() {
            room.send_to_taps(TapEvent::RoomClosed, &self.stats.tap_dropped);
        }
        self.rooms.clear();
        self.timers.clear();
    }

    // ----------------------------------------------------------------------------------
    // Output

    /// Schedules a full drain of the peer's engine (after input, timers, RTCP, data).
    fn mark_flush(&mut self, id: PeerId) {
        if let Some(peer) = self.peers.get_mut(&id) {
            peer.outbox.full = true;
            if !peer.outbox.queued {
                peer.outbox.queued = true;
                self.to_flush.push(id);
            }
        }
    }

    /// Moves every queued peer's encrypted datagrams into the send queue, sending early
    /// when a lot has piled up.
    fn flush_peers(&mut self) {
        let mut to_flush = std::mem::take(&mut self.to_flush);
        for &id in &to_flush {
            let Some(peer) = self.peers.get_mut(&id) else {
                continue;
            };
            drain_engine(&mut peer.connection, &mut peer.outbox, &mut self.send_queue);
            if self.send_queue.len() >= SEND_EARLY {
                self.send();
            }
        }
        // Keep the allocation for the next wake-up.
        to_flush.clear();
        if self.to_flush.is_empty() {
            self.to_flush = to_flush;
        }
    }

    fn send(&mut self) {
        let Some(fd) = self.fd else {
            return;
        };
        if self.send_queue.is_empty() {
            return;
        }
        let mut failed = 0;
        let result = self.send_queue.flush(fd, &mut failed);
        if failed > 0 {
            SfuStats::add(&self.stats.send_errors, failed);
        }
        match result {
            Ok((datagrams, bytes)) => {
                SfuStats::add(&self.stats.datagrams_out, datagrams as u64);
                SfuStats::add(&self.stats.bytes_out, bytes as u64);
            }
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(err) => tracing::warn!(%err, "UDP send failed"),
        }
    }

    fn snapshot(&self, now: Instant) -> SfuSnapshot {
        let rooms = self
            .rooms
            .values()
            .map(|room| {
                let publisher = room
                    .publisher
                    .and_then(|id| self.peers.get(&id).map(|p| (id, p)));
                let live = publisher.is_some_and(|(_, p)| match &p.role {
                    Role::Publisher(state) => state.last_media_at.is_some_and(|at| {
                        now.saturating_duration_since(at) < self.config.publisher_stale_after
                    }),
                    Role::Viewer(_) => false,
                });
                RoomSnapshot {
                    id: room.id.to_string(),
                    live,
                    publisher: publisher.map(|(id, _)| id.to_string()),
                    viewers: room.viewers.len(),
                    sessions: room.members.len(),
                    audio: room.codecs.audio.map(|c| c.to_string()),
                    video: room.codecs.video.as_ref().map(|(c, _)| c.to_string()),
                    epoch: room.epoch,
                    taps: room.taps.len(),
                }
            })
            .collect();
        SfuSnapshot {
            rooms,
            peers: self.peers.len(),
            demux_ufrags: self.demux.len(),
            demux_addresses: self.demux.address_count(),
            timers: self.timers.len(),
        }
    }
}

/// A STUN binding request carrying USE-CANDIDATE (RFC 8445 §7.1.2): the controlling
/// peer nominates the pair, and its ICE completes when our response reaches it. Reads
/// within bounds, never panics.
fn stun_nominates(datagram: &[u8]) -> bool {
    const BINDING_REQUEST: [u8; 2] = [0x00, 0x01];
    const USE_CANDIDATE: u16 = 0x0025;
    if !crate::demux::is_stun(datagram) || datagram[..2] != BINDING_REQUEST {
        return false;
    }
    let declared = u16::from_be_bytes([datagram[2], datagram[3]]) as usize;
    let Some(mut rest) = datagram.get(20..20 + declared) else {
        return false;
    };
    while rest.len() >= 4 {
        let kind = u16::from_be_bytes([rest[0], rest[1]]);
        if kind == USE_CANDIDATE {
            return true;
        }
        let len = u16::from_be_bytes([rest[2], rest[3]]) as usize;
        let Some(next) = rest.get(4 + ((len + 3) & !3)..) else {
            return false;
        };
        rest = next;
    }
    false
}

/// Moves a peer engine's encrypted datagrams into the send queue.
///
/// Every `poll_write` sweeps the engine's whole write pipeline (eight handlers and the
/// interceptor chain) before it pops one datagram, so the call that only finds the engine
/// empty is not free (≈ 300 instructions, one per viewer per wake-up). When only forwarded
/// RTP was written, exactly that many RTP datagrams are popped and that last sweep is
/// skipped; anything else the engine produces meanwhile (RTCP reports) goes out with them
/// or on the peer's next drain or timer, which drains fully.
fn drain_engine(connection: &mut RTCPeerConnection, outbox: &mut Outbox, queue: &mut SendQueue) {
    let Outbox { rtp, full, .. } = std::mem::take(outbox);
    if full {
        while let Some(datagram) = connection.poll_write() {
            queue.push(datagram.transport.peer_addr, datagram.message);
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
        queue.push(datagram.transport.peer_addr, datagram.message);
    }
}

/// SRTP rather than SRTCP (RFC 5761 §4: RTCP packet types 192–223 in the second byte).
fn is_rtp(datagram: &[u8]) -> bool {
    matches!(datagram, [128..=191, second, ..] if !(192..=223).contains(second))
}

/// Hands one rewritten packet to a viewer's engine (SRTP happens on the next flush).
fn write_rtp(
    connection: &mut RTCPeerConnection,
    header: &OutputHeader,
    source: &SourcePacket,
    now: Instant,
    stats: &SfuStats,
) {
    let mut extensions = Vec::new();
    if let Some((id, value)) = header.video_orientation {
        let byte = Bytes::from_static(&ORIENTATION_BYTES[value as usize..value as usize + 1]);
        extensions.push(rtc::rtp::header::Extension { id, payload: byte });
    }
    let packet = rtc::rtp::packet::Packet {
        header: rtc::rtp::header::Header {
            version: 2,
            // An empty payload (a padding-only packet upstream) stays a valid padding packet.
            padding: source.payload.is_empty(),
            extension: !extensions.is_empty(),
            marker: header.marker,
            payload_type: header.payload_type,
            sequence_number: header.sequence_number,
            timestamp: header.timestamp,
            ssrc: header.ssrc,
            csrc: Vec::new(),
            extension_profile: 0xBEDE,
            extensions,
            extensions_padding: 0,
        },
        payload: source.payload.clone(),
    };
    // The track id is not used on this path (the SSRC identifies the stream): an empty
    // string does not allocate.
    let message = TaggedRTCMessage {
        now,
        message: RTCMessage::RtpPacket(String::new(), packet),
    };
    match connection.handle_write(message) {
        Ok(()) => SfuStats::add(&stats.rtp_forwarded, 1),
        Err(_) => SfuStats::add(&stats.forward_write_errors, 1),
    }
}

/// The codecs of a publisher's negotiated tracks.
fn codecs_of(tracks: &[Option<InboundTrackPlan>; 2]) -> RoomCodecs {
    RoomCodecs {
        audio: tracks[0].as_ref().map(|t| t.codec),
        video: tracks[1].as_ref().map(|t| {
            let profile = crate::offer::fmtp_param(&t.fmtp, "profile-level-id").map(str::to_owned);
            (t.codec, profile.filter(|_| t.codec == Codec::H264))
        }),
    }
}

/// NTP (seconds since 1900 in 32.32 fixed point) to `SystemTime`.
fn ntp_to_system_time(ntp: u64) -> SystemTime {
    const NTP_UNIX_OFFSET: u64 = 2_208_988_800;
    let seconds = (ntp >> 32).saturating_sub(NTP_UNIX_OFFSET);
    let nanos = ((ntp & 0xffff_ffff) * 1_000_000_000) >> 32;
    UNIX_EPOCH + Duration::from_secs(seconds) + Duration::from_nanos(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A binding request with a USERNAME and, optionally, USE-CANDIDATE.
    fn binding_request(use_candidate: bool) -> Vec<u8> {
        let mut body = Vec::new();
        // PRIORITY (4 bytes), USERNAME "ab:cd" (5 bytes, padded), then USE-CANDIDATE.
        body.extend_from_slice(&[0x00, 0x24, 0x00, 0x04, 1, 2, 3, 4]);
        body.extend_from_slice(&[0x00, 0x06, 0x00, 0x05]);
        body.extend_from_slice(b"ab:cd\0\0\0");
        if use_candidate {
            body.extend_from_slice(&[0x00, 0x25, 0x00, 0x00]);
        }
        let mut msg = vec![0x00, 0x01];
        msg.extend_from_slice(&(body.len() as u16).to_be_bytes());
        msg.extend_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
        msg.extend_from_slice(&[9; 12]);
        msg.extend_from_slice(&body);
        msg
    }

    #[test]
    fn spots_nominations() {
        assert!(stun_nominates(&binding_request(true)));
        assert!(!stun_nominates(&binding_request(false)));
        let mut response = binding_request(true);
        response[1] = 0x01;
        response[0] = 0x01; // binding success response
        assert!(!stun_nominates(&response));
        let truncated = binding_request(true);
        assert!(!stun_nominates(&truncated[..truncated.len() - 4]));
        assert!(!stun_nominates(&[0x80; 40]), "RTP");
        assert!(!stun_nominates(&[]));
    }
}
