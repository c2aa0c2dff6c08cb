//! The export gate's automated disclosure checks over a staged result (R1, R22).
//!
//! Each check yields an outcome — pass, review (reviewers must look at the flagged cells) or
//! fail (the export cannot be approved) — with per-cell evidence for reviewers and a summary
//! for the requesting engineer that never says which cell was small or dominated.
//!
//! Aggregate results are checked per cell against the hidden columns the plan rewrite added
//! (see [`crate::disclosure`]): privacy units, dominance statistics, group rows. Row-level
//! results are checked for identifiers, reproduced sensitive values and k-anonymity over
//! their quasi-identifiers.

use std::collections::{HashMap, HashSet};

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use arrow::row::{RowConverter, SortField};
use shuyu_policy::{Classification, DisclosurePolicy};

use crate::disclosure::{
    DisclosureMeta, GROUP_ROWS_COLUMN, POPULATION_HEAD_PREFIX, POPULATION_PREFIX, UNIT_HEAD_PREFIX,
    UNITS_PREFIX, UnitCount, dominance_top_column, dominance_total_column, population_column,
};
use crate::error::EngineError;
use crate::lineage::{OutputColumn, RowInfluence};
use crate::session::JobOutput;
use crate::sketch::{
    AUDITED_UNITS, BOTTOM, Difference, SketchDigest, SketchRef, UnitSketch, sketch_refs, sketches,
};

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CheckOutcome {
    /// The result passes.
    Pass,
    /// The result may be approved, but reviewers must look at the flagged cells.
    Review,
    /// The result fails: the export cannot be approved.
    Fail,
}

impl CheckOutcome {
    /// Text form: `pass`, `review`, `fail`.
    pub fn as_str(&self) -> &'static str {
        match self {
            CheckOutcome::Pass => "pass",
            CheckOutcome::Review => "review",
            CheckOutcome::Fail => "fail",
        }
    }
}

/// One check's result.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckReport {
    /// Stable check name.
    pub name: &'static str,
    /// Outcome.
    pub outcome: CheckOutcome,
    /// Evidence for reviewers (which cells, rows or columns, with their figures).
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
    /// Whether no check failed (the export may go to review).
    pub fn passed(&self) -> bool {
        self.reports.iter().all(|r| r.outcome != CheckOutcome::Fail)
    }

    /// The worst outcome.
    pub fn outcome(&self) -> CheckOutcome {
        self.reports
            .iter()
            .map(|r| r.outcome)
            .max()
            .unwrap_or(CheckOutcome::Pass)
    }
}

/// What the checks read about a staged result.
#[derive(Debug, Clone, Copy)]
pub struct GateInput<'a> {
    /// Visible output columns with lineage.
    pub columns: &'a [OutputColumn],
    /// Plan parts lineage could not analyse.
    pub unanalysable: &'a [String],
    /// Source columns that decide which rows appear.
    pub row_influencing: &'a [RowInfluence],
    /// Hidden columns of the result.
    pub disclosure: &'a DisclosureMeta,
    /// The staged result, hidden columns included (the unit sketches' heads may stand for
    /// the full sketches: see [`members_needed`]).
    pub batches: &'a [RecordBatch],
    /// Cells the tenant released before whose populations are near these cells' in size
    /// (see [`units_range`]).
    pub released: &'a [ReleasedCell],
}

impl<'a> GateInput<'a> {
    /// What the checks read of a job's staged result `batches`, from the job's output.
    pub fn of_output(
        output: &'a JobOutput,
        batches: &'a [RecordBatch],
        released: &'a [ReleasedCell],
    ) -> GateInput<'a> {
        GateInput {
            columns: &output.columns,
            unanalysable: &output.unanalysable,
            row_influencing: &output.row_influencing,
            disclosure: &output.disclosure,
            batches,
            released,
        }
    }
}

/// A cell of an earlier release, from the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleasedCell {
    /// The export that released it.
    pub export_id: String,
    /// Its row in that export.
    pub row: u64,
    /// Which of the row's populations ([`PopulationId::population`]).
    pub population: u32,
    /// Its population.
    pub sketch: UnitSketch,
    /// The sketch's digest ([`UnitSketch::digest`]), kept with it in the ledger.
    pub digest: SketchDigest,
    /// The threshold of the blocking differencing check its release passed (against every
    /// cell released before it), or `None` when it was not blocked on (the policy let
    /// reviewers judge close pairs) or is not known.
    pub screened_k: Option<u64>,
}

impl ReleasedCell {
    /// A released cell's population, its digest computed.
    pub fn new(
        export_id: impl Into<String>,
        at: PopulationId,
        sketch: UnitSketch,
        screened_k: Option<u64>,
    ) -> ReleasedCell {
        ReleasedCell {
            export_id: export_id.into(),
            row: at.row as u64,
            population: at.population as u32,
            digest: sketch.digest(),
            sketch,
            screened_k,
        }
    }
}

/// Where a population of a staged aggregate result is: its row, and which of the row's
/// populations — 0 for the cell's people (its first privacy unit), `1 + m` for branch
/// population `m` of its aggregates ([`crate::DisclosureMeta::populations`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PopulationId {
    /// The row.
    pub row: usize,
    /// 0: the cell's people; `1 + m`: branch population `m`.
    pub population: usize,
}

impl std::fmt::Display for PopulationId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.population {
            0 => write!(f, "row {}", self.row),
            p => write!(f, "row {} (branch population {})", self.row, p - 1),
        }
    }
}

/// The (full column, head column) names of population `p` of a staged result.
fn population_columns(p: usize) -> (String, String) {
    match p {
        0 => (format!("{UNITS_PREFIX}0"), format!("{UNIT_HEAD_PREFIX}0")),
        p => (
            population_column(p - 1),
            format!("{POPULATION_HEAD_PREFIX}{}", p - 1),
        ),
    }
}

/// How many populations (the cells' own and their branch populations) a result has.
fn n_populations(batches: &[RecordBatch]) -> usize {
    let Some(first) = batches.first() else {
        return 0;
    };
    let schema = first.schema();
    let branches = schema
        .fields()
        .iter()
        .filter(|f| f.name().starts_with(POPULATION_PREFIX))
        .count()
        .max(
            schema
                .fields()
                .iter()
                .filter(|f| f.name().starts_with(POPULATION_HEAD_PREFIX))
                .count(),
        );
    1 + branches
}

/// Every population sketch of a staged aggregate result (the cells' own, of their first
/// privacy unit, and their branch populations), with where it is; rows without one are
/// left out.
pub fn result_sketches(batches: &[RecordBatch]) -> Vec<(PopulationId, UnitSketch)> {
    let mut out = Vec::new();
    for p in 0..n_populations(batches) {
        let (full, _) = population_columns(p);
        let mut offset = 0;
        for b in batches {
            if let Some(column) = b.column_by_name(&full) {
                for (i, sketch) in sketches(column).into_iter().enumerate() {
                    if let Some(sketch) = sketch {
                        out.push((
                            PopulationId {
                                row: offset + i,
                                population: p,
                            },
                            sketch,
                        ));
                    }
                }
            }
            offset += b.num_rows();
        }
    }
    out.sort_by_key(|(at, _)| *at);
    let mut seen: HashSet<(usize, SketchDigest)> = HashSet::new();
    out.retain(|(at, sketch)| seen.insert((at.row, sketch.digest())));
    out
}

/// Every population sketch of a staged aggregate result, borrowed in place: the full sketch
/// when it was read, else its head.
fn result_refs(batches: &[RecordBatch]) -> Vec<(PopulationId, SketchRef<'_>)> {
    let mut out = Vec::new();
    for p in 0..n_populations(batches) {
        let (full, head) = population_columns(p);
        let mut offset = 0;
        for b in batches {
            let refs: Vec<Option<SketchRef<'_>>> =
                match (b.column_by_name(&full), b.column_by_name(&head)) {
                    (Some(full), Some(head)) => sketch_refs(full)
                        .into_iter()
                        .zip(sketch_refs(head))
                        .map(|(f, h)| match (f, h) {
                            // The head's digest is the full sketch's (written from it).
                            (Some(f), Some(h)) if f.units() == h.units() => Some(f.with_head(&h)),
                            (f, _) => f,
                        })
                        .collect(),
                    (Some(column), None) | (None, Some(column)) => sketch_refs(column),
                    (None, None) => Vec::new(),
                };
            for (i, r) in refs.into_iter().enumerate() {
                if let Some(r) = r {
                    out.push((
                        PopulationId {
                            row: offset + i,
                            population: p,
                        },
                        r,
                    ));
                }
            }
            offset += b.num_rows();
        }
    }
    out.sort_by_key(|(at, _)| *at);
    // A branch population that is the row's people exactly (or another branch's) adds
    // nothing to compare.
    let mut seen: HashSet<(usize, SketchDigest)> = HashSet::new();
    out.retain(|(at, sketch)| seen.insert((at.row, sketch.digest())));
    out
}

/// Whether the checks of `input` — read with the sketches' heads in place of the full
/// sketches ([`crate::Engine::read_result_for_checks`]) — need the full sketches: for an
/// exact comparison of two close but different populations, or for the reconstruction
/// audit of small populations. When it says so, read the result whole and check that.
/// [`run_export_checks_on_heads`] asks this and runs the checks in one go.
pub fn members_needed(input: &GateInput<'_>, policy: &DisclosurePolicy) -> bool {
    let sketches = result_refs(input.batches);
    let found = compared_pairs(input, policy, &sketches);
    needs_members(input, &sketches, found.as_ref())
}

/// Every check of a result read with its sketches' heads
/// ([`crate::Engine::read_result_for_checks`]), or `None` when they need the full sketches
/// ([`members_needed`]): then read the result whole and [`run_export_checks`] that. The
/// close pairs of cells are searched for once, for both.
pub fn run_export_checks_on_heads(
    input: &GateInput<'_>,
    policy: &DisclosurePolicy,
) -> Option<ExportChecks> {
    let sketches = result_refs(input.batches);
    let found = compared_pairs(input, policy, &sketches);
    if needs_members(input, &sketches, found.as_ref()) {
        return None;
    }
    Some(checks_with(input, policy, &sketches, found.as_ref()))
}

/// The pairs of cells the differencing check compares, when it compares any (an aggregate
/// whose privacy units were counted, without noise).
fn compared_pairs<'a>(
    input: &GateInput<'a>,
    policy: &DisclosurePolicy,
    sketches: &[(PopulationId, SketchRef<'a>)],
) -> Option<Candidates<'a>> {
    (input.disclosure.aggregate
        && input.disclosure.dp.is_none()
        && matches!(&input.disclosure.units, UnitCount::Counted(_)))
    .then(|| difference_candidates(input, policy.min_entities, sketches))
}

/// [`members_needed`], the pairs compared already found.
fn needs_members(
    input: &GateInput<'_>,
    sketches: &[(PopulationId, SketchRef<'_>)],
    found: Option<&Candidates<'_>>,
) -> bool {
    if !input.disclosure.aggregate || input.disclosure.dp.is_some() {
        return false;
    }
    if !sketches.iter().any(|(_, s)| s.is_head()) {
        return false;
    }
    if audited_memberships(input, sketches).is_some_and(|m| m <= MAX_AUDITED_MEMBERSHIPS) {
        return true;
    }
    let Some(found) = found else {
        return false;
    };
    found.compared.contains(&Difference::Unknown)
}

/// The unit counts of released cells worth comparing with `sketches` under threshold `k`:
/// populations whose sizes differ by `k` or more cannot differ by fewer people.
pub fn units_range(sketches: &[(PopulationId, UnitSketch)], k: u64) -> Option<(u64, u64)> {
    range_of(sketches.iter().map(|(_, s)| s.units()), k)
}

/// [`units_range`] of a staged result's sketches, read in place.
pub fn result_units_range(batches: &[RecordBatch], k: u64) -> Option<(u64, u64)> {
    range_of(result_refs(batches).iter().map(|(_, s)| s.units()), k)
}

fn range_of(units: impl Iterator<Item = u64> + Clone, k: u64) -> Option<(u64, u64)> {
    let lo = units.clone().min()?;
    let hi = units.max()?;
    Some((lo.saturating_sub(k - 1), hi + (k - 1)))
}

/// Most evidence items listed per check.
const MAX_EVIDENCE: usize = 50;

/// Aggregates that return one input value: over a non-ordinary column they are flagged.
const EXTREMES: [&str; 7] = [
    "min",
    "max",
    "median",
    "approx_median",
    "percentile_cont",
    "approx_percentile_cont",
    "approx_percentile_cont_with_weight",
];

/// Model outputs: residual degrees of freedom apply (two fitted parameters).
const MODELS: [&str; 11] = [
    "regr_slope",
    "regr_intercept",
    "regr_r2",
    "regr_avgx",
    "regr_avgy",
    "regr_sxx",
    "regr_syy",
    "regr_sxy",
    "corr",
    "covar_pop",
    "covar_samp",
];

/// Runs every check.
pub fn run_export_checks(input: &GateInput<'_>, policy: &DisclosurePolicy) -> ExportChecks {
    let sketches = result_refs(input.batches);
    let found = compared_pairs(input, policy, &sketches);
    checks_with(input, policy, &sketches, found.as_ref())
}

/// Every check, the result's populations and the pairs of them compared given.
fn checks_with(
    input: &GateInput<'_>,
    policy: &DisclosurePolicy,
    sketches: &[(PopulationId, SketchRef<'_>)],
    found: Option<&Candidates<'_>>,
) -> ExportChecks {
    let mut reports = vec![lineage_analysable(input)];
    if input.disclosure.aggregate {
        reports.push(aggregates_analysed(input));
    }
    reports.push(direct_identifiers(input));
    if let Some(dp) = &input.disclosure.dp {
        // Noise and the threshold protect every cell and the groups' existence; repeated
        // releases are bounded by the privacy budget, not by the ledger.
        reports.push(pass(
            "differential_privacy",
            format!(
                "discrete Laplace noise (OpenDP) on every cell: ε = {:.4}, δ = {:.2e}; at most \
                 {} groups and {} rows per person; groups under {} noisy people dropped; \
                 noise scales: {}",
                dp.epsilon,
                dp.delta,
                dp.max_groups_per_unit,
                dp.max_rows_per_unit,
                dp.threshold,
                dp.measures
                    .iter()
                    .map(|(m, s)| format!(
                        "{} {s:.3}",
                        m.trim_start_matches(crate::disclosure::HIDDEN_PREFIX)
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
        return ExportChecks { reports };
    }
    if input.disclosure.aggregate {
        let cells = match Cells::read(input.batches, input.disclosure) {
            Ok(cells) => cells,
            Err(e) => {
                reports.push(fail(
                    "privacy_units",
                    format!("the result's hidden gate columns cannot be read: {e}"),
                    "the result cannot be checked: run the job again".into(),
                ));
                return ExportChecks { reports };
            }
        };
        reports.push(privacy_units(input, &cells, policy));
        reports.push(dominance(input, &cells, policy));
        reports.push(p_percent(input, &cells, policy));
        reports.push(zero_and_small_cells(input, policy));
        reports.push(extremes(input, policy));
        reports.push(reproduced_values(input));
        reports.push(residual_dof(input, &cells, policy));
        reports.push(differencing(input, policy, found));
        reports.push(reconstruction(input, policy, sketches));
    } else {
        reports.push(source_values(input));
        reports.push(row_selection(input));
        reports.push(k_anonymity(input, policy));
    }
    ExportChecks { reports }
}

/// The checks against the release ledger alone (differencing, reconstruction), run again
/// when an export is approved; empty for a row-level result.
pub fn release_checks(input: &GateInput<'_>, policy: &DisclosurePolicy) -> Vec<CheckReport> {
    if input.disclosure.aggregate {
        let sketches = result_refs(input.batches);
        let found = compared_pairs(input, policy, &sketches);
        vec![
            differencing(input, policy, found.as_ref()),
            reconstruction(input, policy, &sketches),
        ]
    } else {
        Vec::new()
    }
}

fn pass(name: &'static str, detail: impl Into<String>) -> CheckReport {
    let detail = detail.into();
    CheckReport {
        name,
        outcome: CheckOutcome::Pass,
        summary: detail.clone(),
        detail,
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

fn review(name: &'static str, detail: String, summary: String) -> CheckReport {
    CheckReport {
        name,
        outcome: CheckOutcome::Review,
        detail,
        summary,
    }
}

fn evidence(items: &[String]) -> String {
    let mut text = items
        .iter()
        .take(MAX_EVIDENCE)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if items.len() > MAX_EVIDENCE {
        text.push_str(&format!("; and {} more", items.len() - MAX_EVIDENCE));
    }
    text
}

fn lineage_analysable(input: &GateInput<'_>) -> CheckReport {
    if input.unanalysable.is_empty() {
        pass(
            "lineage_analysable",
            "the lineage of every output column is known",
        )
    } else {
        let parts = input.unanalysable.join(", ");
        fail(
            "lineage_analysable",
            format!("the lineage walker could not analyse: {parts}"),
            format!(
                "the gate cannot trace this query's lineage ({parts}): rewrite it without them"
            ),
        )
    }
}

fn direct_identifiers(input: &GateInput<'_>) -> CheckReport {
    let unmasked: Vec<&str> = input
        .columns
        .iter()
        .filter(|c| {
            c.classification == Classification::DirectIdentifier && !c.aggregated && !c.masked
        })
        .map(|c| c.name.as_str())
        .collect();
    if unmasked.is_empty() {
        pass(
            "direct_identifiers_pseudonymised",
            "no output column carries a direct identifier unless pseudonymised",
        )
    } else {
        let names = unmasked.join(", ");
        fail(
            "direct_identifiers_pseudonymised",
            format!("columns derived from direct identifiers without pseudonymisation: {names}"),
            format!(
                "columns {names} derive from direct identifiers: wrap them in pseudonym() or drop them"
            ),
        )
    }
}

fn aggregates_analysed(input: &GateInput<'_>) -> CheckReport {
    const NAME: &str = "aggregates_analysed";
    let refused = &input.disclosure.refused;
    if refused.is_empty() {
        pass(
            NAME,
            "every aggregate over protected data has a shape the gate analyses",
        )
    } else {
        let reasons = evidence(refused);
        fail(
            NAME,
            format!("aggregates the gate refuses to analyse: {reasons}"),
            format!(
                "the gate cannot tell what these aggregates reveal about individuals: \
                 {reasons}"
            ),
        )
    }
}

/// Per result row, the hidden figures of an aggregate result.
struct Cells {
    /// Source rows per group.
    rows: Vec<i64>,
    /// Distinct privacy units per group (rows when units were not counted).
    units: Vec<i64>,
    /// Per branch population m: its people (rows without units) per group.
    populations: Vec<Vec<i64>>,
    /// Per dominance column j: (total, top contributions largest first) per row.
    dominance: Vec<Vec<(f64, Vec<f64>)>>,
}

impl Cells {
    fn read(batches: &[RecordBatch], meta: &DisclosureMeta) -> Result<Cells, EngineError> {
        let mut cells = Cells {
            rows: Vec::new(),
            units: Vec::new(),
            populations: vec![Vec::new(); meta.populations.len()],
            dominance: vec![Vec::new(); meta.dominance.len()],
        };
        for batch in batches {
            cells.rows.extend(int_column(batch, GROUP_ROWS_COLUMN)?);
            cells.units.extend(cell_units(batch)?);
            for (m, counts) in cells.populations.iter_mut().enumerate() {
                counts.extend(population_counts(batch, m)?);
            }
            for (j, column) in meta.dominance.iter().enumerate() {
                let total = float_column(batch, &dominance_total_column(j))?;
                let tops = (1..=column.top)
                    .map(|i| float_column(batch, &dominance_top_column(j, i)))
                    .collect::<Result<Vec<_>, _>>()?;
                for row in 0..batch.num_rows() {
                    let top: Vec<f64> = tops.iter().map(|t| t[row]).collect();
                    cells.dominance[j].push((total[row], top));
                }
            }
        }
        Ok(cells)
    }
}

fn int_column(batch: &RecordBatch, name: &str) -> Result<Vec<i64>, EngineError> {
    let column = batch
        .column_by_name(name)
        .ok_or_else(|| EngineError::Internal(format!("the result has no {name} column")))?;
    let column = arrow::compute::cast(column, &DataType::Int64)
        .map_err(|e| EngineError::Internal(e.to_string()))?;
    let column = column.as_primitive::<Int64Type>();
    Ok((0..column.len())
        .map(|i| {
            if column.is_null(i) {
                0
            } else {
                column.value(i)
            }
        })
        .collect())
}

fn float_column(batch: &RecordBatch, name: &str) -> Result<Vec<f64>, EngineError> {
    let column = batch
        .column_by_name(name)
        .ok_or_else(|| EngineError::Internal(format!("the result has no {name} column")))?;
    Ok(float_values(column))
}

/// Values of a numeric column as f64 (nulls and non-numbers as 0).
fn float_values(column: &ArrayRef) -> Vec<f64> {
    match arrow::compute::cast(column, &DataType::Float64) {
        Ok(column) => {
            let column = column.as_primitive::<Float64Type>();
            (0..column.len())
                .map(|i| {
                    if column.is_null(i) {
                        0.0
                    } else {
                        column.value(i)
                    }
                })
                .collect()
        }
        Err(_) => vec![0.0; column.len()],
    }
}

/// People (or rows, without privacy units) in branch population `m` of each row of an
/// aggregate result batch, from its sketch, its head or its count.
fn population_counts(batch: &RecordBatch, m: usize) -> Result<Vec<i64>, EngineError> {
    let head = format!("{POPULATION_HEAD_PREFIX}{m}");
    let column = batch
        .column_by_name(&population_column(m))
        .or_else(|| batch.column_by_name(&head))
        .ok_or_else(|| EngineError::Internal(format!("the result has no population {m}")))?;
    if matches!(
        column.data_type(),
        DataType::Binary | DataType::BinaryView | DataType::LargeBinary
    ) {
        Ok(crate::sketch::unit_counts(column))
    } else {
        int_column(batch, &population_column(m))
    }
}

/// Privacy units behind each row of an aggregate result batch: the smallest of its unit
/// counts, or its source rows when units were not counted.
pub(crate) fn cell_units(batch: &RecordBatch) -> Result<Vec<i64>, EngineError> {
    let mut units: Option<Vec<i64>> = None;
    for (i, field) in batch.schema().fields().iter().enumerate() {
        // A head starts with its sketch's count too (reading both changes no minimum).
        if field.name().starts_with(UNITS_PREFIX) || field.name().starts_with(UNIT_HEAD_PREFIX) {
            let column: Vec<i64> = crate::sketch::unit_counts(batch.column(i));
            units = Some(match units {
                None => column,
                Some(prev) => prev
                    .into_iter()
                    .zip(column)
                    .map(|(a, b)| a.min(b))
                    .collect(),
            });
        }
    }
    match units {
        Some(units) => Ok(units),
        None => int_column(batch, GROUP_ROWS_COLUMN),
    }
}

fn privacy_units(input: &GateInput<'_>, cells: &Cells, policy: &DisclosurePolicy) -> CheckReport {
    const NAME: &str = "privacy_units";
    let k = policy.min_entities as i64;
    if let UnitCount::Rows(reason) = &input.disclosure.units {
        return fail(
            NAME,
            format!("{reason}; every cell must rest on at least {k} people counted"),
            reason.clone(),
        );
    }
    let what = match &input.disclosure.units {
        UnitCount::NoUnits(_) => "rows",
        _ => "units",
    };
    let mut small: Vec<String> = cells
        .units
        .iter()
        .enumerate()
        .filter(|(_, n)| **n < k)
        .map(|(row, n)| format!("row {row}: {n} {what} ({} rows)", cells.rows[row]))
        .collect();
    for (m, counts) in cells.populations.iter().enumerate() {
        let (label, by_identifier) = input
            .disclosure
            .populations
            .get(m)
            .map(|p| (p.condition.as_str(), p.by_identifier))
            .unwrap_or(("a branch", true));
        // A row whose own people are too few is listed once, above. A condition on a
        // direct identifier names people: that it picks nobody tells as much about them as
        // that it picks one, so both fail.
        small.extend(
            counts
                .iter()
                .enumerate()
                .filter(|(row, n)| (**n > 0 || by_identifier) && **n < k && cells.units[*row] >= k)
                .map(|(row, n)| format!("row {row}: {n} {what} where {label}")),
        );
    }
    if !small.is_empty() {
        return fail(
            NAME,
            format!(
                "{} of {} cells rest on fewer than {k} {what}, or hold a branch that does{}: {}",
                small.len(),
                cells.units.len(),
                match &input.disclosure.units {
                    UnitCount::NoUnits(reason) => format!(" ({reason})"),
                    _ => String::new(),
                },
                evidence(&small)
            ),
            format!(
                "some cells, or the people that conditions inside aggregates pick, rest on fewer \
                 than {k} people or organisations: coarsen the grouping, widen the population, \
                 or drop conditions that pick few people"
            ),
        );
    }
    match &input.disclosure.units {
        UnitCount::NoUnits(reason) => review(
            NAME,
            format!(
                "{reason}; every cell and branch covers at least {k} rows, which may be fewer \
                 people"
            ),
            "the datasets declare no privacy unit, so the gate counted rows: a reviewer will \
             check"
                .into(),
        ),
        _ => pass(
            NAME,
            format!(
                "every cell, and every branch its aggregates take, rests on at least {k} \
                 distinct privacy units (or none)"
            ),
        ),
    }
}

fn dominance(input: &GateInput<'_>, cells: &Cells, policy: &DisclosurePolicy) -> CheckReport {
    const NAME: &str = "dominance";
    let n = policy.dominance_n as usize;
    let k = policy.dominance_k;
    let mut dominated = Vec::new();
    for (j, column) in input.disclosure.dominance.iter().enumerate() {
        for (row, (total, top)) in cells.dominance[j].iter().enumerate() {
            let largest: f64 = top.iter().take(n).sum();
            if *total > 0.0 && largest > k * total {
                dominated.push(format!(
                    "row {row}, {}: the {n} largest {} hold {:.1}% of {total}",
                    column.aggregate,
                    if column.per_unit {
                        "privacy units"
                    } else {
                        "rows"
                    },
                    100.0 * largest / total
                ));
            }
        }
    }
    if !dominated.is_empty() {
        return fail(
            NAME,
            format!(
                "{} cells fail the ({n}, {:.0}%) dominance rule: {}",
                dominated.len(),
                100.0 * k,
                evidence(&dominated)
            ),
            "some totals are dominated by one or two contributors: aggregate more widely or \
             drop those cells"
                .into(),
        );
    }
    if !input.disclosure.dominance_missing.is_empty() {
        return review(
            NAME,
            format!(
                "dominance statistics could not be computed for {} (grouping sets): check \
                 that no contributor dominates",
                input.disclosure.dominance_missing.join(", ")
            ),
            "a reviewer will check the totals for dominant contributors".into(),
        );
    }
    if input.disclosure.dominance.is_empty() {
        pass(NAME, "no sum-like cell over a sensitive column")
    } else {
        pass(
            NAME,
            format!(
                "no sum-like cell has its {n} largest contributors above {:.0}%",
                100.0 * k
            ),
        )
    }
}

fn p_percent(input: &GateInput<'_>, cells: &Cells, policy: &DisclosurePolicy) -> CheckReport {
    const NAME: &str = "p_percent";
    let p = policy.p_percent;
    let mut failing = Vec::new();
    for (j, column) in input.disclosure.dominance.iter().enumerate() {
        for (row, (total, top)) in cells.dominance[j].iter().enumerate() {
            let x1 = top.first().copied().unwrap_or(0.0);
            let x2 = top.get(1).copied().unwrap_or(0.0);
            let rest = total - x1 - x2;
            if x1 > 0.0 && rest < p * x1 {
                failing.push(format!(
                    "row {row}, {}: the others beyond the two largest hold {rest}, under {:.0}% \
                     of the largest ({x1})",
                    column.aggregate,
                    100.0 * p
                ));
            }
        }
    }
    if failing.is_empty() {
        pass(
            NAME,
            format!(
                "no contributor to a sensitive total can be estimated within {:.0}%",
                100.0 * p
            ),
        )
    } else {
        fail(
            NAME,
            format!(
                "{} cells fail the p% rule (p = {:.0}%): {}",
                failing.len(),
                100.0 * p,
                evidence(&failing)
            ),
            "some totals would let one contributor estimate another's value: aggregate more \
             widely or drop those cells"
                .into(),
        )
    }
}

/// A visible column's values per row, as f64.
fn visible_values(batches: &[RecordBatch], name: &str) -> Vec<f64> {
    batches
        .iter()
        .flat_map(|b| {
            b.column_by_name(name)
                .map(float_values)
                .unwrap_or_else(|| vec![0.0; b.num_rows()])
        })
        .collect()
}

fn zero_and_small_cells(input: &GateInput<'_>, policy: &DisclosurePolicy) -> CheckReport {
    const NAME: &str = "zero_and_small_cells";
    let mut flagged = Vec::new();
    for column in input.columns.iter().filter(|c| c.aggregated) {
        let counts = column.functions == ["count"];
        let sums = column.functions == ["sum"];
        if !counts && !sums {
            continue;
        }
        for (row, value) in visible_values(input.batches, &column.name)
            .into_iter()
            .enumerate()
        {
            if value == 0.0 && policy.flag_zero_cells {
                flagged.push(format!("row {row}, {}: zero", column.name));
            } else if counts && value > 0.0 && value < policy.min_entities as f64 {
                flagged.push(format!("row {row}, {}: small count {value}", column.name));
            }
        }
    }
    if flagged.is_empty() {
        pass(NAME, "no zero or small count cells")
    } else {
        review(
            NAME,
            format!(
                "{} zero or small cells (a zero tells that nobody in the group has the \
                 property): {}",
                flagged.len(),
                evidence(&flagged)
            ),
            "some cells are zero or small: a reviewer will check them".into(),
        )
    }
}

fn extremes(input: &GateInput<'_>, policy: &DisclosurePolicy) -> CheckReport {
    const NAME: &str = "extreme_values";
    let flagged: Vec<String> = input
        .columns
        .iter()
        .filter(|c| {
            c.classification != Classification::Ordinary
                && c.functions.iter().any(|f| EXTREMES.contains(&f.as_str()))
        })
        .map(|c| {
            format!(
                "{} ({} over {})",
                c.name,
                c.functions.join(", "),
                c.sources.join(", ")
            )
        })
        .collect();
    if flagged.is_empty() || !policy.flag_extremes {
        pass(NAME, "no minimum, maximum or median of a protected column")
    } else {
        review(
            NAME,
            format!(
                "minimum, maximum or median of protected columns, each one person's value: {}",
                evidence(&flagged)
            ),
            format!(
                "columns {} are extremes or medians of protected values: a reviewer will check \
                 them",
                input
                    .columns
                    .iter()
                    .filter(|c| c.classification != Classification::Ordinary
                        && c.functions.iter().any(|f| EXTREMES.contains(&f.as_str())))
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    }
}

/// Aggregate cells that return a source value (first_value, array_agg, string_agg…) of a
/// protected column, and window outputs in an aggregate result.
fn reproduced_values(input: &GateInput<'_>) -> CheckReport {
    const NAME: &str = "reproduced_values";
    let failing: Vec<&OutputColumn> = input
        .columns
        .iter()
        .filter(|c| {
            !c.aggregated
                && !c.masked
                && c.classification != Classification::Ordinary
                && !c.functions.is_empty()
                && !c.functions.iter().all(|f| EXTREMES.contains(&f.as_str()))
        })
        .collect();
    if failing.is_empty() {
        pass(
            NAME,
            "no aggregate cell reproduces a protected source value",
        )
    } else {
        let names: Vec<String> = failing
            .iter()
            .map(|c| format!("{} ({})", c.name, c.functions.join(", ")))
            .collect();
        fail(
            NAME,
            format!(
                "columns returning protected source values: {}",
                names.join(", ")
            ),
            format!(
                "columns {} return individual protected values (first_value, array_agg, \
                 string_agg, window functions…): summarise them with count, sum or avg",
                failing
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    }
}

fn residual_dof(input: &GateInput<'_>, cells: &Cells, policy: &DisclosurePolicy) -> CheckReport {
    const NAME: &str = "residual_dof";
    let models: Vec<&OutputColumn> = input
        .columns
        .iter()
        .filter(|c| c.functions.iter().any(|f| MODELS.contains(&f.as_str())))
        .collect();
    if models.is_empty() {
        return pass(NAME, "no model outputs");
    }
    let need = policy.min_residual_dof as i64 + 2;
    let short: Vec<String> = cells
        .units
        .iter()
        .enumerate()
        .filter(|(_, n)| **n < need)
        .map(|(row, n)| format!("row {row}: {} residual degrees of freedom", n - 2))
        .collect();
    if short.is_empty() {
        pass(
            NAME,
            format!(
                "every model cell has at least {} residual degrees of freedom",
                policy.min_residual_dof
            ),
        )
    } else {
        fail(
            NAME,
            format!(
                "model outputs {} with fewer than {} residual degrees of freedom: {}",
                models
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                policy.min_residual_dof,
                evidence(&short)
            ),
            "some model outputs rest on too few observations: fit over larger groups".into(),
        )
    }
}

/// Row-level: no column carries a sensitive source value unless masked.
fn source_values(input: &GateInput<'_>) -> CheckReport {
    const NAME: &str = "source_values_masked";
    let unmasked: Vec<&str> = input
        .columns
        .iter()
        .filter(|c| c.classification == Classification::Sensitive && !c.masked)
        .map(|c| c.name.as_str())
        .collect();
    if unmasked.is_empty() {
        pass(
            NAME,
            "row-level result: no column reproduces a sensitive source value",
        )
    } else {
        let names = unmasked.join(", ");
        fail(
            NAME,
            format!("row-level result with unmasked sensitive columns: {names}"),
            format!(
                "row-level result: columns {names} carry sensitive values; mask them \
                 (generalize_*, mask_*) or aggregate"
            ),
        )
    }
}

/// Row-level: rows are not chosen by protected values, in any role. `WHERE diagnosis = 'X'`,
/// `WHERE person_id = …`, `ORDER BY cost DESC LIMIT 1`, a join or `IN`/`EXISTS` on a
/// protected key, a join against an aggregate of a protected column, a window partition or
/// a DISTINCT over one tell, for every row shown, something about a person that no column
/// shows.
fn row_selection(input: &GateInput<'_>) -> CheckReport {
    const NAME: &str = "row_selection";
    let mut choosing: Vec<String> = input
        .row_influencing
        .iter()
        .filter(|r| r.classification != Classification::Ordinary)
        .map(|r| format!("{} ({}, {})", r.source, r.role, r.classification))
        .collect();
    choosing.dedup();
    if choosing.is_empty() {
        pass(
            NAME,
            "row-level result: rows are chosen only by ordinary columns",
        )
    } else {
        fail(
            NAME,
            format!(
                "row-level result whose rows are chosen by protected columns: {}",
                choosing.join(", ")
            ),
            format!(
                "row-level result: its rows are chosen by protected columns ({}); aggregate \
                 instead, or select rows by ordinary columns only",
                choosing.join(", ")
            ),
        )
    }
}

/// Row-level: every combination of quasi-identifier values occurs at least k times.
fn k_anonymity(input: &GateInput<'_>, policy: &DisclosurePolicy) -> CheckReport {
    const NAME: &str = "k_anonymity";
    let k = policy.k_anonymity as usize;
    let quasi: Vec<&OutputColumn> = input
        .columns
        .iter()
        .filter(|c| c.classification == Classification::QuasiIdentifier)
        .collect();
    if quasi.is_empty() {
        return pass(NAME, "row-level result without quasi-identifiers");
    }
    let names: Vec<&str> = quasi.iter().map(|c| c.name.as_str()).collect();
    match equivalence_classes(input.batches, &names) {
        Ok(classes) => {
            let small: Vec<String> = classes
                .iter()
                .filter(|(_, rows)| rows.len() < k)
                .map(|(_, rows)| {
                    format!(
                        "rows {} ({} alike)",
                        rows.iter()
                            .take(5)
                            .map(|r| r.to_string())
                            .collect::<Vec<_>>()
                            .join(", "),
                        rows.len()
                    )
                })
                .collect();
            if small.is_empty() {
                pass(
                    NAME,
                    format!(
                        "every combination of {} occurs at least {k} times",
                        names.join(", ")
                    ),
                )
            } else {
                fail(
                    NAME,
                    format!(
                        "{} combinations of {} occur fewer than {k} times: {}",
                        small.len(),
                        names.join(", "),
                        evidence(&small)
                    ),
                    format!(
                        "some combinations of {} are rarer than {k} rows: generalise them \
                         further",
                        names.join(", ")
                    ),
                )
            }
        }
        Err(e) => fail(
            NAME,
            format!("the quasi-identifiers cannot be compared: {e}"),
            "the result cannot be checked for k-anonymity".into(),
        ),
    }
}

/// Rows with equal values in the compared columns: the values' row encoding, the row numbers.
type Classes = Vec<(Vec<u8>, Vec<usize>)>;

/// Rows grouped by their values in `names`.
fn equivalence_classes(batches: &[RecordBatch], names: &[&str]) -> Result<Classes, EngineError> {
    let Some(first) = batches.first() else {
        return Ok(Vec::new());
    };
    let fields = names
        .iter()
        .map(|n| {
            first
                .schema()
                .field_with_name(n)
                .map(|f| SortField::new(f.data_type().clone()))
                .map_err(|e| EngineError::Internal(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let converter = RowConverter::new(fields).map_err(|e| EngineError::Internal(e.to_string()))?;
    let mut classes: HashMap<Vec<u8>, Vec<usize>> = HashMap::new();
    let mut offset = 0;
    for batch in batches {
        let columns = names
            .iter()
            .map(|n| {
                batch
                    .column_by_name(n)
                    .cloned()
                    .ok_or_else(|| EngineError::Internal(format!("column {n} missing")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let rows = converter
            .convert_columns(&columns)
            .map_err(|e| EngineError::Internal(e.to_string()))?;
        for (i, row) in rows.iter().enumerate() {
            classes
                .entry(row.as_ref().to_vec())
                .or_default()
                .push(offset + i);
        }
        offset += batch.num_rows();
    }
    let mut classes: Vec<_> = classes.into_iter().collect();
    classes.sort_by_key(|(_, rows)| rows[0]);
    Ok(classes)
}

/// One indexed smallest hash: its cell and the cell's unit count (saturated), so that cells
/// too different in size are passed over without reading anything else about them.
#[derive(Debug, Clone, Copy, Default)]
struct Indexed {
    hash: u64,
    cell: u32,
    units: u32,
}

/// Cells indexed by some of their smallest hashes, grouped by the hash's low bits (a
/// counting sort), so a lookup reads one short run. The hashes are keyed SipHash values;
/// the indexed ones are each cell's smallest, so their high bits are mostly zero and only
/// the low bits spread them.
struct BottomIndex {
    mask: u64,
    /// Where each bucket's entries start in `entries` (one more than the buckets).
    starts: Vec<u32>,
    entries: Vec<Indexed>,
}

impl BottomIndex {
    /// The index of the `m` smallest hashes of each of `indexed`'s sketches, each entry
    /// naming its cell by its place in `indexed`.
    fn of(indexed: &[(usize, SketchRef<'_>)], m: usize) -> BottomIndex {
        let mut entries: Vec<Indexed> = Vec::with_capacity(indexed.len() * m);
        for (cell, (_, sketch)) in indexed.iter().enumerate() {
            let units = saturated_units(sketch);
            entries.extend(sketch.bottom().take(m).map(|hash| Indexed {
                hash,
                cell: cell as u32,
                units,
            }));
        }
        BottomIndex::new(&entries)
    }

    fn new(entries: &[Indexed]) -> BottomIndex {
        let buckets = entries.len().next_power_of_two();
        let mask = buckets as u64 - 1;
        let mut starts = vec![0u32; buckets + 1];
        for e in entries {
            starts[(e.hash & mask) as usize + 1] += 1;
        }
        for b in 0..buckets {
            starts[b + 1] += starts[b];
        }
        let mut next = starts.clone();
        let mut sorted = vec![Indexed::default(); entries.len()];
        for e in entries {
            let at = &mut next[(e.hash & mask) as usize];
            sorted[*at as usize] = *e;
            *at += 1;
        }
        BottomIndex {
            mask,
            starts,
            entries: sorted,
        }
    }

    /// The entries of `hash`'s bucket (other hashes among them).
    fn bucket(&self, hash: u64) -> &[Indexed] {
        let bucket = (hash & self.mask) as usize;
        &self.entries[self.starts[bucket] as usize..self.starts[bucket + 1] as usize]
    }
}

/// The cells of a result and of the ledger that [`differencing`] compares, and the pairs of
/// them worth comparing: (our cell, another of ours, a released cell).
struct Candidates<'a> {
    ours: Vec<(PopulationId, SketchRef<'a>)>,
    pairs: Vec<(usize, Option<usize>, Option<usize>)>,
    /// How each pair compares under the threshold ([`closeness`]), computed once for both
    /// the need of members and the differencing check.
    compared: Vec<Difference>,
}

/// Pairs (probe, indexed) of cells, by their tags, that share enough of their smallest hashes
/// to differ by fewer than `k` people, except those `skip(probe, indexed)` names.
///
/// Among the m smallest hashes of A ∪ B, at most k − 1 are in only one of them, so two
/// populations differing by fewer than k people share at least m − k + 1 of their m smallest
/// hashes. The indexed side is indexed by those; each probe counts what it shares.
fn sharing_pairs(
    indexed: &[(usize, SketchRef<'_>)],
    probes: &[(usize, SketchRef<'_>)],
    k: usize,
    skip: impl Fn(usize, usize) -> bool + Sync,
) -> Vec<(usize, usize)> {
    if probes.is_empty() || indexed.is_empty() {
        return Vec::new();
    }
    let index = BottomIndex::of(indexed, (2 * k - 1).min(BOTTOM));
    in_chunks(probes, |probes| {
        probe_index(&index, indexed, probes, k, &skip)
    })
}

/// A sketch's unit count for the index (saturated at `u32::MAX`).
fn saturated_units(sketch: &SketchRef<'_>) -> u32 {
    u32::try_from(sketch.units()).unwrap_or(u32::MAX)
}

/// [`sharing_pairs`] for some of the probes, against the index of `indexed`'s smallest
/// hashes.
fn probe_index(
    index: &BottomIndex,
    indexed: &[(usize, SketchRef<'_>)],
    probes: &[(usize, SketchRef<'_>)],
    k: usize,
    skip: &(impl Fn(usize, usize) -> bool + Sync),
) -> Vec<(usize, usize)> {
    let m = (2 * k - 1).min(BOTTOM);
    let need = m + 1 - k;
    let mut pairs = Vec::new();
    // Shared-hash counters, reset through the list of the cells touched.
    let mut shared = vec![0u32; indexed.len()];
    let mut touched = Vec::new();
    let mut buckets: Vec<(u64, &[Indexed])> = Vec::with_capacity(m);
    for &(probe, sketch) in probes {
        let units = saturated_units(&sketch);
        // Every bucket first, then their entries: the lookups do not wait on each other.
        buckets.clear();
        buckets.extend(sketch.bottom().take(m).map(|h| (h, index.bucket(h))));
        for &(hash, bucket) in &buckets {
            for e in bucket {
                let cell = e.cell as usize;
                if e.hash != hash
                    || u64::from(e.units.abs_diff(units)) >= k as u64
                    || skip(probe, indexed[cell].0)
                {
                    continue;
                }
                if shared[cell] == 0 {
                    touched.push(cell);
                }
                shared[cell] += 1;
            }
        }
        // A population with fewer than m people shares fewer hashes: its whole set.
        let mine = sketch.bottom_len();
        for cell in touched.drain(..) {
            let enough = need
                .min(mine.min(indexed[cell].1.bottom_len()).saturating_sub(k - 1))
                .max(1);
            if shared[cell] as usize >= enough {
                pairs.push((probe, indexed[cell].0));
            }
            shared[cell] = 0;
        }
    }
    pairs
}

/// Items per thread below which [`in_chunks`] stays on one thread.
const CHUNK_MIN: usize = 2048;

/// `work` over consecutive chunks of `items`, one per core (at most 8) when there are enough
/// items to be worth a thread, its outputs concatenated in the items' order: the checks of a
/// large result against a large ledger are the part of an export a reviewer waits for.
fn in_chunks<T: Sync, R: Send>(items: &[T], work: impl Fn(&[T]) -> Vec<R> + Sync) -> Vec<R> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    in_chunks_on(cores.min(items.len() / CHUNK_MIN), items, work)
}

/// [`in_chunks`] on at most `threads` threads.
fn in_chunks_on<T: Sync, R: Send>(
    threads: usize,
    items: &[T],
    work: impl Fn(&[T]) -> Vec<R> + Sync,
) -> Vec<R> {
    let threads = threads.min(items.len()).max(1);
    if threads == 1 {
        return work(items);
    }
    let size = items.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let work = &work;
        // A chunk whose thread cannot be started (a process out of threads) runs here.
        let running: Vec<_> = items
            .chunks(size)
            .map(|chunk| {
                std::thread::Builder::new()
                    .spawn_scoped(scope, move || work(chunk))
                    .map_err(|_| chunk)
            })
            .collect();
        running
            .into_iter()
            .flat_map(|thread| match thread {
                Ok(thread) => match thread.join() {
                    Ok(out) => out,
                    Err(panic) => std::panic::resume_unwind(panic),
                },
                Err(chunk) => work(chunk),
            })
            .collect()
    })
}

/// The pairs of cells that may differ by fewer than `k` people.
fn difference_candidates<'a>(
    input: &GateInput<'a>,
    k: u64,
    new: &[(PopulationId, SketchRef<'a>)],
) -> Candidates<'a> {
    let ours: Vec<(PopulationId, SketchRef<'a>)> = new.to_vec();
    // Their digests as the ledger keeps them: not hashed again for every pair.
    let released: Vec<SketchRef<'a>> = input
        .released
        .iter()
        .map(|c| c.sketch.view().with_digest(&c.digest))
        .collect();
    // Within one result, the populations of one row share its rows (the cell's people and
    // its branches), and under grouping sets the cells of different rows too (a subtotal
    // and its details); cells of one GROUP BY cover different rows, so subtracting them
    // isolates nobody's contribution.
    let overlapping = input.disclosure.overlapping_cells;
    let within = overlapping || ours.iter().any(|(at, _)| at.population > 0);
    // A cell whose population is exactly a released cell's differs from every other
    // released cell exactly as that one does. When every released cell here passed a
    // blocking differencing check under a threshold of at least k — each against all those
    // released before it — those differences are 0 or at least k already: such a cell needs
    // no comparison with the ledger (whatever it measures, the populations it could be
    // subtracted from were all screened). Otherwise every cell is compared.
    let screened = !within
        && input
            .released
            .iter()
            .all(|c| c.screened_k.is_some_and(|s| s >= k));
    let known: HashSet<(u64, SketchDigest)> = if screened {
        input
            .released
            .iter()
            .map(|c| (c.sketch.units(), c.digest))
            .collect()
    } else {
        HashSet::new()
    };
    let compared: Vec<bool> = ours
        .iter()
        .map(|(_, s)| known.is_empty() || !known.contains(&(s.units(), s.digest())))
        .collect();
    let mut candidates: Vec<(usize, Option<usize>, Option<usize>)> = Vec::new();
    if k as usize <= BOTTOM {
        let k = k as usize;
        let n_old = released.len();
        let probes: Vec<(usize, SketchRef<'a>)> = ours
            .iter()
            .enumerate()
            .filter(|(i, _)| compared[*i])
            .map(|(i, (_, s))| (i, *s))
            .collect();
        let old: Vec<(usize, SketchRef<'a>)> = released.iter().copied().enumerate().collect();
        if within {
            // Released cells keep their numbers, this result's follow them.
            let mut indexed = old;
            indexed.extend(ours.iter().enumerate().map(|(j, (_, s))| (n_old + j, *s)));
            let later = |i: usize, cell: usize| {
                cell >= n_old
                    && (cell - n_old <= i
                        || (!overlapping && ours[cell - n_old].0.row != ours[i].0.row))
            };
            for (i, cell) in sharing_pairs(&indexed, &probes, k, later) {
                candidates.push(if cell < n_old {
                    (i, None, Some(cell))
                } else {
                    (i, Some(cell - n_old), None)
                });
            }
        } else if probes.len() < old.len() {
            // Index the smaller side: a few cells compared with a large ledger.
            for (r, i) in sharing_pairs(&probes, &old, k, |_, _| false) {
                candidates.push((i, None, Some(r)));
            }
        } else {
            for (i, r) in sharing_pairs(&old, &probes, k, |_, _| false) {
                candidates.push((i, None, Some(r)));
            }
        }
    } else {
        // A threshold above the sketches' bottom size: compare every pair near in size.
        for (i, &compare) in compared.iter().enumerate() {
            if compare {
                candidates.extend((0..released.len()).map(|r| (i, None, Some(r))));
            }
            if within {
                candidates.extend(
                    (i + 1..ours.len())
                        .filter(|&j| overlapping || ours[j].0.row == ours[i].0.row)
                        .map(|j| (i, Some(j), None)),
                );
            }
        }
    }
    let compared = in_chunks(&candidates, |pairs| {
        pairs
            .iter()
            .map(|&(i, j, r)| match (j, r) {
                (Some(j), _) => closeness(&ours[i].1, &ours[j].1, k),
                (None, Some(r)) => closeness(&ours[i].1, &released[r], k),
                (None, None) => Difference::Large,
            })
            .collect()
    });
    Candidates {
        ours,
        pairs: candidates,
        compared,
    }
}

/// How two populations compare under threshold `k`: populations whose sizes differ by `k` or
/// more are [`Difference::Large`] without a look at their members.
fn closeness(a: &SketchRef<'_>, b: &SketchRef<'_>, k: u64) -> Difference {
    if a.units().abs_diff(b.units()) >= k {
        return Difference::Large;
    }
    a.difference(b, usize::try_from(k).unwrap_or(usize::MAX))
}

/// Pairs of cells — in this result, or here and in an earlier release of the tenant — whose
/// populations differ by fewer than k people: subtracting one from the other isolates them.
///
/// `found` holds the pairs to compare ([`compared_pairs`]); `None` when the privacy units
/// were not counted.
fn differencing(
    input: &GateInput<'_>,
    policy: &DisclosurePolicy,
    found: Option<&Candidates<'_>>,
) -> CheckReport {
    const NAME: &str = "differencing";
    let k = policy.min_entities;
    let reason = match &input.disclosure.units {
        UnitCount::Rows(reason) | UnitCount::NoUnits(reason) => Some(reason.as_str()),
        UnitCount::Counted(_) => None,
    };
    let Some(Candidates {
        ours,
        pairs: candidates,
        compared,
    }) = found
    else {
        return review(
            NAME,
            format!(
                "populations cannot be compared with earlier releases ({})",
                reason.unwrap_or("their privacy units were not counted")
            ),
            "the gate could not compare this result with earlier releases: a reviewer will \
             check"
                .into(),
        );
    };
    let mut pairs = Vec::new();
    let mut unknown = 0usize;
    for (&(i, j, r), difference) in candidates.iter().zip(compared) {
        // Exactly how many people differ, when fewer than k (the comparison stops at k).
        let d = match *difference {
            Difference::Small(d) if (d as u64) < k => d,
            Difference::Unknown => {
                unknown += 1;
                continue;
            }
            _ => continue,
        };
        let row = ours[i].0;
        match (j, r) {
            (Some(j), _) => {
                let other_row = ours[j].0;
                let (a, b) = (row.min(other_row), row.max(other_row));
                pairs.push(format!(
                    "{a} and {b} of this result: populations differ by {d} privacy units"
                ));
            }
            (None, Some(r)) => {
                let cell = &input.released[r];
                let theirs = PopulationId {
                    row: cell.row as usize,
                    population: cell.population as usize,
                };
                pairs.push(format!(
                    "{row} and {theirs} of export {}: populations differ by {d} privacy units",
                    cell.export_id
                ));
            }
            (None, None) => {}
        }
    }
    pairs.sort();
    if unknown > 0 {
        // Only when heads were checked without asking `members_needed` first.
        return fail(
            NAME,
            format!(
                "{unknown} close cell pairs could not be compared: the result's full unit \
                 sketches were not read"
            ),
            "the result could not be checked completely: request the export again".into(),
        );
    }
    if pairs.is_empty() {
        pass(
            NAME,
            format!(
                "no cell's population differs from another's, here or in {} earlier released \
                 cells of similar size, by fewer than {k} people",
                input.released.len()
            ),
        )
    } else {
        let detail = format!(
            "{} cell pairs differ by fewer than {k} privacy units, so their difference \
             isolates those people: {}",
            pairs.len(),
            evidence(&pairs)
        );
        let summary = "some cells differ from other cells of this result or of an earlier \
                       release by too few people: align the populations with earlier \
                       releases or widen them"
            .to_owned();
        if policy.block_differencing {
            fail(NAME, detail, summary)
        } else {
            review(NAME, detail, summary)
        }
    }
}

/// Most cell memberships (people × small cells, here and released) one audit reads.
const MAX_AUDITED_MEMBERSHIPS: usize = 500_000;
/// Most earlier released cells one audit follows.
const MAX_AUDITED_CELLS: usize = 5_000;

/// The memberships the reconstruction audit would read (people × small cells, here and
/// released), counted from the unit counts alone; `None` when no cell here is small enough
/// to audit.
fn audited_memberships(
    input: &GateInput<'_>,
    new: &[(PopulationId, SketchRef<'_>)],
) -> Option<usize> {
    let ours: Vec<usize> = new
        .iter()
        .map(|(_, s)| s)
        .filter(|s| s.keeps_members())
        .map(|s| s.units() as usize)
        .collect();
    if ours.is_empty() {
        return None;
    }
    let released: usize = input
        .released
        .iter()
        .map(|c| c.sketch.view())
        .filter(SketchRef::keeps_members)
        .map(|s| s.units() as usize)
        .sum();
    Some(ours.iter().sum::<usize>() + released)
}

/// Whether this result's cells, together with the tenant's earlier releases over small
/// overlapping populations, let anyone solve for one person's value.
fn reconstruction(
    input: &GateInput<'_>,
    policy: &DisclosurePolicy,
    new: &[(PopulationId, SketchRef<'_>)],
) -> CheckReport {
    const NAME: &str = "reconstruction";
    let small: Vec<(PopulationId, SketchRef<'_>)> = new
        .iter()
        .filter(|(_, s)| s.keeps_members())
        .copied()
        .collect();
    if small.is_empty() {
        return pass(
            NAME,
            format!(
                "no cell over a population small enough to audit (at most {AUDITED_UNITS} \
                 people)"
            ),
        );
    }
    // The released cells connected to ours through shared people, transitively.
    let released_small: Vec<(&ReleasedCell, SketchRef<'_>)> = input
        .released
        .iter()
        .map(|c| (c, c.sketch.view()))
        .filter(|(_, s)| s.keeps_members())
        .collect();
    let too_large = |what: String| {
        review(
            NAME,
            format!("{what}: too many to audit exactly for reconstruction"),
            "a reviewer will check this result against earlier releases".into(),
        )
    };
    // Counted before any member list is decoded.
    let memberships = audited_memberships(input, new).unwrap_or(0);
    if memberships > MAX_AUDITED_MEMBERSHIPS {
        return too_large(format!(
            "{} small cells here and {} released with {memberships} memberships in all",
            small.len(),
            released_small.len()
        ));
    }
    if small.iter().any(|(_, s)| s.is_head()) {
        // Only when heads were checked without asking `members_needed` first.
        return fail(
            NAME,
            "the result's full unit sketches were not read: the audit needs their members".into(),
            "the result could not be checked completely: request the export again".into(),
        );
    }
    let decoded = |s: &SketchRef<'_>| s.members().unwrap_or_default();
    let ours_members: Vec<(PopulationId, Vec<u64>)> =
        small.iter().map(|(at, s)| (*at, decoded(s))).collect();
    let released_members: Vec<(&ReleasedCell, Vec<u64>)> = released_small
        .iter()
        .map(|(c, s)| (*c, decoded(s)))
        .collect();
    let ours: Vec<(PopulationId, &[u64])> = ours_members
        .iter()
        .map(|(at, m)| (*at, m.as_slice()))
        .collect();
    let released: Vec<(&ReleasedCell, &[u64])> = released_members
        .iter()
        .map(|(c, m)| (*c, m.as_slice()))
        .collect();
    let mut by_unit: HashMap<u64, Vec<usize>> = HashMap::new();
    for (i, (_, members)) in released.iter().enumerate() {
        for u in *members {
            by_unit.entry(*u).or_default().push(i);
        }
    }
    let mut frontier: Vec<u64> = ours.iter().flat_map(|(_, m)| m.iter().copied()).collect();
    let mut seen_units: HashSet<u64> = frontier.iter().copied().collect();
    let mut component: Vec<usize> = Vec::new();
    let mut in_component: HashSet<usize> = HashSet::new();
    while let Some(u) = frontier.pop() {
        if component.len() > MAX_AUDITED_CELLS {
            return too_large(format!(
                "more than {MAX_AUDITED_CELLS} earlier released cells overlap this result's \
                 populations"
            ));
        }
        for &i in by_unit.get(&u).map(Vec::as_slice).unwrap_or_default() {
            if in_component.insert(i) {
                component.push(i);
                for v in released[i].1 {
                    if seen_units.insert(*v) {
                        frontier.push(*v);
                    }
                }
            }
        }
    }
    let before: Vec<&[u64]> = component.iter().map(|&i| released[i].1).collect();
    let mut after = before.clone();
    after.extend(ours.iter().map(|(_, m)| *m));
    let (Some(before), Some(after)) = (
        crate::reconstruction::determinable(&before),
        crate::reconstruction::determinable(&after),
    ) else {
        return too_large(format!(
            "{} earlier released cells overlap this result's populations",
            component.len()
        ));
    };
    let exposed = after.difference(&before).count();
    if exposed == 0 {
        return pass(
            NAME,
            format!(
                "no one's value can be solved for from this result and the {} overlapping \
                 earlier released cells",
                component.len()
            ),
        );
    }
    let mut exports: Vec<&str> = component
        .iter()
        .map(|&i| released[i].0.export_id.as_str())
        .collect();
    exports.sort_unstable();
    exports.dedup();
    let detail = format!(
        "{exposed} privacy units' values can be solved for exactly by combining {} rows of \
         this result with {} cells of earlier exports ({})",
        ours.len(),
        component.len(),
        evidence(&exports.iter().map(|e| e.to_string()).collect::<Vec<_>>())
    );
    let summary = "together with earlier releases, this result would let someone compute \
                   individual values: change the populations or aggregate more widely"
        .to_owned();
    if policy.block_differencing {
        fail(NAME, detail, summary)
    } else {
        review(NAME, detail, summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Chunks run on their own threads give their outputs in the items' order, whatever
    /// each chunk's output length.
    #[test]
    fn work_in_chunks_keeps_the_items_order() {
        let items: Vec<usize> = (0..10_003).collect();
        let work = |chunk: &[usize]| -> Vec<usize> {
            chunk
                .iter()
                .flat_map(|&i| std::iter::repeat_n(i, i % 3))
                .collect()
        };
        let expected = work(&items);
        for threads in [1, 2, 3, 8, 20_000] {
            assert_eq!(in_chunks_on(threads, &items, work), expected, "{threads}");
        }
        assert!(in_chunks_on(4, &[] as &[usize], work).is_empty());
        assert_eq!(in_chunks(&items, work), expected);
    }

    /// The close pairs of many cells (3,000 probes against 3,000 indexed) are the same
    /// whether the probes run on one thread or are split over several.
    #[test]
    fn close_pairs_found_over_threads_are_those_found_on_one() {
        // Populations shifted along a line of people: neighbours differ by a few, cells far
        // apart by many. The even cells are indexed, the odd ones probe them. A person's
        // hash: splitmix64's finaliser (distinct, spread).
        let person = |p: u64| {
            let mut x = p.wrapping_add(0x9e37_79b9_7f4a_7c15);
            x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            x ^ (x >> 31)
        };
        let sketches: Vec<UnitSketch> = (0..6_000u64)
            .map(|c| {
                let first = c * 3;
                UnitSketch::from_hashes(
                    &(first..first + 40 + c % 5).map(person).collect::<Vec<_>>(),
                )
            })
            .collect();
        let (indexed, probes): (Vec<_>, Vec<_>) = sketches
            .iter()
            .map(|s| s.view())
            .enumerate()
            .partition(|(c, _)| c.is_multiple_of(2));
        let (indexed, probes) = (indexed.as_slice(), probes.as_slice());
        let k = 10;
        let index = BottomIndex::of(indexed, 2 * k - 1);
        let skip = |probe: usize, cell: usize| (probe + cell).is_multiple_of(11);
        let one = probe_index(&index, indexed, probes, k, &skip);
        assert!(one.len() > 100, "{} pairs", one.len());
        for threads in [2, 3, 7] {
            let split = in_chunks_on(threads, probes, |chunk| {
                probe_index(&index, indexed, chunk, k, &skip)
            });
            assert_eq!(split, one, "{threads} threads");
        }
        assert_eq!(sharing_pairs(indexed, probes, k, skip), one);
    }

    /// Every entry of a hash is in its bucket, also when many hashes share a bucket and
    /// one hash is many cells'.
    #[test]
    fn the_bottom_index_finds_every_entry_of_a_hash() {
        let mut state = 11u64;
        let mut next = move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            state >> 11
        };
        let mut entries: Vec<Indexed> = (0..5_000u32)
            .map(|cell| Indexed {
                hash: next(),
                cell,
                units: cell % 7,
            })
            .collect();
        // Twenty hashes in one bucket (the low bits alike), and a hash of seven cells.
        entries.extend((0..20u32).map(|i| Indexed {
            hash: (u64::from(i) + 1) << 40,
            cell: 10_000 + i,
            units: 0,
        }));
        let repeated = entries[7].hash;
        entries.extend((0..6u32).map(|i| Indexed {
            hash: repeated,
            cell: 20_000 + i,
            units: 1,
        }));
        let index = BottomIndex::new(&entries);
        let mut probes: Vec<u64> = entries.iter().map(|e| e.hash).collect();
        probes.extend((0..1_000).map(|_| next()));
        for hash in probes {
            let mut found: Vec<u32> = index
                .bucket(hash)
                .iter()
                .filter(|e| e.hash == hash)
                .map(|e| e.cell)
                .collect();
            let mut expected: Vec<u32> = entries
                .iter()
                .filter(|e| e.hash == hash)
                .map(|e| e.cell)
                .collect();
            found.sort_unstable();
            expected.sort_unstable();
            assert_eq!(found, expected, "{hash:#x}");
        }
    }
}
