//! Records of scenarios and their approvals.

use shuyu_meta::{Row, params};
use shuyu_policy::ScenarioCategory;

use crate::error::{Result, ServerError};
use crate::store::{Legacy, Tx};

/// The scenarios tables (their columns added since included).
pub(crate) const TABLES: &str = "
CREATE TABLE IF NOT EXISTS scenarios (
    id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL REFERENCES tenants(id), name TEXT NOT NULL,
    purpose TEXT NOT NULL, data_list_json TEXT NOT NULL, valid_from_ms BIGINT NOT NULL,
    valid_until_ms BIGINT NOT NULL, status TEXT NOT NULL, applicant_id TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL, category TEXT NOT NULL DEFAULT 'commercial');
CREATE TABLE IF NOT EXISTS scenario_approvals (
    scenario_id TEXT NOT NULL REFERENCES scenarios(id), capacity TEXT NOT NULL,
    dataset_id TEXT NOT NULL, approver_id TEXT NOT NULL, decided BOOLEAN NOT NULL DEFAULT FALSE,
    approved BOOLEAN NOT NULL DEFAULT FALSE, decided_by TEXT NOT NULL DEFAULT '',
    comment TEXT NOT NULL DEFAULT '', decided_at_ms BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (scenario_id, capacity, dataset_id));
";

/// The columns the scenarios tables gained before versioned migrations.
pub(crate) const LEGACY: Legacy = Legacy {
    added_columns: &[(
        "scenarios",
        "category",
        "TEXT NOT NULL DEFAULT 'commercial'",
    )],
    migrate: None,
};

/// Scenario decision states as stored; "expired" is derived from the validity period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScenarioStatus {
    Pending,
    Approved,
    Rejected,
}

impl ScenarioStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            ScenarioStatus::Pending => "pending",
            ScenarioStatus::Approved => "approved",
            ScenarioStatus::Rejected => "rejected",
        }
    }
    fn parse(s: &str) -> ScenarioStatus {
        match s {
            "approved" => ScenarioStatus::Approved,
            "rejected" => ScenarioStatus::Rejected,
            _ => ScenarioStatus::Pending,
        }
    }
}

/// One dataset of a scenario's data list and the columns it may read.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DataListItem {
    pub dataset_id: String,
    pub columns: Vec<String>,
}

/// Who must approve: a listed dataset's steward, its extra approver (R12), or an admin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capacity {
    Steward,
    Extra,
    Admin,
}

impl Capacity {
    pub fn as_str(&self) -> &'static str {
        match self {
            Capacity::Steward => "steward",
            Capacity::Extra => "extra",
            Capacity::Admin => "admin",
        }
    }
    fn parse(s: &str) -> Capacity {
        match s {
            "steward" => Capacity::Steward,
            "extra" => Capacity::Extra,
            _ => Capacity::Admin,
        }
    }
}

/// One required approval of a scenario and its decision, once made.
#[derive(Debug, Clone, PartialEq)]
pub struct ScenarioApproval {
    pub capacity: Capacity,
    /// Empty for [`Capacity::Admin`].
    pub dataset_id: String,
    /// The principal who must decide; empty for [`Capacity::Admin`] (any admin).
    pub approver_id: String,
    pub decided: bool,
    pub approved: bool,
    pub decided_by: String,
    pub comment: String,
    pub decided_at_ms: i64,
}

/// An application scenario: one scenario, one data list, one approval (R11).
#[derive(Debug, Clone, PartialEq)]
pub struct ScenarioRecord {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub purpose: String,
    pub data_list: Vec<DataListItem>,
    pub valid_from_ms: i64,
    pub valid_until_ms: i64,
    pub status: ScenarioStatus,
    pub applicant_id: String,
    pub created_at_ms: i64,
    pub approvals: Vec<ScenarioApproval>,
    /// What it serves: decides whether its products are free (R24).
    pub category: ScenarioCategory,
}

const SCENARIO_COLUMNS: &str = "id, tenant_id, name, purpose, data_list_json, valid_from_ms,
    valid_until_ms, status, applicant_id, created_at_ms, category";

fn scenario_row(r: &Row) -> Result<ScenarioRecord> {
    let data_list: String = r.get("data_list_json")?;
    let status: String = r.get("status")?;
    let category: String = r.get("category")?;
    Ok(ScenarioRecord {
        id: r.get("id")?,
        tenant_id: r.get("tenant_id")?,
        name: r.get("name")?,
        purpose: r.get("purpose")?,
        data_list: serde_json::from_str(&data_list).map_err(|e| {
            ServerError::internal(format!("metadata store: bad data_list_json: {e}"))
        })?,
        valid_from_ms: r.get("valid_from_ms")?,
        valid_until_ms: r.get("valid_until_ms")?,
        status: ScenarioStatus::parse(&status),
        applicant_id: r.get("applicant_id")?,
        created_at_ms: r.get("created_at_ms")?,
        approvals: Vec::new(),
        category: category.parse().map_err(|e: shuyu_policy::PolicyError| {
            ServerError::internal(format!("metadata store: bad scenario category: {e}"))
        })?,
    })
}

fn with_approvals(tx: &Tx<'_>, mut s: ScenarioRecord) -> Result<ScenarioRecord> {
    s.approvals = tx
        .query(
            "SELECT capacity, dataset_id, approver_id, decided, approved, decided_by, comment,
                    decided_at_ms
             FROM scenario_approvals WHERE scenario_id = ?1
             ORDER BY CASE capacity WHEN 'steward' THEN 0 WHEN 'extra' THEN 1 ELSE 2 END, dataset_id",
            params![&s.id],
        )?
        .iter()
        .map(|r| {
            let capacity: String = r.get("capacity")?;
            Ok(ScenarioApproval {
                capacity: Capacity::parse(&capacity),
                dataset_id: r.get("dataset_id")?,
                approver_id: r.get("approver_id")?,
                decided: r.get("decided")?,
                approved: r.get("approved")?,
                decided_by: r.get("decided_by")?,
                comment: r.get("comment")?,
                decided_at_ms: r.get("decided_at_ms")?,
            })
        })
        .collect::<Result<_>>()?;
    Ok(s)
}

/// Stores a scenario with its required approvals (its decisions included).
pub fn upsert_scenario(tx: &Tx<'_>, s: &ScenarioRecord) -> Result<()> {
    tx.execute(
        &format!(
            "INSERT INTO scenarios ({SCENARIO_COLUMNS})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
             ON CONFLICT (id) DO UPDATE SET tenant_id = excluded.tenant_id,
                 name = excluded.name, purpose = excluded.purpose,
                 data_list_json = excluded.data_list_json,
                 valid_from_ms = excluded.valid_from_ms, valid_until_ms = excluded.valid_until_ms,
                 status = excluded.status, applicant_id = excluded.applicant_id,
                 created_at_ms = excluded.created_at_ms, category = excluded.category"
        ),
        params![
            &s.id,
            &s.tenant_id,
            &s.name,
            &s.purpose,
            crate::store::to_json(&s.data_list, "a scenario's data list")?,
            s.valid_from_ms,
            s.valid_until_ms,
            s.status.as_str(),
            &s.applicant_id,
            s.created_at_ms,
            s.category.as_str()
        ],
    )?;
    for a in &s.approvals {
        tx.execute(
            "INSERT INTO scenario_approvals (scenario_id, capacity, dataset_id,
                 approver_id, decided, approved, decided_by, comment, decided_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (scenario_id, capacity, dataset_id) DO UPDATE SET
                 approver_id = excluded.approver_id, decided = excluded.decided,
                 approved = excluded.approved, decided_by = excluded.decided_by,
                 comment = excluded.comment, decided_at_ms = excluded.decided_at_ms",
            params![
                &s.id,
                a.capacity.as_str(),
                &a.dataset_id,
                &a.approver_id,
                a.decided,
                a.approved,
                &a.decided_by,
                &a.comment,
                a.decided_at_ms
            ],
        )?;
    }
    Ok(())
}

pub fn scenario(tx: &Tx<'_>, id: &str) -> Result<Option<ScenarioRecord>> {
    let found = tx
        .query_opt(
            &format!("SELECT {SCENARIO_COLUMNS} FROM scenarios WHERE id = ?1"),
            params![id],
        )?
        .map(|r| scenario_row(&r))
        .transpose()?;
    found.map(|s| with_approvals(tx, s)).transpose()
}

/// Scenarios of one tenant, or of all, newest first.
pub fn scenarios(tx: &Tx<'_>, tenant_id: Option<&str>) -> Result<Vec<ScenarioRecord>> {
    let rows = tx
        .query(
            &format!(
                "SELECT {SCENARIO_COLUMNS} FROM scenarios
                 WHERE (CAST(?1 AS TEXT) IS NULL OR tenant_id = ?1)
                 ORDER BY created_at_ms DESC, id LIMIT 500"
            ),
            params![tenant_id],
        )?
        .iter()
        .map(scenario_row)
        .collect::<Result<Vec<_>>>()?;
    rows.into_iter().map(|s| with_approvals(tx, s)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::{each_backend, write};

    fn approval(capacity: Capacity, dataset_id: &str, approver_id: &str) -> ScenarioApproval {
        ScenarioApproval {
            capacity,
            dataset_id: dataset_id.into(),
            approver_id: approver_id.into(),
            decided: false,
            approved: false,
            decided_by: String::new(),
            comment: String::new(),
            decided_at_ms: 0,
        }
    }

    fn scenario_of(id: &str, tenant_id: &str, created_at_ms: i64) -> ScenarioRecord {
        ScenarioRecord {
            id: id.into(),
            tenant_id: tenant_id.into(),
            name: "housing survey".into(),
            purpose: "plan schools".into(),
            data_list: vec![DataListItem {
                dataset_id: "ds_1".into(),
                columns: vec!["district".into(), "born".into()],
            }],
            valid_from_ms: 1_700_000_000_000,
            valid_until_ms: 1_800_000_000_000,
            status: ScenarioStatus::Pending,
            applicant_id: "p_eng".into(),
            created_at_ms,
            // Listed in the order they are read back: steward, extra, admin.
            approvals: vec![
                approval(Capacity::Steward, "ds_1", "p_steward"),
                approval(Capacity::Extra, "ds_1", "p_extra"),
                approval(Capacity::Admin, "", ""),
            ],
            category: ScenarioCategory::PublicWelfare,
        }
    }

    #[test]
    fn scenarios_and_their_decisions_round_trip() {
        each_backend(|store| {
            write(store, |tx| {
                for t in ["t_1", "t_2"] {
                    crate::admin::records::insert_tenant(
                        tx,
                        &crate::admin::records::Tenant {
                            id: t.into(),
                            name: format!("tenant {t}"),
                            kek_id: format!("tenant:{t}"),
                            pseudonym_kek_id: format!("pseudonym:{t}"),
                            created_at_ms: 1,
                            lab_until_ms: 0,
                        },
                    )?;
                }
                Ok(())
            });
            let mut first = scenario_of("sc_1", "t_1", 10);
            let second = scenario_of("sc_2", "t_2", 20);
            write(store, |tx| {
                upsert_scenario(tx, &first)?;
                upsert_scenario(tx, &second)
            });
            assert_eq!(
                store.read(|tx| scenario(tx, "sc_1")).unwrap(),
                Some(first.clone())
            );

            // A decision rewrites the scenario and its approvals in place.
            first.approvals[0].decided = true;
            first.approvals[0].approved = true;
            first.approvals[0].decided_by = "p_steward".into();
            first.approvals[0].comment = "fine".into();
            first.approvals[0].decided_at_ms = 30;
            first.approvals[2].decided = true;
            first.approvals[2].decided_by = "p_admin".into();
            first.approvals[2].decided_at_ms = 31;
            first.status = ScenarioStatus::Rejected;
            write(store, |tx| upsert_scenario(tx, &first));
            assert_eq!(
                store.read(|tx| scenario(tx, "sc_1")).unwrap(),
                Some(first.clone())
            );

            assert_eq!(
                store.read(|tx| scenarios(tx, None)).unwrap(),
                vec![second.clone(), first.clone()]
            );
            assert_eq!(
                store.read(|tx| scenarios(tx, Some("t_1"))).unwrap(),
                vec![first]
            );
            assert_eq!(store.read(|tx| scenario(tx, "sc_9")).unwrap(), None);
        });
    }
}
