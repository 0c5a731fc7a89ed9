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

/// Reads a CSV with the exact header `want`; yields (line, fields).
fn read_csv(path: &Path, want: &[&str]) -> Result<Vec<(u64, Vec<String>)>, ConfigError> {
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
    if got != want {
        return Err(csv_err(
            path,
            Some(1),
            "header",
            format!(
                "expected columns {} (got {})",
                want.join(","),
                got.join(",")
            ),
        ));
    }
    let mut rows = Vec::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| {
            let line = e.position().map(|p| p.line());
            csv_err(path, line, "row", e.to_string())
        })?;
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        rows.push((line, rec.iter().map(|s| s.to_string()).collect()));
    }
    Ok(rows)
}

/// Loads `units.csv`: `code,name,level,parent,emails,head_email`.
pub fn load_units(path: &Path) -> Result<Vec<Unit>, ConfigError> {
    let rows = read_csv(
        path,
        &["code", "name", "level", "parent", "emails", "head_email"],
    )?;
    let mut units = Vec::with_capacity(rows.len());
    let mut ids: HashMap<String, usize> = HashMap::new();
    let mut parents = Vec::new();
    for (line, f) in rows {
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
        if ids.insert(code.clone(), units.len()).is_some() {
            return Err(csv_err(
                path,
                l,
                "code",
                format!("unit {code:?} is listed twice"),
            ));
        }
        let level = Level::parse(&f[2]).ok_or_else(|| {
            csv_err(
                path,
                l,
                "level",
                format!("must be province, district or commune (got {:?})", f[2]),
            )
        })?;
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
        parents.push((line, f[3].clone()));
        units.push(Unit {
            code: code.clone(),
            name: f[1].clone(),
            level,
            parent: None,
            emails,
            head_email: (!head.is_empty()).then(|| head.to_string()),
        });
    }
    let parent_lines = parents.clone();
    for (i, (line, p)) in parents.into_iter().enumerate() {
        if p.is_empty() {
            continue;
        }
        match ids.get(&p) {
            Some(&j) if j != i => units[i].parent = Some(j as u32),
            Some(_) => {
                return Err(csv_err(
                    path,
                    Some(line),
                    "parent",
                    "a unit cannot be its own parent",
                ))
            }
            None => {
                return Err(csv_err(
                    path,
                    Some(line),
                    "parent",
                    format!("unit {p:?} is not in the directory"),
                ))
            }
        }
    }
    // parent chains must end: escalation walks them
    for (start, &(line, _)) in parent_lines.iter().enumerate() {
        let (mut i, mut steps) = (start, 0);
        while let Some(p) = units[i].parent {
            i = p as usize;
            steps += 1;
            if steps > units.len() {
                return Err(csv_err(
                    path,
                    Some(line),
                    "parent",
                    format!("the parents of unit {:?} form a cycle", units[start].code),
                ));
            }
        }
    }
    Ok(units)
}

/// Loads `procedures.csv`: `code,name,sector,duration,duration_unit`.
pub fn load_procedures(
    path: &Path,
) -> Result<Vec<(String, String, String, LegalDuration)>, ConfigError> {
    let rows = read_csv(
        path,
        &["code", "name", "sector", "duration", "duration_unit"],
    )?;
    let mut out = Vec::with_capacity(rows.len());
    let mut seen = BTreeSet::new();
    for (line, f) in rows {
        let l = Some(line);
        if !valid_code(&f[0]) {
            return Err(csv_err(
                path,
                l,
                "code",
                format!("{:?} is not a procedure code", f[0]),
            ));
        }
        if !seen.insert(f[0].clone()) {
            return Err(csv_err(
                path,
                l,
                "code",
                format!("procedure {:?} is listed twice", f[0]),
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
        let n: u32 = match f[3].parse() {
            Ok(n) if (1..=3650).contains(&n) => n,
            _ => {
                return Err(csv_err(
                    path,
                    l,
                    "duration",
                    format!("must be a whole number from 1 to 3650 (got {:?})", f[3]),
                ))
            }
        };
        let unit = DurationUnit::parse(&f[4]).ok_or_else(|| {
            csv_err(
                path,
                l,
                "duration_unit",
                format!(
                    "must be working_days, working_hours or calendar_days (got {:?})",
                    f[4]
                ),
            )
        })?;
        out.push((
            f[0].clone(),
            f[1].clone(),
            f[2].clone(),
            LegalDuration { n, unit },
        ));
    }
    Ok(out)
}
