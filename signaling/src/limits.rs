//! Abuse limits at the edge: who the client is ([`client_ip`], the one place that
//! believes `X-Forwarded-For`, and only from `trusted_proxies`), how many connections,
//! WebRTC sessions and WebSockets one address (or account) may hold, how fast it may
//! create WHEP sessions and accounts, and how many password hashes run at once.
//!
//! A leaf module: it knows configuration and errors, no routes. Routes ask it
//! (`state.limits.admit_whep(ip)?` …) and keep the returned [`Slot`] for as long as the
//! resource lives; dropping the slot gives the capacity back.
//!
//! The concurrency counters are a map behind a `std` mutex, touched once when a
//! connection, session or socket starts and once when it ends — never across an
//! `.await` and never on the media path (packets do not pass through here).

use crate::config::Config;
use crate::error::AppError;
use axum::http::HeaderMap;
use bridge::target_policy::IpNetwork;
use governor::{Quota, RateLimiter};
use sfu::PeerId;
use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The client's address: the TCP peer, unless the peer is a trusted proxy, in which case
/// the right-most `X-Forwarded-For` entry that is not itself a trusted proxy (entries
/// left of it could be written by anyone). Every limiter keys on this.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted_proxies: &[IpNetwork]) -> IpAddr {
    let trusted = |ip: IpAddr| trusted_proxies.iter().any(|net| net.contains(ip));
    if !trusted(peer) {
        return peer;
    }
    let mut client = peer;
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for hop in hops.into_iter().rev() {
        let Some(ip) = parse_forwarded_hop(hop) else {
            // Garbage from a client: stop believing the chain here.
            break;
        };
        client = ip;
        if !trusted(ip) {
            break;
        }
    }
    client
}

fn parse_forwarded_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip);
    }
    // `[v6]:port` or `v4:port`.
    if let Ok(addr) = hop.parse::<std::net::SocketAddr>() {
        return Some(addr.ip());
    }
    None
}

/// A concurrency cap was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CapReached {
    /// The server-wide cap.
    #[error("the server-wide limit is reached")]
    Total,
    /// The cap for one key (address or account).
    #[error("the limit for one client is reached")]
    PerKey,
}

struct CapState<K> {
    total: usize,
    by_key: HashMap<K, usize>,
}

struct CapInner<K> {
    max_total: usize,
    max_per_key: usize,
    state: Mutex<CapState<K>>,
}

/// Counts live resources, server-wide and per key.
pub struct ConcurrencyCap<K> {
    inner: Arc<CapInner<K>>,
}

impl<K> Clone for ConcurrencyCap<K> {
    fn clone(&self) -> Self {
        ConcurrencyCap {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K: Hash + Eq + Clone + Send + 'static> ConcurrencyCap<K> {
    /// At most `max_total` live resources, `max_per_key` per key.
    pub fn new(max_total: usize, max_per_key: usize) -> Self {
        ConcurrencyCap {
            inner: Arc::new(CapInner {
                max_total: max_total.max(1),
                max_per_key: max_per_key.max(1),
                state: Mutex::new(CapState {
                    total: 0,
                    by_key: HashMap::new(),
                }),
            }),
        }
    }

    /// Takes one unit for `key` (`None`: counted server-wide only, e.g. a trusted
    /// proxy's connection that carries many clients).
    pub fn try_acquire(&self, key: Option<K>) -> Result<Slot, CapReached> {
        let mut state = self.lock();
        if state.total >= self.inner.max_total {
            return Err(CapReached::Total);
        }
        if let Some(key) = &key {
            let held = state.by_key.get(key).copied().unwrap_or(0);
            if held >= self.inner.max_per_key {
                return Err(CapReached::PerKey);
            }
            state.by_key.insert(key.clone(), held + 1);
        }
        state.total += 1;
        drop(state);
        let cap = self.clone();
        Ok(Slot {
            release: Some(Box::new(move || cap.release(key))),
        })
    }

    /// Live resources server-wide.
    pub fn total(&self) -> usize {
        self.lock().total
    }

    fn release(&self, key: Option<K>) {
        let mut state = self.lock();
        state.total = state.total.saturating_sub(1);
        if let Some(key) = key
            && let Some(held) = state.by_key.get_mut(&key)
        {
            *held = held.saturating_sub(1);
            if *held == 0 {
                state.by_key.remove(&key);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CapState<K>> {
        // A panic while holding this lock leaves plain counters behind, still usable.
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// One unit of a [`ConcurrencyCap`] (or several, see [`Slot::join`]); dropping it
/// gives the capacity back.
#[must_use = "the capacity is given back when the slot is dropped"]
pub struct Slot {
    release: Option<Box<dyn FnOnce() + Send>>,
}

impl Slot {
    /// One slot that holds both (e.g. the per-address and the per-account WebSocket
    /// caps).
    pub fn join(self, other: Slot) -> Slot {
        let (mut a, mut b) = (self, other);
        let (first, second) = (a.release.take(), b.release.take());
        Slot {
            release: Some(Box::new(move || {
                if let Some(first) = first {
                    first();
                }
                if let Some(second) = second {
                    second();
                }
            })),
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            release();
        }
    }
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Slot")
    }
}

type KeyedRate<K> = RateLimiter<
    K,
    governor::state::keyed::DefaultKeyedStateStore<K>,
    governor::clock::DefaultClock,
>;

fn keyed_rate<K: Hash + Eq + Clone>(per_minute: u32, burst: u32) -> KeyedRate<K> {
    let per_minute = NonZeroU32::new(per_minute.max(1)).expect("max(1) is non-zero");
    let burst = NonZeroU32::new(burst.max(1)).expect("max(1) is non-zero");
    RateLimiter::keyed(Quota::per_minute(per_minute).allow_burst(burst))
}

/// `per_hour` spread evenly over the hour, `burst` of them at once.
fn hourly_rate<K: Hash + Eq + Clone>(per_hour: u32, burst: u32) -> KeyedRate<K> {
    let period = Duration::from_secs(3600) / per_hour.max(1);
    let burst = NonZeroU32::new(burst.max(1)).expect("max(1) is non-zero");
    let quota = Quota::with_period(period).expect("a non-zero period");
    RateLimiter::keyed(quota.allow_burst(burst))
}

fn check_rate<K: Hash + Eq + Clone>(limiter: &KeyedRate<K>, key: &K) -> Result<(), AppError> {
    use governor::clock::Clock;
    let clock = governor::clock::DefaultClock::default();
    let result = limiter.check_key(key).map_err(|not_until| {
        let secs = not_until.wait_time_from(clock.now()).as_secs().max(1);
        AppError::TooManyRequests {
            retry_after_secs: secs,
        }
    });
    if limiter.len() > 10_000 {
        limiter.retain_recent();
    }
    result
}

/// A request body that must arrive by a deadline (set when its headers arrived): past
/// it, the body fails with [`BodyTimedOut`], which the routes answer 408 (and hyper then
/// closes the connection, since the body was not read to its end). A slow upload cannot
/// hold a handler, a connection and its buffers for longer than that.
pub struct TimedBody<B> {
    inner: B,
    deadline: Pin<Box<tokio::time::Sleep>>,
    secs: u64,
    done: bool,
}

impl<B> TimedBody<B> {
    /// `inner`, which must end within `timeout` from now.
    pub fn new(inner: B, timeout: Duration) -> Self {
        TimedBody {
            inner,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            secs: timeout.as_secs().max(1),
            done: false,
        }
    }
}

/// A request body did not arrive in time (see [`TimedBody`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the request body did not arrive within {secs} s")]
pub struct BodyTimedOut {
    /// The time allowed, seconds.
    pub secs: u64,
}

impl<B> hyper::body::Body for TimedBody<B>
where
    B: hyper::body::Body + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = B::Data;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.done = frame.is_none();
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    this.done = true;
                    Poll::Ready(Some(Err(Box::new(BodyTimedOut { secs: this.secs }))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// How long a request waits for a password-hashing slot before it is told to come back.
const PASSWORD_WORK_WAIT: Duration = Duration::from_secs(2);

/// The limits in force (one per server, shared by every request).
pub struct Limits {
    trusted_proxies: Vec<IpNetwork>,
    exempt: Vec<IpNetwork>,
    connections: ConcurrencyCap<IpAddr>,
    whep_rate: KeyedRate<IpAddr>,
    whep_sessions: ConcurrencyCap<IpAddr>,
    whep_bound: Mutex<HashMap<PeerId, Slot>>,
    websockets_by_ip: ConcurrencyCap<IpAddr>,
    websockets_by_user: ConcurrencyCap<i64>,
    registrations: KeyedRate<IpAddr>,
    uploads: KeyedRate<i64>,
    password_work: Arc<Semaphore>,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits")
            .field("trusted_proxies", &self.trusted_proxies)
            .field("connections", &self.connections.total())
            .finish_non_exhaustive()
    }
}

impl Limits {
    /// The limits the configuration asks for (invalid `trusted_proxies` entries are
    /// refused when the configuration loads; here they are skipped).
    pub fn new(config: &Config) -> Limits {
        Limits {
            trusted_proxies: config
                .trusted_proxies
                .iter()
                .filter_map(|entry| IpNetwork::parse(entry))
                .collect(),
            exempt: config
                .limits_exempt
                .iter()
                .filter_map(|entry| IpNetwork::parse(entry))
                .collect(),
            connections: ConcurrencyCap::new(config.max_connections, config.max_connections_per_ip),
            whep_rate: keyed_rate(
                config.whep_sessions_per_minute_per_ip,
                config.whep_session_burst_per_ip,
            ),
            whep_sessions: ConcurrencyCap::new(
                config.max_peers.max(1),
                config.max_webrtc_sessions_per_ip,
            ),
            whep_bound: Mutex::new(HashMap::new()),
            websockets_by_ip: ConcurrencyCap::new(usize::MAX, config.max_websockets_per_ip),
            websockets_by_user: ConcurrencyCap::new(usize::MAX, config.max_websockets_per_user),
            registrations: hourly_rate(
                config.registrations_per_hour_per_ip,
                config.registrations_per_hour_per_ip,
            ),
            uploads: hourly_rate(
                config.uploads_per_hour_per_user,
                config.uploads_per_hour_per_user.div_ceil(5),
            ),
            password_work: Arc::new(Semaphore::new(config.max_concurrent_password_hashes.max(1))),
        }
    }

    /// The client's address for a request that arrived from `peer` (see [`client_ip`]).
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        client_ip(peer, headers, &self.trusted_proxies)
    }

    /// Whether `peer` is a trusted reverse proxy.
    pub fn is_trusted_proxy(&self, peer: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(peer))
    }

    /// Whether `ip` is exempt from the per-address limits (`limits_exempt`).
    pub fn is_exempt(&self, ip: IpAddr) -> bool {
        self.exempt.iter().any(|net| net.contains(ip))
    }

    /// The key a per-address limit counts `ip` under (`None`: exempt).
    fn address_key(&self, ip: IpAddr) -> Option<IpAddr> {
        (!self.is_exempt(ip)).then_some(ip)
    }

    /// A new TCP connection from `peer`: counted server-wide, and per address unless
    /// the peer is a trusted proxy (whose connections carry many clients) or exempt.
    pub fn admit_connection(&self, peer: IpAddr) -> Result<Slot, CapReached> {
        let key = self
            .address_key(peer)
            .filter(|&ip| !self.is_trusted_proxy(ip));
        self.connections.try_acquire(key)
    }

    /// Open HTTP connections.
    pub fn open_connections(&self) -> usize {
        self.connections.total()
    }

    /// A WHEP offer from `ip`: within the creation rate and the concurrent-session cap.
    /// Keep the slot until the session exists, then hand it to [`Limits::bind_whep`].
    pub fn admit_whep(&self, ip: IpAddr) -> Result<Slot, AppError> {
        let key = self.address_key(ip);
        if let Some(key) = &key {
            check_rate(&self.whep_rate, key)?;
        }
        self.whep_sessions
            .try_acquire(key)
            .map_err(|cap| match cap {
                CapReached::PerKey => AppError::TooManyRequests {
                    retry_after_secs: 10,
                },
                CapReached::Total => {
                    AppError::Unavailable("the server is at its WebRTC session limit".into())
                }
            })
    }

    /// The session `peer` now holds `slot` until it closes ([`Limits::session_closed`]).
    pub fn bind_whep(&self, peer: PeerId, slot: Slot) {
        self.whep_bound
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(peer, slot);
    }

    /// A WebRTC session ended: its slot, if any, is given back.
    pub fn session_closed(&self, peer: PeerId) {
        let slot = self
            .whep_bound
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&peer);
        drop(slot);
    }

    /// Sessions holding a slot (to reconcile after missed close events).
    pub fn bound_sessions(&self) -> Vec<PeerId> {
        self.whep_bound
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .keys()
            .copied()
            .collect()
    }

    /// A WebSocket from `ip`, logged in as `user` if known at connect time.
    pub fn admit_websocket(&self, ip: IpAddr, user: Option<i64>) -> Result<Slot, AppError> {
        let busy = |_| AppError::TooManyRequests {
            retry_after_secs: 10,
        };
        let by_ip = self
            .websockets_by_ip
            .try_acquire(self.address_key(ip))
            .map_err(busy)?;
        match user {
            Some(user) => Ok(by_ip.join(
                self.websockets_by_user
                    .try_acquire(Some(user))
                    .map_err(busy)?,
            )),
            None => Ok(by_ip),
        }
    }

    /// A registration from `ip`.
    pub fn check_registration(&self, ip: IpAddr) -> Result<(), AppError> {
        match self.address_key(ip) {
            Some(key) => check_rate(&self.registrations, &key),
            None => Ok(()),
        }
    }

    /// An image upload by account `user` (429 with `Retry-After` past
    /// `uploads_per_hour_per_user`), sent from `ip`. Keyed by account, not address:
    /// uploads need a login. Clients in `limits_exempt` are not counted.
    pub fn check_upload(&self, ip: IpAddr, user: i64) -> Result<(), AppError> {
        if self.is_exempt(ip) {
            return Ok(());
        }
        check_rate(&self.uploads, &user)
    }

    /// A slot for one password hash (argon2 takes ~19 MiB and a core for a moment):
    /// waits briefly, then answers 503 with `Retry-After` so memory stays bounded. A
    /// client exempt from the per-address limits (`limits_exempt`) queues for as long as
    /// it takes instead — still never more than the configured hashes at once.
    pub async fn password_work(&self, ip: IpAddr) -> Result<OwnedSemaphorePermit, AppError> {
        if self.is_exempt(ip) {
            return Arc::clone(&self.password_work)
                .acquire_owned()
                .await
                .map_err(|_| AppError::Busy {
                    retry_after_secs: 2,
                });
        }
        match tokio::time::timeout(
            PASSWORD_WORK_WAIT,
            Arc::clone(&self.password_work).acquire_owned(),
        )
        .await
        {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) | Err(_) => Err(AppError::Busy {
                retry_after_secs: 2,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("test addresses are valid")
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted = [IpNetwork::parse("10.0.0.0/8").expect("valid CIDR")];
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("6.6.6.6, 203.0.113.7, 10.0.0.2"),
        );
        // From an untrusted peer the header is ignored.
        assert_eq!(
            client_ip(ip("198.51.100.1"), &headers, &trusted),
            ip("198.51.100.1")
        );
        // From the proxy: the right-most untrusted hop (the spoofable 6.6.6.6 is skipped).
        assert_eq!(
            client_ip(ip("10.0.0.1"), &headers, &trusted),
            ip("203.0.113.7")
        );
        // No proxies configured: never believed.
        assert_eq!(client_ip(ip("10.0.0.1"), &headers, &[]), ip("10.0.0.1"));
        headers.insert("x-forwarded-for", HeaderValue::from_static("garbage"));
        assert_eq!(
            client_ip(ip("10.0.0.1"), &headers, &trusted),
            ip("10.0.0.1")
        );
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("[2001:db8::1]:4711"),
        );
        assert_eq!(
            client_ip(ip("10.0.0.1"), &headers, &trusted),
            ip("2001:db8::1")
        );
    }

    #[test]
    fn caps_count_per_key_and_give_back_on_drop() {
        let cap = ConcurrencyCap::<IpAddr>::new(3, 2);
        let a = ip("192.0.2.1");
        let first = cap.try_acquire(Some(a)).expect("under the caps");
        let second = cap.try_acquire(Some(a)).expect("under the caps");
        assert_eq!(cap.try_acquire(Some(a)).unwrap_err(), CapReached::PerKey);
        let other = cap.try_acquire(Some(ip("192.0.2.2"))).expect("another key");
        assert_eq!(cap.try_acquire(None).unwrap_err(), CapReached::Total);
        drop(first);
        let again = cap.try_acquire(Some(a)).expect("a slot came back");
        assert_eq!(cap.total(), 3);
        drop((second, other, again));
        assert_eq!(cap.total(), 0);
        let joined = cap
            .try_acquire(Some(a))
            .expect("free")
            .join(cap.try_acquire(None).expect("free"));
        assert_eq!(cap.total(), 2);
        drop(joined);
        assert_eq!(cap.total(), 0);
    }

    #[test]
    fn whep_rate_and_sessions_are_limited_per_address() {
        let config = Config {
            whep_sessions_per_minute_per_ip: 60,
            whep_session_burst_per_ip: 3,
            max_webrtc_sessions_per_ip: 2,
            ..Config::default()
        };
        let limits = Limits::new(&config);
        let flooder = ip("127.0.0.2");
        let a = limits.admit_whep(flooder).expect("first");
        let _b = limits.admit_whep(flooder).expect("second");
        assert!(matches!(
            limits.admit_whep(flooder),
            Err(AppError::TooManyRequests { .. })
        ));
        drop(a);
        // The burst of 3 is spent now, whatever the concurrency.
        assert!(matches!(
            limits.admit_whep(flooder),
            Err(AppError::TooManyRequests { .. })
        ));
        assert!(limits.admit_whep(ip("127.0.0.1")).is_ok());
    }
}
