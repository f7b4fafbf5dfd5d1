//! Task heads of polyhead: small classifiers over frozen backbone features.
//!
//! - [`Head`]: a head's layers and labels, with a plain-Rust forward pass.
//! - [`Lexicon`]: a task's TF-IDF vocabulary (baselines and hybrid heads).
//! - [`HeadArtifact`]: `manifest.json` + `head.safetensors`, validated on decode.
//! - [`HeadStore`]: immutable versions and an atomic active pointer, in a folder
//!   ([`FsHeadStore`]) or in PostgreSQL ([`PgHeadStore`]), opened by [`open_store`].
//! - [`HeadRegistry`]: the live, atomically swapped set that requests read.
//!
//! ```
//! use polyhead_heads::{Dense, Head, HeadKind};
//!
//! let layer = Dense { weight: vec![1.0, -1.0], bias: vec![0.0, 0.0], input: 1, out: 2 };
//! let head = Head::new(HeadKind::Linear, vec![layer], vec!["yes".into(), "no".into()])?;
//! let p = head.predict(&[2.0], "text (read by hybrid heads only)")?;
//! assert!(p[0] > p[1]);
//! # Ok::<(), polyhead_heads::Error>(())
//! ```
#![deny(missing_docs)]

mod artifact;
mod error;
mod head;
mod lexicon;
mod manifest;
mod prob;
mod registry;
mod store;
#[cfg(feature = "testing")]
pub mod testing;

pub use artifact::{BranchWeights, HeadArtifact};
pub use error::{Error, Result};
pub use head::{Dense, Head};
pub use lexicon::{Lexicon, SparseRow};
pub use manifest::{
    now_rfc3339, validate_task_name, BackboneRef, BranchSpec, BranchTarget, Candidate,
    ClassMetrics, Evaluation, HeadKind, Manifest, Metrics, Reads, Selection, FORMAT_VERSION,
};
pub use prob::{argmax, softmax, Real};
pub use registry::{HeadMap, HeadRegistry, SyncReport};
pub use store::{
    copy_store, open_store, ActiveHistory, CopyReport, FailPoint, FsHeadStore, HeadStore,
    PgHeadStore, StoreUrl, StoredVersion,
};
