//! A peer's life in the core: datagrams into its engine, the engine's events (connected,
//! tracks, data channels, failure) and messages out of it, its timers, and the periodic
//! housekeeping that times peers out and forgets idle rooms.

use super::peer_state::{Lifecycle, Role, RoomChannel};
use super::{MIRROR_IDLE_TIMEOUT, ROOM_CHANNEL_LABEL, SfuCore};
use crate::cross_shard::ShardMessage;
use crate::demux::Route;
use crate::events::{CloseReason, SfuEvent};
use crate::ids::PeerId;
use crate::session::PeerRole;
use crate::tap::TapEvent;
use bytes::BytesMut;
use rtc::data_channel::{RTCDataChannelId, RTCDataChannelInit};
use rtc::peer_connection::event::{RTCDataChannelEvent, RTCPeerConnectionEvent, RTCTrackEvent};
use rtc::peer_connection::message::RTCMessage;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use std::cmp::Reverse;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long after connecting we wait for the client to open its own `room` channel before
/// opening one ourselves.
const DATA_CHANNEL_GRACE: Duration = Duration::from_millis(300);
/// How long after a peer nominates its ICE pair we start DTLS (we are the DTLS client).
/// rtc 0.21 builds the ClientHello as soon as ICE selects a pair but hands it out only
/// from `handle_timeout`, i.e. at the ICE agent's next tick — up to 200 ms into every
/// join. Running the timers shortly after the nomination sends it at once; the few
/// milliseconds let the binding response that completes the peer's ICE arrive and be
/// handled first, because clients that read a burst of datagrams before updating their
/// ICE state (webrtc-rs) drop a ClientHello that overtakes it and wait for the DTLS
/// retransmission (1 s). Browsers would keep it either way.
const DTLS_START_DELAY: Duration = Duration::from_millis(10);
/// How often a shard forgets redirected addresses whose peers are gone.
const REDIRECTS_REFRESH_INTERVAL: Duration = Duration::from_secs(1);
/// At most one log line per this interval about unknown traffic (it is counted always).
const UNKNOWN_TRAFFIC_LOG_INTERVAL: Duration = Duration::from_secs(10);

impl SfuCore {
    /// Counts a datagram nobody claims, by reason, and logs a sample of them now and then
    /// (a flood from one source cannot fill the log).
    fn unknown_traffic(&mut self, from: SocketAddr, route: Route, now: Instant) {
        let (counter, reason) = match route {
            Route::UnknownUfrag => (&mut self.counters.dropped_unknown_ufrag, "unknown ufrag"),
            Route::BadIntegrity => (
                &mut self.counters.dropped_bad_integrity,
                "bad STUN integrity",
            ),
            Route::MalformedStun => (&mut self.counters.dropped_malformed_stun, "malformed STUN"),
            Route::UnknownAddress | Route::Peer(_) => (
                &mut self.counters.dropped_unknown_address,
                "unknown address",
            ),
        };
        *counter += 1;
        self.unknown_sources.record(from.ip(), 1);
        if self
            .unknown_logged_at
            .is_none_or(|at| now.saturating_duration_since(at) >= UNKNOWN_TRAFFIC_LOG_INTERVAL)
        {
            self.unknown_logged_at = Some(now);
            tracing::info!(%from, reason, "dropping datagrams nobody claims (sampled)");
        }
    }

    /// One datagram for a peer; `handed_over`: another shard read it (it is not handed on
    /// again, and it was counted there).
    pub(super) fn on_datagram(
        &mut self,
        datagram: &[u8],
        from: SocketAddr,
        now: Instant,
        handed_over: bool,
    ) {
        if !handed_over {
            self.counters.datagrams_in += 1;
            self.counters.bytes_in += datagram.len() as u64;
        }
        let id = match self.demux.route(datagram, from) {
            Route::Peer(id) => id,
            unclaimed => {
                if !handed_over && self.hand_over(datagram, from, unclaimed) {
                    return;
                }
                return self.unknown_traffic(from, unclaimed, now);
            }
        };
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        peer.last_received = now;
        let nominating = stun_nominates(datagram);
        if nominating {
            // Where the fast path sends: the pair the (controlling) client nominated.
            peer.nominated = Some(from);
            if let Some(fast_path) = peer.fast_path.as_mut() {
                fast_path.destination = from;
            }
        }
        let nominates = peer.lifecycle == Lifecycle::Checking && nominating;
        let message = TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr: self.advertised,
                peer_addr: from,
                ecn: None,
                transport_protocol: TransportProtocol::UDP,
            },
            message: BytesMut::from(datagram),
        };
        if let Err(err) = peer.connection.handle_read(message) {
            tracing::debug!(peer = %id, %err, "engine rejected a datagram");
        }
        self.drain_peer(id, now);
        if nominates
            && let Some(peer) = self.peers.get_mut(&id)
            && peer.lifecycle == Lifecycle::Checking
        {
            peer.lifecycle = Lifecycle::Handshaking;
            let at = now + DTLS_START_DELAY;
            if peer.timer.is_none_or(|current| at < current) {
                peer.timer = Some(at);
                self.timers.push(Reverse((at, id)));
            }
        }
    }

    /// Processes everything the engine has for the application after input, then
    /// schedules the peer's writes and its next timeout.
    pub(super) fn drain_peer(&mut self, id: PeerId, now: Instant) {
        loop {
            let Some(peer) = self.peers.get_mut(&id) else {
                return;
            };
            let Some(event) = peer.connection.poll_event() else {
                break;
            };
            self.on_engine_event(id, event, now);
        }
        loop {
            let Some(peer) = self.peers.get_mut(&id) else {
                return;
            };
            let Some(message) = peer.connection.poll_read() else {
                break;
            };
            match message.message {
                RTCMessage::RtpPacket(_, packet) => self.on_rtp(id, packet, message.now),
                RTCMessage::RtcpPacket(_, packets) => self.on_rtcp(id, packets, now),
                RTCMessage::DataChannelMessage(channel, data) => self.on_data(id, channel, data),
                _ => {}
            }
        }
        self.mark_flush(id);
        self.reschedule(id, now);
    }

    pub(super) fn on_engine_event(
        &mut self,
        id: PeerId,
        event: RTCPeerConnectionEvent,
        now: Instant,
    ) {
        match event {
            RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) => match state {
                RTCPeerConnectionState::Connected => self.on_connected(id, now),
                RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => {
                    self.close_peer(id, CloseReason::Failed, now);
                }
                _ => {}
            },
            RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init)) => {
                let Some(peer) = self.peers.get_mut(&id) else {
                    return;
                };
                let kind = peer
                    .connection
                    .rtp_receiver(init.receiver_id)
                    .map(|receiver| receiver.track().kind());
                if let Role::Publisher(state) = &mut peer.role {
                    let index = match kind {
                        Some(rtc::rtp_transceiver::rtp_sender::RtpCodecKind::Audio) => 0,
                        Some(rtc::rtp_transceiver::rtp_sender::RtpCodecKind::Video) => 1,
                        _ => return,
                    };
                    state.receivers[index] = Some(init.receiver_id);
                    state.ssrcs[index] = Some(init.ssrc);
                }
            }
            RTCPeerConnectionEvent::OnDataChannel(RTCDataChannelEvent::OnOpen(channel)) => {
                let Some(peer) = self.peers.get_mut(&id) else {
                    return;
                };
                let is_room = peer
                    .connection
                    .data_channel(channel)
                    .is_some_and(|dc| dc.label() == ROOM_CHANNEL_LABEL);
                if is_room && peer.channel.open().is_none() {
                    peer.channel = RoomChannel::Open(channel);
                    let room = peer.room.clone();
                    self.events
                        .push_back(SfuEvent::DataChannelOpen { room, peer: id });
                }
            }
            RTCPeerConnectionEvent::OnDataChannel(RTCDataChannelEvent::OnClose(channel)) => {
                if let Some(peer) = self.peers.get_mut(&id)
                    && peer.channel == RoomChannel::Open(channel)
                {
                    peer.channel = RoomChannel::Closed;
                }
            }
            _ => {}
        }
    }

    pub(super) fn on_connected(&mut self, id: PeerId, now: Instant) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        if peer.lifecycle.connected_since().is_some() {
            return;
        }
        peer.lifecycle = Lifecycle::Connected { since: now };
        let room_id = peer.room.clone();
        let role = peer.role.kind();
        tracing::info!(room = %room_id, peer = %id, ?role, "session connected");
        self.events.push_back(SfuEvent::PeerConnected {
            room: room_id.clone(),
            peer: id,
            role,
        });
        match role {
            PeerRole::Viewer => {
                if let Some(peer) = self.peers.get_mut(&id)
                    && peer.srtp_tap.is_some()
                    && let Err(err) = super::fanout::start_fast_path(peer, now)
                {
                    self.counters.fast_path_unavailable += 1;
                    tracing::warn!(peer = %id, %err, "viewer stays on the engine's RTP path");
                }
                self.start_viewer(id, &room_id, now)
            }
            // An encoder starts with a keyframe: nothing to ask for yet.
            PeerRole::Publisher => {}
        }
    }

    pub(super) fn on_data(
        &mut self,
        id: PeerId,
        channel: RTCDataChannelId,
        data: rtc::data_channel::RTCDataChannelMessage,
    ) {
        let Some(peer) = self.peers.get(&id) else {
            return;
        };
        if peer.channel != RoomChannel::Open(channel) || !data.is_string {
            return;
        }
        self.counters.data_messages_in += 1;
        match std::str::from_utf8(&data.data) {
            Ok(text) => {
                self.events.push_back(SfuEvent::DataMessage {
                    room: peer.room.clone(),
                    peer: id,
                    text: Arc::from(text),
                });
            }
            Err(_) => tracing::debug!(peer = %id, "non-UTF-8 text message dropped"),
        }
    }

    pub(super) fn send_text(&mut self, id: PeerId, text: &str, now: Instant) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let Some(channel) = peer.channel.open() else {
            return;
        };
        let sent = peer
            .connection
            .data_channel(channel)
            .map(|mut dc| dc.send_text(now, text));
        if let Some(Ok(())) = sent {
            self.counters.data_messages_out += 1;
            self.mark_flush(id);
        }
    }

    pub(super) fn reschedule(&mut self, id: PeerId, now: Instant) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let Some(deadline) = peer.connection.poll_timeout() else {
            return;
        };
        // Never schedule into the past: a timer the engine does not advance would spin.
        let deadline = deadline.max(now + Duration::from_micros(500));
        if peer.timer.is_none_or(|current| deadline < current) {
            peer.timer = Some(deadline);
            self.timers.push(Reverse((deadline, id)));
        }
    }

    pub(super) fn run_timers(&mut self, now: Instant) {
        while let Some(&Reverse((deadline, id))) = self.timers.peek() {
            if deadline > now {
                break;
            }
            self.timers.pop();
            let Some(peer) = self.peers.get_mut(&id) else {
                continue;
            };
            if peer.timer != Some(deadline) {
                continue;
            }
            peer.timer = None;
            if let Err(err) = peer.connection.handle_timeout(now) {
                tracing::debug!(peer = %id, %err, "engine timeout error");
            }
            self.drain_peer(id, now);
        }
    }

    pub(super) fn housekeeping(&mut self, now: Instant) {
        let mut to_close = Vec::new();
        let mut open_channel = Vec::new();
        for (&id, peer) in &self.peers {
            match peer.lifecycle.connected_since() {
                None if now.saturating_duration_since(peer.created_at)
                    > self.config.connect_timeout =>
                {
                    to_close.push((id, CloseReason::ConnectTimeout));
                }
                Some(_)
                    if now.saturating_duration_since(peer.last_received)
                        > self.config.silence_timeout =>
                {
                    to_close.push((id, CloseReason::Silent));
                }
                Some(connected)
                    if peer.channel == RoomChannel::Awaited
                        && now.saturating_duration_since(connected) > DATA_CHANNEL_GRACE =>
                {
                    open_channel.push(id);
                }
                _ => {}
            }
        }
        for (id, reason) in to_close {
            match reason {
                CloseReason::ConnectTimeout => self.counters.peers_connect_timeout += 1,
                CloseReason::Silent => self.counters.peers_silent += 1,
                _ => {}
            }
            self.close_peer(id, reason, now);
        }
        for id in open_channel {
            let Some(peer) = self.peers.get_mut(&id) else {
                continue;
            };
            peer.channel = RoomChannel::Requested;
            let init = RTCDataChannelInit {
                ordered: true,
                ..Default::default()
            };
            if let Err(err) = peer
                .connection
                .create_data_channel(ROOM_CHANNEL_LABEL, Some(init))
            {
                tracing::debug!(peer = %id, %err, "could not open the room data channel");
            }
            self.drain_peer(id, now);
        }
        let mut pli_due = Vec::new();
        let mut idle = Vec::new();
        for (id, room) in &mut self.rooms {
            room.taps.retain(|tap| !tap.is_closed());
            if room.pli.handle_timeout(now) {
                if let Some(publisher) = room.publisher {
                    pli_due.push(publisher);
                } else if let Some(home) = room.home {
                    self.shard_outbox
                        .push_back((home, ShardMessage::KeyframeWanted { room: id.clone() }));
                }
            }
            let idle_timeout = if room.home.is_some() {
                MIRROR_IDLE_TIMEOUT
            } else {
                self.config.room_idle_timeout
            };
            if room.members.is_empty()
                && room.taps.is_empty()
                && room.relays.is_empty()
                && room
                    .idle_since
                    .is_some_and(|since| now.saturating_duration_since(since) > idle_timeout)
            {
                idle.push(id.clone());
            }
        }
        for publisher in pli_due {
            self.send_pli(publisher, now);
        }
        self.send_sender_reports(now);
        for id in idle {
            if let Some(mut room) = self.rooms.remove(&id) {
                room.send_to_taps(TapEvent::RoomClosed, &mut self.counters.tap_dropped);
                match room.home {
                    Some(home) => self.shard_outbox.push_back((
                        home,
                        ShardMessage::Unsubscribe {
                            room: id.clone(),
                            shard: self.shard,
                        },
                    )),
                    None => self.directory.room_removed(&id, self.shard),
                }
                tracing::info!(room = %id, mirror = room.home.is_some(), "idle room removed");
            }
        }
        if now.saturating_duration_since(self.redirects_refreshed) >= REDIRECTS_REFRESH_INTERVAL {
            self.redirects_refreshed = now;
            self.redirects.refresh(&self.directory);
        }
    }
}

/// A STUN binding request carrying USE-CANDIDATE (RFC 8445 §7.1.2): the controlling
/// peer nominates the pair, and its ICE completes when our response reaches it. Reads
/// within bounds, never panics.
fn stun_nominates(datagram: &[u8]) -> bool {
    const BINDING_REQUEST: [u8; 2] = [0x00, 0x01];
    const USE_CANDIDATE: u16 = 0x0025;
    if !crate::demux::is_stun(datagram) || datagram[..2] != BINDING_REQUEST {
        return false;
    }
    let declared = u16::from_be_bytes([datagram[2], datagram[3]]) as usize;
    let Some(mut rest) = datagram.get(20..20 + declared) else {
        return false;
    };
    while rest.len() >= 4 {
        let kind = u16::from_be_bytes([rest[0], rest[1]]);
        if kind == USE_CANDIDATE {
            return true;
        }
        let len = u16::from_be_bytes([rest[2], rest[3]]) as usize;
        let Some(next) = rest.get(4 + ((len + 3) & !3)..) else {
            return false;
        };
        rest = next;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A binding request with a USERNAME and, optionally, USE-CANDIDATE.
    fn binding_request(use_candidate: bool) -> Vec<u8> {
        let mut body = Vec::new();
        // PRIORITY (4 bytes), USERNAME "ab:cd" (5 bytes, padded), then USE-CANDIDATE.
        body.extend_from_slice(&[0x00, 0x24, 0x00, 0x04, 1, 2, 3, 4]);
        body.extend_from_slice(&[0x00, 0x06, 0x00, 0x05]);
        body.extend_from_slice(b"ab:cd\0\0\0");
        if use_candidate {
            body.extend_from_slice(&[0x00, 0x25, 0x00, 0x00]);
        }
        let mut msg = vec![0x00, 0x01];
        msg.extend_from_slice(&(body.len() as u16).to_be_bytes());
        msg.extend_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
        msg.extend_from_slice(&[9; 12]);
        msg.extend_from_slice(&body);
        msg
    }

    #[test]
    fn spots_nominations() {
        assert!(stun_nominates(&binding_request(true)));
        assert!(!stun_nominates(&binding_request(false)));
        let mut response = binding_request(true);
        response[1] = 0x01;
        response[0] = 0x01; // binding success response
        assert!(!stun_nominates(&response));
        let truncated = binding_request(true);
        assert!(!stun_nominates(&truncated[..truncated.len() - 4]));
        assert!(!stun_nominates(&[0x80; 40]), "RTP");
        assert!(!stun_nominates(&[]));
    }
}
