//! `queqiao-load webrtc`: one WHIP publisher, N WHEP viewers, measured.
//!
//! Phases: publish and connect → (sample server RSS) → viewers join, all at once or at
//! `--ramp-per-sec` → warm-up → steady window (CPU, loss, delay measured here) → report →
//! DELETE every session. A progress line goes to stderr every second throughout.

use crate::http::HttpClient;
use crate::load::measure::cpu_us_per_packet;
use crate::load::media::{ClipChoice, PacketizedClip};
use crate::load::net;
use crate::load::peer;
use crate::load::probe::{self, ServerProbe, ServerSample};
use crate::load::publisher::{PublisherOptions, WhipTarget, start_whip_publisher};
use crate::load::report::{
    GeneratorReport, LatencyMs, PublisherReport, ReportArgs, ServerReport, StreamInfo,
    ViewerFeedbackReport, WebrtcReport,
};
use crate::load::viewers::{IntervalReport, Join, JoinTimes, WorkerHandle, WorkerOptions};
use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use rtc::peer_connection::certificate::RTCCertificate;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// How viewers map to sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SocketMode {
    /// `shared` for a loopback server, else `per-viewer`.
    Auto,
    /// One socket per worker; each viewer has its own 127.x.y.z address (loopback only).
    Shared,
    /// One socket per viewer (works against any server).
    PerViewer,
}

/// What the viewers are built on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ViewerEngine {
    /// Sans-IO `rtc` peers driven by our own worker loop (the default).
    Sansio,
    /// The async `webrtc` crate, one socket and driver task per viewer: for comparing the
    /// load generator's own cost (delay and time to first frame are not measured).
    Async,
}

/// Options of `queqiao-load webrtc`.
#[derive(Debug, Clone, Args)]
pub struct WebrtcArgs {
    /// WHIP endpoint; `{room}` is replaced by the room name.
    #[arg(long, default_value = "http://127.0.0.1:8080/whip/{room}")]
    pub whip: String,
    /// WHEP endpoint; `{room}` is replaced [default: the WHIP URL with /whip/ → /whep/].
    #[arg(long)]
    pub whep: Option<String>,
    /// Room name [default: `load-` and 8 random hex digits].
    #[arg(long)]
    pub room: Option<String>,
    /// Bearer token for WHIP.
    #[arg(long, env = "QUEQIAO_LOAD_TOKEN")]
    pub token: Option<String>,
    /// Bearer token for WHEP, if the server wants one.
    #[arg(long)]
    pub whep_token: Option<String>,
    /// WHEP viewers.
    #[arg(long, default_value_t = 50)]
    pub viewers: usize,
    /// Viewers joining per second (0: all at once).
    #[arg(long, default_value_t = 0.0)]
    pub ramp_per_sec: f64,
    /// WHEP POSTs in flight at once.
    #[arg(long, default_value_t = 64)]
    pub join_concurrency: usize,
    /// Seconds between the last viewer connecting and the measurement window.
    #[arg(long, default_value_t = 3.0)]
    pub warmup: f64,
    /// Seconds of the steady measurement window.
    #[arg(long, default_value_t = 20.0)]
    pub duration: f64,
    /// Committed clip to publish: `720p` (~1.5 Mbit/s, 2 s GOP) or `360p`.
    #[arg(long, default_value = "720p")]
    pub clip: String,
    /// Publish this Annex B H.264 file instead (with --ogg and --fps).
    #[arg(long, requires = "ogg")]
    pub h264: Option<PathBuf>,
    /// Ogg Opus file (20 ms packets) to go with --h264.
    #[arg(long, requires = "h264")]
    pub ogg: Option<PathBuf>,
    /// Frame rate of --h264.
    #[arg(long, default_value_t = 30)]
    pub fps: u32,
    /// Pacing rate as a multiple of the video bitrate (libwebrtc: 2.5); 0 sends frames in bursts.
    #[arg(long, default_value_t = 2.5)]
    pub pacing: f64,
    /// PID of the server, for CPU and RSS from /proc.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Prometheus metrics URL [default: /metrics on the WHIP host; `none` to skip].
    #[arg(long)]
    pub metrics: Option<String>,
    /// Viewer worker threads.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// What the viewers are built on.
    #[arg(long, value_enum, default_value_t = ViewerEngine::Sansio)]
    pub viewer_engine: ViewerEngine,
    /// Socket layout of the viewers.
    #[arg(long, value_enum, default_value_t = SocketMode::Auto)]
    pub sockets: SocketMode,
    /// Do not open the `room` data channel.
    #[arg(long)]
    pub no_data_channel: bool,
    /// Drop DTLS datagrams that arrive before ICE completes, as webrtc-rs clients do
    /// (browsers keep an early ClientHello until DTLS starts; so do we by default).
    #[arg(long)]
    pub drop_early_dtls: bool,
    /// Socket buffer size in bytes (receive; send gets a quarter).
    #[arg(long, default_value_t = 32 << 20)]
    pub socket_buffer: usize,
    /// Who sends the viewers' RTCP: `browser` (Chromium-like RR, NACK, TWCC, PLI, counted
    /// in the report) or `engine` (the rtc crate's NACK generator and receiver reports).
    #[arg(long, value_enum, default_value_t = peer::FeedbackMode::Browser)]
    pub viewer_feedback: peer::FeedbackMode,
    /// The publisher ignores PLI/FIR and keeps its fixed GOP (for comparison with an
    /// encoder that answers them, the default).
    #[arg(long)]
    pub ignore_pli: bool,
    /// Where the report goes.
    #[command(flatten)]
    pub output: ReportArgs,
}

/// Runs the scenario and returns the report.
pub async fn run(args: WebrtcArgs) -> anyhow::Result<WebrtcReport> {
    if args.viewers == 0 {
        bail!("--viewers must be at least 1");
    }
    if args.workers == 0 {
        bail!("--workers must be at least 1");
    }
    let room = args
        .room
        .clone()
        .unwrap_or_else(|| format!("load-{:08x}", rand::random::<u32>()));
    let whip = args.whip.replace("{room}", &room);
    let whep = args
        .whep
        .clone()
        .unwrap_or_else(|| args.whip.replace("/whip/", "/whep/"))
        .replace("{room}", &room);
    let server_ip = resolve_host(&whep).await?;
    let loopback = server_ip.is_loopback();
    let shared = match args.sockets {
        SocketMode::Auto => loopback,
        SocketMode::Shared if !loopback || !server_ip.is_ipv4() => {
            bail!("--sockets shared needs an IPv4 loopback server")
        }
        SocketMode::Shared => true,
        SocketMode::PerViewer => false,
    };
    let local_ip = if loopback {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        local_ip_towards(server_ip)?
    };
    let metrics_url = match args.metrics.as_deref() {
        Some("none") => None,
        Some(url) => Some(url.to_owned()),
        None => origin(&whip).map(|o| format!("{o}/metrics")),
    };
    let choice = match (&args.h264, &args.ogg) {
        (Some(h264), Some(ogg)) => ClipChoice::Files {
            h264: h264.clone(),
            ogg: ogg.clone(),
            fps: args.fps,
        },
        _ => ClipChoice::Builtin(args.clip.clone()),
    };
    let clip = Arc::new(PacketizedClip::load(&choice)?);
    let send_times = Arc::new(clip.send_times());
    let certificate = peer::certificate()?;
    let probe = ServerProbe::new(args.server_pid, metrics_url);
    let http = HttpClient::new();
    let label = args
        .output
        .label
        .clone()
        .unwrap_or_else(|| format!("{} viewers", args.viewers));
    eprintln!(
        "queqiao-load webrtc: {label}: clip {} ({:.0} kbit/s, {:.0} pkt/s), {} viewers{}, WHIP {whip}, WHEP {whep}, sockets {}",
        clip.name,
        clip.video_bitrate / 1000.0,
        clip.packets_per_second(),
        args.viewers,
        if args.ramp_per_sec > 0.0 {
            format!(" at {}/s", args.ramp_per_sec)
        } else {
            " at once".to_owned()
        },
        if shared { "shared" } else { "per-viewer" }
    );

    // Publisher.
    let (publisher, publisher_location) = start_whip_publisher(
        &http,
        WhipTarget {
            url: &whip,
            token: args.token.as_deref(),
            local_ip,
            socket_buffer: args.socket_buffer,
        },
        &certificate,
        Arc::clone(&clip),
        Arc::clone(&send_times),
        PublisherOptions {
            pacing_factor: args.pacing,
            connect_timeout: Duration::from_secs(10),
            keep_early_dtls: !args.drop_early_dtls,
            ignore_pli: args.ignore_pli,
        },
    )
    .await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !publisher.stats.connected.load(Ordering::Acquire) {
        if publisher.stats.finished.load(Ordering::Acquire) || Instant::now() > deadline {
            let result = publisher.stop();
            bail!("the publisher did not connect: {result:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Let the room go live and the server settle before measuring its baseline.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let baseline = probe.sample().await;
    if args.viewer_engine == ViewerEngine::Async {
        let report = crate::load::async_viewers::run(crate::load::async_viewers::Context {
            args: &args,
            label,
            whip: &whip,
            whep: &whep,
            clip: &clip,
            probe: &probe,
            baseline: &baseline,
            publisher: &publisher.stats,
        })
        .await;
        if let Some(location) = publisher_location {
            let _ = http
                .delete(
                    &resolve_location(&origin(&whip).unwrap_or_default(), &location),
                    args.token.as_deref(),
                )
                .await;
        }
        if let Err(err) = publisher.stop() {
            tracing::warn!("publisher: {err:#}");
        }
        return report;
    }

    // Viewers.
    let shared_bind = shared.then(|| SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0));
    let mut workers = Vec::with_capacity(args.workers);
    for i in 0..args.workers {
        workers.push(WorkerHandle::spawn(
            format!("load-viewers-{i}"),
            WorkerOptions {
                clip: Arc::clone(&clip),
                send_times: Arc::clone(&send_times),
                buffer_bytes: args.socket_buffer,
                shared_bind,
                keep_early_dtls: !args.drop_early_dtls,
            },
        )?);
    }
    let workers = Arc::new(workers);
    let locations = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let join_failures = Arc::new(AtomicUsize::new(0));
    let stop_progress = Arc::new(AtomicBool::new(false));
    let phase = Arc::new(std::sync::Mutex::new("join".to_owned()));
    let progress = (!args.output.quiet).then(|| {
        tokio::spawn(progress_loop(
            Arc::clone(&workers),
            probe.clone(),
            Arc::clone(&publisher.stats),
            Arc::clone(&join_failures),
            Arc::clone(&stop_progress),
            Arc::clone(&phase),
            args.viewers,
        ))
    });

    let plis_before_join = publisher.stats.plis.load(Ordering::Relaxed);
    let firs_before_join = publisher.stats.firs.load(Ordering::Relaxed);
    let join_start = Instant::now();
    let first_join_sample = probe.sample().await;
    let semaphore = Arc::new(Semaphore::new(args.join_concurrency.max(1)));
    let mut joins = Vec::with_capacity(args.viewers);
    for index in 0..args.viewers {
        if args.ramp_per_sec > 0.0 {
            let at = join_start + Duration::from_secs_f64(index as f64 / args.ramp_per_sec);
            tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
        }
        let permit = Arc::clone(&semaphore).acquire_owned().await?;
        let worker_index = index % args.workers;
        let context = JoinContext {
            whep: whep.clone(),
            token: args.whep_token.clone(),
            http: http.clone(),
            certificate: certificate.clone(),
            data_channel: !args.no_data_channel,
            local_ip,
            shared_port: workers[worker_index].shared_port,
            buffer_bytes: args.socket_buffer,
            feedback: args.viewer_feedback,
        };
        let (workers, locations, failures) = (
            Arc::clone(&workers),
            Arc::clone(&locations),
            Arc::clone(&join_failures),
        );
        joins.push(tokio::spawn(async move {
            let result = join_one(index, &context, &workers[worker_index]).await;
            drop(permit);
            match result {
                Ok(location) => {
                    if let Some(location) = location {
                        lock(&locations).push(location);
                    }
                }
                Err(err) => {
                    failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(index, "viewer could not join: {err:#}");
                }
            }
        }));
    }
    for join in joins {
        let _ = join.await;
    }
    // Wait until every viewer that joined has connected or failed (30 s at most).
    let wait_deadline = Instant::now() + Duration::from_secs(30);
    let failures_posting = join_failures.load(Ordering::Relaxed);
    loop {
        let times = all_joins(&workers).await?;
        let settled = times
            .iter()
            .filter(|t| t.connected_ns.is_some() || t.failed)
            .count();
        if settled + failures_posting >= args.viewers || Instant::now() > wait_deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let join_seconds = join_start.elapsed().as_secs_f64();
    *lock(&phase) = "warmup".into();
    tokio::time::sleep(Duration::from_secs_f64(args.warmup.max(0.0))).await;

    // Steady window.
    *lock(&phase) = "window".into();
    for worker in workers.iter() {
        worker.start_window().await?;
    }
    let window_start = probe.sample().await;
    let self_start = probe::process_sample("self");
    let publisher_rtp_start = publisher.stats.rtp_sent.load(Ordering::Relaxed);
    let nacks_start = publisher.stats.nacks.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs_f64(args.duration.max(0.1))).await;
    let mut windows = Vec::new();
    for worker in workers.iter() {
        windows.push(worker.end_window().await?);
    }
    let window_end = probe.sample().await;
    let self_end = probe::process_sample("self");
    let publisher_rtp_end = publisher.stats.rtp_sent.load(Ordering::Relaxed);
    let window_seconds = window_end.at.duration_since(window_start.at).as_secs_f64();
    let times = all_joins(&workers).await?;
    stop_progress.store(true, Ordering::Release);
    if let Some(progress) = progress {
        let _ = progress.await;
    }

    // Report.
    let ticks = probe::ticks_per_second();
    let mut window = crate::load::viewers::WindowReport::default();
    for w in &windows {
        window.rtp_packets += w.rtp_packets;
        window.rtp_bytes += w.rtp_bytes;
        window.seq.unique += w.seq.unique;
        window.seq.expected += w.seq.expected;
        window.duplicates += w.duplicates;
        window.delay.merge(&w.delay);
        window.unmatched += w.unmatched;
        window.connected += w.connected;
    }
    let forwarded_server = window_start.counter_delta(&window_end, "rtp_forwarded");
    let (forwarded, forwarded_source) = match forwarded_server {
        Some(f) if f > 0.0 => (f, "server-metrics"),
        _ => (window.rtp_packets as f64, "viewers"),
    };
    let server_ticks = window_start.cpu_delta(&window_end);
    let server = ServerReport {
        pid: args.server_pid,
        cpu_us_per_packet: server_ticks.and_then(|t| cpu_us_per_packet(t, ticks, forwarded as u64)),
        cpu_percent: server_ticks.map(|t| t as f64 / ticks as f64 / window_seconds * 100.0),
        cpu_system_share: match (server_ticks, window_start.system_delta(&window_end)) {
            (Some(total), Some(system)) if total > 0 => Some(system as f64 / total as f64),
            _ => None,
        },
        rss_before_kib: baseline.rss_kib,
        rss_after_kib: window_end.rss_kib,
        rss_per_viewer_kib: match (baseline.rss_kib, window_end.rss_kib) {
            (Some(before), Some(after)) if window.connected > 0 => {
                Some(after.saturating_sub(before) as f64 / window.connected as f64)
            }
            _ => None,
        },
        window_counters: counter_deltas(&window_start, &window_end),
        run_counters: counter_deltas(&first_join_sample, &window_end),
    };
    let generator_ticks = match (self_start.0, self_end.0) {
        (Some(a), Some(b)) => Some(b.total().saturating_sub(a.total())),
        _ => None,
    };
    let ttff: Vec<u64> = times
        .iter()
        .filter_map(|t| Some(t.first_frame_ns?.saturating_sub(t.post_ns)))
        .collect();
    let connect: Vec<u64> = times
        .iter()
        .filter_map(|t| Some(t.connected_ns?.saturating_sub(t.post_ns)))
        .collect();
    let connected_ever = times.iter().filter(|t| t.connected_ns.is_some()).count();
    let mut feedback_totals = crate::load::feedback::FeedbackCounts::default();
    for t in &times {
        feedback_totals.add(&t.feedback);
    }
    let per_viewer = |n: u64| {
        (connected_ever > 0 && args.viewer_feedback == peer::FeedbackMode::Browser)
            .then(|| n as f64 / connected_ever as f64)
    };
    let published = publisher_rtp_end.saturating_sub(publisher_rtp_start);
    let report = WebrtcReport {
        label,
        finished_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        whip: whip.clone(),
        whep: whep.clone(),
        stream: StreamInfo {
            clip: clip.name.clone(),
            video_kbps: clip.video_bitrate / 1000.0,
            packets_per_second: clip.packets_per_second(),
            pacing_factor: args.pacing,
        },
        viewers: args.viewers,
        viewers_connected: window.connected,
        viewers_failed: args.viewers - connected_ever.min(args.viewers),
        ramp_per_sec: args.ramp_per_sec,
        join_seconds,
        window_seconds,
        forwarded_per_second: forwarded / window_seconds,
        forwarded_source: forwarded_source.to_owned(),
        received_per_second: window.rtp_packets as f64 / window_seconds,
        received_mbps: window.rtp_bytes as f64 * 8.0 / window_seconds / 1e6,
        loss: crate::load::measure::loss_ratio(window.seq.expected, window.seq.unique),
        loss_expected: window.seq.expected,
        loss_received: window.seq.unique,
        duplicates: window.duplicates,
        delivery_ratio: (published > 0 && window.connected > 0)
            .then(|| window.seq.unique as f64 / (published as f64 * window.connected as f64)),
        delay_ms: LatencyMs::from_histogram(&window.delay),
        delay_unmatched: window.unmatched,
        ttff_ms: LatencyMs::from_samples(ttff.clone()),
        connect_ms: LatencyMs::from_samples(connect),
        ttff_missing: connected_ever.saturating_sub(ttff.len()),
        server,
        publisher: PublisherReport {
            plis: publisher.stats.plis.load(Ordering::Relaxed) - plis_before_join,
            firs: publisher.stats.firs.load(Ordering::Relaxed) - firs_before_join,
            plis_total: publisher.stats.plis.load(Ordering::Relaxed),
            nacks_window: publisher.stats.nacks.load(Ordering::Relaxed) - nacks_start,
            rtp_per_second: published as f64 / window_seconds,
            keyframes_forced: publisher.stats.keyframes_forced.load(Ordering::Relaxed),
            ignores_pli: args.ignore_pli,
            keyframe_requests_rate_limited: publisher
                .stats
                .keyframe_requests_rate_limited
                .load(Ordering::Relaxed),
        },
        viewer_feedback: ViewerFeedbackReport {
            mode: format!("{:?}", args.viewer_feedback).to_lowercase(),
            nacks_per_viewer: per_viewer(feedback_totals.nacked_sequence_numbers),
            nacks_at_join_per_viewer: per_viewer(feedback_totals.nacked_at_join),
            plis_per_viewer: per_viewer(feedback_totals.plis),
            totals: feedback_totals,
        },
        generator: GeneratorReport {
            cpu_percent: generator_ticks.map(|t| t as f64 / ticks as f64 / window_seconds * 100.0),
            cpu_us_per_packet: generator_ticks
                .and_then(|t| cpu_us_per_packet(t, ticks, window.rtp_packets)),
            rss_kib: self_end.1,
            workers: args.workers,
            sockets: if shared { "shared" } else { "per-viewer" }.into(),
        },
    };

    // Teardown: DELETE every session, then close the peers.
    let all_locations = std::mem::take(&mut *lock(&locations));
    let base = origin(&whep).unwrap_or_default();
    let semaphore = Arc::new(Semaphore::new(64));
    let mut deletes = Vec::new();
    for location in all_locations {
        let (http, base, token) = (http.clone(), base.clone(), args.whep_token.clone());
        let permit = Arc::clone(&semaphore).acquire_owned().await?;
        deletes.push(tokio::spawn(async move {
            let _ = http
                .delete(&resolve_location(&base, &location), token.as_deref())
                .await;
            drop(permit);
        }));
    }
    for delete in deletes {
        let _ = delete.await;
    }
    if let Some(location) = publisher_location {
        let _ = http
            .delete(
                &resolve_location(&origin(&whip).unwrap_or_default(), &location),
                args.token.as_deref(),
            )
            .await;
    }
    match Arc::try_unwrap(workers) {
        Ok(workers) => {
            for worker in workers {
                let _ = worker.stop().await;
            }
        }
        Err(_) => tracing::warn!("viewer workers still referenced; not stopped"),
    }
    if let Err(err) = publisher.stop() {
        tracing::warn!("publisher: {err:#}");
    }
    Ok(report)
}

/// What every join task needs.
struct JoinContext {
    whep: String,
    token: Option<String>,
    http: HttpClient,
    certificate: RTCCertificate,
    data_channel: bool,
    local_ip: IpAddr,
    shared_port: Option<u16>,
    buffer_bytes: usize,
    feedback: peer::FeedbackMode,
}

/// Offers, POSTs, applies the answer and hands the viewer to its worker. Returns the
/// session URL.
async fn join_one(
    index: usize,
    context: &JoinContext,
    worker: &WorkerHandle,
) -> anyhow::Result<Option<String>> {
    let (local, socket) = match context.shared_port {
        Some(port) => {
            let ip = net::loopback_address(index).context("too many viewers for 127.0.0.0/8")?;
            (SocketAddr::new(IpAddr::V4(ip), port), None)
        }
        None => {
            let socket = net::open_socket(
                SocketAddr::new(context.local_ip, 0),
                false,
                context.buffer_bytes,
            )?;
            let local = socket.local_addr()?.as_socket().context("socket address")?;
            (local, Some(socket))
        }
    };
    let viewer = peer::viewer(
        local,
        &context.certificate,
        context.data_channel,
        context.feedback,
        Instant::now(),
    )?;
    let post_ns = net::wall_ns();
    let exchange = context
        .http
        .post_sdp(&context.whep, context.token.as_deref(), &viewer.offer)
        .await?;
    if exchange.status != 201 {
        bail!(
            "WHEP POST answered {}: {}",
            exchange.status,
            exchange.body.trim()
        );
    }
    let mut pc = viewer.pc;
    peer::apply_answer(&mut pc, &exchange.body, Instant::now())?;
    worker.join(Join {
        index,
        pc,
        local,
        socket,
        post_ns,
        feedback: context.feedback,
        twcc_extension: crate::load::feedback::twcc_extension_id(&exchange.body),
    })?;
    Ok(exchange.location)
}

async fn all_joins(workers: &[WorkerHandle]) -> anyhow::Result<Vec<JoinTimes>> {
    let mut all = Vec::new();
    for worker in workers {
        all.extend(worker.joins().await?);
    }
    Ok(all)
}

fn counter_deltas(start: &ServerSample, end: &ServerSample) -> BTreeMap<String, f64> {
    probe::COUNTERS
        .iter()
        .filter_map(|&name| Some((name.to_owned(), start.counter_delta(end, name)?)))
        .collect()
}

/// Prints one line per second until told to stop.
async fn progress_loop(
    workers: Arc<Vec<WorkerHandle>>,
    probe: ServerProbe,
    publisher: Arc<crate::load::publisher::PublisherStats>,
    join_failures: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    phase: Arc<std::sync::Mutex<String>>,
    viewers: usize,
) {
    let started = Instant::now();
    let mut clock = probe::ProgressClock::new(probe.sample().await);
    let mut interval = tokio::time::interval(Duration::from_secs(1));
    interval.tick().await;
    while !stop.load(Ordering::Acquire) {
        interval.tick().await;
        let mut total = IntervalReport::default();
        for worker in workers.iter() {
            let Ok(report) = worker.interval().await else {
                return;
            };
            total.rtp_packets += report.rtp_packets;
            total.rtp_bytes += report.rtp_bytes;
            total.delay.merge(&report.delay);
            total.seq.unique += report.seq.unique;
            total.seq.expected += report.seq.expected;
            total.connected += report.connected;
            total.failed += report.failed;
            total.joined += report.joined;
        }
        let tick = clock.tick(probe.sample().await);
        let seconds = tick.seconds;
        let forwarded = tick
            .previous
            .counter_delta(&tick.sample, "rtp_forwarded")
            .unwrap_or(total.rtp_packets as f64);
        let server = match tick.server_ticks() {
            Some(t) => format!(
                "srv {:.0}% {} µs/pkt {} MiB",
                tick.percent(t),
                cpu_us_per_packet(t, tick.ticks_per_second, forwarded as u64)
                    .map_or_else(|| "–".into(), |v| format!("{v:.1}")),
                tick.rss_mib()
            ),
            None => "srv –".into(),
        };
        let generator = tick.generator();
        let ms = |q: f64| {
            total
                .delay
                .quantile(q)
                .map_or_else(|| "–".into(), |v| format!("{:.2}", v as f64 / 1e6))
        };
        eprintln!(
            "[{:5.1}s {:>6}] viewers {}/{} ({} failed) | rx {:.1}k pkt/s {:.1} Mbit/s | loss {:.3}% | delay p50 {} p99 {} ms | {} | gen {} | pli {}",
            started.elapsed().as_secs_f64(),
            lock(&phase).as_str(),
            total.connected,
            viewers,
            total.failed + join_failures.load(Ordering::Relaxed),
            total.rtp_packets as f64 / seconds / 1000.0,
            total.rtp_bytes as f64 * 8.0 / seconds / 1e6,
            crate::load::measure::loss_ratio(total.seq.expected, total.seq.unique) * 100.0,
            ms(0.5),
            ms(0.99),
            server,
            generator,
            publisher.plis.load(Ordering::Relaxed),
        );
    }
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `scheme://authority` of a URL.
pub(crate) fn origin(url: &str) -> Option<String> {
    let parsed = reqwest::Url::parse(url).ok()?;
    let host = parsed.host_str()?;
    Some(match parsed.port() {
        Some(port) => format!("{}://{}:{port}", parsed.scheme(), bracket(host)),
        None => format!("{}://{}", parsed.scheme(), bracket(host)),
    })
}

fn bracket(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// A `Location` header resolved against the server's origin.
fn resolve_location(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        location.to_owned()
    } else {
        format!("{base}{location}")
    }
}

/// The IP address the URL's host resolves to.
async fn resolve_host(url: &str) -> anyhow::Result<IpAddr> {
    let parsed = reqwest::Url::parse(url).with_context(|| format!("bad URL {url}"))?;
    let host = parsed.host_str().context("URL without host")?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse() {
        return Ok(ip);
    }
    let port = parsed.port_or_known_default().unwrap_or(80);
    tokio::net::lookup_host((host, port))
        .await?
        .next()
        .map(|a| a.ip())
        .with_context(|| format!("{host} does not resolve"))
}

/// The local address the kernel would use to reach `server`.
fn local_ip_towards(server: IpAddr) -> anyhow::Result<IpAddr> {
    let bind: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse()?
    } else {
        "[::]:0".parse()?
    };
    let socket = std::net::UdpSocket::bind(bind)?;
    socket.connect(SocketAddr::new(server, 9))?;
    Ok(socket.local_addr()?.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            origin("http://127.0.0.1:8080/whip/room").as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert_eq!(
            origin("https://live.example.com/whep/x").as_deref(),
            Some("https://live.example.com")
        );
        assert_eq!(
            origin("http://[::1]:80/whep/x").as_deref(),
            Some("http://[::1]")
        );
        assert_eq!(
            resolve_location("http://h:1", "/whep/r/s"),
            "http://h:1/whep/r/s"
        );
        assert_eq!(resolve_location("http://h:1", "https://o/x"), "https://o/x");
    }
}
