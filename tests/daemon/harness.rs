//! Helpers shared by the daemon tests (the modules of `tests/daemon/`): free ports, a tiny
//! HTTP client, polling, and the services `scripts/test.sh` provides.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// A service address from the environment: `None` (skip, with a note) outside
/// CI, a failure in CI, where `scripts/test.sh` always sets it.
pub fn service(name: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(v) => Some(v),
        Err(_) if std::env::var("CI").is_ok() => {
            panic!("CI run without {name}: scripts/test.sh provides it")
        }
        Err(_) => {
            eprintln!("skipped: {name} not set (run the tests through scripts/test.sh)");
            None
        }
    }
}

/// A loopback port nobody listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET over plain HTTP/1.0: (status, body).
pub fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split_whitespace().nth(1)?.parse().ok()?;
    Some((
        status,
        buf.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default(),
    ))
}

/// Polls `f` every 100 ms until it holds; fails after `secs`.
pub fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(
            t.elapsed() < Duration::from_secs(secs),
            "timed out after {secs} s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The value of one series in a Prometheus exposition (`-1` when absent).
pub fn metric(body: &str, series: &str) -> f64 {
    body.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(-1.0)
}
