//! Uploaded images: the type is sniffed from the bytes (never taken from a header), the
//! image is decoded under limits that stop decompression bombs, turned upright, scaled to
//! the kind's longest side and re-encoded as a baseline JPEG — so no metadata (EXIF, GPS,
//! comments) and no bytes of the original survive.
//!
//! Pure and synchronous: the route runs it on a blocking thread; the fuzz target calls it
//! directly (`signaling/fuzz/fuzz_targets/upload_image.rs`).

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};
use std::io::Cursor;

/// Most bytes an upload may have.
pub const MAX_UPLOAD_BYTES: usize = 5 * 1024 * 1024;
/// Widest or tallest image decoded.
pub const MAX_SIDE: u32 = 8000;
/// Most pixels decoded (a 5 MiB PNG of one colour could otherwise claim gigabytes).
pub const MAX_PIXELS: u64 = 25_000_000;
/// Most bytes the decoder may allocate.
pub const MAX_DECODE_ALLOC: u64 = 128 * 1024 * 1024;
/// Quality of the re-encoded JPEG.
const JPEG_QUALITY: u8 = 85;

/// What an image is for: it decides the size it is stored at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    /// A profile picture (≤ 400 px).
    Avatar,
    /// A profile photo (≤ 1280 px).
    Photo,
    /// A room cover (≤ 1280 px).
    Cover,
}

impl ImageKind {
    /// The longest side this kind is stored at.
    pub fn max_side(self) -> u32 {
        match self {
            ImageKind::Avatar => 400,
            ImageKind::Photo | ImageKind::Cover => 1280,
        }
    }

    /// Stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            ImageKind::Avatar => "avatar",
            ImageKind::Photo => "photo",
            ImageKind::Cover => "cover",
        }
    }
}

/// Why an upload is not an image we keep.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImageError {
    /// The bytes are not JPEG, PNG or WebP.
    #[error("the file is not a JPEG, PNG or WebP image")]
    UnsupportedType,
    /// The image's dimensions or decoded size exceed the limits (a decompression bomb).
    #[error("the image is too large to process: {0}")]
    TooLarge(String),
    /// The bytes claim an image type but do not decode.
    #[error("the image could not be decoded: {0}")]
    Malformed(String),
}

/// A re-encoded image.
#[derive(Debug, Clone)]
pub struct ProcessedImage {
    /// The JPEG bytes.
    pub jpeg: Vec<u8>,
    /// Pixel width.
    pub width: u32,
    /// Pixel height.
    pub height: u32,
}

/// The format the bytes start with (magic numbers), if we take it.
pub fn sniff(bytes: &[u8]) -> Option<ImageFormat> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(ImageFormat::Jpeg)
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(ImageFormat::Png)
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some(ImageFormat::WebP)
    } else {
        None
    }
}

fn decode_error(err: image::ImageError) -> ImageError {
    match err {
        image::ImageError::Limits(limit) => ImageError::TooLarge(limit.to_string()),
        other => ImageError::Malformed(other.to_string()),
    }
}

/// Decodes `bytes` under the limits and re-encodes them for `kind`.
pub fn process(bytes: &[u8], kind: ImageKind) -> Result<ProcessedImage, ImageError> {
    let format = sniff(bytes).ok_or(ImageError::UnsupportedType)?;
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODE_ALLOC);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(decode_error)?;
    let (width, height) = decoder.dimensions();
    if width == 0 || height == 0 {
        return Err(ImageError::Malformed("the image has no pixels".into()));
    }
    if u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(ImageError::TooLarge(format!(
            "{width}×{height} pixels (at most {MAX_PIXELS})"
        )));
    }
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut decoded = DynamicImage::from_decoder(decoder).map_err(decode_error)?;
    decoded.apply_orientation(orientation);
    let max = kind.max_side();
    let scaled = if decoded.width() > max || decoded.height() > max {
        decoded.resize(max, max, image::imageops::FilterType::Triangle)
    } else {
        decoded
    };
    // JPEG has no alpha: transparent pixels become their colour without the alpha.
    let rgb = scaled.to_rgb8();
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, JPEG_QUALITY)
        .encode_image(&rgb)
        .map_err(|e| ImageError::Malformed(e.to_string()))?;
    Ok(ProcessedImage {
        jpeg,
        width: rgb.width(),
        height: rgb.height(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let image = image::RgbaImage::from_pixel(width, height, image::Rgba([200, 10, 10, 255]));
        let mut out = Vec::new();
        DynamicImage::ImageRgba8(image)
            .write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
            .expect("encoding a small PNG in memory cannot fail");
        out
    }

    #[test]
    fn images_are_sniffed_scaled_and_reencoded() {
        let out = process(&png(1000, 500), ImageKind::Avatar).unwrap();
        assert_eq!((out.width, out.height), (400, 200));
        assert_eq!(sniff(&out.jpeg), Some(ImageFormat::Jpeg));
        let small = process(&png(64, 48), ImageKind::Photo).unwrap();
        assert_eq!((small.width, small.height), (64, 48));
        assert_eq!(
            process(b"GIF89a....", ImageKind::Photo).unwrap_err(),
            ImageError::UnsupportedType
        );
        let mut truncated = png(64, 48);
        truncated.truncate(60);
        assert!(matches!(
            process(&truncated, ImageKind::Photo),
            Err(ImageError::Malformed(_))
        ));
    }
}
