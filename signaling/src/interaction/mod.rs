//! Live interaction: chat, likes and gifts in a room, one conversation across WebRTC data
//! channels and WebSockets.
//!
//! ```text
//!  WebSocket /ws/rooms/{room} ─┐                         ┌─► every WebSocket member (bounded queue)
//!  data channel "room" ────────┼─► parse, auth, limits ─► room hub (one task per room) ──┤
//!  (via SfuEvent::DataMessage) ┘     gifts: one DB tx     seq, history, likes, mutes     └─► SFU broadcast_data (data channels)
//!                                                            │ write-behind
//!                                                            ▼
//!                                                      storage (chat, counters)
//! ```
//!
//! The per-room hubs are reached through the [`RoomBus`] trait and storage through
//! [`InteractionStore`], so a multi-node bus can replace the in-process one later.

pub mod hub;
pub mod protocol;

use crate::auth::AuthService;
use crate::store::{
    ChatRecord, ChatWithAuthor, Gift, GiftError, GiftOutcome, GiftRequest, Role, Store, StoreError,
    User, Wallet,
};
use governor::{Quota, RateLimiter};
use hub::{EventsPage, Hub, HubCommand, HubSnapshot, MemberId, Sink};
use protocol::{ClientMessage, ErrorCode, ProtocolError, VERSION};
use serde_json::{Value, json};
use sfu::{PeerId, RoomId, SfuEvent, SfuHandle};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, oneshot};

/// What a member is known as in events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSummary {
    /// User id.
    pub id: i64,
    /// Nickname.
    pub nickname: String,
    /// Avatar URL.
    pub avatar_url: Option<String>,
    /// Role.
    pub role: Role,
    /// Banned users may watch public rooms but not chat, like or gift.
    pub banned: bool,
}

impl UserSummary {
    /// The fields other members see.
    pub fn public(&self) -> Value {
        json!({ "id": self.id, "nickname": self.nickname, "avatar_url": self.avatar_url, "role": self.role })
    }
}

impl From<&User> for UserSummary {
    fn from(user: &User) -> Self {
        Self {
            id: user.id,
            nickname: user.nickname.clone(),
            avatar_url: user.avatar_url.clone(),
            role: user.role,
            banned: user.is_banned(),
        }
    }
}

/// Interaction settings.
#[derive(Debug, Clone)]
pub struct InteractionConfig {
    /// Words refused in chat (case-insensitive substring match).
    pub blocked_words: Vec<String>,
    /// Chat messages per user: sustained per second, burst.
    pub chat_rate: (u32, u32),
    /// Like messages per user: sustained per second, burst.
    pub like_rate: (u32, u32),
    /// Gifts per user: sustained per second, burst.
    pub gift_rate: (u32, u32),
}

impl Default for InteractionConfig {
    fn default() -> Self {
        Self {
            blocked_words: Vec::new(),
            chat_rate: (2, 5),
            like_rate: (20, 40),
            gift_rate: (10, 20),
        }
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct InteractionStats {
    /// Members connected across rooms.
    pub members: AtomicI64,
    /// Broadcast events.
    pub events: AtomicU64,
    /// Chat messages broadcast.
    pub chat_messages: AtomicU64,
    /// Chat messages that could not be queued for storage.
    pub chat_not_stored: AtomicU64,
    /// Like taps.
    pub likes: AtomicU64,
    /// Gifts announced.
    pub gifts: AtomicU64,
    /// Client messages refused with an `error` event.
    pub errors: AtomicU64,
    /// Members disconnected for not keeping up.
    pub slow_members_dropped: AtomicU64,
    /// Data-channel broadcasts the SFU could not queue.
    pub data_channel_drops: AtomicU64,
}

/// How the server reaches a room's hub. The in-process implementation runs one task per
/// room; a multi-node deployment can route the same commands to the node owning the room.
pub trait RoomBus: Send + Sync + 'static {
    /// The channel to the room's hub, starting it if needed (a closed channel once the
    /// server is shutting down).
    fn hub(&self, room: &RoomId) -> mpsc::Sender<HubCommand>;
    /// The hubs running now.
    fn running(&self) -> Vec<mpsc::Sender<HubCommand>>;
}

/// Storage the interaction needs (implemented by [`Store`] on SQLite and PostgreSQL).
#[async_trait::async_trait]
pub trait InteractionStore: Send + Sync + 'static {
    /// Sends a gift in one transaction (see [`Store::send_gift`]).
    async fn send_gift(&self, request: &GiftRequest) -> Result<GiftOutcome, GiftError>;
    /// The gift catalogue.
    async fn gifts(&self) -> Result<Vec<Gift>, StoreError>;
    /// Stores chat messages.
    async fn record_chat(&self, messages: &[ChatRecord]) -> Result<(), StoreError>;
    /// Recent chat.
    async fn chat_history(&self, room: &str, limit: i64)
    -> Result<Vec<ChatWithAuthor>, StoreError>;
    /// A wallet.
    async fn wallet(&self, user: i64) -> Result<Wallet, StoreError>;
}

#[async_trait::async_trait]
impl InteractionStore for Store {
    async fn send_gift(&self, request: &GiftRequest) -> Result<GiftOutcome, GiftError> {
        Store::send_gift(self, request).await
    }
    async fn gifts(&self) -> Result<Vec<Gift>, StoreError> {
        Store::gifts(self).await
    }
    async fn record_chat(&self, messages: &[ChatRecord]) -> Result<(), StoreError> {
        Store::record_chat(self, messages).await
    }
    async fn chat_history(
        &self,
        room: &str,
        limit: i64,
    ) -> Result<Vec<ChatWithAuthor>, StoreError> {
        Store::chat_history(self, room, limit).await
    }
    async fn wallet(&self, user: i64) -> Result<Wallet, StoreError> {
        Store::wallet(self, user).await
    }
}

type KeyedLimiter = RateLimiter<
    i64,
    governor::state::keyed::DefaultKeyedStateStore<i64>,
    governor::clock::DefaultClock,
>;

/// The in-process room bus: a table of running hubs.
struct LocalBus {
    hubs: Mutex<HashMap<RoomId, mpsc::Sender<HubCommand>>>,
    store: Store,
    sfu: SfuHandle,
    stats: Arc<InteractionStats>,
    chat_writer: mpsc::Sender<ChatRecord>,
    closing: Arc<AtomicBool>,
}

impl RoomBus for LocalBus {
    fn hub(&self, room: &RoomId) -> mpsc::Sender<HubCommand> {
        if self.closing.load(Ordering::Acquire) {
            // Shutting down: no new hub (its chat could not be stored any more).
            return mpsc::channel(1).0;
        }
        let mut hubs = self
            .hubs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(existing) = hubs.get(room)
            && !existing.is_closed()
        {
            return existing.clone();
        }
        let (sender, receiver) = mpsc::channel(8192);
        hubs.insert(room.clone(), sender.clone());
        hubs.retain(|_, hub| !hub.is_closed());
        let (room, store, sfu, stats, writer) = (
            room.clone(),
            self.store.clone(),
            self.sfu.clone(),
            Arc::clone(&self.stats),
            self.chat_writer.clone(),
        );
        tokio::spawn(async move {
            Hub::load(room, store, sfu, stats, writer)
                .await
                .run(receiver)
                .await;
        });
        sender
    }

    fn running(&self) -> Vec<mpsc::Sender<HubCommand>> {
        let hubs = self
            .hubs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        hubs.values()
            .filter(|hub| !hub.is_closed())
            .cloned()
            .collect()
    }
}

enum PeerCommand {
    Attach {
        peer: PeerId,
        room: RoomId,
        user: Option<UserSummary>,
    },
}

/// Cheap handle to the interaction service.
#[derive(Clone)]
pub struct Interaction {
    inner: Arc<Inner>,
}

struct Inner {
    bus: Arc<dyn RoomBus>,
    store: Arc<dyn InteractionStore>,
    auth: Arc<AuthService>,
    auth_store: Store,
    config: InteractionConfig,
    chat_limit: KeyedLimiter,
    like_limit: KeyedLimiter,
    gift_limit: KeyedLimiter,
    stats: Arc<InteractionStats>,
    catalogue: Mutex<(Instant, Vec<Gift>)>,
    peers: mpsc::Sender<PeerCommand>,
    next_socket: AtomicU64,
    sfu: SfuHandle,
    closing: Arc<AtomicBool>,
    chat_flush: mpsc::Sender<oneshot::Sender<()>>,
}

fn quota((per_second, burst): (u32, u32)) -> Quota {
    let per_second = NonZeroU32::new(per_second.max(1)).expect("max(1) is non-zero");
    let burst = NonZeroU32::new(burst.max(1)).expect("max(1) is non-zero");
    Quota::per_second(per_second).allow_burst(burst)
}

impl Interaction {
    /// Starts the service: the chat writer and the data-channel adapter.
    pub fn start(
        store: Store,
        sfu: SfuHandle,
        auth: Arc<AuthService>,
        config: InteractionConfig,
    ) -> Interaction {
        let stats = Arc::new(InteractionStats::default());
        let (chat_writer, chat_queue) = mpsc::channel(50_000);
        let (chat_flush, flush_requests) = mpsc::channel(4);
        tokio::spawn(write_chat(store.clone(), chat_queue, flush_requests));
        let closing = Arc::new(AtomicBool::new(false));
        let bus = Arc::new(LocalBus {
            hubs: Mutex::new(HashMap::new()),
            store: store.clone(),
            sfu: sfu.clone(),
            stats: Arc::clone(&stats),
            chat_writer,
            closing: Arc::clone(&closing),
        });
        let (peers, peer_commands) = mpsc::channel(4096);
        let interaction = Interaction {
            inner: Arc::new(Inner {
                bus,
                store: Arc::new(store.clone()),
                auth,
                auth_store: store,
                chat_limit: RateLimiter::keyed(quota(config.chat_rate)),
                like_limit: RateLimiter::keyed(quota(config.like_rate)),
                gift_limit: RateLimiter::keyed(quota(config.gift_rate)),
                config,
                stats,
                catalogue: Mutex::new((Instant::now() - Duration::from_secs(3600), Vec::new())),
                peers,
                next_socket: AtomicU64::new(1),
                sfu: sfu.clone(),
                closing,
                chat_flush,
            }),
        };
        tokio::spawn(data_channel_adapter(
            interaction.clone(),
            sfu.subscribe_events(),
            peer_commands,
        ));
        interaction
    }

    /// Drains everything queued for storage before the store closes (SIGTERM): no new
    /// hub starts, every running hub stops after serving its queue (likes summed, room
    /// counters saved, chat handed to the writer), then the chat writer stores what is
    /// queued. Waits at most `timeout`; returns whether everything was drained.
    pub async fn shutdown(&self, timeout: Duration) -> bool {
        self.inner.closing.store(true, Ordering::Release);
        let drain = async {
            let mut stopped = Vec::new();
            for hub in self.inner.bus.running() {
                let (done, finished) = oneshot::channel();
                if hub.send(HubCommand::Shutdown { done }).await.is_ok() {
                    stopped.push(finished);
                }
            }
            for finished in stopped {
                let _ = finished.await;
            }
            let (done, flushed) = oneshot::channel();
            if self.inner.chat_flush.send(done).await.is_ok() {
                let _ = flushed.await;
            }
        };
        let drained = tokio::time::timeout(timeout, drain).await.is_ok();
        if !drained {
            tracing::warn!("chat and likes were not all stored before the shutdown deadline");
        }
        drained
    }

    /// Counters.
    pub fn stats(&self) -> &InteractionStats {
        &self.inner.stats
    }

    /// The hub of a room.
    pub fn hub(&self, room: &RoomId) -> mpsc::Sender<HubCommand> {
        self.inner.bus.hub(room)
    }

    /// A fresh WebSocket member id.
    pub fn socket_member(&self) -> MemberId {
        MemberId::Socket(self.inner.next_socket.fetch_add(1, Ordering::Relaxed))
    }

    /// Remembers who holds a WebRTC session, for its data channel's messages.
    pub async fn attach_peer(&self, peer: PeerId, room: RoomId, user: Option<&User>) {
        let _ = self
            .inner
            .peers
            .send(PeerCommand::Attach {
                peer,
                room,
                user: user.map(UserSummary::from),
            })
            .await;
    }

    /// Sends a command to a room's hub without waiting (a full hub queue drops it).
    pub fn send(&self, room: &RoomId, command: HubCommand) -> Result<(), ProtocolError> {
        self.hub(room)
            .try_send(command)
            .map_err(|_| ProtocolError::new(ErrorCode::Internal, "the room is busy; try again"))
    }

    /// Asks a room's hub something.
    pub async fn ask<T>(
        &self,
        room: &RoomId,
        make: impl FnOnce(oneshot::Sender<T>) -> HubCommand,
    ) -> Option<T> {
        let (reply, response) = oneshot::channel();
        self.hub(room).send(make(reply)).await.ok()?;
        response.await.ok()
    }

    /// Closes a user's connections in every room (after a ban: they reconnect with a
    /// revoked token, so at most as an anonymous viewer). Returns their data-channel
    /// sessions, whose media the caller may end too.
    pub async fn disconnect_user(&self, user: i64) -> Vec<PeerId> {
        let mut peers = Vec::new();
        for hub in self.inner.bus.running() {
            let (reply, response) = oneshot::channel();
            let until = Instant::now();
            if hub
                .send(HubCommand::Kick { user, until, reply })
                .await
                .is_ok()
                && let Ok(found) = response.await
            {
                peers.extend(found);
            }
        }
        peers
    }

    /// Events after `after`, for clients that noticed a gap.
    pub async fn events(&self, room: &RoomId, after: i64) -> Option<EventsPage> {
        self.ask(room, |reply| HubCommand::Events { after, reply })
            .await
    }

    /// Who is watching a room now (starts the room's hub if it is not running: an empty list).
    pub async fn viewers(&self, room: &RoomId) -> Option<hub::ViewerList> {
        self.ask(room, |reply| HubCommand::Viewers { reply }).await
    }

    /// A hub's counters.
    pub async fn snapshot(&self, room: &RoomId) -> Option<HubSnapshot> {
        self.ask(room, |reply| HubCommand::Snapshot { reply }).await
    }

    /// The gift catalogue (cached for a minute).
    pub async fn catalogue(&self) -> Result<Vec<Gift>, StoreError> {
        {
            let cached = self
                .inner
                .catalogue
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if cached.0.elapsed() < Duration::from_secs(60) && !cached.1.is_empty() {
                return Ok(cached.1.clone());
            }
        }
        let gifts = self.inner.store.gifts().await?;
        *self
            .inner
            .catalogue
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = (Instant::now(), gifts.clone());
        Ok(gifts)
    }

    /// Sends a gift for `user` in `room` and announces it. Returns the `gift_ack` frame.
    pub async fn send_gift(
        &self,
        room: &RoomId,
        user: &UserSummary,
        gift: &str,
        count: i64,
        key: &str,
    ) -> Result<(GiftOutcome, String), ProtocolError> {
        if user.banned {
            return Err(ProtocolError::new(
                ErrorCode::Forbidden,
                "this account is banned",
            ));
        }
        if self.inner.gift_limit.check_key(&user.id).is_err() {
            return Err(ProtocolError::new(
                ErrorCode::RateLimited,
                "too many gifts; slow down",
            ));
        }
        let catalogue = self.catalogue().await.map_err(internal)?;
        let item = catalogue
            .iter()
            .find(|g| g.id == gift)
            .cloned()
            .ok_or_else(|| {
                ProtocolError::new(ErrorCode::UnknownGift, format!("unknown gift {gift:?}"))
            })?;
        let request = GiftRequest {
            sender_id: user.id,
            room_id: room.to_string(),
            gift_id: gift.to_owned(),
            quantity: count,
            idempotency_key: key.to_owned(),
        };
        let outcome = self
            .inner
            .store
            .send_gift(&request)
            .await
            .map_err(|err| match err {
                GiftError::InsufficientCoins { .. } => {
                    ProtocolError::new(ErrorCode::InsufficientCoins, err.to_string())
                }
                GiftError::UnknownGift(_) => {
                    ProtocolError::new(ErrorCode::UnknownGift, err.to_string())
                }
                GiftError::KeyReused => ProtocolError::new(ErrorCode::KeyReused, err.to_string()),
                GiftError::NoRecipient | GiftError::RoomNotFound => {
                    ProtocolError::new(ErrorCode::NoRecipient, err.to_string())
                }
                GiftError::SelfGift => ProtocolError::new(ErrorCode::Forbidden, err.to_string()),
                GiftError::Store(store) => internal(store),
            })?;
        let (record, wallet, duplicate) = match &outcome {
            GiftOutcome::Sent(record, wallet) => {
                // Announce after the money moved; the hub queue is large, a full one only
                // loses the animation, never the payment.
                let _ = self.hub(room).try_send(HubCommand::Gift {
                    sender: user.clone(),
                    gift: item,
                    record: record.clone(),
                });
                (record, wallet, false)
            }
            GiftOutcome::Duplicate(record, wallet) => (record, wallet, true),
        };
        let ack = json!({
            "v": VERSION, "type": "gift_ack", "ref": record.idempotency_key, "duplicate": duplicate,
            "gift": record.gift_id, "count": record.quantity, "coins": record.coins, "balance": wallet.coins,
        })
        .to_string();
        Ok((outcome, ack))
    }

    /// Handles one text message from a member. Returns the frame to send back to that
    /// member alone (`error`, `pong`, `gift_ack`), if any. `user` is updated by `auth`.
    pub async fn handle_text(
        &self,
        room: &RoomId,
        member: MemberId,
        user: &mut Option<UserSummary>,
        text: &str,
    ) -> Option<String> {
        let reference = protocol::client_reference(text);
        let result = self.handle_message(room, member, user, text).await;
        match result {
            Ok(reply) => reply,
            Err(err) => {
                self.inner.stats.errors.fetch_add(1, Ordering::Relaxed);
                Some(err.to_frame(reference.as_deref()))
            }
        }
    }

    async fn handle_message(
        &self,
        room: &RoomId,
        member: MemberId,
        user: &mut Option<UserSummary>,
        text: &str,
    ) -> Result<Option<String>, ProtocolError> {
        let message = protocol::parse(text)?;
        let require_user = |user: &Option<UserSummary>| -> Result<UserSummary, ProtocolError> {
            let user = user.clone().ok_or_else(|| {
                ProtocolError::new(
                    ErrorCode::Unauthorized,
                    "log in to chat, like or send gifts",
                )
            })?;
            if user.banned {
                return Err(ProtocolError::new(
                    ErrorCode::Forbidden,
                    "this account is banned",
                ));
            }
            Ok(user)
        };
        match message {
            ClientMessage::Ping => Ok(Some(json!({ "v": VERSION, "type": "pong" }).to_string())),
            ClientMessage::Auth { token } => {
                let found = self
                    .inner
                    .auth
                    .user_for_token(&self.inner.auth_store, &token)
                    .await
                    .map_err(|e| ProtocolError::new(ErrorCode::Unauthorized, e.to_string()))?;
                // A stored kick holds for its duration, across restarts, on every door.
                let kicked = self
                    .inner
                    .auth_store
                    .kicked_until(room.as_str(), found.id)
                    .await
                    .map_err(internal)?
                    .is_some_and(|until| until > crate::store::now_ms());
                if kicked {
                    return Err(ProtocolError::new(
                        ErrorCode::Forbidden,
                        "you were removed from this room",
                    ));
                }
                let summary = UserSummary::from(&found);
                *user = Some(summary.clone());
                self.send(
                    room,
                    HubCommand::Identify {
                        member,
                        user: summary.clone(),
                    },
                )?;
                Ok(Some(
                    json!({ "v": VERSION, "type": "auth_ok", "you": summary.public() }).to_string(),
                ))
            }
            ClientMessage::Chat { text, client_id } => {
                let user = require_user(user)?;
                if self.inner.chat_limit.check_key(&user.id).is_err() {
                    return Err(ProtocolError::new(
                        ErrorCode::RateLimited,
                        "too many messages; slow down",
                    ));
                }
                if protocol::contains_blocked_word(&text, &self.inner.config.blocked_words) {
                    return Err(ProtocolError::new(
                        ErrorCode::BlockedWord,
                        "this message contains a blocked word",
                    ));
                }
                self.send(
                    room,
                    HubCommand::Chat {
                        member,
                        user,
                        text,
                        client_id,
                    },
                )?;
                Ok(None)
            }
            ClientMessage::Like { count } => {
                let user = require_user(user)?;
                if self.inner.like_limit.check_key(&user.id).is_err() {
                    return Err(ProtocolError::new(
                        ErrorCode::RateLimited,
                        "too many likes; slow down",
                    ));
                }
                self.send(room, HubCommand::Likes { count })?;
                Ok(None)
            }
            ClientMessage::Gift {
                gift,
                count,
                idempotency_key,
            } => {
                let user = require_user(user)?;
                let (_, ack) = self
                    .send_gift(room, &user, &gift, count, &idempotency_key)
                    .await?;
                Ok(Some(ack))
            }
        }
    }

    /// Frees rate-limiter memory of idle users (called periodically).
    fn trim_limiters(&self) {
        self.inner.chat_limit.retain_recent();
        self.inner.like_limit.retain_recent();
        self.inner.gift_limit.retain_recent();
    }
}

fn internal(err: StoreError) -> ProtocolError {
    tracing::warn!(%err, "interaction storage error");
    ProtocolError::new(
        ErrorCode::Internal,
        "the server could not complete this; try again",
    )
}

/// Stores chat behind the broadcast, in batches; a flush request is answered once every
/// record queued before it is stored.
async fn write_chat(
    store: Store,
    mut queue: mpsc::Receiver<ChatRecord>,
    mut flush_requests: mpsc::Receiver<oneshot::Sender<()>>,
) {
    let mut batch = Vec::with_capacity(256);
    loop {
        let first = tokio::select! {
            biased;
            record = queue.recv() => match record {
                Some(record) => record,
                None => break,
            },
            Some(done) = flush_requests.recv() => {
                while let Ok(record) = queue.try_recv() {
                    batch.push(record);
                    if batch.len() == 256 {
                        store_chat(&store, &mut batch).await;
                    }
                }
                store_chat(&store, &mut batch).await;
                let _ = done.send(());
                continue;
            }
        };
        batch.push(first);
        let deadline = tokio::time::Instant::now() + Duration::from_millis(50);
        while batch.len() < 256 {
            match tokio::time::timeout_at(deadline, queue.recv()).await {
                Ok(Some(record)) => batch.push(record),
                Ok(None) | Err(_) => break,
            }
        }
        store_chat(&store, &mut batch).await;
    }
}

async fn store_chat(store: &Store, batch: &mut Vec<ChatRecord>) {
    if batch.is_empty() {
        return;
    }
    if let Err(err) = store.record_chat(batch).await {
        tracing::warn!(%err, count = batch.len(), "could not store chat messages");
    }
    batch.clear();
}

/// Bridges WebRTC data channels to the room hubs: joins on open, messages in, leaves on
/// close, and show start/end announcements.
async fn data_channel_adapter(
    interaction: Interaction,
    mut events: broadcast::Receiver<SfuEvent>,
    mut commands: mpsc::Receiver<PeerCommand>,
) {
    let mut peers: HashMap<PeerId, (RoomId, Option<UserSummary>)> = HashMap::new();
    let mut trim = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                Some(PeerCommand::Attach { peer, room, user }) => {
                    peers.insert(peer, (room, user));
                }
                None => break,
            },
            event = events.recv() => match event {
                Ok(SfuEvent::DataChannelOpen { room, peer }) => {
                    let user = peers.get(&peer).and_then(|(_, user)| user.clone());
                    let _ = interaction.send(&room, HubCommand::Join { member: MemberId::Peer(peer), user, sink: Sink::DataChannel(peer) });
                }
                Ok(SfuEvent::DataMessage { room, peer, text }) => {
                    let entry = peers.entry(peer).or_insert_with(|| (room.clone(), None));
                    let mut user = entry.1.clone();
                    let is_gift = matches!(protocol::parse(&text), Ok(ClientMessage::Gift { .. }));
                    let reply = if is_gift {
                        // Gifts wait on a database transaction: do not hold up other peers.
                        let (interaction, room, text) = (interaction.clone(), room.clone(), text.clone());
                        tokio::spawn(async move {
                            let mut user = user;
                            if let Some(reply) = interaction.handle_text(&room, MemberId::Peer(peer), &mut user, &text).await {
                                let _ = interaction.inner.sfu.send_data(peer, Arc::from(reply));
                            }
                        });
                        None
                    } else {
                        let reply = interaction.handle_text(&room, MemberId::Peer(peer), &mut user, &text).await;
                        entry.1 = user;
                        reply
                    };
                    if let Some(reply) = reply {
                        let _ = interaction.inner.sfu.send_data(peer, Arc::from(reply));
                    }
                }
                Ok(SfuEvent::PeerClosed { room, peer, .. }) => {
                    peers.remove(&peer);
                    let _ = interaction.send(&room, HubCommand::Leave { member: MemberId::Peer(peer) });
                }
                Ok(SfuEvent::Live { room, .. }) => {
                    let _ = interaction.send(&room, HubCommand::System { event: "show_started" });
                }
                Ok(SfuEvent::Offline { room }) => {
                    let _ = interaction.send(&room, HubCommand::System { event: "show_ended" });
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "data-channel adapter fell behind the media plane");
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
            _ = trim.tick() => interaction.trim_limiters(),
        }
    }
}
