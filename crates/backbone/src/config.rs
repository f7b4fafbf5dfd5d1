//! Checkpoint configuration: `config.json` (Hugging Face, its own key names) and the
//! sentence-transformers files beside it (`sentence_bert_config.json`,
//! `1_Pooling/config.json`, `modules.json`).
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::{Error, Result};

/// The part of a BERT-family `config.json` the encoder needs. Field names are the
/// checkpoint's own; a missing field is an error naming the file.
#[derive(Debug, Clone, Deserialize)]
pub struct BertConfig {
    /// The model family, from `model_type` (see [`ModelType`]).
    pub model_type: ModelType,
    /// Tokens in the word-embedding table.
    pub vocab_size: i64,
    /// Width of every hidden state.
    pub hidden_size: i64,
    /// Transformer layers.
    pub num_hidden_layers: i64,
    /// Attention heads per layer.
    pub num_attention_heads: i64,
    /// Width of the feed-forward layer.
    pub intermediate_size: i64,
    /// Rows of the position-embedding table.
    pub max_position_embeddings: i64,
    /// Rows of the token-type-embedding table.
    #[serde(default = "default_type_vocab_size")]
    pub type_vocab_size: i64,
    /// LayerNorm epsilon.
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f64,
    /// Activation of the feed-forward layer; an unknown name is a load error.
    #[serde(default)]
    pub hidden_act: HiddenAct,
    /// How positions are embedded; only `absolute` is implemented.
    #[serde(default)]
    pub position_embedding_type: PositionEmbedding,
}

/// The model family `config.json` declares (`model_type`), parsed once: the family
/// decides the module tree, the inputs and the default pooling. BERT-family text
/// encoders today; a decoder (last-token pooling) or an image encoder is one more
/// variant with its config, module tree and inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelType {
    /// BERT and checkpoints with its module tree (MiniLM, BGE, E5, GTE ...).
    Bert,
}

impl ModelType {
    /// Every family implemented, with its `model_type` spelling.
    pub const ALL: &'static [ModelType] = &[ModelType::Bert];

    /// The `model_type` spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelType::Bert => "bert",
        }
    }

    /// The pooling when the folder has no sentence-transformers pooling file (as
    /// Hugging Face's own heads read the first token).
    pub fn default_pooling(self) -> Pooling {
        match self {
            ModelType::Bert => Pooling::Cls,
        }
    }
}

impl<'de> Deserialize<'de> for ModelType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        ModelType::ALL
            .iter()
            .copied()
            .find(|t| t.as_str() == name)
            .ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "unsupported model_type {name:?} (supported: {})",
                    SUPPORTED_MODEL_TYPES.join(", ")
                ))
            })
    }
}

/// `position_embedding_type`, spelled as `config.json` spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PositionEmbedding {
    /// A learned table indexed by position (BERT's).
    #[default]
    Absolute,
    /// Relative-key attention (not implemented: refused at load).
    RelativeKey,
    /// Relative-key-query attention (not implemented: refused at load).
    RelativeKeyQuery,
}

/// The feed-forward activation, spelled as `config.json` spells it (as in candle's
/// `bert.rs`): parsed once, so an unknown name fails the load instead of falling
/// back to GELU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HiddenAct {
    /// Exact (erf) GELU.
    #[default]
    Gelu,
    /// tanh-approximated GELU.
    GeluNew,
    /// ReLU.
    Relu,
}

/// The `model_type`s implemented ([`ModelType::ALL`] spelled out).
pub const SUPPORTED_MODEL_TYPES: &[&str] = &["bert"];

fn default_type_vocab_size() -> i64 {
    2
}
fn default_layer_norm_eps() -> f64 {
    1e-12
}

impl BertConfig {
    /// Reads and checks `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        // model_type first, so an unsupported family is named as such rather than
        // by the first BERT field it lacks.
        #[derive(Deserialize)]
        struct Family {
            model_type: String,
        }
        let family: Family = read_json(path)?;
        if !SUPPORTED_MODEL_TYPES.contains(&family.model_type.as_str()) {
            return Err(Error::UnsupportedModel {
                model_type: family.model_type,
                supported: SUPPORTED_MODEL_TYPES.join(", "),
            });
        }
        let config: BertConfig = read_json(path)?;
        let bad = |msg: String| Error::InvalidConfig {
            path: path.to_owned(),
            msg,
        };
        if config.hidden_size <= 0 || config.num_attention_heads <= 0 {
            return Err(bad(
                "hidden_size and num_attention_heads must be positive".into()
            ));
        }
        if config.hidden_size % config.num_attention_heads != 0 {
            return Err(bad(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                config.hidden_size, config.num_attention_heads
            )));
        }
        if config.position_embedding_type != PositionEmbedding::Absolute {
            return Err(bad(format!(
                "unsupported position_embedding_type {:?} (only absolute is implemented)",
                config.position_embedding_type
            )));
        }
        Ok(config)
    }
}

/// How token states become one vector per text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// Mean over the tokens the attention mask keeps.
    Mean,
    /// The first (`[CLS]`) token's state.
    Cls,
    /// Element-wise max over kept tokens.
    Max,
    /// Sum over kept tokens divided by sqrt(token count).
    MeanSqrtLen,
    /// The last kept token's state (decoders' embeddings).
    LastToken,
}

impl Pooling {
    /// The name used in `info` output and the fingerprint.
    pub fn as_str(self) -> &'static str {
        match self {
            Pooling::Mean => "mean",
            Pooling::Cls => "cls",
            Pooling::Max => "max",
            Pooling::MeanSqrtLen => "mean_sqrt_len",
            Pooling::LastToken => "lasttoken",
        }
    }
}

/// sentence-transformers' `1_Pooling/config.json`.
#[derive(Debug, Deserialize)]
struct PoolingFile {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
    #[serde(default)]
    pooling_mode_lasttoken: bool,
}

#[derive(Debug, Deserialize)]
struct SentenceBertFile {
    max_seq_length: Option<usize>,
}

#[derive(Debug, Deserialize)]
struct ModuleEntry {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    path: String,
}

/// Pooling, normalisation and sequence length, from sentence-transformers' files when
/// the folder has them, else the plain-Hugging-Face defaults (CLS, no normalisation,
/// `max_position_embeddings`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentenceConfig {
    /// Pooling of token states.
    pub pooling: Pooling,
    /// Whether embeddings are L2-normalised.
    pub normalize: bool,
    /// Longer inputs are truncated to this many tokens (special tokens included).
    pub max_seq_length: usize,
}

impl SentenceConfig {
    /// Reads the sentence-transformers files of `dir`, if any.
    pub fn from_dir(dir: &Path, bert: &BertConfig) -> Result<Self> {
        let modules_path = dir.join("modules.json");
        let modules: Vec<ModuleEntry> = if modules_path.exists() {
            read_json(&modules_path)?
        } else {
            Vec::new()
        };
        let pooling_dir = modules
            .iter()
            .find(|m| m.kind.ends_with(".Pooling"))
            .map(|m| dir.join(&m.path))
            .unwrap_or_else(|| dir.join("1_Pooling"));
        let pooling_path = pooling_dir.join("config.json");
        let pooling = if pooling_path.exists() {
            let file: PoolingFile = read_json(&pooling_path)?;
            match (
                file.pooling_mode_cls_token,
                file.pooling_mode_mean_tokens,
                file.pooling_mode_max_tokens,
                file.pooling_mode_mean_sqrt_len_tokens,
                file.pooling_mode_lasttoken,
            ) {
                (true, false, false, false, false) => Pooling::Cls,
                (false, true, false, false, false) => Pooling::Mean,
                (false, false, true, false, false) => Pooling::Max,
                (false, false, false, true, false) => Pooling::MeanSqrtLen,
                (false, false, false, false, true) => Pooling::LastToken,
                _ => {
                    return Err(Error::InvalidConfig {
                        path: pooling_path,
                        msg: "exactly one pooling_mode_* must be true".into(),
                    })
                }
            }
        } else {
            bert.model_type.default_pooling()
        };
        let normalize = modules.iter().any(|m| m.kind.ends_with(".Normalize"));
        let st_path = dir.join("sentence_bert_config.json");
        let declared = if st_path.exists() {
            read_json::<SentenceBertFile>(&st_path)?.max_seq_length
        } else {
            None
        };
        let positions = usize::try_from(bert.max_position_embeddings).unwrap_or(512);
        let max_seq_length = declared.unwrap_or(positions).min(positions);
        Ok(SentenceConfig {
            pooling,
            normalize,
            max_seq_length,
        })
    }
}

/// Reads a JSON file, naming the file in any error.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = read(path)?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Json {
        path: path.to_owned(),
        source: e,
    })
}

/// Reads a file, naming it in any error.
pub(crate) fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::Io {
        path: PathBuf::from(path),
        source: e,
    })
}
