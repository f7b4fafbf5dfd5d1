//! The image family: a pretrained CNN converted by `scripts/export_image.py` into a
//! folder with `image_config.json` (feature width and preprocessing) and its graphs,
//! and the preprocessing written once: decode (JPEG, PNG, WebP; the header checked
//! against the limits before any pixel is decoded), RGB, the shorter side resized
//! to `resize` (bilinear with antialiasing, the longer side truncated as
//! torchvision's `Resize` does), a centre crop of `crop` (torchvision's
//! `CenterCrop` rounding), then `(v / 255 - mean) / std` per channel, laid out
//! channels first. `tests/golden_image.rs` checks it against PIL + torchvision's
//! recipe (`scripts/golden_image.py`).
use std::{io::Cursor, path::Path};

use image::{imageops::FilterType, ImageFormat, ImageReader, Limits, RgbImage};
use serde::Deserialize;

use crate::{config::read, Error, Result};

/// `image_config.json`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ImageConfig {
    /// Always `image`.
    pub family: String,
    /// The network's name (`efficientnet-lite0`).
    pub architecture: String,
    /// Feature width.
    pub dim: usize,
    /// The shorter side is resized to this.
    pub resize: u32,
    /// Then a centre square of this side is cut.
    pub crop: u32,
    /// Per-channel mean (RGB, of values in 0..1).
    pub mean: [f32; 3],
    /// Per-channel standard deviation.
    pub std: [f32; 3],
    /// Whether features are L2-normalised.
    #[serde(default)]
    pub normalize: bool,
    /// sha256 of the weights the graphs were converted from.
    pub source_model_sha256: String,
}

/// The file that marks a model folder as an image backbone.
pub(crate) const CONFIG_FILE: &str = "image_config.json";

impl ImageConfig {
    /// Reads and checks `dir/image_config.json`.
    pub fn from_dir(dir: &Path) -> Result<ImageConfig> {
        let path = dir.join(CONFIG_FILE);
        let bytes = read(&path)?;
        let config: ImageConfig = serde_json::from_slice(&bytes).map_err(|source| Error::Json {
            path: path.clone(),
            source,
        })?;
        let bad = |msg: String| Error::InvalidConfig {
            path: path.clone(),
            msg,
        };
        if config.family != "image" {
            return Err(bad(format!(
                "family {:?}, expected \"image\"",
                config.family
            )));
        }
        if config.dim == 0 || config.crop == 0 || config.resize < config.crop {
            return Err(bad(format!(
                "dim {} / resize {} / crop {}: need dim > 0 and resize >= crop > 0",
                config.dim, config.resize, config.crop
            )));
        }
        if config.std.iter().any(|s| !s.is_finite() || *s <= 0.0)
            || config.mean.iter().any(|m| !m.is_finite())
        {
            return Err(bad("mean and std must be finite, std > 0".into()));
        }
        Ok(config)
    }

    /// Bytes of one preprocessed picture (crop x crop x 3).
    pub fn values(&self) -> usize {
        3 * (self.crop as usize) * (self.crop as usize)
    }

    /// What one picture counts in the batch policy's unit: its 16 x 16 patches, so a
    /// pass budget in tokens holds a comparable amount of work.
    pub fn cost(&self) -> usize {
        (self.crop as usize).div_ceil(16).pow(2)
    }

    /// What the fingerprint hashes besides the weights.
    pub fn describe(&self) -> String {
        format!(
            "{}|{}|{}|{:?}|{:?}|{}",
            self.architecture, self.resize, self.crop, self.mean, self.std, self.normalize
        )
    }
}

/// The formats a request may send.
const FORMATS: &[(ImageFormat, &str)] = &[
    (ImageFormat::Jpeg, "JPEG"),
    (ImageFormat::Png, "PNG"),
    (ImageFormat::WebP, "WebP"),
];

fn bad(msg: impl Into<String>) -> Error {
    Error::Input(msg.into())
}

/// The decoded picture, checked against `max_pixels` from its header first (a small
/// file may declare a huge picture), then decoded under an allocation limit.
pub(crate) fn decode(bytes: &[u8], max_pixels: u64) -> Result<RgbImage> {
    if bytes.is_empty() {
        return Err(bad("the image is empty (0 bytes)"));
    }
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| bad(format!("cannot read the image: {e}")))?;
    let format = match reader.format() {
        Some(f) if FORMATS.iter().any(|(g, _)| *g == f) => f,
        Some(f) => {
            return Err(bad(format!(
                "unsupported image format {f:?}: send JPEG, PNG or WebP"
            )))
        }
        None => {
            return Err(bad(
                "the bytes are not a JPEG, PNG or WebP image (unrecognised header)",
            ))
        }
    };
    if format == ImageFormat::Jpeg && !ends_with_eoi(bytes) {
        return Err(bad(
            "the JPEG is truncated: it does not end with an end-of-image marker",
        ));
    }
    let (w, h) = ImageReader::with_format(Cursor::new(bytes), format)
        .into_dimensions()
        .map_err(|e| bad(format!("cannot read the {} header: {e}", name(format))))?;
    let pixels = u64::from(w) * u64::from(h);
    if w == 0 || h == 0 {
        return Err(bad(format!("the image is {w}x{h} pixels")));
    }
    if pixels > max_pixels {
        return Err(bad(format!(
            "the image declares {w}x{h} = {pixels} pixels; the limit is {max_pixels} \
             (backbone.max_image_pixels)"
        )));
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(w);
    limits.max_image_height = Some(h);
    // The decoder's buffers: the picture at up to 16 bytes a pixel (RGBA of 32-bit
    // floats is the widest layout), and a little for its tables.
    limits.max_alloc = Some(pixels.saturating_mul(16).saturating_add(1 << 20));
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(limits);
    let decoded = reader
        .decode()
        .map_err(|e| bad(format!("cannot decode the {} image: {e}", name(format))))?;
    Ok(decoded.to_rgb8())
}

/// Whether a JPEG ends with its end-of-image marker (FF D9), trailing zero bytes
/// allowed: the decoder fills a truncated picture with grey without a word, where
/// PIL refuses it.
fn ends_with_eoi(bytes: &[u8]) -> bool {
    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    bytes[..end].ends_with(&[0xFF, 0xD9])
}

fn name(format: ImageFormat) -> &'static str {
    FORMATS
        .iter()
        .find(|(f, _)| *f == format)
        .map_or("image", |(_, n)| n)
}

/// The size the shorter side's resize gives, as torchvision's `Resize(int)`: the
/// shorter side to `target`, the longer scaled and truncated.
fn resized(w: u32, h: u32, target: u32) -> (u32, u32) {
    let scale = |long: u32, short: u32| {
        ((u64::from(target) * u64::from(long)) / u64::from(short)).clamp(1, u64::from(u32::MAX))
            as u32
    };
    if w <= h {
        (target, scale(h, w))
    } else {
        (scale(w, h), target)
    }
}

/// The resized and cropped picture (crop x crop RGB), before normalisation.
pub(crate) fn crop(image: &RgbImage, config: &ImageConfig, max_pixels: u64) -> Result<RgbImage> {
    let (w, h) = resized(image.width(), image.height(), config.resize);
    if u64::from(w) * u64::from(h) > max_pixels.max(u64::from(config.resize).pow(2)) {
        return Err(bad(format!(
            "the image is {}x{}: resizing its shorter side to {} would make {w}x{h} pixels, \
             over the limit of {max_pixels} (backbone.max_image_pixels); send a picture \
             closer to square",
            image.width(),
            image.height(),
            config.resize
        )));
    }
    let resized = if (w, h) == image.dimensions() {
        image.clone()
    } else {
        image::imageops::resize(image, w, h, FilterType::Triangle)
    };
    let c = config.crop;
    // torchvision's CenterCrop: int(round((h - c) / 2)), round half to even.
    let offset = |side: u32| ((f64::from(side - c)) / 2.0).round_ties_even() as u32;
    Ok(image::imageops::crop_imm(&resized, offset(w), offset(h), c, c).to_image())
}

/// Appends the normalised values of a crop's RGB bytes (HWC), channels first.
pub(crate) fn normalise_into(rgb: &[u8], config: &ImageConfig, out: &mut Vec<f32>) {
    let plane = rgb.len() / 3;
    let start = out.len();
    out.resize(start + 3 * plane, 0.0);
    let dst = &mut out[start..];
    let scale: [f32; 3] = std::array::from_fn(|c| 1.0 / (255.0 * config.std[c]));
    let shift: [f32; 3] = std::array::from_fn(|c| config.mean[c] / config.std[c]);
    for (i, px) in rgb.chunks_exact(3).enumerate() {
        for c in 0..3 {
            dst[c * plane + i] = f32::from(px[c]) * scale[c] - shift[c];
        }
    }
}

/// A picture as a small `side` x `side` RGB thumbnail (the whole picture squashed,
/// values in 0..1, row-major RGB): what a from-scratch baseline reads. Decoded under
/// the same limits as the network's input.
pub fn thumbnail(bytes: &[u8], side: u32, max_pixels: u64) -> Result<Vec<f32>> {
    let image = decode(bytes, max_pixels)?;
    let small = image::imageops::resize(&image, side.max(1), side.max(1), FilterType::Triangle);
    Ok(small
        .as_raw()
        .iter()
        .map(|&v| f32::from(v) / 255.0)
        .collect())
}

/// Bytes of one picture to the crop the network reads (crop x crop x 3 RGB bytes;
/// [`normalise_into`] makes its values).
pub(crate) fn preprocess(bytes: &[u8], config: &ImageConfig, max_pixels: u64) -> Result<Vec<u8>> {
    let image = decode(bytes, max_pixels)?;
    Ok(crop(&image, config, max_pixels)?.into_raw())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ImageConfig {
        ImageConfig {
            family: "image".into(),
            architecture: "test".into(),
            dim: 8,
            resize: 256,
            crop: 224,
            mean: [0.5; 3],
            std: [0.25; 3],
            normalize: false,
            source_model_sha256: String::new(),
        }
    }

    fn png(w: u32, h: u32) -> Vec<u8> {
        let mut out = Vec::new();
        RgbImage::from_pixel(w, h, image::Rgb([10, 20, 30]))
            .write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
            .unwrap();
        out
    }

    #[test]
    fn resize_follows_torchvision() {
        assert_eq!(resized(320, 240, 256), (341, 256));
        assert_eq!(resized(200, 400, 256), (256, 512));
        assert_eq!(resized(1, 1, 256), (256, 256));
    }

    #[test]
    fn one_pixel_is_upscaled_and_answered() {
        let rgb = preprocess(&png(1, 1), &config(), 1 << 20).unwrap();
        assert_eq!(rgb.len(), 3 * 224 * 224);
        assert_eq!(&rgb[..3], &[10, 20, 30]);
        let mut v = Vec::new();
        normalise_into(&rgb, &config(), &mut v);
        // Channels first: R's plane, then G's.
        let r = (10.0 / 255.0 - 0.5) / 0.25;
        let g = (20.0 / 255.0 - 0.5) / 0.25;
        assert!((v[0] - r).abs() < 1e-5, "{}", v[0]);
        assert!((v[224 * 224] - g).abs() < 1e-5, "{}", v[224 * 224]);
    }

    #[test]
    fn a_declared_size_over_the_limit_is_refused_before_decoding() {
        let err = preprocess(&png(300, 300), &config(), 300 * 299).unwrap_err();
        assert!(matches!(err, Error::Input(_)), "{err}");
        assert!(
            err.to_string().contains("backbone.max_image_pixels"),
            "{err}"
        );
    }

    #[test]
    fn a_long_strip_is_refused_not_resized_into_a_huge_buffer() {
        let err = preprocess(&png(20_000, 2), &config(), 1 << 20).unwrap_err();
        assert!(err.to_string().contains("closer to square"), "{err}");
    }

    #[test]
    fn non_images_and_other_formats_are_named() {
        let err = preprocess(b"hello there", &config(), 1 << 20).unwrap_err();
        assert!(err.to_string().contains("not a JPEG, PNG or WebP"), "{err}");
        let mut gif = b"GIF89a".to_vec();
        gif.extend_from_slice(&[1, 0, 1, 0, 0, 0, 0]);
        let err = preprocess(&gif, &config(), 1 << 20).unwrap_err();
        assert!(
            err.to_string().contains("unsupported image format"),
            "{err}"
        );
        let err = preprocess(&[], &config(), 1 << 20).unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
    }
}
