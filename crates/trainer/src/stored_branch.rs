//! A branch as a head artifact stores it (`manifest.json`'s `branch` section and the
//! `branch.{layer}.{target}.a|b` tensors) and back, checked against the running
//! backbone.
use polyhead_backbone::{Branch, BranchShape, LowRank, TARGETS};
use polyhead_heads::{BranchSpec, BranchTarget};

use crate::Result;

/// The manifest's description of `branch` on a backbone of `shape`.
pub(crate) fn spec(branch: &Branch, shape: &BranchShape) -> BranchSpec {
    BranchSpec {
        from_layer: branch.from_layer,
        depth: shape.depth,
        rank: branch.rank,
        scale: branch.scale,
        targets: targets(shape),
    }
}

/// The linears a branch of a backbone of `shape` updates, with their widths.
pub(crate) fn targets(shape: &BranchShape) -> Vec<BranchTarget> {
    TARGETS
        .iter()
        .enumerate()
        .map(|(t, name)| {
            let (input, output) = shape.dims(t);
            BranchTarget {
                name: (*name).to_owned(),
                input,
                output,
            }
        })
        .collect()
}

/// The backbone's branch of a stored artifact, checked against `shape`: `None` for a
/// frozen head; an error names what does not fit.
pub fn branch_of(
    artifact: &polyhead_heads::HeadArtifact,
    shape: Option<&BranchShape>,
) -> Result<Option<Branch>> {
    let (Some(spec), Some(updates)) = (&artifact.manifest.branch, &artifact.branch) else {
        return Ok(None);
    };
    let bad = |m: String| crate::Error::Heads(polyhead_heads::Error::InvalidArtifact(m));
    let Some(shape) = shape else {
        return Err(bad(
            "the head has a branch but this backbone takes none (an image backbone)".into(),
        ));
    };
    let names: Vec<&str> = spec.targets.iter().map(|t| t.name.as_str()).collect();
    if names != TARGETS {
        return Err(bad(format!(
            "branch targets {names:?}; this build adapts {TARGETS:?}"
        )));
    }
    let branch = Branch {
        from_layer: spec.from_layer,
        rank: spec.rank,
        scale: spec.scale,
        updates: updates
            .iter()
            .map(|(a, b)| LowRank {
                a: a.clone(),
                b: b.clone(),
            })
            .collect(),
    };
    branch
        .check(shape)
        .map_err(|m| bad(format!("branch: {m}")))?;
    Ok(Some(branch))
}

/// The stored form of `branch`: `(a, b)` per update.
pub(crate) fn weights_of(branch: &Branch) -> polyhead_heads::BranchWeights {
    branch
        .updates
        .iter()
        .map(|u| (u.a.clone(), u.b.clone()))
        .collect()
}
