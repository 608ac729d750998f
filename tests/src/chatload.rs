//! The `chat` scenario of the load generator: N WebSocket members in one room, a chat
//! message rate spread over logged-in senders, an optional like storm, and the delay from
//! each send to every member's receive.
//!
//! Senders and receivers live in this process, so a message's send instant is looked up by
//! its `client_id` (echoed back as `ref`) without touching the protocol.

use crate::http::HttpClient;
use anyhow::{Context, bail};
use futures::{SinkExt, StreamExt};
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// What to run.
#[derive(Debug, Clone)]
pub struct ChatLoadOptions {
    /// Server base URL (`http://127.0.0.1:8080`).
    pub base: String,
    /// An existing public room.
    pub room: String,
    /// Anonymous receiving members.
    pub members: usize,
    /// How many of them parse every event and time every delivery, spread evenly over the
    /// join order (0: all). The others read their socket raw every 100 ms and throw the
    /// bytes away: the server does the same work for them, but the generator, which has
    /// one core like the server, does not spend ~2 µs parsing each of their events (with
    /// all 2,000 parsing, the generator's own queueing was the delay being measured).
    pub measured_members: usize,
    /// Logged-in senders (registered by the tool).
    pub senders: usize,
    /// Chat messages per second over all senders.
    pub messages_per_sec: f64,
    /// Like taps per second over all senders (sent 10 taps per message).
    pub likes_per_sec: f64,
    /// Measured time.
    pub duration: Duration,
    /// Server process for CPU and memory figures.
    pub server_pid: Option<u32>,
    /// Print a progress line every second.
    pub progress: bool,
}

/// What was measured.
#[derive(Debug, Clone, Serialize)]
pub struct ChatLoadReport {
    /// Receiving members connected.
    pub members: usize,
    /// Senders connected.
    pub senders: usize,
    /// Chat messages sent in the window.
    pub messages_sent: u64,
    /// Chat deliveries counted (message × member).
    pub deliveries: u64,
    /// Deliveries expected (messages × members).
    pub deliveries_expected: u64,
    /// Send → receive delay, 50th percentile (ms).
    pub delay_p50_ms: f64,
    /// 99th percentile (ms).
    pub delay_p99_ms: f64,
    /// Worst (ms).
    pub delay_max_ms: f64,
    /// Like taps sent.
    pub likes_sent: u64,
    /// `likes` events each member received per second.
    pub like_events_per_member_per_sec: f64,
    /// Server CPU over the window, percent of one core.
    pub server_cpu_percent: Option<f64>,
    /// Server resident memory at the end (MiB).
    pub server_rss_mib: Option<f64>,
    /// Server memory growth from before the members joined to the end, per member (KiB).
    /// (Measured after the senders registered: argon2 hashing leaves tens of MiB in the
    /// allocator that are not the members' cost.)
    pub server_rss_per_member_kib: Option<f64>,
    /// `error` events received by senders (rate limits would show here).
    pub sender_errors: u64,
    /// Members disconnected by the server.
    pub disconnected: usize,
    /// Members that timed deliveries (the rest drained their sockets raw).
    pub measured_members: usize,
    /// Bytes the draining members read over the window, per member per second.
    pub drained_bytes_per_member_per_sec: f64,
    /// Length of the measurement window (s).
    pub window_secs: f64,
    /// This load generator's CPU over the window, percent of one core (if it nears 100 %
    /// the delays include the generator's own queueing).
    pub generator_cpu_percent: Option<f64>,
}

impl ChatLoadReport {
    /// The header of [`Self::markdown_row`]'s table.
    pub fn markdown_header() -> &'static str {
        "| scenario | members | chat msg/s | like taps/s | delivered | delay p50 / p99 / max ms | like events/member/s | server CPU | server RSS KiB/member | generator CPU | sender errors |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    }

    /// One Markdown table row.
    pub fn markdown_row(&self, label: &str) -> String {
        let percent = |v: Option<f64>| v.map_or("–".into(), |c| format!("{c:.1} %"));
        let window = self.window_secs.max(f64::EPSILON);
        format!(
            "| {label} | {} | {:.0} | {:.0} | {:.4} | {:.1} / {:.1} / {:.1} | {:.1} | {} | {} | {} | {} |",
            self.members,
            self.messages_sent as f64 / window,
            self.likes_sent as f64 / window,
            self.deliveries as f64 / self.deliveries_expected.max(1) as f64,
            self.delay_p50_ms,
            self.delay_p99_ms,
            self.delay_max_ms,
            self.like_events_per_member_per_sec,
            percent(self.server_cpu_percent),
            self.server_rss_per_member_kib
                .map_or("–".into(), |m| format!("{m:.0}")),
            percent(self.generator_cpu_percent),
            self.sender_errors,
        )
    }
}

/// Times a sender's registration is retried when the server is busy hashing (503).
const REGISTER_RETRIES: u32 = 30;
/// Pause before such a retry.
const REGISTER_RETRY_PAUSE: Duration = Duration::from_millis(500);

/// Runs the scenario.
pub async fn run(options: ChatLoadOptions) -> anyhow::Result<ChatLoadReport> {
    let run_id: u32 = rand::random();
    let prefix = format!("lg{run_id:x}-");
    let http = HttpClient::new();
    // Senders: registered accounts (registration hashes passwords, so a few at a time).
    let mut tokens = Vec::with_capacity(options.senders);
    for chunk in (0..options.senders).collect::<Vec<_>>().chunks(8) {
        let results = futures::future::join_all(chunk.iter().map(|i| {
            let (http, base) = (http.clone(), options.base.clone());
            let name = format!("load{run_id:x}x{i}");
            async move {
                let body = serde_json::json!({"username": name, "password": "load-password-1", "nickname": name});
                let url = format!("{base}/api/auth/register");
                // A server under its hashing cap answers 503 with Retry-After: come back.
                let mut attempt = 0;
                loop {
                    let answer = http.json(reqwest::Method::POST, &url, None, Some(body.clone())).await;
                    match answer {
                        Ok((503, _)) if attempt < REGISTER_RETRIES => {
                            attempt += 1;
                            tokio::time::sleep(REGISTER_RETRY_PAUSE).await;
                        }
                        other => break other,
                    }
                }
            }
        }))
        .await;
        for result in results {
            let (status, body) = result?;
            if status != 201 {
                bail!("registering a sender failed ({status}): {body}");
            }
            tokens.push(body["token"].as_str().context("token")?.to_owned());
        }
    }

    let rss_before_members = options.server_pid.and_then(process_rss_kib);
    let ws_base = options.base.replacen("http", "ws", 1);
    let start = Instant::now();
    let max_messages =
        (options.messages_per_sec * (options.duration.as_secs_f64() + 30.0)) as usize + 16;
    let send_times: Arc<Vec<AtomicU64>> =
        Arc::new((0..max_messages).map(|_| AtomicU64::new(0)).collect());
    let stats = Arc::new(Counters::default());
    let measuring = Arc::new(AtomicU64::new(0));

    // Receivers, each with its own sample buffer (no contention).
    let measured = if options.measured_members == 0 {
        options.members
    } else {
        options.measured_members.min(options.members)
    };
    let stride = (options.members / measured.max(1)).max(1);
    let mut buffers: Vec<Arc<std::sync::Mutex<Vec<u32>>>> = Vec::with_capacity(measured);
    let connected = Arc::new(AtomicUsize::new(0));
    let mut receivers = Vec::with_capacity(options.members);
    let mut measured_count = 0usize;
    let mut index = 0usize;
    for chunk in (0..options.members).collect::<Vec<_>>().chunks(50) {
        let batch = futures::future::join_all(chunk.iter().map(|_| {
            tokio_tungstenite::connect_async(format!("{ws_base}/ws/rooms/{}", options.room))
        }))
        .await;
        for result in batch {
            let (stream, _) = result.context("connecting a member")?;
            connected.fetch_add(1, Ordering::Relaxed);
            let timed = index.is_multiple_of(stride) && measured_count < measured;
            index += 1;
            if !timed {
                let (stats, measuring) = (Arc::clone(&stats), Arc::clone(&measuring));
                receivers.push(tokio::spawn(drain_member(stream, stats, measuring)));
                continue;
            }
            measured_count += 1;
            let buffer = Arc::new(std::sync::Mutex::new(Vec::new()));
            buffers.push(Arc::clone(&buffer));
            let (send_times, stats, prefix, measuring) = (
                Arc::clone(&send_times),
                Arc::clone(&stats),
                prefix.clone(),
                Arc::clone(&measuring),
            );
            receivers.push(tokio::spawn(async move {
                let (_sink, mut source) = stream.split();
                let needle = format!("\"ref\":\"{prefix}");
                while let Some(Ok(message)) = source.next().await {
                    let Message::Text(text) = message else {
                        continue;
                    };
                    let text = text.as_str();
                    if let Some(at) = text.find(&needle) {
                        let rest = &text[at + needle.len()..];
                        let digits: &str = rest.split('"').next().unwrap_or("");
                        if let Ok(n) = digits.parse::<usize>()
                            && let Some(sent) = send_times.get(n)
                        {
                            let sent = sent.load(Ordering::Relaxed);
                            if sent != 0 && measuring.load(Ordering::Relaxed) == 1 {
                                let now = start.elapsed().as_micros() as u64;
                                if let Ok(mut delays) = buffer.lock() {
                                    delays.push(now.saturating_sub(sent) as u32);
                                }
                                stats.deliveries.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    } else if text.contains("\"type\":\"likes\"")
                        && measuring.load(Ordering::Relaxed) == 1
                    {
                        stats.like_events.fetch_add(1, Ordering::Relaxed);
                    }
                }
                stats.disconnected.fetch_add(1, Ordering::Relaxed);
            }));
        }
    }

    // Senders.
    let mut sender_queues = Vec::with_capacity(tokens.len());
    for token in &tokens {
        let (stream, _) = tokio_tungstenite::connect_async(format!(
            "{ws_base}/ws/rooms/{}?token={token}",
            options.room
        ))
        .await
        .context("connecting a sender")?;
        let (mut sink, mut source) = stream.split();
        let (queue, mut outgoing) = mpsc::unbounded_channel::<String>();
        let stats = Arc::clone(&stats);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    text = outgoing.recv() => match text {
                        Some(text) => {
                            if sink.send(Message::Text(text.into())).await.is_err() {
                                break;
                            }
                        }
                        None => break,
                    },
                    incoming = source.next() => match incoming {
                        Some(Ok(Message::Text(text))) => {
                            if text.as_str().contains("\"type\":\"error\"") {
                                stats.sender_errors.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Some(Ok(_)) => {}
                        _ => break,
                    },
                }
            }
        });
        sender_queues.push(queue);
    }
    if sender_queues.is_empty() {
        bail!("at least one sender is needed");
    }

    // Let the room settle, then measure.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu_before = options.server_pid.and_then(process_cpu_seconds);
    let own_cpu_before = process_cpu_seconds(std::process::id());
    let window_start = Instant::now();
    measuring.store(1, Ordering::Relaxed);
    let mut messages_sent = 0u64;
    let mut likes_sent = 0u64;
    let message_interval = if options.messages_per_sec > 0.0 {
        Some(Duration::from_secs_f64(1.0 / options.messages_per_sec))
    } else {
        None
    };
    let like_messages_per_sec = options.likes_per_sec / 10.0;
    let mut next_message = window_start;
    let mut like_credit = 0.0f64;
    let mut last_tick = window_start;
    let mut next_progress = window_start + Duration::from_secs(1);
    while window_start.elapsed() < options.duration {
        let now = Instant::now();
        if let Some(interval) = message_interval {
            while next_message <= now && (messages_sent as usize) < max_messages {
                let n = messages_sent as usize;
                send_times[n].store(start.elapsed().as_micros() as u64, Ordering::Relaxed);
                let text = format!(
                    r#"{{"type":"chat","text":"load message {n}","client_id":"{prefix}{n}"}}"#
                );
                let _ = sender_queues[n % sender_queues.len()].send(text);
                messages_sent += 1;
                next_message += interval;
            }
        }
        like_credit += like_messages_per_sec * now.duration_since(last_tick).as_secs_f64();
        last_tick = now;
        while like_credit >= 1.0 {
            like_credit -= 1.0;
            let index = (likes_sent / 10) as usize % sender_queues.len();
            let _ = sender_queues[index].send(r#"{"type":"like","count":10}"#.to_owned());
            likes_sent += 10;
        }
        if options.progress && now >= next_progress {
            next_progress += Duration::from_secs(1);
            eprintln!(
                "[chat] t={:>3.0}s sent {messages_sent} msgs, {likes_sent} likes, deliveries {}, members {}",
                window_start.elapsed().as_secs_f64(),
                stats.deliveries.load(Ordering::Relaxed),
                connected.load(Ordering::Relaxed) as u64
                    - stats.disconnected.load(Ordering::Relaxed),
            );
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // The window's CPU; then let the last messages arrive and stop counting.
    let window = window_start.elapsed().as_secs_f64();
    let cpu_after = options.server_pid.and_then(process_cpu_seconds);
    let own_cpu_after = process_cpu_seconds(std::process::id());
    let like_events = stats.like_events.load(Ordering::Relaxed);
    let drained = stats.drained_bytes.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    measuring.store(0, Ordering::Relaxed);
    let rss_after = options.server_pid.and_then(process_rss_kib);
    let server_rss_mib = rss_after.map(|k| k as f64 / 1024.0);
    let server_rss_per_member_kib = match (rss_before_members, rss_after) {
        (Some(before), Some(after)) if options.members > 0 => {
            Some(after.saturating_sub(before) as f64 / options.members as f64)
        }
        _ => None,
    };
    let disconnected = stats.disconnected.load(Ordering::Relaxed) as usize;

    drop(sender_queues);
    for receiver in &receivers {
        receiver.abort();
    }
    let mut delays: Vec<u32> = Vec::new();
    for buffer in &buffers {
        if let Ok(samples) = buffer.lock() {
            delays.extend_from_slice(&samples);
        }
    }
    Ok(ChatLoadReport {
        members: options.members,
        senders: options.senders,
        messages_sent,
        deliveries: stats.deliveries.load(Ordering::Relaxed),
        deliveries_expected: messages_sent * (measured_count as u64),
        delay_p50_ms: percentile(&mut delays, 0.50),
        delay_p99_ms: percentile(&mut delays, 0.99),
        delay_max_ms: percentile(&mut delays, 1.0),
        likes_sent,
        like_events_per_member_per_sec: like_events as f64 / measured_count.max(1) as f64 / window,
        measured_members: measured_count,
        drained_bytes_per_member_per_sec: drained as f64
            / (options.members - measured_count).max(1) as f64
            / window,
        server_cpu_percent: match (cpu_before, cpu_after) {
            (Some(a), Some(b)) => Some((b - a) / window * 100.0),
            _ => None,
        },
        server_rss_mib,
        server_rss_per_member_kib,
        sender_errors: stats.sender_errors.load(Ordering::Relaxed),
        disconnected,
        window_secs: window,
        generator_cpu_percent: match (own_cpu_before, own_cpu_after) {
            (Some(a), Some(b)) => Some((b - a) / window * 100.0),
            _ => None,
        },
    })
}

/// A member that only keeps its socket empty: reads whatever has arrived every 100 ms
/// (the kernel buffers ~5 KiB meanwhile), counts the bytes, and notices a disconnect.
async fn drain_member(
    stream: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    stats: Arc<Counters>,
    measuring: Arc<AtomicU64>,
) {
    let tokio_tungstenite::MaybeTlsStream::Plain(tcp) = stream.into_inner() else {
        stats.disconnected.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        loop {
            match tcp.try_read(&mut buffer) {
                Ok(0) => {
                    stats.disconnected.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Ok(n) => {
                    if measuring.load(Ordering::Relaxed) == 1 {
                        stats.drained_bytes.fetch_add(n as u64, Ordering::Relaxed);
                    }
                }
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    stats.disconnected.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }
    }
}

#[derive(Default)]
struct Counters {
    drained_bytes: AtomicU64,
    deliveries: AtomicU64,
    like_events: AtomicU64,
    sender_errors: AtomicU64,
    disconnected: AtomicU64,
}

/// The `q` quantile of microsecond samples, in milliseconds (0 for none).
pub fn percentile(samples: &mut [u32], q: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_unstable();
    let index = ((samples.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
    samples[index] as f64 / 1000.0
}

/// utime + stime of a process, in seconds (from `/proc/PID/stat`).
pub fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_cpu(&stat).map(|ticks| ticks as f64 / clock_ticks_per_second())
}

/// Parses utime+stime (clock ticks) from a `/proc/PID/stat` line.
pub fn parse_stat_cpu(stat: &str) -> Option<u64> {
    // The command name may contain spaces: fields start after the last ')'.
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the name: state(3) … utime is field 14, stime 15 (1-based) → index 11, 12 here.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Resident memory of a process in KiB (from `/proc/PID/status`).
pub fn process_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_proc_parsing() {
        let mut samples = vec![5000, 1000, 3000, 2000, 4000];
        assert_eq!(percentile(&mut samples, 0.5), 3.0);
        assert_eq!(percentile(&mut samples, 1.0), 5.0);
        assert_eq!(percentile(&mut [], 0.99), 0.0);
        let stat = "1234 (queqiao (x)) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 100 1000 200";
        assert_eq!(parse_stat_cpu(stat), Some(300));
    }
}
