//! The engine: everything a request needs once the backbone is loaded: the batcher,
//! the embedding cache, the live heads and the store.
use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use metrics::{counter, gauge};
use polyhead_api::v1::{Classification, ClassifyResponse, LabelScore};
use polyhead_backbone::{BackboneInfo, EncoderHandle};
use polyhead_heads::{BackboneRef, FsHeadStore, HeadArtifact, HeadRegistry, SyncReport};
use polyhead_trainer::FeatureCache;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::{
    batcher::{BatchLimits, Batcher},
    cache::EmbeddingCache,
    metrics as m, ServerError, Settings,
};

/// The loaded server state shared by every service.
#[derive(Debug)]
pub struct Engine {
    /// The model thread.
    pub encoder: EncoderHandle,
    batcher: Batcher,
    cache: EmbeddingCache,
    /// The live heads.
    pub registry: HeadRegistry,
    /// The head store.
    pub store: Arc<FsHeadStore>,
    /// The effective configuration.
    pub settings: Settings,
    /// Disk cache of training features.
    pub feature_cache: FeatureCache,
    in_flight: Arc<Semaphore>,
    /// Serialises every change of the live set with the store read that caused it, so
    /// a watcher sync can never re-install a version an admin call just replaced.
    swap_lock: Mutex<()>,
    /// One training job at a time (libtorch's seed is process-global).
    pub train_lock: tokio::sync::Mutex<()>,
}

impl Engine {
    /// Builds the engine around a loaded encoder and syncs the live heads from the store.
    pub fn new(encoder: EncoderHandle, settings: Settings) -> Result<Engine, ServerError> {
        let info = encoder.info().clone();
        let store = Arc::new(FsHeadStore::open(&settings.store.dir)?);
        let limits = BatchLimits {
            max_tokens: settings.server.max_batch_tokens,
            max_wait: Duration::from_millis(settings.server.max_wait_ms),
        };
        let engine = Engine {
            batcher: Batcher::spawn(encoder.clone(), limits),
            cache: EmbeddingCache::new(&info.fingerprint, settings.server.cache_bytes),
            registry: HeadRegistry::new(backbone_ref(&info)),
            store,
            feature_cache: FeatureCache::new(settings.feature_cache_dir()),
            in_flight: Arc::new(Semaphore::new(settings.server.max_in_flight)),
            swap_lock: Mutex::new(()),
            train_lock: tokio::sync::Mutex::new(()),
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
        let limits = &self.settings.server;
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

    /// Embeddings of `texts` in order: cache hits are free; the misses (deduplicated)
    /// go through the batcher in one item.
    pub async fn features(&self, texts: &[String]) -> Result<Vec<Arc<[f32]>>, ServerError> {
        let deadline =
            Instant::now() + Duration::from_millis(self.settings.server.request_timeout_ms);
        let keys: Vec<_> = texts.iter().map(|t| self.cache.key(t)).collect();
        let mut out: Vec<Option<Arc<[f32]>>> = keys.iter().map(|k| self.cache.get(k)).collect();
        let hits = out.iter().filter(|o| o.is_some()).count();
        let mut unique: Vec<usize> = Vec::new();
        let mut slot_of = std::collections::HashMap::new();
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
            let miss_texts: Vec<&str> = unique.iter().map(|&i| texts[i].as_str()).collect();
            let ids = self.encoder.tokenize(&miss_texts)?;
            let emb = self.batcher.embed(ids, deadline).await?;
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

    /// Applies a head snapshot to features: probabilities, best label, top-k scores.
    pub fn classify_with(
        head: &HeadArtifact,
        features: &[Arc<[f32]>],
        top_k: u32,
    ) -> Result<ClassifyResponse, ServerError> {
        let labels = head.head.labels();
        let k = if top_k == 0 {
            labels.len()
        } else {
            (top_k as usize).min(labels.len())
        };
        let results = features
            .iter()
            .map(|f| {
                let p = head.head.predict(f)?;
                let mut order: Vec<usize> = (0..p.len()).collect();
                order.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
                let scores = order[..k]
                    .iter()
                    .map(|&i| LabelScore {
                        label: labels[i].clone(),
                        score: p[i],
                    })
                    .collect();
                Ok(Classification {
                    label: labels[order[0]].clone(),
                    score: p[order[0]],
                    scores,
                })
            })
            .collect::<Result<Vec<_>, ServerError>>()?;
        Ok(ClassifyResponse {
            task: head.manifest.task.clone(),
            head_version: head.manifest.version,
            results,
        })
    }

    /// Re-reads the store's active pointers and swaps changed heads in (blocking I/O).
    pub fn sync_store(&self) -> Result<SyncReport, ServerError> {
        let _guard = self.swap_lock.lock().unwrap_or_else(|p| p.into_inner());
        let report = self.registry.sync(&self.store)?;
        self.record(&report);
        Ok(report)
    }

    /// Runs a store change and then makes the live set match the store, as one step
    /// with respect to other swaps. `f` returns the task it changed.
    pub fn change_store<T>(
        &self,
        f: impl FnOnce(&FsHeadStore) -> Result<T, ServerError>,
    ) -> Result<T, ServerError> {
        let _guard = self.swap_lock.lock().unwrap_or_else(|p| p.into_inner());
        let out = f(&self.store)?;
        let report = self.registry.sync(&self.store)?;
        self.record(&report);
        Ok(out)
    }

    fn record(&self, report: &SyncReport) {
        for (task, version) in &report.swapped {
            tracing::info!(task, version, "head swapped in");
            m::swapped(task, *version);
        }
        for task in &report.removed {
            tracing::info!(task, "head removed");
            m::removed(task);
        }
        for (task, err) in &report.errors {
            tracing::warn!(task, error = %err, "active version not loadable; previous head keeps serving");
        }
        gauge!(m::TASKS_LOADED).set(self.registry.snapshot().len() as f64);
    }
}

/// The registry's view of a backbone.
pub fn backbone_ref(info: &BackboneInfo) -> BackboneRef {
    BackboneRef {
        name: info.name.clone(),
        fingerprint: info.fingerprint.clone(),
        dim: info.dim,
    }
}
