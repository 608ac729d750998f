//! Keyframe requests to a publisher, coalesced.
//!
//! Every joining viewer, decoder error and bridge segment boundary may want a keyframe;
//! each PLI multiplies the publisher's bitrate for a moment, so however many ask, at most
//! one PLI per `min_interval` reaches the publisher. A request inside the interval is
//! remembered and sent when the interval ends — unless a keyframe arrived meanwhile.
//!
//! Coalescing bounds the rate; [`answer_viewer_keyframe_request`] decides whether a
//! viewer's PLI/FIR needs the publisher at all. Clients send them when no keyframe is
//! needed (at start, on a timer as many Pion-based players do, or because a keyframe is
//! already in flight to them), and a room of viewers doing so used to keep its publisher
//! at one PLI per second: a real encoder answers each with a keyframe, multiplying its
//! bitrate. A PLI reaches the publisher only when a keyframe is really missing.

use std::time::{Duration, Instant};

/// The default minimum spacing of PLIs to one publisher.
pub const DEFAULT_MIN_INTERVAL: Duration = Duration::from_secs(1);

/// A viewer's keyframe request within this time of a keyframe sent to it crossed that
/// keyframe (or came from a client that asks on every start): it is not answered again.
pub const KEYFRAME_IN_FLIGHT: Duration = Duration::from_secs(1);

/// What to do with a PLI or FIR from a viewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViewerKeyframeAnswer {
    /// Nothing: a keyframe went to this viewer less than [`KEYFRAME_IN_FLIGHT`] ago, or
    /// the viewer waits for one already (its own request to the publisher is pending).
    AlreadyServed,
    /// Replay the room's cached GOP to this viewer alone (see
    /// `Forwarder::prepare_replay_on_request`); the publisher is not asked.
    ReplayFromCache,
    /// The cache cannot help (empty, stale, or with a hole): ask the publisher, through
    /// the room's [`PliCoalescer`].
    AskPublisher,
}

/// Decides a viewer's PLI/FIR: `last_keyframe_sent` is when this viewer was last sent a
/// keyframe (`Forwarder::last_keyframe_sent`), `viewer_waiting` whether it is still
/// waiting for its first (`Forwarder::needs_keyframe`), `cache_complete` whether the
/// room's keyframe cache holds a complete GOP of the current session
/// (`KeyframeCache::is_complete`).
pub fn answer_viewer_keyframe_request(
    now: Instant,
    last_keyframe_sent: Option<Instant>,
    viewer_waiting: bool,
    cache_complete: bool,
) -> ViewerKeyframeAnswer {
    let recently_served =
        last_keyframe_sent.is_some_and(|at| now.saturating_duration_since(at) < KEYFRAME_IN_FLIGHT);
    if viewer_waiting || recently_served {
        ViewerKeyframeAnswer::AlreadyServed
    } else if cache_complete {
        ViewerKeyframeAnswer::ReplayFromCache
    } else {
        ViewerKeyframeAnswer::AskPublisher
    }
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct PliCoalescer {
    min_interval: Duration,
    last_sent: Option<Instant>,
    pending: bool,
    sent: u64,
    suppressed: u64,
}

impl Default for PliCoalescer {
    fn default() -> Self {
        Self::new(DEFAULT_MIN_INTERVAL)
    }
}

impl PliCoalescer {
    /// A coalescer allowing one PLI per `min_interval`.
    pub fn new(min_interval: Duration) -> Self {
        Self {
            min_interval,
            last_sent: None,
            pending: false,
            sent: 0,
            suppressed: 0,
        }
    }

    /// Someone wants a keyframe. Returns `true` when a PLI should be sent now.
    pub fn request(&mut self, now: Instant) -> bool {
        if self.may_send(now) {
            self.mark_sent(now);
            true
        } else {
            if !self.pending {
                self.pending = true;
            }
            self.suppressed += 1;
            false
        }
    }

    /// A keyframe arrived: a pending request is satisfied.
    pub fn keyframe_received(&mut self) {
        self.pending = false;
    }

    /// When a pending request becomes sendable.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.pending {
            return None;
        }
        // `pending` is only set while `last_sent` is recent, so it is always `Some` here.
        self.last_sent.map(|last| last + self.min_interval)
    }

    /// Returns `true` when the pending request should be sent now.
    pub fn handle_timeout(&mut self, now: Instant) -> bool {
        if self.pending && self.may_send(now) {
            self.mark_sent(now);
            true
        } else {
            false
        }
    }

    /// Forget the publisher (a new one starts with a clean slate).
    pub fn reset(&mut self) {
        self.last_sent = None;
        self.pending = false;
    }

    /// PLIs let through.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Requests absorbed by coalescing.
    pub fn suppressed(&self) -> u64 {
        self.suppressed
    }

    fn may_send(&self, now: Instant) -> bool {
        self.last_sent
            .is_none_or(|last| now.saturating_duration_since(last) >= self.min_interval)
    }

    fn mark_sent(&mut self, now: Instant) {
        self.last_sent = Some(now);
        self.pending = false;
        self.sent += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifty_requests_in_one_second_send_at_most_two() {
        let t0 = Instant::now();
        let mut pli = PliCoalescer::default();
        let mut sent = 0;
        for i in 0..50 {
            let now = t0 + Duration::from_millis(i * 20);
            if pli.request(now) {
                sent += 1;
            }
        }
        assert_eq!(sent, 1);
        // The pending request fires once the interval has passed.
        let due = pli.poll_timeout().unwrap();
        assert_eq!(due, t0 + Duration::from_secs(1));
        assert!(!pli.handle_timeout(due - Duration::from_millis(1)));
        assert!(pli.handle_timeout(due));
        assert!(
            !pli.handle_timeout(due + Duration::from_secs(5)),
            "nothing pending"
        );
        assert_eq!(pli.sent(), 2);
        assert_eq!(pli.suppressed(), 49);
    }

    #[test]
    fn viewer_requests_reach_the_publisher_only_when_the_cache_cannot_serve() {
        let t0 = Instant::now();
        let after = |ms| t0 + Duration::from_millis(ms);
        // A PLI right after the joiner got the cached GOP (clients ask on start): nothing.
        assert_eq!(
            answer_viewer_keyframe_request(after(200), Some(t0), false, true),
            ViewerKeyframeAnswer::AlreadyServed
        );
        // A viewer still waiting for its first keyframe has asked already.
        assert_eq!(
            answer_viewer_keyframe_request(after(200), None, true, false),
            ViewerKeyframeAnswer::AlreadyServed
        );
        // Later (a decoder error, or a periodic PLI): the cache answers if it can …
        assert_eq!(
            answer_viewer_keyframe_request(after(1500), Some(t0), false, true),
            ViewerKeyframeAnswer::ReplayFromCache
        );
        // … and only a cache without a complete GOP asks the publisher.
        assert_eq!(
            answer_viewer_keyframe_request(after(1500), Some(t0), false, false),
            ViewerKeyframeAnswer::AskPublisher
        );
    }

    #[test]
    fn two_hundred_viewers_sending_periodic_plis_cost_the_publisher_nothing() {
        // The independent client's run: 200 viewers, each sending a PLI every 3 s after
        // joining on the cached GOP, for 33 s. Before, each went to the coalescer: about
        // one PLI per second reached the publisher (29 in 33 s).
        let t0 = Instant::now();
        let mut coalescer = PliCoalescer::default();
        let mut last_keyframe: Vec<Instant> = (0..200).map(|_| t0).collect();
        let mut to_publisher = 0;
        for tick in 1..=330u64 {
            let now = t0 + Duration::from_millis(tick * 100);
            for (viewer, last) in last_keyframe.iter_mut().enumerate() {
                if !(tick + viewer as u64).is_multiple_of(30) {
                    continue;
                }
                match answer_viewer_keyframe_request(now, Some(*last), false, true) {
                    ViewerKeyframeAnswer::ReplayFromCache => *last = now,
                    ViewerKeyframeAnswer::AskPublisher => {
                        to_publisher += coalescer.request(now) as u32;
                    }
                    ViewerKeyframeAnswer::AlreadyServed => {}
                }
            }
        }
        assert_eq!(to_publisher, 0);
        assert_eq!(coalescer.sent(), 0);
    }

    #[test]
    fn a_keyframe_satisfies_a_pending_request() {
        let t0 = Instant::now();
        let mut pli = PliCoalescer::default();
        assert!(pli.request(t0));
        assert!(!pli.request(t0 + Duration::from_millis(10)));
        pli.keyframe_received();
        assert_eq!(pli.poll_timeout(), None);
        assert!(!pli.handle_timeout(t0 + Duration::from_secs(2)));
        assert!(pli.request(t0 + Duration::from_secs(2)));
    }
}
