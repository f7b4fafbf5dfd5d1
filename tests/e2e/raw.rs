//! A raw HTTP/2 gRPC client (the `h2` crate), for what a well-behaved client never
//! does: advertise a zero receive window, or send malformed gRPC frames.
use std::{future::Future, time::Duration};

use tonic::codegen::{http, Bytes};

/// One HTTP/2 connection with its stream limit as the server announced it.
pub struct RawConnection {
    pub send: h2::client::SendRequest<Bytes>,
    /// SETTINGS_MAX_CONCURRENT_STREAMS the server announced.
    pub max_streams: tokio::sync::watch::Receiver<usize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RawConnection {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What a raw call got back: the HTTP status and the gRPC status, if the answer
/// was trailers-only (every error) or its trailers were read.
#[derive(Debug)]
pub struct RawAnswer {
    pub grpc_status: Option<i32>,
    pub grpc_message: String,
    /// The response body, when it was read.
    pub body: Option<h2::RecvStream>,
}

impl RawConnection {
    /// Connects with `window` bytes of receive window per stream (0 = the server
    /// can send headers but no data).
    pub async fn open(addr: &str, window: u32) -> RawConnection {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (send, mut conn) = h2::client::Builder::new()
            .initial_window_size(window)
            .handshake::<_, Bytes>(tcp)
            .await
            .unwrap();
        let (tx, max_streams) = tokio::sync::watch::channel(usize::MAX);
        let task = tokio::spawn(async move {
            std::future::poll_fn(|cx| {
                let r = std::pin::Pin::new(&mut conn).poll(cx);
                tx.send_replace(conn.max_concurrent_send_streams());
                r
            })
            .await
            .ok();
        });
        RawConnection {
            send,
            max_streams,
            task,
        }
    }

    /// Starts `POST path` with `body` (already gRPC-framed) and `headers`; returns the
    /// response head as soon as it arrives.
    pub async fn call(&mut self, path: &str, body: Vec<u8>, headers: &[(&str, &str)]) -> RawAnswer {
        let mut req = http::Request::builder()
            .method("POST")
            .uri(format!("http://polyhead{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let mut send = self.send.clone().ready().await.unwrap();
        let (response, mut stream) = send.send_request(req.body(()).unwrap(), false).unwrap();
        stream.send_data(Bytes::from(body), true).unwrap();
        let response = tokio::time::timeout(Duration::from_secs(120), response)
            .await
            .expect("a response head within 120 s")
            .unwrap();
        let h = response.headers();
        let grpc_status = h
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let grpc_message = h
            .get("grpc-message")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .replace("%20", " ");
        let body = grpc_status.is_none().then(|| response.into_body());
        RawAnswer {
            grpc_status,
            grpc_message,
            body,
        }
    }
}

/// A gRPC length-prefixed message: `flag`, 4-byte big-endian `len`, `payload`.
pub fn frame(flag: u8, len: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![flag];
    out.extend(len.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An uncompressed gRPC frame of `msg`.
pub fn message(msg: &impl prost::Message) -> Vec<u8> {
    let payload = msg.encode_to_vec();
    frame(0, payload.len() as u32, &payload)
}
