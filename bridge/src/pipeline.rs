//! One room's bridge pipeline: [`TapEvent`]s in, [`MediaUnit`]s out.
//!
//! ```text
//! TapEvent::Packet ─┬─ H.264 ─► reorder + depacketize ─► sync ─► VideoAccessUnit ─┐
//!                   └─ Opus ──► reorder ─► sync ─► Opus→AAC transcoder ─► AudioFrame ┴─► muxers
//! TapEvent::Native ─► native_source (FLV tag bodies: H.264 and AAC passed through) ────┘
//! TapEvent::SenderReport ─► sync
//! TapEvent::PublisherStarted / PublisherEnded / RoomClosed ─► session bookkeeping
//! ```
//!
//! A session whose epoch delivers a [`TapEvent::Native`] frame (RTMP ingest) is a
//! *native session*: its outputs are built from those frames by
//! [`crate::native_source::NativeSource`] (the source's H.264, B-frames included, and its
//! AAC at its own sample rate), and the epoch's RTP packets (the SFU's copy for WebRTC
//! viewers) are ignored and counted. Its tracks are announced with
//! [`PipelineNotice::TracksChanged`] once the sequence headers are known (the
//! `SessionStarted` of the epoch only knew the RTP codecs). Native and RTP sessions share
//! the one timeline: each session starts after everything handed out before it.
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
use crate::media_unit::{
    AacConfig, AudioFrame, MediaUnit, TIMESCALE, Tracks, VideoAccessUnit, duration_to_ticks,
};
use crate::native_source::{NativeConfig, NativeSource, NativeStats, NativeTimeline};
use crate::reorder::{PushOutcome, ReorderBuffer, ReorderConfig, Reordered};
use crate::sync::{EPOCH_GAP, Mapped, SyncStats, TimelineSync};
use sfu::media::{Codec, MediaKind, NativeFrame, SourcePacket};
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
    /// The tracks of the running session changed: a native (RTMP) session announces the
    /// tracks its sequence headers declare (the stream's own AAC configuration, video
    /// only with an AVC sequence header) before its first unit, and again if they change.
    /// Muxers built for other tracks should be rebuilt, or follow the new configuration
    /// in band once they have written media.
    TracksChanged {
        /// Publisher session generation.
        epoch: u32,
        /// The tracks the bridge outputs from now on.
        tracks: Tracks,
    },
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
    /// Native (RTMP ingest) adapter counters, summed over sessions.
    pub native: NativeStats,
    /// Sessions that turned native (delivered `TapEvent::Native` frames).
    pub native_sessions: u64,
    /// RTP packets of native sessions, ignored (the SFU's copy for WebRTC viewers).
    pub native_packets_ignored: u64,
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
    /// The adapter of the current (or last) session, if it is native.
    native: Option<NativeSource>,
    native_stats_done: NativeStats,
    sync_stats_done: SyncStats,
    /// The instant that is timeline position 0 (the room's first packet or frame).
    origin: Option<Instant>,
    /// The largest timestamp handed out on any track (pts or dts).
    timeline_last: Option<i64>,
    /// Added to the RTP timeline of sessions after a native one (their `TimelineSync` is
    /// fresh and would start at 0 again).
    rtp_offset: i64,
    rtp_offset_pending: bool,
    native_since_sync: bool,
    /// The room has emitted audio.
    had_audio: bool,
    audio_first_in_session: bool,
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
            native: None,
            native_stats_done: NativeStats::default(),
            sync_stats_done: SyncStats::default(),
            origin: None,
            timeline_last: None,
            rtp_offset: 0,
            rtp_offset_pending: false,
            native_since_sync: false,
            had_audio: false,
            audio_first_in_session: false,
        }
    }

    /// The tracks the current (or last) session outputs.
    pub fn tracks(&self) -> Tracks {
        if let Some(native) = &self.native {
            return native.tracks();
        }
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
        let sync = self.sync.stats();
        stats.sync = self.sync_stats_done;
        stats.sync.corrections += sync.corrections;
        stats.sync.implausible_reports += sync.implausible_reports;
        stats.sync.rebases += sync.rebases;
        stats.native = self.native_stats_done;
        if let Some(native) = &self.native {
            stats.native.add(native.stats());
        }
        stats
    }

    /// Whether the current (or last) session is native (RTMP ingest frames).
    pub fn is_native(&self) -> bool {
        self.native.is_some()
    }

    /// Whether a publisher session is in progress.
    pub fn session_active(&self) -> bool {
        self.session_active
    }

    /// The wall-clock estimate of a timeline position, once the timeline has an origin.
    pub fn wallclock_of(&self, pts: i64) -> Option<SystemTime> {
        let origin = self.origin.or(self.sync.origin())?;
        Some(wallclock_at(&self.anchor, origin, pts))
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
            TapEvent::Native { epoch, frame } => self.on_native(epoch, &frame, now, &mut out),
            TapEvent::SenderReport {
                epoch,
                codec,
                rtp_time,
                wallclock,
            } => {
                if self.session_active && self.epoch == Some(epoch) && self.native.is_none() {
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
        if let Some(native) = self.native.take() {
            self.native_stats_done.add(native.stats());
        }
        if std::mem::take(&mut self.native_since_sync) {
            // Native sessions placed units this sync never saw: start a fresh one, offset
            // to after them at its first packet.
            let done = *self.sync.stats();
            self.sync_stats_done.corrections += done.corrections;
            self.sync_stats_done.implausible_reports += done.implausible_reports;
            self.sync_stats_done.rebases += done.rebases;
            self.sync = TimelineSync::new();
            self.rtp_offset_pending = true;
        } else {
            self.sync.start_epoch();
        }
        self.epoch = Some(epoch);
        self.session_active = true;
        self.audio_first_in_session = true;
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
        // A native session buffers nothing.
        self.flush_rtp(now, out);
        self.session_active = false;
        if let Some(epoch) = self.epoch {
            out.notices.push(PipelineNotice::SessionEnded { epoch });
        }
    }

    /// Emits everything the RTP path still holds.
    fn flush_rtp(&mut self, now: Instant, out: &mut PipelineOutput) {
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
    }

    fn on_native(
        &mut self,
        epoch: u32,
        frame: &NativeFrame,
        now: Instant,
        out: &mut PipelineOutput,
    ) {
        if self.epoch != Some(epoch) {
            // The tap dropped this session's `PublisherStarted`.
            self.stats.implicit_sessions += 1;
            let (mut audio, mut video) = (self.audio_codec, self.video_codec);
            if audio.is_none() && video.is_none() {
                match frame.kind {
                    MediaKind::Audio => audio = Some(Codec::Opus),
                    MediaKind::Video => video = Some(Codec::H264),
                }
            }
            self.start_session(epoch, audio, video, now, out);
        } else if !self.session_active {
            self.stats.stale_packets += 1;
            return;
        }
        if self.native.is_none() {
            // Whatever the RTP path took of this epoch (the tap lost the first native
            // frames) goes out first; from now on the epoch's packets are ignored.
            self.flush_rtp(now, out);
            self.native_since_sync = true;
            self.stats.native_sessions += 1;
            let floor = self.timeline_last.map_or(0, |last| last + EPOCH_GAP);
            let config = NativeConfig {
                max_frame_bytes: self.config.video.max_frame_bytes,
                max_nalus_per_frame: self.config.video.max_nalus_per_frame,
            };
            self.native = Some(NativeSource::new(
                config,
                floor,
                self.last_video_pts.is_some(),
                self.had_audio,
            ));
        }
        let origin = *self.origin.get_or_insert(frame.received_at);
        let timeline = NativeTimeline {
            anchor: self.anchor,
            origin,
        };
        let Some(native) = self.native.as_mut() else {
            return;
        };
        let mut units = Vec::new();
        native.push(frame, &timeline, &mut units);
        while let Some((kind, err)) = native.take_unavailable() {
            out.notices.push(match kind {
                MediaKind::Video => PipelineNotice::VideoUnavailable(err),
                MediaKind::Audio => PipelineNotice::AudioUnavailable(err),
            });
        }
        if let Some(tracks) = native.take_tracks_change() {
            out.notices
                .push(PipelineNotice::TracksChanged { epoch, tracks });
        }
        for unit in &units {
            let last = match unit {
                MediaUnit::Video(au) => {
                    self.stats.video_units += 1;
                    let top = au.pts.max(au.dts);
                    self.last_video_pts = Some(self.last_video_pts.map_or(top, |l| l.max(top)));
                    top
                }
                MediaUnit::Audio(frame) => {
                    self.stats.audio_units += 1;
                    self.had_audio = true;
                    self.audio_first_in_session = false;
                    frame.pts
                }
            };
            self.note_timeline(last);
        }
        out.units.extend(units);
    }

    fn note_timeline(&mut self, ts: i64) {
        self.timeline_last = Some(self.timeline_last.map_or(ts, |last| last.max(ts)));
    }

    /// Maps an RTP timestamp onto the room timeline (the sync, plus the offset of an RTP
    /// session that follows a native one).
    fn map_rtp(&mut self, kind: MediaKind, rtp_timestamp: u32, arrival: Instant) -> Mapped {
        let mut mapped = self.sync.map(kind, rtp_timestamp, arrival);
        let sync_origin = self.sync.origin().unwrap_or(arrival);
        let origin = *self.origin.get_or_insert(sync_origin);
        if std::mem::take(&mut self.rtp_offset_pending) {
            // The fresh sync put this first packet at 0 (its own origin): move its session
            // to its arrival time on the room timeline, after everything handed out.
            let arrival_offset = duration_to_ticks(sync_origin.saturating_duration_since(origin));
            let floor = self.timeline_last.map_or(0, |last| last + EPOCH_GAP);
            self.rtp_offset = arrival_offset.max(floor);
        }
        mapped.pts += self.rtp_offset;
        mapped
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
        if self.native.is_some() {
            self.stats.native_packets_ignored += 1;
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
            let mapped = self.map_rtp(MediaKind::Video, frame.rtp_timestamp, frame.received_at);
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
            self.note_timeline(pts);
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
                        self.map_rtp(MediaKind::Audio, packet.timestamp, packet.received_at);
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
        if let Some(first) = self.audio_frames.first_mut()
            && std::mem::take(&mut self.audio_first_in_session)
        {
            // The transcoder only knows its own output; a session after a native one
            // also starts a new audio timeline.
            first.discontinuity |= self.had_audio;
        }
        if let Some(last) = self.audio_frames.iter().map(|f| f.pts).max() {
            self.had_audio = true;
            self.note_timeline(last);
        }
        out.units
            .extend(self.audio_frames.drain(..).map(MediaUnit::Audio));
    }
}

/// The wall-clock estimate of timeline position `pts`, given the instant that is
/// position 0 and the room's clock anchor.
pub(crate) fn wallclock_at(anchor: &ClockAnchor, origin: Instant, pts: i64) -> SystemTime {
    let wall = anchor.wallclock;
    let base = if origin >= anchor.instant {
        wall.checked_add(origin - anchor.instant)
    } else {
        wall.checked_sub(anchor.instant - origin)
    }
    .unwrap_or(wall);
    let nanos = u128::from(pts.unsigned_abs()) * 1_000_000_000 / u128::from(TIMESCALE);
    let offset = Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
    if pts >= 0 {
        base.checked_add(offset)
    } else {
        base.checked_sub(offset)
    }
    .unwrap_or(base)
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
    fn native_session_announces_its_tracks_and_ignores_its_rtp_copy() {
        let start = Instant::now();
        let mut pipeline = RoomPipeline::new(PipelineConfig::default(), anchor(start));
        let out = pipeline.push(
            TapEvent::PublisherStarted {
                epoch: 4,
                audio: Some(Codec::Opus),
                video: Some(Codec::H264),
            },
            start,
        );
        assert!(matches!(
            out.notices[0],
            PipelineNotice::SessionStarted { epoch: 4, .. }
        ));
        let native = |kind, ms: u32, body: Vec<u8>| TapEvent::Native {
            epoch: 4,
            frame: Arc::new(NativeFrame {
                kind,
                timestamp_ms: ms,
                body: Bytes::from(body),
                received_at: start + Duration::from_millis(u64::from(ms)),
            }),
        };
        let mut header = vec![0x17, 0, 0, 0, 0, 1, 0x42, 0xc0, 0x1e, 0xFF, 0xE1];
        header.extend_from_slice(&(SPS_640X360.len() as u16).to_be_bytes());
        header.extend_from_slice(SPS_640X360);
        header.push(1);
        header.extend_from_slice(&(PPS.len() as u16).to_be_bytes());
        header.extend_from_slice(PPS);
        assert!(
            pipeline
                .push(native(MediaKind::Video, 0, header), start)
                .notices
                .is_empty()
        );
        let out = pipeline.push(
            native(MediaKind::Audio, 0, vec![0xAF, 0, 0x12, 0x10]),
            start,
        );
        assert!(out.units.is_empty() && out.notices.is_empty());
        let idr = vec![0x17, 1, 0, 0, 0x21, 0, 0, 0, 4, 0x65, 0x88, 0x84, 0x21];
        let out = pipeline.push(native(MediaKind::Video, 0, idr), start);
        let PipelineNotice::TracksChanged { epoch: 4, tracks } = &out.notices[0] else {
            panic!("{:?}", out.notices)
        };
        assert!(tracks.video);
        assert_eq!(tracks.audio.as_ref().unwrap().sample_rate, 44_100);
        assert_eq!(pipeline.tracks(), *tracks);
        let MediaUnit::Video(au) = &out.units[0] else {
            panic!()
        };
        assert_eq!((au.dts, au.pts), (0, 33 * 90), "composition time kept");
        // The SFU's RTP copy of the same epoch is ignored.
        let mut publisher = Publisher {
            epoch: 4,
            video_seq: 0,
            audio_seq: 0,
            start,
            video_ts_base: 0,
            audio_ts_base: 0,
        };
        for event in publisher.video_frame(0, 30, SPS_640X360) {
            assert!(pipeline.push(event, start).units.is_empty());
        }
        let stats = pipeline.stats();
        assert_eq!(stats.native_packets_ignored, 2);
        assert_eq!((stats.native_sessions, stats.video_units), (1, 1));
        assert!(pipeline.is_native());
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
