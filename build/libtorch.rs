//! Build script shared by every package that links libtorch (backbone, trainer, server,
//! the binary), so its binaries and tests run without LD_LIBRARY_PATH and can use CUDA.
//!
//! - rpath: torch-sys exports libtorch's folder to direct dependents as
//!   `DEP_TCH_LIBTORCH_LIB` (its `links = "tch"` key `libtorch_lib`) but does not put
//!   it into the final binary; we do.
//! - CUDA: torch-sys asks for `torch_cuda` when the libtorch has it, but no Rust symbol
//!   refers to it, so the linker's default `--as-needed` drops it and libtorch then
//!   sees no CUDA device. `--no-as-needed` keeps it (see the comment in torch-sys's
//!   build.rs about the same problem).
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    if Path::new(&dir).join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}
