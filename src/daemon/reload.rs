//! SIGHUP: the configuration is loaded again and validated whole before anything
//! changes; a bad one is refused and the running one stays. Each stage is handed
//! its new settings and says what changed: the engines (calendar, directory,
//! rules: applied to every partition at once), the notifier (grouping, silences),
//! delivery (sender and templates at once; the SMTP connection at the next
//! restart). The daemon's own sections (`[kafka]`, `[http]`, `[state]`,
//! `[alerts]`) need a restart: a change there is logged, not applied. The
//! notifier group's thread takes the accepted settings at its next round.

use super::partition::Part;
use super::{Reload, Settings, Shared};
use crate::alert::Notifier;
use crate::metrics::events::{ConfigReloadRefused, ConfigReloaded};
use std::collections::HashMap;

/// Reloads; counts the outcome in `overdued_config_reloads_total{result}`.
pub(super) fn reload(
    settings: &mut Settings,
    load: &mut Reload,
    parts: &mut HashMap<i32, Part>,
    shared: &Shared,
    notifier: Option<&mut Notifier>,
) {
    let (new, warnings) = match load() {
        Ok(v) => v,
        Err(e) => {
            ConfigReloadRefused { error: &e }.emit(&shared.metrics);
            return;
        }
    };
    for w in &warnings {
        tracing::warn!("{w}");
    }
    let engine = settings.engine.changes(&new.engine);
    for part in parts.values_mut() {
        part.engine.reconfigure(&new.engine);
    }
    let alert = match notifier {
        Some(n) => n.reconfigure(new.email.grouping.clone(), new.email.silences.clone()),
        None => Vec::new(),
    };
    let (delivery, delivery_restart) = settings.email.delivery.changes(&new.email.delivery);
    if !delivery_restart.is_empty() {
        tracing::warn!(changed = %delivery_restart.join(", "), "the SMTP settings changed: they take effect at the next restart");
    }
    if new.daemon != settings.daemon {
        tracing::warn!(
            "[kafka], [http], [state] or [alerts] changed: they take effect at the next restart"
        );
    }
    let daemon = std::mem::replace(&mut settings.daemon, new.daemon.clone());
    let smtp = settings.email.delivery.smtp.clone();
    *settings = new;
    settings.daemon = daemon;
    settings.email.delivery.smtp = smtp;
    // the pages name units and count working time as the engines now do
    shared.set_ui(settings);
    // the notifier group's thread (if any) takes them at its next round
    *shared.reloaded.lock().unwrap_or_else(|p| p.into_inner()) = Some(settings.clone());
    ConfigReloaded {
        changes: &[("engine", engine), ("alert", alert), ("delivery", delivery)],
        units: settings.engine.directory.units.len(),
        procedures: settings.engine.directory.procedures.len(),
    }
    .emit(&shared.metrics);
}
