//! Decoding images and trimaps by content, whatever their file extension.
//!
//! The release has PNG and GIF data in `.jpg` files, so the format is sniffed
//! from the first bytes. Images come out as 8-bit RGB: grayscale is
//! replicated, alpha is dropped (not composited), CMYK JPEGs are converted by
//! the JPEG decoder, 16-bit samples are scaled to 8 bits. No EXIF orientation
//! is applied, so pixels stay aligned with their trimaps.
//!
//! Trimaps keep their raw values: an 8-bit or 16-bit grayscale PNG is read
//! sample by sample (a 16-bit trimap holding 1, 2, 3 gives 1, 2, 3), and a
//! palette PNG gives its palette indices.

use ca_core::ErrorShapes;
use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, GrayImage, ImageFormat, ImageReader, RgbImage};

use crate::error::DataError;
use crate::labels::trimap_to_class;
use crate::limits::ImageLimits;

/// Reads one image file of any size and format that the `image` crate
/// decodes (JPEG, PNG, GIF), chosen by content, and returns it as 8-bit RGB.
///
/// A zero-byte file, a truncated JPEG (no end-of-image marker after its last
/// scan) or an unknown format is a [`DataError::Decode`] naming the file;
/// a header over the default [`ImageLimits`] is a [`DataError::TooLarge`],
/// before any pixel is decoded.
pub fn load_rgb(path: &Path) -> Result<RgbImage, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    decode_rgb(&bytes, path, &ImageLimits::default())
}

/// Reads a trimap file and returns its pixels as model class ids
/// (see [`crate::labels`]), at the file's own size.
///
/// Values outside {1, 2, 3} are a [`DataError::TrimapValue`] naming the file,
/// the value and the first pixel that holds it.
pub fn load_label_map(path: &Path) -> Result<GrayImage, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    label_map_from_bytes(&bytes, path)
}

/// [`load_label_map`] on the bytes of a trimap file; `path` only names the
/// source in errors.
pub fn label_map_from_bytes(bytes: &[u8], path: &Path) -> Result<GrayImage, DataError> {
    let raw = decode_trimap_raw(bytes, path)?;
    let mut classes = Vec::with_capacity(raw.values.len());
    for (i, &value) in raw.values.iter().enumerate() {
        match trimap_to_class(value) {
            Some(c) => classes.push(c),
            None => {
                let w = raw.width as usize;
                return Err(DataError::TrimapValue {
                    path: path.to_path_buf(),
                    value,
                    x: (i % w) as u32,
                    y: (i / w) as u32,
                });
            }
        }
    }
    GrayImage::from_raw(raw.width, raw.height, classes).ok_or_else(|| DataError::Decode {
        path: path.to_path_buf(),
        reason: "decoded pixel count does not match the image size".to_string(),
    })
}

/// Raw trimap samples, row-major, one value per pixel.
struct RawTrimap {
    width: u32,
    height: u32,
    values: Vec<u16>,
}

pub(crate) fn decode_error(path: &Path, reason: impl ToString) -> DataError {
    DataError::Decode {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn sniff<'a>(bytes: &'a [u8], path: &Path) -> Result<ImageReader<Cursor<&'a [u8]>>, DataError> {
    if bytes.is_empty() {
        return Err(decode_error(path, "the file is empty (0 bytes)"));
    }
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| decode_error(path, e))?;
    match reader.format() {
        None => Err(decode_error(path, "unknown image format")),
        Some(ImageFormat::Jpeg) if !jpeg_is_complete(bytes) => Err(decode_error(
            path,
            "truncated JPEG: no end-of-image marker after the last scan",
        )),
        Some(_) => Ok(reader),
    }
}

/// Decodes image bytes (any format [`load_rgb`] reads) to 8-bit RGB after
/// checking the dimensions in the header against `limits`; the decoder
/// itself is held to those dimensions and to
/// [`ImageLimits::decoder_limits`] (pixels and metadata). `path` names the
/// source in errors.
pub fn decode_rgb(bytes: &[u8], path: &Path, limits: &ImageLimits) -> Result<RgbImage, DataError> {
    let (width, height) = check_header(bytes, path, limits)?;
    let mut reader = sniff(bytes, path)?;
    reader.limits(limits.decoder_limits(width, height));
    let image = reader
        .decode()
        .map_err(|e| image_error(path, e, limits, (width, height)))?;
    Ok(match image {
        DynamicImage::ImageRgb8(rgb) => rgb,
        other => other.to_rgb8(),
    })
}

/// A decoder's error as the crate's: over its allocation budget (the
/// pixels of `width x height` plus the metadata budget; `(0, 0)` while
/// reading the header) is [`DataError::TooLarge`] naming
/// `max_metadata_bytes`, anything else [`DataError::Decode`].
pub(crate) fn image_error(
    path: &Path,
    error: image::ImageError,
    limits: &ImageLimits,
    (width, height): (u32, u32),
) -> DataError {
    match error {
        image::ImageError::Limits(e) => DataError::TooLarge {
            path: path.to_path_buf(),
            source: crate::limits::LimitError {
                field: "max_metadata_bytes",
                reason: format!(
                    "decoding needs more than the {} bytes of the pixels plus {} bytes of metadata (an ICC profile or other chunk too large?): {e}",
                    ImageLimits::pixel_bytes(width, height),
                    limits.max_metadata_bytes
                ),
                too_large: true,
            },
        },
        other => decode_error(path, other),
    }
}

/// The `(width, height)` in the header of image bytes, checked against
/// `limits`: [`DataError::TooLarge`] over a limit (the metadata read with
/// the header included), [`DataError::Decode`] for an image without pixels
/// or an unreadable header.
pub(crate) fn check_header(
    bytes: &[u8],
    path: &Path,
    limits: &ImageLimits,
) -> Result<(u32, u32), DataError> {
    let mut reader = sniff(bytes, path)?;
    // A PNG's dimensions come first, in IHDR: checked before the decoder
    // reads the header, whose row buffers follow the width.
    if reader.format() == Some(ImageFormat::Png) {
        if let Some((width, height)) = png_dimensions(bytes) {
            check_dimensions(width, height, path, limits)?;
        }
    }
    reader.limits(limits.header_limits());
    let (width, height) = reader
        .into_dimensions()
        .map_err(|e| image_error(path, e, limits, (0, 0)))?;
    check_dimensions(width, height, path, limits)?;
    Ok((width, height))
}

/// The width and height in a PNG's IHDR chunk (right after the signature),
/// if the bytes hold one.
fn png_dimensions(bytes: &[u8]) -> Option<(u32, u32)> {
    let ihdr = bytes.get(12..24)?;
    if &ihdr[..4] != b"IHDR" {
        return None;
    }
    let word = |i: usize| u32::from_be_bytes([ihdr[i], ihdr[i + 1], ihdr[i + 2], ihdr[i + 3]]);
    Some((word(4), word(8)))
}

/// [`ImageLimits::check`] as the crate's error.
fn check_dimensions(
    width: u32,
    height: u32,
    path: &Path,
    limits: &ImageLimits,
) -> Result<(), DataError> {
    limits.check(width, height).map_err(|source| {
        if source.too_large {
            DataError::TooLarge {
                path: path.to_path_buf(),
                source,
            }
        } else {
            decode_error(path, source)
        }
    })
}

/// Whether a JPEG byte stream has an end-of-image marker (`FF D9`) after its
/// last start-of-scan marker (`FF DA`). Entropy-coded data never holds
/// `FF D9` (a data byte `FF` is stuffed as `FF 00`), so a file cut inside or
/// before its last scan fails this test while trailing bytes after a
/// complete image do not matter.
pub(crate) fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let last_sos = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]);
    match last_sos {
        None => false,
        Some(i) => bytes[i..].windows(2).any(|w| w == [0xFF, 0xD9]),
    }
}

fn decode_trimap_raw(bytes: &[u8], path: &Path) -> Result<RawTrimap, DataError> {
    check_header(bytes, path, &ImageLimits::default())?;
    let reader = sniff(bytes, path)?;
    if reader.format() == Some(ImageFormat::Png) {
        return decode_png_raw(bytes, path);
    }
    let image = reader.decode().map_err(|e| decode_error(path, e))?;
    let (width, height) = (image.width(), image.height());
    let values: Vec<u16> = match image {
        DynamicImage::ImageLuma8(g) => g.into_raw().into_iter().map(u16::from).collect(),
        DynamicImage::ImageLuma16(g) => g.into_raw(),
        DynamicImage::ImageLumaA8(g) => g.pixels().map(|p| u16::from(p.0[0])).collect(),
        DynamicImage::ImageLumaA16(g) => g.pixels().map(|p| p.0[0]).collect(),
        DynamicImage::ImageRgb8(_) | DynamicImage::ImageRgba8(_) => {
            let rgb = image.to_rgb8();
            let mut values = Vec::with_capacity(rgb.len() / 3);
            for (x, y, p) in rgb.enumerate_pixels() {
                let [r, g, b] = p.0;
                if r != g || g != b {
                    return Err(colour_pixel(path, [r.into(), g.into(), b.into()], x, y));
                }
                values.push(u16::from(r));
            }
            values
        }
        other => {
            return Err(DataError::UnsupportedTrimap {
                path: path.to_path_buf(),
                reason: format!(
                    "pixel type {:?} has no single value per pixel",
                    other.color()
                ),
            })
        }
    };
    Ok(RawTrimap {
        width,
        height,
        values,
    })
}

fn colour_pixel(path: &Path, rgb: [u16; 3], x: u32, y: u32) -> DataError {
    DataError::UnsupportedTrimap {
        path: path.to_path_buf(),
        reason: format!(
            "colour pixel (r={}, g={}, b={}) at (x={x}, y={y}); a trimap needs one value per pixel",
            rgb[0], rgb[1], rgb[2]
        ),
    }
}

/// The most pixels a PNG trimap may declare (8192 x 8192): a corrupt header
/// can claim billions, and the buffer is allocated before any pixel data
/// is read. (The `image` crate's own limits guard the other formats.)
pub const MAX_TRIMAP_PIXELS: u64 = 1 << 26;

/// Decodes a PNG without any transformation, so palette images give their
/// indices and 16-bit images their full values.
fn decode_png_raw(bytes: &[u8], path: &Path) -> Result<RawTrimap, DataError> {
    let mut decoder = png::Decoder::new(Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::IDENTITY);
    let mut reader = decoder.read_info().map_err(|e| decode_error(path, e))?;
    let (w, h) = (reader.info().width, reader.info().height);
    if u64::from(w) * u64::from(h) > MAX_TRIMAP_PIXELS {
        return Err(decode_error(
            path,
            format!(
                "{w}x{h} pixels is over the limit of {MAX_TRIMAP_PIXELS} pixels (corrupt header?)"
            ),
        ));
    }
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| decode_error(path, "image too large"))?;
    let mut buf = vec![0u8; size];
    let info = reader
        .next_frame(&mut buf)
        .map_err(|e| decode_error(path, e))?;
    let (width, height) = (info.width, info.height);
    let depth = info.bit_depth as usize;
    let channels = info.color_type.samples();
    let sample = |row: &[u8], index: usize| -> u16 {
        match depth {
            16 => u16::from_be_bytes([row[2 * index], row[2 * index + 1]]),
            8 => u16::from(row[index]),
            _ => {
                let bit = index * depth;
                let shift = 8 - depth - bit % 8;
                u16::from((row[bit / 8] >> shift) & ((1u8 << depth) - 1))
            }
        }
    };
    let mut values = Vec::with_capacity(width as usize * height as usize);
    for (y, row) in buf.chunks(info.line_size).take(height as usize).enumerate() {
        for x in 0..width as usize {
            let first = sample(row, x * channels);
            let value = match info.color_type {
                png::ColorType::Grayscale
                | png::ColorType::GrayscaleAlpha
                | png::ColorType::Indexed => first,
                png::ColorType::Rgb | png::ColorType::Rgba => {
                    let g = sample(row, x * channels + 1);
                    let b = sample(row, x * channels + 2);
                    if first != g || g != b {
                        return Err(colour_pixel(path, [first, g, b], x as u32, y as u32));
                    }
                    first
                }
            };
            values.push(value);
        }
    }
    Ok(RawTrimap {
        width,
        height,
        values,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jpeg_completeness() {
        assert!(jpeg_is_complete(&[
            0xFF, 0xD8, 0xFF, 0xDA, 1, 2, 0xFF, 0xD9
        ]));
        assert!(jpeg_is_complete(&[0xFF, 0xDA, 1, 0xFF, 0xD9, 0, 0, 0]));
        assert!(!jpeg_is_complete(&[0xFF, 0xD8, 0xFF, 0xDA, 1, 2]));
        assert!(!jpeg_is_complete(&[0xFF, 0xD8, 0xFF, 0xD9]));
    }

    #[test]
    fn empty_bytes_are_a_decode_error() {
        let err = decode_rgb(&[], Path::new("x.jpg"), &ImageLimits::default()).unwrap_err();
        assert!(err.to_string().contains("x.jpg"), "{err}");
        assert!(err.to_string().contains("empty"), "{err}");
    }

    #[test]
    fn a_strip_over_the_limits_is_refused_before_decoding() {
        let mut png = Vec::new();
        RgbImage::from_pixel(20_000, 1, image::Rgb([1, 2, 3]))
            .write_to(&mut Cursor::new(&mut png), ImageFormat::Png)
            .unwrap();
        let err = decode_rgb(&png, Path::new("strip.png"), &ImageLimits::default()).unwrap_err();
        assert!(matches!(err, DataError::TooLarge { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("strip.png") && text.contains("20000x1"),
            "{text}"
        );
        assert!(text.contains("max_side"), "{text}");
        let roomy = ImageLimits {
            max_side: 20_000,
            max_aspect: 20_000.0,
            ..ImageLimits::default()
        };
        assert_eq!(
            decode_rgb(&png, Path::new("strip.png"), &roomy)
                .unwrap()
                .dimensions(),
            (20_000, 1)
        );
    }

    #[test]
    fn garbage_is_a_decode_error() {
        let err = decode_rgb(
            b"MATLAB 5.0 MAT-file",
            Path::new("a.mat"),
            &ImageLimits::default(),
        )
        .unwrap_err();
        assert!(matches!(err, DataError::Decode { .. }), "{err}");
    }
}
