//! `shuyu tenant suspend|resume|status|stop|release|drill|drills|terminate|exit-report|
//! lift-freeze`: the admin's commands over a tenant's lifecycle (R26, R27, R28, R32) and
//! the freeze that too many failed production jobs cause.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use shuyu_client::v1 as pb;

use super::Conn;
use super::render;

#[derive(Debug, Subcommand)]
pub enum LifecycleCommand {
    /// Suspend a tenant (R26): its people are refused every call, its jobs are cancelled,
    /// its exports frozen. On a suspended tenant, amends the reason or the deadline.
    Suspend {
        id: String,
        /// Why (told to the tenant's people on every refused call).
        #[arg(long)]
        reason: String,
        /// Days to fix the violation (default: the server's `lifecycle.fix_days`, 30).
        #[arg(long)]
        fix_days: Option<u32>,
        /// An explicit fix-by deadline: RFC 3339 (`2026-12-01T00:00:00Z`) or a date
        /// (`2026-12-01`, midnight UTC).
        #[arg(long, conflicts_with = "fix_days")]
        fix_by: Option<String>,
    },
    /// Resume a suspended tenant: access reopens, frozen exports resume where they were.
    Resume {
        id: String,
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Lift the freeze of a tenant's production job submission that too many failed
    /// production jobs caused (`[jobs] failed_production_allowance`), after looking at them.
    LiftFreeze {
        id: String,
        /// What you found (required; audited).
        #[arg(long)]
        note: String,
    },
    /// Show a tenant's lifecycle state (admins and auditors).
    Status { id: String },
    /// Emergency stop (R32): kill the tenant's running jobs, cancel its queued ones, freeze
    /// its exports; its people keep read access.
    Stop {
        id: String,
        #[arg(long)]
        reason: String,
    },
    /// Release an emergency stop.
    Release {
        id: String,
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Drill the emergency stop on the tenant's current work: stop, measure the time to
    /// halt, record the drill, release.
    Drill {
        id: String,
        /// The emergency plan the drill exercises.
        #[arg(long, default_value = "")]
        plan: String,
        #[arg(long, default_value = "")]
        note: String,
    },
    /// List recorded drills (of one tenant, or all).
    Drills { id: Option<String> },
    /// Terminate a tenant for good (R27, R28): keys destroyed, files deleted, audit kept,
    /// exit report signed. Cannot be undone.
    Terminate {
        id: String,
        #[arg(long)]
        reason: String,
        /// Repeat the tenant id to confirm.
        #[arg(long)]
        confirm: String,
    },
    /// Show a terminated tenant's exit report and check its signature.
    ExitReport {
        id: String,
        /// Print the JSON instead of the text.
        #[arg(long)]
        json: bool,
        /// Write the JSON report and its signature (`<file>.sig`, hex) here.
        #[arg(long)]
        out: Option<PathBuf>,
        /// The domain's signing public key (hex, or a file holding it) to check against;
        /// without it the key the report names is used.
        #[arg(long)]
        public_key: Option<String>,
    },
}

fn parse_fix_by(text: &str) -> Result<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp_millis());
    }
    let date = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .with_context(|| format!("--fix-by {text:?}: expected RFC 3339 or YYYY-MM-DD"))?;
    Ok(date
        .and_hms_opt(0, 0, 0)
        .context("midnight")?
        .and_utc()
        .timestamp_millis())
}

fn print_status(response: pb::TenantStatusResponse) {
    let s = response.status.unwrap_or_default();
    println!("tenant {} ({}): {}", s.tenant_id, s.tenant_name, s.state);
    if s.suspended_at_ms > 0 {
        println!(
            "  suspended since {} by {}: {}",
            render::time(s.suspended_at_ms),
            s.suspended_by,
            s.suspend_reason
        );
        println!(
            "  fix by {}{}",
            render::time(s.fix_by_ms),
            if s.overdue {
                "  (OVERDUE: due for termination)"
            } else {
                ""
            }
        );
    }
    if s.stopped_at_ms > 0 {
        println!(
            "  emergency stop since {} by {}: {}",
            render::time(s.stopped_at_ms),
            s.stopped_by,
            s.stop_reason
        );
    }
    if s.production_frozen_at_ms > 0 {
        println!(
            "  production submission frozen: {}",
            s.production_freeze_reason
        );
    }
    if s.terminated_at_ms > 0 {
        println!(
            "  terminated {}: {}",
            render::time(s.terminated_at_ms),
            s.terminate_reason
        );
    }
    println!(
        "  jobs queued or running: {}; exports frozen: {}",
        s.jobs_unfinished, s.exports_frozen
    );
    if !response.jobs_stopped.is_empty() {
        println!("  jobs stopped: {}", response.jobs_stopped.join(", "));
    }
}

fn print_drill(d: &pb::Drill) {
    println!(
        "{}  tenant {}  plan {}  {}  halt {} ms  jobs stopped {}  exports frozen {}  {}",
        d.id,
        d.tenant_id,
        if d.plan_id.is_empty() {
            "-"
        } else {
            &d.plan_id
        },
        render::time(d.started_at_ms),
        d.halt_ms,
        d.jobs_stopped.len(),
        d.exports_frozen,
        d.outcome
    );
}

/// Checks an exit report's signature against `trusted` (hex) or the key it names.
fn check_signature(report: &pb::ExitReport, trusted: Option<&str>) -> Result<()> {
    let key_hex = trusted.unwrap_or(&report.public_key_hex);
    let key = hex::decode(key_hex.trim()).context("the public key is not hex")?;
    let signature = hex::decode(&report.signature_hex).context("the signature is not hex")?;
    shuyu_vault::verify_signature(&key, report.report_json.as_bytes(), &signature)
        .map_err(|_| anyhow::anyhow!("the exit report's signature does not verify"))
}

pub async fn run(command: LifecycleCommand, conn: &Conn) -> Result<()> {
    match command {
        LifecycleCommand::Suspend {
            id,
            reason,
            fix_days,
            fix_by,
        } => {
            let fix_by_ms = fix_by.as_deref().map(parse_fix_by).transpose()?;
            let response = conn
                .connect()
                .await?
                .lifecycle
                .suspend_tenant(pb::SuspendTenantRequest {
                    tenant_id: id,
                    reason,
                    fix_days: fix_days.unwrap_or(0),
                    fix_by_ms: fix_by_ms.unwrap_or(0),
                })
                .await?
                .into_inner();
            print_status(response);
        }
        LifecycleCommand::Resume { id, note } => {
            let response = conn
                .connect()
                .await?
                .lifecycle
                .resume_tenant(pb::ResumeTenantRequest {
                    tenant_id: id,
                    note,
                })
                .await?
                .into_inner();
            print_status(response);
        }
        LifecycleCommand::LiftFreeze { id, note } => {
            let response = conn
                .connect()
                .await?
                .lifecycle
                .lift_production_freeze(pb::LiftProductionFreezeRequest {
                    tenant_id: id,
                    note,
                })
                .await?
                .into_inner();
            print_status(response);
        }
        LifecycleCommand::Status { id } => {
            let response = conn
                .connect()
                .await?
                .lifecycle
                .get_tenant_status(pb::GetTenantStatusRequest { tenant_id: id })
                .await?
                .into_inner();
            print_status(response);
        }
        LifecycleCommand::Stop { id, reason } => {
            let response = conn
                .connect()
                .await?
                .lifecycle
                .emergency_stop(pb::EmergencyStopRequest {
                    tenant_id: id,
                    reason,
                })
                .await?
                .into_inner();
            print_status(response);
        }
        LifecycleCommand::Release { id, note } => {
            let response = conn
                .connect()
                .await?
                .lifecycle
                .release_stop(pb::ReleaseStopRequest {
                    tenant_id: id,
                    note,
                })
                .await?
                .into_inner();
            print_status(response);
        }
        LifecycleCommand::Drill { id, plan, note } => {
            let drill = conn
                .connect()
                .await?
                .lifecycle
                .run_drill(pb::RunDrillRequest {
                    tenant_id: id,
                    plan_id: plan,
                    note,
                })
                .await?
                .into_inner()
                .drill
                .unwrap_or_default();
            print_drill(&drill);
        }
        LifecycleCommand::Drills { id } => {
            let drills = conn
                .connect()
                .await?
                .lifecycle
                .list_drills(pb::ListDrillsRequest {
                    tenant_id: id.unwrap_or_default(),
                })
                .await?
                .into_inner()
                .drills;
            if drills.is_empty() {
                println!("no drills");
            }
            for d in &drills {
                print_drill(d);
            }
        }
        LifecycleCommand::Terminate {
            id,
            reason,
            confirm,
        } => {
            if confirm != id {
                bail!("--confirm must repeat the tenant id: termination cannot be undone");
            }
            let report = conn
                .connect()
                .await?
                .lifecycle
                .terminate_tenant(pb::TerminateTenantRequest {
                    tenant_id: id,
                    reason,
                })
                .await?
                .into_inner()
                .report
                .unwrap_or_default();
            print!("{}", report.report_text);
        }
        LifecycleCommand::ExitReport {
            id,
            json,
            out,
            public_key,
        } => {
            let report = conn
                .connect()
                .await?
                .lifecycle
                .get_exit_report(pb::GetExitReportRequest { tenant_id: id })
                .await?
                .into_inner()
                .report
                .unwrap_or_default();
            let trusted = match public_key {
                Some(k) if std::path::Path::new(&k).exists() => {
                    Some(std::fs::read_to_string(&k)?.trim().to_owned())
                }
                other => other,
            };
            check_signature(&report, trusted.as_deref())?;
            if let Some(path) = out {
                std::fs::write(&path, &report.report_json)?;
                std::fs::write(path.with_extension("json.sig"), &report.signature_hex)?;
            }
            if json {
                println!("{}", report.report_json);
            } else {
                print!("{}", report.report_text);
            }
            println!("OK: the exit report's signature verifies");
        }
    }
    Ok(())
}
