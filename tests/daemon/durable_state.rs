//! State that does not need the topic's past: snapshots in the state topic.
//!
//! Event times lie years ahead of the wall clock, so only events move the
//! engines' clocks and the daemon's result is exactly `replay`'s, whatever the
//! restarts: the alert transitions as a multiset, the event counters, the
//! rates.
//!
//! * retention: the test broker cannot delete records (DeleteRecords drops the
//!   connection; the pip binary has no PostgreSQL storage), so the topic's past
//!   is taken away another way: after a snapshot the daemon is pointed at a
//!   topic whose first offsets hold junk that would be dead-lettered if read,
//!   followed by the rest of the stream; the restart runs without a group
//!   (`assignment = "all"`);
//! * `kill -9` at random points while 100,000+ events stream in, in a group.

use crate::harness::{create_topics, free_port, get, run_daemon, service, unique_suffix, wait_for};
use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Snapshots every second; a 6 s session, so that a killed daemon's successor
/// does not wait for the default 45 s one to end (README, "Restart time");
/// `standalone`: no group, every partition (`assignment = "all"`).
fn write_config(dir: &Path, brokers: &str, topic: &str, group: &str, http: u16, standalone: bool) {
    let assignment = if standalone { "all" } else { "group" };
    crate::harness::write_one_unit_directory(dir);
    std::fs::write(
        dir.join("overdued.toml"),
        format!(
            "[directory]\nunits = \"units.csv\"\nprocedures = \"procedures.csv\"\n\
             [kafka]\nbrokers = \"{brokers}\"\ntopic = \"{topic}\"\ngroup_id = \"{group}\"\n\
             dead_letter_topic = \"{topic}.dlq\"\nsnapshot_interval = \"1s\"\n\
             session_timeout = \"6s\"\nassignment = \"{assignment}\"\n\
             [http]\nlisten = \"127.0.0.1:{http}\"\n[state]\ndir = \"state\"\n"
        ),
    )
    .unwrap();
}

/// An event: (event time, partition, record id, line).
type Ev = (i64, i32, String, String);

fn line(id: &str, kind: &str, n: u32, at: i64, extra: &str) -> String {
    let t = chrono::DateTime::from_timestamp(at, 0)
        .unwrap()
        .with_timezone(&chrono::FixedOffset::east_opt(7 * 3600).unwrap())
        .to_rfc3339();
    format!(
        r#"{{"event_id":"{id}-{kind}-{n}","record_id":"{id}","type":"{kind}","at":"{t}"{extra}}}"#
    )
}

/// `records` records received a minute apart from March 2031 (far ahead of the
/// wall clock), most of them advanced two days later, 60 % resolved within 5
/// to 20 days, the rest left to go overdue; sorted by time; then one sentinel
/// record per partition at the end, so that every partition's clock ends at
/// the same instant as `replay`'s.
fn stream(prefix: &str, records: usize, partitions: i32, from: i64) -> Vec<Ev> {
    let mut v = Vec::new();
    for i in 0..records {
        let id = format!("{prefix}{i:06}");
        let p = (i % partitions as usize) as i32;
        let t0 = from + i as i64 * 60;
        v.push((
            t0,
            p,
            id.clone(),
            line(&id, "received", 0, t0, r#","unit":"U1","procedure":"P1""#),
        ));
        if i % 5 != 0 {
            let t = t0 + 2 * 86_400 + (i % 7) as i64 * 3600;
            v.push((t, p, id.clone(), line(&id, "advanced", 1, t, "")));
        }
        if i % 10 < 6 {
            let t = t0 + (5 + (i % 15) as i64) * 86_400;
            v.push((t, p, id.clone(), line(&id, "resolved", 2, t, "")));
        }
    }
    v.sort_by_key(|e| e.0);
    v
}

fn sentinels(prefix: &str, partitions: i32, at: i64) -> Vec<Ev> {
    (0..partitions)
        .map(|p| {
            let id = format!("{prefix}END-{p}");
            (
                at,
                p,
                id.clone(),
                line(&id, "received", 0, at, r#","unit":"U1","procedure":"P1""#),
            )
        })
        .collect()
}

fn producer(brokers: &str) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("queue.buffering.max.messages", "200000")
        .set("linger.ms", "5")
        .create()
        .unwrap()
}

fn send(p: &BaseProducer, topic: &str, e: &Ev) {
    loop {
        match p.send(BaseRecord::to(topic).partition(e.1).key(&e.2).payload(&e.3)) {
            Ok(()) => return,
            Err((rdkafka::error::KafkaError::MessageProduction(_), _)) => {
                p.poll(Duration::from_millis(10));
            }
            Err((e, _)) => panic!("produce: {e}"),
        }
    }
}

/// Sum of a metric family's series.
pub fn family_sum(body: &str, family: &str) -> f64 {
    body.lines()
        .filter(|l| l.starts_with(family) && l[family.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits until the daemon has applied `events` events (its counters, which
/// live in the snapshots, count each event once) and is ready.
fn wait_applied(http: u16, events: usize, secs: u64) {
    wait_for(&format!("{events} events applied"), secs, || {
        let ready = get(http, "/readyz").is_some_and(|(s, _)| s == 200);
        let body = get(http, "/metrics").map(|r| r.1).unwrap_or_default();
        ready && family_sum(&body, "overdued_events_total") as usize == events
    });
}

fn sorted_lines(p: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

/// Replays `events` and checks the daemon's alert file, counters and rates
/// against it; returns the number of transitions.
fn check_against_replay(dir: &Path, http: u16, events: &[Ev]) -> usize {
    let text: String = events.iter().map(|e| e.3.clone() + "\n").collect();
    std::fs::write(dir.join("events.ndjson"), text).unwrap();
    let ok = Command::new(env!("CARGO_BIN_EXE_overdued"))
        .args(["replay", "--config"])
        .arg(dir.join("overdued.toml"))
        .arg("--alerts")
        .arg(dir.join("replay-alerts.ndjson"))
        .arg("--report")
        .arg(dir.join("replay-report.json"))
        .arg(dir.join("events.ndjson"))
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success());
    let want = sorted_lines(&dir.join("replay-alerts.ndjson"));
    let got = sorted_lines(&dir.join("state/alerts.ndjson"));
    let extra: Vec<_> = got
        .iter()
        .filter(|l| want.binary_search(l).is_err())
        .take(5)
        .collect();
    let missing: Vec<_> = want
        .iter()
        .filter(|l| got.binary_search(l).is_err())
        .take(5)
        .collect();
    assert!(
        got == want,
        "daemon {} transitions, replay {}; extra e.g. {extra:?}; missing e.g. {missing:?}",
        got.len(),
        want.len()
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("replay-report.json")).unwrap())
            .unwrap();
    let total = &report["total"];
    let body = get(http, "/metrics").unwrap().1;
    let open = family_sum(&body, "overdued_records_open") as u64;
    let want_open = total["in_progress_within"].as_u64().unwrap()
        + total["in_progress_overdue"].as_u64().unwrap()
        + total["paused"].as_u64().unwrap();
    assert_eq!(open, want_open, "open records");
    let (_, rates) = get(http, "/api/v1/rates?by=level").unwrap();
    let rates: serde_json::Value = serde_json::from_str(&rates).unwrap();
    for k in [
        "received",
        "early",
        "on_time",
        "late",
        "rejected",
        "withdrawn",
    ] {
        assert_eq!(
            rates["rates"]["district"][k], total[k],
            "{k}: daemon {rates} vs replay {total}"
        );
    }
    want.len()
}

fn stop(child: &mut std::process::Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

fn base() -> i64 {
    chrono::DateTime::parse_from_rfc3339("2031-03-03T08:00:00+07:00")
        .unwrap()
        .timestamp()
}

/// The snapshot offsets the daemon logged, per partition (the latest).
fn snapshot_offsets(log: &Path) -> std::collections::HashMap<i32, i64> {
    let mut m = std::collections::HashMap::new();
    for l in std::fs::read_to_string(log).unwrap_or_default().lines() {
        if !l.contains("snapshot written") {
            continue;
        }
        let field = |name: &str| -> Option<i64> {
            let rest = &l[l.find(&format!(" {name}="))? + name.len() + 2..];
            rest.split(' ').next()?.parse().ok()
        };
        if let (Some(p), Some(o)) = (field("partition"), field("offset")) {
            m.insert(p as i32, o);
        }
    }
    m
}

#[test]
fn a_restart_after_the_topics_past_is_gone_keeps_every_record_timer_and_alert() {
    let Some(brokers) = service("OVERDUED_TEST_KAFKA") else {
        return;
    };
    let suffix = unique_suffix();
    let (old, new) = (format!("past.{suffix}"), format!("tail.{suffix}"));
    let group = format!("durable.{suffix}");
    let dir = std::env::temp_dir().join(format!("overdued-retention-gone-{suffix}"));
    std::fs::create_dir_all(&dir).unwrap();
    let http = free_port();
    create_topics(
        &brokers,
        &[
            NewTopic::new(&old, 2, TopicReplication::Fixed(1)),
            NewTopic::new(&new, 2, TopicReplication::Fixed(1)),
            NewTopic::new(&format!("{old}.dlq"), 1, TopicReplication::Fixed(1)),
            NewTopic::new(&format!("{new}.dlq"), 1, TopicReplication::Fixed(1)),
        ],
    );
    // the past: 2,000 records received (many still open at the end of it)
    let all = stream("K", 2000, 2, base());
    let cut = all.partition_point(|e| e.0 < base() + 2000 * 60);
    let (past, tail) = all.split_at(cut);
    let prod = producer(&brokers);
    for e in past {
        send(&prod, &old, e);
    }
    prod.flush(Duration::from_secs(30)).unwrap();
    let per_partition: Vec<i64> = (0..2)
        .map(|p| past.iter().filter(|e| e.1 == p).count() as i64)
        .collect();
    write_config(&dir, &brokers, &old, &group, http, false);
    let mut d = run_daemon(&dir, "daemon-1.log");
    wait_applied(http, past.len(), 120);
    wait_for("a snapshot of each partition at its end", 30, || {
        let s = snapshot_offsets(&dir.join("daemon-1.log"));
        (0..2).all(|p| s.get(&p) == Some(&per_partition[p as usize]))
    });
    let _ = d.kill();
    let _ = d.wait();

    // the same partitions' past replaced by junk: read, it would be dead-lettered
    for p in 0..2 {
        for _ in 0..per_partition[p as usize] {
            send(&prod, &new, &(0, p, "junk".into(), "{not an event".into()));
        }
    }
    let mut rest: Vec<Ev> = tail.to_vec();
    let end = rest.last().map_or(base(), |e| e.0) + 60;
    rest.extend(sentinels("K", 2, end));
    for e in &rest {
        send(&prod, &new, e);
    }
    prod.flush(Duration::from_secs(30)).unwrap();
    // the restart takes every partition without a group: it starts at once
    write_config(&dir, &brokers, &new, &group, http, true);
    let mut d = run_daemon(&dir, "daemon-2.log");
    wait_applied(http, past.len() + rest.len(), 120);
    let body = get(http, "/metrics").unwrap().1;
    assert_eq!(
        family_sum(&body, "overdued_events_rejected_total"),
        0.0,
        "the junk where the past was must not be read"
    );
    let log = std::fs::read_to_string(dir.join("daemon-2.log")).unwrap();
    assert!(
        log.contains("partition restored from its snapshot"),
        "{log}"
    );
    let mut events = past.to_vec();
    events.extend(rest);
    let n = check_against_replay(&dir, http, &events);
    assert!(n > 2000, "{n} transitions");
    stop(&mut d);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn kill_9_at_random_points_while_events_stream_loses_and_repeats_nothing() {
    let Some(brokers) = service("OVERDUED_TEST_KAFKA") else {
        return;
    };
    let suffix = unique_suffix();
    let topic = format!("killed.{suffix}");
    let dir = std::env::temp_dir().join(format!("overdued-kill9-{suffix}"));
    std::fs::create_dir_all(&dir).unwrap();
    let http = free_port();
    create_topics(
        &brokers,
        &[
            NewTopic::new(&topic, 3, TopicReplication::Fixed(1)),
            NewTopic::new(&format!("{topic}.dlq"), 1, TopicReplication::Fixed(1)),
        ],
    );
    let mut events = stream("S", 42_000, 3, base());
    let end = events.last().map_or(base(), |e| e.0) + 60;
    events.extend(sentinels("S", 3, end));
    assert!(events.len() >= 100_000, "{} events", events.len());
    write_config(&dir, &brokers, &topic, &format!("{topic}.g"), http, false);
    let mut d = run_daemon(&dir, "daemon-0.log");

    // stream at ~1,500 events/s while the daemon is killed three times
    let streamed = events.clone();
    let b = brokers.clone();
    let t = topic.clone();
    let feeder = std::thread::spawn(move || {
        let prod = producer(&b);
        for chunk in streamed.chunks(150) {
            for e in chunk {
                send(&prod, &t, e);
            }
            prod.poll(Duration::ZERO);
            std::thread::sleep(Duration::from_millis(100));
        }
        prod.flush(Duration::from_secs(60)).unwrap();
    });
    let mut seed = chrono::Utc::now().timestamp_subsec_nanos() as u64 | 1;
    eprintln!("kill points seed {seed}");
    for k in 1..=3 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        // at a random point once it is consuming (a join takes ~11 s here)
        wait_for("the daemon ready", 60, || {
            get(http, "/readyz").is_some_and(|(s, _)| s == 200)
        });
        let wait = Duration::from_millis(1000 + seed % 5000);
        let t0 = Instant::now();
        while t0.elapsed() < wait {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = d.kill();
        let _ = d.wait();
        d = run_daemon(&dir, &format!("daemon-{k}.log"));
    }
    feeder.join().unwrap();
    wait_applied(http, events.len(), 240);
    let restored = (1..=3)
        .filter(|k| {
            std::fs::read_to_string(dir.join(format!("daemon-{k}.log")))
                .unwrap_or_default()
                .contains("partition restored from its snapshot")
        })
        .count();
    assert!(restored >= 1, "no restart restored a snapshot");
    let n = check_against_replay(&dir, http, &events);
    assert!(n > 10_000, "{n} transitions");
    stop(&mut d);
    let _ = std::fs::remove_dir_all(&dir);
}
