//! Two daemons in one consumer group: partitions move between them at run time
//! (a second daemon joins, then leaves); every record stays held by exactly one of
//! them, and neither writes an alert twice (A gets its partitions back without
//! repeating what it fired). Needs the broker of `scripts/test.sh`.

use crate::harness::{create_topics, free_port, get, service, wait_for, write_one_unit_directory};

use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Open records this daemon holds (sum of `overdued_records_open`).
fn open(http: u16) -> Option<u64> {
    let body = get(http, "/metrics")?.1;
    Some(
        body.lines()
            .filter(|l| l.starts_with("overdued_records_open{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum(),
    )
}

struct D {
    child: Child,
    http: u16,
    dir: PathBuf,
}

impl D {
    fn start(dir: &Path, brokers: &str, topic: &str) -> D {
        write_one_unit_directory(dir);
        let http = free_port();
        std::fs::write(
            dir.join("overdued.toml"),
            format!(
                "[calendar]\nperiods = [\"00:00-24:00\"]\nweekdays = [\"mon\",\"tue\",\"wed\",\"thu\",\"fri\",\"sat\",\"sun\"]\n\
                 [directory]\nunits = \"units.csv\"\nprocedures = \"procedures.csv\"\n\
                 [rules]\nhanging_after_hours = 100\ndue_soon_before_hours = 1000\n\
                 [kafka]\nbrokers = \"{brokers}\"\ntopic = \"{topic}\"\ngroup_id = \"{topic}.g\"\ndead_letter_topic = \"{topic}.dlq\"\n\
                 [http]\nlisten = \"127.0.0.1:{http}\"\n[state]\ndir = \"state\"\n"
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
    fn term(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let t = Instant::now();
        while self.child.try_wait().unwrap().is_none() {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "no exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    fn alerts(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("state/alerts.ndjson"))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }
}

impl Drop for D {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn partitions_move_between_two_daemons() {
    let Some(brokers) = service("OVERDUED_TEST_KAFKA") else {
        return;
    };
    let suffix = format!(
        "{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_millis()
    );
    let topic = format!("rebalance.{suffix}");
    let base = std::env::temp_dir().join(format!("overdued-rebalance-{suffix}"));
    create_topics(
        &brokers,
        &[NewTopic::new(&topic, 4, TopicReplication::Fixed(1))],
    );
    // 12 records over the 4 partitions, overdue two seconds after receipt
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    let now = chrono::Utc::now();
    for i in 0..12 {
        let id = format!("K{i}");
        let ev = format!(
            r#"{{"event_id":"{id}-1","record_id":"{id}","type":"received","at":"{}","unit":"U1","procedure":"P1","due_at":"{}"}}"#,
            now.to_rfc3339(),
            (now + chrono::Duration::seconds(2)).to_rfc3339()
        );
        p.send(
            BaseRecord::to(&topic)
                .key(&id)
                .partition(i % 4)
                .payload(&ev),
        )
        .unwrap();
    }
    p.flush(Duration::from_secs(10)).unwrap();

    let mut a = D::start(&base.join("a"), &brokers, &topic);
    wait_for("A ready", 90, || {
        get(a.http, "/readyz").is_some_and(|r| r.0 == 200)
    });
    wait_for(
        "A holds the 12 records and fired 12 overdue alerts",
        30,
        || open(a.http) == Some(12) && a.alerts().len() == 12,
    );

    let mut b = D::start(&base.join("b"), &brokers, &topic);
    wait_for("B takes some partitions", 120, || {
        let (x, y) = (open(a.http).unwrap_or(0), open(b.http).unwrap_or(0));
        y > 0 && x + y == 12 && get(b.http, "/readyz").is_some_and(|r| r.0 == 200)
    });
    std::thread::sleep(Duration::from_secs(3));

    b.term();
    wait_for("A holds everything again", 120, || {
        open(a.http) == Some(12) && get(a.http, "/readyz").is_some_and(|r| r.0 == 200)
    });
    std::thread::sleep(Duration::from_secs(3));

    // Each daemon writes each alert once, and every record's overdue was written.
    // (Across the two, a partition's new owner may repeat what the previous owner
    // fired: the fired-until instant travels in the commit metadata, which the test
    // broker, Tansu, does not keep — see the README.)
    let mut records = HashSet::new();
    for d in [&a, &b] {
        let mut seen = HashSet::new();
        for l in d.alerts() {
            assert!(seen.insert(l.clone()), "alerted twice by one daemon: {l}");
            let v: serde_json::Value = serde_json::from_str(&l).unwrap();
            assert_eq!(v["kind"], "overdue", "{l}");
            records.insert(v["record_id"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(records.len(), 12);
    assert_eq!(
        a.alerts().len(),
        12,
        "A alerted each record once, across its two assignments"
    );
    a.term();
    let _ = std::fs::remove_dir_all(&base);
}
