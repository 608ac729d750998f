//! Sans-IO parts of the HTTP players (`flv` and `hls` scenarios): an incremental FLV tag
//! reader, video-frame extraction from fMP4 fragments (LL-HLS parts) and MPEG-TS segments,
//! a small HLS / LL-HLS playlist reader, and [`FrameIndex`], which maps a received frame
//! back to the clip frame it came from (and so to the instant the publisher sent it).
//!
//! Frames are recognised by [`vcl_key`]: a hash of the first bytes of the frame's first
//! slice NAL unit after its header. Depacketization and remuxing keep NAL units byte for
//! byte (only the framing changes: RTP, AVCC length prefixes, Annex B start codes), so the
//! key survives every output of the bridge.

use crate::load::media::{PacketizedClip, is_vcl, vcl_key};
use std::collections::HashMap;

/// Why a stream could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// FLV stream without the `FLV` signature.
    #[error("not an FLV stream")]
    NotFlv,
    /// An FLV tag larger than any sane tag.
    #[error("FLV tag of {0} bytes")]
    TagTooLarge(usize),
    /// A box or table runs past its container.
    #[error("truncated or malformed {0}")]
    Malformed(&'static str),
}

/// Clip frame by the [`vcl_key`] of its first slice; frames whose key occurs more than once
/// in the clip are left out (ambiguous).
#[derive(Debug, Clone, Default)]
pub struct FrameIndex {
    keys: HashMap<u64, u32>,
    ambiguous: usize,
}

/// What a received frame turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameMatch {
    /// No slice NAL unit: not a video frame.
    NotVideo,
    /// A slice the clip does not have (or an ambiguous one).
    Unknown,
    /// Clip video frame with this index.
    Frame(u32),
}

impl FrameIndex {
    /// The index of a packetized clip's frames.
    pub fn new(clip: &PacketizedClip) -> Self {
        Self::from_keys(clip.video.iter().map(|f| f.vcl_key))
    }

    /// The index of frames with these keys, in clip order.
    pub fn from_keys(keys: impl IntoIterator<Item = Option<u64>>) -> Self {
        let mut seen: HashMap<u64, Option<u32>> = HashMap::new();
        for (i, key) in keys.into_iter().enumerate() {
            let Some(key) = key else { continue };
            seen.entry(key)
                .and_modify(|slot| *slot = None)
                .or_insert(Some(i as u32));
        }
        let ambiguous = seen.values().filter(|v| v.is_none()).count();
        FrameIndex {
            keys: seen
                .into_iter()
                .filter_map(|(k, v)| Some((k, v?)))
                .collect(),
            ambiguous,
        }
    }

    /// Frames with a unique key.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no frame can be recognised.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Keys shared by several frames.
    pub fn ambiguous(&self) -> usize {
        self.ambiguous
    }

    /// Matches a frame given as its NAL units (header byte first).
    pub fn lookup<'a>(&self, nals: impl IntoIterator<Item = &'a [u8]>) -> FrameMatch {
        match nals.into_iter().find(|nal| is_vcl(nal)) {
            None => FrameMatch::NotVideo,
            Some(nal) => self
                .keys
                .get(&vcl_key(nal))
                .map_or(FrameMatch::Unknown, |&i| FrameMatch::Frame(i)),
        }
    }

    /// Matches an AVCC sample (4-byte length-prefixed NAL units).
    pub fn lookup_avcc(&self, sample: &[u8]) -> FrameMatch {
        match avcc_nals(sample) {
            Some(nals) => self.lookup(nals),
            None => FrameMatch::NotVideo,
        }
    }

    /// Matches an Annex B access unit.
    pub fn lookup_annex_b(&self, au: &[u8]) -> FrameMatch {
        self.lookup(crate::clip::nal_units(au))
    }
}

/// The NAL units of an AVCC sample, or `None` unless the 4-byte lengths tile it exactly
/// (which also tells an audio sample from a video one).
pub fn avcc_nals(mut data: &[u8]) -> Option<Vec<&[u8]>> {
    let mut nals = Vec::new();
    while !data.is_empty() {
        let len = u32::from_be_bytes(data.get(..4)?.try_into().ok()?) as usize;
        let nal = data.get(4..4 + len)?;
        if nal.is_empty() {
            return None;
        }
        nals.push(nal);
        data = &data[4 + len..];
    }
    (!nals.is_empty()).then_some(nals)
}

// ---------------------------------------------------------------------------------------
// FLV

/// One complete FLV tag.
#[derive(Debug, Clone, Copy)]
pub struct FlvTag<'a> {
    /// 8 audio, 9 video, 18 script data.
    pub tag_type: u8,
    /// Milliseconds.
    pub timestamp: u32,
    /// The tag body.
    pub body: &'a [u8],
}

/// An AVC video tag's content.
#[derive(Debug, Clone)]
pub struct FlvVideo<'a> {
    /// Frame type 1 (keyframe).
    pub keyframe: bool,
    /// AVC packet type 0: sequence header (AVCDecoderConfigurationRecord).
    pub sequence_header: bool,
    /// NAL units of an AVC NALU packet (type 1); empty otherwise.
    pub nals: Vec<&'a [u8]>,
}

impl FlvTag<'_> {
    /// The AVC content of a video tag (codec id 7); `None` for anything else.
    pub fn video(&self) -> Option<FlvVideo<'_>> {
        if self.tag_type != 9 || self.body.len() < 5 || self.body[0] & 0x0f != 7 {
            return None;
        }
        let packet_type = self.body[1];
        Some(FlvVideo {
            keyframe: self.body[0] >> 4 == 1,
            sequence_header: packet_type == 0,
            nals: if packet_type == 1 {
                avcc_nals(&self.body[5..]).unwrap_or_default()
            } else {
                Vec::new()
            },
        })
    }
}

/// Largest tag accepted (a 4K IDR is well below).
const MAX_TAG: usize = 16 << 20;

/// Incremental FLV reader: feed it the body's chunks as they arrive.
#[derive(Debug, Default)]
pub struct FlvReader {
    buf: Vec<u8>,
    header_done: bool,
    tags: u64,
}

impl FlvReader {
    /// A reader expecting the FLV header.
    pub fn new() -> Self {
        Self::default()
    }

    /// Tags parsed so far.
    pub fn tags(&self) -> u64 {
        self.tags
    }

    /// Appends `data` and calls `on_tag` for every tag completed by it.
    pub fn push(
        &mut self,
        data: &[u8],
        mut on_tag: impl FnMut(FlvTag<'_>),
    ) -> Result<(), ParseError> {
        self.buf.extend_from_slice(data);
        let mut offset = 0;
        if !self.header_done {
            if self.buf.len() < 3 {
                return Ok(());
            }
            if &self.buf[..3] != b"FLV" {
                return Err(ParseError::NotFlv);
            }
            if self.buf.len() < 9 {
                return Ok(());
            }
            let header_len =
                u32::from_be_bytes([self.buf[5], self.buf[6], self.buf[7], self.buf[8]]) as usize;
            // Header, then PreviousTagSize0.
            if self.buf.len() < header_len + 4 {
                return Ok(());
            }
            offset = header_len + 4;
            self.header_done = true;
        }
        while self.buf.len() >= offset + 11 {
            let b = &self.buf[offset..];
            let len = (usize::from(b[1]) << 16) | (usize::from(b[2]) << 8) | usize::from(b[3]);
            if len > MAX_TAG {
                return Err(ParseError::TagTooLarge(len));
            }
            if b.len() < 11 + len + 4 {
                break;
            }
            let timestamp = (u32::from(b[7]) << 24)
                | (u32::from(b[4]) << 16)
                | (u32::from(b[5]) << 8)
                | u32::from(b[6]);
            on_tag(FlvTag {
                tag_type: b[0] & 0x1f,
                timestamp,
                body: &b[11..11 + len],
            });
            self.tags += 1;
            offset += 11 + len + 4;
        }
        self.buf.drain(..offset);
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// fMP4

fn be32(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(data.get(at..at + 4)?.try_into().ok()?))
}

fn be64(data: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(data.get(at..at + 8)?.try_into().ok()?))
}

/// One box: `(type, start of the box, start of its payload, end)`.
type BoxSpan = ([u8; 4], usize, usize, usize);

/// The boxes in `data`.
fn boxes(data: &[u8]) -> Result<Vec<BoxSpan>, ParseError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 8 <= data.len() {
        let size = be32(data, at).ok_or(ParseError::Malformed("box"))? as usize;
        let kind: [u8; 4] = data[at + 4..at + 8].try_into().unwrap_or_default();
        let (header, size) = match size {
            0 => (8, data.len() - at),
            1 => (
                16,
                be64(data, at + 8).ok_or(ParseError::Malformed("box"))? as usize,
            ),
            n => (8, n),
        };
        if size < header || at + size > data.len() {
            return Err(ParseError::Malformed("box"));
        }
        out.push((kind, at, at + header, at + size));
        at += size;
    }
    Ok(out)
}

/// The samples (as byte ranges of `data`) of every track fragment of every `moof` in
/// `data`, in order. Handles `tfhd` base data offsets, default-base-is-moof (and the
/// implicit moof base), default sample sizes and several `trun`s per `traf`.
pub fn fmp4_samples(data: &[u8]) -> Result<Vec<&[u8]>, ParseError> {
    let mut samples = Vec::new();
    for (kind, moof_start, payload, end) in boxes(data)? {
        if &kind != b"moof" {
            continue;
        }
        for (kind, _, traf, traf_end) in boxes(&data[payload..end])? {
            if &kind != b"traf" {
                continue;
            }
            let traf = &data[payload + traf..payload + traf_end];
            let mut base = moof_start;
            let mut default_size = None;
            let mut next = None::<usize>;
            for (kind, _, p, e) in boxes(traf)? {
                let b = &traf[p..e];
                let flags = be32(b, 0).ok_or(ParseError::Malformed("tfhd"))? & 0x00ff_ffff;
                match &kind {
                    b"tfhd" => {
                        let mut at = 8;
                        if flags & 0x01 != 0 {
                            base = be64(b, at).ok_or(ParseError::Malformed("tfhd"))? as usize;
                            at += 8;
                        }
                        for bit in [0x02, 0x08] {
                            if flags & bit != 0 {
                                at += 4;
                            }
                        }
                        if flags & 0x10 != 0 {
                            default_size =
                                Some(be32(b, at).ok_or(ParseError::Malformed("tfhd"))? as usize);
                        }
                    }
                    b"trun" => {
                        let count = be32(b, 4).ok_or(ParseError::Malformed("trun"))? as usize;
                        let mut at = 8;
                        let mut position = next.unwrap_or(base);
                        if flags & 0x01 != 0 {
                            let offset = be32(b, at).ok_or(ParseError::Malformed("trun"))? as i32;
                            position = (base as i64 + i64::from(offset)) as usize;
                            at += 4;
                        }
                        if flags & 0x04 != 0 {
                            at += 4;
                        }
                        let per_sample = [0x100, 0x200, 0x400, 0x800]
                            .iter()
                            .filter(|&&bit| flags & bit != 0)
                            .count()
                            * 4;
                        if count > b.len() {
                            return Err(ParseError::Malformed("trun"));
                        }
                        for _ in 0..count {
                            let size = if flags & 0x200 != 0 {
                                let skip = if flags & 0x100 != 0 { 4 } else { 0 };
                                be32(b, at + skip).ok_or(ParseError::Malformed("trun"))? as usize
                            } else {
                                default_size.ok_or(ParseError::Malformed("trun"))?
                            };
                            at += per_sample;
                            let sample = data
                                .get(position..position + size)
                                .ok_or(ParseError::Malformed("sample"))?;
                            samples.push(sample);
                            position += size;
                        }
                        next = Some(position);
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(samples)
}

// ---------------------------------------------------------------------------------------
// MPEG-TS

/// The video access units (Annex B, one per PES packet) of an MPEG-TS segment: the
/// payloads of PES packets with a video stream id (0xE0–0xEF), PES headers removed.
pub fn ts_video_access_units(data: &[u8]) -> Result<Vec<Vec<u8>>, ParseError> {
    if !data.len().is_multiple_of(188) {
        return Err(ParseError::Malformed("TS segment length"));
    }
    let mut open: HashMap<u16, Vec<u8>> = HashMap::new();
    let mut units = Vec::new();
    let finish = |pes: Vec<u8>, units: &mut Vec<Vec<u8>>| {
        if pes.len() >= 9 {
            let start = 9 + pes[8] as usize;
            if start <= pes.len() {
                units.push(pes[start..].to_vec());
            }
        }
    };
    for packet in data.chunks_exact(188) {
        if packet[0] != 0x47 {
            return Err(ParseError::Malformed("TS sync byte"));
        }
        let start = packet[1] & 0x40 != 0;
        let pid = (u16::from(packet[1] & 0x1f) << 8) | u16::from(packet[2]);
        let control = (packet[3] >> 4) & 0x3;
        let payload_at = match control {
            1 => 4,
            3 => 5 + packet[4] as usize,
            _ => continue,
        };
        let Some(payload) = packet.get(payload_at..) else {
            return Err(ParseError::Malformed("TS adaptation field"));
        };
        if start {
            if let Some(pes) = open.remove(&pid) {
                finish(pes, &mut units);
            }
            if payload.len() >= 4
                && payload[..3] == [0, 0, 1]
                && (0xe0..=0xef).contains(&payload[3])
            {
                open.insert(pid, payload.to_vec());
            }
        } else if let Some(pes) = open.get_mut(&pid) {
            pes.extend_from_slice(payload);
        }
    }
    // Close what is still open, in PID order for determinism (one video PID in practice).
    let mut rest: Vec<_> = open.into_iter().collect();
    rest.sort_by_key(|(pid, _)| *pid);
    for (_, pes) in rest {
        finish(pes, &mut units);
    }
    Ok(units)
}

// ---------------------------------------------------------------------------------------
// Playlists

/// A media segment of a playlist.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// Media sequence number.
    pub msn: u64,
    /// URI as written.
    pub uri: String,
    /// `EXTINF` seconds.
    pub duration: f64,
}

/// An LL-HLS partial segment.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    /// Media sequence number of the segment it belongs to.
    pub msn: u64,
    /// Index within that segment.
    pub index: u32,
    /// URI as written.
    pub uri: String,
    /// Seconds.
    pub duration: f64,
    /// `INDEPENDENT=YES` (starts with an IDR).
    pub independent: bool,
}

/// What the players need of a media playlist (HLS or LL-HLS).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Playlist {
    /// `EXT-X-TARGETDURATION`.
    pub target_duration: f64,
    /// `EXT-X-PART-INF:PART-TARGET`.
    pub part_target: Option<f64>,
    /// `EXT-X-MEDIA-SEQUENCE`.
    pub media_sequence: u64,
    /// The last `EXT-X-MAP` URI.
    pub map: Option<String>,
    /// Complete segments.
    pub segments: Vec<Segment>,
    /// Parts, in order (of complete segments and of the open one).
    pub parts: Vec<Part>,
    /// `EXT-X-PRELOAD-HINT` URI.
    pub preload_hint: Option<String>,
    /// `EXT-X-ENDLIST`.
    pub ended: bool,
}

fn attribute<'a>(attributes: &'a str, name: &str) -> Option<&'a str> {
    let mut rest = attributes;
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let (value, tail) = if let Some(quoted) = after.strip_prefix('"') {
            let (value, tail) = quoted.split_once('"')?;
            (value, tail.strip_prefix(',').unwrap_or(tail))
        } else {
            after.split_once(',').unwrap_or((after, ""))
        };
        if key.trim() == name {
            return Some(value);
        }
        rest = tail;
    }
    None
}

impl Playlist {
    /// Parses a media playlist; `None` unless it starts with `#EXTM3U`.
    pub fn parse(text: &str) -> Option<Playlist> {
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        if lines.next()? != "#EXTM3U" {
            return None;
        }
        let mut playlist = Playlist::default();
        let mut completed = 0u64;
        let mut part_index = 0u32;
        let mut extinf = None;
        for line in lines {
            if let Some(v) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
                playlist.target_duration = v.parse().unwrap_or(0.0);
            } else if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
                playlist.media_sequence = v.parse().unwrap_or(0);
            } else if let Some(v) = line.strip_prefix("#EXT-X-PART-INF:") {
                playlist.part_target = attribute(v, "PART-TARGET").and_then(|t| t.parse().ok());
            } else if let Some(v) = line.strip_prefix("#EXT-X-MAP:") {
                playlist.map = attribute(v, "URI").map(str::to_owned);
            } else if let Some(v) = line.strip_prefix("#EXT-X-PART:") {
                let Some(uri) = attribute(v, "URI") else {
                    continue;
                };
                playlist.parts.push(Part {
                    msn: playlist.media_sequence + completed,
                    index: part_index,
                    uri: uri.to_owned(),
                    duration: attribute(v, "DURATION")
                        .and_then(|d| d.parse().ok())
                        .unwrap_or(0.0),
                    independent: attribute(v, "INDEPENDENT") == Some("YES"),
                });
                part_index += 1;
            } else if let Some(v) = line.strip_prefix("#EXT-X-PRELOAD-HINT:") {
                playlist.preload_hint = attribute(v, "URI").map(str::to_owned);
            } else if let Some(v) = line.strip_prefix("#EXTINF:") {
                extinf = v.split(',').next().and_then(|d| d.trim().parse().ok());
            } else if line == "#EXT-X-ENDLIST" {
                playlist.ended = true;
            } else if !line.starts_with('#') {
                playlist.segments.push(Segment {
                    msn: playlist.media_sequence + completed,
                    uri: line.to_owned(),
                    duration: extinf.take().unwrap_or(0.0),
                });
                completed += 1;
                part_index = 0;
            }
        }
        Some(playlist)
    }

    /// Media sequence number of the segment after the last complete one.
    pub fn next_msn(&self) -> u64 {
        self.media_sequence + self.segments.len() as u64
    }

    /// Whether segment `msn` is complete (listed with its `EXTINF`).
    pub fn segment_complete(&self, msn: u64) -> bool {
        msn < self.next_msn()
    }

    /// The part that follows part `(msn, index)` once it exists: the next one of the
    /// same segment, or the first of the next segment if `msn` is complete and `index`
    /// was its last part. Used for the blocking reload `_HLS_msn`/`_HLS_part`.
    pub fn successor(&self, msn: u64, index: u32) -> (u64, u32) {
        let last_of_segment = self
            .parts
            .iter()
            .filter(|p| p.msn == msn)
            .map(|p| p.index)
            .max();
        if self.segment_complete(msn) && last_of_segment.is_none_or(|last| index >= last) {
            (msn + 1, 0)
        } else {
            (msn, index + 1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::media::ClipChoice;
    use bridge::media_unit::{H264Params, MediaUnit, Tracks, VideoAccessUnit};
    use bytes::{Bytes, BytesMut};
    use std::sync::Arc;

    fn clip() -> PacketizedClip {
        PacketizedClip::load(&ClipChoice::Builtin("720p".into())).unwrap()
    }

    /// The clip's frames as bridge access units (parameter sets split off, as the
    /// bridge's depacketizer does).
    fn access_units(frames: usize) -> Vec<VideoAccessUnit> {
        let raw = crate::clip::Clip::load(
            &crate::clip::media_dir().join("clip-720p.h264"),
            &crate::clip::media_dir().join("clip.ogg"),
            30,
        )
        .unwrap();
        let first = crate::clip::nal_units(&raw.video[0].annex_b);
        let sps = first.iter().find(|n| n[0] & 0x1f == 7).unwrap();
        let pps = first.iter().find(|n| n[0] & 0x1f == 8).unwrap();
        let params = Arc::new(
            H264Params::from_parameter_sets(
                Bytes::copy_from_slice(sps),
                Bytes::copy_from_slice(pps),
            )
            .unwrap(),
        );
        raw.video
            .iter()
            .take(frames)
            .enumerate()
            .map(|(i, f)| VideoAccessUnit {
                pts: i as i64 * 3000,
                dts: i as i64 * 3000,
                keyframe: f.keyframe,
                nalus: crate::clip::nal_units(&f.annex_b)
                    .into_iter()
                    .filter(|n| !matches!(n[0] & 0x1f, 7..=9))
                    .map(Bytes::copy_from_slice)
                    .collect(),
                params: Arc::clone(&params),
                discontinuity: false,
                wallclock: std::time::SystemTime::now(),
            })
            .collect()
    }

    #[test]
    fn every_clip_frame_has_a_unique_key() {
        let clip = clip();
        let index = FrameIndex::new(&clip);
        assert_eq!(index.len(), clip.video.len());
        assert_eq!(index.ambiguous(), 0);
        let duplicated = FrameIndex::from_keys([Some(1), Some(2), Some(1), None]);
        assert_eq!(duplicated.len(), 1);
        assert_eq!(duplicated.ambiguous(), 1);
    }

    #[test]
    fn keys_ignore_framing_and_tell_frames_apart() {
        let index =
            FrameIndex::from_keys([Some(vcl_key(&[0x65, 1, 2, 3])), Some(vcl_key(&[0x41, 9]))]);
        // The header byte is not part of the key.
        assert_eq!(index.lookup([&[0x25u8, 1, 2, 3][..]]), FrameMatch::Frame(0));
        assert_eq!(
            index.lookup([&[0x06u8, 5][..], &[0x41, 9][..]]),
            FrameMatch::Frame(1)
        );
        assert_eq!(index.lookup([&[0x41u8, 8][..]]), FrameMatch::Unknown);
        assert_eq!(index.lookup([&[0x67u8, 8][..]]), FrameMatch::NotVideo);
        assert_eq!(
            index.lookup_avcc(&[0, 0, 0, 2, 0x41, 9]),
            FrameMatch::Frame(1)
        );
        assert_eq!(
            index.lookup_avcc(&[0, 0, 0, 3, 0x41, 9]),
            FrameMatch::NotVideo
        );
        assert_eq!(
            index.lookup_annex_b(&[0, 0, 0, 1, 0x09, 0xf0, 0, 0, 1, 0x65, 1, 2, 3]),
            FrameMatch::Frame(0)
        );
        // A key covers at most VCL_KEY_BYTES after the header.
        let long: Vec<u8> = (0..200).map(|i| i as u8).collect();
        let mut other = long.clone();
        other[150] ^= 0xff;
        assert_eq!(vcl_key(&long), vcl_key(&other));
        other[10] ^= 0xff;
        assert_ne!(vcl_key(&long), vcl_key(&other));
    }

    #[test]
    fn flv_reader_finds_every_frame_of_the_bridge_muxer_in_any_chunking() {
        let clip = clip();
        let index = FrameIndex::new(&clip);
        let units = access_units(40);
        let mut muxer = bridge::FlvMuxer::new(Tracks {
            video: true,
            audio: None,
        });
        let mut stream = muxer.header().to_vec();
        for au in &units {
            for tag in muxer.write(&MediaUnit::Video(au.clone())) {
                stream.extend_from_slice(tag);
            }
        }
        for chunk in [1, 7, 1000, 65536] {
            let mut reader = FlvReader::new();
            let mut frames = Vec::new();
            let mut sequence_headers = 0;
            for piece in stream.chunks(chunk) {
                reader
                    .push(piece, |tag| {
                        if let Some(video) = tag.video() {
                            if video.sequence_header {
                                sequence_headers += 1;
                            }
                            if let FrameMatch::Frame(i) = index.lookup(video.nals.iter().copied()) {
                                frames.push((i, video.keyframe));
                            }
                        }
                    })
                    .unwrap();
            }
            assert!(sequence_headers >= 1);
            let expected: Vec<(u32, bool)> = (0..40)
                .map(|i| (i as u32, clip.video[i].keyframe))
                .collect();
            assert_eq!(frames, expected, "chunk {chunk}");
        }
        let mut reader = FlvReader::new();
        assert_eq!(
            reader.push(b"HTTP/1.1 200", |_| {}),
            Err(ParseError::NotFlv)
        );
    }

    #[test]
    fn fmp4_fragments_of_the_bridge_yield_their_frames() {
        use bridge::fmp4::{TrackRun, write_fragment};
        let index = FrameIndex::new(&clip());
        let units = access_units(12);
        let mut out = BytesMut::new();
        let mut video = TrackRun::new(1, 90_000, 3000);
        let mut audio = TrackRun::new(2, 48_000, 1024);
        // Two fragments of six frames, each with an audio run that must not match.
        for (n, group) in units.chunks(6).enumerate() {
            for au in group {
                video.push_video(au.pts, 0, au.keyframe, &au.nalus);
                audio.push_audio(au.pts, &[0x21, 0x10, 0x04, 0x60, 0x8c, 0x1c]);
            }
            let next = Some(group.last().unwrap().pts + 3000);
            write_fragment(
                n as u32 + 1,
                &mut [(&mut video, next), (&mut audio, next)],
                &mut out,
            )
            .unwrap();
        }
        let samples = fmp4_samples(&out).unwrap();
        assert_eq!(samples.len(), 24);
        let frames: Vec<u32> = samples
            .iter()
            .filter_map(|s| match index.lookup_avcc(s) {
                FrameMatch::Frame(i) => Some(i),
                _ => None,
            })
            .collect();
        assert_eq!(frames, (0..12).collect::<Vec<_>>());
        assert!(fmp4_samples(&out[..out.len() - 1]).is_err());
    }

    #[test]
    fn ts_segments_of_the_bridge_yield_their_frames() {
        let index = FrameIndex::new(&clip());
        let units = access_units(120);
        let mut muxer = bridge::ts::TsMuxer::new(
            Tracks {
                video: true,
                audio: None,
            },
            bridge::ts::TsConfig::default(),
        );
        let mut segments = Vec::new();
        for au in &units {
            segments.extend(muxer.write(&MediaUnit::Video(au.clone())));
        }
        segments.extend(muxer.finish());
        assert!(segments.len() >= 2, "{}", segments.len());
        let mut frames = Vec::new();
        for segment in &segments {
            for au in ts_video_access_units(&segment.data).unwrap() {
                match index.lookup_annex_b(&au) {
                    FrameMatch::Frame(i) => frames.push(i),
                    other => panic!("{other:?}"),
                }
            }
        }
        assert_eq!(frames, (0..120).collect::<Vec<_>>());
        assert!(ts_video_access_units(&segments[0].data[..187]).is_err());
    }

    #[test]
    fn playlists_and_blocking_reload_successors() {
        let text = "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:3\n\
            #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.600\n\
            #EXT-X-PART-INF:PART-TARGET=0.200\n#EXT-X-MEDIA-SEQUENCE:4\n\
            #EXT-X-MAP:URI=\"init0.mp4\"\n\
            #EXT-X-PROGRAM-DATE-TIME:2025-01-02T03:04:05.678Z\n\
            #EXT-X-PART:DURATION=0.20000,URI=\"part4.0.mp4\",INDEPENDENT=YES\n\
            #EXT-X-PART:DURATION=0.20000,URI=\"part4.1.mp4\"\n\
            #EXTINF:0.40000,\nseg4.mp4\n\
            #EXT-X-PART:DURATION=0.20000,URI=\"part5.0.mp4\",INDEPENDENT=YES\n\
            #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part5.1.mp4\"\n";
        let p = Playlist::parse(text).unwrap();
        assert_eq!(p.target_duration, 3.0);
        assert_eq!(p.part_target, Some(0.2));
        assert_eq!(p.map.as_deref(), Some("init0.mp4"));
        assert_eq!(p.segments.len(), 1);
        assert_eq!(p.segments[0].msn, 4);
        assert_eq!(p.segments[0].duration, 0.4);
        assert_eq!(p.parts.len(), 3);
        assert_eq!((p.parts[2].msn, p.parts[2].index), (5, 0));
        assert!(p.parts[2].independent && !p.parts[1].independent);
        assert_eq!(p.preload_hint.as_deref(), Some("part5.1.mp4"));
        assert_eq!(p.successor(4, 0), (4, 1));
        assert_eq!(p.successor(4, 1), (5, 0));
        assert_eq!(p.successor(5, 0), (5, 1));
        assert!(!p.ended);

        let ts = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:3\n#EXT-X-MEDIA-SEQUENCE:7\n\
            #EXTINF:2.000,\nseg7.ts\n#EXTINF:2.033,\nseg8.ts\n#EXT-X-ENDLIST\n";
        let p = Playlist::parse(ts).unwrap();
        assert_eq!(p.segments.len(), 2);
        assert_eq!(p.segments[1].msn, 8);
        assert_eq!(p.segments[1].uri, "seg8.ts");
        assert_eq!(p.segments[1].duration, 2.033);
        assert!(p.ended && p.parts.is_empty());
        assert!(Playlist::parse("{\"error\":1}").is_none());
    }
}
