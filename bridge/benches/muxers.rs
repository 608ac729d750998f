//! Cost per access unit of the depacketizer and each muxer.
//!
//! `cargo bench -p queqiao-bridge --bench muxers -- --quick`

use bridge::h264_depacketizer::H264Depacketizer;
use bridge::media_unit::{AacConfig, AudioFrame, H264Params, MediaUnit, Tracks, VideoAccessUnit};
use bridge::{FlvMuxer, HlsConfig, HlsMuxer, LlHlsConfig, LlHlsMuxer};
use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sfu::media::{Codec, SourcePacket};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

const SPS: &[u8] = &[
    0x67, 0x42, 0xc0, 0x1e, 0xd9, 0x00, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03, 0x00, 0x01,
    0x00, 0x00, 0x03, 0x00, 0x3c, 0x0f, 0x16, 0x2e, 0x48,
];
const PPS: &[u8] = &[0x68, 0xcb, 0x83, 0xcb, 0x20];
/// A typical 720p30 P-frame at ~1.5 Mbps.
const FRAME_BYTES: usize = 6000;
const GOP: i64 = 60;

fn params() -> Arc<H264Params> {
    Arc::new(
        H264Params::from_parameter_sets(Bytes::from_static(SPS), Bytes::from_static(PPS))
            .expect("valid SPS"),
    )
}

/// Units of a 30 fps stream with audio, one GOP long, timestamps starting at `base`.
fn gop_units(params: &Arc<H264Params>, aac: &Arc<AacConfig>, base: i64) -> Vec<MediaUnit> {
    let mut units = Vec::new();
    let mut audio_pts = base;
    for i in 0..GOP {
        let pts = base + i * 3000;
        let keyframe = i == 0;
        let size = if keyframe {
            FRAME_BYTES * 5
        } else {
            FRAME_BYTES
        };
        let mut nalu = vec![if keyframe { 0x65 } else { 0x41 }; size];
        nalu[1] = 0x88;
        units.push(MediaUnit::Video(VideoAccessUnit {
            pts,
            dts: pts,
            keyframe,
            nalus: vec![Bytes::from(nalu)],
            params: Arc::clone(params),
            discontinuity: false,
            wallclock: SystemTime::UNIX_EPOCH,
        }));
        while audio_pts <= pts {
            units.push(MediaUnit::Audio(AudioFrame {
                pts: audio_pts,
                duration: 1920,
                data: Bytes::from(vec![0x21; 340]),
                config: Arc::clone(aac),
                discontinuity: false,
                wallclock: SystemTime::UNIX_EPOCH,
            }));
            audio_pts += 1920;
        }
    }
    units
}

/// RTP payloads of one access unit: STAP-A(SPS, PPS) for keyframes, then FU-A at 1200.
fn rtp_payloads(keyframe: bool) -> Vec<Bytes> {
    let mut payloads = Vec::new();
    if keyframe {
        let mut stap = vec![0x78];
        for nalu in [SPS, PPS] {
            stap.extend_from_slice(&(nalu.len() as u16).to_be_bytes());
            stap.extend_from_slice(nalu);
        }
        payloads.push(Bytes::from(stap));
    }
    let size = if keyframe {
        FRAME_BYTES * 5
    } else {
        FRAME_BYTES
    };
    let header: u8 = if keyframe { 0x65 } else { 0x41 };
    let body = vec![0x9a; size];
    let chunks: Vec<&[u8]> = body.chunks(1198).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let mut fu = vec![(header & 0xE0) | 28, header & 0x1F];
        if i == 0 {
            fu[1] |= 0x80;
        }
        if i + 1 == chunks.len() {
            fu[1] |= 0x40;
        }
        fu.extend_from_slice(chunk);
        payloads.push(Bytes::from(fu));
    }
    payloads
}

fn depacketizer(c: &mut Criterion) {
    let mut group = c.benchmark_group("depacketizer");
    group.throughput(Throughput::Elements(1));
    let key = rtp_payloads(true);
    let delta = rtp_payloads(false);
    let mut depacketizer = H264Depacketizer::default();
    let mut seq = 0u16;
    let mut frame = 0u32;
    let mut out = Vec::new();
    let now = Instant::now();
    group.bench_function("h264_access_unit_6kB", |b| {
        b.iter(|| {
            let payloads = if i64::from(frame) % GOP == 0 {
                &key
            } else {
                &delta
            };
            let count = payloads.len();
            for (i, payload) in payloads.iter().enumerate() {
                let packet = Arc::new(SourcePacket {
                    codec: Codec::H264,
                    epoch: 1,
                    sequence_number: seq,
                    timestamp: frame.wrapping_mul(3000),
                    marker: i + 1 == count,
                    keyframe: false,
                    frame_start: i == 0,
                    video_orientation: None,
                    received_at: now,
                    payload: payload.clone(),
                });
                seq = seq.wrapping_add(1);
                depacketizer.push(packet, now, &mut out).expect("H.264");
            }
            frame += 1;
            black_box(out.drain(..).count())
        })
    });
    group.finish();
}

/// Benchmarks `write` per unit over GOPs with ever-increasing timestamps.
fn bench_muxer(c: &mut Criterion, name: &str, mut write: impl FnMut(&MediaUnit)) {
    let params = params();
    let aac = Arc::new(AacConfig::lc(48_000, 2).expect("AAC-LC"));
    let template = gop_units(&params, &aac, 0);
    let gop_ticks = GOP * 3000;
    let mut round = 0i64;
    let mut group = c.benchmark_group("muxer");
    group.throughput(Throughput::Elements(template.len() as u64));
    group.bench_function(format!("{name}_per_gop_of_{}_units", template.len()), |b| {
        b.iter(|| {
            let offset = round * gop_ticks;
            round += 1;
            for unit in &template {
                let shifted = match unit {
                    MediaUnit::Video(au) => MediaUnit::Video(VideoAccessUnit {
                        pts: au.pts + offset,
                        dts: au.dts + offset,
                        ..au.clone()
                    }),
                    MediaUnit::Audio(frame) => MediaUnit::Audio(AudioFrame {
                        pts: frame.pts + offset,
                        ..frame.clone()
                    }),
                };
                write(&shifted);
            }
        })
    });
    group.finish();
}

fn muxers(c: &mut Criterion) {
    let aac = Arc::new(AacConfig::lc(48_000, 2).expect("AAC-LC"));
    let tracks = Tracks {
        video: true,
        audio: Some(aac),
    };
    let mut flv = FlvMuxer::new(tracks.clone());
    bench_muxer(c, "flv", |unit| {
        black_box(flv.write(unit).len());
    });
    let mut hls = HlsMuxer::new(tracks.clone(), HlsConfig::default());
    bench_muxer(c, "hls_ts", |unit| {
        black_box(hls.write(unit));
    });
    let mut llhls = LlHlsMuxer::new(tracks, LlHlsConfig::default());
    bench_muxer(c, "llhls_fmp4", |unit| {
        llhls.write(unit);
        black_box(llhls.version());
    });
}

criterion_group!(benches, depacketizer, muxers);
criterion_main!(benches);
