//! E-mail delivery: the stage after [`crate::alert`] decided *what* to
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
//!
//! Beside e-mail, transitions are forwarded to what a province already runs:
//! [`alertmanager`] (a Prometheus Alertmanager) and [`webhook`] (signed JSON
//! batches, spooled like the outbox), both over [`post`].

pub mod alertmanager;
pub mod outbox;
pub mod post;
pub mod render;
pub mod settings;
pub mod smtp;
pub mod stats;
pub mod webhook;

pub use settings::{Settings, SmtpConfig, TlsCa, TlsError};

/// `[alertmanager]` and `[[webhook]]`: where alert transitions are forwarded
/// besides e-mail (`overdued run` only).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Forwarding {
    /// `[alertmanager]`.
    pub alertmanager: Option<alertmanager::Settings>,
    /// Every `[[webhook]]`.
    pub webhooks: Vec<webhook::Settings>,
}

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
    /// The extra TLS roots are unusable.
    #[error("invalid SMTP settings: {0}")]
    Tls(#[from] TlsError),
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

        let e = ca("code,name\nA,B\n")
            .certificates()
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("ca.pem: not a PEM certificate file"), "{e}");
        let garbled = CA.replace("MIIBeTCC", "MIIBeTC!");
        let e = ca(&format!("{CA}{garbled}"))
            .certificates()
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("ca.pem: certificate 2 of the file is not valid PEM"),
            "{e}"
        );
        assert!(!e.contains("MIIB"), "the PEM text is not echoed: {e}");
        let e = ca(&CA[..200]).certificates().unwrap_err().to_string();
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
        // Another content under the same name is another Debug text and
        // another value (reload compares SMTP settings with `==`).
        assert_ne!(format!("{:?}", ca(CA)), format!("{:?}", ca(&bundle)));
        assert_ne!(ca(CA), ca(&bundle));
    }

    #[test]
    fn ca_file_errors() {
        let dir = std::env::temp_dir().join(format!("overdued-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.pem");
        let e = TlsCa::from_file(&missing).unwrap_err().to_string();
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
