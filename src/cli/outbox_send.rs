//! `overdued outbox-send`: sends the e-mail outbox of a state folder and exits
//! once it is empty (operations: drain a stopped daemon's outbox; the
//! crash-safety tests kill it mid-way).

use super::error::Error;
use overdued::metrics::Metrics;
use overdued::notify::outbox::Outbox;
use overdued::notify::smtp::Sender;
use overdued::notify::{Email, SmtpConfig};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

/// The command's arguments.
#[derive(clap::Args)]
pub struct Args {
    /// The state folder (`outbox/`, `notifications.log`).
    #[arg(long)]
    pub state: PathBuf,
    /// SMTP URL (smtp://host:port[?tls=none|required], smtps://host:port).
    #[arg(long)]
    pub smtp: String,
    /// First put this many generated test e-mails into the outbox.
    #[arg(long, default_value_t = 0)]
    pub fill: u32,
    /// Recipient of the generated e-mails.
    #[arg(long, default_value = "unit-head@so-noivu.example.vn")]
    pub to: String,
    /// Per-domain rate limit per minute (0 = none).
    #[arg(long, default_value_t = 0)]
    pub rate: u32,
    /// First retry delay, milliseconds.
    #[arg(long, default_value_t = 100)]
    pub backoff_min_ms: u64,
    /// Retry delay cap, milliseconds.
    #[arg(long, default_value_t = 2000)]
    pub backoff_max_ms: u64,
}

/// `overdued outbox-send`: optionally fills the outbox with generated e-mails,
/// then sends it through the real sender and exits once it is empty. Prints
/// `filled N` after the fill is durable and `sent N` at the end (stdout).
pub fn run(args: Args) -> Result<(), Error> {
    let Args {
        state,
        smtp,
        fill,
        to,
        rate,
        backoff_min_ms,
        backoff_max_ms,
    } = args;
    let (outbox, report) = Outbox::open(&state)?;
    report.log();
    let cfg = SmtpConfig {
        url: smtp,
        rate_per_domain_per_minute: rate,
        timeout: Duration::from_secs(10),
        backoff_min: Duration::from_millis(backoff_min_ms),
        backoff_max: Duration::from_millis(backoff_max_ms),
        ..SmtpConfig::default()
    };
    let metrics = Metrics::unregistered();
    let mut sender = Sender::start(cfg, outbox.clone(), metrics)?;
    // Ids sort in creation order: a nanosecond stamp of this run, then a counter.
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    for n in 0..fill {
        let id = format!("fill-{run:024}-{n:06}");
        let msg = lettre::Message::builder()
            .from(
                "overdued <no-reply@overdued.example.vn>"
                    .parse()
                    .map_err(|e| Error::Usage(format!("from: {e}")))?,
            )
            .to(to.parse().map_err(|e| Error::Usage(format!("--to: {e}")))?)
            .subject(format!("Hồ sơ quá hạn #{n}"))
            .message_id(Some(format!("<{id}@overdued.example.vn>")))
            .body(format!("Test e-mail {n} ({id}).\n"))
            .map_err(|e| Error::Usage(format!("building a test e-mail: {e}")))?;
        let email = Email {
            id: id.clone(),
            from: "no-reply@overdued.example.vn".into(),
            to: vec![to.to_string()],
            bytes: msg.formatted(),
        };
        if outbox.put(&email)? {
            sender.submit(id);
        }
    }
    println!("filled {fill}");
    let _ = std::io::stdout().flush();
    let mut sent = 0;
    loop {
        sent += sender.take_sent().len();
        if sender.depth() == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    sender.shutdown(Duration::from_secs(30));
    sent += sender.take_sent().len();
    println!("sent {sent}");
    Ok(())
}
