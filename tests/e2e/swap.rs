//! Hot swap under load: 8 clients classify for 10 s while the active version flips
//! every 200 ms. No request may fail, each must report a version that was active at
//! some point during the call, and a call started after ActivateVersion returned must
//! see the new version.
use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use polyhead_api::v1::{ActivateVersionRequest, ClassifyRequest, RollbackRequest};
use polyhead_e2e::Server;

/// (call start, call end, version active after the call).
type Switch = (Instant, Instant, u64);

/// Was `v` possibly active at some instant of `[s, e]`? Version of switch i is active
/// from (at the latest) the start of call i until (at the latest) the end of call i+1.
fn possibly_active(log: &[Switch], initial: u64, v: u64, s: Instant, e: Instant) -> bool {
    let mut from: Option<Instant> = None; // None = since before the test
    let mut current = initial;
    for &(start, end, next) in log {
        if current == v && from.is_none_or(|f| f <= e) && end >= s {
            return true;
        }
        current = next;
        from = Some(start);
    }
    current == v && from.is_none_or(|f| f <= e)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hot_swap_under_load_fails_no_request() {
    let server = Arc::new(Server::start(&[]));
    server.wait_serving().await;
    let v1 = server.train("swap", 1, 30).await.0.version;
    let v2 = server.train("swap", 2, 30).await.0.version;
    assert_eq!((v1, v2), (1, 2));

    let stop = Arc::new(AtomicBool::new(false));
    let fresh = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for c in 0..8 {
        let (server, stop, fresh) = (server.clone(), stop.clone(), fresh.clone());
        clients.push(tokio::spawn(async move {
            let mut client = server.inference().await;
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                // One cached text and one new text: every call also crosses the batcher.
                let n = fresh.fetch_add(1, Ordering::Relaxed);
                let texts = vec![
                    "win a free prize".to_string(),
                    format!("client {c} message {n}"),
                ];
                let start = Instant::now();
                let r = client
                    .classify(ClassifyRequest {
                        task: "swap".into(),
                        texts,
                        top_k: 0,
                        ..Default::default()
                    })
                    .await;
                let end = Instant::now();
                match r {
                    Ok(r) => seen.push((start, end, r.into_inner().head_version)),
                    Err(s) => panic!("request failed during swaps: {s:?}"),
                }
            }
            seen
        }));
    }

    let log: Arc<Mutex<Vec<Switch>>> = Arc::default();
    let mut admin = server.admin().await;
    let mut check = server.inference().await;
    let test_end = Instant::now() + Duration::from_secs(10);
    let mut flips = 0;
    while Instant::now() < test_end {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let start = Instant::now();
        let active = if flips % 2 == 0 {
            admin
                .rollback(RollbackRequest {
                    task: "swap".into(),
                })
                .await
                .unwrap()
                .into_inner()
                .active_version
        } else {
            let req = ActivateVersionRequest {
                task: "swap".into(),
                version: v2,
            };
            admin
                .activate_version(req)
                .await
                .unwrap()
                .into_inner()
                .active_version
        };
        let end = Instant::now();
        assert_eq!(active, if flips % 2 == 0 { v1 } else { v2 });
        log.lock().unwrap().push((start, end, active));
        // Read-your-write: a call made after the admin call returned sees the new head.
        let r = check
            .classify(ClassifyRequest {
                task: "swap".into(),
                texts: vec!["hello".into()],
                top_k: 0,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(
            r.into_inner().head_version,
            active,
            "call after flip {flips} saw the old version"
        );
        flips += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let log = log.lock().unwrap().clone();
    let mut total = 0;
    let mut versions = std::collections::BTreeSet::new();
    for c in clients {
        for (s, e, v) in c.await.unwrap() {
            total += 1;
            versions.insert(v);
            assert!(
                possibly_active(&log, v2, v, s, e),
                "a response reported version {v}, not active during its call"
            );
        }
    }
    eprintln!("{total} requests, {flips} flips, versions seen {versions:?}, 0 failures");
    assert!(flips >= 20, "only {flips} flips in 10 s");
    assert!(total > 100, "only {total} requests in 10 s");
    assert_eq!(versions.into_iter().collect::<Vec<_>>(), vec![v1, v2]);
}
