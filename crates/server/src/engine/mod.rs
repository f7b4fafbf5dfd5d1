//! The engine: everything a request needs once the backbone is loaded, in two
//! parts with private state: the inference path ([`InferencePath`]: admission,
//! cache, tokenizers, batcher, heads applied) and the head control plane
//! ([`HeadControl`]: live heads, store, swaps, training lock). It speaks domain
//! types; only the service layer builds protobuf.
use std::{collections::HashSet, sync::Arc};

use polyhead_backbone::{BackboneInfo, EncoderHandle};
use polyhead_heads::{HeadArtifact, HeadRegistry, HeadStore};
use polyhead_trainer::backbone_ref;
use polyhead_trainer::FeatureCache;

use polyhead_settings::{ServerSettings, Settings};

use crate::ServerError;

mod control;
mod path;

pub(crate) use control::HeadControl;
pub(crate) use path::InferencePath;

/// One text's answer from one head.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Prediction {
    /// The best label.
    pub label: String,
    /// Its probability.
    pub score: f32,
    /// The top-k labels with their probabilities, best first.
    pub scores: Vec<(String, f32)>,
}

/// A head's answers to one request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Classified {
    /// The task.
    pub task: String,
    /// The head version that answered.
    pub version: u64,
    /// One per text, in request order.
    pub predictions: Vec<Prediction>,
}

/// The loaded server state shared by every service.
#[derive(Debug)]
pub(crate) struct Engine {
    inference: InferencePath,
    heads: HeadControl,
    settings: Settings,
}

impl Engine {
    /// Opens the store named by `store.url` for heads of `info`'s backbone (blocking).
    pub fn open_store(
        settings: &Settings,
        info: &BackboneInfo,
    ) -> Result<Arc<dyn HeadStore>, ServerError> {
        let store = settings.store.url.open(Some(backbone_ref(info)))?;
        Ok(Arc::from(store))
    }

    /// Builds the engine around a loaded encoder and an open store, and syncs the live
    /// heads from the store.
    pub fn new(
        encoder: EncoderHandle,
        settings: Settings,
        store: Arc<dyn HeadStore>,
    ) -> Result<Engine, ServerError> {
        let registry = HeadRegistry::new(backbone_ref(encoder.info()));
        let heads = HeadControl::new(
            registry,
            store,
            FeatureCache::new(settings.feature_cache_dir()),
        );
        let engine = Engine {
            inference: InferencePath::new(encoder, &settings.server),
            heads,
            settings,
        };
        engine.heads.sync_store()?;
        Ok(engine)
    }

    /// The inference path.
    pub fn inference(&self) -> &InferencePath {
        &self.inference
    }

    /// The head control plane.
    pub fn heads(&self) -> &HeadControl {
        &self.heads
    }

    /// The effective configuration.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The backbone description.
    pub fn info(&self) -> &BackboneInfo {
        self.inference.info()
    }

    /// The heads a ClassifyMulti names (empty = every live task), each once, in the
    /// order first named; refused before any work when the request is over
    /// `server.max_tasks_per_request` or its answer would be over
    /// `server.max_scores_per_response`.
    pub fn heads_for(
        &self,
        tasks: &[String],
        texts: usize,
        top_k: u32,
    ) -> Result<Vec<Arc<HeadArtifact>>, ServerError> {
        let max = self.settings.server.max_tasks_per_request;
        let live = self.heads.registry().snapshot();
        let heads = if tasks.is_empty() {
            let mut all: Vec<_> = live.values().cloned().collect();
            all.sort_by(|a, b| a.manifest.task.cmp(&b.manifest.task));
            all
        } else {
            let mut seen = HashSet::new();
            let mut heads = Vec::new();
            for t in tasks {
                if !seen.insert(t.as_str()) {
                    continue;
                }
                if seen.len() > max {
                    return Err(ServerError::InvalidArgument(format!(
                        "more than {max} distinct tasks in one request (server.max_tasks_per_request)"
                    )));
                }
                heads.push(live.get(t).cloned().ok_or_else(|| {
                    ServerError::NotFound(format!("task {t:?} has no active head"))
                })?);
            }
            heads
        };
        if heads.is_empty() {
            return Err(ServerError::NotFound("no active tasks".into()));
        }
        let per_text: usize = heads.iter().map(|h| top_k_of(h, top_k)).sum();
        self.inference
            .check_scores(texts.saturating_mul(per_text))?;
        Ok(heads)
    }
}

/// The request-text rules: 1..=`server.max_texts` texts of at most
/// `server.max_text_bytes` bytes each; the message names the key.
fn check_texts(limits: &ServerSettings, texts: &[String]) -> Result<(), ServerError> {
    if texts.is_empty() {
        return Err(ServerError::InvalidArgument(
            "texts is empty: send at least one text".into(),
        ));
    }
    if texts.len() > limits.max_texts {
        return Err(ServerError::InvalidArgument(format!(
            "{} texts in one request; the limit is {} (server.max_texts)",
            texts.len(),
            limits.max_texts
        )));
    }
    if let Some(i) = texts.iter().position(|t| is_blank(t)) {
        return Err(ServerError::InvalidArgument(format!(
            "text {i} is empty or holds only whitespace or control characters: \
             there is nothing to classify"
        )));
    }
    if let Some((i, t)) = texts
        .iter()
        .enumerate()
        .find(|(_, t)| t.len() > limits.max_text_bytes)
    {
        return Err(ServerError::InvalidArgument(format!(
            "text {i} has {} bytes; the limit is {} (server.max_text_bytes)",
            t.len(),
            limits.max_text_bytes
        )));
    }
    Ok(())
}

/// Whether `text` has nothing a tokenizer would read: empty, or only whitespace and
/// control characters (NUL included).
pub(crate) fn is_blank(text: &str) -> bool {
    text.chars().all(|c| c.is_whitespace() || c.is_control())
}

/// Label scores per text a `top_k` yields for `head` (0 = every label).
pub(crate) fn top_k_of(head: &HeadArtifact, top_k: u32) -> usize {
    let n = head.head.labels().len();
    if top_k == 0 {
        n
    } else {
        (top_k as usize).min(n)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Request validation (fuzzed): accepts exactly the requests within the
        /// limits, and every refusal names the key that refused it.
        #[test]
        fn text_rules_hold_for_any_request(texts in proptest::collection::vec(".{0,40}", 0..12),
                                           max_texts in 1usize..10, max_bytes in 1usize..60) {
            let mut limits = Settings::load(None, &[]).unwrap().server;
            limits.max_texts = max_texts;
            limits.max_text_bytes = max_bytes;
            let ok = !texts.is_empty() && texts.len() <= max_texts
                && texts.iter().all(|t| t.len() <= max_bytes && !is_blank(t));
            match check_texts(&limits, &texts) {
                Ok(()) => prop_assert!(ok),
                Err(e) => {
                    prop_assert!(!ok);
                    let m = e.to_string();
                    prop_assert!(m.contains("empty") || m.contains("server.max_texts")
                        || m.contains("server.max_text_bytes"), "{}", m);
                }
            }
        }
    }

    #[test]
    fn blank_texts_are_refused_and_real_ones_kept() {
        let limits = Settings::load(None, &[]).unwrap().server;
        for blank in ["", " ", "\t\n ", "\0\0", "\u{3000}", "\u{1b}\u{7}"] {
            let err = check_texts(&limits, &["fine".into(), blank.into()]).unwrap_err();
            assert!(
                err.to_string().contains("text 1 is empty"),
                "{blank:?}: {err}"
            );
        }
        for real in ["a", " ok ", "\0x", "日本"] {
            assert!(check_texts(&limits, &[real.into()]).is_ok(), "{real:?}");
        }
    }
}
