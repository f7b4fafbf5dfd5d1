//! `polyhead bench`: backbone throughput on a file of texts, as one JSON line; with
//! `--addr`, gRPC load against a running server (see `load.rs`).
use std::{path::PathBuf, time::Instant};

use anyhow::{ensure, Context, Result};
use clap::Args;
use polyhead_server::Settings;

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
    let info = encoder.info();
    println!(
        "{}",
        serde_json::json!({
            "impl": "polyhead",
            "label": args.label,
            "dtype": info.dtype,
            "device": info.device,
            "batch_size": settings.backbone.batch_size,
            "threads": tch::get_num_threads(),
            "texts": texts.len(),
            "mean_tokens": tokens as f64 / texts.len() as f64,
            "texts_per_s": done as f64 / secs,
            "seconds": secs,
        })
    );
    Ok(())
}
