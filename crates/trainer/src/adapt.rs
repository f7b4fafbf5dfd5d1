//! Fine-tuning transfer: a branch (low-rank updates of the backbone's top `d`
//! layers, see `polyhead_backbone::Branch`) trained jointly with a linear head by
//! cross-entropy, in libtorch with autograd.
//!
//! The trunk's token states (the output of layer `depth - d`) are computed once per
//! text and kept for the run, so an epoch costs `d` layers forward and backward, not
//! a full pass. Each candidate depth is scored on the same held-out folds as the
//! frozen heads; the epoch count is chosen on those folds too. The head starts from
//! the logistic regression fitted on the frozen features of the same rows and the
//! updates start at zero, so epoch 0 is exactly the frozen model.
use std::time::Instant;

use polyhead_backbone::{Branch, BranchShape, LowRank, Top, TARGETS};
use polyhead_heads::{softmax, Candidate, Dense};
use rand::{rngs::StdRng, seq::SliceRandom, SeedableRng};
use tch::{nn, nn::OptimizerConfig, Kind, Tensor};

use crate::{
    logreg::{Design, Fit},
    select::{Context, Plan},
    Budget, Progress, Result, TrainOptions,
};

/// Rows per optimiser step.
const BATCH: usize = 8;
/// LoRA's alpha: updates are scaled by alpha / rank.
const ALPHA: f64 = 16.0;
/// Inverse penalty of the warm-start head.
const WARM_C: f64 = 10.0;

/// One scored adapted depth.
pub(crate) struct Scored {
    /// Layers adapted.
    pub layers: usize,
    /// Epochs that scored best on the held-out folds.
    pub epochs: usize,
    /// Out-of-sample probabilities of every scored row, by plan.
    pub rows: Vec<usize>,
    pub probs: Vec<Vec<f64>>,
    /// The record for the manifest.
    pub candidate: Candidate,
}

/// A trained branch and its head.
pub(crate) struct Trained {
    pub branch: Branch,
    pub head: Dense,
}

/// The trunk states of every row at each depth tried.
pub(crate) struct Trunk<'a> {
    top: &'a Top,
    /// `(layers adapted, one (tokens, hidden) tensor per row)`.
    states: Vec<(usize, Vec<Tensor>)>,
}

impl<'a> Trunk<'a> {
    /// Computes the states below the deepest branch once, then the frozen layers up
    /// to each shallower start once per row.
    pub fn new(
        top: &'a Top,
        ids: &[Vec<u32>],
        depths: &[usize],
        budget: &Budget,
    ) -> Result<Trunk<'a>> {
        let depth = top.shape().depth;
        let mut depths: Vec<usize> = depths.iter().map(|&d| d.min(depth)).collect();
        depths.sort_unstable_by(|a, b| b.cmp(a));
        depths.dedup();
        let deepest = depths[0];
        let base = top.states(ids, depth - deepest)?;
        budget.check()?;
        let mut states = vec![(deepest, base)];
        for &d in &depths[1..] {
            let prev = states.last().map(|s| s.0).unwrap_or(deepest);
            let next: Vec<Tensor> = states
                .last()
                .map(|s| {
                    s.1.iter()
                        .map(|t| top.advance(t, depth - prev, depth - d))
                        .collect()
                })
                .unwrap_or_default();
            budget.check()?;
            states.push((d, next));
        }
        Ok(Trunk { top, states })
    }

    fn at(&self, layers: usize) -> &[Tensor] {
        self.states
            .iter()
            .find(|s| s.0 == layers)
            .map(|s| s.1.as_slice())
            .unwrap_or(&[])
    }

    /// The depths available, deepest first.
    pub fn depths(&self) -> Vec<usize> {
        self.states.iter().map(|s| s.0).collect()
    }
}

/// Right-padded (batch, seq, hidden) states and their 0/1 mask for `rows`.
fn pad(states: &[Tensor], rows: &[usize]) -> (Tensor, Tensor) {
    let hidden = states.first().map_or(1, |t| t.size()[1]);
    let cols = rows.iter().map(|&i| states[i].size()[0]).max().unwrap_or(1);
    let b = rows.len() as i64;
    let x = Tensor::zeros([b, cols, hidden], (Kind::Float, tch::Device::Cpu));
    let mask = Tensor::zeros([b, cols], (Kind::Int64, tch::Device::Cpu));
    tch::no_grad(|| {
        for (r, &i) in rows.iter().enumerate() {
            let len = states[i].size()[0];
            x.get(r as i64).narrow(0, 0, len).copy_(&states[i]);
            let _ = mask.get(r as i64).narrow(0, 0, len).fill_(1);
        }
    });
    (x, mask)
}

/// The trainable tensors of one branch + head.
struct Params {
    _vs: nn::VarStore,
    pairs: Vec<(Tensor, Tensor)>,
    w: Tensor,
    b: Tensor,
    opt: nn::Optimizer,
}

impl Params {
    fn new(
        shape: &BranchShape,
        layers: usize,
        rank: usize,
        warm: &Fit,
        dim: usize,
        lr: f64,
    ) -> Result<Params> {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let root = vs.root();
        let mut pairs = Vec::new();
        for l in 0..layers {
            for (t, name) in TARGETS.iter().enumerate() {
                let (input, out) = shape.dims(t);
                let bound = 1.0 / (input as f64).sqrt();
                // LoRA's start: A random, B zero, so the update is zero.
                let a = root.var(
                    &format!("{l}_{name}_a"),
                    &[rank as i64, input as i64],
                    nn::Init::Uniform {
                        lo: -bound,
                        up: bound,
                    },
                );
                let b = root.var(
                    &format!("{l}_{name}_b"),
                    &[out as i64, rank as i64],
                    nn::Init::Const(0.0),
                );
                pairs.push((a, b));
            }
        }
        let classes = warm.classes as i64;
        let w0: Vec<f32> = warm.w.iter().map(|&v| v as f32).collect();
        let b0: Vec<f32> = warm.b.iter().map(|&v| v as f32).collect();
        let w = root.var_copy(
            "head_w",
            &Tensor::from_slice(&w0).view([classes, dim as i64]),
        );
        let b = root.var_copy("head_b", &Tensor::from_slice(&b0));
        let opt = nn::AdamW::default().wd(0.01).build(&vs, lr)?;
        Ok(Params {
            _vs: vs,
            pairs,
            w,
            b,
            opt,
        })
    }

    fn logits(
        &self,
        top: &Top,
        x: &Tensor,
        mask: &Tensor,
        from: usize,
        scale: f64,
    ) -> Result<Tensor> {
        let pooled = top.forward_branch(x, mask, from, &self.pairs, scale)?;
        Ok(pooled.matmul(&self.w.tr()) + &self.b)
    }

    fn branch(&self, from: usize, rank: usize, scale: f64) -> Result<Branch> {
        let updates = self
            .pairs
            .iter()
            .map(|(a, b)| {
                Ok(LowRank {
                    a: Vec::<f32>::try_from(a.detach().contiguous().view([-1]))?,
                    b: Vec::<f32>::try_from(b.detach().contiguous().view([-1]))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Branch {
            from_layer: from,
            rank,
            scale: scale as f32,
            updates,
        })
    }

    fn head(&self) -> Result<Dense> {
        let size = self.w.size();
        Ok(Dense {
            weight: Vec::<f32>::try_from(self.w.detach().contiguous().view([-1]))?,
            bias: Vec::<f32>::try_from(self.b.detach().contiguous())?,
            input: size[1] as usize,
            out: size[0] as usize,
        })
    }
}

/// Everything one adapted fit reads.
pub(crate) struct Job<'a> {
    pub trunk: &'a Trunk<'a>,
    /// Frozen features (rows x dim), for the warm-start head.
    pub emb: &'a [f32],
    pub dim: usize,
    pub y: &'a [usize],
    pub cx: &'a Context<'a>,
    pub o: &'a TrainOptions,
    pub budget: &'a Budget,
}

impl Job<'_> {
    /// Trains on `fit_rows` for `epochs`, calling `after` with the epoch number and
    /// the parameters after each epoch.
    fn train(
        &self,
        layers: usize,
        fit_rows: &[usize],
        epochs: usize,
        after: &mut dyn FnMut(usize, &Params) -> Result<()>,
    ) -> Result<Params> {
        let top = self.trunk.top;
        let shape = top.shape();
        let from = shape.depth - layers;
        let rank = self.o.adapt_rank;
        let scale = ALPHA / rank as f64;
        let design = Design {
            dense: self.emb,
            dim: self.dim,
            sparse: &[],
            vocab: 0,
            alpha: 1.0,
        };
        let warm = self.cx.fit(&design, fit_rows, WARM_C)?;
        tch::manual_seed(self.o.seed as i64);
        let mut p = Params::new(
            &shape,
            layers,
            rank,
            &warm,
            self.dim,
            self.o.adapt_learning_rate,
        )?;
        let states = self.trunk.at(layers);
        let mut rng = StdRng::seed_from_u64(self.o.seed ^ 0xada9);
        let mut order = fit_rows.to_vec();
        for epoch in 1..=epochs {
            order.shuffle(&mut rng);
            for chunk in order.chunks(BATCH) {
                self.budget.check()?;
                let (x, mask) = pad(states, chunk);
                let target: Vec<i64> = chunk.iter().map(|&i| self.y[i] as i64).collect();
                let logits = p.logits(top, &x, &mask, from, scale)?;
                let loss = logits.cross_entropy_for_logits(&Tensor::from_slice(&target));
                p.opt.backward_step(&loss);
            }
            after(epoch, &p)?;
        }
        Ok(p)
    }

    /// Class probabilities of `rows` under `p`.
    fn probs(&self, layers: usize, p: &Params, rows: &[usize]) -> Result<Vec<Vec<f64>>> {
        let top = self.trunk.top;
        let from = top.shape().depth - layers;
        let scale = ALPHA / self.o.adapt_rank as f64;
        let states = self.trunk.at(layers);
        let mut out = Vec::with_capacity(rows.len());
        for chunk in rows.chunks(BATCH * 4) {
            let (x, mask) = pad(states, chunk);
            let logits = tch::no_grad(|| p.logits(top, &x, &mask, from, scale))?;
            let flat = Vec::<f32>::try_from(logits.to_kind(Kind::Float).contiguous().view([-1]))?;
            let classes = flat.len() / chunk.len().max(1);
            for row in flat.chunks(classes.max(1)) {
                let mut z: Vec<f64> = row.iter().map(|&v| f64::from(v)).collect();
                softmax(&mut z);
                out.push(z);
            }
        }
        Ok(out)
    }

    /// Scores depth `layers` on every split of `plan`, choosing the epoch count that
    /// scores best over all folds (accuracy, then log-loss).
    pub fn score(
        &self,
        layers: usize,
        plan: &Plan,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Scored> {
        let epochs = self.o.adapt_max_epochs;
        // Per epoch: every held-out row's probabilities, in plan order.
        let mut per_epoch: Vec<Vec<Vec<f64>>> = vec![Vec::new(); epochs + 1];
        let mut rows = Vec::new();
        let mut branch_s = 0.0;
        for (fit_rows, held) in &plan.splits {
            rows.extend_from_slice(held);
            let mut record = |epoch: usize, p: &Params| -> Result<()> {
                let started = Instant::now();
                per_epoch[epoch].extend(self.probs(layers, p, held)?);
                if epoch == epochs {
                    branch_s += started.elapsed().as_secs_f64();
                }
                Ok(())
            };
            self.train(layers, fit_rows, epochs, &mut |e, p| record(e, p))?;
        }
        let accuracy = |probs: &[Vec<f64>]| {
            let hits = rows
                .iter()
                .zip(probs)
                .filter(|(&i, p)| polyhead_heads::argmax(p) == self.y[i])
                .count();
            hits as f64 / rows.len().max(1) as f64
        };
        let log_loss = |probs: &[Vec<f64>]| {
            rows.iter()
                .zip(probs)
                .map(|(&i, p)| -p[self.y[i]].max(1e-15).ln())
                .sum::<f64>()
                / rows.len().max(1) as f64
        };
        let best = (1..=epochs)
            .max_by(|&a, &b| {
                accuracy(&per_epoch[a])
                    .total_cmp(&accuracy(&per_epoch[b]))
                    .then(log_loss(&per_epoch[b]).total_cmp(&log_loss(&per_epoch[a])))
                    // Equal scores: fewer epochs.
                    .then(b.cmp(&a))
            })
            .unwrap_or(epochs);
        let probs = std::mem::take(&mut per_epoch[best]);
        // What the branch costs per text at serving, as timed here: the adapted
        // layers and the head over the held-out rows.
        let cost_us = 1e6 * branch_s / rows.len().max(1) as f64;
        let candidate = Candidate {
            name: format!(
                "adapted d={layers} rank={} epochs={best}",
                self.o.adapt_rank
            ),
            kind: "adapted".into(),
            accuracy: accuracy(&probs),
            log_loss: log_loss(&probs),
            layers,
            cost_us: Some(cost_us),
            windows_per_text: None,
        };
        progress(Progress::Candidate(candidate.clone()));
        Ok(Scored {
            layers,
            epochs: best,
            rows,
            probs,
            candidate,
        })
    }

    /// Trains depth `layers` on every row for `epochs`.
    pub fn refit(&self, layers: usize, epochs: usize) -> Result<Trained> {
        let all: Vec<usize> = (0..self.y.len()).collect();
        let p = self.train(layers, &all, epochs, &mut |_, _| Ok(()))?;
        let depth = self.trunk.top.shape().depth;
        let rank = self.o.adapt_rank;
        Ok(Trained {
            branch: p.branch(depth - layers, rank, ALPHA / rank as f64)?,
            head: p.head()?,
        })
    }
}

/// What adaptation produced for a run: every adapted candidate scored and, when one
/// was kept, its branch, head and out-of-sample metrics.
pub(crate) struct Outcome {
    pub candidates: Vec<Candidate>,
    pub kept: Option<Kept>,
}

/// The adapted candidate kept.
pub(crate) struct Kept {
    pub trained: Trained,
    pub name: String,
    pub layers: usize,
    pub epochs: usize,
    /// Its out-of-sample predictions, by plan: `(rows, predicted label)`.
    pub truth: Vec<usize>,
    pub predicted: Vec<usize>,
}

/// Scores every adapted depth on `plan` and keeps the best one when `o.adapt` says
/// so: `always`, or `auto` when its held-out accuracy beats `frozen` (the frozen
/// winner's `(accuracy, log_loss)` on the same splits) by at least
/// `adapt_min_gain_per_layer` per adapted layer and by one standard error. A run out of time keeps the
/// frozen head: adaptation never fails a run that has one.
#[allow(clippy::too_many_arguments)]
pub(crate) fn consider(
    top: &Top,
    ids: &[Vec<u32>],
    emb: &[f32],
    dim: usize,
    y: &[usize],
    cx: &Context<'_>,
    plan: &Plan,
    frozen: (f64, f64),
    o: &TrainOptions,
    budget: &Budget,
    progress: &mut dyn FnMut(Progress),
) -> Result<Outcome> {
    let trunk = match Trunk::new(top, ids, &o.adapt_layers, budget) {
        Ok(t) => t,
        Err(crate::Error::DeadlineExceeded(why)) => {
            tracing::warn!(%why, "no time left to adapt: the frozen head is kept");
            return Ok(Outcome {
                candidates: Vec::new(),
                kept: None,
            });
        }
        Err(e) => return Err(e),
    };
    let job = Job {
        trunk: &trunk,
        emb,
        dim,
        y,
        cx,
        o,
        budget,
    };
    let mut scored = Vec::new();
    for layers in trunk.depths().into_iter().rev() {
        match job.score(layers, plan, progress) {
            Ok(s) => scored.push(s),
            Err(crate::Error::DeadlineExceeded(why)) => {
                tracing::warn!(%why, layers, "adaptation ran out of time");
                break;
            }
            Err(e) => return Err(e),
        }
    }
    let candidates: Vec<Candidate> = scored.iter().map(|s| s.candidate.clone()).collect();
    let gain = |s: &Scored| s.candidate.accuracy - frozen.0;
    // A gain must also clear one standard error of the frozen head's held-out
    // accuracy (binomial, on the scored rows): on a few dozen examples one row is
    // several points, and keeping a branch on noise would serve a worse head.
    let se = |s: &Scored| {
        let n = s.rows.len().max(1) as f64;
        (frozen.0 * (1.0 - frozen.0) / n).sqrt()
    };
    let pays = |s: &Scored| match o.adapt {
        crate::Adapt::Always => true,
        crate::Adapt::Never => false,
        crate::Adapt::Auto => {
            let needed = (o.adapt_min_gain_per_layer * s.layers as f64).max(se(s));
            gain(s) > 0.0 && gain(s) + 1e-12 >= needed
        }
    };
    // The best paying candidate: accuracy, then log-loss, then fewer layers.
    let best = scored.iter().filter(|s| pays(s)).max_by(|a, b| {
        a.candidate
            .accuracy
            .total_cmp(&b.candidate.accuracy)
            .then(b.candidate.log_loss.total_cmp(&a.candidate.log_loss))
            .then(b.layers.cmp(&a.layers))
    });
    let Some(best) = best else {
        return Ok(Outcome {
            candidates,
            kept: None,
        });
    };
    progress(Progress::Stage {
        name: format!("fit {}", best.candidate.name),
    });
    let trained = match job.refit(best.layers, best.epochs) {
        Ok(t) => t,
        Err(crate::Error::DeadlineExceeded(why)) => {
            tracing::warn!(%why, "no time left to refit the branch: the frozen head is kept");
            return Ok(Outcome {
                candidates,
                kept: None,
            });
        }
        Err(e) => return Err(e),
    };
    Ok(Outcome {
        kept: Some(Kept {
            trained,
            name: best.candidate.name.clone(),
            layers: best.layers,
            epochs: best.epochs,
            truth: best.rows.iter().map(|&i| y[i]).collect(),
            predicted: best
                .probs
                .iter()
                .map(|p| polyhead_heads::argmax(p))
                .collect(),
        }),
        candidates,
    })
}
