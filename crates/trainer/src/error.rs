//! The trainer's one error type.
use std::path::PathBuf;

/// Everything that can go wrong reading data or training.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A row of a dataset file is malformed.
    #[error("{path}:{line}: {msg}")]
    Row {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        msg: String,
    },
    /// The dataset as a whole cannot be used.
    #[error("dataset: {0}")]
    Dataset(String),
    /// Invalid training options.
    #[error("training options: {0}")]
    Options(String),
    /// The request is over a configured limit (the message names the key).
    #[error("{0}")]
    Limit(String),
    /// The run was cancelled: its caller went away.
    #[error("training cancelled: {0}")]
    Cancelled(String),
    /// The run passed its time limit.
    #[error("{0}")]
    DeadlineExceeded(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The backbone failed.
    #[error(transparent)]
    Backbone(#[from] polyhead_backbone::Error),
    /// A head or the store failed.
    #[error(transparent)]
    Heads(#[from] polyhead_heads::Error),
    /// libtorch failed.
    #[error("torch: {0}")]
    Torch(#[from] tch::TchError),
}

/// `Result` with the trainer's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}
