//! The SFU's error type.

use crate::ids::RoomId;
use crate::offer::OfferError;

/// Everything that can go wrong in the media plane, as seen by its callers.
#[derive(Debug, thiserror::Error)]
pub enum SfuError {
    /// The SDP offer is oversized, malformed or offers nothing we can forward.
    #[error(transparent)]
    Offer(#[from] OfferError),
    /// No room with this id is live on this server.
    #[error("room {0} not found")]
    RoomNotFound(RoomId),
    /// The room already has a publisher that is sending media.
    #[error("room {0} already has a live publisher")]
    PublisherConflict(RoomId),
    /// A reconnecting publisher offered codecs the room's viewers cannot receive.
    #[error(
        "room {room} forwards {expected} and its viewers cannot switch codecs; offer {expected}"
    )]
    CodecConflict {
        /// The room.
        room: RoomId,
        /// The codec the room's viewers negotiated.
        expected: String,
    },
    /// No session with this id exists (ended, or never existed).
    #[error("session not found")]
    SessionNotFound,
    /// The server is at its configured peer limit.
    #[error("server is at capacity ({0} peers)")]
    Capacity(usize),
    /// The WebRTC engine rejected an operation.
    #[error("media engine error: {0}")]
    Engine(String),
    /// The media plane is shutting down or has stopped.
    #[error("the media plane is shutting down")]
    ShuttingDown,
    /// Binding or configuring the UDP socket failed.
    #[error("UDP socket: {0}")]
    Io(#[from] std::io::Error),
}
