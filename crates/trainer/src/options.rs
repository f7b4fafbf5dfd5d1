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

/// Whether training may adapt the backbone's top layers (a branch) for the task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Adapt {
    /// Score adapted candidates beside the frozen ones and keep one only when its
    /// held-out gain pays for the layers it adds to serving.
    Auto,
    /// Frozen features only (the default until adapted heads beat frozen ones on
    /// held-out data: QUALITY.md).
    #[default]
    Never,
    /// Keep the best adapted candidate whatever its gain.
    Always,
}

impl std::str::FromStr for Adapt {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" | "" => Ok(Adapt::Auto),
            "never" | "frozen" => Ok(Adapt::Never),
            "always" => Ok(Adapt::Always),
            _ => Err(Error::Options(format!(
                "adapt {s:?}: use auto, never or always"
            ))),
        }
    }
}

/// Whether a head may read long texts in windows (every window's features, pooled)
/// instead of the backbone's truncated text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Windows {
    /// Score every candidate on both and keep what scores best on held-out
    /// examples.
    Auto,
    /// The truncated text only: one shared pass per text at serving.
    Never,
    /// Every window (the default: on held-out test rows it beat the truncated text
    /// in 30 of 45 seeded runs, and `auto`'s choice on folds in most; QUALITY.md,
    /// "Long texts"). A text the backbone reads whole costs nothing more.
    #[default]
    Always,
}

impl std::str::FromStr for Windows {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" | "" => Ok(Windows::Auto),
            "never" => Ok(Windows::Never),
            "always" => Ok(Windows::Always),
            _ => Err(Error::Options(format!(
                "windows {s:?}: use auto, never or always"
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
    /// Whether a branch may adapt the backbone's top layers.
    pub adapt: Adapt,
    /// Adapted depths tried (layers from the top).
    pub adapt_layers: Vec<usize>,
    /// Rank of a branch's low-rank updates.
    pub adapt_rank: usize,
    /// AdamW learning rate of branch training.
    pub adapt_learning_rate: f64,
    /// Most epochs of branch training; the count is chosen on held-out folds.
    pub adapt_max_epochs: usize,
    /// Held-out accuracy an adapted candidate must gain over the frozen head per
    /// layer it adds to serving, under `adapt = auto` (and at least one standard
    /// error of the frozen head's held-out accuracy).
    pub adapt_min_gain_per_layer: f64,
    /// Above this many examples `auto` does not try branches: tuning costs minutes
    /// on a CPU there (each epoch runs the adapted layers forward and backward over
    /// every example), and frozen features are near their ceiling; `always` still
    /// does.
    pub adapt_max_rows: usize,
    /// Whether the head may read long texts in every window (text backbones; a
    /// branch reads the truncated text).
    pub windows: Windows,
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
            adapt: Adapt::Never,
            adapt_layers: vec![1, 2],
            adapt_rank: 8,
            adapt_learning_rate: 2e-3,
            adapt_max_epochs: 6,
            adapt_min_gain_per_layer: 0.01,
            adapt_max_rows: 64,
            windows: Windows::Always,
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
        if self.adapt_layers.is_empty() || self.adapt_layers.contains(&0) {
            return bad("adapt_layers must list at least one depth of at least 1");
        }
        if self.adapt_rank == 0 || self.adapt_rank > 256 {
            return bad("adapt_rank must be in 1..=256");
        }
        if self.adapt_max_epochs == 0 || self.adapt_max_epochs > 1000 {
            return bad("adapt_max_epochs must be in 1..=1000");
        }
        if !(self.adapt_learning_rate > 0.0 && self.adapt_learning_rate <= 1.0) {
            return bad("adapt_learning_rate must be in (0, 1]");
        }
        if !(0.0..=1.0).contains(&self.adapt_min_gain_per_layer) {
            return bad("adapt_min_gain_per_layer must be in [0, 1]");
        }
        Ok(())
    }
}
