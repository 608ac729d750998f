//! Uploaded images: sniffing, decoding under limits and re-encoding classify every input
//! as a JPEG within the kind's size or one of the three errors, without panicking and
//! without allocating past the decoder's limit (a decompression bomb is refused).
#![no_main]

use libfuzzer_sys::fuzz_target;
use signaling::images::{ImageKind, process};

fuzz_target!(|data: &[u8]| {
    let kind = match data.first().map(|b| b % 3) {
        Some(0) => ImageKind::Avatar,
        Some(1) => ImageKind::Photo,
        _ => ImageKind::Cover,
    };
    if let Ok(image) = process(data, kind) {
        assert!(image.width <= kind.max_side() && image.height <= kind.max_side());
        assert!(image.jpeg.starts_with(&[0xFF, 0xD8, 0xFF]));
    }
    // Stored texts that may name uploads (avatars, photo lists, covers).
    if let Ok(text) = std::str::from_utf8(data) {
        for id in signaling::upload_cleanup::upload_ids_in(text) {
            assert_eq!(id.len(), 32);
        }
    }
});
