//! The attack corpus (`tests/corpus/attacks.toml`): every attack runs as a job over the
//! fixture, with its earlier releases in the ledger, and must meet its expected outcome.
//! Controls must pass, so the gate is shown not to refuse everything. No error message,
//! preview or engineer-facing summary may carry a canary value.

mod support;

use serde::Deserialize;
use shuyu_engine::{CheckOutcome, ExportChecks, JobError, JobOutput};
use shuyu_policy::{Classification, Policy};
use support::*;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Corpus {
    attack: Vec<Attack>,
    /// Run by the server's e2e tests (crates/shuyu/tests/e2e/corpus.rs).
    #[serde(default)]
    server_attack: Vec<toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Attack {
    id: String,
    category: String,
    sql: String,
    #[serde(default)]
    releases: Vec<String>,
    expect: String,
    #[serde(default)]
    checks: Vec<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    dp_epsilon: Option<f64>,
}

const CORPUS: &str = include_str!("../../../tests/corpus/attacks.toml");

fn no_canary(what: &str, text: &str) -> Result<(), String> {
    match CANARIES.iter().find(|c| text.contains(*c)) {
        Some(c) => Err(format!("{what} carries canary {c}: {text}")),
        None => Ok(()),
    }
}

/// The preview invariant: a production preview shows only ordinary columns, and nothing (nor
/// the row count) when protected columns choose the rows.
fn production_preview_shows_nothing_protected(output: &JobOutput) -> Result<(), String> {
    let preview = &output.preview;
    for name in &preview.columns {
        let column = output
            .columns
            .iter()
            .find(|c| &c.name == name)
            .ok_or_else(|| format!("the preview shows an unknown column {name}"))?;
        if column.classification != Classification::Ordinary {
            return Err(format!(
                "the preview shows {name}, derived from {:?} ({})",
                column.sources, column.classification
            ));
        }
    }
    let chosen = output
        .row_influencing
        .iter()
        .any(|r| r.classification != Classification::Ordinary)
        || !output.unanalysable.is_empty();
    if chosen && !(preview.rows_withheld && preview.rows.is_empty() && preview.columns.is_empty()) {
        return Err(format!(
            "protected columns choose the rows, but the preview shows {:?}",
            preview
        ));
    }
    Ok(())
}

fn outcome_of(checks: &ExportChecks, name: &str) -> Option<CheckOutcome> {
    checks
        .reports
        .iter()
        .find(|r| r.name == name)
        .map(|r| r.outcome)
}

/// Runs one attack; `Err` says how it escaped.
async fn run(g: &Gate, attack: &Attack) -> Result<(), String> {
    let tables = [g.visits.clone(), g.persons.clone(), g.notes.clone()];
    let policy = Policy::builtin().disclosure;
    let mut ledger = Ledger::default();
    for (i, release) in attack.releases.iter().enumerate() {
        let (output, batches) = g.run(release, &tables).await;
        let checks = check(&output, &batches, &ledger.cells, &policy);
        if !checks.passed() {
            return Err(format!("release {i} does not pass on its own: {checks:?}"));
        }
        ledger.release(&batches);
    }
    let dp = attack.dp_epsilon.map(|epsilon| {
        let mut spec = dp(epsilon);
        spec.threshold = policy.min_entities;
        spec
    });
    let result = g.job_dp(&attack.sql, &tables, dp).await;
    let (output, file) = match (result, attack.expect.as_str()) {
        (Err(JobError::Refused(reason)), "refused") => {
            let wanted = attack.reason.as_deref().unwrap_or_default();
            return if reason.contains(wanted) {
                no_canary("the refusal", &reason)
            } else {
                Err(format!("refused for another reason: {reason}"))
            };
        }
        (Err(e), "error") if !matches!(e, JobError::Refused(_)) => {
            let public = e.public_message();
            no_canary("the error", &public)?;
            return if e.is_withheld() {
                Ok(())
            } else {
                Err(format!("the error is not withheld: {public}"))
            };
        }
        (Err(e), _) => return Err(format!("the job failed: {}", e.public_message())),
        (Ok(_), "refused" | "error") => return Err("the job ran".into()),
        (Ok(done), _) => done,
    };
    for row in &output.preview.rows {
        for cell in row.iter().flatten() {
            no_canary("the preview", cell)?;
        }
    }
    if attack.dp_epsilon.is_none() {
        production_preview_shows_nothing_protected(&output)?;
    }
    let checks = gate_check(&g.engine, &output, &file, &ledger.cells, &policy).await;
    for report in &checks.reports {
        no_canary("a check summary", &report.summary)?;
    }
    let want = match attack.expect.as_str() {
        "fail" => CheckOutcome::Fail,
        "review" => CheckOutcome::Review,
        "pass" => {
            return if checks.outcome() == CheckOutcome::Pass {
                Ok(())
            } else {
                Err(format!("a control does not pass: {checks:?}"))
            };
        }
        other => return Err(format!("unknown expectation {other}")),
    };
    if attack.checks.is_empty() {
        return Err("no checks named".into());
    }
    for name in &attack.checks {
        if outcome_of(&checks, name) != Some(want) {
            return Err(format!(
                "check {name} is {:?}, not {want:?}: {checks:?}",
                outcome_of(&checks, name)
            ));
        }
    }
    if want == CheckOutcome::Review && !checks.passed() {
        return Err(format!(
            "expected review only, but a check fails: {checks:?}"
        ));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn every_attack_in_the_corpus_is_stopped_and_every_control_passes() {
    let corpus: Corpus = toml::from_str(CORPUS).expect("the corpus parses");
    let mut ids = std::collections::HashSet::new();
    for attack in &corpus.attack {
        assert!(ids.insert(&attack.id), "duplicate id {}", attack.id);
    }
    let attacks = corpus
        .attack
        .iter()
        .filter(|a| a.category != "control")
        .count();
    assert!(
        attacks >= 60,
        "the corpus holds {attacks} attacks; at least 60"
    );
    // The server attacks run in crates/shuyu/tests/e2e/corpus.rs; here only their count.
    eprintln!("and {} server attacks", corpus.server_attack.len());
    let g = gate().await;
    let mut escaped = Vec::new();
    let mut by_category: std::collections::BTreeMap<&str, usize> = Default::default();
    for attack in &corpus.attack {
        *by_category.entry(&attack.category).or_default() += 1;
        if let Err(how) = run(&g, attack).await {
            escaped.push(format!("{} ({}): {how}", attack.id, attack.category));
        }
    }
    eprintln!(
        "{} attacks and {} controls: {by_category:?}",
        attacks,
        corpus.attack.len() - attacks
    );
    assert!(
        escaped.is_empty(),
        "{} of {} entries did not meet their expectation:\n{}",
        escaped.len(),
        corpus.attack.len(),
        escaped.join("\n\n")
    );
}

/// Every aggregate and window function a job may call, applied to protected columns (and to
/// one person picked by a condition) in several shapes: no production preview, error or
/// check summary carries a canary, and every preview keeps the invariant. Each function must
/// run in at least one shape, so none is skipped unseen.
#[tokio::test(flavor = "multi_thread")]
async fn no_function_the_allow_list_admits_shows_a_canary_in_a_preview() {
    use shuyu_engine::functions::{AGGREGATE, WINDOW};
    let g = gate().await;
    let tables = [g.notes.clone()];
    let policy = Policy::builtin().disclosure;
    let pick = "CASE WHEN person_id = 'CANARY-ID-XX9' THEN amount END";
    let aggregate_shapes = |f: &str| -> Vec<String> {
        vec![
            format!("SELECT {f}(amount) AS x FROM notes"),
            format!("SELECT {f}(note) AS x FROM notes"),
            format!("SELECT person_id, {f}(amount) AS x FROM notes GROUP BY person_id"),
            format!("SELECT {f}({pick}) AS x FROM notes"),
            format!("SELECT {f}(amount, amount) AS x FROM notes"),
            format!("SELECT {f}(note, ',') AS x FROM notes"),
            format!("SELECT {f}(amount, 1) AS x FROM notes"),
            format!("SELECT {f}(amount, 0.5) AS x FROM notes"),
            format!("SELECT {f}(amount, 1.0, 0.5) AS x FROM notes"),
            format!("SELECT {f}(0.5) WITHIN GROUP (ORDER BY amount) AS x FROM notes"),
            format!("SELECT {f}(person_id = 'CANARY-ID-XX9') AS x FROM notes"),
            format!("SELECT {f}(CAST(amount AS BIGINT)) AS x FROM notes"),
            format!("SELECT {f}(amount) OVER (PARTITION BY person_id) AS x FROM notes"),
            format!("SELECT person_id, {f}(amount) OVER (ORDER BY amount) AS x FROM notes"),
        ]
    };
    let window_shapes = |w: &str| -> Vec<String> {
        vec![
            format!(
                "SELECT person_id, {w}() OVER (PARTITION BY person_id ORDER BY amount) AS x FROM notes"
            ),
            format!("SELECT {w}() OVER (ORDER BY amount) AS x FROM notes"),
            format!("SELECT {w}(amount) OVER (ORDER BY amount) AS x FROM notes"),
            format!("SELECT {w}(note) OVER (ORDER BY amount) AS x FROM notes"),
            format!("SELECT {w}(amount, 1) OVER (ORDER BY amount) AS x FROM notes"),
            format!("SELECT {w}(2) OVER (ORDER BY amount) AS x FROM notes"),
        ]
    };
    let mut shapes: Vec<(&str, String)> = Vec::new();
    for f in AGGREGATE {
        if *f != "grouping" {
            shapes.extend(aggregate_shapes(f).into_iter().map(|s| (*f, s)));
        }
    }
    for w in WINDOW {
        shapes.extend(window_shapes(w).into_iter().map(|s| (*w, s)));
    }
    let mut ran: std::collections::BTreeMap<&str, usize> = Default::default();
    let mut escaped = Vec::new();
    for (function, sql) in &shapes {
        let outcome = match g.job(sql, &tables).await {
            Err(e) => no_canary("the error", &e.public_message()),
            Ok((output, file)) => {
                *ran.entry(function).or_default() += 1;
                let shown = format!("{:?}", output.preview);
                let checked = gate_check(&g.engine, &output, &file, &[], &policy).await;
                no_canary("the preview", &shown)
                    .and_then(|()| production_preview_shows_nothing_protected(&output))
                    .and_then(|()| {
                        checked
                            .reports
                            .iter()
                            .try_for_each(|r| no_canary("a check summary", &r.summary))
                    })
            }
        };
        if let Err(how) = outcome {
            escaped.push(format!("{sql}: {how}"));
        }
    }
    let never: Vec<&&str> = AGGREGATE
        .iter()
        .chain(WINDOW)
        .filter(|f| **f != "grouping" && !ran.contains_key(**f))
        .collect();
    assert!(
        never.is_empty(),
        "functions that ran in no shape: {never:?}"
    );
    assert!(escaped.is_empty(), "{}", escaped.join("\n"));
    eprintln!("{} shapes, {} functions ran", shapes.len(), ran.len());
}
