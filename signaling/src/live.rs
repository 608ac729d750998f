//! The live directory: one task that follows the media plane's events and owns what is
//! live right now — which rooms, how many viewers, the show being recorded, and which
//! user holds which media session.
//!
//! Handlers talk to it by message ([`LiveHandle`]); it writes show history and room live
//! state to storage (viewer counts at most once a second per room, so a crowd joining
//! does not become a write storm).
//!
//! A room's viewer count is its WebRTC viewers (from the media plane's events) plus its
//! HTTP-FLV viewers (read from the bridge once a second) plus its HLS players: those hold
//! no connection, so a player is a client (address + user agent) that fetched one of the
//! room's playlists in the last [`HLS_PRESENCE`] ([`HlsAudience`]).

use crate::store::Store;
use rand::TryRngCore;
use serde::Serialize;
use sfu::{PeerId, PeerRole, SfuEvent, SfuHandle};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, oneshot};

/// How long after its last playlist fetch an HLS player still counts as watching (players
/// reload every part or segment: 0.2–2 s).
pub const HLS_PRESENCE: Duration = Duration::from_secs(10);
/// Most HLS clients remembered per room (beyond that a room counts no more of them).
const HLS_CLIENTS_PER_ROOM: usize = 100_000;

/// HLS players seen per room, noted by the playlist route and counted by the directory.
#[derive(Clone, Debug, Default)]
pub struct HlsAudience(Arc<Mutex<HashMap<String, HashMap<u64, Instant>>>>);

impl HlsAudience {
    /// Notes that `client` (a hash of who is asking) fetched a playlist of `room`.
    pub fn seen(&self, room: &str, client: u64) {
        let now = Instant::now();
        if let Ok(mut rooms) = self.0.lock() {
            let clients = match rooms.get_mut(room) {
                Some(clients) => clients,
                None => rooms.entry(room.to_owned()).or_default(),
            };
            if clients.len() < HLS_CLIENTS_PER_ROOM || clients.contains_key(&client) {
                clients.insert(client, now);
            }
        }
    }

    /// Players per room seen within [`HLS_PRESENCE`]; forgets the others.
    fn counts(&self) -> HashMap<String, usize> {
        self.counts_within(HLS_PRESENCE)
    }

    fn counts_within(&self, presence: Duration) -> HashMap<String, usize> {
        let now = Instant::now();
        let Ok(mut rooms) = self.0.lock() else {
            return HashMap::new();
        };
        rooms.retain(|_, clients| {
            clients.retain(|_, at| now.duration_since(*at) < presence);
            !clients.is_empty()
        });
        rooms
            .iter()
            .map(|(room, c)| (room.clone(), c.len()))
            .collect()
    }
}

/// Who holds a media session.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SessionInfo {
    /// The session (peer) id.
    pub id: String,
    /// Room.
    pub room: String,
    /// The logged-in user, if any.
    pub user_id: Option<i64>,
    /// Publisher or viewer.
    #[schema(value_type = String)]
    pub role: PeerRole,
    /// Whether the room was private when the session opened.
    pub private: bool,
    /// Opened at (ms).
    pub opened_at: i64,
    /// The media plane's peer.
    #[serde(skip)]
    pub peer: PeerId,
    /// The unguessable resource id in the session's `Location` (128 random bits, hex):
    /// only its holder may end or patch the session, so it is never listed.
    #[serde(skip)]
    pub resource: String,
}

/// A fresh session resource id: 128 bits from the operating system's CSPRNG, as 32
/// lowercase hex digits.
pub fn new_resource_id() -> String {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .expect("the operating system's random source works");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

enum Command {
    Opened {
        peer: PeerId,
        info: SessionInfo,
    },
    Sessions {
        user: Option<i64>,
        reply: oneshot::Sender<Vec<SessionInfo>>,
    },
    EndReason {
        room: String,
        reason: &'static str,
    },
    Resolve {
        resource: String,
        reply: oneshot::Sender<Option<SessionInfo>>,
    },
}

/// Cheap handle to the live directory.
#[derive(Clone, Debug)]
pub struct LiveHandle {
    commands: mpsc::Sender<Command>,
}

impl LiveHandle {
    /// Starts the directory task. Shows left open by a previous process are closed first.
    pub async fn start(
        store: Store,
        sfu: &SfuHandle,
        bridge: Option<bridge::BridgeHandle>,
        hls: HlsAudience,
    ) -> Result<LiveHandle, crate::store::StoreError> {
        let closed = store.end_dangling_shows().await?;
        if closed > 0 {
            tracing::info!(closed, "closed shows left open by the previous run");
        }
        let (commands, receiver) = mpsc::channel(1024);
        let events = sfu.subscribe_events();
        tokio::spawn(
            Directory {
                store,
                rooms: HashMap::new(),
                sessions: HashMap::new(),
                resources: HashMap::new(),
                sfu: sfu.clone(),
                bridge,
                hls,
            }
            .run(receiver, events),
        );
        Ok(LiveHandle { commands })
    }

    /// Records who opened a media session.
    pub async fn session_opened(&self, peer: PeerId, info: SessionInfo) {
        let _ = self.commands.send(Command::Opened { peer, info }).await;
    }

    /// Open media sessions, all or one user's.
    pub async fn sessions(&self, user: Option<i64>) -> Vec<SessionInfo> {
        let (reply, response) = oneshot::channel();
        if self
            .commands
            .send(Command::Sessions { user, reply })
            .await
            .is_err()
        {
            return Vec::new();
        }
        response.await.unwrap_or_default()
    }

    /// The open session whose `Location` resource id is `resource`.
    pub async fn resolve(&self, resource: &str) -> Option<SessionInfo> {
        let (reply, response) = oneshot::channel();
        self.commands
            .send(Command::Resolve {
                resource: resource.to_owned(),
                reply,
            })
            .await
            .ok()?;
        response.await.ok().flatten()
    }

    /// Notes why the room's current show is about to end (e.g. stopped by an admin).
    pub async fn end_reason(&self, room: &str, reason: &'static str) {
        let _ = self
            .commands
            .send(Command::EndReason {
                room: room.to_owned(),
                reason,
            })
            .await;
    }
}

#[derive(Debug, Default)]
struct LiveRoom {
    show: Option<i64>,
    /// WebRTC viewers, as the media plane last reported.
    webrtc_viewers: i64,
    /// HTTP-FLV viewers (as the bridge last reported) and HLS players (recently seen).
    http_viewers: i64,
    /// Their sum: what the room list shows.
    viewers: i64,
    peak: i64,
    dirty: bool,
    end_reason: Option<&'static str>,
}

struct Directory {
    store: Store,
    rooms: HashMap<String, LiveRoom>,
    sessions: HashMap<PeerId, SessionInfo>,
    /// Resource id → peer, for the sessions above.
    resources: HashMap<String, PeerId>,
    sfu: SfuHandle,
    bridge: Option<bridge::BridgeHandle>,
    hls: HlsAudience,
}

impl LiveRoom {
    fn set_viewers(&mut self, webrtc: Option<i64>, http: Option<i64>) {
        self.webrtc_viewers = webrtc.unwrap_or(self.webrtc_viewers);
        self.http_viewers = http.unwrap_or(self.http_viewers);
        let total = self.webrtc_viewers + self.http_viewers;
        if total != self.viewers {
            self.viewers = total;
            self.dirty = true;
        }
        self.peak = self.peak.max(self.viewers);
    }
}

impl Directory {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut events: broadcast::Receiver<SfuEvent>,
    ) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                // Commands first: an end reason noted before a stream is stopped must be
                // seen before the media plane's resulting `Offline` event.
                biased;
                command = commands.recv() => match command {
                    Some(command) => self.command(command),
                    None => break,
                },
                event = events.recv() => match event {
                    Ok(event) => self.event(event).await,
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "live directory fell behind the media plane; resynchronising");
                        self.resync().await;
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                _ = tick.tick() => self.flush().await,
            }
        }
        self.flush().await;
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Opened { peer, info } => {
                self.resources.insert(info.resource.clone(), peer);
                if let Some(old) = self.sessions.insert(peer, info) {
                    self.resources.remove(&old.resource);
                }
            }
            Command::Resolve { resource, reply } => {
                let found = self
                    .resources
                    .get(&resource)
                    .and_then(|peer| self.sessions.get(peer))
                    .cloned();
                let _ = reply.send(found);
            }
            Command::Sessions { user, reply } => {
                let list = self
                    .sessions
                    .values()
                    .filter(|s| user.is_none() || s.user_id == user)
                    .cloned()
                    .collect();
                let _ = reply.send(list);
            }
            Command::EndReason { room, reason } => {
                self.rooms.entry(room).or_default().end_reason = Some(reason);
            }
        }
    }

    async fn event(&mut self, event: SfuEvent) {
        match event {
            SfuEvent::Live { room, .. } => {
                let id = room.to_string();
                let entry = self.rooms.entry(id.clone()).or_default();
                if entry.show.is_none() {
                    match self.store.start_show(&id).await {
                        Ok(show) => {
                            entry.show = Some(show.id);
                            entry.peak = entry.viewers;
                            entry.end_reason = None;
                            tracing::info!(room = %id, show = show.id, "show started");
                        }
                        Err(err) => {
                            tracing::warn!(room = %id, %err, "could not record the show start")
                        }
                    }
                }
            }
            SfuEvent::ViewerCount { room, viewers } => {
                let entry = self.rooms.entry(room.to_string()).or_default();
                entry.set_viewers(Some(viewers as i64), None);
                entry.dirty = true;
            }
            SfuEvent::Offline { room } => {
                let id = room.to_string();
                if let Some(entry) = self.rooms.get_mut(&id)
                    && let Some(show) = entry.show.take()
                {
                    let reason = entry.end_reason.take().unwrap_or("publisher_left");
                    if let Err(err) = self.store.end_show(show, entry.peak, reason).await {
                        tracing::warn!(room = %id, %err, "could not record the show end");
                    }
                    entry.peak = entry.viewers;
                    tracing::info!(room = %id, show, reason, "show ended");
                }
            }
            SfuEvent::PeerClosed { peer, .. } => {
                if let Some(closed) = self.sessions.remove(&peer) {
                    self.resources.remove(&closed.resource);
                }
            }
            _ => {}
        }
    }

    /// Reads the HTTP audiences (the bridge's FLV viewers, recent HLS players) into the
    /// counts.
    fn poll_http_audience(&mut self) {
        let mut audience: HashMap<String, i64> = self
            .hls
            .counts()
            .into_iter()
            .map(|(room, n)| (room, n as i64))
            .collect();
        if let Some(bridge) = &self.bridge {
            for room in bridge.rooms() {
                let flv = bridge
                    .room_status(&room)
                    .map_or(0, |status| status.flv_viewers as i64);
                *audience.entry(room.to_string()).or_default() += flv;
            }
        }
        for (id, entry) in self.rooms.iter_mut() {
            if !audience.contains_key(id) && entry.http_viewers > 0 {
                entry.set_viewers(None, Some(0));
            }
        }
        for (id, count) in audience {
            match self.rooms.get_mut(&id) {
                Some(entry) => entry.set_viewers(None, Some(count)),
                None if count > 0 => self
                    .rooms
                    .entry(id)
                    .or_default()
                    .set_viewers(None, Some(count)),
                None => {}
            }
        }
    }

    /// Writes changed viewer counts and peaks.
    async fn flush(&mut self) {
        self.poll_http_audience();
        for (id, entry) in self.rooms.iter_mut().filter(|(_, e)| e.dirty) {
            entry.dirty = false;
            let live = entry.show.is_some();
            if let Err(err) = self.store.set_room_live(id, live, entry.viewers).await {
                tracing::warn!(room = %id, %err, "could not store the viewer count");
            }
            if let Some(show) = entry.show
                && let Err(err) = self.store.raise_peak(show, entry.peak).await
            {
                tracing::warn!(room = %id, %err, "could not store the peak audience");
            }
        }
        self.rooms
            .retain(|_, e| e.show.is_some() || e.viewers > 0 || e.end_reason.is_some());
    }

    /// After missing events: take the media plane's word for viewer counts and liveness.
    async fn resync(&mut self) {
        let Ok(snapshot) = self.sfu.snapshot().await else {
            return;
        };
        for room in snapshot.rooms {
            let entry = self.rooms.entry(room.id.clone()).or_default();
            entry.set_viewers(Some(room.viewers as i64), None);
            entry.dirty = true;
            if !room.live
                && let Some(show) = entry.show.take()
            {
                let _ = self
                    .store
                    .end_show(show, entry.peak, "publisher_left")
                    .await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hls_players_count_while_they_keep_fetching() {
        let audience = HlsAudience::default();
        audience.seen("a", 1);
        audience.seen("a", 1);
        audience.seen("a", 2);
        audience.seen("b", 1);
        let counts = audience.counts_within(Duration::from_secs(5));
        assert_eq!(
            counts.get("a"),
            Some(&2),
            "one player fetching twice counts once"
        );
        assert_eq!(counts.get("b"), Some(&1));
        std::thread::sleep(Duration::from_millis(30));
        audience.seen("a", 3);
        let counts = audience.counts_within(Duration::from_millis(20));
        assert_eq!(
            counts.get("a"),
            Some(&1),
            "players that stopped fetching are gone"
        );
        assert_eq!(counts.get("b"), None);
    }
}
