//! Rooms: membership, publisher replacement, taps, and closing peers.
//!
//! A room outlives its sessions: viewers stay connected while the publisher reconnects
//! (a new epoch; the forwarders keep sequence numbers and timestamps continuous), and an
//! empty room is forgotten after the idle timeout.

use super::peer_state::{Peer, PublisherState, Role, ViewerTrack};
use super::{SfuCore, Transmit};
use crate::cross_shard::{ShardIndex, ShardMessage};
use crate::error::SfuError;
use crate::events::{CloseReason, SfuEvent};
use crate::forwarder::{Forwarder, ForwarderConfig};
use crate::ids::{PeerId, RoomId};
use crate::keyframe_cache::KeyframeCache;
use crate::media::Codec;
use crate::packet_ring::{AUDIO_RING_SIZE, PacketRing, VIDEO_RING_SIZE};
use crate::peer::{InboundTrackPlan, NegotiatedPeer, OutboundTrackPlan, RoomCodecs};
use crate::pli_coalescer::PliCoalescer;
use crate::session::PeerRole;
use crate::tap::{TapEvent, TapReceiver};
use rtc::sansio::Protocol;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;

/// One room of the shard.
pub(super) struct Room {
    pub(super) id: RoomId,
    pub(super) publisher: Option<PeerId>,
    pub(super) epoch: u32,
    pub(super) codecs: RoomCodecs,
    /// Connected viewers that receive media.
    pub(super) viewers: Vec<PeerId>,
    /// Every session in the room, connected or not.
    pub(super) members: Vec<PeerId>,
    pub(super) rings: [PacketRing; 2],
    pub(super) keyframe_cache: KeyframeCache,
    pub(super) pli: PliCoalescer,
    pub(super) taps: Vec<mpsc::Sender<TapEvent>>,
    pub(super) idle_since: Option<Instant>,
    /// `Some(home)`: this is a mirror of a room whose publisher is on shard `home`, fed
    /// with its packets; `None`: this shard is the room's home.
    pub(super) home: Option<ShardIndex>,
    /// Other shards with a mirror of this (home) room: each gets every packet once.
    pub(super) relays: Vec<ShardIndex>,
}

impl Room {
    pub(super) fn new(id: RoomId, now: Instant) -> Self {
        Self {
            id,
            publisher: None,
            epoch: 0,
            codecs: RoomCodecs::default(),
            viewers: Vec::new(),
            members: Vec::new(),
            rings: [
                PacketRing::new(AUDIO_RING_SIZE),
                PacketRing::new(VIDEO_RING_SIZE),
            ],
            keyframe_cache: KeyframeCache::default(),
            pli: PliCoalescer::default(),
            taps: Vec::new(),
            idle_since: Some(now),
            home: None,
            relays: Vec::new(),
        }
    }

    /// A mirror of a room whose home is shard `home`, forwarding `codecs`.
    pub(super) fn mirror(id: RoomId, now: Instant, home: ShardIndex, codecs: RoomCodecs) -> Self {
        Self {
            home: Some(home),
            codecs,
            ..Self::new(id, now)
        }
    }

    /// Whether someone can be asked for a keyframe: a publisher here, or the home shard.
    pub(super) fn has_source(&self) -> bool {
        self.publisher.is_some() || self.home.is_some()
    }

    /// Whether the room has viewers on this shard or on others.
    pub(super) fn has_viewers_anywhere(&self) -> bool {
        !self.relays.is_empty() || !self.members.iter().all(|m| Some(*m) == self.publisher)
    }

    /// Delivers an event to every tap without waiting; full taps lose it, closed ones go.
    pub(super) fn send_to_taps(&mut self, event: TapEvent, dropped: &mut u64) {
        self.taps.retain(|tap| match tap.try_send(event.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                *dropped += 1;
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
    }
}

impl SfuCore {
    pub(super) fn add_publisher(
        &mut self,
        room_id: RoomId,
        id: PeerId,
        negotiated: NegotiatedPeer<InboundTrackPlan>,
        now: Instant,
    ) -> Result<(), SfuError> {
        let epoch = self.seat_publisher(&room_id, id, codecs_of(&negotiated.tracks), now)?;
        let NegotiatedPeer {
            connection,
            local_ufrag,
            local_pwd,
            tracks,
            has_data_channel,
            ..
        } = negotiated;
        self.demux.register(id, &local_ufrag, &local_pwd);
        self.directory.peer_added(self.shard, &local_ufrag);
        self.peers.insert(
            id,
            Peer::new(
                room_id.clone(),
                connection,
                Role::Publisher(PublisherState {
                    tracks,
                    receivers: [None, None],
                    ssrcs: [None, None],
                    last_timestamp: [None, None],
                    epoch,
                    last_media_at: None,
                }),
                has_data_channel,
                now,
            ),
        );
        self.counters.peers_created += 1;
        tracing::info!(room = %room_id, peer = %id, epoch, "publisher session created");
        self.drain_peer(id, now);
        Ok(())
    }

    /// Gives the room's publisher seat to `id` (a WHIP session or an ingest source): the
    /// room is created if needed; a live publisher keeps its seat (`PublisherConflict`), a
    /// stale one is closed as replaced; viewers negotiated the room's codecs, so a new
    /// publisher must keep them. Starts a new epoch (mirrors are told) and returns it.
    pub(super) fn seat_publisher(
        &mut self,
        room_id: &RoomId,
        id: PeerId,
        new_codecs: RoomCodecs,
        now: Instant,
    ) -> Result<u32, SfuError> {
        if self.directory.total_peers() >= self.config.max_peers {
            return Err(SfuError::Capacity(self.config.max_peers));
        }
        let room = self
            .rooms
            .entry(room_id.clone())
            .or_insert_with(|| Room::new(room_id.clone(), now));
        if room.home.is_some() {
            // The handle places publishers on the room's home shard only.
            return Err(SfuError::Engine(format!(
                "room {room_id} is homed on another media shard"
            )));
        }
        if let Some(existing) = room.publisher
            && self.publisher_is_live(existing, now)
        {
            return Err(SfuError::PublisherConflict(room_id.clone()));
        }
        let room = self.rooms.get(room_id).expect("inserted above");
        let has_viewers = room.has_viewers_anywhere();
        if has_viewers {
            let conflict = |old: Codec, new: Codec| {
                (old != new).then(|| SfuError::CodecConflict {
                    room: room_id.clone(),
                    expected: old.to_string(),
                })
            };
            if let (Some(old), Some(new)) = (room.codecs.audio, new_codecs.audio)
                && let Some(err) = conflict(old, new)
            {
                return Err(err);
            }
            if let (Some((old, _)), Some((new, _))) = (&room.codecs.video, &new_codecs.video)
                && let Some(err) = conflict(*old, *new)
            {
                return Err(err);
            }
        }
        if let Some(existing) = room.publisher {
            self.close_peer(existing, CloseReason::Replaced, now);
        }
        let room = self.rooms.get_mut(room_id).expect("inserted above");
        // A track the new publisher does not send keeps what viewers negotiated.
        fn kept<T>(new: Option<T>, old: Option<T>, has_viewers: bool) -> Option<T> {
            new.or(if has_viewers { old } else { None })
        }
        room.codecs = RoomCodecs {
            audio: kept(new_codecs.audio, room.codecs.audio, has_viewers),
            video: kept(new_codecs.video, room.codecs.video.clone(), has_viewers),
        };
        room.epoch = room.epoch.wrapping_add(1);
        room.publisher = Some(id);
        room.members.push(id);
        room.idle_since = None;
        room.keyframe_cache.clear();
        room.pli.reset();
        let epoch = room.epoch;
        for &shard in &room.relays {
            self.shard_outbox.push_back((
                shard,
                ShardMessage::Source {
                    room: room_id.clone(),
                    epoch,
                    codecs: room.codecs.clone(),
                    gop: Vec::new(),
                },
            ));
        }
        Ok(epoch)
    }

    pub(super) fn add_viewer(
        &mut self,
        room_id: RoomId,
        home: ShardIndex,
        id: PeerId,
        codecs: RoomCodecs,
        negotiated: NegotiatedPeer<OutboundTrackPlan>,
        now: Instant,
    ) -> Result<(), SfuError> {
        if self.directory.total_peers() >= self.config.max_peers {
            return Err(SfuError::Capacity(self.config.max_peers));
        }
        if home != self.shard && !self.rooms.contains_key(&room_id) {
            // The first viewer of this room here: mirror it and subscribe to its packets.
            self.rooms.insert(
                room_id.clone(),
                Room::mirror(room_id.clone(), now, home, codecs.clone()),
            );
            self.shard_outbox.push_back((
                home,
                ShardMessage::Subscribe {
                    room: room_id.clone(),
                    shard: self.shard,
                },
            ));
        }
        let room = self
            .rooms
            .get_mut(&room_id)
            .ok_or_else(|| SfuError::RoomNotFound(room_id.clone()))?;
        if room.codecs.audio != codecs.audio
            || room.codecs.video.as_ref().map(|v| v.0) != codecs.video.as_ref().map(|v| v.0)
        {
            return Err(SfuError::CodecConflict {
                room: room_id,
                expected: "the codecs the room changed to while this offer was answered (retry)"
                    .into(),
            });
        }
        room.members.push(id);
        room.idle_since = None;
        let NegotiatedPeer {
            connection,
            local_ufrag,
            local_pwd,
            tracks,
            has_data_channel,
            srtp_tap,
            ..
        } = negotiated;
        let mut rng_seq: u16 = rand::random();
        let mut viewer_tracks: [Option<ViewerTrack>; 2] = [None, None];
        for (slot, plan) in viewer_tracks.iter_mut().zip(tracks) {
            *slot = plan.map(|plan| {
                rng_seq = rng_seq.wrapping_add(7919);
                ViewerTrack {
                    forwarder: Forwarder::new(ForwarderConfig {
                        kind: plan.codec.kind(),
                        clock_rate: plan.codec.clock_rate(),
                        ssrc: plan.ssrc,
                        payload_type: plan.payload_type,
                        video_orientation_id: plan.video_orientation_id,
                        initial_sequence_number: rng_seq,
                        initial_timestamp: rand::random(),
                    }),
                    plan,
                    stream: None,
                    replay: Default::default(),
                    replay_budget: 0,
                    retransmit_budget: Default::default(),
                }
            });
        }
        self.demux.register(id, &local_ufrag, &local_pwd);
        self.directory.peer_added(self.shard, &local_ufrag);
        let mut peer = Peer::new(
            room_id.clone(),
            connection,
            Role::Viewer(viewer_tracks),
            has_data_channel,
            now,
        );
        peer.srtp_tap = srtp_tap;
        self.peers.insert(id, peer);
        self.counters.peers_created += 1;
        tracing::debug!(room = %room_id, peer = %id, "viewer session created");
        self.drain_peer(id, now);
        Ok(())
    }

    /// Attaches a bridge tap; a live room's current GOP is queued into it at once.
    pub(super) fn attach_tap(&mut self, room: RoomId) -> Result<TapReceiver, SfuError> {
        if let Some(catch_up) = self.ingest_catch_up(&room) {
            let (sender, receiver) = mpsc::channel(self.config.tap_queue);
            for event in catch_up {
                let _ = sender.try_send(event);
            }
            if let Some(r) = self.rooms.get_mut(&room) {
                r.taps.push(sender);
            }
            return Ok(receiver);
        }
        match self.rooms.get_mut(&room) {
            Some(r) => {
                let (sender, receiver) = mpsc::channel(self.config.tap_queue);
                if let Some(publisher) = r.publisher.and_then(|id| self.peers.get(&id))
                    && let Role::Publisher(state) = &publisher.role
                    && state.last_media_at.is_some()
                {
                    let _ = sender.try_send(TapEvent::PublisherStarted {
                        epoch: state.epoch,
                        audio: state.tracks[0].as_ref().map(|t| t.codec),
                        video: state.tracks[1].as_ref().map(|t| t.codec),
                    });
                    // Give the new consumer the current GOP so it can start at once.
                    if let Some((packets, _)) = r.keyframe_cache.snapshot(r.epoch) {
                        for packet in packets {
                            let _ = sender.try_send(TapEvent::Packet(Arc::clone(packet)));
                        }
                    }
                }
                r.taps.push(sender);
                Ok(receiver)
            }
            None => Err(SfuError::RoomNotFound(room)),
        }
    }

    pub(super) fn close_peer(
        &mut self,
        id: PeerId,
        reason: CloseReason,
        now: Instant,
    ) -> Option<(RoomId, PeerRole)> {
        if self.is_ingest(id) {
            return self.close_ingest(id, reason, now);
        }
        let mut peer = self.peers.remove(&id)?;
        let _ = peer.connection.close();
        while let Some(datagram) = peer.connection.poll_write() {
            self.transmits.push_back(Transmit {
                destination: datagram.transport.peer_addr,
                contents: datagram.message,
            });
        }
        if let Some(ufrag) = self.demux.ufrag_of(id) {
            self.directory.peer_removed(self.shard, ufrag);
        }
        self.demux.remove(id);
        self.counters.peers_closed += 1;
        let role = peer.role.kind();
        let was_publisher = self
            .rooms
            .get(&peer.room)
            .is_some_and(|room| role == PeerRole::Publisher && room.publisher == Some(id));
        if was_publisher {
            self.publisher_left(&peer.room);
        }
        if let Some(room) = self.rooms.get_mut(&peer.room) {
            room.members.retain(|member| *member != id);
            if role == PeerRole::Viewer {
                let before = room.viewers.len();
                room.viewers.retain(|viewer| *viewer != id);
                if room.viewers.len() != before {
                    let viewers =
                        self.directory
                            .set_viewers(&peer.room, self.shard, room.viewers.len());
                    self.events.push_back(SfuEvent::ViewerCount {
                        room: peer.room.clone(),
                        viewers,
                    });
                }
            }
            if room.members.is_empty() && room.relays.is_empty() {
                room.idle_since = Some(now);
            }
        }
        tracing::info!(room = %peer.room, peer = %id, ?role, ?reason, "session closed");
        self.events.push_back(SfuEvent::PeerClosed {
            room: peer.room.clone(),
            peer: id,
            role,
            reason,
        });
        Some((peer.room, role))
    }

    /// The room's publisher left: its caches are cleared and taps, mirrors and the
    /// server are told the room is offline.
    pub(super) fn publisher_left(&mut self, room_id: &RoomId) {
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        room.publisher = None;
        room.keyframe_cache.clear();
        room.pli.reset();
        let epoch = room.epoch;
        room.send_to_taps(
            TapEvent::PublisherEnded { epoch },
            &mut self.counters.tap_dropped,
        );
        for &shard in &room.relays {
            self.shard_outbox.push_back((
                shard,
                ShardMessage::PublisherEnded {
                    room: room_id.clone(),
                },
            ));
        }
        self.events.push_back(SfuEvent::Offline {
            room: room_id.clone(),
        });
    }

    pub(super) fn shutdown(&mut self, now: Instant) {
        let mut ids: Vec<PeerId> = self.peers.keys().copied().collect();
        ids.extend(self.ingest_ids());
        for id in ids {
            self.close_peer(id, CloseReason::Shutdown, now);
        }
        for room in self.rooms.values_mut() {
            room.send_to_taps(TapEvent::RoomClosed, &mut self.counters.tap_dropped);
            if room.home.is_none() {
                self.directory.room_removed(&room.id, self.shard);
            }
        }
        self.rooms.clear();
        self.timers.clear();
    }
}

/// The codecs of a publisher's negotiated tracks.
fn codecs_of(tracks: &[Option<InboundTrackPlan>; 2]) -> RoomCodecs {
    RoomCodecs {
        audio: tracks[0].as_ref().map(|t| t.codec),
        video: tracks[1].as_ref().map(|t| {
            let profile = crate::offer::fmtp_param(&t.fmtp, "profile-level-id").map(str::to_owned);
            (t.codec, profile.filter(|_| t.codec == Codec::H264))
        }),
    }
}
