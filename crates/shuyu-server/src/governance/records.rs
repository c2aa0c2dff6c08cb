//! Governance as enforced state: tenants' authorization agreements (R25) and their emergency
//! plans (R32), staff qualification (R8, R9: real-name registration, training, NDA),
//! certificate revocation and disabled principals; the gates that refuse work outside them;
//! the renewal sweeper that tells tenants and admins when an authorization's renewal window
//! opens.
//!
//! Tables and queries take a `&Tx` (inside `Store::read`/`commit`); the pure rules
//! (terms, windows, gaps) are in `shuyu_policy::governance`.

use serde_json::json;
use shuyu_meta::{Row, params};
use shuyu_policy::{
    Action, QualificationFacts, ScenarioCategory, allowed_while_unqualified, format_date,
    qualification_gap, renewal_opens_at, requires_qualification,
};

use crate::admin::records::Principal;
use crate::audit::trail::AuditEntry;
use crate::error::{Refusal, Result, ServerError};
use crate::notify::{Audience, NewNotification, notify};
use crate::store::{Store, Tx};

/// Schema of the governance tables.
pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS authorizations (
    id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL REFERENCES tenants(id),
    dataset_ids TEXT NOT NULL, categories TEXT NOT NULL,
    valid_from_ms BIGINT NOT NULL, valid_until_ms BIGINT NOT NULL,
    pricing_terms TEXT NOT NULL, created_by TEXT NOT NULL, created_at_ms BIGINT NOT NULL,
    revoked_at_ms BIGINT NOT NULL DEFAULT 0, revoked_reason TEXT NOT NULL DEFAULT '',
    renewed_from TEXT NOT NULL DEFAULT '', renewed_by TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS authorizations_by_tenant ON authorizations (tenant_id, valid_from_ms);
CREATE TABLE IF NOT EXISTS emergency_plans (
    authorization_id TEXT PRIMARY KEY REFERENCES authorizations(id),
    summary TEXT NOT NULL, contact TEXT NOT NULL, actions TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL, updated_at_ms BIGINT NOT NULL, updated_by TEXT NOT NULL,
    last_drill_at_ms BIGINT NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS qualifications (
    principal_id TEXT PRIMARY KEY REFERENCES principals(id),
    id_hash TEXT, id_masked TEXT NOT NULL DEFAULT '', registered_at_ms BIGINT NOT NULL DEFAULT 0,
    training_passed_ms BIGINT NOT NULL DEFAULT 0, training_until_ms BIGINT NOT NULL DEFAULT 0,
    nda_signed_ms BIGINT NOT NULL DEFAULT 0, nda_until_ms BIGINT NOT NULL DEFAULT 0,
    updated_at_ms BIGINT NOT NULL, updated_by TEXT NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS qualifications_by_id_hash ON qualifications (id_hash)
    WHERE id_hash IS NOT NULL;
CREATE TABLE IF NOT EXISTS disabled_principals (
    principal_id TEXT PRIMARY KEY REFERENCES principals(id), at_ms BIGINT NOT NULL,
    reason TEXT NOT NULL, by TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS certificate_revocations (
    fingerprint TEXT PRIMARY KEY REFERENCES certificates(fingerprint),
    principal_id TEXT NOT NULL, at_ms BIGINT NOT NULL, reason TEXT NOT NULL, by TEXT NOT NULL);
";

// ------------------------------------------------------------------ authorizations

/// A tenant's authorization agreement.
#[derive(Debug, Clone, PartialEq)]
pub struct Authorization {
    pub id: String,
    pub tenant_id: String,
    pub dataset_ids: Vec<String>,
    pub categories: Vec<ScenarioCategory>,
    pub valid_from_ms: i64,
    pub valid_until_ms: i64,
    pub pricing_terms: String,
    pub created_by: String,
    pub created_at_ms: i64,
    /// 0 unless revoked.
    pub revoked_at_ms: i64,
    pub revoked_reason: String,
    /// The authorization this one renews ('' for none).
    pub renewed_from: String,
    /// The authorization that renews this one ('' for none).
    pub renewed_by: String,
}

/// Where an authorization stands at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthorizationState {
    Active,
    Pending,
    Expired,
    Revoked,
    Superseded,
}

impl AuthorizationState {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthorizationState::Active => "active",
            AuthorizationState::Pending => "pending",
            AuthorizationState::Expired => "expired",
            AuthorizationState::Revoked => "revoked",
            AuthorizationState::Superseded => "superseded",
        }
    }
}

impl Authorization {
    /// Its state at `now_ms`.
    pub fn state(&self, now_ms: i64) -> AuthorizationState {
        if self.revoked_at_ms != 0 {
            AuthorizationState::Revoked
        } else if now_ms < self.valid_from_ms {
            AuthorizationState::Pending
        } else if now_ms >= self.valid_until_ms && !self.renewed_by.is_empty() {
            AuthorizationState::Superseded
        } else if now_ms >= self.valid_until_ms {
            AuthorizationState::Expired
        } else {
            AuthorizationState::Active
        }
    }

    /// When its renewal window opens.
    pub fn renewal_opens_at_ms(&self) -> i64 {
        renewal_opens_at(self.valid_until_ms)
    }
}

const AUTHORIZATION_COLUMNS: &str = "id, tenant_id, dataset_ids, categories, valid_from_ms, \
     valid_until_ms, pricing_terms, created_by, created_at_ms, revoked_at_ms, revoked_reason, \
     renewed_from, renewed_by";

fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn authorization_row(r: &Row) -> Result<Authorization> {
    let datasets: String = r.get("dataset_ids")?;
    let categories: String = r.get("categories")?;
    Ok(Authorization {
        id: r.get("id")?,
        tenant_id: r.get("tenant_id")?,
        dataset_ids: split_list(&datasets),
        categories: split_list(&categories)
            .iter()
            .filter_map(|c| c.parse().ok())
            .collect(),
        valid_from_ms: r.get("valid_from_ms")?,
        valid_until_ms: r.get("valid_until_ms")?,
        pricing_terms: r.get("pricing_terms")?,
        created_by: r.get("created_by")?,
        created_at_ms: r.get("created_at_ms")?,
        revoked_at_ms: r.get("revoked_at_ms")?,
        revoked_reason: r.get("revoked_reason")?,
        renewed_from: r.get("renewed_from")?,
        renewed_by: r.get("renewed_by")?,
    })
}

fn categories_text(categories: &[ScenarioCategory]) -> String {
    categories
        .iter()
        .map(|c| c.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

pub fn insert_authorization(tx: &Tx<'_>, a: &Authorization) -> Result<()> {
    tx.execute(
        &format!(
            "INSERT INTO authorizations ({AUTHORIZATION_COLUMNS})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
        ),
        params![
            &a.id,
            &a.tenant_id,
            a.dataset_ids.join(","),
            categories_text(&a.categories),
            a.valid_from_ms,
            a.valid_until_ms,
            &a.pricing_terms,
            &a.created_by,
            a.created_at_ms,
            a.revoked_at_ms,
            &a.revoked_reason,
            &a.renewed_from,
            &a.renewed_by
        ],
    )?;
    Ok(())
}

pub fn authorization(tx: &Tx<'_>, id: &str) -> Result<Option<Authorization>> {
    tx.query_opt(
        &format!("SELECT {AUTHORIZATION_COLUMNS} FROM authorizations WHERE id = ?1"),
        params![id],
    )?
    .as_ref()
    .map(authorization_row)
    .transpose()
}

/// Authorizations, of one tenant or all, oldest first.
pub fn authorizations(tx: &Tx<'_>, tenant_id: Option<&str>) -> Result<Vec<Authorization>> {
    tx.query(
        &format!(
            "SELECT {AUTHORIZATION_COLUMNS} FROM authorizations
             WHERE CAST(?1 AS TEXT) IS NULL OR tenant_id = ?1
             ORDER BY valid_from_ms, created_at_ms, id"
        ),
        params![tenant_id],
    )?
    .iter()
    .map(authorization_row)
    .collect()
}

pub fn revoke_authorization(tx: &Tx<'_>, id: &str, at_ms: i64, reason: &str) -> Result<()> {
    tx.execute(
        "UPDATE authorizations SET revoked_at_ms = ?2, revoked_reason = ?3 WHERE id = ?1",
        params![id, at_ms, reason],
    )?;
    Ok(())
}

pub fn set_renewed_by(tx: &Tx<'_>, id: &str, successor: &str) -> Result<()> {
    tx.execute(
        "UPDATE authorizations SET renewed_by = ?2 WHERE id = ?1",
        params![id, successor],
    )?;
    Ok(())
}

pub fn set_scope(
    tx: &Tx<'_>,
    id: &str,
    dataset_ids: &[String],
    categories: &[ScenarioCategory],
) -> Result<()> {
    tx.execute(
        "UPDATE authorizations SET dataset_ids = ?2, categories = ?3 WHERE id = ?1",
        params![id, dataset_ids.join(","), categories_text(categories)],
    )?;
    Ok(())
}

/// What a piece of work needs of its tenant's authorization.
#[derive(Debug, Clone, Default)]
pub struct Need<'a> {
    /// Datasets the work reads: each must be in the authorization's scope, unless the tenant
    /// imported it itself (R17).
    pub datasets: Vec<&'a str>,
    /// The scenario category it runs under, if any: must be in scope.
    pub category: Option<ScenarioCategory>,
    /// A production job or promotion: the authorization must have an emergency plan.
    pub emergency_plan: bool,
}

/// The tenant's authorization in force at `now_ms` that covers `need`.
///
/// # Errors
/// `FAILED_PRECONDITION` naming what is missing: no authorization, an expired, revoked or
/// not-yet-started one, a dataset or category outside its scope, a missing emergency plan.
pub fn require_authorization(
    tx: &Tx<'_>,
    tenant_id: &str,
    now_ms: i64,
    need: &Need<'_>,
) -> Result<Authorization> {
    let all = authorizations(tx, Some(tenant_id))?;
    let in_force = all
        .iter()
        .filter(|a| a.state(now_ms) == AuthorizationState::Active)
        .max_by_key(|a| a.valid_from_ms);
    let Some(a) = in_force else {
        let latest = all
            .iter()
            .max_by_key(|a| (a.valid_from_ms, a.created_at_ms));
        let why = match latest {
            None => "the tenant has no authorization agreement".to_owned(),
            Some(a) => match a.state(now_ms) {
                AuthorizationState::Revoked => format!(
                    "the tenant's authorization {} was revoked on {}",
                    &a.id,
                    format_date(a.revoked_at_ms)
                ),
                AuthorizationState::Pending => format!(
                    "the tenant's authorization {} starts only on {}",
                    &a.id,
                    format_date(a.valid_from_ms)
                ),
                _ => format!(
                    "the tenant's authorization {} expired on {}",
                    &a.id,
                    format_date(a.valid_until_ms)
                ),
            },
        };
        return Err(Refusal::NoAuthorization(format!(
            "no authorization in force: {why}; nothing runs outside an authorization's term \
             (an admin records or renews it: shuyu authorization create/renew)"
        ))
        .into());
    };
    for dataset in &need.datasets {
        // The tenant's own imported data (R17) is not public data under the agreement: its
        // use was approved with the import.
        let own_import =
            crate::stewardship::records::imported_by(tx, dataset)?.as_deref() == Some(tenant_id);
        if !own_import && !a.dataset_ids.iter().any(|d| d == dataset) {
            return Err(Refusal::OutsideAuthorization(format!(
                "dataset {dataset} is outside the scope of the tenant's authorization {} \
                 (an admin can amend its scope: shuyu authorization add-scope)",
                &a.id
            ))
            .into());
        }
    }
    if let Some(category) = need.category
        && !a.categories.contains(&category)
    {
        return Err(Refusal::OutsideAuthorization(format!(
            "scenario category {category} is outside the scope of the tenant's authorization {}",
            &a.id
        ))
        .into());
    }
    if need.emergency_plan && emergency_plan(tx, &a.id)?.is_none() {
        return Err(Refusal::NoEmergencyPlan(format!(
            "the tenant's authorization {} has no emergency plan: production work needs one \
             (an admin records it: shuyu emergency-plan set)",
            &a.id
        ))
        .into());
    }
    Ok(a.clone())
}

/// Refuses a tenant's work while no authorization of it is in force (R25), whatever its
/// scope: the gate of masked samples, lab jobs, imports and data-quality tickets.
///
/// # Errors
/// `FAILED_PRECONDITION` naming what is missing, as [`require_authorization`].
pub fn require_in_force(store: &Store, tenant_id: &str) -> Result<()> {
    store
        .read(|c| require_authorization(c, tenant_id, crate::now_ms(), &Need::default()))
        .map(drop)
}

// ------------------------------------------------------------------ ended authorizations

const DAY_MS: i64 = 86_400_000;

/// A tenant left without an authorization in force because its latest one was revoked or
/// expired without renewal (R27): its work is closed, and after a notice period it is due
/// for termination.
#[derive(Debug, Clone, PartialEq)]
pub struct EndedAuthorization {
    /// The authorization that ended last.
    pub authorization: Authorization,
    /// When it was revoked or expired.
    pub ended_at_ms: i64,
    /// `revoked` or `expired`.
    pub how: &'static str,
    /// A later authorization of the tenant is recorded but has not started: the tenant is
    /// not due for termination, its work resumes when that one starts.
    pub successor_pending: bool,
}

impl EndedAuthorization {
    /// The dedup key of the notice that the tenant's work was closed (also the mark that it
    /// was closed).
    pub fn closed_key(&self) -> String {
        format!("authorization_ended:{}", self.authorization.id)
    }

    /// The dedup key of the notice that the tenant is due for termination.
    pub fn due_key(&self) -> String {
        format!("termination_due:{}", self.authorization.id)
    }

    /// When the tenant is due for termination, `notice_days` after the end.
    pub fn due_at_ms(&self, notice_days: u32) -> i64 {
        self.ended_at_ms + i64::from(notice_days) * DAY_MS
    }

    /// What happened, for messages: "was revoked" or "expired without renewal".
    pub fn what(&self) -> &'static str {
        if self.how == "revoked" {
            "was revoked"
        } else {
            "expired without renewal"
        }
    }

    /// Whether the tenant is due for termination at `now_ms`.
    pub fn due(&self, notice_days: u32, now_ms: i64) -> bool {
        !self.successor_pending && now_ms >= self.due_at_ms(notice_days)
    }
}

/// Every tenant, not terminated, with an authorization that ended and none in force at
/// `now_ms`.
///
/// # Errors
/// If the store cannot be read.
pub fn ended_authorizations(tx: &Tx<'_>, now_ms: i64) -> Result<Vec<EndedAuthorization>> {
    let mut by_tenant: std::collections::BTreeMap<String, Vec<Authorization>> =
        std::collections::BTreeMap::new();
    for a in authorizations(tx, None)? {
        by_tenant.entry(a.tenant_id.clone()).or_default().push(a);
    }
    let mut ended = Vec::new();
    for (tenant_id, list) in by_tenant {
        let states: Vec<AuthorizationState> = list.iter().map(|a| a.state(now_ms)).collect();
        if states.contains(&AuthorizationState::Active)
            || crate::lifecycle::records::hold(tx, &tenant_id)?.terminated_at_ms > 0
        {
            continue;
        }
        // A renewed term whose renewal was revoked before it started ends with its own term.
        let last = list
            .iter()
            .zip(&states)
            .filter_map(|(a, state)| match state {
                AuthorizationState::Revoked => Some((a.revoked_at_ms, "revoked", a)),
                AuthorizationState::Expired | AuthorizationState::Superseded => {
                    Some((a.valid_until_ms, "expired", a))
                }
                AuthorizationState::Active | AuthorizationState::Pending => None,
            })
            .max_by_key(|(at, _, _)| *at);
        if let Some((ended_at_ms, how, a)) = last {
            ended.push(EndedAuthorization {
                authorization: a.clone(),
                ended_at_ms,
                how,
                successor_pending: states.contains(&AuthorizationState::Pending),
            });
        }
    }
    Ok(ended)
}

/// Tells, once each, the admins and the tenant that `ended` closed the tenant's work, and the
/// admins that the tenant is due for termination once `notice_days` have passed since (not
/// while a later authorization is waiting to start). Returns which of the two notices were
/// written now.
///
/// # Errors
/// If the store fails.
pub fn notify_ended(
    tx: &Tx<'_>,
    ended: &EndedAuthorization,
    notice_days: u32,
    now_ms: i64,
) -> Result<(bool, bool)> {
    let a = &ended.authorization;
    let tenant = &a.tenant_id;
    let when = format_date(ended.ended_at_ms);
    let due_date = format_date(ended.due_at_ms(notice_days));
    let next = if ended.successor_pending {
        "A later authorization of the tenant is recorded: its work resumes when that one \
         starts."
            .to_owned()
    } else {
        format!(
            "Unless a new authorization is recorded, the tenant is due for termination on \
             {due_date} ([lifecycle] termination_notice_days = {notice_days}): shuyu tenant \
             terminate {tenant}."
        )
    };
    let admins_body = format!(
        "Authorization {} of tenant {tenant} {} on {when} and none other is in force: the \
         tenant's queued and running jobs were stopped, and it may start no work (R25, R27). \
         {next}",
        &a.id,
        ended.what()
    );
    let tenant_body = format!(
        "Your authorization {} {} on {when}: your queued and running jobs were stopped, and \
         no job, sample, scenario application, import, ticket or export request is accepted \
         until an authorization is in force again (R25, R27).",
        &a.id,
        ended.what()
    );
    let subject = format!("authorization {} {}: work closed", a.id, ended.how);
    let closed_key = ended.closed_key();
    let tenant_key = format!("{closed_key}:tenant");
    let mut closed = false;
    for (audience, body, key) in [
        (Audience::Admins, &admins_body, &closed_key),
        (Audience::Tenant(tenant.clone()), &tenant_body, &tenant_key),
    ] {
        closed |= notify(
            tx,
            &NewNotification {
                audience,
                tenant_id: tenant,
                kind: "authorization_ended",
                subject: &subject,
                body,
                reference: &a.id,
                dedup_key: Some(key),
            },
            now_ms,
        )?;
    }
    let due = ended.due(notice_days, now_ms)
        && notify(
            tx,
            &NewNotification {
                audience: Audience::Admins,
                tenant_id: tenant,
                kind: "tenant_due_for_termination",
                subject: &format!("tenant {tenant} is due for termination"),
                body: &format!(
                    "its authorization {} {} on {when}, and the notice period of \
                     {notice_days} days passed on {due_date} without a new one (R27): \
                     terminate it with `shuyu tenant terminate {tenant}`",
                    a.id,
                    ended.what()
                ),
                reference: tenant,
                dedup_key: Some(&ended.due_key()),
            },
            now_ms,
        )?;
    Ok((closed, due))
}

// ------------------------------------------------------------------ emergency plans

/// An authorization's emergency plan (R32). `last_drill_at_ms` is recorded by drills.
#[derive(Debug, Clone, PartialEq)]
pub struct EmergencyPlan {
    pub authorization_id: String,
    pub summary: String,
    pub contact: String,
    pub actions: Vec<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub updated_by: String,
    pub last_drill_at_ms: i64,
}

pub fn emergency_plan(tx: &Tx<'_>, authorization_id: &str) -> Result<Option<EmergencyPlan>> {
    let Some(r) = tx.query_opt(
        "SELECT authorization_id, summary, contact, actions, created_at_ms, updated_at_ms,
                updated_by, last_drill_at_ms
         FROM emergency_plans WHERE authorization_id = ?1",
        params![authorization_id],
    )?
    else {
        return Ok(None);
    };
    let actions: String = r.get("actions")?;
    Ok(Some(EmergencyPlan {
        authorization_id: r.get("authorization_id")?,
        summary: r.get("summary")?,
        contact: r.get("contact")?,
        actions: serde_json::from_str(&actions)
            .map_err(|e| ServerError::internal(format!("emergency plan actions: {e}")))?,
        created_at_ms: r.get("created_at_ms")?,
        updated_at_ms: r.get("updated_at_ms")?,
        updated_by: r.get("updated_by")?,
        last_drill_at_ms: r.get("last_drill_at_ms")?,
    }))
}

/// Records a drill of the plan of `authorization_id` (R32); false if it has no plan.
///
/// # Errors
/// On store failure.
pub fn record_drill(tx: &Tx<'_>, authorization_id: &str, at_ms: i64) -> Result<bool> {
    let n = tx.execute(
        "UPDATE emergency_plans SET last_drill_at_ms = ?2 WHERE authorization_id = ?1",
        params![authorization_id, at_ms],
    )?;
    Ok(n == 1)
}

/// Writes `plan` (created or replaced; the creation time and last drill are kept).
pub fn upsert_emergency_plan(tx: &Tx<'_>, plan: &EmergencyPlan) -> Result<()> {
    let actions = serde_json::to_string(&plan.actions).map_err(ServerError::internal)?;
    tx.execute(
        "INSERT INTO emergency_plans (authorization_id, summary, contact, actions, created_at_ms,
                                      updated_at_ms, updated_by, last_drill_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (authorization_id) DO UPDATE SET summary = excluded.summary,
             contact = excluded.contact, actions = excluded.actions,
             updated_at_ms = excluded.updated_at_ms, updated_by = excluded.updated_by",
        params![
            &plan.authorization_id,
            &plan.summary,
            &plan.contact,
            actions,
            plan.created_at_ms,
            plan.updated_at_ms,
            &plan.updated_by,
            plan.last_drill_at_ms
        ],
    )?;
    Ok(())
}

// ------------------------------------------------------------------ qualification

/// A principal's recorded qualification; times are 0 where nothing is recorded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QualificationRecord {
    pub principal_id: String,
    /// Keyed hash of the normalised ID number; never the number.
    pub id_hash: Option<String>,
    pub id_masked: String,
    pub registered_at_ms: i64,
    pub training_passed_ms: i64,
    pub training_until_ms: i64,
    pub nda_signed_ms: i64,
    pub nda_until_ms: i64,
    pub updated_at_ms: i64,
    pub updated_by: String,
}

impl QualificationRecord {
    /// The facts the policy decides on.
    pub fn facts(&self) -> QualificationFacts {
        let span = |from: i64, until: i64| (until != 0).then_some((from, until));
        QualificationFacts {
            registered: self.id_hash.is_some(),
            training: span(self.training_passed_ms, self.training_until_ms),
            nda: span(self.nda_signed_ms, self.nda_until_ms),
        }
    }
}

pub fn qualification(tx: &Tx<'_>, principal_id: &str) -> Result<Option<QualificationRecord>> {
    tx.query_opt(
        "SELECT principal_id, id_hash, id_masked, registered_at_ms, training_passed_ms,
                training_until_ms, nda_signed_ms, nda_until_ms, updated_at_ms, updated_by
         FROM qualifications WHERE principal_id = ?1",
        params![principal_id],
    )?
    .map(|r| {
        Ok(QualificationRecord {
            principal_id: r.get("principal_id")?,
            id_hash: r.get("id_hash")?,
            id_masked: r.get("id_masked")?,
            registered_at_ms: r.get("registered_at_ms")?,
            training_passed_ms: r.get("training_passed_ms")?,
            training_until_ms: r.get("training_until_ms")?,
            nda_signed_ms: r.get("nda_signed_ms")?,
            nda_until_ms: r.get("nda_until_ms")?,
            updated_at_ms: r.get("updated_at_ms")?,
            updated_by: r.get("updated_by")?,
        })
    })
    .transpose()
}

/// The principal whose registration has this ID-number hash.
pub fn principal_by_id_hash(tx: &Tx<'_>, id_hash: &str) -> Result<Option<String>> {
    Ok(tx
        .query_opt(
            "SELECT principal_id FROM qualifications WHERE id_hash = ?1",
            params![id_hash],
        )?
        .map(|r| r.get("principal_id"))
        .transpose()?)
}

pub fn upsert_qualification(tx: &Tx<'_>, q: &QualificationRecord) -> Result<()> {
    tx.execute(
        "INSERT INTO qualifications (principal_id, id_hash, id_masked, registered_at_ms,
             training_passed_ms, training_until_ms, nda_signed_ms, nda_until_ms, updated_at_ms,
             updated_by)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (principal_id) DO UPDATE SET id_hash = excluded.id_hash,
             id_masked = excluded.id_masked, registered_at_ms = excluded.registered_at_ms,
             training_passed_ms = excluded.training_passed_ms,
             training_until_ms = excluded.training_until_ms,
             nda_signed_ms = excluded.nda_signed_ms, nda_until_ms = excluded.nda_until_ms,
             updated_at_ms = excluded.updated_at_ms, updated_by = excluded.updated_by",
        params![
            &q.principal_id,
            q.id_hash.as_deref(),
            &q.id_masked,
            q.registered_at_ms,
            q.training_passed_ms,
            q.training_until_ms,
            q.nda_signed_ms,
            q.nda_until_ms,
            q.updated_at_ms,
            &q.updated_by
        ],
    )?;
    Ok(())
}

/// When and why a principal was disabled.
pub fn disabled(tx: &Tx<'_>, principal_id: &str) -> Result<Option<(i64, String)>> {
    tx.query_opt(
        "SELECT at_ms, reason FROM disabled_principals WHERE principal_id = ?1",
        params![principal_id],
    )?
    .map(|r| Ok((r.get("at_ms")?, r.get("reason")?)))
    .transpose()
}

pub fn disable_principal(
    tx: &Tx<'_>,
    principal_id: &str,
    at_ms: i64,
    reason: &str,
    by: &str,
) -> Result<()> {
    tx.execute(
        "INSERT INTO disabled_principals (principal_id, at_ms, reason, by)
         VALUES (?1, ?2, ?3, ?4) ON CONFLICT (principal_id) DO NOTHING",
        params![principal_id, at_ms, reason, by],
    )?;
    Ok(())
}

/// A certificate as the registry shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct CertificateRecord {
    pub fingerprint: String,
    pub issued_at_ms: i64,
    pub not_after_ms: i64,
    pub revoked: bool,
    pub revoked_at_ms: i64,
    pub revoked_reason: String,
}

pub fn certificates(tx: &Tx<'_>, principal_id: &str) -> Result<Vec<CertificateRecord>> {
    tx.query(
        "SELECT c.fingerprint AS fingerprint, c.issued_at_ms AS issued_at_ms,
                c.not_after_ms AS not_after_ms, c.revoked AS revoked,
                COALESCE(r.at_ms, 0) AS revoked_at_ms, COALESCE(r.reason, '') AS revoked_reason
         FROM certificates c LEFT JOIN certificate_revocations r ON r.fingerprint = c.fingerprint
         WHERE c.principal_id = ?1 ORDER BY c.issued_at_ms, c.fingerprint",
        params![principal_id],
    )?
    .iter()
    .map(|r| {
        Ok(CertificateRecord {
            fingerprint: r.get("fingerprint")?,
            issued_at_ms: r.get("issued_at_ms")?,
            not_after_ms: r.get("not_after_ms")?,
            revoked: r.get("revoked")?,
            revoked_at_ms: r.get("revoked_at_ms")?,
            revoked_reason: r.get("revoked_reason")?,
        })
    })
    .collect()
}

/// Revokes the principal's unrevoked certificates (only `fingerprint` when given) and
/// returns the fingerprints revoked.
pub fn revoke_certificates(
    tx: &Tx<'_>,
    principal_id: &str,
    fingerprint: Option<&str>,
    at_ms: i64,
    reason: &str,
    by: &str,
) -> Result<Vec<String>> {
    let targets: Vec<String> = certificates(tx, principal_id)?
        .into_iter()
        .filter(|c| !c.revoked && fingerprint.is_none_or(|f| f == c.fingerprint))
        .map(|c| c.fingerprint)
        .collect();
    for f in &targets {
        tx.execute(
            "UPDATE certificates SET revoked = TRUE WHERE fingerprint = ?1",
            params![f],
        )?;
        tx.execute(
            "INSERT INTO certificate_revocations (fingerprint, principal_id, at_ms, reason, by)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (fingerprint) DO UPDATE SET principal_id = excluded.principal_id,
                 at_ms = excluded.at_ms, reason = excluded.reason, by = excluded.by",
            params![f, principal_id, at_ms, reason, by],
        )?;
    }
    Ok(targets)
}

/// Why `principal` may not take `action` now, if it may not: disabled, or (for the roles
/// that must be qualified) a missing or lapsed registration, training or NDA.
///
/// # Errors
/// If the store cannot be read.
pub fn refusal(
    tx: &Tx<'_>,
    principal: &Principal,
    action: Action,
    now_ms: i64,
) -> Result<Option<Refusal>> {
    if let Some((at_ms, _)) = disabled(tx, &principal.id)? {
        return Ok(Some(Refusal::PrincipalDisabled(format!(
            "principal {} was disabled on {}",
            principal.id,
            format_date(at_ms)
        ))));
    }
    if !requires_qualification(principal.role) || allowed_while_unqualified(principal.role, action)
    {
        return Ok(None);
    }
    let facts = qualification(tx, &principal.id)?
        .map(|q| q.facts())
        .unwrap_or_default();
    Ok(qualification_gap(&facts, now_ms).map(|gap| {
        Refusal::NotQualified(format!(
            "the {} {} may not act: {gap} (R8, R9: an admin records it with shuyu principal \
             qualify)",
            principal.role.as_str(),
            principal.id
        ))
    }))
}

// ------------------------------------------------------------------ renewal sweeper

/// Tells each tenant whose authorization's renewal window is open, and the admins, once per
/// authorization term (the notification's dedup key names the authorization). Returns how
/// many authorizations were announced.
///
/// # Errors
/// If the store fails.
pub fn sweep_renewals(store: &Store, now_ms: i64) -> Result<usize> {
    let due: Vec<Authorization> = store.read(|c| {
        Ok(authorizations(c, None)?
            .into_iter()
            .filter(|a| {
                a.revoked_at_ms == 0
                    && a.renewed_by.is_empty()
                    && now_ms < a.valid_until_ms
                    && now_ms >= a.renewal_opens_at_ms()
            })
            .collect())
    })?;
    let mut announced = 0;
    for a in due {
        let tenant_key = format!("renewal_window:{}:tenant", a.id);
        let admins_key = format!("renewal_window:{}:admins", a.id);
        if store.read(|c| {
            Ok(crate::notify::exists(c, &tenant_key)? && crate::notify::exists(c, &admins_key)?)
        })? {
            continue;
        }
        let subject = format!("authorization {} can be renewed", a.id);
        let body = format!(
            "The authorization {} of tenant {} ends on {}; its renewal window opened on {} \
             (six months before the end). Renew it before it ends, or every job, promotion, \
             scenario application and export of the tenant stops.",
            &a.id,
            &a.tenant_id,
            format_date(a.valid_until_ms),
            format_date(a.renewal_opens_at_ms())
        );
        store
            .commit_with(|tx| {
                let mut written = 0;
                for (audience, key) in [
                    (Audience::Tenant(a.tenant_id.clone()), &tenant_key),
                    (Audience::Admins, &admins_key),
                ] {
                    let note = NewNotification {
                        audience,
                        tenant_id: &a.tenant_id,
                        kind: "renewal_window",
                        subject: &subject,
                        body: &body,
                        reference: &a.id,
                        dedup_key: Some(key),
                    };
                    written += usize::from(notify(tx, &note, now_ms)?);
                }
                let entry = AuditEntry {
                    principal_id: "-".into(),
                    role: "system".into(),
                    tenant_id: a.tenant_id.clone(),
                    action: "renewal_notice".into(),
                    target: format!("authorization:{}", a.id),
                    outcome: "ok".into(),
                    detail: json!({"notifications": written,
                               "valid_until_ms": a.valid_until_ms}),
                    secret_detail: None,
                };
                Ok(((), entry))
            })?
            .into_inner();
        announced += 1;
    }
    Ok(announced)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::{each_backend, write};

    fn auth(from: i64, until: i64) -> Authorization {
        Authorization {
            id: "au_1".into(),
            tenant_id: "t_1".into(),
            dataset_ids: vec!["ds_1".into()],
            categories: vec![ScenarioCategory::Commercial],
            valid_from_ms: from,
            valid_until_ms: until,
            pricing_terms: String::new(),
            created_by: "p".into(),
            created_at_ms: from,
            revoked_at_ms: 0,
            revoked_reason: String::new(),
            renewed_from: String::new(),
            renewed_by: String::new(),
        }
    }

    /// Adds the tenant `t_1` to `store`.
    fn with_tenant(store: &Store) {
        write(store, |tx| {
            crate::admin::records::insert_tenant(
                tx,
                &crate::admin::records::Tenant {
                    id: "t_1".into(),
                    name: "operator".into(),
                    kek_id: "tenant:t_1".into(),
                    pseudonym_kek_id: "pseudonym:t_1".into(),
                    created_at_ms: 0,
                    lab_until_ms: 0,
                },
            )
        });
    }

    fn refused(store: &Store, now: i64, need: &Need<'_>) -> String {
        match store.read(|c| require_authorization(c, "t_1", now, need)) {
            Err(ServerError::Refused(
                refusal @ (Refusal::NoAuthorization(_)
                | Refusal::OutsideAuthorization(_)
                | Refusal::NoEmergencyPlan(_)),
            )) => refusal.into_message(),
            other => panic!("expected an authorization refusal, got {other:?}"),
        }
    }

    #[test]
    fn the_gate_names_what_is_missing() {
        each_backend(the_gate_names_what_is_missing_on);
    }

    fn the_gate_names_what_is_missing_on(store: &Store) {
        with_tenant(store);
        let day = 86_400_000;
        let now = 1_000 * day;
        assert!(refused(store, now, &Need::default()).contains("no authorization agreement"));
        write(store, |tx| {
            insert_authorization(tx, &auth(now - day, now + 400 * day))
        });
        let need = Need {
            datasets: vec!["ds_1"],
            category: Some(ScenarioCategory::Commercial),
            emergency_plan: false,
        };
        assert_eq!(
            store
                .read(|c| require_authorization(c, "t_1", now, &need))
                .unwrap()
                .id,
            "au_1"
        );
        let outside = Need {
            datasets: vec!["ds_1", "ds_2"],
            ..need.clone()
        };
        assert!(refused(store, now, &outside).contains("dataset ds_2 is outside the scope"));
        let category = Need {
            category: Some(ScenarioCategory::PublicWelfare),
            ..need.clone()
        };
        assert!(refused(store, now, &category).contains("category public_welfare"));
        let production = Need {
            emergency_plan: true,
            ..need.clone()
        };
        assert!(refused(store, now, &production).contains("no emergency plan"));
        write(store, |tx| {
            upsert_emergency_plan(
                tx,
                &EmergencyPlan {
                    authorization_id: "au_1".into(),
                    summary: "s".into(),
                    contact: "c".into(),
                    actions: vec!["a".into()],
                    created_at_ms: now,
                    updated_at_ms: now,
                    updated_by: "p".into(),
                    last_drill_at_ms: 0,
                },
            )
        });
        assert!(
            store
                .read(|c| require_authorization(c, "t_1", now, &production))
                .is_ok()
        );
        assert!(refused(store, now + 400 * day, &need).contains("expired on"));
        assert!(refused(store, now - 2 * day, &need).contains("starts only on"));
        write(store, |tx| revoke_authorization(tx, "au_1", now, "breach"));
        assert!(refused(store, now, &need).contains("was revoked on"));
    }

    #[test]
    fn the_sweep_announces_an_open_window_once() {
        each_backend(the_sweep_announces_an_open_window_once_on);
    }

    fn the_sweep_announces_an_open_window_once_on(store: &Store) {
        with_tenant(store);
        let day = 86_400_000;
        let now = 1_000 * day;
        // Ends in a year: the window opens in six months.
        write(store, |tx| {
            insert_authorization(tx, &auth(now, now + 365 * day))
        });
        assert_eq!(sweep_renewals(store, now).unwrap(), 0);
        let inside = now + 200 * day;
        assert_eq!(sweep_renewals(store, inside).unwrap(), 1);
        assert_eq!(sweep_renewals(store, inside + day).unwrap(), 0);
        assert_eq!(
            notes(store, "renewal_window"),
            2,
            "the tenant and the admins, once each"
        );
        // Expired or renewed authorizations are not announced.
        assert_eq!(sweep_renewals(store, now + 366 * day).unwrap(), 0);
    }

    fn notes(store: &Store, kind: &str) -> i64 {
        store
            .read(|tx| {
                Ok(tx
                    .query_one(
                        "SELECT count(*) AS n FROM notifications WHERE kind = ?1",
                        params![kind],
                    )?
                    .get("n")?)
            })
            .unwrap()
    }

    #[test]
    fn an_ended_authorization_closes_work_and_the_tenant_is_due_after_the_notice() {
        each_backend(an_ended_authorization_closes_work_on);
    }

    fn an_ended_authorization_closes_work_on(store: &Store) {
        with_tenant(store);
        let day = 86_400_000;
        let now = 1_000 * day;
        let ended = |at: i64| store.read(|tx| ended_authorizations(tx, at)).unwrap();
        let tell = |e: &EndedAuthorization, at: i64| write(store, |tx| notify_ended(tx, e, 30, at));
        // In force: nothing ended. Never authorized: nothing to end either.
        write(store, |tx| {
            insert_authorization(tx, &auth(now - day, now + 10 * day))
        });
        assert!(ended(now).is_empty());
        // Expired without renewal.
        let after = now + 11 * day;
        let list = ended(after);
        assert_eq!(list.len(), 1);
        let e = &list[0];
        assert_eq!((e.how, e.ended_at_ms), ("expired", now + 10 * day));
        assert_eq!(e.due_at_ms(30), now + 40 * day);
        // Closed and told once (the admins and the tenant); not yet due.
        assert_eq!(tell(e, after), (true, false));
        assert_eq!(tell(e, after + day), (false, false));
        assert_eq!(notes(store, "authorization_ended"), 2);
        assert_eq!(notes(store, "tenant_due_for_termination"), 0);
        // Thirty days on: due, told once.
        assert_eq!(tell(e, now + 40 * day), (false, true));
        assert_eq!(tell(e, now + 41 * day), (false, false));
        assert_eq!(notes(store, "tenant_due_for_termination"), 1);
        // A renewal recorded later and in force: nothing is ended any more.
        let mut renewed = auth(after, after + 365 * day);
        renewed.id = "au_2".into();
        write(store, |tx| insert_authorization(tx, &renewed));
        assert!(ended(after + day).is_empty());
        // Revoked: ended at the revocation; with a later term waiting, never due.
        write(store, |tx| {
            revoke_authorization(tx, "au_2", after + 2 * day, "breach")
        });
        let mut waiting = auth(after + 100 * day, after + 200 * day);
        waiting.id = "au_3".into();
        write(store, |tx| insert_authorization(tx, &waiting));
        let list = ended(after + 3 * day);
        assert_eq!(list.len(), 1);
        let e = &list[0];
        assert_eq!((e.authorization.id.as_str(), e.how), ("au_2", "revoked"));
        assert!(e.successor_pending);
        assert!(!e.due(30, after + 60 * day));
    }

    #[test]
    fn records_round_trip() {
        each_backend(|store| {
            with_tenant(store);
            let principal = Principal {
                id: "p_1".into(),
                real_name: "Li Lei".into(),
                organisation: "operator".into(),
                role: shuyu_policy::Role::Engineer,
                tenant_id: Some("t_1".into()),
                created_at_ms: 1,
            };
            // Authorizations: insert, read, list, amend, renew, revoke.
            let mut a = auth(100, 200);
            a.dataset_ids = vec!["ds_1".into(), "ds_2".into()];
            a.categories = vec![
                ScenarioCategory::Commercial,
                ScenarioCategory::PublicWelfare,
            ];
            a.pricing_terms = "per job".into();
            let mut b = auth(200, 300);
            b.id = "au_2".into();
            b.renewed_from = "au_1".into();
            write(store, |tx| {
                crate::admin::records::insert_principal(tx, &principal)?;
                insert_authorization(tx, &a)?;
                insert_authorization(tx, &b)
            });
            let read = |id: &str| store.read(|tx| authorization(tx, id)).unwrap();
            assert_eq!(read("au_1").as_ref(), Some(&a));
            assert_eq!(read("au_9"), None);
            let list = |tenant: Option<&str>| {
                store
                    .read(|tx| authorizations(tx, tenant))
                    .unwrap()
                    .into_iter()
                    .map(|a| a.id)
                    .collect::<Vec<_>>()
            };
            assert_eq!(list(None), ["au_1", "au_2"]);
            assert_eq!(list(Some("t_1")), ["au_1", "au_2"]);
            assert!(list(Some("t_2")).is_empty());
            write(store, |tx| {
                set_scope(
                    tx,
                    "au_1",
                    &["ds_3".to_owned()],
                    &[ScenarioCategory::Commercial],
                )?;
                set_renewed_by(tx, "au_1", "au_2")?;
                revoke_authorization(tx, "au_2", 250, "breach")
            });
            let amended = read("au_1").unwrap();
            assert_eq!(amended.dataset_ids, ["ds_3"]);
            assert_eq!(amended.categories, [ScenarioCategory::Commercial]);
            assert_eq!(amended.renewed_by, "au_2");
            let revoked = read("au_2").unwrap();
            assert_eq!(
                (revoked.revoked_at_ms, revoked.revoked_reason.as_str()),
                (250, "breach")
            );
            // Emergency plans: created, replaced (creation and drill kept), drilled.
            let plan = EmergencyPlan {
                authorization_id: "au_1".into(),
                summary: "stop everything".into(),
                contact: "ops".into(),
                actions: vec!["halt".into(), "call".into()],
                created_at_ms: 10,
                updated_at_ms: 10,
                updated_by: "p_admin".into(),
                last_drill_at_ms: 0,
            };
            assert!(!write(store, |tx| record_drill(tx, "au_1", 5)));
            write(store, |tx| upsert_emergency_plan(tx, &plan));
            assert!(write(store, |tx| record_drill(tx, "au_1", 15)));
            let replaced = EmergencyPlan {
                summary: "stop".into(),
                actions: vec!["halt".into()],
                created_at_ms: 20,
                updated_at_ms: 20,
                last_drill_at_ms: 0,
                ..plan.clone()
            };
            write(store, |tx| upsert_emergency_plan(tx, &replaced));
            assert_eq!(
                store.read(|tx| emergency_plan(tx, "au_1")).unwrap(),
                Some(EmergencyPlan {
                    created_at_ms: 10,
                    last_drill_at_ms: 15,
                    ..replaced.clone()
                })
            );
            assert_eq!(store.read(|tx| emergency_plan(tx, "au_2")).unwrap(), None);
            // Qualifications: none, recorded, updated, found by ID hash.
            assert_eq!(store.read(|tx| qualification(tx, "p_1")).unwrap(), None);
            let mut q = QualificationRecord {
                principal_id: "p_1".into(),
                id_hash: None,
                id_masked: String::new(),
                training_passed_ms: 3,
                training_until_ms: 4,
                updated_at_ms: 5,
                updated_by: "p_admin".into(),
                ..QualificationRecord::default()
            };
            write(store, |tx| upsert_qualification(tx, &q));
            assert_eq!(
                store.read(|tx| qualification(tx, "p_1")).unwrap().as_ref(),
                Some(&q)
            );
            q.id_hash = Some("hash".into());
            q.id_masked = "1101**********1234".into();
            q.registered_at_ms = 6;
            q.nda_signed_ms = 7;
            q.nda_until_ms = 8;
            write(store, |tx| upsert_qualification(tx, &q));
            assert_eq!(
                store.read(|tx| qualification(tx, "p_1")).unwrap().as_ref(),
                Some(&q)
            );
            assert_eq!(
                store
                    .read(|tx| principal_by_id_hash(tx, "hash"))
                    .unwrap()
                    .as_deref(),
                Some("p_1")
            );
            assert_eq!(
                store.read(|tx| principal_by_id_hash(tx, "other")).unwrap(),
                None
            );
            // Disabled principals: the first disabling stays.
            assert_eq!(store.read(|tx| disabled(tx, "p_1")).unwrap(), None);
            write(store, |tx| {
                disable_principal(tx, "p_1", 30, "left", "p_admin")
            });
            write(store, |tx| {
                disable_principal(tx, "p_1", 40, "again", "p_admin")
            });
            assert_eq!(
                store.read(|tx| disabled(tx, "p_1")).unwrap(),
                Some((30, "left".to_owned()))
            );
            // Certificates: revoked one, then the rest.
            write(store, |tx| {
                crate::admin::records::insert_certificate(tx, "fp_a", "p_1", i64::MAX / 2)?;
                crate::admin::records::insert_certificate(tx, "fp_b", "p_1", i64::MAX / 2)
            });
            let revoked = write(store, |tx| {
                revoke_certificates(tx, "p_1", Some("fp_b"), 50, "lost", "p_admin")
            });
            assert_eq!(revoked, ["fp_b"]);
            let certs = store.read(|tx| certificates(tx, "p_1")).unwrap();
            let by_fp = |fp: &str| certs.iter().find(|c| c.fingerprint == fp).unwrap().clone();
            assert!(!by_fp("fp_a").revoked);
            assert_eq!(
                (by_fp("fp_a").revoked_at_ms, by_fp("fp_a").revoked_reason),
                (0, String::new())
            );
            assert!(by_fp("fp_b").revoked);
            assert_eq!(
                (by_fp("fp_b").revoked_at_ms, by_fp("fp_b").revoked_reason),
                (50, "lost".to_owned())
            );
            let revoked = write(store, |tx| {
                revoke_certificates(tx, "p_1", None, 60, "left", "p_admin")
            });
            assert_eq!(revoked, ["fp_a"]);
            assert!(
                store
                    .read(|tx| certificates(tx, "p_1"))
                    .unwrap()
                    .iter()
                    .all(|c| c.revoked)
            );
        });
    }

    #[test]
    fn states_follow_the_term() {
        let a = auth(100, 200);
        assert_eq!(a.state(99), AuthorizationState::Pending);
        assert_eq!(a.state(100), AuthorizationState::Active);
        assert_eq!(a.state(200), AuthorizationState::Expired);
        let renewed = Authorization {
            renewed_by: "au_2".into(),
            ..a.clone()
        };
        assert_eq!(renewed.state(150), AuthorizationState::Active);
        assert_eq!(renewed.state(200), AuthorizationState::Superseded);
        let revoked = Authorization {
            revoked_at_ms: 120,
            ..a
        };
        assert_eq!(revoked.state(150), AuthorizationState::Revoked);
    }
}
