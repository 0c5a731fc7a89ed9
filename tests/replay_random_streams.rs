//! Property test of the replay engine on random streams (library API, no binary).
//!
//! Streams mix valid-looking events of all 11 types over 5 record ids (random
//! times, units including unknown ones, procedures including unknown ones, random
//! optional fields, duplicate event ids), lines known to be invalid (random text,
//! random bytes, truncated events, events over 64 KiB) and blank lines. The seed
//! is fixed, so the test is deterministic.
//!
//! Invariants (docs/spec.md §2, §4, §6):
//! * no panic, no I/O error;
//! * every non-blank line is applied, ignored or rejected; the dead-letter output
//!   has exactly one line per rejected line, in input order, naming the input and
//!   the 1-based line number within it, with a known reason and the raw line;
//!   every line known to be invalid is among them;
//! * a rejected line never moves the clock: `as_of` is the largest `at` of the
//!   lines that were not rejected (or `--until`, which is never earlier here);
//! * for each (record, kind) the alert transitions alternate firing / resolved,
//!   starting with firing, and a resolution names the unit of the firing it ends;
//!   `unrouted` only ever names units missing from the directory; `due_soon` and
//!   `overdue` are never both left firing for a record after one step; only
//!   records opened by an accepted `received` / `snapshot` have alerts;
//! * when the valid events are in time order, the alert file is in time order;
//! * report: every count group is complete; in each group `received` equals the
//!   sum of the eight categories; by_level, by_unit and by_sector each sum to total;
//! * determinism: the same input gives byte-identical outputs, and splitting it
//!   into two inputs (two files) changes nothing but dead-letter names and numbers.

use overdued::config::Config;
use overdued::replay::{Outputs, Replay, Summary};
use overdued::source::replay::LineReader;
use overdued::time::parse_rfc3339;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config as PtConfig, RngSeed};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Cursor;
use std::path::Path;
use std::sync::OnceLock;

const RECORDS: [&str; 5] = ["R1", "R2", "R3", "R4", "R5"];
const TYPES: [&str; 12] = [
    "received",
    "forwarded",
    "advanced",
    "paused",
    "resumed",
    "extended",
    "resolved",
    "returned",
    "rejected",
    "withdrawn",
    "snapshot",
    "teleported",
];
const KNOWN_UNITS: [&str; 9] = [
    "HCC", "STNMT", "BTM", "BTM.VPDK", "BTM.TCKH", "QS", "QS.VPDK", "TRAGIAC", "QUEXUAN",
];
const UNITS: [&str; 11] = [
    "HCC", "STNMT", "BTM", "BTM.VPDK", "BTM.TCKH", "QS", "QS.VPDK", "TRAGIAC", "QUEXUAN", "NOPE",
    "XYZ",
];
const PROCEDURES: [&str; 7] = [
    "1.004227", "1.001009", "2.000908", "1.003003", "1.005461", "2.001157", "0.000000",
];
const SECTORS: [&str; 4] = ["DD", "KD", "HT", "ZZ"];
const REASONS: [&str; 4] = ["supplement", "financial", "other", "vacation"];
const CHANNELS: [&str; 4] = ["in_person", "online", "postal", "fax"];
const DL_REASONS: [&str; 10] = [
    "too_large",
    "invalid_json",
    "missing_field",
    "invalid_field",
    "unknown_type",
    "bad_time",
    "due_before_received",
    "unknown_record",
    "duplicate_record",
    "unknown_procedure",
];
use replay_harness::COUNT_KEYS;

/// 2024-01-01T00:00:00+07:00 in Unix seconds.
const Y2024: i64 = 1_704_042_000;
const DAY: i64 = 86_400;

fn config() -> &'static Config {
    static CFG: OnceLock<Config> = OnceLock::new();
    CFG.get_or_init(|| {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/examples/config/overdued.toml");
        Config::load(&p).expect("example config loads")
    })
}

/// Formats Unix seconds as RFC 3339 with one of a few offsets.
fn fmt_time(secs: i64, style: u8) -> String {
    let dt = chrono::DateTime::from_timestamp(secs, 0).expect("time in range");
    let off = |h: i32| chrono::FixedOffset::east_opt(h * 3600).unwrap();
    match style % 5 {
        0 | 1 => dt.with_timezone(&off(7)).to_rfc3339(),
        2 => dt.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        3 => dt.with_timezone(&off(0)).to_rfc3339(),
        _ => dt.with_timezone(&off(-5)).to_rfc3339(),
    }
}

/// One generated event (rendered to JSON later).
#[derive(Debug, Clone)]
struct Ev {
    rec: usize,
    /// Record index when a case uses more than 5 records.
    rec_hi: u16,
    ty: usize,
    /// Seconds after the stream's window start.
    dt: i64,
    style: u8,
    unit: Option<usize>,
    procedure: Option<usize>,
    sector: Option<usize>,
    channel: Option<usize>,
    /// due_at relative to `at`, seconds (may be negative).
    due: Option<i64>,
    reason: Option<usize>,
    received_at: Option<i64>,
    holder_since: Option<i64>,
    paused: Option<bool>,
    /// Event id: unique (None) or from a small pool.
    id: Option<u8>,
    /// Drop the `at` field (missing_field).
    no_at: bool,
    /// Write `at` without offset (bad_time).
    naive_at: bool,
}

fn ev_strategy() -> impl Strategy<Value = Ev> {
    // Types weighted so that records get opened often.
    let ty = prop_oneof![
        4 => Just(0usize),
        2 => Just(10usize),
        10 => 1usize..10,
        1 => Just(11usize),
    ];
    (
        (0usize..5, ty, 0i64..(25 * DAY), any::<u8>(), any::<u16>()),
        (
            proptest::option::weighted(0.9, 0usize..UNITS.len()),
            proptest::option::weighted(0.9, 0usize..PROCEDURES.len()),
            proptest::option::weighted(0.15, 0usize..SECTORS.len()),
            proptest::option::weighted(0.1, 0usize..CHANNELS.len()),
        ),
        (
            proptest::option::weighted(0.3, -2 * DAY..(20 * DAY)),
            proptest::option::weighted(0.9, 0usize..REASONS.len()),
            proptest::option::weighted(0.5, -(20 * DAY)..DAY),
            proptest::option::weighted(0.5, -(10 * DAY)..DAY),
            proptest::option::weighted(0.3, any::<bool>()),
        ),
        (
            proptest::option::weighted(0.15, 0u8..6),
            proptest::bool::weighted(0.02),
            proptest::bool::weighted(0.02),
        ),
    )
        .prop_map(
            |(
                (rec, ty, dt, style, rec_hi),
                (unit, procedure, sector, channel),
                (due, reason, received_at, holder_since, paused),
                (id, no_at, naive_at),
            )| Ev {
                rec,
                rec_hi,
                ty,
                // Minute granularity, sometimes exactly on a working-period bound.
                dt: if style % 3 == 0 {
                    (dt / 1800) * 1800
                } else {
                    (dt / 60) * 60
                },
                style,
                unit,
                procedure,
                sector,
                channel,
                due,
                reason,
                received_at,
                holder_since,
                paused,
                id,
                no_at,
                naive_at,
            },
        )
}

/// One input line.
#[derive(Debug, Clone)]
enum Gen {
    Event(Ev),
    /// Printable text that cannot be a valid event.
    Text(String),
    /// Random bytes (no line terminators) that cannot be a valid event.
    Bytes(Vec<u8>),
    /// A valid-looking event cut short: never a complete JSON object.
    Truncated(Ev, usize),
    /// An event padded with spaces to over 64 KiB.
    Huge(Ev),
    Blank(String),
}

fn gen_strategy() -> impl Strategy<Value = Gen> {
    prop_oneof![
        30 => ev_strategy().prop_map(Gen::Event),
        2 => "[ -~]{0,60}"
            .prop_filter("not an event", |s| !s.contains("event_id") && !s.trim().is_empty())
            .prop_map(Gen::Text),
        1 => proptest::collection::vec(any::<u8>(), 1..80)
            .prop_map(|v| v.into_iter().filter(|b| *b != b'\n' && *b != b'\r').collect::<Vec<u8>>())
            .prop_filter("not blank, not an event", |v: &Vec<u8>| {
                !v.iter().all(|b| b.is_ascii_whitespace())
                    && !String::from_utf8_lossy(v).contains("event_id")
            })
            .prop_map(Gen::Bytes),
        1 => (ev_strategy(), any::<usize>()).prop_map(|(e, n)| Gen::Truncated(e, n)),
        1 => ev_strategy().prop_map(Gen::Huge),
        1 => prop_oneof![Just(String::new()), Just("   ".to_string()), Just("\t".to_string())]
            .prop_map(Gen::Blank),
    ]
}

/// A whole case: window start, lines, whether to sort events by time, --until.
#[derive(Debug, Clone)]
struct Case {
    start: i64,
    lines: Vec<Gen>,
    sorted: bool,
    until_extra: Option<i64>,
    split: usize,
    /// A few events far from 2024 (calendar-table bounds).
    extreme: bool,
    /// Record ids used (5 = R1..R5).
    records: usize,
    /// Times are spread over `25 days * stretch`.
    stretch: i64,
}

fn case_strategy() -> impl Strategy<Value = Case> {
    (
        0i64..340,
        proptest::collection::vec(gen_strategy(), 0..70),
        any::<bool>(),
        proptest::option::of(0i64..(30 * DAY)),
        any::<usize>(),
        proptest::bool::weighted(0.05),
    )
        .prop_map(|(day, lines, sorted, until_extra, split, extreme)| Case {
            start: Y2024 + day * DAY,
            lines,
            sorted,
            until_extra,
            split,
            extreme,
            records: 5,
            stretch: 1,
        })
}

/// The instant (Unix seconds) of an event line.
fn ev_at(case: &Case, e: &Ev) -> i64 {
    if case.extreme && e.style % 7 == 0 {
        // Somewhere between 1971 and 2194.
        31_536_000 + ((e.dt as i128 * 2_654_435_761) % (7_100_000_000 - 31_536_000)) as i64
    } else {
        case.start + e.dt * case.stretch
    }
}

fn record_id(case: &Case, e: &Ev) -> String {
    if case.records == RECORDS.len() {
        RECORDS[e.rec].to_string()
    } else {
        format!("R{}", e.rec_hi as usize % case.records)
    }
}

fn render(case: &Case, e: &Ev, idx: usize) -> String {
    let at = ev_at(case, e);
    let mut m = Map::new();
    let id = match e.id {
        Some(p) => format!("p{p}"),
        None => format!("u{idx}"),
    };
    m.insert("event_id".into(), json!(id));
    m.insert("record_id".into(), json!(record_id(case, e)));
    m.insert("type".into(), json!(TYPES[e.ty]));
    if !e.no_at {
        let s = if e.naive_at {
            fmt_time(at, 3)[..19].to_string()
        } else {
            fmt_time(at, e.style)
        };
        m.insert("at".into(), json!(s));
    }
    if let Some(u) = e.unit {
        m.insert("unit".into(), json!(UNITS[u]));
    }
    if let Some(p) = e.procedure {
        m.insert("procedure".into(), json!(PROCEDURES[p]));
    }
    if let Some(s) = e.sector {
        m.insert("sector".into(), json!(SECTORS[s]));
    }
    if let Some(c) = e.channel {
        m.insert("channel".into(), json!(CHANNELS[c]));
    }
    let ty = TYPES[e.ty];
    // due_at: always on `extended`, sometimes on received / snapshot / others.
    let due = match (ty, e.due) {
        ("extended", None) => Some(DAY * 3 + e.dt % (5 * DAY) - DAY),
        (_, d) => d,
    };
    if let Some(d) = due {
        m.insert(
            "due_at".into(),
            json!(fmt_time(at + d, e.style.wrapping_add(1))),
        );
    }
    if let Some(r) = e.reason {
        if ty == "paused" || ty == "resumed" || e.style % 4 == 0 {
            m.insert("reason".into(), json!(REASONS[r]));
        }
    }
    if ty == "snapshot" || e.style % 8 == 0 {
        if let Some(r) = e.received_at {
            m.insert("received_at".into(), json!(fmt_time(at + r, e.style)));
        }
        if let Some(h) = e.holder_since {
            m.insert("holder_since".into(), json!(fmt_time(at + h, e.style)));
        }
        if let Some(p) = e.paused {
            m.insert("paused".into(), json!(p));
        }
    }
    Value::Object(m).to_string()
}

/// A rendered case.
struct Input {
    /// Raw lines (without terminator).
    lines: Vec<Vec<u8>>,
    /// Line indexes (0-based) known to be invalid.
    must_reject: BTreeSet<usize>,
    /// Instant (seconds) of each event line that has a parseable `at`.
    at: HashMap<usize, i64>,
    /// Record of each event line that may open a record (received / snapshot).
    opener: HashMap<usize, String>,
    blank: BTreeSet<usize>,
}

fn build(case: &Case) -> Input {
    let mut gens: Vec<Gen> = case.lines.clone();
    if case.sorted {
        // Sort the events by instant, keeping the other lines where they are.
        let slots: Vec<usize> = gens
            .iter()
            .enumerate()
            .filter(|(_, g)| matches!(g, Gen::Event(_)))
            .map(|(i, _)| i)
            .collect();
        let mut evs: Vec<Gen> = slots.iter().map(|i| gens[*i].clone()).collect();
        evs.sort_by_key(|g| match g {
            Gen::Event(e) => ev_at(case, e),
            _ => 0,
        });
        for (slot, g) in slots.into_iter().zip(evs) {
            gens[slot] = g;
        }
    }
    let mut inp = Input {
        lines: Vec::new(),
        must_reject: BTreeSet::new(),
        at: HashMap::new(),
        opener: HashMap::new(),
        blank: BTreeSet::new(),
    };
    for (i, g) in gens.iter().enumerate() {
        let line: Vec<u8> = match g {
            Gen::Event(e) => {
                if !e.no_at && !e.naive_at {
                    inp.at.insert(i, ev_at(case, e));
                }
                if TYPES[e.ty] == "received" || TYPES[e.ty] == "snapshot" {
                    inp.opener.insert(i, record_id(case, e));
                }
                if e.no_at || e.naive_at || e.ty == 11 {
                    inp.must_reject.insert(i);
                }
                render(case, e, i).into_bytes()
            }
            Gen::Text(s) => {
                inp.must_reject.insert(i);
                s.clone().into_bytes()
            }
            Gen::Bytes(b) => {
                inp.must_reject.insert(i);
                b.clone()
            }
            Gen::Truncated(e, n) => {
                let full = render(case, e, i);
                let cut = 1 + n % (full.len() - 1);
                let s = full[..cut].to_string();
                if s.trim().is_empty() {
                    inp.blank.insert(i);
                } else {
                    inp.must_reject.insert(i);
                }
                s.into_bytes()
            }
            Gen::Huge(e) => {
                let mut s = render(case, e, i);
                s.pop(); // '}'
                while s.len() < 65_537 + (e.dt as usize % 100) {
                    s.push(' ');
                }
                s.push('}');
                inp.must_reject.insert(i);
                s.into_bytes()
            }
            Gen::Blank(s) => {
                inp.blank.insert(i);
                s.clone().into_bytes()
            }
        };
        inp.lines.push(line);
    }
    inp
}

struct Run {
    alerts: Vec<u8>,
    dead: Vec<u8>,
    report: Value,
    summary: Summary,
}

/// Replays `parts` (name, lines) in order through the library.
fn run(parts: &[(&str, &[Vec<u8>])], until: Option<&str>) -> Run {
    let cfg = config();
    let mut alerts: Vec<u8> = Vec::new();
    let mut dead: Vec<u8> = Vec::new();
    let (report, summary) = {
        let mut r = Replay::new(
            &cfg.engine,
            Outputs {
                alerts: Some(&mut alerts),
                dead_letter: Some(&mut dead),
                on_transition: None,
            },
        );
        for (name, lines) in parts {
            let mut bytes = Vec::new();
            for l in lines.iter() {
                bytes.extend_from_slice(l);
                bytes.push(b'\n');
            }
            let mut reader = LineReader::new(Box::new(Cursor::new(bytes)));
            r.feed_reader(name, &mut reader).expect("feed");
        }
        let until = until.map(|u| parse_rfc3339(u).expect("until parses"));
        let rep = r.finish(until).expect("finish");
        (rep, r.summary.clone())
    };
    let report: Value = serde_json::from_str(&report.to_json()).expect("report JSON");
    Run {
        alerts,
        dead,
        report,
        summary,
    }
}

fn instant(s: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("bad time {s:?}: {e}"))
        .timestamp()
}

fn check_report(rep: &Value) -> Result<(), TestCaseError> {
    let counts = |v: &Value, ctx: &str| -> Result<[u64; 9], TestCaseError> {
        let o = v
            .as_object()
            .ok_or_else(|| TestCaseError::fail(format!("{ctx}: not an object")))?;
        // the nine counts, then what readers get: rates, the flag, by_unit's
        // use counts and name
        const READER: [&str; 9] = [
            "on_time_rate",
            "late_rate",
            "over_threshold",
            "name",
            "late_held",
            "extensions",
            "extensions_after_due",
            "late_supplement_requests",
            "repeated_pauses",
        ];
        for k in o.keys() {
            prop_assert!(
                COUNT_KEYS.contains(&k.as_str()) || READER.contains(&k.as_str()),
                "{}: unexpected key {}",
                ctx,
                k
            );
        }
        let mut c = [0u64; 9];
        for (i, k) in COUNT_KEYS.iter().enumerate() {
            c[i] = o
                .get(*k)
                .and_then(Value::as_u64)
                .ok_or_else(|| TestCaseError::fail(format!("{ctx}: {k} missing")))?;
        }
        prop_assert_eq!(
            c[0],
            c[1..].iter().sum::<u64>(),
            "{}: received != sum of categories {:?}",
            ctx,
            c
        );
        // rates: percent of judged (early + on_time + late), two decimals
        let judged = c[1] + c[2] + c[3];
        let want = |n: u64| {
            (judged > 0).then(|| (100.0 * n as f64 / judged as f64 * 100.0).round() / 100.0)
        };
        prop_assert_eq!(o["late_rate"].as_f64(), want(c[3]), "{}: late_rate", ctx);
        prop_assert_eq!(
            o["on_time_rate"].as_f64(),
            want(c[1] + c[2]),
            "{}: on_time_rate",
            ctx
        );
        Ok(c)
    };
    let total = counts(&rep["total"], "total")?;
    for g in ["by_level", "by_unit", "by_sector"] {
        let o = rep[g]
            .as_object()
            .ok_or_else(|| TestCaseError::fail(format!("{g} not an object")))?;
        let mut sum = [0u64; 9];
        for (k, v) in o {
            let c = counts(v, &format!("{g}.{k}"))?;
            for i in 0..9 {
                sum[i] += c[i];
            }
        }
        prop_assert_eq!(sum, total, "{} does not sum to total", g);
    }
    for (k, _) in rep["by_level"].as_object().unwrap() {
        prop_assert!(
            ["province", "district", "commune", "unknown"].contains(&k.as_str()),
            "unexpected level {}",
            k
        );
    }
    Ok(())
}

fn check(case: &Case) -> Result<(), TestCaseError> {
    let inp = build(case);
    let max_at = inp.at.values().copied().max();
    let until = match (case.until_extra, max_at) {
        (Some(x), Some(m)) => Some(fmt_time(m + x, 0)),
        (Some(x), None) => Some(fmt_time(case.start + x, 0)),
        _ => None,
    };
    let name = "fuzz.ndjson";
    let r = run(&[(name, &inp.lines)], until.as_deref());

    // Line accounting.
    let non_blank = inp
        .lines
        .iter()
        .filter(|l| !l.iter().all(|b| b.is_ascii_whitespace()))
        .count() as u64;
    let s = &r.summary;
    prop_assert_eq!(s.lines, non_blank);
    prop_assert_eq!(s.applied + s.ignored + s.rejected_total(), s.lines);

    // Dead letters.
    let dead_text = String::from_utf8(r.dead.clone()).expect("dead letter is UTF-8");
    let dead: Vec<Value> = dead_text
        .lines()
        .map(|l| serde_json::from_str(l).expect("dead-letter line is JSON"))
        .collect();
    prop_assert_eq!(dead.len() as u64, s.rejected_total());
    let mut rejected = BTreeSet::new();
    let mut last = 0u64;
    for d in &dead {
        prop_assert_eq!(d["file"].as_str(), Some(name));
        let n = d["line"].as_u64().expect("line number");
        prop_assert!(
            n > last,
            "dead-letter lines out of order: {} after {}",
            n,
            last
        );
        last = n;
        prop_assert!(n >= 1 && n as usize <= inp.lines.len());
        let idx = n as usize - 1;
        prop_assert!(!inp.blank.contains(&idx), "blank line {} dead-lettered", n);
        let reason = d["reason"].as_str().unwrap_or("");
        prop_assert!(DL_REASONS.contains(&reason), "reason {:?}", reason);
        let raw = String::from_utf8_lossy(&inp.lines[idx]).to_string();
        prop_assert_eq!(d["raw"].as_str(), Some(raw.as_str()), "raw of line {}", n);
        if inp.lines[idx].len() > 65_536 {
            prop_assert_eq!(reason, "too_large");
        }
        rejected.insert(idx);
    }
    for i in &inp.must_reject {
        prop_assert!(
            rejected.contains(i),
            "invalid line {} not dead-lettered: {:?}",
            i + 1,
            String::from_utf8_lossy(&inp.lines[*i])
        );
    }

    // The clock: largest `at` of the lines that were not rejected, or --until.
    let accepted_max = inp
        .at
        .iter()
        .filter(|(i, _)| !rejected.contains(i))
        .map(|(_, t)| *t)
        .max();
    let as_of = instant(r.report["as_of"].as_str().expect("as_of"));
    match (&until, accepted_max) {
        (Some(u), _) => prop_assert_eq!(as_of, instant(u)),
        (None, Some(m)) => prop_assert_eq!(as_of, m, "as_of is not the largest accepted at"),
        (None, None) => {}
    }

    // Alerts.
    let alert_text = String::from_utf8(r.alerts.clone()).expect("alerts are UTF-8");
    let alerts: Vec<Value> = alert_text
        .lines()
        .map(|l| serde_json::from_str(l).expect("alert line is JSON"))
        .collect();
    prop_assert_eq!(alerts.len() as u64, s.transitions);
    let opened: BTreeSet<&str> = inp
        .opener
        .iter()
        .filter(|(i, _)| !rejected.contains(i))
        .map(|(_, r)| r.as_str())
        .collect();
    // (record, kind) -> unit of the firing alert
    let mut firing: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut last_fire: BTreeMap<(String, String), i64> = BTreeMap::new();
    let mut prev_at = i64::MIN;
    let mut prev_key: Option<(String, i64)> = None;
    let both = |firing: &BTreeMap<(String, String), String>, rec: &str| {
        firing.contains_key(&(rec.to_string(), "due_soon".to_string()))
            && firing.contains_key(&(rec.to_string(), "overdue".to_string()))
    };
    for a in &alerts {
        let o = a.as_object().expect("alert object");
        prop_assert_eq!(o.len(), 5);
        let at = instant(a["at"].as_str().expect("at"));
        let rec = a["record_id"].as_str().expect("record_id").to_string();
        let kind = a["kind"].as_str().expect("kind").to_string();
        let state = a["state"].as_str().expect("state");
        let unit = a["unit"].as_str().expect("unit").to_string();
        prop_assert!(
            ["unrouted", "hanging", "due_soon", "overdue"].contains(&kind.as_str()),
            "kind {}",
            kind
        );
        prop_assert!(
            opened.contains(rec.as_str()),
            "alert for a record never opened: {}",
            rec
        );
        if kind == "unrouted" {
            prop_assert!(
                !KNOWN_UNITS.contains(&unit.as_str()),
                "unrouted for known unit {}",
                unit
            );
        }
        // One step = consecutive lines of one record at one instant.
        if let Some((pr, pa)) = &prev_key {
            if *pr != rec || *pa != at {
                prop_assert!(
                    !both(&firing, pr),
                    "{} left with due_soon and overdue firing at {}",
                    pr,
                    pa
                );
            }
        }
        prev_key = Some((rec.clone(), at));
        if case.sorted {
            prop_assert!(
                at >= prev_at,
                "alerts out of time order (events sorted): {}",
                a
            );
        }
        prev_at = prev_at.max(at);
        let key = (rec.clone(), kind.clone());
        match state {
            "firing" => {
                prop_assert!(
                    !firing.contains_key(&key),
                    "{:?} fired twice without resolving",
                    key
                );
                firing.insert(key.clone(), unit);
                last_fire.insert(key, at);
            }
            "resolved" => {
                let u = firing.remove(&key);
                prop_assert!(u.is_some(), "{:?} resolved while not firing", key);
                prop_assert_eq!(u.unwrap(), unit, "resolution names another unit: {}", a);
                if case.sorted {
                    prop_assert!(at >= last_fire[&key], "resolved before it fired: {}", a);
                }
            }
            other => prop_assert!(false, "state {}", other),
        }
    }
    if let Some((pr, pa)) = &prev_key {
        prop_assert!(
            !both(&firing, pr),
            "{} left with due_soon and overdue firing at {}",
            pr,
            pa
        );
    }

    // Report.
    check_report(&r.report)?;
    let total_received = r.report["total"]["received"].as_u64().unwrap();
    prop_assert!(total_received as usize <= inp.opener.len());
    if !opened.is_empty() {
        prop_assert!(total_received >= 1);
    }

    // Determinism.
    let r2 = run(&[(name, &inp.lines)], until.as_deref());
    prop_assert!(
        r2.alerts == r.alerts,
        "alerts differ between two identical runs"
    );
    prop_assert!(
        r2.dead == r.dead,
        "dead letters differ between two identical runs"
    );
    prop_assert_eq!(&r2.report, &r.report);

    // Two inputs instead of one: same alerts and report; dead letters renamed and
    // renumbered.
    let k = if inp.lines.is_empty() {
        0
    } else {
        case.split % (inp.lines.len() + 1)
    };
    let (a, b) = inp.lines.split_at(k);
    let r3 = run(&[("a.ndjson", a), ("b.ndjson", b)], until.as_deref());
    prop_assert!(
        r3.alerts == r.alerts,
        "alerts change when the input is split in two files"
    );
    prop_assert_eq!(&r3.report, &r.report);
    let dead3: Vec<Value> = String::from_utf8(r3.dead)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    prop_assert_eq!(dead3.len(), dead.len());
    for (d1, d3) in dead.iter().zip(&dead3) {
        let n = d1["line"].as_u64().unwrap() as usize;
        let (f, m) = if n <= k {
            ("a.ndjson", n)
        } else {
            ("b.ndjson", n - k)
        };
        prop_assert_eq!(d3["file"].as_str(), Some(f));
        prop_assert_eq!(d3["line"].as_u64(), Some(m as u64));
        prop_assert_eq!(&d3["reason"], &d1["reason"]);
        prop_assert_eq!(&d3["raw"], &d1["raw"]);
    }
    Ok(())
}

/// Deterministic by default; `OVERDUED_FUZZ_SEED` / `OVERDUED_FUZZ_CASES` explore
/// further (e.g. `OVERDUED_FUZZ_SEED=42 OVERDUED_FUZZ_CASES=100000`).
fn pt_env_config(cases: u32, seed: u64) -> PtConfig {
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    pt_config(
        env("OVERDUED_FUZZ_CASES")
            .map(|c| c as u32)
            .unwrap_or(cases),
        env("OVERDUED_FUZZ_SEED").unwrap_or(seed),
    )
}

fn pt_config(cases: u32, seed: u64) -> PtConfig {
    PtConfig {
        cases,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        max_shrink_iters: 4096,
        ..PtConfig::default()
    }
}

proptest! {
    #![proptest_config(pt_env_config(1500, 0x6f76_6572_6475_6564))]

    #[test]
    fn random_streams_keep_the_invariants(case in case_strategy()) {
        check(&case)?;
    }
}

proptest! {
    #![proptest_config(pt_env_config(500, 0x5eed_0002))]

    /// Sorted streams only (time-order invariants always checked).
    #[test]
    fn sorted_streams_keep_time_order(mut case in case_strategy()) {
        case.sorted = true;
        check(&case)?;
    }
}

/// A larger stream: many events on the 5 records over a whole year.
#[test]
fn one_long_stream() {
    let mut runner = proptest::test_runner::TestRunner::new(pt_config(1, 7));
    let strat = proptest::collection::vec(gen_strategy(), 3000..3001);
    let lines = strat.new_tree(&mut runner).unwrap().current();
    for (start, sorted) in [(Y2024, true), (Y2024 + 200 * DAY, false)] {
        let case = Case {
            start,
            lines: lines.clone(),
            sorted,
            until_extra: Some(60 * DAY),
            split: 1234,
            extreme: false,
            records: 300,
            stretch: 12,
        };
        check(&case).unwrap();
        // The generator is not degenerate: the stream exercises the engine.
        let inp = build(&case);
        let r = run(
            &[("long.ndjson", &inp.lines)],
            Some(&fmt_time(start + 400 * DAY, 0)),
        );
        let s = &r.summary;
        assert!(
            s.applied > 300,
            "applied {} ignored {} rejected {:?} lines {}",
            s.applied,
            s.ignored,
            s.rejected,
            s.lines
        );
        assert!(s.ignored > 10, "ignored {}", s.ignored);
        let reasons = s.rejected.iter().filter(|n| **n > 0).count();
        assert!(reasons >= 7, "rejection reasons seen: {:?}", s.rejected);
        let text = String::from_utf8(r.alerts).unwrap();
        for kind in ["unrouted", "hanging", "due_soon", "overdue"] {
            for state in ["firing", "resolved"] {
                let pat = format!("\"kind\": \"{kind}\", \"state\": \"{state}\"");
                assert!(
                    text.contains(&pat),
                    "no {kind} {state} transition in the long stream"
                );
            }
        }
        let total = &r.report["total"];
        for k in ["received", "early", "late", "rejected", "withdrawn"] {
            assert!(total[k].as_u64().unwrap() > 0, "no {k} in report: {total}");
        }
    }
}

/// The short random cases are not degenerate either (aggregate over 200 cases).
#[test]
fn short_cases_exercise_the_engine() {
    let mut runner = proptest::test_runner::TestRunner::new(pt_config(1, 11));
    let strat = case_strategy();
    let (mut lines, mut applied, mut ignored, mut rejected, mut with_alerts) =
        (0u64, 0u64, 0u64, 0u64, 0u32);
    let mut kinds = BTreeSet::new();
    for _ in 0..200 {
        let case = strat.new_tree(&mut runner).unwrap().current();
        let inp = build(&case);
        let r = run(
            &[("x", &inp.lines)],
            Some(&fmt_time(case.start + 60 * DAY, 0)),
        );
        lines += r.summary.lines;
        applied += r.summary.applied;
        ignored += r.summary.ignored;
        rejected += r.summary.rejected_total();
        if !r.alerts.is_empty() {
            with_alerts += 1;
        }
        for l in String::from_utf8(r.alerts).unwrap().lines() {
            let v: Value = serde_json::from_str(l).unwrap();
            kinds.insert(format!(
                "{} {}",
                v["kind"].as_str().unwrap(),
                v["state"].as_str().unwrap()
            ));
        }
    }
    eprintln!("lines {lines} applied {applied} ignored {ignored} rejected {rejected}; cases with alerts {with_alerts}/200; {kinds:?}");
    assert!(
        applied * 4 >= lines,
        "too few applied events: {applied} of {lines}"
    );
    assert!(with_alerts >= 100, "only {with_alerts} cases with alerts");
    assert_eq!(kinds.len(), 8, "{kinds:?}");
}

// ---------------------------------------------------------------------------
// An independent, naive oracle for the deadline arithmetic (§3.1-§3.3, §4)
// ---------------------------------------------------------------------------

mod replay_harness;

mod oracle {
    use chrono::{Datelike, NaiveDate, Weekday};
    use std::collections::HashSet;

    /// Local offset (Asia/Ho_Chi_Minh has no DST).
    pub const TZ: i64 = 7 * 3600;
    const PERIODS: [(i64, i64); 2] = [(7 * 3600, 11 * 3600 + 1800), (13 * 3600 + 1800, 17 * 3600)];

    pub struct Cal {
        holidays: HashSet<NaiveDate>,
        makeup: HashSet<NaiveDate>,
    }

    fn dates_of(line: &str) -> Vec<NaiveDate> {
        line.split('"')
            .filter_map(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
            .collect()
    }

    impl Cal {
        /// Reads the example calendar files (holidays / makeup_days lines).
        pub fn load() -> Cal {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/examples/config/calendar");
            let mut c = Cal {
                holidays: HashSet::new(),
                makeup: HashSet::new(),
            };
            for f in ["vn-2024.toml", "vn-2025.toml"] {
                let text = std::fs::read_to_string(dir.join(f)).unwrap();
                for line in text.lines() {
                    let l = line.trim_start();
                    if l.starts_with("holidays") {
                        c.holidays.extend(dates_of(l));
                    } else if l.starts_with("makeup_days") {
                        c.makeup.extend(dates_of(l));
                    }
                }
            }
            assert!(c.holidays.len() >= 20 && c.makeup.len() == 2);
            c
        }

        pub fn is_working_day(&self, d: NaiveDate) -> bool {
            if self.makeup.contains(&d) {
                return true;
            }
            !self.holidays.contains(&d) && !matches!(d.weekday(), Weekday::Sat | Weekday::Sun)
        }

        pub fn date_of(t: i64) -> NaiveDate {
            let days = (t + TZ).div_euclid(86_400);
            NaiveDate::from_ymd_opt(1970, 1, 1).unwrap() + chrono::Days::new(days as u64)
        }

        fn day_start(d: NaiveDate) -> i64 {
            let days = (d - NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()).num_days();
            days * 86_400 - TZ
        }

        pub fn cob(d: NaiveDate) -> i64 {
            Self::day_start(d) + 17 * 3600
        }

        /// Earliest instant at which the working time since `t` reaches `h` s.
        pub fn forward(&self, t: i64, h: i64) -> i64 {
            if h == 0 {
                return t;
            }
            let mut rem = h;
            let mut d = Self::date_of(t);
            loop {
                if self.is_working_day(d) {
                    for (s, e) in PERIODS {
                        let (s, e) = (Self::day_start(d) + s, Self::day_start(d) + e);
                        let st = s.max(t);
                        if st < e {
                            if e - st >= rem {
                                return st + rem;
                            }
                            rem -= e - st;
                        }
                    }
                }
                d = d.succ_opt().unwrap();
            }
        }

        /// Latest instant from which the working time left until `due` is `h` s.
        pub fn backward(&self, due: i64, h: i64) -> i64 {
            if h == 0 {
                return due;
            }
            let mut rem = h;
            let mut d = Self::date_of(due);
            loop {
                if self.is_working_day(d) {
                    for (s, e) in PERIODS.iter().rev() {
                        let (s, e) = (Self::day_start(d) + s, Self::day_start(d) + e);
                        let en = e.min(due);
                        if s < en {
                            if en - s >= rem {
                                return en - rem;
                            }
                            rem -= en - s;
                        }
                    }
                }
                d = d.pred_opt().unwrap();
            }
        }

        /// Due time of a receipt at `at` (§3.2).
        pub fn due(&self, at: i64, n: i64, unit: &str) -> i64 {
            match unit {
                "working_days" => {
                    let mut d = Self::date_of(at);
                    let mut k = 0;
                    while k < n {
                        d = d.succ_opt().unwrap();
                        if self.is_working_day(d) {
                            k += 1;
                        }
                    }
                    Self::cob(d)
                }
                "working_hours" => self.forward(at, n * 3600),
                "calendar_days" => {
                    let mut d = Self::date_of(at) + chrono::Days::new(n as u64);
                    while !self.is_working_day(d) {
                        d = d.succ_opt().unwrap();
                    }
                    Self::cob(d)
                }
                other => panic!("duration unit {other}"),
            }
        }
    }
}

/// (code, sector, n, unit) of the example catalogue.
const CATALOGUE: [(&str, &str, i64, &str); 6] = [
    ("1.004227", "DD", 10, "working_days"),
    ("1.001009", "KD", 3, "working_days"),
    ("2.000908", "CT", 4, "working_hours"),
    ("1.003003", "HT", 1, "working_days"),
    ("1.005461", "XD", 15, "calendar_days"),
    ("2.001157", "MT", 25, "working_days"),
];

/// One record of an oracle case: received; maybe paused (and maybe resumed);
/// maybe resolved while running.
#[derive(Debug, Clone)]
struct OracleRec {
    /// Receipt, minutes after 2024-01-01 00:00 local.
    t0_min: i64,
    proc_: usize,
    unit: usize,
    sector: Option<usize>,
    /// due_at = receipt + this many minutes.
    due_at_min: Option<i64>,
    /// (paused this many minutes after the receipt, reason, resumed this many
    /// minutes after the pause).
    pause: Option<(i64, usize, Option<i64>)>,
    /// resolved this many minutes after the last start (receipt or resume); only
    /// when the record is running.
    resolve_after_min: Option<i64>,
}

fn oracle_rec() -> impl Strategy<Value = OracleRec> {
    (
        // Up to 2025-11-30, so every due time stays inside the 2024-2025 calendar.
        0i64..(680 * 24 * 60),
        0usize..CATALOGUE.len(),
        0usize..UNITS.len(),
        proptest::option::weighted(0.2, 0usize..3),
        proptest::option::weighted(0.2, 0i64..(15 * 24 * 60)),
        proptest::option::weighted(
            0.4,
            (
                0i64..(8 * 24 * 60),
                0usize..3,
                proptest::option::weighted(0.85, 0i64..(6 * 24 * 60)),
            ),
        ),
        proptest::option::weighted(0.6, 0i64..(40 * 24 * 60)),
        any::<(bool, bool)>(),
    )
        .prop_map(
            |(t0, proc_, unit, sector, due_at, pause, resolve, (round, round2))| OracleRec {
                // Many times fall on a half hour (period bounds are on half hours).
                t0_min: if round { t0 / 30 * 30 } else { t0 },
                proc_,
                unit,
                sector,
                due_at_min: due_at,
                pause: pause.map(|(a, r, b)| {
                    if round2 {
                        (a / 30 * 30, r, b.map(|b| b / 30 * 30))
                    } else {
                        (a, r, b)
                    }
                }),
                resolve_after_min: resolve,
            },
        )
}

/// Working time between two instants (seconds), by the naive calendar.
fn working_between(cal: &oracle::Cal, a: i64, b: i64) -> i64 {
    // Binary search on forward(): the largest h with forward(a, h) <= b.
    if b <= a {
        return 0;
    }
    let (mut lo, mut hi) = (0i64, (b - a) + 1);
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if cal.forward(a, mid) <= b {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

fn oracle_check(recs: &[OracleRec], until_extra_min: i64) {
    use replay_harness::{
        al_secs, assert_alerts_multiset, assert_report_unknown_level, expected_report, Alert, Cat,
    };
    thread_local! {
        static CAL: oracle::Cal = oracle::Cal::load();
    }
    const REASON: [&str; 3] = ["supplement", "financial", "other"];
    // Event instants of each record: t0, pause, resume, resolve.
    struct Times {
        t0: i64,
        tp: Option<i64>,
        tr: Option<i64>,
        t1: Option<i64>,
    }
    let times: Vec<Times> = recs
        .iter()
        .map(|r| {
            let t0 = Y2024 + r.t0_min * 60;
            let tp = r.pause.map(|(a, _, _)| t0 + a * 60);
            let tr = r
                .pause
                .and_then(|(_, _, b)| b.map(|b| tp.unwrap() + b * 60));
            let running_from = match (tp, tr) {
                (None, _) => Some(t0),
                (Some(_), Some(tr)) => Some(tr),
                (Some(_), None) => None,
            };
            let t1 = running_from.and_then(|s| r.resolve_after_min.map(|m| s + m * 60));
            Times { t0, tp, tr, t1 }
        })
        .collect();
    let max_t = times
        .iter()
        .map(|t| t.t1.or(t.tr).or(t.tp).unwrap_or(t.t0))
        .max()
        .unwrap();
    let until = max_t + until_extra_min * 60;

    let mut lines: Vec<(i64, usize, String)> = Vec::new();
    let mut expected: Vec<Alert> = Vec::new();
    let mut records: Vec<(String, String, Cat)> = Vec::new();
    CAL.with(|cal| {
        for (i, (r, t)) in recs.iter().zip(&times).enumerate() {
            let id = format!("Q{i:02}");
            let (code, cat_sector, n, dunit) = CATALOGUE[r.proc_];
            let sector = r
                .sector
                .map(|s| ["DD", "KD", "HT"][s])
                .unwrap_or(cat_sector);
            let unit = UNITS[r.unit];
            let known = KNOWN_UNITS.contains(&unit);
            let thr = if unit == "TRAGIAC" {
                12
            } else if sector == "DD" {
                4
            } else {
                8
            } * 3600;

            // Events (sorted by instant, then by their order within the record).
            let mut ev = json!({"event_id": "r", "record_id": id, "type": "received",
                "at": fmt_time(t.t0, (i % 5) as u8), "unit": unit, "procedure": code});
            if let Some(s) = r.sector {
                ev["sector"] = json!(["DD", "KD", "HT"][s]);
            }
            let due0 = match r.due_at_min {
                Some(m) => {
                    ev["due_at"] = json!(fmt_time(t.t0 + m * 60, 0));
                    t.t0 + m * 60
                }
                None => cal.due(t.t0, n, dunit),
            };
            lines.push((t.t0, 4 * i, ev.to_string()));
            if let (Some(tp), Some((_, reason, _))) = (t.tp, r.pause) {
                lines.push((
                    tp,
                    4 * i + 1,
                    json!({"event_id": "p", "record_id": id, "type": "paused",
                    "at": fmt_time(tp, (i % 3) as u8), "reason": REASON[reason]})
                    .to_string(),
                ));
            }
            if let Some(tr) = t.tr {
                lines.push((
                    tr,
                    4 * i + 2,
                    json!({"event_id": "q", "record_id": id, "type": "resumed",
                    "at": fmt_time(tr, (i % 4) as u8)})
                    .to_string(),
                ));
            }
            if let Some(t1) = t.t1 {
                lines.push((
                    t1,
                    4 * i + 3,
                    json!({"event_id": "s", "record_id": id, "type": "resolved",
                    "at": fmt_time(t1, (i % 2) as u8)})
                    .to_string(),
                ));
            }

            // Running segments: (start = the event that set the due time, due, end,
            // whether the end resolves everything).
            let mut segs: Vec<(i64, i64, i64, bool)> = Vec::new();
            let final_due;
            match (t.tp, t.tr) {
                (None, _) => {
                    segs.push((t.t0, due0, t.t1.unwrap_or(until), t.t1.is_some()));
                    final_due = Some(due0);
                }
                (Some(tp), tr) => {
                    segs.push((t.t0, due0, tp, true));
                    if let Some(tr) = tr {
                        let reason = REASON[r.pause.unwrap().1];
                        let due1 = if reason == "supplement" {
                            // restart policy (the example config)
                            match r.due_at_min {
                                Some(_) => cal.forward(tr, working_between(cal, t.t0, due0)),
                                None => cal.due(tr, n, dunit),
                            }
                        } else {
                            cal.forward(due0, working_between(cal, tp, tr))
                        };
                        segs.push((tr, due1, t.t1.unwrap_or(until), t.t1.is_some()));
                        final_due = Some(due1);
                    } else {
                        final_due = None;
                    }
                }
            }
            for (start, due, end, closes) in segs {
                let push = |v: &mut Vec<Alert>, at: i64, kind: &str, state: &str| {
                    v.push(al_secs(at, &id, kind, state, unit));
                };
                if !known {
                    push(&mut expected, start, "unrouted", "firing");
                }
                let hang = cal.forward(start, thr);
                let soon = cal.backward(due, 8 * 3600);
                let over = due.max(start);
                let hang_fired = hang <= end;
                let soon_fired = soon > start && soon <= end && soon < over;
                let over_fired = over <= end;
                if hang_fired {
                    push(&mut expected, hang, "hanging", "firing");
                }
                if soon_fired {
                    push(&mut expected, soon, "due_soon", "firing");
                }
                if over_fired {
                    push(&mut expected, over, "overdue", "firing");
                    if soon_fired {
                        push(&mut expected, over, "due_soon", "resolved");
                    }
                }
                if closes {
                    if !known {
                        push(&mut expected, end, "unrouted", "resolved");
                    }
                    if hang_fired {
                        push(&mut expected, end, "hanging", "resolved");
                    }
                    if soon_fired && !over_fired {
                        push(&mut expected, end, "due_soon", "resolved");
                    }
                    if over_fired {
                        push(&mut expected, end, "overdue", "resolved");
                    }
                }
            }
            let cat = match (final_due, t.t1) {
                (None, _) => Cat::Paused,
                (Some(d), Some(t1)) => {
                    let (dc, dd) = (oracle::Cal::date_of(t1), oracle::Cal::date_of(d));
                    if dc < dd {
                        Cat::Early
                    } else if dc == dd {
                        Cat::OnTime
                    } else {
                        Cat::Late
                    }
                }
                (Some(d), None) if until > d => Cat::Overdue,
                (Some(_), None) => Cat::Within,
            };
            records.push((unit.to_string(), sector.to_string(), cat));
        }
    });
    lines.sort();
    let text: String = lines.iter().map(|(_, _, l)| format!("{l}\n")).collect();
    let until_s = fmt_time(until, 0);
    let input: Vec<Vec<u8>> = text.lines().map(|l| l.as_bytes().to_vec()).collect();
    let r = run(&[("oracle.ndjson", &input)], Some(&until_s));
    assert!(
        r.dead.is_empty(),
        "dead letters: {}",
        String::from_utf8_lossy(&r.dead)
    );
    let got: Vec<String> = String::from_utf8(r.alerts)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let ctx = format!("oracle (until {until_s})\n{text}");
    assert_alerts_multiset(&got, &expected, &ctx);
    let recs_ref: Vec<(&str, &str, Cat)> = records
        .iter()
        .map(|(u, s, c)| (u.as_str(), s.as_str(), *c))
        .collect();
    assert_report_unknown_level(&r.report, &expected_report(&until_s, &recs_ref), &ctx);
}

proptest! {
    #![proptest_config(pt_env_config(1500, 0x0a_c1e))]

    /// Received records of every procedure at random minutes of 2024-2025, some
    /// paused (each reason) and resumed, some resolved, against the naive calendar:
    /// due time, restart / extend on resume, hanging threshold (unit and sector
    /// overrides), due_soon (and its "not raised" rule), overdue (at the resume if
    /// the due time fell inside the pause), unrouted, resolution at pause and
    /// close, and the report category by local dates.
    #[test]
    fn deadlines_match_a_naive_calendar_oracle(
        recs in proptest::collection::vec(oracle_rec(), 1..6),
        until_extra in 0i64..(20 * 24 * 60),
    ) {
        oracle_check(&recs, until_extra);
    }
}

/// Replays `lines` into `engine` (or a new one); returns it with its alert
/// lines. `last`: finish (fire what is due at the clock), else stop as between
/// two events.
fn replay_from(
    engine: Option<overdued::engine::Engine>,
    lines: &[Vec<u8>],
    last: bool,
) -> (overdued::engine::Engine, Vec<u8>) {
    let cfg = config();
    let mut alerts: Vec<u8> = Vec::new();
    let engine = {
        let out = Outputs {
            alerts: Some(&mut alerts),
            dead_letter: None,
            on_transition: None,
        };
        let mut r = match engine {
            Some(e) => Replay::resume(e, out),
            None => Replay::new(&cfg.engine, out),
        };
        let mut bytes = Vec::new();
        for l in lines {
            bytes.extend_from_slice(l);
            bytes.push(b'\n');
        }
        let mut reader = LineReader::new(Box::new(Cursor::new(bytes)));
        r.feed_reader("part", &mut reader).expect("feed");
        if last {
            r.finish(None).expect("finish");
        } else {
            r.flush().expect("flush");
        }
        r.into_engine()
    };
    (engine, alerts)
}

/// A snapshot taken between any two events, restored, goes on exactly as the
/// engine it imaged: the same alert lines, the same report; and the image of a
/// restored engine is the image it was restored from.
fn check_snapshot_split(case: &Case) -> Result<(), TestCaseError> {
    let cfg = config();
    let inp = build(case);
    let n = inp.lines.len();
    let (full, full_alerts) = replay_from(None, &inp.lines, true);
    let full_report = full.report(full.clock()).to_json();
    for k in [0, n / 3, n / 2, n - n / 4, n] {
        let (first, mut alerts) = replay_from(None, &inp.lines[..k], false);
        let mut image = Vec::new();
        first.snapshot(&mut image);
        let restored = overdued::engine::Engine::restore(&cfg.engine, &image)
            .map_err(|e| TestCaseError::fail(format!("restore at {k}: {e}")))?;
        let mut again = Vec::new();
        restored.snapshot(&mut again);
        prop_assert!(
            again == image,
            "the image of a restored engine differs (split {})",
            k
        );
        prop_assert_eq!(restored.open_records(), first.open_records());
        prop_assert_eq!(restored.armed_timers(), first.armed_timers());
        let (rest, more) = replay_from(Some(restored), &inp.lines[k..], true);
        alerts.extend_from_slice(&more);
        prop_assert!(
            alerts == full_alerts,
            "split at {}: alerts differ\n--- full\n{}\n--- split\n{}",
            k,
            String::from_utf8_lossy(&full_alerts),
            String::from_utf8_lossy(&alerts)
        );
        prop_assert_eq!(rest.report(rest.clock()).to_json(), full_report.clone());
    }
    Ok(())
}

proptest! {
    #![proptest_config(pt_env_config(400, 0x5eed_0003))]

    #[test]
    fn a_snapshot_restores_an_engine_that_goes_on_identically(case in case_strategy()) {
        check_snapshot_split(&case)?;
    }
}

#[test]
fn a_torn_or_altered_snapshot_is_refused() {
    use overdued::engine::{Engine, SnapshotError};
    let cfg = config();
    let case = case_strategy()
        .new_tree(&mut proptest::test_runner::TestRunner::new(pt_config(1, 7)))
        .expect("a case")
        .current();
    let (e, _) = replay_from(None, &build(&case).lines, true);
    let mut image = Vec::new();
    e.snapshot(&mut image);
    assert!(Engine::restore(&cfg.engine, &image).is_ok());
    for cut in [0, 3, 9, image.len() / 2, image.len() - 1] {
        let r = Engine::restore(&cfg.engine, &image[..cut]);
        assert!(
            matches!(r, Err(SnapshotError::Truncated | SnapshotError::Checksum)),
            "cut at {cut}: {:?}",
            r.err()
        );
    }
    let mut bad = image.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x40;
    assert_eq!(
        Engine::restore(&cfg.engine, &bad).err(),
        Some(SnapshotError::Checksum)
    );
    let mut other = image.clone();
    other[0] = b'X';
    assert_eq!(
        Engine::restore(&cfg.engine, &other).err(),
        Some(SnapshotError::Header)
    );
}
