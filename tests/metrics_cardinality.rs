//! The cardinality guard (docs/spec.md §5.1): the `unit`, `sector` and
//! `level` labels of `/metrics` come from the directory and the catalogue,
//! never from event strings. Records of units and sectors the configuration
//! does not know are counted under `unknown`, so 10,000 distinct unknown unit
//! codes (and sector strings) in events make no more series than ten do.

use overdued::config::Config;
use overdued::engine::Engine;
use overdued::event::decode;
use overdued::metrics::{render, Snapshot, UnitInfo};
use std::path::Path;

fn config() -> Config {
    Config::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("config/overdued.toml"))
        .unwrap_or_else(|e| panic!("config/overdued.toml: {e}"))
}

/// An engine fed `n` records from `n` distinct unknown units with `n` distinct
/// unknown sectors (half of them resolved, so the judged counters count too),
/// plus one record of a known unit and procedure.
fn engine_after(cfg: &Config, n: usize) -> Engine {
    let mut e = Engine::new(&cfg.engine);
    let mut lines = vec![
        r#"{"event_id":"k1","record_id":"K1","type":"received","at":"2026-03-02T08:00:00+07:00","unit":"STNMT","procedure":"1.004227"}"#.to_string(),
    ];
    for i in 0..n {
        lines.push(format!(
            r#"{{"event_id":"r{i}","record_id":"U{i}","type":"received","at":"2026-03-02T09:00:00+07:00","unit":"NOPE-{i}","sector":"S{i}","due_at":"2026-03-20T17:00:00+07:00","channel":"online"}}"#
        ));
        if i % 2 == 0 {
            lines.push(format!(
                r#"{{"event_id":"d{i}","record_id":"U{i}","type":"resolved","at":"2026-03-03T09:00:00+07:00"}}"#
            ));
        }
    }
    for l in &lines {
        let ev = decode(l.as_bytes()).unwrap_or_else(|r| panic!("{l}: {r:?}"));
        e.apply(&ev);
    }
    e
}

/// The sample lines of `/metrics` (no comments) of the engine families.
fn series(cfg: &Config, e: &Engine) -> Vec<String> {
    let mut s = Snapshot {
        units: std::sync::Arc::new(UnitInfo::of_directory(
            &cfg.engine.directory,
            cfg.report.area_level.as_deref(),
        )),
        late_threshold: Some(0.05),
        ..Snapshot::default()
    };
    s.add_engine(e);
    render(&s)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

#[test]
fn ten_thousand_unknown_unit_codes_make_no_more_series_than_ten() {
    let cfg = config();
    let few = series(&cfg, &engine_after(&cfg, 10));
    let many_engine = engine_after(&cfg, 10_000);
    assert_eq!(
        many_engine.open_records(),
        1 + 5_000,
        "the records are held"
    );
    let many = series(&cfg, &many_engine);
    assert_eq!(
        few.len(),
        many.len(),
        "series grew with the unknown codes:\n{}",
        many.iter()
            .filter(|l| !few
                .iter()
                .any(|f| f.split(' ').next() == l.split(' ').next()))
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    // the unknown records are counted, under `unknown`
    let line = |name: &str| {
        many.iter()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in\n{}", many.join("\n")))
            .rsplit(' ')
            .next()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        line(r#"overdued_records_open{level="unknown",unit="unknown",sector="unknown"}"#),
        "5000"
    );
    assert_eq!(
        line(
            r#"overdued_records_received_total{level="unknown",unit="unknown",sector="unknown",channel="online"}"#
        ),
        "10000"
    );
    assert_eq!(
        line(
            r#"overdued_records_judged_total{level="unknown",unit="unknown",sector="unknown",timeliness="early"}"#
        ),
        "5000"
    );
    // a known unit and a catalogue sector keep their own labels
    assert!(
        many.iter().any(|l| l
            .starts_with(r#"overdued_records_open{level="province",unit="STNMT",sector="DD"} 1"#)),
        "{}",
        many.join("\n")
    );
    assert!(
        !many
            .iter()
            .any(|l| l.contains("NOPE-") || l.contains("\"S1")),
        "an event string became a label"
    );
}

#[test]
fn unit_info_has_one_series_per_directory_unit_with_its_area() {
    let cfg = config();
    let lines = series(&cfg, &Engine::new(&cfg.engine));
    let info: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("overdued_unit_info{"))
        .collect();
    assert_eq!(info.len(), cfg.engine.directory.units.len());
    assert!(
        cfg.report.area_level.is_some(),
        "the sample config sets areas"
    );
    // a district's own unit is its area; a province department is in none
    assert!(
        info.iter()
            .any(|l| l.contains(r#"unit="BTM",level="district",area="BTM""#)),
        "{info:?}"
    );
    assert!(
        info.iter()
            .any(|l| l.contains(r#"unit="STNMT",level="province",area="""#)),
        "{info:?}"
    );
    assert!(lines.contains(&"overdued_late_threshold_ratio 0.05".to_string()));
}
