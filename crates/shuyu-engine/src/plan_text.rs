//! A job's plan as reviewers read it: a dataframe (Substrait) job rendered as SQL by
//! DataFusion's unparser, and every table the plan reads with the columns it reads from each.
//!
//! Computed in the job's worker (the server never plans engineer input) and stored with the
//! job. The rendering is a reading aid: the Substrait plan is what ran, and what a vote binds
//! to by its hash.

use std::collections::{BTreeMap, BTreeSet};

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::logical_expr::LogicalPlan;
use serde::{Deserialize, Serialize};

use crate::schema::TableSpec;

/// Longest rendered SQL kept, in bytes (the plans themselves are at most 1 MiB).
const MAX_RENDERED_BYTES: usize = 1 << 20;
/// Longest reason for a failed rendering, in characters.
const MAX_REASON_CHARS: usize = 300;

/// What a reviewer reads of a job's plan beside its query text.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanText {
    /// A dataframe job's plan rendered as SQL; `None` for a SQL job (its text is what ran)
    /// and when the unparser could not render it.
    #[serde(default)]
    pub sql: Option<String>,
    /// Why a dataframe job's plan could not be rendered as SQL.
    #[serde(default)]
    pub unrendered: Option<String>,
    /// Every table the plan reads, in name order.
    #[serde(default)]
    pub sources: Vec<PlanSource>,
}

/// One table a plan reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanSource {
    /// Catalog id of the dataset (empty if the name is not one of the job's tables).
    pub dataset_id: String,
    /// The name the plan reads it by.
    pub table: String,
    /// The columns read, in the dataset's order; empty when only its rows are counted.
    pub columns: Vec<String>,
}

impl PlanText {
    /// The text of a dataframe job's `plan` (as consumed, before the gate's rewrite) with the
    /// sources of `optimised` (after projection push-down: the columns actually read).
    pub(crate) fn of_dataframe(
        plan: &LogicalPlan,
        optimised: &LogicalPlan,
        tables: &[TableSpec],
    ) -> PlanText {
        let (sql, unrendered) = match render_sql(plan) {
            Ok(sql) => (Some(sql), None),
            Err(reason) => (None, Some(reason)),
        };
        PlanText {
            sql,
            unrendered,
            sources: plan_sources(optimised, tables),
        }
    }

    /// The text of a SQL job: its sources only.
    pub(crate) fn of_sql(optimised: &LogicalPlan, tables: &[TableSpec]) -> PlanText {
        PlanText {
            sql: None,
            unrendered: None,
            sources: plan_sources(optimised, tables),
        }
    }
}

/// `plan` as SQL, by DataFusion's unparser (default dialect); else why not, in one short line.
pub(crate) fn render_sql(plan: &LogicalPlan) -> Result<String, String> {
    // The unparser returns errors for what it does not support; a panic in it must not fail
    // a job that ran, only its rendering.
    let rendered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        datafusion::sql::unparser::plan_to_sql(plan)
    }));
    match rendered {
        Ok(Ok(statement)) => {
            let mut sql = statement.to_string();
            if sql.len() > MAX_RENDERED_BYTES {
                let mut end = MAX_RENDERED_BYTES;
                while !sql.is_char_boundary(end) {
                    end -= 1;
                }
                sql.truncate(end);
                sql.push_str(" … (truncated)");
            }
            Ok(sql)
        }
        Ok(Err(e)) => {
            let detail: String = e
                .to_string()
                .lines()
                .next()
                .unwrap_or_default()
                .chars()
                .take(MAX_REASON_CHARS)
                .collect();
            Err(format!(
                "DataFusion's unparser cannot render this plan as SQL ({detail})"
            ))
        }
        Err(_) => Err("DataFusion's unparser failed on this plan".to_owned()),
    }
}

/// Every table `plan` scans (subqueries included) with the columns it projects or filters
/// on, in the table's column order.
pub(crate) fn plan_sources(plan: &LogicalPlan, tables: &[TableSpec]) -> Vec<PlanSource> {
    let mut read: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            let columns = read.entry(scan.table_name.table().to_owned()).or_default();
            columns.extend(
                scan.projected_schema
                    .fields()
                    .iter()
                    .map(|f| f.name().clone()),
            );
            for filter in &scan.filters {
                columns.extend(filter.column_refs().into_iter().map(|c| c.name.clone()));
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    read.into_iter()
        .map(
            |(table, columns)| match tables.iter().find(|t| t.name == table) {
                Some(spec) => PlanSource {
                    dataset_id: spec.dataset_id.clone(),
                    table,
                    columns: spec
                        .columns
                        .iter()
                        .filter(|c| columns.contains(&c.name))
                        .map(|c| c.name.clone())
                        .collect(),
                },
                None => PlanSource {
                    dataset_id: String::new(),
                    table,
                    columns: columns.into_iter().collect(),
                },
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use datafusion::logical_expr::{LogicalPlanBuilder, col, table_scan};
    use shuyu_policy::{Classification, MaskingRule};

    use super::*;
    use crate::schema::{ColumnSpec, ColumnType};

    fn residents() -> TableSpec {
        let column = |name: &str, data_type| ColumnSpec {
            name: name.into(),
            data_type,
            classification: Classification::Ordinary,
            masking: MaskingRule::Keep,
        };
        TableSpec {
            name: "residents".into(),
            dataset_id: "ds_res".into(),
            location: "datasets/ds_res/".into(),
            columns: vec![
                column("name", ColumnType::String),
                column("district", ColumnType::String),
                column("cost", ColumnType::Float64),
            ],
            privacy_unit: None,
        }
    }

    fn scan() -> LogicalPlanBuilder {
        let spec = residents();
        table_scan(Some("residents"), &spec.arrow_schema(), None).unwrap()
    }

    #[test]
    fn a_plan_renders_as_sql_with_its_sources() {
        let plan = scan()
            .filter(col("cost").gt(datafusion::logical_expr::lit(100.0)))
            .unwrap()
            .project(vec![col("district")])
            .unwrap()
            .build()
            .unwrap();
        let text = PlanText::of_dataframe(&plan, &plan, &[residents()]);
        let sql = text.sql.expect("rendered");
        assert_eq!(
            sql,
            r#"SELECT residents.district FROM residents WHERE (residents."cost" > 100.0)"#
        );
        assert_eq!(text.unrendered, None);
        // The unoptimised scan projects every column; an optimised one only those read.
        assert_eq!(
            text.sources,
            [PlanSource {
                dataset_id: "ds_res".into(),
                table: "residents".into(),
                columns: vec!["name".into(), "district".into(), "cost".into()],
            }]
        );
        let narrow = table_scan(
            Some("residents"),
            &residents().arrow_schema(),
            Some(vec![2, 1]),
        )
        .unwrap()
        .build()
        .unwrap();
        assert_eq!(
            plan_sources(&narrow, &[residents()])[0].columns,
            ["district", "cost"],
            "in the dataset's order"
        );
    }

    #[test]
    fn an_unrenderable_plan_says_so_and_still_names_its_sources() {
        // EXPLAIN is refused in jobs; here it stands for any node the unparser lacks.
        let plan = scan().explain(false, false).unwrap().build().unwrap();
        let text = PlanText::of_dataframe(&plan, &plan, &[residents()]);
        assert_eq!(text.sql, None);
        let reason = text.unrendered.expect("a reason");
        assert!(
            reason.starts_with("DataFusion's unparser cannot render this plan as SQL"),
            "{reason}"
        );
        assert!(reason.chars().count() < MAX_REASON_CHARS + 80, "{reason}");
        assert_eq!(text.sources.len(), 1);
        assert_eq!(text.sources[0].dataset_id, "ds_res");
    }

    #[test]
    fn sql_jobs_keep_their_own_text() {
        let plan = scan().build().unwrap();
        let text = PlanText::of_sql(&plan, &[residents()]);
        assert_eq!((text.sql, text.unrendered), (None, None));
        assert_eq!(text.sources[0].table, "residents");
    }
}
