//! Arbitrary tap events into a room pipeline and every muxer: nothing may panic, and
//! timestamps out of the pipeline stay monotonic per track.
//!
//! Input records: `[kind: u8][seq_delta: i8][ts_step: u8][len: u8][payload]`; `kind`
//! picks audio/video packets, native (RTMP ingest) frames with arbitrary FLV tag bodies
//! (or well-formed headers around arbitrary data), sender reports, session starts/ends
//! and time steps.
//! Run: `cargo +nightly fuzz run pipeline` in `bridge/fuzz`.
#![no_main]

use bridge::media_unit::MediaUnit;
use bridge::{
    ClockAnchor, FlvMuxer, HlsConfig, HlsMuxer, LlHlsConfig, LlHlsMuxer, PipelineConfig,
    RoomPipeline,
};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sfu::media::{Codec, MediaKind, NativeFrame, SourcePacket};
use sfu::tap::TapEvent;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

fuzz_target!(|data: &[u8]| {
    let start = Instant::now();
    let mut now = start;
    let mut pipeline = RoomPipeline::new(
        PipelineConfig::default(),
        ClockAnchor {
            instant: start,
            wallclock: SystemTime::UNIX_EPOCH,
        },
    );
    let mut muxers: Option<(FlvMuxer, HlsMuxer, LlHlsMuxer)> = None;
    let (mut last_video, mut last_audio) = (i64::MIN, i64::MIN);
    let mut epoch = 1u32;
    let (mut seq, mut ts) = ([0u16; 2], [0u32; 2]);
    let mut native_ms = [0u32; 2];
    let mut rest = data;
    while rest.len() >= 4 {
        let (header, tail) = rest.split_at(4);
        let len = usize::from(header[3]).min(tail.len());
        let (payload, tail) = tail.split_at(len);
        rest = tail;
        let event = match header[0] % 10 {
            0 | 1 | 2 => {
                let (codec, i) = if header[0] % 10 == 0 {
                    (Codec::Opus, 0)
                } else {
                    (Codec::H264, 1)
                };
                seq[i] = seq[i].wrapping_add(header[1] as i8 as u16);
                ts[i] = ts[i].wrapping_add(u32::from(header[2]) * 120);
                now += Duration::from_millis(u64::from(header[2] % 16));
                TapEvent::Packet(Arc::new(SourcePacket {
                    codec,
                    epoch,
                    sequence_number: seq[i],
                    timestamp: ts[i],
                    marker: header[1] & 1 != 0,
                    keyframe: false,
                    frame_start: false,
                    video_orientation: None,
                    received_at: now,
                    payload: Bytes::copy_from_slice(payload),
                }))
            }
            3 => TapEvent::SenderReport {
                epoch,
                codec: if header[1] & 1 == 0 {
                    Codec::Opus
                } else {
                    Codec::H264
                },
                rtp_time: ts[usize::from(header[1] & 1)].wrapping_add(u32::from(header[2]) << 8),
                wallclock: SystemTime::UNIX_EPOCH
                    + Duration::from_millis(u64::from(header[2]) * 997),
            },
            4 => {
                epoch = epoch.wrapping_add(1);
                let audio =
                    [None, Some(Codec::Opus), Some(Codec::H264)][usize::from(header[1] % 3)];
                let video = [None, Some(Codec::H264), Some(Codec::Vp8)][usize::from(header[2] % 3)];
                TapEvent::PublisherStarted {
                    epoch,
                    audio,
                    video,
                }
            }
            5 => TapEvent::PublisherEnded { epoch },
            6 => {
                now += Duration::from_millis(u64::from(header[2]) * 10);
                let out = pipeline.poll(now);
                check(&out.units, &mut last_video, &mut last_audio, &mut muxers);
                continue;
            }
            8 | 9 => {
                let (kind, i) = if header[0] % 10 == 8 {
                    (MediaKind::Audio, 0)
                } else {
                    (MediaKind::Video, 1)
                };
                // Small steps mostly, sometimes back or far (clock jumps, 32-bit wrap).
                native_ms[i] = match header[2] {
                    0xF0..=0xFF => native_ms[i].wrapping_sub(u32::from(header[2]) << 12),
                    0xE0..=0xEF => native_ms[i].wrapping_add(u32::from(header[2]) << 20),
                    step => native_ms[i].wrapping_add(u32::from(step % 64)),
                };
                now += Duration::from_millis(u64::from(header[2] % 16));
                // Bit 0 of `seq_delta`: a valid-looking FLV header (AVC/AAC, packet type
                // and composition time from the header byte) in front of the payload.
                let body = if header[1] & 1 == 1 {
                    let mut body = match kind {
                        MediaKind::Video => vec![
                            if header[1] & 2 != 0 { 0x17 } else { 0x27 },
                            (header[1] >> 2) % 3,
                            0,
                            header[1] >> 5,
                            header[2],
                        ],
                        MediaKind::Audio => vec![0xAF, (header[1] >> 2) % 2],
                    };
                    body.extend_from_slice(payload);
                    Bytes::from(body)
                } else {
                    Bytes::copy_from_slice(payload)
                };
                TapEvent::Native {
                    epoch,
                    frame: Arc::new(NativeFrame {
                        kind,
                        timestamp_ms: native_ms[i],
                        body,
                        received_at: now,
                    }),
                }
            }
            _ => {
                if header[1] == 0xFF {
                    TapEvent::RoomClosed
                } else {
                    continue;
                }
            }
        };
        let out = pipeline.push(event, now);
        for notice in &out.notices {
            if let bridge::PipelineNotice::SessionStarted { tracks, .. }
            | bridge::PipelineNotice::TracksChanged { tracks, .. } = notice
            {
                muxers = Some((
                    FlvMuxer::new(tracks.clone()),
                    HlsMuxer::new(tracks.clone(), HlsConfig::default()),
                    LlHlsMuxer::new(tracks.clone(), LlHlsConfig::default()),
                ));
            }
        }
        check(&out.units, &mut last_video, &mut last_audio, &mut muxers);
    }
});

fn check(
    units: &[MediaUnit],
    last_video: &mut i64,
    last_audio: &mut i64,
    muxers: &mut Option<(FlvMuxer, HlsMuxer, LlHlsMuxer)>,
) {
    for unit in units {
        let last = match unit {
            MediaUnit::Video(_) => &mut *last_video,
            MediaUnit::Audio(_) => &mut *last_audio,
        };
        // Decoding order: DTS strictly increasing per track (video PTS reorders with
        // B-frames but never precedes its DTS).
        assert!(unit.dts() >= 0);
        assert!(unit.pts() >= unit.dts());
        assert!(
            unit.dts() > *last,
            "timestamps go back: {} after {}",
            unit.dts(),
            last
        );
        *last = unit.dts();
        if let Some((flv, hls, llhls)) = muxers.as_mut() {
            flv.write(unit);
            hls.write(unit);
            llhls.write(unit);
            let _ = llhls.playlist();
        }
    }
}
