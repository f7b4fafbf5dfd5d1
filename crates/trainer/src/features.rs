//! Frozen backbone features with an on-disk cache keyed by backbone fingerprint +
//! dtype + text hash: retraining on the same texts never runs the backbone again.
use std::{
    fs,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

use polyhead_backbone::{Embeddings, EncoderHandle};
use sha2::{Digest, Sha256};

use crate::{error::io, Result};

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

static SEQ: AtomicU64 = AtomicU64::new(0);

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

    /// Features of `texts`, in order: cached rows are read, the rest are embedded in
    /// one call to the model thread and written back.
    pub fn features(
        &self,
        encoder: &EncoderHandle,
        texts: &[String],
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
        // Chunks keep each model-thread job short, so a server's inference requests
        // interleave with a training job instead of waiting behind all of it.
        for chunk in missing.chunks(EMBED_CHUNK) {
            let batch: Vec<String> = chunk.iter().map(|&i| texts[i].clone()).collect();
            let emb = encoder.embed_blocking(batch)?;
            for (row, &i) in emb.rows().zip(chunk) {
                data[i * dim..(i + 1) * dim].copy_from_slice(row);
                if let Some(p) = self.path(&namespace, &texts[i]) {
                    write_row(&p, row)?;
                }
            }
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
    // temp + rename: a concurrent reader sees the whole row or none.
    let tmp = dir.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let bytes: Vec<u8> = row.iter().flat_map(|v| v.to_le_bytes()).collect();
    fs::write(&tmp, bytes).map_err(io(&tmp))?;
    fs::rename(&tmp, path).map_err(io(path))
}
