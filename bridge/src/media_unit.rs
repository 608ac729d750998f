//! The one media unit type between the depacketizer and every muxer.
//!
//! MediaMTX/gohlslib style: the pipeline turns RTP into [`MediaUnit`]s once, and each
//! output format (FLV, MPEG-TS, fMP4) is one adapter from `MediaUnit` to its container,
//! so N outputs need N adapters, not N².
//!
//! Timestamps of both kinds are on one **90 kHz** timeline ([`TIMESCALE`]): the pipeline
//! starts it near 0 at the room's first packet and keeps it monotonic per track across
//! publisher reconnects. Audio uses 90 kHz too (an AAC frame of 1024 samples at 48 kHz
//! is exactly 1920 ticks), so muxers never convert between tracks.

use crate::error::BridgeError;
use bytes::{BufMut, Bytes, BytesMut};
use h264_reader::nal::sps::SeqParameterSet;
use h264_reader::rbsp::{BitReader, decode_nal};
use std::sync::Arc;
use std::time::SystemTime;

/// Ticks per second of every timestamp in a [`MediaUnit`].
pub const TIMESCALE: u32 = 90_000;

/// Converts 90 kHz ticks to seconds.
pub fn ticks_to_secs(ticks: i64) -> f64 {
    ticks as f64 / f64::from(TIMESCALE)
}

/// Converts a duration to 90 kHz ticks (saturating).
pub fn duration_to_ticks(duration: std::time::Duration) -> i64 {
    let ticks = duration.as_nanos() * u128::from(TIMESCALE) / 1_000_000_000;
    i64::try_from(ticks).unwrap_or(i64::MAX)
}

/// One unit of media, ready for any muxer.
#[derive(Debug, Clone)]
pub enum MediaUnit {
    /// One H.264 access unit (a video frame).
    Video(VideoAccessUnit),
    /// One AAC-LC frame (1024 samples).
    Audio(AudioFrame),
}

impl MediaUnit {
    /// Presentation timestamp, 90 kHz.
    pub fn pts(&self) -> i64 {
        match self {
            MediaUnit::Video(au) => au.pts,
            MediaUnit::Audio(frame) => frame.pts,
        }
    }

    /// Decoding timestamp, 90 kHz: the order muxers write units in and cut segments by
    /// (video `dts`, which differs from `pts` only with B-frames; audio `pts`).
    pub fn dts(&self) -> i64 {
        match self {
            MediaUnit::Video(au) => au.dts,
            MediaUnit::Audio(frame) => frame.pts,
        }
    }

    /// Estimated wall-clock time of the unit (the pipeline's clock anchor plus `pts`).
    pub fn wallclock(&self) -> SystemTime {
        match self {
            MediaUnit::Video(au) => au.wallclock,
            MediaUnit::Audio(frame) => frame.wallclock,
        }
    }

    /// Whether this unit follows a break (see the `discontinuity` fields).
    pub fn discontinuity(&self) -> bool {
        match self {
            MediaUnit::Video(au) => au.discontinuity,
            MediaUnit::Audio(frame) => frame.discontinuity,
        }
    }
}

/// One H.264 access unit (a complete coded picture).
#[derive(Debug, Clone)]
pub struct VideoAccessUnit {
    /// Presentation timestamp, 90 kHz (strictly increasing within a room without
    /// B-frames).
    pub pts: i64,
    /// Decoding timestamp, 90 kHz, strictly increasing within a room. WebRTC H.264 has
    /// no B-frames, so there it equals `pts`; a native (RTMP) stream with B-frames has
    /// `pts = dts + composition time` (never below `dts`).
    pub dts: i64,
    /// Whether the access unit is an IDR picture (decodable on its own).
    pub keyframe: bool,
    /// The NAL units of the picture, without start codes or length prefixes. Parameter
    /// sets (SPS/PPS), access unit delimiters and filler data are stripped: they live in
    /// [`Self::params`] and each muxer writes them where its container wants them.
    pub nalus: Vec<Bytes>,
    /// The parameter sets in force for this access unit. Shared: compare with
    /// [`Arc::ptr_eq`] to detect a change cheaply.
    pub params: Arc<H264Params>,
    /// This access unit follows a break: a new publisher session, a parameter-set change
    /// (new resolution) or a timestamp rebase. Always a keyframe when set by the
    /// pipeline. `false` on the room's very first access unit.
    pub discontinuity: bool,
    /// Estimated wall-clock capture time (for `EXT-X-PROGRAM-DATE-TIME`).
    pub wallclock: SystemTime,
}

impl VideoAccessUnit {
    /// Total size of the NAL units in bytes (no prefixes).
    pub fn payload_len(&self) -> usize {
        self.nalus.iter().map(Bytes::len).sum()
    }
}

/// One AAC-LC frame: 1024 samples per channel.
#[derive(Debug, Clone)]
pub struct AudioFrame {
    /// Presentation timestamp, 90 kHz (the same timeline as video).
    pub pts: i64,
    /// Duration in 90 kHz ticks (1920 for 1024 samples at 48 kHz).
    pub duration: i64,
    /// One raw AAC frame (`raw_data_block`), without ADTS header.
    pub data: Bytes,
    /// The stream's decoder configuration (the same `Arc` for the whole room).
    pub config: Arc<AacConfig>,
    /// This frame follows a break in the audio timeline (new publisher session or a gap
    /// too long to fill with concealment). `false` on the room's first frame.
    pub discontinuity: bool,
    /// Estimated wall-clock capture time.
    pub wallclock: SystemTime,
}

/// Which tracks a room's outputs carry, and the audio configuration if any.
///
/// Muxers are built from this: an FLV header, a PMT and an fMP4 init segment all have to
/// name their tracks before the first frame.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tracks {
    /// The room has H.264 video.
    pub video: bool,
    /// The room has audio, transcoded to AAC with this configuration.
    pub audio: Option<Arc<AacConfig>>,
}

impl Tracks {
    /// Whether neither track is present.
    pub fn is_empty(&self) -> bool {
        !self.video && self.audio.is_none()
    }
}

/// H.264 parameter sets with the fields muxers need, parsed once per change.
#[derive(Debug, Clone, PartialEq)]
pub struct H264Params {
    /// The sequence parameter set NAL unit (header byte included, no start code).
    pub sps: Bytes,
    /// The picture parameter set NAL unit (header byte included, no start code).
    pub pps: Bytes,
    /// Displayed width in pixels (after cropping).
    pub width: u32,
    /// Displayed height in pixels (after cropping).
    pub height: u32,
    /// `profile_idc` (66 baseline, 77 main, 100 high …).
    pub profile_idc: u8,
    /// The constraint flags byte (`constraint_set0_flag` …).
    pub constraint_flags: u8,
    /// `level_idc` (31 = level 3.1).
    pub level_idc: u8,
    /// Frame rate from the VUI timing info, if the encoder wrote one.
    pub frame_rate: Option<f64>,
    /// The AVCDecoderConfigurationRecord (`avcC` box body, FLV AVC sequence header body),
    /// with 4-byte NAL length fields.
    pub avcc: Bytes,
}

impl H264Params {
    /// Parses a SPS and PPS (NAL units with header byte, no start code).
    pub fn from_parameter_sets(sps: Bytes, pps: Bytes) -> Result<Self, BridgeError> {
        if sps.len() < 4 || sps[0] & 0x1F != 7 {
            return Err(BridgeError::InvalidParameterSet(
                "SPS too short or wrong NAL type".into(),
            ));
        }
        if pps.len() < 2 || pps[0] & 0x1F != 8 {
            return Err(BridgeError::InvalidParameterSet(
                "PPS too short or wrong NAL type".into(),
            ));
        }
        if sps.len() > usize::from(u16::MAX) || pps.len() > usize::from(u16::MAX) {
            return Err(BridgeError::InvalidParameterSet(
                "parameter set too large".into(),
            ));
        }
        let rbsp = decode_nal(&sps).map_err(|e| BridgeError::InvalidParameterSet(e.to_string()))?;
        let parsed = SeqParameterSet::from_bits(BitReader::new(&rbsp[..]))
            .map_err(|e| BridgeError::InvalidParameterSet(format!("{e:?}")))?;
        let (width, height) = parsed
            .pixel_dimensions()
            .map_err(|e| BridgeError::InvalidParameterSet(format!("{e:?}")))?;
        if width == 0 || height == 0 || width > 16_384 || height > 16_384 {
            return Err(BridgeError::InvalidParameterSet(format!(
                "implausible size {width}x{height}"
            )));
        }
        let frame_rate = parsed
            .fps()
            .filter(|fps| fps.is_finite() && *fps > 0.0 && *fps <= 1000.0);
        let profile_idc = sps[1];
        let constraint_flags = sps[2];
        let level_idc = sps[3];

        let mut avcc = BytesMut::with_capacity(16 + sps.len() + pps.len());
        avcc.put_u8(1); // configurationVersion
        avcc.put_u8(profile_idc);
        avcc.put_u8(constraint_flags);
        avcc.put_u8(level_idc);
        avcc.put_u8(0xFC | 3); // reserved + lengthSizeMinusOne = 3
        avcc.put_u8(0xE0 | 1); // reserved + numOfSequenceParameterSets
        avcc.put_u16(sps.len() as u16); // checked above
        avcc.put_slice(&sps);
        avcc.put_u8(1); // numOfPictureParameterSets
        avcc.put_u16(pps.len() as u16);
        avcc.put_slice(&pps);
        if matches!(profile_idc, 100 | 110 | 122 | 144) {
            // ISO/IEC 14496-15 §5.3.3.1.2: high profiles carry chroma format and bit depth.
            let chroma = &parsed.chroma_info;
            avcc.put_u8(0xFC | (chroma.chroma_format.to_u32() as u8 & 0x03));
            avcc.put_u8(0xF8 | (chroma.bit_depth_luma_minus8 & 0x07));
            avcc.put_u8(0xF8 | (chroma.bit_depth_chroma_minus8 & 0x07));
            avcc.put_u8(0); // numOfSequenceParameterSetExt
        }

        Ok(H264Params {
            sps,
            pps,
            width,
            height,
            profile_idc,
            constraint_flags,
            level_idc,
            frame_rate,
            avcc: avcc.freeze(),
        })
    }

    /// The RFC 6381 codec string (`avc1.42e01f`) for playlists.
    pub fn codec_string(&self) -> String {
        format!(
            "avc1.{:02x}{:02x}{:02x}",
            self.profile_idc, self.constraint_flags, self.level_idc
        )
    }
}

/// The AAC sampling frequencies by `samplingFrequencyIndex` (ISO/IEC 14496-3 Table 1.18).
const AAC_SAMPLE_RATES: [u32; 13] = [
    96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000,
    7_350,
];

/// Samples per channel in one AAC-LC frame.
pub const AAC_FRAME_SAMPLES: u32 = 1024;

/// AAC-LC decoder configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AacConfig {
    /// Sampling rate in Hz (48 000 for the transcoder's output).
    pub sample_rate: u32,
    /// Channel count (1 or 2).
    pub channels: u8,
    /// The 2-byte AudioSpecificConfig (object type 2 = AAC-LC).
    pub audio_specific_config: Bytes,
}

impl AacConfig {
    /// The AAC-LC configuration for `sample_rate` and `channels`.
    pub fn lc(sample_rate: u32, channels: u8) -> Result<Self, BridgeError> {
        let index = Self::frequency_index(sample_rate).ok_or_else(|| {
            BridgeError::UnsupportedAacConfig(format!("sample rate {sample_rate}"))
        })?;
        if !(1..=2).contains(&channels) {
            return Err(BridgeError::UnsupportedAacConfig(format!(
                "{channels} channels"
            )));
        }
        // audioObjectType (5 bits) = 2, samplingFrequencyIndex (4), channelConfiguration (4),
        // GASpecificConfig: frameLengthFlag, dependsOnCoreCoder, extensionFlag = 0.
        let bits: u16 = (2 << 11) | (u16::from(index) << 7) | (u16::from(channels) << 3);
        Ok(AacConfig {
            sample_rate,
            channels,
            audio_specific_config: Bytes::copy_from_slice(&bits.to_be_bytes()),
        })
    }

    /// The configuration a stream declares in its own AudioSpecificConfig (ISO/IEC
    /// 14496-3 §1.6.2.1; an FLV/RTMP AAC sequence header body, an `esds` decoder-specific
    /// info). The bytes are kept as given. Accepted is what every muxer here can carry:
    /// AAC-LC (object type 2) with 1024-sample frames, one of the standard sampling
    /// frequencies and a channel configuration of 1–6 (mono to 5.1).
    pub fn from_audio_specific_config(asc: &[u8]) -> Result<Self, BridgeError> {
        let unsupported = |what: String| Err(BridgeError::UnsupportedAacConfig(what));
        if asc.len() > 64 {
            return unsupported(format!("AudioSpecificConfig of {} bytes", asc.len()));
        }
        let mut bits = AscBits { data: asc, pos: 0 };
        let mut object_type = bits.read(5).ok_or_else(truncated_asc)?;
        if object_type == 31 {
            object_type = 32 + bits.read(6).ok_or_else(truncated_asc)?;
        }
        let index = bits.read(4).ok_or_else(truncated_asc)?;
        let sample_rate = match index {
            0..=12 => AAC_SAMPLE_RATES[index as usize],
            15 => bits.read(24).ok_or_else(truncated_asc)?,
            _ => return unsupported(format!("reserved sampling frequency index {index}")),
        };
        let channels = bits.read(4).ok_or_else(truncated_asc)?;
        if object_type != 2 {
            return unsupported(format!(
                "audio object type {object_type} (only AAC-LC, type 2, is passed through)"
            ));
        }
        if Self::frequency_index(sample_rate).is_none() {
            return unsupported(format!("sample rate {sample_rate}"));
        }
        if !(1..=6).contains(&channels) {
            return unsupported(format!("channel configuration {channels}"));
        }
        // GASpecificConfig: frameLengthFlag 1 means 960-sample frames.
        if bits.read(1).ok_or_else(truncated_asc)? != 0 {
            return unsupported("960-sample frames".into());
        }
        Ok(AacConfig {
            sample_rate,
            channels: channels as u8,
            audio_specific_config: Bytes::copy_from_slice(asc),
        })
    }

    /// `samplingFrequencyIndex` for a rate, if AAC defines one.
    pub fn frequency_index(sample_rate: u32) -> Option<u8> {
        AAC_SAMPLE_RATES
            .iter()
            .position(|&rate| rate == sample_rate)
            .map(|i| i as u8)
    }

    /// Duration of one 1024-sample frame in 90 kHz ticks (rounded).
    pub fn frame_duration_ticks(&self) -> i64 {
        let num = i64::from(AAC_FRAME_SAMPLES) * i64::from(TIMESCALE);
        let den = i64::from(self.sample_rate.max(1));
        (num + den / 2) / den
    }

    /// Writes the 7-byte ADTS header (no CRC) for a raw frame of `payload_len` bytes.
    pub fn write_adts_header(&self, payload_len: usize, out: &mut impl BufMut) {
        let frame_len = (payload_len + 7).min(0x1FFF) as u32;
        // Unknown rates cannot be constructed through `lc`; fall back to 48 kHz's index.
        let index = u32::from(Self::frequency_index(self.sample_rate).unwrap_or(3));
        let channels = u32::from(self.channels & 0x07);
        out.put_u8(0xFF);
        out.put_u8(0xF1); // syncword low nibble, MPEG-4, layer 0, protection_absent
        out.put_u8((((2 - 1) << 6) | (index << 2) | (channels >> 2)) as u8);
        out.put_u8((((channels & 0x3) << 6) | (frame_len >> 11)) as u8);
        out.put_u8(((frame_len >> 3) & 0xFF) as u8);
        out.put_u8((((frame_len & 0x7) << 5) | 0x1F) as u8); // + buffer fullness 0x7FF (high bits)
        out.put_u8(0xFC); // buffer fullness low bits, one raw data block
    }
}

fn truncated_asc() -> BridgeError {
    BridgeError::UnsupportedAacConfig("truncated AudioSpecificConfig".into())
}

/// A big-endian bit reader over an AudioSpecificConfig.
struct AscBits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl AscBits<'_> {
    /// The next `count` (≤ 32) bits, or `None` past the end.
    fn read(&mut self, count: usize) -> Option<u32> {
        let mut value = 0u32;
        for _ in 0..count {
            let byte = *self.data.get(self.pos / 8)?;
            value = (value << 1) | u32::from((byte >> (7 - self.pos % 8)) & 1);
            self.pos += 1;
        }
        Some(value)
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Parameter sets from real encoders, shared by the unit tests.
    use bytes::Bytes;

    /// x264 constrained-baseline 640x360 SPS (profile 66, level 3.0).
    pub const SPS_640X360: &[u8] = &[
        0x67, 0x42, 0xc0, 0x1e, 0xd9, 0x00, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03, 0x00,
        0x01, 0x00, 0x00, 0x03, 0x00, 0x3c, 0x0f, 0x16, 0x2e, 0x48,
    ];
    /// x264 constrained-baseline 320x180 SPS.
    pub const SPS_320X180: &[u8] = &[
        0x67, 0x42, 0xc0, 0x0d, 0xd9, 0x01, 0x41, 0x9f, 0x9f, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00,
        0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x42, 0xa4, 0x80,
    ];
    /// A matching PPS.
    pub const PPS: &[u8] = &[0x68, 0xcb, 0x83, 0xcb, 0x20];

    pub fn params_640() -> std::sync::Arc<super::H264Params> {
        std::sync::Arc::new(
            super::H264Params::from_parameter_sets(
                Bytes::from_static(SPS_640X360),
                Bytes::from_static(PPS),
            )
            .expect("test SPS parses"),
        )
    }

    pub fn params_320() -> std::sync::Arc<super::H264Params> {
        std::sync::Arc::new(
            super::H264Params::from_parameter_sets(
                Bytes::from_static(SPS_320X180),
                Bytes::from_static(PPS),
            )
            .expect("test SPS parses"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;

    #[test]
    fn parses_sps_dimensions_and_builds_avcc() {
        let params = params_640();
        assert_eq!((params.width, params.height), (640, 360));
        assert_eq!(params.profile_idc, 66);
        assert_eq!(params.codec_string(), "avc1.42c01e");
        // avcC: version, profile, compat, level, 0xFF, 0xE1, len, SPS, 1, len, PPS
        let avcc = &params.avcc;
        assert_eq!(&avcc[..6], &[1, 0x42, 0xc0, 0x1e, 0xFF, 0xE1]);
        let sps_len = u16::from_be_bytes([avcc[6], avcc[7]]) as usize;
        assert_eq!(&avcc[8..8 + sps_len], SPS_640X360);
        assert_eq!(avcc[8 + sps_len], 1);
        assert_eq!(&avcc[11 + sps_len..], PPS);
        // h264-reader understands our record.
        let record = h264_reader::avcc::AvcDecoderConfigurationRecord::try_from(&avcc[..]).unwrap();
        assert_eq!(record.length_size_minus_one(), 3);

        let small = params_320();
        assert_eq!((small.width, small.height), (320, 180));
    }

    #[test]
    fn rejects_garbage_parameter_sets() {
        for sps in [
            &[][..],
            &[0x67],
            &[0x67, 0x42, 0, 0x1e],
            &[0x68, 1, 2, 3, 4],
            &[0x67, 0xff, 0xff, 0xff, 0xff, 0xff],
        ] {
            assert!(
                H264Params::from_parameter_sets(
                    Bytes::copy_from_slice(sps),
                    Bytes::from_static(PPS)
                )
                .is_err()
            );
        }
        assert!(
            H264Params::from_parameter_sets(Bytes::from_static(SPS_640X360), Bytes::new()).is_err()
        );
    }

    #[test]
    fn aac_lc_config_bytes() {
        let stereo = AacConfig::lc(48_000, 2).unwrap();
        assert_eq!(&stereo.audio_specific_config[..], &[0x11, 0x90]);
        let mono = AacConfig::lc(48_000, 1).unwrap();
        assert_eq!(&mono.audio_specific_config[..], &[0x11, 0x88]);
        assert_eq!(
            AacConfig::lc(44_100, 2).unwrap().audio_specific_config[..],
            [0x12, 0x10]
        );
        assert!(AacConfig::lc(47_000, 2).is_err());
        assert!(AacConfig::lc(48_000, 3).is_err());
        assert_eq!(stereo.frame_duration_ticks(), 1920);
    }

    #[test]
    fn parses_stream_audio_specific_configs() {
        let cd = AacConfig::from_audio_specific_config(&[0x12, 0x10]).unwrap();
        assert_eq!((cd.sample_rate, cd.channels), (44_100, 2));
        assert_eq!(&cd.audio_specific_config[..], &[0x12, 0x10]);
        assert_eq!(cd.frame_duration_ticks(), 2090);
        assert_eq!(cd, AacConfig::lc(44_100, 2).unwrap());
        let mono = AacConfig::from_audio_specific_config(&[0x11, 0x88]).unwrap();
        assert_eq!((mono.sample_rate, mono.channels), (48_000, 1));
        // Explicit 24-bit rate (index 15) naming a standard rate.
        let explicit = [0x17, 0x80, 0x2B, 0x11, 0x10];
        let config = AacConfig::from_audio_specific_config(&explicit).unwrap();
        assert_eq!((config.sample_rate, config.channels), (22_050, 2));
        // HE-AAC (5), 960-sample frames, PCE channels, reserved index, truncated.
        for bad in [
            &[0x2B, 0x10][..],
            &[0x12, 0x14],
            &[0x12, 0x00],
            &[0x16, 0x90],
            &[0x12],
            &[],
        ] {
            assert!(
                AacConfig::from_audio_specific_config(bad).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn adts_header_fields() {
        let config = AacConfig::lc(48_000, 2).unwrap();
        let mut out = Vec::new();
        config.write_adts_header(300, &mut out);
        assert_eq!(out.len(), 7);
        assert_eq!(out[0], 0xFF);
        assert_eq!(out[1] & 0xF6, 0xF0);
        assert_eq!(out[1] & 1, 1, "protection absent");
        assert_eq!(out[2] >> 6, 1, "profile LC");
        assert_eq!((out[2] >> 2) & 0xF, 3, "48 kHz");
        let channels = ((out[2] & 1) << 2) | (out[3] >> 6);
        assert_eq!(channels, 2);
        let len = (u32::from(out[3] & 3) << 11) | (u32::from(out[4]) << 3) | u32::from(out[5] >> 5);
        assert_eq!(len, 307);
    }
}
