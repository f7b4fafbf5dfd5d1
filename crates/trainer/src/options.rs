//! Training options, recorded verbatim in each head's manifest.
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Which head to train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum HeadChoice {
    /// Linear or hybrid, whichever scores best on held-out examples (the default).
    #[default]
    Auto,
    /// L2-regularised softmax regression on the embedding, penalty chosen on
    /// held-out examples.
    Linear,
    /// Softmax regression on the embedding joined with the task's TF-IDF features.
    Hybrid,
    /// One hidden ReLU layer with dropout (AdamW, early stopping on a split).
    Mlp,
}

impl std::str::FromStr for HeadChoice {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" | "" => Ok(HeadChoice::Auto),
            "linear" => Ok(HeadChoice::Linear),
            "hybrid" => Ok(HeadChoice::Hybrid),
            "mlp" => Ok(HeadChoice::Mlp),
            _ => Err(Error::Options(format!(
                "head {s:?}: use auto, linear, hybrid or mlp"
            ))),
        }
    }
}

/// Hyper-parameters of one training run (head and baseline share them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainOptions {
    /// Head architecture.
    pub head: HeadChoice,
    /// Hidden width of the MLP head.
    pub hidden_dim: usize,
    /// Dropout after the MLP's hidden layer (training only).
    pub dropout: f64,
    /// AdamW learning rate.
    pub learning_rate: f64,
    /// AdamW decoupled weight decay.
    pub weight_decay: f64,
    /// Most passes over the training set.
    pub max_epochs: usize,
    /// Examples per optimiser step.
    pub batch_size: usize,
    /// Stop after this many epochs without a lower validation loss...
    pub patience: usize,
    /// ...but never before this many optimiser steps: on a few dozen examples an
    /// epoch is one step, and stopping after `patience` steps would stop untrained.
    pub min_steps: usize,
    /// Seed of initialisation, shuffling, dropout and the split.
    pub seed: u64,
    /// Share of each class held out for validation when no validation set is given.
    pub validation_fraction: f64,
    /// Weight the loss by inverse class frequency (off by default, as in
    /// scikit-learn: it trades accuracy for recall of rare classes).
    pub class_weighting: bool,
    /// Vocabulary cap of the TF-IDF baseline and of hybrid heads (most frequent terms).
    pub baseline_max_features: usize,
    /// Skip the baseline (it is on by default: it is how transfer is judged).
    pub skip_baseline: bool,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            head: HeadChoice::Auto,
            hidden_dim: 256,
            dropout: 0.1,
            learning_rate: 1e-2,
            weight_decay: 1e-4,
            max_epochs: 200,
            batch_size: 64,
            patience: 10,
            min_steps: 300,
            seed: 42,
            validation_fraction: 0.2,
            class_weighting: false,
            baseline_max_features: 20_000,
            skip_baseline: false,
        }
    }
}

impl TrainOptions {
    /// Checks ranges; the message names the option.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::Options(m.to_owned()));
        if !(self.learning_rate > 0.0 && self.learning_rate <= 10.0) {
            return bad("learning_rate must be in (0, 10]");
        }
        if !(0.0..1.0).contains(&self.weight_decay) {
            return bad("weight_decay must be in [0, 1)");
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad("dropout must be in [0, 1)");
        }
        if !(self.validation_fraction > 0.0 && self.validation_fraction < 1.0) {
            return bad("validation_fraction must be in (0, 1)");
        }
        if self.max_epochs == 0 || self.max_epochs > 10_000 {
            return bad("max_epochs must be in 1..=10000");
        }
        if self.batch_size == 0 || self.hidden_dim == 0 || self.patience == 0 {
            return bad("batch_size, hidden_dim and patience must be at least 1");
        }
        Ok(())
    }
}
