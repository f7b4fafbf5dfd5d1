//! The from-scratch baseline: TF-IDF over word 1-2 grams with sublinear tf, then the
//! same softmax regression as the linear head (AdamW, class weights, early stopping
//! on validation loss, same hyper-parameters), trained on the same examples.
//!
//! TF-IDF follows scikit-learn's `TfidfVectorizer(ngram_range=(1, 2),
//! sublinear_tf=True, max_features=N)`: tokens are runs of 2+ word characters,
//! lowercased; tf = 1 + ln(count); idf = ln((1 + n) / (1 + df)) + 1; rows L2-normalised.
//! Weights are sparse-input, dense-parameter, so the vocabulary is capped.
use std::collections::HashMap;

use rand::{rngs::StdRng, seq::SliceRandom, SeedableRng};

use crate::{metrics::evaluate, train::class_weights, Budget, Result, TrainOptions};
use polyhead_heads::Metrics;

/// A sparse row: (feature index, value), sorted by index.
type SparseRow = Vec<(u32, f32)>;

/// A fitted TF-IDF vectorizer.
#[derive(Debug, Clone)]
pub struct Tfidf {
    vocab: HashMap<String, u32>,
    idf: Vec<f32>,
}

fn terms(text: &str) -> Vec<String> {
    let lower = text.to_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| w.chars().count() >= 2)
        .collect();
    let mut out: Vec<String> = words.iter().map(|w| (*w).to_owned()).collect();
    out.extend(words.windows(2).map(|w| format!("{} {}", w[0], w[1])));
    out
}

impl Tfidf {
    /// Learns the vocabulary (the `max_features` terms of highest corpus frequency,
    /// ties by term) and the idf from `texts`.
    pub fn fit(texts: &[&str], max_features: usize) -> Tfidf {
        let mut df: HashMap<String, (u32, u64)> = HashMap::new();
        for t in texts {
            let mut seen: HashMap<String, u64> = HashMap::new();
            for term in terms(t) {
                *seen.entry(term).or_default() += 1;
            }
            for (term, count) in seen {
                let e = df.entry(term).or_default();
                e.0 += 1;
                e.1 += count;
            }
        }
        let mut ranked: Vec<(String, (u32, u64))> = df.into_iter().collect();
        ranked.sort_by(|a, b| b.1 .1.cmp(&a.1 .1).then_with(|| a.0.cmp(&b.0)));
        ranked.truncate(max_features);
        ranked.sort_by(|a, b| a.0.cmp(&b.0));
        let n = texts.len() as f32;
        let idf = ranked
            .iter()
            .map(|(_, (d, _))| ((1.0 + n) / (1.0 + *d as f32)).ln() + 1.0)
            .collect();
        let vocab = ranked
            .into_iter()
            .enumerate()
            .map(|(i, (t, _))| (t, i as u32))
            .collect();
        Tfidf { vocab, idf }
    }

    /// Vocabulary size.
    pub fn len(&self) -> usize {
        self.idf.len()
    }

    /// True for an empty vocabulary.
    pub fn is_empty(&self) -> bool {
        self.idf.is_empty()
    }

    /// The L2-normalised TF-IDF row of `text`.
    pub fn transform(&self, text: &str) -> SparseRow {
        let mut counts: HashMap<u32, u32> = HashMap::new();
        for term in terms(text) {
            if let Some(&i) = self.vocab.get(&term) {
                *counts.entry(i).or_default() += 1;
            }
        }
        let mut row: SparseRow = counts
            .into_iter()
            .map(|(i, c)| (i, (1.0 + (c as f32).ln()) * self.idf[i as usize]))
            .collect();
        row.sort_unstable_by_key(|e| e.0);
        let norm = row.iter().map(|e| e.1 * e.1).sum::<f32>().sqrt();
        if norm > 0.0 {
            row.iter_mut().for_each(|e| e.1 /= norm);
        }
        row
    }
}

/// Softmax regression over sparse rows. Parameters are one dense vector: weights
/// `p[c * dim + j]`, then biases `p[classes * dim + c]`.
#[derive(Debug, Clone)]
struct Softmax {
    p: Vec<f32>,
    dim: usize,
    classes: usize,
}

impl Softmax {
    fn probs(&self, x: &SparseRow) -> Vec<f32> {
        let bias = self.classes * self.dim;
        let mut z: Vec<f32> = (0..self.classes)
            .map(|c| {
                self.p[bias + c]
                    + x.iter()
                        .map(|&(j, v)| self.p[c * self.dim + j as usize] * v)
                        .sum::<f32>()
            })
            .collect();
        let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let sum: f32 = z
            .iter_mut()
            .map(|v| {
                *v = (*v - max).exp();
                *v
            })
            .sum();
        z.iter_mut().for_each(|v| *v /= sum);
        z
    }

    fn loss(&self, xs: &[SparseRow], ys: &[usize]) -> f64 {
        let total: f64 = xs
            .iter()
            .zip(ys)
            .map(|(x, &y)| -f64::from(self.probs(x)[y].max(1e-12)).ln())
            .sum();
        total / xs.len().max(1) as f64
    }

    fn predict(&self, xs: &[SparseRow]) -> Vec<usize> {
        xs.iter()
            .map(|x| {
                self.probs(x)
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map_or(0, |(i, _)| i)
            })
            .collect()
    }
}

/// AdamW state (Loshchilov & Hutter; torch.optim.AdamW's update with bias correction).
struct AdamW {
    m: Vec<f32>,
    v: Vec<f32>,
    t: i32,
}

impl AdamW {
    fn step(&mut self, params: &mut [f32], grads: &[f32], lr: f32, wd: f32) {
        const B1: f32 = 0.9;
        const B2: f32 = 0.999;
        self.t += 1;
        let (c1, c2) = (1.0 - B1.powi(self.t), 1.0 - B2.powi(self.t));
        for i in 0..params.len() {
            params[i] *= 1.0 - lr * wd;
            self.m[i] = B1 * self.m[i] + (1.0 - B1) * grads[i];
            self.v[i] = B2 * self.v[i] + (1.0 - B2) * grads[i] * grads[i];
            params[i] -= lr * (self.m[i] / c1) / ((self.v[i] / c2).sqrt() + 1e-8);
        }
    }
}

/// Fits TF-IDF + softmax regression on the training texts, early-stopping on the
/// validation texts, and returns the fitted pieces.
pub struct Baseline {
    tfidf: Tfidf,
    model: Softmax,
}

impl Baseline {
    /// Trains on `(texts, labels)` with `valid` for early stopping.
    pub fn train(
        train: (&[&str], &[usize]),
        valid: (&[&str], &[usize]),
        classes: usize,
        o: &TrainOptions,
        budget: &Budget,
    ) -> Result<Baseline> {
        let tfidf = Tfidf::fit(train.0, o.baseline_max_features);
        let xt: Vec<SparseRow> = train.0.iter().map(|t| tfidf.transform(t)).collect();
        let xv: Vec<SparseRow> = valid.0.iter().map(|t| tfidf.transform(t)).collect();
        let dim = tfidf.len().max(1);
        let n_params = classes * dim + classes;
        let mut model = Softmax {
            p: vec![0.0; n_params],
            dim,
            classes,
        };
        let mut opt = AdamW {
            m: vec![0.0; n_params],
            v: vec![0.0; n_params],
            t: 0,
        };
        let weights = class_weights(train.1, classes, o.class_weighting);
        let mut rng = StdRng::seed_from_u64(o.seed);
        let mut order: Vec<usize> = (0..xt.len()).collect();
        let (mut best, mut best_model, mut stale) = (f64::INFINITY, model.clone(), 0);
        let mut grads = vec![0f32; n_params];
        let mut total_steps = 0;
        for _ in 0..o.max_epochs {
            order.shuffle(&mut rng);
            for batch in order.chunks(o.batch_size) {
                if total_steps % 16 == 0 {
                    budget.check()?;
                }
                grads.iter_mut().for_each(|g| *g = 0.0);
                // Weighted mean cross-entropy, as torch's CrossEntropyLoss(weight=...).
                let wsum: f32 = batch.iter().map(|&i| weights[train.1[i]]).sum();
                for &i in batch {
                    let (x, y) = (&xt[i], train.1[i]);
                    let p = model.probs(x);
                    let scale = weights[y] / wsum;
                    for c in 0..classes {
                        let g = (p[c] - f32::from(u8::from(c == y))) * scale;
                        for &(j, v) in x {
                            grads[c * dim + j as usize] += g * v;
                        }
                        grads[classes * dim + c] += g;
                    }
                }
                opt.step(
                    &mut model.p,
                    &grads,
                    o.learning_rate as f32,
                    o.weight_decay as f32,
                );
                total_steps += 1;
            }
            let loss = if xv.is_empty() {
                model.loss(&xt, train.1)
            } else {
                model.loss(&xv, valid.1)
            };
            if loss < best - 1e-6 {
                (best, best_model, stale) = (loss, model.clone(), 0);
            } else {
                stale += 1;
                if stale >= o.patience && total_steps >= o.min_steps {
                    break;
                }
            }
        }
        Ok(Baseline {
            tfidf,
            model: best_model,
        })
    }

    /// Metrics on labelled texts.
    pub fn evaluate(&self, labels: &[String], texts: &[&str], truth: &[usize]) -> Metrics {
        let xs: Vec<SparseRow> = texts.iter().map(|t| self.tfidf.transform(t)).collect();
        evaluate(labels, truth, &self.model.predict(&xs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tfidf_matches_sklearn_conventions() {
        let tf = Tfidf::fit(&["the cat sat", "the dog sat down"], 100);
        // unigrams of 2+ chars and bigrams
        assert!(tf.vocab.contains_key("cat") && tf.vocab.contains_key("the cat"));
        let row = tf.transform("The cat cat");
        let norm: f32 = row.iter().map(|e| e.1 * e.1).sum();
        assert!((norm - 1.0).abs() < 1e-5);
        // "cat" (count 2, df 1) outweighs "the" (count 1, df 2): sublinear tf * idf
        let get = |t: &str| {
            row.iter()
                .find(|e| e.0 == tf.vocab[t])
                .map(|e| e.1)
                .unwrap()
        };
        let expect = (1.0 + 2f32.ln()) * ((3.0f32 / 2.0).ln() + 1.0) / ((3.0f32 / 3.0).ln() + 1.0);
        assert!((get("cat") / get("the") - expect).abs() < 1e-4);
    }

    #[test]
    fn learns_a_separable_problem() {
        let texts = [
            "cheap pills now",
            "buy cheap pills",
            "meeting at noon",
            "lunch meeting today",
        ];
        let labels = [1, 1, 0, 0];
        let names = vec!["ham".to_string(), "spam".to_string()];
        let o = TrainOptions {
            max_epochs: 50,
            ..Default::default()
        };
        let b = Baseline::train(
            (&texts, &labels),
            (&texts, &labels),
            2,
            &o,
            &Budget::unlimited(),
        )
        .unwrap();
        let m = b.evaluate(&names, &["cheap pills", "noon meeting"], &[1, 0]);
        assert_eq!(m.accuracy, 1.0);
    }
}
