//! The `Inference` service: validate -> engine -> response, with metrics per call.
use std::{
    future::Future,
    sync::{Arc, OnceLock},
    time::{Duration, Instant},
};

use metrics::gauge;
use polyhead_api::v1::{
    inference_server::Inference, Classification, ClassifyMultiRequest, ClassifyMultiResponse,
    ClassifyRequest, ClassifyResponse, EmbedRequest, EmbedResponse, Embedding, GetTaskRequest,
    InfoRequest, InfoResponse, LabelScore, ListTasksRequest, ListTasksResponse, TaskInfo,
    TaskSummary,
};
use tonic::{Code, Request, Response, Status};

use crate::{
    convert::{metrics_msg, selection_line},
    engine::{top_k_of, Classified},
    ledger::ResponseHold,
    logs::{CallInfo, Logged},
    metrics as m, Engine, ServerError,
};

/// The engine, once the backbone is loaded; empty before.
pub(crate) type ReadyEngine = Arc<OnceLock<Arc<Engine>>>;

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

/// Implements `polyhead.v1.Inference`.
#[derive(Debug, Clone)]
pub(crate) struct InferenceService {
    engine: ReadyEngine,
    limits: CallLimits,
}

impl InferenceService {
    /// A service answering UNAVAILABLE until `engine` is set.
    pub fn new(engine: ReadyEngine, limits: CallLimits) -> Self {
        InferenceService { engine, limits }
    }
}

/// The loaded engine or UNAVAILABLE.
pub(crate) fn ready(engine: &ReadyEngine) -> Result<Arc<Engine>, ServerError> {
    engine
        .get()
        .cloned()
        .ok_or_else(|| ServerError::Unavailable("backbone is still loading; retry shortly".into()))
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

/// The task label for metrics: the task when it is live (unbounded client strings
/// must not become label values), else `unknown`.
pub(crate) fn task_label(engine: &ReadyEngine, task: &str) -> String {
    match engine.get() {
        Some(e) if e.registry.get(task).is_some() => task.to_owned(),
        _ => "unknown".to_owned(),
    }
}

/// One page of ListTasks: tasks after `page_token` in name order, at most
/// `page_size` (0 or over the limit = `server.max_tasks_per_page`), and fewer when
/// the page would not fit in a response of `max_bytes`.
fn list_page(engine: &Engine, req: &ListTasksRequest, max_bytes: usize) -> ListTasksResponse {
    let limit = engine.settings.server.max_tasks_per_page;
    let size = match req.page_size as usize {
        0 => limit,
        n => n.min(limit),
    };
    let live = engine.registry.snapshot();
    let mut heads: Vec<_> = live
        .values()
        .filter(|h| h.manifest.task.as_str() > req.page_token.as_str())
        .collect();
    heads.sort_by(|a, b| a.manifest.task.cmp(&b.manifest.task));
    // Room for the token and the framing; a summary is a few bytes over its strings.
    let budget = max_bytes.saturating_sub(1024);
    let mut page = ListTasksResponse::default();
    let mut bytes = 0;
    for h in heads.iter().take(size) {
        let summary = TaskSummary {
            task: h.manifest.task.clone(),
            active_version: h.manifest.version,
            labels: h.manifest.labels.clone(),
            head_kind: h.manifest.head.name().into(),
        };
        let n = prost::Message::encoded_len(&summary) + 8;
        if bytes + n > budget && !page.tasks.is_empty() {
            break;
        }
        bytes += n;
        page.tasks.push(summary);
    }
    if page.tasks.len() < heads.len() {
        page.next_page_token = page
            .tasks
            .last()
            .map(|t| t.task.clone())
            .unwrap_or_default();
    }
    page
}

/// The protobuf answer of one head.
fn classify_msg(c: Classified) -> ClassifyResponse {
    ClassifyResponse {
        task: c.task,
        head_version: c.version,
        results: c
            .predictions
            .into_iter()
            .map(|p| Classification {
                label: p.label,
                score: p.score,
                scores: p
                    .scores
                    .into_iter()
                    .map(|(label, score)| LabelScore { label, score })
                    .collect(),
            })
            .collect(),
    }
}

#[tonic::async_trait]
impl Inference for InferenceService {
    async fn classify(
        &self,
        request: Request<ClassifyRequest>,
    ) -> Result<Response<ClassifyResponse>, Status> {
        let deadline = self.limits.deadline(&request);
        let info = CallInfo::of("Classify", &request);
        let req = request.into_inner();
        let info = info.task(&req.task, task_label(&self.engine, &req.task));
        observe(info, self.limits, deadline, async {
            let engine = ready(&self.engine)?;
            let _permit = engine.admit()?;
            // The head is snapshotted once: this request answers with this version
            // whatever swaps happen while it waits for the backbone.
            let head = engine.registry.get(&req.task).ok_or_else(|| {
                ServerError::NotFound(format!("task {:?} has no active head", req.task))
            })?;
            engine.validate_texts(&req.texts)?;
            engine.check_scores(req.texts.len() * top_k_of(&head, req.top_k))?;
            let features = engine.features(&req.texts, deadline).await?;
            Engine::classify_with(&head, &features, &req.texts, req.top_k).map(classify_msg)
        })
        .await
    }

    async fn classify_multi(
        &self,
        request: Request<ClassifyMultiRequest>,
    ) -> Result<Response<ClassifyMultiResponse>, Status> {
        let deadline = self.limits.deadline(&request);
        let info = CallInfo::of("ClassifyMulti", &request);
        let req = request.into_inner();
        let info = info.task(&req.tasks.join(","), "multi");
        observe(info, self.limits, deadline, async {
            let engine = ready(&self.engine)?;
            let _permit = engine.admit()?;
            engine.validate_texts(&req.texts)?;
            // Each task once, within the limits, before any backbone work.
            let heads = engine.heads_for(&req.tasks, req.texts.len(), req.top_k)?;
            // One backbone pass for all the heads.
            let features = engine.features(&req.texts, deadline).await?;
            let responses = heads
                .iter()
                .map(|h| {
                    Engine::classify_with(h, &features, &req.texts, req.top_k).map(classify_msg)
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(ClassifyMultiResponse { responses })
        })
        .await
    }

    async fn embed(
        &self,
        request: Request<EmbedRequest>,
    ) -> Result<Response<EmbedResponse>, Status> {
        let deadline = self.limits.deadline(&request);
        let info = CallInfo::of("Embed", &request);
        let req = request.into_inner();
        observe(info, self.limits, deadline, async {
            let engine = ready(&self.engine)?;
            let _permit = engine.admit()?;
            engine.validate_texts(&req.texts)?;
            let features = engine.features(&req.texts, deadline).await?;
            Ok(EmbedResponse {
                dim: engine.info().dim as u32,
                embeddings: features
                    .iter()
                    .map(|f| Embedding { values: f.to_vec() })
                    .collect(),
            })
        })
        .await
    }

    async fn list_tasks(
        &self,
        request: Request<ListTasksRequest>,
    ) -> Result<Response<ListTasksResponse>, Status> {
        let deadline = self.limits.deadline(&request);
        let info = CallInfo::of("ListTasks", &request);
        let req = request.into_inner();
        observe(info, self.limits, deadline, async {
            let engine = ready(&self.engine)?;
            Ok(list_page(&engine, &req, self.limits.max_message_bytes))
        })
        .await
    }

    async fn get_task(
        &self,
        request: Request<GetTaskRequest>,
    ) -> Result<Response<TaskInfo>, Status> {
        let deadline = self.limits.deadline(&request);
        let info = CallInfo::of("GetTask", &request);
        let req = request.into_inner();
        let info = info.task(&req.task, task_label(&self.engine, &req.task));
        observe(info, self.limits, deadline, async {
            let engine = ready(&self.engine)?;
            let head = engine.registry.get(&req.task).ok_or_else(|| {
                ServerError::NotFound(format!("task {:?} has no active head", req.task))
            })?;
            let store = engine.store.clone();
            let task = req.task.clone();
            let versions = tokio::task::spawn_blocking(move || store.versions(&task))
                .await
                .map_err(|e| ServerError::Internal(e.to_string()))??;
            let metrics = head.manifest.metrics.as_ref();
            Ok(TaskInfo {
                task: head.manifest.task.clone(),
                labels: head.manifest.labels.clone(),
                active_version: head.manifest.version,
                versions,
                head_kind: head.manifest.head.name().into(),
                head_metrics: metrics.map(|m| metrics_msg(&m.head)),
                baseline_metrics: metrics.and_then(|m| m.baseline.as_ref()).map(metrics_msg),
                backbone_fingerprint: head.manifest.backbone.fingerprint.clone(),
                created_at: head.manifest.created_at.clone(),
                selection: selection_line(&head.manifest),
            })
        })
        .await
    }

    async fn info(&self, request: Request<InfoRequest>) -> Result<Response<InfoResponse>, Status> {
        let deadline = self.limits.deadline(&request);
        observe(
            CallInfo::of("Info", &request),
            self.limits,
            deadline,
            async {
                let engine = ready(&self.engine)?;
                let info = engine.info();
                Ok(InfoResponse {
                    backbone: info.name.clone(),
                    dim: info.dim as u32,
                    fingerprint: info.fingerprint.clone(),
                    max_seq_length: info.max_seq_length as u32,
                    device: info.device.clone(),
                    dtype: info.dtype.clone(),
                    backend: info.backend.clone(),
                    server_version: env!("CARGO_PKG_VERSION").into(),
                })
            },
        )
        .await
    }
}

impl Logged for ClassifyResponse {
    fn head_version(&self) -> String {
        self.head_version.to_string()
    }
}

impl Logged for ClassifyMultiResponse {
    fn head_version(&self) -> String {
        let versions: Vec<String> = self
            .responses
            .iter()
            .map(|r| format!("{}={}", r.task, r.head_version))
            .collect();
        versions.join(",")
    }
}

impl Logged for TaskInfo {
    fn head_version(&self) -> String {
        self.active_version.to_string()
    }
}

impl Logged for EmbedResponse {}
impl Logged for ListTasksResponse {}
impl Logged for InfoResponse {}

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
