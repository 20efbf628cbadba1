//! The page's files, and the static export of the page with its models
//! (`cellseg export-web`): one table, [`FILES`], that the server's routes
//! and the export both read, so that what a static host serves is what
//! `ca-serve` serves.
//!
//! The page runs the colony in the visitor's browser (WebGL2, the modules
//! of `static/colony/`) by default, reading the model files from
//! `models/NAME.safetensors` and their list from `models/index.json`
//! ([`models_index`]); with a server beside it, it can run the colony on
//! the server instead (the WebSocket of [`crate::session`]).

use std::path::{Path, PathBuf};

/// One file of the page: where it is served (relative to the page) and
/// with which content type.
#[derive(Debug, Clone, Copy)]
pub struct WebFile {
    /// The path under the page's folder, e.g. `colony/colony.js`.
    pub path: &'static str,
    /// The `Content-Type` it is served with.
    pub content_type: &'static str,
    /// The file's text.
    pub body: &'static str,
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

/// Every file of the page, the browser colony's modules and its debug
/// page included.
pub const FILES: &[WebFile] = &[
    WebFile {
        path: "index.html",
        content_type: HTML,
        body: include_str!("../static/index.html"),
    },
    WebFile {
        path: "app.js",
        content_type: JS,
        body: include_str!("../static/app.js"),
    },
    WebFile {
        path: "style.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../static/style.css"),
    },
    WebFile {
        path: "favicon.svg",
        content_type: "image/svg+xml",
        body: include_str!("../static/favicon.svg"),
    },
    WebFile {
        path: "colony/safetensors.js",
        content_type: JS,
        body: include_str!("../static/colony/safetensors.js"),
    },
    WebFile {
        path: "colony/model.js",
        content_type: JS,
        body: include_str!("../static/colony/model.js"),
    },
    WebFile {
        path: "colony/webgl.js",
        content_type: JS,
        body: include_str!("../static/colony/webgl.js"),
    },
    WebFile {
        path: "colony/shaders.js",
        content_type: JS,
        body: include_str!("../static/colony/shaders.js"),
    },
    WebFile {
        path: "colony/colony.js",
        content_type: JS,
        body: include_str!("../static/colony/colony.js"),
    },
    WebFile {
        path: "colony/settle.js",
        content_type: JS,
        body: include_str!("../static/colony/settle.js"),
    },
    WebFile {
        path: "colony/live.js",
        content_type: JS,
        body: include_str!("../static/colony/live.js"),
    },
    WebFile {
        path: "colony/debug.js",
        content_type: JS,
        body: include_str!("../static/colony/debug.js"),
    },
    WebFile {
        path: "colony/debug.html",
        content_type: HTML,
        body: include_str!("../static/colony/debug.html"),
    },
];

/// The file of [`FILES`] served at `path` (relative, no leading `/`).
pub fn file(path: &str) -> Option<&'static WebFile> {
    FILES.iter().find(|f| f.path == path)
}

/// The folder of the model files, relative to the page.
pub const MODELS_FOLDER: &str = "models";

/// The model list the page reads, `models/index.json`: the names (each
/// served as `models/NAME.safetensors`), the default, whether a server
/// stands behind the page (`server`: the switch to the server's colony is
/// offered only then) and `settling`, the rule of "settled after N steps"
/// ([`ca_core::Settling::default`], the server's), which the colony in the
/// browser follows too.
pub fn models_index(names: &[String], default: &str, server: bool) -> serde_json::Value {
    let rule = ca_core::Settling::default();
    serde_json::json!({
        "models": names,
        "default": default,
        "server": server,
        "settling": {
            "max_change": rule.max_change,
            "window": rule.window,
            "min_steps": rule.min_steps,
            "max_steps": rule.max_steps,
            "smoothing": rule.smoothing,
        },
    })
}

/// Why an export failed: the file or folder and the reason.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// A model to export is not a `NAME.safetensors` file with a valid name.
    #[error("{}: {reason}", path.display())]
    Model {
        /// The model file given.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ExportError + '_ {
    move |source| ExportError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The model name of a model file: the stem of `NAME.safetensors`, a name
/// [`crate::models::check_model_name`] accepts.
pub fn model_name(path: &Path) -> Result<String, ExportError> {
    let bad = |reason: String| ExportError::Model {
        path: path.to_path_buf(),
        reason,
    };
    let file = path
        .file_name()
        .and_then(|f| f.to_str())
        .ok_or_else(|| bad("not a file name".into()))?;
    let stem = file
        .strip_suffix(".safetensors")
        .ok_or_else(|| bad("expected a NAME.safetensors model file".into()))?;
    crate::models::check_model_name(stem).map_err(|e| bad(e.message))?;
    Ok(stem.to_string())
}

/// Writes the page into `dir` for a static file server: [`FILES`], the
/// model files `models` (copied to `models/NAME.safetensors`) and
/// `models/index.json` with the first model as the default and no server.
/// Creates `dir` when needed and overwrites the files it writes; returns
/// the files written.
///
/// # Errors
///
/// [`ExportError::Model`] for no model, a model file not named
/// `NAME.safetensors` or two of one name; [`ExportError::Io`] naming the
/// file that could not be read or written.
pub fn export(dir: &Path, models: &[PathBuf]) -> Result<Vec<PathBuf>, ExportError> {
    let mut names = Vec::new();
    for m in models {
        let name = model_name(m)?;
        if names.contains(&name) {
            return Err(ExportError::Model {
                path: m.clone(),
                reason: format!("a second model named '{name}'"),
            });
        }
        names.push(name);
    }
    let Some(default) = names.first().cloned() else {
        return Err(ExportError::Model {
            path: dir.to_path_buf(),
            reason: "no model to export: name at least one".into(),
        });
    };
    let mut written = Vec::new();
    let mut write = |path: PathBuf, bytes: &[u8]| -> Result<(), ExportError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::write(&path, bytes).map_err(io(&path))?;
        written.push(path);
        Ok(())
    };
    for f in FILES {
        write(dir.join(f.path), f.body.as_bytes())?;
    }
    let folder = dir.join(MODELS_FOLDER);
    for (m, name) in models.iter().zip(&names) {
        let bytes = std::fs::read(m).map_err(io(m))?;
        write(folder.join(format!("{name}.safetensors")), &bytes)?;
    }
    let index = models_index(&names, &default, false).to_string();
    write(folder.join("index.json"), index.as_bytes())?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_is_served_once_and_found_by_its_path() {
        for (i, f) in FILES.iter().enumerate() {
            assert!(!f.body.is_empty(), "{}", f.path);
            assert!(!f.path.starts_with('/') && !f.path.contains(".."));
            assert!(FILES[..i].iter().all(|g| g.path != f.path), "{}", f.path);
            assert_eq!(file(f.path).map(|g| g.path), Some(f.path));
        }
        assert!(file("colony/../index.html").is_none());
    }

    #[test]
    fn model_files_need_a_valid_name() {
        assert_eq!(
            model_name(Path::new("m/pets48.safetensors")).unwrap(),
            "pets48"
        );
        for bad in ["m/pets48.bin", "m/.x.safetensors", "m/a b.safetensors"] {
            let e = model_name(Path::new(bad)).unwrap_err().to_string();
            assert!(e.starts_with(bad), "{e}");
        }
    }

    #[test]
    fn export_writes_the_page_the_models_and_their_list() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        let model = src.join("tiny.safetensors");
        std::fs::write(&model, b"bytes").unwrap();
        let out = dir.path().join("site");
        let written = export(&out, std::slice::from_ref(&model)).unwrap();
        assert_eq!(written.len(), FILES.len() + 2);
        assert_eq!(
            std::fs::read(out.join("models/tiny.safetensors")).unwrap(),
            b"bytes"
        );
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("models/index.json")).unwrap()).unwrap();
        assert_eq!(index, models_index(&["tiny".into()], "tiny", false));
        assert!(out.join("colony/colony.js").is_file());
        let twice = export(&out, &[model.clone(), model])
            .unwrap_err()
            .to_string();
        assert!(twice.contains("a second model named 'tiny'"), "{twice}");
        assert!(export(&out, &[])
            .unwrap_err()
            .to_string()
            .contains("no model"));
    }
}
