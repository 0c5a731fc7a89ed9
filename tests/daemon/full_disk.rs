//! A full disk under the state folder (a 1 MiB tmpfs, root only): the daemon
//! stops when it cannot write its alerts, leaving part of a line at the end of
//! `alerts.ndjson`; restarted with space, it cuts the fragment off and writes
//! every transition exactly once — the file equals `replay` of the same events.

use crate::harness::{create_topics, free_port, get, run_daemon, service, wait_for};

use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// A mounted tmpfs, unmounted on drop.
struct Tmpfs(PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn mount_tmpfs(at: &Path, size: &str) -> Option<Tmpfs> {
    std::fs::create_dir_all(at).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(at)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok.then(|| Tmpfs(at.to_path_buf()))
}

/// Fills the filesystem of `dir` but for one page.
fn fill_but_one_page(dir: &Path) -> PathBuf {
    use std::io::Write;
    let filler = dir.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let block = vec![0u8; 4096];
    while f.write_all(&block).is_ok() {}
    let _ = f.sync_all();
    let len = f.metadata().unwrap().len();
    f.set_len(len.saturating_sub(4096)).unwrap();
    filler
}

#[test]
fn a_full_disk_loses_no_transition_and_leaves_no_fragment() {
    let Some(brokers) = service("OVERDUED_TEST_KAFKA") else {
        return;
    };
    let suffix = format!(
        "{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_millis()
    );
    let dir = std::env::temp_dir().join(format!("overdued-full-disk-{suffix}"));
    let state = dir.join("state");
    let Some(_mount) = mount_tmpfs(&state, "1m") else {
        assert!(
            std::env::var("CI").is_err(),
            "CI runs as root: mounting a tmpfs must work"
        );
        eprintln!("skipped: cannot mount a tmpfs (not root)");
        return;
    };
    crate::harness::write_one_unit_directory(&dir);
    let topic = format!("records.full-disk.{suffix}");
    let http = free_port();
    std::fs::write(
        dir.join("overdued.toml"),
        format!(
            r#"
[directory]
units = "units.csv"
procedures = "procedures.csv"
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
    create_topics(
        &brokers,
        &[
            NewTopic::new(&topic, 2, TopicReplication::Fixed(1)),
            NewTopic::new(&format!("{topic}.dlq"), 1, TopicReplication::Fixed(1)),
        ],
    );

    let mut daemon = run_daemon(&dir, "daemon-1.log");
    wait_for("ready", 90, || {
        get(http, "/readyz").is_some_and(|(s, _)| s == 200)
    });
    let filler = fill_but_one_page(&state);

    // 300 records received a month ago, due a week ago: each fires at once
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    let rfc =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let at = rfc(chrono::Utc::now() - chrono::Duration::days(30));
    let due = rfc(chrono::Utc::now() - chrono::Duration::days(7));
    let mut lines = Vec::new();
    for i in 0..300 {
        let id = format!("FD{i:03}");
        let v = format!(
            r#"{{"event_id":"{id}-1","record_id":"{id}","type":"received","at":"{at}","unit":"U1","procedure":"P1","due_at":"{due}"}}"#
        );
        producer
            .send(BaseRecord::to(&topic).key(&id).payload(&v))
            .unwrap();
        lines.push(v);
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    std::fs::write(dir.join("events.ndjson"), lines.join("\n") + "\n").unwrap();

    // it cannot write its alerts: it stops, with an error
    let t = std::time::Instant::now();
    let status = loop {
        if let Some(s) = daemon.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the daemon did not stop on a full disk"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!status.success());
    let log1 = std::fs::read_to_string(dir.join("daemon-1.log")).unwrap();
    assert!(log1.contains("writing alerts"), "{log1}");
    let partial = std::fs::read(state.join("alerts.ndjson")).unwrap_or_default();
    assert!(
        !partial.is_empty() && !partial.ends_with(b"\n"),
        "the full disk should have left part of a line ({} bytes)",
        partial.len()
    );

    // space again: restarted, it repairs the file and writes everything once
    std::fs::remove_file(&filler).unwrap();
    let mut daemon = run_daemon(&dir, "daemon-2.log");
    wait_for("ready again", 120, || {
        get(http, "/readyz").is_some_and(|(s, _)| s == 200)
    });
    std::thread::sleep(Duration::from_secs(2));
    let _ = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status();
    assert!(daemon.wait().unwrap().success());
    let log2 = std::fs::read_to_string(dir.join("daemon-2.log")).unwrap();
    assert!(log2.contains("cut off"), "{log2}");

    let until = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let ok = Command::new(env!("CARGO_BIN_EXE_overdued"))
        .args(["replay", "--config"])
        .arg(dir.join("overdued.toml"))
        .args(["--until", &until, "--alerts"])
        .arg(dir.join("replay-alerts.ndjson"))
        .arg(dir.join("events.ndjson"))
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success());
    let sorted = |p: &Path| {
        let text = std::fs::read_to_string(p).unwrap();
        assert!(
            text.ends_with('\n'),
            "{} ends mid-line ({} bytes, ending {:?})",
            p.display(),
            text.len(),
            &text[text.len().saturating_sub(120)..]
        );
        let mut v: Vec<String> = text.lines().map(str::to_string).collect();
        v.sort();
        v
    };
    let want = sorted(&dir.join("replay-alerts.ndjson"));
    let got = sorted(&state.join("alerts.ndjson"));
    assert!(want.len() >= 300, "{} transitions", want.len());
    assert_eq!(got.len(), want.len(), "daemon vs replay transition count");
    assert!(got == want, "the alerts file differs from replay");
}
