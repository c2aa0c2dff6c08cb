//! The gate tests' fixture: an encrypted visits dataset built so that rows and people
//! disagree, a persons dataset to join, the job runner and the checks, a release ledger as
//! the server keeps it. Shared by `gate.rs` and `attacks.rs`.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Float64Type;
use bytes::Bytes;
use shuyu_engine::{
    CheckOutcome, ColumnSpec, ColumnType, DpBound, DpSpec, Engine, ExportChecks, GateInput,
    IngestFormat, IngestOptions, JobError, JobLimits, JobOutput, JobRequest, JobScope,
    ReleasedCell, Storage, TableSpec, members_needed, result_sketches, run_export_checks,
    run_export_checks_on_heads,
};
use shuyu_policy::{Classification, DisclosurePolicy, MaskingRule, Policy};
use shuyu_vault::{Envelope, KekProvider, SecretKey, VaultError};

#[derive(Debug)]
pub struct Keks(HashMap<String, SecretKey>);

impl KekProvider for Keks {
    fn kek(&self, kek_id: &str) -> Result<SecretKey, VaultError> {
        self.0
            .get(kek_id)
            .cloned()
            .ok_or_else(|| VaultError::UnknownKey(kek_id.to_owned()))
    }
}

pub fn column(name: &str, data_type: ColumnType, classification: Classification) -> ColumnSpec {
    let masking = match classification {
        Classification::DirectIdentifier => MaskingRule::Pseudonym,
        Classification::Ordinary => MaskingRule::Keep,
        _ => MaskingRule::Suppress,
    };
    ColumnSpec {
        name: name.into(),
        data_type,
        classification,
        masking,
    }
}

pub fn visit_columns() -> Vec<ColumnSpec> {
    use Classification::*;
    vec![
        column("person_id", ColumnType::String, DirectIdentifier),
        column("district", ColumnType::String, Ordinary),
        column("birth_year", ColumnType::Int64, QuasiIdentifier),
        column("diagnosis", ColumnType::String, Sensitive),
        column("cost", ColumnType::Float64, Sensitive),
        column("year", ColumnType::Int64, Ordinary),
    ]
}

pub fn person_columns() -> Vec<ColumnSpec> {
    use Classification::*;
    vec![
        column("person_id", ColumnType::String, DirectIdentifier),
        column("insured", ColumnType::Bool, Ordinary),
    ]
}

/// Visits per district, built so that rows and people disagree:
/// - A: 3 people with 10 visits each (30 rows, 3 people);
/// - B: 20 people with 2 visits each, all born 1980, cost 100;
/// - C: 12 people with one visit each; one costs 1,000,000, the others 10;
/// - D: 11 people; D0 has 100 visits of 100 (10,000 in all), the others one visit of 10;
/// - E: 24 people with one visit each, all costs different (the attacker's targets).
pub fn visits_csv() -> String {
    let mut csv = String::from("person_id,district,birth_year,diagnosis,cost,year\n");
    let mut row = |person: &str, district: &str, born: i64, cost: f64, year: i64| {
        csv.push_str(&format!("{person},{district},{born},flu,{cost},{year}\n"));
    };
    for p in 0..3 {
        for v in 0..10 {
            row(&format!("A{p}"), "A", 1950 + p, 50.0, 2020 + v % 3);
        }
    }
    for p in 0..20 {
        for v in 0..2 {
            row(&format!("B{p}"), "B", 1980, 100.0, 2020 + v);
        }
    }
    for p in 0..12 {
        let cost = if p == 0 { 1_000_000.0 } else { 10.0 };
        row(&format!("C{p}"), "C", 1960 + p, cost, 2010 + p);
    }
    for v in 0..100 {
        row("D0", "D", 1970, 100.0, 2020 + v % 2);
    }
    for p in 1..11 {
        row(&format!("D{p}"), "D", 1970 + p, 10.0, 2021);
    }
    for p in 0..24 {
        row(&format!("E{p}"), "E", 1980 + p, e_cost(p), 2022);
    }
    csv
}

/// The true cost of person E{p}.
pub fn e_cost(p: i64) -> f64 {
    1_000.0 + 37.0 * p as f64 + (p * p % 11) as f64
}

/// Canary values: no error, preview or check summary may ever contain them.
pub const CANARIES: [&str; 3] = ["CANARY_NOTE_7QX", "4242424242", "CANARY-ID-XX9"];

pub fn note_columns() -> Vec<ColumnSpec> {
    use Classification::*;
    let mut amount = column("amount", ColumnType::Float64, Sensitive);
    amount.masking = MaskingRule::GeneralizeNumber { width: 100 };
    vec![
        column("person_id", ColumnType::String, DirectIdentifier),
        column("note", ColumnType::String, Sensitive),
        amount,
    ]
}

/// One note per E person, and the canaries: the canary person's note and amount, and a note
/// of E0 (whose amount is also a canary).
pub fn notes_csv() -> String {
    let mut csv = String::from("person_id,note,amount\n");
    for p in 0..24 {
        csv.push_str(&format!("E{p},ordinary note {p},{}\n", 100 + 13 * p));
    }
    csv.push_str(&format!(
        "{},{},{}\n",
        CANARIES[2], CANARIES[0], CANARIES[1]
    ));
    csv.push_str(&format!("E0,{},{}\n", CANARIES[1], CANARIES[1]));
    csv
}

pub fn persons_csv() -> String {
    let mut csv = String::from("person_id,insured\n");
    for (prefix, n) in [("A", 3), ("B", 20), ("C", 12), ("D", 11), ("E", 24)] {
        for p in 0..n {
            csv.push_str(&format!("{prefix}{p},true\n"));
        }
    }
    csv
}

pub struct Gate {
    _temp: tempfile::TempDir,
    pub engine: Engine,
    pub visits: TableSpec,
    pub persons: TableSpec,
    pub notes: TableSpec,
    pub key: SecretKey,
}

pub static JOBS: AtomicU64 = AtomicU64::new(0);

pub async fn gate() -> Gate {
    let temp = tempfile::tempdir().unwrap();
    let keks = Arc::new(Keks(
        ["domain", "tenant:a"]
            .into_iter()
            .map(|id| (id.to_owned(), SecretKey::generate()))
            .collect(),
    ));
    let engine = Engine::new(
        Storage::local(&temp.path().join("objects")).unwrap(),
        Arc::new(Envelope::new(keks)),
    );
    let mut tables = Vec::new();
    for (name, columns, csv) in [
        ("visits", visit_columns(), visits_csv()),
        ("persons", person_columns(), persons_csv()),
        ("notes", note_columns(), notes_csv()),
    ] {
        let location = format!("datasets/ds_{name}/");
        engine
            .ingest(
                IngestFormat::Csv,
                Bytes::from(csv),
                &columns,
                &location,
                "domain",
                &IngestOptions::default(),
            )
            .await
            .expect("ingest");
        tables.push(TableSpec {
            name: name.into(),
            dataset_id: format!("ds_{name}"),
            location,
            privacy_unit: TableSpec::privacy_unit_of(&columns),
            columns,
        });
    }
    let notes = tables.pop().unwrap();
    let persons = tables.pop().unwrap();
    let visits = tables.pop().unwrap();
    Gate {
        _temp: temp,
        engine,
        visits,
        persons,
        notes,
        key: SecretKey::generate(),
    }
}

impl Gate {
    /// Runs `sql` as a job; its output and result file.
    pub async fn job(
        &self,
        sql: &str,
        tables: &[TableSpec],
    ) -> Result<(JobOutput, String), JobError> {
        self.job_dp(sql, tables, None).await
    }

    /// Runs `sql` as a job, in differential-privacy mode with `dp`.
    pub async fn job_dp(
        &self,
        sql: &str,
        tables: &[TableSpec],
        dp: Option<DpSpec>,
    ) -> Result<(JobOutput, String), JobError> {
        let policy = Policy::builtin();
        let n = JOBS.fetch_add(1, Ordering::Relaxed);
        let request = JobRequest {
            scope: JobScope::Production,
            job_id: format!("job_{n}"),
            sql: sql.into(),
            substrait_plan: None,
            tables: tables.to_vec(),
            pseudonym_key: self.key.clone(),
            result_file: format!("results/job_{n}/result.parquet"),
            result_kek: "tenant:a".into(),
            limits: JobLimits {
                max_sql_bytes: policy.limits.max_sql_bytes,
                memory_limit_bytes: 256 << 20,
                // A hang guard only: a loaded machine must not fail a test on time.
                timeout: Duration::from_secs(600),
                max_result_rows: 1_000_000,
                preview_rows: 20,
            },
            masking_defaults: policy.masking.clone(),
            min_entities: policy.disclosure.min_entities,
            dominance_n: policy.disclosure.dominance_n as usize,
            dp,
            spill: None,
        };
        let output = self.engine.run_job(&request).await?;
        Ok((output, request.result_file))
    }

    pub async fn checked_over(
        &self,
        sql: &str,
        tables: &[TableSpec],
        policy: &DisclosurePolicy,
    ) -> (JobOutput, ExportChecks) {
        let (output, batches) = self.run(sql, tables).await;
        let checks = check(&output, &batches, &[], policy);
        (output, checks)
    }

    /// Runs `sql`; its output and staged result (hidden columns included).
    pub async fn run(&self, sql: &str, tables: &[TableSpec]) -> (JobOutput, Vec<RecordBatch>) {
        let (output, file) = self
            .job(sql, tables)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        let batches = self.engine.read_result(&file).await.expect("result");
        (output, batches)
    }

    /// Runs `sql`; its output, staged result file and staged result (hidden columns
    /// included).
    pub async fn run_file(
        &self,
        sql: &str,
        tables: &[TableSpec],
    ) -> (JobOutput, String, Vec<RecordBatch>) {
        let (output, file) = self
            .job(sql, tables)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        let batches = self.engine.read_result(&file).await.expect("result");
        (output, file, batches)
    }

    /// Runs `sql` over both tables and checks its result with `policy`.
    pub async fn checked_with(
        &self,
        sql: &str,
        policy: &DisclosurePolicy,
    ) -> (JobOutput, ExportChecks) {
        let tables = [self.visits.clone(), self.persons.clone()];
        self.checked_over(sql, &tables, policy).await
    }

    pub async fn checked(&self, sql: &str) -> (JobOutput, ExportChecks) {
        self.checked_with(sql, &Policy::builtin().disclosure).await
    }
}

pub fn check(
    output: &JobOutput,
    batches: &[RecordBatch],
    released: &[ReleasedCell],
    policy: &DisclosurePolicy,
) -> ExportChecks {
    run_export_checks(&GateInput::of_output(output, batches, released), policy)
}

/// Checks a staged result as the server does: the sketches' heads first, the whole result
/// only when they do not suffice ([`members_needed`]). Also checks the whole result directly and asserts
/// that both ways reach the same outcome for every check.
pub async fn gate_check(
    engine: &Engine,
    output: &JobOutput,
    file: &str,
    released: &[ReleasedCell],
    policy: &DisclosurePolicy,
) -> ExportChecks {
    let heads = engine.read_result_for_checks(file).await.expect("result");
    let input = |batches| GateInput::of_output(output, batches, released);
    let full = engine.read_result(file).await.expect("result");
    let checks = run_export_checks_on_heads(&input(&heads), policy)
        .unwrap_or_else(|| run_export_checks(&input(&full), policy));
    // The one-go form agrees with asking first.
    assert_eq!(
        members_needed(&input(&heads), policy),
        run_export_checks_on_heads(&input(&heads), policy).is_none()
    );
    let direct = run_export_checks(&input(&full), policy);
    let outcomes = |c: &ExportChecks| -> Vec<(&'static str, CheckOutcome)> {
        c.reports.iter().map(|r| (r.name, r.outcome)).collect()
    };
    assert_eq!(
        outcomes(&checks),
        outcomes(&direct),
        "heads first: {checks:#?}\nwhole: {direct:#?}"
    );
    checks
}

pub fn report<'a>(checks: &'a ExportChecks, name: &str) -> &'a shuyu_engine::CheckReport {
    checks
        .reports
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no check {name}: {checks:#?}"))
}

pub fn outcome(checks: &ExportChecks, name: &str) -> CheckOutcome {
    report(checks, name).outcome
}

/// Every check passes except those named, which have the given outcomes.
pub fn expect(checks: &ExportChecks, sql: &str, expected: &[(&str, CheckOutcome)]) {
    for r in &checks.reports {
        let want = expected
            .iter()
            .find(|(name, _)| *name == r.name)
            .map(|(_, o)| *o)
            .unwrap_or(CheckOutcome::Pass);
        assert_eq!(r.outcome, want, "{sql}: check {} — {}", r.name, r.detail);
    }
    for (name, _) in expected {
        report(checks, name);
    }
}

/// The tenant's release ledger as the server keeps it: every released cell's population.
#[derive(Default)]
pub struct Ledger {
    pub cells: Vec<ReleasedCell>,
    releases: usize,
}

impl Ledger {
    pub fn release(&mut self, batches: &[RecordBatch]) {
        self.releases += 1;
        let export_id = format!("exp_{}", self.releases);
        for (at, sketch) in result_sketches(batches) {
            // Every release here passed the built-in (blocking) policy's checks first.
            let policy = Policy::builtin().disclosure;
            let screened = policy.block_differencing.then_some(policy.min_entities);
            self.cells
                .push(ReleasedCell::new(&export_id, at, sketch, screened));
        }
    }
}

pub fn single_value(batches: &[RecordBatch], column: &str) -> f64 {
    let batch = batches.iter().find(|b| b.num_rows() > 0).expect("a row");
    let column = arrow::compute::cast(
        batch.column_by_name(column).expect("column"),
        &arrow::datatypes::DataType::Float64,
    )
    .unwrap();
    column.as_primitive::<Float64Type>().value(0)
}

pub fn dp(epsilon: f64) -> DpSpec {
    DpSpec {
        epsilon,
        max_groups_per_unit: 1,
        max_rows_per_unit: 1,
        bounds: vec![DpBound {
            column: "cost".into(),
            lower: 0.0,
            upper: 2_000.0,
        }],
        threshold: 10,
    }
}
