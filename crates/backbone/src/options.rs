//! Where and how the encoder runs: backend, device, dtype, threads, batch size.
use std::{fmt, path::PathBuf, str::FromStr};

use crate::{Error, Result};

/// The device the model runs on. In configuration it is the string `cpu`, `cuda`
/// or `cuda:N`, parsed once when the configuration is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(try_from = "String", into = "String")]
pub enum Device {
    /// The CPU (libtorch's intra-op thread pool).
    Cpu,
    /// CUDA device N.
    Cuda(usize),
}

impl FromStr for Device {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Device::Cuda)
                .ok_or_else(|| {
                    Error::InvalidOption(format!("device {s:?}: use cpu, cuda or cuda:N"))
                }),
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl TryFrom<String> for Device {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<Device> for String {
    fn from(d: Device) -> String {
        d.to_string()
    }
}

impl TryFrom<String> for Dtype {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<Dtype> for String {
    fn from(d: Dtype) -> String {
        d.to_string()
    }
}

/// What runs the transformer: `auto`, or a runtime of this build by name (`torch`,
/// `onnxruntime`, `openvino`; see `runtime/mod.rs` for the registry). In
/// configuration it is that string, checked against the registry when read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(into = "String")]
pub struct Backend(Option<&'static str>);

// By hand: derived, the `&'static str` inside would ask for a `'static` input.
impl<'de> serde::Deserialize<'de> for Backend {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl Backend {
    /// On a CPU: the first runtime that prefers the dtype (`openvino` for bf16, the
    /// dtype `auto` picks on CPUs with native bf16; `onnxruntime` for f32 and int8),
    /// when its export and library are there; `torch` otherwise (CUDA, no export).
    pub const AUTO: Backend = Backend(None);
    /// libtorch through tch: the reference runtime, CPU and CUDA, f32 and bf16.
    pub const TORCH: Backend = Backend(Some("torch"));
    /// ONNX Runtime's CPU execution provider on the graph `scripts/export_onnx.py`
    /// wrote (operators fused offline), f32 or int8; the library is loaded at start.
    pub const ONNX_RUNTIME: Backend = Backend(Some("onnxruntime"));
    /// OpenVINO's CPU plugin on the export's OpenVINO IR, f32 or bf16 (bf16 where
    /// the CPU runs it natively); the library is loaded at start.
    pub const OPENVINO: Backend = Backend(Some("openvino"));

    /// The runtime's name, or `None` for `auto`.
    pub fn name(self) -> Option<&'static str> {
        self.0
    }
}

impl FromStr for Backend {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        if s == "auto" {
            return Ok(Backend::AUTO);
        }
        crate::runtime::spec(s)
            .map(|spec| Backend(Some(spec.name)))
            .ok_or_else(|| crate::runtime::unknown(s))
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.unwrap_or("auto"))
    }
}

impl TryFrom<String> for Backend {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<Backend> for String {
    fn from(b: Backend) -> String {
        b.to_string()
    }
}

/// The dtype the model's weights and activations use. Pooling and normalisation are
/// always done in f32. In configuration it is the string `auto`, `f32`, `bf16` or
/// `int8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(try_from = "String", into = "String")]
pub enum Dtype {
    /// 32-bit float: reference-exact.
    F32,
    /// bfloat16: ~7x faster matmuls on CPUs with AMX, cosine ~0.999 to f32 (torch and
    /// openvino runtimes).
    Bf16,
    /// int8 weights, dynamically quantised activations (the `onnxruntime` backend's
    /// `model.int8.onnx`): faster on CPUs, cosine ~0.99 to f32, not reference-exact.
    Int8,
    /// bf16 where the hardware runs it natively (a CUDA device, or a CPU with
    /// AMX-BF16 or AVX512-BF16), f32 elsewhere (bf16 is emulated, and slower,
    /// without them).
    Auto,
}

impl FromStr for Dtype {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "f32" | "float32" => Ok(Dtype::F32),
            "bf16" | "bfloat16" => Ok(Dtype::Bf16),
            "int8" | "qint8" => Ok(Dtype::Int8),
            "auto" => Ok(Dtype::Auto),
            _ => Err(Error::InvalidOption(format!(
                "dtype {s:?}: use auto, f32, bf16 or int8"
            ))),
        }
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dtype::F32 => "f32",
            Dtype::Bf16 => "bf16",
            Dtype::Int8 => "int8",
            Dtype::Auto => "auto",
        })
    }
}

impl Dtype {
    /// The dtype that runs on `device`: [`Dtype::Auto`] decided, the others as they are.
    pub fn resolve(self, device: Device) -> Dtype {
        match (self, device) {
            (Dtype::Auto, Device::Cuda(_)) => Dtype::Bf16,
            (Dtype::Auto, Device::Cpu) if cpu_has_native_bf16() => Dtype::Bf16,
            (Dtype::Auto, Device::Cpu) => Dtype::F32,
            (d, _) => d,
        }
    }
}

/// The CPU flags that mean native bf16 arithmetic: AMX tiles (Intel Sapphire Rapids
/// and later) or the AVX-512 bf16 dot products (AMD Zen 4 and later, Intel Cooper
/// Lake). OpenVINO compiles bf16 by default on both.
const NATIVE_BF16_FLAGS: [&str; 2] = ["amx_bf16", "avx512_bf16"];

/// Whether the CPU runs bf16 natively, from the kernel's flags:
/// `is_x86_feature_detected!("amx-bf16")` is not stable yet.
pub(crate) fn cpu_has_native_bf16() -> bool {
    std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|c| native_bf16_in(&c))
}

/// Whether `/proc/cpuinfo` text lists a native-bf16 flag on its first `flags` line.
fn native_bf16_in(cpuinfo: &str) -> bool {
    cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .is_some_and(|l| l.split_whitespace().any(|f| NATIVE_BF16_FLAGS.contains(&f)))
}

/// Options of an [`Encoder`](crate::Encoder). Build with [`EncoderOptions::default`]
/// and the setters.
#[derive(Debug, Clone)]
pub struct EncoderOptions {
    pub(crate) backend: Backend,
    pub(crate) device: Device,
    pub(crate) dtype: Dtype,
    pub(crate) threads: usize,
    pub(crate) batch_size: usize,
    pub(crate) max_pass_tokens: usize,
    pub(crate) onnx_dir: Option<PathBuf>,
    pub(crate) onnxruntime_lib: Option<PathBuf>,
    pub(crate) openvino_lib: Option<PathBuf>,
    pub(crate) max_image_pixels: u64,
}

impl Default for EncoderOptions {
    fn default() -> Self {
        EncoderOptions {
            backend: Backend::TORCH,
            device: Device::Cpu,
            dtype: Dtype::F32,
            threads: 0,
            batch_size: 32,
            max_pass_tokens: 2048,
            onnx_dir: None,
            onnxruntime_lib: None,
            openvino_lib: None,
            max_image_pixels: DEFAULT_MAX_IMAGE_PIXELS,
        }
    }
}

/// The largest picture an image backbone decodes by default: 36 megapixels (6000 x
/// 6000, 108 MB as RGB).
pub const DEFAULT_MAX_IMAGE_PIXELS: u64 = 36_000_000;

impl EncoderOptions {
    /// The most pixels a picture may declare (width x height) before it is decoded;
    /// larger ones, and those whose resize would exceed it, are refused (default
    /// [`DEFAULT_MAX_IMAGE_PIXELS`]); at least 1.
    pub fn max_image_pixels(&mut self, pixels: u64) -> &mut Self {
        self.max_image_pixels = pixels.max(1);
        self
    }
    /// What runs the transformer (default torch; the server's default is auto).
    pub fn backend(&mut self, backend: Backend) -> &mut Self {
        self.backend = backend;
        self
    }
    /// Folder of the ONNX export (`scripts/export_onnx.py`); default: the model
    /// folder's path with `-onnx` appended (`models/all-MiniLM-L6-v2-onnx`).
    pub fn onnx_dir(&mut self, dir: Option<PathBuf>) -> &mut Self {
        self.onnx_dir = dir;
        self
    }
    /// ONNX Runtime's shared library; default: `$ORT_DYLIB_PATH`, else
    /// `libonnxruntime.so` in the ONNX folder (scripts/setup.sh links it there).
    pub fn onnxruntime_lib(&mut self, lib: Option<PathBuf>) -> &mut Self {
        self.onnxruntime_lib = lib;
        self
    }
    /// OpenVINO's C library (`libopenvino_c.so`); default: the one in the ONNX folder
    /// (scripts/setup.sh links it there from the `openvino` wheel).
    pub fn openvino_lib(&mut self, lib: Option<PathBuf>) -> &mut Self {
        self.openvino_lib = lib;
        self
    }
    /// Device to run on (default cpu).
    pub fn device(&mut self, device: Device) -> &mut Self {
        self.device = device;
        self
    }
    /// Dtype of weights and activations (default f32).
    pub fn dtype(&mut self, dtype: Dtype) -> &mut Self {
        self.dtype = dtype;
        self
    }
    /// libtorch intra-op threads of the model thread; 0 = the CPUs this process may
    /// use (affinity and cgroup quota, as `std::thread::available_parallelism`).
    pub fn threads(&mut self, threads: usize) -> &mut Self {
        self.threads = threads;
        self
    }
    /// The intra-op threads to use: `threads`, or the CPUs this process may use.
    pub fn resolved_threads(&self) -> usize {
        match self.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
    /// Most texts per forward pass (default 32); at least 1.
    pub fn batch_size(&mut self, batch_size: usize) -> &mut Self {
        self.batch_size = batch_size.max(1);
        self
    }
    /// Most tokens (rows x longest, padding included) in one forward pass (default
    /// 2048); a single longer text still runs, alone. The model thread runs more
    /// urgent work only between passes, so this bounds how long any work holds it.
    pub fn max_pass_tokens(&mut self, tokens: usize) -> &mut Self {
        self.max_pass_tokens = tokens.max(1);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_picks_bf16_only_where_it_runs_natively() {
        assert_eq!(Dtype::Auto.resolve(Device::Cuda(0)), Dtype::Bf16);
        assert_eq!(Dtype::F32.resolve(Device::Cuda(0)), Dtype::F32);
        assert_eq!(Dtype::Bf16.resolve(Device::Cpu), Dtype::Bf16);
        let cpu = Dtype::Auto.resolve(Device::Cpu);
        assert_eq!(cpu == Dtype::Bf16, cpu_has_native_bf16());
        assert_ne!(cpu, Dtype::Auto);
        assert_eq!("auto".parse::<Dtype>().ok(), Some(Dtype::Auto));
        assert!("fp8".parse::<Dtype>().is_err());
    }

    #[test]
    fn native_bf16_is_amx_or_avx512_bf16() {
        let flags = |f: &str| format!("processor\t: 0\nflags\t\t: fpu sse2 avx2 {f}\n");
        assert!(
            native_bf16_in(&flags("amx_bf16 amx_tile")),
            "Sapphire Rapids"
        );
        assert!(native_bf16_in(&flags("avx512f avx512_bf16")), "Zen 4");
        assert!(
            !native_bf16_in(&flags("avx512f avx512_vnni")),
            "AVX-512 without bf16"
        );
        assert!(!native_bf16_in(&flags("fma")), "AVX2 only");
        assert!(!native_bf16_in(&flags("avx512_bf16x")), "whole flags only");
    }

    #[test]
    fn backends_parse_by_name_and_alias_and_print_their_name() {
        assert_eq!("auto".parse::<Backend>().ok(), Some(Backend::AUTO));
        assert_eq!("tch".parse::<Backend>().ok(), Some(Backend::TORCH));
        assert_eq!(Backend::TORCH.to_string(), "torch");
        assert_eq!(Backend::AUTO.to_string(), "auto");
        #[cfg(feature = "onnxruntime")]
        assert_eq!("ort".parse::<Backend>().ok(), Some(Backend::ONNX_RUNTIME));
        #[cfg(feature = "openvino")]
        assert_eq!("ov".parse::<Backend>().ok(), Some(Backend::OPENVINO));
    }
}
