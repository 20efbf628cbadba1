//! Fuzzes the split-file parser under both policies: never a panic; strict
//! success means every entry parsed, with unique names; lenient keeps the
//! same entries as strict when strict succeeds.
#![no_main]

use std::collections::HashSet;
use std::path::Path;

use ca_data::{parse_split, LoadPolicy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("annotations/trainval.txt");
    let strict = parse_split(text, path, LoadPolicy::Strict);
    let lenient = parse_split(text, path, LoadPolicy::Lenient);
    if let Ok((entries, skipped)) = &strict {
        assert!(skipped.is_empty());
        assert!(!entries.is_empty());
        let names: HashSet<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names.len(), entries.len());
        let (lenient_entries, lenient_skipped) = lenient.as_ref().expect("lenient accepts it too");
        assert_eq!(lenient_entries, entries);
        assert!(lenient_skipped.is_empty());
    }
    if let Ok((entries, _)) = &lenient {
        for e in entries {
            assert!(!e.name.is_empty() && !e.name.contains(['/', '\\', '\r', '\n']));
        }
    }
});
