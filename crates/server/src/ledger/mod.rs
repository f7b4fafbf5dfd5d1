//! The call ledger: the one place a call is accounted. A tower layer every call
//! passes, so each one is counted in `polyhead_requests_total` and written to the
//! access log (and an admin change to the audit log) exactly once, however it ends,
//! with its status code as documented (`status::documented`). Handlers record their own calls (with the task and head version, see
//! `inference::observe`); the ledger records the rest: calls refused before a handler
//! ran (a missing or wrong token, an undecodable frame), calls ended by tonic's own
//! `grpc-timeout` timer or by the client going away, streaming calls (TrainHead) and
//! the health and reflection services. No header value but the request id and trace
//! context is read, so a token never reaches a log.
//!
//! It also carries what a response holds until it is sent: the connection's call
//! count (a connection is idle without calls) and the response bytes reserved
//! against the connection's and the server's budget.
use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Instant,
};

use tonic::{
    body::Body,
    codegen::{http, Bytes},
    Code, Status,
};
use tower::{Layer, Service};

use crate::{
    conn::{conn_info, ConnCall, ResponseBytes},
    logs::{CallInfo, Recorded},
};

mod call;

pub(crate) use call::{observe, parse_grpc_timeout, CallLimits};

/// The RPCs served, as label values (a client's path must not become one).
const RPCS: [&str; 16] = [
    "Classify",
    "ClassifyMulti",
    "Embed",
    "ListTasks",
    "GetTask",
    "Info",
    "RegisterHead",
    "TrainHead",
    "ActivateVersion",
    "Rollback",
    "DeleteTask",
    "ListVersions",
    "Check",
    "Watch",
    "ServerReflectionInfo",
    "unknown",
];

/// The method of a gRPC path (`/package.Service/Method`) when it is one polyhead
/// serves, else `unknown`.
fn rpc_of(path: &str) -> &'static str {
    let method = path.rsplit('/').next().unwrap_or_default();
    RPCS.iter()
        .find(|r| **r == method)
        .copied()
        .unwrap_or("unknown")
}

/// Response bytes reserved by a handler, handed to the ledger in the response's
/// extensions (which must be `Clone`) and moved into the response body.
#[derive(Debug, Clone)]
pub(crate) struct ResponseHold(Arc<Mutex<Option<ResponseBytes>>>);

impl ResponseHold {
    /// Wraps a reservation.
    pub fn new(bytes: ResponseBytes) -> ResponseHold {
        ResponseHold(Arc::new(Mutex::new(Some(bytes))))
    }

    pub fn take(&self) -> Option<ResponseBytes> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// The layer (outside the services, inside the request-id layers).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LedgerLayer;

impl<S> Layer<S> for LedgerLayer {
    type Service = Ledger<S>;

    fn layer(&self, inner: S) -> Ledger<S> {
        Ledger { inner }
    }
}

/// See the module doc.
#[derive(Debug, Clone)]
pub(crate) struct Ledger<S> {
    inner: S,
}

/// A call the ledger may still have to record.
struct Entry {
    /// Shares its recorded flag with the handler's `CallInfo` (through the request's
    /// extensions).
    info: CallInfo,
    start: Instant,
    deadline: Option<Instant>,
}

impl Entry {
    /// Records the call unless a handler already did.
    fn record(self, code: Code) {
        if !self.info.is_recorded() {
            self.info.record(code, "", self.start.elapsed());
        }
    }

    /// The code of a call that ended without a status: the caller's deadline passed
    /// (tonic's timer dropped it), or the caller went away.
    fn abandoned(&self) -> Code {
        match self.deadline {
            Some(d) if Instant::now() >= d => Code::DeadlineExceeded,
            _ => Code::Cancelled,
        }
    }
}

impl<S> Service<http::Request<Body>> for Ledger<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = LedgerFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        request.extensions_mut().insert(Recorded::default());
        let conn_call = conn_info(request.extensions()).map(|c| c.state.call());
        let deadline = request
            .headers()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout)
            .map(|t| Instant::now() + t);
        let entry = Entry {
            info: CallInfo::of_http(rpc_of(request.uri().path()), &request),
            start: Instant::now(),
            deadline,
        };
        LedgerFuture {
            inner: Box::pin(self.inner.call(request)),
            pending: Some(Pending { entry, conn_call }),
        }
    }
}

/// What the ledger holds until a response exists.
struct Pending {
    entry: Entry,
    conn_call: Option<ConnCall>,
}

/// The ledger's response future. Field order matters: `inner` (the handler) drops
/// first, so a handler's own record is in before `pending` looks.
pub(crate) struct LedgerFuture<F> {
    inner: Pin<Box<F>>,
    pending: Option<Pending>,
}

impl<F, E> Future for LedgerFuture<F>
where
    F: Future<Output = Result<http::Response<Body>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let result = match this.inner.as_mut().poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(r) => r,
        };
        let Some(Pending { entry, conn_call }) = this.pending.take() else {
            return Poll::Ready(result);
        };
        let response = match result {
            Ok(r) => crate::status::documented(r),
            Err(e) => {
                entry.record(Code::Internal);
                return Poll::Ready(Err(e));
            }
        };
        let hold = response
            .extensions()
            .get::<ResponseHold>()
            .and_then(ResponseHold::take);
        // A trailers-only response (every error, and tonic's refusals) carries its
        // status in the headers; otherwise the status comes in the trailers.
        let entry = match status_of(response.headers()) {
            Some(code) => {
                entry.record(code);
                None
            }
            None => Some(entry),
        };
        Poll::Ready(Ok(response.map(|inner| {
            Body::new(LedgerBody {
                inner,
                entry,
                _hold: hold,
                _conn_call: conn_call,
            })
        })))
    }
}

impl<F> Drop for LedgerFuture<F> {
    fn drop(&mut self) {
        // Dropped before a response: tonic's grpc-timeout timer fired, or the client
        // reset the stream. The handler (dropped first) has recorded what it saw.
        if let Some(Pending { entry, .. }) = self.pending.take() {
            let code = entry.abandoned();
            entry.record(code);
        }
    }
}

fn status_of(headers: &http::HeaderMap) -> Option<Code> {
    let v = headers.get("grpc-status")?.to_str().ok()?;
    v.parse::<i32>().ok().map(Code::from)
}

/// A response body that records the call at its trailers and releases what the
/// response held when it is sent (or dropped: the client went away).
struct LedgerBody {
    inner: Body,
    entry: Option<Entry>,
    _hold: Option<ResponseBytes>,
    _conn_call: Option<ConnCall>,
}

impl http_body::Body for LedgerBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        let frame = match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(f) => f,
        };
        match &frame {
            Some(Ok(f)) => {
                if let Some(code) = f.trailers_ref().and_then(status_of) {
                    if let Some(entry) = this.entry.take() {
                        entry.record(code);
                    }
                }
            }
            Some(Err(status)) => {
                if let Some(entry) = this.entry.take() {
                    entry.record(status.code());
                }
            }
            None => {
                if let Some(entry) = this.entry.take() {
                    entry.record(Code::Ok);
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for LedgerBody {
    fn drop(&mut self) {
        if let Some(entry) = self.entry.take() {
            let code = entry.abandoned();
            entry.record(code);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_served_methods_become_label_values() {
        assert_eq!(rpc_of("/polyhead.v1.Inference/Classify"), "Classify");
        assert_eq!(rpc_of("/polyhead.v1.Registry/TrainHead"), "TrainHead");
        assert_eq!(rpc_of("/grpc.health.v1.Health/Check"), "Check");
        assert_eq!(rpc_of("/polyhead.v1.Inference/Nope\n"), "unknown");
        assert_eq!(rpc_of(""), "unknown");
    }

    #[test]
    fn a_status_is_read_from_headers_or_trailers() {
        let mut h = http::HeaderMap::new();
        assert_eq!(status_of(&h), None);
        h.insert("grpc-status", http::HeaderValue::from_static("16"));
        assert_eq!(status_of(&h), Some(Code::Unauthenticated));
        h.insert("grpc-status", http::HeaderValue::from_static("x"));
        assert_eq!(status_of(&h), None);
    }
}
