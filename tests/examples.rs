//! The worked examples of docs/spec.md (tests/fixtures/examples, copied from the shared
//! folder): each is replayed by the built binary exactly as its README says, from
//! its folder, and the three outputs are compared with the expected files:
//! alert lines as a multiset (the READMEs: "Compare alert lines as a set; times are
//! instants, any offset"), the report as JSON values (`as_of` as an instant), the
//! dead-letter lines as parsed JSON, in order.

mod replay_harness;

use replay_harness::*;
use serde_json::Value;
use std::path::Path;

/// Reads `--config` and `--until` from the example README's command line, so the
/// test runs exactly what the README says.
fn readme_args(dir: &Path) -> (String, Option<String>) {
    let readme = std::fs::read_to_string(dir.join("README.md")).expect("README.md");
    let line = readme
        .lines()
        .find(|l| l.trim_start().starts_with("overdued replay"))
        .expect("README has the replay command");
    let words: Vec<&str> = line.split_whitespace().collect();
    let arg = |name: &str| {
        words
            .iter()
            .position(|w| *w == name)
            .map(|i| words[i + 1].to_string())
    };
    assert_eq!(
        words.last(),
        Some(&"events.ndjson"),
        "README command: {line}"
    );
    (arg("--config").expect("--config"), arg("--until"))
}

fn run_example(name: &str, expected_until: Option<&str>) {
    let dir = examples_dir().join(name);
    let (config, until) = readme_args(&dir);
    // Hard-coded too, so that a README edit cannot silently change the test.
    assert_eq!(
        until.as_deref(),
        expected_until,
        "{name}: --until in README"
    );
    let out = run_replay(
        &dir,
        Path::new(&config),
        until.as_deref(),
        &["events.ndjson"],
        None,
    );

    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    let expected_alerts: Vec<Alert> = read("expected-alerts.ndjson")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(parse_alert)
        .collect();
    assert_alerts_multiset(&out.alerts, &expected_alerts, name);

    let expected_report: Value = serde_json::from_str(&read("expected-report.json")).unwrap();
    assert_report(&out.report, &expected_report, name);

    let expected_dl: Vec<Value> = read("expected-dead-letter.ndjson")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_dead_letter(&out.dead_letter, &expected_dl, name);
}

#[test]
fn example_01_makeup_saturday() {
    run_example("01-makeup-saturday", Some("2024-05-10T00:00:00+07:00"));
}

#[test]
fn example_02_working_hours() {
    run_example("02-working-hours", Some("2024-05-03T00:00:00+07:00"));
}

#[test]
fn example_03_tet_on_time() {
    run_example("03-tet-on-time", None);
}

#[test]
fn example_04_supplement_restart() {
    run_example("04-supplement-restart", Some("2024-03-15T00:00:00+07:00"));
}

#[test]
fn example_05_supplement_extend() {
    run_example("05-supplement-extend", Some("2024-03-15T00:00:00+07:00"));
}

#[test]
fn example_06_forward_unknown_unit() {
    run_example("06-forward-unknown-unit", None);
}

#[test]
fn example_07_bad_input() {
    run_example("07-bad-input", None);
}

/// Every example folder has a test above.
#[test]
fn every_example_folder_is_tested() {
    let mut names: Vec<String> = std::fs::read_dir(examples_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("events.ndjson").exists())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "01-makeup-saturday",
            "02-working-hours",
            "03-tet-on-time",
            "04-supplement-restart",
            "05-supplement-extend",
            "06-forward-unknown-unit",
            "07-bad-input"
        ]
    );
}
