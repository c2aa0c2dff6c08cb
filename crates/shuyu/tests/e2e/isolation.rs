//! Isolation: another tenant sees and touches nothing, and nothing is served without a valid client certificate.

use shuyu_client::{Client, ClientError, Credentials, v1 as pb};
use tonic::Code;

use crate::harness::fixtures::*;
use crate::harness::*;

#[tokio::test(flavor = "multi_thread")]
async fn another_tenant_cannot_see_or_touch_anything() {
    let domain = Domain::new();
    let server = domain.start();
    let Approved {
        people: mut a,
        scenario_id: sc_a,
        datasets: [dataset],
    } = approved_scenario(&server, &domain, "a", ["residents"]).await;
    let mut b = people(&server, &domain, "b").await;
    let job = a
        .engineer
        .run_sql(
            "SELECT district, count(*) AS n FROM residents GROUP BY district",
            &sc_a,
            WAIT,
        )
        .await
        .unwrap();
    let export = request_export(&mut a, &job.id).await;

    let listed = b
        .engineer
        .catalog
        .list_datasets(pb::ListDatasetsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(listed.datasets.is_empty());
    let jobs = b
        .engineer
        .jobs
        .list_jobs(pb::ListJobsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(jobs.jobs.is_empty());
    let exports = b
        .engineer
        .exports
        .list_exports(pb::ListExportsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(exports.exports.is_empty());

    // Every probe of A's ids answers exactly like a probe of ids that never existed.
    for (real, missing) in [
        (dataset.id.as_str(), "ds_00000000000000000000"),
        (job.id.as_str(), "job_00000000000000000000"),
        (export.id.as_str(), "exp_00000000000000000000"),
    ] {
        for id in [real, missing] {
            let describe = b
                .engineer
                .catalog
                .describe_dataset(pb::DescribeDatasetRequest {
                    dataset_id: id.into(),
                })
                .await;
            let sample = b
                .engineer
                .catalog
                .sample_dataset(pb::SampleDatasetRequest {
                    dataset_id: id.into(),
                    n_rows: 5,
                })
                .await;
            let get_job = b
                .engineer
                .jobs
                .get_job(pb::GetJobRequest { job_id: id.into() })
                .await;
            let request = b
                .engineer
                .exports
                .request_export(pb::RequestExportRequest {
                    job_id: id.into(),
                    purpose: "probe".into(),
                    format: 0,
                    ..Default::default()
                })
                .await;
            let get_export = b
                .engineer
                .exports
                .get_export(pb::GetExportRequest {
                    export_id: id.into(),
                })
                .await;
            let download = b.engineer.download(id).await;
            let messages = [
                describe.map(|_| ()).unwrap_err(),
                sample.map(|_| ()).unwrap_err(),
                get_job.map(|_| ()).unwrap_err(),
                request.map(|_| ()).unwrap_err(),
                get_export.map(|_| ()).unwrap_err(),
            ];
            for status in &messages {
                assert_eq!(status.code(), Code::NotFound, "{status:?}");
                assert!(
                    status.message().ends_with(&format!("{id} not found")),
                    "{status:?}"
                );
            }
            assert_eq!(code(download), Code::NotFound);
        }
    }
    // A's scenario does not exist for B.
    let borrowed = b
        .engineer
        .run_sql("SELECT count(*) FROM residents", &sc_a, WAIT)
        .await;
    assert_eq!(code(borrowed), Code::NotFound);
    // SQL over A's table name fails exactly like SQL over a table that does not exist.
    let theirs = b
        .engineer
        .run_lab_sql("SELECT count(*) FROM residents", WAIT)
        .await
        .unwrap();
    let nowhere = b
        .engineer
        .run_lab_sql("SELECT count(*) FROM residentz", WAIT)
        .await
        .unwrap();
    assert_eq!(theirs.status, pb::JobStatus::Failed as i32);
    assert_eq!(
        theirs.error.replace("residents", "X"),
        nowhere.error.replace("residentz", "X")
    );
    // A's reviewer-side view is unaffected.
    let queue = a
        .reviewer
        .exports
        .list_exports(pb::ListExportsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(queue.exports.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_is_served_without_a_valid_client_certificate() {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    let domain = Domain::new();
    let server = domain.start();
    let ca = std::fs::read_to_string(domain.creds("admin").join("ca.pem")).unwrap();

    async fn whoami(server: &Server, tls: ClientTlsConfig) -> Result<(), String> {
        let mut client = Client::connect_with(&server.addr, tls)
            .await
            .map_err(|e| e.to_string())?;
        client
            .session
            .who_am_i(pb::WhoAmIRequest {})
            .await
            .map(|_| ())
            .map_err(|e| ClientError::from(e).to_string())
    }
    let base = || {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&ca))
            .domain_name("localhost")
    };

    // No certificate.
    let err = whoami(&server, base()).await.unwrap_err();
    assert!(err.contains("no client certificate was presented"), "{err}");
    // A certificate from another CA.
    let other = tempfile::tempdir().unwrap();
    let other_out = run_bin(&[
        "init",
        "--data-dir",
        other.path().join("d").to_str().unwrap(),
        "--creds-out",
        other.path().join("c").to_str().unwrap(),
        "--admin-id-number",
        &staff_id_number(),
    ]);
    assert!(other_out.status.success());
    let foreign = Credentials::from_dir(&other.path().join("c")).unwrap();
    let err = whoami(
        &server,
        base().identity(Identity::from_pem(&foreign.cert_pem, &foreign.key_pem)),
    )
    .await
    .unwrap_err();
    assert!(err.contains("not issued by this domain's CA"), "{err}");
    // An expired certificate signed by the right CA.
    let opened = shuyu_server::domain::open(
        &domain.data,
        &shuyu_server::domain::MetadataConfig::default(),
    )
    .unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(
        &opened.ca.cert_pem,
        rcgen::KeyPair::from_pem(&opened.ca.key_pem).unwrap(),
    )
    .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(10);
    params.not_after = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let expired = params.signed_by(&key, &issuer).unwrap();
    let err = whoami(
        &server,
        base().identity(Identity::from_pem(expired.pem(), key.serialize_pem())),
    )
    .await
    .unwrap_err();
    assert!(err.contains("expired"), "{err}");
    // A valid certificate from the right CA that no principal is bound to.
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let unbound = params.signed_by(&key, &issuer).unwrap();
    let err = whoami(
        &server,
        base().identity(Identity::from_pem(unbound.pem(), key.serialize_pem())),
    )
    .await
    .unwrap_err();
    assert!(
        err.contains("Unauthenticated") || err.contains("not registered"),
        "{err}"
    );
    // The admin's own certificate works.
    let admin = Credentials::from_dir(&domain.creds("admin")).unwrap();
    whoami(
        &server,
        base().identity(Identity::from_pem(&admin.cert_pem, &admin.key_pem)),
    )
    .await
    .expect("a registered certificate is served");
}
