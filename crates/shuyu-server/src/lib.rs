//! The Shuyu server: gRPC services over TLS 1.3 with mandatory client certificates, the
//! metadata store and audit trail, the key hierarchy and the domain's data directory.
//!
//! This is the only crate that knows both the wire types and the engine.

mod admin;
mod audit;
mod catalog;
pub mod clock;
mod config;
mod convert;
pub mod domain;
mod error;
mod exports;
mod governance;
mod jobs;
mod keys;
mod lifecycle;
mod notify;
mod oversight;
mod presence;
mod readiness;
mod scenarios;
mod service;
mod state;
mod stewardship;
mod store;
mod tls;

// The facade: what the binary, the bench and the tests reach. Everything else is private.
pub use audit::{VerifyReport, bindings, checkpoint};
pub use exports::package;
pub use keys::DOMAIN_KEK;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arrow_flight::flight_service_server::FlightServiceServer;
use shuyu_engine::{Engine, Storage};
use shuyu_proto::v1::admin_service_server::AdminServiceServer;
use shuyu_proto::v1::audit_service_server::AuditServiceServer;
use shuyu_proto::v1::catalog_service_server::CatalogServiceServer;
use shuyu_proto::v1::export_service_server::ExportServiceServer;
use shuyu_proto::v1::governance_service_server::GovernanceServiceServer;
use shuyu_proto::v1::job_service_server::JobServiceServer;
use shuyu_proto::v1::lifecycle_service_server::LifecycleServiceServer;
use shuyu_proto::v1::oversight_service_server::OversightServiceServer;
use shuyu_proto::v1::scenario_service_server::ScenarioServiceServer;
use shuyu_proto::v1::session_service_server::SessionServiceServer;
use shuyu_proto::v1::stewardship_service_server::StewardshipServiceServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::ReceiverStream;

pub use config::ServerConfig;
pub use error::ServerError;

use crate::error::Result;
use crate::state::AppState;

/// Largest gRPC message either way (review results, uploads are chunked).
const MAX_MESSAGE_BYTES: usize = 64 << 20;

pub use clock::now_ms;

/// A time in ms since the epoch as RFC 3339 UTC, to the second, for messages.
pub fn format_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || ms.to_string(),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
}

/// A new random id with a readable prefix, e.g. `ds_3f9a…`.
pub fn new_id(prefix: &str) -> String {
    format!(
        "{prefix}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..20]
    )
}

/// Installs the process-wide rustls crypto provider (ring). Safe to call more than once.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A running server.
#[derive(Debug)]
pub struct ServerHandle {
    /// The bound address.
    pub addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::result::Result<(), tonic::transport::Error>>,
    dispatcher: tokio::task::JoinHandle<()>,
    /// The periodic tasks: monitor, checkpoints, purge, and the sweeps of tickets,
    /// suspensions and renewals.
    periodic: Vec<tokio::task::JoinHandle<()>>,
    state: Arc<AppState>,
    /// The data dir's lock, released when the handle (or the process) goes.
    _lock: domain::ServeLock,
}

impl ServerHandle {
    /// Waits until the server stops (on error or after [`ServerHandle::shutdown`]).
    ///
    /// # Errors
    /// If the transport failed.
    pub async fn wait(mut self) -> Result<()> {
        let result = (&mut self.task).await;
        // Dropping the runners' futures kills their worker processes (kill_on_drop).
        self.dispatcher.abort();
        for task in &self.periodic {
            task.abort();
        }
        if let Err(e) = self.state.refusals.flush(&self.state.store) {
            tracing::warn!(error = %e, "transport refusals could not be audited");
        }
        let presence = self.state.presence.clone();
        let _ = tokio::task::spawn_blocking(move || presence.leave()).await;
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(ServerError::internal(format!("transport: {e}"))),
            Err(e) => Err(ServerError::internal(format!("server task: {e}"))),
        }
    }

    /// Stops accepting calls and waits for the server to stop.
    ///
    /// # Errors
    /// If the transport failed.
    pub async fn shutdown(mut self) -> Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.wait().await
    }
}

/// Objects no committed row names, removed at start-up (no call runs yet): dataset folders
/// of no catalogued dataset (a crash mid-ingest), result files outside the folder of every
/// recorded job (a crash before the job was recorded), and packages no export names (a crash
/// between writing a package and committing the vote that approved it), with the temporary
/// files of interrupted writes.
async fn remove_unreferenced_objects(state: &AppState) -> Result<Vec<String>> {
    let (datasets, job_folders, packages) = state.store.read(|c| {
        let datasets: std::collections::HashSet<String> = crate::catalog::records::datasets(c)?
            .into_iter()
            .map(|d| d.location)
            .collect();
        Ok((
            datasets,
            crate::jobs::records::job_folders(c)?,
            crate::exports::records::package_locations(c)?,
        ))
    })?;
    let mut removed = std::collections::BTreeSet::new();
    for object in state.storage.list("datasets").await? {
        let mut parts = object.splitn(3, '/');
        let (Some(_), Some(id)) = (parts.next(), parts.next()) else {
            continue;
        };
        let location = format!("datasets/{id}/");
        if !datasets.contains(&location) && removed.insert(location.clone()) {
            state.storage.delete_prefix(&location).await?;
        }
    }
    // Folders an ingest killed before its first file left empty (the listing above shows
    // files only).
    let folders = domain::DataDir::new(&state.config.data_dir)
        .objects()
        .join("datasets");
    if let Ok(entries) = std::fs::read_dir(&folders) {
        for entry in entries.flatten() {
            let id = entry.file_name().to_string_lossy().into_owned();
            let location = format!("datasets/{id}/");
            if entry.path().is_dir()
                && !datasets.contains(&location)
                && removed.insert(location.clone())
            {
                std::fs::remove_dir_all(entry.path())
                    .map_err(|e| ServerError::from_io(&location, e))?;
            }
        }
    }
    for object in state.storage.list("results").await? {
        if !job_folders
            .iter()
            .any(|folder| object.starts_with(folder.as_str()))
        {
            state.storage.delete(&object).await?;
            removed.insert(object);
        }
    }
    for object in state.storage.list("exports").await? {
        if !packages.contains(&object) {
            state.storage.delete(&object).await?;
            removed.insert(object);
        }
    }
    Ok(removed.into_iter().collect())
}

/// Each area's context, cut from the server's parts: the only place that sees them whole.
#[derive(Debug)]
struct Areas {
    admin: Arc<admin::Context>,
    catalog: Arc<catalog::Context>,
    scenarios: Arc<scenarios::Context>,
    jobs: Arc<jobs::Context>,
    exports: Arc<exports::Context>,
    lifecycle: Arc<lifecycle::Context>,
    governance: Arc<governance::Context>,
    stewardship: Arc<stewardship::Context>,
    oversight: Arc<oversight::Context>,
}

impl Areas {
    fn of(state: &AppState) -> Areas {
        let calls = state.calls();
        let config = &state.config;
        let catalog = Arc::new(catalog::Context {
            calls: calls.clone(),
            engine: state.engine.clone(),
            store: state.store.clone(),
            keys: Arc::clone(&state.keys),
            storage: state.storage.clone(),
            policy: Arc::clone(&state.policy),
            max_ingest_bytes: config.max_ingest_bytes,
        });
        let exports = Arc::new(exports::Context {
            calls: calls.clone(),
            store: state.store.clone(),
            keys: Arc::clone(&state.keys),
            storage: state.storage.clone(),
            envelope: Arc::clone(&state.envelope),
            policy: Arc::clone(&state.policy),
            signing: Arc::clone(&state.signing),
            workers: Arc::clone(&state.workers),
            results: Arc::clone(&state.results),
            worker: config.worker.clone(),
            exports: config.exports,
            pricing: config.pricing,
        });
        let lifecycle = Arc::new(lifecycle::Context {
            calls: calls.clone(),
            store: state.store.clone(),
            keys: Arc::clone(&state.keys),
            engine: state.engine.clone(),
            storage: state.storage.clone(),
            envelope: Arc::clone(&state.envelope),
            signing: Arc::clone(&state.signing),
            scheduler: Arc::clone(&state.scheduler),
            presence: state.presence.clone(),
            workers: Arc::clone(&state.workers),
            exports: Arc::clone(&exports),
            lifecycle: config.lifecycle.clone(),
        });
        Areas {
            admin: Arc::new(admin::Context {
                calls: calls.clone(),
                store: state.store.clone(),
                keys: Arc::clone(&state.keys),
                ca: Arc::clone(&state.ca),
                lab: config.lab.clone(),
            }),
            scenarios: Arc::new(scenarios::Context {
                calls: calls.clone(),
                store: state.store.clone(),
            }),
            jobs: Arc::new(jobs::Context {
                calls: calls.clone(),
                engine: state.engine.clone(),
                store: state.store.clone(),
                keys: Arc::clone(&state.keys),
                storage: state.storage.clone(),
                policy: Arc::clone(&state.policy),
                scheduler: Arc::clone(&state.scheduler),
                presence: state.presence.clone(),
                workers: Arc::clone(&state.workers),
                worker: config.worker.clone(),
                lab: config.lab.clone(),
                jobs: config.jobs,
                privacy: config.privacy.clone(),
            }),
            governance: Arc::new(governance::Context {
                calls: calls.clone(),
                store: state.store.clone(),
                keys: Arc::clone(&state.keys),
                presence: state.presence.clone(),
                lifecycle: Arc::clone(&lifecycle),
                governance: config.governance,
            }),
            stewardship: Arc::new(stewardship::Context {
                calls: calls.clone(),
                store: state.store.clone(),
                scheduler: Arc::clone(&state.scheduler),
                catalog: Arc::clone(&catalog),
                presence: state.presence.clone(),
                stewardship: config.stewardship,
                max_ingest_bytes: config.max_ingest_bytes,
            }),
            oversight: Arc::new(oversight::Context {
                calls,
                store: state.store.clone(),
                storage: state.storage.clone(),
                signing: Arc::clone(&state.signing),
                presence: state.presence.clone(),
                oversight: config.oversight.clone(),
            }),
            catalog,
            exports,
            lifecycle,
        }
    }
}

/// Starts every periodic duty of the server (aborted when it stops): the oversight tasks
/// (monitor, checkpoints, purge), the lease heartbeat, the keys other servers made or
/// deleted, jobs of servers gone, overdue data-quality tickets (R18), suspensions past their
/// fix-by deadline (R26), authorizations whose renewal window opened (R25), readiness, and
/// the transport refusals' audit. The job dispatcher is started beside them.
fn start_background(state: &Arc<AppState>, areas: &Areas) -> Vec<tokio::task::JoinHandle<()>> {
    let mut periodic = oversight::tasks::start(&areas.oversight);
    periodic.push(tokio::spawn(state.presence.clone().heartbeat_forever()));
    if state.store.backend() == shuyu_meta::Backend::Postgres {
        // Keys made or deleted by the other servers of the domain.
        state.keys.share(&state.store);
        let keys_state = Arc::clone(state);
        periodic.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(presence::HEARTBEAT);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let state = Arc::clone(&keys_state);
                let synced = tokio::task::spawn_blocking(move || {
                    let gone = state.keys.sync()?;
                    for id in &gone {
                        state.envelope.forget(id);
                    }
                    Ok::<_, ServerError>(gone.len())
                })
                .await;
                match synced {
                    Ok(Ok(0)) => {}
                    Ok(Ok(n)) => tracing::info!(n, "forgot keys deleted by another server"),
                    Ok(Err(e)) => tracing::warn!(error = %e, "syncing keys failed"),
                    Err(e) => tracing::warn!(error = %e, "syncing keys panicked"),
                }
            }
        }));
    }
    periodic.push(tokio::spawn(jobs::runtime::fail_orphaned_jobs_forever(
        Arc::clone(&areas.jobs),
    )));
    periodic.push(tokio::spawn(stewardship::rpc::sweep_forever(Arc::clone(
        &areas.stewardship,
    ))));
    periodic.push(tokio::spawn(lifecycle::rpc::sweep_overdue_forever(
        Arc::clone(&areas.lifecycle),
        Duration::from_secs(2),
    )));
    periodic.push(tokio::spawn(governance::rpc::sweep_forever(Arc::clone(
        &areas.governance,
    ))));
    periodic.push(tokio::spawn(Arc::clone(&state.readiness).watch()));
    let flush_state = Arc::clone(state);
    periodic.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let state = Arc::clone(&flush_state);
            match tokio::task::spawn_blocking(move || state.refusals.flush(&state.store)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "transport refusals not audited yet"),
                Err(e) => tracing::warn!(error = %e, "auditing transport refusals panicked"),
            }
        }
    }));
    periodic
}

/// Opens the domain in `config.data_dir` and serves it until shut down.
///
/// # Errors
/// If the domain cannot be opened, the policy is invalid or the address cannot be bound.
pub async fn serve(config: ServerConfig) -> Result<ServerHandle> {
    install_crypto_provider();
    config.validate()?;
    let policy = config.load_policy()?;
    // First, before anything in the data dir is changed: one server per data dir whose
    // metadata is SQLite in it; servers sharing a PostgreSQL share the data dir too.
    let shared = config
        .metadata
        .for_data_dir(&domain::DataDir::new(&config.data_dir))?
        .parsed_url()?
        .is_some_and(|url| matches!(url, shuyu_meta::MetadataUrl::Postgres(_)));
    let lock = domain::lock(&config.data_dir, shared)?;
    domain::set_private_umask();
    let tightened = domain::secure_tree(&config.data_dir)?;
    if tightened > 0 {
        tracing::warn!(tightened, "made files and folders of the data dir private");
    }
    let domain = domain::open(&config.data_dir, &config.metadata)?;
    let storage = Storage::local(&domain.dir.objects())?;
    let envelope = AppState::envelope(&domain.keys);
    let engine = Engine::new(storage.clone(), Arc::clone(&envelope));
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    let (tls_config, client_verifier) = tls::server_config(
        &domain.ca.cert_pem,
        &domain.server_cert_pem,
        &domain.server_key_pem,
    )?;
    let presence = presence::Presence::join(&domain.store, lock.alone)?;
    let state = Arc::new(AppState {
        config: config.clone(),
        store: domain.store,
        keys: domain.keys,
        engine,
        storage,
        envelope,
        policy: Arc::new(policy),
        ca: Arc::new(domain.ca),
        signing: Arc::new(domain.signing),
        scheduler: Arc::new(jobs::scheduler::Scheduler::new(
            config.max_running_jobs,
            config.tenant_max_running_jobs,
            config.tenant_max_queued_jobs,
        )),
        presence,
        workers: Arc::default(),
        readiness: Arc::new(readiness::Readiness::new(
            health_reporter,
            config.data_dir.clone(),
        )),
        refusals: Arc::new(audit::refusals::Refusals::default()),
        results: Arc::new(exports::result_budget::ResultBudget::new(&config.exports)),
    });
    if let Some(file) = clock::test_clock_file() {
        tracing::warn!(file = %file.display(), offset_ms = clock::offset_ms(), "test clock in use");
    }
    let areas = Areas::of(&state);
    // The start is audited before anything is served: a data dir that takes no write (read
    // only, full) stops the start here, with a plain message.
    state
        .store
        .record(&audit::trail::system_entry(
            "server_start",
            "domain",
            serde_json::json!({"pid": std::process::id(), "tightened": tightened,
                               "version": env!("CARGO_PKG_VERSION"),
                               "test_clock": clock::test_clock_file(),
                               "clock_offset_ms": clock::offset_ms()}),
        ))
        .map_err(|e| match e.storage_fault() {
            Some(fault) => ServerError::FailedPrecondition(format!(
                "cannot serve {}: {fault}",
                config.data_dir.display()
            )),
            None => e,
        })?;
    let interrupted = jobs::runtime::fail_orphaned_jobs(&areas.jobs).await?;
    // Objects no record names are leftovers only when no other server is writing.
    let removed = if state.presence.alone()? {
        remove_unreferenced_objects(&state).await?
    } else {
        Vec::new()
    };
    if !removed.is_empty() {
        state.store.record(&audit::trail::system_entry(
            "remove_unreferenced_objects",
            "objects",
            serde_json::json!({"n": removed.len(), "objects": removed}),
        ))?;
    }
    if interrupted > 0 || !removed.is_empty() {
        tracing::warn!(
            interrupted,
            unreferenced = removed.len(),
            "recovered from an unclean stop"
        );
    }

    let listener = TcpListener::bind(config.listen).await.map_err(|e| {
        ServerError::InvalidArgument(format!("cannot listen on {}: {e}", config.listen))
    })?;
    let addr = listener
        .local_addr()
        .map_err(|e| ServerError::internal(format!("local address: {e}")))?;
    let acceptor = tokio_rustls::TlsAcceptor::from(tls_config);
    let (conn_tx, conn_rx) = tokio::sync::mpsc::channel(64);
    let refusals = Arc::clone(&state.refusals);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, peer)) = listener.accept().await else {
                continue;
            };
            // Small request/response messages: no Nagle delay waiting for the peer's ACK.
            let _ = tcp.set_nodelay(true);
            if conn_tx.is_closed() {
                break;
            }
            let acceptor = acceptor.clone();
            let conn_tx = conn_tx.clone();
            let refusals = Arc::clone(&refusals);
            let client_verifier = Arc::clone(&client_verifier);
            tokio::spawn(async move {
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        if let Err(reason) =
                            client_verifier.check(tls.get_ref().1.peer_certificates())
                        {
                            refusals.refuse_connection(peer, reason);
                        }
                        let watched = audit::refusals::Watched::new(tls, Some(peer), refusals);
                        let _ = conn_tx.send(Ok::<_, std::io::Error>(watched)).await;
                    }
                    Ok(Err(e)) => {
                        refusals.count(Some(peer.ip()), &audit::refusals::handshake_reason(&e));
                    }
                    Err(_) => refusals.count(Some(peer.ip()), "the TLS handshake timed out"),
                }
            });
        }
    });

    let dispatcher = tokio::spawn(jobs::runtime::dispatch_forever(Arc::clone(&areas.jobs)));
    let periodic = start_background(&state, &areas);
    // One handler per service, each over its area's context.
    let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
    let router = tonic::transport::Server::builder()
        .layer(audit::refusals::RefusalLayer::new(Arc::clone(
            &state.refusals,
        )))
        // Readiness: grpc.health.v1 (not audited; NOT_SERVING while the disk refuses writes).
        .add_service(health_service)
        .add_service(SessionServiceServer::new(admin::rpc::SessionRpc::new(
            Arc::clone(&areas.admin),
        )))
        .add_service(
            AdminServiceServer::new(admin::rpc::AdminRpc::new(Arc::clone(&areas.admin)))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            CatalogServiceServer::new(catalog::rpc::CatalogRpc::new(Arc::clone(&areas.catalog)))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            JobServiceServer::new(jobs::rpc::JobsRpc::new(Arc::clone(&areas.jobs)))
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            // TraceExport takes a leaked file of up to 32 MiB.
            ExportServiceServer::new(exports::rpc::ExportsRpc::new(Arc::clone(&areas.exports)))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        // Products over Arrow Flight (DoGet), on the same mTLS server.
        .add_service(FlightServiceServer::new(exports::rpc::ExportsRpc::new(
            Arc::clone(&areas.exports),
        )))
        .add_service(ScenarioServiceServer::new(
            scenarios::rpc::ScenariosRpc::new(Arc::clone(&areas.scenarios)),
        ))
        .add_service(
            StewardshipServiceServer::new(stewardship::rpc::StewardshipRpc::new(Arc::clone(
                &areas.stewardship,
            )))
            .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(OversightServiceServer::new(
            oversight::rpc::OversightRpc::new(Arc::clone(&areas.oversight)),
        ))
        .add_service(LifecycleServiceServer::new(
            lifecycle::rpc::LifecycleRpc::new(Arc::clone(&areas.lifecycle)),
        ))
        .add_service(GovernanceServiceServer::new(
            governance::rpc::GovernanceRpc::new(Arc::clone(&areas.governance)),
        ))
        .add_service(
            AuditServiceServer::new(admin::rpc::AuditRpc::new(Arc::clone(&areas.admin)))
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        );
    let task = tokio::spawn(async move {
        router
            .serve_with_incoming_shutdown(ReceiverStream::new(conn_rx), async {
                let _ = shutdown_rx.await;
            })
            .await
    });
    tracing::info!(%addr, "serving");
    Ok(ServerHandle {
        addr,
        shutdown: Some(shutdown_tx),
        task,
        dispatcher,
        periodic,
        state,
        _lock: lock,
    })
}
