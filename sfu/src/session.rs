//! What the rest of the server sees of sessions and rooms: roles, new sessions and
//! snapshots. A leaf module (it imports only the id newtypes), so the core, the
//! driver, the handle and the events can all use it without cycles.

use crate::ids::PeerId;
use serde::Serialize;

/// Publisher or viewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerRole {
    /// Sends media into a room (WHIP).
    Publisher,
    /// Receives a room's media (WHEP).
    Viewer,
}

/// A new session, as the HTTP layer reports it.
#[derive(Debug, Clone)]
pub struct Session {
    /// The peer's id (part of the session URL).
    pub peer: PeerId,
    /// The SDP answer.
    pub answer: String,
}

/// A room as seen by the media plane.
#[derive(Debug, Clone, Serialize)]
pub struct RoomSnapshot {
    /// The room id.
    pub id: String,
    /// A publisher is connected and has sent media recently.
    pub live: bool,
    /// The current publisher's session, if any.
    pub publisher: Option<String>,
    /// Connected viewers receiving media.
    pub viewers: usize,
    /// All sessions (connecting or connected) in the room.
    pub sessions: usize,
    /// Audio codec.
    pub audio: Option<String>,
    /// Video codec.
    pub video: Option<String>,
    /// Publisher session generation.
    pub epoch: u32,
    /// Bridge taps attached.
    pub taps: usize,
    /// Whether this is a shard's mirror of a room whose home is another shard (merged
    /// away in the handle's snapshot).
    #[serde(skip)]
    pub mirror: bool,
}

/// One media shard at a glance.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ShardSnapshot {
    /// Sessions on the shard.
    pub peers: usize,
    /// Connected viewers on the shard, over all rooms.
    pub viewers: usize,
    /// Mirrors of rooms whose home is another shard.
    pub mirrors: usize,
    /// Addresses whose datagrams the shard hands to other shards.
    pub redirects: usize,
}

/// The whole media plane at a glance (tests, `/metrics`, leak checks).
#[derive(Debug, Clone, Serialize)]
pub struct SfuSnapshot {
    /// Rooms.
    pub rooms: Vec<RoomSnapshot>,
    /// Each shard, in index order.
    pub shards: Vec<ShardSnapshot>,
    /// Peers in the shard.
    pub peers: usize,
    /// Entries in the ufrag demux table.
    pub demux_ufrags: usize,
    /// Learned addresses in the demux table.
    pub demux_addresses: usize,
    /// Timer heap entries.
    pub timers: usize,
}
