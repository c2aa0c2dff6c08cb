//! The export gate's automated disclosure checks over a staged result (R1, R22).
//!
//! Each check yields an outcome, a reviewer-facing detail (which columns or rows failed) and
//! an engineer-facing summary that does not reveal which cell was small.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int64Type};
use shuyu_policy::Classification;

use crate::lineage::OutputColumn;
use crate::session::GROUP_ROWS_COLUMN;

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckOutcome {
    /// The result passes.
    Pass,
    /// The result may be approved, but reviewers must look at the flagged cells.
    Review,
    /// The result fails: the export cannot be approved.
    Fail,
}

/// One check's result.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckReport {
    /// Stable check name.
    pub name: &'static str,
    /// Outcome.
    pub outcome: CheckOutcome,
    /// Evidence for reviewers.
    pub detail: String,
    /// What the requesting engineer may learn.
    pub summary: String,
}

/// All checks of one export request.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportChecks {
    /// In a fixed order.
    pub reports: Vec<CheckReport>,
}

impl ExportChecks {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.reports.iter().all(|r| r.outcome == CheckOutcome::Pass)
    }
}

/// Runs the checks over a staged result (`batches` include the hidden group-size column when
/// `aggregate`), with k = `min_group_rows`.
pub fn run_export_checks(
    columns: &[OutputColumn],
    aggregate: bool,
    batches: &[RecordBatch],
    min_group_rows: u64,
) -> ExportChecks {
    let mut reports = Vec::new();

    let unmasked_identifiers: Vec<&str> = columns
        .iter()
        .filter(|c| {
            c.classification == Classification::DirectIdentifier && !c.aggregated && !c.masked
        })
        .map(|c| c.name.as_str())
        .collect();
    reports.push(if unmasked_identifiers.is_empty() {
        pass(
            "direct_identifiers_pseudonymised",
            "no output column carries a direct identifier unless pseudonymised",
        )
    } else {
        fail(
            "direct_identifiers_pseudonymised",
            format!(
                "columns derived from direct identifiers without pseudonymisation: {}",
                unmasked_identifiers.join(", ")
            ),
            format!(
                "columns {} derive from direct identifiers: wrap them in pseudonym() or drop them",
                unmasked_identifiers.join(", ")
            ),
        )
    });

    if aggregate {
        let small = small_groups(batches, min_group_rows);
        reports.push(match small {
            Ok(small) if small.is_empty() => pass(
                "min_group_rows",
                &format!("every group covers at least {min_group_rows} source rows"),
            ),
            Ok(small) => fail(
                "min_group_rows",
                format!(
                    "{} of the result rows cover fewer than {min_group_rows} source rows: {}",
                    small.len(),
                    small
                        .iter()
                        .take(50)
                        .map(|(row, n)| format!("row {row} ({n} rows)"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                format!(
                    "some groups cover fewer than {min_group_rows} source rows: coarsen the grouping or filter small groups"
                ),
            ),
            Err(reason) => fail("min_group_rows", reason.clone(), reason),
        });
    } else {
        let unmasked: Vec<&str> = columns
            .iter()
            .filter(|c| c.classification != Classification::Ordinary && !c.masked && !c.aggregated)
            .map(|c| c.name.as_str())
            .collect();
        reports.push(if unmasked.is_empty() {
            pass(
                "row_level_masked",
                "row-level result: every non-ordinary column is masked",
            )
        } else {
            fail(
                "row_level_masked",
                format!(
                    "row-level result with unmasked non-ordinary columns: {}",
                    unmasked.join(", ")
                ),
                format!(
                    "row-level result: columns {} must be masked (pseudonym, mask_*, generalize_*) or aggregated",
                    unmasked.join(", ")
                ),
            )
        });
    }
    ExportChecks { reports }
}

fn pass(name: &'static str, detail: &str) -> CheckReport {
    CheckReport {
        name,
        outcome: CheckOutcome::Pass,
        detail: detail.to_owned(),
        summary: detail.to_owned(),
    }
}

fn fail(name: &'static str, detail: String, summary: String) -> CheckReport {
    CheckReport {
        name,
        outcome: CheckOutcome::Fail,
        detail,
        summary,
    }
}

/// Result rows whose group covers fewer than `k` source rows, with their sizes.
fn small_groups(batches: &[RecordBatch], k: u64) -> Result<Vec<(usize, i64)>, String> {
    let mut small = Vec::new();
    let mut row = 0;
    for batch in batches {
        let counts = batch
            .column_by_name(GROUP_ROWS_COLUMN)
            .ok_or_else(|| "the result has no group sizes".to_owned())?;
        let counts = arrow::compute::cast(counts, &DataType::Int64).map_err(|e| e.to_string())?;
        let counts = counts.as_primitive::<Int64Type>();
        for i in 0..counts.len() {
            let n = if counts.is_null(i) {
                0
            } else {
                counts.value(i)
            };
            if n < k as i64 {
                small.push((row, n));
            }
            row += 1;
        }
    }
    Ok(small)
}
