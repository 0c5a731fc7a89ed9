//! The consumer's side of forwarding (`[alertmanager]`, `[[webhook]]`): what
//! each transition adds to the webhook spools and to the Alertmanager view,
//! written and released in step with the state saves.
//!
//! Webhook batches are spooled before a save and released to their senders
//! after it ([`crate::notify::webhook`]); the Alertmanager view (the firing
//! alerts of the partitions this instance holds) is re-sent every
//! `resend_interval` and after each change ([`crate::notify::alertmanager`]).

use crate::engine::directory::Directory;
use crate::engine::view::AlertInfo;
use crate::engine::AlertKind;
use crate::metrics::events::AlertmanagerAlerts;
use crate::metrics::Metrics;
use crate::notify::{alertmanager, webhook, Forwarding};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant as WallInstant};

/// The unit's level name, `unknown` outside the directory.
fn level_of<'a>(dir: &'a Directory, unit: &str) -> &'a str {
    dir.unit_id(unit)
        .map_or("unknown", |u| dir.level_name(dir.level(u)))
}

struct Hook {
    settings: webhook::Settings,
    dir: PathBuf,
    /// Transitions not yet spooled.
    pending: Vec<serde_json::Value>,
}

/// Alertmanager: the firing alerts by partition, and what changed.
struct Am {
    settings: alertmanager::Settings,
    queue: Arc<alertmanager::Queue>,
    firing: HashMap<i32, HashMap<(String, AlertKind), serde_json::Value>>,
    changes: Vec<serde_json::Value>,
    last_full: WallInstant,
    last_change: WallInstant,
}

/// Forwarding, owned by the consumer loop.
pub(super) struct Forward {
    hooks: Vec<Hook>,
    /// The next batch's sequence.
    next_seq: u64,
    released: Arc<webhook::Released>,
    am: Option<Am>,
    metrics: Metrics,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Forward {
    /// Starts the senders; removes the spool files no saved state covers
    /// (`saved_seq`: the watermarks' `webhook_seq`; `None` without saved
    /// watermarks, when every spooled batch is kept: sent twice rather than
    /// lost). None when nothing is configured.
    pub fn start(
        f: &Forwarding,
        state_dir: &Path,
        saved_seq: Option<u64>,
        metrics: &Metrics,
    ) -> std::io::Result<Option<Forward>> {
        if f.alertmanager.is_none() && f.webhooks.is_empty() {
            return Ok(None);
        }
        let released = Arc::new(webhook::Released::default());
        let mut next_seq = saved_seq.unwrap_or(0);
        let mut hooks = Vec::new();
        let mut threads = Vec::new();
        for s in &f.webhooks {
            let dir = webhook::spool_dir(state_dir, &s.name);
            match saved_seq {
                Some(seq) => {
                    let n = webhook::drop_unsaved(&dir, seq)?;
                    if n > 0 {
                        tracing::info!(webhook = %s.name, batches = n, "webhook batches of an unsaved state removed; the source gives their transitions again");
                    }
                }
                None => {
                    if let Some((last, _)) = webhook::spooled(&dir)?.last() {
                        next_seq = next_seq.max(last + 1);
                    }
                }
            }
            hooks.push(Hook {
                settings: s.clone(),
                dir: dir.clone(),
                pending: Vec::new(),
            });
        }
        // what is spooled now is covered by the saved state
        released.release(next_seq);
        for h in &hooks {
            threads.push(webhook::start_sender(
                h.settings.clone(),
                h.dir.clone(),
                released.clone(),
                metrics.clone(),
            )?);
        }
        let am = match &f.alertmanager {
            Some(s) => {
                let queue = Arc::new(alertmanager::Queue::default());
                threads.push(alertmanager::start_sender(
                    s,
                    queue.clone(),
                    metrics.clone(),
                )?);
                tracing::info!(url = %s.endpoint(), "forwarding alerts to Alertmanager");
                Some(Am {
                    settings: s.clone(),
                    queue,
                    firing: HashMap::new(),
                    changes: Vec::new(),
                    last_full: WallInstant::now(),
                    last_change: WallInstant::now(),
                })
            }
            None => None,
        };
        Ok(Some(Forward {
            hooks,
            next_seq,
            released,
            am,
            metrics: metrics.clone(),
            threads,
        }))
    }

    /// One live transition (`info` as the engine describes the alert).
    pub fn transition(&mut self, info: &AlertInfo, firing: bool, at: i64, dir: &Directory) {
        let level = level_of(dir, &info.unit);
        if !self.hooks.is_empty() {
            let t = webhook::transition_json(info, firing, at, level);
            for h in &mut self.hooks {
                h.pending.push(t.clone());
            }
        }
        if let Some(am) = self.am.as_mut() {
            let p = info.partition.unwrap_or(-1);
            let key = (info.record_id.clone(), info.kind);
            let alerts = am.firing.entry(p).or_default();
            if firing {
                let a = alertmanager::alert_json(info, level, None);
                alerts.insert(key, a.clone());
                am.changes.push(a);
            } else {
                // the resolution carries the labels the firing had
                let mut a = alerts
                    .remove(&key)
                    .unwrap_or_else(|| alertmanager::alert_json(info, level, None));
                a["endsAt"] = serde_json::Value::String(crate::time::format_rfc3339(at));
                am.changes.push(a);
            }
        }
    }

    /// A partition caught up: its firing alerts (told before a restart, or
    /// by its previous owner) join the Alertmanager view, sent at once.
    pub fn adopt(&mut self, partition: i32, infos: &[AlertInfo], dir: &Directory) {
        let Some(am) = self.am.as_mut() else {
            return;
        };
        let alerts = am.firing.entry(partition).or_default();
        for i in infos {
            let a = alertmanager::alert_json(i, level_of(dir, &i.unit), None);
            alerts.insert((i.record_id.clone(), i.kind), a.clone());
            am.changes.push(a);
        }
    }

    /// Whether the Alertmanager view wants the partitions' firing alerts.
    pub fn wants_adoption(&self) -> bool {
        self.am.is_some()
    }

    /// Spools the webhooks' pending transitions (synced). An error leaves
    /// what was not written pending, and the caller does not save.
    pub fn spool(&mut self) -> std::io::Result<()> {
        for h in &mut self.hooks {
            if h.pending.is_empty() {
                continue;
            }
            let mut written = 0;
            let res = (|| {
                for chunk in h.pending.chunks(h.settings.max_batch) {
                    webhook::write_batch(&h.dir, self.next_seq, &h.settings.name, chunk)?;
                    self.next_seq += 1;
                    written += chunk.len();
                }
                crate::state::sync_dir(&h.dir)
            })();
            h.pending.drain(..written);
            res?;
        }
        Ok(())
    }

    /// The sequence the next save records (`webhook_seq`).
    pub fn seq(&self) -> u64 {
        self.next_seq
    }

    /// The save that covers every spooled batch is done: they may go.
    pub fn saved(&self) {
        self.released.release(self.next_seq);
    }

    /// Hands Alertmanager what changed (at most once a second) and, every
    /// `resend_interval`, every firing alert of the partitions still held.
    pub fn tick(&mut self, held: &dyn Fn(i32) -> bool) {
        let Some(am) = self.am.as_mut() else {
            return;
        };
        // a revoked partition's alerts belong to its next owner now
        am.firing.retain(|&p, _| p < 0 || held(p));
        if !am.changes.is_empty() && am.last_change.elapsed() >= Duration::from_secs(1) {
            am.queue.changes(std::mem::take(&mut am.changes));
            am.last_change = WallInstant::now();
        }
        if am.last_full.elapsed() >= am.settings.resend_interval {
            let all: Vec<serde_json::Value> = am
                .firing
                .values()
                .flat_map(|m| m.values().cloned())
                .collect();
            AlertmanagerAlerts(all.len()).emit(&self.metrics);
            am.queue.full(all);
            am.last_full = WallInstant::now();
        }
    }

    /// Stops the senders (spooled batches stay for the next start).
    pub fn stop(self) {
        self.released.stop();
        if let Some(am) = &self.am {
            am.queue.stop();
        }
        for t in self.threads {
            let _ = t.join();
        }
    }
}
