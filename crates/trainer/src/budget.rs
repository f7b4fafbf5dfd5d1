//! What bounds a training run: a deadline and a cancellation flag (the caller went
//! away), checked between epochs, optimiser steps and embedding chunks, plus the size
//! limits a server puts on requests it accepts.
use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use crate::{Dataset, Error, Result, TrainOptions};

/// A run's deadline and cancellation flag. Cloning shares the flag.
#[derive(Debug, Clone, Default)]
pub struct Budget {
    deadline: Option<Instant>,
    limit: Option<Duration>,
    cancelled: Arc<AtomicBool>,
}

impl Budget {
    /// No deadline, never cancelled (until [`Budget::cancel`]).
    pub fn unlimited() -> Budget {
        Budget::default()
    }

    /// A run that must finish within `limit` from now.
    pub fn within(limit: Duration) -> Budget {
        Budget {
            deadline: Instant::now().checked_add(limit),
            limit: Some(limit),
            cancelled: Arc::default(),
        }
    }

    /// Tightens the deadline to `deadline` if that is earlier.
    pub fn until(mut self, deadline: Instant) -> Budget {
        if self.deadline.is_none_or(|d| deadline < d) {
            self.limit = Some(deadline.saturating_duration_since(Instant::now()));
            self.deadline = Some(deadline);
        }
        self
    }

    /// Stops the run at its next check (e.g. its caller went away).
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }

    /// `Err` once the run is cancelled or past its deadline.
    pub fn check(&self) -> Result<()> {
        if self.cancelled.load(Ordering::Relaxed) {
            return Err(Error::Cancelled("the caller went away".into()));
        }
        match (self.deadline, self.limit) {
            (Some(d), Some(limit)) if Instant::now() >= d => Err(Error::DeadlineExceeded(format!(
                "training ran past its time limit of {:.1} s (train.max_seconds or the caller's deadline)",
                limit.as_secs_f64()
            ))),
            _ => Ok(()),
        }
    }
}

/// Size limits on what a training request may ask for. Every message names the
/// configuration key that sets the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrainLimits {
    /// Most examples (training + validation) in one request: `train.max_examples`.
    pub max_examples: usize,
    /// Most distinct labels: `train.max_labels`.
    pub max_labels: usize,
    /// Widest MLP hidden layer: `train.max_hidden_dim`.
    pub max_hidden_dim: usize,
    /// Longest text in bytes: `server.max_text_bytes`.
    pub max_text_bytes: usize,
}

impl TrainLimits {
    /// Checks a request's data and options against the limits.
    pub fn check(&self, train: &Dataset, valid: Option<&Dataset>, o: &TrainOptions) -> Result<()> {
        let bad = |m: String| Err(Error::Limit(m));
        let n = train.examples.len() + valid.map_or(0, |v| v.examples.len());
        if n > self.max_examples {
            return bad(format!(
                "{n} examples; the limit is {} (train.max_examples)",
                self.max_examples
            ));
        }
        let labels = train.labels().len();
        if labels > self.max_labels {
            return bad(format!(
                "{labels} distinct labels; the limit is {} (train.max_labels)",
                self.max_labels
            ));
        }
        if o.hidden_dim > self.max_hidden_dim {
            return bad(format!(
                "hidden_dim {}; the limit is {} (train.max_hidden_dim)",
                o.hidden_dim, self.max_hidden_dim
            ));
        }
        let all = train
            .examples
            .iter()
            .chain(valid.into_iter().flat_map(|v| &v.examples));
        if let Some(e) = all.into_iter().find(|e| e.text.len() > self.max_text_bytes) {
            return bad(format!(
                "example {} has {} bytes of text; the limit is {} (server.max_text_bytes)",
                e.line,
                e.text.len(),
                self.max_text_bytes
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancel_and_deadline_stop_a_run() {
        let b = Budget::unlimited();
        assert!(b.check().is_ok());
        b.clone().cancel();
        assert!(matches!(b.check(), Err(Error::Cancelled(_))));
        let b = Budget::within(Duration::from_secs(3600)).until(Instant::now());
        let e = b.check().unwrap_err();
        assert!(matches!(e, Error::DeadlineExceeded(_)), "{e}");
        assert!(Budget::within(Duration::from_secs(3600)).check().is_ok());
    }

    #[test]
    fn limits_name_their_key() {
        let ds = Dataset::from_pairs(
            ["a", "b", "c"]
                .iter()
                .map(|l| (format!("text {l}"), l.to_string())),
        )
        .unwrap();
        let limits = TrainLimits {
            max_examples: 10,
            max_labels: 10,
            max_hidden_dim: 64,
            max_text_bytes: 100,
        };
        let o = TrainOptions::default();
        let mut small = o.clone();
        small.hidden_dim = 64;
        assert!(limits.check(&ds, None, &small).is_ok());
        let e = limits.check(&ds, None, &o).unwrap_err().to_string();
        assert!(e.contains("train.max_hidden_dim"), "{e}");
        for (l, key) in [
            (
                TrainLimits {
                    max_examples: 2,
                    ..limits
                },
                "train.max_examples",
            ),
            (
                TrainLimits {
                    max_labels: 2,
                    ..limits
                },
                "train.max_labels",
            ),
            (
                TrainLimits {
                    max_text_bytes: 3,
                    ..limits
                },
                "server.max_text_bytes",
            ),
        ] {
            let e = l.check(&ds, None, &small).unwrap_err().to_string();
            assert!(e.contains(key), "{e}");
        }
    }
}
