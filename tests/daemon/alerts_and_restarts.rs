//! `overdued run` against a real Kafka-protocol broker (Tansu, started by
//! `scripts/test.sh`, address in `OVERDUED_TEST_KAFKA`).
//!
//! Events are produced with a real producer; the test asserts on what the daemon
//! does: alerts at the right wall-clock instants, dead letters with their headers,
//! `/metrics` values, `/readyz`, a graceful stop, and a restart that resumes from
//! the committed offsets without alerting anything twice.

use crate::harness::{free_port, get, service, wait_for};

use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

fn rfc(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn metric(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

struct Daemon {
    child: Child,
}

impl Daemon {
    fn start(cfg: &Path, log: &Path) -> Daemon {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_overdued"))
            .args(["--log-level", "info,librdkafka=warn", "run", "--config"])
            .arg(cfg)
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .unwrap();
        Daemon { child }
    }
    fn term(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let t = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "no exit 20 s after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn alerts(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn find<'a>(v: &'a [Value], record: &str, kind: &str, state: &str) -> Vec<&'a Value> {
    v.iter()
        .filter(|a| a["record_id"] == record && a["kind"] == kind && a["state"] == state)
        .collect()
}

fn setup(dir: &Path, brokers: &str, topic: &str, http: u16) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("overdued.toml"),
        format!(
            r#"
[calendar]
# a calendar whose working time covers the whole test, so thresholds are seconds
periods = ["00:00-24:00"]
weekdays = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
[directory]
units = "units.csv"
procedures = "procedures.csv"
[rules]
hanging_after_hours = 0.001      # 3.6 s
due_soon_before_hours = 0.0005   # 1.8 s
[kafka]
brokers = "{brokers}"
topic = "{topic}"
group_id = "{topic}.group"
dead_letter_topic = "{topic}.dlq"
[http]
listen = "127.0.0.1:{http}"
[state]
dir = "state"
[alerts]
file = "state/alerts.ndjson"
topic = "{topic}.alerts"
"#
        ),
    )
    .unwrap();
    std::fs::write(dir.join("units.csv"), "code,name,level,parent,emails,head_email\nU1,Đơn vị một,district,,u1@example.vn,h1@example.vn\n").unwrap();
    std::fs::write(
        dir.join("procedures.csv"),
        "code,name,sector,duration,duration_unit\nP1,Thủ tục,DD,1,working_hours\n",
    )
    .unwrap();
    dir.join("overdued.toml")
}

fn create_topics(brokers: &str, topic: &str) {
    let dlq = format!("{topic}.dlq");
    let alerts = format!("{topic}.alerts");
    crate::harness::create_topics(
        brokers,
        &[
            NewTopic::new(topic, 3, TopicReplication::Fixed(1)),
            NewTopic::new(&dlq, 1, TopicReplication::Fixed(1)),
            NewTopic::new(&alerts, 2, TopicReplication::Fixed(1)),
        ],
    );
}

fn produce(p: &BaseProducer, topic: &str, key: &str, value: &str) {
    p.send(BaseRecord::to(topic).key(key).payload(value))
        .unwrap();
    p.flush(Duration::from_secs(10)).unwrap();
}

fn received(id: &str, unit: &str, at: chrono::DateTime<chrono::Utc>, due_in: i64) -> String {
    format!(
        r#"{{"event_id":"{id}-1","record_id":"{id}","type":"received","at":"{}","unit":"{unit}","procedure":"P1","due_at":"{}"}}"#,
        rfc(at),
        rfc(at + chrono::Duration::seconds(due_in))
    )
}

#[test]
fn daemon_alerts_dead_letters_metrics_and_restart() {
    let Some(brokers) = service("OVERDUED_TEST_KAFKA") else {
        return;
    };
    let suffix = format!("{}-{}", std::process::id(), now().timestamp_millis());
    let topic = format!("records.events.{suffix}");
    let dir = std::env::temp_dir().join(format!("overdued-daemon-{suffix}"));
    let http = free_port();
    let cfg = setup(&dir, &brokers, &topic, http);
    let log = dir.join("daemon.log");
    create_topics(&brokers, &topic);
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();

    // Before the daemon starts: a record, a malformed message, an unknown type,
    // and a record received by a unit missing from the directory.
    let t0 = now();
    // over the producer's default message.max.bytes (1,000,000): the dead
    // letter is a cut copy, and the record's next event (same key, same
    // partition) is applied after it
    let big = format!(
        r#"{{"event_id":"big","record_id":"A","pad":"{}"}}"#,
        "x".repeat(1_100_000)
    );
    let big_producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("message.max.bytes", "2000000")
        .create()
        .unwrap();
    produce(&big_producer, &topic, "A", &big);
    produce(&producer, &topic, "A", &received("A", "U1", t0, 6));
    produce(&producer, &topic, "B", "{not json");
    produce(
        &producer,
        &topic,
        "B2",
        r#"{"event_id":"x","record_id":"B2","type":"teleported","at":"2024-03-04T09:00:00+07:00"}"#,
    );
    produce(&producer, &topic, "D", &received("D", "NOPE", t0, 3600));
    // a producer bug: the key is not the record id (the record's other events
    // would land on another partition)
    produce(&producer, &topic, "WRONG", &received("K", "U1", t0, 3600));

    let mut d = Daemon::start(&cfg, &log);
    assert_eq!(
        get(http, "/healthz").map(|r| r.0).or_else(|| {
            std::thread::sleep(Duration::from_millis(500));
            get(http, "/healthz").map(|r| r.0)
        }),
        Some(200)
    );
    wait_for("/readyz 200", 90, || {
        get(http, "/readyz").is_some_and(|r| r.0 == 200)
    });
    let file = dir.join("state/alerts.ndjson");

    // What came due before the daemon was ready fires at start-up with its true time.
    wait_for("A overdue", 30, || {
        !find(&alerts(&file), "A", "overdue", "firing").is_empty()
    });
    let a = alerts(&file);
    let at = |v: &Value| {
        chrono::DateTime::parse_from_rfc3339(v["at"].as_str().unwrap())
            .unwrap()
            .with_timezone(&chrono::Utc)
    };
    let od = find(&a, "A", "overdue", "firing");
    assert_eq!(od.len(), 1);
    assert_eq!(
        at(od[0]).timestamp_millis(),
        (t0 + chrono::Duration::seconds(6)).timestamp_millis()
    );
    assert_eq!(find(&a, "A", "hanging", "firing").len(), 1);
    assert_eq!(find(&a, "D", "unrouted", "firing").len(), 1);
    assert_eq!(find(&a, "D", "unrouted", "firing")[0]["unit"], "NOPE");

    // While running: a hanging timer 3.6 s after a new receipt fires within 1 s.
    let t1 = now();
    produce(&producer, &topic, "E", &received("E", "U1", t1, 3600));
    let due = t1 + chrono::Duration::milliseconds(3600);
    let mut seen_at = None;
    // poll the file every 20 ms so the measurement adds little to the lateness
    let t = Instant::now();
    while seen_at.is_none() {
        if !find(&alerts(&file), "E", "hanging", "firing").is_empty() {
            seen_at = Some(now());
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "E hanging never written"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let lateness = (seen_at.unwrap() - due).num_milliseconds();
    assert!(
        lateness < 1000,
        "E hanging written {lateness} ms after its instant"
    );
    assert_eq!(
        at(find(&alerts(&file), "E", "hanging", "firing")[0]).timestamp_millis(),
        due.timestamp_millis()
    );

    // Dead letters: unchanged payload and key, reason and source in the headers.
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", format!("{topic}.check"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    c.subscribe(&[&format!("{topic}.dlq")]).unwrap();
    let mut dead: HashMap<String, (Vec<u8>, HashMap<String, String>)> = HashMap::new();
    let t = Instant::now();
    while dead.len() < 4 && t.elapsed() < Duration::from_secs(60) {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(500)) {
            let mut h = HashMap::new();
            if let Some(hs) = m.headers() {
                for x in hs.iter() {
                    h.insert(
                        x.key.to_string(),
                        String::from_utf8_lossy(x.value.unwrap_or_default()).to_string(),
                    );
                }
            }
            let key = String::from_utf8_lossy(m.key().unwrap_or_default()).to_string();
            dead.insert(key, (m.payload().unwrap_or_default().to_vec(), h));
        }
    }
    assert_eq!(dead.len(), 4, "dead letters: {:?}", dead.keys());
    assert_eq!(dead["A"].1["reason"], "too_large");
    assert_eq!(dead["A"].1["truncated"], "true");
    assert_eq!(dead["A"].1["original_bytes"], big.len().to_string());
    assert_eq!(dead["A"].0.len(), 64 * 1024);
    assert!(big.as_bytes().starts_with(&dead["A"].0));
    assert_eq!(dead["WRONG"].1["reason"], "key_mismatch");
    assert!(
        dead["WRONG"].1["detail"].contains("not the record_id"),
        "{:?}",
        dead["WRONG"].1
    );
    assert!(find(&alerts(&file), "K", "hanging", "firing").is_empty());
    assert_eq!(dead["B"].0, b"{not json");
    assert_eq!(dead["B"].1["reason"], "invalid_json");
    assert_eq!(dead["B2"].1["reason"], "unknown_type");
    for (_, h) in dead.values() {
        assert_eq!(h["source_topic"], topic);
        assert!(h["source_partition"].parse::<i32>().unwrap() < 3);
        assert!(h["source_offset"].parse::<i64>().unwrap() >= 0);
    }

    // /metrics matches what was sent.
    wait_for("metrics", 10, || {
        let body = get(http, "/metrics").unwrap().1;
        metric(
            &body,
            r#"overdued_records_received_total{level="district",unit="U1",sector="DD",channel="in_person"}"#,
        ) == Some(2.0)
    });
    let body = get(http, "/metrics").unwrap().1;
    assert_eq!(
        metric(
            &body,
            r#"overdued_events_rejected_total{reason="invalid_json"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &body,
            r#"overdued_events_rejected_total{reason="unknown_type"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &body,
            r#"overdued_events_rejected_total{reason="key_mismatch"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &body,
            r#"overdued_events_rejected_total{reason="too_large"}"#
        ),
        Some(1.0)
    );
    // how fresh the source is, per partition: the latest event time consumed
    // (E's, at t1) and when it was consumed (just now)
    let series = |name: &str| -> Vec<f64> {
        body.lines()
            .filter(|l| l.starts_with(&format!("{name}{{partition=")))
            .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
            .collect()
    };
    let received_at = series("overdued_last_event_received_seconds");
    let now_s = now().timestamp_millis() as f64 / 1000.0;
    assert!(!received_at.is_empty(), "{body}");
    assert!(
        received_at
            .iter()
            .all(|&r| r <= now_s + 1.0 && r > now_s - 300.0),
        "{received_at:?} vs now {now_s}"
    );
    let latest = series("overdued_last_event_timestamp_seconds")
        .into_iter()
        .fold(f64::MIN, f64::max);
    assert!(
        (latest - t1.timestamp_millis() as f64 / 1000.0).abs() < 0.01,
        "latest event time {latest}, E was at {t1}"
    );
    assert_eq!(
        metric(&body, r#"overdued_alerts_total{kind="unrouted"}"#),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &body,
            r#"overdued_records_overdue{level="district",unit="U1",sector="DD"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &body,
            // a unit outside the directory is counted under `unknown`: event
            // strings never become label values
            r#"overdued_records_open{level="unknown",unit="unknown",sector="DD"}"#
        ),
        Some(1.0)
    );
    assert!(!body.contains("NOPE"), "{body}");
    assert!(
        body.contains("process_resident_memory_bytes"),
        "process metrics"
    );
    assert!(
        body.contains("overdued_event_apply_seconds_bucket"),
        "apply latency histogram"
    );

    // JSON API.
    let json = |path: &str| -> (u16, Value) {
        let (st, body) = get(http, path).unwrap();
        (
            st,
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}")),
        )
    };
    let (st, a) = json("/api/v1/records/A");
    assert_eq!(st, 200, "{a}");
    assert_eq!(a["holder"], "U1");
    assert_eq!(a["state"], "open");
    assert!(
        a["firing"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k == "overdue"),
        "{a}"
    );
    assert!(a["working_hours_left"].as_f64().unwrap() < 0.0, "{a}");
    assert_eq!(json("/api/v1/records/NOT-THERE").0, 404);
    let (_, al) = json("/api/v1/alerts?kind=overdue");
    let ids: Vec<&str> = al["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["record_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["A"], "{al}");
    let (_, al) = json("/api/v1/alerts?unit=NOPE&kind=unrouted");
    assert_eq!(al["alerts"][0]["record_id"], "D", "{al}");
    let (_, page) = json("/api/v1/alerts?limit=1");
    assert_eq!(page["alerts"].as_array().unwrap().len(), 1);
    assert!(page["next"].is_string(), "a second page: {page}");
    assert_eq!(json("/api/v1/alerts?cursor=bad").0, 400);
    let month = t0.format("%Y-%m").to_string();
    let (_, rates) = json(&format!("/api/v1/rates?by=level&from={month}&to={month}"));
    assert_eq!(rates["rates"]["district"]["received"], 2, "{rates}");
    assert_eq!(rates["rates"]["unknown"]["received"], 1, "{rates}");
    assert_eq!(json("/api/v1/rates?by=planet").0, 400);

    // Graceful stop, then a restart: resumes from the committed offsets and alerts
    // nothing twice; a new event is applied.
    assert!(d.term().success());
    let before = alerts(&file);
    let mut d = Daemon::start(&cfg, &log);
    wait_for("/readyz 200 after restart", 90, || {
        get(http, "/readyz").is_some_and(|r| r.0 == 200)
    });
    produce(
        &producer,
        &topic,
        "A",
        &format!(
            r#"{{"event_id":"A-2","record_id":"A","type":"resolved","at":"{}"}}"#,
            rfc(now())
        ),
    );
    wait_for("A overdue resolved", 30, || {
        !find(&alerts(&file), "A", "overdue", "resolved").is_empty()
    });
    // the record's history was rebuilt from the topic after the restart
    let (st, body) = get(http, "/api/v1/records/A").unwrap();
    assert_eq!(st, 200);
    let rec: Value = serde_json::from_str(&body).unwrap();
    let types: Vec<&str> = rec["history"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .iter()
        .map(|h| h["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, vec!["received", "resolved"], "{rec}");
    assert_eq!(rec["state"], "closed");
    assert_eq!(rec["history"][0]["unit"], "U1");
    std::thread::sleep(Duration::from_secs(2));
    let after = alerts(&file);
    let key = |v: &Value| {
        format!(
            "{}|{}|{}|{}",
            v["record_id"], v["kind"], v["state"], v["at"]
        )
    };
    let mut seen = std::collections::HashSet::new();
    for v in &after {
        assert!(
            seen.insert(key(v)),
            "alerted twice: {v}\nlog: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
    // new: the resolution of A's hanging and overdue alerts, nothing else
    let new: Vec<String> = after[before.len()..]
        .iter()
        .map(|v| format!("{} {} {}", v["record_id"], v["kind"], v["state"]))
        .collect();
    let mut new_sorted = new.clone();
    new_sorted.sort();
    assert_eq!(
        new_sorted,
        vec![r#""A" "hanging" "resolved""#, r#""A" "overdue" "resolved""#],
        "{new:?}"
    );
    assert!(d.term().success());

    // The alerts topic carries exactly the alerts file's lines (each
    // acknowledged before the state that made it was saved): none missing,
    // none twice, across the restart.
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", format!("{topic}.alerts-check"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    c.subscribe(&[&format!("{topic}.alerts")]).unwrap();
    let mut want: Vec<String> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    want.sort();
    let mut got: Vec<String> = Vec::new();
    let t = Instant::now();
    while got.len() < want.len() && t.elapsed() < Duration::from_secs(60) {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(500)) {
            let line = String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string();
            let v: Value = serde_json::from_str(&line).unwrap();
            assert_eq!(
                m.key(),
                Some(v["record_id"].as_str().unwrap().as_bytes()),
                "keyed by record id"
            );
            got.push(line);
        }
    }
    std::thread::sleep(Duration::from_secs(1));
    while let Some(Ok(m)) = c.poll(Duration::from_millis(500)) {
        got.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string());
    }
    got.sort();
    assert_eq!(got, want, "the alerts topic and the alerts file differ");
    let _ = std::fs::remove_dir_all(&dir);
}
