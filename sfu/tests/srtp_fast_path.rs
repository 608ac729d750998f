//! The SRTP fast path against independent SRTP implementations.
//!
//! - End to end: two real rtc engines (ICE, DTLS handshake) wired back to back in memory on a
//!   virtual clock. The sending engine's keys come out of [`SrtpKeyTap`]; packets are
//!   protected by [`FastPathSender`] and decrypted by the receiving *engine* (`handle_read` →
//!   `poll_read`), for both DTLS roles and the two default profiles, across a sequence-number
//!   wrap with a NACK-style retransmission of a packet from before the wrap; the sender report
//!   built by the fast path goes out through the engine's RTCP path and is checked as it
//!   arrives (decrypted with the SRTCP keys the receiver's own handshake produced).
//! - Per profile: rtc's own `srtp::context::Context` (the engine's receive-side code),
//!   configured from the same master keys, decrypts what the fast path protected.

#[path = "support/engine_pair.rs"]
mod engine_pair;

use bytes::Bytes;
use engine_pair::{MEDIA_SSRC, PAYLOAD_TYPE, Pair, TWCC_ID};
use rtc::dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use rtc::peer_connection::transport::RTCDtlsRole;
use rtc::rtcp::sender_report::SenderReport;
use rtc::rtp;
use sfu::fast_path::{
    FastPathSender, MasterKeys, NegotiatedSrtp, OutboundStream, PacketFields, ProtectionProfile,
    RtpHeaderTemplate, ntp_time,
};
use std::collections::BTreeMap;
use std::time::{Instant, SystemTime};

fn payload_for(seq: u16) -> Vec<u8> {
    (0..1100).map(|i| (seq as usize * 7 + i) as u8).collect()
}

fn end_to_end(profile: SrtpProtectionProfile, answering_role: RTCDtlsRole, twcc: bool) {
    let mut pair = Pair::connect(profile, answering_role);
    let now = pair.now;
    let negotiated = NegotiatedSrtp::of_connection(&mut pair.sender.pc, now).expect("negotiated");
    assert_eq!(
        negotiated.is_dtls_client,
        answering_role == RTCDtlsRole::Client
    );
    let keys = pair.tap.session_keys(negotiated).expect("keys exported");
    let mut fast_path = FastPathSender::new(&keys, pair.tap.crypto()).expect("sender");
    let mut template = RtpHeaderTemplate::new(MEDIA_SSRC, PAYLOAD_TYPE);
    if twcc {
        template = template.with_transport_cc(TWCC_ID).expect("id");
    }
    let mut stream = OutboundStream::new(template, 90_000);
    let mut out = vec![0u8; 1500];

    // 65530 … 65535, 0 … 9, with 65534 held back (lost), then answered after the wrap.
    let held_back = 65534u16;
    let sequence: Vec<u16> = (65530..=65535).chain(0..10).collect();
    let fields_of = |seq: u16| PacketFields {
        sequence_number: seq,
        timestamp: 3000 * u32::from(seq.wrapping_sub(65530) / 4),
        marker: seq.wrapping_sub(65530) % 4 == 3,
        video_orientation: None,
    };
    let mut sent_octets = 0u32;
    let mut sent_packets = 0u32;
    let mut twcc_numbers = Vec::new();
    // (timestamp, when its first packet was protected) of the newest frame sent.
    let mut newest_frame: Option<(u32, Instant)> = None;
    for &seq in &sequence {
        pair.step();
        if seq == held_back {
            continue;
        }
        let timestamp = fields_of(seq).timestamp;
        if newest_frame.is_none_or(|(ts, _)| ts != timestamp) {
            newest_frame = Some((timestamp, pair.now));
        }
        let payload = payload_for(seq);
        let protected = fast_path
            .protect_rtp(&mut stream, &fields_of(seq), &payload, pair.now, &mut out)
            .expect("protect");
        twcc_numbers.push(protected.transport_sequence_number);
        sent_octets += payload.len() as u32;
        sent_packets += 1;
        let datagram = out[..protected.len].to_vec();
        pair.send_protected(&datagram);
    }
    assert_eq!(stream.rollover_counter(), 1, "the stream wrapped");
    pair.step();
    let payload = payload_for(held_back);
    let protected = fast_path
        .protect_rtp(
            &mut stream,
            &fields_of(held_back),
            &payload,
            pair.now,
            &mut out,
        )
        .expect("protect retransmission");
    twcc_numbers.push(protected.transport_sequence_number);
    sent_octets += payload.len() as u32;
    sent_packets += 1;
    let datagram = out[..protected.len].to_vec();
    pair.send_protected(&datagram);

    // (The engine logs and drops a packet that fails authentication: the count below is the
    // real check.)
    assert!(
        pair.receiver.read_errors.is_empty(),
        "{:?}",
        pair.receiver.read_errors
    );
    let received: BTreeMap<u16, &rtp::Packet> = pair
        .receiver
        .rtp
        .iter()
        .map(|p| (p.header.sequence_number, p))
        .collect();
    assert_eq!(
        received.len(),
        sequence.len(),
        "every packet, the retransmission included, decrypted by the engine"
    );
    for &seq in &sequence {
        let packet = received[&seq];
        let fields = fields_of(seq);
        assert_eq!(packet.header.ssrc, MEDIA_SSRC);
        assert_eq!(packet.header.payload_type, PAYLOAD_TYPE);
        assert_eq!(packet.header.timestamp, fields.timestamp);
        assert_eq!(packet.header.marker, fields.marker);
        assert_eq!(
            packet.payload,
            Bytes::from(payload_for(seq)),
            "payload of {seq}"
        );
    }
    // The check above can fail: a packet protected with the wrong key (the peer's) is dropped
    // by the engine, and nothing new reaches the application.
    let mut wrong = FastPathSender::with_master_keys(keys.profile, &keys.remote, pair.tap.crypto())
        .expect("sender");
    let mut wrong_stream =
        OutboundStream::new(RtpHeaderTemplate::new(MEDIA_SSRC, PAYLOAD_TYPE), 90_000);
    let forged = wrong
        .protect_rtp(
            &mut wrong_stream,
            &fields_of(10),
            &payload_for(10),
            pair.now,
            &mut out,
        )
        .expect("protect");
    let datagram = out[..forged.len].to_vec();
    let before = pair.receiver.rtp.len();
    pair.send_protected(&datagram);
    assert_eq!(
        pair.receiver.rtp.len(),
        before,
        "a wrongly keyed packet is rejected"
    );

    if twcc {
        let expected: Vec<Option<u16>> = (0..sequence.len() as u16).map(Some).collect();
        assert_eq!(
            twcc_numbers, expected,
            "one transport-wide number per packet"
        );
        let on_wire: Vec<u16> = pair
            .receiver
            .rtp
            .iter()
            .map(|p| {
                let ext = p.header.get_extension(TWCC_ID).expect("TWCC extension");
                u16::from_be_bytes([ext[0], ext[1]])
            })
            .collect();
        assert_eq!(on_wire, (0..sequence.len() as u16).collect::<Vec<_>>());
        assert!(fast_path.transport_wide().send_time(0).is_some());
    } else {
        assert!(twcc_numbers.iter().all(Option::is_none));
    }

    // The sender report, through the engine's RTCP path (SRTCP by the engine).
    pair.step();
    let report_at = pair.now;
    let ntp = ntp_time(SystemTime::now());
    let report = stream
        .build_sender_report(report_at, ntp)
        .expect("a report after sending");
    assert_eq!(report.packet_count, sent_packets);
    assert_eq!(report.octet_count, sent_octets);
    pair.sender
        .pc
        .rtp_sender(pair.sender_id)
        .expect("sender exists")
        .write_rtcp(report_at, vec![Box::new(report)])
        .expect("write_rtcp");
    for _ in 0..4 {
        pair.step();
    }
    // The receiving engine's interceptor chain consumes inbound SRs (nothing reaches
    // `poll_read`), so check the report as it crossed the wire, protected by the engine's
    // SRTCP: decrypted with rtc's SRTCP context keyed from the receiver's own view of the
    // handshake (its remote keys are our local ones).
    let receiver_keys = {
        let negotiated =
            NegotiatedSrtp::of_connection(&mut pair.receiver.pc, pair.now).expect("negotiated");
        pair.receiver_tap
            .session_keys(negotiated)
            .expect("receiver keys")
    };
    assert_eq!(
        receiver_keys.remote, keys.local,
        "both sides agree on our keys"
    );
    assert_eq!(receiver_keys.local, keys.remote, "and on theirs");
    let crypto = rtc::crypto::default_provider().expect("ring");
    let mut srtcp = rtc::srtp::context::Context::new(
        &receiver_keys.remote.key,
        &receiver_keys.remote.salt,
        keys.profile,
        None,
        None,
        crypto.crypto(),
    )
    .expect("srtcp context");
    let wire = pair
        .receiver
        .wire_sender_reports
        .last()
        .expect("a sender report crossed the wire");
    let plain = srtcp.decrypt_rtcp(wire).expect("SRTCP decrypts");
    let mut plain = &plain[..];
    let packets = rtc::rtcp::packet::unmarshal(&mut plain).expect("rtcp");
    let arrived = packets
        .iter()
        .find_map(|p| p.as_any().downcast_ref::<SenderReport>())
        .expect("an SR");
    assert_eq!(arrived.ssrc, MEDIA_SSRC);
    assert_eq!(arrived.packet_count, sent_packets);
    assert_eq!(arrived.octet_count, sent_octets);
    assert_eq!(arrived.ntp_time, ntp);
    // RTP/NTP mapping: the newest frame's timestamp extrapolated at 90 kHz to the report
    // time (the late retransmission does not move it).
    let (newest_timestamp, newest_sent_at) = newest_frame.expect("frames were sent");
    let ticks = ((report_at - newest_sent_at).as_nanos() * 90_000 / 1_000_000_000) as u32;
    assert!(ticks > 0);
    assert_eq!(arrived.rtp_time, newest_timestamp.wrapping_add(ticks));
}

#[test]
fn engine_decrypts_aes_gcm_fast_path_as_dtls_client() {
    end_to_end(
        SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm,
        RTCDtlsRole::Client,
        true,
    );
}

#[test]
fn engine_decrypts_aes_gcm_fast_path_as_dtls_server() {
    end_to_end(
        SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm,
        RTCDtlsRole::Server,
        false,
    );
}

#[test]
fn engine_decrypts_aes_cm_hmac_sha1_80_fast_path() {
    end_to_end(
        SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80,
        RTCDtlsRole::Client,
        false,
    );
}

/// rtc's `srtp::Context` (the engine's receive side), keyed from the same master keys,
/// decrypts the fast path's output for every profile, across a wrap and a late retransmission.
#[test]
fn srtp_context_decrypts_every_profile() {
    let crypto_provider = rtc::crypto::default_provider().expect("ring");
    for profile in [
        ProtectionProfile::AeadAes128Gcm,
        ProtectionProfile::AeadAes256Gcm,
        ProtectionProfile::Aes128CmHmacSha1_80,
        ProtectionProfile::Aes128CmHmacSha1_32,
    ] {
        let keys = MasterKeys {
            key: (0..profile.key_len() as u8).map(|i| i * 3 + 1).collect(),
            salt: (0..profile.salt_len() as u8).map(|i| 0xa0 ^ i).collect(),
        };
        let mut sender = FastPathSender::with_master_keys(profile, &keys, crypto_provider.crypto())
            .expect("sender");
        let mut context = rtc::srtp::context::Context::new(
            &keys.key,
            &keys.salt,
            profile,
            None,
            None,
            crypto_provider.crypto(),
        )
        .expect("context");
        let template = RtpHeaderTemplate::new(0x0102_0304, 111)
            .with_video_orientation(3)
            .expect("id");
        let mut stream = OutboundStream::new(template, 48_000);
        let now = Instant::now();
        let mut out = [0u8; 1400];
        let order: Vec<u16> = (65533..=65535).chain(0..3).chain([65534]).collect();
        let mut decrypted_seqs = Vec::new();
        for (i, &seq) in order.iter().enumerate() {
            if i == 1 {
                continue; // 65534 first goes missing, then is retransmitted last
            }
            let fields = PacketFields {
                sequence_number: seq,
                timestamp: 960 * i as u32,
                marker: true,
                video_orientation: (seq % 2 == 0).then_some(2),
            };
            let payload = payload_for(seq);
            let protected = sender
                .protect_rtp(&mut stream, &fields, &payload, now, &mut out)
                .expect("protect");
            assert_eq!(
                protected.len,
                sender.protected_len(&stream, payload.len()),
                "{profile:?}"
            );
            let plain = context
                .decrypt_rtp(&out[..protected.len])
                .unwrap_or_else(|e| panic!("{profile:?} seq {seq}: {e}"));
            let mut plain_buf = &plain[..];
            let packet =
                <rtp::Packet as rtc::shared::marshal::Unmarshal>::unmarshal(&mut plain_buf)
                    .expect("rtp");
            assert_eq!(packet.header.sequence_number, seq);
            assert_eq!(packet.header.timestamp, fields.timestamp);
            assert_eq!(packet.header.ssrc, 0x0102_0304);
            assert_eq!(
                packet.header.get_extension(3).map(|b| b[0]),
                fields.video_orientation,
                "{profile:?}"
            );
            assert_eq!(&packet.payload[..], &payload[..]);
            decrypted_seqs.push(seq);
        }
        assert_eq!(decrypted_seqs, vec![65533, 65535, 0, 1, 2, 65534]);

        // Tampering is detected by the independent side.
        let fields = PacketFields {
            sequence_number: 3,
            timestamp: 0,
            marker: false,
            video_orientation: None,
        };
        let protected = sender
            .protect_rtp(&mut stream, &fields, b"tamper", now, &mut out)
            .expect("protect");
        out[protected.len - 1] ^= 1;
        assert!(
            context.decrypt_rtp(&out[..protected.len]).is_err(),
            "{profile:?}: a flipped tag bit must fail authentication"
        );
    }
}

#[test]
fn a_short_buffer_is_an_error_not_a_panic() {
    let crypto_provider = rtc::crypto::default_provider().expect("ring");
    let profile = ProtectionProfile::AeadAes128Gcm;
    let keys = MasterKeys {
        key: vec![1; 16],
        salt: vec![2; 12],
    };
    let mut sender =
        FastPathSender::with_master_keys(profile, &keys, crypto_provider.crypto()).expect("sender");
    let mut stream = OutboundStream::new(RtpHeaderTemplate::new(1, 96), 90_000);
    let fields = PacketFields {
        sequence_number: 1,
        timestamp: 1,
        marker: false,
        video_orientation: None,
    };
    let mut out = [0u8; 100];
    let result = sender.protect_rtp(&mut stream, &fields, &[0; 100], Instant::now(), &mut out);
    assert!(matches!(
        result,
        Err(sfu::fast_path::FastPathError::BufferTooSmall {
            needed: 128,
            available: 100
        })
    ));
    assert_eq!(stream.packet_count(), 0, "a refused packet is not counted");
    let wrong_salt = MasterKeys {
        key: vec![1; 16],
        salt: vec![2; 14],
    };
    assert!(
        FastPathSender::with_master_keys(profile, &wrong_salt, crypto_provider.crypto()).is_err()
    );
}
