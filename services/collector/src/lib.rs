//! The reference collector: what a carmaker's backend does with cabin's feedback uploads.
//!
//! `POST /v1/feedback` takes a `cabin.feedback.v1.FeedbackBatch` (protobuf, optionally gzip),
//! checks it ([`verify`]), stores it once per batch id ([`store`]: PostgreSQL for a fleet or a
//! SQLite file for a desk, one transaction, so a retried upload changes nothing) and answers a
//! `CollectorResponse`. `GET /v1/fleet` is the problems every vehicle reported, aggregated by
//! the database ([`store::Store::fleet`]). [`load`] is a fleet load generator for it.
//!
//! Architecture invariant: the collector knows the wire format (cabin-proto) and nothing of
//! the car's code: it links no service crate, so it tests the contract, not shared internals.

pub mod http;
pub mod load;
pub mod store;
pub mod verify;

pub use http::{router, serve};
pub use store::{Put, Store, StoreError, Window};
