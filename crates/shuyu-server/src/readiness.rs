//! Readiness: the standard gRPC health service (`grpc.health.v1.Health`, service name `""`)
//! on the server's mTLS address answers SERVING while the data directory takes writes, and
//! NOT_SERVING from the first write refused for a full or read-only disk until a probe (a
//! small file written, synced and removed in the data dir, every few seconds) succeeds again.
//! Health checks are not audited: they reveal only that state.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::error::StorageFault;

/// How often a server that is not ready probes its data dir.
const PROBE_EVERY: Duration = Duration::from_secs(2);

/// The server's readiness and the health service's reporter.
#[derive(Debug)]
pub struct Readiness {
    reporter: HealthReporter,
    data_dir: PathBuf,
    fault: Mutex<Option<StorageFault>>,
}

impl Readiness {
    /// Readiness of a server of `data_dir`, reported through `reporter` (SERVING now).
    pub fn new(reporter: HealthReporter, data_dir: PathBuf) -> Readiness {
        Readiness {
            reporter,
            data_dir,
            fault: Mutex::new(None),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<StorageFault>> {
        self.fault
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The fault that makes the server not ready, if any.
    pub fn fault(&self) -> Option<StorageFault> {
        *self.lock()
    }

    /// Sets SERVING (the server is ready to answer).
    pub async fn set_serving(&self) {
        self.reporter
            .set_service_status("", ServingStatus::Serving)
            .await;
    }

    /// A write was refused for `fault`: logs it once and reports NOT_SERVING until a probe
    /// succeeds.
    pub fn report(&self, fault: StorageFault) {
        let first = self.lock().replace(fault).is_none();
        if !first {
            return;
        }
        tracing::error!(
            data_dir = %self.data_dir.display(),
            "{fault}: the server reports not ready until the data directory takes writes again"
        );
        let reporter = self.reporter.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                reporter
                    .set_service_status("", ServingStatus::NotServing)
                    .await;
            });
        }
    }

    /// One probe: writes, syncs and removes a small file in the data dir.
    fn probe(&self) -> Option<StorageFault> {
        use std::io::Write;
        let path = self.data_dir.join(".ready-probe");
        let written = std::fs::File::create(&path)
            .and_then(|mut f| f.write_all(&[0u8; 4096]).and_then(|()| f.sync_all()));
        let _ = std::fs::remove_file(&path);
        match written {
            Ok(()) => None,
            Err(e) => Some(StorageFault::of_io(&e).unwrap_or(StorageFault::ReadOnly)),
        }
    }

    /// Probes while not ready; back to SERVING once a probe succeeds. Runs until aborted.
    pub async fn watch(self: std::sync::Arc<Self>) {
        let mut tick = tokio::time::interval(PROBE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if self.fault().is_none() {
                continue;
            }
            let me = std::sync::Arc::clone(&self);
            let fault = tokio::task::spawn_blocking(move || me.probe())
                .await
                .unwrap_or(Some(StorageFault::ReadOnly));
            if fault.is_none() {
                *self.lock() = None;
                tracing::warn!("the data directory takes writes again: ready");
                self.set_serving().await;
            }
        }
    }
}
