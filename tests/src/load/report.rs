//! The result of a run: JSON (`--json`) and one Markdown table row.

use crate::load::measure::{Histogram, percentile};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LatencyMs {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50: Option<f64>,
    /// 90th percentile.
    pub p90: Option<f64>,
    /// 95th percentile.
    pub p95: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
    /// 99.9th percentile.
    pub p999: Option<f64>,
    /// Largest.
    pub max: Option<f64>,
    /// Mean.
    pub mean: Option<f64>,
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

impl LatencyMs {
    /// From a histogram of nanoseconds.
    pub fn from_histogram(histogram: &Histogram) -> Self {
        let q = |q: f64| histogram.quantile(q).map(ms);
        Self {
            count: histogram.count(),
            p50: q(0.5),
            p90: q(0.9),
            p95: q(0.95),
            p99: q(0.99),
            p999: q(0.999),
            max: histogram.max().map(ms),
            mean: histogram.mean().map(|m| m / 1e6),
        }
    }

    /// From exact samples of nanoseconds.
    pub fn from_samples(mut samples: Vec<u64>) -> Self {
        samples.sort_unstable();
        let q = |q: f64| percentile(&samples, q).map(ms);
        let mean = (!samples.is_empty())
            .then(|| samples.iter().map(|&s| s as f64).sum::<f64>() / samples.len() as f64 / 1e6);
        Self {
            count: samples.len() as u64,
            p50: q(0.5),
            p90: q(0.9),
            p95: q(0.95),
            p99: q(0.99),
            p999: q(0.999),
            max: samples.last().copied().map(ms),
            mean,
        }
    }
}

/// What was published.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StreamInfo {
    /// Clip name.
    pub clip: String,
    /// Mean video bitrate, kbit/s.
    pub video_kbps: f64,
    /// RTP packets per second the publisher sends (audio + video).
    pub packets_per_second: f64,
    /// Pacing factor (0 = bursts).
    pub pacing_factor: f64,
}

/// The server's side.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ServerReport {
    /// PID sampled, if any.
    pub pid: Option<u32>,
    /// CPU time per forwarded packet over the window, µs.
    pub cpu_us_per_packet: Option<f64>,
    /// CPU use over the window, % of one core.
    pub cpu_percent: Option<f64>,
    /// Share of that CPU spent in the kernel (stime / (utime + stime)).
    pub cpu_system_share: Option<f64>,
    /// VmRSS before viewers joined, KiB.
    pub rss_before_kib: Option<u64>,
    /// VmRSS in the window, KiB.
    pub rss_after_kib: Option<u64>,
    /// RSS growth per connected viewer, KiB.
    pub rss_per_viewer_kib: Option<f64>,
    /// Counter deltas over the window (`/metrics`).
    pub window_counters: BTreeMap<String, f64>,
    /// Counter deltas from the first join to the end of the window.
    pub run_counters: BTreeMap<String, f64>,
}

/// The publisher's side.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PublisherReport {
    /// PLIs received from the first join to the end of the window.
    pub plis: u64,
    /// FIRs over the same span.
    pub firs: u64,
    /// PLIs received since the publisher connected.
    pub plis_total: u64,
    /// NACK packets received over the window.
    pub nacks_window: u64,
    /// RTP packets sent per second over the window.
    pub rtp_per_second: f64,
    /// Keyframes sent early because of PLI/FIR.
    pub keyframes_forced: u64,
    /// The publisher ignored PLI/FIR (`--ignore-pli`, a fixed-GOP encoder).
    #[serde(default)]
    pub ignores_pli: bool,
    /// PLI/FIRs not answered: a keyframe had gone out less than 300 ms before.
    #[serde(default)]
    pub keyframe_requests_rate_limited: u64,
}

/// What the viewers sent back over the whole run (join included).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ViewerFeedbackReport {
    /// `browser` (ours, counted) or `engine` (the rtc interceptors, not counted).
    pub mode: String,
    /// Sequence numbers NACKed per connected viewer (retries included).
    pub nacks_per_viewer: Option<f64>,
    /// Of those, asked within 2 s of the viewer's first packet.
    pub nacks_at_join_per_viewer: Option<f64>,
    /// PLIs per connected viewer.
    pub plis_per_viewer: Option<f64>,
    /// Sums over every viewer, by packet type.
    pub totals: crate::load::feedback::FeedbackCounts,
}

/// The load generator's own cost.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GeneratorReport {
    /// CPU over the window, % of one core.
    pub cpu_percent: Option<f64>,
    /// CPU per received RTP packet, µs.
    pub cpu_us_per_packet: Option<f64>,
    /// VmRSS at the end of the window, KiB.
    pub rss_kib: Option<u64>,
    /// Viewer workers (threads).
    pub workers: usize,
    /// `shared` (one socket per worker) or `per-viewer`.
    pub sockets: String,
}

/// One `webrtc` run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WebrtcReport {
    /// Free-form label (scenario name).
    pub label: String,
    /// Unix time the run ended.
    pub finished_at: u64,
    /// The command line.
    pub command: String,
    /// WHIP URL used.
    pub whip: String,
    /// WHEP URL used.
    pub whep: String,
    /// The stream.
    pub stream: StreamInfo,
    /// Viewers asked for.
    pub viewers: usize,
    /// Viewers connected at the end of the window.
    pub viewers_connected: usize,
    /// Viewers that could not join or connect.
    pub viewers_failed: usize,
    /// Join rate (0: all at once).
    pub ramp_per_sec: f64,
    /// Time from the first WHEP POST to the last viewer connected, s.
    pub join_seconds: f64,
    /// Steady measurement window, s.
    pub window_seconds: f64,
    /// Packets forwarded per second by the server (server metrics, else viewers' receipts).
    pub forwarded_per_second: f64,
    /// Where `forwarded_per_second` came from.
    pub forwarded_source: String,
    /// RTP packets the viewers received per second.
    pub received_per_second: f64,
    /// Payload throughput to all viewers, Mbit/s.
    pub received_mbps: f64,
    /// Sequence numbers missing at the viewers over the window / expected.
    pub loss: f64,
    /// Expected packets (sum over viewers and tracks).
    pub loss_expected: u64,
    /// Unique packets received.
    pub loss_received: u64,
    /// Packets received more than once (retransmissions that were not needed).
    #[serde(default)]
    pub duplicates: u64,
    /// Viewers' receipts over (publisher's sends × connected viewers).
    pub delivery_ratio: Option<f64>,
    /// The viewers' RTCP feedback.
    #[serde(default)]
    pub viewer_feedback: ViewerFeedbackReport,
    /// Publisher send → viewer kernel receive.
    pub delay_ms: LatencyMs,
    /// Packets whose payload gave no send time.
    pub delay_unmatched: u64,
    /// WHEP POST → first complete keyframe.
    pub ttff_ms: LatencyMs,
    /// WHEP POST → ICE + DTLS connected.
    pub connect_ms: LatencyMs,
    /// Viewers that connected but saw no complete keyframe.
    pub ttff_missing: usize,
    /// The server.
    pub server: ServerReport,
    /// The publisher.
    pub publisher: PublisherReport,
    /// The load generator.
    pub generator: GeneratorReport,
}

fn opt(value: Option<f64>, digits: usize) -> String {
    value.map_or_else(|| "–".to_owned(), |v| format!("{v:.digits$}"))
}

impl WebrtcReport {
    /// The Markdown table header matching [`WebrtcReport::markdown_row`].
    pub fn markdown_header() -> String {
        "| scenario | viewers | fwd pkt/s | loss | server µs/pkt | server CPU | delay p50 / p99 ms | TTFF p50 / p95 ms | RSS/viewer KiB | PLIs | gen µs/pkt | NACKs/viewer | viewer PLIs | kf forced |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
            .to_owned()
    }

    /// One Markdown table row.
    pub fn markdown_row(&self) -> String {
        format!(
            "| {} | {}/{} | {:.0} | {:.3}% | {} | {} | {} / {} | {} / {} | {} | {} | {} | {} | {} | {} |",
            self.label,
            self.viewers_connected,
            self.viewers,
            self.forwarded_per_second,
            self.loss * 100.0,
            opt(self.server.cpu_us_per_packet, 2),
            self.server
                .cpu_percent
                .map_or_else(|| "–".to_owned(), |c| format!("{c:.0}%")),
            opt(self.delay_ms.p50, 2),
            opt(self.delay_ms.p99, 2),
            opt(self.ttff_ms.p50, 0),
            opt(self.ttff_ms.p95, 0),
            opt(self.server.rss_per_viewer_kib, 0),
            self.publisher.plis,
            opt(self.generator.cpu_us_per_packet, 2),
            opt(self.viewer_feedback.nacks_per_viewer, 1),
            self.viewer_feedback.totals.plis,
            self.publisher.keyframes_forced,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_from_samples_uses_nearest_rank() {
        let samples: Vec<u64> = (1..=20).map(|i| i * 1_000_000).collect();
        let latency = LatencyMs::from_samples(samples);
        assert_eq!(latency.count, 20);
        assert_eq!(latency.p50, Some(10.0));
        assert_eq!(latency.p95, Some(19.0));
        assert_eq!(latency.max, Some(20.0));
        assert_eq!(latency.mean, Some(10.5));
        assert_eq!(LatencyMs::from_samples(vec![]).p50, None);
    }
}

/// Where a scenario's report goes (shared by every scenario's options).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ReportArgs {
    /// Write the report as JSON here.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
    /// Append the Markdown row here.
    #[arg(long)]
    pub markdown: Option<std::path::PathBuf>,
    /// Scenario label for the report.
    #[arg(long)]
    pub label: Option<String>,
    /// No progress line.
    #[arg(long)]
    pub quiet: bool,
}
