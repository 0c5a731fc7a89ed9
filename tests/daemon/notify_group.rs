//! Three daemons in one group with `[kafka] notify_topic`: alert transitions
//! re-keyed by unit and e-mailed by the notifier consumer group. Each unit's
//! records are spread over the daemons' source partitions, yet each unit gets
//! one e-mail per batch listing all of them (its grouping is whole). Then the
//! SMTP server goes down, alerts are decided, one daemon is killed with
//! SIGKILL (its engine and notify partitions move to the others, and streams
//! may move between the survivors, whose unsent e-mails are then withdrawn)
//! and the server comes back: every record is told exactly once, nothing
//! earlier is sent again, and alerts go on after the hand-over; a SIGHUP
//! that adds a silence reaches the notifier group. Needs the broker and SMTP
//! server of `scripts/test.sh`.

use crate::harness::{create_topics, free_port, get, metric, service, unique_suffix, wait_for};
use crate::smtp_harness::{python, received, SmtpSink};

use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// librdkafka's default partitioner (`consistent_random`): CRC-32 of the key.
fn crc32(b: &[u8]) -> u32 {
    let mut c = !0u32;
    for &x in b {
        c ^= u32::from(x);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xEDB8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// Four unit codes whose streams land on notify partitions 0, 1, 2 and 3, so
/// that each daemon e-mails at least one of them.
fn units() -> Vec<String> {
    let mut out = vec![String::new(); 4];
    let mut i = 0;
    while out.iter().any(String::is_empty) {
        let code = format!("U{i}");
        let p = (crc32(code.as_bytes()) % 4) as usize;
        if out[p].is_empty() {
            out[p] = code;
        }
        i += 1;
    }
    out
}

struct D {
    child: Child,
    http: u16,
    dir: PathBuf,
}

impl D {
    fn start(dir: &Path, brokers: &str, topic: &str, smtp: u16, units: &[String]) -> D {
        std::fs::create_dir_all(dir).unwrap();
        let http = free_port();
        let mut csv = String::from("code,name,level,parent,emails,head_email\n");
        for u in units {
            let l = u.to_lowercase();
            csv += &format!("{u},Đơn vị {u},commune,,{l}@example.vn,\n");
        }
        std::fs::write(dir.join("units.csv"), csv).unwrap();
        std::fs::write(
            dir.join("procedures.csv"),
            "code,name,sector,duration,duration_unit\nP1,Chứng thực bản sao,TP,1,working_days\n",
        )
        .unwrap();
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
group_id = "{topic}.g"
dead_letter_topic = "{topic}.dlq"
notify_topic = "{topic}.notify"
session_timeout = "6s"
snapshot_interval = "2s"
notify_snapshot_interval = "2s"
[http]
listen = "127.0.0.1:{http}"
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
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("daemon.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_overdued"))
            .args(["--log-level", "info,librdkafka=warn", "run", "--config"])
            .arg(dir.join("overdued.toml"))
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        D {
            child,
            http,
            dir: dir.to_path_buf(),
        }
    }
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }
    fn ready(&self) -> bool {
        get(self.http, "/readyz").is_some_and(|r| r.0 == 200)
    }
    fn outbox_holds_mail(&self) -> bool {
        std::fs::read_dir(self.dir.join("state/outbox"))
            .map(|rd| {
                rd.flatten()
                    .any(|e| e.file_name().to_string_lossy().ends_with(".eml"))
            })
            .unwrap_or(false)
    }
}

impl Drop for D {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `n` records per unit, received now, spread over the four source partitions.
fn receive(p: &BaseProducer, topic: &str, prefix: &str, n: usize, units: &[String]) {
    let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut k = 0;
    for u in units {
        for i in 0..n {
            let id = format!("{prefix}{u}-{i}");
            let v = format!(
                r#"{{"event_id":"{id}-1","record_id":"{id}","type":"received","at":"{at}","unit":"{u}","procedure":"P1"}}"#
            );
            p.send(BaseRecord::to(topic).key(&id).partition(k % 4).payload(&v))
                .unwrap();
            k += 1;
        }
    }
    p.flush(Duration::from_secs(10)).unwrap();
}

/// Per received e-mail: (recipient, records listed as newly hanging).
fn told(sink: &Path) -> Vec<(String, Vec<String>)> {
    received(sink)
        .iter()
        .map(|m| {
            let text = m.text.as_deref().unwrap_or("");
            let records = text
                .lines()
                .filter(|l| l.contains("MỚI]"))
                .filter_map(|l| l.trim_end().rsplit("Hồ sơ ").next())
                .map(String::from)
                .collect();
            (m.rcpt_tos.join(","), records)
        })
        .collect()
}

/// How many e-mails listed `record`, and to whom.
fn times_told(all: &[(String, Vec<String>)], record: &str) -> (usize, Vec<String>) {
    let to: Vec<String> = all
        .iter()
        .filter(|(_, rs)| rs.iter().any(|r| r == record))
        .map(|(to, _)| to.clone())
        .collect();
    (to.len(), to)
}

#[test]
fn one_email_stream_per_unit_across_three_instances_survives_a_kill_with_smtp_down() {
    let Some(brokers) = service("OVERDUED_TEST_KAFKA") else {
        return;
    };
    let Some(py) = python() else {
        return;
    };
    let suffix = unique_suffix();
    let topic = format!("notify.{suffix}");
    let base = std::env::temp_dir().join(format!("overdued-notify-{suffix}"));
    create_topics(
        &brokers,
        &[
            NewTopic::new(&topic, 4, TopicReplication::Fixed(1)),
            NewTopic::new(&format!("{topic}.dlq"), 1, TopicReplication::Fixed(1)),
        ],
    );
    let units = units();
    let smtp = free_port();
    let sink_dir = base.join("smtp");
    let sink = SmtpSink::start(&py, smtp, &sink_dir, &[]);
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();

    let mut a = D::start(&base.join("a"), &brokers, &topic, smtp, &units);
    let b = D::start(&base.join("b"), &brokers, &topic, smtp, &units);
    let c = D::start(&base.join("c"), &brokers, &topic, smtp, &units);
    let all3 = [&a, &b, &c];
    wait_for("three daemons ready, each with notify streams", 180, || {
        all3.iter()
            .all(|d| d.ready() && d.log().contains("notify stream assigned"))
    });
    // let a late rebalance of either group settle
    std::thread::sleep(Duration::from_secs(8));
    assert!(all3.iter().all(|d| d.ready()));

    // 1. six records per unit, spread over both daemons' partitions: one
    //    e-mail per unit, listing all six
    receive(&producer, &topic, "A", 6, &units);
    wait_for("one e-mail per unit", 60, || received(&sink_dir).len() >= 4);
    std::thread::sleep(Duration::from_secs(6)); // nothing more may come
    let all = told(&sink_dir);
    assert_eq!(all.len(), 4, "one e-mail per unit: {all:?}");
    for u in &units {
        for i in 0..6 {
            let (n, to) = times_told(&all, &format!("A{u}-{i}"));
            assert_eq!(n, 1, "A{u}-{i} told {n} times");
            assert_eq!(to, vec![format!("{}@example.vn", u.to_lowercase())]);
        }
    }

    // 2. the SMTP server goes down; new alerts are decided on both daemons;
    //    daemon A is killed with its e-mails unsent
    sink.stop();
    receive(&producer, &topic, "R", 4, &units);
    wait_for("daemon A decided its units' e-mails", 60, || {
        a.outbox_holds_mail()
    });
    wait_for("daemons B and C decided their units' e-mails", 30, || {
        b.outbox_holds_mail() && c.outbox_holds_mail()
    });
    let (b_before, c_before) = (
        b.log().matches("notify stream assigned").count(),
        c.log().matches("notify stream assigned").count(),
    );
    let _ = a.child.kill();
    let _ = a.child.wait();

    // 3. B and C take over A's partitions (engine and notify), the server
    //    comes back: every record told once, nothing of batch 1 again
    wait_for("B and C take over", 150, || {
        b.log().matches("notify stream assigned").count() > b_before
            && c.log().matches("notify stream assigned").count() > c_before
            && b.ready()
            && c.ready()
    });
    // the four notify partitions are now the two survivors', and their
    // notifier images are being written
    wait_for("the survivors own every notify partition", 30, || {
        let m = |d: &D| get(d.http, "/metrics").map(|r| r.1).unwrap_or_default();
        let (mb, mc) = (m(&b), m(&c));
        metric(&mb, "overdued_notify_streams") + metric(&mc, "overdued_notify_streams") == 4.0
            && metric(&mb, "overdued_notifier_images_total{result=\"ok\"}")
                + metric(&mc, "overdued_notifier_images_total{result=\"ok\"}")
                > 0.0
    });
    let sink = SmtpSink::start(&py, smtp, &sink_dir, &[]);
    wait_for("batch 2 delivered", 90, || {
        let all = told(&sink_dir);
        units
            .iter()
            .all(|u| (0..4).all(|i| times_told(&all, &format!("R{u}-{i}")).0 >= 1))
    });
    // 4. alerts go on after the hand-over
    receive(&producer, &topic, "C", 2, &units);
    wait_for("batch 3 delivered", 60, || {
        let all = told(&sink_dir);
        units
            .iter()
            .all(|u| (0..2).all(|i| times_told(&all, &format!("C{u}-{i}")).0 >= 1))
    });
    std::thread::sleep(Duration::from_secs(6)); // time for any duplicate to show
    let all = told(&sink_dir);
    for u in &units {
        for (prefix, n) in [("A", 6), ("R", 4), ("C", 2)] {
            for i in 0..n {
                let (k, _) = times_told(&all, &format!("{prefix}{u}-{i}"));
                assert_eq!(k, 1, "{prefix}{u}-{i} told {k} times: {all:?}");
            }
        }
    }
    assert_eq!(all.len(), 12, "one e-mail per unit and batch: {all:?}");
    // 5. SIGHUP on the survivors: a configuration silence of one unit
    //    reaches the notifier group (its next record is not e-mailed)
    for d in [&b, &c] {
        let cfg = d.dir.join("overdued.toml");
        let mut text = std::fs::read_to_string(&cfg).unwrap();
        text += &format!(
            "\n[[email.silence]]\nunit = \"{}\"\nends_at = \"2099-01-01T00:00:00Z\"\n",
            units[0]
        );
        std::fs::write(&cfg, text).unwrap();
        let _ = Command::new("kill")
            .args(["-HUP", &d.child.id().to_string()])
            .status();
    }
    wait_for("both survivors took the reload", 30, || {
        [&b, &c]
            .iter()
            .all(|d| d.log().contains("notifier group: reloaded settings taken"))
    });
    receive(&producer, &topic, "S", 1, &units);
    wait_for("batch 4 delivered to the units not silenced", 60, || {
        let all = told(&sink_dir);
        units[1..]
            .iter()
            .all(|u| times_told(&all, &format!("S{u}-0")).0 >= 1)
    });
    std::thread::sleep(Duration::from_secs(4));
    let all = told(&sink_dir);
    assert_eq!(
        times_told(&all, &format!("S{}-0", units[0])).0,
        0,
        "silenced by the reload"
    );
    assert_eq!(all.len(), 15, "{all:?}");
    let withdrawn: usize = [&b, &c]
        .iter()
        .map(|d| {
            d.log()
                .matches("withdrawn, its new owner decides it again")
                .count()
        })
        .sum();
    eprintln!("unsent e-mails withdrawn at the hand-over: {withdrawn}");
    drop(sink);
    let _ = std::fs::remove_dir_all(&base);
}
