//! The whole pipeline against diffusers, as in `diffusers_reference.rs`, with every cabin
//! kernel held to its portable code: what a head unit without AVX2 or AVX-512 runs (aarch64
//! before it has kernels of its own), checked on this machine like the fast paths.

#[allow(dead_code)]
#[path = "diffusers_reference.rs"]
mod reference;

#[test]
fn the_portable_kernels_match_diffusers_too() {
    cabin_diffusion::use_portable_kernels();
    reference::pipeline_matches_diffusers();
}
