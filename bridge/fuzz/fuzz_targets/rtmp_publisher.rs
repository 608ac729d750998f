//! Arbitrary bytes from an RTMP server into the publisher: it must never panic, only
//! fail with an error (the third-party chunk parser runs under `catch_unwind`, but the
//! goal is that nothing reaches it).
//!
//! Input: `[mode: u8]` then the server's bytes, cut into reads by `0xFF 0xFE` markers.
//! Mode bit 0: prepend a well-formed S0+S1+S2 so the chunk parser and session see the
//! rest. Run: `cargo +nightly fuzz run rtmp_publisher` in `bridge/fuzz`.
#![no_main]

use bridge::rtmp_push::{RtmpPublisher, RtmpUrl};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let url = RtmpUrl::parse("rtmp://127.0.0.1:1935/live/key").expect("valid URL");
    let Ok(mut publisher) = RtmpPublisher::new(url) else {
        return;
    };
    let _ = publisher.take_output();
    if mode & 1 == 1 {
        let mut handshake = vec![3u8];
        handshake.extend(std::iter::repeat_n(0u8, 1536 * 2));
        if publisher.handle_input(&handshake).is_err() {
            return;
        }
    }
    let mut start = 0;
    let mut i = 0;
    while i + 1 < rest.len() {
        if rest[i] == 0xFF && rest[i + 1] == 0xFE {
            if publisher.handle_input(&rest[start..i]).is_err() {
                return;
            }
            let _ = publisher.take_output();
            start = i + 2;
            i += 2;
        } else {
            i += 1;
        }
    }
    if publisher.handle_input(&rest[start..]).is_ok() && publisher.is_publishing() {
        let _ = publisher.send_tag(9, 0, Bytes::from_static(&[0x17, 1, 0, 0, 0]));
        let _ = publisher.send_tag(18, 0, Bytes::copy_from_slice(rest));
    }
});
