//! The layout rules of docs/architecture.md, checked on the source text: imports
//! flow one way (stages in data-flow order, leaves import nothing above them, the
//! loader is imported only by the commands), no circle between top-level
//! modules, and code and docs cite rules, not tracker numbers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The node a file belongs to: its top-level module under `src/`, with
/// `config::common` (the leaf every stage's settings use) apart from the loader.
fn node_of(rel: &str) -> Option<String> {
    let rel = rel.strip_prefix("src/")?;
    if rel == "lib.rs" || rel == "main.rs" {
        return None;
    }
    if rel == "config/common.rs" {
        return Some("config::common".into());
    }
    let first = rel.split('/').next()?;
    Some(first.trim_end_matches(".rs").to_string())
}

/// The code of a file without comments and without its unit-test module (tests
/// may load the sample configuration; they are not the product's imports).
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The nodes named by `crate::…` (library files) or `overdued::…` (commands),
/// including every item of a `use crate::{a, b::c}` group.
fn imports(code: &str, prefix: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find(prefix) {
        let after = &rest[i + prefix.len()..];
        // `xcrate::` is not `crate::`
        let boundary = rest[..i]
            .chars()
            .last()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        if boundary {
            if let Some(group) = after.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                // nested groups: take the first segment of each top-level item
                let mut depth = 0;
                let mut item = String::new();
                for c in group.chars() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            out.extend(path_node(item.trim()));
                            item.clear();
                            continue;
                        }
                        _ => {}
                    }
                    item.push(c);
                }
                out.extend(path_node(item.trim()));
                let _ = end;
            } else {
                out.extend(path_node(after));
            }
        }
        rest = &rest[i + prefix.len()..];
    }
    out
}

/// `config::common::X` → `config::common`; `engine::…` → `engine`.
fn path_node(path: &str) -> Option<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let first = ident(path);
    if first.is_empty() || first == "self" {
        return None;
    }
    if first == "config" {
        if let Some(tail) = path.strip_prefix("config::") {
            if ident(tail) == "common" {
                return Some("config::common".into());
            }
        }
    }
    Some(first)
}

/// node → the nodes it imports, for every file of `src/`.
fn graph_of(files: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (rel, text) in files {
        let Some(node) = node_of(rel) else { continue };
        if rel.ends_with("/tests.rs") {
            continue;
        }
        let prefix = if node == "cli" {
            "overdued::"
        } else {
            "crate::"
        };
        let mut deps = imports(&code(text), prefix);
        if node == "cli" {
            deps.retain(|d| d != "cli");
        }
        deps.remove(&node);
        g.entry(node).or_default().extend(deps);
    }
    g
}

/// Every arrow the architecture forbids, as `from -> to (rule)`.
fn violations(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    // node → what it may import, for the leaves and the early stages
    let only: &[(&str, &[&str])] = &[
        ("time", &[]),
        ("config::common", &["time"]),
        ("event", &["time"]),
        ("report", &["time", "config::common"]),
        ("engine", &["time", "event", "report", "config::common"]),
        (
            "alert",
            &["time", "event", "report", "engine", "config::common"],
        ),
    ];
    let mut out = Vec::new();
    for (node, deps) in g {
        if let Some((_, allowed)) = only.iter().find(|(n, _)| n == node) {
            for d in deps {
                if !allowed.contains(&d.as_str()) {
                    out.push(format!("{node} -> {d} ({node} imports only {allowed:?})"));
                }
            }
        }
        for d in deps {
            let rule = match d.as_str() {
                "cli" => Some("nothing imports the commands"),
                "config" if node != "cli" => {
                    Some("the configuration loader is imported only by the commands")
                }
                "daemon" if !matches!(node.as_str(), "cli" | "config") => {
                    Some("no stage imports the daemon")
                }
                "api" if !matches!(node.as_str(), "cli" | "config" | "daemon") => {
                    Some("the API is handed its state; only the daemon wires it")
                }
                _ => None,
            };
            if let Some(r) = rule {
                out.push(format!("{node} -> {d} ({r})"));
            }
        }
    }
    out
}

/// A circle, if the graph has one (as the list of nodes around it).
fn circle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == n) {
            let mut c = path[i..].to_vec();
            c.push(n.to_string());
            return Some(c);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_string());
        for d in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(d, g, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for n in g.keys() {
        if let Some(c) = visit(n, g, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

fn sources() -> BTreeMap<String, String> {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    files
        .into_iter()
        .map(|p| {
            let rel = p
                .strip_prefix(root())
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            (rel, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

#[test]
fn imports_flow_one_way() {
    let g = graph_of(&sources());
    // the check sees the modules it is about
    for n in [
        "engine",
        "alert",
        "notify",
        "daemon",
        "api",
        "cli",
        "config::common",
    ] {
        assert!(g.contains_key(n), "no module {n} found: {:?}", g.keys());
    }
    let v = violations(&g);
    assert!(v.is_empty(), "forbidden imports:\n{}", v.join("\n"));
}

#[test]
fn no_circle_between_top_level_modules() {
    let g = graph_of(&sources());
    assert_eq!(circle(&g), None, "import circle; the graph: {g:#?}");
}

#[test]
fn the_check_sees_a_forbidden_arrow() {
    let files: BTreeMap<String, String> = [
        (
            "src/engine/mod.rs",
            "use crate::{time::Instant, alert::AlertInfo};\n",
        ),
        ("src/alert/mod.rs", "use crate::engine::AlertKind;\n"),
        (
            "src/notify/mod.rs",
            "fn f() { crate::config::Config::load(p) }\n",
        ),
        (
            "src/api/mod.rs",
            "use crate::daemon::Shared; // crate::cli\n",
        ),
        ("src/daemon/mod.rs", "use crate::api::router;\n"),
        ("src/cli/run.rs", "use overdued::config::common::Secret;\n"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    let g = graph_of(&files);
    let v = violations(&g);
    assert!(v.iter().any(|x| x.starts_with("engine -> alert")), "{v:?}");
    assert!(
        v.iter().any(|x| x.starts_with("notify -> config ")),
        "{v:?}"
    );
    assert!(v.iter().any(|x| x.starts_with("api -> daemon")), "{v:?}");
    // a comment is not an import; the commands may use anything
    assert!(!v.iter().any(|x| x.contains("-> cli")), "{v:?}");
    assert!(!v.iter().any(|x| x.starts_with("cli ")), "{v:?}");
    assert_eq!(v.len(), 3, "{v:?}");
    let c = circle(&g).expect("engine -> alert -> engine is a circle");
    assert!(c.contains(&"engine".to_string()) && c.contains(&"alert".to_string()));
}

#[test]
fn code_and_docs_cite_rules_not_tracker_numbers() {
    // built at run time, so that this file does not match itself
    let word = format!("{}ssue", "i");
    let mut files = Vec::new();
    for d in ["src", "tests", "docs", "config", "deploy", "scripts"] {
        let mut all = Vec::new();
        walk(&root().join(d), &mut all);
        files.extend(all);
    }
    files.push(root().join("README.md"));
    files.push(root().join("BENCHMARKS.md"));
    let mut found = Vec::new();
    for p in files {
        let Ok(text) = std::fs::read_to_string(&p) else {
            continue;
        };
        for (n, line) in text.lines().enumerate() {
            let lower = line.to_lowercase();
            let mut rest = lower.as_str();
            while let Some(i) = rest.find(&word) {
                let after = rest[i + word.len()..]
                    .trim_start_matches('s')
                    .trim_start_matches([' ', '#']);
                if after.starts_with(|c: char| c.is_ascii_digit()) {
                    found.push(format!("{}:{}: {}", p.display(), n + 1, line.trim()));
                }
                rest = &rest[i + word.len()..];
            }
            if line.contains(&format!("{}PEC §", "S")) {
                found.push(format!("{}:{}: {}", p.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "cite the rule or docs/spec.md, not a tracker number:\n{}",
        found.join("\n")
    );
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        // installed tools (npm) and generated checks are not ours
        if p.file_name()
            .is_some_and(|n| n == "node_modules" || n == "generated")
        {
            continue;
        }
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[test]
fn the_contract_is_in_the_repository() {
    let spec = std::fs::read_to_string(root().join("docs/spec.md")).expect("docs/spec.md");
    for section in [
        "## 2. Events",
        "## 3. Deadlines",
        "## 4. Alerts",
        "## 5. Metrics",
        "## 6. Command line",
        "## 7. Configuration",
        "## 8. Decisions",
    ] {
        assert!(spec.contains(section), "docs/spec.md lacks {section:?}");
    }
    let arch =
        std::fs::read_to_string(root().join("docs/architecture.md")).expect("docs/architecture.md");
    for module in [
        "engine", "alert", "notify", "sink", "state", "config", "daemon", "api", "cli",
    ] {
        assert!(
            arch.contains(&format!("`{module}")),
            "docs/architecture.md does not place `{module}`"
        );
    }
    // the README points at the contract in the repository, not outside it
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    assert!(readme.contains("docs/spec.md"));
    assert!(
        !readme.contains("../shared"),
        "README links outside the repository"
    );
}

/// The rules cite the law in force: Decree 118/2025/NĐ-CP and Circular
/// 03/2025/TT-VPCP where the product speaks of its legal basis, and the
/// repealed Decree 107/2021 nowhere as the basis of a rule.
#[test]
fn the_legal_basis_cited_is_in_force() {
    let read = |p: &str| std::fs::read_to_string(root().join(p)).unwrap();
    for p in ["README.md", "docs/legal-basis.md", "config/overdued.toml"] {
        let t = read(p);
        assert!(
            t.contains("118/2025/NĐ-CP"),
            "{p} does not cite Decree 118/2025"
        );
    }
    for p in ["README.md", "docs/legal-basis.md"] {
        assert!(
            read(p).contains("03/2025/TT-VPCP"),
            "{p} does not cite Circular 03/2025"
        );
    }
    for p in [
        "README.md",
        "docs/spec.md",
        "config/overdued.toml",
        "config/examples/danang-2026/overdued.toml",
    ] {
        assert!(
            !read(p).contains("107/2021"),
            "{p} still cites Decree 107/2021"
        );
    }
    // the certification rule is quoted with its article
    assert!(read("docs/legal-basis.md").contains("23/2015/NĐ-CP art. 7"));
}
