//! The `shuyu` binary: the server-side programs (`init`, `serve`, `audit verify`), the
//! worker the server starts, the demo (`quickstart`), offline checks (`export verify`,
//! `audit verify-checkpoint`) and client commands for every role. This file parses the
//! arguments once and dispatches:
//!
//! - `server` — `init`, `serve` and the checks that open a data dir (links `shuyu-server`);
//! - `worker` — `shuyu worker` and its OS confinement (`worker::sandbox`);
//! - `demo` — the synthetic data and `quickstart` (a server and its clients in one process);
//! - `client` — every client command, reaching the server only through `shuyu-client`.

mod client;
mod demo;
mod server;
mod worker;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// Shuyu (数域): a secure data-processing runtime for authorised public-data operation.
#[derive(Debug, Parser)]
#[command(name = "shuyu", version)]
struct Args {
    /// Whom client commands act as and which server they reach.
    #[command(flatten)]
    conn: client::Conn,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a new domain: master key, development CA, the first admin's certificate.
    Init(server::InitOptions),
    /// Serve a domain over gRPC (TLS 1.3, client certificates required).
    Serve(server::ServeOptions),
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
        #[command(flatten)]
        metadata: server::MetadataArgs,
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
    Client(client::cli::ClientCommand),
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
    Client(client::cli::ExportClientCommand),
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
    Client(client::cli::AuditClientCommand),
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
    if matches!(args.command, Command::Serve(_) | Command::Quickstart { .. }) {
        // The server holds unwrapped keys: no core dumps, no ptrace by same-user processes.
        worker::sandbox::protect_server_process();
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
    let Args { conn, command } = args;
    match command {
        Command::Init(options) => server::init(options),
        Command::Serve(options) => server::serve(options).await,
        Command::Quickstart {
            data_dir,
            rows,
            seed,
            metadata,
        } => {
            demo::quickstart::run(data_dir, rows, seed, &metadata.config()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Export(ExportCommand::Verify { file, public_key }) => {
            verify_package(&file, public_key)
        }
        Command::Export(ExportCommand::Client(command)) => {
            client::cli::run_export(command, &conn).await
        }
        Command::Audit(AuditCommand::Verify { data_dir }) => server::audit_verify(&data_dir),
        Command::Audit(AuditCommand::ShowError { data_dir, error_id }) => {
            server::show_error(&data_dir, &error_id)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit(AuditCommand::Client(command)) => {
            client::cli::run_audit(command, &conn).await
        }
        Command::Client(command) => client::cli::run(command, &conn).await,
        Command::Worker(_) => unreachable!("handled before the runtime starts"),
    }
}

/// `shuyu export verify`: a package's signature and hashes, offline, under the trusted key
/// (hex, or a file holding it) or the key its manifest names.
fn verify_package(
    file: &std::path::Path,
    public_key: Option<String>,
) -> Result<std::process::ExitCode> {
    use std::process::ExitCode;
    let package = std::fs::read(file)?;
    let key = match public_key {
        Some(k) if std::path::Path::new(&k).exists() => {
            Some(std::fs::read_to_string(&k)?.trim().to_owned())
        }
        other => other,
    };
    match shuyu_verify::package::verify(&package, key.as_deref()) {
        Ok(verified) => {
            client::render::print_manifest(&verified.manifest);
            println!("OK: signature and hashes verify");
            Ok(ExitCode::SUCCESS)
        }
        Err(problem) => {
            eprintln!("FAILED: {problem}");
            Ok(ExitCode::from(2))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn the_connection_flags_are_taken_once_after_any_command() {
        for argv in [
            &[
                "shuyu",
                "tenant",
                "list",
                "--as",
                "/c",
                "--server",
                "https://h:1",
            ][..],
            &[
                "shuyu",
                "export",
                "review",
                "exp_1",
                "--server",
                "https://h:1",
                "--as",
                "/c",
            ],
            &[
                "shuyu",
                "audit",
                "tail",
                "--as",
                "/c",
                "--server",
                "https://h:1",
            ],
        ] {
            let args = Args::try_parse_from(argv).unwrap();
            assert_eq!(
                args.conn.creds.as_deref(),
                Some(Path::new("/c")),
                "{argv:?}"
            );
            assert_eq!(args.conn.server, "https://h:1", "{argv:?}");
        }
        // Offline and server-side commands need neither.
        let args = Args::try_parse_from(["shuyu", "export", "verify", "p.tar"]).unwrap();
        assert!(matches!(
            args.command,
            Command::Export(ExportCommand::Verify { .. })
        ));
    }
}
