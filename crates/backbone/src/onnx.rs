//! The `onnxruntime` backend: the transformer as exported by `scripts/export_onnx.py`
//! (input_ids, attention_mask -> last hidden states), run by ONNX Runtime's CPU
//! execution provider. The library is loaded at run time (`ort`'s load-dynamic), so
//! the binary builds and runs without it when the torch backend is used.
use std::{
    path::{Path, PathBuf},
    sync::{Mutex, OnceLock},
};

use ort::{
    session::{builder::GraphOptimizationLevel, Session},
    value::Tensor,
};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::{Dtype, Error, Result};

/// `export.json`, written last by the exporter.
#[derive(Debug, Deserialize)]
pub(crate) struct ExportMeta {
    format: String,
    source_model_sha256: String,
    pub(crate) files: ExportFiles,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ExportFiles {
    f32: String,
    int8: String,
    /// The OpenVINO IR's `.xml` (format v2 on).
    #[serde(default)]
    pub(crate) openvino: Option<String>,
}

/// An export found next to a model, checked against the weights it claims to come from.
#[derive(Debug, Clone)]
pub(crate) struct OnnxExport {
    /// The graph file for the requested dtype.
    pub(crate) model: PathBuf,
    /// ONNX Runtime's shared library.
    pub(crate) lib: PathBuf,
}

/// The export folder used when none is configured: the model folder's path with
/// `-onnx` appended.
pub(crate) fn default_dir(model_dir: &Path) -> PathBuf {
    // components() drops a trailing slash: "models/x/" -> "models/x-onnx".
    let mut s = model_dir.components().as_path().as_os_str().to_owned();
    s.push("-onnx");
    PathBuf::from(s)
}

/// What to run when an export is missing or stale.
pub(crate) const FIX: &str = "run scripts/setup.sh (or scripts/export_onnx.py MODEL_DIR ONNX_DIR)";

/// Reads `export.json` in `dir` and checks that the export was made from exactly
/// `weights` (sha256).
pub(crate) fn read_meta(dir: &Path, weights: &[u8]) -> Result<ExportMeta> {
    let meta_path = dir.join("export.json");
    let bytes = std::fs::read(&meta_path)
        .map_err(|e| Error::Onnx(format!("{}: {e}; {FIX}", meta_path.display())))?;
    let meta: ExportMeta = serde_json::from_slice(&bytes).map_err(|source| Error::Json {
        path: meta_path.clone(),
        source,
    })?;
    if !matches!(
        meta.format.as_str(),
        "polyhead-onnx-v1" | "polyhead-onnx-v2"
    ) {
        return Err(Error::Onnx(format!(
            "{}: unknown format {:?}; {FIX}",
            meta_path.display(),
            meta.format
        )));
    }
    let actual = hex::encode(Sha256::digest(weights));
    if meta.source_model_sha256 != actual {
        return Err(Error::Onnx(format!(
            "{} was exported from other weights (sha256 {}..., the model folder's is {}...); {FIX}",
            dir.display(),
            meta.source_model_sha256.get(..12).unwrap_or("?"),
            &actual[..12]
        )));
    }
    Ok(meta)
}

/// A shared library: `configured`, else `env` when set, else `default`; canonical, so
/// two names of one library (a link and its target) are one library.
pub(crate) fn library(
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
        _ => Err(Error::Onnx(format!(
            "{what} library {} not found; {FIX}",
            lib.display()
        ))),
    }
}

/// Finds the export for `dtype` (f32 or int8) in `dir` and the library, and checks
/// that the export was made from exactly `weights` (sha256). Every failure says what
/// to run.
pub(crate) fn locate(
    dir: &Path,
    lib: Option<&Path>,
    dtype: Dtype,
    weights: &[u8],
) -> Result<OnnxExport> {
    let meta = read_meta(dir, weights)?;
    let file = match dtype {
        Dtype::F32 => &meta.files.f32,
        Dtype::Int8 => &meta.files.int8,
        other => {
            return Err(Error::InvalidOption(format!(
                "the onnxruntime backend runs f32 or int8, not {other} (bf16 runs on the openvino and torch backends)"
            )))
        }
    };
    let model = dir.join(file);
    if !model.is_file() {
        return Err(Error::Onnx(format!(
            "{} is missing; {FIX}",
            model.display()
        )));
    }
    let lib = library(
        lib,
        Some("ORT_DYLIB_PATH"),
        dir.join("libonnxruntime.so"),
        "ONNX Runtime (set backbone.onnxruntime_lib or ORT_DYLIB_PATH)",
    )?;
    Ok(OnnxExport { model, lib })
}

/// ONNX Runtime's environment is per process and its library can be loaded once:
/// the first load wins, and a later request for another library is an error.
static RUNTIME: OnceLock<std::result::Result<(PathBuf, ort::environment::Environment), String>> =
    OnceLock::new();

fn runtime(lib: &Path) -> Result<&'static ort::environment::Environment> {
    let loaded = RUNTIME.get_or_init(|| {
        let env = ort::init_from(lib)
            .map_err(|e| format!("cannot load {}: {e}", lib.display()))?
            .with_name("polyhead")
            .with_telemetry(false)
            .build()
            .map_err(|e| format!("cannot start ONNX Runtime from {}: {e}", lib.display()))?;
        Ok((lib.to_owned(), env))
    });
    match loaded {
        Ok((first, env)) if first == lib => Ok(env),
        Ok((first, _)) => Err(Error::Onnx(format!(
            "this process already loaded ONNX Runtime from {}; cannot also load {}",
            first.display(),
            lib.display()
        ))),
        Err(e) => Err(Error::Onnx(e.clone())),
    }
}

/// One ONNX Runtime session over the exported transformer.
pub(crate) struct OnnxModel {
    // Session::run needs `&mut`; the encoder is owned by one thread, so the lock is
    // never contended.
    session: Mutex<Session>,
    hidden: usize,
}

impl OnnxModel {
    /// Loads `export` with `threads` intra-op threads.
    pub(crate) fn load(export: &OnnxExport, threads: usize, hidden: usize) -> Result<OnnxModel> {
        let env = runtime(&export.lib)?;
        let session = Session::builder(env)?
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(ort::Error::from)?
            .with_intra_threads(threads)
            .map_err(ort::Error::from)?
            .with_inter_threads(1)
            .map_err(ort::Error::from)?
            // The pool's threads spin briefly between operators (ONNX Runtime's
            // default): measured over gRPC, turning it off cost 10-25% of throughput
            // and 3 ms of single-text latency (BENCHMARKS.md).
            .commit_from_file(&export.model)?;
        Ok(OnnxModel {
            session: Mutex::new(session),
            hidden,
        })
    }

    /// Runs a (rows x cols) batch: returns the last hidden states, row-major
    /// (rows x cols x hidden), f32.
    pub(crate) fn hidden_states(
        &self,
        input: Vec<i64>,
        mask: Vec<i64>,
        rows: usize,
        cols: usize,
    ) -> Result<Vec<f32>> {
        let shape = [rows, cols];
        let ids = Tensor::from_array((shape, input))?;
        let mask = Tensor::from_array((shape, mask))?;
        let mut session = self
            .session
            .lock()
            .map_err(|_| Error::Onnx("session lock poisoned".into()))?;
        let outputs = session.run(ort::inputs!["input_ids" => ids, "attention_mask" => mask])?;
        let (out_shape, data) = outputs[0].try_extract_tensor::<f32>()?;
        let want = [rows as i64, cols as i64, self.hidden as i64];
        if out_shape.as_ref() != want {
            return Err(Error::Onnx(format!(
                "the graph returned shape {:?}, expected {want:?}",
                out_shape.as_ref()
            )));
        }
        Ok(data.to_vec())
    }
}
