//! Puts libtorch's folder into the rpath of the polyhead binary (and this package's tests) so they run without
//! LD_LIBRARY_PATH. torch-sys exports that folder to direct dependents as
//! `DEP_TCH_LIBTORCH_LIB` (its `links = "tch"` metadata key `libtorch_lib`).
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
