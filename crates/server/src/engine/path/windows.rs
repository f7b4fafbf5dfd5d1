//! Heads that read every window of a long text: their features pool the shared
//! frozen pass (the first window) with the text's further windows, which go through
//! the batcher with every other request's texts and are cached once for every
//! windowed task.
use std::{sync::Arc, time::Instant};

use metrics::{counter, histogram};
use polyhead_backbone::{pool_windows, Encoded, Input};
use polyhead_heads::{HeadArtifact, Reads};

use super::{Features, InferencePath};
use crate::{metrics as m, ServerError};

/// The cache id of features pooled over every window: no branch id is this (theirs
/// hold `@`), so the key spaces never meet.
const WINDOWS_ID: &str = "windows";

/// Whether `head` reads every window of a text (decoding refuses it with a branch).
pub(super) fn reads_windows(head: &HeadArtifact) -> bool {
    head.manifest.reads == Reads::Windows
}

impl InferencePath {
    /// Features of `inputs` read in every window and pooled, given their frozen
    /// features (the first windows'): cache hits are free, a text the backbone reads
    /// whole costs nothing more, and a longer one's further windows go through the
    /// batcher with every other request's texts.
    pub(super) async fn windowed_features(
        &self,
        inputs: &[Input],
        frozen: &Features,
        deadline: Instant,
    ) -> Result<Features, ServerError> {
        let keys: Vec<_> = inputs
            .iter()
            .map(|i| self.cache.key_for(Some(WINDOWS_ID), i))
            .collect();
        let mut out: Vec<Option<Arc<[f32]>>> = keys.iter().map(|k| self.cache.get(k)).collect();
        let missing: Vec<usize> = (0..inputs.len()).filter(|&i| out[i].is_none()).collect();
        counter!(m::CACHE_HITS).increment((inputs.len() - missing.len()) as u64);
        counter!(m::CACHE_MISSES).increment(missing.len() as u64);
        if missing.is_empty() {
            return collect(out);
        }
        let windows = self
            .on_tokenizer_pool({
                let texts: Vec<Input> = missing.iter().map(|&i| inputs[i].clone()).collect();
                move |e| e.encode_windows(&texts)
            })
            .await?;
        self.check_token_total(
            windows.iter().flatten().map(Encoded::len).sum(),
            "in all their windows (a task named reads every window of a long text)",
        )?;
        let further: Vec<Encoded> = windows.iter().flat_map(|w| w[1..].to_vec()).collect();
        let rows = if further.is_empty() {
            Vec::new()
        } else {
            counter!(m::WINDOW_PASSES).increment(further.len() as u64);
            let started = Instant::now();
            let emb = self.batcher.embed(further, deadline).await?;
            histogram!(m::EMBED).record(started.elapsed().as_secs_f64());
            emb.as_slice().to_vec()
        };
        let firsts: Vec<&[f32]> = missing.iter().map(|&i| &*frozen[i]).collect();
        let counts: Vec<usize> = windows.iter().map(Vec::len).collect();
        let pooled = pool_windows(&firsts, &counts, &rows, self.info().normalize);
        for ((&i, w), row) in missing.iter().zip(&windows).zip(pooled) {
            // A text of one window reads its frozen features: the same row, shared.
            let v: Arc<[f32]> = if w.len() > 1 {
                Arc::from(row)
            } else {
                frozen[i].clone()
            };
            self.cache.put(keys[i], v.clone());
            out[i] = Some(v);
        }
        collect(out)
    }
}

fn collect(rows: Vec<Option<Arc<[f32]>>>) -> Result<Features, ServerError> {
    rows.into_iter()
        .map(|o| o.ok_or_else(|| ServerError::Internal("windowed row missing".into())))
        .collect()
}
