//! The admin HTTP port, for tooling that cannot speak gRPC: Prometheus
//! `/metrics`, `/livez` (the process answers) and `/readyz` (health is
//! SERVING: Postgres reachable and no drain under way).

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use axum::{Router, extract::State, http::StatusCode, http::header, routing::get};

use crate::{metrics::Metrics, store::Db};

/// Whether the service takes calls; follows gRPC health's overall status.
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::SeqCst);
    }

    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

#[derive(Clone)]
struct AdminState {
    metrics: Metrics,
    db: Db,
    readiness: Readiness,
}

pub fn router(metrics: Metrics, db: Db, readiness: Readiness) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/livez", get(|| async { "alive\n" }))
        .route("/readyz", get(readyz))
        .with_state(AdminState {
            metrics,
            db,
            readiness,
        })
}

async fn metrics_text(State(state): State<AdminState>) -> impl axum::response::IntoResponse {
    state
        .metrics
        .observe_pool(state.db.pool(), state.db.waiting());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

async fn readyz(State(state): State<AdminState>) -> (StatusCode, &'static str) {
    if state.readiness.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}
