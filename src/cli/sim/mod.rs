//! `overdued gen`: a synthetic, province-like stream of record events.
//!
//! Calibrated to the 2024 report of Quảng Nam province (390,402 records a year):
//! * on-time rates by level — province 99.76 %, district 93.92 %, commune 98.31 %
//!   ([`TARGET_LATE`]); met exactly, not just on average: the generator decides
//!   which records are late with per-unit quotas over the records it closes in
//!   the year, and computes every due time with the engine's own calendar and
//!   pause rules, so the engine's judgement of the stream lands on the targets;
//! * by area ([`AREA_LATE`]): Bắc Trà My's district level 97.5 % on time, its
//!   communes 95.7 %; the districts whose district level is over 5 % late are
//!   exactly Quế Sơn, Thăng Bình, Phú Ninh and Duy Xuyên; the other areas share
//!   the rest of their level, each within ±25 % of the average;
//! * online share — 92.3 % at the provincial centre, 65.1 % at district one-stop
//!   shops; communes (not in the report) are assumed at 45 %;
//! * each procedure at units of its sector and level ([`competent`]: work
//!   permits at the labour department, civil status at communes, land at the
//!   land-registration branches, which the district one-stop shop forwards
//!   its offices' records to);
//! * lateness concentrated in land (district land-registration branches), then
//!   natural resources–environment and finance–planning offices
//!   ([`late_weight`]), each unit with its own factor (0.55–1.45), so units of
//!   one kind differ; the other units are mostly on time;
//! * the commonest cause of lateness is a hanging record: most late records get
//!   no `advanced` after they are received or forwarded until they are resolved,
//!   days after the due date; some on-time records hang for a day or two too;
//! * supplements (pauses, restart or extend per the configured policy), financial
//!   obligations (extend), apology extensions on some late records, rejections,
//!   withdrawals, returns after resolution, forwards from district one-stop shops
//!   to their offices, a few forwards to units missing from the directory
//!   (`unrouted`, then corrected), a few redelivered duplicates and a few
//!   malformed messages (dead letters).
//!
//! Assumptions where the report gives no figure (documented in the README):
//! volume by level 27 % province / 33 % district / 40 % commune; records due in
//! the new year are still in progress at the year's end, those due in it close
//! in it (late only if the lateness still fits in the year), so under 1 % of
//! the year's records are open and overdue on 31 December.

use overdued::config::Config;
use overdued::engine::calendar::{Calendar, DurationUnit};
use overdued::engine::SupplementPolicy;
use overdued::time::{days_from_civil, write_rfc3339_offset, Instant, HOUR, SECOND};
use std::io::{self, Write};

/// Target late rates (percent of judged records) by level: 100 − on-time rate.
pub const TARGET_LATE: [(&str, f64); 3] =
    [("province", 0.24), ("district", 6.08), ("commune", 1.69)];

/// Which of the calibration's three levels a configured level plays: its own
/// name if it is one of them, else by position (the first is the top, the
/// last the communes, any other the middle) — so a two-level directory
/// (`agency`, `commune`) gets the province's and the communes' profiles.
fn role(levels: &[String], level: usize) -> &'static str {
    match levels.get(level).map(String::as_str) {
        Some("province") => "province",
        Some("district") => "district",
        Some("commune") => "commune",
        _ if level == 0 => "province",
        _ if level + 1 >= levels.len() => "commune",
        _ => "district",
    }
}

/// Late rates (percent of judged records) of named areas' levels, from the
/// seed report: Bắc Trà My's district level 2.5 % (on time 97.5 %) and its
/// communes 4.3 % (95.7 %); the districts over 5 % are exactly Quế Sơn, Thăng
/// Bình, Phú Ninh and Duy Xuyên. The other areas of a level share what is left
/// of its [`TARGET_LATE`] (3.5 % on average for the district level, 1.4 % for
/// the communes).
pub const AREA_LATE: [(&str, &str, f64); 6] = [
    ("BTM", "district", 2.5),
    ("BTM", "commune", 4.3),
    ("QS", "district", 10.5),
    ("TB", "district", 11.2),
    ("PN", "district", 9.4),
    ("DX", "district", 9.8),
];

/// Procedures only a provincial department handles (work permits for
/// foreigners are the labour department's).
const PROVINCIAL_ONLY: [&str; 2] = ["1.014199", "1.014196"];

/// Procedures only a commune handles (birth, marriage and death registration).
const COMMUNE_ONLY: [&str; 3] = ["1.003003", "1.000894", "1.000656"];

/// Whether an office may handle a procedure: its sector, and the level of
/// competence the catalogue's name or code implies.
fn competent(o: Office, proc_code: &str, proc_name: &str) -> bool {
    let province = PROVINCIAL_ONLY.contains(&proc_code) || proc_name.contains("UBND tỉnh");
    let district = proc_name.contains("UBND huyện") || proc_name.contains("yếu tố nước ngoài");
    let commune = COMMUNE_ONLY.contains(&proc_code);
    match o {
        Office::Department => !district && !commune,
        Office::Commune => !province && !district,
        _ => !province && !commune,
    }
}

/// Records a year in the calibration province.
pub const PROVINCE_YEAR_RECORDS: u32 = 390_402;

/// Options of `gen`.
#[derive(Debug, Clone)]
pub struct GenOptions {
    /// Number of records.
    pub records: u32,
    /// Random seed.
    pub seed: u64,
    /// Year of the receipts.
    pub year: i32,
}

/// What `gen` produced.
#[derive(Debug, Clone, Default)]
pub struct GenSummary {
    /// Records generated.
    pub records: u64,
    /// Event lines written (including duplicates and malformed ones).
    pub lines: u64,
    /// Malformed lines written.
    pub malformed: u64,
    /// Redelivered duplicate lines written.
    pub duplicates: u64,
    /// Records planned to be judged (closed by resolved/returned in the year).
    pub judged: u64,
    /// Of which planned late.
    pub late: u64,
}

/// SplitMix64: small, fast, good enough for synthetic data, reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn f(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
    fn chance(&mut self, p: f64) -> bool {
        self.f() < p
    }
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            lo
        } else {
            lo + self.below((hi - lo) as u64) as i64
        }
    }
}

/// What kind of office a unit is, from its code (the sample directory's scheme).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Office {
    Department,
    DistrictShop,
    LandBranch,
    Finance,
    Environment,
    Commune,
}

fn office_of(code: &str, role: &str) -> Office {
    match role {
        "commune" => Office::Commune,
        "district" if code.ends_with(".VPDK") => Office::LandBranch,
        "district" if code.ends_with(".TCKH") => Office::Finance,
        "district" if code.ends_with(".TNMT") => Office::Environment,
        "district" => Office::DistrictShop,
        _ => Office::Department,
    }
}

/// Sectors of a department the sample's codes do not name, from words of its
/// name (another province's directory, e.g. the two-level sample).
fn sectors_by_name(name: &str) -> &'static [&'static str] {
    let n = name.to_lowercase();
    const BY_WORD: [(&str, &[&str]); 14] = [
        ("đăng ký đất đai", &["DD"]),
        ("nông nghiệp và môi trường", &["MT", "TNN", "DD", "NN"]),
        ("tài nguyên", &["MT", "TNN", "DD"]),
        ("tài chính", &["TC", "KD", "DT"]),
        ("xây dựng", &["XD", "GT"]),
        ("nội vụ", &["LD"]),
        ("lao động", &["LD"]),
        ("tư pháp", &["TP", "HT"]),
        ("y tế", &["YT"]),
        ("giáo dục", &["GD"]),
        ("công thương", &["CTH"]),
        ("nông nghiệp", &["NN"]),
        ("khu kinh tế", &["DT"]),
        ("khu công nghiệp", &["DT"]),
    ];
    BY_WORD
        .iter()
        .find(|(w, _)| n.contains(w))
        .map_or(&[], |(_, s)| s)
}

/// Relative lateness of an office: land first, then environment and finance.
fn late_weight(o: Office, code: &str) -> f64 {
    match o {
        Office::LandBranch => 3.0,
        Office::Environment => 1.4,
        Office::Finance => 1.2,
        Office::DistrictShop => 0.35,
        Office::Department => match code {
            "STNMT" | "VPDKDD" => 4.0,
            "SKHDT" | "STC" => 2.0,
            _ => 0.3,
        },
        Office::Commune => 1.0,
    }
}

/// Sectors an office handles.
/// `None` for a department the sample's codes do not name.
fn sectors_of(o: Office, code: &str) -> Option<&'static [&'static str]> {
    Some(match o {
        Office::LandBranch => &["DD"],
        Office::Finance => &["KD", "TC"],
        Office::Environment => &["MT", "TNN"],
        Office::DistrictShop => &["HT", "CT", "XD", "LD", "GD", "TP"],
        Office::Commune => &["HT", "CT", "LD", "TP"],
        Office::Department => match code {
            "STNMT" => &["MT", "TNN", "DD"],
            "VPDKDD" => &["DD"],
            "CCBVMT" => &["MT"],
            "SKHDT" => &["DT", "KD"],
            "STC" => &["TC"],
            "SXD" => &["XD"],
            "STP" => &["TP", "HT"],
            "SGTVT" => &["GT"],
            "SLDTBXH" => &["LD"],
            "SYT" => &["YT"],
            "SGDDT" => &["GD"],
            "SCT" => &["CTH"],
            "SNNPTNT" => &["NN"],
            // the sample's departments without a catalogued procedure
            "HCC" | "SNV" | "SVHTTDL" | "BQLKKT" => &[],
            _ => return None,
        },
    })
}

struct UnitPlan {
    id: u32,
    office: Office,
    late_w: f64,
    role: &'static str,
    /// The area (`[report] area_level`, or the `district` level) it is in.
    area: Option<String>,
    weight: f64,
    procedures: Vec<u32>,
    /// For district shops: offices of the same district to forward to.
    children: Vec<u32>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Fate {
    Judged,
    Rejected,
    Withdrawn,
    Open,
}

struct RecPlan {
    unit: u32,
    procedure: u32,
    received: Instant,
    channel: u8,
    due_at_given: bool,
    fate: Fate,
    late: bool,
    /// Closes in the year even if late or paused (so it may be either).
    late_ok: bool,
}

#[derive(Clone, Copy)]
enum Kind {
    Received { due_at: Option<Instant> },
    Forwarded { unit: u32 },
    ForwardedUnknown { code: u8 },
    Advanced,
    Paused { reason: u8 },
    Resumed,
    Extended { due_at: Instant },
    Resolved,
    Returned,
    Rejected,
    Withdrawn,
}

#[derive(Clone, Copy)]
struct Ev {
    at: Instant,
    rec: u32,
    seq: u16,
    kind: Kind,
    copy: u8, // 0 = normal, 1 = redelivered duplicate, 2 = malformed variant
}

const UNKNOWN_UNITS: [&str; 3] = ["VPDK.CHUAKHAIBAO", "PHONG.KT.HT", "UBND.XA.MOI"];

/// Working-hours instant `h` after `t` (a thin alias that reads better below).
fn fwd(cal: &Calendar, t: Instant, h: i64) -> Instant {
    cal.forward(t, h)
}

/// Generates the stream and writes it as NDJSON.
pub fn generate(cfg: &Config, opts: &GenOptions, w: &mut dyn Write) -> io::Result<GenSummary> {
    let cal = &cfg.engine.calendar;
    let dir = &cfg.engine.directory;
    let mut rng = Rng(opts.seed ^ 0x5eed_0f0d_d0e5);
    let year_end = cal.day_start(days_from_civil(opts.year + 1, 1, 1));
    let day_work = cal.day_working_time();

    // Units and what they handle.
    let mut units: Vec<UnitPlan> = Vec::new();
    for (i, u) in dir.units.iter().enumerate() {
        if u.code == "HCC" {
            continue; // the provincial centre receives for the departments
        }
        let role = role(&dir.levels, u.level.0 as usize);
        let office = office_of(&u.code, role);
        let handled = |wanted: &[&str]| -> Vec<u32> {
            dir.procedures
                .iter()
                .enumerate()
                .filter(|(_, p)| {
                    wanted.contains(&dir.sectors.name(p.sector))
                        && competent(office, &p.code, &p.name)
                })
                .map(|(k, _)| k as u32)
                .collect()
        };
        let known = sectors_of(office, &u.code);
        let mut procedures = handled(known.unwrap_or(&[]));
        // the sample's own departments handle what the table says, even nothing
        if procedures.is_empty() && !(office == Office::Department && known.is_some()) {
            procedures = handled(sectors_by_name(&u.name));
        }
        if procedures.is_empty() {
            continue;
        }
        // volume weight within the level
        let weight = match office {
            Office::LandBranch => 4.0,
            Office::DistrictShop => 3.0,
            Office::Finance | Office::Environment => 1.5,
            Office::Commune => 1.0 + rng.f(),
            Office::Department => match u.code.as_str() {
                "STNMT" | "VPDKDD" | "SKHDT" | "STP" | "SLDTBXH" => 3.0,
                _ => 1.0,
            },
        } * (0.7 + 0.6 * rng.f());
        let area_level = cfg
            .report
            .area_level
            .as_deref()
            .or(dir
                .levels
                .iter()
                .any(|l| l == "district")
                .then_some("district"))
            .and_then(|l| dir.level_named(l));
        // units of one kind differ: some keep their records moving better
        let spread = 0.55 + 0.9 * rng.f();
        units.push(UnitPlan {
            id: i as u32,
            office,
            late_w: late_weight(office, &u.code) * spread,
            role,
            area: area_level
                .and_then(|l| dir.area_of(i as u32, l))
                .map(|a| dir.units[a as usize].code.clone()),
            weight,
            procedures,
            children: Vec::new(),
        });
    }
    if units.is_empty() {
        return Err(io::Error::other(
            "the unit directory has no unit whose sectors the catalogue covers",
        ));
    }
    let codes: Vec<String> = dir.units.iter().map(|u| u.code.clone()).collect();
    for k in 0..units.len() {
        if units[k].office == Office::DistrictShop {
            let prefix = format!("{}.", codes[units[k].id as usize]);
            let children: Vec<usize> = (0..units.len())
                .filter(|&c| codes[units[c].id as usize].starts_with(&prefix))
                .collect();
            // the district's one-stop shop receives its offices' procedures
            // too, and passes them on (below)
            let mut procs = units[k].procedures.clone();
            for &c in &children {
                procs.extend(units[c].procedures.iter().copied());
            }
            procs.sort_unstable();
            procs.dedup();
            units[k].procedures = procs;
            units[k].children = children.iter().map(|&c| units[c].id).collect();
        }
    }
    let level_share = [("province", 0.27), ("district", 0.33), ("commune", 0.40)];
    // cumulative weights per level
    let pick_unit = |rng: &mut Rng| -> usize {
        let r = rng.f();
        let mut acc = 0.0;
        let mut level = "commune";
        for (l, s) in level_share {
            acc += s;
            if r < acc {
                level = l;
                break;
            }
        }
        let cands: Vec<usize> = (0..units.len())
            .filter(|&k| units[k].role == level)
            .collect();
        let cands = if cands.is_empty() {
            (0..units.len()).collect()
        } else {
            cands
        };
        let total: f64 = cands.iter().map(|&k| units[k].weight).sum();
        let mut x = rng.f() * total;
        for &k in &cands {
            x -= units[k].weight;
            if x <= 0.0 {
                return k;
            }
        }
        cands[cands.len() - 1]
    };

    // Working days of the year, to place receipts.
    let first_day = days_from_civil(opts.year, 1, 1);
    let last_day = days_from_civil(opts.year + 1, 1, 1);
    let working: Vec<i64> = (first_day..last_day)
        .filter(|&d| cal.is_working_day(d))
        .collect();
    if working.is_empty() {
        return Err(io::Error::other("no working day in that year"));
    }

    // Pass 1: who, what, when; the due time; which records close in the year.
    let mut plans: Vec<RecPlan> = Vec::with_capacity(opts.records as usize);
    for _ in 0..opts.records {
        let k = pick_unit(&mut rng);
        let u = &units[k];
        let procedure = u.procedures[rng.below(u.procedures.len() as u64) as usize];
        let online_share = match u.office {
            Office::Department => 0.923,
            Office::Commune => 0.45,
            _ => 0.651,
        };
        let online = rng.chance(online_share);
        let received = if online && rng.chance(0.35) {
            // online submissions arrive at any hour, any day
            let d = rng.range(first_day, last_day);
            cal.day_start(d) + rng.range(0, 86_400) * SECOND
        } else {
            let d = working[rng.below(working.len() as u64) as usize];
            fwd(
                cal,
                cal.opening(d),
                rng.range(0, day_work / SECOND) * SECOND,
            )
        };
        let channel = if online {
            1
        } else if rng.chance(0.02) {
            2
        } else {
            0
        };
        let r = rng.f();
        let fate = if r < 0.012 {
            Fate::Rejected
        } else if r < 0.017 {
            Fate::Withdrawn
        } else {
            Fate::Judged
        };
        plans.push(RecPlan {
            unit: k as u32,
            procedure,
            received,
            channel,
            due_at_given: rng.chance(0.05),
            fate,
            late: false,
            late_ok: false,
        });
    }

    // Timelines are built in pass 2; the due time needs the pause plan, so draw it
    // there too, but decide "closes within the year" from a conservative bound.
    let horizon = year_end - 2 * 86_400 * SECOND;
    let mut bounds: Vec<Instant> = Vec::with_capacity(plans.len());
    for p in &plans {
        let dur = dir.procedures[p.procedure as usize].duration;
        let due = cal.due(p.received, dur);
        // worst case: a pause of 10 working days + 12 working days late
        let worst = fwd(cal, due, 30 * day_work);
        bounds.push(worst);
    }
    for (p, &b) in plans.iter_mut().zip(&bounds) {
        let due = cal.due(p.received, dir.procedures[p.procedure as usize].duration);
        // a record due in the new year is still being worked on; one due in
        // this year closes in it (on time if it could not close late in it):
        // nothing is left open and overdue at the year's end but what the
        // province really carries over
        if p.fate == Fate::Judged && due >= horizon {
            p.fate = Fate::Open;
        }
        p.late_ok = b < horizon;
    }
    sort_by_time_quota(&mut plans, &units);

    // unit id → its plan, for the forwards below
    let plan_of: std::collections::HashMap<u32, usize> =
        units.iter().enumerate().map(|(k, u)| (u.id, k)).collect();

    // Pass 2: timelines.
    let policy = cfg.engine.rules.supplement_policy;
    let mut evs: Vec<Ev> = Vec::with_capacity(plans.len() * 6);
    let mut summary = GenSummary {
        records: plans.len() as u64,
        ..Default::default()
    };
    for (ri, p) in plans.iter().enumerate() {
        let rec = ri as u32;
        let mut seq = 0u16;
        let mut push = |evs: &mut Vec<Ev>, at: Instant, kind: Kind| {
            evs.push(Ev {
                at,
                rec,
                seq,
                kind,
                copy: 0,
            });
            seq += 1;
        };
        let u = &units[p.unit as usize];
        let dur = dir.procedures[p.procedure as usize].duration;
        let mut due = cal.due(p.received, dur);
        let due_at = p.due_at_given.then_some(due);
        let base = cal.working_between(p.received, due) / SECOND * SECOND;
        push(&mut evs, p.received, Kind::Received { due_at });
        // a minute of slack between consecutive events keeps them strictly ordered
        let mut t = p.received;
        // Steps before the close stay well inside the legal duration, so that a
        // record meant to be on time always has room to close on time.
        let maxstep = (cal.working_between(p.received, due) / 8).max(120 * SECOND);
        let step =
            |t: Instant, h: i64| -> Instant { fwd(cal, t, h.min(maxstep)).max(t + 60 * SECOND) };
        let hanging = if p.late {
            rng.chance(0.65)
        } else {
            rng.chance(0.06)
        };
        // district shops pass most records to their offices
        let fit: Vec<u32> = u
            .children
            .iter()
            .copied()
            .filter(|c| {
                plan_of
                    .get(c)
                    .is_some_and(|&x| units[x].procedures.contains(&p.procedure))
            })
            .collect();
        if u.office == Office::DistrictShop && !fit.is_empty() && rng.chance(0.9) {
            t = step(t, rng.range(HOUR / 4, 3 * HOUR));
            let to = fit[rng.below(fit.len() as u64) as usize];
            push(&mut evs, t, Kind::Forwarded { unit: to });
        }
        if rng.chance(0.0006) {
            // forwarded to a unit missing from the directory, corrected later
            t = step(t, rng.range(HOUR / 2, 4 * HOUR));
            push(
                &mut evs,
                t,
                Kind::ForwardedUnknown {
                    code: rng.below(UNKNOWN_UNITS.len() as u64) as u8,
                },
            );
            t = step(t, rng.range(HOUR, 12 * HOUR));
            push(
                &mut evs,
                t,
                Kind::Forwarded {
                    unit: units[p.unit as usize].id,
                },
            );
        }
        if !hanging {
            for _ in 0..1 + rng.below(3) {
                t = step(t, rng.range(HOUR / 6, 6 * HOUR));
                push(&mut evs, t, Kind::Advanced);
            }
        }
        // pauses: supplements and financial obligations
        if p.fate != Fate::Withdrawn && p.late_ok && rng.chance(0.10) {
            let room = cal.working_between(t, due);
            if room > 2 * HOUR {
                t = step(t, rng.range(HOUR, room.min(3 * day_work) / 2));
                let financial = matches!(dur.unit, DurationUnit::WorkingDays) && rng.chance(0.25);
                push(
                    &mut evs,
                    t,
                    Kind::Paused {
                        reason: if financial { 1 } else { 0 },
                    },
                );
                let paused_at = t;
                // the citizen takes as long as they take: not capped
                t = fwd(cal, t, rng.range(HOUR, 8 * day_work)).max(t + 60 * SECOND);
                push(&mut evs, t, Kind::Resumed);
                if !financial && policy == SupplementPolicy::Restart {
                    due = if due_at.is_some() {
                        cal.forward(t, base)
                    } else {
                        cal.due(t, dur)
                    };
                } else {
                    due = cal.forward(due, cal.working_between(paused_at, t));
                }
                if !hanging {
                    t = step(t, rng.range(HOUR / 6, 4 * HOUR));
                    push(&mut evs, t, Kind::Advanced);
                }
            }
        }
        let due_day = cal.local_day(due);
        match p.fate {
            Fate::Open => {
                // in progress at the end of the year: maybe one more action
                if !hanging && rng.chance(0.5) {
                    let a = step(t, rng.range(HOUR, 2 * day_work));
                    if a < year_end {
                        push(&mut evs, a, Kind::Advanced);
                    }
                }
            }
            Fate::Rejected | Fate::Withdrawn => {
                t = step(t, rng.range(HOUR, 3 * day_work));
                push(
                    &mut evs,
                    t,
                    if p.fate == Fate::Rejected {
                        Kind::Rejected
                    } else {
                        Kind::Withdrawn
                    },
                );
            }
            Fate::Judged => {
                summary.judged += 1;
                let close = if p.late {
                    summary.late += 1;
                    if rng.chance(0.3) {
                        // apology letter with a new appointment, sent before the due time
                        let before = cal
                            .backward(due, rng.range(HOUR, 2 * day_work))
                            .max(t + 60 * SECOND);
                        if before < due {
                            t = before;
                            let new_due = fwd(cal, due, rng.range(1, 6) * day_work);
                            push(&mut evs, t, Kind::Extended { due_at: new_due });
                        }
                    }
                    // resolved on a working day after the due date
                    let after = cal.close_of_business(due_day);
                    fwd(cal, after, rng.range(HOUR / 2, 10 * day_work)).max(t + 60 * SECOND)
                } else {
                    // on or before the due date, after the last event
                    let lo = t + 60 * SECOND;
                    let hi = due.min(cal.close_of_business(due_day));
                    if hi > lo {
                        if hanging || rng.chance(0.25) {
                            cal.backward(
                                hi,
                                rng.range(
                                    0,
                                    (cal.working_between(lo, hi)).min(day_work / 2).max(1),
                                ),
                            )
                        } else {
                            lo + rng
                                .range(0, (cal.working_between(lo, hi)).max(1) / 2)
                                .min(hi - lo)
                        }
                    } else {
                        lo
                    }
                };
                let returned_only = rng.chance(0.15);
                push(
                    &mut evs,
                    close,
                    if returned_only {
                        Kind::Returned
                    } else {
                        Kind::Resolved
                    },
                );
                if !returned_only && rng.chance(0.5) {
                    // handed over within two days (well inside `closed_retention`)
                    let r = close + rng.range(HOUR, 48 * HOUR);
                    if r < year_end {
                        push(&mut evs, r, Kind::Returned);
                    }
                }
            }
        }
    }
    // Redelivered duplicates and malformed messages, as a real topic has.
    let n = evs.len();
    for i in 0..n {
        if rng.chance(0.002) {
            let mut d = evs[i];
            d.copy = 1;
            evs.push(d);
        } else if rng.chance(0.0001) {
            let mut d = evs[i];
            d.copy = 2;
            d.seq = u16::MAX;
            evs.push(d);
        }
    }
    // The stream covers the year: what would happen later is not in it yet.
    let year_end_excl = year_end;
    evs.retain(|e| e.at < year_end_excl);
    evs.sort_by_key(|e| (e.at, e.rec, e.seq, e.copy));

    // Write.
    let ids: Vec<String> = plans
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let (y, m, d) = cal.local_date(p.received);
            let uid = units[p.unit as usize].id;
            format!(
                "000.{:02}.{:02}.H47-{:02}{:02}{:02}-{:04}",
                uid / 100 % 100,
                uid % 100,
                y % 100,
                m,
                d,
                i % 10_000
            )
        })
        .collect();
    // ids must be unique: the sequence number is per day and unit in real systems;
    // here i % 10000 with the date and unit is unique unless a unit gets over 10k
    // records a day, which the sizes used never reach. Make sure anyway.
    let ids = dedupe(ids);
    let mut out = Vec::with_capacity(1 << 20);
    for e in &evs {
        let p = &plans[e.rec as usize];
        write_event(&mut out, cal, dir, &units, &ids[e.rec as usize], p, e);
        summary.lines += 1;
        match e.copy {
            1 => summary.duplicates += 1,
            2 => summary.malformed += 1,
            _ => {}
        }
        if out.len() > 1 << 20 {
            w.write_all(&out)?;
            out.clear();
        }
    }
    w.write_all(&out)?;
    w.flush()?;
    Ok(summary)
}

fn dedupe(mut ids: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::with_capacity(ids.len());
    for (i, id) in ids.iter_mut().enumerate() {
        if !seen.insert(id.clone()) {
            *id = format!("{id}-{i}");
            seen.insert(id.clone());
        }
    }
    ids
}

/// Marks late records: per level, exactly round(target × judged) of them, shared
/// among units in proportion to volume × [`late_weight`] (largest remainder), and
/// spread evenly through each unit's year.
fn sort_by_time_quota(plans: &mut [RecPlan], units: &[UnitPlan]) {
    let n_units = units.len();
    let mut judged = vec![0u64; n_units];
    for p in plans.iter() {
        if p.fate == Fate::Judged {
            judged[p.unit as usize] += 1;
        }
    }
    let mut eligible = vec![0u64; n_units];
    for p in plans.iter() {
        if p.fate == Fate::Judged && p.late_ok {
            eligible[p.unit as usize] += 1;
        }
    }
    // groups of units with a number of late records to share: per level, the
    // named areas of [`AREA_LATE`], then the rest of the level
    let mut groups: Vec<(Vec<usize>, u64)> = Vec::new();
    for (level, pct) in TARGET_LATE {
        let members: Vec<usize> = (0..n_units).filter(|&k| units[k].role == level).collect();
        let total: u64 = members.iter().map(|&k| judged[k]).sum();
        let mut left = (pct / 100.0 * total as f64).round() as u64;
        let mut rest = members.clone();
        for (area, l, apct) in AREA_LATE {
            if l != level {
                continue;
            }
            let ms: Vec<usize> = members
                .iter()
                .copied()
                .filter(|&k| units[k].area.as_deref() == Some(area))
                .collect();
            if ms.is_empty() {
                continue;
            }
            rest.retain(|k| !ms.contains(k));
            let j: u64 = ms.iter().map(|&k| judged[k]).sum();
            let want = ((apct / 100.0 * j as f64).round() as u64).min(left);
            left -= want;
            groups.push((ms, want));
        }
        // the rest, area by area, each near the rest's average rate (±25 %, so
        // an area does not cross the threshold by chance), the total exact
        let mut areas: Vec<(Option<String>, Vec<usize>, u64)> = Vec::new();
        for &k in &rest {
            match areas.iter_mut().find(|a| a.0 == units[k].area) {
                Some(a) => {
                    a.1.push(k);
                    a.2 += judged[k];
                }
                None => areas.push((units[k].area.clone(), vec![k], judged[k])),
            }
        }
        let f = |i: usize| 0.75 + 0.5 * ((i * 7919) % 100) as f64 / 100.0;
        let fj: f64 = areas
            .iter()
            .enumerate()
            .map(|(i, a)| f(i) * a.2 as f64)
            .sum();
        let exact: Vec<f64> = areas
            .iter()
            .enumerate()
            .map(|(i, a)| left as f64 * f(i) * a.2 as f64 / fj.max(1.0))
            .collect();
        let mut wants: Vec<u64> = exact.iter().map(|x| x.floor() as u64).collect();
        let mut order: Vec<usize> = (0..exact.len()).collect();
        order.sort_by(|&x, &y| {
            (exact[y] - exact[y].floor()).total_cmp(&(exact[x] - exact[x].floor()))
        });
        let given: u64 = wants.iter().sum();
        for &i in order.iter().take(left.saturating_sub(given) as usize) {
            wants[i] += 1;
        }
        for ((_, ms, _), want) in areas.into_iter().zip(wants) {
            groups.push((ms, want));
        }
    }
    let mut quota = vec![0u64; n_units];
    for (members, want) in groups {
        // nothing judged: nothing to share
        if members.iter().all(|&k| judged[k] == 0) {
            continue;
        }
        let wsum: f64 = members
            .iter()
            .map(|&k| judged[k] as f64 * units[k].late_w)
            .sum();
        let mut exact: Vec<(usize, f64)> = members
            .iter()
            .map(|&k| {
                let w = units[k].late_w * judged[k] as f64;
                (k, (want as f64 * w / wsum).min(eligible[k] as f64))
            })
            .collect();
        let mut given = 0;
        for &(k, x) in &exact {
            quota[k] = x.floor() as u64;
            given += quota[k];
        }
        exact.sort_by(|a, b| (b.1 - b.1.floor()).total_cmp(&(a.1 - a.1.floor())));
        let mut i = 0;
        while given < want && i < exact.len() * 2 {
            let k = exact[i % exact.len()].0;
            if quota[k] < eligible[k] {
                quota[k] += 1;
                given += 1;
            }
            i += 1;
        }
    }
    let mut seen = vec![0u64; n_units];
    let mut order: Vec<usize> = (0..plans.len()).collect();
    order.sort_by_key(|&i| plans[i].received);
    for i in order {
        let p = &mut plans[i];
        if p.fate != Fate::Judged {
            continue;
        }
        if !p.late_ok {
            continue;
        }
        let k = p.unit as usize;
        let (q, n, s) = (quota[k], eligible[k], seen[k]);
        p.late = n > 0 && (s + 1) * q / n > s * q / n;
        seen[k] += 1;
    }
}

fn write_event(
    out: &mut Vec<u8>,
    cal: &Calendar,
    dir: &overdued::engine::directory::Directory,
    units: &[UnitPlan],
    id: &str,
    p: &RecPlan,
    e: &Ev,
) {
    let start = out.len();
    let off = cal.utc_offset_secs(e.at);
    out.extend_from_slice(b"{\"event_id\":\"");
    out.extend_from_slice(id.as_bytes());
    let _ = write!(out, "-{}\",\"record_id\":\"{}\",\"type\":\"", e.seq, id);
    let (name, unit, extra_due, reason): (&str, Option<&str>, Option<Instant>, Option<&str>) =
        match e.kind {
            Kind::Received { due_at } => (
                "received",
                Some(dir.units[units[p.unit as usize].id as usize].code.as_str()),
                due_at,
                None,
            ),
            Kind::Forwarded { unit } => (
                "forwarded",
                Some(dir.units[unit as usize].code.as_str()),
                None,
                None,
            ),
            Kind::ForwardedUnknown { code } => {
                ("forwarded", Some(UNKNOWN_UNITS[code as usize]), None, None)
            }
            Kind::Advanced => ("advanced", None, None, None),
            Kind::Paused { reason } => (
                "paused",
                None,
                None,
                Some(if reason == 1 {
                    "financial"
                } else {
                    "supplement"
                }),
            ),
            Kind::Resumed => ("resumed", None, None, None),
            Kind::Extended { due_at } => ("extended", None, Some(due_at), None),
            Kind::Resolved => ("resolved", None, None, None),
            Kind::Returned => ("returned", None, None, None),
            Kind::Rejected => ("rejected", None, None, None),
            Kind::Withdrawn => ("withdrawn", None, None, None),
        };
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\",\"at\":\"");
    write_rfc3339_offset(out, e.at, off);
    out.push(b'"');
    if let Some(u) = unit {
        out.extend_from_slice(b",\"unit\":\"");
        out.extend_from_slice(u.as_bytes());
        out.push(b'"');
    }
    if let Kind::Received { .. } = e.kind {
        let proc = &dir.procedures[p.procedure as usize];
        out.extend_from_slice(b",\"procedure\":\"");
        out.extend_from_slice(proc.code.as_bytes());
        out.extend_from_slice(b"\",\"channel\":\"");
        out.extend_from_slice(["in_person", "online", "postal"][p.channel as usize].as_bytes());
        out.push(b'"');
    }
    if let Some(d) = extra_due {
        out.extend_from_slice(b",\"due_at\":\"");
        write_rfc3339_offset(out, d, cal.utc_offset_secs(d));
        out.push(b'"');
    }
    if let Some(r) = reason {
        out.extend_from_slice(b",\"reason\":\"");
        out.extend_from_slice(r.as_bytes());
        out.push(b'"');
    }
    out.extend_from_slice(b"}\n");
    if e.copy == 2 {
        // a message cut short in transit: not JSON any more
        let len = out.len() - start;
        out.truncate(start + len / 2);
        out.push(b'\n');
    }
}
