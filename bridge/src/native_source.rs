//! Native passthrough: a publisher's FLV tag bodies ([`NativeFrame`]s, RTMP ingest) →
//! [`MediaUnit`]s, with the source's H.264 and AAC untouched.
//!
//! Sans-IO like the rest of the bridge: frames and the room timeline go in, units come
//! out, nothing reads a clock.
//!
//! - **Video** (`VIDEODATA`, codec id 7): the AVC sequence header
//!   (AVCDecoderConfigurationRecord) gives the NAL length size and the parameter sets,
//!   parsed into [`H264Params`] (a different SPS/PPS is a new `Arc` and the next IDR is
//!   marked `discontinuity`, as on the RTP path). `AVC NALU` packets are split by that
//!   length size; SPS/PPS (in-band sets update the parameters), AUD, filler and the rest
//!   are stripped like the depacketizer does, slices and SEI are kept. `keyframe` is FLV
//!   frame type 1 or an IDR NAL unit. `dts` is the tag timestamp and
//!   `pts = dts + composition time`, so B-frames keep their order.
//! - **Audio** (`AUDIODATA`, sound format 10): the AAC sequence header is the stream's
//!   own AudioSpecificConfig ([`AacConfig::from_audio_specific_config`]); raw frames
//!   become [`AudioFrame`]s of 1024 samples at that rate.
//! - **Time**: the FLV clock (32-bit milliseconds, unwrapped) is shared by both tracks, so
//!   one anchor places both on the room's 90 kHz timeline (audio/video sync is the
//!   source's): the session's first frame lands at its arrival time, never before the
//!   `floor` the pipeline gives (after everything already handed out). A jump of the
//!   source clock (forward by more than [`MAX_CLOCK_DRIFT`], back by more than 2 s: an
//!   encoder restart) re-anchors after what was emitted and flags a discontinuity. Audio timestamps follow the sample count while
//!   the tag timestamps (rounded to milliseconds) agree within half a frame.
//! - **Drops**, each counted in [`NativeStats`]: frames before their track's sequence
//!   header, video before the first keyframe (and after a break until the next one),
//!   malformed bodies, unsupported codecs (reported once per track). Nothing panics on a
//!   body from the network.

use crate::error::BridgeError;
use crate::media_unit::{
    AAC_FRAME_SAMPLES, AacConfig, AudioFrame, H264Params, MediaUnit, TIMESCALE, Tracks,
    VideoAccessUnit, duration_to_ticks,
};
use crate::pipeline::{ClockAnchor, wallclock_at};
use crate::sync::{MAX_CLOCK_DRIFT, RtpUnwrapper};
use bytes::Bytes;
use sfu::media::{MediaKind, NativeFrame};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// FLV `CodecID` of AVC (H.264).
pub const FLV_CODEC_AVC: u8 = 7;
/// FLV `SoundFormat` of AAC.
pub const FLV_SOUND_AAC: u8 = 10;

const NAL_SLICE: u8 = 1;
const NAL_IDR: u8 = 5;
const NAL_SEI: u8 = 6;
const NAL_SPS: u8 = 7;
const NAL_PPS: u8 = 8;
/// The source clock going back by more than this (2 s; tracks interleave far closer) is
/// a restart, not jitter: re-anchor.
const MAX_BACKWARD_STEP: i64 = 2 * TIMESCALE as i64;
/// 90 kHz ticks per FLV millisecond.
const TICKS_PER_MS: i64 = TIMESCALE as i64 / 1000;

/// Limits on one video frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NativeConfig {
    /// Largest access unit accepted, in bytes; larger ones are dropped.
    pub max_frame_bytes: usize,
    /// Most NAL units accepted in one access unit.
    pub max_nalus_per_frame: usize,
}

impl Default for NativeConfig {
    fn default() -> Self {
        NativeConfig {
            max_frame_bytes: 4 * 1024 * 1024,
            max_nalus_per_frame: 256,
        }
    }
}

/// Counters, one per reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NativeStats {
    /// Frames pushed.
    pub frames: u64,
    /// Video access units emitted.
    pub video_units: u64,
    /// Audio frames emitted.
    pub audio_units: u64,
    /// Media frames dropped because their track's sequence header had not come yet.
    pub dropped_before_sequence_header: u64,
    /// Video frames dropped while waiting for a keyframe (stream start, parameter change,
    /// clock jump, after a malformed frame).
    pub dropped_waiting_for_keyframe: u64,
    /// Bodies that could not be parsed (truncated, bad NAL lengths, unknown packet type).
    pub malformed: u64,
    /// Frames of a codec that cannot be passed through (not AVC / not AAC-LC).
    pub unsupported: u64,
    /// Access units over the configured size or NAL unit count.
    pub oversized: u64,
    /// Video parameter changes after the first.
    pub parameter_set_changes: u64,
    /// AVC sequence headers or in-band parameter sets that could not be parsed.
    pub invalid_parameter_sets: u64,
    /// AAC configuration changes after the first.
    pub audio_config_changes: u64,
    /// Frames without media: video info/command frames, AVC end of sequence, access
    /// units with no slice.
    pub ignored: u64,
    /// Re-anchors after a jump of the source clock.
    pub rebases: u64,
    /// Video timestamps nudged forward to keep DTS strictly increasing.
    pub timestamps_clamped: u64,
    /// Negative composition times (treated as 0).
    pub negative_composition_times: u64,
    /// Audio frames whose tag timestamp overlapped the previous frame (placed after it).
    pub audio_retimed: u64,
    /// Audio frames dropped because they lay entirely before audio already emitted.
    pub audio_overlaps_dropped: u64,
}

impl NativeStats {
    /// Adds `other`'s counters to these (summing over sessions).
    pub fn add(&mut self, other: &NativeStats) {
        self.frames += other.frames;
        self.video_units += other.video_units;
        self.audio_units += other.audio_units;
        self.dropped_before_sequence_header += other.dropped_before_sequence_header;
        self.dropped_waiting_for_keyframe += other.dropped_waiting_for_keyframe;
        self.malformed += other.malformed;
        self.unsupported += other.unsupported;
        self.oversized += other.oversized;
        self.parameter_set_changes += other.parameter_set_changes;
        self.invalid_parameter_sets += other.invalid_parameter_sets;
        self.audio_config_changes += other.audio_config_changes;
        self.ignored += other.ignored;
        self.rebases += other.rebases;
        self.timestamps_clamped += other.timestamps_clamped;
        self.negative_composition_times += other.negative_composition_times;
        self.audio_retimed += other.audio_retimed;
        self.audio_overlaps_dropped += other.audio_overlaps_dropped;
    }
}

/// Where on the room timeline frames land: the room's clock anchor and the instant that
/// is timeline position 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NativeTimeline {
    /// Monotonic ↔ wall-clock time.
    pub anchor: ClockAnchor,
    /// The instant that maps to pts 0.
    pub origin: Instant,
}

impl NativeTimeline {
    /// The timeline position of an arrival instant (0 before the origin).
    pub fn arrival_pts(&self, at: Instant) -> i64 {
        duration_to_ticks(at.saturating_duration_since(self.origin))
    }

    /// The wall-clock estimate of a timeline position.
    pub fn wallclock(&self, pts: i64) -> SystemTime {
        wallclock_at(&self.anchor, self.origin, pts)
    }
}

/// The video parameter state of a session.
#[derive(Debug, Default)]
struct AvcState {
    /// NAL length field size from the sequence header (1–4); `None` before it.
    length_size: Option<usize>,
    sps: Option<Bytes>,
    pps: Option<Bytes>,
    params: Option<Arc<H264Params>>,
}

/// The shared FLV clock of a session.
#[derive(Debug, Default)]
struct FlvClock {
    unwrapper: RtpUnwrapper,
    /// (extended ms, timeline position) of the anchor frame.
    anchor: Option<(i64, i64)>,
    last_ms: Option<i64>,
}

/// Sample-accurate audio position: `base` plus `samples` at the config's rate.
#[derive(Debug, Clone, Copy)]
struct AudioPosition {
    base: i64,
    samples: i64,
    rate: i64,
}

impl AudioPosition {
    fn next(&self) -> i64 {
        self.base + (self.samples * i64::from(TIMESCALE) + self.rate / 2) / self.rate
    }
}

/// One native publisher session's adapter; see the module doc.
#[derive(Debug)]
pub struct NativeSource {
    config: NativeConfig,
    floor: i64,
    avc: AvcState,
    aac: Option<Arc<AacConfig>>,
    clock: FlvClock,
    video_supported: bool,
    audio_supported: bool,
    unavailable: Vec<(MediaKind, BridgeError)>,
    wait_keyframe: bool,
    video_discontinuity: bool,
    audio_discontinuity: bool,
    last_dts: Option<i64>,
    last_audio_pts: Option<i64>,
    audio_position: Option<AudioPosition>,
    /// The largest timestamp handed out this session.
    last_pts: Option<i64>,
    media_started: bool,
    announced: Option<Tracks>,
    stats: NativeStats,
}

impl NativeSource {
    /// A session whose timestamps start at or after `floor`. `continues_video` /
    /// `continues_audio`: the room already had units of that kind, so the session's first
    /// one is marked `discontinuity`.
    pub fn new(
        config: NativeConfig,
        floor: i64,
        continues_video: bool,
        continues_audio: bool,
    ) -> Self {
        NativeSource {
            config,
            floor,
            avc: AvcState::default(),
            aac: None,
            clock: FlvClock::default(),
            video_supported: true,
            audio_supported: true,
            unavailable: Vec::new(),
            wait_keyframe: true,
            video_discontinuity: continues_video,
            audio_discontinuity: continues_audio,
            last_dts: None,
            last_audio_pts: None,
            audio_position: None,
            last_pts: None,
            media_started: false,
            announced: None,
            stats: NativeStats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> &NativeStats {
        &self.stats
    }

    /// The tracks known so far: video once an AVC sequence header parsed, audio with the
    /// stream's AAC configuration once its sequence header parsed.
    pub fn tracks(&self) -> Tracks {
        Tracks {
            video: self.video_supported && self.avc.params.is_some(),
            audio: self.aac.clone().filter(|_| self.audio_supported),
        }
    }

    /// The tracks, when they differ from the last ones returned here and media has begun
    /// (so the first answer already holds every sequence header sent before the media).
    /// Muxers for the new tracks must exist before the units of the same push are
    /// written.
    pub fn take_tracks_change(&mut self) -> Option<Tracks> {
        if !self.media_started {
            return None;
        }
        let tracks = self.tracks();
        if self.announced.as_ref() == Some(&tracks) {
            return None;
        }
        self.announced = Some(tracks.clone());
        Some(tracks)
    }

    /// A track found unbridgeable since the last call (reported once per track).
    pub fn take_unavailable(&mut self) -> Option<(MediaKind, BridgeError)> {
        self.unavailable.pop()
    }

    /// The largest timestamp handed out so far.
    pub fn last_pts(&self) -> Option<i64> {
        self.last_pts
    }

    /// Handles one frame; units that became ready are appended to `out`.
    pub fn push(
        &mut self,
        frame: &NativeFrame,
        timeline: &NativeTimeline,
        out: &mut Vec<MediaUnit>,
    ) {
        self.stats.frames += 1;
        match frame.kind {
            MediaKind::Video => self.push_video(frame, timeline, out),
            MediaKind::Audio => self.push_audio(frame, timeline, out),
        }
    }

    fn mark_unsupported(&mut self, kind: MediaKind, what: String) {
        self.stats.unsupported += 1;
        let supported = match kind {
            MediaKind::Video => &mut self.video_supported,
            MediaKind::Audio => &mut self.audio_supported,
        };
        if *supported {
            *supported = false;
            self.unavailable
                .push((kind, BridgeError::UnsupportedNativeCodec(what)));
        }
    }

    /// Maps a tag timestamp onto the timeline; `true` if the clock was re-anchored.
    fn map(&mut self, timestamp_ms: u32, arrival_pts: i64) -> (i64, bool) {
        let ms = self.clock.unwrapper.unwrap(timestamp_ms);
        let mut rebased = false;
        let jumped = self.clock.last_ms.is_some_and(|last| {
            let step = (ms - last).saturating_mul(TICKS_PER_MS);
            !(-MAX_BACKWARD_STEP..=MAX_CLOCK_DRIFT).contains(&step)
        });
        match self.clock.anchor {
            None => self.clock.anchor = Some((ms, arrival_pts.max(self.floor))),
            Some(_) if jumped => {
                let after = self
                    .last_pts
                    .map_or(self.floor, |last| last + crate::sync::EPOCH_GAP);
                self.clock.anchor = Some((ms, arrival_pts.max(after)));
                self.stats.rebases += 1;
                rebased = true;
            }
            Some(_) => {}
        }
        self.clock.last_ms = Some(ms);
        let (anchor_ms, anchor_pts) = self.clock.anchor.expect("anchored above");
        let pts = anchor_pts.saturating_add((ms - anchor_ms).saturating_mul(TICKS_PER_MS));
        if rebased {
            self.wait_keyframe = true;
            self.video_discontinuity = true;
            self.audio_discontinuity = true;
            self.audio_position = None;
        }
        (pts, rebased)
    }

    fn note_emitted(&mut self, ts: i64) {
        self.media_started = true;
        self.last_pts = Some(self.last_pts.map_or(ts, |last| last.max(ts)));
    }

    fn push_video(
        &mut self,
        frame: &NativeFrame,
        timeline: &NativeTimeline,
        out: &mut Vec<MediaUnit>,
    ) {
        let body = &frame.body;
        let Some(&first) = body.first() else {
            self.stats.malformed += 1;
            return;
        };
        if first & 0x80 != 0 {
            // Enhanced RTMP (IsExHeader): FourCC codecs (HEVC, AV1, VP9 …).
            self.mark_unsupported(MediaKind::Video, "enhanced-RTMP video".into());
            return;
        }
        let frame_type = first >> 4;
        let codec = first & 0x0F;
        if codec != FLV_CODEC_AVC {
            self.mark_unsupported(MediaKind::Video, format!("FLV video codec id {codec}"));
            return;
        }
        if !self.video_supported {
            self.stats.unsupported += 1;
            return;
        }
        if frame_type == 5 {
            // Video info/command frame: no picture.
            self.stats.ignored += 1;
            return;
        }
        if body.len() < 5 {
            self.stats.malformed += 1;
            return;
        }
        let composition = i32::from_be_bytes([
            if body[2] & 0x80 != 0 { 0xFF } else { 0 },
            body[2],
            body[3],
            body[4],
        ]);
        match body[1] {
            0 => self.on_avc_sequence_header(body.slice(5..)),
            1 => self.on_avc_nalus(frame, frame_type, composition, timeline, out),
            2 => self.stats.ignored += 1, // end of sequence
            _ => self.stats.malformed += 1,
        }
    }

    fn on_avc_sequence_header(&mut self, record: Bytes) {
        let Some((length_size, sps, pps)) = parse_decoder_config(&record) else {
            self.stats.malformed += 1;
            return;
        };
        let (Some(sps), Some(pps)) = (sps, pps) else {
            self.stats.invalid_parameter_sets += 1;
            return;
        };
        self.avc.length_size = Some(length_size);
        self.set_parameter_sets(sps, pps);
    }

    /// Adopts a SPS/PPS pair; a change from the sets in force starts a new `Arc` and
    /// makes the next IDR a discontinuity.
    fn set_parameter_sets(&mut self, sps: Bytes, pps: Bytes) {
        if self.avc.sps.as_ref() == Some(&sps) && self.avc.pps.as_ref() == Some(&pps) {
            return;
        }
        match H264Params::from_parameter_sets(sps.clone(), pps.clone()) {
            Ok(params) => {
                self.avc.sps = Some(sps);
                self.avc.pps = Some(pps);
                if self.avc.params.as_deref() == Some(&params) {
                    return;
                }
                if self.avc.params.is_some() {
                    self.stats.parameter_set_changes += 1;
                    if self.last_dts.is_some() {
                        self.video_discontinuity = true;
                        self.wait_keyframe = true;
                    }
                }
                self.avc.params = Some(Arc::new(params));
            }
            Err(_) => self.stats.invalid_parameter_sets += 1,
        }
    }

    fn on_avc_nalus(
        &mut self,
        frame: &NativeFrame,
        frame_type: u8,
        composition_ms: i32,
        timeline: &NativeTimeline,
        out: &mut Vec<MediaUnit>,
    ) {
        let Some(length_size) = self.avc.length_size else {
            self.stats.dropped_before_sequence_header += 1;
            return;
        };
        let data = frame.body.slice(5..);
        let Some(all) = split_nalus(&data, length_size) else {
            self.stats.malformed += 1;
            self.wait_keyframe = true;
            return;
        };
        if all.len() > self.config.max_nalus_per_frame
            || all.iter().map(Bytes::len).sum::<usize>() > self.config.max_frame_bytes
        {
            self.stats.oversized += 1;
            self.wait_keyframe = true;
            return;
        }
        let mut keyframe = frame_type == 1;
        let mut has_slice = false;
        let (mut sps, mut pps) = (None, None);
        let mut nalus = Vec::with_capacity(all.len());
        for nalu in all {
            match nalu[0] & 0x1F {
                NAL_SPS => sps = Some(nalu),
                NAL_PPS => pps = Some(nalu),
                NAL_IDR => {
                    keyframe = true;
                    has_slice = true;
                    nalus.push(nalu);
                }
                NAL_SLICE..=4 => {
                    has_slice = true;
                    nalus.push(nalu);
                }
                NAL_SEI => nalus.push(nalu),
                // AUD, filler, end of sequence/stream, extensions: not forwarded.
                _ => {}
            }
        }
        if sps.is_some() || pps.is_some() {
            let sps = sps.or_else(|| self.avc.sps.clone());
            let pps = pps.or_else(|| self.avc.pps.clone());
            if let (Some(sps), Some(pps)) = (sps, pps) {
                self.set_parameter_sets(sps, pps);
            }
        }
        if !has_slice {
            self.stats.ignored += 1;
            return;
        }
        let Some(params) = self.avc.params.clone() else {
            self.stats.dropped_before_sequence_header += 1;
            return;
        };
        let (mapped, _) = self.map(frame.timestamp_ms, timeline.arrival_pts(frame.received_at));
        if self.wait_keyframe {
            if !keyframe {
                self.stats.dropped_waiting_for_keyframe += 1;
                return;
            }
            self.wait_keyframe = false;
        }
        let composition = if composition_ms < 0 {
            self.stats.negative_composition_times += 1;
            0
        } else {
            i64::from(composition_ms) * TICKS_PER_MS
        };
        // A frame stamped before the session's anchor frame still starts after the floor.
        let mut dts = mapped.max(self.floor);
        if let Some(last) = self.last_dts
            && dts <= last
        {
            dts = last + 1;
            self.stats.timestamps_clamped += 1;
        }
        // A nudged DTS moves the picture with it, keeping its composition time.
        let pts = dts + composition;
        self.last_dts = Some(dts);
        self.note_emitted(pts);
        self.stats.video_units += 1;
        out.push(MediaUnit::Video(VideoAccessUnit {
            pts,
            dts,
            keyframe,
            nalus,
            params,
            discontinuity: std::mem::take(&mut self.video_discontinuity),
            wallclock: timeline.wallclock(pts),
        }));
    }

    fn push_audio(
        &mut self,
        frame: &NativeFrame,
        timeline: &NativeTimeline,
        out: &mut Vec<MediaUnit>,
    ) {
        let body = &frame.body;
        let Some(&first) = body.first() else {
            self.stats.malformed += 1;
            return;
        };
        let format = first >> 4;
        if format != FLV_SOUND_AAC {
            self.mark_unsupported(MediaKind::Audio, format!("FLV sound format {format}"));
            return;
        }
        if !self.audio_supported {
            self.stats.unsupported += 1;
            return;
        }
        let Some(&packet_type) = body.get(1) else {
            self.stats.malformed += 1;
            return;
        };
        match packet_type {
            0 => match AacConfig::from_audio_specific_config(&body[2..]) {
                Ok(config) => {
                    if self.aac.as_deref() == Some(&config) {
                        return;
                    }
                    if self.aac.is_some() {
                        self.stats.audio_config_changes += 1;
                        self.audio_position = None;
                    }
                    self.aac = Some(Arc::new(config));
                }
                Err(_) if body.len() < 4 => self.stats.malformed += 1,
                Err(err) => {
                    if self.aac.is_none() {
                        // Not AAC-LC (HE-AAC, 960-sample frames …): not passed through.
                        self.mark_unsupported(MediaKind::Audio, err.to_string());
                    } else {
                        self.stats.malformed += 1;
                    }
                }
            },
            1 => self.on_aac_frame(frame, timeline, out),
            _ => self.stats.malformed += 1,
        }
    }

    fn on_aac_frame(
        &mut self,
        frame: &NativeFrame,
        timeline: &NativeTimeline,
        out: &mut Vec<MediaUnit>,
    ) {
        let Some(config) = self.aac.clone() else {
            self.stats.dropped_before_sequence_header += 1;
            return;
        };
        let data = frame.body.slice(2..);
        if data.is_empty() || data.len() > 0x1FFF - 7 {
            // Empty, or too large for an ADTS frame.
            self.stats.malformed += 1;
            return;
        }
        let (raw, rebased) = self.map(frame.timestamp_ms, timeline.arrival_pts(frame.received_at));
        let raw = raw.max(self.floor);
        let duration = config.frame_duration_ticks();
        let pts = match self.audio_position {
            Some(position) if !rebased => {
                let expected = position.next();
                if raw + duration <= expected {
                    self.stats.audio_overlaps_dropped += 1;
                    return;
                }
                if raw - expected > duration / 2 {
                    // A gap: follow the source.
                    self.audio_position = None;
                    raw
                } else {
                    if expected - raw > duration / 2 {
                        self.stats.audio_retimed += 1;
                    }
                    expected
                }
            }
            _ => raw,
        };
        let pts = match self.last_audio_pts {
            Some(last) if pts <= last => last + 1,
            _ => pts,
        };
        let position = self.audio_position.get_or_insert(AudioPosition {
            base: pts,
            samples: 0,
            rate: i64::from(config.sample_rate.max(1)),
        });
        position.samples += i64::from(AAC_FRAME_SAMPLES);
        self.last_audio_pts = Some(pts);
        self.note_emitted(pts);
        self.stats.audio_units += 1;
        out.push(MediaUnit::Audio(AudioFrame {
            pts,
            duration,
            data,
            config,
            discontinuity: std::mem::take(&mut self.audio_discontinuity),
            wallclock: timeline.wallclock(pts),
        }));
    }
}

/// Reads an AVCDecoderConfigurationRecord: NAL length size and the first SPS and PPS.
/// `None` if the record is malformed.
fn parse_decoder_config(record: &[u8]) -> Option<(usize, Option<Bytes>, Option<Bytes>)> {
    if record.len() < 7 || record[0] != 1 {
        return None;
    }
    let length_size = usize::from(record[4] & 0x03) + 1;
    let mut pos = 5;
    let read_sets = |count: usize, pos: &mut usize| -> Option<Option<Bytes>> {
        let mut first = None;
        for _ in 0..count {
            let len = usize::from(u16::from_be_bytes([
                *record.get(*pos)?,
                *record.get(*pos + 1)?,
            ]));
            let set = record.get(*pos + 2..*pos + 2 + len)?;
            *pos += 2 + len;
            if first.is_none() && !set.is_empty() {
                first = Some(Bytes::copy_from_slice(set));
            }
        }
        Some(first)
    };
    let sps_count = usize::from(record[pos] & 0x1F);
    pos += 1;
    let sps = read_sets(sps_count, &mut pos)?;
    let pps_count = usize::from(*record.get(pos)?);
    pos += 1;
    let pps = read_sets(pps_count, &mut pos)?;
    Some((length_size, sps, pps))
}

/// Splits length-prefixed NAL units; empty units are skipped. `None` if a length runs
/// past the end.
fn split_nalus(data: &Bytes, length_size: usize) -> Option<Vec<Bytes>> {
    let mut nalus = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let prefix = data.get(pos..pos + length_size)?;
        let len = prefix
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        pos += length_size;
        let end = pos.checked_add(len).filter(|&end| end <= data.len())?;
        if len > 0 {
            nalus.push(data.slice(pos..end));
        }
        pos = end;
    }
    Some(nalus)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media_unit::test_support::{PPS, SPS_320X180, SPS_640X360};
    use std::time::Duration;

    fn timeline(start: Instant) -> NativeTimeline {
        NativeTimeline {
            anchor: ClockAnchor {
                instant: start,
                wallclock: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            },
            origin: start,
        }
    }

    fn frame(kind: MediaKind, ms: u32, body: Vec<u8>, at: Instant) -> NativeFrame {
        NativeFrame {
            kind,
            timestamp_ms: ms,
            body: Bytes::from(body),
            received_at: at,
        }
    }

    fn avc_header(sps: &[u8]) -> Vec<u8> {
        let mut body = vec![0x17, 0, 0, 0, 0, 1, sps[1], sps[2], sps[3], 0xFF, 0xE1];
        body.extend_from_slice(&(sps.len() as u16).to_be_bytes());
        body.extend_from_slice(sps);
        body.push(1);
        body.extend_from_slice(&(PPS.len() as u16).to_be_bytes());
        body.extend_from_slice(PPS);
        body
    }

    fn avc_frame(keyframe: bool, composition_ms: i32, nalus: &[&[u8]]) -> Vec<u8> {
        let ct = composition_ms.to_be_bytes();
        let mut body = vec![if keyframe { 0x17 } else { 0x27 }, 1, ct[1], ct[2], ct[3]];
        for nalu in nalus {
            body.extend_from_slice(&(nalu.len() as u32).to_be_bytes());
            body.extend_from_slice(nalu);
        }
        body
    }

    const AUD: &[u8] = &[0x09, 0xF0];
    const IDR: &[u8] = &[0x65, 0x88, 0x84, 0x21];
    const P: &[u8] = &[0x41, 0x9a, 0x21];

    #[test]
    fn video_with_b_frames_keeps_composition_times() {
        let start = Instant::now();
        let timeline = timeline(start);
        let mut source = NativeSource::new(NativeConfig::default(), 0, false, false);
        let mut units = Vec::new();
        // A P-frame before the sequence header is dropped and counted.
        source.push(
            &frame(MediaKind::Video, 0, avc_frame(false, 0, &[P]), start),
            &timeline,
            &mut units,
        );
        source.push(
            &frame(MediaKind::Video, 0, avc_header(SPS_640X360), start),
            &timeline,
            &mut units,
        );
        assert!(source.take_tracks_change().is_none(), "no media yet");
        // Decode order I P B B with composition times 66, 133, 33, 66 ms (x264 -bf 2).
        let frames = [
            (0, true, 66),
            (33, false, 133),
            (66, false, 33),
            (100, false, 66),
        ];
        for (ms, key, ct) in frames {
            let body = avc_frame(key, ct, &[AUD, if key { IDR } else { P }]);
            source.push(
                &frame(MediaKind::Video, ms, body, start),
                &timeline,
                &mut units,
            );
        }
        assert_eq!(source.stats().dropped_before_sequence_header, 1);
        let tracks = source
            .take_tracks_change()
            .expect("announced with the first unit");
        assert!(tracks.video && tracks.audio.is_none());
        let videos: Vec<_> = units
            .iter()
            .map(|u| match u {
                MediaUnit::Video(v) => v,
                MediaUnit::Audio(_) => panic!("video only"),
            })
            .collect();
        assert_eq!(videos.len(), 4);
        assert_eq!(
            videos.iter().map(|v| (v.dts, v.pts)).collect::<Vec<_>>(),
            [(0, 5940), (2970, 14_940), (5940, 8910), (9000, 14_940)]
        );
        assert!(videos[0].keyframe && !videos[0].discontinuity);
        assert_eq!(
            videos[0].nalus,
            vec![Bytes::from_static(IDR)],
            "AUD stripped"
        );
        assert_eq!(videos[0].params.width, 640);
        assert_eq!(
            videos[1].wallclock,
            timeline.anchor.wallclock + Duration::from_micros(166_000)
        );
    }

    #[test]
    fn parameter_change_marks_next_idr_and_waits_for_it() {
        let start = Instant::now();
        let timeline = timeline(start);
        let mut source = NativeSource::new(NativeConfig::default(), 9000, true, false);
        let mut units = Vec::new();
        let push = |source: &mut NativeSource, ms, body, units: &mut Vec<MediaUnit>| {
            source.push(&frame(MediaKind::Video, ms, body, start), &timeline, units)
        };
        push(&mut source, 5000, avc_frame(true, 0, &[IDR]), &mut units);
        push(&mut source, 5000, avc_header(SPS_640X360), &mut units);
        push(&mut source, 5000, avc_frame(false, 0, &[P]), &mut units);
        push(&mut source, 5033, avc_frame(true, 0, &[IDR]), &mut units);
        push(&mut source, 5066, avc_frame(false, 0, &[P]), &mut units);
        // Same header again: nothing changes.
        push(&mut source, 5066, avc_header(SPS_640X360), &mut units);
        push(&mut source, 5100, avc_frame(false, 0, &[P]), &mut units);
        push(&mut source, 5100, avc_header(SPS_320X180), &mut units);
        push(&mut source, 5133, avc_frame(false, 0, &[P]), &mut units);
        push(&mut source, 5166, avc_frame(true, 0, &[IDR]), &mut units);
        let videos: Vec<_> = units
            .iter()
            .filter_map(|u| match u {
                MediaUnit::Video(v) => Some(v),
                MediaUnit::Audio(_) => None,
            })
            .collect();
        assert_eq!(videos.len(), 4);
        // The first mapped frame (the P-frame waiting for its IDR) anchors at the floor,
        // not at its arrival time.
        assert_eq!(videos[0].dts, 9000 + 2970);
        assert!(videos[0].discontinuity, "the room had video before");
        assert!(!videos[1].discontinuity && !videos[2].discontinuity);
        assert!(Arc::ptr_eq(&videos[0].params, &videos[2].params));
        assert!(videos[3].keyframe && videos[3].discontinuity);
        assert_eq!(videos[3].params.width, 320);
        let stats = source.stats();
        assert_eq!(stats.dropped_before_sequence_header, 1);
        assert_eq!(stats.dropped_waiting_for_keyframe, 2);
        assert_eq!(stats.parameter_set_changes, 1);
    }

    #[test]
    fn aac_at_44100_follows_the_sample_clock_and_flv_wrap() {
        let start = Instant::now();
        let timeline = timeline(start);
        let mut source = NativeSource::new(NativeConfig::default(), 0, false, false);
        let mut units = Vec::new();
        source.push(
            &frame(MediaKind::Audio, 0, vec![0xAF, 1, 0x21], start),
            &timeline,
            &mut units,
        );
        source.push(
            &frame(MediaKind::Audio, 0, vec![0xAF, 0, 0x12, 0x10], start),
            &timeline,
            &mut units,
        );
        // Start 1 s before the 32-bit millisecond wrap.
        let base = u32::MAX - 999;
        for i in 0..100u32 {
            let ms = base.wrapping_add((u64::from(i) * 1024 * 1000 / 44_100) as u32);
            source.push(
                &frame(MediaKind::Audio, ms, vec![0xAF, 1, 0x21, i as u8], start),
                &timeline,
                &mut units,
            );
        }
        let tracks = source.take_tracks_change().unwrap();
        assert_eq!(tracks.audio.as_ref().unwrap().sample_rate, 44_100);
        assert!(!tracks.video);
        let audios: Vec<_> = units
            .iter()
            .map(|u| match u {
                MediaUnit::Audio(a) => a,
                MediaUnit::Video(_) => panic!(),
            })
            .collect();
        assert_eq!(audios.len(), 100);
        assert_eq!(audios[0].duration, 2090);
        assert_eq!(&audios[7].data[..], &[0x21, 7], "raw frame untouched");
        for (i, frame) in audios.iter().enumerate() {
            let exact = (i as i64 * 1024 * 90_000 + 22_050) / 44_100;
            assert_eq!(frame.pts, exact, "frame {i}");
        }
        assert_eq!(source.stats().dropped_before_sequence_header, 1);
    }

    #[test]
    fn clock_jump_rebases_after_last_output() {
        let start = Instant::now();
        let timeline = timeline(start);
        let mut source = NativeSource::new(NativeConfig::default(), 0, false, false);
        let mut units = Vec::new();
        let mut push = |ms: u32, body: Vec<u8>, at: Duration| {
            source.push(
                &frame(MediaKind::Video, ms, body, start + at),
                &timeline,
                &mut units,
            )
        };
        push(0, avc_header(SPS_640X360), Duration::ZERO);
        push(100_000, avc_frame(true, 0, &[IDR]), Duration::ZERO);
        push(
            100_033,
            avc_frame(false, 0, &[P]),
            Duration::from_millis(33),
        );
        // The encoder restarted: its clock is back at 0, 2 s later.
        push(20, avc_frame(false, 0, &[P]), Duration::from_secs(2));
        push(53, avc_frame(true, 0, &[IDR]), Duration::from_millis(2033));
        let dts: Vec<_> = units.iter().map(MediaUnit::dts).collect();
        assert_eq!(dts.len(), 3);
        assert_eq!(&dts[..2], &[0, 2970]);
        assert_eq!(dts[2], 2 * 90_000 + 2970, "arrival time after the jump");
        assert!(units[2].discontinuity());
        assert_eq!(source.stats().rebases, 1);
    }

    #[test]
    fn malformed_bodies_are_counted_never_panic() {
        let start = Instant::now();
        let timeline = timeline(start);
        let mut source = NativeSource::new(NativeConfig::default(), 0, false, false);
        let mut units = Vec::new();
        let bodies: Vec<(MediaKind, Vec<u8>)> = vec![
            (MediaKind::Video, vec![]),
            (MediaKind::Video, vec![0x17]),
            (MediaKind::Video, vec![0x17, 0, 0, 0, 0]),
            (
                MediaKind::Video,
                vec![0x17, 0, 0, 0, 0, 1, 0x42, 0, 0x1e, 0xFF, 0xE1, 0x00, 0x40],
            ),
            (MediaKind::Video, avc_header(SPS_640X360)),
            (MediaKind::Video, vec![0x17, 1, 0, 0, 0, 0, 0, 0, 9, 0x65]),
            (MediaKind::Video, vec![0x17, 1, 0, 0, 0, 0, 0]),
            (MediaKind::Video, vec![0x17, 9, 0, 0, 0]),
            (MediaKind::Video, vec![0x1C, 1, 0, 0, 0]),
            (MediaKind::Audio, vec![]),
            (MediaKind::Audio, vec![0xAF]),
            (MediaKind::Audio, vec![0xAF, 1]),
            (MediaKind::Audio, vec![0xAF, 0, 0xFF]),
            (MediaKind::Audio, vec![0xAF, 0, 0x12]),
            (MediaKind::Audio, vec![0x2F, 1, 1]),
        ];
        for (kind, body) in bodies {
            source.push(&frame(kind, 0, body, start), &timeline, &mut units);
        }
        assert!(units.is_empty());
        let stats = source.stats();
        assert!(stats.malformed >= 6, "{stats:?}");
        assert_eq!(stats.unsupported, 2);
        let mut reported = Vec::new();
        while let Some((kind, _)) = source.take_unavailable() {
            reported.push(kind);
        }
        assert_eq!(reported.len(), 2, "HEVC video and MP3 audio, once each");
        // Even an unsupported track leaves the other one alone.
        assert!(source.tracks().audio.is_none());
    }
}
