//! The commands, apart from the library: each uses the stages the library
//! exposes. `run` wires the daemon; `replay` drives the engine with a simulated
//! clock; `gen` and `demo` use the simulator ([`sim`]); `bench` and
//! `bench-kafka` measure; `check-config` validates; `outbox-send` drains an
//! outbox; `import` turns a one-stop system's export into events.

pub mod bench;
pub mod bench_kafka;
pub mod check_config;
pub mod demo;
pub mod error;
pub mod gen;
pub mod import;
pub mod outbox;
pub mod outbox_send;
pub mod replay;
pub mod run;
pub mod serve;
pub mod sim;

use error::{Context, Error};
use overdued::alert::Notifier;
use overdued::config::Config;
use overdued::sink::eml::EmlWriter;
use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

/// Loads a configuration for a command that connects nowhere (secrets that
/// cannot be resolved are warnings) and logs its warnings.
pub fn load(path: &Path) -> Result<Config, Error> {
    let cfg = Config::load_offline(path)?;
    for w in &cfg.warnings {
        tracing::warn!("{w}");
    }
    Ok(cfg)
}

/// The embedded sample configuration, loaded through a temporary folder.
pub fn embedded() -> Result<Config, Error> {
    let dir = std::env::temp_dir().join(format!("overdued-config-{}", std::process::id()));
    let cfg = demo::embedded_config(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    cfg
}

/// Creates an output file, buffered.
pub fn create(p: &Path) -> Result<BufWriter<File>, Error> {
    File::create(p)
        .map(|f| BufWriter::with_capacity(1 << 20, f))
        .ctx(format!("cannot create {}", p.display()))
}

/// An `.eml` writer with the configuration's grouping, silences and delivery
/// settings (what the daemon would send).
pub fn eml_writer(cfg: &Config, dir: &Path) -> Result<EmlWriter, Error> {
    let notifier = Notifier::new(cfg.email.grouping.clone(), cfg.email.silences.clone());
    EmlWriter::new(&cfg.engine, notifier, &cfg.email.delivery, dir)
        .ctx(format!("cannot create {}", dir.display()))
}
