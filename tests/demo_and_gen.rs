//! `overdued demo` and `overdued gen`: the demo runs with no arguments and no
//! services, and the rates it reports — the engine's own judgement of the
//! generated events — match the 2024 Quảng Nam calibration within 0.1 point.

use std::path::{Path, PathBuf};
use std::process::Command;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_overdued")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("overdued-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn rates(report: &serde_json::Value, level: &str) -> (f64, u64) {
    let c = &report["by_level"][level];
    let (e, o, l) = (
        c["early"].as_u64().unwrap(),
        c["on_time"].as_u64().unwrap(),
        c["late"].as_u64().unwrap(),
    );
    (100.0 * (e + o) as f64 / (e + o + l) as f64, e + o + l)
}

fn read_json(p: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn demo_runs_out_of_the_box_and_matches_the_calibration() {
    let dir = tmp("demo");
    // no arguments: it writes demo-out/ in the current folder
    let out = Command::new(bin())
        .arg("demo")
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let demo = dir.join("demo-out");
    let line = |prefix: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line {prefix:?} in:\n{stdout}"))
            .to_string()
    };
    let num_after = |l: &str, key: &str| -> f64 {
        let rest = &l[l.find(key).unwrap_or_else(|| panic!("{key:?} in {l:?}")) + key.len()..];
        rest.trim_start()
            .split(|c: char| !(c.is_ascii_digit() || c == '.'))
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("a number after {key:?} in {l:?}"))
    };

    for f in [
        "events.ndjson",
        "alerts.ndjson",
        "report.json",
        "dead-letter.ndjson",
    ] {
        assert!(
            demo.join(f)
                .metadata()
                .map(|m| m.len() > 0)
                .unwrap_or(false),
            "{f} missing or empty"
        );
    }
    let report = read_json(&demo.join("report.json"));
    assert_eq!(report["total"]["received"], 390_402);
    for (level, target) in [("province", 99.76), ("district", 93.92), ("commune", 98.31)] {
        let (rate, judged) = rates(&report, level);
        assert!(
            (rate - target).abs() <= 0.1,
            "{level}: {rate:.3} vs {target}"
        );
        assert!(judged > 50_000, "{level}: only {judged} judged");
        // the printed table shows the same rate, from the same report
        let row = stdout
            .lines()
            .find(|l| l.starts_with(level))
            .unwrap_or_else(|| panic!("no {level} row in\n{stdout}"));
        assert!(row.contains(&format!("{rate:.2}%")), "{row}");
    }
    // units over the 5% threshold: the district land-registration branches
    let over: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("units with a late rate over 5%"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .collect();
    assert!(
        over.iter().filter(|l| l.contains(".VPDK")).count() >= 5,
        "{stdout}"
    );
    for line in &over {
        let code = line.split_whitespace().next().unwrap();
        let c = &report["by_unit"][code];
        let late = c["late"].as_u64().unwrap() as f64;
        let judged = (c["early"].as_u64().unwrap() + c["on_time"].as_u64().unwrap()) as f64 + late;
        assert!(
            late / judged > 0.05,
            "{code} listed but at {:.2}%",
            100.0 * late / judged
        );
    }
    // the area table: one row per district and level, marked over the
    // threshold exactly when by_area's late rate is over 5 %
    let areas = report["by_area"].as_object().expect("by_area");
    assert_eq!(areas.len(), 10, "{:?}", areas.keys());
    let rows: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("by area (district"))
        .skip(2)
        .take_while(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(rows.len(), 20, "{stdout}");
    for row in rows {
        let f: Vec<&str> = row.split_whitespace().collect();
        let (area, level) = (f[0], f[f.len() - 4 - usize::from(row.ends_with('*'))]);
        let c = &areas[area][level];
        let (e, o, l) = (
            c["early"].as_u64().unwrap(),
            c["on_time"].as_u64().unwrap(),
            c["late"].as_u64().unwrap(),
        );
        let late = 100.0 * l as f64 / (e + o + l) as f64;
        assert_eq!(row.ends_with('*'), late > 5.0, "{row}: {late:.2}%");
        assert!(row.contains(&format!("{late:.2}%")), "{row}: {late:.2}%");
    }
    // provincial departments are in no area; a district's units and communes are in it
    let btm = &areas["BTM"];
    assert!(
        btm["district"]["received"].as_u64().unwrap() > 0
            && btm["commune"]["received"].as_u64().unwrap() > 0
    );
    assert!(btm.get("province").is_none());
    // the legend explains the columns
    assert!(
        stdout.contains("report 2024 = the on-time rate the 2024 report"),
        "{stdout}"
    );
    assert!(
        stdout.contains("of which overdue = past the due time and not closed yet"),
        "{stdout}"
    );
    // the seed report, area by area: Bắc Trà My's district level 97.5 % on
    // time and its communes 95.7 % (±0.3); the districts whose district level
    // is over 5 % late are exactly QS, TB, PN, DX
    let area_rate = |area: &str, level: &str| -> f64 {
        let c = &areas[area][level];
        let (e, o, l) = (
            c["early"].as_u64().unwrap(),
            c["on_time"].as_u64().unwrap(),
            c["late"].as_u64().unwrap(),
        );
        100.0 * (e + o) as f64 / (e + o + l) as f64
    };
    assert!(
        (area_rate("BTM", "district") - 97.5).abs() <= 0.3,
        "{}",
        area_rate("BTM", "district")
    );
    assert!(
        (area_rate("BTM", "commune") - 95.7).abs() <= 0.3,
        "{}",
        area_rate("BTM", "commune")
    );
    let mut over: Vec<&str> = areas
        .keys()
        .map(String::as_str)
        .filter(|a| 100.0 - area_rate(a, "district") > 5.0)
        .collect();
    over.sort();
    assert_eq!(over, ["DX", "PN", "QS", "TB"], "{stdout}");
    // online shares: 92.3 % at the province level, 65.1 % at the districts' shops
    for (level, want) in [("province", 92.3), ("district", 65.1)] {
        let l = line(&format!("online submissions at the {level} level:"));
        let got = num_after(&l, "level:");
        assert!((got - want).abs() <= 0.3, "{l}");
    }
    // at most 1 % of the year's records open and past due on 31 December
    let od = report["total"]["in_progress_overdue"].as_u64().unwrap();
    assert!(od * 100 <= 390_402, "{od} open and overdue");
    assert!(line("open and past their due time at the end of the year:").contains(&od.to_string()));
    // late rates vary between units of one kind: the land branches
    let branch_rates: Vec<f64> = report["by_unit"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(u, _)| u.ends_with(".VPDK"))
        .filter_map(|(_, c)| c["late_rate"].as_f64())
        .collect();
    let (lo, hi) = branch_rates
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
    assert!(
        branch_rates.len() == 10 && hi - lo >= 3.0,
        "{branch_rates:?}"
    );
    // each procedure at units of its sector and level: work permits only at
    // the labour department, birth/marriage/death registration only at
    // communes, a land branch only ever holds land records
    let units_csv = std::fs::read_to_string(demo.join("config/units.csv")).unwrap();
    let level_of: std::collections::HashMap<&str, &str> = units_csv
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0], f[2])
        })
        .collect();
    let procs_csv = std::fs::read_to_string(demo.join("config/procedures.csv")).unwrap();
    let sector_of: std::collections::HashMap<&str, &str> = procs_csv
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0], f[f.len() - 3])
        })
        .collect();
    let events = std::fs::read_to_string(demo.join("events.ndjson")).unwrap();
    let mut proc_of: std::collections::HashMap<String, String> = Default::default();
    let mut checked = 0;
    for l in events.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(l) else {
            continue;
        };
        let rid = v["record_id"].as_str().unwrap_or_default().to_string();
        if let Some(p) = v["procedure"].as_str() {
            proc_of.insert(rid.clone(), p.to_string());
        }
        let (Some(unit), Some(p)) = (v["unit"].as_str(), proc_of.get(&rid)) else {
            continue;
        };
        let Some(level) = level_of.get(unit) else {
            continue;
        }; // a unit missing from the directory
        checked += 1;
        if p == "1.014199" || p == "1.014196" {
            assert_eq!(unit, "SLDTBXH", "{l}");
        }
        if ["1.003003", "1.000894", "1.000656"].contains(&p.as_str()) {
            assert_eq!(*level, "commune", "{l}");
        }
        if unit.ends_with(".VPDK") {
            assert_eq!(sector_of[p.as_str()], "DD", "{l}");
        }
    }
    assert!(checked > 400_000, "{checked}");
    // every alert kind occurs; dead letters are the stream's malformed messages
    let alerts = std::fs::read_to_string(demo.join("alerts.ndjson")).unwrap();
    for kind in ["hanging", "due_soon", "overdue", "unrouted"] {
        assert!(
            alerts.contains(&format!("\"kind\": \"{kind}\"")),
            "no {kind} alert"
        );
    }
    let dead = std::fs::read_to_string(demo.join("dead-letter.ndjson")).unwrap();
    for l in dead.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert_eq!(v["reason"], "invalid_json", "{l}");
    }
    // how the e-mail lands on unit heads, with the default batch times
    // (docs/email-delivery.md): a few e-mails a working day, overdue and
    // unrouted told within a few working hours, no due_soon told after its due
    // time, no alert that never reached its unit
    let per_day = line("e-mails per unit per working day with mail:");
    assert!(num_after(&per_day, "median") <= 2.0, "{per_day}");
    assert!(num_after(&per_day, "p99") <= 4.0, "{per_day}");
    assert!(num_after(&per_day, "max") <= 6.0, "{per_day}");
    let delay = line("first e-mail to the unit after an alert fires");
    for kind in ["overdue", "unrouted"] {
        let l = &delay[delay.find(&format!(" {kind} ")).unwrap()..];
        assert!(num_after(l, "/") <= 4.0, "{kind} p95 in {delay}");
    }
    // every alert that fired a working hour or more reaches its unit, if only
    // as "ended before it was told"
    let never = line("never told to their unit");
    assert_eq!(num_after(&never, "working hour or more:"), 0.0, "{never}");
    assert_eq!(
        num_after(&never, "due_soon told only after the due time:"),
        0.0,
        "{never}"
    );
    // the e-mails of the year's last day, as .eml files a mail client opens:
    // updates and the morning digests, multipart, in Vietnamese, to units.csv addresses
    let mut emls: Vec<PathBuf> = std::fs::read_dir(demo.join("emails"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    emls.sort();
    assert!(emls.len() > 100, "{} e-mails", emls.len());
    let digests = emls
        .iter()
        .filter(|p| p.to_string_lossy().contains("-d-unit_"))
        .count();
    assert!(digests >= 10, "{digests} digests");
    for p in emls.iter().step_by(97) {
        let raw = std::fs::read(p).unwrap();
        let m = mail_parser::MessageParser::default().parse(&raw).unwrap();
        assert!(m.subject().unwrap().starts_with("[overdued] "), "{p:?}");
        assert!(m.body_text(0).unwrap().contains("Hạn trả kết quả"), "{p:?}");
        assert!(m.body_html(0).unwrap().contains("<table"), "{p:?}");
        let to = m
            .to()
            .unwrap()
            .first()
            .unwrap()
            .address()
            .unwrap()
            .to_string();
        assert!(to.ends_with("@example.vn"), "{to}");
        let date = m.date().unwrap();
        assert_eq!((date.year, date.month, date.day), (2024, 12, 31), "{p:?}");
    }
    // the report the demo wrote is what `replay` computes from the same files
    let cfg = demo.join("config/overdued.toml");
    let rep2 = dir.join("replayed.json");
    let st = Command::new(bin())
        .args(["replay", "--config"])
        .arg(&cfg)
        .args(["--until", "2025-01-01T00:00:00+07:00", "--report"])
        .arg(&rep2)
        .arg(demo.join("events.ndjson"))
        .output()
        .unwrap();
    assert!(st.status.success());
    assert_eq!(read_json(&rep2), report);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn gen_is_deterministic_and_calibrated_at_small_sizes() {
    let dir = tmp("gen");
    let run = |seed: &str, name: &str| {
        let p = dir.join(name);
        let st = Command::new(bin())
            .args([
                "gen",
                "--records",
                "30000",
                "--seed",
                seed,
                "--year",
                "2025",
                "--out",
            ])
            .arg(&p)
            .status()
            .unwrap();
        assert!(st.success());
        std::fs::read(&p).unwrap()
    };
    let a = run("11", "a.ndjson");
    assert_eq!(a, run("11", "b.ndjson"), "same seed, same stream");
    assert_ne!(a, run("12", "c.ndjson"), "another seed, another stream");
    // events are in time order per record, and every line is valid JSON but the few malformed ones
    let text = String::from_utf8(a).unwrap();
    let bad = text
        .lines()
        .filter(|l| serde_json::from_str::<serde_json::Value>(l).is_err())
        .count();
    assert!(bad * 1000 < text.lines().count(), "{bad} malformed lines");
    let demo_cfg = dir.join("cfg");
    // use the sample configuration shipped in config/
    let cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/overdued.toml");
    let rep = dir.join("report.json");
    let st = Command::new(bin())
        .args(["replay", "--config"])
        .arg(&cfg)
        .args(["--until", "2026-01-01T00:00:00+07:00", "--report"])
        .arg(&rep)
        .arg(dir.join("a.ndjson"))
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let report = read_json(&rep);
    for (level, target) in [("province", 99.76), ("district", 93.92), ("commune", 98.31)] {
        let (rate, _) = rates(&report, level);
        assert!(
            (rate - target).abs() <= 0.1,
            "{level}: {rate:.3} vs {target}"
        );
    }
    let _ = demo_cfg;
    let _ = std::fs::remove_dir_all(&dir);
}

/// GET over HTTP/1.0 on 127.0.0.1: (status, body).
fn http_get(url: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("an http:// link");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut s = std::net::TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let buf = String::from_utf8_lossy(&buf).into_owned();
    let status = buf.split_whitespace().nth(1).unwrap().parse().unwrap();
    (
        status,
        buf.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default(),
    )
}

#[test]
fn demo_serve_shows_the_years_end_pages_api_and_metrics_without_services() {
    use std::io::BufRead;
    let dir = tmp("serve");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(bin())
        .args(["demo", "--records", "4000", "--serve", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .current_dir(&dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let out = std::io::BufReader::new(child.stdout.take().unwrap());
    let (mut province, mut unit) = (None, None);
    for line in out.lines() {
        let line = line.unwrap();
        if let Some(u) = line.trim().strip_prefix("province page: ") {
            province = Some(u.to_string());
        }
        if line.trim().starts_with("unit head (") {
            unit = line.split_whitespace().last().map(str::to_string);
            break;
        }
    }
    let (province, unit) = (
        province.expect("a province link"),
        unit.expect("a unit link"),
    );
    assert!(province.starts_with(&format!("http://127.0.0.1:{port}/ui/province?t=admin.")));
    let (st, body) = http_get(&province);
    let body = body.replace("&#x2f;", "/");
    assert_eq!(st, 200, "{body}");
    assert!(
        body.contains("Toàn tỉnh") && body.contains("id=\"worst\""),
        "{body}"
    );
    assert!(body.contains("31/12/2024"), "as of the year's end: {body}");
    let (st, body) = http_get(&unit);
    assert_eq!(st, 200, "{body}");
    assert!(body.contains("data-record="), "{body}");
    // the unit token does not open the province page
    let token = unit.split("?t=").nth(1).unwrap();
    let (st, _) = http_get(&format!("http://127.0.0.1:{port}/ui/province?t={token}"));
    assert_eq!(st, 403);
    let (st, m) = http_get(&format!("http://127.0.0.1:{port}/metrics"));
    assert_eq!(st, 200);
    assert!(m.contains("overdued_records_open{"), "{m}");
    assert!(
        m.contains("overdued_acknowledgements_total{reason=\"other\"} 0"),
        "{m}"
    );
    let (st, a) = http_get(&format!("http://127.0.0.1:{port}/api/v1/alerts?limit=5"));
    assert_eq!(st, 200);
    let v: serde_json::Value = serde_json::from_str(&a).unwrap();
    // at most `limit` alerts a page, a record's alerts never split
    let n = v["alerts"].as_array().unwrap().len();
    assert!((1..=5).contains(&n), "{a}");
    assert!(v["next"].is_string(), "{a}");
    // rates by area: the ten districts, each over the threshold exactly when
    // its late rate is; provincial departments in none
    let (st, r) = http_get(&format!("http://127.0.0.1:{port}/api/v1/rates?by=area"));
    assert_eq!(st, 200, "{r}");
    let v: serde_json::Value = serde_json::from_str(&r).unwrap();
    assert_eq!(v["late_threshold_percent"], 5.0, "{r}");
    let rows = v["rates"].as_object().unwrap();
    let mut keys: Vec<&str> = rows.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        ["BTM", "DB", "DL", "DX", "HA", "NT", "PN", "QS", "TB", "TK"],
        "{r}"
    );
    let (_, all) = http_get(&format!("http://127.0.0.1:{port}/api/v1/rates?by=level"));
    let all: serde_json::Value = serde_json::from_str(&all).unwrap();
    let in_areas: u64 = rows.values().map(|x| x["received"].as_u64().unwrap()).sum();
    let below_province: u64 = ["district", "commune"]
        .iter()
        .map(|l| all["rates"][l]["received"].as_u64().unwrap())
        .sum();
    assert_eq!(in_areas, below_province, "{r}");
    for (area, x) in rows {
        let over = x["late_rate"].as_f64().is_some_and(|l| l > 5.0);
        assert_eq!(x["over_threshold"], over, "{area}: {x}");
    }
    let _ = child.kill();
    let _ = child.wait();
    std::fs::remove_dir_all(&dir).ok();
}

/// The two-level sample (merged Đà Nẵng, levels `agency` and `commune`,
/// calendar profiles, same-day certification) passes `check-config`, and a
/// stream generated from it replays with its levels and areas.
#[test]
fn the_two_level_sample_checks_and_replays_a_generated_stream() {
    let dir = tmp("danang");
    let cfg =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("config/examples/danang-2026/overdued.toml");
    let out = Command::new(bin())
        .args(["check-config", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("OK (60 units"), "{stdout}");
    let events = dir.join("events.ndjson");
    let st = Command::new(bin())
        .args([
            "gen",
            "--records",
            "20000",
            "--seed",
            "7",
            "--year",
            "2026",
            "--config",
        ])
        .arg(&cfg)
        .arg("--out")
        .arg(&events)
        .status()
        .unwrap();
    assert!(st.success());
    let report = dir.join("report.json");
    let st = Command::new(bin())
        .args(["replay", "--until", "2027-03-31T17:00:00+07:00", "--config"])
        .arg(&cfg)
        .arg("--report")
        .arg(&report)
        .arg(&events)
        .status()
        .unwrap();
    assert!(st.success());
    let r = read_json(&report);
    assert_eq!(r["total"]["received"], 20_000);
    let levels: Vec<&String> = r["by_level"].as_object().unwrap().keys().collect();
    assert_eq!(levels, ["agency", "commune"]);
    for level in ["agency", "commune"] {
        let (_, judged) = rates(&r, level);
        assert!(judged > 3_000, "{level}: {judged} judged");
    }
    // areas are the communes: every commune that received records is one,
    // counting only commune-level records; agencies are in none
    let areas = r["by_area"].as_object().unwrap();
    let units = std::fs::read_to_string(cfg.with_file_name("units.csv")).unwrap();
    let communes: Vec<&str> = units
        .lines()
        .filter(|l| l.split(',').nth(2) == Some("commune"))
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert!(areas.len() >= 30, "{} areas", areas.len());
    for (area, by_level) in areas {
        assert!(communes.contains(&area.as_str()), "{area} is not a commune");
        assert_eq!(
            by_level.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["commune"]
        );
        for k in [
            "received",
            "early",
            "on_time",
            "late",
            "in_progress_within",
            "in_progress_overdue",
            "paused",
            "rejected",
            "withdrawn",
            "on_time_rate",
            "late_rate",
            "over_threshold",
            "name",
        ] {
            assert_eq!(by_level["commune"][k], r["by_unit"][area][k], "{area}.{k}");
        }
    }
    // the land branches and the certification procedures are used
    assert!(r["by_unit"]["SNNMT.VPDK.CN1"]["received"].as_u64().unwrap() > 0);
    assert!(r["by_sector"]["CT"]["received"].as_u64().unwrap() > 0);
}

/// `replay --snapshot-out` then `replay --restore` on the rest of the stream
/// gives the alerts and the report of one replay of the whole stream.
#[test]
fn replay_continues_from_a_snapshot_as_if_never_stopped() {
    let dir = tmp("snapshot-split");
    let cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/overdued.toml");
    let events = dir.join("events.ndjson");
    let st = Command::new(bin())
        .args([
            "gen",
            "--records",
            "20000",
            "--seed",
            "5",
            "--year",
            "2025",
            "--out",
        ])
        .arg(&events)
        .status()
        .unwrap();
    assert!(st.success());
    let text = std::fs::read_to_string(&events).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let half = lines.len() / 2;
    std::fs::write(dir.join("a.ndjson"), lines[..half].join("\n") + "\n").unwrap();
    std::fs::write(dir.join("b.ndjson"), lines[half..].join("\n") + "\n").unwrap();
    let replay = |extra: &[&str], input: &str, alerts: &str| {
        let out = Command::new(bin())
            .args(["replay", "--config"])
            .arg(&cfg)
            .args(extra)
            .arg("--alerts")
            .arg(dir.join(alerts))
            .arg(dir.join(input))
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let until = ["--until", "2026-01-01T00:00:00+07:00", "--report"];
    replay(
        &[until[0], until[1], until[2], "full.json"],
        "events.ndjson",
        "full.ndjson",
    );
    let log = replay(
        &["--snapshot-out", "engine.snap"],
        "a.ndjson",
        "a-alerts.ndjson",
    );
    assert!(log.contains("snapshot of"), "{log}");
    let log = replay(
        &[
            "--restore",
            "engine.snap",
            until[0],
            until[1],
            until[2],
            "split.json",
        ],
        "b.ndjson",
        "b-alerts.ndjson",
    );
    assert!(log.contains("restored"), "{log}");
    let full = std::fs::read_to_string(dir.join("full.ndjson")).unwrap();
    let split = std::fs::read_to_string(dir.join("a-alerts.ndjson")).unwrap()
        + &std::fs::read_to_string(dir.join("b-alerts.ndjson")).unwrap();
    assert!(full.lines().count() > 1000, "a stream with alerts");
    assert!(full == split, "alerts differ after a restore");
    assert_eq!(
        read_json(&dir.join("split.json")),
        read_json(&dir.join("full.json"))
    );
    // a damaged snapshot is refused with its reason, not half-applied
    let mut snap = std::fs::read(dir.join("engine.snap")).unwrap();
    let mid = snap.len() / 2;
    snap[mid] ^= 1;
    std::fs::write(dir.join("bad.snap"), &snap).unwrap();
    let out = Command::new(bin())
        .args(["replay", "--config"])
        .arg(&cfg)
        .args(["--restore"])
        .arg(dir.join("bad.snap"))
        .arg(dir.join("b.ndjson"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.snap") && err.contains("checksum"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// An image written by the first snapshot format (8-byte event-id hashes,
/// timers as deltas; `tests/fixtures/snapshot-v1`, made by that version's
/// `replay --snapshot-out` from `a.ndjson`) still restores, and the replay of
/// `b.ndjson` goes on as one replay of both files would.
#[test]
fn a_version_1_snapshot_still_restores_and_goes_on() {
    let fx = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/snapshot-v1");
    let dir = tmp("snapshot-v1");
    let cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/overdued.toml");
    let snap = std::fs::read(fx.join("engine-v1.snap")).unwrap();
    assert_eq!(&snap[..4], b"OVS\x01", "the fixture is a version 1 image");
    let replay = |extra: &[&str], inputs: &[&str], alerts: &str| {
        let out = Command::new(bin())
            .args(["replay", "--config"])
            .arg(&cfg)
            .args(extra)
            .arg("--alerts")
            .arg(dir.join(alerts))
            .args(inputs.iter().map(|i| fx.join(i)))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let until = ["--until", "2026-01-01T00:00:00+07:00", "--report"];
    let full_report = dir.join("full.json").display().to_string();
    let split_report = dir.join("split.json").display().to_string();
    let snap_path = fx.join("engine-v1.snap").display().to_string();
    replay(
        &[until[0], until[1], until[2], &full_report],
        &["a.ndjson", "b.ndjson"],
        "full.ndjson",
    );
    replay(&[], &["a.ndjson"], "a-alerts.ndjson");
    replay(
        &[
            "--restore",
            &snap_path,
            until[0],
            until[1],
            until[2],
            &split_report,
        ],
        &["b.ndjson"],
        "b-alerts.ndjson",
    );
    let full = std::fs::read_to_string(dir.join("full.ndjson")).unwrap();
    let split = std::fs::read_to_string(dir.join("a-alerts.ndjson")).unwrap()
        + &std::fs::read_to_string(dir.join("b-alerts.ndjson")).unwrap();
    assert!(full.lines().count() > 100, "a stream with alerts");
    assert!(
        full == split,
        "alerts differ after restoring a version 1 image"
    );
    assert_eq!(
        read_json(&dir.join("split.json")),
        read_json(&dir.join("full.json"))
    );
    let _ = std::fs::remove_dir_all(&dir);
}
