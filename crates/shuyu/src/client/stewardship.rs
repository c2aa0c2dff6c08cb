//! Stewardship commands: imports of a tenant's own data (R17), data-quality tickets (R18),
//! risk stops (R19).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use shuyu_client::v1 as pb;

use super::Conn;
use super::cli::{format_from, parse_column};
use super::render;

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Apply to bring your tenant's own (social) data into the domain (engineers).
    Apply {
        /// The dataset name it will have (a lowercase SQL identifier).
        #[arg(long)]
        name: String,
        /// Where the data comes from.
        #[arg(long)]
        source: String,
        /// The legal basis for bringing it in (consent, contract, statute…).
        #[arg(long)]
        legal_basis: String,
        /// Column declaration, repeated in file order: NAME:TYPE:CLASSIFICATION[:MASKING].
        #[arg(long = "column", required = true)]
        columns: Vec<String>,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Approve an import application (admins).
    Approve {
        id: String,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Reject an import application, with the reason (admins).
    Reject {
        id: String,
        #[arg(long)]
        comment: String,
    },
    /// Import applications (engineers: their tenant's; admins and auditors: all).
    List {},
    /// Upload the data of an approved application; it becomes a dataset only your tenant
    /// can use, encrypted under your tenant's key.
    Upload {
        id: String,
        #[arg(long)]
        file: PathBuf,
        /// csv or parquet.
        #[arg(long, default_value = "csv")]
        format: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum QualityCommand {
    /// File a data-quality ticket against a dataset (engineers). Describe the defect
    /// without quoting values.
    File {
        #[arg(long)]
        dataset: String,
        #[arg(long, default_value = "")]
        column: String,
        #[arg(long)]
        description: String,
    },
    /// Tickets you may see, with their deadlines.
    List {
        /// Only open tickets.
        #[arg(long)]
        open: bool,
    },
    /// Answer a ticket as the dataset's steward: fixed, or declined with the reason.
    Resolve {
        id: String,
        /// The data was not defective (the resolution says why).
        #[arg(long)]
        declined: bool,
        #[arg(long)]
        resolution: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum RiskStopCommand {
    /// Flag a dataset or scenario as dangerous (engineers, stewards): its jobs stop at
    /// once and new ones are refused until an admin lifts the stop.
    Raise {
        #[arg(
            long,
            conflicts_with = "scenario",
            required_unless_present = "scenario"
        )]
        dataset: Option<String>,
        #[arg(long)]
        scenario: Option<String>,
        #[arg(long)]
        reason: String,
    },
    /// Risk stops you may see.
    List {
        /// Only those in force.
        #[arg(long)]
        active: bool,
    },
    /// Lift a risk stop after review (admins).
    Lift {
        id: String,
        #[arg(long)]
        comment: String,
    },
}

fn import_status(value: i32) -> &'static str {
    match pb::ImportStatus::try_from(value) {
        Ok(pb::ImportStatus::Pending) => "pending",
        Ok(pb::ImportStatus::Approved) => "approved",
        Ok(pb::ImportStatus::Rejected) => "rejected",
        Ok(pb::ImportStatus::Imported) => "imported",
        _ => "unknown",
    }
}

fn ticket_status(value: i32) -> &'static str {
    match pb::TicketStatus::try_from(value) {
        Ok(pb::TicketStatus::Open) => "open",
        Ok(pb::TicketStatus::Resolved) => "resolved",
        Ok(pb::TicketStatus::Declined) => "declined",
        _ => "unknown",
    }
}

fn print_import(a: &pb::ImportApplication) {
    println!(
        "{}  {:<8}  {}  tenant {}  source: {}  legal basis: {}",
        a.id,
        import_status(a.status),
        a.name,
        a.tenant_id,
        a.source,
        a.legal_basis
    );
    if !a.dataset_id.is_empty() {
        println!("      dataset {}", a.dataset_id);
    }
    if !a.decision_comment.is_empty() {
        println!("      decision: {}", a.decision_comment);
    }
}

fn print_ticket(t: &pb::QualityTicket) {
    println!(
        "{}  {:<8}{}  dataset {}{}  due {}",
        t.id,
        ticket_status(t.status),
        if t.overdue { " OVERDUE" } else { "" },
        t.dataset_id,
        if t.column.is_empty() {
            String::new()
        } else {
            format!(" column {}", t.column)
        },
        render::time(t.due_at_ms)
    );
    println!("      {}", t.description);
    if !t.resolution.is_empty() {
        println!("      answer: {}", t.resolution);
    }
}

fn print_stop(s: &pb::RiskStop) {
    println!(
        "{}  {:<6}  {} {}  raised by {} ({}) at {}  {} job(s) stopped",
        s.id,
        if s.active { "ACTIVE" } else { "lifted" },
        s.target_kind,
        s.target_id,
        s.raised_by,
        s.raised_by_role,
        render::time(s.raised_at_ms),
        s.jobs_stopped.len()
    );
    println!("      reason: {}", s.reason);
    if !s.active {
        println!("      lifted by {}: {}", s.lifted_by, s.lift_comment);
    }
}

pub async fn run_import(command: ImportCommand, conn: &Conn) -> Result<()> {
    match command {
        ImportCommand::Apply {
            name,
            source,
            legal_basis,
            columns,
            description,
        } => {
            let application = conn
                .connect()
                .await?
                .stewardship
                .apply_import(pb::ApplyImportRequest {
                    name,
                    description,
                    source,
                    legal_basis,
                    columns: columns
                        .iter()
                        .map(|c| parse_column(c))
                        .collect::<Result<_>>()?,
                })
                .await?
                .into_inner()
                .application
                .unwrap_or_default();
            print_import(&application);
        }
        ImportCommand::Approve { id, comment } => {
            decide(conn, id, true, comment).await?;
        }
        ImportCommand::Reject { id, comment } => {
            decide(conn, id, false, comment).await?;
        }
        ImportCommand::List {} => {
            let list = conn
                .connect()
                .await?
                .stewardship
                .list_imports(pb::ListImportsRequest {})
                .await?
                .into_inner();
            if list.applications.is_empty() {
                println!("no import applications");
            }
            list.applications.iter().for_each(print_import);
        }
        ImportCommand::Upload { id, file, format } => {
            let data =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let response = conn
                .connect()
                .await?
                .upload_import(&id, format_from(&format)?, data)
                .await?;
            let dataset = response.dataset.unwrap_or_default();
            println!(
                "imported {} rows as dataset {} ({})",
                dataset.n_rows, dataset.id, dataset.name
            );
        }
    }
    Ok(())
}

async fn decide(conn: &Conn, id: String, approve: bool, comment: String) -> Result<()> {
    let application = conn
        .connect()
        .await?
        .stewardship
        .decide_import(pb::DecideImportRequest {
            import_id: id,
            approve,
            comment,
        })
        .await?
        .into_inner()
        .application
        .unwrap_or_default();
    print_import(&application);
    Ok(())
}

pub async fn run_quality(command: QualityCommand, conn: &Conn) -> Result<()> {
    match command {
        QualityCommand::File {
            dataset,
            column,
            description,
        } => {
            let ticket = conn
                .connect()
                .await?
                .stewardship
                .file_quality_ticket(pb::FileQualityTicketRequest {
                    dataset_id: dataset,
                    column,
                    description,
                })
                .await?
                .into_inner()
                .ticket
                .unwrap_or_default();
            print_ticket(&ticket);
        }
        QualityCommand::List { open } => {
            let list = conn
                .connect()
                .await?
                .stewardship
                .list_quality_tickets(pb::ListQualityTicketsRequest { open_only: open })
                .await?
                .into_inner();
            if list.tickets.is_empty() {
                println!("no data-quality tickets");
            }
            list.tickets.iter().for_each(print_ticket);
        }
        QualityCommand::Resolve {
            id,
            declined,
            resolution,
        } => {
            let ticket = conn
                .connect()
                .await?
                .stewardship
                .resolve_quality_ticket(pb::ResolveQualityTicketRequest {
                    ticket_id: id,
                    fixed: !declined,
                    resolution,
                })
                .await?
                .into_inner()
                .ticket
                .unwrap_or_default();
            print_ticket(&ticket);
        }
    }
    Ok(())
}

pub async fn run_risk_stop(command: RiskStopCommand, conn: &Conn) -> Result<()> {
    match command {
        RiskStopCommand::Raise {
            dataset,
            scenario,
            reason,
        } => {
            let (dataset_id, scenario_id) = match (dataset, scenario) {
                (Some(d), None) => (d, String::new()),
                (None, Some(s)) => (String::new(), s),
                _ => bail!("name either --dataset or --scenario"),
            };
            let stop = conn
                .connect()
                .await?
                .stewardship
                .raise_risk_stop(pb::RaiseRiskStopRequest {
                    dataset_id,
                    scenario_id,
                    reason,
                })
                .await?
                .into_inner()
                .stop
                .unwrap_or_default();
            print_stop(&stop);
        }
        RiskStopCommand::List { active } => {
            let list = conn
                .connect()
                .await?
                .stewardship
                .list_risk_stops(pb::ListRiskStopsRequest {
                    active_only: active,
                })
                .await?
                .into_inner();
            if list.stops.is_empty() {
                println!("no risk stops");
            }
            list.stops.iter().for_each(print_stop);
        }
        RiskStopCommand::Lift { id, comment } => {
            let stop = conn
                .connect()
                .await?
                .stewardship
                .lift_risk_stop(pb::LiftRiskStopRequest {
                    stop_id: id,
                    comment,
                })
                .await?
                .into_inner()
                .stop
                .unwrap_or_default();
            print_stop(&stop);
        }
    }
    Ok(())
}
