//! The media plane's public face: [`Sfu::start`] binds the port and spawns the shard;
//! [`SfuHandle`] is the cheap, clonable sender everyone else uses to talk to it.
//!
//! Offers are parsed and negotiated on the caller's task (they are CPU work the shard
//! should not do between packets); the negotiated peer is then moved into the shard by a
//! [`Command`]. The shard answers through a oneshot.

use crate::config::SfuConfig;
use crate::error::SfuError;
use crate::events::SfuEvent;
use crate::ids::{PeerId, RoomId};
use crate::offer::OfferSummary;
use crate::peer::{self, PeerEnvironment, RoomCodecs};
use crate::shard::{Command, Shard};
use crate::stats::SfuStats;
use crate::tap::TapReceiver;
use serde::Serialize;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tokio::sync::{broadcast, mpsc, oneshot};

/// Publisher or viewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerRole {
    /// Sends media into a room (WHIP).
    Publisher,
    /// Receives a room's media (WHEP).
    Viewer,
}

/// A new session, as the HTTP layer reports it.
#[derive(Debug, Clone)]
pub struct Session {
    /// The peer's id (part of the session URL).
    pub peer: PeerId,
    /// The SDP answer.
    pub answer: String,
}

/// A room as seen by the media plane.
#[derive(Debug, Clone, Serialize)]
pub struct RoomSnapshot {
    /// The room id.
    pub id: String,
    /// A publisher is connected and has sent media recently.
    pub live: bool,
    /// The current publisher's session, if any.
    pub publisher: Option<String>,
    /// Connected viewers receiving media.
    pub viewers: usize,
    /// All sessions (connecting or connected) in the room.
    pub sessions: usize,
    /// Audio codec.
    pub audio: Option<String>,
    /// Video codec.
    pub video: Option<String>,
    /// Publisher session generation.
    pub epoch: u32,
    /// Bridge taps attached.
    pub taps: usize,
}

/// The whole media plane at a glance (tests, `/metrics`, leak checks).
#[derive(Debug, Clone, Serialize)]
pub struct SfuSnapshot {
    /// Rooms.
    pub rooms: Vec<RoomSnapshot>,
    /// Peers in the shard.
    pub peers: usize,
    /// Entries in the ufrag demux table.
    pub demux_ufrags: usize,
    /// Learned addresses in the demux table.
    pub demux_addresses: usize,
    /// Timer heap entries.
    pub timers: usize,
}

/// Cheap, clonable access to the media plane.
#[derive(Clone)]
pub struct SfuHandle {
    commands: mpsc::Sender<Command>,
    events: broadcast::Sender<SfuEvent>,
    env: Arc<PeerEnvironment>,
    stats: Arc<SfuStats>,
    local_addr: SocketAddr,
    next_peer: Arc<AtomicU64>,
}

/// Starts the media plane.
pub struct Sfu;

impl Sfu {
    /// Binds the UDP port, spawns the shard thread and returns the handle. The shard runs
    /// until [`SfuHandle::shutdown`] (or until every handle is dropped).
    pub fn start(config: SfuConfig) -> Result<(SfuHandle, std::thread::JoinHandle<()>), SfuError> {
        let socket = bind(config.udp_bind)?;
        let local_addr = socket.local_addr()?;
        let advertised = SocketAddr::new(advertised_ip(&config, local_addr), local_addr.port());
        let env = Arc::new(PeerEnvironment::new(advertised)?);
        let stats = Arc::new(SfuStats::default());
        let (commands, command_rx) = mpsc::channel(4096);
        let (events, _) = broadcast::channel(16_384);
        let shard = Shard::new(config, advertised, Arc::clone(&stats), events.clone());
        let thread = std::thread::Builder::new()
            .name("queqiao-sfu".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a current-thread runtime builds on any supported platform");
                runtime.block_on(async move {
                    match tokio::net::UdpSocket::from_std(socket) {
                        Ok(socket) => shard.run(socket, command_rx).await,
                        Err(err) => tracing::error!(%err, "cannot register the UDP socket"),
                    }
                });
            })?;
        tracing::info!(%local_addr, %advertised, "media plane listening");
        let handle = SfuHandle {
            commands,
            events,
            env,
            stats,
            local_addr,
            next_peer: Arc::new(AtomicU64::new(rand::random::<u32>() as u64 + 1)),
        };
        Ok((handle, thread))
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

    /// The counters.
    pub fn stats(&self) -> &SfuStats {
        &self.stats
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
        let peer = self.new_peer_id();
        let answer = negotiated.answer.clone();
        self.request(|reply| Command::AddPublisher {
            room,
            peer,
            negotiated,
            reply,
        })
        .await?;
        Ok(Session { peer, answer })
    }

    /// Starts a viewer (WHEP) session on an existing room.
    pub async fn view(&self, room: RoomId, offer_sdp: &str) -> Result<Session, SfuError> {
        let offer = OfferSummary::parse(offer_sdp)?;
        let codecs: RoomCodecs = self
            .request(|reply| Command::RoomCodecs {
                room: room.clone(),
                reply,
            })
            .await?;
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
        let peer = self.new_peer_id();
        let answer = negotiated.answer.clone();
        self.request(|reply| Command::AddViewer {
            room,
            peer,
            codecs,
            negotiated,
            reply,
        })
        .await?;
        Ok(Session { peer, answer })
    }

    /// Ends a session (WHIP/WHEP `DELETE`). Returns its room and role.
    pub async fn close(&self, peer: PeerId) -> Result<(RoomId, PeerRole), SfuError> {
        self.request(|reply| Command::ClosePeer { peer, reply })
            .await
    }

    /// The room and role of a live session.
    pub async fn session(&self, peer: PeerId) -> Result<(RoomId, PeerRole), SfuError> {
        self.request(|reply| Command::SessionInfo { peer, reply })
            .await
    }

    /// Attaches a bridge tap to a room.
    pub async fn tap(&self, room: RoomId) -> Result<TapReceiver, SfuError> {
        self.request(|reply| Command::Tap { room, reply }).await
    }

    /// Asks the room's publisher for a keyframe (coalesced with every other request).
    pub async fn request_keyframe(&self, room: RoomId) -> Result<(), SfuError> {
        self.commands
            .send(Command::RequestKeyframe { room })
            .await
            .map_err(|_| SfuError::ShuttingDown)
    }

    /// Sends a text message on one peer's `room` data channel (dropped if not open).
    pub fn send_data(&self, peer: PeerId, text: Arc<str>) -> Result<(), SfuError> {
        self.commands
            .try_send(Command::SendData { peer, text })
            .map_err(|_| SfuError::ShuttingDown)
    }

    /// Sends a text message on every open `room` data channel of a room.
    pub fn broadcast_data(&self, room: RoomId, text: Arc<str>) -> Result<(), SfuError> {
        self.commands
            .try_send(Command::BroadcastData { room, text })
            .map_err(|_| SfuError::ShuttingDown)
    }

    /// The state of every room.
    pub async fn snapshot(&self) -> Result<SfuSnapshot, SfuError> {
        self.request(|reply| Command::Snapshot { reply }).await
    }

    /// Closes every peer (DTLS close_notify sent) and stops the shard.
    pub async fn shutdown(&self) -> Result<(), SfuError> {
        self.request(|reply| Command::Shutdown { reply }).await
    }

    fn new_peer_id(&self) -> PeerId {
        // Random base plus a counter: unique in the process, not guessable from another id.
        let n = self.next_peer.fetch_add(1, Ordering::Relaxed);
        PeerId(n.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    async fn request<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, SfuError>>) -> Command,
    ) -> Result<T, SfuError> {
        let (reply, response) = oneshot::channel();
        self.commands
            .send(make(reply))
            .await
            .map_err(|_| SfuError::ShuttingDown)?;
        response.await.map_err(|_| SfuError::ShuttingDown)?
    }
}

fn bind(address: SocketAddr) -> Result<UdpSocket, SfuError> {
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
