//! The media path: a publisher's packets to every viewer of its room, a joiner's start on
//! the cached GOP, NACKs answered from the room's ring, and keyframe requests coalesced
//! into at most one PLI per interval.
//!
//! This is the hot path: one parsed packet (an `Arc`) is shared by every viewer, each
//! viewer's [`crate::forwarder::Forwarder`] rewrites only the header, and nothing here
//! locks, awaits or allocates per viewer beyond what the engine's write does.

use super::peer_state::{Role, drain_engine};
use super::{MAX_RTP_PER_DRAIN, SfuCore};
use crate::events::SfuEvent;
use crate::forwarder::{DropReason, OutputHeader};
use crate::ids::{PeerId, RoomId};
use crate::keyframe;
use crate::media::{MediaKind, SourcePacket};
use crate::packet_ring::Insert;
use crate::stats::SfuCounters;
use crate::tap::TapEvent;
use bytes::Bytes;
use rtc::peer_connection::RTCPeerConnection;
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::sender_report::SenderReport;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::sansio::Protocol;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Most sequence numbers answered from one NACK packet.
const MAX_RETRANSMISSIONS_PER_NACK: usize = 256;
/// The 3GPP coordination-of-video-orientation values, so attaching one needs no allocation.
static ORIENTATION_BYTES: [u8; 256] = {
    let mut bytes = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        bytes[i] = i as u8;
        i += 1;
    }
    bytes
};

impl SfuCore {
    /// A viewer finished connecting: it starts receiving, on the cached GOP if there is one.
    pub(super) fn start_viewer(&mut self, id: PeerId, room_id: &RoomId, now: Instant) {
        let Self {
            rooms,
            peers,
            counters,
            to_flush,
            events,
            transmits,
            ..
        } = self;
        let Some(room) = rooms.get_mut(room_id) else {
            return;
        };
        let Some(peer) = peers.get_mut(&id) else {
            return;
        };
        room.viewers.push(id);
        events.push_back(SfuEvent::ViewerCount {
            room: room_id.clone(),
            viewers: room.viewers.len(),
        });
        let Role::Viewer(tracks) = &mut peer.role else {
            return;
        };
        let Some(video) = tracks[MediaKind::Video.index()].as_mut() else {
            return;
        };
        match room.keyframe_cache.snapshot(room.epoch) {
            Some((packets, frames)) => {
                counters.keyframe_cache_hits += 1;
                video.forwarder.prepare_replay(&packets[0], frames, now);
                for packet in packets {
                    if let Ok(header) = video.forwarder.forward(packet, now) {
                        write_rtp(&mut peer.connection, &header, packet, now, counters);
                        counters.keyframe_cache_replayed += 1;
                        peer.outbox.rtp += 1;
                        // The GOP goes out in slices, never whole into the engine.
                        if peer.outbox.rtp >= MAX_RTP_PER_DRAIN {
                            drain_engine(&mut peer.connection, &mut peer.outbox, transmits);
                        }
                    }
                }
                peer.outbox.full = true;
                if !peer.outbox.queued {
                    peer.outbox.queued = true;
                    to_flush.push_back(id);
                }
            }
            None => {
                counters.keyframe_cache_misses += 1;
                if room.publisher.is_some() {
                    counters.keyframe_requests += 1;
                    self.request_keyframe(room_id, now);
                }
            }
        }
    }

    pub(super) fn on_rtp(
        &mut self,
        id: PeerId,
        packet: rtc::rtp::packet::Packet,
        received_at: Instant,
    ) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let Role::Publisher(state) = &mut peer.role else {
            return;
        };
        self.counters.rtp_in += 1;
        let payload_type = packet.header.payload_type;
        let Some(plan) = state
            .tracks
            .iter()
            .flatten()
            .find(|t| t.payload_type == payload_type)
        else {
            return self.counters.rtp_unknown_payload_type += 1;
        };
        let codec = plan.codec;
        let kind = codec.kind().index();
        let video_orientation = plan
            .video_orientation_id
            .and_then(|ext| packet.header.get_extension(ext))
            .and_then(|value| value.first().copied());
        let frame_start = state.last_timestamp[kind] != Some(packet.header.timestamp);
        state.last_timestamp[kind] = Some(packet.header.timestamp);
        state.ssrcs[kind] = Some(packet.header.ssrc);
        let first_media = state.last_media_at.is_none();
        state.last_media_at = Some(received_at);
        let epoch = state.epoch;
        let source = Arc::new(SourcePacket {
            codec,
            epoch,
            sequence_number: packet.header.sequence_number,
            timestamp: packet.header.timestamp,
            marker: packet.header.marker,
            keyframe: keyframe::is_keyframe(codec, &packet.payload),
            frame_start,
            video_orientation,
            received_at,
            payload: packet.payload,
        });
        let room_id = peer.room.clone();
        if first_media {
            let tracks = [
                state.tracks[0].as_ref().map(|t| t.codec),
                state.tracks[1].as_ref().map(|t| t.codec),
            ];
            if let Some(room) = self.rooms.get_mut(&room_id) {
                room.send_to_taps(
                    TapEvent::PublisherStarted {
                        epoch,
                        audio: tracks[0],
                        video: tracks[1],
                    },
                    &mut self.counters.tap_dropped,
                );
            }
            tracing::info!(room = %room_id, epoch, "room is live");
            self.events.push_back(SfuEvent::Live {
                room: room_id.clone(),
                epoch,
            });
        }
        self.fan_out(&room_id, source, received_at);
    }

    /// The hot path: one publisher packet to every viewer of the room and every tap.
    pub(super) fn fan_out(&mut self, room_id: &RoomId, source: Arc<SourcePacket>, now: Instant) {
        let Self {
            rooms,
            peers,
            counters,
            to_flush,
            transmits,
            ..
        } = self;
        let Some(room) = rooms.get_mut(room_id) else {
            return;
        };
        if source.epoch != room.epoch {
            return counters.forward_stale += 1;
        }
        let kind = source.kind();
        match room.rings[kind.index()].insert(&source) {
            Insert::New => {}
            Insert::Duplicate => return counters.rtp_duplicates += 1,
            Insert::TooOld => return counters.rtp_too_old += 1,
        }
        if kind == MediaKind::Video {
            room.keyframe_cache.push(&source);
            if source.keyframe {
                room.pli.keyframe_received();
            }
        }
        let mut wants_keyframe = false;
        for &viewer in &room.viewers {
            let Some(peer) = peers.get_mut(&viewer) else {
                continue;
            };
            let Role::Viewer(tracks) = &mut peer.role else {
                continue;
            };
            let Some(track) = tracks[kind.index()].as_mut() else {
                continue;
            };
            match track.forwarder.forward(&source, now) {
                Ok(header) => {
                    write_rtp(&mut peer.connection, &header, &source, now, counters);
                    peer.outbox.rtp += 1;
                    if peer.outbox.rtp >= MAX_RTP_PER_DRAIN {
                        drain_engine(&mut peer.connection, &mut peer.outbox, transmits);
                    } else if !peer.outbox.queued {
                        peer.outbox.queued = true;
                        to_flush.push_back(viewer);
                    }
                }
                Err(DropReason::WaitingForKeyframe) => {
                    wants_keyframe = true;
                    counters.forward_waiting_for_keyframe += 1;
                }
                Err(DropReason::Stale | DropReason::OldEpoch) => counters.forward_stale += 1,
            }
        }
        if !room.taps.is_empty() {
            room.send_to_taps(TapEvent::Packet(source), &mut counters.tap_dropped);
        }
        if wants_keyframe {
            let room_id = room.id.clone();
            self.request_keyframe(&room_id, now);
        }
    }

    pub(super) fn on_rtcp(
        &mut self,
        id: PeerId,
        packets: Vec<Box<dyn rtc::rtcp::packet::Packet>>,
        now: Instant,
    ) {
        let Self {
            rooms,
            peers,
            counters,
            to_flush,
            transmits,
            ..
        } = self;
        let Some(peer) = peers.get_mut(&id) else {
            return;
        };
        let Some(room) = rooms.get_mut(&peer.room) else {
            return;
        };
        let mut wants_keyframe = false;
        match &mut peer.role {
            Role::Publisher(state) => {
                for packet in &packets {
                    if let Some(report) = packet.as_any().downcast_ref::<SenderReport>() {
                        let Some(kind) = state.ssrcs.iter().position(|s| *s == Some(report.ssrc))
                        else {
                            continue;
                        };
                        let Some(track) = &state.tracks[kind] else {
                            continue;
                        };
                        let event = TapEvent::SenderReport {
                            epoch: state.epoch,
                            codec: track.codec,
                            rtp_time: report.rtp_time,
                            wallclock: ntp_to_system_time(report.ntp_time),
                        };
                        room.send_to_taps(event, &mut counters.tap_dropped);
                    }
                }
            }
            Role::Viewer(tracks) => {
                let mut answered = 0;
                for packet in &packets {
                    let any = packet.as_any();
                    if let Some(nack) = any.downcast_ref::<TransportLayerNack>() {
                        let Some(track) = tracks
                            .iter()
                            .flatten()
                            .find(|t| t.plan.ssrc == nack.media_ssrc)
                        else {
                            continue;
                        };
                        let ring = &room.rings[track.plan.codec.kind().index()];
                        for pair in &nack.nacks {
                            for output_seq in *pair {
                                counters.nacks_received += 1;
                                if answered >= MAX_RETRANSMISSIONS_PER_NACK {
                                    continue;
                                }
                                let source = track
                                    .forwarder
                                    .source_sequence_number(output_seq, room.epoch)
                                    .and_then(|seq| ring.get(room.epoch, seq));
                                match source.and_then(|packet| {
                                    Some((packet, track.forwarder.retransmission(packet)?))
                                }) {
                                    Some((packet, header)) => {
                                        answered += 1;
                                        write_rtp(
                                            &mut peer.connection,
                                            &header,
                                            packet,
                                            now,
                                            counters,
                                        );
                                        peer.outbox.rtp += 1;
                                        if peer.outbox.rtp >= MAX_RTP_PER_DRAIN {
                                            drain_engine(
                                                &mut peer.connection,
                                                &mut peer.outbox,
                                                transmits,
                                            );
                                        }
                                        counters.retransmissions += 1;
                                    }
                                    None => counters.retransmission_misses += 1,
                                }
                            }
                        }
                    } else if any.downcast_ref::<PictureLossIndication>().is_some()
                        || any.downcast_ref::<FullIntraRequest>().is_some()
                    {
                        wants_keyframe = true;
                    }
                }
                if answered > 0 && !peer.outbox.queued {
                    peer.outbox.queued = true;
                    to_flush.push_back(id);
                }
            }
        }
        if wants_keyframe {
            counters.keyframe_requests += 1;
            let room_id = room.id.clone();
            self.request_keyframe(&room_id, now);
        }
    }

    // ----------------------------------------------------------------------------------
    // Keyframes

    /// Asks the room's publisher for a keyframe, coalesced to one PLI per interval.
    pub(super) fn request_keyframe(&mut self, room_id: &RoomId, now: Instant) {
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        let Some(publisher) = room.publisher else {
            return;
        };
        // Until the publisher's video stream is known there is nobody to ask; its first
        // frame is a keyframe anyway. Only a PLI that can be sent uses up the interval.
        let video_known = self
            .peers
            .get(&publisher)
            .is_some_and(|peer| match &peer.role {
                Role::Publisher(state) => state.ssrcs[MediaKind::Video.index()].is_some(),
                Role::Viewer(_) => false,
            });
        if video_known && room.pli.request(now) {
            self.send_pli(publisher, now);
        }
    }

    pub(super) fn send_pli(&mut self, publisher: PeerId, now: Instant) {
        let Some(peer) = self.peers.get_mut(&publisher) else {
            return;
        };
        let Role::Publisher(state) = &peer.role else {
            return;
        };
        let video = MediaKind::Video.index();
        let (Some(receiver), Some(media_ssrc)) = (state.receivers[video], state.ssrcs[video])
        else {
            return;
        };
        let pli = PictureLossIndication {
            sender_ssrc: 0,
            media_ssrc,
        };
        let written = peer
            .connection
            .rtp_receiver(receiver)
            .map(|mut r| r.write_rtcp(now, vec![Box::new(pli)]));
        if let Some(Ok(())) = written {
            self.counters.plis_sent += 1;
            tracing::debug!(peer = %publisher, "PLI sent to publisher");
            self.mark_flush(publisher);
        }
    }
}

/// Hands one rewritten packet to a viewer's engine (SRTP happens on the next flush).
fn write_rtp(
    connection: &mut RTCPeerConnection,
    header: &OutputHeader,
    source: &SourcePacket,
    now: Instant,
    counters: &mut SfuCounters,
) {
    let mut extensions = Vec::new();
    if let Some((id, value)) = header.video_orientation {
        let byte = Bytes::from_static(&ORIENTATION_BYTES[value as usize..value as usize + 1]);
        extensions.push(rtc::rtp::header::Extension { id, payload: byte });
    }
    let packet = rtc::rtp::packet::Packet {
        header: rtc::rtp::header::Header {
            version: 2,
            // An empty payload (a padding-only packet upstream) stays a valid padding packet.
            padding: source.payload.is_empty(),
            extension: !extensions.is_empty(),
            marker: header.marker,
            payload_type: header.payload_type,
            sequence_number: header.sequence_number,
            timestamp: header.timestamp,
            ssrc: header.ssrc,
            csrc: Vec::new(),
            extension_profile: 0xBEDE,
            extensions,
            extensions_padding: 0,
        },
        payload: source.payload.clone(),
    };
    // The track id is not used on this path (the SSRC identifies the stream): an empty
    // string does not allocate.
    let message = TaggedRTCMessage {
        now,
        message: RTCMessage::RtpPacket(String::new(), packet),
    };
    match connection.handle_write(message) {
        Ok(()) => counters.rtp_forwarded += 1,
        Err(_) => counters.forward_write_errors += 1,
    }
}

/// NTP (seconds since 1900 in 32.32 fixed point) to `SystemTime`.
fn ntp_to_system_time(ntp: u64) -> SystemTime {
    const NTP_UNIX_OFFSET: u64 = 2_208_988_800;
    let seconds = (ntp >> 32).saturating_sub(NTP_UNIX_OFFSET);
    let nanos = ((ntp & 0xffff_ffff) * 1_000_000_000) >> 32;
    UNIX_EPOCH + Duration::from_secs(seconds) + Duration::from_nanos(nanos)
}
