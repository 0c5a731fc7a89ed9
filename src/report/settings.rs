//! `[report]`: how rates are judged and grouped for Home Affairs — the late-rate
//! threshold a unit or area is marked over, and the level whose units are the
//! areas a People's Committee answers for.

use crate::config::common::{ConfigError, Src};
use serde::Deserialize;
use toml::Spanned;

/// `[report]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// A unit or area whose late rate (percent of judged records) is over this
    /// is marked (the demo, the API, `--report`). Default 5.0.
    pub late_threshold_percent: f64,
    /// The level whose units are areas (`by_area`), one of `[directory]
    /// levels`; `None`: no areas.
    pub area_level: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            late_threshold_percent: 5.0,
            area_level: None,
        }
    }
}

impl Settings {
    /// Whether a late rate (percent) is over the threshold.
    pub fn over(&self, late_rate: Option<f64>) -> bool {
        late_rate.is_some_and(|r| r > self.late_threshold_percent)
    }
}

/// `[report]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReport {
    late_threshold_percent: Option<Spanned<f64>>,
    area_level: Option<Spanned<String>>,
}

/// Validates `[report]` against the directory's levels.
pub fn validate(
    src: &Src<'_>,
    raw: Option<&RawReport>,
    levels: &[String],
) -> Result<Settings, ConfigError> {
    let mut s = Settings::default();
    let Some(raw) = raw else {
        return Ok(s);
    };
    if let Some(t) = &raw.late_threshold_percent {
        let v = *t.get_ref();
        if !(0.0..=100.0).contains(&v) {
            return src.err(
                t.span(),
                "report.late_threshold_percent",
                format!("must be a percentage from 0 to 100 (got {v})"),
            );
        }
        s.late_threshold_percent = v;
    }
    if let Some(a) = &raw.area_level {
        if !levels.contains(a.get_ref()) {
            return src.err(
                a.span(),
                "report.area_level",
                format!(
                    "{:?} is not one of [directory] levels: {}",
                    a.get_ref(),
                    levels.join(", ")
                ),
            );
        }
        s.area_level = Some(a.get_ref().clone());
    }
    Ok(s)
}
