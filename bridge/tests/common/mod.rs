//! Helpers shared by the end-to-end tests: ffmpeg-made clips, browser-like RTP tap
//! events, writing muxer outputs to disk and reading them back with ffprobe.
#![allow(dead_code)]

use bridge::{HlsMuxer, LlHlsMuxer};
use bytes::Bytes;
use rtc::rtp::codec::h264::H264Payloader;
use rtc::rtp::packetizer::Payloader;
use sfu::media::{Codec, SourcePacket};
use sfu::tap::TapEvent;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

pub fn have_ffmpeg() -> bool {
    let ok = |tool: &str| {
        Command::new(tool)
            .arg("-version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if ok("ffmpeg") && ok("ffprobe") {
        true
    } else {
        eprintln!("SKIPPED: ffmpeg/ffprobe not installed (apt-get install ffmpeg)");
        false
    }
}

pub fn run(command: &mut Command) {
    let output = command.output().expect("spawn");
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

pub struct Clip {
    /// Access units, Annex B (with start codes).
    pub video: Vec<Bytes>,
    /// Opus packets, 20 ms each.
    pub audio: Vec<Bytes>,
}

pub fn make_clip(dir: &Path, name: &str, size: &str, seconds: u32) -> Clip {
    let h264 = dir.join(format!("{name}.h264"));
    let ogg = dir.join(format!("{name}.ogg"));
    run(Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc=size={size}:rate=30"))
        .args([
            "-t",
            &seconds.to_string(),
            "-c:v",
            "libx264",
            "-profile:v",
            "baseline",
            "-pix_fmt",
            "yuv420p",
            "-x264-params",
            "keyint=30:repeat-headers=1",
            "-bsf:v",
            "h264_mp4toannexb",
            "-f",
            "h264",
        ])
        .arg(&h264));
    run(Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-t",
            &seconds.to_string(),
        ])
        .args([
            "-ac",
            "2",
            "-c:a",
            "libopus",
            "-b:a",
            "64k",
            "-frame_duration",
            "20",
            "-f",
            "ogg",
        ])
        .arg(&ogg));
    Clip {
        video: access_units(&std::fs::read(h264).unwrap()),
        audio: ogg_packets(&std::fs::read(ogg).unwrap()),
    }
}

/// Splits an Annex B stream into access units (x264 writes one slice per picture, so
/// every VCL NAL unit ends one).
pub fn access_units(data: &[u8]) -> Vec<Bytes> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i..i + 3] == [0, 0, 1] {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut units = Vec::new();
    let mut current = Vec::new();
    for (n, &start) in starts.iter().enumerate() {
        let mut end = starts.get(n + 1).map_or(data.len(), |next| next - 3);
        while end > start && data[end - 1] == 0 {
            end -= 1;
        }
        let nalu = &data[start..end];
        current.extend_from_slice(&[0, 0, 0, 1]);
        current.extend_from_slice(nalu);
        if matches!(nalu[0] & 0x1F, 1 | 5) {
            units.push(Bytes::from(std::mem::take(&mut current)));
        }
    }
    units
}

/// Opus packets of an Ogg stream (RFC 7845), without the two header packets.
pub fn ogg_packets(data: &[u8]) -> Vec<Bytes> {
    let mut packets = Vec::new();
    let mut partial = Vec::new();
    let mut pos = 0;
    while pos + 27 <= data.len() {
        assert_eq!(&data[pos..pos + 4], b"OggS");
        let segments = data[pos + 26] as usize;
        let table = &data[pos + 27..pos + 27 + segments];
        let mut body = pos + 27 + segments;
        for &lace in table {
            partial.extend_from_slice(&data[body..body + lace as usize]);
            body += lace as usize;
            if lace < 255 {
                packets.push(Bytes::from(std::mem::take(&mut partial)));
            }
        }
        pos = body;
    }
    assert!(packets[0].starts_with(b"OpusHead") && packets[1].starts_with(b"OpusTags"));
    packets.split_off(2)
}

/// Turns clips into tap events the way a browser publisher would send them: H.264 in
/// FU-A/STAP-A payloads of at most 1200 bytes, one Opus frame per packet, random RTP
/// bases, audio arriving 40 ms after video, sender reports every second.
pub fn tap_events(
    clips: &[&Clip],
    start: Instant,
    wall: SystemTime,
    epoch: u32,
) -> Vec<(Instant, TapEvent)> {
    let mut events = Vec::new();
    let (video_base, audio_base) = (0xFFFF_0000u32, 0x1234_5678u32);
    let (mut video_seq, mut audio_seq) = (65_500u16, 100u16);
    let mut payloader = H264Payloader::default();
    let mut frame_index = 0u32;
    let mut audio_index = 0u32;
    let packet = |codec, seq, ts, marker, payload, at| {
        TapEvent::Packet(Arc::new(SourcePacket {
            codec,
            epoch,
            sequence_number: seq,
            timestamp: ts,
            marker,
            keyframe: false,
            frame_start: false,
            video_orientation: None,
            received_at: at,
            payload,
        }))
    };
    for clip in clips {
        for au in &clip.video {
            let ts = video_base.wrapping_add(frame_index * 3000);
            let at = start
                + Duration::from_micros(
                    u64::from(frame_index) * 100_000 / 3 + u64::from(frame_index % 7) * 1000,
                );
            let payloads = payloader.payload(1200, au).unwrap();
            let count = payloads.len();
            for (i, payload) in payloads.into_iter().enumerate() {
                assert!(payload.len() <= 1200);
                events.push((
                    at,
                    packet(Codec::H264, video_seq, ts, i + 1 == count, payload, at),
                ));
                video_seq = video_seq.wrapping_add(1);
            }
            frame_index += 1;
        }
        for payload in &clip.audio {
            let ts = audio_base.wrapping_add(audio_index * 960);
            let at = start
                + Duration::from_millis(
                    u64::from(audio_index) * 20 + 40 + u64::from(audio_index % 5),
                );
            events.push((
                at,
                packet(Codec::Opus, audio_seq, ts, true, payload.clone(), at),
            ));
            audio_seq = audio_seq.wrapping_add(1);
            audio_index += 1;
        }
    }
    let seconds = frame_index / 30;
    for s in 0..seconds {
        let at = start + Duration::from_millis(u64::from(s) * 1000 + 500);
        let wallclock = wall + Duration::from_millis(u64::from(s) * 1000 + 500);
        let video_rtp = video_base.wrapping_add(s * 90_000 + 45_000);
        let audio_rtp = audio_base.wrapping_add(s * 48_000 + 24_000);
        events.push((
            at,
            TapEvent::SenderReport {
                epoch,
                codec: Codec::H264,
                rtp_time: video_rtp,
                wallclock,
            },
        ));
        events.push((
            at,
            TapEvent::SenderReport {
                epoch,
                codec: Codec::Opus,
                rtp_time: audio_rtp,
                wallclock,
            },
        ));
    }
    events.sort_by_key(|(at, _)| *at);
    events.insert(
        0,
        (
            start,
            TapEvent::PublisherStarted {
                epoch,
                audio: Some(Codec::Opus),
                video: Some(Codec::H264),
            },
        ),
    );
    let end = events.last().map_or(start, |(at, _)| *at);
    events.push((end, TapEvent::PublisherEnded { epoch }));
    events
}

pub struct Probe {
    pub video: Option<serde_json::Value>,
    pub audio: Option<serde_json::Value>,
}

impl Probe {
    pub fn video(&self) -> &serde_json::Value {
        self.video.as_ref().expect("a video stream")
    }

    pub fn audio(&self) -> &serde_json::Value {
        self.audio.as_ref().expect("an audio stream")
    }
}

pub fn ffprobe(path: &Path, count_frames: bool) -> Probe {
    let mut command = Command::new("ffprobe");
    command.args(["-v", "error", "-show_streams", "-of", "json"]);
    if count_frames {
        command.arg("-count_frames");
    }
    command.arg(path);
    let output = command.output().expect("ffprobe runs");
    assert!(
        output.status.success(),
        "ffprobe {path:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let streams = json["streams"].as_array().unwrap().clone();
    let find = |kind: &str| streams.iter().find(|s| s["codec_type"] == kind).cloned();
    Probe {
        video: find("video"),
        audio: find("audio"),
    }
}

pub fn frames(probe: &serde_json::Value) -> u64 {
    probe["nb_read_frames"].as_str().unwrap().parse().unwrap()
}

/// Writes the live HLS playlist and its listed segments under `dir`; returns the playlist.
pub fn write_hls(dir: &Path, hls: &HlsMuxer) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let playlist = dir.join("index.m3u8");
    std::fs::write(&playlist, hls.playlist()).unwrap();
    for segment in hls.live_playlist().listed() {
        std::fs::write(dir.join(segment.uri()), &segment.ts.data).unwrap();
    }
    playlist
}

/// Writes the LL-HLS playlist, its init segments and complete segments under `dir`;
/// returns the playlist.
pub fn write_llhls(dir: &Path, llhls: &LlHlsMuxer) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let playlist = dir.join("index.m3u8");
    let text = String::from_utf8(llhls.playlist().unwrap().to_vec()).unwrap();
    std::fs::write(&playlist, &text).unwrap();
    for line in text.lines() {
        if let Some(uri) = line
            .strip_prefix("#EXT-X-MAP:URI=\"")
            .and_then(|s| s.strip_suffix('"'))
        {
            let id: u32 = uri
                .trim_start_matches("init")
                .trim_end_matches(".mp4")
                .parse()
                .unwrap();
            std::fs::write(dir.join(uri), llhls.init(id).unwrap()).unwrap();
        } else if let Some(msn) = line
            .strip_prefix("seg")
            .and_then(|s| s.strip_suffix(".mp4"))
        {
            std::fs::write(dir.join(line), llhls.segment(msn.parse().unwrap()).unwrap()).unwrap();
        }
    }
    playlist
}
