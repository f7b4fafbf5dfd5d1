//! Stored heads against the running backbone: what a head records of the backbone
//! it was trained on, and evaluating a stored head on labelled data with the
//! features it reads (frozen, every window's, or its branch's).
use polyhead_backbone::{BackboneInfo, EncoderHandle, Input};
use polyhead_heads::{BackboneRef, HeadArtifact, Metrics, Reads};

use crate::{
    features::FeatureCache,
    metrics::{argmax_rows, evaluate},
    stored_branch, Budget, Dataset, Error, Result,
};

/// Evaluates a stored head on labelled data, with the head's probabilities for every
/// row (in the head's label order). Labels unknown to the head count as errors in the
/// data, not as misclassifications.
pub fn predict_rows(
    encoder: &EncoderHandle,
    cache: &FeatureCache,
    artifact: &HeadArtifact,
    data: &Dataset,
) -> Result<(Metrics, Vec<Vec<f32>>)> {
    artifact.check_backbone(&backbone_ref(encoder.info()))?;
    let labels = artifact.head.labels();
    let truth = data
        .examples
        .iter()
        .map(|e| {
            labels.iter().position(|l| *l == e.label).ok_or_else(|| {
                Error::Dataset(format!(
                    "line {}: label {:?} is not one of the head's labels {labels:?}",
                    e.line, e.label
                ))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let x = match stored_branch::branch_of(artifact, encoder.info().branch.as_ref())? {
        None if artifact.manifest.reads == Reads::Windows => {
            let texts = data.texts();
            let frozen = cache.features(encoder, &texts)?.0;
            cache
                .windowed_within(encoder, &texts, &frozen, &Budget::unlimited())?
                .0
        }
        None => cache.features(encoder, &data.texts())?.0,
        Some(branch) => {
            let ids = encoder.encode(
                &data
                    .texts()
                    .into_iter()
                    .map(Input::Text)
                    .collect::<Vec<_>>(),
            )?;
            encoder
                .embed_branches_blocking(ids, vec![std::sync::Arc::new(branch)])?
                .remove(0)
        }
    };
    let probs = artifact.head.predict_batch(x.as_slice(), &data.texts())?;
    let metrics = evaluate(labels, &truth, &argmax_rows(&probs));
    Ok((metrics, probs))
}

/// What a head records of the backbone it was trained on, and is checked against.
pub fn backbone_ref(info: &BackboneInfo) -> BackboneRef {
    BackboneRef {
        name: info.name.clone(),
        fingerprint: info.fingerprint.clone(),
        dim: info.dim,
        layers: info.branch.map_or(0, |s| s.depth),
        branch_targets: info
            .branch
            .map(|s| stored_branch::targets(&s))
            .unwrap_or_default(),
        reads_text: info.input == "text",
    }
}
