//! Accuracy, macro precision/recall/F1, per-class scores and the confusion matrix.
use polyhead_heads::{ClassMetrics, Metrics};

/// Metrics of `predicted` against `truth` (class indices into `labels`). A class
/// never predicted has precision 0; never present, recall 0 (as scikit-learn with
/// `zero_division=0`).
pub fn evaluate(labels: &[String], truth: &[usize], predicted: &[usize]) -> Metrics {
    let k = labels.len();
    let mut confusion = vec![vec![0u64; k]; k];
    for (&t, &p) in truth.iter().zip(predicted) {
        confusion[t][p] += 1;
    }
    let n = truth.len() as u64;
    let correct: u64 = (0..k).map(|i| confusion[i][i]).sum();
    let per_class: Vec<ClassMetrics> = (0..k)
        .map(|c| {
            let tp = confusion[c][c] as f64;
            let predicted_c: u64 = (0..k).map(|t| confusion[t][c]).sum();
            let support: u64 = confusion[c].iter().sum();
            let precision = ratio(tp, predicted_c as f64);
            let recall = ratio(tp, support as f64);
            let f1 = ratio(2.0 * precision * recall, precision + recall);
            ClassMetrics {
                label: labels[c].clone(),
                precision,
                recall,
                f1,
                support,
            }
        })
        .collect();
    let mean = |f: fn(&ClassMetrics) -> f64| per_class.iter().map(f).sum::<f64>() / k.max(1) as f64;
    Metrics {
        n,
        accuracy: ratio(correct as f64, n as f64),
        macro_precision: mean(|c| c.precision),
        macro_recall: mean(|c| c.recall),
        macro_f1: mean(|c| c.f1),
        per_class,
        confusion,
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}

/// Index of the largest value in each row of `probs`.
pub fn argmax_rows(probs: &[Vec<f32>]) -> Vec<usize> {
    probs.iter().map(|p| polyhead_heads::argmax(p)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_hand_computed_values() {
        let labels = vec!["a".to_string(), "b".to_string()];
        // truth a a a b ; pred a a b b -> a: P=1 R=2/3 ; b: P=1/2 R=1
        let m = evaluate(&labels, &[0, 0, 0, 1], &[0, 0, 1, 1]);
        assert_eq!(m.confusion, vec![vec![2, 1], vec![0, 1]]);
        assert!((m.accuracy - 0.75).abs() < 1e-12);
        assert!((m.per_class[0].f1 - 0.8).abs() < 1e-12);
        assert!((m.per_class[1].f1 - 2.0 / 3.0).abs() < 1e-12);
        assert!((m.macro_f1 - (0.8 + 2.0 / 3.0) / 2.0).abs() < 1e-12);
        assert_eq!(m.per_class[1].support, 1);
    }
}
