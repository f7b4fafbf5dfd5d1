//! The `Inference` service: validate -> engine -> response; each call accounted by
//! the ledger (`ledger::observe`).
use std::sync::{Arc, OnceLock};

use polyhead_api::v1::{
    inference_server::Inference, Classification, ClassifyMultiRequest, ClassifyMultiResponse,
    ClassifyRequest, ClassifyResponse, EmbedRequest, EmbedResponse, Embedding, GetTaskRequest,
    InfoRequest, InfoResponse, LabelScore, ListTasksRequest, ListTasksResponse, TaskInfo,
    TaskSummary,
};
use polyhead_backbone::Input;
use tonic::{Request, Response, Status};

use crate::{
    convert::{adapted_layers, candidates_msg, metrics_msg, selection_line},
    engine::{top_k_of, Classified, InferencePath},
    ledger::{observe, CallLimits},
    logs::{CallInfo, Logged},
    Engine, ServerError,
};

/// The engine, once the backbone is loaded; empty before.
pub(crate) type ReadyEngine = Arc<OnceLock<Arc<Engine>>>;

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

/// The task label for metrics: the task when it is live (unbounded client strings
/// must not become label values), else `unknown`.
pub(crate) fn task_label(engine: &ReadyEngine, task: &str) -> String {
    match engine.get() {
        Some(e) if e.heads().registry().get(task).is_some() => task.to_owned(),
        _ => "unknown".to_owned(),
    }
}

/// A request's inputs (moved, not copied): its texts or its pictures, checked
/// against the limits and against what the backbone reads.
fn inputs_of(
    engine: &Engine,
    texts: Vec<String>,
    images: Vec<Vec<u8>>,
) -> Result<Vec<Input>, ServerError> {
    let path = engine.inference();
    let reads = path.info().input.as_str();
    match (texts.is_empty(), images.is_empty(), reads) {
        (false, false, _) => Err(ServerError::InvalidArgument(
            "send texts or images, not both in one request".into(),
        )),
        (true, false, "image") => {
            path.validate_images(&images)?;
            Ok(images.into_iter().map(Input::Image).collect())
        }
        (true, false, _) => Err(ServerError::InvalidArgument(format!(
            "this server's backbone ({}) reads texts: send texts, not images",
            path.info().name
        ))),
        (false, true, "image") => Err(ServerError::InvalidArgument(format!(
            "this server's backbone ({}) reads images: send images (JPEG, PNG or WebP \
             bytes), not texts",
            path.info().name
        ))),
        (true, true, "image") => Err(ServerError::InvalidArgument(
            "images is empty: send at least one picture".into(),
        )),
        _ => {
            path.validate_texts(&texts)?;
            Ok(texts.into_iter().map(Input::Text).collect())
        }
    }
}

/// One page of ListTasks: tasks after `page_token` in name order, at most
/// `page_size` (0 or over the limit = `server.max_tasks_per_page`), and fewer when
/// the page would not fit in a response of `max_bytes`.
fn list_page(engine: &Engine, req: &ListTasksRequest, max_bytes: usize) -> ListTasksResponse {
    let limit = engine.settings().server.max_tasks_per_page;
    let size = match req.page_size as usize {
        0 => limit,
        n => n.min(limit),
    };
    let live = engine.heads().registry().snapshot();
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
        observe(info, self.limits, deadline, async move {
            let engine = ready(&self.engine)?;
            let _permit = engine.inference().admit()?;
            // The head is snapshotted once: this request answers with this version
            // whatever swaps happen while it waits for the backbone.
            let head = engine.heads().registry().get(&req.task).ok_or_else(|| {
                ServerError::NotFound(format!("task {:?} has no active head", req.task))
            })?;
            let inputs = inputs_of(&engine, req.texts, req.images)?;
            engine
                .inference()
                .check_scores(inputs.len() * top_k_of(&head, req.top_k))?;
            let features = engine
                .inference()
                .features_for(std::slice::from_ref(&head), &inputs, deadline)
                .await?
                .remove(0);
            InferencePath::classify_with(&head, &features, &inputs, req.top_k).map(classify_msg)
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
        observe(info, self.limits, deadline, async move {
            let engine = ready(&self.engine)?;
            let _permit = engine.inference().admit()?;
            let inputs = inputs_of(&engine, req.texts, req.images)?;
            // Each task once, within the limits, before any backbone work.
            let heads = engine.heads_for(&req.tasks, inputs.len(), req.top_k)?;
            // One backbone pass for the frozen heads; one branch pass (trunk once,
            // each branch once) for the adapted ones.
            let features = engine
                .inference()
                .features_for(&heads, &inputs, deadline)
                .await?;
            let responses = heads
                .iter()
                .zip(&features)
                .map(|(h, f)| {
                    InferencePath::classify_with(h, f, &inputs, req.top_k).map(classify_msg)
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
        observe(info, self.limits, deadline, async move {
            let engine = ready(&self.engine)?;
            let _permit = engine.inference().admit()?;
            let inputs = inputs_of(&engine, req.texts, req.images)?;
            let features = engine.inference().features(&inputs, deadline).await?;
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
            let head = engine.heads().registry().get(&req.task).ok_or_else(|| {
                ServerError::NotFound(format!("task {:?} has no active head", req.task))
            })?;
            let store = engine.heads().store().clone();
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
                candidates: candidates_msg(&head.manifest),
                adapted_layers: adapted_layers(&head.manifest),
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
                    input: info.input.clone(),
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
