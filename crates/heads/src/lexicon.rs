//! A task's own vocabulary: TF-IDF over word 1-2 grams, shared by the trainer's
//! from-scratch baseline and by hybrid heads, which must transform a request's text
//! at serving time exactly as they did in training.
//!
//! Follows scikit-learn's `TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True,
//! max_features=N)`: tokens are runs of 2+ word characters, lowercased;
//! tf = 1 + ln(count); idf = ln((1 + n) / (1 + df)) + 1; rows L2-normalised.
use std::collections::HashMap;

use crate::{Error, Result};

/// A sparse row: (term index, value), sorted by index.
pub type SparseRow = Vec<(u32, f32)>;

/// A fitted TF-IDF vectorizer.
#[derive(Debug, Clone, PartialEq)]
pub struct Lexicon {
    terms: Vec<String>,
    index: HashMap<String, u32>,
    idf: Vec<f32>,
}

/// The word 1- and 2-grams of `text`.
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

impl Lexicon {
    /// Learns the vocabulary (the `max_features` terms of highest corpus frequency,
    /// ties by term) and the idf from `texts`.
    pub fn fit(texts: &[&str], max_features: usize) -> Lexicon {
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
        let terms: Vec<String> = ranked.into_iter().map(|(t, _)| t).collect();
        Lexicon::from_parts(terms, idf).unwrap_or_else(|_| Lexicon::empty())
    }

    fn empty() -> Lexicon {
        Lexicon {
            terms: Vec::new(),
            index: HashMap::new(),
            idf: Vec::new(),
        }
    }

    /// Rebuilds a lexicon from its stored terms and idf, checking them.
    pub fn from_parts(terms: Vec<String>, idf: Vec<f32>) -> Result<Lexicon> {
        if terms.len() != idf.len() {
            return Err(Error::InvalidArtifact(format!(
                "lexicon has {} terms but {} idf values",
                terms.len(),
                idf.len()
            )));
        }
        if idf.iter().any(|v| !v.is_finite()) {
            return Err(Error::InvalidArtifact(
                "lexicon idf holds NaN or Inf".into(),
            ));
        }
        let mut index = HashMap::with_capacity(terms.len());
        for (i, t) in terms.iter().enumerate() {
            if index.insert(t.clone(), i as u32).is_some() {
                return Err(Error::InvalidArtifact(format!(
                    "lexicon term {t:?} is duplicated"
                )));
            }
        }
        Ok(Lexicon { terms, index, idf })
    }

    /// The terms, index = feature column.
    pub fn terms(&self) -> &[String] {
        &self.terms
    }

    /// The idf per term.
    pub fn idf(&self) -> &[f32] {
        &self.idf
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
            if let Some(&i) = self.index.get(&term) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tfidf_matches_sklearn_conventions() {
        let tf = Lexicon::fit(&["the cat sat", "the dog sat down"], 100);
        // unigrams of 2+ chars and bigrams
        assert!(tf.index.contains_key("cat") && tf.index.contains_key("the cat"));
        let row = tf.transform("The cat cat");
        let norm: f32 = row.iter().map(|e| e.1 * e.1).sum();
        assert!((norm - 1.0).abs() < 1e-5);
        // "cat" (count 2, df 1) outweighs "the" (count 1, df 2): sublinear tf * idf
        let get = |t: &str| {
            row.iter()
                .find(|e| e.0 == tf.index[t])
                .map(|e| e.1)
                .unwrap()
        };
        let expect = (1.0 + 2f32.ln()) * ((3.0f32 / 2.0).ln() + 1.0) / ((3.0f32 / 3.0).ln() + 1.0);
        assert!((get("cat") / get("the") - expect).abs() < 1e-4);
    }

    #[test]
    fn stored_parts_are_checked() {
        assert!(Lexicon::from_parts(vec!["a".into()], vec![]).is_err());
        assert!(Lexicon::from_parts(vec!["a".into(), "a".into()], vec![1.0, 1.0]).is_err());
        assert!(Lexicon::from_parts(vec!["a".into()], vec![f32::NAN]).is_err());
        let l = Lexicon::fit(&["alpha beta", "beta gamma"], 3);
        assert_eq!(l.len(), 3);
        assert_eq!(
            Lexicon::from_parts(l.terms().to_vec(), l.idf().to_vec()).unwrap(),
            l
        );
    }
}
