//! The frozen backbone of polyhead: a BERT-family text encoder (tch, or ONNX Runtime or
//! OpenVINO on an exported graph) that turns texts
//! into one pooled (and, if the checkpoint says so, L2-normalised) vector each.
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

mod bert;
mod config;
mod encoder;
mod error;
mod handle;
mod onnx;
mod options;
mod ov;
mod plan;
mod tokenize;
mod weights;

use std::path::PathBuf;

use serde::Serialize;

pub use config::{BertConfig, HiddenAct, Pooling, SentenceConfig, SUPPORTED_MODEL_TYPES};
pub use encoder::{Embeddings, Encoder};
pub use error::{Error, Result};
pub use handle::EncoderHandle;
pub use options::{Backend, Device, Dtype, EncoderOptions};

/// What a loaded backbone is: printed by `polyhead info`, recorded by heads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackboneInfo {
    /// Model name (the folder's name).
    pub name: String,
    /// The folder it was loaded from.
    pub model_dir: PathBuf,
    /// Embedding width.
    pub dim: usize,
    /// Inputs are truncated to this many tokens.
    pub max_seq_length: usize,
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
    /// What runs the transformer: `torch`, `onnxruntime` or `openvino`.
    pub backend: String,
}
