//! Split files: `annotations/trainval.txt` and `annotations/test.txt`.
//!
//! Each line is `NAME CLASSID SPECIES BREEDID`, fields separated by
//! whitespace. Lines starting with `#` are comments, blank lines are ignored,
//! and Windows line endings (`\r\n`) are accepted.
//!
//! Also the fixed validation split of a training list: [`breed_of`] and
//! [`validation_mask`], used by [`crate::PetsDataset::split_validation`].

use ca_core::ErrorShapes;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::DataError;
use crate::LoadPolicy;

/// Which list of the release to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Split {
    /// `annotations/trainval.txt`: the training (and validation) pairs.
    TrainVal,
    /// `annotations/test.txt`: the test pairs.
    Test,
}

impl Split {
    /// The file name of this split inside `annotations/`.
    pub fn file_name(self) -> &'static str {
        match self {
            Split::TrainVal => "trainval.txt",
            Split::Test => "test.txt",
        }
    }
}

/// One line of a split file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitEntry {
    /// The sample name: the image is `images/NAME.jpg`, the trimap
    /// `annotations/trimaps/NAME.png`.
    pub name: String,
    /// The breed id across both species (1..=37 in the full release).
    pub class_id: u32,
    /// 1 = cat, 2 = dog.
    pub species: u32,
    /// The breed id within its species.
    pub breed_id: u32,
    /// The 1-based line of the split file this entry came from.
    pub line: usize,
}

/// Parses the text of a split file.
///
/// Under [`LoadPolicy::Strict`] the first malformed line or duplicate name is
/// an error; under [`LoadPolicy::Lenient`] such lines are left out and
/// returned as the second element. A file with no entry at all is an
/// [`DataError::EmptySplit`] under both policies. `path` is only used in
/// messages.
pub fn parse_split(
    text: &str,
    path: &Path,
    policy: LoadPolicy,
) -> Result<(Vec<SplitEntry>, Vec<DataError>), DataError> {
    let mut entries = Vec::new();
    let mut skipped = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.trim_end_matches('\r');
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let parsed =
            parse_line(trimmed, path, line_no).and_then(|entry| match seen.get(&entry.name) {
                Some(&first_line) => Err(DataError::DuplicateName {
                    path: path.to_path_buf(),
                    line: line_no,
                    name: entry.name,
                    first_line,
                }),
                None => Ok(entry),
            });
        match parsed {
            Ok(entry) => {
                seen.insert(entry.name.clone(), line_no);
                entries.push(entry);
            }
            Err(e) if policy == LoadPolicy::Lenient => skipped.push(e),
            Err(e) => return Err(e),
        }
    }
    if entries.is_empty() && skipped.is_empty() {
        return Err(DataError::EmptySplit {
            path: path.to_path_buf(),
        });
    }
    Ok((entries, skipped))
}

/// Reads and parses a split file; see [`parse_split`].
pub fn read_split(
    path: &Path,
    policy: LoadPolicy,
) -> Result<(Vec<SplitEntry>, Vec<DataError>), DataError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(DataError::MissingSplit {
                path: path.to_path_buf(),
            })
        }
        Err(e) => return Err(DataError::io(path, e)),
    };
    let text = String::from_utf8(bytes).map_err(|e| DataError::MalformedLine {
        path: path.to_path_buf(),
        line: 1 + e.as_bytes()[..e.utf8_error().valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count(),
        text: String::new(),
        reason: "the file is not valid UTF-8".to_string(),
    })?;
    parse_split(&text, path, policy)
}

/// The breed of an Oxford-IIIT Pet sample name: names are `BREED_NUMBER`
/// (`american_bulldog_12` is an `american_bulldog`, `Abyssinian_100` an
/// `Abyssinian`); the synthetic scenes' `synth-cat-001` (a `-` before the
/// number) is a `synth-cat`. A name without a numeric suffix after its last
/// `_` or `-` (or with nothing before it) is its own breed.
pub fn breed_of(name: &str) -> &str {
    match name.rfind(['_', '-']) {
        Some(cut)
            if cut > 0
                && cut + 1 < name.len()
                && name[cut + 1..].bytes().all(|b| b.is_ascii_digit()) =>
        {
            &name[..cut]
        }
        _ => name,
    }
}

/// The 64-bit FNV-1a hash of `bytes`: fixed, unlike std's randomized
/// hasher, so it gives the same value on every run and every machine.
fn fnv1a_64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Which of `names` belong to the validation part: one flag per name, in
/// the order given. Stratified by [`breed_of`]: within each breed of `n`
/// names, the names are ranked by a fixed 64-bit hash (FNV-1a, ties by the
/// name) and the first `round(fraction * n)` are validation. So the choice
/// is the same on every run, does not depend on the order of `names` or on
/// the other breeds, and grows monotonically with `fraction`. `fraction` is
/// clamped to [0, 1] (NaN counts as 0); [`crate::PetsDataset::split_validation`]
/// checks it.
pub fn validation_mask(names: &[&str], fraction: f64) -> Vec<bool> {
    let fraction = if fraction.is_nan() {
        0.0
    } else {
        fraction.clamp(0.0, 1.0)
    };
    let mut by_breed: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, name) in names.iter().enumerate() {
        by_breed.entry(breed_of(name)).or_default().push(i);
    }
    let mut mask = vec![false; names.len()];
    for members in by_breed.values_mut() {
        members.sort_by_key(|&i| (fnv1a_64(names[i].as_bytes()), names[i]));
        let take = (fraction * members.len() as f64).round() as usize;
        for &i in &members[..take.min(members.len())] {
            mask[i] = true;
        }
    }
    mask
}

/// Which of `names` belong to fold `fold` of `folds` (0-based): one flag per
/// name, in the order given. Stratified by [`breed_of`] as
/// [`validation_mask`] is: within each breed of `n` names ranked by the same
/// fixed hash, fold `k` is the ranks `round(k n / folds)` up to
/// `round((k + 1) n / folds)`. So the folds are deterministic, disjoint,
/// cover every name, hold each breed's names within one of an equal share,
/// and fold 0 is `validation_mask(names, 1 / folds)`.
///
/// # Panics
///
/// When `folds` is 0 or `fold >= folds` (checked by
/// [`crate::PetsDataset::split_fold`]).
pub fn fold_mask(names: &[&str], fold: usize, folds: usize) -> Vec<bool> {
    assert!(fold < folds, "fold {fold} of {folds}");
    let mut by_breed: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, name) in names.iter().enumerate() {
        by_breed.entry(breed_of(name)).or_default().push(i);
    }
    let bound = |k: usize, n: usize| ((k * n) as f64 / folds as f64).round() as usize;
    let mut mask = vec![false; names.len()];
    for members in by_breed.values_mut() {
        members.sort_by_key(|&i| (fnv1a_64(names[i].as_bytes()), names[i]));
        let n = members.len();
        for &i in &members[bound(fold, n)..bound(fold + 1, n)] {
            mask[i] = true;
        }
    }
    mask
}

/// The path of a split file under a dataset root.
pub(crate) fn split_path(root: &Path, split: Split) -> PathBuf {
    root.join("annotations").join(split.file_name())
}

fn parse_line(line: &str, path: &Path, line_no: usize) -> Result<SplitEntry, DataError> {
    let malformed = |reason: String| DataError::MalformedLine {
        path: path.to_path_buf(),
        line: line_no,
        text: line.to_string(),
        reason,
    };
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.len() != 4 {
        return Err(malformed(format!(
            "expected 4 fields `NAME CLASSID SPECIES BREEDID`, found {}",
            fields.len()
        )));
    }
    let name = fields[0];
    if name.contains(['/', '\\']) || name == "." || name == ".." {
        return Err(malformed(format!(
            "name {name:?} must be a plain file stem"
        )));
    }
    let number = |field: &str, what: &str| {
        field
            .parse::<u32>()
            .map_err(|_| malformed(format!("{what} {field:?} is not a non-negative integer")))
    };
    Ok(SplitEntry {
        name: name.to_string(),
        class_id: number(fields[1], "CLASSID")?,
        species: number(fields[2], "SPECIES")?,
        breed_id: number(fields[3], "BREEDID")?,
        line: line_no,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> &'static Path {
        Path::new("annotations/trainval.txt")
    }

    #[test]
    fn parses_official_lines_comments_blanks_and_crlf() {
        let text =
            "#Image CLASS-ID SPECIES BREED ID\r\nAbyssinian_100 1 1 1\r\n\r\n  \nBengal_1 6 1 6\n";
        let (entries, skipped) = parse_split(text, p(), LoadPolicy::Strict).expect("parses");
        assert!(skipped.is_empty());
        assert_eq!(entries.len(), 2);
        assert_eq!(
            entries[0],
            SplitEntry {
                name: "Abyssinian_100".into(),
                class_id: 1,
                species: 1,
                breed_id: 1,
                line: 2
            }
        );
        assert_eq!(entries[1].name, "Bengal_1");
        assert_eq!(entries[1].line, 5);
    }

    #[test]
    fn malformed_line_strict_names_file_and_line() {
        let text = "a 1 1 1\nb 1 x 1\n";
        let err = parse_split(text, p(), LoadPolicy::Strict).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("trainval.txt:2"), "{msg}");
        assert!(msg.contains("SPECIES"), "{msg}");
    }

    #[test]
    fn malformed_lines_lenient_are_counted() {
        let text = "a 1 1 1\nb\nc 1 1 1 extra\n../etc 1 1 1\nd 2 2 2\n";
        let (entries, skipped) = parse_split(text, p(), LoadPolicy::Lenient).expect("parses");
        assert_eq!(entries.len(), 2);
        assert_eq!(skipped.len(), 3);
    }

    #[test]
    fn duplicates_are_an_error_or_skipped() {
        let text = "a 1 1 1\nb 1 1 1\na 1 1 1\n";
        let err = parse_split(text, p(), LoadPolicy::Strict).unwrap_err();
        assert!(matches!(
            err,
            DataError::DuplicateName {
                line: 3,
                first_line: 1,
                ..
            }
        ));
        let (entries, skipped) = parse_split(text, p(), LoadPolicy::Lenient).expect("parses");
        assert_eq!(entries.len(), 2);
        assert_eq!(skipped.len(), 1);
    }

    #[test]
    fn empty_split_is_an_error_under_both_policies() {
        for policy in [LoadPolicy::Strict, LoadPolicy::Lenient] {
            let err = parse_split("# only a comment\n\n", p(), policy).unwrap_err();
            assert!(matches!(err, DataError::EmptySplit { .. }), "{err}");
        }
    }

    #[test]
    fn breeds_come_from_the_numeric_suffix() {
        assert_eq!(breed_of("american_bulldog_12"), "american_bulldog");
        assert_eq!(breed_of("Abyssinian_100"), "Abyssinian");
        assert_eq!(breed_of("synth-cat-001"), "synth-cat");
        assert_eq!(breed_of("Bengal"), "Bengal");
        assert_eq!(breed_of("great_pyrenees"), "great_pyrenees");
        assert_eq!(breed_of("scene_7b"), "scene_7b");
        assert_eq!(breed_of("trailing_"), "trailing_");
        assert_eq!(breed_of("_12"), "_12");
        assert_eq!(breed_of("x-y_"), "x-y_");
    }

    #[test]
    fn fnv1a_matches_the_reference_values() {
        // Published FNV-1a 64 test vectors.
        assert_eq!(fnv1a_64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a_64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a_64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    fn names(breed: &str, n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("{breed}_{i}")).collect()
    }

    #[test]
    fn mask_is_stable_and_independent_of_order_and_other_breeds() {
        let mut all: Vec<String> = names("beagle", 200);
        all.extend(names("Bengal", 37));
        all.extend(names("pug", 3));
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        let mask = validation_mask(&refs, 0.15);
        assert_eq!(mask, validation_mask(&refs, 0.15));
        let chosen = |names: &[&str], mask: &[bool]| -> Vec<String> {
            let mut v: Vec<String> = names
                .iter()
                .zip(mask)
                .filter(|(_, &m)| m)
                .map(|(n, _)| n.to_string())
                .collect();
            v.sort();
            v
        };
        // A shuffled (here: reversed and interleaved) order picks the same names.
        let mut shuffled = refs.clone();
        shuffled.reverse();
        shuffled.rotate_left(17);
        assert_eq!(
            chosen(&refs, &mask),
            chosen(&shuffled, &validation_mask(&shuffled, 0.15))
        );
        // The beagles alone pick the same beagles.
        let beagles: Vec<&str> = refs[..200].to_vec();
        assert_eq!(&validation_mask(&beagles, 0.15)[..], &mask[..200]);
        // 15% per breed, rounded per breed: 30 of 200, round(5.55) = 6 of 37,
        // round(0.45) = 0 of 3.
        let count = |r: std::ops::Range<usize>| mask[r].iter().filter(|&&m| m).count();
        assert_eq!(count(0..200), 30);
        assert_eq!(count(200..237), 6);
        assert_eq!(count(237..240), 0);
    }

    #[test]
    fn tiny_breeds_round_per_breed() {
        let cases = [
            (1, 0.15, 0),
            (2, 0.15, 0),
            (4, 0.15, 1),
            (3, 0.5, 2),
            (5, 0.0, 0),
        ];
        for (n, fraction, expected) in cases {
            let all = names("pug", n);
            let refs: Vec<&str> = all.iter().map(String::as_str).collect();
            let got = validation_mask(&refs, fraction)
                .iter()
                .filter(|&&m| m)
                .count();
            assert_eq!(got, expected, "{n} names at {fraction}");
        }
        // More validation never drops a name already chosen.
        let all = names("pug", 50);
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        let small = validation_mask(&refs, 0.1);
        let large = validation_mask(&refs, 0.3);
        assert!(small.iter().zip(&large).all(|(&s, &l)| !s || l));
    }

    #[test]
    fn folds_are_deterministic_disjoint_covering_and_stratified() {
        let mut all: Vec<String> = names("beagle", 100);
        all.extend(names("Bengal", 23));
        all.extend(names("pug", 10));
        all.extend(names("Sphynx", 3));
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        let folds = 5;
        let masks: Vec<Vec<bool>> = (0..folds).map(|k| fold_mask(&refs, k, folds)).collect();
        assert_eq!(masks[2], fold_mask(&refs, 2, folds), "deterministic");
        for i in 0..refs.len() {
            let n = masks.iter().filter(|m| m[i]).count();
            assert_eq!(n, 1, "{} is in {n} folds", refs[i]);
        }
        for breed in ["beagle", "Bengal", "pug", "Sphynx"] {
            let size = refs.iter().filter(|n| breed_of(n) == breed).count();
            for mask in &masks {
                let in_fold = refs
                    .iter()
                    .zip(mask)
                    .filter(|(n, &m)| m && breed_of(n) == breed)
                    .count();
                let share = size as f64 / folds as f64;
                assert!(
                    (in_fold as f64 - share).abs() < 1.0,
                    "{breed}: {in_fold} of {size}"
                );
            }
        }
        // Fold 0 of N is the hash split at fraction 1 / N.
        assert_eq!(masks[0], validation_mask(&refs, 1.0 / folds as f64));
        // The order of the names does not matter.
        let mut shuffled = refs.clone();
        shuffled.reverse();
        let back: Vec<&str> = shuffled
            .iter()
            .zip(fold_mask(&shuffled, 3, folds))
            .filter_map(|(&n, m)| m.then_some(n))
            .collect();
        let forward: Vec<&str> = refs
            .iter()
            .zip(&masks[3])
            .filter_map(|(&n, &m)| m.then_some(n))
            .collect();
        let mut back = back;
        back.sort_unstable();
        let mut forward = forward;
        forward.sort_unstable();
        assert_eq!(back, forward);
    }
}
