//! CPU cost of the AAC → Opus transcoder (RTMP ingest audio for WebRTC viewers).
//!
//! `cargo bench -p queqiao-bridge --bench aac_to_opus -- --quick`
//! Each iteration transcodes one second of a stereo AAC-LC stream (decode, resample to
//! 48 kHz when needed, Opus encode at 64 kbit/s); the time per iteration divided by 50 is
//! the cost of 20 ms of audio, and divided by one second it is the share of one core a
//! stream takes.

use bridge::ingest::aac_to_opus::{AacToOpus, AacToOpusConfig};
use criterion::{Criterion, criterion_group, criterion_main};
use fdk_aac::enc::{AudioObjectType, BitRate, ChannelMode, Encoder, EncoderParams, Transport};
use std::hint::black_box;

/// One second of a two-tone stereo signal as raw AAC-LC frames, with the
/// AudioSpecificConfig.
fn aac_second(sample_rate: u32) -> (Vec<u8>, Vec<Vec<u8>>) {
    let encoder = Encoder::new(EncoderParams {
        bit_rate: BitRate::Cbr(128_000),
        sample_rate,
        transport: Transport::Raw,
        channels: ChannelMode::Stereo,
        audio_object_type: AudioObjectType::Mpeg4LowComplexity,
    })
    .expect("AAC encoder");
    let info = encoder.info().expect("encoder info");
    let asc = info.confBuf[..info.confSize as usize].to_vec();
    let mut frames = Vec::new();
    let mut buffer = vec![0u8; 8192];
    let mut phase = 0f32;
    let step = 2.0 * std::f32::consts::PI * 440.0 / sample_rate as f32;
    // Two seconds in, keep the last second (past the encoder's priming).
    let frame_count = (2 * sample_rate as usize).div_ceil(1024);
    for _ in 0..frame_count {
        let mut pcm = vec![0i16; 2048];
        for pair in pcm.chunks_mut(2) {
            let sample = (phase.sin() * 8_000.0 + (phase * 3.7).sin() * 3_000.0) as i16;
            phase += step;
            pair.fill(sample);
        }
        let result = encoder.encode(&pcm, &mut buffer).expect("encode");
        if result.output_size > 0 {
            frames.push(buffer[..result.output_size].to_vec());
        }
    }
    let second = (sample_rate as usize).div_ceil(1024);
    let start = frames.len() - second;
    (asc, frames.split_off(start))
}

fn transcode(c: &mut Criterion) {
    let mut group = c.benchmark_group("aac_to_opus");
    for sample_rate in [44_100u32, 48_000] {
        let (asc, frames) = aac_second(sample_rate);
        let mut transcoder = AacToOpus::new(&asc, AacToOpusConfig::default()).expect("codecs open");
        let mut timestamp_ms = 0f64;
        let frame_ms = 1024.0 * 1000.0 / f64::from(sample_rate);
        let mut out = Vec::new();
        group.bench_function(format!("stereo_{sample_rate}_one_second_of_audio"), |b| {
            b.iter(|| {
                for frame in &frames {
                    transcoder
                        .push(black_box(frame), timestamp_ms as u32, &mut out)
                        .expect("valid AAC");
                    timestamp_ms += frame_ms;
                }
                black_box(out.len());
                out.clear();
            })
        });
    }
    group.finish();
}

criterion_group!(benches, transcode);
criterion_main!(benches);
