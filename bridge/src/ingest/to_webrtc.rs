//! An RTMP publisher's FLV tag bodies → RTP payloads for WebRTC viewers.
//!
//! [`WebRtcConverter`] takes each [`NativeFrame`] as the RTMP session produced it and
//! returns [`SourcePacket`]s the SFU core fans out like a WHIP publisher's packets (the
//! core sets `epoch`, and recomputes `keyframe`/`frame_start` the same way; they are set
//! here too, with the same functions, so the packets are complete on their own):
//!
//! - **Video** (`[frame type << 4 | codec id 7][AVCPacketType][composition time i24]
//!   [data]`): the AVC sequence header configures the [`H264Packetizer`]; each AVC NALU
//!   packet is one access unit, packetized per RFC 6184 (STAP-A with SPS/PPS before every
//!   IDR). RTP timestamp = (DTS + composition time) ms × 90, i.e. the presentation time.
//! - **B-frames**: a WebRTC receiver decodes in arrival order and displays at once, so a
//!   reordered picture cannot be sent. A picture whose presentation time is not after the
//!   last one sent (what composition-time offsets do to B-frames, the test SRS uses), and
//!   a non-reference B picture (`nal_ref_idc` 0, B slice, even with a zero composition
//!   time from a careless muxer) are dropped and counted. Dropping a *reference* B picture
//!   (x264's B-pyramid) leaves the pictures that refer to it damaged until the next IDR;
//!   those are counted apart ([`ConverterStatus::reference_b_frames_dropped`]): tell the
//!   streamer to set `bframes=0` (or the baseline profile).
//! - **Audio** (`[sound format 10 << 4 | rate/size/type][AACPacketType][data]`): the
//!   AudioSpecificConfig opens an [`AacToOpus`] transcoder; AAC frames come out as 20 ms
//!   Opus packets on the 48 kHz clock (FLV ms × 48), so audio and video share the FLV
//!   timeline.
//! - **Changes mid-stream**: a new AVC sequence header replaces the parameter sets (the
//!   next IDR carries them); a different AudioSpecificConfig flushes the old transcoder
//!   and opens a new one. [`WebRtcConverter::take_codecs_changed`] tells the caller to
//!   update what new viewers are offered ([`WebRtcConverter::room_codecs`]).
//! - **Other codecs** (VP6, HEVC over enhanced RTMP, MP3, Speex …): an
//!   [`BridgeError::UnsupportedIngestVideoCodec`]/[`BridgeError::UnsupportedIngestAudioCodec`]
//!   naming the codec; the frame is dropped and counted. The bridge's own outputs take the
//!   native frames directly and are not affected by anything here.
//!
//! Every input is untrusted: bodies are length-checked, errors are returned for the frame
//! at hand only, and the converter stays usable (the fuzz target `ingest_to_webrtc`
//! drives it with arbitrary tags).

use crate::error::BridgeError;
use crate::ingest::aac_to_opus::{AacToOpus, AacToOpusConfig, OpusPacket};
use crate::ingest::h264_packetizer::{DEFAULT_MAX_PAYLOAD, H264Packetizer, RtpPayload};
use crate::media_unit::H264Params;
use bytes::Bytes;
use sfu::keyframe::is_keyframe;
use sfu::media::{Codec, MediaKind, NativeFrame, SourcePacket};
use sfu::peer::RoomCodecs;
use std::time::Instant;

/// FLV `CodecID` of AVC/H.264.
const FLV_CODEC_AVC: u8 = 7;
/// FLV `SoundFormat` of AAC.
const FLV_SOUND_AAC: u8 = 10;
/// FLV frame type of a video info/command frame (no picture).
const FLV_FRAME_COMMAND: u8 = 5;
/// A presentation time this far before the last one sent is a timeline jump (publisher
/// restarted its clock), not a reordered picture.
const TIMELINE_JUMP_MS: i64 = 1_000;
/// An Opus packet at most this far (48 kHz ticks, 200 ms) at or before the last one sent
/// overlaps it and is dropped.
const AUDIO_OVERLAP_TICKS: u32 = 200 * 48;

/// Converter settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConverterConfig {
    /// Largest RTP payload for video.
    pub max_payload: usize,
    /// The AAC → Opus transcoder's settings.
    pub audio: AacToOpusConfig,
}

impl Default for ConverterConfig {
    fn default() -> Self {
        ConverterConfig {
            max_payload: DEFAULT_MAX_PAYLOAD,
            audio: AacToOpusConfig::default(),
        }
    }
}

/// What the stream status API shows about an RTMP publisher's conversion for WebRTC.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ConverterStatus {
    /// RFC 6381 video codec string (`avc1.64001f`), once an SPS is known.
    pub video_codec: Option<String>,
    /// SDP `profile-level-id` of the H.264 stream (`64001f`).
    pub profile_level_id: Option<String>,
    /// Video width in pixels, if the SPS parsed.
    pub width: Option<u32>,
    /// Video height in pixels, if the SPS parsed.
    pub height: Option<u32>,
    /// Decoded AAC sample rate in Hz (before resampling to 48 kHz).
    pub audio_sample_rate: Option<u32>,
    /// Audio channels sent (1 or 2).
    pub audio_channels: Option<u8>,
    /// The publisher sends B-frames (they are dropped for WebRTC viewers).
    pub has_b_frames: bool,
    /// Pictures dropped because WebRTC cannot take them reordered.
    pub b_frames_dropped: u64,
    /// Of those, reference B pictures (B-pyramid): later pictures may show artefacts
    /// until the next IDR.
    pub reference_b_frames_dropped: u64,
    /// Opus packets dropped because they overlapped audio already sent (the tail of a
    /// replaced transcoder).
    pub audio_packets_dropped_overlap: u64,
    /// Native frames pushed (sequence headers included).
    pub frames_in: u64,
    /// Video access units sent as RTP.
    pub video_frames_out: u64,
    /// Opus packets sent.
    pub audio_packets_out: u64,
    /// RTP packets produced, both kinds.
    pub packets_out: u64,
    /// Frames of a codec WebRTC viewers cannot get (not H.264 / not AAC).
    pub unsupported_frames_dropped: u64,
    /// Frames dropped as malformed (truncated header, bad NAL lengths, corrupt AAC).
    pub malformed_frames_dropped: u64,
    /// Frames dropped because their sequence header had not come yet.
    pub frames_dropped_without_config: u64,
    /// AAC → Opus timeline re-anchors (timestamp jumps), over all transcoders.
    pub transcoder_re_anchors: u64,
    /// AudioSpecificConfig changes that opened a new transcoder (the first excluded).
    pub audio_config_changes: u64,
    /// AVC sequence headers with new parameter sets (the first included).
    pub video_config_changes: u64,
}

/// FLV tag bodies → WebRTC RTP; see the module doc.
pub struct WebRtcConverter {
    config: ConverterConfig,
    packetizer: H264Packetizer,
    /// Parsed parameter sets for the status (width/height), refreshed on change.
    video_params: Option<H264Params>,
    /// The SPS `video_params` was parsed from.
    video_params_sps: Option<Bytes>,
    audio: Option<AacToOpus>,
    audio_config: Option<Bytes>,
    video_sequence: u16,
    audio_sequence: u16,
    last_video_pts_ms: Option<i64>,
    last_audio_timestamp: Option<u32>,
    codecs_changed: bool,
    /// Re-anchors of transcoders already replaced.
    retired_re_anchors: u64,
    payloads: Vec<RtpPayload>,
    opus: Vec<OpusPacket>,
    status: ConverterStatus,
}

impl std::fmt::Debug for WebRtcConverter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebRtcConverter")
            .field("config", &self.config)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

impl Default for WebRtcConverter {
    fn default() -> Self {
        Self::new(ConverterConfig::default())
    }
}

impl WebRtcConverter {
    /// A converter waiting for its sequence headers. Sequence numbers start at 0 for both
    /// kinds (the SFU's forwarders rewrite them per viewer anyway).
    pub fn new(config: ConverterConfig) -> Self {
        WebRtcConverter {
            config,
            packetizer: H264Packetizer::new(config.max_payload),
            video_params: None,
            video_params_sps: None,
            audio: None,
            audio_config: None,
            video_sequence: 0,
            audio_sequence: 0,
            last_video_pts_ms: None,
            last_audio_timestamp: None,
            codecs_changed: false,
            retired_re_anchors: 0,
            payloads: Vec::new(),
            opus: Vec::new(),
            status: ConverterStatus::default(),
        }
    }

    /// Converts one frame and appends its packets (possibly none) to `out`.
    ///
    /// An error concerns this frame only (dropped and counted); the next one is converted
    /// as usual.
    pub fn push(
        &mut self,
        frame: &NativeFrame,
        out: &mut Vec<SourcePacket>,
    ) -> Result<(), BridgeError> {
        self.status.frames_in += 1;
        let result = match frame.kind {
            MediaKind::Video => self.push_video(frame, out),
            MediaKind::Audio => self.push_audio(frame, out),
        };
        if let Err(error) = &result {
            match error {
                BridgeError::UnsupportedIngestVideoCodec(_)
                | BridgeError::UnsupportedIngestAudioCodec(_) => {
                    self.status.unsupported_frames_dropped += 1;
                }
                _ => self.status.malformed_frames_dropped += 1,
            }
        }
        result
    }

    /// End of the stream: emits the audio still buffered in the transcoder.
    pub fn flush(&mut self, received_at: Instant, out: &mut Vec<SourcePacket>) {
        if let Some(audio) = self.audio.as_mut() {
            audio.flush(&mut self.opus);
        }
        self.emit_audio(received_at, out);
    }

    /// B-frames dropped so far (the one figure the ingest task follows per read; cheaper
    /// than a whole [`Self::status`]).
    pub fn b_frames_dropped(&self) -> u64 {
        self.status.b_frames_dropped
    }

    /// What the stream status API shows.
    pub fn status(&self) -> ConverterStatus {
        let mut status = self.status.clone();
        status.profile_level_id = self.packetizer.profile_level_id();
        status.video_codec = status
            .profile_level_id
            .as_ref()
            .map(|profile| format!("avc1.{profile}"));
        status.width = self.video_params.as_ref().map(|p| p.width);
        status.height = self.video_params.as_ref().map(|p| p.height);
        status.audio_sample_rate = self.audio.as_ref().map(AacToOpus::sample_rate);
        status.audio_channels = self.audio.as_ref().map(AacToOpus::channels);
        status.transcoder_re_anchors = self.retired_re_anchors
            + self
                .audio
                .as_ref()
                .map_or(0, |audio| audio.stats().re_anchors);
        status
    }

    /// What WebRTC viewers are offered: Opus once an AAC config came, H.264 with the
    /// stream's profile-level-id once an AVC config came.
    pub fn room_codecs(&self) -> RoomCodecs {
        RoomCodecs {
            audio: self.audio.as_ref().map(|_| Codec::Opus),
            video: self
                .packetizer
                .has_parameter_sets()
                .then(|| (Codec::H264, self.packetizer.profile_level_id())),
        }
    }

    /// Whether [`Self::room_codecs`] changed since the last call (a first or different
    /// sequence header); clears the flag.
    pub fn take_codecs_changed(&mut self) -> bool {
        std::mem::take(&mut self.codecs_changed)
    }

    fn push_video(
        &mut self,
        frame: &NativeFrame,
        out: &mut Vec<SourcePacket>,
    ) -> Result<(), BridgeError> {
        let body = &frame.body[..];
        let Some(&first) = body.first() else {
            return Err(BridgeError::MalformedIngestMedia("empty video tag".into()));
        };
        if first & 0x80 != 0 {
            // Enhanced RTMP: [IsExHeader | FrameType(3) | PacketType(4)][FourCC] …
            let fourcc = body
                .get(1..5)
                .map(|code| String::from_utf8_lossy(code).into_owned())
                .unwrap_or_else(|| "?".into());
            return Err(BridgeError::UnsupportedIngestVideoCodec(format!(
                "{fourcc} (enhanced RTMP)"
            )));
        }
        let frame_type = first >> 4;
        let codec_id = first & 0x0F;
        if codec_id != FLV_CODEC_AVC {
            return Err(BridgeError::UnsupportedIngestVideoCodec(
                flv_video_codec_name(codec_id).into(),
            ));
        }
        if frame_type == FLV_FRAME_COMMAND {
            return Ok(());
        }
        if body.len() < 5 {
            return Err(BridgeError::MalformedIngestMedia(
                "AVC video tag shorter than its 5-byte header".into(),
            ));
        }
        let packet_type = body[1];
        // Composition time: signed 24 bits.
        let composition_ms = i64::from(i32::from_be_bytes([body[2], body[3], body[4], 0]) >> 8);
        let data = &body[5..];
        match packet_type {
            0 => {
                let had_profile = self.packetizer.profile_level_id();
                if self.packetizer.set_decoder_config(data)? {
                    self.status.video_config_changes += 1;
                    self.refresh_video_params();
                    if had_profile != self.packetizer.profile_level_id() || had_profile.is_none() {
                        self.codecs_changed = true;
                    }
                }
                Ok(())
            }
            1 => self.push_access_unit(frame, data, composition_ms, out),
            // End of sequence, and anything newer: nothing to send.
            _ => Ok(()),
        }
    }

    fn push_access_unit(
        &mut self,
        frame: &NativeFrame,
        data: &[u8],
        composition_ms: i64,
        out: &mut Vec<SourcePacket>,
    ) -> Result<(), BridgeError> {
        let info = self.packetizer.inspect(data)?;
        if info.slices == 0 && !info.in_band_parameter_sets {
            return Ok(());
        }
        if !self.packetizer.has_parameter_sets() && !info.in_band_parameter_sets {
            self.status.frames_dropped_without_config += 1;
            return Ok(());
        }
        let pts_ms = i64::from(frame.timestamp_ms) + composition_ms;
        let reordered = !info.idr
            && self
                .last_video_pts_ms
                .is_some_and(|last| pts_ms <= last && last - pts_ms < TIMELINE_JUMP_MS);
        let disposable_b = info.slices > 0 && info.max_slice_nal_ref_idc == 0 && info.is_b_slice();
        if reordered || disposable_b {
            self.status.has_b_frames = true;
            self.status.b_frames_dropped += 1;
            if info.max_slice_nal_ref_idc != 0 {
                self.status.reference_b_frames_dropped += 1;
            }
            return Ok(());
        }

        self.payloads.clear();
        let sps_before = self.packetizer.sps().cloned();
        self.packetizer.packetize(data, &mut self.payloads)?;
        if self.packetizer.sps() != sps_before.as_ref() {
            let had_profile = sps_before
                .as_ref()
                .and_then(|sps| sps.get(1..4).map(<[u8]>::to_vec));
            self.refresh_video_params();
            let profile = self
                .packetizer
                .sps()
                .and_then(|sps| sps.get(1..4).map(<[u8]>::to_vec));
            if had_profile != profile {
                self.codecs_changed = true;
            }
        }
        if self.payloads.is_empty() {
            return Ok(());
        }
        self.last_video_pts_ms = Some(pts_ms);
        // 90 kHz, wrapping like any RTP timestamp.
        let timestamp = pts_ms.wrapping_mul(90) as u32;
        for (index, payload) in self.payloads.drain(..).enumerate() {
            out.push(SourcePacket {
                codec: Codec::H264,
                epoch: 0,
                sequence_number: self.video_sequence,
                timestamp,
                marker: payload.marker,
                keyframe: is_keyframe(Codec::H264, &payload.payload),
                frame_start: index == 0,
                video_orientation: None,
                received_at: frame.received_at,
                payload: payload.payload,
            });
            self.video_sequence = self.video_sequence.wrapping_add(1);
            self.status.packets_out += 1;
        }
        self.status.video_frames_out += 1;
        Ok(())
    }

    fn refresh_video_params(&mut self) {
        let sps = self.packetizer.sps().cloned();
        if sps == self.video_params_sps {
            return;
        }
        self.video_params = match (sps.clone(), self.packetizer.pps().cloned()) {
            (Some(sps), Some(pps)) => H264Params::from_parameter_sets(sps, pps).ok(),
            _ => None,
        };
        self.video_params_sps = sps;
    }

    fn push_audio(
        &mut self,
        frame: &NativeFrame,
        out: &mut Vec<SourcePacket>,
    ) -> Result<(), BridgeError> {
        let body = &frame.body[..];
        let Some(&first) = body.first() else {
            return Err(BridgeError::MalformedIngestMedia("empty audio tag".into()));
        };
        let sound_format = first >> 4;
        if sound_format != FLV_SOUND_AAC {
            let name = if sound_format == 9 {
                // Enhanced RTMP audio: [9 << 4 | PacketType][FourCC] …
                let fourcc = body
                    .get(1..5)
                    .map(|code| String::from_utf8_lossy(code).into_owned())
                    .unwrap_or_else(|| "?".into());
                format!("{fourcc} (enhanced RTMP)")
            } else {
                flv_sound_format_name(sound_format).into()
            };
            return Err(BridgeError::UnsupportedIngestAudioCodec(name));
        }
        if body.len() < 2 {
            return Err(BridgeError::MalformedIngestMedia(
                "AAC audio tag shorter than its 2-byte header".into(),
            ));
        }
        let data = &body[2..];
        match body[1] {
            0 => {
                if self.audio_config.as_deref() == Some(data) {
                    return Ok(());
                }
                // The old stream's tail goes out before the new transcoder starts.
                if let Some(mut old) = self.audio.take() {
                    old.flush(&mut self.opus);
                    self.retired_re_anchors += old.stats().re_anchors;
                    self.status.audio_config_changes += 1;
                    self.emit_audio(frame.received_at, out);
                }
                self.audio_config = Some(Bytes::copy_from_slice(data));
                self.codecs_changed = true;
                self.audio = Some(AacToOpus::new(data, self.config.audio)?);
                Ok(())
            }
            1 => {
                let Some(audio) = self.audio.as_mut() else {
                    self.status.frames_dropped_without_config += 1;
                    return Ok(());
                };
                let result = audio.push(data, frame.timestamp_ms, &mut self.opus);
                self.emit_audio(frame.received_at, out);
                result
            }
            other => Err(BridgeError::MalformedIngestMedia(format!(
                "unknown AACPacketType {other}"
            ))),
        }
    }

    fn emit_audio(&mut self, received_at: Instant, out: &mut Vec<SourcePacket>) {
        for packet in self.opus.drain(..) {
            if let Some(last) = self.last_audio_timestamp {
                // A new transcoder (or a small step back) overlapping audio already sent:
                // drop the overlap so timestamps never go back. A big step back is a
                // restarted publisher clock and passes.
                let behind = last.wrapping_sub(packet.rtp_timestamp);
                if behind < AUDIO_OVERLAP_TICKS {
                    self.status.audio_packets_dropped_overlap += 1;
                    continue;
                }
            }
            self.last_audio_timestamp = Some(packet.rtp_timestamp);
            out.push(SourcePacket {
                codec: Codec::Opus,
                epoch: 0,
                sequence_number: self.audio_sequence,
                timestamp: packet.rtp_timestamp,
                marker: false,
                keyframe: is_keyframe(Codec::Opus, &packet.payload),
                frame_start: true,
                video_orientation: None,
                received_at,
                payload: packet.payload,
            });
            self.audio_sequence = self.audio_sequence.wrapping_add(1);
            self.status.packets_out += 1;
            self.status.audio_packets_out += 1;
        }
    }
}

/// The FLV `CodecID` names (FLV spec v10.1 E.4.3.1, plus the common HEVC extension).
fn flv_video_codec_name(codec_id: u8) -> &'static str {
    match codec_id {
        1 => "JPEG",
        2 => "Sorenson H.263",
        3 => "Screen video",
        4 => "On2 VP6",
        5 => "On2 VP6 with alpha",
        6 => "Screen video v2",
        7 => "H.264",
        12 => "HEVC (codec id 12)",
        13 => "AV1 (codec id 13)",
        _ => "unknown FLV video codec",
    }
}

/// The FLV `SoundFormat` names (FLV spec v10.1 E.4.2.1).
fn flv_sound_format_name(format: u8) -> &'static str {
    match format {
        0 => "PCM (platform endian)",
        1 => "ADPCM",
        2 => "MP3",
        3 => "PCM little endian",
        4..=6 => "Nellymoser",
        7 => "G.711 A-law",
        8 => "G.711 mu-law",
        10 => "AAC",
        11 => "Speex",
        13 => "Opus (sound format 13)",
        14 => "MP3 8 kHz",
        15 => "device-specific sound",
        _ => "unknown FLV sound format",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::h264_depacketizer::H264Depacketizer;
    use crate::ingest::h264_packetizer::tests::{access_unit, avcc};
    use crate::ingest::h264_packetizer::{NaluIter, slice_type};
    use crate::media_unit::test_support::{PPS, SPS_320X180, SPS_640X360};
    use std::path::Path;
    use std::sync::Arc;

    /// One FLV tag: type 8 audio, 9 video.
    struct FlvTag {
        tag_type: u8,
        timestamp_ms: u32,
        body: Bytes,
    }

    /// Parses an FLV file: 9-byte header, PreviousTagSize0, then 11-byte tag headers.
    fn parse_flv(data: &[u8]) -> Vec<FlvTag> {
        assert_eq!(&data[..3], b"FLV", "not an FLV file");
        let header_len = u32::from_be_bytes([data[5], data[6], data[7], data[8]]) as usize;
        let mut offset = header_len + 4;
        let mut tags = Vec::new();
        while offset + 11 <= data.len() {
            let header = &data[offset..offset + 11];
            let tag_type = header[0] & 0x1F;
            let size = u32::from_be_bytes([0, header[1], header[2], header[3]]) as usize;
            let timestamp_ms = u32::from_be_bytes([header[7], header[4], header[5], header[6]]);
            let start = offset + 11;
            let Some(body) = data.get(start..start + size) else {
                break;
            };
            tags.push(FlvTag {
                tag_type,
                timestamp_ms,
                body: Bytes::copy_from_slice(body),
            });
            offset = start + size + 4;
        }
        tags
    }

    /// Runs Debian's ffmpeg to make a 3 s FLV with H.264 and AAC.
    fn make_flv(dir: &Path, name: &str, video_args: &[&str]) -> Vec<u8> {
        let path = dir.join(name);
        let mut command = std::process::Command::new("ffmpeg");
        command.args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=30",
            "-f",
            "lavfi",
            "-i",
            "sine=f=440:sample_rate=44100",
            "-t",
            "3",
            "-c:v",
            "libx264",
        ]);
        command.args(video_args);
        command.args(["-g", "60", "-c:a", "aac", "-f", "flv"]);
        command.arg(&path);
        let output = command.output().unwrap_or_else(|error| {
            panic!(
                "ffmpeg could not be run ({error}): this test needs Debian's ffmpeg \
                 (apt-get install -y ffmpeg)"
            )
        });
        assert!(
            output.status.success(),
            "ffmpeg failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        std::fs::read(&path).expect("ffmpeg wrote the file")
    }

    fn native(tag: &FlvTag, at: Instant) -> Option<NativeFrame> {
        let kind = match tag.tag_type {
            8 => MediaKind::Audio,
            9 => MediaKind::Video,
            _ => return None,
        };
        Some(NativeFrame {
            kind,
            timestamp_ms: tag.timestamp_ms,
            body: tag.body.clone(),
            received_at: at,
        })
    }

    /// Splits video packets into access units by `frame_start`.
    fn access_units(packets: &[SourcePacket]) -> Vec<Vec<SourcePacket>> {
        let mut units: Vec<Vec<SourcePacket>> = Vec::new();
        for packet in packets.iter().filter(|p| p.codec == Codec::H264) {
            if packet.frame_start || units.is_empty() {
                units.push(Vec::new());
            }
            units.last_mut().expect("pushed").push(packet.clone());
        }
        units
    }

    /// The slices of the FLV's AVC NALU tags, per tag, in order.
    fn flv_slices(tags: &[FlvTag]) -> Vec<(u32, i64, Vec<Bytes>)> {
        let mut length_size = 4;
        let mut out = Vec::new();
        for tag in tags.iter().filter(|t| t.tag_type == 9) {
            match tag.body[1] {
                0 => length_size = usize::from(tag.body[5 + 4] & 3) + 1,
                1 => {
                    let cts = i64::from(
                        i32::from_be_bytes([tag.body[2], tag.body[3], tag.body[4], 0]) >> 8,
                    );
                    let slices = NaluIter::new(&tag.body[5..], length_size)
                        .map(|n| n.expect("ffmpeg writes valid AUs"))
                        .filter(|n| matches!(n[0] & 0x1F, 1..=5))
                        .map(Bytes::copy_from_slice)
                        .collect();
                    out.push((tag.timestamp_ms, cts, slices));
                }
                _ => {}
            }
        }
        out
    }

    fn convert(tags: &[FlvTag]) -> (WebRtcConverter, Vec<SourcePacket>) {
        let now = Instant::now();
        let mut converter = WebRtcConverter::default();
        let mut packets = Vec::new();
        for tag in tags {
            if let Some(frame) = native(tag, now) {
                converter.push(&frame, &mut packets).expect("valid stream");
            }
        }
        converter.flush(now, &mut packets);
        (converter, packets)
    }

    /// Depacketizes the video packets (with fresh sequence numbers, as sent).
    fn depacketize(packets: &[SourcePacket]) -> Vec<crate::h264_depacketizer::H264Frame> {
        let now = Instant::now();
        let mut depacketizer = H264Depacketizer::default();
        let mut frames = Vec::new();
        for packet in packets.iter().filter(|p| p.codec == Codec::H264) {
            depacketizer
                .push(Arc::new(packet.clone()), now, &mut frames)
                .expect("H.264");
        }
        depacketizer.flush(now, &mut frames);
        assert_eq!(depacketizer.stats().lost_packets, 0);
        frames
    }

    fn check_audio(packets: &[SourcePacket]) {
        let audio: Vec<&SourcePacket> = packets.iter().filter(|p| p.codec == Codec::Opus).collect();
        // 3 s of audio = 150 packets (± encoder priming and the last partial frame).
        assert!(
            (145..=156).contains(&audio.len()),
            "{} audio packets",
            audio.len()
        );
        for pair in audio.windows(2) {
            assert_eq!(pair[1].timestamp.wrapping_sub(pair[0].timestamp), 960);
            assert_eq!(
                pair[1].sequence_number,
                pair[0].sequence_number.wrapping_add(1)
            );
        }
        let mut decoder = opus::Decoder::new(48_000, opus::Channels::Mono).unwrap();
        let mut pcm = Vec::new();
        let mut buffer = vec![0f32; 5760];
        for packet in &audio {
            let n = decoder
                .decode_float(&packet.payload, &mut buffer, false)
                .unwrap();
            pcm.extend_from_slice(&buffer[..n]);
        }
        let middle = &pcm[pcm.len() / 4..pcm.len() * 3 / 4];
        let crossings = middle
            .windows(2)
            .filter(|w| (w[0] < 0.0) != (w[1] < 0.0))
            .count();
        let frequency = crossings as f32 / 2.0 / (middle.len() as f32 / 48_000.0);
        assert!((430.0..450.0).contains(&frequency), "{frequency} Hz");
    }

    #[test]
    fn baseline_flv_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let flv = make_flv(dir.path(), "baseline.flv", &["-profile:v", "baseline"]);
        let tags = parse_flv(&flv);
        let (converter, packets) = convert(&tags);
        let status = converter.status();
        assert_eq!(
            status.profile_level_id.as_deref().map(|p| &p[..2]),
            Some("42")
        );
        assert_eq!((status.width, status.height), (Some(320), Some(240)));
        assert_eq!(status.audio_sample_rate, Some(44_100));
        assert!(!status.has_b_frames);
        assert_eq!(status.b_frames_dropped, 0);
        assert_eq!(status.malformed_frames_dropped, 0);

        // The first packet is a keyframe STAP-A with SPS and PPS.
        let video: Vec<SourcePacket> = packets
            .iter()
            .filter(|p| p.codec == Codec::H264)
            .cloned()
            .collect();
        assert!(video[0].keyframe && video[0].frame_start);
        assert_eq!(video[0].payload[0] & 0x1F, 24);
        let expected = flv_slices(&tags);
        let units = access_units(&video);
        assert_eq!(units.len(), expected.len());
        assert_eq!(status.video_frames_out as usize, expected.len());
        for (unit, (dts, cts, _)) in units.iter().zip(&expected) {
            assert!(
                unit.iter()
                    .all(|p| p.timestamp == ((i64::from(*dts) + cts) * 90) as u32)
            );
            assert_eq!(unit.iter().filter(|p| p.marker).count(), 1);
            assert!(unit.last().unwrap().marker);
            assert!(unit.iter().all(|p| p.payload.len() <= DEFAULT_MAX_PAYLOAD));
        }
        for pair in video.windows(2) {
            assert_eq!(
                pair[1].sequence_number,
                pair[0].sequence_number.wrapping_add(1)
            );
        }
        // Every access unit depacketizes back to the same slices.
        let frames = depacketize(&video);
        assert_eq!(frames.len(), expected.len());
        for (frame, (_, _, slices)) in frames.iter().zip(&expected) {
            let got: Vec<&Bytes> = frame
                .nalus
                .iter()
                .filter(|n| matches!(n[0] & 0x1F, 1..=5))
                .collect();
            assert_eq!(got, slices.iter().collect::<Vec<_>>());
        }
        assert!(frames[0].keyframe);
        assert_eq!(
            frames.iter().filter(|f| f.keyframe).count(),
            2,
            "GOP 60 over 90 frames"
        );
        assert_eq!(
            (frames[0].params.width, frames[0].params.height),
            (320, 240)
        );
        check_audio(&packets);
        let codecs = converter.room_codecs();
        assert_eq!(codecs.audio, Some(Codec::Opus));
        assert_eq!(codecs.video.map(|(c, _)| c), Some(Codec::H264));
    }

    #[test]
    fn b_frames_are_dropped_and_timestamps_stay_monotonic() {
        let dir = tempfile::tempdir().unwrap();
        let flv = make_flv(
            dir.path(),
            "bframes.flv",
            &["-profile:v", "main", "-bf", "2"],
        );
        let tags = parse_flv(&flv);
        let (converter, packets) = convert(&tags);
        let status = converter.status();
        assert!(status.has_b_frames);
        assert!(status.b_frames_dropped > 20, "{}", status.b_frames_dropped);
        assert_eq!(
            status.profile_level_id.as_deref().map(|p| &p[..2]),
            Some("4d")
        );
        let expected = flv_slices(&tags);
        assert_eq!(
            status.video_frames_out + status.b_frames_dropped,
            expected.len() as u64
        );
        let video: Vec<SourcePacket> = packets
            .iter()
            .filter(|p| p.codec == Codec::H264)
            .cloned()
            .collect();
        assert!(video[0].keyframe);
        let units = access_units(&video);
        for pair in units.windows(2) {
            let step = pair[1][0].timestamp.wrapping_sub(pair[0][0].timestamp) as i32;
            assert!(step > 0, "timestamps go forward");
        }
        let frames = depacketize(&video);
        assert_eq!(frames.len(), units.len());
        for frame in &frames {
            for slice in frame.nalus.iter().filter(|n| matches!(n[0] & 0x1F, 1..=5)) {
                let kind = slice_type(slice).expect("slice header");
                assert!(!matches!(kind, 1 | 6), "a B slice was sent");
            }
        }
        // What was sent is exactly the non-B pictures, slices intact.
        let sent: Vec<&Vec<Bytes>> = expected
            .iter()
            .filter(|(_, _, slices)| !matches!(slice_type(&slices[0]), Some(1 | 6)))
            .map(|(_, _, slices)| slices)
            .collect();
        assert_eq!(sent.len(), frames.len());
        for (frame, slices) in frames.iter().zip(sent) {
            let got: Vec<&Bytes> = frame
                .nalus
                .iter()
                .filter(|n| matches!(n[0] & 0x1F, 1..=5))
                .collect();
            assert_eq!(got, slices.iter().collect::<Vec<_>>());
        }
        check_audio(&packets);
    }

    fn video_tag(frame_type: u8, packet_type: u8, cts: i32, data: &[u8]) -> Bytes {
        let mut body = vec![frame_type << 4 | 7, packet_type];
        body.extend_from_slice(&cts.to_be_bytes()[1..]);
        body.extend_from_slice(data);
        Bytes::from(body)
    }

    fn frame(kind: MediaKind, timestamp_ms: u32, body: Bytes) -> NativeFrame {
        NativeFrame {
            kind,
            timestamp_ms,
            body,
            received_at: Instant::now(),
        }
    }

    fn idr() -> Vec<u8> {
        let mut nalu = vec![0x65, 0b1000_1000];
        nalu.extend(std::iter::repeat_n(0x5A, 2000));
        nalu
    }

    #[test]
    fn new_sequence_header_changes_parameter_sets_before_next_idr() {
        let mut converter = WebRtcConverter::default();
        let mut out = Vec::new();
        let config = avcc(&[SPS_640X360], &[PPS], 4);
        converter
            .push(
                &frame(MediaKind::Video, 0, video_tag(1, 0, 0, &config)),
                &mut out,
            )
            .unwrap();
        assert!(converter.take_codecs_changed());
        assert!(!converter.take_codecs_changed());
        let idr = idr();
        let au = access_unit(&[&idr], 4);
        converter
            .push(
                &frame(MediaKind::Video, 0, video_tag(1, 1, 0, &au)),
                &mut out,
            )
            .unwrap();
        assert_eq!(converter.status().width, Some(640));
        assert_eq!(&out[0].payload[3..3 + SPS_640X360.len()], SPS_640X360);

        // New resolution (same profile-level-id bytes? no: level differs).
        out.clear();
        let config = avcc(&[SPS_320X180], &[PPS], 4);
        converter
            .push(
                &frame(MediaKind::Video, 33, video_tag(1, 0, 0, &config)),
                &mut out,
            )
            .unwrap();
        converter
            .push(
                &frame(MediaKind::Video, 33, video_tag(1, 1, 0, &au)),
                &mut out,
            )
            .unwrap();
        let status = converter.status();
        assert_eq!((status.width, status.height), (Some(320), Some(180)));
        assert_eq!(status.video_config_changes, 2);
        assert!(out[0].keyframe);
        assert_eq!(&out[0].payload[3..3 + SPS_320X180.len()], SPS_320X180);
        assert_eq!(out[0].timestamp, 33 * 90);
        let frames = depacketize(&out);
        assert_eq!(
            (frames[0].params.width, frames[0].params.height),
            (320, 180)
        );
    }

    #[test]
    fn new_audio_config_opens_a_new_transcoder() {
        use crate::ingest::aac_to_opus::tests::aac_sine;
        use fdk_aac::enc::AudioObjectType;
        let mut converter = WebRtcConverter::default();
        let mut out = Vec::new();
        let audio_tag = |packet_type: u8, data: &[u8]| {
            let mut body = vec![0xAF, packet_type];
            body.extend_from_slice(data);
            Bytes::from(body)
        };
        let (asc, frames) = aac_sine(44_100, 2, 0.5, AudioObjectType::Mpeg4LowComplexity);
        converter
            .push(&frame(MediaKind::Audio, 0, audio_tag(0, &asc)), &mut out)
            .unwrap();
        for (data, ms) in &frames {
            converter
                .push(&frame(MediaKind::Audio, *ms, audio_tag(1, data)), &mut out)
                .unwrap();
        }
        assert_eq!(converter.status().audio_channels, Some(2));
        assert_eq!(converter.status().audio_sample_rate, Some(44_100));
        let before = out.len();
        let (asc, frames) = aac_sine(48_000, 1, 0.5, AudioObjectType::Mpeg4LowComplexity);
        converter
            .push(&frame(MediaKind::Audio, 500, audio_tag(0, &asc)), &mut out)
            .unwrap();
        assert!(out.len() > before, "the old stream's tail was flushed");
        for (data, ms) in &frames {
            converter
                .push(
                    &frame(MediaKind::Audio, 500 + ms, audio_tag(1, data)),
                    &mut out,
                )
                .unwrap();
        }
        let status = converter.status();
        assert_eq!(status.audio_channels, Some(1));
        assert_eq!(status.audio_sample_rate, Some(48_000));
        assert_eq!(status.audio_config_changes, 1);
        assert!(
            status.audio_packets_dropped_overlap >= 1,
            "the padded tail overlapped"
        );
        assert!(out.iter().all(|p| p.codec == Codec::Opus && p.keyframe));
        for pair in out.windows(2) {
            assert_eq!(
                pair[1].sequence_number,
                pair[0].sequence_number.wrapping_add(1)
            );
            assert!(pair[1].timestamp > pair[0].timestamp);
        }
        // The same config again changes nothing.
        converter
            .push(&frame(MediaKind::Audio, 1000, audio_tag(0, &asc)), &mut out)
            .unwrap();
        assert_eq!(converter.status().audio_config_changes, 1);
    }

    #[test]
    fn other_codecs_are_errors_that_name_the_codec() {
        let mut converter = WebRtcConverter::default();
        let mut out = Vec::new();
        let cases = [
            (MediaKind::Video, vec![0x14, 0, 0, 0, 0], "VP6"),
            (MediaKind::Video, vec![0x1C, 0, 0, 0, 0], "HEVC"),
            (MediaKind::Video, vec![0x90, b'h', b'v', b'c', b'1'], "hvc1"),
            (MediaKind::Audio, vec![0x2F, 0xFF], "MP3"),
            (MediaKind::Audio, vec![0xB6, 0], "Speex"),
            (MediaKind::Audio, vec![0x90, b'O', b'p', b'u', b's'], "Opus"),
        ];
        for (kind, body, name) in &cases {
            let error = converter
                .push(&frame(*kind, 0, Bytes::from(body.clone())), &mut out)
                .unwrap_err();
            assert!(error.to_string().contains(name), "{error}");
            assert!(matches!(
                error,
                BridgeError::UnsupportedIngestVideoCodec(_)
                    | BridgeError::UnsupportedIngestAudioCodec(_)
            ));
        }
        assert_eq!(
            converter.status().unsupported_frames_dropped,
            cases.len() as u64
        );
        assert!(out.is_empty());
    }

    #[test]
    fn frames_before_config_and_malformed_frames_are_dropped() {
        let mut converter = WebRtcConverter::default();
        let mut out = Vec::new();
        let idr = idr();
        let au = access_unit(&[&idr], 4);
        converter
            .push(
                &frame(MediaKind::Video, 0, video_tag(1, 1, 0, &au)),
                &mut out,
            )
            .unwrap();
        converter
            .push(
                &frame(MediaKind::Audio, 0, Bytes::from_static(&[0xAF, 1, 0x21])),
                &mut out,
            )
            .unwrap();
        assert_eq!(converter.status().frames_dropped_without_config, 2);
        for body in [
            &[][..],
            &[0x17],
            &[0x17, 1, 0],
            &[0x17, 0, 0, 0, 0, 1],
            &[0xAF],
        ] {
            assert!(
                converter
                    .push(
                        &frame(MediaKind::Video, 0, Bytes::copy_from_slice(body)),
                        &mut out
                    )
                    .is_err()
                    || body.first().is_some_and(|b| b >> 4 == 0xA)
            );
        }
        // Deterministic garbage never panics, whatever the headers say.
        let mut state = 0x1234_5678u32;
        let mut next = || {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 24) as u8
        };
        let config = avcc(&[SPS_640X360], &[PPS], 4);
        converter
            .push(
                &frame(MediaKind::Video, 0, video_tag(1, 0, 0, &config)),
                &mut out,
            )
            .unwrap();
        for index in 0..2000u32 {
            let len = usize::from(next()) % 64;
            let mut body: Vec<u8> = (0..len).map(|_| next()).collect();
            let kind = if index % 2 == 0 {
                MediaKind::Video
            } else {
                MediaKind::Audio
            };
            if let Some(first) = body.first_mut() {
                *first = if kind == MediaKind::Video {
                    0x17 | (*first & 0x20)
                } else {
                    0xAF
                };
            }
            let _ = converter.push(&frame(kind, index * 20, Bytes::from(body)), &mut out);
        }
        assert!(converter.status().malformed_frames_dropped > 0);
    }

    #[test]
    fn non_reference_b_slice_with_zero_cts_is_dropped() {
        let mut converter = WebRtcConverter::default();
        let mut out = Vec::new();
        let config = avcc(&[SPS_640X360], &[PPS], 4);
        converter
            .push(
                &frame(MediaKind::Video, 0, video_tag(1, 0, 0, &config)),
                &mut out,
            )
            .unwrap();
        let idr = idr();
        converter
            .push(
                &frame(
                    MediaKind::Video,
                    0,
                    video_tag(1, 1, 0, &access_unit(&[&idr], 4)),
                ),
                &mut out,
            )
            .unwrap();
        let b: &[u8] = &[0x01, 0b1010_0000, 0x11, 0x22];
        converter
            .push(
                &frame(
                    MediaKind::Video,
                    33,
                    video_tag(2, 1, 0, &access_unit(&[b], 4)),
                ),
                &mut out,
            )
            .unwrap();
        // A reordered P (presentation before the last one sent) is dropped too.
        let p: &[u8] = &[0x41, 0b1001_1000, 0x11];
        converter
            .push(
                &frame(
                    MediaKind::Video,
                    66,
                    video_tag(2, 1, -66, &access_unit(&[p], 4)),
                ),
                &mut out,
            )
            .unwrap();
        converter
            .push(
                &frame(
                    MediaKind::Video,
                    100,
                    video_tag(2, 1, 0, &access_unit(&[p], 4)),
                ),
                &mut out,
            )
            .unwrap();
        let status = converter.status();
        assert_eq!(status.b_frames_dropped, 2);
        assert!(status.has_b_frames);
        assert_eq!(status.video_frames_out, 2);
        assert_eq!(out.last().unwrap().timestamp, 100 * 90);
    }
}
