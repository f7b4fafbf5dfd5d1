//! Per-request access log and audit log.
//!
//! Each request gets an id: the caller's `x-request-id` (kept, and echoed in the
//! response headers by the tower layer in `serve`) or a random one. At the end of
//! every unary call one line goes to target `polyhead::access` (when `log.access`),
//! and every admin change also to `polyhead::audit`; with `log.format = "json"`
//! each is one JSON object. Client-supplied strings are cut to a bounded length and
//! their control characters escaped, so no client can forge a line.
use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
};

use tonic::{
    codegen::http::{self, HeaderValue},
    Code, Request,
};
use tower_http::request_id::{MakeRequestId, RequestId};

use crate::conn::{conn_info, ConnState};

static ACCESS: AtomicBool = AtomicBool::new(true);

/// Longest client string copied into a log line.
const MAX_LOGGED: usize = 128;

/// Turns the access log on or off (`log.access`).
pub(crate) fn set_access(on: bool) {
    ACCESS.store(on, Ordering::Relaxed);
}

/// Makes a random 128-bit request id for requests that bring none.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RandomRequestId;

impl MakeRequestId for RandomRequestId {
    fn make_request_id<B>(&mut self, _: &http::Request<B>) -> Option<RequestId> {
        let id: u128 = rand::random();
        HeaderValue::from_str(&format!("{id:032x}"))
            .ok()
            .map(RequestId::new)
    }
}

/// A client string as it may appear in a log line: at most `MAX_LOGGED` characters,
/// control characters (newline, ESC, NUL, ...) written as escapes (`\n`, `\u{1b}`).
pub(crate) fn cut(s: &str) -> String {
    let (kept, more) = match s.char_indices().nth(MAX_LOGGED) {
        Some((i, _)) => (&s[..i], true),
        None => (s, false),
    };
    let mut out = String::with_capacity(kept.len() + 3);
    for c in kept.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if more {
        out.push_str("...");
    }
    out
}

/// Set once a call's outcome is recorded (metrics and access line), so the call
/// ledger records it itself only when no handler did.
#[derive(Debug, Clone, Default)]
pub(crate) struct Recorded(Arc<AtomicBool>);

impl Recorded {
    fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    fn set(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Who asked for what: the request's identity for the access and audit logs.
#[derive(Debug, Clone, Default)]
pub(crate) struct CallInfo {
    /// The RPC.
    pub rpc: &'static str,
    /// The task label for metrics (a live task, `unknown`, `multi` or empty).
    pub label: String,
    /// The task(s) as requested, for logs.
    pub task: String,
    request_id: String,
    traceparent: String,
    peer: String,
    recorded: Recorded,
    /// The connection the call came on (none in unit tests).
    pub conn: Option<Arc<ConnState>>,
}

impl CallInfo {
    /// Reads the request's id, trace context and peer.
    pub fn of<T>(rpc: &'static str, request: &Request<T>) -> CallInfo {
        CallInfo::from_parts(rpc, request.metadata().as_ref(), request.extensions())
    }

    /// The identity of a call read from its HTTP request, for calls the ledger
    /// records itself (refused before a handler ran, or with no handler).
    pub fn of_http<B>(rpc: &'static str, request: &http::Request<B>) -> CallInfo {
        CallInfo::from_parts(rpc, request.headers(), request.extensions())
    }

    fn from_parts(
        rpc: &'static str,
        headers: &http::HeaderMap,
        extensions: &http::Extensions,
    ) -> CallInfo {
        let header = |key: &str| {
            headers
                .get(key)
                .and_then(|v| v.to_str().ok())
                .map(cut)
                .unwrap_or_default()
        };
        let conn = conn_info(extensions);
        CallInfo {
            rpc,
            request_id: header("x-request-id"),
            traceparent: header("traceparent"),
            peer: conn.map(|c| c.peer.to_string()).unwrap_or_default(),
            recorded: extensions.get::<Recorded>().cloned().unwrap_or_default(),
            conn: conn.map(|c| c.state.clone()),
            ..CallInfo::default()
        }
    }

    /// Whether this call's outcome has been recorded (by whichever layer holds it).
    pub fn is_recorded(&self) -> bool {
        self.recorded.is_set()
    }

    /// Names the task for logs only (known once the call is done).
    pub fn set_logged_task(&mut self, task: &str) {
        self.task = cut(task);
    }

    /// Names the task: `label` for metrics, `task` (as requested) for logs.
    pub fn task(mut self, task: &str, label: impl Into<String>) -> CallInfo {
        self.task = cut(task);
        self.label = label.into();
        self
    }

    /// Records the call's outcome: `polyhead_requests_total` and the latency
    /// histogram, the access line and (for an admin change) the audit line.
    pub fn record(&self, code: Code, version: &str, elapsed: std::time::Duration) {
        crate::metrics::request(self.rpc, &self.label, code, elapsed);
        self.finish(code, version, elapsed.as_secs_f64() * 1e3);
    }

    /// Writes the access line (and the audit line of an admin change).
    fn finish(&self, code: Code, version: &str, latency_ms: f64) {
        self.recorded.set();
        if ACCESS.load(Ordering::Relaxed) {
            tracing::info!(
                target: "polyhead::access",
                rpc = self.rpc, task = %self.task, head_version = %version, code = crate::status::code_name(code),
                latency_ms = (latency_ms * 1000.0).round() / 1000.0,
                request_id = %self.request_id, traceparent = %self.traceparent, peer = %self.peer,
                "request"
            );
        }
        if is_admin_change(self.rpc) {
            audit(
                self.rpc,
                &self.task,
                version,
                code,
                &self.request_id,
                &self.peer,
            );
        }
    }
}

/// Whether `rpc` changes the store.
fn is_admin_change(rpc: &str) -> bool {
    matches!(
        rpc,
        "RegisterHead" | "TrainHead" | "ActivateVersion" | "Rollback" | "DeleteTask"
    )
}

/// One audit line: an admin change, its outcome and who asked.
pub(crate) fn audit(
    action: &str,
    task: &str,
    version: &str,
    code: Code,
    request_id: &str,
    peer: &str,
) {
    tracing::info!(
        target: "polyhead::audit",
        action, task = %task, version = %version, code = crate::status::code_name(code),
        request_id = %request_id, peer = %peer, "admin change"
    );
}

/// The head version(s) a response names, for the access log.
pub(crate) trait Logged {
    /// `"3"`, `"spam=3,reviews=1"`, or empty.
    fn head_version(&self) -> String {
        String::new()
    }

    /// The task, when only the response knows it (RegisterHead).
    fn task(&self) -> Option<&str> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_strings_are_cut() {
        let long = "é".repeat(1000);
        let c = cut(&long);
        assert_eq!(c.chars().count(), MAX_LOGGED + 3);
        assert_eq!(cut("abc"), "abc");
    }

    #[test]
    fn control_characters_cannot_forge_a_log_line() {
        let forged =
            "spam\n2026-12-01T00:00:00Z INFO polyhead::audit: action=\"DeleteTask\"\u{1b}[2K\0";
        let c = cut(forged);
        assert!(!c.chars().any(char::is_control), "{c}");
        assert!(c.starts_with("spam\\n2026"), "{c}");
        assert!(c.contains("\\u{1b}[2K\\u{0}"), "{c}");
    }

    #[test]
    fn request_ids_are_random_hex() {
        let req = http::Request::new(());
        let a = RandomRequestId.make_request_id(&req).expect("an id");
        let b = RandomRequestId.make_request_id(&req).expect("an id");
        assert_ne!(a.header_value(), b.header_value());
        assert_eq!(a.header_value().len(), 32);
    }
}
