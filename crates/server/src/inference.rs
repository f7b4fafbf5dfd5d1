//! The `Inference` service: validate -> engine -> response, with metrics per call.
use std::{
    future::Future,
    sync::{Arc, OnceLock},
    time::Instant,
};

use metrics::gauge;
use polyhead_api::v1::{
    inference_server::Inference, ClassifyMultiRequest, ClassifyMultiResponse, ClassifyRequest,
    ClassifyResponse, EmbedRequest, EmbedResponse, Embedding, GetTaskRequest, InfoRequest,
    InfoResponse, ListTasksRequest, ListTasksResponse, TaskInfo, TaskSummary,
};
use tonic::{Request, Response, Status};

use crate::{convert::metrics_msg, metrics as m, Engine, ServerError};

/// The engine, once the backbone is loaded; empty before.
pub type ReadyEngine = Arc<OnceLock<Arc<Engine>>>;

/// Implements `polyhead.v1.Inference`.
#[derive(Debug, Clone)]
pub struct InferenceService {
    engine: ReadyEngine,
}

impl InferenceService {
    /// A service answering UNAVAILABLE until `engine` is set.
    pub fn new(engine: ReadyEngine) -> Self {
        InferenceService { engine }
    }
}

/// The loaded engine or UNAVAILABLE.
pub fn ready(engine: &ReadyEngine) -> Result<Arc<Engine>, ServerError> {
    engine
        .get()
        .cloned()
        .ok_or_else(|| ServerError::Unavailable("backbone is still loading; retry shortly".into()))
}

/// Runs one RPC body, recording its outcome, latency and the in-flight gauge.
pub async fn observe<T>(
    rpc: &'static str,
    task: &str,
    body: impl Future<Output = Result<T, ServerError>>,
) -> Result<Response<T>, Status> {
    let start = Instant::now();
    gauge!(m::IN_FLIGHT).increment(1.0);
    let result = body.await.map_err(Status::from);
    gauge!(m::IN_FLIGHT).decrement(1.0);
    let code = result
        .as_ref()
        .map_or_else(Status::code, |_| tonic::Code::Ok);
    m::request(rpc, task, code, start.elapsed());
    result.map(Response::new)
}

/// The task label for metrics: the task when it is live (unbounded client strings
/// must not become label values), else `unknown`.
fn task_label(engine: &ReadyEngine, task: &str) -> String {
    match engine.get() {
        Some(e) if e.registry.get(task).is_some() => task.to_owned(),
        _ => "unknown".to_owned(),
    }
}

#[tonic::async_trait]
impl Inference for InferenceService {
    async fn classify(
        &self,
        request: Request<ClassifyRequest>,
    ) -> Result<Response<ClassifyResponse>, Status> {
        let req = request.into_inner();
        let label = task_label(&self.engine, &req.task);
        observe("Classify", &label, async {
            let engine = ready(&self.engine)?;
            let _permit = engine.admit()?;
            // The head is snapshotted once: this request answers with this version
            // whatever swaps happen while it waits for the backbone.
            let head = engine.registry.get(&req.task).ok_or_else(|| {
                ServerError::NotFound(format!("task {:?} has no active head", req.task))
            })?;
            engine.validate_texts(&req.texts)?;
            let features = engine.features(&req.texts).await?;
            Engine::classify_with(&head, &features, req.top_k)
        })
        .await
    }

    async fn classify_multi(
        &self,
        request: Request<ClassifyMultiRequest>,
    ) -> Result<Response<ClassifyMultiResponse>, Status> {
        let req = request.into_inner();
        observe("ClassifyMulti", "multi", async {
            let engine = ready(&self.engine)?;
            let _permit = engine.admit()?;
            let live = engine.registry.snapshot();
            let heads = if req.tasks.is_empty() {
                let mut all: Vec<_> = live.values().cloned().collect();
                all.sort_by(|a, b| a.manifest.task.cmp(&b.manifest.task));
                all
            } else {
                req.tasks
                    .iter()
                    .map(|t| {
                        live.get(t).cloned().ok_or_else(|| {
                            ServerError::NotFound(format!("task {t:?} has no active head"))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?
            };
            if heads.is_empty() {
                return Err(ServerError::NotFound("no active tasks".into()));
            }
            engine.validate_texts(&req.texts)?;
            // One backbone pass for all the heads.
            let features = engine.features(&req.texts).await?;
            let responses = heads
                .iter()
                .map(|h| Engine::classify_with(h, &features, req.top_k))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(ClassifyMultiResponse { responses })
        })
        .await
    }

    async fn embed(
        &self,
        request: Request<EmbedRequest>,
    ) -> Result<Response<EmbedResponse>, Status> {
        let req = request.into_inner();
        observe("Embed", "", async {
            let engine = ready(&self.engine)?;
            let _permit = engine.admit()?;
            engine.validate_texts(&req.texts)?;
            let features = engine.features(&req.texts).await?;
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
        _: Request<ListTasksRequest>,
    ) -> Result<Response<ListTasksResponse>, Status> {
        observe("ListTasks", "", async {
            let engine = ready(&self.engine)?;
            let mut tasks: Vec<TaskSummary> = engine
                .registry
                .snapshot()
                .values()
                .map(|h| TaskSummary {
                    task: h.manifest.task.clone(),
                    active_version: h.manifest.version,
                    labels: h.manifest.labels.clone(),
                    head_kind: h.manifest.head.name().into(),
                })
                .collect();
            tasks.sort_by(|a, b| a.task.cmp(&b.task));
            Ok(ListTasksResponse { tasks })
        })
        .await
    }

    async fn get_task(
        &self,
        request: Request<GetTaskRequest>,
    ) -> Result<Response<TaskInfo>, Status> {
        let req = request.into_inner();
        let label = task_label(&self.engine, &req.task);
        observe("GetTask", &label, async {
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
            })
        })
        .await
    }

    async fn info(&self, _: Request<InfoRequest>) -> Result<Response<InfoResponse>, Status> {
        observe("Info", "", async {
            let engine = ready(&self.engine)?;
            let info = engine.info();
            Ok(InfoResponse {
                backbone: info.name.clone(),
                dim: info.dim as u32,
                fingerprint: info.fingerprint.clone(),
                max_seq_length: info.max_seq_length as u32,
                device: info.device.clone(),
                dtype: info.dtype.clone(),
                server_version: env!("CARGO_PKG_VERSION").into(),
            })
        })
        .await
    }
}
