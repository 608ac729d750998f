//! `queqiao-load flv` and `queqiao-load hls`: one WHIP publisher (the same paced clip as
//! the `webrtc` scenario) and N HTTP players, measuring the delay to the live edge.
//!
//! - `flv`: each player holds one endless `GET /live/{room}.flv`, parses the FLV tags as
//!   they arrive and measures every video frame: receive instant − the instant the
//!   publisher sent the frame's last RTP packet.
//! - `hls --variant llhls` (default): what hls.js does in low-latency mode — the playlist,
//!   the init segment, the parts from the last independent one, then for each next part a
//!   blocking playlist reload (`_HLS_msn`/`_HLS_part`) followed by the part; one delay
//!   sample per part: its receive instant − the send instant of its first frame.
//! - `hls --variant hls`: polls the MPEG-TS playlist (again after the last segment's
//!   duration when it changed, after half the target duration when not, RFC 8216 §6.3.4)
//!   from the newest segment on; every frame of a segment is measured against the
//!   segment's receive instant.
//!
//! Frames are recognised by [`crate::load::media::vcl_key`] (see [`http_media`]). A stall
//! is a gap between two media arrivals of one player longer than `--stall-ms` (default
//! 1 s for FLV and LL-HLS, 2 × `EXT-X-TARGETDURATION` for HLS); an error is a failed
//! request, an unexpected status, a parse failure or an FLV stream that ended or went
//! silent for 5 s (the player then reconnects, as real players do).
//!
//! Players are async tasks on the caller's runtime: cheap enough for hundreds on one core.

use crate::http::HttpClient;
use crate::load::http_media::{
    FlvReader, FrameIndex, FrameMatch, Playlist, fmp4_samples, ts_video_access_units,
};
use crate::load::measure::Histogram;
use crate::load::media::{ClipChoice, PacketizedClip, SendTimes};
use crate::load::net;
use crate::load::peer;
use crate::load::probe::{self, ServerProbe};
use crate::load::publisher::{PublisherOptions, PublisherStats, WhipTarget, start_whip_publisher};
use crate::load::report::{LatencyMs, ReportArgs, StreamInfo};
use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Options shared by `flv` and `hls`.
#[derive(Debug, Clone, Args)]
pub struct HttpArgs {
    /// WHIP endpoint; `{room}` is replaced by the room name.
    #[arg(long, default_value = "http://127.0.0.1:8080/whip/{room}")]
    pub whip: String,
    /// Playback URL; `{room}` is replaced [default: the bridge's path on the WHIP host].
    #[arg(long)]
    pub play_url: Option<String>,
    /// Room name [default: `load-` and 8 random hex digits].
    #[arg(long)]
    pub room: Option<String>,
    /// Bearer token for WHIP.
    #[arg(long, env = "QUEQIAO_LOAD_TOKEN")]
    pub token: Option<String>,
    /// HTTP players.
    #[arg(long, default_value_t = 100)]
    pub players: usize,
    /// Players joining per second (0: all at once).
    #[arg(long, default_value_t = 0.0)]
    pub ramp_per_sec: f64,
    /// Seconds between the last player's first frame and the measurement window.
    #[arg(long, default_value_t = 3.0)]
    pub warmup: f64,
    /// Seconds of the measurement window.
    #[arg(long, default_value_t = 20.0)]
    pub duration: f64,
    /// Committed clip to publish: `720p` (~1.5 Mbit/s, 2 s GOP) or `360p`.
    #[arg(long, default_value = "720p")]
    pub clip: String,
    /// Pacing rate as a multiple of the video bitrate (libwebrtc: 2.5); 0 sends frames in bursts.
    #[arg(long, default_value_t = 2.5)]
    pub pacing: f64,
    /// A gap between media arrivals longer than this is a stall [default: 1000 for FLV and
    /// LL-HLS, 2 × the target duration for HLS].
    #[arg(long)]
    pub stall_ms: Option<u64>,
    /// PID of the server, for CPU and RSS from /proc.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Where the report goes.
    #[command(flatten)]
    pub output: ReportArgs,
}

/// Options of `queqiao-load flv`.
#[derive(Debug, Clone, Args)]
pub struct FlvArgs {
    /// Common options.
    #[command(flatten)]
    pub common: HttpArgs,
}

/// Which HLS flavour the `hls` players fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
pub enum HlsVariant {
    /// LL-HLS (fMP4 parts, blocking playlist reloads) at `/llhls/{room}/index.m3u8`.
    Llhls,
    /// HLS (MPEG-TS segments, playlist polling) at `/hls/{room}/index.m3u8`.
    Hls,
}

/// Options of `queqiao-load hls`.
#[derive(Debug, Clone, Args)]
pub struct HlsArgs {
    /// Common options.
    #[command(flatten)]
    pub common: HttpArgs,
    /// LL-HLS or plain HLS.
    #[arg(long, value_enum, default_value_t = HlsVariant::Llhls)]
    pub variant: HlsVariant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Flv,
    LlHls,
    Hls,
}

impl Protocol {
    fn name(self) -> &'static str {
        match self {
            Protocol::Flv => "flv",
            Protocol::LlHls => "llhls",
            Protocol::Hls => "hls",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Protocol::Flv => "/live/{room}.flv",
            Protocol::LlHls => "/llhls/{room}/index.m3u8",
            Protocol::Hls => "/hls/{room}/index.m3u8",
        }
    }
}

/// The server's side of an HTTP run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HttpServerReport {
    /// PID sampled, if any.
    pub pid: Option<u32>,
    /// CPU over the window, % of one core.
    pub cpu_percent: Option<f64>,
    /// VmRSS before the players joined, KiB.
    pub rss_before_kib: Option<u64>,
    /// VmRSS at the end of the window, KiB.
    pub rss_after_kib: Option<u64>,
}

/// One `flv` or `hls` run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HttpReport {
    /// Free-form label.
    pub label: String,
    /// `flv`, `llhls` or `hls`.
    pub scenario: String,
    /// Unix time the run ended.
    pub finished_at: u64,
    /// Command line.
    pub command: String,
    /// Playback URL.
    pub url: String,
    /// What was published.
    pub stream: StreamInfo,
    /// Players started.
    pub players: usize,
    /// Players receiving media at the end of the window.
    pub players_connected: usize,
    /// Players that ever had a first frame.
    pub players_first_frame: usize,
    /// Seconds from the first player's request to the last one's first frame.
    pub join_seconds: f64,
    /// Measurement window, seconds.
    pub window_seconds: f64,
    /// Delay to the live edge over the window (per frame for FLV and HLS, per part for
    /// LL-HLS).
    pub delay_ms: LatencyMs,
    /// Frames received in the window that could not be matched to a send instant.
    pub delay_unmatched: u64,
    /// Time to first frame: request (FLV GET, first playlist GET) to the first decodable
    /// keyframe (FLV keyframe tag, independent part, TS segment).
    pub ttff_ms: LatencyMs,
    /// Body bytes per second per connected player over the window.
    pub bytes_per_second_per_player: f64,
    /// All players together, Mbit/s.
    pub received_mbps: f64,
    /// HTTP requests per second, all players.
    pub requests_per_second: f64,
    /// Stalls in the window (see the module docs).
    pub stalls: u64,
    /// Stall threshold used, ms.
    pub stall_threshold_ms: u64,
    /// Errors in the window.
    pub errors: u64,
    /// Errors over the whole run.
    pub errors_total: u64,
    /// A few error messages.
    pub error_examples: Vec<String>,
    /// The server.
    pub server: HttpServerReport,
    /// Load generator CPU over the window, % of one core.
    pub generator_cpu_percent: Option<f64>,
    /// Load generator VmRSS, KiB.
    pub generator_rss_kib: Option<u64>,
    /// PLIs the publisher received over the run.
    pub publisher_plis: u64,
}

fn opt(value: Option<f64>, digits: usize) -> String {
    value.map_or_else(|| "–".into(), |v| format!("{v:.digits$}"))
}

impl HttpReport {
    /// Header of the Markdown table.
    pub fn markdown_header() -> String {
        "| scenario | players | connected | delay p50 / p95 / p99 / max (ms) | TTFF p50 / p95 (ms) | kB/s per player | stalls | errors | server CPU % | server RSS MiB | generator CPU % |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
            .to_owned()
    }

    /// One Markdown row.
    pub fn markdown_row(&self) -> String {
        let d = &self.delay_ms;
        format!(
            "| {} ({}) | {} | {} | {} / {} / {} / {} | {} / {} | {:.0} | {} | {} | {} | {} | {} |",
            self.label,
            self.scenario,
            self.players,
            self.players_connected,
            opt(d.p50, 1),
            opt(d.p95, 1),
            opt(d.p99, 1),
            opt(d.max, 1),
            opt(self.ttff_ms.p50, 1),
            opt(self.ttff_ms.p95, 1),
            self.bytes_per_second_per_player / 1000.0,
            self.stalls,
            self.errors,
            opt(self.server.cpu_percent, 1),
            opt(self.server.rss_after_kib.map(|k| k as f64 / 1024.0), 0),
            opt(self.generator_cpu_percent, 1),
        )
    }
}

/// Runs `queqiao-load flv`.
pub async fn run_flv(args: FlvArgs) -> anyhow::Result<HttpReport> {
    run(args.common, Protocol::Flv).await
}

/// Runs `queqiao-load hls`.
pub async fn run_hls(args: HlsArgs) -> anyhow::Result<HttpReport> {
    let protocol = match args.variant {
        HlsVariant::Llhls => Protocol::LlHls,
        HlsVariant::Hls => Protocol::Hls,
    };
    run(args.common, protocol).await
}

// ---------------------------------------------------------------------------------------
// Shared measurement state

#[derive(Debug, Default, Clone)]
struct PlayerState {
    ttff_ns: Option<u64>,
    active: bool,
    last_media: Option<Instant>,
}

#[derive(Debug, Default)]
struct Counters {
    bytes: u64,
    requests: u64,
    stalls: u64,
    errors: u64,
    unmatched: u64,
}

#[derive(Debug, Default)]
struct Shared {
    players: Vec<PlayerState>,
    measuring: bool,
    interval: Histogram,
    interval_counters: Counters,
    window: Histogram,
    window_counters: Counters,
    errors_total: u64,
    error_examples: Vec<String>,
}

impl Shared {
    fn count(&mut self, f: impl Fn(&mut Counters)) {
        f(&mut self.interval_counters);
        if self.measuring {
            f(&mut self.window_counters);
        }
    }
}

struct PlayerContext {
    shared: Mutex<Shared>,
    index: FrameIndex,
    send_times: Arc<SendTimes>,
    http: reqwest::Client,
    url: reqwest::Url,
    stall: Mutex<Duration>,
    stall_fixed: bool,
    stop: AtomicBool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Longest plausible delay: a frame "received" later than this after its send instant was
/// most likely matched to the wrong loop of the clip.
const MAX_DELAY_NS: u64 = 30_000_000_000;

struct Player {
    id: usize,
    ctx: Arc<PlayerContext>,
}

impl Player {
    fn stopped(&self) -> bool {
        self.ctx.stop.load(Ordering::Acquire)
    }

    fn error(&self, message: String) {
        tracing::debug!(player = self.id, "{message}");
        let mut shared = lock(&self.ctx.shared);
        shared.count(|c| c.errors += 1);
        shared.errors_total += 1;
        shared.players[self.id].active = false;
        shared.players[self.id].last_media = None;
        if shared.error_examples.len() < 8 && !shared.error_examples.contains(&message) {
            shared.error_examples.push(message);
        }
    }

    fn response(&self, bytes: usize) {
        let mut shared = lock(&self.ctx.shared);
        shared.count(|c| {
            c.bytes += bytes as u64;
            c.requests += 1;
        });
    }

    /// Media arrived at `recv_ns`: `bytes` of body, the frames in it to measure, whether
    /// it is decodable on its own (the first frame counts from here), and `request_ns`,
    /// when this session's first request went out.
    fn media(
        &self,
        bytes: usize,
        frames: &[FrameMatch],
        keyframe: bool,
        request_ns: u64,
        recv_ns: u64,
    ) {
        let now = Instant::now();
        let stall = *lock(&self.ctx.stall);
        let mut shared = lock(&self.ctx.shared);
        shared.count(|c| c.bytes += bytes as u64);
        let video = frames.iter().any(|f| *f != FrameMatch::NotVideo);
        let state = &mut shared.players[self.id];
        if state.ttff_ns.is_none() {
            if !keyframe {
                return;
            }
            state.ttff_ns = Some(recv_ns.saturating_sub(request_ns));
        }
        let mut stalled = false;
        if video {
            stalled = state
                .last_media
                .is_some_and(|last| now.duration_since(last) > stall);
            state.last_media = Some(now);
            state.active = true;
        }
        if stalled {
            shared.count(|c| c.stalls += 1);
        }
        for frame in frames {
            let sent = match frame {
                FrameMatch::NotVideo => continue,
                FrameMatch::Unknown => None,
                FrameMatch::Frame(i) => self.ctx.send_times.frame(*i as usize),
            };
            match sent {
                Some(sent) if sent <= recv_ns && recv_ns - sent < MAX_DELAY_NS => {
                    let delay = recv_ns - sent;
                    shared.interval.record(delay);
                    if shared.measuring {
                        shared.window.record(delay);
                    }
                }
                _ => shared.count(|c| c.unmatched += 1),
            }
        }
    }

    fn inactive(&self) {
        let mut shared = lock(&self.ctx.shared);
        shared.players[self.id].active = false;
        shared.players[self.id].last_media = None;
    }

    async fn pause(&self) {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    /// GETs `url` whole; errors for anything but 200.
    async fn get(&self, url: &reqwest::Url) -> anyhow::Result<bytes::Bytes> {
        let response = tokio::time::timeout(
            Duration::from_secs(15),
            self.ctx.http.get(url.clone()).send(),
        )
        .await
        .with_context(|| format!("GET {} timed out", url.path()))??;
        let status = response.status();
        if status != reqwest::StatusCode::OK {
            bail!("GET {} answered {status}", url.path());
        }
        let body = tokio::time::timeout(Duration::from_secs(15), response.bytes())
            .await
            .with_context(|| format!("GET {} body timed out", url.path()))??;
        Ok(body)
    }

    async fn playlist(&self, url: &reqwest::Url) -> anyhow::Result<Playlist> {
        let body = self.get(url).await?;
        self.response(body.len());
        Playlist::parse(std::str::from_utf8(&body).unwrap_or_default())
            .with_context(|| format!("GET {} is not a playlist", url.path()))
    }

    // -- FLV --------------------------------------------------------------------------

    async fn flv(self) {
        while !self.stopped() {
            if let Err(err) = self.flv_session().await {
                self.error(format!("{err:#}"));
            }
            self.inactive();
            if !self.stopped() {
                self.pause().await;
            }
        }
    }

    async fn flv_session(&self) -> anyhow::Result<()> {
        let request_ns = net::wall_ns();
        let mut response = tokio::time::timeout(
            Duration::from_secs(15),
            self.ctx.http.get(self.ctx.url.clone()).send(),
        )
        .await
        .context("FLV GET timed out")??;
        if response.status() != reqwest::StatusCode::OK {
            bail!("FLV GET answered {}", response.status());
        }
        self.response(0);
        let mut reader = FlvReader::new();
        let mut frames = Vec::new();
        while !self.stopped() {
            let chunk = tokio::time::timeout(Duration::from_secs(5), response.chunk())
                .await
                .context("FLV stream silent for 5 s")??;
            let Some(chunk): Option<bytes::Bytes> = chunk else {
                bail!("FLV stream ended");
            };
            let recv_ns = net::wall_ns();
            frames.clear();
            let mut keyframe = false;
            let index = &self.ctx.index;
            reader.push(&chunk, |tag| {
                if let Some(video) = tag.video()
                    && !video.nals.is_empty()
                {
                    keyframe |= video.keyframe;
                    frames.push(index.lookup(video.nals.iter().copied()));
                }
            })?;
            self.media(chunk.len(), &frames, keyframe, request_ns, recv_ns);
        }
        Ok(())
    }

    // -- LL-HLS -----------------------------------------------------------------------

    async fn llhls(self) {
        while !self.stopped() {
            if let Err(err) = self.llhls_session().await {
                self.error(format!("{err:#}"));
            }
            self.inactive();
            if !self.stopped() {
                self.pause().await;
            }
        }
    }

    async fn llhls_session(&self) -> anyhow::Result<()> {
        let base = &self.ctx.url;
        let request_ns = net::wall_ns();
        // Start at the newest independent part, as a low-latency player does.
        let (mut playlist, start) = loop {
            let playlist = self.playlist(base).await?;
            if let Some(start) = playlist.parts.iter().rposition(|p| p.independent) {
                break (playlist, start);
            }
            if self.stopped() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let mut map = playlist.map.clone();
        if let Some(uri) = &map {
            let init = self.get(&base.join(uri)?).await?;
            self.response(init.len());
        }
        let mut pending: Vec<_> = playlist.parts[start..].to_vec();
        let mut last = (pending[0].msn, pending[0].index);
        while !self.stopped() {
            for part in &pending {
                let body = self.get(&base.join(&part.uri)?).await?;
                let recv_ns = net::wall_ns();
                lock(&self.ctx.shared).count(|c| c.requests += 1);
                let samples = fmp4_samples(&body)?;
                // One sample per part: its first video frame.
                let first = samples
                    .iter()
                    .map(|s| self.ctx.index.lookup_avcc(s))
                    .find(|m| *m != FrameMatch::NotVideo);
                let frames: Vec<FrameMatch> = first.into_iter().collect();
                self.media(body.len(), &frames, part.independent, request_ns, recv_ns);
                last = (part.msn, part.index);
            }
            let (msn, index) = playlist.successor(last.0, last.1);
            let mut url = base.clone();
            url.query_pairs_mut()
                .append_pair("_HLS_msn", &msn.to_string())
                .append_pair("_HLS_part", &index.to_string());
            playlist = self.playlist(&url).await?;
            if playlist.map != map {
                map = playlist.map.clone();
                if let Some(uri) = &map {
                    let init = self.get(&base.join(uri)?).await?;
                    self.response(init.len());
                }
            }
            pending = playlist
                .parts
                .iter()
                .filter(|p| (p.msn, p.index) > last)
                .cloned()
                .collect();
            if playlist.ended {
                bail!("the LL-HLS playlist ended");
            }
            if pending.is_empty() && playlist.next_msn() > last.0 + 2 {
                // Nothing new although the playlist moved on: our part left the window.
                bail!("fell behind the LL-HLS window");
            }
        }
        Ok(())
    }

    // -- HLS (MPEG-TS) -----------------------------------------------------------------

    async fn hls(self) {
        while !self.stopped() {
            if let Err(err) = self.hls_session().await {
                self.error(format!("{err:#}"));
            }
            self.inactive();
            if !self.stopped() {
                self.pause().await;
            }
        }
    }

    async fn hls_session(&self) -> anyhow::Result<()> {
        let base = &self.ctx.url;
        let request_ns = net::wall_ns();
        let mut playlist = self.playlist(base).await?;
        let mut next = None::<u64>;
        while !self.stopped() {
            if !self.ctx.stall_fixed && playlist.target_duration > 0.0 {
                *lock(&self.ctx.stall) = Duration::from_secs_f64(2.0 * playlist.target_duration);
            }
            let first_msn =
                *next.get_or_insert_with(|| playlist.segments.last().map_or(0, |s| s.msn));
            if playlist.segments.first().is_some_and(|s| s.msn > first_msn) {
                bail!("fell behind the HLS window");
            }
            let mut fetched = None;
            for segment in playlist.segments.iter().filter(|s| s.msn >= first_msn) {
                let body = self.get(&base.join(&segment.uri)?).await?;
                let recv_ns = net::wall_ns();
                lock(&self.ctx.shared).count(|c| c.requests += 1);
                let frames: Vec<FrameMatch> = ts_video_access_units(&body)?
                    .iter()
                    .map(|au| self.ctx.index.lookup_annex_b(au))
                    .collect();
                self.media(body.len(), &frames, true, request_ns, recv_ns);
                next = Some(segment.msn + 1);
                fetched = Some(segment.duration);
            }
            if playlist.ended {
                bail!("the HLS playlist ended");
            }
            let wait = match fetched {
                Some(duration) if duration > 0.0 => duration,
                _ => (playlist.target_duration / 2.0).max(0.1),
            };
            tokio::time::sleep(Duration::from_secs_f64(wait)).await;
            playlist = self.playlist(base).await?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// The run

/// `scheme://authority` of a URL.
fn origin(url: &str) -> anyhow::Result<String> {
    let parsed = reqwest::Url::parse(url).with_context(|| format!("bad URL {url}"))?;
    Ok(parsed.origin().ascii_serialization())
}

async fn local_ip_for(url: &str) -> anyhow::Result<IpAddr> {
    let parsed = reqwest::Url::parse(url).with_context(|| format!("bad URL {url}"))?;
    let host = parsed.host_str().context("URL without host")?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let server: IpAddr = match host.parse() {
        Ok(ip) => ip,
        Err(_) => tokio::net::lookup_host((host, parsed.port_or_known_default().unwrap_or(80)))
            .await?
            .next()
            .map(|a| a.ip())
            .with_context(|| format!("{host} does not resolve"))?,
    };
    if server.is_loopback() {
        return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    let bind: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse()?
    } else {
        "[::]:0".parse()?
    };
    let socket = std::net::UdpSocket::bind(bind)?;
    socket.connect(SocketAddr::new(server, 9))?;
    Ok(socket.local_addr()?.ip())
}

/// Whether the stream can be played yet.
async fn playable(http: &reqwest::Client, url: &reqwest::Url, protocol: Protocol) -> bool {
    let Ok(response) = http
        .get(url.clone())
        .timeout(Duration::from_secs(5))
        .send()
        .await
    else {
        return false;
    };
    if response.status() != reqwest::StatusCode::OK {
        return false;
    }
    if protocol == Protocol::Flv {
        return true;
    }
    let Ok(body) = response.text().await else {
        return false;
    };
    Playlist::parse(&body).is_some_and(|p| match protocol {
        Protocol::LlHls => p.parts.iter().any(|part| part.independent),
        _ => !p.segments.is_empty(),
    })
}

async fn run(args: HttpArgs, protocol: Protocol) -> anyhow::Result<HttpReport> {
    if args.players == 0 {
        bail!("--players must be at least 1");
    }
    let room = args
        .room
        .clone()
        .unwrap_or_else(|| format!("load-{:08x}", rand::random::<u32>()));
    let whip = args.whip.replace("{room}", &room);
    let base = origin(&whip)?;
    let play_url = args
        .play_url
        .clone()
        .unwrap_or_else(|| format!("{base}{}", protocol.path()))
        .replace("{room}", &room);
    let url = reqwest::Url::parse(&play_url).with_context(|| format!("bad URL {play_url}"))?;
    let local_ip = local_ip_for(&whip).await?;
    let clip = Arc::new(PacketizedClip::load(&ClipChoice::Builtin(
        args.clip.clone(),
    ))?);
    let index = FrameIndex::new(&clip);
    let send_times = Arc::new(clip.send_times());
    let probe = ServerProbe::new(args.server_pid, None);
    let label = args
        .output
        .label
        .clone()
        .unwrap_or_else(|| format!("{} {} players", args.players, protocol.name()));
    eprintln!(
        "queqiao-load {}: {label}: clip {} ({:.0} kbit/s, {} of {} frames recognisable), {} players{}, WHIP {whip}, playing {play_url}",
        protocol.name(),
        clip.name,
        clip.video_bitrate / 1000.0,
        index.len(),
        clip.video.len(),
        args.players,
        if args.ramp_per_sec > 0.0 {
            format!(" at {}/s", args.ramp_per_sec)
        } else {
            " at once".to_owned()
        },
    );

    // Publisher, exactly as in the `webrtc` scenario.
    let http = HttpClient::new();
    let certificate = peer::certificate()?;
    let (publisher, publisher_location) = start_whip_publisher(
        &http,
        WhipTarget {
            url: &whip,
            token: args.token.as_deref(),
            local_ip,
            socket_buffer: 8 << 20,
        },
        &certificate,
        Arc::clone(&clip),
        Arc::clone(&send_times),
        PublisherOptions {
            pacing_factor: args.pacing,
            connect_timeout: Duration::from_secs(10),
            keep_early_dtls: true,
            ignore_pli: false,
        },
    )
    .await?;
    let result = measure(
        &args,
        protocol,
        label,
        url,
        &clip,
        index,
        send_times,
        &probe,
        &publisher.stats,
    )
    .await;

    // Teardown.
    if let Some(location) = publisher_location {
        let location = if location.starts_with("http://") || location.starts_with("https://") {
            location
        } else {
            format!("{base}{location}")
        };
        let _ = http.delete(&location, args.token.as_deref()).await;
    }
    if let Err(err) = publisher.stop() {
        tracing::warn!("publisher: {err:#}");
    }
    result
}

#[allow(clippy::too_many_arguments)]
async fn measure(
    args: &HttpArgs,
    protocol: Protocol,
    label: String,
    url: reqwest::Url,
    clip: &PacketizedClip,
    index: FrameIndex,
    send_times: Arc<SendTimes>,
    probe: &ServerProbe,
    publisher: &Arc<PublisherStats>,
) -> anyhow::Result<HttpReport> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !publisher.connected.load(Ordering::Acquire) {
        if publisher.finished.load(Ordering::Acquire) || Instant::now() > deadline {
            bail!("the publisher did not connect");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let http = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(usize::MAX)
        .build()?;
    // Wait for the bridge to serve the room.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !playable(&http, &url, protocol).await {
        if publisher.finished.load(Ordering::Acquire) {
            bail!("the publisher stopped");
        }
        if Instant::now() > deadline {
            bail!("{url} did not become playable within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let baseline = probe.sample().await;
    let stall_default = Duration::from_millis(args.stall_ms.unwrap_or(1000));
    let ctx = Arc::new(PlayerContext {
        shared: Mutex::new(Shared {
            players: vec![PlayerState::default(); args.players],
            ..Shared::default()
        }),
        index,
        send_times,
        http,
        url: url.clone(),
        stall: Mutex::new(stall_default),
        stall_fixed: args.stall_ms.is_some() || protocol != Protocol::Hls,
        stop: AtomicBool::new(false),
    });
    let phase = Arc::new(Mutex::new("join"));
    let stop_progress = Arc::new(AtomicBool::new(false));
    let progress = (!args.output.quiet).then(|| {
        tokio::spawn(progress_loop(
            Arc::clone(&ctx),
            probe.clone(),
            Arc::clone(&stop_progress),
            Arc::clone(&phase),
        ))
    });

    // Players.
    let join_start = Instant::now();
    let mut tasks = Vec::with_capacity(args.players);
    for id in 0..args.players {
        if args.ramp_per_sec > 0.0 {
            let at = join_start + Duration::from_secs_f64(id as f64 / args.ramp_per_sec);
            tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
        }
        let player = Player {
            id,
            ctx: Arc::clone(&ctx),
        };
        tasks.push(tokio::spawn(async move {
            match protocol {
                Protocol::Flv => player.flv().await,
                Protocol::LlHls => player.llhls().await,
                Protocol::Hls => player.hls().await,
            }
        }));
    }
    let wait_deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let with_frame = lock(&ctx.shared)
            .players
            .iter()
            .filter(|p| p.ttff_ns.is_some())
            .count();
        if with_frame == args.players || Instant::now() > wait_deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let join_seconds = join_start.elapsed().as_secs_f64();
    *lock(&phase) = "warmup";
    tokio::time::sleep(Duration::from_secs_f64(args.warmup.max(0.0))).await;

    // Window.
    *lock(&phase) = "window";
    let window_start = probe.sample().await;
    let self_start = probe::process_sample("self");
    lock(&ctx.shared).measuring = true;
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(args.duration.max(0.1))).await;
    let (window, counters, players, errors_total, error_examples) = {
        let mut shared = lock(&ctx.shared);
        shared.measuring = false;
        (
            std::mem::take(&mut shared.window),
            std::mem::take(&mut shared.window_counters),
            shared.players.clone(),
            shared.errors_total,
            shared.error_examples.clone(),
        )
    };
    let window_seconds = started.elapsed().as_secs_f64();
    let window_end = probe.sample().await;
    let self_end = probe::process_sample("self");
    ctx.stop.store(true, Ordering::Release);
    stop_progress.store(true, Ordering::Release);
    for task in &tasks {
        task.abort();
    }
    for task in tasks {
        let _ = task.await;
    }
    if let Some(progress) = progress {
        let _ = progress.await;
    }

    // Report.
    let ticks = probe::ticks_per_second();
    let stall_threshold = *lock(&ctx.stall);
    let connected = players
        .iter()
        .filter(|p| {
            p.active
                && p.last_media
                    .is_some_and(|at| at.elapsed() <= stall_threshold + Duration::from_secs(1))
        })
        .count();
    let ttff: Vec<u64> = players.iter().filter_map(|p| p.ttff_ns).collect();
    let generator_ticks = match (self_start.0, self_end.0) {
        (Some(a), Some(b)) => Some(b.total().saturating_sub(a.total())),
        _ => None,
    };
    let server_window = window_end.at.duration_since(window_start.at).as_secs_f64();
    Ok(HttpReport {
        label,
        scenario: protocol.name().to_owned(),
        finished_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        url: url.to_string(),
        stream: StreamInfo {
            clip: clip.name.clone(),
            video_kbps: clip.video_bitrate / 1000.0,
            packets_per_second: clip.packets_per_second(),
            pacing_factor: args.pacing,
        },
        players: args.players,
        players_connected: connected,
        players_first_frame: ttff.len(),
        join_seconds,
        window_seconds,
        delay_ms: LatencyMs::from_histogram(&window),
        delay_unmatched: counters.unmatched,
        ttff_ms: LatencyMs::from_samples(ttff),
        bytes_per_second_per_player: counters.bytes as f64
            / window_seconds
            / connected.max(1) as f64,
        received_mbps: counters.bytes as f64 * 8.0 / window_seconds / 1e6,
        requests_per_second: counters.requests as f64 / window_seconds,
        stalls: counters.stalls,
        stall_threshold_ms: stall_threshold.as_millis() as u64,
        errors: counters.errors,
        errors_total,
        error_examples,
        server: HttpServerReport {
            pid: args.server_pid,
            cpu_percent: window_start
                .cpu_delta(&window_end)
                .map(|t| t as f64 / ticks as f64 / server_window * 100.0),
            rss_before_kib: baseline.rss_kib,
            rss_after_kib: window_end.rss_kib,
        },
        generator_cpu_percent: generator_ticks
            .map(|t| t as f64 / ticks as f64 / window_seconds * 100.0),
        generator_rss_kib: self_end.1,
        publisher_plis: publisher.plis.load(Ordering::Relaxed),
    })
}

/// Prints one line per second until told to stop.
async fn progress_loop(
    ctx: Arc<PlayerContext>,
    probe: ServerProbe,
    stop: Arc<AtomicBool>,
    phase: Arc<Mutex<&'static str>>,
) {
    let started = Instant::now();
    let mut clock = probe::ProgressClock::new(probe.sample().await);
    let mut interval = tokio::time::interval(Duration::from_secs(1));
    interval.tick().await;
    while !stop.load(Ordering::Acquire) {
        interval.tick().await;
        let (delay, counters, players, active, first) = {
            let mut shared = lock(&ctx.shared);
            let delay = std::mem::take(&mut shared.interval);
            let counters = std::mem::take(&mut shared.interval_counters);
            let active = shared.players.iter().filter(|p| p.active).count();
            let first = shared
                .players
                .iter()
                .filter(|p| p.ttff_ns.is_some())
                .count();
            (delay, counters, shared.players.len(), active, first)
        };
        let tick = clock.tick(probe.sample().await);
        let seconds = tick.seconds;
        let server = match tick.server_ticks() {
            Some(t) => format!("srv {:.0}% {} MiB", tick.percent(t), tick.rss_mib()),
            None => "srv –".into(),
        };
        let generator = tick.generator();
        let ms = |q: f64| {
            delay
                .quantile(q)
                .map_or_else(|| "–".into(), |v| format!("{:.1}", v as f64 / 1e6))
        };
        eprintln!(
            "[{:5.1}s {:>6}] players {active}/{players} (first frame {first}) | rx {:.1} Mbit/s {:.0} req/s | delay p50 {} p99 {} ms ({} samples, {} unmatched) | stalls {} errors {} | {server} | gen {generator}",
            started.elapsed().as_secs_f64(),
            *lock(&phase),
            counters.bytes as f64 * 8.0 / seconds / 1e6,
            counters.requests as f64 / seconds,
            ms(0.5),
            ms(0.99),
            delay.count(),
            counters.unmatched,
            counters.stalls,
            counters.errors,
        );
    }
}
