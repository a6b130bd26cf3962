//! What every cabin service shares, and nothing service-specific.
//!
//! Architecture invariant: this crate is the bottom of the graph. It links no other cabin
//! crate, holds no engine or model code, and knows no service's bus contract except the
//! vehicle context's, which all services read.

pub mod bus;
pub mod cli;
pub mod clock;
pub mod config;
pub mod error;
pub mod fsutil;
pub mod host;
pub mod logging;
pub mod options;
pub mod readiness;
pub mod vehicle;

pub use error::CabinError;
