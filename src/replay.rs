//! `overdued replay`: the engine over NDJSON files with a simulated clock (docs/spec.md §6).
//!
//! Events are applied in file order; the clock is the largest `at` seen; before
//! an event is applied every timer due at or before its `at` fires; after the last
//! event the clock moves to `--until` (default: the last event's `at`) and fires
//! what is due. Rejected lines go to the dead-letter output with their reason and
//! never move the clock. Ignored events (duplicates, closed records) do move it:
//! they are valid events of the stream.

use crate::engine::{Engine, Outcome, Settings, Transition};
use crate::event::{decode, RejectReason};
use crate::report::Report;
use crate::sink::write_alert;
use crate::source::replay::LineReader;
use crate::time::Instant;
use std::io::{self, Write};
use std::time::{Duration, Instant as WallInstant};

/// A callback that sees every alert transition.
pub type TransitionHook<'a> = &'a mut dyn FnMut(&Engine, &Transition);

/// Where the outputs go.
#[derive(Default)]
pub struct Outputs<'a> {
    /// `--alerts`: one NDJSON line per transition.
    pub alerts: Option<&'a mut dyn Write>,
    /// `--dead-letter`: one NDJSON line per rejected input line.
    pub dead_letter: Option<&'a mut dyn Write>,
    /// Called for every transition (e-mail rendering, demo statistics).
    pub on_transition: Option<TransitionHook<'a>>,
}

/// What a replay did.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Non-blank lines read.
    pub lines: u64,
    /// Events applied.
    pub applied: u64,
    /// Events ignored.
    pub ignored: u64,
    /// Lines rejected, by reason.
    pub rejected: [u64; RejectReason::ALL.len()],
    /// Alert transitions written.
    pub transitions: u64,
    /// Wall time spent.
    pub elapsed: Duration,
}

impl Summary {
    /// Total rejected lines.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.iter().sum()
    }
}

/// A replay in progress: feed it inputs, then finish.
pub struct Replay<'o> {
    /// The engine.
    pub engine: Engine,
    out: Outputs<'o>,
    buf: Vec<u8>,
    /// Counters.
    pub summary: Summary,
    started: WallInstant,
    last_progress: WallInstant,
    /// Print a progress line to stderr every second.
    pub progress: bool,
}

impl<'o> Replay<'o> {
    /// A replay over `cfg` writing to `out`.
    pub fn new(cfg: &Settings, out: Outputs<'o>) -> Replay<'o> {
        Replay::resume(Engine::new(cfg), out)
    }

    /// A replay that goes on from `engine` (e.g. restored from a snapshot).
    pub fn resume(engine: Engine, out: Outputs<'o>) -> Replay<'o> {
        let now = WallInstant::now();
        Replay {
            engine,
            out,
            buf: Vec::with_capacity(1 << 16),
            summary: Summary::default(),
            started: now,
            last_progress: now,
            progress: false,
        }
    }

    fn flush_transitions(&mut self) -> io::Result<()> {
        if self.engine.transitions.is_empty() {
            return Ok(());
        }
        let ts = std::mem::take(&mut self.engine.transitions);
        self.summary.transitions += ts.len() as u64;
        if let Some(cb) = self.out.on_transition.as_mut() {
            for t in &ts {
                cb(&self.engine, t);
            }
        }
        if self.out.alerts.is_some() {
            for t in &ts {
                write_alert(&mut self.buf, &self.engine, t);
            }
            if self.buf.len() > 1 << 16 {
                self.flush_buf()?;
            }
        }
        let mut ts = ts;
        ts.clear();
        self.engine.transitions = ts;
        Ok(())
    }

    fn flush_buf(&mut self) -> io::Result<()> {
        if let Some(w) = self.out.alerts.as_mut() {
            w.write_all(&self.buf)?;
        }
        self.buf.clear();
        Ok(())
    }

    fn dead_letter(
        &mut self,
        file: &str,
        line: u64,
        reason: RejectReason,
        raw: &[u8],
        truncated: bool,
        detail: &str,
    ) -> io::Result<()> {
        self.summary.rejected[reason.index()] += 1;
        tracing::warn!(
            file,
            line,
            reason = reason.as_str(),
            detail,
            "rejected event"
        );
        if let Some(w) = self.out.dead_letter.as_mut() {
            // Same layout as the spec's examples: {"file": …, "line": N, "reason": …, "raw": …}
            let mut l = Vec::with_capacity(raw.len() + 96);
            l.extend_from_slice(b"{\"file\": ");
            serde_json::to_writer(&mut l, file)?;
            write!(
                l,
                ", \"line\": {line}, \"reason\": \"{}\", \"raw\": ",
                reason.as_str()
            )?;
            serde_json::to_writer(&mut l, &String::from_utf8_lossy(raw))?;
            if truncated {
                l.extend_from_slice(b", \"truncated\": true");
            }
            l.extend_from_slice(b"}\n");
            w.write_all(&l)?;
        }
        Ok(())
    }

    /// Replays one input (`-` = stdin).
    pub fn feed(&mut self, path: &str) -> io::Result<()> {
        let mut reader = LineReader::open(path)?;
        self.feed_reader(path, &mut reader)
    }

    /// Replays lines from a reader, naming them `name` in dead letters.
    pub fn feed_reader(&mut self, name: &str, reader: &mut LineReader) -> io::Result<()> {
        while let Some(line) = reader.next_line()? {
            if line.bytes.iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            self.summary.lines += 1;
            let (number, truncated) = (line.number, line.truncated);
            // `line` borrows the reader; decode and apply before reading on.
            let rejection = match decode(line.bytes) {
                Err(r) => Some(r),
                Ok(ev) => match self.engine.apply(&ev) {
                    Outcome::Applied => {
                        self.summary.applied += 1;
                        None
                    }
                    Outcome::Ignored(_) => {
                        self.summary.ignored += 1;
                        None
                    }
                    Outcome::Rejected(r) => Some(r),
                },
            };
            if let Some(r) = rejection {
                let raw = line.bytes.to_vec();
                self.dead_letter(name, number, r.reason, &raw, truncated, &r.detail)?;
            }
            self.flush_transitions()?;
            if self.progress && self.summary.lines % 65_536 == 0 {
                self.maybe_progress();
            }
        }
        Ok(())
    }

    fn maybe_progress(&mut self) {
        let now = WallInstant::now();
        if now.duration_since(self.last_progress) >= Duration::from_secs(1) {
            self.last_progress = now;
            self.print_progress();
        }
    }

    fn print_progress(&self) {
        let secs = self.started.elapsed().as_secs_f64().max(1e-9);
        eprintln!(
            "replay: {} records, {} events, {:.0} events/s, {} open records",
            self.engine.held_records(),
            self.summary.lines,
            self.summary.lines as f64 / secs,
            self.engine.open_records()
        );
    }

    /// Writes the alert lines buffered so far, without moving the clock (what
    /// a snapshot between two inputs needs: [`Replay::finish`] fires what is due).
    pub fn flush(&mut self) -> io::Result<()> {
        self.flush_buf()?;
        if let Some(w) = self.out.alerts.as_mut() {
            w.flush()?;
        }
        Ok(())
    }

    /// Takes the engine out (after [`Replay::finish`]): `demo --serve` keeps
    /// serving its state.
    pub fn into_engine(self) -> Engine {
        self.engine
    }

    /// Advances to `until` (default: the clock), flushes, and returns the report.
    pub fn finish(&mut self, until: Option<Instant>) -> io::Result<Report> {
        let end = match (until, self.engine.clock()) {
            (Some(u), _) => u,
            (None, i64::MIN) => 0,
            (None, c) => c,
        };
        self.engine.advance(end);
        self.flush_transitions()?;
        self.flush_buf()?;
        if let Some(w) = self.out.alerts.as_mut() {
            w.flush()?;
        }
        if let Some(w) = self.out.dead_letter.as_mut() {
            w.flush()?;
        }
        self.summary.elapsed = self.started.elapsed();
        if self.progress && self.summary.elapsed >= Duration::from_secs(1) {
            self.print_progress();
        }
        Ok(self.engine.report(self.engine.clock()))
    }
}
