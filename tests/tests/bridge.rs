//! End-to-end tests of the bridge: a real WHIP publisher streams the committed clip into
//! a running server, and real clients read the outputs over HTTP: ffprobe (FLV, HLS,
//! LL-HLS, the recording), raw HTTP-FLV readers (100 of them, plus one that stalls),
//! an LL-HLS blocking-reload client, and a real nginx-rtmp receiving the RTMP push.

use futures::future::join_all;
use queqiao_tests::bridge::{
    FlvTagInfo, NginxRtmp, Probe, clip_with_resolution_change, ffprobe, read_flv, wait_for,
};
use queqiao_tests::clip::Clip;
use queqiao_tests::server::{TEST_TOKEN, TestServer};
use queqiao_tests::whip::Publisher;
use reqwest::header;
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

fn clip() -> Arc<Clip> {
    Arc::new(Clip::default_360p().expect("the committed clip loads"))
}

async fn get_json(url: &str) -> (u16, Value) {
    let response = client().get(url).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Waits until `/api/rooms/{room}/stream` offers the bridge URLs.
async fn wait_bridged(server: &TestServer, room: &str) -> Value {
    wait_for(Duration::from_secs(20), async || {
        let (status, body) = get_json(&server.url(&format!("/api/rooms/{room}/stream"))).await;
        (status == 200 && body["flv"].is_string()).then_some(body)
    })
    .await
    .unwrap_or_else(|| panic!("room {room} never got bridge URLs"))
}

/// The body of a GET that must succeed.
async fn get_text(url: impl reqwest::IntoUrl) -> String {
    client()
        .get(url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Waits until the HLS playlist lists at least `segments` segments.
async fn wait_hls_segments(url: &str, segments: usize) -> String {
    wait_for(Duration::from_secs(30), async || {
        let response = client().get(url).send().await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        let text = response.text().await.ok()?;
        (text.matches("#EXTINF").count() >= segments).then_some(text)
    })
    .await
    .unwrap_or_else(|| panic!("{url} never listed {segments} segments"))
}

fn assert_h264_aac(probe: &Probe, what: &str, width: u64, height: u64) {
    let (vcodec, w, h) = probe
        .video()
        .unwrap_or_else(|| panic!("{what}: no video: {probe:?}"));
    assert_eq!(vcodec, "h264", "{what}");
    assert_eq!((w, h), (width, height), "{what}: size");
    let (acodec, rate, channels) = probe
        .audio()
        .unwrap_or_else(|| panic!("{what}: no audio: {probe:?}"));
    assert_eq!(acodec, "aac", "{what}");
    assert_eq!(rate, 48_000, "{what}: sample rate");
    assert!(channels >= 1, "{what}: channels");
}

async fn head(url: &str) -> reqwest::Response {
    client().get(url).send().await.unwrap()
}

fn header_of(response: &reqwest::Response, name: header::HeaderName) -> String {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

async fn metric(server: &TestServer, name: &str) -> f64 {
    let text = get_text(server.url("/metrics")).await;
    text.lines()
        .find_map(|line| {
            line.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(' '))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffprobe_reads_every_live_output_and_the_recording() {
    let server = TestServer::start().await.unwrap();
    let room = "bridge-probe";
    let publisher = Publisher::start(&server.whip(room), Some(TEST_TOKEN), clip())
        .await
        .unwrap();
    let urls = wait_bridged(&server, room).await;
    let flv = urls["flv"].as_str().unwrap().to_owned();
    let hls = urls["hls"].as_str().unwrap().to_owned();
    let llhls = urls["llhls"].as_str().unwrap().to_owned();
    assert_eq!(flv, server.url(&format!("/live/{room}.flv")));
    wait_hls_segments(&hls, 2).await;
    wait_hls_segments(&llhls, 1).await;

    // Content types, caching and CORS as players and CDNs expect.
    let response = head(&hls).await;
    assert_eq!(
        header_of(&response, header::CONTENT_TYPE),
        "application/vnd.apple.mpegurl"
    );
    assert_eq!(header_of(&response, header::CACHE_CONTROL), "no-cache");
    assert_eq!(
        header_of(&response, header::ACCESS_CONTROL_ALLOW_ORIGIN),
        "*"
    );
    let playlist = response.text().await.unwrap();
    let segment = playlist.lines().find(|l| l.ends_with(".ts")).unwrap();
    let response = head(&hls.replace("index.m3u8", segment)).await;
    assert_eq!(header_of(&response, header::CONTENT_TYPE), "video/mp2t");
    assert!(header_of(&response, header::CACHE_CONTROL).contains("max-age"));
    let response = head(&llhls).await;
    assert_eq!(
        header_of(&response, header::CONTENT_TYPE),
        "application/vnd.apple.mpegurl"
    );
    let text = response.text().await.unwrap();
    let init = text
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MAP:URI=\""))
        .and_then(|l| l.strip_suffix('"'))
        .unwrap();
    let response = head(&llhls.replace("index.m3u8", init)).await;
    assert_eq!(header_of(&response, header::CONTENT_TYPE), "video/mp4");

    let (tags, content_type) = read_flv(&flv, Duration::from_secs(2)).await.unwrap();
    assert_eq!(content_type, "video/x-flv");
    assert!(tags.iter().any(|t| t.tag_type == 9) && tags.iter().any(|t| t.tag_type == 8));

    for (what, url) in [("HTTP-FLV", &flv), ("HLS", &hls), ("LL-HLS", &llhls)] {
        let probe = ffprobe(url).await.unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_h264_aac(&probe, what, 640, 360);
    }

    // The show ends: the recording is finished and listed with a playable URL.
    tokio::time::sleep(Duration::from_secs(2)).await;
    publisher
        .delete(&server.base, Some(TEST_TOKEN))
        .await
        .unwrap();
    let recordings_url = server.url(&format!("/api/rooms/{room}/recordings"));
    let recording = wait_for(Duration::from_secs(20), async || {
        let (status, list) = get_json(&recordings_url).await;
        let first = list.as_array()?.first()?.clone();
        (status == 200 && first["ended_at"].is_i64()).then_some(first)
    })
    .await
    .expect("the recording is listed as finished");
    assert_eq!(recording["room"], room);
    assert!(
        recording["duration_secs"].as_f64().unwrap() > 4.0,
        "{recording}"
    );
    assert!(recording["started_at"].as_i64().unwrap() > 1_700_000_000_000);
    assert_eq!(recording["recording"], false);
    assert_eq!(recording["width"], 640);
    let url = recording["url"].as_str().unwrap().to_owned();
    let text = get_text(&url).await;
    assert!(text.contains("#EXT-X-ENDLIST"), "{text}");
    assert!(text.contains("#EXT-X-PLAYLIST-TYPE:VOD"));
    match m3u8_rs::parse_playlist_res(text.as_bytes()) {
        Ok(m3u8_rs::Playlist::MediaPlaylist(playlist)) => {
            assert!(playlist.end_list);
            assert!(playlist.segments.len() >= 2);
        }
        other => panic!("not a media playlist: {other:?}"),
    }
    let probe = ffprobe(&url).await.unwrap();
    assert_h264_aac(&probe, "recording", 640, 360);

    // After the show: outputs answer "not live" (after the linger time) and the stream
    // API no longer offers them.
    let (_, urls) = get_json(&server.url(&format!("/api/rooms/{room}/stream"))).await;
    assert!(urls["flv"].is_null(), "{urls}");
    let response = head(&flv).await;
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_live");
    assert!(metric(&server, "queqiao_bridge_hls_segments_total").await >= 2.0);
    assert!(metric(&server, "queqiao_bridge_recording_segments_total").await >= 2.0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llhls_blocking_reload_waits_for_the_part_and_refuses_far_requests() {
    let server = TestServer::start().await.unwrap();
    let room = "bridge-llhls";
    let publisher = Publisher::start(&server.whip(room), Some(TEST_TOKEN), clip())
        .await
        .unwrap();
    let urls = wait_bridged(&server, room).await;
    let llhls = urls["llhls"].as_str().unwrap().to_owned();
    let text = wait_hls_segments(&llhls, 1).await;
    for tag in [
        "#EXT-X-VERSION:9",
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.600",
        "#EXT-X-PART-INF:PART-TARGET=0.200",
        "#EXT-X-MAP:URI=",
        "#EXT-X-PART:DURATION=",
        "INDEPENDENT=YES",
        "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=",
        "#EXT-X-PROGRAM-DATE-TIME:",
    ] {
        assert!(text.contains(tag), "missing {tag} in\n{text}");
    }
    assert!(matches!(
        m3u8_rs::parse_playlist_res(text.as_bytes()),
        Ok(m3u8_rs::Playlist::MediaPlaylist(_))
    ));

    // HLS players hold no connection: one that fetched a playlist lately counts as a
    // viewer of the room (a player is its address and user agent).
    let hls = urls["hls"].as_str().unwrap().to_owned();
    let other_player = reqwest::Client::builder()
        .no_proxy()
        .user_agent("another-player/1.0")
        .build()
        .unwrap();
    let room_url = server.url(&format!("/api/rooms/{room}"));
    let counted = wait_for(Duration::from_secs(15), async || {
        client().get(&llhls).send().await.ok()?;
        other_player.get(&hls).send().await.ok()?;
        let (_, body) = get_json(&room_url).await;
        (body["viewers"].as_i64()? == 2).then_some(())
    })
    .await;
    assert!(counted.is_some(), "two HLS players count as two viewers");

    // The preload hint names the next part: a blocking reload for it returns as soon as
    // it exists (~one part later) and lists it.
    let mut waits = Vec::new();
    for _ in 0..10 {
        let text = get_text(&llhls).await;
        let hint = text
            .lines()
            .find_map(|l| l.strip_prefix("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part"))
            .and_then(|l| l.strip_suffix(".mp4\""))
            .unwrap()
            .to_owned();
        let (msn, part) = hint.split_once('.').unwrap();
        let started = Instant::now();
        let response = client()
            .get(format!("{llhls}?_HLS_msn={msn}&_HLS_part={part}"))
            .send()
            .await
            .unwrap();
        let waited = started.elapsed();
        assert_eq!(response.status(), 200);
        let body = response.text().await.unwrap();
        let listed = body.contains(&format!("part{msn}.{part}.mp4\""))
            || body.contains(&format!("seg{msn}.mp4"));
        assert!(listed, "part {msn}.{part} not in\n{body}");
        waits.push(waited);
    }
    waits.sort();
    assert!(
        waits[waits.len() / 2] < Duration::from_millis(600),
        "blocking reloads took {waits:?}"
    );

    // The hinted part itself can be requested before it exists.
    let text = get_text(&llhls).await;
    let hint = text
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\""))
        .and_then(|l| l.strip_suffix('"'))
        .unwrap()
        .to_owned();
    let response = client()
        .get(llhls.replace("index.m3u8", &hint))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{hint}");
    assert_eq!(header_of(&response, header::CONTENT_TYPE), "video/mp4");
    assert!(!response.bytes().await.unwrap().is_empty());

    // Too far ahead: 400 at once. Malformed: 400.
    let (status, body) = get_json(&format!("{llhls}?_HLS_msn=100000")).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "bad_request");
    let (status, _) = get_json(&format!("{llhls}?_HLS_part=1")).await;
    assert_eq!(status, 400);
    let (status, _) = get_json(&format!("{llhls}?_HLS_msn=x")).await;
    assert_eq!(status, 400);
    // An old part is gone, not waited for.
    let (status, body) = get_json(&llhls.replace("index.m3u8", "part0.999.mp4")).await;
    assert_eq!(status, 404, "{body}");
    // A room that is not live.
    let (status, body) = get_json(&server.url("/llhls/nobody-here/index.m3u8")).await;
    assert_eq!(status, 404, "{body}");
    publisher
        .delete(&server.base, Some(TEST_TOKEN))
        .await
        .unwrap();
    server.stop().await;
}

/// Spread of arrival times of the same tag across viewers, per tag.
fn arrival_spreads(viewers: &[Vec<FlvTagInfo>]) -> Vec<Duration> {
    use std::collections::HashMap;
    let mut by_tag: HashMap<(u8, u32), (Instant, Instant, usize)> = HashMap::new();
    for tags in viewers {
        for tag in tags
            .iter()
            .filter(|t| t.tag_type == 9 && !t.avc_sequence_header)
        {
            let entry = by_tag.entry((tag.tag_type, tag.timestamp)).or_insert((
                tag.received_at,
                tag.received_at,
                0,
            ));
            entry.0 = entry.0.min(tag.received_at);
            entry.1 = entry.1.max(tag.received_at);
            entry.2 += 1;
        }
    }
    by_tag
        .values()
        .filter(|(_, _, n)| *n == viewers.len())
        .map(|(first, last, _)| *last - *first)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_flv_viewers_receive_the_stream_and_a_stalled_one_delays_nobody() {
    let server = TestServer::start().await.unwrap();
    let room = "bridge-crowd";
    let publisher = Publisher::start(&server.whip(room), Some(TEST_TOKEN), clip())
        .await
        .unwrap();
    let urls = wait_bridged(&server, room).await;
    let flv = urls["flv"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(500)).await;

    // One viewer that asks and then never reads (a phone that went into a tunnel).
    let stalled = {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let addr: std::net::SocketAddr = server.server.http_addr;
        socket.connect(&addr.into()).unwrap();
        let mut stream: std::net::TcpStream = socket.into();
        use std::io::Write;
        write!(
            stream,
            "GET /live/{room}.flv HTTP/1.1\r\nHost: {addr}\r\n\r\n"
        )
        .unwrap();
        stream
    };

    // While they watch, the room list counts them (FLV viewers are part of the audience).
    let room_url = server.url(&format!("/api/rooms/{room}"));
    let counted = async {
        wait_for(Duration::from_secs(9), async || {
            let (_, body) = get_json(&room_url).await;
            let viewers = body["viewers"].as_i64()?;
            (viewers >= 100).then_some(viewers)
        })
        .await
    };
    let (viewers, counted) = tokio::join!(
        join_all((0..100).map(|_| read_flv(&flv, Duration::from_secs(10)))),
        counted
    );
    assert!(
        counted.is_some_and(|n| n <= 101),
        "the room's viewer count follows its FLV viewers: {counted:?}"
    );
    let viewers: Vec<Vec<FlvTagInfo>> = viewers.into_iter().map(|v| v.unwrap().0).collect();
    for (i, tags) in viewers.iter().enumerate() {
        // Metadata and both sequence headers first, then video from a keyframe.
        assert_eq!(tags[0].tag_type, 18, "viewer {i}: onMetaData first");
        assert!(
            tags[..3].iter().any(|t| t.avc_sequence_header),
            "viewer {i}"
        );
        assert!(
            tags[..3].iter().any(|t| t.aac_sequence_header),
            "viewer {i}"
        );
        let first_video = tags
            .iter()
            .find(|t| t.tag_type == 9 && !t.avc_sequence_header)
            .unwrap();
        assert!(first_video.keyframe, "viewer {i} starts on a keyframe");
        let video = tags.iter().filter(|t| t.tag_type == 9).count();
        let audio = tags.iter().filter(|t| t.tag_type == 8).count();
        assert!(video >= 270, "viewer {i}: {video} video tags in 10 s");
        assert!(audio >= 400, "viewer {i}: {audio} audio tags in 10 s");
        let timestamps: Vec<u32> = tags
            .iter()
            .filter(|t| t.tag_type == 9 && !t.avc_sequence_header)
            .map(|t| t.timestamp)
            .collect();
        assert!(
            timestamps.windows(2).all(|w| w[1] > w[0]),
            "viewer {i}: increasing"
        );
    }
    let mut spreads = arrival_spreads(&viewers);
    spreads.sort();
    assert!(
        spreads.len() > 200,
        "{} tags seen by every viewer",
        spreads.len()
    );
    let p50 = spreads[spreads.len() / 2];
    let p95 = spreads[spreads.len() * 95 / 100];
    println!("arrival spread across 100 viewers: p50 {p50:?} p95 {p95:?}");
    assert!(
        p95 < Duration::from_millis(500),
        "viewers drift apart: p50 {p50:?} p95 {p95:?}"
    );

    // The stalled viewer is dropped (and counted), nobody waited for it.
    let dropped = wait_for(Duration::from_secs(60), async || {
        let dropped = metric(&server, "queqiao_bridge_flv_viewers_dropped_slow_total").await;
        (dropped >= 1.0).then_some(dropped)
    })
    .await;
    assert!(dropped.is_some(), "the stalled viewer was never dropped");
    drop(stalled);
    assert!(metric(&server, "queqiao_bridge_flv_viewers_joined_total").await >= 101.0);
    // Once they have gone, so has the count.
    let emptied = wait_for(Duration::from_secs(20), async || {
        let (_, body) = get_json(&room_url).await;
        (body["viewers"].as_i64()? == 0).then_some(())
    })
    .await;
    assert!(emptied.is_some(), "the viewer count returns to 0");
    publisher
        .delete(&server.base, Some(TEST_TOKEN))
        .await
        .unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolution_change_sends_a_new_sequence_header_and_an_hls_discontinuity() {
    let server = TestServer::start().await.unwrap();
    let room = "bridge-resize";
    let clip = Arc::new(clip_with_resolution_change().unwrap());
    let publisher = Publisher::start(&server.whip(room), Some(TEST_TOKEN), clip)
        .await
        .unwrap();
    let urls = wait_bridged(&server, room).await;
    let flv = urls["flv"].as_str().unwrap().to_owned();
    let hls = urls["hls"].as_str().unwrap().to_owned();
    // 640x360 for 6 s, then 320x180 for 6 s.
    let (tags, _) = read_flv(&flv, Duration::from_secs(11)).await.unwrap();
    let widths: Vec<f64> = tags.iter().filter_map(|t| t.metadata_width).collect();
    assert!(
        widths.contains(&640.0) && widths.contains(&320.0),
        "onMetaData widths {widths:?}"
    );
    let headers: Vec<usize> = tags
        .iter()
        .enumerate()
        .filter(|(_, t)| t.avc_sequence_header)
        .map(|(i, _)| i)
        .collect();
    assert!(
        headers.len() >= 2,
        "a new AVC sequence header after the change"
    );
    let last_header = *headers.last().unwrap();
    let after = &tags[last_header + 1..];
    let next_video = after.iter().find(|t| t.tag_type == 9).unwrap();
    assert!(
        next_video.keyframe,
        "the new sequence header is followed by a keyframe"
    );
    assert!(
        after.iter().filter(|t| t.tag_type == 9).count() >= 30,
        "video keeps flowing after the change"
    );
    let timestamps: Vec<u32> = tags
        .iter()
        .filter(|t| t.tag_type == 9 && !t.avc_sequence_header)
        .map(|t| t.timestamp)
        .collect();
    assert!(timestamps.windows(2).all(|w| w[1] > w[0]));

    let text = wait_for(Duration::from_secs(20), async || {
        let text = client().get(&hls).send().await.ok()?.text().await.ok()?;
        text.contains("#EXT-X-DISCONTINUITY\n").then_some(text)
    })
    .await
    .expect("HLS marks the resolution change with EXT-X-DISCONTINUITY");
    let Ok(m3u8_rs::Playlist::MediaPlaylist(playlist)) =
        m3u8_rs::parse_playlist_res(text.as_bytes())
    else {
        panic!("{text}")
    };
    assert!(playlist.segments.iter().any(|s| s.discontinuity));
    // The status follows the new size.
    let status = server
        .server
        .bridge
        .room_status(&sfu::RoomId::parse(room).unwrap())
        .unwrap();
    assert!(status.live && status.video && status.audio);
    publisher
        .delete(&server.base, Some(TEST_TOKEN))
        .await
        .unwrap();
    server.stop().await;
}

fn rtmp_state(server: &TestServer, room: &str) -> (String, u64) {
    let statuses = server
        .server
        .bridge
        .rtmp_status(&sfu::RoomId::parse(room).unwrap());
    let status = statuses.first().expect("one target");
    (
        serde_json::to_value(status.state)
            .unwrap()
            .as_str()
            .unwrap()
            .to_owned(),
        status.reconnects,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtmp_push_reaches_nginx_and_reconnects_after_a_restart() {
    let nginx = NginxRtmp::start(0).await.unwrap();
    let port = nginx.port;
    let room = "bridge-rtmp";
    let target = nginx.url("stream1");
    let server = TestServer::start_with(|config| {
        config.rtmp_push = vec![format!("{room}={target}")];
        // nginx listens on loopback, which pushes may reach only when allow-listed.
        config.restream_allow = vec!["127.0.0.1".to_owned()];
    })
    .await
    .unwrap();
    let publisher = Publisher::start(&server.whip(room), Some(TEST_TOKEN), clip())
        .await
        .unwrap();
    wait_bridged(&server, room).await;
    wait_for(Duration::from_secs(20), async || {
        (rtmp_state(&server, room).0 == "publishing").then_some(())
    })
    .await
    .expect("the push publishes");
    let probe = ffprobe(&target).await.unwrap();
    assert_h264_aac(&probe, "RTMP via nginx", 640, 360);

    // nginx goes away: the push notices and retries; nginx comes back: it publishes again.
    nginx.stop().await;
    wait_for(Duration::from_secs(20), async || {
        let (state, _) = rtmp_state(&server, room);
        (state == "retrying" || state == "connecting").then_some(())
    })
    .await
    .expect("the push notices nginx is gone");
    let nginx = NginxRtmp::start(port).await.unwrap();
    let reconnects = wait_for(Duration::from_secs(40), async || {
        let (state, reconnects) = rtmp_state(&server, room);
        (state == "publishing" && reconnects >= 1).then_some(reconnects)
    })
    .await
    .expect("the push reconnects after nginx restarts");
    assert!(reconnects >= 1);
    let probe = ffprobe(&target).await.unwrap();
    assert_h264_aac(&probe, "RTMP after reconnect", 640, 360);
    assert!(metric(&server, "queqiao_bridge_rtmp_reconnects_total").await >= 1.0);

    // The show ends: the push stops.
    publisher
        .delete(&server.base, Some(TEST_TOKEN))
        .await
        .unwrap();
    wait_for(Duration::from_secs(20), async || {
        let (state, _) = rtmp_state(&server, room);
        (state == "stopped" || state == "idle").then_some(())
    })
    .await
    .expect("the push stops with the show");
    server.stop().await;
    nginx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_show_is_recorded_and_listed_newest_first() {
    let server = TestServer::start().await.unwrap();
    let room = "bridge-shows";
    for _ in 0..2 {
        let publisher = Publisher::start(&server.whip(room), Some(TEST_TOKEN), clip())
            .await
            .unwrap();
        wait_bridged(&server, room).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        publisher
            .delete(&server.base, Some(TEST_TOKEN))
            .await
            .unwrap();
        // Let the offline show end before the next one starts.
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    let url = server.url(&format!("/api/rooms/{room}/recordings"));
    let list = wait_for(Duration::from_secs(20), async || {
        let (_, list) = get_json(&url).await;
        let list = list.as_array()?.clone();
        (list.len() == 2 && list.iter().all(|r| r["ended_at"].is_i64())).then_some(list)
    })
    .await
    .expect("two finished recordings");
    assert!(
        list[0]["started_at"].as_i64() > list[1]["started_at"].as_i64(),
        "newest first"
    );
    assert_ne!(list[0]["id"], list[1]["id"]);
    for recording in &list {
        assert!(
            recording["duration_secs"].as_f64().unwrap() >= 1.0,
            "{recording}"
        );
        assert!(
            recording["show_id"].is_i64(),
            "linked to its show: {recording}"
        );
        let text = get_text(recording["url"].as_str().unwrap()).await;
        assert!(text.contains("#EXT-X-ENDLIST"));
    }
    // Unknown rooms and bad recording paths.
    let (status, _) = get_json(&server.url("/api/rooms/nope/recordings")).await;
    assert_eq!(status, 404);
    let (status, _) = get_json(&server.url(&format!(
        "/recordings/{room}/..%2F..%2Fqueqiao.db/index.m3u8"
    )))
    .await;
    assert_eq!(status, 404);
    server.stop().await;
}

/// A user created straight in storage, logged in through the API.
async fn login_as(server: &TestServer, name: &str, role: signaling::store::Role) -> String {
    let hash = signaling::auth::hash_password("correct-horse-9".into())
        .await
        .unwrap();
    server
        .server
        .store
        .create_user(&signaling::store::NewUser {
            username: Some(name.to_owned()),
            password_hash: hash,
            role: Some(role),
            nickname: name.to_owned(),
            ..Default::default()
        })
        .await
        .unwrap();
    let (status, body) = queqiao_tests::http::HttpClient::new()
        .json(
            reqwest::Method::POST,
            &server.url("/api/auth/login"),
            None,
            Some(serde_json::json!({"login": name, "password": "correct-horse-9"})),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    body["token"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_sets_rtmp_targets_through_the_api_and_sees_their_status() {
    use reqwest::Method;
    let nginx = NginxRtmp::start(0).await.unwrap();
    let server = TestServer::start_with(|config| {
        config.standalone = false;
        config.publish_token = None;
        // nginx listens on loopback, which pushes may reach only when allow-listed.
        config.restream_allow = vec!["127.0.0.1".to_owned()];
    })
    .await
    .unwrap();
    let api = queqiao_tests::http::HttpClient::new();
    let host = login_as(&server, "bridgehost", signaling::store::Role::Host).await;
    let other = login_as(&server, "bridgeviewer", signaling::store::Role::Viewer).await;
    let (status, room) = api
        .json(
            Method::POST,
            &server.url("/api/rooms"),
            Some(&host),
            Some(serde_json::json!({"title": "restream"})),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{room}");
    let id = room["id"].as_str().unwrap().to_owned();
    let restream = server.url(&format!("/api/rooms/{id}/restream"));

    // Validation and permissions.
    let (status, body) = api
        .json(
            Method::POST,
            &restream,
            Some(&host),
            Some(serde_json::json!({"url": "http://example.com/x"})),
        )
        .await
        .unwrap();
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["field"], "url");
    let (status, _) = api
        .json(
            Method::POST,
            &restream,
            Some(&other),
            Some(serde_json::json!({"url": nginx.url("api")})),
        )
        .await
        .unwrap();
    assert_eq!(status, 403);
    let (status, _) = api.json(Method::GET, &restream, None, None).await.unwrap();
    assert_eq!(status, 401);

    let (status, target) = api
        .json(
            Method::POST,
            &restream,
            Some(&host),
            Some(serde_json::json!({"url": nginx.url("api")})),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{target}");
    assert_eq!(target["state"], "idle", "not live yet");
    let target_id = target["id"].as_str().unwrap().to_owned();

    // The host goes live: the push starts and the API shows it publishing.
    let publisher = Publisher::start(&server.whip(&id), Some(&host), clip())
        .await
        .unwrap();
    let listed = wait_for(Duration::from_secs(20), async || {
        let (_, list) = api
            .json(Method::GET, &restream, Some(&host), None)
            .await
            .ok()?;
        (list[0]["state"] == "publishing").then_some(list)
    })
    .await
    .expect("the API shows the push publishing");
    assert_eq!(listed[0]["url"], nginx.url("api"));
    assert_eq!(listed[0]["configured"], false);
    let probe = ffprobe(&nginx.url("api")).await.unwrap();
    assert_h264_aac(&probe, "RTMP push set through the API", 640, 360);

    // Removing the target stops the push.
    let (status, _) = api
        .json(
            Method::DELETE,
            &format!("{restream}/{target_id}"),
            Some(&host),
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, 204);
    let (_, list) = api
        .json(Method::GET, &restream, Some(&host), None)
        .await
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 0);
    let (status, _) = api
        .json(
            Method::DELETE,
            &format!("{restream}/{target_id}"),
            Some(&host),
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, 404);
    assert!(
        wait_for(Duration::from_secs(10), async || {
            (metric(&server, "queqiao_bridge_rtmp_publishing").await == 0.0).then_some(())
        })
        .await
        .is_some(),
        "the push stopped"
    );
    publisher.delete(&server.base, Some(&host)).await.unwrap();
    server.stop().await;
    nginx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_rooms_need_a_token_on_the_bridge_urls_too() {
    use reqwest::Method;
    let server = TestServer::start_with(|config| {
        config.standalone = false;
        config.publish_token = None;
    })
    .await
    .unwrap();
    let api = queqiao_tests::http::HttpClient::new();
    let host = login_as(&server, "privatehost", signaling::store::Role::Host).await;
    let stranger = login_as(&server, "stranger", signaling::store::Role::Viewer).await;
    let (status, room) = api
        .json(
            Method::POST,
            &server.url("/api/rooms"),
            Some(&host),
            Some(serde_json::json!({"title": "private", "visibility": "private"})),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{room}");
    let id = room["id"].as_str().unwrap().to_owned();
    let publisher = Publisher::start(&server.whip(&id), Some(&host), clip())
        .await
        .unwrap();
    let flv = server.url(&format!("/live/{id}.flv"));
    wait_for(Duration::from_secs(20), async || {
        server
            .server
            .bridge
            .room_status(&sfu::RoomId::parse(&id).unwrap())
            .filter(|s| s.live)
    })
    .await
    .expect("bridged");
    for path in [
        format!("/live/{id}.flv"),
        format!("/hls/{id}/index.m3u8"),
        format!("/llhls/{id}/index.m3u8"),
    ] {
        let (status, body) = get_json(&server.url(&path)).await;
        assert_eq!(
            status, 404,
            "a private room is unknown to anonymous players: {path}: {body}"
        );
    }
    // Account tokens never go in URLs: a query token must be a room's playback token.
    let (status, _) = get_json(&format!("{flv}?token={stranger}")).await;
    assert_eq!(status, 401);
    let (status, _) = api
        .json(
            Method::GET,
            &server.url(&format!("/api/rooms/{id}/stream")),
            Some(&stranger),
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, 404, "no links for a stranger");
    // The host's links carry a short-lived playback token for this room.
    let (status, stream) = api
        .json(
            Method::GET,
            &server.url(&format!("/api/rooms/{id}/stream")),
            Some(&host),
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{stream}");
    let flv_link = stream["flv"].as_str().unwrap().to_owned();
    let playback = flv_link.split_once("?token=").unwrap().1.to_owned();
    assert!(
        !flv_link.contains(&host),
        "the account token is not in the link"
    );
    let (tags, _) = read_flv(&flv_link, Duration::from_secs(2)).await.unwrap();
    assert!(tags.iter().any(|t| t.tag_type == 9));
    // The host's account token works as a header.
    let response = client()
        .get(server.url(&format!("/hls/{id}/index.m3u8")))
        .bearer_auth(&host)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["cache-control"],
        "private, no-store",
        "private media stays out of shared caches"
    );
    // A player that cannot set headers (mini-programs) puts the token in the playlist URL
    // only: every segment and part URI of the playlist carries it on, and works.
    for (kind, suffix) in [("hls", ".ts"), ("llhls", ".mp4")] {
        let playlist_url = stream[kind].as_str().unwrap().to_owned();
        let playlist = wait_hls_segments(&playlist_url, 1).await;
        let uris: Vec<&str> = playlist
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .collect();
        assert!(!uris.is_empty(), "{playlist}");
        for uri in &uris {
            assert!(uri.ends_with(&format!("token={playback}")), "{kind}: {uri}");
        }
        let segment = uris.last().unwrap();
        let base = playlist_url.rsplit_once('/').unwrap().0;
        let response = client()
            .get(format!("{base}/{segment}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{kind}: {segment}");
        assert!(
            segment.split('?').next().unwrap().ends_with(suffix),
            "{segment}"
        );
        let without = segment.split('?').next().unwrap();
        let response = client()
            .get(format!("{base}/{without}"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            404,
            "{kind}: the segment itself is guarded"
        );
    }
    publisher.delete(&server.base, Some(&host)).await.unwrap();
    server.stop().await;
}
