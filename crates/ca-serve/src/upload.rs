//! Uploaded images: checked against the byte limit, then decoded by
//! [`ca_data::decode_photo`], the one photo policy of the project (JPEG or
//! PNG, whole, within [`ca_data::ImageLimits`], EXIF orientation applied).

use std::path::Path;

use ca_data::{DataError, ImageLimits};
use image::RgbImage;

use crate::error::ApiError;

/// The limits an upload is checked against.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UploadLimits {
    /// Most bytes.
    pub max_bytes: usize,
    /// Most pixels, longest side, largest aspect ratio, metadata bytes.
    pub image: ImageLimits,
}

/// Decodes an uploaded JPEG or PNG to RGB in its displayed orientation:
/// 413 when it is over `limits` (bytes; pixels, side or aspect ratio from
/// its header, before decoding; the decoder's allocation budget), 400 when
/// it is empty, of another format, truncated or corrupt.
pub fn decode_image(bytes: &[u8], limits: UploadLimits) -> Result<RgbImage, ApiError> {
    if bytes.len() > limits.max_bytes {
        return Err(ApiError::too_large(format!(
            "upload of {} bytes is over the limit of {} bytes",
            bytes.len(),
            limits.max_bytes
        )));
    }
    ca_data::decode_photo(bytes, Path::new("upload"), &limits.image).map_err(|e| match e {
        DataError::TooLarge { .. } => ApiError::too_large(e.to_string()),
        _ => ApiError::bad_request(e.to_string()),
    })
}
