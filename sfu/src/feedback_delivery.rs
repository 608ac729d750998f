//! Lets the RTCP the core acts on through the engine's interceptor chain.
//!
//! In rtc 0.21 inbound RTCP ends at the chain's terminus (`NoopInterceptor`) unless an
//! interceptor marks the packet [`Attribute::DeliverToApplication`]; without a mark the
//! core never saw a viewer's NACK, PLI or FIR, nor a publisher's sender report. This
//! interceptor, last before the terminus, marks exactly the compound packets that carry
//! one of those and leaves the rest (receiver reports, transport-wide feedback) to the
//! engine. It runs per inbound RTCP packet, never per forwarded packet.
//!
//! NACKs are delivered when [`crate::peer::PeerEnvironment::answer_nacks`] is on (the
//! default): the core answers them from the room's ring through the SRTP fast path, with
//! the packet's own sequence number and rollover counter (`tests/core_scenarios.rs`).

use rtc::interceptor::{Attribute, Interceptor, Packet, Slot, StreamInfo, TaggedPacket};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::sender_report::SenderReport;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::sansio::Protocol;
use rtc::shared::error::Error;
use std::collections::VecDeque;
use std::time::Instant;

/// Where the interceptor sits: after every built-in slot (they end at 13 000), so each of
/// them has seen the packet; the terminus is always appended after it.
pub const FEEDBACK_DELIVERY_SLOT: Slot = Slot::Custom(30_000);

/// See the module docs.
pub struct FeedbackDelivery {
    read_queue: VecDeque<TaggedPacket>,
    write_queue: VecDeque<TaggedPacket>,
    deliver_nacks: bool,
}

impl FeedbackDelivery {
    /// A new interceptor. `deliver_nacks`: whether viewers' NACKs reach the core too (see
    /// [`crate::peer::PeerEnvironment::answer_nacks`]).
    pub fn new(deliver_nacks: bool) -> Self {
        Self {
            read_queue: VecDeque::new(),
            write_queue: VecDeque::new(),
            deliver_nacks,
        }
    }
}

/// Whether a compound RTCP packet carries something the core acts on.
fn wanted(packets: &[Box<dyn rtc::rtcp::packet::Packet>], deliver_nacks: bool) -> bool {
    packets.iter().any(|packet| {
        let any = packet.as_any();
        (deliver_nacks && any.is::<TransportLayerNack>())
            || any.is::<PictureLossIndication>()
            || any.is::<FullIntraRequest>()
            || any.is::<SenderReport>()
    })
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for FeedbackDelivery {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet
            && wanted(packets, self.deliver_nacks)
            && !msg.message.has(&Attribute::DeliverToApplication)
        {
            msg.message.attributes.push(Attribute::DeliverToApplication);
        }
        self.read_queue.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read_queue.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write_queue.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write_queue.pop_front()
    }
}

impl Interceptor for FeedbackDelivery {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}
