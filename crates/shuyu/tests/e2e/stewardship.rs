//! Stewardship end to end: a tenant's own data imported and fused under a scenario (R17),
//! data-quality tickets answered by the steward (R18), and risk stops that halt jobs (R19).

use crate::jobs::{SLOW_SQL, poll_until, submit};

use shuyu_client::{Client, production_sql, v1 as pb};
use tonic::Code;

use crate::harness::fixtures::*;
use crate::harness::*;

const IMPORT_CANARY: &str = "CANARYMEMBER_QJW";

/// The tenant's own membership file: every resident's id number with a loyalty tier, plus a
/// canary in a sensitive column.
fn members_csv() -> String {
    let mut csv = String::from("id_number,tier,note\n");
    for i in 0..300 {
        csv.push_str(&format!(
            "33020319{:02}0101{:03}X,{},ordinary\n",
            50 + i % 40,
            i,
            1 + i % 3
        ));
    }
    csv.push_str(&format!("{CANARY_ID},3,{IMPORT_CANARY}\n"));
    csv
}

fn members_columns() -> Vec<pb::Column> {
    vec![
        column("id_number", "string", "direct_identifier", "pseudonym"),
        column("tier", "int64", "ordinary", "keep"),
        column("note", "string", "sensitive", ""),
    ]
}

async fn notifications(client: &mut Client) -> Vec<pb::Notification> {
    client
        .session
        .list_notifications(pb::ListNotificationsRequest {
            after_id: 0,
            limit: 0,
        })
        .await
        .expect("notifications")
        .into_inner()
        .notifications
}

#[tokio::test(flavor = "multi_thread")]
async fn imported_data_stays_the_tenants_own_and_fuses_under_a_scenario() {
    let domain = Domain::new();
    let server = domain.start();
    let mut p = people(&server, &domain, "imp").await;
    let mut other = people(&server, &domain, "imp-other").await;
    let residents = ingest_people(&mut p.steward, "residents_imp").await;
    grant(&mut p.admin, &residents.id, &p.tenant_id).await;

    // Bad applications are refused with the field named.
    let bad = p
        .engineer
        .stewardship
        .apply_import(pb::ApplyImportRequest {
            name: "members".into(),
            description: String::new(),
            source: "会员系统".into(),
            legal_basis: String::new(),
            columns: members_columns(),
        })
        .await;
    let status = bad.expect_err("no legal basis");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("legal basis"), "{status:?}");

    let application = p
        .engineer
        .stewardship
        .apply_import(pb::ApplyImportRequest {
            name: "members".into(),
            description: "our loyalty members".into(),
            source: "the operator's membership system".into(),
            legal_basis: "members' written consent, clause 4".into(),
            columns: members_columns(),
        })
        .await
        .expect("apply")
        .into_inner()
        .application
        .expect("application");
    assert_eq!(application.status, pb::ImportStatus::Pending as i32);
    assert!(
        notifications(&mut p.admin)
            .await
            .iter()
            .any(|n| n.kind == "import_application" && n.r#ref == application.id),
        "the admins are told of the application"
    );

    // No upload before approval; another tenant cannot see or use the application.
    let early = p
        .engineer
        .upload_import(
            &application.id,
            pb::DataFormat::Csv,
            members_csv().into_bytes(),
        )
        .await;
    assert_eq!(client_reason(early), "IMPORT_NOT_APPROVED");
    let foreign = other
        .engineer
        .upload_import(
            &application.id,
            pb::DataFormat::Csv,
            members_csv().into_bytes(),
        )
        .await;
    assert_eq!(code(foreign), Code::NotFound);
    let listed = other
        .engineer
        .stewardship
        .list_imports(pb::ListImportsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(listed.applications.is_empty());
    // Engineers cannot approve.
    let self_approval = p
        .engineer
        .stewardship
        .decide_import(pb::DecideImportRequest {
            import_id: application.id.clone(),
            approve: true,
            comment: String::new(),
        })
        .await;
    assert_eq!(status_code(self_approval), Code::PermissionDenied);

    let approved = p
        .admin
        .stewardship
        .decide_import(pb::DecideImportRequest {
            import_id: application.id.clone(),
            approve: true,
            comment: "source and consent checked".into(),
        })
        .await
        .expect("approve")
        .into_inner()
        .application
        .unwrap();
    assert_eq!(approved.status, pb::ImportStatus::Approved as i32);
    assert!(
        notifications(&mut p.engineer)
            .await
            .iter()
            .any(|n| n.kind == "import_decision" && n.r#ref == application.id)
    );
    let again = p
        .admin
        .stewardship
        .decide_import(pb::DecideImportRequest {
            import_id: application.id.clone(),
            approve: false,
            comment: "changed my mind".into(),
        })
        .await;
    assert_eq!(status_reason(again), "ALREADY_DECIDED");

    let uploaded = p
        .engineer
        .upload_import(
            &application.id,
            pb::DataFormat::Csv,
            members_csv().into_bytes(),
        )
        .await
        .expect("upload");
    let members = uploaded.dataset.expect("dataset");
    assert_eq!(members.n_rows, 301);
    assert_eq!(
        uploaded.application.unwrap().status,
        pb::ImportStatus::Imported as i32
    );
    let twice = p
        .engineer
        .upload_import(
            &application.id,
            pb::DataFormat::Csv,
            members_csv().into_bytes(),
        )
        .await;
    assert_eq!(client_reason(twice), "ALREADY_IMPORTED");

    // Encrypted under a key of the tenant: the dataset's KEK is a child of the tenant KEK,
    // and no file of the domain holds the canary in plaintext.
    let keks = domain.query_texts(
        &format!(
            "SELECT parent, owner FROM keks
             WHERE id = (SELECT kek_id FROM datasets WHERE id = '{}')",
            members.id
        ),
        &["parent", "owner"],
    );
    assert_eq!(
        keks,
        [[
            Some(format!("tenant:{}", p.tenant_id)),
            Some(p.tenant_id.clone())
        ]]
    );
    for file in walk(&domain.data) {
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            !contains(&bytes, IMPORT_CANARY.as_bytes()),
            "{} holds the canary",
            file.display()
        );
    }

    // Only the importing tenant sees it; stewards of source agencies do not; nobody can
    // grant it to another tenant.
    let mine = p
        .engineer
        .catalog
        .list_datasets(pb::ListDatasetsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(mine.datasets.iter().any(|d| d.id == members.id));
    let theirs = other
        .engineer
        .catalog
        .describe_dataset(pb::DescribeDatasetRequest {
            dataset_id: members.id.clone(),
        })
        .await;
    assert_eq!(status_code(theirs), Code::NotFound);
    let stewards = p
        .steward
        .catalog
        .list_datasets(pb::ListDatasetsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(!stewards.datasets.iter().any(|d| d.id == members.id));
    let leak = p
        .admin
        .admin
        .grant_dataset(pb::GrantDatasetRequest {
            dataset_id: members.id.clone(),
            tenant_id: other.tenant_id.clone(),
        })
        .await;
    assert_eq!(status_reason(leak), "IMPORTED_DATA");

    // Fusion under one scenario: public residents joined with the tenant's members. The
    // residents' steward approves their part; the admin who approved the import answers
    // for the members, and that is their one approval (R12): another admin gives the admin
    // approval.
    let now = now_ms();
    let scenario = p
        .engineer
        .scenarios
        .apply_scenario(pb::ApplyScenarioRequest {
            name: "会员分层统计".into(),
            purpose: "tiers of members by district".into(),
            data_list: [&residents, &members]
                .iter()
                .map(|d| pb::DataListItem {
                    dataset_id: d.id.clone(),
                    columns: d.columns.iter().map(|c| c.name.clone()).collect(),
                })
                .collect(),
            valid_from_ms: 0,
            valid_until_ms: now + 30 * 86_400_000,
            category: pb::ScenarioCategory::Commercial as i32,
        })
        .await
        .expect("apply")
        .into_inner()
        .scenario
        .expect("scenario");
    let decide = |id: &str| pb::DecideScenarioRequest {
        scenario_id: id.to_owned(),
        approve: true,
        comment: String::new(),
    };
    p.steward
        .scenarios
        .decide_scenario(decide(&scenario.id))
        .await
        .expect("the residents' steward approves");
    let by_importer = p
        .admin
        .scenarios
        .decide_scenario(decide(&scenario.id))
        .await
        .expect("the importing admin approves the members")
        .into_inner()
        .scenario
        .expect("scenario");
    assert_eq!(
        by_importer.status,
        pb::ScenarioStatus::Pending as i32,
        "one decision fills one approval: {by_importer:?}"
    );
    let twice = p
        .admin
        .scenarios
        .decide_scenario(decide(&scenario.id))
        .await
        .expect_err("the same admin cannot give the admin approval too");
    assert_eq!(twice.code(), Code::FailedPrecondition);
    assert!(
        twice.message().contains("another admin"),
        "{}",
        twice.message()
    );
    let admin2 = register(&mut p.admin, &domain, "admin2-imp", pb::Role::Admin, "").await;
    let approved = server
        .client(&admin2)
        .await
        .scenarios
        .decide_scenario(decide(&scenario.id))
        .await
        .expect("a second admin approves")
        .into_inner()
        .scenario
        .expect("scenario");
    assert_eq!(approved.status, pb::ScenarioStatus::Approved as i32);
    let scenario_id = scenario.id;
    let job = p
        .engineer
        .run_sql(
            "SELECT m.tier, count(*) AS n FROM residents_imp r \
             JOIN members m ON r.id_number = m.id_number GROUP BY m.tier ORDER BY m.tier",
            &scenario_id,
            WAIT,
        )
        .await
        .expect("fusion job");
    assert_eq!(job.status, pb::JobStatus::Succeeded as i32, "{}", job.error);
    // The join on the identifier chooses the rows: neither they nor their count are shown
    // (the result leaves only through an export's review).
    let shown = job.preview.clone().expect("a preview");
    assert!(shown.rows_withheld && shown.rows.is_empty(), "{shown:?}");
    assert_eq!(job.n_rows, 0);
    let preview = format!("{:?}", job.preview);
    assert!(!preview.contains(IMPORT_CANARY));
}

#[tokio::test(flavor = "multi_thread")]
async fn quality_tickets_reach_the_steward_and_risk_stops_halt_jobs() {
    let domain = Domain::new();
    let server = domain.start();
    let mut p = people(&server, &domain, "dq").await;
    let health = ingest_people(&mut p.steward, "health_records").await;
    let ungranted = ingest_people(&mut p.steward, "not_granted").await;
    grant(&mut p.admin, &health.id, &p.tenant_id).await;
    let scenario_id = scenario(&mut p, &[&health]).await;

    // R18: a ticket on a granted dataset goes to its steward, with a deadline.
    let file = |dataset: &str, column: &str| pb::FileQualityTicketRequest {
        dataset_id: dataset.into(),
        column: column.into(),
        description: "birth dates after the diagnosis dates in district 海曙区".into(),
    };
    let ticket = p
        .engineer
        .stewardship
        .file_quality_ticket(file(&health.id, "birth_date"))
        .await
        .expect("file")
        .into_inner()
        .ticket
        .unwrap();
    assert_eq!(ticket.status, pb::TicketStatus::Open as i32);
    let thirty_days = 30 * 86_400_000;
    assert!((ticket.due_at_ms - ticket.created_at_ms - thirty_days).abs() < 1000);
    assert!(!ticket.overdue);
    let no_column = p
        .engineer
        .stewardship
        .file_quality_ticket(file(&health.id, "no_such_column"))
        .await;
    assert_eq!(status_code(no_column), Code::InvalidArgument);
    let not_granted = p
        .engineer
        .stewardship
        .file_quality_ticket(file(&ungranted.id, ""))
        .await;
    assert_eq!(status_code(not_granted), Code::NotFound);
    assert!(
        notifications(&mut p.steward)
            .await
            .iter()
            .any(|n| n.kind == "quality_ticket" && n.r#ref == ticket.id)
    );
    let open = p
        .steward
        .stewardship
        .list_quality_tickets(pb::ListQualityTicketsRequest { open_only: true })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(open.tickets.len(), 1);
    // Only the dataset's steward answers.
    let by_engineer = p
        .engineer
        .stewardship
        .resolve_quality_ticket(pb::ResolveQualityTicketRequest {
            ticket_id: ticket.id.clone(),
            fixed: true,
            resolution: "done".into(),
        })
        .await;
    assert_eq!(status_code(by_engineer), Code::PermissionDenied);
    let resolved = p
        .steward
        .stewardship
        .resolve_quality_ticket(pb::ResolveQualityTicketRequest {
            ticket_id: ticket.id.clone(),
            fixed: true,
            resolution: "source system corrected, re-published".into(),
        })
        .await
        .expect("resolve")
        .into_inner()
        .ticket
        .unwrap();
    assert_eq!(resolved.status, pb::TicketStatus::Resolved as i32);
    assert!(
        notifications(&mut p.engineer)
            .await
            .iter()
            .any(|n| n.kind == "quality_ticket_answered" && n.r#ref == ticket.id)
    );
    let twice = p
        .steward
        .stewardship
        .resolve_quality_ticket(pb::ResolveQualityTicketRequest {
            ticket_id: ticket.id.clone(),
            fixed: false,
            resolution: "again".into(),
        })
        .await;
    assert_eq!(status_reason(twice), "TICKET_CLOSED");

    // R19: a risk stop on the dataset halts the running job at once, refuses new ones and
    // tells the admins; lifting it lets work resume.
    let running = submit(&mut p.engineer, &scenario_id, SLOW_SQL).await;
    poll_until(&mut p.engineer, &running.id, "running", |j| {
        j.status == pb::JobStatus::Running as i32
    })
    .await;
    let neither = p
        .engineer
        .stewardship
        .raise_risk_stop(pb::RaiseRiskStopRequest {
            dataset_id: String::new(),
            scenario_id: String::new(),
            reason: "x".into(),
        })
        .await;
    assert_eq!(status_code(neither), Code::InvalidArgument);
    let stop = p
        .engineer
        .stewardship
        .raise_risk_stop(pb::RaiseRiskStopRequest {
            dataset_id: health.id.clone(),
            scenario_id: String::new(),
            reason: "joins reveal the home addresses of named officials".into(),
        })
        .await
        .expect("raise")
        .into_inner()
        .stop
        .unwrap();
    assert!(stop.active);
    assert_eq!(stop.jobs_stopped, vec![running.id.clone()]);
    let halted = poll_until(&mut p.engineer, &running.id, "stopped", |j| {
        shuyu_client::is_finished(j)
    })
    .await;
    assert_eq!(halted.status, pb::JobStatus::Cancelled as i32, "{halted:?}");
    let refused = p
        .engineer
        .jobs
        .submit_job(production_sql(
            "SELECT count(*) AS n FROM health_records",
            &scenario_id,
        ))
        .await
        .expect_err("refused while stopped");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(refused.message().contains(&stop.id), "{refused:?}");
    assert!(
        notifications(&mut p.admin)
            .await
            .iter()
            .any(|n| n.kind == "risk_stop" && n.r#ref == stop.id)
    );
    // Only admins lift it.
    let by_engineer = p
        .engineer
        .stewardship
        .lift_risk_stop(pb::LiftRiskStopRequest {
            stop_id: stop.id.clone(),
            comment: "fine".into(),
        })
        .await;
    assert_eq!(status_code(by_engineer), Code::PermissionDenied);
    let lifted = p
        .admin
        .stewardship
        .lift_risk_stop(pb::LiftRiskStopRequest {
            stop_id: stop.id.clone(),
            comment: "query shapes restricted; reviewed with the steward".into(),
        })
        .await
        .expect("lift")
        .into_inner()
        .stop
        .unwrap();
    assert!(!lifted.active);
    let resumed = p
        .engineer
        .run_sql(
            "SELECT count(*) AS n FROM health_records",
            &scenario_id,
            WAIT,
        )
        .await
        .expect("after the lift");
    assert_eq!(
        resumed.status,
        pb::JobStatus::Succeeded as i32,
        "{}",
        resumed.error
    );
    let listed = p
        .auditor
        .stewardship
        .list_risk_stops(pb::ListRiskStopsRequest { active_only: false })
        .await
        .expect("auditors read risk stops")
        .into_inner();
    assert_eq!(listed.stops.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_imports_files_tickets_and_stops() {
    let domain = Domain::new();
    let server = domain.start();
    let mut p = people(&server, &domain, "scli").await;
    let health = ingest_people(&mut p.steward, "health_records").await;
    grant(&mut p.admin, &health.id, &p.tenant_id).await;
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
    let id_with = |out: &str, prefix: &str| {
        out.split_whitespace()
            .find(|w| w.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} id in {out}"))
            .to_owned()
    };

    // R17 from the CLI: apply, approve, upload.
    let (code, out) = cli(
        "engineer-scli",
        &[
            "import",
            "apply",
            "--name",
            "members",
            "--source",
            "membership system",
            "--legal-basis",
            "written consent",
            "--column",
            "id_number:string:direct_identifier:pseudonym",
            "--column",
            "tier:int64:ordinary:keep",
            "--column",
            "note:string:sensitive",
        ],
    );
    assert_eq!(code, 0, "{out}");
    let import_id = id_with(&out, "imp_");
    let (code, out) = cli("admin", &["import", "approve", &import_id]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("approved"), "{out}");
    let file = domain.data.with_extension("members.csv");
    std::fs::write(&file, members_csv()).unwrap();
    let (code, out) = cli(
        "engineer-scli",
        &[
            "import",
            "upload",
            &import_id,
            "--file",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("imported 301 rows"), "{out}");
    let (code, out) = cli("engineer-scli", &["import", "list"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("imported") && out.contains("members"), "{out}");

    // R18 from the CLI.
    let (code, out) = cli(
        "engineer-scli",
        &[
            "quality",
            "file",
            "--dataset",
            &health.id,
            "--column",
            "cost",
            "--description",
            "negative costs in one district",
        ],
    );
    assert_eq!(code, 0, "{out}");
    let ticket_id = id_with(&out, "dq_");
    let (code, out) = cli("steward-scli", &["quality", "list", "--open"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&ticket_id), "{out}");
    let (code, out) = cli(
        "steward-scli",
        &[
            "quality",
            "resolve",
            &ticket_id,
            "--declined",
            "--resolution",
            "refunds are negative by design",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("declined"), "{out}");

    // R19 from the CLI, and the notifications it leaves.
    let (code, out) = cli(
        "steward-scli",
        &[
            "risk-stop",
            "raise",
            "--dataset",
            &health.id,
            "--reason",
            "re-identification risk found",
        ],
    );
    assert_eq!(code, 0, "{out}");
    let stop_id = id_with(&out, "rs_");
    let (code, out) = cli("admin", &["risk-stop", "list", "--active"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&stop_id) && out.contains("ACTIVE"), "{out}");
    let (code, out) = cli("admin", &["notifications"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("risk_stop") && out.contains("import_application"),
        "{out}"
    );
    let (code, out) = cli(
        "admin",
        &["risk-stop", "lift", &stop_id, "--comment", "reviewed"],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("lifted"), "{out}");
    let (code, out) = cli("steward-scli", &["notifications"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("risk_stop_lifted"), "{out}");
}
