//! The `openvino` runtime: the transformer as OpenVINO IR (converted from the unfused
//! ONNX graph by `scripts/export_onnx.py`), compiled for OpenVINO's CPU plugin. Its
//! inference precision follows the dtype: f32, or bf16 where the CPU runs bf16
//! natively (AMX, AVX512-BF16), which is OpenVINO's own default there. The C library
//! (`libopenvino_c.so` from the PyPI `openvino` wheel) is loaded at run time, so the
//! binary builds and runs without it when another backend is used.
use std::{
    path::{Path, PathBuf},
    sync::{Mutex, OnceLock},
};

use openvino::{
    CompiledModel, Core, DeviceType, ElementType, InferRequest, PropertyKey, RwPropertyKey, Shape,
    Tensor,
};

use super::{
    export::{library, missing, read_meta, FIX},
    LoadRequest, Runtime, RuntimeSpec, TokenBatch,
};
use crate::{Dtype, Error, Result};

const NAME: &str = "openvino";

/// The registration.
pub(crate) static SPEC: RuntimeSpec = RuntimeSpec {
    name: NAME,
    aliases: &["ov"],
    dtypes: &[Dtype::F32, Dtype::Bf16],
    cuda: false,
    auto_on_cpu: &[Dtype::Bf16],
    load,
    load_image: None,
};

fn fail(message: String) -> Error {
    Error::Runtime {
        runtime: NAME,
        message,
    }
}

fn err(what: &str) -> impl Fn(openvino::InferenceError) -> Error + '_ {
    move |e| fail(format!("{what}: {e}"))
}

/// Finds and checks the IR and the library, and compiles the model for the CPU.
fn load(request: &LoadRequest<'_>) -> Result<Box<dyn Runtime>> {
    let export = locate(
        &request.export_dir(),
        request.options.openvino_lib.as_deref(),
        request.weights,
    )?;
    let model = OvModel::load(&export, request.dtype, request.threads, request.hidden())?;
    if model.precision != request.dtype {
        tracing::warn!(
            asked = %request.dtype,
            running = %model.precision,
            "OpenVINO runs another precision on this CPU (bf16 needs AMX or AVX512-BF16)"
        );
    }
    Ok(Box::new(model))
}

/// The C library can be loaded once per process: the first load wins, and a later
/// request for another library is an error.
static LIBRARY: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();

fn load_library(lib: &Path) -> Result<()> {
    let loaded = LIBRARY.get_or_init(|| {
        openvino_sys::library::load_from(lib)
            .map(|()| lib.to_owned())
            .map_err(|e| format!("cannot load {}: {e}", lib.display()))
    });
    match loaded {
        Ok(first) if first == lib => Ok(()),
        Ok(first) => Err(fail(format!(
            "this process already loaded OpenVINO from {}; cannot also load {}",
            first.display(),
            lib.display()
        ))),
        Err(e) => Err(fail(e.clone())),
    }
}

/// The IR and the library, found and checked by [`locate`].
#[derive(Debug, Clone)]
struct OvExport {
    xml: PathBuf,
    lib: PathBuf,
}

/// Finds the OpenVINO IR (`.xml`, its weights in the `.bin` beside it) of the export
/// in `dir` and the C library (`lib`, else `libopenvino_c.so` in `dir`), and checks
/// that the export was made from exactly `weights`. Every failure says what to run.
fn locate(dir: &Path, lib: Option<&Path>, weights: &[u8]) -> Result<OvExport> {
    let meta = read_meta(NAME, dir, weights)?;
    let Some(file) = meta.files.openvino else {
        return Err(missing(
            NAME,
            format!(
                "{} has no OpenVINO IR (an export older than the openvino backend); {FIX}",
                dir.display()
            ),
        ));
    };
    let xml = dir.join(file);
    if !xml.is_file() || !xml.with_extension("bin").is_file() {
        return Err(missing(
            NAME,
            format!("{} is missing; {FIX}", xml.display()),
        ));
    }
    let lib = library(
        NAME,
        lib,
        None,
        dir.join("libopenvino_c.so"),
        "OpenVINO C (set backbone.openvino_lib)",
    )?;
    Ok(OvExport { xml, lib })
}

/// One compiled model and its (reused) inference request.
struct OvModel {
    // `infer` needs `&mut`; the encoder is owned by one thread, so the lock is never
    // contended.
    request: Mutex<InferRequest>,
    // The request needs the compiled model and the core alive.
    _compiled: CompiledModel,
    _core: Core,
    hidden: usize,
    /// The precision OpenVINO compiled for (`f32` or `bf16`), read back from it.
    precision: Dtype,
}

impl OvModel {
    /// Compiles `export` for the CPU with `threads` threads in one stream, at
    /// `dtype`'s precision (f32 or bf16).
    fn load(export: &OvExport, dtype: Dtype, threads: usize, hidden: usize) -> Result<OvModel> {
        let hint = match dtype {
            Dtype::F32 => "f32",
            Dtype::Bf16 => "bf16",
            other => return Err(fail(format!("asked to run {other}, not f32 or bf16"))),
        };
        load_library(&export.lib)?;
        let mut core = Core::new().map_err(|e| fail(format!("core: {e}")))?;
        let cpu = DeviceType::CPU;
        let threads = threads.to_string();
        for (key, value) in [
            (RwPropertyKey::InferenceNumThreads, threads.as_str()),
            // One stream, latency hint: every request gets all the threads; the
            // server's batcher makes the batches.
            (RwPropertyKey::NumStreams, "1"),
            (RwPropertyKey::HintPerformanceMode, "LATENCY"),
            (RwPropertyKey::HintInferencePrecision, hint),
        ] {
            core.set_property(&cpu, &key, value)
                .map_err(err("setting a CPU property"))?;
        }
        let xml = export.xml.to_string_lossy();
        let bin = export.xml.with_extension("bin");
        let model = core
            .read_model_from_file(&xml, &bin.to_string_lossy())
            .map_err(err("reading the IR"))?;
        let mut compiled = core
            .compile_model(&model, cpu)
            .map_err(err("compiling for the CPU"))?;
        let precision = compiled
            .get_property(&PropertyKey::Rw(RwPropertyKey::HintInferencePrecision))
            .map_err(err("reading the inference precision"))?;
        let precision = match precision.as_ref() {
            "bf16" => Dtype::Bf16,
            "f32" => Dtype::F32,
            other => {
                return Err(fail(format!(
                    "compiled for precision {other:?}, expected f32 or bf16"
                )))
            }
        };
        let request = compiled
            .create_infer_request()
            .map_err(err("creating a request"))?;
        Ok(OvModel {
            request: Mutex::new(request),
            _compiled: compiled,
            _core: core,
            hidden,
            precision,
        })
    }
}

impl Runtime for OvModel {
    fn dtype(&self) -> Dtype {
        self.precision
    }

    fn forward(&self, batch: &TokenBatch) -> Result<Vec<f32>> {
        let (input, mask, rows, cols) = (&batch.ids, &batch.mask, batch.rows, batch.cols);
        let shape = Shape::new(&[rows as i64, cols as i64]).map_err(err("shape"))?;
        let tensor = |data: &[i64]| -> Result<Tensor> {
            let mut t = Tensor::new(ElementType::I64, &shape).map_err(err("tensor"))?;
            t.get_data_mut::<i64>()
                .map_err(err("tensor"))?
                .copy_from_slice(data);
            Ok(t)
        };
        let (ids, mask) = (tensor(input)?, tensor(mask)?);
        let mut request = self
            .request
            .lock()
            .map_err(|_| fail("request lock poisoned".into()))?;
        request
            .set_tensor("input_ids", &ids)
            .map_err(err("input_ids"))?;
        request
            .set_tensor("attention_mask", &mask)
            .map_err(err("attention_mask"))?;
        request.infer().map_err(err("inference"))?;
        let out = request
            .get_output_tensor_by_index(0)
            .map_err(err("output"))?;
        let out_shape = out.get_shape().map_err(err("output shape"))?;
        let want = [rows as i64, cols as i64, self.hidden as i64];
        if out_shape.get_dimensions() != want {
            return Err(fail(format!(
                "the model returned shape {:?}, expected {want:?}",
                out_shape.get_dimensions()
            )));
        }
        Ok(out.get_data::<f32>().map_err(err("output"))?.to_vec())
    }
}
