//! Frozen backbone features with an on-disk cache keyed by backbone fingerprint +
//! dtype + text hash: retraining on the same texts never runs the backbone again.
use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
};

use polyhead_backbone::{Embeddings, Encoded, EncoderHandle, Input};
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
    ///
    /// On an image backbone each of `texts` is a picture's file: it is read, cached by
    /// its bytes' hash, and embedded as an image.
    pub fn features_within(
        &self,
        encoder: &EncoderHandle,
        texts: &[String],
        budget: &Budget,
        progress: &mut dyn FnMut(usize),
    ) -> Result<(Embeddings, CacheStats)> {
        let images = encoder.info().input == "image";
        // A picture is cached by what it holds, not by its name.
        let keys: Vec<String> = if images {
            texts
                .iter()
                .map(|p| {
                    let bytes = fs::read(p).map_err(io(Path::new(p)))?;
                    Ok(format!("image:{}", hex::encode(Sha256::digest(&bytes))))
                })
                .collect::<Result<_>>()?
        } else {
            Vec::new()
        };
        let key = |i: usize| -> &str {
            match images {
                true => &keys[i],
                false => &texts[i],
            }
        };
        let info = encoder.info();
        let dim = info.dim;
        let normalized = info.normalize;
        let namespace = format!("{}-{}", info.fingerprint, info.dtype);
        let mut data = vec![0f32; texts.len() * dim];
        let mut missing = Vec::new();
        for i in 0..texts.len() {
            match self
                .path(&namespace, key(i))
                .and_then(|p| read_row(&p, dim, normalized))
            {
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
            let emb = if images {
                let mut ids = Vec::with_capacity(chunk.len());
                for &i in chunk {
                    let p = Path::new(&texts[i]);
                    let bytes = fs::read(p).map_err(io(p))?;
                    let mut one = encoder
                        .encode(&[Input::Image(bytes)])
                        .map_err(|e| crate::Error::Dataset(format!("{}: {e}", p.display())))?;
                    ids.append(&mut one);
                }
                encoder.embed_encoded_blocking(ids)?
            } else {
                let batch: Vec<String> = chunk.iter().map(|&i| texts[i].clone()).collect();
                encoder.embed_blocking(batch)?
            };
            for (row, &i) in emb.rows().zip(chunk) {
                data[i * dim..(i + 1) * dim].copy_from_slice(row);
                if let Some(p) = self.path(&namespace, key(i)) {
                    // The cache only saves time: a row that cannot be written is
                    // computed again next time, and the training goes on.
                    if let Err(e) = write_row(&p, row) {
                        tracing::warn!(error = %e, "feature cache: cannot store a row");
                    }
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

impl FeatureCache {
    /// Features of `texts` read in every window (see [`polyhead_backbone::pool_windows`]),
    /// and the mean windows per text. `frozen` holds the texts' frozen features,
    /// which are their first windows' (as at serving): a text the backbone reads
    /// whole costs nothing more, a longer one a pass per further window. Pooled rows
    /// are cached like frozen ones, in a namespace of their own.
    pub fn windowed_within(
        &self,
        encoder: &EncoderHandle,
        texts: &[String],
        frozen: &Embeddings,
        budget: &Budget,
    ) -> Result<(Embeddings, f64)> {
        let info = encoder.info();
        let (dim, normalized) = (info.dim, info.normalize);
        let namespace = format!("{}-{}-windows", info.fingerprint, info.dtype);
        let inputs: Vec<Input> = texts.iter().map(|t| Input::Text(t.clone())).collect();
        let windows = encoder.encode_windows(&inputs)?;
        let per_text =
            windows.iter().map(Vec::len).sum::<usize>() as f64 / texts.len().max(1) as f64;
        let mut data = frozen.as_slice().to_vec();
        // Texts of more than one window whose pooled row is not cached.
        let missing: Vec<usize> = (0..texts.len())
            .filter(|&i| windows[i].len() > 1)
            .filter(|&i| {
                let cached = self
                    .path(&namespace, &texts[i])
                    .and_then(|p| read_row(&p, dim, normalized));
                if let Some(row) = &cached {
                    data[i * dim..(i + 1) * dim].copy_from_slice(row);
                }
                cached.is_none()
            })
            .collect();
        let further: Vec<Encoded> = missing
            .iter()
            .flat_map(|&i| windows[i][1..].iter().cloned())
            .collect();
        let mut rows = Vec::with_capacity(further.len() * dim);
        for chunk in further.chunks(EMBED_CHUNK) {
            budget.check()?;
            rows.extend_from_slice(encoder.embed_encoded_blocking(chunk.to_vec())?.as_slice());
        }
        let firsts: Vec<&[f32]> = missing.iter().map(|&i| frozen.row(i)).collect();
        let counts: Vec<usize> = missing.iter().map(|&i| windows[i].len()).collect();
        let pooled = polyhead_backbone::pool_windows(&firsts, &counts, &rows, normalized);
        for (&i, row) in missing.iter().zip(&pooled) {
            if let Some(p) = self.path(&namespace, &texts[i]) {
                // As for frozen rows: a row that cannot be stored is computed again.
                if let Err(e) = write_row(&p, row) {
                    tracing::warn!(error = %e, "feature cache: cannot store a row");
                }
            }
            data[i * dim..(i + 1) * dim].copy_from_slice(row);
        }
        Ok((Embeddings::new(dim, data), per_text))
    }
}

/// Largest feature value a row may hold when the backbone does not normalise:
/// pooled transformer states are O(1-10); 3e38 is damage, not a feature.
const MAX_ABS_FEATURE: f32 = 1e4;

/// A cached row, or `None` (computed again) when it is missing, torn, foreign or
/// damaged: every value finite, within [`MAX_ABS_FEATURE`], and of unit length
/// (within 1e-3) when the backbone normalises. Training never sees a bad row.
fn read_row(path: &Path, dim: usize, normalized: bool) -> Option<Vec<f32>> {
    let bytes = fs::read(path).ok()?;
    if bytes.len() != dim * 4 {
        return None;
    }
    let row: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let sane = row
        .iter()
        .all(|v| v.is_finite() && v.abs() <= MAX_ABS_FEATURE);
    let norm = row
        .iter()
        .map(|v| f64::from(*v).powi(2))
        .sum::<f64>()
        .sqrt();
    if !sane || (normalized && (norm - 1.0).abs() > 1e-3) {
        tracing::warn!(path = %path.display(), "feature cache: a damaged row is computed again");
        return None;
    }
    Some(row)
}

fn write_row(path: &Path, row: &[f32]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io(dir))?;
    // Something that is not a row file in the row's place (a folder) is cleared.
    if fs::symlink_metadata(path).is_ok_and(|m| !m.is_file()) {
        let _ = fs::remove_dir_all(path).or_else(|_| fs::remove_file(path));
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, row: &[f32]) -> PathBuf {
        let p = dir.join(name);
        let bytes: Vec<u8> = row.iter().flat_map(|v| v.to_le_bytes()).collect();
        fs::write(&p, bytes).unwrap();
        p
    }

    #[test]
    fn damaged_rows_are_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let unit = [0.6f32, 0.8, 0.0];
        let ok = write(dir.path(), "ok", &unit);
        assert_eq!(read_row(&ok, 3, true), Some(unit.to_vec()));
        for (name, row) in [
            ("nan", [f32::NAN, 0.0, 0.0]),
            ("inf", [f32::INFINITY, 0.0, 0.0]),
            ("huge", [3e38, 0.0, 0.0]),
            ("not-unit", [0.5, 0.5, 0.0]),
        ] {
            let p = write(dir.path(), name, &row);
            assert_eq!(read_row(&p, 3, true), None, "{name}");
        }
        // Unnormalised backbones: any finite, bounded row.
        let p = write(dir.path(), "plain", &[2.0, -3.0, 0.5]);
        assert!(read_row(&p, 3, false).is_some());
        let p = write(dir.path(), "plain-huge", &[3e38, 0.0, 0.0]);
        assert_eq!(read_row(&p, 3, false), None);
        // Torn, or a folder in the row's place.
        let p = write(dir.path(), "torn", &[0.6, 0.8]);
        assert_eq!(read_row(&p, 3, true), None);
        let d = dir.path().join("folder");
        fs::create_dir(&d).unwrap();
        assert_eq!(read_row(&d, 3, true), None);
    }

    #[test]
    fn a_folder_in_a_rows_place_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ab").join("cdef");
        fs::create_dir_all(p.join("inside")).unwrap();
        write_row(&p, &[0.6, 0.8, 0.0]).expect("written over the folder");
        assert_eq!(read_row(&p, 3, true), Some(vec![0.6, 0.8, 0.0]));
    }
}
