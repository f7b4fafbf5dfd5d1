//! Choosing the backend: `auto` takes ONNX Runtime (f32, int8) or OpenVINO (bf16) only
//! with a matching export, a stale or missing export is refused (onnxruntime,
//! openvino) or logged and replaced by torch (auto), and impossible
//! backend/dtype/device pairs are refused with a clear error.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test
mod common;
use std::path::{Path, PathBuf};

use common::model_dir;
use polyhead_backbone::{Backend, Device, Dtype, Encoder, EncoderOptions, Error};

fn shipped_export() -> PathBuf {
    let mut s = model_dir().into_os_string();
    s.push("-onnx");
    PathBuf::from(s)
}

fn load(backend: Backend, dtype: Dtype, onnx_dir: Option<&Path>) -> Result<Encoder, Error> {
    let mut o = EncoderOptions::default();
    o.backend(backend)
        .dtype(dtype)
        .onnx_dir(onnx_dir.map(Path::to_owned));
    Encoder::load(&model_dir(), &o)
}

/// A copy of the shipped export whose export.json has `edit` applied.
fn edited_export(edit: impl Fn(&str) -> String) -> tempfile::TempDir {
    let src = shipped_export();
    let dir = tempfile::tempdir().unwrap();
    for f in [
        "model.onnx",
        "model.int8.onnx",
        "model.openvino.xml",
        "model.openvino.bin",
        "libonnxruntime.so",
        "libopenvino_c.so",
    ] {
        std::os::unix::fs::symlink(
            std::fs::canonicalize(src.join(f)).unwrap(),
            dir.path().join(f),
        )
        .unwrap();
    }
    let meta = std::fs::read_to_string(src.join("export.json")).unwrap();
    std::fs::write(dir.path().join("export.json"), edit(&meta)).unwrap();
    dir
}

#[test]
fn auto_uses_onnxruntime_with_the_shipped_export() {
    let enc = load(Backend::AUTO, Dtype::F32, None).unwrap();
    assert_eq!(enc.info().backend, "onnxruntime");
    assert_eq!(enc.info().dtype, "f32");
    // Same features as torch, hence the same fingerprint.
    let torch = load(Backend::TORCH, Dtype::F32, None).unwrap();
    assert_eq!(enc.info().fingerprint, torch.info().fingerprint);
}

#[test]
fn a_copy_of_the_export_loads_and_an_edited_hash_is_refused() {
    let same = edited_export(|m| m.to_owned());
    let enc = load(Backend::ONNX_RUNTIME, Dtype::F32, Some(same.path())).unwrap();
    assert_eq!(enc.info().backend, "onnxruntime");

    let stale = edited_export(|m| {
        let at = m.find("\"source_model_sha256\": \"").unwrap() + 24;
        let mut s = m.to_owned();
        s.replace_range(at..at + 4, "0000");
        s
    });
    let err = load(Backend::ONNX_RUNTIME, Dtype::F32, Some(stale.path())).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Export {
                runtime: "onnxruntime",
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("exported from other weights"),
        "{err}"
    );
    let err = load(Backend::OPENVINO, Dtype::F32, Some(stale.path())).unwrap_err();
    assert!(
        err.to_string().contains("exported from other weights"),
        "{err}"
    );
    // auto does not serve a stale export either: it falls back to torch.
    let enc = load(Backend::AUTO, Dtype::F32, Some(stale.path())).unwrap();
    assert_eq!(enc.info().backend, "torch");
    let enc = load(Backend::AUTO, Dtype::Bf16, Some(stale.path())).unwrap();
    assert_eq!(enc.info().backend, "torch");
    assert_eq!(enc.info().dtype, "bf16");
}

#[test]
fn openvino_loads_the_shipped_export_and_auto_takes_it_for_bf16() {
    let enc = load(Backend::OPENVINO, Dtype::F32, None).unwrap();
    assert_eq!(enc.info().backend, "openvino");
    assert_eq!(enc.info().dtype, "f32");
    let torch = load(Backend::TORCH, Dtype::F32, None).unwrap();
    assert_eq!(enc.info().fingerprint, torch.info().fingerprint);
    // bf16 is OpenVINO's under auto (the dtype reported is the one it compiled).
    let enc = load(Backend::AUTO, Dtype::Bf16, None).unwrap();
    assert_eq!(enc.info().backend, "openvino");
    // An export made before the openvino backend (format v1, no IR) is refused by
    // openvino, with what to run, and auto keeps ONNX Runtime for f32.
    let old = edited_export(|m| {
        m.replace("polyhead-onnx-v2", "polyhead-onnx-v1")
            .replace("\"openvino\": \"model.openvino.xml\"", "\"x\": \"y\"")
    });
    let err = load(Backend::OPENVINO, Dtype::F32, Some(old.path())).unwrap_err();
    assert!(err.to_string().contains("no OpenVINO IR"), "{err}");
    assert!(err.to_string().contains("scripts/setup.sh"), "{err}");
    let enc = load(Backend::AUTO, Dtype::F32, Some(old.path())).unwrap();
    assert_eq!(enc.info().backend, "onnxruntime");
}

#[test]
fn a_missing_export_is_refused_by_onnxruntime_and_replaced_by_torch_under_auto() {
    let empty = tempfile::tempdir().unwrap();
    let err = load(Backend::ONNX_RUNTIME, Dtype::F32, Some(empty.path())).unwrap_err();
    assert!(err.to_string().contains("export.json"), "{err}");
    assert!(err.to_string().contains("scripts/setup.sh"), "{err}");
    let enc = load(Backend::AUTO, Dtype::Auto, Some(empty.path())).unwrap();
    assert_eq!(enc.info().backend, "torch");
    // int8 exists only as an export: no silent change of dtype.
    let err = load(Backend::AUTO, Dtype::Int8, Some(empty.path())).unwrap_err();
    assert!(err.to_string().contains("export.json"), "{err}");
}

#[test]
fn impossible_combinations_are_refused() {
    let err = load(Backend::TORCH, Dtype::Int8, None).unwrap_err();
    assert!(matches!(err, Error::InvalidOption(_)), "{err}");
    assert!(err.to_string().contains("onnxruntime"), "{err}");
    let err = load(Backend::ONNX_RUNTIME, Dtype::Bf16, None).unwrap_err();
    assert!(
        err.to_string()
            .contains("bf16 runs on the torch and openvino backends"),
        "{err}"
    );
    let err = load(Backend::OPENVINO, Dtype::Int8, None).unwrap_err();
    assert!(matches!(err, Error::InvalidOption(_)), "{err}");
    assert!(
        err.to_string()
            .contains("int8 runs on the onnxruntime backend"),
        "{err}"
    );
    for backend in [Backend::ONNX_RUNTIME, Backend::OPENVINO] {
        let mut o = EncoderOptions::default();
        o.backend(backend).device(Device::Cuda(0));
        let err = Encoder::load(&model_dir(), &o).unwrap_err();
        assert!(err.to_string().contains("CPU only"), "{err}");
    }
    let err = "tensorrt".parse::<Backend>().unwrap_err();
    assert!(
        err.to_string()
            .contains("auto, torch, onnxruntime or openvino"),
        "{err}"
    );
}
