//! The export gate in-process: the plan rewrite that counts privacy units and per-unit
//! contributions, lineage, and each disclosure check's outcome and evidence on a dataset
//! built to trip them. Every expectation here would fail if the gate counted rows instead of
//! people, or per-row instead of per-person contributions.

mod support;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Float64Type;
use shuyu_engine::{CheckOutcome, JobError, RowInfluence, UnitCount};
use shuyu_policy::{Classification, Policy};
use support::*;

use CheckOutcome::{Fail, Review};

const BY_DISTRICT: &str = "SELECT district, count(*) AS visits, sum(cost) AS total \
                           FROM visits GROUP BY district ORDER BY district";

#[tokio::test]
async fn cells_are_counted_in_people_not_rows() {
    let g = gate().await;
    let (output, checks) = g.checked(BY_DISTRICT).await;
    assert_eq!(output.disclosure.units, UnitCount::Counted(1));
    expect(
        &checks,
        BY_DISTRICT,
        &[
            ("privacy_units", Fail),
            ("dominance", Fail),
            ("p_percent", Fail),
        ],
    );
    // A has 30 rows but 3 people: that is the evidence, and the only small cell.
    let units = &report(&checks, "privacy_units").detail;
    assert!(units.contains("1 of 5 cells"), "{units}");
    assert!(units.contains("row 0: 3 units (30 rows)"), "{units}");
    // C is dominated by one visit, D by one person with 100 small visits: only per-person
    // contributions reveal D.
    let dominance = &report(&checks, "dominance").detail;
    assert!(dominance.contains("row 2, sum(visits.cost)"), "{dominance}");
    assert!(dominance.contains("row 3, sum(visits.cost)"), "{dominance}");
    assert!(dominance.contains("privacy units"), "{dominance}");
    assert!(!dominance.contains("row 1"), "{dominance}");
    // The engineer learns that cells need changes, not which.
    for name in ["privacy_units", "dominance", "p_percent"] {
        let summary = &report(&checks, name).summary;
        assert!(!summary.contains("row"), "{name}: {summary}");
        assert!(!summary.contains('3'), "{name}: {summary}");
    }
    // The hidden columns never reach the preview, nor (in production) the sensitive total;
    // the small cell of the ordinary count is suppressed there.
    assert_eq!(output.preview.columns, ["district", "visits"]);
    assert_eq!(output.preview.withheld, ["total"]);
    assert!(!output.preview.rows_withheld);
    assert_eq!(
        output.preview.rows[0][1].as_deref(),
        Some(shuyu_policy::suppressed())
    );
    assert_eq!(output.preview.rows[1][1].as_deref(), Some("40"));

    // The same query per row (no privacy unit) would have passed A and missed D.
    let mut by_rows = g.visits.clone();
    by_rows.privacy_unit = None;
    let (output, checks) = g
        .checked_over(BY_DISTRICT, &[by_rows], &Policy::builtin().disclosure)
        .await;
    assert!(matches!(output.disclosure.units, UnitCount::NoUnits(_)));
    let dominance = &report(&checks, "dominance").detail;
    assert!(
        dominance.contains("row 2") && !dominance.contains("row 3"),
        "{dominance}"
    );
    assert_eq!(
        outcome(&checks, "privacy_units"),
        Review,
        "rows are not people"
    );
}

#[tokio::test]
async fn a_safe_aggregate_passes_with_its_lineage() {
    let g = gate().await;
    let sql = "SELECT district, count(*) AS visits, avg(cost) AS mean_cost FROM visits \
               WHERE district = 'B' AND year >= 2020 GROUP BY district";
    let (output, checks) = g.checked(sql).await;
    expect(&checks, sql, &[]);
    assert_eq!(checks.outcome(), CheckOutcome::Pass);
    let influence = |source: &str, role: &str| RowInfluence {
        source: source.into(),
        role: role.into(),
        classification: Classification::Ordinary,
    };
    for expected in [
        influence("visits.district", "filter"),
        influence("visits.year", "filter"),
        influence("visits.district", "group_key"),
    ] {
        assert!(
            output.row_influencing.contains(&expected),
            "{expected:?} in {:?}",
            output.row_influencing
        );
    }
    assert!(output.unanalysable.is_empty());
    let mean = &output.columns[2];
    assert!(mean.aggregated && mean.functions == ["avg"]);
    assert_eq!(mean.sources, ["visits.cost"]);
    assert_eq!(mean.classification, Classification::Sensitive);
}

#[tokio::test]
async fn the_privacy_unit_is_counted_even_when_the_scenario_leaves_it_out() {
    let g = gate().await;
    let mut listed = g.visits.clone();
    listed.columns.retain(|c| c.name != "person_id");
    assert!(
        g.job("SELECT person_id FROM visits", &[listed.clone()])
            .await
            .is_err()
    );
    let (output, checks) = g
        .checked_over(BY_DISTRICT, &[listed], &Policy::builtin().disclosure)
        .await;
    assert_eq!(output.disclosure.units, UnitCount::Counted(1));
    assert!(
        report(&checks, "privacy_units")
            .detail
            .contains("row 0: 3 units")
    );
}

#[tokio::test]
async fn duplicating_rows_through_unions_and_joins_does_not_add_people() {
    let g = gate().await;
    // 60 rows, still 3 people.
    let union = "SELECT count(*) AS n FROM (SELECT cost FROM visits WHERE district = 'A' \
                 UNION ALL SELECT cost FROM visits WHERE district = 'A')";
    let (output, checks) = g.checked(union).await;
    assert_eq!(output.disclosure.units, UnitCount::Counted(1));
    assert_eq!(outcome(&checks, "privacy_units"), Fail);
    assert!(
        report(&checks, "privacy_units")
            .detail
            .contains("3 units (60 rows)")
    );
    // A join of two person-level datasets counts both units; the smaller decides.
    let join = "SELECT v.district, count(*) AS n FROM visits v JOIN persons p \
                ON v.person_id = p.person_id GROUP BY v.district ORDER BY v.district";
    let (output, checks) = g.checked(join).await;
    assert_eq!(output.disclosure.units, UnitCount::Counted(2));
    assert!(
        report(&checks, "privacy_units")
            .detail
            .contains("row 0: 3 units")
    );
    assert!(output.row_influencing.contains(&RowInfluence {
        source: "persons.person_id".into(),
        role: "join_key".into(),
        classification: Classification::DirectIdentifier,
    }));
}

#[tokio::test]
async fn people_are_counted_through_nested_aggregates_only_when_grouped_by_them() {
    let g = gate().await;
    // Per-person figures first, then a cell over people: the inner rows are people, so the
    // gate counts them (A's 3 people fail; B's 20 pass).
    let sql = "SELECT district, count(*) AS people, avg(total) AS mean FROM (SELECT district, \
               person_id, sum(cost) AS total FROM visits GROUP BY district, person_id) \
               GROUP BY district ORDER BY district";
    let (output, checks) = g.checked(sql).await;
    assert_eq!(output.disclosure.units, UnitCount::Counted(1));
    let units = &report(&checks, "privacy_units").detail;
    assert!(units.contains("row 0: 3 units (3 rows)"), "{units}");
    assert!(!units.contains("row 1"), "{units}");
    // A person's total is their contribution: C's millionaire dominates as before.
    let dominance = &report(&checks, "dominance").detail;
    assert!(dominance.contains("row 2"), "{dominance}");
    // The same over DISTINCT people.
    let sql = "SELECT count(*) AS people FROM (SELECT DISTINCT person_id, district FROM visits) \
               WHERE district = 'B'";
    let (output, checks) = g.checked(sql).await;
    assert_eq!(output.disclosure.units, UnitCount::Counted(1));
    expect(&checks, sql, &[]);
    // Grouped by anything else, the people behind an inner row cannot be told apart: the
    // result fails (it is not left to a reviewer).
    for sql in [
        "SELECT sum(n) AS visits FROM (SELECT district, count(*) AS n FROM visits GROUP BY \
         district)",
        "SELECT count(*) AS n FROM (SELECT DISTINCT district, year FROM visits)",
    ] {
        let (output, checks) = g.checked(sql).await;
        assert!(
            matches!(&output.disclosure.units, UnitCount::Rows(r) if r.contains("cannot be counted")),
            "{sql}: {:?}",
            output.disclosure.units
        );
        assert_eq!(outcome(&checks, "privacy_units"), Fail, "{sql}");
    }
}

#[tokio::test]
async fn value_revealing_aggregates_are_flagged_or_failed() {
    let g = gate().await;
    let only_b = "FROM visits WHERE district = 'B' GROUP BY district";
    let cases: Vec<(String, Vec<(&str, CheckOutcome)>)> = vec![
        (
            format!("SELECT district, max(cost) AS top {only_b}"),
            vec![("extreme_values", Review)],
        ),
        (
            format!("SELECT district, median(cost) AS mid {only_b}"),
            vec![("extreme_values", Review)],
        ),
        (
            format!("SELECT district, first_value(diagnosis) AS d {only_b}"),
            vec![("reproduced_values", Fail)],
        ),
        (
            format!("SELECT district, string_agg(diagnosis, ',') AS d {only_b}"),
            vec![("reproduced_values", Fail)],
        ),
        (
            format!("SELECT district, array_agg(cost) AS d {only_b}"),
            vec![("reproduced_values", Fail)],
        ),
        (
            format!(
                "SELECT district, count(CASE WHEN diagnosis = 'rare' THEN 1 END) AS rare {only_b}"
            ),
            vec![("zero_and_small_cells", Review)],
        ),
        // A condition on an identifier inside an aggregate selects people: its branch is a
        // population of one.
        (
            format!(
                "SELECT district, count(CASE WHEN person_id = 'B1' THEN 1 END) AS one {only_b}"
            ),
            vec![
                ("privacy_units", Fail),
                ("zero_and_small_cells", Review),
                ("reconstruction", Fail),
            ],
        ),
        // Ordinary columns' extremes are not protected values.
        (
            format!("SELECT district, max(year) AS latest {only_b}"),
            vec![],
        ),
    ];
    for (sql, expected) in cases {
        let (_, checks) = g.checked(&sql).await;
        expect(&checks, &sql, &expected);
    }
    // Extremes can be switched off by policy; zeros too.
    let mut lenient = Policy::builtin().disclosure;
    lenient.flag_extremes = false;
    let sql = format!("SELECT district, max(cost) AS top {only_b}");
    let (_, checks) = g.checked_with(&sql, &lenient).await;
    expect(&checks, &sql, &[]);
}

#[tokio::test]
async fn model_outputs_need_residual_degrees_of_freedom() {
    let g = gate().await;
    // C has 12 people: 10 residual degrees of freedom for a slope.
    let sql = "SELECT district, regr_slope(cost, year) AS slope, count(*) AS n FROM visits \
               WHERE district = 'B' OR district = 'C' GROUP BY district ORDER BY district";
    let mut policy = Policy::builtin().disclosure;
    policy.dominance_k = 0.999_999;
    policy.p_percent = 0.000_001;
    let (_, checks) = g.checked_with(sql, &policy).await;
    assert_eq!(
        outcome(&checks, "residual_dof"),
        CheckOutcome::Pass,
        "{checks:#?}"
    );
    policy.min_residual_dof = 11;
    let (_, checks) = g.checked_with(sql, &policy).await;
    assert_eq!(outcome(&checks, "residual_dof"), Fail);
    let detail = &report(&checks, "residual_dof").detail;
    assert!(
        detail.contains("row 1: 10 residual") && !detail.contains("row 0"),
        "{detail}"
    );
}

#[tokio::test]
async fn row_level_results_are_checked_for_values_and_k_anonymity() {
    let g = gate().await;
    let cases: Vec<(&str, Vec<(&str, CheckOutcome)>)> = vec![
        // A window keeps row granularity: a sensitive sum per row is a source value.
        (
            "SELECT district, sum(cost) OVER (PARTITION BY district) AS s FROM visits",
            vec![("source_values_masked", Fail)],
        ),
        (
            "SELECT person_id, district FROM visits",
            vec![("direct_identifiers_pseudonymised", Fail)],
        ),
        (
            "SELECT pseudonym(person_id) AS p, district FROM visits",
            vec![],
        ),
        // Birth years in C are all different: each row is alone.
        (
            "SELECT birth_year, district FROM visits WHERE district = 'C'",
            vec![("k_anonymity", Fail)],
        ),
        // B's 40 rows share one birth year.
        (
            "SELECT birth_year, district FROM visits WHERE district = 'B'",
            vec![],
        ),
    ];
    for (sql, expected) in cases {
        let (output, checks) = g.checked(sql).await;
        assert!(!output.disclosure.aggregate, "{sql}");
        expect(&checks, sql, &expected);
    }
    let (_, checks) = g
        .checked("SELECT birth_year, district FROM visits WHERE district = 'C'")
        .await;
    let k = report(&checks, "k_anonymity");
    assert!(k.detail.contains("12 combinations"), "{}", k.detail);
    assert!(
        !k.summary.contains("19"),
        "no value in the summary: {}",
        k.summary
    );
}

#[tokio::test]
async fn reserved_names_cannot_spoof_the_gate_columns() {
    let g = gate().await;
    let tables = [g.visits.clone()];
    for sql in [
        "SELECT district, count(*) AS __shuyu_units_0 FROM visits GROUP BY district",
        "SELECT 1000 AS __SHUYU_group_rows",
    ] {
        match g.job(sql, &tables).await {
            Err(JobError::Refused(reason)) => assert!(reason.contains("reserved"), "{reason}"),
            other => panic!("{sql}: {:?}", other.map(|o| o.0.n_rows)),
        }
    }
}

#[tokio::test]
async fn a_plan_the_walker_cannot_analyse_cannot_be_exported() {
    let g = gate().await;
    let sql = "SELECT unnest(make_array(year, year + 1)) AS y FROM visits";
    let (output, checks) = g.checked(sql).await;
    assert!(!output.unanalysable.is_empty(), "{:?}", output.columns);
    assert_eq!(outcome(&checks, "lineage_analysable"), Fail);
}

/// A cell identical to a released one is not compared with the ledger again only when every
/// released cell passed a blocking differencing check at today's threshold or above.
#[tokio::test]
async fn a_repeated_release_skips_the_ledger_only_when_the_ledger_was_screened() {
    let g = gate().await;
    let tables = [g.visits.clone()];
    let policy = Policy::builtin().disclosure;
    let all = "SELECT count(*) AS n, sum(cost) AS total FROM visits WHERE district = 'E'";
    let but_one = "SELECT count(*) AS n, sum(cost) AS total FROM visits WHERE district = 'E' \
                   AND person_id <> 'E7'";
    let (_, _, first) = g.run_file(all, &tables).await;
    let (_, _, second) = g.run_file(but_one, &tables).await;
    // Both released: the second one while the policy let reviewers judge close pairs.
    let mut ledger = Ledger::default();
    ledger.release(&first);
    ledger.release(&second);
    ledger.cells[1].screened_k = None;
    // The first query again: its population is a released one's, but the ledger holds a
    // release that was not screened, which it differs from by one person.
    let (output, file, _) = g.run_file(all, &tables).await;
    let checks = gate_check(&g.engine, &output, &file, &ledger.cells, &policy).await;
    assert_eq!(outcome(&checks, "differencing"), Fail, "{checks:#?}");
    // Screened under a lower threshold than today's: compared again.
    ledger.cells[1].screened_k = Some(policy.min_entities - 1);
    let checks = gate_check(&g.engine, &output, &file, &ledger.cells, &policy).await;
    assert_eq!(outcome(&checks, "differencing"), Fail, "{checks:#?}");
    // Were every released cell screened (which the second could not have been), the repeat
    // would be recognised by its digest and not compared: the skip is taken.
    ledger.cells[1].screened_k = Some(policy.min_entities);
    let checks = gate_check(&g.engine, &output, &file, &ledger.cells, &policy).await;
    assert_eq!(
        outcome(&checks, "differencing"),
        CheckOutcome::Pass,
        "{checks:#?}"
    );
    // A population one person away from the released ones is compared as ever.
    let (output, file, _) = g
        .run_file(
            "SELECT count(*) AS n, sum(cost) AS total FROM visits WHERE district = 'E' \
             AND person_id <> 'E3'",
            &tables,
        )
        .await;
    let checks = gate_check(&g.engine, &output, &file, &ledger.cells, &policy).await;
    assert_eq!(outcome(&checks, "differencing"), Fail, "{checks:#?}");
}

#[tokio::test]
async fn differencing_pairs_are_caught_by_the_ledger_and_work_without_it() {
    let g = gate().await;
    let tables = [g.visits.clone()];
    let policy = Policy::builtin().disclosure;
    let pairs = [
        // The same query with one person excluded.
        (
            "SELECT count(*) AS n, sum(cost) AS total FROM visits WHERE district = 'E'",
            "SELECT count(*) AS n, sum(cost) AS total FROM visits WHERE district = 'E' \
             AND person_id <> 'E7'",
            e_cost(7),
        ),
        // Overlapping populations of different shape whose difference is one person
        // (the only one born in 1995).
        (
            "SELECT count(*) AS n, sum(cost) AS total FROM visits WHERE district = 'E' \
             AND birth_year <= 1995",
            "SELECT count(*) AS n, sum(cost) AS total FROM visits WHERE district = 'E' \
             AND birth_year < 1995 AND year = 2022",
            e_cost(15),
        ),
    ];
    for (first, second, secret) in pairs {
        let (out1, res1) = g.run(first, &tables).await;
        let checks1 = check(&out1, &res1, &[], &policy);
        assert!(checks1.passed(), "{first}: {checks1:#?}");
        let (out2, file2, res2) = g.run_file(second, &tables).await;
        // Without the ledger, each passes on its own, and the difference is one person's cost.
        assert!(check(&out2, &res2, &[], &policy).passed(), "{second}");
        let leaked = single_value(&res1, "total") - single_value(&res2, "total");
        assert!(
            (leaked - secret).abs() < 1e-6,
            "the attack works: {leaked} vs {secret}"
        );
        // With the first released, the second is refused.
        let mut ledger = Ledger::default();
        ledger.release(&res1);
        let checks2 = gate_check(&g.engine, &out2, &file2, &ledger.cells, &policy).await;
        assert_eq!(outcome(&checks2, "differencing"), Fail, "{second}");
        let detail = &report(&checks2, "differencing").detail;
        assert!(
            detail.contains("row 0 and row 0 of export exp_1"),
            "{detail}"
        );
        assert!(detail.contains("differ by 1 privacy units"), "{detail}");
        assert!(!report(&checks2, "differencing").summary.contains('1'));
    }
}

/// The attacker's side of a linear reconstruction: solves the released sums for every
/// person it can (Gaussian elimination in floating point, independent of the gate's exact
/// arithmetic).
fn solve(equations: &[(Vec<usize>, f64)], people: usize) -> Vec<Option<f64>> {
    let mut rows: Vec<Vec<f64>> = equations
        .iter()
        .map(|(members, value)| {
            let mut row = vec![0.0; people + 1];
            for &m in members {
                row[m] = 1.0;
            }
            row[people] = *value;
            row
        })
        .collect();
    let mut pivots = Vec::new();
    let mut next = 0;
    for col in 0..people {
        let Some(found) = (next..rows.len())
            .max_by(|&a, &b| rows[a][col].abs().partial_cmp(&rows[b][col].abs()).unwrap())
        else {
            break;
        };
        if rows[found][col].abs() < 1e-9 {
            continue;
        }
        rows.swap(next, found);
        let scale = rows[next][col];
        for v in rows[next].iter_mut() {
            *v /= scale;
        }
        let pivot = rows[next].clone();
        for (r, row) in rows.iter_mut().enumerate() {
            if r != next {
                let f = row[col];
                for (v, p) in row.iter_mut().zip(&pivot) {
                    *v -= f * p;
                }
            }
        }
        pivots.push((next, col));
        next += 1;
    }
    let mut out = vec![None; people];
    for (r, col) in pivots {
        let free_zero = (0..people)
            .filter(|&c| c != col)
            .all(|c| rows[r][c].abs() < 1e-9);
        if free_zero {
            out[col] = Some(rows[r][people]);
        }
    }
    out
}

#[tokio::test]
async fn a_linear_reconstruction_attack_recovers_nobody_through_the_gate() {
    let g = gate().await;
    let tables = [g.visits.clone()];
    let policy = Policy::builtin().disclosure;
    // 36 sums over pseudo-random subsets of E's 24 people, 12 to 14 each: every subset is
    // large enough on its own, and pairs differ by about a dozen people.
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut subsets = Vec::new();
    for _ in 0..36 {
        let mut members: Vec<usize> = Vec::new();
        while members.len() < 12 + (seed % 3) as usize {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let p = (seed % 24) as usize;
            if !members.contains(&p) {
                members.push(p);
            }
        }
        members.sort_unstable();
        subsets.push(members);
    }
    let mut unaudited = Vec::new();
    let mut ledger = Ledger::default();
    let mut released = Vec::new();
    let mut refused = 0;
    for members in &subsets {
        let ids: Vec<String> = members.iter().map(|p| format!("'E{p}'")).collect();
        let sql = format!(
            "SELECT count(*) AS n, sum(cost) AS total FROM visits WHERE person_id IN ({})",
            ids.join(", ")
        );
        let (output, file, batches) = g.run_file(&sql, &tables).await;
        let total = single_value(&batches, "total");
        // Each query alone passes every check.
        let alone = check(&output, &batches, &[], &policy);
        assert!(alone.passed(), "{sql}: {alone:#?}");
        unaudited.push((members.clone(), total));
        let checks = gate_check(&g.engine, &output, &file, &ledger.cells, &policy).await;
        if checks.passed() {
            ledger.release(&batches);
            released.push((members.clone(), total));
        } else {
            refused += 1;
            assert!(
                outcome(&checks, "reconstruction") == Fail
                    || outcome(&checks, "differencing") == Fail,
                "{checks:#?}"
            );
        }
    }
    // Without the gate's memory, the attacker solves everyone exactly.
    let solved = solve(&unaudited, 24);
    for (p, value) in solved.iter().enumerate() {
        let value = value.unwrap_or_else(|| panic!("E{p} not solved without the ledger"));
        assert!((value - e_cost(p as i64)).abs() < 1e-6, "E{p}: {value}");
    }
    eprintln!(
        "reconstruction attack: {} released, {refused} refused",
        released.len()
    );
    // Through the gate, nobody.
    assert!(refused > 0 && !released.is_empty(), "{refused} refused");
    let solved = solve(&released, 24);
    assert!(
        solved.iter().all(Option::is_none),
        "{} of 24 solved from {} releases",
        solved.iter().flatten().count(),
        released.len()
    );
}

/// Rows of a DP result as (district, n, total, mean).
fn dp_rows(batches: &[RecordBatch]) -> Vec<(String, i64, f64, Option<f64>)> {
    let mut rows = Vec::new();
    for b in batches {
        let district =
            arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Utf8).unwrap();
        let district = district.as_string::<i32>();
        let n = b.column(1).as_primitive::<arrow::datatypes::Int64Type>();
        let total = b.column(2).as_primitive::<Float64Type>();
        let mean = b.column(3).as_primitive::<Float64Type>();
        for i in 0..b.num_rows() {
            rows.push((
                district.value(i).to_owned(),
                n.value(i),
                total.value(i),
                (!mean.is_null(i)).then(|| mean.value(i)),
            ));
        }
    }
    rows
}

const DP_SQL: &str = "SELECT district, count(*) AS n, sum(cost) AS total, avg(cost) AS mean \
                      FROM visits GROUP BY district ORDER BY district";

#[tokio::test]
async fn dp_jobs_bound_each_person_add_opendp_noise_and_hide_small_groups() {
    let g = gate().await;
    let tables = [g.visits.clone()];
    // A generous budget: the noise is small, and the checks below are about bounding and
    // thresholds, not about luck.
    let (output, file) = g.job_dp(DP_SQL, &tables, Some(dp(10.0))).await.unwrap();
    let guarantee = output.disclosure.dp.clone().expect("a DP guarantee");
    assert!(
        guarantee.epsilon <= 10.0 && guarantee.epsilon > 9.99,
        "{guarantee:?}"
    );
    assert!(
        guarantee.delta > 0.0 && guarantee.delta < 1e-3,
        "{guarantee:?}"
    );
    // count, sum, mean (two), people: five noised quantities.
    assert_eq!(guarantee.measures.len(), 5, "{guarantee:?}");
    let batches = g.engine.read_result(&file).await.unwrap();
    assert!(
        batches.iter().all(|b| b
            .schema()
            .fields()
            .iter()
            .all(|f| !f.name().starts_with("__shuyu"))),
        "no hidden column in a DP result"
    );
    let rows = dp_rows(&batches);
    let districts: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    // A has 3 people: dropped by the threshold. B, C, D, E have 20, 12, 11 and 24.
    assert!(!districts.contains(&"A"), "{rows:?}");
    assert!(
        districts.contains(&"B") && districts.contains(&"E"),
        "{rows:?}"
    );
    for (district, n, total, _) in &rows {
        // One row per person (max_rows_per_unit = 1): counts are people, not visits.
        let (people, true_total) = match district.as_str() {
            "B" => (20, 20.0 * 100.0),
            "C" => (12, 2_000.0 + 11.0 * 10.0),
            "D" => (11, 2_000.0 + 10.0 * 10.0),
            "E" => (24, (0..24).map(e_cost).sum::<f64>()),
            other => panic!("unexpected group {other}"),
        };
        assert!((n - people).abs() <= 6, "{district}: {n} vs {people}");
        // C's 1,000,000 and D0's 10,000 are clamped to 2,000 per person.
        assert!(
            (total - true_total).abs() < 2_000.0 * 8.0,
            "{district}: {total} vs {true_total}"
        );
    }
    // The gate trusts the mechanism, not the small-cell rules.
    let checks = check(&output, &batches, &[], &Policy::builtin().disclosure);
    assert_eq!(checks.outcome(), CheckOutcome::Pass, "{checks:#?}");
    assert!(
        report(&checks, "differential_privacy")
            .detail
            .contains("OpenDP")
    );
}

#[tokio::test]
async fn dp_noise_is_fresh_on_every_run() {
    let g = gate().await;
    let tables = [g.visits.clone()];
    let sql = "SELECT district, count(*) AS n, sum(cost) AS total, avg(cost) AS mean \
               FROM visits WHERE district = 'E' GROUP BY district";
    let mut totals = Vec::new();
    for _ in 0..12 {
        let (_, file) = g.job_dp(sql, &tables, Some(dp(2.0))).await.unwrap();
        let rows = dp_rows(&g.engine.read_result(&file).await.unwrap());
        totals.extend(rows.into_iter().map(|r| r.2));
    }
    let first = totals[0];
    assert!(
        totals.iter().any(|t| (t - first).abs() > 1e-9),
        "{totals:?}"
    );
    let truth: f64 = (0..24).map(e_cost).sum();
    let mean = totals.iter().sum::<f64>() / totals.len() as f64;
    // Scale 2,000 · 5 / 2 = 5,000 per run: the mean of 12 runs is within a few scales.
    assert!((mean - truth).abs() < 15_000.0, "{mean} vs {truth}");
}

#[tokio::test]
async fn dp_mode_refuses_what_it_cannot_bound() {
    let g = gate().await;
    let both = [g.visits.clone(), g.persons.clone()];
    let cases = [
        (
            "SELECT district, max(cost) AS m FROM visits GROUP BY district",
            "max is not available",
        ),
        (
            "SELECT district, sum(year) AS s FROM visits GROUP BY district",
            "needs bounds",
        ),
        ("SELECT district, cost FROM visits", "must be one aggregate"),
        (
            "SELECT v.district, count(*) AS n FROM visits v JOIN persons p \
             ON v.person_id = p.person_id GROUP BY v.district",
            "exactly one dataset",
        ),
        (
            "SELECT district, count(DISTINCT person_id) AS n FROM visits GROUP BY district",
            "DISTINCT",
        ),
    ];
    for (sql, expected) in cases {
        match g.job_dp(sql, &both, Some(dp(1.0))).await {
            Err(JobError::Refused(reason)) => {
                assert!(reason.contains(expected), "{sql}: {reason}")
            }
            other => panic!("{sql}: {:?}", other.map(|o| o.0.n_rows)),
        }
    }
    let mut bad = dp(1.0);
    bad.epsilon = 0.0;
    assert!(matches!(
        g.job_dp(DP_SQL, &both, Some(bad)).await,
        Err(JobError::Refused(_))
    ));
}

/// Aggregates that decompose per (cell, person) are rewritten into one pass: the per-person
/// aggregation computes the cells too. It must give exactly what the two-pass form gives
/// (the cells, then the per-person statistics joined back), which a query with one
/// non-decomposable aggregate (`count(DISTINCT …)`) still gets, and read the data once.
#[tokio::test]
async fn the_one_pass_rewrite_gives_what_the_two_pass_one_gives() {
    let g = gate().await;
    let select = "SELECT district, count(*) AS n, sum(cost) AS total, min(cost) AS lo, \
                  max(cost) AS hi, avg(cost) AS mean, count(cost) FILTER (WHERE year > 2020) \
                  AS recent, sum(CASE WHEN year > 2020 THEN cost END) AS recent_total, \
                  sum(year) AS years";
    let (out1, _) = same_in_one_and_two_passes(
        &g,
        select,
        "FROM visits GROUP BY district ORDER BY district",
        5,
    )
    .await;
    assert!(
        !out1.disclosure.populations.is_empty(),
        "the FILTER makes a population"
    );
    // No GROUP BY: one cell, also over no rows at all (count 0, sums NULL, an empty sketch).
    same_in_one_and_two_passes(
        &g,
        "SELECT count(*) AS n, sum(cost) AS total",
        "FROM visits",
        1,
    )
    .await;
    same_in_one_and_two_passes(
        &g,
        "SELECT count(*) AS n, sum(cost) AS total",
        "FROM visits WHERE year > 3000",
        1,
    )
    .await;
    // NULL group keys are one cell in both.
    same_in_one_and_two_passes(
        &g,
        "SELECT CASE WHEN district IN ('A', 'B') THEN NULL ELSE district END AS d, \
         count(*) AS n, max(cost) AS hi, sum(cost) AS total",
        "FROM visits GROUP BY 1 ORDER BY 1",
        4,
    )
    .await;
}

/// Runs `{select} {rest}` (one pass) and `{select}, count(DISTINCT cost) {rest}` (two
/// passes), checks that every column of the first, hidden ones included, equals the same
/// column of the second, and that the first read the data at most once where the second
/// read it twice. Returns the one-pass output and its result.
async fn same_in_one_and_two_passes(
    g: &Gate,
    select: &str,
    rest: &str,
    rows: usize,
) -> (shuyu_engine::JobOutput, Vec<RecordBatch>) {
    let tables = [g.visits.clone()];
    let one_pass = format!("{select} {rest}");
    let two_pass = format!("{select}, count(DISTINCT cost) AS costs {rest}");
    let (out1, batches1) = g.run(&one_pass, &tables).await;
    let (out2, batches2) = g.run(&two_pass, &tables).await;
    assert_eq!(out1.disclosure.units, UnitCount::Counted(1), "{one_pass}");
    assert_eq!(out1.disclosure.dominance, out2.disclosure.dominance);
    assert_eq!(out1.disclosure.populations, out2.disclosure.populations);
    assert!(
        out2.bytes_scanned == 0 || out2.bytes_scanned > out1.bytes_scanned * 3 / 2,
        "{one_pass}: one pass reads the visits once: {} against {}",
        out1.bytes_scanned,
        out2.bytes_scanned
    );
    let one = arrow::compute::concat_batches(&batches1[0].schema(), &batches1).unwrap();
    let two = arrow::compute::concat_batches(&batches2[0].schema(), &batches2).unwrap();
    assert_eq!(one.num_rows(), rows, "{one_pass}");
    assert_eq!(one.num_rows(), two.num_rows(), "{one_pass}");
    let mut compared = 0;
    for (i, field) in one.schema().fields().iter().enumerate() {
        let a = one.column(i);
        let b = two
            .column_by_name(field.name())
            .unwrap_or_else(|| panic!("{} missing from the two-pass result", field.name()));
        assert_eq!(a.data_type(), b.data_type(), "{}", field.name());
        if let (Some(a), Some(b)) = (
            a.as_primitive_opt::<Float64Type>(),
            b.as_primitive_opt::<Float64Type>(),
        ) {
            for row in 0..a.len() {
                assert_eq!(a.is_null(row), b.is_null(row), "{} row {row}", field.name());
                let (x, y) = (a.value(row), b.value(row));
                assert!(
                    (x - y).abs() <= 1e-9 * x.abs().max(1.0),
                    "{} row {row}: {x} against {y}",
                    field.name()
                );
            }
        } else {
            assert_eq!(a.as_ref(), b.as_ref(), "{one_pass}: {}", field.name());
        }
        compared += 1;
    }
    // The query's columns and at least the rows, units and sketch head columns.
    assert!(compared >= 3 + 2, "{compared} columns compared");
    (out1, batches1)
}
