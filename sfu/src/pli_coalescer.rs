//! Keyframe requests to a publisher, coalesced.
//!
//! Every joining viewer, decoder error and bridge segment boundary may want a keyframe;
//! each PLI multiplies the publisher's bitrate for a moment, so however many ask, at most
//! one PLI per `min_interval` reaches the publisher. A request inside the interval is
//! remembered and sent when the interval ends — unless a keyframe arrived meanwhile.

use std::time::{Duration, Instant};

/// The default minimum spacing of PLIs to one publisher.
pub const DEFAULT_MIN_INTERVAL: Duration = Duration::from_secs(1);

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
