//! Opus (48 kHz RTP payloads) → AAC-LC 48 kHz, in process.
//!
//! Decoding uses libopus (the `opus` crate, linked to the system library found by
//! pkg-config); encoding uses the Fraunhofer FDK AAC encoder (the `fdk-aac` crate, which
//! builds its bundled copy). See `bridge/README-aac.md` for the choice and the licences.
//!
//! Opus packets are 20 ms (960 samples) and AAC-LC frames 1024 samples, so decoded PCM
//! goes through a FIFO positioned on the 48 kHz sample timeline; a frame leaves the FIFO
//! as soon as 1024 samples are there. Positions come from the packets' timestamps:
//! - a gap (lost packet, DTX silence) is filled with Opus packet-loss concealment for the
//!   first 100 ms (using in-band FEC from the next packet for the last 20 ms when the
//!   encoder sent any), then silence, up to [`TranscoderConfig::max_fill`], so the AAC
//!   timeline stays continuous;
//! - a longer gap restarts the FIFO at the new position (the frame after it is marked
//!   `discontinuity`); overlapping audio is trimmed, so output timestamps never go back.
//!
//! The encoder has a fixed delay (2048 samples for FDK AAC-LC): output frame *k* holds
//! the input that was fed *delay* samples earlier, so each output frame is stamped with
//! the position of the block fed that much earlier, and the priming frames are dropped.
//!
//! Channels: output is stereo by default. Browsers signal `opus/48000/2` and libopus
//! upmixes mono packets, so stereo costs a little CPU but never loses a stereo
//! publisher; mono can be configured.

use crate::error::BridgeError;
use crate::media_unit::{AAC_FRAME_SAMPLES, AacConfig, AudioFrame, TIMESCALE};
use bytes::Bytes;
use fdk_aac::enc::{AudioObjectType, BitRate, ChannelMode, Encoder, EncoderParams, Transport};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::SystemTime;

/// The sample rate of everything here: Opus' RTP clock and the AAC output.
pub const SAMPLE_RATE: u32 = 48_000;
/// Samples per channel in a 20 ms Opus frame.
const OPUS_FRAME: usize = 960;
/// The largest Opus packet duration (120 ms).
const MAX_OPUS_SAMPLES: usize = 5760;
/// Gaps up to this many samples (100 ms) are concealed by Opus PLC; beyond, silence.
const MAX_PLC_SAMPLES: i64 = 4800;
/// Samples of timestamp jitter tolerated before a packet counts as a gap or overlap.
const TOLERANCE_SAMPLES: i64 = 48;

/// Transcoder settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TranscoderConfig {
    /// Output channels, 1 or 2.
    pub channels: u8,
    /// AAC bitrate in bits per second (CBR).
    pub bitrate: u32,
    /// Longest gap filled with concealment/silence to keep the timeline continuous; a
    /// longer one restarts the timeline (discontinuity).
    pub max_fill: std::time::Duration,
}

impl Default for TranscoderConfig {
    fn default() -> Self {
        TranscoderConfig {
            channels: 2,
            bitrate: 128_000,
            max_fill: std::time::Duration::from_secs(5),
        }
    }
}

/// Counters, one per reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TranscoderStats {
    /// Opus packets decoded.
    pub packets: u64,
    /// Opus packets libopus rejected (concealed instead).
    pub decode_errors: u64,
    /// Samples synthesized by packet-loss concealment or FEC.
    pub concealed_samples: u64,
    /// Samples of silence inserted into gaps.
    pub silence_samples: u64,
    /// Samples dropped because they overlapped audio already emitted.
    pub trimmed_samples: u64,
    /// Timeline restarts (gaps longer than `max_fill`, or jumps back).
    pub resyncs: u64,
    /// AAC frames emitted.
    pub frames: u64,
    /// AAC frames that failed to encode.
    pub encode_errors: u64,
}

/// Opus → AAC-LC; see the module doc.
pub struct AudioTranscoder {
    config: TranscoderConfig,
    aac: Arc<AacConfig>,
    decoder: opus::Decoder,
    encoder: Encoder,
    /// Encoder delay in whole input blocks (rounded up)…
    delay_blocks: usize,
    /// …and the samples to add back to a block's position for the exact delay.
    delay_adjust: i64,
    channels: usize,
    /// Decoded interleaved PCM not yet fed to the encoder.
    fifo: Vec<i16>,
    /// 48 kHz position of `fifo[0]`.
    fifo_position: i64,
    /// Whether the FIFO has a position yet.
    positioned: bool,
    /// The blocks inside the encoder's delay line, oldest first: position, whether it
    /// starts a new timeline, wall clock. Fewer than `delay_blocks + 1` means priming.
    in_flight: VecDeque<(i64, bool, SystemTime)>,
    /// The next block fed starts a new timeline (after a resync or a flush).
    discontinuity_pending: bool,
    /// Timestamp of the last frame emitted; output never goes back.
    last_output_pts: Option<i64>,
    /// Wall clock of the most recent packet's position, for stamping frames.
    wallclock_ref: Option<(i64, SystemTime)>,
    /// Decoder output scratch (120 ms).
    pcm: Vec<i16>,
    /// Encoder output scratch (one frame).
    out: Vec<u8>,
    stats: TranscoderStats,
}

impl std::fmt::Debug for AudioTranscoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AudioTranscoder")
            .field("config", &self.config)
            .field("fifo_position", &self.fifo_position)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

fn samples_to_ticks(samples: i64) -> i64 {
    // 90 000 / 48 000 = 15 / 8, rounded to nearest.
    (samples * i64::from(TIMESCALE) * 2 + i64::from(SAMPLE_RATE))
        .div_euclid(2 * i64::from(SAMPLE_RATE))
}

fn ticks_to_samples(ticks: i64) -> i64 {
    (ticks * i64::from(SAMPLE_RATE) * 2 + i64::from(TIMESCALE)).div_euclid(2 * i64::from(TIMESCALE))
}

impl AudioTranscoder {
    /// Opens the Opus decoder and the AAC encoder.
    pub fn new(config: TranscoderConfig) -> Result<Self, BridgeError> {
        let aac = Arc::new(AacConfig::lc(SAMPLE_RATE, config.channels)?);
        let (opus_channels, mode) = match config.channels {
            1 => (opus::Channels::Mono, ChannelMode::Mono),
            _ => (opus::Channels::Stereo, ChannelMode::Stereo),
        };
        let decoder = opus::Decoder::new(SAMPLE_RATE, opus_channels)?;
        let encoder = Encoder::new(EncoderParams {
            bit_rate: BitRate::Cbr(config.bitrate),
            sample_rate: SAMPLE_RATE,
            transport: Transport::Raw,
            channels: mode,
            audio_object_type: AudioObjectType::Mpeg4LowComplexity,
        })
        .map_err(|e| BridgeError::AacEncoder(e.to_string()))?;
        let info = encoder
            .info()
            .map_err(|e| BridgeError::AacEncoder(e.to_string()))?;
        let conf_len = (info.confSize as usize).min(info.confBuf.len());
        if info.confBuf[..conf_len] != aac.audio_specific_config[..] {
            return Err(BridgeError::AacEncoder(format!(
                "encoder config {:02x?} differs from AAC-LC {:02x?}",
                &info.confBuf[..conf_len],
                &aac.audio_specific_config[..]
            )));
        }
        let delay = i64::from(info.nDelay);
        let frame = i64::from(AAC_FRAME_SAMPLES);
        let delay_blocks = ((delay + frame - 1) / frame) as usize;
        let delay_adjust = delay_blocks as i64 * frame - delay;
        let channels = usize::from(config.channels);
        Ok(AudioTranscoder {
            config,
            aac,
            decoder,
            encoder,
            delay_blocks,
            delay_adjust,
            channels,
            fifo: Vec::with_capacity((MAX_OPUS_SAMPLES + AAC_FRAME_SAMPLES as usize) * channels),
            fifo_position: 0,
            positioned: false,
            in_flight: VecDeque::with_capacity(delay_blocks + 1),
            discontinuity_pending: false,
            last_output_pts: None,
            wallclock_ref: None,
            pcm: vec![0; MAX_OPUS_SAMPLES * channels],
            out: vec![0; 768 * channels.max(2)],
            stats: TranscoderStats::default(),
        })
    }

    /// The AAC configuration of every frame this transcoder emits.
    pub fn aac_config(&self) -> &Arc<AacConfig> {
        &self.aac
    }

    /// Counters so far.
    pub fn stats(&self) -> &TranscoderStats {
        &self.stats
    }

    /// Decodes one Opus packet whose first sample is at `pts` (90 kHz timeline) and
    /// appends finished AAC frames to `out`. `wallclock` is the packet's estimated
    /// capture time, used to stamp frames.
    pub fn push(
        &mut self,
        payload: &[u8],
        pts: i64,
        wallclock: SystemTime,
        out: &mut Vec<AudioFrame>,
    ) {
        let position = ticks_to_samples(pts);
        self.wallclock_ref = Some((position, wallclock));
        if !self.positioned {
            self.fifo_position = position;
            self.positioned = true;
        }
        let expected = self.next_position();
        let gap = position - expected;
        let max_fill =
            i64::try_from(self.config.max_fill.as_millis()).unwrap_or(i64::MAX / 96) * 48;
        let mut trim = 0usize;
        if gap > TOLERANCE_SAMPLES {
            if gap <= max_fill {
                self.fill_gap(gap as usize, payload, out);
            } else {
                self.resync(position, out);
            }
        } else if gap < -TOLERANCE_SAMPLES {
            if -gap > max_fill {
                // The timeline jumped back by a lot: restart after what was emitted.
                self.resync(expected, out);
            } else {
                trim = (-gap) as usize;
            }
        }

        self.stats.packets += 1;
        let frame_capacity = MAX_OPUS_SAMPLES * self.channels;
        let decoded = match self
            .decoder
            .decode(payload, &mut self.pcm[..frame_capacity], false)
        {
            Ok(samples) => samples,
            Err(_) => {
                self.stats.decode_errors += 1;
                self.conceal(OPUS_FRAME)
            }
        };
        let trim = trim.min(decoded);
        self.stats.trimmed_samples += trim as u64;
        let start = trim * self.channels;
        let end = decoded * self.channels;
        self.fifo.extend_from_slice(&self.pcm[start..end]);
        self.encode_ready(out);
    }

    /// End of a publisher session: pads the last partial frame with silence and drains
    /// the encoder's delay line, so the last real audio is emitted. The next packet
    /// starts a new timeline (marked `discontinuity`).
    pub fn flush(&mut self, out: &mut Vec<AudioFrame>) {
        if !self.positioned {
            return;
        }
        let frame = AAC_FRAME_SAMPLES as usize * self.channels;
        let partial = self.fifo.len() % frame;
        if partial != 0 {
            self.fifo.resize(self.fifo.len() + frame - partial, 0);
        }
        // Enough silence to push the real samples out of the encoder's delay line.
        self.fifo
            .resize(self.fifo.len() + self.delay_blocks * frame, 0);
        self.encode_ready(out);
        self.positioned = false;
        self.discontinuity_pending = true;
        self.decoder.reset_state().ok();
        // The silence blocks still in flight carry no audio worth sending.
        self.in_flight.clear();
        self.fifo.clear();
    }

    fn next_position(&self) -> i64 {
        self.fifo_position + (self.fifo.len() / self.channels) as i64
    }

    /// Fills `gap` samples: PLC (with FEC from `next_payload` for the last frame) for
    /// the first 100 ms, then silence.
    fn fill_gap(&mut self, gap: usize, next_payload: &[u8], out: &mut Vec<AudioFrame>) {
        let plc_total = gap.min(MAX_PLC_SAMPLES as usize);
        let silence = gap - plc_total;
        // Concealment first (it decays naturally), then silence, then the FEC frame just
        // before the next packet when the gap is at least one frame.
        let use_fec = gap >= OPUS_FRAME && silence == 0;
        let plc = if use_fec {
            plc_total - OPUS_FRAME
        } else {
            plc_total
        };
        let mut remaining = plc;
        while remaining > 0 {
            // libopus conceals in multiples of 2.5 ms (120 samples).
            let chunk = remaining.min(OPUS_FRAME);
            let rounded = chunk / 120 * 120;
            if rounded == 0 {
                self.fifo.resize(self.fifo.len() + chunk * self.channels, 0);
                self.stats.silence_samples += chunk as u64;
            } else {
                let produced = self.conceal(rounded);
                self.fifo
                    .extend_from_slice(&self.pcm[..produced * self.channels]);
                if produced < chunk {
                    self.fifo
                        .resize(self.fifo.len() + (chunk - produced) * self.channels, 0);
                }
            }
            remaining -= chunk;
            self.encode_ready(out);
        }
        if silence > 0 {
            self.stats.silence_samples += silence as u64;
            let mut remaining = silence;
            while remaining > 0 {
                let chunk = remaining.min(AAC_FRAME_SAMPLES as usize);
                self.fifo.resize(self.fifo.len() + chunk * self.channels, 0);
                remaining -= chunk;
                self.encode_ready(out);
            }
        }
        if use_fec {
            let capacity = OPUS_FRAME * self.channels;
            let produced = match self
                .decoder
                .decode(next_payload, &mut self.pcm[..capacity], true)
            {
                Ok(samples) => samples,
                Err(_) => self.conceal(OPUS_FRAME),
            };
            self.stats.concealed_samples += produced as u64;
            self.fifo
                .extend_from_slice(&self.pcm[..produced * self.channels]);
            self.encode_ready(out);
        }
    }

    /// Runs packet-loss concealment for `samples` into `self.pcm`; returns the count.
    fn conceal(&mut self, samples: usize) -> usize {
        let capacity = samples.min(MAX_OPUS_SAMPLES) * self.channels;
        let produced = match self.decoder.decode(&[], &mut self.pcm[..capacity], false) {
            Ok(produced) => produced,
            Err(_) => {
                self.pcm[..capacity].fill(0);
                capacity / self.channels
            }
        };
        self.stats.concealed_samples += produced as u64;
        produced
    }

    /// Closes the current timeline (padding the partial frame) and restarts at
    /// `position`.
    fn resync(&mut self, position: i64, out: &mut Vec<AudioFrame>) {
        self.stats.resyncs += 1;
        let frame = AAC_FRAME_SAMPLES as usize * self.channels;
        let partial = self.fifo.len() % frame;
        if partial != 0 {
            self.fifo.resize(self.fifo.len() + frame - partial, 0);
            self.encode_ready(out);
        }
        self.fifo.clear();
        // Never go back before what the encoder already holds.
        let floor = self.next_position();
        self.fifo_position = position.max(floor);
        self.discontinuity_pending = true;
    }

    fn encode_ready(&mut self, out: &mut Vec<AudioFrame>) {
        let frame = AAC_FRAME_SAMPLES as usize * self.channels;
        let mut offset = 0;
        while self.fifo.len() - offset >= frame {
            let block_position = self.fifo_position;
            let wallclock = self.wallclock_at(block_position);
            let discontinuity = std::mem::take(&mut self.discontinuity_pending);
            self.in_flight
                .push_back((block_position, discontinuity, wallclock));
            let result = self
                .encoder
                .encode(&self.fifo[offset..offset + frame], &mut self.out);
            offset += frame;
            self.fifo_position += i64::from(AAC_FRAME_SAMPLES);
            let written = match result {
                Ok(info) => info.output_size,
                Err(_) => {
                    self.stats.encode_errors += 1;
                    0
                }
            };
            if self.in_flight.len() <= self.delay_blocks {
                // Priming: the frame holds the encoder's delay line, no input yet.
                continue;
            }
            let Some((position, discontinuity, wallclock)) = self.in_flight.pop_front() else {
                continue;
            };
            if written == 0 || written > self.out.len() {
                continue;
            }
            let pts = samples_to_ticks(position + self.delay_adjust);
            if pts < 0 || self.last_output_pts.is_some_and(|last| pts <= last) {
                self.stats.trimmed_samples += u64::from(AAC_FRAME_SAMPLES);
                continue;
            }
            self.last_output_pts = Some(pts);
            self.stats.frames += 1;
            out.push(AudioFrame {
                pts,
                duration: self.aac.frame_duration_ticks(),
                data: Bytes::copy_from_slice(&self.out[..written]),
                config: Arc::clone(&self.aac),
                discontinuity: discontinuity && self.stats.frames > 1,
                wallclock,
            });
        }
        self.fifo.drain(..offset);
    }

    fn wallclock_at(&self, position: i64) -> SystemTime {
        match self.wallclock_ref {
            Some((reference, wallclock)) => {
                let delta_ns =
                    (position - reference) as i128 * 1_000_000_000 / i128::from(SAMPLE_RATE);
                let delta = std::time::Duration::from_nanos(
                    delta_ns.unsigned_abs().min(u128::from(u64::MAX)) as u64,
                );
                if delta_ns >= 0 {
                    wallclock.checked_add(delta)
                } else {
                    wallclock.checked_sub(delta)
                }
                .unwrap_or(wallclock)
            }
            None => SystemTime::UNIX_EPOCH,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Encodes `frames` 20 ms Opus packets of a 440 Hz tone.
    pub(crate) fn opus_tone(frames: usize, channels: opus::Channels) -> Vec<Vec<u8>> {
        let mut encoder =
            opus::Encoder::new(SAMPLE_RATE, channels, opus::Application::Audio).unwrap();
        let count = channels as usize;
        let mut packets = Vec::new();
        let mut phase = 0f32;
        for _ in 0..frames {
            let mut pcm = vec![0i16; OPUS_FRAME * count];
            for frame in pcm.chunks_mut(count) {
                let sample = (phase.sin() * 10_000.0) as i16;
                phase += 2.0 * std::f32::consts::PI * 440.0 / SAMPLE_RATE as f32;
                frame.fill(sample);
            }
            packets.push(encoder.encode_vec(&pcm, 4000).unwrap());
        }
        packets
    }

    fn decode_aac(frames: &[AudioFrame]) -> Vec<i16> {
        use fdk_aac::dec::{Decoder, Transport};
        let mut decoder = Decoder::new(Transport::Adts);
        let mut pcm = Vec::new();
        let mut buf = vec![0i16; 8192];
        for frame in frames {
            let mut adts = Vec::new();
            frame.config.write_adts_header(frame.data.len(), &mut adts);
            adts.extend_from_slice(&frame.data);
            let consumed = decoder.fill(&adts).unwrap();
            assert_eq!(consumed, adts.len());
            decoder.decode_frame(&mut buf).unwrap();
            let size = decoder.decoded_frame_size();
            pcm.extend_from_slice(&buf[..size]);
        }
        pcm
    }

    fn run(transcoder: &mut AudioTranscoder, packets: &[(Vec<u8>, i64)]) -> Vec<AudioFrame> {
        let mut out = Vec::new();
        for (payload, pts) in packets {
            transcoder.push(payload, *pts, SystemTime::UNIX_EPOCH, &mut out);
        }
        out
    }

    #[test]
    fn continuous_stream_gives_contiguous_frames() {
        let mut transcoder = AudioTranscoder::new(TranscoderConfig::default()).unwrap();
        let packets: Vec<_> = opus_tone(100, opus::Channels::Stereo)
            .into_iter()
            .enumerate()
            .map(|(i, p)| (p, 9000 + i as i64 * 1800))
            .collect();
        let frames = run(&mut transcoder, &packets);
        // 2 s = 93.75 AAC frames; minus the partial one and the two priming frames.
        assert!((90..=93).contains(&frames.len()), "{} frames", frames.len());
        for pair in frames.windows(2) {
            assert_eq!(pair[1].pts - pair[0].pts, 1920);
        }
        assert!(frames.iter().all(|f| !f.discontinuity));
        // First frame is the first input block shifted by the encoder delay compensation.
        assert_eq!(frames[0].pts, 9000);
        // The AAC decodes and is not silent (the tone came through).
        let pcm = decode_aac(&frames);
        let energy: f64 = pcm[pcm.len() / 2..]
            .iter()
            .map(|&s| f64::from(s).powi(2))
            .sum::<f64>()
            / (pcm.len() / 2) as f64;
        assert!(energy.sqrt() > 3000.0, "rms {}", energy.sqrt());
        assert_eq!(transcoder.stats().frames as usize, frames.len());
    }

    #[test]
    fn lost_packets_are_concealed_without_timestamp_gap() {
        let mut transcoder = AudioTranscoder::new(TranscoderConfig::default()).unwrap();
        let packets: Vec<_> = opus_tone(100, opus::Channels::Mono)
            .into_iter()
            .enumerate()
            .filter(|(i, _)| !(40..43).contains(i) && *i != 70)
            .map(|(i, p)| (p, i as i64 * 1800))
            .collect();
        let frames = run(&mut transcoder, &packets);
        for pair in frames.windows(2) {
            assert_eq!(pair[1].pts - pair[0].pts, 1920, "no gap in AAC timeline");
        }
        assert_eq!(transcoder.stats().concealed_samples, 4 * 960);
        assert_eq!(transcoder.stats().resyncs, 0);
    }

    #[test]
    fn long_gap_resyncs_with_discontinuity() {
        let mut transcoder = AudioTranscoder::new(TranscoderConfig {
            max_fill: std::time::Duration::from_millis(500),
            ..Default::default()
        })
        .unwrap();
        let tone = opus_tone(100, opus::Channels::Stereo);
        let packets: Vec<_> = tone
            .into_iter()
            .enumerate()
            .map(|(i, p)| (p, i as i64 * 1800 + if i >= 50 { 90_000 * 3 } else { 0 }))
            .collect();
        let frames = run(&mut transcoder, &packets);
        assert_eq!(transcoder.stats().resyncs, 1);
        let jump = frames
            .windows(2)
            .position(|w| w[1].pts - w[0].pts != 1920)
            .expect("a jump");
        assert!(frames[jump + 1].pts - frames[jump].pts > 90_000 * 2);
        assert!(frames.iter().filter(|f| f.discontinuity).count() >= 1);
        assert!(frames.windows(2).all(|w| w[1].pts > w[0].pts));
    }

    #[test]
    fn overlap_is_trimmed_and_output_stays_monotonic() {
        let mut transcoder = AudioTranscoder::new(TranscoderConfig::default()).unwrap();
        let tone = opus_tone(60, opus::Channels::Stereo);
        let mut packets: Vec<_> = tone
            .iter()
            .take(30)
            .enumerate()
            .map(|(i, p)| (p.clone(), i as i64 * 1800))
            .collect();
        // The timeline is moved back by 30 ms (an A/V sync correction).
        packets.extend(
            tone.iter()
                .skip(30)
                .enumerate()
                .map(|(i, p)| (p.clone(), (30 + i as i64) * 1800 - 2700)),
        );
        let frames = run(&mut transcoder, &packets);
        assert!(frames.windows(2).all(|w| w[1].pts - w[0].pts == 1920));
        assert_eq!(transcoder.stats().trimmed_samples, 1440);
    }

    #[test]
    fn garbage_payloads_are_concealed() {
        let mut transcoder = AudioTranscoder::new(TranscoderConfig::default()).unwrap();
        let packets: Vec<_> = (0..20)
            .map(|i| (vec![0xFF; 3 + i], i as i64 * 1800))
            .collect();
        let frames = run(&mut transcoder, &packets);
        assert!(!frames.is_empty());
        assert!(transcoder.stats().decode_errors > 0);
    }

    #[test]
    fn flush_emits_tail_and_marks_next_start() {
        let mut transcoder = AudioTranscoder::new(TranscoderConfig::default()).unwrap();
        let tone = opus_tone(10, opus::Channels::Stereo);
        let packets: Vec<_> = tone
            .iter()
            .enumerate()
            .map(|(i, p)| (p.clone(), i as i64 * 1800))
            .collect();
        let mut frames = run(&mut transcoder, &packets);
        transcoder.flush(&mut frames);
        // 200 ms of input = 9.375 frames → 10 frames after padding.
        assert_eq!(frames.len(), 10);
        let last = frames.last().unwrap().pts;
        let more = run(&mut transcoder, &[(tone[0].clone(), last + 90_000)]);
        let mut more = more;
        transcoder.flush(&mut more);
        assert!(more[0].discontinuity);
        assert!(more[0].pts > last);
    }
}
