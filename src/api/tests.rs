//! The router from outside, in process: status codes and JSON errors of the
//! query and body checks, and the bearer scheme.

use super::*;
use crate::alert::{Notifier, Settings};
use axum::body::Body;
use axum::http::Request;
use tower::ServiceExt;

const TOKEN: &str = "0123456789abcdef0123";

struct NoPartitions;

impl Partitions for NoPartitions {
    fn each(&self, _: &mut dyn FnMut(i32, &Engine, &History) -> ControlFlow<()>) {}
}

fn state(dir: &std::path::Path) -> Arc<ApiState> {
    Arc::new(ApiState {
        partitions: Arc::new(NoPartitions),
        snapshot: Mutex::new(Snapshot::default()),
        metrics: Metrics::unregistered(),
        ready: AtomicBool::new(true),
        blocked: Default::default(),
        stalled: Default::default(),
        source_silent: Default::default(),
        notifier: Mutex::new(Some(Notifier::new(Settings::default(), Vec::new()))),
        api_token: Some(Secret::new(TOKEN)),
        silences_file: dir.join("silences.json"),
        acks_file: Some(dir.join("acknowledgements.json")),
        links: Some(crate::link::Links::new(
            Secret::new(UI_SECRET),
            "https://overdued.example",
            86_400 * crate::time::SECOND,
        )),
        ui: Default::default(),
        as_of: Some(AS_OF),
    })
}

const UI_SECRET: &str = "a page secret of 16+ chars";
/// 2026-03-04T09:00:00+07:00.
const AS_OF: Instant = 1_772_589_600_000_000;

fn call(s: &Arc<ApiState>, req: Request<Body>) -> (StatusCode, Value) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let resp = router(s.clone()).oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let v = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            panic!("{status}: not JSON: {:?}", String::from_utf8_lossy(&bytes))
        });
        (status, v)
    })
}

fn get_json(s: &Arc<ApiState>, uri: &str) -> (StatusCode, Value) {
    call(s, Request::get(uri).body(Body::empty()).unwrap())
}

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("overdued-api-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn alert_queries_out_of_range_are_400_with_a_json_error() {
    let s = state(&tmp("queries"));
    for uri in [
        "/api/v1/alerts?limit=0",
        "/api/v1/alerts?limit=1001",
        "/api/v1/alerts?limit=abc",
        "/api/v1/alerts?kind=bogus",
        "/api/v1/alerts?level=region",
        "/api/v1/alerts?cursor=-1:5",
        "/api/v1/alerts?cursor=x",
        "/api/v1/rates?by=planet",
        "/api/v1/rates?from=2024-13",
        // no [report] area_level configured
        "/api/v1/rates?by=area",
    ] {
        let (status, v) = get_json(&s, uri);
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
        assert!(
            v["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{uri}: {v}"
        );
    }
    for uri in [
        "/api/v1/alerts?limit=1",
        "/api/v1/alerts?limit=1000&kind=overdue&level=commune",
        "/api/v1/alerts?cursor=0:5",
        "/api/v1/rates",
    ] {
        let (status, _) = get_json(&s, uri);
        assert_eq!(status, StatusCode::OK, "{uri}");
    }
}

fn post_silence(s: &Arc<ApiState>, auth: &str, body: String) -> (StatusCode, Value) {
    call(
        s,
        Request::post("/api/v1/silences")
            .header(header::AUTHORIZATION, auth)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .unwrap(),
    )
}

#[test]
fn the_bearer_scheme_is_case_insensitive_and_a_large_body_is_a_json_413() {
    let s = state(&tmp("bearer"));
    let silence = r#"{"unit":"U1","ends_at":"2099-01-01T00:00:00Z","comment":"works"}"#;
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let (status, v) = post_silence(&s, &format!("{scheme} {TOKEN}"), silence.into());
        assert_eq!(status, StatusCode::CREATED, "{scheme}: {v}");
    }
    let (status, _) = post_silence(&s, &format!("Basic {TOKEN}"), silence.into());
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = post_silence(&s, "Bearer wrong-token-0000000", silence.into());
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // over the limit: refused before it is read whole, still as JSON
    let big = format!(r#"{{"unit":"U1","comment":"{}"}}"#, "x".repeat(20_000));
    let (status, v) = post_silence(&s, &format!("Bearer {TOKEN}"), big);
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        v["error"].as_str().is_some_and(|e| e.contains("16 KiB")),
        "{v}"
    );
}

#[test]
fn idle_and_excess_connections_are_closed_and_health_still_answers() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    let s = state(&tmp("limits"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = Limits {
            max_connections: 8,
            header_timeout: std::time::Duration::from_millis(500),
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(listener, router(s), limits, async {
            let _ = stopped.await;
        }));
        // closed = the peer ends the stream (0 bytes) or resets it
        async fn closed_within(c: &mut TcpStream, ms: u64) -> bool {
            let mut buf = [0u8; 64];
            matches!(
                tokio::time::timeout(std::time::Duration::from_millis(ms), c.read(&mut buf)).await,
                Ok(Ok(0)) | Ok(Err(_))
            )
        }
        // eight idle clients take every slot
        let mut idle = Vec::new();
        for _ in 0..8 {
            idle.push(TcpStream::connect(addr).await.unwrap());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        // a ninth is closed at once
        let mut extra = TcpStream::connect(addr).await.unwrap();
        assert!(
            closed_within(&mut extra, 300).await,
            "over the limit, still open"
        );
        // the idle ones are closed after the header timeout
        for c in idle.iter_mut() {
            assert!(
                closed_within(c, 2000).await,
                "an idle connection stayed open"
            );
        }
        // and the server answers again
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut body = String::new();
        c.read_to_string(&mut body).await.unwrap();
        assert!(body.starts_with("HTTP/1.1 200"), "{body}");
        assert!(body.ends_with("ok\n"), "{body}");
        let _ = stop.send(());
    });
}

/// A page as (status, body text).
fn get_page(s: &Arc<ApiState>, uri: &str) -> (StatusCode, String) {
    page_req(s, Request::get(uri).body(Body::empty()).unwrap())
}

fn page_req(s: &Arc<ApiState>, req: Request<Body>) -> (StatusCode, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let resp = router(s.clone()).oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 22)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    })
}

#[test]
fn unit_pages_need_a_valid_token_of_that_unit_and_show_no_data_otherwise() {
    let d = tmp("pages");
    let s = state(&d);
    let cfg = crate::config::Config::load(std::path::Path::new("config/overdued.toml"))
        .expect("sample config");
    *s.ui.write().unwrap() = Some(Arc::new(ui::UiContext {
        calendar: cfg.engine.calendar.clone(),
        directory: cfg.engine.directory.clone(),
        lang: "vi".into(),
        report: cfg.report.clone(),
    }));
    let unit = cfg.engine.directory.units[0].code.clone();
    let other = cfg
        .engine
        .directory
        .units
        .iter()
        .find(|u| u.parent.is_none() && u.code != unit)
        .map(|u| u.code.clone())
        .unwrap();
    {
        let mut n = s.notifier.lock().unwrap();
        let n = n.as_mut().unwrap();
        n.fire(
            crate::engine::view::AlertInfo {
                record_id: "HS-<b>1".into(),
                kind: crate::engine::AlertKind::Overdue,
                unit: unit.clone(),
                sector: "DD".into(),
                procedure: "1.004227".into(),
                received_at: AS_OF - 10 * 86_400 * crate::time::SECOND,
                due: AS_OF - 86_400 * crate::time::SECOND,
                fired_at: AS_OF - 86_400 * crate::time::SECOND,
                escalate_at: None,
                forwarder: None,
                partition: None,
            },
            &cfg.engine.directory,
        );
    }
    let links = s.links.clone().unwrap();
    let good = links.token(
        &crate::link::Scope::Unit(unit.clone()),
        AS_OF + 3_600_000_000,
    );
    let path = format!("/ui/unit/{}", crate::link::encode_path(&unit));
    let (st, body) = get_page(&s, &format!("{path}?t={good}"));
    assert_eq!(st, StatusCode::OK, "{body}");
    // the record is listed, its id HTML-escaped, with how long it is overdue
    assert!(body.contains("HS-&lt;b&gt;1"), "{body}");
    assert!(!body.contains("HS-<b>1"), "{body}");
    assert!(body.contains("quá hạn 1 ngày"), "{body}");
    // no token, a tampered one, an expired one, another unit's: no data
    let expired = links.token(&crate::link::Scope::Unit(unit.clone()), AS_OF - 1);
    let mut tampered = good.clone();
    tampered.pop();
    tampered.push(if good.ends_with('0') { '1' } else { '0' });
    let foreign = links.token(&crate::link::Scope::Unit(other), AS_OF + 3_600_000_000);
    for (t, want) in [
        ("".to_string(), "thiếu mã truy cập"),
        (tampered, "không hợp lệ"),
        (expired, "đã hết hạn"),
        (foreign, "không mở được trang này"),
    ] {
        let (st, body) = get_page(&s, &format!("{path}?t={t}"));
        assert_eq!(st, StatusCode::FORBIDDEN, "{t}: {body}");
        assert!(body.contains(want), "{t}: {body}");
        assert!(!body.contains("HS-"), "{t}: {body}");
    }
    // the province page is the administrator's
    let (st, _) = get_page(&s, &format!("/ui/province?t={good}"));
    assert_eq!(st, StatusCode::FORBIDDEN);
    let admin = links.token(&crate::link::Scope::Admin, AS_OF + 3_600_000_000);
    let (st, body) = get_page(&s, &format!("/ui/province?t={admin}"));
    assert_eq!(st, StatusCode::OK, "{body}");
    assert!(body.contains("1 Quá hạn"), "{body}");
    // a POST from another site is refused before anything else
    let req = Request::post("/ui/record/HS-1/ack")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("origin", "https://evil.example")
        .body(Body::from(format!("t={good}&csrf=x&reason=other&text=x")))
        .unwrap();
    let (st, body) = page_req(&s, req);
    assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("trang khác"), "{body}");
    // the acknowledgements API lists none yet
    let (st, v) = get_json(&s, "/api/v1/acknowledgements");
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["acknowledgements"], serde_json::json!([]));
    std::fs::remove_dir_all(&d).ok();
}

/// The record view's holders: each unit from the event naming it to the next
/// one (or the close, or now), with the working time it held the record
/// (sample calendar: 07:00–11:30, 13:30–17:00; Monday 4 March 2024).
#[test]
fn record_holders_with_the_working_hours_each_held_it() {
    let cfg = crate::config::Config::load(std::path::Path::new("config/overdued.toml")).unwrap();
    let engine = Engine::new(&cfg.engine);
    let t = |s: &str| crate::time::parse_rfc3339(s).unwrap();
    let ev = |ty: &'static str, at: &str, unit: Option<&str>, ignored: Option<&'static str>| {
        HistoryEntry {
            event_id: format!("{ty}-{at}").into(),
            r#type: ty,
            at: t(at),
            unit: unit.map(Into::into),
            offset: 0,
            ignored,
        }
    };
    let h = [
        ev("received", "2024-03-04T08:00:00+07:00", Some("BTM"), None),
        ev(
            "forwarded",
            "2024-03-04T14:00:00+07:00",
            Some("BTM.VPDK"),
            None,
        ),
        ev("advanced", "2024-03-05T09:00:00+07:00", None, None),
        ev(
            "forwarded",
            "2024-03-05T09:30:00+07:00",
            Some("QS"),
            Some("duplicate_event"),
        ),
        ev(
            "forwarded",
            "2024-03-05T10:00:00+07:00",
            Some("TRAGIAC"),
            None,
        ),
        ev("resolved", "2024-03-05T16:00:00+07:00", None, None),
    ];
    let refs: Vec<&HistoryEntry> = h.iter().collect();
    let got = holders(&engine, &refs, t("2024-03-06T10:00:00+07:00"));
    let want = json!([
        {"unit": "BTM", "from": "2024-03-04T01:00:00Z", "to": "2024-03-04T07:00:00Z", "working_hours": 4.0},
        {"unit": "BTM.VPDK", "from": "2024-03-04T07:00:00Z", "to": "2024-03-05T03:00:00Z", "working_hours": 6.0},
        {"unit": "TRAGIAC", "from": "2024-03-05T03:00:00Z", "to": "2024-03-05T09:00:00Z", "working_hours": 4.0},
    ]);
    assert_eq!(Value::Array(got), want);
    // still open: the last holder's time runs to now, with no end
    let open = [ev(
        "received",
        "2024-03-04T08:00:00+07:00",
        Some("QS"),
        None,
    )];
    let refs: Vec<&HistoryEntry> = open.iter().collect();
    let got = holders(&engine, &refs, t("2024-03-04T10:00:00+07:00"));
    assert_eq!(
        Value::Array(got),
        json!([{"unit": "QS", "from": "2024-03-04T01:00:00Z", "to": null, "working_hours": 2.0}])
    );
}
