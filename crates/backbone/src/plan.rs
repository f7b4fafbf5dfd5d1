//! Which backend runs the transformer, and at which dtype: the configuration's `auto`s
//! resolved, impossible pairs refused, exports found and checked before anything loads.
use std::path::Path;

use crate::{
    onnx::{self, OnnxExport},
    ov::{self, OvExport},
    Backend, Device, Dtype, EncoderOptions, Error, Result,
};

/// The backend [`choose`] settled on, with what it needs to load.
pub(crate) enum Plan {
    Torch,
    Onnx(OnnxExport),
    OpenVino(OvExport),
}

/// The backend and dtype `options` ask for, decided: `auto`s resolved, impossible
/// pairs refused, and for ONNX Runtime and OpenVINO the export found and checked
/// against `weights`.
pub(crate) fn choose(
    dir: &Path,
    options: &EncoderOptions,
    weights: &[u8],
) -> Result<(Dtype, Plan)> {
    let onnx_dir = options
        .onnx_dir
        .clone()
        .unwrap_or_else(|| onnx::default_dir(dir));
    let ort_lib = options.onnxruntime_lib.as_deref();
    let openvino = |dtype: Dtype| -> Result<Plan> {
        if dtype == Dtype::Int8 {
            return Err(Error::InvalidOption(
                "the openvino backend runs f32 or bf16, not int8 (int8 runs on onnxruntime)".into(),
            ));
        }
        let export = ov::locate(&onnx_dir, options.openvino_lib.as_deref(), weights)?;
        Ok(Plan::OpenVino(export))
    };
    let cpu = options.device == Device::Cpu;
    let not_cpu = |name: &str| {
        Error::InvalidOption(format!(
            "the {name} backend runs on the CPU only, not {}; use backend = \"torch\"",
            options.device
        ))
    };
    match options.backend {
        Backend::Torch => match options.dtype.resolve(options.device) {
            Dtype::Int8 => Err(Error::InvalidOption(
                "dtype int8 runs on the onnxruntime backend only (backend = \"onnxruntime\")"
                    .into(),
            )),
            d => Ok((d, Plan::Torch)),
        },
        Backend::OnnxRuntime => {
            if !cpu {
                return Err(not_cpu("onnxruntime"));
            }
            let dtype = match options.dtype {
                Dtype::Auto => Dtype::F32,
                d => d,
            };
            let export = onnx::locate(&onnx_dir, ort_lib, dtype, weights)?;
            Ok((dtype, Plan::Onnx(export)))
        }
        Backend::OpenVino => {
            if !cpu {
                return Err(not_cpu("openvino"));
            }
            let dtype = options.dtype.resolve(options.device);
            Ok((dtype, openvino(dtype)?))
        }
        Backend::Auto => {
            // CUDA is torch's; bf16 (CPUs with AMX) OpenVINO's, f32 and int8 on a
            // CPU ONNX Runtime's, each when its export and library are there, torch
            // otherwise.
            let dtype = options.dtype.resolve(options.device);
            if !cpu {
                return Ok((dtype, Plan::Torch));
            }
            let plan = if dtype == Dtype::Bf16 {
                openvino(dtype)
            } else {
                onnx::locate(&onnx_dir, ort_lib, dtype, weights).map(Plan::Onnx)
            };
            match plan {
                Ok(plan) => Ok((dtype, plan)),
                Err(e) if dtype == Dtype::Int8 => Err(e),
                Err(e) => {
                    tracing::warn!(reason = %e, %dtype, "backend auto: no usable export, using torch");
                    Ok((dtype, Plan::Torch))
                }
            }
        }
    }
}
