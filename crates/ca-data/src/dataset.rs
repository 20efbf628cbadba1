//! Loading one split of an Oxford-IIIT Pet layout into memory.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::decode::{load_label_map, load_rgb};
use crate::error::DataError;
use crate::resize::{image_to_chw, labels_nearest};
use crate::split::{read_split, split_path, validation_mask, Split, SplitEntry};

/// What to do with a bad file or line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LoadPolicy {
    /// The first bad file or line (in split-file order) stops loading with an
    /// error naming it.
    #[default]
    Strict,
    /// Bad files and lines are skipped and listed in the [`LoadReport`].
    Lenient,
}

/// How to load a split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOptions {
    /// Side of the square images, in pixels (default 48).
    pub image_size: usize,
    /// Side of the square label maps, in pixels (default 48). The
    /// high-resolution path sets it to the image size of its output.
    pub label_size: usize,
    /// What to do with bad input (default [`LoadPolicy::Strict`]).
    pub policy: LoadPolicy,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            image_size: 48,
            label_size: 48,
            policy: LoadPolicy::Strict,
        }
    }
}

impl LoadOptions {
    /// Options with images and labels both `size x size`, strict policy.
    pub fn square(size: usize) -> Self {
        LoadOptions {
            image_size: size,
            label_size: size,
            ..LoadOptions::default()
        }
    }

    /// Checks that both sizes are in 1..=4096.
    pub fn validate(&self) -> Result<(), DataError> {
        for (name, value) in [
            ("image_size", self.image_size),
            ("label_size", self.label_size),
        ] {
            if value == 0 || value > 4096 {
                return Err(DataError::InvalidOption(ca_core::InvalidValue {
                    name,
                    value: value.to_string(),
                    reason: "must be between 1 and 4096 pixels".to_string(),
                }));
            }
        }
        Ok(())
    }
}

/// One decoded, resized sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The sample name from the split file.
    pub name: String,
    /// The image as `[3, S, S]` f32 values in [0, 1] (RGB, channel-major),
    /// `S = image_size`. No mean or standard deviation is subtracted.
    pub image: Vec<f32>,
    /// The label map as `[L, L]` class ids (0 background, 1 object,
    /// 2 boundary), `L = label_size`.
    pub label: Vec<u8>,
}

/// What happened while loading a split.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// The split file that was read.
    pub split_file: PathBuf,
    /// How many samples were loaded.
    pub loaded: usize,
    /// Every skipped line or sample, with the reason (lenient policy only;
    /// always empty under the strict policy).
    pub skipped: Vec<DataError>,
}

impl fmt::Display for LoadReport {
    /// A summary: one line of counts, then one line per skipped item.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: loaded {} samples, skipped {}",
            self.split_file.display(),
            self.loaded,
            self.skipped.len()
        )?;
        for e in &self.skipped {
            write!(f, "\n  skipped: {e}")?;
        }
        Ok(())
    }
}

/// One split of a dataset, decoded and resized once and kept in memory.
#[derive(Debug)]
pub struct PetsDataset {
    samples: Vec<Sample>,
    image_size: usize,
    label_size: usize,
    report: LoadReport,
}

impl PetsDataset {
    /// Loads the split `split` of the Oxford-IIIT Pet layout under `root`:
    /// `root/annotations/{trainval,test}.txt` lists the samples, each read
    /// from `root/images/NAME.jpg` and `root/annotations/trimaps/NAME.png`
    /// (decoded by content) and resized to the sizes of `options`. Files not
    /// listed are never opened. Samples keep the split-file order; decoding
    /// runs in parallel with the `rayon` feature.
    ///
    /// Errors under both policies: invalid options, no `annotations/`
    /// directory, missing or empty split file, no sample loaded. Every other
    /// problem is an error under [`LoadPolicy::Strict`] and a skip recorded
    /// in [`PetsDataset::report`] under [`LoadPolicy::Lenient`].
    pub fn open(root: &Path, split: Split, options: &LoadOptions) -> Result<Self, DataError> {
        options.validate()?;
        if !root.join("annotations").is_dir() {
            return Err(DataError::NoAnnotations {
                root: root.to_path_buf(),
            });
        }
        let split_file = split_path(root, split);
        let (entries, mut skipped) = read_split(&split_file, options.policy)?;
        let results = load_all(root, &entries, options);
        let mut samples = Vec::with_capacity(results.len());
        for result in results {
            match result {
                Ok(sample) => samples.push(sample),
                Err(e) if options.policy == LoadPolicy::Lenient => skipped.push(e),
                Err(e) => return Err(e),
            }
        }
        if samples.is_empty() {
            return Err(DataError::NoSamples {
                path: split_file,
                skipped: skipped.len(),
            });
        }
        let report = LoadReport {
            split_file,
            loaded: samples.len(),
            skipped,
        };
        Ok(PetsDataset {
            samples,
            image_size: options.image_size,
            label_size: options.label_size,
            report,
        })
    }

    /// Builds a dataset from samples already in memory (e.g. generated ones),
    /// checking every buffer against the sizes of `options`.
    pub fn from_samples(samples: Vec<Sample>, options: &LoadOptions) -> Result<Self, DataError> {
        options.validate()?;
        let (s, l) = (options.image_size, options.label_size);
        for sample in &samples {
            if sample.image.len() != 3 * s * s || sample.label.len() != l * l {
                return Err(DataError::InvalidOption(ca_core::InvalidValue {
                    name: "samples",
                    value: sample.name.clone(),
                    reason: format!(
                        "buffers hold {} image and {} label values, expected {} and {}",
                        sample.image.len(),
                        sample.label.len(),
                        3 * s * s,
                        l * l
                    ),
                }));
            }
            if let Some(&bad) = sample
                .label
                .iter()
                .find(|&&c| usize::from(c) >= crate::NUM_CLASSES)
            {
                return Err(DataError::InvalidOption(ca_core::InvalidValue {
                    name: "samples",
                    value: sample.name.clone(),
                    reason: format!("label value {bad} is not a class id"),
                }));
            }
        }
        let report = LoadReport {
            loaded: samples.len(),
            ..LoadReport::default()
        };
        Ok(PetsDataset {
            samples,
            image_size: s,
            label_size: l,
            report,
        })
    }

    /// Number of loaded samples.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether no sample is loaded (only possible via [`Self::from_samples`]).
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The `index`-th sample, in split-file order.
    ///
    /// # Panics
    /// If `index >= self.len()`; see [`Self::samples`] for checked access.
    pub fn sample(&self, index: usize) -> &Sample {
        &self.samples[index]
    }

    /// All samples, in split-file order.
    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }

    /// Side of the square images.
    pub fn image_size(&self) -> usize {
        self.image_size
    }

    /// Side of the square label maps.
    pub fn label_size(&self) -> usize {
        self.label_size
    }

    /// What was loaded and skipped.
    pub fn report(&self) -> &LoadReport {
        &self.report
    }

    /// The samples for which `keep` is true, in the same order, with the same
    /// image and label sizes. The new report names the same split file and
    /// counts the kept samples as loaded; its skip list is empty (the skips
    /// stay in this dataset's report).
    pub fn subset(&self, keep: impl Fn(&Sample) -> bool) -> PetsDataset {
        let samples: Vec<Sample> = self.samples.iter().filter(|s| keep(s)).cloned().collect();
        PetsDataset {
            report: LoadReport {
                split_file: self.report.split_file.clone(),
                loaded: samples.len(),
                skipped: Vec::new(),
            },
            samples,
            image_size: self.image_size,
            label_size: self.label_size,
        }
    }

    /// Per-channel mean and (population) standard deviation of the images,
    /// `([mean_r, mean_g, mean_b], [std_r, std_g, std_b])` in pixel units,
    /// over every pixel of every sample, accumulated in f64. An empty
    /// dataset gives means 0 and deviations 0.
    pub fn channel_stats(&self) -> ([f32; 3], [f32; 3]) {
        let (mut sum, mut sq, mut n) = ([0f64; 3], [0f64; 3], 0usize);
        let plane = self.image_size * self.image_size;
        for sample in &self.samples {
            for (c, values) in sample.image.chunks_exact(plane).enumerate() {
                for &v in values {
                    sum[c] += f64::from(v);
                    sq[c] += f64::from(v) * f64::from(v);
                }
            }
            n += plane;
        }
        let (mut mean, mut std) = ([0f32; 3], [0f32; 3]);
        if n > 0 {
            for c in 0..3 {
                let m = sum[c] / n as f64;
                mean[c] = m as f32;
                std[c] = (sq[c] / n as f64 - m * m).max(0.0).sqrt() as f32;
            }
        }
        (mean, std)
    }

    /// Splits off a fixed validation part: returns (training part,
    /// validation part), both in split-file order, chosen by
    /// [`validation_mask`] (per breed, by a fixed hash of the name, so the
    /// same names on every run). `fraction` is the share of each breed held
    /// out, in [0, 1); 0 gives an empty validation part. Other values are an
    /// error naming `val_fraction` and the value.
    pub fn split_validation(&self, fraction: f64) -> Result<(PetsDataset, PetsDataset), DataError> {
        if !(0.0..1.0).contains(&fraction) {
            return Err(DataError::InvalidOption(ca_core::InvalidValue {
                name: "val_fraction",
                value: fraction.to_string(),
                reason: "must be in [0, 1)".to_string(),
            }));
        }
        Ok(self.split_by(|names| validation_mask(names, fraction)))
    }

    /// Splits off fold `fold` of `folds` (0-based) for validation, for a
    /// k-fold estimate: returns (the other folds, this fold), both in
    /// split-file order, chosen by [`crate::fold_mask`] (per breed, by the
    /// same fixed hash as [`PetsDataset::split_validation`]; fold 0 of `N` is
    /// its split at fraction `1 / N`). `folds` must be 2 to 100 and `fold`
    /// below it, else an error naming `val_fold`.
    pub fn split_fold(
        &self,
        fold: usize,
        folds: usize,
    ) -> Result<(PetsDataset, PetsDataset), DataError> {
        if !(2..=100).contains(&folds) || fold >= folds {
            return Err(DataError::InvalidOption(ca_core::InvalidValue {
                name: "val_fold",
                value: format!("{fold}/{folds}"),
                reason: "must be K/N with N from 2 to 100 and K from 0 to N - 1".to_string(),
            }));
        }
        Ok(self.split_by(|names| crate::split::fold_mask(names, fold, folds)))
    }

    /// (the samples `mask` leaves out, those it flags), in split-file order.
    fn split_by(&self, mask: impl FnOnce(&[&str]) -> Vec<bool>) -> (PetsDataset, PetsDataset) {
        let names: Vec<&str> = self.samples.iter().map(|s| s.name.as_str()).collect();
        let flagged: std::collections::HashSet<&str> = names
            .iter()
            .zip(mask(&names))
            .filter_map(|(&name, v)| v.then_some(name))
            .collect();
        let is_flagged = |s: &Sample| flagged.contains(s.name.as_str());
        (self.subset(|s| !is_flagged(s)), self.subset(is_flagged))
    }
}

fn load_all(
    root: &Path,
    entries: &[SplitEntry],
    options: &LoadOptions,
) -> Vec<Result<Sample, DataError>> {
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        entries
            .par_iter()
            .map(|e| load_sample(root, e, options))
            .collect()
    }
    #[cfg(not(feature = "rayon"))]
    {
        entries
            .iter()
            .map(|e| load_sample(root, e, options))
            .collect()
    }
}

/// The image path of sample `name` under `root`.
pub fn image_path(root: &Path, name: &str) -> PathBuf {
    root.join("images").join(format!("{name}.jpg"))
}

/// The trimap path of sample `name` under `root`.
pub fn trimap_path(root: &Path, name: &str) -> PathBuf {
    root.join("annotations")
        .join("trimaps")
        .join(format!("{name}.png"))
}

fn load_sample(
    root: &Path,
    entry: &SplitEntry,
    options: &LoadOptions,
) -> Result<Sample, DataError> {
    let name = &entry.name;
    let image_file = image_path(root, name);
    let trimap_file = trimap_path(root, name);
    let missing = |e: DataError, trimap: bool| match e {
        DataError::Io(ca_core::PathError { path, source })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            if trimap {
                DataError::MissingTrimap {
                    name: name.clone(),
                    path,
                }
            } else {
                DataError::MissingImage {
                    name: name.clone(),
                    path,
                }
            }
        }
        other => other,
    };
    let image = load_rgb(&image_file).map_err(|e| missing(e, false))?;
    let labels = load_label_map(&trimap_file).map_err(|e| missing(e, true))?;
    if image.dimensions() != labels.dimensions() {
        return Err(DataError::SizeMismatch {
            name: name.clone(),
            image_path: image_file,
            image_size: image.dimensions(),
            trimap_path: trimap_file,
            trimap_size: labels.dimensions(),
        });
    }
    Ok(Sample {
        name: name.clone(),
        image: image_to_chw(&image, options.image_size),
        label: labels_nearest(&labels, options.label_size),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_validate_names_the_value() {
        assert!(LoadOptions::default().validate().is_ok());
        let err = LoadOptions {
            image_size: 0,
            ..LoadOptions::default()
        }
        .validate()
        .unwrap_err();
        assert!(err.to_string().contains("image_size = 0"), "{err}");
        let err = LoadOptions {
            label_size: 0,
            ..LoadOptions::default()
        }
        .validate()
        .unwrap_err();
        assert!(err.to_string().contains("label_size = 0"), "{err}");
    }

    #[test]
    fn channel_stats_are_per_channel() {
        // Two 1x1 samples: R 0.2 and 0.4, G 0.5 twice, B 0 and 1.
        let sample = |name: &str, rgb: [f32; 3]| Sample {
            name: name.into(),
            image: rgb.to_vec(),
            label: vec![0],
        };
        let samples = vec![sample("a", [0.2, 0.5, 0.0]), sample("b", [0.4, 0.5, 1.0])];
        let ds = PetsDataset::from_samples(samples, &LoadOptions::square(1)).expect("valid");
        let (mean, std) = ds.channel_stats();
        let close = |a: f32, b: f32| (a - b).abs() < 1e-6;
        assert!(
            close(mean[0], 0.3) && close(mean[1], 0.5) && close(mean[2], 0.5),
            "{mean:?}"
        );
        assert!(
            close(std[0], 0.1) && close(std[1], 0.0) && close(std[2], 0.5),
            "{std:?}"
        );
    }

    #[test]
    fn from_samples_checks_buffers() {
        let good = Sample {
            name: "a".into(),
            image: vec![0.0; 3 * 4],
            label: vec![0, 1, 2, 0],
        };
        let opts = LoadOptions::square(2);
        let ds = PetsDataset::from_samples(vec![good.clone()], &opts).expect("valid");
        assert_eq!(ds.len(), 1);
        assert_eq!(ds.sample(0), &good);
        let bad = Sample {
            label: vec![0, 1, 2, 3],
            ..good.clone()
        };
        assert!(PetsDataset::from_samples(vec![bad], &opts).is_err());
        let short = Sample {
            image: vec![0.0; 3],
            ..good
        };
        assert!(PetsDataset::from_samples(vec![short], &opts).is_err());
    }

    #[test]
    fn report_lists_skips() {
        let report = LoadReport {
            split_file: "ann/test.txt".into(),
            loaded: 2,
            skipped: vec![DataError::EmptySplit { path: "x".into() }],
        };
        let text = report.to_string();
        assert!(
            text.starts_with("ann/test.txt: loaded 2 samples, skipped 1"),
            "{text}"
        );
        assert!(
            text.contains("skipped: x: split file lists no samples"),
            "{text}"
        );
    }

    fn pets(names: &[String]) -> PetsDataset {
        let samples = names
            .iter()
            .map(|name| Sample {
                name: name.clone(),
                image: vec![0.5; 3],
                label: vec![1],
            })
            .collect();
        PetsDataset::from_samples(samples, &LoadOptions::square(1)).expect("valid")
    }

    #[test]
    fn split_validation_is_a_disjoint_cover_in_order() -> Result<(), DataError> {
        let names: Vec<String> = (1..=60)
            .map(|i| format!("{}_{i}", ["pug", "Bengal", "boxer"][i % 3]))
            .collect();
        let ds = pets(&names);
        let (train, val) = ds.split_validation(0.25)?;
        assert_eq!(train.len() + val.len(), ds.len());
        assert_eq!(val.len(), 15);
        assert_eq!(val.report().loaded, 15);
        assert_eq!(train.report().loaded, 45);
        assert_eq!((val.image_size(), val.label_size()), (1, 1));
        let pos = |n: &str| names.iter().position(|m| m == n).expect("known name");
        for part in [&train, &val] {
            let order: Vec<usize> = part.samples().iter().map(|s| pos(&s.name)).collect();
            assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
        }
        for s in val.samples() {
            assert!(
                train.samples().iter().all(|t| t.name != s.name),
                "{}",
                s.name
            );
        }
        let (again, _) = ds.split_validation(0.25)?;
        assert_eq!(again.samples(), train.samples());
        let (all, none) = ds.split_validation(0.0)?;
        assert_eq!((all.len(), none.len()), (60, 0));
        assert!(none.is_empty());
        Ok(())
    }

    #[test]
    fn split_validation_rejects_bad_fractions() {
        let ds = pets(&["pug_1".to_string()]);
        for bad in [1.0, 1.5, -0.1, f64::NAN] {
            let err = ds.split_validation(bad).unwrap_err().to_string();
            assert!(err.contains(&format!("val_fraction = {bad}")), "{err}");
        }
    }

    #[test]
    fn subset_keeps_what_is_asked() {
        let names: Vec<String> = (1..=5).map(|i| format!("pug_{i}")).collect();
        let ds = pets(&names);
        let odd = ds.subset(|s| s.name.ends_with(['1', '3', '5']));
        let kept: Vec<&str> = odd.samples().iter().map(|s| s.name.as_str()).collect();
        assert_eq!(kept, ["pug_1", "pug_3", "pug_5"]);
        assert_eq!(odd.report().loaded, 3);
        assert!(ds.subset(|_| false).is_empty());
    }
}
