//! `overdued import` end to end, through the built binary: the sample export
//! of `config/examples/import/` to events, its rejects, the same ids twice,
//! then `overdued replay` of the events gives the hand-counted report; the
//! go-live snapshots; mapping errors naming file, line and field.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn sample(name: &str) -> PathBuf {
    root().join("config/examples/import").join(name)
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("overdued-import-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn overdued(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_overdued"))
        .args(args)
        .output()
        .unwrap()
}

/// Imports `export` with the sample mapping into `dir/events.ndjson`.
fn import(dir: &Path, export: &str, extra: &[&str]) -> Output {
    let out = dir.join("events.ndjson");
    let mapping = sample("mapping-motcua.toml");
    let export = sample(export);
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "import".as_ref(),
        "--mapping".as_ref(),
        mapping.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
    ];
    args.extend(extra.iter().map(std::ffi::OsStr::new));
    args.push(export.as_os_str());
    overdued(&args)
}

/// Replays `dir/events.ndjson` with the sample configuration; the report.
fn replay(dir: &Path) -> serde_json::Value {
    let report = dir.join("report.json");
    let dead = dir.join("dead.ndjson");
    let config = root().join("config/overdued.toml");
    let events = dir.join("events.ndjson");
    let o = overdued(&[
        "replay".as_ref(),
        "--config".as_ref(),
        config.as_os_str(),
        "--report".as_ref(),
        report.as_os_str(),
        "--dead-letter".as_ref(),
        dead.as_os_str(),
        events.as_os_str(),
    ]);
    assert!(o.status.success(), "{o:?}");
    // everything imported is accepted by the engine
    assert_eq!(std::fs::read_to_string(&dead).unwrap(), "");
    serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap()
}

fn lines_of(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn the_sample_export_imports_to_exact_events_and_lists_its_bad_rows() {
    let dir = tmp("sample");
    let o = import(&dir, "export-2025.csv", &[]);
    assert!(o.status.success(), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    // 61 data rows; 58 good: 40 returned + 4 rejected + 3 withdrawn → 2
    // events each (94), 3 paused → 2 each (6), 8 open → 1 each: 108 events
    assert!(
        err.contains("import: 61 rows read, 108 events written, 3 rows rejected"),
        "{err}"
    );
    let lines = lines_of(&dir.join("events.ndjson"));
    assert_eq!(lines.len(), 108);
    let find = |id: &str| {
        lines
            .iter()
            .find(|l| l.contains(&format!("\"event_id\":\"{id}\"")))
            .unwrap_or_else(|| panic!("no {id}"))
            .as_str()
    };
    // spreadsheet row 2: received online at BTM, returned two days late
    assert_eq!(
        find("000.20.31.H47-250107-0001:received:1"),
        r#"{"event_id":"000.20.31.H47-250107-0001:received:1","record_id":"000.20.31.H47-250107-0001","type":"received","at":"2025-01-07T10:45:00+07:00","unit":"BTM","procedure":"1.004227","channel":"online","due_at":"2025-01-21T17:00:00+07:00"}"#
    );
    assert_eq!(
        find("000.20.31.H47-250107-0001:returned:1"),
        r#"{"event_id":"000.20.31.H47-250107-0001:returned:1","record_id":"000.20.31.H47-250107-0001","type":"returned","at":"2025-01-23T09:10:00+07:00"}"#
    );
    // row 11: withdrawn by the applicant
    assert_eq!(
        find("000.00.20.H47-250204-0001:withdrawn:1"),
        r#"{"event_id":"000.00.20.H47-250204-0001:withdrawn:1","record_id":"000.00.20.H47-250204-0001","type":"withdrawn","at":"2025-02-06T14:00:00+07:00"}"#
    );
    // row 52: waiting for a supplement since its status time
    assert_eq!(
        find("000.31.31.H47-250506-0001:paused:1"),
        r#"{"event_id":"000.31.31.H47-250506-0001:paused:1","record_id":"000.31.31.H47-250506-0001","type":"paused","at":"2025-05-08T09:30:00+07:00","reason":"supplement"}"#
    );
    // sorted by time
    let ats: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["at"].clone())
        .collect();
    let instants: Vec<i64> = ats
        .iter()
        .map(|a| overdued::time::parse_rfc3339(a.as_str().unwrap()).unwrap())
        .collect();
    assert!(instants.windows(2).all(|w| w[0] <= w[1]));

    // the rejects: exactly the three bad rows, with their reasons
    let rejects = std::fs::read_to_string(dir.join("events.ndjson.rejects.csv")).unwrap();
    let rows: Vec<&str> = rejects.lines().collect();
    assert_eq!(rows[0], "file,row,record,reason");
    assert_eq!(rows.len(), 4, "{rejects}");
    let export = sample("export-2025.csv").display().to_string();
    assert_eq!(
        rows[1],
        format!(
            "{export},16,000.24.35.H47-250220-0009,\"status \"\"Đang chờ ký\"\" is not in the mapping's [status]\""
        )
    );
    assert!(rows[2].starts_with(&format!("{export},32,000.31.31.H47-250311-0004,")));
    assert!(
        rows[2].contains("\"\"31/02/2025 09:00\"\" matches none of the formats"),
        "{}",
        rows[2]
    );
    assert_eq!(
        rows[3],
        format!("{export},47,000.25.36.H47-250415-0007,the finish time is before the receipt")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn importing_twice_gives_identical_output() {
    let a = tmp("twice-a");
    let b = tmp("twice-b");
    assert!(import(&a, "export-2025.csv", &[]).status.success());
    assert!(import(&b, "export-2025.csv", &[]).status.success());
    assert_eq!(
        std::fs::read(a.join("events.ndjson")).unwrap(),
        std::fs::read(b.join("events.ndjson")).unwrap()
    );
    let _ = std::fs::remove_dir_all(&a);
    let _ = std::fs::remove_dir_all(&b);
}

#[test]
fn the_imported_sample_replays_to_the_hand_counted_report() {
    let dir = tmp("replay");
    assert!(import(&dir, "export-2025.csv", &[]).status.success());
    let r = replay(&dir);
    // Counted from export-2025.csv (61 rows, 3 bad: rows 16, 32, 47):
    // * received: 58 good rows;
    // * "Đã trả kết quả", judged on the local date of "Ngày trả kết quả"
    //   against "Ngày hẹn trả": 20 before it (early), 12 on it (on_time),
    //   8 after it (late: rows 2, 10, 21, 24, 25, 26, 27, 36);
    // * "Từ chối tiếp nhận" / "Trả lại hồ sơ": 4 rejected (rows 7, 9, 19, 46);
    // * "Công dân rút hồ sơ": 3 withdrawn (rows 11, 22, 44);
    // * "Chờ bổ sung": 3 paused (rows 52, 56, 57);
    // * open ("Đang xử lý", "Mới tiếp nhận") at the final clock, the last
    //   receipt 28/05/2025 10:15: due before it 3 (rows 38, 41, 42: due
    //   14-25/04), due after it 5 (rows 58-62: due 02-06/06).
    let total = &r["total"];
    let want = [
        ("received", 58),
        ("early", 20),
        ("on_time", 12),
        ("late", 8),
        ("in_progress_within", 5),
        ("in_progress_overdue", 3),
        ("paused", 3),
        ("rejected", 4),
        ("withdrawn", 3),
    ];
    for (k, n) in want {
        assert_eq!(total[k], n, "{k}: {total}");
    }
    assert_eq!(r["as_of"], "2025-05-28T03:15:00Z");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn open_records_become_snapshots_that_replay_as_open() {
    let dir = tmp("snapshot");
    let o = import(
        &dir,
        "open-today.csv",
        &["--open-as-snapshot", "--as-of", "2025-06-02T07:00:00+07:00"],
    );
    assert!(o.status.success(), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("import: 10 rows read, 9 events written, 1 rows rejected"),
        "{err}"
    );
    let lines = lines_of(&dir.join("events.ndjson"));
    assert_eq!(
        lines[3],
        r#"{"event_id":"000.31.31.H47-250526-0002:snapshot:2025-06-02T07:00:00+07:00","record_id":"000.31.31.H47-250526-0002","type":"snapshot","at":"2025-06-02T07:00:00+07:00","unit":"TRAMY","procedure":"1.004873","channel":"in_person","due_at":"2025-05-29T17:00:00+07:00","reason":"supplement","received_at":"2025-05-26T14:00:00+07:00","holder_since":"2025-05-28T09:00:00+07:00","paused":true}"#
    );
    let rejects = std::fs::read_to_string(dir.join("events.ndjson.rejects.csv")).unwrap();
    assert!(
        rejects.contains(",10,000.24.35.H47-250513-0004,\"already finished (status \"\"Đã trả kết quả\"\"): not an open record\"\n"),
        "{rejects}"
    );
    let r = replay(&dir);
    // 9 open rows at 02/06/2025 07:00: row 5 paused; rows 3 and 8 due
    // 28/05 (overdue); rows 2, 4, 6, 7, 9 due 02-06/06, and row 11 with no
    // due time (10 working days from 29/05 by the catalogue) within
    let total = &r["total"];
    for (k, n) in [
        ("received", 9),
        ("in_progress_within", 6),
        ("in_progress_overdue", 2),
        ("paused", 1),
        ("early", 0),
        ("late", 0),
    ] {
        assert_eq!(total[k], n, "{k}: {total}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn mapping_errors_name_file_line_and_field() {
    let dir = tmp("mapping");
    let text = std::fs::read_to_string(sample("mapping-motcua.toml"))
        .unwrap()
        .replace(
            "\"Dừng xử lý\"          = \"rejected\"",
            "\"Dừng xử lý\" = \"stopped\"",
        );
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, &text).unwrap();
    let line = text
        .lines()
        .position(|l| l.contains("\"stopped\""))
        .unwrap()
        + 1;
    let export = sample("export-2025.csv");
    let o = overdued(&[
        "import".as_ref(),
        "--mapping".as_ref(),
        bad.as_os_str(),
        export.as_os_str(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!(
            "overdued: configuration error: {}:{line}: field `status.\"Dừng xử lý\"`: \"stopped\" is not one of",
            bad.display()
        )),
        "{err}"
    );

    // a header the export does not have is an error, not a reject per row
    let text = std::fs::read_to_string(sample("mapping-motcua.toml"))
        .unwrap()
        .replace("= \"Hình thức nộp\"", "= \"Kênh nộp\"");
    std::fs::write(&bad, &text).unwrap();
    let o = overdued(&[
        "import".as_ref(),
        "--mapping".as_ref(),
        bad.as_os_str(),
        export.as_os_str(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("column \"Kênh nộp\" (mapping columns.channel) is not in the header row"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
