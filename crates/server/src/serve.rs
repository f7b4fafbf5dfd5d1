//! Server start-up and shutdown. The gRPC port opens at once with health NOT_SERVING
//! (so orchestrators can probe it); the backbone loads and warms on its own thread;
//! then the engine is published, the store watcher starts, and health turns SERVING.
//! SIGTERM/SIGINT: health goes NOT_SERVING, the listener stops accepting, in-flight
//! requests finish, and `serve` returns Ok.
use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use polyhead_api::v1::{inference_server::InferenceServer, registry_server::RegistryServer};
use polyhead_backbone::EncoderHandle;
use polyhead_heads::HeadStore;
use tokio::sync::oneshot;
use tonic::codegen::CompressionEncoding;
use tonic::{
    service::interceptor::InterceptedService,
    transport::{Identity, Server, ServerTlsConfig},
};
use tonic_health::ServingStatus;
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};

use crate::{
    admin::RegistryService,
    auth::BearerAuth,
    conn::{self, ConnLimits},
    inference::InferenceService,
    ledger::{CallLimits, LedgerLayer},
    logs::RandomRequestId,
    metrics as m, Engine, Settings,
};

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// An address, file or port problem.
    #[error("{0}")]
    Setup(String),
    /// The backbone could not be loaded.
    #[error("loading the backbone: {0}")]
    Backbone(#[from] polyhead_backbone::Error),
    /// The engine could not be built (store unreadable, ...).
    #[error("starting the engine: {0}")]
    Engine(String),
    /// The transport failed.
    #[error("gRPC transport: {0}")]
    Transport(#[from] tonic::transport::Error),
}

const SERVICES: [&str; 3] = ["", "polyhead.v1.Inference", "polyhead.v1.Registry"];

/// Runs the server until SIGTERM/SIGINT.
pub async fn serve(settings: Settings) -> Result<(), ServeError> {
    let (addr, metrics_addr) = (settings.server.addr, settings.server.metrics_addr);
    crate::logs::set_access(settings.log.access);
    let metrics = m::install().map_err(|e| ServeError::Setup(format!("metrics: {e}")))?;
    let metrics_listener = tokio::net::TcpListener::bind(metrics_addr)
        .await
        .map_err(|e| {
            ServeError::Setup(format!("binding {metrics_addr} (server.metrics_addr): {e}"))
        })?;

    let (health, health_service) = tonic_health::server::health_reporter();
    for s in SERVICES {
        health
            .set_service_status(s, ServingStatus::NotServing)
            .await;
    }
    // Both reflection versions: grpcurl and most tools speak v1, many clients
    // (Postman, older grpcurl, grpc-java's) still ask v1alpha.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(polyhead_api::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    // Reflection lists the services and their schema: as open as inference. Health
    // stays open either way: orchestrators' probes (Kubernetes grpc probes, the
    // image's HEALTHCHECK) send no token, and it says nothing but SERVING.
    let reflection_auth = || {
        BearerAuth::new(
            settings.admin.token.as_deref(),
            !settings.server.open_inference,
        )
    };
    let reflection_v1 = InterceptedService::new(
        reflection()
            .build_v1()
            .map_err(|e| ServeError::Setup(format!("reflection: {e}")))?,
        reflection_auth(),
    );
    let reflection_v1alpha = InterceptedService::new(
        reflection()
            .build_v1alpha()
            .map_err(|e| ServeError::Setup(format!("reflection: {e}")))?,
        reflection_auth(),
    );

    let engine: Arc<OnceLock<Arc<Engine>>> = Arc::new(OnceLock::new());
    let limit = settings.server.max_message_bytes;
    let limits = CallLimits {
        timeout: Duration::from_millis(settings.server.request_timeout_ms.max(1)),
        max_message_bytes: limit,
    };
    let inference = InterceptedService::new(
        InferenceServer::new(InferenceService::new(engine.clone(), limits))
            .accept_compressed(CompressionEncoding::Gzip)
            .send_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit),
        BearerAuth::new(
            settings.admin.token.as_deref(),
            !settings.server.open_inference,
        ),
    );
    let registry = InterceptedService::new(
        RegistryServer::new(RegistryService::new(engine.clone(), limits))
            .accept_compressed(CompressionEncoding::Gzip)
            .send_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit),
        BearerAuth::new(settings.admin.token.as_deref(), true),
    );

    // No tonic-level timeout: each call keeps its own deadline (CallLimits) and
    // answers DEADLINE_EXCEEDED, where tonic's timeout would answer CANCELLED.
    let secs = |s: u64| (s > 0).then(|| Duration::from_secs(s));
    let server = &settings.server;
    let handshake = Duration::from_millis(server.handshake_timeout_ms);
    let mut builder = Server::builder()
        .http2_keepalive_interval(secs(server.keepalive_s))
        .http2_keepalive_timeout(secs(server.keepalive_s))
        .max_concurrent_streams(server.max_concurrent_streams)
        // x-request-id: the caller's, or a new one; echoed on every response
        // (errors included) and written to the access log.
        .layer(SetRequestIdLayer::x_request_id(RandomRequestId))
        .layer(PropagateRequestIdLayer::x_request_id())
        // Every call counted and logged once, with the codes as documented.
        .layer(LedgerLayer);
    if let Some(age) = secs(settings.server.max_connection_age_s) {
        builder = builder.max_connection_age(age);
    }
    if let (Some(cert), Some(key)) = (&settings.server.tls_cert, &settings.server.tls_key) {
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|e| ServeError::Setup(format!("{}: {e}", p.display())))
        };
        let identity = Identity::from_pem(read(cert)?, read(key)?);
        builder =
            builder.tls_config(ServerTlsConfig::new().identity(identity).timeout(handshake))?;
    }
    let conn_limits = ConnLimits {
        max_connections: conn::connection_cap(server.max_connections),
        handshake,
        idle: secs(server.idle_timeout_s),
        conn_bytes: server.max_response_bytes_per_connection,
        all_bytes: server.max_response_bytes,
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| ServeError::Setup(format!("binding {addr}: {e}")))?;
    let http_listener = match server.http_addr {
        Some(a) => Some(
            tokio::net::TcpListener::bind(a)
                .await
                .map_err(|e| ServeError::Setup(format!("binding {a} (server.http_addr): {e}")))?,
        ),
        None => None,
    };
    let http_addr = server
        .http_addr
        .map_or_else(|| "off".to_owned(), |a| a.to_string());
    tracing::info!(%addr, http = %http_addr, %metrics_addr, "listening (NOT_SERVING until the backbone is warm)");

    // The HTTP API stops with gRPC: both stop accepting, both drain.
    let (http_stop_tx, mut http_stop_rx) = tokio::sync::watch::channel(false);
    let http = http_listener.map(|l| {
        let router = crate::http::router(
            engine.clone(),
            InferenceService::new(engine.clone(), limits),
            BearerAuth::new(
                settings.admin.token.as_deref(),
                !settings.server.open_inference,
            ),
            settings.server.max_message_bytes,
        );
        let stop = async move {
            let _ = http_stop_rx.wait_for(|s| *s).await;
        };
        tokio::spawn(crate::http::serve(
            l,
            conn_limits,
            server.max_concurrent_streams,
            router,
            stop,
            Duration::from_millis(server.request_timeout_ms.max(1)),
        ))
    });
    // The metrics listener: its own port, the same connection limits, open till exit.
    tokio::spawn(crate::http::serve(
        metrics_listener,
        conn_limits,
        server.max_concurrent_streams,
        m::router(metrics),
        std::future::pending(),
        Duration::ZERO,
    ));
    let (failed_tx, failed_rx) = oneshot::channel::<ServeError>();
    tokio::spawn(start_engine(settings, engine, health.clone(), failed_tx));
    let (stop_tx, stop_rx) = oneshot::channel::<Option<ServeError>>();
    let health_on_stop = health.clone();
    tokio::spawn(async move {
        let failure = tokio::select! {
            _ = shutdown_signal() => None,
            Ok(e) = failed_rx => Some(e),
        };
        for s in SERVICES {
            health_on_stop
                .set_service_status(s, ServingStatus::NotServing)
                .await;
        }
        tracing::info!("shutting down: draining in-flight requests");
        let _ = http_stop_tx.send(true);
        let _ = stop_tx.send(failure);
    });
    let (failure_tx, failure_rx) = oneshot::channel();
    builder
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(inference)
        .add_service(registry)
        .serve_with_incoming_shutdown(conn::incoming(listener, conn_limits), async move {
            let failure = stop_rx.await.ok().flatten();
            let _ = failure_tx.send(failure);
        })
        .await?;
    if let Some(http) = http {
        let _ = http.await;
    }
    tracing::info!("stopped");
    match failure_rx.await {
        Ok(Some(e)) => Err(e),
        _ => Ok(()),
    }
}

async fn start_engine(
    settings: Settings,
    slot: Arc<OnceLock<Arc<Engine>>>,
    health: tonic_health::server::HealthReporter,
    failed: oneshot::Sender<ServeError>,
) {
    let loaded = tokio::task::spawn_blocking(move || {
        let encoder =
            EncoderHandle::spawn(&settings.backbone.model_dir, &settings.encoder_options())?;
        Ok::<_, ServeError>((encoder, settings))
    })
    .await;
    let (encoder, settings) = match loaded {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => return drop(failed.send(e)),
        Err(e) => return drop(failed.send(ServeError::Engine(e.to_string()))),
    };
    let info = encoder.info().clone();
    let store = match open_store(&settings, &info).await {
        Ok(s) => s,
        Err(e) => return drop(failed.send(e)),
    };
    let engine = {
        let settings = settings.clone();
        match tokio::task::spawn_blocking(move || Engine::new(encoder, settings, store)).await {
            Ok(Ok(e)) => Arc::new(e),
            Ok(Err(e)) => return drop(failed.send(ServeError::Engine(e.to_string()))),
            Err(e) => return drop(failed.send(ServeError::Engine(e.to_string()))),
        }
    };
    let _ = slot.set(engine.clone());
    for s in SERVICES {
        health.set_service_status(s, ServingStatus::Serving).await;
    }
    tracing::info!(
        backbone = %info.name, fingerprint = %info.fingerprint, dtype = %info.dtype, backend = %info.backend, device = %info.device,
        store = %engine.heads().store().location(), tasks = engine.heads().registry().snapshot().len(), "SERVING"
    );
    watch_store(
        engine,
        health,
        Duration::from_millis(settings.store.poll_ms.max(50)),
    )
    .await;
}

/// Opens the store; a database that cannot be reached yet is retried (health stays
/// NOT_SERVING meanwhile), since replicas and their database often start together.
async fn open_store(
    settings: &Settings,
    info: &polyhead_backbone::BackboneInfo,
) -> Result<Arc<dyn HeadStore>, ServeError> {
    let retry = settings.store.url.is_shared();
    let mut logged = false;
    loop {
        let (s, i) = (settings.clone(), info.clone());
        let opened = tokio::task::spawn_blocking(move || Engine::open_store(&s, &i))
            .await
            .map_err(|e| ServeError::Engine(e.to_string()))?;
        match opened {
            Ok(store) => return Ok(store),
            Err(e) if retry => {
                if !logged {
                    tracing::warn!(error = %e, "head store unreachable; retrying every 2 s");
                    logged = true;
                }
                metrics::gauge!(m::STORE_UP).set(0.0);
                metrics::counter!(m::STORE_SYNCS, "outcome" => "error").increment(1);
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(e) => return Err(ServeError::Engine(format!("opening the head store: {e}"))),
        }
    }
}

/// Keeps the live heads in line with the store: at every change the store reports
/// (PostgreSQL NOTIFY, and each reconnection) and at every poll. While the store is
/// unreachable the last heads keep serving, `polyhead_store_up` is 0 and the
/// Registry service reports NOT_SERVING (admin changes would fail).
async fn watch_store(
    engine: Arc<Engine>,
    health: tonic_health::server::HealthReporter,
    poll: Duration,
) {
    let mut changes = engine.heads().store().changes();
    let mut tick = tokio::time::interval(poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut up = true;
    metrics::gauge!(m::STORE_UP).set(1.0);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            Some(()) = changed(&mut changes) => {}
        }
        let e = engine.clone();
        let result = tokio::task::spawn_blocking(move || e.heads().sync_store())
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
        let outcome = match result {
            Ok(_) => {
                if !up {
                    tracing::info!(store = %engine.heads().store().location(), "head store reachable again; heads in sync");
                    health
                        .set_service_status("polyhead.v1.Registry", ServingStatus::Serving)
                        .await;
                    up = true;
                }
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64());
                metrics::gauge!(m::STORE_LAST_SYNC).set(now);
                "ok"
            }
            Err(err) => {
                if up {
                    tracing::warn!(error = %err, "head store unreachable; the last heads keep serving");
                    health
                        .set_service_status("polyhead.v1.Registry", ServingStatus::NotServing)
                        .await;
                    up = false;
                }
                "error"
            }
        };
        metrics::gauge!(m::STORE_UP).set(if up { 1.0 } else { 0.0 });
        metrics::counter!(m::STORE_SYNCS, "outcome" => outcome).increment(1);
    }
}

/// The next change tick; never, for stores that do not report changes.
async fn changed(changes: &mut Option<tokio::sync::watch::Receiver<u64>>) -> Option<()> {
    match changes {
        Some(rx) => match rx.changed().await {
            Ok(()) => Some(()),
            Err(_) => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM");
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
