//! The CLI's front door: file scoring, and errors that say what to do, with the
//! documented exit codes (2 usage, 3 bad input, 4 not found, 5 server unreachable).
use polyhead_e2e::{cli_result, register, Server};

fn store_args(store: &std::path::Path) -> Vec<String> {
    vec!["--store".into(), store.display().to_string()]
}

/// `classify --addr ADDR --task` followed by `rest`.
fn classify_args<'a>(addr: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
    ["classify", "--addr", addr, "--task"]
        .into_iter()
        .chain(rest.iter().copied())
        .collect()
}

/// Runs `polyhead ARGS`; asserts the exit code and that stderr says `says`.
fn fails(args: &[&str], stdin: Option<&[u8]>, code: i32, says: &str) -> String {
    let (got, out, err) = cli_result(args, stdin);
    assert_eq!(
        got, code,
        "polyhead {args:?}: exit {got}\nstdout: {out}\nstderr: {err}"
    );
    assert!(
        err.contains(says),
        "polyhead {args:?}: {err:?} lacks {says:?}"
    );
    assert!(!err.contains("panicked"), "{err}");
    err
}

#[tokio::test(flavor = "multi_thread")]
async fn classify_scores_files_in_batches_and_keeps_their_fields() {
    let server = Server::start(&[]);
    server.wait_serving().await;
    register(&server, &["a"]).await;
    let dir = tempfile::tempdir().unwrap();
    let addr = server.addr.clone();
    // JSONL with labels and ids: 150 rows, 64 a request.
    let rows: Vec<String> = (0..150)
        .map(|i| {
            serde_json::json!({"id": i, "text": format!("message number {i}"), "label": "x"})
                .to_string()
        })
        .collect();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, rows.join("\n") + "\n").unwrap();
    let output = dir.path().join("out.jsonl");
    let (code, _, err) = cli_result(
        &classify_args(
            &addr,
            &[
                "a",
                "--input",
                input.to_str().unwrap(),
                "--output",
                output.to_str().unwrap(),
            ],
        ),
        None,
    );
    assert_eq!(code, 0, "{err}");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&output)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 150);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["id"], i, "order kept");
        assert_eq!(l["true_label"], "x");
        assert!(
            ["neg", "pos"].contains(&l["label"].as_str().unwrap()),
            "{l}"
        );
        assert_eq!(l["head_version"], 1);
    }
    assert!(err.contains("150/150"), "progress lines in a pipe: {err}");
    // The same answers as texts on the command line.
    let (_, one, _) = cli_result(&classify_args(&addr, &["a", "message number 7"]), None);
    let one: serde_json::Value = serde_json::from_str(one.trim()).unwrap();
    assert_eq!(one["label"], lines[7]["label"]);
    assert_eq!(one["score"], lines[7]["score"]);
    // Plain lines from stdin, and a CSV with another text column.
    let (code, out, err) = cli_result(
        &classify_args(&addr, &["a", "--input", "-"]),
        Some(b"first text\nsecond text\n"),
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 2);
    let csv = dir.path().join("in.csv");
    std::fs::write(&csv, "body,id\nhello there,1\n\"quoted, text\",2\n").unwrap();
    let (code, out, err) = cli_result(
        &classify_args(
            &addr,
            &[
                "a",
                "--input",
                csv.to_str().unwrap(),
                "--text-column",
                "body",
            ],
        ),
        None,
    );
    assert_eq!(code, 0, "{err}");
    let second: serde_json::Value = serde_json::from_str(out.lines().nth(1).unwrap()).unwrap();
    assert_eq!(
        (second["text"].clone(), second["id"].clone()),
        (serde_json::json!("quoted, text"), serde_json::json!("2"))
    );
    fails(
        &classify_args(&addr, &["a", "--input", csv.to_str().unwrap()]),
        None,
        3,
        "--text-column",
    );

    // Errors from the server and the address.
    fails(
        &classify_args(&addr, &["nosuch", "x"]),
        None,
        4,
        "NOT_FOUND",
    );
    fails(
        &[
            "classify",
            "--addr",
            &server.metrics_addr,
            "--task",
            "a",
            "x",
        ],
        None,
        5,
        "metrics port",
    );
    fails(
        &["classify", "--addr", &server.http_addr, "--task", "a", "x"],
        None,
        5,
        "answers HTTP, not gRPC",
    );
    fails(
        &["classify", "--addr", "127.0.0.1:9", "--task", "a", "x"],
        None,
        5,
        "is `polyhead serve` running",
    );
    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, "\n\n").unwrap();
    fails(
        &classify_args(&addr, &["a", "--input", empty.to_str().unwrap()]),
        None,
        3,
        "empty file",
    );
    let binary = dir.path().join("blob.bin");
    std::fs::write(&binary, [0u8, 159, 146, 150, 0, 1]).unwrap();
    fails(
        &classify_args(&addr, &["a", "--input", binary.to_str().unwrap()]),
        None,
        3,
        "binary",
    );
    // Usage: no texts and no --input.
    fails(&classify_args(&addr, &["a"]), None, 2, "--input");
}

#[test]
fn train_and_store_commands_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let s = store_args(&store);
    let s: Vec<&str> = s.iter().map(String::as_str).collect();
    let file = |name: &str, body: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        p.display().to_string()
    };
    // Data files.
    let category = file("c.csv", b"text,category\nhello,a\nbye,b\n");
    let err = fails(
        &[&["train", "--task", "t", "--data", &category][..], &s].concat(),
        None,
        3,
        "--label-column",
    );
    assert!(err.contains("category"), "{err}");
    assert!(!err.contains("StringRecord"), "{err}");
    fails(
        &[
            &["train", "--task", "t", "--data", &file("e.csv", b"")][..],
            &s,
        ]
        .concat(),
        None,
        3,
        "empty file",
    );
    fails(
        &[
            &[
                "train",
                "--task",
                "t",
                "--data",
                &file("b.csv", &[0, 1, 2, 255, 0]),
            ][..],
            &s,
        ]
        .concat(),
        None,
        3,
        "not a text file (binary)",
    );
    fails(
        &[
            &[
                "train",
                "--task",
                "t",
                "--data",
                &file("j.jsonl", b"{\"body\": \"x\", \"label\": \"a\"}\n"),
            ][..],
            &s,
        ]
        .concat(),
        None,
        3,
        "--text-column",
    );
    // --json errors are one JSON object.
    let (code, _, err) = cli_result(
        &[
            &["train", "--json", "--task", "t", "--data", &category][..],
            &s,
        ]
        .concat(),
        None,
    );
    assert_eq!(code, 3);
    let j: serde_json::Value = serde_json::from_str(err.trim().lines().last().unwrap()).unwrap();
    assert_eq!(
        (j["kind"].clone(), j["exit_code"].clone()),
        (serde_json::json!("bad_input"), serde_json::json!(3))
    );
    // A store folder that does not exist is refused by the commands that read it,
    // and not created.
    for args in [
        vec!["tasks"],
        vec!["rollback", "--task", "t"],
        vec!["activate", "--task", "t", "--version", "1"],
    ] {
        fails(&[&args[..], &s].concat(), None, 4, "does not exist");
    }
    assert!(
        !store.exists(),
        "a read-only command created the store folder"
    );
    std::fs::create_dir(&store).unwrap();
    fails(
        &[&["activate", "--task", "nosuch", "--version", "1"][..], &s].concat(),
        None,
        4,
        "task \"nosuch\" not found",
    );
    fails(
        &[&["rollback", "--task", "nosuch"][..], &s].concat(),
        None,
        4,
        "not found",
    );
    // Usage errors: clap marks --version required on activate; rollback has none.
    fails(
        &[&["activate", "--task", "t"][..], &s].concat(),
        None,
        2,
        "--version",
    );
    fails(
        &[&["rollback", "--task", "t", "--version", "2"][..], &s].concat(),
        None,
        2,
        "--version",
    );
    let (_, help, _) = cli_result(&["activate", "--help"], None);
    assert!(
        help.contains("--version <VERSION>") && !help.contains("[--version"),
        "{help}"
    );
}

#[test]
fn print_config_is_toml_that_config_reads_back_and_a_closed_pipe_is_no_panic() {
    let dir = tempfile::tempdir().unwrap();
    let (code, toml, err) = cli_result(
        &[
            "serve",
            "--print-config",
            "--http-addr",
            "",
            "--addr",
            "127.0.0.1:1234",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let file = dir.path().join("c.toml");
    std::fs::write(&file, &toml).unwrap();
    let (code, back, err) = cli_result(
        &[
            "--config",
            file.to_str().unwrap(),
            "serve",
            "--print-config",
            "--json",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let (_, direct, _) = cli_result(
        &[
            "serve",
            "--print-config",
            "--json",
            "--http-addr",
            "",
            "--addr",
            "127.0.0.1:1234",
        ],
        None,
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&back).unwrap(),
        serde_json::from_str::<serde_json::Value>(&direct).unwrap()
    );
    // Shell completions.
    for shell in ["bash", "zsh", "fish"] {
        let (code, script, err) = cli_result(&["completions", shell], None);
        assert_eq!(code, 0, "{err}");
        assert!(
            script.contains("classify") && script.contains("--input"),
            "{shell}: {script}"
        );
    }
    // `| head -1`: the reader closes the pipe after one line.
    let out = std::process::Command::new("bash")
        .args([
            "-c",
            &format!(
                "set -o pipefail; {} serve --print-config | head -1",
                polyhead_e2e::binary().display()
            ),
        ])
        .current_dir(polyhead_e2e::root())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "{stderr}"
    );
    assert!(out.status.success(), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn train_head_streams_numbers_a_client_can_draw() {
    use polyhead_api::v1::train_progress::Event;
    let server = Server::start(&[]);
    server.wait_serving().await;
    let n = polyhead_e2e::spam_examples().len() as u64;
    let (mut progress, mut candidates, mut stages, mut done) =
        (Vec::new(), Vec::new(), Vec::new(), None);
    for event in server.train_events("drawn", 1, 0).await {
        match event {
            Event::Progress(p) => progress.push(p),
            Event::Candidate(c) => candidates.push(c),
            Event::Stage(s) => stages.push(s),
            Event::Epoch(_) => {}
            Event::Done(r) => done = Some(r),
        }
    }
    assert!(done.is_some_and(|d| d.activated));
    assert!(
        stages.first().is_some_and(|s| s == "features"),
        "{stages:?}"
    );
    assert!(!progress.is_empty());
    assert!(
        progress.windows(2).all(|w| w[0].done <= w[1].done),
        "{progress:?}"
    );
    let last = progress.last().unwrap();
    assert_eq!(
        (last.stage.as_str(), last.done, last.total),
        ("features", n, n)
    );
    assert!(progress.iter().all(|p| p.elapsed_s >= 0.0 && p.total == n));
    assert!(
        !candidates.is_empty(),
        "the auto head reports the candidates it weighed"
    );
    assert!(candidates
        .iter()
        .all(|c| (0.0..=1.0).contains(&c.accuracy) && !c.name.is_empty()));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_python_client_installs_from_the_checkout_and_answers() {
    let server = Server::start(&[]);
    server.wait_serving().await;
    register(&server, &["a", "b"]).await;
    let out = std::process::Command::new("bash")
        .arg(polyhead_e2e::root().join("scripts/python-client-check.sh"))
        .args([&server.addr, polyhead_e2e::TOKEN])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("python client ok"), "{stdout}");
}
