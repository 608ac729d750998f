//! Arbitrary RTP packets into the H.264 depacketizer: it must never panic, and every
//! frame it emits must be well formed.
//!
//! Input: a sequence of records `[seq_delta: i8][ts_step: u8][flags: u8][len: u8][payload]`.
//! `flags` bit 0 is the marker, bit 1 advances time past the reorder wait, bit 2 flushes.
//! Run: `cargo +nightly fuzz run h264_depacketizer` in `bridge/fuzz`.
#![no_main]

use bridge::h264_depacketizer::{DepacketizerConfig, H264Depacketizer};
use bridge::reorder::ReorderConfig;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sfu::media::{Codec, SourcePacket};
use std::sync::Arc;
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    let mut depacketizer = H264Depacketizer::new(DepacketizerConfig {
        reorder: ReorderConfig {
            capacity: 16,
            max_delay: Duration::from_millis(50),
        },
        max_frame_bytes: 64 * 1024,
        max_nalus_per_frame: 64,
    });
    let mut now = Instant::now();
    let mut seq = 0u16;
    let mut ts = 0u32;
    let mut out = Vec::new();
    let mut rest = data;
    while rest.len() >= 4 {
        let (header, tail) = rest.split_at(4);
        let len = usize::from(header[3]).min(tail.len());
        let (payload, tail) = tail.split_at(len);
        rest = tail;
        seq = seq.wrapping_add(header[0] as i8 as u16);
        ts = ts.wrapping_add(u32::from(header[1]) * 300);
        let flags = header[2];
        if flags & 2 != 0 {
            now += Duration::from_millis(60);
        }
        let packet = SourcePacket {
            codec: Codec::H264,
            epoch: 1,
            sequence_number: seq,
            timestamp: ts,
            marker: flags & 1 != 0,
            keyframe: false,
            frame_start: false,
            video_orientation: None,
            received_at: now,
            payload: Bytes::copy_from_slice(payload),
        };
        depacketizer
            .push(Arc::new(packet), now, &mut out)
            .expect("H.264 is accepted");
        depacketizer.poll(now, &mut out);
        if flags & 4 != 0 {
            depacketizer.flush(now, &mut out);
        }
        for frame in out.drain(..) {
            assert!(!frame.nalus.is_empty());
            assert!(
                frame
                    .nalus
                    .iter()
                    .all(|n| !n.is_empty() && matches!(n[0] & 0x1F, 1..=6))
            );
            assert!(frame.params.width > 0 && frame.params.height > 0);
            assert!(!frame.keyframe || frame.nalus.iter().any(|n| n[0] & 0x1F == 5));
        }
        let _ = depacketizer.take_keyframe_request();
    }
    depacketizer.flush(now, &mut out);
});
