//! Branches: a task's own version of the backbone's top layers. A branch starts at
//! layer `from_layer` and adapts every layer above it with low-rank (LoRA) updates of
//! the layer's six linears (`W + B A * scale`; arXiv 2106.09685), so the layers below
//! stay the shared trunk and tasks without a branch read the frozen output as before.
//!
//! [`Top`] holds the checkpoint in libtorch (f32) for what branches need: the trunk's
//! token states, and the adapted layers run on them, at serving time (on the model
//! thread) and, with autograd, in the trainer.
use std::path::Path;

use serde::{Deserialize, Serialize};
use tch::{nn::VarStore, Kind, Tensor};

use crate::{
    bert::{Bert, LayerDelta},
    config::{read, BertConfig, Pooling, SentenceConfig},
    pool::pool,
    runtime::TokenBatch,
    weights, Error, Result,
};

/// The linears a branch updates in each adapted layer, in order.
pub const TARGETS: [&str; 6] = [
    "query",
    "key",
    "value",
    "attention_output",
    "intermediate",
    "output",
];

/// What a branch must fit: the backbone's depth and widths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BranchShape {
    /// Transformer layers.
    pub depth: usize,
    /// Hidden width.
    pub hidden: usize,
    /// Feed-forward width.
    pub intermediate: usize,
}

impl BranchShape {
    /// `(input, output)` widths of target linear `t` (an index into [`TARGETS`]).
    pub fn dims(&self, t: usize) -> (usize, usize) {
        match t {
            4 => (self.hidden, self.intermediate),
            5 => (self.intermediate, self.hidden),
            _ => (self.hidden, self.hidden),
        }
    }

    /// Parameters of a branch over the top `layers` at `rank`.
    pub fn params(&self, layers: usize, rank: usize) -> usize {
        let per_layer: usize = (0..TARGETS.len())
            .map(|t| {
                let (i, o) = self.dims(t);
                rank * (i + o)
            })
            .sum();
        per_layer * layers
    }
}

/// One low-rank update: `a` (rank x input) and `b` (output x rank), row-major f32.
#[derive(Debug, Clone, PartialEq)]
pub struct LowRank {
    /// Down-projection, rank x input.
    pub a: Vec<f32>,
    /// Up-projection, output x rank.
    pub b: Vec<f32>,
}

/// A task's branch: low-rank updates of layers `from_layer..depth`.
#[derive(Debug, Clone, PartialEq)]
pub struct Branch {
    /// The first adapted layer (0-based); the trunk is the layers below it.
    pub from_layer: usize,
    /// The updates' rank.
    pub rank: usize,
    /// The factor applied to every update (LoRA's alpha / rank).
    pub scale: f32,
    /// Layer-major, [`TARGETS`] order within a layer: `layers() * 6` updates.
    pub updates: Vec<LowRank>,
}

impl Branch {
    /// Adapted layers.
    pub fn layers(&self) -> usize {
        self.updates.len() / TARGETS.len()
    }

    /// Refuses a branch that does not fit `shape`, naming what differs; refuses NaN
    /// and infinity.
    pub fn check(&self, shape: &BranchShape) -> std::result::Result<(), String> {
        if self.rank == 0 {
            return Err("the branch's rank is 0".into());
        }
        if !self.scale.is_finite() {
            return Err("the branch's scale is not finite".into());
        }
        if !self.updates.len().is_multiple_of(TARGETS.len()) || self.updates.is_empty() {
            return Err(format!(
                "the branch holds {} updates; a branch holds {} per adapted layer",
                self.updates.len(),
                TARGETS.len()
            ));
        }
        if self.from_layer + self.layers() != shape.depth {
            return Err(format!(
                "the branch adapts layers {}..{} but the backbone has {} layers",
                self.from_layer,
                self.from_layer + self.layers(),
                shape.depth
            ));
        }
        for (n, u) in self.updates.iter().enumerate() {
            let (input, out) = shape.dims(n % TARGETS.len());
            let name = || {
                format!(
                    "layer {} {}",
                    self.from_layer + n / TARGETS.len(),
                    TARGETS[n % TARGETS.len()]
                )
            };
            if u.a.len() != self.rank * input || u.b.len() != out * self.rank {
                return Err(format!(
                    "{}: shapes {} and {} values, expected {}x{} and {}x{}",
                    name(),
                    u.a.len(),
                    u.b.len(),
                    self.rank,
                    input,
                    out,
                    self.rank
                ));
            }
            if u.a.iter().chain(&u.b).any(|v| !v.is_finite()) {
                return Err(format!("{}: NaN or infinite values", name()));
            }
        }
        Ok(())
    }

    /// The branch as tensors on `device`, one [`LayerDelta`] per adapted layer.
    pub(crate) fn deltas(&self, shape: &BranchShape, device: tch::Device) -> Vec<LayerDelta> {
        self.updates
            .chunks(TARGETS.len())
            .map(|layer| LayerDelta {
                pairs: layer
                    .iter()
                    .enumerate()
                    .map(|(t, u)| {
                        let (input, out) = shape.dims(t);
                        let r = self.rank as i64;
                        (
                            Tensor::from_slice(&u.a)
                                .view([r, input as i64])
                                .to_device(device),
                            Tensor::from_slice(&u.b)
                                .view([out as i64, r])
                                .to_device(device),
                        )
                    })
                    .collect(),
                scale: f64::from(self.scale),
            })
            .collect()
    }
}

/// The checkpoint in libtorch, f32, for branches: trunk states, and adapted layers
/// run on them.
pub struct Top {
    bert: Bert,
    // Keeps the weights alive; the modules hold views into it.
    _vs: VarStore,
    pooling: Pooling,
    normalize: bool,
    shape: BranchShape,
    device: tch::Device,
}

impl std::fmt::Debug for Top {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Top").field("shape", &self.shape).finish()
    }
}

/// Rows per pass when trunk states are computed for training.
const STATE_ROWS: usize = 16;

impl Top {
    /// Loads a text checkpoint folder on the CPU.
    pub fn load(dir: &Path) -> Result<Top> {
        let config = BertConfig::from_file(&dir.join("config.json"))?;
        let sentence = SentenceConfig::from_dir(dir, &config)?;
        let weights_path = dir.join("model.safetensors");
        let bytes = read(&weights_path)?;
        let device = tch::Device::Cpu;
        let mut vs = VarStore::new(device);
        let prefix = weights::detect_prefix(&bytes, &weights_path)?;
        let root = match prefix {
            "" => vs.root(),
            p => vs.root() / p.trim_end_matches('.'),
        };
        let bert = Bert::new(root, &config);
        weights::load_strict(&vs, &bytes, &weights_path)?;
        vs.set_kind(Kind::Float);
        vs.freeze();
        let shape = BranchShape {
            depth: bert.depth(),
            hidden: config.hidden_size as usize,
            intermediate: config.intermediate_size as usize,
        };
        Ok(Top {
            bert,
            _vs: vs,
            pooling: sentence.pooling,
            normalize: sentence.normalize,
            shape,
            device,
        })
    }

    /// The depth and widths branches must fit.
    pub fn shape(&self) -> BranchShape {
        self.shape
    }

    /// Each row's token states after the first `upto` layers: one (tokens, hidden)
    /// f32 tensor per row, no padding kept. For the trainer's cache.
    pub fn states(&self, rows: &[Vec<u32>], upto: usize) -> Result<Vec<Tensor>> {
        let mut out = Vec::with_capacity(rows.len());
        // Similar lengths together pad less.
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.sort_by_key(|&i| rows[i].len());
        let mut slots: Vec<Option<Tensor>> = (0..rows.len()).map(|_| None).collect();
        for chunk in order.chunks(STATE_ROWS) {
            let batch: Vec<&[u32]> = chunk.iter().map(|&i| rows[i].as_slice()).collect();
            let (ids, mask) = self.tensors(&TokenBatch::padded(&batch));
            let states = tch::no_grad(|| self.bert.forward_upto(&ids, &mask, upto));
            for (r, &i) in chunk.iter().enumerate() {
                let len = rows[i].len().max(1) as i64;
                slots[i] = Some(states.get(r as i64).narrow(0, 0, len).contiguous());
            }
        }
        for s in slots {
            out.push(s.ok_or_else(|| Error::InvalidOption("a row was not embedded".into()))?);
        }
        Ok(out)
    }

    /// Runs frozen layers `from..to` on one row's states (tokens, hidden).
    pub fn advance(&self, states: &Tensor, from: usize, to: usize) -> Tensor {
        let len = states.size()[0];
        let mask = Tensor::ones([1, len], (Kind::Int64, self.device));
        tch::no_grad(|| {
            self.bert
                .forward_between(&states.unsqueeze(0), &mask, from, to)
                .squeeze_dim(0)
        })
    }

    /// Pooled (and normalised, as the checkpoint says) embeddings of padded trunk
    /// `states` (batch, seq, hidden) with a 0/1 int64 `mask` (batch, seq), through
    /// layers `from..` updated by `pairs` (layer-major, [`TARGETS`] order, each
    /// `(A, B)`) times `scale`. Differentiable: the trainer's forward.
    pub fn forward_branch(
        &self,
        states: &Tensor,
        mask: &Tensor,
        from: usize,
        pairs: &[(Tensor, Tensor)],
        scale: f64,
    ) -> Result<Tensor> {
        let deltas: Vec<LayerDelta> = pairs
            .chunks(TARGETS.len())
            .map(|c| LayerDelta {
                pairs: c
                    .iter()
                    .map(|(a, b)| (a.shallow_clone(), b.shallow_clone()))
                    .collect(),
                scale,
            })
            .collect();
        let x = self.bert.forward_from(states, mask, from, &deltas);
        let m = mask.to_kind(Kind::Float).unsqueeze(-1);
        let pooled = match self.pooling {
            Pooling::Mean => {
                (&x * &m).sum_dim_intlist(1, false, Kind::Float)
                    / m.sum_dim_intlist(1, false, Kind::Float).clamp_min(1e-9)
            }
            Pooling::MeanSqrtLen => {
                (&x * &m).sum_dim_intlist(1, false, Kind::Float)
                    / m.sum_dim_intlist(1, false, Kind::Float)
                        .clamp_min(1e-9)
                        .sqrt()
            }
            Pooling::Cls => x.select(1, 0),
            other => {
                return Err(Error::InvalidOption(format!(
                    "branches are trained for mean, mean_sqrt_len and cls pooling; this \
                     checkpoint pools by {}",
                    other.as_str()
                )))
            }
        };
        Ok(if self.normalize {
            let norm = pooled.norm_scalaropt_dim(2, [1], true).clamp_min(1e-12);
            pooled / norm
        } else {
            pooled
        })
    }

    /// Embeddings of token `rows` under each branch: the trunk runs once, up to the
    /// lowest branch start, and each depth between is run once; then each branch
    /// runs its layers. Pooled by the same code as the frozen path. One
    /// `Vec` (rows x hidden) per branch, in order.
    pub fn embed_branches(&self, rows: &[&[u32]], branches: &[&Branch]) -> Result<Vec<Vec<f32>>> {
        for b in branches {
            b.check(&self.shape).map_err(Error::InvalidOption)?;
        }
        let batch = TokenBatch::padded(rows);
        let (ids, mask) = self.tensors(&batch);
        let mut starts: Vec<usize> = branches.iter().map(|b| b.from_layer).collect();
        starts.sort_unstable();
        starts.dedup();
        tch::no_grad(|| {
            // Trunk states at each distinct start, computed bottom-up once.
            let mut at: Vec<(usize, Tensor)> = Vec::new();
            let mut x = self
                .bert
                .forward_upto(&ids, &mask, starts.first().copied().unwrap_or(0));
            let mut depth = starts.first().copied().unwrap_or(0);
            for &s in &starts {
                x = self.bert.forward_between(&x, &mask, depth, s);
                depth = s;
                at.push((s, x.shallow_clone()));
            }
            branches
                .iter()
                .map(|b| {
                    let states = &at
                        .iter()
                        .find(|(s, _)| *s == b.from_layer)
                        .ok_or_else(|| Error::InvalidOption("branch start missing".into()))?
                        .1;
                    let deltas = b.deltas(&self.shape, self.device);
                    let out = self
                        .bert
                        .forward_from(states, &mask, b.from_layer, &deltas)
                        .to_kind(Kind::Float)
                        .contiguous();
                    let flat = Vec::<f32>::try_from(out.view([-1]))?;
                    Ok(pool(
                        &flat,
                        &batch.mask,
                        (batch.rows, batch.cols, self.shape.hidden),
                        self.pooling,
                        self.normalize,
                    ))
                })
                .collect()
        })
    }

    fn tensors(&self, batch: &TokenBatch) -> (Tensor, Tensor) {
        let shape = [batch.rows as i64, batch.cols as i64];
        (
            Tensor::from_slice(&batch.ids)
                .view(shape)
                .to_device(self.device),
            Tensor::from_slice(&batch.mask)
                .view(shape)
                .to_device(self.device),
        )
    }
}
