//! Bridge benchmark (not part of the normal test run):
//!
//! ```text
//! cargo test --release -p queqiao-tests --test bridge_bench -- --ignored --nocapture
//! ```
//!
//! One real WHIP publisher streams the committed 1280x720 30 fps clip (H.264 + Opus) into
//! an in-process server; 10 HTTP-FLV viewers, 5 LL-HLS clients doing blocking playlist
//! reloads and fetching every part, and one HLS poller read the outputs for the steady
//! window. Reported (from the bridge's own histograms and counters):
//! - FLV delay: last packet of a frame received by the SFU → FLV tag queued to viewers;
//! - LL-HLS part delay: first frame of a part received → part servable, minus the part's
//!   own duration (the target is ≤ part duration + 50 ms);
//! - blocking reload: part ready → response leaving the handler;
//! - bridge CPU of the room task (depacketize, Opus decode + AAC encode, FLV/TS/fMP4 mux,
//!   fan-out), as thread CPU time over the window.
//!
//! Environment: `BRIDGE_BENCH_SECS` (default 20), `BRIDGE_BENCH_CLIP` (`720p`/`360p`).

use futures::future::join_all;
use queqiao_tests::bridge::{read_flv, wait_for};
use queqiao_tests::clip::{Clip, media_dir};
use queqiao_tests::server::{TEST_TOKEN, TestServer};
use queqiao_tests::whip::Publisher;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// Follows the LL-HLS playlist with blocking reloads and fetches each new part, like
/// hls.js at the live edge. Returns the number of parts fetched.
async fn llhls_follower(url: String, stop: Arc<AtomicBool>, reload_ms: Arc<AtomicU64>) -> u64 {
    let http = client();
    let mut parts = 0;
    let mut next: Option<(u64, u64)> = None;
    while !stop.load(Ordering::Relaxed) {
        let request = match next {
            Some((msn, part)) => format!("{url}?_HLS_msn={msn}&_HLS_part={part}"),
            None => url.clone(),
        };
        let started = Instant::now();
        let Ok(response) = http.get(&request).send().await else {
            continue;
        };
        if !response.status().is_success() {
            tokio::time::sleep(Duration::from_millis(100)).await;
            next = None;
            continue;
        }
        let text = response.text().await.unwrap_or_default();
        reload_ms.fetch_add(started.elapsed().as_millis() as u64, Ordering::Relaxed);
        let Some(hint) = text
            .lines()
            .find_map(|l| l.strip_prefix("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part"))
            .and_then(|l| l.strip_suffix(".mp4\""))
        else {
            break;
        };
        let Some((msn, part)) = hint.split_once('.') else {
            break;
        };
        let (msn, part): (u64, u64) = (msn.parse().unwrap(), part.parse().unwrap());
        // The last complete part is listed just before the hint.
        if let Some(last) = text
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("#EXT-X-PART:"))
            .and_then(|l| l.split("URI=\"").nth(1))
            .and_then(|l| l.split('"').next())
        {
            let part_url = url.replace("index.m3u8", last);
            if http.get(&part_url).send().await.is_ok() {
                parts += 1;
            }
        }
        next = Some((msn, part));
    }
    parts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with --ignored --nocapture (release build)"]
async fn bridge_latency_and_cpu() {
    let secs: u64 = std::env::var("BRIDGE_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let which = std::env::var("BRIDGE_BENCH_CLIP").unwrap_or_else(|_| "720p".into());
    let dir = media_dir();
    let clip = Arc::new(
        Clip::load(
            &dir.join(format!("clip-{which}.h264")),
            &dir.join("clip.ogg"),
            30,
        )
        .unwrap(),
    );
    let server = TestServer::start().await.unwrap();
    let room = "bench";
    let publisher = Publisher::start(&server.whip(room), Some(TEST_TOKEN), clip)
        .await
        .unwrap();
    wait_for(Duration::from_secs(20), async || {
        server
            .server
            .bridge
            .room_status(&sfu::RoomId::parse(room).unwrap())
            .filter(|s| s.live && s.width > 0)
    })
    .await
    .expect("bridged");
    // Warm-up: let the first segments exist.
    tokio::time::sleep(Duration::from_secs(4)).await;

    let stats = server.server.bridge.stats();
    let cpu_before = stats.room_cpu_micros.load(Ordering::Relaxed);
    let video_before = stats.video_units.load(Ordering::Relaxed);
    let audio_before = stats.audio_units.load(Ordering::Relaxed);
    let window = Instant::now();

    let stop = Arc::new(AtomicBool::new(false));
    let reload_ms = Arc::new(AtomicU64::new(0));
    let base = server.base.clone();
    let llhls: Vec<_> = (0..5)
        .map(|_| {
            tokio::spawn(llhls_follower(
                format!("{base}/llhls/{room}/index.m3u8"),
                Arc::clone(&stop),
                Arc::clone(&reload_ms),
            ))
        })
        .collect();
    let hls_stop = Arc::clone(&stop);
    let hls_url = format!("{base}/hls/{room}/index.m3u8");
    let hls = tokio::spawn(async move {
        let http = client();
        let mut polls = 0u64;
        while !hls_stop.load(Ordering::Relaxed) {
            if http.get(&hls_url).send().await.is_ok() {
                polls += 1;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        polls
    });
    let flv_url = format!("{base}/live/{room}.flv");
    let viewers = join_all((0..10).map(|_| read_flv(&flv_url, Duration::from_secs(secs)))).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = window.elapsed();
    let cpu = stats.room_cpu_micros.load(Ordering::Relaxed) - cpu_before;
    let video = stats.video_units.load(Ordering::Relaxed) - video_before;
    let audio = stats.audio_units.load(Ordering::Relaxed) - audio_before;
    let mut parts = 0;
    for task in llhls {
        parts += task.await.unwrap();
    }
    let _ = hls.await;
    let flv_tags: usize = viewers
        .iter()
        .map(|v| v.as_ref().map_or(0, |(tags, _)| tags.len()))
        .sum();

    let q = |h: &bridge::service::Histogram, p: f64| {
        h.quantile_ms(p)
            .map_or("-".to_owned(), |v| format!("≤{v} ms"))
    };
    let cpu_share = cpu as f64 / 1e6 / elapsed.as_secs_f64() * 100.0;
    println!("\n## bridge benchmark: {which} 30 fps, {secs} s window");
    println!(
        "room task CPU: {:.2} ms/s = {cpu_share:.2}% of one core ({video} video units, {audio} AAC frames)",
        cpu as f64 / 1e3 / elapsed.as_secs_f64()
    );
    println!("| metric | p50 | p95 | p99 | count |");
    println!("| --- | --- | --- | --- | --- |");
    for (name, h) in [
        ("FLV delay (frame received → tag queued)", &stats.flv_delay),
        (
            "LL-HLS part delay (first frame received → part servable)",
            &stats.llhls_part_delay,
        ),
        (
            "LL-HLS part delay minus part duration",
            &stats.llhls_part_overhead,
        ),
        (
            "blocking reload: part ready → response",
            &stats.llhls_reload_answer,
        ),
    ] {
        println!(
            "| {name} | {} | {} | {} | {} |",
            q(h, 0.5),
            q(h, 0.95),
            q(h, 0.99),
            h.count()
        );
    }
    println!(
        "clients: 10 FLV viewers ({flv_tags} tags), 5 LL-HLS followers ({parts} parts), mean blocking reload wall time {} ms",
        reload_ms.load(Ordering::Relaxed) / parts.max(1)
    );
    assert!(video > 0 && audio > 0 && flv_tags > 0 && parts > 0);
    publisher
        .delete(&server.base, Some(TEST_TOKEN))
        .await
        .unwrap();
    server.stop().await;
}
