//! Photos to segment, one policy for every tool that takes one (`segment`,
//! the server's uploads and page): JPEG or PNG only, checked to be whole,
//! held to the [`ImageLimits`] from the header (pixels, side, aspect ratio)
//! and while decoding (pixels and metadata bytes), and turned by their EXIF
//! orientation, so that the pixels are the photo as a browser or a viewer
//! shows it.
//!
//! The dataset loader does not use this: it reads GIF too (the release has
//! GIF data in `.jpg` files) and keeps the stored orientation, so that an
//! image stays aligned with its trimap ([`crate::decode`]).

use std::io::Cursor;
use std::path::Path;

use ca_core::ErrorShapes;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, RgbImage};

use crate::decode::{check_header, decode_error, image_error, jpeg_is_complete};
use crate::error::DataError;
use crate::limits::ImageLimits;

/// The formats a photo may have, as messages name them.
pub const PHOTO_FORMATS: &str = "JPEG or PNG";

/// Reads a photo file: [`decode_photo`] on its bytes, the errors naming
/// `path`.
pub fn load_photo(path: impl AsRef<Path>, limits: &ImageLimits) -> Result<RgbImage, DataError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    decode_photo(&bytes, path, limits)
}

/// Decodes the bytes of a JPEG or PNG photo to 8-bit RGB in its displayed
/// orientation (EXIF orientation applied: an orientation-6 photo stored
/// 160 wide and 107 tall comes out 107 wide and 160 tall).
///
/// `source` names the photo in errors. [`DataError::Decode`]: empty bytes,
/// another format (GIF, WebP, TIFF, ... whatever the name says), a
/// truncated file (a PNG without `IEND`, a JPEG without an end-of-image
/// marker after its last scan) or a corrupt one. [`DataError::TooLarge`]:
/// dimensions over `limits` (from the header, before any pixel is
/// decoded), or a decoder that would allocate more than the pixels need
/// plus [`ImageLimits::max_metadata_bytes`] (a compressed ICC profile that
/// inflates to hundreds of MB is refused while the header is read).
pub fn decode_photo(
    bytes: &[u8],
    source: &Path,
    limits: &ImageLimits,
) -> Result<RgbImage, DataError> {
    let format = photo_format(bytes, source)?;
    check_complete(bytes, format, source)?;
    let (width, height) = check_header(bytes, source, limits)?;
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(limits.decoder_limits(width, height));
    let too_large = |e| image_error(source, e, limits, (width, height));
    let mut decoder = reader.into_decoder().map_err(too_large)?;
    let orientation = decoder.orientation().map_err(too_large)?;
    let mut image = DynamicImage::from_decoder(decoder).map_err(too_large)?;
    image.apply_orientation(orientation);
    Ok(image.into_rgb8())
}

/// JPEG or PNG by the first bytes, else [`DataError::Decode`] saying what
/// the bytes are.
fn photo_format(bytes: &[u8], source: &Path) -> Result<ImageFormat, DataError> {
    if bytes.is_empty() {
        return Err(decode_error(
            source,
            format!("empty (0 bytes): expected a {PHOTO_FORMATS} image"),
        ));
    }
    match image::guess_format(bytes) {
        Ok(f @ (ImageFormat::Jpeg | ImageFormat::Png)) => Ok(f),
        Ok(other) => Err(decode_error(
            source,
            format!("unsupported image format {other:?}: expected {PHOTO_FORMATS}"),
        )),
        Err(_) => Err(decode_error(
            source,
            format!("not an image: the bytes start with neither the JPEG nor the PNG signature (expected {PHOTO_FORMATS})"),
        )),
    }
}

/// A truncated file is an error rather than a grey-filled picture (the
/// JPEG decoder fills a cut scan with grey instead of failing): a PNG must
/// hold its `IEND` chunk, a JPEG an end-of-image marker after its last
/// start-of-scan.
fn check_complete(bytes: &[u8], format: ImageFormat, source: &Path) -> Result<(), DataError> {
    let (complete, name) = match format {
        ImageFormat::Png => (bytes.windows(4).any(|w| w == b"IEND"), "PNG"),
        _ => (jpeg_is_complete(bytes), "JPEG"),
    };
    if complete {
        Ok(())
    } else {
        Err(decode_error(
            source,
            format!(
                "truncated {name}: the bytes end before the image does ({} bytes)",
                bytes.len()
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let mut bytes = Vec::new();
        RgbImage::from_fn(width, height, |x, y| image::Rgb([x as u8, y as u8, 7]))
            .write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)
            .unwrap();
        bytes
    }

    #[test]
    fn other_formats_empty_and_cut_files_are_named() {
        let limits = ImageLimits::default();
        let whole = png(30, 20);
        let cases: [(&[u8], &str); 4] = [
            (b"", "empty (0 bytes)"),
            (
                b"GIF89a\x01\x00\x01\x00\x00\x00\x00;",
                "unsupported image format Gif",
            ),
            (b"hello, not an image", "not an image"),
            (&whole[..whole.len() - 20], "truncated PNG"),
        ];
        for (bytes, want) in cases {
            let err = decode_photo(bytes, Path::new("up.jpg"), &limits).unwrap_err();
            let text = err.to_string();
            assert!(matches!(err, DataError::Decode { .. }), "{text}");
            assert!(text.contains("up.jpg") && text.contains(want), "{text}");
        }
        let photo = decode_photo(&whole, Path::new("ok.png"), &limits).unwrap();
        assert_eq!(photo.dimensions(), (30, 20));
        assert_eq!(photo.get_pixel(3, 2).0, [3, 2, 7]);
    }
}
