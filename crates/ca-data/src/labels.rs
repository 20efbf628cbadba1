//! Class ids of the model and the one mapping from Oxford-IIIT Pet trimap
//! values to them.
//!
//! | trimap value | meaning in the release | model class |
//! |---|---|---|
//! | 1 | pet (foreground) | [`OBJECT`] = 1 |
//! | 2 | background | [`BACKGROUND`] = 0 |
//! | 3 | boundary / not classified | [`BOUNDARY`] = 2 |
//!
//! Any other trimap value is invalid.

/// The model's class ids and names (defined once, in `ca_core::classes`):
/// [`BACKGROUND`] for trimap value 2, [`OBJECT`] for 1, [`BOUNDARY`] for 3.
pub use ca_core::classes::{BACKGROUND, BOUNDARY, CLASS_NAMES, NUM_CLASSES, OBJECT};

/// Trimap value of the pet in the release.
pub const TRIMAP_PET: u8 = 1;
/// Trimap value of the background in the release.
pub const TRIMAP_BACKGROUND: u8 = 2;
/// Trimap value of the boundary band in the release.
pub const TRIMAP_BOUNDARY: u8 = 3;

/// Maps a raw trimap value to a model class id: 1 -> [`OBJECT`],
/// 2 -> [`BACKGROUND`], 3 -> [`BOUNDARY`]; any other value -> `None`.
pub fn trimap_to_class(value: u16) -> Option<u8> {
    match value {
        1 => Some(OBJECT),
        2 => Some(BACKGROUND),
        3 => Some(BOUNDARY),
        _ => None,
    }
}

/// The inverse of [`trimap_to_class`]: model class id -> raw trimap value
/// (used when writing trimaps); `None` for an id that is not a class.
pub fn class_to_trimap(class: u8) -> Option<u8> {
    match class {
        OBJECT => Some(TRIMAP_PET),
        BACKGROUND => Some(TRIMAP_BACKGROUND),
        BOUNDARY => Some(TRIMAP_BOUNDARY),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_matches_the_release() {
        assert_eq!(trimap_to_class(1), Some(OBJECT));
        assert_eq!(trimap_to_class(2), Some(BACKGROUND));
        assert_eq!(trimap_to_class(3), Some(BOUNDARY));
        for v in [0u16, 4, 7, 255, 256, 65535] {
            assert_eq!(trimap_to_class(v), None, "value {v}");
        }
    }

    #[test]
    fn inverse_round_trips() {
        for class in 0..NUM_CLASSES as u8 {
            let t = class_to_trimap(class).expect("a class");
            assert_eq!(trimap_to_class(u16::from(t)), Some(class));
        }
        assert_eq!(class_to_trimap(3), None);
        assert_eq!(CLASS_NAMES[usize::from(OBJECT)], "object");
    }
}
