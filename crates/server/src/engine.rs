//! The engine: everything a request needs once the backbone is loaded: the batcher,
//! the tokenizer pool, the embedding cache, the live heads and the store. It speaks
//! domain types; only the service layer builds protobuf.
use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use metrics::{counter, gauge, histogram};
use polyhead_backbone::{BackboneInfo, EncoderHandle};
use polyhead_heads::{BackboneRef, HeadArtifact, HeadRegistry, HeadStore, SyncReport};
use polyhead_trainer::FeatureCache;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::{
    batcher::{BatchLimits, Batcher},
    cache::EmbeddingCache,
    metrics as m,
    settings::ServerSettings,
    ServerError, Settings,
};

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
    /// The model thread.
    pub encoder: EncoderHandle,
    batcher: Batcher,
    cache: EmbeddingCache,
    /// The live heads.
    pub registry: HeadRegistry,
    /// The head store.
    pub store: Arc<dyn HeadStore>,
    /// The effective configuration.
    pub settings: Settings,
    /// Disk cache of training features.
    pub feature_cache: FeatureCache,
    in_flight: Arc<Semaphore>,
    tokenizers: Arc<Semaphore>,
    /// Serialises every change of the live set with the store read that caused it, so
    /// a watcher sync can never re-install a version an admin call just replaced.
    swap_lock: Mutex<()>,
    /// The last error reported per task, so a damaged version is logged once, not at
    /// every poll.
    reported: Mutex<HashMap<String, String>>,
    /// One training job at a time (libtorch's seed is process-global).
    pub train_lock: Arc<tokio::sync::Mutex<()>>,
}

impl Engine {
    /// Opens the store named by `store.url` for heads of `info`'s backbone (blocking).
    pub fn open_store(
        settings: &Settings,
        info: &BackboneInfo,
    ) -> Result<Arc<dyn HeadStore>, ServerError> {
        let store = polyhead_heads::open_store(&settings.store.url, Some(backbone_ref(info)))?;
        Ok(Arc::from(store))
    }

    /// Builds the engine around a loaded encoder and an open store, and syncs the live
    /// heads from the store.
    pub fn new(
        encoder: EncoderHandle,
        settings: Settings,
        store: Arc<dyn HeadStore>,
    ) -> Result<Engine, ServerError> {
        let info = encoder.info().clone();
        let limits = BatchLimits {
            max_tokens: settings.server.max_batch_tokens,
            max_wait: Duration::from_millis(settings.server.max_wait_ms),
        };
        let workers = match settings.server.tokenize_workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let engine = Engine {
            batcher: Batcher::spawn(encoder.clone(), limits),
            cache: EmbeddingCache::new(&info.fingerprint, settings.server.cache_bytes),
            registry: HeadRegistry::new(backbone_ref(&info)),
            store,
            feature_cache: FeatureCache::new(settings.feature_cache_dir()),
            in_flight: Arc::new(Semaphore::new(settings.server.max_in_flight)),
            tokenizers: Arc::new(Semaphore::new(workers)),
            swap_lock: Mutex::new(()),
            reported: Mutex::new(HashMap::new()),
            train_lock: Arc::new(tokio::sync::Mutex::new(())),
            encoder,
            settings,
        };
        engine.sync_store()?;
        Ok(engine)
    }

    /// The backbone description.
    pub fn info(&self) -> &BackboneInfo {
        self.encoder.info()
    }

    /// Admits a request or refuses it at once with RESOURCE_EXHAUSTED.
    pub fn admit(&self) -> Result<OwnedSemaphorePermit, ServerError> {
        self.in_flight.clone().try_acquire_owned().map_err(|_| {
            counter!(m::SHED).increment(1);
            ServerError::ResourceExhausted(format!(
                "server busy: {} requests in flight (server.max_in_flight)",
                self.settings.server.max_in_flight
            ))
        })
    }

    /// Checks the texts of a request against the configured limits.
    pub fn validate_texts(&self, texts: &[String]) -> Result<(), ServerError> {
        check_texts(&self.settings.server, texts)
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
        let live = self.registry.snapshot();
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
        self.check_scores(texts.saturating_mul(per_text))?;
        Ok(heads)
    }

    /// Refuses an answer of more than `server.max_scores_per_response` label scores.
    pub fn check_scores(&self, scores: usize) -> Result<(), ServerError> {
        let max = self.settings.server.max_scores_per_response;
        if scores > max {
            return Err(ServerError::InvalidArgument(format!(
                "the answer would hold {scores} label scores; the limit is {max} \
                 (server.max_scores_per_response): send fewer texts or tasks, or set top_k"
            )));
        }
        Ok(())
    }

    /// Embeddings of `texts` in order: cache hits are free; the misses (deduplicated)
    /// are tokenized on the tokenizer pool (never on the async runtime: a long text
    /// would stall every request on that thread) and go through the batcher in one item.
    pub async fn features(
        &self,
        texts: &[String],
        deadline: Instant,
    ) -> Result<Vec<Arc<[f32]>>, ServerError> {
        let keys: Vec<_> = texts.iter().map(|t| self.cache.key(t)).collect();
        let mut out: Vec<Option<Arc<[f32]>>> = keys.iter().map(|k| self.cache.get(k)).collect();
        let hits = out.iter().filter(|o| o.is_some()).count();
        let mut unique: Vec<usize> = Vec::new();
        let mut slot_of = HashMap::new();
        for (i, o) in out.iter().enumerate() {
            if o.is_none() {
                slot_of.entry(keys[i]).or_insert_with(|| {
                    unique.push(i);
                    unique.len() - 1
                });
            }
        }
        counter!(m::CACHE_HITS).increment(hits as u64);
        counter!(m::CACHE_MISSES).increment((texts.len() - hits) as u64);
        if !unique.is_empty() {
            let miss_texts: Vec<String> = unique.iter().map(|&i| texts[i].clone()).collect();
            // Announced before tokenizing, so a batch forming meanwhile waits for it.
            let _on_the_way = self.batcher.on_the_way();
            let started = Instant::now();
            let ids = self.tokenize(miss_texts).await?;
            histogram!(m::TOKENIZE).record(started.elapsed().as_secs_f64());
            let tokens: usize = ids.iter().map(Vec::len).sum();
            let max = self.settings.server.max_request_tokens;
            if tokens > max {
                return Err(ServerError::InvalidArgument(format!(
                    "the texts hold {tokens} tokens after truncation; the limit is {max} \
                     (server.max_request_tokens): send fewer or shorter texts per request"
                )));
            }
            let started = Instant::now();
            let emb = self.batcher.embed(ids, deadline).await?;
            histogram!(m::EMBED).record(started.elapsed().as_secs_f64());
            let rows: Vec<Arc<[f32]>> = emb.rows().map(Arc::from).collect();
            for (slot, &i) in unique.iter().enumerate() {
                self.cache.put(keys[i], rows[slot].clone());
            }
            for (i, o) in out.iter_mut().enumerate() {
                if o.is_none() {
                    *o = Some(rows[slot_of[&keys[i]]].clone());
                }
            }
        }
        out.into_iter()
            .map(|o| o.ok_or_else(|| ServerError::Internal("embedding missing after batch".into())))
            .collect()
    }

    /// Token ids on a blocking thread, at most `server.tokenize_workers` at once.
    async fn tokenize(&self, texts: Vec<String>) -> Result<Vec<Vec<u32>>, ServerError> {
        let _worker = self
            .tokenizers
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ServerError::Unavailable("tokenizer pool closed".into()))?;
        let encoder = self.encoder.clone();
        tokio::task::spawn_blocking(move || encoder.tokenize(&texts))
            .await
            .map_err(|e| ServerError::Internal(format!("tokenizer thread: {e}")))?
            .map_err(ServerError::from)
    }

    /// Applies a head snapshot to features (and, for hybrid heads, the texts):
    /// probabilities, best label, top-k scores.
    pub fn classify_with(
        head: &HeadArtifact,
        features: &[Arc<[f32]>],
        texts: &[String],
        top_k: u32,
    ) -> Result<Classified, ServerError> {
        let started = Instant::now();
        let labels = head.head.labels();
        let k = top_k_of(head, top_k);
        let predictions = features
            .iter()
            .zip(texts)
            .map(|(f, text)| {
                let p = head.head.predict(f, text)?;
                let mut order: Vec<usize> = (0..p.len()).collect();
                order.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
                Ok(Prediction {
                    label: labels[order[0]].clone(),
                    score: p[order[0]],
                    scores: order[..k]
                        .iter()
                        .map(|&i| (labels[i].clone(), p[i]))
                        .collect(),
                })
            })
            .collect::<Result<Vec<_>, ServerError>>()?;
        histogram!(m::HEAD, "kind" => head.manifest.head.name())
            .record(started.elapsed().as_secs_f64());
        // Per task, whichever RPC asked (ClassifyMulti's calls are labelled `multi`).
        counter!(m::TASK_TEXTS, "task" => head.manifest.task.clone())
            .increment(predictions.len() as u64);
        Ok(Classified {
            task: head.manifest.task.clone(),
            version: head.manifest.version,
            predictions,
        })
    }

    /// Re-reads the store's active pointers and swaps changed heads in (blocking I/O).
    pub fn sync_store(&self) -> Result<SyncReport, ServerError> {
        let _guard = self.swap_lock.lock().unwrap_or_else(|p| p.into_inner());
        let report = self.registry.sync(self.store.as_ref())?;
        self.record(&report);
        Ok(report)
    }

    /// Runs a store change and then makes the live set match the store, as one step
    /// with respect to other swaps.
    pub fn change_store<T>(
        &self,
        f: impl FnOnce(&dyn HeadStore) -> Result<T, ServerError>,
    ) -> Result<T, ServerError> {
        let _guard = self.swap_lock.lock().unwrap_or_else(|p| p.into_inner());
        let out = f(self.store.as_ref())?;
        let report = self.registry.sync(self.store.as_ref())?;
        self.record(&report);
        Ok(out)
    }

    fn record(&self, report: &SyncReport) {
        let mut reported = self.reported.lock().unwrap_or_else(|p| p.into_inner());
        for (task, version) in &report.swapped {
            tracing::info!(task, version, "head swapped in");
            m::swapped(task, *version);
            reported.remove(task);
        }
        for task in &report.removed {
            tracing::info!(task, "head removed");
            m::removed(task);
            reported.remove(task);
        }
        for (task, err) in &report.errors {
            // Once per distinct error: the watcher meets the same damage every poll.
            if reported.get(task) == Some(err) {
                continue;
            }
            match self.registry.get(task) {
                Some(live) => tracing::warn!(
                    task, error = %err, serving = live.manifest.version,
                    "active version not loadable; the live version keeps serving"
                ),
                None => tracing::warn!(
                    task, error = %err,
                    "active version not loadable; the task has no live head"
                ),
            }
            reported.insert(task.clone(), err.clone());
        }
        // Every sync looks at every task: an error not seen this time is gone.
        reported.retain(|task, _| report.errors.iter().any(|(t, _)| t == task));
        gauge!(m::TASKS_LOADED).set(self.registry.snapshot().len() as f64);
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

/// The registry's view of a backbone.
pub(crate) fn backbone_ref(info: &BackboneInfo) -> BackboneRef {
    BackboneRef {
        name: info.name.clone(),
        fingerprint: info.fingerprint.clone(),
        dim: info.dim,
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
