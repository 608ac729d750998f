//! What shards tell each other, and the directory they share.
//!
//! Every shard has its own `SO_REUSEPORT` socket on the one public port; the kernel hashes
//! each client's 4-tuple to one of them, so a peer's datagrams may land on a shard other
//! than the one its session was placed on. Placement is ours (least-loaded shard for a
//! viewer, the room's home shard for its publisher), so a room's viewers spread over every
//! core; a datagram that lands elsewhere is handed to its owner once ([`ShardMessage::Datagram`],
//! never handed on again).
//!
//! A room lives on its **home** shard (the one with its publisher, its taps and its PLI
//! coalescer). Another shard with viewers of it keeps a **mirror** of the room (its own
//! forwarders, packet ring and keyframe cache) fed by the home shard: each publisher packet
//! crosses once per subscribed shard as a shared `Arc` ([`ShardMessage::Packet`]) over a
//! bounded queue, and a mirror's keyframe needs go back to the home shard's coalescer
//! ([`ShardMessage::KeyframeWanted`]), so the publisher sees at most one PLI per interval
//! for the whole room.
//!
//! The [`ShardDirectory`] is touched on the control path only (a session created or closed,
//! a room created or removed, a viewer count changed, the first datagram from an address
//! that landed on the wrong shard), never per forwarded packet.

use crate::ids::RoomId;
use crate::media::SourcePacket;
use crate::peer::RoomCodecs;
use bytes::Bytes;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// A shard's position, `0..shards`.
pub type ShardIndex = usize;

/// Most shards (the shard index is kept in the low byte of a [`crate::PeerId`]).
pub const MAX_SHARDS: usize = 256;

/// One message from a shard to another.
#[derive(Debug, Clone)]
pub enum ShardMessage {
    /// A datagram that arrived on the sender's socket for a peer of the receiver. The
    /// receiver routes it as if it had read it, and never hands it on again.
    Datagram {
        /// Its source.
        from: SocketAddr,
        /// Its bytes.
        contents: Bytes,
    },
    /// The sender has viewers of `room` and wants its packets (to the home shard).
    Subscribe {
        /// Room.
        room: RoomId,
        /// The subscriber.
        shard: ShardIndex,
    },
    /// The sender's mirror of `room` is gone (to the home shard).
    Unsubscribe {
        /// Room.
        room: RoomId,
        /// The former subscriber.
        shard: ShardIndex,
    },
    /// The room's current publisher generation (home → subscriber): on subscription and
    /// whenever a publisher takes over; `gop` is the cached GOP to start joiners on.
    Source {
        /// Room.
        room: RoomId,
        /// Publisher generation.
        epoch: u32,
        /// What the room forwards.
        codecs: RoomCodecs,
        /// The current GOP, oldest first (empty if none is cached).
        gop: Vec<Arc<SourcePacket>>,
    },
    /// One publisher packet (home → subscriber).
    Packet {
        /// Room.
        room: RoomId,
        /// The parsed packet, shared with every shard.
        packet: Arc<SourcePacket>,
    },
    /// The room's publisher left (home → subscriber).
    PublisherEnded {
        /// Room.
        room: RoomId,
    },
    /// Viewers on the sender need a keyframe (subscriber → home; coalesced there).
    KeyframeWanted {
        /// Room.
        room: RoomId,
    },
}

/// Where rooms live, who owns which ICE ufrag, and how loaded each shard is; shared by
/// every shard and the handle. See the module docs.
#[derive(Debug)]
pub struct ShardDirectory {
    /// Sessions (publishers plus viewers) per shard.
    peers: Vec<AtomicUsize>,
    /// Local ICE ufrag → the shard whose peer it is.
    ufrags: Mutex<HashMap<String, ShardIndex>>,
    /// Room → its home shard.
    homes: Mutex<HashMap<RoomId, ShardIndex>>,
    /// Room → connected viewers per shard (for room-wide viewer counts).
    viewers: Mutex<HashMap<RoomId, Vec<usize>>>,
}

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these maps leaves it consistent (single inserts).
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl ShardDirectory {
    /// A directory for `shards` shards (at least 1, at most [`MAX_SHARDS`]).
    pub fn new(shards: usize) -> Arc<Self> {
        let shards = shards.clamp(1, MAX_SHARDS);
        Arc::new(Self {
            peers: (0..shards).map(|_| AtomicUsize::new(0)).collect(),
            ufrags: Mutex::default(),
            homes: Mutex::default(),
            viewers: Mutex::default(),
        })
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.peers.len()
    }

    /// Sessions per shard.
    pub fn peers_per_shard(&self) -> Vec<usize> {
        self.peers
            .iter()
            .map(|count| count.load(Ordering::Relaxed))
            .collect()
    }

    /// Sessions on every shard together.
    pub fn total_peers(&self) -> usize {
        self.peers.iter().map(|n| n.load(Ordering::Relaxed)).sum()
    }

    /// The shard with the fewest sessions (the lowest index among equals).
    pub fn least_loaded(&self) -> ShardIndex {
        self.peers
            .iter()
            .enumerate()
            .min_by_key(|(index, count)| (count.load(Ordering::Relaxed), *index))
            .map_or(0, |(index, _)| index)
    }

    /// Counts a session created on `shard`.
    pub fn peer_added(&self, shard: ShardIndex, local_ufrag: &str) {
        if let Some(count) = self.peers.get(shard) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        locked(&self.ufrags).insert(local_ufrag.to_owned(), shard);
    }

    /// Forgets a session of `shard`.
    pub fn peer_removed(&self, shard: ShardIndex, local_ufrag: &str) {
        if let Some(count) = self.peers.get(shard) {
            let _ = count.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(1))
            });
        }
        let mut ufrags = locked(&self.ufrags);
        if ufrags.get(local_ufrag) == Some(&shard) {
            ufrags.remove(local_ufrag);
        }
    }

    /// The shard whose peer has this local ufrag.
    pub fn shard_of_ufrag(&self, local_ufrag: &str) -> Option<ShardIndex> {
        locked(&self.ufrags).get(local_ufrag).copied()
    }

    /// The room's home shard, if it has one.
    pub fn home_of(&self, room: &RoomId) -> Option<ShardIndex> {
        locked(&self.homes).get(room).copied()
    }

    /// The room's home shard, made `candidate` if it has none yet.
    pub fn home_or_assign(&self, room: &RoomId, candidate: ShardIndex) -> ShardIndex {
        *locked(&self.homes).entry(room.clone()).or_insert(candidate)
    }

    /// The home shard removed the room.
    pub fn room_removed(&self, room: &RoomId, shard: ShardIndex) {
        let mut homes = locked(&self.homes);
        if homes.get(room) == Some(&shard) {
            homes.remove(room);
        }
    }

    /// Records `shard`'s connected viewers of `room` and returns the room's total.
    pub fn set_viewers(&self, room: &RoomId, shard: ShardIndex, viewers: usize) -> usize {
        let mut all = locked(&self.viewers);
        let per_shard = all
            .entry(room.clone())
            .or_insert_with(|| vec![0; self.peers.len()]);
        if let Some(slot) = per_shard.get_mut(shard) {
            *slot = viewers;
        }
        let total = per_shard.iter().sum();
        if total == 0 {
            all.remove(room);
        }
        total
    }
}

/// A shard's memory of which addresses belong to peers of other shards, learned from the
/// STUN requests it handed on; bounded, and refreshed against the directory.
#[derive(Debug, Default)]
pub struct Redirects {
    by_address: HashMap<SocketAddr, (ShardIndex, Arc<str>)>,
}

/// Most remembered addresses; past it the table starts afresh (entries are re-learned from
/// the next consent check, a few seconds at most).
pub const MAX_REDIRECTS: usize = 16_384;

impl Redirects {
    /// The shard that owns traffic from `from`.
    pub fn get(&self, from: &SocketAddr) -> Option<ShardIndex> {
        self.by_address.get(from).map(|(shard, _)| *shard)
    }

    /// Remembers that `from` talks to the peer with `local_ufrag` on `shard`.
    pub fn learn(&mut self, from: SocketAddr, shard: ShardIndex, local_ufrag: &str) {
        if self.by_address.len() >= MAX_REDIRECTS && !self.by_address.contains_key(&from) {
            self.by_address.clear();
        }
        match self.by_address.get(&from) {
            Some((known, ufrag)) if *known == shard && &**ufrag == local_ufrag => {}
            _ => {
                self.by_address
                    .insert(from, (shard, Arc::from(local_ufrag)));
            }
        }
    }

    /// Forgets the addresses whose peer the directory no longer knows.
    pub fn refresh(&mut self, directory: &ShardDirectory) {
        if self.by_address.is_empty() {
            return;
        }
        let ufrags = locked(&directory.ufrags);
        self.by_address
            .retain(|_, (shard, ufrag)| ufrags.get(&**ufrag) == Some(shard));
    }

    /// Remembered addresses.
    pub fn len(&self) -> usize {
        self.by_address.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.by_address.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_balances_and_rooms_keep_their_home() {
        let directory = ShardDirectory::new(3);
        assert_eq!(directory.least_loaded(), 0);
        directory.peer_added(0, "a");
        directory.peer_added(1, "b");
        assert_eq!(directory.least_loaded(), 2);
        directory.peer_added(2, "c");
        directory.peer_added(2, "d");
        assert_eq!(directory.least_loaded(), 0);
        directory.peer_removed(2, "d");
        directory.peer_removed(2, "never-added");
        assert_eq!(directory.peers_per_shard(), vec![1, 1, 0]);
        assert_eq!(directory.shard_of_ufrag("b"), Some(1));
        assert_eq!(directory.shard_of_ufrag("d"), None);

        let room = RoomId::parse("r").expect("valid");
        assert_eq!(directory.home_or_assign(&room, 2), 2);
        assert_eq!(
            directory.home_or_assign(&room, 0),
            2,
            "the first home stays"
        );
        directory.room_removed(&room, 0);
        assert_eq!(
            directory.home_of(&room),
            Some(2),
            "only the home removes it"
        );
        directory.room_removed(&room, 2);
        assert_eq!(directory.home_of(&room), None);
    }

    #[test]
    fn viewer_counts_add_up_over_shards() {
        let directory = ShardDirectory::new(2);
        let room = RoomId::parse("r").expect("valid");
        assert_eq!(directory.set_viewers(&room, 0, 3), 3);
        assert_eq!(directory.set_viewers(&room, 1, 4), 7);
        assert_eq!(directory.set_viewers(&room, 0, 0), 4);
        assert_eq!(directory.set_viewers(&room, 1, 0), 0);
        assert!(
            locked(&directory.viewers).is_empty(),
            "empty rooms are forgotten"
        );
    }

    #[test]
    fn redirects_are_bounded_and_follow_the_directory() {
        let directory = ShardDirectory::new(2);
        directory.peer_added(1, "u1");
        let mut redirects = Redirects::default();
        let a = SocketAddr::from(([10, 0, 0, 1], 1000));
        redirects.learn(a, 1, "u1");
        assert_eq!(redirects.get(&a), Some(1));
        redirects.refresh(&directory);
        assert_eq!(redirects.get(&a), Some(1));
        directory.peer_removed(1, "u1");
        redirects.refresh(&directory);
        assert_eq!(redirects.get(&a), None);
        for port in 0..(MAX_REDIRECTS as u16 + 10) {
            redirects.learn(SocketAddr::from(([10, 0, 0, 2], port)), 1, "u1");
        }
        assert!(redirects.len() <= MAX_REDIRECTS);
    }
}
