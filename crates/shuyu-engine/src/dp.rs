//! Differential-privacy mode for counts, sums and means (issue 4), with OpenDP's
//! mechanisms: discrete (exact) Laplace noise, never hand-rolled floating-point noise.
//!
//! A DP job is one aggregate over one dataset with a privacy unit. The plan is rewritten so
//! that every person's influence is bounded before noise is added:
//!
//! 1. rows are summarised per (group, privacy unit): each measure's per-person count or sum;
//! 2. a person keeps at most `max_groups_per_unit` groups (L0 bound, `row_number()` over the
//!    person's groups);
//! 3. per-person counts are capped at `max_rows_per_unit` and per-person sums clamped to the
//!    declared `[lower, upper]` bounds (L∞ bound);
//! 4. per group: the capped counts and clamped sums are summed, and the people counted;
//! 5. each cell gets discrete Laplace noise from OpenDP, scale `L0 · Δ / ε_measure`; a mean
//!    is a noisy sum over a noisy count (two measures); the budget ε is split evenly over
//!    the measures plus the noisy people count;
//! 6. groups whose noisy people count is below the threshold τ are dropped, so a group's
//!    existence does not reveal one person (the stability-histogram argument): δ =
//!    L0 · P(1 + Z ≥ τ) for discrete Laplace Z.
//!
//! The user's projections, HAVING, ORDER BY and LIMIT then run on the noisy cells
//! (post-processing). [`DpGuarantee`] records ε, δ and the parameters with the job.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, Int64Array};
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use datafusion::common::{Column, DataFusionError, Result as DfResult, ScalarValue};
use datafusion::functions_aggregate::expr_fn::{count, sum};
use datafusion::functions_window::expr_fn::row_number;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{
    Aggregate, ColumnarValue, Expr, ExprFunctionExt, Filter, LogicalPlan, Projection,
    ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility, Window, case, lit,
};
use opendp::domains::{AtomDomain, VectorDomain};
use opendp::measurements::make_laplace;
use opendp::metrics::{AbsoluteDistance, L1Distance};

use crate::disclosure::HIDDEN_PREFIX;
use crate::error::JobError;

/// What an engineer asks of a DP job.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DpSpec {
    /// Total privacy loss of the job (ε), in (0, 10].
    pub epsilon: f64,
    /// Most groups one person contributes to (L0).
    pub max_groups_per_unit: u32,
    /// Most rows one person contributes to a count cell.
    pub max_rows_per_unit: u32,
    /// Clamping bounds of each summed or averaged column's per-person total.
    pub bounds: Vec<DpBound>,
    /// τ: groups with fewer noisy people are dropped.
    pub threshold: u64,
}

/// Bounds of a column's per-person total.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DpBound {
    /// Column name in the dataset.
    pub column: String,
    /// Lower clamp.
    pub lower: f64,
    /// Upper clamp.
    pub upper: f64,
}

/// The guarantee a DP job's result carries.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DpGuarantee {
    /// Privacy loss spent, by basic composition of the measures (≤ the requested ε).
    pub epsilon: f64,
    /// Probability bound of the group-release threshold.
    pub delta: f64,
    /// τ.
    pub threshold: u64,
    /// Measures noised (cells per group), with their noise scales.
    pub measures: Vec<(String, f64)>,
    /// The L0 and count bounds used.
    pub max_groups_per_unit: u32,
    /// Rows per person per count cell.
    pub max_rows_per_unit: u32,
}

impl DpSpec {
    /// Checks the parameters.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.epsilon > 0.0 && self.epsilon <= 10.0) {
            return Err(format!("epsilon must be in (0, 10], not {}", self.epsilon));
        }
        if !(1..=100).contains(&self.max_groups_per_unit) {
            return Err("max_groups_per_unit must be between 1 and 100".into());
        }
        if !(1..=1000).contains(&self.max_rows_per_unit) {
            return Err("max_rows_per_unit must be between 1 and 1000".into());
        }
        for b in &self.bounds {
            if !(b.lower.is_finite() && b.upper.is_finite() && b.lower < b.upper) {
                return Err(format!(
                    "the bounds of {} must be finite with lower < upper",
                    b.column.chars().take(64).collect::<String>()
                ));
            }
        }
        Ok(())
    }
}

fn refused(reason: impl Into<String>) -> JobError {
    JobError::Refused(format!("differential-privacy mode: {}", reason.into()))
}

fn internal(e: DataFusionError) -> JobError {
    JobError::Execution {
        detail: format!("building the DP plan: {e}"),
    }
}

/// Carries the privacy-unit column through a plan (see `disclosure::carry_units`).
pub(crate) type Carry<'a> = &'a dyn Fn(&LogicalPlan) -> Option<(LogicalPlan, Vec<String>)>;

/// One measure of the aggregate.
enum Measure {
    Count { arg: Option<Expr> },
    Sum { arg: Expr, bound: f64 },
    Avg { arg: Expr, bound: f64 },
}

/// Rewrites `plan` (analysed) into its DP form. `carry` adds the privacy-unit column to the
/// aggregate's input (see [`crate::disclosure`]).
pub(crate) fn rewrite(
    plan: &LogicalPlan,
    spec: &DpSpec,
    carry: Carry<'_>,
) -> Result<(LogicalPlan, DpGuarantee), JobError> {
    spec.validate().map_err(refused)?;
    match plan {
        LogicalPlan::Aggregate(aggregate) => aggregate_dp(aggregate, spec, carry),
        LogicalPlan::Projection(_)
        | LogicalPlan::Filter(_)
        | LogicalPlan::Sort(_)
        | LogicalPlan::Limit(_)
        | LogicalPlan::SubqueryAlias(_) => {
            let (input, guarantee) = rewrite(plan.inputs()[0], spec, carry)?;
            let rebuilt = plan
                .with_new_exprs(plan.expressions(), vec![input])
                .map_err(internal)?;
            Ok((rebuilt, guarantee))
        }
        _ => Err(refused(
            "the query must be one aggregate (GROUP BY with count, sum or avg), optionally \
             under projections, HAVING, ORDER BY and LIMIT",
        )),
    }
}

fn aggregate_dp(
    aggregate: &Aggregate,
    spec: &DpSpec,
    carry: Carry<'_>,
) -> Result<(LogicalPlan, DpGuarantee), JobError> {
    if aggregate
        .group_expr
        .iter()
        .any(|e| matches!(e, Expr::GroupingSet(_)))
    {
        return Err(refused("grouping sets are not supported"));
    }
    let (input, units) = carry(&aggregate.input).ok_or_else(|| {
        refused("the aggregate's input must be scans, filters, projections and joins")
    })?;
    let [unit] = units.as_slice() else {
        return Err(refused(
            "the query must read exactly one dataset with a privacy unit",
        ));
    };
    let unit_col = Expr::Column(
        input
            .schema()
            .qualified_field_with_unqualified_name(unit)
            .map(|(q, f)| Column::new(q.cloned(), f.name()))
            .map_err(internal)?,
    );

    // The measures, with their per-person bounds.
    let bound_of = |arg: &Expr| -> Result<f64, JobError> {
        let columns: Vec<String> = arg.column_refs().iter().map(|c| c.name.clone()).collect();
        let [column] = columns.as_slice() else {
            return Err(refused("sum and avg must take one column"));
        };
        let b = spec
            .bounds
            .iter()
            .find(|b| &b.column == column)
            .ok_or_else(|| {
                refused(format!(
                    "sum or avg over {column} needs bounds of one person's total (--bound \
                     {column}:LOWER:UPPER)"
                ))
            })?;
        Ok(b.lower.abs().max(b.upper.abs()))
    };
    let mut measures = Vec::new();
    for expr in &aggregate.aggr_expr {
        let Expr::AggregateFunction(function) = expr.clone().unalias() else {
            return Err(refused("every aggregate must be count, sum or avg"));
        };
        if function.params.distinct || function.params.filter.is_some() {
            return Err(refused("DISTINCT and FILTER aggregates are not supported"));
        }
        let arg = function.params.args.first().cloned();
        let name = function.func.name().to_ascii_lowercase();
        measures.push(match (name.as_str(), arg) {
            ("count", arg) => Measure::Count {
                arg: arg.filter(|a| !matches!(a, Expr::Literal(..))),
            },
            ("sum", Some(arg)) => Measure::Sum {
                bound: bound_of(&arg)?,
                arg,
            },
            ("avg" | "mean", Some(arg)) => Measure::Avg {
                bound: bound_of(&arg)?,
                arg,
            },
            _ => {
                return Err(refused(format!(
                    "{name} is not available: use count, sum or avg"
                )));
            }
        });
    }

    let g = |i: usize| format!("{HIDDEN_PREFIX}dpg{i}");
    let hidden_col = |name: String| Expr::Column(Column::from_name(name));
    // 1. Per group and person.
    let mut inner_groups: Vec<Expr> = aggregate
        .group_expr
        .iter()
        .enumerate()
        .map(|(i, e)| e.clone().alias(g(i)))
        .collect();
    inner_groups.push(unit_col.alias(format!("{HIDDEN_PREFIX}dpu")));
    let mut inner_aggs = Vec::new();
    for (j, m) in measures.iter().enumerate() {
        match m {
            Measure::Count { arg } => {
                let counted = arg.clone().unwrap_or_else(|| lit(1));
                inner_aggs.push(count(counted).alias(format!("{HIDDEN_PREFIX}dpc{j}")));
            }
            Measure::Sum { arg, .. } => {
                inner_aggs.push(sum(arg.clone()).alias(format!("{HIDDEN_PREFIX}dps{j}")));
            }
            Measure::Avg { arg, .. } => {
                inner_aggs.push(sum(arg.clone()).alias(format!("{HIDDEN_PREFIX}dps{j}")));
                inner_aggs.push(count(arg.clone()).alias(format!("{HIDDEN_PREFIX}dpc{j}")));
            }
        }
    }
    let inner = LogicalPlan::Aggregate(
        Aggregate::try_new(Arc::new(input), inner_groups, inner_aggs).map_err(internal)?,
    );
    // 2. At most L0 groups per person.
    let n_group = aggregate.group_expr.len();
    let rank = row_number()
        .partition_by(vec![hidden_col(format!("{HIDDEN_PREFIX}dpu"))])
        .order_by(
            (0..n_group)
                .map(|i| hidden_col(g(i)).sort(true, true))
                .collect(),
        )
        .build()
        .map_err(internal)?
        .alias(format!("{HIDDEN_PREFIX}dprank"));
    let ranked =
        LogicalPlan::Window(Window::try_new(vec![rank], Arc::new(inner)).map_err(internal)?);
    let limited = LogicalPlan::Filter(
        Filter::try_new(
            hidden_col(format!("{HIDDEN_PREFIX}dprank"))
                .lt_eq(lit(i64::from(spec.max_groups_per_unit))),
            Arc::new(ranked),
        )
        .map_err(internal)?,
    );
    // 3–4. Bounded per-person contributions, summed per group.
    let cap = |e: Expr, hi: f64| -> Expr {
        case(e.clone().gt(lit(hi)))
            .when(lit(true), lit(hi))
            .otherwise(e)
            .expect("case")
    };
    let clamp = |e: Expr, lo: f64, hi: f64| -> Expr {
        let e = Expr::Cast(datafusion::logical_expr::Cast::new(
            Box::new(e),
            DataType::Float64,
        ));
        let zeroed = case(e.clone().is_null())
            .when(lit(true), lit(0.0))
            .otherwise(e)
            .expect("case");
        case(zeroed.clone().gt(lit(hi)))
            .when(lit(true), lit(hi))
            .otherwise(
                case(zeroed.clone().lt(lit(lo)))
                    .when(lit(true), lit(lo))
                    .otherwise(zeroed)
                    .expect("case"),
            )
            .expect("case")
    };
    let max_rows = i64::from(spec.max_rows_per_unit);
    let mut outer_aggs = vec![count(lit(1)).alias(format!("{HIDDEN_PREFIX}dpn"))];
    for (j, m) in measures.iter().enumerate() {
        let c = hidden_col(format!("{HIDDEN_PREFIX}dpc{j}"));
        let s = hidden_col(format!("{HIDDEN_PREFIX}dps{j}"));
        let (lo, hi) = match m {
            Measure::Sum { arg, .. } | Measure::Avg { arg, .. } => bounds_of(spec, arg),
            Measure::Count { .. } => (0.0, 0.0),
        };
        match m {
            Measure::Count { .. } => {
                outer_aggs
                    .push(sum(cap(c, max_rows as f64)).alias(format!("{HIDDEN_PREFIX}dpm{j}")));
            }
            Measure::Sum { .. } => {
                outer_aggs.push(sum(clamp(s, lo, hi)).alias(format!("{HIDDEN_PREFIX}dpm{j}")));
            }
            Measure::Avg { .. } => {
                outer_aggs.push(sum(clamp(s, lo, hi)).alias(format!("{HIDDEN_PREFIX}dpm{j}")));
                outer_aggs
                    .push(sum(cap(c, max_rows as f64)).alias(format!("{HIDDEN_PREFIX}dpd{j}")));
            }
        }
    }
    let outer_groups: Vec<Expr> = (0..n_group).map(|i| hidden_col(g(i))).collect();
    let outer = LogicalPlan::Aggregate(
        Aggregate::try_new(Arc::new(limited), outer_groups, outer_aggs).map_err(internal)?,
    );

    // 5. Noise. The budget is split evenly over the noised quantities.
    let n_noised = 1 + measures
        .iter()
        .map(|m| {
            if matches!(m, Measure::Avg { .. }) {
                2
            } else {
                1
            }
        })
        .sum::<usize>();
    let per = spec.epsilon / n_noised as f64;
    let l0 = f64::from(spec.max_groups_per_unit);
    let mut spent = 0.0;
    let mut scales = Vec::new();
    let mut noise = |name: &str, sensitivity: f64, integer: bool| -> Result<Expr, JobError> {
        let (scale, epsilon) = calibrate(l0 * sensitivity, per, integer)?;
        spent += epsilon;
        scales.push((name.to_owned(), scale));
        let udf = Arc::new(ScalarUDF::from(Laplace::new(scale, integer)));
        Ok(Expr::ScalarFunction(ScalarFunction::new_udf(
            udf,
            vec![hidden_col(name.to_owned())],
        )))
    };
    let units_name = format!("{HIDDEN_PREFIX}dpn");
    let mut exprs: Vec<Expr> = Vec::new();
    for i in 0..n_group {
        let (qualifier, field) = aggregate.schema.qualified_field(i);
        exprs.push(hidden_col(g(i)).alias_qualified(qualifier.cloned(), field.name()));
    }
    for (j, m) in measures.iter().enumerate() {
        let (qualifier, field) = aggregate.schema.qualified_field(n_group + j);
        let m_name = format!("{HIDDEN_PREFIX}dpm{j}");
        let value = match m {
            Measure::Count { .. } => noise(&m_name, max_rows as f64, true)?,
            Measure::Sum { bound, .. } => noise(&m_name, *bound, false)?,
            Measure::Avg { bound, .. } => {
                let numerator = noise(&m_name, *bound, false)?;
                let denominator = noise(&format!("{HIDDEN_PREFIX}dpd{j}"), max_rows as f64, true)?;
                // A mean over a noisy count of at most zero is undefined: NULL.
                case(denominator.clone().gt(lit(0_i64)))
                    .when(
                        lit(true),
                        numerator
                            / Expr::Cast(datafusion::logical_expr::Cast::new(
                                Box::new(denominator),
                                DataType::Float64,
                            )),
                    )
                    .otherwise(lit(ScalarValue::Float64(None)))
                    .map_err(internal)?
            }
        };
        let value = Expr::Cast(datafusion::logical_expr::Cast::new(
            Box::new(value),
            field.data_type().clone(),
        ));
        exprs.push(value.alias_qualified(qualifier.cloned(), field.name()));
    }
    let noisy_units = noise(&units_name, 1.0, true)?;
    exprs.push(noisy_units.alias(format!("{HIDDEN_PREFIX}dp_units")));
    let noised =
        LogicalPlan::Projection(Projection::try_new(exprs, Arc::new(outer)).map_err(internal)?);
    // 6. Threshold on the noisy people count, then the aggregate's own schema.
    let kept = LogicalPlan::Filter(
        Filter::try_new(
            hidden_col(format!("{HIDDEN_PREFIX}dp_units")).gt_eq(lit(spec.threshold as i64)),
            Arc::new(noised),
        )
        .map_err(internal)?,
    );
    let restored: Vec<Expr> = aggregate
        .schema
        .iter()
        .map(|(q, f)| Expr::Column(Column::new(q.cloned(), f.name())))
        .collect();
    let plan =
        LogicalPlan::Projection(Projection::try_new(restored, Arc::new(kept)).map_err(internal)?);

    let units_scale = scales.last().map(|(_, s)| *s).unwrap_or(1.0);
    // Discrete Laplace: P(Z ≥ t) = e^{-t/b} / (1 + e^{-1/b}).
    let tail =
        (-(spec.threshold as f64 - 1.0) / units_scale).exp() / (1.0 + (-1.0 / units_scale).exp());
    Ok((
        plan,
        DpGuarantee {
            epsilon: spent,
            delta: (l0 * tail).min(1.0),
            threshold: spec.threshold,
            measures: scales,
            max_groups_per_unit: spec.max_groups_per_unit,
            max_rows_per_unit: spec.max_rows_per_unit,
        },
    ))
}

/// The noise scale for L1 sensitivity `sensitivity` and budget `epsilon`, with the ε OpenDP's
/// privacy map gives for it (never above `epsilon`).
fn calibrate(sensitivity: f64, epsilon: f64, integer: bool) -> Result<(f64, f64), JobError> {
    let mut scale = sensitivity / epsilon;
    for _ in 0..8 {
        let spent = if integer {
            make_laplace(
                VectorDomain::new(AtomDomain::<i64>::default()),
                L1Distance::<i64>::default(),
                scale,
                None,
            )
            .and_then(|m| m.map(&(sensitivity.ceil() as i64)))
        } else {
            make_laplace(
                VectorDomain::new(AtomDomain::<f64>::new_non_nan()),
                L1Distance::<f64>::default(),
                scale,
                None,
            )
            .and_then(|m| m.map(&sensitivity))
        }
        .map_err(|e| refused(format!("the noise cannot be calibrated: {e}")))?;
        if spent <= epsilon {
            return Ok((scale, spent));
        }
        scale *= 1.0 + 1e-9 + (spent - epsilon) / epsilon;
    }
    Err(refused("the noise cannot be calibrated to the budget"))
}

/// Adds discrete Laplace noise (OpenDP) to every value: `__shuyu_dp_laplace(value)`.
#[derive(Debug)]
struct Laplace {
    signature: Signature,
    scale: f64,
    integer: bool,
}

impl Laplace {
    fn new(scale: f64, integer: bool) -> Laplace {
        Laplace {
            signature: Signature::any(1, Volatility::Volatile),
            scale,
            integer,
        }
    }
}

impl PartialEq for Laplace {
    fn eq(&self, other: &Self) -> bool {
        self.scale.to_bits() == other.scale.to_bits() && self.integer == other.integer
    }
}
impl Eq for Laplace {}
impl Hash for Laplace {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.scale.to_bits().hash(state);
        self.integer.hash(state);
    }
}

impl ScalarUDFImpl for Laplace {
    fn name(&self) -> &str {
        "__shuyu_dp_laplace"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(if self.integer {
            DataType::Int64
        } else {
            DataType::Float64
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let n = args.number_rows;
        let values = args.args[0].clone().into_array(n)?;
        let noisy: ArrayRef = if self.integer {
            let values = arrow::compute::cast(&values, &DataType::Int64)?;
            let values = values.as_primitive::<Int64Type>();
            let mechanism = make_laplace(
                AtomDomain::<i64>::default(),
                AbsoluteDistance::<i64>::default(),
                self.scale,
                None,
            )
            .map_err(opendp_error)?;
            let mut out = Vec::with_capacity(values.len());
            for i in 0..values.len() {
                let v = if values.is_null(i) {
                    0
                } else {
                    values.value(i)
                };
                out.push(mechanism.invoke(&v).map_err(opendp_error)?);
            }
            Arc::new(Int64Array::from(out))
        } else {
            let values = arrow::compute::cast(&values, &DataType::Float64)?;
            let values = values.as_primitive::<Float64Type>();
            let mechanism = make_laplace(
                AtomDomain::<f64>::new_non_nan(),
                AbsoluteDistance::<f64>::default(),
                self.scale,
                None,
            )
            .map_err(opendp_error)?;
            let mut out = Vec::with_capacity(values.len());
            for i in 0..values.len() {
                let v = if values.is_null(i) {
                    0.0
                } else {
                    values.value(i)
                };
                out.push(mechanism.invoke(&v).map_err(opendp_error)?);
            }
            Arc::new(Float64Array::from(out))
        };
        Ok(ColumnarValue::Array(noisy))
    }
}

fn opendp_error(e: opendp::error::Error) -> DataFusionError {
    DataFusionError::Execution(format!("OpenDP: {}", e.variant))
}

/// The declared clamp of the single column `arg` reads.
fn bounds_of(spec: &DpSpec, arg: &Expr) -> (f64, f64) {
    let name = arg
        .column_refs()
        .iter()
        .next()
        .map(|c| c.name.clone())
        .unwrap_or_default();
    spec.bounds
        .iter()
        .find(|b| b.column == name)
        .map(|b| (b.lower, b.upper))
        .unwrap_or((0.0, 0.0))
}

/// Stack of the thread that parses a DP job's SQL for its tables. A flat expression chain
/// (`1+1+…`) under the SQL size cap nests tens of thousands of levels, and walking or
/// dropping its syntax tree recurses once per level: far past an ordinary thread's stack,
/// well within this one (only the touched pages are committed).
pub const PARSE_STACK_BYTES: usize = 256 << 20;

/// The table names a SQL text reads (parsed, not planned), for charging a DP job's budget
/// before it runs. The text is parsed on a thread of its own with a [`PARSE_STACK_BYTES`]
/// stack, and refused when its expressions nest deeper than [`MAX_EXPRESSION_DEPTH`] (the
/// worker's limit), so that no engineer's SQL can overflow the caller's stack; a panic
/// while parsing is a refusal, not the caller's panic.
///
/// [`MAX_EXPRESSION_DEPTH`]: crate::MAX_EXPRESSION_DEPTH
///
/// # Errors
/// A message (naming no part of the text) when the text does not parse as one statement,
/// nests too deep or names no resolvable tables.
pub fn referenced_tables(sql: &str) -> Result<Vec<String>, String> {
    let sql = sql.to_owned();
    let parse = std::thread::Builder::new()
        .name("shuyu-dp-tables".into())
        .stack_size(PARSE_STACK_BYTES)
        .spawn(move || tables_of(&sql))
        .map_err(|_| "the SQL could not be analysed now; try again".to_owned())?;
    parse
        .join()
        .unwrap_or_else(|_| Err("the SQL could not be analysed".to_owned()))
}

fn tables_of(sql: &str) -> Result<Vec<String>, String> {
    use datafusion::sql::parser::DFParserBuilder;
    let mut statements = DFParserBuilder::new(sql)
        .build()
        .and_then(|mut p| p.parse_statements())
        .map_err(|_| "the SQL does not parse".to_owned())?;
    let (Some(statement), true) = (statements.pop_front(), statements.is_empty()) else {
        return Err("exactly one SQL statement is expected".into());
    };
    if nesting_exceeds(&statement, crate::MAX_EXPRESSION_DEPTH) {
        return Err(format!(
            "the query nests expressions more than {} levels deep",
            crate::MAX_EXPRESSION_DEPTH
        ));
    }
    let (tables, _) = datafusion::sql::resolve::resolve_table_references(&statement, true)
        .map_err(|_| "the SQL's tables cannot be resolved".to_owned())?;
    let mut names: Vec<String> = tables.iter().map(|t| t.table().to_owned()).collect();
    names.sort();
    names.dedup();
    Ok(names)
}

/// Whether `statement`'s expressions nest deeper than `limit`; the walk stops there, so it
/// never recurses deeper itself.
fn nesting_exceeds(statement: &datafusion::sql::parser::Statement, limit: usize) -> bool {
    use std::ops::ControlFlow;

    use datafusion::sql::parser::Statement as DfStatement;
    use datafusion::sql::sqlparser::ast::{Expr as SqlExpr, Visit, Visitor};

    struct Depth {
        current: usize,
        limit: usize,
    }
    impl Visitor for Depth {
        type Break = ();
        fn pre_visit_expr(&mut self, _expr: &SqlExpr) -> ControlFlow<()> {
            self.current += 1;
            if self.current > self.limit {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        }
        fn post_visit_expr(&mut self, _expr: &SqlExpr) -> ControlFlow<()> {
            self.current -= 1;
            ControlFlow::Continue(())
        }
    }
    match statement {
        DfStatement::Statement(statement) => {
            statement.visit(&mut Depth { current: 0, limit }).is_break()
        }
        // DataFusion's own statements (CREATE EXTERNAL TABLE, COPY, EXPLAIN of those) hold
        // no deep expressions; a DP job's plan refuses them anyway.
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_named_and_deep_or_broken_sql_is_refused_without_overflow() {
        assert_eq!(
            referenced_tables(
                "SELECT d, count(*) FROM visits v JOIN persons p ON v.id = p.id GROUP BY d"
            ),
            Ok(vec!["persons".to_owned(), "visits".to_owned()])
        );
        // The flat chain that aborts a process on an ordinary stack: ~32,000 levels in
        // 64 KiB, refused by the depth cap.
        let chain = format!("SELECT {} AS x FROM visits", vec!["1"; 32_000].join("+"));
        assert!(chain.len() <= 65_536);
        let refused = referenced_tables(&chain).unwrap_err();
        assert!(refused.contains("levels deep"), "{refused}");
        // Just under the cap is fine.
        let shallow = format!("SELECT {} AS x FROM visits", vec!["1"; 900].join("+"));
        assert_eq!(referenced_tables(&shallow), Ok(vec!["visits".to_owned()]));
        assert!(referenced_tables("SELEC nothing").is_err());
        assert!(referenced_tables("SELECT 1; SELECT 2").is_err());
    }
}
