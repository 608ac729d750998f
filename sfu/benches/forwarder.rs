//! Forwarding decisions for one publisher packet fanned out to N viewers (1–1000):
//! the per-viewer rewrite (SSRC, payload type, sequence number, timestamp) and building the
//! outgoing RTP header, without the engine's SRTP. Run: `cargo bench -p queqiao-sfu`.

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sfu::forwarder::{Forwarder, ForwarderConfig};
use sfu::media::{Codec, MediaKind, SourcePacket};
use std::hint::black_box;
use std::time::Instant;

fn packet(seq: u16, keyframe: bool) -> SourcePacket {
    SourcePacket {
        codec: Codec::H264,
        epoch: 1,
        sequence_number: seq,
        timestamp: (seq as u32 / 8) * 3000,
        marker: seq % 8 == 7,
        keyframe,
        frame_start: seq.is_multiple_of(8),
        video_orientation: None,
        received_at: Instant::now(),
        payload: Bytes::from(vec![0x7c; 1100]),
    }
}

fn fan_out(c: &mut Criterion) {
    let mut group = c.benchmark_group("forwarder_fan_out");
    for viewers in [1usize, 10, 100, 1000] {
        let now = Instant::now();
        let mut forwarders: Vec<Forwarder> = (0..viewers)
            .map(|i| {
                Forwarder::new(ForwarderConfig {
                    kind: MediaKind::Video,
                    clock_rate: 90_000,
                    ssrc: 0x1000 + i as u32,
                    payload_type: 102,
                    video_orientation_id: None,
                    initial_sequence_number: i as u16,
                    initial_timestamp: i as u32 * 7,
                })
            })
            .collect();
        let start = packet(0, true);
        for f in &mut forwarders {
            f.forward(&start, now)
                .expect("keyframe starts every viewer");
        }
        let mut seq = 1u16;
        group.throughput(Throughput::Elements(viewers as u64));
        group.bench_with_input(BenchmarkId::from_parameter(viewers), &viewers, |b, _| {
            b.iter(|| {
                let source = packet(seq, false);
                seq = seq.wrapping_add(1);
                for f in &mut forwarders {
                    let header = f.forward(&source, now).expect("forwarded");
                    // What the shard hands the engine: a header and a shared payload.
                    let out = rtc::rtp::packet::Packet {
                        header: rtc::rtp::header::Header {
                            version: 2,
                            marker: header.marker,
                            payload_type: header.payload_type,
                            sequence_number: header.sequence_number,
                            timestamp: header.timestamp,
                            ssrc: header.ssrc,
                            ..Default::default()
                        },
                        payload: source.payload.clone(),
                    };
                    black_box(out);
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, fan_out);
criterion_main!(benches);
