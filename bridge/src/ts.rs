//! MPEG-TS muxer (hand-written, ISO/IEC 13818-1) cutting HLS segments.
//!
//! - PAT and PMT at the start of every segment (program 1, PMT on PID 0x1000, H.264 on
//!   0x100 with stream type 0x1B, AAC/ADTS on 0x101 with stream type 0x0F).
//! - H.264 PES: an access unit delimiter before each access unit, SPS and PPS before
//!   every IDR, Annex B start codes; PTS only when DTS = PTS (WebRTC), PTS and DTS when
//!   they differ (B-frames from RTMP ingest).
//! - AAC PES: one ADTS frame each, its header from the frame's own configuration (a
//!   configuration change cuts a discontinuity segment at the next IDR).
//! - PCR on the video PID (the audio PID in audio-only streams), at least every 40 ms:
//!   on the PCR PID's PES when due, otherwise as an adaptation-only packet.
//! - Continuity counters per PID, 188-byte packets, stuffing in the adaptation field.
//! - Timestamps are offset by [`TS_TIME_OFFSET`] (like ffmpeg's 1.4 s) so early audio
//!   can never go negative, and wrap at 33 bits.
//!
//! Segments are cut on an IDR once the current one has reached the target duration, and
//! immediately on a discontinuity (new parameter sets or session), so each segment starts
//! with PAT, PMT and an IDR preceded by SPS/PPS. If keyframes stop coming, a segment is
//! cut anyway at [`TsConfig::max_segment_duration`] (marked not independent).
//! [`TsMuxer::keyframe_wanted`] tells the caller when to ask for the next keyframe.

use crate::media_unit::{
    AacConfig, AudioFrame, MediaUnit, TIMESCALE, Tracks, VideoAccessUnit, duration_to_ticks,
};
use bytes::{BufMut, Bytes, BytesMut};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Bytes in a transport stream packet.
pub const PACKET_SIZE: usize = 188;
/// PID of the program map table.
pub const PMT_PID: u16 = 0x1000;
/// PID of the H.264 elementary stream.
pub const VIDEO_PID: u16 = 0x100;
/// PID of the AAC elementary stream.
pub const AUDIO_PID: u16 = 0x101;
/// Added to every PTS/DTS/PCR (1.4 s in 90 kHz ticks).
pub const TS_TIME_OFFSET: i64 = 126_000;
/// PCR runs this far (0.7 s) behind the timestamps it accompanies, leaving decoders
/// buffer room (ffmpeg's `muxdelay`).
const PCR_DELAY: i64 = 63_000;
/// Maximum PCR interval we allow ourselves (40 ms); the spec's limit is 100 ms.
const PCR_INTERVAL: i64 = 3_600;
const STREAM_TYPE_H264: u8 = 0x1B;
const STREAM_TYPE_AAC_ADTS: u8 = 0x0F;
const TIMESTAMP_MASK: i64 = (1 << 33) - 1;

/// Segmenting settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TsConfig {
    /// Cut at the first IDR after this much media (1–2 s for low-latency HLS).
    pub target_segment_duration: Duration,
    /// Cut without an IDR after this much (keyframes stopped coming).
    pub max_segment_duration: Duration,
    /// Ask for a keyframe this long before the target is reached.
    pub keyframe_request_lead: Duration,
}

impl Default for TsConfig {
    fn default() -> Self {
        TsConfig {
            target_segment_duration: Duration::from_secs(2),
            max_segment_duration: Duration::from_secs(6),
            keyframe_request_lead: Duration::from_millis(300),
        }
    }
}

/// One finished segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TsSegment {
    /// The transport stream bytes (a multiple of 188).
    pub data: Bytes,
    /// Timeline position of the segment's first unit (90 kHz, before [`TS_TIME_OFFSET`]).
    pub start_pts: i64,
    /// Duration in 90 kHz ticks (until the next segment's start).
    pub duration: i64,
    /// The segment follows a discontinuity (new parameter sets or session):
    /// `EXT-X-DISCONTINUITY` goes before it.
    pub discontinuity: bool,
    /// The segment starts with an IDR (false only for forced cuts).
    pub independent: bool,
    /// Wall-clock time of the first unit (`EXT-X-PROGRAM-DATE-TIME`).
    pub program_date_time: SystemTime,
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TsStats {
    /// Segments completed.
    pub segments: u64,
    /// Segments cut without an IDR.
    pub forced_cuts: u64,
    /// Units dropped before the first keyframe.
    pub dropped_before_start: u64,
    /// Units of a track the muxer was not built for.
    pub dropped_unconfigured: u64,
    /// Transport packets written.
    pub packets: u64,
}

struct OpenSegment {
    start_pts: i64,
    last_pts: i64,
    discontinuity: bool,
    independent: bool,
    program_date_time: SystemTime,
}

/// MPEG-TS segmenter; see the module doc.
pub struct TsMuxer {
    tracks: Tracks,
    config: TsConfig,
    target: i64,
    max: i64,
    lead: i64,
    buf: BytesMut,
    segment: Option<OpenSegment>,
    pending_discontinuity: bool,
    continuity: [u8; 4],
    last_pcr: Option<i64>,
    es: Vec<u8>,
    /// The AAC configuration of the open segment's audio frames.
    audio_config: Option<Arc<AacConfig>>,
    stats: TsStats,
}

impl std::fmt::Debug for TsMuxer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TsMuxer")
            .field("tracks", &self.tracks)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// Index into `continuity` per PID.
fn cc_index(pid: u16) -> usize {
    match pid {
        0 => 0,
        PMT_PID => 1,
        VIDEO_PID => 2,
        _ => 3,
    }
}

impl TsMuxer {
    /// A muxer for `tracks`.
    pub fn new(tracks: Tracks, config: TsConfig) -> Self {
        TsMuxer {
            tracks,
            config,
            target: duration_to_ticks(config.target_segment_duration),
            max: duration_to_ticks(
                config
                    .max_segment_duration
                    .max(config.target_segment_duration),
            ),
            lead: duration_to_ticks(config.keyframe_request_lead),
            buf: BytesMut::new(),
            segment: None,
            pending_discontinuity: false,
            continuity: [0; 4],
            last_pcr: None,
            es: Vec::new(),
            audio_config: None,
            stats: TsStats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> &TsStats {
        &self.stats
    }

    /// The configuration.
    pub fn config(&self) -> &TsConfig {
        &self.config
    }

    /// Whether the current segment is close enough to its target that the next keyframe
    /// should be requested now (the caller rate-limits through the PLI coalescer).
    pub fn keyframe_wanted(&self) -> bool {
        match &self.segment {
            Some(segment) if self.tracks.video => {
                segment.last_pts - segment.start_pts >= self.target - self.lead
            }
            _ => false,
        }
    }

    /// Adds one unit; returns the segment it completed, if any.
    pub fn write(&mut self, unit: &MediaUnit) -> Option<TsSegment> {
        match unit {
            MediaUnit::Video(au) => self.write_video(au),
            MediaUnit::Audio(frame) => self.write_audio(frame),
        }
    }

    /// Closes the open segment (end of stream); its duration runs to its last unit plus
    /// one frame.
    pub fn finish(&mut self) -> Option<TsSegment> {
        let end = self.segment.as_ref().map(|s| s.last_pts + 3000)?;
        self.close_segment(end)
    }

    fn write_video(&mut self, au: &VideoAccessUnit) -> Option<TsSegment> {
        if !self.tracks.video {
            self.stats.dropped_unconfigured += 1;
            return None;
        }
        if au.discontinuity {
            self.pending_discontinuity = true;
        }
        let mut finished = None;
        match &self.segment {
            None if !au.keyframe => {
                self.stats.dropped_before_start += 1;
                return None;
            }
            None => {}
            Some(segment) => {
                let elapsed = au.dts - segment.start_pts;
                let cut_on_idr =
                    au.keyframe && (elapsed >= self.target || self.pending_discontinuity);
                let forced = !au.keyframe && elapsed >= self.max;
                if forced && self.pending_discontinuity {
                    // A discontinuity waits for its keyframe (the pipeline always sends
                    // one); don't cut mid-GOP for it.
                } else if cut_on_idr || forced {
                    if forced {
                        self.stats.forced_cuts += 1;
                    }
                    finished = self.close_segment(au.dts);
                }
            }
        }
        if self.segment.is_none() {
            self.open_segment(au.dts, au.keyframe, au.wallclock);
        }
        self.extend_segment(au.dts);
        self.write_video_pes(au);
        finished
    }

    fn write_audio(&mut self, frame: &AudioFrame) -> Option<TsSegment> {
        if self.tracks.audio.is_none() {
            self.stats.dropped_unconfigured += 1;
            return None;
        }
        let config = Arc::clone(&frame.config);
        let config_changed = self
            .audio_config
            .as_ref()
            .is_some_and(|last| !Arc::ptr_eq(last, &config) && **last != *config);
        if config_changed {
            // Players take the ADTS parameters of a segment's first frame: start a new
            // segment (at the next IDR) for the new ones.
            self.pending_discontinuity = true;
        }
        let mut finished = None;
        if !self.tracks.video {
            if frame.discontinuity {
                self.pending_discontinuity = true;
            }
            if let Some(segment) = &self.segment
                && (frame.pts - segment.start_pts >= self.target || self.pending_discontinuity)
            {
                finished = self.close_segment(frame.pts);
            }
            if self.segment.is_none() {
                self.open_segment(frame.pts, true, frame.wallclock);
            }
        } else if self.segment.is_none() {
            self.stats.dropped_before_start += 1;
            return None;
        }
        self.extend_segment(frame.pts);
        self.audio_config = Some(Arc::clone(&config));

        self.es.clear();
        config.write_adts_header(frame.data.len(), &mut self.es);
        self.es.extend_from_slice(&frame.data);
        let pcr = self.pcr_due(AUDIO_PID, frame.pts, false);
        let es = std::mem::take(&mut self.es);
        self.write_pes(AUDIO_PID, 0xC0, frame.pts, None, &es, pcr, false);
        self.es = es;
        finished
    }

    fn open_segment(&mut self, pts: i64, independent: bool, program_date_time: SystemTime) {
        self.audio_config = None;
        self.segment = Some(OpenSegment {
            start_pts: pts,
            last_pts: pts,
            discontinuity: std::mem::take(&mut self.pending_discontinuity),
            independent,
            program_date_time,
        });
        self.buf.reserve(256 * 1024);
        self.write_pat();
        self.write_pmt();
    }

    fn extend_segment(&mut self, pts: i64) {
        if let Some(segment) = self.segment.as_mut() {
            segment.last_pts = segment.last_pts.max(pts);
        }
    }

    fn close_segment(&mut self, end_pts: i64) -> Option<TsSegment> {
        let segment = self.segment.take()?;
        self.stats.segments += 1;
        Some(TsSegment {
            data: self.buf.split().freeze(),
            start_pts: segment.start_pts,
            duration: (end_pts - segment.start_pts).max(1),
            discontinuity: segment.discontinuity,
            independent: segment.independent,
            program_date_time: segment.program_date_time,
        })
    }

    fn pcr_pid(&self) -> u16 {
        if self.tracks.video {
            VIDEO_PID
        } else {
            AUDIO_PID
        }
    }

    /// The PCR to carry now, if one is due: on the PCR PID's own PES when it is that PID
    /// (always on keyframes), else as a separate packet written here.
    fn pcr_due(&mut self, pid: u16, pts: i64, keyframe: bool) -> Option<i64> {
        let candidate = (pts + TS_TIME_OFFSET - PCR_DELAY).max(self.last_pcr.unwrap_or(0));
        let due = keyframe
            || self
                .last_pcr
                .is_none_or(|last| candidate - last >= PCR_INTERVAL);
        if !due {
            return None;
        }
        self.last_pcr = Some(candidate);
        if pid == self.pcr_pid() {
            Some(candidate)
        } else {
            self.write_pcr_only(candidate);
            None
        }
    }

    fn write_video_pes(&mut self, au: &VideoAccessUnit) {
        const START: [u8; 4] = [0, 0, 0, 1];
        self.es.clear();
        self.es.extend_from_slice(&START);
        self.es.extend_from_slice(&[0x09, 0xF0]); // AUD, primary_pic_type 7 (any)
        if au.keyframe {
            for parameter_set in [&au.params.sps, &au.params.pps] {
                self.es.extend_from_slice(&START);
                self.es.extend_from_slice(parameter_set);
            }
        }
        for nalu in &au.nalus {
            self.es.extend_from_slice(&START);
            self.es.extend_from_slice(nalu);
        }
        let pcr = self.pcr_due(VIDEO_PID, au.dts, au.keyframe);
        let es = std::mem::take(&mut self.es);
        let dts = (au.dts != au.pts).then_some(au.dts);
        self.write_pes(VIDEO_PID, 0xE0, au.pts, dts, &es, pcr, au.keyframe);
        self.es = es;
    }

    fn next_cc(&mut self, pid: u16) -> u8 {
        let counter = &mut self.continuity[cc_index(pid)];
        let value = *counter;
        *counter = (value + 1) & 0x0F;
        value
    }

    #[allow(clippy::too_many_arguments)]
    fn write_pes(
        &mut self,
        pid: u16,
        stream_id: u8,
        pts: i64,
        dts: Option<i64>,
        es: &[u8],
        pcr: Option<i64>,
        random_access: bool,
    ) {
        let mut header = [0u8; 19];
        header[..3].copy_from_slice(&[0, 0, 1]);
        header[3] = stream_id;
        let timestamps_len = if dts.is_some() { 10 } else { 5 };
        let pes_len = 3 + timestamps_len + es.len();
        // Video PES may be unbounded (length 0); audio always fits.
        let length_field = if stream_id == 0xE0 || pes_len > usize::from(u16::MAX) {
            0
        } else {
            pes_len as u16
        };
        header[4..6].copy_from_slice(&length_field.to_be_bytes());
        header[6] = 0x80; // '10', not scrambled, no priority/alignment/copyright/original
        match dts {
            None => {
                header[7] = 0x80; // PTS only
                header[8] = 5;
                write_timestamp(&mut header[9..14], 0x2, pts + TS_TIME_OFFSET);
            }
            Some(dts) => {
                header[7] = 0xC0; // PTS and DTS
                header[8] = 10;
                write_timestamp(&mut header[9..14], 0x3, pts + TS_TIME_OFFSET);
                write_timestamp(&mut header[14..19], 0x1, dts + TS_TIME_OFFSET);
            }
        }
        let header = &header[..9 + timestamps_len];

        // The PES header is always smaller than the first packet's payload room (at most
        // 184 − 8 bytes after a PCR adaptation field), so it goes whole into the first
        // packet and only the elementary stream is split.
        let mut rest = es;
        let mut unit_start = true;
        while unit_start || !rest.is_empty() {
            let (pcr, random_access) = if unit_start {
                (pcr, random_access)
            } else {
                (None, false)
            };
            let prefix: &[u8] = if unit_start { header } else { &[] };
            // `write_packet` never takes more than it was given.
            let consumed = self.write_packet(pid, unit_start, pcr, random_access, prefix, rest);
            rest = &rest[consumed..];
            unit_start = false;
        }
    }

    /// Writes one 188-byte packet: header, adaptation field (PCR, random access,
    /// stuffing) and as much of `prefix` + `payload` as fits; `prefix` must fit whole.
    /// Returns how many bytes of `payload` it took.
    fn write_packet(
        &mut self,
        pid: u16,
        unit_start: bool,
        pcr: Option<i64>,
        random_access: bool,
        prefix: &[u8],
        payload: &[u8],
    ) -> usize {
        let needs_field = pcr.is_some() || random_access;
        let field_min = if needs_field {
            2 + if pcr.is_some() { 6 } else { 0 }
        } else {
            0
        };
        let room = PACKET_SIZE - 4 - field_min - prefix.len();
        let take = payload.len().min(room);
        let stuffing = room - take;
        let has_field = needs_field || stuffing > 0;
        let cc = self.next_cc(pid);
        self.buf.put_u8(0x47);
        self.buf
            .put_u16((if unit_start { 0x4000 } else { 0 }) | (pid & 0x1FFF));
        self.buf.put_u8((if has_field { 0x30 } else { 0x10 }) | cc);
        if has_field {
            let field_len = field_min + stuffing; // bytes including the length byte
            self.buf.put_u8((field_len - 1) as u8);
            if field_len > 1 {
                let mut flags = 0u8;
                if random_access {
                    flags |= 0x40;
                }
                if pcr.is_some() {
                    flags |= 0x10;
                }
                self.buf.put_u8(flags);
                if let Some(pcr) = pcr {
                    write_pcr(&mut self.buf, pcr);
                }
                let used = 2 + if pcr.is_some() { 6 } else { 0 };
                self.buf.put_bytes(0xFF, field_len - used);
            }
        }
        self.buf.put_slice(prefix);
        self.buf.put_slice(&payload[..take]);
        self.stats.packets += 1;
        take
    }

    /// An adaptation-field-only packet carrying a PCR (continuity counter unchanged).
    fn write_pcr_only(&mut self, pcr: i64) {
        let pid = self.pcr_pid();
        let cc = self.continuity[cc_index(pid)].wrapping_sub(1) & 0x0F;
        self.buf.put_u8(0x47);
        self.buf.put_u16(pid & 0x1FFF);
        self.buf.put_u8(0x20 | cc); // adaptation field only
        self.buf.put_u8(183);
        self.buf.put_u8(0x10);
        write_pcr(&mut self.buf, pcr);
        self.buf.put_bytes(0xFF, 183 - 7);
        self.stats.packets += 1;
    }

    fn write_pat(&mut self) {
        let mut section = Vec::with_capacity(16);
        section.extend_from_slice(&[0x00, 0xB0, 13, 0x00, 0x01, 0xC1, 0x00, 0x00]);
        section.extend_from_slice(&[0x00, 0x01]); // program 1
        section.extend_from_slice(&(0xE000 | PMT_PID).to_be_bytes());
        self.write_section(0, section);
    }

    fn write_pmt(&mut self) {
        let mut streams = Vec::new();
        if self.tracks.video {
            streams.push((STREAM_TYPE_H264, VIDEO_PID));
        }
        if self.tracks.audio.is_some() {
            streams.push((STREAM_TYPE_AAC_ADTS, AUDIO_PID));
        }
        let section_length = 9 + 5 * streams.len() + 4;
        let mut section = Vec::with_capacity(3 + section_length);
        section.push(0x02);
        section.extend_from_slice(&(0xB000 | section_length as u16).to_be_bytes());
        section.extend_from_slice(&[0x00, 0x01, 0xC1, 0x00, 0x00]);
        section.extend_from_slice(&(0xE000 | self.pcr_pid()).to_be_bytes());
        section.extend_from_slice(&[0xF0, 0x00]); // program_info_length 0
        for (stream_type, pid) in streams {
            section.push(stream_type);
            section.extend_from_slice(&(0xE000 | pid).to_be_bytes());
            section.extend_from_slice(&[0xF0, 0x00]);
        }
        self.write_section(PMT_PID, section);
    }

    fn write_section(&mut self, pid: u16, mut section: Vec<u8>) {
        let crc = crc32_mpeg2(&section);
        section.extend_from_slice(&crc.to_be_bytes());
        let cc = self.next_cc(pid);
        self.buf.put_u8(0x47);
        self.buf.put_u16(0x4000 | pid);
        self.buf.put_u8(0x10 | cc);
        self.buf.put_u8(0); // pointer field
        self.buf.put_slice(&section);
        self.buf.put_bytes(0xFF, PACKET_SIZE - 5 - section.len());
        self.stats.packets += 1;
    }
}

/// Writes a 33-bit PES timestamp with its 4-bit prefix and marker bits.
fn write_timestamp(out: &mut [u8], prefix: u8, ticks: i64) {
    let t = (ticks & TIMESTAMP_MASK) as u64;
    out[0] = (prefix << 4) | (((t >> 30) as u8 & 0x07) << 1) | 1;
    out[1] = (t >> 22) as u8;
    out[2] = (((t >> 15) as u8 & 0x7F) << 1) | 1;
    out[3] = (t >> 7) as u8;
    out[4] = (((t as u8) & 0x7F) << 1) | 1;
}

fn write_pcr(out: &mut BytesMut, ticks: i64) {
    let base = (ticks & TIMESTAMP_MASK) as u64;
    out.put_u8((base >> 25) as u8);
    out.put_u8((base >> 17) as u8);
    out.put_u8((base >> 9) as u8);
    out.put_u8((base >> 1) as u8);
    out.put_u8((((base & 1) as u8) << 7) | 0x7E); // extension 0
    out.put_u8(0);
}

const fn crc_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u32) << 24;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04C1_1DB7
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
}

static CRC_TABLE: [u32; 256] = crc_table();

/// CRC-32/MPEG-2 of a PSI section.
pub fn crc32_mpeg2(data: &[u8]) -> u32 {
    data.iter().fold(0xFFFF_FFFF, |crc, &byte| {
        (crc << 8) ^ CRC_TABLE[((crc >> 24) as u8 ^ byte) as usize]
    })
}

/// Seconds of a 90 kHz duration, for playlists.
pub fn segment_seconds(duration: i64) -> f64 {
    duration as f64 / f64::from(TIMESCALE)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::flv::tests::{audio, video};
    use crate::media_unit::AacConfig;
    use crate::media_unit::test_support::{params_320, params_640};
    use mpeg2ts_reader::{demultiplex, packet, pes, psi};
    use std::cell::RefCell;
    use std::rc::Rc;
    use std::sync::Arc;

    /// What the independent parser saw.
    #[derive(Debug, Default)]
    pub(crate) struct TsReport {
        pub streams: Vec<(u8, u16)>,
        pub pcr_pid: Option<u16>,
        /// (pid, pts, payload) per PES.
        pub pes: Vec<(u16, u64, Vec<u8>)>,
        pub pcrs: Vec<u64>,
        pub continuity_errors: usize,
    }

    type Log = Rc<RefCell<TsReport>>;

    mpeg2ts_reader::packet_filter_switch! {
        Filters<Ctx> {
            Pes: pes::PesPacketFilter<Ctx, Collect>,
            Pat: demultiplex::PatPacketFilter<Ctx>,
            Pmt: demultiplex::PmtPacketFilter<Ctx>,
            Null: demultiplex::NullPacketFilter<Ctx>,
        }
    }
    pub struct Ctx {
        changeset: demultiplex::FilterChangeset<Filters>,
        log: Log,
    }
    impl demultiplex::DemuxContext for Ctx {
        type F = Filters;
        fn filter_changeset(&mut self) -> &mut demultiplex::FilterChangeset<Self::F> {
            &mut self.changeset
        }
        fn construct(&mut self, req: demultiplex::FilterRequest<'_, '_>) -> Self::F {
            match req {
                demultiplex::FilterRequest::ByPid(psi::pat::PAT_PID) => {
                    Filters::Pat(demultiplex::PatPacketFilter::default())
                }
                demultiplex::FilterRequest::ByPid(_) => {
                    Filters::Null(demultiplex::NullPacketFilter::default())
                }
                demultiplex::FilterRequest::ByStream {
                    stream_type,
                    pmt,
                    stream_info,
                    ..
                } => {
                    let pid = u16::from(stream_info.elementary_pid());
                    let mut log = self.log.borrow_mut();
                    if !log.streams.iter().any(|(_, p)| *p == pid) {
                        log.streams.push((u8::from(stream_type), pid));
                    }
                    log.pcr_pid = Some(u16::from(pmt.pcr_pid()));
                    Filters::Pes(pes::PesPacketFilter::new(Collect {
                        pid,
                        log: Rc::clone(&self.log),
                        current: None,
                    }))
                }
                demultiplex::FilterRequest::Pmt {
                    pid,
                    program_number,
                } => Filters::Pmt(demultiplex::PmtPacketFilter::new(pid, program_number)),
                demultiplex::FilterRequest::Nit { .. } => {
                    Filters::Null(demultiplex::NullPacketFilter::default())
                }
            }
        }
    }
    pub struct Collect {
        pid: u16,
        log: Log,
        current: Option<(u64, Vec<u8>)>,
    }
    impl pes::ElementaryStreamConsumer<Ctx> for Collect {
        fn start_stream(&mut self, _: &mut Ctx) {}
        fn begin_packet(&mut self, _: &mut Ctx, header: pes::PesHeader<'_>) {
            if let pes::PesContents::Parsed(Some(parsed)) = header.contents() {
                let pts = match parsed.pts_dts() {
                    Ok(pes::PtsDts::PtsOnly(Ok(pts))) => pts.value(),
                    other => panic!("expected PTS only, got {other:?}"),
                };
                self.current = Some((pts, parsed.payload().to_vec()));
            }
        }
        fn continue_packet(&mut self, _: &mut Ctx, data: &[u8]) {
            if let Some((_, payload)) = self.current.as_mut() {
                payload.extend_from_slice(data);
            }
        }
        fn end_packet(&mut self, _: &mut Ctx) {
            if let Some((pts, payload)) = self.current.take() {
                self.log.borrow_mut().pes.push((self.pid, pts, payload));
            }
        }
        fn continuity_error(&mut self, _: &mut Ctx) {
            self.log.borrow_mut().continuity_errors += 1;
        }
    }

    /// Parses a transport stream with `mpeg2ts-reader` and raw packet checks.
    pub(crate) fn parse_ts(data: &[u8]) -> TsReport {
        assert_eq!(data.len() % PACKET_SIZE, 0);
        let log: Log = Rc::default();
        let mut ctx = Ctx {
            changeset: demultiplex::FilterChangeset::default(),
            log: Rc::clone(&log),
        };
        let mut demux = demultiplex::Demultiplex::new(&mut ctx);
        demux.push(&mut ctx, data);
        // Unbounded video PES end at the next unit start; flush the last one by hand.
        for chunk in data.chunks(PACKET_SIZE) {
            let packet = packet::Packet::new(chunk);
            if let Some(field) = packet.adaptation_field()
                && let Ok(pcr) = field.pcr()
            {
                log.borrow_mut().pcrs.push(u64::from(pcr) / 300);
            }
        }
        drop(demux);
        drop(ctx);
        Rc::try_unwrap(log)
            .map(RefCell::into_inner)
            .unwrap_or_default()
    }

    fn tracks_av() -> (Tracks, Arc<AacConfig>) {
        let aac = Arc::new(AacConfig::lc(48_000, 2).unwrap());
        (
            Tracks {
                video: true,
                audio: Some(Arc::clone(&aac)),
            },
            aac,
        )
    }

    fn feed(muxer: &mut TsMuxer, units: &[MediaUnit]) -> Vec<TsSegment> {
        units.iter().filter_map(|u| muxer.write(u)).collect()
    }

    fn av_units(
        seconds: i64,
        gop: i64,
        params: &Arc<H264Params>,
        aac: &Arc<AacConfig>,
    ) -> Vec<MediaUnit> {
        let mut units = Vec::new();
        let frames = seconds * 30;
        let mut audio_pts = 0;
        for i in 0..frames {
            let pts = i * 3000;
            units.push(video(pts, i % gop == 0, params));
            while audio_pts <= pts {
                units.push(audio(audio_pts, aac));
                audio_pts += 1920;
            }
        }
        units
    }

    use crate::media_unit::H264Params;

    #[test]
    fn segments_parse_with_pat_pmt_pes_and_pcr() {
        let (tracks, aac) = tracks_av();
        let params = params_640();
        let mut muxer = TsMuxer::new(tracks, TsConfig::default());
        let units = av_units(7, 30, &params, &aac);
        let mut segments = feed(&mut muxer, &units);
        segments.extend(muxer.finish());
        assert_eq!(segments.len(), 4, "2 s segments on 1 s GOPs over 7 s");
        for (i, segment) in segments.iter().enumerate() {
            assert!(segment.independent);
            assert!(!segment.discontinuity);
            assert_eq!(segment.start_pts, i as i64 * 180_000);
            let report = parse_ts(&segment.data);
            assert_eq!(report.streams, vec![(0x1B, VIDEO_PID), (0x0F, AUDIO_PID)]);
            assert_eq!(report.pcr_pid, Some(VIDEO_PID));
            assert_eq!(report.continuity_errors, 0);
            let first_video = report
                .pes
                .iter()
                .find(|(pid, ..)| *pid == VIDEO_PID)
                .unwrap();
            // AUD, SPS, PPS, then the IDR.
            let es = &first_video.2;
            assert_eq!(&es[..6], &[0, 0, 0, 1, 0x09, 0xF0]);
            assert_eq!(&es[6..10], &[0, 0, 0, 1]);
            assert_eq!(&es[10..10 + params.sps.len()], &params.sps[..]);
            assert_eq!(first_video.1 as i64, segment.start_pts + TS_TIME_OFFSET);
            // PCR at least every 100 ms and never ahead of the timestamps.
            for pair in report.pcrs.windows(2) {
                assert!(pair[1] >= pair[0]);
                assert!(pair[1] - pair[0] <= 9_000, "PCR gap {}", pair[1] - pair[0]);
            }
            let first_pts = report.pes.iter().map(|p| p.1).min().unwrap();
            assert!(report.pcrs[0] <= first_pts);
            // Audio PES carry ADTS frames.
            let first_audio = report
                .pes
                .iter()
                .find(|(pid, ..)| *pid == AUDIO_PID)
                .unwrap();
            assert_eq!(&first_audio.2[..2], &[0xFF, 0xF1]);
            assert_eq!(first_audio.2.len(), 7 + 20);
        }
        // The first segment holds 60 frames, every one but the first with AUD and no SPS.
        let report = parse_ts(&segments[0].data);
        let videos: Vec<_> = report
            .pes
            .iter()
            .filter(|(pid, ..)| *pid == VIDEO_PID)
            .collect();
        // mpeg2ts-reader ends an unbounded PES at the next one, so the last is unseen.
        assert!(videos.len() >= 59);
        assert!(videos[1].2.windows(5).all(|w| w != [0, 0, 0, 1, 0x67]));
        assert_eq!(segments[0].duration, 180_000);
    }

    #[test]
    fn continuity_counters_run_across_segments() {
        let (tracks, aac) = tracks_av();
        let params = params_640();
        let mut muxer = TsMuxer::new(tracks, TsConfig::default());
        let mut segments = feed(&mut muxer, &av_units(5, 30, &params, &aac));
        segments.extend(muxer.finish());
        let all: Vec<u8> = segments.iter().flat_map(|s| s.data.to_vec()).collect();
        let mut last: std::collections::HashMap<u16, u8> = Default::default();
        for chunk in all.chunks(PACKET_SIZE) {
            assert_eq!(chunk[0], 0x47);
            let pid = u16::from_be_bytes([chunk[1], chunk[2]]) & 0x1FFF;
            let has_payload = chunk[3] & 0x10 != 0;
            let cc = chunk[3] & 0x0F;
            if let Some(prev) = last.get(&pid) {
                let expected = if has_payload {
                    (prev + 1) & 0x0F
                } else {
                    *prev
                };
                assert_eq!(cc, expected, "pid {pid:#x}");
            }
            last.insert(pid, cc);
        }
        assert_eq!(parse_ts(&all).continuity_errors, 0);
    }

    #[test]
    fn resolution_change_cuts_a_discontinuity_segment() {
        let (tracks, aac) = tracks_av();
        let (big, small) = (params_640(), params_320());
        let mut muxer = TsMuxer::new(tracks, TsConfig::default());
        let mut units = av_units(1, 30, &big, &aac);
        // 0.5 s into the second second, a new SPS arrives on a keyframe.
        if let MediaUnit::Video(mut au) = video(30 * 3000 + 15 * 3000, true, &small) {
            au.discontinuity = true;
            units.push(MediaUnit::Video(au));
        }
        units.push(video(46 * 3000, false, &small));
        let mut segments = feed(&mut muxer, &units);
        segments.extend(muxer.finish());
        assert_eq!(segments.len(), 2);
        assert!(!segments[0].discontinuity);
        assert!(segments[1].discontinuity);
        let report = parse_ts(&segments[1].data);
        let first = report
            .pes
            .iter()
            .find(|(pid, ..)| *pid == VIDEO_PID)
            .unwrap();
        assert_eq!(&first.2[10..10 + small.sps.len()], &small.sps[..]);
    }

    #[test]
    fn audio_only_segments_on_duration_with_audio_pcr() {
        let aac = Arc::new(AacConfig::lc(48_000, 2).unwrap());
        let mut muxer = TsMuxer::new(
            Tracks {
                video: false,
                audio: Some(Arc::clone(&aac)),
            },
            TsConfig::default(),
        );
        let units: Vec<_> = (0..250).map(|i| audio(i * 1920, &aac)).collect();
        let segments = feed(&mut muxer, &units);
        assert_eq!(segments.len(), 2);
        let report = parse_ts(&segments[0].data);
        assert_eq!(report.streams, vec![(0x0F, AUDIO_PID)]);
        assert_eq!(report.pcr_pid, Some(AUDIO_PID));
        assert!(report.pcrs.len() >= 40, "{} PCRs", report.pcrs.len());
        assert!(report.pcrs.windows(2).all(|w| w[1] - w[0] <= 9_000));
        assert!(!muxer.keyframe_wanted());
    }

    #[test]
    fn low_frame_rate_video_still_gets_pcr_via_audio() {
        let (tracks, aac) = tracks_av();
        let params = params_640();
        let mut muxer = TsMuxer::new(tracks, TsConfig::default());
        let mut units = Vec::new();
        let mut audio_pts = 0;
        for i in 0..10 {
            let pts = i * 45_000; // 2 fps
            units.push(video(pts, i == 0, &params));
            while audio_pts < pts + 45_000 {
                units.push(audio(audio_pts, &aac));
                audio_pts += 1920;
            }
        }
        feed(&mut muxer, &units);
        let segment = muxer.finish().unwrap();
        let report = parse_ts(&segment.data);
        for pair in report.pcrs.windows(2) {
            assert!(pair[1] - pair[0] <= 9_000);
        }
        assert_eq!(report.continuity_errors, 0);
    }

    #[test]
    fn keyframe_wanted_near_target_and_forced_cut_without_keyframes() {
        let (tracks, aac) = tracks_av();
        let params = params_640();
        let mut muxer = TsMuxer::new(tracks, TsConfig::default());
        let units = av_units(8, 1000, &params, &aac); // one keyframe at the start only
        let mut wanted_at = None;
        let mut segments = Vec::new();
        for unit in &units {
            segments.extend(muxer.write(unit));
            if wanted_at.is_none() && muxer.keyframe_wanted() {
                wanted_at = Some(unit.pts());
            }
        }
        let wanted_at = wanted_at.unwrap();
        assert!((150_000..=160_000).contains(&wanted_at), "{wanted_at}");
        assert_eq!(segments.len(), 1);
        assert!(segments[0].duration >= 6 * 90_000);
        assert_eq!(muxer.stats().forced_cuts, 1);
        assert!(muxer.finish().is_some_and(|s| !s.independent));
    }

    #[test]
    fn crc_matches_known_pat() {
        // The PAT ffmpeg writes for program 1 → PMT 0x1000.
        let section = [
            0x00, 0xB0, 0x0D, 0x00, 0x01, 0xC1, 0x00, 0x00, 0x00, 0x01, 0xF0, 0x00,
        ];
        assert_eq!(crc32_mpeg2(&section), 0x2AB1_04B2);
        assert_eq!(segment_seconds(90_000), 1.0);
    }
}
