//! `overdued run` from outside, against the real services `scripts/test.sh`
//! starts (a Kafka-protocol broker, an SMTP server, Prometheus and promtool,
//! Alertmanager, an independent Kafka client). One test binary, so that rdkafka is linked once;
//! one module per subject:
//!
//! * [`alerts_and_restarts`] — alerts on the wall clock, dead letters with their
//!   headers, `/metrics`, `/readyz`, a graceful stop, a restart that alerts
//!   nothing twice;
//! * [`backlog`] — a first start on a year of history writes what `replay`
//!   writes (catch-up on event time), over many consumer rounds;
//! * [`dead_letters`] — a dead-letter topic that refuses writes loses nothing;
//! * [`email`] — e-mail through a real SMTP server: grouping, silences, an
//!   outage with a `kill -9` inside it, exactly-once delivery;
//! * [`forwarding`] — transitions POSTed to a real Alertmanager (labels,
//!   resolve, re-sent while firing) and to a signed webhook (signature
//!   checked, retries after a 500, nothing lost across `kill -9`);
//! * [`full_disk`] — a full disk under the state folder: the daemon stops,
//!   and after a restart the alerts file has no fragment and every transition
//!   once;
//! * [`observability`] — an independent client's events, `promtool`, a real
//!   Prometheus loading the ops package's rules and scraping the daemon (late
//!   rates, hanging counts, alerts; every name the rules and the dashboard
//!   use exists in `/metrics`);
//! * [`notify_group`] — three daemons with a notify topic: one e-mail stream
//!   per unit across them; SMTP down and a `kill -9` during the hand-over,
//!   every record told exactly once;
//! * [`outages`] — a broker frozen for 30 s (stalled partition, not ready, a
//!   deadline inside it alerted, nothing lost) and a silent source (marked,
//!   hanging e-mails held), on a broker of its own;
//! * [`pages`] — the unit pages in a real browser (headless Chromium over
//!   WebDriver): the e-mailed link, an acknowledgement, tampered and expired
//!   links, a cross-site POST, a restart;
//! * [`retention`] — a source topic that deletes events is refused at start-up;
//! * [`partition_handover`] — two daemons in one group: partitions move, no
//!   alert is written twice;
//! * [`durable_state`] — snapshots in the state topic: a restart after the
//!   topic's past is gone, `kill -9` at random points while events stream in;
//!   the result is `replay`'s.

mod harness;
#[path = "../smtp_harness/mod.rs"]
mod smtp_harness;

mod alerts_and_restarts;
mod backlog;
mod dead_letters;
mod durable_state;
mod email;
mod forwarding;
mod full_disk;
mod notify_group;
mod observability;
mod outages;
mod pages;
mod partition_handover;
mod retention;
