//! Lineage over a logical plan: for each output column, its source columns, their strictest
//! classification, whether it is aggregated or masked and by which functions; for the plan,
//! the source columns that decide which rows (or groups) appear: filters, join keys, group
//! keys, sort keys, window partitions.
//!
//! Plan nodes the walker does not understand count as "depends on everything, direct
//! identifier", so an unknown shape can only make checks stricter, and they are named in
//! [`PlanLineage::unanalysable`]: such a plan cannot be exported.

use std::cell::RefCell;
use std::collections::BTreeSet;

use datafusion::common::tree_node::TreeNode;
use datafusion::logical_expr::{Expr, ExprSchemable, LogicalPlan};
use shuyu_policy::{Classification, MaskingDefaults, MaskingRule};

use crate::masking::MASKING_FUNCTIONS;
use crate::schema::TableSpec;

/// Aggregates whose output does not reproduce an input value (so a cell over ≥ k rows hides
/// each of them). min, max, first_value, array_agg, string_agg, median… are not here: they
/// return an input value and count as row-level.
const SUMMARISING_AGGREGATES: [&str; 14] = [
    "count",
    "sum",
    "avg",
    "mean",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "var",
    "var_pop",
    "var_samp",
    "var_population",
    "covar_pop",
    "covar_samp",
    "corr",
];

/// Lineage of one output column.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OutputColumn {
    /// Output name.
    pub name: String,
    /// Arrow type, as text.
    pub data_type: String,
    /// Source columns as `dataset_name.column`.
    pub sources: Vec<String>,
    /// Strictest classification among the sources (`Ordinary` when none).
    #[serde(with = "crate::worker::text")]
    pub classification: Classification,
    /// Output of a summarising aggregate (count, sum, avg…).
    pub aggregated: bool,
    /// Output of a masking function applied to the bare source column it masks, with
    /// parameters at least as coarse as that column's own masking rule (masking by proof),
    /// or derived only from such outputs.
    pub masked: bool,
    /// The value of one source column unchanged (through renames, joins, group keys, lossless
    /// casts and unions of such columns): not computed from it.
    #[serde(default)]
    pub bare: bool,
    /// A plain per-person aggregate (sum, count, avg, min or max of one bare column, no
    /// filter) of an aggregate grouped by a privacy unit: one value per person, which an
    /// outer aggregate may analyse as that person's contribution.
    #[serde(default)]
    pub per_unit: bool,
    /// Rule applied when the column is shown to an engineer.
    #[serde(with = "crate::worker::text")]
    pub preview_rule: MaskingRule,
    /// Aggregate and window functions the value went through (lower case, sorted).
    #[serde(default)]
    pub functions: Vec<String>,
}

/// How a source column influences which rows or groups a result has.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct RowInfluence {
    /// `dataset_name.column`.
    pub source: String,
    /// `filter`, `join_key`, `group_key`, `sort_key` or `window_key`.
    pub role: String,
    /// The source column's classification (the strictest when unknown).
    #[serde(default = "strictest", with = "crate::worker::text")]
    pub classification: Classification,
}

fn strictest() -> Classification {
    Classification::DirectIdentifier
}

/// Lineage of a whole plan.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PlanLineage {
    /// One entry per output column.
    pub columns: Vec<OutputColumn>,
    /// Source columns that decide which rows or groups appear, with how.
    pub row_influencing: Vec<RowInfluence>,
    /// Parts of the plan the walker could not analyse (empty when it understood all).
    pub unanalysable: Vec<String>,
}

#[derive(Debug, Clone)]
struct Info {
    sources: BTreeSet<String>,
    classification: Classification,
    aggregated: bool,
    masked: bool,
    /// The value of one source column unchanged.
    bare: bool,
    /// A plain per-person aggregate (see [`OutputColumn::per_unit`]).
    per_unit: bool,
    /// The source column's own rule, when the column is that source column unchanged.
    rule: Option<MaskingRule>,
    functions: BTreeSet<String>,
}

impl Info {
    fn constant() -> Info {
        Info {
            sources: BTreeSet::new(),
            classification: Classification::Ordinary,
            aggregated: false,
            masked: false,
            bare: false,
            per_unit: false,
            rule: None,
            functions: BTreeSet::new(),
        }
    }

    fn unknown(all_sources: &BTreeSet<String>) -> Info {
        Info {
            sources: all_sources.clone(),
            classification: Classification::DirectIdentifier,
            aggregated: false,
            masked: false,
            bare: false,
            per_unit: false,
            rule: None,
            functions: BTreeSet::new(),
        }
    }

    fn merge<'a>(infos: impl IntoIterator<Item = &'a Info>) -> Info {
        let mut out = Info::constant();
        let mut n = 0;
        let mut all_aggregated = true;
        let mut all_masked = true;
        let mut all_bare = true;
        let mut rules: Vec<Option<MaskingRule>> = Vec::new();
        for info in infos {
            n += 1;
            out.sources.extend(info.sources.iter().cloned());
            out.classification = out.classification.max(info.classification);
            out.functions.extend(info.functions.iter().cloned());
            all_aggregated &= info.aggregated;
            all_masked &= info.masked;
            all_bare &= info.bare;
            rules.push(info.rule.clone());
        }
        out.aggregated = n > 0 && all_aggregated;
        out.masked = n > 0 && all_masked;
        out.per_unit = false;
        // Rows of bare columns stacked together (a union) are still source values; their
        // rule is the inputs' one rule, if they agree.
        out.bare = n > 0 && all_bare;
        out.rule = match rules.split_first() {
            Some((first, rest)) if out.bare && rest.iter().all(|r| r == first) => first.clone(),
            _ => None,
        };
        out
    }
}

/// Lineage of every output column of `plan`.
pub fn column_lineage(
    plan: &LogicalPlan,
    tables: &[TableSpec],
    defaults: &MaskingDefaults,
) -> Vec<OutputColumn> {
    plan_lineage(plan, tables, defaults).columns
}

/// Lineage of `plan`: its output columns, the row-influencing source columns and what could
/// not be analysed.
pub fn plan_lineage(
    plan: &LogicalPlan,
    tables: &[TableSpec],
    defaults: &MaskingDefaults,
) -> PlanLineage {
    let all_sources: BTreeSet<String> = tables
        .iter()
        .flat_map(|t| {
            t.columns
                .iter()
                .map(move |c| format!("{}.{}", t.name, c.name))
        })
        .collect();
    let classes: std::collections::HashMap<String, Classification> = tables
        .iter()
        .flat_map(|t| {
            t.columns
                .iter()
                .map(move |c| (format!("{}.{}", t.name, c.name), c.classification))
        })
        .collect();
    let walker = Walker {
        tables,
        classes,
        all_sources,
        influence: RefCell::new(BTreeSet::new()),
        unanalysable: RefCell::new(BTreeSet::new()),
    };
    let infos = walker.walk(plan);
    let columns = plan
        .schema()
        .fields()
        .iter()
        .zip(infos)
        .map(|(field, info)| {
            let preview_rule = if info.masked || info.aggregated {
                MaskingRule::Keep
            } else if let Some(rule) = &info.rule {
                rule.clone()
            } else {
                defaults.rule_for(info.classification).clone()
            };
            OutputColumn {
                name: field.name().clone(),
                data_type: field.data_type().to_string(),
                sources: info.sources.into_iter().collect(),
                classification: info.classification,
                aggregated: info.aggregated,
                masked: info.masked,
                bare: info.bare,
                per_unit: info.per_unit,
                preview_rule,
                functions: info.functions.into_iter().collect(),
            }
        })
        .collect();
    PlanLineage {
        columns,
        row_influencing: walker.influence.into_inner().into_iter().collect(),
        unanalysable: walker.unanalysable.into_inner().into_iter().collect(),
    }
}

struct Walker<'a> {
    tables: &'a [TableSpec],
    classes: std::collections::HashMap<String, Classification>,
    all_sources: BTreeSet<String>,
    influence: RefCell<BTreeSet<RowInfluence>>,
    unanalysable: RefCell<BTreeSet<String>>,
}

impl Walker<'_> {
    fn walk(&self, plan: &LogicalPlan) -> Vec<Info> {
        let n_out = plan.schema().fields().len();
        let infos = self.walk_node(plan);
        match infos {
            Some(infos) if infos.len() == n_out => infos,
            _ => {
                self.cannot_analyse(crate::session::node_name(plan));
                vec![Info::unknown(&self.all_sources); n_out]
            }
        }
    }

    fn influence(&self, source: String, role: &str) -> RowInfluence {
        RowInfluence {
            classification: self
                .classes
                .get(&source)
                .copied()
                .unwrap_or(Classification::DirectIdentifier),
            source,
            role: role.to_owned(),
        }
    }

    fn cannot_analyse(&self, what: String) {
        self.unanalysable.borrow_mut().insert(what);
    }

    /// Records the sources of every column `exprs` reference (over `input`) with `role`.
    fn influences<'e>(
        &self,
        exprs: impl IntoIterator<Item = &'e Expr>,
        input: &LogicalPlan,
        inputs: &[Info],
        role: &str,
    ) {
        for expr in exprs {
            let info = self.refs_info(expr, input, inputs);
            let mut influence = self.influence.borrow_mut();
            for source in info.sources {
                influence.insert(self.influence(source, role));
            }
        }
    }

    fn walk_node(&self, plan: &LogicalPlan) -> Option<Vec<Info>> {
        Some(match plan {
            LogicalPlan::TableScan(scan) => {
                let Some(table) = self
                    .tables
                    .iter()
                    .find(|t| t.name == scan.table_name.table())
                else {
                    self.cannot_analyse("a scan of an unknown table".to_owned());
                    return None;
                };
                let infos: Vec<Info> = scan
                    .projected_schema
                    .fields()
                    .iter()
                    .map(
                        |field| match table.columns.iter().find(|c| &c.name == field.name()) {
                            Some(column) => Info {
                                sources: BTreeSet::from([format!(
                                    "{}.{}",
                                    table.name, column.name
                                )]),
                                classification: column.classification,
                                aggregated: false,
                                masked: false,
                                bare: true,
                                per_unit: false,
                                rule: Some(column.masking.clone()),
                                functions: BTreeSet::new(),
                            },
                            None => Info::unknown(&self.all_sources),
                        },
                    )
                    .collect();
                if !scan.filters.is_empty() {
                    // Pushed-down filters reference the table's columns by name.
                    let mut influence = self.influence.borrow_mut();
                    for filter in &scan.filters {
                        for column in filter.column_refs() {
                            influence.insert(
                                self.influence(format!("{}.{}", table.name, column.name), "filter"),
                            );
                        }
                    }
                }
                infos
            }
            LogicalPlan::Projection(projection) => {
                let inputs = self.walk(&projection.input);
                projection
                    .expr
                    .iter()
                    .map(|e| self.expr_info(e, &projection.input, &inputs))
                    .collect()
            }
            LogicalPlan::Filter(filter) => {
                let inputs = self.walk(&filter.input);
                self.influences([&filter.predicate], &filter.input, &inputs, "filter");
                inputs
            }
            LogicalPlan::Sort(sort) => {
                let inputs = self.walk(&sort.input);
                self.influences(
                    sort.expr.iter().map(|s| &s.expr),
                    &sort.input,
                    &inputs,
                    "sort_key",
                );
                inputs
            }
            LogicalPlan::Limit(_) | LogicalPlan::Repartition(_) | LogicalPlan::SubqueryAlias(_) => {
                self.walk(plan.inputs()[0])
            }
            LogicalPlan::Distinct(datafusion::logical_expr::Distinct::All(input)) => {
                // Every column decides which rows remain, as a group key would.
                let inputs = self.walk(input);
                let mut influence = self.influence.borrow_mut();
                for info in &inputs {
                    for source in &info.sources {
                        influence.insert(self.influence(source.clone(), "group_key"));
                    }
                }
                inputs
            }
            LogicalPlan::Subquery(subquery) => self.walk(&subquery.subquery),
            LogicalPlan::Aggregate(aggregate) => {
                let inputs = self.walk(&aggregate.input);
                self.influences(
                    &aggregate.group_expr,
                    &aggregate.input,
                    &inputs,
                    "group_key",
                );
                let mut out: Vec<Info> = aggregate
                    .group_expr
                    .iter()
                    .map(|e| self.expr_info(e, &aggregate.input, &inputs))
                    .collect();
                let by_unit = out.iter().any(|g| self.is_unit_column(g));
                out.extend(aggregate.aggr_expr.iter().map(|e| {
                    let mut info = self.expr_info(e, &aggregate.input, &inputs);
                    info.per_unit = by_unit && plain_per_unit(e, &aggregate.input, &inputs);
                    info
                }));
                out
            }
            LogicalPlan::Window(window) => {
                let mut out = self.walk(&window.input);
                let inputs = out.clone();
                for e in &window.window_expr {
                    let mut info = self.refs_info(e, &window.input, &inputs);
                    info.aggregated = false;
                    info.masked = false;
                    if let Expr::WindowFunction(function) = e.clone().unalias() {
                        info.functions
                            .insert(function.fun.name().to_ascii_lowercase());
                        self.influences(
                            function
                                .params
                                .partition_by
                                .iter()
                                .chain(function.params.order_by.iter().map(|s| &s.expr)),
                            &window.input,
                            &inputs,
                            "window_key",
                        );
                    }
                    out.push(info);
                }
                out
            }
            LogicalPlan::Join(join) => {
                let left = self.walk(&join.left);
                let right = self.walk(&join.right);
                for (l, r) in &join.on {
                    self.influences([l], &join.left, &left, "join_key");
                    self.influences([r], &join.right, &right, "join_key");
                }
                if let Some(filter) = &join.filter {
                    // The filter sees both sides: resolve it over the concatenated inputs.
                    let both: Vec<Info> = left.iter().chain(&right).cloned().collect();
                    let schema = join.left.schema().join(join.right.schema());
                    match schema {
                        Ok(schema) => {
                            for column in filter.column_refs() {
                                let sources = match schema.index_of_column(column) {
                                    Ok(i) if i < both.len() => both[i].sources.clone(),
                                    _ => self.all_sources.clone(),
                                };
                                let mut influence = self.influence.borrow_mut();
                                for source in sources {
                                    influence.insert(self.influence(source, "join_key"));
                                }
                            }
                        }
                        Err(_) => self.cannot_analyse("a join filter".to_owned()),
                    }
                }
                let n_out = plan.schema().fields().len();
                if n_out == left.len() + right.len() {
                    left.into_iter().chain(right).collect()
                } else if n_out == left.len() {
                    left
                } else if n_out == right.len() {
                    right
                } else {
                    return None;
                }
            }
            LogicalPlan::Union(union) => {
                let per_input: Vec<Vec<Info>> = union.inputs.iter().map(|i| self.walk(i)).collect();
                let n_out = plan.schema().fields().len();
                (0..n_out)
                    .map(|i| Info::merge(per_input.iter().filter_map(|infos| infos.get(i))))
                    .collect()
            }
            LogicalPlan::Values(_) | LogicalPlan::EmptyRelation(_) => {
                vec![Info::constant(); plan.schema().fields().len()]
            }
            _ => return None,
        })
    }

    /// Lineage of an expression over `input`'s columns.
    fn expr_info(&self, expr: &Expr, input: &LogicalPlan, inputs: &[Info]) -> Info {
        match expr {
            Expr::Alias(alias) => self.expr_info(&alias.expr, input, inputs),
            Expr::Column(column) => match input.schema().index_of_column(column) {
                Ok(i) => inputs
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| Info::unknown(&self.all_sources)),
                Err(_) => Info::unknown(&self.all_sources),
            },
            Expr::Cast(cast) => self.cast_info(&cast.expr, cast.field.data_type(), input, inputs),
            Expr::TryCast(cast) => {
                self.cast_info(&cast.expr, cast.field.data_type(), input, inputs)
            }
            Expr::ScalarFunction(function) if MASKING_FUNCTIONS.contains(&function.name()) => {
                let mut info = self.refs_info(expr, input, inputs);
                if self.masks_by_proof(function, input, inputs) {
                    info.masked = true;
                    info.aggregated = false;
                }
                info
            }
            Expr::AggregateFunction(function) => {
                let mut info = self.refs_info(expr, input, inputs);
                let name = function.func.name().to_ascii_lowercase();
                info.masked = false;
                info.aggregated = SUMMARISING_AGGREGATES.contains(&name.as_str());
                info.functions.insert(name);
                info
            }
            Expr::Literal(..) => Info::constant(),
            _ => self.refs_info(expr, input, inputs),
        }
    }

    /// Whether `info` is a privacy-unit column of a scanned table, unchanged.
    fn is_unit_column(&self, info: &Info) -> bool {
        info.bare
            && info.sources.len() == 1
            && info.sources.iter().all(|source| {
                self.tables.iter().any(|t| {
                    t.privacy_unit
                        .as_ref()
                        .is_some_and(|u| *source == format!("{}.{}", t.name, u.name))
                })
            })
    }

    /// Lineage of `CAST(inner AS to)`: a lossless cast of a bare column keeps it bare (its
    /// values are the source values); any other cast is a derived value.
    fn cast_info(
        &self,
        inner: &Expr,
        to: &datafusion::arrow::datatypes::DataType,
        input: &LogicalPlan,
        inputs: &[Info],
    ) -> Info {
        let inner_info = self.expr_info(inner, input, inputs);
        let from = inner.get_type(input.schema().as_ref()).ok();
        if inner_info.bare && from.as_ref().is_some_and(|from| lossless_cast(from, to)) {
            return inner_info;
        }
        let mut info = self.refs_info(inner, input, inputs);
        info.aggregated = inner_info.aggregated;
        info.masked = inner_info.masked;
        info
    }

    /// Whether a masking function call masks by proof: its argument is a bare source
    /// column, of the type the function is for, and the function with its parameters
    /// covers the column's own masking rule ([`MaskingRule::covers`]).
    fn masks_by_proof(
        &self,
        function: &datafusion::logical_expr::expr::ScalarFunction,
        input: &LogicalPlan,
        inputs: &[Info],
    ) -> bool {
        let Some(arg) = function.args.first() else {
            return false;
        };
        let Expr::Column(column) = arg else {
            return false;
        };
        let Ok(i) = input.schema().index_of_column(column) else {
            return false;
        };
        let Some(info) = inputs.get(i) else {
            return false;
        };
        let (true, Some(column_rule)) = (info.bare, &info.rule) else {
            return false;
        };
        let Some(rule) = crate::masking::rule_of_call(function.name(), &function.args) else {
            return false;
        };
        let data_type = input.schema().field(i).data_type();
        crate::masking::applies_to(&rule, data_type) && rule.covers(column_rule)
    }

    /// Merged lineage of every column an expression references (a derived value).
    fn refs_info(&self, expr: &Expr, input: &LogicalPlan, inputs: &[Info]) -> Info {
        // A subquery's columns are not in `column_refs`: treat it as depending on everything.
        let has_subquery = expr
            .exists(|e| {
                Ok(matches!(
                    e,
                    Expr::ScalarSubquery(_) | Expr::Exists(_) | Expr::InSubquery(_)
                ))
            })
            .unwrap_or(true);
        if has_subquery {
            self.cannot_analyse("a subquery expression".to_owned());
            return Info::unknown(&self.all_sources);
        }
        let schema = input.schema();
        let mut referenced = Vec::new();
        for column in expr.column_refs() {
            match schema.index_of_column(column) {
                Ok(i) if i < inputs.len() => referenced.push(&inputs[i]),
                _ => {
                    self.cannot_analyse(format!("a reference to column {}", column.name));
                    return Info::unknown(&self.all_sources);
                }
            }
        }
        let mut info = Info::merge(referenced);
        info.rule = None;
        info.bare = false;
        info
    }
}

/// Whether aggregate `e` (over `input`) is plain: sum, count, avg, min or max of one bare
/// column (or of nothing, `count(*)`), without DISTINCT, FILTER or ORDER BY.
fn plain_per_unit(e: &Expr, input: &LogicalPlan, inputs: &[Info]) -> bool {
    let Expr::AggregateFunction(function) = e.clone().unalias() else {
        return false;
    };
    let name = function.func.name().to_ascii_lowercase();
    let params = &function.params;
    if !["sum", "count", "avg", "mean", "min", "max"].contains(&name.as_str())
        || params.distinct
        || params.filter.is_some()
        || !params.order_by.is_empty()
    {
        return false;
    }
    params.args.iter().all(|arg| match arg {
        Expr::Literal(..) => true,
        Expr::Column(column) => input
            .schema()
            .index_of_column(column)
            .ok()
            .and_then(|i| inputs.get(i))
            .is_some_and(|info| info.bare),
        _ => false,
    })
}

/// Whether every value of type `from` survives a cast to `to` unchanged (so the cast of a
/// bare column is still its source values): the same type, text to text, or integers to
/// wider integers or to floats that hold them.
pub(crate) fn lossless_cast(
    from: &datafusion::arrow::datatypes::DataType,
    to: &datafusion::arrow::datatypes::DataType,
) -> bool {
    use datafusion::arrow::datatypes::DataType::*;
    let text =
        |t: &datafusion::arrow::datatypes::DataType| matches!(t, Utf8 | LargeUtf8 | Utf8View);
    from == to
        || (text(from) && text(to))
        || matches!(
            (from, to),
            (Int8 | Int16 | Int32, Int64 | Float64)
                | (Int8 | Int16, Int32 | Float32)
                | (UInt8 | UInt16 | UInt32, Int64 | UInt64 | Float64)
                | (Int64 | UInt64, Decimal128(..))
                | (Float32, Float64)
                | (Date32, Date64)
        )
}
