//! A head artifact on disk or on the wire: `manifest.json` + `head.safetensors`.
//! Decoding validates everything a serving process relies on and says which check
//! failed.
use std::collections::{HashMap, HashSet};

use safetensors::{tensor::TensorView, Dtype, SafeTensors};

use crate::{
    validate_task_name, BackboneRef, Dense, Error, Head, HeadKind, Manifest, Result, FORMAT_VERSION,
};

/// A manifest and the head it describes.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadArtifact {
    /// What the head is.
    pub manifest: Manifest,
    /// The weights.
    pub head: Head,
}

/// Tensor names of each layer in `head.safetensors`, input layer first.
fn layer_names(kind: HeadKind) -> &'static [&'static str] {
    match kind {
        HeadKind::Linear => &["linear"],
        HeadKind::Mlp { .. } => &["hidden", "output"],
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
        let views = buffers
            .iter()
            .map(|(n, b, s)| {
                TensorView::new(Dtype::F32, s.clone(), b)
                    .map(|v| (n.clone(), v))
                    .map_err(|e| Error::InvalidArtifact(e.to_string()))
            })
            .collect::<Result<HashMap<_, _>>>()?;
        safetensors::serialize(views, None).map_err(|e| Error::InvalidArtifact(e.to_string()))
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
        let st = SafeTensors::deserialize(safetensors)
            .map_err(|e| Error::InvalidArtifact(format!("head.safetensors: {e}")))?;
        let mut layers = Vec::new();
        let mut input = manifest.input_dim;
        let outs = match manifest.head {
            HeadKind::Linear => vec![manifest.labels.len()],
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
        let head = Head::new(manifest.head, layers, manifest.labels.clone())?;
        Ok(HeadArtifact { manifest, head })
    }

    /// Checks that the head serves `backbone`: same fingerprint, same width.
    pub fn check_backbone(&self, backbone: &BackboneRef) -> Result<()> {
        if self.manifest.backbone.fingerprint != backbone.fingerprint {
            return Err(Error::FingerprintMismatch {
                expected: backbone.fingerprint.clone(),
                found: self.manifest.backbone.fingerprint.clone(),
            });
        }
        if self.manifest.input_dim != backbone.dim {
            return Err(Error::DimMismatch {
                expected: backbone.dim,
                found: self.manifest.input_dim,
            });
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
