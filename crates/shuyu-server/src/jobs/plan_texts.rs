//! What reviewers read of a job's plan beside its query (R22): a dataframe (Substrait) job's
//! plan rendered as SQL by its worker, or why it could not be, and every dataset and column
//! the plan reads. One row per succeeded job, written in the transaction that records it.

use rusqlite::{Connection, OptionalExtension, params};
use shuyu_engine::PlanText;

use crate::error::{Result, ServerError};

/// Schema of the plan texts. No foreign key: jobs are rewritten with `INSERT OR REPLACE`.
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS job_plan_texts (
    job_id TEXT PRIMARY KEY, text_json TEXT NOT NULL);
";

/// Records the plan text of job `job_id` (replacing any earlier one).
///
/// # Errors
/// On store failure.
pub fn insert(conn: &Connection, job_id: &str, text: &PlanText) -> Result<()> {
    let json = serde_json::to_string(text).map_err(ServerError::internal)?;
    conn.execute(
        "INSERT OR REPLACE INTO job_plan_texts (job_id, text_json) VALUES (?1, ?2)",
        params![job_id, json],
    )?;
    Ok(())
}

/// The plan text of job `job_id`; `None` for a job that ran before plans were recorded.
///
/// # Errors
/// On store failure or a record that does not parse.
pub fn get(conn: &Connection, job_id: &str) -> Result<Option<PlanText>> {
    let json: Option<String> = conn
        .query_row(
            "SELECT text_json FROM job_plan_texts WHERE job_id = ?1",
            [job_id],
            |r| r.get(0),
        )
        .optional()?;
    json.map(|j| {
        serde_json::from_str(&j)
            .map_err(|e| ServerError::internal(format!("a stored plan text: {e}")))
    })
    .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_text_round_trips() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        assert_eq!(get(&conn, "job_1").unwrap(), None);
        let text = PlanText {
            sql: Some("SELECT district FROM residents".into()),
            unrendered: None,
            sources: vec![shuyu_engine::PlanSource {
                dataset_id: "ds_1".into(),
                table: "residents".into(),
                columns: vec!["district".into()],
            }],
        };
        insert(&conn, "job_1", &text).unwrap();
        assert_eq!(get(&conn, "job_1").unwrap(), Some(text));
    }
}
