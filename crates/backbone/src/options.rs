//! Where and how the encoder runs: device, dtype, threads, batch size.
use std::{fmt, str::FromStr};

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

impl Device {
    pub(crate) fn to_tch(self) -> Result<tch::Device> {
        match self {
            Device::Cpu => Ok(tch::Device::Cpu),
            Device::Cuda(n) => {
                let count = tch::Cuda::device_count() as usize;
                if n >= count {
                    return Err(Error::InvalidOption(format!(
                        "device cuda:{n} requested but libtorch sees {count} CUDA device(s)"
                    )));
                }
                Ok(tch::Device::Cuda(n))
            }
        }
    }
}

/// The dtype the model's weights and activations use. Pooling and normalisation are
/// always done in f32. In configuration it is the string `auto`, `f32` or `bf16`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(try_from = "String", into = "String")]
pub enum Dtype {
    /// 32-bit float: reference-exact.
    F32,
    /// bfloat16: ~7x faster matmuls on CPUs with AMX, cosine ~0.999 to f32.
    Bf16,
    /// bf16 where the hardware runs it natively (a CUDA device, or a CPU with
    /// AMX-BF16), f32 elsewhere (bf16 is emulated, and slower, without it).
    Auto,
}

impl FromStr for Dtype {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "f32" | "float32" => Ok(Dtype::F32),
            "bf16" | "bfloat16" => Ok(Dtype::Bf16),
            "auto" => Ok(Dtype::Auto),
            _ => Err(Error::InvalidOption(format!(
                "dtype {s:?}: use auto, f32 or bf16"
            ))),
        }
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dtype::F32 => "f32",
            Dtype::Bf16 => "bf16",
            Dtype::Auto => "auto",
        })
    }
}

impl Dtype {
    /// The dtype that runs on `device`: [`Dtype::Auto`] decided, the others as they are.
    pub fn resolve(self, device: Device) -> Dtype {
        match (self, device) {
            (Dtype::Auto, Device::Cuda(_)) => Dtype::Bf16,
            (Dtype::Auto, Device::Cpu) if cpu_has_amx_bf16() => Dtype::Bf16,
            (Dtype::Auto, Device::Cpu) => Dtype::F32,
            (d, _) => d,
        }
    }

    pub(crate) fn kind(self) -> tch::Kind {
        match self.resolve(Device::Cpu) {
            Dtype::Bf16 => tch::Kind::BFloat16,
            _ => tch::Kind::Float,
        }
    }
}

/// Whether the CPU has AMX-BF16 tiles (Sapphire Rapids and later), from the kernel's
/// flags: `std::arch::is_x86_feature_detected!("amx-bf16")` is not stable yet.
fn cpu_has_amx_bf16() -> bool {
    std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|c| {
        c.lines()
            .find(|l| l.starts_with("flags"))
            .is_some_and(|l| l.split_whitespace().any(|f| f == "amx_bf16"))
    })
}

/// Options of an [`Encoder`](crate::Encoder). Build with [`EncoderOptions::default`]
/// and the setters.
#[derive(Debug, Clone)]
pub struct EncoderOptions {
    pub(crate) device: Device,
    pub(crate) dtype: Dtype,
    pub(crate) threads: usize,
    pub(crate) batch_size: usize,
}

impl Default for EncoderOptions {
    fn default() -> Self {
        EncoderOptions {
            device: Device::Cpu,
            dtype: Dtype::F32,
            threads: 0,
            batch_size: 32,
        }
    }
}

impl EncoderOptions {
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
    /// Most texts per forward pass (default 32); at least 1.
    pub fn batch_size(&mut self, batch_size: usize) -> &mut Self {
        self.batch_size = batch_size.max(1);
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
        assert_eq!(cpu == Dtype::Bf16, cpu_has_amx_bf16());
        assert_ne!(cpu, Dtype::Auto);
        assert_eq!("auto".parse::<Dtype>().ok(), Some(Dtype::Auto));
        assert!("fp8".parse::<Dtype>().is_err());
    }
}
