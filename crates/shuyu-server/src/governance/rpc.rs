//! The governance service: authorizations (R25) and their emergency plans (R32), staff
//! qualification (R8, R9) and certificate revocation. Admins change; auditors read;
//! engineers read their own tenant's authorizations and plans (others: NOT_FOUND). The
//! wire ⇄ domain mapping of these types is by hand at the end of this file.

use serde_json::json;
use shuyu_policy::{Action, Role, ScenarioCategory, format_date, qualification_gap};
use shuyu_proto::v1 as pb;
use shuyu_proto::v1::governance_service_server::GovernanceService;
use tonic::{Request, Response, Status};
use zeroize::Zeroizing;

use crate::convert;
use crate::error::{Refusal, Result, ServerError};
use crate::governance::records::{
    self as gov, Authorization, AuthorizationState, CertificateRecord, EmergencyPlan,
    QualificationRecord,
};
use crate::service::{require_id, require_text};
use crate::state::{Caller, Done};
use crate::store::{Audited, Tx};

/// The handler of `GovernanceService`: the area's context it serves from.
#[derive(Debug, Clone)]
pub(crate) struct GovernanceRpc {
    pub(crate) state: std::sync::Arc<super::Context>,
}

impl GovernanceRpc {
    /// The handler over its area's context.
    pub(crate) fn new(state: std::sync::Arc<super::Context>) -> GovernanceRpc {
        GovernanceRpc { state }
    }
}

const MAX_SCOPE_DATASETS: usize = 200;
const MAX_PLAN_ACTIONS: usize = 50;

impl GovernanceRpc {
    /// An authorization the caller may see: engineers only their tenant's.
    fn visible_authorization(&self, caller: &Caller, id: &str) -> Result<Authorization> {
        require_id(id, "authorization_id")?;
        let own_tenant = match caller.principal.role {
            Role::Engineer => Some(caller.tenant()?.to_owned()),
            _ => None,
        };
        self.state
            .store
            .read(|c| gov::authorization(c, id))?
            .filter(|a| own_tenant.as_ref().is_none_or(|t| *t == a.tenant_id))
            .ok_or_else(|| ServerError::NotFound(format!("authorization {id}")))
    }

    fn check_term(&self, from_ms: i64, until_ms: i64) -> Result<()> {
        shuyu_policy::check_term(
            from_ms,
            until_ms,
            self.state.governance.authorization_max_years,
        )
        .map_err(|e| ServerError::InvalidArgument(format!("authorization term: {e}")))
    }

    /// Checks that every dataset exists; returns them deduplicated, in order.
    fn scope_datasets(&self, ids: &[String]) -> Result<Vec<String>> {
        if ids.len() > MAX_SCOPE_DATASETS {
            return Err(ServerError::InvalidArgument(format!(
                "at most {MAX_SCOPE_DATASETS} datasets per authorization"
            )));
        }
        let mut out: Vec<String> = Vec::with_capacity(ids.len());
        for id in ids {
            require_id(id, "dataset_id")?;
            self.state
                .store
                .read(|c| crate::catalog::records::dataset(c, id))?
                .ok_or_else(|| ServerError::NotFound(format!("dataset {id}")))?;
            if !out.contains(id) {
                out.push(id.clone());
            }
        }
        Ok(out)
    }

    /// Announces an open renewal window right away (a short term must not wait for the
    /// next sweep). Failure is logged: the periodic sweep retries.
    fn sweep_now(&self) {
        if let Err(e) = gov::sweep_renewals(&self.state.store, crate::now_ms()) {
            tracing::warn!(error = %e, "renewal sweep after a change failed");
        }
    }

    fn create_authorization(
        &self,
        caller: &Caller,
        req: pb::CreateAuthorizationRequest,
    ) -> Result<Audited<Authorization>> {
        require_id(&req.tenant_id, "tenant_id")?;
        require_text(&req.pricing_terms, "the pricing terms", 4000, true)?;
        let categories = scope_categories(&req.categories)?;
        if categories.is_empty() {
            return Err(ServerError::InvalidArgument(
                "name at least one scenario category the authorization covers".into(),
            ));
        }
        let now = crate::now_ms();
        let from = if req.valid_from_ms == 0 {
            now
        } else {
            req.valid_from_ms
        };
        if req.valid_until_ms <= now {
            return Err(ServerError::InvalidArgument(
                "the authorization must end in the future".into(),
            ));
        }
        self.check_term(from, req.valid_until_ms)?;
        self.state
            .store
            .read(|c| crate::admin::records::tenant(c, &req.tenant_id))?
            .ok_or_else(|| ServerError::NotFound(format!("tenant {}", req.tenant_id)))?;
        let datasets = self.scope_datasets(&req.dataset_ids)?;
        let authorization = Authorization {
            id: crate::new_id("au"),
            tenant_id: req.tenant_id.clone(),
            dataset_ids: datasets,
            categories,
            valid_from_ms: from,
            valid_until_ms: req.valid_until_ms,
            pricing_terms: req.pricing_terms.trim().to_owned(),
            created_by: caller.principal.id.clone(),
            created_at_ms: now,
            revoked_at_ms: 0,
            revoked_reason: String::new(),
            renewed_from: String::new(),
            renewed_by: String::new(),
        };
        let done = self.state.store.commit_with(|tx| {
            // One open agreement per tenant: a new term is a renewal.
            if let Some(open) = gov::authorizations(tx, Some(&req.tenant_id))?
                .into_iter()
                .find(|a| a.revoked_at_ms == 0 && a.valid_until_ms > now)
            {
                return Err(Refusal::AuthorizationOpen(format!(
                    "tenant {} already has authorization {} until {}: renew it (from {}) or \
                     revoke it",
                    req.tenant_id,
                    open.id,
                    format_date(open.valid_until_ms),
                    format_date(open.renewal_opens_at_ms())
                ))
                .into());
            }
            gov::insert_authorization(tx, &authorization)?;
            Ok((
                authorization.clone(),
                caller.entry(
                    format!(
                        "authorization:{} tenant:{}",
                        authorization.id, req.tenant_id
                    ),
                    "ok",
                    authorization_detail(&authorization),
                ),
            ))
        })?;
        self.sweep_now();
        Ok(done)
    }

    fn renew_authorization(
        &self,
        caller: &Caller,
        req: pb::RenewAuthorizationRequest,
    ) -> Result<Audited<Authorization>> {
        require_id(&req.authorization_id, "authorization_id")?;
        require_text(&req.pricing_terms, "the pricing terms", 4000, false)?;
        let now = crate::now_ms();
        let renewed = self.state.store.commit_with(|tx| {
            let old = gov::authorization(tx, &req.authorization_id)?.ok_or_else(|| {
                ServerError::NotFound(format!("authorization {}", req.authorization_id))
            })?;
            if old.revoked_at_ms != 0 {
                return Err(Refusal::AuthorizationEnded(format!(
                    "authorization {} was revoked on {}: record a new one instead",
                    old.id,
                    format_date(old.revoked_at_ms)
                ))
                .into());
            }
            if !old.renewed_by.is_empty() {
                return Err(Refusal::AlreadyRenewed(format!(
                    "authorization {} is already renewed by {}",
                    old.id, old.renewed_by
                ))
                .into());
            }
            let opens = old.renewal_opens_at_ms();
            if now < opens {
                return Err(Refusal::RenewalNotOpen(format!(
                    "renewal of authorization {} opens on {} (six months before it ends on {})",
                    old.id,
                    format_date(opens),
                    format_date(old.valid_until_ms)
                ))
                .into());
            }
            // The successor takes over when the predecessor ends (now, if it already has).
            let from = old.valid_until_ms.max(now);
            if req.valid_until_ms <= from {
                return Err(ServerError::InvalidArgument(format!(
                    "the renewed term must end after it starts ({})",
                    format_date(from)
                )));
            }
            self.check_term(from, req.valid_until_ms)?;
            let new = Authorization {
                id: crate::new_id("au"),
                tenant_id: old.tenant_id.clone(),
                dataset_ids: old.dataset_ids.clone(),
                categories: old.categories.clone(),
                valid_from_ms: from,
                valid_until_ms: req.valid_until_ms,
                pricing_terms: if req.pricing_terms.trim().is_empty() {
                    old.pricing_terms.clone()
                } else {
                    req.pricing_terms.trim().to_owned()
                },
                created_by: caller.principal.id.clone(),
                created_at_ms: now,
                revoked_at_ms: 0,
                revoked_reason: String::new(),
                renewed_from: old.id.clone(),
                renewed_by: String::new(),
            };
            gov::insert_authorization(tx, &new)?;
            gov::set_renewed_by(tx, &old.id, &new.id)?;
            // The plan carries over to the renewed term (the admin updates it as needed).
            let plan_copied = match gov::emergency_plan(tx, &old.id)? {
                Some(plan) => {
                    gov::upsert_emergency_plan(
                        tx,
                        &EmergencyPlan {
                            authorization_id: new.id.clone(),
                            created_at_ms: now,
                            updated_at_ms: now,
                            updated_by: caller.principal.id.clone(),
                            last_drill_at_ms: 0,
                            ..plan
                        },
                    )?;
                    true
                }
                None => false,
            };
            let mut detail = authorization_detail(&new);
            detail["renewed_from"] = json!(old.id);
            detail["emergency_plan_copied"] = json!(plan_copied);
            let entry = caller.entry(
                format!("authorization:{} tenant:{}", new.id, new.tenant_id),
                "ok",
                detail,
            );
            Ok((new, entry))
        })?;
        self.sweep_now();
        Ok(renewed)
    }

    fn revoke_authorization(
        &self,
        caller: &Caller,
        req: pb::RevokeAuthorizationRequest,
    ) -> Result<Audited<Authorization>> {
        require_id(&req.authorization_id, "authorization_id")?;
        require_text(&req.reason, "the reason", 2000, true)?;
        let now = crate::now_ms();
        self.state.store.commit_with(|tx| {
            let mut a = gov::authorization(tx, &req.authorization_id)?.ok_or_else(|| {
                ServerError::NotFound(format!("authorization {}", req.authorization_id))
            })?;
            if a.revoked_at_ms != 0 {
                return Err(Refusal::AuthorizationEnded(format!(
                    "authorization {} was already revoked on {}",
                    a.id,
                    format_date(a.revoked_at_ms)
                ))
                .into());
            }
            gov::revoke_authorization(tx, &a.id, now, req.reason.trim())?;
            a.revoked_at_ms = now;
            a.revoked_reason = req.reason.trim().to_owned();
            let entry = caller.entry(
                format!("authorization:{} tenant:{}", a.id, a.tenant_id),
                "ok",
                json!({"reason": a.revoked_reason}),
            );
            Ok((a, entry))
        })
        .inspect(|_| {
            // R27: the tenant's work closes now, not at the next sweep (which retries if
            // this fails).
            if let Err(e) =
                crate::lifecycle::rpc::close_ended_authorizations(&self.state.lifecycle, crate::now_ms())
            {
                tracing::warn!(error = %e, "closing the work of a revoked authorization failed");
            }
        })
    }

    fn amend_scope(
        &self,
        caller: &Caller,
        req: pb::AmendAuthorizationScopeRequest,
    ) -> Result<Audited<Authorization>> {
        require_id(&req.authorization_id, "authorization_id")?;
        let add_datasets = self.scope_datasets(&req.add_dataset_ids)?;
        let add_categories = scope_categories(&req.add_categories)?;
        if add_datasets.is_empty() && add_categories.is_empty() {
            return Err(ServerError::InvalidArgument(
                "name datasets or scenario categories to add".into(),
            ));
        }
        let now = crate::now_ms();
        self.state.store.commit_with(|tx| {
            let mut a = gov::authorization(tx, &req.authorization_id)?.ok_or_else(|| {
                ServerError::NotFound(format!("authorization {}", req.authorization_id))
            })?;
            match a.state(now) {
                AuthorizationState::Active | AuthorizationState::Pending => {}
                other => {
                    return Err(Refusal::AuthorizationEnded(format!(
                        "authorization {} is {}: its scope can no longer change",
                        a.id,
                        other.as_str()
                    ))
                    .into());
                }
            }
            for d in &add_datasets {
                if !a.dataset_ids.contains(d) {
                    a.dataset_ids.push(d.clone());
                }
            }
            for c in &add_categories {
                if !a.categories.contains(c) {
                    a.categories.push(*c);
                }
            }
            if a.dataset_ids.len() > MAX_SCOPE_DATASETS {
                return Err(ServerError::InvalidArgument(format!(
                    "at most {MAX_SCOPE_DATASETS} datasets per authorization"
                )));
            }
            gov::set_scope(tx, &a.id, &a.dataset_ids, &a.categories)?;
            let entry = caller.entry(
                format!("authorization:{} tenant:{}", a.id, a.tenant_id),
                "ok",
                json!({"added_datasets": req.add_dataset_ids,
                       "dataset_ids": a.dataset_ids,
                       "categories": a.categories.iter().map(|c| c.as_str()).collect::<Vec<_>>()}),
            );
            Ok((a, entry))
        })
    }

    fn set_plan(
        &self,
        caller: &Caller,
        req: pb::SetEmergencyPlanRequest,
    ) -> Result<Audited<EmergencyPlan>> {
        require_id(&req.authorization_id, "authorization_id")?;
        require_text(&req.summary, "the plan summary", 4000, true)?;
        require_text(&req.contact, "the contact", 200, true)?;
        if req.actions.is_empty() || req.actions.len() > MAX_PLAN_ACTIONS {
            return Err(ServerError::InvalidArgument(format!(
                "a plan prescribes 1 to {MAX_PLAN_ACTIONS} actions"
            )));
        }
        for action in &req.actions {
            require_text(action, "an action", 1000, true)?;
        }
        let now = crate::now_ms();
        self.state.store.commit_with(|tx| {
            let a = gov::authorization(tx, &req.authorization_id)?.ok_or_else(|| {
                ServerError::NotFound(format!("authorization {}", req.authorization_id))
            })?;
            if matches!(
                a.state(now),
                AuthorizationState::Revoked
                    | AuthorizationState::Expired
                    | AuthorizationState::Superseded
            ) {
                return Err(Refusal::AuthorizationEnded(format!(
                    "authorization {} is {}: set the plan of the one in force",
                    a.id,
                    a.state(now).as_str()
                ))
                .into());
            }
            let existing = gov::emergency_plan(tx, &a.id)?;
            let plan = EmergencyPlan {
                authorization_id: a.id.clone(),
                summary: req.summary.trim().to_owned(),
                contact: req.contact.trim().to_owned(),
                actions: req.actions.iter().map(|s| s.trim().to_owned()).collect(),
                created_at_ms: existing.as_ref().map_or(now, |p| p.created_at_ms),
                updated_at_ms: now,
                updated_by: caller.principal.id.clone(),
                last_drill_at_ms: existing.as_ref().map_or(0, |p| p.last_drill_at_ms),
            };
            gov::upsert_emergency_plan(tx, &plan)?;
            let entry = caller.entry(
                format!("authorization:{} tenant:{}", a.id, a.tenant_id),
                "ok",
                json!({"n_actions": plan.actions.len(), "replaced": existing.is_some()}),
            );
            Ok((plan, entry))
        })
    }

    fn qualify(
        &self,
        caller: &Caller,
        req: pb::QualifyPrincipalRequest,
    ) -> Result<Audited<Qualified>> {
        require_id(&req.principal_id, "principal_id")?;
        let id_number = if req.id_number.trim().is_empty() {
            None
        } else {
            Some(Zeroizing::new(
                shuyu_policy::normalize_id_number(&req.id_number)
                    .map_err(|e| ServerError::InvalidArgument(e.to_owned()))?,
            ))
        };
        let span = |from: i64, until: i64, what: &str| -> Result<Option<(i64, i64)>> {
            match (from, until) {
                (0, 0) => Ok(None),
                (f, u) if f > 0 && u > f => Ok(Some((f, u))),
                _ => Err(ServerError::InvalidArgument(format!(
                    "the {what} needs both dates, the end after the start"
                ))),
            }
        };
        let training = span(
            req.training_passed_ms,
            req.training_valid_until_ms,
            "training",
        )?;
        let nda = span(
            req.nda_signed_ms,
            req.nda_valid_until_ms,
            "confidentiality agreement (NDA)",
        )?;
        if id_number.is_none() && training.is_none() && nda.is_none() {
            return Err(ServerError::InvalidArgument(
                "record an ID number, a training or an NDA".into(),
            ));
        }
        let id_hash = id_number
            .as_ref()
            .map(|n| crate::keys::id_number_hash(self.state.keys.master(), n));
        let now = crate::now_ms();
        self.state.store.commit_with(|tx| {
            let principal = crate::admin::records::principal(tx, &req.principal_id)?
                .ok_or_else(|| ServerError::NotFound(format!("principal {}", req.principal_id)))?;
            let mut q = gov::qualification(tx, &principal.id)?.unwrap_or(QualificationRecord {
                principal_id: principal.id.clone(),
                ..QualificationRecord::default()
            });
            if let (Some(hash), Some(number)) = (&id_hash, &id_number) {
                if let Some(other) = gov::principal_by_id_hash(tx, hash)?
                    && other != principal.id
                {
                    return Err(ServerError::AlreadyExists(format!(
                        "this ID number is already registered to principal {other}"
                    )));
                }
                q.id_hash = Some(hash.clone());
                q.id_masked = shuyu_policy::registry_mask(number);
                q.registered_at_ms = now;
            }
            if let Some((from, until)) = training {
                q.training_passed_ms = from;
                q.training_until_ms = until;
            }
            if let Some((from, until)) = nda {
                q.nda_signed_ms = from;
                q.nda_until_ms = until;
            }
            q.updated_at_ms = now;
            q.updated_by = caller.principal.id.clone();
            gov::upsert_qualification(tx, &q)?;
            let entry = caller.entry(
                format!("principal:{}", principal.id),
                "ok",
                json!({
                    "registered": id_hash.is_some(),
                    "id_masked": id_hash.as_ref().map(|_| q.id_masked.clone()),
                    "training": training,
                    "nda": nda,
                }),
            );
            let qualified = self.qualified(tx, principal, Some(q), now)?;
            Ok((qualified, entry))
        })
    }

    /// A principal's qualification view.
    fn qualified(
        &self,
        tx: &Tx<'_>,
        principal: crate::admin::records::Principal,
        record: Option<QualificationRecord>,
        now: i64,
    ) -> Result<Qualified> {
        let record = match record {
            Some(r) => Some(r),
            None => gov::qualification(tx, &principal.id)?,
        };
        let disabled = gov::disabled(tx, &principal.id)?;
        let certificates = gov::certificates(tx, &principal.id)?;
        Ok(Qualified {
            principal,
            record,
            disabled,
            certificates,
            now,
        })
    }

    fn revoke_certs(
        &self,
        caller: &Caller,
        req: pb::RevokeCertificatesRequest,
    ) -> Result<Audited<pb::RevokeCertificatesResponse>> {
        require_id(&req.principal_id, "principal_id")?;
        require_text(&req.reason, "the reason", 2000, true)?;
        let fingerprint = if req.fingerprint.is_empty() {
            None
        } else {
            if req.fingerprint.len() != 64
                || !req.fingerprint.chars().all(|c| c.is_ascii_hexdigit())
            {
                return Err(ServerError::InvalidArgument(
                    "the fingerprint is 64 hex characters (SHA-256 of the certificate)".into(),
                ));
            }
            Some(req.fingerprint.to_ascii_lowercase())
        };
        let now = crate::now_ms();
        self.state.store.commit_with(|tx| {
            let principal = crate::admin::records::principal(tx, &req.principal_id)?
                .ok_or_else(|| ServerError::NotFound(format!("principal {}", req.principal_id)))?;
            if let Some(f) = &fingerprint
                && !gov::certificates(tx, &principal.id)?
                    .iter()
                    .any(|c| &c.fingerprint == f)
            {
                return Err(ServerError::NotFound(format!(
                    "certificate {f} of principal {}",
                    principal.id
                )));
            }
            let revoked = gov::revoke_certificates(
                tx,
                &principal.id,
                fingerprint.as_deref(),
                now,
                req.reason.trim(),
                &caller.principal.id,
            )?;
            if req.disable_principal {
                gov::disable_principal(
                    tx,
                    &principal.id,
                    now,
                    req.reason.trim(),
                    &caller.principal.id,
                )?;
            } else if revoked.is_empty() {
                return Err(Refusal::NoCertificate(format!(
                    "principal {} has no unrevoked certificate{}",
                    principal.id,
                    fingerprint
                        .as_ref()
                        .map_or(String::new(), |f| format!(" {f}"))
                ))
                .into());
            }
            let entry = caller.entry(
                format!("principal:{}", principal.id),
                "ok",
                json!({"revoked": revoked, "disabled": req.disable_principal,
                       "reason": req.reason.trim()}),
            );
            Ok((
                pb::RevokeCertificatesResponse {
                    revoked_fingerprints: revoked,
                    principal_disabled: req.disable_principal,
                },
                entry,
            ))
        })
    }
}

/// A principal's qualification with what the view shows.
struct Qualified {
    principal: crate::admin::records::Principal,
    record: Option<QualificationRecord>,
    disabled: Option<(i64, String)>,
    certificates: Vec<CertificateRecord>,
    now: i64,
}

fn scope_categories(values: &[i32]) -> Result<Vec<ScenarioCategory>> {
    let mut out = Vec::new();
    for v in values {
        if *v == pb::ScenarioCategory::Unspecified as i32 {
            return Err(ServerError::InvalidArgument(
                "a scope's category must be public_governance, public_welfare or commercial".into(),
            ));
        }
        let c = convert::category_from_pb(*v)?;
        if !out.contains(&c) {
            out.push(c);
        }
    }
    Ok(out)
}

fn authorization_detail(a: &Authorization) -> serde_json::Value {
    json!({
        "tenant_id": a.tenant_id,
        "dataset_ids": a.dataset_ids,
        "categories": a.categories.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
        "valid_from_ms": a.valid_from_ms,
        "valid_until_ms": a.valid_until_ms,
    })
}

#[tonic::async_trait]
impl GovernanceService for GovernanceRpc {
    async fn create_authorization(
        &self,
        request: Request<pb::CreateAuthorizationRequest>,
    ) -> Result<Response<pb::AuthorizationResponse>, Status> {
        let target = |req: &pb::CreateAuthorizationRequest| format!("tenant:{}", req.tenant_id);
        let response = self
            .state
            .calls
            .call(
                request,
                Action::ManageAuthorization,
                target,
                |caller, req| async move {
                    let a = self.create_authorization(&caller, req)?;
                    Ok(Done::Audited(a.and_then(|a| self.authorization_view(&a))?))
                },
            )
            .await?;
        Ok(Response::new(response))
    }

    async fn list_authorizations(
        &self,
        request: Request<pb::ListAuthorizationsRequest>,
    ) -> Result<Response<pb::ListAuthorizationsResponse>, Status> {
        let no_target = |_: &pb::ListAuthorizationsRequest| String::new();
        let response = self
            .state
            .calls
            .call(
                request,
                Action::ViewAuthorization,
                no_target,
                |caller, req| async move {
                    let tenant = match caller.principal.role {
                        Role::Engineer => Some(caller.tenant()?.to_owned()),
                        _ if req.tenant_id.is_empty() => None,
                        _ => {
                            require_id(&req.tenant_id, "tenant_id")?;
                            Some(req.tenant_id.clone())
                        }
                    };
                    let now = crate::now_ms();
                    let list = self.state.store.read(|c| {
                        gov::authorizations(c, tenant.as_deref())?
                            .iter()
                            .map(|a| {
                                Ok(authorization_to_pb(
                                    a,
                                    now,
                                    gov::emergency_plan(c, &a.id)?.is_some(),
                                ))
                            })
                            .collect::<Result<Vec<_>>>()
                    })?;
                    let n = list.len();
                    Ok(Done::Record(
                        pb::ListAuthorizationsResponse {
                            authorizations: list,
                        },
                        json!({"tenant_id": tenant, "n": n}),
                    ))
                },
            )
            .await?;
        Ok(Response::new(response))
    }

    async fn get_authorization(
        &self,
        request: Request<pb::GetAuthorizationRequest>,
    ) -> Result<Response<pb::AuthorizationResponse>, Status> {
        let target =
            |req: &pb::GetAuthorizationRequest| format!("authorization:{}", req.authorization_id);
        let response = self
            .state
            .calls
            .call(
                request,
                Action::ViewAuthorization,
                target,
                |caller, req| async move {
                    let a = self.visible_authorization(&caller, &req.authorization_id)?;
                    Ok(Done::Record(self.authorization_view(&a)?, json!({})))
                },
            )
            .await?;
        Ok(Response::new(response))
    }

    async fn revoke_authorization(
        &self,
        request: Request<pb::RevokeAuthorizationRequest>,
    ) -> Result<Response<pb::AuthorizationResponse>, Status> {
        let target = |req: &pb::RevokeAuthorizationRequest| {
            format!("authorization:{}", req.authorization_id)
        };
        let response = self
            .state
            .calls
            .call(
                request,
                Action::ManageAuthorization,
                target,
                |caller, req| async move {
                    let a = self.revoke_authorization(&caller, req)?;
                    Ok(Done::Audited(a.and_then(|a| self.authorization_view(&a))?))
                },
            )
            .await?;
        Ok(Response::new(response))
    }

    async fn renew_authorization(
        &self,
        request: Request<pb::RenewAuthorizationRequest>,
    ) -> Result<Response<pb::AuthorizationResponse>, Status> {
        let target =
            |req: &pb::RenewAuthorizationRequest| format!("authorization:{}", req.authorization_id);
        let response = self
            .state
            .calls
            .call(
                request,
                Action::ManageAuthorization,
                target,
                |caller, req| async move {
                    let a = self.renew_authorization(&caller, req)?;
                    Ok(Done::Audited(a.and_then(|a| self.authorization_view(&a))?))
                },
            )
            .await?;
        Ok(Response::new(response))
    }

    async fn amend_authorization_scope(
        &self,
        request: Request<pb::AmendAuthorizationScopeRequest>,
    ) -> Result<Response<pb::AuthorizationResponse>, Status> {
        let target = |req: &pb::AmendAuthorizationScopeRequest| {
            format!("authorization:{}", req.authorization_id)
        };
        let response = self
            .state
            .calls
            .call(
                request,
                Action::ManageAuthorization,
                target,
                |caller, req| async move {
                    let a = self.amend_scope(&caller, req)?;
                    Ok(Done::Audited(a.and_then(|a| self.authorization_view(&a))?))
                },
            )
            .await?;
        Ok(Response::new(response))
    }

    async fn set_emergency_plan(
        &self,
        request: Request<pb::SetEmergencyPlanRequest>,
    ) -> Result<Response<pb::EmergencyPlanResponse>, Status> {
        let target =
            |req: &pb::SetEmergencyPlanRequest| format!("authorization:{}", req.authorization_id);
        let plan = self
            .state
            .calls
            .call(
                request,
                Action::SetEmergencyPlan,
                target,
                |caller, req| async move { Ok(Done::Audited(self.set_plan(&caller, req)?)) },
            )
            .await?;
        Ok(Response::new(pb::EmergencyPlanResponse {
            plan: Some(plan_to_pb(&plan)),
        }))
    }

    async fn get_emergency_plan(
        &self,
        request: Request<pb::GetEmergencyPlanRequest>,
    ) -> Result<Response<pb::EmergencyPlanResponse>, Status> {
        let target =
            |req: &pb::GetEmergencyPlanRequest| format!("authorization:{}", req.authorization_id);
        let response = self
            .state
            .calls
            .call(
                request,
                Action::ViewEmergencyPlan,
                target,
                |caller, req| async move {
                    let a = self.visible_authorization(&caller, &req.authorization_id)?;
                    let plan = self
                        .state
                        .store
                        .read(|c| gov::emergency_plan(c, &a.id))?
                        .ok_or_else(|| {
                            ServerError::NotFound(format!(
                                "emergency plan of authorization {}",
                                a.id
                            ))
                        })?;
                    Ok(Done::Record(
                        pb::EmergencyPlanResponse {
                            plan: Some(plan_to_pb(&plan)),
                        },
                        json!({}),
                    ))
                },
            )
            .await?;
        Ok(Response::new(response))
    }

    async fn qualify_principal(
        &self,
        request: Request<pb::QualifyPrincipalRequest>,
    ) -> Result<Response<pb::QualificationResponse>, Status> {
        let target = |req: &pb::QualifyPrincipalRequest| format!("principal:{}", req.principal_id);
        let q = self
            .state
            .calls
            .call(
                request,
                Action::QualifyPrincipal,
                target,
                |caller, req| async move { Ok(Done::Audited(self.qualify(&caller, req)?)) },
            )
            .await?;
        Ok(Response::new(pb::QualificationResponse {
            qualification: Some(qualification_to_pb(&q)),
        }))
    }

    async fn get_qualification(
        &self,
        request: Request<pb::GetQualificationRequest>,
    ) -> Result<Response<pb::QualificationResponse>, Status> {
        let target = |req: &pb::GetQualificationRequest| format!("principal:{}", req.principal_id);
        let response = self
            .state
            .calls
            .call(
                request,
                Action::ViewQualification,
                target,
                |_, req| async move {
                    require_id(&req.principal_id, "principal_id")?;
                    let q = self.state.store.read(|c| {
                        let principal = crate::admin::records::principal(c, &req.principal_id)?
                            .ok_or_else(|| {
                                ServerError::NotFound(format!("principal {}", req.principal_id))
                            })?;
                        self.qualified(c, principal, None, crate::now_ms())
                    })?;
                    Ok(Done::Record(
                        pb::QualificationResponse {
                            qualification: Some(qualification_to_pb(&q)),
                        },
                        json!({}),
                    ))
                },
            )
            .await?;
        Ok(Response::new(response))
    }

    async fn revoke_certificates(
        &self,
        request: Request<pb::RevokeCertificatesRequest>,
    ) -> Result<Response<pb::RevokeCertificatesResponse>, Status> {
        let target =
            |req: &pb::RevokeCertificatesRequest| format!("principal:{}", req.principal_id);
        let response = self
            .state
            .calls
            .call(
                request,
                Action::RevokeCertificate,
                target,
                |caller, req| async move { Ok(Done::Audited(self.revoke_certs(&caller, req)?)) },
            )
            .await?;
        Ok(Response::new(response))
    }
}

impl GovernanceRpc {
    /// An authorization on the wire, with whether it has a plan.
    fn authorization_view(&self, a: &Authorization) -> Result<pb::AuthorizationResponse> {
        let has_plan = self
            .state
            .store
            .read(|c| gov::emergency_plan(c, &a.id))?
            .is_some();
        Ok(pb::AuthorizationResponse {
            authorization: Some(authorization_to_pb(a, crate::now_ms(), has_plan)),
        })
    }
}

// ------------------------------------------------------------------ wire mapping

fn authorization_to_pb(a: &Authorization, now_ms: i64, has_plan: bool) -> pb::Authorization {
    let status = match a.state(now_ms) {
        AuthorizationState::Active => pb::AuthorizationStatus::Active,
        AuthorizationState::Pending => pb::AuthorizationStatus::Pending,
        AuthorizationState::Expired => pb::AuthorizationStatus::Expired,
        AuthorizationState::Revoked => pb::AuthorizationStatus::Revoked,
        AuthorizationState::Superseded => pb::AuthorizationStatus::Superseded,
    };
    pb::Authorization {
        id: a.id.clone(),
        tenant_id: a.tenant_id.clone(),
        dataset_ids: a.dataset_ids.clone(),
        categories: a
            .categories
            .iter()
            .map(|c| convert::category_to_pb(*c) as i32)
            .collect(),
        valid_from_ms: a.valid_from_ms,
        valid_until_ms: a.valid_until_ms,
        pricing_terms: a.pricing_terms.clone(),
        status: status as i32,
        created_by: a.created_by.clone(),
        created_at_ms: a.created_at_ms,
        revoked_at_ms: a.revoked_at_ms,
        revoked_reason: a.revoked_reason.clone(),
        renewed_from: a.renewed_from.clone(),
        renewed_by: a.renewed_by.clone(),
        renewal_opens_at_ms: a.renewal_opens_at_ms(),
        has_emergency_plan: has_plan,
    }
}

fn plan_to_pb(p: &EmergencyPlan) -> pb::EmergencyPlan {
    pb::EmergencyPlan {
        authorization_id: p.authorization_id.clone(),
        summary: p.summary.clone(),
        contact: p.contact.clone(),
        actions: p.actions.clone(),
        created_at_ms: p.created_at_ms,
        updated_at_ms: p.updated_at_ms,
        updated_by: p.updated_by.clone(),
        last_drill_at_ms: p.last_drill_at_ms,
    }
}

fn qualification_to_pb(q: &Qualified) -> pb::Qualification {
    let record = q.record.clone().unwrap_or_default();
    let required = shuyu_policy::requires_qualification(q.principal.role);
    let gap = qualification_gap(&record.facts(), q.now);
    let problem = match (&q.disabled, &gap) {
        (Some((at, reason)), _) => format!("disabled on {}: {reason}", format_date(*at)),
        (None, Some(gap)) => gap.to_string(),
        (None, None) => String::new(),
    };
    pb::Qualification {
        principal: Some(convert::principal(&q.principal)),
        id_number_masked: record.id_masked.clone(),
        registered_at_ms: record.registered_at_ms,
        training_passed_ms: record.training_passed_ms,
        training_valid_until_ms: record.training_until_ms,
        nda_signed_ms: record.nda_signed_ms,
        nda_valid_until_ms: record.nda_until_ms,
        required,
        qualified: q.disabled.is_none() && (gap.is_none() || !required),
        problem,
        disabled: q.disabled.is_some(),
        disabled_reason: q.disabled.as_ref().map(|d| d.1.clone()).unwrap_or_default(),
        certificates: q
            .certificates
            .iter()
            .map(|c| pb::CertificateInfo {
                fingerprint: c.fingerprint.clone(),
                issued_at_ms: c.issued_at_ms,
                not_after_ms: c.not_after_ms,
                revoked: c.revoked,
                revoked_at_ms: c.revoked_at_ms,
                revoked_reason: c.revoked_reason.clone(),
            })
            .collect(),
    }
}

/// Runs [`crate::governance::records::sweep_renewals`] at start-up and then every `config.governance.renewal_sweep_secs`.
///
/// # Cancel safety
/// Dropping it between sweeps loses nothing: each sweep commits per authorization.
pub async fn sweep_forever(state: std::sync::Arc<super::Context>) {
    let period = std::time::Duration::from_secs(state.governance.renewal_sweep_secs);
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let state = std::sync::Arc::clone(&state);
        let swept = tokio::task::spawn_blocking(move || {
            if !state.presence.on_duty("renewal-sweep", period)? {
                return Ok(0);
            }
            crate::governance::records::sweep_renewals(&state.store, crate::now_ms())
        })
        .await;
        match swept {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(n, "renewal windows announced"),
            Ok(Err(e)) => tracing::warn!(error = %e, "renewal sweep failed"),
            Err(e) => tracing::warn!(error = %e, "renewal sweep panicked"),
        }
    }
}
