//! The attack corpus's server attacks (`[[server_attack]]` in `tests/corpus/attacks.toml`):
//! attacks on review, delivery and tenancy rules, each run by its script over mTLS against
//! the real server, each expecting its gRPC status.

use std::collections::HashSet;

use serde::Deserialize;

use shuyu_client::{Client, ClientError, v1 as pb};
use tonic::Code;

use crate::harness::fixtures::*;
use crate::harness::*;

#[derive(Debug, Deserialize)]
struct Corpus {
    server_attack: Vec<ServerAttack>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerAttack {
    id: String,
    category: String,
    script: String,
    expect: String,
}

const AGGREGATE: &str =
    "SELECT district, count(*) AS n, avg(cost) AS avg_cost FROM residents GROUP BY district";

/// The attacker's world: a tenant with an approved scenario, an aggregate job, a row-level
/// job and a lab job; another recipient; another tenant.
struct World {
    domain: Domain,
    server: Server,
    p: People,
    aggregate: String,
    row_level: String,
    lab: String,
    scenario: String,
}

impl World {
    async fn new() -> World {
        let domain = Domain::new();
        let server = domain.start();
        let Approved {
            people: p,
            scenario_id: sc,
            datasets: _,
        } = approved_scenario(&server, &domain, "corpus", ["residents"]).await;
        let run = |sql: &'static str, request: pb::SubmitJobRequest| {
            let mut engineer = p.engineer.clone();
            async move {
                let job = engineer.run_job(request, WAIT).await.unwrap();
                assert_eq!(
                    job.status,
                    pb::JobStatus::Succeeded as i32,
                    "{sql}: {}",
                    job.error
                );
                job.id
            }
        };
        let aggregate = run(AGGREGATE, shuyu_client::production_sql(AGGREGATE, &sc)).await;
        let row_sql = "SELECT name, diagnosis FROM residents";
        let row_level = run(row_sql, shuyu_client::production_sql(row_sql, &sc)).await;
        let lab = run(AGGREGATE, shuyu_client::lab_sql(AGGREGATE)).await;
        World {
            domain,
            server,
            p,
            aggregate,
            row_level,
            lab,
            scenario: sc,
        }
    }

    /// A new principal of `role` (under `tenant`, or none) and its client and id.
    async fn principal(&mut self, dir: &str, role: pb::Role, tenant: &str) -> (String, Client) {
        let creds = register(&mut self.p.admin, &self.domain, dir, role, tenant).await;
        let mut client = self.server.client(&creds).await;
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

    /// An export of the aggregate job for the people's recipient, approved by both reviewers.
    async fn approved(&mut self) -> pb::Export {
        let export = request_export(&mut self.p, &self.aggregate.clone()).await;
        approve(&mut self.p.reviewer, &export.id, "").await.unwrap();
        let approved = approve(&mut self.p.reviewer2, &export.id, "")
            .await
            .unwrap();
        assert_eq!(approved.status, pb::ExportStatus::Approved as i32);
        approved
    }
}

fn client_code<T: std::fmt::Debug>(result: Result<T, ClientError>) -> Code {
    match result {
        Err(ClientError::Status(status)) => status.code(),
        other => panic!("expected a status, got {other:?}"),
    }
}

fn status<T: std::fmt::Debug>(result: Result<T, tonic::Status>) -> Code {
    match result {
        Err(status) => status.code(),
        Ok(value) => panic!("expected a refusal, got {value:?}"),
    }
}

/// Runs one scripted attack; the status it met.
async fn run(w: &mut World, script: &str, n: usize) -> Code {
    match script {
        "download_as_other_recipient" => {
            let export = w.approved().await;
            let (_, mut other) = w
                .principal(&format!("other-recipient-{n}"), pb::Role::Recipient, "")
                .await;
            client_code(other.download(&export.id).await)
        }
        "fetch_as_other_recipient" => {
            let export = w.approved().await;
            let (_, mut other) = w
                .principal(&format!("other-flight-{n}"), pb::Role::Recipient, "")
                .await;
            client_code(other.fetch_product(&export.id).await)
        }
        "download_as_requester" => {
            let export = w.approved().await;
            client_code(w.p.engineer.download(&export.id).await)
        }
        "request_for_an_engineer" => {
            let engineer_id =
                w.p.engineer
                    .session
                    .who_am_i(pb::WhoAmIRequest {})
                    .await
                    .unwrap()
                    .into_inner()
                    .principal
                    .unwrap()
                    .id;
            status(
                w.p.engineer
                    .exports
                    .request_export(pb::RequestExportRequest {
                        job_id: w.aggregate.clone(),
                        purpose: "to myself".into(),
                        format: pb::DataFormat::Csv as i32,
                        recipient_id: engineer_id,
                        permitted_use: "anything".into(),
                        expires_in_days: 10,
                    })
                    .await,
            )
        }
        "approve_after_the_result_changed" => {
            let export = request_export(&mut w.p, &w.aggregate.clone()).await;
            approve(&mut w.p.reviewer, &export.id, "").await.unwrap();
            let file = w
                .domain
                .data
                .join("objects/results")
                .join(&w.p.tenant_id)
                .join(&w.scenario)
                .join(&w.aggregate)
                .join("result.parquet");
            let original = std::fs::read(&file).unwrap();
            let mut changed = original.clone();
            changed.push(0);
            std::fs::write(&file, &changed).unwrap();
            let code = status(approve(&mut w.p.reviewer2, &export.id, "").await);
            std::fs::write(&file, &original).unwrap();
            code
        }
        "approve_a_refused_export" => {
            let export = request_export(&mut w.p, &w.row_level.clone()).await;
            assert_eq!(export.status, pb::ExportStatus::Refused as i32);
            status(approve(&mut w.p.reviewer, &export.id, "").await)
        }
        "vote_twice" => {
            let export = request_export(&mut w.p, &w.aggregate.clone()).await;
            approve(&mut w.p.reviewer, &export.id, "").await.unwrap();
            status(approve(&mut w.p.reviewer, &export.id, "").await)
        }
        "vote_as_requester" => {
            let export = request_export(&mut w.p, &w.aggregate.clone()).await;
            status(approve(&mut w.p.engineer, &export.id, "").await)
        }
        "vote_as_tenant_reviewer" => {
            let export = request_export(&mut w.p, &w.aggregate.clone()).await;
            let tenant = w.p.tenant_id.clone();
            let (_, mut insider) = w
                .principal(&format!("insider-{n}"), pb::Role::Reviewer, &tenant)
                .await;
            status(approve(&mut insider, &export.id, "").await)
        }
        "download_revoked" => {
            let export = w.approved().await;
            w.p.reviewer
                .exports
                .revoke_export(pb::RevokeExportRequest {
                    export_id: export.id.clone(),
                    reason: "授权撤销".into(),
                })
                .await
                .unwrap();
            client_code(w.p.recipient.download(&export.id).await)
        }
        "export_lab_result" => status(
            w.p.engineer
                .exports
                .request_export(pb::RequestExportRequest {
                    job_id: w.lab.clone(),
                    purpose: "lab".into(),
                    format: pb::DataFormat::Csv as i32,
                    recipient_id: w.p.recipient_id.clone(),
                    permitted_use: "lab".into(),
                    expires_in_days: 10,
                })
                .await,
        ),
        "export_other_tenants_job" => {
            let mut other = people(&w.server, &w.domain, &format!("other-{n}")).await;
            status(
                other
                    .engineer
                    .exports
                    .request_export(pb::RequestExportRequest {
                        job_id: w.aggregate.clone(),
                        purpose: "theirs".into(),
                        format: pb::DataFormat::Csv as i32,
                        recipient_id: other.recipient_id.clone(),
                        permitted_use: "theirs".into(),
                        expires_in_days: 10,
                    })
                    .await,
            )
        }
        other => panic!("no script {other}"),
    }
}

fn code_named(name: &str) -> Code {
    match name {
        "NotFound" => Code::NotFound,
        "InvalidArgument" => Code::InvalidArgument,
        "FailedPrecondition" => Code::FailedPrecondition,
        "PermissionDenied" => Code::PermissionDenied,
        other => panic!("unknown expected status {other}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_server_attack_in_the_corpus_is_refused() {
    let corpus: Corpus = toml::from_str(include_str!("../../../../tests/corpus/attacks.toml"))
        .expect("the corpus parses");
    let mut ids = HashSet::new();
    let mut w = World::new().await;
    let mut escaped = Vec::new();
    for (n, attack) in corpus.server_attack.iter().enumerate() {
        assert!(ids.insert(&attack.id), "duplicate id {}", attack.id);
        let code = run(&mut w, &attack.script, n).await;
        if code != code_named(&attack.expect) {
            escaped.push(format!(
                "{} ({}): {code:?}, expected {}",
                attack.id, attack.category, attack.expect
            ));
        }
    }
    eprintln!("{} server attacks run", corpus.server_attack.len());
    assert!(corpus.server_attack.len() >= 10);
    assert!(escaped.is_empty(), "{}", escaped.join("\n"));
}
