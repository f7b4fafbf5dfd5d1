//! The encoder: tokenizer + runtime + pooling. Owned by one thread (see
//! [`EncoderHandle`](crate::EncoderHandle)); not shared.
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tokenizers::Tokenizer;

use crate::{
    config::{read, BertConfig, SentenceConfig},
    pool::pool,
    runtime::{self, LoadRequest, Runtime, TokenBatch},
    tokenize::{load_tokenizer, token_ids},
    BackboneInfo, BatchPolicy, Encoded, EncoderOptions, Error, Input, Result,
};

/// `inputs` prepared for the runtime with `tokenizer` (shared by the encoder and the
/// handle, which tokenizes on its caller's thread).
pub(crate) fn encode(tokenizer: &Tokenizer, inputs: &[Input]) -> Result<Vec<Encoded>> {
    let texts: Vec<&str> = inputs
        .iter()
        .map(|i| match i {
            Input::Text(t) => t.as_str(),
        })
        .collect();
    Ok(token_ids(tokenizer, &texts)?
        .into_iter()
        .map(Encoded::Tokens)
        .collect())
}

/// A batch of embeddings, one row per input text, in input order.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    dim: usize,
    data: Vec<f32>,
}

impl Embeddings {
    /// Wraps row-major data of `data.len() / dim` rows.
    pub fn new(dim: usize, data: Vec<f32>) -> Self {
        debug_assert!(dim > 0 && data.len().is_multiple_of(dim));
        Embeddings { dim, data }
    }
    /// Width of each row.
    pub fn dim(&self) -> usize {
        self.dim
    }
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.data.len() / self.dim
    }
    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }
    /// All rows, row-major.
    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }
    /// Iterates over the rows.
    pub fn rows(&self) -> impl Iterator<Item = &[f32]> {
        self.data.chunks_exact(self.dim)
    }
}

/// Tokenizer, runtime and pooling of one checkpoint folder.
pub struct Encoder {
    tokenizer: Tokenizer,
    runtime: Box<dyn Runtime>,
    sentence: SentenceConfig,
    info: BackboneInfo,
    policy: BatchPolicy,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl Encoder {
    /// Loads a checkpoint folder: `config.json`, `model.safetensors`, `tokenizer.json`,
    /// plus sentence-transformers' pooling files when present, on the runtime the
    /// options choose (see `runtime/mod.rs`).
    pub fn load(dir: &Path, options: &EncoderOptions) -> Result<Encoder> {
        if !dir.is_dir() {
            return Err(Error::MissingFolder(dir.to_owned()));
        }
        let config = BertConfig::from_file(&dir.join("config.json"))?;
        let sentence = SentenceConfig::from_dir(dir, &config)?;
        let tokenizer_path = dir.join("tokenizer.json");
        let tokenizer_bytes = read(&tokenizer_path)?;
        let tokenizer = load_tokenizer(&tokenizer_bytes, &tokenizer_path, sentence.max_seq_length)?;
        let weights_path = dir.join("model.safetensors");
        let weights_bytes = read(&weights_path)?;

        let (spec, runtime) = runtime::load(LoadRequest {
            model_dir: dir,
            config: &config,
            weights: &weights_bytes,
            weights_path: &weights_path,
            dtype: options.dtype,
            device: options.device,
            threads: options.resolved_threads(),
            options,
        })?;
        let dim = config.hidden_size as usize;
        let width = runtime.health()?;
        if width != dim {
            return Err(Error::Runtime {
                runtime: spec.name,
                message: format!("a one-token pass gave {width} values, not hidden_size {dim}"),
            });
        }
        let max_rows = runtime
            .max_batch()
            .map_or(options.batch_size, |m| m.min(options.batch_size));
        let policy = BatchPolicy::new(runtime.padding(), max_rows, options.max_pass_tokens);
        let info = BackboneInfo {
            name: model_name(dir),
            model_dir: dir.to_owned(),
            dim,
            max_seq_length: sentence.max_seq_length,
            pooling: sentence.pooling.as_str().to_owned(),
            normalize: sentence.normalize,
            fingerprint: fingerprint(&weights_bytes, &tokenizer_bytes, &sentence),
            device: options.device.to_string(),
            dtype: runtime.dtype().to_string(),
            backend: spec.name.to_owned(),
        };
        Ok(Encoder {
            tokenizer,
            runtime,
            sentence,
            info,
            policy,
        })
    }

    /// What was loaded.
    pub fn info(&self) -> &BackboneInfo {
        &self.info
    }

    /// How this encoder groups inputs into forward passes.
    pub fn batch_policy(&self) -> BatchPolicy {
        self.policy
    }

    /// The tokenizer, configured with this backbone's truncation.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Token ids of each text after truncation, special tokens included.
    pub fn tokenize(&self, texts: &[impl AsRef<str>]) -> Result<Vec<Vec<u32>>> {
        token_ids(&self.tokenizer, texts)
    }

    /// Prepares `inputs` for the runtime (tokenizes texts).
    pub fn encode(&self, inputs: &[Input]) -> Result<Vec<Encoded>> {
        encode(&self.tokenizer, inputs)
    }

    /// Embeds `texts` in the passes the batch policy plans; rows in input order.
    pub fn embed(&self, texts: &[impl AsRef<str>]) -> Result<Embeddings> {
        let encoded = self
            .tokenize(texts)?
            .into_iter()
            .map(Encoded::Tokens)
            .collect::<Vec<_>>();
        self.embed_encoded(&encoded)
    }

    /// Embeds prepared inputs (from [`Encoder::encode`]), rows in input order.
    pub fn embed_encoded(&self, encoded: &[Encoded]) -> Result<Embeddings> {
        let lens: Vec<usize> = encoded.iter().map(Encoded::len).collect();
        self.embed_passes(encoded, &self.policy.passes(&lens), &mut || {})
    }

    /// Embeds `ids` in exactly the given `passes` (from this encoder's
    /// [`BatchPolicy`]), calling `between` before each, so the model thread can run
    /// more urgent work between the passes of a long job. Rows in input order.
    pub fn embed_passes(
        &self,
        ids: &[Encoded],
        passes: &[Vec<usize>],
        between: &mut dyn FnMut(),
    ) -> Result<Embeddings> {
        let dim = self.info.dim;
        let mut out = vec![0f32; ids.len() * dim];
        let mut done = vec![false; ids.len()];
        for pass in passes {
            between();
            let mut batch = Vec::with_capacity(pass.len());
            for &i in pass {
                match (ids.get(i), done.get_mut(i)) {
                    (Some(row), Some(seen)) if !*seen => {
                        *seen = true;
                        batch.push(row.tokens());
                    }
                    _ => {
                        return Err(Error::InvalidOption(format!(
                            "pass {pass:?} names input {i} twice or out of 0..{}",
                            ids.len()
                        )))
                    }
                }
            }
            let pooled = self.forward(&batch)?;
            for (row, &i) in pass.iter().enumerate() {
                out[i * dim..(i + 1) * dim].copy_from_slice(&pooled[row * dim..(row + 1) * dim]);
            }
        }
        if let Some(i) = done.iter().position(|d| !d) {
            return Err(Error::InvalidOption(format!("no pass embeds input {i}")));
        }
        Ok(Embeddings::new(dim, out))
    }

    /// One forward pass over `batch`, laid out as the runtime wants it, pooled.
    fn forward(&self, batch: &[&[u32]]) -> Result<Vec<f32>> {
        let tokens = TokenBatch::padded(batch);
        let states = self.runtime.forward(&tokens)?;
        Ok(pool(
            &states,
            &tokens.mask,
            (tokens.rows, tokens.cols, self.info.dim),
            self.sentence.pooling,
            self.sentence.normalize,
        ))
    }
}

/// sha256 over the weights, the tokenizer and the pooling config: two backbones with
/// the same fingerprint give the same features. The dtype is left out on purpose: a
/// head trained on f32 features serves bf16 features (cosine > 0.999).
fn fingerprint(weights: &[u8], tokenizer: &[u8], sentence: &SentenceConfig) -> String {
    let mut h = Sha256::new();
    h.update(b"polyhead-backbone-v1\0");
    for part in [weights, tokenizer] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    h.update(
        format!(
            "{}|{}|{}",
            sentence.pooling.as_str(),
            sentence.normalize,
            sentence.max_seq_length
        )
        .as_bytes(),
    );
    hex::encode(&h.finalize()[..12])
}

fn model_name(dir: &Path) -> String {
    // Named as the user named the folder (models/all-MiniLM-L6-v2 is a link into the
    // model package); resolve only when that gives no name (`.`).
    let dir = match dir.file_name() {
        Some(_) => PathBuf::from(dir),
        None => dir.canonicalize().unwrap_or_else(|_| PathBuf::from(dir)),
    };
    // The model package installs its folder as `<pkg>/model`; name it by the package.
    let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("model");
    if name == "model" {
        if let Some(parent) = dir
            .parent()
            .and_then(|p| p.file_name())
            .and_then(|n| n.to_str())
        {
            return parent.to_owned();
        }
    }
    name.to_owned()
}
