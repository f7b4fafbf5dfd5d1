//! Client connections: how many may be open, how long one may stay silent or idle,
//! and how many response bytes it may leave unread.
//!
//! The accept loop takes a connection slot before it accepts, so past
//! `server.max_connections` new clients wait in the kernel's backlog (costing the
//! process no file) until a connection closes. Each accepted socket is wrapped in a
//! [`GuardedStream`] that closes it when its first bytes (HTTP/2 preface, TLS hello)
//! do not arrive within `server.handshake_timeout_ms`, or when it has had no call in
//! progress for `server.idle_timeout_s`. Its [`ConnInfo`] rides along with every
//! request (tonic puts it in the request's extensions), so a call knows its
//! connection: the call ledger counts its calls there, and a response reserves its
//! bytes against the connection's and the server's budget before it is sent.
use std::{
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use metrics::{counter, gauge};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{mpsc, OwnedSemaphorePermit, Semaphore},
    time::Sleep,
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{Connected, TlsConnectInfo};

use crate::{metrics as m, ServerError};

/// The HTTP/2 client preface (RFC 9113 §3.4) is 24 bytes; a TLS ClientHello is longer.
const FIRST_BYTES: usize = 24;

/// Files kept free for the store, the model and logs when `max_connections` is
/// capped by the process's open-file limit.
const RESERVED_FILES: u64 = 128;

/// The connection limits of `[server]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnLimits {
    /// Most open connections.
    pub max_connections: usize,
    /// Time to the first bytes.
    pub handshake: Duration,
    /// Time without a call before the connection is closed.
    pub idle: Option<Duration>,
    /// Response bytes one connection may have waiting.
    pub conn_bytes: usize,
    /// Response bytes all connections may have waiting.
    pub all_bytes: usize,
}

/// What one connection shares with its calls.
#[derive(Debug)]
pub(crate) struct ConnState {
    calls: AtomicUsize,
    last_call: Mutex<Instant>,
    conn_bytes: Arc<Semaphore>,
    all_bytes: Arc<Semaphore>,
    limits: ConnLimits,
}

/// The connection a request came on: its peer and shared state.
#[derive(Debug, Clone)]
pub(crate) struct ConnInfo {
    /// The client's address.
    pub peer: SocketAddr,
    /// Shared with the connection.
    pub state: Arc<ConnState>,
}

/// The connection of a request, from the extensions tonic gives it (plain or TLS).
pub(crate) fn conn_info(ext: &tonic::codegen::http::Extensions) -> Option<&ConnInfo> {
    ext.get::<ConnInfo>()
        .or_else(|| ext.get::<TlsConnectInfo<ConnInfo>>().map(|t| t.get_ref()))
}

/// A call in progress on a connection; the connection is idle when it has none.
#[derive(Debug)]
pub(crate) struct ConnCall(Arc<ConnState>);

impl ConnState {
    /// Counts a call from now until the guard is dropped.
    pub fn call(self: &Arc<Self>) -> ConnCall {
        self.calls.fetch_add(1, Ordering::SeqCst);
        ConnCall(self.clone())
    }

    /// Reserves `bytes` of response against this connection's and the server's
    /// budget, or refuses with RESOURCE_EXHAUSTED (the response is not buffered).
    pub fn reserve(&self, bytes: usize) -> Result<ResponseBytes, ServerError> {
        let n = u32::try_from(bytes).unwrap_or(u32::MAX);
        let refuse = |scope: &'static str, key: &str, limit: usize| {
            counter!(m::RESPONSES_REFUSED, "scope" => scope).increment(1);
            ServerError::ResourceExhausted(format!(
                "a response of {bytes} bytes would put more than {limit} unread response bytes \
                 on this {scope} ({key}); read the responses already sent, or make fewer calls at once"
            ))
        };
        let conn = self
            .conn_bytes
            .clone()
            .try_acquire_many_owned(n)
            .map_err(|_| {
                refuse(
                    "connection",
                    "server.max_response_bytes_per_connection",
                    self.limits.conn_bytes,
                )
            })?;
        let all = self
            .all_bytes
            .clone()
            .try_acquire_many_owned(n)
            .map_err(|_| refuse("server", "server.max_response_bytes", self.limits.all_bytes))?;
        gauge!(m::RESPONSE_BYTES).increment(f64::from(n));
        Ok(ResponseBytes {
            _conn: conn,
            _all: all,
            n,
        })
    }
}

impl Drop for ConnCall {
    fn drop(&mut self) {
        *self.0.last_call.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        self.0.calls.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Response bytes reserved until the response is sent or dropped.
#[derive(Debug)]
pub(crate) struct ResponseBytes {
    _conn: OwnedSemaphorePermit,
    _all: OwnedSemaphorePermit,
    n: u32,
}

impl Drop for ResponseBytes {
    fn drop(&mut self) {
        gauge!(m::RESPONSE_BYTES).decrement(f64::from(self.n));
    }
}

/// The open-file limit, raised to the hard limit where the soft one is lower, and
/// the `max_connections` it leaves room for.
pub(crate) fn connection_cap(wanted: usize) -> usize {
    #[cfg(unix)]
    {
        use rustix::process::{getrlimit, setrlimit, Resource};
        let mut limit = getrlimit(Resource::Nofile);
        if limit.current < limit.maximum {
            let raised = rustix::process::Rlimit {
                current: limit.maximum,
                maximum: limit.maximum,
            };
            if setrlimit(Resource::Nofile, raised).is_ok() {
                limit = raised;
            }
        }
        if let Some(files) = limit.current {
            let room = files.saturating_sub(RESERVED_FILES).max(1);
            let room = usize::try_from(room).unwrap_or(usize::MAX);
            if room < wanted {
                tracing::warn!(
                    open_file_limit = files,
                    max_connections = room,
                    configured = wanted,
                    "server.max_connections capped by the open-file limit (ulimit -n)"
                );
                return room;
            }
        }
    }
    wanted
}

/// Accepts connections on `listener` within `limits`; the stream ends (and the
/// listener closes) when the server drops it.
pub(crate) fn incoming(
    listener: TcpListener,
    limits: ConnLimits,
) -> ReceiverStream<io::Result<GuardedStream>> {
    let (tx, rx) = mpsc::channel(1);
    let slots = Arc::new(Semaphore::new(
        limits.max_connections.min(Semaphore::MAX_PERMITS),
    ));
    let all_bytes = Arc::new(Semaphore::new(limits.all_bytes.min(Semaphore::MAX_PERMITS)));
    tokio::spawn(async move {
        let mut warned = false;
        loop {
            let accepted = tokio::select! {
                _ = tx.closed() => return,
                a = accept(&listener, &slots) => a,
            };
            let (tcp, peer, slot) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: wait for files to free up rather than spin.
                    if !warned {
                        tracing::warn!(error = %e, "accepting a connection failed; retrying");
                        warned = true;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            warned = false;
            // TCP_NODELAY: without it a response of more than one segment waits for the
            // client's delayed ACK (~40 ms on Linux): 64 cached texts took 44 ms a request.
            let _ = tcp.set_nodelay(true);
            let stream = GuardedStream::new(tcp, peer, slot, limits, all_bytes.clone());
            if tx.send(Ok(stream)).await.is_err() {
                return;
            }
        }
    });
    ReceiverStream::new(rx)
}

async fn accept(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
) -> io::Result<(TcpStream, SocketAddr, OwnedSemaphorePermit)> {
    let slot = slots
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| io::Error::other("connection slots closed"))?;
    let (tcp, peer) = listener.accept().await?;
    Ok((tcp, peer, slot))
}

/// An accepted TCP connection under the connection limits.
#[derive(Debug)]
pub(crate) struct GuardedStream {
    tcp: TcpStream,
    info: ConnInfo,
    opened: Instant,
    read: usize,
    timer: Pin<Box<Sleep>>,
    _slot: OwnedSemaphorePermit,
}

impl GuardedStream {
    fn new(
        tcp: TcpStream,
        peer: SocketAddr,
        slot: OwnedSemaphorePermit,
        limits: ConnLimits,
        all_bytes: Arc<Semaphore>,
    ) -> GuardedStream {
        let now = Instant::now();
        gauge!(m::CONNECTIONS).increment(1.0);
        let state = Arc::new(ConnState {
            calls: AtomicUsize::new(0),
            last_call: Mutex::new(now),
            conn_bytes: Arc::new(Semaphore::new(
                limits.conn_bytes.min(Semaphore::MAX_PERMITS),
            )),
            all_bytes,
            limits,
        });
        GuardedStream {
            tcp,
            info: ConnInfo { peer, state },
            opened: now,
            read: 0,
            timer: Box::pin(tokio::time::sleep(limits.handshake)),
            _slot: slot,
        }
    }

    /// Why the connection must close now, or when to look again.
    fn verdict(&self, now: Instant) -> Result<Instant, &'static str> {
        let state = &self.info.state;
        let limits = state.limits;
        if self.read < FIRST_BYTES {
            let due = self.opened + limits.handshake;
            return if now >= due {
                Err("handshake")
            } else {
                Ok(due)
            };
        }
        let Some(idle) = limits.idle else {
            return Ok(now + Duration::from_secs(3600));
        };
        if state.calls.load(Ordering::SeqCst) > 0 {
            return Ok(now + idle);
        }
        let last = *state.last_call.lock().unwrap_or_else(|p| p.into_inner());
        let due = last + idle;
        if now >= due {
            Err("idle")
        } else {
            Ok(due)
        }
    }
}

impl Drop for GuardedStream {
    fn drop(&mut self) {
        gauge!(m::CONNECTIONS).decrement(1.0);
    }
}

impl Connected for GuardedStream {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        self.info.clone()
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        if let Poll::Ready(r) = Pin::new(&mut this.tcp).poll_read(cx, buf) {
            this.read = this.read.saturating_add(buf.filled().len() - before);
            return Poll::Ready(r);
        }
        // Nothing to read: the timer decides whether the silence is allowed. Polling it
        // registers this task's waker, so hyper's read is woken when it fires.
        while this.timer.as_mut().poll(cx).is_ready() {
            match this.verdict(Instant::now()) {
                Ok(next) => this.timer.as_mut().reset(next.into()),
                Err(reason) => {
                    counter!(m::CONNECTIONS_CLOSED, "reason" => reason).increment(1);
                    tracing::debug!(peer = %this.info.peer, reason, "closing a silent connection");
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("connection closed: {reason} timeout"),
                    )));
                }
            }
        }
        Poll::Pending
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }
}
