//! The application: listeners (gRPC and admin HTTP), services, health,
//! reflection, per-call telemetry and access audit, and the drain on
//! shutdown.

use std::{
    collections::HashMap,
    future::{Future, IntoFuture},
    time::Duration,
};

use secrecy::ExposeSecret;
use tokio::{net::TcpListener, sync::watch};
use tonic::{
    Request, Status,
    service::{Routes, RoutesBuilder, interceptor::InterceptedService},
    transport::{Certificate, Identity, Server, ServerTlsConfig, server::TcpIncoming},
};
use tonic_health::{ServingStatus, server::HealthReporter};

use crate::{
    admin::{self, Readiness},
    api::{
        Streams,
        audit::AuditApi,
        campaign::CampaignApi,
        customer::CustomerApi,
        insight::InsightApi,
        interaction::{InteractionApi, InteractionApiParts},
        knowledge::KnowledgeApi,
        operations::OperationsApi,
        page_token::PageTokens,
        unimplemented,
    },
    audit::{AuditLog, AuditWriter},
    auth::Authenticator,
    config::{DatabaseSettings, PseudonymKeySource, Settings, TlsFiles},
    domain::{audit::Pseudonyms, interaction::SourceSystems},
    metrics::Metrics,
    pb::{
        self,
        google::longrunning::operations_server::OperationsServer,
        v1::{
            audit_service_server::AuditServiceServer,
            campaign_service_server::CampaignServiceServer,
            customer_service_server::CustomerServiceServer,
            insight_service_server::InsightServiceServer,
            interaction_service_server::InteractionServiceServer,
            knowledge_service_server::KnowledgeServiceServer,
        },
    },
    store::{Db, feed::ChangeFeed},
    telemetry::rpc::{CallLimits, CalledMethod, MethodShape, RpcLayer},
};

/// Every service of the contract, for per-service health.
pub const SERVICE_NAMES: [&str; 7] = [
    pb::v1::customer_service_server::SERVICE_NAME,
    pb::v1::interaction_service_server::SERVICE_NAME,
    pb::v1::knowledge_service_server::SERVICE_NAME,
    pb::v1::insight_service_server::SERVICE_NAME,
    pb::v1::campaign_service_server::SERVICE_NAME,
    pb::v1::audit_service_server::SERVICE_NAME,
    pb::google::longrunning::operations_server::SERVICE_NAME,
];

/// The health entry liveness probes check.
pub const LIVENESS: &str = "liveness";

/// gRPC health and the admin port's readiness, kept in step.
#[derive(Clone)]
struct Health {
    reporter: HealthReporter,
    readiness: Readiness,
}

impl Health {
    /// Sets the overall and every per-service health status.
    async fn set(&self, status: ServingStatus) {
        self.readiness.set(status == ServingStatus::Serving);
        self.reporter.set_service_status("", status).await;
        for name in SERVICE_NAMES {
            self.reporter.set_service_status(name, status).await;
        }
    }
}

/// How long a client may take over the TLS handshake before the connection
/// is dropped (handshakes run beside each other, so a slow one blocks no one).
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// tonic's TLS settings (rustls) for the checked `[server.tls]` files.
fn server_tls_config(files: &TlsFiles) -> ServerTlsConfig {
    let mut config = ServerTlsConfig::new()
        .identity(Identity::from_pem(
            &files.cert_chain_pem,
            files.key_pem.expose_secret(),
        ))
        .timeout(TLS_HANDSHAKE_TIMEOUT);
    if let Some(ca) = &files.client_ca_pem {
        config = config
            .client_ca_root(Certificate::from_pem(ca))
            .client_auth_optional(files.client_auth_optional);
    }
    config
}

/// Every `/package.Service/Method` path the server answers, for metric
/// labels, admission and deadlines.
fn served_methods() -> anyhow::Result<HashMap<String, MethodShape>> {
    let mut methods = HashMap::new();
    for set in [
        pb::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ] {
        methods.extend(unimplemented::method_shapes(set)?);
    }
    Ok(methods)
}

pub struct Application {
    listener: TcpListener,
    port: u16,
    admin_listener: TcpListener,
    admin_port: u16,
    settings: Settings,
    db: Db,
    routes: Routes,
    health: Health,
    metrics: Metrics,
    rpc_layer: RpcLayer,
    tls: Option<ServerTlsConfig>,
    tls_mode: &'static str,
    stopping: watch::Sender<bool>,
    audit: Option<AuditWriter>,
}

impl Application {
    /// Connects, migrates (unless disabled), binds the listener and assembles
    /// the services. Serving starts with `run_until_stopped`.
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        let db = Db::connect_lazy(&settings.database)?.with_idempotency_retention(
            Duration::from_secs(settings.api.idempotency_retention_secs),
        );
        if settings.database.migrate {
            db.migrate()
                .await
                .map_err(|e| anyhow::anyhow!("applying migrations failed: {e}"))?;
        }
        // Services that record their own figures (the interaction append
        // path: `metrics.observe_append_batch`) take a clone.
        let metrics = Metrics::new();
        let db = db.with_standby(&settings.database, metrics.clone())?;
        let authenticator = Authenticator::from_settings(&settings.auth)?;
        let page_tokens = match &settings.api.page_token_secret {
            Some(secret) => PageTokens::new(secret.expose_secret().as_bytes()),
            None => PageTokens::new(&rand::random::<[u8; 32]>()),
        }
        .with_max_message_bytes(settings.server.max_message_bytes);

        let (pseudonyms, audit) = start_audit(&settings, &metrics)?;

        let max_bytes = settings.server.max_message_bytes;
        let systems = settings.auth.systems();
        let authenticate = move |mut request: Request<()>| -> Result<Request<()>, Status> {
            // The audit slot first, so that a refused login is recorded too.
            crate::audit::admit(&request)?;
            let principal = authenticator.authenticate(request.metadata())?;
            crate::audit::identify(&request, &principal);
            let method = request
                .extensions()
                .get::<CalledMethod>()
                .map(|m| m.0.clone())
                .unwrap_or_default();
            systems.permit(&principal, &method)?;
            request.extensions_mut().insert(principal);
            Ok(request)
        };
        crate::api::status::set_max_field_violations(settings.api.max_field_violations);
        let (stopping, stopping_rx) = watch::channel(false);
        let streams = Streams {
            heartbeat: Duration::from_secs(settings.api.stream_heartbeat_secs),
            idle_timeout: Duration::from_secs(settings.api.stream_idle_timeout_secs),
            stopping: stopping_rx.clone(),
        };
        let customers =
            CustomerServiceServer::new(CustomerApi::new(db.clone(), page_tokens.clone()))
                .max_decoding_message_size(max_bytes)
                .max_encoding_message_size(max_bytes);
        // The change feed holds a listening connection for as long as it
        // runs, so it has connections of its own: calls keep the whole pool.
        let feed = ChangeFeed::start(own_pool(&settings.database, 2)?, stopping_rx.clone());
        let interactions = InteractionApi::new(InteractionApiParts {
            db: db.clone(),
            page_tokens: page_tokens.clone(),
            sla: settings.interactions.complaint_sla(),
            service_sla: settings.interactions.service_sla(),
            cadence: settings.interactions.follow_up_cadence(),
            complaints: settings.interactions.complaint_policy(),
            sources: SourceSystems::new(settings.interactions.source_systems.clone()),
            import_batch_size: settings.interactions.import_batch_size,
            feed: feed.clone(),
            streams: streams.clone(),
            metrics: metrics.clone(),
        });
        let interactions = match settings.interactions.group_commit() {
            Some(group) => interactions.with_group_commit(group),
            None => interactions,
        };
        let interactions = InteractionServiceServer::new(interactions)
            .max_decoding_message_size(max_bytes)
            .max_encoding_message_size(max_bytes);
        let knowledge = KnowledgeServiceServer::new(KnowledgeApi::new(
            db.clone(),
            page_tokens.clone(),
            feed,
            streams,
        ))
        .max_decoding_message_size(max_bytes)
        .max_encoding_message_size(max_bytes);
        let insights = InsightServiceServer::new(InsightApi::new(
            db.clone(),
            page_tokens.clone(),
            settings.insights.clone(),
        ))
        .max_decoding_message_size(max_bytes)
        .max_encoding_message_size(max_bytes);
        let operations = OperationsServer::new(OperationsApi::new(db.clone(), page_tokens.clone()))
            .max_decoding_message_size(max_bytes)
            .max_encoding_message_size(max_bytes);
        let campaigns =
            CampaignServiceServer::new(CampaignApi::new(db.clone(), page_tokens.clone()))
                .max_decoding_message_size(max_bytes)
                .max_encoding_message_size(max_bytes);
        let audit_service =
            AuditServiceServer::new(AuditApi::new(db.clone(), page_tokens, pseudonyms))
                .max_decoding_message_size(max_bytes)
                .max_encoding_message_size(max_bytes);

        let (reporter, health_service) = tonic_health::server::health_reporter();
        let health = Health {
            reporter,
            readiness: Readiness::default(),
        };
        health.set(ServingStatus::NotServing).await;
        // For liveness probes: SERVING while the process serves, whatever
        // Postgres does (restarting does not bring a database back).
        health
            .reporter
            .set_service_status(LIVENESS, ServingStatus::Serving)
            .await;
        let reflection_v1 = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
            .build_v1()?;
        let reflection_v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
            .build_v1alpha()?;

        let mut builder = RoutesBuilder::default();
        builder
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(InterceptedService::new(customers, authenticate.clone()))
            .add_service(InterceptedService::new(interactions, authenticate.clone()))
            .add_service(InterceptedService::new(knowledge, authenticate.clone()))
            .add_service(InterceptedService::new(insights, authenticate.clone()))
            .add_service(InterceptedService::new(operations, authenticate.clone()))
            .add_service(InterceptedService::new(campaigns, authenticate.clone()))
            .add_service(InterceptedService::new(audit_service, authenticate));
        let router = builder
            .routes()
            .into_axum_router()
            // The RPC layer answers unknown paths before routing; this only
            // keeps the answer a gRPC one should anything get past it.
            .fallback(|| async { unimplemented::unknown_method().into_http::<axum::body::Body>() });

        // Checked at config load; read again here so that what is served is
        // what is on disk now. The trial builds the rustls acceptor, so a
        // bad pair fails the start rather than every handshake.
        let tls_files = settings.server.tls.load()?;
        let tls_mode = match &tls_files {
            None => "off",
            Some(f) if f.client_ca_pem.is_none() => "on",
            Some(f) if f.client_auth_optional => "mutual (client certificate optional)",
            Some(_) => "mutual",
        };
        let tls = tls_files.as_ref().map(server_tls_config);
        if let Some(tls) = &tls {
            Server::builder().tls_config(tls.clone()).map_err(|e| {
                anyhow::anyhow!("server.tls (CK__SERVER__TLS__*) cannot be served: {e}")
            })?;
        }

        let listener = TcpListener::bind(settings.server.grpc_addr)
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot listen on server.grpc_addr (CK__SERVER__GRPC_ADDR) {}: {e}",
                    settings.server.grpc_addr
                )
            })?;
        let local_addr = listener.local_addr()?;
        let admin_listener = TcpListener::bind(settings.server.admin_addr)
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot listen on server.admin_addr (CK__SERVER__ADMIN_ADDR) {}: {e}",
                    settings.server.admin_addr
                )
            })?;
        let admin_port = admin_listener.local_addr()?.port();
        let mut rpc_layer = RpcLayer::new(
            metrics.clone(),
            local_addr,
            CallLimits {
                unary_timeout: Duration::from_secs(settings.server.request_timeout_secs),
                max_concurrent_calls: settings.max_concurrent_calls(),
            },
            served_methods()?,
        );
        if let Some(writer) = &audit {
            rpc_layer = rpc_layer.with_audit(writer.log());
        }
        Ok(Application {
            listener,
            port: local_addr.port(),
            admin_listener,
            admin_port,
            settings,
            db,
            routes: Routes::from(router),
            health,
            metrics,
            rpc_layer,
            tls,
            tls_mode,
            stopping,
            audit,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port of the admin HTTP listener (metrics, livez, readyz).
    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }

    /// The application's metrics; services that record their own figures
    /// (the append batch sizes) get a clone.
    pub fn metrics(&self) -> Metrics {
        self.metrics.clone()
    }

    pub fn health_reporter(&self) -> HealthReporter {
        self.health.reporter.clone()
    }

    /// Serves until `shutdown` completes, then reports NOT_SERVING (gRPC
    /// health and `/readyz`), lets in-flight calls finish, stops the admin
    /// port and returns; calls still running after the drain limit (the
    /// grace period less the telemetry flush budget) are cut off.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let Application {
            listener,
            port,
            admin_listener,
            admin_port,
            settings,
            db,
            routes,
            health,
            metrics,
            rpc_layer,
            tls,
            tls_mode,
            stopping: stopping_tx,
            audit,
        } = self;
        let stopping_rx = stopping_tx.subscribe();
        let (admin_stop_tx, admin_stop_rx) = tokio::sync::oneshot::channel::<()>();
        let admin = tokio::spawn(
            axum::serve(
                admin_listener,
                admin::router(metrics, db.clone(), health.readiness.clone()),
            )
            .with_graceful_shutdown(async move {
                let _ = admin_stop_rx.await;
            })
            .into_future(),
        );
        tracing::info!(port = admin_port, "serving admin HTTP");
        let purge = tokio::spawn(purge_expired_keys(db.clone(), stopping_rx.clone()));
        let partitions = tokio::spawn(keep_partitions(db.clone(), stopping_rx.clone()));
        // The health check has a connection of its own, so that calls
        // holding every pooled one cannot take the replica out of rotation.
        let health_db = own_pool(&settings.database, 1)?;
        let monitor = tokio::spawn(monitor_database(
            health_db,
            health.clone(),
            Duration::from_millis(settings.database.health_check_interval_ms),
            stopping_rx.clone(),
        ));

        let drain_started = {
            let health = health.clone();
            async move {
                shutdown.await;
                let _ = stopping_tx.send(true);
                health.set(ServingStatus::NotServing).await;
                tracing::info!("shutting down: NOT_SERVING, draining in-flight calls");
            }
        };
        let mut server = Server::builder();
        if let Some(tls) = tls {
            server = server.tls_config(tls)?;
        }
        // Deadlines are the RPC layer's (DEADLINE_EXCEEDED, handed to the
        // database), not tonic's timeout (which answers CANCELLED).
        let server = server
            .concurrency_limit_per_connection(settings.server.concurrency_limit_per_connection)
            .load_shed(true)
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .layer(rpc_layer)
            .add_routes(routes)
            .serve_with_incoming_shutdown(
                // Small gRPC frames go out at once: without TCP_NODELAY an
                // answer can sit 40 ms behind Nagle's algorithm (tonic sets
                // it only on listeners it binds itself).
                TcpIncoming::from(listener).with_nodelay(Some(true)),
                drain_started,
            );
        tracing::info!(port, tls = tls_mode, "serving gRPC");

        let drain_limit = settings.drain_limit();
        let mut stopping = stopping_rx;
        let result = tokio::select! {
            result = server => result.map_err(anyhow::Error::from),
            _ = async {
                let _ = stopping.wait_for(|s| *s).await;
                tokio::time::sleep(drain_limit).await;
            } => {
                tracing::warn!(
                    drain_limit_ms = drain_limit.as_millis() as u64,
                    "drain limit reached; cutting off calls still running"
                );
                Ok(())
            }
        };
        monitor.abort();
        purge.abort();
        partitions.abort();
        if let Some(writer) = audit {
            writer.flush(settings.audit_flush_budget()).await;
        }
        // A scraper's open request may hold the admin server for a moment;
        // the grace period does not wait for it.
        let _ = admin_stop_tx.send(());
        let mut admin = admin;
        if tokio::time::timeout(Duration::from_secs(1), &mut admin)
            .await
            .is_err()
        {
            tracing::warn!("admin HTTP did not stop in time; closing it");
            admin.abort();
        }
        tracing::info!("stopped");
        result
    }
}

/// The pseudonyms of the audit (when a key is available) and, with auditing
/// on, the queue and its writer on a connection of its own.
fn start_audit(
    settings: &Settings,
    metrics: &Metrics,
) -> anyhow::Result<(Option<Pseudonyms>, Option<AuditWriter>)> {
    let audit = &settings.audit;
    let key = match settings.audit_pseudonym_key() {
        Ok(key) => Some(key),
        Err(_) if !audit.enabled => None,
        Err(e) => return Err(e.into()),
    };
    let pseudonyms = key.map(|(key, source)| {
        match source {
            PseudonymKeySource::Configured => {}
            PseudonymKeySource::DerivedFromPageTokenSecret => tracing::warn!(
                "audit.pseudonym_key is unset: customer pseudonyms are derived from \
                 api.page_token_secret, which must then never change; set \
                 CK__AUDIT__PSEUDONYM_KEY"
            ),
            PseudonymKeySource::Development => tracing::warn!(
                "audit.pseudonym_key is unset: customer pseudonyms use the published \
                 development key (allowed on a loopback address only)"
            ),
        }
        Pseudonyms::new(&key)
    });
    let writer = match (&pseudonyms, audit.enabled) {
        (Some(pseudonyms), true) => {
            let db = own_pool(&settings.database, 1)?;
            Some(AuditLog::start(
                db,
                pseudonyms.clone(),
                audit.queue_capacity,
                metrics.clone(),
            ))
        }
        _ => None,
    };
    Ok((pseudonyms, writer))
}

/// A pool of `connections` apart from the one calls share, for background
/// work that must neither wait for the calls nor take their connections.
fn own_pool(settings: &DatabaseSettings, connections: u32) -> anyhow::Result<Db> {
    Db::connect_lazy(&DatabaseSettings {
        max_connections: connections,
        ..settings.clone()
    })
}

/// Keeps health in step with Postgres: NOT_SERVING while it is unreachable.
async fn monitor_database(
    db: Db,
    health: Health,
    interval: Duration,
    mut stopping: watch::Receiver<bool>,
) {
    let mut serving = None;
    loop {
        if *stopping.borrow() {
            return;
        }
        let reachable =
            tokio::time::timeout(interval.max(Duration::from_secs(1)), db.is_reachable())
                .await
                .unwrap_or(false);
        if serving != Some(reachable) && !*stopping.borrow() {
            if reachable {
                tracing::info!("database reachable: SERVING");
                health.set(ServingStatus::Serving).await;
            } else {
                tracing::warn!("database unreachable: NOT_SERVING");
                health.set(ServingStatus::NotServing).await;
            }
            serving = Some(reachable);
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stopping.changed() => {}
        }
    }
}

/// Purges expired idempotency keys now and every ten minutes. Expiry itself
/// does not depend on this: a claim treats an expired key as unused.
async fn purge_expired_keys(db: Db, mut stopping: watch::Receiver<bool>) {
    loop {
        match db.purge_idempotency_keys().await {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "purged expired idempotency keys"),
            Err(e) => tracing::warn!(error = %e, "purging idempotency keys failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(600)) => {}
            _ = stopping.wait_for(|s| *s) => return,
        }
    }
}

/// Creates the coming months' partitions now and every hour, so that a
/// process that runs across the turn of a month (with `migrate` disabled or
/// not) has them before the month begins. A failure only warns: the DEFAULT
/// partitions take the rows meanwhile.
async fn keep_partitions(db: Db, mut stopping: watch::Receiver<bool>) {
    loop {
        if let Err(e) = db.ensure_partitions().await {
            tracing::warn!(error = %e, "creating the coming months' partitions failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
            _ = stopping.wait_for(|s| *s) => return,
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
}

/// `customer-knowledge serve`.
pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    let app = Application::build(settings).await?;
    app.run_until_stopped(shutdown_signal()).await
}

/// `customer-knowledge migrate`.
pub async fn migrate(settings: Settings) -> anyhow::Result<()> {
    let db = Db::connect_lazy(&settings.database)?;
    db.migrate().await?;
    tracing::info!("migrations applied");
    Ok(())
}

/// The nightly segmentation job (`recompute-segments`): RFM scores, tiers,
/// churn risk and relationship types of every customer as of `as_of`
/// (default now), after applying any pending migration.
pub async fn recompute_segments(
    settings: Settings,
    as_of: Option<chrono::DateTime<chrono::Utc>>,
    window_months: Option<u32>,
) -> anyhow::Result<()> {
    let db = Db::connect_lazy(&settings.database)?;
    db.migrate().await?;
    let started = std::time::Instant::now();
    let (as_of, customers, changed) =
        crate::api::insight::recompute_now(&db, &settings.insights, as_of, window_months)
            .await
            .map_err(|e| anyhow::anyhow!("{e}: {e:?}"))?;
    tracing::info!(
        as_of = %as_of.to_rfc3339(),
        customers,
        tier_changes = changed,
        seconds = started.elapsed().as_secs_f64(),
        "segments recomputed"
    );
    println!(
        "segments as of {}: {customers} customers scored, {changed} changed tier, in {:.1} s",
        as_of.to_rfc3339(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
