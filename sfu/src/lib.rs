//! # Queqiao SFU — the media plane
//!
//! Publishers send WebRTC (WHIP) into a room; the SFU forwards their audio and video to
//! every WebRTC viewer (WHEP) of that room and hands the same packets to the bridge.
//!
//! ```text
//!  UDP socket (one port, all peers)
//!     │ recvmmsg
//!     ▼
//!  demux ──► peer (webrtc-rs `rtc` sans-IO engine: ICE-lite, DTLS, SRTP, SCTP)
//!                │ publisher RTP, parsed once into Arc<SourcePacket>
//!                ▼
//!              room ── ring (dedupe, NACK answers) ── keyframe cache (instant joins)
//!                │                                  └─ PLI coalescer (≤ 1 PLI/s)
//!                ├─► forwarder per viewer (SSRC/PT/seq/ts rewrite, keyframe start)
//!                │     └─► viewer engine (SRTP) ──► sendmmsg
//!                └─► taps (bounded channels) ──► bridge
//! ```
//!
//! Everything mutable lives in one [`shard`] task; the rest of the server holds an
//! [`SfuHandle`] and talks to it by message. The pieces of logic — [`forwarder`],
//! [`keyframe_cache`], [`pli_coalescer`], [`packet_ring`], [`demux`], [`offer`] — are
//! sans-IO and tested without sockets.

pub mod config;
pub mod demux;
mod driver;
pub mod error;
pub mod events;
pub mod feedback_delivery;
pub mod forwarder;
mod handle;
pub mod ids;
pub mod keyframe;
pub mod keyframe_cache;
pub mod media;
pub mod offer;
pub mod packet_ring;
pub mod peer;
pub mod pli_coalescer;
pub mod session;
pub mod sfu_core;
pub mod stats;
pub mod tap;
pub mod udp;

pub use config::SfuConfig;
pub use error::SfuError;
pub use events::{CloseReason, SfuEvent};
pub use handle::{Sfu, SfuHandle};
pub use ids::{PeerId, RoomId};
pub use session::{PeerRole, RoomSnapshot, Session, SfuSnapshot};
pub use sfu_core::SfuCore;
