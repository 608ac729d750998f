//! Arbitrary FLV tag bodies into the RTMP-ingest → WebRTC converter: it must never panic,
//! and every packet it emits must be well formed.
//!
//! Input: records `[flags: u8][ts_step: u8][len_hi: u8][len_lo: u8][body]`. `flags` bit 0
//! picks video (else audio); bit 1 replaces the body's first bytes with a valid AVC/AAC
//! header (so the payload parsers are reached, not just the codec checks); bit 2 makes a
//! video body an AVC sequence header with a real SPS/PPS first. Run:
//! `cargo +nightly fuzz run ingest_to_webrtc` in `bridge/fuzz`.
#![no_main]

use bridge::ingest::to_webrtc::{ConverterConfig, WebRtcConverter};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sfu::media::{Codec, MediaKind, NativeFrame};
use std::time::Instant;

/// A real constrained-baseline 640x360 SPS and PPS, so random access units meet a
/// configured packetizer.
const AVC_CONFIG: &[u8] = &[
    0x17, 0x00, 0, 0, 0, 0x01, 0x42, 0xc0, 0x1e, 0xff, 0xe1, 0x00, 0x19, 0x67, 0x42, 0xc0, 0x1e,
    0xd9, 0x00, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03, 0x00, 0x01, 0x00, 0x00, 0x03, 0x00,
    0x3c, 0x0f, 0x16, 0x2e, 0x48, 0x01, 0x00, 0x05, 0x68, 0xcb, 0x83, 0xcb, 0x20,
];

fuzz_target!(|data: &[u8]| {
    let mut converter = WebRtcConverter::new(ConverterConfig {
        max_payload: 300,
        ..ConverterConfig::default()
    });
    let now = Instant::now();
    let mut timestamp_ms = 0u32;
    let mut out = Vec::new();
    let mut rest = data;
    while rest.len() >= 4 {
        let (header, tail) = rest.split_at(4);
        let len = usize::from(u16::from_be_bytes([header[2], header[3]])).min(tail.len());
        let (body, tail) = tail.split_at(len);
        rest = tail;
        let flags = header[0];
        timestamp_ms = timestamp_ms.wrapping_add(u32::from(header[1]));
        let kind = if flags & 1 != 0 {
            MediaKind::Video
        } else {
            MediaKind::Audio
        };
        let mut body = body.to_vec();
        if flags & 2 != 0 {
            match kind {
                MediaKind::Video => {
                    if body.len() >= 2 {
                        body[0] = (body[0] & 0x30) | 0x07;
                        body[1] &= 0x03;
                    }
                }
                MediaKind::Audio => {
                    if body.len() >= 2 {
                        body[0] = 0xAF;
                        body[1] &= 0x01;
                    }
                }
            }
        }
        if flags & 4 != 0 && kind == MediaKind::Video {
            let mut config = AVC_CONFIG.to_vec();
            config.extend_from_slice(&body);
            body = config;
        }
        let frame = NativeFrame {
            kind,
            timestamp_ms,
            body: Bytes::from(body),
            received_at: now,
        };
        let _ = converter.push(&frame, &mut out);
        for packet in out.drain(..) {
            assert!(!packet.payload.is_empty());
            match packet.codec {
                Codec::H264 => {
                    assert!(packet.payload.len() <= 300);
                    assert!(matches!(packet.payload[0] & 0x1F, 1..=5 | 7 | 8 | 24 | 28));
                }
                Codec::Opus => assert!(packet.payload.len() <= 1500),
                Codec::Vp8 => panic!("the converter never makes VP8"),
            }
        }
    }
    converter.flush(now, &mut out);
    let status = converter.status();
    assert!(status.packets_out >= status.video_frames_out);
});
