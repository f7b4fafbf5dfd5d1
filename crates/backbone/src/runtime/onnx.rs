//! The `onnxruntime` runtime: the transformer as exported by `scripts/export_onnx.py`
//! (token ids and attention mask in, last hidden states out), run by ONNX Runtime's
//! CPU execution provider. The library is loaded at run time (`ort`'s load-dynamic),
//! so the binary builds and runs without it when another runtime is used.
use std::{
    path::{Path, PathBuf},
    sync::{Mutex, OnceLock},
};

use ort::{
    session::{builder::GraphOptimizationLevel, Session},
    value::Tensor,
};

use super::{
    export::{file, image_graph, library, read_meta},
    ImageLoad, LoadRequest, PixelBatch, Runtime, RuntimeSpec, TokenBatch,
};
use crate::{Dtype, Error, Result};

const NAME: &str = "onnxruntime";

/// The registration.
pub(crate) static SPEC: RuntimeSpec = RuntimeSpec {
    name: NAME,
    aliases: &["ort", "onnx"],
    dtypes: &[Dtype::F32, Dtype::Int8],
    cuda: false,
    auto_on_cpu: &[Dtype::F32, Dtype::Int8],
    load,
    load_image: Some(load_image),
};

fn fail(e: impl std::fmt::Display) -> Error {
    Error::Runtime {
        runtime: NAME,
        message: e.to_string(),
    }
}

/// Finds the export's graph for the request's dtype and the library, checks the
/// export against the weights, and opens a session.
fn load(request: &LoadRequest<'_>) -> Result<Box<dyn Runtime>> {
    let dir = request.export_dir();
    let meta = read_meta(NAME, &dir, request.weights)?;
    let graph = match request.dtype {
        Dtype::Int8 => &meta.files.int8,
        _ => &meta.files.f32,
    };
    let model = file(NAME, &dir, graph)?;
    let lib = library(
        NAME,
        request.options.onnxruntime_lib.as_deref(),
        Some("ORT_DYLIB_PATH"),
        dir.join("libonnxruntime.so"),
        "ONNX Runtime (set backbone.onnxruntime_lib or ORT_DYLIB_PATH)",
    )?;
    let runtime = OnnxModel::load(
        &model,
        &lib,
        request.threads,
        request.hidden(),
        request.dtype,
    )?;
    Ok(Box::new(runtime))
}

/// The image backbone's graph (pixels in, pooled features out) in its folder.
fn load_image(request: &ImageLoad<'_>) -> Result<Box<dyn Runtime>> {
    let model = image_graph(NAME, request.model_dir, request.config, "onnx")?;
    let lib = library(
        NAME,
        request.options.onnxruntime_lib.as_deref(),
        Some("ORT_DYLIB_PATH"),
        request.model_dir.join("libonnxruntime.so"),
        "ONNX Runtime (set backbone.onnxruntime_lib or ORT_DYLIB_PATH)",
    )?;
    let session = session(&model, &lib, request.threads)?;
    let input = match session.inputs() {
        [one] => one.name().to_owned(),
        other => {
            return Err(fail(format!(
                "the image graph takes {} inputs; polyhead feeds one (pixels)",
                other.len()
            )))
        }
    };
    Ok(Box::new(OnnxImage {
        session: Mutex::new(session),
        input,
        dim: request.config.dim,
    }))
}

/// One ONNX Runtime session over an image backbone's graph.
struct OnnxImage {
    session: Mutex<Session>,
    input: String,
    dim: usize,
}

impl Runtime for OnnxImage {
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }

    fn forward(&self, _: &TokenBatch) -> Result<Vec<f32>> {
        Err(fail(
            "this is an image backbone: it embeds pictures, not tokens",
        ))
    }

    fn forward_pixels(&self, batch: &PixelBatch) -> Result<Vec<f32>> {
        let shape = [batch.rows, 3, batch.side, batch.side];
        let tensor = Tensor::from_array((shape, batch.values.clone())).map_err(fail)?;
        let mut session = self
            .session
            .lock()
            .map_err(|_| fail("session lock poisoned"))?;
        let outputs = session
            .run(vec![(self.input.as_str(), tensor)])
            .map_err(fail)?;
        let (out_shape, data) = outputs[0].try_extract_tensor::<f32>().map_err(fail)?;
        let want = [batch.rows as i64, self.dim as i64];
        if out_shape.as_ref() != want {
            return Err(fail(format!(
                "the image graph returned shape {:?}, expected {want:?}",
                out_shape.as_ref()
            )));
        }
        Ok(data.to_vec())
    }
}

/// A session over `model` with `threads` intra-op threads.
fn session(model: &Path, lib: &Path, threads: usize) -> Result<Session> {
    let env = runtime(lib)?;
    Session::builder(env)
        .map_err(fail)?
        .with_optimization_level(GraphOptimizationLevel::Level3)
        .map_err(fail)?
        .with_intra_threads(threads)
        .map_err(fail)?
        .with_inter_threads(1)
        .map_err(fail)?
        // The pool's threads spin briefly between operators (ONNX Runtime's
        // default): measured over gRPC, turning it off cost 10-25% of throughput
        // and 3 ms of single-text latency (BENCHMARKS.md).
        .commit_from_file(model)
        .map_err(fail)
}

/// ONNX Runtime's environment is per process and its library can be loaded once:
/// the first load wins, and a later request for another library is an error.
static RUNTIME: OnceLock<std::result::Result<(PathBuf, ort::environment::Environment), String>> =
    OnceLock::new();

fn runtime(lib: &Path) -> Result<&'static ort::environment::Environment> {
    let loaded = RUNTIME.get_or_init(|| {
        let env = ort::init_from(lib)
            .map_err(|e| format!("cannot load {}: {e}", lib.display()))?
            .with_name("polyhead")
            .with_telemetry(false)
            .build()
            .map_err(|e| format!("cannot start ONNX Runtime from {}: {e}", lib.display()))?;
        Ok((lib.to_owned(), env))
    });
    match loaded {
        Ok((first, env)) if first == lib => Ok(env),
        Ok((first, _)) => Err(fail(format!(
            "this process already loaded ONNX Runtime from {}; cannot also load {}",
            first.display(),
            lib.display()
        ))),
        Err(e) => Err(fail(e)),
    }
}

/// What the graph takes, by input name: the exporter writes `input_ids` and
/// `attention_mask`; graphs exported by others may also want `token_type_ids`
/// (single segment: zeros). Read from the graph at load, so a graph wanting anything
/// else is refused then, naming the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GraphInput {
    Ids,
    Mask,
    TokenTypes,
}

impl GraphInput {
    fn of(name: &str) -> Result<GraphInput> {
        match name {
            "input_ids" => Ok(GraphInput::Ids),
            "attention_mask" => Ok(GraphInput::Mask),
            "token_type_ids" => Ok(GraphInput::TokenTypes),
            other => Err(fail(format!(
                "the graph wants an input {other:?}; polyhead feeds input_ids, attention_mask \
                 and token_type_ids"
            ))),
        }
    }
}

/// One ONNX Runtime session over the exported transformer.
struct OnnxModel {
    // Session::run needs `&mut`; the encoder is owned by one thread, so the lock is
    // never contended.
    session: Mutex<Session>,
    inputs: Vec<(String, GraphInput)>,
    hidden: usize,
    dtype: Dtype,
}

impl OnnxModel {
    /// Opens `model` with `threads` intra-op threads.
    fn load(model: &Path, lib: &Path, threads: usize, hidden: usize, dtype: Dtype) -> Result<Self> {
        let session = session(model, lib, threads)?;
        let inputs = session
            .inputs()
            .iter()
            .map(|i| Ok((i.name().to_owned(), GraphInput::of(i.name())?)))
            .collect::<Result<Vec<_>>>()?;
        if !inputs.iter().any(|(_, i)| *i == GraphInput::Ids) {
            return Err(fail("the graph takes no input_ids"));
        }
        Ok(OnnxModel {
            session: Mutex::new(session),
            inputs,
            hidden,
            dtype,
        })
    }
}

impl Runtime for OnnxModel {
    fn dtype(&self) -> Dtype {
        self.dtype
    }

    fn forward(&self, batch: &TokenBatch) -> Result<Vec<f32>> {
        let shape = [batch.rows, batch.cols];
        let mut feeds = Vec::with_capacity(self.inputs.len());
        for (name, input) in &self.inputs {
            let data = match input {
                GraphInput::Ids => batch.ids.clone(),
                GraphInput::Mask => batch.mask.clone(),
                GraphInput::TokenTypes => vec![0; batch.ids.len()],
            };
            let tensor = Tensor::from_array((shape, data)).map_err(fail)?;
            feeds.push((name.as_str(), tensor));
        }
        let mut session = self
            .session
            .lock()
            .map_err(|_| fail("session lock poisoned"))?;
        let outputs = session.run(feeds).map_err(fail)?;
        let (out_shape, data) = outputs[0].try_extract_tensor::<f32>().map_err(fail)?;
        let want = [batch.rows as i64, batch.cols as i64, self.hidden as i64];
        if out_shape.as_ref() != want {
            return Err(fail(format!(
                "the graph returned shape {:?}, expected {want:?}",
                out_shape.as_ref()
            )));
        }
        Ok(data.to_vec())
    }
}
