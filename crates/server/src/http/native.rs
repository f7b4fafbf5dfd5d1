//! polyhead's own routes: health, info, tasks, classify, classify-multi, embed.
use axum::{
    extract::{Path, State},
    http::request::Parts,
};
use polyhead_api::v1::{
    inference_server::Inference, ClassifyMultiRequest, ClassifyRequest, ClassifyResponse,
    EmbedRequest, GetTaskRequest, InfoRequest, ListTasksRequest,
};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{ok, Answer, Api, ApiError, JsonBody, QueryArgs};
use crate::{conn::ResponseBytes, inference::ready};

// ---------------------------------------------------------------------------
// Health, info, tasks

pub(super) async fn live() -> Answer {
    ok(json!({"status": "live"}), None)
}

pub(super) async fn ready_check(State(api): State<Api>) -> Result<Answer, ApiError> {
    ready(&api.engine).map_err(tonic::Status::from)?;
    Ok(ok(json!({"status": "ready"}), None))
}

pub(super) async fn info(State(api): State<Api>, parts: Parts) -> Result<Answer, ApiError> {
    let (i, hold) = api
        .call("Info", &parts, InfoRequest {}, |s, r| async move {
            s.info(r).await
        })
        .await?;
    Ok(ok(
        json!({
            "backbone": i.backbone, "dim": i.dim, "fingerprint": i.fingerprint,
            "max_seq_length": i.max_seq_length, "device": i.device, "dtype": i.dtype,
            "backend": i.backend, "input": i.input, "server_version": i.server_version,
        }),
        hold,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PageArgs {
    #[serde(default)]
    page_size: u32,
    #[serde(default)]
    page_token: String,
}

pub(super) async fn list_tasks(
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

pub(super) async fn task_info(
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

pub(super) async fn get_task(
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
pub(super) struct ClassifyBody {
    #[serde(default)]
    texts: Vec<String>,
    /// Pictures, base64 (standard alphabet, padded) of JPEG, PNG or WebP bytes.
    #[serde(default)]
    images: Vec<String>,
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

pub(super) async fn classify(
    State(api): State<Api>,
    parts: Parts,
    Path(task): Path<String>,
    JsonBody(body): JsonBody<ClassifyBody>,
) -> Result<Answer, ApiError> {
    let req = ClassifyRequest {
        task,
        texts: body.texts,
        images: images_of(body.images)?,
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
pub(super) struct ClassifyMultiBody {
    #[serde(default)]
    tasks: Vec<String>,
    #[serde(default)]
    texts: Vec<String>,
    #[serde(default)]
    images: Vec<String>,
    #[serde(default)]
    top_k: u32,
}

pub(super) async fn classify_multi(
    State(api): State<Api>,
    parts: Parts,
    JsonBody(body): JsonBody<ClassifyMultiBody>,
) -> Result<Answer, ApiError> {
    let req = ClassifyMultiRequest {
        tasks: body.tasks,
        texts: body.texts,
        images: images_of(body.images)?,
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
pub(super) struct EmbedBody {
    #[serde(default)]
    texts: Vec<String>,
    #[serde(default)]
    images: Vec<String>,
}

/// The pictures of a JSON body: base64 strings to bytes.
fn images_of(images: Vec<String>) -> Result<Vec<Vec<u8>>, ApiError> {
    use base64::Engine as _;
    images
        .iter()
        .enumerate()
        .map(|(i, b)| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .map_err(|e| ApiError::invalid(format!("images[{i}] is not base64: {e}")))
        })
        .collect()
}

pub(super) async fn embed(
    State(api): State<Api>,
    parts: Parts,
    JsonBody(body): JsonBody<EmbedBody>,
) -> Result<Answer, ApiError> {
    let (r, hold) = api
        .call(
            "Embed",
            &parts,
            EmbedRequest {
                texts: body.texts,
                images: images_of(body.images)?,
            },
            |s, r| async move { s.embed(r).await },
        )
        .await?;
    let embeddings: Vec<&Vec<f32>> = r.embeddings.iter().map(|e| &e.values).collect();
    Ok(ok(json!({"dim": r.dim, "embeddings": embeddings}), hold))
}
