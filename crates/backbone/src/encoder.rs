//! The encoder: tokenizer + model + pooling. Owned by one thread (see
//! [`EncoderHandle`](crate::EncoderHandle)); not shared.
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tch::{nn::VarStore, Kind, Tensor};
use tokenizers::Tokenizer;

use crate::{
    bert::Bert,
    config::{read, BertConfig, Pooling, SentenceConfig},
    onnx::OnnxModel,
    ov::OvModel,
    plan::{choose, Plan},
    tokenize::{load_tokenizer, token_ids},
    weights, BackboneInfo, Backend, EncoderOptions, Error, Result,
};

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

/// What runs the transformer.
enum Model {
    Torch {
        bert: Box<Bert>,
        // Keeps the weights alive; the model's modules hold views into it.
        _vs: VarStore,
        device: tch::Device,
    },
    Onnx(OnnxModel),
    OpenVino(OvModel),
}

/// Tokenizer, BERT model and pooling of one checkpoint folder.
pub struct Encoder {
    tokenizer: Tokenizer,
    model: Model,
    sentence: SentenceConfig,
    info: BackboneInfo,
    batch_size: usize,
    max_pass_tokens: usize,
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
    /// plus sentence-transformers' pooling files when present.
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

        let (mut dtype, plan) = choose(dir, options, &weights_bytes)?;
        let threads = options.resolved_threads();
        let hidden = config.hidden_size as usize;
        let (model, backend) = match plan {
            Plan::Onnx(export) => {
                let m = OnnxModel::load(&export, threads, hidden)?;
                (Model::Onnx(m), Backend::OnnxRuntime)
            }
            Plan::OpenVino(export) => {
                let m = OvModel::load(&export, dtype, threads, hidden)?;
                if m.precision != dtype {
                    tracing::warn!(
                        asked = %dtype,
                        running = %m.precision,
                        "OpenVINO runs another precision on this CPU (bf16 needs AMX or AVX512-BF16)"
                    );
                    dtype = m.precision;
                }
                (Model::OpenVino(m), Backend::OpenVino)
            }
            Plan::Torch => {
                let device = options.device.to_tch()?;
                let mut vs = VarStore::new(device);
                let prefix = weights::detect_prefix(&weights_bytes, &weights_path)?;
                let root = match prefix {
                    "" => vs.root(),
                    p => vs.root() / p.trim_end_matches('.'),
                };
                let bert = Bert::new(root, &config);
                weights::load_strict(&vs, &weights_bytes, &weights_path)?;
                vs.set_kind(dtype.kind());
                vs.freeze();
                let model = Model::Torch {
                    bert: Box::new(bert),
                    _vs: vs,
                    device,
                };
                (model, Backend::Torch)
            }
        };

        let fingerprint = fingerprint(&weights_bytes, &tokenizer_bytes, &sentence);
        let info = BackboneInfo {
            name: model_name(dir),
            model_dir: dir.to_owned(),
            dim: config.hidden_size as usize,
            max_seq_length: sentence.max_seq_length,
            pooling: sentence.pooling.as_str().to_owned(),
            normalize: sentence.normalize,
            fingerprint,
            device: options.device.to_string(),
            dtype: dtype.to_string(),
            backend: backend.to_string(),
        };
        Ok(Encoder {
            tokenizer,
            model,
            sentence,
            info,
            batch_size: options.batch_size,
            max_pass_tokens: options.max_pass_tokens,
        })
    }

    /// What was loaded.
    pub fn info(&self) -> &BackboneInfo {
        &self.info
    }

    /// The tokenizer, configured with this backbone's truncation.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Token ids of each text after truncation, special tokens included.
    pub fn tokenize(&self, texts: &[impl AsRef<str>]) -> Result<Vec<Vec<u32>>> {
        token_ids(&self.tokenizer, texts)
    }

    /// Embeds `texts`: sorts by length so each batch pads little, runs batches of at
    /// most `batch_size`, and returns rows in input order.
    pub fn embed(&self, texts: &[impl AsRef<str>]) -> Result<Embeddings> {
        let ids = self.tokenize(texts)?;
        self.embed_ids(&ids)
    }

    /// Embeds pre-tokenized inputs (from [`Encoder::tokenize`]), rows in input order.
    pub fn embed_ids(&self, ids: &[Vec<u32>]) -> Result<Embeddings> {
        self.embed_ids_between(ids, &mut || {})
    }

    /// [`Encoder::embed_ids`] that calls `between` before each forward pass, so the
    /// model thread can run more urgent work between the batches of a long job.
    pub fn embed_ids_between(
        &self,
        ids: &[Vec<u32>],
        between: &mut dyn FnMut(),
    ) -> Result<Embeddings> {
        let dim = self.info.dim;
        let mut out = vec![0f32; ids.len() * dim];
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(ids[i].len()));
        let lens: Vec<usize> = order.iter().map(|&i| ids[i].len()).collect();
        for range in chunk_by_padding(&lens, self.batch_size, self.max_pass_tokens) {
            let chunk = &order[range];
            between();
            let batch: Vec<&[u32]> = chunk.iter().map(|&i| ids[i].as_slice()).collect();
            let pooled = self.forward(&batch)?;
            for (row, &i) in chunk.iter().enumerate() {
                out[i * dim..(i + 1) * dim].copy_from_slice(&pooled[row * dim..(row + 1) * dim]);
            }
        }
        Ok(Embeddings::new(dim, out))
    }

    /// One forward pass over a batch, padded to its longest input. Returns the pooled
    /// rows (f32, row-major).
    fn forward(&self, batch: &[&[u32]]) -> Result<Vec<f32>> {
        let longest = batch.iter().map(|ids| ids.len()).max().unwrap_or(0).max(1);
        let mut input = vec![0i64; batch.len() * longest];
        let mut mask = vec![0i64; batch.len() * longest];
        for (r, ids) in batch.iter().enumerate() {
            for (c, &id) in ids.iter().enumerate() {
                input[r * longest + c] = i64::from(id);
                mask[r * longest + c] = 1;
            }
        }
        let rows = batch.len();
        let states = match &self.model {
            Model::Torch { bert, device, .. } => {
                return self.forward_torch(bert, *device, &input, &mask, [rows, longest])
            }
            Model::Onnx(m) => m.hidden_states(input, mask.clone(), rows, longest)?,
            Model::OpenVino(m) => m.hidden_states(&input, &mask, rows, longest)?,
        };
        Ok(pool_rows(
            &states,
            &mask,
            (rows, longest, self.info.dim),
            self.sentence.pooling,
            self.sentence.normalize,
        ))
    }

    /// [`Encoder::forward`] on libtorch: pooling and normalisation as tensor ops.
    fn forward_torch(
        &self,
        bert: &Bert,
        device: tch::Device,
        input: &[i64],
        mask: &[i64],
        [rows, longest]: [usize; 2],
    ) -> Result<Vec<f32>> {
        let shape = [rows as i64, longest as i64];
        let input = Tensor::from_slice(input).view(shape).to_device(device);
        let mask = Tensor::from_slice(mask).view(shape).to_device(device);
        let pooled = tch::no_grad(|| {
            let states = bert.forward(&input, &mask).to_kind(Kind::Float);
            let pooled = pool(&states, &mask, self.sentence.pooling);
            if self.sentence.normalize {
                // torch.nn.functional.normalize: x / max(||x||_2, 1e-12).
                let norm = pooled.norm_scalaropt_dim(2, [1], true).clamp_min(1e-12);
                pooled / norm
            } else {
                pooled
            }
        });
        let pooled = pooled.to_device(tch::Device::Cpu).contiguous();
        Ok(Vec::<f32>::try_from(pooled.view([-1]))?)
    }
}

/// Most padding a forward pass may carry, as a share of its real tokens, before the
/// next (shorter) text starts a new pass instead.
const MAX_PADDING: f64 = 0.2;

/// Splits texts of descending lengths `lens` into consecutive forward passes of at
/// most `batch_size` rows and `max_tokens` padded tokens (a longer text runs alone),
/// starting a new pass when the next text would bring the pass's
/// padded size (rows x its longest) above (1 + MAX_PADDING) x its real tokens. A
/// server batch of 32 texts taken in arrival order pads to ~1.7x its real tokens in
/// one pass (33-token texts, a few of 60-130); split this way, ~1.15x.
fn chunk_by_padding(
    lens: &[usize],
    batch_size: usize,
    max_tokens: usize,
) -> Vec<std::ops::Range<usize>> {
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut real = 0usize;
    for (i, &len) in lens.iter().enumerate() {
        let rows = i - start;
        let longest = lens.get(start).copied().unwrap_or(len).max(1);
        let padded = (rows + 1) * longest;
        let too_wide = padded as f64 > (1.0 + MAX_PADDING) * (real + len).max(1) as f64;
        let too_many = padded > max_tokens;
        if rows > 0 && (rows == batch_size || too_wide || too_many) {
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

/// Pools (batch, seq, hidden) f32 states into (batch, hidden), as sentence-transformers'
/// `Pooling` module does.
fn pool(states: &Tensor, mask: &Tensor, pooling: Pooling) -> Tensor {
    let m = mask.unsqueeze(-1).to_kind(Kind::Float);
    match pooling {
        Pooling::Cls => states.select(1, 0),
        Pooling::Mean => {
            (states * &m).sum_dim_intlist([1i64].as_slice(), false, Kind::Float)
                / m.sum_dim_intlist([1i64].as_slice(), false, Kind::Float)
                    .clamp_min(1e-9)
        }
        Pooling::MeanSqrtLen => {
            (states * &m).sum_dim_intlist([1i64].as_slice(), false, Kind::Float)
                / m.sum_dim_intlist([1i64].as_slice(), false, Kind::Float)
                    .clamp_min(1e-9)
                    .sqrt()
        }
        Pooling::Max => states.masked_fill(&m.eq(0.0), -1e9).amax([1], false),
    }
}

/// [`pool`] and the normalisation after it, on plain row-major f32 states of shape
/// `(rows, cols, dim)` with a 0/1 `mask` of `(rows, cols)`: the ONNX Runtime path.
fn pool_rows(
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

#[cfg(test)]
mod tests {
    use super::*;

    fn padded_over_real(lens: &[usize], chunks: &[std::ops::Range<usize>]) -> f64 {
        let padded: usize = chunks.iter().map(|r| r.len() * lens[r.start]).sum();
        padded as f64 / lens.iter().sum::<usize>() as f64
    }

    #[test]
    fn chunks_cover_every_text_once_in_order_within_batch_size() {
        for (lens, batch) in [
            (vec![40; 70], 32),
            (vec![130, 60, 40, 39, 38, 35, 33, 33, 30, 20, 12, 9], 4),
            (vec![256, 5, 5, 5, 5, 5], 32),
            (vec![7], 1),
            (vec![], 8),
        ] {
            let chunks = chunk_by_padding(&lens, batch, usize::MAX);
            let flat: Vec<usize> = chunks.iter().flat_map(|r| r.clone()).collect();
            assert_eq!(flat, (0..lens.len()).collect::<Vec<_>>(), "{lens:?}");
            assert!(chunks.iter().all(|r| !r.is_empty() && r.len() <= batch));
        }
        // Equal lengths: full batches, no padding.
        let c = chunk_by_padding(&[40; 70], 32, usize::MAX);
        assert_eq!(c, vec![0..32, 32..64, 64..70]);
        // A long text does not make the short ones pad to its length.
        let lens = [256, 5, 5, 5, 5, 5];
        let c = chunk_by_padding(&lens, 32, usize::MAX);
        assert_eq!(c, vec![0..1, 1..6]);
        assert!((padded_over_real(&lens, &c) - 1.0).abs() < 1e-9);
    }

    #[test]
    fn no_pass_holds_more_than_max_tokens_unless_one_text_does() {
        let lens = [256, 256, 256, 200, 130, 90, 40, 40, 40, 40, 12, 9, 5];
        for max in [1, 100, 256, 512, 1000, 2048] {
            let c = chunk_by_padding(&lens, 32, max);
            let flat: Vec<usize> = c.iter().flat_map(|r| r.clone()).collect();
            assert_eq!(flat, (0..lens.len()).collect::<Vec<_>>());
            for r in &c {
                let padded = r.len() * lens[r.start];
                assert!(
                    padded <= max || r.len() == 1,
                    "{max}: {r:?} pads to {padded}"
                );
            }
        }
        // 32 texts of 256 tokens (8,192) in passes of at most 2,048 tokens: 8 texts each.
        let c = chunk_by_padding(&[256; 32], 32, 2048);
        assert_eq!(c, vec![0..8, 8..16, 16..24, 24..32]);
    }

    #[test]
    fn a_mixed_batch_pads_little() {
        // Lengths like a server batch of short emails and reviews, descending.
        let mut lens: Vec<usize> = (0..32).map(|i| 20 + (i * 37 % 23)).collect();
        lens.extend([133, 90, 61]);
        lens.sort_unstable_by(|a, b| b.cmp(a));
        let one_pass = lens.len() as f64 * lens[0] as f64 / lens.iter().sum::<usize>() as f64;
        let c = chunk_by_padding(&lens, 64, usize::MAX);
        let split = padded_over_real(&lens, &c);
        assert!(one_pass > 2.0, "{one_pass}");
        assert!(split <= 1.0 + MAX_PADDING + 1e-9, "{split} with {c:?}");
    }
}
