//! The export `scripts/export_onnx.py` writes beside a model (ONNX graphs, the
//! OpenVINO IR, `export.json`), shared by the runtimes that run it: found, checked
//! against the weights it claims to come from, and every failure an
//! [`Error::Export`] that says what to run.
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// `export.json`, written last by the exporter.
#[derive(Debug, Deserialize)]
pub(crate) struct ExportMeta {
    format: String,
    source_model_sha256: String,
    pub(crate) files: ExportFiles,
}

/// The files of an export, relative to its folder.
#[derive(Debug, Deserialize)]
pub(crate) struct ExportFiles {
    pub(crate) f32: String,
    pub(crate) int8: String,
    /// The OpenVINO IR's `.xml` (format v2 on).
    #[serde(default)]
    pub(crate) openvino: Option<String>,
}

/// The export folder used when none is configured: the model folder's path with
/// `-onnx` appended (`models/all-MiniLM-L6-v2-onnx`).
pub(crate) fn default_dir(model_dir: &Path) -> PathBuf {
    // components() drops a trailing slash: "models/x/" -> "models/x-onnx".
    let mut s = model_dir.components().as_path().as_os_str().to_owned();
    s.push("-onnx");
    PathBuf::from(s)
}

/// What to run when an export is missing or stale.
pub(crate) const FIX: &str = "run scripts/setup.sh (or scripts/export_onnx.py MODEL_DIR ONNX_DIR)";

/// An [`Error::Export`] of `runtime`.
pub(crate) fn missing(runtime: &'static str, message: String) -> Error {
    Error::Export { runtime, message }
}

/// Reads `export.json` in `dir` and checks that the export was made from exactly
/// `weights` (sha256); errors are `runtime`'s.
pub(crate) fn read_meta(runtime: &'static str, dir: &Path, weights: &[u8]) -> Result<ExportMeta> {
    let meta_path = dir.join("export.json");
    let bytes = std::fs::read(&meta_path)
        .map_err(|e| missing(runtime, format!("{}: {e}; {FIX}", meta_path.display())))?;
    let meta: ExportMeta = serde_json::from_slice(&bytes)
        .map_err(|e| missing(runtime, format!("{}: {e}; {FIX}", meta_path.display())))?;
    if !matches!(
        meta.format.as_str(),
        "polyhead-onnx-v1" | "polyhead-onnx-v2"
    ) {
        return Err(missing(
            runtime,
            format!(
                "{}: unknown format {:?}; {FIX}",
                meta_path.display(),
                meta.format
            ),
        ));
    }
    let actual = hex::encode(Sha256::digest(weights));
    if meta.source_model_sha256 != actual {
        return Err(missing(
            runtime,
            format!(
                "{} was exported from other weights (sha256 {}..., the model folder's is {}...); {FIX}",
                dir.display(),
                meta.source_model_sha256.get(..12).unwrap_or("?"),
                &actual[..12]
            ),
        ));
    }
    Ok(meta)
}

/// A shared library: `configured`, else `env` when set, else `default`; canonical, so
/// two names of one library (a link and its target) are one library.
pub(crate) fn library(
    runtime: &'static str,
    configured: Option<&Path>,
    env: Option<&str>,
    default: PathBuf,
    what: &str,
) -> Result<PathBuf> {
    let lib = match configured {
        Some(l) => l.to_owned(),
        None => env
            .and_then(std::env::var_os)
            .map(PathBuf::from)
            .unwrap_or(default),
    };
    match std::fs::canonicalize(&lib) {
        Ok(l) if l.is_file() => Ok(l),
        _ => Err(missing(
            runtime,
            format!("{what} library {} not found; {FIX}", lib.display()),
        )),
    }
}

/// `file` in the export folder `dir`, which must be there.
pub(crate) fn file(runtime: &'static str, dir: &Path, file: &str) -> Result<PathBuf> {
    file_or(runtime, dir, file, FIX)
}

/// `file` in `dir`, which must be there; `fix` says what to run when it is not.
fn file_or(runtime: &'static str, dir: &Path, file: &str, fix: &str) -> Result<PathBuf> {
    let path = dir.join(file);
    if path.is_file() {
        Ok(path)
    } else {
        Err(missing(
            runtime,
            format!("{} is missing; {fix}", path.display()),
        ))
    }
}

/// `export.json` of an image backbone's folder (`scripts/export_image.py`).
#[derive(Debug, Deserialize)]
struct ImageExport {
    format: String,
    source_model_sha256: String,
    files: std::collections::HashMap<String, String>,
}

/// What to run when an image backbone's folder is incomplete.
const IMAGE_FIX: &str = "run scripts/setup.sh (or scripts/export_image.py MODEL_DIR)";

/// The image backbone's graph of `kind` (`onnx`, `torchscript`) in `dir`, from its
/// `export.json`, which must come from the weights `image_config.json` names.
pub(crate) fn image_graph(
    runtime: &'static str,
    dir: &Path,
    config: &crate::image::ImageConfig,
    kind: &str,
) -> Result<PathBuf> {
    let meta_path = dir.join("export.json");
    let unreadable = |e: &dyn std::fmt::Display| {
        missing(
            runtime,
            format!("{}: {e}; {IMAGE_FIX}", meta_path.display()),
        )
    };
    let bytes = std::fs::read(&meta_path).map_err(|e| unreadable(&e))?;
    let meta: ImageExport = serde_json::from_slice(&bytes).map_err(|e| unreadable(&e))?;
    if meta.format != "polyhead-image-v1" || meta.source_model_sha256 != config.source_model_sha256
    {
        return Err(missing(
            runtime,
            format!(
                "{} (format {:?}) does not belong to its image_config.json; {IMAGE_FIX}",
                meta_path.display(),
                meta.format
            ),
        ));
    }
    let name = meta.files.get(kind).ok_or_else(|| {
        missing(
            runtime,
            format!("{} lists no {kind} graph; {IMAGE_FIX}", meta_path.display()),
        )
    })?;
    file_or(runtime, dir, name, IMAGE_FIX)
}
