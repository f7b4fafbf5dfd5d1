//! The heads crate's one error type.
use std::path::PathBuf;

/// Everything that can go wrong with a head, an artifact or the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A task name that could escape the store or is otherwise not allowed.
    #[error("invalid task name {0:?}: must match ^[a-z0-9][a-z0-9_-]{{0,63}}$")]
    InvalidTaskName(String),
    /// The task has no stored versions.
    #[error("task {0:?} not found")]
    TaskNotFound(String),
    /// The version is not stored.
    #[error("task {task:?} has no version {version}")]
    VersionNotFound {
        /// The task.
        task: String,
        /// The missing version.
        version: u64,
    },
    /// Rollback with no earlier active version.
    #[error("task {0:?} has no earlier active version to roll back to")]
    NothingToRollBack(String),
    /// The artifact is not acceptable; the message says which check failed.
    #[error("invalid head artifact: {0}")]
    InvalidArtifact(String),
    /// The artifact was made with another backbone.
    #[error("head was trained on backbone {found}, but the running backbone is {expected}")]
    FingerprintMismatch {
        /// The running backbone's fingerprint.
        expected: String,
        /// The artifact's.
        found: String,
    },
    /// Features have the wrong width for this head.
    #[error("head expects {expected}-dim features, got {found}")]
    DimMismatch {
        /// The head's input width.
        expected: usize,
        /// What was given.
        found: usize,
    },
    /// A stored version cannot be made active: its files are damaged or it does not
    /// fit the running backbone. The active pointer was left as it was.
    #[error(
        "task {task:?} version {version} cannot be activated (active version unchanged): {reason}"
    )]
    NotLoadable {
        /// The task.
        task: String,
        /// The version that was to become active.
        version: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// The task's `ACTIVE` pointer is unreadable.
    #[error("{path}: active pointer is damaged: {msg}")]
    DamagedPointer {
        /// The pointer file.
        path: PathBuf,
        /// The parse error.
        msg: String,
    },
    /// A filesystem operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The database store failed or cannot be reached.
    #[error("head store database: {msg}")]
    Database {
        /// What failed.
        msg: String,
    },
    /// Copying into a store that holds the same version with other bytes.
    #[error("task {task:?} version {version} is already stored with different contents")]
    Conflict {
        /// The task.
        task: String,
        /// The version.
        version: u64,
    },
    /// A failure injected by a test (crash simulation).
    #[error("injected failure at {0:?}")]
    Injected(crate::FailPoint),
}

/// `Result` with the heads crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}
