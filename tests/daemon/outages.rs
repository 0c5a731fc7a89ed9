//! Outages made visible, on a broker of the test's own (so that freezing it
//! disturbs no other test): a broker frozen for 30 s makes the partition
//! stalled (`overdued_kafka_fetch_age_seconds` grows, `overdued_partition_stalled`
//! 1, `/readyz` 503, one WARN) until it answers again, and the daemon rides it
//! out: a deadline that passes during the outage is alerted on time, an event
//! sent during it is applied once the broker is back, snapshots resume; a
//! source that sends nothing
//! for `[rules] source_silence_after` of working time is marked
//! (`overdued_source_silent`, a `/readyz` detail) until an event arrives.

use crate::harness::{create_topics, free_port, get, metric, service, wait_for};

use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.0.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

#[test]
fn a_frozen_broker_and_a_silent_source_show() {
    let Some(tansu) = service("OVERDUED_TEST_TANSU") else {
        return;
    };
    let suffix = format!(
        "{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_millis()
    );
    let dir = std::env::temp_dir().join(format!("overdued-outages-{suffix}"));
    std::fs::create_dir_all(&dir).unwrap();
    let kport = free_port();
    let brokers = format!("127.0.0.1:{kport}");
    let broker = Kill(
        Command::new(&tansu)
            .args(["broker", "--listener-url"])
            .arg(format!("tcp://{brokers}"))
            .arg("--advertised-listener-url")
            .arg(format!("tcp://{brokers}"))
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("tansu.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_for("the private broker", 20, || {
        std::net::TcpStream::connect(("127.0.0.1", kport)).is_ok()
    });
    let topic = "records.outages";
    create_topics(
        &brokers,
        &[
            NewTopic::new(topic, 1, TopicReplication::Fixed(1)),
            NewTopic::new("records.outages.dlq", 1, TopicReplication::Fixed(1)),
        ],
    );
    crate::harness::write_one_unit_directory(&dir);
    let http = free_port();
    // every hour is a working hour, so the silence is counted whenever CI runs
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
source_silence_after = "4s"
[kafka]
brokers = "{brokers}"
topic = "{topic}"
group_id = "outages"
dead_letter_topic = "{topic}.dlq"
stall_after = "8s"
snapshot_interval = "2s"
[kafka.properties]
"statistics.interval.ms" = "1000"
[http]
listen = "127.0.0.1:{http}"
[state]
dir = "state"
"#
        ),
    )
    .unwrap();
    let log = dir.join("daemon.log");
    let mut daemon = Kill(
        Command::new(env!("CARGO_BIN_EXE_overdued"))
            .args(["--log-level", "info,librdkafka=error", "run", "--config"])
            .arg(dir.join("overdued.toml"))
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let metrics = || get(http, "/metrics").map(|(_, b)| b).unwrap_or_default();
    let readyz = || get(http, "/readyz").unwrap_or((0, String::new()));
    wait_for("ready", 90, || readyz().0 == 200);

    // no event since the start: silent after 4 s of working time
    wait_for("the source marked silent", 30, || {
        metric(&metrics(), "overdued_source_silent") == 1.0
    });
    let (status, body) = readyz();
    assert_eq!(status, 200, "a silent source is not the daemon's fault");
    assert!(body.contains("the source is silent"), "{body}");
    // an event arrives: no longer silent
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let v = format!(
        r#"{{"event_id":"S1-1","record_id":"S1","type":"received","at":"{at}","unit":"U1","procedure":"P1"}}"#
    );
    producer
        .send(BaseRecord::to(topic).key("S1").payload(&v))
        .unwrap();
    producer.flush(Duration::from_secs(10)).unwrap();
    wait_for("the source heard again", 30, || {
        metric(&metrics(), "overdued_source_silent") == 0.0
    });
    assert_eq!(readyz(), (200, "ready\n".to_string()));

    // a healthy broker answers within a few seconds
    let body = metrics();
    let up = format!("overdued_kafka_broker_up{{broker=\"{brokers}\"}}");
    assert_eq!(metric(&body, &up), 1.0, "{body}");
    let age = "overdued_kafka_fetch_age_seconds{partition=\"0\"}";
    let a = metric(&body, age);
    assert!((0.0..5.0).contains(&a), "fetch age {a}");
    let stalled = "overdued_partition_stalled{partition=\"0\"}";
    assert_eq!(metric(&body, stalled), 0.0);

    // a record due 12 s from now: its deadline passes while the broker is frozen
    let now = chrono::Utc::now();
    let rfc =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let v = format!(
        r#"{{"event_id":"O1-1","record_id":"O1","type":"received","at":"{}","unit":"U1","procedure":"P1","due_at":"{}"}}"#,
        rfc(now),
        rfc(now + chrono::Duration::seconds(12))
    );
    producer
        .send(BaseRecord::to(topic).key("O1").payload(&v))
        .unwrap();
    producer.flush(Duration::from_secs(10)).unwrap();
    let events = || crate::durable_state::family_sum(&metrics(), "overdued_events_total");
    wait_for("O1 applied", 30, || events() == 2.0);
    let snapshots_ok = "overdued_snapshots_total{result=\"ok\"}";

    // frozen for 30 s: no answer for 8 s makes the partition stalled and not ready
    signal(&broker.0, "-STOP");
    let frozen = std::time::Instant::now();
    // an event sent during the outage waits in the producer
    let v = format!(
        r#"{{"event_id":"O2-1","record_id":"O2","type":"received","at":"{}","unit":"U1","procedure":"P1"}}"#,
        rfc(chrono::Utc::now())
    );
    producer
        .send(BaseRecord::to(topic).key("O2").payload(&v))
        .unwrap();
    wait_for("the partition stalled", 40, || {
        metric(&metrics(), stalled) == 1.0
    });
    let body = metrics();
    assert!(metric(&body, age) >= 8.0, "{body}");
    let (status, body) = readyz();
    assert_eq!(status, 503);
    assert!(body.contains("stalled"), "{body}");
    // the deadline passed during the outage: alerted on time, from the local engine
    wait_for("O1 overdue during the outage", 30, || {
        std::fs::read_to_string(dir.join("state/alerts.ndjson"))
            .unwrap_or_default()
            .contains(r#""record_id": "O1", "kind": "overdue", "state": "firing""#)
    });
    while frozen.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(200));
    }
    let snapshots_before = metric(&metrics(), snapshots_ok);
    // back: it moves again and is ready; nothing sent meanwhile is lost
    signal(&broker.0, "-CONT");
    producer.flush(Duration::from_secs(60)).unwrap();
    wait_for("the partition moving again", 90, || {
        metric(&metrics(), stalled) == 0.0 && readyz().0 == 200
    });
    wait_for("O2 applied after the outage", 60, || events() == 3.0);
    wait_for("snapshots written again", 30, || {
        metric(&metrics(), snapshots_ok) > snapshots_before
    });
    let alerts = std::fs::read_to_string(dir.join("state/alerts.ndjson")).unwrap();
    assert_eq!(
        alerts
            .matches(r#""record_id": "O1", "kind": "overdue", "state": "firing""#)
            .count(),
        1,
        "{alerts}"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.matches("partition stalled").count(), 1, "{text}");
    assert_eq!(text.matches("partition moves again").count(), 1, "{text}");
    assert!(text.contains("the source is silent"), "{text}");
    signal(&daemon.0, "-TERM");
    assert!(daemon.0.wait().unwrap().success());
}
