//! The one batching policy: how inputs are grouped into forward passes, and what a
//! group costs. The encoder plans its own long jobs with it; a server's batcher
//! budgets its batches with the same cost and hands the encoder the passes it
//! planned, so the passes that run are decided in one place.
use crate::runtime::Padding;

/// Most padding a forward pass may carry, as a share of its real tokens, before the
/// next (shorter) input starts a new pass instead. A server batch of 32 texts taken
/// in arrival order pads to ~1.7x its real tokens in one pass (33-token texts, a few
/// of 60-130); split this way, ~1.15x.
const MAX_PADDING: f64 = 0.2;

/// Rows per pass, tokens per pass and the runtime's padding: see the module doc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchPolicy {
    padding: Padding,
    max_rows: usize,
    max_pass_tokens: usize,
}

/// The passes of one batch: each a list of indices into the batch's inputs.
pub type Passes = Vec<Vec<usize>>;

impl BatchPolicy {
    /// A policy of passes of at most `max_rows` inputs and `max_pass_tokens` tokens
    /// as the runtime computes them (padding included where it pads); a single longer
    /// input still runs, alone.
    pub fn new(padding: Padding, max_rows: usize, max_pass_tokens: usize) -> BatchPolicy {
        BatchPolicy {
            padding,
            max_rows: max_rows.max(1),
            max_pass_tokens: max_pass_tokens.max(1),
        }
    }

    /// Most inputs in one pass.
    pub fn max_rows(&self) -> usize {
        self.max_rows
    }

    /// Splits inputs of token lengths `lens` into passes. A padded runtime gets them
    /// longest first, a new pass started when the next input would bring the pass's
    /// padded size (rows x its longest) above (1 + MAX_PADDING) x its real tokens.
    pub fn passes(&self, lens: &[usize]) -> Passes {
        let mut order: Vec<usize> = (0..lens.len()).collect();
        if self.padding == Padding::ToLongest {
            order.sort_by_key(|&i| std::cmp::Reverse(lens[i]));
        }
        let sorted: Vec<usize> = order.iter().map(|&i| lens[i]).collect();
        self.split(&sorted)
            .into_iter()
            .map(|r| order[r].to_vec())
            .collect()
    }

    /// Tokens the runtime computes for inputs of lengths `lens` in the passes
    /// [`BatchPolicy::passes`] makes of them: the unit of a batcher's budget.
    pub fn cost(&self, lens: &[usize]) -> usize {
        self.passes(lens)
            .iter()
            .map(|pass| self.pass_cost(pass.iter().map(|&i| lens[i])))
            .sum()
    }

    /// Whether inputs of lengths `lens` (`real` tokens in all) cost at most `budget`,
    /// computing the passes only when a cheap bound cannot tell.
    pub fn fits(&self, lens: &[usize], real: usize, budget: usize) -> bool {
        // Every pass of several rows pads to at most (1 + MAX_PADDING) x its real
        // tokens, a pass of one to its own length (at least 1).
        let bound = real + real / 5 + lens.len() + 1;
        real <= budget && (bound <= budget || self.cost(lens) <= budget)
    }

    fn pass_cost(&self, lens: impl Iterator<Item = usize>) -> usize {
        match self.padding {
            Padding::ToLongest => {
                let (rows, longest) = lens.fold((0, 0), |(n, m), l| (n + 1, m.max(l)));
                rows * longest.max(1)
            }
            Padding::Unpadded => lens.sum(),
        }
    }

    /// Consecutive passes over `lens` (longest first for a padded runtime).
    fn split(&self, lens: &[usize]) -> Vec<std::ops::Range<usize>> {
        let mut chunks = Vec::new();
        let mut start = 0;
        let mut real = 0usize;
        for (i, &len) in lens.iter().enumerate() {
            let rows = i - start;
            let (cost, too_wide) = match self.padding {
                Padding::ToLongest => {
                    let longest = lens.get(start).copied().unwrap_or(len).max(1);
                    let padded = (rows + 1) * longest;
                    let wide = padded as f64 > (1.0 + MAX_PADDING) * (real + len).max(1) as f64;
                    (padded, wide)
                }
                Padding::Unpadded => (real + len, false),
            };
            let too_many = cost > self.max_pass_tokens;
            if rows > 0 && (rows == self.max_rows || too_wide || too_many) {
                chunks.push(start..i);
                start = i;
                real = 0;
            }
            real += len;
        }
        if start < lens.len() {
            chunks.push(start..lens.len());
        }
        chunks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn padded(rows: usize, tokens: usize) -> BatchPolicy {
        BatchPolicy::new(Padding::ToLongest, rows, tokens)
    }

    fn padded_over_real(lens: &[usize], passes: &Passes) -> f64 {
        let padded: usize = passes
            .iter()
            .map(|p| p.len() * p.iter().map(|&i| lens[i]).max().unwrap_or(0))
            .sum();
        padded as f64 / lens.iter().sum::<usize>() as f64
    }

    fn covers_each_once(passes: &Passes, n: usize) -> bool {
        let mut all: Vec<usize> = passes.iter().flatten().copied().collect();
        all.sort_unstable();
        all == (0..n).collect::<Vec<_>>()
    }

    #[test]
    fn passes_cover_every_input_once_within_the_row_limit() {
        for (lens, rows) in [
            (vec![40; 70], 32),
            (vec![9, 130, 60, 40, 39, 38, 35, 33, 33, 30, 20, 12], 4),
            (vec![5, 5, 256, 5, 5, 5], 32),
            (vec![7], 1),
            (vec![], 8),
        ] {
            let passes = padded(rows, usize::MAX).passes(&lens);
            assert!(covers_each_once(&passes, lens.len()), "{lens:?}");
            assert!(passes.iter().all(|p| !p.is_empty() && p.len() <= rows));
        }
        // Equal lengths: full passes, no padding.
        let p = padded(32, usize::MAX).passes(&[40; 70]);
        assert_eq!(p.iter().map(Vec::len).collect::<Vec<_>>(), vec![32, 32, 6]);
        // A long input does not make the short ones pad to its length.
        let lens = [5, 5, 256, 5, 5, 5];
        let p = padded(32, usize::MAX).passes(&lens);
        assert_eq!(p[0], vec![2]);
        assert!((padded_over_real(&lens, &p) - 1.0).abs() < 1e-9);
    }

    #[test]
    fn no_pass_holds_more_than_max_tokens_unless_one_input_does() {
        let lens = [256, 256, 256, 200, 130, 90, 40, 40, 40, 40, 12, 9, 5];
        for max in [1, 100, 256, 512, 1000, 2048] {
            let policy = padded(32, max);
            let passes = policy.passes(&lens);
            assert!(covers_each_once(&passes, lens.len()));
            for p in &passes {
                let cost = policy.pass_cost(p.iter().map(|&i| lens[i]));
                assert!(cost <= max || p.len() == 1, "{max}: {p:?} costs {cost}");
            }
        }
        // 32 inputs of 256 tokens in passes of at most 2,048 tokens: 8 each.
        let p = padded(32, 2048).passes(&[256; 32]);
        assert_eq!(p.iter().map(Vec::len).collect::<Vec<_>>(), vec![8; 4]);
    }

    #[test]
    fn a_mixed_batch_pads_little_and_costs_what_its_passes_pad_to() {
        // Lengths like a server batch of short emails and reviews, in arrival order.
        let mut lens: Vec<usize> = (0..32).map(|i| 20 + (i * 37 % 23)).collect();
        lens.extend([133, 90, 61]);
        let real: usize = lens.iter().sum();
        let one_pass = lens.len() as f64 * 133.0 / real as f64;
        let policy = padded(64, usize::MAX);
        let passes = policy.passes(&lens);
        let split = padded_over_real(&lens, &passes);
        assert!(one_pass > 2.0, "{one_pass}");
        assert!(split <= 1.0 + MAX_PADDING + 1e-9, "{split} with {passes:?}");
        let cost = policy.cost(&lens);
        assert!((cost as f64 / real as f64 - split).abs() < 1e-9);
        // The cheap bound and the exact cost agree on what fits.
        for budget in [real - 1, real, cost - 1, cost, cost + 1, 2 * real] {
            assert_eq!(policy.fits(&lens, real, budget), cost <= budget, "{budget}");
        }
    }

    #[test]
    fn an_unpadded_runtime_pays_its_real_tokens_in_arrival_order() {
        let policy = BatchPolicy::new(Padding::Unpadded, 3, 100);
        let lens = [10, 90, 5, 5, 5, 80];
        let passes = policy.passes(&lens);
        assert_eq!(passes, vec![vec![0, 1], vec![2, 3, 4], vec![5]]);
        assert_eq!(policy.cost(&lens), lens.iter().sum::<usize>());
    }
}
