//! `overdued run` with e-mail, against a real Kafka-protocol broker (Tansu, from
//! `scripts/test.sh`) and a real SMTP server (aiosmtpd, `tests/smtp_sink.py`).
//!
//! Asserts: alerts of many records become one e-mail per unit, to the unit's
//! addresses; the silences API needs the bearer token and mutes e-mail (not
//! metrics); with the SMTP server down the e-mail waits in the outbox, the daemon
//! is killed with SIGKILL, and after a restart with the server up each e-mail is
//! delivered exactly once (nothing earlier is sent again).

use crate::harness::{free_port, get, metric, service, wait_for};
use crate::smtp_harness::{python, received, SmtpSink};

use chrono::Timelike;
use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const TOKEN: &str = "test-token-0123456789abcdef";

fn rfc(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

struct Daemon(Child);

impl Daemon {
    fn start(cfg: &Path, log: &Path) -> Daemon {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        Daemon(
            Command::new(env!("CARGO_BIN_EXE_overdued"))
                .args(["--log-level", "info,librdkafka=warn", "run", "--config"])
                .arg(cfg)
                .env("OVERDUED_TEST_API_TOKEN", TOKEN)
                .stdout(Stdio::null())
                .stderr(out)
                .spawn()
                .unwrap(),
        )
    }
    fn kill9(&mut self) {
        let _ = self.0.kill(); // SIGKILL
        let _ = self.0.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn setup(dir: &Path, brokers: &str, topic: &str, http: u16, smtp: u16) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("overdued.toml"),
        format!(
            r#"
[calendar]
periods = ["00:00-24:00"]
weekdays = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
[directory]
units = "units.csv"
procedures = "procedures.csv"
[rules]
hanging_after_hours = 0.002      # 7.2 s
[kafka]
brokers = "{brokers}"
topic = "{topic}"
group_id = "{topic}.group"
dead_letter_topic = "{topic}.dlq"
[http]
listen = "127.0.0.1:{http}"
api_token = "env:OVERDUED_TEST_API_TOKEN"
[state]
dir = "state"
[email]
batch_at = []
smtp_url = "smtp://127.0.0.1:{smtp}"
from = "overdued <no-reply@example.vn>"
admin = "hcc@example.vn"
group_wait = "2s"
group_interval = "5s"
digest_at = ""
"#
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("units.csv"),
        "code,name,level,parent,emails,head_email\n\
         U1,Phòng Tư pháp,district,,u1@example.vn,h1@example.vn\n\
         U2,UBND xã Tam Xuân,commune,,u2@example.vn,h2@example.vn\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("procedures.csv"),
        "code,name,sector,duration,duration_unit\nP1,Chứng thực bản sao,TP,1,working_days\nP2,<script>alert(1)</script>,TP,1,working_days\n",
    )
    .unwrap();
    dir.join("overdued.toml")
}

fn create_topic(brokers: &str, topic: &str) {
    let dlq = format!("{topic}.dlq");
    crate::harness::create_topics(
        brokers,
        &[
            NewTopic::new(topic, 2, TopicReplication::Fixed(1)),
            NewTopic::new(&dlq, 1, TopicReplication::Fixed(1)),
        ],
    );
}

fn receive(p: &BaseProducer, topic: &str, prefix: &str, n: usize, unit: &str) {
    let at = rfc(chrono::Utc::now());
    for i in 0..n {
        let id = format!("{prefix}{i:02}");
        let v = format!(
            r#"{{"event_id":"{id}-1","record_id":"{id}","type":"received","at":"{at}","unit":"{unit}","procedure":"P1"}}"#
        );
        p.send(BaseRecord::to(topic).key(&id).payload(&v)).unwrap();
    }
    p.flush(Duration::from_secs(10)).unwrap();
}

/// An HTTP/1.0 request with an optional bearer token: (status, body).
fn request(port: u16, method: &str, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    let status = buf.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, buf.split_once("\r\n\r\n").unwrap().1.to_string())
}

/// How many received messages list `record` as newly firing.
fn told(dir: &Path, record: &str) -> usize {
    received(dir)
        .iter()
        .filter(|m| {
            m.text
                .as_deref()
                .unwrap_or("")
                .lines()
                .any(|l| l.contains("MỚI]") && l.trim_end().ends_with(&format!("Hồ sơ {record}")))
        })
        .count()
}

#[test]
fn daemon_groups_mails_honours_silences_and_survives_kill_9_exactly_once() {
    let Some(brokers) = service("OVERDUED_TEST_KAFKA") else {
        return;
    };
    let Some(py) = python() else {
        return;
    };
    let suffix = format!(
        "{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_millis()
    );
    let topic = format!("records.mail.{suffix}");
    let dir = std::env::temp_dir().join(format!("overdued-mail-{suffix}"));
    let (http, smtp) = (free_port(), free_port());
    let cfg = setup(&dir, &brokers, &topic, http, smtp);
    let log = dir.join("daemon.log");
    create_topic(&brokers, &topic);
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    let sink_dir = dir.join("smtp");
    let sink = SmtpSink::start(&py, smtp, &sink_dir, &[]);

    // 1. 20 records at U1 and 5 at U2 hang 7.2 s after receipt: one e-mail each;
    //    one more at U1 has CR/LF and a Bcc header in its id and a procedure whose
    //    name is a <script>
    receive(&producer, &topic, "A", 20, "U1");
    receive(&producer, &topic, "B", 5, "U2");
    let evil = serde_json::json!({
        "event_id": "evil-1", "record_id": "X\r\nBcc: evil@example.com\r\n",
        "type": "received", "at": rfc(chrono::Utc::now()), "unit": "U1", "procedure": "P2"
    })
    .to_string();
    producer
        .send(
            BaseRecord::to(&topic)
                .key("X\r\nBcc: evil@example.com\r\n")
                .payload(&evil),
        )
        .unwrap();
    producer.flush(Duration::from_secs(10)).unwrap();
    let mut d = Daemon::start(&cfg, &log);
    wait_for("the two grouped e-mails", 90, || {
        received(&sink_dir).len() >= 2
    });
    std::thread::sleep(Duration::from_secs(3)); // nothing more may come
    let got = received(&sink_dir);
    assert_eq!(got.len(), 2, "one e-mail per unit");
    let mut rcpts: Vec<Vec<String>> = got.iter().map(|m| m.rcpt_tos.clone()).collect();
    rcpts.sort();
    assert_eq!(
        rcpts,
        vec![
            vec!["u1@example.vn".to_string(), "h1@example.vn".to_string()],
            vec!["u2@example.vn".to_string(), "h2@example.vn".to_string()],
        ]
    );
    for m in &got {
        let text = m.text.as_deref().unwrap();
        let n = text.matches("[CHƯA XỬ LÝ (TREO) – MỚI]").count();
        let u1 = m.rcpt_tos[0] == "u1@example.vn";
        assert_eq!(n, if u1 { 21 } else { 5 }, "{text}");
        assert!(m.subject.as_deref().unwrap().contains("chưa xử lý"));
        // no header injection: the id's CR/LF never reach a header
        let parsed = mail_parser::MessageParser::default().parse(&m.raw).unwrap();
        assert!(parsed.header("Bcc").is_none());
        assert!(!m.rcpt_tos.iter().any(|r| r.contains("evil")));
        if u1 {
            assert!(text.contains("Hồ sơ XBcc: evil@example.com"), "{text}");
            let html = m.html.as_deref().unwrap();
            assert!(html.contains("&lt;script&gt;alert(1)"), "{html}");
            assert!(!html.contains("<script>"));
        }
    }
    let (_, metrics) = get(http, "/metrics").unwrap();
    assert_eq!(
        metric(&metrics, "overdued_notifications_total{result=\"sent\"}"),
        2.0
    );

    // 2. silences: changes need the token; a silence of U2 mutes its e-mail
    let body = r#"{"unit":"U2","ends_at":"2099-01-01T00:00:00Z","comment":"test"}"#;
    assert_eq!(request(http, "POST", "/api/v1/silences", None, body).0, 401);
    assert_eq!(
        request(
            http,
            "POST",
            "/api/v1/silences",
            Some("wrong-token-xxxxxxxxxxxx"),
            body
        )
        .0,
        401
    );
    let (st, created) = request(http, "POST", "/api/v1/silences", Some(TOKEN), body);
    assert_eq!(st, 201, "{created}");
    let (_, list) = get(http, "/api/v1/silences").unwrap();
    assert!(list.contains("\"unit\":\"U2\""), "{list}");

    // 3. the SMTP server goes down; new alerts for U1 (and silenced U2) are decided
    sink.stop();
    receive(&producer, &topic, "C", 10, "U1");
    receive(&producer, &topic, "S", 3, "U2");
    let outbox = dir.join("state/outbox");
    wait_for("an e-mail waiting in the outbox", 60, || {
        std::fs::read_dir(&outbox)
            .map(|rd| {
                rd.flatten()
                    .any(|e| e.file_name().to_string_lossy().ends_with(".eml"))
            })
            .unwrap_or(false)
    });
    std::thread::sleep(Duration::from_secs(2)); // a retry or two against the dead server
    let (_, metrics) = get(http, "/metrics").unwrap();
    assert!(
        metric(&metrics, "overdued_outbox_depth") >= 1.0,
        "{metrics}"
    );
    assert!(
        metric(
            &metrics,
            "overdued_notifications_total{result=\"silenced\"}"
        ) >= 3.0
    );
    // silences mute e-mail, never metrics
    assert!(
        metric(
            &metrics,
            "overdued_records_hanging{level=\"commune\",unit=\"U2\",sector=\"TP\"}"
        ) >= 8.0
    );
    // 4. crash with a full outbox
    d.kill9();

    // 5. the server is back, the daemon restarts: delivered exactly once
    let sink = SmtpSink::start(&py, smtp, &sink_dir, &[]);
    let _d = Daemon::start(&cfg, &log);
    wait_for("the outbox e-mail after the restart", 120, || {
        told(&sink_dir, "C09") >= 1
    });
    std::thread::sleep(Duration::from_secs(8)); // time for any duplicate to show up
    for i in 0..10 {
        assert_eq!(told(&sink_dir, &format!("C{i:02}")), 1, "C{i:02}");
    }
    for i in 0..20 {
        assert_eq!(
            told(&sink_dir, &format!("A{i:02}")),
            1,
            "A{i:02} told again"
        );
    }
    for i in 0..3 {
        assert_eq!(
            told(&sink_dir, &format!("S{i:02}")),
            0,
            "S{i:02} was silenced"
        );
    }
    assert_eq!(received(&sink_dir).len(), 3);
    // the silence survived the crash; it can be deleted (with the token)
    let (_, list) = get(http, "/api/v1/silences").unwrap();
    assert!(list.contains("\"unit\":\"U2\""), "{list}");
    let v: serde_json::Value = serde_json::from_str(&created).unwrap();
    let path = format!("/api/v1/silences/{}", v["id"].as_str().unwrap());
    assert_eq!(request(http, "DELETE", &path, None, "").0, 401);
    assert_eq!(request(http, "DELETE", &path, Some(TOKEN), "").0, 200);
    assert_eq!(request(http, "DELETE", &path, Some(TOKEN), "").0, 404);
    let (_, list) = get(http, "/api/v1/silences").unwrap();
    assert!(!list.contains("\"unit\":\"U2\""), "{list}");
    // a bad silence is refused with its reason
    let (st, why) = request(
        http,
        "POST",
        "/api/v1/silences",
        Some(TOKEN),
        r#"{"kind":"late","ends_at":"2099-01-01T00:00:00Z"}"#,
    );
    assert_eq!(st, 400);
    assert!(why.contains("not one of"), "{why}");
    drop(sink);
}

/// Escalation to the parent unit's head and the daily digest, through SMTP: the
/// digest time is set to the next minute (calendar in UTC, working all day).
#[test]
fn daemon_escalates_to_the_parent_head_and_sends_the_digest() {
    let Some(brokers) = service("OVERDUED_TEST_KAFKA") else {
        return;
    };
    let Some(py) = python() else {
        return;
    };
    let suffix = format!(
        "{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_millis()
    );
    let topic = format!("records.digest.{suffix}");
    let dir = std::env::temp_dir().join(format!("overdued-digest-{suffix}"));
    let (http, smtp) = (free_port(), free_port());
    std::fs::create_dir_all(&dir).unwrap();
    // the digest: the first whole minute at least 75 s from now (UTC)
    let at = chrono::Utc::now() + chrono::Duration::seconds(75);
    let digest = at
        .with_second(0)
        .and_then(|t| t.with_nanosecond(0))
        .unwrap()
        + chrono::Duration::minutes(1);
    let digest_at = digest.format("%H:%M").to_string();
    std::fs::write(
        dir.join("overdued.toml"),
        format!(
            r#"
[calendar]
timezone = "UTC"
periods = ["00:00-24:00"]
weekdays = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
[directory]
units = "units.csv"
procedures = "procedures.csv"
[rules]
hanging_after_hours = 1
due_soon_before_hours = 0.0005   # 1.8 s
escalate_after_hours = 0.001     # 3.6 s
[kafka]
brokers = "{brokers}"
topic = "{topic}"
group_id = "{topic}.group"
dead_letter_topic = "{topic}.dlq"
[http]
listen = "127.0.0.1:{http}"
[state]
dir = "state"
[email]
batch_at = []
smtp_url = "smtp://127.0.0.1:{smtp}"
from = "overdued <no-reply@example.vn>"
admin = "hcc@example.vn"
group_wait = "1s"
group_interval = "3s"
digest_at = "{digest_at}"
"#
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("units.csv"),
        "code,name,level,parent,emails,head_email\n\
         P,Sở Tư pháp,province,,p@example.vn,hp@example.vn\n\
         U1,Phòng Tư pháp,district,P,u1@example.vn,h1@example.vn\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("procedures.csv"),
        "code,name,sector,duration,duration_unit\nP1,Chứng thực bản sao,TP,1,working_days\n",
    )
    .unwrap();
    let cfg = dir.join("overdued.toml");
    create_topic(&brokers, &topic);
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    let sink_dir = dir.join("smtp");
    let _sink = SmtpSink::start(&py, smtp, &sink_dir, &[]);
    let now = chrono::Utc::now();
    for i in 0..4 {
        let id = format!("O{i}");
        let v = format!(
            r#"{{"event_id":"{id}-1","record_id":"{id}","type":"received","at":"{}","unit":"U1","procedure":"P1","due_at":"{}"}}"#,
            rfc(now),
            rfc(now + chrono::Duration::seconds(5 + i))
        );
        producer
            .send(BaseRecord::to(&topic).key(&id).payload(&v))
            .unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    let _d = Daemon::start(&cfg, &dir.join("daemon.log"));

    // escalation: the parent's head, and only the head, gets the overdue records
    wait_for("the escalation e-mail", 90, || {
        received(&sink_dir)
            .iter()
            .any(|m| m.rcpt_tos == vec!["hp@example.vn".to_string()])
    });
    let esc: Vec<_> = received(&sink_dir)
        .into_iter()
        .filter(|m| m.rcpt_tos == vec!["hp@example.vn".to_string()])
        .collect();
    assert_eq!(esc.len(), 1);
    let text = esc[0].text.as_deref().unwrap();
    assert_eq!(
        text.matches("[QUÁ HẠN – BÁO CÁO VƯỢT CẤP]").count(),
        4,
        "{text}"
    );
    assert!(text.contains("Kính gửi Thủ trưởng Sở Tư pháp"), "{text}");
    // the unit itself was told once about each overdue record
    wait_for("the unit's e-mail", 30, || {
        received(&sink_dir)
            .iter()
            .any(|m| m.rcpt_tos[0] == "u1@example.vn")
    });
    let unit_updates: Vec<_> = received(&sink_dir)
        .into_iter()
        .filter(|m| m.rcpt_tos[0] == "u1@example.vn")
        .collect();
    let told: usize = unit_updates
        .iter()
        .map(|m| {
            m.text
                .as_deref()
                .unwrap()
                .matches("[QUÁ HẠN – MỚI]")
                .count()
        })
        .sum();
    assert_eq!(told, 4);

    // the digest at {digest_at}: every open alert, to the unit and to the head
    let secs = (digest - chrono::Utc::now()).num_seconds().max(0) as u64 + 60;
    wait_for("the two digests", secs, || {
        received(&sink_dir)
            .iter()
            .filter(|m| m.subject.as_deref().unwrap_or("").contains("Tổng hợp"))
            .count()
            >= 2
    });
    let digests: Vec<_> = received(&sink_dir)
        .into_iter()
        .filter(|m| m.subject.as_deref().unwrap_or("").contains("Tổng hợp"))
        .collect();
    assert_eq!(digests.len(), 2);
    for m in &digests {
        let text = m.text.as_deref().unwrap();
        assert!(
            text.contains(&format!("Tổng hợp lúc {digest_at}")),
            "{text}"
        );
        assert!(text.contains("4 hồ sơ cần xử lý"), "{text}");
        // worst first: the record due earliest is overdue longest
        let pos: Vec<usize> = (0..4)
            .map(|i| text.find(&format!("Hồ sơ O{i}")).unwrap())
            .collect();
        assert!(pos.windows(2).all(|w| w[0] < w[1]), "{text}");
    }
    let mut who: Vec<_> = digests.iter().map(|m| m.rcpt_tos.clone()).collect();
    who.sort();
    assert_eq!(
        who,
        vec![
            vec!["hp@example.vn".to_string()],
            vec!["u1@example.vn".to_string(), "h1@example.vn".to_string()]
        ]
    );
}

/// An escalation that comes due while the daemon is down is sent once after the
/// restart (docs/spec.md §4: "a daemon that was down fires what came due while it was
/// down, once"). The daemon used to move the notifier's clock to the wall clock
/// before the partitions were rebuilt, so the adopted overdue's escalation
/// counted as already sent.
#[test]
fn daemon_sends_an_escalation_that_came_due_while_it_was_down() {
    let Some(brokers) = service("OVERDUED_TEST_KAFKA") else {
        return;
    };
    let Some(py) = python() else {
        return;
    };
    let suffix = format!(
        "{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_millis()
    );
    let topic = format!("records.escdown.{suffix}");
    let dir = std::env::temp_dir().join(format!("overdued-escdown-{suffix}"));
    let (http, smtp) = (free_port(), free_port());
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("overdued.toml"),
        format!(
            r#"
[calendar]
timezone = "UTC"
periods = ["00:00-24:00"]
weekdays = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
[directory]
units = "units.csv"
procedures = "procedures.csv"
[rules]
hanging_after_hours = 10
due_soon_before_hours = 0.0005   # 1.8 s
escalate_after_hours = 0.008     # 28.8 s
[kafka]
brokers = "{brokers}"
topic = "{topic}"
group_id = "{topic}.group"
dead_letter_topic = "{topic}.dlq"
[http]
listen = "127.0.0.1:{http}"
[state]
dir = "state"
[email]
batch_at = []
smtp_url = "smtp://127.0.0.1:{smtp}"
from = "overdued <no-reply@example.vn>"
admin = "hcc@example.vn"
group_wait = "1s"
group_interval = "3s"
digest_at = ""
"#
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("units.csv"),
        "code,name,level,parent,emails,head_email\n\
         P,Sở Tư pháp,province,,p@example.vn,hp@example.vn\n\
         U1,Phòng Tư pháp,district,P,u1@example.vn,h1@example.vn\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("procedures.csv"),
        "code,name,sector,duration,duration_unit\nP1,Chứng thực bản sao,TP,1,working_days\n",
    )
    .unwrap();
    let cfg = dir.join("overdued.toml");
    create_topic(&brokers, &topic);
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    let sink_dir = dir.join("smtp");
    let _sink = SmtpSink::start(&py, smtp, &sink_dir, &[]);
    let now = chrono::Utc::now();
    let due = now + chrono::Duration::seconds(5);
    let v = format!(
        r#"{{"event_id":"O0-1","record_id":"O0","type":"received","at":"{}","unit":"U1","procedure":"P1","due_at":"{}"}}"#,
        rfc(now),
        rfc(due)
    );
    producer
        .send(BaseRecord::to(&topic).key("O0").payload(&v))
        .unwrap();
    producer.flush(Duration::from_secs(10)).unwrap();
    let mut d = Daemon::start(&cfg, &dir.join("daemon.log"));
    let overdue_told = || {
        received(&sink_dir).iter().any(|m| {
            m.rcpt_tos[0] == "u1@example.vn"
                && m.text.as_deref().unwrap_or("").contains("[QUÁ HẠN – MỚI]")
        })
    };
    wait_for("the overdue e-mail to the unit", 60, overdue_told);
    // the escalation is due at due + 28.8 s; the daemon is down from now until after it
    let escalation = due + chrono::Duration::milliseconds(28_800);
    assert!(
        chrono::Utc::now() < escalation - chrono::Duration::seconds(5),
        "too slow to test a restart before the escalation"
    );
    d.kill9();
    let wait = (escalation - chrono::Utc::now()).num_milliseconds().max(0) as u64 + 3000;
    std::thread::sleep(Duration::from_millis(wait));
    assert!(!received(&sink_dir)
        .iter()
        .any(|m| m.rcpt_tos == vec!["hp@example.vn".to_string()]));
    let _d = Daemon::start(&cfg, &dir.join("daemon.log"));
    wait_for("the escalation e-mail after the restart", 180, || {
        received(&sink_dir)
            .iter()
            .any(|m| m.rcpt_tos == vec!["hp@example.vn".to_string()])
    });
}

/// An e-mail the outbox cannot store (here the outbox folder is replaced by a
/// file, which stops even root) is kept and stored again every round; once the
/// outbox is back it is sent, exactly once.
#[test]
fn an_email_the_outbox_cannot_store_is_kept_and_sent_once_it_can() {
    let Some(brokers) = service("OVERDUED_TEST_KAFKA") else {
        return;
    };
    let Some(py) = python() else {
        return;
    };
    let suffix = format!(
        "{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_millis()
    );
    let topic = format!("records.unstored.{suffix}");
    let dir = std::env::temp_dir().join(format!("overdued-unstored-{suffix}"));
    let (http, smtp) = (free_port(), free_port());
    let cfg = setup(&dir, &brokers, &topic, http, smtp);
    create_topic(&brokers, &topic);
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    let sink_dir = dir.join("smtp");
    let _sink = SmtpSink::start(&py, smtp, &sink_dir, &[]);
    let log = dir.join("daemon.log");
    let mut d = Daemon::start(&cfg, &log);
    wait_for("/readyz", 90, || {
        get(http, "/readyz").is_some_and(|r| r.0 == 200)
    });
    let outbox = dir.join("state/outbox");
    std::fs::remove_dir_all(&outbox).unwrap();
    std::fs::write(&outbox, b"not a folder").unwrap();
    // hangs 7.2 s after receipt; its e-mail is decided 2 s later
    receive(&producer, &topic, "S", 1, "U1");
    wait_for("the store failure logged", 40, || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("cannot store an e-mail in the outbox")
    });
    std::thread::sleep(Duration::from_secs(3));
    assert!(received(&sink_dir).is_empty(), "sent before it was stored");
    let body = get(http, "/metrics").unwrap().1;
    assert!(
        metric(&body, r#"overdued_notifications_total{result="retry"}"#) >= 1.0,
        "{body}"
    );
    assert_eq!(
        metric(&body, r#"overdued_notifications_total{result="failed"}"#),
        0.0
    );
    std::fs::remove_file(&outbox).unwrap();
    std::fs::create_dir_all(outbox.join("failed")).unwrap();
    wait_for("the kept e-mail sent", 40, || told(&sink_dir, "S00") == 1);
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(told(&sink_dir, "S00"), 1, "sent more than once");
    d.kill9();
    let _ = std::fs::remove_dir_all(&dir);
}
