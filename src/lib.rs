//! overdued: keeps administrative-procedure records from going late.
//!
//! The library is the product's stages, in data-flow order (docs/architecture.md):
//!
//! * [`time`] — instants and RFC 3339 (a leaf);
//! * [`source`] — where events come from: NDJSON files, the Kafka consumer group;
//! * [`event`] — decode and validate one event;
//! * [`engine`] — the deadline core: records, working-time calendar, timers,
//!   rules; pure, time injected; its settings in [`engine::settings`];
//! * [`alert`] — what to tell whom, when: routing, grouping, silences, digests;
//! * [`notify`] — how it reaches them: rendering, outbox, SMTP;
//! * [`sink`] — output writers shared by `replay` and `run` (alert lines, `.eml`);
//!
//! and on the side: [`import`] (a one-stop system's export → events),
//! [`report`] (Home Affairs counts), [`metrics`] (exposition),
//! [`state`] (crash-safe state files, snapshots of the engines), [`link`] (signed page links, built by
//! `notify`, checked by `api`), `api` (HTTP and the unit pages, handed an
//! `ApiState`), [`replay`] (the simulated-clock driver), [`daemon`] (the
//! wiring of `overdued run`) and [`config`] (the loader composing every stage's
//! settings; [`config::common`] is the leaf they share). The commands live in
//! the binary (`src/cli/`). The contract is `docs/spec.md`.

pub mod alert;
pub mod api;
pub mod config;
pub mod daemon;
pub mod engine;
pub mod event;
pub mod import;
pub mod link;
pub mod metrics;
pub mod notify;
pub mod replay;
pub mod report;
pub mod sink;
pub mod source;
pub mod state;
pub mod time;
