//! Samples of the server under test and of ourselves: CPU ticks and RSS from `/proc`, and
//! the server's counters from its Prometheus `/metrics` (when it is Queqiao).

use crate::load::measure::{ProcStat, parse_vm_rss_kib, prometheus_value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Server counters read from `/metrics` (`queqiao_sfu_<name>_total`).
pub const COUNTERS: &[&str] = &[
    "rtp_forwarded",
    "rtp_in",
    "datagrams_in",
    "datagrams_out",
    "send_errors",
    "forward_write_errors",
    "forward_waiting_for_keyframe",
    "keyframe_cache_hits",
    "keyframe_cache_misses",
    "keyframe_requests",
    "plis_sent",
    "nacks_received",
    "retransmissions",
    "retransmission_misses",
    "rtp_duplicates",
    "rtp_too_old",
];

/// Clock ticks per second of `/proc/PID/stat` times.
pub fn ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100)
}

/// CPU ticks (user, kernel) and RSS of a process (`"self"` or a PID).
pub fn process_sample(pid: &str) -> (Option<ProcStat>, Option<u64>) {
    let cpu = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|text| ProcStat::parse(&text));
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|text| parse_vm_rss_kib(&text));
    (cpu, rss)
}

/// One sample of the server.
#[derive(Debug, Clone)]
pub struct ServerSample {
    /// When it was taken.
    pub at: Instant,
    /// utime and stime ticks, if a PID was given.
    pub cpu: Option<ProcStat>,
    /// VmRSS in KiB, if a PID was given.
    pub rss_kib: Option<u64>,
    /// Counters from `/metrics`, if reachable.
    pub counters: BTreeMap<&'static str, f64>,
}

impl ServerSample {
    /// `counter` in `later` minus in `self`.
    pub fn counter_delta(&self, later: &ServerSample, counter: &str) -> Option<f64> {
        Some(later.counters.get(counter)? - self.counters.get(counter)?)
    }

    /// CPU ticks (user + kernel) between `self` and `later`.
    pub fn cpu_delta(&self, later: &ServerSample) -> Option<u64> {
        Some(later.cpu?.total().saturating_sub(self.cpu?.total()))
    }

    /// Kernel-mode ticks between `self` and `later`.
    pub fn system_delta(&self, later: &ServerSample) -> Option<u64> {
        Some(later.cpu?.stime.saturating_sub(self.cpu?.stime))
    }
}

/// The once-a-second figures of a progress line: the server's and this generator's CPU
/// since the previous tick.
pub struct ProgressClock {
    previous: ServerSample,
    previous_self: Option<u64>,
    ticks_per_second: u64,
}

/// One progress tick.
pub struct ProgressTick {
    /// The sample before this one.
    pub previous: ServerSample,
    /// This sample.
    pub sample: ServerSample,
    /// Seconds between them.
    pub seconds: f64,
    /// `/proc` clock ticks per second.
    pub ticks_per_second: u64,
    generator_ticks: Option<u64>,
}

impl ProgressClock {
    /// Starts from `first`.
    pub fn new(first: ServerSample) -> Self {
        ProgressClock {
            previous: first,
            previous_self: process_sample("self").0.map(|s| s.total()),
            ticks_per_second: ticks_per_second(),
        }
    }

    /// Moves to `sample`.
    pub fn tick(&mut self, sample: ServerSample) -> ProgressTick {
        let self_ticks = process_sample("self").0.map(|s| s.total());
        let generator_ticks = match (self.previous_self, self_ticks) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a)),
            _ => None,
        };
        self.previous_self = self_ticks;
        let previous = std::mem::replace(&mut self.previous, sample.clone());
        ProgressTick {
            seconds: sample
                .at
                .duration_since(previous.at)
                .as_secs_f64()
                .max(1e-3),
            previous,
            sample,
            ticks_per_second: self.ticks_per_second,
            generator_ticks,
        }
    }
}

impl ProgressTick {
    /// The server's CPU ticks in this tick.
    pub fn server_ticks(&self) -> Option<u64> {
        self.previous.cpu_delta(&self.sample)
    }

    /// `ticks` as a percentage of one core over this tick.
    pub fn percent(&self, ticks: u64) -> f64 {
        ticks as f64 / self.ticks_per_second as f64 / self.seconds * 100.0
    }

    /// The server's RSS in MiB, or `–`.
    pub fn rss_mib(&self) -> String {
        self.sample
            .rss_kib
            .map_or_else(|| "–".into(), |k| (k / 1024).to_string())
    }

    /// This generator's CPU, `N%` or `–`.
    pub fn generator(&self) -> String {
        self.generator_ticks
            .map_or_else(|| "–".into(), |t| format!("{:.0}%", self.percent(t)))
    }
}

/// Reads the server's `/proc` entries and `/metrics`.
#[derive(Clone)]
pub struct ServerProbe {
    pid: Option<u32>,
    metrics_url: Option<String>,
    http: reqwest::Client,
}

impl ServerProbe {
    /// A probe for `pid` (optional) and `metrics_url` (optional).
    pub fn new(pid: Option<u32>, metrics_url: Option<String>) -> Self {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap_or_default();
        Self {
            pid,
            metrics_url,
            http,
        }
    }

    /// Whether a PID was given.
    pub fn has_pid(&self) -> bool {
        self.pid.is_some()
    }

    /// Takes one sample; unreachable parts are left empty.
    pub async fn sample(&self) -> ServerSample {
        let at = Instant::now();
        let (cpu, rss_kib) = match self.pid {
            Some(pid) => process_sample(&pid.to_string()),
            None => (None, None),
        };
        let mut counters = BTreeMap::new();
        if let Some(url) = &self.metrics_url {
            let text = match self.http.get(url).send().await {
                Ok(response) if response.status().is_success() => response.text().await.ok(),
                _ => None,
            };
            if let Some(text) = text {
                for &name in COUNTERS {
                    if let Some(value) =
                        prometheus_value(&text, &format!("queqiao_sfu_{name}_total"))
                    {
                        counters.insert(name, value);
                    }
                }
            }
        }
        ServerSample {
            at,
            cpu,
            rss_kib,
            counters,
        }
    }
}
