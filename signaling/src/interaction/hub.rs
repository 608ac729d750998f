//! One room's conversation: a task that owns the room's event sequence, its members,
//! recent chat, like totals and mutes, and broadcasts every event to every member in one
//! order.
//!
//! Each broadcast event is serialized once and shared (`Bytes`) with every WebSocket
//! member's bounded queue; data-channel members get it through one `broadcast_data` to the
//! SFU. A member whose queue is full is disconnected (and counted), never waited for.
//!
//! Broadcasts are delivered in small batches: the first event after a quiet spell goes out
//! at once, later ones within [`BATCH_WINDOW`] are held and sent together, so a busy room
//! costs each member one wake-up and one socket write per batch instead of per event.

use super::protocol::{ErrorCode, ProtocolError, VERSION};
use super::{InteractionStats, UserSummary};
use crate::store::{ChatRecord, Gift, GiftRecord, Store};
use bytes::Bytes;
use serde_json::{Value, json};
use sfu::{PeerId, RoomId, SfuHandle};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Chat messages a joining member receives.
pub const HISTORY_ON_JOIN: usize = 50;
/// How long a busy room's events are held to be sent together. The first event after a
/// quiet spell is not held. Measured with 2,000 WebSocket members at 200 messages/s on one
/// core (BENCHMARKS.md): 15–20 ms saturated the core with socket writes (p99 80+ ms),
/// 40 ms added its own wait (p99 62 ms), 30 ms gave p99 ≈ 50 ms at ~70 % of the core.
pub const BATCH_WINDOW: Duration = Duration::from_millis(30);
/// Events kept in memory for gap fetches.
const EVENT_RING: usize = 4096;
/// How often like taps are summed into one `likes` event.
const LIKES_INTERVAL: Duration = Duration::from_millis(250);
/// How often presence changes are summed into one `presence` event.
const PRESENCE_INTERVAL: Duration = Duration::from_millis(500);
/// How often the event position and like totals are saved.
const SAVE_INTERVAL: Duration = Duration::from_secs(2);
/// An empty hub stops after this long.
const IDLE_STOP: Duration = Duration::from_secs(60);
/// After a restart the sequence jumps by this much past what was saved, so numbers that
/// were handed out but not yet saved are never reused.
const SEQ_RESTART_GAP: i64 = 1000;

/// Who a member is in the hub's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemberId {
    /// A WebSocket connection (numbered by the server).
    Socket(u64),
    /// A WebRTC session's data channel.
    Peer(PeerId),
}

/// What the hub sends a WebSocket member.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// A text frame.
    Frame(Bytes),
    /// Several text frames, to be written together (shared by every member).
    Batch(Arc<[Bytes]>),
    /// Close the connection with this reason.
    Close(&'static str),
}

/// Where a member's messages go.
#[derive(Debug, Clone)]
pub enum Sink {
    /// A WebSocket writer's queue.
    Socket(mpsc::Sender<Outbound>),
    /// A data channel, through the SFU.
    DataChannel(PeerId),
}

/// Messages to a room hub.
pub enum HubCommand {
    /// A member arrives; the hub sends it `welcome` with the recent chat.
    Join {
        member: MemberId,
        user: Option<UserSummary>,
        sink: Sink,
    },
    /// A member leaves.
    Leave { member: MemberId },
    /// A member logged in on an open connection.
    Identify { member: MemberId, user: UserSummary },
    /// A chat message (already validated, rate-limited and word-filtered).
    Chat {
        member: MemberId,
        user: UserSummary,
        text: String,
        client_id: Option<String>,
    },
    /// Like taps.
    Likes { count: i64 },
    /// A gift was paid for: announce it.
    Gift {
        sender: UserSummary,
        gift: Gift,
        record: GiftRecord,
    },
    /// A message to one member.
    Unicast { member: MemberId, frame: String },
    /// The server is stopping: serve what is queued, save, stop, then answer.
    Shutdown { done: oneshot::Sender<()> },
    /// Mute a user until the given time.
    Mute { user: i64, until: Instant },
    /// Lift a mute.
    Unmute { user: i64 },
    /// Disconnect a user's connections and keep them out until the given time.
    Kick {
        user: i64,
        until: Instant,
        reply: oneshot::Sender<Vec<PeerId>>,
    },
    /// Remove a chat message.
    DeleteMessage { seq: i64 },
    /// Announce a room state change (`show_started`, `show_ended`).
    System { event: &'static str },
    /// Events after a sequence number.
    Events {
        after: i64,
        reply: oneshot::Sender<EventsPage>,
    },
    /// Whether a user may chat here (muted or kicked users may not).
    CanChat {
        user: i64,
        reply: oneshot::Sender<Result<(), ProtocolError>>,
    },
    /// Current counters.
    Snapshot { reply: oneshot::Sender<HubSnapshot> },
    /// Who is watching now (the host's own connections excluded).
    Viewers { reply: oneshot::Sender<ViewerList> },
}

/// The room's live audience (在线观众), as the host's viewer list shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct ViewerList {
    /// Connections watching (logged-in and anonymous), the same number `presence` reports.
    pub count: usize,
    /// Of those, connections without an account.
    pub anonymous: usize,
    /// The logged-in viewers, one entry per user (earliest connection), earliest first.
    pub viewers: Vec<OnlineViewer>,
}

/// One logged-in viewer in a [`ViewerList`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct OnlineViewer {
    /// User id.
    pub user_id: i64,
    /// Nickname.
    pub nickname: String,
    /// Avatar URL.
    pub avatar_url: Option<String>,
    /// When this user's first open connection joined (Unix ms).
    pub joined_at: i64,
}

/// Result of a gap fetch.
#[derive(Debug, Clone)]
pub struct EventsPage {
    /// The events (JSON texts), oldest first.
    pub events: Vec<Bytes>,
    /// The newest sequence number handed out.
    pub last_seq: i64,
    /// Whether the events reach back to the requested point (older ones are not kept).
    pub complete: bool,
}

/// A hub's counters.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct HubSnapshot {
    /// Members connected (WebSocket + data channel).
    pub members: usize,
    /// Newest sequence number.
    pub seq: i64,
    /// Like total.
    pub likes: i64,
}

struct Member {
    user: Option<UserSummary>,
    sink: Sink,
    /// When the member joined (Unix ms).
    joined_at: i64,
}

pub(super) struct Hub {
    room: RoomId,
    store: Store,
    sfu: SfuHandle,
    stats: Arc<InteractionStats>,
    chat_writer: mpsc::Sender<ChatRecord>,
    seq: i64,
    likes_total: i64,
    likes_pending: i64,
    likes_unsaved: i64,
    saved_seq: i64,
    members: HashMap<MemberId, Member>,
    data_channel_members: usize,
    history: VecDeque<(i64, Bytes)>,
    ring: VecDeque<(i64, Bytes)>,
    mutes: HashMap<i64, Instant>,
    kicked: HashMap<i64, Instant>,
    presence_dirty: bool,
    pending: Vec<Bytes>,
    last_flush: Instant,
    flush_at: Option<Instant>,
    joined: Vec<UserSummary>,
    left: Vec<UserSummary>,
    idle_since: Option<Instant>,
    /// The room's host: their own connections (the studio) are not part of the audience.
    host_id: Option<i64>,
    /// How many members are the host's own connections.
    host_members: usize,
}

impl Hub {
    /// Restores the room's counters and recent chat, then returns the hub ready to run.
    pub(super) async fn load(
        room: RoomId,
        store: Store,
        sfu: SfuHandle,
        stats: Arc<InteractionStats>,
        chat_writer: mpsc::Sender<ChatRecord>,
    ) -> Hub {
        let (seq, likes) = match store.room_counters(room.as_str()).await {
            Ok((seq, likes)) if seq > 0 => (seq + SEQ_RESTART_GAP, likes),
            Ok((_, likes)) => (0, likes),
            Err(_) => (0, 0),
        };
        let host_id = store.room(room.as_str()).await.ok().and_then(|r| r.host_id);
        let mut history = VecDeque::new();
        if let Ok(messages) = store
            .chat_history(room.as_str(), HISTORY_ON_JOIN as i64)
            .await
        {
            for m in messages {
                let user = UserSummary {
                    id: m.record.user_id,
                    nickname: m.nickname,
                    avatar_url: m.avatar_url,
                    role: m.role,
                    banned: false,
                };
                let frame = chat_frame(
                    m.record.seq,
                    &user,
                    &m.record.text,
                    m.record.created_at,
                    None,
                );
                history.push_back((m.record.seq, frame));
            }
        }
        Hub {
            room,
            store,
            sfu,
            stats,
            chat_writer,
            seq,
            likes_total: likes,
            likes_pending: 0,
            likes_unsaved: 0,
            saved_seq: seq,
            members: HashMap::new(),
            data_channel_members: 0,
            history,
            ring: VecDeque::new(),
            mutes: HashMap::new(),
            kicked: HashMap::new(),
            presence_dirty: false,
            pending: Vec::new(),
            last_flush: Instant::now() - BATCH_WINDOW,
            flush_at: None,
            joined: Vec::new(),
            left: Vec::new(),
            idle_since: Some(Instant::now()),
            host_id,
            host_members: 0,
        }
    }

    pub(super) async fn run(mut self, mut commands: mpsc::Receiver<HubCommand>) {
        let mut likes_tick = tokio::time::interval(LIKES_INTERVAL);
        let mut presence_tick = tokio::time::interval(PRESENCE_INTERVAL);
        let mut save_tick = tokio::time::interval(SAVE_INTERVAL);
        for tick in [&mut likes_tick, &mut presence_tick, &mut save_tick] {
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        }
        let mut shutdown = None;
        loop {
            let flush_at = self.flush_at;
            let batch_due = async move {
                match flush_at {
                    Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                command = commands.recv() => match command {
                    Some(HubCommand::Shutdown { done }) => {
                        shutdown = Some(done);
                        break;
                    }
                    Some(command) => self.handle(command),
                    None => break,
                },
                _ = batch_due => self.flush_pending(),
                _ = likes_tick.tick() => self.flush_likes(),
                _ = presence_tick.tick() => self.flush_presence(),
                _ = save_tick.tick() => {
                    self.save().await;
                    if self.idle_since.is_some_and(|since| since.elapsed() > IDLE_STOP) {
                        break;
                    }
                }
            }
        }
        commands.close();
        // Serve what was queued before closing, then save.
        while let Ok(command) = commands.try_recv() {
            self.handle(command);
        }
        self.flush_likes();
        self.flush_pending();
        self.save().await;
        tracing::debug!(room = %self.room, "room hub stopped");
        if let Some(done) = shutdown {
            let _ = done.send(());
        }
    }

    fn handle(&mut self, command: HubCommand) {
        match command {
            HubCommand::Join { member, user, sink } => self.join(member, user, sink),
            HubCommand::Leave { member } => self.leave(member),
            HubCommand::Identify { member, user } => {
                let host = Some(user.id) == self.host_id;
                if let Some(m) = self.members.get_mut(&member) {
                    let was_host = m.user.as_ref().is_some_and(|u| Some(u.id) == self.host_id);
                    if m.user.is_none() {
                        self.joined.push(user.clone());
                        self.presence_dirty = true;
                    }
                    m.user = Some(user);
                    if host && !was_host {
                        self.host_members += 1;
                        self.presence_dirty = true;
                    } else if was_host && !host {
                        self.host_members -= 1;
                        self.presence_dirty = true;
                    }
                }
            }
            HubCommand::Chat {
                member,
                user,
                text,
                client_id,
            } => {
                if let Err(err) = self.may_chat(user.id) {
                    self.unicast(member, err.to_frame(client_id.as_deref()));
                    return;
                }
                self.seq += 1;
                let now = crate::store::now_ms();
                let frame = chat_frame(self.seq, &user, &text, now, client_id.as_deref());
                self.history.push_back((self.seq, frame.clone()));
                while self.history.len() > HISTORY_ON_JOIN {
                    self.history.pop_front();
                }
                let record = ChatRecord {
                    room_id: self.room.to_string(),
                    seq: self.seq,
                    user_id: user.id,
                    text,
                    created_at: now,
                };
                if self.chat_writer.try_send(record).is_err() {
                    self.stats.chat_not_stored.fetch_add(1, Ordering::Relaxed);
                }
                self.stats.chat_messages.fetch_add(1, Ordering::Relaxed);
                self.broadcast(frame);
            }
            HubCommand::Likes { count } => {
                self.likes_pending += count;
                self.stats.likes.fetch_add(count as u64, Ordering::Relaxed);
            }
            HubCommand::Gift {
                sender,
                gift,
                record,
            } => {
                self.seq += 1;
                let frame = event_frame(json!({
                    "v": VERSION, "type": "gift", "seq": self.seq, "ts": record.created_at,
                    "user": sender.public(),
                    "gift": { "id": gift.id, "name": gift.name, "animation": gift.animation, "price_coins": gift.price_coins },
                    "count": record.quantity, "coins": record.coins, "ref": record.idempotency_key,
                }));
                self.stats.gifts.fetch_add(1, Ordering::Relaxed);
                self.broadcast(frame);
            }
            HubCommand::Unicast { member, frame } => self.unicast(member, frame),
            // A second shutdown request while draining: this hub is stopping already.
            HubCommand::Shutdown { done } => {
                let _ = done.send(());
            }
            HubCommand::Mute { user, until } => {
                self.mutes.insert(user, until);
                self.system(json!({ "event": "user_muted", "user_id": user, "until_ms": ms_from_now(until) }));
            }
            HubCommand::Unmute { user } => {
                if self.mutes.remove(&user).is_some() {
                    self.system(json!({ "event": "user_unmuted", "user_id": user }));
                }
            }
            HubCommand::Kick { user, until, reply } => {
                self.kicked.insert(user, until);
                let targets: Vec<MemberId> = self
                    .members
                    .iter()
                    .filter(|(_, m)| m.user.as_ref().is_some_and(|u| u.id == user))
                    .map(|(id, _)| *id)
                    .collect();
                let mut peers = Vec::new();
                for member in targets {
                    if let Some(m) = self.members.get(&member) {
                        match &m.sink {
                            Sink::Socket(tx) => {
                                let _ = tx.try_send(Outbound::Close("kicked by the host"));
                            }
                            Sink::DataChannel(peer) => peers.push(*peer),
                        }
                    }
                    self.leave(member);
                }
                self.system(json!({ "event": "user_kicked", "user_id": user }));
                let _ = reply.send(peers);
            }
            HubCommand::DeleteMessage { seq } => {
                self.history.retain(|(s, _)| *s != seq);
                let store = self.store.clone();
                let room = self.room.to_string();
                tokio::spawn(async move {
                    if let Err(err) = store.delete_chat(&room, seq).await {
                        tracing::warn!(%room, seq, %err, "could not delete a chat message");
                    }
                });
                self.system(json!({ "event": "message_deleted", "target_seq": seq }));
            }
            HubCommand::System { event } => {
                if event == "show_started" {
                    // Likes count per show: the new show starts from zero.
                    self.flush_likes();
                    self.likes_total = 0;
                    self.seq += 1;
                    let frame = event_frame(
                        json!({ "v": VERSION, "type": "likes", "seq": self.seq, "total": 0, "delta": 0 }),
                    );
                    self.broadcast(frame);
                }
                self.system(json!({ "event": event }))
            }
            HubCommand::Events { after, reply } => {
                let events: Vec<Bytes> = self
                    .ring
                    .iter()
                    .filter(|(s, _)| *s > after)
                    .map(|(_, f)| f.clone())
                    .collect();
                let oldest = self.ring.front().map_or(self.seq + 1, |(s, _)| *s);
                let complete = after >= oldest - 1 || after >= self.seq;
                let _ = reply.send(EventsPage {
                    events,
                    last_seq: self.seq,
                    complete,
                });
            }
            HubCommand::CanChat { user, reply } => {
                let _ = reply.send(self.may_chat(user));
            }
            HubCommand::Viewers { reply } => {
                let _ = reply.send(self.viewers());
            }
            HubCommand::Snapshot { reply } => {
                let _ = reply.send(HubSnapshot {
                    members: self.members.len(),
                    seq: self.seq,
                    likes: self.likes_total + self.likes_pending,
                });
            }
        }
    }

    /// Asks the access policy whether `user` may speak here, with the mutes and kicks this
    /// hub holds (the caller reached the room, so it exists and they may know of it).
    fn may_chat(&mut self, user: i64) -> Result<(), ProtocolError> {
        use crate::access::{Actor, Decision, Door, RoomFacts, Standing, decide};
        let now = Instant::now();
        let muted_until = self.mutes.get(&user).copied().filter(|until| *until > now);
        if muted_until.is_none() {
            self.mutes.remove(&user);
        }
        let who = Standing {
            muted: muted_until.is_some(),
            kicked: self.kicked.get(&user).is_some_and(|until| *until > now),
            ..Standing::plain(Actor::Viewer)
        };
        let room = RoomFacts {
            exists: true,
            private: false,
            anonymous_viewers: true,
        };
        match decide(who, room, Door::Speak) {
            Decision::Allow => Ok(()),
            _ if who.kicked => Err(ProtocolError::new(
                ErrorCode::Forbidden,
                "you were removed from this room",
            )),
            Decision::LogIn(why) => Err(ProtocolError::new(ErrorCode::Unauthorized, why)),
            Decision::Refuse(why) => match muted_until {
                Some(until) => Err(ProtocolError::new(
                    ErrorCode::Muted,
                    format!(
                        "you are muted here for {} more seconds",
                        (until - now).as_secs() + 1
                    ),
                )),
                None => Err(ProtocolError::new(ErrorCode::Forbidden, why)),
            },
            Decision::Hidden => Err(ProtocolError::new(ErrorCode::Forbidden, "room not found")),
        }
    }

    fn join(&mut self, member: MemberId, user: Option<UserSummary>, sink: Sink) {
        // Events already numbered go to the current members first: the welcome below
        // carries the sequence position after them.
        self.flush_pending();
        if let Some(kicked) = user.as_ref().and_then(|u| self.kicked.get(&u.id))
            && *kicked > Instant::now()
        {
            let frame = ProtocolError::new(ErrorCode::Forbidden, "you were removed from this room")
                .to_frame(None);
            send_to(&self.sfu, &sink, frame.into());
            if let Sink::Socket(tx) = &sink {
                let _ = tx.try_send(Outbound::Close("kicked"));
            }
            return;
        }
        let welcome = event_frame(json!({
            "v": VERSION, "type": "welcome", "room": self.room.as_str(), "seq": self.seq,
            "you": user.as_ref().map(UserSummary::public),
            "history": self.history.iter().map(|(_, f)| serde_json::from_slice::<Value>(f).unwrap_or(Value::Null)).collect::<Vec<_>>(),
            "likes": self.likes_total + self.likes_pending,
            "viewers": self.audience() + usize::from(!self.is_host(user.as_ref())),
        }));
        send_to(&self.sfu, &sink, welcome);
        if matches!(sink, Sink::DataChannel(_)) {
            self.data_channel_members += 1;
        }
        if let Some(user) = &user {
            self.joined.push(user.clone());
        }
        if self.is_host(user.as_ref()) {
            self.host_members += 1;
        }
        let joined_at = crate::store::now_ms();
        let entry = Member {
            user,
            sink,
            joined_at,
        };
        if let Some(previous) = self.members.insert(member, entry) {
            if matches!(previous.sink, Sink::DataChannel(_)) {
                self.data_channel_members -= 1;
            }
            if self.is_host(previous.user.as_ref()) {
                self.host_members -= 1;
            }
        }
        self.presence_dirty = true;
        self.idle_since = None;
        self.stats.members.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether `user` is the room's host (whose studio connection is not a viewer).
    fn is_host(&self, user: Option<&UserSummary>) -> bool {
        user.is_some_and(|u| Some(u.id) == self.host_id)
    }

    /// The members watching: everyone connected except the host's own connections, so the
    /// viewer, the studio, the room list and the API show the same number.
    fn audience(&self) -> usize {
        self.members.len().saturating_sub(self.host_members)
    }

    /// The audience (host connections excluded), logged-in users deduplicated.
    fn viewers(&self) -> ViewerList {
        let mut by_user: HashMap<i64, OnlineViewer> = HashMap::new();
        let mut anonymous = 0;
        for m in self.members.values() {
            match &m.user {
                None => anonymous += 1,
                Some(u) if Some(u.id) == self.host_id => {}
                Some(u) => {
                    let entry = by_user.entry(u.id).or_insert_with(|| OnlineViewer {
                        user_id: u.id,
                        nickname: u.nickname.clone(),
                        avatar_url: u.avatar_url.clone(),
                        joined_at: m.joined_at,
                    });
                    entry.joined_at = entry.joined_at.min(m.joined_at);
                }
            }
        }
        let mut viewers: Vec<OnlineViewer> = by_user.into_values().collect();
        viewers.sort_by_key(|v| (v.joined_at, v.user_id));
        ViewerList {
            count: self.audience(),
            anonymous,
            viewers,
        }
    }

    fn leave(&mut self, member: MemberId) {
        if let Some(m) = self.members.remove(&member) {
            if matches!(m.sink, Sink::DataChannel(_)) {
                self.data_channel_members -= 1;
            }
            if self.is_host(m.user.as_ref()) {
                self.host_members -= 1;
            }
            if let Some(user) = m.user {
                self.left.push(user);
            }
            self.presence_dirty = true;
            self.stats.members.fetch_sub(1, Ordering::Relaxed);
        }
        if self.members.is_empty() {
            self.idle_since = Some(Instant::now());
        }
    }

    fn unicast(&mut self, member: MemberId, frame: String) {
        if let Some(m) = self.members.get(&member) {
            send_to(&self.sfu, &m.sink, Bytes::from(frame));
        }
    }

    fn system(&mut self, mut body: Value) {
        self.seq += 1;
        body["v"] = json!(VERSION);
        body["type"] = json!("system");
        body["seq"] = json!(self.seq);
        body["ts"] = json!(crate::store::now_ms());
        let frame = event_frame(body);
        self.broadcast(frame);
    }

    fn flush_likes(&mut self) {
        if self.likes_pending == 0 {
            return;
        }
        let delta = std::mem::take(&mut self.likes_pending);
        self.likes_total += delta;
        self.likes_unsaved += delta;
        self.seq += 1;
        let frame = event_frame(
            json!({ "v": VERSION, "type": "likes", "seq": self.seq, "total": self.likes_total, "delta": delta }),
        );
        self.broadcast(frame);
    }

    fn flush_presence(&mut self) {
        if !self.presence_dirty {
            return;
        }
        self.presence_dirty = false;
        let joined: Vec<Value> = self.joined.drain(..).map(|u| u.public()).collect();
        let left: Vec<Value> = self.left.drain(..).map(|u| u.public()).collect();
        self.seq += 1;
        let frame = event_frame(json!({
            "v": VERSION, "type": "presence", "seq": self.seq, "viewers": self.audience(), "joined": joined, "left": left,
        }));
        self.broadcast(frame);
    }

    async fn save(&mut self) {
        if self.seq == self.saved_seq && self.likes_unsaved == 0 {
            return;
        }
        match self
            .store
            .save_room_counters(self.room.as_str(), self.seq, self.likes_unsaved)
            .await
        {
            Ok(()) => {
                self.saved_seq = self.seq;
                self.likes_unsaved = 0;
            }
            Err(err) => tracing::warn!(room = %self.room, %err, "could not save room counters"),
        }
    }

    /// Queues one serialized event for every member, in sequence order: sent at once after
    /// a quiet spell, otherwise with the batch at the end of the window.
    fn broadcast(&mut self, frame: Bytes) {
        self.ring.push_back((self.seq, frame.clone()));
        while self.ring.len() > EVENT_RING {
            self.ring.pop_front();
        }
        self.stats.events.fetch_add(1, Ordering::Relaxed);
        self.pending.push(frame);
        if self.flush_at.is_none() {
            let due = self.last_flush + BATCH_WINDOW;
            if Instant::now() >= due {
                self.flush_pending();
            } else {
                self.flush_at = Some(due);
            }
        }
    }

    /// Delivers the held events: one shared batch to every WebSocket member, each event
    /// to the data channels.
    fn flush_pending(&mut self) {
        self.flush_at = None;
        if self.pending.is_empty() {
            return;
        }
        self.last_flush = Instant::now();
        let frames: Vec<Bytes> = std::mem::take(&mut self.pending);
        let outbound = if frames.len() == 1 {
            Outbound::Frame(frames[0].clone())
        } else {
            Outbound::Batch(Arc::from(frames.clone()))
        };
        let mut slow = Vec::new();
        for (id, member) in &self.members {
            if let Sink::Socket(tx) = &member.sink {
                match tx.try_send(outbound.clone()) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        // Too slow to keep up: disconnect rather than hold everyone back.
                        let _ = tx.try_send(Outbound::Close("too slow"));
                        slow.push(*id);
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => slow.push(*id),
                }
            }
        }
        for id in slow {
            self.stats
                .slow_members_dropped
                .fetch_add(1, Ordering::Relaxed);
            self.leave(id);
        }
        if self.data_channel_members > 0 {
            for frame in &frames {
                let text: Arc<str> = Arc::from(String::from_utf8_lossy(frame).as_ref());
                if self.sfu.broadcast_data(self.room.clone(), text).is_err() {
                    self.stats
                        .data_channel_drops
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

fn send_to(sfu: &SfuHandle, sink: &Sink, frame: Bytes) {
    match sink {
        Sink::Socket(tx) => {
            let _ = tx.try_send(Outbound::Frame(frame));
        }
        Sink::DataChannel(peer) => {
            let _ = sfu.send_data(*peer, Arc::from(String::from_utf8_lossy(&frame).as_ref()));
        }
    }
}

fn chat_frame(seq: i64, user: &UserSummary, text: &str, ts: i64, client_id: Option<&str>) -> Bytes {
    let mut event = json!({ "v": VERSION, "type": "chat", "seq": seq, "ts": ts, "user": user.public(), "text": text });
    if let Some(id) = client_id {
        event["ref"] = Value::String(id.to_owned());
    }
    event_frame(event)
}

fn event_frame(value: Value) -> Bytes {
    Bytes::from(value.to_string())
}

fn ms_from_now(until: Instant) -> i64 {
    crate::store::now_ms() + until.saturating_duration_since(Instant::now()).as_millis() as i64
}
