//! The media path: a publisher's packets to every viewer of its room, a joiner's start on
//! the cached GOP, NACKs answered from the room's ring, and keyframe requests coalesced
//! into at most one PLI per interval.
//!
//! This is the hot path: one parsed packet (an `Arc`) is shared by every viewer, each
//! viewer's [`crate::forwarder::Forwarder`] rewrites only the header, and nothing here
//! locks, awaits or allocates per viewer beyond what the engine's write does.

use super::peer_state::{FastPath, Outbox, Peer, Role, ViewerTrack, drain_engine};
use super::room::Room;
use super::{MAX_RTP_PER_DRAIN, SfuCore, Transmit};
use crate::cross_shard::ShardMessage;
use crate::events::SfuEvent;
use crate::fast_path::{
    FastPathError, FastPathSender, NegotiatedSrtp, OutboundStream, PacketFields, RtpHeaderTemplate,
};
use crate::forwarder::{DropReason, OutputHeader};
use crate::ids::{PeerId, RoomId};
use crate::keyframe;
use crate::media::{MediaKind, SourcePacket};
use crate::packet_ring::Insert;
use crate::pli_coalescer::{ViewerKeyframeAnswer, answer_viewer_keyframe_request};
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
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often each fast-path stream gets a sender report (the engine's own interceptor
/// sees none of the fast path's packets, so it sends none for these streams).
const SENDER_REPORT_INTERVAL: Duration = Duration::from_secs(1);
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
            directory,
            shard,
            buffers,
            replaying,
            next_replay_tick,
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
            viewers: directory.set_viewers(room_id, *shard, room.viewers.len()),
        });
        let (Some(tracks), mut viewer) = ViewerWire::of(id, peer) else {
            return;
        };
        let Some(video) = tracks[MediaKind::Video.index()].as_mut() else {
            return;
        };
        let mut wire = Wire {
            counters: &mut *counters,
            transmits: &mut *transmits,
            to_flush: &mut *to_flush,
            buffers: &mut *buffers,
        };
        match room.keyframe_cache.snapshot(room.epoch) {
            Some((packets, frames)) => {
                wire.counters.keyframe_cache_hits += 1;
                video.forwarder.prepare_replay(&packets[0], frames, now);
                // The GOP goes out paced (the keyframe's first tick now), never in one
                // burst that a browser's socket buffer would overflow on.
                let first_frame = begin_replay(video, packets, frames, &mut wire);
                if pace_replay(video, &mut viewer, &mut wire, now, first_frame) {
                    schedule_replay(replaying, next_replay_tick, id, now);
                }
                viewer.outbox.full = true;
                if !viewer.outbox.queued {
                    viewer.outbox.queued = true;
                    wire.to_flush.push_back(id);
                }
            }
            None => {
                wire.counters.keyframe_cache_misses += 1;
                if room.has_source() {
                    wire.counters.keyframe_requests += 1;
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
            shard_outbox,
            buffers,
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
        let mut wire = Wire {
            counters: &mut *counters,
            transmits: &mut *transmits,
            to_flush: &mut *to_flush,
            buffers: &mut *buffers,
        };
        for &viewer in &room.viewers {
            let Some(peer) = peers.get_mut(&viewer) else {
                continue;
            };
            let (Some(tracks), mut wire_to) = ViewerWire::of(viewer, peer) else {
                continue;
            };
            let Some(track) = tracks[kind.index()].as_mut() else {
                continue;
            };
            if !track.replay.is_empty() {
                // Behind the replay, in order.
                if track.replay.len() < MAX_REPLAY_QUEUE {
                    track.replay.push_back(Arc::clone(&source));
                    continue;
                }
                // Never expected (the replay outpaces the stream): send what waits now.
                pace_replay(track, &mut wire_to, &mut wire, now, usize::MAX);
            }
            match track.forwarder.forward(&source, now) {
                Ok(header) => wire_to.send(track.stream.as_mut(), &header, &source, now, &mut wire),
                Err(DropReason::WaitingForKeyframe) => {
                    wants_keyframe = true;
                    wire.counters.forward_waiting_for_keyframe += 1;
                }
                Err(DropReason::Stale | DropReason::OldEpoch) => wire.counters.forward_stale += 1,
            }
        }
        for &shard in &room.relays {
            wire.counters.relay_packets += 1;
            shard_outbox.push_back((
                shard,
                ShardMessage::Packet {
                    room: room.id.clone(),
                    packet: Arc::clone(&source),
                },
            ));
        }
        if !room.taps.is_empty() {
            room.send_to_taps(TapEvent::Packet(source), &mut wire.counters.tap_dropped);
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
            buffers,
            replaying,
            next_replay_tick,
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
            Role::Viewer(_) => {
                let (Some(tracks), mut viewer) = ViewerWire::of(id, peer) else {
                    return;
                };
                let mut wire = Wire {
                    counters: &mut *counters,
                    transmits: &mut *transmits,
                    to_flush: &mut *to_flush,
                    buffers: &mut *buffers,
                };
                let mut answered = 0;
                let mut viewer_asks_keyframe = false;
                for packet in &packets {
                    let any = packet.as_any();
                    if let Some(nack) = any.downcast_ref::<TransportLayerNack>() {
                        let Some(track) = tracks
                            .iter_mut()
                            .flatten()
                            .find(|t| t.plan.ssrc == nack.media_ssrc)
                        else {
                            continue;
                        };
                        let ring = &room.rings[track.plan.codec.kind().index()];
                        for pair in &nack.nacks {
                            for output_seq in *pair {
                                wire.counters.nacks_received += 1;
                                if answered >= MAX_RETRANSMISSIONS_PER_NACK {
                                    continue;
                                }
                                if !track.retransmit_budget.take(now) {
                                    // A viewer losing this much is congested: more
                                    // retransmissions would add to its loss.
                                    wire.counters.retransmissions_rate_limited += 1;
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
                                        wire.counters.retransmissions += 1;
                                        viewer.send(
                                            track.stream.as_mut(),
                                            &header,
                                            packet,
                                            now,
                                            &mut wire,
                                        );
                                    }
                                    None => wire.counters.retransmission_misses += 1,
                                }
                            }
                        }
                    } else if any.downcast_ref::<PictureLossIndication>().is_some()
                        || any.downcast_ref::<FullIntraRequest>().is_some()
                    {
                        viewer_asks_keyframe = true;
                    }
                }
                if viewer_asks_keyframe
                    && let Some(video) = tracks[MediaKind::Video.index()].as_mut()
                {
                    wire.counters.viewer_keyframe_requests += 1;
                    let answer = answer_keyframe_request(room, video, &mut viewer, &mut wire, now);
                    wants_keyframe = answer == KeyframeAnswer::AskPublisher;
                    if answer == KeyframeAnswer::Replaying {
                        schedule_replay(replaying, next_replay_tick, id, now);
                    }
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
        if let Some(home) = room.home {
            // A mirror: the home shard's coalescer decides what reaches the publisher.
            if room.pli.request(now) {
                self.shard_outbox.push_back((
                    home,
                    ShardMessage::KeyframeWanted {
                        room: room_id.clone(),
                    },
                ));
            }
            return;
        }
        let Some(publisher) = room.publisher else {
            return;
        };
        if self.ingests.contains_key(&publisher) {
            // An RTMP encoder cannot be asked: joiners and PLIs are served the cached GOP,
            // and the encoder's next keyframe (its GOP length away) ends the wait.
            if room.pli.request(now) {
                self.counters.ingest_keyframe_requests += 1;
            }
            return;
        }
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

/// Where forwarded packets go: the core's counters and transmit queue, and the queue of
/// engines to drain.
struct Wire<'a> {
    counters: &'a mut SfuCounters,
    transmits: &'a mut VecDeque<Transmit>,
    to_flush: &'a mut VecDeque<PeerId>,
    buffers: &'a mut crate::buffer_pool::BufferPool,
}

/// One viewer's sending side: its fast path if it has one, else its engine.
struct ViewerWire<'a> {
    id: PeerId,
    connection: &'a mut RTCPeerConnection,
    outbox: &'a mut Outbox,
    fast_path: Option<&'a mut FastPath>,
}

impl<'a> ViewerWire<'a> {
    /// Splits a peer into its viewer tracks (`None` for a publisher) and its sending side.
    fn of(id: PeerId, peer: &'a mut Peer) -> (Option<&'a mut [Option<ViewerTrack>; 2]>, Self) {
        let Peer {
            role,
            connection,
            outbox,
            fast_path,
            ..
        } = peer;
        let tracks = match role {
            Role::Viewer(tracks) => Some(tracks),
            Role::Publisher(_) => None,
        };
        let wire = Self {
            id,
            connection,
            outbox,
            fast_path: fast_path.as_mut(),
        };
        (tracks, wire)
    }

    /// Sends one rewritten packet (live, replayed or a retransmission): protected by the
    /// fast path straight into the transmit queue, or, without a fast path, written into
    /// the engine (drained every [`MAX_RTP_PER_DRAIN`] packets).
    fn send(
        &mut self,
        stream: Option<&mut OutboundStream>,
        header: &OutputHeader,
        source: &SourcePacket,
        now: Instant,
        wire: &mut Wire<'_>,
    ) {
        if let (Some(fast_path), Some(stream)) = (self.fast_path.as_deref_mut(), stream) {
            let len = fast_path.sender.protected_len(stream, source.payload.len());
            let mut contents = wire.buffers.take(len);
            let fields = PacketFields::from(header);
            match fast_path
                .sender
                .protect_rtp(stream, &fields, &source.payload, now, &mut contents)
            {
                Ok(protected) => {
                    contents.truncate(protected.len);
                    wire.transmits.push_back(Transmit {
                        destination: fast_path.destination,
                        contents,
                    });
                    wire.counters.rtp_forwarded += 1;
                    wire.counters.rtp_fast_path += 1;
                }
                Err(_) => wire.counters.forward_write_errors += 1,
            }
            return;
        }
        write_rtp(self.connection, header, source, now, wire.counters);
        self.outbox.rtp += 1;
        if self.outbox.rtp >= MAX_RTP_PER_DRAIN {
            drain_engine(self.connection, self.outbox, wire.transmits);
        } else if !self.outbox.queued {
            self.outbox.queued = true;
            wire.to_flush.push_back(self.id);
        }
    }
}

/// What a viewer's keyframe request led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyframeAnswer {
    /// Nothing to do (served a moment ago, or waiting for its first).
    Nothing,
    /// The cached GOP is being replayed to it (paced).
    Replaying,
    /// Only the publisher can help (coalesced by the caller).
    AskPublisher,
}

/// A viewer's PLI or FIR: nothing if a keyframe reached it a moment ago (or it waits for
/// its first, or a replay to it is under way), a paced replay of the room's cached GOP to
/// it alone if the cache is complete, and only otherwise a request to the publisher.
fn answer_keyframe_request(
    room: &Room,
    video: &mut ViewerTrack,
    viewer: &mut ViewerWire<'_>,
    wire: &mut Wire<'_>,
    now: Instant,
) -> KeyframeAnswer {
    if !video.replay.is_empty() {
        wire.counters.viewer_keyframe_requests_already_served += 1;
        return KeyframeAnswer::Nothing;
    }
    let answer = answer_viewer_keyframe_request(
        now,
        video.forwarder.last_keyframe_sent(),
        video.forwarder.needs_keyframe(room.epoch),
        room.keyframe_cache.is_complete(room.epoch),
    );
    match answer {
        ViewerKeyframeAnswer::AlreadyServed => {
            wire.counters.viewer_keyframe_requests_already_served += 1;
            KeyframeAnswer::Nothing
        }
        ViewerKeyframeAnswer::ReplayFromCache => {
            let Some((packets, frames)) = room.keyframe_cache.snapshot(room.epoch) else {
                return KeyframeAnswer::AskPublisher;
            };
            if !video
                .forwarder
                .prepare_replay_on_request(&packets[0], frames, now)
            {
                return KeyframeAnswer::AskPublisher;
            }
            wire.counters.viewer_keyframe_requests_replayed += 1;
            let first_frame = begin_replay(video, packets, frames, wire);
            if pace_replay(video, viewer, wire, now, first_frame) {
                KeyframeAnswer::Replaying
            } else {
                KeyframeAnswer::Nothing
            }
        }
        ViewerKeyframeAnswer::AskPublisher => KeyframeAnswer::AskPublisher,
    }
}

// ----------------------------------------------------------------------------------
// Paced GOP replays

/// How often replays in progress are paced.
pub(super) const REPLAY_TICK: Duration = Duration::from_millis(5);
/// A replay goes out at this multiple of the cached GOP's own bitrate …
const REPLAY_SPEEDUP: u64 = 4;
/// … and at least this fast, in bytes per second (2 Mbit/s).
const MIN_REPLAY_BYTES_PER_SEC: u64 = 250_000;
/// Most packets queued behind a replay; past it, what waits is sent at once (never
/// expected: a replay outpaces the stream four times).
const MAX_REPLAY_QUEUE: usize = 4096;

/// Queues a cached GOP for a paced replay to one viewer and sets its per-tick budget:
/// four times the GOP's bitrate, so it is through in a quarter of its duration and the
/// live packets queued behind it catch up soon after. Returns the budget of the first
/// tick: the whole keyframe, so the first picture is not delayed (a keyframe fits a
/// browser's socket buffer; the whole GOP at once may not).
fn begin_replay(
    video: &mut ViewerTrack,
    packets: &[Arc<SourcePacket>],
    frames: &[u32],
    wire: &mut Wire<'_>,
) -> usize {
    let bytes: u64 = packets.iter().map(|p| p.payload.len() as u64).sum();
    let clock_rate = u64::from(video.plan.codec.clock_rate().max(1));
    let span_ticks = match (frames.first(), frames.last()) {
        (Some(first), Some(last)) => u64::from(last.wrapping_sub(*first)),
        _ => 0,
    };
    // The GOP lasts from its first frame to one frame past its last; at least 100 ms.
    let duration_ms = (span_ticks * 1000 / clock_rate + 33).max(100);
    let rate = (REPLAY_SPEEDUP * bytes * 1000 / duration_ms).max(MIN_REPLAY_BYTES_PER_SEC);
    video.replay_budget = (rate * REPLAY_TICK.as_millis() as u64 / 1000) as usize;
    video.replay.extend(packets.iter().cloned());
    wire.counters.keyframe_cache_replayed += packets.len() as u64;
    let first_timestamp = packets.first().map(|p| p.timestamp);
    let keyframe_bytes: usize = packets
        .iter()
        .take_while(|p| Some(p.timestamp) == first_timestamp)
        .map(|p| p.payload.len())
        .sum();
    keyframe_bytes.max(video.replay_budget)
}

/// Puts a viewer with a replay under way on the pacing list (once) and makes sure a
/// pacing tick is due.
fn schedule_replay(
    replaying: &mut Vec<PeerId>,
    next_replay_tick: &mut Option<Instant>,
    id: PeerId,
    now: Instant,
) {
    if !replaying.contains(&id) {
        replaying.push(id);
    }
    next_replay_tick.get_or_insert(now + REPLAY_TICK);
}

/// Sends up to `budget` bytes (at least one packet) of a viewer's replay queue; whether
/// some is left.
fn pace_replay(
    video: &mut ViewerTrack,
    viewer: &mut ViewerWire<'_>,
    wire: &mut Wire<'_>,
    now: Instant,
    budget: usize,
) -> bool {
    let mut left = budget;
    let mut sent_any = false;
    while let Some(size) = video.replay.front().map(|p| p.payload.len()) {
        if sent_any && size > left {
            break;
        }
        let Some(packet) = video.replay.pop_front() else {
            break;
        };
        left = left.saturating_sub(size);
        sent_any = true;
        match video.forwarder.forward(&packet, now) {
            Ok(header) => viewer.send(video.stream.as_mut(), &header, &packet, now, wire),
            Err(DropReason::WaitingForKeyframe) => wire.counters.forward_waiting_for_keyframe += 1,
            Err(DropReason::Stale | DropReason::OldEpoch) => wire.counters.forward_stale += 1,
        }
    }
    !video.replay.is_empty()
}

impl SfuCore {
    /// One pacing tick of every replay in progress.
    pub(super) fn pace_replays(&mut self, now: Instant) {
        let Self {
            peers,
            counters,
            transmits,
            to_flush,
            buffers,
            replaying,
            next_replay_tick,
            ..
        } = self;
        let mut wire = Wire {
            counters: &mut *counters,
            transmits: &mut *transmits,
            to_flush: &mut *to_flush,
            buffers: &mut *buffers,
        };
        replaying.retain(|&id| {
            let Some(peer) = peers.get_mut(&id) else {
                return false;
            };
            let (Some(tracks), mut viewer) = ViewerWire::of(id, peer) else {
                return false;
            };
            let Some(video) = tracks[MediaKind::Video.index()].as_mut() else {
                return false;
            };
            let budget = video.replay_budget;
            pace_replay(video, &mut viewer, &mut wire, now, budget)
        });
        *next_replay_tick = (!replaying.is_empty()).then(|| now + REPLAY_TICK);
    }
}

/// Turns a connected viewer's fast path on: reads the negotiated profile and DTLS role,
/// re-derives the SRTP keys from the tap, and builds one stream per track. Nothing changes
/// on error (the viewer stays on the engine's write path).
pub(super) fn start_fast_path(peer: &mut Peer, now: Instant) -> Result<(), FastPathError> {
    let (Some(tap), Some(destination)) = (peer.srtp_tap.take(), peer.nominated) else {
        return Err(FastPathError::KeysNotExported);
    };
    let Role::Viewer(tracks) = &mut peer.role else {
        return Err(FastPathError::KeysNotExported);
    };
    let negotiated = NegotiatedSrtp::of_connection(&mut peer.connection, now)?;
    let keys = tap.session_keys(negotiated)?;
    let sender = FastPathSender::new(&keys, tap.crypto())?;
    let mut streams = [None, None];
    for (slot, track) in streams.iter_mut().zip(tracks.iter()) {
        if let Some(track) = track {
            let template = RtpHeaderTemplate::for_forwarder(track.forwarder.config())?;
            *slot = Some(OutboundStream::new(template, track.plan.codec.clock_rate()));
        }
    }
    for (track, stream) in tracks.iter_mut().zip(streams) {
        if let Some(track) = track {
            track.stream = stream;
        }
    }
    peer.fast_path = Some(FastPath {
        sender,
        destination,
        wall_clock_base: (now, SystemTime::now()),
        next_sender_report: now + SENDER_REPORT_INTERVAL,
    });
    Ok(())
}

impl SfuCore {
    /// Sender reports for the fast-path streams that are due (about one a second each),
    /// written through the viewer's engine, which protects them with its SRTCP context.
    pub(super) fn send_sender_reports(&mut self, now: Instant) {
        let mut written = Vec::new();
        for (&id, peer) in self.peers.iter_mut() {
            let Some(fast_path) = peer.fast_path.as_mut() else {
                continue;
            };
            if now < fast_path.next_sender_report {
                continue;
            }
            fast_path.next_sender_report = now + SENDER_REPORT_INTERVAL;
            let ntp = fast_path.ntp_time(now);
            let Role::Viewer(tracks) = &peer.role else {
                continue;
            };
            for track in tracks.iter().flatten() {
                let Some(report) = track
                    .stream
                    .as_ref()
                    .and_then(|stream| stream.build_sender_report(now, ntp))
                else {
                    continue;
                };
                let sent = peer
                    .connection
                    .rtp_sender(track.plan.sender)
                    .map(|mut sender| sender.write_rtcp(now, vec![Box::new(report)]));
                if let Some(Ok(())) = sent {
                    self.counters.fast_path_sender_reports += 1;
                    written.push(id);
                }
            }
        }
        for id in written {
            self.mark_flush(id);
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
