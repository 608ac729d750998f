//! Arbitrary bytes from an RTMP server into the publisher: our code must never panic,
//! only fail with an error. Panics *inside* `rml_rtmp`/`rml_amf0` are contained by the
//! publisher's `catch_unwind` guard and become protocol errors; the panic hook below lets
//! exactly those unwind (libfuzzer's default hook aborts on any panic) and aborts on
//! every other one. Known third-party panics found here are refused before they reach
//! the crate (see `MessageInspector`), e.g. AMF0 commands with fewer than three values;
//! an extended-timestamp subtraction in the chunk parser overflows only in builds with
//! overflow checks (it wraps in release builds).
//!
//! Input: `[mode: u8]` then the server's bytes, cut into reads by `0xFF 0xFE` markers.
//! Mode bit 0: prepend a well-formed S0+S1+S2 so the chunk parser and session see the
//! rest. Run: `cargo +nightly fuzz run rtmp_publisher` in `bridge/fuzz`.
#![no_main]

use bridge::rtmp_push::{RtmpPublisher, RtmpUrl};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fn contain_third_party_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let trace = std::backtrace::Backtrace::force_capture().to_string();
            if trace.contains("rml_rtmp::") || trace.contains("rml_amf0::") {
                return; // unwinds into RtmpPublisher's guard
            }
            eprintln!("{info}\n{trace}");
            std::process::abort();
        }));
    });
}

fuzz_target!(|data: &[u8]| {
    contain_third_party_panics();
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
