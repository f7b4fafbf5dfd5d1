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

/// The gRPC status code's canonical name (`OK`, `NOT_FOUND`, ...), as the gRPC spec
/// and grpc dashboards spell it.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
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
            ServerError::Backbone(
                polyhead_backbone::Error::Tokenize(_) | polyhead_backbone::Error::Input(_),
            ) => Code::InvalidArgument,
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
            ServerError::Trainer(T::Backbone(polyhead_backbone::Error::Input(_))) => {
                Code::InvalidArgument
            }
            ServerError::Trainer(T::Backbone(_) | T::Io { .. } | T::Torch(_)) => Code::Internal,
        };
        // File errors are logged in full; the client gets what failed without the
        // server's paths, with a code that says whose move it is: a full disk is
        // RESOURCE_EXHAUSTED, a read-only or forbidden store FAILED_PRECONDITION.
        if let Some((path, source)) = file_error(&e) {
            let typed = io_code(source);
            let code = typed.unwrap_or(code);
            tracing::error!(error = %e, code = ?code, "file error");
            let what = describe(source, typed);
            return Status::new(code, format!("{}: {what}", short_path(path)));
        }
        if code == Code::Internal {
            tracing::error!(error = %e, "internal error");
        }
        Status::new(code, e.to_string())
    }
}

/// The path and OS error of a filesystem failure, wherever it was met.
fn file_error(e: &ServerError) -> Option<(&std::path::Path, &std::io::Error)> {
    use polyhead_heads::Error as H;
    use polyhead_trainer::Error as T;
    match e {
        ServerError::Heads(H::Io { path, source })
        | ServerError::Trainer(T::Heads(H::Io { path, source }))
        | ServerError::Trainer(T::Io { path, source }) => Some((path, source)),
        _ => None,
    }
}

/// The code of an OS error a client can act on.
fn io_code(e: &std::io::Error) -> Option<Code> {
    use std::io::ErrorKind as K;
    // ENOSPC, EDQUOT, EROFS: also by number, for kinds std maps to Other.
    match (e.kind(), e.raw_os_error()) {
        (K::StorageFull, _) | (_, Some(28 | 122)) => Some(Code::ResourceExhausted),
        (K::ReadOnlyFilesystem | K::PermissionDenied, _) | (_, Some(30)) => {
            Some(Code::FailedPrecondition)
        }
        _ => None,
    }
}

/// What an OS error means to a client, given its [`io_code`].
fn describe(e: &std::io::Error, code: Option<Code>) -> String {
    match code {
        Some(Code::ResourceExhausted) => {
            "the server's disk is full (no space left on device)".into()
        }
        Some(Code::FailedPrecondition) => {
            "the server cannot write there (read-only file system or no permission)".into()
        }
        _ => e.to_string(),
    }
}

/// The last three components of `path` (task / version / file): enough to say what
/// failed, nothing of where the server keeps its files.
fn short_path(path: &std::path::Path) -> String {
    let parts: Vec<_> = path.components().rev().take(3).collect();
    let parts: Vec<String> = parts
        .into_iter()
        .rev()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    parts.join("/")
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

/// Rewrites the codes tonic gives request-decoding failures into the documented
/// ones (such errors are trailers-only responses: the status is in the headers):
/// - a request over `max_decoding_message_size` is OUT_OF_RANGE in tonic; the gRPC
///   status-code spec (and grpc-go, grpc-java) use RESOURCE_EXHAUSTED. polyhead never
///   sends OUT_OF_RANGE itself.
/// - a request tonic or prost cannot decode (bad wire format, invalid UTF-8 in a
///   string, bad or truncated gzip, an unknown compression flag, a frame shorter than
///   its length, no message at all) is INTERNAL in tonic; it is the client's bad
///   argument, not a server fault. The one exception the gRPC compression spec makes
///   (the compressed flag set without a `grpc-encoding`: INTERNAL) is kept.
pub(crate) fn documented(
    mut res: tonic::codegen::http::Response<tonic::body::Body>,
) -> tonic::codegen::http::Response<tonic::body::Body> {
    let headers = res.headers();
    let status = headers.get("grpc-status").map(|v| v.as_bytes());
    let undecodable = || {
        headers
            .get("grpc-message")
            .is_some_and(|m| is_decoding_failure(&percent_decode(m.as_bytes())))
    };
    let code = match status {
        Some(b"11") => Some("8"),
        Some(b"13") if undecodable() => Some("3"),
        _ => None,
    };
    if let Some(code) = code {
        res.headers_mut().insert(
            "grpc-status",
            tonic::codegen::http::HeaderValue::from_static(code),
        );
    }
    res
}

/// Whether tonic's INTERNAL message `m` says the request could not be decoded.
fn is_decoding_failure(m: &str) -> bool {
    const PREFIXES: [&str; 5] = [
        "failed to decode Protobuf",
        "Error decompressing",
        "protocol error: received message with invalid compression flag",
        "Unexpected EOF decoding stream",
        "Missing request message",
    ];
    PREFIXES.iter().any(|p| m.starts_with(p))
}

/// `grpc-message` is percent-encoded (PROTOCOL-HTTP2.md); invalid escapes stay as
/// they are.
fn percent_decode(v: &[u8]) -> String {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match (
            v[i],
            v.get(i + 1).copied().and_then(hex),
            v.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io_status(kind: std::io::ErrorKind, raw: Option<i32>) -> Status {
        let source = match raw {
            Some(n) => std::io::Error::from_raw_os_error(n),
            None => std::io::Error::from(kind),
        };
        ServerError::Heads(polyhead_heads::Error::Io {
            path: "/srv/secret/store/spam/.tmp-x1/head.safetensors".into(),
            source,
        })
        .into()
    }

    #[test]
    fn file_errors_have_typed_codes_and_no_server_paths() {
        let full = io_status(std::io::ErrorKind::Other, Some(28));
        assert_eq!(full.code(), Code::ResourceExhausted);
        assert!(
            full.message().contains("disk is full"),
            "{}",
            full.message()
        );
        let ro = io_status(std::io::ErrorKind::Other, Some(30));
        assert_eq!(ro.code(), Code::FailedPrecondition);
        let denied = io_status(std::io::ErrorKind::PermissionDenied, None);
        assert_eq!(denied.code(), Code::FailedPrecondition);
        let other = io_status(std::io::ErrorKind::InvalidData, None);
        assert_eq!(other.code(), Code::Internal);
        for s in [full, ro, denied, other] {
            assert!(!s.message().contains("/srv/secret"), "{}", s.message());
            assert!(
                s.message().starts_with("spam/.tmp-x1/head.safetensors"),
                "{}",
                s.message()
            );
        }
    }

    #[test]
    fn tonic_decoding_failures_get_the_documented_codes() {
        use tonic::codegen::http::{HeaderValue, Response};
        let answer = |status: &'static str, message: &'static str| {
            let mut r = Response::new(tonic::body::Body::empty());
            r.headers_mut()
                .insert("grpc-status", HeaderValue::from_static(status));
            r.headers_mut()
                .insert("grpc-message", HeaderValue::from_static(message));
            let r = documented(r);
            r.headers()["grpc-status"]
                .to_str()
                .unwrap_or_default()
                .to_owned()
        };
        assert_eq!(
            answer("11", "message too large"),
            "8",
            "OUT_OF_RANGE -> RESOURCE_EXHAUSTED"
        );
        assert_eq!(
            answer("13", "failed%20to%20decode%20Protobuf%20message"),
            "3"
        );
        assert_eq!(answer("13", "Error decompressing: bad gzip"), "3");
        assert_eq!(
            answer("13", "something else broke"),
            "13",
            "a real INTERNAL stays"
        );
        assert_eq!(answer("5", "no such task"), "5");
    }
}
