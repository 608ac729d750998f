//! CPU cost of the Opus → AAC-LC transcoder per second of audio.
//!
//! `cargo bench -p queqiao-bridge --bench audio_transcoder -- --quick`
//! The reported time per iteration is the CPU time to transcode one second of 48 kHz
//! stereo audio (50 Opus packets → ~47 AAC frames) on one core.

use bridge::audio_transcoder::{AudioTranscoder, TranscoderConfig};
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::SystemTime;

/// One second of a two-tone signal as 20 ms Opus packets (what a browser would send).
fn opus_second(channels: opus::Channels) -> Vec<Vec<u8>> {
    let mut encoder =
        opus::Encoder::new(48_000, channels, opus::Application::Audio).expect("opus encoder");
    encoder
        .set_bitrate(opus::Bitrate::Bits(64_000))
        .expect("bitrate");
    let count = channels as usize;
    let mut phase = 0f32;
    (0..50)
        .map(|_| {
            let mut pcm = vec![0i16; 960 * count];
            for frame in pcm.chunks_mut(count) {
                let sample = (phase.sin() * 8_000.0 + (phase * 3.7).sin() * 3_000.0) as i16;
                phase += 2.0 * std::f32::consts::PI * 440.0 / 48_000.0;
                frame.fill(sample);
            }
            encoder.encode_vec(&pcm, 4000).expect("encode")
        })
        .collect()
}

fn transcode(c: &mut Criterion) {
    let mut group = c.benchmark_group("audio_transcoder");
    for (name, channels, opus_channels) in [
        ("stereo_128k", 2, opus::Channels::Stereo),
        ("mono_64k", 1, opus::Channels::Mono),
    ] {
        let packets = opus_second(opus_channels);
        let config = TranscoderConfig {
            channels,
            bitrate: if channels == 2 { 128_000 } else { 64_000 },
            ..Default::default()
        };
        let mut transcoder = AudioTranscoder::new(config).expect("codecs open");
        let mut pts = 0i64;
        let mut out = Vec::new();
        group.bench_function(format!("{name}_one_second_of_audio"), |b| {
            b.iter(|| {
                for packet in &packets {
                    transcoder.push(packet, pts, SystemTime::UNIX_EPOCH, &mut out);
                    pts += 1800;
                }
                black_box(out.drain(..).count())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, transcode);
criterion_main!(benches);
