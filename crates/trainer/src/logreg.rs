//! Multinomial logistic regression with an L2 penalty, fitted to convergence by
//! L-BFGS in plain Rust: the linear head, the lexical part of the hybrid head and
//! the TF-IDF baseline are all this one model.
//!
//! The objective is scikit-learn's `LogisticRegression(C=c)` divided by `c * n`:
//! `mean_i w_i * CE(x_i, y_i) + ||W||^2 / (2 c n)` (the intercept is not
//! penalised), so `c` means what it means there. L-BFGS (Nocedal & Wright,
//! Numerical Optimization, algorithm 7.4, memory 10) with a backtracking Armijo line
//! search; stops when the largest gradient entry is below 1e-5 or after 300
//! iterations.
use polyhead_heads::softmax;
use polyhead_heads::SparseRow;

use crate::{Budget, Result};

/// The rows a model sees: a dense block (the embedding, `dim` wide, may be empty)
/// followed by a sparse block (TF-IDF, `vocab` wide, scaled by `alpha`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Design<'a> {
    pub dense: &'a [f32],
    pub dim: usize,
    pub sparse: &'a [SparseRow],
    pub vocab: usize,
    pub alpha: f32,
}

impl Design<'_> {
    fn width(&self) -> usize {
        self.dim + self.vocab
    }

    /// Logits of row `i` under weights `w` (classes x width) and biases `b`.
    fn logits(&self, w: &[f64], b: &[f64], i: usize, z: &mut [f64]) {
        let width = self.width();
        let x = &self.dense[i * self.dim..(i + 1) * self.dim];
        let s = if self.vocab > 0 {
            &self.sparse[i][..]
        } else {
            &[]
        };
        for (c, zc) in z.iter_mut().enumerate() {
            let row = &w[c * width..(c + 1) * width];
            let dense: f64 = row[..self.dim]
                .iter()
                .zip(x)
                .map(|(w, x)| w * f64::from(*x))
                .sum();
            let sparse: f64 = s
                .iter()
                .map(|&(j, v)| row[self.dim + j as usize] * f64::from(v * self.alpha))
                .sum();
            *zc = b[c] + dense + sparse;
        }
    }
}

/// A fitted model.
#[derive(Debug, Clone)]
pub(crate) struct Fit {
    /// classes x width, row-major.
    pub w: Vec<f64>,
    pub b: Vec<f64>,
    pub classes: usize,
    /// L-BFGS iterations run.
    pub iterations: usize,
}

impl Fit {
    /// Class probabilities of row `i` of `x`.
    pub fn probs(&self, x: &Design<'_>, i: usize) -> Vec<f64> {
        let mut z = vec![0.0; self.classes];
        x.logits(&self.w, &self.b, i, &mut z);
        softmax(&mut z);
        z
    }
}

/// One fitting problem: rows `idx` of `x`, labels `y` (indexed like `x`'s rows),
/// per-class loss weights, the number of classes and the inverse penalty `c`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Problem<'a> {
    pub x: &'a Design<'a>,
    pub idx: &'a [usize],
    pub y: &'a [usize],
    pub weights: &'a [f32],
    pub classes: usize,
    pub c: f64,
}

/// Objective and gradient at `theta` = weights then biases.
fn objective(p: &Problem<'_>, theta: &[f64], grad: &mut [f64]) -> f64 {
    let Problem {
        x,
        idx,
        y,
        weights,
        classes,
        c,
    } = *p;
    let width = x.width();
    let (w, b) = theta.split_at(classes * width);
    grad.iter_mut().for_each(|g| *g = 0.0);
    let n = idx.len() as f64;
    let mut loss = 0.0;
    let mut z = vec![0.0; classes];
    for &i in idx {
        x.logits(w, b, i, &mut z);
        softmax(&mut z);
        let wi = f64::from(weights[y[i]]) / n;
        loss -= wi * z[y[i]].max(1e-300).ln();
        let xd = &x.dense[i * x.dim..(i + 1) * x.dim];
        let s = if x.vocab > 0 { &x.sparse[i][..] } else { &[] };
        for (k, &p) in z.iter().enumerate() {
            let g = wi * (p - f64::from(u8::from(k == y[i])));
            if g == 0.0 {
                continue;
            }
            let row = &mut grad[k * width..(k + 1) * width];
            for (gr, xv) in row[..x.dim].iter_mut().zip(xd) {
                *gr += g * f64::from(*xv);
            }
            for &(j, v) in s {
                row[x.dim + j as usize] += g * f64::from(v * x.alpha);
            }
            grad[classes * width + k] += g;
        }
    }
    let reg = 1.0 / (c * n);
    for (g, wv) in grad[..classes * width].iter_mut().zip(w) {
        *g += reg * wv;
    }
    loss + 0.5 * reg * w.iter().map(|v| v * v).sum::<f64>()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Fits the model to `p`, checking `budget` every iteration.
pub(crate) fn fit(p: &Problem<'_>, budget: &Budget) -> Result<Fit> {
    const MEMORY: usize = 10;
    const MAX_ITER: usize = 300;
    let (x, classes) = (p.x, p.classes);
    let dim = classes * x.width() + classes;
    let mut theta = vec![0.0; dim];
    let mut grad = vec![0.0; dim];
    let mut f = objective(p, &theta, &mut grad);
    let mut history: Vec<(Vec<f64>, Vec<f64>, f64)> = Vec::new();
    let mut iterations = 0;
    let mut next_grad = vec![0.0; dim];
    while iterations < MAX_ITER {
        if grad.iter().fold(0.0f64, |m, g| m.max(g.abs())) < 1e-5 {
            break;
        }
        budget.check()?;
        iterations += 1;
        // Two-loop recursion: d = -H g.
        let mut q = grad.clone();
        let mut alphas = Vec::with_capacity(history.len());
        for (s, yv, rho) in history.iter().rev() {
            let a = rho * dot(s, &q);
            q.iter_mut().zip(yv).for_each(|(qi, yi)| *qi -= a * yi);
            alphas.push(a);
        }
        let gamma = history
            .last()
            .map_or(1.0 / dot(&grad, &grad).sqrt().max(1e-12), |(s, yv, _)| {
                dot(s, yv) / dot(yv, yv)
            });
        q.iter_mut().for_each(|v| *v *= gamma);
        for ((s, yv, rho), a) in history.iter().zip(alphas.iter().rev()) {
            let beta = rho * dot(yv, &q);
            q.iter_mut()
                .zip(s)
                .for_each(|(qi, si)| *qi += (a - beta) * si);
        }
        let direction: Vec<f64> = q.iter().map(|v| -v).collect();
        let slope = dot(&grad, &direction);
        if slope >= 0.0 {
            history.clear(); // not a descent direction: restart from the gradient
            continue;
        }
        // Backtracking Armijo line search.
        let mut step = 1.0;
        let (mut next, mut f_next);
        loop {
            next = theta
                .iter()
                .zip(&direction)
                .map(|(t, d)| t + step * d)
                .collect::<Vec<_>>();
            f_next = objective(p, &next, &mut next_grad);
            if f_next <= f + 1e-4 * step * slope || step < 1e-10 {
                break;
            }
            step *= 0.5;
        }
        let s: Vec<f64> = next.iter().zip(&theta).map(|(a, b)| a - b).collect();
        let yv: Vec<f64> = next_grad.iter().zip(&grad).map(|(a, b)| a - b).collect();
        let sy = dot(&s, &yv);
        let decrease = f - f_next;
        theta = next;
        std::mem::swap(&mut grad, &mut next_grad);
        f = f_next;
        if sy > 1e-12 {
            if history.len() == MEMORY {
                history.remove(0);
            }
            history.push((s, yv, 1.0 / sy));
        }
        if decrease.abs() <= 1e-12 * f.abs().max(1.0) {
            break;
        }
    }
    let b = theta.split_off(classes * x.width());
    Ok(Fit {
        w: theta,
        b,
        classes,
        iterations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two separable blobs in 2-D: the fit separates them, a stronger penalty
    /// (smaller C) gives smaller weights, and the gradient at the end is ~0.
    #[test]
    fn converges_and_the_penalty_shrinks_weights() {
        let dense: Vec<f32> = vec![1.0, 0.1, 0.9, -0.1, -1.0, 0.0, -0.8, 0.2];
        let y = vec![0, 0, 1, 1];
        let x = Design {
            dense: &dense,
            dim: 2,
            sparse: &[],
            vocab: 0,
            alpha: 1.0,
        };
        let idx = [0, 1, 2, 3];
        let ones = [1.0, 1.0];
        let problem = |c| Problem {
            x: &x,
            idx: &idx,
            y: &y,
            weights: &ones,
            classes: 2,
            c,
        };
        let strong = fit(&problem(0.01), &Budget::unlimited()).unwrap();
        let weak = fit(&problem(100.0), &Budget::unlimited()).unwrap();
        for i in 0..4 {
            let p = weak.probs(&x, i);
            assert!(p[y[i]] > 0.9, "{i}: {p:?}");
        }
        let norm = |f: &Fit| f.w.iter().map(|v| v * v).sum::<f64>();
        assert!(norm(&strong) < norm(&weak));
        let mut theta = weak.w.clone();
        theta.extend(&weak.b);
        let mut g = vec![0.0; theta.len()];
        objective(&problem(100.0), &theta, &mut g);
        assert!(g.iter().all(|v| v.abs() < 1e-4), "{g:?}");
    }

    #[test]
    fn sparse_columns_count_scaled_by_alpha() {
        let rows: Vec<SparseRow> = vec![vec![(0, 1.0)], vec![(1, 1.0)]];
        let x = Design {
            dense: &[],
            dim: 0,
            sparse: &rows,
            vocab: 2,
            alpha: 2.0,
        };
        let p = Problem {
            x: &x,
            idx: &[0, 1],
            y: &[0, 1],
            weights: &[1.0, 1.0],
            classes: 2,
            c: 10.0,
        };
        let f = fit(&p, &Budget::unlimited()).unwrap();
        assert!(f.probs(&x, 0)[0] > 0.8 && f.probs(&x, 1)[1] > 0.8);
    }
}
