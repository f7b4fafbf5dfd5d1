//! The inference path: admission, request limits, the embedding cache, the
//! tokenizer pool and the batcher in front of the model thread, and applying a head.
//! Its state is private; services call its methods.
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use metrics::{counter, histogram};
use polyhead_backbone::{BackboneInfo, Branch, Encoded, EncoderHandle, Input};
use polyhead_heads::HeadArtifact;
use polyhead_settings::ServerSettings;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{check_texts, top_k_of, Classified, Prediction};
use crate::{
    batcher::{BatchLimits, Batcher},
    cache::EmbeddingCache,
    metrics as m, ServerError,
};

/// See the module doc.
#[derive(Debug)]
pub(crate) struct InferencePath {
    encoder: EncoderHandle,
    batcher: Batcher,
    cache: EmbeddingCache,
    in_flight: Arc<Semaphore>,
    tokenizers: Arc<Semaphore>,
    /// Pictures decoded or being decoded and not yet embedded (their crops wait in
    /// the batcher): `server.max_images_in_flight` bounds their memory.
    pictures: Arc<Semaphore>,
    limits: ServerSettings,
    /// Adapted tasks' branches, converted once per head version: task -> (branch
    /// id, branch). An entry is replaced when its task's version moves.
    branches: Mutex<HashMap<String, (String, Arc<Branch>)>>,
}

mod branches;
mod windows;

use windows::reads_windows;

/// What one head reads: the frozen features, every window's, or its branch's.
type Features = Vec<Arc<[f32]>>;

impl InferencePath {
    /// Starts the batcher for `encoder` (on the current tokio runtime) under the
    /// `[server]` limits.
    pub fn new(encoder: EncoderHandle, limits: &ServerSettings) -> InferencePath {
        let batch = BatchLimits {
            max_tokens: limits.max_batch_tokens,
            max_wait: Duration::from_millis(limits.max_wait_ms),
        };
        let workers = match limits.tokenize_workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        InferencePath {
            batcher: Batcher::spawn(encoder.clone(), batch),
            cache: EmbeddingCache::new(&encoder.info().fingerprint, limits.cache_bytes),
            in_flight: Arc::new(Semaphore::new(limits.max_in_flight)),
            tokenizers: Arc::new(Semaphore::new(workers)),
            pictures: Arc::new(Semaphore::new(limits.max_images_in_flight)),
            limits: limits.clone(),
            branches: Mutex::new(HashMap::new()),
            encoder,
        }
    }

    /// The features each of `heads` reads, in order: frozen heads share one frozen
    /// lookup (cache, then the batcher); adapted heads share one branch pass, in
    /// which the trunk runs once for all of them and each branch once.
    pub async fn features_for(
        &self,
        heads: &[Arc<HeadArtifact>],
        inputs: &[Input],
        deadline: Instant,
    ) -> Result<Vec<Features>, ServerError> {
        let branches = heads
            .iter()
            .map(|h| self.branch(h))
            .collect::<Result<Vec<_>, _>>()?;
        let frozen = if branches.iter().any(Option::is_none) {
            Some(self.features(inputs, deadline).await?)
        } else {
            None
        };
        // Heads that read every window: the frozen features are the first windows'.
        let windowed = match &frozen {
            Some(f) if heads.iter().any(|h| reads_windows(h)) => {
                Some(self.windowed_features(inputs, f, deadline).await?)
            }
            _ => None,
        };
        // (task, branch id, branch), each branch once.
        let mut distinct: Vec<(&str, String, Arc<Branch>)> = Vec::new();
        for (h, b) in heads.iter().zip(&branches) {
            if let Some((id, branch)) = b {
                if !distinct.iter().any(|d| d.1 == *id) {
                    distinct.push((&h.manifest.task, id.clone(), branch.clone()));
                }
            }
        }
        let adapted = if distinct.is_empty() {
            HashMap::new()
        } else {
            self.branch_features(&distinct, inputs, deadline).await?
        };
        branches
            .iter()
            .zip(heads)
            .map(|(b, h)| match b {
                None if reads_windows(h) => windowed
                    .clone()
                    .ok_or_else(|| ServerError::Internal("windowed features missing".into())),
                None => frozen
                    .clone()
                    .ok_or_else(|| ServerError::Internal("frozen features missing".into())),
                Some((id, _)) => adapted
                    .get(id)
                    .cloned()
                    .ok_or_else(|| ServerError::Internal("branch features missing".into())),
            })
            .collect()
    }

    /// The backbone description.
    pub fn info(&self) -> &BackboneInfo {
        self.encoder.info()
    }

    /// The model thread (training and token counting use it directly).
    pub fn encoder(&self) -> &EncoderHandle {
        &self.encoder
    }

    /// Admits a request or refuses it at once with RESOURCE_EXHAUSTED.
    pub fn admit(&self) -> Result<OwnedSemaphorePermit, ServerError> {
        self.in_flight.clone().try_acquire_owned().map_err(|_| {
            counter!(m::SHED).increment(1);
            ServerError::ResourceExhausted(format!(
                "server busy: {} requests in flight (server.max_in_flight)",
                self.limits.max_in_flight
            ))
        })
    }

    /// Permits for the pictures among `inputs`, or RESOURCE_EXHAUSTED at once when
    /// `server.max_images_in_flight` are already decoded or being decoded.
    fn admit_pictures(
        &self,
        inputs: &[Input],
    ) -> Result<Option<OwnedSemaphorePermit>, ServerError> {
        let n = inputs
            .iter()
            .filter(|i| matches!(i, Input::Image(_)))
            .count();
        if n == 0 {
            return Ok(None);
        }
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        self.pictures
            .clone()
            .try_acquire_many_owned(n)
            .map(Some)
            .map_err(|_| {
                counter!(m::SHED).increment(1);
                ServerError::ResourceExhausted(format!(
                    "server busy: {} pictures are being decoded or embedded \
                     (server.max_images_in_flight); retry shortly",
                    self.limits.max_images_in_flight
                ))
            })
    }

    /// Checks the texts of a request against the configured limits.
    pub fn validate_texts(&self, texts: &[String]) -> Result<(), ServerError> {
        check_texts(&self.limits, texts)
    }

    /// Checks the pictures of a request against the configured limits.
    pub fn validate_images(&self, images: &[Vec<u8>]) -> Result<(), ServerError> {
        let max = self.limits.max_images;
        if images.len() > max {
            return Err(ServerError::InvalidArgument(format!(
                "{} images in one request; the limit is {max} (server.max_images)",
                images.len()
            )));
        }
        let max = self.limits.max_image_bytes;
        if let Some((i, b)) = images.iter().enumerate().find(|(_, b)| b.len() > max) {
            return Err(ServerError::InvalidArgument(format!(
                "image {i} has {} bytes; the limit is {max} (server.max_image_bytes)",
                b.len()
            )));
        }
        if let Some(i) = images.iter().position(Vec::is_empty) {
            return Err(ServerError::InvalidArgument(format!(
                "image {i} is empty (0 bytes)"
            )));
        }
        Ok(())
    }

    /// Refuses an answer of more than `server.max_scores_per_response` label scores.
    pub fn check_scores(&self, scores: usize) -> Result<(), ServerError> {
        let max = self.limits.max_scores_per_response;
        if scores > max {
            return Err(ServerError::InvalidArgument(format!(
                "the answer would hold {scores} label scores; the limit is {max} \
                 (server.max_scores_per_response): send fewer texts or tasks, or set top_k"
            )));
        }
        Ok(())
    }

    /// Embeddings of `inputs` in order: cache hits are free; the misses (deduplicated)
    /// are prepared (texts tokenized) on the tokenizer pool (never on the async runtime: a long text
    /// would stall every request on that thread) and go through the batcher in one item.
    pub async fn features(
        &self,
        inputs: &[Input],
        deadline: Instant,
    ) -> Result<Vec<Arc<[f32]>>, ServerError> {
        let keys: Vec<_> = inputs.iter().map(|i| self.cache.key(i)).collect();
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
        counter!(m::CACHE_MISSES).increment((inputs.len() - hits) as u64);
        if !unique.is_empty() {
            let misses: Vec<Input> = unique.iter().map(|&i| inputs[i].clone()).collect();
            // Held until the crops are embedded: a crop is 150 KB where a text's
            // tokens are a few hundred bytes.
            let _pictures = self.admit_pictures(&misses)?;
            // Announced before tokenizing, so a batch forming meanwhile waits for it.
            let _on_the_way = self.batcher.on_the_way();
            let started = Instant::now();
            let ids = self.encode(misses).await?;
            histogram!(m::TOKENIZE).record(started.elapsed().as_secs_f64());
            self.check_tokens(&ids)?;
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

    /// Refuses prepared inputs over `server.max_request_tokens` (a picture counts its
    /// patches).
    fn check_tokens(&self, ids: &[Encoded]) -> Result<(), ServerError> {
        self.check_token_total(ids.iter().map(Encoded::len).sum(), "after truncation")
    }

    /// Refuses `tokens` over `server.max_request_tokens`; `read` says how a text's
    /// tokens were counted.
    fn check_token_total(&self, tokens: usize, read: &str) -> Result<(), ServerError> {
        let max = self.limits.max_request_tokens;
        if tokens <= max {
            return Ok(());
        }
        Err(ServerError::InvalidArgument(
            match self.info().input.as_str() {
                "image" => format!(
                    "the images count {tokens} patches; the limit is {max} \
                 (server.max_request_tokens): send fewer images per request"
                ),
                _ => format!(
                    "the texts hold {tokens} tokens {read}; the limit is {max} \
                 (server.max_request_tokens): send fewer or shorter texts per request"
                ),
            },
        ))
    }

    /// Inputs prepared on a blocking thread, at most `server.tokenize_workers` at once.
    async fn encode(&self, inputs: Vec<Input>) -> Result<Vec<Encoded>, ServerError> {
        self.on_tokenizer_pool(move |e| e.encode(&inputs)).await
    }

    /// Runs `work` on a blocking thread, at most `server.tokenize_workers` at once.
    async fn on_tokenizer_pool<T: Send + 'static>(
        &self,
        work: impl FnOnce(&EncoderHandle) -> polyhead_backbone::Result<T> + Send + 'static,
    ) -> Result<T, ServerError> {
        let _worker = self
            .tokenizers
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ServerError::Unavailable("tokenizer pool closed".into()))?;
        let encoder = self.encoder.clone();
        tokio::task::spawn_blocking(move || work(&encoder))
            .await
            .map_err(|e| ServerError::Internal(format!("tokenizer thread: {e}")))?
            .map_err(ServerError::from)
    }

    /// Applies a head snapshot to features (and, for hybrid heads, the inputs' texts):
    /// probabilities, best label, top-k scores.
    pub fn classify_with(
        head: &HeadArtifact,
        features: &[Arc<[f32]>],
        inputs: &[Input],
        top_k: u32,
    ) -> Result<Classified, ServerError> {
        let started = Instant::now();
        let labels = head.head.labels();
        let k = top_k_of(head, top_k);
        let predictions = features
            .iter()
            .zip(inputs)
            .map(|(f, input)| {
                let p = head.head.predict(f, input.text().unwrap_or_default())?;
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
}
