//! Generates wallpapers from a prompt with a diffusion model in the diffusers ONNX layout run by tract, and keeps them following the sun (issues 3, 4, 9).
//!
//! Architecture invariant: the engine is a library that knows nothing of D-Bus; the bus
//! surface is a thin layer over it. This crate links `cabin-common` (and `cabin-proto`
//! where it speaks protobuf) but never another service's crate: services talk over D-Bus.
//!
//! Nothing is implemented here yet; the layout and dependency rules are fixed now.
