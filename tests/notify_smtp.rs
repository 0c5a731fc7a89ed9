//! E-mail delivery against a real SMTP server (aiosmtpd, `tests/smtp_sink.py`):
//! outbox → SMTP → notification log, retries while the server is down, permanent
//! and transient rejections, crash safety with SIGKILL, per-domain rate limit.
//! Skipped (with a note) when `OVERDUED_TEST_PYTHON` is not set outside CI.

mod smtp_harness;

use lettre::message::MultiPart;
use lettre::Message;
use overdued::metrics::events::NotificationResult;
use overdued::metrics::Metrics;
use overdued::notify::outbox::Outbox;
use overdued::notify::smtp::{Sender, SenderHandle};
use overdued::notify::{Email, SmtpConfig};
use smtp_harness::{
    count, free_port, python, received, sessions, smtp_url, test_dir, wait_for, SmtpSink,
};
use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SUBJECT: &str = "Hồ sơ quá hạn";
const FROM: &str = "no-reply@overdued.example.vn";

/// A multipart/alternative (text + HTML) message built with lettre, addressed
/// (header `To`) to the first recipient only: the envelope decides delivery.
fn email(id: &str, to: &[&str]) -> Email {
    let text = format!("Hồ sơ {id} đã quá hạn xử lý.\nĐề nghị xử lý ngay.\n");
    let html = format!("<p>Hồ sơ <b>{id}</b> đã quá hạn xử lý.</p>");
    let msg = Message::builder()
        .from(format!("Hệ thống nhắc hạn <{FROM}>").parse().unwrap())
        .to(to[0].parse().unwrap())
        .subject(SUBJECT)
        .message_id(Some(format!("<{id}@overdued.test>")))
        .multipart(MultiPart::alternative_plain_html(text, html))
        .unwrap();
    Email {
        id: id.to_string(),
        from: FROM.to_string(),
        to: to.iter().map(|s| s.to_string()).collect(),
        bytes: msg.formatted(),
    }
}

fn config(url: String, rate: u32) -> SmtpConfig {
    SmtpConfig {
        url,
        rate_per_domain_per_minute: rate,
        timeout: Duration::from_secs(10),
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_millis(400),
        ..SmtpConfig::default()
    }
}

fn start(outbox: &Outbox, url: String, rate: u32) -> (SenderHandle, Metrics) {
    let metrics = Metrics::new();
    let handle = Sender::start(config(url, rate), outbox.clone(), metrics.clone()).unwrap();
    (handle, metrics)
}

/// Files left in the outbox folder itself (not `failed/`).
fn outbox_files(outbox: &Outbox) -> Vec<String> {
    std::fs::read_dir(outbox.dir())
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

fn logged_ids(outbox: &Outbox) -> Vec<String> {
    outbox
        .log_entries()
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect()
}

#[test]
fn delivers_to_envelope_recipients_and_round_trips_mime() {
    let Some(py) = python() else { return };
    let t0 = Instant::now();
    let dir = test_dir("deliver");
    let sink = SmtpSink::start(&py, free_port(), &dir.join("sink"), &[]);
    let (outbox, _) = Outbox::open(&dir.join("state")).unwrap();
    // One e-mail already in the outbox before the sender starts (sent from
    // `pending()`), two submitted afterwards.
    let e1 = email(
        "0001-a",
        &[
            "truong-phong@so-tuphap.example.vn",
            "pho-phong@ubnd.example.vn",
        ],
    );
    outbox.put(&e1).unwrap();
    let (mut sender, metrics) = start(&outbox, sink.url(), 0);
    let e2 = email("0002-b", &["chanh-van-phong@ubnd.example.vn"]);
    let e3 = email("0003-c", &["giam-doc@so-xaydung.example.vn"]);
    for e in [&e2, &e3] {
        assert!(outbox.put(e).unwrap());
        sender.submit(e.id.clone());
    }
    wait_for("3 e-mails accepted", 30, || sender.depth() == 0);
    let mut sent = sender.take_sent();
    sent.sort();
    assert_eq!(sent, vec!["0001-a", "0002-b", "0003-c"]);

    let got = received(&sink.dir);
    assert_eq!(got.len(), 3, "exactly 3 messages at the server");
    for (r, e) in got.iter().zip([&e1, &e2, &e3]) {
        assert_eq!(r.mail_from, FROM);
        assert_eq!(r.rcpt_tos, e.to, "envelope recipients of {}", e.id);
        assert_eq!(r.subject.as_deref(), Some(SUBJECT));
        assert_eq!(
            r.message_id.as_deref(),
            Some(format!("{}@overdued.test", e.id).as_str())
        );
        let text = r.text.as_deref().unwrap_or_default();
        assert!(
            text.contains(&format!("Hồ sơ {} đã quá hạn xử lý.", e.id)),
            "{text}"
        );
        let html = r.html.as_deref().unwrap_or_default();
        assert!(html.contains(&format!("<b>{}</b>", e.id)), "{html}");
        // Same bytes as given (modulo the final CRLF the protocol adds).
        assert_eq!(
            String::from_utf8_lossy(&r.raw).trim_end(),
            String::from_utf8_lossy(&e.bytes).trim_end()
        );
    }

    // The notification log has them, with the server's 250; the outbox is empty.
    let log = outbox.log_entries().unwrap();
    assert_eq!(
        log.iter().map(|l| l.id.as_str()).collect::<Vec<_>>(),
        ["0001-a", "0002-b", "0003-c"]
    );
    assert!(log.iter().all(|l| l.response.starts_with("250")), "{log:?}");
    assert_eq!(log[0].to, e1.to);
    assert!(outbox.pending().unwrap().is_empty());
    assert!(
        outbox_files(&outbox).is_empty(),
        "{:?}",
        outbox_files(&outbox)
    );
    assert_eq!(metrics.notifications(NotificationResult::Sent), 3);
    assert_eq!(metrics.notifications(NotificationResult::Failed), 0);
    assert_eq!(metrics.sends_timed(), 3);
    assert_eq!(metrics.outbox_depth(), 0);
    // Connection reuse: one SMTP session for the three.
    assert_eq!(sessions(&sink.dir), 1, "one SMTP session reused");

    // A repeated put of a sent id is a no-op (a restarted caller re-putting).
    assert!(!outbox.put(&e1).unwrap());
    assert!(sender.shutdown(Duration::from_secs(10)));
    // Restart: nothing pending, nothing re-sent.
    let (outbox, rep) = Outbox::open(&dir.join("state")).unwrap();
    assert_eq!(rep.pending, 0);
    let (mut sender, _) = start(&outbox, sink.url(), 0);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(count(&sink.dir), 3);
    assert!(sender.shutdown(Duration::from_secs(10)));
    eprintln!("timing: delivers_to_envelope_recipients {:?}", t0.elapsed());
}

#[test]
fn smtp_down_then_up_delivers_everything_once() {
    let Some(py) = python() else { return };
    let t0 = Instant::now();
    let dir = test_dir("down-up");
    let port = free_port();
    let (outbox, _) = Outbox::open(&dir.join("state")).unwrap();
    let (mut sender, metrics) = start(&outbox, smtp_url(port), 0);
    let ids: Vec<String> = (0..20).map(|n| format!("{n:04}-down")).collect();
    for id in &ids {
        assert!(outbox
            .put(&email(id, &["lanh-dao@ubnd.example.vn"]))
            .unwrap());
        sender.submit(id.clone());
    }
    // Nobody listens for a while: everything stays queued, attempts are retried.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(sender.depth(), 20);
    assert_eq!(outbox.depth().unwrap(), 20);
    let retries_while_down = metrics.notifications(NotificationResult::Retry);
    assert!(retries_while_down > 0, "retry counter while down");
    // The queue waits as a whole (one attempt per backoff, not 20).
    assert!(
        retries_while_down < 40,
        "{retries_while_down} attempts in 3 s"
    );
    assert_eq!(metrics.notifications(NotificationResult::Sent), 0);

    let sink = SmtpSink::start(&py, port, &dir.join("sink"), &[]);
    let up = Instant::now();
    wait_for("20 e-mails after the server came up", 30, || {
        sender.depth() == 0
    });
    let recovery = up.elapsed();
    std::thread::sleep(Duration::from_millis(500)); // would-be duplicates
    let got = received(&sink.dir);
    assert_eq!(got.len(), 20, "each e-mail exactly once");
    let mids: HashSet<String> = got.iter().filter_map(|r| r.message_id.clone()).collect();
    let want: HashSet<String> = ids.iter().map(|id| format!("{id}@overdued.test")).collect();
    assert_eq!(mids, want);
    // In order: the oldest first.
    let order: Vec<String> = got.iter().filter_map(|r| r.message_id.clone()).collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted);
    assert_eq!(logged_ids(&outbox), ids);
    assert!(outbox_files(&outbox).is_empty());
    assert_eq!(metrics.notifications(NotificationResult::Sent), 20);
    assert!(
        sessions(&sink.dir) <= 2,
        "the session is reused: {}",
        sessions(&sink.dir)
    );
    assert!(sender.shutdown(Duration::from_secs(10)));
    eprintln!(
        "timing: smtp_down_then_up {:?} (recovery after the server came up {:?}, {} retries while down)",
        t0.elapsed(),
        recovery,
        retries_while_down
    );
}

#[test]
fn permanent_rejection_is_failed_and_a_deferred_email_blocks_nothing() {
    let Some(py) = python() else { return };
    let t0 = Instant::now();
    let dir = test_dir("reject");
    let sink = SmtpSink::start(
        &py,
        free_port(),
        &dir.join("sink"),
        &[
            "--permanent-rcpt",
            "khong-ton-tai",
            "--transient-rcpt",
            "hop-thu-day",
        ],
    );
    let (outbox, _) = Outbox::open(&dir.join("state")).unwrap();
    let emails = [
        email("0001-deferred", &["hop-thu-day@ubnd.example.vn"]), // 451 forever
        email("0002-ok", &["a@ubnd.example.vn"]),
        email("0003-rejected", &["khong-ton-tai@ubnd.example.vn"]), // 550
        email("0004-ok", &["b@ubnd.example.vn"]),
    ];
    for e in &emails {
        outbox.put(e).unwrap();
    }
    let (mut sender, metrics) = start(&outbox, sink.url(), 0);
    wait_for("the two good e-mails and the rejection", 30, || {
        count(&sink.dir) == 2 && metrics.notifications(NotificationResult::Failed) == 1
    });
    // The deferred one is retried (its own backoff) and stays pending.
    wait_for("a few retries of the deferred e-mail", 10, || {
        metrics.notifications(NotificationResult::Retry) >= 3
    });
    let got: Vec<String> = received(&sink.dir)
        .into_iter()
        .filter_map(|r| r.message_id)
        .collect();
    assert_eq!(got, ["0002-ok@overdued.test", "0004-ok@overdued.test"]);
    assert_eq!(sender.take_failed(), ["0003-rejected"]);
    assert_eq!(outbox.failed().unwrap(), ["0003-rejected"]);
    let reason = outbox.failure_reason("0003-rejected").unwrap().unwrap();
    assert!(reason.contains("550"), "{reason}");
    assert!(outbox.failed_dir().join("0003-rejected.eml").exists());
    assert!(outbox.failed_dir().join("0003-rejected.env").exists());
    assert_eq!(outbox.pending().unwrap(), ["0001-deferred"]);
    assert_eq!(sender.depth(), 1);
    assert_eq!(logged_ids(&outbox), ["0002-ok", "0004-ok"]);
    assert_eq!(metrics.notifications(NotificationResult::Sent), 2);
    assert_eq!(metrics.notifications(NotificationResult::Failed), 1);
    assert!(sender.shutdown(Duration::from_secs(10)));
    // A failed id is not re-queued by a later put.
    assert!(!outbox.put(&emails[2]).unwrap());
    eprintln!("timing: permanent_rejection {:?}", t0.elapsed());
}

fn outbox_send(state: &Path, url: &str, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_overdued"))
        .args(["--log-level", "info", "outbox-send", "--state"])
        .arg(state)
        .args([
            "--smtp",
            url,
            "--backoff-min-ms",
            "50",
            "--backoff-max-ms",
            "400",
        ])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(state.with_extension("log"))
                .unwrap(),
        )
        .spawn()
        .expect("starting overdued outbox-send")
}

/// Reads the child's stdout until a line starting with `prefix`.
fn wait_line(child: &mut Child, prefix: &str, secs: u64) -> String {
    let out = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    let p = prefix.to_string();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if line.starts_with(&p) {
                let _ = tx.send(line);
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(secs))
        .unwrap_or_else(|_| panic!("no {prefix:?} line from outbox-send in {secs} s"))
}

/// Runs `outbox-send` on `state` to completion; returns its "sent N" line.
fn send_to_completion(state: &Path, url: &str) -> String {
    let mut child = outbox_send(state, url, &[]);
    let line = wait_line(&mut child, "sent ", 120);
    let status = child.wait().unwrap();
    assert!(status.success(), "outbox-send: {status}");
    line
}

/// Message-IDs the sink received: (all, distinct).
fn message_ids(sink_dir: &Path) -> (Vec<String>, HashSet<String>) {
    let all: Vec<String> = received(sink_dir)
        .into_iter()
        .map(|r| r.message_id.expect("a Message-ID"))
        .collect();
    let distinct = all.iter().cloned().collect();
    (all, distinct)
}

#[test]
fn kill_9_with_full_outbox_then_restart_delivers_exactly_once() {
    let Some(py) = python() else { return };
    let t0 = Instant::now();
    let dir = test_dir("kill-full");
    let state = dir.join("state");
    let port = free_port();
    // The server is down: the child fills the outbox, retries, and is killed.
    let mut child = outbox_send(&state, &smtp_url(port), &["--fill", "30"]);
    assert_eq!(wait_line(&mut child, "filled", 60), "filled 30");
    std::thread::sleep(Duration::from_millis(500));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    {
        let (outbox, _) = Outbox::open(&state).unwrap();
        assert_eq!(
            outbox.pending().unwrap().len(),
            30,
            "all 30 survived the kill"
        );
        assert!(outbox.log_entries().unwrap().is_empty());
    }

    let sink = SmtpSink::start(&py, port, &dir.join("sink"), &[]);
    assert_eq!(send_to_completion(&state, &sink.url()), "sent 30");
    let (all, distinct) = message_ids(&sink.dir);
    assert_eq!(all.len(), 30, "exactly once each");
    assert_eq!(distinct.len(), 30);
    let (outbox, _) = Outbox::open(&state).unwrap();
    let logged: HashSet<String> = logged_ids(&outbox).into_iter().collect();
    assert_eq!(logged.len(), 30);
    let from_log: HashSet<String> = logged
        .iter()
        .map(|id| format!("{id}@overdued.example.vn"))
        .collect();
    assert_eq!(from_log, distinct);
    assert!(outbox.pending().unwrap().is_empty());
    // A further restart sends nothing.
    assert_eq!(send_to_completion(&state, &sink.url()), "sent 0");
    assert_eq!(count(&sink.dir), 30);
    eprintln!("timing: kill_9_with_full_outbox {:?}", t0.elapsed());
}

#[test]
fn kill_9_during_sending_loses_nothing() {
    let Some(py) = python() else { return };
    let t0 = Instant::now();
    let dir = test_dir("kill-sending");
    let state = dir.join("state");
    // A slow server (30 ms before each 250) so that the kill lands mid-stream.
    let sink = SmtpSink::start(&py, free_port(), &dir.join("sink"), &["--delay-ms", "30"]);
    const N: usize = 150;
    let mut child = outbox_send(&state, &sink.url(), &["--fill", &N.to_string()]);
    // Sending starts while the outbox fills; the kill comes after every `put`
    // returned (the e-mails were accepted for sending).
    assert_eq!(wait_line(&mut child, "filled", 60), format!("filled {N}"));
    wait_for("some e-mails delivered", 60, || count(&sink.dir) >= 15);
    // A varying point inside the next send (body, final dot, server's delay,
    // log append), so that runs explore the whole in-flight window.
    let jitter_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() % 80);
    std::thread::sleep(Duration::from_millis(u64::from(jitter_ms)));
    child.kill().unwrap(); // SIGKILL, most likely while a send is in flight
    child.wait().unwrap();
    let at_kill = count(&sink.dir);
    let logged_at_kill = {
        let (outbox, _) = Outbox::open(&state).unwrap();
        outbox.log_entries().unwrap().len()
    };
    assert!(logged_at_kill < N, "the child was killed before the end");

    let restart = Instant::now();
    let line = send_to_completion(&state, &sink.url());
    let restart_time = restart.elapsed();
    std::thread::sleep(Duration::from_millis(300));
    let (all, distinct) = message_ids(&sink.dir);
    let (outbox, _) = Outbox::open(&state).unwrap();
    let logged = logged_ids(&outbox);
    let logged_set: HashSet<String> = logged.iter().cloned().collect();
    assert_eq!(logged.len(), N, "each id logged once");
    assert_eq!(logged_set.len(), N);
    let want: HashSet<String> = logged_set
        .iter()
        .map(|id| format!("{id}@overdued.example.vn"))
        .collect();
    assert_eq!(distinct, want, "every e-mail delivered at least once");
    let duplicates = all.len() - distinct.len();
    eprintln!(
        "kill -9 during sending (+{jitter_ms} ms): {at_kill} at the server / {logged_at_kill} \
         logged at the kill, restart {line:?} in {restart_time:?}, {} received, \
         {duplicates} duplicate(s)",
        all.len()
    );
    assert!(
        duplicates <= 1,
        "at most the e-mail in flight is repeated: {duplicates}"
    );
    assert!(outbox.pending().unwrap().is_empty());
    eprintln!("timing: kill_9_during_sending {:?}", t0.elapsed());
}

#[test]
fn rate_limit_per_domain_delays_the_sixth() {
    let Some(py) = python() else { return };
    let t0 = Instant::now();
    let dir = test_dir("rate");
    let sink = SmtpSink::start(&py, free_port(), &dir.join("sink"), &[]);
    let (outbox, _) = Outbox::open(&dir.join("state")).unwrap();
    // Six to one domain, then one to another: 5 per domain per minute.
    for n in 1..=6 {
        outbox
            .put(&email(
                &format!("{n:04}-a"),
                &[&format!("u{n}@so-yte.example.vn")],
            ))
            .unwrap();
    }
    outbox
        .put(&email("0007-b", &["v@so-gddt.example.vn"]))
        .unwrap();
    let (mut sender, _metrics) = start(&outbox, sink.url(), 5);
    wait_for("the burst of 5 plus the other domain", 10, || {
        count(&sink.dir) == 6
    });
    let burst = t0.elapsed();
    // The sixth to so-yte needs a token: one every 12 s at 5/min.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        count(&sink.dir),
        6,
        "the 6th e-mail to the same domain waits"
    );
    let got: Vec<String> = received(&sink.dir)
        .into_iter()
        .filter_map(|r| r.message_id)
        .collect();
    assert!(
        !got.contains(&"0006-a@overdued.test".to_string()),
        "{got:?}"
    );
    assert!(
        got.contains(&"0007-b@overdued.test".to_string()),
        "other domain not blocked"
    );
    assert_eq!(outbox.pending().unwrap(), ["0006-a"]);
    assert_eq!(sender.depth(), 1);
    assert!(sender.shutdown(Duration::from_secs(10)));
    eprintln!(
        "timing: rate_limit {:?} (burst of 6 in {burst:?})",
        t0.elapsed()
    );
}

#[test]
fn authentication_bad_password_waits_good_password_delivers() {
    let Some(py) = python() else { return };
    let t0 = Instant::now();
    let dir = test_dir("auth");
    let sink = SmtpSink::start(
        &py,
        free_port(),
        &dir.join("sink"),
        &["--auth", "overdued:s3cret-pw"],
    );
    let (outbox, _) = Outbox::open(&dir.join("state")).unwrap();
    outbox
        .put(&email("0001-auth", &["truong-phong@ubnd.example.vn"]))
        .unwrap();

    // A wrong password: the server says 535 to AUTH. That is the session, not
    // the e-mail: it must wait (retried), not go to failed/.
    let mut bad = config(sink.url(), 0);
    bad.username = Some("overdued".into());
    bad.password = Some(overdued::config::common::resolve_secret("wrong", &dir).unwrap());
    let metrics = Metrics::unregistered();
    let mut sender = Sender::start(bad, outbox.clone(), metrics.clone()).unwrap();
    wait_for("retries with the wrong password", 10, || {
        metrics.notifications(NotificationResult::Retry) >= 2
    });
    assert_eq!(
        metrics.notifications(NotificationResult::Failed),
        0,
        "a 535 must not fail the e-mail"
    );
    assert_eq!(count(&sink.dir), 0);
    assert_eq!(outbox.pending().unwrap(), ["0001-auth"]);
    assert!(outbox.failed().unwrap().is_empty());
    assert!(sender.shutdown(Duration::from_secs(10)));

    // The right password, from a file (as `password = "file:..."` would).
    std::fs::write(dir.join("smtp-password"), "s3cret-pw\n").unwrap();
    let mut good = config(sink.url(), 0);
    good.username = Some("overdued".into());
    good.password =
        Some(overdued::config::common::resolve_secret("file:smtp-password", &dir).unwrap());
    assert!(
        !format!("{good:?}").contains("s3cret"),
        "Debug must hide the password"
    );
    let metrics = Metrics::unregistered();
    let mut sender = Sender::start(good, outbox.clone(), metrics.clone()).unwrap();
    wait_for("delivery with the right password", 10, || {
        sender.depth() == 0
    });
    assert_eq!(sender.take_sent(), ["0001-auth"]);
    assert_eq!(count(&sink.dir), 1);
    assert_eq!(logged_ids(&outbox), ["0001-auth"]);
    assert!(sender.shutdown(Duration::from_secs(10)));
    eprintln!("timing: authentication {:?}", t0.elapsed());
}
