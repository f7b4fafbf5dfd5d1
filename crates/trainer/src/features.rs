//! Frozen backbone features with an on-disk cache keyed by backbone fingerprint +
//! dtype + text hash: retraining on the same texts never runs the backbone again.
use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
};

use polyhead_backbone::{Embeddings, EncoderHandle};
use sha2::{Digest, Sha256};

use crate::{error::io, Budget, Result};

/// How many texts were served from the cache and how many were embedded.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct CacheStats {
    /// Served from disk.
    pub hits: usize,
    /// Run through the backbone (and then stored).
    pub misses: usize,
}

/// A folder of cached feature vectors, one small file per text.
#[derive(Debug, Clone)]
pub struct FeatureCache {
    dir: Option<PathBuf>,
}

/// Texts per model-thread job when filling the cache.
const EMBED_CHUNK: usize = 128;

impl FeatureCache {
    /// A cache in `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> FeatureCache {
        FeatureCache {
            dir: Some(dir.into()),
        }
    }

    /// No caching: every call embeds.
    pub fn disabled() -> FeatureCache {
        FeatureCache { dir: None }
    }

    fn path(&self, namespace: &str, text: &str) -> Option<PathBuf> {
        let digest = hex::encode(Sha256::digest(text.as_bytes()));
        self.dir
            .as_ref()
            .map(|d| d.join(namespace).join(&digest[..2]).join(&digest[2..]))
    }

    /// Features of `texts`, in order: cached rows are read, the rest are embedded on
    /// the model thread (at background priority) and written back.
    pub fn features(
        &self,
        encoder: &EncoderHandle,
        texts: &[String],
    ) -> Result<(Embeddings, CacheStats)> {
        self.features_within(encoder, texts, &Budget::unlimited(), &mut |_| {})
    }

    /// [`FeatureCache::features`] that stops when `budget` runs out and reports how
    /// many of `texts` are done after the cache look-up and after each chunk.
    pub fn features_within(
        &self,
        encoder: &EncoderHandle,
        texts: &[String],
        budget: &Budget,
        progress: &mut dyn FnMut(usize),
    ) -> Result<(Embeddings, CacheStats)> {
        let info = encoder.info();
        let dim = info.dim;
        let namespace = format!("{}-{}", info.fingerprint, info.dtype);
        let mut data = vec![0f32; texts.len() * dim];
        let mut missing = Vec::new();
        for (i, text) in texts.iter().enumerate() {
            match self.path(&namespace, text).and_then(|p| read_row(&p, dim)) {
                Some(row) => data[i * dim..(i + 1) * dim].copy_from_slice(&row),
                None => missing.push(i),
            }
        }
        progress(texts.len() - missing.len());
        let mut done = texts.len() - missing.len();
        // Chunks bound how much work a cancelled run still does and pace progress; the
        // model thread runs inference batches between this job's batches.
        for chunk in missing.chunks(EMBED_CHUNK) {
            budget.check()?;
            let batch: Vec<String> = chunk.iter().map(|&i| texts[i].clone()).collect();
            let emb = encoder.embed_blocking(batch)?;
            for (row, &i) in emb.rows().zip(chunk) {
                data[i * dim..(i + 1) * dim].copy_from_slice(row);
                if let Some(p) = self.path(&namespace, &texts[i]) {
                    write_row(&p, row)?;
                }
            }
            done += chunk.len();
            progress(done);
        }
        let stats = CacheStats {
            hits: texts.len() - missing.len(),
            misses: missing.len(),
        };
        Ok((Embeddings::new(dim, data), stats))
    }
}

fn read_row(path: &Path, dim: usize) -> Option<Vec<f32>> {
    let bytes = fs::read(path).ok()?;
    if bytes.len() != dim * 4 {
        return None; // torn or foreign file: recompute
    }
    Some(
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

fn write_row(path: &Path, row: &[f32]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io(dir))?;
    // temp + rename: a concurrent reader sees the whole row or none. tempfile's random
    // names cannot collide between processes sharing the folder (pid 1 in containers).
    let bytes: Vec<u8> = row.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(io(dir))?;
    tmp.write_all(&bytes).map_err(io(tmp.path()))?;
    tmp.persist(path).map_err(|e| io(path)(e.error))?;
    Ok(())
}
