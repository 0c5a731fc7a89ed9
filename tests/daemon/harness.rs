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

/// A suffix no other test run uses (process id and milliseconds): topic,
/// group and folder names on the shared broker.
pub fn unique_suffix() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_millis()
    )
}

/// Creates topics on the test broker; each must be new.
pub fn create_topics(brokers: &str, topics: &[rdkafka::admin::NewTopic<'_>]) {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    for r in rt
        .block_on(admin.create_topics(topics, &AdminOptions::new()))
        .unwrap()
    {
        if let Err((t, e)) = r {
            panic!("cannot create topic {t}: {e}");
        }
    }
}

/// The smallest directory: unit U1 (district) and procedure P1 (10 working days).
pub fn write_one_unit_directory(dir: &std::path::Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("units.csv"),
        "code,name,level,parent,emails,head_email\nU1,Một,district,,u1@example.vn,\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("procedures.csv"),
        "code,name,sector,duration,duration_unit\nP1,Thủ tục,DD,10,working_days\n",
    )
    .unwrap();
}

/// Starts `overdued run` on `dir/overdued.toml` (working folder `dir`), its log
/// in `dir/<log>`.
pub fn run_daemon(dir: &std::path::Path, log: &str) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_overdued"))
        .args(["--log-level", "info,librdkafka=warn", "run", "--config"])
        .arg(dir.join("overdued.toml"))
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join(log)).unwrap())
        .spawn()
        .unwrap()
}
