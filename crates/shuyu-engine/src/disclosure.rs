//! The plan rewrite behind the export gate's disclosure checks (R1).
//!
//! A result is only as safe as the smallest number of people behind each of its cells, so an
//! aggregate-shaped plan (projections, filters, sorts and limits over one `Aggregate`) is
//! rewritten to carry, per output row, hidden columns the checks read:
//!
//! - `__shuyu_group_rows`: source rows of the group;
//! - `__shuyu_units_<k>`: the group's distinct privacy units as a [`crate::sketch::UnitSketch`] (their
//!   count, and a sketch that compares populations across releases), one column per
//!   privacy-unit column that reached the aggregate. A dataset's privacy unit is the person or
//!   organisation a row is about (its first direct-identifier column); its values are carried
//!   from the scan to the aggregate under a reserved name, also when the scenario's data list
//!   leaves the column out, and never reach the visible result;
//! - `__shuyu_dom<j>_total` and `__shuyu_dom<j>_top<i>`: for each sum-like aggregate (sum,
//!   avg) over a sensitive column, the total of the absolute contributions and the i-th
//!   largest contribution *per privacy unit* (a second aggregation by group and unit, joined
//!   back to the groups), for the n-k dominance and p% rules. Without a privacy unit each row
//!   is a contributor.
//!
//! When a plan shape does not let a unit column through (a nested aggregate, DISTINCT, a
//! union of differently shaped inputs), [`DisclosureMeta::units`] says so and the checks fall
//! back to rows, flagging the result for review instead of passing it.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, NullEquality, TableReference};
use datafusion::functions::expr_fn::{abs, coalesce};
use datafusion::functions_aggregate::expr_fn::{count, max, min, sum};
use datafusion::functions_aggregate::sum::sum_udaf;
use datafusion::logical_expr::expr::{WindowFunction, WindowFunctionDefinition};
use datafusion::logical_expr::{
    Aggregate, AggregateUDF, Expr, ExprFunctionExt, ExprSchemable, JoinType, LogicalPlan,
    LogicalPlanBuilder, Projection, SubqueryAlias, TableSource, Union, cast, lit, when,
};
use shuyu_policy::{Classification, MaskingDefaults};

use crate::aggregates::Measure;
use crate::lineage::plan_lineage;
use crate::schema::TableSpec;
use crate::sketch::{Largest, UnitHashing};

/// Prefix of every column the engine adds; user plans may not produce such names.
pub const HIDDEN_PREFIX: &str = "__shuyu_";
/// Hidden column: the number of source rows behind each group.
pub const GROUP_ROWS_COLUMN: &str = "__shuyu_group_rows";
/// Prefix of the hidden distinct-privacy-unit counts.
pub const UNITS_PREFIX: &str = "__shuyu_units_";
/// Prefix of the heads of the unit sketches (`__shuyu_unithead_<k>` for `__shuyu_units_<k>`),
/// which the result writer adds: the export checks read these and read the full sketches
/// only when a comparison or an audit needs them.
pub const UNIT_HEAD_PREFIX: &str = "__shuyu_unithead_";
/// Prefix of the hidden population columns (`__shuyu_pop_<m>`): the people (a unit sketch)
/// or, without a privacy unit, the rows (a count) of each branch population an analysed
/// aggregate needs ([`crate::aggregates`]).
pub const POPULATION_PREFIX: &str = "__shuyu_pop_";
/// Prefix of the heads of the population sketches (`__shuyu_pophead_<m>`).
pub const POPULATION_HEAD_PREFIX: &str = "__shuyu_pophead_";

/// Hidden column of branch population `m`.
pub fn population_column(m: usize) -> String {
    format!("{POPULATION_PREFIX}{m}")
}

/// Alias of the per-unit statistics joined back to the groups.
const STATS_ALIAS: &str = "__shuyu_stats";

/// Whether a result column name is reserved for the engine.
pub fn is_hidden(name: &str) -> bool {
    name.starts_with(HIDDEN_PREFIX)
}

/// Hidden column with the total of sum-like aggregate `j`'s contributions.
pub fn dominance_total_column(j: usize) -> String {
    format!("{HIDDEN_PREFIX}dom{j}_total")
}

/// Hidden column with the `i`-th largest (1-based) contribution to sum-like aggregate `j`.
pub fn dominance_top_column(j: usize, i: usize) -> String {
    format!("{HIDDEN_PREFIX}dom{j}_top{i}")
}

/// How privacy units were counted.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum UnitCount {
    /// `n` hidden unit-count columns (their minimum is a cell's units).
    Counted(usize),
    /// The datasets read have privacy units, but the plan's shape hides them from the
    /// aggregate (for this reason): people cannot be counted, and the result fails.
    Rows(String),
    /// The datasets read declare no privacy unit: each row is a contributor (this says
    /// which datasets).
    NoUnits(String),
}

/// A sum-like aggregate with dominance statistics.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DominanceColumn {
    /// The aggregate as the plan names it, e.g. `sum(visits.cost)`.
    pub aggregate: String,
    /// How many top contributions are stored (at least 2).
    pub top: usize,
    /// Whether contributions are per privacy unit (`false`: per row).
    pub per_unit: bool,
    /// Contributions are squared deviations from the cell's mean (variances, models),
    /// rather than absolute values.
    #[serde(default)]
    pub centered: bool,
}

/// A branch population of a result's cells: the rows an analysed aggregate takes in one of
/// its branches ([`crate::aggregates`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Population {
    /// Its condition over the aggregate's input, as written (SQL of the query, no data).
    pub condition: String,
    /// Whether the condition reads a direct identifier (it names people).
    pub by_identifier: bool,
}

/// What the rewrite added, for the checks.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DisclosureMeta {
    /// Whether the result is aggregate-shaped (hidden group columns present).
    pub aggregate: bool,
    /// How privacy units were counted.
    pub units: UnitCount,
    /// Sum-like aggregates over sensitive columns with dominance statistics, in column order
    /// `j` = index.
    pub dominance: Vec<DominanceColumn>,
    /// Sum-like aggregates over sensitive columns the rewrite could not compute statistics
    /// for (the checks flag them for review).
    pub dominance_missing: Vec<String>,
    /// A differential-privacy job's guarantee (its cells are noisy; no hidden columns).
    #[serde(default)]
    pub dp: Option<crate::dp::DpGuarantee>,
    /// Whether cells of the result share source rows (grouping sets: subtotals and their
    /// details), so that one cell minus others can isolate people.
    #[serde(default)]
    pub overlapping_cells: bool,
    /// The branch populations of the analysed aggregates, in the order of their hidden
    /// columns ([`population_column`]).
    #[serde(default)]
    pub populations: Vec<Population>,
    /// Aggregates over protected data the gate refused to analyse, each with the reason:
    /// such a result fails.
    #[serde(default)]
    pub refused: Vec<String>,
}

impl DisclosureMeta {
    /// A row-level result: nothing hidden.
    pub fn row_level() -> DisclosureMeta {
        DisclosureMeta {
            aggregate: false,
            units: UnitCount::Rows("row-level result".into()),
            dominance: Vec::new(),
            dominance_missing: Vec::new(),
            dp: None,
            overlapping_cells: false,
            populations: Vec::new(),
            refused: Vec::new(),
        }
    }
}

/// A table's scan that also reads its privacy-unit column.
#[derive(Clone)]
pub(crate) struct UnitSource {
    /// Reads the listed columns plus the unit column.
    pub source: Arc<dyn TableSource>,
    /// The unit column's name in the files.
    pub unit_column: String,
}

/// Rewrites `plan` (analysed, not yet optimised) for the checks. Returns the plan unchanged
/// and a row-level meta when it is not aggregate-shaped.
pub(crate) fn rewrite(
    plan: LogicalPlan,
    tables: &[TableSpec],
    units: &HashMap<String, UnitSource>,
    defaults: &MaskingDefaults,
    dominance_n: usize,
    unit_sketch: Arc<AggregateUDF>,
    unit_hashing: UnitHashing,
) -> (LogicalPlan, DisclosureMeta) {
    let rewriter = Rewriter {
        tables,
        units,
        defaults,
        unit_sketch,
        unit_hashing: Some(unit_hashing),
        top: dominance_n.max(2),
        next: Cell::new(0),
        missing_units: RefCell::new(BTreeSet::new()),
    };
    match rewriter.top(&plan) {
        Some((rewritten, meta)) => (rewritten, meta),
        None => (plan, DisclosureMeta::row_level()),
    }
}

/// `plan` with the privacy-unit column of every table it scans carried to its output under
/// a hidden name (see [`rewrite`]), with those names; `None` when its shape does not allow.
pub(crate) fn carry_units(
    plan: &LogicalPlan,
    tables: &[TableSpec],
    units: &HashMap<String, UnitSource>,
    defaults: &MaskingDefaults,
    unit_sketch: Arc<AggregateUDF>,
) -> Option<(LogicalPlan, Vec<String>)> {
    Rewriter {
        tables,
        units,
        defaults,
        unit_sketch,
        unit_hashing: None,
        top: 2,
        next: Cell::new(0),
        missing_units: RefCell::new(BTreeSet::new()),
    }
    .carry(plan)
}

struct Rewriter<'a> {
    tables: &'a [TableSpec],
    units: &'a HashMap<String, UnitSource>,
    defaults: &'a MaskingDefaults,
    unit_sketch: Arc<AggregateUDF>,
    /// The sketch in two steps, for the one-pass rewrite ([`Rewriter::fused`]).
    unit_hashing: Option<UnitHashing>,
    top: usize,
    next: Cell<usize>,
    /// Scanned tables without a privacy-unit column.
    missing_units: RefCell<BTreeSet<String>>,
}

/// Resolves hidden column `name` in `plan`'s output.
fn hidden_column(plan: &LogicalPlan, name: &str) -> Option<Expr> {
    let (qualifier, _) = plan
        .schema()
        .qualified_field_with_unqualified_name(name)
        .ok()?;
    Some(Expr::Column(Column::new(qualifier.cloned(), name)))
}

fn rebuild(plan: &LogicalPlan, inputs: Vec<LogicalPlan>) -> Option<LogicalPlan> {
    plan.with_new_exprs(plan.expressions(), inputs).ok()
}

impl Rewriter<'_> {
    /// The aggregate chain at the top of the plan.
    fn top(&self, plan: &LogicalPlan) -> Option<(LogicalPlan, DisclosureMeta)> {
        match plan {
            LogicalPlan::Aggregate(aggregate) => self.aggregate(aggregate),
            LogicalPlan::Projection(projection) => {
                let (input, meta) = self.top(&projection.input)?;
                let mut exprs = projection.expr.clone();
                for field in input.schema().fields() {
                    if is_hidden(field.name()) {
                        exprs.push(hidden_column(&input, field.name())?);
                    }
                }
                let projection = Projection::try_new(exprs, Arc::new(input)).ok()?;
                Some((LogicalPlan::Projection(projection), meta))
            }
            LogicalPlan::Filter(_)
            | LogicalPlan::Sort(_)
            | LogicalPlan::Limit(_)
            | LogicalPlan::SubqueryAlias(_) => {
                let (input, meta) = self.top(plan.inputs()[0])?;
                Some((rebuild(plan, vec![input])?, meta))
            }
            _ => None,
        }
    }

    fn aggregate(&self, aggregate: &Aggregate) -> Option<(LogicalPlan, DisclosureMeta)> {
        self.missing_units.borrow_mut().clear();
        let carried = self.carry(&aggregate.input);
        let (input, unit_names) = match &carried {
            Some((input, names)) if !names.is_empty() => (Arc::new(input.clone()), names.clone()),
            _ => (aggregate.input.clone(), Vec::new()),
        };
        let units = match &carried {
            None => UnitCount::Rows(self.carry_failed_reason(&aggregate.input)),
            Some(_) if unit_names.is_empty() => {
                let missing = self.missing_units.borrow();
                UnitCount::NoUnits(format!(
                    "the datasets read declare no privacy unit ({}): each row is a contributor",
                    missing.iter().cloned().collect::<Vec<_>>().join(", ")
                ))
            }
            Some(_) => UnitCount::Counted(unit_names.len()),
        };

        // What each aggregate over protected data computes (or why it is refused).
        let lineage = plan_lineage(
            &LogicalPlan::Aggregate(aggregate.clone()),
            self.tables,
            self.defaults,
        );
        let input_lineage = plan_lineage(&aggregate.input, self.tables, self.defaults).columns;
        let n_group = aggregate.group_expr.len();
        let mut conditions: Vec<(Expr, bool)> = Vec::new();
        let mut measures: Vec<(String, Measure)> = Vec::new();
        let mut refused: Vec<String> = Vec::new();
        for (j, expr) in aggregate.aggr_expr.iter().enumerate() {
            let protected = lineage
                .columns
                .get(n_group + j)
                .is_none_or(|c| c.classification > Classification::Ordinary);
            match crate::aggregates::analyse(expr, &aggregate.input, &input_lineage, protected) {
                Ok(Some(analysis)) => {
                    conditions.extend(analysis.populations);
                    let name = expr.schema_name().to_string();
                    measures.extend(analysis.measures.into_iter().map(|m| (name.clone(), m)));
                }
                Ok(None) => {}
                Err(reason) => refused.push(reason),
            }
        }
        let mut seen = BTreeSet::new();
        conditions.retain(|(c, _)| seen.insert(c.to_string()));

        let grouping_sets = aggregate
            .group_expr
            .iter()
            .any(|e| matches!(e, Expr::GroupingSet(_)));
        // A measure's plain population (the people with a value of it, no condition) is
        // counted from the per-person statistics when they are computed: one count per
        // cell instead of a sketch. It can differ from the cell's people only by people
        // whose values are all NULL, whose difference reveals nothing; a population chosen
        // by a condition is sketched, for the ledger.
        let stats_planned = !unit_names.is_empty() && !grouping_sets && !measures.is_empty();
        let counted_by_stats: Vec<Option<usize>> = conditions
            .iter()
            .map(|(condition, _)| {
                let text = condition.to_string();
                measures.iter().position(|(_, m)| {
                    stats_planned
                        && m.condition.is_none()
                        && m.value.clone().is_not_null().to_string() == text
                })
            })
            .collect();
        let populations: Vec<Population> = conditions
            .iter()
            .map(|(condition, by_identifier)| Population {
                condition: condition.to_string(),
                by_identifier: *by_identifier,
            })
            .collect();
        let unit0 = match unit_names.first() {
            Some(name) => Some(hidden_column(&input, name)?),
            None => None,
        };
        // The aggregate with the hidden columns, the populations in `sketched` as sketches
        // (or, without units, row counts).
        let with_hidden = |sketched: &dyn Fn(usize) -> bool| -> Option<Vec<Expr>> {
            let mut aggr_expr = aggregate.aggr_expr.clone();
            aggr_expr.push(count(lit(1)).alias(GROUP_ROWS_COLUMN));
            for (k, name) in unit_names.iter().enumerate() {
                let column = hidden_column(&input, name)?;
                aggr_expr.push(
                    self.unit_sketch
                        .call(vec![column])
                        .alias(format!("{UNITS_PREFIX}{k}")),
                );
            }
            for (m, (condition, _)) in conditions.iter().enumerate() {
                if !sketched(m) {
                    continue;
                }
                let counted = match &unit0 {
                    Some(unit) => self.unit_sketch.call(vec![unit.clone()]),
                    None => count(lit(1)),
                };
                aggr_expr.push(
                    with_filter(counted, &Some(Box::new(condition.clone())))
                        .alias(population_column(m)),
                );
            }
            Some(aggr_expr)
        };
        let mut aggr_expr = with_hidden(&|m| counted_by_stats[m].is_none())?;

        let mut dominance = Vec::new();
        let mut dominance_missing = Vec::new();
        let plan = if measures.is_empty() {
            LogicalPlan::Aggregate(
                Aggregate::try_new(Arc::clone(&input), aggregate.group_expr.clone(), aggr_expr)
                    .ok()?,
            )
        } else if unit_names.is_empty() {
            // Each row is a contributor: the statistics fit in the aggregate itself (squares
            // about zero: without people, rows are not centred on their cell's mean).
            for (j, (name, measure)) in measures.iter().enumerate() {
                let value = cast(measure.value.clone(), DataType::Float64);
                let value = if measure.centered {
                    value.clone() * value
                } else {
                    abs(value)
                };
                let filter = measure.condition.clone().map(Box::new);
                aggr_expr.push(
                    with_filter(sum(value.clone()), &filter).alias(dominance_total_column(j)),
                );
                for i in 1..=self.top {
                    aggr_expr.push(
                        with_filter(Largest::udaf(i).call(vec![value.clone()]), &filter)
                            .alias(dominance_top_column(j, i)),
                    );
                }
                dominance.push(DominanceColumn {
                    aggregate: name.clone(),
                    top: self.top,
                    per_unit: false,
                    centered: false,
                });
            }
            LogicalPlan::Aggregate(
                Aggregate::try_new(Arc::clone(&input), aggregate.group_expr.clone(), aggr_expr)
                    .ok()?,
            )
        } else if grouping_sets {
            dominance_missing.extend(measures.iter().map(|(name, _)| name.clone()));
            LogicalPlan::Aggregate(
                Aggregate::try_new(Arc::clone(&input), aggregate.group_expr.clone(), aggr_expr)
                    .ok()?,
            )
        } else {
            let groups = LogicalPlan::Aggregate(
                Aggregate::try_new(Arc::clone(&input), aggregate.group_expr.clone(), aggr_expr)
                    .ok()?,
            );
            let from_stats: Vec<(usize, usize)> = counted_by_stats
                .iter()
                .enumerate()
                .filter_map(|(m, j)| j.map(|j| (m, j)))
                .collect();
            // One pass when every aggregate of the query can be taken per (cell, person)
            // first: the statistics' aggregation then computes the cells too, and the
            // grouping by cell and the join back are not needed.
            let fused = if unit_names.len() == 1 {
                self.fused(
                    &input,
                    aggregate,
                    &unit_names[0],
                    &measures,
                    &conditions,
                    &from_stats,
                )
            } else {
                None
            };
            let stats = match fused {
                Some(plan) => Some(plan),
                None => self.per_unit_stats(
                    &groups,
                    &input,
                    aggregate,
                    &unit_names[0],
                    &measures,
                    &from_stats,
                ),
            };
            match stats {
                Some(plan) => {
                    dominance.extend(measures.iter().map(|(name, m)| DominanceColumn {
                        aggregate: name.clone(),
                        top: self.top,
                        per_unit: true,
                        centered: m.centered,
                    }));
                    plan
                }
                None => {
                    dominance_missing.extend(measures.iter().map(|(name, _)| name.clone()));
                    // Every population sketched after all.
                    let aggr_expr = with_hidden(&|_| true)?;
                    LogicalPlan::Aggregate(
                        Aggregate::try_new(
                            Arc::clone(&input),
                            aggregate.group_expr.clone(),
                            aggr_expr,
                        )
                        .ok()?,
                    )
                }
            }
        };
        Some((
            plan,
            DisclosureMeta {
                aggregate: true,
                units,
                dominance,
                dominance_missing,
                dp: None,
                overlapping_cells: grouping_sets,
                populations,
                refused,
            },
        ))
    }

    /// `groups` joined (null-safe, on the group keys) with the per-person contribution
    /// statistics of each measure: contributions are summed per group and person first,
    /// then their total and largest values taken per group. A plain measure contributes the
    /// sum of its absolute values; a centred one (variances, models) the sum of its squared
    /// deviations from the cell's mean, from each person's count, sum and sum of squares and
    /// the cell's mean (a window over the group).
    fn per_unit_stats(
        &self,
        groups: &LogicalPlan,
        input: &Arc<LogicalPlan>,
        aggregate: &Aggregate,
        unit: &str,
        measures: &[(String, Measure)],
        from_stats: &[(usize, usize)],
    ) -> Option<LogicalPlan> {
        let n_group = aggregate.group_expr.len();
        let (inner, partition) =
            self.per_person(input, aggregate, unit, measures, Vec::new(), None)?;
        let stats = self.contribution_stats(measures, from_stats);
        let outer =
            LogicalPlan::Aggregate(Aggregate::try_new(Arc::new(inner), partition, stats).ok()?);
        let outer =
            LogicalPlan::SubqueryAlias(SubqueryAlias::try_new(Arc::new(outer), STATS_ALIAS).ok()?);

        let left_keys: Vec<Column> = (0..n_group)
            .map(|g| Column::from(groups.schema().qualified_field(g)))
            .collect();
        let right_keys: Vec<Column> = (0..n_group)
            .map(|g| {
                Column::new(
                    Some(TableReference::bare(STATS_ALIAS)),
                    format!("{HIDDEN_PREFIX}g{g}"),
                )
            })
            .collect();
        let builder = LogicalPlanBuilder::from(groups.clone());
        let joined = if n_group == 0 {
            builder.cross_join(outer).ok()?
        } else {
            builder
                .join_detailed(
                    outer,
                    JoinType::Inner,
                    (left_keys, right_keys),
                    None,
                    NullEquality::NullEqualsNull,
                )
                .ok()?
        };
        let joined = joined.build().ok()?;
        let mut exprs: Vec<Expr> = groups
            .schema()
            .iter()
            .map(|(qualifier, field)| Expr::Column(Column::new(qualifier.cloned(), field.name())))
            .collect();
        for &(m, _) in from_stats {
            exprs.push(Expr::Column(Column::new(
                Some(TableReference::bare(STATS_ALIAS)),
                population_column(m),
            )));
        }
        for j in 0..measures.len() {
            let mut names = vec![dominance_total_column(j)];
            names.extend((1..=self.top).map(|i| dominance_top_column(j, i)));
            for name in names {
                exprs.push(Expr::Column(Column::new(
                    Some(TableReference::bare(STATS_ALIAS)),
                    name,
                )));
            }
        }
        Projection::try_new(exprs, Arc::new(joined))
            .ok()
            .map(LogicalPlan::Projection)
    }

    /// Each person's contributions per cell: `input` grouped by the cell's keys (as
    /// `__shuyu_g<g>`) and the unit (`__shuyu_unit`), with each measure's contribution
    /// `__shuyu_c<j>` and the `extra` aggregates under their names; with the keys of the
    /// cells (the partition). With `hash_unit`, people are grouped by their keyed hash.
    fn per_person(
        &self,
        input: &Arc<LogicalPlan>,
        aggregate: &Aggregate,
        unit: &str,
        measures: &[(String, Measure)],
        extra: Vec<(String, Expr)>,
        hash_unit: Option<&UnitHashing>,
    ) -> Option<(LogicalPlan, Vec<Expr>)> {
        let n_group = aggregate.group_expr.len();
        let mut unit_column = hidden_column(input, unit)?;
        if let Some(hashing) = hash_unit {
            unit_column = hashing.hash.call(vec![unit_column]);
        }

        let mut inner_groups: Vec<Expr> = aggregate
            .group_expr
            .iter()
            .enumerate()
            .map(|(g, e)| e.clone().alias(format!("{HIDDEN_PREFIX}g{g}")))
            .collect();
        inner_groups.push(unit_column.alias(format!("{HIDDEN_PREFIX}unit")));
        let hidden = |name: String| Expr::Column(Column::from_name(name));
        let mut per_person: Vec<Expr> = Vec::new();
        for (j, (_, measure)) in measures.iter().enumerate() {
            let value = cast(measure.value.clone(), DataType::Float64);
            let filter = measure.condition.clone().map(Box::new);
            if measure.centered {
                per_person.push(
                    with_filter(count(value.clone()), &filter)
                        .alias(format!("{HIDDEN_PREFIX}r{j}")),
                );
                per_person.push(
                    with_filter(sum(value.clone()), &filter).alias(format!("{HIDDEN_PREFIX}s{j}")),
                );
                per_person.push(
                    with_filter(sum(value.clone() * value), &filter)
                        .alias(format!("{HIDDEN_PREFIX}q{j}")),
                );
            } else {
                per_person.push(
                    with_filter(sum(abs(value)), &filter).alias(format!("{HIDDEN_PREFIX}c{j}")),
                );
            }
        }
        let kept: Vec<String> = extra.iter().map(|(name, _)| name.clone()).collect();
        per_person.extend(extra.into_iter().map(|(name, e)| e.alias(name)));
        let mut inner = LogicalPlan::Aggregate(
            Aggregate::try_new(Arc::clone(input), inner_groups, per_person).ok()?,
        );
        let partition: Vec<Expr> = (0..n_group)
            .map(|g| hidden(format!("{HIDDEN_PREFIX}g{g}")))
            .collect();
        if measures.iter().any(|(_, m)| m.centered) {
            // The cell's count and sum of each centred measure, beside each person's.
            let mut windows = Vec::new();
            for (j, (_, measure)) in measures.iter().enumerate() {
                if !measure.centered {
                    continue;
                }
                for (what, total) in [("r", "rt"), ("s", "st")] {
                    let over = Expr::from(WindowFunction::new(
                        WindowFunctionDefinition::AggregateUDF(sum_udaf()),
                        vec![cast(
                            hidden(format!("{HIDDEN_PREFIX}{what}{j}")),
                            DataType::Float64,
                        )],
                    ))
                    .partition_by(partition.clone())
                    .build()
                    .ok()?;
                    windows.push(over.alias(format!("{HIDDEN_PREFIX}{total}{j}")));
                }
            }
            inner = LogicalPlanBuilder::from(inner)
                .window(windows)
                .ok()?
                .build()
                .ok()?;
            // The cell's mean of each centred measure, beside each person's figures; then
            // each person's contribution: Σ(x − m)² = q − 2·m·s + r·m² (two projections, so
            // that no expression repeats).
            let mut with_means: Vec<Expr> = inner
                .schema()
                .iter()
                .map(|(qualifier, field)| {
                    Expr::Column(Column::new(qualifier.cloned(), field.name()))
                })
                .collect();
            for (j, (_, measure)) in measures.iter().enumerate() {
                if measure.centered {
                    let col = |what: &str| hidden(format!("{HIDDEN_PREFIX}{what}{j}"));
                    let mean = when(col("rt").gt(lit(0.0)), col("st") / col("rt"))
                        .otherwise(lit(0.0))
                        .ok()?;
                    with_means.push(mean.alias(format!("{HIDDEN_PREFIX}m{j}")));
                }
            }
            inner = LogicalPlanBuilder::from(inner)
                .project(with_means)
                .ok()?
                .build()
                .ok()?;
            let mut exprs: Vec<Expr> = partition.clone();
            exprs.push(hidden(format!("{HIDDEN_PREFIX}unit")));
            exprs.extend(kept.iter().map(|name| hidden(name.clone())));
            for (j, (_, measure)) in measures.iter().enumerate() {
                let c = format!("{HIDDEN_PREFIX}c{j}");
                if measure.centered {
                    let col = |what: &str| hidden(format!("{HIDDEN_PREFIX}{what}{j}"));
                    let r = cast(col("r"), DataType::Float64);
                    let spread =
                        col("q") - lit(2.0) * col("m") * col("s") + r * col("m") * col("m");
                    exprs.push(abs(spread).alias(c));
                } else {
                    exprs.push(hidden(c));
                }
            }
            inner = LogicalPlanBuilder::from(inner)
                .project(exprs)
                .ok()?
                .build()
                .ok()?;
        }
        Some((inner, partition))
    }

    /// Per cell, over [`Self::per_person`]'s rows: the plain populations counted from the
    /// contributions, and each measure's total and largest contributions.
    fn contribution_stats(
        &self,
        measures: &[(String, Measure)],
        from_stats: &[(usize, usize)],
    ) -> Vec<Expr> {
        let hidden = |name: String| Expr::Column(Column::from_name(name));
        let mut stats = Vec::new();
        // Plain populations: the people with a contribution to measure j.
        for &(m, j) in from_stats {
            stats.push(count(hidden(format!("{HIDDEN_PREFIX}c{j}"))).alias(population_column(m)));
        }
        for j in 0..measures.len() {
            let c = hidden(format!("{HIDDEN_PREFIX}c{j}"));
            stats.push(sum(c.clone()).alias(dominance_total_column(j)));
            for i in 1..=self.top {
                // The largest is the maximum (DataFusion's vectorised one; 0 for no
                // contribution, as the ranks below it give).
                let top = if i == 1 {
                    coalesce(vec![max(c.clone()), lit(0.0)])
                } else {
                    Largest::udaf(i).call(vec![c.clone()])
                };
                stats.push(top.alias(dominance_top_column(j, i)));
            }
        }
        stats
    }

    /// The aggregate and the gate's statistics in one pass, when every aggregate of the
    /// query can be taken per (cell, person) first and then per cell (`count`, `sum` of
    /// integers or floats, `min`, `max`, `avg` of floats; no DISTINCT, no ordering): the
    /// per-person rows of [`Self::per_person`] carry the partial aggregates too, and one
    /// aggregation by cell gives the query's values, the unit sketch (each person once),
    /// the populations and the contribution statistics — no second scan of the input, no
    /// join back. The output has the columns, names and types of the query's aggregate
    /// followed by the hidden ones, as [`Self::per_unit_stats`]'s has. People are grouped by
    /// their keyed hash, the value the sketch keeps ([`UnitHashing`]), rather than by their
    /// identifier. `None` when an aggregate does not decompose.
    fn fused(
        &self,
        input: &Arc<LogicalPlan>,
        aggregate: &Aggregate,
        unit: &str,
        measures: &[(String, Measure)],
        conditions: &[(Expr, bool)],
        from_stats: &[(usize, usize)],
    ) -> Option<LogicalPlan> {
        let n_group = aggregate.group_expr.len();
        let hashing = self.unit_hashing.as_ref()?;
        let hidden = |name: String| Expr::Column(Column::from_name(name));
        // The rows of each (cell, person): the cell's rows, and any `count(*)`.
        let rows = format!("{HIDDEN_PREFIX}n");
        let mut partials: Vec<(String, Expr)> = vec![(rows.clone(), count(lit(1)))];
        let mut outer_exprs: Vec<Expr> = Vec::new();
        for (j, expr) in aggregate.aggr_expr.iter().enumerate() {
            let mut e = expr;
            while let Expr::Alias(alias) = e {
                e = &alias.expr;
            }
            let Expr::AggregateFunction(function) = e else {
                return None;
            };
            let params = &function.params;
            if params.distinct
                || !params.order_by.is_empty()
                || params.null_treatment.is_some()
                || params.args.len() != 1
            {
                return None;
            }
            let arg = params.args[0].clone();
            let arg_type = arg.get_type(input.schema().as_ref()).ok()?;
            let filter = &params.filter;
            let part = |what: &str| format!("{HIDDEN_PREFIX}a{j}{what}");
            let counts_rows = params.filter.is_none()
                && matches!(&arg, Expr::Literal(value, _) if !value.is_null());
            let outer = match function.func.name() {
                "count" if counts_rows => coalesce(vec![sum(hidden(rows.clone())), lit(0i64)]),
                "count" => {
                    partials.push((part("n"), with_filter(count(arg), filter)));
                    coalesce(vec![sum(hidden(part("n"))), lit(0i64)])
                }
                "sum" if arg_type.is_integer() || arg_type.is_floating() => {
                    partials.push((part("s"), with_filter(sum(arg), filter)));
                    sum(hidden(part("s")))
                }
                "min" => {
                    partials.push((part("m"), with_filter(min(arg), filter)));
                    min(hidden(part("m")))
                }
                "max" => {
                    partials.push((part("m"), with_filter(max(arg), filter)));
                    max(hidden(part("m")))
                }
                "avg" if arg_type == DataType::Float64 => {
                    partials.push((part("s"), with_filter(sum(arg.clone()), filter)));
                    partials.push((part("n"), with_filter(count(arg), filter)));
                    sum(hidden(part("s"))) / cast(sum(hidden(part("n"))), DataType::Float64)
                }
                _ => return None,
            };
            outer_exprs.push(outer.alias(part("")));
        }
        outer_exprs.push(coalesce(vec![sum(hidden(rows)), lit(0i64)]).alias(GROUP_ROWS_COLUMN));
        let unit_hidden = hidden(format!("{HIDDEN_PREFIX}unit"));
        outer_exprs.push(
            hashing
                .sketch
                .call(vec![unit_hidden.clone()])
                .alias(format!("{UNITS_PREFIX}0")),
        );
        // A population chosen by a condition: the people with a row meeting it.
        let sketched: Vec<usize> = (0..conditions.len())
            .filter(|m| !from_stats.iter().any(|(counted, _)| counted == m))
            .collect();
        for &m in &sketched {
            let rows_met = format!("{HIDDEN_PREFIX}p{m}");
            partials.push((
                rows_met.clone(),
                with_filter(count(lit(1)), &Some(Box::new(conditions[m].0.clone()))),
            ));
            let met = Some(Box::new(hidden(rows_met).gt(lit(0i64))));
            outer_exprs.push(
                with_filter(hashing.sketch.call(vec![unit_hidden.clone()]), &met)
                    .alias(population_column(m)),
            );
        }
        outer_exprs.extend(self.contribution_stats(measures, from_stats));
        let (inner, partition) =
            self.per_person(input, aggregate, unit, measures, partials, Some(hashing))?;
        let outer = LogicalPlan::Aggregate(
            Aggregate::try_new(Arc::new(inner), partition, outer_exprs).ok()?,
        );

        // The query's columns under their names and types, then the hidden ones in the
        // order the two-pass plan gives them.
        let original = &aggregate.schema;
        let mut exprs = Vec::new();
        for i in 0..n_group + aggregate.aggr_expr.len() {
            let (qualifier, field) = original.qualified_field(i);
            let name = if i < n_group {
                format!("{HIDDEN_PREFIX}g{i}")
            } else {
                format!("{HIDDEN_PREFIX}a{}", i - n_group)
            };
            let (_, computed) = outer
                .schema()
                .qualified_field_with_unqualified_name(&name)
                .ok()?;
            let mut value = hidden(name);
            if computed.data_type() != field.data_type() {
                value = cast(value, field.data_type().clone());
            }
            exprs.push(value.alias_qualified(qualifier.cloned(), field.name()));
        }
        let mut names = vec![GROUP_ROWS_COLUMN.to_owned(), format!("{UNITS_PREFIX}0")];
        names.extend(sketched.iter().map(|&m| population_column(m)));
        names.extend(from_stats.iter().map(|&(m, _)| population_column(m)));
        for j in 0..measures.len() {
            names.push(dominance_total_column(j));
            names.extend((1..=self.top).map(|i| dominance_top_column(j, i)));
        }
        exprs.extend(names.into_iter().map(hidden));
        Projection::try_new(exprs, Arc::new(outer))
            .ok()
            .map(LogicalPlan::Projection)
    }

    /// Why carrying units through `plan` fails, or an empty string when it does not.
    fn carry_failed_reason(&self, plan: &LogicalPlan) -> String {
        let mut reason = String::new();
        let _ = plan.apply(|node| {
            let blocking = match node {
                LogicalPlan::Aggregate(_) => {
                    Some("a nested aggregate not grouped by the privacy unit")
                }
                LogicalPlan::Distinct(_) => Some("a DISTINCT without the privacy unit"),
                LogicalPlan::Union(_) => Some("a UNION of differently shaped inputs"),
                LogicalPlan::Unnest(_) => Some("UNNEST"),
                _ => None,
            };
            if let Some(what) = blocking {
                reason = format!(
                    "the people behind each cell cannot be counted through {what}: group by \
                     the privacy unit in the inner query, or aggregate the source rows directly"
                );
                return Ok(TreeNodeRecursion::Stop);
            }
            Ok(TreeNodeRecursion::Continue)
        });
        if reason.is_empty() {
            reason = "the people behind each cell cannot be counted through this plan".into();
        }
        reason
    }

    /// `plan` rewritten so that every privacy-unit column of the tables it scans reaches its
    /// output under a hidden name; with those names. `None` when the shape does not allow it.
    fn carry(&self, plan: &LogicalPlan) -> Option<(LogicalPlan, Vec<String>)> {
        match plan {
            LogicalPlan::TableScan(scan) => {
                let table = scan.table_name.table();
                let Some(unit) = self.units.get(table) else {
                    self.missing_units.borrow_mut().insert(table.to_owned());
                    return Some((plan.clone(), Vec::new()));
                };
                let k = self.next.get();
                self.next.set(k + 1);
                let hidden = format!("{HIDDEN_PREFIX}unit{k}");
                let scanned = LogicalPlanBuilder::scan_with_filters(
                    scan.table_name.clone(),
                    Arc::clone(&unit.source),
                    None,
                    scan.filters.clone(),
                )
                .ok()?
                .build()
                .ok()?;
                let qualifier = Some(scan.table_name.clone());
                let mut exprs: Vec<Expr> = scan
                    .projected_schema
                    .fields()
                    .iter()
                    .map(|f| Expr::Column(Column::new(qualifier.clone(), f.name())))
                    .collect();
                exprs.push(
                    Expr::Column(Column::new(qualifier.clone(), &unit.unit_column))
                        .alias_qualified(qualifier, &hidden),
                );
                let projection = Projection::try_new(exprs, Arc::new(scanned)).ok()?;
                Some((LogicalPlan::Projection(projection), vec![hidden]))
            }
            LogicalPlan::Projection(projection) => {
                let (input, names) = self.carry(&projection.input)?;
                let mut exprs = projection.expr.clone();
                for name in &names {
                    exprs.push(hidden_column(&input, name)?);
                }
                let projection = Projection::try_new(exprs, Arc::new(input)).ok()?;
                Some((LogicalPlan::Projection(projection), names))
            }
            LogicalPlan::Filter(_)
            | LogicalPlan::Sort(_)
            | LogicalPlan::Limit(_)
            | LogicalPlan::Repartition(_)
            | LogicalPlan::SubqueryAlias(_)
            | LogicalPlan::Window(_) => {
                let (input, names) = self.carry(plan.inputs()[0])?;
                Some((rebuild(plan, vec![input])?, names))
            }
            LogicalPlan::Join(join) => {
                let (left, left_names) = self.carry(&join.left)?;
                let (right, right_names) = self.carry(&join.right)?;
                let names = match join.join_type {
                    JoinType::LeftSemi | JoinType::LeftAnti | JoinType::LeftMark => left_names,
                    JoinType::RightSemi | JoinType::RightAnti | JoinType::RightMark => right_names,
                    _ => left_names.into_iter().chain(right_names).collect(),
                };
                Some((rebuild(plan, vec![left, right])?, names))
            }
            LogicalPlan::Union(union) => {
                let mut inputs = Vec::with_capacity(union.inputs.len());
                let mut arity = None;
                let mut first_names = Vec::new();
                for input in &union.inputs {
                    let (input, names) = self.carry(input)?;
                    match arity {
                        None => {
                            arity = Some(names.len());
                            first_names = names;
                        }
                        Some(n) if n == names.len() => {}
                        Some(_) => return None,
                    }
                    inputs.push(Arc::new(input));
                }
                let union = Union::try_new_with_loose_types(inputs).ok()?;
                Some((LogicalPlan::Union(union), first_names))
            }
            LogicalPlan::Values(_) | LogicalPlan::EmptyRelation(_) => {
                Some((plan.clone(), Vec::new()))
            }
            LogicalPlan::Distinct(datafusion::logical_expr::Distinct::All(_))
            | LogicalPlan::Aggregate(_) => self.carry_own_unit(plan),
            _ => None,
        }
    }

    /// A DISTINCT or an aggregate lets people through only as one of its own columns: a
    /// DISTINCT over a privacy-unit column, or an aggregate grouped by one (each of its rows
    /// is then one person's). That column is carried on under a hidden name; `None` when
    /// there is none (the people behind its rows cannot be told apart).
    fn carry_own_unit(&self, plan: &LogicalPlan) -> Option<(LogicalPlan, Vec<String>)> {
        let lineage = plan_lineage(plan, self.tables, self.defaults);
        let unit_sources: BTreeSet<String> = self
            .tables
            .iter()
            .filter(|t| self.units.contains_key(&t.name))
            .filter_map(|t| {
                t.privacy_unit
                    .as_ref()
                    .map(|u| format!("{}.{}", t.name, u.name))
            })
            .collect();
        let i = lineage.columns.iter().position(|c| {
            c.bare && c.sources.len() == 1 && c.sources.iter().all(|s| unit_sources.contains(s))
        })?;
        let k = self.next.get();
        self.next.set(k + 1);
        let hidden = format!("{HIDDEN_PREFIX}unit{k}");
        let mut exprs: Vec<Expr> = plan
            .schema()
            .iter()
            .map(|(qualifier, field)| Expr::Column(Column::new(qualifier.cloned(), field.name())))
            .collect();
        exprs.push(Expr::Column(Column::from(plan.schema().qualified_field(i))).alias(&hidden));
        let projection = Projection::try_new(exprs, Arc::new(plan.clone())).ok()?;
        Some((LogicalPlan::Projection(projection), vec![hidden]))
    }
}

/// `aggregate` with a FILTER clause.
fn with_filter(aggregate: Expr, filter: &Option<Box<Expr>>) -> Expr {
    match (aggregate, filter) {
        (Expr::AggregateFunction(mut function), Some(filter)) => {
            function.params.filter = Some(filter.clone());
            Expr::AggregateFunction(function)
        }
        (aggregate, _) => aggregate,
    }
}
