//! `--viewer-engine async`: the same viewers built on the async `webrtc` crate (the test
//! kit's [`crate::whep::Viewer`]: one socket, a driver task and locks per peer), kept to
//! measure what the sans-IO workers save. It reports delivery and the load generator's own
//! CPU per received packet; forwarding delay and time to first frame need the sans-IO
//! workers and are left empty.

use crate::load::measure::{cpu_us_per_packet, loss_ratio};
use crate::load::media::PacketizedClip;
use crate::load::probe::{self, ServerProbe, ServerSample};
use crate::load::publisher::PublisherStats;
use crate::load::report::{
    GeneratorReport, LatencyMs, PublisherReport, ServerReport, StreamInfo, WebrtcReport,
};
use crate::load::webrtc::WebrtcArgs;
use crate::whep::{Viewer, ViewerOptions};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Packets and distinct sequence numbers received by all viewers so far.
fn received(viewers: &[Viewer]) -> (u64, u64, u64) {
    let mut packets = 0;
    let mut unique = 0;
    let mut expected = 0;
    for viewer in viewers {
        let stats = viewer.snapshot();
        for track in [&stats.audio, &stats.video] {
            packets += track.packets;
            unique += track.sequence_numbers.len() as u64;
            if let (Some(first), Some(last)) = (
                track.sequence_numbers.first(),
                track.sequence_numbers.last(),
            ) {
                expected += last - first + 1;
            }
        }
    }
    (packets, unique, expected)
}

/// What the orchestrator hands over once the publisher is live.
pub struct Context<'a> {
    /// Command-line options.
    pub args: &'a WebrtcArgs,
    /// Report label.
    pub label: String,
    /// Resolved WHIP URL.
    pub whip: &'a str,
    /// Resolved WHEP URL.
    pub whep: &'a str,
    /// The published clip.
    pub clip: &'a PacketizedClip,
    /// Server sampler.
    pub probe: &'a ServerProbe,
    /// Server sample before any viewer.
    pub baseline: &'a ServerSample,
    /// Publisher counters.
    pub publisher: &'a PublisherStats,
}

/// Joins the viewers, measures the window, closes the viewers.
pub async fn run(context: Context<'_>) -> anyhow::Result<WebrtcReport> {
    let args = context.args;
    let join_start = Instant::now();
    let semaphore = Arc::new(Semaphore::new(args.join_concurrency.max(1)));
    let mut joins = Vec::with_capacity(args.viewers);
    for index in 0..args.viewers {
        if args.ramp_per_sec > 0.0 {
            let at = join_start + Duration::from_secs_f64(index as f64 / args.ramp_per_sec);
            tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
        }
        let permit = Arc::clone(&semaphore).acquire_owned().await?;
        let whep = context.whep.to_owned();
        let data_channel = (!args.no_data_channel).then(|| "room".to_owned());
        joins.push(tokio::spawn(async move {
            let viewer = Viewer::start(
                &whep,
                ViewerOptions {
                    data_channel,
                    ..ViewerOptions::default()
                },
            )
            .await;
            drop(permit);
            viewer
        }));
    }
    let mut viewers = Vec::new();
    for join in joins {
        match join.await {
            Ok(Ok(viewer)) => viewers.push(viewer),
            Ok(Err(err)) => tracing::warn!("async viewer could not join: {err:#}"),
            Err(err) => tracing::warn!("async viewer task failed: {err}"),
        }
    }
    let join_seconds = join_start.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs_f64(args.warmup.max(0.0))).await;
    let window_start = context.probe.sample().await;
    let self_start = probe::process_sample("self").0;
    let rx_start = received(&viewers);
    let published_start = context.publisher.rtp_sent.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs_f64(args.duration.max(0.1))).await;
    let rx_end = received(&viewers);
    let self_end = probe::process_sample("self").0;
    let window_end = context.probe.sample().await;
    let published = context.publisher.rtp_sent.load(Ordering::Relaxed) - published_start;
    let seconds = window_end.at.duration_since(window_start.at).as_secs_f64();
    let ticks = probe::ticks_per_second();
    let packets = rx_end.0 - rx_start.0;
    let forwarded = window_start
        .counter_delta(&window_end, "rtp_forwarded")
        .filter(|f| *f > 0.0)
        .unwrap_or(packets as f64);
    let server_ticks = window_start.cpu_delta(&window_end);
    let generator_ticks = match (self_start, self_end) {
        (Some(a), Some(b)) => Some(b.total().saturating_sub(a.total())),
        _ => None,
    };
    let connected = viewers.len();
    let report = WebrtcReport {
        label: context.label,
        finished_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        whip: context.whip.to_owned(),
        whep: context.whep.to_owned(),
        stream: StreamInfo {
            clip: context.clip.name.clone(),
            video_kbps: context.clip.video_bitrate / 1000.0,
            packets_per_second: context.clip.packets_per_second(),
            pacing_factor: args.pacing,
        },
        viewers: args.viewers,
        viewers_connected: connected,
        viewers_failed: args.viewers - connected,
        ramp_per_sec: args.ramp_per_sec,
        join_seconds,
        window_seconds: seconds,
        forwarded_per_second: forwarded / seconds,
        forwarded_source: "async viewers".into(),
        received_per_second: packets as f64 / seconds,
        received_mbps: 0.0,
        loss: loss_ratio(rx_end.2 - rx_start.2, rx_end.1 - rx_start.1),
        loss_expected: rx_end.2 - rx_start.2,
        loss_received: rx_end.1 - rx_start.1,
        duplicates: 0,
        viewer_feedback: Default::default(),
        delivery_ratio: (published > 0 && connected > 0)
            .then(|| (rx_end.1 - rx_start.1) as f64 / (published as f64 * connected as f64)),
        delay_ms: LatencyMs::default(),
        delay_unmatched: 0,
        ttff_ms: LatencyMs::default(),
        connect_ms: LatencyMs::default(),
        ttff_missing: 0,
        server: ServerReport {
            pid: args.server_pid,
            cpu_us_per_packet: server_ticks
                .and_then(|t| cpu_us_per_packet(t, ticks, forwarded as u64)),
            cpu_percent: server_ticks.map(|t| t as f64 / ticks as f64 / seconds * 100.0),
            cpu_system_share: None,
            rss_before_kib: context.baseline.rss_kib,
            rss_after_kib: window_end.rss_kib,
            rss_per_viewer_kib: None,
            window_counters: Default::default(),
            run_counters: Default::default(),
        },
        publisher: PublisherReport {
            rtp_per_second: published as f64 / seconds,
            ..Default::default()
        },
        generator: GeneratorReport {
            cpu_percent: generator_ticks.map(|t| t as f64 / ticks as f64 / seconds * 100.0),
            cpu_us_per_packet: generator_ticks.and_then(|t| cpu_us_per_packet(t, ticks, packets)),
            rss_kib: self_end.and(probe::process_sample("self").1),
            workers: 0,
            sockets: "async webrtc crate: one socket and driver task per viewer".into(),
        },
    };
    let base = crate::load::webrtc::origin(context.whep).unwrap_or_default();
    for viewer in viewers {
        let _ = viewer.delete(&base).await;
    }
    Ok(report)
}
