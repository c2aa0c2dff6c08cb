//! Records of catalogued datasets (their columns as JSON) and the grants of datasets to
//! tenants.

use shuyu_engine::{ColumnSpec, ColumnType};
use shuyu_meta::{Row, params};
use shuyu_policy::{Classification, MaskingRule};

use crate::error::{Result, ServerError};
use crate::store::{Legacy, Tx, unique_violation};

/// The catalog tables (their columns added since included).
pub(crate) const TABLES: &str = "
CREATE TABLE IF NOT EXISTS datasets (
    id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, description TEXT NOT NULL,
    steward_id TEXT NOT NULL, columns_json TEXT NOT NULL, n_rows BIGINT NOT NULL,
    location TEXT NOT NULL, kek_id TEXT NOT NULL, source_sha256 TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL, extra_approver_id TEXT);
CREATE TABLE IF NOT EXISTS grants (
    dataset_id TEXT NOT NULL REFERENCES datasets(id), tenant_id TEXT NOT NULL REFERENCES tenants(id),
    granted_by TEXT NOT NULL, granted_at_ms BIGINT NOT NULL, PRIMARY KEY (dataset_id, tenant_id));
";

/// The columns the catalog tables gained before versioned migrations.
pub(crate) const LEGACY: Legacy = Legacy {
    added_columns: &[("datasets", "extra_approver_id", "TEXT")],
    migrate: None,
};

/// A dataset in the catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetRecord {
    pub id: String,
    pub name: String,
    pub description: String,
    pub steward_id: String,
    pub columns: Vec<ColumnSpec>,
    pub n_rows: u64,
    pub location: String,
    pub kek_id: String,
    pub source_sha256: String,
    pub created_at_ms: i64,
    /// A principal whose approval every scenario listing this dataset needs (R12).
    pub extra_approver_id: Option<String>,
}

pub fn columns_to_json(columns: &[ColumnSpec]) -> String {
    serde_json::Value::Array(
        columns
            .iter()
            .map(|c| {
                serde_json::json!({
                    "name": c.name,
                    "data_type": c.data_type.as_str(),
                    "classification": c.classification.as_str(),
                    "masking": c.masking.to_string(),
                })
            })
            .collect(),
    )
    .to_string()
}

pub(crate) fn columns_from_json(text: &str) -> Result<Vec<ColumnSpec>> {
    let bad =
        |what: &str| ServerError::internal(format!("metadata store: bad {what} in columns_json"));
    let value: serde_json::Value = serde_json::from_str(text).map_err(|_| bad("columns json"))?;
    let field = |c: &serde_json::Value, k: &str| c[k].as_str().unwrap_or_default().to_owned();
    value
        .as_array()
        .ok_or_else(|| bad("columns json"))?
        .iter()
        .map(|c| {
            Ok(ColumnSpec {
                name: field(c, "name"),
                data_type: field(c, "data_type")
                    .parse::<ColumnType>()
                    .map_err(|_| bad("column type"))?,
                classification: field(c, "classification")
                    .parse::<Classification>()
                    .map_err(|_| bad("classification"))?,
                masking: field(c, "masking")
                    .parse::<MaskingRule>()
                    .map_err(|_| bad("masking"))?,
            })
        })
        .collect()
}

const DATASET_COLUMNS: &str = "d.id, d.name, d.description, d.steward_id, d.columns_json, d.n_rows,
    d.location, d.kek_id, d.source_sha256, d.created_at_ms, d.extra_approver_id";

fn dataset_row(r: &Row) -> Result<DatasetRecord> {
    let columns: String = r.get("columns_json")?;
    Ok(DatasetRecord {
        id: r.get("id")?,
        name: r.get("name")?,
        description: r.get("description")?,
        steward_id: r.get("steward_id")?,
        columns: columns_from_json(&columns)?,
        n_rows: r.get("n_rows")?,
        location: r.get("location")?,
        kek_id: r.get("kek_id")?,
        source_sha256: r.get("source_sha256")?,
        created_at_ms: r.get("created_at_ms")?,
        extra_approver_id: r.get("extra_approver_id")?,
    })
}

pub fn insert_dataset(tx: &Tx<'_>, d: &DatasetRecord) -> Result<()> {
    let n_rows = i64::try_from(d.n_rows)
        .map_err(|_| ServerError::internal(format!("dataset {}: too many rows", d.id)))?;
    tx.execute(
        "INSERT INTO datasets (id, name, description, steward_id, columns_json, n_rows, location, kek_id,
                               source_sha256, created_at_ms, extra_approver_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            &d.id,
            &d.name,
            &d.description,
            &d.steward_id,
            columns_to_json(&d.columns),
            n_rows,
            &d.location,
            &d.kek_id,
            &d.source_sha256,
            d.created_at_ms,
            d.extra_approver_id.as_deref()
        ],
    )
    .map_err(|e| unique_violation(e, "a dataset with this name"))?;
    Ok(())
}

pub fn set_extra_approver(tx: &Tx<'_>, dataset_id: &str, approver_id: Option<&str>) -> Result<()> {
    tx.execute(
        "UPDATE datasets SET extra_approver_id = ?2 WHERE id = ?1",
        params![dataset_id, approver_id],
    )?;
    Ok(())
}

pub fn dataset_name_taken(tx: &Tx<'_>, name: &str) -> Result<bool> {
    Ok(tx
        .query_opt(
            "SELECT 1 AS taken FROM datasets WHERE name = ?1",
            params![name],
        )?
        .is_some())
}

pub fn dataset(tx: &Tx<'_>, id: &str) -> Result<Option<DatasetRecord>> {
    tx.query_opt(
        &format!("SELECT {DATASET_COLUMNS} FROM datasets d WHERE d.id = ?1"),
        params![id],
    )?
    .map(|r| dataset_row(&r))
    .transpose()
}

pub fn datasets(tx: &Tx<'_>) -> Result<Vec<DatasetRecord>> {
    tx.query(
        &format!("SELECT {DATASET_COLUMNS} FROM datasets d ORDER BY d.name"),
        &[],
    )?
    .iter()
    .map(dataset_row)
    .collect()
}

/// A dataset granted to `tenant_id`, or `None` (missing and not granted look the same).
pub fn granted_dataset(tx: &Tx<'_>, tenant_id: &str, id: &str) -> Result<Option<DatasetRecord>> {
    tx.query_opt(
        &format!(
            "SELECT {DATASET_COLUMNS} FROM datasets d JOIN grants g ON g.dataset_id = d.id
             WHERE g.tenant_id = ?1 AND d.id = ?2"
        ),
        params![tenant_id, id],
    )?
    .map(|r| dataset_row(&r))
    .transpose()
}

pub fn granted_datasets(tx: &Tx<'_>, tenant_id: &str) -> Result<Vec<DatasetRecord>> {
    tx.query(
        &format!(
            "SELECT {DATASET_COLUMNS} FROM datasets d JOIN grants g ON g.dataset_id = d.id
             WHERE g.tenant_id = ?1 ORDER BY d.name"
        ),
        params![tenant_id],
    )?
    .iter()
    .map(dataset_row)
    .collect()
}

pub fn insert_grant(
    tx: &Tx<'_>,
    dataset_id: &str,
    tenant_id: &str,
    granted_by: &str,
) -> Result<()> {
    tx.execute(
        "INSERT INTO grants (dataset_id, tenant_id, granted_by, granted_at_ms) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (dataset_id, tenant_id) DO NOTHING",
        params![dataset_id, tenant_id, granted_by, crate::now_ms()],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::{each_backend, write};
    use shuyu_policy::DateGranularity;

    fn record(id: &str, name: &str) -> DatasetRecord {
        DatasetRecord {
            id: id.into(),
            name: name.into(),
            description: "households by district".into(),
            steward_id: "p_steward".into(),
            columns: vec![
                ColumnSpec {
                    name: "id_number".into(),
                    data_type: ColumnType::String,
                    classification: Classification::DirectIdentifier,
                    masking: MaskingRule::PartialIdNumber,
                },
                ColumnSpec {
                    name: "born".into(),
                    data_type: ColumnType::Date,
                    classification: Classification::QuasiIdentifier,
                    masking: MaskingRule::GeneralizeDate(DateGranularity::Year),
                },
            ],
            // More than a 32-bit integer holds.
            n_rows: 5_000_000_000,
            location: format!("datasets/{id}/"),
            kek_id: format!("dataset:{id}"),
            source_sha256: "ab".repeat(32),
            created_at_ms: 1_700_000_000_000,
            extra_approver_id: None,
        }
    }

    #[test]
    fn datasets_and_grants_round_trip() {
        each_backend(|store| {
            let households = record("ds_1", "households");
            let births = record("ds_2", "births");
            write(store, |tx| {
                crate::admin::records::insert_tenant(
                    tx,
                    &crate::admin::records::Tenant {
                        id: "t_1".into(),
                        name: "bureau".into(),
                        kek_id: "tenant:t_1".into(),
                        pseudonym_kek_id: "pseudonym:t_1".into(),
                        created_at_ms: 1,
                        lab_until_ms: 0,
                    },
                )?;
                insert_dataset(tx, &households)?;
                insert_dataset(tx, &births)
            });
            let clash = record("ds_3", "births");
            let refused = store
                .commit(
                    &crate::audit::trail::system_entry("test", "test", serde_json::json!({})),
                    |tx| insert_dataset(tx, &clash),
                )
                .unwrap_err();
            assert!(
                matches!(refused, ServerError::AlreadyExists(_)),
                "{refused:?}"
            );
            assert!(store.read(|tx| dataset_name_taken(tx, "births")).unwrap());
            assert!(!store.read(|tx| dataset_name_taken(tx, "deaths")).unwrap());

            write(store, |tx| set_extra_approver(tx, "ds_1", Some("p_extra")));
            let households = DatasetRecord {
                extra_approver_id: Some("p_extra".into()),
                ..households
            };
            assert_eq!(
                store.read(|tx| dataset(tx, "ds_1")).unwrap(),
                Some(households.clone())
            );
            assert_eq!(
                store.read(datasets).unwrap(),
                vec![births.clone(), households.clone()]
            );

            // Granting twice is granting once.
            for _ in 0..2 {
                write(store, |tx| insert_grant(tx, "ds_1", "t_1", "p_admin"));
            }
            assert_eq!(
                store.read(|tx| granted_datasets(tx, "t_1")).unwrap(),
                vec![households.clone()]
            );
            assert_eq!(
                store.read(|tx| granted_dataset(tx, "t_1", "ds_1")).unwrap(),
                Some(households)
            );
            assert_eq!(
                store.read(|tx| granted_dataset(tx, "t_1", "ds_2")).unwrap(),
                None
            );
        });
    }
}
