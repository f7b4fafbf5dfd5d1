//! Issue 8 under load: overload is refused with the documented code, and a soak with
//! version flips and a TrainHead loses no request.
use std::time::{Duration, Instant};

use polyhead_api::v1::{ActivateVersionRequest, ClassifyRequest, RollbackRequest};
use polyhead_e2e::{code, eventually, register, texts, Server};
use tonic::Code;

/// Overload: past server.max_in_flight requests are refused with RESOURCE_EXHAUSTED
/// at once, admitted ones succeed, and the server recovers immediately.
#[tokio::test(flavor = "multi_thread")]
async fn overload_is_refused_with_resource_exhausted() {
    let server = Server::start(&[("POLYHEAD__SERVER__MAX_IN_FLIGHT", "4")]);
    server.wait_serving().await;
    register(&server, &["a"]).await;
    let client = server.inference().await;
    let calls: Vec<_> = (0..48)
        .map(|i| {
            let mut c = client.clone();
            tokio::spawn(async move {
                let t = Instant::now();
                let r = c
                    .classify(ClassifyRequest {
                        task: "a".into(),
                        texts: texts(&format!("load {i}"), 8),
                        top_k: 1,
                        ..Default::default()
                    })
                    .await;
                (code(r), t.elapsed())
            })
        })
        .collect();
    let mut codes = std::collections::BTreeMap::new();
    for c in calls {
        let (code, _) = c.await.unwrap();
        *codes.entry(format!("{code:?}")).or_insert(0) += 1;
    }
    assert_eq!(
        codes.keys().cloned().collect::<Vec<_>>(),
        ["Ok", "ResourceExhausted"],
        "{codes:?}"
    );
    assert_eq!(
        server.metric("polyhead_requests_shed_total"),
        f64::from(codes["ResourceExhausted"])
    );
    eventually(10, "in-flight back to 0", || {
        server.metric("polyhead_in_flight_requests") == 0.0
    })
    .await;
    let r = client
        .clone()
        .classify(ClassifyRequest {
            task: "a".into(),
            texts: texts("after", 1),
            top_k: 1,
            ..Default::default()
        })
        .await;
    assert_eq!(code(r), Code::Ok);
}

/// Short soak: load on two tasks while versions flip and a TrainHead runs; no request
/// fails, no stored version is damaged, the gauge returns to zero.
/// `POLYHEAD_SOAK_SECONDS` sets the length (scripts/soak.sh runs 600 s).
#[tokio::test(flavor = "multi_thread")]
async fn soak_under_swaps_and_training() {
    let seconds: u64 = std::env::var("POLYHEAD_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    let server = Server::start(&[]);
    server.wait_serving().await;
    register(&server, &["a", "a", "b", "b"]).await;
    let rss_start = server.rss_kib();
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    let client = server.inference().await;
    let callers: Vec<_> = (0..8)
        .map(|w| {
            let mut c = client.clone();
            tokio::spawn(async move {
                let (mut ok, mut failed, mut latencies) = (0u64, Vec::new(), Vec::new());
                let mut i = 0;
                while Instant::now() < end {
                    i += 1;
                    let task = if i % 2 == 0 { "a" } else { "b" };
                    // Half repeat (cache hits), half new texts.
                    let text = format!("soak {w} {}", if i % 2 == 0 { i % 50 } else { i });
                    let t = Instant::now();
                    match c
                        .classify(ClassifyRequest {
                            task: task.into(),
                            texts: vec![text],
                            top_k: 1,
                            ..Default::default()
                        })
                        .await
                    {
                        Ok(_) => ok += 1,
                        Err(s) => failed.push(format!("{:?}: {}", s.code(), s.message())),
                    }
                    latencies.push((
                        t.duration_since(start).as_secs_f64(),
                        t.elapsed().as_secs_f64(),
                    ));
                }
                (ok, failed, latencies)
            })
        })
        .collect();
    let mut admin = server.admin().await;
    let mut flips = 0;
    let mut trained = None;
    while Instant::now() < end {
        for task in ["a", "b"] {
            let r = if flips % 2 == 0 {
                admin
                    .rollback(RollbackRequest { task: task.into() })
                    .await
                    .map(drop)
            } else {
                admin
                    .activate_version(ActivateVersionRequest {
                        task: task.into(),
                        version: 2,
                    })
                    .await
                    .map(drop)
            };
            r.unwrap();
        }
        flips += 1;
        if trained.is_none() && flips == 3 {
            trained = Some(server.train("c", 1, 50).await.0.version);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (mut ok, mut failed, mut latencies) = (0, Vec::new(), Vec::new());
    for c in callers {
        let (o, f, l) = c.await.unwrap();
        ok += o;
        failed.extend(f);
        latencies.extend(l);
    }
    // p99 over the whole run and per tenth of it (p99 over time).
    let p99 = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get((v.len() * 99 / 100).min(v.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    let window = seconds as f64 / 10.0;
    let p99_over_time: Vec<f64> = (0..10)
        .map(|w| {
            let (from, to) = (w as f64 * window, (w + 1) as f64 * window);
            p99(latencies
                .iter()
                .filter(|(at, _)| (from..to).contains(at))
                .map(|l| l.1)
                .collect())
        })
        .collect();
    let p99 = p99(latencies.iter().map(|l| l.1).collect());
    eventually(10, "in-flight back to 0", || {
        server.metric("polyhead_in_flight_requests") == 0.0
    })
    .await;
    let rss_end = server.rss_kib();
    println!(
        "{}",
        serde_json::json!({"soak_seconds": seconds, "ok": ok, "failed": failed.len(), "swap_rounds": flips,
            "trained_version": trained, "p99_s": p99, "p99_s_per_tenth": p99_over_time,
            "rss_kib_start": rss_start, "rss_kib_end": rss_end})
    );
    assert!(
        failed.is_empty(),
        "{} failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(ok > 0 && trained.is_some());
    use polyhead_heads::HeadStore;
    let store = polyhead_heads::FsHeadStore::open(&server.store).unwrap();
    for task in store.tasks().unwrap() {
        for v in store.versions(&task).unwrap() {
            store.load(&task, v).unwrap();
        }
    }
}
