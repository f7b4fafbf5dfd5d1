//! The `torch` runtime: the BERT module tree (`bert.rs`) in libtorch through tch,
//! its weights loaded strictly from the checkpoint's safetensors. The reference
//! runtime: CPU and CUDA, f32 and bf16, and what `auto` falls back to when no export
//! is there. It owns libtorch's thread setting.
use tch::{nn::VarStore, Kind, Tensor};

use super::{
    export::image_graph, ImageLoad, LoadRequest, PixelBatch, Runtime, RuntimeSpec, TokenBatch,
};
use crate::{bert::Bert, weights, Device, Dtype, Error, Result};

const NAME: &str = "torch";

/// The registration.
pub(crate) static SPEC: RuntimeSpec = RuntimeSpec {
    name: NAME,
    aliases: &["tch", "libtorch"],
    dtypes: &[Dtype::F32, Dtype::Bf16],
    cuda: true,
    auto_on_cpu: &[],
    load,
    load_image: Some(load_image),
};

impl From<tch::TchError> for Error {
    fn from(e: tch::TchError) -> Error {
        Error::Runtime {
            runtime: NAME,
            message: e.to_string(),
        }
    }
}

/// The model and the weights it holds views into.
struct TorchModel {
    bert: Box<Bert>,
    // Keeps the weights alive; the model's modules hold views into it.
    _vs: VarStore,
    device: tch::Device,
    dtype: Dtype,
}

fn to_tch(device: Device) -> Result<tch::Device> {
    match device {
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

fn load(request: &LoadRequest<'_>) -> Result<Box<dyn Runtime>> {
    // OpenMP's thread count is per calling thread; the encoder runs on the thread
    // that loads it (the model thread). The count is the CPUs this process may use
    // (affinity, cgroup quota), where libtorch's own default counts every core.
    tch::set_num_threads(i32::try_from(request.threads).unwrap_or(i32::MAX));
    let device = to_tch(request.device)?;
    let mut vs = VarStore::new(device);
    let prefix = weights::detect_prefix(request.weights, request.weights_path)?;
    let root = match prefix {
        "" => vs.root(),
        p => vs.root() / p.trim_end_matches('.'),
    };
    let bert = Bert::new(root, request.config);
    weights::load_strict(&vs, request.weights, request.weights_path)?;
    vs.set_kind(match request.dtype {
        Dtype::Bf16 => Kind::BFloat16,
        _ => Kind::Float,
    });
    vs.freeze();
    Ok(Box::new(TorchModel {
        bert: Box::new(bert),
        _vs: vs,
        device,
        dtype: request.dtype,
    }))
}

impl Runtime for TorchModel {
    fn dtype(&self) -> Dtype {
        self.dtype
    }

    fn forward(&self, batch: &TokenBatch) -> Result<Vec<f32>> {
        let shape = [batch.rows as i64, batch.cols as i64];
        let ids = Tensor::from_slice(&batch.ids)
            .view(shape)
            .to_device(self.device);
        let mask = Tensor::from_slice(&batch.mask)
            .view(shape)
            .to_device(self.device);
        let states = tch::no_grad(|| self.bert.forward(&ids, &mask).to_kind(Kind::Float));
        let states = states.to_device(tch::Device::Cpu).contiguous();
        Ok(Vec::<f32>::try_from(states.view([-1]))?)
    }
}

/// An image backbone as TorchScript (`model.pt`, traced by the exporter).
struct TorchImage {
    module: tch::CModule,
    device: tch::Device,
    dim: usize,
}

fn load_image(request: &ImageLoad<'_>) -> Result<Box<dyn Runtime>> {
    tch::set_num_threads(i32::try_from(request.threads).unwrap_or(i32::MAX));
    let device = to_tch(request.device)?;
    let path = image_graph(NAME, request.model_dir, request.config, "torchscript")?;
    let mut module = tch::CModule::load_on_device(&path, device)?;
    module.set_eval();
    Ok(Box::new(TorchImage {
        module,
        device,
        dim: request.config.dim,
    }))
}

impl Runtime for TorchImage {
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }

    fn forward(&self, _: &TokenBatch) -> Result<Vec<f32>> {
        Err(Error::Runtime {
            runtime: NAME,
            message: "this is an image backbone: it embeds pictures, not tokens".into(),
        })
    }

    fn forward_pixels(&self, batch: &PixelBatch) -> Result<Vec<f32>> {
        let side = batch.side as i64;
        let x = Tensor::from_slice(&batch.values)
            .view([batch.rows as i64, 3, side, side])
            .to_device(self.device);
        let out = tch::no_grad(|| self.module.forward_ts(&[x]))?;
        let out = out
            .to_kind(Kind::Float)
            .to_device(tch::Device::Cpu)
            .contiguous();
        if out.size() != [batch.rows as i64, self.dim as i64] {
            return Err(Error::Runtime {
                runtime: NAME,
                message: format!(
                    "the image module returned shape {:?}, expected [{}, {}]",
                    out.size(),
                    batch.rows,
                    self.dim
                ),
            });
        }
        Ok(Vec::<f32>::try_from(out.view([-1]))?)
    }
}
