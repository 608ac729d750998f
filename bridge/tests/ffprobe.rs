//! End to end: real H.264 + Opus from ffmpeg, packetized like a browser, through the
//! pipeline and every muxer, and the outputs read back by ffprobe.
//!
//! Skipped (with a message) when ffmpeg/ffprobe are not installed.

use bridge::hls::{DirectorySink, HlsRecorder};
use bridge::{
    ClockAnchor, FlvMuxer, HlsConfig, HlsMuxer, LlHlsConfig, LlHlsMuxer, MediaUnit, PipelineConfig,
    RoomPipeline,
};
use sfu::media::Codec;
use sfu::tap::TapEvent;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

mod common;
use common::{Clip, Probe, ffprobe, frames, have_ffmpeg, make_clip, tap_events};

fn clips() -> &'static (tempfile::TempDir, Clip, Clip) {
    static CLIPS: OnceLock<(tempfile::TempDir, Clip, Clip)> = OnceLock::new();
    CLIPS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let big = make_clip(dir.path(), "big", "640x360", 3);
        let small = make_clip(dir.path(), "small", "320x180", 2);
        (dir, big, small)
    })
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
    let events = tap_events(clips, start, wall, 3)
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

    let ll_playlist = common::write_llhls(&dir.path().join("llhls"), llhls);
    Outputs {
        flv,
        hls: hls_playlist,
        llhls: ll_playlist,
        recording: recording.join("index.m3u8"),
        units,
        dir,
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
