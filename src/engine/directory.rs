//! The unit directory and the procedure catalogue, with interned codes.
//!
//! Records hold small integer ids instead of strings (a 10 M-record state cannot
//! afford a `String` per field). Units known from `units.csv` get ids `0..n`;
//! unit codes that events name but the directory lacks are interned after them on
//! first sight, so an alert can still name the unknown holder (`unrouted`).

use crate::engine::calendar::LegalDuration;
use std::collections::HashMap;

/// Level of a unit: its index in `[directory] levels` (the report order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Level(pub u8);

impl Level {
    /// A unit missing from the directory.
    pub const UNKNOWN: Level = Level(u8::MAX);
}

/// `[directory] levels` when not configured: the three-level government
/// before 1 July 2025.
pub const DEFAULT_LEVELS: [&str; 3] = ["province", "district", "commune"];

/// A unit of the directory.
#[derive(Debug, Clone, PartialEq)]
pub struct Unit {
    /// Unit code, as events name it.
    pub code: String,
    /// Display name.
    pub name: String,
    /// Level.
    pub level: Level,
    /// Calendar profile: 0 the default, k the k-th named profile.
    pub calendar: u16,
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
    /// Level names, in report order ([`Level`] indexes it).
    pub levels: Vec<String>,
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
    /// How many of `sectors` the catalogue gives (ids below it).
    pub catalogue_sectors: u32,
}

impl Directory {
    /// Builds a directory; `units` must have unique codes, parents resolved
    /// and levels checked against `levels` by the caller.
    pub fn new(
        levels: Vec<String>,
        units: Vec<Unit>,
        procedures: Vec<(String, String, String, LegalDuration)>,
    ) -> Self {
        let mut d = Directory {
            levels,
            ..Directory::default()
        };
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
        d.catalogue_sectors = d.sectors.len() as u32;
        d
    }

    /// Whether sector id `s` is one of the catalogue's (not only named by events).
    pub fn is_catalogue_sector(&self, s: u32) -> bool {
        s < self.catalogue_sectors
    }

    /// Whether unit id `u` is in the directory.
    pub fn is_known(&self, u: u32) -> bool {
        (u as usize) < self.units.len()
    }

    /// Level of unit id `u` ([`Level::UNKNOWN`] for codes outside the directory).
    pub fn level(&self, u: u32) -> Level {
        self.units
            .get(u as usize)
            .map(|u| u.level)
            .unwrap_or(Level::UNKNOWN)
    }

    /// The name of a level (`unknown` for [`Level::UNKNOWN`]).
    pub fn level_name(&self, l: Level) -> &str {
        self.levels
            .get(l.0 as usize)
            .map(String::as_str)
            .unwrap_or("unknown")
    }

    /// The level called `name`.
    pub fn level_named(&self, name: &str) -> Option<Level> {
        self.levels
            .iter()
            .position(|l| l == name)
            .map(|i| Level(i as u8))
    }

    /// The area of unit id `u`: its top-most ancestor-or-self at `level`
    /// (`None` for a unit with none, e.g. a provincial department when areas
    /// are districts). Parent chains end (the loader rejects cycles).
    pub fn area_of(&self, u: u32, level: Level) -> Option<u32> {
        let mut found = None;
        let mut cur = Some(u);
        while let Some(i) = cur {
            let unit = self.units.get(i as usize)?;
            if unit.level == level {
                found = Some(i);
            }
            cur = unit.parent;
        }
        found
    }

    /// (area code, level name of the unit, area name) of the unit `code` when
    /// areas are the units of the level named `area_level` ([`Directory::area_of`]).
    pub fn area_and_level(&self, code: &str, area_level: &str) -> Option<(&str, &str, &str)> {
        let u = self.unit_id(code)?;
        let area = self.area_of(u, self.level_named(area_level)?)?;
        let name = self
            .units
            .get(area as usize)
            .map_or("", |a| a.name.as_str());
        Some((
            self.unit_names.name(area),
            self.level_name(self.level(u)),
            name,
        ))
    }

    /// Calendar profile of unit id `u` (0, the default, for unknown units).
    #[inline]
    pub fn calendar_of(&self, u: u32) -> usize {
        self.units
            .get(u as usize)
            .map_or(0, |u| u.calendar as usize)
    }

    /// The unit id for `code` (known or previously seen).
    pub fn unit_id(&self, code: &str) -> Option<u32> {
        self.unit_names.get(code)
    }
}
