//! The one place errors become gRPC statuses.
use tonic::{Code, Status};

/// Every error a request can meet on its way through the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Bad request content.
    #[error("{0}")]
    InvalidArgument(String),
    /// Unknown task or version.
    #[error("{0}")]
    NotFound(String),
    /// Too many requests in flight, or a request over a limit the server enforces by
    /// refusing work.
    #[error("{0}")]
    ResourceExhausted(String),
    /// The backbone is not loaded yet, or the server is shutting down.
    #[error("{0}")]
    Unavailable(String),
    /// Missing or wrong bearer token.
    #[error("{0}")]
    Unauthenticated(String),
    /// A state that forbids the operation (e.g. nothing to roll back to).
    #[error("{0}")]
    FailedPrecondition(String),
    /// The request ran past its deadline.
    #[error("{0}")]
    DeadlineExceeded(String),
    /// A failure inside the server (logged in full).
    #[error("{0}")]
    Internal(String),
    /// The backbone failed.
    #[error(transparent)]
    Backbone(#[from] polyhead_backbone::Error),
    /// A head or the store failed.
    #[error(transparent)]
    Heads(#[from] polyhead_heads::Error),
    /// Training failed.
    #[error(transparent)]
    Trainer(#[from] polyhead_trainer::Error),
}

impl From<ServerError> for Status {
    fn from(e: ServerError) -> Status {
        use polyhead_trainer::Error as T;
        let code = match &e {
            ServerError::InvalidArgument(_) => Code::InvalidArgument,
            ServerError::NotFound(_) => Code::NotFound,
            ServerError::ResourceExhausted(_) => Code::ResourceExhausted,
            ServerError::Unavailable(_) => Code::Unavailable,
            ServerError::Unauthenticated(_) => Code::Unauthenticated,
            ServerError::FailedPrecondition(_) => Code::FailedPrecondition,
            ServerError::DeadlineExceeded(_) => Code::DeadlineExceeded,
            ServerError::Internal(_) => Code::Internal,
            ServerError::Backbone(polyhead_backbone::Error::Tokenize(_)) => Code::InvalidArgument,
            ServerError::Backbone(polyhead_backbone::Error::Stopped) => Code::Unavailable,
            ServerError::Backbone(_) => Code::Internal,
            ServerError::Heads(h) => heads_code(h),
            ServerError::Trainer(T::Heads(h)) => heads_code(h),
            ServerError::Trainer(T::Row { .. } | T::Dataset(_) | T::Options(_) | T::Limit(_)) => {
                Code::InvalidArgument
            }
            ServerError::Trainer(T::Cancelled(_)) => Code::Cancelled,
            ServerError::Trainer(T::DeadlineExceeded(_)) => Code::DeadlineExceeded,
            ServerError::Trainer(T::Backbone(polyhead_backbone::Error::Stopped)) => {
                Code::Unavailable
            }
            ServerError::Trainer(T::Backbone(_) | T::Io { .. } | T::Torch(_)) => Code::Internal,
        };
        // Internal errors are logged in full; clients get the message too, since
        // polyhead's errors carry no secrets (paths at most).
        if code == Code::Internal {
            tracing::error!(error = %e, "internal error");
        }
        Status::new(code, e.to_string())
    }
}

fn heads_code(e: &polyhead_heads::Error) -> Code {
    use polyhead_heads::Error as H;
    match e {
        H::InvalidTaskName(_)
        | H::InvalidArtifact(_)
        | H::FingerprintMismatch { .. }
        | H::DimMismatch { .. } => Code::InvalidArgument,
        H::TaskNotFound(_) | H::VersionNotFound { .. } => Code::NotFound,
        H::NothingToRollBack(_) | H::NotLoadable { .. } | H::Conflict { .. } => {
            Code::FailedPrecondition
        }
        // The database store is down or timed out: retry later.
        H::Database { .. } => Code::Unavailable,
        H::Io { .. } | H::DamagedPointer { .. } | H::Injected(_) => Code::Internal,
    }
}
