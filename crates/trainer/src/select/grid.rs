//! The candidates `auto` weighs: linear and hybrid heads over a grid of penalties
//! and lexical weights, each on the truncated texts' features, on every window's, or
//! on both.
use polyhead_heads::SparseRow;

use super::{Examples, MEDIUM};
use crate::{logreg::Design, HeadChoice, Windows};

/// A candidate configuration: a head kind and its penalties, on the truncated
/// texts' features or on every window's (`windows`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Config {
    Linear { c: f64, windows: bool },
    Hybrid { c: f64, alpha: f32, windows: bool },
}

impl Config {
    pub(super) fn name(&self) -> String {
        let (base, windows) = match *self {
            Config::Linear { c, windows } => (format!("linear C={c}"), windows),
            Config::Hybrid { c, alpha, windows } => {
                (format!("hybrid C={c} lexical={alpha}"), windows)
            }
        };
        if windows {
            format!("{base} windows")
        } else {
            base
        }
    }
    pub(super) fn windows(&self) -> bool {
        match *self {
            Config::Linear { windows, .. } | Config::Hybrid { windows, .. } => windows,
        }
    }
    pub(super) fn with_windows(self) -> Config {
        match self {
            Config::Linear { c, .. } => Config::Linear { c, windows: true },
            Config::Hybrid { c, alpha, .. } => Config::Hybrid {
                c,
                alpha,
                windows: true,
            },
        }
    }
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Config::Linear { .. } => "linear",
            Config::Hybrid { .. } => "hybrid",
        }
    }
    pub(super) fn c(&self) -> f64 {
        match *self {
            Config::Linear { c, .. } | Config::Hybrid { c, .. } => c,
        }
    }
    pub(super) fn design<'a>(
        &self,
        ex: &Examples<'a>,
        sparse: &'a [SparseRow],
        vocab: usize,
    ) -> Design<'a> {
        let lexical = match *self {
            Config::Linear { .. } => None,
            Config::Hybrid { alpha, .. } => Some(alpha),
        };
        let dense = match ex.windows {
            Some(w) if self.windows() => w.emb,
            _ => ex.emb,
        };
        Design {
            dense,
            dim: ex.dim,
            sparse,
            vocab: if lexical.is_some() { vocab } else { 0 },
            alpha: lexical.unwrap_or(1.0),
        }
    }
}

/// The candidates for `choice` at `n` examples: on the truncated texts' features,
/// every window's, or (`auto`) both.
pub(super) fn grid(choice: HeadChoice, n: usize, windows: Windows) -> Vec<Config> {
    let truncated = grid_truncated(choice, n);
    let windowed = truncated.iter().map(|c| c.with_windows());
    match windows {
        Windows::Never => truncated,
        Windows::Always => windowed.collect(),
        Windows::Auto => {
            let windowed: Vec<Config> = windowed.collect();
            truncated.into_iter().chain(windowed).collect()
        }
    }
}

/// The candidates for `choice` at `n` examples on the truncated texts' features.
fn grid_truncated(choice: HeadChoice, n: usize) -> Vec<Config> {
    let large = n > MEDIUM;
    let cs: &[f64] = if large {
        &[1.0, 10.0, 100.0]
    } else {
        &[0.1, 1.0, 10.0, 100.0]
    };
    let alphas: &[f32] = if large { &[1.0] } else { &[0.5, 1.0, 2.0] };
    let linear = cs.iter().map(|&c| Config::Linear { c, windows: false });
    let hybrid = cs.iter().filter(|&&c| c >= 1.0).flat_map(|&c| {
        alphas.iter().map(move |&alpha| Config::Hybrid {
            c,
            alpha,
            windows: false,
        })
    });
    match choice {
        HeadChoice::Linear => linear.collect(),
        HeadChoice::Hybrid => hybrid.collect(),
        _ => linear.chain(hybrid).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grid_follows_the_choice() {
        assert!(grid(HeadChoice::Linear, 10, Windows::Never)
            .iter()
            .all(|c| c.kind() == "linear"));
        assert!(grid(HeadChoice::Hybrid, 10, Windows::Never)
            .iter()
            .all(|c| c.kind() == "hybrid"));
        let auto = grid(HeadChoice::Auto, 10, Windows::Never);
        assert!(
            auto.iter().any(|c| c.kind() == "linear") && auto.iter().any(|c| c.kind() == "hybrid")
        );
        assert!(grid(HeadChoice::Auto, 5000, Windows::Never).len() < auto.len());
    }

    #[test]
    fn windows_add_every_candidate_on_the_pooled_features_or_replace_them() {
        let never = grid(HeadChoice::Auto, 10, Windows::Never);
        assert!(never.iter().all(|c| !c.windows()));
        let auto = grid(HeadChoice::Auto, 10, Windows::Auto);
        assert_eq!(auto.len(), 2 * never.len());
        for c in &never {
            assert!(auto.contains(c) && auto.contains(&c.with_windows()));
        }
        let always = grid(HeadChoice::Linear, 10, Windows::Always);
        assert!(!always.is_empty() && always.iter().all(|c| c.windows()));
        assert!(always.iter().all(|c| c.name().ends_with(" windows")));
    }
}
