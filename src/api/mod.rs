//! The HTTP server: `/metrics`, `/healthz`, `/readyz` (one port, default 9464).
//!
//! The JSON API (`/api/v1/...`) comes with the next stage of the daemon.

use crate::daemon::Shared;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus::Encoder;
use std::sync::atomic::Ordering;
use std::sync::Arc;

async fn metrics(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    let mut body = {
        let snap = s.snapshot.lock().unwrap_or_else(|p| p.into_inner());
        crate::metrics::render(&snap)
    };
    let mut buf = Vec::new();
    if prometheus::TextEncoder::new()
        .encode(&s.registry.gather(), &mut buf)
        .is_ok()
    {
        body.push_str(&String::from_utf8_lossy(&buf));
    }
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

async fn readyz(State(s): State<Arc<Shared>>) -> (StatusCode, &'static str) {
    if s.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: partitions not assigned or not caught up\n",
        )
    }
}

/// The router.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(shared)
}
