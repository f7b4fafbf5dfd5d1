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
    extract::{
        rejection::{JsonRejection, QueryRejection},
        DefaultBodyLimit, FromRequest, FromRequestParts, Path, Query, State,
    },
    http::{header, request::Parts, HeaderValue, Method, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Router,
};
use base64::Engine as _;
use http_body::Frame;
use polyhead_api::v1::{
    inference_server::Inference, ClassifyMultiRequest, ClassifyRequest, ClassifyResponse,
    EmbedRequest, GetTaskRequest, InfoRequest, ListTasksRequest,
};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_stream::StreamExt;
use tonic::{metadata::MetadataMap, service::Interceptor, transport::server::Connected, Code};
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};

use crate::{
    auth::BearerAuth,
    conn::{self, ConnInfo, ConnLimits, ResponseBytes},
    inference::{ready, InferenceService, ReadyEngine},
    ledger::ResponseHold,
    logs::{CallInfo, RandomRequestId},
    status::code_name,
};

/// The OpenAPI document of this API (checked in; a test holds it to the routes).
pub const OPENAPI: &str = include_str!("../openapi.json");

/// What the handlers share.
#[derive(Clone)]
struct Api {
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
        .route("/health/live", get(live))
        .route("/health/ready", get(ready_check))
        .route("/v1/info", get(info))
        .route("/v1/tasks", get(list_tasks))
        .route("/v1/tasks/{task}", get(get_task))
        .route("/v1/tasks/{task}/classify", post(classify))
        .route("/v1/classify", post(classify_multi))
        .route("/v1/embed", post(embed))
        .route("/v1/embeddings", post(openai_embeddings))
        .route("/v2", get(kserve_server))
        .route("/v2/health/live", get(live))
        .route("/v2/health/ready", get(ready_check))
        .route("/v2/models/{model}", get(kserve_model))
        .route("/v2/models/{model}/ready", get(kserve_model_ready))
        .route(
            "/v2/models/{model}/versions/{version}",
            get(kserve_model_version),
        )
        .route("/v2/models/{model}/infer", post(kserve_infer))
        .route(
            "/v2/models/{model}/versions/{version}/infer",
            post(kserve_infer_version),
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
// Errors

/// An error answer: the gRPC code's name, its HTTP status and a message.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: Code,
    message: String,
}

impl ApiError {
    fn new(code: Code, message: impl Into<String>) -> ApiError {
        ApiError {
            status: http_status(code),
            code,
            message: message.into(),
        }
    }

    fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(Code::InvalidArgument, message)
    }
}

impl From<tonic::Status> for ApiError {
    fn from(s: tonic::Status) -> ApiError {
        ApiError::new(s.code(), s.message())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (
            self.status,
            axum::Json(json!({"error": self.message, "code": code_name(self.code)})),
        )
            .into_response();
        if self.code == Code::Unauthenticated {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

/// The HTTP status of a gRPC code (grpc-gateway's table).
pub(crate) fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

async fn not_found(method: Method, uri: axum::http::Uri) -> ApiError {
    let _ = method;
    ApiError::new(
        Code::NotFound,
        format!(
            "no endpoint {}; the API is described at GET /openapi.json",
            crate::logs::cut(uri.path())
        ),
    )
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> Response {
    let mut r = ApiError::new(
        Code::Unimplemented,
        format!(
            "{method} is not served on {}; the API is described at GET /openapi.json",
            crate::logs::cut(uri.path())
        ),
    )
    .into_response();
    *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    r
}

/// A JSON body, with its rejections answered as JSON errors.
struct JsonBody<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(JsonBody(v)),
            Err(e) => Err(json_rejection(e)),
        }
    }
}

fn json_rejection(e: JsonRejection) -> ApiError {
    match e {
        JsonRejection::MissingJsonContentType(_) => ApiError {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code: Code::InvalidArgument,
            message: "send the body as JSON with content-type: application/json".into(),
        },
        JsonRejection::BytesRejection(b) if b.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                code: Code::ResourceExhausted,
                message: "the request body is over server.max_message_bytes: send fewer texts"
                    .into(),
            }
        }
        other => ApiError::invalid(format!(
            "the body is not the JSON expected: {}",
            other.body_text()
        )),
    }
}

/// Query parameters, with rejections as JSON errors.
struct QueryArgs<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequestParts<S> for QueryArgs<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| QueryArgs(v))
            .map_err(|e: QueryRejection| ApiError::invalid(e.body_text()))
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

// ---------------------------------------------------------------------------
// Health, info, tasks

async fn live() -> Answer {
    ok(json!({"status": "live"}), None)
}

async fn ready_check(State(api): State<Api>) -> Result<Answer, ApiError> {
    ready(&api.engine).map_err(tonic::Status::from)?;
    Ok(ok(json!({"status": "ready"}), None))
}

async fn info(State(api): State<Api>, parts: Parts) -> Result<Answer, ApiError> {
    let (i, hold) = api
        .call("Info", &parts, InfoRequest {}, |s, r| async move {
            s.info(r).await
        })
        .await?;
    Ok(ok(
        json!({
            "backbone": i.backbone, "dim": i.dim, "fingerprint": i.fingerprint,
            "max_seq_length": i.max_seq_length, "device": i.device, "dtype": i.dtype,
            "backend": i.backend, "server_version": i.server_version,
        }),
        hold,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PageArgs {
    #[serde(default)]
    page_size: u32,
    #[serde(default)]
    page_token: String,
}

async fn list_tasks(
    State(api): State<Api>,
    parts: Parts,
    QueryArgs(q): QueryArgs<PageArgs>,
) -> Result<Answer, ApiError> {
    let req = ListTasksRequest {
        page_size: q.page_size,
        page_token: q.page_token,
    };
    let (page, hold) = api
        .call("ListTasks", &parts, req, |s, r| async move {
            s.list_tasks(r).await
        })
        .await?;
    let tasks: Vec<Value> = page
        .tasks
        .into_iter()
        .map(|t| {
            json!({"task": t.task, "active_version": t.active_version, "labels": t.labels,
                   "head_kind": t.head_kind})
        })
        .collect();
    Ok(ok(
        json!({"tasks": tasks, "next_page_token": page.next_page_token}),
        hold,
    ))
}

fn metrics_json(m: &polyhead_api::v1::Metrics) -> Value {
    json!({
        "accuracy": m.accuracy, "macro_precision": m.macro_precision,
        "macro_recall": m.macro_recall, "macro_f1": m.macro_f1, "n": m.n,
    })
}

async fn task_info(
    api: &Api,
    parts: &Parts,
    task: String,
) -> Result<(polyhead_api::v1::TaskInfo, Option<ResponseBytes>), ApiError> {
    api.call(
        "GetTask",
        parts,
        GetTaskRequest { task },
        |s, r| async move { s.get_task(r).await },
    )
    .await
}

async fn get_task(
    State(api): State<Api>,
    parts: Parts,
    Path(task): Path<String>,
) -> Result<Answer, ApiError> {
    let (t, hold) = task_info(&api, &parts, task).await?;
    Ok(ok(
        json!({
            "task": t.task, "labels": t.labels, "active_version": t.active_version,
            "versions": t.versions, "head_kind": t.head_kind,
            "head_metrics": t.head_metrics.as_ref().map(metrics_json),
            "baseline_metrics": t.baseline_metrics.as_ref().map(metrics_json),
            "backbone_fingerprint": t.backbone_fingerprint, "created_at": t.created_at,
            "selection": t.selection,
        }),
        hold,
    ))
}

// ---------------------------------------------------------------------------
// polyhead's own inference routes

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClassifyBody {
    texts: Vec<String>,
    #[serde(default)]
    top_k: u32,
}

fn classify_json(r: ClassifyResponse) -> Value {
    let results: Vec<Value> = r
        .results
        .into_iter()
        .map(|c| {
            let scores: Vec<Value> = c
                .scores
                .into_iter()
                .map(|s| json!({"label": s.label, "score": s.score}))
                .collect();
            json!({"label": c.label, "score": c.score, "scores": scores})
        })
        .collect();
    json!({"task": r.task, "head_version": r.head_version, "results": results})
}

async fn classify(
    State(api): State<Api>,
    parts: Parts,
    Path(task): Path<String>,
    JsonBody(body): JsonBody<ClassifyBody>,
) -> Result<Answer, ApiError> {
    let req = ClassifyRequest {
        task,
        texts: body.texts,
        top_k: body.top_k,
    };
    let (r, hold) = api
        .call("Classify", &parts, req, |s, r| async move {
            s.classify(r).await
        })
        .await?;
    Ok(ok(classify_json(r), hold))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClassifyMultiBody {
    #[serde(default)]
    tasks: Vec<String>,
    texts: Vec<String>,
    #[serde(default)]
    top_k: u32,
}

async fn classify_multi(
    State(api): State<Api>,
    parts: Parts,
    JsonBody(body): JsonBody<ClassifyMultiBody>,
) -> Result<Answer, ApiError> {
    let req = ClassifyMultiRequest {
        tasks: body.tasks,
        texts: body.texts,
        top_k: body.top_k,
    };
    let (r, hold) = api
        .call("ClassifyMulti", &parts, req, |s, r| async move {
            s.classify_multi(r).await
        })
        .await?;
    let responses: Vec<Value> = r.responses.into_iter().map(classify_json).collect();
    Ok(ok(json!({"responses": responses}), hold))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EmbedBody {
    texts: Vec<String>,
}

async fn embed(
    State(api): State<Api>,
    parts: Parts,
    JsonBody(body): JsonBody<EmbedBody>,
) -> Result<Answer, ApiError> {
    let (r, hold) = api
        .call(
            "Embed",
            &parts,
            EmbedRequest { texts: body.texts },
            |s, r| async move { s.embed(r).await },
        )
        .await?;
    let embeddings: Vec<&Vec<f32>> = r.embeddings.iter().map(|e| &e.values).collect();
    Ok(ok(json!({"dim": r.dim, "embeddings": embeddings}), hold))
}

// ---------------------------------------------------------------------------
// OpenAI: POST /v1/embeddings

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OpenAiInput {
    One(String),
    Many(Vec<String>),
    Tokens(serde::de::IgnoredAny),
}

#[derive(Debug, Deserialize)]
struct OpenAiBody {
    input: OpenAiInput,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    encoding_format: Option<String>,
    #[serde(default)]
    dimensions: Option<u64>,
    /// Accepted and ignored, as OpenAI's clients send it.
    #[serde(default)]
    #[allow(dead_code)]
    user: Option<String>,
}

async fn openai_embeddings(
    State(api): State<Api>,
    parts: Parts,
    JsonBody(body): JsonBody<OpenAiBody>,
) -> Result<Answer, ApiError> {
    let texts = match body.input {
        OpenAiInput::One(t) => vec![t],
        OpenAiInput::Many(t) => t,
        OpenAiInput::Tokens(_) => {
            return Err(ApiError::invalid(
                "input must be a string or an array of strings (token ids are not accepted)",
            ))
        }
    };
    let base64 = match body.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "encoding_format {:?}: use \"float\" or \"base64\"",
                crate::logs::cut(other)
            )))
        }
    };
    let _ = body.model;
    let (r, hold) = api
        .call(
            "Embed",
            &parts,
            EmbedRequest {
                texts: texts.clone(),
            },
            |s, r| async move { s.embed(r).await },
        )
        .await?;
    if let Some(d) = body.dimensions {
        if d != u64::from(r.dim) {
            return Err(ApiError::invalid(format!(
                "dimensions {d}: this backbone's embeddings have {} (it cannot shorten them)",
                r.dim
            )));
        }
    }
    // Usage: the tokens the backbone read (after truncation, special tokens included).
    let engine = ready(&api.engine).map_err(tonic::Status::from)?;
    let encoder = engine.encoder.clone();
    let tokens: usize = tokio::task::spawn_blocking(move || encoder.tokenize(&texts))
        .await
        .map_err(|e| ApiError::new(Code::Internal, e.to_string()))?
        .map_err(|e| ApiError::new(Code::Internal, e.to_string()))?
        .iter()
        .map(Vec::len)
        .sum();
    let data: Vec<Value> = r
        .embeddings
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = e.values.iter().flat_map(|v| v.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(e.values)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    Ok(ok(
        json!({
            "object": "list", "data": data, "model": engine.info().name,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }),
        hold,
    ))
}

// ---------------------------------------------------------------------------
// KServe Open Inference Protocol v2

async fn kserve_server() -> Answer {
    ok(
        json!({"name": "polyhead", "version": env!("CARGO_PKG_VERSION"), "extensions": []}),
        None,
    )
}

fn kserve_metadata(t: &polyhead_api::v1::TaskInfo) -> Value {
    json!({
        "name": t.task,
        "versions": t.versions.iter().map(u64::to_string).collect::<Vec<_>>(),
        "platform": "polyhead",
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}],
        "outputs": [
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
            {"name": "score", "datatype": "FP32", "shape": [-1]},
            {"name": "top_labels", "datatype": "BYTES", "shape": [-1, -1]},
            {"name": "top_scores", "datatype": "FP32", "shape": [-1, -1]},
        ],
        "parameters": {"labels": t.labels, "active_version": t.active_version.to_string()},
    })
}

async fn kserve_model(
    State(api): State<Api>,
    parts: Parts,
    Path(model): Path<String>,
) -> Result<Answer, ApiError> {
    let (t, hold) = task_info(&api, &parts, model).await?;
    Ok(ok(kserve_metadata(&t), hold))
}

async fn kserve_model_version(
    State(api): State<Api>,
    parts: Parts,
    Path((model, version)): Path<(String, String)>,
) -> Result<Answer, ApiError> {
    let (t, hold) = task_info(&api, &parts, model).await?;
    served_version(&t, &version)?;
    let mut m = kserve_metadata(&t);
    m["versions"] = json!([version]);
    Ok(ok(m, hold))
}

async fn kserve_model_ready(
    State(api): State<Api>,
    parts: Parts,
    Path(model): Path<String>,
) -> Result<Answer, ApiError> {
    let (t, hold) = task_info(&api, &parts, model).await?;
    Ok(ok(json!({"name": t.task, "ready": true}), hold))
}

/// Only the active version answers: another stored version is refused with what to
/// do (polyhead serves one version per task; activate the one you want).
fn served_version(t: &polyhead_api::v1::TaskInfo, version: &str) -> Result<(), ApiError> {
    let Ok(v) = version.parse::<u64>() else {
        return Err(ApiError::invalid(format!(
            "model version {:?} is not a number",
            crate::logs::cut(version)
        )));
    };
    if v == t.active_version {
        return Ok(());
    }
    if t.versions.contains(&v) {
        return Err(ApiError::new(
            Code::FailedPrecondition,
            format!(
                "version {v} of {:?} is stored but not active (active: {}); activate it first \
                 (polyhead activate --task {} --version {v})",
                t.task, t.active_version, t.task
            ),
        ));
    }
    Err(ApiError::new(
        Code::NotFound,
        format!("task {:?} has no version {v}", t.task),
    ))
}

#[derive(Debug, Deserialize)]
struct InferBody {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: Option<serde_json::Map<String, Value>>,
    inputs: Vec<InferInput>,
    #[serde(default)]
    outputs: Option<Vec<InferOutputWanted>>,
}

#[derive(Debug, Deserialize)]
struct InferInput {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    data: Value,
}

#[derive(Debug, Deserialize)]
struct InferOutputWanted {
    name: String,
}

const OUTPUTS: [&str; 4] = ["label", "score", "top_labels", "top_scores"];

/// The texts of an infer request: one BYTES input whose data (flat or nested) holds
/// as many strings as its shape says.
fn infer_texts(inputs: Vec<InferInput>) -> Result<Vec<String>, ApiError> {
    let [input]: [InferInput; 1] = inputs.try_into().map_err(|v: Vec<_>| {
        ApiError::invalid(format!(
            "send exactly one input (the texts, datatype BYTES); got {}",
            v.len()
        ))
    })?;
    if input.datatype != "BYTES" {
        return Err(ApiError::invalid(format!(
            "input {:?} has datatype {:?}; the texts must be BYTES",
            crate::logs::cut(&input.name),
            crate::logs::cut(&input.datatype)
        )));
    }
    fn flatten(v: Value, out: &mut Vec<String>) -> Result<(), ApiError> {
        match v {
            Value::String(s) => out.push(s),
            Value::Array(a) => {
                for x in a {
                    flatten(x, out)?;
                }
            }
            _ => {
                return Err(ApiError::invalid(
                    "input data must be strings (an array, possibly nested)",
                ))
            }
        }
        Ok(())
    }
    let mut texts = Vec::new();
    flatten(input.data, &mut texts)?;
    let expected = input.shape.iter().try_fold(1u64, |n, &d| {
        u64::try_from(d).ok().and_then(|d| n.checked_mul(d))
    });
    if expected != Some(texts.len() as u64) {
        return Err(ApiError::invalid(format!(
            "input shape {:?} does not match its {} strings",
            input.shape,
            texts.len()
        )));
    }
    Ok(texts)
}

async fn kserve_infer(
    State(api): State<Api>,
    parts: Parts,
    Path(model): Path<String>,
    JsonBody(body): JsonBody<InferBody>,
) -> Result<Answer, ApiError> {
    infer(api, parts, model, None, body).await
}

async fn kserve_infer_version(
    State(api): State<Api>,
    parts: Parts,
    Path((model, version)): Path<(String, String)>,
    JsonBody(body): JsonBody<InferBody>,
) -> Result<Answer, ApiError> {
    infer(api, parts, model, Some(version), body).await
}

async fn infer(
    api: Api,
    parts: Parts,
    model: String,
    version: Option<String>,
    body: InferBody,
) -> Result<Answer, ApiError> {
    let texts = infer_texts(body.inputs)?;
    let top_k = match body.parameters.as_ref().and_then(|p| p.get("top_k")) {
        None => 0,
        Some(v) => v
            .as_u64()
            .and_then(|k| u32::try_from(k).ok())
            .ok_or_else(|| ApiError::invalid("parameters.top_k must be a whole number"))?,
    };
    let wanted: Vec<String> = match body.outputs {
        None => vec!["label".into(), "score".into()]
            .into_iter()
            .chain(
                (top_k > 0)
                    .then(|| ["top_labels".into(), "top_scores".into()])
                    .into_iter()
                    .flatten(),
            )
            .collect(),
        Some(o) => o.into_iter().map(|o| o.name).collect(),
    };
    if let Some(bad) = wanted.iter().find(|w| !OUTPUTS.contains(&w.as_str())) {
        return Err(ApiError::invalid(format!(
            "no output {:?}; the outputs are {OUTPUTS:?}",
            crate::logs::cut(bad)
        )));
    }
    let n = texts.len();
    // A named version is checked before any work, and again against the version
    // that answered (it may have been swapped meanwhile).
    if let Some(v) = &version {
        let (t, _) = task_info(&api, &parts, model.clone()).await?;
        served_version(&t, v)?;
    }
    let req = ClassifyRequest {
        task: model,
        texts,
        top_k,
    };
    let (r, hold) = api
        .call("Classify", &parts, req, |s, r| async move {
            s.classify(r).await
        })
        .await?;
    if let Some(v) = &version {
        if v.parse::<u64>().ok() != Some(r.head_version) {
            return Err(ApiError::new(
                Code::FailedPrecondition,
                format!(
                    "version {v} of {:?} was replaced by version {} while answering; ask again",
                    r.task, r.head_version
                ),
            ));
        }
    }
    let k = r.results.first().map_or(0, |c| c.scores.len());
    let outputs: Vec<Value> = wanted
        .iter()
        .map(|name| match name.as_str() {
            "label" => json!({"name": "label", "datatype": "BYTES", "shape": [n],
                "data": r.results.iter().map(|c| c.label.as_str()).collect::<Vec<_>>()}),
            "score" => json!({"name": "score", "datatype": "FP32", "shape": [n],
                "data": r.results.iter().map(|c| c.score).collect::<Vec<_>>()}),
            "top_labels" => json!({"name": "top_labels", "datatype": "BYTES", "shape": [n, k],
                "data": r.results.iter().flat_map(|c| c.scores.iter().map(|s| s.label.as_str())).collect::<Vec<_>>()}),
            _ => json!({"name": "top_scores", "datatype": "FP32", "shape": [n, k],
                "data": r.results.iter().flat_map(|c| c.scores.iter().map(|s| s.score)).collect::<Vec<_>>()}),
        })
        .collect();
    let mut answer = json!({
        "model_name": r.task, "model_version": r.head_version.to_string(), "outputs": outputs,
    });
    if let Some(id) = body.id {
        answer["id"] = json!(id);
    }
    Ok(ok(answer, hold))
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
    use super::*;

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

    #[test]
    fn infer_inputs_are_checked() {
        let input = |shape: Vec<i64>, datatype: &str, data: Value| InferInput {
            name: "text".into(),
            shape,
            datatype: datatype.into(),
            data,
        };
        assert_eq!(
            infer_texts(vec![input(vec![2], "BYTES", json!(["a", "b"]))]).unwrap(),
            vec!["a", "b"]
        );
        assert_eq!(
            infer_texts(vec![input(vec![2, 1], "BYTES", json!([["a"], ["b"]]))]).unwrap(),
            vec!["a", "b"]
        );
        for bad in [
            vec![input(vec![3], "BYTES", json!(["a", "b"]))],
            vec![input(vec![-1], "BYTES", json!(["a"]))],
            vec![input(vec![1], "FP32", json!([1.0]))],
            vec![input(vec![1], "BYTES", json!([1]))],
            vec![],
            vec![
                input(vec![1], "BYTES", json!(["a"])),
                input(vec![1], "BYTES", json!(["b"])),
            ],
        ] {
            let e = infer_texts(bad).unwrap_err();
            assert_eq!(e.code, Code::InvalidArgument);
        }
    }
}
