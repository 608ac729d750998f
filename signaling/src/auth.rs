//! Authentication: argon2id password hashes, JWT access tokens, the request extractors
//! that turn a bearer token into a user, and login rate limiting.
//!
//! Tokens are HS256 JWTs signed with a key generated on first start and kept in the
//! database (so every node sharing it accepts the same tokens). A token names the user
//! and the user's `token_version`; bans and password changes bump the version, which
//! revokes every older token. Roles and bans are always read fresh from storage.

use crate::error::AppError;
use crate::state::AppState;
use crate::store::{Store, StoreError, User};
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use base64::Engine;
use governor::{Quota, RateLimiter};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// User id.
    pub sub: String,
    /// The user's token version when issued.
    pub ver: i64,
    /// Role when issued (informational; authorization reads storage).
    pub role: String,
    /// Issued at (seconds).
    pub iat: u64,
    /// Expires at (seconds).
    pub exp: u64,
}

/// Signs and verifies tokens; hashes and checks passwords.
pub struct AuthService {
    encoding: EncodingKey,
    decoding: DecodingKey,
    ttl: Duration,
}

impl std::fmt::Debug for AuthService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthService")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// The name of the signing key in the secrets table.
const SIGNING_KEY: &str = "jwt_signing_key";

impl AuthService {
    /// Loads (or creates, on first start) the signing key.
    pub async fn load(store: &Store, ttl: Duration) -> Result<AuthService, StoreError> {
        let encoded = store
            .secret(SIGNING_KEY, || {
                let key: [u8; 32] = rand::random();
                base64::engine::general_purpose::STANDARD.encode(key)
            })
            .await?;
        let key = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| StoreError::Corrupt("signing key".into()))?;
        Ok(AuthService {
            encoding: EncodingKey::from_secret(&key),
            decoding: DecodingKey::from_secret(&key),
            ttl,
        })
    }

    /// Token lifetime.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Issues an access token for `user`; returns it with its expiry (Unix seconds).
    pub fn issue(&self, user: &User) -> Result<(String, u64), AppError> {
        let now = unix_now();
        let exp = now + self.ttl.as_secs();
        let claims = Claims {
            sub: user.id.to_string(),
            ver: user.token_version,
            role: user.role.as_str().to_owned(),
            iat: now,
            exp,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| AppError::Internal(format!("token signing: {e}")))?;
        Ok((token, exp))
    }

    /// Verifies signature and expiry.
    pub fn verify(&self, token: &str) -> Result<Claims, AppError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    AppError::Unauthorized("token expired; log in again".into())
                }
                _ => AppError::Unauthorized("invalid token".into()),
            })
    }

    /// The user a token belongs to, if the token is valid and not revoked.
    pub async fn user_for_token(&self, store: &Store, token: &str) -> Result<User, AppError> {
        let (id, version) = self.token_subject(token)?;
        let user = store.user(id).await.map_err(|e| match e {
            StoreError::NotFound => AppError::Unauthorized("invalid token".into()),
            other => other.into(),
        })?;
        admit(&user, version)?;
        Ok(user)
    }

    /// The user id and token version a valid (signed, unexpired) account token names;
    /// the caller reads the user and checks them with [`admit`].
    pub fn token_subject(&self, token: &str) -> Result<(i64, i64), AppError> {
        let claims = self.verify(token)?;
        let id: i64 = claims
            .sub
            .parse()
            .map_err(|_| AppError::Unauthorized("invalid token".into()))?;
        Ok((id, claims.ver))
    }
}

/// Whether a token of `version` still speaks for `user`: not revoked (401) and the
/// account not banned (403) — checked on every request.
pub fn admit(user: &User, version: i64) -> Result<(), AppError> {
    if user.token_version != version {
        return Err(AppError::Unauthorized("token revoked; log in again".into()));
    }
    // A banned account keeps no power, whatever its role.
    if user.is_banned() {
        return Err(AppError::Forbidden(crate::access::BANNED.into()));
    }
    Ok(())
}

/// The audience of playback tokens (account tokens have none, so neither kind passes
/// for the other).
const PLAYBACK_AUDIENCE: &str = "queqiao-playback";

/// The claims of a playback token: one user, one room, a few minutes.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PlaybackClaims {
    /// User id.
    sub: String,
    /// The user's token version when issued (a ban or password change revokes it).
    ver: i64,
    /// The one room it opens.
    room: String,
    /// Always [`PLAYBACK_AUDIENCE`].
    aud: String,
    /// Issued at (seconds).
    iat: u64,
    /// Expires at (seconds).
    exp: u64,
}

impl AuthService {
    /// A short-lived token that lets `user` play `room`'s FLV/HLS/LL-HLS media and
    /// recordings (it goes in URLs, so it must not be the account token).
    pub fn issue_playback(
        &self,
        user: &User,
        room: &str,
        ttl: Duration,
    ) -> Result<String, AppError> {
        let now = unix_now();
        let claims = PlaybackClaims {
            sub: user.id.to_string(),
            ver: user.token_version,
            room: room.to_owned(),
            aud: PLAYBACK_AUDIENCE.to_owned(),
            iat: now,
            exp: now + ttl.as_secs().max(1),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| AppError::Internal(format!("token signing: {e}")))
    }

    /// The user a playback token for `room` belongs to (401 when it is invalid, expired,
    /// revoked or for another room; 403 for a banned account).
    pub async fn playback_user(
        &self,
        store: &Store,
        token: &str,
        room: &str,
    ) -> Result<User, AppError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub", "aud"]);
        validation.set_audience(&[PLAYBACK_AUDIENCE]);
        let claims = jsonwebtoken::decode::<PlaybackClaims>(token, &self.decoding, &validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => AppError::Unauthorized(
                    "playback link expired; fetch /api/rooms/{id}/stream again".into(),
                ),
                _ => AppError::Unauthorized(
                    "invalid playback token: use the links of /api/rooms/{id}/stream".into(),
                ),
            })?;
        if claims.room != room {
            return Err(AppError::Unauthorized(
                "this playback token is for another room".into(),
            ));
        }
        let id: i64 = claims
            .sub
            .parse()
            .map_err(|_| AppError::Unauthorized("invalid playback token".into()))?;
        let user = store.user(id).await.map_err(|e| match e {
            StoreError::NotFound => AppError::Unauthorized("invalid playback token".into()),
            other => other.into(),
        })?;
        if user.token_version != claims.ver {
            return Err(AppError::Unauthorized("token revoked; log in again".into()));
        }
        if user.is_banned() {
            return Err(AppError::Forbidden(crate::access::BANNED.into()));
        }
        Ok(user)
    }
}

/// Hashes a password with argon2id (off the async threads: it is deliberately slow).
pub async fn hash_password(password: String) -> Result<String, AppError> {
    tokio::task::spawn_blocking(move || crate::password::hash(password.as_bytes()))
        .await
        .map_err(|_| AppError::Internal("password hashing task failed".into()))?
        .map_err(|e| AppError::Internal(e.to_string()))
}

/// Checks a password against a stored argon2 hash.
pub async fn verify_password(password: String, hash: String) -> Result<bool, AppError> {
    tokio::task::spawn_blocking(move || crate::password::verify(password.as_bytes(), &hash))
        .await
        .map_err(|_| AppError::Internal("password check task failed".into()))?
        .map_err(|e| AppError::Internal(e.to_string()))
}

/// A hash of a random password, to spend the same time on unknown users as on known ones.
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| crate::password::hash(&rand::random::<[u8; 16]>()).unwrap_or_default())
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The bearer token of a request, if any. A malformed header is a 401.
pub fn bearer_token(headers: &axum::http::HeaderMap) -> Result<Option<&str>, AppError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(Some)
        .ok_or_else(|| {
            AppError::Unauthorized("malformed Authorization header; expected Bearer".into())
        })
}

/// The logged-in user (401 without a valid token).
#[derive(Debug, Clone)]
pub struct CurrentUser(pub User);

/// The logged-in user, if a token is presented (an invalid token is still a 401).
#[derive(Debug, Clone)]
pub struct MaybeUser(pub Option<User>);

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        match MaybeUser::from_request_parts(parts, state).await?.0 {
            Some(user) => Ok(CurrentUser(user)),
            None => Err(AppError::Unauthorized(
                "log in first: Authorization: Bearer <token>".into(),
            )),
        }
    }
}

impl FromRequestParts<AppState> for MaybeUser {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        match bearer_token(&parts.headers)? {
            None => Ok(MaybeUser(None)),
            Some(token) => state
                .auth
                .user_for_token(&state.store, token)
                .await
                .map(|u| MaybeUser(Some(u))),
        }
    }
}

type KeyedLimiter<K> = RateLimiter<
    K,
    governor::state::keyed::DefaultKeyedStateStore<K>,
    governor::clock::DefaultClock,
>;

/// Login attempts, limited per client address and per account name.
///
/// The account limit counts per address *and* account name, never per name alone: a
/// global per-account lock would let anyone lock a victim out by failing on purpose,
/// while this way the victim's own address keeps its full quota. Guessing one account
/// from many addresses is bounded by the per-address limit of each and by the
/// server-wide password-hashing semaphore ([`crate::limits::Limits::password_work`]).
pub struct LoginLimiter {
    by_ip: KeyedLimiter<IpAddr>,
    by_login: KeyedLimiter<(IpAddr, String)>,
}

impl std::fmt::Debug for LoginLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LoginLimiter")
    }
}

impl LoginLimiter {
    /// `per_ip` attempts per minute from one address, `per_login` per minute for one name
    /// from one address.
    pub fn new(per_ip: u32, per_login: u32) -> Self {
        let quota =
            |n: u32| Quota::per_minute(NonZeroU32::new(n.max(1)).expect("max(1) is non-zero"));
        Self {
            by_ip: RateLimiter::keyed(quota(per_ip)),
            by_login: RateLimiter::keyed(quota(per_login)),
        }
    }

    /// Counts one attempt; `Err` with the seconds to wait when over the limit.
    pub fn check(&self, ip: IpAddr, login: &str) -> Result<(), AppError> {
        let clock = governor::clock::DefaultClock::default();
        let wait = |not_until: governor::NotUntil<governor::clock::QuantaInstant>| {
            use governor::clock::Clock;
            let secs = not_until.wait_time_from(clock.now()).as_secs().max(1);
            AppError::TooManyRequests {
                retry_after_secs: secs,
            }
        };
        self.by_ip.check_key(&ip).map_err(wait)?;
        self.by_login
            .check_key(&(ip, login.to_lowercase()))
            .map_err(wait)?;
        self.by_ip.retain_recent();
        self.by_login.retain_recent();
        Ok(())
    }
}

/// The client's address (from the connection; unspecified when unknown, e.g. in tests
/// that call the router directly).
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let ip = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), |info| {
                info.0.ip()
            });
        Ok(ClientIp(ip))
    }
}

/// Compares secrets without an early exit (no timing hint of how much matched).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
