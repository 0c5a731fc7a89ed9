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
