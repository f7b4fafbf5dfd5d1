//! For tests of this crate and of the crates above it: where the shipped model is.
use std::path::PathBuf;

/// The model folder tests load: `$POLYHEAD_MODEL_DIR`, or the one
/// `scripts/setup.sh` links at `models/all-MiniLM-L6-v2` in the workspace.
pub fn model_dir() -> PathBuf {
    std::env::var_os("POLYHEAD_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/all-MiniLM-L6-v2")
        })
}
