//! Where the transformer runs: one [`Runtime`] trait, and the registry of the runtimes
//! this build has (torch always; ONNX Runtime and OpenVINO behind the cargo features
//! `onnxruntime` and `openvino`, both on by default). The choice is made here, once,
//! from the options and the machine: `backend = "auto"` resolved, impossible
//! backend/dtype/device triples refused; each runtime's own checks (its export found
//! and made from these weights, its library there) run in its `load`.
//!
//! Adding a runtime is one module that implements [`Runtime`] and declares a
//! [`RuntimeSpec`], plus its line in [`REGISTRY`]: the test-only `echo` runtime below
//! is exactly that, and `tests::a_runtime_is_one_module_and_one_registry_line` loads
//! an encoder on it.
// A build without the optional runtimes leaves their shared helpers unused.
#![cfg_attr(
    not(all(feature = "onnxruntime", feature = "openvino")),
    allow(dead_code)
)]
use std::path::{Path, PathBuf};

use crate::{config::BertConfig, image::ImageConfig, Device, Dtype, EncoderOptions, Error, Result};

#[cfg(test)]
mod echo;
mod export;
#[cfg(feature = "onnxruntime")]
mod onnx;
#[cfg(feature = "openvino")]
mod openvino;
mod torch;

use export::default_dir;

/// Every runtime this build has, in the order `backend = "auto"` considers them.
pub(crate) static REGISTRY: &[&RuntimeSpec] = &[
    &torch::SPEC,
    #[cfg(feature = "onnxruntime")]
    &onnx::SPEC,
    #[cfg(feature = "openvino")]
    &openvino::SPEC,
    #[cfg(test)]
    &echo::SPEC,
];

/// Runtimes polyhead knows that a build may leave out, with their cargo feature.
const OPTIONAL: &[(&str, &str)] = &[("onnxruntime", "onnxruntime"), ("openvino", "openvino")];

/// The runtime every other falls back to under `auto`: it needs no export.
const REFERENCE: &str = "torch";

/// A batch laid out for one forward pass: `rows` inputs right-padded to `cols`
/// tokens, with a 0/1 attention mask; row-major i64 as every runtime takes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TokenBatch {
    pub ids: Vec<i64>,
    pub mask: Vec<i64>,
    pub rows: usize,
    pub cols: usize,
}

impl TokenBatch {
    /// `batch` right-padded to its longest input (at least one column).
    pub fn padded(batch: &[&[u32]]) -> TokenBatch {
        let cols = batch.iter().map(|ids| ids.len()).max().unwrap_or(0).max(1);
        let mut ids = vec![0i64; batch.len() * cols];
        let mut mask = vec![0i64; batch.len() * cols];
        for (r, row) in batch.iter().enumerate() {
            for (c, &id) in row.iter().enumerate() {
                ids[r * cols + c] = i64::from(id);
                mask[r * cols + c] = 1;
            }
        }
        TokenBatch {
            ids,
            mask,
            rows: batch.len(),
            cols,
        }
    }
}

/// A batch of preprocessed pictures for one pass: `rows` x 3 x `side` x `side`
/// f32 values, row-major.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PixelBatch {
    pub values: Vec<f32>,
    pub rows: usize,
    pub side: usize,
}

/// How a runtime wants the inputs of one pass laid out, which decides what a pass
/// costs (see [`BatchPolicy`](crate::BatchPolicy)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// Every row padded to the pass's longest input (all of today's runtimes): a
    /// pass costs rows x longest tokens.
    ToLongest,
    /// Rows concatenated without padding (a varlen kernel): a pass costs its real
    /// tokens.
    Unpadded,
}

/// What runs the transformer: it takes a padded batch of token ids and returns the
/// last hidden states. Pooling, normalisation and batching are the encoder's, the
/// same for every runtime.
pub(crate) trait Runtime: Send {
    /// The precision it runs, as negotiated with the hardware (OpenVINO compiles f32
    /// where bf16 is asked for and the CPU has no native bf16).
    fn dtype(&self) -> Dtype;
    /// How a pass's inputs are laid out.
    fn padding(&self) -> Padding {
        Padding::ToLongest
    }
    /// Most rows one pass may hold, when the runtime has a limit of its own.
    fn max_batch(&self) -> Option<usize> {
        None
    }
    /// Last hidden states of `batch`: f32, row-major (rows x cols x hidden).
    fn forward(&self, batch: &TokenBatch) -> Result<Vec<f32>>;
    /// Runs one one-token pass and returns the width of its states: the encoder
    /// checks it against the checkpoint's before serving.
    fn health(&self) -> Result<usize> {
        Ok(self.forward(&TokenBatch::padded(&[&[0]]))?.len())
    }
    /// Pooled features of a batch of pictures (rows x dim), for a runtime loaded on
    /// an image backbone.
    fn forward_pixels(&self, batch: &PixelBatch) -> Result<Vec<f32>> {
        let _ = batch;
        Err(Error::InvalidOption(
            "this runtime was loaded on a text backbone; it embeds no pictures".into(),
        ))
    }
}

/// What loading a runtime on an image backbone gets: the folder, its config, the
/// threads and the options (for the runtime's library).
pub(crate) struct ImageLoad<'a> {
    pub model_dir: &'a Path,
    pub config: &'a ImageConfig,
    pub device: Device,
    pub threads: usize,
    pub options: &'a EncoderOptions,
}

/// What loading a runtime gets: the checkpoint, the decided dtype and device, the
/// threads, and the options (for its export folder and library).
pub(crate) struct LoadRequest<'a> {
    pub model_dir: &'a Path,
    pub config: &'a BertConfig,
    pub weights: &'a [u8],
    pub weights_path: &'a Path,
    pub dtype: Dtype,
    pub device: Device,
    pub threads: usize,
    pub options: &'a EncoderOptions,
}

impl LoadRequest<'_> {
    /// The export folder (`backbone.onnx_dir`, or the model folder's path + `-onnx`).
    pub fn export_dir(&self) -> PathBuf {
        self.options
            .onnx_dir
            .clone()
            .unwrap_or_else(|| default_dir(self.model_dir))
    }
    /// The width of the hidden states.
    pub fn hidden(&self) -> usize {
        usize::try_from(self.config.hidden_size).unwrap_or(0)
    }
}

/// How a runtime loads on an image backbone.
pub(crate) type LoadImage = fn(&ImageLoad<'_>) -> Result<Box<dyn Runtime>>;

/// A runtime's registration: its names, what it can run, and how to load it.
pub(crate) struct RuntimeSpec {
    /// The name in configuration, `Info` and `polyhead info`.
    pub name: &'static str,
    /// Other spellings accepted in configuration.
    pub aliases: &'static [&'static str],
    /// The dtypes it runs.
    pub dtypes: &'static [Dtype],
    /// Whether it runs on CUDA devices (else the CPU only).
    pub cuda: bool,
    /// The dtypes for which `backend = "auto"` takes it on a CPU, in registry order.
    pub auto_on_cpu: &'static [Dtype],
    /// Loads it. An [`Error::Export`] means its files are not there (or stale): `auto`
    /// then falls back to the reference runtime.
    pub load: fn(&LoadRequest<'_>) -> Result<Box<dyn Runtime>>,
    /// Loads it on an image backbone, for a runtime that runs them (f32 only).
    pub load_image: Option<LoadImage>,
}

impl RuntimeSpec {
    fn runs(&self, dtype: Dtype, device: Device) -> bool {
        self.dtypes.contains(&dtype) && (device == Device::Cpu || self.cuda)
    }
}

/// The registered runtime named `name` (or one of its aliases).
pub(crate) fn spec(name: &str) -> Option<&'static RuntimeSpec> {
    REGISTRY
        .iter()
        .copied()
        .find(|s| s.name == name || s.aliases.contains(&name))
}

/// Why `name` is not a runtime of this build.
pub(crate) fn unknown(name: &str) -> Error {
    if let Some((_, feature)) = OPTIONAL.iter().find(|(n, _)| *n == name) {
        return Error::InvalidOption(format!(
            "backend {name:?} is not in this build (it was built without the cargo feature \
             `{feature}`)"
        ));
    }
    let mut names: Vec<&str> = std::iter::once("auto")
        .chain(REGISTRY.iter().map(|s| s.name))
        .collect();
    let last = names.pop().unwrap_or("auto");
    Error::InvalidOption(format!(
        "backend {name:?}: use {} or {last}",
        names.join(", ")
    ))
}

fn list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// Why `spec` cannot run `dtype` on `device`, naming the runtimes that can.
fn refusal(spec: &RuntimeSpec, dtype: Dtype, device: Device) -> Error {
    if device != Device::Cpu && !spec.cuda {
        return Error::InvalidOption(format!(
            "the {} backend runs on the CPU only, not {device}; use backend = \"torch\"",
            spec.name
        ));
    }
    let runs: Vec<String> = spec.dtypes.iter().map(|d| d.to_string()).collect();
    let others: Vec<&str> = REGISTRY
        .iter()
        .filter(|s| s.runs(dtype, device))
        .map(|s| s.name)
        .collect();
    let instead = match others.as_slice() {
        [] => format!("no backend of this build runs {dtype} on {device}"),
        [one] => format!("{dtype} runs on the {one} backend"),
        many => format!("{dtype} runs on the {} backends", many.join(" and ")),
    };
    Error::InvalidOption(format!(
        "the {} backend runs {}, not {dtype} ({instead})",
        spec.name,
        list(&runs)
    ))
}

/// Chooses and loads the runtime `request.options` ask for: the named one at the
/// dtype asked (`auto`: bf16 where the hardware runs it natively and the runtime
/// can, else f32), or under `auto` the first registered runtime that prefers the
/// dtype on a CPU, falling back (logged) to torch when its files are missing.
pub(crate) fn load(request: LoadRequest<'_>) -> Result<(&'static RuntimeSpec, Box<dyn Runtime>)> {
    let options = request.options;
    let device = options.device;
    let native = options.dtype.resolve(device);
    match options.backend.name() {
        Some(name) => {
            let spec = spec(name).ok_or_else(|| unknown(name))?;
            let dtype = match options.dtype {
                Dtype::Auto if !spec.runs(native, device) => Dtype::F32,
                _ => native,
            };
            if !spec.runs(dtype, device) {
                return Err(refusal(spec, dtype, device));
            }
            let runtime = (spec.load)(&LoadRequest { dtype, ..request })?;
            Ok((spec, runtime))
        }
        None => {
            let dtype = native;
            let reference = spec(REFERENCE).ok_or_else(|| unknown(REFERENCE))?;
            let preferred = match device {
                Device::Cpu => REGISTRY
                    .iter()
                    .copied()
                    .find(|s| s.auto_on_cpu.contains(&dtype)),
                Device::Cuda(_) => None,
            };
            let request = LoadRequest { dtype, ..request };
            if let Some(spec) = preferred {
                match (spec.load)(&request) {
                    Ok(runtime) => return Ok((spec, runtime)),
                    Err(e @ Error::Export { .. }) if reference.runs(dtype, device) => {
                        tracing::warn!(reason = %e, %dtype, "backend auto: no usable export, using torch");
                    }
                    Err(e) => return Err(e),
                }
            }
            if !reference.runs(dtype, device) {
                return Err(refusal(reference, dtype, device));
            }
            Ok((reference, (reference.load)(&request)?))
        }
    }
}

/// Chooses and loads the runtime for an image backbone: the named one if it runs
/// pictures, or under `auto` the first registered runtime that `auto` takes on a
/// CPU and runs pictures, falling back (logged) to torch when its files are missing.
/// Pictures run in f32 (`auto` too): the exported graphs are f32.
pub(crate) fn load_image(
    request: ImageLoad<'_>,
) -> Result<(&'static RuntimeSpec, Box<dyn Runtime>)> {
    let options = request.options;
    if !matches!(options.dtype, Dtype::Auto | Dtype::F32) {
        return Err(Error::InvalidOption(format!(
            "image backbones run f32, not {} (use dtype = \"auto\" or \"f32\")",
            options.dtype
        )));
    }
    let runs_images: Vec<&str> = REGISTRY
        .iter()
        .filter(|s| s.load_image.is_some())
        .map(|s| s.name)
        .collect();
    let refuse = |spec: &RuntimeSpec| {
        Error::InvalidOption(format!(
            "the {} backend runs text backbones only; image backbones run on {}",
            spec.name,
            runs_images.join(" or ")
        ))
    };
    match options.backend.name() {
        Some(name) => {
            let spec = spec(name).ok_or_else(|| unknown(name))?;
            let load = spec.load_image.ok_or_else(|| refuse(spec))?;
            if request.device != Device::Cpu && !spec.cuda {
                return Err(refusal(spec, Dtype::F32, request.device));
            }
            Ok((spec, load(&request)?))
        }
        None => {
            let reference = spec(REFERENCE).ok_or_else(|| unknown(REFERENCE))?;
            if request.device == Device::Cpu {
                let preferred = REGISTRY
                    .iter()
                    .copied()
                    .find(|s| !s.auto_on_cpu.is_empty() && s.load_image.is_some());
                if let Some((spec, load)) = preferred.and_then(|s| Some((s, s.load_image?))) {
                    match load(&request) {
                        Ok(runtime) => return Ok((spec, runtime)),
                        Err(e @ Error::Export { .. }) => {
                            tracing::warn!(reason = %e, "backend auto: no usable image graph, using torch");
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
            let load = reference.load_image.ok_or_else(|| refuse(reference))?;
            Ok((reference, load(&request)?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{testing::model_dir, Backend, Encoder};

    #[test]
    fn a_runtime_is_one_module_and_one_registry_line() {
        // `echo` (runtime/echo.rs, registered only in tests) is a whole runtime: the
        // encoder loads on it by name, pools and normalises its states, and reports it.
        let backend: Backend = "echo".parse().unwrap();
        let mut options = EncoderOptions::default();
        options.backend(backend).dtype(Dtype::Auto);
        let encoder = Encoder::load(&model_dir(), &options).unwrap();
        assert_eq!(encoder.info().backend, "echo");
        assert_eq!(encoder.info().dtype, "f32");
        let emb = encoder
            .embed(&["hello world", "a longer text than that one"])
            .unwrap();
        assert_eq!(emb.len(), 2);
        for row in emb.rows() {
            let norm: f32 = row.iter().map(|v| v * v).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-5, "{norm}");
        }
        assert_ne!(emb.row(0), emb.row(1), "the states depend on the tokens");
        // Its declared limits are held to: it runs f32 only.
        options.dtype(Dtype::Bf16);
        let err = Encoder::load(&model_dir(), &options).unwrap_err();
        assert!(
            err.to_string()
                .contains("the echo backend runs f32, not bf16"),
            "{err}"
        );
    }

    #[test]
    fn padded_batches_mask_what_they_pad() {
        let b = TokenBatch::padded(&[&[5, 6, 7], &[8]]);
        assert_eq!((b.rows, b.cols), (2, 3));
        assert_eq!(b.ids, vec![5, 6, 7, 8, 0, 0]);
        assert_eq!(b.mask, vec![1, 1, 1, 1, 0, 0]);
        let empty = TokenBatch::padded(&[&[]]);
        assert_eq!(
            (empty.rows, empty.cols, empty.mask.as_slice()),
            (1, 1, &[0][..])
        );
    }

    #[test]
    fn unknown_names_list_the_runtimes_of_this_build() {
        let err = unknown("tensorrt").to_string();
        assert!(err.contains("use auto, torch"), "{err}");
        for s in REGISTRY {
            assert!(err.contains(s.name), "{err}");
        }
        // A runtime polyhead knows but a build left out names the cargo feature (here
        // asked directly: this build has both).
        for (name, feature) in OPTIONAL {
            let err = unknown(name).to_string();
            assert!(err.contains(&format!("cargo feature `{feature}`")), "{err}");
        }
    }
}
