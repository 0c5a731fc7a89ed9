//! Helpers shared by the e-mail delivery tests: a real SMTP server
//! (`tests/smtp_sink.py`, aiosmtpd, run by the Python that `scripts/test.sh`
//! exports as `OVERDUED_TEST_PYTHON`), started on a free port and killed on
//! drop, and the messages it received, parsed with a real MIME parser
//! (`mail-parser`), with whether each arrived over TLS (sink flags
//! `--starttls CERT KEY` / `--tls CERT KEY`).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The test Python (with aiosmtpd): `None` (skip, with a note) outside CI, a
/// failure in CI, where `scripts/test.sh` always sets it.
pub fn python() -> Option<String> {
    match std::env::var("OVERDUED_TEST_PYTHON") {
        Ok(v) => Some(v),
        Err(_) if std::env::var("CI").is_ok() => {
            panic!("CI run without OVERDUED_TEST_PYTHON: scripts/test.sh provides it")
        }
        Err(_) => {
            eprintln!(
                "skipped: OVERDUED_TEST_PYTHON not set (run the tests through scripts/test.sh)"
            );
            None
        }
    }
}

/// Nobody accepts connections on this loopback port now.
pub fn port_is_free(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err()
}

/// A loopback port nobody listens on now.
pub fn free_port() -> u16 {
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("binding an ephemeral port");
        if port_is_free(port) {
            return port;
        }
    }
}

/// A fresh folder for one test (under Cargo's per-target temporary folder).
pub fn test_dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("smtp-{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("creating the test folder");
    d
}

/// Polls `f` every 50 ms until it holds; fails after `secs`.
pub fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(
            t.elapsed() < Duration::from_secs(secs),
            "timed out after {secs} s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A running `tests/smtp_sink.py`.
pub struct SmtpSink {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Where it stores what it receives.
    pub dir: PathBuf,
}

impl SmtpSink {
    /// Starts the sink on `port` (which must be free) storing into `dir`;
    /// `args` are extra flags (`--mode 550`, `--delay-ms 20`, ...). Returns once
    /// it printed "ready".
    pub fn start(python: &str, port: u16, dir: &Path, args: &[&str]) -> SmtpSink {
        assert!(port_is_free(port), "port {port} is taken");
        std::fs::create_dir_all(dir).expect("creating the sink folder");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.with_extension("log"))
            .expect("creating the sink log");
        let mut child = Command::new(python)
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/smtp_sink.py"))
            .arg(port.to_string())
            .arg(dir)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("starting tests/smtp_sink.py");
        let stdout = child.stdout.take().expect("sink stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.trim() == "ready" {
                    let _ = tx.send(());
                }
            }
        });
        let mut sink = SmtpSink {
            child,
            port,
            dir: dir.to_path_buf(),
        };
        let t = Instant::now();
        loop {
            if rx.recv_timeout(Duration::from_millis(100)).is_ok() {
                break;
            }
            assert!(
                sink.alive(),
                "smtp_sink.py exited at start; see {}",
                dir.with_extension("log").display()
            );
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "smtp_sink.py not ready after 30 s"
            );
        }
        assert!(
            !port_is_free(port),
            "sink says ready but port {port} is closed"
        );
        sink
    }

    /// The process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// `smtp://127.0.0.1:PORT?tls=none`.
    pub fn url(&self) -> String {
        smtp_url(self.port)
    }

    /// Kills it and waits until the port is closed.
    pub fn stop(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The plain-text SMTP URL of a loopback port.
pub fn smtp_url(port: u16) -> String {
    format!("smtp://127.0.0.1:{port}?tls=none")
}

/// One message the sink stored, parsed.
#[derive(Debug, Clone)]
pub struct Received {
    /// The sink's sequence number.
    pub n: u32,
    /// Envelope sender.
    pub mail_from: String,
    /// Envelope recipients.
    pub rcpt_tos: Vec<String>,
    /// The bytes as received.
    pub raw: Vec<u8>,
    /// Decoded `Subject`.
    pub subject: Option<String>,
    /// `Message-ID` (without angle brackets).
    pub message_id: Option<String>,
    /// First text/plain body, decoded.
    pub text: Option<String>,
    /// First text/html body, decoded.
    pub html: Option<String>,
    /// How the message reached the sink: `None` in clear, else the TLS mode
    /// (`starttls` or `implicit`) as the sink's own TLS layer reports it.
    pub tls_mode: Option<String>,
    /// The negotiated TLS version (`TLSv1.3`), when over TLS.
    pub tls_version: Option<String>,
}

/// Every message in the sink's folder, in arrival order.
pub fn received(dir: &Path) -> Vec<Received> {
    let mut nums: Vec<u32> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    e.file_name()
                        .to_str()?
                        .strip_suffix(".eml")?
                        .parse::<u32>()
                        .ok()
                })
                .collect()
        })
        .unwrap_or_default();
    nums.sort_unstable();
    nums.into_iter()
        .map(|n| {
            let raw =
                std::fs::read(dir.join(format!("{n}.eml"))).expect("reading a stored message");
            let meta: serde_json::Value = serde_json::from_slice(
                &std::fs::read(dir.join(format!("{n}.json"))).expect("reading a stored envelope"),
            )
            .expect("envelope JSON");
            let parsed = mail_parser::MessageParser::default()
                .parse(&raw)
                .expect("a parsable message");
            Received {
                n,
                mail_from: meta["mail_from"].as_str().unwrap_or_default().to_string(),
                rcpt_tos: meta["rcpt_tos"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default(),
                subject: parsed.subject().map(String::from),
                message_id: parsed.message_id().map(String::from),
                text: parsed.body_text(0).map(|c| c.into_owned()),
                html: parsed.body_html(0).map(|c| c.into_owned()),
                tls_mode: meta["tls"]["mode"].as_str().map(String::from),
                tls_version: meta["tls"]["version"].as_str().map(String::from),
                raw,
            }
        })
        .collect()
}

/// How many messages the sink stored so far.
pub fn count(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| {
                    let n = e.file_name();
                    let n = n.to_string_lossy();
                    n.ends_with(".eml") && !n.starts_with('.')
                })
                .count()
        })
        .unwrap_or(0)
}

/// How many SMTP sessions (EHLOs) the sink has seen.
pub fn sessions(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("sessions"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// How many TLS handshakes (ClientHellos with a server name) the sink has
/// seen, and the last name asked for (`--starttls` / `--tls` only).
pub fn tls_handshakes(dir: &Path) -> (usize, String) {
    let n = std::fs::read_to_string(dir.join("handshakes"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let sni = std::fs::read_to_string(dir.join("sni")).unwrap_or_default();
    (n, sni)
}
