//! Rendering: an [`Outgoing`] decision → a complete multipart e-mail ([`Email`]).
//!
//! Templates are minijinja files users can edit (`config/templates/<lang>/`:
//! `subject.txt`, `body.txt`, `body.html`); the defaults are compiled in, so the
//! demo needs no files. The same function renders for SMTP and for the `.eml`
//! files of `replay --emails` and `demo`: what a user opens is what unit heads get.
//!
//! Values from events are untrusted. Every value put in a template is stripped of
//! control characters and capped ([`MAX_VALUE`]); `body.html` is auto-escaped by
//! the engine (so `<script>` in a procedure name arrives as text); the subject is
//! stripped of CR/LF after rendering and capped ([`MAX_SUBJECT`]), then lettre
//! encodes it per RFC 2047. No value from an event ever reaches another header:
//! recipients come from the unit directory and the configuration.

use super::Email;
use super::Settings;
use crate::alert::{Item, Kind, Outgoing, Status, ADMIN};
use crate::engine::calendar::Calendar;
use crate::engine::directory::Directory;
use crate::engine::AlertKind;
use crate::time::{Instant, SECOND};
use minijinja::Environment;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What rendering reads: the calendar (local times, working-time spans), the
/// directory (unit and procedure names, addresses) and the delivery settings.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    /// The working calendar.
    pub calendar: &'a Calendar,
    /// Units and procedures.
    pub directory: &'a Directory,
    /// Sender, admin, language, templates.
    pub settings: &'a Settings,
    /// Signed page links (`[http] ui_secret`); none: e-mails carry no links.
    pub links: Option<&'a crate::link::Links>,
}

/// Longest value (in characters) taken from an event into an e-mail.
pub const MAX_VALUE: usize = 200;
/// Longest subject, in characters.
pub const MAX_SUBJECT: usize = 200;

const FILES: [&str; 3] = ["subject.txt", "body.txt", "body.html"];

const VI: [&str; 3] = [
    include_str!("../../config/templates/vi/subject.txt"),
    include_str!("../../config/templates/vi/body.txt"),
    include_str!("../../config/templates/vi/body.html"),
];
const EN: [&str; 3] = [
    include_str!("../../config/templates/en/subject.txt"),
    include_str!("../../config/templates/en/body.txt"),
    include_str!("../../config/templates/en/body.html"),
];

/// Compiled templates of one language.
#[derive(Clone)]
pub struct Templates {
    env: Arc<Environment<'static>>,
    lang: String,
    source: String,
    /// FNV-1a of the template texts: two loads of the same files compare equal,
    /// an edited file does not (reload tells what changed).
    digest: u64,
}

impl PartialEq for Templates {
    fn eq(&self, other: &Self) -> bool {
        self.lang == other.lang && self.source == other.source && self.digest == other.digest
    }
}

/// A template file that cannot be read or compiled.
#[derive(Debug, thiserror::Error)]
#[error("{}{}: {message}", file.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct TemplateError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

fn digest(sources: &[(String, String); 3]) -> u64 {
    sources
        .iter()
        .flat_map(|(n, t)| n.bytes().chain(t.bytes()))
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Templates({}, {})", self.lang, self.source)
    }
}

fn env_with(
    sources: [(String, String); 3],
) -> Result<Environment<'static>, (String, Option<usize>, String)> {
    let mut env = Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(true);
    for (name, text) in sources {
        env.add_template_owned(name.clone(), text)
            .map_err(|e| (name, e.line(), e.to_string()))?;
    }
    Ok(env)
}

impl Templates {
    /// The built-in templates (`vi` unless `lang` is `en`).
    pub fn embedded(lang: &str) -> Templates {
        let (lang, texts) = if lang == "en" { ("en", EN) } else { ("vi", VI) };
        let sources = [0, 1, 2].map(|i| (FILES[i].to_string(), texts[i].to_string()));
        let digest = digest(&sources);
        Templates {
            env: Arc::new(env_with(sources).expect("built-in templates compile")),
            digest,
            lang: lang.into(),
            source: "built-in".into(),
        }
    }

    /// Loads `subject.txt`, `body.txt`, `body.html` from `dir`; an error names the
    /// file and line.
    pub fn load(dir: &Path) -> Result<Templates, TemplateError> {
        let read = |f: &str| -> Result<(String, String), TemplateError> {
            let file = dir.join(f);
            match std::fs::read_to_string(&file) {
                Ok(text) => Ok((f.to_string(), text)),
                Err(e) => Err(TemplateError {
                    file,
                    line: None,
                    message: format!("cannot read template: {e}"),
                }),
            }
        };
        let arr = [read(FILES[0])?, read(FILES[1])?, read(FILES[2])?];
        let digest = digest(&arr);
        let env = env_with(arr).map_err(|(name, line, msg)| TemplateError {
            file: dir.join(name),
            line,
            message: format!("template error: {msg}"),
        })?;
        let lang = dir
            .file_name()
            .and_then(|s| s.to_str())
            .unwrap_or("vi")
            .to_string();
        Ok(Templates {
            env: Arc::new(env),
            digest,
            lang,
            source: dir.display().to_string(),
        })
    }

    /// The language (`vi`, `en`).
    pub fn lang(&self) -> &str {
        &self.lang
    }
}

/// Strips control characters and caps the length of an untrusted value.
pub fn clean(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .take(MAX_VALUE)
        .collect()
}

#[derive(Serialize)]
struct ItemCtx {
    record_id: String,
    kind: &'static str,
    status: Status,
    procedure_code: String,
    procedure_name: String,
    sector: String,
    received_at: String,
    due_at: String,
    /// The apology letter's last day has passed when the e-mail is sent: ask
    /// for it now, not "by" a day gone.
    apology_passed: bool,
    /// Last day on which the apology letter can go out (the working day before
    /// the due date).
    apology_by: String,
    overdue: bool,
    left: String,
    holder_code: String,
    holder_name: String,
    forwarder_code: String,
    forwarder_name: String,
    fired_at: String,
    resolved_at: String,
    /// The record's page (signed for the recipient), or empty.
    url: String,
}

#[derive(Serialize, Default)]
struct Counts {
    overdue: usize,
    unrouted: usize,
    due_soon: usize,
    hanging: usize,
    resolved: usize,
    acknowledged: usize,
    escalated: usize,
    firing: usize,
}

#[derive(Serialize)]
struct Ctx<'a> {
    kind: Kind,
    recipient_kind: &'a str,
    recipient_code: String,
    recipient_name: String,
    sent_at: String,
    counts: Counts,
    firing: Vec<ItemCtx>,
    resolved: Vec<ItemCtx>,
    /// Firing but acknowledged by the unit: listed apart.
    acknowledged: Vec<ItemCtx>,
    omitted: usize,
    /// The recipient's page (unit page, or the province page for the
    /// administrator), or empty without links.
    page_url: String,
    /// Per unit holding the records (when the e-mail spans more than one):
    /// code, name and counts by kind.
    units: Vec<UnitCount>,
}

#[derive(Serialize)]
struct UnitCount {
    code: String,
    name: String,
    overdue: usize,
    unrouted: usize,
    due_soon: usize,
    hanging: usize,
}

/// Local `HH:MM dd/mm/yyyy`.
fn local(cfg: &Context<'_>, t: Instant) -> String {
    cfg.calendar.format_local(t)
}

/// Working time as days and hours of the calendar's working day, in the language.
fn span(cfg: &Context<'_>, lang: &str, w: i64) -> String {
    let day = cfg.calendar.day_working_time().max(SECOND);
    let (d, rest) = (w / day, w % day);
    let h = rest / (3600 * SECOND);
    let m = rest / (60 * SECOND) % 60;
    let mut parts = Vec::new();
    let vi = lang != "en";
    if d > 0 {
        parts.push(if vi {
            format!("{d} ngày")
        } else {
            format!("{d} d")
        });
    }
    if h > 0 {
        parts.push(if vi {
            format!("{h} giờ")
        } else {
            format!("{h} h")
        });
    }
    if d == 0 && m > 0 {
        parts.push(if vi {
            format!("{m} phút")
        } else {
            format!("{m} min")
        });
    }
    if parts.is_empty() {
        parts.push(if vi { "0 phút".into() } else { "0 min".into() });
    }
    parts.join(" ")
}

fn unit_name(cfg: &Context<'_>, code: &str) -> String {
    cfg.directory
        .unit_id(code)
        .and_then(|u| cfg.directory.units.get(u as usize))
        .map(|u| u.name.clone())
        .unwrap_or_default()
}

fn item_ctx(cfg: &Context<'_>, lang: &str, it: &Item, now: Instant) -> ItemCtx {
    let i = &it.info;
    let cal = &cfg.calendar;
    let overdue = now > i.due;
    let w = if overdue {
        cal.working_between(i.due, now)
    } else {
        cal.working_between(now, i.due)
    };
    let left = if overdue {
        if lang == "en" {
            format!("overdue by {} of working time", span(cfg, lang, w))
        } else {
            format!("quá hạn {} làm việc", span(cfg, lang, w))
        }
    } else if lang == "en" {
        format!("{} of working time left", span(cfg, lang, w))
    } else {
        format!("còn {} làm việc", span(cfg, lang, w))
    };
    let apology_day = cal.apology_day(i.due);
    let proc_name = cfg
        .directory
        .procedure_ids
        .get(&i.procedure)
        .and_then(|&p| cfg.directory.procedures.get(p as usize))
        .map(|p| p.name.clone())
        .unwrap_or_default();
    let fwd = i.forwarder.clone().unwrap_or_default();
    ItemCtx {
        record_id: clean(&i.record_id),
        kind: i.kind.as_str(),
        status: it.status,
        procedure_code: clean(&i.procedure),
        procedure_name: clean(&proc_name),
        sector: clean(&i.sector),
        received_at: local(cfg, i.received_at),
        due_at: local(cfg, i.due),
        apology_by: Calendar::format_day(apology_day),
        apology_passed: cal.local_day(now) > apology_day,
        overdue,
        left,
        holder_code: clean(&i.unit),
        holder_name: clean(&unit_name(cfg, &i.unit)),
        forwarder_name: clean(&unit_name(cfg, &fwd)),
        forwarder_code: clean(&fwd),
        fired_at: local(cfg, i.fired_at),
        resolved_at: it.resolved_at.map(|t| local(cfg, t)).unwrap_or_default(),
        url: String::new(),
    }
}

/// The page links of an e-mail to `recipient` sent at `now`: (its own page,
/// a record's page).
fn page_links<'a>(
    cfg: &'a Context<'_>,
    recipient: &'a str,
    now: Instant,
) -> Option<(String, impl Fn(&str) -> String + 'a)> {
    let l = cfg.links?;
    let unit = recipient
        .strip_prefix("unit:")
        .or_else(|| recipient.strip_prefix("head:"));
    let page = match unit {
        Some(u) => l.unit_url(u, now),
        None => l.province_url(now),
    };
    Some((page, move |record: &str| match unit {
        Some(u) => l.record_url(u, record, now),
        None => l.admin_record_url(record, now),
    }))
}

/// The addresses of a recipient key (deduplicated; the administrator when a
/// unit has none).
pub fn addresses(cfg: &Context<'_>, recipient: &str) -> Vec<String> {
    let dir = &cfg.directory;
    let unit = |code: &str| {
        dir.unit_id(code)
            .and_then(|u| dir.units.get(u as usize))
            .cloned()
    };
    let mut out: Vec<String> = if recipient == ADMIN {
        cfg.settings.admin.clone()
    } else if let Some(code) = recipient.strip_prefix("unit:") {
        unit(code)
            .map(|u| u.emails.iter().cloned().chain(u.head_email).collect())
            .unwrap_or_default()
    } else if let Some(code) = recipient.strip_prefix("head:") {
        unit(code).and_then(|u| u.head_email).into_iter().collect()
    } else {
        Vec::new()
    };
    let mut seen = std::collections::HashSet::new();
    out.retain(|a| seen.insert(a.to_ascii_lowercase()));
    if out.is_empty() {
        out = cfg.settings.admin.clone();
    }
    out
}

/// The e-mail id of a decision: sequence first, so ids sort in creation order.
pub fn email_id(o: &Outgoing) -> String {
    let r: String = o
        .recipient
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    let kind = match o.kind {
        Kind::Update => "u",
        Kind::Digest => "d",
    };
    let inst: String = o
        .instance
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(16)
        .collect();
    if inst.is_empty() {
        format!("{:012}-{kind}-{r}", o.seq)
    } else {
        format!("{:012}-{inst}-{kind}-{r}", o.seq)
    }
}

/// Line ends as e-mail wants them (CRLF), in one pass.
fn crlf(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 32);
    for (i, line) in s.split('\n').enumerate() {
        if i > 0 {
            out.push_str("\r\n");
        }
        out.push_str(line.strip_suffix('\r').unwrap_or(line));
    }
    out
}

/// Why rendering failed (a template error at run time, e.g. an edited template
/// using an unknown variable).
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The template failed.
    #[error("template {0}: {1}")]
    Template(&'static str, String),
    /// The message could not be built (an address in the directory or the
    /// configuration is unusable).
    #[error("cannot build the message: {0}")]
    Message(String),
}

/// Renders a decision into a complete e-mail.
pub fn render(cfg: &Context<'_>, o: &Outgoing) -> Result<Email, RenderError> {
    let t = &cfg.settings.templates;
    let lang = t.lang();
    let (rkind, rcode) = if o.recipient == ADMIN {
        ("admin", String::new())
    } else if let Some(c) = o.recipient.strip_prefix("unit:") {
        ("unit", c.to_string())
    } else if let Some(c) = o.recipient.strip_prefix("head:") {
        ("head", c.to_string())
    } else {
        ("admin", String::new())
    };
    let mut counts = Counts::default();
    let mut firing = Vec::new();
    let mut resolved = Vec::new();
    let mut acknowledged = Vec::new();
    let links = page_links(cfg, &o.recipient, o.at);
    for it in &o.items {
        let mut c = item_ctx(cfg, lang, it, o.at);
        if let Some((_, record_url)) = &links {
            c.url = record_url(&it.info.record_id);
        }
        if it.status.is_end() {
            counts.resolved += 1;
            resolved.push(c);
            continue;
        }
        if it.status == Status::Acknowledged {
            counts.acknowledged += 1;
            acknowledged.push(c);
            continue;
        }
        counts.firing += 1;
        if it.status == Status::Escalated {
            counts.escalated += 1;
        }
        match it.info.kind {
            AlertKind::Overdue => counts.overdue += 1,
            AlertKind::Unrouted => counts.unrouted += 1,
            AlertKind::DueSoon => counts.due_soon += 1,
            AlertKind::Hanging => counts.hanging += 1,
        }
        firing.push(c);
    }
    // true totals: what the cap left out counts too
    for k in AlertKind::ALL {
        let n = o.omitted_by_kind[k as usize];
        counts.firing += n;
        match k {
            AlertKind::Overdue => counts.overdue += n,
            AlertKind::Unrouted => counts.unrouted += n,
            AlertKind::DueSoon => counts.due_soon += n,
            AlertKind::Hanging => counts.hanging += n,
        }
    }
    let units = if o.by_unit.len() > 1 {
        o.by_unit
            .iter()
            .map(|(code, c)| UnitCount {
                code: clean(code),
                name: clean(&unit_name(cfg, code)),
                overdue: c[AlertKind::Overdue as usize],
                unrouted: c[AlertKind::Unrouted as usize],
                due_soon: c[AlertKind::DueSoon as usize],
                hanging: c[AlertKind::Hanging as usize],
            })
            .collect()
    } else {
        Vec::new()
    };
    let ctx = Ctx {
        units,
        kind: o.kind,
        recipient_kind: rkind,
        recipient_name: clean(&unit_name(cfg, &rcode)),
        recipient_code: clean(&rcode),
        sent_at: local(cfg, o.at),
        counts,
        firing,
        resolved,
        acknowledged,
        omitted: o.omitted,
        page_url: links.as_ref().map(|(p, _)| p.clone()).unwrap_or_default(),
    };
    let run = |name: &'static str| -> Result<String, RenderError> {
        t.env
            .get_template(name)
            .and_then(|tpl| tpl.render(&ctx))
            .map_err(|e| RenderError::Template(name, e.to_string()))
    };
    let subject: String = run("subject.txt")?
        .split(['\r', '\n'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_SUBJECT)
        .collect();
    // CRLF here: lettre would otherwise insert each CR one by one (quadratic on
    // a digest of hundreds of lines)
    let text = crlf(&run("body.txt")?);
    let html = crlf(&run("body.html")?);
    let id = email_id(o);
    let to = addresses(cfg, &o.recipient);
    build(cfg, &id, o.at, &to, &subject, text, html)
}

fn build(
    cfg: &Context<'_>,
    id: &str,
    at: Instant,
    to: &[String],
    subject: &str,
    text: String,
    html: String,
) -> Result<Email, RenderError> {
    use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
    let from: Mailbox = cfg
        .settings
        .from
        .parse()
        .map_err(|e| RenderError::Message(format!("from: {e}")))?;
    let domain = from.email.domain().to_string();
    let mut b = lettre::Message::builder()
        .from(from.clone())
        .subject(subject)
        .date(std::time::UNIX_EPOCH + std::time::Duration::from_micros(at.max(0) as u64))
        .message_id(Some(format!("<{id}@{domain}>")))
        .user_agent("overdued".into());
    let mut rcpt = Vec::new();
    for a in to {
        let m: Mailbox = a
            .parse()
            .map_err(|e| RenderError::Message(format!("recipient {a:?}: {e}")))?;
        rcpt.push(m.email.to_string());
        b = b.to(m);
    }
    // a stable boundary: the same decision renders to the same bytes
    let boundary = format!(
        "overdued-{:016x}",
        xxhash_rust::xxh3::xxh3_64(id.as_bytes())
    );
    let body = MultiPart::alternative()
        .boundary(boundary)
        .singlepart(
            SinglePart::builder()
                .header(ContentType::TEXT_PLAIN)
                .body(text),
        )
        .singlepart(
            SinglePart::builder()
                .header(ContentType::TEXT_HTML)
                .body(html),
        );
    let msg = b
        .multipart(body)
        .map_err(|e| RenderError::Message(e.to_string()))?;
    Ok(Email {
        id: id.to_string(),
        from: from.email.to_string(),
        to: rcpt,
        bytes: msg.formatted(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::AlertInfo;
    use crate::config::Config;
    use crate::time::parse_rfc3339;

    fn t(s: &str) -> Instant {
        parse_rfc3339(s).expect("time")
    }

    fn item(record: &str, kind: AlertKind, unit: &str, due: &str) -> Item {
        let due = t(due);
        Item {
            info: AlertInfo {
                record_id: record.into(),
                kind,
                unit: unit.into(),
                sector: "DD".into(),
                procedure: "1.004227".into(),
                received_at: due - 10 * 86_400 * SECOND,
                due,
                fired_at: due - 86_400 * SECOND,
                escalate_at: None,
                forwarder: None,
                partition: None,
            },
            status: Status::New,
            resolved_at: None,
        }
    }

    fn text(e: &Email) -> (String, String) {
        let m = mail_parser::MessageParser::default()
            .parse(&e.bytes)
            .expect("a message");
        (
            m.subject().unwrap_or_default().to_string(),
            m.body_text(0).unwrap_or_default().to_string(),
        )
    }

    #[test]
    fn wording_follows_the_clock_and_totals_are_true() {
        let cfg = Config::load(Path::new("config/overdued.toml")).expect("sample config");
        let ctx = Context {
            calendar: &cfg.engine.calendar,
            directory: &cfg.engine.directory,
            settings: &cfg.email.delivery,
            links: None,
        };
        // Wednesday 4 March 2026, 08:00: one due_soon due this afternoon (its
        // apology letter was due yesterday), one due on Friday (letter by Thursday)
        let o = Outgoing {
            seq: 1,
            at: t("2026-03-04T08:00:00+07:00"),
            recipient: "head:QN".into(),
            kind: Kind::Digest,
            items: vec![
                item(
                    "LATE",
                    AlertKind::DueSoon,
                    "VPDKDD",
                    "2026-03-04T16:00:00+07:00",
                ),
                item(
                    "EARLY",
                    AlertKind::DueSoon,
                    "STP",
                    "2026-03-06T16:00:00+07:00",
                ),
            ],
            omitted: 5,
            omitted_by_kind: [0, 0, 0, 5],
            by_unit: vec![
                ("STP".into(), [0, 0, 1, 0]),
                ("VPDKDD".into(), [0, 0, 1, 5]),
            ],
            instance: String::new(),
        };
        let (subject, body) = text(&render(&ctx, &o).expect("renders"));
        // true totals: the 5 overdue left out count in the subject and the count
        assert!(subject.contains(" 5 quá hạn 2 sắp đến hạn"), "{subject}");
        assert!(body.contains("7 hồ sơ cần xử lý"), "{body}");
        assert!(body.contains("... và 5 hồ sơ khác"), "{body}");
        // a summary per unit when the e-mail spans several
        assert!(body.contains("Theo đơn vị đang giữ hồ sơ:"), "{body}");
        assert!(body.contains("Sở Tư pháp: 1 sắp đến hạn"), "{body}");
        assert!(body.contains(": 5 quá hạn 1 sắp đến hạn"), "{body}");
        // the passed apology deadline is said, and the letter asked for today
        let late = &body[body.find("Hồ sơ LATE").expect("LATE")..];
        let late = &late[..late.find("\n\n").unwrap_or(late.len())];
        assert!(late.contains("(ngày 03/03/2026) đã qua"), "{late}");
        assert!(late.contains("ban hành ngay hôm nay"), "{late}");
        let early = &body[body.find("Hồ sơ EARLY").expect("EARLY")..];
        assert!(early.contains("chậm nhất ngày 05/03/2026"), "{early}");
    }

    #[test]
    fn an_alert_that_ended_before_it_was_told_says_so() {
        let cfg = Config::load(Path::new("config/overdued.toml")).expect("sample config");
        let ctx = Context {
            calendar: &cfg.engine.calendar,
            directory: &cfg.engine.directory,
            settings: &cfg.email.delivery,
            links: None,
        };
        let mut h = item(
            "H1",
            AlertKind::Hanging,
            "VPDKDD",
            "2026-03-06T16:00:00+07:00",
        );
        h.info.fired_at = t("2026-03-02T13:40:00+07:00");
        h.status = Status::Ended;
        h.resolved_at = Some(t("2026-03-02T15:40:00+07:00"));
        let o = Outgoing {
            seq: 1,
            at: t("2026-03-03T07:30:00+07:00"),
            recipient: "unit:VPDKDD".into(),
            kind: Kind::Digest,
            items: vec![h],
            omitted: 0,
            omitted_by_kind: [0; 4],
            by_unit: vec![],
            instance: String::new(),
        };
        let (subject, body) = text(&render(&ctx, &o).expect("renders"));
        assert!(subject.contains("1 đã hết cảnh báo"), "{subject}");
        assert!(
            body.contains(
                "Hồ sơ H1 (chưa xử lý (treo)), cảnh báo từ 13:40 02/03/2026, \
                 đã hết lúc 15:40 02/03/2026 (trước khi kịp báo)"
            ),
            "{body}"
        );
    }
}
