//! The one access policy: who may read, watch, publish, speak in, manage or moderate a
//! room, at every door the server has.
//!
//! [`decide`] is a pure function of the caller's [`Standing`], the [`RoomFacts`] and the
//! [`Door`] — no storage, no clock — so the whole table is unit-tested here. The async
//! shell ([`authorize`], [`standing`]) gathers the facts from storage and turns a refusal
//! into an [`AppError`]; every route asks it instead of checking roles itself.
//!
//! The rules, in order:
//! 1. a door that needs an account (manage, moderate, publish, speak, administer) is `401`
//!    without one, whatever the room (the answer says nothing about the room);
//! 2. a banned account is `403` everywhere: it lost every power, host and admin included;
//! 3. a room that does not exist (or is closed) is `404` at every room door;
//! 4. a private room is `404` to everyone who may not know of it (not its host, not an
//!    admin, not granted) — the same answer as for a room that does not exist;
//! 5. the door's own rule: logging in (`401`) to watch where anonymous viewing is off, the
//!    right role (`403`), and kicks and mutes (`403`) for their duration.

use crate::error::AppError;
use crate::state::AppState;
use crate::store::{Role, Room, User, Visibility};

/// Who the caller is, relative to one room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// No account (no token).
    Anonymous,
    /// A logged-in viewer.
    Viewer,
    /// The room's own host (a host or admin account that owns the room).
    RoomHost,
    /// A host account that does not own this room.
    OtherHost,
    /// An administrator who does not own this room.
    Admin,
}

impl Actor {
    /// Every actor, for tables.
    pub const ALL: [Actor; 5] = [
        Actor::Anonymous,
        Actor::Viewer,
        Actor::RoomHost,
        Actor::OtherHost,
        Actor::Admin,
    ];

    /// The actor `user` is in `room` (`None` for room-less doors).
    pub fn of(user: Option<&User>, room_host: Option<i64>) -> Actor {
        match user {
            None => Actor::Anonymous,
            Some(u) if room_host == Some(u.id) && matches!(u.role, Role::Host | Role::Admin) => {
                Actor::RoomHost
            }
            Some(u) => match u.role {
                Role::Admin => Actor::Admin,
                Role::Host => Actor::OtherHost,
                Role::Viewer => Actor::Viewer,
            },
        }
    }
}

/// The caller's standing: who they are and what moderation holds against them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    /// Who they are.
    pub actor: Actor,
    /// The account is banned.
    pub banned: bool,
    /// They were granted access to the (private) room.
    pub granted: bool,
    /// They are kicked out of the room (the kick has not expired).
    pub kicked: bool,
    /// They are muted in the room (the mute has not expired).
    pub muted: bool,
}

impl Standing {
    /// A caller with no moderation against them.
    pub fn plain(actor: Actor) -> Standing {
        Standing {
            actor,
            banned: false,
            granted: false,
            kicked: false,
            muted: false,
        }
    }
}

/// What the policy needs to know about the room (and the server).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomFacts {
    /// The room exists and is not closed.
    pub exists: bool,
    /// The room is private.
    pub private: bool,
    /// The server lets anonymous clients watch public rooms.
    pub anonymous_viewers: bool,
}

/// A way into a room (or, for [`Door::Administer`], into the server).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    /// `GET /api/rooms/{id}`, `/stream`, `/shows`.
    RoomRead,
    /// Editing, closing, stopping a room; its grants; ending its WHIP session.
    RoomManage,
    /// `POST /whip/{room}`: publishing.
    Whip,
    /// `POST /whep/{room}`: watching by WebRTC (and its data channel).
    Whep,
    /// `GET /ws/rooms/{room}`: the room's event socket.
    WebSocket,
    /// Chat, likes and gifts, over the data channel, the socket or REST.
    Speak,
    /// `/live/{room}.flv`, `/hls/{room}/…`, `/llhls/{room}/…`.
    Media,
    /// `/api/rooms/{id}/recordings` and `/recordings/{room}/…`.
    Recordings,
    /// `/api/rooms/{id}/leaderboard`.
    Leaderboard,
    /// `/api/rooms/{id}/events` (gap fetch).
    Events,
    /// `/api/rooms/{id}/chat`.
    ChatHistory,
    /// Mutes, kicks, message deletion.
    Moderate,
    /// Server administration: users, roles, bans, coins, sessions (room-less).
    Administer,
}

impl Door {
    /// Every door, for tables.
    pub const ALL: [Door; 13] = [
        Door::RoomRead,
        Door::RoomManage,
        Door::Whip,
        Door::Whep,
        Door::WebSocket,
        Door::Speak,
        Door::Media,
        Door::Recordings,
        Door::Leaderboard,
        Door::Events,
        Door::ChatHistory,
        Door::Moderate,
        Door::Administer,
    ];

    /// Doors that need an account whatever the room.
    fn needs_account(self) -> bool {
        matches!(
            self,
            Door::RoomManage | Door::Moderate | Door::Whip | Door::Speak | Door::Administer
        )
    }

    /// Doors that watch or follow the live room: a kick shuts them.
    fn is_live(self) -> bool {
        matches!(
            self,
            Door::Whep
                | Door::WebSocket
                | Door::Speak
                | Door::Media
                | Door::Events
                | Door::ChatHistory
        )
    }
}

/// The policy's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead.
    Allow,
    /// 401: this door needs an account.
    LogIn(&'static str),
    /// 403: known, but not allowed.
    Refuse(&'static str),
    /// 404: no such room, as far as this caller may know.
    Hidden,
}

impl Decision {
    /// The status code this decision becomes.
    pub fn status(self) -> u16 {
        match self {
            Decision::Allow => 200,
            Decision::LogIn(_) => 401,
            Decision::Refuse(_) => 403,
            Decision::Hidden => 404,
        }
    }

    /// `Ok` to go ahead, the error to answer otherwise.
    pub fn into_result(self) -> Result<(), AppError> {
        match self {
            Decision::Allow => Ok(()),
            Decision::LogIn(why) => Err(AppError::Unauthorized(why.into())),
            Decision::Refuse(why) => Err(AppError::Forbidden(why.into())),
            Decision::Hidden => Err(AppError::NotFound("room not found".into())),
        }
    }
}

/// The banned account's answer, everywhere.
pub const BANNED: &str = "this account is banned";

/// Decides one request. Pure: the same facts always give the same answer.
pub fn decide(who: Standing, room: RoomFacts, door: Door) -> Decision {
    use Actor::*;
    if who.actor == Anonymous && door.needs_account() {
        return Decision::LogIn(match door {
            Door::Whip => "publishing needs the host's Authorization: Bearer token",
            Door::Speak => "log in to chat, like or send gifts",
            _ => "log in first: Authorization: Bearer <token>",
        });
    }
    if who.banned {
        return Decision::Refuse(BANNED);
    }
    if door == Door::Administer {
        return match who.actor {
            Admin => Decision::Allow,
            _ => Decision::Refuse("administrators only"),
        };
    }
    if !room.exists {
        return Decision::Hidden;
    }
    let insider = matches!(who.actor, RoomHost | Admin) || who.granted;
    if room.private && !insider {
        return Decision::Hidden;
    }
    match door {
        Door::RoomRead | Door::Recordings | Door::Leaderboard => Decision::Allow,
        Door::RoomManage | Door::Moderate => match who.actor {
            RoomHost | Admin => Decision::Allow,
            _ => Decision::Refuse("only the room's host or an admin may do this"),
        },
        Door::Whip => match who.actor {
            RoomHost => Decision::Allow,
            _ => Decision::Refuse("only the room's host may publish to it"),
        },
        _ if who.kicked && who.actor != RoomHost && door.is_live() => {
            Decision::Refuse("you were removed from this room; try again later")
        }
        Door::Speak if who.muted && who.actor != RoomHost => {
            Decision::Refuse("you are muted in this room")
        }
        Door::Whep | Door::WebSocket | Door::Media
            if who.actor == Anonymous && !room.anonymous_viewers =>
        {
            Decision::LogIn("log in to watch")
        }
        _ => Decision::Allow,
    }
}

/// The facts of a stored room (a closed room does not exist for the policy).
pub fn facts(state: &AppState, room: Option<&Room>) -> RoomFacts {
    RoomFacts {
        exists: room.is_some_and(|r| !r.closed),
        private: room.is_some_and(|r| r.visibility == Visibility::Private),
        anonymous_viewers: state.config.anonymous_viewers,
    }
}

/// Loads `room` and asks the policy whether `user` may pass `door`; returns the room.
/// A room door whose room is closed answers 404, except the managing doors, which still
/// reach a closed room (the route then decides, e.g. 409).
pub async fn authorize(
    state: &AppState,
    user: Option<&User>,
    room_id: &str,
    door: Door,
) -> Result<Room, AppError> {
    // One query: the room, and the caller's kick and grant in it.
    let found = match user {
        Some(u) => state.store.room_with_standing(room_id, u.id).await,
        None => state
            .store
            .room(room_id)
            .await
            .map(|room| (room, None, false)),
    };
    let found = match found {
        Ok(found) => Some(found),
        Err(crate::store::StoreError::NotFound) => None,
        Err(other) => return Err(other.into()),
    };
    judge(state, user, found, door)
}

/// [`authorize`] for the busiest REST path (gifts): the account token is required, and
/// the room with the caller's kick and grant comes from [`StandingCache`] when it was
/// read in the last [`STANDING_TTL`] (kicks and grant changes drop their entry at once).
/// Returns the user and the room.
pub async fn authorize_bearer(
    state: &AppState,
    headers: &axum::http::HeaderMap,
    room_id: &str,
    door: Door,
) -> Result<(User, Room), AppError> {
    let token = crate::auth::bearer_token(headers)?.ok_or_else(|| {
        AppError::Unauthorized("log in first: Authorization: Bearer <token>".into())
    })?;
    let user = state.auth.user_for_token(&state.store, token).await?;
    let found = match state.access.standings.get(room_id, user.id) {
        Some(found) => Some(found),
        None => match state.store.room_with_standing(room_id, user.id).await {
            Ok(found) => {
                state.access.standings.put(room_id, user.id, &found);
                Some(found)
            }
            Err(crate::store::StoreError::NotFound) => None,
            Err(other) => return Err(other.into()),
        },
    };
    let room = judge(state, Some(&user), found, door)?;
    Ok((user, room))
}

/// How long a cached standing is used.
pub const STANDING_TTL: std::time::Duration = std::time::Duration::from_secs(2);
/// Most cached standings (beyond that, expired entries are dropped first).
const STANDING_MAX: usize = 10_000;

type CachedStanding = (std::time::Instant, (Room, Option<i64>, bool));

/// Recently read standings (room, kick expiry, grant) per (room, user).
#[derive(Debug, Default)]
pub struct StandingCache(
    std::sync::Mutex<std::collections::HashMap<(String, i64), CachedStanding>>,
);

impl StandingCache {
    fn get(&self, room: &str, user: i64) -> Option<(Room, Option<i64>, bool)> {
        let map = self.0.lock().ok()?;
        let (at, found) = map.get(&(room.to_owned(), user))?;
        (at.elapsed() < STANDING_TTL).then(|| found.clone())
    }

    fn put(&self, room: &str, user: i64, found: &(Room, Option<i64>, bool)) {
        if let Ok(mut map) = self.0.lock() {
            if map.len() >= STANDING_MAX {
                map.retain(|_, (at, _)| at.elapsed() < STANDING_TTL);
                if map.len() >= STANDING_MAX {
                    map.clear();
                }
            }
            map.insert(
                (room.to_owned(), user),
                (std::time::Instant::now(), found.clone()),
            );
        }
    }

    /// Forgets `user`'s standing in `room` (after a kick, a grant or a revocation).
    pub fn forget(&self, room: &str, user: i64) {
        if let Ok(mut map) = self.0.lock() {
            map.remove(&(room.to_owned(), user));
        }
    }
}

/// Someone lost access: a kick, a revoked grant (`room` set) or a ban (every room).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    /// The room, or `None` for every room.
    pub room: Option<String>,
    /// The user.
    pub user: i64,
}

impl Cut {
    /// Whether this cut ends `user`'s stream of `room`.
    pub fn ends(&self, room: &str, user: i64) -> bool {
        self.user == user && self.room.as_deref().is_none_or(|r| r == room)
    }
}

/// Most cuts queued for one open stream; a stream that falls further behind ends (the
/// player reconnects and is checked again).
const CUTS_QUEUED: usize = 256;

/// The access policy's mutable state, shared by the routes.
#[derive(Debug)]
pub struct AccessState {
    /// Public profile reads, limited per client address.
    pub profile_reads: ProfileReads,
    /// Recently read standings for the gift path.
    pub standings: StandingCache,
    /// Access changes that open streams (HTTP-FLV) obey: each stream subscribes.
    cuts: tokio::sync::broadcast::Sender<Cut>,
}

impl AccessState {
    /// Fresh state for `settings`.
    pub fn new(settings: &AccessSettings) -> Self {
        Self {
            profile_reads: ProfileReads::new(settings.profile_reads_per_minute_per_ip),
            standings: StandingCache::default(),
            cuts: tokio::sync::broadcast::channel(CUTS_QUEUED).0,
        }
    }

    /// Announces that `user` lost access to `room` (`None`: to every room): their open
    /// streams end.
    pub fn cut(&self, room: Option<&str>, user: i64) {
        // No receiver means no open stream: nothing to end.
        let _ = self.cuts.send(Cut {
            room: room.map(str::to_owned),
            user,
        });
    }

    /// The access changes from now on (subscribe before checking access, so no change
    /// between the check and the subscription is missed).
    pub fn cuts(&self) -> tokio::sync::broadcast::Receiver<Cut> {
        self.cuts.subscribe()
    }
}

/// The policy's answer for a looked-up room (with the caller's kick expiry and grant).
fn judge(
    state: &AppState,
    user: Option<&User>,
    found: Option<(Room, Option<i64>, bool)>,
    door: Door,
) -> Result<Room, AppError> {
    let mut facts = facts(state, found.as_ref().map(|(room, _, _)| room));
    if matches!(door, Door::RoomManage | Door::Moderate | Door::Whip) {
        facts.exists = found.is_some();
    }
    let (room, kicked_until, granted) = match found {
        Some(found) => found,
        None => {
            // Still the policy's answer (401 for an anonymous caller at an account door,
            // 403 for a banned account), then 404.
            let who = Standing {
                banned: user.is_some_and(User::is_banned),
                ..Standing::plain(Actor::of(user, None))
            };
            decide(who, facts, door).into_result()?;
            return Err(AppError::NotFound("room not found".into()));
        }
    };
    let who = Standing {
        actor: Actor::of(user, room.host_id),
        banned: user.is_some_and(User::is_banned),
        granted,
        kicked: kicked_until.is_some_and(|until| until > crate::store::now_ms()),
        muted: false,
    };
    decide(who, facts, door).into_result()?;
    Ok(room)
}

/// 403 unless `user` may administer the server (an admin in good standing).
pub fn require_admin(user: &User) -> Result<(), AppError> {
    administer(user)
}

/// Maps a missing row to a 404 naming what was looked for.
pub fn not_found(err: crate::store::StoreError, what: &str) -> AppError {
    match err {
        crate::store::StoreError::NotFound => AppError::NotFound(format!("{what} not found")),
        other => other.into(),
    }
}

/// Asks the policy about a room-less door (server administration).
pub fn administer(user: &User) -> Result<(), AppError> {
    let who = Standing {
        banned: user.is_banned(),
        ..Standing::plain(Actor::of(Some(user), None))
    };
    let none = RoomFacts {
        exists: false,
        private: false,
        anonymous_viewers: false,
    };
    decide(who, none, Door::Administer).into_result()
}

/// Ends `user`'s live sessions in `room`: WebRTC (media and data channel), sockets and
/// open HTTP-FLV streams.
pub async fn end_sessions_in_room(state: &AppState, room: &str, user: i64) {
    state.access.cut(Some(room), user);
    if let Some(room_id) = sfu::RoomId::parse(room) {
        let peers = state
            .interaction
            .ask(&room_id, |reply| {
                crate::interaction::hub::HubCommand::Kick {
                    user,
                    until: std::time::Instant::now(),
                    reply,
                }
            })
            .await
            .unwrap_or_default();
        for peer in peers {
            let _ = state.sfu.close(peer).await;
        }
    }
    for session in state.live.sessions(Some(user)).await {
        if session.room == room {
            let _ = state.sfu.close(session.peer).await;
        }
    }
}

/// Access settings (`[access]` in the configuration file).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccessSettings {
    /// The TURN server's shared secret (coturn `--static-auth-secret`): clients get
    /// ephemeral credentials derived from it (TURN REST API). Never shown.
    #[serde(skip_serializing)]
    pub turn_secret: Option<String>,
    /// TURN URLs the ephemeral credentials are for (`turn:host:3478?transport=udp`, …).
    pub turn_urls: Vec<String>,
    /// Lifetime of a TURN credential, seconds.
    pub turn_credential_ttl_secs: u64,
    /// Lifetime of a playback token (the `?token=` of FLV/HLS links), seconds.
    pub playback_token_ttl_secs: u64,
    /// Public profile reads allowed per minute from one address.
    pub profile_reads_per_minute_per_ip: u32,
}

impl Default for AccessSettings {
    fn default() -> Self {
        Self {
            turn_secret: None,
            turn_urls: Vec::new(),
            turn_credential_ttl_secs: 3600,
            playback_token_ttl_secs: 600,
            profile_reads_per_minute_per_ip: 60,
        }
    }
}

/// An ephemeral TURN credential (TURN REST API, as coturn's `--use-auth-secret` checks).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct TurnCredential {
    /// The TURN URLs.
    pub urls: Vec<String>,
    /// `expiry:user`, expiry in Unix seconds.
    pub username: String,
    /// base64(HMAC-SHA1(secret, username)).
    pub credential: String,
}

/// The credential for `user` (a user id, or `anonymous`) valid until `expires_at` (Unix s).
pub fn turn_credential(
    secret: &str,
    urls: &[String],
    user: &str,
    expires_at: u64,
) -> TurnCredential {
    use base64::Engine;
    use hmac::Mac;
    let username = format!("{expires_at}:{user}");
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(username.as_bytes());
    let credential = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    TurnCredential {
        urls: urls.to_vec(),
        username,
        credential,
    }
}

/// The TURN credential the server hands `user` now, if TURN is configured.
pub fn turn_for(state: &AppState, user: Option<&User>) -> Option<TurnCredential> {
    let settings = &state.config.access;
    let secret = settings.turn_secret.as_deref().filter(|s| !s.is_empty())?;
    if settings.turn_urls.is_empty() {
        return None;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let who = user.map_or_else(|| "anonymous".to_owned(), |u| u.id.to_string());
    Some(turn_credential(
        secret,
        &settings.turn_urls,
        &who,
        now + settings.turn_credential_ttl_secs.max(60),
    ))
}

type KeyedLimiter<K> = governor::RateLimiter<
    K,
    governor::state::keyed::DefaultKeyedStateStore<K>,
    governor::clock::DefaultClock,
>;

/// Public profile reads, limited per client address (profiles are personal data on a
/// dating platform: no address may crawl them).
pub struct ProfileReads(KeyedLimiter<std::net::IpAddr>);

impl std::fmt::Debug for ProfileReads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProfileReads")
    }
}

impl ProfileReads {
    /// `per_minute` reads per address (at least one).
    pub fn new(per_minute: u32) -> Self {
        let quota = governor::Quota::per_minute(
            std::num::NonZeroU32::new(per_minute.max(1)).expect("max(1) is non-zero"),
        );
        Self(governor::RateLimiter::keyed(quota))
    }

    /// Counts one read from `ip`; 429 with the seconds to wait when over the limit.
    pub fn check(&self, ip: std::net::IpAddr) -> Result<(), AppError> {
        use governor::clock::Clock;
        let clock = governor::clock::DefaultClock::default();
        self.0.check_key(&ip).map_err(|not_until| {
            let secs = not_until.wait_time_from(clock.now()).as_secs().max(1);
            AppError::TooManyRequests {
                retry_after_secs: secs,
            }
        })?;
        self.0.retain_recent();
        Ok(())
    }
}

/// Standalone mode: publishing to a room creates it (owned by nobody).
pub async fn ensure_standalone_room(state: &AppState, room: &sfu::RoomId) -> Result<(), AppError> {
    match state.store.room(room.as_str()).await {
        Ok(existing) if existing.closed => Err(AppError::Conflict("the room is closed".into())),
        Ok(_) => Ok(()),
        Err(crate::store::StoreError::NotFound) => {
            let new = crate::store::NewRoom {
                id: room.to_string(),
                host_id: None,
                title: room.to_string(),
                cover_url: None,
                tags: Vec::new(),
                city: None,
                scheduled_start: None,
                visibility: crate::store::Visibility::Public,
            };
            match state.store.create_room(&new).await {
                Ok(_) | Err(crate::store::StoreError::Conflict(_)) => Ok(()),
                Err(other) => Err(other.into()),
            }
        }
        Err(other) => Err(other.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Actor::*;
    use Door::*;

    const PUBLIC: RoomFacts = RoomFacts {
        exists: true,
        private: false,
        anonymous_viewers: true,
    };
    const PRIVATE: RoomFacts = RoomFacts {
        exists: true,
        private: true,
        anonymous_viewers: true,
    };
    const MISSING: RoomFacts = RoomFacts {
        exists: false,
        private: false,
        anonymous_viewers: true,
    };

    /// The expected status of the plain (no moderation) caller at a door.
    fn expected_plain(actor: Actor, room: RoomFacts, granted: bool, door: Door) -> u16 {
        let account_door = matches!(door, RoomManage | Moderate | Whip | Speak | Administer);
        if actor == Anonymous && account_door {
            return 401;
        }
        if door == Administer {
            return if actor == Admin { 200 } else { 403 };
        }
        if !room.exists {
            return 404;
        }
        let insider = matches!(actor, RoomHost | Admin) || granted;
        if room.private && !insider {
            return 404;
        }
        match door {
            RoomRead | Recordings | Leaderboard | Events | ChatHistory | Speak => 200,
            RoomManage | Moderate => match actor {
                RoomHost | Admin => 200,
                _ => 403,
            },
            Whip => match actor {
                RoomHost => 200,
                _ => 403,
            },
            Whep | WebSocket | Media => {
                if actor == Anonymous && !room.anonymous_viewers {
                    401
                } else {
                    200
                }
            }
            Administer => unreachable!(),
        }
    }

    #[test]
    fn every_role_room_and_door_of_a_caller_in_good_standing() {
        let mut rooms = vec![PUBLIC, PRIVATE, MISSING];
        rooms.push(RoomFacts {
            anonymous_viewers: false,
            ..PUBLIC
        });
        let mut checked = 0;
        for actor in Actor::ALL {
            for room in &rooms {
                for granted in [false, true] {
                    for door in Door::ALL {
                        let who = Standing {
                            granted,
                            ..Standing::plain(actor)
                        };
                        assert_eq!(
                            decide(who, *room, door).status(),
                            expected_plain(actor, *room, granted, door),
                            "{actor:?} granted={granted} at {door:?} of {room:?}"
                        );
                        checked += 1;
                    }
                }
            }
        }
        assert_eq!(checked, 5 * 4 * 2 * 13);
    }

    #[test]
    fn a_banned_account_loses_every_power() {
        for actor in Actor::ALL.into_iter().filter(|a| *a != Anonymous) {
            for room in [PUBLIC, PRIVATE] {
                for door in Door::ALL {
                    let who = Standing {
                        banned: true,
                        granted: true,
                        ..Standing::plain(actor)
                    };
                    assert_eq!(
                        decide(who, room, door),
                        Decision::Refuse(BANNED),
                        "{actor:?} at {door:?}"
                    );
                }
            }
        }
        // Whatever the room: a banned account learns nothing and may do nothing.
        let who = Standing {
            banned: true,
            ..Standing::plain(Viewer)
        };
        assert_eq!(decide(who, MISSING, Whep), Decision::Refuse(BANNED));
    }

    #[test]
    fn a_kick_shuts_every_live_door_but_the_room_stays_known() {
        for actor in [Viewer, OtherHost, Admin] {
            for room in [PUBLIC, PRIVATE] {
                for door in Door::ALL {
                    let who = Standing {
                        kicked: true,
                        granted: true,
                        ..Standing::plain(actor)
                    };
                    let plain = Standing {
                        granted: true,
                        ..Standing::plain(actor)
                    };
                    let expected = if matches!(
                        door,
                        Whep | WebSocket | Speak | Media | Events | ChatHistory
                    ) {
                        403
                    } else {
                        decide(plain, room, door).status()
                    };
                    assert_eq!(
                        decide(who, room, door).status(),
                        expected,
                        "{actor:?} kicked at {door:?} of {room:?}"
                    );
                }
            }
        }
        // A private room's outsider who is "kicked" still learns nothing.
        let who = Standing {
            kicked: true,
            ..Standing::plain(Viewer)
        };
        assert_eq!(decide(who, PRIVATE, Whep), Decision::Hidden);
        // The host cannot be kicked out of their own room.
        let host = Standing {
            kicked: true,
            ..Standing::plain(RoomHost)
        };
        assert_eq!(decide(host, PUBLIC, Whep), Decision::Allow);
    }

    #[test]
    fn a_mute_closes_only_speaking() {
        for actor in [Viewer, OtherHost, Admin] {
            for door in Door::ALL {
                let who = Standing {
                    muted: true,
                    ..Standing::plain(actor)
                };
                let expected = if door == Speak {
                    403
                } else {
                    decide(Standing::plain(actor), PUBLIC, door).status()
                };
                assert_eq!(decide(who, PUBLIC, door).status(), expected, "{door:?}");
            }
        }
        let anonymous = Standing {
            muted: true,
            ..Standing::plain(Anonymous)
        };
        assert_eq!(decide(anonymous, PUBLIC, Speak).status(), 401);
    }

    #[test]
    fn actors_are_derived_from_role_and_ownership() {
        let user = |id: i64, role: Role| User {
            id,
            role,
            ..crate::store::User::for_tests()
        };
        assert_eq!(Actor::of(None, Some(1)), Anonymous);
        assert_eq!(Actor::of(Some(&user(1, Role::Host)), Some(1)), RoomHost);
        assert_eq!(Actor::of(Some(&user(1, Role::Admin)), Some(1)), RoomHost);
        assert_eq!(
            Actor::of(Some(&user(1, Role::Viewer)), Some(1)),
            Viewer,
            "a host demoted to viewer no longer runs the room"
        );
        assert_eq!(Actor::of(Some(&user(2, Role::Host)), Some(1)), OtherHost);
        assert_eq!(Actor::of(Some(&user(2, Role::Admin)), Some(1)), Admin);
        assert_eq!(Actor::of(Some(&user(2, Role::Admin)), None), Admin);
    }

    #[test]
    fn turn_credentials_follow_the_turn_rest_api() {
        let c = turn_credential(
            "secret",
            &["turn:t.example:3478".to_owned()],
            "42",
            1_700_000_000,
        );
        assert_eq!(c.username, "1700000000:42");
        // base64(HMAC-SHA1("secret", "1700000000:42")), computed independently (Python's
        // hmac module), as coturn's --use-auth-secret computes it.
        assert_eq!(c.credential, "ZzfPuPkrzUOsnm5YISnTiKDnXWo=");
        assert_eq!(c.urls, vec!["turn:t.example:3478".to_owned()]);
    }
}
