//! Feedback from every channel: PII redaction, zh/en analysis into recurring problems, a
//! crash-safe outbox of cabin.feedback.v1 batches and their upload (issue 6).
//!
//! Built so far: `analysis` (zh/en concepts → recurring problems with labels, keywords,
//! trend, severity, quotes and improvement points), `intake` (submissions and JSONL/CSV
//! exports checked and redacted), `redact` (personal data to typed placeholders,
//! checksum-validated), `journal` and `outbox` (the crash-safe on-disk queue batches wait
//! in), `history` (what the car keeps for local summaries), `upload` (HTTPS to the
//! collector, retry policy), `desk` (all of the above behind one API) and `daemon` (the
//! `org.cabin.Feedback1` bus layer and the upload loop); its typed proxy is in `cabin-contracts`.
//!
//! Architecture invariant: the engine is a library that knows nothing of D-Bus; the bus
//! surface is a thin layer over it. This crate links `cabin-common` (and `cabin-proto`
//! where it speaks protobuf) but never another service's crate: services talk over D-Bus.

pub mod analysis;
pub mod daemon;
pub mod desk;
pub mod history;
pub mod intake;
pub mod journal;
pub mod outbox;
pub mod redact;
pub mod report;
pub mod upload;
