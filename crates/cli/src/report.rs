//! `polyhead report`: a self-contained HTML page (inline SVG, no scripts, no network)
//! of how a stored head does on labelled data: the labelled confusion matrix, per-class
//! precision/recall/F1, the head against its from-scratch baseline (as measured when it
//! was trained), and the candidates `auto` weighed.
use crate::tasks::Columns;
use std::{fmt::Write as _, path::PathBuf};

use crate::{eval::Evaluated, tasks::StoreArg};
use anyhow::{Context, Result};
use clap::Args;
use polyhead_heads::Manifest;
use polyhead_settings::Settings;

/// Arguments of `polyhead report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Task name.
    #[arg(long)]
    pub task: String,
    /// Labelled data the head did not train on (.jsonl or .csv).
    #[arg(long, value_name = "FILE")]
    pub data: PathBuf,
    /// Version to report on (default: the active one).
    #[arg(long)]
    pub version: Option<u64>,
    /// Where to write the page (default: report-TASK-vVERSION.html).
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub columns: Columns,
    #[command(flatten)]
    pub store: StoreArg,
    #[command(flatten)]
    pub backbone: crate::BackboneArgs,
}

/// `polyhead report`.
pub fn report(settings: &Settings, a: &ReportArgs) -> Result<()> {
    let Evaluated {
        version,
        artifact,
        metrics,
        ..
    } = Evaluated::run(
        settings,
        &a.task,
        a.version,
        &a.data,
        (&a.columns.text, &a.columns.label),
    )?;
    let page = render(&artifact.manifest, &metrics, &a.data.display().to_string());
    let output = a
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("report-{}-v{version}.html", a.task)));
    std::fs::write(&output, page).with_context(|| format!("writing {}", output.display()))?;
    eprintln!(
        "report of {} v{version} on {} ({} rows, accuracy {:.4}): {}",
        a.task,
        a.data.display(),
        metrics.n,
        metrics.accuracy,
        output.display()
    );
    println!(
        "{}",
        serde_json::json!({"task": a.task, "version": version, "output": output, "n": metrics.n,
            "accuracy": metrics.accuracy, "macro_f1": metrics.macro_f1})
    );
    Ok(())
}

/// HTML-escapes `s`.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// The fill of a confusion cell holding fraction `f` of its row: white to blue.
pub fn heat(f: f64) -> (u8, u8, u8) {
    let f = f.clamp(0.0, 1.0);
    let c = |from: f64, to: f64| (from + (to - from) * f).round() as u8;
    (c(255.0, 40.0), c(255.0, 100.0), c(255.0, 215.0))
}

/// Geometry of the confusion matrix, shared with the tests that look at it.
pub const MATRIX_MARGIN: f64 = 140.0;

/// The side of one confusion cell for `k` labels.
pub fn cell_size(k: usize) -> f64 {
    (560.0 / k.max(1) as f64).clamp(12.0, 64.0)
}

/// The confusion matrix: rows the true labels, columns the predicted ones; a cell's
/// colour is its share of the row (the class's recall on the diagonal), its text the count.
fn confusion_svg(labels: &[String], confusion: &[Vec<u64>]) -> String {
    let k = labels.len();
    let cell = cell_size(k);
    let m = MATRIX_MARGIN;
    let side = m + cell * k as f64 + 20.0;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg id="confusion" xmlns="http://www.w3.org/2000/svg" width="{side}" height="{side}" viewBox="0 0 {side} {side}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12"><rect width="{side}" height="{side}" fill="white"/>"#
    );
    let _ = write!(
        s,
        r#"<text x="{}" y="14" text-anchor="middle" font-weight="bold">predicted</text><text x="14" y="{}" text-anchor="middle" font-weight="bold" transform="rotate(-90 14 {})">true</text>"#,
        m + cell * k as f64 / 2.0,
        m + cell * k as f64 / 2.0,
        m + cell * k as f64 / 2.0
    );
    for (i, row) in confusion.iter().enumerate() {
        let total: u64 = row.iter().sum();
        for (j, &count) in row.iter().enumerate() {
            let f = if total == 0 {
                0.0
            } else {
                count as f64 / total as f64
            };
            let (r, g, b) = heat(f);
            let (x, y) = (m + cell * j as f64, m + cell * i as f64);
            let _ = write!(
                s,
                r##"<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="rgb({r},{g},{b})" stroke="#999" stroke-width="0.5"><title>true {} / predicted {}: {count} ({:.1}% of the row)</title></rect>"##,
                esc(&labels[i]),
                esc(&labels[j]),
                f * 100.0
            );
            if k <= 24 {
                let colour = if f > 0.5 { "white" } else { "black" };
                let _ = write!(
                    s,
                    r#"<text x="{}" y="{}" text-anchor="middle" dominant-baseline="central" fill="{colour}">{count}</text>"#,
                    x + cell / 2.0,
                    y + cell / 2.0
                );
            }
        }
    }
    for (i, label) in labels.iter().enumerate() {
        let short: String = label.chars().take(18).collect();
        let c = m + cell * i as f64 + cell / 2.0;
        let _ = write!(
            s,
            r#"<text x="{}" y="{c}" text-anchor="end" dominant-baseline="central">{}</text><text x="{c}" y="{}" text-anchor="start" transform="rotate(-45 {c} {})">{}</text>"#,
            m - 6.0,
            esc(&short),
            m - 6.0,
            m - 6.0,
            esc(&short)
        );
    }
    s.push_str("</svg>");
    s
}

/// Horizontal bars: `(name, value in 0..1, highlighted)`.
fn bars_svg(id: &str, rows: &[(String, f64, bool)]) -> String {
    let (label_w, bar_w, row_h) = (260.0, 360.0, 22.0);
    let h = row_h * rows.len() as f64 + 30.0;
    let w = label_w + bar_w + 70.0;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg id="{id}" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12"><rect width="{w}" height="{h}" fill="white"/>"#
    );
    for (i, (name, v, hi)) in rows.iter().enumerate() {
        let y = 10.0 + row_h * i as f64;
        let fill = if *hi { "#2864d7" } else { "#9bb5e6" };
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end" dominant-baseline="central">{}</text><rect x="{label_w}" y="{}" width="{:.1}" height="{}" fill="{fill}"/><text x="{:.1}" y="{}" dominant-baseline="central">{v:.4}</text>"#,
            label_w - 8.0,
            y + row_h / 2.0 - 1.0,
            esc(name),
            y + 2.0,
            bar_w * v.clamp(0.0, 1.0),
            row_h - 6.0,
            label_w + bar_w * v.clamp(0.0, 1.0) + 6.0,
            y + row_h / 2.0 - 1.0
        );
    }
    s.push_str("</svg>");
    s
}

/// The whole page.
pub fn render(manifest: &Manifest, m: &polyhead_heads::Metrics, data: &str) -> String {
    let labels: Vec<String> = m.per_class.iter().map(|c| c.label.clone()).collect();
    let mut page = String::new();
    let title = format!("{} v{}", manifest.task, manifest.version);
    let _ = write!(
        page,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>polyhead report: {t}</title><style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}th:first-child,td:first-child{{text-align:left}}h2{{margin-top:1.5em}}.note{{color:#555}}</style></head><body>"#,
        t = esc(&title)
    );
    let _ = write!(
        page,
        r#"<h1>{t}</h1><p>{kind} head, created {created}, on {data}: <b>{n}</b> rows, accuracy <b id="accuracy">{acc:.4}</b>, macro-F1 <b>{f1:.4}</b>, macro precision {p:.4}, macro recall {r:.4}.</p>"#,
        t = esc(&title),
        kind = esc(manifest.head.name()),
        created = esc(&manifest.created_at),
        data = esc(data),
        n = m.n,
        acc = m.accuracy,
        f1 = m.macro_f1,
        p = m.macro_precision,
        r = m.macro_recall
    );
    page.push_str("<h2>Confusion matrix</h2><p class=\"note\">Rows: the true label; columns: the head's prediction; the colour is the cell's share of its row (the diagonal is each class's recall).</p>");
    page.push_str(&confusion_svg(&labels, &m.confusion));
    page.push_str("<h2>Per class</h2><table id=\"per-class\"><tr><th>label</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>");
    for c in &m.per_class {
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{:.4}</td><td>{:.4}</td><td>{:.4}</td><td>{}</td></tr>",
            esc(&c.label),
            c.precision,
            c.recall,
            c.f1,
            c.support
        );
    }
    page.push_str("</table>");
    page.push_str("<h2>Head against its baseline</h2>");
    let mut rows = vec![
        (
            format!("head on {} (accuracy)", short(data)),
            m.accuracy,
            true,
        ),
        (
            format!("head on {} (macro-F1)", short(data)),
            m.macro_f1,
            true,
        ),
    ];
    match &manifest.metrics {
        Some(e) => {
            rows.push((
                "head, validation (accuracy)".into(),
                e.head.accuracy,
                false,
            ));
            rows.push(("head, validation (macro-F1)".into(), e.head.macro_f1, false));
            if let Some(b) = &e.baseline {
                rows.push(("baseline, validation (accuracy)".into(), b.accuracy, false));
                rows.push(("baseline, validation (macro-F1)".into(), b.macro_f1, false));
            }
            page.push_str("<p class=\"note\">The baseline is TF-IDF + logistic regression trained from scratch on the same examples; both were measured at training time on examples they were not fitted on (the validation set). The head's rows on this file are measured now.</p>");
        }
        None => page.push_str(
            "<p class=\"note\">This head was uploaded without training metrics: no baseline to compare with.</p>",
        ),
    }
    page.push_str(&bars_svg("versus-baseline", &rows));
    if let Some(sel) = &manifest.selection {
        let _ = write!(
            page,
            "<h2>Candidates weighed</h2><p class=\"note\">Chosen by {}: <b>{}</b> (accuracy on examples each candidate was not fitted on).</p>",
            esc(&sel.method),
            esc(&sel.chosen)
        );
        let rows: Vec<(String, f64, bool)> = sel
            .candidates
            .iter()
            .map(|c| (c.name.clone(), c.accuracy, c.name == sel.chosen))
            .collect();
        page.push_str(&bars_svg("candidates", &rows));
    }
    page.push_str("</body></html>\n");
    page
}

fn short(path: &str) -> String {
    std::path::Path::new(path)
        .file_name()
        .map_or_else(|| path.to_owned(), |f| f.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heat_runs_from_white_to_blue() {
        assert_eq!(heat(0.0), (255, 255, 255));
        assert_eq!(heat(1.0), (40, 100, 215));
        assert!(heat(0.3).0 > heat(0.6).0);
    }

    #[test]
    fn labels_are_escaped() {
        let svg = confusion_svg(&["<a>".into(), "b&c".into()], &[vec![1, 0], vec![0, 1]]);
        assert!(svg.contains("&lt;a&gt;") && svg.contains("b&amp;c"));
        assert!(!svg.contains("<a>"));
    }
}
