//! overdued: keeps administrative-procedure records from going late.
//!
//! The crate follows the data: [`source`] (replay files; Kafka later) →
//! [`event`] (decode, validate) → [`engine`] (record state, calendar, timers,
//! rules) → alert transitions, with [`report`] (Home Affairs counts) on the side.
//! [`sim`] generates province-like event streams for the demo and benchmarks.
//! The product contract is `SPEC.md`; decisions where it is silent are documented
//! in the module that makes them and collected in the README.

pub mod alert;
pub mod api;
pub mod bench;
pub mod bench_kafka;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod engine;
pub mod error;
pub mod event;
pub mod metrics;
pub mod notify;
pub mod replay;
pub mod report;
pub mod sim;
pub mod source;
pub mod time;
