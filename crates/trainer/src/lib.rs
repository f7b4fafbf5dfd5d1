//! Training polyhead heads on frozen backbone features, and judging them against a
//! from-scratch baseline trained on the same examples.
//!
//! - [`Dataset`]: JSONL / CSV loading with line-numbered errors.
//! - [`FeatureCache`]: backbone features cached on disk by fingerprint + text hash.
//! - [`train_task`]: choose and fit the head on frozen features (linear or hybrid
//!   by cross-validation, then a refit on every example; or an MLP), score the
//!   TF-IDF baseline on the same splits, evaluate both, build the artifact.
//! - [`predict_rows`]: metrics of a stored head on labelled data, with the features it reads.
#![deny(missing_docs)]

mod adapt;
mod baseline;
mod budget;
mod dataset;
mod error;
mod features;
mod logreg;
mod metrics;
mod options;
mod pipeline;
mod predict;
mod select;
mod split;
mod stored_branch;
mod train;

pub use budget::{Budget, TrainLimits};
pub use dataset::{Dataset, Example, Format};
pub use error::{Error, Result};
pub use features::{CacheStats, FeatureCache};
pub use metrics::{argmax_rows, evaluate};
pub use options::{Adapt, HeadChoice, TrainOptions, Windows};
pub use pipeline::{train_task, Progress, Timings, TrainReport, TrainRequest};
pub use predict::{backbone_ref, predict_rows};
pub use stored_branch::branch_of;
pub use train::{train_head, EpochReport, Split};
