//! What the commands print, seen from outside the process.

use std::process::{Command, Stdio};

/// Logs written to a file or a pipe carry no terminal colour codes.
#[test]
fn logs_to_a_pipe_have_no_colour_codes() {
    let root = env!("CARGO_MANIFEST_DIR");
    // the examples' calendar does not cover the current year: a WARN line
    let out = Command::new(env!("CARGO_BIN_EXE_overdued"))
        .args(["--log-level", "info", "replay", "--config"])
        .arg(format!(
            "{root}/tests/fixtures/examples/config/overdued.toml"
        ))
        .arg("-")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("WARN"), "expected a warning: {err}");
    assert!(
        !err.contains('\u{1b}'),
        "colour codes in piped logs: {err:?}"
    );
}

/// `outbox list` shows a failed e-mail and its reason; `outbox retry` moves it
/// to `requeue/` (for the daemon), and refuses ids that are not failed e-mails.
#[test]
fn outbox_retry_requeues_failed_emails_for_the_daemon() {
    use overdued::notify::outbox::Outbox;
    use overdued::notify::Email;
    let state = std::env::temp_dir().join(format!("overdued-cli-outbox-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    let (o, _) = Outbox::open(&state).unwrap();
    for id in ["e1", "e2", "e3"] {
        o.put(&Email {
            id: id.into(),
            from: "a@x.vn".into(),
            to: vec!["b@y.vn".into()],
            bytes: b"Subject: t\r\n\r\nbody\r\n".to_vec(),
        })
        .unwrap();
    }
    o.move_to_failed("e1", "550 5.1.1 no such user").unwrap();
    o.move_to_failed("e2", "552 mailbox full").unwrap();
    drop(o);
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_overdued"))
            .arg("outbox")
            .args(args)
            .arg("--state")
            .arg(&state)
            .output()
            .unwrap()
    };
    let out = run(&["list"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("pending   e3"), "{text}");
    assert!(
        text.contains("failed    e1  550 5.1.1 no such user"),
        "{text}"
    );
    let out = run(&["retry", "e1"]);
    assert!(out.status.success(), "{out:?}");
    assert!(state.join("outbox/requeue/e1.eml").exists());
    assert!(!state.join("outbox/failed/e1.eml").exists());
    let out = run(&["retry", "e3"]);
    assert!(
        !out.status.success(),
        "a pending e-mail is not a failed one"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("e3"));
    let out = run(&["retry", "--failed"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&run(&["list"]).stdout).to_string();
    assert!(
        text.contains("requeued  e1") && text.contains("requeued  e2"),
        "{text}"
    );
    assert!(!text.contains("failed "), "{text}");
    // the daemon's side: taken back into the outbox as pending
    let (o, _) = Outbox::open(&state).unwrap();
    assert_eq!(o.take_requeued().unwrap(), vec!["e1", "e2"]);
    assert_eq!(o.pending().unwrap(), vec!["e1", "e2", "e3"]);
    let _ = std::fs::remove_dir_all(&state);
}

/// `--log-json` lines are JSON objects whose fields are plain values, not Rust
/// debug text.
#[test]
fn json_logs_carry_plain_values() {
    let state = std::env::temp_dir().join(format!("overdued-cli-json-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    let out = Command::new(env!("CARGO_BIN_EXE_overdued"))
        .args([
            "--log-json",
            "--log-level",
            "info",
            "outbox-send",
            "--state",
        ])
        .arg(&state)
        .args(["--smtp", "smtp://127.0.0.1:9?tls=none"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    let mut opened = None;
    for line in err.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(!line.contains("OpenReport"), "debug text in {line}");
        if v["fields"]["message"] == "outbox opened" {
            opened = Some(v);
        }
    }
    let v = opened.unwrap_or_else(|| panic!("no 'outbox opened' line: {err}"));
    assert_eq!(v["fields"]["pending"], 0, "{v}");
    assert_eq!(v["fields"]["torn_log_line"], false, "{v}");
    let _ = std::fs::remove_dir_all(&state);
}
