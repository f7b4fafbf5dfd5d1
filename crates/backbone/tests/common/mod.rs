//! Shared by the backbone's integration tests.
use std::path::PathBuf;

/// The model folder: `POLYHEAD_MODEL_DIR`, or the one scripts/setup.sh links.
pub fn model_dir() -> PathBuf {
    std::env::var_os("POLYHEAD_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/all-MiniLM-L6-v2")
        })
}
