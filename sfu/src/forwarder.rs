//! Per-viewer, per-track forwarding decisions: a pure, sans-IO state machine.
//!
//! For every publisher packet a [`Forwarder`] decides whether this viewer gets it and with
//! which header: the viewer's own SSRC and payload type, sequence numbers and timestamps
//! that stay continuous across publisher reconnects (cf. LiveKit's `rtpmunger`, mediasoup's
//! `SeqManager`), only the header extensions the viewer negotiated, and — for video — a
//! start on a keyframe. It owns no packet and allocates nothing per packet.
//!
//! Continuity model: within one publisher session (`epoch`) the mapping is a constant
//! offset, `out = in + offset`, so upstream loss shows up as a gap the viewer can NACK and
//! a NACKed sequence number maps back to the source by subtraction. A new epoch (the
//! publisher came back) re-anchors the offsets right after the last packet sent, with the
//! timestamp advanced by the wall-clock time that passed.

use crate::media::{MediaKind, SourcePacket};
use std::time::{Duration, Instant};

/// A timestamp step, in 90 kHz ticks, between the frames of a joining viewer's replayed
/// GOP: the frames are compressed in time so the viewer's jitter buffer decodes them at
/// once and then plays the live stream without the GOP's age as extra delay.
pub const REPLAY_FRAME_STEP: u32 = 90;

/// What a viewer negotiated for one track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwarderConfig {
    /// Audio or video.
    pub kind: MediaKind,
    /// RTP clock rate of the codec (48 kHz Opus, 90 kHz video).
    pub clock_rate: u32,
    /// The SSRC this viewer's SDP announced for the track.
    pub ssrc: u32,
    /// The payload type the viewer's offer used for the codec.
    pub payload_type: u8,
    /// The viewer's extension id for `urn:3gpp:video-orientation`, if negotiated.
    pub video_orientation_id: Option<u8>,
    /// First output sequence number (random in production, fixed in tests).
    pub initial_sequence_number: u16,
    /// First output timestamp (random in production, fixed in tests).
    pub initial_timestamp: u32,
}

/// The header fields a forwarded packet gets for one viewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputHeader {
    /// Viewer-side SSRC.
    pub ssrc: u32,
    /// Viewer-side payload type.
    pub payload_type: u8,
    /// Continuous viewer-side sequence number.
    pub sequence_number: u16,
    /// Continuous viewer-side timestamp.
    pub timestamp: u32,
    /// The source marker bit.
    pub marker: bool,
    /// `(extension id, value)` of the video-orientation extension to attach, if any.
    pub video_orientation: Option<(u8, u8)>,
}

/// Why a packet was not forwarded to a viewer. Every drop has a reason and is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Video before the first keyframe (join, or publisher reconnect).
    WaitingForKeyframe,
    /// A packet from before the current mapping began (late reordering across a switch).
    Stale,
    /// A packet from an older publisher session than the one being forwarded.
    OldEpoch,
}

impl DropReason {
    /// Stable label for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::WaitingForKeyframe => "waiting_for_keyframe",
            DropReason::Stale => "stale",
            DropReason::OldEpoch => "old_epoch",
        }
    }
}

/// The mapping from one publisher session to this viewer's numbering.
#[derive(Debug, Clone, Copy)]
struct Anchor {
    epoch: u32,
    seq_offset: u16,
    ts_offset: u32,
    /// The newest source sequence number seen since anchoring …
    highest_sequence_number: u16,
    /// … and how many sequence numbers past the anchor point it is. A packet's distance
    /// from the anchor is this plus its (signed) distance from the newest, so "older than
    /// the anchor" stays correct however long the session runs and however often the
    /// 16-bit sequence number wraps.
    highest_distance: u64,
}

impl Anchor {
    /// How far past the anchor point `sequence_number` is, or `None` if it is before it.
    fn distance(&self, sequence_number: u16) -> Option<u64> {
        let delta = sequence_number.wrapping_sub(self.highest_sequence_number) as i16 as i64;
        u64::try_from(self.highest_distance as i64 + delta).ok()
    }

    /// Records a packet that was forwarded.
    fn observe(&mut self, sequence_number: u16) {
        if seq_is_newer(sequence_number, self.highest_sequence_number)
            && let Some(distance) = self.distance(sequence_number)
        {
            self.highest_sequence_number = sequence_number;
            self.highest_distance = distance;
        }
    }
}

/// The last packet sent, the base for re-anchoring.
#[derive(Debug, Clone, Copy)]
struct LastSent {
    sequence_number: u16,
    timestamp: u32,
    at: Instant,
}

/// One viewer's forwarding state for one track. See the module docs.
#[derive(Debug)]
pub struct Forwarder {
    config: ForwarderConfig,
    anchor: Option<Anchor>,
    last_sent: Option<LastSent>,
    /// Source timestamp → output timestamp for the frames of a replayed GOP; empty after
    /// the live stream moves past them. Allocated once per join, never per packet.
    replay_timestamps: Vec<(u32, u32)>,
    packets_sent: u64,
    /// When a keyframe packet last went to this viewer (a replay or live).
    last_keyframe_sent: Option<Instant>,
}

/// `a` is newer than `b` in RTP sequence space (RFC 3550 wrap-around).
pub fn seq_is_newer(a: u16, b: u16) -> bool {
    a != b && (a.wrapping_sub(b) as i16) > 0
}

/// `a` is newer than `b` in RTP timestamp space.
pub fn timestamp_is_newer(a: u32, b: u32) -> bool {
    a != b && (a.wrapping_sub(b) as i32) > 0
}

impl Forwarder {
    /// A forwarder that has sent nothing yet.
    pub fn new(config: ForwarderConfig) -> Self {
        Self {
            config,
            anchor: None,
            last_sent: None,
            replay_timestamps: Vec::new(),
            packets_sent: 0,
            last_keyframe_sent: None,
        }
    }

    /// When this viewer was last sent a keyframe packet (its join replay, a live keyframe,
    /// or a replay after its keyframe request), if ever.
    pub fn last_keyframe_sent(&self) -> Option<Instant> {
        self.last_keyframe_sent
    }

    /// The negotiated parameters.
    pub fn config(&self) -> &ForwarderConfig {
        &self.config
    }

    /// Whether the viewer is waiting for a keyframe (video that is not anchored to the
    /// current publisher session).
    pub fn needs_keyframe(&self, current_epoch: u32) -> bool {
        self.config.kind == MediaKind::Video
            && self
                .anchor
                .is_none_or(|anchor| anchor.epoch != current_epoch)
    }

    /// Whether this forwarder has sent anything yet.
    pub fn has_started(&self) -> bool {
        self.last_sent.is_some()
    }

    /// Packets sent through [`Forwarder::forward`] (retransmissions not counted).
    pub fn packets_sent(&self) -> u64 {
        self.packets_sent
    }

    /// Decides the fate of one live publisher packet for this viewer.
    pub fn forward(
        &mut self,
        packet: &SourcePacket,
        now: Instant,
    ) -> Result<OutputHeader, DropReason> {
        let mut anchor = match self.anchor {
            Some(anchor) if anchor.epoch == packet.epoch => anchor,
            Some(anchor) if epoch_is_older(packet.epoch, anchor.epoch) => {
                return Err(DropReason::OldEpoch);
            }
            _ => {
                if self.config.kind == MediaKind::Video && !packet.keyframe {
                    return Err(DropReason::WaitingForKeyframe);
                }
                self.anchor_at(packet, now)
            }
        };
        if anchor.distance(packet.sequence_number).is_none() {
            return Err(DropReason::Stale);
        }
        anchor.observe(packet.sequence_number);
        self.anchor = Some(anchor);
        let header = self.map(packet, anchor);
        let is_newest = self
            .last_sent
            .is_none_or(|last| seq_is_newer(header.sequence_number, last.sequence_number));
        if is_newest {
            self.last_sent = Some(LastSent {
                sequence_number: header.sequence_number,
                timestamp: header.timestamp,
                at: now,
            });
            if !self.replay_timestamps.is_empty()
                && self
                    .replay_timestamps
                    .last()
                    .is_some_and(|&(source, _)| timestamp_is_newer(packet.timestamp, source))
            {
                // Live frames are past the replayed GOP: its mapping is no longer needed
                // for new packets (retransmissions of it are rare enough to miss).
                self.replay_timestamps.clear();
            }
        }
        self.packets_sent += 1;
        if packet.keyframe && self.config.kind == MediaKind::Video {
            self.last_keyframe_sent = Some(now);
        }
        Ok(header)
    }

    /// Starts a joining viewer on a cached GOP: `frame_timestamps` are the source
    /// timestamps of the cached frames in order, the first being the keyframe. The frames
    /// are replayed `REPLAY_FRAME_STEP` apart, ending on the last frame's natural output
    /// timestamp, so the live frames that follow continue at their natural spacing.
    ///
    /// Call before forwarding the cached packets with [`Forwarder::forward`]. Ignored if
    /// the forwarder has already sent something (replay is only for a fresh start).
    pub fn prepare_replay(
        &mut self,
        keyframe: &SourcePacket,
        frame_timestamps: &[u32],
        now: Instant,
    ) {
        if self.last_sent.is_some() || frame_timestamps.is_empty() {
            return;
        }
        let anchor = self.anchor_at(keyframe, now);
        let Some(&last_source) = frame_timestamps.last() else {
            return;
        };
        let last_out = last_source.wrapping_add(anchor.ts_offset);
        let count = frame_timestamps.len() as u32;
        self.replay_timestamps.clear();
        self.replay_timestamps.reserve_exact(frame_timestamps.len());
        for (index, &source) in frame_timestamps.iter().enumerate() {
            let back = (count - 1 - index as u32).wrapping_mul(REPLAY_FRAME_STEP);
            self.replay_timestamps
                .push((source, last_out.wrapping_sub(back)));
        }
    }

    /// Answers a viewer's keyframe request from a cached GOP instead of the publisher: the
    /// viewer already received these packets live, so they are sent again under new
    /// sequence numbers right after the last one sent, with timestamps squeezed between
    /// the last frame sent and the next live frame; the live stream then continues on its
    /// old timestamp mapping, so the viewer's playout clock does not jump.
    ///
    /// `frame_timestamps` are the cached frames' source timestamps, the keyframe's first.
    /// Returns `false` (nothing changed) if the forwarder has sent nothing of this
    /// publisher session; a fresh viewer starts with [`Forwarder::prepare_replay`].
    /// Call before forwarding the cached packets with [`Forwarder::forward`].
    pub fn prepare_replay_on_request(
        &mut self,
        keyframe: &SourcePacket,
        frame_timestamps: &[u32],
        now: Instant,
    ) -> bool {
        let (Some(anchor), Some(last)) = (self.anchor, self.last_sent) else {
            return false;
        };
        let (Some(&first_source), Some(&last_source)) =
            (frame_timestamps.first(), frame_timestamps.last())
        else {
            return false;
        };
        if anchor.epoch != keyframe.epoch {
            return false;
        }
        let count = frame_timestamps.len() as u32;
        let frame_interval = if count >= 2 {
            last_source.wrapping_sub(first_source) / (count - 1)
        } else {
            self.config.clock_rate / 30
        };
        let step = (frame_interval / (count + 1)).clamp(1, REPLAY_FRAME_STEP);
        let out_sequence_number = last.sequence_number.wrapping_add(1);
        self.anchor = Some(Anchor {
            epoch: anchor.epoch,
            seq_offset: out_sequence_number.wrapping_sub(keyframe.sequence_number),
            ts_offset: anchor.ts_offset,
            highest_sequence_number: keyframe.sequence_number,
            highest_distance: 0,
        });
        self.replay_timestamps.clear();
        self.replay_timestamps.reserve_exact(frame_timestamps.len());
        for (index, &source) in frame_timestamps.iter().enumerate() {
            let out = last
                .timestamp
                .wrapping_add((index as u32 + 1).wrapping_mul(step));
            self.replay_timestamps.push((source, out));
        }
        self.last_sent = Some(LastSent { at: now, ..last });
        true
    }

    /// Maps a viewer's NACKed sequence number back to the source sequence number, if it
    /// belongs to the current publisher session.
    pub fn source_sequence_number(
        &self,
        output_sequence_number: u16,
        current_epoch: u32,
    ) -> Option<u16> {
        let anchor = self.anchor.filter(|anchor| anchor.epoch == current_epoch)?;
        let source = output_sequence_number.wrapping_sub(anchor.seq_offset);
        let distance = anchor.distance(source)?;
        (distance <= anchor.highest_distance).then_some(source)
    }

    /// The header for retransmitting a packet this viewer already received (a NACK
    /// answered from the shared ring). Does not move the forwarding state.
    pub fn retransmission(&self, packet: &SourcePacket) -> Option<OutputHeader> {
        let anchor = self.anchor.filter(|anchor| anchor.epoch == packet.epoch)?;
        anchor.distance(packet.sequence_number)?;
        Some(self.map(packet, anchor))
    }

    fn anchor_at(&mut self, packet: &SourcePacket, now: Instant) -> Anchor {
        let (out_seq, out_ts) = match self.last_sent {
            Some(last) => {
                let elapsed = now.saturating_duration_since(last.at);
                let ticks = ticks(elapsed, self.config.clock_rate).max(1);
                (
                    last.sequence_number.wrapping_add(1),
                    last.timestamp.wrapping_add(ticks),
                )
            }
            None => (
                self.config.initial_sequence_number,
                self.config.initial_timestamp,
            ),
        };
        let anchor = Anchor {
            epoch: packet.epoch,
            seq_offset: out_seq.wrapping_sub(packet.sequence_number),
            ts_offset: out_ts.wrapping_sub(packet.timestamp),
            highest_sequence_number: packet.sequence_number,
            highest_distance: 0,
        };
        self.anchor = Some(anchor);
        self.replay_timestamps.clear();
        anchor
    }

    fn map(&self, packet: &SourcePacket, anchor: Anchor) -> OutputHeader {
        let timestamp = self
            .replay_timestamps
            .iter()
            .find(|&&(source, _)| source == packet.timestamp)
            .map(|&(_, out)| out)
            .unwrap_or_else(|| packet.timestamp.wrapping_add(anchor.ts_offset));
        OutputHeader {
            ssrc: self.config.ssrc,
            payload_type: self.config.payload_type,
            sequence_number: packet.sequence_number.wrapping_add(anchor.seq_offset),
            timestamp,
            marker: packet.marker,
            video_orientation: match (self.config.video_orientation_id, packet.video_orientation) {
                (Some(id), Some(value)) => Some((id, value)),
                _ => None,
            },
        }
    }
}

/// Epochs grow by one per publisher session; compare with wrap-around like sequence numbers.
fn epoch_is_older(a: u32, b: u32) -> bool {
    a != b && (b.wrapping_sub(a) as i32) > 0
}

/// Converts a duration into RTP clock ticks.
fn ticks(elapsed: Duration, clock_rate: u32) -> u32 {
    (elapsed.as_micros() as u64 * clock_rate as u64 / 1_000_000) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::Codec;
    use bytes::Bytes;

    fn config(kind: MediaKind) -> ForwarderConfig {
        ForwarderConfig {
            kind,
            clock_rate: if kind == MediaKind::Video {
                90_000
            } else {
                48_000
            },
            ssrc: 0xabcd,
            payload_type: 102,
            video_orientation_id: Some(4),
            initial_sequence_number: 1000,
            initial_timestamp: 5000,
        }
    }

    fn video(epoch: u32, seq: u16, ts: u32, keyframe: bool, at: Instant) -> SourcePacket {
        SourcePacket {
            codec: Codec::H264,
            epoch,
            sequence_number: seq,
            timestamp: ts,
            marker: false,
            keyframe,
            frame_start: true,
            video_orientation: None,
            received_at: at,
            payload: Bytes::from_static(&[0x41]),
        }
    }

    #[test]
    fn rewrites_ssrc_payload_type_and_starts_on_keyframe() {
        let now = Instant::now();
        let mut f = Forwarder::new(config(MediaKind::Video));
        assert!(f.needs_keyframe(1));
        assert_eq!(
            f.forward(&video(1, 10, 900, false, now), now),
            Err(DropReason::WaitingForKeyframe)
        );
        let h = f.forward(&video(1, 11, 3000, true, now), now).unwrap();
        assert_eq!((h.ssrc, h.payload_type), (0xabcd, 102));
        assert_eq!((h.sequence_number, h.timestamp), (1000, 5000));
        let h = f.forward(&video(1, 12, 3000, false, now), now).unwrap();
        assert_eq!((h.sequence_number, h.timestamp), (1001, 5000));
        assert!(!f.needs_keyframe(1));
    }

    #[test]
    fn upstream_loss_passes_through_as_a_gap_and_maps_back_for_nack() {
        let now = Instant::now();
        let mut f = Forwarder::new(config(MediaKind::Video));
        f.forward(&video(1, 100, 0, true, now), now).unwrap();
        // 101 and 102 were lost upstream.
        let h = f.forward(&video(1, 103, 3000, false, now), now).unwrap();
        assert_eq!(h.sequence_number, 1003);
        assert_eq!(f.source_sequence_number(1001, 1), Some(101));
        // A late retransmission of 101 from the publisher gets its original slot.
        let late = f.forward(&video(1, 101, 0, false, now), now).unwrap();
        assert_eq!(late.sequence_number, 1001);
        // Newer than anything sent: not mappable.
        assert_eq!(f.source_sequence_number(1004, 1), None);
        // Before the start: not mappable.
        assert_eq!(f.source_sequence_number(999, 1), None);
        assert_eq!(
            f.forward(&video(1, 99, 0, false, now), now),
            Err(DropReason::Stale)
        );
    }

    #[test]
    fn sequence_numbers_wrap() {
        let now = Instant::now();
        let mut cfg = config(MediaKind::Audio);
        cfg.initial_sequence_number = 65535;
        let mut f = Forwarder::new(cfg);
        let mut p = video(1, 7, 0, false, now);
        p.codec = Codec::Opus;
        assert_eq!(f.forward(&p, now).unwrap().sequence_number, 65535);
        p.sequence_number = 8;
        assert_eq!(f.forward(&p, now).unwrap().sequence_number, 0);
        assert_eq!(f.source_sequence_number(0, 1), Some(8));
    }

    #[test]
    fn long_sessions_keep_forwarding_and_mapping_nacks_across_many_wraps() {
        let now = Instant::now();
        let mut f = Forwarder::new(config(MediaKind::Video));
        f.forward(&video(1, 60_000, 0, true, now), now).unwrap();
        let mut last = None;
        for i in 1..200_000u32 {
            let seq = 60_000u16.wrapping_add(i as u16);
            let header = f.forward(&video(1, seq, i * 10, false, now), now).unwrap();
            last = Some((seq, header.sequence_number));
        }
        let (seq, out) = last.unwrap();
        assert_eq!(out, 1000u16.wrapping_add(199_999u32 as u16));
        assert_eq!(f.source_sequence_number(out, 1), Some(seq));
        assert_eq!(
            f.source_sequence_number(out.wrapping_sub(100), 1),
            Some(seq.wrapping_sub(100))
        );
        // Reordered by a few packets: still forwarded, not stale.
        assert!(
            f.forward(&video(1, seq.wrapping_sub(3), 0, false, now), now)
                .is_ok()
        );
    }

    #[test]
    fn publisher_reconnect_continues_sequence_and_advances_timestamp_by_wall_clock() {
        let t0 = Instant::now();
        let mut f = Forwarder::new(config(MediaKind::Video));
        f.forward(&video(1, 500, 90_000, true, t0), t0).unwrap();
        let last = f.forward(&video(1, 501, 93_000, false, t0), t0).unwrap();
        assert_eq!(last.sequence_number, 1001);

        // The publisher comes back 2 s later with fresh, unrelated numbering.
        let t1 = t0 + Duration::from_secs(2);
        assert!(f.needs_keyframe(2));
        assert_eq!(
            f.forward(&video(2, 40_000, 7, false, t1), t1),
            Err(DropReason::WaitingForKeyframe)
        );
        let first = f.forward(&video(2, 40_001, 10, true, t1), t1).unwrap();
        assert_eq!(first.sequence_number, 1002, "no gap across the reconnect");
        assert_eq!(first.timestamp, last.timestamp + 180_000, "2 s of 90 kHz");
        let next = f.forward(&video(2, 40_002, 3010, false, t1), t1).unwrap();
        assert_eq!(next.sequence_number, 1003);
        assert_eq!(next.timestamp, first.timestamp + 3000);
        // Stragglers of the old session are dropped.
        assert_eq!(
            f.forward(&video(1, 502, 96_000, false, t1), t1),
            Err(DropReason::OldEpoch)
        );
        // NACKs for the old session no longer map.
        assert_eq!(f.source_sequence_number(1001, 2), None);
        assert_eq!(f.source_sequence_number(1002, 2), Some(40_001));
    }

    #[test]
    fn audio_reanchors_without_keyframe() {
        let t0 = Instant::now();
        let mut f = Forwarder::new(config(MediaKind::Audio));
        let mut p = video(1, 1, 960, false, t0);
        p.codec = Codec::Opus;
        let a = f.forward(&p, t0).unwrap();
        let t1 = t0 + Duration::from_millis(100);
        let mut q = video(2, 9000, 123, false, t1);
        q.codec = Codec::Opus;
        let b = f.forward(&q, t1).unwrap();
        assert_eq!(b.sequence_number, a.sequence_number + 1);
        assert_eq!(b.timestamp, a.timestamp + 4800);
    }

    #[test]
    fn replay_compresses_cached_frames_and_ends_on_natural_timestamp() {
        let now = Instant::now();
        let mut f = Forwarder::new(config(MediaKind::Video));
        let frames = [0u32, 3000, 6000, 9000];
        let key = video(1, 10, 0, true, now);
        f.prepare_replay(&key, &frames, now);
        let outs: Vec<u32> = frames
            .iter()
            .enumerate()
            .map(|(i, &ts)| {
                f.forward(&video(1, 10 + i as u16, ts, i == 0, now), now)
                    .unwrap()
                    .timestamp
            })
            .collect();
        // Natural output of the last frame is 5000 + 9000; earlier ones are 90 ticks apart.
        assert_eq!(outs, vec![14_000 - 270, 14_000 - 180, 14_000 - 90, 14_000]);
        // The live frame after the replay keeps its natural spacing.
        let live = f.forward(&video(1, 14, 12_000, false, now), now).unwrap();
        assert_eq!(live.timestamp, 17_000);
        assert_eq!(live.sequence_number, 1004);
    }

    #[test]
    fn a_keyframe_request_replays_the_cached_gop_after_the_last_packet_sent() {
        let t0 = Instant::now();
        let mut f = Forwarder::new(config(MediaKind::Video));
        // Live: keyframe at 10 (ts 0), frames at 3000 and 6000; the viewer got 10..=13.
        let gop = [
            video(1, 10, 0, true, t0),
            video(1, 11, 0, false, t0),
            video(1, 12, 3000, false, t0),
            video(1, 13, 6000, false, t0),
        ];
        for packet in &gop {
            f.forward(packet, t0).unwrap();
        }
        assert_eq!(f.last_keyframe_sent(), Some(t0));
        let t1 = t0 + Duration::from_millis(70);
        assert!(f.prepare_replay_on_request(&gop[0], &[0, 3000, 6000], t1));
        let replay: Vec<(u16, u32)> = gop
            .iter()
            .map(|p| f.forward(p, t1).unwrap())
            .map(|h| (h.sequence_number, h.timestamp))
            .collect();
        // New sequence numbers right after 1003; timestamps squeezed after 5000 + 6000,
        // 3000 / 4 = 750 ticks apart … but never more than REPLAY_FRAME_STEP.
        assert_eq!(
            replay,
            [
                (1004, 11_090),
                (1005, 11_090),
                (1006, 11_180),
                (1007, 11_270)
            ]
        );
        assert_eq!(f.last_keyframe_sent(), Some(t1));
        // The next live frame keeps its natural timestamp and follows without a gap.
        let live = f.forward(&video(1, 14, 9000, false, t1), t1).unwrap();
        assert_eq!((live.sequence_number, live.timestamp), (1008, 14_000));
        // NACKs of the replayed packets map to the source; the pre-replay numbers do not.
        assert_eq!(f.source_sequence_number(1005, 1), Some(11));
        assert_eq!(f.source_sequence_number(1001, 1), None);
        // A forwarder that never started, or another session's GOP: not for this method.
        let mut fresh = Forwarder::new(config(MediaKind::Video));
        assert!(!fresh.prepare_replay_on_request(&gop[0], &[0], t1));
        assert!(!f.prepare_replay_on_request(&video(2, 1, 0, true, t1), &[0], t1));
    }

    #[test]
    fn retransmission_uses_the_same_mapping_without_moving_state() {
        let now = Instant::now();
        let mut f = Forwarder::new(config(MediaKind::Video));
        f.forward(&video(1, 1, 0, true, now), now).unwrap();
        f.forward(&video(1, 2, 3000, false, now), now).unwrap();
        let rtx = f.retransmission(&video(1, 1, 0, true, now)).unwrap();
        assert_eq!(rtx.sequence_number, 1000);
        assert_eq!(f.packets_sent(), 2);
        assert!(f.retransmission(&video(2, 1, 0, true, now)).is_none());
    }

    #[test]
    fn video_orientation_only_when_negotiated_and_present() {
        let now = Instant::now();
        let mut f = Forwarder::new(config(MediaKind::Video));
        let mut p = video(1, 1, 0, true, now);
        p.video_orientation = Some(1);
        assert_eq!(f.forward(&p, now).unwrap().video_orientation, Some((4, 1)));
        let mut cfg = config(MediaKind::Video);
        cfg.video_orientation_id = None;
        let mut g = Forwarder::new(cfg);
        assert_eq!(g.forward(&p, now).unwrap().video_orientation, None);
    }
}
