//! The WHIP publisher: one sans-IO `rtc` peer on its own thread and socket, sending the
//! packetized clip paced like a browser's encoder — a video frame every frame interval, its
//! packets spread by a pacer at a multiple of the stream's bitrate (libwebrtc's default is
//! 2.5×), Opus every 20 ms — answering PLI/FIR with a keyframe (the next IDR of the clip),
//! at most one per [`MIN_FORCED_KEYFRAME_INTERVAL`] like libwebrtc's encoders, NACKs from
//! the engine's NACK responder (its send history), and sender reports from the engine's
//! sender-report interceptor. `ignore_pli` keeps the clip's fixed GOP instead.
//!
//! Just before each datagram leaves, the send instant of its payload goes into
//! [`SendTimes`], the table viewers read to measure forwarding delay.

use crate::load::media::{PacketizedClip, SendTimes};
use crate::load::net::{self, Outgoing, RecvBatch, SendQueue};
use crate::load::peer::OutTrack;
use anyhow::bail;
use rtc::peer_connection::RTCPeerConnection;
use rtc::peer_connection::event::RTCPeerConnectionEvent;
use rtc::peer_connection::message::RTCMessage;
use rtc::peer_connection::state::{RTCIceConnectionState, RTCPeerConnectionState};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use socket2::Socket;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Forced keyframes are at least this far apart (libwebrtc drops keyframe requests that
/// come sooner after the last one it produced; x264's `keyint_min` does the same).
pub const MIN_FORCED_KEYFRAME_INTERVAL: Duration = Duration::from_millis(300);

/// How the publisher paces.
#[derive(Debug, Clone, Copy)]
pub struct PublisherOptions {
    /// Pacing rate as a multiple of the clip's video bitrate; `0` sends each frame in one burst.
    pub pacing_factor: f64,
    /// Give up if not connected within this time.
    pub connect_timeout: Duration,
    /// Keep DTLS datagrams that arrive before ICE completes, as browsers do.
    pub keep_early_dtls: bool,
    /// Ignore PLI/FIR (a fixed-GOP encoder); they are still counted.
    pub ignore_pli: bool,
}

/// Counters the publisher thread updates and the orchestrator reads.
#[derive(Debug, Default)]
pub struct PublisherStats {
    /// ICE + DTLS done.
    pub connected: AtomicBool,
    /// The thread ended (error or stop).
    pub finished: AtomicBool,
    /// RTP packets written (audio + video, first transmissions).
    pub rtp_sent: AtomicU64,
    /// Video frames sent.
    pub frames_sent: AtomicU64,
    /// Datagrams sent (including RTCP, retransmissions, handshakes).
    pub datagrams_sent: AtomicU64,
    /// PLIs received from the server.
    pub plis: AtomicU64,
    /// FIRs received from the server.
    pub firs: AtomicU64,
    /// NACK packets received from the server.
    pub nacks: AtomicU64,
    /// Times the clip jumped to its next keyframe because of a PLI/FIR.
    pub keyframes_forced: AtomicU64,
    /// PLI/FIRs not answered because a keyframe went out less than
    /// [`MIN_FORCED_KEYFRAME_INTERVAL`] before.
    pub keyframe_requests_rate_limited: AtomicU64,
}

/// Where and how to publish.
pub struct WhipTarget<'a> {
    /// The WHIP endpoint (room already filled in).
    pub url: &'a str,
    /// Bearer token.
    pub token: Option<&'a str>,
    /// Local address to send from.
    pub local_ip: std::net::IpAddr,
    /// Socket buffer size (bytes).
    pub socket_buffer: usize,
}

/// Publishes `clip` by WHIP: offer, answer, and the thread that sends it. Returns the
/// thread and the session's `Location` (for the DELETE at the end).
pub async fn start_whip_publisher(
    http: &crate::http::HttpClient,
    target: WhipTarget<'_>,
    certificate: &rtc::peer_connection::certificate::RTCCertificate,
    clip: Arc<PacketizedClip>,
    send_times: Arc<SendTimes>,
    options: PublisherOptions,
) -> anyhow::Result<(PublisherThread, Option<String>)> {
    use anyhow::Context;
    let socket = net::open_socket(
        SocketAddr::new(target.local_ip, 0),
        false,
        target.socket_buffer,
    )?;
    let local = socket
        .local_addr()?
        .as_socket()
        .context("publisher socket address")?;
    let offer = crate::load::peer::publisher(local, certificate, Instant::now())?;
    let exchange = http
        .post_sdp(target.url, target.token, &offer.offer)
        .await?;
    if exchange.status != 201 {
        bail!(
            "WHIP POST answered {}: {}",
            exchange.status,
            exchange.body.trim()
        );
    }
    let mut pc = offer.pc;
    crate::load::peer::apply_answer(&mut pc, &exchange.body, Instant::now())?;
    let thread = PublisherThread::spawn(
        pc,
        socket,
        local,
        (offer.video, offer.audio),
        clip,
        send_times,
        options,
    )?;
    Ok((thread, exchange.location))
}

/// A running publisher thread.
pub struct PublisherThread {
    /// Its counters.
    pub stats: Arc<PublisherStats>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
}

impl PublisherThread {
    /// Starts driving `pc` (answer applied) on `socket`, whose address is `local`.
    pub fn spawn(
        pc: RTCPeerConnection,
        socket: Socket,
        local: SocketAddr,
        tracks: (OutTrack, OutTrack),
        clip: Arc<PacketizedClip>,
        send_times: Arc<SendTimes>,
        options: PublisherOptions,
    ) -> anyhow::Result<PublisherThread> {
        let stats = Arc::new(PublisherStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (stats, stop) = (Arc::clone(&stats), Arc::clone(&stop));
            std::thread::Builder::new()
                .name("load-publisher".into())
                .spawn(move || {
                    let mut publisher = Publisher {
                        pc,
                        socket,
                        local,
                        video: tracks.0,
                        audio: tracks.1,
                        clip,
                        send_times,
                        options,
                        stats: Arc::clone(&stats),
                        stop,
                        queue: VecDeque::new(),
                        ice_connected: false,
                        early_dtls: Vec::new(),
                        released: Vec::new(),
                        released_frames: Vec::new(),
                        out: SendQueue::default(),
                    };
                    let result = publisher.run();
                    stats.finished.store(true, Ordering::Release);
                    if let Err(err) = &result {
                        tracing::error!(%err, "publisher stopped");
                    }
                    result
                })?
        };
        Ok(PublisherThread {
            stats,
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the thread (closing the peer) and returns how it ended.
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::Release);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => bail!("the publisher thread panicked"),
            None => Ok(()),
        }
    }
}

impl Drop for PublisherThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// One RTP packet waiting in the pacer.
struct Paced {
    release_at: Instant,
    video: bool,
    marker: bool,
    sequence_number: u16,
    timestamp: u32,
    frame: usize,
    payload: usize,
}

struct Publisher {
    pc: RTCPeerConnection,
    socket: Socket,
    local: SocketAddr,
    video: OutTrack,
    audio: OutTrack,
    clip: Arc<PacketizedClip>,
    send_times: Arc<SendTimes>,
    options: PublisherOptions,
    stats: Arc<PublisherStats>,
    stop: Arc<AtomicBool>,
    queue: VecDeque<Paced>,
    /// ICE has selected a pair: DTLS may flow.
    ice_connected: bool,
    /// DTLS datagrams that overtook the end of ICE (see the viewers' worker).
    early_dtls: Vec<(SocketAddr, bytes::BytesMut)>,
    /// Payload ids written since the last flush, stamped just before the datagrams leave.
    released: Vec<u32>,
    /// Clip frames whose marker packet was written since the last flush (stamped likewise).
    released_frames: Vec<usize>,
    out: SendQueue,
}

/// The media schedule once connected.
struct Schedule {
    start: Instant,
    frames: u64,
    audio_packets: u64,
    clip_frame: usize,
    clip_audio: usize,
    video_seq: u16,
    video_ts: u32,
    audio_seq: u16,
    audio_ts: u32,
    /// When the pacer may send its next byte.
    pacer_free_at: Instant,
    force_keyframe: bool,
    /// When the last keyframe (natural or forced) was produced.
    last_keyframe_at: Option<Instant>,
}

impl Publisher {
    fn run(&mut self) -> anyhow::Result<()> {
        let fd = self.socket.as_raw_fd();
        let mut batch = RecvBatch::default();
        let created = Instant::now();
        let mut schedule: Option<Schedule> = None;
        let frame_ticks = (90_000.0 * self.clip.frame_duration.as_secs_f64()).round() as u32;
        let pacing_bps = self.options.pacing_factor * self.clip.video_bitrate;
        loop {
            let now = Instant::now();
            if self.stop.load(Ordering::Acquire) {
                let _ = self.pc.close();
                self.drain_writes();
                self.flush(fd);
                return Ok(());
            }
            if self.pc.poll_timeout().is_some_and(|at| at <= now) {
                let _ = self.pc.handle_timeout(now);
            }
            self.poll_events(&mut schedule, now)?;
            if schedule.is_none() && now.duration_since(created) > self.options.connect_timeout {
                bail!(
                    "publisher not connected within {:?}",
                    self.options.connect_timeout
                );
            }
            while let Some(message) = self.pc.poll_read() {
                if let RTCMessage::RtcpPacket(_, packets) = message.message {
                    for packet in &packets {
                        let any = packet.as_any();
                        let answer = !self.options.ignore_pli;
                        if any.downcast_ref::<PictureLossIndication>().is_some() {
                            self.stats.plis.fetch_add(1, Ordering::Relaxed);
                            if let Some(s) = schedule.as_mut() {
                                s.force_keyframe |= answer;
                            }
                        } else if any.downcast_ref::<FullIntraRequest>().is_some() {
                            self.stats.firs.fetch_add(1, Ordering::Relaxed);
                            if let Some(s) = schedule.as_mut() {
                                s.force_keyframe |= answer;
                            }
                        } else if any.downcast_ref::<TransportLayerNack>().is_some() {
                            self.stats.nacks.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
            let mut wake = self.pc.poll_timeout();
            if let Some(s) = schedule.as_mut() {
                self.produce(s, now, frame_ticks, pacing_bps);
                let next_frame = s.start + self.clip.frame_duration.mul_f64(s.frames as f64);
                let next_audio = s.start + Duration::from_millis(20 * s.audio_packets);
                let next_release = self.queue.front().map(|p| p.release_at);
                for at in [Some(next_frame), Some(next_audio), next_release]
                    .into_iter()
                    .flatten()
                {
                    wake = Some(wake.map_or(at, |w| w.min(at)));
                }
            }
            self.drain_writes();
            self.flush(fd);
            // Sleep until the next deadline or a datagram.
            let timeout = wake
                .map(|at| at.saturating_duration_since(Instant::now()))
                .unwrap_or(Duration::from_millis(20))
                .min(Duration::from_millis(20));
            if wait_readable(fd, timeout) {
                loop {
                    match batch.recv(fd) {
                        Ok(n) if n > 0 => {
                            let now = Instant::now();
                            for datagram in batch.iter() {
                                let Some(from) = datagram.from else { continue };
                                let data = bytes::BytesMut::from(datagram.data);
                                if self.options.keep_early_dtls
                                    && !self.ice_connected
                                    && self.early_dtls.len() < 8
                                    && matches!(datagram.data.first(), Some(20..=63))
                                {
                                    // A ClientHello ahead of ICE completing: keep it, as
                                    // browsers do, instead of letting the engine drop it.
                                    self.early_dtls.push((from, data));
                                    continue;
                                }
                                self.feed(from, data, now);
                                if schedule.is_none() {
                                    // Handshake: handle ICE/DTLS events before the next
                                    // datagram, as a browser would.
                                    self.poll_events(&mut schedule, now)?;
                                }
                            }
                            if n < net::BATCH {
                                break;
                            }
                        }
                        _ => break,
                    }
                }
            }
        }
    }

    fn feed(&mut self, from: SocketAddr, data: bytes::BytesMut, now: Instant) {
        let message = TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr: self.local,
                peer_addr: from,
                ecn: None,
                transport_protocol: TransportProtocol::UDP,
            },
            message: data,
        };
        if let Err(err) = self.pc.handle_read(message) {
            tracing::debug!(%err, "publisher engine rejected a datagram");
        }
    }

    /// Handles connection state changes; the media schedule starts on `Connected`. Once
    /// ICE has completed, feeds the DTLS datagrams kept while it had not.
    fn poll_events(&mut self, schedule: &mut Option<Schedule>, now: Instant) -> anyhow::Result<()> {
        self.handle_events(schedule, now)?;
        if self.ice_connected && !self.early_dtls.is_empty() {
            for (from, data) in std::mem::take(&mut self.early_dtls) {
                self.feed(from, data, now);
            }
            self.handle_events(schedule, now)?;
        }
        Ok(())
    }

    fn handle_events(
        &mut self,
        schedule: &mut Option<Schedule>,
        now: Instant,
    ) -> anyhow::Result<()> {
        while let Some(event) = self.pc.poll_event() {
            if let RTCPeerConnectionEvent::OnIceConnectionStateChangeEvent(
                RTCIceConnectionState::Connected | RTCIceConnectionState::Completed,
            ) = event
            {
                self.ice_connected = true;
            }
            if let RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) = event {
                match state {
                    RTCPeerConnectionState::Connected if schedule.is_none() => {
                        self.stats.connected.store(true, Ordering::Release);
                        *schedule = Some(Schedule {
                            start: now,
                            frames: 0,
                            audio_packets: 0,
                            clip_frame: 0,
                            clip_audio: 0,
                            video_seq: rand::random(),
                            video_ts: rand::random(),
                            audio_seq: rand::random(),
                            audio_ts: rand::random(),
                            pacer_free_at: now,
                            force_keyframe: false,
                            last_keyframe_at: None,
                        });
                    }
                    RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => {
                        bail!("publisher connection {state}");
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// Emits the frames and audio packets that are due, and releases paced packets.
    fn produce(&mut self, s: &mut Schedule, now: Instant, frame_ticks: u32, pacing_bps: f64) {
        let clip = Arc::clone(&self.clip);
        // Video frames due: queue their packets in the pacer.
        loop {
            let due = s.start + clip.frame_duration.mul_f64(s.frames as f64);
            if due > now {
                break;
            }
            if s.force_keyframe {
                s.force_keyframe = false;
                let too_soon = s.last_keyframe_at.is_some_and(|at| {
                    due.saturating_duration_since(at) < MIN_FORCED_KEYFRAME_INTERVAL
                });
                if too_soon {
                    self.stats
                        .keyframe_requests_rate_limited
                        .fetch_add(1, Ordering::Relaxed);
                } else if !clip.video[s.clip_frame].keyframe {
                    let next = (1..clip.video.len())
                        .map(|step| (s.clip_frame + step) % clip.video.len())
                        .find(|&i| clip.video[i].keyframe);
                    if let Some(next) = next {
                        s.clip_frame = next;
                        self.stats.keyframes_forced.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            let frame = &clip.video[s.clip_frame];
            if frame.keyframe {
                s.last_keyframe_at = Some(due);
            }
            let mut release = if pacing_bps > 0.0 {
                s.pacer_free_at.max(due)
            } else {
                due
            };
            let last = frame.payloads.len() - 1;
            for (i, payload) in frame.payloads.iter().enumerate() {
                self.queue.push_back(Paced {
                    release_at: release,
                    video: true,
                    marker: i == last,
                    sequence_number: s.video_seq,
                    timestamp: s.video_ts,
                    frame: s.clip_frame,
                    payload: i,
                });
                s.video_seq = s.video_seq.wrapping_add(1);
                if pacing_bps > 0.0 {
                    release +=
                        Duration::from_secs_f64(payload.data.len() as f64 * 8.0 / pacing_bps);
                }
            }
            s.pacer_free_at = release;
            s.video_ts = s.video_ts.wrapping_add(frame_ticks);
            s.frames += 1;
            s.clip_frame = (s.clip_frame + 1) % clip.video.len();
            self.stats.frames_sent.fetch_add(1, Ordering::Relaxed);
        }
        // Audio is not paced (libwebrtc sends it ahead of video).
        loop {
            let due = s.start + Duration::from_millis(20 * s.audio_packets);
            if due > now {
                break;
            }
            let payload = &clip.audio[s.clip_audio];
            let packet = rtp_packet(
                &self.audio,
                s.audio_seq,
                s.audio_ts,
                false,
                payload.data.clone(),
            );
            if self.write(self.audio, packet, now)
                && let Some(id) = payload.id
            {
                self.released.push(id);
            }
            s.audio_seq = s.audio_seq.wrapping_add(1);
            s.audio_ts = s.audio_ts.wrapping_add(960);
            s.audio_packets += 1;
            s.clip_audio = (s.clip_audio + 1) % clip.audio.len();
        }
        // Paced video whose time has come (a little early is fine: timers are not exact).
        let horizon = now + Duration::from_micros(200);
        while self.queue.front().is_some_and(|p| p.release_at <= horizon) {
            let Some(paced) = self.queue.pop_front() else {
                break;
            };
            debug_assert!(paced.video);
            let payload = &clip.video[paced.frame].payloads[paced.payload];
            let packet = rtp_packet(
                &self.video,
                paced.sequence_number,
                paced.timestamp,
                paced.marker,
                payload.data.clone(),
            );
            if self.write(self.video, packet, now)
                && let Some(id) = payload.id
            {
                self.released.push(id);
            }
            if paced.marker {
                self.released_frames.push(paced.frame);
            }
        }
    }

    fn write(&mut self, track: OutTrack, packet: rtc::rtp::packet::Packet, now: Instant) -> bool {
        let written = self
            .pc
            .rtp_sender(track.sender)
            .map(|mut sender| sender.write_rtp(now, packet));
        match written {
            Some(Ok(())) => {
                self.stats.rtp_sent.fetch_add(1, Ordering::Relaxed);
                true
            }
            Some(Err(err)) => {
                tracing::debug!(%err, "publisher write_rtp failed");
                false
            }
            None => false,
        }
    }

    fn drain_writes(&mut self) {
        while let Some(datagram) = self.pc.poll_write() {
            self.out.push(Outgoing {
                to: datagram.transport.peer_addr,
                from_ip: None,
                data: datagram.message,
            });
        }
    }

    fn flush(&mut self, fd: std::os::fd::RawFd) {
        if !self.released.is_empty() {
            let now = net::wall_ns();
            for id in self.released.drain(..) {
                self.send_times.set(id, now);
            }
        }
        if !self.released_frames.is_empty() {
            let now = net::wall_ns();
            for frame in self.released_frames.drain(..) {
                self.send_times.set_frame(frame, now);
            }
        }
        while !self.out.is_empty() {
            let flushed = self.out.flush(fd);
            self.stats
                .datagrams_sent
                .fetch_add(flushed.datagrams as u64, Ordering::Relaxed);
            if flushed.would_block {
                // The socket buffer is full: wait for room rather than drop media.
                wait_writable(fd, Duration::from_millis(5));
            }
        }
    }
}

fn rtp_packet(
    track: &OutTrack,
    sequence_number: u16,
    timestamp: u32,
    marker: bool,
    payload: bytes::Bytes,
) -> rtc::rtp::packet::Packet {
    rtc::rtp::packet::Packet {
        header: rtc::rtp::header::Header {
            version: 2,
            marker,
            payload_type: track.payload_type,
            sequence_number,
            timestamp,
            ssrc: track.ssrc,
            ..Default::default()
        },
        payload,
    }
}

/// Waits up to `timeout` (nanosecond resolution) for `fd` to become readable.
fn wait_readable(fd: std::os::fd::RawFd, timeout: Duration) -> bool {
    wait(fd, libc::POLLIN, timeout)
}

fn wait_writable(fd: std::os::fd::RawFd, timeout: Duration) -> bool {
    wait(fd, libc::POLLOUT, timeout)
}

fn wait(fd: std::os::fd::RawFd, events: libc::c_short, timeout: Duration) -> bool {
    let mut pollfd = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: one valid pollfd and a valid timespec for the duration of the call.
    let ready = unsafe { libc::ppoll(&mut pollfd, 1, &ts, std::ptr::null()) };
    ready > 0 && pollfd.revents & events != 0
}
