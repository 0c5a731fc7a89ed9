//! The HTTP server: `/metrics`, `/healthz`, `/readyz`, the JSON API
//! (`/api/v1/records/{id}`, `/api/v1/alerts`, `/api/v1/rates`) and the silences
//! (`/api/v1/silences`, mutating, behind a bearer token), one port (default
//! 9464). Documented in `docs/api.md`.
//!
//! The API is handed what it needs, an [`ApiState`] defined here; it never
//! imports the daemon. Handlers read the engines through [`Partitions`] between
//! consumer rounds (a lock held ≤ ~100 ms by the consumer).

mod server;
pub mod ui;

pub use server::{serve, Limits};

use crate::alert::Notifier;
use crate::config::common::Secret;
use crate::engine::Engine;
use crate::metrics::{Metrics, Snapshot};
use crate::time::Instant;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Json;
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::collections::{HashMap, VecDeque};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::sync::Mutex;

/// One applied event, as the record API shows it. Kept compact (the time as an
/// instant, formatted only when the API asks): one is built for every event.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HistoryEntry {
    /// `event_id`.
    pub event_id: Box<str>,
    /// Event type.
    pub r#type: &'static str,
    /// Event time.
    #[serde(serialize_with = "ser_instant")]
    pub at: Instant,
    /// Unit named by the event, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<Box<str>>,
    /// Kafka offset.
    pub offset: i64,
    /// `ignored` reason, if the event was ignored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignored: Option<&'static str>,
}

fn ser_instant<S: serde::Serializer>(t: &Instant, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::time::format_rfc3339(*t))
}

/// The last events of each held record (bounded per record by the daemon).
pub type History = HashMap<Box<str>, VecDeque<HistoryEntry>>;

/// Read access to the engines of the assigned partitions.
pub trait Partitions: Send + Sync {
    /// Calls `f` with each partition, its engine and its record history, in
    /// partition order, until `f` breaks.
    fn each(&self, f: &mut dyn FnMut(i32, &Engine, &History) -> ControlFlow<()>);
}

/// What the HTTP server is handed.
pub struct ApiState {
    /// The engines.
    pub partitions: Arc<dyn Partitions>,
    /// Latest metrics snapshot (refreshed by the consumer every second).
    pub snapshot: Mutex<Snapshot>,
    /// The process's own metrics (histograms, counters, process collector).
    pub metrics: Metrics,
    /// Partitions assigned and caught up.
    pub ready: AtomicBool,
    /// Partitions stopped at a dead letter not yet written (not ready while any).
    pub blocked: std::sync::atomic::AtomicUsize,
    /// Partitions stalled (no answer from their broker, or lag without
    /// progress; not ready while any).
    pub stalled: std::sync::atomic::AtomicUsize,
    /// The source is silent (a health detail: still ready).
    pub source_silent: AtomicBool,
    /// The e-mail stage's decisions (None without `[email]`); the API edits its
    /// silences.
    pub notifier: Mutex<Option<Notifier>>,
    /// Bearer token of the mutating endpoints (none = they are refused).
    pub api_token: Option<Secret>,
    /// Where silences made through the API are kept.
    pub silences_file: PathBuf,
    /// Where acknowledgements are kept (none: in memory only, `demo --serve`).
    pub acks_file: Option<PathBuf>,
    /// Signed page links (none: no pages).
    pub links: Option<crate::link::Links>,
    /// Names, calendar and language for the pages.
    pub ui: std::sync::RwLock<Option<Arc<ui::UiContext>>>,
    /// A fixed "now" (`demo --serve` shows the year's end); none: the wall clock.
    pub as_of: Option<Instant>,
}

impl ApiState {
    /// "Now" for what the API shows: the wall clock, or the fixed instant of
    /// `demo --serve`.
    pub fn now(&self) -> Instant {
        self.as_of.unwrap_or_else(crate::time::now)
    }
}

async fn metrics(State(s): State<Arc<ApiState>>) -> impl IntoResponse {
    let mut body = {
        let snap = s.snapshot.lock().unwrap_or_else(|p| p.into_inner());
        crate::metrics::render(&snap)
    };
    crate::metrics::render_ready(&mut body, readiness(&s).is_ok());
    body.push_str(&s.metrics.encode());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// What `/readyz` answers: `Ok(detail)` when ready, `Err(why)` when not.
fn readiness(s: &ApiState) -> Result<&'static str, String> {
    let blocked = s.blocked.load(Ordering::Relaxed);
    let stalled = s.stalled.load(Ordering::Relaxed);
    if blocked > 0 {
        Err(format!("not ready: {blocked} partition(s) wait for a dead-letter write (overdued_dead_letter_failures_total)\n"))
    } else if stalled > 0 {
        Err(format!("not ready: {stalled} partition(s) stalled (overdued_partition_stalled, overdued_kafka_fetch_age_seconds)\n"))
    } else if s.ready.load(Ordering::Relaxed) {
        Ok(if s.source_silent.load(Ordering::Relaxed) {
            "; the source is silent, hanging e-mails held (overdued_source_silent)"
        } else {
            ""
        })
    } else {
        Err("not ready: partitions not assigned or not caught up\n".into())
    }
}

async fn readyz(State(s): State<Arc<ApiState>>) -> (StatusCode, String) {
    match readiness(&s) {
        Ok(detail) => (StatusCode::OK, format!("ready{detail}\n")),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why),
    }
}

/// Checks `Authorization: Bearer <token>` in constant time. Without a configured
/// token the mutating endpoints are refused (403), never open.
fn authorize(
    s: &ApiState,
    headers: &axum::http::HeaderMap,
) -> Result<(), (StatusCode, Json<Value>)> {
    let Some(want) = s.api_token.as_ref() else {
        return Err(error(
            StatusCode::FORBIDDEN,
            "changes are disabled: set [http] api_token (env:NAME or file:PATH) to enable them",
        ));
    };
    let got = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        // the scheme is case-insensitive (RFC 7235 §2.1)
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map_or("", |(_, token)| token.trim_start());
    let (a, b) = (got.as_bytes(), want.expose().as_bytes());
    let mut diff = a.len() ^ b.len();
    for (i, &x) in b.iter().enumerate() {
        diff |= (x ^ a.get(i).copied().unwrap_or(0)) as usize;
    }
    if diff != 0 {
        tracing::warn!("API change refused: missing or wrong bearer token");
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token",
        ));
    }
    Ok(())
}

fn silence_json(sil: &crate::alert::Silence, source: &str, now: i64) -> Value {
    let mut v = serde_json::to_value(sil).unwrap_or_default();
    v["source"] = json!(source);
    v["active"] = json!(sil.active(now));
    v
}

async fn silences(State(s): State<Arc<ApiState>>) -> (StatusCode, Json<Value>) {
    let n = s.notifier.lock().unwrap_or_else(|p| p.into_inner());
    let Some(n) = n.as_ref() else {
        return error(StatusCode::NOT_FOUND, "e-mail is not configured ([email])");
    };
    let now = crate::time::now();
    let list: Vec<Value> = n
        .silences()
        .map(|x| {
            let src = if x.id.starts_with("cfg-") {
                "config"
            } else {
                "api"
            };
            silence_json(x, src, now)
        })
        .collect();
    (StatusCode::OK, Json(json!({ "silences": list })))
}

/// Largest silence accepted, in bytes (the router limits the body to it).
const MAX_SILENCE_BYTES: usize = 16 * 1024;

async fn add_silence(
    State(s): State<Arc<ApiState>>,
    headers: axum::http::HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> (StatusCode, Json<Value>) {
    if let Err(e) = authorize(&s, &headers) {
        return e;
    }
    let body = match body {
        Ok(b) if b.len() <= MAX_SILENCE_BYTES => b,
        Ok(_) => return error(StatusCode::PAYLOAD_TOO_LARGE, "a silence is at most 16 KiB"),
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return error(StatusCode::PAYLOAD_TOO_LARGE, "a silence is at most 16 KiB")
        }
        Err(e) => return error(e.status(), e.body_text()),
    };
    let new: crate::alert::NewSilence = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid JSON: {e}")),
    };
    let now = crate::time::now();
    let mut guard = s.notifier.lock().unwrap_or_else(|p| p.into_inner());
    let Some(n) = guard.as_mut() else {
        return error(StatusCode::NOT_FOUND, "e-mail is not configured ([email])");
    };
    if n.state.silences.len() >= 10_000 {
        return error(
            StatusCode::INSUFFICIENT_STORAGE,
            "too many silences (10000)",
        );
    }
    // unique even for two requests in one microsecond or a clock stepping back
    let mut id = format!("s-{now:x}");
    let mut k = 0;
    while n.silences().any(|x| x.id == id) {
        k += 1;
        id = format!("s-{now:x}-{k}");
    }
    let sil = match new.validate(id, now) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let mut list = n.state.silences.clone();
    // ended silences are dropped after a week
    list.retain(|x| x.ends_at + 7 * 86_400 * crate::time::SECOND > now);
    list.push(sil.clone());
    // durable before acknowledged: a silence survives a crash right after the 201
    if let Err(e) = crate::state::save_silences(&s.silences_file, &list) {
        tracing::error!(error = %e, "cannot save silences");
        return error(StatusCode::INTERNAL_SERVER_ERROR, "cannot save the silence");
    }
    n.state.silences = list;
    tracing::info!(id = %sil.id, window = %sil.window(), unit = sil.unit.as_deref().unwrap_or(""), sector = sil.sector.as_deref().unwrap_or(""), kind = sil.kind.as_deref().unwrap_or(""), record = sil.record.as_deref().unwrap_or(""), "silence added");
    (StatusCode::CREATED, Json(silence_json(&sil, "api", now)))
}

async fn delete_silence(
    State(s): State<Arc<ApiState>>,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
) -> (StatusCode, Json<Value>) {
    if let Err(e) = authorize(&s, &headers) {
        return e;
    }
    let mut guard = s.notifier.lock().unwrap_or_else(|p| p.into_inner());
    let Some(n) = guard.as_mut() else {
        return error(StatusCode::NOT_FOUND, "e-mail is not configured ([email])");
    };
    if id.starts_with("cfg-") {
        return error(
            StatusCode::CONFLICT,
            "a silence of the configuration file is removed there (then SIGHUP)",
        );
    }
    let mut list = n.state.silences.clone();
    let before = list.len();
    list.retain(|x| x.id != id);
    if list.len() == before {
        return error(StatusCode::NOT_FOUND, "no such silence");
    }
    if let Err(e) = crate::state::save_silences(&s.silences_file, &list) {
        tracing::error!(error = %e, "cannot save silences");
        return error(StatusCode::INTERNAL_SERVER_ERROR, "cannot save the change");
    }
    n.state.silences = list;
    n.release(crate::time::now());
    tracing::info!(id = %id, "silence deleted");
    (StatusCode::OK, Json(json!({ "deleted": id })))
}

async fn acknowledgements(State(s): State<Arc<ApiState>>) -> (StatusCode, Json<Value>) {
    let n = s.notifier.lock().unwrap_or_else(|p| p.into_inner());
    let Some(n) = n.as_ref() else {
        return error(StatusCode::NOT_FOUND, "e-mail is not configured ([email])");
    };
    let f = crate::time::format_rfc3339;
    let list: Vec<Value> = n
        .acks()
        .into_iter()
        .map(|a| {
            json!({
                "id": a.id, "record_id": a.record_id, "unit": a.unit,
                "alerts": a.alerts.iter().map(|c| json!({"kind": c.kind.as_str(), "fired_at": f(c.fired_at)})).collect::<Vec<_>>(),
                "reason": a.reason.as_str(), "text": a.text, "at": f(a.at), "by": a.by,
                "ended_at": a.ended_at.map(f), "active": a.ended_at.is_none(),
            })
        })
        .collect();
    (StatusCode::OK, Json(json!({ "acknowledgements": list })))
}

fn error(status: StatusCode, msg: impl Into<String>) -> (StatusCode, Json<Value>) {
    (status, Json(json!({ "error": msg.into() })))
}

async fn record(
    State(s): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> (StatusCode, Json<Value>) {
    let mut found = None;
    s.partitions.each(&mut |_, engine, history| {
        let Some(slot) = engine.find(&id) else {
            return ControlFlow::Continue(());
        };
        let v = engine.view(slot, s.now());
        let mut j = serde_json::to_value(v).unwrap_or_default();
        let h: Vec<_> = history
            .get(id.as_str())
            .map(|h| h.iter().collect())
            .unwrap_or_default();
        j["holders"] = Value::Array(holders(engine, &h, s.now()));
        j["history"] = serde_json::to_value(h).unwrap_or_default();
        found = Some(j);
        ControlFlow::Break(())
    });
    match found {
        Some(j) => (StatusCode::OK, Json(j)),
        None => error(StatusCode::NOT_FOUND, format!("no record {id:?} is held")),
    }
}

/// Who held the record and for how much working time (on each holder's
/// calendar profile), from the kept history: a holder starts at a
/// `received`, `snapshot` or `forwarded` naming it and ends at the next one,
/// the closing event, or `now`.
fn holders(engine: &Engine, history: &[&HistoryEntry], now: Instant) -> Vec<Value> {
    let mut spans: Vec<(&str, Instant, Option<Instant>)> = Vec::new();
    for h in history.iter().filter(|h| h.ignored.is_none()) {
        match (h.r#type, h.unit.as_deref()) {
            ("received" | "snapshot" | "forwarded", Some(u)) => {
                if let Some(last) = spans.last_mut() {
                    if last.2.is_none() {
                        last.2 = Some(h.at);
                    }
                }
                spans.push((u, h.at, None));
            }
            ("resolved" | "returned" | "rejected" | "withdrawn", _) => {
                if let Some(last) = spans.last_mut() {
                    last.2.get_or_insert(h.at);
                }
            }
            _ => {}
        }
    }
    spans
        .into_iter()
        .map(|(u, from, to)| {
            let end = to.unwrap_or(now.max(from));
            let held = engine.calendar_of(u).working_between(from, end);
            json!({
                "unit": u,
                "from": crate::time::format_rfc3339(from),
                "to": to.map(crate::time::format_rfc3339),
                "working_hours": (held as f64 / crate::time::HOUR as f64 * 100.0).round() / 100.0,
            })
        })
        .collect()
}

#[derive(Deserialize)]
struct AlertQuery {
    unit: Option<String>,
    kind: Option<String>,
    level: Option<String>,
    sector: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

async fn alerts(
    State(s): State<Arc<ApiState>>,
    q: Result<Query<AlertQuery>, QueryRejection>,
) -> (StatusCode, Json<Value>) {
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let limit = match q.limit {
        None => 100,
        Some(n @ 1..=1000) => n,
        Some(_) => return error(StatusCode::BAD_REQUEST, "limit must be from 1 to 1000"),
    };
    if let Some(k) = &q.kind {
        if crate::engine::AlertKind::parse(k).is_none() {
            return error(
                StatusCode::BAD_REQUEST,
                "kind must be unrouted, hanging, due_soon or overdue",
            );
        }
    }
    if let Some(l) = &q.level {
        if !matches!(l.as_str(), "province" | "district" | "commune" | "unknown") {
            return error(
                StatusCode::BAD_REQUEST,
                "level must be province, district, commune or unknown",
            );
        }
    }
    let (mut part_from, mut slot_from) = (i32::MIN, 0u32);
    if let Some(c) = &q.cursor {
        match c
            .split_once(':')
            .and_then(|(p, s)| Some((p.parse::<i32>().ok().filter(|&p| p >= 0)?, s.parse().ok()?)))
        {
            Some((p, sl)) => (part_from, slot_from) = (p, sl),
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "cursor must be the `next` value of a previous page",
                )
            }
        }
    }
    let now = s.now();
    let mut items = Vec::new();
    let mut next = None;
    s.partitions.each(&mut |p, e, _| {
        if p < part_from {
            return ControlFlow::Continue(());
        }
        let from = if p == part_from { slot_from } else { 0 };
        let (found, more) = e.firing_alerts(from, limit - items.len(), |slot, k| {
            let r = e.record(slot);
            q.kind.as_deref().is_none_or(|x| x == k.as_str())
                && q.unit.as_deref().is_none_or(|x| x == e.unit_code(r.holder))
                && q.level
                    .as_deref()
                    .is_none_or(|x| x == e.level(r.holder))
                && q.sector
                    .as_deref()
                    .is_none_or(|x| x == e.sector_code(r.sector()))
        });
        for (slot, k) in found {
            let v = e.view(slot, now);
            items.push(json!({ "record_id": v.record_id, "kind": k.as_str(), "unit": v.holder, "level": e.level(e.record(slot).holder), "sector": v.sector, "due_at": v.due_at, "working_hours_left": v.working_hours_left }));
        }
        if let Some(m) = more {
            next = Some(format!("{p}:{m}"));
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    });
    (
        StatusCode::OK,
        Json(json!({ "alerts": items, "next": next })),
    )
}

#[derive(Deserialize)]
struct RatesQuery {
    by: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

fn parse_month(s: &str) -> Option<i32> {
    let (y, m) = s.split_once('-')?;
    let (y, m): (i32, i32) = (y.parse().ok()?, m.parse().ok()?);
    (1..=12).contains(&m).then_some(y * 12 + m - 1)
}

async fn rates(
    State(s): State<Arc<ApiState>>,
    q: Result<Query<RatesQuery>, QueryRejection>,
) -> (StatusCode, Json<Value>) {
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let by = q.by.as_deref().unwrap_or("level");
    if !matches!(by, "level" | "unit" | "sector" | "area") {
        return error(
            StatusCode::BAD_REQUEST,
            "by must be level, unit, sector or area",
        );
    }
    let report =
        s.ui.read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|c| c.report.clone())
            .unwrap_or_default();
    let area_level = match (by, report.area_level.as_deref()) {
        ("area", None) => {
            return error(
                StatusCode::BAD_REQUEST,
                "by=area needs [report] area_level in the configuration",
            )
        }
        (_, l) => l,
    };
    let month =
        |v: &Option<String>, name: &str| -> Result<Option<i32>, (StatusCode, Json<Value>)> {
            match v {
                None => Ok(None),
                Some(x) => parse_month(x).map(Some).ok_or_else(|| {
                    error(
                        StatusCode::BAD_REQUEST,
                        format!("{name} must be a month YYYY-MM"),
                    )
                }),
            }
        };
    let (from, to) = match (month(&q.from, "from"), month(&q.to, "to")) {
        (Ok(a), Ok(b)) => (a.unwrap_or(i32::MIN), b.unwrap_or(i32::MAX)),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    let mut groups: BTreeMap<String, crate::report::Counts> = BTreeMap::new();
    s.partitions.each(&mut |_, e, _| {
        let area = area_level.and_then(|l| e.directory().level_named(l));
        for (&(m, u, sec), c) in &e.monthly {
            if m < from || m > to {
                continue;
            }
            let key = match (by, area_level) {
                ("unit", _) => e.unit_code(u).to_string(),
                ("sector", _) => e.sector_code(sec).to_string(),
                // all the records of the area, whatever the level of the unit
                ("area", _) => match area.and_then(|l| e.directory().area_of(u, l)) {
                    Some(a) => e.unit_code(a).to_string(),
                    None => continue,
                },
                _ => e.level(u).to_string(),
            };
            groups.entry(key).or_default().add(c);
        }
        ControlFlow::Continue(())
    });
    let rows: BTreeMap<String, Value> = groups
        .into_iter()
        .map(|(k, c)| {
            let v = json!({ "received": c.received, "early": c.early, "on_time": c.on_time, "late": c.late,
                "rejected": c.rejected, "withdrawn": c.withdrawn, "judged": c.judged(),
                "on_time_rate": c.on_time_rate(), "late_rate": c.late_rate(),
                "over_threshold": report.over(c.late_rate()) });
            (k, v)
        })
        .collect();
    (
        StatusCode::OK,
        Json(json!({ "by": by, "from": q.from, "to": q.to,
                    "late_threshold_percent": report.late_threshold_percent, "rates": rows })),
    )
}

/// The router.
pub fn router(shared: Arc<ApiState>) -> Router {
    Router::new()
        .route("/api/v1/records/{id}", get(record))
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/rates", get(rates))
        .route(
            "/api/v1/silences",
            get(silences)
                .post(add_silence)
                .layer(DefaultBodyLimit::max(MAX_SILENCE_BYTES)),
        )
        .route(
            "/api/v1/silences/{id}",
            axum::routing::delete(delete_silence),
        )
        .route("/api/v1/acknowledgements", get(acknowledgements))
        .route("/ui/unit/{code}", get(ui::unit_page))
        .route("/ui/record/{id}", get(ui::record_page))
        .route(
            "/ui/record/{id}/ack",
            axum::routing::post(ui::ack_post).layer(DefaultBodyLimit::max(8 * 1024)),
        )
        .route("/ui/province", get(ui::province_page))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(shared)
}

#[cfg(test)]
mod tests;
