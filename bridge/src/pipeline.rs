//! One room's bridge pipeline: [`TapEvent`]s in, [`MediaUnit`]s out.
//!
//! ```text
//! TapEvent::Packet ─┬─ H.264 ─► reorder + depacketize ─► sync ─► VideoAccessUnit ─┐
//!                   └─ Opus ──► reorder ─► sync ─► Opus→AAC transcoder ─► AudioFrame ┴─► muxers
//! TapEvent::SenderReport ─► sync
//! TapEvent::PublisherStarted / PublisherEnded / RoomClosed ─► session bookkeeping
//! ```
//!
//! The server drives it with events and the current time and hands the units to every
//! muxer:
//!
//! ```ignore
//! let out = pipeline.push(event, Instant::now());
//! if out.keyframe_needed { pli_coalescer.request() }
//! for unit in &out.units { flv.write(unit); hls.write(unit); llhls.write(unit); }
//! ```
//!
//! Publisher reconnects (a new epoch) keep timestamps monotonic, flag the first units of
//! the new session as `discontinuity`, and the depacketizer reports new parameter sets
//! if the resolution changed. A VP8 video track is reported once
//! ([`PipelineNotice::VideoUnavailable`]) and the room is bridged audio-only.

use crate::audio_transcoder::{AudioTranscoder, TranscoderConfig, TranscoderStats};
use crate::error::BridgeError;
use crate::h264_depacketizer::{
    DepacketizerConfig, DepacketizerStats, H264Depacketizer, H264Frame,
};
use crate::media_unit::{AacConfig, AudioFrame, MediaUnit, TIMESCALE, Tracks, VideoAccessUnit};
use crate::reorder::{PushOutcome, ReorderBuffer, ReorderConfig, Reordered};
use crate::sync::{SyncStats, TimelineSync};
use sfu::media::{Codec, MediaKind, SourcePacket};
use sfu::tap::TapEvent;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Pipeline settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PipelineConfig {
    /// The H.264 depacketizer (and its reorder buffer).
    pub video: DepacketizerConfig,
    /// The reorder buffer in front of the Opus decoder.
    pub audio_reorder: ReorderConfig,
    /// The Opus → AAC transcoder.
    pub transcoder: TranscoderConfig,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            video: DepacketizerConfig::default(),
            audio_reorder: ReorderConfig {
                capacity: 32,
                max_delay: Duration::from_millis(60),
            },
            transcoder: TranscoderConfig::default(),
        }
    }
}

/// Ties the monotonic clock the pipeline is driven with to wall-clock time, so units can
/// carry a wall-clock estimate (for `EXT-X-PROGRAM-DATE-TIME`) without the pipeline
/// reading any clock itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockAnchor {
    /// A monotonic instant…
    pub instant: Instant,
    /// …and the wall-clock time at that instant.
    pub wallclock: SystemTime,
}

impl ClockAnchor {
    /// Reads both clocks now (for the server; tests build anchors by hand).
    pub fn now() -> Self {
        ClockAnchor {
            instant: Instant::now(),
            wallclock: SystemTime::now(),
        }
    }
}

/// Something the server should know about, besides media.
#[derive(Debug)]
pub enum PipelineNotice {
    /// A publisher session started. `tracks` is what the outputs carry from now on; a
    /// muxer built for other tracks should be rebuilt.
    SessionStarted {
        /// Publisher session generation.
        epoch: u32,
        /// The tracks the bridge outputs for this session.
        tracks: Tracks,
    },
    /// The video track cannot be bridged (VP8, or another non-H.264 codec); the session
    /// is bridged audio-only.
    VideoUnavailable(BridgeError),
    /// The audio track cannot be bridged (not Opus, or the codecs failed to open); the
    /// session is bridged video-only.
    AudioUnavailable(BridgeError),
    /// The publisher session ended; everything buffered has been emitted.
    SessionEnded {
        /// Publisher session generation.
        epoch: u32,
    },
    /// The room closed; the pipeline ignores further events.
    RoomClosed,
}

/// What one call produced.
#[derive(Debug, Default)]
pub struct PipelineOutput {
    /// Media units in the order they became ready (per track in timestamp order).
    pub units: Vec<MediaUnit>,
    /// The video needs a keyframe (loss, start, rebase): route to the PLI coalescer.
    pub keyframe_needed: bool,
    /// Session changes and problems.
    pub notices: Vec<PipelineNotice>,
}

impl IntoIterator for PipelineOutput {
    type Item = MediaUnit;
    type IntoIter = std::vec::IntoIter<MediaUnit>;

    fn into_iter(self) -> Self::IntoIter {
        self.units.into_iter()
    }
}

/// Counters, one per reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PipelineStats {
    /// Depacketizer counters, summed over sessions.
    pub video: DepacketizerStats,
    /// Transcoder counters.
    pub audio: TranscoderStats,
    /// Synchronisation counters.
    pub sync: SyncStats,
    /// Video access units emitted.
    pub video_units: u64,
    /// Audio frames emitted.
    pub audio_units: u64,
    /// Audio packets dropped as late or duplicate by the reorder buffer.
    pub audio_packets_dropped: u64,
    /// Audio packets given up on as lost (concealed by the transcoder).
    pub audio_packets_lost: u64,
    /// Packets of a track the session does not bridge (VP8, unexpected codec).
    pub packets_ignored: u64,
    /// Packets after their session ended.
    pub stale_packets: u64,
    /// Sessions started by a packet of a new epoch without `PublisherStarted` (the tap
    /// dropped the event).
    pub implicit_sessions: u64,
    /// Video frames dropped while waiting for a keyframe after a timestamp rebase.
    pub video_dropped_after_rebase: u64,
    /// Video timestamps nudged forward to stay strictly increasing.
    pub video_pts_clamped: u64,
}

/// One room's bridge pipeline; see the module doc.
pub struct RoomPipeline {
    config: PipelineConfig,
    anchor: ClockAnchor,
    epoch: Option<u32>,
    session_active: bool,
    closed: bool,
    video_codec: Option<Codec>,
    audio_codec: Option<Codec>,
    depacketizer: Option<H264Depacketizer>,
    audio_reorder: ReorderBuffer<Arc<SourcePacket>>,
    transcoder: Option<AudioTranscoder>,
    aac: Option<Arc<AacConfig>>,
    sync: TimelineSync,
    last_video_pts: Option<i64>,
    video_discontinuity_pending: bool,
    video_wait_keyframe: bool,
    frames: Vec<H264Frame>,
    audio_frames: Vec<AudioFrame>,
    video_stats_done: DepacketizerStats,
    stats: PipelineStats,
}

impl std::fmt::Debug for RoomPipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomPipeline")
            .field("epoch", &self.epoch)
            .field("session_active", &self.session_active)
            .field("video_codec", &self.video_codec)
            .field("audio_codec", &self.audio_codec)
            .finish_non_exhaustive()
    }
}

fn add_depacketizer_stats(total: &mut DepacketizerStats, more: &DepacketizerStats) {
    total.packets += more.packets;
    total.late_packets += more.late_packets;
    total.duplicate_packets += more.duplicate_packets;
    total.lost_packets += more.lost_packets;
    total.sequence_restarts += more.sequence_restarts;
    total.frames += more.frames;
    total.keyframes += more.keyframes;
    total.frames_dropped_corrupt += more.frames_dropped_corrupt;
    total.frames_dropped_waiting_for_idr += more.frames_dropped_waiting_for_idr;
    total.frames_dropped_no_parameter_sets += more.frames_dropped_no_parameter_sets;
    total.malformed_payloads += more.malformed_payloads;
    total.unsupported_payloads += more.unsupported_payloads;
    total.parameter_set_changes += more.parameter_set_changes;
    total.invalid_parameter_sets += more.invalid_parameter_sets;
    total.keyframe_requests += more.keyframe_requests;
}

impl RoomPipeline {
    /// A pipeline waiting for its first publisher session.
    pub fn new(config: PipelineConfig, anchor: ClockAnchor) -> Self {
        RoomPipeline {
            config,
            anchor,
            epoch: None,
            session_active: false,
            closed: false,
            video_codec: None,
            audio_codec: None,
            depacketizer: None,
            audio_reorder: ReorderBuffer::new(config.audio_reorder),
            transcoder: None,
            aac: None,
            sync: TimelineSync::new(),
            last_video_pts: None,
            video_discontinuity_pending: false,
            video_wait_keyframe: false,
            frames: Vec::new(),
            audio_frames: Vec::new(),
            video_stats_done: DepacketizerStats::default(),
            stats: PipelineStats::default(),
        }
    }

    /// The tracks the current (or last) session outputs.
    pub fn tracks(&self) -> Tracks {
        Tracks {
            video: self.video_codec == Some(Codec::H264),
            audio: if self.audio_codec == Some(Codec::Opus) {
                self.aac.clone()
            } else {
                None
            },
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> PipelineStats {
        let mut stats = self.stats;
        stats.video = self.video_stats_done;
        if let Some(depacketizer) = &self.depacketizer {
            add_depacketizer_stats(&mut stats.video, depacketizer.stats());
        }
        if let Some(transcoder) = &self.transcoder {
            stats.audio = *transcoder.stats();
        }
        stats.sync = *self.sync.stats();
        stats
    }

    /// Whether a publisher session is in progress.
    pub fn session_active(&self) -> bool {
        self.session_active
    }

    /// The wall-clock estimate of a timeline position, once the timeline has an origin.
    pub fn wallclock_of(&self, pts: i64) -> Option<SystemTime> {
        let origin = self.sync.origin()?;
        Some(self.wallclock_with_origin(origin, pts))
    }

    fn wallclock_with_origin(&self, origin: Instant, pts: i64) -> SystemTime {
        let anchor = self.anchor.wallclock;
        let base = if origin >= self.anchor.instant {
            anchor.checked_add(origin - self.anchor.instant)
        } else {
            anchor.checked_sub(self.anchor.instant - origin)
        }
        .unwrap_or(anchor);
        let nanos = u128::from(pts.unsigned_abs()) * 1_000_000_000 / u128::from(TIMESCALE);
        let offset = Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
        if pts >= 0 {
            base.checked_add(offset)
        } else {
            base.checked_sub(offset)
        }
        .unwrap_or(base)
    }

    /// Handles one tap event.
    pub fn push(&mut self, event: TapEvent, now: Instant) -> PipelineOutput {
        let mut out = PipelineOutput::default();
        if self.closed {
            return out;
        }
        match event {
            TapEvent::PublisherStarted {
                epoch,
                audio,
                video,
            } => {
                if self.session_active && self.epoch == Some(epoch) {
                    return out;
                }
                self.start_session(epoch, audio, video, now, &mut out);
            }
            TapEvent::Packet(packet) => self.on_packet(packet, now, &mut out),
            TapEvent::SenderReport {
                epoch,
                codec,
                rtp_time,
                wallclock,
            } => {
                if self.session_active && self.epoch == Some(epoch) {
                    self.sync
                        .on_sender_report(codec.kind(), rtp_time, wallclock);
                }
            }
            TapEvent::PublisherEnded { epoch } => {
                if self.session_active && self.epoch == Some(epoch) {
                    self.end_session(now, &mut out);
                }
            }
            TapEvent::RoomClosed => {
                if self.session_active {
                    self.end_session(now, &mut out);
                }
                self.closed = true;
                out.notices.push(PipelineNotice::RoomClosed);
            }
        }
        out
    }

    /// Releases media whose reorder wait expired; call at [`Self::poll_timeout`].
    pub fn poll(&mut self, now: Instant) -> PipelineOutput {
        let mut out = PipelineOutput::default();
        if self.session_active {
            if let Some(mut depacketizer) = self.depacketizer.take() {
                depacketizer.poll(now, &mut self.frames);
                out.keyframe_needed |= depacketizer.take_keyframe_request();
                self.depacketizer = Some(depacketizer);
                self.emit_video(&mut out);
            }
            self.drain_audio(now, &mut out);
        }
        out
    }

    /// When [`Self::poll`] has work without a new event.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let video = self
            .depacketizer
            .as_ref()
            .and_then(H264Depacketizer::poll_timeout);
        let audio = self.audio_reorder.poll_timeout();
        match (video, audio) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn start_session(
        &mut self,
        epoch: u32,
        audio: Option<Codec>,
        video: Option<Codec>,
        now: Instant,
        out: &mut PipelineOutput,
    ) {
        if self.session_active {
            self.end_session(now, out);
        }
        let had_video = self.last_video_pts.is_some();
        self.sync.start_epoch();
        self.epoch = Some(epoch);
        self.session_active = true;
        self.audio_reorder.reset();

        self.video_codec = None;
        match video {
            Some(Codec::H264) => {
                self.video_codec = Some(Codec::H264);
                self.depacketizer = Some(H264Depacketizer::new(self.config.video));
                self.video_discontinuity_pending = had_video;
                self.video_wait_keyframe = false;
            }
            Some(other) => out.notices.push(PipelineNotice::VideoUnavailable(
                BridgeError::UnsupportedVideoCodec(other),
            )),
            None => {}
        }

        self.audio_codec = None;
        match audio {
            Some(Codec::Opus) => {
                if self.transcoder.is_none() {
                    match AudioTranscoder::new(self.config.transcoder) {
                        Ok(transcoder) => {
                            self.aac = Some(Arc::clone(transcoder.aac_config()));
                            self.transcoder = Some(transcoder);
                        }
                        Err(err) => out.notices.push(PipelineNotice::AudioUnavailable(err)),
                    }
                }
                if self.transcoder.is_some() {
                    self.audio_codec = Some(Codec::Opus);
                }
            }
            Some(other) => out.notices.push(PipelineNotice::AudioUnavailable(
                BridgeError::UnsupportedAudioCodec(other),
            )),
            None => {}
        }
        if self.video_codec.is_some() {
            // The first keyframe is needed at once; the coalescer rate-limits.
            out.keyframe_needed = true;
        }
        out.notices.push(PipelineNotice::SessionStarted {
            epoch,
            tracks: self.tracks(),
        });
    }

    fn end_session(&mut self, now: Instant, out: &mut PipelineOutput) {
        if let Some(mut depacketizer) = self.depacketizer.take() {
            depacketizer.flush(now, &mut self.frames);
            add_depacketizer_stats(&mut self.video_stats_done, depacketizer.stats());
            self.emit_video(out);
        }
        self.audio_reorder.flush();
        self.drain_audio(now, out);
        if let Some(transcoder) = self.transcoder.as_mut() {
            transcoder.flush(&mut self.audio_frames);
        }
        self.emit_audio(out);
        self.session_active = false;
        if let Some(epoch) = self.epoch {
            out.notices.push(PipelineNotice::SessionEnded { epoch });
        }
    }

    fn on_packet(&mut self, packet: Arc<SourcePacket>, now: Instant, out: &mut PipelineOutput) {
        if self.epoch != Some(packet.epoch) {
            // The tap dropped this session's `PublisherStarted`: start it from the packet,
            // assuming the previous session's codecs (or just this packet's).
            self.stats.implicit_sessions += 1;
            let (mut audio, mut video) = (self.audio_codec, self.video_codec);
            if audio.is_none() && video.is_none() {
                match packet.kind() {
                    MediaKind::Audio => audio = Some(packet.codec),
                    MediaKind::Video => video = Some(packet.codec),
                }
            }
            self.start_session(packet.epoch, audio, video, now, out);
        } else if !self.session_active {
            self.stats.stale_packets += 1;
            return;
        }
        match packet.codec {
            Codec::H264 if self.video_codec == Some(Codec::H264) => {
                let Some(depacketizer) = self.depacketizer.as_mut() else {
                    return;
                };
                if depacketizer.push(packet, now, &mut self.frames).is_err() {
                    self.stats.packets_ignored += 1;
                }
                out.keyframe_needed |= depacketizer.take_keyframe_request();
                self.emit_video(out);
            }
            Codec::Opus if self.audio_codec == Some(Codec::Opus) => {
                match self.audio_reorder.push(packet.sequence_number, packet, now) {
                    PushOutcome::Accepted | PushOutcome::Restarted => {}
                    PushOutcome::Duplicate | PushOutcome::Late => {
                        self.stats.audio_packets_dropped += 1
                    }
                }
                self.drain_audio(now, out);
            }
            _ => self.stats.packets_ignored += 1,
        }
    }

    fn emit_video(&mut self, out: &mut PipelineOutput) {
        let mut frames = std::mem::take(&mut self.frames);
        for frame in frames.drain(..) {
            let mapped = self
                .sync
                .map(MediaKind::Video, frame.rtp_timestamp, frame.received_at);
            let break_here =
                mapped.rebased || (frame.params_changed && self.last_video_pts.is_some());
            if break_here {
                self.video_discontinuity_pending = true;
                if !frame.keyframe {
                    self.video_wait_keyframe = true;
                }
            }
            if self.video_wait_keyframe {
                if !frame.keyframe {
                    self.stats.video_dropped_after_rebase += 1;
                    out.keyframe_needed = true;
                    continue;
                }
                self.video_wait_keyframe = false;
            }
            let mut pts = mapped.pts;
            if let Some(last) = self.last_video_pts
                && pts <= last
            {
                pts = last + 1;
                self.stats.video_pts_clamped += 1;
            }
            self.last_video_pts = Some(pts);
            let discontinuity = std::mem::take(&mut self.video_discontinuity_pending);
            let wallclock = self.wallclock_of(pts).unwrap_or(self.anchor.wallclock);
            self.stats.video_units += 1;
            out.units.push(MediaUnit::Video(VideoAccessUnit {
                pts,
                dts: pts,
                keyframe: frame.keyframe,
                nalus: frame.nalus,
                params: frame.params,
                discontinuity,
                wallclock,
            }));
        }
        self.frames = frames;
    }

    fn drain_audio(&mut self, now: Instant, out: &mut PipelineOutput) {
        while let Some(released) = self.audio_reorder.pop(now) {
            match released {
                Reordered::Packet(packet) => {
                    let mapped =
                        self.sync
                            .map(MediaKind::Audio, packet.timestamp, packet.received_at);
                    let wallclock = self
                        .wallclock_of(mapped.pts)
                        .unwrap_or(self.anchor.wallclock);
                    if let Some(transcoder) = self.transcoder.as_mut() {
                        transcoder.push(
                            &packet.payload,
                            mapped.pts,
                            wallclock,
                            &mut self.audio_frames,
                        );
                    }
                }
                // The transcoder sees the timestamp gap and conceals it.
                Reordered::Lost(count) => self.stats.audio_packets_lost += count,
            }
        }
        self.emit_audio(out);
    }

    fn emit_audio(&mut self, out: &mut PipelineOutput) {
        self.stats.audio_units += self.audio_frames.len() as u64;
        out.units
            .extend(self.audio_frames.drain(..).map(MediaUnit::Audio));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio_transcoder::tests::opus_tone;
    use crate::media_unit::test_support::{PPS, SPS_320X180, SPS_640X360};
    use bytes::Bytes;

    struct Publisher {
        epoch: u32,
        video_seq: u16,
        audio_seq: u16,
        start: Instant,
        video_ts_base: u32,
        audio_ts_base: u32,
    }

    impl Publisher {
        fn packet(
            &self,
            codec: Codec,
            seq: u16,
            ts: u32,
            marker: bool,
            payload: Vec<u8>,
            at: Instant,
        ) -> TapEvent {
            TapEvent::Packet(Arc::new(SourcePacket {
                codec,
                epoch: self.epoch,
                sequence_number: seq,
                timestamp: ts,
                marker,
                keyframe: false,
                frame_start: false,
                video_orientation: None,
                received_at: at,
                payload: Bytes::from(payload),
            }))
        }

        /// Frame `index` at 30 fps: keyframes (STAP-A SPS/PPS + IDR) every `gop` frames.
        fn video_frame(&mut self, index: u32, gop: u32, sps: &[u8]) -> Vec<TapEvent> {
            let ts = self.video_ts_base.wrapping_add(index * 3000);
            let at = self.start + Duration::from_micros(u64::from(index) * 33_333);
            let mut events = Vec::new();
            if index.is_multiple_of(gop) {
                let mut stap = vec![0x78];
                for nalu in [sps, PPS] {
                    stap.extend_from_slice(&(nalu.len() as u16).to_be_bytes());
                    stap.extend_from_slice(nalu);
                }
                events.push(self.packet(Codec::H264, self.video_seq, ts, false, stap, at));
                self.video_seq = self.video_seq.wrapping_add(1);
                events.push(self.packet(
                    Codec::H264,
                    self.video_seq,
                    ts,
                    true,
                    vec![0x65, 0x88, 0x84, 0x21],
                    at,
                ));
            } else {
                events.push(self.packet(
                    Codec::H264,
                    self.video_seq,
                    ts,
                    true,
                    vec![0x41, 0x9a, 0x21],
                    at,
                ));
            }
            self.video_seq = self.video_seq.wrapping_add(1);
            events
        }

        fn audio_packet(&mut self, index: u32, payload: &[u8]) -> TapEvent {
            let ts = self.audio_ts_base.wrapping_add(index * 960);
            let at = self.start + Duration::from_millis(u64::from(index) * 20);
            let event = self.packet(Codec::Opus, self.audio_seq, ts, true, payload.to_vec(), at);
            self.audio_seq = self.audio_seq.wrapping_add(1);
            event
        }
    }

    fn anchor(start: Instant) -> ClockAnchor {
        ClockAnchor {
            instant: start,
            wallclock: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        }
    }

    fn run_session(
        pipeline: &mut RoomPipeline,
        publisher: &mut Publisher,
        seconds: u32,
        sps: &[u8],
        opus: &[Vec<u8>],
    ) -> (Vec<MediaUnit>, Vec<PipelineNotice>, bool) {
        let mut units = Vec::new();
        let mut notices = Vec::new();
        let mut keyframe_needed = false;
        let mut collect = |out: PipelineOutput| {
            keyframe_needed |= out.keyframe_needed;
            notices.extend(out.notices);
            units.extend(out.units);
        };
        collect(pipeline.push(
            TapEvent::PublisherStarted {
                epoch: publisher.epoch,
                audio: Some(Codec::Opus),
                video: Some(Codec::H264),
            },
            publisher.start,
        ));
        let mut audio_index = 0;
        for frame in 0..seconds * 30 {
            for event in publisher.video_frame(frame, 30, sps) {
                collect(pipeline.push(event, publisher.start));
            }
            while audio_index * 20 <= frame * 33 {
                let payload = &opus[audio_index as usize % opus.len()];
                let event = publisher.audio_packet(audio_index, payload);
                collect(pipeline.push(event, publisher.start));
                audio_index += 1;
            }
        }
        collect(pipeline.push(
            TapEvent::PublisherEnded {
                epoch: publisher.epoch,
            },
            publisher.start,
        ));
        (units, notices, keyframe_needed)
    }

    #[test]
    fn session_produces_aligned_monotonic_units() {
        let start = Instant::now();
        let mut pipeline = RoomPipeline::new(PipelineConfig::default(), anchor(start));
        let opus = opus_tone(10, opus::Channels::Stereo);
        let mut publisher = Publisher {
            epoch: 1,
            video_seq: 65_000,
            audio_seq: 7,
            start,
            video_ts_base: u32::MAX - 30_000,
            audio_ts_base: 1234,
        };
        let (units, notices, keyframe_needed) =
            run_session(&mut pipeline, &mut publisher, 3, SPS_640X360, &opus);
        assert!(keyframe_needed, "first keyframe requested at session start");
        let PipelineNotice::SessionStarted { epoch: 1, tracks } = &notices[0] else {
            panic!("{notices:?}")
        };
        assert!(tracks.video && tracks.audio.is_some());
        assert!(matches!(
            notices.last(),
            Some(PipelineNotice::SessionEnded { epoch: 1 })
        ));
        let videos: Vec<_> = units
            .iter()
            .filter_map(|u| {
                if let MediaUnit::Video(v) = u {
                    Some(v)
                } else {
                    None
                }
            })
            .collect();
        let audios: Vec<_> = units
            .iter()
            .filter_map(|u| {
                if let MediaUnit::Audio(a) = u {
                    Some(a)
                } else {
                    None
                }
            })
            .collect();
        assert_eq!(videos.len(), 90);
        assert_eq!(videos[0].pts, 0);
        assert!(videos[0].keyframe && !videos[0].discontinuity);
        assert!(
            videos.windows(2).all(|w| w[1].pts - w[0].pts == 3000),
            "RTP timestamp wrap handled"
        );
        assert_eq!(videos[30].params.width, 640);
        // 3 s of audio ≈ 140 AAC frames, contiguous, starting near video.
        assert!(audios.len() >= 135, "{}", audios.len());
        assert!(audios.windows(2).all(|w| w[1].pts - w[0].pts == 1920));
        assert!(audios[0].pts < 3000);
        assert_eq!(
            videos[30].wallclock,
            anchor(start).wallclock + Duration::from_secs(1)
        );
        let stats = pipeline.stats();
        assert_eq!(stats.video_units, 90);
        assert_eq!(stats.video.keyframes, 3);
        assert_eq!(stats.audio_units as usize, audios.len());
    }

    #[test]
    fn reconnect_keeps_timestamps_monotonic_and_flags_discontinuity() {
        let start = Instant::now();
        let mut pipeline = RoomPipeline::new(PipelineConfig::default(), anchor(start));
        let opus = opus_tone(10, opus::Channels::Stereo);
        let mut first = Publisher {
            epoch: 1,
            video_seq: 0,
            audio_seq: 0,
            start,
            video_ts_base: 0,
            audio_ts_base: 0,
        };
        let (units1, ..) = run_session(&mut pipeline, &mut first, 2, SPS_640X360, &opus);
        // Reconnect 3 s after the start with other random RTP bases and a smaller size.
        let mut second = Publisher {
            epoch: 2,
            video_seq: 40_000,
            audio_seq: 9_000,
            start: start + Duration::from_secs(3),
            video_ts_base: 123_456_789,
            audio_ts_base: 987_654,
        };
        let (units2, notices, _) = run_session(&mut pipeline, &mut second, 2, SPS_320X180, &opus);
        assert!(matches!(
            notices[0],
            PipelineNotice::SessionStarted { epoch: 2, .. }
        ));
        let last_video1 = units1
            .iter()
            .filter(|u| matches!(u, MediaUnit::Video(_)))
            .map(MediaUnit::pts)
            .max()
            .unwrap();
        let last_audio1 = units1
            .iter()
            .filter(|u| matches!(u, MediaUnit::Audio(_)))
            .map(MediaUnit::pts)
            .max()
            .unwrap();
        let first_video2 = units2
            .iter()
            .find_map(|u| {
                if let MediaUnit::Video(v) = u {
                    Some(v)
                } else {
                    None
                }
            })
            .unwrap();
        let first_audio2 = units2
            .iter()
            .find_map(|u| {
                if let MediaUnit::Audio(a) = u {
                    Some(a)
                } else {
                    None
                }
            })
            .unwrap();
        assert!(first_video2.discontinuity && first_video2.keyframe);
        assert_eq!(first_video2.params.width, 320);
        assert_eq!(first_video2.pts, 3 * 90_000, "placed by arrival time");
        assert!(first_video2.pts > last_video1);
        assert!(first_audio2.discontinuity);
        assert!(first_audio2.pts > last_audio1);
        assert_eq!(units2.iter().filter(|u| u.discontinuity()).count(), 2);
    }

    #[test]
    fn vp8_room_is_bridged_audio_only() {
        let start = Instant::now();
        let mut pipeline = RoomPipeline::new(PipelineConfig::default(), anchor(start));
        let out = pipeline.push(
            TapEvent::PublisherStarted {
                epoch: 5,
                audio: Some(Codec::Opus),
                video: Some(Codec::Vp8),
            },
            start,
        );
        assert!(matches!(
            out.notices[0],
            PipelineNotice::VideoUnavailable(BridgeError::UnsupportedVideoCodec(Codec::Vp8))
        ));
        let PipelineNotice::SessionStarted { tracks, .. } = &out.notices[1] else {
            panic!()
        };
        assert!(!tracks.video && tracks.audio.is_some());
        assert!(!out.keyframe_needed);
        let publisher = Publisher {
            epoch: 5,
            video_seq: 0,
            audio_seq: 0,
            start,
            video_ts_base: 0,
            audio_ts_base: 0,
        };
        let out = pipeline.push(
            publisher.packet(
                Codec::Vp8,
                0,
                0,
                true,
                vec![0x10, 0, 0, 0x9d, 0x01, 0x2a],
                start,
            ),
            start,
        );
        assert!(out.units.is_empty());
        assert_eq!(pipeline.stats().packets_ignored, 1);
    }

    #[test]
    fn video_only_and_implicit_session() {
        let start = Instant::now();
        let mut pipeline = RoomPipeline::new(PipelineConfig::default(), anchor(start));
        let mut publisher = Publisher {
            epoch: 9,
            video_seq: 0,
            audio_seq: 0,
            start,
            video_ts_base: 0,
            audio_ts_base: 0,
        };
        let mut units = Vec::new();
        let mut notices = Vec::new();
        for frame in 0..10 {
            for event in publisher.video_frame(frame, 30, SPS_640X360) {
                let out = pipeline.push(event, start);
                units.extend(out.units);
                notices.extend(out.notices);
            }
        }
        assert_eq!(pipeline.stats().implicit_sessions, 1);
        assert!(
            matches!(&notices[0], PipelineNotice::SessionStarted { epoch: 9, tracks } if tracks.video && tracks.audio.is_none())
        );
        assert_eq!(units.len(), 10);
        // Room closes: nothing more is accepted.
        let out = pipeline.push(TapEvent::RoomClosed, start);
        assert!(matches!(
            out.notices.last(),
            Some(PipelineNotice::RoomClosed)
        ));
        let events = publisher.video_frame(10, 30, SPS_640X360);
        assert!(
            events
                .into_iter()
                .all(|e| pipeline.push(e, start).units.is_empty())
        );
    }

    #[test]
    fn loss_requests_keyframe_and_poll_releases_gap() {
        let start = Instant::now();
        let mut pipeline = RoomPipeline::new(PipelineConfig::default(), anchor(start));
        let mut publisher = Publisher {
            epoch: 1,
            video_seq: 0,
            audio_seq: 0,
            start,
            video_ts_base: 0,
            audio_ts_base: 0,
        };
        pipeline.push(
            TapEvent::PublisherStarted {
                epoch: 1,
                audio: None,
                video: Some(Codec::H264),
            },
            start,
        );
        let mut units = 0;
        for frame in 0..5 {
            let events = publisher.video_frame(frame, 30, SPS_640X360);
            if frame == 2 {
                continue; // lost
            }
            for event in events {
                units += pipeline.push(event, start).units.len();
            }
        }
        assert_eq!(units, 2);
        let deadline = pipeline.poll_timeout().expect("a gap is waiting");
        assert!(deadline > start);
        let out = pipeline.poll(deadline);
        assert!(out.keyframe_needed);
        assert!(out.units.is_empty(), "P-frames after the loss are dropped");
        assert!(pipeline.poll_timeout().is_none());
        assert_eq!(pipeline.stats().video.lost_packets, 1);
    }
}
