//! Wrong inputs give clear errors naming the problem. Uses a tiny synthetic BERT
//! checkpoint written here, plus the real tokenizer.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test
use std::{collections::HashMap, path::Path};

use polyhead_backbone::{Encoder, EncoderOptions, Error};
use safetensors::{tensor::TensorView, Dtype};

const HIDDEN: usize = 8;
const INTER: usize = 16;
const VOCAB: usize = 30522;

fn real_tokenizer() -> std::path::PathBuf {
    std::env::var_os("POLYHEAD_MODEL_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../models/all-MiniLM-L6-v2")
        })
        .join("tokenizer.json")
}

/// Names and shapes of a 1-layer BERT, as Hugging Face names them.
fn tensors(prefix: &str) -> Vec<(String, Vec<usize>)> {
    let mut t = vec![
        (
            "embeddings.word_embeddings.weight".to_string(),
            vec![VOCAB, HIDDEN],
        ),
        (
            "embeddings.position_embeddings.weight".into(),
            vec![64, HIDDEN],
        ),
        (
            "embeddings.token_type_embeddings.weight".into(),
            vec![2, HIDDEN],
        ),
        ("embeddings.LayerNorm.weight".into(), vec![HIDDEN]),
        ("embeddings.LayerNorm.bias".into(), vec![HIDDEN]),
    ];
    let l = "encoder.layer.0";
    for m in [
        "attention.self.query",
        "attention.self.key",
        "attention.self.value",
        "attention.output.dense",
    ] {
        t.push((format!("{l}.{m}.weight"), vec![HIDDEN, HIDDEN]));
        t.push((format!("{l}.{m}.bias"), vec![HIDDEN]));
    }
    t.push((
        format!("{l}.intermediate.dense.weight"),
        vec![INTER, HIDDEN],
    ));
    t.push((format!("{l}.intermediate.dense.bias"), vec![INTER]));
    t.push((format!("{l}.output.dense.weight"), vec![HIDDEN, INTER]));
    t.push((format!("{l}.output.dense.bias"), vec![HIDDEN]));
    for n in ["attention.output.LayerNorm", "output.LayerNorm"] {
        t.push((format!("{l}.{n}.weight"), vec![HIDDEN]));
        t.push((format!("{l}.{n}.bias"), vec![HIDDEN]));
    }
    t.into_iter()
        .map(|(n, s)| (format!("{prefix}{n}"), s))
        .collect()
}

fn write_checkpoint(dir: &Path, prefix: &str, edit: impl Fn(&mut Vec<(String, Vec<usize>)>)) {
    let mut spec = tensors(prefix);
    edit(&mut spec);
    let data: Vec<(String, Vec<u8>, Vec<usize>)> = spec
        .into_iter()
        .map(|(n, s)| {
            let count: usize = s.iter().product();
            let bytes = (0..count)
                .flat_map(|i| ((i % 7) as f32 * 0.01).to_le_bytes())
                .collect();
            (n, bytes, s)
        })
        .collect();
    let views: HashMap<String, TensorView<'_>> = data
        .iter()
        .map(|(n, b, s)| {
            (
                n.clone(),
                TensorView::new(Dtype::F32, s.clone(), b).unwrap(),
            )
        })
        .collect();
    std::fs::write(
        dir.join("model.safetensors"),
        safetensors::serialize(views, None).unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.join("config.json"),
        format!(
            r#"{{"model_type":"bert","vocab_size":{VOCAB},"hidden_size":{HIDDEN},"num_hidden_layers":1,
            "num_attention_heads":2,"intermediate_size":{INTER},"max_position_embeddings":64}}"#
        ),
    )
    .unwrap();
    std::fs::copy(real_tokenizer(), dir.join("tokenizer.json")).unwrap();
}

fn load(dir: &Path) -> Result<Encoder, Error> {
    Encoder::load(dir, &EncoderOptions::default())
}

#[test]
fn tiny_checkpoint_loads_with_and_without_prefix() {
    for prefix in ["", "bert."] {
        let dir = tempfile::tempdir().unwrap();
        write_checkpoint(dir.path(), prefix, |_| {});
        let enc = load(dir.path()).unwrap_or_else(|e| panic!("prefix {prefix:?}: {e}"));
        assert_eq!(enc.info().dim, HIDDEN);
        // No pooling config: plain Hugging Face defaults (CLS, no normalisation).
        assert_eq!(enc.info().pooling, "cls");
        assert_eq!(enc.info().max_seq_length, 64);
        assert_eq!(enc.embed(&["hello there"]).unwrap().len(), 1);
    }
}

#[test]
fn missing_folder() {
    let err = load(Path::new("/nonexistent/model")).unwrap_err();
    assert!(matches!(err, Error::MissingFolder(_)), "{err}");
    assert!(err.to_string().contains("/nonexistent/model"), "{err}");
}

#[test]
fn missing_tensor_is_named() {
    let dir = tempfile::tempdir().unwrap();
    write_checkpoint(dir.path(), "", |t| {
        t.retain(|(n, _)| !n.ends_with("attention.self.key.weight"))
    });
    let err = load(dir.path()).unwrap_err();
    assert!(matches!(err, Error::MissingTensor { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("encoder.layer.0.attention.self.key.weight"),
        "{err}"
    );
}

#[test]
fn wrong_shape_is_named() {
    let dir = tempfile::tempdir().unwrap();
    write_checkpoint(dir.path(), "", |t| {
        for (n, s) in t.iter_mut() {
            if n == "encoder.layer.0.intermediate.dense.weight" {
                *s = vec![HIDDEN, INTER];
            }
        }
    });
    let err = load(dir.path()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::TensorShape { .. }), "{msg}");
    assert!(
        msg.contains("intermediate.dense.weight") && msg.contains("[16, 8]"),
        "{msg}"
    );
}

#[test]
fn unsupported_model_type() {
    let dir = tempfile::tempdir().unwrap();
    write_checkpoint(dir.path(), "", |_| {});
    let cfg = std::fs::read_to_string(dir.path().join("config.json")).unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        cfg.replace("\"bert\"", "\"gpt2\""),
    )
    .unwrap();
    let err = load(dir.path()).unwrap_err();
    assert!(matches!(err, Error::UnsupportedModel { .. }), "{err}");
    assert!(err.to_string().contains("gpt2"), "{err}");
}

#[test]
fn missing_config_field() {
    let dir = tempfile::tempdir().unwrap();
    write_checkpoint(dir.path(), "", |_| {});
    let cfg = std::fs::read_to_string(dir.path().join("config.json")).unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        cfg.replace("\"hidden_size\"", "\"hidden\""),
    )
    .unwrap();
    let err = load(dir.path()).unwrap_err();
    assert!(err.to_string().contains("hidden_size"), "{err}");
}

#[test]
fn corrupt_tokenizer() {
    let dir = tempfile::tempdir().unwrap();
    write_checkpoint(dir.path(), "", |_| {});
    std::fs::write(
        dir.path().join("tokenizer.json"),
        b"{\"version\": \"1.0\", \"model\": 12",
    )
    .unwrap();
    let err = load(dir.path()).unwrap_err();
    assert!(matches!(err, Error::Tokenizer { .. }), "{err}");
    assert!(err.to_string().contains("tokenizer.json"), "{err}");
}

#[test]
fn corrupt_weights_file() {
    let dir = tempfile::tempdir().unwrap();
    write_checkpoint(dir.path(), "", |_| {});
    let bytes = std::fs::read(dir.path().join("model.safetensors")).unwrap();
    std::fs::write(
        dir.path().join("model.safetensors"),
        &bytes[..bytes.len() / 2],
    )
    .unwrap();
    let err = load(dir.path()).unwrap_err();
    assert!(matches!(err, Error::Safetensors { .. }), "{err}");
}

#[test]
fn bad_options() {
    assert!("cuda:x".parse::<polyhead_backbone::Device>().is_err());
    assert!("fp8".parse::<polyhead_backbone::Dtype>().is_err());
    assert_eq!(
        "cuda:1"
            .parse::<polyhead_backbone::Device>()
            .unwrap()
            .to_string(),
        "cuda:1"
    );
}
