//! KServe's Open Inference Protocol v2: a task is a model, its active head version
//! the model version.
use axum::{
    extract::{Path, State},
    http::request::Parts,
};
use polyhead_api::v1::{inference_server::Inference, ClassifyRequest};
use serde::Deserialize;
use serde_json::{json, Value};
use tonic::Code;

use super::{native::task_info, ok, Answer, Api, ApiError, JsonBody};

// ---------------------------------------------------------------------------
// KServe Open Inference Protocol v2

pub(super) async fn server() -> Answer {
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

pub(super) async fn model(
    State(api): State<Api>,
    parts: Parts,
    Path(model): Path<String>,
) -> Result<Answer, ApiError> {
    let (t, hold) = task_info(&api, &parts, model).await?;
    Ok(ok(kserve_metadata(&t), hold))
}

pub(super) async fn model_version(
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

pub(super) async fn model_ready(
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
pub(super) struct InferBody {
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

pub(super) async fn infer(
    State(api): State<Api>,
    parts: Parts,
    Path(model): Path<String>,
    JsonBody(body): JsonBody<InferBody>,
) -> Result<Answer, ApiError> {
    run_infer(api, parts, model, None, body).await
}

pub(super) async fn infer_version(
    State(api): State<Api>,
    parts: Parts,
    Path((model, version)): Path<(String, String)>,
    JsonBody(body): JsonBody<InferBody>,
) -> Result<Answer, ApiError> {
    run_infer(api, parts, model, Some(version), body).await
}

async fn run_infer(
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
    // A named version is checked before any work against the live head (no store
    // read when it is the active one; the store's versions only to say what is
    // wrong), and again against the version that answered (it may have been swapped
    // meanwhile).
    if let Some(v) = &version {
        let live = api
            .engine
            .get()
            .and_then(|e| e.heads().registry().get(&model))
            .map(|h| h.manifest.version);
        if live.is_none() || v.parse::<u64>().ok() != live {
            let (t, _) = task_info(&api, &parts, model.clone()).await?;
            served_version(&t, v)?;
        }
    }
    let req = ClassifyRequest {
        task: model,
        texts,
        top_k,
        images: Vec::new(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
