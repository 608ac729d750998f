//! AAC (LC, and HE-AAC as far as the Fraunhofer decoder handles it) → Opus 48 kHz, 20 ms
//! frames, for WebRTC viewers of an RTMP publisher.
//!
//! - Decoding: the Fraunhofer FDK AAC decoder (`fdk-aac`), raw transport configured from
//!   the AudioSpecificConfig of the FLV AAC sequence header (not ADTS). It downmixes more
//!   than two channels to stereo. The output format (rate, channels, frame size) is read
//!   from the decoder after each frame, so implicit SBR (HE-AAC doubling the rate) is
//!   followed.
//! - Resampling to 48 kHz when the source is 44.1 kHz, 32 kHz …: `rubato`'s synchronous
//!   FFT resampler (band-limited, fixed ratio), one AAC frame per call, its delay trimmed
//!   so the first output sample is the first input sample.
//! - Encoding: libopus (`opus`), the source's channel count (1 or 2), `Application::Audio`,
//!   64 kbit/s stereo / 32 kbit/s mono by default, in-band FEC off, 960-sample frames.
//!
//! Timestamps are on the 48 kHz RTP clock: the first AAC frame's FLV timestamp (ms × 48)
//! anchors the timeline, and each Opus packet is 960 after the previous one while the
//! input is continuous. Each AAC frame's FLV timestamp is compared with where the sample
//! count says it should be: a gap of at least half a frame (a dropped or corrupt frame) is
//! filled with silence, and a difference of more than [`AacToOpusConfig::max_drift`]
//! (200 ms) either way flushes the audio so far and re-anchors on the new timestamp
//! (counted in [`AacToOpusStats::re_anchors`]).
//!
//! A corrupt AAC frame is an error for that frame only: it is counted, nothing is emitted
//! for it, and the transcoder goes on with the next one.

use crate::error::BridgeError;
use bytes::Bytes;
use fdk_aac::dec::{Decoder, Transport};
use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};
use std::time::Duration;

/// The Opus sample rate and RTP clock rate.
pub const OPUS_SAMPLE_RATE: u32 = 48_000;
/// Samples per channel in one 20 ms Opus frame (the RTP timestamp step).
pub const OPUS_FRAME_SAMPLES: usize = 960;
/// RTP ticks per millisecond of the 48 kHz clock.
const TICKS_PER_MS: i64 = 48;
/// Largest decoded AAC frame: 2048 samples (HE-AAC) × 8 channels.
const MAX_DECODED_SAMPLES: usize = 2048 * 8;
/// Largest raw AAC frame accepted: 6144 bits per channel (ISO/IEC 14496-3 4.5.3.2) for
/// 8 channels.
const MAX_AAC_FRAME_BYTES: usize = 6144;
/// Largest Opus packet written (a 20 ms frame at 64 kbit/s is ~160 bytes).
const MAX_OPUS_PACKET: usize = 1500;

/// Transcoder settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AacToOpusConfig {
    /// Opus bitrate for a stereo source, bits per second.
    pub stereo_bitrate: u32,
    /// Opus bitrate for a mono source, bits per second.
    pub mono_bitrate: u32,
    /// How far an AAC frame's FLV timestamp may be from where the sample count puts it
    /// before the timeline is re-anchored on it.
    pub max_drift: Duration,
}

impl Default for AacToOpusConfig {
    fn default() -> Self {
        AacToOpusConfig {
            stereo_bitrate: 64_000,
            mono_bitrate: 32_000,
            max_drift: Duration::from_millis(200),
        }
    }
}

/// One Opus packet with its RTP timestamp (48 kHz clock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpusPacket {
    /// The Opus packet (one 20 ms frame).
    pub payload: Bytes,
    /// RTP timestamp of its first sample.
    pub rtp_timestamp: u32,
}

/// Counters, one per reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AacToOpusStats {
    /// AAC frames pushed.
    pub aac_frames: u64,
    /// AAC frames that failed to decode (nothing emitted for them).
    pub decode_errors: u64,
    /// Opus packets emitted.
    pub opus_packets: u64,
    /// Opus frames that failed to encode (dropped; the timeline goes on).
    pub encode_errors: u64,
    /// AAC frames of silence inserted where the timestamps showed missing audio.
    pub silence_frames_inserted: u64,
    /// Timeline restarts because a timestamp was more than `max_drift` off.
    pub re_anchors: u64,
    /// Changes of the decoded format (rate, channels, frame size) mid-stream.
    pub format_changes: u64,
}

/// What the AudioSpecificConfig says (ISO/IEC 14496-3 §1.6.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioSpecificConfig {
    /// `audioObjectType` (2 = AAC-LC, 5 = SBR/HE-AAC, 29 = PS/HE-AACv2).
    pub object_type: u8,
    /// The core sampling rate in Hz.
    pub sample_rate: u32,
    /// `channelConfiguration` (1 mono, 2 stereo, … 7 = 7.1; 0 = defined in the stream).
    pub channel_configuration: u8,
}

/// The AAC sampling frequencies by `samplingFrequencyIndex`.
const AAC_SAMPLE_RATES: [u32; 13] = [
    96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000,
    7_350,
];

impl AudioSpecificConfig {
    /// Parses the first fields of an AudioSpecificConfig.
    pub fn parse(config: &[u8]) -> Result<Self, BridgeError> {
        let invalid = |what: &str| BridgeError::MalformedIngestMedia(format!("AAC config: {what}"));
        let mut bits = BitReader {
            data: config,
            position: 0,
        };
        let mut object_type = bits.read(5).ok_or_else(|| invalid("too short"))?;
        if object_type == 31 {
            object_type = 32 + bits.read(6).ok_or_else(|| invalid("too short"))?;
        }
        let index = bits.read(4).ok_or_else(|| invalid("too short"))?;
        let sample_rate = if index == 15 {
            bits.read(24).ok_or_else(|| invalid("too short"))?
        } else {
            *AAC_SAMPLE_RATES
                .get(index as usize)
                .ok_or_else(|| invalid("reserved sampling frequency index"))?
        };
        let channel_configuration = bits.read(4).ok_or_else(|| invalid("too short"))?;
        if sample_rate == 0 {
            return Err(invalid("sample rate 0"));
        }
        Ok(AudioSpecificConfig {
            object_type: object_type as u8,
            sample_rate,
            channel_configuration: channel_configuration as u8,
        })
    }
}

struct BitReader<'a> {
    data: &'a [u8],
    position: usize,
}

impl BitReader<'_> {
    fn read(&mut self, count: usize) -> Option<u32> {
        let mut value = 0u32;
        for _ in 0..count {
            let byte = *self.data.get(self.position / 8)?;
            let bit = byte >> (7 - self.position % 8) & 1;
            value = value << 1 | u32::from(bit);
            self.position += 1;
        }
        Some(value)
    }
}

/// The decoded PCM format the pipeline after the decoder is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PcmFormat {
    sample_rate: u32,
    channels: usize,
    frame_samples: usize,
}

/// Resampler, encoder and timeline for one decoded format.
struct Pipeline {
    format: PcmFormat,
    /// `None` when the source is already 48 kHz.
    resampler: Option<Fft<f32>>,
    encoder: opus::Encoder,
    /// Resampler output frames still to drop (its delay) after a (re)start.
    skip_output: usize,
    /// 48 kHz position of the first input sample since the anchor.
    anchor: i64,
    /// Source frames (per channel) fed since the anchor.
    input_frames: u64,
    /// 48 kHz frames (per channel) that came out of the resampler since the anchor.
    output_frames: u64,
    /// Opus packets emitted since the anchor.
    packets: u64,
    /// 48 kHz interleaved PCM not yet encoded.
    pending: Vec<f32>,
    /// One decoded frame as f32 (resampler input).
    block: Vec<f32>,
    /// Resampler output scratch.
    resampled: Vec<f32>,
}

/// AAC → Opus; see the module doc.
pub struct AacToOpus {
    config: AacToOpusConfig,
    audio_specific_config: AudioSpecificConfig,
    decoder: Decoder,
    pipeline: Option<Pipeline>,
    /// Whether the next frame anchors the timeline (start, after a flush).
    anchor_pending: bool,
    pcm: Vec<i16>,
    opus_out: Vec<u8>,
    stats: AacToOpusStats,
}

impl std::fmt::Debug for AacToOpus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AacToOpus")
            .field("config", &self.config)
            .field("audio_specific_config", &self.audio_specific_config)
            .field("format", &self.pipeline.as_ref().map(|p| p.format))
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

fn decoder_error(error: fdk_aac::dec::DecoderError) -> BridgeError {
    BridgeError::AacDecoder(error.message().to_string())
}

impl AacToOpus {
    /// Opens a decoder for the stream described by `audio_specific_config` (the FLV AAC
    /// sequence header body after its 2 header bytes).
    pub fn new(audio_specific_config: &[u8], config: AacToOpusConfig) -> Result<Self, BridgeError> {
        let parsed = AudioSpecificConfig::parse(audio_specific_config)?;
        let mut decoder = Decoder::new(Transport::Raw);
        decoder
            .config_raw(audio_specific_config)
            .map_err(decoder_error)?;
        decoder.set_max_output_channels(2).map_err(decoder_error)?;
        Ok(AacToOpus {
            config,
            audio_specific_config: parsed,
            decoder,
            pipeline: None,
            anchor_pending: true,
            pcm: vec![0; MAX_DECODED_SAMPLES],
            opus_out: vec![0; MAX_OPUS_PACKET],
            stats: AacToOpusStats::default(),
        })
    }

    /// What the AudioSpecificConfig said.
    pub fn audio_specific_config(&self) -> &AudioSpecificConfig {
        &self.audio_specific_config
    }

    /// The decoded sample rate (after SBR), once a frame has been decoded; else the
    /// configured one.
    pub fn sample_rate(&self) -> u32 {
        self.pipeline
            .as_ref()
            .map_or(self.audio_specific_config.sample_rate, |p| {
                p.format.sample_rate
            })
    }

    /// The channels encoded to Opus (1 or 2), once a frame has been decoded; else what
    /// the configuration says (capped at 2).
    pub fn channels(&self) -> u8 {
        match &self.pipeline {
            Some(pipeline) => pipeline.format.channels as u8,
            None => self.audio_specific_config.channel_configuration.clamp(1, 2),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> &AacToOpusStats {
        &self.stats
    }

    /// Decodes one raw AAC frame whose FLV timestamp is `timestamp_ms` and appends the
    /// Opus packets that are complete to `out`.
    ///
    /// A frame that does not decode is an error; nothing is appended for it and the
    /// transcoder stays usable.
    pub fn push(
        &mut self,
        aac_frame: &[u8],
        timestamp_ms: u32,
        out: &mut Vec<OpusPacket>,
    ) -> Result<(), BridgeError> {
        self.stats.aac_frames += 1;
        let format = match self.decode(aac_frame) {
            Ok(format) => format,
            Err(error) => {
                self.stats.decode_errors += 1;
                return Err(error);
            }
        };
        let position = i64::from(timestamp_ms) * TICKS_PER_MS;

        if self.pipeline.as_ref().is_some_and(|p| p.format != format) {
            self.flush(out);
            self.stats.format_changes += 1;
            self.pipeline = None;
        }
        if self.pipeline.is_none() {
            self.pipeline = Some(self.open_pipeline(format)?);
            self.anchor_pending = true;
        }
        let max_drift = i64::try_from(self.config.max_drift.as_millis())
            .unwrap_or(i64::MAX / TICKS_PER_MS)
            .saturating_mul(TICKS_PER_MS);
        let pipeline = self.pipeline.as_mut().expect("opened above");

        if !self.anchor_pending {
            let expected = pipeline.expected_position();
            let drift = position - expected;
            if drift.abs() > max_drift {
                self.stats.re_anchors += 1;
                self.flush(out);
            } else {
                let frame_ticks = pipeline.frame_ticks();
                // Whole missing frames (a dropped or corrupt one) become silence.
                let missing = (drift + frame_ticks / 2).div_euclid(frame_ticks.max(1));
                let pipeline = self.pipeline.as_mut().expect("still open");
                for _ in 0..missing {
                    pipeline.block.fill(0.0);
                    pipeline.process_block(&mut self.opus_out, out, &mut self.stats);
                    self.stats.silence_frames_inserted += 1;
                }
            }
        }
        let pipeline = self.pipeline.as_mut().expect("still open");
        if std::mem::take(&mut self.anchor_pending) {
            pipeline.restart(position);
        }
        let samples = format.frame_samples * format.channels;
        for (sample, &pcm) in pipeline.block.iter_mut().zip(&self.pcm[..samples]) {
            *sample = f32::from(pcm) / 32_768.0;
        }
        pipeline.process_block(&mut self.opus_out, out, &mut self.stats);
        Ok(())
    }

    /// Emits everything buffered: the resampler's tail and the last partial Opus frame
    /// (padded with silence). The next frame re-anchors the timeline. Call at the end of
    /// a stream or before replacing the transcoder.
    pub fn flush(&mut self, out: &mut Vec<OpusPacket>) {
        if self.anchor_pending {
            return;
        }
        if let Some(pipeline) = self.pipeline.as_mut() {
            pipeline.drain(&mut self.opus_out, out, &mut self.stats);
        }
        self.anchor_pending = true;
    }

    /// Decodes into `self.pcm` and returns the frame's format.
    fn decode(&mut self, aac_frame: &[u8]) -> Result<PcmFormat, BridgeError> {
        if aac_frame.is_empty() {
            return Err(BridgeError::AacDecoder("empty AAC frame".into()));
        }
        if aac_frame.len() > MAX_AAC_FRAME_BYTES {
            // Larger than any legal frame; it would not fit the decoder's input buffer
            // and leave a partial frame in it.
            return Err(BridgeError::AacDecoder(format!(
                "AAC frame of {} bytes",
                aac_frame.len()
            )));
        }
        let consumed = self.decoder.fill(aac_frame).map_err(decoder_error)?;
        if consumed != aac_frame.len() {
            return Err(BridgeError::AacDecoder(format!(
                "decoder took {consumed} of {} bytes",
                aac_frame.len()
            )));
        }
        self.decoder
            .decode_frame(&mut self.pcm)
            .map_err(decoder_error)?;
        let info = self.decoder.stream_info();
        let sample_rate = u32::try_from(info.sampleRate).unwrap_or(0);
        let channels = usize::try_from(info.numChannels).unwrap_or(0);
        let frame_samples = usize::try_from(info.frameSize).unwrap_or(0);
        if !(8_000..=96_000).contains(&sample_rate)
            || !(1..=2).contains(&channels)
            || !(1..=2048).contains(&frame_samples)
            || frame_samples * channels > self.pcm.len()
        {
            return Err(BridgeError::AacDecoder(format!(
                "unusable decoded format: {sample_rate} Hz, {channels} channels, \
                 {frame_samples} samples"
            )));
        }
        Ok(PcmFormat {
            sample_rate,
            channels,
            frame_samples,
        })
    }

    fn open_pipeline(&self, format: PcmFormat) -> Result<Pipeline, BridgeError> {
        let (opus_channels, bitrate) = if format.channels == 1 {
            (opus::Channels::Mono, self.config.mono_bitrate)
        } else {
            (opus::Channels::Stereo, self.config.stereo_bitrate)
        };
        let opus_error = |e: opus::Error| BridgeError::OpusEncoder(e.to_string());
        let mut encoder =
            opus::Encoder::new(OPUS_SAMPLE_RATE, opus_channels, opus::Application::Audio)
                .map_err(opus_error)?;
        encoder
            .set_bitrate(opus::Bitrate::Bits(
                i32::try_from(bitrate).unwrap_or(64_000),
            ))
            .map_err(opus_error)?;
        encoder.set_inband_fec(false).map_err(opus_error)?;
        let resampler = if format.sample_rate == OPUS_SAMPLE_RATE {
            None
        } else {
            Some(
                Fft::<f32>::new(
                    format.sample_rate as usize,
                    OPUS_SAMPLE_RATE as usize,
                    format.frame_samples,
                    format.channels,
                    FixedSync::Input,
                )
                .map_err(|e| BridgeError::Resampler(e.to_string()))?,
            )
        };
        let resampled_capacity = resampler
            .as_ref()
            .map_or(format.frame_samples, |r| r.output_frames_max())
            * format.channels;
        let skip_output = resampler.as_ref().map_or(0, |r| r.output_delay());
        Ok(Pipeline {
            format,
            resampler,
            encoder,
            skip_output,
            anchor: 0,
            input_frames: 0,
            output_frames: 0,
            packets: 0,
            pending: Vec::with_capacity(resampled_capacity + OPUS_FRAME_SAMPLES * format.channels),
            block: vec![0.0; format.frame_samples * format.channels],
            resampled: vec![0.0; resampled_capacity],
        })
    }
}

impl Pipeline {
    /// 48 kHz ticks of one source frame.
    fn frame_ticks(&self) -> i64 {
        (self.format.frame_samples as i64 * i64::from(OPUS_SAMPLE_RATE))
            / i64::from(self.format.sample_rate)
    }

    /// Where the next source frame should start on the 48 kHz clock.
    fn expected_position(&self) -> i64 {
        let elapsed = i128::from(self.input_frames) * i128::from(OPUS_SAMPLE_RATE)
            / i128::from(self.format.sample_rate);
        self.anchor + elapsed as i64
    }

    /// Starts a new timeline at `position` (48 kHz ticks).
    fn restart(&mut self, position: i64) {
        if let Some(resampler) = self.resampler.as_mut() {
            resampler.reset();
            self.skip_output = resampler.output_delay();
        }
        self.anchor = position;
        self.input_frames = 0;
        self.output_frames = 0;
        self.packets = 0;
        self.pending.clear();
    }

    /// 48 kHz frames the input so far should have produced.
    fn expected_output_frames(&self) -> u64 {
        let frames = u128::from(self.input_frames) * u128::from(OPUS_SAMPLE_RATE);
        frames.div_ceil(u128::from(self.format.sample_rate)) as u64
    }

    /// Resamples `self.block` (one source frame) and encodes what is complete.
    fn process_block(
        &mut self,
        opus_out: &mut [u8],
        out: &mut Vec<OpusPacket>,
        stats: &mut AacToOpusStats,
    ) {
        self.input_frames += self.format.frame_samples as u64;
        self.resample_block(usize::MAX);
        self.encode_ready(opus_out, out, stats);
    }

    /// Runs `self.block` through the resampler into `pending`, keeping at most `limit`
    /// output frames.
    fn resample_block(&mut self, limit: usize) {
        let channels = self.format.channels;
        let Some(resampler) = self.resampler.as_mut() else {
            let frames = self.format.frame_samples.min(limit);
            self.pending
                .extend_from_slice(&self.block[..frames * channels]);
            self.output_frames += frames as u64;
            return;
        };
        let frames_in = self.format.frame_samples;
        let frames_out = self.resampled.len() / channels;
        let result = match (
            InterleavedSlice::new(&self.block[..], channels, frames_in),
            InterleavedSlice::new_mut(&mut self.resampled[..], channels, frames_out),
        ) {
            (Ok(input), Ok(mut output)) => resampler.process_into_buffer(&input, &mut output, None),
            _ => return,
        };
        let Ok((_, produced)) = result else {
            return;
        };
        let skip = self.skip_output.min(produced);
        self.skip_output -= skip;
        let kept = (produced - skip).min(limit);
        self.pending
            .extend_from_slice(&self.resampled[skip * channels..(skip + kept) * channels]);
        self.output_frames += kept as u64;
    }

    fn encode_ready(
        &mut self,
        opus_out: &mut [u8],
        out: &mut Vec<OpusPacket>,
        stats: &mut AacToOpusStats,
    ) {
        let frame = OPUS_FRAME_SAMPLES * self.format.channels;
        let mut offset = 0;
        while self.pending.len() - offset >= frame {
            let rtp_timestamp =
                (self.anchor + self.packets as i64 * OPUS_FRAME_SAMPLES as i64) as u32;
            self.packets += 1;
            match self
                .encoder
                .encode_float(&self.pending[offset..offset + frame], opus_out)
            {
                Ok(written) if written > 0 && written <= opus_out.len() => {
                    stats.opus_packets += 1;
                    out.push(OpusPacket {
                        payload: Bytes::copy_from_slice(&opus_out[..written]),
                        rtp_timestamp,
                    });
                }
                _ => stats.encode_errors += 1,
            }
            offset += frame;
        }
        self.pending.drain(..offset);
    }

    /// Pushes the resampler's tail out and pads the last Opus frame with silence.
    fn drain(
        &mut self,
        opus_out: &mut [u8],
        out: &mut Vec<OpusPacket>,
        stats: &mut AacToOpusStats,
    ) {
        if self.resampler.is_some() {
            // Silence through the resampler until the real input has come out; at most
            // the delay plus a frame, bounded in case the resampler misbehaves.
            let mut rounds = 0;
            while self.output_frames < self.expected_output_frames() && rounds < 16 {
                let missing = (self.expected_output_frames() - self.output_frames) as usize;
                self.block.fill(0.0);
                self.resample_block(missing);
                rounds += 1;
            }
        }
        let frame = OPUS_FRAME_SAMPLES * self.format.channels;
        let partial = self.pending.len() % frame;
        if partial != 0 {
            self.pending
                .resize(self.pending.len() + frame - partial, 0.0);
        }
        self.encode_ready(opus_out, out, stats);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use fdk_aac::enc::{AudioObjectType, BitRate, ChannelMode, Encoder, EncoderParams};

    /// Raw AAC frames of a 440 Hz sine (FLV timestamps in ms, as ffmpeg writes them) and
    /// the AudioSpecificConfig.
    pub(crate) fn aac_sine(
        sample_rate: u32,
        channels: usize,
        seconds: f32,
        object_type: AudioObjectType,
    ) -> (Vec<u8>, Vec<(Vec<u8>, u32)>) {
        let encoder = Encoder::new(EncoderParams {
            bit_rate: BitRate::Cbr(if channels == 1 { 64_000 } else { 128_000 }),
            sample_rate,
            transport: fdk_aac::enc::Transport::Raw,
            channels: if channels == 1 {
                ChannelMode::Mono
            } else {
                ChannelMode::Stereo
            },
            audio_object_type: object_type,
        })
        .expect("AAC encoder opens");
        let info = encoder.info().expect("encoder info");
        let asc = info.confBuf[..info.confSize as usize].to_vec();
        let frame = info.frameLength as usize;
        let total = (seconds * sample_rate as f32) as usize;
        let mut frames = Vec::new();
        let mut buffer = vec![0u8; 8192];
        let mut produced = 0usize;
        for start in (0..total).step_by(frame) {
            let mut pcm = vec![0i16; frame * channels];
            for (i, samples) in pcm.chunks_mut(channels).enumerate() {
                let t = (start + i) as f32 / sample_rate as f32;
                let value = (2.0 * std::f32::consts::PI * 440.0 * t).sin() * 12_000.0;
                samples.fill(value as i16);
            }
            let result = encoder.encode(&pcm, &mut buffer).expect("encode");
            if result.output_size > 0 {
                let ms = (produced as u64 * 1000 / u64::from(sample_rate)) as u32;
                frames.push((buffer[..result.output_size].to_vec(), ms));
                produced += frame;
            }
        }
        (asc, frames)
    }

    /// Decodes Opus packets to mono f32 (first channel).
    fn decode_opus(packets: &[OpusPacket], channels: usize) -> Vec<f32> {
        let layout = if channels == 1 {
            opus::Channels::Mono
        } else {
            opus::Channels::Stereo
        };
        let mut decoder = opus::Decoder::new(48_000, layout).unwrap();
        let mut pcm = Vec::new();
        let mut buffer = vec![0f32; 5760 * channels];
        for packet in packets {
            let samples = decoder
                .decode_float(&packet.payload, &mut buffer, false)
                .unwrap();
            assert_eq!(samples, OPUS_FRAME_SAMPLES);
            pcm.extend(buffer[..samples * channels].iter().step_by(channels));
        }
        pcm
    }

    /// Goertzel power at `frequency` relative to the signal's total power.
    fn tone_ratio(pcm: &[f32], frequency: f32) -> f32 {
        let omega = 2.0 * std::f32::consts::PI * frequency / 48_000.0;
        let coefficient = 2.0 * omega.cos();
        let (mut s1, mut s2) = (0f32, 0f32);
        for &x in pcm {
            let s0 = x + coefficient * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        let power = s1 * s1 + s2 * s2 - coefficient * s1 * s2;
        let energy: f32 = pcm.iter().map(|x| x * x).sum();
        power / (energy * pcm.len() as f32 / 2.0)
    }

    fn rms(pcm: &[f32]) -> f32 {
        (pcm.iter().map(|x| x * x).sum::<f32>() / pcm.len() as f32).sqrt()
    }

    fn zero_crossing_frequency(pcm: &[f32]) -> f32 {
        let crossings = pcm
            .windows(2)
            .filter(|w| (w[0] < 0.0) != (w[1] < 0.0))
            .count();
        crossings as f32 / 2.0 / (pcm.len() as f32 / 48_000.0)
    }

    fn transcode(
        rate: u32,
        channels: usize,
        object_type: AudioObjectType,
    ) -> (AacToOpus, Vec<OpusPacket>) {
        let (asc, frames) = aac_sine(rate, channels, 2.0, object_type);
        let mut transcoder = AacToOpus::new(&asc, AacToOpusConfig::default()).unwrap();
        let mut out = Vec::new();
        for (frame, ms) in &frames {
            transcoder.push(frame, 1000 + ms, &mut out).unwrap();
        }
        transcoder.flush(&mut out);
        (transcoder, out)
    }

    fn check_tone(packets: &[OpusPacket], channels: usize) {
        let pcm = decode_opus(packets, channels);
        // Skip the codecs' start-up, look at the middle second.
        let middle = &pcm[pcm.len() / 4..pcm.len() * 3 / 4];
        assert!(rms(middle) > 0.1, "not silent: rms {}", rms(middle));
        let frequency = zero_crossing_frequency(middle);
        assert!((430.0..450.0).contains(&frequency), "{frequency} Hz");
        assert!(
            tone_ratio(middle, 440.0) > 0.8,
            "{}",
            tone_ratio(middle, 440.0)
        );
        assert!(tone_ratio(middle, 1000.0) < 0.01);
    }

    #[test]
    fn parses_audio_specific_config() {
        let lc = AudioSpecificConfig::parse(&[0x12, 0x10]).unwrap();
        assert_eq!(
            (lc.object_type, lc.sample_rate, lc.channel_configuration),
            (2, 44_100, 2)
        );
        let mono48 = AudioSpecificConfig::parse(&[0x11, 0x88]).unwrap();
        assert_eq!(
            (mono48.sample_rate, mono48.channel_configuration),
            (48_000, 1)
        );
        assert!(AudioSpecificConfig::parse(&[0x12]).is_err());
        assert!(AudioSpecificConfig::parse(&[]).is_err());
        assert!(
            AudioSpecificConfig::parse(&[0x16, 0x90]).is_err(),
            "index 13"
        );
    }

    #[test]
    fn stereo_44100_becomes_a_440_hz_opus_stream() {
        let (transcoder, packets) = transcode(44_100, 2, AudioObjectType::Mpeg4LowComplexity);
        assert_eq!(transcoder.sample_rate(), 44_100);
        assert_eq!(transcoder.channels(), 2);
        // 87 AAC frames of 1024 samples at 44.1 kHz = 101.0 packets of 20 ms, the last
        // one padded: 102.
        assert!((100..=102).contains(&packets.len()), "{}", packets.len());
        assert_eq!(packets[0].rtp_timestamp, 48_000);
        for pair in packets.windows(2) {
            assert_eq!(
                pair[1].rtp_timestamp.wrapping_sub(pair[0].rtp_timestamp),
                960
            );
        }
        check_tone(&packets, 2);
        let stats = transcoder.stats();
        assert_eq!(stats.re_anchors, 0);
        assert_eq!(stats.decode_errors, 0);
        assert_eq!(stats.silence_frames_inserted, 0);
        assert_eq!(stats.opus_packets, packets.len() as u64);
    }

    #[test]
    fn mono_48000_stays_mono_without_resampling() {
        let (transcoder, packets) = transcode(48_000, 1, AudioObjectType::Mpeg4LowComplexity);
        assert_eq!(transcoder.channels(), 1);
        assert_eq!(transcoder.sample_rate(), 48_000);
        assert_eq!(
            opus::packet::get_nb_channels(&packets[0].payload).unwrap(),
            opus::Channels::Mono
        );
        for pair in packets.windows(2) {
            assert_eq!(pair[1].rtp_timestamp - pair[0].rtp_timestamp, 960);
        }
        check_tone(&packets, 1);
    }

    #[test]
    fn other_rates_are_resampled() {
        for rate in [32_000, 22_050, 16_000] {
            let (transcoder, packets) = transcode(rate, 2, AudioObjectType::Mpeg4LowComplexity);
            assert_eq!(transcoder.sample_rate(), rate);
            check_tone(&packets, 2);
        }
    }

    #[test]
    fn he_aac_decodes_to_its_output_rate() {
        let (transcoder, packets) = transcode(44_100, 2, AudioObjectType::Mpeg4HeAac);
        assert_eq!(transcoder.sample_rate(), 44_100);
        check_tone(&packets, 2);
        for pair in packets.windows(2) {
            assert_eq!(pair[1].rtp_timestamp - pair[0].rtp_timestamp, 960);
        }
    }

    #[test]
    fn timestamp_jump_re_anchors() {
        let (asc, frames) = aac_sine(44_100, 2, 2.0, AudioObjectType::Mpeg4LowComplexity);
        let mut transcoder = AacToOpus::new(&asc, AacToOpusConfig::default()).unwrap();
        let mut out = Vec::new();
        for (index, (frame, ms)) in frames.iter().enumerate() {
            // After 1 s the publisher's clock jumps ahead by 5 s.
            let jump = if index >= 43 { 5_000 } else { 0 };
            transcoder.push(frame, ms + jump, &mut out).unwrap();
        }
        assert_eq!(transcoder.stats().re_anchors, 1);
        let jump = out
            .windows(2)
            .position(|w| w[1].rtp_timestamp.wrapping_sub(w[0].rtp_timestamp) != 960)
            .expect("one jump");
        assert!(
            out[jump + 1..]
                .windows(2)
                .all(|w| w[1].rtp_timestamp - w[0].rtp_timestamp == 960)
        );
        // Re-anchored exactly on the new frame's timestamp.
        let (_, anchor_ms) = frames[43];
        assert_eq!(out[jump + 1].rtp_timestamp, (anchor_ms + 5_000) * 48);
        // The first timeline ended with all its audio: 43 frames of 1024 samples.
        let first_len = (jump + 1) as u64 * 960;
        assert!(
            (43 * 1024 * 48_000 / 44_100..=43 * 1024 * 48_000 / 44_100 + 960).contains(&first_len)
        );

        // A small backward step within 200 ms does not re-anchor.
        let mut transcoder = AacToOpus::new(&asc, AacToOpusConfig::default()).unwrap();
        let mut out = Vec::new();
        for (index, (frame, ms)) in frames.iter().enumerate() {
            let ms = if index >= 20 { ms - 100 } else { *ms };
            transcoder.push(frame, ms, &mut out).unwrap();
        }
        assert_eq!(transcoder.stats().re_anchors, 0);
        assert!(
            out.windows(2)
                .all(|w| w[1].rtp_timestamp - w[0].rtp_timestamp == 960)
        );
    }

    #[test]
    fn corrupt_frames_are_errors_and_the_gap_is_filled() {
        let (asc, frames) = aac_sine(48_000, 2, 2.0, AudioObjectType::Mpeg4LowComplexity);
        let mut transcoder = AacToOpus::new(&asc, AacToOpusConfig::default()).unwrap();
        let mut out = Vec::new();
        let mut errors = 0;
        for (index, (frame, ms)) in frames.iter().enumerate() {
            let result = match index {
                30 => transcoder.push(&[], *ms, &mut out),
                31 => transcoder.push(&[0xFF; 7], *ms, &mut out),
                33 => transcoder.push(&[0x21; 10_000], *ms, &mut out),
                32 => {
                    let mut garbage = frame.clone();
                    garbage
                        .iter_mut()
                        .for_each(|b| *b = b.wrapping_mul(7) ^ 0x5A);
                    transcoder.push(&garbage, *ms, &mut out)
                }
                _ => transcoder.push(frame, *ms, &mut out),
            };
            if result.is_err() {
                errors += 1;
            }
        }
        assert!(errors >= 3, "{errors}");
        let stats = *transcoder.stats();
        assert_eq!(stats.decode_errors, errors);
        assert_eq!(stats.silence_frames_inserted, errors);
        assert_eq!(stats.re_anchors, 0);
        // The timeline stayed continuous and the tone is back after the damage.
        assert!(
            out.windows(2)
                .all(|w| w[1].rtp_timestamp - w[0].rtp_timestamp == 960)
        );
        check_tone(&out[out.len() / 2..], 2);
        assert!(AacToOpus::new(&[0xFF], AacToOpusConfig::default()).is_err());
        assert!(AacToOpus::new(&[], AacToOpusConfig::default()).is_err());
    }
}
