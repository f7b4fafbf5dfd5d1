//! OpenAI's `POST /v1/embeddings`.
use axum::{extract::State, http::request::Parts};
use base64::Engine as _;
use polyhead_api::v1::{inference_server::Inference, EmbedRequest};
use serde::Deserialize;
use serde_json::{json, Value};
use tonic::Code;

use super::{ok, Answer, Api, ApiError, JsonBody};
use crate::inference::ready;

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
pub(super) struct OpenAiBody {
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

pub(super) async fn embeddings(
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
                images: Vec::new(),
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
    let encoder = engine.inference().encoder().clone();
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
