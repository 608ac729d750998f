//! Publishers that do not speak WebRTC (RTMP ingest): a source the server feeds itself.
//!
//! An ingest source takes the room's publisher seat like a WHIP session (same conflict
//! and replacement rules, a new epoch, the `PeerConnected`/`Live`/`Offline` events) but
//! has no engine: the ingest task sends it frames ([`crate::media::NativeFrame`], for the
//! bridge, which passes the source's own codecs through) and the RTP packets made from
//! them (for WebRTC viewers), and they enter the same fan-out as a publisher's packets:
//! the ring answers NACKs, the keyframe cache starts joiners, sequence numbers stay
//! continuous across a switch between RTMP and WHIP. A PLI cannot reach an RTMP encoder:
//! viewers asking for a keyframe get the cached GOP, and the request is counted.

use super::SfuCore;
use super::peer_state::Role;
use crate::error::SfuError;
use crate::events::{CloseReason, SfuEvent};
use crate::ids::{PeerId, RoomId};
use crate::keyframe;
use crate::media::{MediaKind, NativeFrame, SourcePacket};
use crate::peer::RoomCodecs;
use crate::session::PeerRole;
use crate::tap::TapEvent;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::oneshot;

/// Most native frames kept for a tap that attaches mid-GOP (a 10 s GOP at 60 fps with
/// audio is ~1,100 frames); beyond it the GOP is not kept until the next keyframe.
const MAX_NATIVE_GOP: usize = 4096;

/// One ingest source of this shard.
pub(super) struct IngestSource {
    pub(super) room: RoomId,
    pub(super) epoch: u32,
    pub(super) created_at: Instant,
    pub(super) last_media_at: Option<Instant>,
    /// The RTP timestamp of the last packet per kind (frame starts).
    last_timestamp: [Option<u32>; 2],
    /// The latest sequence headers, for a tap that attaches late.
    video_header: Option<Arc<NativeFrame>>,
    audio_header: Option<Arc<NativeFrame>>,
    /// Frames since the last video keyframe (the keyframe first), for the same.
    gop: Vec<Arc<NativeFrame>>,
    gop_overflowed: bool,
    /// Told when the source is closed by the server (admin stop, replacement, shutdown).
    closed: Option<oneshot::Sender<CloseReason>>,
}

impl IngestSource {
    fn remember(&mut self, frame: &Arc<NativeFrame>) {
        if frame.is_sequence_header() {
            match frame.kind {
                MediaKind::Video => self.video_header = Some(Arc::clone(frame)),
                MediaKind::Audio => self.audio_header = Some(Arc::clone(frame)),
            }
            return;
        }
        if frame.is_video_keyframe() {
            self.gop.clear();
            self.gop_overflowed = false;
        }
        if self.gop_overflowed || (self.gop.is_empty() && !frame.is_video_keyframe()) {
            // Audio before the first keyframe is no use to a late tap.
            return;
        }
        if self.gop.len() >= MAX_NATIVE_GOP {
            self.gop.clear();
            self.gop_overflowed = true;
            return;
        }
        self.gop.push(Arc::clone(frame));
    }

    /// What a tap attaching now needs to start: headers, then the GOP.
    fn catch_up(&self) -> impl Iterator<Item = &Arc<NativeFrame>> {
        self.video_header
            .iter()
            .chain(self.audio_header.iter())
            .chain(self.gop.iter())
    }
}

impl SfuCore {
    /// Seats an ingest source as the room's publisher (the room is created if needed).
    pub(super) fn add_ingest(
        &mut self,
        room_id: RoomId,
        id: PeerId,
        codecs: RoomCodecs,
        closed: oneshot::Sender<CloseReason>,
        now: Instant,
    ) -> Result<(), SfuError> {
        let epoch = self.seat_publisher(&room_id, id, codecs, now)?;
        self.ingests.insert(
            id,
            IngestSource {
                room: room_id.clone(),
                epoch,
                created_at: now,
                last_media_at: None,
                last_timestamp: [None; 2],
                video_header: None,
                audio_header: None,
                gop: Vec::new(),
                gop_overflowed: false,
                closed: Some(closed),
            },
        );
        self.counters.peers_created += 1;
        tracing::info!(room = %room_id, peer = %id, epoch, "ingest publisher seated");
        // There is no handshake left to wait for: the source is connected.
        self.events.push_back(SfuEvent::PeerConnected {
            room: room_id,
            peer: id,
            role: PeerRole::Publisher,
        });
        Ok(())
    }

    /// Whether the room's current publisher still holds its seat: media within the
    /// stale interval, or still connecting. A publisher that is neither may be replaced.
    pub(super) fn publisher_is_live(&self, publisher: PeerId, now: Instant) -> bool {
        let stale_after = self.config.publisher_stale_after;
        let recent = |at: Option<Instant>| {
            at.is_some_and(|at| now.saturating_duration_since(at) < stale_after)
        };
        if let Some(source) = self.ingests.get(&publisher) {
            // Seated and not sent anything yet: the encoder gets the connect timeout to
            // start, as a WebRTC publisher does to connect.
            let starting = source.last_media_at.is_none()
                && now.saturating_duration_since(source.created_at) < self.config.connect_timeout;
            return recent(source.last_media_at) || starting;
        }
        self.peers.get(&publisher).is_some_and(|p| match &p.role {
            Role::Publisher(state) => {
                let connecting = p.lifecycle.connected_since().is_none()
                    && now.saturating_duration_since(p.created_at) < self.config.connect_timeout;
                recent(state.last_media_at) || connecting
            }
            Role::Viewer(_) => false,
        })
    }

    /// Whether the publisher sent media within the stale interval (the room is live).
    pub(super) fn publisher_has_recent_media(&self, publisher: PeerId, now: Instant) -> bool {
        let last_media_at = match self.ingests.get(&publisher) {
            Some(source) => source.last_media_at,
            None => self.peers.get(&publisher).and_then(|p| match &p.role {
                Role::Publisher(state) => state.last_media_at,
                Role::Viewer(_) => None,
            }),
        };
        last_media_at
            .is_some_and(|at| now.saturating_duration_since(at) < self.config.publisher_stale_after)
    }

    /// Frames from an ingest source and the RTP packets made from them, in order.
    pub(super) fn ingest_media(
        &mut self,
        id: PeerId,
        codecs: Option<RoomCodecs>,
        native: Vec<Arc<NativeFrame>>,
        packets: Vec<SourcePacket>,
        now: Instant,
    ) {
        let Some(source) = self.ingests.get_mut(&id) else {
            // Closed meanwhile: what was in flight is dropped.
            return;
        };
        let room_id = source.room.clone();
        let epoch = source.epoch;
        let has_media = !(native.is_empty() && packets.is_empty());
        let first_media = has_media && source.last_media_at.is_none();
        if has_media {
            source.last_media_at = Some(now);
        }
        for frame in &native {
            source.remember(frame);
        }
        let Some(room) = self.rooms.get_mut(&room_id) else {
            return;
        };
        if let Some(codecs) = codecs {
            // What new viewers are offered (the H.264 profile is known from the first
            // sequence header); viewers already connected keep what they negotiated.
            room.codecs = codecs;
        }
        if first_media {
            room.send_to_taps(
                TapEvent::PublisherStarted {
                    epoch,
                    audio: room.codecs.audio,
                    video: room.codecs.video.as_ref().map(|(codec, _)| *codec),
                },
                &mut self.counters.tap_dropped,
            );
            tracing::info!(room = %room_id, epoch, "room is live (ingest)");
            self.events.push_back(SfuEvent::Live {
                room: room_id.clone(),
                epoch,
            });
        }
        self.counters.ingest_frames += native.len() as u64;
        for frame in native {
            room.send_to_taps(
                TapEvent::Native { epoch, frame },
                &mut self.counters.tap_dropped,
            );
        }
        self.counters.ingest_packets += packets.len() as u64;
        for mut packet in packets {
            let Some(source) = self.ingests.get_mut(&id) else {
                return;
            };
            let kind = packet.kind().index();
            packet.epoch = epoch;
            packet.frame_start = source.last_timestamp[kind] != Some(packet.timestamp);
            packet.keyframe = keyframe::is_keyframe(packet.codec, &packet.payload);
            source.last_timestamp[kind] = Some(packet.timestamp);
            self.fan_out(&room_id, Arc::new(packet), now);
        }
    }

    /// Unseats an ingest source (the room's `Offline` and the session's `PeerClosed`
    /// follow as for a WebRTC publisher). Returns its room, or `None` if it is not one.
    pub(super) fn close_ingest(
        &mut self,
        id: PeerId,
        reason: CloseReason,
        now: Instant,
    ) -> Option<(RoomId, PeerRole)> {
        let mut source = self.ingests.remove(&id)?;
        if let Some(closed) = source.closed.take() {
            // The ingest task may be gone already (it closed us).
            let _ = closed.send(reason);
        }
        self.counters.peers_closed += 1;
        if let Some(room) = self.rooms.get_mut(&source.room) {
            room.members.retain(|member| *member != id);
            if room.publisher == Some(id) {
                self.publisher_left(&source.room);
            }
            if let Some(room) = self.rooms.get_mut(&source.room)
                && room.members.is_empty()
                && room.relays.is_empty()
            {
                room.idle_since = Some(now);
            }
        }
        tracing::info!(room = %source.room, peer = %id, ?reason, "ingest publisher closed");
        self.events.push_back(SfuEvent::PeerClosed {
            room: source.room.clone(),
            peer: id,
            role: PeerRole::Publisher,
            reason,
        });
        Some((source.room, PeerRole::Publisher))
    }

    /// The room and role of an ingest session.
    pub(super) fn ingest_session(&self, id: PeerId) -> Option<(RoomId, PeerRole)> {
        self.ingests
            .get(&id)
            .map(|source| (source.room.clone(), PeerRole::Publisher))
    }

    /// What a tap attaching to `room` now must be sent first, if its publisher is an
    /// ingest source that has sent media.
    pub(super) fn ingest_catch_up(&self, room: &RoomId) -> Option<Vec<TapEvent>> {
        let publisher = self.rooms.get(room)?.publisher?;
        let source = self.ingests.get(&publisher)?;
        source.last_media_at?;
        let codecs = &self.rooms.get(room)?.codecs;
        let mut events = vec![TapEvent::PublisherStarted {
            epoch: source.epoch,
            audio: codecs.audio,
            video: codecs.video.as_ref().map(|(codec, _)| *codec),
        }];
        events.extend(source.catch_up().map(|frame| TapEvent::Native {
            epoch: source.epoch,
            frame: Arc::clone(frame),
        }));
        Some(events)
    }

    /// Whether `id` is one of this shard's ingest sources.
    pub(super) fn is_ingest(&self, id: PeerId) -> bool {
        self.ingests.contains_key(&id)
    }

    /// Every ingest source's id (for shutdown).
    pub(super) fn ingest_ids(&self) -> Vec<PeerId> {
        self.ingests.keys().copied().collect()
    }
}
