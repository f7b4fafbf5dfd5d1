//! The live set of heads: an atomically swapped map from task to its active artifact.
//! Readers take an `Arc` snapshot and keep it for a whole request; a swap never blocks
//! them and never changes what an in-flight request sees.
use std::{collections::HashMap, sync::Arc};

use arc_swap::ArcSwap;

use crate::{BackboneRef, Error, HeadArtifact, HeadStore, Result};

/// Task name -> active head.
pub type HeadMap = HashMap<String, Arc<HeadArtifact>>;

/// What one [`HeadRegistry::sync`] changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncReport {
    /// Tasks whose live version changed (or appeared), with the new version.
    pub swapped: Vec<(String, u64)>,
    /// Tasks that left the live set.
    pub removed: Vec<String>,
    /// Tasks whose active version could not be loaded; their old head keeps serving.
    pub errors: Vec<(String, String)>,
    /// Tasks found this time whose active version was trained on another backbone
    /// (a store shared by a text and an image server): not served here, not an
    /// error, and not loaded again until their version changes.
    pub foreign: Vec<(String, u64)>,
}

/// The live, swappable set of heads for one backbone.
#[derive(Debug)]
pub struct HeadRegistry {
    heads: ArcSwap<HeadMap>,
    backbone: BackboneRef,
    /// Active versions known to be another backbone's, by task.
    foreign: std::sync::Mutex<HashMap<String, u64>>,
}

impl HeadRegistry {
    /// An empty registry for heads of `backbone`.
    pub fn new(backbone: BackboneRef) -> HeadRegistry {
        HeadRegistry {
            heads: ArcSwap::from_pointee(HashMap::new()),
            backbone,
            foreign: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The backbone heads must match.
    pub fn backbone(&self) -> &BackboneRef {
        &self.backbone
    }

    /// The live head of `task`.
    pub fn get(&self, task: &str) -> Option<Arc<HeadArtifact>> {
        self.heads.load().get(task).cloned()
    }

    /// A snapshot of every live head.
    pub fn snapshot(&self) -> Arc<HeadMap> {
        self.heads.load_full()
    }

    /// Makes `artifact` the live head of its task, after checking it fits the backbone.
    pub fn insert(&self, artifact: HeadArtifact) -> Result<()> {
        artifact.check_backbone(&self.backbone)?;
        let artifact = Arc::new(artifact);
        let task = artifact.manifest.task.clone();
        self.heads.rcu(|map| {
            let mut map = HeadMap::clone(map);
            map.insert(task.clone(), artifact.clone());
            map
        });
        Ok(())
    }

    /// Takes `task` out of the live set.
    pub fn remove(&self, task: &str) {
        self.heads.rcu(|map| {
            let mut map = HeadMap::clone(map);
            map.remove(task);
            map
        });
    }

    /// Brings the live set in line with the store's active pointers: loads every
    /// active version that differs from the live one, drops tasks the store no longer
    /// has. Errors stay with their task: a version that fails to load or to match the
    /// backbone, or a damaged pointer, is reported and that task's live head (if any)
    /// keeps serving; every other task syncs as usual. Only an unreadable store root
    /// fails the whole sync.
    pub fn sync(&self, store: &dyn HeadStore) -> Result<SyncReport> {
        let mut report = SyncReport::default();
        let live = self.snapshot();
        let pointers = store.active_all()?;
        for (task, active) in &pointers {
            let version = match active {
                Ok(Some(v)) => *v,
                Ok(None) => continue,
                Err(e) => {
                    report.errors.push((task.clone(), e.to_string()));
                    continue;
                }
            };
            if live.get(task).map(|h| h.manifest.version) == Some(version) {
                continue;
            }
            let mut foreign = self.foreign.lock().unwrap_or_else(|p| p.into_inner());
            if !live.contains_key(task) && foreign.get(task) == Some(&version) {
                continue;
            }
            match store.load(task, version).and_then(|a| self.insert(a)) {
                Ok(()) => {
                    foreign.remove(task);
                    report.swapped.push((task.clone(), version));
                }
                // A task this registry never served, made for another backbone.
                Err(Error::FingerprintMismatch { .. } | Error::DimMismatch { .. })
                    if !live.contains_key(task) =>
                {
                    foreign.insert(task.clone(), version);
                    report.foreign.push((task.clone(), version));
                }
                Err(e) => report
                    .errors
                    .push((task.clone(), format!("version {version}: {e}"))),
            }
        }
        self.foreign
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|task, _| pointers.iter().any(|(t, _)| t == task));
        let by_task: HashMap<&str, &Result<Option<u64>>> =
            pointers.iter().map(|(t, a)| (t.as_str(), a)).collect();
        for task in live.keys() {
            // Removed only when the store says so; an unreadable pointer keeps serving.
            let gone = by_task
                .get(task.as_str())
                .is_none_or(|active| matches!(active, Ok(None)));
            if gone {
                self.remove(task);
                report.removed.push(task.clone());
            }
        }
        Ok(report)
    }
}
