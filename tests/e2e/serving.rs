//! Health, Info, Embed/Classify/ClassifyMulti against the CLI path, TrainHead,
//! heads from another process, metrics, graceful shutdown.
use std::time::{Duration, Instant};

use polyhead_api::v1::{
    ClassifyMultiRequest, ClassifyRequest, EmbedRequest, GetTaskRequest, InfoRequest,
    ListTasksRequest, ListVersionsRequest,
};
use polyhead_e2e::{cli, spam_examples, Server};
use polyhead_heads::{FsHeadStore, HeadStore};
use tonic_health::pb::health_check_response::ServingStatus;

/// `polyhead embed ARGS` of `texts`, one row each.
fn cli_embeddings(args: &[&str], texts: &[String]) -> Vec<Vec<f32>> {
    let args: Vec<&str> = std::iter::once("embed")
        .chain(args.iter().copied())
        .collect();
    cli(&args, Some(&(texts.join("\n") + "\n")))
        .lines()
        .map(|l| {
            let row = serde_json::from_str::<serde_json::Value>(l).unwrap();
            serde_json::from_value(row["embedding"].clone()).unwrap()
        })
        .collect()
}

/// The largest difference between served embeddings and reference rows.
fn max_abs_diff(served: &[polyhead_api::v1::Embedding], rows: &[Vec<f32>]) -> f32 {
    served
        .iter()
        .zip(rows)
        .flat_map(|(a, b)| a.values.iter().zip(b).map(|(x, y)| (x - y).abs()))
        .fold(0f32, f32::max)
}

fn texts() -> Vec<String> {
    [
        "Claim your free prize now!!!",
        "Agenda for Monday's standup",
        "Ünïcödé and emoji 🚀",
        "x",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Trains `task` over RPC and returns (version, number of progress messages).
async fn train_rpc(server: &Server, task: &str, seed: u64) -> (u64, usize) {
    let (done, epochs) = server.train(task, seed, 60).await;
    assert!(done.activated, "{done:?}");
    assert!(done.baseline_metrics.is_some());
    (done.version, epochs)
}

#[tokio::test(flavor = "multi_thread")]
async fn health_info_and_cli_parity() {
    let server = Server::start(&[]);
    let seen = server.wait_serving().await;
    assert_eq!(
        seen.first(),
        Some(&ServingStatus::NotServing),
        "health must start NOT_SERVING: {seen:?}"
    );
    assert_eq!(seen.last(), Some(&ServingStatus::Serving));

    let mut client = server.inference().await;
    let info = client.info(InfoRequest {}).await.unwrap().into_inner();
    let cli_info: serde_json::Value = serde_json::from_str(&cli(&["info"], None)).unwrap();
    assert_eq!(info.fingerprint, cli_info["fingerprint"]);
    assert_eq!(info.dim, 384);
    // The default backend: ONNX Runtime on a CPU without AMX-BF16, OpenVINO (bf16)
    // with it (setup.sh made the export), and the server and the CLI agree on it.
    assert_eq!(info.backend, cli_info["backend"]);
    // Native bf16 (AMX or AVX512-BF16): OpenVINO bf16; elsewhere ONNX Runtime f32.
    let native_bf16 = std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|c| {
        c.split_whitespace()
            .any(|f| f == "amx_bf16" || f == "avx512_bf16")
    });
    let (backend, dtype) = if native_bf16 {
        ("openvino", "bf16")
    } else {
        ("onnxruntime", "f32")
    };
    assert_eq!(
        (info.backend.as_str(), info.dtype.as_str()),
        (backend, dtype),
        "{info:?}"
    );

    // Embed == `polyhead embed` for the same texts.
    let t = texts();
    let emb = client
        .embed(EmbedRequest {
            texts: t.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let cli_rows = cli_embeddings(&[], &t);
    assert_eq!(emb.embeddings.len(), cli_rows.len());
    let diff = max_abs_diff(&emb.embeddings, &cli_rows);
    assert!(diff <= 1e-5, "server vs CLI embedding differ by {diff}");

    // TrainHead over RPC; Classify serves the new task at once, without restart.
    let (version, progress) = train_rpc(&server, "spam", 1).await;
    assert!(progress > 0);
    let r = client
        .classify(ClassifyRequest {
            task: "spam".into(),
            texts: t.clone(),
            top_k: 0,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.head_version, version);
    assert_eq!(r.results[0].label, "spam");
    assert_eq!(r.results[1].label, "ham");
    // Same labels and scores as the head from the store applied to the CLI's embeddings.
    let head = FsHeadStore::open(&server.store)
        .unwrap()
        .load("spam", version)
        .unwrap();
    for ((res, row), text) in r.results.iter().zip(&cli_rows).zip(&t) {
        let p = head.head.predict(row, text).unwrap();
        let best = if p[0] >= p[1] { 0 } else { 1 };
        assert_eq!(res.label, head.head.labels()[best]);
        assert!((res.score - p[best]).abs() < 1e-4);
        assert_eq!(res.scores.len(), 2);
    }
    let info = client
        .get_task(GetTaskRequest {
            task: "spam".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.active_version, version);
    assert!(info.head_metrics.is_some() && info.baseline_metrics.is_some());
    // The default head is auto: the kind it chose and how are shown.
    assert!(
        ["linear", "hybrid"].contains(&info.head_kind.as_str()),
        "{info:?}"
    );
    assert!(info.selection.starts_with("cv-5: "), "{}", info.selection);
    assert!(
        info.selection.contains(&info.head_kind),
        "{}",
        info.selection
    );
    let versions = server
        .admin()
        .await
        .list_versions(ListVersionsRequest {
            task: "spam".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let v = versions
        .versions
        .iter()
        .find(|v| v.version == version)
        .unwrap();
    assert_eq!(
        (v.head_kind.as_str(), v.selection.as_str()),
        (info.head_kind.as_str(), info.selection.as_str())
    );
}

/// Each backend a server can be configured with serves the reference embeddings
/// (libtorch f32 through the CLI) over gRPC.
#[tokio::test(flavor = "multi_thread")]
async fn every_cpu_backend_serves_the_reference_embeddings() {
    let t = texts();
    let reference = cli_embeddings(&["--backend", "torch", "--dtype", "f32"], &t);
    assert_eq!(reference.len(), t.len());
    for backend in ["onnxruntime", "openvino", "torch"] {
        let server = Server::start(&[
            ("POLYHEAD__BACKBONE__BACKEND", backend),
            ("POLYHEAD__BACKBONE__DTYPE", "f32"),
        ]);
        server.wait_serving().await;
        let mut client = server.inference().await;
        let info = client.info(InfoRequest {}).await.unwrap().into_inner();
        assert_eq!(
            (info.backend.as_str(), info.dtype.as_str()),
            (backend, "f32")
        );
        let emb = client
            .embed(EmbedRequest {
                texts: t.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(emb.embeddings.len(), reference.len());
        let diff = max_abs_diff(&emb.embeddings, &reference);
        assert!(diff <= 1e-4, "{backend}: differs from torch f32 by {diff}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn classify_multi_runs_the_backbone_once_per_text() {
    let server = Server::start(&[]);
    server.wait_serving().await;
    let tasks: Vec<String> = (0..5).map(|i| format!("task-{i}")).collect();
    for (i, t) in tasks.iter().enumerate() {
        train_rpc(&server, t, i as u64 + 1).await;
    }
    let mut client = server.inference().await;
    let fresh: Vec<String> = (0..6)
        .map(|i| format!("never seen before text number {i}, win money now"))
        .collect();
    let before = server.metric("polyhead_backbone_texts_total");
    let multi = client
        .classify_multi(ClassifyMultiRequest {
            tasks: tasks.clone(),
            texts: fresh.clone(),
            top_k: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let after = server.metric("polyhead_backbone_texts_total");
    assert_eq!(
        after - before,
        fresh.len() as f64,
        "5 tasks must cost one backbone pass per text"
    );
    assert_eq!(multi.responses.len(), 5);
    // Each task's answer equals its own Classify (now served from the cache).
    for resp in &multi.responses {
        let single = client
            .classify(ClassifyRequest {
                task: resp.task.clone(),
                texts: fresh.clone(),
                top_k: 1,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(single.head_version, resp.head_version);
        for (a, b) in single.results.iter().zip(&resp.results) {
            assert_eq!(a.label, b.label);
            assert!((a.score - b.score).abs() < 1e-6);
            assert_eq!(b.scores.len(), 1);
        }
    }
    assert_eq!(
        server.metric("polyhead_backbone_texts_total"),
        after,
        "repeat texts come from the cache"
    );
    assert!(server.metric("polyhead_embedding_cache_hits_total") >= 30.0);
    // Empty task list = every active task.
    let all = client
        .classify_multi(ClassifyMultiRequest {
            tasks: vec![],
            texts: fresh,
            top_k: 0,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.into_inner().responses.len(), 5);
    let listed = client
        .list_tasks(ListTasksRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.tasks.len(), 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn head_trained_by_another_process_goes_live_within_2s_and_metrics_are_exposed() {
    let server = Server::start(&[]);
    server.wait_serving().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d.jsonl");
    let rows: String = spam_examples()
        .iter()
        .map(|(t, l)| serde_json::json!({"text": t, "label": l}).to_string() + "\n")
        .collect();
    std::fs::write(&data, rows).unwrap();
    let store = server.store.to_str().unwrap().to_owned();
    cli(
        &[
            "train",
            "--task",
            "from-cli",
            "--data",
            data.to_str().unwrap(),
            "--store",
            &store,
            "--json",
        ],
        None,
    );
    let written = Instant::now();
    let mut client = server.inference().await;
    loop {
        let r = client
            .classify(ClassifyRequest {
                task: "from-cli".into(),
                texts: vec!["free money".into()],
                top_k: 0,
                ..Default::default()
            })
            .await;
        match r {
            Ok(r) => {
                assert_eq!(r.into_inner().head_version, 1);
                break;
            }
            Err(s) => {
                assert_eq!(s.code(), tonic::Code::NotFound);
                assert!(
                    written.elapsed() < Duration::from_secs(2),
                    "head not live 2 s after it was written"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    eprintln!(
        "head from another process live after {:?}",
        written.elapsed()
    );

    let text = server.metrics();
    for name in [
        "polyhead_requests_total{rpc=\"Classify\",task=\"from-cli\",code=\"OK\"}",
        "polyhead_request_duration_seconds_bucket{rpc=\"Classify\",task=\"from-cli\",le=",
        "polyhead_queue_wait_seconds_bucket",
        "polyhead_batch_size_bucket",
        "polyhead_batch_tokens_bucket",
        "polyhead_backbone_forward_seconds_bucket",
        "polyhead_embedding_cache_misses_total",
        "polyhead_head_active_version{task=\"from-cli\"} 1",
        "polyhead_head_swaps_total{task=\"from-cli\"}",
        "polyhead_tasks_loaded 1",
    ] {
        assert!(text.contains(name), "metrics lack {name}\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_in_flight_requests_and_exits_zero() {
    let mut server = Server::start(&[]);
    server.wait_serving().await;
    let mut client = server.inference().await;
    let long: Vec<String> = (0..128)
        .map(|i| format!("{i} a long text about transfer learning. ").repeat(40))
        .collect();
    let call = tokio::spawn(async move {
        client
            .embed(EmbedRequest {
                texts: long,
                ..Default::default()
            })
            .await
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.metric("polyhead_in_flight_requests") < 1.0 {
        assert!(Instant::now() < deadline, "request never became in-flight");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.terminate();
    let response = call
        .await
        .unwrap()
        .expect("an in-flight request completes during shutdown");
    assert_eq!(response.into_inner().embeddings.len(), 128);
    let status = server.child.wait().unwrap();
    assert!(status.success(), "exit status {status:?}");
}
