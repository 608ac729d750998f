//! # Queqiao SFU — the media plane
//!
//! Publishers send WebRTC (WHIP) into a room; the SFU forwards their audio and video to
//! every WebRTC viewer (WHEP) of that room and hands the same packets to the bridge.
//!
//! ```text
//!  UDP socket (one port, all peers)
//!     │ recvmmsg                                   driver (tokio, socket, clock)
//! ────┼──────────────────────────────────────────────────────────────────────────────
//!     │ handle_datagram(now, from, bytes)           SfuCore (sans-IO, virtual-clock testable)
//!     ▼
//!  demux (ufrag + verified STUN integrity, then 5-tuple)
//!     └─► peer (webrtc-rs `rtc` sans-IO engine: ICE-lite, DTLS, SRTP, SCTP)
//!           │ publisher RTP, parsed once into Arc<SourcePacket>
//!           ▼
//!         room ── ring (dedupe, NACK answers) ── keyframe cache (instant joins)
//!           │                                  └─ PLI coalescer (≤ 1 PLI/s)
//!           ├─► forwarder per viewer (SSRC/PT/seq/ts rewrite, keyframe start)
//!           │     └─► viewer engine (SRTP) ──► poll_transmit ─┐
//!           └─► taps (bounded channels) ──► bridge           │
//! ────────────────────────────────────────────────────────────┼──────────────────────
//!                                           sendmmsg / GSO ◄──┘  (one batch per wake-up)
//! ```
//!
//! [`SfuCore`] owns every peer and room and does no I/O: it is fed datagrams, commands
//! and `now`, and yields datagrams ([`SfuCore::poll_transmit`]), its next deadline
//! ([`SfuCore::poll_timeout`]) and events ([`SfuCore::poll_event`]). The driver
//! (`driver.rs`) is the only code that touches tokio, the socket and the clock; the rest
//! of the server holds an [`SfuHandle`] and talks to the driver by message. Counters are
//! plain integers in the core, published to [`stats::SfuStats`] on housekeeping. The
//! pieces of logic — [`forwarder`], [`keyframe_cache`], [`pli_coalescer`], [`packet_ring`],
//! [`demux`], [`offer`] — are sans-IO too; `tests/core_scenarios.rs` drives the whole core
//! against in-memory `rtc` peers on a virtual clock.
//!
//! A publisher that is not a WebRTC peer (RTMP ingest) takes the same seat through
//! [`SfuHandle::ingest`]: the server feeds it frames (for the bridge, untouched) and the
//! RTP made from them (for viewers), and they enter the same fan-out
//! (`sfu_core/ingest.rs`).
//!
//! With `media_threads` > 1 there is one core and one driver per shard, each with its own
//! `SO_REUSEPORT` socket on the same port ([`cross_shard`]): a room lives on its home
//! shard, its viewers on the least-loaded shards, and other shards' mirrors of the room get
//! each publisher packet once from the home (`Arc`, bounded queue); datagrams the kernel
//! hashed to the wrong shard are handed over once. `tests/sharded_scenarios.rs` runs
//! several cores on one virtual clock.

pub mod buffer_pool;
pub mod config;
pub mod cross_shard;
pub mod demux;
mod driver;
pub mod error;
pub mod events;
pub mod fast_path;
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
pub mod unknown_sources;

pub use config::SfuConfig;
pub use error::SfuError;
pub use events::{CloseReason, SfuEvent};
pub use handle::{IngestSession, MediaThreads, Sfu, SfuHandle};
pub use ids::{PeerId, RoomId};
pub use session::{PeerRole, RoomSnapshot, Session, SfuSnapshot, ShardSnapshot};
pub use sfu_core::SfuCore;
