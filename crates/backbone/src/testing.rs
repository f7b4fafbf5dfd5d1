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

/// The image backbone tests load: `$POLYHEAD_IMAGE_MODEL_DIR`, or the folder
/// `scripts/setup.sh` exports at `models/efficientnet-lite0` in the workspace.
pub fn image_model_dir() -> PathBuf {
    std::env::var_os("POLYHEAD_IMAGE_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/efficientnet-lite0")
        })
}
