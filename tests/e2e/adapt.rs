//! Fine-tuning transfer (issue 16): a task trained over TrainHead with a branch over
//! the backbone's top layers answers next to frozen tasks in one ClassifyMulti, the
//! frozen tasks' answers stay bit for bit what they were, the adapted task hot-swaps
//! under load without a failed request, and branches that do not fit are refused.
use std::time::{Duration, Instant};

use polyhead_api::v1::{
    train_progress::Event, ClassifyMultiRequest, ClassifyRequest, GetTaskRequest,
    ListVersionsRequest, RollbackRequest, TrainOptions,
};
use polyhead_e2e::{code, eventually, stored_version, upload, Server};
use polyhead_heads::{HeadArtifact, HeadStore};
use tonic::Code;

/// Trains `task` on the spam fixture with a branch over the top `layers` layers.
async fn train_adapted(server: &Server, task: &str, seed: u64, layers: u32) -> (u64, Vec<Event>) {
    let options = TrainOptions {
        seed,
        adapt: "always".into(),
        adapt_layers: vec![layers],
        ..Default::default()
    };
    let events = server.train_events_with(task, options).await;
    (stored_version(&events), events)
}

fn stored(server: &Server, task: &str, version: u64) -> HeadArtifact {
    polyhead_heads::FsHeadStore::open(&server.store)
        .unwrap()
        .load(task, version)
        .unwrap()
}

const TEXTS: [&str; 3] = [
    "Claim your FREE prize now, click the link",
    "Can you send me the notes from today's meeting?",
    "Limited time offer on cheap watches",
];

fn multi(tasks: &[&str]) -> ClassifyMultiRequest {
    ClassifyMultiRequest {
        tasks: tasks.iter().map(|t| t.to_string()).collect(),
        texts: TEXTS.iter().map(|t| t.to_string()).collect(),
        top_k: 0,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_adapted_task_answers_beside_frozen_ones_and_hot_swaps_under_load() {
    let server = Server::start(&[]);
    server.wait_serving().await;
    let mut client = server.inference().await;
    // A frozen task first; its answers before any branch exists.
    let (frozen, _) = server.train("frozen", 1, 50).await;
    let frozen_before = client
        .classify_multi(multi(&["frozen"]))
        .await
        .unwrap()
        .into_inner()
        .responses;

    // The adapted task: two layers of six, streamed progress names the candidate.
    let (v1, events) = train_adapted(&server, "tuned", 3, 2).await;
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Candidate(c) if c.name.starts_with("adapted d=2"))),
        "no adapted candidate was streamed: {events:?}"
    );
    let a1 = stored(&server, "tuned", v1);
    let spec = a1
        .manifest
        .branch
        .as_ref()
        .expect("the head carries a branch");
    assert_eq!((spec.from_layer, spec.depth), (4, 6));
    assert!(a1
        .manifest
        .selection
        .as_ref()
        .unwrap()
        .chosen
        .starts_with("adapted d=2"));
    // GetTask shows the branch's depth and every candidate with its score and cost.
    let info = client
        .get_task(GetTaskRequest {
            task: "tuned".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.adapted_layers, 2);
    let manifest_candidates = &a1.manifest.selection.as_ref().unwrap().candidates;
    assert_eq!(info.candidates.len(), manifest_candidates.len());
    assert!(info
        .candidates
        .iter()
        .any(|c| c.layers == 0 && c.cost_us == 0.0));
    assert!(
        info.candidates
            .iter()
            .any(|c| c.layers == 2 && c.cost_us > 0.0 && c.name.starts_with("adapted d=2")),
        "{:?}",
        info.candidates
    );
    let frozen_info = client
        .get_task(GetTaskRequest {
            task: "frozen".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(frozen_info.adapted_layers, 0);
    // The frozen task's stored head is untouched, and has no branch.
    assert!(stored(&server, "frozen", frozen.version)
        .manifest
        .branch
        .is_none());

    // One ClassifyMulti: the frozen task bit for bit as before, the adapted one as
    // its own Classify says, and right on the obvious texts.
    let both = client
        .classify_multi(multi(&["frozen", "tuned"]))
        .await
        .unwrap()
        .into_inner()
        .responses;
    assert_eq!(both[0], frozen_before[0], "the frozen task's answers moved");
    let alone = client
        .classify(ClassifyRequest {
            task: "tuned".into(),
            texts: TEXTS.iter().map(|t| t.to_string()).collect(),
            top_k: 0,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    for (m, a) in both[1].results.iter().zip(&alone.results) {
        assert_eq!(m.label, a.label);
        assert!(
            (m.score - a.score).abs() < 1e-4,
            "{} vs {}",
            m.score,
            a.score
        );
    }
    let labels: Vec<&str> = both[1].results.iter().map(|r| r.label.as_str()).collect();
    assert_eq!(labels, ["spam", "ham", "spam"], "{both:?}");
    assert!(
        server.metric("polyhead_branch_seconds_count{task=\"tuned\"}") >= 1.0,
        "branch time is not counted per task"
    );

    // Hot swap under load: callers ClassifyMulti both tasks while a new adapted
    // version (one layer) is trained and activated, then rolled back.
    let end = Instant::now() + Duration::from_secs(600);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let callers: Vec<_> = (0..4)
        .map(|w| {
            let mut c = client.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let (mut ok, mut failed, mut versions) = (0u64, Vec::new(), Vec::new());
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < end {
                    i += 1;
                    let mut req = multi(&["frozen", "tuned"]);
                    req.texts.push(format!("load {w} {i}"));
                    match c.classify_multi(req).await {
                        Ok(r) => {
                            ok += 1;
                            versions.push(r.into_inner().responses[1].head_version);
                        }
                        Err(s) => failed.push(format!("{:?}: {}", s.code(), s.message())),
                    }
                }
                (ok, failed, versions)
            })
        })
        .collect();
    let (v2, _) = train_adapted(&server, "tuned", 4, 1).await;
    assert_eq!(v2, v1 + 1);
    let listed = server
        .admin()
        .await
        .list_versions(ListVersionsRequest {
            task: "tuned".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .versions;
    let depths: Vec<u32> = listed.iter().map(|v| v.adapted_layers).collect();
    assert_eq!(depths, [2, 1], "{listed:?}");
    assert!(listed
        .iter()
        .all(|v| v.candidates.iter().any(|c| c.layers == v.adapted_layers)));
    eventually(30, "the new version answers", || {
        server.metric("polyhead_head_active_version{task=\"tuned\"}") == v2 as f64
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    server
        .admin()
        .await
        .rollback(RollbackRequest {
            task: "tuned".into(),
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut ok, mut failed, mut seen) = (0, Vec::new(), Vec::new());
    for c in callers {
        let (o, f, v) = c.await.unwrap();
        ok += o;
        failed.extend(f);
        seen.extend(v);
    }
    assert!(
        failed.is_empty(),
        "{} failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(3)]
    );
    assert!(ok > 0);
    assert!(
        seen.contains(&v2),
        "no request was answered by the swapped-in version"
    );
    assert_eq!(
        stored(&server, "tuned", v2)
            .manifest
            .branch
            .as_ref()
            .unwrap()
            .from_layer,
        5
    );
    // After the rollback, version 1 answers again, as it did.
    let back = client
        .classify_multi(multi(&["frozen", "tuned"]))
        .await
        .unwrap()
        .into_inner()
        .responses;
    assert_eq!(back[1].head_version, v1);
    assert_eq!(back[0], frozen_before[0]);
    for (x, y) in back[1].results.iter().zip(&both[1].results) {
        assert!((x.score - y.score).abs() < 1e-4);
    }

    // RegisterHead refuses a branch that does not fit this backbone, and one with NaN.
    let mut admin = server.admin().await;
    let mut deep = a1.clone();
    deep.manifest.branch.as_mut().unwrap().depth = 12;
    deep.manifest.branch.as_mut().unwrap().from_layer = 10;
    let r = admin.register_head(upload(&deep, true)).await;
    assert_eq!(code(r), Code::InvalidArgument);
    let mut nan = a1.clone();
    nan.branch.as_mut().unwrap()[0].1[0] = f32::NAN;
    let r = admin.register_head(upload(&nan, true)).await;
    let status = r.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("NaN"), "{}", status.message());
    // Consistent tensors, but a feed-forward width this backbone does not have.
    let mut narrow = a1.clone();
    let rank = spec.rank;
    narrow.manifest.branch.as_mut().unwrap().targets[4].output = 1024;
    for (n, (_, b)) in narrow.branch.as_mut().unwrap().iter_mut().enumerate() {
        if n % 6 == 4 {
            *b = vec![0.0; 1024 * rank];
        }
    }
    let status = admin
        .register_head(upload(&narrow, true))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("intermediate 1024x384"),
        "{}",
        status.message()
    );
    // Nothing stored was lost: the same versions load, version 1 still active.
    let store = polyhead_heads::FsHeadStore::open(&server.store).unwrap();
    assert_eq!(store.versions("tuned").unwrap(), vec![v1, v2]);
}
