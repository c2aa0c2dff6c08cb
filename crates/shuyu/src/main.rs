//! The `shuyu` binary: `init`, `serve`, `quickstart`, offline checks (`export verify`,
//! `audit verify`) and client commands for every role.

mod cli;
mod demo;
mod governance;
mod lifecycle;
mod oversight;
mod quickstart;
mod render;
mod sandbox;
mod stewardship_cli;
mod worker;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// Shuyu (数域): a secure data-processing runtime for authorised public-data operation.
#[derive(Debug, Parser)]
#[command(name = "shuyu", version)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a new domain: master key, development CA, the first admin's certificate.
    Init {
        /// The domain's data directory (must not hold a domain yet).
        #[arg(long)]
        data_dir: PathBuf,
        /// The first admin's real name.
        #[arg(long, default_value = "Platform Admin")]
        admin_name: String,
        /// The first admin's organisation.
        #[arg(long, default_value = "Public Data Authority")]
        admin_org: String,
        /// The first admin's resident ID number (real-name registration, R8: stored only as
        /// a keyed hash and a masked form).
        #[arg(long)]
        admin_id_number: String,
        /// Days the first admin's training is valid from today (R9).
        #[arg(long, default_value_t = 365)]
        admin_training_days: u32,
        /// Days the first admin's confidentiality agreement is in force from today.
        #[arg(long, default_value_t = 1095)]
        admin_nda_days: u32,
        /// Where to write the admin's credentials (default: DATA_DIR/credentials/admin).
        #[arg(long)]
        creds_out: Option<PathBuf>,
    },
    /// Serve a domain over gRPC (TLS 1.3, client certificates required).
    Serve {
        /// The domain's data directory.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// A configuration file (see deploy/shuyu.toml); flags override it.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Listen address.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Policy file (default: the built-in policies/default.toml).
        #[arg(long)]
        policy: Option<PathBuf>,
    },
    /// Walk the whole flow on embedded defaults: domain, users, datasets, masked samples, a
    /// job, the review gate, a signed export and audit verification.
    Quickstart {
        /// Keep the domain here (default: a temporary directory, removed afterwards).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Rows per demo dataset.
        #[arg(long, default_value_t = 3000)]
        rows: usize,
        /// Seed of the demo data generator.
        #[arg(long, default_value_t = 20261122)]
        seed: u64,
    },
    /// Offline checks of export packages.
    #[command(subcommand)]
    Export(ExportCommand),
    /// Audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Run one job (started by the server; reads the job on stdin).
    #[command(hide = true)]
    Worker(worker::WorkerOptions),
    /// Client commands (acting as the principal whose credentials `--as` names).
    #[command(flatten)]
    Client(cli::ClientCommand),
}

#[derive(Debug, Subcommand)]
enum ExportCommand {
    /// Verify an export package's signature and hashes offline.
    Verify {
        /// The package file.
        file: PathBuf,
        /// The trusted domain signing key: hex, or a file holding it (domain-signing.pub).
        #[arg(long)]
        public_key: Option<String>,
    },
    /// Client-side export commands.
    #[command(flatten)]
    Client(cli::ExportClientCommand),
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Verify the audit chain of a data dir offline; exits non-zero on any tampering.
    Verify {
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Decrypt the withheld detail of an error (domain operator, on the server host).
    ShowError {
        #[arg(long)]
        data_dir: PathBuf,
        /// The error id shown to the user.
        error_id: String,
    },
    /// Client-side audit commands (auditors).
    #[command(flatten)]
    Client(cli::AuditClientCommand),
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if let Command::Worker(options) = args.command {
        return worker::main(options);
    }
    if matches!(
        args.command,
        Command::Serve { .. } | Command::Quickstart { .. }
    ) {
        // The server holds unwrapped keys: no core dumps, no ptrace by same-user processes.
        sandbox::protect_server_process();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<std::process::ExitCode> {
    use std::process::ExitCode;
    match args.command {
        Command::Init {
            data_dir,
            admin_name,
            admin_org,
            admin_id_number,
            admin_training_days,
            admin_nda_days,
            creds_out,
        } => {
            let creds = creds_out.unwrap_or_else(|| data_dir.join("credentials").join("admin"));
            let qualification = shuyu_server::domain::AdminQualification {
                id_number: admin_id_number,
                training_days: admin_training_days,
                nda_days: admin_nda_days,
            };
            let outcome = shuyu_server::domain::init(
                &data_dir,
                &admin_name,
                &admin_org,
                &qualification,
                &creds,
            )?;
            println!("Created a domain in {}", data_dir.display());
            println!("  admin principal:     {}", outcome.admin.principal_id);
            println!("  admin credentials:   {}", creds.display());
            println!("  export signing key:  {}", outcome.signing_public_key);
            println!(
                "Start it with: shuyu serve --data-dir {}",
                data_dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve {
            data_dir,
            config,
            listen,
            policy,
        } => {
            let mut server_config = match &config {
                Some(path) => {
                    shuyu_server::ServerConfig::from_toml_str(&std::fs::read_to_string(path)?)?
                }
                None => shuyu_server::ServerConfig::new(
                    data_dir
                        .clone()
                        .ok_or_else(|| anyhow::anyhow!("--data-dir or --config is required"))?,
                ),
            };
            if let Some(dir) = data_dir {
                server_config.data_dir = dir;
            }
            if let Some(listen) = listen {
                server_config.listen = listen;
            }
            if policy.is_some() {
                server_config.policy_file = policy;
            }
            let handle = shuyu_server::serve(server_config).await?;
            println!("shuyu serving on https://{} (Ctrl-C to stop)", handle.addr);
            tokio::select! {
                result = tokio::signal::ctrl_c() => { result?; }
            }
            handle.shutdown().await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Quickstart {
            data_dir,
            rows,
            seed,
        } => {
            quickstart::run(data_dir, rows, seed).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Export(ExportCommand::Verify { file, public_key }) => {
            let package = std::fs::read(&file)?;
            let key = match public_key {
                Some(k) if std::path::Path::new(&k).exists() => {
                    Some(std::fs::read_to_string(&k)?.trim().to_owned())
                }
                other => other,
            };
            match shuyu_server::package::verify(&package, key.as_deref()) {
                Ok(verified) => {
                    render::print_manifest(&verified.manifest);
                    println!("OK: signature and hashes verify");
                    Ok(ExitCode::SUCCESS)
                }
                Err(problem) => {
                    eprintln!("FAILED: {problem}");
                    Ok(ExitCode::from(2))
                }
            }
        }
        Command::Export(ExportCommand::Client(command)) => cli::run_export(command).await,
        Command::Audit(AuditCommand::Verify { data_dir }) => {
            let report = audit_verify(&data_dir)?;
            if report.ok {
                println!(
                    "OK: {} audit records verify (head {})",
                    report.n_records, report.head_hash
                );
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!(
                    "FAILED after {} good records: {}",
                    report.n_records,
                    report.problem.unwrap_or_default()
                );
                Ok(ExitCode::from(2))
            }
        }
        Command::Audit(AuditCommand::ShowError { data_dir, error_id }) => {
            show_error(&data_dir, &error_id)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit(AuditCommand::Client(command)) => cli::run_audit(command).await,
        Command::Client(command) => cli::run(command).await,
        Command::Worker(_) => unreachable!("handled before the runtime starts"),
    }
}

/// Opens the data dir's store read-only (it writes nothing, not even its log) and verifies
/// the chain, then the rows bound to it.
fn audit_verify(data_dir: &std::path::Path) -> Result<shuyu_server::audit::VerifyReport> {
    let (store, _) = open_store(data_dir)?;
    let log = store.audit_log().clone();
    let mut report = store.read(|c| log.verify(c))?;
    if report.ok
        && let Some(problem) = store.read(shuyu_server::bindings::verify)?
    {
        report.ok = false;
        report.problem = Some(problem);
    }
    Ok(report)
}

fn open_store(
    data_dir: &std::path::Path,
) -> Result<(shuyu_server::store::Store, shuyu_server::domain::DataDir)> {
    let dir = shuyu_server::domain::DataDir::new(data_dir);
    anyhow::ensure!(
        dir.meta_db().exists(),
        "{} holds no domain",
        data_dir.display()
    );
    let master = shuyu_vault::MasterKey::load_file(&dir.master_key())?;
    let store = shuyu_server::domain::open_store_read_only(
        &dir.meta_db(),
        shuyu_server::audit::AuditLog::new(master.key()),
    )?;
    Ok((store, dir))
}

fn show_error(data_dir: &std::path::Path, error_id: &str) -> Result<()> {
    let (store, _) = open_store(data_dir)?;
    let log = store.audit_log().clone();
    let records = store.read(|c| {
        let mut all = Vec::new();
        let mut after = 0;
        loop {
            let page = shuyu_server::audit::AuditLog::list(c, after, 1000)?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            all.extend(page);
        }
        Ok(all)
    })?;
    let found = records
        .iter()
        .find(|r| r.detail.contains(error_id) && !r.sealed_detail.is_empty())
        .ok_or_else(|| anyhow::anyhow!("no audit record carries error id {error_id}"))?;
    println!(
        "audit record {} ({} by {}):",
        found.seq, found.action, found.principal_id
    );
    println!("{}", log.open_detail(&found.sealed_detail)?);
    Ok(())
}
