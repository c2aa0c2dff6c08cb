//! Scenario service (R11, R12): one scenario, one data list, one approval.
//!
//! An engineer applies for a scenario with a purpose, a validity period and a data list
//! (datasets of the tenant's catalog and the columns needed). The required approvals are fixed
//! when the application is made: each listed dataset's steward, each listed dataset's extra
//! approver if it has one (R12), and one admin. One rejection rejects the scenario; when all
//! have approved it is approved, and production jobs may run under it until it expires,
//! reading only its listed columns.

use std::collections::HashSet;

use serde_json::json;
use shuyu_policy::{Action, Role};
use shuyu_proto::v1 as pb;
use shuyu_proto::v1::scenario_service_server::ScenarioService;
use tonic::{Request, Response, Status};

use crate::convert;
use crate::error::{Refusal, Result, ServerError};
use crate::scenarios::records::{
    Capacity, DataListItem, ScenarioApproval, ScenarioRecord, ScenarioStatus,
};
use crate::service::{require_id, require_text};
use crate::state::{Caller, Done};
use crate::store::Audited;

/// The handler of `ScenarioService`: the area's context it serves from.
#[derive(Debug, Clone)]
pub(crate) struct ScenariosRpc {
    pub(crate) state: std::sync::Arc<super::Context>,
}

impl ScenariosRpc {
    /// The handler over its area's context.
    pub(crate) fn new(state: std::sync::Arc<super::Context>) -> ScenariosRpc {
        ScenariosRpc { state }
    }
}

/// Longest validity of a scenario: three years, the default authorization term (R25).
pub const MAX_SCENARIO_DAYS: i64 = 3 * 366;
const DAY_MS: i64 = 86_400_000;
const MAX_DATA_LIST_ITEMS: usize = 64;

/// Why a production job cannot run under a scenario now, if it cannot.
pub(crate) fn unusable(scenario: &ScenarioRecord, now_ms: i64) -> Option<String> {
    let id = &scenario.id;
    match scenario.status {
        ScenarioStatus::Rejected => Some(format!("scenario {id} was rejected")),
        ScenarioStatus::Pending => {
            let waiting: Vec<String> = scenario
                .approvals
                .iter()
                .filter(|a| !a.decided)
                .map(describe_approval)
                .collect();
            Some(format!(
                "scenario {id} is still waiting for approval by {}",
                waiting.join(", ")
            ))
        }
        ScenarioStatus::Approved if now_ms < scenario.valid_from_ms => Some(format!(
            "scenario {id} is valid only from {}",
            crate::format_ms(scenario.valid_from_ms)
        )),
        ScenarioStatus::Approved if now_ms >= scenario.valid_until_ms => Some(format!(
            "scenario {id} expired at {}",
            crate::format_ms(scenario.valid_until_ms)
        )),
        ScenarioStatus::Approved => None,
    }
}

fn describe_approval(a: &ScenarioApproval) -> String {
    match a.capacity {
        Capacity::Admin => "an admin".to_owned(),
        Capacity::Steward => format!("the steward of dataset {}", a.dataset_id),
        Capacity::Extra => format!("the extra approver of dataset {}", a.dataset_id),
    }
}

impl ScenariosRpc {
    fn apply_scenario(
        &self,
        caller: &Caller,
        req: pb::ApplyScenarioRequest,
    ) -> Result<Audited<ScenarioRecord>> {
        let tenant_id = caller.tenant()?.to_owned();
        let category = convert::category_from_pb(req.category)?;
        let name = req.name.trim().to_owned();
        require_text(&name, "the scenario name", 100, true)?;
        require_text(&req.purpose, "the purpose", 2000, true)?;
        if req.data_list.is_empty() {
            return Err(ServerError::InvalidArgument(
                "the data list is empty: name each dataset and the columns the scenario needs"
                    .into(),
            ));
        }
        if req.data_list.len() > MAX_DATA_LIST_ITEMS {
            return Err(ServerError::InvalidArgument(format!(
                "the data list has {} datasets; the limit is {MAX_DATA_LIST_ITEMS}",
                req.data_list.len()
            )));
        }
        let now = crate::now_ms();
        let valid_from_ms = if req.valid_from_ms == 0 {
            now
        } else {
            req.valid_from_ms
        };
        if valid_from_ms < 0 || req.valid_until_ms <= valid_from_ms || req.valid_until_ms <= now {
            return Err(ServerError::InvalidArgument(
                "the validity period must end in the future and after it starts".into(),
            ));
        }
        if req.valid_until_ms - valid_from_ms > MAX_SCENARIO_DAYS * DAY_MS {
            return Err(ServerError::InvalidArgument(format!(
                "a scenario is valid for at most {MAX_SCENARIO_DAYS} days"
            )));
        }
        let mut seen = HashSet::new();
        let mut data_list = Vec::with_capacity(req.data_list.len());
        let mut approvals = Vec::new();
        for item in &req.data_list {
            require_id(&item.dataset_id, "dataset_id")?;
            if !seen.insert(item.dataset_id.clone()) {
                return Err(ServerError::InvalidArgument(format!(
                    "dataset {} is listed twice",
                    item.dataset_id
                )));
            }
            let dataset = self
                .state
                .store
                .read(|c| {
                    crate::catalog::records::granted_dataset(c, &tenant_id, &item.dataset_id)
                })?
                .ok_or_else(|| ServerError::NotFound(format!("dataset {}", item.dataset_id)))?;
            if item.columns.is_empty() {
                return Err(ServerError::InvalidArgument(format!(
                    "no columns listed for dataset {}: list only the columns the scenario needs",
                    dataset.name
                )));
            }
            let mut columns = HashSet::new();
            for column in &item.columns {
                if !dataset.columns.iter().any(|c| &c.name == column) {
                    require_text(column, "a column name", 128, true)?;
                    return Err(ServerError::InvalidArgument(format!(
                        "dataset {} has no column '{column}'",
                        dataset.name
                    )));
                }
                if !columns.insert(column.clone()) {
                    return Err(ServerError::InvalidArgument(format!(
                        "column '{column}' of dataset {} is listed twice",
                        dataset.name
                    )));
                }
            }
            // File order, so the job's table matches the stored files' column order.
            let ordered: Vec<String> = dataset
                .columns
                .iter()
                .filter(|c| columns.contains(&c.name))
                .map(|c| c.name.clone())
                .collect();
            data_list.push(DataListItem {
                dataset_id: dataset.id.clone(),
                columns: ordered,
            });
            approvals.push(pending(Capacity::Steward, &dataset.id, &dataset.steward_id));
            if let Some(extra) = &dataset.extra_approver_id {
                approvals.push(pending(Capacity::Extra, &dataset.id, extra));
            }
        }
        require_distinct_approvers(&approvals)?;
        // R25: applied for inside an authorization's term and scope.
        let need = crate::governance::records::Need {
            datasets: data_list.iter().map(|d| d.dataset_id.as_str()).collect(),
            category: Some(category),
            emergency_plan: false,
        };
        self.state.store.read(|c| {
            crate::governance::records::require_authorization(c, &tenant_id, now, &need)
        })?;
        approvals.push(pending(Capacity::Admin, "", ""));
        let id = crate::new_id("sc");
        let scenario = ScenarioRecord {
            id: id.clone(),
            tenant_id,
            name,
            purpose: req.purpose,
            data_list,
            valid_from_ms,
            valid_until_ms: req.valid_until_ms,
            status: ScenarioStatus::Pending,
            applicant_id: caller.principal.id.clone(),
            created_at_ms: now,
            approvals,
            category,
        };
        let detail = json!({
            "data_list": scenario.data_list,
            "valid_from_ms": scenario.valid_from_ms,
            "valid_until_ms": scenario.valid_until_ms,
            "category": scenario.category.as_str(),
            "approvers": scenario.approvals.iter().map(describe_approval).collect::<Vec<_>>(),
        });
        let done = self.state.store.commit(
            &caller.entry(format!("scenario:{id}"), "ok", detail),
            |tx| crate::scenarios::records::upsert_scenario(tx, &scenario),
        )?;
        Ok(done.map(|()| scenario))
    }

    /// A scenario the caller may see; others answer NOT_FOUND like missing ones.
    fn visible_scenario(&self, caller: &Caller, id: &str) -> Result<ScenarioRecord> {
        require_id(id, "scenario_id")?;
        self.state
            .store
            .read(|c| crate::scenarios::records::scenario(c, id))?
            .filter(|s| may_see(caller, s))
            .ok_or_else(|| ServerError::NotFound(format!("scenario {id}")))
    }

    /// Records the caller's decision, reading and writing the scenario in one transaction so
    /// that simultaneous approvers cannot overwrite each other.
    fn decide_scenario(
        &self,
        caller: &Caller,
        req: &pb::DecideScenarioRequest,
    ) -> Result<Audited<ScenarioRecord>> {
        require_text(&req.comment, "the comment", 1000, !req.approve)?;
        self.visible_scenario(caller, &req.scenario_id)?;
        let target = format!("scenario:{}", req.scenario_id);
        self.state.store.commit_with(|tx| {
            let mut scenario = crate::scenarios::records::scenario(tx, &req.scenario_id)?
                .ok_or_else(|| ServerError::NotFound(format!("scenario {}", req.scenario_id)))?;
            if scenario.status != ScenarioStatus::Pending {
                return Err(Refusal::AlreadyDecided(format!(
                    "scenario {} has already been {}",
                    scenario.id,
                    scenario.status.as_str()
                ))
                .into());
            }
            let now = crate::now_ms();
            // R12: one person, one decision, one capacity. Whoever has decided once is done,
            // whatever other capacity they could also fill.
            if let Some(done) = scenario
                .approvals
                .iter()
                .find(|a| a.decided && a.decided_by == caller.principal.id)
            {
                let admin_left = done.capacity != Capacity::Admin
                    && scenario
                        .approvals
                        .iter()
                        .any(|a| !a.decided && a.capacity == Capacity::Admin && holds(caller, a));
                return Err(Refusal::AlreadyDecided(format!(
                    "you have already decided on scenario {} as {}{}",
                    scenario.id,
                    describe_approval(done),
                    if admin_left {
                        "; one person fills one approval of a scenario (R12): another admin \
                         gives the admin approval"
                    } else {
                        ""
                    }
                ))
                .into());
            }
            let capacity = decision_capacity(caller, &scenario.approvals, req.approve)?
                .ok_or_else(|| {
                    ServerError::from(Refusal::NotAnApprover(format!(
                        "you are not a required approver of scenario {}",
                        scenario.id
                    )))
                })?;
            let mut capacities = Vec::new();
            for approval in scenario
                .approvals
                .iter_mut()
                .filter(|a| !a.decided && a.capacity == capacity && holds(caller, a))
            {
                approval.decided = true;
                approval.approved = req.approve;
                approval.decided_by = caller.principal.id.clone();
                approval.comment = req.comment.clone();
                approval.decided_at_ms = now;
                capacities.push(describe_approval(approval));
            }
            if !req.approve {
                scenario.status = ScenarioStatus::Rejected;
            } else if scenario.approvals.iter().all(|a| a.decided && a.approved) {
                scenario.status = ScenarioStatus::Approved;
            }
            crate::scenarios::records::upsert_scenario(tx, &scenario)?;
            let detail = json!({
                "approve": req.approve,
                "as": capacities,
                "status": scenario.status.as_str(),
            });
            Ok((scenario, caller.entry(target.clone(), "ok", detail)))
        })
    }
}

fn pending(capacity: Capacity, dataset_id: &str, approver_id: &str) -> ScenarioApproval {
    ScenarioApproval {
        capacity,
        dataset_id: dataset_id.to_owned(),
        approver_id: approver_id.to_owned(),
        decided: false,
        approved: false,
        decided_by: String::new(),
        comment: String::new(),
        decided_at_ms: 0,
    }
}

/// Refuses a data list whose named approvers would fill approvals in two capacities (R12):
/// the steward of one listed dataset who is the extra approver of another (or of the same
/// one, set before that was refused) would count twice.
fn require_distinct_approvers(approvals: &[ScenarioApproval]) -> Result<()> {
    for a in approvals {
        if let Some(b) = approvals
            .iter()
            .find(|b| b.approver_id == a.approver_id && b.capacity != a.capacity)
        {
            return Err(Refusal::OneApprovalPerPerson(format!(
                "principal {} would approve this scenario twice, as {} and as {}; one person \
                 fills one approval of a scenario (R12): an admin must name another extra \
                 approver (shuyu dataset approver)",
                a.approver_id,
                describe_approval(a),
                describe_approval(b)
            ))
            .into());
        }
    }
    Ok(())
}

/// The one capacity in which the caller decides now: the approvals named for them (as a
/// dataset's steward or extra approver) before the admin approval any admin may give, so
/// that an admin who is also named (the approver of an imported dataset) leaves the admin
/// approval to another admin. `None` if the caller holds no pending approval.
fn decision_capacity(
    caller: &Caller,
    approvals: &[ScenarioApproval],
    approve: bool,
) -> Result<Option<Capacity>> {
    let named: Vec<Capacity> = approvals
        .iter()
        .filter(|a| !a.decided && a.capacity != Capacity::Admin && holds(caller, a))
        .map(|a| a.capacity)
        .collect();
    if let Some(first) = named.first() {
        // Only a scenario applied for before application refused this can name one person
        // twice: it can be rejected, never approved.
        if approve && named.iter().any(|c| c != first) {
            return Err(Refusal::OneApprovalPerPerson(
                "you are named as both a steward and an extra approver of this scenario, and \
                 one person fills one approval (R12): reject it, and the engineer applies \
                 again once an admin has named another extra approver"
                    .into(),
            )
            .into());
        }
        return Ok(Some(*first));
    }
    Ok(approvals
        .iter()
        .any(|a| !a.decided && a.capacity == Capacity::Admin && holds(caller, a))
        .then_some(Capacity::Admin))
}

/// Whether the caller fills this required approval.
fn holds(caller: &Caller, approval: &ScenarioApproval) -> bool {
    match approval.capacity {
        Capacity::Admin => caller.principal.role == Role::PlatformAdmin,
        Capacity::Steward | Capacity::Extra => approval.approver_id == caller.principal.id,
    }
}

fn may_see(caller: &Caller, scenario: &ScenarioRecord) -> bool {
    match caller.principal.role {
        Role::Engineer => caller.principal.tenant_id.as_deref() == Some(&scenario.tenant_id),
        // Stewards (and extra approvers) see the scenarios they must decide on.
        Role::DataSteward => scenario
            .approvals
            .iter()
            .any(|a| a.approver_id == caller.principal.id),
        Role::PlatformAdmin | Role::Reviewer | Role::Auditor => true,
        // Recipients see their products, not the scenarios behind them (ViewScenario is
        // not theirs).
        Role::Recipient => false,
    }
}

#[tonic::async_trait]
impl ScenarioService for ScenariosRpc {
    async fn apply_scenario(
        &self,
        request: Request<pb::ApplyScenarioRequest>,
    ) -> std::result::Result<Response<pb::ApplyScenarioResponse>, Status> {
        let no_target = |_: &pb::ApplyScenarioRequest| String::new();
        let scenario = self
            .state
            .calls
            .call(
                request,
                Action::ApplyScenario,
                no_target,
                |caller, req| async move {
                    Ok(Done::Audited(ScenariosRpc::apply_scenario(
                        self, &caller, req,
                    )?))
                },
            )
            .await?;
        Ok(Response::new(pb::ApplyScenarioResponse {
            scenario: Some(convert::scenario(&scenario, crate::now_ms())),
        }))
    }

    async fn list_scenarios(
        &self,
        request: Request<pb::ListScenariosRequest>,
    ) -> std::result::Result<Response<pb::ListScenariosResponse>, Status> {
        let no_target = |_: &pb::ListScenariosRequest| String::new();
        let response = self
            .state
            .calls
            .call(
                request,
                Action::ViewScenario,
                no_target,
                |caller, _| async move {
                    let tenant = match caller.principal.role {
                        Role::Engineer => Some(caller.tenant()?.to_owned()),
                        _ => None,
                    };
                    let now = crate::now_ms();
                    let scenarios: Vec<pb::Scenario> = self
                        .state
                        .store
                        .read(|c| crate::scenarios::records::scenarios(c, tenant.as_deref()))?
                        .iter()
                        .filter(|s| may_see(&caller, s))
                        .map(|s| convert::scenario(s, now))
                        .collect();
                    let n = scenarios.len();
                    Ok(Done::Record(
                        pb::ListScenariosResponse { scenarios },
                        json!({"n": n}),
                    ))
                },
            )
            .await?;
        Ok(Response::new(response))
    }

    async fn get_scenario(
        &self,
        request: Request<pb::GetScenarioRequest>,
    ) -> std::result::Result<Response<pb::GetScenarioResponse>, Status> {
        let target = |req: &pb::GetScenarioRequest| format!("scenario:{}", req.scenario_id);
        let response = self
            .state
            .calls
            .call(
                request,
                Action::ViewScenario,
                target,
                |caller, req| async move {
                    let s = self.visible_scenario(&caller, &req.scenario_id)?;
                    Ok(Done::Record(
                        pb::GetScenarioResponse {
                            scenario: Some(convert::scenario(&s, crate::now_ms())),
                        },
                        json!({}),
                    ))
                },
            )
            .await?;
        Ok(Response::new(response))
    }

    async fn decide_scenario(
        &self,
        request: Request<pb::DecideScenarioRequest>,
    ) -> std::result::Result<Response<pb::DecideScenarioResponse>, Status> {
        let target = |req: &pb::DecideScenarioRequest| format!("scenario:{}", req.scenario_id);
        let scenario = self
            .state
            .calls
            .call(
                request,
                Action::DecideScenario,
                target,
                |caller, req| async move {
                    Ok(Done::Audited(ScenariosRpc::decide_scenario(
                        self, &caller, &req,
                    )?))
                },
            )
            .await?;
        Ok(Response::new(pb::DecideScenarioResponse {
            scenario: Some(convert::scenario(&scenario, crate::now_ms())),
        }))
    }
}
