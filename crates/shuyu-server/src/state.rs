//! The server's parts and the call protocol every RPC follows: authenticate the client
//! certificate, authorise the role, do the work, audit the outcome before answering
//! ([`Calls::call`] runs all of it around a handler's work).
//!
//! [`AppState`] holds every part and is seen only where the server is put together
//! (`lib.rs`): each area's handlers and loops get a context of their own with the parts
//! and the config slice they use (`jobs::Context`, …), and [`Calls`] for the protocol.

use std::sync::Arc;

use serde_json::json;
use shuyu_engine::{Engine, Storage};
use shuyu_policy::{Action, Policy, Role, is_allowed};
use shuyu_vault::{Envelope, KekProvider, SigningKey};
use tonic::{Request, Status};

use crate::admin::records::Principal;
use crate::audit::trail::AuditEntry;
use crate::config::ServerConfig;
use crate::error::{Refusal, Result, ServerError};
use crate::keys::KeyStore;
use crate::store::{Audited, Store};
use crate::tls::{self, CaMaterial};

/// The call core: what every RPC needs to authenticate, authorise and audit its caller.
/// Cheap to clone (each area's context holds one).
#[derive(Debug, Clone)]
pub struct Calls {
    store: Store,
    readiness: Arc<crate::readiness::Readiness>,
}

/// Every part of a running server, as `serve` puts it together; areas never see it whole.
#[derive(Debug)]
pub struct AppState {
    /// Validated configuration.
    pub config: ServerConfig,
    /// Metadata store and audit trail.
    pub store: Store,
    /// Key hierarchy.
    pub keys: Arc<KeyStore>,
    /// Engine with the domain-wide envelope (ingest, samples, staged results).
    pub engine: Engine,
    /// Object store.
    pub storage: Storage,
    /// Domain-wide envelope (shared key caches) for packages.
    pub envelope: Arc<Envelope>,
    /// Policy in force.
    pub policy: Arc<Policy>,
    /// The domain CA.
    pub ca: Arc<CaMaterial>,
    /// Export signing key.
    pub signing: Arc<SigningKey>,
    /// The fair job queue, live progress and cancel switches.
    pub scheduler: Arc<crate::jobs::scheduler::Scheduler>,
    /// This server among those sharing the domain.
    pub presence: crate::presence::Presence,
    /// Worker processes between jobs: the spare, and those kept for their scenario's next
    /// job.
    pub workers: Arc<crate::jobs::worker::WorkerPool>,
    /// Readiness (the gRPC health service): not ready while the data dir refuses writes.
    pub readiness: Arc<crate::readiness::Readiness>,
    /// Transport-level refusals not yet written to the trail.
    pub refusals: Arc<crate::audit::refusals::Refusals>,
    /// Turns and the per-request cap for handling staged results and packages.
    pub results: Arc<crate::exports::result_budget::ResultBudget>,
}

/// How a call's work ended well, as [`Calls::call`] is to audit it.
#[derive(Debug)]
pub enum Done<T> {
    /// The success was audited in the work's own transaction (its record committed with
    /// the change): the token only [`crate::store::Store::commit`] and
    /// [`crate::store::Store::commit_with`] hand out proves it.
    Audited(Audited<T>),
    /// A success to audit now, with this detail (reads, and work that changes nothing).
    Record(T, serde_json::Value),
}

/// An authenticated, authorised caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Who.
    pub principal: Principal,
    /// What they are doing.
    pub action: Action,
}

impl Caller {
    /// The engineer's tenant. Every engineer has one (enforced at creation).
    pub fn tenant(&self) -> Result<&str> {
        self.principal
            .tenant_id
            .as_deref()
            .ok_or_else(|| Refusal::NoTenant("the caller belongs to no tenant".into()).into())
    }

    /// An audit entry for this caller.
    pub fn entry(
        &self,
        target: impl Into<String>,
        outcome: &str,
        detail: serde_json::Value,
    ) -> AuditEntry {
        AuditEntry {
            principal_id: self.principal.id.clone(),
            role: self.principal.role.as_str().to_owned(),
            tenant_id: self.principal.tenant_id.clone().unwrap_or_default(),
            action: self.action.as_str().to_owned(),
            target: target.into(),
            outcome: outcome.to_owned(),
            detail,
            secret_detail: None,
        }
    }
}

impl AppState {
    /// A fresh envelope over the key store (shared caches for server-side reads).
    pub fn envelope(keys: &Arc<KeyStore>) -> Arc<Envelope> {
        Arc::new(Envelope::new(Arc::clone(keys) as Arc<dyn KekProvider>))
    }

    /// The call core over this server's store.
    pub fn calls(&self) -> Calls {
        Calls {
            store: self.store.clone(),
            readiness: Arc::clone(&self.readiness),
        }
    }
}

impl Calls {
    fn identify<T>(&self, request: &Request<T>) -> Result<Principal> {
        let certs = request
            .peer_certs()
            .ok_or(ServerError::Unauthenticated("no client certificate"))?;
        let leaf = certs
            .first()
            .ok_or(ServerError::Unauthenticated("no client certificate"))?;
        let fingerprint = tls::fingerprint(leaf.as_ref());
        self.store
            .read(|conn| {
                crate::admin::records::principal_by_certificate(conn, &fingerprint, crate::now_ms())
            })?
            .ok_or(ServerError::Unauthenticated(
                "the client certificate is not registered, revoked or expired",
            ))
    }

    /// Authenticates and authorises a call. Refusals are audited and returned as a status.
    ///
    /// # Errors
    /// `UNAUTHENTICATED` or `PERMISSION_DENIED` (already audited).
    fn begin<T>(
        &self,
        request: &Request<T>,
        action: Action,
    ) -> std::result::Result<Caller, Status> {
        // From here on, this call is audited by its handler.
        if let Some(reached) = request
            .extensions()
            .get::<crate::audit::refusals::HandlerReached>()
        {
            reached.mark();
        }
        let principal = match self.identify(request) {
            Ok(p) => p,
            Err(e) => {
                let entry = AuditEntry {
                    principal_id: "-".into(),
                    role: "-".into(),
                    action: action.as_str().into(),
                    outcome: e.audit_outcome().into(),
                    detail: json!({"reason": e.to_string()}),
                    ..AuditEntry::default()
                };
                return Err(self.audited_error(&entry, e));
            }
        };
        let caller = Caller { principal, action };
        if !is_allowed(caller.principal.role, action) {
            let e = ServerError::from(Refusal::RoleNotAllowed(format!(
                "the {} role may not {}",
                caller.principal.role.as_str(),
                action.as_str().replace('_', " ")
            )));
            let entry = caller.entry("", e.audit_outcome(), json!({"reason": e.to_string()}));
            return Err(self.audited_error(&entry, e));
        }
        // R8, R9: registered, trained and under an NDA, and not disabled.
        match self.store.read(|conn| {
            crate::governance::records::refusal(conn, &caller.principal, action, crate::now_ms())
        }) {
            Ok(None) => {}
            Ok(Some(refusal)) => {
                let e = ServerError::from(refusal);
                let entry = caller.entry("", e.audit_outcome(), json!({"reason": e.to_string()}));
                return Err(self.audited_error(&entry, e));
            }
            Err(e) => return Err(self.fail(&caller, "", e)),
        }
        if caller.principal.role == Role::Engineer && caller.principal.tenant_id.is_none() {
            let e = ServerError::from(Refusal::NoTenant("the caller belongs to no tenant".into()));
            let entry = caller.entry("", e.audit_outcome(), json!({}));
            return Err(self.audited_error(&entry, e));
        }
        // A suspended or terminated tenant's people are refused every call; a stopped
        // tenant's everything but reads (R26, R27, R32).
        if let Some(tenant_id) = caller.principal.tenant_id.as_deref() {
            let refusal = self
                .store
                .read(|c| crate::lifecycle::records::hold(c, tenant_id))
                .map(|hold| hold.refused(action));
            let e = match refusal {
                Ok(None) => return Ok(caller),
                Ok(Some(refusal)) => ServerError::from(refusal),
                Err(e) => e,
            };
            let entry = caller.entry(
                format!("tenant:{tenant_id}"),
                e.audit_outcome(),
                json!({"reason": e.to_string()}),
            );
            return Err(self.audited_error(&entry, e));
        }
        Ok(caller)
    }

    fn audited_error(&self, entry: &AuditEntry, e: ServerError) -> Status {
        match self.store.record(entry) {
            Ok(()) => e.into_status(),
            Err(audit_error) => self.audit_failed(audit_error),
        }
    }

    /// The answer when a call's audit record could not be written: the call fails. A full
    /// or read-only disk is said plainly (and makes the server not ready); anything else is
    /// an internal error.
    fn audit_failed(&self, audit_error: ServerError) -> Status {
        if let Some(fault) = audit_error.storage_fault() {
            self.readiness.report(fault);
            return audit_error.into_status();
        }
        tracing::error!(error = %audit_error, "audit write failed");
        ServerError::internal("audit write failed").into_status()
    }

    /// Audits a failed call and turns it into a status. Internal details go sealed into the
    /// trail; the client sees the error id only.
    fn fail(&self, caller: &Caller, target: &str, e: ServerError) -> Status {
        let mut entry = caller.entry(target, e.audit_outcome(), json!({}));
        match &e {
            ServerError::Internal { id, detail } => {
                entry.detail = json!({"error_id": id});
                entry.secret_detail = Some(detail.clone());
                tracing::warn!(error_id = %id, action = caller.action.as_str(), "internal error");
            }
            ServerError::Storage(fault) => {
                self.readiness.report(*fault);
                tracing::error!(action = caller.action.as_str(), "{fault}");
                entry.detail = json!({"reason": fault.to_string()});
            }
            other => entry.detail = json!({"reason": other.to_string()}),
        }
        self.audited_error(&entry, e)
    }

    /// Runs one call: [`Calls::begin`] (authenticate, authorise, qualification and
    /// disabled checks, held-tenant refusal), then `work` on the caller and the request's
    /// message, then the audit of its outcome — a failure always here, a success here or,
    /// for [`Done::Audited`], in the work's own transaction. `target` names what the call is
    /// about, from the message, for the records written here.
    ///
    /// # Errors
    /// The refusal or the work's error (audited), or the status of a failed audit write.
    pub async fn call<R, T, Fut>(
        &self,
        request: Request<R>,
        action: Action,
        target: impl FnOnce(&R) -> String,
        work: impl FnOnce(Caller, R) -> Fut,
    ) -> std::result::Result<T, Status>
    where
        Fut: Future<Output = Result<Done<T>>>,
    {
        let caller = self.begin(&request, action)?;
        let message = request.into_inner();
        let target = target(&message);
        match work(caller.clone(), message).await {
            Ok(Done::Audited(value)) => Ok(value.into_inner()),
            Ok(Done::Record(value, detail)) => {
                self.finish_read(&caller, &target, Ok((value, detail)))
            }
            Err(e) => Err(self.fail(&caller, &target, e)),
        }
    }

    /// Finishes a read-only call: audits success or failure, then answers.
    ///
    /// # Errors
    /// The call's own error, or `INTERNAL` if the audit write fails.
    fn finish_read<T>(
        &self,
        caller: &Caller,
        target: &str,
        result: Result<(T, serde_json::Value)>,
    ) -> std::result::Result<T, Status> {
        match result {
            Ok((value, detail)) => match self.store.record(&caller.entry(target, "ok", detail)) {
                Ok(()) => Ok(value),
                Err(e) => Err(self.audit_failed(e)),
            },
            Err(e) => Err(self.fail(caller, target, e)),
        }
    }
}
