//! What the tests send: example data, head artifacts, CLI runs, small request and
//! waiting helpers.
use std::{
    io::Write,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use polyhead_api::v1::{train_progress::Event, InfoRequest, RegisterHeadRequest};
use polyhead_heads::{BackboneRef, Dense, Head, HeadArtifact, HeadKind, Manifest, FORMAT_VERSION};
use tonic::Code;

use crate::{binary, root, Server};

/// Runs the CLI with `args` from the workspace root; returns stdout, panics on failure.
pub fn cli(args: &[&str], stdin: Option<&str>) -> String {
    let (code, stdout, stderr) = cli_result(args, stdin.map(str::as_bytes));
    assert_eq!(code, 0, "polyhead {args:?} failed: {stderr}");
    stdout
}

/// `polyhead ARGS` with `stdin`, however it ends: (exit code, stdout, stderr).
pub fn cli_result(args: &[&str], stdin: Option<&[u8]>) -> (i32, String, String) {
    let mut child = Command::new(binary())
        .current_dir(root())
        .args(args)
        .env("POLYHEAD_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let _ = input.write_all(stdin.unwrap_or(b""));
    drop(input);
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A small labelled spam/ham set.
pub fn spam_examples() -> Vec<(String, String)> {
    let spam = [
        "WIN a FREE iPhone now, click here",
        "cheap meds online, no prescription needed",
        "You won $1000, claim your prize today",
        "Hot singles in your area want to meet",
        "Lowest mortgage rates, act now before it ends",
        "Earn money from home fast, guaranteed",
        "Limited offer: 90% discount on luxury watches",
        "Click here to claim your reward points",
        "Congratulations, you were selected for a cash prize",
        "Buy viagra online at the best price",
    ];
    let ham = [
        "Can we meet tomorrow at 10 to go over the plan?",
        "Here are the notes from the design review",
        "Lunch on Friday with the team?",
        "The build is green again after the fix",
        "Please review my pull request when you can",
        "Happy birthday, see you tonight at the restaurant",
        "Minutes of the quarterly planning meeting attached",
        "Your flight itinerary for next week's conference",
        "I pushed the changes to the release branch",
        "Thanks for the feedback on the draft",
    ];
    spam.iter()
        .map(|t| (t.to_string(), "spam".to_string()))
        .chain(ham.iter().map(|t| (t.to_string(), "ham".to_string())))
        .collect()
}

/// A linear 2-label head for `task` on a backbone with `fingerprint` and `dim`.
pub fn artifact(task: &str, fingerprint: &str, dim: usize) -> HeadArtifact {
    let labels = vec!["neg".to_string(), "pos".to_string()];
    let weight = (0..2 * dim)
        .map(|i| ((i % 7) as f32 - 3.0) / 10.0)
        .collect();
    let head = Head::new(
        HeadKind::Linear,
        vec![Dense {
            weight,
            bias: vec![0.0, 0.1],
            input: dim,
            out: 2,
        }],
        labels.clone(),
    )
    .unwrap();
    let manifest = Manifest {
        format: FORMAT_VERSION,
        task: task.into(),
        version: 0,
        labels,
        head: HeadKind::Linear,
        input_dim: dim,
        backbone: BackboneRef {
            name: "all-MiniLM-L6-v2".into(),
            fingerprint: fingerprint.into(),
            dim,
            ..Default::default()
        },
        training: serde_json::Value::Null,
        dataset_hash: String::new(),
        created_at: "2026-11-28T00:00:00Z".into(),
        metrics: None,
        selection: None,
        branch: None,
        reads: Default::default(),
    };
    HeadArtifact {
        manifest,
        head,
        branch: None,
    }
}

/// The RegisterHead request for `a`.
pub fn upload(a: &HeadArtifact, activate: bool) -> RegisterHeadRequest {
    RegisterHeadRequest {
        manifest_json: a.manifest_json(),
        safetensors: a.safetensors().unwrap(),
        activate,
    }
}

/// The status code of a call's result (OK for success).
pub fn code<T>(r: Result<T, tonic::Status>) -> Code {
    r.map_or_else(|s| s.code(), |_| Code::Ok)
}

/// Polls `cond` every 50 ms for up to `secs`; panics with `what` when it never holds.
pub async fn eventually(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A Classify of one text with its best label.
pub fn one(task: &str, text: &str) -> polyhead_api::v1::ClassifyRequest {
    polyhead_api::v1::ClassifyRequest {
        task: task.into(),
        texts: vec![text.into()],
        top_k: 1,
        ..Default::default()
    }
}

/// `n` distinct texts starting with `prefix`.
pub fn texts(prefix: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("{prefix} message number {i} about the quarterly report"))
        .collect()
}

/// The server's backbone fingerprint and dimension (what a head must fit).
pub async fn fingerprint(server: &Server) -> (String, usize) {
    let info = server
        .inference()
        .await
        .info(InfoRequest {})
        .await
        .unwrap()
        .into_inner();
    (info.fingerprint, info.dim as usize)
}

/// Registers a linear head for each of `tasks` (fitting the server's backbone).
pub async fn register(server: &Server, tasks: &[&str]) {
    let (fp, dim) = fingerprint(server).await;
    let mut admin = server.admin().await;
    for t in tasks {
        let a = artifact(t, &fp, dim);
        admin.register_head(upload(&a, true)).await.unwrap();
    }
}

/// The version a TrainHead stream ended with (its `Done` event).
pub fn stored_version(events: &[Event]) -> u64 {
    events
        .iter()
        .find_map(|e| match e {
            Event::Done(r) => Some(r.version),
            _ => None,
        })
        .expect("the stream ends with the stored version")
}
