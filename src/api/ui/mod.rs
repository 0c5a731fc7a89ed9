//! The pages unit heads open from their e-mails (`/ui/...`, docs/api.md
//! "Pages"): server-rendered HTML, no JavaScript, readable on a phone;
//! Vietnamese by default, English with `[email] language = "en"`.
//!
//! * `/ui/unit/{code}` — the unit's alerting records by urgency, its on-time and
//!   late counts this month against the threshold, the units under it;
//! * `/ui/record/{id}` — a record's alerts, acknowledgements, holders and events,
//!   and the acknowledgement form (`POST /ui/record/{id}/ack`);
//! * `/ui/province` — administrator only: rates by level, the worst units.
//!
//! Every page needs the signed token of [`crate::link`] (`?t=`); an expired,
//! tampered or foreign token gets a page that says so and shows no data. GET
//! never changes anything (mail scanners prefetch links); the one POST checks
//! the token, an anti-forgery value bound to it, and that the request does not
//! come from another site.

use super::{ApiState, History, HistoryEntry};
use crate::alert::{sort_worst_first, AlertInfo, Item, Reason, Status};
use crate::engine::calendar::Calendar;
use crate::engine::directory::Directory;
use crate::engine::{AlertKind, Engine};
use crate::link::{encode_path, Links, Scope, TokenError};
use crate::time::{Instant, HOUR, SECOND};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};
use std::ops::ControlFlow;
use std::sync::{Arc, OnceLock};

/// Most records listed on a unit page (the most urgent; the counts are whole).
const MAX_ROWS: usize = 500;

/// What the pages need besides the engines and the notifier: names, the
/// calendar, the language (set by the daemon at start and on reload).
#[derive(Debug, Clone)]
pub struct UiContext {
    /// The working calendar (local times, working hours).
    pub calendar: Calendar,
    /// Units (names, parents) and procedures (names).
    pub directory: Directory,
    /// `vi` or `en`.
    pub lang: String,
    /// `[report]`: the late-rate threshold, the area level.
    pub report: crate::report::Settings,
}

fn env() -> &'static minijinja::Environment<'static> {
    static ENV: OnceLock<minijinja::Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut e = minijinja::Environment::new();
        // the names end in .html: values are HTML-escaped
        for (name, src) in [
            ("base.html", include_str!("templates/base.html")),
            ("message.html", include_str!("templates/message.html")),
            ("unit.html", include_str!("templates/unit.html")),
            ("record.html", include_str!("templates/record.html")),
            ("province.html", include_str!("templates/province.html")),
        ] {
            e.add_template(name, src)
                .expect("the page templates are part of the build");
        }
        e
    })
}

/// The pages' words (`words.<lang>.json`), parsed once.
fn words(lang: &str) -> Value {
    static VI: OnceLock<Value> = OnceLock::new();
    static EN: OnceLock<Value> = OnceLock::new();
    let (cell, src) = if lang == "en" {
        (&EN, include_str!("words.en.json"))
    } else {
        (&VI, include_str!("words.vi.json"))
    };
    cell.get_or_init(|| serde_json::from_str(src).expect("the page words are part of the build"))
        .clone()
}

/// `?t=` of a page.
#[derive(Deserialize, Default)]
pub(super) struct TokenQuery {
    t: Option<String>,
}

fn html(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // links carry tokens: never send them to another site; `same-origin`, not
    // `no-referrer`, because under `no-referrer` browsers send `Origin: null`
    // with our own form posts, which the cross-site check must refuse
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    r
}

fn page(name: &str, lang: &str, title: &str, as_of: &str, mut ctx: Value) -> String {
    ctx["w"] = words(lang);
    ctx["lang"] = json!(lang);
    ctx["title"] = json!(title);
    ctx["as_of"] = json!(as_of);
    env()
        .get_template(name)
        .and_then(|t| t.render(&ctx))
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, page = name, "cannot render a page");
            "page error".into()
        })
}

fn message(s: &ApiState, status: StatusCode, key: &str, hint: &str) -> Response {
    let lang = ui(s).map(|u| u.lang.clone()).unwrap_or_else(|| "vi".into());
    let w = words(&lang);
    let text = |k: &str| w[k].as_str().unwrap_or(k).to_string();
    let body = page(
        "message.html",
        &lang,
        "overdued",
        "",
        json!({ "message": text(key), "hint": if hint.is_empty() { String::new() } else { text(hint) } }),
    );
    html(status, body)
}

fn ui(s: &ApiState) -> Option<Arc<UiContext>> {
    s.ui.read().unwrap_or_else(|p| p.into_inner()).clone()
}

fn now(s: &ApiState) -> Instant {
    s.now()
}

/// A working-time span: `2 ngày 3 giờ` / `2 d 3 h` (a day = the calendar's
/// working day).
fn span(cal: &Calendar, lang: &str, w: i64) -> String {
    let day = cal.day_working_time().max(HOUR);
    let (d, h, m) = (w / day, (w % day) / HOUR, (w % HOUR) / (60 * SECOND));
    let en = lang == "en";
    let mut out = Vec::new();
    if d > 0 {
        out.push(format!("{d} {}", if en { "working days" } else { "ngày" }));
    }
    if h > 0 {
        out.push(format!("{h} {}", if en { "h" } else { "giờ" }));
    }
    if d == 0 && (m > 0 || h == 0) {
        out.push(format!("{m} {}", if en { "min" } else { "phút" }));
    }
    out.join(" ")
}

/// Whether `scope` may see unit `code`: the admin sees all; a unit sees itself
/// and the units under it.
fn covers(dir: &Directory, scope: &Scope, code: &str) -> bool {
    let Scope::Unit(me) = scope else {
        return true;
    };
    let mut u = dir.unit_id(code);
    let mut hops = 0;
    while let Some(id) = u {
        let Some(unit) = dir.units.get(id as usize) else {
            break;
        };
        if unit.code == *me {
            return true;
        }
        u = unit.parent;
        hops += 1;
        if hops > 64 {
            break;
        }
    }
    code == me
}

/// Checks the token: its scope, or the page that refuses it (built once per
/// refused request, so its size does not matter).
#[allow(clippy::result_large_err)]
fn check<'a>(
    s: &'a ApiState,
    t: Option<&str>,
) -> Result<(Scope, Arc<UiContext>, &'a Links), Response> {
    let Some(links) = s.links.as_ref() else {
        return Err(message(s, StatusCode::NOT_FOUND, "no_pages", ""));
    };
    let Some(ctx) = ui(s) else {
        return Err(message(s, StatusCode::SERVICE_UNAVAILABLE, "no_pages", ""));
    };
    match links.verify(t, now(s)) {
        Ok(scope) => Ok((scope, ctx, links)),
        Err(e) => {
            tracing::info!(reason = %e, "page refused: bad link");
            let key = match e {
                TokenError::Expired => "expired",
                TokenError::Invalid => "invalid",
                TokenError::Missing => "missing",
            };
            Err(message(s, StatusCode::FORBIDDEN, key, "ask_again"))
        }
    }
}

fn unit_name(dir: &Directory, code: &str) -> String {
    dir.unit_id(code)
        .and_then(|u| dir.units.get(u as usize))
        .map(|u| u.name.clone())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| code.to_string())
}

fn procedure_name(dir: &Directory, code: &str) -> String {
    dir.procedure_ids
        .get(code)
        .and_then(|&p| dir.procedures.get(p as usize))
        .map(|p| format!("{} ({code})", p.name))
        .unwrap_or_else(|| code.to_string())
}

fn situation(ctx: &UiContext, info: &AlertInfo, now: Instant) -> String {
    let (cal, l) = (&ctx.calendar, ctx.lang.as_str());
    let en = l == "en";
    match info.kind {
        AlertKind::Overdue => {
            let w = span(cal, l, cal.working_between(info.due, now));
            if en {
                format!("overdue by {w}")
            } else {
                format!("quá hạn {w} làm việc")
            }
        }
        AlertKind::DueSoon => {
            let w = span(cal, l, cal.working_between(now, info.due));
            let a = Calendar::format_day(cal.apology_day(info.due));
            if en {
                format!("{w} left; apology letter by {a}")
            } else {
                format!("còn {w} làm việc; văn bản xin lỗi chậm nhất ngày {a}")
            }
        }
        AlertKind::Hanging => {
            let since = cal.format_local(info.fired_at);
            if en {
                format!("no action recorded; alert since {since}")
            } else {
                format!("chưa có xử lý; cảnh báo từ {since}")
            }
        }
        AlertKind::Unrouted => {
            let by = info.forwarder.as_deref().unwrap_or("");
            if en {
                format!("sent to unknown unit {} by {by}", info.unit)
            } else {
                format!(
                    "chuyển đến đơn vị {} không có trong danh mục (do {by} chuyển)",
                    info.unit
                )
            }
        }
    }
}

/// This month's (on time incl. early, late) of a unit, from the engines.
fn month_counts(s: &ApiState, ctx: &UiContext, code: &str, now: Instant) -> (u64, u64) {
    let month = crate::engine::month_index(&ctx.calendar, now);
    let (mut on_time, mut late) = (0, 0);
    s.partitions.each(&mut |_, e, _| {
        for (&(m, u, _), c) in &e.monthly {
            if m == month && e.unit_code(u) == code {
                on_time += c.early + c.on_time;
                late += c.late;
            }
        }
        ControlFlow::Continue(())
    });
    (on_time, late)
}

fn rate(late: u64, judged: u64) -> Option<f64> {
    (judged > 0).then(|| (1000.0 * late as f64 / judged as f64).round() / 10.0)
}

pub(super) async fn unit_page(
    State(s): State<Arc<ApiState>>,
    Path(code): Path<String>,
    q: Result<Query<TokenQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let (scope, ctx, links) = match check(&s, q.t.as_deref()) {
        Ok(v) => v,
        Err(r) => return r,
    };
    if !covers(&ctx.directory, &scope, &code) {
        return message(&s, StatusCode::FORBIDDEN, "forbidden", "ask_again");
    }
    let token = q.t.clone().unwrap_or_default();
    let at = now(&s);
    let dir = &ctx.directory;
    let mut items = Vec::new();
    let mut children: Vec<(String, [usize; 4])> = dir
        .unit_id(&code)
        .map(|id| {
            dir.units
                .iter()
                .filter(|u| u.parent == Some(id))
                .map(|u| (u.code.clone(), [0; 4]))
                .collect()
        })
        .unwrap_or_default();
    let mut acked_n = 0;
    {
        let n = s.notifier.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = n.as_ref() {
            let overdue: std::collections::HashSet<&str> = n
                .alerts()
                .filter(|i| i.kind == AlertKind::Overdue)
                .map(|i| i.record_id.as_str())
                .collect();
            for info in n.alerts() {
                if info.kind == AlertKind::DueSoon && overdue.contains(info.record_id.as_str()) {
                    continue;
                }
                if let Some(c) = children.iter_mut().find(|(c, _)| *c == info.unit) {
                    c.1[info.kind as usize] += 1;
                }
                let mine = info.unit == code
                    || (info.kind == AlertKind::Unrouted
                        && info.forwarder.as_deref() == Some(code.as_str()));
                if !mine {
                    continue;
                }
                let acked = n.is_acknowledged(info);
                acked_n += acked as usize;
                items.push(Item {
                    info: info.clone(),
                    status: if acked {
                        Status::Acknowledged
                    } else {
                        Status::Firing
                    },
                    resolved_at: None,
                });
            }
        }
    }
    sort_worst_first(&mut items, at);
    let mut counts =
        json!({"overdue": 0, "due_soon": 0, "hanging": 0, "unrouted": 0, "acknowledged": acked_n});
    for it in &items {
        let k = it.info.kind.as_str();
        counts[k] = json!(counts[k].as_u64().unwrap_or(0) + 1);
    }
    let rows: Vec<Value> = items
        .iter()
        .take(MAX_ROWS)
        .map(|it| {
            let i = &it.info;
            json!({
                "kind": i.kind.as_str(),
                "record_id": i.record_id,
                "url": format!("/ui/record/{}?t={token}", encode_path(&i.record_id)),
                "procedure": procedure_name(dir, &i.procedure),
                "received": ctx.calendar.format_local(i.received_at),
                "due": ctx.calendar.format_local(i.due),
                "situation": situation(&ctx, i, at),
                "holder": unit_name(dir, &i.unit),
                "acked": it.status == Status::Acknowledged,
            })
        })
        .collect();
    let (on_time, late) = month_counts(&s, &ctx, &code, at);
    let threshold = ctx.report.late_threshold_percent;
    let r = rate(late, on_time + late);
    let children: Vec<Value> = children
        .into_iter()
        .map(|(c, k)| {
            json!({
                "code": c, "name": unit_name(dir, &c),
                "url": format!("/ui/unit/{}?t={token}", encode_path(&c)),
                "overdue": k[AlertKind::Overdue as usize], "due_soon": k[AlertKind::DueSoon as usize],
                "hanging": k[AlertKind::Hanging as usize],
            })
        })
        .collect();
    let _ = links;
    let body = page(
        "unit.html",
        &ctx.lang,
        &unit_name(dir, &code),
        &ctx.calendar.format_local(at),
        json!({
            "subtitle": code,
            "rows": rows,
            "more": items.len().saturating_sub(MAX_ROWS),
            "counts": counts,
            "children": children,
            "threshold": threshold,
            "month": {"on_time": on_time, "late": late, "rate": r, "over": r.is_some_and(|x| x > threshold)},
        }),
    );
    html(StatusCode::OK, body)
}

/// What the record page shows of the engines.
struct Found {
    procedure: String,
    received: Instant,
    due: Instant,
    holder: String,
    receiving: String,
    open: bool,
    history: Vec<HistoryEntry>,
}

impl Found {
    /// Whether `scope` covers a unit that holds, received or held the record,
    /// or one of `also` (the units that forwarded it).
    fn visible_to<'a>(
        &'a self,
        dir: &Directory,
        scope: &Scope,
        also: impl Iterator<Item = &'a str>,
    ) -> bool {
        [self.holder.as_str(), self.receiving.as_str()]
            .into_iter()
            .chain(self.history.iter().filter_map(|h| h.unit.as_deref()))
            .chain(also)
            .any(|u| covers(dir, scope, u))
    }
}

fn find_record(s: &ApiState, id: &str) -> Option<Found> {
    let mut found = None;
    s.partitions.each(&mut |_, e: &Engine, history: &History| {
        let Some(slot) = e.find(id) else {
            return ControlFlow::Continue(());
        };
        let v = e.view(slot, s.now());
        let r = e.record(slot);
        found = Some(Found {
            procedure: v.procedure,
            received: r.received_at,
            due: r.due,
            holder: v.holder,
            receiving: v.receiving_unit,
            open: v.state == "open",
            history: history
                .get(id)
                .map(|h| h.iter().cloned().collect())
                .unwrap_or_default(),
        });
        ControlFlow::Break(())
    });
    found
}

pub(super) async fn record_page(
    State(s): State<Arc<ApiState>>,
    Path(id): Path<String>,
    q: Result<Query<TokenQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let (scope, ctx, links) = match check(&s, q.t.as_deref()) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let token = q.t.clone().unwrap_or_default();
    let Some(f) = find_record(&s, &id) else {
        return message(&s, StatusCode::NOT_FOUND, "not_found", "");
    };
    let at = now(&s);
    let dir = &ctx.directory;
    let cal = &ctx.calendar;
    let (alerts, acks) = {
        let n = s.notifier.lock().unwrap_or_else(|p| p.into_inner());
        match n.as_ref() {
            Some(n) => (
                n.record_alerts(&id)
                    .into_iter()
                    .map(|i| (i.clone(), n.is_acknowledged(i)))
                    .collect::<Vec<_>>(),
                n.acks()
                    .into_iter()
                    .filter(|a| a.record_id == id)
                    .cloned()
                    .collect::<Vec<_>>(),
            ),
            None => (Vec::new(), Vec::new()),
        }
    };
    // a unit sees the records it holds, received, held before, or forwarded
    let forwarders = alerts.iter().filter_map(|(i, _)| i.forwarder.as_deref());
    if !f.visible_to(dir, &scope, forwarders) {
        return message(&s, StatusCode::FORBIDDEN, "forbidden", "ask_again");
    }
    let lang = ctx.lang.as_str();
    let w = words(lang);
    let left = if at > f.due {
        let x = span(cal, lang, cal.working_between(f.due, at));
        if lang == "en" {
            format!("overdue by {x}")
        } else {
            format!("quá hạn {x}")
        }
    } else {
        let x = span(cal, lang, cal.working_between(at, f.due));
        if lang == "en" {
            format!("{x} left")
        } else {
            format!("còn {x}")
        }
    };
    // holders: each event naming a unit starts a holding
    let mut holders = Vec::new();
    let mut cur: Option<(String, Instant)> = None;
    for h in &f.history {
        if let Some(u) = h.unit.as_deref() {
            if h.ignored.is_some() {
                continue;
            }
            if let Some((pu, from)) = cur.take() {
                holders.push((pu, from, h.at));
            }
            cur = Some((u.to_string(), h.at));
        }
    }
    if let Some((pu, from)) = cur {
        holders.push((pu, from, at));
    }
    let holders: Vec<Value> = holders
        .into_iter()
        .map(|(u, from, to)| {
            json!({"unit": unit_name(dir, &u), "from": cal.format_local(from),
                   "hours": format!("{:.1}", cal.working_between(from, to) as f64 / HOUR as f64)})
        })
        .collect();
    let events: Vec<Value> = f
        .history
        .iter()
        .map(|h| {
            json!({"at": cal.format_local(h.at), "type": h.r#type, "ignored": h.ignored,
                   "unit": h.unit.as_deref().map(|u| unit_name(dir, u)).unwrap_or_default()})
        })
        .collect();
    let reason_label = |r: Reason| w["reasons"][r.as_str()].as_str().unwrap_or("").to_string();
    let can_ack = f.open && alerts.iter().any(|(_, acked)| !acked);
    let back_unit = match &scope {
        Scope::Unit(u) => Some(u.clone()),
        Scope::Admin => Some(f.holder.clone()),
    };
    let body = page(
        "record.html",
        lang,
        &format!("{} {id}", w["record"].as_str().unwrap_or("")),
        &cal.format_local(at),
        json!({
            "subtitle": unit_name(dir, &f.holder),
            "rec": {"procedure": procedure_name(dir, &f.procedure), "received": cal.format_local(f.received),
                    "due": cal.format_local(f.due), "left": left, "holder": unit_name(dir, &f.holder),
                    "state": if f.open { if lang == "en" { "open" } else { "đang giải quyết" } } else if lang == "en" { "closed" } else { "đã kết thúc" }},
            "alerts": alerts.iter().map(|(i, acked)| json!({"kind": i.kind.as_str(), "since": cal.format_local(i.fired_at),
                "unit": unit_name(dir, &i.unit), "acked": acked})).collect::<Vec<_>>(),
            "acks": acks.iter().map(|a| json!({"at": cal.format_local(a.at), "reason": a.reason.as_str(),
                "reason_label": reason_label(a.reason), "text": a.text,
                "ended": a.ended_at.map(|e| cal.format_local(e))})).collect::<Vec<_>>(),
            "can_ack": can_ack,
            "token": token,
            "csrf": links.csrf(&token, &id),
            "ack_action": format!("/ui/record/{}/ack", encode_path(&id)),
            "reasons": Reason::ALL.iter().map(|&r| json!({"value": r.as_str(), "label": reason_label(r)})).collect::<Vec<_>>(),
            "holders": holders,
            "events": events,
            "back_url": back_unit.map(|u| format!("/ui/unit/{}?t={token}", encode_path(&u))),
        }),
    );
    html(StatusCode::OK, body)
}

/// The acknowledgement form.
#[derive(Deserialize)]
pub(super) struct AckForm {
    t: Option<String>,
    csrf: Option<String>,
    reason: Option<String>,
    text: Option<String>,
}

/// Whether a POST comes from the pages themselves: a browser says where a
/// request comes from (`Sec-Fetch-Site`, `Origin`); another site's is refused.
/// Clients that send neither (scripts) still need the token and the
/// anti-forgery value.
fn same_origin(links: &Links, headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        if !matches!(site, "same-origin" | "none") {
            return false;
        }
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let public = {
        let u = &links.public_url;
        let after = u.find("://").map_or(0, |i| i + 3);
        match u[after..].find('/') {
            Some(j) => &u[..after + j],
            None => u.as_str(),
        }
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    origin == public || (!host.is_empty() && origin == format!("http://{host}"))
}

pub(super) async fn ack_post(
    State(s): State<Arc<ApiState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    form: Result<axum::Form<AckForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Some(links) = s.links.as_ref() else {
        return message(&s, StatusCode::NOT_FOUND, "no_pages", "");
    };
    if !same_origin(links, &headers) {
        tracing::warn!(record_id = %id, "acknowledgement refused: cross-site request");
        return message(&s, StatusCode::FORBIDDEN, "cross_site", "");
    }
    let Ok(axum::Form(f)) = form else {
        return message(&s, StatusCode::BAD_REQUEST, "refused", "");
    };
    let (scope, ctx, links) = match check(&s, f.t.as_deref()) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let token = f.t.clone().unwrap_or_default();
    if !links.check_csrf(&token, &id, f.csrf.as_deref().unwrap_or("")) {
        tracing::warn!(record_id = %id, "acknowledgement refused: bad anti-forgery value");
        return message(&s, StatusCode::FORBIDDEN, "cross_site", "");
    }
    let Some(reason) = f.reason.as_deref().and_then(Reason::parse) else {
        return message(&s, StatusCode::BAD_REQUEST, "refused", "");
    };
    let Some(found) = find_record(&s, &id) else {
        return message(&s, StatusCode::NOT_FOUND, "not_found", "");
    };
    if !found.visible_to(&ctx.directory, &scope, std::iter::empty()) {
        return message(&s, StatusCode::FORBIDDEN, "forbidden", "ask_again");
    }
    let by = match &scope {
        Scope::Admin => "admin".to_string(),
        Scope::Unit(u) => format!("unit:{u}"),
    };
    let at = now(&s);
    let mut guard = s.notifier.lock().unwrap_or_else(|p| p.into_inner());
    let Some(n) = guard.as_mut() else {
        return message(&s, StatusCode::NOT_FOUND, "no_email", "");
    };
    let ack = match n.new_ack(&id, reason, f.text.as_deref().unwrap_or(""), &by, at) {
        Ok(a) => a,
        Err(e) => {
            let mut r = message(&s, StatusCode::CONFLICT, "refused", "");
            tracing::info!(record_id = %id, error = %e, "acknowledgement refused");
            *r.status_mut() = StatusCode::CONFLICT;
            return r;
        }
    };
    // durable before the page says so: an acknowledgement survives a crash
    if let Some(file) = &s.acks_file {
        let mut all = n.acks();
        all.push(&ack);
        if let Err(e) = crate::state::save_acks(file, &all) {
            tracing::error!(error = %e, "cannot save acknowledgements");
            return message(&s, StatusCode::INTERNAL_SERVER_ERROR, "refused", "");
        }
    }
    crate::metrics::events::Acknowledged { ack: &ack }.emit(&s.metrics);
    n.add_ack(ack);
    drop(guard);
    // POST/redirect/GET: a reload does not post again
    let to = format!("/ui/record/{}?t={token}", encode_path(&id));
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(&to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

pub(super) async fn province_page(
    State(s): State<Arc<ApiState>>,
    q: Result<Query<TokenQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let (scope, ctx, _) = match check(&s, q.t.as_deref()) {
        Ok(v) => v,
        Err(r) => return r,
    };
    if scope != Scope::Admin {
        return message(&s, StatusCode::FORBIDDEN, "forbidden", "ask_again");
    }
    let token = q.t.clone().unwrap_or_default();
    let at = now(&s);
    let cal = &ctx.calendar;
    let dir = &ctx.directory;
    let (year, _, _) = cal.local_date(at);
    let (from, to) = (year * 12, year * 12 + 11);
    let mut by_level: std::collections::HashMap<String, (u64, u64)> = Default::default();
    let mut by_unit: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    s.partitions.each(&mut |_, e, _| {
        for (&(m, u, _), c) in &e.monthly {
            if m < from || m > to {
                continue;
            }
            let judged = c.early + c.on_time + c.late;
            let l = by_level.entry(e.level(u).to_string()).or_default();
            l.0 += judged;
            l.1 += c.late;
            let x = by_unit.entry(e.unit_code(u).to_string()).or_default();
            x.0 += judged;
            x.1 += c.late;
        }
        ControlFlow::Continue(())
    });
    let mut counts =
        json!({"overdue": 0, "due_soon": 0, "hanging": 0, "unrouted": 0, "acknowledged": 0});
    let mut open_by_unit: std::collections::HashMap<String, u64> = Default::default();
    {
        let n = s.notifier.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = n.as_ref() {
            for i in n.alerts() {
                let k = i.kind.as_str();
                counts[k] = json!(counts[k].as_u64().unwrap_or(0) + 1);
                if n.is_acknowledged(i) {
                    counts["acknowledged"] =
                        json!(counts["acknowledged"].as_u64().unwrap_or(0) + 1);
                }
                *open_by_unit.entry(i.unit.clone()).or_default() += 1;
            }
        }
    }
    let threshold = ctx.report.late_threshold_percent;
    let w = words(&ctx.lang);
    let fmt_rate = |r: Option<f64>| r.map(|x| format!("{x:.1} %")).unwrap_or_else(|| "–".into());
    // in the configured report order, units missing from the directory last
    let levels: Vec<Value> = dir
        .levels
        .iter()
        .map(String::as_str)
        .chain(["unknown"])
        .filter_map(|l| Some((l, *by_level.get(l)?)))
        .map(|(l, (j, late))| {
            json!({"name": w["levels"][l].as_str().unwrap_or(l), "judged": j, "late": late,
                   "rate": fmt_rate(rate(late, j)), "over": rate(late, j).is_some_and(|x| x > threshold)})
        })
        .collect();
    let mut units: Vec<(String, u64, u64)> = by_unit
        .into_iter()
        .filter(|(_, (j, _))| *j > 0)
        .map(|(u, (j, l))| (u, j, l))
        .collect();
    units.sort_by(|a, b| {
        let ra = a.2 as f64 / a.1 as f64;
        let rb = b.2 as f64 / b.1 as f64;
        rb.total_cmp(&ra).then(a.0.cmp(&b.0))
    });
    let units: Vec<Value> = units
        .iter()
        .take(30)
        .map(|(u, j, l)| {
            json!({"code": u, "name": unit_name(dir, u), "judged": j, "late": l,
                   "rate": fmt_rate(rate(*l, *j)), "over": rate(*l, *j).is_some_and(|x| x > threshold),
                   "open": open_by_unit.get(u).copied().unwrap_or(0),
                   "url": format!("/ui/unit/{}?t={token}", encode_path(u))})
        })
        .collect();
    let body = page(
        "province.html",
        &ctx.lang,
        if ctx.lang == "en" {
            "Province"
        } else {
            "Toàn tỉnh"
        },
        &cal.format_local(at),
        json!({"counts": counts, "levels": levels, "units": units, "threshold": threshold,
               "period": year}),
    );
    html(StatusCode::OK, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unit_token_covers_itself_and_the_units_under_it() {
        let cfg = crate::config::Config::load(std::path::Path::new("config/overdued.toml"))
            .expect("sample config");
        let dir = &cfg.engine.directory;
        let child = dir
            .units
            .iter()
            .find(|u| u.parent.is_some())
            .expect("a unit with a parent");
        let parent = &dir.units[child.parent.unwrap() as usize];
        let other = dir
            .units
            .iter()
            .find(|u| {
                u.code != child.code
                    && u.code != parent.code
                    && u.parent != child.parent.map(|_| 0).and(None)
            })
            .expect("another unit");
        assert!(covers(dir, &Scope::Unit(child.code.clone()), &child.code));
        assert!(covers(dir, &Scope::Unit(parent.code.clone()), &child.code));
        assert!(!covers(dir, &Scope::Unit(child.code.clone()), &parent.code));
        assert!(covers(dir, &Scope::Admin, &other.code));
        assert!(!covers(dir, &Scope::Unit(child.code.clone()), "NOT.A.UNIT"));
    }
}
