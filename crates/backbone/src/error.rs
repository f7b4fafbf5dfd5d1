//! The backbone's one error type.
use std::path::PathBuf;

/// Everything that can go wrong loading or running the backbone.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The model folder is not there.
    #[error("model folder {0} does not exist (run scripts/setup.sh, or set backbone.model_dir)")]
    MissingFolder(PathBuf),
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A JSON file did not parse or lacked a required field.
    #[error("{path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// What serde said, with line and column.
        source: serde_json::Error,
    },
    /// `config.json` names an architecture this encoder does not implement.
    #[error("unsupported model_type {model_type:?} (supported: {supported})")]
    UnsupportedModel {
        /// The declared type.
        model_type: String,
        /// The types we implement.
        supported: String,
    },
    /// A config value is out of range or inconsistent.
    #[error("{path}: {msg}")]
    InvalidConfig {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// The weights file is not valid safetensors.
    #[error("{path}: not a valid safetensors file: {msg}")]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        msg: String,
    },
    /// A tensor the model needs is absent from the weights file.
    #[error("{path}: missing tensor {name:?}")]
    MissingTensor {
        /// The file.
        path: PathBuf,
        /// Checkpoint name of the tensor.
        name: String,
    },
    /// A tensor has a shape other than the config implies.
    #[error("{path}: tensor {name:?} has shape {found:?}, expected {expected:?}")]
    TensorShape {
        /// The file.
        path: PathBuf,
        /// Checkpoint name of the tensor.
        name: String,
        /// The shape the config implies.
        expected: Vec<i64>,
        /// The shape in the file.
        found: Vec<i64>,
    },
    /// A tensor is stored in a dtype we cannot convert.
    #[error("{path}: tensor {name:?} has unsupported dtype {dtype}")]
    TensorDtype {
        /// The file.
        path: PathBuf,
        /// Checkpoint name of the tensor.
        name: String,
        /// The stored dtype.
        dtype: String,
    },
    /// `tokenizer.json` could not be loaded.
    #[error("{path}: cannot load tokenizer: {msg}")]
    Tokenizer {
        /// The file.
        path: PathBuf,
        /// The tokenizer library's message.
        msg: String,
    },
    /// Tokenizing input failed.
    #[error("tokenization failed: {0}")]
    Tokenize(String),
    /// An input cannot be read by this backbone: undecodable or oversized image
    /// bytes, an unsupported format, or an input of a kind it does not read.
    #[error("{0}")]
    Input(String),
    /// A device, dtype or thread option is invalid.
    #[error("invalid backbone option: {0}")]
    InvalidOption(String),
    /// A runtime's files (its export of the model, its library) are missing, stale
    /// or unreadable; the message says what to run. `backend = "auto"` falls back to
    /// torch on this error.
    #[error("{runtime} backend: {message}")]
    Export {
        /// The runtime (`onnxruntime`, `openvino`, ...).
        runtime: &'static str,
        /// What is wrong and what to run.
        message: String,
    },
    /// A runtime failed to load, compile or run the model.
    #[error("{runtime}: {message}")]
    Runtime {
        /// The runtime (`torch`, `onnxruntime`, `openvino`, ...).
        runtime: &'static str,
        /// The runtime's own message.
        message: String,
    },
    /// The model thread is gone (it panicked or was shut down).
    #[error("the backbone model thread has stopped")]
    Stopped,
}

/// `Result` with the backbone's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
