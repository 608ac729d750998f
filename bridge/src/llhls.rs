//! Low-latency HLS (fMP4/CMAF parts) with a sans-IO blocking-reload model.
//!
//! [`LlHlsMuxer`] cuts media units into parts of about [`LlHlsConfig::part_target`]
//! (a `moof`+`mdat` each, see [`crate::fmp4`]) and segments of about
//! [`LlHlsConfig::segment_target`] starting on IDRs, and serves:
//! - `init{N}.mp4` — the init segment (a new one after a resolution change);
//! - `part{MSN}.{P}.mp4` — parts (`INDEPENDENT=YES` when a part starts with an IDR);
//! - `seg{MSN}.mp4` — complete segments (its parts, concatenated);
//! - the playlist, written by hand (no playlist crate knows these tags):
//!   `EXT-X-VERSION:9`, `EXT-X-TARGETDURATION`,
//!   `EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=…` (3 × part target),
//!   `EXT-X-PART-INF`, `EXT-X-MAP`, `EXT-X-PROGRAM-DATE-TIME`, `EXT-X-PART`,
//!   `EXT-X-PRELOAD-HINT`, `EXT-X-DISCONTINUITY`.
//!
//! Blocking playlist reload (`_HLS_msn`/`_HLS_part`) is the server's job, with a
//! future/notify; this type gives it what to wait on: [`LlHlsMuxer::version`] increases
//! whenever the playlist changes, [`LlHlsMuxer::playlist_ready_for`] says whether a
//! request can be answered now, and [`LlHlsMuxer::request_too_far_ahead`] says whether
//! it should be refused with 400 (RFC 8216bis §6.2.5.2).

use crate::fmp4::{AUDIO_TRACK_ID, TrackRun, VIDEO_TRACK_ID, init_segment, write_fragment};
use crate::hls::format_program_date_time;
use crate::media_unit::{
    AAC_FRAME_SAMPLES, AacConfig, AudioFrame, H264Params, MediaUnit, TIMESCALE, Tracks,
    VideoAccessUnit, duration_to_ticks,
};
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// LL-HLS settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LlHlsConfig {
    /// Part target duration (`PART-TARGET`); parts are cut so they do not exceed it.
    pub part_target: Duration,
    /// Cut a segment at the first IDR after this much media.
    pub segment_target: Duration,
    /// Cut a segment without an IDR only after this much (keyframes stopped coming);
    /// rounded up, it is the playlist's `EXT-X-TARGETDURATION`. Leave room above
    /// `segment_target` for the keyframe that was asked for to arrive (PLIs are
    /// coalesced to one a second), or most segments start without an IDR.
    pub max_segment: Duration,
    /// Complete segments listed in the playlist.
    pub window: usize,
    /// Complete segments kept servable after they leave the playlist.
    pub retain_after_window: usize,
    /// Ask for a keyframe this long before the segment target is reached.
    pub keyframe_request_lead: Duration,
}

impl Default for LlHlsConfig {
    fn default() -> Self {
        LlHlsConfig {
            part_target: Duration::from_millis(200),
            segment_target: Duration::from_secs(2),
            max_segment: Duration::from_secs(3),
            window: 6,
            retain_after_window: 2,
            keyframe_request_lead: Duration::from_millis(300),
        }
    }
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LlHlsStats {
    /// Parts written.
    pub parts: u64,
    /// Segments completed.
    pub segments: u64,
    /// Segments cut without an IDR because keyframes stopped coming.
    pub forced_cuts: u64,
    /// Units dropped before the first keyframe.
    pub dropped_before_start: u64,
    /// Units of a track the muxer was not built for.
    pub dropped_unconfigured: u64,
    /// Fragments that failed to encode.
    pub fragment_errors: u64,
    /// Audio frames dropped between an audio configuration change and the segment (with
    /// a new init segment) that can carry them.
    pub dropped_audio_config_change: u64,
}

#[derive(Debug, Clone)]
struct Part {
    data: Bytes,
    duration: i64,
    independent: bool,
}

#[derive(Debug, Clone)]
struct Segment {
    msn: u64,
    parts: Vec<Part>,
    start_pts: i64,
    duration: i64,
    discontinuity: bool,
    init_id: u32,
    program_date_time: SystemTime,
    /// The concatenated parts, once complete.
    data: Option<Bytes>,
}

/// LL-HLS muxer and part/segment store; see the module doc.
pub struct LlHlsMuxer {
    config: LlHlsConfig,
    tracks: Tracks,
    part_target: i64,
    segment_target: i64,
    target_duration_secs: u64,
    lead: i64,
    inits: VecDeque<(u32, Bytes)>,
    next_init_id: u32,
    params: Option<Arc<H264Params>>,
    pending_audio_config: Option<Arc<AacConfig>>,
    segments: VecDeque<Segment>,
    current: Option<Segment>,
    next_msn: u64,
    discontinuity_sequence: u64,
    video: TrackRun,
    audio: TrackRun,
    part_start: Option<i64>,
    part_independent: bool,
    last_video_dts: Option<i64>,
    frame_interval: i64,
    pending_discontinuity: bool,
    fragment_sequence: u32,
    version: u64,
    playlist: Option<Bytes>,
    ended: bool,
    fragment_buf: BytesMut,
    stats: LlHlsStats,
}

impl std::fmt::Debug for LlHlsMuxer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlHlsMuxer")
            .field("tracks", &self.tracks)
            .field("next_msn", &self.next_msn)
            .field("version", &self.version)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl LlHlsMuxer {
    /// A muxer for `tracks`.
    pub fn new(tracks: Tracks, config: LlHlsConfig) -> Self {
        let sample_rate = tracks.audio.as_ref().map_or(48_000, |a| a.sample_rate);
        let segment_target = duration_to_ticks(config.segment_target).max(1);
        LlHlsMuxer {
            config,
            tracks,
            part_target: duration_to_ticks(config.part_target).max(1),
            segment_target,
            target_duration_secs: config
                .segment_target
                .max(config.max_segment)
                .as_secs_f64()
                .ceil()
                .max(1.0) as u64,
            lead: duration_to_ticks(config.keyframe_request_lead),
            inits: VecDeque::new(),
            next_init_id: 0,
            params: None,
            pending_audio_config: None,
            segments: VecDeque::new(),
            current: None,
            next_msn: 0,
            discontinuity_sequence: 0,
            video: TrackRun::new(VIDEO_TRACK_ID, TIMESCALE, 3000),
            audio: TrackRun::new(AUDIO_TRACK_ID, sample_rate, AAC_FRAME_SAMPLES),
            part_start: None,
            part_independent: false,
            last_video_dts: None,
            frame_interval: 3000,
            pending_discontinuity: false,
            fragment_sequence: 1,
            version: 0,
            playlist: None,
            ended: false,
            fragment_buf: BytesMut::new(),
            stats: LlHlsStats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> &LlHlsStats {
        &self.stats
    }

    /// Increases whenever the playlist changes (a part, a segment, the end). The server
    /// wakes blocked reloads when it changes and re-checks
    /// [`Self::playlist_ready_for`].
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The playlist, once the first part exists.
    pub fn playlist(&self) -> Option<Bytes> {
        self.playlist.clone()
    }

    /// `init{id}.mp4`, while a retained segment refers to it.
    pub fn init(&self, id: u32) -> Option<Bytes> {
        self.inits
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, data)| data.clone())
    }

    /// The id of the newest init segment.
    pub fn current_init_id(&self) -> Option<u32> {
        self.inits.back().map(|(id, _)| *id)
    }

    /// `part{msn}.{index}.mp4`, while retained.
    pub fn part(&self, msn: u64, index: u32) -> Option<Bytes> {
        self.find_segment(msn)?
            .parts
            .get(index as usize)
            .map(|p| p.data.clone())
    }

    /// `seg{msn}.mp4`, once complete and while retained.
    pub fn segment(&self, msn: u64) -> Option<Bytes> {
        self.find_segment(msn)?.data.clone()
    }

    fn find_segment(&self, msn: u64) -> Option<&Segment> {
        if let Some(current) = self.current.as_ref().filter(|s| s.msn == msn) {
            return Some(current);
        }
        let first = self.segments.front()?.msn;
        self.segments
            .get(usize::try_from(msn.checked_sub(first)?).ok()?)
    }

    /// The in-progress position: the MSN of the open segment and how many of its parts
    /// are complete (`None` before the first segment opens).
    pub fn last_part(&self) -> Option<(u64, usize)> {
        self.current.as_ref().map(|s| (s.msn, s.parts.len()))
    }

    /// Whether a blocking reload for `_HLS_msn=msn` (and `_HLS_part=part`) can be
    /// answered now: the segment is complete, or (with `part`) that part of it exists.
    /// Always true once the stream ended.
    pub fn playlist_ready_for(&self, msn: u64, part: Option<u32>) -> bool {
        if self.ended {
            return true;
        }
        if self.segments.back().is_some_and(|last| msn <= last.msn) {
            return true;
        }
        match (part, &self.current) {
            (Some(part), Some(current)) => {
                current.msn == msn && (part as usize) < current.parts.len()
            }
            _ => false,
        }
    }

    /// Whether a blocking reload asks for something so far ahead that the server should
    /// answer 400 at once: an MSN more than two past the last segment, or a part more
    /// than the Advance Part Limit (3 / part target in seconds, when under a second)
    /// past the last complete part.
    pub fn request_too_far_ahead(&self, msn: u64, part: Option<u32>) -> bool {
        let (last_msn, done) = self.last_part().unwrap_or((self.next_msn, 0));
        if msn > last_msn + 2 {
            return true;
        }
        let Some(part) = part else { return false };
        let part_secs = self.config.part_target.as_secs_f64().max(0.001);
        let limit = if part_secs < 1.0 {
            (3.0 / part_secs).floor() as i64
        } else {
            3
        };
        let parts_per_segment = (self.segment_target + self.part_target - 1) / self.part_target;
        let ahead =
            (msn as i64 - last_msn as i64) * parts_per_segment + i64::from(part) - done as i64;
        ahead > limit
    }

    /// Whether to ask for a keyframe now (segment nearly at its target).
    pub fn keyframe_wanted(&self) -> bool {
        match (&self.current, self.last_video_dts) {
            (Some(segment), Some(last)) if self.tracks.video => {
                last - segment.start_pts >= self.segment_target - self.lead
            }
            _ => false,
        }
    }

    /// The tracks' configuration changed (a new session with another AAC sample rate,
    /// announced before its units): the next segment starts with an init segment for it.
    /// Without this call the muxer notices the change in band at the first frame with the
    /// new configuration, and drops audio until the next IDR can start such a segment.
    /// A change of which tracks are present needs a new muxer.
    pub fn update_tracks(&mut self, tracks: &Tracks) {
        if let (Some(current), Some(new)) = (&self.tracks.audio, &tracks.audio)
            && !Arc::ptr_eq(current, new)
            && **current != **new
        {
            if self.current.is_none() {
                self.set_audio_config(new);
            } else {
                self.pending_audio_config = Some(Arc::clone(new));
            }
        }
    }

    /// Adds one unit.
    pub fn write(&mut self, unit: &MediaUnit) {
        match unit {
            MediaUnit::Video(au) => self.write_video(au),
            MediaUnit::Audio(frame) => self.write_audio(frame),
        }
    }

    /// End of stream: closes the open part and segment and ends the playlist
    /// (`EXT-X-ENDLIST`).
    pub fn finish(&mut self) {
        let next = self.last_video_dts.map(|dts| dts + self.frame_interval);
        self.close_part(next);
        self.close_segment();
        self.ended = true;
        self.render();
    }

    fn write_video(&mut self, au: &VideoAccessUnit) {
        if !self.tracks.video {
            self.stats.dropped_unconfigured += 1;
            return;
        }
        if au.discontinuity {
            self.pending_discontinuity = true;
        }
        let params_changed = self
            .params
            .as_ref()
            .is_none_or(|p| !Arc::ptr_eq(p, &au.params) && **p != *au.params);
        if let Some(last) = self.last_video_dts
            && au.dts > last
        {
            self.frame_interval = au.dts - last;
        }
        match &self.current {
            None => {
                if !au.keyframe {
                    self.stats.dropped_before_start += 1;
                    return;
                }
                if params_changed && !self.set_params(&au.params) {
                    return;
                }
                self.open_segment(au.dts, au.wallclock);
            }
            Some(segment) => {
                let elapsed = au.dts - segment.start_pts;
                let limit = self.target_duration_secs as i64 * i64::from(TIMESCALE);
                let new_segment = au.keyframe
                    && (elapsed >= self.segment_target
                        || self.pending_discontinuity
                        || params_changed);
                let forced = !au.keyframe
                    && !self.pending_discontinuity
                    && elapsed + self.frame_interval > limit;
                let audio_change = au.keyframe && self.pending_audio_config.is_some();
                if new_segment || forced || audio_change {
                    if forced {
                        self.stats.forced_cuts += 1;
                    }
                    self.close_part(Some(au.dts));
                    self.close_segment();
                    if audio_change && let Some(config) = self.pending_audio_config.take() {
                        self.set_audio_config(&config);
                        if !params_changed {
                            // Same video, new audio: a new init all the same.
                            let Some(params) = self.params.clone() else {
                                return;
                            };
                            if !self.set_params(&params) {
                                return;
                            }
                            self.pending_discontinuity = true;
                            self.open_segment(au.dts, au.wallclock);
                            self.start_video_sample(au);
                            return;
                        }
                    }
                    if params_changed && au.keyframe && !self.set_params(&au.params) {
                        return;
                    }
                    self.open_segment(au.dts, au.wallclock);
                } else if let Some(start) = self.part_start
                    && (au.keyframe || au.dts + self.frame_interval - start > self.part_target)
                {
                    self.close_part(Some(au.dts));
                }
            }
        }
        self.start_video_sample(au);
    }

    fn start_video_sample(&mut self, au: &VideoAccessUnit) {
        if self.part_start.is_none() {
            self.part_start = Some(au.dts);
            self.part_independent = au.keyframe;
        }
        self.video
            .push_video(au.dts, au.pts - au.dts, au.keyframe, &au.nalus);
        self.last_video_dts = Some(au.dts);
    }

    fn write_audio(&mut self, frame: &AudioFrame) {
        let Some(config) = self.tracks.audio.as_ref() else {
            self.stats.dropped_unconfigured += 1;
            return;
        };
        let config_changed = !Arc::ptr_eq(config, &frame.config) && **config != *frame.config;
        if self.tracks.video {
            if config_changed {
                // A new audio configuration needs a new init segment, which starts at the
                // next segment (an IDR): until then its frames cannot be carried.
                if self.current.is_none() {
                    self.set_audio_config(&frame.config);
                } else {
                    self.pending_audio_config = Some(Arc::clone(&frame.config));
                    self.stats.dropped_audio_config_change += 1;
                    return;
                }
            }
            if self.current.is_none() {
                self.stats.dropped_before_start += 1;
                return;
            }
            self.audio.push_audio(frame.pts, &frame.data);
            return;
        }
        if config_changed {
            // Audio-only: close the segment here and start one with a new init.
            self.close_part(Some(frame.pts));
            self.close_segment();
            self.set_audio_config(&frame.config);
            if !self.set_params_audio_only() {
                return;
            }
            self.pending_discontinuity = true;
        }
        // Audio-only: audio drives parts and segments, every part is independent.
        if frame.discontinuity {
            self.pending_discontinuity = true;
        }
        match &self.current {
            None => {
                if self.inits.is_empty() && !self.set_params_audio_only() {
                    return;
                }
                self.open_segment(frame.pts, frame.wallclock);
            }
            Some(segment) => {
                if frame.pts - segment.start_pts >= self.segment_target
                    || self.pending_discontinuity
                {
                    self.close_part(Some(frame.pts));
                    self.close_segment();
                    self.open_segment(frame.pts, frame.wallclock);
                } else if let Some(start) = self.part_start
                    && frame.pts + frame.duration - start > self.part_target
                {
                    self.close_part(Some(frame.pts));
                }
            }
        }
        if self.part_start.is_none() {
            self.part_start = Some(frame.pts);
            self.part_independent = true;
        }
        self.audio.push_audio(frame.pts, &frame.data);
    }

    /// Switches the audio track to `config` (the next init segment carries it).
    fn set_audio_config(&mut self, config: &Arc<AacConfig>) {
        self.tracks.audio = Some(Arc::clone(config));
        self.audio = TrackRun::new(AUDIO_TRACK_ID, config.sample_rate, AAC_FRAME_SAMPLES);
        self.pending_audio_config = None;
    }

    /// New video parameters: a new init segment. Returns false if it failed to encode.
    fn set_params(&mut self, params: &Arc<H264Params>) -> bool {
        match init_segment(Some(params), self.tracks.audio.as_deref()) {
            Ok(init) => {
                if self.params.is_some() {
                    self.pending_discontinuity = true;
                }
                self.params = Some(Arc::clone(params));
                self.inits.push_back((self.next_init_id, init));
                self.next_init_id += 1;
                true
            }
            Err(_) => {
                self.stats.fragment_errors += 1;
                false
            }
        }
    }

    fn set_params_audio_only(&mut self) -> bool {
        match init_segment(None, self.tracks.audio.as_deref()) {
            Ok(init) => {
                self.inits.push_back((self.next_init_id, init));
                self.next_init_id += 1;
                true
            }
            Err(_) => {
                self.stats.fragment_errors += 1;
                false
            }
        }
    }

    fn open_segment(&mut self, start_pts: i64, program_date_time: SystemTime) {
        let discontinuity = std::mem::take(&mut self.pending_discontinuity) && self.next_msn > 0;
        self.current = Some(Segment {
            msn: self.next_msn,
            parts: Vec::new(),
            start_pts,
            duration: 0,
            discontinuity,
            init_id: self.current_init_id().unwrap_or(0),
            program_date_time,
            data: None,
        });
        self.next_msn += 1;
    }

    fn close_part(&mut self, next_video_time: Option<i64>) {
        if self.video.is_empty() && self.audio.is_empty() {
            return;
        }
        let Some(segment) = self.current.as_mut() else {
            return;
        };
        let duration = if !self.video.is_empty() {
            self.video.duration_ticks(next_video_time)
        } else {
            self.audio.duration_ticks(if self.tracks.video {
                None
            } else {
                next_video_time
            })
        };
        let audio_next = if self.tracks.video {
            None
        } else {
            next_video_time
        };
        let result = write_fragment(
            self.fragment_sequence,
            &mut [
                (&mut self.video, next_video_time),
                (&mut self.audio, audio_next),
            ],
            &mut self.fragment_buf,
        );
        self.fragment_sequence = self.fragment_sequence.wrapping_add(1);
        self.part_start = None;
        match result {
            Ok(()) => {
                let data = self.fragment_buf.split().freeze();
                segment.parts.push(Part {
                    data,
                    duration,
                    independent: self.part_independent,
                });
                segment.duration += duration;
                self.stats.parts += 1;
                self.render();
            }
            Err(_) => {
                self.fragment_buf.clear();
                self.stats.fragment_errors += 1;
            }
        }
    }

    fn close_segment(&mut self) {
        let Some(mut segment) = self.current.take() else {
            return;
        };
        if segment.parts.is_empty() {
            // Nothing was written: give the number back.
            self.next_msn = segment.msn;
            self.pending_discontinuity |= segment.discontinuity;
            return;
        }
        let total: usize = segment.parts.iter().map(|p| p.data.len()).sum();
        let mut data = BytesMut::with_capacity(total);
        for part in &segment.parts {
            data.extend_from_slice(&part.data);
        }
        let data = data.freeze();
        // Parts become views into the segment: no second copy is kept.
        let mut offset = 0;
        for part in &mut segment.parts {
            let len = part.data.len();
            part.data = data.slice(offset..offset + len);
            offset += len;
        }
        segment.data = Some(data);
        self.stats.segments += 1;
        self.segments.push_back(segment);
        while self.segments.len() > self.config.window + self.config.retain_after_window {
            if let Some(dropped) = self.segments.pop_front()
                && dropped.discontinuity
            {
                self.discontinuity_sequence += 1;
            }
        }
        // Keep only the init segments still referenced (and the newest).
        let oldest_init = self.segments.front().map_or(u32::MAX, |s| s.init_id);
        let newest = self.current_init_id();
        self.inits
            .retain(|(id, _)| *id >= oldest_init || Some(*id) == newest);
        self.render();
    }

    fn render(&mut self) {
        let listed_start = self.segments.len().saturating_sub(self.config.window);
        let listed: Vec<&Segment> = self
            .segments
            .iter()
            .skip(listed_start)
            .chain(self.current.iter())
            .collect();
        if listed.iter().all(|s| s.parts.is_empty()) {
            if self.ended {
                self.version += 1;
            }
            return;
        }
        let dropped_discontinuities = self
            .segments
            .iter()
            .take(listed_start)
            .filter(|s| s.discontinuity)
            .count() as u64;
        let part_target = self.part_target as f64 / f64::from(TIMESCALE);
        let mut text = String::with_capacity(
            512 + 64 * listed.iter().map(|s| s.parts.len() + 3).sum::<usize>(),
        );
        text.push_str("#EXTM3U\n#EXT-X-VERSION:9\n");
        let _ = writeln!(text, "#EXT-X-TARGETDURATION:{}", self.target_duration_secs);
        let _ = writeln!(
            text,
            "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={:.3}",
            3.0 * part_target
        );
        let _ = writeln!(text, "#EXT-X-PART-INF:PART-TARGET={part_target:.3}");
        let _ = writeln!(
            text,
            "#EXT-X-MEDIA-SEQUENCE:{}",
            listed.first().map_or(0, |s| s.msn)
        );
        let discontinuity_sequence = self.discontinuity_sequence + dropped_discontinuities;
        if discontinuity_sequence > 0 {
            let _ = writeln!(
                text,
                "#EXT-X-DISCONTINUITY-SEQUENCE:{discontinuity_sequence}"
            );
        }
        // Parts are listed for segments ending within three target durations of the end.
        let total: i64 = listed.iter().map(|s| s.duration).sum();
        let horizon = 3 * self.target_duration_secs as i64 * i64::from(TIMESCALE);
        let mut elapsed = 0;
        let mut previous_init = None;
        for (i, segment) in listed.iter().enumerate() {
            elapsed += segment.duration;
            if segment.parts.is_empty() {
                continue;
            }
            if segment.discontinuity && i > 0 {
                text.push_str("#EXT-X-DISCONTINUITY\n");
            }
            if previous_init != Some(segment.init_id) {
                let _ = writeln!(text, "#EXT-X-MAP:URI=\"init{}.mp4\"", segment.init_id);
                previous_init = Some(segment.init_id);
            }
            let _ = writeln!(
                text,
                "#EXT-X-PROGRAM-DATE-TIME:{}",
                format_program_date_time(segment.program_date_time)
            );
            if segment.data.is_none() || total - elapsed < horizon {
                for (index, part) in segment.parts.iter().enumerate() {
                    let _ = write!(
                        text,
                        "#EXT-X-PART:DURATION={:.5},URI=\"part{}.{}.mp4\"",
                        part.duration as f64 / f64::from(TIMESCALE),
                        segment.msn,
                        index
                    );
                    text.push_str(if part.independent {
                        ",INDEPENDENT=YES\n"
                    } else {
                        "\n"
                    });
                }
            }
            if segment.data.is_some() {
                let _ = writeln!(
                    text,
                    "#EXTINF:{:.5},\nseg{}.mp4",
                    segment.duration as f64 / f64::from(TIMESCALE),
                    segment.msn
                );
            }
        }
        if self.ended {
            text.push_str("#EXT-X-ENDLIST\n");
        } else {
            let (msn, part) = match &self.current {
                Some(segment) => (segment.msn, segment.parts.len()),
                None => (self.next_msn, 0),
            };
            let _ = writeln!(
                text,
                "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part{msn}.{part}.mp4\""
            );
        }
        self.playlist = Some(Bytes::from(text));
        self.version += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flv::tests::{audio, video};
    use crate::fmp4::tests::decode_all;
    use crate::media_unit::AacConfig;
    use crate::media_unit::test_support::{params_320, params_640};
    use m3u8_rs::{MediaPlaylist, Playlist};
    use mp4_atom::Any;

    fn parse(text: &[u8]) -> MediaPlaylist {
        match m3u8_rs::parse_playlist_res(text) {
            Ok(Playlist::MediaPlaylist(playlist)) => playlist,
            other => panic!("not a media playlist: {other:?}"),
        }
    }

    fn lines(text: &Bytes) -> Vec<String> {
        String::from_utf8(text.to_vec())
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn muxer_av() -> (LlHlsMuxer, Arc<AacConfig>) {
        let aac = Arc::new(AacConfig::lc(48_000, 2).unwrap());
        (
            LlHlsMuxer::new(
                Tracks {
                    video: true,
                    audio: Some(Arc::clone(&aac)),
                },
                LlHlsConfig::default(),
            ),
            aac,
        )
    }

    fn feed_av(
        muxer: &mut LlHlsMuxer,
        aac: &Arc<AacConfig>,
        from: i64,
        to: i64,
        gop: i64,
        params: &Arc<H264Params>,
    ) {
        let mut audio_pts = from * 3000;
        for i in from..to {
            let pts = i * 3000;
            muxer.write(&video(pts, i % gop == 0, params));
            while audio_pts <= pts {
                muxer.write(&audio(audio_pts, aac));
                audio_pts += 1920;
            }
        }
    }

    #[test]
    fn playlist_has_ll_hls_tags_and_parses() {
        let (mut muxer, aac) = muxer_av();
        let params = params_640();
        assert!(muxer.playlist().is_none());
        feed_av(&mut muxer, &aac, 0, 5 * 30 + 10, 30, &params);
        let text = muxer.playlist().unwrap();
        let all = lines(&text);
        assert_eq!(all[0], "#EXTM3U");
        assert!(all.contains(&"#EXT-X-VERSION:9".to_string()));
        assert!(all.contains(&"#EXT-X-TARGETDURATION:3".to_string()));
        assert!(all.contains(
            &"#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.600".to_string()
        ));
        assert!(all.contains(&"#EXT-X-PART-INF:PART-TARGET=0.200".to_string()));
        assert!(all.contains(&"#EXT-X-MAP:URI=\"init0.mp4\"".to_string()));
        assert!(
            all.last()
                .unwrap()
                .starts_with("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part2.")
        );
        let parts: Vec<_> = all
            .iter()
            .filter(|l| l.starts_with("#EXT-X-PART:"))
            .collect();
        assert!(!parts.is_empty());
        for part in &parts {
            let duration: f64 = part["#EXT-X-PART:DURATION=".len()..]
                .split(',')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            assert!(duration <= 0.2 + 1e-9, "{part}");
        }
        // Parts starting with an IDR are independent: one per second of 1 s GOPs.
        assert!(
            all.iter()
                .any(|l| l.contains("URI=\"part1.0.mp4\",INDEPENDENT=YES"))
        );
        assert!(
            all.iter()
                .any(|l| l.contains("URI=\"part1.5.mp4\",INDEPENDENT=YES"))
        );
        assert!(
            all.iter()
                .any(|l| l == "#EXT-X-PART:DURATION=0.20000,URI=\"part1.1.mp4\"")
        );
        // Standard tags parse with m3u8-rs.
        let parsed = parse(&text);
        assert_eq!(parsed.version, Some(9));
        assert_eq!(parsed.target_duration, 3);
        assert_eq!(parsed.media_sequence, 0);
        let uris: Vec<_> = parsed.segments.iter().map(|s| s.uri.as_str()).collect();
        assert_eq!(uris, ["seg0.mp4", "seg1.mp4"]);
        assert!(
            parsed
                .segments
                .iter()
                .all(|s| (s.duration - 2.0).abs() < 1e-4)
        );
        assert_eq!(parsed.segments[0].map.as_ref().unwrap().uri, "init0.mp4");
        assert!(parsed.segments[0].program_date_time.is_some());
        // Resources resolve.
        let init = muxer.init(0).unwrap();
        assert!(matches!(decode_all(&init)[1], Any::Moov(_)));
        let part = muxer.part(2, 0).unwrap();
        let atoms = decode_all(&part);
        let Any::Moof(moof) = &atoms[0] else {
            panic!("moof")
        };
        assert_eq!(moof.traf.len(), 2, "video and audio in the part");
        let segment = muxer.segment(1).unwrap();
        let parts: usize = (0..10)
            .filter_map(|i| muxer.part(1, i))
            .map(|p| p.len())
            .sum();
        assert_eq!(segment.len(), parts);
        assert!(muxer.segment(2).is_none(), "in progress");
    }

    #[test]
    fn blocking_reload_queries() {
        let (mut muxer, aac) = muxer_av();
        let params = params_640();
        assert!(!muxer.playlist_ready_for(0, Some(0)));
        assert!(!muxer.request_too_far_ahead(0, Some(0)));
        feed_av(&mut muxer, &aac, 0, 7, 30, &params); // 0..6 → part 0.0 done at frame 6
        assert_eq!(muxer.last_part(), Some((0, 1)));
        assert!(muxer.playlist_ready_for(0, Some(0)));
        assert!(!muxer.playlist_ready_for(0, Some(1)));
        assert!(!muxer.playlist_ready_for(0, None), "segment 0 not complete");
        let version = muxer.version();
        feed_av(&mut muxer, &aac, 7, 13, 30, &params);
        assert!(muxer.version() > version);
        assert!(muxer.playlist_ready_for(0, Some(1)));
        feed_av(&mut muxer, &aac, 13, 61, 30, &params);
        assert!(muxer.playlist_ready_for(0, None));
        assert!(muxer.playlist_ready_for(0, Some(9)));
        assert!(!muxer.playlist_ready_for(1, Some(0)));
        // Too far: MSN beyond last + 2, or parts beyond the advance limit (15 at 200 ms).
        assert!(!muxer.request_too_far_ahead(3, None));
        assert!(muxer.request_too_far_ahead(4, None));
        assert!(!muxer.request_too_far_ahead(1, Some(15)));
        assert!(muxer.request_too_far_ahead(1, Some(16)));
        assert!(muxer.request_too_far_ahead(2, Some(6)));
        muxer.finish();
        assert!(muxer.playlist_ready_for(5, Some(3)));
        assert!(lines(&muxer.playlist().unwrap()).last().unwrap() == "#EXT-X-ENDLIST");
    }

    #[test]
    fn resolution_change_new_init_and_discontinuity() {
        let (mut muxer, aac) = muxer_av();
        let (big, small) = (params_640(), params_320());
        feed_av(&mut muxer, &aac, 0, 45, 30, &big);
        if let MediaUnit::Video(mut au) = video(45 * 3000, true, &small) {
            au.discontinuity = true;
            muxer.write(&MediaUnit::Video(au));
        }
        feed_av(&mut muxer, &aac, 46, 150, 30, &small);
        let text = muxer.playlist().unwrap();
        let all = lines(&text);
        let discontinuity = all
            .iter()
            .position(|l| l == "#EXT-X-DISCONTINUITY")
            .expect("discontinuity");
        assert_eq!(all[discontinuity + 1], "#EXT-X-MAP:URI=\"init1.mp4\"");
        let parsed = parse(&text);
        assert!(parsed.segments.iter().any(|s| s.discontinuity));
        let init = muxer.init(1).unwrap();
        let Any::Moov(moov) = &decode_all(&init)[1] else {
            panic!()
        };
        assert_eq!(moov.trak[0].tkhd.width, 320.into());
        assert!(muxer.init(0).is_some(), "still referenced");
    }

    #[test]
    fn sliding_window_drops_old_segments_and_inits() {
        let (mut muxer, aac) = muxer_av();
        let params = params_640();
        feed_av(&mut muxer, &aac, 0, 30 * 40, 60, &params);
        let parsed = parse(&muxer.playlist().unwrap());
        assert_eq!(parsed.segments.len(), 6);
        assert_eq!(parsed.media_sequence, 13);
        assert!(muxer.segment(11).is_some(), "retained after the window");
        assert!(muxer.segment(10).is_none());
        assert!(muxer.part(10, 0).is_none());
        // Old segments list no parts (beyond three target durations).
        let all = lines(&muxer.playlist().unwrap());
        assert!(!all.iter().any(|l| l.contains("URI=\"part13.")));
        assert!(all.iter().any(|l| l.contains("URI=\"part18.")));
    }

    #[test]
    fn audio_only_parts_are_independent() {
        let aac = Arc::new(AacConfig::lc(48_000, 1).unwrap());
        let mut muxer = LlHlsMuxer::new(
            Tracks {
                video: false,
                audio: Some(Arc::clone(&aac)),
            },
            LlHlsConfig::default(),
        );
        for i in 0..200 {
            muxer.write(&audio(i * 1920, &aac));
        }
        let all = lines(&muxer.playlist().unwrap());
        let parts: Vec<_> = all
            .iter()
            .filter(|l| l.starts_with("#EXT-X-PART:"))
            .collect();
        assert!(parts.len() > 10);
        assert!(parts.iter().all(|l| l.ends_with("INDEPENDENT=YES")));
        let parsed = parse(&muxer.playlist().unwrap());
        assert!(!parsed.segments.is_empty());
        let Any::Moov(moov) = &decode_all(&muxer.init(0).unwrap())[1] else {
            panic!()
        };
        assert_eq!(moov.trak.len(), 1);
        assert!(!muxer.keyframe_wanted());
    }
}
