//! The filesystem head store: `<root>/<task>/<version>/{manifest.json,head.safetensors}`
//! plus `<root>/<task>/ACTIVE`, the active pointer with its activation history.
//!
//! Crash safety: a version is written into a hidden temp folder, fsynced, and renamed
//! into place (rename is atomic on POSIX filesystems); the pointer is written to a
//! temp file, fsynced, and renamed over `ACTIVE`, then the folder is fsynced. A crash
//! at any step leaves either the old or the new state, never a torn one; temp debris
//! (names starting with `.`) is ignored by readers.
//!
//! Several processes may share a store (replicas on one volume, `polyhead train`
//! beside a server): temp names are random (tempfile), so they never collide even
//! where every process is pid 1, and every read-modify-write of `ACTIVE` holds an
//! exclusive lock on `<task>/.lock`. A version is loaded and checked (and, with
//! [`FsHeadStore::with_backbone`], matched to the backbone) before the pointer moves to it.
use std::{
    fs::{self, File},
    io::Write,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use super::{check_loadable, ActiveHistory, HeadStore, StoredVersion};
use crate::{error::io, validate_task_name, BackboneRef, Error, HeadArtifact, Result};

const ACTIVE: &str = "ACTIVE";
const LOCK: &str = ".lock";
const MANIFEST: &str = "manifest.json";
const WEIGHTS: &str = "head.safetensors";
const RETIRED: &str = ".retired";
/// Temp debris older than this is a dead writer's, swept at open.
const STALE: Duration = Duration::from_secs(600);

/// Where a test can make the store stop as if the process died there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailPoint {
    /// After the version's files are written to the temp folder, before the rename.
    BeforeVersionRename,
    /// After the version is in place, before the active pointer changes.
    BeforeActivate,
    /// After the new pointer is written to its temp file, before the rename.
    BeforePointerRename,
}

/// A filesystem head store. Safe to share between processes: versions are
/// immutable and every change is one rename.
#[derive(Debug)]
pub struct FsHeadStore {
    root: PathBuf,
    backbone: Option<BackboneRef>,
    fail_at: Option<FailPoint>,
}

impl FsHeadStore {
    /// Opens (creating if needed) a store at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<FsHeadStore> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(io(&root))?;
        sweep_debris(&root);
        Ok(FsHeadStore {
            root,
            backbone: None,
            fail_at: None,
        })
    }

    /// Refuses to activate versions made for another backbone than `backbone`.
    pub fn with_backbone(mut self, backbone: BackboneRef) -> FsHeadStore {
        self.backbone = Some(backbone);
        self
    }

    /// Makes the store fail at `point` (tests: crash simulation).
    #[cfg(feature = "fail-points")]
    pub fn fail_at(&mut self, point: Option<FailPoint>) {
        self.fail_at = point;
    }

    /// The store's folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn check(&self, point: FailPoint) -> Result<()> {
        if self.fail_at == Some(point) {
            return Err(Error::Injected(point));
        }
        Ok(())
    }

    fn task_dir(&self, task: &str) -> Result<PathBuf> {
        validate_task_name(task)?;
        Ok(self.root.join(task))
    }

    fn pointer(&self, task: &str) -> Result<Option<ActiveHistory>> {
        let path = self.task_dir(task)?.join(ACTIVE);
        match fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| Error::DamagedPointer {
                        path: path.clone(),
                        msg: e.to_string(),
                    })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(path)(e)),
        }
    }

    /// Loads `version` and checks it can serve (see [`check_loadable`]).
    fn loadable(&self, task: &str, version: u64) -> Result<()> {
        check_loadable(
            self.read(task, version),
            self.backbone.as_ref(),
            task,
            version,
        )
    }

    /// Holds the task's lock (shared by every process on the store) while `f` runs.
    fn locked<T>(&self, task: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let path = self.task_dir(task)?.join(LOCK);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        file.lock().map_err(io(&path))?;
        let out = f();
        let _ = file.unlock();
        out
    }

    fn activate_locked(&self, task: &str, version: u64) -> Result<()> {
        // A damaged pointer is replaced (its history is lost): activating a version
        // is how an operator repairs it.
        let pointer = match self.pointer(task) {
            Ok(p) => p.unwrap_or_default(),
            Err(e @ Error::DamagedPointer { .. }) => {
                tracing::warn!(task, error = %e, "replacing a damaged active pointer");
                ActiveHistory::default()
            }
            Err(e) => return Err(e),
        };
        if pointer.version == version {
            return Ok(());
        }
        self.write_pointer(task, &pointer.activated(version))
    }

    /// The highest version a deleted incarnation of `task` had (0 = none).
    fn retired(&self, task: &str) -> Result<u64> {
        let path = self.root.join(RETIRED).join(task);
        match fs::read_to_string(&path) {
            Ok(s) => Ok(s.trim().parse().unwrap_or(0)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(io(path)(e)),
        }
    }

    /// Writes a version's files into a temp folder and renames it to `<task>/<version>`;
    /// `Ok(false)` when that number is taken. A failed write removes its temp folder.
    fn place(&self, task: &str, version: u64, stored: &StoredVersion) -> Result<bool> {
        let dir = self.task_dir(task)?;
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempdir_in(&dir)
            .map_err(io(&dir))?;
        let written = write_synced(&tmp.path().join(MANIFEST), &stored.manifest)
            .and_then(|()| write_synced(&tmp.path().join(WEIGHTS), &stored.weights))
            .and_then(|()| sync_dir(tmp.path()));
        written?; // on error, dropping `tmp` removes the folder
        let tmp = tmp.keep();
        // A crash here leaves the temp folder behind, as a real one would.
        self.check(FailPoint::BeforeVersionRename)?;
        let target = dir.join(version.to_string());
        // rename(2) onto an existing non-empty folder fails: another writer took
        // this number.
        match fs::rename(&tmp, &target) {
            Ok(()) => {
                sync_dir(&dir)?;
                Ok(true)
            }
            Err(_) if target.exists() => {
                let _ = fs::remove_dir_all(&tmp);
                Ok(false)
            }
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp);
                Err(io(target)(e))
            }
        }
    }

    fn write_pointer(&self, task: &str, pointer: &ActiveHistory) -> Result<()> {
        let dir = self.task_dir(task)?;
        let bytes =
            serde_json::to_vec(pointer).map_err(|e| Error::InvalidArtifact(e.to_string()))?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".ACTIVE.tmp-")
            .tempfile_in(&dir)
            .map_err(io(&dir))?;
        tmp.write_all(&bytes).map_err(io(tmp.path()))?;
        tmp.as_file().sync_all().map_err(io(tmp.path()))?;
        if let Err(e) = self.check(FailPoint::BeforePointerRename) {
            let _ = tmp.keep(); // a crash here leaves the temp file, as a real one would
            return Err(e);
        }
        tmp.persist(dir.join(ACTIVE))
            .map_err(|e| io(dir.join(ACTIVE))(e.error))?;
        sync_dir(&dir)
    }
}

impl HeadStore for FsHeadStore {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn tasks(&self) -> Result<Vec<String>> {
        let mut tasks = Vec::new();
        for entry in fs::read_dir(&self.root).map_err(io(&self.root))? {
            let entry = entry.map_err(io(&self.root))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            // A task folder that cannot be listed is still a task: its error is its
            // own, reported when it is read, and must not hide the other tasks.
            let listed = validate_task_name(&name).is_ok()
                && self.versions(&name).map_or(true, |v| !v.is_empty());
            if listed {
                tasks.push(name);
            }
        }
        tasks.sort();
        Ok(tasks)
    }

    fn versions(&self, task: &str) -> Result<Vec<u64>> {
        let dir = self.task_dir(task)?;
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&dir)(e)),
        };
        let mut versions = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io(&dir))?;
            // Only canonical numbers: "007" or "0" would name a folder that
            // `read` (which writes the number back out) never finds.
            if let Some(v) = entry.file_name().to_str().and_then(|n| {
                n.parse::<u64>()
                    .ok()
                    .filter(|v| *v > 0 && v.to_string() == n)
            }) {
                versions.push(v);
            }
        }
        versions.sort_unstable();
        Ok(versions)
    }

    fn history(&self, task: &str) -> Result<Option<ActiveHistory>> {
        self.pointer(task)
    }

    fn read(&self, task: &str, version: u64) -> Result<StoredVersion> {
        let dir = self.task_dir(task)?.join(version.to_string());
        // 0 is never a version (a folder named "0" is debris).
        if version == 0 || !dir.is_dir() {
            return Err(Error::VersionNotFound {
                task: task.to_owned(),
                version,
            });
        }
        let manifest = fs::read(dir.join(MANIFEST)).map_err(io(dir.join(MANIFEST)))?;
        let weights = fs::read(dir.join(WEIGHTS)).map_err(io(dir.join(WEIGHTS)))?;
        Ok(StoredVersion { manifest, weights })
    }

    fn put(&self, artifact: &HeadArtifact) -> Result<u64> {
        let task = artifact.manifest.task.clone();
        let last = self.versions(&task)?.last().copied().unwrap_or(0);
        let mut version = next_version(last.max(self.retired(&task)?), &task)?;
        let mut a = artifact.clone();
        loop {
            a.manifest.version = version;
            if self.place(&task, version, &StoredVersion::of(&a)?)? {
                return Ok(version);
            }
            // Another writer took this number: take the next.
            version = next_version(version, &task)?;
        }
    }

    fn put_and_activate(&self, artifact: &HeadArtifact, activate: bool) -> Result<u64> {
        let version = self.put(artifact)?;
        if activate {
            self.check(FailPoint::BeforeActivate)?;
            self.activate(&artifact.manifest.task, version)?;
        }
        Ok(version)
    }

    fn activate(&self, task: &str, version: u64) -> Result<()> {
        self.loadable(task, version)?;
        self.locked(task, || self.activate_locked(task, version))
    }

    fn rollback(&self, task: &str) -> Result<u64> {
        if self.versions(task)?.is_empty() {
            return Err(Error::TaskNotFound(task.to_owned()));
        }
        self.locked(task, || {
            let mut pointer = self
                .pointer(task)?
                .ok_or_else(|| Error::TaskNotFound(task.to_owned()))?;
            let stored = self.versions(task)?;
            let prev = pointer
                .rollback_target(&stored)
                .ok_or_else(|| Error::NothingToRollBack(task.to_owned()))?;
            self.loadable(task, prev)?;
            pointer.version = prev;
            self.write_pointer(task, &pointer)?;
            Ok(prev)
        })
    }

    fn delete_task(&self, task: &str) -> Result<usize> {
        let dir = self.task_dir(task)?;
        let versions = self.versions(task)?;
        let n = versions.len();
        if n == 0 {
            return Err(Error::TaskNotFound(task.to_owned()));
        }
        // The numbers stay taken (see the module doc), recorded before the task goes.
        let last = versions
            .last()
            .copied()
            .unwrap_or(0)
            .max(self.retired(task)?);
        let retired = self.root.join(RETIRED);
        fs::create_dir_all(&retired).map_err(io(&retired))?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&retired)
            .map_err(io(&retired))?;
        tmp.write_all(last.to_string().as_bytes())
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(io(tmp.path()))?;
        tmp.persist(retired.join(task))
            .map_err(|e| io(retired.join(task))(e.error))?;
        // One rename makes the task vanish for readers; the removal can then fail or
        // be interrupted without leaving a half-deleted task.
        // rename(2) may replace an empty folder: a fresh random one is the grave.
        let grave = tempfile::Builder::new()
            .prefix(&format!(".deleted-{task}-"))
            .tempdir_in(&self.root)
            .map_err(io(&self.root))?
            .keep();
        fs::rename(&dir, &grave).map_err(io(&dir))?;
        sync_dir(&self.root)?;
        fs::remove_dir_all(&grave).map_err(io(&grave))?;
        Ok(n)
    }

    fn import(&self, task: &str, version: u64, stored: &StoredVersion) -> Result<bool> {
        if version == 0 {
            return Err(Error::InvalidArtifact("version 0 cannot be stored".into()));
        }
        if self.place(task, version, stored)? {
            return Ok(true);
        }
        if self.read(task, version)? == *stored {
            Ok(false)
        } else {
            Err(Error::Conflict {
                task: task.to_owned(),
                version,
            })
        }
    }

    fn import_history(&self, task: &str, history: &ActiveHistory) -> Result<()> {
        if history.version != 0 && !self.versions(task)?.contains(&history.version) {
            return Err(Error::VersionNotFound {
                task: task.to_owned(),
                version: history.version,
            });
        }
        self.locked(task, || self.write_pointer(task, history))
    }
}

/// The version after `last`, or an error when the numbers are used up.
fn next_version(last: u64, task: &str) -> Result<u64> {
    last.checked_add(1).ok_or_else(|| {
        Error::InvalidArtifact(format!(
            "task {task:?} has used every version number (the last is {last}): delete \
             or rename the task"
        ))
    })
}

/// Removes temp debris (names starting with `.tmp-`, `.ACTIVE.tmp-`, `.deleted-`)
/// older than [`STALE`] from the store root, each task folder and `.retired`.
/// Best effort: what cannot be removed is logged and left.
fn sweep_debris(root: &Path) {
    let is_debris = |name: &str| {
        name.starts_with(".tmp-")
            || name.starts_with(".ACTIVE.tmp-")
            || name.starts_with(".deleted-")
    };
    let stale = |path: &Path| {
        fs::symlink_metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age >= STALE)
    };
    let Ok(top) = fs::read_dir(root) else { return };
    let mut dirs = vec![root.to_owned()];
    for entry in top.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !is_debris(&name) {
                dirs.push(entry.path());
            }
        }
    }
    for dir in dirs {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if !is_debris(&name) || !stale(&path) {
                continue;
            }
            let removed = if entry.file_type().is_ok_and(|t| t.is_dir()) {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            match removed {
                Ok(()) => {
                    tracing::info!(path = %path.display(), "removed a dead writer's temp files")
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot remove temp files")
                }
            }
        }
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = File::create(path).map_err(io(path))?;
    f.write_all(bytes).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}
