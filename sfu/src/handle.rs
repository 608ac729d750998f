//! The media plane's public face: [`Sfu::start`] binds the port and spawns the shard's
//! driver; [`SfuHandle`] is the cheap, clonable sender everyone else uses to talk to it.
//!
//! Offers are parsed and negotiated on the caller's task (they are CPU work the shard
//! should not do between packets); the negotiated peer is then moved into the shard's
//! core by a [`Command`]. The driver answers through a oneshot.

use crate::config::SfuConfig;
use crate::driver::{Driver, Request};
use crate::error::SfuError;
use crate::events::SfuEvent;
use crate::ids::{PeerId, RoomId};
use crate::offer::OfferSummary;
use crate::peer::{self, PeerEnvironment, RoomCodecs};
use crate::session::{PeerRole, Session, SfuSnapshot};
use crate::sfu_core::{Command, Reply, SfuCore};
use crate::stats::SfuStats;
use crate::tap::TapReceiver;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tokio::sync::{broadcast, mpsc, oneshot};

/// Cheap, clonable access to the media plane.
#[derive(Clone)]
pub struct SfuHandle {
    commands: mpsc::Sender<Request>,
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
        let core = SfuCore::new(config, advertised, Arc::clone(&stats), Instant::now())?;
        let thread = Driver::spawn(
            core,
            socket,
            command_rx,
            events.clone(),
            Arc::clone(&stats),
            "queqiao-sfu".into(),
        )?;
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
        let reply = self
            .request(Command::AddPublisher {
                room,
                peer,
                negotiated,
            })
            .await?;
        done(reply)?;
        Ok(Session { peer, answer })
    }

    /// Starts a viewer (WHEP) session on an existing room.
    pub async fn view(&self, room: RoomId, offer_sdp: &str) -> Result<Session, SfuError> {
        let offer = OfferSummary::parse(offer_sdp)?;
        let codecs: RoomCodecs = match self
            .request(Command::RoomCodecs { room: room.clone() })
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
        let peer = self.new_peer_id();
        let answer = negotiated.answer.clone();
        let reply = self
            .request(Command::AddViewer {
                room,
                peer,
                codecs,
                negotiated,
            })
            .await?;
        done(reply)?;
        Ok(Session { peer, answer })
    }

    /// Ends a session (WHIP/WHEP `DELETE`). Returns its room and role.
    pub async fn close(&self, peer: PeerId) -> Result<(RoomId, PeerRole), SfuError> {
        session_of(self.request(Command::ClosePeer { peer }).await?)
    }

    /// The room and role of a live session.
    pub async fn session(&self, peer: PeerId) -> Result<(RoomId, PeerRole), SfuError> {
        session_of(self.request(Command::SessionInfo { peer }).await?)
    }

    /// Attaches a bridge tap to a room.
    pub async fn tap(&self, room: RoomId) -> Result<TapReceiver, SfuError> {
        match self.request(Command::Tap { room }).await? {
            Reply::Tap(tap) => tap,
            _ => Err(mismatched_reply()),
        }
    }

    /// Asks the room's publisher for a keyframe (coalesced with every other request).
    pub async fn request_keyframe(&self, room: RoomId) -> Result<(), SfuError> {
        self.commands
            .send(Request {
                command: Command::RequestKeyframe { room },
                reply: None,
            })
            .await
            .map_err(|_| SfuError::ShuttingDown)
    }

    /// Sends a text message on one peer's `room` data channel (dropped if not open).
    pub fn send_data(&self, peer: PeerId, text: Arc<str>) -> Result<(), SfuError> {
        self.commands
            .try_send(Request {
                command: Command::SendData { peer, text },
                reply: None,
            })
            .map_err(|_| SfuError::ShuttingDown)
    }

    /// Sends a text message on every open `room` data channel of a room.
    pub fn broadcast_data(&self, room: RoomId, text: Arc<str>) -> Result<(), SfuError> {
        self.commands
            .try_send(Request {
                command: Command::BroadcastData { room, text },
                reply: None,
            })
            .map_err(|_| SfuError::ShuttingDown)
    }

    /// The state of every room.
    pub async fn snapshot(&self) -> Result<SfuSnapshot, SfuError> {
        match self.request(Command::Snapshot).await? {
            Reply::Snapshot(snapshot) => Ok(snapshot),
            _ => Err(mismatched_reply()),
        }
    }

    /// Closes every peer (DTLS close_notify sent) and stops the shard.
    pub async fn shutdown(&self) -> Result<(), SfuError> {
        done(self.request(Command::Shutdown).await?)
    }

    fn new_peer_id(&self) -> PeerId {
        // Random base plus a counter: unique in the process, not guessable from another id.
        let n = self.next_peer.fetch_add(1, Ordering::Relaxed);
        PeerId(n.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    async fn request(&self, command: Command) -> Result<Reply, SfuError> {
        let (reply, response) = oneshot::channel();
        self.commands
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
fn mismatched_reply() -> SfuError {
    SfuError::Engine("the media plane answered with an unexpected reply".into())
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
