//! Strict loading of a safetensors checkpoint into a VarStore: every variable the
//! model declares must be in the file with the same shape; extra tensors (the pooler,
//! `position_ids` buffers) are ignored.
use std::path::Path;

use safetensors::{Dtype, SafeTensors};
use tch::{nn::VarStore, Kind, Tensor};

use crate::{Error, Result};

/// Which prefix the checkpoint uses for the encoder: `""` (sentence-transformers
/// exports) or `"bert."` (`BertForSequenceClassification` and friends).
pub(crate) fn detect_prefix(bytes: &[u8], path: &Path) -> Result<&'static str> {
    let st = parse(bytes, path)?;
    let names = st.names();
    if names.iter().any(|n| n.starts_with("bert.embeddings.")) {
        Ok("bert.")
    } else {
        Ok("")
    }
}

fn parse<'a>(bytes: &'a [u8], path: &Path) -> Result<SafeTensors<'a>> {
    SafeTensors::deserialize(bytes).map_err(|e| Error::Safetensors {
        path: path.to_owned(),
        msg: e.to_string(),
    })
}

/// Copies every variable of `vs` from the checkpoint `bytes` (read from `path`).
pub(crate) fn load_strict(vs: &VarStore, bytes: &[u8], path: &Path) -> Result<()> {
    let st = parse(bytes, path)?;
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    tch::no_grad(|| {
        for (name, mut var) in vars {
            let view = st.tensor(&name).map_err(|_| Error::MissingTensor {
                path: path.to_owned(),
                name: name.clone(),
            })?;
            let found: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
            let expected = var.size();
            if found != expected {
                return Err(Error::TensorShape {
                    path: path.to_owned(),
                    name,
                    expected,
                    found,
                });
            }
            let kind = match view.dtype() {
                Dtype::F32 => Kind::Float,
                Dtype::F16 => Kind::Half,
                Dtype::BF16 => Kind::BFloat16,
                Dtype::F64 => Kind::Double,
                other => {
                    return Err(Error::TensorDtype {
                        path: path.to_owned(),
                        name,
                        dtype: format!("{other:?}"),
                    })
                }
            };
            let src = Tensor::f_from_data_size(view.data(), &found, kind)?;
            var.f_copy_(&src.f_to_kind(var.kind())?)?;
        }
        Ok(())
    })
}
