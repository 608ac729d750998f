//! Live notices (开播提醒): when a host goes live, their followers and the users who
//! reserved one of the room's scheduled shows are told — in the app over `GET /ws/me`,
//! and through the operator's webhook ([`crate::webhooks`]) for push channels.
//!
//! One task owns the table of connected `/ws/me` sockets and follows the media plane's
//! events; who to tell is worked out on a separate task (storage queries) that hands the
//! frames back to the owner, so a slow query never holds up a subscription. Private rooms
//! send no notices (their followers may not know of them). A room that goes live again
//! within [`RENOTIFY_AFTER`] (a publisher reconnecting) is not announced twice.

use crate::store::{Store, Visibility};
use crate::webhooks::{WebhookEvent, Webhooks};
use bytes::Bytes;
use serde_json::json;
use sfu::{SfuEvent, SfuHandle};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, oneshot};

/// A room live again within this long is not announced again.
pub const RENOTIFY_AFTER: Duration = Duration::from_secs(300);
/// Notices one socket may have queued; beyond that it misses them (they stay in
/// `GET /api/me/notices`).
pub const SOCKET_QUEUE: usize = 64;
/// Reservations of shows starting this long before going live still count (a host may
/// start late) …
const RESERVED_BEFORE_SECS: i64 = 3 * 3600;
/// … and of shows starting up to this long after (a host may start early).
const RESERVED_AFTER_SECS: i64 = 24 * 3600;

enum Command {
    Subscribe {
        user: i64,
        sink: mpsc::Sender<Bytes>,
        ready: oneshot::Sender<()>,
    },
    Deliver {
        notices: Vec<(i64, Bytes)>,
    },
}

/// Subscribes sockets to a user's notices. Cheap to clone.
#[derive(Clone, Debug)]
pub struct NotifyHandle {
    commands: mpsc::Sender<Command>,
}

impl NotifyHandle {
    /// Starts the notifier on the media plane's events.
    pub fn start(store: Store, sfu: &SfuHandle, webhooks: Webhooks) -> NotifyHandle {
        let (commands, receiver) = mpsc::channel(1024);
        let events = sfu.subscribe_events();
        tokio::spawn(run(store, webhooks, events, receiver, commands.clone()));
        NotifyHandle { commands }
    }

    /// A queue of `user`'s notice frames, registered once this returns.
    pub async fn subscribe(&self, user: i64) -> Option<mpsc::Receiver<Bytes>> {
        let (sink, receiver) = mpsc::channel(SOCKET_QUEUE);
        let (ready, registered) = oneshot::channel();
        self.commands
            .send(Command::Subscribe { user, sink, ready })
            .await
            .ok()?;
        registered.await.ok()?;
        Some(receiver)
    }
}

async fn run(
    store: Store,
    webhooks: Webhooks,
    mut events: broadcast::Receiver<SfuEvent>,
    mut commands: mpsc::Receiver<Command>,
    own: mpsc::Sender<Command>,
) {
    let mut sockets: HashMap<i64, Vec<mpsc::Sender<Bytes>>> = HashMap::new();
    let mut announced: HashMap<String, Instant> = HashMap::new();
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                Some(Command::Subscribe { user, sink, ready }) => {
                    let list = sockets.entry(user).or_default();
                    list.retain(|s| !s.is_closed());
                    list.push(sink);
                    let _ = ready.send(());
                }
                Some(Command::Deliver { notices }) => {
                    for (user, frame) in notices {
                        if let Some(list) = sockets.get_mut(&user) {
                            list.retain(|s| !s.is_closed());
                            for sink in list.iter() {
                                // A full queue misses this notice; the socket stays.
                                let _ = sink.try_send(frame.clone());
                            }
                        }
                    }
                    sockets.retain(|_, list| !list.is_empty());
                }
                None => break,
            },
            event = events.recv() => match event {
                Ok(SfuEvent::Live { room, .. }) => {
                    let now = Instant::now();
                    announced.retain(|_, at| now.duration_since(*at) < RENOTIFY_AFTER);
                    if announced.contains_key(room.as_str()) {
                        continue;
                    }
                    announced.insert(room.to_string(), now);
                    let (store, webhooks, own) = (store.clone(), webhooks.clone(), own.clone());
                    let room = room.to_string();
                    tokio::spawn(async move {
                        match live_notices(&store, &webhooks, &room).await {
                            Ok(notices) if !notices.is_empty() => {
                                let _ = own.send(Command::Deliver { notices }).await;
                            }
                            Ok(_) => {}
                            Err(err) => tracing::warn!(%room, %err, "live notices not sent"),
                        }
                    });
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "notifier fell behind the media plane");
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
        }
    }
}

/// Who to tell that `room` went live, with each one's frame; queues the webhook event.
async fn live_notices(
    store: &Store,
    webhooks: &Webhooks,
    room: &str,
) -> Result<Vec<(i64, Bytes)>, crate::store::StoreError> {
    let room = store.room(room).await?;
    let Some(host_id) = room.host_id else {
        return Ok(Vec::new());
    };
    if room.visibility == Visibility::Private || room.closed {
        return Ok(Vec::new());
    }
    let host = store.user(host_id).await?;
    let now_ms = crate::store::now_ms();
    let now = now_ms / 1000;
    let reservers = store
        .reservers_between(
            &room.id,
            now - RESERVED_BEFORE_SECS,
            now + RESERVED_AFTER_SECS,
        )
        .await?;
    let followers = store.follower_ids(host_id).await?;
    let host_json =
        json!({ "id": host.id, "nickname": host.nickname, "avatar_url": host.avatar_url });
    let frame = |kind: &str, title: &str| {
        Bytes::from(
            json!({
                "type": "notice",
                "notice": { "kind": kind, "room_id": room.id, "host": host_json, "title": title, "at": now_ms },
            })
            .to_string(),
        )
    };
    let mut notices: Vec<(i64, Bytes)> = Vec::new();
    for (user, title) in &reservers {
        if *user != host_id {
            notices.push((*user, frame("scheduled_live", title)));
        }
    }
    let live = frame("live", &room.title);
    for user in followers {
        if user != host_id && !notices.iter().any(|(u, _)| *u == user) {
            notices.push((user, live.clone()));
        }
    }
    let mut recipients: Vec<i64> = notices.iter().map(|(u, _)| *u).collect();
    recipients.sort_unstable();
    webhooks
        .emit(&WebhookEvent::HostLive {
            room_id: room.id.clone(),
            host_id,
            recipients,
        })
        .await?;
    Ok(notices)
}
