//! `polyhead bench`: backbone throughput on a file of texts, as one JSON line; with
//! `--addr`, gRPC load against a running server (see `load.rs`).
use std::{path::PathBuf, time::Instant};

use anyhow::{ensure, Context, Result};
use clap::Args;
use polyhead_settings::Settings;

use crate::{embed::load_encoder, BackboneArgs};

/// Arguments of `polyhead bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Texts, one per line.
    #[arg(long, value_name = "FILE")]
    pub input: PathBuf,
    /// Keep repeating the whole file until this many seconds have passed.
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Label echoed in the output (e.g. short/medium/long).
    #[arg(long, default_value = "")]
    pub label: String,
    #[command(flatten)]
    pub backbone: BackboneArgs,
    #[command(flatten)]
    pub load: crate::load::LoadArgs,
    #[command(flatten)]
    pub store: crate::tasks::StoreArg,
}

/// Runs the benchmark: one warm-up pass over the file, then timed passes. With
/// batch size 1 every text is its own forward pass.
pub fn run(settings: &Settings, args: &BenchArgs) -> Result<()> {
    let text = std::fs::read_to_string(&args.input)
        .with_context(|| format!("reading {}", args.input.display()))?;
    let texts: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    ensure!(!texts.is_empty(), "{} has no lines", args.input.display());
    if args.load.addr.is_some() {
        let owned = texts.iter().map(|t| (*t).to_owned()).collect();
        return crate::load::run(&args.load, owned, args.seconds);
    }
    let encoder = load_encoder(settings)?;
    let tokens: usize = encoder.tokenize(&texts)?.iter().map(Vec::len).sum();
    encoder.embed(&texts)?;
    let start = Instant::now();
    let mut done = 0usize;
    while start.elapsed().as_secs_f64() < args.seconds {
        encoder.embed(&texts)?;
        done += texts.len();
    }
    let secs = start.elapsed().as_secs_f64();
    if !args.load.task.is_empty() {
        return head_cost(settings, args, &encoder, &texts, done as f64 / secs);
    }
    let info = encoder.info();
    println!(
        "{}",
        serde_json::json!({
            "impl": "polyhead",
            "label": args.label,
            "dtype": info.dtype,
            "device": info.device,
            "batch_size": settings.backbone.batch_size,
            "threads": settings.encoder_options().resolved_threads(),
            "texts": texts.len(),
            "mean_tokens": tokens as f64 / texts.len() as f64,
            "texts_per_s": done as f64 / secs,
            "seconds": secs,
        })
    );
    Ok(())
}

/// With `--task` (and no `--addr`): what each task's active head adds per text on
/// top of the shared backbone pass (plain-Rust forward, plus the TF-IDF transform of
/// the text for hybrid heads), one JSON line per task.
fn head_cost(
    settings: &Settings,
    args: &BenchArgs,
    encoder: &polyhead_backbone::Encoder,
    texts: &[&str],
    backbone_texts_per_s: f64,
) -> Result<()> {
    let store = crate::tasks::open_store(settings)?;
    let emb = encoder.embed(texts)?;
    for task in &args.load.task {
        let version = store
            .active(task)?
            .with_context(|| format!("task {task:?} has no active version"))?;
        let head = store.load(task, version)?.head;
        let start = Instant::now();
        let mut n = 0usize;
        while start.elapsed().as_secs_f64() < args.seconds.min(2.0) {
            for (row, text) in emb.rows().zip(texts) {
                std::hint::black_box(head.predict(row, text)?);
            }
            n += texts.len();
        }
        let us = start.elapsed().as_secs_f64() * 1e6 / n as f64;
        println!(
            "{}",
            serde_json::json!({
                "task": task, "head_kind": head.kind().name(), "labels": head.labels().len(),
                "head_us_per_text": us, "backbone_us_per_text": 1e6 / backbone_texts_per_s,
                "share_of_backbone": us * backbone_texts_per_s / 1e6,
            })
        );
    }
    Ok(())
}
