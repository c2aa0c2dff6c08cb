//! What an aggregate over protected data computes, as the export gate analyses it: every such
//! aggregate is either analysed or refused (default deny).
//!
//! An argument is analysable when it is one *measure* — a bare source column, or a plain
//! per-person aggregate of one ([`crate::OutputColumn::per_unit`]), scaled by literals and
//! shifted by literals — taken in *branches* chosen by conditions: `CASE`, `FILTER`,
//! `COALESCE`, `NULLIF`, `abs` (a choice by sign) and predicates cast to numbers. A cell then
//! reveals, for each branch, a count or a sum over the rows that take it, and nothing else:
//!
//! - every branch's people are a *population* of the cell, counted (at least k, or none) and
//!   recorded in the release ledger like the group's own population, so a condition that
//!   picks out one person (`CASE WHEN person_id = 'x' …`), or a later cell that leaves one
//!   person's value out (`… THEN 0 ELSE cost END`), is caught as a small population or as a
//!   population a few people away from one released before;
//! - the measure's per-person contributions are taken on the measure itself — literal
//!   branches and additive shifts removed, since they only add known amounts — for the
//!   dominance and p% rules; variances and models on per-person sums of squared deviations
//!   from the cell's mean;
//! - an argument whose value depends on a direct identifier (other than counting people), a
//!   measure computed before the aggregate, two measures combined, branches that weigh the
//!   measure differently, non-linear functions (rounding, modulo, …), DISTINCT sums and
//!   bitwise aggregates of protected values, and aggregates the gate does not know are
//!   refused with the reason.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::functions::expr_fn::coalesce;
use datafusion::logical_expr::expr::{AggregateFunction, ScalarFunction};
use datafusion::logical_expr::{BinaryExpr, Expr, ExprSchemable, LogicalPlan, Operator, lit};
use shuyu_policy::Classification;

use crate::lineage::OutputColumn;

/// Most branches one argument may have.
const MAX_BRANCHES: usize = 32;

/// What an aggregate function computes, for the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Counts rows or distinct values (count, approx_distinct, regr_count).
    Count,
    /// Sums the measure (sum, avg, mean).
    Sum,
    /// Second moments of the measure (var, stddev…).
    Variance,
    /// Two-variable models (corr, covar, regr_*): second moments of each argument.
    Model,
    /// One input value (min, max, median, percentiles).
    Extreme,
    /// Whether any or every row holds (bool_and, bool_or).
    Flag,
    /// Returns input values as they are (first_value, array_agg…): the
    /// `reproduced_values` check refuses them when protected.
    Reproducing,
    /// Bitwise combinations of values.
    Bitwise,
    /// Not data (grouping()).
    Grouping,
}

/// The kind of aggregate function `name` (lower case), if the gate knows it.
pub(crate) fn kind_of(name: &str) -> Option<Kind> {
    Some(match name {
        "count" | "approx_distinct" | "regr_count" => Kind::Count,
        "sum" | "avg" | "mean" => Kind::Sum,
        "var" | "var_pop" | "var_samp" | "var_population" | "var_sample" | "stddev"
        | "stddev_pop" | "stddev_samp" => Kind::Variance,
        "corr" | "covar" | "covar_pop" | "covar_samp" | "regr_slope" | "regr_intercept"
        | "regr_r2" | "regr_avgx" | "regr_avgy" | "regr_sxx" | "regr_syy" | "regr_sxy" => {
            Kind::Model
        }
        "min"
        | "max"
        | "median"
        | "approx_median"
        | "percentile_cont"
        | "quantile_cont"
        | "approx_percentile_cont"
        | "approx_percentile_cont_with_weight" => Kind::Extreme,
        "bool_and" | "bool_or" => Kind::Flag,
        "first_value" | "last_value" | "nth_value" | "array_agg" | "string_agg" | "any_value" => {
            Kind::Reproducing
        }
        "bit_and" | "bit_or" | "bit_xor" => Kind::Bitwise,
        "grouping" => Kind::Grouping,
        _ => return None,
    })
}

/// One measure whose per-person contributions the gate needs.
#[derive(Debug, Clone)]
pub(crate) struct Measure {
    /// The measure's column, over the aggregate's input.
    pub value: Expr,
    /// The rows it is taken on (`None`: every row).
    pub condition: Option<Expr>,
    /// Sums of squared deviations from the cell's mean (variances, models), rather than
    /// sums of absolute values.
    pub centered: bool,
}

/// What the gate must compute for one analysed aggregate.
#[derive(Debug, Clone, Default)]
pub(crate) struct Analysis {
    /// Conditions over the aggregate's input whose people must number at least k (or
    /// none, unless the condition reads a direct identifier: the flag) in every cell, and
    /// that enter the release ledger.
    pub populations: Vec<(Expr, bool)>,
    /// Measures for the dominance and p% rules.
    pub measures: Vec<Measure>,
}

/// The value of one branch of an argument.
#[derive(Debug, Clone)]
enum Value {
    /// NULL: the rows taking this branch do not enter the aggregate.
    Null,
    /// A literal (its number, when it is one).
    Literal(Option<f64>),
    /// The measure, multiplied by `coefficient` (shifts by literals dropped).
    Measure {
        column: Expr,
        coefficient: f64,
        classification: Classification,
    },
}

/// Rows meeting every condition of `conditions` take `value`.
#[derive(Debug, Clone)]
struct Branch {
    conditions: Vec<Expr>,
    value: Value,
}

impl Branch {
    fn always(value: Value) -> Branch {
        Branch {
            conditions: Vec::new(),
            value,
        }
    }

    fn condition(&self) -> Option<Expr> {
        conjunction(self.conditions.iter().cloned())
    }
}

/// `p` is true (false when it is NULL). Written with COALESCE rather than `IS TRUE`: the
/// physical form of `IS TRUE` declares itself nullable while the logical one does not, and
/// the planner refuses a plan whose common subexpressions disagree.
fn holds(p: Expr) -> Expr {
    coalesce(vec![p, lit(false)])
}

/// `p` is false (not NULL).
fn fails(p: Expr) -> Expr {
    !coalesce(vec![p, lit(true)])
}

fn conjunction(conditions: impl IntoIterator<Item = Expr>) -> Option<Expr> {
    conditions.into_iter().reduce(Expr::and)
}

fn disjunction(conditions: impl IntoIterator<Item = Option<Expr>>) -> Option<Expr> {
    let mut out: Option<Expr> = None;
    for condition in conditions {
        match condition {
            // One branch taken by every row: so is the union.
            None => return None,
            Some(c) => out = Some(out.map_or(c.clone(), |o| o.or(c))),
        }
    }
    out
}

/// The analysis context: the aggregate's input and its columns' lineage.
struct Context<'a> {
    input: &'a LogicalPlan,
    lineage: &'a [OutputColumn],
}

impl Context<'_> {
    fn data_type(&self, e: &Expr) -> Option<DataType> {
        e.get_type(self.input.schema().as_ref()).ok()
    }

    fn is_boolean(&self, e: &Expr) -> bool {
        self.data_type(e) == Some(DataType::Boolean)
    }

    /// The branches of expression `e`.
    fn branches(&self, e: &Expr) -> Result<Vec<Branch>, String> {
        let out = self.branches_inner(e)?;
        if out.len() > MAX_BRANCHES {
            return Err(format!(
                "it has more than {MAX_BRANCHES} conditional branches"
            ));
        }
        Ok(out)
    }

    fn branches_inner(&self, e: &Expr) -> Result<Vec<Branch>, String> {
        if has_subquery(e) {
            return Err("it holds a subquery".into());
        }
        if let Expr::Literal(value, _) = e {
            return Ok(vec![Branch::always(literal(value))]);
        }
        if self.is_boolean(e) {
            // A predicate: its rows split into those where it holds and those where not.
            return Ok(vec![
                Branch {
                    conditions: vec![holds(e.clone())],
                    value: Value::Literal(Some(1.0)),
                },
                Branch {
                    conditions: vec![fails(e.clone())],
                    value: Value::Literal(Some(0.0)),
                },
            ]);
        }
        match e {
            Expr::Alias(alias) => self.branches(&alias.expr),
            Expr::Column(column) => {
                let info = self
                    .input
                    .schema()
                    .index_of_column(column)
                    .ok()
                    .and_then(|i| self.lineage.get(i))
                    .ok_or_else(|| format!("column {} cannot be traced", column.name))?;
                if info.classification != Classification::Ordinary && !info.bare && !info.per_unit {
                    return Err(format!(
                        "its value {} is computed from protected columns before the \
                         aggregate: compute it inside the aggregate",
                        column.name
                    ));
                }
                Ok(vec![Branch::always(Value::Measure {
                    column: e.clone(),
                    coefficient: 1.0,
                    classification: info.classification,
                })])
            }
            Expr::Cast(cast) => self.cast(&cast.expr, cast.field.data_type()),
            Expr::TryCast(cast) => self.cast(&cast.expr, cast.field.data_type()),
            Expr::Negative(inner) => Ok(self
                .branches(inner)?
                .into_iter()
                .map(|b| Branch {
                    value: match b.value {
                        Value::Literal(v) => Value::Literal(v.map(|v| -v)),
                        other => other,
                    },
                    conditions: b.conditions,
                })
                .collect()),
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                let left = self.branches(left)?;
                let right = self.branches(right)?;
                let mut out = Vec::with_capacity(left.len() * right.len());
                for l in &left {
                    for r in &right {
                        let mut conditions = l.conditions.clone();
                        conditions.extend(r.conditions.iter().cloned());
                        out.push(Branch {
                            conditions,
                            value: combine(*op, &l.value, &r.value)?,
                        });
                        if out.len() > MAX_BRANCHES {
                            return Err(format!(
                                "it has more than {MAX_BRANCHES} conditional branches"
                            ));
                        }
                    }
                }
                Ok(out)
            }
            Expr::Case(case) => {
                let mut out = Vec::new();
                let mut not_before: Vec<Expr> = Vec::new();
                for (when, then) in &case.when_then_expr {
                    let condition = match &case.expr {
                        Some(base) => base.as_ref().clone().eq(when.as_ref().clone()),
                        None => when.as_ref().clone(),
                    };
                    if has_subquery(&condition) {
                        return Err("a condition holds a subquery".into());
                    }
                    for b in self.branches(then)? {
                        let mut conditions = not_before.clone();
                        conditions.push(holds(condition.clone()));
                        conditions.extend(b.conditions);
                        out.push(Branch {
                            conditions,
                            value: b.value,
                        });
                    }
                    not_before.push(!holds(condition));
                }
                let otherwise = match &case.else_expr {
                    Some(e) => self.branches(e)?,
                    None => vec![Branch::always(Value::Null)],
                };
                for b in otherwise {
                    let mut conditions = not_before.clone();
                    conditions.extend(b.conditions);
                    out.push(Branch {
                        conditions,
                        value: b.value,
                    });
                }
                Ok(out)
            }
            Expr::ScalarFunction(function) => self.function(e, function),
            _ if e.column_refs().is_empty() => Ok(vec![Branch::always(Value::Literal(None))]),
            other => Err(format!(
                "{} is not a shape the gate analyses",
                describe(other)
            )),
        }
    }

    fn cast(&self, inner: &Expr, to: &DataType) -> Result<Vec<Branch>, String> {
        let from = self.data_type(inner);
        let branches = self.branches(inner)?;
        if branches
            .iter()
            .any(|b| matches!(b.value, Value::Measure { .. }))
            && !from
                .as_ref()
                .is_some_and(|from| crate::lineage::lossless_cast(from, to))
        {
            return Err(format!(
                "it casts a protected value to {to}, which changes it (a rounding selects \
                 rows by their values)"
            ));
        }
        Ok(branches)
    }

    /// Functions with a conditional meaning are rewritten as CASE; any other function of a
    /// column is refused.
    fn function(&self, e: &Expr, function: &ScalarFunction) -> Result<Vec<Branch>, String> {
        use datafusion::logical_expr::{Case, when};
        let args = &function.args;
        let name = function.name().to_ascii_lowercase();
        let case = match (name.as_str(), args.as_slice()) {
            ("coalesce" | "nvl" | "ifnull", [_, ..]) => {
                let (last, firsts) = args.split_last().expect("non-empty");
                Expr::Case(Case::new(
                    None,
                    firsts
                        .iter()
                        .map(|a| (Box::new(a.clone().is_not_null()), Box::new(a.clone())))
                        .collect(),
                    Some(Box::new(last.clone())),
                ))
            }
            ("nullif", [a, b]) => when(a.clone().eq(b.clone()), lit(ScalarValue::Null))
                .otherwise(a.clone())
                .map_err(|e| e.to_string())?,
            ("abs", [a]) => when(a.clone().lt(lit(0)), Expr::Negative(Box::new(a.clone())))
                .otherwise(a.clone())
                .map_err(|e| e.to_string())?,
            _ if e.column_refs().is_empty() => {
                return Ok(vec![Branch::always(Value::Literal(None))]);
            }
            _ => {
                return Err(format!(
                    "the function {name}() changes values in a way the gate cannot analyse: \
                     apply it to the aggregate's result instead"
                ));
            }
        };
        self.branches(&case)
    }
}

fn literal(value: &ScalarValue) -> Value {
    if value.is_null() {
        return Value::Null;
    }
    let number = match value {
        ScalarValue::Boolean(Some(b)) => Some(if *b { 1.0 } else { 0.0 }),
        other => other
            .cast_to(&DataType::Float64)
            .ok()
            .and_then(|v| match v {
                ScalarValue::Float64(Some(f)) => Some(f),
                _ => None,
            }),
    };
    Value::Literal(number)
}

/// The value of `l op r` for one pair of branches.
fn combine(op: Operator, l: &Value, r: &Value) -> Result<Value, String> {
    use Value::*;
    Ok(match (l, r) {
        (Null, _) | (_, Null) => Null,
        (Literal(a), Literal(b)) => Literal(match (a, b, op) {
            (Some(a), Some(b), Operator::Plus) => Some(a + b),
            (Some(a), Some(b), Operator::Minus) => Some(a - b),
            (Some(a), Some(b), Operator::Multiply) => Some(a * b),
            (Some(a), Some(b), Operator::Divide) if *b != 0.0 => Some(a / b),
            _ => None,
        }),
        (m @ Measure { .. }, Literal(_)) | (Literal(_), m @ Measure { .. })
            if matches!(op, Operator::Plus | Operator::Minus) =>
        {
            m.clone()
        }
        (
            Measure {
                column,
                coefficient,
                classification,
            },
            Literal(Some(c)),
        )
        | (
            Literal(Some(c)),
            Measure {
                column,
                coefficient,
                classification,
            },
        ) if op == Operator::Multiply => {
            if *c == 0.0 {
                Literal(Some(0.0))
            } else {
                Measure {
                    column: column.clone(),
                    coefficient: coefficient * c.abs(),
                    classification: *classification,
                }
            }
        }
        (
            Measure {
                column,
                coefficient,
                classification,
            },
            Literal(Some(c)),
        ) if op == Operator::Divide && *c != 0.0 => Measure {
            column: column.clone(),
            coefficient: coefficient / c.abs(),
            classification: *classification,
        },
        (Measure { .. }, Measure { .. }) => {
            return Err(
                "it combines protected values with each other (the gate analyses one \
                 measure at a time)"
                    .into(),
            );
        }
        _ => {
            return Err(format!(
                "its operator {op} changes values in a way the gate cannot analyse"
            ));
        }
    })
}

fn has_subquery(e: &Expr) -> bool {
    use datafusion::common::tree_node::TreeNode;
    e.exists(|e| {
        Ok(matches!(
            e,
            Expr::ScalarSubquery(_)
                | Expr::Exists(_)
                | Expr::InSubquery(_)
                | Expr::SetComparison(_)
        ))
    })
    .unwrap_or(true)
}

fn describe(e: &Expr) -> String {
    let name = e.variant_name();
    format!("a {}", name.to_ascii_lowercase())
}

/// Analyses aggregate `e` (one of an `Aggregate` node's aggregate expressions) over its
/// input, whose columns have `lineage`; `protected` says whether its output derives from a
/// protected column. `Ok(None)`: nothing for the gate to compute (an ordinary aggregate,
/// `grouping()`, or a value-returning aggregate the `reproduced_values` check refuses).
///
/// # Errors
/// Why the gate refuses it.
pub(crate) fn analyse(
    e: &Expr,
    input: &LogicalPlan,
    lineage: &[OutputColumn],
    protected: bool,
) -> Result<Option<Analysis>, String> {
    let Expr::AggregateFunction(function) = e.clone().unalias() else {
        return Err("it is not an aggregate function call".into());
    };
    if !protected {
        return Ok(None);
    }
    let name = function.func.name().to_ascii_lowercase();
    let Some(kind) = kind_of(&name) else {
        return Err(format!("the gate does not analyse {name}()"));
    };
    let context = Context { input, lineage };
    analyse_kind(&context, kind, &name, &function).map_err(|why| format!("{name}(): {why}"))
}

fn analyse_kind(
    context: &Context<'_>,
    kind: Kind,
    name: &str,
    function: &AggregateFunction,
) -> Result<Option<Analysis>, String> {
    let params = &function.params;
    let filter = params.filter.as_deref().cloned().map(holds);
    if let Some(f) = &filter
        && has_subquery(f)
    {
        return Err("its FILTER holds a subquery".into());
    }
    let with_filter = |condition: Option<Expr>| -> Option<Expr> {
        conjunction(condition.into_iter().chain(filter.clone()))
    };
    // The expressions holding data: arguments with columns, and ORDER BY keys.
    let data_args: Vec<&Expr> = params
        .args
        .iter()
        .chain(params.order_by.iter().map(|s| &s.expr))
        .filter(|a| !a.column_refs().is_empty())
        .collect();
    let mut analysis = Analysis::default();
    match kind {
        Kind::Grouping | Kind::Reproducing => return Ok(None),
        Kind::Bitwise => {
            return Err("bitwise combinations of protected values are not analysed".into());
        }
        Kind::Count => {
            for arg in &data_args {
                // Validates the shape; a count only counts rows where it is not NULL.
                context.branches(arg)?;
            }
            let not_null = conjunction(data_args.iter().map(|a| (*a).clone().is_not_null()));
            if let Some(condition) = with_filter(not_null) {
                analysis.population(context, condition);
            }
        }
        Kind::Sum | Kind::Variance | Kind::Model | Kind::Extreme | Kind::Flag => {
            if params.distinct && kind != Kind::Extreme {
                return Err(
                    "DISTINCT values of a protected column cannot be attributed to people".into(),
                );
            }
            if data_args.is_empty() {
                return Ok(None);
            }
            for arg in &data_args {
                let branches = context.branches(arg)?;
                let mut measure_conditions = Vec::new();
                let mut coefficient: Option<f64> = None;
                let mut measure_column: Option<Expr> = None;
                for branch in &branches {
                    match &branch.value {
                        Value::Null => {}
                        // A zero adds nothing to a sum.
                        Value::Literal(Some(v)) if *v == 0.0 && kind == Kind::Sum => {}
                        Value::Literal(_) => {
                            if let Some(condition) = with_filter(branch.condition()) {
                                analysis.population(context, condition);
                            }
                        }
                        Value::Measure {
                            column,
                            coefficient: c,
                            classification,
                        } => {
                            if *classification == Classification::DirectIdentifier
                                && kind != Kind::Extreme
                            {
                                return Err(
                                    "its value depends on a direct identifier; only counting \
                                     people (count, count DISTINCT) is analysed"
                                        .into(),
                                );
                            }
                            match (&measure_column, coefficient) {
                                (Some(m), Some(k)) if m != column || k != *c => {
                                    return Err("its branches weigh the measure differently (one \
                                         person's value could be singled out by subtraction)"
                                        .into());
                                }
                                _ => {
                                    measure_column = Some(column.clone());
                                    coefficient = Some(*c);
                                }
                            }
                            let condition = conjunction(
                                branch
                                    .conditions
                                    .iter()
                                    .cloned()
                                    .chain([column.clone().is_not_null()]),
                            );
                            analysis
                                .population(context, with_filter(condition).expect("a condition"));
                            measure_conditions.push(branch.condition());
                        }
                    }
                }
                if let (Some(column), Kind::Sum | Kind::Variance | Kind::Model) =
                    (measure_column, kind)
                {
                    analysis.measures.push(Measure {
                        value: column,
                        condition: with_filter(disjunction(measure_conditions)),
                        centered: kind != Kind::Sum,
                    });
                }
            }
        }
    }
    let _ = name;
    Ok(Some(analysis))
}

impl Analysis {
    fn population(&mut self, context: &Context<'_>, condition: Expr) {
        let by_identifier = condition.column_refs().into_iter().any(|c| {
            context
                .input
                .schema()
                .index_of_column(c)
                .ok()
                .and_then(|i| context.lineage.get(i))
                .is_none_or(|info| info.classification == Classification::DirectIdentifier)
        });
        if !self
            .populations
            .iter()
            .any(|(c, _)| c.to_string() == condition.to_string())
        {
            self.populations.push((condition, by_identifier));
        }
    }
}
