//! `overdued bench`: engine throughput and memory at province-and-beyond scale.
//!
//! Three measurements, single-threaded (one core), JSON decoding included:
//! 1. **fill** — `received` events until `open` records are open; resident
//!    memory per open record is measured here (RSS delta / records);
//! 2. **mixed** — `events` more events on random open records (advanced,
//!    forwarded, paused/resumed, extended, resolved, new receipts) with `open`
//!    records held, the clock moving forward so timers fire as they would;
//! 3. **snapshot** — the engine's image written and restored into a new
//!    engine (what the daemon does per partition): bytes per held record,
//!    encode and restore time, records restored per second;
//! 4. **fire** — every record's timers made due at once, then fired in one-hour
//!    steps: fires/s (one fire = one record timer handled, each firing one or
//!    more alerts).
//!
//! Input lines are generated before each timed chunk, outside the timing.

use overdued::config::Config;
use overdued::engine::Engine;
use overdued::event::decode;
use overdued::time::{write_rfc3339_offset, Instant, HOUR};
use std::io::Write;
use std::time::Instant as WallInstant;

/// Options.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Open records to hold.
    pub open: u64,
    /// Mixed events to apply once they are open.
    pub events: u64,
    /// Seed.
    pub seed: u64,
}

/// Results.
#[derive(Debug, Clone, Default)]
pub struct BenchResult {
    /// Fill phase: events/s.
    pub fill_eps: f64,
    /// Mixed phase: events/s.
    pub mixed_eps: f64,
    /// Open records during the mixed phase (average of start and end).
    pub mixed_open: u64,
    /// Fire phase: record timers fired per second.
    pub fires_per_s: f64,
    /// Fire phase: alert transitions per second.
    pub transitions_per_s: f64,
    /// Resident bytes per open record after the fill.
    pub bytes_per_record: f64,
    /// Peak resident set (kB).
    pub peak_rss_kb: u64,
    /// Snapshot: records held when it was taken.
    pub snapshot_records: u64,
    /// Snapshot: image size in bytes.
    pub snapshot_bytes: u64,
    /// Snapshot: seconds to write the image.
    pub snapshot_secs: f64,
    /// Snapshot: seconds to restore an engine from it.
    pub restore_secs: f64,
}

/// Resident set size of this process in bytes (Linux; 0 elsewhere).
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map(|pages| pages * 4096)
        .unwrap_or(0)
}

fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// xorshift64: fast, reproducible, good enough to pick records and units.
pub(crate) struct Rng(pub(crate) u64);
impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

const CHUNK: u64 = 1 << 20;

/// Event lines on numbered records (shared with `bench-kafka`).
pub(crate) struct Gen<'c> {
    cfg: &'c Config,
    pub(crate) procs: Vec<String>,
    pub(crate) units: Vec<String>,
    pub(crate) buf: Vec<u8>,
    next_event: u64,
}

impl<'c> Gen<'c> {
    /// A generator over the configuration's units and its procedures of at least
    /// five days (so that no deadline falls inside a benchmark).
    pub(crate) fn new(cfg: &'c Config, capacity: usize) -> Gen<'c> {
        Gen {
            cfg,
            procs: cfg
                .engine
                .directory
                .procedures
                .iter()
                .filter(|p| {
                    use overdued::engine::calendar::DurationUnit::{CalendarDays, WorkingDays};
                    p.duration.n >= 5 && matches!(p.duration.unit, WorkingDays | CalendarDays)
                })
                .map(|p| p.code.clone())
                .collect(),
            units: cfg
                .engine
                .directory
                .units
                .iter()
                .map(|u| u.code.clone())
                .collect(),
            buf: Vec::with_capacity(capacity),
            next_event: 0,
        }
    }
    /// The record id of record `n` (25 characters, like a real record code).
    pub(crate) fn id(n: u64) -> String {
        format!("000.00.20.H47-{n:011}")
    }
    /// Appends one event line for record `rec`.
    pub(crate) fn line(&mut self, rec: u64, kind: &str, at: Instant, extra: &str) {
        let off = self.cfg.engine.calendar.utc_offset_secs(at);
        let _ = write!(
            self.buf,
            "{{\"event_id\":\"e{}\",\"record_id\":\"{}\",\"type\":\"{kind}\",\"at\":\"",
            self.next_event,
            Self::id(rec)
        );
        write_rfc3339_offset(&mut self.buf, at, off);
        let _ = writeln!(self.buf, "\"{extra}}}");
        self.next_event += 1;
    }
    /// Appends a `received` line: random unit and procedure.
    pub(crate) fn received(&mut self, rec: u64, at: Instant, r: &mut Rng) {
        let u = &self.units[(r.next() % self.units.len() as u64) as usize];
        let p = &self.procs[(r.next() % self.procs.len() as u64) as usize];
        let extra = format!(",\"unit\":\"{u}\",\"procedure\":\"{p}\",\"channel\":\"online\"");
        self.line(rec, "received", at, &extra);
    }
}

impl Gen<'_> {
    /// Appends one event of the mixed workload on a random record below
    /// `next_rec`: 45 % advanced, 10 % forwarded, 5 % paused, 5 % resumed,
    /// 5 % extended, 10 % resolved, 20 % a new record (`next_rec` grows).
    /// Returns the record the event is about.
    pub(crate) fn mixed(&mut self, clock: Instant, next_rec: &mut u64, r: &mut Rng) -> u64 {
        let rec = r.next() % *next_rec;
        match r.next() % 100 {
            0..=44 => self.line(rec, "advanced", clock, ""),
            45..=54 => {
                let u = self.units[(r.next() % self.units.len() as u64) as usize].clone();
                self.line(rec, "forwarded", clock, &format!(",\"unit\":\"{u}\""));
            }
            55..=59 => self.line(rec, "paused", clock, ",\"reason\":\"supplement\""),
            60..=64 => self.line(rec, "resumed", clock, ""),
            65..=69 => {
                let mut d = Vec::new();
                write_rfc3339_offset(&mut d, clock + 200 * HOUR, 7 * 3600);
                self.line(
                    rec,
                    "extended",
                    clock,
                    &format!(",\"due_at\":\"{}\"", String::from_utf8_lossy(&d)),
                );
            }
            70..=79 => self.line(rec, "resolved", clock, ""),
            _ => {
                let n = *next_rec;
                self.received(n, clock, r);
                *next_rec += 1;
                return n;
            }
        }
        rec
    }
}

/// Applies every line of `buf`; returns the number of events.
fn apply_all(engine: &mut Engine, buf: &[u8]) -> u64 {
    let mut n = 0;
    for line in buf.split(|&b| b == b'\n') {
        if line.is_empty() {
            continue;
        }
        if let Ok(ev) = decode(line) {
            let _ = engine.apply(&ev);
        }
        engine.transitions.clear();
        n += 1;
    }
    n
}

/// Runs the benchmark.
pub fn run(cfg: &Config, opts: &BenchOptions, log: &mut dyn Write) -> BenchResult {
    let mut res = BenchResult::default();
    let mut r = Rng(opts.seed | 1);
    let mut g = Gen::new(cfg, (CHUNK * 200) as usize);
    let mut engine = Engine::new(&cfg.engine);
    // Receipts spread over working hours, 50 µs of event time apart at first.
    let t0 = overdued::time::parse_rfc3339("2025-03-03T07:00:00+07:00").unwrap_or(0);
    let mut clock = t0;
    let gap = |n: u64| -> i64 { (3 * HOUR * 5 / (n.max(1) as i64)).max(1) };
    let fill_gap = gap(opts.open);
    // Touch the input buffer first: its pages are not the engine's memory.
    let cap = g.buf.capacity();
    g.buf.resize(cap, 0);
    g.buf.clear();
    let base_rss = rss_bytes();

    // 1. fill
    let mut timed = 0.0;
    let mut done = 0;
    while done < opts.open {
        g.buf.clear();
        let n = CHUNK.min(opts.open - done);
        for i in 0..n {
            clock = cfg.engine.calendar.forward(clock, fill_gap);
            g.received(done + i, clock, &mut r);
        }
        let t = WallInstant::now();
        apply_all(&mut engine, &g.buf);
        timed += t.elapsed().as_secs_f64();
        done += n;
        let _ = writeln!(
            log,
            "fill: {done} records, {} open, {:.0} events/s",
            engine.held_records(),
            done as f64 / timed
        );
    }
    res.fill_eps = opts.open as f64 / timed;
    let rss = rss_bytes().saturating_sub(base_rss);
    res.bytes_per_record = rss as f64 / engine.open_records().max(1) as f64;
    let _ = writeln!(
        log,
        "memory: {} open records, {:.1} MB resident for the engine, {:.1} bytes per open record",
        engine.open_records(),
        rss as f64 / 1e6,
        res.bytes_per_record
    );

    // 2. mixed events on random records; new receipts replace resolved ones
    let mut next_rec = opts.open;
    let open_before = engine.open_records() as u64;
    let mut timed = 0.0;
    let mut done = 0;
    let mixed_gap = gap(opts.events.max(1)) / 4;
    while done < opts.events {
        g.buf.clear();
        let n = CHUNK.min(opts.events - done);
        for _ in 0..n {
            clock += mixed_gap;
            g.mixed(clock, &mut next_rec, &mut r);
        }
        let t = WallInstant::now();
        apply_all(&mut engine, &g.buf);
        timed += t.elapsed().as_secs_f64();
        done += n;
        let _ = writeln!(
            log,
            "mixed: {done} events, {} open, {:.0} events/s",
            engine.open_records(),
            done as f64 / timed
        );
    }
    if opts.events > 0 {
        res.mixed_eps = opts.events as f64 / timed;
    }
    res.mixed_open = (open_before + engine.open_records() as u64) / 2;

    // 3. snapshot and restore (the restored engine is dropped: the original fires)
    let mut image = Vec::new();
    let t = WallInstant::now();
    engine.snapshot(&mut image);
    res.snapshot_secs = t.elapsed().as_secs_f64();
    res.snapshot_records = engine.held_records() as u64;
    res.snapshot_bytes = image.len() as u64;
    let t = WallInstant::now();
    match Engine::restore(&cfg.engine, &image) {
        Ok(restored) => {
            res.restore_secs = t.elapsed().as_secs_f64();
            let _ = writeln!(
                log,
                "snapshot: {} records ({} open) in {} bytes ({:.1} per record), written in {:.2} s, restored in {:.2} s",
                res.snapshot_records,
                restored.open_records(),
                image.len(),
                image.len() as f64 / res.snapshot_records.max(1) as f64,
                res.snapshot_secs,
                res.restore_secs
            );
        }
        Err(e) => {
            let _ = writeln!(log, "snapshot: cannot restore: {e}");
        }
    }
    drop(image);

    // 4. fire everything: advance in one-hour steps over 60 days
    let fires0 = engine.stats.fires;
    let mut transitions = 0u64;
    let t = WallInstant::now();
    let end = clock + 60 * 24 * HOUR;
    let mut now = clock;
    while now < end {
        now += HOUR;
        engine.advance(now);
        transitions += engine.transitions.len() as u64;
        engine.transitions.clear();
    }
    let secs = t.elapsed().as_secs_f64();
    let fires = engine.stats.fires - fires0;
    res.fires_per_s = fires as f64 / secs;
    res.transitions_per_s = transitions as f64 / secs;
    let _ = writeln!(log, "fire: {fires} record timers ({transitions} alert transitions) in {secs:.2} s: {:.0} fires/s", res.fires_per_s);
    res.peak_rss_kb = peak_rss_kb();
    res
}

/// `overdued bench`: runs and prints the figures.
pub fn command(open: u64, events: u64, seed: u64) -> Result<(), super::error::Error> {
    let cfg = super::embedded()?;
    let r = run(
        &cfg,
        &BenchOptions { open, events, seed },
        &mut std::io::stderr(),
    );
    println!("open records              {open}");
    println!("fill (received) events/s  {:.0}", r.fill_eps);
    println!(
        "mixed events/s            {:.0}  (≈{} open)",
        r.mixed_eps, r.mixed_open
    );
    println!(
        "timer fires/s             {:.0}  ({:.0} alert transitions/s)",
        r.fires_per_s, r.transitions_per_s
    );
    println!("bytes per open record     {:.1}", r.bytes_per_record);
    let held = r.snapshot_records.max(1) as f64;
    println!(
        "snapshot bytes per record {:.1}  ({} records, {:.1} MB, written in {:.2} s)",
        r.snapshot_bytes as f64 / held,
        r.snapshot_records,
        r.snapshot_bytes as f64 / 1e6,
        r.snapshot_secs
    );
    println!(
        "restore records/s         {:.0}  ({:.2} s)",
        held / r.restore_secs.max(1e-9),
        r.restore_secs
    );
    println!(
        "peak RSS                  {:.1} MB",
        r.peak_rss_kb as f64 / 1024.0
    );
    Ok(())
}
