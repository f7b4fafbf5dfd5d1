//! The encoder: a model family's preparation (a tokenizer, or the image
//! preprocessing) + a runtime + pooling. Owned by one thread (see
//! [`EncoderHandle`](crate::EncoderHandle)); not shared.
use std::{
    path::{Path, PathBuf},
    sync::{Arc, OnceLock},
};

use sha2::{Digest, Sha256};
use tokenizers::Tokenizer;

use crate::{
    config::{read, BertConfig, SentenceConfig},
    image::{self, ImageConfig},
    pool::pool,
    prepare::Prepare,
    runtime::{self, ImageLoad, LoadRequest, PixelBatch, Runtime, TokenBatch},
    tokenize::{load_tokenizer, token_ids, windowing},
    BackboneInfo, BatchPolicy, Branch, BranchShape, Encoded, EncoderOptions, Error, Input, Result,
    Top,
};

/// How hidden states become one vector per input.
enum Family {
    /// Pooling (and normalisation) of a text encoder's last hidden states.
    Text(SentenceConfig),
    /// A CNN whose graph pools; optionally normalised.
    Image(Arc<ImageConfig>),
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

/// Preparation, runtime and pooling of one model folder.
pub struct Encoder {
    prepare: Prepare,
    runtime: Box<dyn Runtime>,
    family: Family,
    info: BackboneInfo,
    policy: BatchPolicy,
    /// The checkpoint in libtorch for branches, loaded by the first branch pass
    /// (a server with no adapted task never holds it).
    top: OnceLock<std::result::Result<Top, String>>,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl Encoder {
    /// Loads a model folder on the runtime the options choose (see `runtime/mod.rs`):
    /// a text checkpoint (`config.json`, `model.safetensors`, `tokenizer.json`, plus
    /// sentence-transformers' pooling files when present), or an image backbone
    /// (`image_config.json` and its graphs, from `scripts/export_image.py`).
    pub fn load(dir: &Path, options: &EncoderOptions) -> Result<Encoder> {
        if !dir.is_dir() {
            return Err(Error::MissingFolder(dir.to_owned()));
        }
        if dir.join(image::CONFIG_FILE).is_file() {
            return Self::load_image(dir, options);
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
            input: "text".into(),
            dim,
            max_seq_length: sentence.max_seq_length,
            layers: config.num_hidden_layers as usize,
            branch: Some(BranchShape {
                depth: config.num_hidden_layers as usize,
                hidden: dim,
                intermediate: config.intermediate_size as usize,
            }),
            pooling: sentence.pooling.as_str().to_owned(),
            normalize: sentence.normalize,
            fingerprint: fingerprint(&weights_bytes, &tokenizer_bytes, &sentence),
            device: options.device.to_string(),
            dtype: runtime.dtype().to_string(),
            backend: spec.name.to_owned(),
        };
        Ok(Encoder {
            prepare: Prepare::Text {
                windows: Arc::new(windowing(&tokenizer, &tokenizer_path)?),
                tokenizer: Arc::new(tokenizer),
            },
            runtime,
            family: Family::Text(sentence),
            info,
            policy,
            top: OnceLock::new(),
        })
    }

    fn load_image(dir: &Path, options: &EncoderOptions) -> Result<Encoder> {
        let config = Arc::new(ImageConfig::from_dir(dir)?);
        let (spec, runtime) = runtime::load_image(ImageLoad {
            model_dir: dir,
            config: &config,
            device: options.device,
            threads: options.resolved_threads(),
            options,
        })?;
        let policy = BatchPolicy::new(
            runtime.padding(),
            options.batch_size,
            options.max_pass_tokens,
        );
        let info = BackboneInfo {
            name: model_name(dir),
            model_dir: dir.to_owned(),
            input: "image".into(),
            dim: config.dim,
            max_seq_length: 0,
            layers: 0,
            branch: None,
            pooling: "mean".into(),
            normalize: config.normalize,
            fingerprint: image_fingerprint(&config),
            device: options.device.to_string(),
            dtype: runtime.dtype().to_string(),
            backend: spec.name.to_owned(),
        };
        let encoder = Encoder {
            prepare: Prepare::Image {
                config: config.clone(),
                max_pixels: options.max_image_pixels,
            },
            runtime,
            family: Family::Image(config),
            info,
            policy,
            top: OnceLock::new(),
        };
        // One pass over a blank picture: the graph runs and gives `dim` values.
        let width = encoder.forward(&[&encoder.blank()])?.len();
        if width != encoder.info.dim {
            return Err(Error::Runtime {
                runtime: spec.name,
                message: format!(
                    "a one-picture pass gave {width} values, not dim {}",
                    encoder.info.dim
                ),
            });
        }
        Ok(encoder)
    }

    /// A black picture of the size the image family reads.
    fn blank(&self) -> Encoded {
        let bytes = match &self.family {
            Family::Image(c) => c.values(),
            Family::Text(_) => 0,
        };
        Encoded::Pixels {
            rgb: vec![0; bytes],
            cost: 1,
        }
    }

    /// One pass that makes the runtime ready (allocations, kernels) before serving.
    pub fn warm_up(&self) -> Result<()> {
        match &self.family {
            Family::Text(_) => self.embed(&["warm-up"]).map(drop),
            Family::Image(_) => self.forward(&[&self.blank()]).map(drop),
        }
    }

    /// What was loaded.
    pub fn info(&self) -> &BackboneInfo {
        &self.info
    }

    /// How this encoder groups inputs into forward passes.
    pub fn batch_policy(&self) -> BatchPolicy {
        self.policy
    }

    /// The tokenizer, configured with this backbone's truncation (a text backbone's).
    pub fn tokenizer(&self) -> Option<&Tokenizer> {
        self.prepare.tokenizer()
    }

    /// What prepares inputs, for the handle.
    pub(crate) fn preparation(&self) -> Prepare {
        self.prepare.clone()
    }

    /// Token ids of each text after truncation, special tokens included.
    pub fn tokenize(&self, texts: &[impl AsRef<str>]) -> Result<Vec<Vec<u32>>> {
        let tokenizer = self.tokenizer().ok_or_else(|| {
            Error::Input("this backbone reads images; it has no tokenizer".into())
        })?;
        token_ids(tokenizer, texts)
    }

    /// Prepares `inputs` for the runtime (tokenizes texts, preprocesses pictures).
    pub fn encode(&self, inputs: &[Input]) -> Result<Vec<Encoded>> {
        self.prepare.encode(inputs)
    }

    /// Every window of each text (the first is what `encode` gives; a text longer
    /// than the backbone reads has more, overlapping by [`crate::WINDOW_OVERLAP`]
    /// tokens, at most [`crate::MAX_WINDOWS`]). Texts only.
    pub fn encode_windows(&self, inputs: &[Input]) -> Result<Vec<Vec<Encoded>>> {
        self.prepare.encode_windows(inputs)
    }

    /// Embeds `texts` in the passes the batch policy plans; rows in input order.
    pub fn embed(&self, texts: &[impl AsRef<str>]) -> Result<Embeddings> {
        let inputs: Vec<Input> = texts.iter().map(|t| Input::from(t.as_ref())).collect();
        self.embed_encoded(&self.encode(&inputs)?)
    }

    /// Embeds inputs of any kind this backbone reads; rows in input order.
    pub fn embed_inputs(&self, inputs: &[Input]) -> Result<Embeddings> {
        self.embed_encoded(&self.encode(inputs)?)
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
                        batch.push(row);
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

    /// Embeds token `ids` under each of `branches` in the batch policy's passes,
    /// calling `between` before each: per pass, the trunk runs once for every
    /// branch (see [`Top::embed_branches`]). One [`Embeddings`] per branch.
    pub fn embed_branches(
        &self,
        ids: &[Encoded],
        branches: &[&Branch],
        between: &mut dyn FnMut(),
    ) -> Result<Vec<Embeddings>> {
        let rows = ids
            .iter()
            .map(|e| match e {
                Encoded::Tokens(t) => Ok(t.as_slice()),
                Encoded::Pixels { .. } => Err(Error::Input(
                    "branches adapt a text backbone's layers; this input is a picture".into(),
                )),
            })
            .collect::<Result<Vec<&[u32]>>>()?;
        let top = self
            .top
            .get_or_init(|| Top::load(&self.info.model_dir).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| Error::InvalidOption(format!("cannot load the branch layers: {e}")))?;
        let dim = self.info.dim;
        let mut out: Vec<Vec<f32>> = vec![vec![0f32; ids.len() * dim]; branches.len()];
        let lens: Vec<usize> = rows.iter().map(|r| r.len()).collect();
        for pass in self.policy.passes(&lens).iter() {
            between();
            let batch: Vec<&[u32]> = pass.iter().map(|&i| rows[i]).collect();
            let pooled = top.embed_branches(&batch, branches)?;
            for (b, emb) in pooled.iter().enumerate() {
                for (row, &i) in pass.iter().enumerate() {
                    out[b][i * dim..(i + 1) * dim]
                        .copy_from_slice(&emb[row * dim..(row + 1) * dim]);
                }
            }
        }
        Ok(out.into_iter().map(|v| Embeddings::new(dim, v)).collect())
    }

    /// One forward pass over `batch`, laid out as the runtime wants it, pooled.
    fn forward(&self, batch: &[&Encoded]) -> Result<Vec<f32>> {
        match &self.family {
            Family::Text(sentence) => {
                let ids = batch
                    .iter()
                    .map(|e| match e {
                        Encoded::Tokens(ids) => Ok(ids.as_slice()),
                        Encoded::Pixels { .. } => {
                            Err(Error::Input("a text backbone was handed a picture".into()))
                        }
                    })
                    .collect::<Result<Vec<&[u32]>>>()?;
                let tokens = TokenBatch::padded(&ids);
                let states = self.runtime.forward(&tokens)?;
                Ok(pool(
                    &states,
                    &tokens.mask,
                    (tokens.rows, tokens.cols, self.info.dim),
                    sentence.pooling,
                    sentence.normalize,
                ))
            }
            Family::Image(config) => {
                let mut values = Vec::with_capacity(batch.len() * config.values());
                for e in batch {
                    match e {
                        Encoded::Pixels { rgb, .. } if rgb.len() == config.values() => {
                            image::normalise_into(rgb, config, &mut values)
                        }
                        _ => {
                            return Err(Error::Input(format!(
                                "an image backbone was handed an input other than a {0} x {0} \
                                 RGB crop",
                                config.crop
                            )))
                        }
                    }
                }
                let mut out = self.runtime.forward_pixels(&PixelBatch {
                    values,
                    rows: batch.len(),
                    side: config.crop as usize,
                })?;
                if config.normalize {
                    for row in out.chunks_mut(config.dim) {
                        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
                        row.iter_mut().for_each(|v| *v /= norm);
                    }
                }
                Ok(out)
            }
        }
    }
}

/// sha256 over what the image backbone's features depend on: the source weights and
/// the preprocessing (whichever runtime runs the graph).
fn image_fingerprint(config: &ImageConfig) -> String {
    let mut h = Sha256::new();
    h.update(b"polyhead-image-backbone-v1\0");
    h.update(config.source_model_sha256.as_bytes());
    h.update(config.describe().as_bytes());
    hex::encode(&h.finalize()[..12])
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
