//! The driver's companion: personas in Character Card V2, memory, mood and care, agent tools, offline-first LM backends (issue 5).
//!
//! Architecture invariant: the engine is a library that knows nothing of D-Bus; the bus
//! surface is a thin layer over it. This crate links `cabin-common` (and `cabin-proto`
//! where it speaks protobuf) but never another service's crate: services talk over D-Bus.
//!
//! Nothing is implemented here yet; the layout and dependency rules are fixed now.
