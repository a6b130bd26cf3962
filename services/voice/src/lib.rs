//! The voice command hook: an utterance (zh/en, as a recogniser writes it) → an intent with
//! slots → a call to the service that owns it over D-Bus → a short reply to speak.
//!
//! Text is read through `cabin-text` (normalisation, language, the scene of a request), so
//! voice and chat hear a request the same way.
//!
//! Architecture invariant: `model`, `intent` and `router` never import zbus; the bus
//! layer (`daemon/`, `bus`) implements [`router::Services`] with calls to the other
//! services. This crate links `cabin-common` but never another service's crate.

pub mod bus;
pub mod daemon;
pub mod intent;
pub mod router;
