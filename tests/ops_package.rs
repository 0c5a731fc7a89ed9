//! The ops package checked with the real tools (issue: the ops package):
//! `deploy/prometheus/rules.yml` passes `promtool check rules`, and every rule
//! has a unit test in `rules_test.yml` or `rules_rates_test.yml` that
//! `promtool test rules` runs;
//! recording rules are named `level:metric:operation`; every metric the rules
//! use is one the daemon exports (docs/spec.md §5).

use std::path::Path;
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// promtool, or `None` outside CI when it is not installed.
fn promtool() -> Option<&'static str> {
    if Command::new("promtool").arg("--version").output().is_ok() {
        return Some("promtool");
    }
    assert!(std::env::var("CI").is_err(), "promtool missing in CI");
    eprintln!("skipped: promtool not installed");
    None
}

fn rules() -> serde_yaml_like::Rules {
    serde_yaml_like::read(&root().join("deploy/prometheus/rules.yml"))
}

/// Just enough of the rules file, read line by line (no YAML crate needed):
/// `record:` and `alert:` names and every `overdued_*` metric in `expr:`s.
mod serde_yaml_like {
    pub struct Rules {
        pub records: Vec<String>,
        pub alerts: Vec<String>,
        pub metrics: Vec<String>,
    }
    pub fn read(p: &std::path::Path) -> Rules {
        let text = std::fs::read_to_string(p).unwrap();
        let mut r = Rules {
            records: vec![],
            alerts: vec![],
            metrics: vec![],
        };
        for l in text.lines() {
            let t = l.trim_start();
            if t.starts_with('#') {
                continue;
            }
            if let Some(v) = t.strip_prefix("- record:") {
                r.records.push(v.trim().to_string());
            } else if let Some(v) = t.strip_prefix("- alert:") {
                r.alerts.push(v.trim().to_string());
            } else if !t.starts_with("summary:") {
                let mut rest = t;
                while let Some(i) = rest.find("overdued_") {
                    // a recording rule's own name (`x:overdued_y:z`) is not a metric
                    let before = rest[..i].chars().last();
                    let name: String = rest[i..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if before != Some(':') && !name.is_empty() {
                        r.metrics.push(name.clone());
                    }
                    rest = &rest[i + name.len().max(1)..];
                }
            }
        }
        r.metrics.sort();
        r.metrics.dedup();
        r
    }
}

#[test]
fn prometheus_rules_pass_promtool_check_and_their_unit_tests() {
    let Some(pt) = promtool() else {
        return;
    };
    let dir = root().join("deploy/prometheus");
    for args in [
        ["check", "rules", "rules.yml"],
        ["test", "rules", "rules_test.yml"],
        ["test", "rules", "rules_rates_test.yml"],
    ] {
        let out = Command::new(pt)
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn every_rule_is_unit_tested_and_named_by_the_convention() {
    let r = rules();
    assert!(r.records.len() >= 7 && r.alerts.len() >= 8);
    let dir = root().join("deploy/prometheus");
    let tests = std::fs::read_to_string(dir.join("rules_test.yml")).unwrap()
        + &std::fs::read_to_string(dir.join("rules_rates_test.yml")).unwrap();
    for rec in &r.records {
        let parts: Vec<&str> = rec.split(':').collect();
        assert!(
            parts.len() == 3 && parts.iter().all(|p| !p.is_empty()),
            "{rec}: recording rules are level:metric:operation"
        );
        assert!(
            tests.contains(&format!("expr: round({rec}"))
                || tests.contains(&format!("expr: {rec}")),
            "{rec} has no promql_expr_test"
        );
    }
    for a in &r.alerts {
        assert!(
            tests.contains(&format!("alertname: {a}\n")),
            "{a} has no alert_rule_test"
        );
    }
}

#[test]
fn every_metric_the_rules_use_is_exported() {
    let spec = std::fs::read_to_string(root().join("docs/spec.md")).unwrap();
    let r = rules();
    assert!(!r.metrics.is_empty());
    for m in &r.metrics {
        assert!(
            spec.contains(&format!("| `{m}` |")),
            "{m} is not a metric of docs/spec.md §5"
        );
    }
}
