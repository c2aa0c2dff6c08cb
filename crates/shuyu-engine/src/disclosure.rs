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

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, NullEquality, TableReference};
use datafusion::functions::expr_fn::abs;
use datafusion::functions_aggregate::expr_fn::{count, sum};
use datafusion::logical_expr::{
    Aggregate, AggregateUDF, Expr, JoinType, LogicalPlan, LogicalPlanBuilder, Projection,
    SubqueryAlias, TableSource, Union, lit,
};
use shuyu_policy::{Classification, MaskingDefaults};

use crate::lineage::plan_lineage;
use crate::schema::TableSpec;
use crate::sketch::Largest;

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
/// Alias of the per-unit statistics joined back to the groups.
const STATS_ALIAS: &str = "__shuyu_stats";

/// Aggregates whose cells are sums of contributions (dominance and p% apply).
const SUM_LIKE: [&str; 3] = ["sum", "avg", "mean"];

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
    /// Units could not be counted: rows were, for this reason.
    Rows(String),
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
) -> (LogicalPlan, DisclosureMeta) {
    let rewriter = Rewriter {
        tables,
        units,
        defaults,
        unit_sketch,
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
                UnitCount::Rows(format!(
                    "no privacy-unit column reaches the aggregate (datasets without one: {}): \
                     rows counted",
                    missing.iter().cloned().collect::<Vec<_>>().join(", ")
                ))
            }
            Some(_) => UnitCount::Counted(unit_names.len()),
        };

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

        // Sum-like aggregates over sensitive columns.
        let lineage = plan_lineage(
            &LogicalPlan::Aggregate(aggregate.clone()),
            self.tables,
            self.defaults,
        );
        let n_group = aggregate.group_expr.len();
        let mut sum_like: Vec<(String, Expr, Option<Box<Expr>>)> = Vec::new();
        for (j, expr) in aggregate.aggr_expr.iter().enumerate() {
            let sensitive = lineage
                .columns
                .get(n_group + j)
                .is_none_or(|c| c.classification >= Classification::Sensitive);
            if let Expr::AggregateFunction(function) = expr.clone().unalias() {
                let name = function.func.name().to_ascii_lowercase();
                if sensitive
                    && SUM_LIKE.contains(&name.as_str())
                    && let Some(arg) = function.params.args.first()
                {
                    sum_like.push((
                        expr.schema_name().to_string(),
                        arg.clone(),
                        function.params.filter.clone(),
                    ));
                }
            }
        }
        let grouping_sets = aggregate
            .group_expr
            .iter()
            .any(|e| matches!(e, Expr::GroupingSet(_)));

        let mut dominance = Vec::new();
        let mut dominance_missing = Vec::new();
        let plan = if sum_like.is_empty() {
            LogicalPlan::Aggregate(
                Aggregate::try_new(Arc::clone(&input), aggregate.group_expr.clone(), aggr_expr)
                    .ok()?,
            )
        } else if unit_names.is_empty() {
            // Each row is a contributor: the statistics fit in the aggregate itself.
            for (j, (name, arg, filter)) in sum_like.iter().enumerate() {
                let value = abs(arg.clone());
                aggr_expr
                    .push(with_filter(sum(value.clone()), filter).alias(dominance_total_column(j)));
                for i in 1..=self.top {
                    aggr_expr.push(
                        with_filter(Largest::udaf(i).call(vec![value.clone()]), filter)
                            .alias(dominance_top_column(j, i)),
                    );
                }
                dominance.push(DominanceColumn {
                    aggregate: name.clone(),
                    top: self.top,
                    per_unit: false,
                });
            }
            LogicalPlan::Aggregate(
                Aggregate::try_new(Arc::clone(&input), aggregate.group_expr.clone(), aggr_expr)
                    .ok()?,
            )
        } else if grouping_sets {
            dominance_missing.extend(sum_like.iter().map(|(name, ..)| name.clone()));
            LogicalPlan::Aggregate(
                Aggregate::try_new(Arc::clone(&input), aggregate.group_expr.clone(), aggr_expr)
                    .ok()?,
            )
        } else {
            let groups = LogicalPlan::Aggregate(
                Aggregate::try_new(Arc::clone(&input), aggregate.group_expr.clone(), aggr_expr)
                    .ok()?,
            );
            match self.per_unit_stats(&groups, &input, aggregate, &unit_names[0], &sum_like) {
                Some(plan) => {
                    dominance.extend(sum_like.iter().map(|(name, ..)| DominanceColumn {
                        aggregate: name.clone(),
                        top: self.top,
                        per_unit: true,
                    }));
                    plan
                }
                None => {
                    dominance_missing.extend(sum_like.iter().map(|(name, ..)| name.clone()));
                    groups
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
            },
        ))
    }

    /// `groups` joined (null-safe, on the group keys) with the per-unit contribution
    /// statistics of each sum-like aggregate: contributions are summed per group and unit
    /// first, then their total and largest values taken per group.
    fn per_unit_stats(
        &self,
        groups: &LogicalPlan,
        input: &Arc<LogicalPlan>,
        aggregate: &Aggregate,
        unit: &str,
        sum_like: &[(String, Expr, Option<Box<Expr>>)],
    ) -> Option<LogicalPlan> {
        let n_group = aggregate.group_expr.len();
        let unit_column = hidden_column(input, unit)?;
        let mut inner_groups: Vec<Expr> = aggregate
            .group_expr
            .iter()
            .enumerate()
            .map(|(g, e)| e.clone().alias(format!("{HIDDEN_PREFIX}g{g}")))
            .collect();
        inner_groups.push(unit_column.alias(format!("{HIDDEN_PREFIX}unit")));
        let contributions: Vec<Expr> = sum_like
            .iter()
            .enumerate()
            .map(|(j, (_, arg, filter))| {
                with_filter(sum(abs(arg.clone())), filter).alias(format!("{HIDDEN_PREFIX}c{j}"))
            })
            .collect();
        let inner = LogicalPlan::Aggregate(
            Aggregate::try_new(Arc::clone(input), inner_groups, contributions).ok()?,
        );
        let outer_groups: Vec<Expr> = (0..n_group)
            .map(|g| Expr::Column(Column::from_name(format!("{HIDDEN_PREFIX}g{g}"))))
            .collect();
        let mut stats = Vec::new();
        for j in 0..sum_like.len() {
            let c = Expr::Column(Column::from_name(format!("{HIDDEN_PREFIX}c{j}")));
            stats.push(sum(c.clone()).alias(dominance_total_column(j)));
            for i in 1..=self.top {
                stats.push(
                    Largest::udaf(i)
                        .call(vec![c.clone()])
                        .alias(dominance_top_column(j, i)),
                );
            }
        }
        let outer =
            LogicalPlan::Aggregate(Aggregate::try_new(Arc::new(inner), outer_groups, stats).ok()?);
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
        for j in 0..sum_like.len() {
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

    /// Why carrying units through `plan` fails, or an empty string when it does not.
    fn carry_failed_reason(&self, plan: &LogicalPlan) -> String {
        let mut reason = String::new();
        let _ = plan.apply(|node| {
            let blocking = match node {
                LogicalPlan::Aggregate(_) => Some("a nested aggregate"),
                LogicalPlan::Distinct(_) => Some("DISTINCT"),
                LogicalPlan::Union(_) => Some("a UNION of differently shaped inputs"),
                LogicalPlan::Unnest(_) => Some("UNNEST"),
                _ => None,
            };
            if let Some(what) = blocking {
                reason = format!("privacy units cannot be counted through {what}: rows counted");
                return Ok(TreeNodeRecursion::Stop);
            }
            Ok(TreeNodeRecursion::Continue)
        });
        if reason.is_empty() {
            reason = "privacy units cannot be counted through this plan: rows counted".into();
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
            _ => None,
        }
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
