//! A broker that refuses the dead-letter write must not make the daemon lose the
//! message: it retries, does not commit past it, and after a restart with a
//! working dead-letter topic the message is dead-lettered and what follows it is
//! applied. Needs the broker of `scripts/test.sh`.

use crate::harness::{
    create_topics, free_port, get, metric, service, wait_for, write_one_unit_directory,
};

use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::TopicPartitionList;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn received_total(http: u16) -> Option<f64> {
    let body = get(http, "/metrics")?.1;
    body.lines()
        .find(|l| l.starts_with("overdued_records_received_total{"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

fn config(dir: &Path, brokers: &str, topic: &str, dlq: &str, http: u16) {
    std::fs::write(
        dir.join("overdued.toml"),
        format!(
            "[directory]\nunits = \"units.csv\"\nprocedures = \"procedures.csv\"\n\
             [kafka]\nbrokers = \"{brokers}\"\ntopic = \"{topic}\"\ngroup_id = \"{topic}.g\"\ndead_letter_topic = \"{dlq}\"\n\
             [kafka.properties]\n\"message.timeout.ms\" = \"3000\"\n\
             [http]\nlisten = \"127.0.0.1:{http}\"\n[state]\ndir = \"state\"\n"
        ),
    )
    .unwrap();
}

fn start(dir: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("daemon.log"))
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_overdued"))
        .args(["--log-level", "info,librdkafka=error", "run", "--config"])
        .arg(dir.join("overdued.toml"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

fn term(c: &mut Child) -> bool {
    let _ = Command::new("kill")
        .args(["-TERM", &c.id().to_string()])
        .status();
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(30) {
        if let Some(st) = c.try_wait().unwrap() {
            return st.success();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = c.kill();
    false
}

#[test]
fn refused_dead_letter_is_retried_and_not_committed_past() {
    let Some(brokers) = service("OVERDUED_TEST_KAFKA") else {
        return;
    };
    let suffix = format!(
        "{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_millis()
    );
    let topic = format!("dlqtest.{suffix}");
    let dlq = format!("{topic}.dlq");
    let dir = std::env::temp_dir().join(format!("overdued-dlq-{suffix}"));
    write_one_unit_directory(&dir);
    create_topics(
        &brokers,
        &[
            NewTopic::new(&topic, 1, TopicReplication::Fixed(1)),
            NewTopic::new(&dlq, 1, TopicReplication::Fixed(1)),
        ],
    );
    // one partition: a good record, a malformed message, another good record
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    let ev = |id: &str| {
        format!(
            r#"{{"event_id":"{id}-1","record_id":"{id}","type":"received","at":"2024-03-04T08:00:00+07:00","unit":"U1","procedure":"P1"}}"#
        )
    };
    for (k, v) in [
        ("G1", ev("G1")),
        ("BAD", "{nope".to_string()),
        ("G2", ev("G2")),
    ] {
        p.send(BaseRecord::to(&topic).key(k).payload(&v)).unwrap();
    }
    p.flush(Duration::from_secs(10)).unwrap();

    // The dead-letter topic name is one the broker cannot take.
    let http = free_port();
    config(&dir, &brokers, &topic, "no such topic!", http);
    let mut d = start(&dir);
    // not ready while a partition waits for its dead letter, and says why
    wait_for("/readyz 503 naming the dead letter", 90, || {
        get(http, "/readyz").is_some_and(|r| r.0 == 503 && r.1.contains("dead-letter"))
    });
    wait_for("G1 applied", 30, || received_total(http) == Some(1.0));
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        received_total(http),
        Some(1.0),
        "nothing after the refused dead letter is applied"
    );
    let body = get(http, "/metrics").unwrap().1;
    // counted once, however many times the write is retried
    assert_eq!(
        metric(
            &body,
            r#"overdued_events_rejected_total{reason="invalid_json"}"#
        ),
        1.0,
        "{body}"
    );
    assert!(
        metric(&body, "overdued_dead_letter_failures_total") >= 2.0,
        "{body}"
    );
    assert_eq!(metric(&body, "overdued_partitions_blocked"), 1.0);
    assert!(term(&mut d), "graceful stop during the retries");
    let log = std::fs::read_to_string(dir.join("daemon.log")).unwrap();
    // one error line per incident, not one per retry
    assert_eq!(log.matches("dead-letter write failed").count(), 1, "{log}");
    // committed: up to the malformed message, not past it
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", format!("{topic}.g"))
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(&topic, 0);
    let committed = c.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
    let off = committed
        .find_partition(&topic, 0)
        .unwrap()
        .offset()
        .to_raw()
        .unwrap_or(-1);
    assert!(off <= 1, "committed past the refused message: {off}");

    // Restart with a working dead-letter topic: the message is dead-lettered, G2 applied.
    config(&dir, &brokers, &topic, &dlq, http);
    let mut d = start(&dir);
    wait_for("/readyz after restart", 90, || {
        get(http, "/readyz").is_some_and(|r| r.0 == 200)
    });
    wait_for("G2 applied", 30, || received_total(http) == Some(2.0));
    let body = get(http, "/metrics").unwrap().1;
    assert_eq!(metric(&body, "overdued_partitions_blocked"), 0.0);
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", format!("{topic}.check"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    c.subscribe(&[&dlq]).unwrap();
    let t = Instant::now();
    let mut got = Vec::new();
    while got.is_empty() && t.elapsed() < Duration::from_secs(60) {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(500)) {
            got.push(m.payload().unwrap_or_default().to_vec());
        }
    }
    assert_eq!(got, vec![b"{nope".to_vec()]);
    assert!(term(&mut d));
    let _ = std::fs::remove_dir_all(&dir);
}
