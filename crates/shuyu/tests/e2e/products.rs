//! Data products (R21, R23, R24): an approved export is a product for one recipient, bound to
//! a permitted use and an expiry, priced by its scenario's category; only the recipient
//! downloads or fetches it (over Arrow Flight too), every time audited and counted; each
//! recipient's copy is fingerprinted, its pseudonyms keyed for that recipient, its counts
//! rounded to the policy's base; a leaked copy is traced back to its recipient even with its
//! metadata stripped or converted to CSV.

use std::collections::{BTreeMap, HashSet};
use std::io::Read;

use shuyu_engine::{ExportFormat, ResultData, render_export_file};

use shuyu_client::{Client, ClientError, v1 as pb};
use tonic::Code;

use crate::harness::fixtures::*;
use crate::harness::*;

/// 40 regions of 50 residents each (and one of 60): an aggregate with 40 cells, each large
/// enough to pass the checks, whose row order carries a mark.
fn regions_csv() -> String {
    let mut csv = String::from("region,id_number,cost\n");
    for i in 0..2010 {
        csv.push_str(&format!(
            "区{:02},3302031990{:02}{:02}{:04},{}.5\n",
            i % 40,
            1 + i % 12,
            1 + i % 28,
            i,
            100 + i % 97
        ));
    }
    csv
}

async fn ingest_regions(steward: &mut Client) -> pb::Dataset {
    steward
        .ingest(
            pb::IngestHeader {
                name: "regions".into(),
                description: "residents by region".into(),
                format: pb::DataFormat::Csv as i32,
                columns: vec![
                    column("region", "string", "ordinary", "keep"),
                    column("id_number", "string", "direct_identifier", "pseudonym"),
                    column("cost", "float64", "sensitive", "generalize_number:100"),
                ],
            },
            regions_csv().into_bytes(),
        )
        .await
        .expect("ingest")
}

/// Registers another recipient; returns its id and client.
async fn another_recipient(
    p: &mut People,
    server: &Server,
    domain: &Domain,
    name: &str,
) -> (String, Client) {
    let creds = register(&mut p.admin, domain, name, pb::Role::Recipient, "").await;
    let mut client = server.client(&creds).await;
    let id = client
        .session
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .unwrap()
        .into_inner()
        .principal
        .unwrap()
        .id;
    (id, client)
}

fn product_request(
    job_id: &str,
    recipient_id: &str,
    format: pb::DataFormat,
) -> pb::RequestExportRequest {
    pb::RequestExportRequest {
        job_id: job_id.into(),
        purpose: "区县统计".into(),
        format: format as i32,
        recipient_id: recipient_id.into(),
        permitted_use: "仅用于区县资源规划".into(),
        expires_in_days: 10,
    }
}

/// Requests a product of `job_id` for `recipient_id` and has both reviewers approve it.
async fn approved_product(
    p: &mut People,
    job_id: &str,
    recipient_id: &str,
    format: pb::DataFormat,
) -> pb::Export {
    let export = p
        .engineer
        .exports
        .request_export(product_request(job_id, recipient_id, format))
        .await
        .expect("request")
        .into_inner()
        .export
        .unwrap();
    assert_eq!(
        export.status,
        pb::ExportStatus::InReview as i32,
        "{export:?}"
    );
    approve(&mut p.reviewer, &export.id, "ok").await.unwrap();
    let approved = approve(&mut p.reviewer2, &export.id, "ok").await.unwrap();
    assert_eq!(approved.status, pb::ExportStatus::Approved as i32);
    approved
}

/// The files of a package.
fn package_files(package: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut archive = tar::Archive::new(package);
    let mut files = BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        files.insert(name, bytes);
    }
    files
}

fn manifest(package: &[u8]) -> serde_json::Value {
    serde_json::from_slice(&package_files(package)["manifest.json"]).unwrap()
}

fn result_file(package: &[u8]) -> Vec<u8> {
    let files = package_files(package);
    files
        .into_iter()
        .find(|(name, _)| name.starts_with("result."))
        .expect("a result file")
        .1
}

/// Every cell of a column as text.
fn column_texts(data: &ResultData, name: &str) -> Vec<String> {
    data.batches
        .iter()
        .flat_map(|b| {
            let column = arrow::compute::cast(
                b.column_by_name(name).expect("column"),
                &arrow::datatypes::DataType::Utf8,
            )
            .unwrap();
            let strings = arrow::array::AsArray::as_string::<i32>(&column).clone();
            strings
                .iter()
                .map(|v| v.unwrap_or_default().to_owned())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Sets a product's expiry in the store (a product cannot be made to expire sooner than in
/// a day through the API).
fn expire(domain: &Domain, export_id: &str) {
    let db = domain.metadata();
    let set = match db.backend() {
        shuyu_meta::Backend::Sqlite => "json_set(product_json, '$.expires_at_ms', 1000)",
        shuyu_meta::Backend::Postgres => {
            "CAST(jsonb_set(CAST(product_json AS jsonb), '{expires_at_ms}', '1000') AS TEXT)"
        }
    };
    let changed = db
        .write(|tx| {
            tx.execute(
                &format!("UPDATE exports SET product_json = {set} WHERE id = ?1"),
                shuyu_meta::params![export_id],
            )
        })
        .unwrap();
    assert_eq!(changed, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_product_reaches_only_its_recipient_until_it_expires() {
    let domain = Domain::new();
    let server = domain.start();
    let Approved {
        people: mut p,
        scenario_id: sc,
        datasets: _,
    } = approved_scenario(&server, &domain, "pr", ["residents"]).await;
    let job = p
        .engineer
        .run_sql(
            "SELECT district, count(*) AS n FROM residents GROUP BY district",
            &sc,
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(job.status, pb::JobStatus::Succeeded as i32, "{}", job.error);
    let (other_id, mut other) = another_recipient(&mut p, &server, &domain, "other-pr").await;

    // The request names a recipient principal, a permitted use and a bounded validity.
    let engineer_id = p
        .engineer
        .session
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .unwrap()
        .into_inner()
        .principal
        .unwrap()
        .id;
    let recipient_id = p.recipient_id.clone();
    for (request, expected) in [
        (
            product_request(&job.id, "", pb::DataFormat::Csv),
            Code::InvalidArgument,
        ),
        (
            product_request(&job.id, "p_nosuchone", pb::DataFormat::Csv),
            Code::NotFound,
        ),
        (
            product_request(&job.id, &engineer_id, pb::DataFormat::Csv),
            Code::InvalidArgument,
        ),
        (
            pb::RequestExportRequest {
                permitted_use: " ".into(),
                ..product_request(&job.id, &recipient_id, pb::DataFormat::Csv)
            },
            Code::InvalidArgument,
        ),
        (
            pb::RequestExportRequest {
                permitted_use: "x".repeat(2001),
                ..product_request(&job.id, &recipient_id, pb::DataFormat::Csv)
            },
            Code::InvalidArgument,
        ),
        (
            pb::RequestExportRequest {
                expires_in_days: 366,
                ..product_request(&job.id, &recipient_id, pb::DataFormat::Csv)
            },
            Code::InvalidArgument,
        ),
        // The scenario is valid for 30 days: a product cannot outlive it.
        (
            pb::RequestExportRequest {
                expires_in_days: 31,
                ..product_request(&job.id, &recipient_id, pb::DataFormat::Csv)
            },
            Code::InvalidArgument,
        ),
    ] {
        assert_eq!(
            status_code(p.engineer.exports.request_export(request.clone()).await),
            expected,
            "{request:?}"
        );
    }

    let export = approved_product(&mut p, &job.id, &recipient_id, pb::DataFormat::Csv).await;
    let product = export
        .product
        .clone()
        .expect("an approved export is a product");
    assert_eq!(product.recipient_id, recipient_id);
    assert_eq!(product.recipient_organisation, "测试单位");
    assert_eq!(product.permitted_use, "仅用于区县资源规划");
    assert_eq!(product.scenario_id, sc);
    assert_eq!(
        product.scenario_category,
        pb::ScenarioCategory::Commercial as i32
    );
    let days = (product.expires_at_ms - product.approved_at_ms) as f64 / 86_400_000.0;
    assert!((days - 10.0).abs() < 0.01, "{days}");
    // A commercial product is priced on the configured basis (the defaults of deploy/shuyu.toml).
    let price = product.price.clone().unwrap();
    assert!(!price.free);
    assert_eq!(
        (price.per_10k_rows_fen, price.per_download_fen),
        (10_000, 1_000)
    );
    assert_eq!(price.rows, 3);
    assert_eq!(price.rows_charge_fen, 10_000);
    assert_eq!(product.fingerprint.len(), 64);

    // Only the recipient downloads: the requester and another recipient find nothing, other
    // roles may not ask.
    assert_eq!(code(p.engineer.download(&export.id).await), Code::NotFound);
    assert_eq!(code(other.download(&export.id).await), Code::NotFound);
    assert_eq!(
        code(p.reviewer.download(&export.id).await),
        Code::PermissionDenied
    );
    assert_eq!(
        code(p.auditor.download(&export.id).await),
        Code::PermissionDenied
    );
    let package = p.recipient.download(&export.id).await.unwrap();
    let package_again = p.recipient.download(&export.id).await.unwrap();
    assert_eq!(package, package_again);
    let m = manifest(&package);
    assert_eq!(m["format"], "shuyu-export/v3");
    assert_eq!(m["product"]["recipient_id"], recipient_id.as_str());
    assert_eq!(m["product"]["fingerprint"], product.fingerprint.as_str());
    assert_eq!(m["product"]["scenario_category"], "commercial");
    assert_eq!(m["product"]["price_basis"]["rows_charge_fen"], 10_000);
    assert_eq!(m["product"]["expires_at_ms"], product.expires_at_ms);
    assert!(
        !String::from_utf8_lossy(&package_files(&package)["manifest.json"])
            .contains("fingerprint-key"),
    );

    // The recipient sees its product, counted; the other recipient sees none; the engineer
    // sees the tenant's; recipients may not see the export itself.
    let list = p
        .recipient
        .exports
        .list_products(pb::ListProductsRequest {})
        .await
        .unwrap()
        .into_inner()
        .products;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].download_count, 2);
    assert!(list[0].last_download_at_ms > 0);
    assert_eq!(
        list[0].price.clone().unwrap().charge_fen,
        10_000 + 2 * 1_000
    );
    let none = other
        .exports
        .list_products(pb::ListProductsRequest {})
        .await
        .unwrap()
        .into_inner()
        .products;
    assert!(none.is_empty());
    let tenants = p
        .engineer
        .exports
        .list_products(pb::ListProductsRequest {})
        .await
        .unwrap()
        .into_inner()
        .products;
    assert_eq!(tenants.len(), 1);
    assert_eq!(
        status_code(
            p.recipient
                .exports
                .get_export(pb::GetExportRequest {
                    export_id: export.id.clone()
                })
                .await
        ),
        Code::PermissionDenied
    );
    assert_eq!(
        status_code(
            p.recipient
                .catalog
                .list_datasets(pb::ListDatasetsRequest {})
                .await
        ),
        Code::PermissionDenied
    );

    // Every download is in the audit trail: who, which export, bytes, package hash.
    let records = p
        .auditor
        .audit
        .list_audit_records(pb::ListAuditRecordsRequest {
            after_seq: 0,
            limit: 10_000,
        })
        .await
        .unwrap()
        .into_inner()
        .records;
    let downloads: Vec<&pb::AuditRecord> = records
        .iter()
        .filter(|r| r.action == "download_export" && r.outcome == "ok")
        .collect();
    assert_eq!(downloads.len(), 2);
    for r in &downloads {
        assert_eq!(r.principal_id, recipient_id);
        assert_eq!(r.target, format!("export:{}", export.id));
        let detail: serde_json::Value = serde_json::from_str(&r.detail_json).unwrap();
        assert_eq!(detail["bytes"], package.len());
        assert_eq!(detail["package_sha256"], export.package_sha256.as_str());
    }
    assert!(records.iter().any(|r| r.action == "download_export"
        && r.outcome == "not_found"
        && r.principal_id == engineer_id));

    // Past its expiry the product is EXPIRED and refused, naming the expiry.
    expire(&domain, &export.id);
    match p.recipient.download(&export.id).await {
        Err(ClientError::Status(status)) => {
            assert_eq!(status.code(), Code::FailedPrecondition);
            assert_eq!(reason(&status), "PRODUCT_EXPIRED");
            // The message names the expiry.
            assert!(
                status.message().contains("expired at 1970-01-01T00:00:01Z"),
                "{status:?}"
            );
        }
        other => panic!("an expired product downloaded: {other:?}"),
    }
    let list = p
        .recipient
        .exports
        .list_products(pb::ListProductsRequest {})
        .await
        .unwrap()
        .into_inner()
        .products;
    assert_eq!(list[0].status, pb::ExportStatus::Expired as i32);
    let _ = other_id;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leaked_copy_is_traced_to_its_recipient_without_its_metadata() {
    let domain = Domain::new();
    let server = domain.start();
    let mut p = people(&server, &domain, "tr").await;
    let regions = ingest_regions(&mut p.steward).await;
    grant(&mut p.admin, &regions.id, &p.tenant_id).await;
    let sc = scenario(&mut p, &[&regions]).await;
    let job = p
        .engineer
        .run_sql(
            "SELECT region, count(*) AS n FROM regions GROUP BY region",
            &sc,
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(job.status, pb::JobStatus::Succeeded as i32, "{}", job.error);
    // The same result as a product for three recipients.
    let (b_id, mut b) = another_recipient(&mut p, &server, &domain, "recipient-b").await;
    let (c_id, mut c) = another_recipient(&mut p, &server, &domain, "recipient-c").await;
    let mut copies = Vec::new();
    for recipient_id in [p.recipient_id.clone(), b_id.clone(), c_id.clone()] {
        let export =
            approved_product(&mut p, &job.id, &recipient_id, pb::DataFormat::Parquet).await;
        copies.push((export.id.clone(), recipient_id));
    }
    let mut files = Vec::new();
    for ((export_id, _), client) in copies.iter().zip([&mut p.recipient, &mut b, &mut c]) {
        let package = client.download(export_id).await.unwrap();
        files.push(result_file(&package));
    }
    // Same rows and values, different order and fingerprint.
    let read: Vec<ResultData> = files
        .iter()
        .map(|f| ResultData::from_export_file(f).unwrap())
        .collect();
    assert_eq!(read[0].n_rows(), 40);
    assert_eq!(
        read[0].rows_digest().unwrap(),
        read[1].rows_digest().unwrap()
    );
    assert_eq!(
        read[1].rows_digest().unwrap(),
        read[2].rows_digest().unwrap()
    );
    assert_ne!(
        column_texts(&read[0], "region"),
        column_texts(&read[1], "region")
    );
    assert_ne!(read[0].fingerprint(), read[1].fingerprint());

    let trace = |client: &mut Client, file: Vec<u8>| {
        let mut client = client.clone();
        async move {
            client
                .exports
                .trace_export(pb::TraceExportRequest { file })
                .await
                .map(|r| r.into_inner())
        }
    };
    for (i, (export_id, recipient_id)) in copies.iter().enumerate() {
        // As downloaded: by the fingerprint in its metadata.
        let traced = trace(&mut p.auditor, files[i].clone()).await.unwrap();
        assert_eq!(&traced.export_id, export_id);
        assert_eq!(&traced.recipient_id, recipient_id);
        assert_eq!(traced.tenant_id, p.tenant_id);
        assert_eq!(traced.matched_by, "metadata");
        assert!(traced.row_order_consistent);

        // Rewritten through arrow without any metadata, and converted to CSV: by row order.
        let stripped = ResultData {
            batches: read[i]
                .batches
                .iter()
                .map(|b| {
                    let schema = std::sync::Arc::new(arrow::datatypes::Schema::new(
                        b.schema().fields().clone(),
                    ));
                    arrow::array::RecordBatch::try_new(schema, b.columns().to_vec()).unwrap()
                })
                .collect(),
        };
        let bare = render_export_file(&stripped, ExportFormat::Parquet).unwrap();
        assert!(!contains(&bare, b"shuyu.fingerprint"));
        let csv = render_export_file(&stripped, ExportFormat::Csv).unwrap();
        for leaked in [bare, csv] {
            let traced = trace(&mut p.admin, leaked).await.unwrap();
            assert_eq!(&traced.export_id, export_id);
            assert_eq!(&traced.recipient_id, recipient_id);
            assert_eq!(traced.matched_by, "row_order");
            assert_eq!(traced.n_candidates, 3);
        }
    }
    // Reordered rows carry no mark: nothing is claimed.
    let mut reversed = read[0].clone();
    reversed.batches = reversed
        .batches
        .iter()
        .map(|b| {
            let n = b.num_rows() as u32;
            let indices = arrow::array::UInt32Array::from_iter_values((0..n).rev());
            let schema =
                std::sync::Arc::new(arrow::datatypes::Schema::new(b.schema().fields().clone()));
            let taken = arrow::compute::take_record_batch(b, &indices).unwrap();
            arrow::array::RecordBatch::try_new(schema, taken.columns().to_vec()).unwrap()
        })
        .collect();
    let reversed = render_export_file(&reversed, ExportFormat::Csv).unwrap();
    let err = trace(&mut p.auditor, reversed).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    // Not a table, and roles other than admins and auditors.
    let err = trace(&mut p.auditor, b"PAR1 not parquet PAR1".to_vec())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = trace(&mut p.engineer, files[0].clone()).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    // Traces are audited.
    let records = p
        .auditor
        .audit
        .list_audit_records(pb::ListAuditRecordsRequest {
            after_seq: 0,
            limit: 10_000,
        })
        .await
        .unwrap()
        .into_inner()
        .records;
    assert_eq!(
        records
            .iter()
            .filter(|r| r.action == "trace_export" && r.outcome == "ok")
            .count(),
        9
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn row_level_copies_carry_recipient_keyed_pseudonyms() {
    let domain = Domain::new();
    let server = domain.start();
    let mut p = people(&server, &domain, "rk").await;
    let regions = ingest_regions(&mut p.steward).await;
    grant(&mut p.admin, &regions.id, &p.tenant_id).await;
    let sc = scenario(&mut p, &[&regions]).await;
    let job = p
        .engineer
        .run_sql(
            "SELECT pseudonym(id_number) AS person, region FROM regions",
            &sc,
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(job.status, pb::JobStatus::Succeeded as i32, "{}", job.error);
    let (b_id, mut b) = another_recipient(&mut p, &server, &domain, "recipient-rb").await;
    let a_id = p.recipient_id.clone();
    let first = approved_product(&mut p, &job.id, &a_id, pb::DataFormat::Csv).await;
    let second = approved_product(&mut p, &job.id, &b_id, pb::DataFormat::Csv).await;
    let a = ResultData::from_export_file(&result_file(
        &p.recipient.download(&first.id).await.unwrap(),
    ))
    .unwrap();
    let b =
        ResultData::from_export_file(&result_file(&b.download(&second.id).await.unwrap())).unwrap();
    assert_eq!(a.n_rows(), 2010);
    let (pa, pb_): (HashSet<String>, HashSet<String>) = (
        column_texts(&a, "person").into_iter().collect(),
        column_texts(&b, "person").into_iter().collect(),
    );
    assert_eq!(pa.len(), 2010, "distinct people stay distinct");
    assert!(
        pa.iter().all(|t| t.len() == 18 && t.starts_with("p_")),
        "the shape is kept"
    );
    assert!(
        pa.is_disjoint(&pb_),
        "the two copies cannot be joined on the pseudonym"
    );
    // Every other column is identical (as a multiset: the orders differ).
    let sorted = |d: &ResultData| {
        let mut v = column_texts(d, "region");
        v.sort();
        v
    };
    assert_eq!(sorted(&a), sorted(&b));
    assert_eq!(first.product.unwrap().fingerprint.len(), 64);
}

#[tokio::test(flavor = "multi_thread")]
async fn count_cells_are_rounded_to_the_policy_base() {
    let domain = Domain::new();
    let policy = include_str!("../../../../policies/default.toml")
        .replace("round_counts_to = 0", "round_counts_to = 5");
    assert!(policy.contains("round_counts_to = 5"));
    let server = domain.start_with("", Some(&policy));
    let mut p = people(&server, &domain, "rd").await;
    let regions = ingest_regions(&mut p.steward).await;
    grant(&mut p.admin, &regions.id, &p.tenant_id).await;
    let sc = scenario(&mut p, &[&regions]).await;
    // 2010 residents in 40 regions: 10 regions of 51 (rounded to 50), 30 of 50.
    let job = p
        .engineer
        .run_sql(
            "SELECT region, count(*) AS n, sum(cost) AS total FROM regions GROUP BY region",
            &sc,
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(job.status, pb::JobStatus::Succeeded as i32, "{}", job.error);
    let id = p.recipient_id.clone();
    let export = approved_product(&mut p, &job.id, &id, pb::DataFormat::Csv).await;
    assert_eq!(export.product.unwrap().round_counts_to, 5);
    let package = p.recipient.download(&export.id).await.unwrap();
    assert_eq!(manifest(&package)["product"]["round_counts_to"], 5);
    let data = ResultData::from_export_file(&result_file(&package)).unwrap();
    let counts: Vec<i64> = column_texts(&data, "n")
        .iter()
        .map(|v| v.parse().unwrap())
        .collect();
    assert_eq!(counts.len(), 40);
    assert!(counts.iter().all(|n| *n == 50), "{counts:?}");
    // A sum is not a count: not rounded (sums of x.5 values over 51 rows end in .5).
    assert!(
        column_texts(&data, "total")
            .iter()
            .any(|t| t.ends_with(".5")),
        "{:?}",
        column_texts(&data, "total")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn products_are_served_over_flight_to_their_recipient_only() {
    let domain = Domain::new();
    let server = domain.start();
    let mut p = people(&server, &domain, "fl").await;
    let regions = ingest_regions(&mut p.steward).await;
    grant(&mut p.admin, &regions.id, &p.tenant_id).await;
    let sc = scenario(&mut p, &[&regions]).await;
    let job = p
        .engineer
        .run_sql(
            "SELECT region, count(*) AS n FROM regions GROUP BY region",
            &sc,
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(job.status, pb::JobStatus::Succeeded as i32, "{}", job.error);
    let (_, mut other) = another_recipient(&mut p, &server, &domain, "recipient-fo").await;
    let id = p.recipient_id.clone();
    let export = approved_product(&mut p, &job.id, &id, pb::DataFormat::Parquet).await;
    let fingerprint = export.product.clone().unwrap().fingerprint;

    // The recipient gets the product's batches: the rows of the package's file, in its
    // order, the fingerprint in the schema metadata.
    let batches = p.recipient.fetch_product(&export.id).await.unwrap();
    let fetched = ResultData { batches };
    assert_eq!(fetched.fingerprint().as_deref(), Some(fingerprint.as_str()));
    let package = p.recipient.download(&export.id).await.unwrap();
    let file = ResultData::from_export_file(&result_file(&package)).unwrap();
    assert_eq!(fetched.n_rows(), 40);
    assert_eq!(fetched.row_keys().unwrap(), file.row_keys().unwrap());
    let listed = p
        .recipient
        .exports
        .list_products(pb::ListProductsRequest {})
        .await
        .unwrap()
        .into_inner()
        .products;
    assert_eq!(
        listed[0].download_count, 2,
        "a fetch counts like a download"
    );

    // Nobody else: the requester and another recipient find nothing; reviewers may not ask.
    assert_eq!(
        code(p.engineer.fetch_product(&export.id).await),
        Code::NotFound
    );
    assert_eq!(code(other.fetch_product(&export.id).await), Code::NotFound);
    assert_eq!(
        code(p.reviewer.fetch_product(&export.id).await),
        Code::PermissionDenied
    );
    assert_eq!(
        code(p.recipient.fetch_product("exp_nosuch").await),
        Code::NotFound
    );
    // Other Flight methods are not served.
    let flights = p
        .recipient
        .flight
        .list_flights(arrow_flight::Criteria::default())
        .await;
    assert_eq!(status_code(flights), Code::Unimplemented);

    // Expired and revoked products are refused.
    let second = approved_product(&mut p, &job.id, &id, pb::DataFormat::Csv).await;
    expire(&domain, &second.id);
    assert_eq!(
        code(p.recipient.fetch_product(&second.id).await),
        Code::FailedPrecondition
    );
    p.reviewer
        .exports
        .revoke_export(pb::RevokeExportRequest {
            export_id: export.id.clone(),
            reason: "超出用途".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        code(p.recipient.fetch_product(&export.id).await),
        Code::FailedPrecondition
    );
    // A product still in review is not served either.
    let pending = p
        .engineer
        .exports
        .request_export(product_request(&job.id, &id, pb::DataFormat::Csv))
        .await
        .unwrap()
        .into_inner()
        .export
        .unwrap();
    assert_eq!(
        code(p.recipient.fetch_product(&pending.id).await),
        Code::FailedPrecondition
    );
    // Every fetch is audited like a download.
    let records = p
        .auditor
        .audit
        .list_audit_records(pb::ListAuditRecordsRequest {
            after_seq: 0,
            limit: 10_000,
        })
        .await
        .unwrap()
        .into_inner()
        .records;
    let fetches: Vec<&pb::AuditRecord> = records
        .iter()
        .filter(|r| r.action == "fetch_product")
        .collect();
    assert_eq!(fetches.iter().filter(|r| r.outcome == "ok").count(), 1);
    assert_eq!(
        fetches.iter().filter(|r| r.outcome == "not_found").count(),
        3
    );
    assert_eq!(fetches.iter().filter(|r| r.outcome == "invalid").count(), 3);
    let ok = fetches.iter().find(|r| r.outcome == "ok").unwrap();
    let detail: serde_json::Value = serde_json::from_str(&ok.detail_json).unwrap();
    assert_eq!(detail["via"], "flight");
    assert!(detail["bytes"].as_u64().unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_requests_lists_downloads_and_traces_products() {
    let domain = Domain::new();
    let server = domain.start();
    let mut p = people(&server, &domain, "cl").await;
    let regions = ingest_regions(&mut p.steward).await;
    grant(&mut p.admin, &regions.id, &p.tenant_id).await;
    let sc = scenario(&mut p, &[&regions]).await;
    let job = p
        .engineer
        .run_sql(
            "SELECT region, count(*) AS n FROM regions GROUP BY region",
            &sc,
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(job.status, pb::JobStatus::Succeeded as i32, "{}", job.error);
    let cli = |who: &str, args: &[&str]| {
        let creds = domain.creds(who);
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--as", creds.to_str().unwrap(), "--server", &server.addr]);
        let out = run_bin(&all);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    // An admin registers a recipient with its organisation.
    let out_dir = domain.creds("cli-recipient");
    let (code, out) = cli(
        "admin",
        &[
            "principal",
            "create",
            "--name",
            "周立新",
            "--org",
            "市规划院",
            "--role",
            "recipient",
            "--out",
            out_dir.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("recipient"), "{out}");
    assert!(out_dir.join("cert.pem").exists());

    // The engineer requests a product for the people's recipient.
    let recipient_id = p.recipient_id.clone();
    let (code, out) = cli(
        "engineer-cl",
        &[
            "export",
            "request",
            &job.id,
            "--recipient",
            &recipient_id,
            "--use",
            "区县规划",
            "--expires-days",
            "5",
            "--format",
            "parquet",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("for recipient {recipient_id}: 区县规划 (5 days)")),
        "{out}"
    );
    let export_id = out
        .split_whitespace()
        .find(|w| w.starts_with("exp_"))
        .expect("an export id")
        .to_owned();
    approve(&mut p.reviewer, &export_id, "ok").await.unwrap();
    approve(&mut p.reviewer2, &export_id, "ok").await.unwrap();

    let (code, out) = cli("recipient-cl", &["product", "list"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&export_id) && out.contains("price: ¥100.00 per 10,000 rows"),
        "{out}"
    );
    let pkg = domain.data.with_extension("cli-product.tar");
    let (code, out) = cli(
        "engineer-cl",
        &[
            "export",
            "download",
            &export_id,
            "--out",
            pkg.to_str().unwrap(),
        ],
    );
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("not found"), "{out}");
    let (code, out) = cli(
        "recipient-cl",
        &[
            "export",
            "download",
            &export_id,
            "--out",
            pkg.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{out}");

    // The auditor traces a CSV conversion of the recipient's copy.
    let copy = ResultData::from_export_file(&result_file(&std::fs::read(&pkg).unwrap())).unwrap();
    let leaked = domain.data.with_extension("leaked.csv");
    std::fs::write(
        &leaked,
        render_export_file(&copy, ExportFormat::Csv).unwrap(),
    )
    .unwrap();
    let (code, out) = cli("auditor-cl", &["export", "trace", leaked.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("traced to export {export_id}")),
        "{out}"
    );
    assert!(
        out.contains(&recipient_id) && out.contains("keyed order of its rows"),
        "{out}"
    );
}
