//! FLV muxer (hand-written) with a live cache for joining viewers.
//!
//! Output is a stream of complete FLV tags, each followed by its `PreviousTagSize`, as
//! shared [`Bytes`]: [`FlvMuxer::write`] encodes a unit once and returns the chunks every
//! connected viewer should be sent (a clone per viewer is a reference-count increment).
//! [`FlvMuxer::join`] gives a new viewer what it needs to start at once: the FLV header,
//! `onMetaData`, the AVC and AAC sequence headers and the tags of the current GOP.
//!
//! Layout (Adobe FLV spec v10.1, annex E):
//! - header `FLV 1`, flags audio/video, then `PreviousTagSize0 = 0`;
//! - script tag `onMetaData` (AMF0 ECMA array: width, height, framerate, videocodecid 7,
//!   audiocodecid 10, audiosamplerate, stereo …), sent again when the resolution changes;
//! - video tags `0x17/0x27, AVCPacketType, CompositionTime` (pts − dts in ms, 0 without
//!   B-frames; the tag timestamp is the DTS), then either the
//!   AVCDecoderConfigurationRecord (sequence header) or 4-byte length-prefixed NAL units;
//! - audio tags `0xAF, AACPacketType`, then the 2-byte AudioSpecificConfig or a raw frame.
//!
//! The same tags (without the 11-byte tag header) are what RTMP carries; see
//! [`FlvTag::body`].

use crate::media_unit::{AacConfig, AudioFrame, H264Params, MediaUnit, Tracks, VideoAccessUnit};
use bytes::{BufMut, Bytes, BytesMut};
use std::sync::Arc;

/// FLV tag types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagType {
    /// 8: audio.
    Audio = 8,
    /// 9: video.
    Video = 9,
    /// 18: script data (`onMetaData`).
    Script = 18,
}

/// One encoded tag: the 11-byte header, the body and the 4-byte `PreviousTagSize`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlvTag {
    /// The tag type.
    pub tag_type: TagType,
    /// Timestamp in milliseconds (32-bit, wraps after ~49 days).
    pub timestamp_ms: u32,
    /// The whole tag as written to an FLV stream.
    pub bytes: Bytes,
}

impl FlvTag {
    /// The tag body alone (what an RTMP message carries); no copy.
    pub fn body(&self) -> Bytes {
        self.bytes.slice(11..self.bytes.len() - 4)
    }
}

/// GOP cache limits: a GOP larger than this is not cached (joiners then wait for the
/// next keyframe) so one huge GOP cannot hold memory.
const MAX_GOP_BYTES: usize = 16 * 1024 * 1024;
const MAX_GOP_TAGS: usize = 4096;
/// An FLV tag's body length is a 24-bit field.
const MAX_TAG_BODY: usize = 0xFF_FFFF;

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlvStats {
    /// Audio and video tags written (sequence headers and metadata not counted).
    pub tags: u64,
    /// Units dropped before the stream could start (no keyframe yet).
    pub dropped_before_start: u64,
    /// Units of a track this muxer was not built for.
    pub dropped_unconfigured: u64,
    /// Sequence headers written after the first (resolution changes).
    pub sequence_header_changes: u64,
    /// GOPs too large to cache.
    pub gop_cache_overflows: u64,
    /// Access units too large for an FLV tag (16 MiB).
    pub dropped_oversized: u64,
}

/// FLV muxer + live cache; see the module doc.
#[derive(Debug)]
pub struct FlvMuxer {
    tracks: Tracks,
    header: Bytes,
    metadata: Option<FlvTag>,
    video_sequence_header: Option<FlvTag>,
    audio_sequence_header: Option<FlvTag>,
    params: Option<Arc<H264Params>>,
    started: bool,
    gop: Vec<Bytes>,
    gop_bytes: usize,
    gop_valid: bool,
    buf: BytesMut,
    out: Vec<Bytes>,
    stats: FlvStats,
}

impl FlvMuxer {
    /// A muxer for `tracks`. With video, output starts at the first keyframe; audio-only
    /// starts at the first frame.
    pub fn new(tracks: Tracks) -> Self {
        let mut header = BytesMut::with_capacity(13);
        header.put_slice(b"FLV");
        header.put_u8(1);
        header.put_u8(
            if tracks.audio.is_some() { 0x04 } else { 0 } | if tracks.video { 0x01 } else { 0 },
        );
        header.put_u32(9);
        header.put_u32(0); // PreviousTagSize0
        FlvMuxer {
            tracks,
            header: header.freeze(),
            metadata: None,
            video_sequence_header: None,
            audio_sequence_header: None,
            params: None,
            started: false,
            gop: Vec::new(),
            gop_bytes: 0,
            gop_valid: false,
            buf: BytesMut::with_capacity(64 * 1024),
            out: Vec::new(),
            stats: FlvStats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> &FlvStats {
        &self.stats
    }

    /// The tracks this muxer was built for.
    pub fn tracks(&self) -> &Tracks {
        &self.tracks
    }

    /// Whether the stream has started (metadata and sequence headers exist).
    pub fn started(&self) -> bool {
        self.started
    }

    /// The FLV file header (13 bytes, including `PreviousTagSize0`).
    pub fn header(&self) -> Bytes {
        self.header.clone()
    }

    /// The current `onMetaData`, video and audio sequence header tags (what an RTMP push
    /// session sends after `publish`).
    pub fn sequence_tags(&self) -> Vec<FlvTag> {
        [
            &self.metadata,
            &self.video_sequence_header,
            &self.audio_sequence_header,
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect()
    }

    /// Everything a viewer joining now needs, in order: header, metadata, sequence
    /// headers and the current GOP. Before the stream starts, just the header (the
    /// metadata and sequence headers then come through [`Self::write`]).
    pub fn join(&self) -> Vec<Bytes> {
        let mut chunks = Vec::with_capacity(4 + self.gop.len());
        chunks.push(self.header.clone());
        if self.started {
            chunks.extend(self.sequence_tags().into_iter().map(|tag| tag.bytes));
            if self.gop_valid {
                chunks.extend(self.gop.iter().cloned());
            }
        }
        chunks
    }

    /// Encodes one unit. Returns the chunks to send to every connected viewer, in order
    /// (empty while waiting for the first keyframe).
    pub fn write(&mut self, unit: &MediaUnit) -> &[Bytes] {
        self.out.clear();
        match unit {
            MediaUnit::Video(au) => self.write_video(au),
            MediaUnit::Audio(frame) => self.write_audio(frame),
        }
        &self.out
    }

    fn write_video(&mut self, au: &VideoAccessUnit) {
        if !self.tracks.video {
            self.stats.dropped_unconfigured += 1;
            return;
        }
        if !self.started && !au.keyframe {
            self.stats.dropped_before_start += 1;
            return;
        }
        let timestamp = timestamp_ms(au.dts);
        let params_changed = self
            .params
            .as_ref()
            .is_none_or(|p| !Arc::ptr_eq(p, &au.params) && **p != *au.params);
        // After a change of parameter sets, the first picture also carries the new ones in
        // band: readers that keep parsing with the old sequence header (ffmpeg's H.264
        // parser ignores a new one mid-stream) then misread no slice.
        let in_band = (params_changed && self.params.is_some() && self.started)
            .then(|| [au.params.sps.clone(), au.params.pps.clone()]);
        let nalus = in_band.iter().flatten().chain(&au.nalus);
        let body_len = 5 + nalus.clone().map(|n| 4 + n.len()).sum::<usize>();
        if body_len > MAX_TAG_BODY {
            self.stats.dropped_oversized += 1;
            return;
        }
        if params_changed {
            if self.params.is_some() {
                self.stats.sequence_header_changes += 1;
            }
            self.params = Some(Arc::clone(&au.params));
            let metadata = self.metadata_tag(timestamp);
            let sequence_header = self.avc_sequence_header(&au.params, timestamp);
            self.metadata = Some(metadata.clone());
            self.video_sequence_header = Some(sequence_header.clone());
            if self.started {
                self.emit_live(metadata.bytes);
                self.emit_live(sequence_header.bytes);
            }
        }
        if !self.started {
            self.start(timestamp);
        }
        if au.keyframe {
            self.gop.clear();
            self.gop_bytes = 0;
            self.gop_valid = true;
        }

        self.begin_tag(TagType::Video, body_len, timestamp);
        self.buf.put_u8(if au.keyframe { 0x17 } else { 0x27 });
        self.buf.put_u8(1); // AVC NALU
        // CompositionTime (SI24, ms): what a reader adds to the tag's DTS to get the PTS.
        let composition =
            (timestamp_ms(au.pts).wrapping_sub(timestamp) as i32).clamp(-0x80_0000, 0x7F_FFFF);
        self.buf.put_slice(&composition.to_be_bytes()[1..]);
        for nalu in nalus {
            self.buf.put_u32(nalu.len() as u32);
            self.buf.put_slice(nalu);
        }
        let tag = self.end_tag(body_len);
        self.emit_media(tag);
    }

    fn write_audio(&mut self, frame: &AudioFrame) {
        if self.tracks.audio.is_none() {
            self.stats.dropped_unconfigured += 1;
            return;
        }
        let timestamp = timestamp_ms(frame.pts);
        if !self.started {
            if self.tracks.video {
                self.stats.dropped_before_start += 1;
                return;
            }
            self.start(timestamp);
        }
        if self.audio_sequence_header.as_ref().is_none()
            || self.tracks.audio.as_deref() != Some(&frame.config)
        {
            // Audio configuration changed (a session switching between RTMP ingest's AAC
            // and the transcoder's): a new sequence header, which is what describes audio
            // to players. Joiners also get metadata with the new values.
            self.tracks.audio = Some(Arc::clone(&frame.config));
            self.metadata = Some(self.metadata_tag(timestamp));
            let header = self.aac_sequence_header(&frame.config, timestamp);
            self.audio_sequence_header = Some(header.clone());
            self.emit_live(header.bytes);
        }
        let body_len = 2 + frame.data.len();
        self.begin_tag(TagType::Audio, body_len, timestamp);
        self.buf.put_u8(0xAF); // AAC, 44 kHz flag (always for AAC), 16-bit, stereo flag
        self.buf.put_u8(1); // AAC raw
        self.buf.put_slice(&frame.data);
        let tag = self.end_tag(body_len);
        self.emit_media(tag);
    }

    /// Creates metadata and sequence headers and emits them to the already-connected
    /// viewers.
    fn start(&mut self, timestamp: u32) {
        self.started = true;
        if self.metadata.is_none() {
            self.metadata = Some(self.metadata_tag(timestamp));
        }
        if let Some(config) = self.tracks.audio.clone()
            && self.audio_sequence_header.is_none()
        {
            self.audio_sequence_header = Some(self.aac_sequence_header(&config, timestamp));
        }
        for tag in self.sequence_tags() {
            self.out.push(tag.bytes);
        }
    }

    fn emit_live(&mut self, chunk: Bytes) {
        self.out.push(chunk);
    }

    fn emit_media(&mut self, chunk: Bytes) {
        self.stats.tags += 1;
        if self.tracks.video && self.gop_valid {
            if self.gop.len() >= MAX_GOP_TAGS || self.gop_bytes + chunk.len() > MAX_GOP_BYTES {
                self.stats.gop_cache_overflows += 1;
                self.gop.clear();
                self.gop_bytes = 0;
                self.gop_valid = false;
            } else {
                self.gop_bytes += chunk.len();
                self.gop.push(chunk.clone());
            }
        }
        self.out.push(chunk);
    }

    fn begin_tag(&mut self, tag_type: TagType, body_len: usize, timestamp: u32) {
        self.buf.reserve(11 + body_len + 4);
        self.buf.put_u8(tag_type as u8);
        self.buf.put_uint(body_len as u64 & 0xFF_FFFF, 3);
        self.buf.put_uint(u64::from(timestamp & 0xFF_FFFF), 3);
        self.buf.put_u8((timestamp >> 24) as u8);
        self.buf.put_uint(0, 3); // stream id
    }

    fn end_tag(&mut self, body_len: usize) -> Bytes {
        self.buf.put_u32((11 + body_len) as u32);
        self.buf.split().freeze()
    }

    fn finish_tag(&mut self, tag_type: TagType, body_len: usize, timestamp: u32) -> FlvTag {
        let bytes = self.end_tag(body_len);
        FlvTag {
            tag_type,
            timestamp_ms: timestamp,
            bytes,
        }
    }

    fn avc_sequence_header(&mut self, params: &H264Params, timestamp: u32) -> FlvTag {
        let body_len = 5 + params.avcc.len();
        self.begin_tag(TagType::Video, body_len, timestamp);
        self.buf.put_slice(&[0x17, 0, 0, 0, 0]);
        self.buf.put_slice(&params.avcc);
        self.finish_tag(TagType::Video, body_len, timestamp)
    }

    fn aac_sequence_header(&mut self, config: &AacConfig, timestamp: u32) -> FlvTag {
        let body_len = 2 + config.audio_specific_config.len();
        self.begin_tag(TagType::Audio, body_len, timestamp);
        self.buf.put_slice(&[0xAF, 0]);
        self.buf.put_slice(&config.audio_specific_config);
        self.finish_tag(TagType::Audio, body_len, timestamp)
    }

    fn metadata_tag(&mut self, timestamp: u32) -> FlvTag {
        let mut body = BytesMut::with_capacity(256);
        amf0_string(&mut body, "onMetaData");
        let mut entries: Vec<(&str, Amf0)> = vec![("duration", Amf0::Number(0.0))];
        if let (true, Some(params)) = (self.tracks.video, self.params.as_deref()) {
            entries.push(("width", Amf0::Number(f64::from(params.width))));
            entries.push(("height", Amf0::Number(f64::from(params.height))));
            entries.push(("videocodecid", Amf0::Number(7.0)));
            if let Some(fps) = params.frame_rate {
                entries.push(("framerate", Amf0::Number(fps)));
            }
        }
        if let Some(config) = self.tracks.audio.as_deref() {
            entries.push(("audiocodecid", Amf0::Number(10.0)));
            entries.push((
                "audiosamplerate",
                Amf0::Number(f64::from(config.sample_rate)),
            ));
            entries.push(("audiosamplesize", Amf0::Number(16.0)));
            entries.push(("audiochannels", Amf0::Number(f64::from(config.channels))));
            entries.push(("stereo", Amf0::Boolean(config.channels == 2)));
        }
        entries.push(("encoder", Amf0::String("queqiao")));
        body.put_u8(0x08); // ECMA array
        body.put_u32(entries.len() as u32);
        for (key, value) in &entries {
            body.put_u16(key.len() as u16);
            body.put_slice(key.as_bytes());
            match value {
                Amf0::Number(n) => {
                    body.put_u8(0x00);
                    body.put_f64(*n);
                }
                Amf0::Boolean(b) => {
                    body.put_u8(0x01);
                    body.put_u8(u8::from(*b));
                }
                Amf0::String(s) => amf0_string(&mut body, s),
            }
        }
        body.put_slice(&[0, 0, 0x09]); // object end
        let body_len = body.len();
        self.begin_tag(TagType::Script, body_len, timestamp);
        self.buf.put_slice(&body);
        self.finish_tag(TagType::Script, body_len, timestamp)
    }
}

enum Amf0<'a> {
    Number(f64),
    Boolean(bool),
    String(&'a str),
}

fn amf0_string(out: &mut BytesMut, value: &str) {
    out.put_u8(0x02);
    out.put_u16(value.len() as u16);
    out.put_slice(value.as_bytes());
}

/// 90 kHz → FLV milliseconds (negative clamps to 0; 32-bit wrap).
fn timestamp_ms(ticks: i64) -> u32 {
    (ticks.max(0) / 90) as u32
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::media_unit::test_support::{params_320, params_640};
    use std::time::SystemTime;

    /// An independent FLV reader for tests.
    #[derive(Debug, Clone, PartialEq)]
    pub(crate) struct ParsedTag {
        pub tag_type: u8,
        pub timestamp: u32,
        pub body: Vec<u8>,
    }

    pub(crate) fn parse_flv(data: &[u8]) -> (u8, Vec<ParsedTag>) {
        assert_eq!(&data[..3], b"FLV", "signature");
        assert_eq!(data[3], 1, "version");
        let flags = data[4];
        assert_eq!(u32::from_be_bytes(data[5..9].try_into().unwrap()), 9);
        assert_eq!(u32::from_be_bytes(data[9..13].try_into().unwrap()), 0);
        let mut tags = Vec::new();
        let mut pos = 13;
        while pos < data.len() {
            let tag_type = data[pos];
            let size =
                u32::from_be_bytes([0, data[pos + 1], data[pos + 2], data[pos + 3]]) as usize;
            let timestamp =
                u32::from_be_bytes([data[pos + 7], data[pos + 4], data[pos + 5], data[pos + 6]]);
            assert_eq!(&data[pos + 8..pos + 11], &[0, 0, 0], "stream id");
            let body = data[pos + 11..pos + 11 + size].to_vec();
            let previous =
                u32::from_be_bytes(data[pos + 11 + size..pos + 15 + size].try_into().unwrap());
            assert_eq!(previous as usize, size + 11, "PreviousTagSize");
            tags.push(ParsedTag {
                tag_type,
                timestamp,
                body,
            });
            pos += 15 + size;
        }
        assert_eq!(pos, data.len());
        (flags, tags)
    }

    /// Reads the AMF0 ECMA array of an `onMetaData` body into (key, number) pairs.
    pub(crate) fn parse_metadata(body: &[u8]) -> Vec<(String, f64)> {
        assert_eq!(body[0], 0x02);
        let len = u16::from_be_bytes([body[1], body[2]]) as usize;
        assert_eq!(&body[3..3 + len], b"onMetaData");
        let mut pos = 3 + len;
        assert_eq!(body[pos], 0x08);
        let count = u32::from_be_bytes(body[pos + 1..pos + 5].try_into().unwrap());
        pos += 5;
        let mut out = Vec::new();
        for _ in 0..count {
            let key_len = u16::from_be_bytes([body[pos], body[pos + 1]]) as usize;
            let key = String::from_utf8(body[pos + 2..pos + 2 + key_len].to_vec()).unwrap();
            pos += 2 + key_len;
            match body[pos] {
                0x00 => {
                    out.push((
                        key,
                        f64::from_be_bytes(body[pos + 1..pos + 9].try_into().unwrap()),
                    ));
                    pos += 9;
                }
                0x01 => {
                    out.push((key, f64::from(body[pos + 1])));
                    pos += 2;
                }
                0x02 => {
                    let len = u16::from_be_bytes([body[pos + 1], body[pos + 2]]) as usize;
                    pos += 3 + len;
                }
                other => panic!("unexpected AMF0 type {other}"),
            }
        }
        assert_eq!(&body[pos..], &[0, 0, 9]);
        out
    }

    pub(crate) fn video(pts: i64, keyframe: bool, params: &Arc<H264Params>) -> MediaUnit {
        MediaUnit::Video(VideoAccessUnit {
            pts,
            dts: pts,
            keyframe,
            nalus: vec![
                Bytes::from_static(&[0x06, 5, 1, 0x80]),
                Bytes::from(vec![if keyframe { 0x65 } else { 0x41 }; 50]),
            ],
            params: Arc::clone(params),
            discontinuity: false,
            wallclock: SystemTime::UNIX_EPOCH,
        })
    }

    pub(crate) fn audio(pts: i64, config: &Arc<AacConfig>) -> MediaUnit {
        MediaUnit::Audio(AudioFrame {
            pts,
            duration: 1920,
            data: Bytes::from(vec![0x21; 20]),
            config: Arc::clone(config),
            discontinuity: false,
            wallclock: SystemTime::UNIX_EPOCH,
        })
    }

    fn concat(chunks: impl IntoIterator<Item = Bytes>) -> Vec<u8> {
        chunks.into_iter().flat_map(|c| c.to_vec()).collect()
    }

    #[test]
    fn stream_layout_and_sequence_headers() {
        let aac = Arc::new(AacConfig::lc(48_000, 2).unwrap());
        let mut muxer = FlvMuxer::new(Tracks {
            video: true,
            audio: Some(Arc::clone(&aac)),
        });
        let params = params_640();
        let mut stream = muxer.join();
        assert_eq!(stream.len(), 1, "header only before start");
        // Audio before the first keyframe is dropped, a P-frame too.
        assert!(muxer.write(&audio(0, &aac)).is_empty());
        assert!(muxer.write(&video(1000, false, &params)).is_empty());
        for i in 0..30 {
            stream.extend(
                muxer
                    .write(&video(3000 * i, i % 10 == 0, &params))
                    .iter()
                    .cloned(),
            );
            stream.extend(muxer.write(&audio(1920 * i, &aac)).iter().cloned());
        }
        let (flags, tags) = parse_flv(&concat(stream));
        assert_eq!(flags, 0x05);
        // metadata, AVC seq header, AAC seq header, then media.
        assert_eq!(tags[0].tag_type, 18);
        let metadata = parse_metadata(&tags[0].body);
        let get = |k: &str| metadata.iter().find(|(key, _)| key == k).map(|(_, v)| *v);
        assert_eq!(get("width"), Some(640.0));
        assert_eq!(get("height"), Some(360.0));
        assert_eq!(get("videocodecid"), Some(7.0));
        assert_eq!(get("audiocodecid"), Some(10.0));
        assert_eq!(get("audiosamplerate"), Some(48_000.0));
        assert_eq!(tags[1].tag_type, 9);
        assert_eq!(&tags[1].body[..5], &[0x17, 0, 0, 0, 0]);
        assert_eq!(&tags[1].body[5..], &params.avcc[..]);
        assert_eq!(tags[2].body, vec![0xAF, 0, 0x11, 0x90]);
        let first_video = &tags[3];
        assert_eq!(first_video.tag_type, 9);
        assert_eq!(&first_video.body[..5], &[0x17, 1, 0, 0, 0]);
        // Length-prefixed NAL units.
        assert_eq!(&first_video.body[5..9], &[0, 0, 0, 4]);
        assert_eq!(&first_video.body[9..13], &[0x06, 5, 1, 0x80]);
        assert_eq!(&first_video.body[13..17], &[0, 0, 0, 50]);
        let video_tags: Vec<_> = tags.iter().filter(|t| t.tag_type == 9).skip(1).collect();
        assert_eq!(video_tags.len(), 30);
        assert_eq!(video_tags[10].body[0], 0x17);
        assert_eq!(video_tags[11].body[0], 0x27);
        assert_eq!(video_tags[29].timestamp, 29 * 3000 / 90);
        let audio_tags: Vec<_> = tags.iter().filter(|t| t.tag_type == 8).skip(1).collect();
        assert_eq!(audio_tags.len(), 30);
        assert_eq!(audio_tags[5].body[..2], [0xAF, 1]);
        assert_eq!(audio_tags[5].timestamp, 5 * 1920 / 90);
    }

    #[test]
    fn joiner_gets_headers_and_current_gop() {
        let aac = Arc::new(AacConfig::lc(48_000, 2).unwrap());
        let mut muxer = FlvMuxer::new(Tracks {
            video: true,
            audio: Some(Arc::clone(&aac)),
        });
        let params = params_640();
        let mut live = Vec::new();
        for i in 0..25 {
            live.push(muxer.write(&video(3000 * i, i % 10 == 0, &params)).to_vec());
            muxer.write(&audio(1920 * i, &aac));
        }
        let joined = muxer.join();
        let (_, tags) = parse_flv(&concat(joined.clone()));
        assert_eq!(tags[0].tag_type, 18);
        assert_eq!(tags[1].body[1], 0, "AVC sequence header");
        assert_eq!(tags[2].body[1], 0, "AAC sequence header");
        let media: Vec<_> = tags[3..].iter().collect();
        assert_eq!(media[0].body[0], 0x17, "GOP starts with the keyframe");
        assert_eq!(media[0].timestamp, 20 * 3000 / 90);
        assert_eq!(media.iter().filter(|t| t.tag_type == 9).count(), 5);
        // The cached GOP tags are the very same allocations sent live (encode once).
        let last_live = live.last().unwrap().last().unwrap();
        assert!(
            joined
                .iter()
                .any(|chunk| chunk.as_ptr() == last_live.as_ptr())
        );
    }

    #[test]
    fn resolution_change_sends_new_sequence_header() {
        let mut muxer = FlvMuxer::new(Tracks {
            video: true,
            audio: None,
        });
        let big = params_640();
        let small = params_320();
        let mut stream = muxer.join();
        stream.extend(muxer.write(&video(0, true, &big)).iter().cloned());
        stream.extend(muxer.write(&video(3000, false, &big)).iter().cloned());
        stream.extend(muxer.write(&video(6000, true, &small)).iter().cloned());
        let (flags, tags) = parse_flv(&concat(stream));
        assert_eq!(flags, 0x01);
        let sequence_headers: Vec<_> = tags
            .iter()
            .filter(|t| t.tag_type == 9 && t.body[1] == 0)
            .collect();
        assert_eq!(sequence_headers.len(), 2);
        assert_eq!(&sequence_headers[1].body[5..], &small.avcc[..]);
        let metadata: Vec<_> = tags.iter().filter(|t| t.tag_type == 18).collect();
        assert_eq!(metadata.len(), 2);
        assert!(parse_metadata(&metadata[1].body).contains(&("width".to_string(), 320.0)));
        assert_eq!(muxer.stats().sequence_header_changes, 1);
        // A joiner now gets the new sequence header.
        let (_, joined) = parse_flv(&concat(muxer.join()));
        assert_eq!(&joined[1].body[5..], &small.avcc[..]);
    }

    #[test]
    fn audio_only_starts_immediately() {
        let aac = Arc::new(AacConfig::lc(48_000, 1).unwrap());
        let mut muxer = FlvMuxer::new(Tracks {
            video: false,
            audio: Some(Arc::clone(&aac)),
        });
        let mut stream = muxer.join();
        stream.extend(muxer.write(&audio(0, &aac)).iter().cloned());
        stream.extend(muxer.write(&audio(1920, &aac)).iter().cloned());
        let (flags, tags) = parse_flv(&concat(stream));
        assert_eq!(flags, 0x04);
        assert_eq!(tags.len(), 4);
        assert_eq!(tags[1].body, vec![0xAF, 0, 0x11, 0x88]);
        let tag = muxer.sequence_tags()[1].clone();
        assert_eq!(&tag.body()[..], &[0xAF, 0, 0x11, 0x88]);
        assert!(
            !parse_metadata(&tags[0].body)
                .iter()
                .any(|(k, _)| k == "width")
        );
    }
}
