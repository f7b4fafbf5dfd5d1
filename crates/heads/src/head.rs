//! A head's forward pass, in plain Rust: heads are tiny (384 x labels, or one hidden
//! layer), so a request's head costs microseconds and the weights can be shared
//! across threads without libtorch.
use crate::prob::softmax;
use crate::{Error, HeadKind, Lexicon, Result};

/// One dense layer, `y = W x + b`, with `W` row-major (out, in) as torch stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct Dense {
    /// Weights, `out * input` values, row `o` = output unit `o`.
    pub weight: Vec<f32>,
    /// Biases, `out` values.
    pub bias: Vec<f32>,
    /// Input width.
    pub input: usize,
    /// Output width.
    pub out: usize,
}

impl Dense {
    fn apply(&self, x: &[f32], y: &mut Vec<f32>) {
        y.clear();
        y.extend(
            self.weight
                .chunks_exact(self.input)
                .zip(&self.bias)
                .map(|(w, b)| w.iter().zip(x).map(|(w, x)| w * x).sum::<f32>() + b),
        );
    }
}

/// A head ready to serve: its layers and labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Head {
    kind: HeadKind,
    layers: Vec<Dense>,
    labels: Vec<String>,
    /// Hybrid heads only: the task's lexicon, whose TF-IDF columns follow the
    /// embedding in the layer's input.
    lexicon: Option<Lexicon>,
}

impl Head {
    /// Assembles a head, checking that the layers fit the kind and the labels.
    pub fn new(kind: HeadKind, layers: Vec<Dense>, labels: Vec<String>) -> Result<Head> {
        let bad = |m: String| Err(Error::InvalidArtifact(m));
        let want = match kind {
            HeadKind::Linear => 1,
            HeadKind::Mlp { .. } => 2,
            HeadKind::Hybrid { .. } => {
                return bad("a hybrid head needs its lexicon: use Head::hybrid".into())
            }
        };
        if layers.len() != want {
            return bad(format!(
                "{} head needs {want} layer(s), has {}",
                kind.name(),
                layers.len()
            ));
        }
        for (i, l) in layers.iter().enumerate() {
            if l.weight.len() != l.input * l.out || l.bias.len() != l.out {
                return bad(format!(
                    "layer {i}: weight/bias sizes do not match ({} x {})",
                    l.out, l.input
                ));
            }
            if l.weight.iter().chain(&l.bias).any(|v| !v.is_finite()) {
                return bad(format!("layer {i} holds NaN or Inf"));
            }
            if i > 0 && layers[i - 1].out != l.input {
                return bad(format!(
                    "layer {i} input {} != layer {} output {}",
                    l.input,
                    i - 1,
                    layers[i - 1].out
                ));
            }
        }
        if let HeadKind::Mlp { hidden_dim } = kind {
            if layers[0].out != hidden_dim {
                return bad(format!(
                    "hidden layer has {} units, manifest says {hidden_dim}",
                    layers[0].out
                ));
            }
        }
        let last = layers.last().map_or(0, |l| l.out);
        if last != labels.len() {
            return bad(format!(
                "head has {last} outputs but {} labels",
                labels.len()
            ));
        }
        Ok(Head {
            kind,
            layers,
            labels,
            lexicon: None,
        })
    }

    /// A hybrid head: one layer over `[embedding ; tf-idf(text)]`, whose input is
    /// the embedding width plus the lexicon's size.
    pub fn hybrid(layer: Dense, lexicon: Lexicon, labels: Vec<String>) -> Result<Head> {
        let vocab = lexicon.len();
        if layer.input <= vocab {
            return Err(Error::InvalidArtifact(format!(
                "hybrid layer input {} leaves no room for the embedding after {vocab} terms",
                layer.input
            )));
        }
        let mut head = Head::new(HeadKind::Linear, vec![layer], labels)?;
        head.kind = HeadKind::Hybrid { vocab_size: vocab };
        head.lexicon = Some(lexicon);
        Ok(head)
    }

    /// The lexicon of a hybrid head.
    pub fn lexicon(&self) -> Option<&Lexicon> {
        self.lexicon.as_ref()
    }

    /// The architecture.
    pub fn kind(&self) -> HeadKind {
        self.kind
    }
    /// The layers, input first.
    pub fn layers(&self) -> &[Dense] {
        &self.layers
    }
    /// Class labels.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }
    /// Width of the embedding it reads.
    pub fn input_dim(&self) -> usize {
        self.layers[0].input - self.lexicon.as_ref().map_or(0, Lexicon::len)
    }

    /// Class probabilities for one text's embedding (softmax over the logits). Only
    /// hybrid heads read `text`.
    pub fn predict(&self, features: &[f32], text: &str) -> Result<Vec<f32>> {
        let dim = self.input_dim();
        if features.len() != dim {
            return Err(Error::DimMismatch {
                expected: dim,
                found: features.len(),
            });
        }
        if let Some(lexicon) = &self.lexicon {
            let layer = &self.layers[0];
            let row = lexicon.transform(text);
            let mut z: Vec<f32> = layer
                .weight
                .chunks_exact(layer.input)
                .zip(&layer.bias)
                .map(|(w, b)| {
                    let dense: f32 = w[..dim].iter().zip(features).map(|(w, x)| w * x).sum();
                    let sparse: f32 = row.iter().map(|&(j, v)| w[dim + j as usize] * v).sum();
                    dense + sparse + b
                })
                .collect();
            softmax(&mut z);
            return Ok(z);
        }
        let mut x = features.to_vec();
        let mut y = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            layer.apply(&x, &mut y);
            if i + 1 < self.layers.len() {
                y.iter_mut().for_each(|v| *v = v.max(0.0));
            }
            std::mem::swap(&mut x, &mut y);
        }
        softmax(&mut x);
        Ok(x)
    }

    /// Class probabilities for each row of a row-major batch and its text.
    pub fn predict_batch(&self, rows: &[f32], texts: &[impl AsRef<str>]) -> Result<Vec<Vec<f32>>> {
        let dim = self.input_dim();
        if !rows.len().is_multiple_of(dim) || rows.len() / dim != texts.len() {
            return Err(Error::DimMismatch {
                expected: dim * texts.len(),
                found: rows.len(),
            });
        }
        rows.chunks_exact(dim)
            .zip(texts)
            .map(|(r, t)| self.predict(r, t.as_ref()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn linear() -> Head {
        let d = Dense {
            weight: vec![1.0, 0.0, 0.0, 1.0],
            bias: vec![0.0, 0.5],
            input: 2,
            out: 2,
        };
        Head::new(HeadKind::Linear, vec![d], vec!["a".into(), "b".into()]).unwrap()
    }

    #[test]
    fn probabilities_sum_to_one_and_follow_logits() {
        let p = linear().predict(&[2.0, 0.0], "").unwrap();
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        // logits (2.0, 0.5): p0 = 1 / (1 + e^-1.5)
        assert!((p[0] - 1.0 / (1.0 + (-1.5f32).exp())).abs() < 1e-6);
    }

    #[test]
    fn mlp_applies_relu_between_layers() {
        let hidden = Dense {
            weight: vec![1.0, -1.0],
            bias: vec![0.0, 0.0],
            input: 1,
            out: 2,
        };
        let out = Dense {
            weight: vec![1.0, 1.0, 0.0, 0.0],
            bias: vec![0.0, 0.0],
            input: 2,
            out: 2,
        };
        let h = Head::new(
            HeadKind::Mlp { hidden_dim: 2 },
            vec![hidden, out],
            vec!["x".into(), "y".into()],
        )
        .unwrap();
        // x = -3: hidden (-3, 3) -> relu (0, 3) -> logits (3, 0)
        let p = h.predict(&[-3.0], "").unwrap();
        assert!(p[0] > 0.95, "{p:?}");
    }

    #[test]
    fn wrong_width_is_an_error() {
        assert!(matches!(
            linear().predict(&[1.0], ""),
            Err(Error::DimMismatch {
                expected: 2,
                found: 1
            })
        ));
    }

    #[test]
    fn hybrid_reads_the_text_through_its_lexicon() {
        let lexicon = Lexicon::fit(&["free money", "team meeting"], 10);
        let col = |t: &str| lexicon.terms().iter().position(|x| x == t).unwrap();
        // 1 embedding column + 6 terms (two words and their bigram per text);
        // "free" votes for label 1.
        assert_eq!(lexicon.len(), 6);
        let mut weight = vec![0.0; 2 * 7];
        weight[7 + 1 + col("free")] = 5.0;
        let d = Dense {
            weight,
            bias: vec![0.0, 0.0],
            input: 7,
            out: 2,
        };
        let h = Head::hybrid(d, lexicon, vec!["ham".into(), "spam".into()]).unwrap();
        assert_eq!(h.input_dim(), 1);
        assert!(h.predict(&[0.0], "FREE stuff").unwrap()[1] > 0.9);
        assert!((h.predict(&[0.0], "nothing known").unwrap()[1] - 0.5).abs() < 1e-6);
        assert_eq!(h.kind(), HeadKind::Hybrid { vocab_size: 6 });
    }

    #[test]
    fn nan_weights_are_refused() {
        let d = Dense {
            weight: vec![f32::NAN, 0.0],
            bias: vec![0.0],
            input: 2,
            out: 1,
        };
        let err = Head::new(HeadKind::Linear, vec![d], vec!["a".into()]).unwrap_err();
        assert!(err.to_string().contains("NaN"), "{err}");
    }
}
