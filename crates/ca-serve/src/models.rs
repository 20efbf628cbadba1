//! The models folder: the only place models are read from. A request names
//! a model by the stem of a `*.safetensors` file that the folder listed at
//! start-up or at the last listing (`GET /api/models`); the path read is
//! the folder joined with the listed file name, never text from a request.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use ca_model::{AnyModel, MetricsRecord};
use candle_core::Device;

use crate::error::{ApiError, ServeError};

/// Longest model name accepted.
pub const MAX_MODEL_NAME: usize = 100;

/// The extension of model files.
const MODEL_EXTENSION: &str = "safetensors";

/// Checks that `name` can only be a model name, not a path: 1 to
/// [`MAX_MODEL_NAME`] characters of ASCII letters, digits, `-`, `_` and
/// `.`, not starting with `.` and without `..` (so no `/`, `\`, `..` or
/// drive letter gets near the file system). The error is a 400.
pub fn check_model_name(name: &str) -> Result<(), ApiError> {
    let shown: String = name.chars().take(MAX_MODEL_NAME).collect();
    let reject = |why: &str| {
        Err(ApiError::bad_request(format!(
            "invalid model name '{}': {why}",
            shown.escape_default()
        )))
    };
    if name.is_empty() {
        return reject("empty");
    }
    if name.len() > MAX_MODEL_NAME {
        return reject(&format!("longer than {MAX_MODEL_NAME} characters"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return reject(&format!(
            "'{}' is not allowed (letters, digits, '-', '_' and '.' only)",
            c.escape_default()
        ));
    }
    if name.starts_with('.') || name.contains("..") {
        return reject("no leading '.' and no '..'");
    }
    Ok(())
}

/// A model loaded from the models folder.
#[derive(Debug)]
pub struct LoadedModel {
    /// Its name (the file stem).
    pub name: String,
    /// The model, on the CPU.
    pub model: AnyModel,
    /// The square image size in pixels it was trained at: the colony's grid.
    pub image_size: usize,
}

/// What the page's model list says of a model: its size and, when a
/// `NAME.metrics.jsonl` lies beside it, its validation IoU at step 40.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ModelSummary {
    /// The name (the file stem).
    pub name: String,
    /// Parameters the optimizer trained.
    pub params: usize,
    /// Stride-2 levels between image and state (0: one cell per pixel).
    pub levels: usize,
    /// Whether the model standardises the image (`CellConfig::image_norm`).
    pub image_norm: bool,
    /// The coarse levels of a coarse-to-fine model (`CellConfig::cascade`),
    /// e.g. `1/4 x 20, 1/2 x 10`; `None` for a plain colony.
    pub cascade: Option<String>,
    /// Validation object IoU at CA step 40, from the metrics file.
    pub val_object: Option<f64>,
    /// Validation boundary IoU at CA step 40, from the metrics file.
    pub val_boundary: Option<f64>,
}

/// The validation IoU `(object, boundary)` at step 40 in the last
/// `final_val` record of a training's `metrics.jsonl`.
fn final_validation(metrics: &str) -> Option<(f64, f64)> {
    let [object, boundary] = metrics
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<MetricsRecord>(l).ok())
        .find_map(|r| r.final_val)?
        .at(40, ["object", "boundary"])?;
    (object.is_finite() && boundary.is_finite()).then_some((object, boundary))
}

/// A loaded model and its file's modification time at load.
type Loaded = (Option<SystemTime>, Arc<LoadedModel>);

/// The models folder's listing and the models loaded from it.
#[derive(Debug)]
pub struct ModelRegistry {
    dir: PathBuf,
    /// Name to file name, from the last listing.
    listed: Mutex<BTreeMap<String, String>>,
    /// Name to (modification time at load, model): a file replaced on disk
    /// is loaded again.
    loaded: Mutex<HashMap<String, Loaded>>,
}

impl ModelRegistry {
    /// Lists `dir`.
    pub fn open(dir: &Path) -> Result<Self, ServeError> {
        let registry = ModelRegistry {
            dir: dir.to_path_buf(),
            listed: Mutex::new(BTreeMap::new()),
            loaded: Mutex::new(HashMap::new()),
        };
        registry.refresh().map_err(|source| ServeError::ModelsDir {
            dir: dir.to_path_buf(),
            source,
        })?;
        Ok(registry)
    }

    /// The models folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Lists the folder again: regular files (not links) named
    /// `NAME.safetensors` with a valid `NAME`. Returns the names, sorted.
    pub fn refresh(&self) -> std::io::Result<Vec<String>> {
        let mut found = BTreeMap::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            if !entry.file_type()?.is_file() {
                continue;
            }
            let file_name = entry.file_name();
            let Some(file_name) = file_name.to_str() else {
                continue;
            };
            let Some(stem) = file_name
                .strip_suffix(MODEL_EXTENSION)
                .and_then(|s| s.strip_suffix('.'))
            else {
                continue;
            };
            if check_model_name(stem).is_ok() {
                found.insert(stem.to_string(), file_name.to_string());
            }
        }
        let names = found.keys().cloned().collect();
        *self.listed.lock().unwrap_or_else(PoisonError::into_inner) = found;
        Ok(names)
    }

    /// The names of the last listing, sorted.
    pub fn names(&self) -> Vec<String> {
        self.listed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect()
    }

    /// The summary of model `name` (loading it when it is not loaded).
    pub fn summary(&self, name: &str) -> Result<ModelSummary, ApiError> {
        let model = self.get(name)?;
        let metrics = self.dir.join(format!("{name}.metrics.jsonl"));
        let validation = std::fs::read_to_string(metrics)
            .ok()
            .and_then(|m| final_validation(&m));
        Ok(ModelSummary {
            name: name.to_string(),
            params: model.model.trainable_params(),
            levels: model.model.levels(),
            image_norm: model.model.rule().config().image_norm.is_some(),
            cascade: model
                .model
                .rule()
                .config()
                .cascade
                .as_ref()
                .map(|c| c.describe()),
            val_object: validation.map(|v| v.0),
            val_boundary: validation.map(|v| v.1),
        })
    }

    /// The file of the listed model `name`: 400 for a name that cannot be a
    /// model's, 404 for one the last listing did not hold.
    pub fn path_of(&self, name: &str) -> Result<PathBuf, ApiError> {
        check_model_name(name)?;
        let listed = self
            .listed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned();
        let file_name = listed.ok_or_else(|| {
            ApiError::not_found(format!(
                "unknown model '{name}' (available: {})",
                self.names().join(", ")
            ))
        })?;
        Ok(self.dir.join(file_name))
    }

    /// The model `name` (loaded on first use, and again when its file
    /// changed): 400 for a name that cannot be a model's, 404 for one not
    /// listed, 500 for a file that does not load. Blocking: reads the file.
    pub fn get(&self, name: &str) -> Result<Arc<LoadedModel>, ApiError> {
        let path = self.path_of(name)?;
        let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        let mut loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((at, model)) = loaded.get(name) {
            if *at == modified {
                return Ok(model.clone());
            }
        }
        let (model, image_size) = ca_model::load_model(&path, &Device::Cpu)
            .map_err(|e| ApiError::internal(format!("model '{name}' could not be loaded: {e}")))?;
        let model = Arc::new(LoadedModel {
            name: name.to_string(),
            model,
            image_size,
        });
        loaded.insert(name.to_string(), (modified, model.clone()));
        Ok(model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_final_validation_record_is_read() {
        let metrics = concat!(
            "{\"step\":1,\"loss\":1.0}\n",
            "{\"final_val\":{\"40\":{\"object\":0.5,\"boundary\":0.25}}}\n",
            "not json\n",
        );
        assert_eq!(final_validation(metrics), Some((0.5, 0.25)));
        assert_eq!(final_validation("{\"step\":1}"), None);
    }

    #[test]
    fn names_that_could_be_paths_are_rejected() {
        for ok in ["pets48", "pets-48_v2", "a.b"] {
            assert_eq!(check_model_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "../pets48",
            "..",
            "a/b",
            "a\\b",
            ".hidden",
            "a..b",
            "C:x",
            "a\0b",
            "pets 48",
            &"x".repeat(101),
        ] {
            let err = check_model_name(bad).unwrap_err();
            assert_eq!(err.status, axum::http::StatusCode::BAD_REQUEST, "{bad}");
            assert!(err.message.starts_with("invalid model name"), "{err}");
        }
    }
}
