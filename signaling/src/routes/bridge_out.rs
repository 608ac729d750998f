//! The bridge's players' routes (`/live/{room}.flv`, `/hls/…`, `/llhls/…`,
//! `/recordings/…`, served by the `bridge` crate) behind the same access rules as WHEP:
//! closed rooms are gone, private rooms need a token of the host, an admin or a granted
//! user (`Authorization: Bearer …`, or `?token=…` for players that cannot set headers),
//! and anonymous viewers need a login when the server says so. Room lookups are cached
//! for a few seconds so segment requests do not each hit the database.

use crate::error::AppError;
use crate::state::AppState;
use crate::store::{StoreError, Visibility};
use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a room's visibility is cached.
const CACHE_TTL: Duration = Duration::from_secs(5);
/// Most cached rooms.
const CACHE_MAX: usize = 10_000;

#[derive(Clone, Copy)]
enum Access {
    Missing,
    Public,
    Private,
}

#[derive(Clone, Default)]
struct AccessCache(Arc<Mutex<HashMap<String, (Instant, Access)>>>);

pub(super) fn routes(state: &AppState) -> Router<AppState> {
    let cache = AccessCache::default();
    bridge::http::router::<AppState>(state.bridge.clone()).layer(
        axum::middleware::from_fn_with_state((state.clone(), cache), guard),
    )
}

/// The room id of a bridge path.
fn room_of(path: &str) -> Option<&str> {
    let mut parts = path.trim_start_matches('/').split('/');
    match (parts.next()?, parts.next()?) {
        ("live", file) => file.strip_suffix(".flv"),
        ("hls" | "llhls" | "recordings", room) => Some(room),
        _ => None,
    }
}

fn token_from_query(query: Option<&str>) -> Option<String> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == "token")
        .map(|(_, v)| v.to_owned())
        .filter(|v| !v.is_empty())
}

async fn access(state: &AppState, cache: &AccessCache, room: &str) -> Result<Access, AppError> {
    let now = Instant::now();
    if let Ok(map) = cache.0.lock()
        && let Some((at, access)) = map.get(room)
        && now.duration_since(*at) < CACHE_TTL
    {
        return Ok(*access);
    }
    let access = match state.store.room(room).await {
        Ok(r) if r.closed => Access::Missing,
        Ok(r) if r.visibility == Visibility::Private => Access::Private,
        Ok(_) => Access::Public,
        Err(StoreError::NotFound) => Access::Missing,
        Err(other) => return Err(other.into()),
    };
    if let Ok(mut map) = cache.0.lock() {
        if map.len() >= CACHE_MAX {
            map.retain(|_, (at, _)| now.duration_since(*at) < CACHE_TTL);
        }
        map.insert(room.to_owned(), (now, access));
    }
    Ok(access)
}

async fn guard(
    State((state, cache)): State<(AppState, AccessCache)>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_owned();
    let query = request.uri().query().map(str::to_owned);
    let authorization = request.headers().clone();
    // Subscribed before the check: a kick between the check and the stream still ends it.
    let cuts = path.starts_with("/live/").then(|| state.access.cuts());
    match check(&state, &cache, &path, query.as_deref(), &authorization).await {
        Ok((private, user)) => {
            note_hls_player(&state, &path, &request);
            let mut response = next.run(request).await;
            if let (Some(cuts), Some(user), Some(room)) = (cuts, user, room_of(&path))
                && response.status().is_success()
            {
                response = ends_on_cut(response, cuts, room.to_owned(), user);
            }
            if private {
                // Private media, playlists and recordings stay out of shared caches (CDNs,
                // proxies) and off the disk of the player's browser.
                response.headers_mut().insert(
                    axum::http::header::CACHE_CONTROL,
                    axum::http::HeaderValue::from_static("private, no-store"),
                );
            }
            // A player that could only put the token in the playlist's URL needs it on
            // every segment and part the playlist names, too.
            match token_from_query(query.as_deref()) {
                Some(token)
                    if path.ends_with(".m3u8")
                        && response.status().is_success()
                        && crate::auth::bearer_token(&authorization)
                            .ok()
                            .flatten()
                            .is_none() =>
                {
                    with_token_in_playlist(response, &token).await
                }
                _ => response,
            }
        }
        Err(err) => err.into_response(),
    }
}

/// An endless media response (HTTP-FLV) of `user` in `room` that ends when they lose
/// access to the room (kick, revoked grant, ban). Segment and playlist requests need no
/// such thing: each one is checked.
fn ends_on_cut(
    response: Response,
    cuts: tokio::sync::broadcast::Receiver<crate::access::Cut>,
    room: String,
    user: i64,
) -> Response {
    use futures::StreamExt;
    use tokio::sync::broadcast::error::RecvError;
    let (parts, body) = response.into_parts();
    let open = (body.into_data_stream(), cuts, room);
    let stream = futures::stream::unfold(open, move |(mut data, mut cuts, room)| async move {
        loop {
            tokio::select! {
                chunk = data.next() => return chunk.map(|chunk| (chunk, (data, cuts, room))),
                cut = cuts.recv() => match cut {
                    Ok(cut) if !cut.ends(&room, user) => continue,
                    // Their access changed, or this stream missed changes (it fell behind
                    // by CUTS_QUEUED of them, or the server is stopping): end; a player
                    // that reconnects is checked again.
                    Ok(_) | Err(RecvError::Lagged(_) | RecvError::Closed) => {
                        tracing::info!(room = %room, user, "open media stream cut");
                        return None;
                    }
                },
            }
        }
    });
    Response::from_parts(parts, axum::body::Body::from_stream(stream))
}

/// A live HLS playlist fetch: the player counts in the room's audience for a while
/// (`live::HLS_PRESENCE`). A player is its address and user agent.
fn note_hls_player(state: &AppState, path: &str, request: &Request) {
    let live_playlist =
        (path.starts_with("/hls/") || path.starts_with("/llhls/")) && path.ends_with(".m3u8");
    let Some(room) = room_of(path).filter(|_| live_playlist) else {
        return;
    };
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.ip())
        .hash(&mut hasher);
    request
        .headers()
        .get(axum::http::header::USER_AGENT)
        .map(|agent| agent.as_bytes())
        .hash(&mut hasher);
    state.hls_audience.seen(room, hasher.finish());
}

/// Largest playlist rewritten (ours are a few KiB; a recording's VOD playlist of a long
/// show is the biggest).
const MAX_PLAYLIST: usize = 4 * 1024 * 1024;

async fn with_token_in_playlist(response: Response, token: &str) -> Response {
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_PLAYLIST).await else {
        return AppError::Internal("playlist too large to rewrite".into()).into_response();
    };
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return Response::from_parts(parts, axum::body::Body::from(bytes));
    };
    let rewritten = carry_token(text, token);
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(rewritten))
}

/// Adds `token=…` to every URI of an HLS playlist: the lines that name a segment or a
/// variant, and the `URI="…"` attributes (`EXT-X-MAP`, `EXT-X-PART`,
/// `EXT-X-PRELOAD-HINT`, `EXT-X-RENDITION-REPORT`, `EXT-X-MEDIA`).
fn carry_token(playlist: &str, token: &str) -> String {
    let add = |uri: &str| {
        let separator = if uri.contains('?') { '&' } else { '?' };
        format!("{uri}{separator}token={token}")
    };
    let mut out = String::with_capacity(playlist.len() + 64 * token.len());
    for line in playlist.split_inclusive('\n') {
        let (content, ending) = match line.strip_suffix('\n') {
            Some(content) => match content.strip_suffix('\r') {
                Some(content) => (content, "\r\n"),
                None => (content, "\n"),
            },
            None => (line, ""),
        };
        if content.is_empty() {
            out.push_str(line);
            continue;
        }
        if !content.starts_with('#') {
            out.push_str(&add(content));
        } else {
            let mut rest = content;
            while let Some(at) = rest.find("URI=\"") {
                let start = at + "URI=\"".len();
                let Some(len) = rest[start..].find('"') else {
                    break;
                };
                out.push_str(&rest[..start]);
                out.push_str(&add(&rest[start..start + len]));
                rest = &rest[start + len..];
            }
            out.push_str(rest);
        }
        out.push_str(ending);
    }
    out
}

/// Asks the access policy whether this request may reach the bridge's route; returns
/// whether the room is private (its responses must not be cached by anyone else) and
/// the account the request came with.
/// Anonymous requests are decided from the cached room facts; a token (an account token
/// as `Authorization: Bearer`, or a room's playback token as `?token=`) is checked
/// against storage on every request, so bans, revoked grants and kicks hold at once.
async fn check(
    state: &AppState,
    cache: &AccessCache,
    path: &str,
    query: Option<&str>,
    headers: &axum::http::HeaderMap,
) -> Result<(bool, Option<i64>), AppError> {
    use crate::access::{Actor, Door, RoomFacts, Standing, decide};
    let Some(room) = room_of(path) else {
        return Ok((false, None));
    };
    let door = if path.starts_with("/recordings/") {
        Door::Recordings
    } else {
        Door::Media
    };
    let access = access(state, cache, room).await?;
    let open_to_anyone = matches!(access, Access::Public) && state.config.anonymous_viewers;
    let user = match crate::auth::bearer_token(headers)? {
        Some(token) => Some(state.auth.user_for_token(&state.store, token).await?),
        None => match token_from_query(query) {
            Some(token) => match state.auth.playback_user(&state.store, &token, room).await {
                Ok(user) => Some(user),
                // A query token that is no playback token of this room (an old client's
                // account token, say) on a room anyone may watch: watch as anyone.
                Err(AppError::Unauthorized(_)) if open_to_anyone => None,
                Err(err) => return Err(err),
            },
            None => None,
        },
    };
    if let Some(user) = &user {
        let stored = crate::access::authorize(state, Some(user), room, door).await?;
        return Ok((stored.visibility == Visibility::Private, Some(user.id)));
    }
    let facts = RoomFacts {
        exists: !matches!(access, Access::Missing),
        private: matches!(access, Access::Private),
        anonymous_viewers: state.config.anonymous_viewers,
    };
    decide(Standing::plain(Actor::Anonymous), facts, door).into_result()?;
    Ok((facts.private, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_room_of_bridge_paths() {
        assert_eq!(room_of("/live/abc.flv"), Some("abc"));
        assert_eq!(room_of("/hls/abc/index.m3u8"), Some("abc"));
        assert_eq!(room_of("/llhls/r-1/part1.2.mp4"), Some("r-1"));
        assert_eq!(room_of("/recordings/r/1-1/index.m3u8"), Some("r"));
        assert_eq!(room_of("/api/rooms"), None);
        assert_eq!(token_from_query(Some("a=1&token=xyz")), Some("xyz".into()));
        assert_eq!(token_from_query(Some("token=")), None);
    }

    #[test]
    fn a_query_token_is_carried_to_every_uri_of_a_playlist() {
        let playlist = "#EXTM3U\n#EXT-X-MAP:URI=\"init.mp4\"\n#EXTINF:2.0,\nseg1.ts\n\
            #EXT-X-PART:DURATION=0.2,URI=\"part1.0.mp4\",INDEPENDENT=YES\n\
            #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part1.1.mp4?x=1\"\r\nlast.ts";
        assert_eq!(
            carry_token(playlist, "T"),
            "#EXTM3U\n#EXT-X-MAP:URI=\"init.mp4?token=T\"\n#EXTINF:2.0,\nseg1.ts?token=T\n\
             #EXT-X-PART:DURATION=0.2,URI=\"part1.0.mp4?token=T\",INDEPENDENT=YES\n\
             #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part1.1.mp4?x=1&token=T\"\r\nlast.ts?token=T"
        );
        assert_eq!(carry_token("#EXTM3U\n\n", "T"), "#EXTM3U\n\n");
        assert_eq!(
            carry_token("#X:URI=\"unterminated", "T"),
            "#X:URI=\"unterminated"
        );
    }
}
