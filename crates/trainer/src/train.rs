//! Training a head on frozen features with tch: a fresh VarStore holds only the head,
//! and AdamW sees only that store (as in tch's transfer-learning example).
use polyhead_heads::{Dense, Head, HeadKind};
use rand::{rngs::StdRng, seq::SliceRandom, SeedableRng};
use tch::{nn, nn::Module, nn::OptimizerConfig, Device, Kind, Reduction, Tensor};

use crate::{Budget, HeadChoice, Result, TrainOptions};

/// Serialises use of libtorch's global random generator (see [`train_head`]).
static TORCH_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// One epoch's numbers, for progress reports.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct EpochReport {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean training loss (class-weighted).
    pub train_loss: f64,
    /// Validation loss (unweighted cross-entropy).
    pub validation_loss: f64,
    /// Validation accuracy.
    pub validation_accuracy: f64,
}

/// Rows of features with class indices.
#[derive(Debug)]
pub struct Split<'a> {
    /// Row-major features, `dim` wide.
    pub features: &'a [f32],
    /// Class index per row.
    pub labels: &'a [usize],
}

enum Net {
    Linear(nn::Linear),
    Mlp {
        hidden: nn::Linear,
        output: nn::Linear,
        dropout: f64,
    },
}

impl Net {
    fn new(root: &nn::Path, choice: HeadChoice, dim: i64, classes: i64, o: &TrainOptions) -> Net {
        let c = Default::default();
        match choice {
            HeadChoice::Auto | HeadChoice::Linear | HeadChoice::Hybrid => {
                Net::Linear(nn::linear(root / "linear", dim, classes, c))
            }
            HeadChoice::Mlp => {
                let h = o.hidden_dim as i64;
                Net::Mlp {
                    hidden: nn::linear(root / "hidden", dim, h, c),
                    output: nn::linear(root / "output", h, classes, c),
                    dropout: o.dropout,
                }
            }
        }
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        match self {
            Net::Linear(l) => l.forward(x),
            Net::Mlp {
                hidden,
                output,
                dropout,
            } => output.forward(&hidden.forward(x).relu().dropout(*dropout, train)),
        }
    }

    fn layers(&self) -> Vec<&nn::Linear> {
        match self {
            Net::Linear(l) => vec![l],
            Net::Mlp { hidden, output, .. } => vec![hidden, output],
        }
    }
}

/// Inverse-frequency class weights `n / (k * n_c)` (1 for absent classes).
pub fn class_weights(labels: &[usize], classes: usize, enabled: bool) -> Vec<f32> {
    let mut counts = vec![0usize; classes];
    labels.iter().for_each(|&l| counts[l] += 1);
    counts
        .iter()
        .map(|&c| {
            if enabled && c > 0 {
                labels.len() as f32 / (classes * c) as f32
            } else {
                1.0
            }
        })
        .collect()
}

fn rows(features: &[f32], dim: usize) -> Tensor {
    Tensor::from_slice(features).view([(features.len() / dim) as i64, dim as i64])
}

fn targets(labels: &[usize]) -> Tensor {
    Tensor::from_slice(&labels.iter().map(|&l| l as i64).collect::<Vec<_>>())
}

/// Trains a head. Early-stops on validation loss and returns the weights of the best
/// epoch, with one report per epoch passed to `progress`. Stops with an error when
/// `budget` runs out (checked every epoch and every few optimiser steps).
///
/// Same seed + same data give bit-identical weights across processes and across
/// sequential runs. Runs in one process are serialised on libtorch's global random
/// generator; when other libtorch work (a backbone forward pass) overlaps a run, the
/// weights were seen to differ in the last bits (~1e-7), so a server's TrainHead
/// results are reproducible to that precision, not bit for bit.
pub fn train_head(
    train: &Split<'_>,
    valid: &Split<'_>,
    dim: usize,
    labels: &[String],
    o: &TrainOptions,
    budget: &Budget,
    progress: &mut dyn FnMut(EpochReport),
) -> Result<(Head, Vec<EpochReport>)> {
    let classes = labels.len();
    // One seed drives initialisation and dropout; shuffling has its own seeded RNG.
    // libtorch's generator is process-global, so concurrent runs would interleave
    // draws from it: hold the lock for the whole run to keep same seed = same weights.
    let _rng = TORCH_RNG.lock().unwrap_or_else(|p| p.into_inner());
    tch::manual_seed(o.seed as i64);
    let vs = nn::VarStore::new(Device::Cpu);
    let net = Net::new(&vs.root(), o.head, dim as i64, classes as i64, o);
    let mut opt = nn::adamw(0.9, 0.999, o.weight_decay).build(&vs, o.learning_rate)?;
    let (xt, yt) = (rows(train.features, dim), targets(train.labels));
    let (xv, yv) = (rows(valid.features, dim), targets(valid.labels));
    let weights = Tensor::from_slice(&class_weights(train.labels, classes, o.class_weighting));
    let mut rng = StdRng::seed_from_u64(o.seed);
    let mut order: Vec<i64> = (0..train.labels.len() as i64).collect();
    let (mut best, mut best_vars, mut stale) = (f64::INFINITY, snapshot(&vs), 0);
    let mut history = Vec::new();
    let mut total_steps = 0;
    for epoch in 1..=o.max_epochs {
        order.shuffle(&mut rng);
        let (mut sum, mut steps) = (0.0, 0);
        for batch in order.chunks(o.batch_size) {
            if total_steps % 16 == 0 {
                budget.check()?;
            }
            let idx = Tensor::from_slice(batch);
            let logits = net.forward_t(&xt.index_select(0, &idx), true);
            let loss = logits.cross_entropy_loss(
                &yt.index_select(0, &idx),
                Some(&weights),
                Reduction::Mean,
                -100,
                0.0,
            );
            opt.backward_step(&loss);
            sum += loss.double_value(&[]);
            steps += 1;
            total_steps += 1;
        }
        let (validation_loss, validation_accuracy) = tch::no_grad(|| {
            if valid.labels.is_empty() {
                return (sum / steps as f64, f64::NAN);
            }
            let logits = net.forward_t(&xv, false);
            let loss = logits.cross_entropy_loss::<Tensor>(&yv, None, Reduction::Mean, -100, 0.0);
            let acc = logits
                .argmax(-1, false)
                .eq_tensor(&yv)
                .to_kind(Kind::Float)
                .mean(Kind::Float);
            (loss.double_value(&[]), acc.double_value(&[]))
        });
        let report = EpochReport {
            epoch,
            train_loss: sum / steps as f64,
            validation_loss,
            validation_accuracy,
        };
        progress(report);
        history.push(report);
        if validation_loss < best - 1e-6 {
            (best, best_vars, stale) = (validation_loss, snapshot(&vs), 0);
        } else {
            stale += 1;
            if stale >= o.patience && total_steps >= o.min_steps {
                break;
            }
        }
    }
    restore(&vs, &best_vars)?;
    Ok((export(&net, o, labels)?, history))
}

fn snapshot(vs: &nn::VarStore) -> Vec<(String, Tensor)> {
    vs.variables()
        .into_iter()
        .map(|(n, t)| (n, t.detach().copy()))
        .collect()
}

fn restore(vs: &nn::VarStore, saved: &[(String, Tensor)]) -> Result<()> {
    let vars = vs.variables();
    tch::no_grad(|| {
        for (name, value) in saved {
            if let Some(v) = vars.get(name) {
                v.shallow_clone().f_copy_(value)?;
            }
        }
        Ok(())
    })
}

fn export(net: &Net, o: &TrainOptions, labels: &[String]) -> Result<Head> {
    let layers = net
        .layers()
        .into_iter()
        .map(|l| {
            let size = l.ws.size();
            let bias = l.bs.as_ref().map_or_else(
                || Ok(vec![0.0; size[0] as usize]),
                |b| Vec::<f32>::try_from(b.detach()),
            )?;
            Ok(Dense {
                weight: Vec::<f32>::try_from(l.ws.detach().contiguous().view([-1]))?,
                bias,
                input: size[1] as usize,
                out: size[0] as usize,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let kind = match o.head {
        HeadChoice::Auto | HeadChoice::Linear | HeadChoice::Hybrid => HeadKind::Linear,
        HeadChoice::Mlp => HeadKind::Mlp {
            hidden_dim: o.hidden_dim,
        },
    };
    Ok(Head::new(kind, layers, labels.to_vec())?)
}
