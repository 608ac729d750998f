//! End-to-end tests of the live media core with real WebRTC clients: WHIP publisher →
//! SFU on one UDP port → WHEP viewers.

use futures::future::join_all;
use queqiao_tests::clip::Clip;
use queqiao_tests::server::{TEST_TOKEN, TestServer};
use queqiao_tests::whep::{Viewer, ViewerOptions, ViewerStats};
use queqiao_tests::whip::Publisher;
use sfu::keyframe::h264_is_keyframe;
use sfu::{CloseReason, SfuEvent};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn clip() -> Arc<Clip> {
    Arc::new(Clip::default_360p().expect("the committed clip loads"))
}

async fn start_viewers(server: &TestServer, room: &str, count: usize) -> Vec<Viewer> {
    let url = server.whep(room);
    let viewers = join_all((0..count).map(|_| Viewer::start(&url, ViewerOptions::default()))).await;
    viewers
        .into_iter()
        .map(|v| v.expect("viewer connects"))
        .collect()
}

fn assert_starts_on_keyframe(stats: &ViewerStats) {
    let first = stats.video.first_payloads.first().expect("video arrived");
    assert!(
        h264_is_keyframe(first),
        "first video packet is not a keyframe start: NAL header {:#04x}",
        first[0]
    );
}

/// At least 95 % of the `sent` packets (audio and video) arrived within `window`.
fn assert_received_the_window(
    viewer: usize,
    stats: &ViewerStats,
    window: (Instant, Instant),
    sent: u64,
) {
    let received = stats
        .video
        .arrivals
        .iter()
        .chain(&stats.audio.arrivals)
        .filter(|at| **at >= window.0 && **at <= window.1)
        .count();
    let share = received as f64 / sent as f64;
    assert!(
        share >= 0.95,
        "viewer {viewer} received {received} of {sent} packets ({share:.3})"
    );
}

/// Polls `check` every 100 ms until it holds or `timeout` passes.
async fn eventually(timeout: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    check().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_viewers_receive_the_stream_starting_on_a_keyframe() {
    let server = TestServer::start().await.unwrap();
    let publisher = Publisher::start(&server.whip("twenty"), Some(TEST_TOKEN), clip())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let viewers = start_viewers(&server, "twenty", 20).await;

    // Measure a steady window: what the publisher sent vs what each viewer received.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let window_start = Instant::now();
    let sent_before = publisher.packets_sent().await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let sent_after = publisher.packets_sent().await;
    let window_end = Instant::now();
    let sent = sent_after - sent_before;
    assert!(
        sent > 400,
        "the publisher kept sending ({sent} packets in 4 s)"
    );

    for (i, viewer) in viewers.iter().enumerate() {
        let stats = viewer.snapshot();
        assert_starts_on_keyframe(&stats);
        assert_received_the_window(i, &stats, (window_start, window_end), sent);
        assert!(
            stats.video.delivery_ratio() >= 0.95,
            "viewer {i} video delivery {:.3}",
            stats.video.delivery_ratio()
        );
        assert!(
            stats.audio.delivery_ratio() >= 0.95,
            "viewer {i} audio delivery {:.3}",
            stats.audio.delivery_ratio()
        );
        assert_eq!(stats.video.ssrcs.len(), 1);
    }
    let snapshot = server.server.sfu.snapshot().await.unwrap();
    let room = snapshot.rooms.iter().find(|r| r.id == "twenty").unwrap();
    assert_eq!(room.viewers, 20);
    assert!(room.live);
    for viewer in viewers {
        viewer.close().await;
    }
    publisher
        .delete(&server.base, Some(TEST_TOKEN))
        .await
        .unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_reconnect_keeps_viewers_receiving_with_continuous_numbering() {
    let server = TestServer::start().await.unwrap();
    let media = clip();
    let first = Publisher::start(
        &server.whip("reconnect"),
        Some(TEST_TOKEN),
        Arc::clone(&media),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let viewers = start_viewers(&server, "reconnect", 20).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The host's app restarts: the old session ends, a new one starts for the same room.
    assert_eq!(
        first.delete(&server.base, Some(TEST_TOKEN)).await.unwrap(),
        200
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before: Vec<ViewerStats> = viewers.iter().map(Viewer::snapshot).collect();
    let second = Publisher::start(&server.whip("reconnect"), Some(TEST_TOKEN), media)
        .await
        .unwrap();
    let resumed_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;

    for (i, (viewer, before)) in viewers.iter().zip(&before).enumerate() {
        let stats = viewer.snapshot();
        let video_after = stats.video.packets_since(resumed_at);
        let audio_after = stats.audio.packets_since(resumed_at);
        assert!(
            video_after > 100,
            "viewer {i}: {video_after} video packets after the reconnect"
        );
        assert!(
            audio_after > 100,
            "viewer {i}: {audio_after} audio packets after the reconnect"
        );
        assert_eq!(stats.video.ssrcs.len(), 1, "viewer {i}: the SSRC changed");
        assert_eq!(stats.audio.ssrcs.len(), 1, "viewer {i}: the SSRC changed");
        // Continuous numbering: no jump across the switch, nothing missing.
        assert!(
            stats.video.largest_gap <= 2,
            "viewer {i}: video sequence jumped by {}",
            stats.video.largest_gap
        );
        assert!(
            stats.audio.largest_gap <= 2,
            "viewer {i}: audio sequence jumped by {}",
            stats.audio.largest_gap
        );
        assert!(stats.video.delivery_ratio() >= 0.95);
        assert!(stats.video.packets > before.video.packets);
    }
    let snapshot = server.server.sfu.snapshot().await.unwrap();
    assert_eq!(snapshot.rooms[0].viewers, 20, "no viewer was dropped");
    assert_eq!(snapshot.rooms[0].epoch, 2);
    for viewer in viewers {
        viewer.close().await;
    }
    second.delete(&server.base, Some(TEST_TOKEN)).await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_that_vanishes_is_replaced_and_viewers_stay() {
    let server = TestServer::start_with(|c| c.publisher_stale_secs = 1.0)
        .await
        .unwrap();
    let media = clip();
    let first = Publisher::start(&server.whip("vanish"), Some(TEST_TOKEN), Arc::clone(&media))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let viewers = start_viewers(&server, "vanish", 3).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    // While it is live, a second publisher is a conflict.
    let http = queqiao_tests::http::HttpClient::new();
    let offer = sdp_offer_from_browser_like_publisher().await;
    let conflict = http
        .post_sdp(&server.whip("vanish"), Some(TEST_TOKEN), &offer)
        .await
        .unwrap();
    assert_eq!(conflict.status, 409, "{}", conflict.body);

    // The app dies without a DELETE; after the stale period a new session takes over.
    first.drop_silently().await;
    let started = Instant::now();
    let second = loop {
        match Publisher::start(&server.whip("vanish"), Some(TEST_TOKEN), Arc::clone(&media)).await {
            Ok(publisher) => break publisher,
            Err(err) if started.elapsed() < Duration::from_secs(10) => {
                assert!(err.to_string().contains("409"), "unexpected error: {err}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(err) => panic!("the stale publisher was never replaced: {err}"),
        }
    };
    let resumed_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    for viewer in &viewers {
        let stats = viewer.snapshot();
        assert!(stats.video.packets_since(resumed_at) > 50);
        assert!(stats.video.largest_gap <= 2);
    }
    for viewer in viewers {
        viewer.close().await;
    }
    second.delete(&server.base, Some(TEST_TOKEN)).await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_viewers_joining_within_a_second_cost_at_most_two_plis() {
    let server = TestServer::start().await.unwrap();
    let publisher = Publisher::start(&server.whip("fifty"), Some(TEST_TOKEN), clip())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let plis_before = publisher.pli_count().await;

    let joined_at = Instant::now();
    let viewers = start_viewers(&server, "fifty", 50).await;
    assert!(
        joined_at.elapsed() < Duration::from_secs(10),
        "joins took {:?}",
        joined_at.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;

    let plis = publisher.pli_count().await - plis_before;
    assert!(plis <= 2, "{plis} PLIs reached the publisher");
    let mut first_packet_delays = Vec::new();
    for viewer in &viewers {
        let stats = viewer.snapshot();
        assert_starts_on_keyframe(&stats);
        assert!(
            stats.video.packets > 30,
            "viewer got {} video packets",
            stats.video.packets
        );
        first_packet_delays.push(stats.video.first_at.unwrap() - viewer.started_at);
    }
    first_packet_delays.sort();
    println!(
        "time to first video packet: p50 {:?} max {:?}",
        first_packet_delays[25], first_packet_delays[49]
    );
    let stats = server.server.sfu.stats().snapshot();
    assert!(
        stats.keyframe_cache_hits >= 50,
        "joins served from the keyframe cache: {}",
        stats.keyframe_cache_hits
    );
    for viewer in viewers {
        viewer.close().await;
    }
    publisher
        .delete(&server.base, Some(TEST_TOKEN))
        .await
        .unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_ends_a_session_and_frees_everything() {
    let server = TestServer::start_with(|c| c.room_idle_timeout_secs = 0.5)
        .await
        .unwrap();
    let mut events = server.server.sfu.subscribe_events();
    let publisher = Publisher::start(&server.whip("free"), Some(TEST_TOKEN), clip())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut viewers = start_viewers(&server, "free", 3).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let snapshot = server.server.sfu.snapshot().await.unwrap();
    assert_eq!(snapshot.peers, 4);
    assert_eq!(snapshot.demux_ufrags, 4);

    let viewer = viewers.pop().unwrap();
    let location = viewer.location.clone();
    assert_eq!(viewer.delete(&server.base).await.unwrap(), 200);
    let snapshot = server.server.sfu.snapshot().await.unwrap();
    assert_eq!(snapshot.peers, 3);
    assert_eq!(snapshot.rooms[0].viewers, 2);
    // The session is gone: a second DELETE is a 404.
    let http = queqiao_tests::http::HttpClient::new();
    assert_eq!(
        http.delete(&server.url(&location), None).await.unwrap(),
        404
    );
    // The deleted viewer's close was reported.
    let closed = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            if let Ok(SfuEvent::PeerClosed {
                reason: CloseReason::Deleted,
                ..
            }) = events.recv().await
            {
                return true;
            }
        }
    })
    .await;
    assert_eq!(closed, Ok(true));

    for viewer in viewers {
        assert_eq!(viewer.delete(&server.base).await.unwrap(), 200);
    }
    // WHIP DELETE needs the publish token.
    let location = publisher.location.clone();
    assert_eq!(
        http.delete(&server.url(&location), None).await.unwrap(),
        401
    );
    assert_eq!(
        publisher
            .delete(&server.base, Some(TEST_TOKEN))
            .await
            .unwrap(),
        200
    );

    // Nothing left behind: no peers, no demux entries, and the idle room goes away.
    let sfu = server.server.sfu.clone();
    assert!(
        eventually(Duration::from_secs(3), async || {
            let s = sfu.snapshot().await.unwrap();
            s.peers == 0 && s.demux_ufrags == 0 && s.demux_addresses == 0 && s.rooms.is_empty()
        })
        .await,
        "leftovers: {:?}",
        sfu.snapshot().await.unwrap()
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_that_never_connect_or_go_silent_are_cleaned_up() {
    let server = TestServer::start_with(|c| {
        c.connect_timeout_secs = 1.0;
        c.silence_timeout_secs = 2.0;
    })
    .await
    .unwrap();
    let publisher = Publisher::start(&server.whip("cleanup"), Some(TEST_TOKEN), clip())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // An offer whose client never shows up on the media port.
    let offer = sdp_offer_from_browser_like_publisher()
        .await
        .replace("a=sendonly", "a=recvonly");
    let http = queqiao_tests::http::HttpClient::new();
    let answered = http
        .post_sdp(&server.whep("cleanup"), None, &offer)
        .await
        .unwrap();
    assert_eq!(answered.status, 201, "{}", answered.body);
    assert_eq!(server.server.sfu.snapshot().await.unwrap().peers, 2);

    // A viewer that connects and then vanishes (its process dies: no DTLS close, no DELETE).
    let url = server.whep("cleanup");
    let (connected_tx, connected_rx) = std::sync::mpsc::channel();
    let doomed = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let viewer = runtime
            .block_on(Viewer::start(&url, ViewerOptions::default()))
            .unwrap();
        connected_tx.send(()).unwrap();
        std::mem::forget(viewer);
        runtime.shutdown_background();
    });
    tokio::task::spawn_blocking(move || connected_rx.recv_timeout(Duration::from_secs(10)))
        .await
        .unwrap()
        .unwrap();
    doomed.join().unwrap();

    let sfu = server.server.sfu.clone();
    assert!(
        eventually(Duration::from_secs(6), async || sfu
            .snapshot()
            .await
            .unwrap()
            .peers
            == 1)
        .await,
        "peers left: {}",
        sfu.snapshot().await.unwrap().peers
    );
    let stats = sfu.stats().snapshot();
    assert_eq!(stats.peers_connect_timeout, 1);
    assert_eq!(stats.peers_silent, 1);
    publisher
        .delete(&server.base, Some(TEST_TOKEN))
        .await
        .unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_peer_gets_a_room_data_channel() {
    let server = TestServer::start().await.unwrap();
    let mut events = server.server.sfu.subscribe_events();
    let publisher = Publisher::start(&server.whip("chat"), Some(TEST_TOKEN), clip())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // One client opens "room" itself; another opens an unrelated channel and gets "room"
    // from the server.
    let own = Viewer::start(&server.whep("chat"), ViewerOptions::default())
        .await
        .unwrap();
    let given = Viewer::start(
        &server.whep("chat"),
        ViewerOptions {
            data_channel: Some("probe".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let ready = eventually(Duration::from_secs(5), async || {
        own.snapshot().room_channel_open && given.snapshot().room_channel_open
    })
    .await;
    assert!(
        ready,
        "room channels: own {:?} given {:?}",
        own.snapshot().room_channel_open,
        given.snapshot().server_channels
    );
    assert_eq!(given.snapshot().server_channels, vec!["room".to_owned()]);
    assert!(
        own.snapshot().server_channels.is_empty(),
        "no duplicate channel for a client that opened its own"
    );

    // Client → server.
    own.send_text(r#"{"type":"chat","text":"你好"}"#)
        .await
        .unwrap();
    let received = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            if let Ok(SfuEvent::DataMessage { text, .. }) = events.recv().await {
                return text.to_string();
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(received, r#"{"type":"chat","text":"你好"}"#);
    // Server → every member of the room.
    server
        .server
        .sfu
        .broadcast_data(sfu::RoomId::parse("chat").unwrap(), Arc::from("hello room"))
        .unwrap();
    assert!(
        eventually(Duration::from_secs(3), async || {
            own.snapshot().messages.contains(&"hello room".to_owned())
                && given.snapshot().messages.contains(&"hello room".to_owned())
        })
        .await
    );
    own.close().await;
    given.close().await;
    publisher
        .delete(&server.base, Some(TEST_TOKEN))
        .await
        .unwrap();
    server.stop().await;
}

/// A browser-like publisher offer (H.264 + Opus), made by a real engine, never connected.
pub async fn sdp_offer_from_browser_like_publisher() -> String {
    queqiao_tests::offers::publisher_offer()
        .await
        .expect("offer")
}

/// Issue 15: one room on two media shards. The viewers spread over both shards (placed
/// on the least-loaded one, whatever socket the kernel hashes their datagrams to); each
/// receives the stream from a keyframe on, keeps it across a publisher reconnect with
/// continuous numbering, and sixty concurrent joins cost the publisher at most two PLIs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_room_on_two_shards_reaches_every_viewer() {
    let server = TestServer::start_with(|c| c.media_threads = 2)
        .await
        .unwrap();
    assert_eq!(server.server.sfu.shards(), 2);
    let media = clip();
    let first = Publisher::start(
        &server.whip("sharded"),
        Some(TEST_TOKEN),
        Arc::clone(&media),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let plis_before = first.pli_count().await;
    let sent_before = server.server.sfu.stats().snapshot().plis_sent;
    let viewers = start_viewers(&server, "sharded", 60).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let plis = first.pli_count().await - plis_before;
    assert!(plis <= 2, "{plis} PLIs reached the publisher for 60 joins");
    // What the home shard's coalescer let out, whichever shard's viewers asked.
    let sent = server.server.sfu.stats().snapshot().plis_sent - sent_before;
    assert!(sent <= 2, "the SFU sent {sent} PLIs for 60 joins");

    // Spread over both shards, as the metrics show.
    let text = reqwest::get(server.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let per_shard: Vec<u64> = (0..2)
        .map(|shard| {
            let name = format!("queqiao_sfu_shard_viewers{{shard=\"{shard}\"}} ");
            text.lines()
                .find_map(|line| line.strip_prefix(name.as_str()))
                .and_then(|value| value.trim().parse().ok())
                .unwrap_or_else(|| panic!("no {name} in /metrics"))
        })
        .collect();
    assert_eq!(per_shard.iter().sum::<u64>(), 60, "{per_shard:?}");
    assert!(per_shard.iter().all(|&n| n > 0), "{per_shard:?}");

    // A steady window: what the publisher sent against what each viewer received.
    let window_start = Instant::now();
    let sent_before = first.packets_sent().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let sent = first.packets_sent().await - sent_before;
    let window_end = Instant::now();
    for (i, viewer) in viewers.iter().enumerate() {
        let stats = viewer.snapshot();
        assert_starts_on_keyframe(&stats);
        assert_received_the_window(i, &stats, (window_start, window_end), sent);
    }
    let stats = server.server.sfu.stats().snapshot();
    assert!(stats.relay_packets > 0, "the home shard relayed nothing");
    assert_eq!(stats.relay_dropped, 0, "a shard queue overflowed");
    let snapshot = server.server.sfu.snapshot().await.unwrap();
    let room = snapshot.rooms.iter().find(|r| r.id == "sharded").unwrap();
    assert_eq!((room.viewers, room.live), (60, true), "merged over shards");
    assert_eq!(snapshot.rooms.len(), 1, "a mirror is not a room of its own");

    // The host reconnects: every viewer on either shard keeps receiving, numbering
    // continuous.
    first.delete(&server.base, Some(TEST_TOKEN)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second = Publisher::start(&server.whip("sharded"), Some(TEST_TOKEN), media)
        .await
        .unwrap();
    let resumed_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (i, viewer) in viewers.iter().enumerate() {
        let stats = viewer.snapshot();
        assert!(
            stats.video.packets_since(resumed_at) > 100,
            "viewer {i}: {} video packets after the reconnect",
            stats.video.packets_since(resumed_at)
        );
        assert_eq!(stats.video.ssrcs.len(), 1, "viewer {i}: the SSRC changed");
        let holes = |t: &queqiao_tests::whep::TrackStats| {
            let (Some(first), Some(last)) = (t.sequence_numbers.first(), t.sequence_numbers.last())
            else {
                return 0;
            };
            (last - first + 1) as usize - t.sequence_numbers.len()
        };
        assert!(
            stats.video.largest_gap <= 2 && stats.audio.largest_gap <= 2,
            "viewer {i}: sequence jumped by {} / {} ({:?} / {:?} after it joined, reconnect at {:?}); {} / {} never arrived",
            stats.video.largest_gap,
            stats.audio.largest_gap,
            stats.video.largest_gap_at.map(|at| at - viewer.started_at),
            stats.audio.largest_gap_at.map(|at| at - viewer.started_at),
            resumed_at - viewer.started_at,
            holes(&stats.video),
            holes(&stats.audio),
        );
    }
    let snapshot = server.server.sfu.snapshot().await.unwrap();
    assert_eq!(snapshot.rooms[0].viewers, 60, "no viewer was dropped");
    assert_eq!(snapshot.rooms[0].epoch, 2);
    for viewer in viewers {
        viewer.close().await;
    }
    second.delete(&server.base, Some(TEST_TOKEN)).await.unwrap();
    server.stop().await;
}
