//! Uploaded images: checked against the byte limit and the project's image
//! limits ([`ca_data::ImageLimits`]: pixels, side, aspect ratio) before
//! they are decoded, JPEG and PNG only.

use std::io::Cursor;

use ca_data::ImageLimits;
use image::{ImageFormat, ImageReader, RgbImage};

use crate::error::ApiError;

/// The limits an upload is checked against.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UploadLimits {
    /// Most bytes.
    pub max_bytes: usize,
    /// Most pixels, longest side and largest aspect ratio.
    pub image: ImageLimits,
}

/// Decodes an uploaded JPEG or PNG to RGB: 413 when it is over `limits`
/// (pixels, side or aspect ratio from its header, before decoding), 400 when it is empty, of
/// another format, truncated ([`check_complete`]) or corrupt.
pub fn decode_image(bytes: &[u8], limits: UploadLimits) -> Result<RgbImage, ApiError> {
    if bytes.len() > limits.max_bytes {
        return Err(ApiError::too_large(format!(
            "upload of {} bytes is over the limit of {} bytes",
            bytes.len(),
            limits.max_bytes
        )));
    }
    if bytes.is_empty() {
        return Err(ApiError::bad_request(
            "empty upload: expected a JPEG or PNG image",
        ));
    }
    let format = match image::guess_format(bytes) {
        Ok(f @ (ImageFormat::Jpeg | ImageFormat::Png)) => f,
        Ok(other) => {
            return Err(ApiError::bad_request(format!(
                "unsupported image format {other:?}: expected JPEG or PNG"
            )))
        }
        Err(_) => {
            return Err(ApiError::bad_request(
                "not an image: the upload starts with neither the JPEG nor the PNG signature",
            ))
        }
    };
    let name = if format == ImageFormat::Jpeg {
        "JPEG"
    } else {
        "PNG"
    };
    let corrupt = |e: image::ImageError| {
        ApiError::bad_request(format!("truncated or corrupt {name} image: {e}"))
    };
    check_complete(bytes, format, name)?;
    let (w, h) = ImageReader::with_format(Cursor::new(bytes), format)
        .into_dimensions()
        .map_err(corrupt)?;
    limits.image.check(w, h).map_err(|e| {
        if e.too_large {
            ApiError::too_large(e.reason)
        } else {
            ApiError::bad_request(e.reason)
        }
    })?;
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(limits.image.decoder_limits(w, h));
    Ok(reader.decode().map_err(corrupt)?.into_rgb8())
}

fn last(bytes: &[u8], pattern: &[u8]) -> Option<usize> {
    bytes.windows(pattern.len()).rposition(|w| w == pattern)
}

/// Checks that an upload is not cut short (the JPEG decoder fills a
/// truncated scan with grey instead of failing): a PNG must hold its `IEND`
/// chunk, a JPEG an end-of-image marker after its last start-of-scan.
/// `name` names the format in the 400.
pub fn check_complete(bytes: &[u8], format: ImageFormat, name: &str) -> Result<(), ApiError> {
    let complete = match format {
        ImageFormat::Png => last(bytes, b"IEND").is_some(),
        _ => match (last(bytes, &[0xFF, 0xDA]), last(bytes, &[0xFF, 0xD9])) {
            (Some(scan), Some(end)) => end > scan,
            _ => false,
        },
    };
    if complete {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "truncated {name} image: the upload ends before the image does ({} bytes)",
            bytes.len()
        )))
    }
}
