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
use crate::engine::directory::Directory;
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
    /// `[email]`: how alerts become e-mails (defaults when the section is absent;
    /// `enabled` says whether it was given).
    pub email: Email,
    /// Non-fatal findings (e.g. the calendar does not cover the current year).
    pub warnings: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    calendar: Option<RawCalendar>,
    directory: Option<RawDirectory>,
    rules: Option<RawRules>,
    #[serde(default)]
    kafka: RawKafka,
    #[serde(default)]
    http: RawHttp,
    #[serde(default)]
    state: RawState,
    #[serde(default)]
    alerts: RawAlerts,
    email: Option<RawEmail>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDirectory {
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
                max_items: self.max_items,
                silence: self.silence,
            },
        )
    }
}

impl Config {
    /// Loads and validates `path` and every file it names; every secret must
    /// resolve (`overdued run`).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_with(path, false)
    }

    /// The same, for the commands that connect nowhere (replay, gen,
    /// check-config): a secret that cannot be resolved is a warning and left
    /// out, not an error.
    pub fn load_offline(path: &Path) -> Result<Config, ConfigError> {
        Config::load_with(path, true)
    }

    fn load_with(path: &Path, secrets_optional: bool) -> Result<Config, ConfigError> {
        let text = read(path)?;
        let mut src = Src::new(path, &text);
        src.secrets_optional = secrets_optional;
        let raw: RawConfig = src.parse()?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut warnings = Vec::new();

        let (calendar, years) = engine_settings::calendar(&src, base, raw.calendar.as_ref())?;
        let this_year = chrono::Utc::now()
            .format("%Y")
            .to_string()
            .parse::<i32>()
            .unwrap_or(0);
        if !years.contains(&this_year) {
            let covered = if years.is_empty() {
                "none".to_string()
            } else {
                years
                    .iter()
                    .map(|y| y.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            warnings.push(format!(
                "{}: the calendar files do not cover the current year {this_year} (covered: {covered}); holidays of {this_year} are unknown and only weekdays count",
                path.display(),
            ));
        }

        let Some(dir) = &raw.directory else {
            return Err(ConfigError {
                file: path.to_path_buf(),
                line: None,
                field: Some("directory".into()),
                message: "missing section [directory] (units, procedures)".into(),
            });
        };
        for (f, name) in [
            (&dir.units, "directory.units"),
            (&dir.procedures, "directory.procedures"),
        ] {
            let p = base.join(f.get_ref());
            if let Err(e) = std::fs::metadata(&p) {
                return src.err(f.span(), name, format!("cannot read {}: {e}", p.display()));
            }
        }
        let units = csv::load_units(&base.join(dir.units.get_ref()))?;
        let procedures = csv::load_procedures(&base.join(dir.procedures.get_ref()))?;
        let directory = Directory::new(units, procedures);
        let rules = engine_settings::rules(&src, raw.rules.as_ref(), &directory, &mut warnings)?;

        let daemon =
            daemon_settings::validate(&src, base, &raw.kafka, &raw.http, &raw.state, &raw.alerts)?;
        let email = match raw.email {
            None => Email::default(),
            Some(e) => {
                let (delivery, grouping) = e.split();
                let delivery = notify_settings::validate(&src, base, &delivery, &mut warnings)?;
                let (grouping, silences) = alert_settings::validate(&src, &grouping)?;
                Email {
                    enabled: true,
                    delivery,
                    grouping,
                    silences,
                }
            }
        };
        warnings.extend(src.notes.take());
        Ok(Config {
            path: path.to_path_buf(),
            engine: crate::engine::Settings {
                calendar,
                directory,
                rules,
            },
            daemon,
            email,
            warnings,
        })
    }

    /// The settings `overdued run` is started with.
    pub fn into_daemon(self) -> crate::daemon::Settings {
        crate::daemon::Settings {
            path: self.path,
            engine: self.engine,
            daemon: self.daemon,
            email: self.email,
        }
    }
}
