//! The unit directory and the procedure catalogue, with interned codes.
//!
//! Records hold small integer ids instead of strings (a 10 M-record state cannot
//! afford a `String` per field). Units known from `units.csv` get ids `0..n`;
//! unit codes that events name but the directory lacks are interned after them on
//! first sight, so an alert can still name the unknown holder (`unrouted`).

use crate::engine::calendar::LegalDuration;
use std::collections::HashMap;

pub use crate::report::Level;

/// A unit of the directory.
#[derive(Debug, Clone, PartialEq)]
pub struct Unit {
    /// Unit code, as events name it.
    pub code: String,
    /// Display name.
    pub name: String,
    /// Level.
    pub level: Level,
    /// Parent unit id (escalation), if any.
    pub parent: Option<u32>,
    /// Addresses that receive the unit's alerts.
    pub emails: Vec<String>,
    /// The unit head's address.
    pub head_email: Option<String>,
}

/// A procedure of the catalogue.
#[derive(Debug, Clone, PartialEq)]
pub struct Procedure {
    /// Procedure code (mã TTHC).
    pub code: String,
    /// Display name.
    pub name: String,
    /// Sector id (see [`Names`]).
    pub sector: u32,
    /// Legal duration.
    pub duration: LegalDuration,
}

/// A string interner: code ↔ dense id.
#[derive(Debug, Clone, Default)]
pub struct Names {
    ids: HashMap<Box<str>, u32>,
    names: Vec<Box<str>>,
}

impl Names {
    /// The id of `s`, interning it if new.
    pub fn intern(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.ids.get(s) {
            return i;
        }
        let i = self.names.len() as u32;
        self.names.push(s.into());
        self.ids.insert(s.into(), i);
        i
    }
    /// The id of `s`, if interned.
    pub fn get(&self, s: &str) -> Option<u32> {
        self.ids.get(s).copied()
    }
    /// The string of `id`.
    pub fn name(&self, id: u32) -> &str {
        self.names.get(id as usize).map(|s| &**s).unwrap_or("")
    }
    /// Number of interned strings.
    pub fn len(&self) -> usize {
        self.names.len()
    }
    /// Whether nothing is interned.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// Units, procedures and sectors.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    /// Known units; index = unit id.
    pub units: Vec<Unit>,
    /// Unit codes: known units first, then unknown codes seen in events.
    pub unit_names: Names,
    /// The catalogue; index = procedure id.
    pub procedures: Vec<Procedure>,
    /// Procedure code → id.
    pub procedure_ids: HashMap<String, u32>,
    /// Sector codes: the catalogue's first, then codes seen in events.
    pub sectors: Names,
}

impl Directory {
    /// Builds a directory; `units` must have unique codes, parents resolved by the caller.
    pub fn new(units: Vec<Unit>, procedures: Vec<(String, String, String, LegalDuration)>) -> Self {
        let mut d = Directory::default();
        for u in &units {
            d.unit_names.intern(&u.code);
        }
        d.units = units;
        for (code, name, sector, duration) in procedures {
            let sector = d.sectors.intern(&sector);
            d.procedure_ids
                .insert(code.clone(), d.procedures.len() as u32);
            d.procedures.push(Procedure {
                code,
                name,
                sector,
                duration,
            });
        }
        d
    }

    /// Whether unit id `u` is in the directory.
    pub fn is_known(&self, u: u32) -> bool {
        (u as usize) < self.units.len()
    }

    /// Level of unit id `u` (`Unknown` for codes outside the directory).
    pub fn level(&self, u: u32) -> Level {
        self.units
            .get(u as usize)
            .map(|u| u.level)
            .unwrap_or(Level::Unknown)
    }

    /// The unit id for `code` (known or previously seen).
    pub fn unit_id(&self, code: &str) -> Option<u32> {
        self.unit_names.get(code)
    }
}
