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
    use polyhead_api::v1::{train_progress::Event, Example, TrainHeadRequest, TrainOptions};
    let server = Server::start(&[]);
    server.wait_serving().await;
    let examples: Vec<Example> = polyhead_e2e::spam_examples()
        .into_iter()
        .map(|(text, label)| Example { text, label })
        .collect();
    let n = examples.len() as u64;
    let request = TrainHeadRequest {
        task: "drawn".into(),
        examples,
        options: Some(TrainOptions {
            seed: 1,
            ..Default::default()
        }),
        activate: true,
        ..Default::default()
    };
    let mut stream = server
        .admin()
        .await
        .train_head(request)
        .await
        .unwrap()
        .into_inner();
    let (mut progress, mut candidates, mut stages, mut done) =
        (Vec::new(), Vec::new(), Vec::new(), None);
    while let Some(m) = stream.message().await.unwrap() {
        match m.event.expect("every message has an event") {
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

/// The SVG element `id` of an HTML page.
fn svg_of(page: &str, id: &str) -> String {
    let start = page
        .find(&format!("<svg id=\"{id}\""))
        .unwrap_or_else(|| panic!("no svg {id}"));
    let end = start + page[start..].find("</svg>").unwrap() + "</svg>".len();
    page[start..end].to_owned()
}

/// Renders an SVG (1 px per unit) and keeps a PNG of it beside the test's files.
fn render(svg: &str, png: &std::path::Path) -> (resvg::tiny_skia::Pixmap, bool) {
    let mut options = resvg::usvg::Options::default();
    options.fontdb_mut().load_system_fonts();
    let fonts = !options.fontdb.is_empty();
    let tree = resvg::usvg::Tree::from_str(svg, &options).unwrap();
    let size = tree.size().to_int_size();
    let mut pixmap = resvg::tiny_skia::Pixmap::new(size.width(), size.height()).unwrap();
    resvg::render(
        &tree,
        resvg::tiny_skia::Transform::default(),
        &mut pixmap.as_mut(),
    );
    pixmap.save_png(png).unwrap();
    (pixmap, fonts)
}

#[test]
fn the_report_draws_the_labelled_confusion_matrix_and_the_baseline() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let data = dir.path().join("d.jsonl");
    // Three classes, so a good head leaves most mass on the diagonal.
    let mut rows = Vec::new();
    for (label, words) in [
        (
            "sport",
            [
                "football match",
                "tennis final",
                "the striker scored",
                "a marathon record",
            ],
        ),
        (
            "money",
            [
                "stock prices fell",
                "the central bank rate",
                "quarterly earnings",
                "bond yields rose",
            ],
        ),
        (
            "food",
            [
                "a pasta recipe",
                "bake the bread",
                "fresh tomato salad",
                "grill the fish",
            ],
        ),
    ] {
        for (i, w) in words.iter().enumerate() {
            for extra in ["today", "this week", "again", "news"] {
                rows.push(
                    serde_json::json!({"text": format!("{w} {extra} {i}"), "label": label})
                        .to_string(),
                );
            }
        }
    }
    std::fs::write(&data, rows.join("\n") + "\n").unwrap();
    // The data reported on: the same texts with five sport rows labelled money, so
    // the matrix has off-diagonal cells and the accuracy is below 1.
    let test = dir.path().join("t.jsonl");
    let flipped: Vec<String> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            if i < 5 {
                r.replace("\"sport\"", "\"money\"")
            } else {
                r.clone()
            }
        })
        .collect();
    std::fs::write(&test, flipped.join("\n") + "\n").unwrap();
    let t = test.to_str().unwrap();
    let (d, s) = (data.to_str().unwrap(), store.to_str().unwrap());
    let (code, _, err) = cli_result(
        &[
            "train", "--task", "topics", "--data", d, "--store", s, "--seed", "1",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let page_path = dir.path().join("r.html");
    let (code, out, err) = cli_result(
        &[
            "report",
            "--task",
            "topics",
            "--data",
            t,
            "--store",
            s,
            "--output",
            page_path.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"accuracy\""), "{out}");
    let page = std::fs::read_to_string(&page_path).unwrap();
    for needle in [
        "food",
        "money",
        "sport",
        "baseline, validation (accuracy)",
        "Candidates weighed",
        "per-class",
    ] {
        assert!(page.contains(needle), "the page lacks {needle:?}");
    }
    assert!(!page.contains("<script"), "self-contained, no scripts");
    // The counts the picture must show: eval's labelled confusion on the same data.
    let (_, eval, _) = cli_result(
        &[
            "eval", "--task", "topics", "--data", t, "--store", s, "--json",
        ],
        None,
    );
    let eval: serde_json::Value = serde_json::from_str(eval.trim()).unwrap();
    let labels: Vec<String> = serde_json::from_value(eval["labels"].clone()).unwrap();
    let confusion: Vec<Vec<u64>> = serde_json::from_value(eval["confusion"].clone()).unwrap();
    assert_eq!(
        eval["confusion_by_label"][&labels[0]][&labels[0]],
        confusion[0][0]
    );

    // Look at the picture: each cell's colour is its share of the row.
    let png = polyhead_e2e::root().join("target/report-confusion.png");
    let (pixmap, fonts) = render(&svg_of(&page, "confusion"), &png);
    let k = labels.len();
    let cell = (560.0 / k as f64).clamp(12.0, 64.0);
    let margin = 140.0;
    for (i, row) in confusion.iter().enumerate() {
        let total: u64 = row.iter().sum();
        for (j, &count) in row.iter().enumerate() {
            let f = count as f64 / total as f64;
            // A point inside the cell, away from its count text in the middle.
            let (x, y) = (
                margin + cell * j as f64 + cell * 0.15,
                margin + cell * i as f64 + cell * 0.15,
            );
            let p = pixmap.pixel(x as u32, y as u32).unwrap();
            let want_red = 255.0 + (40.0 - 255.0) * f;
            assert!(
                (p.red() as f64 - want_red).abs() <= 3.0,
                "cell ({}, {}) holds {count}/{total}: red {} where {want_red:.0} was drawn for it",
                labels[i],
                labels[j],
                p.red()
            );
        }
    }
    // Where the machine has fonts, every row's label is drawn left of its row (dark
    // pixels in that strip).
    if fonts {
        for (i, label) in labels.iter().enumerate() {
            let y0 = (margin + cell * i as f64) as u32;
            let inked = (0..margin as u32 - 6)
                .flat_map(|x| (y0..y0 + cell as u32).map(move |y| (x, y)))
                .filter(|&(x, y)| pixmap.pixel(x, y).unwrap().red() < 128)
                .count();
            assert!(
                inked > 20,
                "no label drawn for row {label} ({inked} dark pixels)"
            );
        }
    } else {
        eprintln!(
            "no system fonts: the report's text is not rendered here, only its cells checked"
        );
    }
    let off_diagonal: u64 = (0..k)
        .flat_map(|i| (0..k).filter(move |&j| j != i).map(move |j| (i, j)))
        .map(|(i, j)| confusion[i][j])
        .sum();
    assert_eq!(off_diagonal, 5, "{confusion:?}");
    // The diagonal (a head on data like its training data) is the darkest of each row.
    for (i, row) in confusion.iter().enumerate() {
        let best = (0..k).max_by_key(|&j| row[j]).unwrap();
        assert_eq!(best, i, "row {} of {confusion:?}", labels[i]);
    }
    // The bars: head and baseline, each as long as its value.
    let (bars, _) = render(
        &svg_of(&page, "versus-baseline"),
        &polyhead_e2e::root().join("target/report-bars.png"),
    );
    let blue_run = |y: u32| {
        (0..bars.width())
            .filter(|&x| {
                let p = bars.pixel(x, y).unwrap();
                p.blue() > 180 && p.red() < 180
            })
            .count() as f64
    };
    // The first bar is the head's accuracy on this file: 360 px is 1.0.
    let acc = eval["accuracy"].as_f64().unwrap();
    assert!(
        (blue_run(10 + 11) - 360.0 * acc).abs() <= 3.0,
        "bar {} for accuracy {acc}",
        blue_run(21)
    );
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
