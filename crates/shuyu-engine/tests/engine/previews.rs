//! Masking previews as snapshots: each case runs one job over the fixture's residents table
//! (lab or production scope) and renders what the engineer is shown — the output columns
//! with their lineage, the preview's cells, the withheld columns and the note — as text
//! compared with an `expect![[...]]` literal. `UPDATE_EXPECT=1 cargo nextest run -p
//! shuyu-engine --test engine previews` rewrites the literals after an intended change.
//!
//! A preview's pseudonym tokens are made under a fresh key for each preview, so they are
//! rendered by their shape (`p_<16 hex>`); everything else in the rendering is stable.

use std::fmt::Write as _;

use expect_test::{Expect, expect};
use shuyu_engine::JobScope::{Lab, Production};
use shuyu_engine::{JobOutput, JobScope};

use super::*;

/// Runs `sql` in `scope` over the residents table (301 rows, one of them the canaries alone
/// in 北仑区) and `staff`, the same rows with `id_number` declared `partial_id` instead of
/// `pseudonym`, and compares the rendered preview with `expect`.
#[track_caller]
fn check(scope: JobScope, sql: &str, expect: Expect) {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let output = runtime.block_on(async {
        let f = fixture();
        let residents = f.ingest("residents", "ds_a", "domain").await;
        let staff = ingest_staff(&f).await;
        let mut request = f.job(sql, &[residents, staff], &SecretKey::generate());
        request.scope = scope;
        f.engine.run_job(&request).await.expect("the job runs")
    });
    let text = render(&output);
    for canary in CANARIES {
        assert!(!text.contains(canary), "{canary} in the preview:\n{text}");
    }
    expect.assert_eq(&text);
}

async fn ingest_staff(f: &Fixture) -> TableSpec {
    let mut columns = people_columns();
    for column in &mut columns {
        if column.name == "id_number" {
            column.masking = MaskingRule::PartialIdNumber;
        }
    }
    let location = "datasets/ds_staff/".to_owned();
    f.engine
        .ingest(
            IngestFormat::Csv,
            Bytes::from(people_csv()),
            &columns,
            &location,
            "domain",
            &IngestOptions::default(),
        )
        .await
        .expect("ingest");
    TableSpec {
        name: "staff".into(),
        dataset_id: "ds_staff".into(),
        location,
        privacy_unit: TableSpec::privacy_unit_of(&columns),
        columns,
    }
}

fn render(output: &JobOutput) -> String {
    let mut out = String::new();
    let kind = if output.aggregate {
        "aggregate"
    } else {
        "row-level"
    };
    if output.preview.rows_withheld {
        writeln!(out, "{kind} result, n_rows withheld").unwrap();
    } else {
        writeln!(out, "{kind} result, n_rows {}", output.n_rows).unwrap();
    }
    for c in &output.columns {
        let mut marks = vec![c.classification.as_str().to_owned()];
        if c.aggregated {
            marks.push("aggregated".into());
        }
        if c.masked {
            marks.push("masked".into());
        }
        writeln!(
            out,
            "column {} {} ({}) <- [{}], shown as {}",
            c.name,
            c.data_type,
            marks.join(", "),
            c.sources.join(", "),
            c.preview_rule
        )
        .unwrap();
    }
    let preview = &output.preview;
    if !preview.columns.is_empty() {
        writeln!(out, "| {} |", preview.columns.join(" | ")).unwrap();
    }
    for row in &preview.rows {
        let cells: Vec<String> = row
            .iter()
            .map(|cell| {
                cell.as_deref()
                    .map_or_else(|| "NULL".to_owned(), token_shapes)
            })
            .collect();
        writeln!(out, "| {} |", cells.join(" | ")).unwrap();
    }
    if !preview.withheld.is_empty() {
        writeln!(out, "withheld: {}", preview.withheld.join(", ")).unwrap();
    }
    if !preview.note.is_empty() {
        writeln!(out, "note: {}", preview.note).unwrap();
    }
    out
}

/// `cell` with each pseudonym token (`p_` and 16 hex digits, under a key made for this
/// preview alone) replaced by its shape.
fn token_shapes(cell: &str) -> String {
    let is_token = |s: &str| {
        s.len() >= 18
            && s.starts_with("p_")
            && s.as_bytes()[2..18]
                .iter()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
    };
    let mut out = String::new();
    let mut rest = cell;
    while let Some(at) = rest.find("p_") {
        out.push_str(&rest[..at]);
        if is_token(&rest[at..]) {
            out.push_str("p_<16 hex>");
            rest = &rest[at + 18..];
        } else {
            out.push_str("p_");
            rest = &rest[at + 2..];
        }
    }
    out.push_str(rest);
    out
}

#[test]
fn lab_pseudonymises_an_identifier() {
    check(
        Lab,
        "SELECT id_number FROM residents ORDER BY id_number LIMIT 2",
        expect![[r#"
            row-level result, n_rows 2
            column id_number Utf8View (direct_identifier) <- [residents.id_number], shown as pseudonym
            | id_number |
            | p_<16 hex> |
            | p_<16 hex> |
        "#]],
    );
}

#[test]
fn lab_pseudonym_function_masks_by_proof() {
    check(
        Lab,
        "SELECT pseudonym(id_number) AS pid, district FROM residents ORDER BY name LIMIT 2",
        expect![[r#"
            row-level result, n_rows 2
            column pid Utf8 (direct_identifier, masked) <- [residents.id_number], shown as keep
            column district Utf8View (ordinary) <- [residents.district], shown as keep
            | pid | district |
            | p_<16 hex> | 北仑区 |
            | p_<16 hex> | 海曙区 |
        "#]],
    );
}

#[test]
fn lab_shows_a_partial_id_number() {
    check(
        Lab,
        "SELECT id_number FROM staff ORDER BY name LIMIT 2",
        expect![[r#"
            row-level result, n_rows 2
            column id_number Utf8View (direct_identifier) <- [staff.id_number], shown as partial_id
            | id_number |
            | 330**************6 |
            | 330**************X |
        "#]],
    );
}

#[test]
fn lab_mask_id_finer_than_the_column_rule_is_still_shown_as_a_token() {
    check(
        Lab,
        "SELECT mask_id(id_number) AS id FROM residents ORDER BY name LIMIT 2",
        expect![[r#"
            row-level result, n_rows 2
            column id Utf8 (direct_identifier) <- [residents.id_number], shown as pseudonym
            | id |
            | p_<16 hex> |
            | p_<16 hex> |
        "#]],
    );
}

#[test]
fn lab_shows_partial_names_and_mobiles() {
    check(
        Lab,
        "SELECT name, mobile FROM residents ORDER BY name LIMIT 2",
        expect![[r#"
            row-level result, n_rows 2
            column name Utf8View (direct_identifier) <- [residents.name], shown as partial_name
            column mobile Utf8View (direct_identifier) <- [residents.mobile], shown as partial_mobile
            | name | mobile |
            | C********** | 139****0001 |
            | 王* | 138****0000 |
        "#]],
    );
}

#[test]
fn lab_generalises_a_number() {
    check(
        Lab,
        "SELECT cost FROM residents ORDER BY cost LIMIT 3",
        expect![[r#"
            row-level result, n_rows 3
            column cost Float64 (sensitive) <- [residents.cost], shown as generalize_number:100
            | cost |
            | [100,200) |
            | [100,200) |
            | [100,200) |
        "#]],
    );
}

#[test]
fn lab_generalises_a_date_to_its_year() {
    check(
        Lab,
        "SELECT birth_date FROM residents ORDER BY birth_date LIMIT 2",
        expect![[r#"
            row-level result, n_rows 2
            column birth_date Date32 (quasi_identifier) <- [residents.birth_date], shown as generalize_date:year
            | birth_date |
            | 1950 |
            | 1950 |
        "#]],
    );
}

#[test]
fn lab_suppresses_a_sensitive_column() {
    check(
        Lab,
        "SELECT district, diagnosis FROM residents ORDER BY name LIMIT 2",
        expect![[r#"
            row-level result, n_rows 2
            column district Utf8View (ordinary) <- [residents.district], shown as keep
            column diagnosis Utf8View (sensitive) <- [residents.diagnosis], shown as suppress
            | district | diagnosis |
            | 北仑区 | * |
            | 海曙区 | * |
        "#]],
    );
}

#[test]
fn production_withholds_rows_a_protected_column_selects() {
    check(
        Production,
        "SELECT district FROM residents WHERE cost > 90000",
        expect![[r#"
            row-level result, n_rows withheld
            column district Utf8View (ordinary) <- [residents.district], shown as keep
            withheld: district
            note: production result: protected columns choose its rows (residents.cost (filter)), so neither its values nor its row count are shown; request an export to have it reviewed
        "#]],
    );
}

#[test]
fn production_shows_an_ordinary_only_result() {
    check(
        Production,
        "SELECT DISTINCT district FROM residents ORDER BY district",
        expect![[r#"
            row-level result, n_rows 4
            column district Utf8View (ordinary) <- [residents.district], shown as keep
            | district |
            | 北仑区 |
            | 江北区 |
            | 海曙区 |
            | 鄞州区 |
            note: production result: every column is ordinary
        "#]],
    );
}

#[test]
fn production_shows_only_the_ordinary_columns() {
    check(
        Production,
        "SELECT district, diagnosis, cost FROM residents ORDER BY district LIMIT 2",
        expect![[r#"
            row-level result, n_rows 2
            column district Utf8View (ordinary) <- [residents.district], shown as keep
            column diagnosis Utf8View (sensitive) <- [residents.diagnosis], shown as suppress
            column cost Float64 (sensitive) <- [residents.cost], shown as generalize_number:100
            | district |
            | 北仑区 |
            | 江北区 |
            withheld: diagnosis, cost
            note: production result: only ordinary columns are shown; the others derive from protected columns and leave only through an export's review
        "#]],
    );
}

#[test]
fn an_aggregate_preview_suppresses_a_small_group() {
    check(
        Lab,
        "SELECT district, count(*) AS n, max(cost) AS top FROM residents \
         GROUP BY district ORDER BY district",
        expect![[r#"
            aggregate result, n_rows 4
            column district Utf8View (ordinary) <- [residents.district], shown as keep
            column n Int64 (ordinary, aggregated) <- [], shown as keep
            column top Float64 (sensitive) <- [residents.cost], shown as suppress
            | district | n | top |
            | 北仑区 | * | * |
            | 江北区 | 100 | * |
            | 海曙区 | 100 | * |
            | 鄞州区 | 100 | * |
        "#]],
    );
}

#[test]
fn a_production_aggregate_keeps_only_its_ordinary_group_keys() {
    check(
        Production,
        "SELECT district, count(*) AS n FROM residents GROUP BY district ORDER BY district",
        expect![[r#"
            aggregate result, n_rows 4
            column district Utf8View (ordinary) <- [residents.district], shown as keep
            column n Int64 (ordinary, aggregated) <- [], shown as keep
            | district | n |
            | 北仑区 | * |
            | 江北区 | 100 |
            | 海曙区 | 100 |
            | 鄞州区 | 100 |
            note: production result: every column is ordinary
        "#]],
    );
}

/// A production job over datasets that declare no protected column at all has nothing the
/// preview must hide, whatever its plan: a scalar subquery or a derived table the lineage
/// does not follow (TPC-H Q11, Q15, Q22 have such shapes) does not withhold its rows.
#[test]
fn production_over_ordinary_data_shows_rows_whatever_the_plan() {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let sqls = [
        "SELECT district, count(*) AS n FROM plain GROUP BY district \
         HAVING count(*) > (SELECT count(*) / 10 FROM plain) ORDER BY district",
        "WITH top AS (SELECT max(cost) AS m FROM plain) \
         SELECT district FROM plain, top WHERE plain.cost = top.m",
        "SELECT district FROM plain p WHERE NOT EXISTS \
         (SELECT 1 FROM plain q WHERE q.cost > p.cost) ORDER BY district",
    ];
    runtime.block_on(async {
        let f = fixture();
        let mut columns = people_columns();
        for column in &mut columns {
            column.classification = shuyu_policy::Classification::Ordinary;
            column.masking = MaskingRule::Keep;
        }
        let location = "datasets/ds_plain/".to_owned();
        f.engine
            .ingest(
                IngestFormat::Csv,
                Bytes::from(people_csv()),
                &columns,
                &location,
                "domain",
                &IngestOptions::default(),
            )
            .await
            .expect("ingest");
        let plain = TableSpec {
            name: "plain".into(),
            dataset_id: "ds_plain".into(),
            location,
            privacy_unit: TableSpec::privacy_unit_of(&columns),
            columns,
        };
        for sql in sqls {
            let mut request = f.job(sql, std::slice::from_ref(&plain), &SecretKey::generate());
            request.scope = Production;
            let output = f.engine.run_job(&request).await.expect("the job runs");
            assert!(
                !output.preview.rows_withheld && !output.preview.rows.is_empty(),
                "{sql}: {:?}",
                output.preview.note
            );
        }
    });
}
