//! One outgoing SSRC on the fast path: header template, rollover counter, sender-report state.

use super::{FastPathError, PacketFields, RtpHeaderTemplate};
use rtc::rtcp::sender_report::SenderReport;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
const NTP_UNIX_OFFSET_SECS: u64 = 2_208_988_800;

/// A wall-clock time as a 64-bit NTP timestamp (RFC 3550 §4: seconds since 1900 in the high
/// 32 bits, the fraction in the low 32), for [`OutboundStream::build_sender_report`].
pub fn ntp_time(time: SystemTime) -> u64 {
    let since_unix = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since_unix.as_secs() + NTP_UNIX_OFFSET_SECS;
    let fraction = (u64::from(since_unix.subsec_nanos()) << 32) / 1_000_000_000;
    (seconds << 32) | fraction
}

/// The state of one viewer SSRC sent by the fast path.
///
/// The SRTP packet index (RFC 3711 §3.3.1: `ROC · 2^16 + SEQ`) is tracked as the highest index
/// sent; each packet's index is the one nearest to it, so a NACK answer for a packet sent just
/// before a sequence-number wrap is protected with the rollover counter it had then.
#[derive(Debug, Clone)]
pub struct OutboundStream {
    template: RtpHeaderTemplate,
    clock_rate: u32,
    highest_index: Option<u64>,
    packets: u32,
    octets: u32,
    /// RTP timestamp and send time of the first packet of the newest frame sent.
    last_frame: Option<(u32, Instant)>,
}

impl OutboundStream {
    /// A stream with this header and RTP clock rate (48 kHz Opus, 90 kHz video).
    pub fn new(template: RtpHeaderTemplate, clock_rate: u32) -> Self {
        Self {
            template,
            clock_rate,
            highest_index: None,
            packets: 0,
            octets: 0,
            last_frame: None,
        }
    }

    /// The header template.
    pub fn template(&self) -> &RtpHeaderTemplate {
        &self.template
    }

    /// The SSRC.
    pub fn ssrc(&self) -> u32 {
        self.template.ssrc()
    }

    /// RTP packets protected so far (wrapping, as in a sender report).
    pub fn packet_count(&self) -> u32 {
        self.packets
    }

    /// Payload octets protected so far (wrapping; headers, padding and tags excluded).
    pub fn octet_count(&self) -> u32 {
        self.octets
    }

    /// The current rollover counter (of the highest index sent).
    pub fn rollover_counter(&self) -> u32 {
        self.highest_index.map_or(0, |index| (index >> 16) as u32)
    }

    /// The sender report for this stream at `now` (`now_ntp` is the same instant as wall-clock
    /// NTP time, see [`ntp_time`]), or `None` before the first packet.
    ///
    /// The RTP time is extrapolated from the newest frame sent, as rtc's own sender-report
    /// interceptor does; packet and octet counts include retransmissions (same SSRC).
    pub fn build_sender_report(&self, now: Instant, now_ntp: u64) -> Option<SenderReport> {
        let (timestamp, sent_at) = self.last_frame?;
        let elapsed = now.saturating_duration_since(sent_at);
        let ticks =
            (elapsed.as_nanos() * u128::from(self.clock_rate) / 1_000_000_000) as u64 as u32;
        Some(SenderReport {
            ssrc: self.ssrc(),
            ntp_time: now_ntp,
            rtp_time: timestamp.wrapping_add(ticks),
            packet_count: self.packets,
            octet_count: self.octets,
            ..Default::default()
        })
    }

    /// The SRTP index of a packet with this sequence number: the index nearest to the highest
    /// sent (RFC 3711 §3.3.1), and whether it is a new highest. Changes nothing.
    pub(crate) fn srtp_index(&self, sequence_number: u16) -> Result<SrtpIndex, FastPathError> {
        match self.highest_index {
            None => Ok(SrtpIndex {
                index: u64::from(sequence_number),
                newest: true,
            }),
            Some(highest) => {
                let delta = i64::from(sequence_number.wrapping_sub(highest as u16) as i16);
                let index = highest as i64 + delta;
                if index < 0 {
                    return Err(FastPathError::BeforeStreamStart(sequence_number));
                }
                Ok(SrtpIndex {
                    index: index as u64,
                    newest: delta > 0,
                })
            }
        }
    }

    /// Accounts a packet that was protected with `index`.
    pub(crate) fn record_sent(
        &mut self,
        index: SrtpIndex,
        fields: &PacketFields,
        payload_len: usize,
        now: Instant,
    ) {
        if index.newest {
            self.highest_index = Some(index.index);
            let new_frame = self
                .last_frame
                .is_none_or(|(timestamp, _)| timestamp != fields.timestamp);
            if new_frame {
                self.last_frame = Some((fields.timestamp, now));
            }
        }
        self.packets = self.packets.wrapping_add(1);
        self.octets = self.octets.wrapping_add(payload_len as u32);
    }

    /// [`srtp_index`](Self::srtp_index) then [`record_sent`](Self::record_sent); returns the
    /// rollover counter.
    #[cfg(test)]
    fn on_send(
        &mut self,
        fields: &PacketFields,
        payload_len: usize,
        now: Instant,
    ) -> Result<u32, FastPathError> {
        let index = self.srtp_index(fields.sequence_number)?;
        self.record_sent(index, fields, payload_len, now);
        Ok(index.rollover_counter())
    }
}

/// A packet's 48-bit SRTP index (`ROC · 2^16 + SEQ`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SrtpIndex {
    index: u64,
    newest: bool,
}

impl SrtpIndex {
    /// The rollover counter part.
    pub(crate) fn rollover_counter(self) -> u32 {
        (self.index >> 16) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn fields(sequence_number: u16, timestamp: u32) -> PacketFields {
        PacketFields {
            sequence_number,
            timestamp,
            marker: false,
            video_orientation: None,
        }
    }

    #[test]
    fn rollover_counter_follows_wraps_and_old_packets_keep_theirs() {
        let mut stream = OutboundStream::new(RtpHeaderTemplate::new(1, 96), 90_000);
        let now = Instant::now();
        assert_eq!(stream.on_send(&fields(65534, 0), 10, now).ok(), Some(0));
        assert_eq!(stream.on_send(&fields(65535, 0), 10, now).ok(), Some(0));
        assert_eq!(stream.on_send(&fields(0, 0), 10, now).ok(), Some(1));
        assert_eq!(stream.on_send(&fields(3, 0), 10, now).ok(), Some(1));
        // A NACK answer for a packet from before the wrap.
        assert_eq!(stream.on_send(&fields(65535, 0), 10, now).ok(), Some(0));
        assert_eq!(stream.rollover_counter(), 1);
        assert_eq!(stream.packet_count(), 5);
        assert_eq!(stream.octet_count(), 50);
    }

    #[test]
    fn a_retransmission_older_than_the_first_packet_is_refused() {
        let mut stream = OutboundStream::new(RtpHeaderTemplate::new(1, 96), 90_000);
        let now = Instant::now();
        stream.on_send(&fields(5, 0), 1, now).expect("first packet");
        assert!(matches!(
            stream.on_send(&fields(65533, 0), 1, now),
            Err(FastPathError::BeforeStreamStart(65533))
        ));
    }

    #[test]
    fn sender_report_extrapolates_from_the_newest_frame() {
        let mut stream = OutboundStream::new(RtpHeaderTemplate::new(9, 96), 90_000);
        let start = Instant::now();
        assert!(stream.build_sender_report(start, 1).is_none());
        stream.on_send(&fields(1, 1000), 100, start).expect("send");
        stream
            .on_send(&fields(2, 1000), 50, start + Duration::from_millis(5))
            .expect("same frame");
        stream
            .on_send(&fields(3, 4000), 70, start + Duration::from_millis(33))
            .expect("next frame");
        // A retransmission does not move the mapping but counts.
        stream
            .on_send(&fields(1, 1000), 100, start + Duration::from_millis(40))
            .expect("retransmission");
        let report = stream
            .build_sender_report(start + Duration::from_millis(133), 42)
            .expect("a report after sending");
        assert_eq!(report.ssrc, 9);
        assert_eq!(report.ntp_time, 42);
        assert_eq!(report.packet_count, 4);
        assert_eq!(report.octet_count, 320);
        assert_eq!(report.rtp_time, 4000 + 9000);
    }

    #[test]
    fn ntp_time_of_the_unix_epoch() {
        assert_eq!(ntp_time(UNIX_EPOCH), NTP_UNIX_OFFSET_SECS << 32);
        let half = UNIX_EPOCH + Duration::from_millis(1500);
        assert_eq!(
            ntp_time(half),
            ((NTP_UNIX_OFFSET_SECS + 1) << 32) | (1 << 31)
        );
    }
}
