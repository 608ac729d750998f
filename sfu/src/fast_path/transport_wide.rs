//! Transport-wide sequence numbers and send times, for TWCC feedback.

use std::time::Instant;

/// How many recent send times are kept (a TWCC feedback covers far fewer packets).
const HISTORY: usize = 1024;

/// The transport-wide sequence counter of one peer connection (shared by all its SSRCs) and
/// the send time of each recent number, so transport-wide feedback can be matched to sends.
#[derive(Debug, Clone)]
pub struct TransportWideSequencer {
    next: u16,
    sent: Box<[Option<(u16, Instant)>]>,
}

impl Default for TransportWideSequencer {
    fn default() -> Self {
        Self::new(0)
    }
}

impl TransportWideSequencer {
    /// Starts numbering at `first`.
    pub fn new(first: u16) -> Self {
        Self {
            next: first,
            sent: vec![None; HISTORY].into_boxed_slice(),
        }
    }

    /// Takes the next number and records `now` as its send time.
    pub fn next(&mut self, now: Instant) -> u16 {
        let number = self.next;
        self.next = self.next.wrapping_add(1);
        self.sent[number as usize % HISTORY] = Some((number, now));
        number
    }

    /// When the packet with this transport-wide number was protected, if it is recent.
    pub fn send_time(&self, number: u16) -> Option<Instant> {
        match self.sent[number as usize % HISTORY] {
            Some((recorded, at)) if recorded == number => Some(at),
            _ => None,
        }
    }

    /// The number the next packet will get.
    pub fn peek(&self) -> u16 {
        self.next
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn numbers_wrap_and_only_recent_send_times_are_kept() {
        let start = Instant::now();
        let mut sequencer = TransportWideSequencer::new(65_534);
        let at = |i: u64| start + Duration::from_millis(i);
        assert_eq!(sequencer.next(at(0)), 65_534);
        assert_eq!(sequencer.next(at(1)), 65_535);
        assert_eq!(sequencer.next(at(2)), 0);
        assert_eq!(sequencer.send_time(65_535), Some(at(1)));
        assert_eq!(sequencer.send_time(0), Some(at(2)));
        assert_eq!(sequencer.send_time(1), None, "not sent yet");
        for i in 0..HISTORY as u64 {
            sequencer.next(at(3 + i));
        }
        assert_eq!(
            sequencer.send_time(65_534),
            None,
            "overwritten by a newer number"
        );
        assert_eq!(sequencer.peek(), (HISTORY + 1) as u16);
    }
}
