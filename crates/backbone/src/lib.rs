//! The frozen backbone of polyhead: a BERT-family text encoder that turns texts into
//! one pooled (and, if the checkpoint says so, L2-normalised) vector each. *What*
//! runs is the model family (config, inputs, pooling); *where* it runs is a runtime
//! (torch, or ONNX Runtime or OpenVINO on an exported graph), chosen in
//! `runtime/mod.rs` from the options and the machine; the [`BatchPolicy`] decides
//! the forward passes for every runtime.
//!
//! ```no_run
//! use polyhead_backbone::{EncoderHandle, EncoderOptions};
//!
//! let handle = EncoderHandle::spawn("models/all-MiniLM-L6-v2", &EncoderOptions::default())?;
//! let emb = handle.embed_blocking(vec!["hello world".into()])?;
//! assert_eq!(emb.dim(), handle.info().dim);
//! # Ok::<(), polyhead_backbone::Error>(())
//! ```
//!
//! The [`Encoder`] does the work and is owned by one thread; [`EncoderHandle`] is the
//! cheap, cloneable way in from anywhere else.
#![deny(missing_docs)]

mod batching;
mod bert;
mod branch;
mod config;
mod encoder;
mod error;
mod handle;
mod image;
mod input;
mod options;
mod pool;
mod prepare;
mod runtime;
pub mod testing;
mod tokenize;
mod weights;

use std::path::PathBuf;

use serde::Serialize;

pub use batching::{BatchPolicy, Passes};
pub use branch::{Branch, BranchShape, LowRank, Top, TARGETS};
pub use encoder::{Embeddings, Encoder};
pub use error::{Error, Result};
pub use handle::EncoderHandle;
pub use image::thumbnail;
pub use input::{Encoded, Input};
pub use options::{Backend, Device, Dtype, EncoderOptions, DEFAULT_MAX_IMAGE_PIXELS};
pub use pool::pool_windows;
pub use runtime::Padding;
pub use tokenize::{MAX_WINDOWS, WINDOW_OVERLAP};

/// What a loaded backbone is: printed by `polyhead info`, recorded by heads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackboneInfo {
    /// Model name (the folder's name).
    pub name: String,
    /// The folder it was loaded from.
    pub model_dir: PathBuf,
    /// What it reads: `text` or `image`.
    pub input: String,
    /// Embedding width.
    pub dim: usize,
    /// Inputs are truncated to this many tokens (0 for an image backbone).
    pub max_seq_length: usize,
    /// Transformer layers (0 for an image backbone): what a branch's depth counts.
    pub layers: usize,
    /// What a task's branch must fit (none for an image backbone).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch: Option<BranchShape>,
    /// Pooling mode (`mean`, `cls`, ...).
    pub pooling: String,
    /// Whether embeddings are L2-normalised.
    pub normalize: bool,
    /// Hash of weights + tokenizer + pooling config.
    pub fingerprint: String,
    /// Device the model runs on.
    pub device: String,
    /// Dtype of weights and activations.
    pub dtype: String,
    /// The runtime that runs the transformer: `torch`, `onnxruntime` or `openvino`.
    pub backend: String,
}
