//! One task per live room: it owns the room's tap, pipeline, muxers, FLV viewer queues,
//! parked LL-HLS requests and RTMP sessions, and answers [`RoomCommand`]s.
//!
//! A *show* is one publisher session from start to end. Its outputs (FLV, HLS, LL-HLS,
//! recording, RTMP pushes) are built when it starts and finished when it ends: the live
//! playlists get `EXT-X-ENDLIST`, the recording is closed, FLV responses end. The task
//! then lingers for [`crate::service::BridgeConfig::linger`] serving the ended playlists,
//! and exits unless a new show starts.

use crate::flv::FlvMuxer;
use crate::hls::{HlsMuxer, HlsSegment};
use crate::llhls::LlHlsMuxer;
use crate::media_unit::{MediaUnit, TIMESCALE, Tracks};
use crate::pipeline::{ClockAnchor, PipelineNotice, PipelineOutput, RoomPipeline};
use crate::recording::{RecorderHandle, spawn_recorder};
use crate::rtmp_push::{RtmpSession, spawn_session};
use crate::service::{BridgeHandle, BridgeStats, OutputError, Shared, unix_ms};
use bytes::Bytes;
use sfu::RoomId;
use sfu::media::MediaKind;
use sfu::tap::{TapEvent, TapReceiver};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{mpsc, oneshot, watch};

/// What the room task is asked to do.
pub(crate) enum RoomCommand {
    /// The SFU says the room is live (attach the tap again if it was released).
    Live,
    /// The SFU says the publisher left (backup for a lost tap event).
    Offline,
    /// The server is stopping: end the show and exit.
    Shutdown,
    /// The room's RTMP targets changed.
    TargetsChanged,
    /// A new HTTP-FLV viewer (or RTMP session) joins.
    JoinFlv {
        /// An RTMP session rather than an HTTP viewer (not counted as a viewer).
        rtmp: bool,
        /// The answer.
        reply: oneshot::Sender<Result<FlvJoin, OutputError>>,
    },
    /// An HLS (MPEG-TS) request.
    Hls {
        /// What is asked for.
        request: HlsRequest,
        /// The answer.
        reply: oneshot::Sender<Result<Served, OutputError>>,
    },
    /// An LL-HLS request.
    LlHls {
        /// What is asked for.
        request: LlRequest,
        /// The answer (possibly after waiting for the part).
        reply: oneshot::Sender<Result<Served, OutputError>>,
    },
}

/// What a joining FLV consumer gets: everything to start at once, then the live chunks.
#[derive(Debug)]
pub(crate) struct FlvJoin {
    /// Header, metadata, sequence headers and the current GOP.
    pub(crate) initial: Vec<Bytes>,
    /// Live tags; closes when the show ends or the consumer is dropped as too slow.
    pub(crate) live: mpsc::Receiver<Bytes>,
}

/// HLS (MPEG-TS) resources.
#[derive(Debug, Clone, Copy)]
pub(crate) enum HlsRequest {
    /// `index.m3u8`.
    Playlist,
    /// `seg{N}.ts`.
    Segment(u64),
}

/// LL-HLS resources.
#[derive(Debug, Clone, Copy)]
pub(crate) enum LlRequest {
    /// `index.m3u8`, with the blocking-reload parameters if given.
    Playlist {
        /// `_HLS_msn`.
        msn: Option<u64>,
        /// `_HLS_part`.
        part: Option<u32>,
    },
    /// `init{N}.mp4`.
    Init(u32),
    /// `part{MSN}.{P}.mp4` (waits if it is the preload-hinted part).
    Part {
        /// Media sequence number.
        msn: u64,
        /// Part index.
        part: u32,
    },
    /// `seg{MSN}.mp4`.
    Segment(u64),
}

/// A served resource.
#[derive(Debug, Clone)]
pub(crate) struct Served {
    /// The body.
    pub(crate) body: Bytes,
    /// When the room task made it available (for blocking requests: the moment the
    /// awaited part became ready).
    pub(crate) ready_at: Option<Instant>,
    /// The request had to wait.
    pub(crate) waited: bool,
    /// The playlist has ended (`EXT-X-ENDLIST`).
    pub(crate) ended: bool,
}

/// What the API shows about a room (published through a `watch`).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct RoomStatus {
    live: bool,
    tracks: Tracks,
    unavailable: Option<String>,
    width: u32,
    height: u32,
    flv_viewers: usize,
    recording: Option<String>,
}

impl RoomStatus {
    pub(crate) fn public(&self) -> crate::service::BridgeRoomStatus {
        crate::service::BridgeRoomStatus {
            live: self.live,
            video: self.tracks.video,
            audio: self.tracks.audio.is_some(),
            unavailable: self.unavailable.clone(),
            width: self.width,
            height: self.height,
            flv_viewers: self.flv_viewers,
            recording: self.recording.clone(),
        }
    }
}

struct FlvConsumer {
    sender: mpsc::Sender<Bytes>,
    rtmp: bool,
}

struct Parked {
    request: LlRequest,
    reply: oneshot::Sender<Result<Served, OutputError>>,
}

/// One show's outputs.
struct Show {
    tracks: Tracks,
    unavailable: Option<String>,
    flv: FlvMuxer,
    hls: HlsMuxer,
    llhls: LlHlsMuxer,
    recorder: Option<RecorderHandle>,
    recording_id: Option<String>,
    ended: bool,
    size: Option<(u32, u32)>,
    /// The largest picture of the show (WebRTC encoders start small and ramp up): the
    /// size the recording reports.
    largest_size: Option<(u32, u32)>,
    /// A unit reached the muxers (before that they can be rebuilt for other tracks).
    media_written: bool,
}

/// Progress of the LL-HLS part being filled (for the part-delay histogram).
#[derive(Default)]
struct PartClock {
    first_arrival: Option<Instant>,
    first_pts: i64,
}

pub(crate) struct RoomTask {
    room: RoomId,
    shared: Arc<Shared>,
    generation: u64,
    status: watch::Sender<RoomStatus>,
    pipeline: RoomPipeline,
    epoch: Option<u32>,
    pending_unavailable: Option<String>,
    show: Option<Show>,
    flv: Vec<FlvConsumer>,
    parked: Vec<Parked>,
    parked_hls: Vec<oneshot::Sender<Result<Served, OutputError>>>,
    rtmp: HashMap<String, RtmpSession>,
    part_clock: PartClock,
    keyframe_wanted: bool,
    last_keyframe_request: Option<Instant>,
    /// When the newest keyframe reached the segmenters.
    last_keyframe_at: Option<Instant>,
    idle_since: Option<Instant>,
    release_tap: bool,
    want_tap: bool,
    exit: bool,
}

/// Most LL-HLS requests parked at once per room.
const MAX_PARKED: usize = 20_000;
/// Tap events handled per wake-up before other work gets a turn.
const TAP_BATCH: usize = 64;

impl RoomTask {
    pub(crate) fn new(
        room: RoomId,
        shared: Arc<Shared>,
        generation: u64,
        status: watch::Sender<RoomStatus>,
    ) -> Self {
        let pipeline = RoomPipeline::new(shared.config.pipeline, ClockAnchor::now());
        RoomTask {
            room,
            shared,
            generation,
            status,
            pipeline,
            epoch: None,
            pending_unavailable: None,
            show: None,
            flv: Vec::new(),
            parked: Vec::new(),
            parked_hls: Vec::new(),
            rtmp: HashMap::new(),
            part_clock: PartClock::default(),
            keyframe_wanted: false,
            last_keyframe_request: None,
            last_keyframe_at: None,
            idle_since: Some(Instant::now()),
            release_tap: false,
            want_tap: false,
            exit: false,
        }
    }

    pub(crate) async fn run(mut self, mut commands: mpsc::Receiver<RoomCommand>) {
        let tap = match self.shared.sfu.tap(self.room.clone()).await {
            Ok(tap) => Some(tap),
            Err(err) => {
                tracing::info!(room = %self.room, %err, "bridge could not attach to the room");
                None
            }
        };
        if let Some(tap) = tap {
            self.run_loop(tap, &mut commands).await;
        }
        self.end_show();
        self.fail_parked();
        commands.close();
        while let Ok(command) = commands.try_recv() {
            self.refuse(command);
        }
        self.shared.room_exited(&self.room, self.generation);
        tracing::debug!(room = %self.room, "bridge room task ended");
    }

    async fn run_loop(&mut self, tap: TapReceiver, commands: &mut mpsc::Receiver<RoomCommand>) {
        // The tap is released when a show ends (so the SFU can forget an idle room) and
        // taken again when the supervisor says the room is live once more.
        let mut tap = Some(tap);
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let far = || tokio::time::Instant::now() + Duration::from_secs(3600);
        while !self.exit {
            let poll_at = self.pipeline.poll_timeout();
            let sleep_at = poll_at.map_or_else(far, tokio::time::Instant::from_std);
            tokio::select! {
                biased;
                event = next_tap(&mut tap) => match event {
                    Some(event) => {
                        let cpu = ThreadCpu::start();
                        self.on_tap(event);
                        let mut handled = 1;
                        while handled < TAP_BATCH && !self.release_tap {
                            match tap.as_mut().map(TapReceiver::try_recv) {
                                Some(Ok(event)) => self.on_tap(event),
                                _ => break,
                            }
                            handled += 1;
                        }
                        cpu.stop(&self.shared.stats);
                    }
                    None => {
                        tracing::info!(room = %self.room, "the room closed");
                        self.exit = true;
                    }
                },
                _ = tokio::time::sleep_until(sleep_at), if poll_at.is_some() => {
                    let cpu = ThreadCpu::start();
                    let out = self.pipeline.poll(Instant::now());
                    self.on_output(out, None);
                    cpu.stop(&self.shared.stats);
                }
                command = commands.recv() => match command {
                    Some(command) => self.on_command(command),
                    None => self.exit = true,
                },
                _ = tick.tick() => self.on_tick(),
            }
            if self.keyframe_wanted {
                self.request_keyframe().await;
            }
            if std::mem::take(&mut self.release_tap) {
                // Handle what is already queued first: the SFU queues a new publisher's
                // `PublisherStarted` before it announces the room live, so a show that
                // starts right away is seen here and the tap is kept.
                while let Some(Ok(event)) = tap.as_mut().map(TapReceiver::try_recv) {
                    self.on_tap(event);
                }
                self.release_tap = false;
                if !self.pipeline.session_active() {
                    tap = None;
                }
            }
            if std::mem::take(&mut self.want_tap) && tap.is_none() && !self.exit {
                match self.shared.sfu.tap(self.room.clone()).await {
                    Ok(receiver) => tap = Some(receiver),
                    Err(err) => {
                        tracing::debug!(room = %self.room, %err, "could not attach to the room again")
                    }
                }
            }
        }
    }

    fn on_tap(&mut self, event: TapEvent) {
        let arrival = match &event {
            TapEvent::Packet(packet)
                if packet.codec.kind() == MediaKind::Video && packet.marker =>
            {
                Some(packet.received_at)
            }
            TapEvent::Native { frame, .. } if frame.kind == MediaKind::Video => {
                Some(frame.received_at)
            }
            _ => None,
        };
        let out = self.pipeline.push(event, Instant::now());
        self.on_output(out, arrival);
    }

    /// Applies one pipeline output: session changes and media units, in order.
    fn on_output(&mut self, out: PipelineOutput, arrival: Option<Instant>) {
        self.keyframe_wanted |= out.keyframe_needed;
        let PipelineOutput { units, notices, .. } = out;
        let mut units = Some(units);
        for notice in notices {
            match notice {
                PipelineNotice::SessionEnded { epoch } => {
                    if let Some(units) = units.take() {
                        self.write_units(&units, arrival);
                    }
                    tracing::info!(room = %self.room, epoch, "publisher session ended");
                    self.end_show();
                    self.idle_since = Some(Instant::now());
                    self.release_tap = true;
                }
                PipelineNotice::RoomClosed => {
                    if let Some(units) = units.take() {
                        self.write_units(&units, arrival);
                    }
                    self.end_show();
                    self.exit = true;
                }
                PipelineNotice::VideoUnavailable(err) => {
                    tracing::warn!(room = %self.room, %err, "video cannot be bridged");
                    self.pending_unavailable = Some(format!(
                        "room {} cannot be played as HTTP-FLV/HLS/LL-HLS: {err}; publish H.264 (packetization-mode=1) instead",
                        self.room
                    ));
                }
                PipelineNotice::AudioUnavailable(err) => {
                    tracing::warn!(room = %self.room, %err, "audio cannot be bridged; video only");
                }
                PipelineNotice::SessionStarted { epoch, tracks } => {
                    self.epoch = Some(epoch);
                    self.idle_since = None;
                    self.start_show(epoch, tracks);
                }
                PipelineNotice::TracksChanged { epoch, tracks } => {
                    self.tracks_changed(epoch, tracks);
                }
            }
        }
        if let Some(units) = units {
            self.write_units(&units, arrival);
        }
    }

    fn start_show(&mut self, epoch: u32, tracks: Tracks) {
        let unavailable = self.pending_unavailable.take().or_else(|| {
            tracks.is_empty().then(|| {
                format!(
                    "room {} has neither H.264 video nor Opus audio to bridge",
                    self.room
                )
            })
        });
        if let Some(show) = &self.show
            && !show.ended
        {
            if show.tracks == tracks && show.unavailable == unavailable {
                tracing::info!(room = %self.room, epoch, "publisher reconnected; the show continues");
                return;
            }
            self.end_show();
        }
        let config = &self.shared.config;
        let started = SystemTime::now();
        let (recorder, recording_id) = if config.record && !tracks.is_empty() {
            let id = format!("{}-{epoch}", unix_ms(started));
            let handle =
                spawn_recorder(Arc::clone(&self.shared), &self.room, &id, started, &tracks);
            (Some(handle), Some(id))
        } else {
            (None, None)
        };
        tracing::info!(room = %self.room, epoch, video = tracks.video, audio = tracks.audio.is_some(), recording = ?recording_id, "show started");
        self.show = Some(Show {
            flv: FlvMuxer::new(tracks.clone()),
            hls: HlsMuxer::new(tracks.clone(), config.hls),
            llhls: LlHlsMuxer::new(tracks.clone(), config.llhls),
            tracks,
            unavailable,
            recorder,
            recording_id,
            ended: false,
            size: None,
            largest_size: None,
            media_written: false,
        });
        self.part_clock = PartClock::default();
        BridgeStats::add(&self.shared.stats.shows, 1);
        self.reconcile_rtmp();
        self.publish_status();
    }

    /// The running session's tracks changed (a native session's sequence headers: the
    /// stream's own AAC rate instead of the transcoder's 48 kHz). Same tracks present:
    /// the show goes on, with muxers rebuilt if nothing was muxed yet, else following the
    /// new configuration in band (FLV sequence headers, a TS discontinuity, a new fMP4
    /// init). Otherwise the show restarts with the new tracks.
    fn tracks_changed(&mut self, epoch: u32, tracks: Tracks) {
        let config = &self.shared.config;
        match self.show.as_mut() {
            Some(show)
                if !show.ended
                    && show.unavailable.is_none()
                    && !tracks.is_empty()
                    && show.tracks.video == tracks.video
                    && show.tracks.audio.is_some() == tracks.audio.is_some() =>
            {
                if !show.media_written {
                    show.flv = FlvMuxer::new(tracks.clone());
                    show.hls = HlsMuxer::new(tracks.clone(), config.hls);
                    show.llhls = LlHlsMuxer::new(tracks.clone(), config.llhls);
                } else {
                    // FLV and TS follow in band; fMP4 needs the init ready at the next IDR.
                    show.llhls.update_tracks(&tracks);
                }
                tracing::info!(room = %self.room, epoch, rebuilt = !show.media_written, "session tracks changed; the show continues");
                show.tracks = tracks;
                self.publish_status();
            }
            _ => {
                tracing::info!(room = %self.room, epoch, video = tracks.video, audio = tracks.audio.is_some(), "session tracks changed; new show");
                self.end_show();
                self.start_show(epoch, tracks);
            }
        }
    }

    /// Ends the current show: flushes and ends every output. Idempotent.
    fn end_show(&mut self) {
        let Some(show) = self.show.as_mut() else {
            return;
        };
        if show.ended {
            return;
        }
        show.ended = true;
        if let Some(segment) = show.hls.finish() {
            BridgeStats::add(&self.shared.stats.hls_segments, 1);
            if let Some(recorder) = &show.recorder {
                recorder.segment(segment, &self.shared.stats);
            }
        }
        if let Some(recorder) = show.recorder.take() {
            recorder.finish(show.largest_size.unwrap_or_default());
        }
        show.llhls.finish();
        let viewers = self.flv.iter().filter(|c| !c.rtmp).count() as u64;
        BridgeStats::sub(&self.shared.stats.flv_viewers, viewers);
        self.flv.clear();
        for (_, session) in self.rtmp.drain() {
            session.stop();
        }
        self.idle_since = Some(Instant::now());
        self.service_parked();
        for reply in self.parked_hls.drain(..) {
            let _ = reply.send(Err(OutputError::NotLive(self.room.to_string())));
        }
        tracing::info!(room = %self.room, "show ended");
        self.publish_status();
    }

    fn write_units(&mut self, units: &[MediaUnit], arrival: Option<Instant>) {
        if units.is_empty() {
            return;
        }
        let Some(show) = self.show.as_mut().filter(|s| !s.ended) else {
            return;
        };
        let stats = &self.shared.stats;
        show.media_written = true;
        let version = show.llhls.version();
        let mut size_changed = false;
        let mut flv_viewers_left = false;
        for unit in units {
            match unit {
                MediaUnit::Video(au) => {
                    BridgeStats::add(&stats.video_units, 1);
                    if au.keyframe {
                        self.last_keyframe_at = Some(Instant::now());
                    }
                    let size = (au.params.width, au.params.height);
                    if show.size != Some(size) {
                        show.size = Some(size);
                        let largest = show.largest_size.get_or_insert(size);
                        if u64::from(size.0) * u64::from(size.1)
                            > u64::from(largest.0) * u64::from(largest.1)
                        {
                            *largest = size;
                        }
                        size_changed = true;
                    }
                }
                MediaUnit::Audio(_) => BridgeStats::add(&stats.audio_units, 1),
            }
            // HTTP-FLV and RTMP: one encode, shared by every consumer.
            let chunks = show.flv.write(unit);
            if !chunks.is_empty() {
                BridgeStats::add(&stats.flv_tags, chunks.len() as u64);
                let mut dropped = 0u64;
                let mut queued = 0u64;
                self.flv.retain(|consumer| {
                    for chunk in chunks {
                        match consumer.sender.try_send(chunk.clone()) {
                            Ok(()) => queued += 1,
                            Err(mpsc::error::TrySendError::Full(_)) => {
                                if !consumer.rtmp {
                                    dropped += 1;
                                }
                                BridgeStats::add(&stats.flv_viewers_dropped_slow, 1);
                                return false;
                            }
                            Err(mpsc::error::TrySendError::Closed(_)) => {
                                if !consumer.rtmp {
                                    dropped += 1;
                                }
                                return false;
                            }
                        }
                    }
                    true
                });
                BridgeStats::add(&stats.flv_chunks_queued, queued);
                if dropped > 0 {
                    BridgeStats::sub(&stats.flv_viewers, dropped);
                    flv_viewers_left = true;
                }
                if let (MediaUnit::Video(_), Some(arrival)) = (unit, arrival) {
                    stats.flv_delay.observe(arrival.elapsed());
                }
            }
            // HLS (MPEG-TS) and the recording.
            if let Some(segment) = show.hls.write(unit) {
                BridgeStats::add(&stats.hls_segments, 1);
                if let Some(recorder) = &show.recorder {
                    recorder.segment(segment, stats);
                }
                for reply in self.parked_hls.drain(..) {
                    let _ = reply.send(Ok(Served {
                        body: show.hls.playlist(),
                        ready_at: Some(Instant::now()),
                        waited: true,
                        ended: false,
                    }));
                }
            }
            // LL-HLS.
            let before = show.llhls.last_part();
            let parts_before = show.llhls.stats().parts;
            let segments_before = show.llhls.stats().segments;
            show.llhls.write(unit);
            let llstats = show.llhls.stats();
            if llstats.parts > parts_before {
                BridgeStats::add(&stats.llhls_parts, llstats.parts - parts_before);
            }
            if llstats.segments > segments_before {
                BridgeStats::add(&stats.llhls_segments, llstats.segments - segments_before);
            }
            if let MediaUnit::Video(au) = unit {
                let now = Instant::now();
                let arrived = arrival.unwrap_or(now);
                if llstats.parts > parts_before {
                    if let Some(first) = self.part_clock.first_arrival {
                        let delay = now.saturating_duration_since(first);
                        stats.llhls_part_delay.observe(delay);
                        let duration = Duration::from_secs_f64(
                            (au.pts - self.part_clock.first_pts).max(0) as f64
                                / f64::from(TIMESCALE),
                        );
                        stats
                            .llhls_part_overhead
                            .observe(delay.saturating_sub(duration));
                    }
                    self.part_clock = PartClock {
                        first_arrival: Some(arrived),
                        first_pts: au.pts,
                    };
                } else if self.part_clock.first_arrival.is_none() || before.is_none() {
                    self.part_clock = PartClock {
                        first_arrival: Some(arrived),
                        first_pts: au.pts,
                    };
                }
            }
        }
        // A segment near its target would like a keyframe, but the encoder's own GOP is
        // fine unless it is long: ask only after `keyframe_overdue_after` without one
        // (each PLI costs the publisher a keyframe's bitrate), still in time for the
        // keyframe to start the next segment rather than a forced cut.
        let overdue_after = self.shared.config.keyframe_overdue_after();
        let keyframe_overdue = self
            .last_keyframe_at
            .is_none_or(|at| Instant::now().saturating_duration_since(at) >= overdue_after);
        if keyframe_overdue && (show.hls.keyframe_wanted() || show.llhls.keyframe_wanted()) {
            self.keyframe_wanted = true;
        }
        if show.llhls.version() != version {
            self.service_parked();
        }
        if size_changed || flv_viewers_left {
            self.publish_status();
        }
    }

    async fn request_keyframe(&mut self) {
        let now = Instant::now();
        if self.last_keyframe_request.is_some_and(|last| {
            now.saturating_duration_since(last) < self.shared.config.keyframe_request_interval
        }) {
            return;
        }
        self.keyframe_wanted = false;
        self.last_keyframe_request = Some(now);
        BridgeStats::add(&self.shared.stats.keyframe_requests, 1);
        let _ = self.shared.sfu.request_keyframe(self.room.clone()).await;
    }

    fn on_tick(&mut self) {
        let now = Instant::now();
        self.parked.retain(|p| !p.reply.is_closed());
        self.parked_hls.retain(|r| !r.is_closed());
        let active = self.pipeline.session_active();
        if !active
            && self.idle_since.is_some_and(|since| {
                now.saturating_duration_since(since) >= self.shared.config.linger
            })
        {
            tracing::debug!(room = %self.room, "no publisher for the linger time; bridge room ends");
            self.exit = true;
        }
    }

    fn on_command(&mut self, command: RoomCommand) {
        match command {
            RoomCommand::Offline => {
                if self.pipeline.session_active()
                    && let Some(epoch) = self.epoch
                {
                    let out = self
                        .pipeline
                        .push(TapEvent::PublisherEnded { epoch }, Instant::now());
                    self.on_output(out, None);
                }
            }
            RoomCommand::Live => self.want_tap = true,
            RoomCommand::Shutdown => {
                self.end_show();
                self.exit = true;
            }
            RoomCommand::TargetsChanged => self.reconcile_rtmp(),
            RoomCommand::JoinFlv { rtmp, reply } => {
                let result = self.join_flv(rtmp);
                let _ = reply.send(result);
            }
            RoomCommand::Hls { request, reply } => self.hls_request(request, reply),
            RoomCommand::LlHls { request, reply } => self.llhls_request(request, reply),
        }
    }

    fn refuse(&self, command: RoomCommand) {
        let err = OutputError::NotLive(self.room.to_string());
        match command {
            RoomCommand::JoinFlv { reply, .. } => {
                let _ = reply.send(Err(err));
            }
            RoomCommand::Hls { reply, .. } | RoomCommand::LlHls { reply, .. } => {
                let _ = reply.send(Err(err));
            }
            _ => {}
        }
    }

    /// The live show, or why there is none to serve.
    fn live_show(&self) -> Result<&Show, OutputError> {
        match &self.show {
            Some(show) if show.unavailable.is_some() => Err(OutputError::Unbridgeable(
                show.unavailable.clone().unwrap_or_default(),
            )),
            Some(show) if !show.ended => Ok(show),
            _ => Err(OutputError::NotLive(self.room.to_string())),
        }
    }

    fn join_flv(&mut self, rtmp: bool) -> Result<FlvJoin, OutputError> {
        let show = self.live_show()?;
        if self.flv.len() >= self.shared.config.max_flv_viewers_per_room {
            BridgeStats::add(&self.shared.stats.flv_viewers_refused, 1);
            return Err(OutputError::TooManyViewers);
        }
        let initial = show.flv.join();
        let (sender, live) = mpsc::channel(self.shared.config.flv_viewer_queue.max(8));
        self.flv.push(FlvConsumer { sender, rtmp });
        if !rtmp {
            BridgeStats::add(&self.shared.stats.flv_viewers, 1);
            BridgeStats::add(&self.shared.stats.flv_viewers_joined, 1);
            self.publish_status();
        }
        Ok(FlvJoin { initial, live })
    }

    /// Any show to serve playlists from (ended shows too, while lingering).
    fn servable_show(&self) -> Result<Option<&Show>, OutputError> {
        match &self.show {
            Some(show) if show.unavailable.is_some() => Err(OutputError::Unbridgeable(
                show.unavailable.clone().unwrap_or_default(),
            )),
            Some(show) => Ok(Some(show)),
            None => Ok(None),
        }
    }

    fn hls_request(
        &mut self,
        request: HlsRequest,
        reply: oneshot::Sender<Result<Served, OutputError>>,
    ) {
        let show = match self.servable_show() {
            Ok(show) => show,
            Err(err) => {
                let _ = reply.send(Err(err));
                return;
            }
        };
        let served = |body: Bytes, ended: bool| Served {
            body,
            ready_at: None,
            waited: false,
            ended,
        };
        match request {
            HlsRequest::Playlist => match show {
                Some(show) if show.hls.live_playlist().listed().next().is_some() => {
                    let _ = reply.send(Ok(served(show.hls.playlist(), show.ended)));
                }
                Some(show) if show.ended => {
                    let _ = reply.send(Err(OutputError::NotLive(self.room.to_string())));
                }
                _ if self.parked_hls.len() < MAX_PARKED => self.parked_hls.push(reply),
                _ => {
                    let _ = reply.send(Err(OutputError::Busy));
                }
            },
            HlsRequest::Segment(sequence) => {
                let result = show
                    .and_then(|s| s.hls.segment(sequence))
                    .map(|body| served(body, false))
                    .ok_or_else(|| {
                        OutputError::NotFound(format!("segment {sequence} is not available"))
                    });
                let _ = reply.send(result);
            }
        }
    }

    fn llhls_request(
        &mut self,
        request: LlRequest,
        reply: oneshot::Sender<Result<Served, OutputError>>,
    ) {
        let show = match self.servable_show() {
            Ok(show) => show,
            Err(err) => {
                let _ = reply.send(Err(err));
                return;
            }
        };
        if let (
            Some(show),
            LlRequest::Playlist {
                msn: Some(msn),
                part,
            },
        ) = (show, request)
            && !show.ended
            && show.llhls.request_too_far_ahead(msn, part)
        {
            BridgeStats::add(&self.shared.stats.llhls_reloads_too_far_ahead, 1);
            let _ = reply.send(Err(OutputError::TooFarAhead(format!(
                "_HLS_msn={msn} _HLS_part={part:?} is too far ahead of the live edge"
            ))));
            return;
        }
        match show.map(|show| answer_llhls(show, request)) {
            Some(Answer::Now(result)) => {
                let _ = reply.send(result);
            }
            Some(Answer::Wait) | None => {
                if show.is_some_and(|s| s.ended) {
                    let _ = reply.send(Err(OutputError::NotFound("the show has ended".into())));
                } else if self.parked.len() >= MAX_PARKED {
                    let _ = reply.send(Err(OutputError::Busy));
                } else {
                    BridgeStats::add(&self.shared.stats.llhls_blocking_reloads, 1);
                    self.parked.push(Parked { request, reply });
                }
            }
        }
    }

    /// Answers parked LL-HLS requests that can be answered now.
    fn service_parked(&mut self) {
        if self.parked.is_empty() {
            return;
        }
        let Some(show) = self.show.as_ref() else {
            return;
        };
        let now = Instant::now();
        let parked = std::mem::take(&mut self.parked);
        for p in parked {
            if p.reply.is_closed() {
                continue;
            }
            match answer_llhls(show, p.request) {
                Answer::Now(result) => {
                    let result = result.map(|mut served| {
                        served.ready_at = Some(now);
                        served.waited = true;
                        served
                    });
                    let _ = p.reply.send(result);
                }
                Answer::Wait if show.ended => {
                    let _ = p
                        .reply
                        .send(Err(OutputError::NotFound("the show has ended".into())));
                }
                Answer::Wait => self.parked.push(p),
            }
        }
    }

    fn fail_parked(&mut self) {
        for p in self.parked.drain(..) {
            let _ = p
                .reply
                .send(Err(OutputError::NotLive(self.room.to_string())));
        }
        for reply in self.parked_hls.drain(..) {
            let _ = reply.send(Err(OutputError::NotLive(self.room.to_string())));
        }
    }

    /// Starts and stops RTMP sessions so they match the room's targets (only while a
    /// bridgeable show is live).
    fn reconcile_rtmp(&mut self) {
        let live = self
            .show
            .as_ref()
            .is_some_and(|s| !s.ended && s.unavailable.is_none());
        let targets = if live {
            self.shared.targets(&self.room)
        } else {
            Vec::new()
        };
        self.rtmp.retain(|id, session| {
            let keep = targets
                .iter()
                .any(|t| &t.id == id && t.url == session.url());
            if !keep {
                session.stop();
            }
            keep
        });
        for target in targets {
            if !self.rtmp.contains_key(&target.id) {
                let session = spawn_session(
                    BridgeHandle::from_shared(Arc::clone(&self.shared)),
                    self.room.clone(),
                    target.clone(),
                );
                self.rtmp.insert(target.id.clone(), session);
            }
        }
    }

    fn publish_status(&self) {
        let status = match &self.show {
            Some(show) => RoomStatus {
                live: !show.ended,
                tracks: show.tracks.clone(),
                unavailable: show.unavailable.clone(),
                width: show.size.map_or(0, |s| s.0),
                height: show.size.map_or(0, |s| s.1),
                flv_viewers: self.flv.iter().filter(|c| !c.rtmp).count(),
                recording: show.recording_id.clone(),
            },
            None => RoomStatus::default(),
        };
        self.status.send_if_modified(|current| {
            if *current == status {
                false
            } else {
                *current = status;
                true
            }
        });
    }
}

enum Answer {
    Now(Result<Served, OutputError>),
    Wait,
}

fn answer_llhls(show: &Show, request: LlRequest) -> Answer {
    let muxer = &show.llhls;
    let now = |body: Bytes| {
        Answer::Now(Ok(Served {
            body,
            ready_at: None,
            waited: false,
            ended: show.ended,
        }))
    };
    let missing = |what: String| Answer::Now(Err(OutputError::NotFound(what)));
    match request {
        LlRequest::Playlist { msn, part } => {
            let ready = match msn {
                Some(msn) => muxer.playlist_ready_for(msn, part),
                None => true,
            };
            match (ready, muxer.playlist()) {
                (true, Some(playlist)) => now(playlist),
                _ => Answer::Wait,
            }
        }
        LlRequest::Init(id) => match muxer.init(id) {
            Some(init) => now(init),
            None => missing(format!("init{id}.mp4 is not available")),
        },
        LlRequest::Segment(msn) => match muxer.segment(msn) {
            Some(segment) => now(segment),
            None => missing(format!("seg{msn}.mp4 is not available")),
        },
        LlRequest::Part { msn, part } => {
            if let Some(data) = muxer.part(msn, part) {
                return now(data);
            }
            // A future part (the preload hint) is waited for; a past one is gone.
            let future = match muxer.last_part() {
                Some((current, done)) => msn > current || (msn == current && part as usize >= done),
                None => true,
            };
            if future && !muxer.request_too_far_ahead(msn, Some(part)) && !show.ended {
                Answer::Wait
            } else {
                missing(format!("part{msn}.{part}.mp4 is not available"))
            }
        }
    }
}

/// The next tap event; never resolves while no tap is attached.
async fn next_tap(tap: &mut Option<TapReceiver>) -> Option<TapEvent> {
    match tap {
        Some(tap) => tap.recv().await,
        None => std::future::pending().await,
    }
}

/// Thread CPU time around a piece of synchronous work (`CLOCK_THREAD_CPUTIME_ID`).
struct ThreadCpu(Option<Duration>);

impl ThreadCpu {
    fn start() -> Self {
        ThreadCpu(thread_cpu_time())
    }

    fn stop(self, stats: &BridgeStats) {
        if let (Some(start), Some(end)) = (self.0, thread_cpu_time()) {
            let micros = end.saturating_sub(start).as_micros() as u64;
            BridgeStats::add(&stats.room_cpu_micros, micros);
        }
    }
}

fn thread_cpu_time() -> Option<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec to a valid pointer.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (rc == 0).then(|| Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

/// Keeps `HlsSegment` nameable for the recorder hand-off.
pub(crate) type SharedSegment = Arc<HlsSegment>;
