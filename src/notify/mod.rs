//! E-mail delivery (issue 4): the stage after [`crate::alert`] decided *what* to
//! send to *whom*. Pipeline, in the spirit of Alertmanager's composed stages:
//!
//! 1. [`crate::alert`] (grouping, dedup, silences, escalation, digests) produces
//!    [`Email`]s — already rendered, complete RFC 5322 messages;
//! 2. [`outbox`] persists each one (`state/outbox/`) *before* anything is sent,
//!    so an e-mail accepted for sending survives a crash;
//! 3. [`smtp`] delivers from the outbox (lettre, connection reuse, retries with
//!    exponential backoff and jitter, per-domain rate limit) and appends the id
//!    to the **notification log** only after the SMTP server accepted it (250);
//!    the log is what makes a restart neither lose nor repeat an e-mail.

pub mod eml;
pub mod outbox;
pub mod render;
pub mod smtp;

use crate::config::Secret;
use std::time::Duration;

/// One rendered e-mail, ready for the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    /// Stable id (also the file name in the outbox and the key in the
    /// notification log): only `[A-Za-z0-9._-]`.
    pub id: String,
    /// Envelope sender (bare address, e.g. `no-reply@example.vn`).
    pub from: String,
    /// Envelope recipients (bare addresses), deduplicated.
    pub to: Vec<String>,
    /// The complete message (headers + multipart body), CRLF line ends.
    pub bytes: Vec<u8>,
}

/// How to reach the SMTP server (`[email]` in the configuration).
#[derive(Debug, Clone)]
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
    pub fn from_file(path: &std::path::Path) -> Result<TlsCa, String> {
        let pem =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
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
    ) -> Result<Vec<lettre::transport::smtp::client::Certificate>, String> {
        let blocks = self.blocks();
        if blocks.is_empty() {
            return Err(format!(
                "{}: not a PEM certificate file (no -----BEGIN CERTIFICATE----- block)",
                self.source
            ));
        }
        blocks
            .into_iter()
            .enumerate()
            .map(|(i, b)| {
                lettre::transport::smtp::client::Certificate::from_pem(b).map_err(|e| {
                    format!(
                        "{}: certificate {} of the file is not valid PEM: {e}",
                        self.source,
                        i + 1
                    )
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
        // A checksum of the content, so that comparing two configurations by
        // their Debug text (the daemon's reload does) sees a renewed CA file.
        // FNV-1a: change detection, not security.
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

/// Failures of the delivery stage.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The outbox or the notification log could not be read or written.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, with the path.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The SMTP URL or credentials are unusable.
    #[error("invalid SMTP settings: {0}")]
    Settings(String),
    /// An e-mail id that cannot be a file name (only `[A-Za-z0-9._-]`, not
    /// starting with a dot).
    #[error("invalid e-mail id {0:?}")]
    InvalidId(String),
    /// A stored file could not be decoded or encoded.
    #[error("corrupt outbox data: {0}")]
    Corrupt(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A throwaway self-signed CA certificate (P-256; no key kept anywhere):
    /// only parsed here, never trusted for a connection.
    const CA: &str = "-----BEGIN CERTIFICATE-----
MIIBeTCCASCgAwIBAgIUUOXG/uZC5LuR9H9zvGaunIOSsq4wCgYIKoZIzj0EAwIw
GzEZMBcGA1UEAwwQb3ZlcmR1ZWQgdGVzdCBDQTAeFw0yNjExMjcyMjEwMjVaFw0y
NjExMjkyMjEwMjVaMBsxGTAXBgNVBAMMEG92ZXJkdWVkIHRlc3QgQ0EwWTATBgcq
hkjOPQIBBggqhkjOPQMBBwNCAASnTVeT2I5eJducVYduWspSwkJSkvI56BKSuyga
KeybKe1mHdfi+HGUnOM9KFO1zlSrdhOJVUYTxOPeRj6Q6kHRo0IwQDAPBgNVHRMB
Af8EBTADAQH/MA4GA1UdDwEB/wQEAwIBBjAdBgNVHQ4EFgQUiSuFIBF8tmziW7kW
usrqTQTPDOwwCgYIKoZIzj0EAwIDRwAwRAIgH6LL3Gla6QJsNF57dnn+HBDXVBTB
5AmANBbLSQz6ifMCIE2E+GFdgnbxm65LbR0VWXlXPp3YHekElXnHxhp5gZ1f
-----END CERTIFICATE-----
";

    fn ca(pem: &str) -> TlsCa {
        TlsCa {
            source: "ca.pem".into(),
            pem: pem.as_bytes().to_vec(),
        }
    }

    #[test]
    fn ca_bundles_parse_and_bad_ones_are_named() {
        // A bundle: comments and a key block around two certificates.
        let bundle = format!(
            "# provincial CA\n{CA}\n-----BEGIN PRIVATE KEY-----\nxx\n-----END PRIVATE KEY-----\n{CA}"
        );
        assert_eq!(ca(&bundle).blocks().len(), 2);
        assert_eq!(ca(&bundle).certificates().unwrap().len(), 2);
        assert_eq!(ca(CA).certificates().unwrap().len(), 1);

        let e = ca("code,name\nA,B\n").certificates().unwrap_err();
        assert!(e.starts_with("ca.pem: not a PEM certificate file"), "{e}");
        let garbled = CA.replace("MIIBeTCC", "MIIBeTC!");
        let e = ca(&format!("{CA}{garbled}")).certificates().unwrap_err();
        assert!(
            e.starts_with("ca.pem: certificate 2 of the file is not valid PEM"),
            "{e}"
        );
        assert!(!e.contains("MIIB"), "the PEM text is not echoed: {e}");
        let e = ca(&CA[..200]).certificates().unwrap_err();
        assert!(e.contains("certificate 1"), "{e}");

        // Debug: where from, how many and a checksum, not the bytes.
        let cfg = SmtpConfig {
            tls_ca: Some(ca(&bundle)),
            ..SmtpConfig::default()
        };
        let d = format!("{cfg:?}");
        assert!(
            d.contains(r#"TlsCa { source: "ca.pem", certificates: 2, fnv64: "#),
            "{d}"
        );
        assert!(!d.contains("BEGIN"), "{d}");
        // Another content under the same name is another Debug text (the
        // daemon's reload compares SMTP settings that way).
        assert_ne!(format!("{:?}", ca(CA)), format!("{:?}", ca(&bundle)));
    }

    #[test]
    fn ca_file_errors() {
        let dir = std::env::temp_dir().join(format!("overdued-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.pem");
        let e = TlsCa::from_file(&missing).unwrap_err();
        assert!(
            e.starts_with(&format!("cannot read {}: ", missing.display())),
            "{e}"
        );
        let ok = dir.join("ca.pem");
        std::fs::write(&ok, CA).unwrap();
        let c = TlsCa::from_file(&ok).unwrap();
        assert_eq!(c.source, ok.display().to_string());
        // The transport builds with it, in every TLS mode.
        for url in [
            "smtp://localhost:25",
            "smtp://localhost:587?tls=required",
            "smtps://localhost",
            "smtp://localhost?tls=none",
        ] {
            let cfg = SmtpConfig {
                url: url.into(),
                tls_ca: Some(c.clone()),
                ..SmtpConfig::default()
            };
            assert!(smtp::build_transport(&cfg).is_ok(), "{url}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
