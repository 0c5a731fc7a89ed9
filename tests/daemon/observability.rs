//! The daemon seen from outside: events produced by an independent Kafka client
//! (Python `kafka-python`), `/metrics` validated by `promtool check metrics`, and a
//! real Prometheus scraping the daemon and answering a PromQL query.
//! Needs the broker, Python client, prometheus and promtool that `scripts/test.sh`
//! provides.

use crate::harness::{free_port, get, service, wait_for};

use chrono::{Datelike, TimeZone};
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn write_config(dir: &Path, brokers: &str, topic: &str, http: u16) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("overdued.toml"),
        format!(
            "[calendar]\nperiods = [\"00:00-24:00\"]\nweekdays = [\"mon\",\"tue\",\"wed\",\"thu\",\"fri\",\"sat\",\"sun\"]\n\
             [directory]\nunits = \"units.csv\"\nprocedures = \"procedures.csv\"\n\
             [rules]\nhanging_after_hours = 1\ndue_soon_before_hours = 0.0005\n\
             [kafka]\nbrokers = \"{brokers}\"\ntopic = \"{topic}\"\ngroup_id = \"{topic}.g\"\ndead_letter_topic = \"{topic}.dlq\"\n\
             [http]\nlisten = \"127.0.0.1:{http}\"\n[state]\ndir = \"state\"\n"
        ),
    )
    .unwrap();
    std::fs::write(dir.join("units.csv"), "code,name,level,parent,emails,head_email\nU1,Một,district,,u1@example.vn,\nU2,Hai,commune,U1,u2@example.vn,\n").unwrap();
    std::fs::write(
        dir.join("procedures.csv"),
        "code,name,sector,duration,duration_unit\nP1,Thủ tục,DD,1,working_days\n",
    )
    .unwrap();
}

#[test]
fn python_producer_promtool_and_prometheus() {
    let (Some(brokers), Some(python)) = (
        service("OVERDUED_TEST_KAFKA"),
        service("OVERDUED_TEST_PYTHON"),
    ) else {
        return;
    };
    for tool in ["prometheus", "promtool"] {
        if Command::new(tool).arg("--version").output().is_err() {
            assert!(std::env::var("CI").is_err(), "{tool} missing in CI");
            eprintln!("skipped: {tool} not installed");
            return;
        }
    }
    let suffix = format!(
        "{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_millis()
    );
    let topic = format!("interop.{suffix}");
    let dir = std::env::temp_dir().join(format!("overdued-obs-{suffix}"));
    let http = free_port();
    write_config(&dir, &brokers, &topic, http);

    // An independent client produces: two records due in a second (they become
    // overdue), one due in an hour, and one malformed message.
    let script = r#"
import json, sys, datetime
from kafka import KafkaProducer
brokers, topic = sys.argv[1], sys.argv[2]
p = KafkaProducer(bootstrap_servers=brokers)
now = datetime.datetime.now(datetime.timezone.utc)
def ev(rid, unit, due_s):
    return json.dumps({"event_id": rid + "-1", "record_id": rid, "type": "received",
        "at": now.isoformat(), "unit": unit, "procedure": "P1",
        "due_at": (now + datetime.timedelta(seconds=due_s)).isoformat()}).encode()
p.send(topic, key=b"R1", value=ev("R1", "U1", 1))
p.send(topic, key=b"R2", value=ev("R2", "U2", 1))
p.send(topic, key=b"R3", value=ev("R3", "U1", 3600))
p.send(topic, key=b"R4", value=b"\xff\xfe not json")
p.flush()
"#;
    let st = Command::new(&python)
        .args(["-c", script, &brokers, &topic])
        .status()
        .unwrap();
    assert!(st.success(), "kafka-python producer failed");

    let log = std::fs::File::create(dir.join("daemon.log")).unwrap();
    let _daemon = Kill(
        Command::new(env!("CARGO_BIN_EXE_overdued"))
            .args(["--log-level", "info,librdkafka=warn", "run", "--config"])
            .arg(dir.join("overdued.toml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    wait_for("/readyz", 90, || {
        get(http, "/readyz").is_some_and(|r| r.0 == 200)
    });
    wait_for("two overdue records in /metrics", 30, || {
        get(http, "/metrics").is_some_and(|r| {
            r.1.lines()
                .filter(|l| l.starts_with("overdued_records_overdue{") && l.ends_with(" 1"))
                .count()
                == 2
        })
    });
    let body = get(http, "/metrics").unwrap().1;
    assert!(
        body.contains(r#"overdued_events_rejected_total{reason="invalid_json"} 1"#),
        "{body}"
    );
    let alerts = std::fs::read_to_string(dir.join("state/alerts.ndjson")).unwrap();
    assert!(
        alerts.contains(r#""record_id": "R1", "kind": "overdue", "state": "firing""#),
        "{alerts}"
    );

    // promtool accepts the exposition.
    let mut pt = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    pt.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let out = pt.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // A real Prometheus scrapes it; PromQL sees the two overdue records.
    let pport = free_port();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: overdued\n    static_configs:\n      - targets: ['127.0.0.1:{http}']\n"),
    )
    .unwrap();
    let plog = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let _prom = Kill(
        Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{pport}"))
            .stdout(Stdio::null())
            .stderr(plog)
            .spawn()
            .unwrap(),
    );
    let q = "/api/v1/query?query=sum(overdued_records_overdue)";
    let mut last = String::new();
    wait_for("PromQL sum(overdued_records_overdue) = 2", 60, || {
        let Some((200, body)) = get(pport, q) else {
            return false;
        };
        last = body.clone();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        v["data"]["result"][0]["value"][1] == "2"
    });
    let by_level = "/api/v1/query?query=sum%20by%20(level)(overdued_records_overdue)";
    let (_, body) = get(pport, by_level).unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mut levels: Vec<String> = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{}={}",
                r["metric"]["level"].as_str().unwrap(),
                r["value"][1].as_str().unwrap()
            )
        })
        .collect();
    levels.sort();
    assert_eq!(levels, vec!["commune=1", "district=1"], "{last}");

    // No calendar file: the files cover nothing from 1 January of this year
    // (local), while a record received now is due tomorrow — the alert
    // expression of the ops package holds.
    let year = chrono::Utc::now()
        .with_timezone(&chrono::FixedOffset::east_opt(7 * 3600).unwrap())
        .year();
    let jan1 = chrono::FixedOffset::east_opt(7 * 3600)
        .unwrap()
        .with_ymd_and_hms(year, 1, 1, 0, 0, 0)
        .unwrap()
        .timestamp();
    let metrics = get(http, "/metrics").unwrap().1;
    assert!(
        metrics.contains(&format!(
            "\noverdued_calendar_covered_until_seconds {jan1}\n"
        )),
        "{metrics}"
    );
    let q = "/api/v1/query?query=overdued_calendar_needed_until_seconds%20%3E%20overdued_calendar_covered_until_seconds";
    let (_, r) = get(pport, q).unwrap();
    let v: serde_json::Value = serde_json::from_str(&r).unwrap();
    assert_eq!(v["data"]["result"].as_array().map(Vec::len), Some(1), "{r}");

    // SIGHUP: a broken units.csv is refused and the running configuration stays;
    // a valid one is swapped in, records kept (U2 becomes a district unit).
    let hup = || {
        assert!(Command::new("kill")
            .args(["-HUP", &_daemon.0.id().to_string()])
            .status()
            .unwrap()
            .success())
    };
    let units = dir.join("units.csv");
    let good = std::fs::read_to_string(&units).unwrap();
    std::fs::write(&units, good.replace("U2,Hai,commune", "U2,Hai,village")).unwrap();
    hup();
    wait_for("a refused reload", 20, || {
        get(http, "/metrics").is_some_and(|r| {
            r.1.contains(r#"overdued_config_reloads_total{result="refused"} 1"#)
        })
    });
    assert_eq!(get(http, "/healthz").unwrap().0, 200);
    std::fs::write(
        &units,
        good.replace("U2,Hai,commune", "U2,Hai,district") + "U3,Ba,commune,U1,u3@example.vn,\n",
    )
    .unwrap();
    hup();
    wait_for("a reload", 20, || {
        get(http, "/metrics").is_some_and(|r| {
            r.1.contains(r#"overdued_config_reloads_total{result="ok"} 1"#)
        })
    });
    wait_for("U2 reported as a district unit", 20, || {
        get(http, "/metrics").is_some_and(|r| {
            r.1.contains(r#"overdued_records_overdue{level="district",unit="U2",sector="DD"} 1"#)
        })
    });
    let (_, rec) = get(http, "/api/v1/records/R2").unwrap();
    assert!(
        rec.contains(r#""holder":"U2""#) && rec.contains(r#""level":"district""#),
        "{rec}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
