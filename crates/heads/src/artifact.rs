//! A head artifact on disk or on the wire: `manifest.json` + `head.safetensors`.
//! Decoding validates everything a serving process relies on and says which check
//! failed.
use std::collections::{HashMap, HashSet};

use safetensors::{tensor::TensorView, Dtype, SafeTensors};

use crate::{
    validate_task_name, BackboneRef, BranchSpec, Dense, Error, Head, HeadKind, Lexicon, Manifest,
    Reads, Result, FORMAT_VERSION,
};

/// safetensors metadata key holding a hybrid head's lexicon terms (a JSON array,
/// index = TF-IDF column); their idf is the tensor `lexicon.idf`.
const TERMS: &str = "lexicon.terms";
const IDF: &str = "lexicon.idf";

/// A manifest and the head it describes.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadArtifact {
    /// What the head is.
    pub manifest: Manifest,
    /// The weights.
    pub head: Head,
    /// The branch's updates (layer-major, the manifest's target order within a
    /// layer), when `manifest.branch` says the task has one.
    pub branch: Option<BranchWeights>,
}

/// A branch's low-rank updates as stored: `(a, b)` per adapted layer and target.
pub type BranchWeights = Vec<(Vec<f32>, Vec<f32>)>;

/// Most layers x targets x (rank x widths) a branch may hold, in values: 64 M
/// values (256 MB), above full fine-tuning of a BERT-base's top layers.
const MAX_BRANCH_VALUES: usize = 64 << 20;

/// Tensor names of update `n` of a branch (`branch.{layer}.{target}.a` / `.b`).
fn branch_names(spec: &BranchSpec, n: usize) -> (String, String) {
    let t = &spec.targets[n % spec.targets.len()];
    let layer = spec.from_layer + n / spec.targets.len();
    (
        format!("branch.{layer}.{}.a", t.name),
        format!("branch.{layer}.{}.b", t.name),
    )
}

/// Refuses a branch spec that cannot describe a real branch, before any tensor is read.
fn check_branch_spec(spec: &BranchSpec) -> Result<()> {
    let bad = |m: String| Err(Error::InvalidArtifact(format!("branch: {m}")));
    if spec.from_layer >= spec.depth {
        return bad(format!(
            "from_layer {} leaves no layer to adapt of {}",
            spec.from_layer, spec.depth
        ));
    }
    if spec.rank == 0 || spec.targets.is_empty() || !spec.scale.is_finite() {
        return bad("needs a rank, a finite scale and at least one target".into());
    }
    let mut seen = HashSet::new();
    let mut values = 0usize;
    for t in &spec.targets {
        if t.name.is_empty() || !seen.insert(&t.name) || t.input == 0 || t.output == 0 {
            return bad(format!(
                "target {:?} is empty, repeated or has no width",
                t.name
            ));
        }
        values = values.saturating_add(spec.rank.saturating_mul(t.input.saturating_add(t.output)));
    }
    let values = values.saturating_mul(spec.layers());
    if values > MAX_BRANCH_VALUES {
        return bad(format!(
            "{values} values; a branch holds at most {MAX_BRANCH_VALUES}"
        ));
    }
    Ok(())
}

/// Tensor names of each layer in `head.safetensors`, input layer first.
fn layer_names(kind: HeadKind) -> &'static [&'static str] {
    match kind {
        HeadKind::Linear => &["linear"],
        HeadKind::Mlp { .. } => &["hidden", "output"],
        HeadKind::Hybrid { .. } => &["hybrid"],
    }
}

impl HeadArtifact {
    /// `manifest.json` bytes (pretty JSON).
    pub fn manifest_json(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(&self.manifest).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }

    /// `head.safetensors` bytes.
    pub fn safetensors(&self) -> Result<Vec<u8>> {
        let mut buffers: Vec<(String, Vec<u8>, Vec<usize>)> = Vec::new();
        for (name, layer) in layer_names(self.manifest.head)
            .iter()
            .zip(self.head.layers())
        {
            let w = layer.weight.iter().flat_map(|v| v.to_le_bytes()).collect();
            let b = layer.bias.iter().flat_map(|v| v.to_le_bytes()).collect();
            buffers.push((format!("{name}.weight"), w, vec![layer.out, layer.input]));
            buffers.push((format!("{name}.bias"), b, vec![layer.out]));
        }
        if let (Some(spec), Some(updates)) = (&self.manifest.branch, &self.branch) {
            for (n, (a, b)) in updates.iter().enumerate() {
                let t = &spec.targets[n % spec.targets.len()];
                let (na, nb) = branch_names(spec, n);
                let le = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect();
                buffers.push((na, le(a), vec![spec.rank, t.input]));
                buffers.push((nb, le(b), vec![t.output, spec.rank]));
            }
        }
        let mut metadata = None;
        if let Some(lexicon) = self.head.lexicon() {
            let idf = lexicon.idf().iter().flat_map(|v| v.to_le_bytes()).collect();
            buffers.push((IDF.to_owned(), idf, vec![lexicon.len()]));
            let terms = serde_json::to_string(lexicon.terms())
                .map_err(|e| Error::InvalidArtifact(e.to_string()))?;
            metadata = Some(HashMap::from([(TERMS.to_owned(), terms)]));
        }
        let views = buffers
            .iter()
            .map(|(n, b, s)| {
                TensorView::new(Dtype::F32, s.clone(), b)
                    .map(|v| (n.clone(), v))
                    .map_err(|e| Error::InvalidArtifact(e.to_string()))
            })
            .collect::<Result<HashMap<_, _>>>()?;
        safetensors::serialize(views, metadata).map_err(|e| Error::InvalidArtifact(e.to_string()))
    }

    /// Decodes and validates an artifact on its own (format, names, labels, tensors).
    pub fn decode(manifest_json: &[u8], safetensors: &[u8]) -> Result<HeadArtifact> {
        let manifest: Manifest = serde_json::from_slice(manifest_json)
            .map_err(|e| Error::InvalidArtifact(format!("manifest.json: {e}")))?;
        if manifest.format != FORMAT_VERSION {
            return Err(Error::InvalidArtifact(format!(
                "manifest format {} (this build reads {FORMAT_VERSION})",
                manifest.format
            )));
        }
        validate_task_name(&manifest.task)?;
        check_labels(&manifest.labels)?;
        if manifest.reads == Reads::Windows && manifest.branch.is_some() {
            return Err(Error::InvalidArtifact(
                "reads \"windows\" with a branch: a branch reads the truncated text only".into(),
            ));
        }
        let st = SafeTensors::deserialize(safetensors)
            .map_err(|e| Error::InvalidArtifact(format!("head.safetensors: {e}")))?;
        let lexicon = match manifest.head {
            HeadKind::Hybrid { vocab_size } => Some(read_lexicon(safetensors, &st, vocab_size)?),
            _ => None,
        };
        let mut layers = Vec::new();
        let mut input = manifest
            .input_dim
            .checked_add(lexicon.as_ref().map_or(0, Lexicon::len))
            .ok_or_else(|| Error::InvalidArtifact("input_dim overflows".into()))?;
        let outs = match manifest.head {
            HeadKind::Linear | HeadKind::Hybrid { .. } => vec![manifest.labels.len()],
            HeadKind::Mlp { hidden_dim } => vec![hidden_dim, manifest.labels.len()],
        };
        for (name, out) in layer_names(manifest.head).iter().zip(outs) {
            let weight = read_f32(&st, &format!("{name}.weight"), &[out, input])?;
            let bias = read_f32(&st, &format!("{name}.bias"), &[out])?;
            layers.push(Dense {
                weight,
                bias,
                input,
                out,
            });
            input = out;
        }
        let head = match lexicon {
            Some(lexicon) => {
                let layer = layers
                    .pop()
                    .ok_or_else(|| Error::InvalidArtifact("no layer".into()))?;
                Head::hybrid(layer, lexicon, manifest.labels.clone())?
            }
            None => Head::new(manifest.head, layers, manifest.labels.clone())?,
        };
        let branch = match &manifest.branch {
            None => None,
            Some(spec) => {
                check_branch_spec(spec)?;
                let mut updates = Vec::new();
                for n in 0..spec.layers() * spec.targets.len() {
                    let t = &spec.targets[n % spec.targets.len()];
                    let (na, nb) = branch_names(spec, n);
                    updates.push((
                        read_f32(&st, &na, &[spec.rank, t.input])?,
                        read_f32(&st, &nb, &[t.output, spec.rank])?,
                    ));
                }
                Some(updates)
            }
        };
        Ok(HeadArtifact {
            manifest,
            head,
            branch,
        })
    }

    /// Checks that the head serves `backbone`: same fingerprint, same width.
    pub fn check_backbone(&self, backbone: &BackboneRef) -> Result<()> {
        if self.manifest.backbone.fingerprint != backbone.fingerprint {
            // Named for people (`efficientnet-lite0 15327c6e...`): a head of another
            // model family says which backbone to load.
            let named = |b: &BackboneRef| match b.name.as_str() {
                "" => b.fingerprint.clone(),
                name => format!("{name} {}", b.fingerprint),
            };
            return Err(Error::FingerprintMismatch {
                expected: named(backbone),
                found: named(&self.manifest.backbone),
            });
        }
        if self.manifest.input_dim != backbone.dim {
            return Err(Error::DimMismatch {
                expected: backbone.dim,
                found: self.manifest.input_dim,
            });
        }
        if self.manifest.reads == Reads::Windows && !backbone.reads_text {
            return Err(Error::InvalidArtifact(
                "the head reads texts in windows; this backbone reads pictures".into(),
            ));
        }
        if let Some(spec) = &self.manifest.branch {
            if backbone.layers == 0 {
                return Err(Error::InvalidArtifact(
                    "the head adapts backbone layers (a branch), but this backbone takes no \
                     branch"
                        .into(),
                ));
            }
            if spec.depth != backbone.layers {
                return Err(Error::InvalidArtifact(format!(
                    "the head's branch was made for a backbone of {} layers; this one has {}",
                    spec.depth, backbone.layers
                )));
            }
            if spec.targets != backbone.branch_targets {
                return Err(Error::InvalidArtifact(format!(
                    "the head's branch updates {:?}; this backbone's branches update {:?}",
                    spec.targets
                        .iter()
                        .map(|t| format!("{} {}x{}", t.name, t.output, t.input))
                        .collect::<Vec<_>>(),
                    backbone
                        .branch_targets
                        .iter()
                        .map(|t| format!("{} {}x{}", t.name, t.output, t.input))
                        .collect::<Vec<_>>()
                )));
            }
        }
        Ok(())
    }
}

fn check_labels(labels: &[String]) -> Result<()> {
    if labels.len() < 2 {
        return Err(Error::InvalidArtifact(format!(
            "needs at least 2 labels, has {}",
            labels.len()
        )));
    }
    let mut seen = HashSet::new();
    for l in labels {
        if l.is_empty() {
            return Err(Error::InvalidArtifact("empty label".into()));
        }
        if !seen.insert(l) {
            return Err(Error::InvalidArtifact(format!("duplicate label {l:?}")));
        }
    }
    Ok(())
}

/// A hybrid head's lexicon: terms from the metadata, idf from its tensor.
fn read_lexicon(bytes: &[u8], st: &SafeTensors<'_>, vocab_size: usize) -> Result<Lexicon> {
    let bad = |m: String| Error::InvalidArtifact(format!("head.safetensors: {m}"));
    let (_, metadata) =
        SafeTensors::read_metadata(bytes).map_err(|e| bad(format!("metadata: {e}")))?;
    let terms = metadata
        .metadata()
        .as_ref()
        .and_then(|m| m.get(TERMS))
        .ok_or_else(|| bad(format!("hybrid head without {TERMS:?} metadata")))?;
    let terms: Vec<String> =
        serde_json::from_str(terms).map_err(|e| bad(format!("{TERMS}: {e}")))?;
    if terms.len() != vocab_size {
        return Err(bad(format!(
            "{} lexicon terms, manifest says vocab_size {vocab_size}",
            terms.len()
        )));
    }
    let idf = read_f32(st, IDF, &[vocab_size])?;
    Lexicon::from_parts(terms, idf)
}

fn read_f32(st: &SafeTensors<'_>, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
    let bad = |m: String| Error::InvalidArtifact(format!("head.safetensors: {m}"));
    let t = st
        .tensor(name)
        .map_err(|_| bad(format!("missing tensor {name:?}")))?;
    if t.dtype() != Dtype::F32 {
        return Err(bad(format!(
            "tensor {name:?} is {:?}, expected F32",
            t.dtype()
        )));
    }
    if t.shape() != shape {
        return Err(bad(format!(
            "tensor {name:?} has shape {:?}, expected {shape:?}",
            t.shape()
        )));
    }
    let values: Vec<f32> = t
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    if values.iter().any(|v| !v.is_finite()) {
        return Err(bad(format!("tensor {name:?} holds NaN or Inf")));
    }
    Ok(values)
}
