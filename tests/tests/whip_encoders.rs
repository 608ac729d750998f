//! Real encoders publishing by WHIP: FFmpeg 8's own `whip` muxer (libavformat/whip.c, run
//! through PyAV, whose wheels bundle FFmpeg 8 built with GnuTLS) publishes a test pattern
//! and a tone; the room goes live, a Rust WebRTC viewer gets video from a keyframe and
//! audio that decodes to sound, and the bridge's HTTP-FLV and HLS carry H.264 + AAC.
//!
//! FFmpeg offers `a=setup:passive`, so it is the DTLS server and we the client, and its
//! GnuTLS-made certificate has a secp224r1 key: this is the regression test for the
//! rtc-dtls patch in patches/rtc-dtls (PATCHED.md), without which our DTLS client
//! refuses FFmpeg's ServerKeyExchange ("expected and actual key signature do not match").
//!
//! Needs a Python with PyAV: `QUEQIAO_PYTHON` (tests/run.sh makes `target/pyenv` and sets
//! it); without the variable, `target/pyenv/bin/python` is used when it exists.

use queqiao_tests::bridge::{Probe, ffprobe, wait_for};
use queqiao_tests::server::{TEST_TOKEN, TestServer};
use queqiao_tests::whep::{Viewer, ViewerOptions};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

/// Seconds of media the encoder publishes.
const SECONDS: u32 = 8;

fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_owned()
}

/// The Python that has PyAV: `QUEQIAO_PYTHON`, else `target/pyenv/bin/python`.
fn python() -> PathBuf {
    let python = std::env::var_os("QUEQIAO_PYTHON")
        .map(PathBuf::from)
        .or_else(|| {
            let venv = workspace_dir().join("target/pyenv/bin/python");
            venv.exists().then_some(venv)
        })
        .unwrap_or_else(|| {
            panic!(
                "no Python with PyAV for the FFmpeg WHIP test: set QUEQIAO_PYTHON (tests/run.sh \
                 does), or run `python3 -m venv target/pyenv && target/pyenv/bin/pip install \
                 av==18.1.0` in the workspace"
            )
        });
    let check = std::process::Command::new(&python)
        .args([
            "-c",
            "import av; assert 'whip' in av.formats_available, av.ffmpeg_version_info",
        ])
        .output()
        .unwrap_or_else(|e| panic!("QUEQIAO_PYTHON={} does not run: {e}", python.display()));
    assert!(
        check.status.success(),
        "{} has no PyAV with FFmpeg's WHIP muxer (pip install av==18.1.0): {}",
        python.display(),
        String::from_utf8_lossy(&check.stderr)
    );
    python
}

/// tests/encoders/ffmpeg_whip.py publishing to `url` for `seconds`.
fn publish(url: &str, seconds: u32) -> Child {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("encoders/ffmpeg_whip.py");
    Command::new(python())
        .arg(script)
        .args([url, TEST_TOKEN, &seconds.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the PyAV publisher starts")
}

/// The publisher's exit status and everything it printed.
async fn finish(mut child: Child) -> (std::process::ExitStatus, String) {
    let mut out = String::new();
    let mut err = String::new();
    let (mut stdout, mut stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let status = tokio::time::timeout(Duration::from_secs(30), async {
        let _ = tokio::join!(
            stdout.read_to_string(&mut out),
            stderr.read_to_string(&mut err)
        );
        child.wait().await
    })
    .await
    .expect("the publisher exits")
    .expect("waiting for the publisher");
    (status, format!("{out}{err}"))
}

fn assert_h264_aac(probe: &Probe, what: &str) {
    let (video, width, height) = probe.video().unwrap_or_else(|| panic!("{what}: no video"));
    assert_eq!(
        (video.as_str(), width, height),
        ("h264", 640, 360),
        "{what}"
    );
    let (audio, rate, _) = probe.audio().unwrap_or_else(|| panic!("{what}: no audio"));
    // FFmpeg's Opus, made into 48 kHz AAC by the bridge.
    assert_eq!((audio.as_str(), rate), ("aac", 48_000), "{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_whip_muxer_publishes_to_webrtc_viewers_and_the_bridge() {
    let server = TestServer::start().await.unwrap();
    let room = "ffmpeg-whip";
    let started = Instant::now();
    let mut publisher = publish(&server.whip(room), SECONDS);

    // The room goes live (WHIP answer, ICE, DTLS with FFmpeg as the server, SRTP).
    let live = wait_for(Duration::from_secs(15), async || {
        let snapshot = server.server.sfu.snapshot().await.ok()?;
        snapshot
            .rooms
            .iter()
            .any(|r| r.id == room && r.live)
            .then_some(())
    })
    .await;
    if live.is_none() {
        let _ = publisher.start_kill();
        let (status, output) = finish(publisher).await;
        panic!("room {room} did not go live from FFmpeg's WHIP muxer ({status}):\n{output}");
    }
    let live_after = started.elapsed();

    // A WebRTC viewer, and the bridge's HTTP-FLV at the same time.
    let viewer = Viewer::start(&server.whep(room), ViewerOptions::default())
        .await
        .expect("a viewer connects to the WHIP room");
    let flv_url = server.url(&format!("/live/{room}.flv"));
    let (flv, ()) = tokio::join!(
        ffprobe(&flv_url),
        tokio::time::sleep(Duration::from_secs(2))
    );
    assert_h264_aac(&flv.expect("HTTP-FLV probes"), "HTTP-FLV");

    let stats = viewer.snapshot();
    let first = stats.video.first_payloads.first().expect("video arrived");
    assert!(
        sfu::keyframe::is_keyframe(sfu::media::Codec::H264, first),
        "the first video packet is not a keyframe (NAL {:#04x})",
        first[0]
    );
    assert!(
        stats.video.packets > 30,
        "{} video packets",
        stats.video.packets
    );
    assert!(
        stats.audio.packets > 25,
        "{} audio packets",
        stats.audio.packets
    );
    let level = stats.first_audio_rms();
    assert!(level > 300.0, "the tone is silent (RMS {level:.0})");

    let hls = ffprobe(&server.url(&format!("/hls/{room}/index.m3u8")))
        .await
        .expect("HLS probes");
    assert_h264_aac(&hls, "HLS");
    viewer.close().await;

    // The encoder publishes all of it and ends cleanly (WHIP DELETE).
    let (status, output) = finish(publisher).await;
    assert!(
        status.success(),
        "the publisher failed ({status}):\n{output}"
    );
    assert!(output.contains("published"), "{output}");
    eprintln!(
        "live {:.1} s after start; test took {:.1} s",
        live_after.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    server.stop().await;
}
