//! RTMP ingest end to end: Debian's `ffmpeg` pushes H.264 + AAC over RTMP into a room;
//! Rust WebRTC viewers get it (from a keyframe, ≥ 95 % of the packets, Opus that decodes to
//! sound), the bridge serves the source's own H.264 and AAC over HTTP-FLV, HLS and LL-HLS
//! and records it; the host's stream key, its rotation and every refusal (wrong key,
//! wrong app, busy room, garbage bytes) behave as a production ingest must.

use futures::future::join_all;
use queqiao_tests::api::{ADMIN_PASSWORD, Api, server as accounts_server};
use queqiao_tests::bridge::{Probe, ffprobe, wait_for};
use queqiao_tests::server::{TEST_TOKEN, TestServer};
use queqiao_tests::whep::{Viewer, ViewerOptions, ViewerStats};
use reqwest::Method;
use serde_json::json;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

/// `ffmpeg` pushing a live test pattern with a 440 Hz tone to `url` for `seconds`.
fn push(url: &str, seconds: u32, extra_video: &[&str]) -> Child {
    let mut command = Command::new("ffmpeg");
    command
        .args(["-hide_banner", "-loglevel", "error", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
        .args(["-t", &seconds.to_string()])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-tune",
            "zerolatency",
        ])
        .args(["-pix_fmt", "yuv420p", "-g", "60"])
        .args(extra_video)
        .args(["-c:a", "aac", "-b:a", "96k", "-f", "flv", url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
        .spawn()
        .expect("ffmpeg runs (apt-get install ffmpeg)")
}

fn baseline() -> &'static [&'static str] {
    &["-profile:v", "baseline"]
}

fn rtmp_base(server: &TestServer) -> String {
    let addr = server.server.rtmp_addr.expect("RTMP ingest runs in tests");
    format!("rtmp://{addr}/live")
}

async fn wait_live(server: &TestServer, room: &str) {
    let live = wait_for(Duration::from_secs(15), async || {
        let snapshot = server.server.sfu.snapshot().await.ok()?;
        snapshot
            .rooms
            .iter()
            .any(|r| r.id == room && r.live)
            .then_some(())
    })
    .await;
    assert!(live.is_some(), "room {room} went live from RTMP");
}

fn assert_h264_aac(probe: &Probe, what: &str) {
    let (video, width, height) = probe.video().unwrap_or_else(|| panic!("{what}: no video"));
    assert_eq!(
        (video.as_str(), width, height),
        ("h264", 640, 360),
        "{what}"
    );
    let (audio, rate, _) = probe.audio().unwrap_or_else(|| panic!("{what}: no audio"));
    // The source's AAC, passed through (not Opus made back into 48 kHz AAC).
    assert_eq!((audio.as_str(), rate), ("aac", 44_100), "{what}");
}

fn ingest_counter(text: &str, name: &str) -> u64 {
    let prefix = format!("queqiao_rtmp_ingest_{name}_total ");
    text.lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in /metrics"))
}

async fn metrics(server: &TestServer) -> String {
    reqwest::get(server.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ffmpeg_over_rtmp_reaches_webrtc_viewers_and_every_bridge_output() {
    let server = TestServer::start().await.unwrap();
    let room = "rtmp-e2e";
    let mut ffmpeg = push(
        &format!("{}/{room}?key={TEST_TOKEN}", rtmp_base(&server)),
        14,
        baseline(),
    );
    wait_live(&server, room).await;
    let url = server.whep(room);
    let viewers: Vec<Viewer> =
        join_all((0..20).map(|_| Viewer::start(&url, ViewerOptions::default())))
            .await
            .into_iter()
            .map(|v| v.expect("a viewer connects to the RTMP room"))
            .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;

    // A steady window: what the ingest made against what each viewer received.
    let window_start = Instant::now();
    let made_before = server.server.sfu.stats().snapshot().ingest_packets;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let made = server.server.sfu.stats().snapshot().ingest_packets - made_before;
    let window_end = Instant::now();
    assert!(made > 300, "the ingest made {made} packets in 3 s");
    for (i, viewer) in viewers.iter().enumerate() {
        let stats = viewer.snapshot();
        let first = stats.video.first_payloads.first().expect("video arrived");
        assert!(
            sfu::keyframe::is_keyframe(sfu::media::Codec::H264, first),
            "viewer {i}: the first video packet is not a keyframe (NAL {:#04x})",
            first[0]
        );
        let received = stats
            .video
            .arrivals
            .iter()
            .chain(&stats.audio.arrivals)
            .filter(|at| **at >= window_start && **at <= window_end)
            .count();
        let share = received as f64 / made as f64;
        assert!(
            share >= 0.95,
            "viewer {i} received {received} of {made} packets ({share:.3})"
        );
        let level = stats.first_audio_rms();
        assert!(
            level > 300.0,
            "viewer {i}: the audio is silent (RMS {level:.0})"
        );
    }

    // The bridge passes the source's H.264 and AAC through.
    for (what, path) in [
        ("HTTP-FLV", format!("/live/{room}.flv")),
        ("HLS", format!("/hls/{room}/index.m3u8")),
        ("LL-HLS", format!("/llhls/{room}/index.m3u8")),
    ] {
        let probe = ffprobe(&server.url(&path))
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_h264_aac(&probe, what);
    }
    for viewer in viewers {
        viewer.close().await;
    }

    // The encoder stops: the show ends and its recording is the source's codecs too.
    let status = ffmpeg.wait().await.unwrap();
    assert!(status.success(), "ffmpeg pushed the whole clip: {status}");
    let recordings_url = server.url(&format!("/api/rooms/{room}/recordings"));
    let recording = wait_for(Duration::from_secs(20), async || {
        let list: serde_json::Value = reqwest::get(&recordings_url)
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let first = list.as_array()?.first()?.clone();
        first["ended_at"].is_i64().then_some(first)
    })
    .await
    .expect("the RTMP show's recording is listed as finished");
    assert!(
        recording["duration_secs"].as_f64().unwrap() > 8.0,
        "{recording}"
    );
    let probe = ffprobe(recording["url"].as_str().unwrap()).await.unwrap();
    assert_h264_aac(&probe, "recording");
    let text = metrics(&server).await;
    assert_eq!(ingest_counter(&text, "publishes"), 1);
    assert!(ingest_counter(&text, "frames") > 600);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_answered_and_counted_and_the_server_is_unaffected() {
    let server = TestServer::start().await.unwrap();
    let base = rtmp_base(&server);
    let addr = server.server.rtmp_addr.unwrap();

    // A wrong key, an unknown application: ffmpeg is refused and exits with an error.
    for url in [
        format!("{base}/refused?key=wrong"),
        format!("rtmp://{addr}/other/refused?key={TEST_TOKEN}"),
    ] {
        let output = push(&url, 2, baseline()).wait_with_output().await.unwrap();
        assert!(!output.status.success(), "{url} was accepted");
    }

    // Garbage bytes instead of a handshake, and an oversized chunk after a valid one.
    let mut garbage = tokio::net::TcpStream::connect(addr).await.unwrap();
    garbage.write_all(&[0x42; 4096]).await.unwrap();
    let mut sink = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), garbage.read_to_end(&mut sink)).await;
    assert!(closed.is_ok(), "a connection sending garbage is closed");

    // A second publisher of a live room is refused; the first goes on.
    let room = "rtmp-busy";
    let mut first = push(&format!("{base}/{room}?key={TEST_TOKEN}"), 8, baseline());
    wait_live(&server, room).await;
    let second = push(&format!("{base}/{room}?key={TEST_TOKEN}"), 3, baseline())
        .wait_with_output()
        .await
        .unwrap();
    assert!(
        !second.status.success(),
        "a second RTMP publisher was accepted"
    );
    let whip = reqwest::Client::new()
        .post(server.whip(room))
        .bearer_auth(TEST_TOKEN)
        .header("content-type", "application/sdp")
        .body(queqiao_tests::offers::publisher_offer().await.unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(whip.status(), 409, "WHIP into a room live from RTMP");
    assert!(
        first.wait().await.unwrap().success(),
        "the first publisher pushed on"
    );

    let text = metrics(&server).await;
    assert!(ingest_counter(&text, "refused_key") >= 1, "{text}");
    assert!(ingest_counter(&text, "refused_app") >= 1);
    assert!(ingest_counter(&text, "refused_busy") >= 1);
    assert!(ingest_counter(&text, "protocol_errors") >= 1);
    let health = reqwest::get(server.url("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200, "the server is unaffected");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_streams_with_the_rooms_key_and_a_rotated_key_stops_working() {
    let server = accounts_server(None).await;
    let api = Api::new(&server);
    let admin = api.token("admin", ADMIN_PASSWORD).await;
    let (host, host_token) = api.register("obs-host").await;
    let (_, viewer_token) = api.register("obs-viewer").await;
    api.make_host(&admin, host).await;
    let room = api
        .create_room(&host_token, json!({"title": "OBS 相亲夜"}))
        .await;
    let path = format!("/api/rooms/{room}/ingest");

    let (status, info) = api.call(Method::GET, &path, Some(&host_token), None).await;
    assert_eq!(status, 200, "{info}");
    let rtmp = &info["rtmp"];
    let addr = server.server.rtmp_addr.unwrap();
    assert_eq!(
        rtmp["server_url"],
        format!("rtmp://127.0.0.1:{}/live", addr.port())
    );
    let stream_key = rtmp["stream_key"].as_str().unwrap().to_owned();
    assert!(stream_key.starts_with(&format!("{room}?key=")), "{info}");
    assert_eq!(
        rtmp["url"],
        format!("{}/{stream_key}", rtmp["server_url"].as_str().unwrap())
    );
    assert!(
        info["whip_url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/whip/{room}"))
    );
    // Asking again gives the same key; viewers and strangers get none.
    let (_, again) = api.call(Method::GET, &path, Some(&host_token), None).await;
    assert_eq!(again["rtmp"]["stream_key"], stream_key);
    let (status, _) = api
        .call(Method::GET, &path, Some(&viewer_token), None)
        .await;
    assert_eq!(status, 403);
    let (status, _) = api.call(Method::GET, &path, None, None).await;
    assert_eq!(status, 401);

    // OBS style: the key alone as the stream name, on the server URL.
    let key = stream_key.split("key=").nth(1).unwrap().to_owned();
    let mut obs = push(&format!("rtmp://{addr}/live/{key}"), 4, baseline());
    api.wait_room(&room, "live from OBS", |r| r["live"] == true)
        .await;
    assert!(obs.wait().await.unwrap().success());

    // Rotation: the old key is refused, the new one works.
    let (status, rotated) = api
        .call(
            Method::POST,
            &format!("{path}/rotate"),
            Some(&host_token),
            None,
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    let new_url = rotated["rtmp"]["url"].as_str().unwrap().to_owned();
    assert_ne!(rotated["rtmp"]["stream_key"], stream_key);
    let old = push(&format!("rtmp://{addr}/live/{stream_key}"), 2, baseline())
        .wait_with_output()
        .await
        .unwrap();
    assert!(!old.status.success(), "the rotated-away key still works");
    // Once the last show's seat has gone stale, the new key goes live.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut fresh = push(&new_url, 3, baseline());
    assert!(fresh.wait().await.unwrap().success(), "the new key works");

    // A banned host's key is refused.
    let (status, body) = api
        .call(
            Method::POST,
            &format!("/api/users/{host}/ban"),
            Some(&admin),
            Some(json!({"reason": "违规直播"})),
        )
        .await;
    assert!(status == 200 || status == 204, "{body}");
    let banned = push(&new_url, 2, baseline())
        .wait_with_output()
        .await
        .unwrap();
    assert!(!banned.status.success(), "a banned host streamed");
    server.stop().await;
}

/// The largest step between consecutive video sequence numbers a viewer received.
fn largest_video_step(stats: &ViewerStats) -> u64 {
    let seqs: Vec<u64> = stats.video.sequence_numbers.iter().copied().collect();
    seqs.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_rtmp_host_reconnects_and_switches_to_whip_and_viewers_stay_with_continuous_numbers() {
    let server = TestServer::start().await.unwrap();
    let room = "rtmp-switch";
    let url = format!("{}/{room}?key={TEST_TOKEN}", rtmp_base(&server));
    let mut first = push(&url, 5, baseline());
    wait_live(&server, room).await;
    let viewer = Viewer::start(&server.whep(room), ViewerOptions::default())
        .await
        .expect("a viewer joins the RTMP room");
    assert!(first.wait().await.unwrap().success());

    // The encoder drops and comes back on the same key.
    let mut second = push(&url, 4, baseline());
    wait_live(&server, room).await;
    assert!(
        second.wait().await.unwrap().success(),
        "the reconnecting encoder is accepted"
    );
    let after_rtmp = viewer.snapshot();

    // The host switches to WHIP.
    let clip = std::sync::Arc::new(queqiao_tests::clip::Clip::default_360p().unwrap());
    let whip = wait_for(Duration::from_secs(10), async || {
        queqiao_tests::whip::Publisher::start(&server.whip(room), Some(TEST_TOKEN), clip.clone())
            .await
            .ok()
    })
    .await
    .expect("WHIP takes the seat once RTMP has left");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stats = viewer.snapshot();
    assert!(
        stats.video.packets > after_rtmp.video.packets + 100,
        "video kept coming after the switch: {} → {}",
        after_rtmp.video.packets,
        stats.video.packets
    );
    assert_eq!(
        stats.video.ssrcs.len(),
        1,
        "one SSRC through RTMP, RTMP and WHIP"
    );
    let step = largest_video_step(&stats);
    assert!(
        step <= 2,
        "video sequence numbers jump by {step} across the switches"
    );
    whip.delete(&server.base, Some(TEST_TOKEN)).await.unwrap();
    viewer.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stream_with_b_frames_reaches_webrtc_without_them_and_flv_with_them() {
    let server = TestServer::start().await.unwrap();
    let room = "rtmp-bframes";
    let mut ffmpeg = push(
        &format!("{}/{room}?key={TEST_TOKEN}", rtmp_base(&server)),
        8,
        &[
            "-profile:v",
            "main",
            "-bf",
            "2",
            "-x264-params",
            "b-pyramid=none",
        ],
    );
    wait_live(&server, room).await;
    let viewer = Viewer::start(&server.whep(room), ViewerOptions::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stats = viewer.snapshot();
    let first = stats.video.first_payloads.first().expect("video arrived");
    assert!(sfu::keyframe::is_keyframe(sfu::media::Codec::H264, first));
    assert!(
        stats.video.delivery_ratio() > 0.99,
        "no holes: {}",
        stats.video.delivery_ratio()
    );
    // The FLV keeps them: ffprobe sees the B-frames' reordering.
    let flv = server.url(&format!("/live/{room}.flv"));
    let output = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=has_b_frames,codec_name",
            "-of",
            "csv=p=0",
        ])
        .arg(&flv)
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.starts_with("h264,") && !text.trim().ends_with(",0"),
        "FLV video: {text:?}"
    );
    let text = metrics(&server).await;
    assert!(
        ingest_counter(&text, "b_frames_dropped") > 20,
        "B-frames were dropped for WebRTC"
    );
    assert!(ffmpeg.wait().await.unwrap().success());
    viewer.close().await;
    server.stop().await;
}
