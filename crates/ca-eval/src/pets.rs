//! Glue between the Oxford-IIIT Pet loader (`ca-data`) and the trainer
//! (`ca-sched`): a [`TrainData`] over a loaded split, and where the data
//! live by default.

use std::path::{Path, PathBuf};

use ca_data::{Augment, PetsDataset};
use ca_sched::{SchedError, TrainData};
use candle_core::{Device, Tensor};
use rand::{rngs::StdRng, SeedableRng};

/// A loaded split with the augmentation applied to its training batches.
pub struct PetsTrainData {
    /// The split, decoded and resized.
    pub dataset: PetsDataset,
    /// Augmentation drawn per (sample, seed): the same pair, the same image.
    pub augment: Augment,
}

impl TrainData for PetsTrainData {
    fn len(&self) -> usize {
        self.dataset.len()
    }

    fn batch(&self, items: &[(usize, u64)], device: &Device) -> ca_sched::Result<(Tensor, Tensor)> {
        let data_err = |e: ca_data::DataError| SchedError::data(e);
        let mut images = Vec::with_capacity(items.len());
        let mut labels = Vec::with_capacity(items.len());
        for &(index, seed) in items {
            let mut rng = StdRng::seed_from_u64(seed);
            let b = self
                .dataset
                .batch(&[index], &self.augment, &mut rng, device)
                .map_err(data_err)?;
            images.push(b.images);
            labels.push(b.labels);
        }
        Ok((Tensor::cat(&images, 0)?, Tensor::cat(&labels, 0)?))
    }
}

/// Where the pet data come from, and whether it is the bundled fixture.
#[derive(Debug, Clone, PartialEq)]
pub struct DataSource {
    /// The dataset root (official layout).
    pub root: PathBuf,
    /// True when nothing else was found and the bundled synthetic set is used.
    pub is_fixture: bool,
}

impl DataSource {
    /// What a tool says when it falls back to the bundled synthetic set.
    pub fn fixture_note(&self) -> String {
        format!(
            "note: no data given, training on the bundled synthetic set {}.\n      \
             For the real Oxford-IIIT Pet set pass --data DIR (or set $CA_PETS_DIR); \
             it is available from https://www.robots.ox.ac.uk/~vgg/data/pets/",
            self.root.display()
        )
    }
}

/// The bundled synthetic set, relative to the repository root.
pub const FIXTURE_DIR: &str = "fixtures/pets-synthetic";
/// The conventional location of the real set, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = "data/oxford-iiit-pet";
/// Environment variable naming the real set.
pub const DATA_ENV: &str = "CA_PETS_DIR";

/// Resolves the data directory: `explicit` (a flag), else `$CA_PETS_DIR`,
/// else `data/oxford-iiit-pet` if it exists, else the bundled fixture.
pub fn resolve_data_dir(explicit: Option<&Path>) -> DataSource {
    if let Some(p) = explicit {
        return DataSource {
            root: p.to_path_buf(),
            is_fixture: false,
        };
    }
    if let Some(p) = std::env::var_os(DATA_ENV).filter(|v| !v.is_empty()) {
        return DataSource {
            root: PathBuf::from(p),
            is_fixture: false,
        };
    }
    if Path::new(DEFAULT_DATA_DIR).is_dir() {
        return DataSource {
            root: PathBuf::from(DEFAULT_DATA_DIR),
            is_fixture: false,
        };
    }
    DataSource {
        root: repository_root().join(FIXTURE_DIR),
        is_fixture: true,
    }
}

/// The workspace's root folder (this crate lives in `crates/ca-eval`).
fn repository_root() -> &'static Path {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    crate_dir.ancestors().nth(2).unwrap_or(crate_dir)
}
