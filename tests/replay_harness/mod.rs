//! Shared helpers for the replay integration tests (`tests/examples.rs`,
//! `tests/scenarios.rs`): run the built `overdued` binary, parse its outputs and
//! compare them with expectations written from docs/spec.md.
#![allow(dead_code)]

use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

/// Folder holding the copied spec examples.
pub fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/examples")
}

/// The example configuration (restart policy).
pub fn example_config() -> PathBuf {
    examples_dir().join("config/overdued.toml")
}

/// A fresh, empty directory under the system temp dir.
pub fn unique_dir(tag: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let d = std::env::temp_dir().join(format!(
        "overdued-test-{tag}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&d).expect("create temp dir");
    d
}

/// What one replay produced.
#[derive(Debug)]
pub struct RunOut {
    pub alerts: Vec<String>,
    pub report: Value,
    pub dead_letter: Vec<String>,
    pub stderr: String,
}

/// Runs `overdued replay` with `cwd` as working directory; outputs go to a fresh
/// temp dir. `inputs` are passed verbatim (so `-` reads `stdin`).
pub fn run_replay(
    cwd: &Path,
    config: &Path,
    until: Option<&str>,
    inputs: &[&str],
    stdin: Option<&[u8]>,
) -> RunOut {
    let out = unique_dir("out");
    let (a, r, d) = (
        out.join("alerts.ndjson"),
        out.join("report.json"),
        out.join("dead-letter.ndjson"),
    );
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_overdued"));
    cmd.current_dir(cwd)
        .arg("replay")
        .arg("--config")
        .arg(config);
    if let Some(u) = until {
        cmd.arg("--until").arg(u);
    }
    cmd.arg("--alerts")
        .arg(&a)
        .arg("--report")
        .arg(&r)
        .arg("--dead-letter")
        .arg(&d);
    for i in inputs {
        cmd.arg(i);
    }
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn overdued");
    if let Some(bytes) = stdin {
        let mut w = child.stdin.take().expect("stdin");
        w.write_all(bytes).expect("write stdin");
        drop(w);
    }
    let o = child.wait_with_output().expect("wait overdued");
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(
        o.status.success(),
        "overdued replay failed: {:?}\n{stderr}",
        o.status
    );
    let read =
        |p: &Path| std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let lines = |s: String| -> Vec<String> {
        s.lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect()
    };
    let report: Value = serde_json::from_str(&read(&r)).expect("report is JSON");
    let res = RunOut {
        alerts: lines(read(&a)),
        report,
        dead_letter: lines(read(&d)),
        stderr,
    };
    let _ = std::fs::remove_dir_all(&out);
    res
}

/// An RFC 3339 time as Unix seconds (any offset).
pub fn instant(s: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("bad RFC 3339 time {s:?}: {e}"))
        .timestamp()
}

/// One alert transition, with `at` normalised to an instant.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Alert {
    pub at: i64,
    pub record_id: String,
    pub kind: String,
    pub state: String,
    pub unit: String,
}

impl std::fmt::Display for Alert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = chrono::DateTime::from_timestamp(self.at, 0)
            .map(|d| {
                d.with_timezone(&chrono::FixedOffset::east_opt(7 * 3600).unwrap())
                    .to_rfc3339()
            })
            .unwrap_or_default();
        write!(
            f,
            "{t} {} {} {} {}",
            self.record_id, self.kind, self.state, self.unit
        )
    }
}

/// Parses one `--alerts` line; the object must have exactly the spec's five keys.
pub fn parse_alert(line: &str) -> Alert {
    let v: Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("alert line {line:?}: {e}"));
    let o = v
        .as_object()
        .unwrap_or_else(|| panic!("alert line not an object: {line}"));
    let mut keys: Vec<&str> = o.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        ["at", "kind", "record_id", "state", "unit"],
        "alert line keys: {line}"
    );
    let s = |k: &str| {
        o[k].as_str()
            .unwrap_or_else(|| panic!("{k} not a string in {line}"))
            .to_string()
    };
    Alert {
        at: instant(&s("at")),
        record_id: s("record_id"),
        kind: s("kind"),
        state: s("state"),
        unit: s("unit"),
    }
}

/// Builds an expected alert.
pub fn al(at: &str, record_id: &str, kind: &str, state: &str, unit: &str) -> Alert {
    Alert {
        at: instant(at),
        record_id: record_id.into(),
        kind: kind.into(),
        state: state.into(),
        unit: unit.into(),
    }
}

/// Builds an expected alert from Unix seconds.
pub fn al_secs(at: i64, record_id: &str, kind: &str, state: &str, unit: &str) -> Alert {
    Alert {
        at,
        record_id: record_id.into(),
        kind: kind.into(),
        state: state.into(),
        unit: unit.into(),
    }
}

fn show(v: &[Alert]) -> String {
    v.iter().map(|a| format!("  {a}\n")).collect()
}

/// Alert lines equal as a multiset.
pub fn assert_alerts_multiset(got: &[String], expected: &[Alert], ctx: &str) {
    let got: Vec<Alert> = got.iter().map(|l| parse_alert(l)).collect();
    let mut g = got.clone();
    let mut e = expected.to_vec();
    g.sort();
    e.sort();
    assert!(
        g == e,
        "{ctx}: alert lines differ (as a multiset)\nexpected:\n{}got:\n{}",
        show(expected),
        show(&got)
    );
}

/// Alert lines in the spec's order: the sequence of (at, record_id) groups must be
/// exactly the expected one (transitions happen in time order; timers at one
/// instant fire by record_id); inside one group (same instant, same record) the
/// lines are compared as a multiset, since the spec does not order e.g. the
/// "resolve for the old unit / fire for the new unit" lines of one event.
pub fn assert_alerts_spec_order(got: &[String], expected: &[Alert], ctx: &str) {
    let got_a: Vec<Alert> = got.iter().map(|l| parse_alert(l)).collect();
    let groups = |v: &[Alert]| -> Vec<((i64, String), Vec<Alert>)> {
        let mut out: Vec<((i64, String), Vec<Alert>)> = Vec::new();
        for a in v {
            let k = (a.at, a.record_id.clone());
            match out.last_mut() {
                Some((lk, items)) if *lk == k => items.push(a.clone()),
                _ => out.push((k, vec![a.clone()])),
            }
        }
        for (_, items) in out.iter_mut() {
            items.sort();
        }
        out
    };
    assert!(
        groups(&got_a) == groups(expected),
        "{ctx}: alert lines differ (ordered by instant and record, multiset within one instant and record)\nexpected:\n{}got:\n{}",
        show(expected),
        show(&got_a)
    );
}

/// Alert lines exactly in this order.
pub fn assert_alerts_exact(got: &[String], expected: &[Alert], ctx: &str) {
    let got_a: Vec<Alert> = got.iter().map(|l| parse_alert(l)).collect();
    assert!(
        got_a == expected,
        "{ctx}: alert lines differ (exact order)\nexpected:\n{}got:\n{}",
        show(expected),
        show(&got_a)
    );
}

/// Report equality: `as_of` compared as an instant, the rest as JSON values.
/// The contract's counts of a report: `total`, `by_level`, `by_unit` and
/// `by_sector` with the nine count keys of each row. What a report adds for
/// readers (rates, names, the threshold flag, `as_of_local`, `by_area`, the
/// use counts of `by_unit`, units that only held late records) is checked by
/// the tests about it, not against the examples.
pub fn counts_only(v: &Value) -> Value {
    const KEYS: [&str; 9] = COUNT_KEYS;
    let row = |r: &Value| -> Value {
        Value::Object(
            KEYS.iter()
                .filter_map(|k| Some((k.to_string(), r.get(*k)?.clone())))
                .collect(),
        )
    };
    let zero = |r: &Value| KEYS.iter().all(|k| r.get(*k).is_none_or(|x| x == 0));
    let mut out = serde_json::Map::new();
    if let Some(t) = v.get("total") {
        out.insert("total".into(), row(t));
    }
    for g in ["by_level", "by_unit", "by_sector"] {
        if let Some(m) = v.get(g).and_then(Value::as_object) {
            let rows = m
                .iter()
                .filter(|(_, r)| !zero(r))
                .map(|(k, r)| (k.clone(), row(r)))
                .collect();
            out.insert(g.into(), Value::Object(rows));
        }
    }
    Value::Object(out)
}

pub fn assert_report(got: &Value, expected: &Value, ctx: &str) {
    let strip = |v: &Value| -> (i64, Value) {
        let mut v = v.clone();
        let o = v
            .as_object_mut()
            .unwrap_or_else(|| panic!("{ctx}: report is not an object"));
        let as_of = o
            .remove("as_of")
            .and_then(|a| a.as_str().map(instant))
            .unwrap_or_else(|| panic!("{ctx}: report has no as_of string"));
        (as_of, v)
    };
    let (ga, gv) = strip(got);
    let (ea, ev) = strip(expected);
    let gv = counts_only(&gv);
    let ev = counts_only(&ev);
    assert_eq!(
        ga, ea,
        "{ctx}: report as_of differs: got {}, expected {}",
        got["as_of"], expected["as_of"]
    );
    assert!(
        gv == ev,
        "{ctx}: report differs\nexpected:\n{}\ngot:\n{}",
        serde_json::to_string_pretty(&ev).unwrap(),
        serde_json::to_string_pretty(&gv).unwrap()
    );
}

/// Dead-letter lines equal (parsed JSON, in order).
pub fn assert_dead_letter(got: &[String], expected: &[Value], ctx: &str) {
    let g: Vec<Value> = got
        .iter()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("{ctx}: dead-letter line {l:?}: {e}"))
        })
        .collect();
    assert!(
        g == expected,
        "{ctx}: dead-letter lines differ\nexpected:\n{}\ngot:\n{}",
        expected
            .iter()
            .map(|v| v.to_string() + "\n")
            .collect::<String>(),
        got.join("\n")
    );
}

/// One expected dead-letter line.
pub fn dl(file: &str, line: u64, reason: &str, raw: &str) -> Value {
    serde_json::json!({"file": file, "line": line, "reason": reason, "raw": raw})
}

/// Report categories of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cat {
    Early,
    OnTime,
    Late,
    Within,
    Overdue,
    Paused,
    Rejected,
    Withdrawn,
}

/// The nine count keys of a report row, in the spec's order.
pub const COUNT_KEYS: [&str; 9] = [
    "received",
    "early",
    "on_time",
    "late",
    "in_progress_within",
    "in_progress_overdue",
    "paused",
    "rejected",
    "withdrawn",
];

fn cat_key(c: Cat) -> &'static str {
    match c {
        Cat::Early => "early",
        Cat::OnTime => "on_time",
        Cat::Late => "late",
        Cat::Within => "in_progress_within",
        Cat::Overdue => "in_progress_overdue",
        Cat::Paused => "paused",
        Cat::Rejected => "rejected",
        Cat::Withdrawn => "withdrawn",
    }
}

/// Level of a unit of the example directory (`None`: not in the directory).
pub fn level_of(unit: &str) -> Option<&'static str> {
    match unit {
        "HCC" | "STNMT" => Some("province"),
        "BTM" | "BTM.VPDK" | "BTM.TCKH" | "QS" | "QS.VPDK" => Some("district"),
        "TRAGIAC" | "QUEXUAN" => Some("commune"),
        _ => None,
    }
}

fn zero_counts() -> BTreeMap<&'static str, u64> {
    COUNT_KEYS.iter().map(|k| (*k, 0)).collect()
}

/// The expected `--report` for records given as (receiving unit, sector, category).
/// Records received by a unit missing from the directory are left out of `by_level`
/// (the spec gives such a unit no level); use [`assert_report_unknown_level`].
pub fn expected_report(as_of: &str, records: &[(&str, &str, Cat)]) -> Value {
    type Group = BTreeMap<String, BTreeMap<&'static str, u64>>;
    let mut total = zero_counts();
    let (mut by_level, mut by_unit, mut by_sector): (Group, Group, Group) = Default::default();
    for (unit, sector, cat) in records {
        let bump = |m: &mut BTreeMap<&'static str, u64>| {
            *m.get_mut("received").unwrap() += 1;
            *m.get_mut(cat_key(*cat)).unwrap() += 1;
        };
        bump(&mut total);
        if let Some(l) = level_of(unit) {
            bump(by_level.entry(l.to_string()).or_insert_with(zero_counts));
        }
        bump(by_unit.entry(unit.to_string()).or_insert_with(zero_counts));
        bump(
            by_sector
                .entry(sector.to_string())
                .or_insert_with(zero_counts),
        );
    }
    serde_json::json!({
        "as_of": as_of,
        "total": total,
        "by_level": by_level,
        "by_unit": by_unit,
        "by_sector": by_sector,
    })
}

/// Like [`assert_report`] for a stream where some receiving unit is missing from
/// the directory: `by_level` entries of known levels must match; whatever the
/// implementation does with the unknown unit's level, the sum over `by_level` must
/// equal `total` (every record counted once).
pub fn assert_report_unknown_level(got: &Value, expected: &Value, ctx: &str) {
    let mut g = got.clone();
    let mut e = expected.clone();
    let gl = g
        .as_object_mut()
        .unwrap()
        .remove("by_level")
        .unwrap_or(Value::Null);
    let el = e
        .as_object_mut()
        .unwrap()
        .remove("by_level")
        .unwrap_or(Value::Null);
    assert_report(&g, &e, ctx);
    let gl = gl
        .as_object()
        .cloned()
        .unwrap_or_else(|| panic!("{ctx}: by_level not an object"));
    let el = el.as_object().cloned().unwrap_or_default();
    let counts = |v: &Value| counts_only(&serde_json::json!({ "total": v }))["total"].clone();
    for (k, v) in &el {
        assert_eq!(
            gl.get(k).map(counts),
            Some(counts(v)),
            "{ctx}: by_level.{k}"
        );
    }
    let mut sum = zero_counts();
    for v in gl.values() {
        for k in COUNT_KEYS {
            *sum.get_mut(k).unwrap() += v[k]
                .as_u64()
                .unwrap_or_else(|| panic!("{ctx}: by_level count {k}"));
        }
    }
    assert_eq!(
        serde_json::to_value(&sum).unwrap(),
        counts(&got["total"]),
        "{ctx}: by_level does not sum to total"
    );
}
