//! The handler's half of a call's accounting: its deadline and response limits
//! ([`CallLimits`]), and [`observe`], which runs a unary body under them and records
//! the outcome with the task and head version only the handler knows. The layer's
//! half (everything a handler never sees) is the ledger in `mod.rs`.
use std::{
    future::Future,
    time::{Duration, Instant},
};

use metrics::gauge;
use tonic::{Code, Request, Response, Status};

use super::ResponseHold;
use crate::{
    logs::{CallInfo, Logged},
    metrics as m, ServerError,
};

/// What every call is held to, known before the engine is loaded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallLimits {
    /// `server.request_timeout_ms`.
    pub timeout: Duration,
    /// `server.max_message_bytes`: the largest response too.
    pub max_message_bytes: usize,
}

impl CallLimits {
    /// The call's deadline: the server's timeout or the caller's `grpc-timeout`,
    /// whichever comes first. The caller's is taken a little early so the server
    /// answers DEADLINE_EXCEEDED itself rather than tonic's timeout answering
    /// CANCELLED at the same instant.
    pub fn deadline<T>(&self, request: &Request<T>) -> Instant {
        let server = Instant::now() + self.timeout;
        self.client_deadline(request)
            .map_or(server, |c| c.min(server))
    }

    /// The caller's own deadline (`grpc-timeout`), if it sent one.
    pub fn client_deadline<T>(&self, request: &Request<T>) -> Option<Instant> {
        request
            .metadata()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout)
            .map(|t| Instant::now() + t.saturating_sub(Duration::from_millis(5)))
    }
}

/// `grpc-timeout` (PROTOCOL-HTTP2.md): 1-8 ASCII digits and a unit, H M S m u n.
pub(crate) fn parse_grpc_timeout(v: &str) -> Option<Duration> {
    if !v.is_ascii() {
        return None; // also keeps split_at on a char boundary
    }
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// One call in progress: counted in the in-flight gauge from start to drop, and
/// recorded once in `requests_total` and the latency histogram however it ends,
/// including when its future is dropped because the caller went away
/// (CANCELLED) or its deadline passed (DEADLINE_EXCEEDED).
struct Call {
    info: CallInfo,
    start: Instant,
    deadline: Instant,
    code: Option<Code>,
    version: String,
}

impl Call {
    fn start(info: CallInfo, deadline: Instant) -> Call {
        gauge!(m::IN_FLIGHT).increment(1.0);
        Call {
            info,
            start: Instant::now(),
            deadline,
            code: None,
            version: String::new(),
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        gauge!(m::IN_FLIGHT).decrement(1.0);
        let code = self.code.unwrap_or(if Instant::now() >= self.deadline {
            Code::DeadlineExceeded
        } else {
            Code::Cancelled
        });
        self.info.record(code, &self.version, self.start.elapsed());
    }
}

/// Runs one unary RPC body under its deadline, refuses a response larger than
/// `server.max_message_bytes` with RESOURCE_EXHAUSTED, and records the outcome.
pub(crate) async fn observe<T: prost::Message + Logged>(
    info: CallInfo,
    limits: CallLimits,
    deadline: Instant,
    body: impl Future<Output = Result<T, ServerError>>,
) -> Result<Response<T>, Status> {
    let mut call = Call::start(info, deadline);
    let result = match tokio::time::timeout_at(deadline.into(), body).await {
        Ok(r) => r,
        Err(_) => Err(ServerError::DeadlineExceeded(
            "deadline passed (the caller's grpc-timeout or server.request_timeout_ms)".into(),
        )),
    };
    let result = result.and_then(|msg| {
        let n = msg.encoded_len();
        if n > limits.max_message_bytes {
            return Err(ServerError::ResourceExhausted(format!(
                "the response would be {n} bytes; the limit is {} (server.max_message_bytes): \
                 send fewer texts or tasks, or set top_k",
                limits.max_message_bytes
            )));
        }
        // Reserved until the response is sent: a client that does not read its
        // responses gets RESOURCE_EXHAUSTED instead of growing the server's memory.
        let hold = match &call.info.conn {
            Some(conn) => Some(conn.reserve(n)?),
            None => None,
        };
        Ok((msg, hold))
    });
    let result = result.map_err(Status::from);
    call.code = Some(result.as_ref().map_or_else(Status::code, |_| Code::Ok));
    if let Ok((msg, _)) = &result {
        call.version = msg.head_version();
        if let Some(task) = msg.task() {
            call.info.set_logged_task(task);
        }
    }
    result.map(|(msg, hold)| {
        let mut response = Response::new(msg);
        if let Some(hold) = hold {
            response.extensions_mut().insert(ResponseHold::new(hold));
        }
        response
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_header_parses() {
        assert_eq!(parse_grpc_timeout("100m"), Some(Duration::from_millis(100)));
        assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("5u"), Some(Duration::from_micros(5)));
        for bad in ["", "m", "123456789m", "10x", "-1S", "1.5S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad}");
        }
    }

    proptest::proptest! {
        /// Any header value parses or is ignored; none panics.
        #[test]
        fn any_grpc_timeout_value_is_safe(v in ".{0,12}") {
            let _ = parse_grpc_timeout(&v);
        }
    }

    #[test]
    fn the_earlier_deadline_wins() {
        let limits = CallLimits {
            timeout: Duration::from_secs(30),
            max_message_bytes: 1,
        };
        let mut r = Request::new(());
        let server = limits.deadline(&r);
        assert!(server > Instant::now() + Duration::from_secs(29));
        r.metadata_mut()
            .insert("grpc-timeout", "100m".parse().unwrap());
        assert!(limits.deadline(&r) < Instant::now() + Duration::from_millis(100));
        r.metadata_mut()
            .insert("grpc-timeout", "1H".parse().unwrap());
        assert!(limits.deadline(&r) <= Instant::now() + Duration::from_secs(30));
    }
}
