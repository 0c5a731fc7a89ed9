//! E-mail delivery over TLS against a real server (aiosmtpd, `tests/smtp_sink.py`
//! with `--starttls` / `--tls`), trusting a private CA through `[email]
//! tls_ca_file`. A throwaway CA and server certificates (for `localhost` and
//! `127.0.0.1`) are made at test time with the `openssl` command line.
//!
//! What is checked: STARTTLS and implicit TLS deliver, and the *sink* says the
//! message arrived over TLS; `?tls=required` never falls back to clear text; a
//! certificate the configured CA did not sign, or one for another name, is
//! refused — the e-mail stays pending and counted as a retry, nothing fails.
//! Skipped (with a note) when `OVERDUED_TEST_PYTHON` is not set outside CI.

mod smtp_harness;

use overdued::config::Config;
use overdued::metrics::events::NotificationResult;
use overdued::metrics::Metrics;
use overdued::notify::outbox::Outbox;
use overdued::notify::smtp::{Sender, SenderHandle};
use overdued::notify::{Email, SmtpConfig, TlsCa};
use smtp_harness::{
    count, free_port, python, received, sessions, test_dir, tls_handshakes, wait_for, SmtpSink,
};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const FROM: &str = "no-reply@overdued.example.vn";

/// The `openssl` program: `OVERDUED_TEST_OPENSSL`, else the one on `PATH`
/// (Debian: `/usr/bin/openssl`).
fn openssl_bin() -> String {
    std::env::var("OVERDUED_TEST_OPENSSL").unwrap_or_else(|_| "openssl".into())
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new(openssl_bin())
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {} (set OVERDUED_TEST_OPENSSL): {e}", openssl_bin()));
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A throwaway certificate authority in `dir` (P-256 keys: fast to make).
struct Ca {
    dir: PathBuf,
    name: String,
}

impl Ca {
    fn new(dir: &Path, name: &str) -> Ca {
        fs::create_dir_all(dir).unwrap();
        // Our own minimal configuration: no dependence on the system
        // openssl.cnf, and basicConstraints CA:TRUE as verifiers demand.
        fs::write(
            dir.join(format!("{name}.cnf")),
            format!(
                "[req]\ndistinguished_name = dn\nprompt = no\nx509_extensions = v3_ca\n\
                 [dn]\nCN = overdued test {name}\n\
                 [v3_ca]\nbasicConstraints = critical,CA:TRUE\n\
                 keyUsage = critical,keyCertSign,cRLSign\nsubjectKeyIdentifier = hash\n"
            ),
        )
        .unwrap();
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.pem"),
                "-days",
                "2",
                "-config",
                &format!("{name}.cnf"),
            ],
        );
        Ca {
            dir: dir.to_path_buf(),
            name: name.to_string(),
        }
    }

    /// The CA certificate (what `tls_ca_file` names).
    fn pem(&self) -> PathBuf {
        self.dir.join(format!("{}.pem", self.name))
    }

    /// Issues a server certificate for `cn` with subjectAltName `san`
    /// (`DNS:localhost,IP:127.0.0.1`); returns (certificate, key) paths.
    fn issue(&self, leaf: &str, cn: &str, san: &str, serial: u32) -> (PathBuf, PathBuf) {
        let cnf = format!("{leaf}.cnf");
        fs::write(
            self.dir.join(&cnf),
            format!(
                "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = {cn}\n\
                 [v3_srv]\nbasicConstraints = critical,CA:FALSE\n\
                 keyUsage = critical,digitalSignature\nextendedKeyUsage = serverAuth\n\
                 subjectAltName = {san}\nsubjectKeyIdentifier = hash\n\
                 authorityKeyIdentifier = keyid\n"
            ),
        )
        .unwrap();
        let (key, csr, pem) = (
            format!("{leaf}.key"),
            format!("{leaf}.csr"),
            format!("{leaf}.pem"),
        );
        openssl(
            &self.dir,
            &[
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-config",
                &cnf,
            ],
        );
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &format!("{}.pem", self.name),
                "-CAkey",
                &format!("{}.key", self.name),
                "-set_serial",
                &serial.to_string(),
                "-days",
                "2",
                "-out",
                &pem,
                "-extfile",
                &cnf,
                "-extensions",
                "v3_srv",
            ],
        );
        (self.dir.join(pem), self.dir.join(key))
    }
}

/// A CA and a certificate it issued for `localhost` / `127.0.0.1`.
fn pki(dir: &Path, ca: &str) -> (Ca, (PathBuf, PathBuf)) {
    let ca = Ca::new(dir, ca);
    let leaf = ca.issue(
        &format!("{}-localhost", ca.name),
        "localhost",
        "DNS:localhost,IP:127.0.0.1",
        1,
    );
    (ca, leaf)
}

fn tls_sink(py: &str, dir: &Path, flag: &str, leaf: &(PathBuf, PathBuf)) -> SmtpSink {
    SmtpSink::start(
        py,
        free_port(),
        dir,
        &[flag, &leaf.0.to_string_lossy(), &leaf.1.to_string_lossy()],
    )
}

fn email(id: &str) -> Email {
    let msg = lettre::Message::builder()
        .from(format!("Hệ thống nhắc hạn <{FROM}>").parse().unwrap())
        .to("truong-phong@so-tuphap.example.vn".parse().unwrap())
        .subject("Hồ sơ quá hạn")
        .message_id(Some(format!("<{id}@overdued.test>")))
        .body(format!("Hồ sơ {id} đã quá hạn xử lý.\n"))
        .unwrap();
    Email {
        id: id.to_string(),
        from: FROM.to_string(),
        to: vec!["truong-phong@so-tuphap.example.vn".to_string()],
        bytes: msg.formatted(),
    }
}

fn config(url: String, ca: Option<&Path>) -> SmtpConfig {
    SmtpConfig {
        url,
        rate_per_domain_per_minute: 0,
        timeout: Duration::from_secs(10),
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_millis(300),
        tls_ca: ca.map(|p| TlsCa::from_file(p).unwrap()),
        ..SmtpConfig::default()
    }
}

/// Opens a fresh outbox in `dir`, puts `ids`, starts a sender with `cfg`.
fn send(dir: &Path, cfg: SmtpConfig, ids: &[&str]) -> (Outbox, SenderHandle, Metrics) {
    let (outbox, _) = Outbox::open(dir).unwrap();
    let metrics = Metrics::unregistered();
    let sender = Sender::start(cfg, outbox.clone(), metrics.clone()).unwrap();
    for id in ids {
        assert!(outbox.put(&email(id)).unwrap());
        sender.submit(*id);
    }
    (outbox, sender, metrics)
}

/// Waits until the sender has failed `n` attempts, then checks that nothing
/// was delivered, failed or logged: the e-mail is pending, to be retried.
fn assert_refused(what: &str, sink: &SmtpSink, outbox: &Outbox, metrics: &Metrics, id: &str) {
    wait_for(&format!("{what}: 3 failed attempts"), 20, || {
        metrics.notifications(NotificationResult::Retry) >= 3
    });
    assert_eq!(count(&sink.dir), 0, "{what}: nothing may reach the server");
    assert_eq!(metrics.notifications(NotificationResult::Sent), 0, "{what}");
    assert_eq!(
        metrics.notifications(NotificationResult::Failed),
        0,
        "{what}: refused TLS is not a permanent failure"
    );
    assert_eq!(outbox.pending().unwrap(), vec![id.to_string()], "{what}");
    assert!(!outbox.is_sent(id) && !outbox.is_failed(id), "{what}");
    assert!(outbox.log_entries().unwrap().is_empty(), "{what}");
    // The client did reach the server (an EHLO, or a TLS ClientHello for
    // smtps): the refusal is about TLS, not a port nobody listens on.
    assert!(
        sessions(&sink.dir) + tls_handshakes(&sink.dir).0 >= 1,
        "{what}: the client never reached the server"
    );
}

/// Copies `tests/fixtures/config-base` (a loadable configuration) to `to`.
fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// A copy of `tests/fixtures/config-base` in `cfg_dir` with an `[email]`
/// section: `smtp_url = url`, `tls_ca_file` naming a copy of `ca` next to it.
fn load_config(cfg_dir: &Path, ca: &Path, url: &str) -> Config {
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/config-base"),
        cfg_dir,
    );
    fs::copy(ca, cfg_dir.join("provincial-ca.pem")).unwrap();
    let mut toml = fs::read_to_string(cfg_dir.join("overdued.toml")).unwrap();
    toml.push_str(&format!(
        "\n[email]\nsmtp_url = \"{url}\"\ntls_ca_file = \"provincial-ca.pem\"\n"
    ));
    fs::write(cfg_dir.join("overdued.toml"), toml).unwrap();
    Config::load(&cfg_dir.join("overdued.toml")).unwrap()
}

/// A CA file with `?tls=none` loads (it is valid) but is reported unused.
#[test]
fn ca_file_with_tls_none_is_a_warning() {
    let dir = test_dir("tls-none-warning");
    let ca = Ca::new(&dir.join("pki"), "ca");
    let cfg = load_config(
        &dir.join("config"),
        &ca.pem(),
        "smtp://localhost:25?tls=none",
    );
    assert!(cfg.email.delivery.smtp.tls_ca.is_some());
    assert!(
        cfg.warnings
            .iter()
            .any(|w| w.contains("email.tls_ca_file is not used: smtp_url has tls=none")),
        "{:?}",
        cfg.warnings
    );
}

/// (a) `smtp://` + the private CA from the configuration file: delivered over
/// STARTTLS (the sink saw TLS, and refuses MAIL in clear anyway).
#[test]
fn starttls_with_private_ca_from_config_delivers_over_tls() {
    let Some(py) = python() else { return };
    let t0 = Instant::now();
    let dir = test_dir("tls-starttls");
    let (ca, leaf) = pki(&dir.join("pki"), "ca");
    let sink = tls_sink(&py, &dir.join("sink"), "--starttls", &leaf);

    // Through Config::load: `tls_ca_file` is relative to the config folder.
    let cfg = load_config(
        &dir.join("config"),
        &ca.pem(),
        &format!("smtp://localhost:{}", sink.port),
    );
    assert!(cfg.warnings.iter().all(|w| !w.contains("tls_ca_file")));
    let ca_cfg = cfg
        .email
        .delivery
        .smtp
        .tls_ca
        .clone()
        .expect("tls_ca loaded");
    assert_eq!(
        Path::new(&ca_cfg.source),
        dir.join("config/provincial-ca.pem")
    );
    // Debug shows where the CA came from, not its bytes.
    let dbg = format!("{:?}", cfg.email.delivery.smtp);
    assert!(
        dbg.contains("certificates: 1") && !dbg.contains("BEGIN"),
        "{dbg}"
    );

    let mut smtp = cfg.email.delivery.smtp.clone();
    smtp.timeout = Duration::from_secs(10);
    let (outbox, mut sender, metrics) = send(&dir.join("state"), smtp, &["0001-tls", "0002-tls"]);
    wait_for("2 e-mails over STARTTLS", 20, || sender.depth() == 0);
    let got = received(&sink.dir);
    assert_eq!(got.len(), 2);
    for r in &got {
        assert_eq!(r.tls_mode.as_deref(), Some("starttls"), "message {}", r.n);
        assert!(
            r.tls_version
                .as_deref()
                .is_some_and(|v| v.starts_with("TLSv1.")),
            "{:?}",
            r.tls_version
        );
    }
    assert_eq!(metrics.notifications(NotificationResult::Sent), 2);
    assert_eq!(metrics.notifications(NotificationResult::Retry), 0);
    assert_eq!(outbox.log_entries().unwrap().len(), 2);
    // The TLS session is reused for the second e-mail; the client asked for
    // the URL's host name.
    assert_eq!(sessions(&sink.dir), 1);
    assert_eq!(tls_handshakes(&sink.dir), (1, "localhost".to_string()));
    assert!(sender.shutdown(Duration::from_secs(10)));
    eprintln!("timing: starttls_with_private_ca {:?}", t0.elapsed());
}

/// (b) `smtps://` + the private CA: delivered over implicit TLS.
#[test]
fn smtps_with_private_ca_delivers_over_implicit_tls() {
    let Some(py) = python() else { return };
    let t0 = Instant::now();
    let dir = test_dir("tls-smtps");
    let (ca, leaf) = pki(&dir.join("pki"), "ca");
    let sink = tls_sink(&py, &dir.join("sink"), "--tls", &leaf);
    let cfg = config(format!("smtps://localhost:{}", sink.port), Some(&ca.pem()));
    let (outbox, mut sender, metrics) = send(&dir.join("state"), cfg, &["0001-smtps"]);
    wait_for("1 e-mail over smtps", 20, || sender.depth() == 0);
    let got = received(&sink.dir);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].tls_mode.as_deref(), Some("implicit"));
    assert_eq!(
        got[0].message_id.as_deref(),
        Some("0001-smtps@overdued.test")
    );
    assert_eq!(metrics.notifications(NotificationResult::Sent), 1);
    assert!(outbox.is_sent("0001-smtps"));
    assert!(sender.shutdown(Duration::from_secs(10)));
    eprintln!("timing: smtps_with_private_ca {:?}", t0.elapsed());
}

/// (c) `?tls=required` against a server without STARTTLS: nothing is sent
/// (not in clear either); the e-mail waits, and goes once the server offers
/// STARTTLS on the same port.
#[test]
fn required_tls_without_starttls_never_sends_in_clear() {
    let Some(py) = python() else { return };
    let t0 = Instant::now();
    let dir = test_dir("tls-required");
    let (ca, leaf) = pki(&dir.join("pki"), "ca");
    let port = free_port();
    let plain = SmtpSink::start(&py, port, &dir.join("sink-plain"), &[]);
    let cfg = config(
        format!("smtp://localhost:{port}?tls=required"),
        Some(&ca.pem()),
    );
    let (outbox, mut sender, metrics) = send(&dir.join("state"), cfg, &["0001-req"]);
    assert_refused(
        "tls=required, no STARTTLS",
        &plain,
        &outbox,
        &metrics,
        "0001-req",
    );
    plain.stop();

    // The same port now offers STARTTLS: the pending e-mail goes, over TLS.
    let tls = SmtpSink::start(
        &py,
        port,
        &dir.join("sink-tls"),
        &[
            "--starttls",
            &leaf.0.to_string_lossy(),
            &leaf.1.to_string_lossy(),
        ],
    );
    wait_for("the pending e-mail once STARTTLS is offered", 20, || {
        sender.depth() == 0
    });
    let got = received(&tls.dir);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].tls_mode.as_deref(), Some("starttls"));
    assert_eq!(count(&dir.join("sink-plain")), 0);
    assert_eq!(metrics.notifications(NotificationResult::Sent), 1);
    assert_eq!(metrics.notifications(NotificationResult::Failed), 0);
    assert!(sender.shutdown(Duration::from_secs(10)));
    eprintln!("timing: required_tls_without_starttls {:?}", t0.elapsed());
}

/// (d) Certificates the client must refuse: signed by another CA (STARTTLS —
/// opportunistic mode must not fall back to clear text — and smtps), and
/// signed by the right CA but for another name. Also: the private CA is not
/// trusted without `tls_ca_file`. Each e-mail stays pending, counted `retry`,
/// never delivered, never `failed`, and the sender keeps running.
#[test]
fn untrusted_or_misnamed_certificates_are_refused() {
    let Some(py) = python() else { return };
    let t0 = Instant::now();
    let dir = test_dir("tls-untrusted");
    let (ca, good_leaf) = pki(&dir.join("pki"), "ca");
    let (_rogue, rogue_leaf) = pki(&dir.join("pki-rogue"), "rogue");
    let other_name = ca.issue(
        "ca-other",
        "mail.other.example",
        "DNS:mail.other.example",
        2,
    );

    // (what, sink flag, server certificate, tls_ca_file set, URL scheme)
    type Case<'a> = (&'a str, &'a str, &'a (PathBuf, PathBuf), bool, &'a str);
    let cases: [Case; 4] = [
        (
            "STARTTLS, another CA",
            "--starttls",
            &rogue_leaf,
            true,
            "smtp",
        ),
        ("smtps, another CA", "--tls", &rogue_leaf, true, "smtps"),
        (
            "smtps, right CA, another name",
            "--tls",
            &other_name,
            true,
            "smtps",
        ),
        (
            "STARTTLS, private CA not configured",
            "--starttls",
            &good_leaf,
            false,
            "smtp",
        ),
    ];
    // All at once (each waits for its own retries): seconds, not 4× that.
    let mut running = Vec::new();
    for (i, (what, flag, leaf, with_ca, scheme)) in cases.iter().enumerate() {
        let sink = tls_sink(&py, &dir.join(format!("sink-{i}")), flag, leaf);
        let cfg = config(
            format!("{scheme}://localhost:{}", sink.port),
            with_ca.then(|| ca.pem()).as_deref(),
        );
        let id = format!("000{i}-untrusted");
        let (outbox, sender, metrics) = send(&dir.join(format!("state-{i}")), cfg, &[&id]);
        running.push((i, *what, sink, outbox, sender, metrics, id));
    }
    for (i, what, sink, outbox, mut sender, metrics, id) in running {
        assert_refused(what, &sink, &outbox, &metrics, &id);
        // It got as far as a TLS handshake for `localhost`, and gave up there.
        let (handshakes, sni) = tls_handshakes(&sink.dir);
        assert!(handshakes >= 1, "{what}: no TLS handshake");
        assert_eq!(sni, "localhost", "{what}");
        assert_eq!(sender.depth(), 1, "{what}");
        assert!(sender.take_failed().is_empty(), "{what}");
        assert!(
            sender.shutdown(Duration::from_secs(10)),
            "{what}: sender stuck"
        );
        // Still there for the next start.
        drop(outbox);
        let (_, rep) = Outbox::open(&dir.join(format!("state-{i}"))).unwrap();
        assert_eq!(rep.pending, 1, "{what}");
    }
    eprintln!(
        "timing: untrusted_or_misnamed_certificates {:?}",
        t0.elapsed()
    );
}
