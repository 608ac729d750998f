//! The core's side of [`crate::cross_shard`]: datagrams that landed on this shard for
//! another's peer, a home room's subscribers, and mirror rooms fed by their home.

use super::SfuCore;
use crate::cross_shard::ShardMessage;
use crate::demux::{Route, stun_local_ufrag};
use bytes::Bytes;
use std::net::SocketAddr;
use std::time::Instant;

impl SfuCore {
    /// Hands a datagram nobody here claims to the shard whose peer it is for, if any
    /// (returns whether it did). A STUN request is matched by its ufrag (and teaches this
    /// shard the sender's address, to hand on its DTLS and SRTP too); anything else by that
    /// address. The owner verifies integrity as always: a forged request only gets its
    /// sender's traffic counted as unknown on the other shard.
    pub(super) fn hand_over(&mut self, datagram: &[u8], from: SocketAddr, route: Route) -> bool {
        if self.directory.shards() == 1 {
            return false;
        }
        let owner = match route {
            Route::UnknownUfrag => stun_local_ufrag(datagram).and_then(|ufrag| {
                let owner = self.directory.shard_of_ufrag(ufrag)?;
                (owner != self.shard).then(|| {
                    self.redirects.learn(from, owner, ufrag);
                    owner
                })
            }),
            Route::UnknownAddress | Route::MalformedStun => self.redirects.get(&from),
            Route::BadIntegrity | Route::Peer(_) => None,
        };
        let Some(owner) = owner else {
            return false;
        };
        self.counters.datagrams_handed_over += 1;
        self.shard_outbox.push_back((
            owner,
            ShardMessage::Datagram {
                from,
                contents: Bytes::copy_from_slice(datagram),
            },
        ));
        true
    }

    pub(super) fn on_shard_message(&mut self, message: ShardMessage, now: Instant) {
        match message {
            ShardMessage::Datagram { from, contents } => {
                self.on_datagram(&contents, from, now, true)
            }
            ShardMessage::Subscribe { room, shard } => {
                let Some(home) = self.rooms.get_mut(&room).filter(|r| r.home.is_none()) else {
                    // Gone meanwhile: the mirror gets nothing and idles out.
                    return;
                };
                if !home.relays.contains(&shard) {
                    home.relays.push(shard);
                }
                home.idle_since = None;
                let gop = match home.publisher {
                    Some(_) => home
                        .keyframe_cache
                        .snapshot(home.epoch)
                        .map(|(packets, _)| packets.to_vec())
                        .unwrap_or_default(),
                    None => Vec::new(),
                };
                self.shard_outbox.push_back((
                    shard,
                    ShardMessage::Source {
                        room,
                        epoch: home.epoch,
                        codecs: home.codecs.clone(),
                        gop,
                    },
                ));
            }
            ShardMessage::Unsubscribe { room, shard } => {
                if let Some(home) = self.rooms.get_mut(&room).filter(|r| r.home.is_none()) {
                    home.relays.retain(|relay| *relay != shard);
                    if home.members.is_empty() && home.relays.is_empty() {
                        home.idle_since = Some(now);
                    }
                }
            }
            ShardMessage::Source {
                room,
                epoch,
                codecs,
                gop,
            } => {
                let Some(mirror) = self.rooms.get_mut(&room).filter(|r| r.home.is_some()) else {
                    return;
                };
                mirror.epoch = epoch;
                mirror.codecs = codecs;
                mirror.keyframe_cache.clear();
                mirror.pli.reset();
                // The cached GOP, through the same path as live packets: ring, keyframe
                // cache, and any viewer already waiting.
                for packet in gop {
                    self.fan_out(&room, packet, now);
                }
            }
            ShardMessage::Packet { room, packet } => {
                if self.rooms.get(&room).is_some_and(|r| r.home.is_some()) {
                    self.fan_out(&room, packet, now);
                }
            }
            ShardMessage::PublisherEnded { room } => {
                if let Some(mirror) = self.rooms.get_mut(&room).filter(|r| r.home.is_some()) {
                    mirror.keyframe_cache.clear();
                    mirror.pli.reset();
                }
            }
            ShardMessage::KeyframeWanted { room } => {
                if self.rooms.get(&room).is_some_and(|r| r.home.is_none()) {
                    self.counters.keyframe_requests += 1;
                    self.request_keyframe(&room, now);
                }
            }
        }
    }
}
