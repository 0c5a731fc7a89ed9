//! The Grafana dashboard of the ops package, `deploy/grafana/overdued.json`:
//!
//! * it type-checks as a Grafana `Dashboard` with the real schema types
//!   (npm `@grafana/schema`, `tsc --strict`, through
//!   `deploy/grafana/check/check.mjs`), and copies broken on purpose (an
//!   unknown key inside a panel, a wrong type, enum typos) fail that check
//!   with tsc naming the problem, so the check is known to be able to fail;
//! * panel ids are unique, panels do not overlap on the 24-column grid,
//!   every panel, query and query variable reads the `${datasource}`
//!   variable, the filter variables exist with the queries they need;
//! * the provisioning files load a Prometheus data source and the dashboard
//!   from the path the compose file mounts it at.
//!
//! The tsc checks need node and npm (`npm ci` is run in
//! `deploy/grafana/check` when `node_modules` is missing): in CI (`CI` set)
//! their absence fails; elsewhere those tests are skipped with a message.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::{json, Value};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn check_dir() -> PathBuf {
    root().join("deploy/grafana/check")
}

fn dashboard() -> Value {
    let p = root().join("deploy/grafana/overdued.json");
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// node with the check's packages installed, or `None` (skip) outside CI
/// when node or npm is missing. `npm ci` runs at most once per test process.
fn tooling() -> Option<()> {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let r = READY.get_or_init(|| {
        for tool in ["node", "npm"] {
            let ok = Command::new(tool)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success());
            if !ok {
                return Err(format!("{tool} not installed"));
            }
        }
        let dir = check_dir();
        let installed = ["@grafana/schema", "typescript"].iter().all(|m| {
            dir.join("node_modules")
                .join(m)
                .join("package.json")
                .is_file()
        });
        if !installed {
            let out = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&dir)
                .output()
                .expect("npm ci");
            assert!(
                out.status.success(),
                "npm ci in {} failed:\n{}{}",
                dir.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    });
    match r {
        Ok(()) => Some(()),
        Err(why) => {
            assert!(std::env::var_os("CI").is_none(), "{why} (needed in CI)");
            eprintln!("skipped: {why}");
            None
        }
    }
}

/// Runs check.mjs (generator + `tsc --strict --noEmit`) on `json`, under
/// the generated-file name `name`; returns success and the output.
fn run_check(json: &Path, name: &str) -> (bool, String) {
    let out = Command::new("node")
        .arg(check_dir().join("check.mjs"))
        .arg(json)
        .args(["--name", name])
        .current_dir(check_dir())
        .output()
        .expect("node check.mjs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Writes `broken` to a temporary file, runs the check on it, and asserts
/// that it fails with a tsc error containing every one of `expected`.
fn assert_check_fails(name: &str, broken: &Value, expected: &[&str]) {
    let dir = std::env::temp_dir().join(format!("overdued-grafana-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(format!("{name}.json"));
    std::fs::write(&p, serde_json::to_string_pretty(broken).unwrap()).unwrap();
    let (ok, out) = run_check(&p, name);
    let _ = std::fs::remove_file(&p);
    assert!(!ok, "{name}: the check passed a broken dashboard:\n{out}");
    assert!(out.contains("error TS"), "{name}: not a tsc error:\n{out}");
    for e in expected {
        assert!(
            out.contains(e),
            "{name}: tsc output does not name {e:?}:\n{out}"
        );
    }
}

/// Every panel, rows' nested panels included.
fn all_panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        out.push(p);
        if let Some(inner) = p["panels"].as_array() {
            out.extend(inner);
        }
    }
    out
}

/// The first panel of `type` (at the top level), mutable.
fn first_of_type<'a>(d: &'a mut Value, ty: &str) -> &'a mut Value {
    d["panels"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|p| p["type"] == ty)
        .unwrap_or_else(|| panic!("no {ty} panel"))
}

#[test]
fn the_dashboard_type_checks_as_a_grafana_dashboard_under_tsc_strict() {
    if tooling().is_none() {
        return;
    }
    let (ok, out) = run_check(&root().join("deploy/grafana/overdued.json"), "dashboard");
    assert!(
        ok,
        "deploy/grafana/overdued.json fails the schema check:\n{out}"
    );
}

#[test]
fn an_unknown_key_inside_a_panel_fails_the_schema_check() {
    if tooling().is_none() {
        return;
    }
    let mut d = dashboard();
    let p = first_of_type(&mut d, "timeseries").as_object_mut().unwrap();
    let g = p.remove("gridPos").unwrap();
    p.insert("gridPoss".into(), g);
    assert_check_fails("broken-unknown-key", &d, &["'\"gridPoss\"' does not exist"]);

    // deeper: a misspelled key in a query
    let mut d = dashboard();
    let t = first_of_type(&mut d, "stat")["targets"][0]
        .as_object_mut()
        .unwrap();
    let e = t.remove("expr").unwrap();
    t.insert("exp".into(), e);
    assert_check_fails("broken-target-key", &d, &["'\"exp\"' does not exist"]);
}

#[test]
fn a_wrong_type_fails_the_schema_check() {
    if tooling().is_none() {
        return;
    }
    let mut d = dashboard();
    first_of_type(&mut d, "table")["gridPos"]["h"] = json!("8");
    assert_check_fails(
        "broken-wrong-type",
        &d,
        &["Type 'string' is not assignable to type 'number'"],
    );
}

#[test]
fn enum_typos_fail_the_schema_check() {
    if tooling().is_none() {
        return;
    }
    // a numeric enum of the dashboard (DashboardCursorSync is 0, 1 or 2)
    let mut d = dashboard();
    d["graphTooltip"] = json!(5);
    assert_check_fails(
        "broken-graph-tooltip",
        &d,
        &["Type '5' is not assignable to type 'DashboardCursorSync"],
    );

    // a string enum of the field config (ThresholdsMode)
    let mut d = dashboard();
    first_of_type(&mut d, "stat")["fieldConfig"]["defaults"]["thresholds"]["mode"] =
        json!("absolut");
    assert_check_fails(
        "broken-thresholds-mode",
        &d,
        &["'\"absolut\"' is not assignable", "\"absolute\""],
    );

    // a string enum of a panel plugin's own options (GraphThresholdsStyleMode)
    let mut d = dashboard();
    first_of_type(&mut d, "timeseries")["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"] =
        json!({"mode": "dashd"});
    assert_check_fails(
        "broken-thresholds-style",
        &d,
        &["'\"dashd\"' is not assignable"],
    );

    // a panel type this dashboard's types do not know
    let mut d = dashboard();
    first_of_type(&mut d, "bargauge")["type"] = json!("bargauje");
    assert_check_fails(
        "broken-panel-type",
        &d,
        &["'\"bargauje\"' is not assignable"],
    );
}

#[test]
fn panel_ids_are_unique() {
    let d = dashboard();
    let mut seen = std::collections::BTreeSet::new();
    for p in all_panels(&d) {
        let id = p["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("panel {:?} has no id", p["title"]));
        assert!(seen.insert(id), "panel id {id} used twice");
    }
}

#[test]
fn panels_do_not_overlap_on_the_grid() {
    let d = dashboard();
    let mut boxes: Vec<(String, [u64; 4])> = Vec::new();
    for p in all_panels(&d) {
        let title = p["title"].as_str().unwrap_or("?").to_string();
        let g = &p["gridPos"];
        let n = |k: &str| {
            g[k].as_u64()
                .unwrap_or_else(|| panic!("{title}: gridPos.{k} missing"))
        };
        let (x, y, w, h) = (n("x"), n("y"), n("w"), n("h"));
        assert!(w > 0 && h > 0, "{title}: empty gridPos");
        assert!(x + w <= 24, "{title}: wider than the 24-column grid");
        for (other, [ox, oy, ow, oh]) in &boxes {
            let apart = x + w <= *ox || *ox + ow <= x || y + h <= *oy || *oy + oh <= y;
            assert!(apart, "{title} overlaps {other}");
        }
        boxes.push((title, [x, y, w, h]));
    }
}

#[test]
fn every_panel_and_query_reads_the_datasource_variable() {
    let d = dashboard();
    let want = json!({"type": "prometheus", "uid": "${datasource}"});
    let mut targets = 0;
    for p in all_panels(&d) {
        let title = p["title"].as_str().unwrap_or("?");
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"], want, "{title}: panel datasource");
        let ts = p["targets"]
            .as_array()
            .unwrap_or_else(|| panic!("{title}: no targets"));
        assert!(!ts.is_empty(), "{title}: no targets");
        for t in ts {
            assert_eq!(t["datasource"], want, "{title}: target {}", t["refId"]);
            assert!(
                t["expr"].as_str().is_some_and(|e| !e.is_empty()),
                "{title}: empty expr"
            );
            targets += 1;
        }
    }
    assert!(targets > 50, "only {targets} queries");
    for v in d["templating"]["list"].as_array().unwrap() {
        if v["type"] == "query" {
            assert_eq!(v["datasource"], want, "variable {}", v["name"]);
        }
    }
}

#[test]
fn the_datasource_and_filter_variables_exist() {
    let d = dashboard();
    let vars = d["templating"]["list"].as_array().unwrap();
    let var = |name: &str| {
        vars.iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no variable {name}"))
    };
    let ds = var("datasource");
    assert_eq!(ds["type"], "datasource");
    assert_eq!(ds["query"], "prometheus");
    for (name, query) in [
        ("level", "label_values(overdued_unit_info, level)"),
        (
            "area",
            "label_values(overdued_unit_info{level=~\"$level\"}, area)",
        ),
        (
            "unit",
            "label_values(overdued_unit_info{level=~\"$level\", area=~\"$area\"}, unit)",
        ),
        ("sector", "label_values(overdued_records_open, sector)"),
    ] {
        let v = var(name);
        assert_eq!(v["type"], "query", "{name}");
        assert_eq!(v["query"], query, "{name}");
        assert_eq!(v["multi"], true, "{name}: multi");
        assert_eq!(v["includeAll"], true, "{name}: include All");
    }
    // every variable a query uses is defined
    let text = serde_json::to_string(&d).unwrap();
    for used in ["$level", "$area", "$unit", "$sector", "$instance"] {
        assert!(text.contains(used), "{used} is never used");
        var(&used[1..]);
    }
}

#[test]
fn provisioning_loads_the_dashboard_from_where_it_is_mounted() {
    let read =
        |p: &str| std::fs::read_to_string(root().join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    let provider = read("deploy/grafana/provisioning/dashboards/overdued.yaml");
    for line in [
        "apiVersion: 1",
        "type: file",
        "path: /var/lib/grafana/dashboards",
    ] {
        assert!(provider.contains(line), "dashboard provider lacks {line:?}");
    }
    let ds = read("deploy/grafana/provisioning/datasources/prometheus.yaml");
    for line in [
        "apiVersion: 1",
        "type: prometheus",
        "uid: prometheus",
        "url: http://prometheus:9090",
    ] {
        assert!(ds.contains(line), "datasource provisioning lacks {line:?}");
    }
    // the datasource variable's default is the provisioned data source
    let d = dashboard();
    let v = d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "datasource")
        .unwrap();
    assert_eq!(v["current"]["value"], "prometheus");
    // where the compose file mounts them, the provider finds the dashboard
    if let Ok(compose) = std::fs::read_to_string(root().join("deploy/compose.yaml")) {
        assert!(
            compose.contains("./grafana/overdued.json:/var/lib/grafana/dashboards/overdued.json"),
            "deploy/compose.yaml does not mount the dashboard under /var/lib/grafana/dashboards"
        );
        assert!(
            compose.contains("./grafana/provisioning:/etc/grafana/provisioning"),
            "deploy/compose.yaml does not mount deploy/grafana/provisioning"
        );
    }
}
