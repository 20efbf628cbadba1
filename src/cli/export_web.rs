//! Writes the live page as a static site: `index.html`, its scripts (the
//! colony in the browser, WebGL2) and the chosen model files, into a folder
//! that any static file server can host (GitHub Pages and the like); no
//! `ca-serve` behind it, the colony runs in the visitor's browser.
//!
//! `cellseg export-web site --model pets48-cascade --model pets48`, then
//! e.g. `python3 -m http.server -d site` and open `http://localhost:8000/`.

use std::path::{Path, PathBuf};

use clap::Parser;

use crate::ca_core::{CellRule, Norm};
use crate::ca_serve::web;

/// The flags (`--help` lists them).
#[derive(Parser, Debug)]
#[command(
    about = "Write the live page, its scripts and models as a static site (the colony runs in the browser)"
)]
pub struct Args {
    /// The folder to write (created when missing; files of the same names
    /// are overwritten).
    dir: PathBuf,
    /// A model to include: a NAME of --models-dir or a path to a
    /// NAME.safetensors file; repeat for several, the first is the page's
    /// default. Without it, every model of --models-dir, the server's
    /// default first.
    #[arg(long = "model")]
    models: Vec<String>,
    /// The folder NAMEs are looked up in.
    #[arg(long, default_value = "models")]
    models_dir: PathBuf,
}

/// Runs the tool on parsed flags; on an error prints it and exits with 1.
pub fn main_args(args: Args) {
    crate::error::exit_on_error(run(args));
}

crate::cli::tool!(Args);

/// The file of a `--model` value: a path when it names a `.safetensors`
/// file or holds a separator, else `DIR/NAME.safetensors`.
fn model_path(spec: &str, dir: &Path) -> PathBuf {
    if spec.ends_with(".safetensors")
        || spec.contains(std::path::MAIN_SEPARATOR)
        || spec.contains('/')
    {
        PathBuf::from(spec)
    } else {
        dir.join(format!("{spec}.safetensors"))
    }
}

/// Every `*.safetensors` of `dir`, sorted, with `first` (when there) first.
fn folder_models(dir: &Path, first: &str) -> Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut models: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors") && p.is_file())
        .collect();
    models.sort();
    models.sort_by_key(|p| p.file_stem().is_none_or(|s| s != first));
    if models.is_empty() {
        return Err(format!(
            "{}: no NAME.safetensors model in the folder",
            dir.display()
        ));
    }
    Ok(models)
}

/// Checks that the browser can run the model at `path`: a plain cell rule
/// (no encoder) with a norm the browser implements.
fn check_browser_model(path: &Path) -> Result<(), String> {
    if !path.is_file() {
        return Err(format!("{}: no such model file", path.display()));
    }
    let rule = CellRule::load(path, &candle_core::Device::Cpu).map_err(|e| {
        format!(
            "{e} (the browser runs plain cell rules; high-resolution models stay on the server)"
        )
    })?;
    if rule.config().norm == Norm::Channel {
        return Err(format!(
            "{}: channel norm is not implemented in the browser; the server runs it",
            path.display()
        ));
    }
    Ok(())
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let models = if args.models.is_empty() {
        let default = crate::ca_serve::ServeConfig::default().default_model;
        folder_models(&args.models_dir, &default)?
    } else {
        args.models
            .iter()
            .map(|m| model_path(m, &args.models_dir))
            .collect()
    };
    for m in &models {
        check_browser_model(m)?;
    }
    let written = web::export(&args.dir, &models)?;
    println!(
        "wrote {} files to {} ({} models: {}); serve the folder with any static file server, e.g. python3 -m http.server -d {}",
        written.len(),
        args.dir.display(),
        models.len(),
        models
            .iter()
            .filter_map(|m| m.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .collect::<Vec<_>>()
            .join(", "),
        args.dir.display()
    );
    Ok(())
}
