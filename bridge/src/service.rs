//! The bridge service: the async shell around the sans-IO muxers.
//!
//! ```text
//!  SfuEvent::Live / Offline ──► supervisor ──spawns──► one room task per live room
//!                                                      │ owns: sfu tap, RoomPipeline, FlvMuxer,
//!                                                      │       HlsMuxer, LlHlsMuxer, FLV viewer
//!                                                      │       queues, parked LL-HLS reloads
//!  HTTP handlers (crate::http) ──RoomCommand (mpsc)────┤
//!  RTMP push sessions (crate::rtmp_push) ──join FLV────┤
//!  recording writer task (blocking file I/O) ◄─────────┘
//!  BridgeEvent (recording started/finished, RTMP status) ──► the embedding server (signaling)
//! ```
//!
//! One task owns each room's state; nothing on the media path takes a lock or awaits
//! another task. The registry of rooms (a `RwLock<HashMap>`) is touched only when a room
//! starts or ends and when an HTTP request looks its room up. HTTP viewers, RTMP sessions
//! and the recorder receive shared [`bytes::Bytes`] through bounded queues; a consumer
//! that falls behind is dropped and counted, never waited for.
//!
//! The bridge does not know the database: what the embedding server must persist
//! (recordings, RTMP target status) leaves through [`BridgeEvent`]s.

use crate::hls::HlsConfig;
use crate::llhls::LlHlsConfig;
use crate::pipeline::PipelineConfig;
use crate::room::{RoomCommand, RoomStatus, RoomTask};
use crate::rtmp_push::{RtmpPushConfig, RtmpTarget, RtmpTargetStatus};
use serde::Serialize;
use sfu::{RoomId, SfuEvent, SfuHandle};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

/// Bridge service settings.
#[derive(Debug, Clone)]
pub struct BridgeConfig {
    /// Recordings are written under `data_dir/recordings/{room}/{recording}/`.
    pub data_dir: PathBuf,
    /// Record every show (HLS VOD on local disk).
    pub record: bool,
    /// The RTP → media unit pipeline.
    pub pipeline: PipelineConfig,
    /// Live HLS (MPEG-TS).
    pub hls: HlsConfig,
    /// LL-HLS (fMP4 parts).
    pub llhls: LlHlsConfig,
    /// FLV chunks (tags) queued per HTTP-FLV viewer before it is dropped as too slow.
    pub flv_viewer_queue: usize,
    /// Most HTTP-FLV viewers (and RTMP sessions) of one room.
    pub max_flv_viewers_per_room: usize,
    /// Longest wait of a blocking playlist reload or a preload-hinted part.
    pub blocking_reload_timeout: Duration,
    /// How long a room's ended outputs stay servable (playlists with `EXT-X-ENDLIST`)
    /// after its publisher left; a publisher coming back within it starts a new show in
    /// the same task.
    pub linger: Duration,
    /// Least spacing of keyframe requests the bridge sends to the SFU (which coalesces
    /// them further with the WebRTC viewers' PLIs).
    pub keyframe_request_interval: Duration,
    /// The segmenters ask for a keyframe near a segment's target duration only when no
    /// keyframe arrived for this long: an encoder with a GOP within it (2 s is typical)
    /// gets no PLI from the bridge at all, segments just follow its GOP, while an
    /// encoder that sends keyframes only on request (browsers) is asked in time for
    /// every segment to start with one. Start-up and gaps (a keyframe really missing)
    /// ask at once, rate-limited by `keyframe_request_interval`. Whatever is set, the
    /// bridge asks at least [`KEYFRAME_RESPONSE_ALLOWANCE`] before either segmenter
    /// would have to cut without a keyframe ([`BridgeConfig::keyframe_overdue_after`]):
    /// a segment starting without one stalls hls.js for seconds.
    pub segment_keyframe_max_gap: Duration,
    /// Commands queued per room (HTTP requests waiting for the room task).
    pub command_queue: usize,
    /// RTMP push sessions.
    pub rtmp: RtmpPushConfig,
    /// RTMP targets for every room: URL templates where `{room}` is replaced by the
    /// room id (ids `default-N`), besides each room's own targets.
    pub rtmp_templates: Vec<String>,
    /// Which addresses RTMP pushes may connect to (public ones, plus the operator's
    /// allow-list).
    pub rtmp_policy: crate::target_policy::TargetPolicy,
    /// A new recording is refused (with a logged reason) while the recordings' disk has
    /// less free space than this (0: no check).
    pub recordings_min_free_bytes: u64,
}

impl Default for BridgeConfig {
    fn default() -> Self {
        BridgeConfig {
            data_dir: PathBuf::from("data"),
            record: true,
            pipeline: PipelineConfig::default(),
            hls: HlsConfig::default(),
            llhls: LlHlsConfig::default(),
            flv_viewer_queue: 512,
            max_flv_viewers_per_room: 5_000,
            blocking_reload_timeout: Duration::from_secs(6),
            linger: Duration::from_secs(20),
            keyframe_request_interval: Duration::from_millis(500),
            segment_keyframe_max_gap: Duration::from_millis(2_200),
            command_queue: 4_096,
            rtmp: RtmpPushConfig::default(),
            rtmp_templates: Vec::new(),
            rtmp_policy: crate::target_policy::TargetPolicy::default(),
            recordings_min_free_bytes: 0,
        }
    }
}

/// Time allowed between the bridge asking for a keyframe and the keyframe reaching
/// the segmenters: SFU coalescing, the PLI's trip, the encoder's next frame and the
/// keyframe's own trip, with room for a loaded machine.
pub const KEYFRAME_RESPONSE_ALLOWANCE: Duration = Duration::from_millis(800);

impl BridgeConfig {
    /// How long without a keyframe before the bridge asks for one: the configured
    /// `segment_keyframe_max_gap`, but never so late that the keyframe could miss the
    /// forced cut of a TS or LL-HLS segment.
    pub fn keyframe_overdue_after(&self) -> Duration {
        let before_forced_cut = |max_segment: Duration| {
            max_segment
                .saturating_sub(KEYFRAME_RESPONSE_ALLOWANCE)
                .max(Duration::from_millis(100))
        };
        self.segment_keyframe_max_gap
            .min(before_forced_cut(self.llhls.max_segment))
            .min(before_forced_cut(self.hls.ts.max_segment_duration))
    }

    /// The directory recordings go to.
    pub fn recordings_dir(&self) -> PathBuf {
        self.data_dir.join("recordings")
    }
}

/// A show's recording, as reported to the embedding server.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordingInfo {
    /// The room.
    pub room: String,
    /// Unique within the room; the directory name (`{start ms}-{epoch}`).
    pub id: String,
    /// The playlist's path on this server (`/recordings/{room}/{id}/index.m3u8`).
    pub playlist_path: String,
    /// The directory on disk.
    pub dir: PathBuf,
    /// Start of the show (Unix ms).
    pub started_at: i64,
    /// End of the show (Unix ms), once finished.
    pub ended_at: Option<i64>,
    /// Recorded media duration in seconds.
    pub duration_secs: f64,
    /// Segments written.
    pub segments: u64,
    /// Whether the recording has video (H.264).
    pub video: bool,
    /// Whether it has audio (AAC).
    pub audio: bool,
    /// The show's largest video width (0 without video).
    pub width: u32,
    /// The show's largest video height (0 without video).
    pub height: u32,
    /// The last write error, if the recording is incomplete.
    pub error: Option<String>,
}

/// What the embedding server should persist or show.
#[derive(Debug, Clone)]
pub enum BridgeEvent {
    /// A show started recording.
    RecordingStarted(RecordingInfo),
    /// A recording was finished (`EXT-X-ENDLIST` written) or abandoned after an error.
    RecordingFinished(RecordingInfo),
    /// An RTMP push target changed state.
    RtmpStatus {
        /// The room.
        room: String,
        /// The target's new status.
        status: RtmpTargetStatus,
    },
}

/// Counters and gauges for `/metrics`.
#[derive(Debug, Default)]
pub struct BridgeStats {
    /// Room tasks running (gauge).
    pub rooms_active: AtomicU64,
    /// Room tasks started.
    pub rooms_started: AtomicU64,
    /// Shows bridged.
    pub shows: AtomicU64,
    /// HTTP-FLV viewers connected (gauge).
    pub flv_viewers: AtomicU64,
    /// HTTP-FLV viewers that joined.
    pub flv_viewers_joined: AtomicU64,
    /// HTTP-FLV viewers (and RTMP sessions) dropped because their queue filled up.
    pub flv_viewers_dropped_slow: AtomicU64,
    /// FLV joins refused (room at its viewer limit).
    pub flv_viewers_refused: AtomicU64,
    /// FLV tags fanned out (per tag, not per viewer).
    pub flv_tags: AtomicU64,
    /// FLV chunks delivered to viewer queues (per viewer).
    pub flv_chunks_queued: AtomicU64,
    /// HLS (MPEG-TS) segments completed.
    pub hls_segments: AtomicU64,
    /// LL-HLS parts completed.
    pub llhls_parts: AtomicU64,
    /// LL-HLS segments completed.
    pub llhls_segments: AtomicU64,
    /// Blocking playlist reloads that had to wait.
    pub llhls_blocking_reloads: AtomicU64,
    /// Blocking reloads answered with 400 (too far ahead).
    pub llhls_reloads_too_far_ahead: AtomicU64,
    /// Recording segments written.
    pub recording_segments: AtomicU64,
    /// Recording write failures.
    pub recording_errors: AtomicU64,
    /// Recordings started.
    pub recordings_started: AtomicU64,
    /// Recordings being written (gauge).
    pub recordings_active: AtomicU64,
    /// Keyframe requests sent to the SFU.
    pub keyframe_requests: AtomicU64,
    /// RTMP sessions publishing (gauge).
    pub rtmp_publishing: AtomicU64,
    /// RTMP connection attempts after a failure.
    pub rtmp_reconnects: AtomicU64,
    /// RTMP session failures.
    pub rtmp_failures: AtomicU64,
    /// RTMP bytes sent.
    pub rtmp_bytes_sent: AtomicU64,
    /// HTTP requests refused because a room's command queue was full.
    pub commands_refused: AtomicU64,
    /// Events for the embedding server lost because its queue was full.
    pub events_dropped: AtomicU64,
    /// CPU time spent in room tasks (media processing), microseconds.
    pub room_cpu_micros: AtomicU64,
    /// Video units through the pipeline.
    pub video_units: AtomicU64,
    /// Audio frames through the pipeline (AAC).
    pub audio_units: AtomicU64,
    /// Bridge delay of FLV tags: last packet of the frame received → queued to viewers.
    pub flv_delay: Histogram,
    /// LL-HLS part delay: first frame of a part received → part servable.
    pub llhls_part_delay: Histogram,
    /// LL-HLS part delay minus the part's own duration.
    pub llhls_part_overhead: Histogram,
    /// Blocking reload: part ready → response leaving the handler.
    pub llhls_reload_answer: Histogram,
}

impl BridgeStats {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn sub(counter: &AtomicU64, n: u64) {
        let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
            Some(v.saturating_sub(n))
        });
    }

    /// `(name, value, is_gauge)` for every counter and gauge.
    pub fn pairs(&self) -> Vec<(&'static str, u64, bool)> {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        vec![
            ("rooms_active", get(&self.rooms_active), true),
            ("rooms_started", get(&self.rooms_started), false),
            ("shows", get(&self.shows), false),
            ("flv_viewers", get(&self.flv_viewers), true),
            ("flv_viewers_joined", get(&self.flv_viewers_joined), false),
            (
                "flv_viewers_dropped_slow",
                get(&self.flv_viewers_dropped_slow),
                false,
            ),
            ("flv_viewers_refused", get(&self.flv_viewers_refused), false),
            ("flv_tags", get(&self.flv_tags), false),
            ("flv_chunks_queued", get(&self.flv_chunks_queued), false),
            ("hls_segments", get(&self.hls_segments), false),
            ("llhls_parts", get(&self.llhls_parts), false),
            ("llhls_segments", get(&self.llhls_segments), false),
            (
                "llhls_blocking_reloads",
                get(&self.llhls_blocking_reloads),
                false,
            ),
            (
                "llhls_reloads_too_far_ahead",
                get(&self.llhls_reloads_too_far_ahead),
                false,
            ),
            ("recording_segments", get(&self.recording_segments), false),
            ("recording_errors", get(&self.recording_errors), false),
            ("recordings_started", get(&self.recordings_started), false),
            ("recordings_active", get(&self.recordings_active), true),
            ("keyframe_requests", get(&self.keyframe_requests), false),
            ("rtmp_publishing", get(&self.rtmp_publishing), true),
            ("rtmp_reconnects", get(&self.rtmp_reconnects), false),
            ("rtmp_failures", get(&self.rtmp_failures), false),
            ("rtmp_bytes_sent", get(&self.rtmp_bytes_sent), false),
            ("commands_refused", get(&self.commands_refused), false),
            ("events_dropped", get(&self.events_dropped), false),
            ("room_cpu_micros", get(&self.room_cpu_micros), false),
            ("video_units", get(&self.video_units), false),
            ("audio_units", get(&self.audio_units), false),
        ]
    }

    /// `(name, histogram)` for every latency histogram.
    pub fn histograms(&self) -> [(&'static str, &Histogram); 4] {
        [
            ("flv_delay_seconds", &self.flv_delay),
            ("llhls_part_delay_seconds", &self.llhls_part_delay),
            ("llhls_part_overhead_seconds", &self.llhls_part_overhead),
            ("llhls_reload_answer_seconds", &self.llhls_reload_answer),
        ]
    }
}

/// Upper bounds of the latency histogram buckets, in milliseconds.
pub const HISTOGRAM_BOUNDS_MS: [u64; 14] =
    [1, 2, 5, 10, 20, 35, 50, 75, 100, 150, 200, 250, 350, 500];

/// A fixed-bucket latency histogram (lock-free; Prometheus-style cumulative on export).
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; 15],
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, value: Duration) {
        let ms = value.as_secs_f64() * 1000.0;
        let index = HISTOGRAM_BOUNDS_MS
            .iter()
            .position(|&bound| ms <= bound as f64)
            .unwrap_or(HISTOGRAM_BOUNDS_MS.len());
        self.buckets[index].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(
            value.as_micros().min(u128::from(u64::MAX)) as u64,
            Ordering::Relaxed,
        );
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Per-bucket counts (not cumulative; the last is `+Inf`).
    pub fn buckets(&self) -> [u64; 15] {
        std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed))
    }

    /// Sum of observations in seconds.
    pub fn sum_secs(&self) -> f64 {
        self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// An estimate of quantile `q` (0–1): the upper bound of the bucket it falls in.
    pub fn quantile_ms(&self, q: f64) -> Option<u64> {
        let buckets = self.buckets();
        let total: u64 = buckets.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(HISTOGRAM_BOUNDS_MS.get(i).copied().unwrap_or(u64::MAX));
            }
        }
        None
    }
}

/// Why a room's bridge output cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutputError {
    /// No publisher is live in the room (or the room does not exist).
    #[error("room {0} is not live")]
    NotLive(String),
    /// The publisher's video cannot be bridged (VP8): FLV/HLS players need H.264.
    #[error("{0}")]
    Unbridgeable(String),
    /// The stream has started but its first playlist or segment is not ready yet.
    #[error("the stream is starting; retry shortly")]
    NotReady,
    /// The segment, part or file does not exist (any more).
    #[error("{0}")]
    NotFound(String),
    /// A blocking reload asked for a segment/part too far in the future (RFC 8216bis
    /// §6.2.5.2).
    #[error("{0}")]
    TooFarAhead(String),
    /// The request's query parameters are malformed.
    #[error("{0}")]
    BadRequest(String),
    /// The room task is overloaded or shutting down.
    #[error("the room is busy; retry shortly")]
    Busy,
    /// The room has reached its HTTP-FLV viewer limit.
    #[error("this room has reached its viewer limit")]
    TooManyViewers,
    /// The bridge waited the longest allowed time for a part that did not arrive.
    #[error("timed out waiting for the requested part")]
    Timeout,
}

/// The registry entry of a running room task.
#[derive(Debug, Clone)]
pub(crate) struct RoomEntry {
    pub(crate) commands: mpsc::Sender<RoomCommand>,
    pub(crate) status: watch::Receiver<RoomStatus>,
    pub(crate) generation: u64,
}

/// State shared by the handle, the supervisor and the room tasks (none of it on the
/// media path).
pub(crate) struct Shared {
    pub(crate) config: BridgeConfig,
    pub(crate) sfu: SfuHandle,
    pub(crate) stats: BridgeStats,
    rooms: RwLock<HashMap<RoomId, RoomEntry>>,
    targets: RwLock<HashMap<RoomId, Vec<RtmpTarget>>>,
    rtmp_status: Mutex<HashMap<RoomId, BTreeMap<String, RtmpTargetStatus>>>,
    events: mpsc::Sender<BridgeEvent>,
    next_generation: AtomicU64,
    room_exits: broadcast::Sender<()>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Sends an event to the embedding server without waiting (counted when lost).
    pub(crate) fn emit(&self, event: BridgeEvent) {
        if self.events.try_send(event).is_err() {
            BridgeStats::add(&self.stats.events_dropped, 1);
            tracing::warn!("bridge event queue full; an event was lost");
        }
    }

    /// The RTMP targets wanted for a room.
    pub(crate) fn targets(&self, room: &RoomId) -> Vec<RtmpTarget> {
        let mut targets: Vec<RtmpTarget> = self
            .config
            .rtmp_templates
            .iter()
            .enumerate()
            .map(|(i, template)| RtmpTarget {
                id: format!("default-{i}"),
                url: template.replace("{room}", room.as_str()),
            })
            .collect();
        if let Ok(map) = self.targets.read()
            && let Some(own) = map.get(room)
        {
            targets.extend(own.iter().cloned());
        }
        targets
    }

    /// Records an RTMP target's status and reports it.
    pub(crate) fn set_rtmp_status(&self, room: &RoomId, status: RtmpTargetStatus) {
        if let Ok(mut map) = self.rtmp_status.lock() {
            map.entry(room.clone())
                .or_default()
                .insert(status.target_id.clone(), status.clone());
        }
        self.emit(BridgeEvent::RtmpStatus {
            room: room.to_string(),
            status,
        });
    }

    /// Called by a recording writer when it has finished.
    pub(crate) fn recorder_exited(&self) {
        BridgeStats::sub(&self.stats.recordings_active, 1);
        let _ = self.room_exits.send(());
    }

    /// Called by a room task when it exits.
    pub(crate) fn room_exited(&self, room: &RoomId, generation: u64) {
        if let Ok(mut rooms) = self.rooms.write()
            && rooms.get(room).is_some_and(|e| e.generation == generation)
        {
            rooms.remove(room);
        }
        BridgeStats::sub(&self.stats.rooms_active, 1);
        let _ = self.room_exits.send(());
    }

    fn entry(&self, room: &RoomId) -> Option<RoomEntry> {
        self.rooms.read().ok()?.get(room).cloned()
    }
}

/// Cheap, clonable access to the bridge service.
#[derive(Clone, Debug)]
pub struct BridgeHandle {
    shared: Arc<Shared>,
}

/// A room's bridge state, for the API.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BridgeRoomStatus {
    /// A show is being bridged now.
    pub live: bool,
    /// The outputs carry video (H.264).
    pub video: bool,
    /// The outputs carry audio (AAC).
    pub audio: bool,
    /// Why the outputs cannot be served (e.g. VP8 video), if so.
    pub unavailable: Option<String>,
    /// Current video size, once known.
    pub width: u32,
    /// Current video height.
    pub height: u32,
    /// HTTP-FLV viewers connected.
    pub flv_viewers: usize,
    /// The recording of the current show, if any.
    pub recording: Option<String>,
}

impl BridgeHandle {
    /// Starts the supervisor (it follows the SFU's room events and runs one task per live
    /// room). Returns the handle and the events the embedding server should persist.
    pub fn start(
        config: BridgeConfig,
        sfu: SfuHandle,
    ) -> (BridgeHandle, mpsc::Receiver<BridgeEvent>) {
        let (events_tx, events_rx) = mpsc::channel(16_384);
        let (room_exits, _) = broadcast::channel(1024);
        let shared = Arc::new(Shared {
            config,
            sfu: sfu.clone(),
            stats: BridgeStats::default(),
            rooms: RwLock::new(HashMap::new()),
            targets: RwLock::new(HashMap::new()),
            rtmp_status: Mutex::new(HashMap::new()),
            events: events_tx,
            next_generation: AtomicU64::new(1),
            room_exits,
        });
        let handle = BridgeHandle { shared };
        let events = sfu.subscribe_events();
        tokio::spawn(supervise(handle.clone(), events));
        (handle, events_rx)
    }

    /// The configuration in force.
    pub fn config(&self) -> &BridgeConfig {
        &self.shared.config
    }

    /// Counters and histograms.
    pub fn stats(&self) -> &BridgeStats {
        &self.shared.stats
    }

    /// Sets a room's RTMP push targets (replacing the previous list). Sessions start or
    /// stop at once if the room is live, otherwise with its next show.
    pub fn set_rtmp_targets(&self, room: RoomId, targets: Vec<RtmpTarget>) {
        let ids: Vec<String> = targets.iter().map(|t| t.id.clone()).collect();
        if let Ok(mut map) = self.shared.targets.write() {
            if targets.is_empty() {
                map.remove(&room);
            } else {
                map.insert(room.clone(), targets);
            }
        }
        if let Ok(mut status) = self.shared.rtmp_status.lock()
            && let Some(per_room) = status.get_mut(&room)
        {
            per_room.retain(|id, _| ids.contains(id));
        }
        if let Some(entry) = self.shared.entry(&room) {
            let _ = entry.commands.try_send(RoomCommand::TargetsChanged);
        }
    }

    /// The RTMP targets configured for a room.
    pub fn rtmp_targets(&self, room: &RoomId) -> Vec<RtmpTarget> {
        self.shared.targets(room)
    }

    /// The status of a room's RTMP targets (`idle` for targets of a room that is not
    /// live).
    pub fn rtmp_status(&self, room: &RoomId) -> Vec<RtmpTargetStatus> {
        let known = self
            .shared
            .rtmp_status
            .lock()
            .map(|m| m.get(room).cloned().unwrap_or_default())
            .unwrap_or_default();
        self.shared
            .targets(room)
            .into_iter()
            .map(|target| {
                known
                    .get(&target.id)
                    .cloned()
                    .unwrap_or_else(|| RtmpTargetStatus::idle(&target))
            })
            .collect()
    }

    /// A room's bridge state, if a room task runs for it.
    pub fn room_status(&self, room: &RoomId) -> Option<BridgeRoomStatus> {
        let entry = self.shared.entry(room)?;
        let status = entry.status.borrow().clone();
        Some(status.public())
    }

    /// Rooms with a running task.
    pub fn rooms(&self) -> Vec<RoomId> {
        self.shared
            .rooms
            .read()
            .map(|r| r.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Sends a command to a room's task (HTTP handlers, RTMP sessions).
    pub(crate) async fn request<T>(
        &self,
        room: &RoomId,
        make: impl FnOnce(oneshot::Sender<T>) -> RoomCommand,
    ) -> Result<T, OutputError> {
        let entry = self
            .shared
            .entry(room)
            .ok_or_else(|| OutputError::NotLive(room.to_string()))?;
        let (reply, response) = oneshot::channel();
        if entry.commands.try_send(make(reply)).is_err() {
            BridgeStats::add(&self.shared.stats.commands_refused, 1);
            return Err(OutputError::Busy);
        }
        response
            .await
            .map_err(|_| OutputError::NotLive(room.to_string()))
    }

    pub(crate) fn from_shared(shared: Arc<Shared>) -> Self {
        BridgeHandle { shared }
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Starts a room task if none runs (normally the supervisor does this on
    /// [`SfuEvent::Live`]).
    pub fn ensure_room(&self, room: &RoomId) {
        if self.shared.entry(room).is_some() {
            return;
        }
        let Ok(mut rooms) = self.shared.rooms.write() else {
            return;
        };
        if rooms.contains_key(room) {
            return;
        }
        let generation = self.shared.next_generation.fetch_add(1, Ordering::Relaxed);
        let (commands, receiver) = mpsc::channel(self.shared.config.command_queue.max(16));
        let commands: mpsc::Sender<RoomCommand> = commands;
        let (status_tx, status) = watch::channel(RoomStatus::default());
        rooms.insert(
            room.clone(),
            RoomEntry {
                commands: commands.clone(),
                status,
                generation,
            },
        );
        drop(rooms);
        BridgeStats::add(&self.shared.stats.rooms_active, 1);
        BridgeStats::add(&self.shared.stats.rooms_started, 1);
        let task = RoomTask::new(
            room.clone(),
            Arc::clone(&self.shared),
            generation,
            status_tx,
        );
        tokio::spawn(task.run(receiver));
    }

    /// Ends every room (shows finished, recordings closed with `EXT-X-ENDLIST`) and
    /// waits up to `timeout` for the tasks to exit.
    pub async fn shutdown(&self, timeout: Duration) {
        let mut exits = self.shared.room_exits.subscribe();
        let entries: Vec<RoomEntry> = self
            .shared
            .rooms
            .read()
            .map(|r| r.values().cloned().collect())
            .unwrap_or_default();
        for entry in &entries {
            let _ = entry.commands.send(RoomCommand::Shutdown).await;
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let busy = || {
            self.shared
                .rooms
                .read()
                .map(|r| !r.is_empty())
                .unwrap_or(false)
                || self.shared.stats.recordings_active.load(Ordering::Relaxed) > 0
        };
        while busy() {
            if tokio::time::timeout_at(deadline, exits.recv())
                .await
                .is_err()
            {
                tracing::warn!("bridge rooms did not finish in time");
                break;
            }
        }
    }
}

/// Follows the SFU's events: a room going live gets a task; a room going offline is told
/// so (its tap normally says it first).
async fn supervise(handle: BridgeHandle, mut events: broadcast::Receiver<SfuEvent>) {
    resync(&handle).await;
    loop {
        match events.recv().await {
            Ok(SfuEvent::Live { room, .. }) => {
                // A lingering task (previous show just ended) takes its tap again.
                match handle.shared.entry(&room) {
                    Some(entry) => {
                        let _ = entry.commands.try_send(RoomCommand::Live);
                    }
                    None => handle.ensure_room(&room),
                }
            }
            Ok(SfuEvent::Offline { room }) => {
                if let Some(entry) = handle.shared.entry(&room) {
                    let _ = entry.commands.try_send(RoomCommand::Offline);
                }
            }
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(
                    missed,
                    "bridge supervisor fell behind the media plane; resynchronising"
                );
                resync(&handle).await;
            }
            Err(broadcast::error::RecvError::Closed) => break,
        }
    }
}

/// Takes the media plane's word for which rooms are live.
async fn resync(handle: &BridgeHandle) {
    let Ok(snapshot) = handle.shared.sfu.snapshot().await else {
        return;
    };
    for room in snapshot.rooms {
        let Some(id) = RoomId::parse(&room.id) else {
            continue;
        };
        if room.live {
            match handle.shared.entry(&id) {
                Some(entry) => {
                    let _ = entry.commands.try_send(RoomCommand::Live);
                }
                None => handle.ensure_room(&id),
            }
        } else if let Some(entry) = handle.shared.entry(&id) {
            let _ = entry.commands.try_send(RoomCommand::Offline);
        }
    }
}

/// Unix milliseconds of a wall-clock time.
pub(crate) fn unix_ms(time: SystemTime) -> i64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles() {
        let h = Histogram::default();
        assert_eq!(h.quantile_ms(0.5), None);
        for ms in [1, 3, 3, 8, 40, 400, 900] {
            h.observe(Duration::from_millis(ms));
        }
        assert_eq!(h.count(), 7);
        assert_eq!(h.quantile_ms(0.5), Some(10));
        assert_eq!(h.quantile_ms(0.0), Some(1));
        assert_eq!(h.quantile_ms(1.0), Some(u64::MAX));
        assert!((h.sum_secs() - 1.355).abs() < 1e-6);
    }

    #[test]
    fn keyframes_are_asked_for_before_a_forced_cut() {
        let config = BridgeConfig::default();
        let overdue = config.keyframe_overdue_after();
        // A 2 s GOP (typical encoder setting) never looks overdue ...
        assert!(overdue > Duration::from_secs(2), "{overdue:?}");
        // ... and a keyframe asked for when overdue still makes the LL-HLS cut.
        assert!(overdue + KEYFRAME_RESPONSE_ALLOWANCE <= config.llhls.max_segment);
        assert!(overdue + KEYFRAME_RESPONSE_ALLOWANCE <= config.hls.ts.max_segment_duration);
        // A longer configured gap is clamped to what the segmenters allow.
        let mut long = BridgeConfig {
            segment_keyframe_max_gap: Duration::from_secs(10),
            ..BridgeConfig::default()
        };
        long.llhls.max_segment = Duration::from_secs(4);
        assert_eq!(long.keyframe_overdue_after(), Duration::from_millis(3_200));
        // A shorter one is kept.
        let short = BridgeConfig {
            segment_keyframe_max_gap: Duration::from_secs(1),
            ..BridgeConfig::default()
        };
        assert_eq!(short.keyframe_overdue_after(), Duration::from_secs(1));
    }
}
