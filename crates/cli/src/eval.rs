//! `polyhead eval`: a stored head measured on labelled data (and, with
//! `--predictions`, every row's answer); [`Evaluated`] is shared with `polyhead report`.
use crate::tasks::Columns;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use polyhead_heads::Metrics;
use polyhead_settings::Settings;
use polyhead_trainer::{Dataset, FeatureCache};
use serde_json::json;

use crate::{
    tasks::{load, open_existing_store, spawn_encoder, version_or_active, StoreArg},
    BackboneArgs,
};

/// Arguments of `polyhead eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Task name.
    #[arg(long)]
    pub task: String,
    /// Labelled data (.jsonl or .csv).
    #[arg(long, value_name = "FILE")]
    pub data: PathBuf,
    #[command(flatten)]
    pub columns: Columns,
    /// Version to evaluate (default: the active one).
    #[arg(long)]
    pub version: Option<u64>,
    /// Also write every row's prediction here (JSONL: line, text, label, predicted,
    /// score, correct, scores), in the data's order.
    #[arg(long, value_name = "FILE")]
    pub predictions: Option<PathBuf>,
    /// Print one JSON object (the default output is JSON too, pretty-printed).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub store: StoreArg,
    #[command(flatten)]
    pub backbone: BackboneArgs,
}

/// A stored head (`version`, or the active one) evaluated on a labelled file, with
/// every row's probabilities: what `eval` and `report` show.
pub struct Evaluated {
    /// The version evaluated.
    pub version: u64,
    /// The head.
    pub artifact: polyhead_heads::HeadArtifact,
    /// The data, as read.
    pub data: Dataset,
    /// Its metrics.
    pub metrics: Metrics,
    /// Per row, the head's probabilities in its label order.
    pub probs: Vec<Vec<f32>>,
}

impl Evaluated {
    /// Opens the store, loads the head and the data, embeds and predicts.
    pub fn run(
        settings: &Settings,
        task: &str,
        version: Option<u64>,
        data: &std::path::Path,
        (text, label): (&str, &str),
    ) -> Result<Evaluated> {
        let store = open_existing_store(settings)?;
        let version = version_or_active(store.as_ref(), task, version)?;
        let artifact = store.load(task, version)?;
        let data = load(data, text, label)?;
        let encoder = spawn_encoder(settings)?;
        let cache = FeatureCache::new(settings.feature_cache_dir());
        let (metrics, probs) = polyhead_trainer::predict_rows(&encoder, &cache, &artifact, &data)?;
        Ok(Evaluated {
            version,
            artifact,
            data,
            metrics,
            probs,
        })
    }
}

pub fn eval(settings: &Settings, a: &EvalArgs) -> Result<()> {
    let Evaluated {
        version,
        artifact,
        data,
        metrics: m,
        probs,
    } = Evaluated::run(
        settings,
        &a.task,
        a.version,
        &a.data,
        (&a.columns.text, &a.columns.label),
    )?;
    if let Some(path) = &a.predictions {
        use std::io::Write;
        let labels = artifact.head.labels();
        let mut out = std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        );
        let best = polyhead_trainer::argmax_rows(&probs);
        for ((e, p), &best) in data.examples.iter().zip(&probs).zip(&best) {
            let scores: serde_json::Map<String, serde_json::Value> = labels
                .iter()
                .zip(p)
                .map(|(l, s)| (l.clone(), json!(s)))
                .collect();
            writeln!(
                out,
                "{}",
                json!({"line": e.line, "text": e.text, "label": e.label, "predicted": labels[best],
                       "score": p[best], "correct": labels[best] == e.label, "scores": scores})
            )?;
        }
        out.flush()?;
    }
    let base = artifact.manifest.metrics.as_ref();
    let out = json!({
        "task": a.task, "version": version, "head_kind": artifact.manifest.head.name(),
        "selection": artifact.manifest.selection,
        "validation": { "head": base.map(|e| &e.head), "baseline": base.and_then(|e| e.baseline.as_ref()) },
        "labels": artifact.head.labels(), "n": m.n,
        "accuracy": m.accuracy, "macro_precision": m.macro_precision, "macro_recall": m.macro_recall,
        "macro_f1": m.macro_f1, "per_class": m.per_class, "confusion": m.confusion,
        // {"true label": {"predicted label": count}}: the matrix with its labels.
        "confusion_by_label": confusion_by_label(artifact.head.labels(), &m.confusion),
    });
    println!(
        "{}",
        if a.json {
            out.to_string()
        } else {
            serde_json::to_string_pretty(&out)?
        }
    );
    Ok(())
}

/// `confusion[true][predicted]` as `{"true": {"predicted": count}}`.
fn confusion_by_label(labels: &[String], confusion: &[Vec<u64>]) -> serde_json::Value {
    let rows: serde_json::Map<String, serde_json::Value> = labels
        .iter()
        .zip(confusion)
        .map(|(t, row)| {
            let cols: serde_json::Map<String, serde_json::Value> = labels
                .iter()
                .zip(row)
                .map(|(p, n)| (p.clone(), json!(n)))
                .collect();
            (t.clone(), serde_json::Value::Object(cols))
        })
        .collect();
    serde_json::Value::Object(rows)
}
