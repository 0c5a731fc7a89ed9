//! The delivery stage's settings: the SMTP server, TLS roots, sender, admin
//! recipients, language and templates (`[email]` delivery keys), with their
//! validation. Errors name the file, the line and the field.

use super::render::Templates;
use crate::config::common::{valid_email, ConfigError, Secret, Src};
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// `[email]` as a whole: the alert stage's grouping and silences, and this
/// stage's delivery settings.
#[derive(Debug, Clone, Default)]
pub struct Email {
    /// Whether the configuration has an `[email]` section (the daemon sends
    /// e-mail only then; replay and demo render with these settings either way).
    pub enabled: bool,
    /// Server, sender, recipients of last resort, language, templates.
    pub delivery: Settings,
    /// Grouping and digest.
    pub grouping: crate::alert::Settings,
    /// `[[email.silence]]`.
    pub silences: Vec<crate::alert::Silence>,
}

/// How alerts reach people: everything the delivery stage needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// SMTP server and delivery settings.
    pub smtp: SmtpConfig,
    /// `From:` as written (`name <address>`).
    pub from: String,
    /// Receives `unrouted` and alerts of units without addresses.
    pub admin: Vec<String>,
    /// `vi` or `en`.
    pub language: String,
    /// The compiled templates.
    pub templates: Templates,
}

impl Settings {
    /// What differs in `new`: the keys that apply at once (`from`, `admin`,
    /// `language`, `templates`: the next e-mail is rendered with them) and those
    /// that need a restart (`smtp`: the sender keeps its connection settings).
    pub fn changes(&self, new: &Settings) -> (Vec<&'static str>, Vec<&'static str>) {
        let mut now = Vec::new();
        if self.from != new.from {
            now.push("from");
        }
        if self.admin != new.admin {
            now.push("admin");
        }
        if self.language != new.language {
            now.push("language");
        }
        if self.templates != new.templates {
            now.push("templates");
        }
        let restart = if self.smtp != new.smtp {
            vec!["smtp"]
        } else {
            Vec::new()
        };
        (now, restart)
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            smtp: SmtpConfig::default(),
            from: "overdued <no-reply@example.vn>".into(),
            admin: vec!["hcc@example.vn".into()],
            language: "vi".into(),
            templates: Templates::embedded("vi"),
        }
    }
}

/// Why a CA file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No `CERTIFICATE` block.
    #[error("{0}: not a PEM certificate file (no -----BEGIN CERTIFICATE----- block)")]
    NoCertificate(String),
    /// A block the TLS backend refuses.
    #[error("{file}: certificate {index} of the file is not valid PEM: {reason}")]
    BadCertificate {
        /// Where the PEM came from.
        file: String,
        /// 1-based position in the file.
        index: usize,
        /// The backend's reason.
        reason: String,
    },
}

/// How to reach the SMTP server (`[email]` in the configuration).
#[derive(Debug, Clone, PartialEq)]
pub struct SmtpConfig {
    /// `smtp://host:port` (STARTTLS if offered), `smtp://host:port?tls=required`,
    /// `smtp://host:port?tls=none`, `smtps://host:port` (implicit TLS).
    pub url: String,
    /// Login, if the server wants one.
    pub username: Option<String>,
    /// Password (from `env:` / `file:`), never logged.
    pub password: Option<Secret>,
    /// At most this many e-mails per recipient domain per minute (0 = no limit).
    pub rate_per_domain_per_minute: u32,
    /// Per-command SMTP timeout.
    pub timeout: Duration,
    /// Retry backoff: first delay and cap (doubling, with jitter).
    pub backoff_min: Duration,
    /// Cap of the retry backoff.
    pub backoff_max: Duration,
    /// Extra trusted root certificates (`[email] tls_ca_file`), for servers
    /// whose certificate a private CA signed. Added to the system roots for
    /// every TLS mode; ignored with `?tls=none`.
    pub tls_ca: Option<TlsCa>,
}

/// CA certificates (PEM) trusted in addition to the system roots. Not secret,
/// but `Debug` shows where they came from, how many and a checksum, not
/// kilobytes of base64.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsCa {
    /// Where the PEM came from (a path, for messages).
    pub source: String,
    /// The PEM text: one or more `CERTIFICATE` blocks.
    pub pem: Vec<u8>,
}

impl TlsCa {
    /// Reads and checks a PEM file (at least one certificate, each parsable by
    /// the TLS backend), so that a bad file is refused when the configuration
    /// is loaded rather than at the first connection. The message names the
    /// file (the configuration loader adds line and field).
    pub fn from_file(path: &std::path::Path) -> Result<TlsCa, TlsError> {
        let pem = std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let ca = TlsCa {
            source: path.display().to_string(),
            pem,
        };
        ca.certificates()?;
        Ok(ca)
    }

    /// The certificates, parsed by the TLS backend. An error names the file
    /// and which certificate, never the PEM text.
    pub fn certificates(
        &self,
    ) -> Result<Vec<lettre::transport::smtp::client::Certificate>, TlsError> {
        let blocks = self.blocks();
        if blocks.is_empty() {
            return Err(TlsError::NoCertificate(self.source.clone()));
        }
        blocks
            .into_iter()
            .enumerate()
            .map(|(i, b)| {
                lettre::transport::smtp::client::Certificate::from_pem(b).map_err(|e| {
                    TlsError::BadCertificate {
                        file: self.source.clone(),
                        index: i + 1,
                        reason: e.to_string(),
                    }
                })
            })
            .collect()
    }

    /// The `CERTIFICATE` blocks of the PEM text, each with its armour lines.
    /// Other blocks (keys, parameters) are skipped: they are not roots.
    pub fn blocks(&self) -> Vec<&[u8]> {
        const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
        const END: &[u8] = b"-----END CERTIFICATE-----";
        let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle);
        let mut out = Vec::new();
        let mut rest = &self.pem[..];
        while let Some(b) = find(rest, BEGIN) {
            let Some(e) = find(&rest[b..], END) else {
                // An unterminated block: handed on whole, so that the TLS
                // backend reports it instead of it being silently dropped.
                out.push(&rest[b..]);
                break;
            };
            let end = b + e + END.len();
            out.push(&rest[b..end]);
            rest = &rest[end..];
        }
        out
    }
}

impl std::fmt::Debug for TlsCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A checksum of the content, so that a log line shows whether a
        // renewed CA file was picked up. FNV-1a: identification, not security.
        let sum = self.pem.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        f.debug_struct("TlsCa")
            .field("source", &self.source)
            .field("certificates", &self.blocks().len())
            .field("fnv64", &format_args!("{sum:016x}"))
            .finish()
    }
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            url: "smtp://127.0.0.1:2525".into(),
            username: None,
            password: None,
            rate_per_domain_per_minute: 60,
            timeout: Duration::from_secs(30),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            tls_ca: None,
        }
    }
}

/// The delivery keys of `[email]`, as written.
#[derive(Default)]
pub struct RawDelivery {
    /// `smtp_url`.
    pub smtp_url: Option<Spanned<String>>,
    /// `username`.
    pub username: Option<Spanned<String>>,
    /// `password` (`env:` / `file:`).
    pub password: Option<Spanned<String>>,
    /// `tls_ca_file`.
    pub tls_ca_file: Option<Spanned<String>>,
    /// `from`.
    pub from: Option<Spanned<String>>,
    /// `admin` (`;`-separated).
    pub admin: Option<Spanned<String>>,
    /// `language`.
    pub language: Option<Spanned<String>>,
    /// `templates` (a folder with `vi/` and `en/`).
    pub templates: Option<Spanned<String>>,
    /// `rate_limit_per_domain`.
    pub rate_limit_per_domain: Option<Spanned<i64>>,
}

/// Validates the delivery keys; paths are relative to `base`.
pub fn validate(
    src: &Src<'_>,
    base: &Path,
    e: &RawDelivery,
    warnings: &mut Vec<String>,
) -> Result<Settings, ConfigError> {
    let mut c = Settings::default();
    if let Some(u) = &e.smtp_url {
        let v = u.get_ref();
        let ok = (v.starts_with("smtp://") || v.starts_with("smtps://"))
            && v.split("://").nth(1).is_some_and(|h| !h.is_empty());
        if !ok {
            return src.err(
                u.span(),
                "email.smtp_url",
                format!("{v:?} is not smtp://host:port or smtps://host:port"),
            );
        }
        c.smtp.url = v.clone();
    }
    if let Some(u) = &e.username {
        c.smtp.username = Some(u.get_ref().clone());
    }
    if let Some(p) = &e.password {
        c.smtp.password = src.secret(p.get_ref(), base, Some(p.span()), "email.password")?;
    }
    if let Some(f) = &e.tls_ca_file {
        // Read and parsed now: a missing or garbled CA file is a configuration
        // error at start-up, not a TLS failure retried forever at send time.
        let path = base.join(f.get_ref());
        let ca = TlsCa::from_file(&path)
            .or_else(|m| src.err(f.span(), "email.tls_ca_file", m.to_string()))?;
        if super::smtp::parse_url(&c.smtp.url).is_ok_and(|ep| ep.tls == super::smtp::TlsMode::None)
        {
            warnings.push(format!(
                "{}:{}: email.tls_ca_file is not used: smtp_url has tls=none",
                src.path.display(),
                src.line(f.span().start)
            ));
        }
        c.smtp.tls_ca = Some(ca);
    }
    if let Some(f) = &e.from {
        let v = f.get_ref();
        if v.parse::<lettre::message::Mailbox>().is_err() || v.contains(['\r', '\n']) {
            return src.err(
                f.span(),
                "email.from",
                format!("{v:?} is not an address like \"overdued <no-reply@example.vn>\""),
            );
        }
        c.from = v.clone();
    }
    if let Some(a) = &e.admin {
        let list: Vec<String> = a
            .get_ref()
            .split(';')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        if list.is_empty() || list.iter().any(|x| !valid_email(x)) {
            return src.err(
                a.span(),
                "email.admin",
                format!("{:?} is not a ';'-separated list of addresses", a.get_ref()),
            );
        }
        c.admin = list;
    }
    if let Some(l) = &e.language {
        if !matches!(l.get_ref().as_str(), "vi" | "en") {
            return src.err(l.span(), "email.language", "must be \"vi\" or \"en\"");
        }
        c.language = l.get_ref().clone();
    }
    if let Some(r) = &e.rate_limit_per_domain {
        if !(0..=100_000).contains(r.get_ref()) {
            return src.err(
                r.span(),
                "email.rate_limit_per_domain",
                "must be e-mails per minute from 0 (no limit) to 100000",
            );
        }
        c.smtp.rate_per_domain_per_minute = *r.get_ref() as u32;
    }
    let dir = match &e.templates {
        Some(t) => Some((base.join(t.get_ref()), Some(t))),
        None => {
            let d = base.join("templates");
            d.join(&c.language).is_dir().then_some((d, None))
        }
    };
    c.templates = match dir {
        None => Templates::embedded(&c.language),
        Some((d, span)) => Templates::load(&d.join(&c.language)).map_err(|e| ConfigError {
            file: e.file,
            line: e.line,
            field: span.map(|_| "email.templates".to_string()),
            message: e.message,
        })?,
    };
    Ok(c)
}
