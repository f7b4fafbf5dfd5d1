//! The from-scratch baseline every head is scored against, on the same examples and
//! splits: TF-IDF + logistic regression for texts, logistic regression on 16 x 16 RGB
//! thumbnails for pictures.
use polyhead_heads::{argmax, Lexicon, Metrics, SparseRow};

use crate::{
    logreg::{Design, Fit},
    metrics::evaluate,
    select::{Context, Examples, Plan},
    Budget, Result, TrainOptions,
};

/// The baseline is scikit-learn's default `LogisticRegression(C=1.0)`.
pub(crate) const BASELINE_C: f64 = 1.0;
/// The pixel baseline's thumbnails: 16 x 16 RGB.
pub(crate) const THUMBNAIL_SIDE: u32 = 16;
/// Values per thumbnail.
pub(crate) const THUMBNAIL_DIM: usize = (THUMBNAIL_SIDE * THUMBNAIL_SIDE * 3) as usize;

/// The baseline, refitted on every example: it scores test examples.
pub(crate) enum Baseline {
    Lexical { lexicon: Lexicon, fit: Fit },
    Pixels { fit: Fit },
}

impl Baseline {
    /// The baseline `fit` makes for `ex`'s kind of input (`lexicon` is the texts').
    pub fn of(ex: &Examples<'_>, lexicon: Lexicon, fit: Fit) -> Baseline {
        match ex.pixels {
            Some(_) => Baseline::Pixels { fit },
            None => Baseline::Lexical { lexicon, fit },
        }
    }

    /// Metrics on labelled examples (texts, or their thumbnails for pictures).
    pub fn evaluate(
        &self,
        labels: &[String],
        texts: &[String],
        pixels: Option<&[f32]>,
        truth: &[usize],
    ) -> Metrics {
        let rows: Vec<SparseRow>;
        let (fit, x) = match (self, pixels) {
            (Baseline::Lexical { lexicon, fit }, _) => {
                rows = texts.iter().map(|t| lexicon.transform(t)).collect();
                (fit, lexical_design(&rows, lexicon.len()))
            }
            (Baseline::Pixels { fit }, Some(p)) => (fit, pixel_design(p)),
            // No thumbnails to read: nothing is predicted.
            (Baseline::Pixels { .. }, None) => return evaluate(labels, truth, &[]),
        };
        let predicted: Vec<usize> = (0..truth.len())
            .map(|i| argmax(&fit.probs(&x, i)))
            .collect();
        evaluate(labels, truth, &predicted)
    }
}

fn pixel_design(pixels: &[f32]) -> Design<'_> {
    Design {
        dense: pixels,
        dim: THUMBNAIL_DIM,
        sparse: &[],
        vocab: 0,
        alpha: 1.0,
    }
}

fn lexical_design(sparse: &[SparseRow], vocab: usize) -> Design<'_> {
    Design {
        dense: &[],
        dim: 0,
        sparse,
        vocab,
        alpha: 1.0,
    }
}

/// The baseline's design over `ex`: its thumbnails, or TF-IDF rows.
pub(crate) fn baseline_design<'a>(
    ex: &Examples<'a>,
    sparse: &'a [SparseRow],
    vocab: usize,
) -> Design<'a> {
    match ex.pixels {
        Some(p) => pixel_design(p),
        None => lexical_design(sparse, vocab),
    }
}

/// The baseline fitted on rows `fit_rows` and scored on `held` (the MLP's split).
pub(crate) fn baseline_on_split(
    ex: &Examples<'_>,
    labels: &[String],
    fit_rows: &[usize],
    held: &[usize],
    o: &TrainOptions,
    budget: &Budget,
) -> Result<(Metrics, Baseline)> {
    let cx = Context::new(ex.y, labels.len(), o, budget);
    let texts: &[String] = if ex.pixels.is_some() { &[] } else { ex.texts };
    let refs: Vec<&str> = fit_rows
        .iter()
        .filter_map(|&i| texts.get(i).map(String::as_str))
        .collect();
    let lexicon = Lexicon::fit(&refs, o.baseline_max_features);
    let sparse: Vec<SparseRow> = texts.iter().map(|t| lexicon.transform(t)).collect();
    let x = baseline_design(ex, &sparse, lexicon.len());
    let plan = Plan {
        method: "split".into(),
        splits: vec![(fit_rows.to_vec(), held.to_vec())],
    };
    let scored = cx.score(&x, &plan, BASELINE_C)?;
    let fit = cx.fit(&x, fit_rows, BASELINE_C)?;
    Ok((scored.metrics(labels, ex.y), Baseline::of(ex, lexicon, fit)))
}
