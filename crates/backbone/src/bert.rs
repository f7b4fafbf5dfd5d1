//! BERT encoder in tch. The struct tree mirrors the checkpoint's tensor names
//! (`embeddings.word_embeddings.weight`, `encoder.layer.{i}.attention.self.query.weight`,
//! ...), as in Hugging Face `modeling_bert.py`, so the weights load by a straight walk.
use tch::{nn, Kind, Tensor};

use crate::config::{BertConfig, HiddenAct};

/// `embeddings.*`: word + position + token-type embeddings, then LayerNorm.
#[derive(Debug)]
struct Embeddings {
    word_embeddings: nn::Embedding,
    position_embeddings: nn::Embedding,
    token_type_embeddings: nn::Embedding,
    layer_norm: nn::LayerNorm,
}

impl Embeddings {
    fn new(p: nn::Path, c: &BertConfig) -> Self {
        let e = Default::default();
        Embeddings {
            word_embeddings: nn::embedding(&p / "word_embeddings", c.vocab_size, c.hidden_size, e),
            position_embeddings: nn::embedding(
                &p / "position_embeddings",
                c.max_position_embeddings,
                c.hidden_size,
                e,
            ),
            token_type_embeddings: nn::embedding(
                &p / "token_type_embeddings",
                c.type_vocab_size,
                c.hidden_size,
                e,
            ),
            layer_norm: layer_norm(&p / "LayerNorm", c),
        }
    }

    fn forward(&self, input_ids: &Tensor) -> Tensor {
        let seq_len = input_ids.size()[1];
        let positions = Tensor::arange(seq_len, (Kind::Int64, input_ids.device())).unsqueeze(0);
        // Single-segment input: every token type is 0, as sentence-transformers sends it.
        let token_types = input_ids.zeros_like();
        let x = input_ids.apply(&self.word_embeddings)
            + positions.apply(&self.position_embeddings)
            + token_types.apply(&self.token_type_embeddings);
        x.apply(&self.layer_norm)
    }
}

fn layer_norm(p: nn::Path, c: &BertConfig) -> nn::LayerNorm {
    let config = nn::LayerNormConfig {
        eps: c.layer_norm_eps,
        ..Default::default()
    };
    nn::layer_norm(p, vec![c.hidden_size], config)
}

/// `encoder.layer.{i}.*`: self-attention, then the feed-forward block, each with a
/// residual connection and post-LayerNorm.
#[derive(Debug)]
struct Layer {
    query: nn::Linear,
    key: nn::Linear,
    value: nn::Linear,
    attention_output: nn::Linear,
    attention_norm: nn::LayerNorm,
    intermediate: nn::Linear,
    output: nn::Linear,
    output_norm: nn::LayerNorm,
    num_heads: i64,
    act: Activation,
}

#[derive(Debug, Clone, Copy)]
enum Activation {
    Gelu,
    GeluTanh,
    Relu,
}

impl Layer {
    fn new(p: nn::Path, c: &BertConfig) -> Self {
        let h = c.hidden_size;
        let lin = Default::default();
        let att = &p / "attention";
        let slf = &att / "self";
        let act = match c.hidden_act {
            HiddenAct::Gelu => Activation::Gelu,
            HiddenAct::GeluNew => Activation::GeluTanh,
            HiddenAct::Relu => Activation::Relu,
        };
        Layer {
            query: nn::linear(&slf / "query", h, h, lin),
            key: nn::linear(&slf / "key", h, h, lin),
            value: nn::linear(&slf / "value", h, h, lin),
            attention_output: nn::linear(&att / "output" / "dense", h, h, lin),
            attention_norm: layer_norm(&att / "output" / "LayerNorm", c),
            intermediate: nn::linear(&p / "intermediate" / "dense", h, c.intermediate_size, lin),
            output: nn::linear(&p / "output" / "dense", c.intermediate_size, h, lin),
            output_norm: layer_norm(&p / "output" / "LayerNorm", c),
            num_heads: c.num_attention_heads,
            act,
        }
    }

    /// `x`: (batch, seq, hidden); `mask`: bool (batch, 1, 1, seq), true = attend.
    fn forward(&self, x: &Tensor, mask: &Tensor) -> Tensor {
        let size = x.size();
        let (b, s, h) = (size[0], size[1], size[2]);
        let heads = |t: Tensor| {
            t.view([b, s, self.num_heads, h / self.num_heads])
                .transpose(1, 2)
        };
        let q = heads(x.apply(&self.query));
        let k = heads(x.apply(&self.key));
        let v = heads(x.apply(&self.value));
        // softmax(QK^T / sqrt(d)) V; the fused kernel applies the 1/sqrt(d) scale itself.
        let ctx =
            Tensor::scaled_dot_product_attention(&q, &k, &v, Some(mask), 0.0, false, None, false);
        let ctx = ctx.transpose(1, 2).contiguous().view([b, s, h]);
        let attended = (ctx.apply(&self.attention_output) + x).apply(&self.attention_norm);
        let inner = attended.apply(&self.intermediate);
        let inner = match self.act {
            Activation::Gelu => inner.gelu("none"),
            Activation::GeluTanh => inner.gelu("tanh"),
            Activation::Relu => inner.relu(),
        };
        (inner.apply(&self.output) + attended).apply(&self.output_norm)
    }
}

/// The encoder stack: `embeddings` and `encoder.layer.*`. The pooler is not used
/// (sentence embeddings are pooled from token states), so it is not loaded.
#[derive(Debug)]
pub(crate) struct Bert {
    embeddings: Embeddings,
    layers: Vec<Layer>,
}

impl Bert {
    /// Builds the module tree under `p` (the checkpoint's prefix, e.g. root or `bert`).
    pub(crate) fn new(p: nn::Path, c: &BertConfig) -> Self {
        let layers = (0..c.num_hidden_layers)
            .map(|i| Layer::new(&p / "encoder" / "layer" / i, c))
            .collect();
        Bert {
            embeddings: Embeddings::new(&p / "embeddings", c),
            layers,
        }
    }

    /// Token states (batch, seq, hidden) for right-padded `input_ids` and a 0/1
    /// `attention_mask`, both (batch, seq) int64.
    pub(crate) fn forward(&self, input_ids: &Tensor, attention_mask: &Tensor) -> Tensor {
        let mask = attention_mask.to_kind(Kind::Bool).unsqueeze(1).unsqueeze(1);
        let mut x = self.embeddings.forward(input_ids);
        for layer in &self.layers {
            x = layer.forward(&x, &mask);
        }
        x
    }
}
