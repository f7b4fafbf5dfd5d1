//! The PostgreSQL store against a real server (a fresh database per test; see
//! `polyhead_heads::testing`): the same contract as the folder store, concurrent
//! writers from several handles, change notification, copy between stores, and an
//! unreachable server. These tests fail, never skip, when PostgreSQL is down.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use polyhead_heads::{
    copy_store, open_store,
    testing::{files_under as tree, TestDatabase},
    BackboneRef, Error, FsHeadStore, HeadRegistry, HeadStore, PgHeadStore,
};

mod common;
use common::{artifact, backbone};

fn pg(db: &TestDatabase) -> PgHeadStore {
    PgHeadStore::open(db.url(), Some(backbone())).unwrap()
}

/// The contract every store keeps, run on `s` (empty).
fn contract(s: &dyn HeadStore) {
    assert!(s.tasks().unwrap().is_empty());
    assert_eq!(s.put_and_activate(&artifact("spam", 1.0), true).unwrap(), 1);
    assert_eq!(
        s.put_and_activate(&artifact("spam", 2.0), false).unwrap(),
        2
    );
    assert_eq!(s.put(&artifact("news", 1.0)).unwrap(), 1);
    assert_eq!(s.tasks().unwrap(), vec!["news", "spam"]);
    assert_eq!(s.versions("spam").unwrap(), vec![1, 2]);
    assert_eq!(s.active("spam").unwrap(), Some(1));
    assert_eq!(s.active("news").unwrap(), None);
    let loaded = s.load("spam", 2).unwrap();
    assert_eq!(loaded.manifest.version, 2);
    assert_eq!(loaded.head, artifact("spam", 2.0).head);
    assert!(matches!(
        s.load("spam", 9),
        Err(Error::VersionNotFound { .. })
    ));

    s.activate("spam", 2).unwrap();
    assert_eq!(s.history("spam").unwrap().unwrap().previous, vec![1]);
    assert_eq!(s.rollback("spam").unwrap(), 1);
    assert_eq!(s.active("spam").unwrap(), Some(1));
    assert!(matches!(
        s.rollback("spam"),
        Err(Error::NothingToRollBack(_))
    ));
    assert!(matches!(
        s.activate("spam", 7),
        Err(Error::VersionNotFound { .. })
    ));

    // A version made for another backbone is stored but never activated.
    let mut foreign = artifact("spam", 3.0);
    foreign.manifest.backbone = BackboneRef {
        fingerprint: "fp-other".into(),
        ..backbone()
    };
    let v = s.put(&foreign).unwrap();
    assert!(matches!(
        s.activate("spam", v),
        Err(Error::NotLoadable { .. })
    ));
    assert_eq!(s.active("spam").unwrap(), Some(1));

    let all = s.active_all().unwrap();
    assert_eq!(all.len(), 2);
    assert!(matches!(all[1], (ref t, Ok(Some(1))) if t == "spam"));

    assert!(s.put(&artifact("../x", 1.0)).is_err());
    assert_eq!(s.delete_task("spam").unwrap(), 3);
    assert!(matches!(s.delete_task("spam"), Err(Error::TaskNotFound(_))));
    assert_eq!(s.tasks().unwrap(), vec!["news"]);
    assert!(s.versions("spam").unwrap().is_empty());
    // Numbers are never reused after a delete: a replica still serving version 1 of
    // the deleted task must see a new number.
    assert_eq!(s.put(&artifact("spam", 4.0)).unwrap(), 4);
    assert_eq!(s.delete_task("spam").unwrap(), 1);
    assert_eq!(s.put(&artifact("spam", 5.0)).unwrap(), 5);
}

#[test]
fn the_folder_store_keeps_the_contract() {
    let d = tempfile::tempdir().unwrap();
    contract(
        &FsHeadStore::open(d.path())
            .unwrap()
            .with_backbone(backbone()),
    );
}

#[test]
fn the_postgres_store_keeps_the_contract() {
    let db = TestDatabase::create();
    contract(&pg(&db));
}

#[test]
fn open_store_picks_the_implementation_by_url() {
    let db = TestDatabase::create();
    let s = open_store(db.url(), None).unwrap();
    assert!(s.changes().is_some(), "a database store reports changes");
    let d = tempfile::tempdir().unwrap();
    let f = open_store(&format!("file://{}", d.path().display()), None).unwrap();
    assert!(f.changes().is_none());
    assert_eq!(f.location(), d.path().display().to_string());
}

#[test]
fn a_schema_dropped_under_a_running_store_is_created_again() {
    let db = TestDatabase::create();
    let s = pg(&db);
    s.put(&artifact("t", 1.0)).unwrap();
    // The database dropped and created empty again, as far as the schema goes.
    polyhead_heads::testing::execute(
        db.url(),
        "DROP TABLE polyhead_version, polyhead_task, polyhead_retired, _sqlx_migrations",
    );
    // The first call meets the missing schema; the store creates it again, so the
    // calls after it work without a restart.
    let _ = s.tasks();
    assert_eq!(s.tasks().unwrap(), Vec::<String>::new());
    assert_eq!(s.put(&artifact("t", 2.0)).unwrap(), 1);
}

#[test]
fn migrations_apply_once_and_reopening_keeps_the_data() {
    let db = TestDatabase::create();
    pg(&db).put(&artifact("t", 1.0)).unwrap();
    // Two handles opening together (replicas starting at once) both succeed.
    let openers: Vec<_> = (0..2)
        .map(|_| {
            let url = db.url().to_owned();
            std::thread::spawn(move || PgHeadStore::open(&url, None).map(|_| ()))
        })
        .collect();
    for o in openers {
        o.join().unwrap().unwrap();
    }
    assert_eq!(pg(&db).versions("t").unwrap(), vec![1]);
}

#[test]
fn concurrent_writers_on_several_handles_get_distinct_versions() {
    let db = TestDatabase::create();
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let url = db.url().to_owned();
            std::thread::spawn(move || {
                let s = PgHeadStore::open(&url, None).unwrap();
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
    // Every stored version is the artifact that was put, under its own number.
    let s = pg(&db);
    for v in 1..=20 {
        assert_eq!(s.load("c", v).unwrap().manifest.version, v);
    }
}

#[test]
fn concurrent_activations_from_two_handles_keep_a_loadable_pointer() {
    let db = TestDatabase::create();
    let s = pg(&db);
    for m in [1.0, 2.0, 3.0] {
        s.put_and_activate(&artifact("t", m), true).unwrap();
    }
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let url = db.url().to_owned();
            std::thread::spawn(move || {
                let s = PgHeadStore::open(&url, Some(backbone())).unwrap();
                for i in 0..40u64 {
                    s.activate("t", 1 + (i + w) % 3).unwrap();
                    if i % 7 == 0 {
                        s.rollback("t").unwrap();
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let history = s.history("t").unwrap().unwrap();
    assert!((1..=3).contains(&history.version));
    s.load("t", history.version).unwrap();
    assert!(history.previous.iter().all(|v| (1..=3).contains(v)));
    assert!(history.previous.len() <= 32);
}

#[test]
fn another_handle_hears_of_a_change_within_a_second() {
    let db = TestDatabase::create();
    let (writer, reader) = (pg(&db), pg(&db));
    let mut changes = reader.changes().unwrap();
    // The listener's first connection ticks once; wait for it, then start clean.
    let start = Instant::now();
    while *changes.borrow_and_update() == 0 && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(*changes.borrow() > 0, "the listener never connected");
    let before = *changes.borrow();
    let sent = Instant::now();
    writer.put_and_activate(&artifact("n", 1.0), true).unwrap();
    while *changes.borrow() == before && sent.elapsed() < Duration::from_secs(1) {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        *changes.borrow() > before,
        "no notification within 1 s of the commit"
    );
    // And the reader's registry, synced at that tick, serves the new head.
    let registry = HeadRegistry::new(backbone());
    let report = registry.sync(&reader).unwrap();
    assert_eq!(report.swapped, vec![("n".to_string(), 1)]);
}

#[test]
fn copy_folder_to_postgres_and_back_is_byte_identical() {
    let src = tempfile::tempdir().unwrap();
    let folder = FsHeadStore::open(src.path()).unwrap();
    for (task, n) in [("spam", 3), ("news", 2), ("intent", 1)] {
        for v in 0..n {
            folder
                .put_and_activate(&artifact(task, v as f32), v % 2 == 0)
                .unwrap();
        }
    }
    folder.activate("spam", 2).unwrap();
    folder.put(&artifact("dormant", 1.0)).unwrap(); // stored, never active
    let db = TestDatabase::create();
    let pg = pg(&db);
    let there = copy_store(&folder, &pg).unwrap();
    assert_eq!((there.tasks, there.copied, there.unchanged), (4, 7, 0));
    // Copying again changes nothing.
    let again = copy_store(&folder, &pg).unwrap();
    assert_eq!((again.copied, again.unchanged), (0, 7));
    assert_eq!(pg.history("spam").unwrap(), folder.history("spam").unwrap());

    let dst = tempfile::tempdir().unwrap();
    let back = FsHeadStore::open(dst.path()).unwrap();
    copy_store(&pg, &back).unwrap();
    assert_eq!(tree(src.path()).unwrap(), tree(dst.path()).unwrap());
}

#[test]
fn copy_refuses_to_overwrite_a_different_version() {
    let db = TestDatabase::create();
    let pg = pg(&db);
    pg.put(&artifact("t", 1.0)).unwrap();
    let d = tempfile::tempdir().unwrap();
    let folder = FsHeadStore::open(d.path()).unwrap();
    folder.put(&artifact("t", 9.0)).unwrap();
    assert!(matches!(
        copy_store(&folder, &pg),
        Err(Error::Conflict { version: 1, .. })
    ));
    assert_eq!(pg.load("t", 1).unwrap().head, artifact("t", 1.0).head);
}

#[test]
fn an_unreachable_server_is_an_error_not_a_hang() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let start = Instant::now();
    let err =
        PgHeadStore::open(&format!("postgres://postgres@127.0.0.1:{port}/x"), None).unwrap_err();
    assert!(matches!(err, Error::Database { .. }), "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(11),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn a_store_shared_across_threads_is_usable_from_an_async_runtime() {
    let db = TestDatabase::create();
    let s: Arc<dyn HeadStore> = Arc::new(pg(&db));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let v = rt.block_on(async {
        let s2 = s.clone();
        tokio::task::spawn_blocking(move || s2.put(&artifact("a", 1.0)))
            .await
            .unwrap()
    });
    assert_eq!(v.unwrap(), 1);
    // Dropped on an async thread: must not panic.
    rt.block_on(async move { drop(s) });
}
