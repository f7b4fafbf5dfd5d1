//! Seeded, stratified train/validation split.
use rand::{rngs::StdRng, seq::SliceRandom, SeedableRng};

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

#[cfg(test)]
mod tests {
    use super::*;

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
