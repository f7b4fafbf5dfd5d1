//! Softmax and argmax, once, for the heads' f32 and the trainer's f64.
use std::ops::{DivAssign, Sub};

/// The float types a head or a fit computes in.
pub trait Real: Copy + Sub<Output = Self> + DivAssign + std::iter::Sum + 'static {
    /// `e^self`.
    fn exp(self) -> Self;
    /// The larger of the two (NaN-ignoring, as `f32::max`).
    fn max(self, other: Self) -> Self;
    /// Negative infinity.
    const NEG_INFINITY: Self;
    /// IEEE total order.
    fn total_cmp(&self, other: &Self) -> std::cmp::Ordering;
}

macro_rules! real {
    ($t:ty) => {
        impl Real for $t {
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            fn max(self, other: Self) -> Self {
                <$t>::max(self, other)
            }
            const NEG_INFINITY: Self = <$t>::NEG_INFINITY;
            fn total_cmp(&self, other: &Self) -> std::cmp::Ordering {
                <$t>::total_cmp(self, other)
            }
        }
    };
}
real!(f32);
real!(f64);

/// In-place numerically stable softmax: exp(x - max) / sum.
pub fn softmax<T: Real>(x: &mut [T]) {
    let max = x.iter().copied().fold(T::NEG_INFINITY, T::max);
    for v in x.iter_mut() {
        *v = (*v - max).exp();
    }
    let sum: T = x.iter().copied().sum();
    x.iter_mut().for_each(|v| *v /= sum);
}

/// Index of the largest value (the last of equals, as `Iterator::max_by`; 0 for an
/// empty slice).
pub fn argmax<T: Real>(x: &[T]) -> usize {
    x.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_sums_to_one_and_keeps_the_order_in_both_widths() {
        let mut a = [1.0f32, 3.0, 2.0];
        softmax(&mut a);
        assert!((a.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert_eq!(argmax(&a), 1);
        let mut b = [1000.0f64, 1001.0, -1000.0];
        softmax(&mut b);
        assert!(
            b.iter().all(|v| v.is_finite()),
            "stable for large logits: {b:?}"
        );
        assert!((b[1] / b[0] - std::f64::consts::E).abs() < 1e-9);
        assert_eq!(argmax(&b), 1);
    }

    #[test]
    fn argmax_takes_the_last_of_equals() {
        assert_eq!(argmax(&[0.5f32, 0.5, 0.1]), 1);
        assert_eq!(argmax::<f64>(&[]), 0);
    }
}
