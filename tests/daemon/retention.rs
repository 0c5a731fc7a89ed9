//! A source topic whose retention deletes events the daemon still needs (under
//! a day, with snapshots on) is refused at start-up, with a message that says
//! what to set; `allow_finite_retention` accepts the risk.

use crate::harness::{create_topics, free_port, get, service, wait_for, write_one_unit_directory};
use rdkafka::admin::{NewTopic, TopicReplication};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn write_config(dir: &Path, brokers: &str, topic: &str, http: u16, allow: bool) {
    write_one_unit_directory(dir);
    std::fs::write(
        dir.join("overdued.toml"),
        format!(
            "[directory]\nunits = \"units.csv\"\nprocedures = \"procedures.csv\"\n\
             [kafka]\nbrokers = \"{brokers}\"\ntopic = \"{topic}\"\ngroup_id = \"{topic}.g\"\n\
             allow_finite_retention = {allow}\n\
             [http]\nlisten = \"127.0.0.1:{http}\"\n[state]\ndir = \"state\"\n"
        ),
    )
    .unwrap();
}

#[test]
fn a_topic_that_deletes_events_is_refused_unless_allowed() {
    let Some(brokers) = service("OVERDUED_TEST_KAFKA") else {
        return;
    };
    let suffix = format!(
        "{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_millis()
    );
    let topic = format!("retention.{suffix}");
    let dir = std::env::temp_dir().join(format!("overdued-retention-{suffix}"));
    std::fs::create_dir_all(&dir).unwrap();
    create_topics(
        &brokers,
        &[NewTopic::new(&topic, 1, TopicReplication::Fixed(1))
            .set("retention.ms", "3600000")
            .set("cleanup.policy", "delete")],
    );

    // refused: exits at once, naming the setting and the way out
    let http = free_port();
    write_config(&dir, &brokers, &topic, http, false);
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_overdued"))
        .args(["run", "--config"])
        .arg(dir.join("overdued.toml"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "took {:?}",
        t.elapsed()
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("retention.ms=3600000"), "{err}");
    assert!(err.contains("allow_finite_retention"), "{err}");
    assert!(err.contains("at least 86400000"), "says what to set: {err}");

    // allowed: starts (serves /healthz) and says so in its log
    write_config(&dir, &brokers, &topic, http, true);
    let log = std::fs::File::create(dir.join("daemon.log")).unwrap();
    let mut d = Command::new(env!("CARGO_BIN_EXE_overdued"))
        .args(["--log-level", "warn,librdkafka=error", "run", "--config"])
        .arg(dir.join("overdued.toml"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    wait_for("/healthz", 30, || {
        get(http, "/healthz").is_some_and(|r| r.0 == 200)
    });
    let _ = d.kill();
    let _ = d.wait();
    let log = std::fs::read_to_string(dir.join("daemon.log")).unwrap();
    assert!(log.contains("allow_finite_retention"), "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}
