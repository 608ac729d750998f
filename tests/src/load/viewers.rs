//! WHEP viewers: many sans-IO `rtc` peers driven by one thread (a worker) with its own
//! loop, like the server's shard. Each viewer is a real WebRTC peer — ICE, DTLS, SRTP
//! decryption, NACK generation, receiver reports, the `room` data channel — but they share
//! the worker's socket(s), timer heap and buffers, so a viewer costs what its packets cost.
//!
//! Sockets: on loopback every viewer of a worker shares one socket (its own 127.x.y.z
//! address, see [`crate::load::net`]); towards a remote server each viewer has its own
//! socket, all polled by the same loop.
//!
//! The worker measures, per received RTP packet: sequence bookkeeping (loss), forwarding
//! delay (kernel receive time minus the publisher's send time of the same payload), and
//! per viewer the time to the first complete keyframe.

use crate::load::feedback::{FeedbackCounts, ViewerFeedback};
use crate::load::measure::{FirstFrame, Histogram, SeqEvent, SeqMark, SeqTracker};
use crate::load::media::{PacketizedClip, SendTimes};
use crate::load::net::{self, Outgoing, RecvBatch, SendQueue};
use crate::load::peer::{FeedbackMode, VIDEO_PT};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use rtc::peer_connection::RTCPeerConnection;
use rtc::peer_connection::event::RTCPeerConnectionEvent;
use rtc::peer_connection::message::RTCMessage;
use rtc::peer_connection::state::{RTCIceConnectionState, RTCPeerConnectionState};
use rtc::rtcp::sender_report::SenderReport;
use rtc::rtp_transceiver::RTCRtpReceiverId;
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use socket2::Socket;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

const WAKER: Token = Token(usize::MAX);
/// How often connected viewers' engine events are polled (connection state changes).
const EVENT_POLL_INTERVAL: Duration = Duration::from_millis(250);
/// After connecting, events are polled on every datagram for this long (data channel setup).
const SETUP_GRACE: Duration = Duration::from_secs(2);
/// DTLS datagrams kept while ICE completes.
const MAX_EARLY_DTLS: usize = 8;

/// RFC 7983: DTLS records start with 20–63.
fn is_dtls(datagram: &[u8]) -> bool {
    matches!(datagram.first(), Some(20..=63))
}

/// Hands one datagram to a viewer's engine.
fn feed(viewer: &mut Viewer, from: SocketAddr, datagram: bytes::BytesMut, now: Instant) {
    let message = TaggedBytesMut {
        now,
        transport: TransportContext {
            local_addr: viewer.local,
            peer_addr: from,
            ecn: None,
            transport_protocol: TransportProtocol::UDP,
        },
        message: datagram,
    };
    if let Err(err) = viewer.pc.handle_read(message) {
        tracing::debug!(%err, "viewer engine rejected a datagram");
    }
}

/// What a worker needs to know.
#[derive(Clone)]
pub struct WorkerOptions {
    /// The published clip (payload fingerprints → ids).
    pub clip: Arc<PacketizedClip>,
    /// The publisher's send instants.
    pub send_times: Arc<SendTimes>,
    /// Socket buffer size.
    pub buffer_bytes: usize,
    /// Bind address of the shared socket (`None`: one socket per viewer, given with each join).
    pub shared_bind: Option<SocketAddr>,
    /// Keep DTLS datagrams that arrive before ICE completes, as browsers do (`false`:
    /// let the engine drop them, like webrtc-rs clients).
    pub keep_early_dtls: bool,
}

/// A viewer ready to connect: answer applied, ICE about to start.
pub struct Join {
    /// Global viewer index.
    pub index: usize,
    /// The engine.
    pub pc: RTCPeerConnection,
    /// Our candidate address.
    pub local: SocketAddr,
    /// The viewer's own socket, when not sharing the worker's.
    pub socket: Option<Socket>,
    /// When the WHEP POST was sent (`CLOCK_REALTIME` ns).
    pub post_ns: u64,
    /// Who sends the viewer's RTCP feedback.
    pub feedback: FeedbackMode,
    /// The transport-cc header extension id the answer negotiated, if any.
    pub twcc_extension: Option<u8>,
}

/// Times of one viewer's join, `CLOCK_REALTIME` ns.
#[derive(Debug, Clone, Copy, Default)]
pub struct JoinTimes {
    /// Global viewer index.
    pub index: usize,
    /// WHEP POST sent.
    pub post_ns: u64,
    /// ICE + DTLS connected.
    pub connected_ns: Option<u64>,
    /// First RTP packet received.
    pub first_rtp_ns: Option<u64>,
    /// First complete keyframe received.
    pub first_frame_ns: Option<u64>,
    /// The connection failed.
    pub failed: bool,
    /// RTCP feedback sent, by type (browser-like feedback only).
    pub feedback: FeedbackCounts,
}

/// Counters since the previous interval report.
#[derive(Debug, Clone, Default)]
pub struct IntervalReport {
    /// RTP packets received.
    pub rtp_packets: u64,
    /// RTP payload bytes received.
    pub rtp_bytes: u64,
    /// Forwarding delay of the packets received.
    pub delay: Histogram,
    /// Sequence bookkeeping over the interval (all viewers).
    pub seq: SeqMark,
    /// Viewers connected now.
    pub connected: usize,
    /// Viewers whose connection failed.
    pub failed: usize,
    /// Viewers handed to this worker.
    pub joined: usize,
}

/// Counters over the measurement window.
#[derive(Debug, Clone, Default)]
pub struct WindowReport {
    /// RTP packets received (duplicates included).
    pub rtp_packets: u64,
    /// RTP payload bytes received.
    pub rtp_bytes: u64,
    /// Sequence bookkeeping: expected and unique, all viewers and tracks.
    pub seq: SeqMark,
    /// Duplicates received.
    pub duplicates: u64,
    /// Forwarding delay.
    pub delay: Histogram,
    /// Packets whose payload had no send time (not from the clip, or ambiguous).
    pub unmatched: u64,
    /// Viewers connected at the end.
    pub connected: usize,
}

enum Command {
    Join(Box<Join>),
    Interval(oneshot::Sender<IntervalReport>),
    StartWindow(oneshot::Sender<()>),
    EndWindow(oneshot::Sender<WindowReport>),
    Joins(oneshot::Sender<Vec<JoinTimes>>),
    Stop(oneshot::Sender<()>),
}

/// The orchestrator's side of a worker.
pub struct WorkerHandle {
    commands: mpsc::Sender<Command>,
    waker: Arc<Waker>,
    /// Port of the shared socket, if viewers share one.
    pub shared_port: Option<u16>,
    /// Cheap live counter: RTP packets received.
    pub rtp_packets: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl WorkerHandle {
    /// Starts a worker thread.
    pub fn spawn(name: String, options: WorkerOptions) -> anyhow::Result<WorkerHandle> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (commands, receiver) = mpsc::channel();
        let mut sockets = Vec::new();
        let mut shared_port = None;
        if let Some(bind) = options.shared_bind {
            let socket = net::open_socket(bind, true, options.buffer_bytes)?;
            shared_port = socket.local_addr()?.as_socket().map(|a| a.port());
            let fd = socket.as_raw_fd();
            poll.registry().register(
                &mut SourceFd(&fd),
                Token(0),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            sockets.push(WorkerSocket {
                socket,
                shared: true,
                viewer: None,
                out: SendQueue::default(),
            });
        }
        let rtp_packets = Arc::new(AtomicU64::new(0));
        let worker = Worker {
            poll,
            commands: receiver,
            sockets,
            viewers: Vec::new(),
            by_index: Vec::new(),
            timers: BinaryHeap::new(),
            touched: Vec::new(),
            clip: options.clip,
            send_times: options.send_times,
            interval: IntervalReport::default(),
            interval_mark: SeqMark::default(),
            window: WindowReport::default(),
            window_marks: Vec::new(),
            window_open: false,
            rtp_packets: Arc::clone(&rtp_packets),
            next_event_poll: Instant::now(),
            keep_early_dtls: options.keep_early_dtls,
        };
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || worker.run())?;
        Ok(WorkerHandle {
            commands,
            waker,
            shared_port,
            rtp_packets,
            thread: Some(thread),
        })
    }

    fn send(&self, command: Command) -> anyhow::Result<()> {
        self.commands
            .send(command)
            .map_err(|_| anyhow::anyhow!("viewer worker stopped"))?;
        self.waker.wake()?;
        Ok(())
    }

    /// Hands a viewer to the worker.
    pub fn join(&self, join: Join) -> anyhow::Result<()> {
        self.send(Command::Join(Box::new(join)))
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> anyhow::Result<T> {
        let (reply, answer) = oneshot::channel();
        self.send(make(reply))?;
        answer
            .await
            .map_err(|_| anyhow::anyhow!("viewer worker stopped"))
    }

    /// Counters since the last call.
    pub async fn interval(&self) -> anyhow::Result<IntervalReport> {
        self.ask(Command::Interval).await
    }

    /// Starts the measurement window.
    pub async fn start_window(&self) -> anyhow::Result<()> {
        self.ask(Command::StartWindow).await
    }

    /// Ends the measurement window.
    pub async fn end_window(&self) -> anyhow::Result<WindowReport> {
        self.ask(Command::EndWindow).await
    }

    /// Join times of every viewer so far.
    pub async fn joins(&self) -> anyhow::Result<Vec<JoinTimes>> {
        self.ask(Command::Joins).await
    }

    /// Closes every viewer and stops the thread.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let result = self.ask(Command::Stop).await;
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        result
    }
}

struct WorkerSocket {
    socket: Socket,
    shared: bool,
    /// The one viewer on a per-viewer socket.
    viewer: Option<usize>,
    out: SendQueue,
}

struct Viewer {
    times: JoinTimes,
    pc: RTCPeerConnection,
    socket: usize,
    local: SocketAddr,
    /// Source address for outgoing datagrams on a shared socket.
    from_ip: Option<IpAddr>,
    connected_at: Option<Instant>,
    /// ICE has selected a pair: DTLS may flow.
    ice_connected: bool,
    /// DTLS datagrams that arrived before ICE completed, fed to the engine once it has.
    early_dtls: Vec<(SocketAddr, bytes::BytesMut)>,
    closed: bool,
    timer: Option<Instant>,
    touched: bool,
    /// Writes or events may be pending (handshakes, SCTP, timers): flush after this wake-up.
    needs_flush: bool,
    tracks: [SeqTracker; 2],
    first_frame: Option<FirstFrame>,
    feedback_mode: FeedbackMode,
    twcc_extension: Option<u8>,
    /// Browser-like feedback, once connected (with [`FeedbackMode::Browser`]).
    feedback: Option<ViewerFeedback>,
    /// The receiver our RTCP is written through.
    receiver: Option<RTCRtpReceiverId>,
}

struct Worker {
    poll: Poll,
    commands: mpsc::Receiver<Command>,
    sockets: Vec<WorkerSocket>,
    viewers: Vec<Viewer>,
    /// Global viewer index → position in `viewers` (`u32::MAX`: not here).
    by_index: Vec<u32>,
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    touched: Vec<usize>,
    clip: Arc<PacketizedClip>,
    send_times: Arc<SendTimes>,
    interval: IntervalReport,
    interval_mark: SeqMark,
    window: WindowReport,
    window_marks: Vec<[SeqMark; 2]>,
    window_open: bool,
    rtp_packets: Arc<AtomicU64>,
    next_event_poll: Instant,
    keep_early_dtls: bool,
}

impl Worker {
    fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut batch = RecvBatch::default();
        loop {
            loop {
                match self.commands.try_recv() {
                    Ok(Command::Stop(reply)) => {
                        self.close_all();
                        let _ = reply.send(());
                        return;
                    }
                    Ok(command) => self.handle_command(command),
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => {
                        self.close_all();
                        return;
                    }
                }
            }
            let now = Instant::now();
            let timeout = self
                .timers
                .peek()
                .map(|Reverse((at, _))| at.saturating_duration_since(now))
                .unwrap_or(EVENT_POLL_INTERVAL)
                .min(EVENT_POLL_INTERVAL);
            if let Err(err) = self.poll.poll(&mut events, Some(timeout))
                && err.kind() != std::io::ErrorKind::Interrupted
            {
                tracing::error!(%err, "viewer worker poll failed");
                return;
            }
            for event in events.iter() {
                let token = event.token();
                if token == WAKER {
                    continue;
                }
                if event.is_readable() {
                    self.read_socket(token.0, &mut batch);
                }
            }
            let now = Instant::now();
            self.run_timers(now);
            if now >= self.next_event_poll {
                self.next_event_poll = now + EVENT_POLL_INTERVAL;
                for slot in 0..self.viewers.len() {
                    self.viewers[slot].needs_flush = true;
                    self.touch(slot);
                }
            }
            self.flush_viewers(now);
            self.flush_sockets();
        }
    }

    fn handle_command(&mut self, command: Command) {
        match command {
            Command::Join(join) => self.add(*join),
            Command::Interval(reply) => {
                let mark = self.seq_total();
                let mut report = std::mem::take(&mut self.interval);
                report.seq = mark.since(&self.interval_mark);
                self.interval_mark = mark;
                report.connected = self
                    .viewers
                    .iter()
                    .filter(|v| v.connected_at.is_some() && !v.closed)
                    .count();
                report.failed = self.viewers.iter().filter(|v| v.times.failed).count();
                report.joined = self.viewers.len();
                let _ = reply.send(report);
            }
            Command::StartWindow(reply) => {
                self.window = WindowReport::default();
                self.window_marks = self
                    .viewers
                    .iter()
                    .map(|v| [v.tracks[0].mark(), v.tracks[1].mark()])
                    .collect();
                self.window_open = true;
                let _ = reply.send(());
            }
            Command::EndWindow(reply) => {
                self.window_open = false;
                let mut report = std::mem::take(&mut self.window);
                let mut seq = SeqMark::default();
                for (slot, viewer) in self.viewers.iter().enumerate() {
                    for track in 0..2 {
                        let start = self
                            .window_marks
                            .get(slot)
                            .map(|m| m[track])
                            .unwrap_or_default();
                        let delta = viewer.tracks[track].mark().since(&start);
                        seq.unique += delta.unique;
                        seq.expected += delta.expected;
                    }
                }
                report.seq = seq;
                report.connected = self
                    .viewers
                    .iter()
                    .filter(|v| v.connected_at.is_some() && !v.closed)
                    .count();
                let _ = reply.send(report);
            }
            Command::Joins(reply) => {
                let times = self
                    .viewers
                    .iter()
                    .map(|v| JoinTimes {
                        feedback: v.feedback.as_ref().map(|f| f.counts()).unwrap_or_default(),
                        ..v.times
                    })
                    .collect();
                let _ = reply.send(times);
            }
            Command::Stop(_) => unreachable!("handled by the loop"),
        }
    }

    fn seq_total(&self) -> SeqMark {
        let mut total = SeqMark::default();
        for viewer in &self.viewers {
            for track in &viewer.tracks {
                let mark = track.mark();
                total.unique += mark.unique;
                total.expected += mark.expected;
            }
        }
        total
    }

    fn add(&mut self, join: Join) {
        let Join {
            index,
            pc,
            local,
            socket,
            post_ns,
            feedback,
            twcc_extension,
        } = join;
        let socket_slot = match socket {
            Some(socket) => {
                let slot = self.sockets.len();
                let fd = socket.as_raw_fd();
                if let Err(err) = self.poll.registry().register(
                    &mut SourceFd(&fd),
                    Token(slot),
                    Interest::READABLE | Interest::WRITABLE,
                ) {
                    tracing::error!(%err, "cannot poll a viewer socket");
                    return;
                }
                self.sockets.push(WorkerSocket {
                    socket,
                    shared: false,
                    viewer: Some(self.viewers.len()),
                    out: SendQueue::default(),
                });
                slot
            }
            None => 0,
        };
        let shared = self.sockets.get(socket_slot).is_some_and(|s| s.shared);
        let slot = self.viewers.len();
        if shared {
            if self.by_index.len() <= index {
                self.by_index.resize(index + 1, u32::MAX);
            }
            self.by_index[index] = slot as u32;
        }
        self.viewers.push(Viewer {
            times: JoinTimes {
                index,
                post_ns,
                ..Default::default()
            },
            pc,
            socket: socket_slot,
            local,
            from_ip: shared.then_some(local.ip()),
            connected_at: None,
            ice_connected: false,
            early_dtls: Vec::new(),
            closed: false,
            timer: None,
            touched: false,
            needs_flush: true,
            tracks: [SeqTracker::new(), SeqTracker::new()],
            first_frame: Some(FirstFrame::new()),
            feedback_mode: feedback,
            twcc_extension,
            feedback: None,
            receiver: None,
        });
        if self.window_open {
            self.window_marks.push([SeqMark::default(); 2]);
        }
        // Start ICE at once.
        let now = Instant::now();
        let _ = self.viewers[slot].pc.handle_timeout(now);
        self.touch(slot);
    }

    fn touch(&mut self, slot: usize) {
        let viewer = &mut self.viewers[slot];
        if !viewer.touched {
            viewer.touched = true;
            self.touched.push(slot);
        }
    }

    fn read_socket(&mut self, socket_slot: usize, batch: &mut RecvBatch) {
        let Some(socket) = self.sockets.get(socket_slot) else {
            return;
        };
        let fd = socket.socket.as_raw_fd();
        loop {
            let count = match batch.recv(fd) {
                Ok(count) => count,
                Err(_) => return,
            };
            let now = Instant::now();
            for datagram in batch.iter() {
                let Some(from) = datagram.from else { continue };
                let slot = match &self.sockets[socket_slot] {
                    WorkerSocket {
                        viewer: Some(slot), ..
                    } => Some(*slot),
                    _ => match datagram.to_ip {
                        Some(IpAddr::V4(ip)) => net::loopback_index(ip)
                            .and_then(|index| self.by_index.get(index))
                            .filter(|&&slot| slot != u32::MAX)
                            .map(|&slot| slot as usize),
                        _ => None,
                    },
                };
                let Some(slot) = slot else { continue };
                self.on_datagram(slot, datagram.data, from, datagram.rx_ns, now);
            }
            // Fewer than a full batch: the queue was empty. New datagrams raise a new
            // edge-triggered event, so there is no need for a final `WouldBlock` read.
            if count < net::BATCH {
                return;
            }
        }
    }

    fn on_datagram(
        &mut self,
        slot: usize,
        data: &[u8],
        from: SocketAddr,
        rx_ns: Option<u64>,
        now: Instant,
    ) {
        let viewer = &mut self.viewers[slot];
        if viewer.closed {
            return;
        }
        // RTP and RTCP (RFC 7983: first byte 128–191) need no engine event or write sweep
        // once the viewer is connected; everything else (STUN, DTLS, SCTP) may.
        let is_media = matches!(data.first(), Some(128..=191));
        let setting_up = viewer
            .connected_at
            .is_none_or(|at| now.saturating_duration_since(at) < SETUP_GRACE);
        let rx_ns = rx_ns.unwrap_or_else(net::wall_ns);
        if self.keep_early_dtls
            && !viewer.ice_connected
            && viewer.early_dtls.len() < MAX_EARLY_DTLS
            && is_dtls(data)
        {
            // The server's ClientHello can overtake the binding response that completes
            // our ICE; the engine would drop it and the handshake would wait for a DTLS
            // retransmission (1 s). Browsers keep it until DTLS starts (libwebrtc caches
            // an early ClientHello); so do we.
            viewer.early_dtls.push((from, bytes::BytesMut::from(data)));
            return;
        }
        feed(viewer, from, bytes::BytesMut::from(data), now);
        if is_media && !setting_up {
            // Media only: nothing but media can have come out, and `poll_media_read` pops
            // it without sweeping the whole pipeline again as `poll_read` does.
            while let Some(message) = self.viewers[slot].pc.poll_media_read() {
                self.on_message(slot, message.message, rx_ns, now);
            }
        } else {
            // Handshakes: engine events must be handled before the next datagram, as a
            // browser would (ICE connected starts our DTLS server; a ClientHello right
            // behind the binding response would otherwise be dropped).
            self.poll_events(slot, now);
            while let Some(message) = self.viewers[slot].pc.poll_read() {
                self.on_message(slot, message.message, rx_ns, now);
            }
            self.viewers[slot].needs_flush = true;
        }
        self.touch(slot);
    }

    /// Handles the engine's events (connection state changes); once ICE has completed,
    /// feeds the DTLS datagrams kept while it had not.
    fn poll_events(&mut self, slot: usize, now: Instant) {
        self.handle_events(slot, now);
        let viewer = &mut self.viewers[slot];
        if viewer.ice_connected && !viewer.early_dtls.is_empty() {
            for (from, datagram) in std::mem::take(&mut viewer.early_dtls) {
                feed(viewer, from, datagram, now);
            }
            self.handle_events(slot, now);
        }
    }

    fn handle_events(&mut self, slot: usize, now: Instant) {
        let viewer = &mut self.viewers[slot];
        while let Some(event) = viewer.pc.poll_event() {
            if let RTCPeerConnectionEvent::OnIceConnectionStateChangeEvent(
                RTCIceConnectionState::Connected | RTCIceConnectionState::Completed,
            ) = event
            {
                viewer.ice_connected = true;
            }
            if let RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) = event {
                match state {
                    RTCPeerConnectionState::Connected if viewer.connected_at.is_none() => {
                        viewer.connected_at = Some(now);
                        viewer.times.connected_ns = Some(net::wall_ns());
                        if viewer.feedback_mode == FeedbackMode::Browser {
                            viewer.receiver = viewer.pc.get_receivers().next();
                            viewer.feedback = Some(ViewerFeedback::new(
                                rand::random(),
                                viewer.twcc_extension,
                                now,
                            ));
                            viewer.needs_flush = true;
                        }
                    }
                    RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => {
                        viewer.closed = true;
                        viewer.times.failed = viewer.connected_at.is_none();
                    }
                    _ => {}
                }
            }
        }
    }

    /// One message from a viewer's engine: RTP is measured, sender reports feed the
    /// receiver reports, the rest is dropped.
    fn on_message(&mut self, slot: usize, message: RTCMessage, rx_ns: u64, now: Instant) {
        match message {
            RTCMessage::RtpPacket(_, packet) => self.on_rtp(slot, &packet, rx_ns, now),
            RTCMessage::RtcpPacket(_, packets) => {
                if let Some(feedback) = self.viewers[slot].feedback.as_mut() {
                    for packet in &packets {
                        if let Some(report) = packet.as_any().downcast_ref::<SenderReport>() {
                            feedback.on_sender_report(report.ssrc, report.ntp_time, now);
                        }
                    }
                }
            }
            _ => {}
        }
    }

    fn on_rtp(&mut self, slot: usize, packet: &rtc::rtp::packet::Packet, rx_ns: u64, now: Instant) {
        let viewer = &mut self.viewers[slot];
        let video = packet.header.payload_type == VIDEO_PT;
        if let Some(feedback) = viewer.feedback.as_mut()
            && feedback.on_rtp(video, packet, now)
        {
            // A new hole: its NACK deadline may be earlier than the armed timer.
            viewer.needs_flush = true;
        }
        let event = viewer.tracks[video as usize].record(packet.header.sequence_number);
        if viewer.times.first_rtp_ns.is_none() {
            viewer.times.first_rtp_ns = Some(rx_ns);
        }
        if video
            && let Some(detector) = viewer.first_frame.as_mut()
            && detector.push(
                packet.header.sequence_number,
                packet.header.timestamp,
                packet.header.marker,
                &packet.payload,
            )
        {
            viewer.times.first_frame_ns = Some(rx_ns);
            viewer.first_frame = None;
        }
        let bytes = packet.payload.len() as u64;
        self.interval.rtp_packets += 1;
        self.interval.rtp_bytes += bytes;
        self.rtp_packets.fetch_add(1, Ordering::Relaxed);
        let sent = self
            .clip
            .id_of(&packet.payload)
            .and_then(|id| self.send_times.get(id));
        if self.window_open {
            self.window.rtp_packets += 1;
            self.window.rtp_bytes += bytes;
            if event == SeqEvent::Duplicate {
                self.window.duplicates += 1;
            }
        }
        match sent {
            Some(sent_ns) => {
                let delay = rx_ns.saturating_sub(sent_ns);
                self.interval.delay.record(delay);
                if self.window_open {
                    self.window.delay.record(delay);
                }
            }
            None if self.window_open => self.window.unmatched += 1,
            None => {}
        }
    }

    fn run_timers(&mut self, now: Instant) {
        while let Some(&Reverse((deadline, slot))) = self.timers.peek() {
            if deadline > now {
                break;
            }
            self.timers.pop();
            let viewer = &mut self.viewers[slot];
            if viewer.timer != Some(deadline) || viewer.closed {
                continue;
            }
            viewer.timer = None;
            if let Err(err) = viewer.pc.handle_timeout(now) {
                tracing::debug!(%err, "viewer engine timeout error");
            }
            if let Some(feedback) = viewer.feedback.as_mut()
                && feedback.poll_timeout() <= now
            {
                let packets = feedback.handle_timeout(now);
                if !packets.is_empty() {
                    let written = viewer
                        .receiver
                        .and_then(|id| viewer.pc.rtp_receiver(id))
                        .map(|mut receiver| receiver.write_rtcp(now, packets));
                    if !matches!(written, Some(Ok(()))) {
                        tracing::debug!(?written, "viewer RTCP not written");
                        feedback.record_write_failure();
                    }
                }
            }
            viewer.needs_flush = true;
            self.touch(slot);
        }
    }

    /// Engine events, outgoing datagrams and the next timeout of every viewer touched in
    /// this wake-up.
    fn flush_viewers(&mut self, now: Instant) {
        let touched = std::mem::take(&mut self.touched);
        for &slot in &touched {
            self.viewers[slot].touched = false;
            if self.viewers[slot].closed || !self.viewers[slot].needs_flush {
                continue;
            }
            self.viewers[slot].needs_flush = false;
            self.poll_events(slot, now);
            let viewer = &mut self.viewers[slot];
            // Data-channel messages (room events) are read and dropped.
            while viewer.pc.poll_read().is_some() {}
            let socket = &mut self.sockets[viewer.socket];
            while let Some(datagram) = viewer.pc.poll_write() {
                socket.out.push(Outgoing {
                    to: datagram.transport.peer_addr,
                    from_ip: viewer.from_ip,
                    data: datagram.message,
                });
            }
            let feedback_deadline = viewer.feedback.as_ref().map(|f| f.poll_timeout());
            let deadline = match (viewer.pc.poll_timeout(), feedback_deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            if let Some(deadline) = deadline {
                let deadline = deadline.max(now + Duration::from_micros(500));
                if viewer.timer.is_none_or(|current| deadline < current) {
                    viewer.timer = Some(deadline);
                    self.timers.push(Reverse((deadline, slot)));
                }
            }
        }
        self.touched = touched;
        self.touched.clear();
    }

    fn flush_sockets(&mut self) {
        for socket in &mut self.sockets {
            if !socket.out.is_empty() {
                let flushed = socket.out.flush(socket.socket.as_raw_fd());
                if flushed.would_block {
                    // Retried on the next wake-up (writable events are registered).
                    tracing::trace!("viewer socket full");
                }
            }
        }
    }

    fn close_all(&mut self) {
        for viewer in &mut self.viewers {
            if !viewer.closed {
                let _ = viewer.pc.close();
                viewer.closed = true;
                let socket = &mut self.sockets[viewer.socket];
                while let Some(datagram) = viewer.pc.poll_write() {
                    socket.out.push(Outgoing {
                        to: datagram.transport.peer_addr,
                        from_ip: viewer.from_ip,
                        data: datagram.message,
                    });
                }
            }
        }
        self.flush_sockets();
    }
}
