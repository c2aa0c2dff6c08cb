//! The server-side programs: `init` (a new domain), `serve`, and the checks that open a
//! data dir on the server host (`audit verify`, `audit show-error`). The only part of the
//! binary, with the demo, that links `shuyu-server`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

/// `shuyu init`.
#[derive(Debug, Args)]
pub struct InitOptions {
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
    #[command(flatten)]
    metadata: MetadataArgs,
}

/// Where a domain keeps its metadata: SQLite in the data dir unless a PostgreSQL is named.
#[derive(Debug, Clone, Default, Args)]
pub struct MetadataArgs {
    /// Keep the domain's metadata in this PostgreSQL database
    /// (`postgresql://user@host:5432/dbname`, or `postgresql:///dbname?host=/socket/dir`)
    /// instead of `meta.db` in the data dir; recorded in the data dir, never with a
    /// password, which comes from SHUYU_METADATA_PASSWORD or --metadata-password-file.
    #[arg(long, value_name = "URL")]
    pub metadata_url: Option<String>,
    /// A file (mode 0600) holding the PostgreSQL password.
    #[arg(long, value_name = "FILE")]
    pub metadata_password_file: Option<PathBuf>,
}

impl MetadataArgs {
    /// The server-side configuration these flags name.
    pub fn config(&self) -> shuyu_server::domain::MetadataConfig {
        shuyu_server::domain::MetadataConfig {
            url: self.metadata_url.clone(),
            password_env: None,
            password_file: self.metadata_password_file.clone(),
        }
    }
}

/// `shuyu serve`.
#[derive(Debug, Args)]
pub struct ServeOptions {
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
    #[command(flatten)]
    metadata: MetadataArgs,
}

/// Creates a domain and prints where its admin's credentials are.
///
/// # Errors
/// If the data dir holds a domain already, or on IO failure.
pub fn init(options: InitOptions) -> Result<ExitCode> {
    let InitOptions {
        data_dir,
        admin_name,
        admin_org,
        admin_id_number,
        admin_training_days,
        admin_nda_days,
        creds_out,
        metadata,
    } = options;
    let creds = creds_out.unwrap_or_else(|| data_dir.join("credentials").join("admin"));
    let qualification = shuyu_server::domain::AdminQualification {
        id_number: admin_id_number,
        training_days: admin_training_days,
        nda_days: admin_nda_days,
    };
    let outcome = shuyu_server::domain::init(
        &data_dir,
        &metadata.config(),
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

/// Serves a domain until Ctrl-C.
///
/// # Errors
/// On a configuration that does not validate, or when the server cannot start.
pub async fn serve(options: ServeOptions) -> Result<ExitCode> {
    let ServeOptions {
        data_dir,
        config,
        listen,
        policy,
        metadata,
    } = options;
    let mut server_config = match &config {
        Some(path) => shuyu_server::ServerConfig::from_toml_str(&std::fs::read_to_string(path)?)?,
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
    if metadata.metadata_url.is_some() {
        server_config.metadata.url = metadata.metadata_url;
    }
    if metadata.metadata_password_file.is_some() {
        server_config.metadata.password_env = None;
        server_config.metadata.password_file = metadata.metadata_password_file;
    }
    let handle = shuyu_server::serve(server_config).await?;
    println!("shuyu serving on https://{} (Ctrl-C to stop)", handle.addr);
    tokio::select! {
        result = tokio::signal::ctrl_c() => { result?; }
    }
    handle.shutdown().await?;
    Ok(ExitCode::SUCCESS)
}

/// `shuyu audit verify`: the chain, head and bindings of a data dir, read-only.
///
/// # Errors
/// If the data dir holds no domain or its store cannot be read.
pub fn audit_verify(data_dir: &Path) -> Result<ExitCode> {
    let report = shuyu_server::domain::verify_audit(data_dir)?;
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

/// `shuyu audit show-error`: decrypts the withheld detail of an error (domain operator, on
/// the server host).
///
/// # Errors
/// If no record carries the error id, or it does not decrypt.
pub fn show_error(data_dir: &Path, error_id: &str) -> Result<()> {
    let found = shuyu_server::domain::withheld_error(data_dir, error_id)?
        .ok_or_else(|| anyhow::anyhow!("no audit record carries error id {error_id}"))?;
    println!(
        "audit record {} ({} by {}):",
        found.seq, found.action, found.principal_id
    );
    println!("{}", found.detail);
    Ok(())
}
