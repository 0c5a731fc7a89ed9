//! `overdued import`: a one-stop system's export (CSV, or a JSON array of
//! objects) → event NDJSON that `replay` and the daemon accept
//! (docs/spec.md §2).
//!
//! [`mapping`] says which column holds what; [`timefmt`] reads the export's
//! times. [`convert`] turns the rows of every export into events sorted by
//! time (stable), and every row it cannot use into a [`Reject`] with its
//! reason — nothing is dropped silently. Event ids are
//! `<record>:<type>:<n>` (the n-th event of that type of the record, in time
//! order), so importing the same export twice gives the same ids, which the
//! engine then ignores as duplicates; a snapshot's id also carries its `at`.

pub mod mapping;
pub mod timefmt;

use crate::config::common::ConfigError;
use crate::event::{MAX_CODE_CHARS, MAX_RECORD_ID_CHARS};
use crate::time::{civil_from_days, write_rfc3339_offset, Instant, MAX_YEAR, MIN_YEAR, SECOND};
use mapping::{normalize, Action, Col, Mapping, Shape};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;
use timefmt::{local_instant, offset_at, Parsed};

/// Why an import cannot run at all (a bad row is a [`Reject`], not an error).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The mapping file is invalid.
    #[error("{0}")]
    Mapping(#[from] ConfigError),
    /// An export cannot be read as a table.
    #[error("{file}: {message}")]
    Export {
        /// The export, as given.
        file: String,
        /// What is wrong.
        message: String,
    },
}

/// A row that gave no event, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reject {
    /// The export, as given.
    pub file: String,
    /// Spreadsheet row: the header is row 1 (JSON: the element's 1-based
    /// position).
    pub row: usize,
    /// The record code, when the row has one.
    pub record: String,
    /// What is wrong.
    pub reason: String,
}

/// One event to write, in the order of fields of docs/spec.md §2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// `<record>:<type>:<n>`.
    pub event_id: String,
    /// The record code.
    pub record_id: String,
    /// The event type.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Event time, RFC 3339 with the zone's offset.
    pub at: String,
    /// Unit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// Procedure code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub procedure: Option<String>,
    /// Sector code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sector: Option<String>,
    /// Channel.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<&'static str>,
    /// Promised return time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub due_at: Option<String>,
    /// Pause reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    /// Snapshot: receipt time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub received_at: Option<String>,
    /// Snapshot: since when the unit holds it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub holder_since: Option<String>,
    /// Snapshot: whether the clock is stopped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
    /// For sorting: the instant of `at`.
    #[serde(skip)]
    pub instant: Instant,
}

/// What [`convert`] made of the exports.
#[derive(Debug, Default)]
pub struct Output {
    /// Data rows read (headers not counted).
    pub rows: usize,
    /// Events, sorted by time (stable).
    pub events: Vec<Event>,
    /// Rows that gave no event, in input order.
    pub rejects: Vec<Reject>,
}

/// How to convert.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// `Some(as_of)`: open records become `snapshot` events at `as_of`
    /// (go-live); finished rows are rejects.
    pub snapshot_at: Option<Instant>,
}

/// One export already read as a table: its name and its data rows with their
/// row numbers, each cell by mapped column.
pub struct Table {
    /// The export, as given.
    pub file: String,
    /// (row number, cells by column; `None` when absent or blank).
    pub rows: Vec<(usize, BTreeMap<Col, String>)>,
    /// Rows that cannot even be split into cells.
    pub broken: Vec<Reject>,
}

/// Reads an export: `.json` as an array of objects, anything else as CSV
/// with a header row.
pub fn read_table(path: &Path, name: &str, m: &Mapping) -> Result<Table, ImportError> {
    let export = |message: String| ImportError::Export {
        file: name.to_string(),
        message,
    };
    // the same check as configuration files: UTF-8, or the line that is not
    let text = crate::config::common::read(path).map_err(|e| {
        export(match e.line {
            Some(l) => format!("line {l}: {}", e.message),
            None => e.message,
        })
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let is_json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    if is_json {
        json_table(text, name, m).map_err(export)
    } else {
        csv_table(text, name, m).map_err(export)
    }
}

fn csv_table(text: &str, name: &str, m: &Mapping) -> Result<Table, String> {
    let mut r = csv::ReaderBuilder::new()
        .delimiter(m.delimiter)
        .flexible(true)
        .has_headers(true)
        .from_reader(text.as_bytes());
    let headers: Vec<String> = r
        .headers()
        .map_err(|e| format!("cannot read the header row: {e}"))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    let mut index = BTreeMap::new();
    for (c, h) in &m.columns {
        match headers.iter().position(|x| x == h) {
            Some(i) => {
                index.insert(*c, i);
            }
            None => {
                return Err(format!(
                    "column {h:?} (mapping columns.{}) is not in the header row ({})",
                    c.key(),
                    headers.join(", ")
                ))
            }
        }
    }
    let mut t = Table {
        file: name.to_string(),
        rows: Vec::new(),
        broken: Vec::new(),
    };
    for (n, rec) in r.records().enumerate() {
        let row = n + 2;
        let rec = match rec {
            Ok(rec) => rec,
            Err(e) => {
                t.broken.push(Reject {
                    file: name.to_string(),
                    row,
                    record: String::new(),
                    reason: format!("cannot read the row: {e}"),
                });
                continue;
            }
        };
        if rec.len() != headers.len() {
            t.broken.push(Reject {
                file: name.to_string(),
                row,
                record: String::new(),
                reason: format!("has {} fields, the header has {}", rec.len(), headers.len()),
            });
            continue;
        }
        let cells = index
            .iter()
            .filter_map(|(c, &i)| {
                let v = rec.get(i)?.trim();
                (!v.is_empty()).then(|| (*c, v.to_string()))
            })
            .collect();
        t.rows.push((row, cells));
    }
    Ok(t)
}

fn json_table(text: &str, name: &str, m: &Mapping) -> Result<Table, String> {
    let v: Vec<serde_json::Map<String, serde_json::Value>> =
        serde_json::from_str(text).map_err(|e| format!("not a JSON array of objects: {e}"))?;
    let mut t = Table {
        file: name.to_string(),
        rows: Vec::new(),
        broken: Vec::new(),
    };
    for (n, obj) in v.into_iter().enumerate() {
        let mut cells = BTreeMap::new();
        for (c, h) in &m.columns {
            let s = match obj.get(h) {
                None | Some(serde_json::Value::Null) => continue,
                Some(serde_json::Value::String(s)) => s.trim().to_string(),
                Some(other) => other.to_string(),
            };
            if !s.is_empty() {
                cells.insert(*c, s);
            }
        }
        t.rows.push((n + 1, cells));
    }
    Ok(t)
}

/// A row's values, checked.
struct Row<'a> {
    file: &'a str,
    row: usize,
    seq: usize,
    record: String,
    cells: &'a BTreeMap<Col, String>,
}

/// The instant and its zone offset, formatted.
fn fmt_time(m: &Mapping, t: Instant) -> String {
    let mut v = Vec::with_capacity(32);
    write_rfc3339_offset(&mut v, t, offset_at(m.tz, t));
    String::from_utf8_lossy(&v).into_owned()
}

impl Row<'_> {
    fn get(&self, _m: &Mapping, c: Col) -> Option<&str> {
        self.cells.get(&c).map(String::as_str)
    }
    fn need(&self, m: &Mapping, c: Col) -> Result<&str, String> {
        self.get(m, c).ok_or_else(|| {
            format!(
                "column {:?} is empty",
                m.columns.get(&c).map_or(c.key(), String::as_str)
            )
        })
    }
    fn code(&self, m: &Mapping, c: Col) -> Result<Option<String>, String> {
        match self.get(m, c) {
            None => Ok(None),
            Some(v) if v.chars().count() > MAX_CODE_CHARS => Err(format!(
                "column {:?}: longer than {MAX_CODE_CHARS} characters",
                m.columns[&c]
            )),
            Some(v) => Ok(Some(v.to_string())),
        }
    }
    fn time(&self, m: &Mapping, c: Col) -> Result<Option<Instant>, String> {
        let Some(v) = self.get(m, c) else {
            return Ok(None);
        };
        let name = &m.columns[&c];
        let t = m
            .formats
            .iter()
            .find_map(|f| f.parse(v))
            .and_then(|p| match p {
                Parsed::Instant(t) => Some(t),
                Parsed::Local {
                    date,
                    secs,
                    has_time,
                } => local_instant(m.tz, date, if has_time { secs } else { m.date_only_secs }),
            })
            .ok_or_else(|| {
                let list: Vec<&str> = m.formats.iter().map(|f| f.text.as_str()).collect();
                format!(
                    "column {name:?}: {v:?} matches none of the formats {}",
                    list.join(", ")
                )
            })?;
        let (y, _, _) = civil_from_days(t.div_euclid(SECOND).div_euclid(86_400));
        if !(MIN_YEAR..=MAX_YEAR).contains(&y) {
            return Err(format!(
                "column {name:?}: {v:?} is outside the years {MIN_YEAR}-{MAX_YEAR}"
            ));
        }
        Ok(Some(t))
    }
    fn status(&self, m: &Mapping) -> Result<Action, String> {
        let v = self.need(m, Col::Status)?;
        if let Some(a) = m.status.get(&normalize(v)) {
            return Ok(*a);
        }
        // Vietnamese typed in decomposed form (tổ hợp) looks the same but
        // does not compare equal; say so rather than "unmapped"
        let hint = if v.chars().any(|c| ('\u{300}'..='\u{36f}').contains(&c)) {
            " (it is in decomposed Unicode: save the export in precomposed form, NFC)"
        } else {
            ""
        };
        Err(format!(
            "status {v:?} is not in the mapping's [status]{hint}"
        ))
    }
    fn channel(&self, m: &Mapping) -> Result<Option<&'static str>, String> {
        match self.get(m, Col::Channel) {
            None => Ok(None),
            Some(v) => m
                .channel
                .get(&normalize(v))
                .copied()
                .map(Some)
                .ok_or_else(|| format!("channel {v:?} is not in the mapping's [channel]")),
        }
    }
    fn reject(&self, reason: String) -> Reject {
        Reject {
            file: self.file.to_string(),
            row: self.row,
            record: self.record.clone(),
            reason,
        }
    }
}

/// An event before its id: (time, row order, event).
struct Pending {
    t: Instant,
    seq: usize,
    ev: Event,
}

fn event(m: &Mapping, record: &str, kind: &'static str, t: Instant) -> Event {
    Event {
        event_id: String::new(),
        record_id: record.to_string(),
        kind,
        at: fmt_time(m, t),
        unit: None,
        procedure: None,
        sector: None,
        channel: None,
        due_at: None,
        reason: None,
        received_at: None,
        holder_since: None,
        paused: None,
        instant: t,
    }
}

/// Converts the tables' rows into events and rejects.
pub fn convert(m: &Mapping, tables: &[Table], opts: Options) -> Output {
    let mut out = Output::default();
    let mut rows = Vec::new();
    for t in tables {
        out.rejects.extend(t.broken.iter().cloned());
        out.rows += t.rows.len() + t.broken.len();
        for (row, cells) in &t.rows {
            let seq = rows.len();
            rows.push(Row {
                file: &t.file,
                row: *row,
                seq,
                record: cells.get(&Col::Record).cloned().unwrap_or_default(),
                cells,
            });
        }
    }
    let mut pending = Vec::new();
    // rows of one record, in input order
    let mut by_record: BTreeMap<&str, Vec<&Row>> = BTreeMap::new();
    for r in &rows {
        if r.record.is_empty() {
            out.rejects
                .push(r.reject(format!("column {:?} is empty", m.columns[&Col::Record])));
        } else if r.record.chars().count() > MAX_RECORD_ID_CHARS {
            out.rejects.push(r.reject(format!(
                "record code longer than {MAX_RECORD_ID_CHARS} characters"
            )));
        } else {
            by_record.entry(r.record.as_str()).or_default().push(r);
        }
    }
    for (record, rs) in by_record {
        match m.shape {
            Shape::Record => {
                let first = rs[0];
                for dup in &rs[1..] {
                    out.rejects.push(dup.reject(format!(
                        "record {record} is already on {} row {} (shape = \"record\": one row per record)",
                        first.file, first.row
                    )));
                }
                match record_row(m, first, opts) {
                    Ok(evs) => pending.extend(evs),
                    Err(reason) => out.rejects.push(first.reject(reason)),
                }
            }
            Shape::Step => step_rows(m, record, &rs, opts, &mut pending, &mut out.rejects),
        }
    }
    out.rejects
        .sort_by(|a, b| (&a.file, a.row).cmp(&(&b.file, b.row)));
    // ids by record in time order, then the whole stream in time order
    pending.sort_by_key(|p| (p.ev.record_id.clone(), p.t, p.seq));
    let mut counts: BTreeMap<(String, &'static str), usize> = BTreeMap::new();
    for p in &mut pending {
        let n = counts
            .entry((p.ev.record_id.clone(), p.ev.kind))
            .or_default();
        *n += 1;
        p.ev.event_id = match (p.ev.kind, opts.snapshot_at) {
            ("snapshot", Some(at)) => format!("{}:snapshot:{}", p.ev.record_id, fmt_time(m, at)),
            _ => format!("{}:{}:{}", p.ev.record_id, p.ev.kind, n),
        };
    }
    pending.sort_by_key(|p| (p.t, p.seq));
    out.events = pending.into_iter().map(|p| p.ev).collect();
    out
}

/// The opening fields shared by `received` and `snapshot`.
fn opening(m: &Mapping, r: &Row, ev: &mut Event, due: Option<Instant>) -> Result<(), String> {
    ev.unit = Some(r.need(m, Col::Unit)?.to_string());
    ev.procedure = r.code(m, Col::Procedure)?;
    if ev.procedure.is_none() && due.is_none() {
        return Err(format!(
            "column {:?} is empty and there is no due time",
            m.columns
                .get(&Col::Procedure)
                .map_or("procedure", String::as_str)
        ));
    }
    ev.sector = r.code(m, Col::Sector)?;
    ev.channel = r.channel(m)?;
    ev.due_at = due.map(|d| fmt_time(m, d));
    Ok(())
}

fn record_row(m: &Mapping, r: &Row, opts: Options) -> Result<Vec<Pending>, String> {
    let action = r.status(m)?;
    let received = r
        .time(m, Col::Received)?
        .ok_or_else(|| r.need(m, Col::Received).err().unwrap_or_default())?;
    let due = r.time(m, Col::Due)?;
    let finished = r.time(m, Col::Finished)?;
    let status_time = r.time(m, Col::StatusTime)?;
    if let Some(d) = due {
        if d < received {
            return Err("the due time is before the receipt".into());
        }
    }
    if let Some(f) = finished {
        if f < received {
            return Err("the finish time is before the receipt".into());
        }
    }
    if let Some(at) = opts.snapshot_at {
        if action.closes() || finished.is_some() {
            return Err(format!(
                "already finished (status {:?}): not an open record",
                r.get(m, Col::Status).unwrap_or_default()
            ));
        }
        if received > at {
            return Err("received after --as-of".into());
        }
        let mut ev = event(m, &r.record, "snapshot", at);
        opening(m, r, &mut ev, due)?;
        ev.received_at = Some(fmt_time(m, received));
        ev.holder_since = status_time
            .filter(|&s| s >= received && s <= at)
            .map(|s| fmt_time(m, s));
        if let Action::Paused(reason) = action {
            ev.paused = Some(true);
            ev.reason = Some(reason);
        }
        return Ok(vec![Pending {
            t: at,
            seq: r.seq,
            ev,
        }]);
    }
    let mut ev = event(m, &r.record, "received", received);
    opening(m, r, &mut ev, due)?;
    let mut out = vec![Pending {
        t: received,
        seq: r.seq,
        ev,
    }];
    match action {
        Action::Open | Action::Received | Action::Advanced => {
            if finished.is_some() {
                return Err(format!(
                    "has a finish time but status {:?} does not close the record",
                    r.get(m, Col::Status).unwrap_or_default()
                ));
            }
        }
        Action::Paused(reason) => {
            let t = status_time.or(finished).ok_or_else(|| {
                "a paused record needs the time of its status (columns.status_time)".to_string()
            })?;
            if t < received {
                return Err("the status time is before the receipt".into());
            }
            let mut ev = event(m, &r.record, "paused", t);
            ev.reason = Some(reason);
            out.push(Pending { t, seq: r.seq, ev });
        }
        a => {
            let kind = a.event_type().unwrap_or("resolved");
            let t = finished.ok_or_else(|| {
                format!(
                    "status {:?} closes the record but column {:?} is empty",
                    r.get(m, Col::Status).unwrap_or_default(),
                    m.columns
                        .get(&Col::Finished)
                        .map_or("finished", String::as_str)
                )
            })?;
            out.push(Pending {
                t,
                seq: r.seq,
                ev: event(m, &r.record, kind, t),
            });
        }
    }
    Ok(out)
}

fn step_rows(
    m: &Mapping,
    record: &str,
    rs: &[&Row],
    opts: Options,
    pending: &mut Vec<Pending>,
    rejects: &mut Vec<Reject>,
) {
    // each usable row with its time and action, in time order
    let mut steps = Vec::new();
    for r in rs {
        let parsed = r.time(m, Col::StepTime).and_then(|t| {
            let t = t.ok_or_else(|| r.need(m, Col::StepTime).err().unwrap_or_default())?;
            Ok((t, r.status(m)?))
        });
        match parsed {
            Ok((t, a)) => steps.push((t, a, *r)),
            Err(reason) => rejects.push(r.reject(reason)),
        }
    }
    steps.sort_by_key(|(t, _, r)| (*t, r.seq));
    let Some(&(_, first_action, first)) = steps.first() else {
        return;
    };
    if first_action != Action::Received {
        for (_, _, r) in &steps {
            rejects.push(r.reject(format!(
                "record {record}: its earliest step (row {}) is not a receipt; the export must hold the whole history",
                first.row
            )));
        }
        return;
    }
    if let Some(at) = opts.snapshot_at {
        step_snapshot(m, record, &steps, at, pending, rejects);
        return;
    }
    let received_at = steps[0].0;
    for (i, &(t, a, r)) in steps.iter().enumerate() {
        let Some(kind) = a.event_type() else {
            continue;
        };
        let mut ev = event(m, record, kind, t);
        let res = (|| -> Result<(), String> {
            match a {
                Action::Received if i > 0 => Err(format!(
                    "record {record} has a receipt already (row {})",
                    first.row
                )),
                Action::Received => {
                    let due = r.time(m, Col::Due)?;
                    if due.is_some_and(|d| d < t) {
                        return Err("the due time is before the receipt".into());
                    }
                    opening(m, r, &mut ev, due)
                }
                Action::Forwarded => {
                    ev.unit = Some(r.need(m, Col::Unit)?.to_string());
                    Ok(())
                }
                Action::Paused(reason) => {
                    ev.reason = Some(reason);
                    Ok(())
                }
                _ => Ok(()),
            }
        })();
        debug_assert!(t >= received_at);
        match res {
            Ok(()) => pending.push(Pending { t, seq: r.seq, ev }),
            Err(reason) => rejects.push(r.reject(reason)),
        }
    }
}

/// Step shape, go-live: one `snapshot` from the whole history of an open
/// record (receipt from its first step, holder and pause state from the last).
fn step_snapshot(
    m: &Mapping,
    record: &str,
    steps: &[(Instant, Action, &Row)],
    at: Instant,
    pending: &mut Vec<Pending>,
    rejects: &mut Vec<Reject>,
) {
    let reject_all = |rejects: &mut Vec<Reject>, reason: String| {
        for (_, _, r) in steps {
            rejects.push(r.reject(reason.clone()));
        }
    };
    if let Some((_, _, closed)) = steps.iter().find(|(_, a, _)| a.closes()) {
        return reject_all(
            rejects,
            format!("already finished (row {}): not an open record", closed.row),
        );
    }
    let (received, _, first) = steps[0];
    if received > at {
        return reject_all(rejects, "received after --as-of".into());
    }
    let mut ev = event(m, record, "snapshot", at);
    let mut holder = (first, received);
    let mut paused = None;
    let mut due = None;
    for &(t, a, r) in steps {
        if t > at {
            break;
        }
        match a {
            Action::Received | Action::Forwarded => holder = (r, t),
            Action::Paused(reason) => paused = Some(reason),
            Action::Resumed => paused = None,
            _ => {}
        }
        match r.time(m, Col::Due) {
            Ok(Some(d)) => due = Some(d),
            Ok(None) => {}
            Err(reason) => return reject_all(rejects, reason),
        }
    }
    let res = opening(m, first, &mut ev, due).and_then(|()| {
        ev.unit = Some(holder.0.need(m, Col::Unit)?.to_string());
        Ok(())
    });
    if let Err(reason) = res {
        return reject_all(rejects, reason);
    }
    if due.is_some_and(|d| d < received) {
        return reject_all(rejects, "the due time is before the receipt".into());
    }
    ev.received_at = Some(fmt_time(m, received));
    ev.holder_since = Some(fmt_time(m, holder.1));
    if let Some(reason) = paused {
        ev.paused = Some(true);
        ev.reason = Some(reason);
    }
    pending.push(Pending {
        t: at,
        seq: first.seq,
        ev,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::common::Src;

    const MAP: &str = r#"shape = "record"
[columns]
record = "Mã hồ sơ"
procedure = "Mã TTHC"
unit = "Đơn vị"
received = "Ngày tiếp nhận"
due = "Ngày hẹn trả"
finished = "Ngày trả"
status = "Trạng thái"
status_time = "Ngày cập nhật"
[formats]
times = ["dd/MM/yyyy HH:mm", "dd/MM/yyyy"]
[status]
"Đang xử lý" = "open"
"Chờ bổ sung" = "paused"
"Đã trả kết quả" = "returned"
"#;

    fn run(map: &str, csv: &str, opts: Options) -> Output {
        let m = mapping::validate(&Src::new(Path::new("m.toml"), map)).unwrap();
        let t = csv_table(csv, "x.csv", &m).unwrap();
        convert(&m, &[t], opts)
    }

    const HEAD: &str =
        "Mã hồ sơ,Mã TTHC,Đơn vị,Ngày tiếp nhận,Ngày hẹn trả,Ngày trả,Trạng thái,Ngày cập nhật\n";

    #[test]
    fn a_returned_row_gives_received_then_returned_with_deterministic_ids() {
        let o = run(
            MAP,
            &format!("{HEAD}R1,P,U,03/03/2025 08:00,10/03/2025,07/03/2025 09:15,Đã trả kết quả,\n"),
            Options { snapshot_at: None },
        );
        assert!(o.rejects.is_empty(), "{:?}", o.rejects);
        let lines: Vec<String> = o
            .events
            .iter()
            .map(|e| serde_json::to_string(e).unwrap())
            .collect();
        assert_eq!(
            lines,
            [
                r#"{"event_id":"R1:received:1","record_id":"R1","type":"received","at":"2025-03-03T08:00:00+07:00","unit":"U","procedure":"P","due_at":"2025-03-10T17:00:00+07:00"}"#,
                r#"{"event_id":"R1:returned:1","record_id":"R1","type":"returned","at":"2025-03-07T09:15:00+07:00"}"#,
            ]
        );
    }

    #[test]
    fn bad_rows_are_rejected_with_their_spreadsheet_row_and_reason() {
        let o = run(
            MAP,
            &format!(
                "{HEAD}R1,P,U,03/03/2025 08:00,,,Lạ,\nR2,P,U,33/03/2025,,,Đang xử lý,\nR3,P,U,05/03/2025 08:00,,04/03/2025,Đã trả kết quả,\nR1,P,U,03/03/2025 08:00,,,Đang xử lý,\n"
            ),
            Options { snapshot_at: None },
        );
        let got: Vec<(usize, &str)> = o
            .rejects
            .iter()
            .map(|r| (r.row, r.reason.as_str()))
            .collect();
        assert_eq!(got.len(), 4, "{got:?}");
        assert!(
            got[0].0 == 2 && got[0].1.contains("not in the mapping"),
            "{got:?}"
        );
        assert!(
            got[1].0 == 3 && got[1].1.contains("matches none"),
            "{got:?}"
        );
        assert!(
            got[2].0 == 4 && got[2].1.contains("before the receipt"),
            "{got:?}"
        );
        // one row per record: a second row of R1 is refused even though the
        // first was bad, so neither is half-used
        assert!(
            got[3].0 == 5 && got[3].1.contains("already on x.csv row 2"),
            "{got:?}"
        );
        assert_eq!(o.rows, 4);
    }

    #[test]
    fn open_as_snapshot_keeps_receipt_due_and_pause() {
        let at = crate::time::parse_rfc3339("2025-06-02T07:00:00+07:00").unwrap();
        let o = run(
            MAP,
            &format!("{HEAD}R1,P,U,20/05/2025 10:00,05/06/2025,,Chờ bổ sung,28/05/2025 15:00\nR2,P,U,20/05/2025 10:00,,21/05/2025,Đã trả kết quả,\n"),
            Options { snapshot_at: Some(at) },
        );
        assert_eq!(o.events.len(), 1);
        assert_eq!(
            serde_json::to_string(&o.events[0]).unwrap(),
            r#"{"event_id":"R1:snapshot:2025-06-02T07:00:00+07:00","record_id":"R1","type":"snapshot","at":"2025-06-02T07:00:00+07:00","unit":"U","procedure":"P","due_at":"2025-06-05T17:00:00+07:00","reason":"supplement","received_at":"2025-05-20T10:00:00+07:00","holder_since":"2025-05-28T15:00:00+07:00","paused":true}"#
        );
        assert_eq!(o.rejects.len(), 1);
        assert!(o.rejects[0].reason.contains("already finished"));
    }

    #[test]
    fn step_rows_become_one_event_each_in_time_order() {
        let map = r#"shape = "step"
[columns]
record = "Mã hồ sơ"
procedure = "Mã TTHC"
unit = "Đơn vị"
step_time = "Thời điểm"
status = "Bước"
[formats]
times = ["dd/MM/yyyy HH:mm"]
[status]
"Tiếp nhận" = "received"
"Chuyển xử lý" = "forwarded"
"Xử lý" = "advanced"
"Ghi chú" = "open"
"Trả kết quả" = "returned"
"#;
        let csv = "Mã hồ sơ,Mã TTHC,Đơn vị,Thời điểm,Bước\n\
                   R1,,B,04/03/2025 09:00,Chuyển xử lý\n\
                   R1,P,A,03/03/2025 08:00,Tiếp nhận\n\
                   R1,,B,05/03/2025 10:00,Xử lý\n\
                   R1,,B,05/03/2025 11:00,Ghi chú\n\
                   R1,,A,06/03/2025 16:00,Trả kết quả\n\
                   R2,,A,06/03/2025 16:00,Xử lý\n";
        let o = run(map, csv, Options { snapshot_at: None });
        let ids: Vec<&str> = o.events.iter().map(|e| e.event_id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "R1:received:1",
                "R1:forwarded:1",
                "R1:advanced:1",
                "R1:returned:1"
            ]
        );
        assert_eq!(o.events[1].unit.as_deref(), Some("B"));
        assert_eq!(o.rejects.len(), 1);
        assert_eq!(o.rejects[0].row, 7);
        assert!(o.rejects[0].reason.contains("not a receipt"));
    }
}
