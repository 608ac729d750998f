//! Media-plane configuration.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// How the SFU binds, advertises itself and times peers out.
#[derive(Debug, Clone)]
pub struct SfuConfig {
    /// The one UDP address every peer's media uses.
    pub udp_bind: SocketAddr,
    /// The IP put in our ICE candidate. `None`: the bind IP, or when that is unspecified
    /// (`0.0.0.0`), the address of the default route's interface.
    pub public_ip: Option<IpAddr>,
    /// A peer that has not connected (ICE + DTLS) within this time is dropped.
    pub connect_timeout: Duration,
    /// A connected peer silent for this long (no datagram at all; browsers send ICE
    /// consent checks every few seconds) is dropped.
    pub silence_timeout: Duration,
    /// A publisher that sent no media for this long may be replaced by a new one.
    pub publisher_stale_after: Duration,
    /// A room with neither publisher nor viewers is forgotten after this long.
    pub room_idle_timeout: Duration,
    /// Most peers this server takes (publishers plus viewers, over all shards).
    pub max_peers: usize,
    /// Events a tap may queue before the SFU drops for it.
    pub tap_queue: usize,
    /// Media shards, each a thread with its own `SO_REUSEPORT` socket on `udp_bind`'s
    /// port (1 to [`crate::cross_shard::MAX_SHARDS`]).
    pub media_threads: usize,
}

impl Default for SfuConfig {
    fn default() -> Self {
        Self {
            udp_bind: SocketAddr::from(([127, 0, 0, 1], 3478)),
            public_ip: None,
            connect_timeout: Duration::from_secs(20),
            silence_timeout: Duration::from_secs(15),
            publisher_stale_after: Duration::from_secs(3),
            room_idle_timeout: Duration::from_secs(30),
            max_peers: 5000,
            tap_queue: 4096,
            media_threads: 1,
        }
    }
}
