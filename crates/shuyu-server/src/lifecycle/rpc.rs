//! The tenant lifecycle service (R26, R27, R28, R32): suspension and resumption, emergency
//! stop and release, drills, termination with crypto-shredding and the signed exit report.
//! The state is in [`crate::lifecycle::records`]; refusing held tenants' calls is in
//! [`super::Context::begin`], freezing their exports in the export and Flight
//! services.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::json;
use shuyu_policy::{Action, Role};
use shuyu_proto::v1 as pb;
use shuyu_proto::v1::lifecycle_service_server::LifecycleService;
use shuyu_vault::KekProvider;
use tonic::{Request, Response, Status};

use super::Context;
use crate::admin::records::Tenant;
use crate::audit::trail::AuditEntry;
use crate::error::{Refusal, Result, ServerError};
use crate::jobs::oracle::Freeze;
use crate::jobs::records::{JobRecord, JobStatus};
use crate::lifecycle::records::{self as lifecycle, Drill, ExitReport, Hold};
use crate::notify::{self, Audience, NewNotification};
use crate::service::{require_id, require_text};
use crate::state::{Caller, Done};
use crate::store::{Audited, Tx};

/// The handler of `LifecycleService`: the area's context it serves from.
#[derive(Debug, Clone)]
pub(crate) struct LifecycleRpc {
    pub(crate) state: std::sync::Arc<super::Context>,
}

impl LifecycleRpc {
    /// The handler over its area's context.
    pub(crate) fn new(state: std::sync::Arc<super::Context>) -> LifecycleRpc {
        LifecycleRpc { state }
    }
}

const DAY_MS: i64 = 86_400_000;
/// How long a termination waits for the tenant's killed workers to report.
const TERMINATE_HALT_WAIT: Duration = Duration::from_secs(30);
/// How long a drill waits for the tenant's work to halt before it records a timeout.
const DRILL_HALT_WAIT: Duration = Duration::from_secs(10);
/// The drill's objective (R32: stop the harm at once).
const DRILL_OBJECTIVE_MS: u64 = 1_000;
const MAX_REASON_CHARS: usize = 500;

fn unfinished(job: &JobRecord) -> bool {
    matches!(job.status, JobStatus::Queued | JobStatus::Running)
}

fn status_pb(
    tenant: &Tenant,
    hold: &Hold,
    freeze: Option<&Freeze>,
    jobs_unfinished: u32,
    exports: u32,
) -> pb::TenantStatus {
    pb::TenantStatus {
        tenant_id: tenant.id.clone(),
        tenant_name: tenant.name.clone(),
        state: hold.state().to_owned(),
        suspended_at_ms: hold.suspended_at_ms,
        suspend_reason: hold.suspend_reason.clone(),
        fix_by_ms: hold.fix_by_ms,
        suspended_by: hold.suspended_by.clone(),
        overdue: hold.overdue(crate::now_ms()),
        stopped_at_ms: hold.stopped_at_ms,
        stop_reason: hold.stop_reason.clone(),
        stopped_by: hold.stopped_by.clone(),
        terminated_at_ms: hold.terminated_at_ms,
        terminate_reason: hold.terminate_reason.clone(),
        jobs_unfinished,
        exports_frozen: if hold.freezes_exports() { exports } else { 0 },
        production_frozen_at_ms: freeze.map_or(0, |f| f.frozen_at_ms),
        production_freeze_reason: freeze.map(Freeze::reason).unwrap_or_default(),
    }
}

fn drill_pb(d: Drill) -> pb::Drill {
    pb::Drill {
        id: d.id,
        tenant_id: d.tenant_id,
        plan_id: d.plan_id,
        note: d.note,
        run_by: d.run_by,
        started_at_ms: d.started_at_ms,
        released_at_ms: d.released_at_ms,
        halt_ms: d.halt_ms,
        jobs_stopped: d.jobs_stopped,
        exports_frozen: d.exports_frozen,
        outcome: d.outcome,
    }
}

fn report_pb(r: ExitReport) -> pb::ExitReport {
    pb::ExitReport {
        tenant_id: r.tenant_id,
        created_at_ms: r.created_at_ms,
        report_json: r.report_json,
        report_text: r.report_text,
        signature_hex: r.signature_hex,
        public_key_hex: r.public_key_hex,
    }
}

/// One object of a terminated tenant and what trying to decrypt it after the shredding did.
#[derive(Debug, serde::Serialize)]
struct ObjectProof {
    path: String,
    bytes: u64,
    /// `parquet` (through the engine's Parquet decryption) or `package` (the sealed tar).
    tried_as: &'static str,
    decrypted: bool,
}

impl LifecycleRpc {
    fn tenant_or_not_found(&self, tx: &Tx<'_>, id: &str) -> Result<Tenant> {
        crate::admin::records::tenant(tx, id)?
            .ok_or_else(|| ServerError::NotFound(format!("tenant {id}")))
    }

    fn status_of(&self, tenant_id: &str) -> Result<pb::TenantStatus> {
        self.state.store.read(|c| {
            let tenant = self.tenant_or_not_found(c, tenant_id)?;
            let hold = lifecycle::hold(c, tenant_id)?;
            let jobs = crate::jobs::records::jobs(c, self.state.store.audit_log(), tenant_id)?;
            let n_unfinished = jobs.iter().filter(|j| unfinished(j)).count() as u32;
            let exports = lifecycle::open_exports(c, tenant_id)?;
            let freeze = crate::jobs::oracle::active_freeze(c, tenant_id)?;
            Ok(status_pb(
                &tenant,
                &hold,
                freeze.as_ref(),
                n_unfinished,
                exports,
            ))
        })
    }

    /// [`stop_tenant_work`] on the caller's order.
    fn stop_work(&self, caller: &Caller, tenant_id: &str, why: &str) -> Result<Vec<String>> {
        stop_tenant_work(
            &self.state,
            (&caller.principal.id, caller.principal.role.as_str()),
            tenant_id,
            why,
        )
    }

    /// Polls until none of `jobs` is queued or running, or `limit` passes. Returns the jobs
    /// still unfinished.
    async fn wait_halted(
        &self,
        tenant_id: &str,
        jobs: &[String],
        limit: Duration,
    ) -> Result<Vec<String>> {
        let deadline = Instant::now() + limit;
        loop {
            let left: Vec<String> = self.state.store.read(|c| {
                let mut left = Vec::new();
                for id in jobs {
                    if crate::jobs::records::job(c, self.state.store.audit_log(), tenant_id, id)?
                        .is_some_and(|j| unfinished(&j))
                    {
                        left.push(id.clone());
                    }
                }
                Ok(left)
            })?;
            if left.is_empty() || Instant::now() >= deadline {
                return Ok(left);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn suspend(
        &self,
        caller: &Caller,
        req: &pb::SuspendTenantRequest,
    ) -> Result<Audited<pb::TenantStatus>> {
        require_id(&req.tenant_id, "tenant_id")?;
        require_text(&req.reason, "the reason", MAX_REASON_CHARS, true)?;
        if req.fix_days > 365 {
            return Err(ServerError::InvalidArgument(
                "fix_days must be at most 365".into(),
            ));
        }
        if req.fix_by_ms < 0 {
            return Err(ServerError::InvalidArgument(
                "fix_by_ms must not be negative".into(),
            ));
        }
        let now = crate::now_ms();
        let days = match req.fix_days {
            0 => self.state.lifecycle.fix_days,
            n => n,
        };
        let target = format!("tenant:{}", req.tenant_id);
        let reason = req.reason.trim().to_owned();
        let done = self.state.store.commit_with(|tx| {
            self.tenant_or_not_found(tx, &req.tenant_id)?;
            let mut hold = lifecycle::hold(tx, &req.tenant_id)?;
            if hold.terminated_at_ms > 0 {
                return Err(Refusal::TenantTerminated(format!(
                    "tenant {} was terminated on {}",
                    req.tenant_id,
                    crate::format_ms(hold.terminated_at_ms)
                ))
                .into());
            }
            let amend = hold.suspended_at_ms > 0;
            let since = if amend { hold.suspended_at_ms } else { now };
            let fix_by = if req.fix_by_ms > 0 {
                req.fix_by_ms
            } else if amend {
                hold.fix_by_ms
            } else {
                now + i64::from(days) * DAY_MS
            };
            if fix_by < since {
                return Err(ServerError::InvalidArgument(
                    "the fix-by deadline must not be before the suspension began".into(),
                ));
            }
            let was = (hold.fix_by_ms, hold.suspend_reason.clone());
            hold.suspended_at_ms = since;
            hold.fix_by_ms = fix_by;
            hold.suspend_reason = reason.clone();
            hold.suspended_by = caller.principal.id.clone();
            lifecycle::set_hold(tx, &hold)?;
            let body = format!(
                "access is closed from {} until an admin resumes it; fix the violation by {} \
                 or the tenant is terminated (R26). Reason: {reason}",
                crate::format_ms(since),
                crate::format_ms(fix_by)
            );
            notify::notify(
                tx,
                &NewNotification {
                    audience: Audience::Tenant(req.tenant_id.clone()),
                    tenant_id: &req.tenant_id,
                    kind: "tenant_suspended",
                    subject: "your tenant is suspended",
                    body: &body,
                    reference: &req.tenant_id,
                    dedup_key: None,
                },
                now,
            )?;
            let overdue = lifecycle::notify_overdue(tx, now)?;
            let entry = caller.entry(
                target.clone(),
                "ok",
                json!({"amended": amend, "suspended_at_ms": since, "fix_by_ms": fix_by,
                       "was_fix_by_ms": was.0, "reason": reason, "overdue_notified": overdue}),
            );
            Ok(((), entry))
        })?;
        done.and_then(|()| self.status_of(&req.tenant_id))
    }

    fn resume(
        &self,
        caller: &Caller,
        req: &pb::ResumeTenantRequest,
    ) -> Result<Audited<pb::TenantStatus>> {
        require_id(&req.tenant_id, "tenant_id")?;
        require_text(&req.note, "the note", MAX_REASON_CHARS, false)?;
        let now = crate::now_ms();
        let done = self.state.store.commit_with(|tx| {
            self.tenant_or_not_found(tx, &req.tenant_id)?;
            let mut hold = lifecycle::hold(tx, &req.tenant_id)?;
            if hold.terminated_at_ms > 0 {
                return Err(Refusal::TenantTerminated(format!(
                    "tenant {} was terminated on {}: a terminated tenant is never resumed",
                    req.tenant_id,
                    crate::format_ms(hold.terminated_at_ms)
                ))
                .into());
            }
            if hold.suspended_at_ms == 0 {
                return Err(Refusal::NotSuspended(format!(
                    "tenant {} is not suspended",
                    req.tenant_id
                ))
                .into());
            }
            let detail = json!({"suspended_at_ms": hold.suspended_at_ms,
                                "fix_by_ms": hold.fix_by_ms, "overdue": hold.overdue(now),
                                "note": req.note});
            hold.suspended_at_ms = 0;
            hold.fix_by_ms = 0;
            hold.suspend_reason.clear();
            hold.suspended_by.clear();
            lifecycle::set_hold(tx, &hold)?;
            notify::notify(
                tx,
                &NewNotification {
                    audience: Audience::Tenant(req.tenant_id.clone()),
                    tenant_id: &req.tenant_id,
                    kind: "tenant_resumed",
                    subject: "your tenant is resumed",
                    body: "access is open again; frozen exports resume where they were",
                    reference: &req.tenant_id,
                    dedup_key: None,
                },
                now,
            )?;
            Ok((
                (),
                caller.entry(format!("tenant:{}", req.tenant_id), "ok", detail),
            ))
        })?;
        done.and_then(|()| self.status_of(&req.tenant_id))
    }

    /// Lifts the freeze of the tenant's production job submission (admins, after looking at
    /// its failed production jobs).
    fn lift_production_freeze(
        &self,
        caller: &Caller,
        req: &pb::LiftProductionFreezeRequest,
    ) -> Result<Audited<pb::TenantStatus>> {
        require_id(&req.tenant_id, "tenant_id")?;
        require_text(&req.note, "the note", MAX_REASON_CHARS, true)?;
        let now = crate::now_ms();
        let done = self.state.store.commit_with(|tx| {
            self.tenant_or_not_found(tx, &req.tenant_id)?;
            let freeze = crate::jobs::oracle::lift(
                tx,
                &req.tenant_id,
                &caller.principal.id,
                req.note.trim(),
                now,
            )?
            .ok_or_else(|| {
                Refusal::NotFrozen(format!(
                    "tenant {}'s production job submission is not frozen",
                    req.tenant_id
                ))
            })?;
            let detail = json!({"lifted": "production_freeze", "freeze": freeze.id,
                                "frozen_at_ms": freeze.frozen_at_ms,
                                "failures": freeze.failures, "job_ids": freeze.job_ids,
                                "note": req.note.trim()});
            Ok((
                (),
                caller.entry(format!("tenant:{}", req.tenant_id), "ok", detail),
            ))
        })?;
        done.and_then(|()| self.status_of(&req.tenant_id))
    }

    /// Records the stop (`drill`: as part of that drill); returns the hold.
    fn record_stop(
        &self,
        caller: &Caller,
        tenant_id: &str,
        reason: &str,
        drill: Option<&str>,
    ) -> Result<Audited<()>> {
        let now = crate::now_ms();
        self.state.store.commit_with(|tx| {
            self.tenant_or_not_found(tx, tenant_id)?;
            let mut hold = lifecycle::hold(tx, tenant_id)?;
            match hold.state() {
                "terminated" => {
                    return Err(Refusal::TenantTerminated(format!(
                        "tenant {tenant_id} was terminated"
                    ))
                    .into());
                }
                "stopped" if drill.is_some() => {
                    return Err(Refusal::TenantStopped(format!(
                        "tenant {tenant_id} is already stopped: release it before a drill"
                    ))
                    .into());
                }
                "suspended" if drill.is_some() => {
                    return Err(Refusal::TenantSuspended(format!(
                        "tenant {tenant_id} is suspended: it has no work to drill on"
                    ))
                    .into());
                }
                _ => {}
            }
            if hold.stopped_at_ms == 0 {
                hold.stopped_at_ms = now;
            }
            hold.stop_reason = reason.to_owned();
            hold.stopped_by = caller.principal.id.clone();
            lifecycle::set_hold(tx, &hold)?;
            if drill.is_none() {
                let body = format!("all work halted and exports frozen (R32). Reason: {reason}");
                for audience in [Audience::Admins, Audience::Tenant(tenant_id.to_owned())] {
                    notify::notify(
                        tx,
                        &NewNotification {
                            audience,
                            tenant_id,
                            kind: "emergency_stop",
                            subject: &format!("emergency stop of tenant {tenant_id}"),
                            body: &body,
                            reference: tenant_id,
                            dedup_key: None,
                        },
                        now,
                    )?;
                }
            }
            let entry = caller.entry(
                format!("tenant:{tenant_id}"),
                "ok",
                json!({"stopped_at_ms": hold.stopped_at_ms, "reason": reason, "drill": drill}),
            );
            Ok(((), entry))
        })
    }

    fn release(&self, tx: &Tx<'_>, tenant_id: &str, require_stopped: bool) -> Result<Hold> {
        self.tenant_or_not_found(tx, tenant_id)?;
        let mut hold = lifecycle::hold(tx, tenant_id)?;
        if hold.terminated_at_ms > 0 {
            return Err(
                Refusal::TenantTerminated(format!("tenant {tenant_id} was terminated")).into(),
            );
        }
        if require_stopped && hold.stopped_at_ms == 0 {
            return Err(Refusal::NotStopped(format!("tenant {tenant_id} is not stopped")).into());
        }
        let was = hold.clone();
        hold.stopped_at_ms = 0;
        hold.stop_reason.clear();
        hold.stopped_by.clear();
        lifecycle::set_hold(tx, &hold)?;
        Ok(was)
    }

    async fn drill(&self, caller: &Caller, req: &pb::RunDrillRequest) -> Result<Audited<Drill>> {
        require_id(&req.tenant_id, "tenant_id")?;
        if !req.plan_id.is_empty() {
            require_id(&req.plan_id, "plan_id")?;
        }
        require_text(&req.note, "the note", MAX_REASON_CHARS, false)?;
        // The plan drilled (R32): the one named, which must be the emergency plan of one of
        // the tenant's authorizations, or else the plan of its authorization in force.
        let plan_id = self.state.store.read(|c| {
            if req.plan_id.is_empty() {
                let need = crate::governance::records::Need {
                    datasets: Vec::new(),
                    category: None,
                    emergency_plan: true,
                };
                return Ok(crate::governance::records::require_authorization(
                    c,
                    &req.tenant_id,
                    crate::now_ms(),
                    &need,
                )
                .map(|a| a.id)
                .unwrap_or_default());
            }
            let owned = crate::governance::records::authorization(c, &req.plan_id)?
                .is_some_and(|a| a.tenant_id == req.tenant_id);
            if !owned || crate::governance::records::emergency_plan(c, &req.plan_id)?.is_none() {
                return Err(ServerError::NotFound(format!(
                    "emergency plan {} of tenant {}",
                    req.plan_id, req.tenant_id
                )));
            }
            Ok(req.plan_id.clone())
        })?;
        let id = crate::new_id("drill");
        let started = Instant::now();
        let started_at_ms = crate::now_ms();
        self.record_stop(
            caller,
            &req.tenant_id,
            &format!("drill {id} of the emergency stop"),
            Some(&id),
        )?
        .into_inner();
        let stopped = self.stop_work(caller, &req.tenant_id, &format!("drill {id}"));
        let halted = match &stopped {
            Ok(jobs) => {
                self.wait_halted(&req.tenant_id, jobs, DRILL_HALT_WAIT)
                    .await
            }
            Err(_) => Ok(Vec::new()),
        };
        let halt_ms = started.elapsed().as_millis() as u64;
        // Released whatever happened above: a drill never leaves a tenant stopped.
        let now = crate::now_ms();
        let jobs_stopped = stopped.as_ref().cloned().unwrap_or_default();
        let left = halted.as_ref().cloned().unwrap_or_default();
        let drill = Drill {
            id: id.clone(),
            tenant_id: req.tenant_id.clone(),
            plan_id: plan_id.clone(),
            note: req.note.clone(),
            run_by: caller.principal.id.clone(),
            started_at_ms,
            released_at_ms: now,
            halt_ms: if jobs_stopped.is_empty() { 0 } else { halt_ms },
            exports_frozen: self
                .state
                .store
                .read(|c| lifecycle::open_exports(c, &req.tenant_id))?,
            outcome: if stopped.is_err() || halted.is_err() || !left.is_empty() {
                "timeout"
            } else if jobs_stopped.is_empty() {
                "no_work"
            } else {
                "halted"
            }
            .into(),
            jobs_stopped,
        };
        let met = drill.outcome != "timeout" && drill.halt_ms <= DRILL_OBJECTIVE_MS;
        let done = self.state.store.commit_with(|tx| {
            self.release(tx, &req.tenant_id, true)?;
            lifecycle::insert_drill(tx, &drill)?;
            if !drill.plan_id.is_empty() {
                crate::governance::records::record_drill(tx, &drill.plan_id, drill.started_at_ms)?;
            }
            let entry = caller.entry(
                format!("tenant:{} drill:{id}", req.tenant_id),
                "ok",
                json!({"halt_ms": drill.halt_ms, "jobs_stopped": drill.jobs_stopped,
                       "jobs_not_halted": left, "outcome": drill.outcome,
                       "objective_ms": DRILL_OBJECTIVE_MS, "objective_met": met,
                       "plan_id": drill.plan_id}),
            );
            Ok(((), entry))
        })?;
        stopped?;
        halted?;
        Ok(done.map(|()| drill))
    }

    async fn terminate(
        &self,
        caller: &Caller,
        req: &pb::TerminateTenantRequest,
    ) -> Result<Audited<ExitReport>> {
        require_id(&req.tenant_id, "tenant_id")?;
        require_text(&req.reason, "the reason", MAX_REASON_CHARS, true)?;
        let tenant_id = req.tenant_id.as_str();
        let target = format!("tenant:{tenant_id}");
        let reason = req.reason.trim().to_owned();
        let started_ms = crate::now_ms();

        // 1. Access closes and exports freeze for good (a termination interrupted before
        //    its report was stored is continued by calling again).
        let (tenant, hold) = self
            .state
            .store
            .commit_with(|tx| {
                let tenant = self.tenant_or_not_found(tx, tenant_id)?;
                let mut hold = lifecycle::hold(tx, tenant_id)?;
                if hold.terminated_at_ms > 0 && lifecycle::exit_report(tx, tenant_id)?.is_some() {
                    return Err(Refusal::TenantTerminated(format!(
                        "tenant {tenant_id} was already terminated on {}",
                        crate::format_ms(hold.terminated_at_ms)
                    ))
                    .into());
                }
                let resumed = hold.terminated_at_ms > 0;
                if !resumed {
                    hold.terminated_at_ms = started_ms;
                    hold.terminate_reason = reason.clone();
                    hold.terminated_by = caller.principal.id.clone();
                }
                lifecycle::set_hold(tx, &hold)?;
                let entry = caller.entry(
                    target.clone(),
                    "ok",
                    json!({"step": "access_closed", "continued": resumed, "reason": reason}),
                );
                Ok(((tenant, hold), entry))
            })?
            .into_inner();

        // 2. Its work stops.
        let stopped = self.stop_work(caller, tenant_id, "the tenant was terminated")?;
        let not_halted = self
            .wait_halted(tenant_id, &stopped, TERMINATE_HALT_WAIT)
            .await?;

        // 3. The inventory, taken before anything is deleted.
        let now = crate::now_ms();
        let (jobs, exports) = self.state.store.read(|c| {
            Ok((
                crate::jobs::records::jobs(c, self.state.store.audit_log(), tenant_id)?,
                crate::exports::records::exports_of_tenant(c, tenant_id)?,
            ))
        })?;
        let mut roots = vec![tenant.kek_id.clone(), tenant.pseudonym_kek_id.clone()];
        roots.extend(jobs.iter().map(|j| j.result_kek.clone()));
        let keks = self
            .state
            .store
            .read(|c| lifecycle::tenant_keks(c, tenant_id, &roots))?;
        let mut objects: BTreeSet<String> = self
            .state
            .storage
            .list("")
            .await?
            .into_iter()
            .filter(|path| path.split('/').any(|segment| segment == tenant_id))
            .collect();
        objects.extend(
            exports
                .iter()
                .filter(|e| !e.package_location.is_empty())
                .map(|e| e.package_location.clone()),
        );
        let mut sizes = Vec::new();
        for path in &objects {
            let bytes = self.state.storage.size(path).await.unwrap_or(0);
            sizes.push((path.clone(), bytes));
        }
        sizes.retain(|(_, bytes)| *bytes > 0);
        let pending_exports: Vec<String> = exports
            .iter()
            .filter(|e| e.status == crate::exports::records::ExportStatus::InReview)
            .map(|e| e.id.clone())
            .collect();
        let valid_products: Vec<serde_json::Value> = exports
            .iter()
            .filter(|e| e.status_at(now) == crate::exports::records::ExportStatus::Approved)
            .map(|e| {
                json!({"export_id": e.id, "recipient_id": e.recipient(),
                       "expires_at_ms": e.product.as_ref().map_or(0, |p| p.expires_at_ms),
                       "downloads": e.download_count})
            })
            .collect();
        let usage = jobs
            .iter()
            .fold(crate::jobs::records::JobUsage::default(), |mut sum, j| {
                sum.cpu_ms += j.usage.cpu_ms;
                sum.bytes_scanned += j.usage.bytes_scanned;
                sum.wall_ms += j.usage.wall_ms;
                sum.peak_memory_bytes = sum.peak_memory_bytes.max(j.usage.peak_memory_bytes);
                sum.queued_ms += j.usage.queued_ms;
                sum
            });
        let downloads: u64 = exports.iter().map(|e| e.download_count).sum();

        // 4. Crypto-shredding: the wrapped KEKs go from the store in one transaction with
        //    the end of its exports, then from memory and every cache.
        let (revoked, rejected) = self
            .state
            .store
            .commit_with(|tx| {
                let n = lifecycle::delete_keks(tx, &keks)?;
                let closed = lifecycle::close_exports(tx, tenant_id, &caller.principal.id, now)?;
                // Its authorizations end with it (R25, R27).
                let mut ended = Vec::new();
                for a in crate::governance::records::authorizations(tx, Some(tenant_id))? {
                    if a.revoked_at_ms == 0 && a.valid_until_ms > now {
                        crate::governance::records::revoke_authorization(
                            tx,
                            &a.id,
                            now,
                            "tenant terminated",
                        )?;
                        ended.push(a.id);
                    }
                }
                let entry = caller.entry(
                    target.clone(),
                    "ok",
                    json!({"step": "keys_destroyed", "keks": keks, "n_deleted": n,
                       "exports_revoked": closed.0, "exports_rejected": closed.1,
                       "authorizations_revoked": ended}),
                );
                Ok((closed, entry))
            })?
            .into_inner();
        for id in &keks {
            self.state.keys.discard(id);
            self.state.envelope.forget(id);
        }

        // 5. The proof by trying: every KEK and every object, through the real paths.
        let kek_proof: Vec<serde_json::Value> = keks
            .iter()
            .map(|id| json!({"kek_id": id, "unwraps": self.state.keys.kek(id).is_ok()}))
            .collect();
        let mut proofs = Vec::new();
        for (path, bytes) in &sizes {
            // Each object is tried through the path that reads it, as far as its first
            // chunk or row: enough to decrypt, whatever its size.
            let (tried_as, decrypted) = if path.ends_with(".parquet") {
                (
                    "parquet",
                    self.state.engine.try_open_result(path).await.is_ok(),
                )
            } else {
                (
                    "package",
                    crate::exports::rpc::ExportsRpc::new(std::sync::Arc::clone(
                        &self.state.exports,
                    ))
                    .first_chunk_opens(path)
                    .await,
                )
            };
            proofs.push(ObjectProof {
                path: path.clone(),
                bytes: *bytes,
                tried_as,
                decrypted,
            });
        }
        let all_failed = proofs.iter().all(|p| !p.decrypted)
            && kek_proof.iter().all(|k| k["unwraps"] == json!(false));

        // 6. Its files go.
        let mut delete_errors = 0;
        for (path, _) in &sizes {
            if self.state.storage.delete(path).await.is_err() {
                delete_errors += 1;
            }
        }
        for prefix in [
            format!("results/{tenant_id}/"),
            format!("exports/{tenant_id}/"),
        ] {
            if self.state.storage.delete_prefix(&prefix).await.is_err() {
                delete_errors += 1;
            }
        }

        // 7. The exit report, signed and stored with the last step's audit record.
        let total_bytes: u64 = sizes.iter().map(|(_, b)| *b).sum();
        let report = json!({
            "kind": "shuyu-exit-report/v1",
            "tenant": {"id": tenant.id, "name": tenant.name,
                       "name_reserved": true},
            "terminated_at_ms": hold.terminated_at_ms,
            "terminated_by": hold.terminated_by,
            "reason": hold.terminate_reason,
            "suspension": {"suspended_at_ms": hold.suspended_at_ms,
                           "fix_by_ms": hold.fix_by_ms, "reason": hold.suspend_reason},
            "destroyed": {
                "keks": keks,
                "objects": proofs.iter().map(|p| json!({"path": p.path, "bytes": p.bytes}))
                    .collect::<Vec<_>>(),
                "n_objects": proofs.len(),
                "bytes": total_bytes,
                "delete_errors": delete_errors,
            },
            "obligations": {
                "jobs_stopped": stopped,
                "jobs_not_halted": not_halted,
                "pending_exports_rejected": pending_exports,
                "exports_revoked": revoked,
                "exports_rejected": rejected,
                "products_valid_at_recipients": valid_products,
                "usage": {"n_jobs": jobs.len(), "cpu_ms": usage.cpu_ms,
                          "bytes_scanned": usage.bytes_scanned, "wall_ms": usage.wall_ms,
                          "peak_memory_bytes": usage.peak_memory_bytes,
                          "downloads": downloads,
                          "from_ms": tenant.created_at_ms, "to_ms": now},
            },
            "proof": {
                "keks": kek_proof,
                "objects": proofs,
                "all_failed": all_failed,
            },
            "audit_records_kept": true,
        });
        let report_json = serde_json::to_string_pretty(&report)
            .map_err(|e| ServerError::internal(format!("exit report: {e}")))?;
        let report_text = exit_report_text(&report);
        let signature = self.state.signing.sign(report_json.as_bytes());
        let stored = ExitReport {
            tenant_id: tenant_id.to_owned(),
            created_at_ms: crate::now_ms(),
            report_json,
            report_text,
            signature_hex: hex::encode(signature),
            public_key_hex: hex::encode(self.state.signing.public_key()),
        };
        let done = self.state.store.commit_with(|tx| {
            lifecycle::insert_exit_report(tx, &stored)?;
            notify::notify(
                tx,
                &NewNotification {
                    audience: Audience::Admins,
                    tenant_id,
                    kind: "tenant_terminated",
                    subject: &format!("tenant {tenant_id} was terminated"),
                    body: "its keys are destroyed and its files deleted; the exit report is \
                           at `shuyu tenant exit-report`",
                    reference: tenant_id,
                    dedup_key: None,
                },
                stored.created_at_ms,
            )?;
            let entry = caller.entry(
                target.clone(),
                if all_failed { "ok" } else { "error" },
                json!({"step": "exit_report", "n_keks": keks.len(), "n_objects": proofs.len(),
                       "bytes": total_bytes, "all_failed": all_failed,
                       "report_sha256": shuyu_vault::sha256_hex(stored.report_json.as_bytes())}),
            );
            Ok(((), entry))
        })?;
        Ok(done.map(|()| stored))
    }
}

/// The human-readable form of an exit report.
fn exit_report_text(r: &serde_json::Value) -> String {
    use std::fmt::Write as _;
    let mut t = String::new();
    let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    let _ = writeln!(
        t,
        "EXIT REPORT — tenant {} ({})",
        s(&r["tenant"]["id"]),
        s(&r["tenant"]["name"])
    );
    let _ = writeln!(
        t,
        "terminated {} by {}: {}",
        crate::format_ms(r["terminated_at_ms"].as_i64().unwrap_or(0)),
        s(&r["terminated_by"]),
        s(&r["reason"])
    );
    let d = &r["destroyed"];
    let _ = writeln!(t, "\nDestroyed keys (crypto-shredding):");
    for k in d["keks"].as_array().into_iter().flatten() {
        let _ = writeln!(t, "  {}", s(k));
    }
    let _ = writeln!(
        t,
        "\nDeleted files: {} objects, {} bytes",
        d["n_objects"], d["bytes"]
    );
    let o = &r["obligations"];
    let _ = writeln!(t, "\nOpen obligations checked:");
    let n = |v: &serde_json::Value| v.as_array().map_or(0, Vec::len);
    let _ = writeln!(t, "  jobs stopped: {}", n(&o["jobs_stopped"]));
    let _ = writeln!(t, "  jobs not halted in time: {}", n(&o["jobs_not_halted"]));
    let _ = writeln!(
        t,
        "  exports in review, now rejected: {}",
        n(&o["pending_exports_rejected"])
    );
    let _ = writeln!(t, "  products revoked: {}", n(&o["exports_revoked"]));
    let _ = writeln!(
        t,
        "  products still valid at recipients (their copies are outside the domain): {}",
        n(&o["products_valid_at_recipients"])
    );
    let u = &o["usage"];
    let _ = writeln!(
        t,
        "  usage metered: {} jobs, {} ms CPU, {} bytes scanned, {} downloads",
        u["n_jobs"], u["cpu_ms"], u["bytes_scanned"], u["downloads"]
    );
    let p = &r["proof"];
    let _ = writeln!(t, "\nProof by trying (after the keys were destroyed):");
    for k in p["keks"].as_array().into_iter().flatten() {
        let _ = writeln!(
            t,
            "  key {:<40} {}",
            s(&k["kek_id"]),
            if k["unwraps"] == json!(true) {
                "STILL UNWRAPS"
            } else {
                "does not unwrap"
            }
        );
    }
    for o in p["objects"].as_array().into_iter().flatten() {
        let _ = writeln!(
            t,
            "  {} {:<60} {}",
            s(&o["tried_as"]),
            s(&o["path"]),
            if o["decrypted"] == json!(true) {
                "STILL DECRYPTS"
            } else {
                "does not decrypt"
            }
        );
    }
    let _ = writeln!(
        t,
        "\n{}\nAudit records of the tenant are kept (R27).",
        if p["all_failed"] == json!(true) {
            "RESULT: nothing of the tenant decrypts."
        } else {
            "RESULT: SOMETHING STILL DECRYPTS — investigate."
        }
    );
    t
}

#[tonic::async_trait]
impl LifecycleService for LifecycleRpc {
    async fn suspend_tenant(
        &self,
        request: Request<pb::SuspendTenantRequest>,
    ) -> Result<Response<pb::TenantStatusResponse>, Status> {
        let target = |req: &pb::SuspendTenantRequest| format!("tenant:{}", req.tenant_id);
        let response = self
            .state
            .calls
            .call(
                request,
                Action::SuspendTenant,
                target,
                |caller, req| async move {
                    let status = self.suspend(&caller, &req)?;
                    // The suspension is audited; failing to stop the work is audited after it.
                    let stopped =
                        self.stop_work(&caller, &req.tenant_id, "the tenant was suspended")?;
                    Ok(Done::Audited(status.map(|status| {
                        pb::TenantStatusResponse {
                            status: Some(status),
                            jobs_stopped: stopped,
                        }
                    })))
                },
            )
            .await?;
        Ok(Response::new(response))
    }

    async fn resume_tenant(
        &self,
        request: Request<pb::ResumeTenantRequest>,
    ) -> Result<Response<pb::TenantStatusResponse>, Status> {
        let target = |req: &pb::ResumeTenantRequest| format!("tenant:{}", req.tenant_id);
        let status = self
            .state
            .calls
            .call(
                request,
                Action::SuspendTenant,
                target,
                |caller, req| async move { Ok(Done::Audited(self.resume(&caller, &req)?)) },
            )
            .await?;
        Ok(Response::new(pb::TenantStatusResponse {
            status: Some(status),
            jobs_stopped: Vec::new(),
        }))
    }

    async fn lift_production_freeze(
        &self,
        request: Request<pb::LiftProductionFreezeRequest>,
    ) -> Result<Response<pb::TenantStatusResponse>, Status> {
        // Reopening a tenant's work is the suspending admin's decision, as resumption is.
        let target = |req: &pb::LiftProductionFreezeRequest| format!("tenant:{}", req.tenant_id);
        let status = self
            .state
            .calls
            .call(
                request,
                Action::SuspendTenant,
                target,
                |caller, req| async move {
                    Ok(Done::Audited(self.lift_production_freeze(&caller, &req)?))
                },
            )
            .await?;
        Ok(Response::new(pb::TenantStatusResponse {
            status: Some(status),
            jobs_stopped: Vec::new(),
        }))
    }

    async fn get_tenant_status(
        &self,
        request: Request<pb::GetTenantStatusRequest>,
    ) -> Result<Response<pb::TenantStatusResponse>, Status> {
        let target = |req: &pb::GetTenantStatusRequest| format!("tenant:{}", req.tenant_id);
        let status = self
            .state
            .calls
            .call(
                request,
                Action::ViewLifecycle,
                target,
                |_, req| async move {
                    require_id(&req.tenant_id, "tenant_id")?;
                    let status = self.status_of(&req.tenant_id)?;
                    let detail = json!({"state": status.state, "overdue": status.overdue});
                    Ok(Done::Record(status, detail))
                },
            )
            .await?;
        Ok(Response::new(pb::TenantStatusResponse {
            status: Some(status),
            jobs_stopped: Vec::new(),
        }))
    }

    async fn terminate_tenant(
        &self,
        request: Request<pb::TerminateTenantRequest>,
    ) -> Result<Response<pb::TerminateTenantResponse>, Status> {
        let target = |req: &pb::TerminateTenantRequest| format!("tenant:{}", req.tenant_id);
        let report = self
            .state
            .calls.call(request, Action::TerminateTenant, target, |caller, req| async move {
                Ok(Done::Audited(self.terminate(&caller, &req).await?))
            })
            .await?;
        Ok(Response::new(pb::TerminateTenantResponse {
            report: Some(report_pb(report)),
        }))
    }

    async fn get_exit_report(
        &self,
        request: Request<pb::GetExitReportRequest>,
    ) -> Result<Response<pb::GetExitReportResponse>, Status> {
        let target = |req: &pb::GetExitReportRequest| format!("tenant:{}", req.tenant_id);
        let report = self
            .state
            .calls
            .call(
                request,
                Action::ViewLifecycle,
                target,
                |_, req| async move {
                    require_id(&req.tenant_id, "tenant_id")?;
                    let report = self.state.store.read(|c| {
                        self.tenant_or_not_found(c, &req.tenant_id)?;
                        lifecycle::exit_report(c, &req.tenant_id)
                    })?;
                    let report = report.ok_or_else(|| {
                        Refusal::NotTerminated(format!(
                            "tenant {} has not been terminated",
                            req.tenant_id
                        ))
                    })?;
                    let detail = json!({"created_at_ms": report.created_at_ms});
                    Ok(Done::Record(report, detail))
                },
            )
            .await?;
        Ok(Response::new(pb::GetExitReportResponse {
            report: Some(report_pb(report)),
        }))
    }

    async fn emergency_stop(
        &self,
        request: Request<pb::EmergencyStopRequest>,
    ) -> Result<Response<pb::TenantStatusResponse>, Status> {
        let target = |req: &pb::EmergencyStopRequest| format!("tenant:{}", req.tenant_id);
        let response = self
            .state
            .calls
            .call(
                request,
                Action::EmergencyStop,
                target,
                |caller, req| async move {
                    require_id(&req.tenant_id, "tenant_id")?;
                    require_text(&req.reason, "the reason", MAX_REASON_CHARS, true)?;
                    let done =
                        self.record_stop(&caller, &req.tenant_id, req.reason.trim(), None)?;
                    let stopped = self.stop_work(&caller, &req.tenant_id, "emergency stop")?;
                    // The stop is audited; failing to read the status back is audited after it.
                    let status = self.status_of(&req.tenant_id)?;
                    Ok(Done::Audited(done.map(|()| pb::TenantStatusResponse {
                        status: Some(status),
                        jobs_stopped: stopped,
                    })))
                },
            )
            .await?;
        Ok(Response::new(response))
    }

    async fn release_stop(
        &self,
        request: Request<pb::ReleaseStopRequest>,
    ) -> Result<Response<pb::TenantStatusResponse>, Status> {
        let target = |req: &pb::ReleaseStopRequest| format!("tenant:{}", req.tenant_id);
        let status = self
            .state
            .calls
            .call(
                request,
                Action::EmergencyStop,
                target,
                |caller, req| async move {
                    require_id(&req.tenant_id, "tenant_id")?;
                    require_text(&req.note, "the note", MAX_REASON_CHARS, false)?;
                    let done = self.state.store.commit_with(|tx| {
                        let was = self.release(tx, &req.tenant_id, true)?;
                        let entry = caller.entry(
                            format!("tenant:{}", req.tenant_id),
                            "ok",
                            json!({"stopped_at_ms": was.stopped_at_ms, "note": req.note}),
                        );
                        Ok(((), entry))
                    })?;
                    Ok(Done::Audited(
                        done.and_then(|()| self.status_of(&req.tenant_id))?,
                    ))
                },
            )
            .await?;
        Ok(Response::new(pb::TenantStatusResponse {
            status: Some(status),
            jobs_stopped: Vec::new(),
        }))
    }

    async fn run_drill(
        &self,
        request: Request<pb::RunDrillRequest>,
    ) -> Result<Response<pb::RunDrillResponse>, Status> {
        let target = |req: &pb::RunDrillRequest| format!("tenant:{}", req.tenant_id);
        let drill = self
            .state
            .calls
            .call(
                request,
                Action::EmergencyStop,
                target,
                |caller, req| async move { Ok(Done::Audited(self.drill(&caller, &req).await?)) },
            )
            .await?;
        Ok(Response::new(pb::RunDrillResponse {
            drill: Some(drill_pb(drill)),
        }))
    }

    async fn list_drills(
        &self,
        request: Request<pb::ListDrillsRequest>,
    ) -> Result<Response<pb::ListDrillsResponse>, Status> {
        let no_target = |_: &pb::ListDrillsRequest| String::new();
        let response = self
            .state
            .calls
            .call(
                request,
                Action::ViewLifecycle,
                no_target,
                |_, req| async move {
                    let tenant = if req.tenant_id.is_empty() {
                        None
                    } else {
                        require_id(&req.tenant_id, "tenant_id")?;
                        self.state
                            .store
                            .read(|c| self.tenant_or_not_found(c, &req.tenant_id))?;
                        Some(req.tenant_id.as_str())
                    };
                    let drills = self.state.store.read(|c| lifecycle::drills(c, tenant))?;
                    let n = drills.len();
                    Ok(Done::Record(
                        pb::ListDrillsResponse {
                            drills: drills.into_iter().map(drill_pb).collect(),
                        },
                        json!({"n": n}),
                    ))
                },
            )
            .await?;
        Ok(Response::new(response))
    }
}

/// Cancels every queued job of the tenant (recorded here, audited as `job_cancelled` by
/// `actor`, a principal id and role) and tells every running worker of it to die (its runner
/// records the cancellation). Workers kept for the tenant's next jobs are stopped too.
/// Returns the jobs stopped.
///
/// # Errors
/// On store failure.
pub(crate) fn stop_tenant_work(
    state: &Context,
    actor: (&str, &str),
    tenant_id: &str,
    why: &str,
) -> Result<Vec<String>> {
    let removed = state.scheduler.cancel_tenant(tenant_id);
    state.workers.evict_tenant(tenant_id);
    let now = crate::now_ms();
    let mut stopped = Vec::new();
    for job_id in &removed {
        let job = state
            .store
            .read(|c| crate::jobs::records::job(c, state.store.audit_log(), tenant_id, job_id))?;
        let Some(mut job) = job.filter(unfinished) else {
            continue;
        };
        job.status = JobStatus::Cancelled;
        job.error = format!("cancelled before it started: {why}");
        job.finished_at_ms = now;
        let entry = AuditEntry {
            principal_id: actor.0.to_owned(),
            role: actor.1.to_owned(),
            tenant_id: tenant_id.to_owned(),
            action: "job_cancelled".into(),
            target: format!("job:{job_id}"),
            outcome: "ok".into(),
            detail: json!({"was": "queued", "why": why}),
            secret_detail: None,
        };
        state
            .store
            .commit(&entry, |tx| {
                crate::jobs::records::upsert_job(tx, state.store.audit_log(), &job)
            })?
            .into_inner();
        state.scheduler.changed(job_id);
        stopped.push(job_id.clone());
    }
    let running = state
        .store
        .read(|c| crate::jobs::records::jobs(c, state.store.audit_log(), tenant_id))?;
    stopped.extend(
        running
            .into_iter()
            .filter(|j| unfinished(j) && !removed.contains(&j.id))
            .map(|j| j.id),
    );
    Ok(stopped)
}

/// Serialises [`close_ended_authorizations`]: the sweep and a revocation may run it at once.
static CLOSING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Closes the work of every tenant whose authorization was revoked or expired without
/// renewal, with none other in force (R27): its queued and running jobs stopped and its kept
/// workers ended at once, the admins and the tenant told once; and once the configured
/// notice period has passed, the admins told that the tenant is due for termination. Each
/// round is audited (`authorization_ended`, the system as actor). Returns the tenants whose
/// work it closed now.
///
/// # Errors
/// On store failure.
pub(crate) fn close_ended_authorizations(state: &Context, now_ms: i64) -> Result<Vec<String>> {
    let _one_at_a_time = CLOSING.lock().unwrap_or_else(|e| e.into_inner());
    let notice_days = state.lifecycle.termination_notice_days;
    let ended = state
        .store
        .read(|c| crate::governance::records::ended_authorizations(c, now_ms))?;
    let mut closed = Vec::new();
    for e in ended {
        let (was_closed, was_due) = state.store.read(|c| {
            Ok((
                notify::exists(c, &e.closed_key())?,
                notify::exists(c, &e.due_key())?,
            ))
        })?;
        if was_closed && (was_due || !e.due(notice_days, now_ms)) {
            continue;
        }
        let tenant_id = e.authorization.tenant_id.clone();
        // Work first, then the notice that marks it closed: a failure in between is retried.
        let stopped = if was_closed {
            Vec::new()
        } else {
            let why = format!("authorization {} {}", e.authorization.id, e.what());
            stop_tenant_work(state, ("system", "system"), &tenant_id, &why)?
        };
        state
            .store
            .commit_with(|tx| {
                let (told_closed, told_due) =
                    crate::governance::records::notify_ended(tx, &e, notice_days, now_ms)?;
                let mut entry = crate::audit::trail::system_entry(
                    "authorization_ended",
                    &format!("authorization:{} tenant:{tenant_id}", e.authorization.id),
                    json!({"how": e.how, "ended_at_ms": e.ended_at_ms, "jobs_stopped": stopped,
                       "closed_notice": told_closed, "termination_due_notice": told_due,
                       "due_at_ms": e.due_at_ms(notice_days),
                       "successor_pending": e.successor_pending}),
                );
                entry.tenant_id = tenant_id.clone();
                Ok(((), entry))
            })?
            .into_inner();
        if !was_closed {
            closed.push(tenant_id);
        }
    }
    Ok(closed)
}

/// Tells admins about suspended tenants past their fix-by deadline, and closes the work of
/// tenants whose authorization ended ([`close_ended_authorizations`]), every `every`, for the
/// life of the server (R26, R27). Each notification is audited with the system as its actor.
pub async fn sweep_overdue_forever(state: std::sync::Arc<super::Context>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let now = crate::now_ms();
        let sweeping = std::sync::Arc::clone(&state);
        match tokio::task::spawn_blocking(move || close_ended_authorizations(&sweeping, now)).await
        {
            Ok(Ok(closed)) if !closed.is_empty() => {
                tracing::info!(?closed, "work closed: authorization ended");
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "closing ended authorizations failed"),
            Err(e) => tracing::error!(error = %e, "closing ended authorizations panicked"),
        }
        let entry = AuditEntry {
            principal_id: "system".into(),
            role: Role::PlatformAdmin.as_str().into(),
            action: "tenant_overdue_sweep".into(),
            outcome: "ok".into(),
            ..AuditEntry::default()
        };
        // Closing ended work runs on every server (each cancels the jobs it runs); telling
        // overdue tenants, on one.
        let presence = state.presence.clone();
        let on_duty =
            tokio::task::spawn_blocking(move || presence.on_duty("overdue-sweep", every)).await;
        if !matches!(on_duty, Ok(Ok(true))) {
            continue;
        }
        let due = state.store.read(|c| {
            for h in lifecycle::holds(c)? {
                if h.overdue(now) && !notify::exists(c, &lifecycle::overdue_dedup_key(&h))? {
                    return Ok(true);
                }
            }
            Ok(false)
        });
        // A sweep with nothing to do leaves no other trace: this line lets tests wait for one.
        tracing::debug!(due = matches!(due, Ok(true)), "overdue sweep ran");
        if !matches!(due, Ok(true)) {
            continue;
        }
        let result = state.store.commit_with(|tx| {
            let told = lifecycle::notify_overdue(tx, now)?;
            let mut entry = entry.clone();
            entry.detail = json!({"notified": told});
            Ok((told, entry))
        });
        if let Err(e) = result {
            tracing::error!(error = %e, "the overdue sweep failed");
        }
    }
}
