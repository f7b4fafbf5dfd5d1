//! A test-only runtime, kept as small as a runtime can be: its hidden states are a
//! fixed function of each token id. It shows what adding a runtime takes: this
//! module and its line in the registry (`runtime/mod.rs`), nothing else.
use super::{LoadRequest, Runtime, RuntimeSpec, TokenBatch};
use crate::{Dtype, Result};

/// The registration.
pub(crate) static SPEC: RuntimeSpec = RuntimeSpec {
    name: "echo",
    aliases: &[],
    dtypes: &[Dtype::F32],
    cuda: false,
    auto_on_cpu: &[],
    load,
    load_image: None,
};

struct Echo {
    hidden: usize,
}

fn load(request: &LoadRequest<'_>) -> Result<Box<dyn Runtime>> {
    Ok(Box::new(Echo {
        hidden: request.hidden(),
    }))
}

impl Runtime for Echo {
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }

    fn forward(&self, batch: &TokenBatch) -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(batch.ids.len() * self.hidden);
        for &id in &batch.ids {
            out.extend(
                (0..self.hidden).map(|h| ((id as usize * (h + 1)) % 97) as f32 / 97.0 + 0.01),
            );
        }
        Ok(out)
    }
}
