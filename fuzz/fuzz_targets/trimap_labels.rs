//! Fuzzes the trimap-to-label conversion on arbitrary file bytes: never a
//! panic; a success has one class id in {0, 1, 2} per pixel.
#![no_main]

use std::path::Path;

use ca_data::{label_map_from_bytes, NUM_CLASSES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(labels) = label_map_from_bytes(data, Path::new("trimaps/fuzz.png")) {
        let (w, h) = labels.dimensions();
        assert_eq!(labels.as_raw().len(), w as usize * h as usize);
        assert!(labels.as_raw().iter().all(|&c| (c as usize) < NUM_CLASSES));
    }
});
