//! The configuration loader: reads `overdued.toml` and the data files it names
//! (docs/spec.md §7) and composes each stage's settings, validated by the stage
//! that owns them (`engine::settings`, `alert::settings`, `notify::settings`,
//! `source::kafka::settings`, `daemon::settings`). Only the commands import it.
//!
//! Loading validates everything before anything runs, and every error names the
//! file, the line and the field, e.g.
//! `config/units.csv:7: field \`level\`: must be province, district or commune (got "xa")`.
//! Paths inside the TOML file are relative to its folder.

pub mod common;
mod csv;

use crate::alert::settings::{self as alert_settings, RawGrouping, RawSilence};
use crate::daemon::settings::{
    self as daemon_settings, DaemonConfig, RawAlerts, RawHttp, RawState,
};
use crate::engine::directory::{Directory, DEFAULT_LEVELS};
use crate::engine::settings::{self as engine_settings, RawCalendar, RawRules};
use crate::notify::settings::{self as notify_settings, Email, RawDelivery};
use crate::source::kafka::settings::RawKafka;
pub use common::{parse_date, parse_duration, ConfigError, Secret};
use common::{read, Src};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// The whole configuration, validated: each stage's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// The main file.
    pub path: PathBuf,
    /// Calendar, directory, rules.
    pub engine: crate::engine::Settings,
    /// Sections only the daemon reads (`kafka`, `http`, `state`, `alerts`).
    pub daemon: DaemonConfig,
    /// `[report]`: threshold and areas of the rates.
    pub report: crate::report::Settings,
    /// `[email]`: how alerts become e-mails (defaults when the section is absent;
    /// `enabled` says whether it was given).
    pub email: Email,
    /// `[alertmanager]`, `[[webhook]]` (`run` only).
    pub forwarding: crate::notify::Forwarding,
    /// Non-fatal findings (e.g. the calendar does not cover the current year).
    pub warnings: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    calendar: Option<RawCalendar>,
    directory: Option<RawDirectory>,
    rules: Option<RawRules>,
    report: Option<crate::report::settings::RawReport>,
    #[serde(default)]
    kafka: RawKafka,
    #[serde(default)]
    http: RawHttp,
    #[serde(default)]
    state: RawState,
    #[serde(default)]
    alerts: RawAlerts,
    email: Option<RawEmail>,
    alertmanager: Option<crate::notify::alertmanager::RawAlertmanager>,
    #[serde(default)]
    webhook: Vec<Spanned<crate::notify::webhook::RawWebhook>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDirectory {
    levels: Option<Vec<Spanned<String>>>,
    units: Spanned<String>,
    procedures: Spanned<String>,
}

/// `[email]` as written: one table in the file, two stages' keys.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEmail {
    smtp_url: Option<Spanned<String>>,
    username: Option<Spanned<String>>,
    password: Option<Spanned<String>>,
    tls_ca_file: Option<Spanned<String>>,
    from: Option<Spanned<String>>,
    admin: Option<Spanned<String>>,
    language: Option<Spanned<String>>,
    group_wait: Option<Spanned<String>>,
    group_interval: Option<Spanned<String>>,
    repeat_interval: Option<Spanned<String>>,
    digest_at: Option<Spanned<String>>,
    batch_at: Option<Spanned<Vec<Spanned<String>>>>,
    templates: Option<Spanned<String>>,
    rate_limit_per_domain: Option<Spanned<i64>>,
    max_items: Option<Spanned<i64>>,
    #[serde(default)]
    silence: Vec<Spanned<RawSilence>>,
}

impl RawEmail {
    /// The delivery stage's keys and the alert stage's keys.
    fn split(self) -> (RawDelivery, RawGrouping) {
        (
            RawDelivery {
                smtp_url: self.smtp_url,
                username: self.username,
                password: self.password,
                tls_ca_file: self.tls_ca_file,
                from: self.from,
                admin: self.admin,
                language: self.language,
                templates: self.templates,
                rate_limit_per_domain: self.rate_limit_per_domain,
            },
            RawGrouping {
                group_wait: self.group_wait,
                group_interval: self.group_interval,
                repeat_interval: self.repeat_interval,
                digest_at: self.digest_at,
                batch_at: self.batch_at,
                max_items: self.max_items,
                silence: self.silence,
            },
        )
    }
}

impl Config {
    /// Loads and validates `path` and every file it names; every secret must
    /// resolve (`overdued run`). Stops at the first error.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::check_with(path, false).map_err(first)
    }

    /// The same, for the commands that connect nowhere (replay, gen,
    /// check-config): a secret that cannot be resolved is a warning and left
    /// out, not an error.
    pub fn load_offline(path: &Path) -> Result<Config, ConfigError> {
        Config::check_with(path, true).map_err(first)
    }

    /// [`Config::load_offline`], reporting every error it finds (`check-config`):
    /// each section is checked even when an earlier one failed, each CSV row
    /// even when an earlier row failed. A TOML syntax error stops it (nothing
    /// after it can be read), and the rules are not checked when the directory
    /// they refer to failed (every override would be reported as unknown).
    pub fn check_offline(path: &Path) -> Result<Config, Vec<ConfigError>> {
        Config::check_with(path, true)
    }

    fn check_with(path: &Path, secrets_optional: bool) -> Result<Config, Vec<ConfigError>> {
        let text = read(path).map_err(|e| vec![e])?;
        let mut src = Src::new(path, &text);
        src.secrets_optional = secrets_optional;
        let raw: RawConfig = src.parse().map_err(|e| vec![e])?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut warnings = Vec::new();
        let mut errors = Vec::new();

        let calendar = keep(
            engine_settings::calendar(&src, base, raw.calendar.as_ref()),
            &mut errors,
        );
        let profile_names: Vec<String> = calendar
            .as_ref()
            .map(|c| c.profiles.iter().map(|p| p.0.clone()).collect())
            .unwrap_or_default();
        let directory = match directory(&src, base, raw.directory.as_ref(), &profile_names) {
            Ok(d) => Some(d),
            Err(e) => {
                errors.extend(e);
                None
            }
        };
        let rules = match &directory {
            Some(d) => keep(
                engine_settings::rules(&src, raw.rules.as_ref(), d, &mut warnings),
                &mut errors,
            ),
            None => None,
        };
        let report = match &directory {
            Some(d) => keep(
                crate::report::settings::validate(&src, raw.report.as_ref(), &d.levels),
                &mut errors,
            ),
            None => None,
        };
        let daemon = keep(
            daemon_settings::validate(&src, base, &raw.kafka, &raw.http, &raw.state, &raw.alerts),
            &mut errors,
        );
        let email = match raw.email {
            None => Some(Email::default()),
            Some(e) => {
                let (delivery, grouping) = e.split();
                let delivery = keep(
                    notify_settings::validate(&src, base, &delivery, &mut warnings),
                    &mut errors,
                );
                let grouping = keep(alert_settings::validate(&src, &grouping), &mut errors);
                match (delivery, grouping) {
                    (Some(delivery), Some((grouping, silences))) => Some(Email {
                        enabled: true,
                        delivery,
                        grouping,
                        silences,
                    }),
                    _ => None,
                }
            }
        };
        let alertmanager = keep(
            crate::notify::alertmanager::validate(&src, raw.alertmanager.as_ref()),
            &mut errors,
        );
        let webhooks = keep(
            crate::notify::webhook::validate(&src, base, &raw.webhook),
            &mut errors,
        );
        let forwarding = match (alertmanager, webhooks) {
            (Some(alertmanager), Some(webhooks)) => Some(crate::notify::Forwarding {
                alertmanager,
                webhooks,
            }),
            _ => None,
        };
        warnings.extend(src.notes.take());
        match (
            calendar, directory, rules, report, daemon, email, forwarding,
        ) {
            (
                Some(calendars),
                Some(directory),
                Some(rules),
                Some(report),
                Some(daemon),
                Some(email),
                Some(forwarding),
            ) if errors.is_empty() => {
                let engine = crate::engine::Settings {
                    calendar: calendars.default,
                    profiles: calendars.profiles,
                    directory,
                    rules,
                };
                let now = crate::time::now();
                if let Some(w) = engine.coverage(now).warning(&engine.calendar) {
                    warnings.push(format!("{}: {w}", path.display()));
                }
                Ok(Config {
                    path: path.to_path_buf(),
                    engine,
                    report,
                    daemon,
                    email,
                    forwarding,
                    warnings,
                })
            }
            _ => Err(errors),
        }
    }

    /// The settings `overdued run` is started with.
    pub fn into_daemon(self) -> crate::daemon::Settings {
        crate::daemon::Settings {
            path: self.path,
            engine: self.engine,
            report: self.report,
            daemon: self.daemon,
            email: self.email,
            forwarding: self.forwarding,
        }
    }
}

/// The value, or `None` with the error kept.
fn keep<T>(r: Result<T, ConfigError>, errors: &mut Vec<ConfigError>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e) => {
            errors.push(e);
            None
        }
    }
}

/// The first of the errors (there is always one).
fn first(errors: Vec<ConfigError>) -> ConfigError {
    errors.into_iter().next().unwrap_or_else(|| ConfigError {
        file: PathBuf::new(),
        line: None,
        field: None,
        message: "invalid configuration".into(),
    })
}

/// `[directory]` and the two CSV files it names, each checked in full.
fn directory(
    src: &Src<'_>,
    base: &Path,
    raw: Option<&RawDirectory>,
    profiles: &[String],
) -> Result<Directory, Vec<ConfigError>> {
    let Some(dir) = raw else {
        return Err(vec![ConfigError {
            file: src.path.to_path_buf(),
            line: None,
            field: Some("directory".into()),
            message: "missing section [directory] (units, procedures)".into(),
        }]);
    };
    let mut errors = Vec::new();
    let levels = match &dir.levels {
        None => DEFAULT_LEVELS.iter().map(|l| l.to_string()).collect(),
        Some(list) => match levels(src, list) {
            Ok(l) => l,
            Err(e) => return Err(vec![e]),
        },
    };
    let mut load = |f: &Spanned<String>, name: &str| {
        let p = base.join(f.get_ref());
        match std::fs::metadata(&p) {
            Ok(_) => Some(p),
            Err(e) => {
                errors.extend(
                    src.err::<()>(f.span(), name, format!("cannot read {}: {e}", p.display()))
                        .err(),
                );
                None
            }
        }
    };
    let units = load(&dir.units, "directory.units");
    let procedures = load(&dir.procedures, "directory.procedures");
    let units = units.map(|p| csv::load_units(&p, &levels, profiles));
    let procedures = procedures.map(|p| csv::load_procedures(&p));
    match (units, procedures) {
        (Some(Ok(u)), Some(Ok(p))) if errors.is_empty() => Ok(Directory::new(levels, u, p)),
        (u, p) => {
            errors.extend(u.and_then(Result::err).into_iter().flatten());
            errors.extend(p.and_then(Result::err).into_iter().flatten());
            Err(errors)
        }
    }
}

/// Checks `[directory] levels`: 1 to 16 distinct names, none `unknown` (the
/// report's name for units missing from the directory).
fn levels(src: &Src<'_>, list: &[Spanned<String>]) -> Result<Vec<String>, ConfigError> {
    let mut out: Vec<String> = Vec::new();
    for (k, l) in list.iter().enumerate() {
        let field = format!("directory.levels[{k}]");
        let name = l.get_ref();
        if !common::valid_code(name) || name == "unknown" {
            return src.err(
                l.span(),
                &field,
                format!("{name:?} is not a level name (letters, digits, '.', '-', '_'; not \"unknown\")"),
            );
        }
        if out.contains(name) {
            return src.err(l.span(), &field, format!("level {name:?} is listed twice"));
        }
        out.push(name.clone());
    }
    if out.is_empty() || out.len() > 16 {
        return src.err(
            list.first().map_or(0..0, |l| l.span()),
            "directory.levels",
            "list 1 to 16 levels, top first",
        );
    }
    Ok(out)
}
