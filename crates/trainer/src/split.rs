//! Seeded, stratified splits: one train/validation split, or k folds.
use rand::{rngs::StdRng, seq::SliceRandom, SeedableRng};

use crate::{Error, Result};

/// Splits indices `0..labels.len()` so each class keeps about `fraction` of its
/// examples for validation (at least one when it has two or more, never all of them).
/// Same seed and labels give the same split. Returns `(train, validation)`, sorted.
pub fn stratified_split(labels: &[usize], fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let classes = labels.iter().copied().max().map_or(0, |m| m + 1);
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); classes];
    for (i, &l) in labels.iter().enumerate() {
        by_class[l].push(i);
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut train, mut valid) = (Vec::new(), Vec::new());
    for mut members in by_class {
        members.shuffle(&mut rng);
        let n = members.len();
        let take = if n < 2 {
            0
        } else {
            ((n as f64 * fraction).round() as usize).clamp(1, n - 1)
        };
        valid.extend_from_slice(&members[..take]);
        train.extend_from_slice(&members[take..]);
    }
    train.sort_unstable();
    valid.sort_unstable();
    (train, valid)
}

/// Stratified k folds: each class's examples, shuffled, are dealt round-robin.
pub(crate) fn stratified_folds(y: &[usize], k: usize, seed: u64) -> Vec<(Vec<usize>, Vec<usize>)> {
    let classes = y.iter().copied().max().map_or(0, |m| m + 1);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut fold_of = vec![0; y.len()];
    let mut next = 0;
    for class in 0..classes {
        let mut members: Vec<usize> = (0..y.len()).filter(|&i| y[i] == class).collect();
        members.shuffle(&mut rng);
        for i in members {
            fold_of[i] = next % k;
            next += 1;
        }
    }
    (0..k)
        .map(|f| {
            let (held, fit_rows): (Vec<usize>, Vec<usize>) =
                (0..y.len()).partition(|&i| fold_of[i] == f);
            (fit_rows, held)
        })
        .collect()
}

/// Without a validation set, every label must keep one example for validation, or
/// the validation metrics (and the activation gate on them) would measure nothing.
pub(crate) fn check_holdout(labels: &[String], y: &[usize]) -> Result<()> {
    let mut counts = vec![0usize; labels.len()];
    y.iter().for_each(|&l| counts[l] += 1);
    let single: Vec<&str> = labels
        .iter()
        .zip(&counts)
        .filter(|(_, &c)| c < 2)
        .map(|(l, _)| l.as_str())
        .take(5)
        .collect();
    if single.is_empty() {
        return Ok(());
    }
    Err(Error::Dataset(format!(
        "every label needs at least 2 examples (one is held out for validation), or pass a \
         validation set; labels with one example: {single:?}{}",
        if counts.iter().filter(|&&c| c < 2).count() > 5 {
            " ..."
        } else {
            ""
        }
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_are_stratified_disjoint_and_cover_every_row() {
        let y: Vec<usize> = (0..40).map(|i| usize::from(i % 4 == 0)).collect();
        let folds = stratified_folds(&y, 5, 3);
        let mut seen = vec![0; y.len()];
        for (fit_rows, held) in &folds {
            assert_eq!(fit_rows.len() + held.len(), y.len());
            assert_eq!(held.iter().filter(|&&i| y[i] == 1).count(), 2);
            held.iter().for_each(|&i| seen[i] += 1);
        }
        assert!(seen.iter().all(|&s| s == 1));
    }

    #[test]
    fn stratified_and_seeded() {
        let labels: Vec<usize> = (0..100).map(|i| usize::from(i % 10 == 0)).collect();
        let (t, v) = stratified_split(&labels, 0.2, 7);
        assert_eq!(t.len() + v.len(), 100);
        assert_eq!(v.iter().filter(|&&i| labels[i] == 1).count(), 2);
        assert_eq!(v.iter().filter(|&&i| labels[i] == 0).count(), 18);
        assert_eq!(stratified_split(&labels, 0.2, 7), (t.clone(), v.clone()));
        assert_ne!(stratified_split(&labels, 0.2, 8).1, v);
    }

    #[test]
    fn tiny_classes_keep_a_training_example() {
        let (t, v) = stratified_split(&[0, 0, 1], 0.5, 1);
        assert_eq!(v.len(), 1);
        assert!(t.contains(&2));
    }
}
