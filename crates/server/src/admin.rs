//! The `Registry` service (admin): upload, train, activate, roll back, delete. Every
//! change goes through the store first, then the live set is swapped to match.
use std::{sync::Arc, time::Duration};

use metrics::counter;
use polyhead_api::v1::{
    registry_server::Registry, train_progress::Event, ActivateVersionRequest, DeleteTaskRequest,
    DeleteTaskResponse, EpochReport, ListVersionsRequest, ListVersionsResponse,
    RegisterHeadRequest, RegisterHeadResponse, RollbackRequest, StageProgress, TrainHeadRequest,
    TrainProgress, TrainResult, VersionInfo, VersionResponse,
};
use polyhead_heads::{validate_task_name, HeadArtifact};
use polyhead_trainer::{train_task, Budget, Progress, TrainRequest};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::{
    convert::{
        adapted_layers, candidate_msg, candidates_msg, dataset, metrics_msg, selection_line,
        train_options,
    },
    inference::{ready, ReadyEngine},
    ledger::{observe, CallLimits},
    logs::{CallInfo, Logged},
    metrics as m, Engine, ServerError,
};

/// Implements `polyhead.v1.Registry`.
#[derive(Debug, Clone)]
pub(crate) struct RegistryService {
    engine: ReadyEngine,
    limits: CallLimits,
}

impl RegistryService {
    /// A service answering UNAVAILABLE until `engine` is set.
    pub fn new(engine: ReadyEngine, limits: CallLimits) -> Self {
        RegistryService { engine, limits }
    }
}

/// Runs blocking store work off the async threads.
async fn blocking<T: Send + 'static>(
    engine: &Arc<Engine>,
    f: impl FnOnce(&Engine) -> Result<T, ServerError> + Send + 'static,
) -> Result<T, ServerError> {
    let engine = engine.clone();
    tokio::task::spawn_blocking(move || f(&engine))
        .await
        .map_err(|e| ServerError::Internal(e.to_string()))?
}

fn active_version(engine: &Engine, task: &str) -> Result<VersionResponse, ServerError> {
    let active = engine.heads().store().active(task)?.unwrap_or(0);
    Ok(VersionResponse {
        task: task.to_owned(),
        active_version: active,
    })
}

/// Sends a progress event if the stream has room: progress is best effort, so a
/// caller that stops reading (but stays connected) cannot stall the job past its
/// time limit. The final result is sent with waiting.
fn send(tx: &mpsc::Sender<Result<TrainProgress, Status>>, event: Event) {
    let _ = tx.try_send(Ok(TrainProgress { event: Some(event) }));
}

/// Holds an uploaded head to the limits a trained one meets (`train.max_labels`,
/// `train.max_hidden_dim`): every Classify pays for each label.
fn check_head_limits(engine: &Engine, artifact: &HeadArtifact) -> Result<(), ServerError> {
    let train = &engine.settings().train;
    let labels = artifact.manifest.labels.len();
    if labels > train.max_labels {
        return Err(ServerError::InvalidArgument(format!(
            "the head has {labels} labels; the limit is {} (train.max_labels)",
            train.max_labels
        )));
    }
    if let polyhead_heads::HeadKind::Mlp { hidden_dim } = artifact.manifest.head {
        if hidden_dim > train.max_hidden_dim {
            return Err(ServerError::InvalidArgument(format!(
                "the head's hidden layer has {hidden_dim} units; the limit is {} \
                 (train.max_hidden_dim)",
                train.max_hidden_dim
            )));
        }
    }
    Ok(())
}

/// Validates a TrainHead request against the data rules and `[train]` limits.
fn check_train_request(
    engine: &Engine,
    req: &TrainHeadRequest,
) -> Result<TrainRequest, ServerError> {
    validate_task_name(&req.task)?;
    // The examples are texts; an image backbone's trainer reads pictures from files,
    // which a remote caller must never name.
    if engine.info().input != "text" {
        return Err(ServerError::FailedPrecondition(format!(
            "TrainHead sends texts and this server's backbone ({}) reads images: train an \
             image task with `polyhead train --model DIR --data FOLDER --store STORE` (one \
             sub-folder per label) and this server swaps it in",
            engine.info().name
        )));
    }
    let train = dataset(&req.examples)?;
    if train.labels().len() < 2 {
        return Err(ServerError::InvalidArgument(format!(
            "examples need at least 2 distinct labels, found {:?}",
            train.labels()
        )));
    }
    let valid = if req.validation.is_empty() {
        None
    } else {
        Some(dataset(&req.validation)?)
    };
    let options = train_options(req.options.as_ref(), engine.settings().train.head)?;
    engine
        .settings()
        .train_limits()
        .check(&train, valid.as_ref(), &options)?;
    Ok(TrainRequest {
        task: req.task.clone(),
        train,
        valid,
        test: None,
        options,
        budget: Budget::unlimited(),
    })
}

/// Trains on a blocking thread, streaming progress, then stores (and, if asked and
/// the validation gate passes, activates) the new version.
async fn run_training(
    engine: &Arc<Engine>,
    treq: TrainRequest,
    tx: mpsc::Sender<Result<TrainProgress, Status>>,
    activate: bool,
    min_acc: f64,
) -> Result<TrainResult, ServerError> {
    blocking(engine, move |e| {
        let mut stage_start = std::time::Instant::now();
        let (artifact, report) = train_task(
            e.inference().encoder(),
            e.heads().feature_cache(),
            &treq,
            &mut |p| match p {
                Progress::Stage { name } => {
                    stage_start = std::time::Instant::now();
                    send(&tx, Event::Stage(name))
                }
                Progress::Features { done, total } => send(
                    &tx,
                    Event::Progress(StageProgress {
                        stage: "features".into(),
                        done: done as u64,
                        total: total as u64,
                        elapsed_s: stage_start.elapsed().as_secs_f64(),
                    }),
                ),
                Progress::Candidate(c) => send(&tx, Event::Candidate(candidate_msg(&c))),
                Progress::Epoch(r) => send(
                    &tx,
                    Event::Epoch(EpochReport {
                        epoch: r.epoch as u32,
                        train_loss: r.train_loss as f32,
                        validation_loss: r.validation_loss as f32,
                        validation_accuracy: r.validation_accuracy as f32,
                    }),
                ),
            },
        )?;
        let passes = report.validation.head.accuracy >= min_acc;
        let activated = activate && passes;
        let version = e
            .heads()
            .change_store(|s| Ok(s.put_and_activate(&artifact, activated)?))?;
        let note = if activate && !passes {
            format!(
                "not activated: validation accuracy {:.4} < min_validation_accuracy {min_acc:.4}",
                report.validation.head.accuracy
            )
        } else {
            String::new()
        };
        Ok(TrainResult {
            task: report.task.clone(),
            version,
            activated,
            head_metrics: Some(metrics_msg(&report.validation.head)),
            baseline_metrics: report.validation.baseline.as_ref().map(metrics_msg),
            note,
        })
    })
    .await
}

#[tonic::async_trait]
impl Registry for RegistryService {
    async fn register_head(
        &self,
        request: Request<RegisterHeadRequest>,
    ) -> Result<Response<RegisterHeadResponse>, Status> {
        let deadline = self.limits.deadline(&request);
        let info = CallInfo::of("RegisterHead", &request);
        let req = request.into_inner();
        // The task the upload names (read again, checked, by the decoder below).
        let task = serde_json::from_slice::<serde_json::Value>(&req.manifest_json)
            .ok()
            .and_then(|m| m.get("task").and_then(|t| t.as_str()).map(str::to_owned))
            .unwrap_or_default();
        let info = info.task(&task, crate::inference::task_label(&self.engine, &task));
        observe(info, self.limits, deadline, async {
            let engine = ready(&self.engine)?;
            let artifact = HeadArtifact::decode(&req.manifest_json, &req.safetensors)?;
            artifact.check_backbone(engine.heads().registry().backbone())?;
            check_head_limits(&engine, &artifact)?;
            let activate = req.activate;
            let task = artifact.manifest.task.clone();
            let version = blocking(&engine, move |e| {
                e.heads()
                    .change_store(|s| Ok(s.put_and_activate(&artifact, activate)?))
            })
            .await?;
            Ok(RegisterHeadResponse {
                task,
                version,
                activated: activate,
            })
        })
        .await
    }

    type TrainHeadStream = ReceiverStream<Result<TrainProgress, Status>>;

    async fn train_head(
        &self,
        request: Request<TrainHeadRequest>,
    ) -> Result<Response<Self::TrainHeadStream>, Status> {
        let client_deadline = self.limits.client_deadline(&request);
        let info = CallInfo::of("TrainHead", &request);
        let started = std::time::Instant::now();
        let req = request.into_inner();
        let info = info.task(
            &req.task,
            crate::inference::task_label(&self.engine, &req.task),
        );
        let engine = ready(&self.engine)?;
        let checked = check_train_request(&engine, &req);
        let treq = match checked {
            Ok(t) => t,
            Err(e) => {
                counter!(m::TRAIN_JOBS, "outcome" => "invalid").increment(1);
                return Err(e.into());
            }
        };
        // One job at a time; a second is refused at once rather than queued behind a
        // job that may run for train.max_seconds.
        let Ok(one_at_a_time) = engine.heads().train_lock().clone().try_lock_owned() else {
            counter!(m::TRAIN_JOBS, "outcome" => "busy").increment(1);
            return Err(ServerError::ResourceExhausted(
                "a training job is already running; retry when it ends".into(),
            )
            .into());
        };
        let mut budget = Budget::within(Duration::from_secs(engine.settings().train.max_seconds));
        if let Some(d) = client_deadline {
            budget = budget.until(d);
        }
        let treq = TrainRequest { budget, ..treq };
        let (tx, rx) = mpsc::channel(256);
        let (activate, min_acc) = (req.activate, f64::from(req.min_validation_accuracy));
        tokio::spawn(async move {
            // A caller that goes away cancels the job at its next check.
            let (watch_tx, stop) = (tx.clone(), treq.budget.clone());
            let watcher = tokio::spawn(async move {
                watch_tx.closed().await;
                stop.cancel();
            });
            let job = run_training(&engine, treq, tx.clone(), activate, min_acc).await;
            watcher.abort();
            // The next job may start now, even if this caller is slow to read the end.
            drop(one_at_a_time);
            let outcome = match &job {
                Ok(r) if r.activated || !activate => "ok",
                Ok(_) => "rejected",
                Err(ServerError::Trainer(polyhead_trainer::Error::Cancelled(_))) => "cancelled",
                Err(ServerError::Trainer(polyhead_trainer::Error::DeadlineExceeded(_))) => {
                    "timeout"
                }
                Err(_) => "failed",
            };
            counter!(m::TRAIN_JOBS, "outcome" => outcome).increment(1);
            let job = job.map_err(Status::from);
            let (code, version) = match &job {
                Ok(r) => (tonic::Code::Ok, r.version.to_string()),
                Err(s) => (s.code(), String::new()),
            };
            info.record(code, &version, started.elapsed());
            let msg = job.map(|r| TrainProgress {
                event: Some(Event::Done(r)),
            });
            let _ = tx.send(msg).await;
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn activate_version(
        &self,
        request: Request<ActivateVersionRequest>,
    ) -> Result<Response<VersionResponse>, Status> {
        let deadline = self.limits.deadline(&request);
        let info = CallInfo::of("ActivateVersion", &request);
        let req = request.into_inner();
        let info = info.task(
            &req.task,
            crate::inference::task_label(&self.engine, &req.task),
        );
        observe(info, self.limits, deadline, async {
            let engine = ready(&self.engine)?;
            blocking(&engine, move |e| {
                e.heads()
                    .change_store(|s| Ok(s.activate(&req.task, req.version)?))?;
                active_version(e, &req.task)
            })
            .await
        })
        .await
    }

    async fn rollback(
        &self,
        request: Request<RollbackRequest>,
    ) -> Result<Response<VersionResponse>, Status> {
        let deadline = self.limits.deadline(&request);
        let info = CallInfo::of("Rollback", &request);
        let req = request.into_inner();
        let info = info.task(
            &req.task,
            crate::inference::task_label(&self.engine, &req.task),
        );
        observe(info, self.limits, deadline, async {
            let engine = ready(&self.engine)?;
            blocking(&engine, move |e| {
                e.heads().change_store(|s| Ok(s.rollback(&req.task)?))?;
                active_version(e, &req.task)
            })
            .await
        })
        .await
    }

    async fn delete_task(
        &self,
        request: Request<DeleteTaskRequest>,
    ) -> Result<Response<DeleteTaskResponse>, Status> {
        let deadline = self.limits.deadline(&request);
        let info = CallInfo::of("DeleteTask", &request);
        let req = request.into_inner();
        let info = info.task(
            &req.task,
            crate::inference::task_label(&self.engine, &req.task),
        );
        observe(info, self.limits, deadline, async {
            let engine = ready(&self.engine)?;
            let task = req.task.clone();
            let n = blocking(&engine, move |e| {
                e.heads().change_store(|s| Ok(s.delete_task(&task)?))
            })
            .await?;
            Ok(DeleteTaskResponse {
                task: req.task,
                versions_deleted: n as u64,
            })
        })
        .await
    }

    async fn list_versions(
        &self,
        request: Request<ListVersionsRequest>,
    ) -> Result<Response<ListVersionsResponse>, Status> {
        let deadline = self.limits.deadline(&request);
        let info = CallInfo::of("ListVersions", &request);
        let req = request.into_inner();
        let info = info.task(
            &req.task,
            crate::inference::task_label(&self.engine, &req.task),
        );
        observe(info, self.limits, deadline, async {
            let engine = ready(&self.engine)?;
            blocking(&engine, move |e| {
                let versions = e.heads().store().versions(&req.task)?;
                if versions.is_empty() {
                    return Err(ServerError::NotFound(format!(
                        "task {:?} not found",
                        req.task
                    )));
                }
                let active = e.heads().store().active(&req.task)?;
                let infos = versions
                    .into_iter()
                    .map(|v| {
                        let manifest = e
                            .heads()
                            .store()
                            .load(&req.task, v)
                            .ok()
                            .map(|a| a.manifest);
                        let metrics = manifest.as_ref().and_then(|m| m.metrics.clone());
                        VersionInfo {
                            version: v,
                            active: active == Some(v),
                            head_kind: manifest
                                .as_ref()
                                .map(|m| m.head.name().to_owned())
                                .unwrap_or_default(),
                            selection: manifest.as_ref().map(selection_line).unwrap_or_default(),
                            candidates: manifest.as_ref().map(candidates_msg).unwrap_or_default(),
                            adapted_layers: manifest.as_ref().map_or(0, adapted_layers),
                            created_at: manifest.map(|m| m.created_at).unwrap_or_default(),
                            head_metrics: metrics.as_ref().map(|m| metrics_msg(&m.head)),
                            baseline_metrics: metrics
                                .as_ref()
                                .and_then(|m| m.baseline.as_ref())
                                .map(metrics_msg),
                        }
                    })
                    .collect();
                Ok(ListVersionsResponse {
                    task: req.task,
                    versions: infos,
                })
            })
            .await
        })
        .await
    }
}

impl Logged for RegisterHeadResponse {
    fn head_version(&self) -> String {
        self.version.to_string()
    }

    fn task(&self) -> Option<&str> {
        Some(&self.task)
    }
}

impl Logged for VersionResponse {
    fn head_version(&self) -> String {
        self.active_version.to_string()
    }
}

impl Logged for DeleteTaskResponse {}
impl Logged for ListVersionsResponse {}
