//! Session, admin and audit services: who am I, tenants, principals, certificates, grants,
//! and the auditor's view of the trail.

use serde_json::json;
use shuyu_policy::{Action, Role};
use shuyu_proto::v1 as pb;
use shuyu_proto::v1::admin_service_server::AdminService;
use shuyu_proto::v1::audit_service_server::AuditService;
use shuyu_proto::v1::session_service_server::SessionService;
use tonic::{Request, Response, Status};

use crate::admin::records::{Principal, Tenant};
use crate::audit::trail::AuditLog;
use crate::convert;
use crate::error::{Refusal, ServerError};
use crate::service::{require_id, require_text};
use crate::state::Done;
use crate::tls;

/// The handler of `SessionService`: the area's context it serves from.
#[derive(Debug, Clone)]
pub(crate) struct SessionRpc {
    pub(crate) state: std::sync::Arc<super::Context>,
}

impl SessionRpc {
    /// The handler over its area's context.
    pub(crate) fn new(state: std::sync::Arc<super::Context>) -> SessionRpc {
        SessionRpc { state }
    }
}

/// The handler of `AdminService`: the area's context it serves from.
#[derive(Debug, Clone)]
pub(crate) struct AdminRpc {
    pub(crate) state: std::sync::Arc<super::Context>,
}

impl AdminRpc {
    /// The handler over its area's context.
    pub(crate) fn new(state: std::sync::Arc<super::Context>) -> AdminRpc {
        AdminRpc { state }
    }
}

/// The handler of `AuditService` (the trail read, and checkpoints: R27): the area's context it serves from.
#[derive(Debug, Clone)]
pub(crate) struct AuditRpc {
    pub(crate) state: std::sync::Arc<super::Context>,
}

impl AuditRpc {
    /// The handler over its area's context.
    pub(crate) fn new(state: std::sync::Arc<super::Context>) -> AuditRpc {
        AuditRpc { state }
    }
}

const DAY_MS: i64 = 86_400_000;

#[tonic::async_trait]
impl SessionService for SessionRpc {
    async fn who_am_i(
        &self,
        request: Request<pb::WhoAmIRequest>,
    ) -> Result<Response<pb::WhoAmIResponse>, Status> {
        let no_target = |_: &pb::WhoAmIRequest| String::new();
        let value = self
            .state
            .calls
            .call(request, Action::WhoAmI, no_target, |caller, _| async move {
                let response = pb::WhoAmIResponse {
                    principal: Some(convert::principal(&caller.principal)),
                };
                Ok(Done::Record(response, json!({})))
            })
            .await?;
        Ok(Response::new(value))
    }

    async fn list_notifications(
        &self,
        request: Request<pb::ListNotificationsRequest>,
    ) -> Result<Response<pb::ListNotificationsResponse>, Status> {
        let no_target = |_: &pb::ListNotificationsRequest| String::new();
        let response = self
            .state
            .calls
            .call(
                request,
                Action::ViewNotifications,
                no_target,
                |caller, request| async move {
                    if request.after_id < 0 {
                        return Err(ServerError::InvalidArgument(
                            "after_id must not be negative".into(),
                        ));
                    }
                    let limit = match request.limit {
                        0 => 100,
                        n if n > 1000 => {
                            return Err(ServerError::InvalidArgument(
                                "limit must be at most 1000".into(),
                            ));
                        }
                        n => n,
                    };
                    let list = self.state.store.read(|conn| {
                        crate::notify::list_for(conn, &caller.principal, request.after_id, limit)
                    })?;
                    let count = list.len();
                    let response = pb::ListNotificationsResponse {
                        notifications: list.into_iter().map(convert::notification).collect(),
                    };
                    Ok(Done::Record(response, json!({"count": count})))
                },
            )
            .await?;
        Ok(Response::new(response))
    }
}

#[tonic::async_trait]
impl AdminService for AdminRpc {
    async fn create_tenant(
        &self,
        request: Request<pb::CreateTenantRequest>,
    ) -> Result<Response<pb::CreateTenantResponse>, Status> {
        let no_target = |_: &pb::CreateTenantRequest| String::new();
        let tenant = self
            .state
            .calls
            .call(
                request,
                Action::CreateTenant,
                no_target,
                |caller, req| async move {
                    let name = req.name.trim().to_owned();
                    require_text(&name, "the tenant name", 100, true)?;
                    let id = crate::new_id("t");
                    let tenant = Tenant {
                        kek_id: format!("tenant:{id}"),
                        pseudonym_kek_id: format!("pseudonym:{id}"),
                        id: id.clone(),
                        name: name.clone(),
                        created_at_ms: crate::now_ms(),
                        lab_until_ms: match self.state.lab.default_days {
                            0 => 0,
                            days => crate::now_ms() + i64::from(days) * DAY_MS,
                        },
                    };
                    let keys = &self.state.keys;
                    let committed = self.state.store.commit(
                        &caller.entry(format!("tenant:{id}"), "ok", json!({})),
                        |tx| {
                            keys.create_kek(tx, &tenant.kek_id, &id)?;
                            keys.create_kek(tx, &tenant.pseudonym_kek_id, &id)?;
                            crate::admin::records::insert_tenant(tx, &tenant)
                        },
                    );
                    if committed.is_err() {
                        keys.discard(&tenant.kek_id);
                        keys.discard(&tenant.pseudonym_kek_id);
                    }
                    committed.map(|done| Done::Audited(done.map(|()| tenant)))
                },
            )
            .await?;
        Ok(Response::new(pb::CreateTenantResponse {
            tenant: Some(convert::tenant(&tenant)),
        }))
    }

    async fn list_tenants(
        &self,
        request: Request<pb::ListTenantsRequest>,
    ) -> Result<Response<pb::ListTenantsResponse>, Status> {
        let no_target = |_: &pb::ListTenantsRequest| String::new();
        let response = self
            .state
            .calls
            .call(request, Action::ListTenants, no_target, |_, _| async move {
                let tenants = self.state.store.read(crate::admin::records::tenants)?;
                let n = tenants.len();
                Ok(Done::Record(
                    pb::ListTenantsResponse {
                        tenants: tenants.iter().map(convert::tenant).collect(),
                    },
                    json!({"n": n}),
                ))
            })
            .await?;
        Ok(Response::new(response))
    }

    async fn create_principal(
        &self,
        request: Request<pb::CreatePrincipalRequest>,
    ) -> Result<Response<pb::CreatePrincipalResponse>, Status> {
        let no_target = |_: &pb::CreatePrincipalRequest| String::new();
        let principal = self
            .state
            .calls
            .call(
                request,
                Action::CreatePrincipal,
                no_target,
                |caller, req| async move {
                    require_text(&req.real_name, "the real name", 100, true)?;
                    require_text(&req.organisation, "the organisation", 200, true)?;
                    let role = convert::role_from_pb(req.role)?;
                    let tenant_id = match (role, req.tenant_id.is_empty()) {
                        (Role::Engineer, true) => {
                            return Err(ServerError::InvalidArgument(
                                "an engineer must belong to a tenant".into(),
                            ));
                        }
                        // A reviewer may belong to a tenant: they then never review its exports.
                        (Role::Engineer | Role::Reviewer, false) => {
                            require_id(&req.tenant_id, "tenant_id")?;
                            self.state
                                .store
                                .read(|c| crate::admin::records::tenant(c, &req.tenant_id))?
                                .ok_or_else(|| {
                                    ServerError::NotFound(format!("tenant {}", req.tenant_id))
                                })?;
                            Some(req.tenant_id.clone())
                        }
                        (_, false) => {
                            return Err(ServerError::InvalidArgument(format!(
                                "only engineers and reviewers belong to a tenant, not the {} role",
                                role.as_str()
                            )));
                        }
                        (_, true) => None,
                    };
                    let principal = Principal {
                        id: crate::new_id("p"),
                        real_name: req.real_name.trim().to_owned(),
                        organisation: req.organisation.trim().to_owned(),
                        role,
                        tenant_id,
                        created_at_ms: crate::now_ms(),
                    };
                    let done = self.state.store.commit(
                        &caller.entry(
                            format!("principal:{}", principal.id),
                            "ok",
                            json!({"role": role.as_str(), "tenant_id": principal.tenant_id}),
                        ),
                        |tx| crate::admin::records::insert_principal(tx, &principal),
                    )?;
                    Ok(Done::Audited(done.map(|()| principal)))
                },
            )
            .await?;
        Ok(Response::new(pb::CreatePrincipalResponse {
            principal: Some(convert::principal(&principal)),
        }))
    }

    async fn list_principals(
        &self,
        request: Request<pb::ListPrincipalsRequest>,
    ) -> Result<Response<pb::ListPrincipalsResponse>, Status> {
        let no_target = |_: &pb::ListPrincipalsRequest| String::new();
        let response = self
            .state
            .calls
            .call(
                request,
                Action::ListPrincipals,
                no_target,
                |_, _| async move {
                    let ps = self.state.store.read(crate::admin::records::principals)?;
                    let n = ps.len();
                    Ok(Done::Record(
                        pb::ListPrincipalsResponse {
                            principals: ps.iter().map(convert::principal).collect(),
                        },
                        json!({"n": n}),
                    ))
                },
            )
            .await?;
        Ok(Response::new(response))
    }

    async fn issue_certificate(
        &self,
        request: Request<pb::IssueCertificateRequest>,
    ) -> Result<Response<pb::IssueCertificateResponse>, Status> {
        let target = |req: &pb::IssueCertificateRequest| format!("principal:{}", req.principal_id);
        let issued = self
            .state
            .calls
            .call(
                request,
                Action::IssueCertificate,
                target,
                |caller, req| async move {
                    let target = format!("principal:{}", req.principal_id);
                    require_id(&req.principal_id, "principal_id")?;
                    if req.csr_pem.len() > 16 * 1024 {
                        return Err(ServerError::InvalidArgument("the CSR is too large".into()));
                    }
                    self.state
                        .store
                        .read(|c| crate::admin::records::principal(c, &req.principal_id))?
                        .ok_or_else(|| {
                            ServerError::NotFound(format!("principal {}", req.principal_id))
                        })?;
                    if let Some((at_ms, _)) = self
                        .state
                        .store
                        .read(|c| crate::governance::records::disabled(c, &req.principal_id))?
                    {
                        return Err(Refusal::TargetDisabled(format!(
                            "principal {} was disabled on {}: no certificate can be issued to it",
                            req.principal_id,
                            shuyu_policy::format_date(at_ms)
                        ))
                        .into());
                    }
                    let days = if req.validity_days == 0 {
                        tls::DEFAULT_CLIENT_DAYS
                    } else {
                        req.validity_days
                    };
                    let issued = tls::issue_client_from_csr(
                        &self.state.ca,
                        &req.csr_pem,
                        &req.principal_id,
                        days,
                    )?;
                    let done = self.state.store.commit(
                        &caller.entry(
                            target.clone(),
                            "ok",
                            json!({"fingerprint": issued.fingerprint}),
                        ),
                        |tx| {
                            crate::admin::records::insert_certificate(
                                tx,
                                &issued.fingerprint,
                                &req.principal_id,
                                issued.not_after_ms,
                            )
                        },
                    )?;
                    Ok(Done::Audited(done.map(|()| issued)))
                },
            )
            .await?;
        Ok(Response::new(pb::IssueCertificateResponse {
            certificate_pem: issued.cert_pem,
            ca_certificate_pem: self.state.ca.cert_pem.clone(),
            fingerprint: issued.fingerprint,
        }))
    }

    async fn grant_dataset(
        &self,
        request: Request<pb::GrantDatasetRequest>,
    ) -> Result<Response<pb::GrantDatasetResponse>, Status> {
        let target = |req: &pb::GrantDatasetRequest| {
            format!("dataset:{} tenant:{}", req.dataset_id, req.tenant_id)
        };
        self.state
            .calls
            .call(
                request,
                Action::GrantDataset,
                target,
                |caller, req| async move {
                    let target = format!("dataset:{} tenant:{}", req.dataset_id, req.tenant_id);
                    require_id(&req.dataset_id, "dataset_id")?;
                    require_id(&req.tenant_id, "tenant_id")?;
                    let store = &self.state.store;
                    store
                        .read(|c| crate::catalog::records::dataset(c, &req.dataset_id))?
                        .ok_or_else(|| {
                            ServerError::NotFound(format!("dataset {}", req.dataset_id))
                        })?;
                    store
                        .read(|c| crate::admin::records::tenant(c, &req.tenant_id))?
                        .ok_or_else(|| {
                            ServerError::NotFound(format!("tenant {}", req.tenant_id))
                        })?;
                    // A tenant's imported data is its own: no other tenant may be granted it (R17).
                    if let Some(owner) = store
                        .read(|c| crate::stewardship::records::imported_by(c, &req.dataset_id))?
                        && owner != req.tenant_id
                    {
                        return Err(Refusal::ImportedData(format!(
                            "dataset {} is data imported by another tenant and cannot be granted",
                            req.dataset_id
                        ))
                        .into());
                    }
                    let done =
                        store.commit(&caller.entry(target.clone(), "ok", json!({})), |tx| {
                            crate::catalog::records::insert_grant(
                                tx,
                                &req.dataset_id,
                                &req.tenant_id,
                                &caller.principal.id,
                            )
                        })?;
                    Ok(Done::Audited(done))
                },
            )
            .await?;
        Ok(Response::new(pb::GrantDatasetResponse {}))
    }

    async fn set_dataset_approver(
        &self,
        request: Request<pb::SetDatasetApproverRequest>,
    ) -> Result<Response<pb::SetDatasetApproverResponse>, Status> {
        let target = |req: &pb::SetDatasetApproverRequest| format!("dataset:{}", req.dataset_id);
        let dataset = self
            .state
            .calls
            .call(
                request,
                Action::SetDatasetApprover,
                target,
                |caller, req| async move {
                    let target = format!("dataset:{}", req.dataset_id);
                    require_id(&req.dataset_id, "dataset_id")?;
                    let store = &self.state.store;
                    let mut dataset = store
                        .read(|c| crate::catalog::records::dataset(c, &req.dataset_id))?
                        .ok_or_else(|| {
                            ServerError::NotFound(format!("dataset {}", req.dataset_id))
                        })?;
                    let approver = if req.approver_id.is_empty() {
                        None
                    } else {
                        require_id(&req.approver_id, "approver_id")?;
                        let principal = store
                            .read(|c| crate::admin::records::principal(c, &req.approver_id))?
                            .ok_or_else(|| {
                                ServerError::NotFound(format!("principal {}", req.approver_id))
                            })?;
                        // R12: an admin already gives every scenario's admin approval; as the
                        // extra approver too, one person would fill two approvals.
                        if principal.role != Role::DataSteward {
                            return Err(ServerError::InvalidArgument(format!(
                                "an extra approver must be a steward (the province's), not {}{}",
                                principal.role,
                                if principal.role == Role::PlatformAdmin {
                                    ": an admin already gives every scenario's admin approval"
                                } else {
                                    ""
                                }
                            )));
                        }
                        if principal.id == dataset.steward_id {
                            return Err(ServerError::InvalidArgument(
                        "the dataset's own steward already approves its scenarios; name another \
                         approver"
                            .into(),
                    ));
                        }
                        Some(principal.id)
                    };
                    let done = store.commit(
                &caller.entry(
                    target.clone(),
                    "ok",
                    json!({"extra_approver_id": approver, "was": dataset.extra_approver_id}),
                ),
                |tx| {
                    crate::catalog::records::set_extra_approver(
                        tx,
                        &dataset.id,
                        approver.as_deref(),
                    )
                },
            )?;
                    dataset.extra_approver_id = approver;
                    Ok(Done::Audited(done.map(|()| dataset)))
                },
            )
            .await?;
        Ok(Response::new(pb::SetDatasetApproverResponse {
            dataset: Some(convert::dataset(&dataset)),
        }))
    }

    async fn set_privacy_budget(
        &self,
        request: Request<pb::SetPrivacyBudgetRequest>,
    ) -> Result<Response<pb::SetPrivacyBudgetResponse>, Status> {
        let target = |req: &pb::SetPrivacyBudgetRequest| {
            format!("tenant:{} dataset:{}", req.tenant_id, req.dataset_id)
        };
        let response = self
            .state
            .calls
            .call(
                request,
                Action::SetPrivacyBudget,
                target,
                |caller, req| async move {
                    let target = format!("tenant:{} dataset:{}", req.tenant_id, req.dataset_id);
                    require_id(&req.tenant_id, "tenant_id")?;
                    require_id(&req.dataset_id, "dataset_id")?;
                    if !(req.epsilon_total.is_finite()
                        && (0.0..=100.0).contains(&req.epsilon_total))
                    {
                        return Err(ServerError::InvalidArgument(
                            "epsilon_total must be between 0 and 100".into(),
                        ));
                    }
                    let store = &self.state.store;
                    let dataset = store
                        .read(|c| {
                            if crate::admin::records::tenant(c, &req.tenant_id)?.is_none() {
                                return Err(ServerError::NotFound(format!(
                                    "tenant {}",
                                    req.tenant_id
                                )));
                            }
                            crate::catalog::records::dataset(c, &req.dataset_id)
                        })?
                        .ok_or_else(|| {
                            ServerError::NotFound(format!("dataset {}", req.dataset_id))
                        })?;
                    let budget = store.commit_with(|tx| {
                        let budget = crate::jobs::records::set_privacy_budget(
                            tx,
                            &req.tenant_id,
                            &dataset.source_sha256,
                            req.epsilon_total,
                        )?;
                        let entry = caller.entry(
                            target.clone(),
                            "ok",
                            json!({"epsilon_total": budget.epsilon_total,
                           "epsilon_spent": budget.epsilon_spent,
                           "data_sha256": budget.data_sha256}),
                        );
                        Ok((budget, entry))
                    })?;
                    Ok(Done::Audited(budget.map(|budget| {
                        pb::SetPrivacyBudgetResponse {
                            budget: Some(pb::PrivacyBudget {
                                tenant_id: budget.tenant_id,
                                dataset_id: dataset.id,
                                dataset_name: dataset.name,
                                data_sha256: budget.data_sha256,
                                epsilon_total: budget.epsilon_total,
                                epsilon_spent: budget.epsilon_spent,
                            }),
                        }
                    })))
                },
            )
            .await?;
        Ok(Response::new(response))
    }

    async fn set_lab_access(
        &self,
        request: Request<pb::SetLabAccessRequest>,
    ) -> Result<Response<pb::SetLabAccessResponse>, Status> {
        let target = |req: &pb::SetLabAccessRequest| format!("tenant:{}", req.tenant_id);
        let tenant = self.state.calls.call(request, Action::SetLabAccess, target, |caller, req| async move {
            let target = format!("tenant:{}", req.tenant_id);
            require_id(&req.tenant_id, "tenant_id")?;
            let store = &self.state.store;
            let mut tenant = store
                .read(|c| crate::admin::records::tenant(c, &req.tenant_id))?
                .ok_or_else(|| ServerError::NotFound(format!("tenant {}", req.tenant_id)))?;
            let now = crate::now_ms();
            let max_days = i64::from(crate::config::MAX_LAB_DAYS);
            if req.lab_until_ms != 0
                && (req.lab_until_ms <= now || req.lab_until_ms > now + max_days * DAY_MS)
            {
                return Err(ServerError::InvalidArgument(format!(
                    "lab access must end in the future and at most {max_days} days from now \
                     (R20: six months); 0 ends it now"
                )));
            }
            let done = store.commit(
                &caller.entry(
                    target.clone(),
                    "ok",
                    json!({"lab_until_ms": req.lab_until_ms, "was": tenant.lab_until_ms}),
                ),
                |tx| crate::admin::records::set_lab_until(tx, &tenant.id, req.lab_until_ms),
            )?;
            tenant.lab_until_ms = req.lab_until_ms;
            Ok(Done::Audited(done.map(|()| tenant)))
        }).await?;
        Ok(Response::new(pb::SetLabAccessResponse {
            tenant: Some(convert::tenant(&tenant)),
        }))
    }
}

#[tonic::async_trait]
impl AuditService for AuditRpc {
    async fn list_audit_records(
        &self,
        request: Request<pb::ListAuditRecordsRequest>,
    ) -> Result<Response<pb::ListAuditRecordsResponse>, Status> {
        let target = |_: &pb::ListAuditRecordsRequest| "audit".to_owned();
        let response = self
            .state
            .calls
            .call(request, Action::ReadAudit, target, |_, req| async move {
                let limit = if req.limit == 0 {
                    100
                } else {
                    req.limit.min(1000)
                };
                let records = self
                    .state
                    .store
                    .read(|c| AuditLog::list(c, req.after_seq, limit))?;
                let n = records.len();
                let records = records
                    .into_iter()
                    .map(|r| pb::AuditRecord {
                        seq: r.seq,
                        at_ms: r.at_ms,
                        principal_id: r.principal_id,
                        role: r.role,
                        tenant_id: r.tenant_id,
                        action: r.action,
                        target: r.target,
                        outcome: r.outcome,
                        detail_json: r.detail,
                        prev_hash: r.prev_hash,
                        hash: r.hash,
                    })
                    .collect();
                Ok(Done::Record(
                    pb::ListAuditRecordsResponse { records },
                    json!({"after_seq": req.after_seq, "n": n}),
                ))
            })
            .await?;
        Ok(Response::new(response))
    }

    async fn verify_audit(
        &self,
        request: Request<pb::VerifyAuditRequest>,
    ) -> Result<Response<pb::VerifyAuditResponse>, Status> {
        let target = |_: &pb::VerifyAuditRequest| "audit".to_owned();
        let response = self
            .state
            .calls
            .call(request, Action::ReadAudit, target, |_, _| async move {
                let log = self.state.store.audit_log();
                let report = self.state.store.read(|c| log.verify(c))?;
                let detail = json!({"ok": report.ok, "n_records": report.n_records});
                Ok(Done::Record(
                    pb::VerifyAuditResponse {
                        ok: report.ok,
                        n_records: report.n_records,
                        head_hash: report.head_hash,
                        problem: report.problem.unwrap_or_default(),
                    },
                    detail,
                ))
            })
            .await?;
        Ok(Response::new(response))
    }
}
