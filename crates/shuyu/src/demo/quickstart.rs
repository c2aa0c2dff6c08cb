//! `shuyu quickstart`: creates a domain on embedded defaults, starts the server on a loopback
//! port and walks the whole flow as each role would, printing every step.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use shuyu_client::{Client, Credentials, v1 as pb};

use super::data as demo;
use crate::client::{cli, render};

fn step(n: u32, title: &str) {
    println!("\n━━ {n}. {title}");
}

async fn connect(addr: &str, creds: &Path) -> Result<Client> {
    Ok(Client::connect(addr, &Credentials::from_dir(creds)?).await?)
}

const AGGREGATE_SQL: &str = "SELECT district, count(*) AS residents, round(avg(cost), 2) AS avg_cost \
FROM health_records GROUP BY district ORDER BY district";
const ROW_LEVEL_SQL: &str =
    "SELECT id_number, diagnosis, cost FROM health_records WHERE cost > 5000";
/// Columns of health_records the demo scenario needs (least necessary, R11).
const SCENARIO_COLUMNS: [&str; 4] = ["id_number", "district", "diagnosis", "cost"];
const OUTSIDE_LIST_SQL: &str = "SELECT name FROM health_records LIMIT 5";

/// A reviewer's approval with a shared comment.
async fn vote(reviewer: &mut Client, export_id: &str, comment: &str) -> Result<pb::Export> {
    Ok(reviewer
        .exports
        .vote_export(pb::VoteExportRequest {
            export_id: export_id.to_owned(),
            decision: pb::ExportDecision::Approve as i32,
            shared_comment: comment.to_owned(),
            private_comment: String::new(),
        })
        .await?
        .into_inner()
        .export
        .unwrap_or_default())
}

/// Runs the quickstart. With `data_dir` the domain is kept there for `shuyu serve`; with a
/// metadata URL its metadata lives in that PostgreSQL instead of the data dir.
pub async fn run(
    data_dir: Option<PathBuf>,
    rows: usize,
    seed: u64,
    metadata: &shuyu_server::domain::MetadataConfig,
) -> Result<()> {
    let temp;
    let dir = match data_dir {
        Some(dir) => dir,
        None => {
            temp = tempfile::tempdir()?;
            temp.path().join("domain")
        }
    };
    let creds_root = dir.join("credentials");
    let admin_creds = creds_root.join("admin");

    step(
        1,
        "Create the domain (master key, development CA, first admin)",
    );
    let init = shuyu_server::domain::init(
        &dir,
        metadata,
        "Platform Admin",
        "Public Data Authority",
        &shuyu_server::domain::AdminQualification {
            id_number: demo::staff_id_number(0),
            training_days: 365,
            nda_days: 3 * 365,
        },
        &admin_creds,
    )?;
    println!(
        "  data dir {}; master key created with mode 0600 (never printed)",
        dir.display()
    );
    match metadata.parsed_url()? {
        Some(url) => println!("  metadata and audit trail in {url} (recorded in the data dir)"),
        None => println!(
            "  metadata and audit trail in {}",
            dir.join("meta.db").display()
        ),
    }
    println!("  export signing key {}", init.signing_public_key);

    step(
        2,
        "Start the server on a loopback port (TLS 1.3, client certificates required)",
    );
    let mut config = shuyu_server::ServerConfig::new(dir.clone());
    config.listen = "127.0.0.1:0".parse()?;
    config.metadata = metadata.clone();
    let server = shuyu_server::serve(config).await?;
    let addr = format!("https://localhost:{}", server.addr.port());
    println!("  serving on {addr}");

    step(
        3,
        "Admin registers a tenant and its people (real name, ID number, organisation, role; \
         training and NDA)",
    );
    let mut admin = connect(&addr, &admin_creds).await?;
    let tenant = admin
        .admin
        .create_tenant(pb::CreateTenantRequest {
            name: "甬城数据运营有限公司".into(),
        })
        .await?
        .into_inner()
        .tenant
        .unwrap_or_default();
    println!("  tenant {} ({})", tenant.id, tenant.name);
    let people = [
        (
            "steward",
            "陈卫东",
            "宁波市卫生健康委员会",
            pb::Role::Steward,
            None,
        ),
        (
            "engineer",
            "李晓梅",
            "甬城数据运营有限公司",
            pb::Role::Engineer,
            Some(tenant.id.as_str()),
        ),
        (
            "reviewer",
            "王建国",
            "数据产品审核专家组",
            pb::Role::Reviewer,
            None,
        ),
        (
            "reviewer2",
            "刘芳",
            "数据安全审核专家组",
            pb::Role::Reviewer,
            None,
        ),
        ("auditor", "赵敏", "市网信办", pb::Role::Auditor, None),
        (
            "recipient",
            "周立新",
            "宁波市卫生资源规划办公室",
            pb::Role::Recipient,
            None,
        ),
    ];
    let mut recipient_id = String::new();
    let today = chrono::Utc::now().timestamp_millis();
    for (seq, (dir_name, name, org, role, tenant_id)) in (1..).zip(people) {
        let p = cli::create_principal(
            &mut admin,
            name,
            org,
            role,
            tenant_id,
            &creds_root.join(dir_name),
        )
        .await?;
        println!(
            "  {:<9} {} {} ({}) — certificate issued",
            render::role(p.role),
            p.id,
            name,
            org
        );
        // R8, R9: real-name registration, training passed, confidentiality agreement.
        let q = admin
            .governance
            .qualify_principal(pb::QualifyPrincipalRequest {
                principal_id: p.id.clone(),
                id_number: demo::staff_id_number(seq),
                training_passed_ms: today,
                training_valid_until_ms: shuyu_policy::add_months(today, 12),
                nda_signed_ms: today,
                nda_valid_until_ms: shuyu_policy::add_months(today, 36),
            })
            .await?
            .into_inner()
            .qualification
            .unwrap_or_default();
        println!(
            "            ID {} registered (keyed hash only), training and NDA recorded",
            q.id_number_masked
        );
        if role == pb::Role::Recipient {
            recipient_id = p.id.clone();
        }
    }
    let mut steward = connect(&addr, &creds_root.join("steward")).await?;
    let mut engineer = connect(&addr, &creds_root.join("engineer")).await?;
    let mut reviewer = connect(&addr, &creds_root.join("reviewer")).await?;
    let mut reviewer2 = connect(&addr, &creds_root.join("reviewer2")).await?;
    let mut auditor = connect(&addr, &creds_root.join("auditor")).await?;
    let mut recipient = connect(&addr, &creds_root.join("recipient")).await?;

    step(
        4,
        "Steward ingests demo datasets, classified column by column; stored as encrypted Parquet",
    );
    let mut health_id = String::new();
    let mut dataset_ids = Vec::new();
    for dataset in demo::generate(seed, rows) {
        let header = pb::IngestHeader {
            name: dataset.name.to_owned(),
            description: dataset.description.to_owned(),
            format: pb::DataFormat::Csv as i32,
            columns: dataset
                .columns
                .iter()
                .map(|c| pb::Column {
                    name: c.name.to_owned(),
                    data_type: c.data_type.to_owned(),
                    classification: c.classification.to_owned(),
                    masking: c.masking.unwrap_or_default().to_owned(),
                })
                .collect(),
        };
        let stored = steward.ingest(header, dataset.csv.into_bytes()).await?;
        println!(
            "  {} → {} ({} rows, Parquet Modular Encryption, AES-GCM)",
            stored.name, stored.id, stored.n_rows
        );
        if stored.name == "health_records" {
            health_id = stored.id.clone();
        }
        dataset_ids.push(stored.id.clone());
        admin
            .admin
            .grant_dataset(pb::GrantDatasetRequest {
                dataset_id: stored.id.clone(),
                tenant_id: tenant.id.clone(),
            })
            .await?;
    }
    println!("  admin granted all three datasets to {}", tenant.name);
    // R25: nothing runs outside an authorization agreement's term and scope; R32: production
    // work needs the authorization's emergency plan.
    let authorization = admin
        .governance
        .create_authorization(pb::CreateAuthorizationRequest {
            tenant_id: tenant.id.clone(),
            dataset_ids,
            categories: vec![
                pb::ScenarioCategory::PublicGovernance as i32,
                pb::ScenarioCategory::PublicWelfare as i32,
                pb::ScenarioCategory::Commercial as i32,
            ],
            valid_from_ms: 0,
            valid_until_ms: shuyu_policy::add_months(
                today,
                12 * shuyu_policy::DEFAULT_AUTHORIZATION_YEARS as i32,
            ),
            pricing_terms: "商业产品按 [pricing] 费率（分）；公共治理、公益产品免费".into(),
        })
        .await?
        .into_inner()
        .authorization
        .unwrap_or_default();
    admin
        .governance
        .set_emergency_plan(pb::SetEmergencyPlanRequest {
            authorization_id: authorization.id.clone(),
            summary: "数据泄露或异常访问时立即止损、评估、报告".into(),
            contact: "市数据局值班室 0574-00000000".into(),
            actions: vec![
                "暂停该运营单位的全部作业与导出".into(),
                "吊销涉事人员证书并保全审计记录".into(),
                "2 小时内报告主管部门".into(),
            ],
        })
        .await?;
    println!(
        "  authorization {} for {}: the three datasets, all scenario categories, until {}; \
         emergency plan recorded",
        authorization.id,
        tenant.name,
        shuyu_policy::format_date(authorization.valid_until_ms)
    );

    step(5, "Engineer browses the catalog");
    let catalog = engineer
        .catalog
        .list_datasets(pb::ListDatasetsRequest {})
        .await?
        .into_inner();
    render::print_datasets(&catalog.datasets);
    let health = engineer
        .catalog
        .describe_dataset(pb::DescribeDatasetRequest {
            dataset_id: health_id.clone(),
        })
        .await?
        .into_inner()
        .dataset
        .unwrap_or_default();
    render::print_dataset(&health);

    step(6, "Engineer sees only a masked sample (server-chosen rows)");
    let sample = engineer
        .catalog
        .sample_dataset(pb::SampleDatasetRequest {
            dataset_id: health_id.clone(),
            n_rows: 8,
        })
        .await?
        .into_inner();
    render::print_masked(&sample.sample.unwrap_or_default());

    step(
        7,
        "Engineer develops the query in the data lab: masked data, results shown directly",
    );
    println!("  SQL: {AGGREGATE_SQL}");
    let lab = engineer
        .run_lab_sql(AGGREGATE_SQL, Duration::from_secs(300))
        .await?;
    render::print_job(&lab);
    ensure!(
        lab.status == pb::JobStatus::Succeeded as i32,
        "the lab job failed: {}",
        lab.error
    );

    step(
        8,
        "Engineer applies for a scenario (purpose + data list); steward and admin approve it",
    );
    let now = chrono::Utc::now().timestamp_millis();
    let applied = engineer
        .scenarios
        .apply_scenario(pb::ApplyScenarioRequest {
            name: "区县医疗费用分析".into(),
            purpose: "按区县统计就诊人数与平均费用，用于卫生资源规划（公共治理场景）".into(),
            data_list: vec![pb::DataListItem {
                dataset_id: health_id.clone(),
                columns: SCENARIO_COLUMNS.map(String::from).to_vec(),
            }],
            valid_from_ms: now,
            valid_until_ms: now + 90 * 86_400_000,
            category: pb::ScenarioCategory::PublicGovernance as i32,
        })
        .await?
        .into_inner()
        .scenario
        .unwrap_or_default();
    for (who, client) in [("steward", &mut steward), ("admin", &mut admin)] {
        client
            .scenarios
            .decide_scenario(pb::DecideScenarioRequest {
                scenario_id: applied.id.clone(),
                approve: true,
                comment: format!("{who}: 字段最小必要，同意"),
            })
            .await?;
    }
    let scenario = engineer
        .scenarios
        .get_scenario(pb::GetScenarioRequest {
            scenario_id: applied.id.clone(),
        })
        .await?
        .into_inner()
        .scenario
        .unwrap_or_default();
    render::print_scenario(&scenario);
    ensure!(
        scenario.status == pb::ScenarioStatus::Approved as i32,
        "the scenario was not approved"
    );

    step(
        9,
        "The lab query is promoted to production: raw encrypted data, same query hash",
    );
    let aggregate = engineer
        .jobs
        .promote_job(pb::PromoteJobRequest {
            job_id: lab.id.clone(),
            scenario_id: scenario.id.clone(),
        })
        .await?
        .into_inner()
        .job
        .unwrap_or_default();
    let aggregate = engineer
        .wait_job(&aggregate.id, Duration::from_secs(300))
        .await?;
    render::print_job(&aggregate);
    ensure!(
        aggregate.status == pb::JobStatus::Succeeded as i32,
        "the aggregate job failed: {}",
        aggregate.error
    );
    ensure!(
        aggregate.query_sha256 == lab.query_sha256,
        "promotion changed the query hash"
    );
    println!("  SQL: {OUTSIDE_LIST_SQL}");
    let outside = engineer
        .run_sql(OUTSIDE_LIST_SQL, &scenario.id, Duration::from_secs(300))
        .await?;
    println!(
        "  a column outside the scenario's data list does not exist for the job: {}",
        outside.error
    );
    ensure!(
        outside.status == pb::JobStatus::Failed as i32,
        "a column outside the data list was readable"
    );

    step(
        10,
        "A row-level export is refused by the automated disclosure checks",
    );
    println!("  SQL: {ROW_LEVEL_SQL}");
    let row_level = engineer
        .run_sql(ROW_LEVEL_SQL, &scenario.id, Duration::from_secs(300))
        .await?;
    render::print_job(&row_level);
    let refused = engineer
        .exports
        .request_export(pb::RequestExportRequest {
            job_id: row_level.id.clone(),
            purpose: "高额医疗费用人员名单".into(),
            format: pb::DataFormat::Csv as i32,
            recipient_id: recipient_id.clone(),
            permitted_use: "卫生资源规划".into(),
            expires_in_days: 0,
        })
        .await?
        .into_inner()
        .export
        .unwrap_or_default();
    render::print_export(&refused);
    ensure!(
        refused.status == pb::ExportStatus::Refused as i32,
        "the row-level export was not refused"
    );

    step(
        11,
        "The aggregate export, a product for the recipient, goes to review: two independent \
         reviewers must approve (quorum 2)",
    );
    let requested = engineer
        .exports
        .request_export(pb::RequestExportRequest {
            job_id: aggregate.id.clone(),
            purpose: "各区县居民就诊人数与平均费用，用于卫生资源规划（公共治理场景）".into(),
            format: pb::DataFormat::Csv as i32,
            recipient_id: recipient_id.clone(),
            permitted_use: "仅用于本市2027年度区县卫生资源规划，不得向第三方提供".into(),
            expires_in_days: 30,
        })
        .await?
        .into_inner()
        .export
        .unwrap_or_default();
    render::print_export(&requested);
    ensure!(
        requested.status == pb::ExportStatus::InReview as i32,
        "the aggregate export did not go to review"
    );
    let review = reviewer
        .exports
        .review_export(pb::ReviewExportRequest {
            export_id: requested.id.clone(),
        })
        .await?
        .into_inner();
    println!("  — what the first reviewer sees —");
    render::print_review(&review)?;
    let first = vote(
        &mut reviewer,
        &requested.id,
        "每组均超过10人，无个人信息，同意出域",
    )
    .await?;
    println!("  — after the first approval —");
    render::print_export(&first);
    ensure!(
        first.status == pb::ExportStatus::InReview as i32 && first.approvals == 1,
        "one approval of two must leave the export in review"
    );
    let blinded = reviewer2
        .exports
        .get_export(pb::GetExportRequest {
            export_id: requested.id.clone(),
        })
        .await?
        .into_inner()
        .export
        .unwrap_or_default();
    println!(
        "  — the second reviewer before voting sees {} vote cast and no vote (blinded) —",
        blinded.n_votes
    );
    ensure!(
        blinded.votes.is_empty() && blinded.n_votes == 1,
        "the second reviewer saw a vote before voting"
    );
    let approved = vote(
        &mut reviewer2,
        &requested.id,
        "用途明确，字段最小必要，同意出域",
    )
    .await?;
    println!("  — after the second approval —");
    render::print_export(&approved);
    ensure!(
        approved.status == pb::ExportStatus::Approved as i32,
        "two approvals did not approve the export"
    );

    step(
        12,
        "The recipient lists its product and downloads the signed package; it verifies \
         offline (only the recipient may download it: the requester gets NOT_FOUND)",
    );
    let products = recipient
        .exports
        .list_products(pb::ListProductsRequest {})
        .await?
        .into_inner()
        .products;
    for p in &products {
        render::print_product(p);
    }
    ensure!(
        products.iter().any(|p| p.export_id == requested.id),
        "the recipient does not see its product"
    );
    match engineer.download(&requested.id).await {
        Err(shuyu_client::ClientError::Status(status))
            if status.code() == tonic::Code::NotFound =>
        {
            println!("  the requesting engineer's download: NOT_FOUND");
        }
        other => bail!("the requester could download the product: {other:?}"),
    }
    let package = recipient.download(&requested.id).await?;
    let package_path = dir.join(format!("{}.tar", requested.id));
    std::fs::write(&package_path, &package)?;
    println!(
        "  wrote {} ({} bytes)",
        package_path.display(),
        package.len()
    );
    match shuyu_verify::package::verify(&package, Some(&init.signing_public_key)) {
        Ok(verified) => {
            render::print_manifest(&verified.manifest);
            ensure!(
                verified
                    .manifest
                    .product
                    .as_ref()
                    .is_some_and(|p| p.recipient_id == recipient_id && p.price_basis.free),
                "the manifest does not name the recipient and a free public-governance product"
            );
            println!(
                "  OK: signature and hashes verify (shuyu export verify {})",
                package_path.display()
            );
        }
        Err(problem) => bail!("the package does not verify: {problem}"),
    }

    step(
        13,
        "The auditor reads and verifies the tamper-evident audit trail",
    );
    let records = auditor
        .audit
        .list_audit_records(pb::ListAuditRecordsRequest {
            after_seq: 0,
            limit: 1000,
        })
        .await?
        .into_inner()
        .records;
    for r in records.iter().rev().take(8).rev() {
        render::print_audit_record(r);
    }
    let report = auditor
        .audit
        .verify_audit(pb::VerifyAuditRequest {})
        .await?
        .into_inner();
    ensure!(
        report.ok,
        "the audit trail does not verify: {}",
        report.problem
    );
    println!(
        "  OK: {} audit records verify (head {})",
        report.n_records, report.head_hash
    );

    server.shutdown().await.context("stopping the server")?;
    println!("\nDone. Raw data never left the domain; only the approved aggregate did, signed.");
    if creds_root.starts_with(std::env::temp_dir()) {
        println!(
            "(The demo domain was temporary; run `shuyu quickstart --data-dir DIR` to keep it.)"
        );
    } else {
        println!("The domain is kept in {}. Restart it with:", dir.display());
        println!("  shuyu serve --data-dir {}", dir.display());
        println!("and act as each demo user, e.g.:");
        println!(
            "  shuyu dataset list --as {}",
            creds_root.join("engineer").display()
        );
        println!(
            "  shuyu export list  --as {}   (or reviewer2)",
            creds_root.join("reviewer").display()
        );
        println!(
            "  shuyu audit tail   --as {}",
            creds_root.join("auditor").display()
        );
        println!(
            "  shuyu product list --as {}",
            creds_root.join("recipient").display()
        );
    }
    Ok(())
}
