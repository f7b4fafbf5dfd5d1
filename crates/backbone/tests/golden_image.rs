//! Golden parity of the image backbone with the PyTorch reference (fixtures:
//! scripts/golden_image.py): the preprocessing against PIL + torchvision's recipe,
//! the network on each runtime against the eager PyTorch model, and both together.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test
mod common;
use std::path::PathBuf;

use common::cosine;
use polyhead_backbone::{
    testing::image_model_dir, Backend, Encoded, Encoder, EncoderOptions, Input,
};
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixture {
    preprocess: Preprocess,
    cases: Vec<Case>,
}

#[derive(Deserialize, Debug, PartialEq)]
struct Preprocess {
    resize: u32,
    crop: u32,
    mean: [f32; 3],
    std: [f32; 3],
}

#[derive(Deserialize)]
struct Case {
    file: String,
    crop: String,
    features: Vec<f32>,
}

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/images")
}

fn fixture() -> Fixture {
    serde_json::from_slice(&std::fs::read(dir().join("golden.json")).unwrap()).unwrap()
}

fn encoder(backend: Backend) -> Encoder {
    let mut options = EncoderOptions::default();
    options.backend(backend).batch_size(4);
    let enc = Encoder::load(&image_model_dir(), &options)
        .unwrap_or_else(|e| panic!("{e} (run scripts/setup.sh first)"));
    if backend != Backend::AUTO {
        assert_eq!(enc.info().backend, backend.to_string());
    }
    assert_eq!(enc.info().input, "image");
    enc
}

/// The reference crop (RGB bytes, row-major).
fn reference_crop(fx: &Fixture, case: &Case) -> Vec<u8> {
    let crop = image::open(dir().join(&case.crop)).unwrap().to_rgb8();
    assert_eq!(crop.dimensions(), (fx.preprocess.crop, fx.preprocess.crop));
    crop.into_raw()
}

fn pixels(e: &Encoded) -> &[u8] {
    match e {
        Encoded::Pixels { rgb, .. } => rgb,
        other => panic!("not pixels: {other:?}"),
    }
}

#[test]
fn the_model_folder_has_the_references_constants() {
    // The constants the preprocessing reads (image_config.json, written by
    // scripts/export_image.py) are the ones the reference fixture was made with.
    let config: Preprocess = serde_json::from_slice(
        &std::fs::read(image_model_dir().join("image_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(config, fixture().preprocess);
}

#[test]
fn preprocessing_matches_pil_and_torchvision() {
    // Decode (JPEG, PNG, WebP; grey and RGBA to RGB), resize and crop against PIL's
    // bilinear resize and torchvision's crop, on every fixture picture, in grey levels.
    let fx = fixture();
    let enc = encoder(Backend::ONNX_RUNTIME);
    for case in &fx.cases {
        let bytes = std::fs::read(dir().join(&case.file)).unwrap();
        let got = enc.encode(&[Input::Image(bytes)]).unwrap();
        let got = pixels(&got[0]);
        let want = reference_crop(&fx, case);
        assert_eq!(got.len(), want.len(), "{}", case.file);
        let steps: Vec<f32> = got
            .iter()
            .zip(&want)
            .map(|(g, w)| f32::from(g.abs_diff(*w)))
            .collect();
        let mean = steps.iter().sum::<f32>() / steps.len() as f32;
        let max = steps.iter().copied().fold(0.0, f32::max);
        eprintln!("{}: mean |diff| {mean:.3} levels, max {max:.1}", case.file);
        assert!(mean <= 1.0, "{}: mean diff {mean} levels", case.file);
        assert!(max <= 12.0, "{}: max diff {max} levels", case.file);
    }
}

fn network_parity(backend: Backend) {
    // The network alone: the reference crop in, the eager PyTorch model's features out.
    let fx = fixture();
    let enc = encoder(backend);
    let encoded: Vec<Encoded> = fx
        .cases
        .iter()
        .map(|c| Encoded::Pixels {
            rgb: reference_crop(&fx, c),
            cost: 196,
        })
        .collect();
    let got = enc.embed_encoded(&encoded).unwrap();
    for (i, case) in fx.cases.iter().enumerate() {
        let cos = cosine(got.row(i), &case.features);
        eprintln!("{backend} {}: cosine {cos:.7}", case.file);
        assert!(cos >= 0.9999, "{backend} {}: cosine {cos}", case.file);
    }
    // Batched equals one by one.
    let one = enc.embed_encoded(&encoded[2..3]).unwrap();
    assert!(cosine(one.row(0), got.row(2)) >= 0.99999);
}

#[test]
fn onnxruntime_network_matches_pytorch() {
    network_parity(Backend::ONNX_RUNTIME);
}

#[test]
fn torch_network_matches_pytorch() {
    network_parity(Backend::TORCH);
}

#[test]
fn bytes_to_features_match_the_reference_pipeline() {
    // Everything together, as a request runs: file bytes in, features out, against
    // the reference's PIL preprocessing + PyTorch model.
    let fx = fixture();
    let enc = encoder(Backend::AUTO);
    // `auto` on a CPU takes ONNX Runtime for pictures (f32), whatever the CPU's bf16.
    assert_eq!(
        (enc.info().backend.as_str(), enc.info().dtype.as_str()),
        ("onnxruntime", "f32")
    );
    let inputs: Vec<Input> = fx
        .cases
        .iter()
        .map(|c| Input::Image(std::fs::read(dir().join(&c.file)).unwrap()))
        .collect();
    let got = enc.embed_inputs(&inputs).unwrap();
    for (i, case) in fx.cases.iter().enumerate() {
        let cos = cosine(got.row(i), &case.features);
        eprintln!("{}: cosine {cos:.6}", case.file);
        assert!(cos >= 0.999, "{}: cosine {cos}", case.file);
    }
}

#[test]
fn broken_pictures_are_input_errors() {
    let enc = encoder(Backend::ONNX_RUNTIME);
    let jpeg = std::fs::read(dir().join("shapes.jpg")).unwrap();
    // A truncated JPEG (half its bytes).
    let err = enc
        .encode(&[Input::Image(jpeg[..jpeg.len() / 2].to_vec())])
        .unwrap_err();
    assert!(matches!(err, polyhead_backbone::Error::Input(_)), "{err}");
    assert!(err.to_string().contains("truncated"), "{err}");
    // A truncated PNG and WebP.
    for file in ["gradient.png", "tall.webp"] {
        let bytes = std::fs::read(dir().join(file)).unwrap();
        let err = enc
            .encode(&[Input::Image(bytes[..bytes.len() / 2].to_vec())])
            .unwrap_err();
        assert!(
            matches!(err, polyhead_backbone::Error::Input(_)),
            "{file}: {err}"
        );
    }
    // A decompression bomb: a 1 x 1 PNG (81 bytes) whose header declares 100000 x
    // 100000 pixels (30 GB as RGB), refused from the header.
    let mut bomb = Vec::new();
    image::RgbImage::new(1, 1)
        .write_to(
            &mut std::io::Cursor::new(&mut bomb),
            image::ImageFormat::Png,
        )
        .unwrap();
    // IHDR's data starts at byte 16: width, height (big-endian), then its CRC at 29.
    bomb[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    bomb[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    let crc = crc32(&bomb[12..29]);
    bomb[29..33].copy_from_slice(&crc.to_be_bytes());
    let err = enc.encode(&[Input::Image(bomb)]).unwrap_err();
    assert!(
        err.to_string().contains("backbone.max_image_pixels"),
        "{err}"
    );
    // A 1 x 1 picture is upscaled and answered.
    let mut one = Vec::new();
    image::RgbImage::from_pixel(1, 1, image::Rgb([200, 10, 10]))
        .write_to(&mut std::io::Cursor::new(&mut one), image::ImageFormat::Png)
        .unwrap();
    let emb = enc.embed_inputs(&[Input::Image(one)]).unwrap();
    assert!(emb.row(0).iter().all(|v| v.is_finite()));
    // A text sent to an image backbone.
    let err = enc.encode(&[Input::from("hello")]).unwrap_err();
    assert!(err.to_string().contains("reads images"), "{err}");
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
