//! The largest image this project decodes, in one place: the loader, every
//! example and the server check a file's header against [`ImageLimits`]
//! before decoding it (issue 24). Besides the pixel count, a maximum side
//! and a maximum aspect ratio keep degenerate shapes (a 16777216x1 PNG of
//! 49 KB) out: they decode small but ask every later step (resize, views,
//! state grids) for memory in proportion to their long side.

use std::fmt;

/// Limits on the dimensions of a decoded image, checked from its header.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImageLimits {
    /// Most pixels (width times height).
    pub max_pixels: u64,
    /// Most pixels along either side.
    pub max_side: u32,
    /// Largest ratio of the long side to the short side.
    pub max_aspect: f64,
    /// Most bytes a decoder may allocate for what a file holds besides its
    /// pixels (a PNG's compressed ICC profile, read with the header, can
    /// inflate a 1 MB file to 0.5 GB).
    pub max_metadata_bytes: u64,
}

impl Default for ImageLimits {
    /// 4096 x 4096 pixels, 16384 a side, aspect ratio at most 32 (the
    /// Oxford-IIIT Pet release stays below 2,000 pixels a side and an
    /// aspect ratio of 4), 16 MiB of metadata (a camera's ICC profile is
    /// a few KB to a few hundred KB).
    fn default() -> Self {
        Self {
            max_pixels: 4096 * 4096,
            max_side: 16_384,
            max_aspect: 32.0,
            max_metadata_bytes: 16 << 20,
        }
    }
}

/// An image over one of the [`ImageLimits`], or limits that make no sense.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitError {
    /// The limit or field concerned: `max_pixels`, `max_side`,
    /// `max_aspect` or `dimensions`.
    pub field: &'static str,
    /// What is wrong, with the value and the limit.
    pub reason: String,
    /// Whether the image is over a limit (`true`) rather than the limits
    /// themselves invalid or the image empty (`false`).
    pub too_large: bool,
}

impl fmt::Display for LimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

impl std::error::Error for LimitError {}

impl ImageLimits {
    /// Checks that every limit is positive and the aspect ratio at least 1.
    pub fn validate(&self) -> Result<(), LimitError> {
        let invalid = |field, reason: String| LimitError {
            field,
            reason,
            too_large: false,
        };
        if self.max_pixels == 0 {
            return Err(invalid("max_pixels", "must be at least 1".into()));
        }
        if self.max_side == 0 {
            return Err(invalid("max_side", "must be at least 1".into()));
        }
        if self.max_metadata_bytes == 0 {
            return Err(invalid("max_metadata_bytes", "must be at least 1".into()));
        }
        if !(self.max_aspect >= 1.0 && self.max_aspect.is_finite()) {
            return Err(invalid(
                "max_aspect",
                format!("{} must be a finite ratio of at least 1", self.max_aspect),
            ));
        }
        Ok(())
    }

    /// Checks an image of `width x height` pixels against the limits: an
    /// error naming the limit when it is over one, or when it has no pixels.
    pub fn check(&self, width: u32, height: u32) -> Result<(), LimitError> {
        let over = |field, reason: String| LimitError {
            field,
            reason,
            too_large: true,
        };
        if width == 0 || height == 0 {
            return Err(LimitError {
                field: "dimensions",
                reason: format!("image of {width}x{height} has no pixels"),
                too_large: false,
            });
        }
        let pixels = u64::from(width) * u64::from(height);
        if pixels > self.max_pixels {
            return Err(over(
                "max_pixels",
                format!(
                    "image of {width}x{height} = {pixels} pixels is over the limit of {} pixels",
                    self.max_pixels
                ),
            ));
        }
        let long = width.max(height);
        if long > self.max_side {
            return Err(over(
                "max_side",
                format!(
                    "image of {width}x{height} has a side of {long} pixels, over the limit of {}",
                    self.max_side
                ),
            ));
        }
        let aspect = f64::from(long) / f64::from(width.min(height));
        if aspect > self.max_aspect {
            return Err(over(
                "max_aspect",
                format!(
                    "image of {width}x{height} has an aspect ratio of {aspect:.1}, over the limit of {}",
                    self.max_aspect
                ),
            ));
        }
        Ok(())
    }

    /// The most bytes a decoder may allocate for the pixels of an image of
    /// `width x height`: 16 bytes a pixel (RGBA of 32-bit floats, the
    /// widest decoded form).
    pub fn pixel_bytes(width: u32, height: u32) -> u64 {
        u64::from(width) * u64::from(height) * 16
    }

    /// The `image` decoder's limits for reading a header: at most
    /// [`ImageLimits::max_metadata_bytes`] for the chunks read with it (a
    /// PNG's ICC profile is inflated there) plus the row buffers of an
    /// image of [`ImageLimits::max_side`] (a PNG decoder sets them up
    /// with the header; a PNG's width is checked before it is read).
    pub fn header_limits(&self) -> image::Limits {
        let mut limits = image::Limits::default();
        limits.max_alloc = Some(
            self.max_metadata_bytes
                .saturating_add(Self::pixel_bytes(self.max_side, 4)),
        );
        limits
    }

    /// The `image` decoder's limits for an image whose header declared
    /// `width x height` (already [`ImageLimits::check`]ed): no larger
    /// dimensions, and at most [`ImageLimits::pixel_bytes`] plus
    /// [`ImageLimits::max_metadata_bytes`] allocated.
    pub fn decoder_limits(&self, width: u32, height: u32) -> image::Limits {
        let mut limits = image::Limits::default();
        limits.max_image_width = Some(width);
        limits.max_image_height = Some(height);
        limits.max_alloc =
            Some(Self::pixel_bytes(width, height).saturating_add(self.max_metadata_bytes));
        limits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_against_the_default_limits() {
        let limits = ImageLimits::default();
        for (w, h, field) in [
            (16_777_216, 1, Some("max_side")),
            (1, 16_777_216, Some("max_side")),
            (4096, 4096, None),
            (4097, 4096, Some("max_pixels")),
            (16_384, 1, Some("max_aspect")),
            (1, 33, Some("max_aspect")),
            (32, 1, None),
            (500, 375, None),
            (0, 10, Some("dimensions")),
        ] {
            match (limits.check(w, h), field) {
                (Ok(()), None) => {}
                (Err(e), Some(f)) => {
                    assert_eq!(e.field, f, "{w}x{h}: {e}");
                    assert!(e.to_string().contains(&format!("{w}x{h}")), "{e}");
                }
                (got, want) => panic!("{w}x{h}: {got:?}, expected {want:?}"),
            }
        }
    }

    #[test]
    fn nonsense_limits_are_named() {
        let bad = ImageLimits {
            max_aspect: 0.5,
            ..ImageLimits::default()
        };
        assert_eq!(bad.validate().unwrap_err().field, "max_aspect");
        let bad = ImageLimits {
            max_side: 0,
            ..ImageLimits::default()
        };
        assert_eq!(bad.validate().unwrap_err().field, "max_side");
        assert!(ImageLimits::default().validate().is_ok());
    }
}
