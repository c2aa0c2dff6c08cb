//! Governance commands: `shuyu authorization …` (R25), `shuyu emergency-plan …` (R32),
//! `shuyu principal qualify|qualification|revoke-cert` (R8, R9, certificate revocation).

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use shuyu_client::v1 as pb;

use super::Conn;
use super::cli::parse_category;

#[derive(Debug, Subcommand)]
pub enum AuthorizationCommand {
    /// Record a tenant's authorization agreement: scope, term, pricing terms.
    Create {
        #[arg(long)]
        tenant: String,
        /// A dataset the agreement covers (repeat); more can be added with `add-scope`.
        #[arg(long = "dataset")]
        datasets: Vec<String>,
        /// A scenario category it covers (repeat): public_governance, public_welfare,
        /// commercial. Default: all three.
        #[arg(long = "category")]
        categories: Vec<String>,
        /// First day, YYYY-MM-DD (UTC); default: now.
        #[arg(long)]
        from: Option<String>,
        /// End (exclusive), YYYY-MM-DD (UTC). Or give --years.
        #[arg(long, conflicts_with = "years")]
        until: Option<String>,
        /// Term in years from the start (at most the server's configured maximum: 3 by
        /// default, 5 at most).
        #[arg(long)]
        years: Option<u32>,
        /// The agreed pricing terms (text: rates in fen or a reference to them).
        #[arg(long)]
        pricing: String,
    },
    /// List authorizations (engineers: their tenant's).
    List {
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Show one authorization.
    Show { id: String },
    /// Revoke an authorization now: the tenant's work stops.
    Revoke {
        id: String,
        #[arg(long)]
        reason: String,
    },
    /// Renew an authorization (opens six months before it ends): a successor term from its
    /// end, same scope; its emergency plan is carried over.
    Renew {
        id: String,
        /// End of the new term, YYYY-MM-DD (UTC). Or give --years.
        #[arg(long, conflicts_with = "years")]
        until: Option<String>,
        /// New term in years from the old term's end.
        #[arg(long)]
        years: Option<u32>,
        /// New pricing terms (default: unchanged).
        #[arg(long)]
        pricing: Option<String>,
    },
    /// Add datasets or scenario categories to an authorization's scope.
    AddScope {
        id: String,
        #[arg(long = "dataset")]
        datasets: Vec<String>,
        #[arg(long = "category")]
        categories: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum EmergencyPlanCommand {
    /// Record or replace an authorization's emergency plan.
    Set {
        /// The authorization.
        id: String,
        #[arg(long)]
        summary: String,
        /// Who to call.
        #[arg(long)]
        contact: String,
        /// An action the plan prescribes (repeat, in order).
        #[arg(long = "action", required = true)]
        actions: Vec<String>,
    },
    /// Show an authorization's emergency plan.
    Show { id: String },
}

#[derive(Debug, Subcommand)]
pub enum PrincipalGovernanceCommand {
    /// Record real-name registration (ID number), training and/or NDA (admins).
    Qualify {
        /// The principal.
        id: String,
        /// Resident ID number (stored only as a keyed hash and a masked form).
        #[arg(long)]
        id_number: Option<String>,
        /// Training passed on, YYYY-MM-DD.
        #[arg(long, requires = "training_until")]
        training_passed: Option<String>,
        /// Training valid until, YYYY-MM-DD.
        #[arg(long, requires = "training_passed")]
        training_until: Option<String>,
        /// NDA signed on, YYYY-MM-DD.
        #[arg(long, requires = "nda_until")]
        nda_signed: Option<String>,
        /// NDA in force until, YYYY-MM-DD.
        #[arg(long, requires = "nda_signed")]
        nda_until: Option<String>,
    },
    /// Show a principal's qualification and certificates (the ID number only masked).
    Qualification { id: String },
    /// Revoke a principal's certificates (or one, by fingerprint); `--disable` also bars
    /// any new certificate.
    RevokeCert {
        id: String,
        #[arg(long)]
        fingerprint: Option<String>,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        disable: bool,
    },
}

/// Midnight UTC of `YYYY-MM-DD`, in ms.
fn parse_date(text: &str) -> Result<i64> {
    let date = chrono::NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
        .with_context(|| format!("{text:?} is not a date (YYYY-MM-DD)"))?;
    Ok(date
        .and_hms_opt(0, 0, 0)
        .context("midnight")?
        .and_utc()
        .timestamp_millis())
}

fn date(ms: i64) -> String {
    if ms == 0 {
        "—".into()
    } else {
        shuyu_policy::format_date(ms)
    }
}

fn categories(texts: &[String]) -> Result<Vec<i32>> {
    texts
        .iter()
        .map(|t| parse_category(t).map(|c| c as i32))
        .collect()
}

/// The end of a term: `--until`, or `--years` from `from_ms`.
fn term_end(until: Option<&str>, years: Option<u32>, from_ms: i64) -> Result<i64> {
    match (until, years) {
        (Some(u), _) => parse_date(u),
        (None, Some(y)) => Ok(shuyu_policy::add_months(from_ms, 12 * y as i32)),
        (None, None) => bail!("give --until YYYY-MM-DD or --years N"),
    }
}

fn status(value: i32) -> &'static str {
    match pb::AuthorizationStatus::try_from(value) {
        Ok(pb::AuthorizationStatus::Active) => "active",
        Ok(pb::AuthorizationStatus::Pending) => "pending",
        Ok(pb::AuthorizationStatus::Expired) => "expired",
        Ok(pb::AuthorizationStatus::Revoked) => "revoked",
        Ok(pb::AuthorizationStatus::Superseded) => "superseded",
        _ => "unknown",
    }
}

fn category_names(values: &[i32]) -> String {
    values
        .iter()
        .map(|v| match pb::ScenarioCategory::try_from(*v) {
            Ok(pb::ScenarioCategory::PublicGovernance) => "public_governance",
            Ok(pb::ScenarioCategory::PublicWelfare) => "public_welfare",
            Ok(pb::ScenarioCategory::Commercial) => "commercial",
            _ => "?",
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn print_authorization(a: &pb::Authorization) {
    println!(
        "{}  tenant {}  {}  {} → {}",
        a.id,
        a.tenant_id,
        status(a.status),
        date(a.valid_from_ms),
        date(a.valid_until_ms)
    );
    println!("  datasets:       {}", a.dataset_ids.join(", "));
    println!("  categories:     {}", category_names(&a.categories));
    println!("  pricing terms:  {}", a.pricing_terms);
    println!(
        "  renewal opens:  {}{}",
        date(a.renewal_opens_at_ms),
        if a.renewed_by.is_empty() {
            String::new()
        } else {
            format!(" (renewed by {})", a.renewed_by)
        }
    );
    if !a.renewed_from.is_empty() {
        println!("  renews:         {}", a.renewed_from);
    }
    println!(
        "  emergency plan: {}",
        if a.has_emergency_plan {
            "yes"
        } else {
            "MISSING"
        }
    );
    if a.revoked_at_ms != 0 {
        println!(
            "  revoked:        {} ({})",
            date(a.revoked_at_ms),
            a.revoked_reason
        );
    }
}

pub async fn run_authorization(command: AuthorizationCommand, conn: &Conn) -> Result<()> {
    match command {
        AuthorizationCommand::Create {
            tenant,
            datasets,
            categories: cats,
            from,
            until,
            years,
            pricing,
        } => {
            let from_ms = match from.as_deref() {
                Some(f) => parse_date(f)?,
                None => chrono::Utc::now().timestamp_millis(),
            };
            let until_ms = term_end(until.as_deref(), years, from_ms)?;
            let cats = if cats.is_empty() {
                vec![
                    pb::ScenarioCategory::PublicGovernance as i32,
                    pb::ScenarioCategory::PublicWelfare as i32,
                    pb::ScenarioCategory::Commercial as i32,
                ]
            } else {
                categories(&cats)?
            };
            let a = conn
                .connect()
                .await?
                .governance
                .create_authorization(pb::CreateAuthorizationRequest {
                    tenant_id: tenant,
                    dataset_ids: datasets,
                    categories: cats,
                    valid_from_ms: if from.is_some() { from_ms } else { 0 },
                    valid_until_ms: until_ms,
                    pricing_terms: pricing,
                })
                .await?
                .into_inner()
                .authorization
                .unwrap_or_default();
            print_authorization(&a);
        }
        AuthorizationCommand::List { tenant } => {
            let list = conn
                .connect()
                .await?
                .governance
                .list_authorizations(pb::ListAuthorizationsRequest {
                    tenant_id: tenant.unwrap_or_default(),
                })
                .await?
                .into_inner();
            for a in &list.authorizations {
                print_authorization(a);
            }
        }
        AuthorizationCommand::Show { id } => {
            let a = conn
                .connect()
                .await?
                .governance
                .get_authorization(pb::GetAuthorizationRequest {
                    authorization_id: id,
                })
                .await?
                .into_inner()
                .authorization
                .unwrap_or_default();
            print_authorization(&a);
        }
        AuthorizationCommand::Revoke { id, reason } => {
            let a = conn
                .connect()
                .await?
                .governance
                .revoke_authorization(pb::RevokeAuthorizationRequest {
                    authorization_id: id,
                    reason,
                })
                .await?
                .into_inner()
                .authorization
                .unwrap_or_default();
            print_authorization(&a);
        }
        AuthorizationCommand::Renew {
            id,
            until,
            years,
            pricing,
        } => {
            let mut client = conn.connect().await?;
            let until_ms = match (until.as_deref(), years) {
                (Some(u), _) => parse_date(u)?,
                (None, Some(_)) => {
                    let old = client
                        .governance
                        .get_authorization(pb::GetAuthorizationRequest {
                            authorization_id: id.clone(),
                        })
                        .await?
                        .into_inner()
                        .authorization
                        .unwrap_or_default();
                    let from = old
                        .valid_until_ms
                        .max(chrono::Utc::now().timestamp_millis());
                    term_end(None, years, from)?
                }
                (None, None) => bail!("give --until YYYY-MM-DD or --years N"),
            };
            let a = client
                .governance
                .renew_authorization(pb::RenewAuthorizationRequest {
                    authorization_id: id,
                    valid_until_ms: until_ms,
                    pricing_terms: pricing.unwrap_or_default(),
                })
                .await?
                .into_inner()
                .authorization
                .unwrap_or_default();
            print_authorization(&a);
        }
        AuthorizationCommand::AddScope {
            id,
            datasets,
            categories: cats,
        } => {
            let a = conn
                .connect()
                .await?
                .governance
                .amend_authorization_scope(pb::AmendAuthorizationScopeRequest {
                    authorization_id: id,
                    add_dataset_ids: datasets,
                    add_categories: categories(&cats)?,
                })
                .await?
                .into_inner()
                .authorization
                .unwrap_or_default();
            print_authorization(&a);
        }
    }
    Ok(())
}

fn print_plan(p: &pb::EmergencyPlan) {
    println!("emergency plan of authorization {}", p.authorization_id);
    println!("  summary:    {}", p.summary);
    println!("  contact:    {}", p.contact);
    for (i, action) in p.actions.iter().enumerate() {
        println!("  action {}:   {action}", i + 1);
    }
    println!(
        "  updated:    {} by {}; last drill: {}",
        date(p.updated_at_ms),
        p.updated_by,
        date(p.last_drill_at_ms)
    );
}

pub async fn run_plan(command: EmergencyPlanCommand, conn: &Conn) -> Result<()> {
    let plan = match command {
        EmergencyPlanCommand::Set {
            id,
            summary,
            contact,
            actions,
        } => conn
            .connect()
            .await?
            .governance
            .set_emergency_plan(pb::SetEmergencyPlanRequest {
                authorization_id: id,
                summary,
                contact,
                actions,
            })
            .await?
            .into_inner(),
        EmergencyPlanCommand::Show { id } => conn
            .connect()
            .await?
            .governance
            .get_emergency_plan(pb::GetEmergencyPlanRequest {
                authorization_id: id,
            })
            .await?
            .into_inner(),
    };
    print_plan(&plan.plan.unwrap_or_default());
    Ok(())
}

fn print_qualification(q: &pb::Qualification) {
    let p = q.principal.clone().unwrap_or_default();
    println!("{}  {} ({})", p.id, p.real_name, p.organisation);
    println!(
        "  ID number:  {}",
        if q.id_number_masked.is_empty() {
            "not registered"
        } else {
            &q.id_number_masked
        }
    );
    println!(
        "  training:   {} → {}",
        date(q.training_passed_ms),
        date(q.training_valid_until_ms)
    );
    println!(
        "  NDA:        {} → {}",
        date(q.nda_signed_ms),
        date(q.nda_valid_until_ms)
    );
    let state = match (q.required, q.qualified) {
        (_, false) => format!("NOT QUALIFIED: {}", q.problem),
        (true, true) => "qualified".to_owned(),
        (false, true) => "not required for this role".to_owned(),
    };
    println!("  status:     {state}");
    for c in &q.certificates {
        println!(
            "  certificate {} valid until {}{}",
            c.fingerprint,
            date(c.not_after_ms),
            if c.revoked {
                format!(", REVOKED {} ({})", date(c.revoked_at_ms), c.revoked_reason)
            } else {
                String::new()
            }
        );
    }
}

pub async fn run_principal(command: PrincipalGovernanceCommand, conn: &Conn) -> Result<()> {
    match command {
        PrincipalGovernanceCommand::Qualify {
            id,
            id_number,
            training_passed,
            training_until,
            nda_signed,
            nda_until,
        } => {
            let ms = |d: Option<String>| d.as_deref().map(parse_date).transpose();
            let q = conn
                .connect()
                .await?
                .governance
                .qualify_principal(pb::QualifyPrincipalRequest {
                    principal_id: id,
                    id_number: id_number.unwrap_or_default(),
                    training_passed_ms: ms(training_passed)?.unwrap_or(0),
                    training_valid_until_ms: ms(training_until)?.unwrap_or(0),
                    nda_signed_ms: ms(nda_signed)?.unwrap_or(0),
                    nda_valid_until_ms: ms(nda_until)?.unwrap_or(0),
                })
                .await?
                .into_inner();
            print_qualification(&q.qualification.unwrap_or_default());
        }
        PrincipalGovernanceCommand::Qualification { id } => {
            let q = conn
                .connect()
                .await?
                .governance
                .get_qualification(pb::GetQualificationRequest { principal_id: id })
                .await?
                .into_inner();
            print_qualification(&q.qualification.unwrap_or_default());
        }
        PrincipalGovernanceCommand::RevokeCert {
            id,
            fingerprint,
            reason,
            disable,
        } => {
            let r = conn
                .connect()
                .await?
                .governance
                .revoke_certificates(pb::RevokeCertificatesRequest {
                    principal_id: id.clone(),
                    fingerprint: fingerprint.unwrap_or_default(),
                    reason,
                    disable_principal: disable,
                })
                .await?
                .into_inner();
            for f in &r.revoked_fingerprints {
                println!("revoked certificate {f}");
            }
            if r.principal_disabled {
                println!("principal {id} is disabled: no certificate can be issued to it");
            }
        }
    }
    Ok(())
}
