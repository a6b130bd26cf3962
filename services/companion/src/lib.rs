//! The driver's companion: personas in Character Card V2, memory, mood and care, agent
//! tools, and replies from a chain of backends that always ends offline (issue 5).
//!
//! Architecture invariant: everything but `daemon/` and the binary is a library that knows
//! nothing of D-Bus; side effects on other services go through [`tools::Effects`], which the
//! bus layer implements. This crate links `cabin-common` but never another service's crate.

pub mod agent;
pub mod backend;
pub mod care;
pub mod cloud;
pub mod local_lm;
pub mod memory;
pub mod mood;
pub mod offline;
pub mod persona;
pub mod prompt;
pub mod safety;
pub mod speech;
pub mod talk_eval;
pub mod tools;

pub use agent::{Companion, CompanionError, Config, Turn, TurnResult};
pub mod daemon;
