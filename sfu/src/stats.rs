//! Counters the media plane keeps and everyone else reads (metrics, tests, the load
//! generator).
//!
//! The core counts in plain integers ([`SfuCounters`]) and publishes what changed into the
//! shared atomics ([`SfuStats`]) on housekeeping and before answering a snapshot, so the
//! packet path touches no atomic. Every shard adds its own deltas to the same atomics, so
//! the figures are totals over shards. Relaxed ordering suffices: nobody synchronises on
//! them.

use crate::unknown_sources::UnknownSources;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($( $(#[$doc:meta])* $name:ident ),* $(,)?) => {
        /// Monotonic counters of the media plane.
        #[derive(Debug, Default)]
        pub struct SfuStats {
            $( $(#[$doc])* pub $name: AtomicU64, )*
            /// Unknown datagrams per source, over every shard (a fixed-size table,
            /// locked only when a core publishes new counts and when metrics read it).
            unknown_sources: Mutex<UnknownSources>,
        }

        /// A point-in-time copy of [`SfuStats`].
        #[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
        pub struct SfuStatsSnapshot {
            $( $(#[$doc])* pub $name: u64, )*
        }

        /// The core's own, plain copy of every counter (see the module docs).
        #[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
        pub struct SfuCounters {
            $( $(#[$doc])* pub $name: u64, )*
        }

        impl SfuCounters {
            /// Adds what grew since `published` to `stats` and remembers it as published.
            pub fn publish(&self, published: &mut SfuCounters, stats: &SfuStats) {
                $(
                    let delta = self.$name.wrapping_sub(published.$name);
                    if delta != 0 {
                        stats.$name.fetch_add(delta, Ordering::Relaxed);
                    }
                )*
                *published = *self;
            }
        }

        impl SfuStats {
            /// Reads every counter.
            pub fn snapshot(&self) -> SfuStatsSnapshot {
                SfuStatsSnapshot { $( $name: self.$name.load(Ordering::Relaxed), )* }
            }

            /// `(name, value)` pairs, for the Prometheus exposition.
            pub fn pairs(&self) -> Vec<(&'static str, u64)> {
                vec![ $( (stringify!($name), self.$name.load(Ordering::Relaxed)), )* ]
            }
        }
    };
}

counters! {
    /// Datagrams read from the UDP socket.
    datagrams_in,
    /// Bytes read from the UDP socket.
    bytes_in,
    /// Datagrams written to the UDP socket.
    datagrams_out,
    /// Bytes written to the UDP socket.
    bytes_out,
    /// Datagrams the kernel refused to send.
    send_errors,
    /// Datagrams dropped: STUN naming an unknown ufrag.
    dropped_unknown_ufrag,
    /// Datagrams dropped: malformed STUN from an unknown address.
    dropped_malformed_stun,
    /// Datagrams dropped: non-STUN from an unknown address.
    dropped_unknown_address,
    /// RTP packets received from publishers (after SRTP).
    rtp_in,
    /// RTP packets dropped as duplicates of one already held.
    rtp_duplicates,
    /// RTP packets dropped as too old for the ring.
    rtp_too_old,
    /// RTP packets dropped: unknown payload type.
    rtp_unknown_payload_type,
    /// RTP packets forwarded to viewers (one per viewer).
    rtp_forwarded,
    /// Forwarding skipped: viewer waiting for a keyframe.
    forward_waiting_for_keyframe,
    /// Forwarding skipped: stale or old-session packet.
    forward_stale,
    /// The engine refused an RTP write.
    forward_write_errors,
    /// Packets sent from the keyframe cache to joining viewers.
    keyframe_cache_replayed,
    /// Joins served from the keyframe cache.
    keyframe_cache_hits,
    /// Joins that found no cached keyframe.
    keyframe_cache_misses,
    /// NACKed sequence numbers received from viewers.
    nacks_received,
    /// NACKs answered from the ring.
    retransmissions,
    /// NACKs the ring could not answer.
    retransmission_misses,
    /// Keyframe requests (joins, viewer PLI/FIR, bridge).
    keyframe_requests,
    /// PLIs sent to publishers after coalescing.
    plis_sent,
    /// Events dropped because a tap's queue was full.
    tap_dropped,
    /// Peers accepted (publishers and viewers).
    peers_created,
    /// Peers closed, for any reason.
    peers_closed,
    /// Peers that timed out before connecting (ICE/DTLS failure).
    peers_connect_timeout,
    /// Connected peers closed for silence.
    peers_silent,
    /// Data-channel messages received.
    data_messages_in,
    /// Data-channel messages sent.
    data_messages_out,
    /// Datagrams dropped: a STUN request naming a known ufrag whose MESSAGE-INTEGRITY did
    /// not verify (forged or corrupted; no address learned).
    dropped_bad_integrity,
    /// RTP packets protected and sent by the SRTP fast path (of `rtp_forwarded`, plus
    /// retransmissions).
    rtp_fast_path,
    /// Viewers that connected without the fast path (keys or nominated address unknown):
    /// their RTP goes through the engine.
    fast_path_unavailable,
    /// Sender reports written for fast-path streams.
    fast_path_sender_reports,
    /// PLIs/FIRs received from viewers (compound packets carrying one).
    viewer_keyframe_requests,
    /// Viewer keyframe requests left unanswered: a keyframe reached the viewer a moment
    /// ago, or it waits for its first.
    viewer_keyframe_requests_already_served,
    /// Viewer keyframe requests answered by replaying the cached GOP to that viewer.
    viewer_keyframe_requests_replayed,
    /// Datagrams read on one shard's socket and handed to the shard that owns their peer.
    datagrams_handed_over,
    /// Publisher packets sent to other shards' mirrors of their room (one per packet per
    /// subscribed shard, not per viewer).
    relay_packets,
    /// Messages to another shard dropped because its queue was full.
    relay_dropped,
    /// NACKed packets not sent again: the viewer's track used up its retransmission
    /// budget (a viewer losing that much is congested).
    retransmissions_rate_limited,
    /// Frames received from non-WebRTC publishers (RTMP ingest), as their container
    /// carried them.
    ingest_frames,
    /// RTP packets made from non-WebRTC publishers' frames, fanned out like any
    /// publisher's.
    ingest_packets,
    /// Keyframe requests that could not reach the encoder because the publisher is an
    /// RTMP ingest (viewers are served the cached GOP instead, when there is one).
    ingest_keyframe_requests,
}

impl SfuStats {
    /// Adds a core's per-source counts of unknown traffic (and empties its table).
    pub fn record_unknown_sources(&self, from_core: &mut UnknownSources) {
        self.unknown_sources
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .drain_into(from_core);
    }

    /// The sources of unknown traffic, heaviest first (see [`UnknownSources`]).
    pub fn unknown_sources(&self) -> UnknownSources {
        self.unknown_sources
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Adds to a counter (driver-side counts such as datagrams sent).
    #[inline]
    pub fn add(counter: &AtomicU64, value: u64) {
        counter.fetch_add(value, Ordering::Relaxed);
    }
}
