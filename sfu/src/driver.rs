//! The driver: the only code of the media plane that touches tokio, the socket and the
//! clock. It owns one [`SfuCore`] on its own thread and runs it:
//!
//! - socket readable → read batches with `recvmmsg` (at most [`MAX_DATAGRAMS_PER_WAKE`]
//!   datagrams per wake-up, so one busy room cannot starve commands and timers), hand
//!   each to [`SfuCore::handle_datagram`], and after each batch send what it produced;
//! - a [`Request`] from the [`crate::SfuHandle`] → [`SfuCore::handle_command`], the
//!   [`Reply`] back through its oneshot;
//! - the core's deadline ([`SfuCore::poll_timeout`]) → [`SfuCore::handle_timeout`];
//! - a [`ShardMessage`] from another shard → [`SfuCore::handle_shard_message`], and the
//!   core's own ([`SfuCore::poll_shard_message`]) into the other shards' bounded queues
//!   (never waiting: a full queue drops and counts).
//!
//! After every wake-up it drains [`SfuCore::poll_transmit`] into its [`SendQueue`] and
//! sends with `sendmmsg` (UDP GSO for runs to one viewer), once per [`SEND_EARLY`]
//! datagrams at most, and forwards [`SfuCore::poll_event`] to the broadcast channel.
//! When the kernel's buffer is full the rest waits for writability, and the core keeps
//! what the driver has not pulled yet.

use crate::cross_shard::ShardMessage;
use crate::events::SfuEvent;
use crate::sfu_core::{Command, Reply, SfuCore};
use crate::stats::SfuStats;
use crate::udp::{RecvBatch, SendQueue};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{broadcast, mpsc, oneshot};

/// Most datagrams handled per wake-up before the driver looks at commands and timers.
const MAX_DATAGRAMS_PER_WAKE: usize = 512;
/// Most messages from other shards handled per wake-up.
const MAX_SHARD_MESSAGES_PER_WAKE: usize = 1024;
/// Datagrams queued for the socket before they are sent in the middle of a drain: bounds
/// the encrypted copies held at once and how long the first viewers' packets wait.
const SEND_EARLY: usize = 256;

/// A command for the core and, if the caller waits for it, where the answer goes.
pub(crate) struct Request {
    /// The command.
    pub(crate) command: Command,
    /// Where the [`Reply`] goes (`None`: fire and forget).
    pub(crate) reply: Option<oneshot::Sender<Reply>>,
}

/// The socket side of one shard.
pub(crate) struct Driver {
    core: SfuCore,
    events: broadcast::Sender<SfuEvent>,
    stats: Arc<SfuStats>,
    send_queue: SendQueue,
    fd: RawFd,
    /// Every shard's inbox, by shard index (this shard's own included).
    links: Arc<[mpsc::Sender<ShardMessage>]>,
}

/// What connects a shard's driver to the rest: commands in, messages between shards,
/// events out.
pub(crate) struct DriverChannels {
    /// Commands from the handle.
    pub(crate) requests: mpsc::Receiver<Request>,
    /// Messages from other shards.
    pub(crate) inbox: mpsc::Receiver<ShardMessage>,
    /// Every shard's inbox, by index.
    pub(crate) links: Arc<[mpsc::Sender<ShardMessage>]>,
    /// Events for the server.
    pub(crate) events: broadcast::Sender<SfuEvent>,
}

impl Driver {
    /// Runs `core` on `socket` on a new thread until shutdown or until every handle is
    /// gone.
    pub(crate) fn spawn(
        core: SfuCore,
        socket: std::net::UdpSocket,
        channels: DriverChannels,
        stats: Arc<SfuStats>,
        name: String,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        let DriverChannels {
            requests,
            inbox,
            links,
            events,
        } = channels;
        std::thread::Builder::new().name(name).spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a current-thread runtime builds on any supported platform");
            runtime.block_on(async move {
                let socket = match tokio::net::UdpSocket::from_std(socket) {
                    Ok(socket) => socket,
                    Err(err) => return tracing::error!(%err, "cannot register the UDP socket"),
                };
                let driver = Driver {
                    core,
                    events,
                    stats,
                    send_queue: SendQueue::default(),
                    fd: socket.as_raw_fd(),
                    links,
                };
                driver.run(socket, requests, inbox).await;
            });
        })
    }

    async fn run(
        mut self,
        socket: tokio::net::UdpSocket,
        mut requests: mpsc::Receiver<Request>,
        mut inbox: mpsc::Receiver<ShardMessage>,
    ) {
        let mut batch = RecvBatch::default();
        loop {
            let deadline = tokio::time::Instant::from_std(self.core.poll_timeout());
            let wants_write = !self.send_queue.is_empty();
            tokio::select! {
                biased;
                request = requests.recv() => match request {
                    Some(Request { command: Command::Shutdown, reply }) => {
                        let answer = self.core.handle_command(Instant::now(), Command::Shutdown);
                        self.transmit();
                        self.forward_events();
                        if let Some(reply) = reply {
                            let _ = reply.send(answer);
                        }
                        break;
                    }
                    Some(Request { command, reply }) => {
                        let answer = self.core.handle_command(Instant::now(), command);
                        if let Some(reply) = reply {
                            let _ = reply.send(answer);
                        }
                    }
                    None => {
                        self.core.handle_command(Instant::now(), Command::Shutdown);
                        self.transmit();
                        break;
                    }
                },
                Some(message) = inbox.recv() => {
                    let now = Instant::now();
                    self.core.handle_shard_message(now, message);
                    for _ in 1..MAX_SHARD_MESSAGES_PER_WAKE {
                        match inbox.try_recv() {
                            Ok(message) => self.core.handle_shard_message(now, message),
                            Err(_) => break,
                        }
                    }
                }
                ready = socket.writable(), if wants_write => {
                    if ready.is_ok() {
                        self.send();
                    }
                }
                ready = socket.readable() => {
                    if ready.is_ok() {
                        let mut handled = 0;
                        while handled < MAX_DATAGRAMS_PER_WAKE {
                            let fd = self.fd;
                            let result = socket.try_io(tokio::io::Interest::READABLE, || batch.recv(fd));
                            match result {
                                Ok(0) | Err(_) => break,
                                Ok(count) => {
                                    handled += count;
                                    let now = Instant::now();
                                    for (datagram, from) in batch.iter() {
                                        if let Some(from) = from {
                                            self.core.handle_datagram(now, from, datagram);
                                        }
                                    }
                                    // Out before the next batch is read: a burst of input
                                    // must not hold back what is ready to go.
                                    self.transmit();
                                }
                            }
                        }
                    }
                }
                _ = tokio::time::sleep_until(deadline) => self.core.handle_timeout(Instant::now()),
            }
            self.transmit();
            self.forward_events();
            self.forward_shard_messages();
        }
        tracing::info!(shard = self.core.shard(), "media plane shard stopped");
    }

    /// Pulls the core's datagrams into the send queue and sends them in batches. Stops
    /// pulling while the kernel refuses more (the core keeps the rest).
    fn transmit(&mut self) {
        loop {
            if self.send_queue.len() >= SEND_EARLY {
                self.send();
                if !self.send_queue.is_empty() {
                    return;
                }
            }
            match self.core.poll_transmit() {
                Some(transmit) => self
                    .send_queue
                    .push(transmit.destination, transmit.contents),
                None => break,
            }
        }
        self.send();
    }

    fn send(&mut self) {
        if self.send_queue.is_empty() {
            return;
        }
        let mut failed = 0;
        let result = self.send_queue.flush(self.fd, &mut failed);
        if failed > 0 {
            SfuStats::add(&self.stats.send_errors, failed);
        }
        for buffer in self.send_queue.take_sent() {
            self.core.recycle(buffer);
        }
        match result {
            Ok((datagrams, bytes)) => {
                SfuStats::add(&self.stats.datagrams_out, datagrams as u64);
                SfuStats::add(&self.stats.bytes_out, bytes as u64);
            }
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(err) => tracing::warn!(%err, "UDP send failed"),
        }
    }

    /// Hands the core's messages to the other shards' queues; a full queue loses the
    /// message (counted), the shard never waits for another.
    fn forward_shard_messages(&mut self) {
        while let Some((to, message)) = self.core.poll_shard_message() {
            let sent = self
                .links
                .get(to)
                .is_some_and(|link| link.try_send(message).is_ok());
            if !sent {
                SfuStats::add(&self.stats.relay_dropped, 1);
            }
        }
    }

    fn forward_events(&mut self) {
        while let Some(event) = self.core.poll_event() {
            // Nobody listening is fine: events are advisory.
            let _ = self.events.send(event);
        }
    }
}
