//! Split files: `annotations/trainval.txt` and `annotations/test.txt`.
//!
//! Each line is `NAME CLASSID SPECIES BREEDID`, fields separated by
//! whitespace. Lines starting with `#` are comments, blank lines are ignored,
//! and Windows line endings (`\r\n`) are accepted.

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
}
