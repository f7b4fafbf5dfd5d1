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
};

use serde::{Deserialize, Serialize};

use crate::{error::io, validate_task_name, BackboneRef, Error, HeadArtifact, Result};

const ACTIVE: &str = "ACTIVE";
const LOCK: &str = ".lock";
const MANIFEST: &str = "manifest.json";
const WEIGHTS: &str = "head.safetensors";
/// Activation history kept for rollback.
const HISTORY: usize = 32;

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

/// `ACTIVE`: the active version and the ones active before it, newest last.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
struct ActivePointer {
    version: u64,
    #[serde(default)]
    previous: Vec<u64>,
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

    /// Tasks with at least one stored version, sorted.
    pub fn tasks(&self) -> Result<Vec<String>> {
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

    /// Stored versions of `task`, ascending (empty if the task is unknown).
    pub fn versions(&self, task: &str) -> Result<Vec<u64>> {
        let dir = self.task_dir(task)?;
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&dir)(e)),
        };
        let mut versions = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io(&dir))?;
            if let Some(v) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u64>().ok())
            {
                versions.push(v);
            }
        }
        versions.sort_unstable();
        Ok(versions)
    }

    fn pointer(&self, task: &str) -> Result<Option<ActivePointer>> {
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

    /// The active version of `task`, if one is active.
    pub fn active(&self, task: &str) -> Result<Option<u64>> {
        Ok(self.pointer(task)?.map(|p| p.version))
    }

    /// Reads and validates one stored version.
    pub fn load(&self, task: &str, version: u64) -> Result<HeadArtifact> {
        let dir = self.task_dir(task)?.join(version.to_string());
        if !dir.is_dir() {
            return Err(Error::VersionNotFound {
                task: task.to_owned(),
                version,
            });
        }
        let manifest = fs::read(dir.join(MANIFEST)).map_err(io(dir.join(MANIFEST)))?;
        let weights = fs::read(dir.join(WEIGHTS)).map_err(io(dir.join(WEIGHTS)))?;
        let artifact = HeadArtifact::decode(&manifest, &weights)?;
        if artifact.manifest.task != task || artifact.manifest.version != version {
            return Err(Error::InvalidArtifact(format!(
                "{} says task {:?} version {}",
                dir.display(),
                artifact.manifest.task,
                artifact.manifest.version
            )));
        }
        Ok(artifact)
    }

    /// Stores `artifact` as the task's next version and returns that version. The
    /// manifest's `version` is set here. Does not activate.
    pub fn put(&self, artifact: &HeadArtifact) -> Result<u64> {
        let task = artifact.manifest.task.clone();
        let dir = self.task_dir(&task)?;
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let weights = artifact.safetensors()?;
        let mut version = self.versions(&task)?.last().copied().unwrap_or(0) + 1;
        loop {
            let mut a = artifact.clone();
            a.manifest.version = version;
            let tmp = tempfile::Builder::new()
                .prefix(".tmp-")
                .tempdir_in(&dir)
                .map_err(io(&dir))?
                .keep();
            write_synced(&tmp.join(MANIFEST), &a.manifest_json())?;
            write_synced(&tmp.join(WEIGHTS), &weights)?;
            sync_dir(&tmp)?;
            // A crash here leaves the temp folder behind, as a real one would.
            self.check(FailPoint::BeforeVersionRename)?;
            let target = dir.join(version.to_string());
            // rename(2) onto an existing non-empty folder fails: another writer took
            // this number, so take the next.
            match fs::rename(&tmp, &target) {
                Ok(()) => {
                    sync_dir(&dir)?;
                    return Ok(version);
                }
                Err(_) if target.exists() => {
                    let _ = fs::remove_dir_all(&tmp);
                    version += 1;
                }
                Err(e) => {
                    let _ = fs::remove_dir_all(&tmp);
                    return Err(io(target)(e));
                }
            }
        }
    }

    /// Stores `artifact` and, if `activate`, makes it active. Returns the version.
    pub fn put_and_activate(&self, artifact: &HeadArtifact, activate: bool) -> Result<u64> {
        let version = self.put(artifact)?;
        if activate {
            self.check(FailPoint::BeforeActivate)?;
            self.activate(&artifact.manifest.task, version)?;
        }
        Ok(version)
    }

    /// Loads `version` and checks it can serve: a damaged or foreign version is
    /// refused with [`Error::NotLoadable`] before any pointer moves.
    fn loadable(&self, task: &str, version: u64) -> Result<()> {
        let checked = self.load(task, version).and_then(|a| match &self.backbone {
            Some(b) => a.check_backbone(b),
            None => Ok(()),
        });
        match checked {
            Ok(()) => Ok(()),
            Err(e @ (Error::VersionNotFound { .. } | Error::InvalidTaskName(_))) => Err(e),
            Err(e) => Err(Error::NotLoadable {
                task: task.to_owned(),
                version,
                reason: e.to_string(),
            }),
        }
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

    /// Makes `version` active (it must be stored, loadable, and fit the backbone).
    pub fn activate(&self, task: &str, version: u64) -> Result<()> {
        self.loadable(task, version)?;
        self.locked(task, || self.activate_locked(task, version))
    }

    fn activate_locked(&self, task: &str, version: u64) -> Result<()> {
        // A damaged pointer is replaced (its history is lost): activating a version
        // is how an operator repairs it.
        let mut pointer = match self.pointer(task) {
            Ok(p) => p.unwrap_or_default(),
            Err(e @ Error::DamagedPointer { .. }) => {
                tracing::warn!(task, error = %e, "replacing a damaged active pointer");
                ActivePointer::default()
            }
            Err(e) => return Err(e),
        };
        if pointer.version == version {
            return Ok(());
        }
        if pointer.version != 0 {
            pointer.previous.push(pointer.version);
        }
        let keep = pointer.previous.len().saturating_sub(HISTORY);
        pointer.previous.drain(..keep);
        pointer.version = version;
        self.write_pointer(task, &pointer)
    }

    /// Re-activates the version active before the current one. Returns it.
    /// The target is loaded and checked first: a damaged one is refused and the
    /// pointer stays where it is.
    pub fn rollback(&self, task: &str) -> Result<u64> {
        if self.versions(task)?.is_empty() {
            return Err(Error::TaskNotFound(task.to_owned()));
        }
        self.locked(task, || {
            let mut pointer = self
                .pointer(task)?
                .ok_or_else(|| Error::TaskNotFound(task.to_owned()))?;
            let stored = self.versions(task)?;
            // Skip history entries whose version has since been removed.
            while let Some(prev) = pointer.previous.pop() {
                if stored.contains(&prev) && prev != pointer.version {
                    self.loadable(task, prev)?;
                    pointer.version = prev;
                    self.write_pointer(task, &pointer)?;
                    return Ok(prev);
                }
            }
            Err(Error::NothingToRollBack(task.to_owned()))
        })
    }

    /// Deletes a task and all its versions. Returns how many versions there were.
    pub fn delete_task(&self, task: &str) -> Result<usize> {
        let dir = self.task_dir(task)?;
        let n = self.versions(task)?.len();
        if n == 0 {
            return Err(Error::TaskNotFound(task.to_owned()));
        }
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

    fn write_pointer(&self, task: &str, pointer: &ActivePointer) -> Result<()> {
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

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = File::create(path).map_err(io(path))?;
    f.write_all(bytes).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}
