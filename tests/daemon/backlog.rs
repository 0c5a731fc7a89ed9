//! A first start on a topic holding a year of history: the daemon catches up on
//! event time, so it writes exactly the alert transitions of `overdued replay
//! --until <now>` over the same events (as a multiset: none extra, none missing)
//! and dead-letters exactly the lines `replay` rejects. The history spans many
//! consumer rounds (≤ 1000 messages each) over three partitions, so a message
//! lost between rounds shows too.

use crate::harness::{create_topics, free_port, get, run_daemon, service, wait_for};

use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The repository's sample configuration with this test's Kafka, HTTP and state.
fn write_config(dir: &Path, brokers: &str, topic: &str, http: u16) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let text = std::fs::read_to_string(repo.join("overdued.toml")).unwrap();
    // keep calendar, directory and rules; replace the daemon's sections
    let cut = text.find("\n[kafka]").expect("[kafka] in the sample");
    let mut cfg = text[..cut].replace("\"calendar/", &format!("\"{}/calendar/", repo.display()));
    for f in ["units.csv", "procedures.csv"] {
        cfg = cfg.replace(&format!("\"{f}\""), &format!("\"{}/{f}\"", repo.display()));
    }
    cfg.push_str(&format!(
        r#"
[kafka]
brokers = "{brokers}"
topic = "{topic}"
group_id = "{topic}.group"
dead_letter_topic = "{topic}.dlq"
[http]
listen = "127.0.0.1:{http}"
[state]
dir = "state"
"#
    ));
    std::fs::write(dir.join("overdued.toml"), cfg).unwrap();
}

/// Generated history plus lines `replay` rejects: one not JSON, one for a record
/// never received, a `received` for an open record, and a late event for a record
/// closed long before (forgotten after `closed_retention` of event time).
fn history(dir: &Path) -> Vec<String> {
    let path = dir.join("generated.ndjson");
    let ok = Command::new(env!("CARGO_BIN_EXE_overdued"))
        .args([
            "gen",
            "--records",
            "3000",
            "--year",
            "2025",
            "--seed",
            "7",
            "--out",
        ])
        .arg(&path)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success());
    let mut lines: Vec<String> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let first: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    let id = first["record_id"].as_str().unwrap().to_string();
    let at = first["at"].as_str().unwrap().to_string();
    let n = lines.len();
    lines.insert(n / 4, "{not json".into());
    lines.insert(
        n / 3,
        format!(r#"{{"event_id":"ghost-1","record_id":"ghost","type":"completed","at":"{at}"}}"#),
    );
    lines.insert(
        n / 2,
        format!(
            r#"{{"event_id":"again-1","record_id":"{id}","type":"received","at":"{at}","unit":"STC","procedure":"1.005423"}}"#
        ),
    );
    lines.push(format!(
        r#"{{"event_id":"late-1","record_id":"{id}","type":"returned","at":"2025-12-31T10:00:00+07:00"}}"#
    ));
    lines
}

#[test]
fn a_first_start_on_a_year_of_history_writes_what_replay_writes() {
    let Some(brokers) = service("OVERDUED_TEST_KAFKA") else {
        return;
    };
    let suffix = format!(
        "{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_millis()
    );
    let topic = format!("records.history.{suffix}");
    let dir = std::env::temp_dir().join(format!("overdued-history-{suffix}"));
    std::fs::create_dir_all(&dir).unwrap();
    let http = free_port();
    write_config(&dir, &brokers, &topic, http);
    let lines = history(&dir);
    std::fs::write(dir.join("events.ndjson"), lines.join("\n") + "\n").unwrap();
    create_topics(
        &brokers,
        &[
            NewTopic::new(&topic, 3, TopicReplication::Fixed(1)),
            NewTopic::new(&format!("{topic}.dlq"), 1, TopicReplication::Fixed(1)),
        ],
    );
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("queue.buffering.max.messages", "100000")
        .create()
        .unwrap();
    for (i, l) in lines.iter().enumerate() {
        let key = serde_json::from_str::<serde_json::Value>(l)
            .ok()
            .and_then(|v| v["record_id"].as_str().map(str::to_string))
            .unwrap_or_else(|| format!("line-{i}"));
        producer
            .send(BaseRecord::to(&topic).key(&key).payload(l))
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();

    let mut child = run_daemon(&dir, "daemon.log");
    // ready = every partition has reached its end (and its timers moved to the
    // wall clock)
    wait_for("the history consumed", 180, || {
        get(http, "/readyz").is_some_and(|(s, _)| s == 200)
    });
    std::thread::sleep(Duration::from_secs(2));

    // without [http] api_token, changes through the API are refused, not open
    let mut s = std::net::TcpStream::connect(("127.0.0.1", http)).unwrap();
    use std::io::{Read, Write};
    let body = r#"{"unit":"STC","ends_at":"2099-01-01T00:00:00Z"}"#;
    write!(
        s,
        "POST /api/v1/silences HTTP/1.0\r\nAuthorization: Bearer anything-at-all-123\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(
        resp.starts_with("HTTP/1.0 403") || resp.starts_with("HTTP/1.1 403"),
        "{resp}"
    );

    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(child.wait().unwrap().success());
    let until = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let ok = Command::new(env!("CARGO_BIN_EXE_overdued"))
        .args(["replay", "--config"])
        .arg(dir.join("overdued.toml"))
        .args(["--until", &until, "--alerts"])
        .arg(dir.join("replay-alerts.ndjson"))
        .arg("--dead-letter")
        .arg(dir.join("replay-dlq.ndjson"))
        .arg(dir.join("events.ndjson"))
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success());

    let sorted = |p: &Path| {
        let mut v: Vec<String> = std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        v.sort();
        v
    };
    let want = sorted(&dir.join("replay-alerts.ndjson"));
    let got = sorted(&dir.join("state/alerts.ndjson"));
    assert!(want.len() > 1000, "{} transitions", want.len());
    let extra: Vec<_> = got.iter().filter(|l| !want.contains(l)).take(5).collect();
    let missing: Vec<_> = want.iter().filter(|l| !got.contains(l)).take(5).collect();
    assert!(
        got == want,
        "daemon {} transitions, replay {}; extra e.g. {extra:?}; missing e.g. {missing:?}",
        got.len(),
        want.len()
    );

    // the dead letters: the same lines, for the same reasons
    let mut want_dl: Vec<(String, String)> = std::fs::read_to_string(dir.join("replay-dlq.ndjson"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["reason"].as_str().unwrap().into(),
                v["raw"].as_str().unwrap().into(),
            )
        })
        .collect();
    want_dl.sort();
    assert_eq!(want_dl.len(), 4, "{want_dl:?}");
    // read the dead-letter topic to its end (assigned, no group join)
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", format!("{topic}.check"))
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(&format!("{topic}.dlq"), 0, rdkafka::Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let mut got_dl = Vec::new();
    let t = std::time::Instant::now();
    loop {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "dead-letter topic not read"
        );
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                let reason = m
                    .headers()
                    .and_then(|h| h.iter().find(|h| h.key == "reason"))
                    .and_then(|h| h.value)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default();
                let raw = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
                got_dl.push((reason, raw));
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => break,
            _ => {}
        }
    }
    got_dl.sort();
    assert_eq!(got_dl, want_dl);
}
