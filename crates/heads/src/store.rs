//! The filesystem head store: `<root>/<task>/<version>/{manifest.json,head.safetensors}`
//! plus `<root>/<task>/ACTIVE`, the active pointer with its activation history.
//!
//! Crash safety: a version is written into a hidden temp folder, fsynced, and renamed
//! into place (rename is atomic on POSIX filesystems); the pointer is written to a
//! temp file, fsynced, and renamed over `ACTIVE`, then the folder is fsynced. A crash
//! at any step leaves either the old or the new state, never a torn one; temp debris
//! (names starting with `.`) is ignored by readers.
use std::{
    fs::{self, File},
    io::Write,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

use serde::{Deserialize, Serialize};

use crate::{error::io, validate_task_name, Error, HeadArtifact, Result};

const ACTIVE: &str = "ACTIVE";
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
    fail_at: Option<FailPoint>,
}

static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);

impl FsHeadStore {
    /// Opens (creating if needed) a store at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<FsHeadStore> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(io(&root))?;
        Ok(FsHeadStore {
            root,
            fail_at: None,
        })
    }

    /// Makes the store fail at `point` (tests: crash simulation).
    #[doc(hidden)]
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
            if validate_task_name(&name).is_ok() && !self.versions(&name)?.is_empty() {
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
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::InvalidArtifact(format!("{}: {e}", path.display()))),
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
            let tmp = dir.join(format!(
                ".tmp-{}-{}",
                std::process::id(),
                TEMP_SEQ.fetch_add(1, Ordering::Relaxed)
            ));
            fs::create_dir(&tmp).map_err(io(&tmp))?;
            write_synced(&tmp.join(MANIFEST), &a.manifest_json())?;
            write_synced(&tmp.join(WEIGHTS), &weights)?;
            sync_dir(&tmp)?;
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

    /// Makes `version` active (it must be stored and loadable).
    pub fn activate(&self, task: &str, version: u64) -> Result<()> {
        self.load(task, version)?;
        let mut pointer = self.pointer(task)?.unwrap_or_default();
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
    pub fn rollback(&self, task: &str) -> Result<u64> {
        let mut pointer = self
            .pointer(task)?
            .ok_or_else(|| Error::TaskNotFound(task.to_owned()))?;
        let stored = self.versions(task)?;
        // Skip history entries whose version has since been removed.
        while let Some(prev) = pointer.previous.pop() {
            if stored.contains(&prev) && prev != pointer.version {
                pointer.version = prev;
                self.write_pointer(task, &pointer)?;
                return Ok(prev);
            }
        }
        Err(Error::NothingToRollBack(task.to_owned()))
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
        let grave = self.root.join(format!(
            ".deleted-{task}-{}",
            TEMP_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        fs::rename(&dir, &grave).map_err(io(&dir))?;
        sync_dir(&self.root)?;
        fs::remove_dir_all(&grave).map_err(io(&grave))?;
        Ok(n)
    }

    fn write_pointer(&self, task: &str, pointer: &ActivePointer) -> Result<()> {
        let dir = self.task_dir(task)?;
        let tmp = dir.join(format!(
            ".ACTIVE.tmp-{}-{}",
            std::process::id(),
            TEMP_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let bytes =
            serde_json::to_vec(pointer).map_err(|e| Error::InvalidArtifact(e.to_string()))?;
        write_synced(&tmp, &bytes)?;
        self.check(FailPoint::BeforePointerRename)?;
        fs::rename(&tmp, dir.join(ACTIVE)).map_err(io(&tmp))?;
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
