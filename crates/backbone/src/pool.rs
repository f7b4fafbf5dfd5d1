//! Pooling: token states to one vector per input, as sentence-transformers' `Pooling`
//! and `Normalize` modules do it. One implementation, in f32, for every runtime.
use crate::config::Pooling;

/// Pools row-major f32 `states` of shape `(rows, cols, dim)` with a 0/1 `mask` of
/// `(rows, cols)` (right padding) into `(rows, dim)`, then L2-normalises each row
/// when `normalize` (`torch.nn.functional.normalize`: x / max(||x||, 1e-12)).
pub(crate) fn pool(
    states: &[f32],
    mask: &[i64],
    (rows, cols, dim): (usize, usize, usize),
    pooling: Pooling,
    normalize: bool,
) -> Vec<f32> {
    let mut out = vec![0f32; rows * dim];
    for r in 0..rows {
        let row = &mut out[r * dim..(r + 1) * dim];
        let token = |c: usize| &states[(r * cols + c) * dim..(r * cols + c + 1) * dim];
        let kept = (0..cols).filter(|&c| mask[r * cols + c] != 0);
        match pooling {
            Pooling::Cls => row.copy_from_slice(token(0)),
            Pooling::LastToken => {
                // sentence-transformers' lasttoken: the last token the mask keeps.
                let last = (0..cols).rev().find(|&c| mask[r * cols + c] != 0);
                let last = last.unwrap_or(0);
                row.copy_from_slice(token(last));
            }
            Pooling::Max => {
                row.fill(-1e9);
                for c in kept {
                    for (o, &v) in row.iter_mut().zip(token(c)) {
                        *o = o.max(v);
                    }
                }
            }
            Pooling::Mean | Pooling::MeanSqrtLen => {
                let mut n = 0f32;
                for c in kept {
                    n += 1.0;
                    for (o, &v) in row.iter_mut().zip(token(c)) {
                        *o += v;
                    }
                }
                let n = n.max(1e-9);
                let div = if pooling == Pooling::Mean {
                    n
                } else {
                    n.sqrt()
                };
                row.iter_mut().for_each(|o| *o /= div);
            }
        }
        if normalize {
            let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            row.iter_mut().for_each(|o| *o /= norm);
        }
    }
    out
}

/// Texts read in windows, one vector each: the mean of a text's windows'
/// embeddings, L2-normalised again when `normalize` (`bench/windows_probe.py`
/// measured this against reading the first window only). `firsts[t]` is text `t`'s
/// first window's embedding (the shared frozen pass), `counts[t]` its windows (at
/// least one), and `further` the row-major embeddings of every text's further
/// windows, in order.
pub fn pool_windows(
    firsts: &[&[f32]],
    counts: &[usize],
    further: &[f32],
    normalize: bool,
) -> Vec<Vec<f32>> {
    let dim = firsts.first().map_or(0, |f| f.len());
    let mut rows = further.chunks_exact(dim.max(1));
    firsts
        .iter()
        .zip(counts)
        .map(|(first, &n)| {
            let mut out = first.to_vec();
            for row in rows.by_ref().take(n.saturating_sub(1)) {
                out.iter_mut().zip(row).for_each(|(o, v)| *o += v);
            }
            let n = n.max(1) as f32;
            out.iter_mut().for_each(|o| *o /= n);
            if normalize {
                let norm = out.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
                out.iter_mut().for_each(|o| *o /= norm);
            }
            out
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_text_pools_its_own_windows_in_order() {
        // Text 0: one window; text 1: three (first + two further); text 2: two.
        let (a, b, c) = ([2., 0.], [0., 3.], [4., 4.]);
        let further = [3., 0., 6., 3., 0., 2.];
        let got = pool_windows(&[&a, &b, &c], &[1, 3, 2], &further, false);
        assert_eq!(got, vec![vec![2., 0.], vec![3., 2.], vec![2., 3.]]);
        let unit = pool_windows(&[&a, &b], &[1, 3], &further[..4], true);
        assert_eq!(unit[0], vec![1., 0.]);
        assert!((unit[1][0] - 0.8320503).abs() < 1e-6, "{unit:?}");
    }

    // Two rows of three tokens, dim 2; the second row keeps two tokens.
    const STATES: [f32; 12] = [1., 2., 3., 4., 5., 6., 7., 8., 9., 10., -1., -1.];
    const MASK: [i64; 6] = [1, 1, 1, 1, 1, 0];

    fn pooled(p: Pooling) -> Vec<f32> {
        pool(&STATES, &MASK, (2, 3, 2), p, false)
    }

    #[test]
    fn each_pooling_reads_only_the_tokens_the_mask_keeps() {
        assert_eq!(pooled(Pooling::Cls), vec![1., 2., 7., 8.]);
        assert_eq!(pooled(Pooling::Mean), vec![3., 4., 8., 9.]);
        assert_eq!(pooled(Pooling::Max), vec![5., 6., 9., 10.]);
        assert_eq!(pooled(Pooling::LastToken), vec![5., 6., 9., 10.]);
        let s = pooled(Pooling::MeanSqrtLen);
        let want = [
            9. / 3f32.sqrt(),
            12. / 3f32.sqrt(),
            16. / 2f32.sqrt(),
            18. / 2f32.sqrt(),
        ];
        for (a, b) in s.iter().zip(want) {
            assert!((a - b).abs() < 1e-5, "{s:?}");
        }
    }

    #[test]
    fn last_token_is_the_last_kept_not_the_last_column() {
        let states = [1., 2., 3., 4., 9., 9.];
        let got = pool(&states, &[1, 1, 0], (1, 3, 2), Pooling::LastToken, false);
        assert_eq!(got, vec![3., 4.]);
    }

    #[test]
    fn normalised_rows_have_unit_length() {
        let n = pool(&STATES, &MASK, (2, 3, 2), Pooling::Mean, true);
        for row in n.chunks(2) {
            let len: f32 = row.iter().map(|v| v * v).sum::<f32>().sqrt();
            assert!((len - 1.0).abs() < 1e-6, "{row:?}");
        }
    }
}
