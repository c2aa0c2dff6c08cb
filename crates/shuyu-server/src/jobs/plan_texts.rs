//! What reviewers read of a job's plan beside its query (R22): a dataframe (Substrait) job's
//! plan rendered as SQL by its worker, or why it could not be, and every dataset and column
//! the plan reads. One row per succeeded job, written in the transaction that records it.

use shuyu_engine::PlanText;
use shuyu_meta::params;

use crate::error::{Result, ServerError};
use crate::store::Tx;

/// Schema of the plan texts. No foreign key: jobs are rewritten in place (an upsert).
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS job_plan_texts (
    job_id TEXT PRIMARY KEY, text_json TEXT NOT NULL);
";

/// Records the plan text of job `job_id` (replacing any earlier one).
///
/// # Errors
/// On store failure.
pub fn insert(tx: &Tx<'_>, job_id: &str, text: &PlanText) -> Result<()> {
    let json = serde_json::to_string(text).map_err(ServerError::internal)?;
    tx.execute(
        "INSERT INTO job_plan_texts (job_id, text_json) VALUES (?1, ?2)
         ON CONFLICT (job_id) DO UPDATE SET text_json = excluded.text_json",
        params![job_id, json],
    )?;
    Ok(())
}

/// The plan text of job `job_id`; `None` for a job that ran before plans were recorded.
///
/// # Errors
/// On store failure or a record that does not parse.
pub fn get(tx: &Tx<'_>, job_id: &str) -> Result<Option<PlanText>> {
    let json: Option<String> = tx
        .query_opt(
            "SELECT text_json FROM job_plan_texts WHERE job_id = ?1",
            params![job_id],
        )?
        .map(|r| r.get("text_json"))
        .transpose()?;
    json.map(|j| {
        serde_json::from_str(&j)
            .map_err(|e| ServerError::internal(format!("a stored plan text: {e}")))
    })
    .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing;

    #[test]
    fn a_plan_text_round_trips() {
        testing::each_backend(|store| {
            assert_eq!(store.read(|tx| get(tx, "job_1")).unwrap(), None);
            let text = PlanText {
                sql: Some("SELECT district FROM residents".into()),
                unrendered: None,
                sources: vec![shuyu_engine::PlanSource {
                    dataset_id: "ds_1".into(),
                    table: "residents".into(),
                    columns: vec!["district".into()],
                }],
            };
            testing::write(store, |tx| insert(tx, "job_1", &text));
            assert_eq!(
                store.read(|tx| get(tx, "job_1")).unwrap(),
                Some(text.clone())
            );
            // Recorded again, the text replaces the earlier one.
            let again = PlanText {
                sql: None,
                unrendered: Some("no SQL for this plan".into()),
                ..text
            };
            testing::write(store, |tx| insert(tx, "job_1", &again));
            assert_eq!(store.read(|tx| get(tx, "job_1")).unwrap(), Some(again));
        });
    }
}
