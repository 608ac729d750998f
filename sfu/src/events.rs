//! What the media plane tells the rest of the server: session lifecycle, room liveness and
//! data-channel messages. Delivered on a broadcast channel; a receiver that falls behind
//! loses the oldest events (and learns how many), it never slows the shard.

use crate::ids::{PeerId, RoomId};
use crate::session::PeerRole;
use std::sync::Arc;

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// The client sent `DELETE`.
    Deleted,
    /// ICE/DTLS did not complete in time.
    ConnectTimeout,
    /// The connection failed or the peer closed it.
    Failed,
    /// No datagram for the silence timeout.
    Silent,
    /// Replaced by a newer publisher session.
    Replaced,
    /// The server is shutting down.
    Shutdown,
}

/// See the module docs.
#[derive(Debug, Clone)]
pub enum SfuEvent {
    /// A session completed ICE and DTLS.
    PeerConnected {
        /// Room.
        room: RoomId,
        /// Session.
        peer: PeerId,
        /// Publisher or viewer.
        role: PeerRole,
    },
    /// A session ended.
    PeerClosed {
        /// Room.
        room: RoomId,
        /// Session.
        peer: PeerId,
        /// Publisher or viewer.
        role: PeerRole,
        /// Why.
        reason: CloseReason,
    },
    /// The room's viewer count changed.
    ViewerCount {
        /// Room.
        room: RoomId,
        /// Connected viewers.
        viewers: usize,
    },
    /// A publisher started sending media (the room is live).
    Live {
        /// Room.
        room: RoomId,
        /// Publisher session generation.
        epoch: u32,
    },
    /// The publisher left (the room is no longer live; viewers stay connected).
    Offline {
        /// Room.
        room: RoomId,
    },
    /// A session's `room` data channel opened.
    DataChannelOpen {
        /// Room.
        room: RoomId,
        /// Session.
        peer: PeerId,
    },
    /// A text message arrived on a session's `room` data channel.
    DataMessage {
        /// Room.
        room: RoomId,
        /// Session.
        peer: PeerId,
        /// The UTF-8 text (binary messages are not delivered).
        text: Arc<str>,
    },
}
