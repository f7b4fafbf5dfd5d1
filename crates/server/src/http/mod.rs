//! The HTTP/JSON API beside gRPC, on its own port (`server.http_addr`).
//!
//! Every route is a thin translation onto the gRPC `Inference` service: a handler
//! builds the same `tonic::Request` a gRPC call would carry (the caller's headers as
//! metadata: `authorization`, `x-request-id`, `traceparent`; the connection in the
//! extensions) and calls the service's method. So both protocols share the engine,
//! the limits, admission, deadlines, the bearer-token check, the metrics
//! (`polyhead_requests_total` counts an HTTP call under the RPC it maps to), the
//! access log and the request ids; connections pass the same accept loop, with the
//! same connection, handshake, idle and response-byte limits.
//!
//! Three dialects, one meaning (the routes are in `openapi.json`, served at
//! `GET /openapi.json`):
//! - polyhead's own: `/v1/tasks/{task}/classify`, `/v1/classify`, `/v1/embed`,
//!   `/v1/tasks`, `/v1/info`, `/health/live`, `/health/ready`;
//! - KServe's Open Inference Protocol v2: a task is a model, its active head version
//!   the model version (`/v2/models/{task}/infer`, `/v2/health/ready`, ...);
//! - OpenAI's `POST /v1/embeddings`.
//!
//! Errors are JSON, `{"error": "<what to do>", "code": "NOT_FOUND"}`, with the gRPC
//! code's name and its HTTP status (grpc-gateway's mapping).
use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    body::Body,
    extract::DefaultBodyLimit,
    http::{header, request::Parts, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Router,
};
use http_body::Frame;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_stream::StreamExt;
use tonic::{metadata::MetadataMap, service::Interceptor, transport::server::Connected};
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};

use crate::{
    auth::BearerAuth,
    conn::{self, ConnInfo, ConnLimits, ResponseBytes},
    inference::{InferenceService, ReadyEngine},
    ledger::ResponseHold,
    logs::{CallInfo, RandomRequestId},
};

mod errors;
mod kserve;
mod native;
mod openai;

use errors::{method_not_allowed, not_found, ApiError, JsonBody, QueryArgs};

/// The OpenAPI document of this API (checked in; a test holds it to the routes).
pub const OPENAPI: &str = include_str!("../../openapi.json");

/// What the handlers share.
#[derive(Clone)]
struct Api {
    /// Read directly only where no call is made on a client's behalf (readiness, and
    /// the live head's version); everything else goes through `inference`.
    engine: ReadyEngine,
    inference: InferenceService,
    auth: BearerAuth,
}

/// Builds the router (without the connection layer).
pub(crate) fn router(
    engine: ReadyEngine,
    inference: InferenceService,
    auth: BearerAuth,
    max_body_bytes: usize,
) -> Router {
    let api = Api {
        engine,
        inference,
        auth,
    };
    Router::new()
        .route("/health/live", get(native::live))
        .route("/health/ready", get(native::ready_check))
        .route("/v1/info", get(native::info))
        .route("/v1/tasks", get(native::list_tasks))
        .route("/v1/tasks/{task}", get(native::get_task))
        .route("/v1/tasks/{task}/classify", post(native::classify))
        .route("/v1/classify", post(native::classify_multi))
        .route("/v1/embed", post(native::embed))
        .route("/v1/embeddings", post(openai::embeddings))
        .route("/v2", get(kserve::server))
        .route("/v2/health/live", get(native::live))
        .route("/v2/health/ready", get(native::ready_check))
        .route("/v2/models/{model}", get(kserve::model))
        .route("/v2/models/{model}/ready", get(kserve::model_ready))
        .route(
            "/v2/models/{model}/versions/{version}",
            get(kserve::model_version),
        )
        .route("/v2/models/{model}/infer", post(kserve::infer))
        .route(
            "/v2/models/{model}/versions/{version}/infer",
            post(kserve::infer_version),
        )
        .route("/openapi.json", get(openapi))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(RandomRequestId))
        .with_state(api)
}

/// Serves `router` on `listener` within `limits` until `stop` resolves; then stops
/// accepting and waits (at most `drain`) for the requests in progress.
pub(crate) async fn serve(
    listener: TcpListener,
    limits: ConnLimits,
    max_concurrent_streams: u32,
    router: Router,
    stop: impl Future<Output = ()>,
    drain: Duration,
) {
    use hyper_util::{
        rt::{TokioExecutor, TokioIo, TokioTimer},
        server::{conn::auto, graceful::GracefulShutdown},
    };
    let mut incoming = conn::incoming(listener, limits);
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.handshake);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(max_concurrent_streams);
    let builder = Arc::new(builder);
    tokio::pin!(stop);
    loop {
        let stream = tokio::select! {
            s = incoming.next() => match s {
                Some(Ok(s)) => s,
                Some(Err(_)) => continue,
                None => break,
            },
            _ = &mut stop => break,
        };
        let info = stream.connect_info();
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<_>| {
            req.extensions_mut().insert(info.clone());
            let _call = info.state.call();
            let mut router = router.clone();
            async move {
                let response = tower::Service::call(&mut router, req.map(Body::new)).await;
                drop(_call);
                response
            }
        });
        let conn = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "HTTP connection ended with an error");
            }
        });
    }
    drop(incoming);
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("HTTP connections still open after the drain; closing them");
    }
}

// ---------------------------------------------------------------------------
// The bridge to the gRPC service

/// A JSON answer that holds its reserved response bytes until it is sent.
struct Answer {
    status: StatusCode,
    body: Value,
    hold: Option<ResponseBytes>,
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let bytes = serde_json::to_vec(&self.body).unwrap_or_default();
        let mut r = Response::new(Body::new(HeldBody {
            bytes: Some(bytes.into()),
            _hold: self.hold,
        }));
        *r.status_mut() = self.status;
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
    }
}

/// One JSON body frame; the reservation is released when the body is dropped (sent,
/// or the client went away).
struct HeldBody {
    bytes: Option<axum::body::Bytes>,
    _hold: Option<ResponseBytes>,
}

impl http_body::Body for HeldBody {
    type Data = axum::body::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Poll::Ready(self.bytes.take().map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.bytes.is_none()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.bytes.as_ref().map_or(0, |b| b.len() as u64))
    }
}

impl Api {
    /// Runs `method` of the gRPC service on `msg` as the call `rpc`, with the
    /// caller's headers and connection; a call refused by the token check is
    /// counted and logged as a gRPC one would be.
    async fn call<T, R, F, Fut>(
        &self,
        rpc: &'static str,
        parts: &Parts,
        msg: T,
        method: F,
    ) -> Result<(R, Option<ResponseBytes>), ApiError>
    where
        F: FnOnce(InferenceService, tonic::Request<T>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<R>, tonic::Status>>,
    {
        let mut request = tonic::Request::new(msg);
        *request.metadata_mut() = MetadataMap::from_headers(parts.headers.clone());
        if let Some(conn) = parts.extensions.get::<ConnInfo>() {
            request.extensions_mut().insert(conn.clone());
        }
        let mut check = tonic::Request::new(());
        *check.metadata_mut() = request.metadata().clone();
        if let Err(status) = self.auth.clone().call(check) {
            CallInfo::of(rpc, &request).record(status.code(), "", Duration::ZERO);
            return Err(status.into());
        }
        let response = method(self.inference.clone(), request).await?;
        let (_, msg, extensions) = response.into_parts();
        let hold = extensions
            .get::<ResponseHold>()
            .and_then(ResponseHold::take);
        Ok((msg, hold))
    }
}

fn ok(body: Value, hold: Option<ResponseBytes>) -> Answer {
    Answer {
        status: StatusCode::OK,
        body,
        hold,
    }
}

async fn openapi() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        OPENAPI,
    )
        .into_response()
}

/// The routes and methods the router serves, for the OpenAPI test.
#[cfg(test)]
pub(crate) const ROUTES: [(&str, &str); 18] = [
    ("get", "/health/live"),
    ("get", "/health/ready"),
    ("get", "/v1/info"),
    ("get", "/v1/tasks"),
    ("get", "/v1/tasks/{task}"),
    ("post", "/v1/tasks/{task}/classify"),
    ("post", "/v1/classify"),
    ("post", "/v1/embed"),
    ("post", "/v1/embeddings"),
    ("get", "/v2"),
    ("get", "/v2/health/live"),
    ("get", "/v2/health/ready"),
    ("get", "/v2/models/{model}"),
    ("get", "/v2/models/{model}/ready"),
    ("get", "/v2/models/{model}/versions/{version}"),
    ("post", "/v2/models/{model}/infer"),
    ("post", "/v2/models/{model}/versions/{version}/infer"),
    ("get", "/openapi.json"),
];

#[cfg(test)]
mod tests {
    use super::{errors::http_status, *};
    use tonic::Code;

    #[test]
    fn the_openapi_document_lists_every_route_and_only_those() {
        let doc: Value = serde_json::from_str(OPENAPI).expect("openapi.json is JSON");
        assert!(doc["openapi"].as_str().unwrap_or("").starts_with("3."));
        let paths = doc["paths"].as_object().expect("paths");
        let mut documented = Vec::new();
        for (path, item) in paths {
            for method in item.as_object().expect("path item").keys() {
                if ["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                    documented.push((method.clone(), path.clone()));
                }
            }
        }
        let mut served: Vec<(String, String)> = ROUTES
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        documented.sort();
        served.sort();
        assert_eq!(documented, served);
        // Every $ref resolves.
        fn refs(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::Object(m) => {
                    if let Some(Value::String(r)) = m.get("$ref") {
                        out.push(r.clone());
                    }
                    m.values().for_each(|x| refs(x, out));
                }
                Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
                _ => {}
            }
        }
        let mut all = Vec::new();
        refs(&doc, &mut all);
        for r in all {
            let name = r.strip_prefix("#/components/schemas/").expect("local ref");
            assert!(doc["components"]["schemas"][name].is_object(), "{r}");
        }
    }

    /// The router serves every route of [`ROUTES`] (so the OpenAPI test above holds
    /// the document to the router, not only to a list).
    #[tokio::test]
    async fn the_router_serves_exactly_the_listed_routes() {
        use tower::ServiceExt;
        let engine: ReadyEngine = Default::default();
        let limits = crate::ledger::CallLimits {
            timeout: Duration::from_secs(5),
            max_message_bytes: 1 << 20,
        };
        let app = router(
            engine.clone(),
            InferenceService::new(engine, limits),
            BearerAuth::new(None, false),
            1 << 20,
        );
        let send = |method: &str, path: &str| {
            let request = axum::http::Request::builder()
                .method(method.to_uppercase().as_str())
                .uri(path)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("{}"))
                .expect("a request");
            app.clone().oneshot(request)
        };
        // The fallbacks' answers: 405, or 404 saying "no endpoint".
        let unrouted = |r: Response| async move {
            let status = r.status();
            let body = axum::body::to_bytes(r.into_body(), 1 << 16)
                .await
                .expect("a body");
            status == StatusCode::METHOD_NOT_ALLOWED
                || String::from_utf8_lossy(&body).contains("no endpoint")
        };
        for (method, path) in ROUTES {
            let path = path
                .replace("{task}", "t")
                .replace("{model}", "t")
                .replace("{version}", "1");
            let r = send(method, &path).await.expect("an answer");
            assert!(!unrouted(r).await, "{method} {path} is not routed");
        }
        let r = send("get", "/v1/nope").await.expect("an answer");
        assert!(unrouted(r).await);
        let r = send("delete", "/v1/embed").await.expect("an answer");
        assert!(unrouted(r).await);
    }

    #[test]
    fn every_code_has_an_http_status() {
        for c in 0..17 {
            let code = Code::from(c);
            let s = http_status(code);
            assert_eq!(s.is_success(), code == Code::Ok, "{code:?}");
        }
        assert_eq!(http_status(Code::NotFound), StatusCode::NOT_FOUND);
        assert_eq!(
            http_status(Code::ResourceExhausted),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(http_status(Code::Unauthenticated), StatusCode::UNAUTHORIZED);
    }
}
