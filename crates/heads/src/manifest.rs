//! `manifest.json`: what a head is, what it was trained on, and how well it did.
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Version of the artifact format this crate writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// Checks a task name: `^[a-z0-9][a-z0-9_-]{0,63}$`, so it is always one safe path
/// component.
pub fn validate_task_name(task: &str) -> Result<()> {
    let bytes = task.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= 64
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' || *b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidTaskName(task.to_owned()))
    }
}

/// The architecture of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum HeadKind {
    /// Softmax regression: one linear layer.
    Linear,
    /// One hidden ReLU layer (dropout while training), then a linear layer.
    Mlp {
        /// Width of the hidden layer.
        hidden_dim: usize,
    },
    /// Softmax regression over the embedding joined with the task's own TF-IDF
    /// features (word 1-2 grams of the request's text): wins where words decide.
    Hybrid {
        /// Terms in the head's lexicon (the TF-IDF columns after the embedding).
        vocab_size: usize,
    },
}

impl HeadKind {
    /// `linear`, `mlp` or `hybrid`.
    pub fn name(&self) -> &'static str {
        match self {
            HeadKind::Linear => "linear",
            HeadKind::Mlp { .. } => "mlp",
            HeadKind::Hybrid { .. } => "hybrid",
        }
    }
}

/// How much of a long text a head's features read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Reads {
    /// The text as the backbone truncates it (its first `max_seq_length` tokens):
    /// the shared frozen features.
    #[default]
    Truncated,
    /// Every window of the text, pooled into one vector: the frozen features of
    /// the first window, plus a pass per further window.
    Windows,
}

impl Reads {
    /// Whether this is the default (kept out of manifests, so a head that reads the
    /// truncated text has the manifest it always had).
    pub fn is_truncated(&self) -> bool {
        *self == Reads::Truncated
    }
}

/// The backbone a head was trained on. A head only serves the backbone it names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct BackboneRef {
    /// Model name, for people.
    pub name: String,
    /// The backbone's fingerprint; must match exactly.
    pub fingerprint: String,
    /// Embedding width; must equal the head's input width.
    pub dim: usize,
    /// The running backbone's layer count, which a branch's depth must equal (0:
    /// it takes no branch). Known to the server, not recorded in manifests.
    #[serde(skip)]
    pub layers: usize,
    /// The linears a branch of the running backbone updates, with their widths,
    /// which a branch's targets must equal. Not recorded in manifests.
    #[serde(skip)]
    pub branch_targets: Vec<BranchTarget>,
    /// Whether the running backbone reads texts, and so can read one in windows.
    /// Known to the server, not recorded in manifests.
    #[serde(skip)]
    pub reads_text: bool,
}

/// Scores of one class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    /// The label.
    pub label: String,
    /// Precision.
    pub precision: f64,
    /// Recall.
    pub recall: f64,
    /// F1.
    pub f1: f64,
    /// Examples of this class in the evaluated set.
    pub support: u64,
}

/// Classification metrics on one evaluated set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Examples evaluated.
    pub n: u64,
    /// Fraction classified correctly.
    pub accuracy: f64,
    /// Unweighted mean of per-class precision.
    pub macro_precision: f64,
    /// Unweighted mean of per-class recall.
    pub macro_recall: f64,
    /// Unweighted mean of per-class F1.
    pub macro_f1: f64,
    /// Per-class scores, in label order.
    pub per_class: Vec<ClassMetrics>,
    /// `confusion[true][predicted]`, in label order.
    pub confusion: Vec<Vec<u64>>,
}

/// Validation metrics of the head and of the from-scratch baseline on the same set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// The head on frozen backbone features.
    pub head: Metrics,
    /// The from-scratch baseline (TF-IDF + softmax regression).
    pub baseline: Option<Metrics>,
}

/// `manifest.json` of a head artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Artifact format version.
    pub format: u32,
    /// Task name.
    pub task: String,
    /// Version within the task, assigned by the store (0 before storing).
    pub version: u64,
    /// Class labels, index = output unit.
    pub labels: Vec<String>,
    /// Architecture.
    pub head: HeadKind,
    /// Input width.
    pub input_dim: usize,
    /// The backbone the features came from.
    pub backbone: BackboneRef,
    /// Training options, as the trainer recorded them.
    #[serde(default)]
    pub training: serde_json::Value,
    /// Hash of the training data.
    #[serde(default)]
    pub dataset_hash: String,
    /// RFC 3339 creation time.
    pub created_at: String,
    /// Validation metrics.
    #[serde(default)]
    pub metrics: Option<Evaluation>,
    /// How the head was chosen: every candidate's validation score.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selection: Option<Selection>,
    /// The task's branch, when it adapts the backbone's top layers: its weights are
    /// in `head.safetensors` as `branch.{layer}.{target}.a` and `.b`. None: the head
    /// reads the frozen features.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<BranchSpec>,
    /// How much of a long text the head's features read (absent: the truncated
    /// text).
    #[serde(default, skip_serializing_if = "Reads::is_truncated")]
    pub reads: Reads,
}

/// The shape of a task's branch: low-rank updates `W + B A * scale` of the linears
/// `targets` in layers `from_layer..depth` of the backbone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BranchSpec {
    /// The first adapted layer (0-based).
    pub from_layer: usize,
    /// The backbone's layer count: the branch adapts `depth - from_layer` layers.
    pub depth: usize,
    /// The updates' rank.
    pub rank: usize,
    /// The factor applied to every update.
    pub scale: f32,
    /// The linears updated in each adapted layer, in order.
    pub targets: Vec<BranchTarget>,
}

impl BranchSpec {
    /// Adapted layers.
    pub fn layers(&self) -> usize {
        self.depth.saturating_sub(self.from_layer)
    }
}

/// One linear a branch updates: `a` is rank x `input`, `b` is `output` x rank.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BranchTarget {
    /// The linear's name within a layer (`query`, `intermediate`, ...).
    pub name: String,
    /// Its input width.
    pub input: usize,
    /// Its output width.
    pub output: usize,
}

/// The model selection behind a head: the candidates tried, each scored on data it
/// was not fitted on (cross-validation folds or a held-out split), and the winner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Selection {
    /// `cv-N` (N-fold cross-validation), `holdout` or `validation-set`.
    pub method: String,
    /// The chosen candidate's name.
    pub chosen: String,
    /// Every candidate, in the order tried.
    pub candidates: Vec<Candidate>,
}

/// One configuration tried during selection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// e.g. `linear C=1` or `hybrid C=10 lexical=1`.
    pub name: String,
    /// Head kind (`linear`, `hybrid`, ...).
    pub kind: String,
    /// Accuracy on the examples it was not fitted on.
    pub accuracy: f64,
    /// Mean cross-entropy on the same examples (tie-breaker).
    pub log_loss: f64,
    /// Backbone layers the candidate adapts (0: frozen features).
    #[serde(default)]
    pub layers: usize,
    /// What its branch adds per text at serving, in microseconds, as measured on the
    /// training machine (absent for frozen candidates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_us: Option<f64>,
    /// Backbone passes per text it needs at serving when it reads texts in windows
    /// (the mean windows per training text: the first is the shared pass); absent
    /// for candidates that read the truncated text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub windows_per_text: Option<f64>,
}

/// Now, as RFC 3339.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
