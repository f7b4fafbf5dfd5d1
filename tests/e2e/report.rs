//! `polyhead report`: the page is rendered and what is drawn is checked against the
//! counts `polyhead eval` gives.
use polyhead_e2e::cli_result;

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
