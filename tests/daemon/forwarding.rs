//! Alert transitions forwarded by `overdued run` (`[alertmanager]` and
//! `[[webhook]]`), checked from the other end:
//!
//! * a real Prometheus Alertmanager (Debian's `prometheus-alertmanager`, its
//!   `resolve_timeout` cut to 12 s so that only re-sent alerts stay active)
//!   holds exactly the daemon's firing alerts, each with exactly the labels
//!   `alertname`, `kind`, `unit`, `level`, `sector`, `record_id`, `severity`
//!   (an unrouted record outside the directory gives `level` and `sector`
//!   `unknown`), `startsAt` when it fired; a resolved record's alert leaves it
//!   within seconds; the alerts stay active past the `resolve_timeout`, and
//!   again after a `kill -9` and a restart;
//! * an HTTP receiver in this test checks the HMAC-SHA256 signature, the
//!   timestamp and the batch header of every POST, answers 500 to the first
//!   two (they come again with the same `X-Overdued-Batch` and are accepted,
//!   `result="retry"` is counted), then, refusing everything, sees batches
//!   spooled under `<state>/webhooks/hook/` when the daemon is killed with
//!   SIGKILL; after the restart it receives every transition of the alerts
//!   file (nothing lost, nothing invented, a duplicate only under the same
//!   transition `id`, a firing before its resolution, the first run's
//!   transitions in the file's order), and the spool is empty.
//!
//! Needs the broker and the Python Kafka client of `scripts/test.sh`, and
//! Alertmanager (`prometheus-alertmanager`).

use crate::harness::{create_topics, free_port, get, metric, service, unique_suffix, wait_for};

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use rdkafka::admin::{NewTopic, TopicReplication};
use serde_json::{json, Value};
use sha2::Sha256;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The webhook's HMAC key, given to the daemon as `env:` [`SECRET_ENV`].
const SECRET: &str = "forwarding-test-secret-7f3a";
const SECRET_ENV: &str = "OVERDUED_TEST_WEBHOOK_SECRET";
/// `[[webhook]] name`: the spool folder and the metric label.
const HOOK: &str = "hook";
/// Alertmanager's `resolve_timeout`: an alert not re-sent within it resolves.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(12);
/// `[[webhook]] max_batch`.
const MAX_BATCH: usize = 4;

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// ---------------------------------------------------------------- receiver

/// One POST the receiver answered 500 or 200.
#[derive(Clone, Debug)]
struct Post {
    batch: String,
    status: u16,
    transitions: Vec<Value>,
}

#[derive(Default)]
struct Inbox {
    /// How many more valid POSTs to answer 500.
    refuse_next: usize,
    /// Answer 500 to every POST.
    refuse_all: bool,
    posts: Vec<Post>,
    /// Requests against the contract (bad signature, stale timestamp, batch
    /// header not the body's, wrong path or type): answered 401 or 400.
    faults: Vec<String>,
}

/// A webhook receiver on a loopback port: HTTP/1.1 with keep-alive, one
/// thread per connection, checking every request's signature.
struct Receiver {
    port: u16,
    inbox: Arc<Mutex<Inbox>>,
}

impl Receiver {
    fn start(key: &str, refuse_first: usize) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let inbox = Arc::new(Mutex::new(Inbox {
            refuse_next: refuse_first,
            ..Inbox::default()
        }));
        let (ib, key) = (inbox.clone(), key.to_string());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (ib, key) = (ib.clone(), key.clone());
                std::thread::spawn(move || serve(conn, &key, &ib));
            }
        });
        Receiver { port, inbox }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inbox) -> T) -> T {
        f(&mut self.inbox.lock().unwrap())
    }

    /// The POSTs so far; fails at once on a request against the contract.
    fn posts(&self) -> Vec<Post> {
        let (faults, posts) = self.with(|i| (i.faults.clone(), i.posts.clone()));
        assert!(
            faults.is_empty(),
            "requests against the contract: {faults:?}"
        );
        posts
    }
}

struct Request {
    method: String,
    path: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

fn read_request(r: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut words = line.split_whitespace();
    let (method, path) = (words.next()?.to_string(), words.next()?.to_string());
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
    }
    if headers
        .get("expect")
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
    {
        r.get_mut()
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .ok()?;
    }
    let mut body = Vec::new();
    if headers
        .get("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).ok()?;
            let n = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
            let mut chunk = vec![0; n + 2]; // the chunk and its CRLF
            r.read_exact(&mut chunk).ok()?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(n) = headers.get("content-length") {
        body = vec![0; n.parse().ok()?];
        r.read_exact(&mut body).ok()?;
    }
    Some(Request {
        method,
        path,
        headers,
        body,
    })
}

fn serve(conn: TcpStream, key: &str, inbox: &Mutex<Inbox>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(120)));
    let mut r = BufReader::new(conn);
    while let Some(req) = read_request(&mut r) {
        let status = answer(&req, key, inbox);
        let reason = match status {
            200 => "OK",
            400 => "Bad Request",
            401 => "Unauthorized",
            _ => "Internal Server Error",
        };
        let close = req
            .headers
            .get("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let head = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\n{}\r\n",
            if close { "Connection: close\r\n" } else { "" }
        );
        if r.get_mut().write_all(head.as_bytes()).is_err() || close {
            break;
        }
    }
}

/// Lowercase hex of HMAC-SHA256(`key`, "`timestamp`.`body`").
fn sign(key: &str, timestamp: &str, body: &[u8]) -> String {
    let mut m = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    m.update(timestamp.as_bytes());
    m.update(b".");
    m.update(body);
    m.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A request as the contract has it: (batch id, transitions), or what is wrong
/// and the status to answer.
fn check(req: &Request, key: &str) -> Result<(String, Vec<Value>), (u16, String)> {
    let h = |n: &str| req.headers.get(n).map(String::as_str).unwrap_or("");
    if req.method != "POST" || req.path != "/hook" {
        return Err((400, format!("{} {}", req.method, req.path)));
    }
    if !h("content-type").starts_with("application/json") {
        return Err((400, format!("content-type {:?}", h("content-type"))));
    }
    let ts = h("x-overdued-timestamp");
    let Ok(t) = ts.parse::<i64>() else {
        return Err((401, format!("timestamp {ts:?}")));
    };
    if (Utc::now().timestamp() - t).abs() > 300 {
        return Err((401, format!("timestamp {t} is not now")));
    }
    let want = format!("sha256={}", sign(key, ts, &req.body));
    if h("x-overdued-signature") != want {
        return Err((
            401,
            format!(
                "signature {:?}, expected {want} (timestamp {ts})",
                h("x-overdued-signature")
            ),
        ));
    }
    let v: Value =
        serde_json::from_slice(&req.body).map_err(|e| (400, format!("body is not JSON: {e}")))?;
    let batch = h("x-overdued-batch");
    if batch.is_empty() || v["batch"] != batch || v["source"] != "overdued" {
        return Err((400, format!("batch header {batch:?}, body {v}")));
    }
    match v["transitions"].as_array() {
        Some(t) if !t.is_empty() => Ok((batch.to_string(), t.clone())),
        _ => Err((400, format!("no transitions: {v}"))),
    }
}

fn answer(req: &Request, key: &str, inbox: &Mutex<Inbox>) -> u16 {
    let mut inbox = inbox.lock().unwrap();
    match check(req, key) {
        Err((status, fault)) => {
            inbox.faults.push(fault);
            status
        }
        Ok((batch, transitions)) => {
            let status = if inbox.refuse_all {
                500
            } else if inbox.refuse_next > 0 {
                inbox.refuse_next -= 1;
                500
            } else {
                200
            };
            inbox.posts.push(Post {
                batch,
                status,
                transitions,
            });
            status
        }
    }
}

// ------------------------------------------------------------ alerts file

/// (record_id, kind, state): one transition of the alerts file.
type Key = (String, String, String);

#[derive(Clone, Debug)]
struct Line {
    at: DateTime<Utc>,
    record_id: String,
    kind: String,
    state: String,
    unit: String,
}

impl Line {
    fn key(&self) -> Key {
        (
            self.record_id.clone(),
            self.kind.clone(),
            self.state.clone(),
        )
    }
}

fn time(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("not a time: {v}")))
        .unwrap_or_else(|e| panic!("not RFC 3339: {v}: {e}"))
        .with_timezone(&Utc)
}

fn close_to(a: DateTime<Utc>, b: DateTime<Utc>) -> bool {
    (a - b).num_milliseconds().abs() < 1000
}

/// The daemon's alerts file (every transition, in order).
fn alerts_file(state: &Path) -> Vec<Line> {
    std::fs::read_to_string(state.join("alerts.ndjson"))
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let s = |k: &str| v[k].as_str().unwrap().to_string();
            Line {
                at: time(&v["at"]),
                record_id: s("record_id"),
                kind: s("kind"),
                state: s("state"),
                unit: s("unit"),
            }
        })
        .collect()
}

fn has(lines: &[Line], record: &str, kind: &str, state: &str) -> bool {
    lines
        .iter()
        .any(|l| l.record_id == record && l.kind == kind && l.state == state)
}

/// The alerts firing after the file's transitions: (record, kind) → the line
/// that fired it.
fn firing(lines: &[Line]) -> BTreeMap<(String, String), Line> {
    let mut f = BTreeMap::new();
    for l in lines {
        let k = (l.record_id.clone(), l.kind.clone());
        if l.state == "firing" {
            f.insert(k, l.clone());
        } else {
            f.remove(&k);
        }
    }
    f
}

// ------------------------------------------------------- the test's world

/// What the test produced for a record: its unit, receipt and due time.
struct Rec {
    unit: &'static str,
    received: DateTime<Utc>,
    due: DateTime<Utc>,
}

/// Records at `X9` are outside the directory, without procedure or sector.
fn outside(record: &str) -> bool {
    record.starts_with('X')
}

fn rfc(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A `received` event for `id` (recorded in `recs`): at `ago` before now, due
/// `due_in` from now; at `X9` without procedure, else at U1 with P1.
fn received(
    recs: &mut HashMap<String, Rec>,
    id: &str,
    ago: chrono::Duration,
    due_in: chrono::Duration,
) -> Value {
    let now = Utc::now();
    let rec = Rec {
        unit: if outside(id) { "X9" } else { "U1" },
        received: now - ago,
        due: now + due_in,
    };
    let mut ev = json!({
        "event_id": format!("{id}-r"), "record_id": id, "type": "received",
        "at": rfc(rec.received), "unit": rec.unit, "due_at": rfc(rec.due),
    });
    if !outside(id) {
        ev["procedure"] = json!("P1");
    }
    recs.insert(id.to_string(), rec);
    ev
}

fn resolved(id: &str) -> Value {
    json!({"event_id": format!("{id}-d"), "record_id": id, "type": "resolved", "at": rfc(Utc::now())})
}

/// Produces `events` with the Python client (`kafka-python`), keyed by record.
fn produce(python: &str, brokers: &str, topic: &str, events: &[Value]) {
    let script = r#"
import json, sys
from kafka import KafkaProducer
p = KafkaProducer(bootstrap_servers=sys.argv[1])
for line in sys.stdin:
    ev = json.loads(line)
    p.send(sys.argv[2], key=ev["record_id"].encode(), value=line.strip().encode())
p.flush()
"#;
    let mut child = Command::new(python)
        .args(["-c", script, brokers, topic])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    for ev in events {
        writeln!(input, "{ev}").unwrap();
    }
    drop(input);
    assert!(
        child.wait().unwrap().success(),
        "kafka-python producer failed"
    );
}

/// Exactly the labels of the contract for the alert `line` fired.
fn labels(line: &Line) -> Value {
    let (alertname, severity) = match line.kind.as_str() {
        "hanging" => ("OverduedRecordHanging", "info"),
        "due_soon" => ("OverduedRecordDueSoon", "info"),
        "overdue" => ("OverduedRecordOverdue", "warning"),
        "unrouted" => ("OverduedRecordUnrouted", "warning"),
        k => panic!("unknown kind {k}"),
    };
    let x = outside(&line.record_id);
    json!({
        "alertname": alertname,
        "kind": line.kind,
        "unit": line.unit,
        "level": if x { "unknown" } else { "district" },
        "sector": if x { "unknown" } else { "DD" },
        "record_id": line.record_id,
        "severity": severity,
    })
}

// ------------------------------------------------------------ Alertmanager

fn alertmanager_binary() -> Option<&'static str> {
    ["prometheus-alertmanager", "alertmanager"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

fn start_alertmanager(bin: &str, dir: &Path) -> (Proc, u16) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("alertmanager.yml"),
        format!(
            "global:\n  resolve_timeout: {}s\nroute:\n  receiver: \"null\"\nreceivers:\n  - name: \"null\"\n",
            RESOLVE_TIMEOUT.as_secs()
        ),
    )
    .unwrap();
    let port = free_port();
    let am = Proc(
        Command::new(bin)
            .arg(format!(
                "--config.file={}",
                dir.join("alertmanager.yml").display()
            ))
            .arg(format!("--storage.path={}", dir.join("data").display()))
            .arg("--cluster.listen-address=")
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("alertmanager.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_for("Alertmanager ready", 30, || {
        get(port, "/-/ready").is_some_and(|r| r.0 == 200)
    });
    (am, port)
}

/// The alerts Alertmanager holds active (resolved ones it no longer lists).
fn am_active(port: u16) -> Vec<Value> {
    let Some((200, body)) = get(port, "/api/v2/alerts") else {
        return vec![];
    };
    let v: Vec<Value> = serde_json::from_str(&body).unwrap_or_default();
    v.into_iter()
        .filter(|a| a["status"]["state"] == "active")
        .collect()
}

fn am_keys(alerts: &[Value]) -> Vec<(String, String)> {
    let mut k: Vec<_> = alerts
        .iter()
        .map(|a| {
            let s = |l: &str| a["labels"][l].as_str().unwrap_or("").to_string();
            (s("record_id"), s("kind"))
        })
        .collect();
    k.sort();
    k
}

/// Waits until Alertmanager holds exactly the daemon's firing alerts, then
/// checks each one's labels, annotations and start.
fn am_matches_the_daemon(port: u16, state: &Path, secs: u64) {
    let t = Instant::now();
    loop {
        let want: Vec<_> = firing(&alerts_file(state)).into_keys().collect();
        let got = am_keys(&am_active(port));
        if got == want && !want.is_empty() {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(secs),
            "Alertmanager holds {got:?}, the daemon fires {want:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let fired = firing(&alerts_file(state));
    for a in am_active(port) {
        let k = (
            a["labels"]["record_id"].as_str().unwrap().to_string(),
            a["labels"]["kind"].as_str().unwrap().to_string(),
        );
        let line = &fired[&k];
        assert_eq!(a["labels"], labels(line), "labels of {a}");
        for ann in ["summary", "due_at"] {
            assert!(
                a["annotations"][ann]
                    .as_str()
                    .is_some_and(|s| !s.is_empty()),
                "annotation {ann} of {a}"
            );
        }
        assert!(
            close_to(time(&a["startsAt"]), line.at),
            "startsAt of {a}, fired at {}",
            line.at
        );
    }
}

// ------------------------------------------------------------------ daemon

/// A labelled series of `/metrics`, whatever the labels' order (`-1` when
/// absent).
fn series(body: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    body.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(-1.0)
}

fn metrics(http: u16) -> String {
    get(http, "/metrics").map(|r| r.1).unwrap_or_default()
}

fn deliveries(http: u16, result: &str) -> f64 {
    series(
        &metrics(http),
        "overdued_webhook_deliveries_total",
        &[("webhook", HOOK), ("result", result)],
    )
}

fn write_config(dir: &Path, brokers: &str, topic: &str, http: u16, am: u16, hook: u16) {
    crate::harness::write_one_unit_directory(dir);
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
hanging_after_hours = 1
due_soon_before_hours = 0.0005   # 1.8 s
[kafka]
brokers = "{brokers}"
topic = "{topic}"
group_id = "{topic}.g"
dead_letter_topic = "{topic}.dlq"
session_timeout = "6s"
[http]
listen = "127.0.0.1:{http}"
[state]
dir = "state"
[alertmanager]
url = "http://127.0.0.1:{am}"
resend_interval = "2s"
timeout = "5s"
[[webhook]]
url = "http://127.0.0.1:{hook}/hook"
name = "{HOOK}"
secret = "env:{SECRET_ENV}"
max_batch = {MAX_BATCH}
timeout = "5s"
"#
        ),
    )
    .unwrap();
}

fn start_daemon(dir: &Path) -> Proc {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("daemon.log"))
        .unwrap();
    Proc(
        Command::new(env!("CARGO_BIN_EXE_overdued"))
            .args(["--log-level", "info,librdkafka=warn", "run", "--config"])
            .arg(dir.join("overdued.toml"))
            .current_dir(dir)
            .env(SECRET_ENV, SECRET)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

/// Files in the webhook's spool folder (`failed/` apart).
fn spooled(state: &Path, sub: &str) -> usize {
    std::fs::read_dir(state.join("webhooks").join(HOOK).join(sub))
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .count()
        })
        .unwrap_or(0)
}

/// The transitions the receiver accepted (200), first sight of each, in order.
fn accepted(posts: &[Post]) -> Vec<Key> {
    let mut seen = BTreeSet::new();
    let mut out = vec![];
    for p in posts.iter().filter(|p| p.status == 200) {
        for t in &p.transitions {
            let s = |k: &str| t[k].as_str().unwrap_or("").to_string();
            let k = (s("record_id"), s("kind"), s("state"));
            if seen.insert(k.clone()) {
                out.push(k);
            }
        }
    }
    out
}

/// On a failure: the daemon's log tail, the receiver's view, the spool.
struct Diag<'a> {
    dir: PathBuf,
    rx: &'a Receiver,
}
impl Drop for Diag<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let log = std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(60).collect();
        eprintln!(
            "--- daemon.log (last lines, newest first)\n{}",
            tail.join("\n")
        );
        eprintln!(
            "--- alerts.ndjson\n{}",
            std::fs::read_to_string(self.dir.join("state/alerts.ndjson")).unwrap_or_default()
        );
        let inbox = self.rx.inbox.lock().unwrap_or_else(|e| e.into_inner());
        for p in &inbox.posts {
            eprintln!("--- POST {} -> {}: {:?}", p.batch, p.status, p.transitions);
        }
        eprintln!("--- faults: {:?}", inbox.faults);
    }
}

#[test]
fn transitions_reach_alertmanager_and_a_signed_webhook_retried_and_kept_across_kill_9() {
    let (Some(brokers), Some(python)) = (
        service("OVERDUED_TEST_KAFKA"),
        service("OVERDUED_TEST_PYTHON"),
    ) else {
        return;
    };
    let Some(am_bin) = alertmanager_binary() else {
        assert!(
            std::env::var("CI").is_err(),
            "prometheus-alertmanager missing in CI"
        );
        eprintln!("skipped: prometheus-alertmanager not installed");
        return;
    };
    let suffix = unique_suffix();
    let topic = format!("forward.{suffix}");
    let dir = std::env::temp_dir().join(format!("overdued-forward-{suffix}"));
    let state = dir.join("state");
    // one partition: one stream of transitions, in one order
    create_topics(
        &brokers,
        &[
            NewTopic::new(&topic, 1, TopicReplication::Fixed(1)),
            NewTopic::new(&format!("{topic}.dlq"), 1, TopicReplication::Fixed(1)),
        ],
    );
    let (_am, am) = start_alertmanager(am_bin, &dir.join("alertmanager"));
    let rx = Receiver::start(SECRET, 2);
    let _diag = Diag {
        dir: dir.clone(),
        rx: &rx,
    };
    let http = free_port();
    write_config(&dir, &brokers, &topic, http, am, rx.port);
    let mut recs: HashMap<String, Rec> = HashMap::new();
    let (s, h) = (chrono::Duration::seconds, chrono::Duration::hours);

    // 1. Three records at U1 and one outside the directory (unrouted) due in
    //    4 s, one hanging since an hour ago; the receiver refuses its first
    //    two POSTs.
    let mut daemon = start_daemon(&dir);
    wait_for("/readyz", 120, || {
        get(http, "/readyz").is_some_and(|r| r.0 == 200)
    });
    let mut evs: Vec<Value> = ["A1", "A2", "A3", "X1"]
        .iter()
        .map(|id| received(&mut recs, id, s(0), s(4)))
        .collect();
    evs.push(received(&mut recs, "H1", h(2), h(72)));
    produce(&python, &brokers, &topic, &evs);
    wait_for("the first alerts in the alerts file", 60, || {
        let l = alerts_file(&state);
        ["A1", "A2", "A3", "X1"]
            .iter()
            .all(|r| has(&l, r, "overdue", "firing"))
            && has(&l, "X1", "unrouted", "firing")
            && has(&l, "H1", "hanging", "firing")
    });
    am_matches_the_daemon(am, &state, 30);
    let first_seen_in_am = Instant::now();
    wait_for(
        "overdued_alertmanager_alerts = the firing alerts",
        20,
        || {
            let m = metrics(http);
            metric(&m, "overdued_alertmanager_alerts") == firing(&alerts_file(&state)).len() as f64
                && metric(&m, r#"overdued_alertmanager_posts_total{result="ok"}"#) >= 1.0
        },
    );

    // A1 resolved: its alert leaves Alertmanager at once, long before its
    // last post would time out there (resolve_timeout)
    produce(&python, &brokers, &topic, &[resolved("A1")]);
    wait_for("A1's resolution in the alerts file", 30, || {
        has(&alerts_file(&state), "A1", "overdue", "resolved")
    });
    wait_for("A1 resolved in Alertmanager", 6, || {
        !am_keys(&am_active(am)).iter().any(|(r, _)| r == "A1")
    });
    am_matches_the_daemon(am, &state, 10);

    // the webhook: the two refused POSTs came again and were accepted; the
    // receiver has the alerts file's transitions, in its order
    wait_for(
        "every transition at the receiver, in the alerts file's order",
        60,
        || {
            let keys: Vec<Key> = alerts_file(&state).iter().map(Line::key).collect();
            has(&alerts_file(&state), "A1", "overdue", "resolved") && accepted(&rx.posts()) == keys
        },
    );
    let posts = rx.posts();
    assert_eq!(
        posts.iter().filter(|p| p.status == 500).count(),
        2,
        "{posts:?}"
    );
    wait_for("result=\"retry\" and result=\"sent\" counted", 10, || {
        deliveries(http, "retry") >= 1.0 && deliveries(http, "sent") >= 1.0
    });

    // 2. The receiver refuses everything; A2 is resolved and three more
    //    records go overdue; once batches wait in the spool, kill -9.
    rx.with(|i| i.refuse_all = true);
    let refused_before = posts.iter().filter(|p| p.status == 500).count();
    let mut evs = vec![resolved("A2")];
    for id in ["B1", "B2", "B3"] {
        evs.push(received(&mut recs, id, s(0), s(4)));
    }
    produce(&python, &brokers, &topic, &evs);
    wait_for(
        "B1-B3 overdue and A2 resolved in the alerts file",
        60,
        || {
            let l = alerts_file(&state);
            ["B1", "B2", "B3"]
                .iter()
                .all(|r| has(&l, r, "overdue", "firing"))
                && has(&l, "A2", "overdue", "resolved")
        },
    );
    wait_for("batches spooled and refused", 30, || {
        spooled(&state, "") > 0
            && rx.with(|i| i.posts.iter().filter(|p| p.status == 500).count()) > refused_before
    });
    wait_for("overdued_webhook_backlog > 0", 10, || {
        series(
            &metrics(http),
            "overdued_webhook_backlog",
            &[("webhook", HOOK)],
        ) >= 1.0
    });
    // past the resolve_timeout since the first alerts reached Alertmanager:
    // they are active because they are re-sent
    if let Some(rest) =
        (RESOLVE_TIMEOUT + Duration::from_secs(3)).checked_sub(first_seen_in_am.elapsed())
    {
        std::thread::sleep(rest);
    }
    am_matches_the_daemon(am, &state, 15);
    assert!(
        spooled(&state, "") > 0,
        "the spool emptied while the receiver refuses"
    );
    let _ = daemon.0.kill(); // SIGKILL
    let _ = daemon.0.wait();
    let killed = Instant::now();

    // 3. While it is down, A3 is resolved. The receiver accepts again; the
    //    restarted daemon delivers everything.
    produce(&python, &brokers, &topic, &[resolved("A3")]);
    rx.with(|i| i.refuse_all = false);
    daemon = start_daemon(&dir);
    wait_for("/readyz after the restart", 120, || {
        get(http, "/readyz").is_some_and(|r| r.0 == 200)
    });
    wait_for(
        "every transition of the alerts file at the receiver",
        120,
        || {
            let lines = alerts_file(&state);
            let got: BTreeSet<Key> = accepted(&rx.posts()).into_iter().collect();
            has(&lines, "A3", "overdue", "resolved") && lines.iter().all(|l| got.contains(&l.key()))
        },
    );
    wait_for("an empty spool", 30, || spooled(&state, "") == 0);
    assert_eq!(spooled(&state, "failed"), 0, "batches moved to failed/");
    // Alertmanager has the firing alerts from the restarted daemon: anything
    // the killed one sent has timed out by now
    if let Some(rest) = (RESOLVE_TIMEOUT + Duration::from_secs(3)).checked_sub(killed.elapsed()) {
        std::thread::sleep(rest);
    }
    am_matches_the_daemon(am, &state, 60);
    wait_for("the restarted daemon's forwarding metrics", 20, || {
        let m = metrics(http);
        metric(&m, "overdued_alertmanager_alerts") == firing(&alerts_file(&state)).len() as f64
            && series(&m, "overdued_webhook_backlog", &[("webhook", HOOK)]) == 0.0
            && series(
                &m,
                "overdued_webhook_deliveries_total",
                &[("webhook", HOOK), ("result", "sent")],
            ) >= 1.0
    });
    assert!(deliveries(http, "failed") <= 0.0, "a batch counted failed");

    // 4. What the receiver got, against the alerts file.
    let lines = alerts_file(&state);
    let keys: Vec<Key> = lines.iter().map(Line::key).collect();
    let unique: BTreeSet<&Key> = keys.iter().collect();
    assert_eq!(unique.len(), keys.len(), "a transition twice in the file");
    let by_key: HashMap<Key, &Line> = lines.iter().map(|l| (l.key(), l)).collect();
    let posts = rx.posts(); // and no request against the contract
    let mut ids: HashMap<Key, BTreeSet<String>> = HashMap::new();
    for p in &posts {
        assert!(p.transitions.len() <= MAX_BATCH, "max_batch: {p:?}");
        for t in &p.transitions {
            let s = |k: &str| t[k].as_str().unwrap_or("").to_string();
            let k = (s("record_id"), s("kind"), s("state"));
            let Some(line) = by_key.get(&k) else {
                panic!("{t} is not in the alerts file");
            };
            let id = s("id");
            assert!(
                id.len() == 16
                    && id
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
                "id of {t}"
            );
            ids.entry(k.clone()).or_default().insert(id);
            let rec = &recs[&k.0];
            assert_eq!(s("unit"), line.unit, "{t}");
            assert_eq!(s("unit"), rec.unit, "{t}");
            assert!(close_to(time(&t["at"]), line.at), "at of {t}: {line:?}");
            assert!(close_to(time(&t["due_at"]), rec.due), "due_at of {t}");
            assert!(
                close_to(time(&t["received_at"]), rec.received),
                "received_at of {t}"
            );
            if outside(&k.0) {
                assert_eq!(
                    (s("level"), s("sector")),
                    ("unknown".into(), "unknown".into()),
                    "{t}"
                );
            } else {
                assert_eq!(
                    (s("level"), s("sector"), s("procedure")),
                    ("district".into(), "DD".into(), "P1".into()),
                    "{t}"
                );
            }
        }
    }
    // a transition sent twice keeps its id; two transitions never share one
    for (k, set) in &ids {
        assert_eq!(set.len(), 1, "{k:?} came with ids {set:?}");
    }
    let distinct: BTreeSet<&String> = ids.values().flatten().collect();
    assert_eq!(distinct.len(), ids.len(), "two transitions share an id");
    // every refused batch came again under its batch id, the same
    // transitions, and was accepted
    let tids = |p: &Post| -> Vec<String> {
        p.transitions
            .iter()
            .map(|t| t["id"].as_str().unwrap_or("").to_string())
            .collect()
    };
    let refused: Vec<&Post> = posts.iter().filter(|p| p.status == 500).collect();
    assert!(refused.len() > 2, "{posts:?}");
    for r in refused {
        assert!(
            posts
                .iter()
                .any(|p| p.status == 200 && p.batch == r.batch && tids(p) == tids(r)),
            "batch {} refused, never accepted again: {posts:?}",
            r.batch
        );
    }
    // nothing lost: every transition of the file was accepted, and a
    // resolution never before its firing
    let order = accepted(&posts);
    let pos: HashMap<&Key, usize> = order.iter().enumerate().map(|(i, k)| (k, i)).collect();
    for k in &keys {
        assert!(pos.contains_key(k), "{k:?} never accepted");
        if k.2 == "resolved" {
            let f = (k.0.clone(), k.1.clone(), "firing".to_string());
            assert!(pos[&f] < pos[k], "{k:?} before its firing");
        }
    }
    drop(daemon);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The receiver above: a signature computed as Python's `hmac` does (an
/// independent implementation), a signed POST refused once then accepted on
/// one kept-alive connection, and a tampered body and a stale timestamp
/// counted as faults.
#[test]
fn the_webhook_receiver_checks_signatures_and_refuses_first() {
    assert_eq!(
        sign(
            "0123456789abcdef-key",
            "1700000000",
            br#"{"source":"overdued"}"#
        ),
        "635f0b630b933ff42fc6dc8a13c84ed9a797e473c3ad1426c757d19201ffdf53"
    );
    let rx = Receiver::start(SECRET, 1);
    let mut conn = TcpStream::connect(("127.0.0.1", rx.port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut post = |body: &str, ts: i64, sig: &str| -> u16 {
        write!(
            conn,
            "POST /hook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Overdued-Timestamp: {ts}\r\nX-Overdued-Signature: sha256={sig}\r\nX-Overdued-Batch: b1\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        let mut h = String::new();
        while reader.read_line(&mut h).unwrap() > 2 {
            h.clear();
        }
        status.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    let body = r#"{"source":"overdued","batch":"b1","transitions":[{"id":"0123456789abcdef","record_id":"R1","kind":"overdue","state":"firing"}]}"#;
    let now = Utc::now().timestamp();
    let good = sign(SECRET, &now.to_string(), body.as_bytes());
    assert_eq!(post(body, now, &good), 500);
    assert_eq!(post(body, now, &good), 200);
    assert!(rx.with(|i| i.faults.is_empty()));
    assert_eq!(accepted(&rx.posts()).len(), 1);
    let tampered = body.replace("R1", "R2");
    assert_eq!(post(&tampered, now, &good), 401);
    let old = now - 3600;
    assert_eq!(
        post(body, old, &sign(SECRET, &old.to_string(), body.as_bytes())),
        401
    );
    assert_eq!(rx.with(|i| i.faults.len()), 2);
    assert_eq!(rx.with(|i| i.posts.len()), 2);
}
