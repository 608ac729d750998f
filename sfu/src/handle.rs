//! The media plane's public face: [`Sfu::start`] binds the port once per shard
//! (`SO_REUSEPORT`) and spawns each shard's driver; [`SfuHandle`] is the cheap, clonable
//! sender everyone else uses to talk to them.
//!
//! Offers are parsed and negotiated on the caller's task (they are CPU work a shard
//! should not do between packets); the negotiated peer is then moved into a shard's core
//! by a [`Command`]: a publisher into its room's home shard, a viewer into the least
//! loaded shard (see [`crate::cross_shard`]). A session's shard is the low byte of its
//! [`PeerId`], so session commands need no lookup. The driver answers through a oneshot;
//! snapshots are merged over shards here.

use crate::config::SfuConfig;
use crate::cross_shard::{MAX_SHARDS, ShardDirectory, ShardIndex};
use crate::driver::{Driver, DriverChannels, Request};
use crate::error::SfuError;
use crate::events::{CloseReason, SfuEvent};
use crate::ids::{PeerId, RoomId};
use crate::media::{NativeFrame, SourcePacket};
use crate::offer::OfferSummary;
use crate::peer::{self, PeerEnvironment, RoomCodecs};
use crate::session::{PeerRole, RoomSnapshot, Session, SfuSnapshot};
use crate::sfu_core::{Command, Reply, SfuCore};
use crate::stats::SfuStats;
use crate::tap::TapReceiver;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tokio::sync::{broadcast, mpsc, oneshot};

/// Messages a shard's inbox holds from the other shards before they lose some.
const SHARD_INBOX: usize = 16_384;

/// Cheap, clonable access to the media plane.
#[derive(Clone)]
pub struct SfuHandle {
    /// Each shard's command queue, by index.
    commands: Arc<[mpsc::Sender<Request>]>,
    directory: Arc<ShardDirectory>,
    events: broadcast::Sender<SfuEvent>,
    env: Arc<PeerEnvironment>,
    stats: Arc<SfuStats>,
    local_addr: SocketAddr,
    next_peer: Arc<AtomicU64>,
}

/// Starts the media plane.
pub struct Sfu;

/// The media plane's shard threads.
pub struct MediaThreads(Vec<std::thread::JoinHandle<()>>);

impl MediaThreads {
    /// Waits until every shard has stopped.
    pub fn join(self) -> std::thread::Result<()> {
        let mut outcome = Ok(());
        for thread in self.0 {
            if let Err(panic) = thread.join() {
                outcome = Err(panic);
            }
        }
        outcome
    }
}

impl Sfu {
    /// Binds the UDP port once per shard, spawns the shard threads and returns the handle.
    /// The shards run until [`SfuHandle::shutdown`] (or until every handle is dropped).
    pub fn start(config: SfuConfig) -> Result<(SfuHandle, MediaThreads), SfuError> {
        let shards = config.media_threads.clamp(1, MAX_SHARDS);
        let first = bind(config.udp_bind, shards > 1)?;
        let local_addr = first.local_addr()?;
        let mut sockets = vec![first];
        for _ in 1..shards {
            // The same port (the first socket's, if it was chosen by the kernel).
            sockets.push(bind(local_addr, true)?);
        }
        let advertised = SocketAddr::new(advertised_ip(&config, local_addr), local_addr.port());
        let env = Arc::new(PeerEnvironment::new(advertised)?);
        let stats = Arc::new(SfuStats::default());
        let directory = ShardDirectory::new(shards);
        let (events, _) = broadcast::channel(16_384);
        let (links, inboxes): (Vec<_>, Vec<_>) =
            (0..shards).map(|_| mpsc::channel(SHARD_INBOX)).unzip();
        let links: Arc<[_]> = links.into();
        let mut commands = Vec::with_capacity(shards);
        let mut threads = Vec::with_capacity(shards);
        let now = Instant::now();
        for (shard, (socket, inbox)) in sockets.into_iter().zip(inboxes).enumerate() {
            let (command_tx, requests) = mpsc::channel(4096);
            let core = SfuCore::new_shard(
                config.clone(),
                advertised,
                Arc::clone(&stats),
                now,
                shard,
                Arc::clone(&directory),
            )?;
            let channels = DriverChannels {
                requests,
                inbox,
                links: Arc::clone(&links),
                events: events.clone(),
            };
            let name = if shards == 1 {
                "queqiao-sfu".to_owned()
            } else {
                format!("queqiao-sfu-{shard}")
            };
            threads.push(Driver::spawn(
                core,
                socket,
                channels,
                Arc::clone(&stats),
                name,
            )?);
            commands.push(command_tx);
        }
        tracing::info!(%local_addr, %advertised, shards, "media plane listening");
        let handle = SfuHandle {
            commands: commands.into(),
            directory,
            events,
            env,
            stats,
            local_addr,
            next_peer: Arc::new(AtomicU64::new(rand::random::<u32>() as u64 + 1)),
        };
        Ok((handle, MediaThreads(threads)))
    }
}

impl SfuHandle {
    /// The bound UDP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address advertised in ICE candidates.
    pub fn advertised_addr(&self) -> SocketAddr {
        self.env.advertised
    }

    /// The counters (summed over shards).
    pub fn stats(&self) -> &SfuStats {
        &self.stats
    }

    /// Number of media shards.
    pub fn shards(&self) -> usize {
        self.commands.len()
    }

    /// Room and peer lifecycle events and data-channel messages.
    pub fn subscribe_events(&self) -> broadcast::Receiver<SfuEvent> {
        self.events.subscribe()
    }

    /// Starts a publisher (WHIP) session. The room is created if it does not exist; a
    /// stale previous publisher is replaced, a live one is a conflict.
    pub async fn publish(&self, room: RoomId, offer_sdp: &str) -> Result<Session, SfuError> {
        let offer = OfferSummary::parse(offer_sdp)?;
        offer.publish_plan()?;
        let now = Instant::now();
        let env = Arc::clone(&self.env);
        let sdp = offer_sdp.to_owned();
        let negotiated =
            tokio::task::spawn_blocking(move || peer::negotiate_publisher(&sdp, &offer, &env, now))
                .await
                .map_err(|_| SfuError::ShuttingDown)??;
        let home = self
            .directory
            .home_or_assign(&room, self.directory.least_loaded());
        let peer = self.new_peer_id(home);
        let answer = negotiated.answer.clone();
        let reply = self
            .request_to(
                home,
                Command::AddPublisher {
                    room,
                    peer,
                    negotiated: Box::new(negotiated),
                },
            )
            .await?;
        done(reply)?;
        Ok(Session { peer, answer })
    }

    /// Starts a viewer (WHEP) session on an existing room.
    pub async fn view(&self, room: RoomId, offer_sdp: &str) -> Result<Session, SfuError> {
        let offer = OfferSummary::parse(offer_sdp)?;
        let home = self.home_of(&room)?;
        let codecs: RoomCodecs = match self
            .request_to(home, Command::RoomCodecs { room: room.clone() })
            .await?
        {
            Reply::Codecs(codecs) => codecs?,
            _ => return Err(mismatched_reply()),
        };
        let now = Instant::now();
        let env = Arc::clone(&self.env);
        let sdp = offer_sdp.to_owned();
        let stream_id = format!("queqiao-{room}");
        let room_codecs = codecs.clone();
        let negotiated = tokio::task::spawn_blocking(move || {
            peer::negotiate_viewer(&sdp, &offer, &room_codecs, &stream_id, &env, now)
        })
        .await
        .map_err(|_| SfuError::ShuttingDown)??;
        let shard = self.directory.least_loaded();
        let peer = self.new_peer_id(shard);
        let answer = negotiated.answer.clone();
        let reply = self
            .request_to(
                shard,
                Command::AddViewer {
                    room,
                    home,
                    peer,
                    codecs,
                    negotiated: Box::new(negotiated),
                },
            )
            .await?;
        done(reply)?;
        Ok(Session { peer, answer })
    }

    /// Seats a publisher that is not a WebRTC peer (RTMP ingest) in `room`, on the room's
    /// home shard, under the same rules as a WHIP publisher (a live publisher is not
    /// replaced; a stale one is). Feed it with [`IngestSession::send`]; end it with
    /// [`SfuHandle::close`] or by dropping it after `close`.
    pub async fn ingest(
        &self,
        room: RoomId,
        codecs: RoomCodecs,
    ) -> Result<IngestSession, SfuError> {
        let home = self
            .directory
            .home_or_assign(&room, self.directory.least_loaded());
        let peer = self.new_peer_id(home);
        let (closed_tx, closed) = oneshot::channel();
        done(
            self.request_to(
                home,
                Command::AddIngest {
                    room,
                    peer,
                    codecs,
                    closed: closed_tx,
                },
            )
            .await?,
        )?;
        Ok(IngestSession {
            peer,
            commands: self.commands[home].clone(),
            closed,
        })
    }

    /// Ends a session (WHIP/WHEP `DELETE`). Returns its room and role.
    pub async fn close(&self, peer: PeerId) -> Result<(RoomId, PeerRole), SfuError> {
        let shard = self.shard_of(peer)?;
        session_of(self.request_to(shard, Command::ClosePeer { peer }).await?)
    }

    /// The room and role of a live session.
    pub async fn session(&self, peer: PeerId) -> Result<(RoomId, PeerRole), SfuError> {
        let shard = self.shard_of(peer)?;
        session_of(
            self.request_to(shard, Command::SessionInfo { peer })
                .await?,
        )
    }

    /// Attaches a bridge tap to a room (on its home shard).
    pub async fn tap(&self, room: RoomId) -> Result<TapReceiver, SfuError> {
        let home = self.home_of(&room)?;
        match self.request_to(home, Command::Tap { room }).await? {
            Reply::Tap(tap) => tap,
            _ => Err(mismatched_reply()),
        }
    }

    /// Asks the room's publisher for a keyframe (coalesced with every other request).
    pub async fn request_keyframe(&self, room: RoomId) -> Result<(), SfuError> {
        let Ok(home) = self.home_of(&room) else {
            // No such room: nobody to ask, as on a single shard.
            return Ok(());
        };
        self.commands[home]
            .send(Request {
                command: Command::RequestKeyframe { room },
                reply: None,
            })
            .await
            .map_err(|_| SfuError::ShuttingDown)
    }

    /// Sends a text message on one peer's `room` data channel (dropped if not open).
    pub fn send_data(&self, peer: PeerId, text: Arc<str>) -> Result<(), SfuError> {
        let shard = self.shard_of(peer)?;
        self.commands[shard]
            .try_send(Request {
                command: Command::SendData { peer, text },
                reply: None,
            })
            .map_err(|_| SfuError::ShuttingDown)
    }

    /// Sends a text message on every open `room` data channel of a room.
    pub fn broadcast_data(&self, room: RoomId, text: Arc<str>) -> Result<(), SfuError> {
        for commands in self.commands.iter() {
            commands
                .try_send(Request {
                    command: Command::BroadcastData {
                        room: room.clone(),
                        text: Arc::clone(&text),
                    },
                    reply: None,
                })
                .map_err(|_| SfuError::ShuttingDown)?;
        }
        Ok(())
    }

    /// The state of every room, merged over shards (a room's mirrors add their viewers
    /// and sessions to it), and of each shard.
    pub async fn snapshot(&self) -> Result<SfuSnapshot, SfuError> {
        let mut parts = Vec::with_capacity(self.commands.len());
        for shard in 0..self.commands.len() {
            match self.request_to(shard, Command::Snapshot).await? {
                Reply::Snapshot(snapshot) => parts.push(snapshot),
                _ => return Err(mismatched_reply()),
            }
        }
        Ok(merge_snapshots(parts))
    }

    /// Closes every peer (DTLS close_notify sent) and stops every shard.
    pub async fn shutdown(&self) -> Result<(), SfuError> {
        let mut outcome = Ok(());
        for shard in 0..self.commands.len() {
            if let Err(err) = self
                .request_to(shard, Command::Shutdown)
                .await
                .and_then(done)
            {
                outcome = Err(err);
            }
        }
        outcome
    }

    /// A new session id on `shard`: the shard in the low byte, above it a random base plus
    /// a counter (unique in the process, not guessable from another id).
    fn new_peer_id(&self, shard: ShardIndex) -> PeerId {
        let n = self.next_peer.fetch_add(1, Ordering::Relaxed);
        PeerId((n.wrapping_mul(0x9e37_79b9_7f4a_7c15) << 8) | shard as u64)
    }

    /// The shard a session lives on.
    fn shard_of(&self, peer: PeerId) -> Result<ShardIndex, SfuError> {
        let shard = (peer.0 & 0xff) as usize;
        if shard < self.commands.len() {
            Ok(shard)
        } else {
            Err(SfuError::SessionNotFound)
        }
    }

    /// The shard a room lives on.
    fn home_of(&self, room: &RoomId) -> Result<ShardIndex, SfuError> {
        self.directory
            .home_of(room)
            .ok_or_else(|| SfuError::RoomNotFound(room.clone()))
    }

    async fn request_to(&self, shard: ShardIndex, command: Command) -> Result<Reply, SfuError> {
        let (reply, response) = oneshot::channel();
        self.commands[shard]
            .send(Request {
                command,
                reply: Some(reply),
            })
            .await
            .map_err(|_| SfuError::ShuttingDown)?;
        response.await.map_err(|_| SfuError::ShuttingDown)
    }
}

/// The outcome of a command answered by [`Reply::Done`].
fn done(reply: Reply) -> Result<(), SfuError> {
    match reply {
        Reply::Done(result) => result,
        _ => Err(mismatched_reply()),
    }
}

/// The outcome of a command answered by [`Reply::Session`].
fn session_of(reply: Reply) -> Result<(RoomId, PeerRole), SfuError> {
    match reply {
        Reply::Session(result) => result,
        _ => Err(mismatched_reply()),
    }
}

/// The core answered a command with another command's reply: a bug, reported as an
/// engine error rather than a panic.
/// A seated ingest publisher: where its media goes, and how it learns that the server
/// ended it.
pub struct IngestSession {
    /// The session's id (as a WHIP session's: for `close`, session info, the live
    /// directory).
    pub peer: PeerId,
    commands: mpsc::Sender<Request>,
    /// Resolves with the reason when the server ends the session (admin stop, another
    /// publisher replacing a stale one, shutdown); errors when the shard is gone.
    pub closed: oneshot::Receiver<CloseReason>,
}

impl IngestSession {
    /// Sends frames (for the bridge) and the RTP packets made from them (for WebRTC
    /// viewers) to the room, in order. Waits while the shard's queue is full, so a
    /// publisher faster than the media plane is slowed down rather than cut.
    pub async fn send(
        &self,
        codecs: Option<RoomCodecs>,
        native: Vec<Arc<NativeFrame>>,
        packets: Vec<SourcePacket>,
    ) -> Result<(), SfuError> {
        self.commands
            .send(Request {
                command: Command::IngestMedia {
                    peer: self.peer,
                    codecs,
                    native,
                    packets,
                },
                reply: None,
            })
            .await
            .map_err(|_| SfuError::ShuttingDown)
    }
}

fn mismatched_reply() -> SfuError {
    SfuError::Engine("the media plane answered with an unexpected reply".into())
}

/// One snapshot from every shard's: rooms merged by id (the home's state, everyone's
/// viewers and sessions), totals summed, shards listed in order.
fn merge_snapshots(parts: Vec<SfuSnapshot>) -> SfuSnapshot {
    let mut merged = SfuSnapshot {
        rooms: Vec::new(),
        shards: Vec::new(),
        peers: 0,
        demux_ufrags: 0,
        demux_addresses: 0,
        timers: 0,
    };
    let mut rooms: std::collections::BTreeMap<String, RoomSnapshot> = Default::default();
    for part in parts {
        merged.peers += part.peers;
        merged.demux_ufrags += part.demux_ufrags;
        merged.demux_addresses += part.demux_addresses;
        merged.timers += part.timers;
        merged.shards.extend(part.shards);
        for room in part.rooms {
            match rooms.get_mut(&room.id) {
                None => {
                    rooms.insert(room.id.clone(), room);
                }
                Some(known) => {
                    let (viewers, sessions, taps) = (
                        known.viewers + room.viewers,
                        known.sessions + room.sessions,
                        known.taps + room.taps,
                    );
                    if known.mirror && !room.mirror {
                        *known = room;
                    }
                    known.viewers = viewers;
                    known.sessions = sessions;
                    known.taps = taps;
                }
            }
        }
    }
    merged.rooms = rooms
        .into_values()
        .map(|room| RoomSnapshot {
            mirror: false,
            ..room
        })
        .collect();
    merged
}

fn bind(address: SocketAddr, reuse_port: bool) -> Result<UdpSocket, SfuError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(
        Domain::for_address(address),
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    // Large buffers absorb bursts (a keyframe fanned out to hundreds of viewers).
    let _ = socket.set_recv_buffer_size(8 * 1024 * 1024);
    let _ = socket.set_send_buffer_size(8 * 1024 * 1024);
    socket.set_nonblocking(true)?;
    if reuse_port {
        // Every shard's socket on the same port; the kernel spreads clients over them.
        socket.set_reuse_port(true)?;
    }
    socket.bind(&address.into())?;
    Ok(socket.into())
}

fn advertised_ip(config: &SfuConfig, local: SocketAddr) -> IpAddr {
    if let Some(ip) = config.public_ip {
        return ip;
    }
    if !local.ip().is_unspecified() {
        return local.ip();
    }
    // The interface of the default route: connect() a UDP socket (sends nothing).
    UdpSocket::bind("0.0.0.0:0")
        .and_then(|probe| {
            probe.connect("192.0.2.1:9")?;
            probe.local_addr()
        })
        .map(|addr| addr.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]))
}
