//! Audio/video timestamp alignment onto one 90 kHz timeline.
//!
//! Each track has its own RTP clock with a random origin. The timeline maps both onto
//! one clock that starts near 0 at the room's first packet:
//!
//! - **Before sender reports**, a track is anchored by arrival time: its first packet
//!   gets `pts = arrival − origin`, and later packets follow the RTP clock from there
//!   (arrival jitter after the first packet does not move timestamps).
//! - **With sender reports** on both tracks, RTP time ↔ sender wall clock is known per
//!   track, so the relative offset is exact. Video stays the master (its timestamps never
//!   move); audio's anchor is corrected once the two disagree by more than
//!   [`SYNC_TOLERANCE`] (the transcoder trims or fills the difference). A track anchored
//!   after both reports are known is placed directly from them.
//! - **Publisher reconnects** ([`TimelineSync::start_epoch`]) forget the old RTP clocks
//!   and sender reports but keep the origin, and new anchors are never placed before the
//!   previous session's last timestamp, so output stays monotonic.
//! - A track whose RTP clock jumps by more than [`MAX_CLOCK_DRIFT`] from where arrival
//!   times say it should be (encoder restart without a new session, a stall) is rebased
//!   on arrival time, and the caller is told so it can flag a discontinuity.

use crate::media_unit::{TIMESCALE, duration_to_ticks};
use sfu::media::MediaKind;
use std::time::{Instant, SystemTime};

/// Audio and video may disagree by this much (10 ms in 90 kHz ticks) before audio is
/// moved.
pub const SYNC_TOLERANCE: i64 = 900;
/// Sender-report corrections larger than this (5 s) are implausible and ignored.
pub const MAX_SYNC_CORRECTION: i64 = 5 * TIMESCALE as i64;
/// A track more than this (10 s) away from its arrival-time estimate is rebased.
pub const MAX_CLOCK_DRIFT: i64 = 10 * TIMESCALE as i64;
/// Gap left between sessions, so the next session's first timestamps (and the audio
/// encoder's flushed tail) cannot collide with the previous one's (100 ms).
pub const EPOCH_GAP: i64 = TIMESCALE as i64 / 10;

/// Unwraps 32-bit RTP timestamps into a monotonic-ish `i64`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RtpUnwrapper {
    last: Option<i64>,
}

impl RtpUnwrapper {
    /// The extended value of `timestamp`, nearest to the previous one; remembers it.
    pub fn unwrap(&mut self, timestamp: u32) -> i64 {
        let extended = self.peek(timestamp);
        self.last = Some(extended);
        extended
    }

    /// The extended value of `timestamp` without remembering it.
    pub fn peek(&self, timestamp: u32) -> i64 {
        match self.last {
            None => i64::from(timestamp),
            Some(last) => last + i64::from(timestamp.wrapping_sub(last as u32) as i32),
        }
    }
}

/// Result of mapping one RTP timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapped {
    /// Timestamp on the room timeline, 90 kHz.
    pub pts: i64,
    /// The track was (re)anchored by this packet after having been anchored before
    /// (clock jump): a discontinuity.
    pub rebased: bool,
}

#[derive(Debug, Clone, Copy)]
struct SenderReport {
    rtp: i64,
    wallclock: SystemTime,
}

#[derive(Debug, Clone, Copy)]
struct Anchor {
    rtp: i64,
    pts: i64,
}

#[derive(Debug, Clone, Copy)]
struct TrackTiming {
    clock_rate: i64,
    unwrapper: RtpUnwrapper,
    anchor: Option<Anchor>,
    report: Option<SenderReport>,
    last_pts: Option<i64>,
}

impl TrackTiming {
    fn new(clock_rate: u32) -> Self {
        TrackTiming {
            clock_rate: i64::from(clock_rate.max(1)),
            unwrapper: RtpUnwrapper::default(),
            anchor: None,
            report: None,
            last_pts: None,
        }
    }

    fn rtp_to_ticks(&self, rtp_delta: i64) -> i64 {
        (i128::from(rtp_delta) * i128::from(TIMESCALE) / i128::from(self.clock_rate)) as i64
    }

    fn pts_of(&self, anchor: Anchor, rtp: i64) -> i64 {
        anchor.pts + self.rtp_to_ticks(rtp - anchor.rtp)
    }
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// Audio anchor corrections from sender reports.
    pub corrections: u64,
    /// Corrections refused as implausible.
    pub implausible_reports: u64,
    /// Tracks rebased after a clock jump.
    pub rebases: u64,
}

/// The room timeline; see the module doc.
#[derive(Debug, Clone)]
pub struct TimelineSync {
    origin: Option<Instant>,
    /// Indexed by [`MediaKind::index`].
    tracks: [TrackTiming; 2],
    floor: i64,
    stats: SyncStats,
}

impl Default for TimelineSync {
    fn default() -> Self {
        Self::new()
    }
}

fn wall_ns(time: SystemTime) -> i128 {
    match time.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(after) => after.as_nanos() as i128,
        Err(before) => -(before.duration().as_nanos() as i128),
    }
}

impl TimelineSync {
    /// A timeline with no origin yet (Opus at 48 kHz, video at 90 kHz).
    pub fn new() -> Self {
        TimelineSync {
            origin: None,
            tracks: [TrackTiming::new(48_000), TrackTiming::new(90_000)],
            floor: 0,
            stats: SyncStats::default(),
        }
    }

    /// The instant that maps to pts 0, once the first packet was seen.
    pub fn origin(&self) -> Option<Instant> {
        self.origin
    }

    /// Counters so far.
    pub fn stats(&self) -> &SyncStats {
        &self.stats
    }

    /// The largest timestamp handed out on any track.
    pub fn last_pts(&self) -> Option<i64> {
        self.tracks.iter().filter_map(|t| t.last_pts).max()
    }

    /// Sets the RTP clock rate of a track (before its first packet).
    pub fn set_clock_rate(&mut self, kind: MediaKind, clock_rate: u32) {
        self.tracks[kind.index()].clock_rate = i64::from(clock_rate.max(1));
    }

    fn arrival_pts(&mut self, arrival: Instant) -> i64 {
        let origin = *self.origin.get_or_insert(arrival);
        duration_to_ticks(arrival.saturating_duration_since(origin))
    }

    /// Maps a packet's RTP timestamp to the room timeline.
    pub fn map(&mut self, kind: MediaKind, rtp_timestamp: u32, arrival: Instant) -> Mapped {
        let arrival_pts = self.arrival_pts(arrival);
        let index = kind.index();
        let rtp = self.tracks[index].unwrapper.unwrap(rtp_timestamp);
        let floor = self.floor;
        let from_reports = self.pts_from_reports(kind, rtp);
        let track = &mut self.tracks[index];
        let (anchor, rebased) = match track.anchor {
            None => {
                // Reports disagreeing with arrival by seconds are wrong (a bad sender
                // clock); arrival time is the safe fallback.
                let plausible =
                    from_reports.filter(|pts| (pts - arrival_pts).abs() <= MAX_SYNC_CORRECTION);
                let pts = plausible.unwrap_or(arrival_pts).max(floor);
                (Anchor { rtp, pts }, false)
            }
            Some(anchor) => {
                let pts = track.pts_of(anchor, rtp);
                if (pts - arrival_pts).abs() > MAX_CLOCK_DRIFT {
                    let after_last = track.last_pts.map_or(floor, |last| {
                        last + track.rtp_to_ticks(track.clock_rate / 50)
                    });
                    self.stats.rebases += 1;
                    (
                        Anchor {
                            rtp,
                            pts: arrival_pts.max(after_last).max(floor),
                        },
                        true,
                    )
                } else {
                    (anchor, false)
                }
            }
        };
        track.anchor = Some(anchor);
        let pts = track.pts_of(anchor, rtp);
        track.last_pts = Some(track.last_pts.map_or(pts, |last| last.max(pts)));
        Mapped { pts, rebased }
    }

    /// Where a packet of `kind` at extended `rtp` belongs according to both tracks'
    /// sender reports, if the other track is anchored and both have reports.
    fn pts_from_reports(&self, kind: MediaKind, rtp: i64) -> Option<i64> {
        let this = &self.tracks[kind.index()];
        let other = &self.tracks[1 - kind.index()];
        let (this_report, other_report, other_anchor) =
            (this.report?, other.report?, other.anchor?);
        let this_wall = wall_ns(this_report.wallclock)
            + i128::from(rtp - this_report.rtp) * 1_000_000_000 / i128::from(this.clock_rate);
        let offset_ns = this_wall - wall_ns(other_report.wallclock);
        let other_pts_at_report = other.pts_of(other_anchor, other_report.rtp);
        let offset = i64::try_from(offset_ns * i128::from(TIMESCALE) / 1_000_000_000).ok()?;
        other_pts_at_report.checked_add(offset)
    }

    /// Records a sender report and corrects audio against video if they disagree.
    pub fn on_sender_report(&mut self, kind: MediaKind, rtp_timestamp: u32, wallclock: SystemTime) {
        let track = &mut self.tracks[kind.index()];
        let rtp = track.unwrapper.peek(rtp_timestamp);
        track.report = Some(SenderReport { rtp, wallclock });
        self.correct_audio();
    }

    fn correct_audio(&mut self) {
        let audio = self.tracks[MediaKind::Audio.index()];
        let (Some(report), Some(anchor)) = (audio.report, audio.anchor) else {
            return;
        };
        let Some(desired) = self.pts_from_reports(MediaKind::Audio, report.rtp) else {
            return;
        };
        let current = audio.pts_of(anchor, report.rtp);
        let delta = desired - current;
        if delta.abs() <= SYNC_TOLERANCE {
            return;
        }
        if delta.abs() > MAX_SYNC_CORRECTION {
            self.stats.implausible_reports += 1;
            return;
        }
        self.stats.corrections += 1;
        self.tracks[MediaKind::Audio.index()].anchor = Some(Anchor {
            rtp: anchor.rtp,
            pts: anchor.pts + delta,
        });
    }

    /// A new publisher session: forgets RTP clocks and reports, keeps the origin, and
    /// makes sure the new session starts after everything handed out so far.
    pub fn start_epoch(&mut self) {
        if let Some(last) = self.last_pts() {
            self.floor = self.floor.max(last + EPOCH_GAP);
        }
        for track in &mut self.tracks {
            *track = TrackTiming::new(track.clock_rate as u32);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn unwraps_rtp_timestamps() {
        let mut unwrapper = RtpUnwrapper::default();
        assert_eq!(unwrapper.unwrap(u32::MAX - 10), i64::from(u32::MAX - 10));
        assert_eq!(unwrapper.unwrap(5), i64::from(u32::MAX) + 6);
        assert_eq!(unwrapper.unwrap(u32::MAX - 1), i64::from(u32::MAX) - 1);
    }

    #[test]
    fn arrival_alignment_before_reports() {
        let t0 = Instant::now();
        let mut sync = TimelineSync::new();
        let video = sync.map(MediaKind::Video, 1_000_000, t0);
        assert_eq!(video.pts, 0);
        // Audio's first packet arrives 50 ms later.
        let audio = sync.map(MediaKind::Audio, 7, t0 + Duration::from_millis(50));
        assert_eq!(audio.pts, 4500);
        // Later packets follow the RTP clocks, not arrival jitter.
        assert_eq!(
            sync.map(MediaKind::Video, 1_003_000, t0 + Duration::from_millis(80))
                .pts,
            3000
        );
        assert_eq!(
            sync.map(MediaKind::Audio, 7 + 960, t0 + Duration::from_millis(75))
                .pts,
            4500 + 1800
        );
    }

    #[test]
    fn sender_reports_correct_audio_offset() {
        let t0 = Instant::now();
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut sync = TimelineSync::new();
        // Video RTP 90_000 was captured at `wall`; audio RTP 48_000 too.
        sync.map(MediaKind::Video, 90_000, t0);
        // Audio's first packet (captured with video's first) arrives 80 ms late.
        let late = sync.map(MediaKind::Audio, 48_000, t0 + Duration::from_millis(80));
        assert_eq!(late.pts, 7200);
        sync.on_sender_report(MediaKind::Video, 90_000, wall);
        sync.on_sender_report(MediaKind::Audio, 48_000, wall);
        assert_eq!(sync.stats().corrections, 1);
        let corrected = sync.map(
            MediaKind::Audio,
            48_000 + 960,
            t0 + Duration::from_millis(100),
        );
        assert_eq!(corrected.pts, 1800, "audio now lines up with video");
        // Video is untouched.
        assert_eq!(
            sync.map(MediaKind::Video, 93_000, t0 + Duration::from_millis(40))
                .pts,
            3000
        );
        // A consistent report causes no further correction.
        sync.on_sender_report(
            MediaKind::Audio,
            48_000 + 48_000,
            wall + Duration::from_secs(1),
        );
        assert_eq!(sync.stats().corrections, 1);
    }

    #[test]
    fn track_anchored_after_reports_is_placed_by_them() {
        let t0 = Instant::now();
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut sync = TimelineSync::new();
        sync.on_sender_report(MediaKind::Audio, 1000, wall);
        sync.map(MediaKind::Audio, 1000, t0);
        sync.on_sender_report(MediaKind::Video, 5000, wall + Duration::from_millis(20));
        // Video's first packet arrives 300 ms later, but was captured 20 ms after audio's.
        let video = sync.map(MediaKind::Video, 5000, t0 + Duration::from_millis(300));
        assert_eq!(video.pts, 1800);
    }

    #[test]
    fn epochs_stay_monotonic() {
        let t0 = Instant::now();
        let mut sync = TimelineSync::new();
        for i in 0..100u32 {
            sync.map(
                MediaKind::Video,
                500 + i * 3000,
                t0 + Duration::from_millis(u64::from(i) * 33),
            );
        }
        let last = sync.last_pts().unwrap();
        sync.start_epoch();
        // The new session arrives "earlier" than the timeline (clock anomaly): floor wins.
        let first = sync.map(MediaKind::Video, 12345, t0 + Duration::from_millis(100));
        assert_eq!(first.pts, last + EPOCH_GAP);
        assert!(!first.rebased);
        // Normal reconnect after 5 s: arrival time wins.
        let later = sync.map(MediaKind::Audio, 999, t0 + Duration::from_secs(8));
        assert_eq!(later.pts, 8 * 90_000);
    }

    #[test]
    fn clock_jump_rebases() {
        let t0 = Instant::now();
        let mut sync = TimelineSync::new();
        sync.map(MediaKind::Video, 0, t0);
        sync.map(MediaKind::Video, 3000, t0 + Duration::from_millis(33));
        let jumped = sync.map(
            MediaKind::Video,
            2_000_000_000,
            t0 + Duration::from_millis(66),
        );
        assert!(jumped.rebased);
        assert!(jumped.pts > 3000);
        let next = sync.map(
            MediaKind::Video,
            2_000_003_000,
            t0 + Duration::from_millis(99),
        );
        assert_eq!(next.pts, jumped.pts + 3000);
        assert!(!next.rebased);
    }
}
