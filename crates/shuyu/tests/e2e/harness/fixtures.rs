//! Fixture builders: the people of a tenant with their roles and credentials, datasets of
//! residents with a row of canaries, grants within the tenant's authorization, scenarios
//! (one call for an approved one: [`approved_scenario`]), export requests, votes and
//! approvals. Each does what the person it is named for would do over the API.

use std::path::PathBuf;

use shuyu_client::{Client, v1 as pb};

use super::{Domain, Server, now_ms, staff_id_number};

/// Records `principal_id`'s real-name registration, a training valid for a year and an NDA
/// valid for three, as an admin does before a person may act (R8, R9).
pub async fn qualify(admin: &mut Client, principal_id: &str) -> pb::Qualification {
    let now = now_ms();
    admin
        .governance
        .qualify_principal(pb::QualifyPrincipalRequest {
            principal_id: principal_id.to_owned(),
            id_number: staff_id_number(),
            training_passed_ms: now - 86_400_000,
            training_valid_until_ms: now + 365 * 86_400_000,
            nda_signed_ms: now - 86_400_000,
            nda_valid_until_ms: now + 3 * 365 * 86_400_000,
        })
        .await
        .expect("qualify")
        .into_inner()
        .qualification
        .expect("qualification")
}

/// The people of one tenant plus the domain-wide roles (two reviewers: the default policy's
/// quorum).
pub struct People {
    pub tenant_id: String,
    /// The tenant's authorization (all categories, a year; datasets join its scope when
    /// granted) with an emergency plan.
    pub authorization_id: String,
    /// The recipient of the people's products (an organisation outside the tenant).
    pub recipient_id: String,
    pub recipient: Client,
    pub steward: Client,
    pub engineer: Client,
    pub reviewer: Client,
    pub reviewer2: Client,
    pub auditor: Client,
    pub admin: Client,
}

/// Registers a qualified person with `role` (in `tenant`, or domain-wide when empty) and
/// writes their credentials to the domain's `dir`.
pub async fn register(
    admin: &mut Client,
    domain: &Domain,
    dir: &str,
    role: pb::Role,
    tenant: &str,
) -> PathBuf {
    let principal = admin
        .admin
        .create_principal(pb::CreatePrincipalRequest {
            real_name: format!("测试{dir}"),
            organisation: "测试单位".into(),
            role: role as i32,
            tenant_id: tenant.to_owned(),
        })
        .await
        .expect("create principal")
        .into_inner()
        .principal
        .expect("principal");
    qualify(admin, &principal.id).await;
    let (key, csr) = shuyu_client::new_key_and_csr(&principal.id).expect("csr");
    let issued = admin
        .admin
        .issue_certificate(pb::IssueCertificateRequest {
            principal_id: principal.id.clone(),
            csr_pem: csr,
            validity_days: 0,
        })
        .await
        .expect("issue")
        .into_inner();
    let out = domain.creds(dir);
    shuyu_client::write_credentials(
        &out,
        &issued.ca_certificate_pem,
        &issued.certificate_pem,
        &key,
    )
    .expect("write credentials");
    out
}

/// A new tenant, authorized for a year, with its engineer, and new domain-wide people: a
/// steward, two reviewers, an auditor and a recipient. `suffix` names their credentials.
pub async fn people(server: &Server, domain: &Domain, suffix: &str) -> People {
    let mut admin = server.client(&domain.creds("admin")).await;
    let tenant_id = admin
        .admin
        .create_tenant(pb::CreateTenantRequest {
            name: format!("operator-{suffix}"),
        })
        .await
        .expect("create tenant")
        .into_inner()
        .tenant
        .expect("tenant")
        .id;
    let authorization_id = authorize(&mut admin, &tenant_id).await;
    let steward = register(
        &mut admin,
        domain,
        &format!("steward-{suffix}"),
        pb::Role::Steward,
        "",
    )
    .await;
    let engineer = register(
        &mut admin,
        domain,
        &format!("engineer-{suffix}"),
        pb::Role::Engineer,
        &tenant_id,
    )
    .await;
    let reviewer = register(
        &mut admin,
        domain,
        &format!("reviewer-{suffix}"),
        pb::Role::Reviewer,
        "",
    )
    .await;
    let reviewer2 = register(
        &mut admin,
        domain,
        &format!("reviewer2-{suffix}"),
        pb::Role::Reviewer,
        "",
    )
    .await;
    let auditor = register(
        &mut admin,
        domain,
        &format!("auditor-{suffix}"),
        pb::Role::Auditor,
        "",
    )
    .await;
    let recipient_creds = register(
        &mut admin,
        domain,
        &format!("recipient-{suffix}"),
        pb::Role::Recipient,
        "",
    )
    .await;
    let mut recipient = server.client(&recipient_creds).await;
    let recipient_id = recipient
        .session
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .expect("whoami")
        .into_inner()
        .principal
        .expect("principal")
        .id;
    People {
        tenant_id,
        authorization_id,
        recipient_id,
        recipient,
        steward: server.client(&steward).await,
        engineer: server.client(&engineer).await,
        reviewer: server.client(&reviewer).await,
        reviewer2: server.client(&reviewer2).await,
        auditor: server.client(&auditor).await,
        admin,
    }
}

/// A declared column of an upload.
pub fn column(name: &str, data_type: &str, classification: &str, masking: &str) -> pb::Column {
    pb::Column {
        name: name.into(),
        data_type: data_type.into(),
        classification: classification.into(),
        masking: masking.into(),
    }
}

/// The residents' columns, one of each classification and masking rule.
pub fn people_columns() -> Vec<pb::Column> {
    vec![
        column("name", "string", "direct_identifier", "partial_name"),
        column("id_number", "string", "direct_identifier", "pseudonym"),
        column("mobile", "string", "direct_identifier", "partial_mobile"),
        column(
            "birth_date",
            "date",
            "quasi_identifier",
            "generalize_date:year",
        ),
        column("district", "string", "ordinary", "keep"),
        column("diagnosis", "string", "sensitive", ""),
        column("cost", "float64", "sensitive", "generalize_number:100"),
    ]
}

// The canary row's values: none may reach an engineer, a log or a file in plaintext.
pub const CANARY_NAME: &str = "CANARYNAME豪";
pub const CANARY_ID: &str = "330203198807071236";
pub const CANARY_MOBILE: &str = "13999990001";
pub const CANARY_DIAGNOSIS: &str = "CANARYDIAG_ZQX";
pub const CANARY_COST: &str = "98765.43";

/// 300 ordinary rows in three districts plus one row of canaries in district 鄞州区.
pub fn people_csv() -> String {
    let mut csv = String::from("name,id_number,mobile,birth_date,district,diagnosis,cost\n");
    let districts = ["海曙区", "江北区", "鄞州区"];
    for i in 0..300 {
        csv.push_str(&format!(
            "王{},33020319{:02}0101{:03}X,1380000{:04},19{:02}-01-01,{},高血压,{}.50\n",
            i,
            50 + i % 40,
            i,
            i,
            50 + i % 40,
            districts[i % 3],
            100 + i
        ));
    }
    csv.push_str(&format!(
        "{CANARY_NAME},{CANARY_ID},{CANARY_MOBILE},1988-07-07,鄞州区,{CANARY_DIAGNOSIS},{CANARY_COST}\n"
    ));
    csv
}

/// Ingests [`people_csv`] as dataset `name`, as the steward.
pub async fn ingest_people(steward: &mut Client, name: &str) -> pb::Dataset {
    steward
        .ingest(
            pb::IngestHeader {
                name: name.into(),
                description: "test residents".into(),
                format: pb::DataFormat::Csv as i32,
                columns: people_columns(),
            },
            people_csv().into_bytes(),
        )
        .await
        .expect("ingest")
}

/// Records a tenant's authorization (every scenario category, one year, no dataset yet) and
/// its emergency plan, as an admin does before the tenant may work (R25, R32).
pub async fn authorize(admin: &mut Client, tenant_id: &str) -> String {
    let now = now_ms();
    let authorization = admin
        .governance
        .create_authorization(pb::CreateAuthorizationRequest {
            tenant_id: tenant_id.to_owned(),
            dataset_ids: Vec::new(),
            categories: vec![
                pb::ScenarioCategory::PublicGovernance as i32,
                pb::ScenarioCategory::PublicWelfare as i32,
                pb::ScenarioCategory::Commercial as i32,
            ],
            valid_from_ms: 0,
            valid_until_ms: now + 365 * 86_400_000,
            pricing_terms: "the [pricing] rates".into(),
        })
        .await
        .expect("create authorization")
        .into_inner()
        .authorization
        .expect("authorization");
    set_plan(admin, &authorization.id).await;
    authorization.id
}

/// Records the authorization's emergency plan.
pub async fn set_plan(admin: &mut Client, authorization_id: &str) {
    admin
        .governance
        .set_emergency_plan(pb::SetEmergencyPlanRequest {
            authorization_id: authorization_id.to_owned(),
            summary: "stop, assess, report".into(),
            contact: "duty desk 0574-00000000".into(),
            actions: vec![
                "suspend the tenant's jobs".into(),
                "report within 2 h".into(),
            ],
        })
        .await
        .expect("set emergency plan");
}

/// Grants a dataset to a tenant and adds it to the scope of the tenant's authorization in
/// force (R25), as the admin does when a granted dataset joins the agreement.
pub async fn grant(admin: &mut Client, dataset_id: &str, tenant_id: &str) {
    admin
        .admin
        .grant_dataset(pb::GrantDatasetRequest {
            dataset_id: dataset_id.into(),
            tenant_id: tenant_id.into(),
        })
        .await
        .expect("grant");
    let authorizations = admin
        .governance
        .list_authorizations(pb::ListAuthorizationsRequest {
            tenant_id: tenant_id.into(),
        })
        .await
        .expect("list authorizations")
        .into_inner()
        .authorizations;
    if let Some(a) = authorizations
        .iter()
        .find(|a| a.status == pb::AuthorizationStatus::Active as i32)
    {
        admin
            .governance
            .amend_authorization_scope(pb::AmendAuthorizationScopeRequest {
                authorization_id: a.id.clone(),
                add_dataset_ids: vec![dataset_id.into()],
                add_categories: Vec::new(),
            })
            .await
            .expect("add the dataset to the authorization's scope");
    }
}

/// Applies, as `engineer`, for a scenario listing every column of `datasets`; each dataset's
/// steward (`steward`) and an admin approve it. Returns its id.
pub async fn scenario_approved_by(
    engineer: &mut Client,
    steward: &mut Client,
    admin: &mut Client,
    datasets: &[&pb::Dataset],
) -> String {
    let now = now_ms();
    let applied = engineer
        .scenarios
        .apply_scenario(pb::ApplyScenarioRequest {
            name: "测试场景".into(),
            purpose: "end-to-end test".into(),
            data_list: datasets
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
        .expect("apply for a scenario")
        .into_inner()
        .scenario
        .expect("scenario");
    for approver in [steward, admin] {
        approver
            .scenarios
            .decide_scenario(pb::DecideScenarioRequest {
                scenario_id: applied.id.clone(),
                approve: true,
                comment: String::new(),
            })
            .await
            .expect("approve the scenario");
    }
    applied.id
}

/// [`scenario_approved_by`] the people's own steward and admin.
pub async fn scenario(p: &mut People, datasets: &[&pb::Dataset]) -> String {
    scenario_approved_by(&mut p.engineer, &mut p.steward, &mut p.admin, datasets).await
}

/// Requests an export of `job_id` as a CSV product for the people's recipient.
pub async fn request_export(p: &mut People, job_id: &str) -> pb::Export {
    p.engineer
        .exports
        .request_export(pb::RequestExportRequest {
            job_id: job_id.into(),
            purpose: "test purpose".into(),
            format: pb::DataFormat::Csv as i32,
            recipient_id: p.recipient_id.clone(),
            permitted_use: "test use".into(),
            expires_in_days: 0,
        })
        .await
        .expect("request export")
        .into_inner()
        .export
        .expect("export")
}

/// A vote on an export, by a reviewer or by anyone trying.
pub async fn vote(
    client: &mut Client,
    export_id: &str,
    decision: pb::ExportDecision,
    shared_comment: &str,
    private_comment: &str,
) -> Result<pb::Export, tonic::Status> {
    client
        .exports
        .vote_export(pb::VoteExportRequest {
            export_id: export_id.into(),
            decision: decision as i32,
            shared_comment: shared_comment.into(),
            private_comment: private_comment.into(),
        })
        .await
        .map(|r| r.into_inner().export.expect("export"))
}

/// An approval with a shared comment.
pub async fn approve(
    client: &mut Client,
    export_id: &str,
    comment: &str,
) -> Result<pb::Export, tonic::Status> {
    vote(client, export_id, pb::ExportDecision::Approve, comment, "").await
}

/// An approved scenario and what it took: the people of a tenant, the datasets (each
/// [`people_csv`] with its canary row, granted to the tenant) and the scenario listing
/// every column of them.
pub struct Approved<const N: usize> {
    pub people: People,
    pub scenario_id: String,
    pub datasets: [pb::Dataset; N],
}

/// In one call, what many tests start from: [`people`] named by `suffix`, each of `names`
/// ingested by the steward ([`ingest_people`]) and granted to the tenant ([`grant`]), and
/// a scenario over them applied for by the engineer and approved by the steward and an
/// admin ([`scenario`]).
pub async fn approved_scenario<const N: usize>(
    server: &Server,
    domain: &Domain,
    suffix: &str,
    names: [&str; N],
) -> Approved<N> {
    let mut people = people(server, domain, suffix).await;
    let mut datasets = Vec::with_capacity(N);
    for name in names {
        datasets.push(ingest_people(&mut people.steward, name).await);
    }
    for dataset in &datasets {
        grant(&mut people.admin, &dataset.id, &people.tenant_id).await;
    }
    let listed: Vec<&pb::Dataset> = datasets.iter().collect();
    let scenario_id = scenario(&mut people, &listed).await;
    let Ok(datasets) = <[pb::Dataset; N]>::try_from(datasets) else {
        unreachable!("one dataset per name")
    };
    Approved {
        people,
        scenario_id,
        datasets,
    }
}
