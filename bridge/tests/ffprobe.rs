//! End to end: real H.264 + Opus from ffmpeg, packetized like a browser, through the
//! pipeline and every muxer, and the outputs read back by ffprobe.
//!
//! Skipped (with a message) when ffmpeg/ffprobe are not installed.

use bridge::hls::{DirectorySink, HlsRecorder};
use bridge::{
    ClockAnchor, FlvMuxer, HlsConfig, HlsMuxer, LlHlsConfig, LlHlsMuxer, MediaUnit, PipelineConfig,
    RoomPipeline,
};
use bytes::Bytes;
use rtc::rtp::codec::h264::H264Payloader;
use rtc::rtp::packetizer::Payloader;
use sfu::media::{Codec, SourcePacket};
use sfu::tap::TapEvent;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

fn have_ffmpeg() -> bool {
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

fn run(command: &mut Command) {
    let output = command.output().expect("spawn");
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

struct Clip {
    /// Access units, Annex B (with start codes).
    video: Vec<Bytes>,
    /// Opus packets, 20 ms each.
    audio: Vec<Bytes>,
}

fn make_clip(dir: &Path, name: &str, size: &str, seconds: u32) -> Clip {
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
fn access_units(data: &[u8]) -> Vec<Bytes> {
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
fn ogg_packets(data: &[u8]) -> Vec<Bytes> {
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

fn clips() -> &'static (tempfile::TempDir, Clip, Clip) {
    static CLIPS: OnceLock<(tempfile::TempDir, Clip, Clip)> = OnceLock::new();
    CLIPS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let big = make_clip(dir.path(), "big", "640x360", 3);
        let small = make_clip(dir.path(), "small", "320x180", 2);
        (dir, big, small)
    })
}

/// Turns clips into tap events the way a browser publisher would send them: H.264 in
/// FU-A/STAP-A payloads of at most 1200 bytes, one Opus frame per packet, random RTP
/// bases, audio arriving 40 ms after video, sender reports every second.
fn tap_events(clips: &[&Clip], start: Instant, wall: SystemTime) -> Vec<(Instant, TapEvent)> {
    let mut events = Vec::new();
    let epoch = 3;
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

struct Outputs {
    dir: tempfile::TempDir,
    flv: PathBuf,
    hls: PathBuf,
    llhls: PathBuf,
    recording: PathBuf,
    units: Vec<MediaUnit>,
}

/// Runs the pipeline and all muxers over the clips, writing every output to disk.
fn bridge(clips: &[&Clip]) -> Outputs {
    bridge_tracks(clips, true, true)
}

/// Like [`bridge`], for a publisher sending only some tracks.
fn bridge_tracks(clips: &[&Clip], with_audio: bool, with_video: bool) -> Outputs {
    let dir = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000);
    let mut pipeline = RoomPipeline::new(
        PipelineConfig::default(),
        ClockAnchor {
            instant: start,
            wallclock: wall,
        },
    );
    let mut muxers: Option<(FlvMuxer, HlsMuxer, LlHlsMuxer)> = None;
    let mut flv_bytes = Vec::new();
    let recording = dir.path().join("recording");
    let mut recorder = HlsRecorder::new(DirectorySink::new(&recording).unwrap());
    let mut units = Vec::new();
    let events = tap_events(clips, start, wall)
        .into_iter()
        .filter_map(|(at, event)| {
            let keep = |codec: Codec| {
                if codec == Codec::Opus {
                    with_audio
                } else {
                    with_video
                }
            };
            match event {
                TapEvent::PublisherStarted {
                    epoch,
                    audio,
                    video,
                } => Some(TapEvent::PublisherStarted {
                    epoch,
                    audio: audio.filter(|_| with_audio),
                    video: video.filter(|_| with_video),
                }),
                TapEvent::Packet(ref packet) if !keep(packet.codec) => None,
                TapEvent::SenderReport { codec, .. } if !keep(codec) => None,
                other => Some(other),
            }
            .map(|event| (at, event))
        });
    for (at, event) in events {
        let out = pipeline.push(event, at);
        for notice in &out.notices {
            if let bridge::PipelineNotice::SessionStarted { tracks, .. } = notice {
                let flv = FlvMuxer::new(tracks.clone());
                for chunk in flv.join() {
                    flv_bytes.extend_from_slice(&chunk);
                }
                muxers = Some((
                    flv,
                    HlsMuxer::new(tracks.clone(), HlsConfig::default()),
                    LlHlsMuxer::new(tracks.clone(), LlHlsConfig::default()),
                ));
            }
        }
        let (flv, hls, llhls) = muxers.as_mut().expect("session started first");
        for unit in &out.units {
            for chunk in flv.write(unit) {
                flv_bytes.extend_from_slice(chunk);
            }
            if let Some(segment) = hls.write(unit) {
                recorder.add_segment(&segment.ts).unwrap();
            }
            llhls.write(unit);
        }
        units.extend(out.units);
    }
    let (_, hls, llhls) = muxers.as_mut().unwrap();
    if let Some(segment) = hls.finish() {
        recorder.add_segment(&segment.ts).unwrap();
    }
    recorder.finish().unwrap();
    llhls.finish();

    let flv = dir.path().join("live.flv");
    std::fs::write(&flv, &flv_bytes).unwrap();

    let hls_dir = dir.path().join("hls");
    std::fs::create_dir_all(&hls_dir).unwrap();
    let hls_playlist = hls_dir.join("index.m3u8");
    std::fs::write(&hls_playlist, hls.playlist()).unwrap();
    for segment in hls.live_playlist().listed() {
        std::fs::write(hls_dir.join(segment.uri()), &segment.ts.data).unwrap();
    }

    let ll_dir = dir.path().join("llhls");
    std::fs::create_dir_all(&ll_dir).unwrap();
    let ll_playlist = ll_dir.join("index.m3u8");
    let text = String::from_utf8(llhls.playlist().unwrap().to_vec()).unwrap();
    std::fs::write(&ll_playlist, &text).unwrap();
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
            std::fs::write(ll_dir.join(uri), llhls.init(id).unwrap()).unwrap();
        } else if let Some(msn) = line
            .strip_prefix("seg")
            .and_then(|s| s.strip_suffix(".mp4"))
        {
            std::fs::write(
                ll_dir.join(line),
                llhls.segment(msn.parse().unwrap()).unwrap(),
            )
            .unwrap();
        }
    }
    Outputs {
        flv,
        hls: hls_playlist,
        llhls: ll_playlist,
        recording: recording.join("index.m3u8"),
        units,
        dir,
    }
}

struct Probe {
    video: Option<serde_json::Value>,
    audio: Option<serde_json::Value>,
}

impl Probe {
    fn video(&self) -> &serde_json::Value {
        self.video.as_ref().expect("a video stream")
    }

    fn audio(&self) -> &serde_json::Value {
        self.audio.as_ref().expect("an audio stream")
    }
}

fn ffprobe(path: &Path, count_frames: bool) -> Probe {
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

fn assert_h264_aac(probe: &Probe, width: u64, height: u64) {
    assert_eq!(probe.video()["codec_name"], "h264");
    assert_eq!(probe.video()["width"], width);
    assert_eq!(probe.video()["height"], height);
    assert_aac(probe);
}

fn assert_aac(probe: &Probe) {
    assert_eq!(probe.audio()["codec_name"], "aac");
    assert_eq!(probe.audio()["profile"], "LC");
    assert_eq!(probe.audio()["sample_rate"], "48000");
    assert_eq!(probe.audio()["channels"], 2);
}

fn frames(probe: &serde_json::Value) -> u64 {
    probe["nb_read_frames"].as_str().unwrap().parse().unwrap()
}

#[test]
fn every_output_probes_as_h264_and_aac() {
    if !have_ffmpeg() {
        return;
    }
    let (_, big, _) = clips();
    assert_eq!(big.video.len(), 90);
    let outputs = bridge(&[big]);
    let video_units = outputs
        .units
        .iter()
        .filter(|u| matches!(u, MediaUnit::Video(_)))
        .count();
    assert_eq!(video_units, 90, "no frame lost on a clean network");

    let flv = ffprobe(&outputs.flv, true);
    assert_h264_aac(&flv, 640, 360);
    assert_eq!(
        frames(flv.video()),
        90,
        "every video frame decodes from FLV"
    );
    let audio_frames = frames(flv.audio());
    assert!(
        (135..=142).contains(&audio_frames),
        "AAC frames in FLV: {audio_frames}"
    );

    let hls = ffprobe(&outputs.hls, true);
    assert_h264_aac(&hls, 640, 360);
    assert_eq!(frames(hls.video()), 90);

    let recording = ffprobe(&outputs.recording, true);
    assert_h264_aac(&recording, 640, 360);
    assert_eq!(frames(recording.video()), 90);
    let vod = std::fs::read_to_string(&outputs.recording).unwrap();
    assert!(vod.contains("#EXT-X-PLAYLIST-TYPE:VOD") && vod.trim_end().ends_with("#EXT-X-ENDLIST"));

    let llhls = ffprobe(&outputs.llhls, true);
    assert_h264_aac(&llhls, 640, 360);
    assert_eq!(frames(llhls.video()), 90);

    // Audio and video start together (sender reports corrected the 40 ms arrival skew).
    let first_video = outputs
        .units
        .iter()
        .find(|u| matches!(u, MediaUnit::Video(_)))
        .unwrap()
        .pts();
    let first_audio = outputs
        .units
        .iter()
        .find(|u| matches!(u, MediaUnit::Audio(_)))
        .unwrap()
        .pts();
    assert!(
        (first_audio - first_video).abs() < 2 * 1920,
        "video {first_video} audio {first_audio}"
    );
    drop(outputs.dir);
}

/// FLV tag (type, body) pairs, read independently of the muxer.
fn flv_tags(data: &[u8]) -> Vec<(u8, Vec<u8>)> {
    assert_eq!(&data[..3], b"FLV");
    let mut pos = 13;
    let mut tags = Vec::new();
    while pos + 11 <= data.len() {
        let size = u32::from_be_bytes([0, data[pos + 1], data[pos + 2], data[pos + 3]]) as usize;
        tags.push((data[pos], data[pos + 11..pos + 11 + size].to_vec()));
        pos += 15 + size;
    }
    assert_eq!(pos, data.len());
    tags
}

#[test]
fn resolution_change_is_signalled_and_still_probes() {
    if !have_ffmpeg() {
        return;
    }
    let (_, big, small) = clips();
    let outputs = bridge(&[big, small]);
    let changes = outputs.units.iter().filter(|u| u.discontinuity()).count();
    assert_eq!(changes, 1, "one discontinuity: the SPS change");

    let flv = std::fs::read(&outputs.flv).unwrap();
    let sequence_headers: Vec<_> = flv_tags(&flv)
        .into_iter()
        .filter(|(t, body)| *t == 9 && body[1] == 0)
        .collect();
    assert_eq!(
        sequence_headers.len(),
        2,
        "second AVC sequence header after the change"
    );
    // The second record carries the 320x180 SPS (level 1.3 = 0x0d).
    assert_eq!(sequence_headers[1].1[5 + 3], 0x0d);
    let probe = ffprobe(&outputs.flv, false);
    assert_eq!(probe.video()["codec_name"], "h264");
    assert_eq!(probe.audio()["codec_name"], "aac");

    let hls_text = std::fs::read_to_string(&outputs.hls).unwrap();
    assert!(hls_text.contains("#EXT-X-DISCONTINUITY\n"), "{hls_text}");
    let probe = ffprobe(&outputs.hls, false);
    assert_eq!(probe.video()["codec_name"], "h264");
    let recording = std::fs::read_to_string(&outputs.recording).unwrap();
    assert!(recording.contains("#EXT-X-DISCONTINUITY\n"));
    let probe = ffprobe(&outputs.recording, true);
    assert_eq!(
        frames(probe.video()),
        150,
        "both clips decode from the recording"
    );

    let ll_text = std::fs::read_to_string(&outputs.llhls).unwrap();
    assert!(
        ll_text.contains("#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"init1.mp4\""),
        "{ll_text}"
    );
    let probe = ffprobe(&outputs.llhls, false);
    assert_eq!(probe.video()["codec_name"], "h264");
    drop(outputs.dir);
}

#[test]
fn audio_only_and_video_only_rooms_probe() {
    if !have_ffmpeg() {
        return;
    }
    let (_, big, _) = clips();
    let audio_only = bridge_tracks(&[big], true, false);
    assert!(
        audio_only
            .units
            .iter()
            .all(|u| matches!(u, MediaUnit::Audio(_)))
    );
    for path in [
        &audio_only.flv,
        &audio_only.hls,
        &audio_only.recording,
        &audio_only.llhls,
    ] {
        let probe = ffprobe(path, true);
        assert!(probe.video.is_none(), "{path:?} has no video");
        assert_aac(&probe);
        let decoded = frames(probe.audio());
        assert!(
            (135..=142).contains(&decoded),
            "{path:?}: {decoded} AAC frames"
        );
    }

    let video_only = bridge_tracks(&[big], false, true);
    for path in [
        &video_only.flv,
        &video_only.hls,
        &video_only.recording,
        &video_only.llhls,
    ] {
        let probe = ffprobe(path, true);
        assert!(probe.audio.is_none(), "{path:?} has no audio");
        assert_eq!(probe.video()["width"], 640);
        assert_eq!(frames(probe.video()), 90, "{path:?}");
    }
}
