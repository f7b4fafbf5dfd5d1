//! The head control plane: the live heads, the store behind them, swaps that keep
//! the two in step, and the one-at-a-time training lock.
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use metrics::gauge;
use polyhead_heads::{HeadRegistry, HeadStore, SyncReport};
use polyhead_trainer::FeatureCache;

use crate::{metrics as m, ServerError};

/// See the module doc.
#[derive(Debug)]
pub(crate) struct HeadControl {
    registry: HeadRegistry,
    store: Arc<dyn HeadStore>,
    feature_cache: FeatureCache,
    /// Serialises every change of the live set with the store read that caused it, so
    /// a watcher sync can never re-install a version an admin call just replaced.
    swap_lock: Mutex<()>,
    /// The last error reported per task, so a damaged version is logged once, not at
    /// every poll.
    reported: Mutex<HashMap<String, String>>,
    /// One training job at a time (libtorch's seed is process-global).
    train_lock: Arc<tokio::sync::Mutex<()>>,
}

impl HeadControl {
    /// The control plane over `store` for heads of `registry`'s backbone; nothing is
    /// live until the first [`HeadControl::sync_store`].
    pub fn new(
        registry: HeadRegistry,
        store: Arc<dyn HeadStore>,
        feature_cache: FeatureCache,
    ) -> HeadControl {
        HeadControl {
            registry,
            store,
            feature_cache,
            swap_lock: Mutex::new(()),
            reported: Mutex::new(HashMap::new()),
            train_lock: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// The live heads.
    pub fn registry(&self) -> &HeadRegistry {
        &self.registry
    }

    /// The head store.
    pub fn store(&self) -> &Arc<dyn HeadStore> {
        &self.store
    }

    /// Disk cache of training features.
    pub fn feature_cache(&self) -> &FeatureCache {
        &self.feature_cache
    }

    /// The training lock: held by the one running job.
    pub fn train_lock(&self) -> &Arc<tokio::sync::Mutex<()>> {
        &self.train_lock
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
        for (task, version) in &report.foreign {
            tracing::info!(
                task,
                version,
                "trained on another backbone (a shared store); not served by this server"
            );
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
