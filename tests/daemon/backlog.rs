//! More than one consumer round of messages (a round is ≤ 1000): every event of
//! a 5,000-event backlog over 3 partitions is applied — a regression test for the
//! message polled ahead at the end of a round, which was once dropped (one event
//! per 1000 lost, its offset committed anyway).

use crate::harness::{create_topics, free_port, get, metric, service, wait_for};

use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn a_backlog_of_several_rounds_is_applied_in_full() {
    let Some(brokers) = service("OVERDUED_TEST_KAFKA") else {
        return;
    };
    let suffix = format!(
        "{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_millis()
    );
    let topic = format!("records.volume.{suffix}");
    let dir = std::env::temp_dir().join(format!("overdued-volume-{suffix}"));
    std::fs::create_dir_all(&dir).unwrap();
    let http = free_port();
    std::fs::write(
        dir.join("overdued.toml"),
        format!(
            r#"
[directory]
units = "units.csv"
procedures = "procedures.csv"
[rules]
hanging_after_hours = 10000
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
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("units.csv"),
        "code,name,level,parent,emails,head_email\nU1,Đơn vị một,district,,u1@example.vn,h1@example.vn\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("procedures.csv"),
        "code,name,sector,duration,duration_unit\nP1,Thủ tục,DD,300,working_days\n",
    )
    .unwrap();
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
    let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    const N: usize = 5000;
    for i in 0..N {
        let id = format!("V{i:05}");
        let v = format!(
            r#"{{"event_id":"{id}-1","record_id":"{id}","type":"received","at":"{at}","unit":"U1","procedure":"P1"}}"#
        );
        producer
            .send(BaseRecord::to(&topic).key(&id).payload(&v))
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    let log = std::fs::File::create(dir.join("daemon.log")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_overdued"))
        .args(["--log-level", "info,librdkafka=warn", "run", "--config"])
        .arg(dir.join("overdued.toml"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let series = "overdued_events_total{type=\"received\"}";
    wait_for("all 5000 events applied", 120, || {
        get(http, "/metrics").is_some_and(|(_, b)| metric(&b, series) >= N as f64)
    });
    std::thread::sleep(Duration::from_secs(2));
    let (_, body) = get(http, "/metrics").unwrap();
    assert_eq!(metric(&body, series), N as f64);
    assert_eq!(
        metric(
            &body,
            "overdued_records_open{level=\"district\",unit=\"U1\",sector=\"DD\"}"
        ),
        N as f64
    );
    // without [http] api_token, changes through the API are refused, not open
    let mut s = std::net::TcpStream::connect(("127.0.0.1", http)).unwrap();
    use std::io::{Read, Write};
    let body = r#"{"unit":"U1","ends_at":"2099-01-01T00:00:00Z"}"#;
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
    let _ = child.kill();
    let _ = child.wait();
}
