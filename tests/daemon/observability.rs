//! The daemon seen from outside: events produced by an independent Kafka client
//! (Python `kafka-python`), `/metrics` validated by `promtool check metrics`, and a
//! real Prometheus that loads the ops package's rules (`deploy/prometheus/rules.yml`),
//! scrapes the daemon fed a known stream and answers PromQL: the 30-day late
//! rates by unit and area, the hanging counts, an alert firing and one pending.
//! Every metric the rules and the Grafana dashboard name is declared in
//! `/metrics` from start-up.
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

/// PromQL over Prometheus's HTTP API: the result vector.
fn query(pport: u16, q: &str) -> Vec<serde_json::Value> {
    let enc: String = q
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let Some((200, body)) = get(pport, &format!("/api/v1/query?query={enc}")) else {
        return vec![];
    };
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// `label=value` of each sample, sorted (`value` rounded by the query).
fn samples(v: &[serde_json::Value], label: &str) -> Vec<String> {
    let mut s: Vec<String> = v
        .iter()
        .map(|r| {
            format!(
                "{}={}",
                r["metric"][label].as_str().unwrap_or(""),
                r["value"][1].as_str().unwrap_or("")
            )
        })
        .collect();
    s.sort();
    s
}

/// Produces closed records: at U1 `late` late and `early` early ones, at U2
/// `u2_early` early ones, and `junk` malformed messages.
#[allow(clippy::too_many_arguments)]
fn closures(
    python: &str,
    brokers: &str,
    topic: &str,
    tag: &str,
    late: u32,
    early: u32,
    u2_early: u32,
    junk: u32,
) {
    let script = r#"
import json, sys, datetime
from kafka import KafkaProducer
brokers, topic, tag = sys.argv[1], sys.argv[2], sys.argv[3]
late, early, u2_early, junk = map(int, sys.argv[4:8])
p = KafkaProducer(bootstrap_servers=brokers)
now = datetime.datetime.now(datetime.timezone.utc)
def iso(d): return (now + datetime.timedelta(days=d)).isoformat()
def closed(rid, unit, received, due, resolved):
    p.send(topic, key=rid.encode(), value=json.dumps({"event_id": rid + "-r", "record_id": rid,
        "type": "received", "at": iso(received), "unit": unit, "procedure": "P1", "due_at": iso(due)}).encode())
    p.send(topic, key=rid.encode(), value=json.dumps({"event_id": rid + "-d", "record_id": rid,
        "type": "resolved", "at": iso(resolved)}).encode())
for i in range(late): closed(f"L{tag}{i}", "U1", -5, -3, -0.001)
for i in range(early): closed(f"E{tag}{i}", "U1", -0.01, 3, -0.001)
for i in range(u2_early): closed(f"F{tag}{i}", "U2", -0.01, 3, -0.001)
for i in range(junk): p.send(topic, key=b"J", value=b"{not json")
p.flush()
"#;
    let n = |x: u32| x.to_string();
    let st = Command::new(python)
        .args(["-c", script, brokers, topic, tag])
        .args([n(late), n(early), n(u2_early), n(junk)])
        .status()
        .unwrap();
    assert!(st.success(), "kafka-python producer failed");
}

/// Metric names in rules or dashboard text: `overdued_*` and `process_*`
/// tokens that are not part of a recording rule's name (`a:overdued_b:c`),
/// and the recording rules (`a:b:c`) it reads.
fn names_in(text: &str) -> (Vec<String>, Vec<String>) {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let (mut metrics, mut records) = (vec![], vec![]);
    for tok in text.split(|c: char| !word(c)) {
        if tok.matches(':').count() == 2 {
            records.push(tok.to_string());
        } else if !tok.contains(':')
            && (tok.starts_with("overdued_") || tok.starts_with("process_"))
        {
            metrics.push(tok.to_string());
        }
    }
    for v in [&mut metrics, &mut records] {
        v.sort();
        v.dedup();
    }
    (metrics, records)
}

/// Every metric the ops package's rules and dashboard name is a family of
/// the daemon's first `/metrics` answer, and every recording rule the
/// dashboard reads is one of `rules.yml`.
fn names_are_exported(metrics: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let rules = std::fs::read_to_string(root.join("deploy/prometheus/rules.yml")).unwrap();
    let dashboard = std::fs::read_to_string(root.join("deploy/grafana/overdued.json")).unwrap();
    let families: Vec<&str> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    let known = |m: &str| {
        families.contains(&m)
            || ["_bucket", "_sum", "_count"]
                .iter()
                .any(|s| m.strip_suffix(s).is_some_and(|b| families.contains(&b)))
    };
    let (rule_metrics, defined) = names_in(&rules);
    let (dash_metrics, read) = names_in(&dashboard);
    assert!(rule_metrics.len() >= 8 && dash_metrics.len() >= 20 && !read.is_empty());
    for m in rule_metrics.iter().chain(&dash_metrics) {
        assert!(
            known(m),
            "{m} (rules or dashboard) is not in /metrics:\n{metrics}"
        );
    }
    for r in &read {
        assert!(
            defined.contains(r),
            "the dashboard reads {r}, which rules.yml does not record"
        );
    }
}

/// After Prometheus has scraped the first closed records: more closures and
/// a burst of malformed messages; the recording rules give U1 (3 late of 8
/// since the first scrape) a late rate of 0.375, over the daemon's 30 %
/// threshold, and its area the same; U2 and its commune level 0.
fn rates_hanging_and_alerts(pport: u16, http: u16, python: &str, brokers: &str, topic: &str) {
    wait_for("Prometheus has the first judged series", 60, || {
        query(pport, "count(overdued_records_judged_total)")
            .first()
            .is_some_and(|r| r["value"][1] == "3")
    });
    closures(python, brokers, topic, "b", 3, 5, 3, 150);
    wait_for("the daemon has counted the second closures", 60, || {
        get(http, "/metrics").is_some_and(|r| {
            r.1.contains(r#"overdued_records_judged_total{level="district",unit="U1",sector="DD",timeliness="late"} 4"#)
                && r.1.contains(r#"overdued_records_judged_total{level="commune",unit="U2",sector="DD",timeliness="early"} 4"#)
                && r.1.contains(r#"overdued_events_rejected_total{reason="invalid_json"} 151"#)
        })
    });
    let mut last = vec![];
    wait_for("the unit late rates 0.375 and 0", 60, || {
        last = samples(
            &query(
                pport,
                "round(level_unit:overdued_records_late:ratio30d, 0.001)",
            ),
            "unit",
        );
        last == ["U1=0.375", "U2=0"]
    });
    wait_for("the area late rates", 30, || {
        last = samples(
            &query(
                pport,
                r#"round(level_area:overdued_records_late:ratio30d{area="U1"}, 0.001)"#,
            ),
            "level",
        );
        last == ["commune=0", "district=0.375"]
    });
    assert_eq!(
        samples(
            &query(
                pport,
                "round(level_unit:overdued_records_on_time:ratio30d, 0.001)"
            ),
            "unit"
        ),
        ["U1=0.625", "U2=1"]
    );
    assert_eq!(
        samples(
            &query(pport, "sum by (unit) (overdued_records_hanging)"),
            "unit"
        ),
        ["U1=2", "U2=0"]
    );
    // 150 dead letters in a minute fire the spike alert; U1's rate over the
    // threshold is pending (it must hold for an hour)
    let mut alerts = String::new();
    wait_for(
        "OverduedDeadLetterSpike firing, OverduedUnitLateRateHigh pending",
        60,
        || {
            let Some((200, body)) = get(pport, "/api/v1/alerts") else {
                return false;
            };
            alerts = body;
            let v: serde_json::Value = serde_json::from_str(&alerts).unwrap_or_default();
            let list = v["data"]["alerts"].as_array().cloned().unwrap_or_default();
            let has = |name: &str, state: &str, unit: Option<&str>| {
                list.iter().any(|a| {
                    a["labels"]["alertname"] == name
                        && a["state"] == state
                        && unit.is_none_or(|u| a["labels"]["unit"] == u)
                })
            };
            has("OverduedDeadLetterSpike", "firing", None)
                && has("OverduedUnitLateRateHigh", "pending", Some("U1"))
                && !has("OverduedUnitLateRateHigh", "pending", Some("U2"))
        },
    );
}

fn write_config(dir: &Path, brokers: &str, topic: &str, http: u16) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("overdued.toml"),
        format!(
            "[calendar]\nperiods = [\"00:00-24:00\"]\nweekdays = [\"mon\",\"tue\",\"wed\",\"thu\",\"fri\",\"sat\",\"sun\"]\n\
             [directory]\nunits = \"units.csv\"\nprocedures = \"procedures.csv\"\n\
             [rules]\nhanging_after_hours = 1\ndue_soon_before_hours = 0.0005\n\
             [report]\nlate_threshold_percent = 30\narea_level = \"district\"\n\
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
# two records received two hours ago with nothing since: hanging at U1
for rid in ["H1", "H2"]:
    p.send(topic, key=rid.encode(), value=json.dumps({"event_id": rid + "-1", "record_id": rid,
        "type": "received", "at": (now - datetime.timedelta(hours=2)).isoformat(), "unit": "U1",
        "procedure": "P1", "due_at": (now + datetime.timedelta(days=3)).isoformat()}).encode())
p.flush()
"#;
    let st = Command::new(&python)
        .args(["-c", script, &brokers, &topic])
        .status()
        .unwrap();
    assert!(st.success(), "kafka-python producer failed");
    // one closed record per judged series before Prometheus first scrapes
    // (`increase` starts from a series' first sample), the rest after it
    closures(&python, &brokers, &topic, "a", 1, 1, 1, 0);

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
    // every family the rules and the dashboard name, from the first answer
    let mut first = None;
    wait_for("/metrics", 60, || {
        first = get(http, "/metrics").filter(|r| r.0 == 200);
        first.is_some()
    });
    names_are_exported(&first.unwrap().1);
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
    // the ops package's rules, with the rates group evaluated every second
    // instead of every minute
    let rules = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus/rules.yml"),
    )
    .unwrap();
    assert!(
        rules.contains("    interval: 1m\n"),
        "the rates group's interval"
    );
    std::fs::write(
        dir.join("rules.yml"),
        rules.replace("    interval: 1m\n", "    interval: 1s\n"),
    )
    .unwrap();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [rules.yml]\nscrape_configs:\n  - job_name: overdued\n    static_configs:\n      - targets: ['127.0.0.1:{http}']\n"),
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
    rates_hanging_and_alerts(pport, http, &python, &brokers, &topic);

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
