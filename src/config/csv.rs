//! The directory's CSV files: `units.csv` and `procedures.csv`, checked row by
//! row (errors name the file, the line and the column).

use super::common::{read, valid_code, valid_email, ConfigError};
use crate::engine::calendar::{DurationUnit, LegalDuration};
use crate::engine::directory::{Level, Unit};
use std::collections::{BTreeSet, HashMap};
use std::path::Path;

fn csv_err(path: &Path, line: Option<u64>, field: &str, msg: impl Into<String>) -> ConfigError {
    ConfigError {
        file: path.to_path_buf(),
        line: line.map(|l| l as usize),
        field: Some(field.to_string()),
        message: msg.into(),
    }
}

/// Reads a CSV whose header is `want`, optionally followed by some of
/// `optional` in that order; yields (line, fields), the optional ones that are
/// absent filled with "".
fn read_csv(
    path: &Path,
    want: &[&str],
    optional: &[&str],
) -> Result<Vec<(u64, Vec<String>)>, ConfigError> {
    let text = read(path)?;
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let header = rdr
        .headers()
        .map_err(|e| csv_err(path, Some(1), "header", e.to_string()))?
        .clone();
    let got: Vec<&str> = header.iter().collect();
    let extra = got.len().saturating_sub(want.len());
    if got.len() < want.len()
        || got[..want.len()] != *want
        || got[want.len()..] != optional[..extra.min(optional.len())]
    {
        let optional = if optional.is_empty() {
            String::new()
        } else {
            format!(" (then optionally {})", optional.join(","))
        };
        return Err(csv_err(
            path,
            Some(1),
            "header",
            format!(
                "expected columns {}{optional} (got {})",
                want.join(","),
                got.join(",")
            ),
        ));
    }
    let width = want.len() + optional.len();
    let mut rows = Vec::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| {
            let line = e.position().map(|p| p.line());
            csv_err(path, line, "row", e.to_string())
        })?;
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        let mut fields: Vec<String> = rec.iter().map(|s| s.to_string()).collect();
        fields.resize(width, String::new());
        rows.push((line, fields));
    }
    Ok(rows)
}

/// At most this many errors are reported per file: a file with every row
/// wrong is wrong in one way, and a screen of repeats hides the cause.
const MAX_ERRORS: usize = 20;

/// Checks one `units.csv` row (all but its parent) against the configured
/// levels and calendar profiles.
fn unit_row(
    path: &Path,
    line: u64,
    f: &[String],
    levels: &[String],
    profiles: &[String],
) -> Result<Unit, ConfigError> {
    let l = Some(line);
    let code = &f[0];
    if !valid_code(code) {
        return Err(csv_err(
            path,
            l,
            "code",
            format!("{code:?} is not a unit code (letters, digits, '.', '-', '_')"),
        ));
    }
    let level = levels
        .iter()
        .position(|x| *x == f[2])
        .map(|i| Level(i as u8))
        .ok_or_else(|| {
            csv_err(
                path,
                l,
                "level",
                format!(
                    "must be one of [directory] levels: {} (got {:?})",
                    levels.join(", "),
                    f[2]
                ),
            )
        })?;
    let calendar = match f[6].as_str() {
        "" => 0,
        name => match profiles.iter().position(|p| p == name) {
            Some(i) => i as u16 + 1,
            None => {
                let known = if profiles.is_empty() {
                    "none is configured".to_string()
                } else {
                    profiles.join(", ")
                };
                return Err(csv_err(
                    path,
                    l,
                    "calendar",
                    format!("{name:?} is not a [calendar.profiles] name ({known})"),
                ));
            }
        },
    };
    let emails: Vec<String> = f[4]
        .split(';')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    for e in &emails {
        if !valid_email(e) {
            return Err(csv_err(
                path,
                l,
                "emails",
                format!("{e:?} is not an e-mail address"),
            ));
        }
    }
    let head = f[5].trim();
    if !head.is_empty() && !valid_email(head) {
        return Err(csv_err(
            path,
            l,
            "head_email",
            format!("{head:?} is not an e-mail address"),
        ));
    }
    Ok(Unit {
        code: code.clone(),
        name: f[1].clone(),
        level,
        calendar,
        parent: None,
        emails,
        head_email: (!head.is_empty()).then(|| head.to_string()),
    })
}

/// Loads `units.csv`: `code,name,level,parent,emails,head_email[,calendar]`.
/// Every row is checked; the errors of all of them are returned (up to
/// [`MAX_ERRORS`]).
pub fn load_units(
    path: &Path,
    levels: &[String],
    profiles: &[String],
) -> Result<Vec<Unit>, Vec<ConfigError>> {
    let rows = read_csv(
        path,
        &["code", "name", "level", "parent", "emails", "head_email"],
        &["calendar"],
    )
    .map_err(|e| vec![e])?;
    let mut units = Vec::with_capacity(rows.len());
    let mut ids: HashMap<String, usize> = HashMap::new();
    let mut parents = Vec::new();
    let mut errors = Vec::new();
    for (line, f) in rows {
        let unit = match unit_row(path, line, &f, levels, profiles) {
            Ok(u) => u,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        if ids.contains_key(&unit.code) {
            errors.push(csv_err(
                path,
                Some(line),
                "code",
                format!("unit {:?} is listed twice", unit.code),
            ));
            continue;
        }
        ids.insert(unit.code.clone(), units.len());
        parents.push((line, f[3].clone()));
        units.push(unit);
    }
    let parent_lines = parents.clone();
    for (i, (line, p)) in parents.into_iter().enumerate() {
        if p.is_empty() {
            continue;
        }
        match ids.get(&p) {
            Some(&j) if j != i => units[i].parent = Some(j as u32),
            Some(_) => errors.push(csv_err(
                path,
                Some(line),
                "parent",
                "a unit cannot be its own parent",
            )),
            // a parent whose own row is wrong was reported there
            None if errors.is_empty() => errors.push(csv_err(
                path,
                Some(line),
                "parent",
                format!("unit {p:?} is not in the directory"),
            )),
            None => {}
        }
    }
    if !errors.is_empty() {
        errors.truncate(MAX_ERRORS);
        return Err(errors);
    }
    // parent chains must end: escalation walks them
    for (start, &(line, _)) in parent_lines.iter().enumerate() {
        let (mut i, mut steps) = (start, 0);
        while let Some(p) = units[i].parent {
            i = p as usize;
            steps += 1;
            if steps > units.len() {
                return Err(vec![csv_err(
                    path,
                    Some(line),
                    "parent",
                    format!("the parents of unit {:?} form a cycle", units[start].code),
                )]);
            }
        }
    }
    Ok(units)
}

/// A procedure: code, name, sector, legal duration.
pub type Procedure = (String, String, String, LegalDuration);

/// Checks one `procedures.csv` row.
fn procedure_row(path: &Path, line: u64, f: &[String]) -> Result<Procedure, ConfigError> {
    let l = Some(line);
    if !valid_code(&f[0]) {
        return Err(csv_err(
            path,
            l,
            "code",
            format!("{:?} is not a procedure code", f[0]),
        ));
    }
    if !valid_code(&f[2]) {
        return Err(csv_err(
            path,
            l,
            "sector",
            format!("{:?} is not a sector code", f[2]),
        ));
    }
    let unit = DurationUnit::parse(&f[4]).ok_or_else(|| {
        csv_err(
            path,
            l,
            "duration_unit",
            format!(
                "must be working_days, working_hours, calendar_days or same_day (got {:?})",
                f[4]
            ),
        )
    })?;
    let n: u32 = if unit == DurationUnit::SameDay {
        // the duration is the cut-off time of day
        match super::common::parse_hhmm(&f[3]) {
            Some(secs) if secs > 0 => secs,
            _ => {
                return Err(csv_err(
                    path,
                    l,
                    "duration",
                    format!(
                        "a same_day procedure's duration is its cut-off time HH:MM, e.g. 15:00 (got {:?})",
                        f[3]
                    ),
                ))
            }
        }
    } else {
        match f[3].parse() {
            Ok(n) if (1..=3650).contains(&n) => n,
            _ => {
                return Err(csv_err(
                    path,
                    l,
                    "duration",
                    format!("must be a whole number from 1 to 3650 (got {:?})", f[3]),
                ))
            }
        }
    };
    Ok((
        f[0].clone(),
        f[1].clone(),
        f[2].clone(),
        LegalDuration { n, unit },
    ))
}

/// Loads `procedures.csv`: `code,name,sector,duration,duration_unit`. Every row
/// is checked; the errors of all of them are returned (up to [`MAX_ERRORS`]).
pub fn load_procedures(path: &Path) -> Result<Vec<Procedure>, Vec<ConfigError>> {
    let rows = read_csv(
        path,
        &["code", "name", "sector", "duration", "duration_unit"],
        &[],
    )
    .map_err(|e| vec![e])?;
    let mut out = Vec::with_capacity(rows.len());
    let mut seen = BTreeSet::new();
    let mut errors = Vec::new();
    for (line, f) in rows {
        match procedure_row(path, line, &f) {
            Ok(p) if !seen.insert(p.0.clone()) => errors.push(csv_err(
                path,
                Some(line),
                "code",
                format!("procedure {:?} is listed twice", p.0),
            )),
            Ok(p) => out.push(p),
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        errors.truncate(MAX_ERRORS);
        return Err(errors);
    }
    Ok(out)
}
