//! Head stores: immutable versions per task and an active pointer with its history.
//!
//! [`HeadStore`] is the contract; [`open_store`] picks the implementation from one
//! setting (`store.url`):
//! - a folder path (or `file://...`): [`FsHeadStore`], the embedded default;
//! - `postgres://...` / `postgresql://...`: [`PgHeadStore`], shared by many replicas,
//!   with change notification (LISTEN/NOTIFY).
//!
//! Every implementation keeps the same promises: versions never change once stored;
//! activation and rollback load and check the target (and its backbone, when the
//! store knows it) before the pointer moves; a change is all or nothing.
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::{BackboneRef, Error, HeadArtifact, Result};

mod folder;
mod postgres;

pub use folder::{FailPoint, FsHeadStore};
pub use postgres::PgHeadStore;

/// Activation history kept for rollback.
pub(crate) const HISTORY: usize = 32;

/// A task's active version and the versions active before it, newest last.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ActiveHistory {
    /// The active version (0 = none).
    pub version: u64,
    /// Versions active before, oldest first.
    #[serde(default)]
    pub previous: Vec<u64>,
}

impl ActiveHistory {
    /// The history after `version` becomes active (unchanged if it already is).
    pub fn activated(mut self, version: u64) -> ActiveHistory {
        if self.version == version {
            return self;
        }
        if self.version != 0 {
            self.previous.push(self.version);
        }
        let keep = self.previous.len().saturating_sub(HISTORY);
        self.previous.drain(..keep);
        self.version = version;
        self
    }

    /// Where a rollback goes: the newest earlier version still `stored`, taken off
    /// the history (entries whose version has since been removed are dropped on the
    /// way). The caller checks it loads, then sets `version` to it and saves.
    pub fn rollback_target(&mut self, stored: &[u64]) -> Option<u64> {
        while let Some(prev) = self.previous.pop() {
            if stored.contains(&prev) && prev != self.version {
                return Some(prev);
            }
        }
        None
    }
}

/// One stored version's two files, byte for byte as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredVersion {
    /// `manifest.json`.
    pub manifest: Vec<u8>,
    /// `head.safetensors`.
    pub weights: Vec<u8>,
}

impl StoredVersion {
    /// The bytes of `artifact`, as a store writes them.
    pub fn of(artifact: &HeadArtifact) -> Result<StoredVersion> {
        Ok(StoredVersion {
            manifest: artifact.manifest_json(),
            weights: artifact.safetensors()?,
        })
    }

    /// Decodes and validates the artifact, and checks it is `task`'s `version`.
    pub fn decode(&self, task: &str, version: u64) -> Result<HeadArtifact> {
        let artifact = HeadArtifact::decode(&self.manifest, &self.weights)?;
        if artifact.manifest.task != task || artifact.manifest.version != version {
            return Err(Error::InvalidArtifact(format!(
                "stored as {task:?} version {version}, but the manifest says task {:?} version {}",
                artifact.manifest.task, artifact.manifest.version
            )));
        }
        Ok(artifact)
    }
}

/// A versioned head store. Methods block (file or network I/O): async callers run
/// them on a blocking thread.
pub trait HeadStore: Send + Sync + std::fmt::Debug {
    /// Where the store is, for logs (a URL's password is hidden).
    fn location(&self) -> String;

    /// Tasks with at least one stored version, sorted.
    fn tasks(&self) -> Result<Vec<String>>;

    /// Stored versions of `task`, ascending (empty if the task is unknown).
    fn versions(&self, task: &str) -> Result<Vec<u64>>;

    /// The task's active version and history, if a version was ever activated.
    fn history(&self, task: &str) -> Result<Option<ActiveHistory>>;

    /// The active version of `task`, if one is active.
    fn active(&self, task: &str) -> Result<Option<u64>> {
        Ok(self.history(task)?.map(|h| h.version).filter(|&v| v != 0))
    }

    /// Every task with its active version (or that task's own error). Only an
    /// unreachable store fails the whole call.
    #[allow(clippy::type_complexity)]
    fn active_all(&self) -> Result<Vec<(String, Result<Option<u64>>)>> {
        Ok(self
            .tasks()?
            .into_iter()
            .map(|t| {
                let a = self.active(&t);
                (t, a)
            })
            .collect())
    }

    /// The bytes of one stored version.
    fn read(&self, task: &str, version: u64) -> Result<StoredVersion>;

    /// Reads and validates one stored version.
    fn load(&self, task: &str, version: u64) -> Result<HeadArtifact> {
        self.read(task, version)?.decode(task, version)
    }

    /// Stores `artifact` as its task's next version and returns that version (the
    /// manifest's `version` is set here). Does not activate.
    fn put(&self, artifact: &HeadArtifact) -> Result<u64>;

    /// Makes `version` active: it must be stored, loadable, and fit the backbone the
    /// store was opened for; otherwise the pointer stays where it is.
    fn activate(&self, task: &str, version: u64) -> Result<()>;

    /// Re-activates the version active before the current one and returns it; the
    /// target is checked first, as by [`HeadStore::activate`].
    fn rollback(&self, task: &str) -> Result<u64>;

    /// Deletes a task and all its versions; returns how many versions there were.
    fn delete_task(&self, task: &str) -> Result<usize>;

    /// Stores `stored` as exactly `task`'s `version` (copying between stores).
    /// Returns false when that version is already stored with the same bytes; a
    /// version stored with other bytes is an error, never overwritten.
    fn import(&self, task: &str, version: u64, stored: &StoredVersion) -> Result<bool>;

    /// Sets the task's active pointer and history as they are (copying between
    /// stores); the active version must be stored.
    fn import_history(&self, task: &str, history: &ActiveHistory) -> Result<()>;

    /// A counter that moves whenever another process may have changed the store,
    /// for stores that can tell (PostgreSQL's NOTIFY); `None` means "poll".
    fn changes(&self) -> Option<watch::Receiver<u64>> {
        None
    }

    /// Stores `artifact` and, if `activate`, makes it active. Returns the version.
    fn put_and_activate(&self, artifact: &HeadArtifact, activate: bool) -> Result<u64> {
        let version = self.put(artifact)?;
        if activate {
            self.activate(&artifact.manifest.task, version)?;
        }
        Ok(version)
    }
}

/// Checks that `stored` can serve as `task`'s `version` (and fits `backbone`): a
/// damaged or foreign version is [`Error::NotLoadable`], so no pointer moves to it.
pub(crate) fn check_loadable(
    stored: Result<StoredVersion>,
    backbone: Option<&BackboneRef>,
    task: &str,
    version: u64,
) -> Result<()> {
    let checked = stored
        .and_then(|s| s.decode(task, version))
        .and_then(|a| backbone.map_or(Ok(()), |b| a.check_backbone(b)));
    match checked {
        Ok(()) => Ok(()),
        Err(
            e @ (Error::VersionNotFound { .. }
            | Error::InvalidTaskName(_)
            | Error::Database { .. }
            | Error::Io { .. }),
        ) => Err(e),
        Err(e) => Err(Error::NotLoadable {
            task: task.to_owned(),
            version,
            reason: e.to_string(),
        }),
    }
}

/// Where heads are stored, parsed once from `store.url`: `postgres://` or
/// `postgresql://` is PostgreSQL (shared by replicas); `file://PATH` or any other
/// string is a folder. Displayed with any password hidden.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(from = "String", into = "String")]
pub enum StoreUrl {
    /// A folder: `<folder>/<task>/<version>/...`.
    Folder(std::path::PathBuf),
    /// A PostgreSQL connection URL.
    Postgres(String),
}

impl StoreUrl {
    /// Reads `url` (any string names a store).
    pub fn parse(url: &str) -> StoreUrl {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            StoreUrl::Postgres(url.to_owned())
        } else {
            StoreUrl::Folder(url.strip_prefix("file://").unwrap_or(url).into())
        }
    }

    /// The folder, for a folder store.
    pub fn folder(&self) -> Option<&std::path::Path> {
        match self {
            StoreUrl::Folder(p) => Some(p),
            StoreUrl::Postgres(_) => None,
        }
    }

    /// Whether other processes share it (a database: reachable later, pushed changes).
    pub fn is_shared(&self) -> bool {
        matches!(self, StoreUrl::Postgres(_))
    }

    /// Opens it (a folder that does not exist yet is created; the database schema is
    /// migrated). With `backbone`, activations of versions made for another backbone
    /// are refused.
    pub fn open(&self, backbone: Option<BackboneRef>) -> Result<Box<dyn HeadStore>> {
        match self {
            StoreUrl::Postgres(url) => Ok(Box::new(PgHeadStore::open(url, backbone)?)),
            StoreUrl::Folder(path) => {
                let store = FsHeadStore::open(path)?;
                Ok(Box::new(match backbone {
                    Some(b) => store.with_backbone(b),
                    None => store,
                }))
            }
        }
    }
}

impl From<String> for StoreUrl {
    fn from(url: String) -> StoreUrl {
        StoreUrl::parse(&url)
    }
}

impl From<StoreUrl> for String {
    fn from(url: StoreUrl) -> String {
        match url {
            StoreUrl::Folder(p) => p.to_string_lossy().into_owned(),
            StoreUrl::Postgres(u) => u,
        }
    }
}

impl std::fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreUrl::Folder(p) => write!(f, "{}", p.display()),
            StoreUrl::Postgres(u) => f.write_str(&postgres::redact(u)),
        }
    }
}

/// Opens the store `url` names ([`StoreUrl::parse`], then [`StoreUrl::open`]).
pub fn open_store(url: &str, backbone: Option<BackboneRef>) -> Result<Box<dyn HeadStore>> {
    StoreUrl::parse(url).open(backbone)
}

/// What [`copy_store`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CopyReport {
    /// Tasks copied.
    pub tasks: usize,
    /// Versions written to the target.
    pub copied: usize,
    /// Versions the target already had, byte for byte.
    pub unchanged: usize,
}

/// Copies every task, version and active history from `from` to `to`, bytes as
/// they are. Idempotent; a version stored in both with different bytes stops it.
pub fn copy_store(from: &dyn HeadStore, to: &dyn HeadStore) -> Result<CopyReport> {
    let mut report = CopyReport::default();
    for task in from.tasks()? {
        for version in from.versions(&task)? {
            if to.import(&task, version, &from.read(&task, version)?)? {
                report.copied += 1;
            } else {
                report.unchanged += 1;
            }
        }
        if let Some(history) = from.history(&task)? {
            to.import_history(&task, &history)?;
        }
        report.tasks += 1;
    }
    Ok(report)
}

#[cfg(test)]
mod url_tests {
    use super::StoreUrl;

    #[test]
    fn a_store_url_is_parsed_once_into_what_it_names() {
        assert_eq!(StoreUrl::parse("store"), StoreUrl::Folder("store".into()));
        assert_eq!(
            StoreUrl::parse("file:///var/heads"),
            StoreUrl::Folder("/var/heads".into())
        );
        for db in ["postgres://app:pw@db/heads", "postgresql://db/heads"] {
            let url = StoreUrl::parse(db);
            assert!(url.is_shared() && url.folder().is_none(), "{db}");
        }
        assert!(
            !StoreUrl::parse("postgres-backups/").is_shared(),
            "a folder named so"
        );
        // Shown without the password; given back to configuration as written.
        let db = StoreUrl::parse("postgres://app:s3cret@db:5432/heads");
        assert_eq!(db.to_string(), "postgres://app:***@db:5432/heads");
        assert_eq!(String::from(db), "postgres://app:s3cret@db:5432/heads");
    }
}
