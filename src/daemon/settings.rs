//! The daemon's own settings: `[http]`, `[state]`, `[alerts]`, and the Kafka
//! source's `[kafka]` (owned by [`crate::source::kafka::settings`]), validated.

use crate::config::common::{non_empty, ConfigError, Secret, Src};
use crate::source::kafka::settings::{self as kafka_settings, KafkaConfig, RawKafka};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// Everything `overdued run` is started (and reloaded) with: each stage's
/// settings, composed by the configuration loader, which the daemon never
/// imports (the command hands it a [`Reload`] that loads the file again).
#[derive(Debug, Clone)]
pub struct Settings {
    /// The configuration file, for messages.
    pub path: PathBuf,
    /// Calendar, directory, rules.
    pub engine: crate::engine::Settings,
    /// `[report]`.
    pub report: crate::report::Settings,
    /// `[kafka]`, `[http]`, `[state]`, `[alerts]`.
    pub daemon: DaemonConfig,
    /// `[email]`.
    pub email: crate::notify::settings::Email,
    /// `[alertmanager]`, `[[webhook]]`.
    pub forwarding: crate::notify::Forwarding,
}

/// Loads the configuration again (SIGHUP): the new settings and any warnings.
pub type Reload = Box<dyn FnMut() -> Result<(Settings, Vec<String>), ConfigError> + Send>;

/// Sections only the daemon (`overdued run`) reads.
#[derive(Debug, Clone, PartialEq)]
pub struct DaemonConfig {
    /// `[kafka]`.
    pub kafka: KafkaConfig,
    /// `[http] listen`.
    pub http_listen: std::net::SocketAddr,
    /// `[http] record_history`: events kept per record for the API (0 = none).
    pub record_history: usize,
    /// `[state] dir` (absolute, resolved against the config folder).
    pub state_dir: PathBuf,
    /// `[alerts] file`: alert transitions as NDJSON (default `<state dir>/alerts.ndjson`).
    pub alerts_file: Option<PathBuf>,
    /// `[alerts] topic`: alert transitions as Kafka messages (key: record id).
    pub alerts_topic: Option<String>,
    /// `[http] api_token`: bearer token of the API's mutating endpoints (none =
    /// they are refused).
    pub api_token: Option<Secret>,
    /// `[http] ui_secret`, `public_url`, `link_valid_for`: the signed links of
    /// the unit pages (none without a `ui_secret`: no pages, no links).
    pub links: Option<crate::link::Links>,
}

/// `[http]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    listen: Option<Spanned<String>>,
    record_history: Option<Spanned<i64>>,
    api_token: Option<Spanned<String>>,
    ui_secret: Option<Spanned<String>>,
    public_url: Option<Spanned<String>>,
    link_valid_for: Option<Spanned<String>>,
}

/// `[state]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawState {
    dir: Option<Spanned<String>>,
}

/// `[alerts]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawAlerts {
    file: Option<Spanned<String>>,
    topic: Option<Spanned<String>>,
}

/// Validates the daemon's sections (defaults for absent ones); paths are
/// relative to `base`.
pub fn validate(
    src: &Src<'_>,
    base: &Path,
    kafka: &RawKafka,
    http: &RawHttp,
    state: &RawState,
    alerts: &RawAlerts,
) -> Result<DaemonConfig, ConfigError> {
    let mut kafka = kafka_settings::validate(src, base, kafka)?;
    let http_listen = match &http.listen {
        Some(l) => l.get_ref().parse().or_else(|_| {
            src.err(
                l.span(),
                "http.listen",
                format!("{:?} is not an address like 127.0.0.1:9464", l.get_ref()),
            )
        })?,
        None => std::net::SocketAddr::from(([127, 0, 0, 1], 9464)),
    };
    let state_dir = base.join(non_empty(src, &state.dir, "state.dir", "state")?);
    if kafka.instance_id.as_deref() == Some("auto") {
        kafka.instance_id = Some(default_instance_id(&state_dir));
    }
    let alerts_topic = match &alerts.topic {
        Some(t) if t.get_ref().is_empty() => None,
        Some(t) => Some(t.get_ref().clone()),
        None => None,
    };
    let alerts_file = match &alerts.file {
        Some(f) if f.get_ref().is_empty() => None,
        Some(f) => Some(base.join(f.get_ref())),
        None if alerts_topic.is_none() => Some(state_dir.join("alerts.ndjson")),
        None => None,
    };
    let record_history = match &http.record_history {
        Some(n) if !(0..=10_000).contains(n.get_ref()) => {
            return src.err(
                n.span(),
                "http.record_history",
                "must be a number of events from 0 to 10000",
            );
        }
        Some(n) => *n.get_ref() as usize,
        None => 64,
    };
    let api_token = match &http.api_token {
        None => None,
        Some(t) => match src.secret(t.get_ref(), base, Some(t.span()), "http.api_token")? {
            Some(v) if v.expose().len() < 16 => {
                return src.err(
                    t.span(),
                    "http.api_token",
                    "must be at least 16 characters (use env:NAME or file:PATH)",
                );
            }
            v => v,
        },
    };
    let links = crate::link::Links::validate(
        src,
        base,
        &crate::link::RawLinks {
            ui_secret: http.ui_secret.clone(),
            public_url: http.public_url.clone(),
            link_valid_for: http.link_valid_for.clone(),
        },
        http_listen,
    )?;
    Ok(DaemonConfig {
        kafka,
        http_listen,
        record_history,
        state_dir,
        alerts_file,
        alerts_topic,
        api_token,
        links,
    })
}

/// `instance_id = "auto"`: the host name and a hash of the state
/// folder — stable across restarts of one instance (a pod of a StatefulSet, a
/// systemd unit), different for two instances on one host.
fn default_instance_id(state_dir: &Path) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(200)
        .collect();
    let dir = std::fs::canonicalize(state_dir).unwrap_or_else(|_| state_dir.to_path_buf());
    let h = xxhash_rust::xxh3::xxh3_64(dir.as_os_str().as_encoded_bytes());
    format!(
        "{}-{:08x}",
        if host.is_empty() { "overdued" } else { &host },
        h as u32
    )
}
