//! Oversight commands: `alerts list|ack|scan`, `report operation|disclosure`, and the audit
//! checkpoint commands — `audit checkpoint`, `audit prove`, `audit purge` over the wire and
//! the offline `audit verify-checkpoint` (signature, and consistency with an older one).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use shuyu_client::v1 as pb;
use shuyu_verify::checkpoint::{self, Checkpoint, Hash};

use super::Conn;

#[derive(Debug, Subcommand)]
pub enum AlertsCommand {
    /// Alerts raised by the monitor, newest first (admins, auditors).
    List {
        /// Acknowledged ones too.
        #[arg(long)]
        all: bool,
    },
    /// Acknowledge an alert (admins).
    Ack { id: i64 },
    /// Run the monitor now (admins); prints the alerts it raised.
    Scan {},
}

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// A tenant's operation report (R34): storage, processing, analysis, exports, security
    /// events, fusion, products and revenue (admins, auditors).
    Operation(ReportArgs),
    /// A tenant's public disclosure summary (R36): datasets, scenarios, jobs, products and
    /// kinds of recipients, nothing confidential (admins, auditors).
    Disclosure(ReportArgs),
    /// Record a tenant's annual evaluation for a past year against its operation report
    /// (admins): pass, fix (deficiencies to fix within 30 days) or fail. The tenant is told.
    Evaluate {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        year: i32,
        /// pass, fix or fail.
        #[arg(long)]
        outcome: String,
        /// What was found (required for fix and fail).
        #[arg(long, default_value = "")]
        note: String,
    },
}

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    #[arg(long)]
    tenant: String,
    /// First day, YYYY-MM-DD (UTC); with --to. Default: the last calendar year.
    #[arg(long)]
    from: Option<String>,
    /// Day after the last, YYYY-MM-DD (UTC).
    #[arg(long)]
    to: Option<String>,
    /// md or html.
    #[arg(long, default_value = "md")]
    format: String,
    /// Write it here instead of printing it.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum AuditOversightCommand {
    /// Fetch a signed checkpoint of the audit trail (admins, auditors); with --since, also
    /// the consistency proof from that older checkpoint.
    Checkpoint {
        /// Write the signed note here (default: print it).
        #[arg(long)]
        out: Option<PathBuf>,
        /// An older checkpoint you hold.
        #[arg(long, requires = "proof_out")]
        since: Option<PathBuf>,
        /// Where to write the consistency proof.
        #[arg(long)]
        proof_out: Option<PathBuf>,
    },
    /// Offline: verify a checkpoint's signature with the domain's published key and, with
    /// --older and --proof, that it extends the older checkpoint (the trail was not rewritten).
    VerifyCheckpoint {
        file: PathBuf,
        /// The domain's signing key: hex, or a file holding it (domain-signing.pub).
        #[arg(long)]
        public_key: String,
        #[arg(long, requires = "proof")]
        older: Option<PathBuf>,
        #[arg(long)]
        proof: Option<PathBuf>,
    },
    /// Prove that audit record SEQ is in a checkpoint you hold, and verify the proof.
    Prove {
        seq: u64,
        #[arg(long)]
        checkpoint: PathBuf,
        #[arg(long)]
        public_key: String,
    },
    /// Redact the audit records past their class's retention (admins).
    Purge {},
}

fn day_ms(text: &Option<String>, what: &str) -> Result<i64> {
    match text {
        None => Ok(0),
        Some(text) => {
            let date = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .with_context(|| format!("--{what} must be YYYY-MM-DD"))?;
            Ok(date
                .and_hms_opt(0, 0, 0)
                .map(|t| t.and_utc().timestamp_millis())
                .unwrap_or_default())
        }
    }
}

fn print_alert(a: &pb::Alert) {
    let at = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_default()
    };
    let state = if a.acked_at_ms == 0 {
        "open".to_owned()
    } else {
        format!("acked by {}", a.acked_by)
    };
    println!(
        "#{} {} {} {} tenant={} count={} first={} last={} [{}] {}",
        a.id,
        a.severity,
        a.kind,
        a.subject,
        if a.tenant_id.is_empty() {
            "-"
        } else {
            &a.tenant_id
        },
        a.count,
        at(a.first_seen_ms),
        at(a.last_seen_ms),
        state,
        a.evidence_json
    );
}

pub async fn run_alerts(command: AlertsCommand, conn: &Conn) -> Result<ExitCode> {
    match command {
        AlertsCommand::List { all } => {
            let list = conn
                .connect()
                .await?
                .oversight
                .list_alerts(pb::ListAlertsRequest { include_acked: all })
                .await?
                .into_inner();
            if list.alerts.is_empty() {
                println!("no alerts");
            }
            list.alerts.iter().for_each(print_alert);
        }
        AlertsCommand::Ack { id } => {
            let alert = conn
                .connect()
                .await?
                .oversight
                .ack_alert(pb::AckAlertRequest { alert_id: id })
                .await?
                .into_inner()
                .alert
                .context("empty response")?;
            print_alert(&alert);
        }
        AlertsCommand::Scan {} => {
            let scan = conn
                .connect()
                .await?
                .oversight
                .scan_alerts(pb::ScanAlertsRequest {})
                .await?
                .into_inner();
            println!(
                "{} alert(s) raised, {} open alert(s) updated",
                scan.raised.len(),
                scan.n_updated
            );
            scan.raised.iter().for_each(print_alert);
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn run_report(command: ReportCommand, conn: &Conn) -> Result<ExitCode> {
    let (public, args) = match command {
        ReportCommand::Operation(args) => (false, args),
        ReportCommand::Disclosure(args) => (true, args),
        ReportCommand::Evaluate {
            tenant,
            year,
            outcome,
            note,
        } => {
            let outcome = match outcome.as_str() {
                "pass" => pb::EvaluationOutcome::Pass,
                "fix" | "fix_in_30_days" => pb::EvaluationOutcome::FixIn30Days,
                "fail" => pb::EvaluationOutcome::Fail,
                other => bail!("unknown outcome '{other}': pass, fix or fail"),
            };
            let e = conn
                .connect()
                .await?
                .oversight
                .record_evaluation(pb::RecordEvaluationRequest {
                    tenant_id: tenant,
                    year,
                    outcome: outcome as i32,
                    note,
                })
                .await?
                .into_inner()
                .evaluation
                .context("empty response")?;
            println!(
                "recorded: tenant {} {} {}{} (report sha256 {})",
                e.tenant_id,
                e.year,
                outcome.as_str_name(),
                if e.fix_due_ms > 0 {
                    format!(
                        ", fixes due {}",
                        chrono::DateTime::from_timestamp_millis(e.fix_due_ms)
                            .map(|t| t.format("%Y-%m-%d").to_string())
                            .unwrap_or_default()
                    )
                } else {
                    String::new()
                },
                e.report_sha256
            );
            return Ok(ExitCode::SUCCESS);
        }
    };
    let format = match args.format.as_str() {
        "md" | "markdown" => pb::ReportFormat::Markdown,
        "html" => pb::ReportFormat::Html,
        other => bail!("unknown format '{other}': md or html"),
    };
    let (from_ms, to_ms) = (day_ms(&args.from, "from")?, day_ms(&args.to, "to")?);
    if (from_ms == 0) != (to_ms == 0) {
        bail!("give both --from and --to, or neither (the last calendar year)");
    }
    let request = pb::ReportRequest {
        tenant_id: args.tenant,
        from_ms,
        to_ms,
        format: format as i32,
    };
    let mut client = conn.connect().await?;
    let report = if public {
        client.oversight.disclosure_summary(request).await?
    } else {
        client.oversight.operation_report(request).await?
    }
    .into_inner();
    match args.out {
        Some(path) => {
            std::fs::write(&path, &report.content)
                .with_context(|| format!("writing {}", path.display()))?;
            println!("wrote {}", path.display());
        }
        None => print!("{}", report.content),
    }
    Ok(ExitCode::SUCCESS)
}

fn read_key(public_key: &str) -> Result<Vec<u8>> {
    let text = if Path::new(public_key).exists() {
        std::fs::read_to_string(public_key)?.trim().to_owned()
    } else {
        public_key.trim().to_owned()
    };
    hex::decode(&text).context("the public key is not hex")
}

/// The tree size a checkpoint claims (before its signature is checked: only to ask for a
/// proof; verification checks everything).
fn claimed_size(note: &str) -> Result<u64> {
    note.lines()
        .nth(1)
        .and_then(|l| l.parse().ok())
        .context("not a checkpoint: no tree size on its second line")
}

/// The root hash a checkpoint claims (unverified, as [`claimed_size`]).
fn claimed_root(note: &str) -> Result<Hash> {
    use base64::Engine as _;
    note.lines()
        .nth(2)
        .and_then(|l| base64::engine::general_purpose::STANDARD.decode(l).ok())
        .and_then(|b| Hash::try_from(b.as_slice()).ok())
        .context("not a checkpoint: no root hash on its third line")
}

fn hashes(list: &[Vec<u8>]) -> Result<Vec<Hash>> {
    list.iter()
        .map(|h| Hash::try_from(h.as_slice()).context("a proof hash is not 32 bytes"))
        .collect()
}

pub async fn run_audit(command: AuditOversightCommand, conn: &Conn) -> Result<ExitCode> {
    match command {
        AuditOversightCommand::Checkpoint {
            out,
            since,
            proof_out,
        } => {
            let old_size = match &since {
                Some(path) => claimed_size(&std::fs::read_to_string(path)?)?,
                None => 0,
            };
            let response = match conn
                .connect()
                .await?
                .oversight
                .audit_checkpoint(pb::AuditCheckpointRequest {
                    consistency_from: old_size,
                })
                .await
            {
                Ok(response) => response.into_inner(),
                // The server signs nothing over a trail that does not verify.
                Err(status) if status.code() == tonic::Code::FailedPrecondition => {
                    eprintln!(
                        "FAILED: the server signs no checkpoint: {}{}",
                        status.message(),
                        if since.is_some() {
                            " — the trail was rewritten"
                        } else {
                            ""
                        }
                    );
                    return Ok(ExitCode::from(2));
                }
                Err(status) => return Err(status.into()),
            };
            match out {
                Some(path) => {
                    std::fs::write(&path, &response.checkpoint)?;
                    println!(
                        "wrote checkpoint of {} records to {}",
                        response.tree_size,
                        path.display()
                    );
                }
                None => print!("{}", response.checkpoint),
            }
            if let Some(path) = proof_out {
                let proof = hashes(&response.consistency_proof)?;
                std::fs::write(
                    &path,
                    checkpoint::proof_to_text(old_size, response.tree_size, &proof),
                )?;
                println!(
                    "wrote consistency proof {old_size} -> {} to {}",
                    response.tree_size,
                    path.display()
                );
            }
            // The earlier checkpoint's root against the new one (signatures are checked by
            // `audit verify-checkpoint`): a trail cut down or rewritten is said here already.
            if let Some(since) = &since {
                let old_root = claimed_root(&std::fs::read_to_string(since)?)?;
                let new_root = Hash::try_from(response.root_hash.as_slice())
                    .context("the server's root hash is not 32 bytes")?;
                let proof = hashes(&response.consistency_proof)?;
                if !checkpoint::verify_consistency(
                    old_size,
                    response.tree_size,
                    &old_root,
                    &new_root,
                    &proof,
                ) {
                    eprintln!(
                        "FAILED: the trail of {} records is not an extension of the one of {old_size} records in {}: it was rewritten{}",
                        response.tree_size,
                        since.display(),
                        if response.tree_size < old_size {
                            " (cut down)"
                        } else {
                            ""
                        }
                    );
                    return Ok(ExitCode::from(2));
                }
                println!(
                    "OK: consistent with {} ({old_size} records)",
                    since.display()
                );
            }
        }
        AuditOversightCommand::VerifyCheckpoint {
            file,
            public_key,
            older,
            proof,
        } => {
            let key = read_key(&public_key)?;
            let new = match Checkpoint::open(&std::fs::read_to_string(&file)?, &key) {
                Ok(c) => c,
                Err(problem) => {
                    eprintln!("FAILED: {}: {problem}", file.display());
                    return Ok(ExitCode::from(2));
                }
            };
            println!(
                "OK: {} is signed by the domain: {} records, root {}",
                file.display(),
                new.tree_size,
                hex::encode(new.root_hash)
            );
            if let (Some(older), Some(proof)) = (older, proof) {
                let old = match Checkpoint::open(&std::fs::read_to_string(&older)?, &key) {
                    Ok(c) => c,
                    Err(problem) => {
                        eprintln!("FAILED: {}: {problem}", older.display());
                        return Ok(ExitCode::from(2));
                    }
                };
                let (from, to, hashes) =
                    checkpoint::proof_from_text(&std::fs::read_to_string(&proof)?)?;
                if let Err(problem) = checkpoint::verify_extension(&old, &new, (from, to, &hashes))
                {
                    eprintln!("FAILED: {problem}");
                    return Ok(ExitCode::from(2));
                }
                println!(
                    "OK: consistent with {} ({} records): the earlier trail was not rewritten",
                    older.display(),
                    old.tree_size
                );
            }
        }
        AuditOversightCommand::Prove {
            seq,
            checkpoint: path,
            public_key,
        } => {
            let key = read_key(&public_key)?;
            let cp = Checkpoint::open(&std::fs::read_to_string(&path)?, &key)
                .map_err(anyhow::Error::msg)?;
            let response = conn
                .connect()
                .await?
                .oversight
                .audit_inclusion_proof(pb::AuditInclusionProofRequest {
                    seq,
                    tree_size: cp.tree_size,
                })
                .await?
                .into_inner();
            let leaf = checkpoint::leaf_hash(&response.record_hash);
            if checkpoint::verify_inclusion(
                response.leaf_index,
                cp.tree_size,
                &leaf,
                &hashes(&response.proof)?,
                &cp.root_hash,
            ) {
                println!(
                    "OK: record {seq} (hash {}) is in the checkpoint of {} records",
                    hex::encode(&response.record_hash),
                    cp.tree_size
                );
            } else {
                eprintln!("FAILED: record {seq} is not in the checkpoint");
                return Ok(ExitCode::from(2));
            }
        }
        AuditOversightCommand::Purge {} => {
            let response = conn
                .connect()
                .await?
                .oversight
                .purge_audit(pb::PurgeAuditRequest {})
                .await?
                .into_inner();
            println!(
                "redacted {} audit record(s) past their retention",
                response.n_redacted
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
