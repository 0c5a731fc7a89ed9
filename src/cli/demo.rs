//! `overdued demo`: the product on an embedded default, no services needed.
//!
//! Writes the embedded sample configuration to `<out>/config/`, generates a
//! province year (2024, calibrated to Quảng Nam's report, see [`crate::cli::sim`]),
//! replays it through the engine to the end of the year, writes
//! `events.ndjson`, `alerts.ndjson`, `report.json`, `dead-letter.ndjson`, the
//! e-mails of the year's last week as `.eml` under `emails/`, and
//! prints the on-time rates per level and the units over the 5 % late threshold —
//! all from the engine's own report, not from the generator's plan.

use crate::cli::error::{Context, Error};
use crate::cli::sim::{generate, GenOptions, TARGET_LATE};
use overdued::config::Config;
use overdued::replay::{Outputs, Replay};
use overdued::report::{Counts, Report};
use overdued::time::{days_from_civil, format_rfc3339};
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Instant as WallInstant;

/// The sample configuration shipped in `config/`, compiled in.
pub const EMBEDDED: &[(&str, &str)] = &[
    ("overdued.toml", include_str!("../../config/overdued.toml")),
    ("units.csv", include_str!("../../config/units.csv")),
    (
        "procedures.csv",
        include_str!("../../config/procedures.csv"),
    ),
    (
        "calendar/vn-2024.toml",
        include_str!("../../config/calendar/vn-2024.toml"),
    ),
    (
        "calendar/vn-2025.toml",
        include_str!("../../config/calendar/vn-2025.toml"),
    ),
    (
        "calendar/vn-2026.toml",
        include_str!("../../config/calendar/vn-2026.toml"),
    ),
    (
        "calendar/vn-2027.toml",
        include_str!("../../config/calendar/vn-2027.toml"),
    ),
    (
        "templates/vi/subject.txt",
        include_str!("../../config/templates/vi/subject.txt"),
    ),
    (
        "templates/vi/body.txt",
        include_str!("../../config/templates/vi/body.txt"),
    ),
    (
        "templates/vi/body.html",
        include_str!("../../config/templates/vi/body.html"),
    ),
    (
        "templates/en/subject.txt",
        include_str!("../../config/templates/en/subject.txt"),
    ),
    (
        "templates/en/body.txt",
        include_str!("../../config/templates/en/body.txt"),
    ),
    (
        "templates/en/body.html",
        include_str!("../../config/templates/en/body.html"),
    ),
];

/// The demo writes the e-mails of the last this-many days of the year (all of them
/// are decided; a whole year would be tens of thousands of files).
pub const EMAIL_DAYS: i64 = 1;

/// Writes the embedded configuration into `dir` and loads it.
pub fn embedded_config(dir: &Path) -> Result<Config, Error> {
    for (name, text) in EMBEDDED {
        let p = dir.join(name);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).ctx(format!("cannot create {}", parent.display()))?;
        }
        fs::write(&p, text).ctx(format!("cannot write {}", p.display()))?;
    }
    Ok(Config::load(&dir.join("overdued.toml"))?)
}

fn rate(v: Option<f64>) -> String {
    v.map(|r| format!("{r:.2}%")).unwrap_or_else(|| "-".into())
}

/// The rates tables: one row per level, the units over the threshold, and
/// (with `[report] area_level`) one row per area and level.
pub fn rates_table(rep: &Report, cfg: &Config) -> String {
    let threshold = cfg.report.late_threshold_percent;
    let mut s = String::new();
    let row = |s: &mut String, cells: [&str; 9]| {
        s.push_str(&format!(
            "{:<10} {:>9} {:>9} {:>9} {:>8} {:>12} {:>11} {:>9} {:>16}\n",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            cells[4],
            cells[5],
            cells[6],
            cells[7],
            cells[8]
        ));
    };
    row(
        &mut s,
        [
            "level",
            "received",
            "early",
            "on_time",
            "late",
            "on-time rate",
            "report 2024",
            "open",
            "of which overdue",
        ],
    );
    let mut all = Counts::default();
    let dir = &cfg.engine.directory;
    for level in dir.levels.iter().map(String::as_str).chain(["unknown"]) {
        let Some(c) = rep.by_level.get(level) else {
            continue;
        };
        all.add(c);
        let seed = TARGET_LATE
            .iter()
            .find(|(l, _)| *l == level)
            .map(|(_, late)| format!("{:.2}%", 100.0 - late))
            .unwrap_or_default();
        row(
            &mut s,
            [
                level,
                &c.received.to_string(),
                &c.early.to_string(),
                &c.on_time.to_string(),
                &c.late.to_string(),
                &rate(c.on_time_rate()),
                &seed,
                &(c.in_progress_within + c.in_progress_overdue + c.paused).to_string(),
                &c.in_progress_overdue.to_string(),
            ],
        );
    }
    row(
        &mut s,
        [
            "total",
            &all.received.to_string(),
            &all.early.to_string(),
            &all.on_time.to_string(),
            &all.late.to_string(),
            &rate(all.on_time_rate()),
            "",
            &(all.in_progress_within + all.in_progress_overdue + all.paused).to_string(),
            &all.in_progress_overdue.to_string(),
        ],
    );
    s.push_str(
        "  on-time rate = (early + on_time) / judged, judged = early + on_time + late (records closed by resolved/returned);\n  \
         report 2024 = the on-time rate the 2024 report of Quảng Nam's public-service centre gives for the level, which the\n  \
         generated stream is calibrated to; open = still in progress at the end of the year (within time, overdue or paused);\n  \
         of which overdue = past the due time and not closed yet: not in `late` (a record is judged when it closes).\n",
    );
    let mut over: Vec<(&String, &Counts, f64)> = rep
        .by_unit
        .iter()
        .filter_map(|(u, c)| c.late_rate().filter(|&r| r > threshold).map(|r| (u, c, r)))
        .collect();
    over.sort_by(|a, b| b.2.total_cmp(&a.2));
    s.push_str(&format!(
        "\nunits with a late rate over {threshold}% ({}):\n",
        over.len()
    ));
    for (code, c, r) in over {
        let (name, level) = dir
            .unit_id(code)
            .and_then(|id| dir.units.get(id as usize))
            .map(|u| (u.name.as_str(), dir.level_name(u.level)))
            .unwrap_or(("(not in the directory)", "unknown"));
        s.push_str(&format!(
            "  {code:<10} {name:<45} {level:<9} judged {:>6}  late {:>5}  {r:.2}%\n",
            c.judged(),
            c.late
        ));
    }
    if let (Some(areas), Some(level)) = (&rep.by_area, &cfg.report.area_level) {
        s.push_str(&format!(
            "\nby area ({level} and the units under it; * = late rate over {threshold}%):\n"
        ));
        s.push_str(&format!(
            "  {:<8} {:<32} {:<10} {:>8} {:>12} {:>10}\n",
            "area", "name", "level", "judged", "on-time rate", "late rate"
        ));
        for (area, by_level) in areas {
            let name = dir
                .unit_id(area)
                .and_then(|id| dir.units.get(id as usize))
                .map_or("", |u| u.name.as_str());
            for l in dir.levels.iter() {
                let Some(c) = by_level.get(l) else { continue };
                let mark = if cfg.report.over(c.late_rate()) {
                    " *"
                } else {
                    ""
                };
                s.push_str(&format!(
                    "  {area:<8} {:<32} {l:<10} {:>8} {:>12} {:>10}{mark}\n",
                    name.chars().take(32).collect::<String>(),
                    c.judged(),
                    rate(c.on_time_rate()),
                    rate(c.late_rate()),
                ));
            }
        }
    }
    s
}

/// Share of online submissions by level (province and district: the report's
/// figures for the provincial centre and the district one-stop shops, which
/// receive for every unit of their level), with the seed report's figure.
fn online_shares(e: &overdued::engine::Engine, cfg: &Config) -> Vec<(String, f64, &'static str)> {
    let dir = &cfg.engine.directory;
    let online = overdued::event::Channel::Online.index() as u8;
    let mut out = Vec::new();
    for (level, seed) in [("province", "92.3%"), ("district", "65.1%")] {
        let (mut n, mut on) = (0u64, 0u64);
        for (&(u, _, c), &k) in &e.received_by {
            if e.level(u) == level {
                n += k;
                on += if c == online { k } else { 0 };
            }
        }
        if n > 0 && dir.level_named(level).is_some() {
            out.push((level.to_string(), on as f64 / n as f64, seed));
        }
    }
    out
}

/// Runs the demo into `out`; with `serve`, then serves the year's end there.
pub fn run(
    out: &Path,
    records: u32,
    seed: u64,
    serve: Option<std::net::SocketAddr>,
) -> Result<(), Error> {
    let t0 = WallInstant::now();
    fs::create_dir_all(out).ctx(format!("cannot create {}", out.display()))?;
    let cfg = embedded_config(&out.join("config"))?;
    let year = 2024;
    let events_path = out.join("events.ndjson");
    let mut w = BufWriter::with_capacity(
        1 << 20,
        File::create(&events_path).ctx(events_path.display().to_string())?,
    );
    let summary = generate(
        &cfg,
        &GenOptions {
            records,
            seed,
            year,
        },
        &mut w,
    )
    .ctx("gen")?;
    drop(w);
    let t_gen = t0.elapsed();

    let create = |name: &str| -> Result<BufWriter<File>, Error> {
        let p = out.join(name);
        File::create(&p)
            .map(|f| BufWriter::with_capacity(1 << 20, f))
            .ctx(p.display().to_string())
    };
    let mut alerts = create("alerts.ndjson")?;
    let mut dead = create("dead-letter.ndjson")?;
    let until = cfg
        .engine
        .calendar
        .day_start(days_from_civil(year + 1, 1, 1));
    let emails_dir = out.join("emails");
    if emails_dir.is_dir() {
        // stale e-mails of an earlier run would mislead
        fs::remove_dir_all(&emails_dir).ctx(format!("cannot clear {}", emails_dir.display()))?;
    }
    let mut eml = super::eml_writer(&cfg, &emails_dir)?;
    // served pages: a secret for this run only, links on the listen address
    let links = serve.map(|addr| {
        overdued::link::Links::new(
            overdued::config::common::Secret::new(super::serve::draw_secret()),
            &format!("http://{addr}"),
            30 * 86_400 * overdued::time::SECOND,
        )
    });
    eml.links = links.clone();
    eml.write_from = until - EMAIL_DAYS * 86_400 * overdued::time::SECOND;
    eml.measure();
    let mut hook = |e: &overdued::engine::Engine, t: &overdued::engine::Transition| {
        eml.on_transition(e, t);
    };
    let mut replay = Replay::new(
        &cfg.engine,
        Outputs {
            alerts: Some(&mut alerts),
            dead_letter: Some(&mut dead),
            on_transition: Some(&mut hook),
        },
    );
    let path = events_path.to_string_lossy().to_string();
    replay.feed(&path).ctx(path.clone())?;
    let mut rep = replay.finish(Some(until)).ctx("writing output")?;
    rep.late_threshold_percent = cfg.report.late_threshold_percent;
    if let Some(level) = &cfg.report.area_level {
        rep.add_areas(|u| cfg.engine.directory.area_and_level(u, level));
    }
    let stats = replay.summary.clone();
    let online = online_shares(&replay.engine, &cfg);
    let alerts_by_kind = replay.engine.stats.alerts;
    let engine = serve.map(|_| replay.into_engine());
    let written = eml.finish(until)?;
    let decided = eml.decided;
    let landing = eml.stats.as_mut().map(|s| s.finish(until));
    let (firing, state_bytes) = eml.state_size();
    tracing::info!(
        firing,
        state_bytes,
        "notification state at the end of the year"
    );
    fs::write(out.join("report.json"), rep.to_json() + "\n").ctx("report.json")?;
    let secs = t0.elapsed().as_secs_f64();

    let mut o = std::io::stdout().lock();
    let _ = writeln!(
        o,
        "overdued demo: a synthetic province year {year} ({} records, {} events) replayed through the engine as of {}\n",
        summary.records,
        summary.lines,
        format_rfc3339(until)
    );
    let _ = write!(o, "{}", rates_table(&rep, &cfg));
    let _ = writeln!(o);
    for (level, share, seed) in &online {
        let _ = writeln!(
            o,
            "online submissions at the {level} level: {:.1}% (report 2024: {seed})",
            share * 100.0
        );
    }
    let overdue_open = rep.total.in_progress_overdue;
    let _ = writeln!(
        o,
        "open and past their due time at the end of the year: {overdue_open} of {} records ({:.2}%)",
        rep.total.received,
        100.0 * overdue_open as f64 / rep.total.received.max(1) as f64
    );
    let _ = writeln!(
        o,
        "\nalerts fired: {} hanging, {} due_soon, {} overdue, {} unrouted; {} events ignored (duplicates, closed records); {} lines dead-lettered",
        alerts_by_kind[1], alerts_by_kind[2], alerts_by_kind[3], alerts_by_kind[0], stats.ignored, stats.rejected_total()
    );
    let _ = writeln!(
        o,
        "e-mails: {decided} over the year (grouped per unit); the last {EMAIL_DAYS} days' {written} written to {}/emails/ as .eml",
        out.display()
    );
    if let Some(l) = &landing {
        let _ = write!(o, "{}", landing_table(l));
    }
    let _ = writeln!(
        o,
        "wrote {0}/events.ndjson, {0}/alerts.ndjson, {0}/report.json, {0}/dead-letter.ndjson, {0}/config/ in {1:.1} s (generation {2:.1} s, replay {3:.0} events/s)",
        out.display(),
        secs,
        t_gen.as_secs_f64(),
        stats.lines as f64 / stats.elapsed.as_secs_f64().max(1e-9)
    );
    drop(o);
    if let (Some(addr), Some(engine), Some(links)) = (serve, engine, links) {
        super::serve::serve(super::serve::Served {
            addr,
            cfg: &cfg,
            engine,
            notifier: eml.into_notifier(),
            links,
            // the year's last second: "this month" is December
            as_of: until - overdued::time::SECOND,
            events: &events_path,
        })?;
    }
    Ok(())
}

/// How the e-mails land on unit heads (docs/email-delivery.md, "What a unit
/// head receives").
fn landing_table(l: &overdued::notify::stats::MailSummary) -> String {
    use overdued::engine::AlertKind;
    let mut out = format!(
        "e-mails per unit per working day with mail: median {}, p99 {}, max {} ({} unit-days)\n",
        l.per_unit_day.median, l.per_unit_day.p99, l.per_unit_day.max, l.per_unit_day.n
    );
    out.push_str("first e-mail to the unit after an alert fires, working hours (median / p95):");
    for k in AlertKind::ALL {
        let d = &l.delay_hours[k as usize];
        out.push_str(&format!(" {} {:.1} / {:.1};", k.as_str(), d.median, d.p95));
    }
    out.pop();
    let never: u64 = l.never_told.iter().sum();
    out.push_str(&format!(
        "\nnever told to their unit after firing a working hour or more: {never} ("
    ));
    for k in AlertKind::ALL {
        out.push_str(&format!("{} {}, ", k.as_str(), l.never_told[k as usize]));
    }
    out.truncate(out.len() - 2);
    out.push_str(&format!(
        "); due_soon told only after the due time: {}\n",
        l.due_soon_late
    ));
    out
}
