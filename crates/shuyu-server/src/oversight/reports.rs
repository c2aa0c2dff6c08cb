//! Operation reports (R34) and public disclosure summaries (R36) of one tenant over a
//! period, built from the audit trail, the jobs' metering, the exports and products, and
//! rendered as Markdown or HTML with every text escaped.
//!
//! Neither ever holds a data value, a query or a reviewer's comment: only counts, ids,
//! names of datasets and scenarios, and (in the public summary) scenario purposes.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;
use std::str::FromStr;

use shuyu_meta::params;

use crate::admin::records::Tenant;
use crate::error::{Result, ServerError};
use crate::jobs::records::{JobMode, JobStatus};
use crate::scenarios::records::ScenarioStatus;
use crate::store::Tx;

/// The annual evaluations of tenants (R34), one per tenant and year.
pub const EVALUATION_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS operation_evaluations (
    tenant_id TEXT NOT NULL, year BIGINT NOT NULL, outcome TEXT NOT NULL, note TEXT NOT NULL,
    fix_due_ms BIGINT NOT NULL, report_sha256 TEXT NOT NULL, evaluated_by TEXT NOT NULL,
    evaluated_at_ms BIGINT NOT NULL, PRIMARY KEY (tenant_id, year));
";

/// The outcome of an annual evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvaluationOutcome {
    Pass,
    /// Deficiencies to fix within 30 days.
    FixIn30Days,
    Fail,
}

impl EvaluationOutcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            EvaluationOutcome::Pass => "pass",
            EvaluationOutcome::FixIn30Days => "fix_in_30_days",
            EvaluationOutcome::Fail => "fail",
        }
    }
}

impl FromStr for EvaluationOutcome {
    type Err = ServerError;
    fn from_str(s: &str) -> Result<EvaluationOutcome> {
        match s {
            "pass" => Ok(EvaluationOutcome::Pass),
            "fix_in_30_days" => Ok(EvaluationOutcome::FixIn30Days),
            "fail" => Ok(EvaluationOutcome::Fail),
            _ => Err(ServerError::internal(
                "unknown evaluation outcome in the store",
            )),
        }
    }
}

/// A recorded annual evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub tenant_id: String,
    pub year: i32,
    pub outcome: EvaluationOutcome,
    pub note: String,
    /// When fixes are due (FixIn30Days), else 0.
    pub fix_due_ms: i64,
    /// SHA-256 of the Markdown operation report of the year, as generated when evaluated.
    pub report_sha256: String,
    pub evaluated_by: String,
    pub evaluated_at_ms: i64,
}

/// Stores an evaluation; ALREADY_EXISTS when the tenant's year was evaluated before.
///
/// # Errors
/// As said, or on store failure.
pub fn insert_evaluation(tx: &Tx<'_>, e: &Evaluation) -> Result<()> {
    let n = tx.execute(
        "INSERT INTO operation_evaluations (tenant_id, year, outcome, note, fix_due_ms,
             report_sha256, evaluated_by, evaluated_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (tenant_id, year) DO NOTHING",
        params![
            &e.tenant_id,
            e.year,
            e.outcome.as_str(),
            &e.note,
            e.fix_due_ms,
            &e.report_sha256,
            &e.evaluated_by,
            e.evaluated_at_ms
        ],
    )?;
    if n == 0 {
        return Err(ServerError::AlreadyExists(format!(
            "the evaluation of tenant {} for {}",
            e.tenant_id, e.year
        )));
    }
    Ok(())
}

/// Evaluations of a tenant for the years `from_year..=to_year`.
///
/// # Errors
/// On store failure.
pub fn evaluations(
    tx: &Tx<'_>,
    tenant_id: &str,
    from_year: i32,
    to_year: i32,
) -> Result<Vec<Evaluation>> {
    tx.query(
        "SELECT tenant_id, year, outcome, note, fix_due_ms, report_sha256, evaluated_by,
                evaluated_at_ms FROM operation_evaluations
         WHERE tenant_id = ?1 AND year >= ?2 AND year <= ?3 ORDER BY year",
        params![tenant_id, from_year, to_year],
    )?
    .iter()
    .map(|r| {
        Ok(Evaluation {
            tenant_id: r.get("tenant_id")?,
            year: r.get("year")?,
            outcome: r.get::<String>("outcome")?.parse()?,
            note: r.get("note")?,
            fix_due_ms: r.get("fix_due_ms")?,
            report_sha256: r.get("report_sha256")?,
            evaluated_by: r.get("evaluated_by")?,
            evaluated_at_ms: r.get("evaluated_at_ms")?,
        })
    })
    .collect()
}

/// The calendar year `year` (UTC) as a period.
///
/// # Errors
/// INVALID_ARGUMENT for a year outside 2000..=9999.
pub fn year_period(year: i32) -> Result<(i64, i64)> {
    use chrono::{TimeZone, Utc};
    let start = |y: i32| {
        Utc.with_ymd_and_hms(y, 1, 1, 0, 0, 0)
            .single()
            .map(|t| t.timestamp_millis())
    };
    match (2000..=9999)
        .contains(&year)
        .then(|| (start(year), start(year + 1)))
    {
        Some((Some(from), Some(to))) => Ok((from, to)),
        _ => Err(ServerError::InvalidArgument(
            "the year must be between 2000 and 9999".into(),
        )),
    }
}

fn year_of(ms: i64) -> i32 {
    use chrono::{Datelike, TimeZone, Utc};
    Utc.timestamp_millis_opt(ms)
        .single()
        .map_or(1970, |t| t.year())
}

/// A report as data: sections of key–value lines and tables.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Report {
    pub title: String,
    pub sections: Vec<Section>,
}

/// One section.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Section {
    pub heading: String,
    pub facts: Vec<(String, String)>,
    /// Header and rows; empty header: no table.
    pub table: (Vec<String>, Vec<Vec<String>>),
}

impl Section {
    fn new(heading: &str) -> Section {
        Section {
            heading: heading.into(),
            ..Section::default()
        }
    }
    fn fact(mut self, key: &str, value: impl ToString) -> Section {
        self.facts.push((key.into(), value.to_string()));
        self
    }
    fn table(mut self, header: &[&str], rows: Vec<Vec<String>>) -> Section {
        self.table = (header.iter().map(|h| (*h).to_owned()).collect(), rows);
        self
    }
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Markdown,
    Html,
}

fn md_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '#' | '|' | '<' | '>' | '!' | '{' | '}' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            _ => out.push(c),
        }
    }
    out
}

fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

impl Report {
    /// Renders the report; every text is escaped for the format.
    pub fn render(&self, format: Format) -> String {
        let mut out = String::new();
        match format {
            Format::Markdown => {
                let _ = writeln!(out, "# {}\n", md_escape(&self.title));
                for s in &self.sections {
                    let _ = writeln!(out, "## {}\n", md_escape(&s.heading));
                    for (k, v) in &s.facts {
                        let _ = writeln!(out, "- {}: {}", md_escape(k), md_escape(v));
                    }
                    if !s.facts.is_empty() {
                        out.push('\n');
                    }
                    let (header, rows) = &s.table;
                    if !header.is_empty() {
                        let line = |cells: &[String]| {
                            format!(
                                "| {} |",
                                cells
                                    .iter()
                                    .map(|c| md_escape(c))
                                    .collect::<Vec<_>>()
                                    .join(" | ")
                            )
                        };
                        let _ = writeln!(out, "{}", line(header));
                        let _ = writeln!(out, "|{}", " --- |".repeat(header.len()));
                        for row in rows {
                            let _ = writeln!(out, "{}", line(row));
                        }
                        out.push('\n');
                    }
                }
            }
            Format::Html => {
                let title = html_escape(&self.title);
                let _ = write!(
                    out,
                    "<!DOCTYPE html>\n<html lang=\"zh\"><head><meta charset=\"utf-8\"><title>{title}</title></head>\n<body>\n<h1>{title}</h1>\n"
                );
                for s in &self.sections {
                    let _ = writeln!(out, "<h2>{}</h2>", html_escape(&s.heading));
                    if !s.facts.is_empty() {
                        out.push_str("<dl>\n");
                        for (k, v) in &s.facts {
                            let _ = writeln!(
                                out,
                                "<dt>{}</dt><dd>{}</dd>",
                                html_escape(k),
                                html_escape(v)
                            );
                        }
                        out.push_str("</dl>\n");
                    }
                    let (header, rows) = &s.table;
                    if !header.is_empty() {
                        out.push_str("<table>\n<tr>");
                        for h in header {
                            let _ = write!(out, "<th>{}</th>", html_escape(h));
                        }
                        out.push_str("</tr>\n");
                        for row in rows {
                            out.push_str("<tr>");
                            for c in row {
                                let _ = write!(out, "<td>{}</td>", html_escape(c));
                            }
                            out.push_str("</tr>\n");
                        }
                        out.push_str("</table>\n");
                    }
                }
                out.push_str("</body></html>\n");
            }
        }
        out
    }
}

/// A period `[from_ms, to_ms)`; both 0: the last calendar year (UTC) before `now_ms`.
///
/// # Errors
/// INVALID_ARGUMENT for a negative, empty or reversed period, or one longer than ten years.
pub fn period(from_ms: i64, to_ms: i64, now_ms: i64) -> Result<(i64, i64)> {
    use chrono::{Datelike, TimeZone, Utc};
    if from_ms == 0 && to_ms == 0 {
        let year = Utc
            .timestamp_millis_opt(now_ms)
            .single()
            .map_or(1970, |t| t.year())
            - 1;
        let start = |y: i32| {
            Utc.with_ymd_and_hms(y, 1, 1, 0, 0, 0)
                .single()
                .map_or(0, |t| t.timestamp_millis())
        };
        return Ok((start(year), start(year + 1)));
    }
    if from_ms < 0 || to_ms <= from_ms {
        return Err(ServerError::InvalidArgument(
            "the period must have 0 <= from < to".into(),
        ));
    }
    if to_ms - from_ms > 3653 * 86_400_000 {
        return Err(ServerError::InvalidArgument(
            "the period must be at most ten years".into(),
        ));
    }
    Ok((from_ms, to_ms))
}

fn day(ms: i64) -> String {
    crate::format_ms(ms)
}

fn yuan(fen: u64) -> String {
    format!("{}.{:02}", fen / 100, fen % 100)
}

fn dataset_name(tx: &Tx<'_>, id: &str, cache: &mut BTreeMap<String, String>) -> Result<String> {
    if let Some(name) = cache.get(id) {
        return Ok(name.clone());
    }
    let name = crate::catalog::records::dataset(tx, id)?.map_or_else(|| id.to_owned(), |d| d.name);
    cache.insert(id.to_owned(), name.clone());
    Ok(name)
}

/// Bytes and files of the tenant's stored results under `objects/results/<tenant>/`.
fn stored_results(objects: &Path, tenant_id: &str) -> (u64, u64) {
    fn walk(dir: &Path, acc: &mut (u64, u64)) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            match entry.metadata() {
                Ok(m) if m.is_dir() => walk(&entry.path(), acc),
                Ok(m) => {
                    acc.0 += m.len();
                    acc.1 += 1;
                }
                Err(_) => {}
            }
        }
    }
    let mut acc = (0, 0);
    walk(&objects.join("results").join(tenant_id), &mut acc);
    acc
}

fn export_counts(
    tx: &Tx<'_>,
    tenant_id: &str,
    from: i64,
    to: i64,
) -> Result<BTreeMap<String, u64>> {
    tx.query(
        "SELECT status, count(*) AS n FROM exports WHERE tenant_id = ?1
         AND requested_at_ms >= ?2 AND requested_at_ms < ?3 GROUP BY status",
        params![tenant_id, from, to],
    )?
    .iter()
    .map(|r| Ok((r.get("status")?, r.get("n")?)))
    .collect()
}

fn audit_counts(tx: &Tx<'_>, tenant_id: &str, from: i64, to: i64) -> Result<BTreeMap<String, u64>> {
    tx.query(
        "SELECT outcome, count(*) AS n FROM audit WHERE tenant_id = ?1 AND at_ms >= ?2
         AND at_ms < ?3 GROUP BY outcome",
        params![tenant_id, from, to],
    )?
    .iter()
    .map(|r| Ok((r.get("outcome")?, r.get("n")?)))
    .collect()
}

/// The tenant, or NOT_FOUND.
fn tenant(tx: &Tx<'_>, tenant_id: &str) -> Result<Tenant> {
    crate::admin::records::tenant(tx, tenant_id)?
        .ok_or_else(|| ServerError::NotFound(format!("tenant {tenant_id}")))
}

/// The operation report of a tenant over `[from, to)` (R34).
///
/// # Errors
/// NOT_FOUND for an unknown tenant; store failures.
pub fn operation_report(
    tx: &Tx<'_>,
    objects: &Path,
    tenant_id: &str,
    from: i64,
    to: i64,
) -> Result<Report> {
    let t = tenant(tx, tenant_id)?;
    let jobs = crate::jobs::records::finished_jobs_between(tx, Some(tenant_id), from, to)?;
    let mut names = BTreeMap::new();

    let (bytes, files) = stored_results(objects, tenant_id);
    let storage = Section::new("Storage")
        .fact("stored result files (now)", files)
        .fact("stored result bytes (now)", bytes)
        .fact(
            "results staged in the period",
            jobs.iter().filter(|j| !j.result_file.is_empty()).count(),
        );

    let count =
        |f: &dyn Fn(&crate::jobs::records::JobRecord) -> bool| jobs.iter().filter(|j| f(j)).count();
    let cpu_ms: u64 = jobs.iter().map(|j| j.usage.cpu_ms).sum();
    let processing = Section::new("Processing")
        .fact("jobs finished", jobs.len())
        .fact("succeeded", count(&|j| j.status == JobStatus::Succeeded))
        .fact("failed", count(&|j| j.status == JobStatus::Failed))
        .fact(
            "failed with a withheld error (error id)",
            count(&|j| j.status == JobStatus::Failed && !j.error_id.is_empty()),
        )
        .fact("cancelled", count(&|j| j.status == JobStatus::Cancelled))
        .fact("CPU seconds", format!("{:.1}", cpu_ms as f64 / 1000.0))
        .fact(
            "bytes scanned",
            jobs.iter().map(|j| j.usage.bytes_scanned).sum::<u64>(),
        )
        .fact("rows produced", jobs.iter().map(|j| j.n_rows).sum::<u64>());

    let mut by_scenario: BTreeMap<String, u64> = BTreeMap::new();
    for j in jobs.iter().filter(|j| j.mode == JobMode::Production) {
        *by_scenario.entry(j.scenario_id.clone()).or_default() += 1;
    }
    let mut scenario_rows = Vec::new();
    for (id, n) in &by_scenario {
        let name =
            crate::scenarios::records::scenario(tx, id)?.map_or_else(String::new, |s| s.name);
        scenario_rows.push(vec![id.clone(), name, n.to_string()]);
    }
    let analysis = Section::new("Analysis")
        .fact("lab jobs (masked data)", count(&|j| j.mode == JobMode::Lab))
        .fact(
            "production jobs (under a scenario)",
            count(&|j| j.mode == JobMode::Production),
        )
        .fact("aggregate results", count(&|j| j.aggregate))
        .fact("differential-privacy jobs", count(&|j| j.dp.is_some()))
        .table(&["scenario", "name", "production jobs"], scenario_rows);

    let mut fusions: BTreeMap<Vec<String>, u64> = BTreeMap::new();
    for j in jobs.iter().filter(|j| j.inputs.len() > 1) {
        let mut set = Vec::new();
        for id in &j.inputs {
            set.push(dataset_name(tx, id, &mut names)?);
        }
        set.sort();
        *fusions.entry(set).or_default() += 1;
    }
    let fusion = Section::new("Fusion")
        .fact(
            "jobs reading more than one dataset",
            fusions.values().sum::<u64>(),
        )
        .table(
            &["datasets", "jobs"],
            fusions
                .iter()
                .map(|(set, n)| vec![set.join(" + "), n.to_string()])
                .collect(),
        );

    let exports = export_counts(tx, tenant_id, from, to)?;
    let get = |m: &BTreeMap<String, u64>, k: &str| m.get(k).copied().unwrap_or(0);
    let exports_section = Section::new("Exports")
        .fact("requested", exports.values().sum::<u64>())
        .fact("approved", get(&exports, "approved"))
        .fact("refused by the automated checks", get(&exports, "refused"))
        .fact("rejected by reviewers", get(&exports, "rejected"))
        .fact("returned for changes", get(&exports, "returned"))
        .fact("revoked", get(&exports, "revoked"))
        .fact("in review", get(&exports, "in_review"));

    let outcomes = audit_counts(tx, tenant_id, from, to)?;
    let alerts = crate::oversight::alerts::of_tenant(tx, tenant_id, from, to)?;
    let mut alert_kinds: BTreeMap<&str, u64> = BTreeMap::new();
    for a in &alerts {
        *alert_kinds.entry(&a.kind).or_default() += 1;
    }
    let security = Section::new("Security events")
        .fact(
            "calls by the tenant's principals",
            outcomes.values().sum::<u64>(),
        )
        .fact("denied calls", get(&outcomes, "denied"))
        .fact("calls answered not found", get(&outcomes, "not_found"))
        .fact("alerts raised", alerts.len())
        .table(
            &["alert kind", "alerts"],
            alert_kinds
                .iter()
                .map(|(k, n)| vec![(*k).to_owned(), n.to_string()])
                .collect(),
        );

    let products: Vec<crate::exports::records::ExportRecord> =
        crate::exports::records::products(tx, Some(tenant_id), None)?
            .into_iter()
            .filter(|e| {
                e.product
                    .as_ref()
                    .is_some_and(|p| p.approved_at_ms >= from && p.approved_at_ms < to)
            })
            .collect();
    let mut total_fen = 0u64;
    let mut product_rows = Vec::new();
    for e in &products {
        let Some(p) = &e.product else { continue };
        let basis = p.price_basis();
        let charge = basis.charge_fen(e.download_count);
        total_fen = total_fen.saturating_add(charge);
        let scenario = crate::scenarios::records::scenario(tx, &p.scenario_id)?
            .map_or_else(String::new, |s| s.name);
        product_rows.push(vec![
            e.id.clone(),
            scenario,
            p.scenario_category.as_str().to_owned(),
            p.n_rows.to_string(),
            e.download_count.to_string(),
            if basis.is_free() {
                "free".to_owned()
            } else {
                format!(
                    "{} yuan per 10,000 rows + {} yuan per download",
                    yuan(basis.rates.per_10k_rows_fen),
                    yuan(basis.rates.per_download_fen)
                )
            },
            yuan(charge),
        ]);
    }
    let revenue = Section::new("Products and revenue")
        .fact("products approved in the period", products.len())
        .fact(
            "downloads of these products",
            products.iter().map(|e| e.download_count).sum::<u64>(),
        )
        .fact("charges to date, yuan", yuan(total_fen))
        .table(
            &[
                "product",
                "scenario",
                "category",
                "rows",
                "downloads",
                "price basis",
                "charge (yuan)",
            ],
            product_rows,
        );

    let mut evaluation = Section::new("Annual evaluation");
    let evaluated = evaluations(tx, tenant_id, year_of(from), year_of(to - 1))?;
    if evaluated.is_empty() {
        evaluation = evaluation.fact("recorded", "none for the period's years");
    }
    let evaluation = evaluation.table(
        &[
            "year",
            "outcome",
            "fixes due",
            "note",
            "evaluated",
            "report SHA-256",
        ],
        evaluated
            .iter()
            .map(|e| {
                vec![
                    e.year.to_string(),
                    e.outcome.as_str().to_owned(),
                    if e.fix_due_ms > 0 {
                        day(e.fix_due_ms)
                    } else {
                        "-".into()
                    },
                    e.note.clone(),
                    day(e.evaluated_at_ms),
                    e.report_sha256.clone(),
                ]
            })
            .collect(),
    );

    let header = Section::new("Period")
        .fact("tenant", format!("{} ({})", t.name, t.id))
        .fact("from", day(from))
        .fact("to (exclusive)", day(to))
        .fact("generated", day(crate::now_ms()));
    Ok(Report {
        title: format!("Operation report (运营报告): {}", t.name),
        sections: vec![
            header,
            storage,
            processing,
            analysis,
            exports_section,
            security,
            fusion,
            revenue,
            evaluation,
        ],
    })
}

/// The public disclosure summary of a tenant over `[from, to)` (R36): which datasets and
/// scenarios it used public data for, how much, and for which kinds of recipients.
///
/// # Errors
/// NOT_FOUND for an unknown tenant; store failures.
pub fn disclosure_summary(tx: &Tx<'_>, tenant_id: &str, from: i64, to: i64) -> Result<Report> {
    let t = tenant(tx, tenant_id)?;
    let jobs: Vec<crate::jobs::records::JobRecord> =
        crate::jobs::records::finished_jobs_between(tx, Some(tenant_id), from, to)?
            .into_iter()
            .filter(|j| j.mode == JobMode::Production && j.status == JobStatus::Succeeded)
            .collect();
    let mut names = BTreeMap::new();
    let mut datasets: BTreeMap<String, u64> = BTreeMap::new();
    for j in &jobs {
        for id in &j.inputs {
            *datasets
                .entry(dataset_name(tx, id, &mut names)?)
                .or_default() += 1;
        }
    }
    let used: BTreeSet<&str> = jobs.iter().map(|j| j.scenario_id.as_str()).collect();
    let mut scenario_rows = Vec::new();
    for s in crate::scenarios::records::scenarios(tx, Some(tenant_id))? {
        let active = s.status == ScenarioStatus::Approved
            && s.valid_from_ms < to
            && s.valid_until_ms >= from;
        if !(active || used.contains(s.id.as_str())) {
            continue;
        }
        scenario_rows.push(vec![
            s.name.clone(),
            s.purpose.clone(),
            s.category.as_str().to_owned(),
            format!("{} – {}", day(s.valid_from_ms), day(s.valid_until_ms)),
        ]);
    }
    let products: Vec<crate::exports::records::ExportRecord> =
        crate::exports::records::products(tx, Some(tenant_id), None)?
            .into_iter()
            .filter(|e| {
                e.product
                    .as_ref()
                    .is_some_and(|p| p.approved_at_ms >= from && p.approved_at_ms < to)
            })
            .collect();
    let mut kinds: BTreeMap<&str, (u64, BTreeSet<String>)> = BTreeMap::new();
    for e in &products {
        if let Some(p) = &e.product {
            let k = kinds.entry(p.scenario_category.as_str()).or_default();
            k.0 += 1;
            k.1.insert(e.recipient().to_owned());
        }
    }
    Ok(Report {
        title: format!(
            "Public data use disclosure (公共数据使用情况公示): {}",
            t.name
        ),
        sections: vec![
            Section::new("Operating unit and period")
                .fact("operating unit", &t.name)
                .fact("from", day(from))
                .fact("to (exclusive)", day(to)),
            Section::new("Public datasets used")
                .fact("datasets", datasets.len())
                .table(
                    &["dataset", "production jobs reading it"],
                    datasets
                        .iter()
                        .map(|(n, c)| vec![n.clone(), c.to_string()])
                        .collect(),
                ),
            Section::new("Application scenarios")
                .fact("scenarios", scenario_rows.len())
                .table(&["scenario", "purpose", "category", "valid"], scenario_rows),
            Section::new("Processing and products")
                .fact("production jobs", jobs.len())
                .fact("data products provided", products.len()),
            Section::new("Recipients by kind of use").table(
                &["scenario category", "products", "recipient units"],
                kinds
                    .iter()
                    .map(|(k, (n, r))| vec![(*k).to_owned(), n.to_string(), r.len().to_string()])
                    .collect(),
            ),
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_is_escaped_in_both_formats() {
        let report = Report {
            title: "<script>alert(1)</script>".into(),
            sections: vec![
                Section::new("a|b")
                    .fact("k", "v <b>*x*</b> & 'q'")
                    .table(&["c|1"], vec![vec!["x|y\nz".into()]]),
            ],
        };
        let html = report.render(Format::Html);
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;"));
        assert!(html.contains("&amp; &#39;q&#39;"));
        assert!(!html.contains("<b>"));
        let md = report.render(Format::Markdown);
        assert!(md.contains("\\<script\\>"), "{md}");
        assert!(md.contains("| x\\|y z |"), "{md}");
        assert!(md.contains("## a\\|b"));
    }

    #[test]
    fn the_default_period_is_the_last_calendar_year() {
        // 2026-11-23 UTC.
        let (from, to) = period(0, 0, 1_795_392_000_000).unwrap();
        assert_eq!(crate::format_ms(from), "2025-01-01T00:00:00Z");
        assert_eq!(crate::format_ms(to), "2026-01-01T00:00:00Z");
        assert!(period(5, 5, 0).is_err());
        assert!(period(-1, 5, 0).is_err());
        assert!(period(0, 11 * 365 * 86_400_000, 0).is_err());
        assert_eq!(period(1, 2, 0).unwrap(), (1, 2));
    }

    #[test]
    fn an_evaluation_round_trips_and_a_second_one_of_the_year_is_refused() {
        use crate::store::testing;
        testing::each_backend(|store| {
            let e = Evaluation {
                tenant_id: "t1".into(),
                year: 2025,
                outcome: EvaluationOutcome::FixIn30Days,
                note: "fix the gaps".into(),
                fix_due_ms: 1_800_000_000_000,
                report_sha256: "ab".repeat(32),
                evaluated_by: "p_admin".into(),
                evaluated_at_ms: 1_797_000_000_000,
            };
            testing::write(store, |tx| insert_evaluation(tx, &e));
            let again = store.commit(
                &crate::audit::trail::system_entry("test", "test", serde_json::json!({})),
                |tx| insert_evaluation(tx, &e),
            );
            assert!(
                matches!(again, Err(ServerError::AlreadyExists(_))),
                "{again:?}"
            );
            let read = |from, to| store.read(|tx| evaluations(tx, "t1", from, to)).unwrap();
            assert_eq!(read(2024, 2025), std::slice::from_ref(&e));
            assert!(read(2026, 2030).is_empty());
        });
    }
}
