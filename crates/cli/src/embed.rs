//! `polyhead info` and `polyhead embed`.
use std::io::{BufRead, BufWriter, Write};

use anyhow::{Context, Result};
use polyhead_backbone::Encoder;
use polyhead_settings::Settings;

/// Loads the encoder `settings` describe, on this thread (its runtime sets its
/// threads up here).
pub fn load_encoder(settings: &Settings) -> Result<Encoder> {
    let options = settings.encoder_options();
    Encoder::load(&settings.backbone.model_dir, &options).context("loading the backbone")
}

/// `polyhead info`: one JSON object describing the backbone.
pub fn info(settings: &Settings) -> Result<()> {
    let encoder = load_encoder(settings)?;
    println!("{}", serde_json::to_string(encoder.info())?);
    Ok(())
}

/// `polyhead embed`: reads lines, writes `{"embedding": [...]}` per line in input order.
/// Embeds in chunks so memory stays bounded on long inputs.
pub fn embed(settings: &Settings) -> Result<()> {
    let encoder = load_encoder(settings)?;
    let stdin = std::io::stdin().lock();
    let mut out = BufWriter::new(std::io::stdout().lock());
    let chunk = settings.backbone.batch_size.max(1) * 8;
    let mut lines = Vec::with_capacity(chunk);
    let flush = |lines: &mut Vec<String>, out: &mut BufWriter<_>| -> Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let emb = encoder.embed(lines)?;
        for row in emb.rows() {
            serde_json::to_writer(&mut *out, &serde_json::json!({ "embedding": row }))?;
            out.write_all(b"\n")?;
        }
        lines.clear();
        Ok(())
    };
    for line in stdin.lines() {
        lines.push(line.context("reading stdin (is it UTF-8?)")?);
        if lines.len() == chunk {
            flush(&mut lines, &mut out)?;
        }
    }
    flush(&mut lines, &mut out)?;
    out.flush()?;
    Ok(())
}
