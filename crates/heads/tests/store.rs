//! The filesystem store and the registry: atomicity, refusal of bad artifacts,
//! activation and rollback.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test
use std::fs;

use polyhead_heads::{Error, FailPoint, FsHeadStore, HeadArtifact, HeadRegistry, HeadStore};

mod common;
use common::{artifact, backbone};

fn store() -> (tempfile::TempDir, FsHeadStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = FsHeadStore::open(dir.path()).unwrap();
    (dir, store)
}

#[test]
fn put_load_roundtrip_and_versions_increase() {
    let (_d, s) = store();
    assert_eq!(s.put_and_activate(&artifact("spam", 1.0), true).unwrap(), 1);
    assert_eq!(
        s.put_and_activate(&artifact("spam", 2.0), false).unwrap(),
        2
    );
    assert_eq!(s.versions("spam").unwrap(), vec![1, 2]);
    assert_eq!(s.active("spam").unwrap(), Some(1));
    let loaded = s.load("spam", 2).unwrap();
    assert_eq!(loaded.head.layers()[0].weight[0], 2.0);
    assert_eq!(loaded.manifest.version, 2);
    assert_eq!(s.tasks().unwrap(), vec!["spam".to_string()]);
}

#[test]
fn rollback_restores_previous_version() {
    let (_d, s) = store();
    for m in [1.0, 2.0, 3.0] {
        s.put_and_activate(&artifact("t", m), true).unwrap();
    }
    assert_eq!(s.active("t").unwrap(), Some(3));
    assert_eq!(s.rollback("t").unwrap(), 2);
    assert_eq!(s.active("t").unwrap(), Some(2));
    assert_eq!(s.rollback("t").unwrap(), 1);
    assert!(matches!(s.rollback("t"), Err(Error::NothingToRollBack(_))));
    assert_eq!(s.active("t").unwrap(), Some(1));
    s.activate("t", 3).unwrap();
    assert_eq!(s.rollback("t").unwrap(), 1);
}

#[test]
fn crash_before_version_rename_leaves_store_as_it_was() {
    let (_d, mut s) = store();
    s.put_and_activate(&artifact("t", 1.0), true).unwrap();
    s.fail_at(Some(FailPoint::BeforeVersionRename));
    assert!(matches!(
        s.put_and_activate(&artifact("t", 2.0), true),
        Err(Error::Injected(_))
    ));
    // A fresh process opening the store sees the old state; the temp debris is ignored.
    let s = FsHeadStore::open(s.root()).unwrap();
    assert_eq!(s.versions("t").unwrap(), vec![1]);
    assert_eq!(s.active("t").unwrap(), Some(1));
    assert_eq!(s.put_and_activate(&artifact("t", 3.0), true).unwrap(), 2);
}

#[test]
fn crash_between_write_and_activate_keeps_old_version_active() {
    let (_d, mut s) = store();
    s.put_and_activate(&artifact("t", 1.0), true).unwrap();
    for point in [FailPoint::BeforeActivate, FailPoint::BeforePointerRename] {
        s.fail_at(Some(point));
        assert!(s.put_and_activate(&artifact("t", 2.0), true).is_err());
        s.fail_at(None);
        let reopened = FsHeadStore::open(s.root()).unwrap();
        assert_eq!(reopened.active("t").unwrap(), Some(1), "{point:?}");
        assert_eq!(
            reopened.load("t", 1).unwrap().head.layers()[0].weight[0],
            1.0
        );
    }
}

#[test]
fn corrupt_artifacts_are_refused_and_active_stays() {
    let (_d, s) = store();
    s.put_and_activate(&artifact("t", 1.0), true).unwrap();
    let registry = HeadRegistry::new(backbone());
    registry.sync(&s).unwrap();
    let good = artifact("t", 2.0);
    let manifest = good.manifest_json();
    let weights = good.safetensors().unwrap();

    let truncated = HeadArtifact::decode(&manifest, &weights[..weights.len() - 7]).unwrap_err();
    assert!(
        truncated.to_string().contains("head.safetensors"),
        "{truncated}"
    );
    let garbage = HeadArtifact::decode(b"{not json", &weights).unwrap_err();
    assert!(garbage.to_string().contains("manifest.json"), "{garbage}");

    // NaN in the stored weights: patch the first f32 after the safetensors header.
    let mut nan = weights.clone();
    let header = u64::from_le_bytes(nan[..8].try_into().unwrap()) as usize;
    nan[8 + header..12 + header].copy_from_slice(&f32::NAN.to_le_bytes());
    let err = HeadArtifact::decode(&manifest, &nan).unwrap_err();
    assert!(err.to_string().contains("NaN"), "{err}");

    let mut other = artifact("t", 2.0);
    other.manifest.backbone.fingerprint = "fp-other".into();
    let err = registry.insert(other.clone()).unwrap_err();
    assert!(matches!(err, Error::FingerprintMismatch { .. }), "{err}");

    let mut dup = good.manifest.clone();
    dup.labels = vec!["a".into(), "a".into()];
    let err = HeadArtifact::decode(&serde_json::to_vec(&dup).unwrap(), &weights).unwrap_err();
    assert!(err.to_string().contains("duplicate label"), "{err}");

    // A wrong-fingerprint version in the store and a corrupted file on disk: sync
    // reports them and the live head stays version 1.
    let v2 = s.put_and_activate(&other, true).unwrap();
    let report = registry.sync(&s).unwrap();
    assert_eq!(report.errors.len(), 1, "{report:?}");
    assert_eq!(registry.get("t").unwrap().manifest.version, 1);
    s.activate("t", 1).unwrap();
    let v3 = s.put(&artifact("t", 3.0)).unwrap();
    fs::write(
        s.root()
            .join("t")
            .join(v3.to_string())
            .join("head.safetensors"),
        b"trunc",
    )
    .unwrap();
    assert!(s.activate("t", v3).is_err());
    assert_eq!(s.active("t").unwrap(), Some(1));
    assert!(v2 < v3);
}

#[test]
fn path_tricks_are_refused() {
    let (_d, s) = store();
    for bad in ["", "../x", "a/b", "A", "-x", ".hidden", &"a".repeat(65)] {
        assert!(
            matches!(s.versions(bad), Err(Error::InvalidTaskName(_))),
            "{bad:?}"
        );
        let mut a = artifact("ok", 1.0);
        a.manifest.task = bad.to_string();
        assert!(s.put(&a).is_err(), "{bad:?}");
    }
}

#[test]
fn concurrent_writers_get_distinct_versions() {
    let (_d, s) = store();
    let s = std::sync::Arc::new(s);
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let s = s.clone();
            std::thread::spawn(move || {
                (0..5)
                    .map(|j| s.put(&artifact("c", (i * 10 + j) as f32)).unwrap())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut all: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    all.sort_unstable();
    assert_eq!(all, (1..=20).collect::<Vec<_>>());
}

#[test]
fn delete_task_removes_everything() {
    let (_d, s) = store();
    s.put_and_activate(&artifact("gone", 1.0), true).unwrap();
    s.put(&artifact("gone", 2.0)).unwrap();
    assert_eq!(s.delete_task("gone").unwrap(), 2);
    assert!(s.tasks().unwrap().is_empty());
    assert!(matches!(s.delete_task("gone"), Err(Error::TaskNotFound(_))));
    let registry = HeadRegistry::new(backbone());
    assert!(registry.sync(&s).unwrap().swapped.is_empty());
}

#[test]
fn registry_snapshot_survives_swap() {
    let (_d, s) = store();
    s.put_and_activate(&artifact("t", 1.0), true).unwrap();
    let registry = HeadRegistry::new(backbone());
    registry.sync(&s).unwrap();
    let held = registry.get("t").unwrap();
    s.put_and_activate(&artifact("t", 2.0), true).unwrap();
    let report = registry.sync(&s).unwrap();
    assert_eq!(report.swapped, vec![("t".to_string(), 2)]);
    assert_eq!(
        held.manifest.version, 1,
        "an in-flight snapshot keeps its version"
    );
    assert_eq!(registry.get("t").unwrap().manifest.version, 2);
}

/// Issue 8 defect 4: one task's damaged ACTIVE stays that task's problem.
#[test]
fn a_damaged_pointer_stays_with_its_task() {
    let (d, s) = store();
    s.put_and_activate(&artifact("good", 1.0), true).unwrap();
    s.put_and_activate(&artifact("bad", 1.0), true).unwrap();
    fs::write(d.path().join("bad/ACTIVE"), b"{not json").unwrap();
    let registry = HeadRegistry::new(backbone());
    let report = registry.sync(&s).unwrap();
    assert_eq!(report.swapped, vec![("good".to_string(), 1)]);
    assert_eq!(report.errors.len(), 1, "{report:?}");
    assert_eq!(report.errors[0].0, "bad");
    assert!(report.errors[0].1.contains("ACTIVE"), "{report:?}");
    // Changing another task works and reports no error of its own.
    s.put_and_activate(&artifact("good", 2.0), true).unwrap();
    let report = registry.sync(&s).unwrap();
    assert_eq!(report.swapped, vec![("good".to_string(), 2)]);
    assert!(registry.get("good").is_some() && registry.get("bad").is_none());
    // Activating a version repairs the damaged pointer.
    s.activate("bad", 1).unwrap();
    assert_eq!(s.active("bad").unwrap(), Some(1));
    let report = registry.sync(&s).unwrap();
    assert!(report.errors.is_empty(), "{report:?}");
    assert_eq!(registry.get("bad").unwrap().manifest.version, 1);
}

/// Issue 8 defect 5: rollback and activation check the target before the pointer moves.
#[test]
fn rollback_onto_a_damaged_version_leaves_the_pointer() {
    let (d, s) = store();
    s.put_and_activate(&artifact("t", 1.0), true).unwrap();
    s.put_and_activate(&artifact("t", 2.0), true).unwrap();
    fs::write(d.path().join("t/1/head.safetensors"), b"garbage").unwrap();
    let before = fs::read(d.path().join("t/ACTIVE")).unwrap();
    let err = s.rollback("t").unwrap_err();
    assert!(
        matches!(err, Error::NotLoadable { version: 1, .. }),
        "{err}"
    );
    assert_eq!(s.active("t").unwrap(), Some(2));
    assert_eq!(fs::read(d.path().join("t/ACTIVE")).unwrap(), before);
    let err = s.activate("t", 1).unwrap_err();
    assert!(
        matches!(err, Error::NotLoadable { version: 1, .. }),
        "{err}"
    );
    assert_eq!(s.active("t").unwrap(), Some(2));
}

#[test]
fn a_store_bound_to_a_backbone_refuses_foreign_versions() {
    let (d, s) = store();
    let s = s.with_backbone(backbone());
    s.put_and_activate(&artifact("t", 1.0), true).unwrap();
    let mut foreign = artifact("t", 2.0);
    foreign.manifest.backbone.fingerprint = "fp-other".into();
    // Written by another tool straight into the folder, then activated.
    FsHeadStore::open(d.path())
        .unwrap()
        .put_and_activate(&foreign, false)
        .unwrap();
    let err = s.activate("t", 2).unwrap_err();
    assert!(err.to_string().contains("fp-other"), "{err}");
    assert_eq!(s.active("t").unwrap(), Some(1));
}

/// Issue 8 defect 10: two store handles (as two processes) flipping one task's
/// pointer never lose an update or leave temp debris behind.
#[test]
fn concurrent_activations_from_two_handles_keep_a_valid_pointer() {
    let (d, s) = store();
    for m in [1.0, 2.0, 3.0] {
        s.put_and_activate(&artifact("t", m), true).unwrap();
    }
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let root = d.path().to_owned();
            std::thread::spawn(move || {
                let s = FsHeadStore::open(root).unwrap();
                for i in 0..50u64 {
                    s.activate("t", 1 + (i + w) % 3).unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let active = s.active("t").unwrap().unwrap();
    assert!((1..=3).contains(&active));
    s.load("t", active).unwrap();
    let debris: Vec<_> = fs::read_dir(d.path().join("t"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tmp") || n.starts_with(".ACTIVE.tmp"))
        .collect();
    assert!(debris.is_empty(), "{debris:?}");
}

#[test]
fn version_numbers_are_never_reused_after_a_delete() {
    let (_d, s) = store();
    s.put_and_activate(&artifact("t", 1.0), true).unwrap();
    s.put_and_activate(&artifact("t", 2.0), true).unwrap();
    s.delete_task("t").unwrap();
    assert_eq!(s.put_and_activate(&artifact("t", 3.0), true).unwrap(), 3);
    s.delete_task("t").unwrap();
    assert_eq!(s.put(&artifact("t", 4.0)).unwrap(), 4);
    // The retired numbers are kept in the store, not in the process.
    let s2 = FsHeadStore::open(s.root()).unwrap();
    s2.delete_task("t").unwrap();
    assert_eq!(s2.put(&artifact("t", 5.0)).unwrap(), 5);
    assert_eq!(s2.tasks().unwrap(), vec!["t".to_string()]);
}

#[test]
fn the_last_version_number_is_an_error_not_a_wrap() {
    let (d, s) = store();
    s.put(&artifact("t", 1.0)).unwrap();
    // A folder named u64::MAX, as a hostile or broken writer could leave it.
    fs::rename(
        d.path().join("t/1"),
        d.path().join(format!("t/{}", u64::MAX)),
    )
    .unwrap();
    let e = s.put(&artifact("t", 2.0)).unwrap_err();
    assert!(e.to_string().contains("used every version number"), "{e}");
    // Non-canonical numbers ("0", "007") are not versions.
    fs::create_dir(d.path().join("t/0")).unwrap();
    fs::create_dir(d.path().join("t/007")).unwrap();
    assert_eq!(s.versions("t").unwrap(), vec![u64::MAX]);
    assert!(matches!(
        s.activate("t", 0),
        Err(Error::VersionNotFound { .. })
    ));
}

#[test]
fn a_dead_writers_temp_files_are_swept_at_open_and_a_live_ones_kept() {
    let (d, s) = store();
    s.put(&artifact("t", 1.0)).unwrap();
    let old = d.path().join("t/.tmp-dead");
    let fresh = d.path().join("t/.tmp-live");
    fs::create_dir(&old).unwrap();
    fs::write(old.join("head.safetensors"), vec![0u8; 1000]).unwrap();
    fs::create_dir(&fresh).unwrap();
    let an_hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    fs::File::open(&old)
        .unwrap()
        .set_modified(an_hour_ago)
        .unwrap();
    FsHeadStore::open(d.path()).unwrap();
    assert!(!old.exists(), "stale debris removed");
    assert!(fresh.exists(), "a write in progress is left alone");
    assert_eq!(s.versions("t").unwrap(), vec![1]);
}

#[test]
fn another_backbones_tasks_in_a_shared_store_are_foreign_not_errors() {
    // A text server and an image server share one store: each sees the other's
    // tasks as foreign (reported once, not loaded again until their version moves),
    // while a served task whose new version is foreign stays an error and keeps
    // serving its old head.
    let (_d, s) = store();
    let registry = HeadRegistry::new(backbone());
    let mut pictures = artifact("pictures", 1.0);
    pictures.manifest.backbone.fingerprint = "fp-image".into();
    s.put_and_activate(&pictures, true).unwrap();
    s.put_and_activate(&artifact("texts", 1.0), true).unwrap();
    let first = registry.sync(&s).unwrap();
    assert_eq!(first.foreign, vec![("pictures".to_string(), 1)]);
    assert!(first.errors.is_empty(), "{:?}", first.errors);
    assert!(registry.get("pictures").is_none());
    assert!(registry.get("texts").is_some());
    let again = registry.sync(&s).unwrap();
    assert!(
        again.foreign.is_empty() && again.errors.is_empty(),
        "{again:?}"
    );
    // A new foreign version is reported again.
    s.put_and_activate(&pictures, true).unwrap();
    assert_eq!(
        registry.sync(&s).unwrap().foreign,
        vec![("pictures".to_string(), 2)]
    );
    // A served task moving to another backbone's version is an error.
    let mut moved = artifact("texts", 2.0);
    moved.manifest.backbone.fingerprint = "fp-image".into();
    s.put_and_activate(&moved, true).unwrap();
    let report = registry.sync(&s).unwrap();
    assert_eq!(report.errors.len(), 1, "{report:?}");
    assert_eq!(registry.get("texts").unwrap().manifest.version, 1);
}
