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

    /// `x`: (batch, seq, hidden); `mask`: bool (batch, 1, 1, seq), true = attend;
    /// `delta`: a branch's low-rank updates of this layer's linears, or none.
    fn forward(&self, x: &Tensor, mask: &Tensor, delta: Option<&LayerDelta>) -> Tensor {
        let size = x.size();
        let (b, s, h) = (size[0], size[1], size[2]);
        let heads = |t: Tensor| {
            t.view([b, s, self.num_heads, h / self.num_heads])
                .transpose(1, 2)
        };
        // y = x W^T + b, plus (x A^T) B^T * scale where the branch updates W.
        let lin = |x: &Tensor, l: &nn::Linear, target: usize| {
            let y = x.apply(l);
            match delta {
                Some(d) => {
                    let (a, bb) = &d.pairs[target];
                    y + x.matmul(&a.tr()).matmul(&bb.tr()) * d.scale
                }
                None => y,
            }
        };
        let q = heads(lin(x, &self.query, 0));
        let k = heads(lin(x, &self.key, 1));
        let v = heads(lin(x, &self.value, 2));
        // softmax(QK^T / sqrt(d)) V; the fused kernel applies the 1/sqrt(d) scale itself.
        let ctx =
            Tensor::scaled_dot_product_attention(&q, &k, &v, Some(mask), 0.0, false, None, false);
        let ctx = ctx.transpose(1, 2).contiguous().view([b, s, h]);
        let attended = (lin(&ctx, &self.attention_output, 3) + x).apply(&self.attention_norm);
        let inner = lin(&attended, &self.intermediate, 4);
        let inner = match self.act {
            Activation::Gelu => inner.gelu("none"),
            Activation::GeluTanh => inner.gelu("tanh"),
            Activation::Relu => inner.relu(),
        };
        (lin(&inner, &self.output, 5) + attended).apply(&self.output_norm)
    }
}

/// A branch's low-rank updates of one layer, as tensors: one `(A, B)` pair per linear
/// in [`TARGETS`](crate::branch::TARGETS) order, `A` (rank, in) and `B` (out, rank);
/// the layer computes `x W^T + b + (x A^T) B^T * scale`.
pub(crate) struct LayerDelta {
    pub pairs: Vec<(Tensor, Tensor)>,
    pub scale: f64,
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
        self.forward_upto(input_ids, attention_mask, self.layers.len())
    }

    /// The number of transformer layers.
    pub(crate) fn depth(&self) -> usize {
        self.layers.len()
    }

    /// Token states after the first `upto` layers (0: the embeddings' output).
    pub(crate) fn forward_upto(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        upto: usize,
    ) -> Tensor {
        let mask = attend(attention_mask);
        let mut x = self.embeddings.forward(input_ids);
        for layer in &self.layers[..upto.min(self.layers.len())] {
            x = layer.forward(&x, &mask, None);
        }
        x
    }

    /// Runs layers `from..from + deltas.len()` on `states` (the output of layer
    /// `from - 1`), each with its branch update; with no deltas, returns `states`.
    pub(crate) fn forward_from(
        &self,
        states: &Tensor,
        attention_mask: &Tensor,
        from: usize,
        deltas: &[LayerDelta],
    ) -> Tensor {
        let mask = attend(attention_mask);
        let mut x = states.shallow_clone();
        for (layer, delta) in self.layers[from..].iter().zip(deltas) {
            x = layer.forward(&x, &mask, Some(delta));
        }
        x
    }

    /// Runs layers `from..to` without updates (the frozen path between two depths).
    pub(crate) fn forward_between(
        &self,
        states: &Tensor,
        attention_mask: &Tensor,
        from: usize,
        to: usize,
    ) -> Tensor {
        let mask = attend(attention_mask);
        let mut x = states.shallow_clone();
        for layer in &self.layers[from..to.min(self.layers.len())] {
            x = layer.forward(&x, &mask, None);
        }
        x
    }
}

/// The attention mask as SDPA takes it: bool (batch, 1, 1, seq), true = attend.
fn attend(attention_mask: &Tensor) -> Tensor {
    attention_mask.to_kind(Kind::Bool).unsqueeze(1).unsqueeze(1)
}
